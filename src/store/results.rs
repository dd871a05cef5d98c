//! Applying a job's state, as upstream reported it by callback or poll, to
//! its lookup: once per request_id, forward only, in one round trip (the
//! `apply_job_update` function of the schema does the work under the
//! lookup's row lock).

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::facets::Facets;
use crate::lifecycle::{JobState, JobUpdate, Outcome};

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

/// The kinds of answer of `apply_job_update`: an answer outside them is a
/// decoding error, not a silent duplicate.
#[derive(sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
enum Answer {
    Applied,
    Duplicate,
    Refused,
    Gone,
}

/// The callback delivery to record beside the apply (callbacks only).
pub struct DeliveryRecord<'a> {
    pub body_sha256: &'a str,
    pub body: &'a Value,
}

/// Applies `update` to lookup `lookup_id` and, for a callback, records the
/// delivery, in one statement; a completion also records what it changed
/// since the person's previous profile (`store::versions`). `update` must
/// already be fit to store (the callback and poll paths pass it through
/// their intake first). Run it in a transaction: the change must commit
/// with the result.
pub async fn apply(
    db: &mut PgConnection,
    lookup_id: Uuid,
    update: &JobUpdate,
    via: Via,
    delivery: Option<DeliveryRecord<'_>>,
) -> sqlx::Result<Outcome> {
    let (result, completed_on, error, credits) = match &update.state {
        JobState::Completed {
            result,
            completed_on,
            credits,
        } => (Some(result), *completed_on, None, *credits),
        JobState::Failed { error } => (None, None, Some(error.as_str()), 0),
        JobState::Queued | JobState::Processing => (None, None, None, 0),
    };
    let facets = result.map(Facets::as_written).unwrap_or_default();
    // The function answers `applied`, `duplicate`, `gone` or
    // `refused:<reason>`: split here, once, into a typed kind and a reason.
    let (kind, reason): (Answer, Option<String>) = sqlx::query_as(
        "SELECT split_part(a, ':', 1), NULLIF(substr(a, length(split_part(a, ':', 1)) + 2), '') \
         FROM apply_job_update($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) AS a",
    )
    .bind(lookup_id)
    .bind(&update.request_id)
    .bind(update.status())
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
    .bind(credits)
    .fetch_one(&mut *db)
    .await?;
    let outcome = match kind {
        Answer::Applied => Outcome::Applied,
        Answer::Duplicate => Outcome::Duplicate,
        Answer::Gone => Outcome::Gone,
        Answer::Refused => Outcome::Refused(reason.unwrap_or_default()),
    };
    if outcome == Outcome::Applied && result.is_some() {
        super::versions::record_change(db, lookup_id).await?;
    }
    Ok(outcome)
}
