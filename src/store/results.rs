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
enum Via {
    Callback,
    Poll,
}

impl Via {
    fn as_str(self) -> &'static str {
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

/// The callback delivery to record beside the apply.
pub struct DeliveryRecord<'a> {
    pub body_sha256: &'a str,
    pub body: &'a Value,
}

/// Applies a polled `update` to lookup `lookup_id`, in one statement; a
/// completion also records what it changed since the person's previous
/// profile (`store::versions`). `update` must already be fit to store (the
/// poller passes it through its intake first). Run it in a transaction:
/// the change must commit with the result. Callback deliveries, which are
/// also recorded, go through [`apply_deliveries`].
pub async fn apply(
    db: &mut PgConnection,
    lookup_id: Uuid,
    update: &JobUpdate,
) -> sqlx::Result<Outcome> {
    let (result, completed_on, error, credits) = columns(update);
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
    .bind(Via::Poll.as_str())
    .bind(Uuid::now_v7())
    .bind(&facets.interests)
    .bind(&facets.categories)
    .bind(&facets.brands)
    .bind(&facets.archetypes)
    .bind(&facets.industries)
    .bind(false)
    .bind(None::<&str>)
    .bind(None::<&Value>)
    .bind(credits)
    .fetch_one(&mut *db)
    .await?;
    let outcome = kind.outcome(reason);
    if outcome == Outcome::Applied && result.is_some() {
        super::versions::record_change(db, lookup_id).await?;
    }
    Ok(outcome)
}

/// What `apply_job_update` takes of a job's state: its result, its
/// completion time, its error and the credits it was charged.
type Columns<'a> = (
    Option<&'a Value>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<&'a str>,
    i32,
);

fn columns(update: &JobUpdate) -> Columns<'_> {
    match &update.state {
        JobState::Completed {
            result,
            completed_on,
            credits,
        } => (Some(result), *completed_on, None, *credits),
        JobState::Failed { error } => (None, None, Some(error), 0),
        JobState::Queued | JobState::Processing => (None, None, None, 0),
    }
}

impl Answer {
    fn outcome(self, reason: Option<String>) -> Outcome {
        match self {
            Answer::Applied => Outcome::Applied,
            Answer::Duplicate => Outcome::Duplicate,
            Answer::Gone => Outcome::Gone,
            Answer::Refused => Outcome::Refused(reason.unwrap_or_default()),
        }
    }
}

/// One callback delivery of a group (see [`apply_deliveries`]).
pub struct Received<'a> {
    pub lookup_id: Uuid,
    pub update: &'a JobUpdate,
    pub delivery: DeliveryRecord<'a>,
}

/// Applies a group of callback deliveries and records each, as [`apply`]
/// does one, in one statement (`apply_job_updates`, which takes the lookups'
/// row locks in id order): the outcomes, in the order of `group`. Run it in
/// a transaction, as [`apply`]. An error undoes the whole group.
pub async fn apply_deliveries(
    db: &mut PgConnection,
    group: &[Received<'_>],
) -> sqlx::Result<Vec<Outcome>> {
    let n = group.len();
    let mut lookups = Vec::with_capacity(n);
    let mut request_ids = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut results: Vec<Option<&Value>> = Vec::with_capacity(n);
    let mut completed_on = Vec::with_capacity(n);
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut profile_ids = Vec::with_capacity(n);
    let mut facets = Vec::with_capacity(n);
    let mut digests = Vec::with_capacity(n);
    let mut bodies = Vec::with_capacity(n);
    let mut credits = Vec::with_capacity(n);
    for r in group {
        let (result, on, error, charged) = columns(r.update);
        let f = result.map(Facets::as_written).unwrap_or_default();
        lookups.push(r.lookup_id);
        request_ids.push(r.update.request_id.as_str());
        statuses.push(r.update.status().as_str());
        results.push(result);
        completed_on.push(on);
        errors.push(error);
        profile_ids.push(Uuid::now_v7());
        facets.push(serde_json::json!({
            "interest": f.interests, "category": f.categories, "brand": f.brands,
            "archetype": f.archetypes, "industry": f.industries,
        }));
        digests.push(r.delivery.body_sha256);
        bodies.push(r.delivery.body);
        credits.push(charged);
    }
    let rows: Vec<(i32, Answer, Option<String>)> = sqlx::query_as(
        "SELECT item, split_part(answer, ':', 1), \
           NULLIF(substr(answer, length(split_part(answer, ':', 1)) + 2), '') \
         FROM apply_job_updates($1, $2, $3, $4, $5, $6, $7, $8, $9, true, $10, $11, $12)",
    )
    .bind(&lookups)
    .bind(&request_ids)
    .bind(&statuses)
    .bind(&results)
    .bind(&completed_on)
    .bind(&errors)
    .bind(Via::Callback.as_str())
    .bind(&profile_ids)
    .bind(&facets)
    .bind(&digests)
    .bind(&bodies)
    .bind(&credits)
    .fetch_all(&mut *db)
    .await?;
    let mut outcomes: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
    for (item, kind, reason) in rows {
        let slot = usize::try_from(item - 1)
            .ok()
            .and_then(|i| outcomes.get_mut(i))
            .ok_or_else(|| sqlx::Error::Protocol(format!("apply_job_updates: no item {item}")))?;
        *slot = Some(kind.outcome(reason));
    }
    let outcomes = outcomes
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| sqlx::Error::Protocol("apply_job_updates: an item unanswered".into()))?;
    for (r, outcome) in group.iter().zip(&outcomes) {
        if *outcome == Outcome::Applied && matches!(r.update.state, JobState::Completed { .. }) {
            super::versions::record_change(db, r.lookup_id).await?;
        }
    }
    Ok(outcomes)
}
