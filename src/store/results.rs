//! Applying a job's state, as upstream reported it by callback or poll, to
//! its lookup: once per request_id, forward only, in one transaction.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::facets::Facets;
use crate::upstream::payload::{JobState, JobUpdate};

/// Credits upstream charges for a completed job with at least one section.
pub const CREDITS_PER_RESULT: i32 = 5;

/// Which path brought a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Callback,
    Poll,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Callback => "callback",
            Via::Poll => "poll",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The lookup changed.
    Applied,
    /// Nothing to change: already known, or older than what is stored.
    Duplicate,
    /// Not this lookup's to apply; nothing changed.
    Refused(&'static str),
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Refused(_) => "refused",
        }
    }
}

fn is_final(status: &str) -> bool {
    matches!(status, "completed" | "failed")
}

fn rank(status: &str) -> u8 {
    match status {
        "pending" => 0,
        "queued" => 1,
        "processing" => 2,
        _ => 3,
    }
}

/// Applies `update` to lookup `lookup_id`. Run it inside a transaction: the
/// row lock taken here serialises concurrent deliveries of the same job.
pub async fn apply(
    tx: &mut PgConnection,
    lookup_id: Uuid,
    update: &JobUpdate,
    via: Via,
) -> sqlx::Result<Outcome> {
    let current: Option<(String,)> =
        sqlx::query_as("SELECT status FROM lookups WHERE id = $1 FOR UPDATE")
            .bind(lookup_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((status,)) = current else {
        return Ok(Outcome::Refused("unknown lookup"));
    };
    let owned_elsewhere: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM lookups WHERE request_id = $1 AND id <> $2)",
    )
    .bind(&update.request_id)
    .bind(lookup_id)
    .fetch_one(&mut *tx)
    .await?;
    if owned_elsewhere {
        return Ok(Outcome::Refused("request_id belongs to another lookup"));
    }

    match &update.state {
        JobState::Completed {
            result,
            completed_on,
        } => {
            // `expired` may still become `completed`: the result was paid for.
            if is_final(&status) {
                return Ok(Outcome::Duplicate);
            }
            complete(
                tx,
                lookup_id,
                &update.request_id,
                result,
                *completed_on,
                via,
            )
            .await?;
            Ok(Outcome::Applied)
        }
        JobState::Failed { error } => {
            if is_final(&status) || status == "expired" {
                return Ok(Outcome::Duplicate);
            }
            sqlx::query(
                "UPDATE lookups SET status = 'failed', error = $2, completed_at = now(), \
                   credits_charged = 0, request_id = COALESCE(request_id, $3), \
                   submit_started_at = NULL, lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1",
            )
            .bind(lookup_id)
            .bind(error)
            .bind(&update.request_id)
            .execute(&mut *tx)
            .await?;
            Ok(Outcome::Applied)
        }
        JobState::Queued | JobState::Processing => {
            let new_status = if matches!(update.state, JobState::Queued) {
                "queued"
            } else {
                "processing"
            };
            if rank(new_status) <= rank(&status) {
                return Ok(Outcome::Duplicate);
            }
            sqlx::query(
                "UPDATE lookups SET status = $2, request_id = COALESCE(request_id, $3), \
                   submitted_at = COALESCE(submitted_at, now()) WHERE id = $1",
            )
            .bind(lookup_id)
            .bind(new_status)
            .bind(&update.request_id)
            .execute(&mut *tx)
            .await?;
            Ok(Outcome::Applied)
        }
    }
}

async fn complete(
    tx: &mut PgConnection,
    lookup_id: Uuid,
    request_id: &str,
    result: &Value,
    completed_on: Option<DateTime<Utc>>,
    via: Via,
) -> sqlx::Result<()> {
    let credits = if result.as_object().is_some_and(|o| !o.is_empty()) {
        CREDITS_PER_RESULT
    } else {
        0
    };
    let facets = Facets::extract(result);
    sqlx::query(
        "INSERT INTO profiles (id, lookup_id, request_id, result, completed_on, received_via, \
           interest_facets, category_facets, brand_facets, archetype_facets, industry_facets) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(lookup_id)
    .bind(request_id)
    .bind(result)
    .bind(completed_on)
    .bind(via.as_str())
    .bind(&facets.interests)
    .bind(&facets.categories)
    .bind(&facets.brands)
    .bind(&facets.archetypes)
    .bind(&facets.industries)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE lookups SET status = 'completed', completed_at = now(), credits_charged = $2, \
           error = NULL, request_id = COALESCE(request_id, $3), \
           submitted_at = COALESCE(submitted_at, now()), \
           submit_started_at = NULL, lease_owner = NULL, lease_until = NULL \
         WHERE id = $1",
    )
    .bind(lookup_id)
    .bind(credits)
    .bind(request_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
