//! Applying a job's state, as upstream reported it by callback or poll, to
//! its lookup: once per request_id, forward only, in one round trip (the
//! `apply_job_update` function of the schema does the work under the
//! lookup's row lock).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::facets::Facets;
use crate::upstream::payload::{JobState, JobUpdate};

/// Credits upstream charges for a completed job with at least one section
/// (the schema function applies the same rule).
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The lookup changed.
    Applied,
    /// Nothing to change: already known, or older than what is stored.
    Duplicate,
    /// Not this lookup's to apply; nothing changed.
    Refused(String),
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Refused(_) => "refused",
        }
    }

    fn parse(raw: &str) -> Outcome {
        match raw.split_once(':') {
            Some(("refused", reason)) => Outcome::Refused(reason.to_owned()),
            _ if raw == "applied" => Outcome::Applied,
            _ => Outcome::Duplicate,
        }
    }
}

/// The callback delivery to record beside the apply (callbacks only).
pub struct DeliveryRecord<'a> {
    pub body_sha256: &'a str,
    pub body: &'a Value,
}

/// Applies `update` to lookup `lookup_id` and, for a callback, records the
/// delivery, in one statement; a completion also records what it changed
/// since the person's previous profile (`store::versions`). `update` must
/// already be fit to store (see `crate::intake`). Run it in a transaction:
/// the change must commit with the result.
pub async fn apply(
    db: &mut PgConnection,
    lookup_id: Uuid,
    update: &JobUpdate,
    via: Via,
    delivery: Option<DeliveryRecord<'_>>,
) -> sqlx::Result<Outcome> {
    let (result, completed_on, error): (Option<&Value>, Option<DateTime<Utc>>, Option<&str>) =
        match &update.state {
            JobState::Completed {
                result,
                completed_on,
            } => (Some(result), *completed_on, None),
            JobState::Failed { error } => (None, None, Some(error)),
            JobState::Queued | JobState::Processing => (None, None, None),
        };
    let facets = result.map(Facets::extract).unwrap_or_default();
    let raw: String = sqlx::query_scalar(
        "SELECT apply_job_update($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(lookup_id)
    .bind(&update.request_id)
    .bind(update.status_str())
    .bind(result)
    .bind(completed_on)
    .bind(error)
    .bind(via.as_str())
    .bind(Uuid::now_v7())
    .bind(&facets.interests)
    .bind(&facets.categories)
    .bind(&facets.brands)
    .bind(&facets.archetypes)
    .bind(&facets.industries)
    .bind(delivery.is_some())
    .bind(delivery.as_ref().map(|d| d.body_sha256))
    .bind(delivery.as_ref().map(|d| d.body))
    .fetch_one(&mut *db)
    .await?;
    let outcome = Outcome::parse(&raw);
    if outcome == Outcome::Applied && result.is_some() {
        super::versions::record_change(db, lookup_id).await?;
    }
    Ok(outcome)
}
