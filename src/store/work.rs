//! The lookups table as a work queue: claims with `FOR UPDATE SKIP LOCKED`
//! and a lease that runs out, so a crashed replica's work is taken over, and
//! the bookkeeping of submits and polls. No transaction here is held across
//! an upstream call: a claim commits before the call, its outcome is
//! recorded in a new statement after it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, PgPool};
use uuid::Uuid;

use crate::lifecycle::{IN_FLIGHT_SQL, LookupStatus};
use crate::subject::Subject;

/// Proof of a claim: the lookup and the id this claim wrote into it. Writes
/// after the upstream call only apply while the row still carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub id: Uuid,
    pub claim_id: Uuid,
}

/// A lookup claimed for submission. `submit_started_at` is committed with the
/// claim, so a crash during the call leaves a visible trace.
#[derive(Debug, FromRow)]
pub struct SubmitClaim {
    pub id: Uuid,
    pub claim_id: Uuid,
    #[sqlx(flatten)]
    pub subject: Subject,
    /// Stored token of a lookup made before tokens were derived; else NULL.
    pub callback_token: Option<String>,
    pub submit_attempts: i32,
}

impl SubmitClaim {
    pub fn claim(&self) -> Claim {
        Claim {
            id: self.id,
            claim_id: self.claim_id,
        }
    }
}

/// A lookup claimed for a poll.
#[derive(Debug, FromRow)]
pub struct PollClaim {
    pub id: Uuid,
    pub claim_id: Uuid,
    pub request_id: String,
    pub poll_count: i32,
}

impl PollClaim {
    pub fn claim(&self) -> Claim {
        Claim {
            id: self.id,
            claim_id: self.claim_id,
        }
    }
}

/// Did a write after a claim still own it? `false`: another worker took
/// the job over after this one's lease ran out, and nothing was written.
pub type Owned = bool;

async fn owned(
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    db: impl PgExecutor<'_>,
) -> sqlx::Result<Owned> {
    Ok(query.execute(db).await?.rows_affected() == 1)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Is any submit or poll due now? Cheap check before reserving a rate slot.
pub async fn work_is_due(db: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM lookups WHERE next_action_at <= now() \
           AND (lease_until IS NULL OR lease_until < now()) \
           AND ((status = 'pending' AND submit_started_at IS NULL) \
                OR (status IN ('queued', 'processing') AND request_id IS NOT NULL)))",
    )
    .fetch_one(db)
    .await
}

/// Claims the most urgent due submit: new lookups before the service's
/// refreshes (they share the rate limits), then oldest due first. The candidate is a *scalar*
/// subquery so PostgreSQL runs it exactly once: as a joined subquery the
/// planner may re-run it per outer row and lease a second row unseen.
pub async fn claim_submit(
    db: &PgPool,
    owner: Uuid,
    lease: Duration,
) -> sqlx::Result<Option<SubmitClaim>> {
    sqlx::query_as(
        "UPDATE lookups l SET lease_owner = $1, lease_until = now() + make_interval(secs => $2), \
           claim_id = $3, submit_started_at = now(), submit_attempts = l.submit_attempts + 1 \
         WHERE l.id = (SELECT id FROM lookups WHERE status = 'pending' AND submit_started_at IS NULL \
                 AND next_action_at <= now() AND (lease_until IS NULL OR lease_until < now()) \
               ORDER BY refresh, next_action_at, created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
           AND l.status = 'pending' AND l.submit_started_at IS NULL \
         RETURNING l.id, l.claim_id, l.email, l.phone, l.social_media_url, l.name, l.company, \
           l.callback_token, l.submit_attempts",
    )
    .bind(owner)
    .bind(secs(lease))
    .bind(Uuid::new_v4())
    .fetch_optional(db)
    .await
}

pub async fn claim_poll(
    db: &PgPool,
    owner: Uuid,
    lease: Duration,
) -> sqlx::Result<Option<PollClaim>> {
    sqlx::query_as(
        "UPDATE lookups l SET lease_owner = $1, lease_until = now() + make_interval(secs => $2), \
           claim_id = $3 \
         WHERE l.id = (SELECT id FROM lookups WHERE status IN ('queued', 'processing') \
                 AND request_id IS NOT NULL AND next_action_at <= now() \
                 AND (lease_until IS NULL OR lease_until < now()) \
               ORDER BY next_action_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
           AND (l.lease_until IS NULL OR l.lease_until < now()) \
         RETURNING l.id, l.claim_id, l.request_id, l.poll_count",
    )
    .bind(owner)
    .bind(secs(lease))
    .bind(Uuid::new_v4())
    .fetch_optional(db)
    .await
}

/// Upstream accepted the submit. A callback may already have been applied
/// (it can overtake the submit response): the request_id it recorded and
/// any later status are kept. Written also when the claim was lost but the
/// job is known to nobody else yet (recovered as ambiguous, not being
/// re-sent): the request_id is the proof that stops a second payment.
pub async fn submit_accepted(
    db: &PgPool,
    claim: Claim,
    request_id: &str,
    first_poll_after: Duration,
) -> sqlx::Result<Owned> {
    let query = sqlx::query(
        "UPDATE lookups SET request_id = COALESCE(request_id, $3), \
           status = CASE WHEN status = 'pending' THEN 'queued' ELSE status END, \
           submitted_at = COALESCE(submitted_at, now()), \
           next_action_at = now() + make_interval(secs => $4), \
           submit_started_at = CASE WHEN claim_id = $2 THEN NULL ELSE submit_started_at END, \
           lease_owner = CASE WHEN claim_id = $2 THEN NULL ELSE lease_owner END, \
           lease_until = CASE WHEN claim_id = $2 THEN NULL ELSE lease_until END \
         WHERE id = $1 AND (claim_id = $2 \
           OR (status = 'pending' AND request_id IS NULL AND submit_started_at IS NULL))",
    )
    .bind(claim.id)
    .bind(claim.claim_id)
    .bind(request_id)
    .bind(secs(first_poll_after));
    owned(query, db).await
}

/// The submit certainly did not create a job (refused before or at upstream):
/// it may be sent again at `retry_at`.
pub async fn submit_not_accepted(
    db: &PgPool,
    claim: Claim,
    retry_at: DateTime<Utc>,
) -> sqlx::Result<Owned> {
    let query = sqlx::query(
        "UPDATE lookups SET submit_started_at = NULL, lease_owner = NULL, lease_until = NULL, \
           next_action_at = CASE WHEN status = 'pending' THEN $3 ELSE next_action_at END \
         WHERE id = $1 AND claim_id = $2",
    )
    .bind(claim.id)
    .bind(claim.claim_id)
    .bind(retry_at);
    owned(query, db).await
}

/// Upstream refused this subject for good (400): the lookup fails, 0 credits.
pub async fn submit_rejected(db: &PgPool, claim: Claim, error: &str) -> sqlx::Result<Owned> {
    let query = sqlx::query(
        "UPDATE lookups SET submit_started_at = NULL, lease_owner = NULL, lease_until = NULL, \
           error = CASE WHEN status = 'pending' THEN $3 ELSE error END, \
           completed_at = CASE WHEN status = 'pending' THEN now() ELSE completed_at END, \
           status = CASE WHEN status = 'pending' THEN 'failed' ELSE status END \
         WHERE id = $1 AND claim_id = $2",
    )
    .bind(claim.id)
    .bind(claim.claim_id)
    .bind(error);
    owned(query, db).await
}

/// When an ambiguous submit may be sent again: after `$n` seconds, or, with
/// NULL (no AMBIGUOUS_RESUBMIT_AFTER_SECS), never (`infinity` is never due;
/// a callback can still complete the lookup and the deadline expires it).
fn resend_at(param: &str) -> String {
    format!(
        "CASE WHEN {param}::float8 IS NULL THEN 'infinity'::timestamptz \
         ELSE now() + make_interval(secs => {param}::float8) END"
    )
}

/// The submit's outcome is unknown (timeout, connection lost after sending).
/// It is not re-sent before `wait` has passed (never with `None`): its
/// callback, which carries this lookup's token, may still arrive and
/// complete the lookup.
pub async fn submit_ambiguous(
    db: &PgPool,
    claim: Claim,
    wait: Option<Duration>,
) -> sqlx::Result<Owned> {
    let sql = format!(
        "UPDATE lookups SET submit_started_at = NULL, lease_owner = NULL, lease_until = NULL, \
           ambiguous_submits = ambiguous_submits + 1, \
           next_action_at = CASE WHEN status = 'pending' \
             THEN {} ELSE next_action_at END \
         WHERE id = $1 AND claim_id = $2",
        resend_at("$3")
    );
    let query = sqlx::query(&sql)
        .bind(claim.id)
        .bind(claim.claim_id)
        .bind(wait.map(secs));
    owned(query, db).await
}

/// Submits whose process died during the call (lease run out with
/// `submit_started_at` still set) are treated as ambiguous. Returns how many.
pub async fn recover_abandoned_submits(db: &PgPool, wait: Option<Duration>) -> sqlx::Result<u64> {
    Ok(sqlx::query(&format!(
        "UPDATE lookups SET submit_started_at = NULL, ambiguous_submits = ambiguous_submits + 1, \
           next_action_at = {}, \
           lease_owner = NULL, lease_until = NULL, claim_id = NULL \
         WHERE status = 'pending' AND submit_started_at IS NOT NULL AND lease_until < now()",
        resend_at("$1")
    ))
    .bind(wait.map(secs))
    .execute(db)
    .await?
    .rows_affected())
}

/// An operator's decision on a lookup whose submit outcome is unknown and
/// unresolved (`POST /v1/lookups/{id}/resubmit`): send it again now, with
/// the same callback token, accepting that it may be charged twice. Returns
/// false when the lookup is not such a lookup (any more).
pub async fn resubmit_ambiguous(db: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE lookups SET next_action_at = now() \
         WHERE id = $1 AND status = 'pending' AND request_id IS NULL \
           AND ambiguous_submits > 0 AND submit_started_at IS NULL \
           AND (lease_until IS NULL OR lease_until < now())",
    )
    .bind(id)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// A poll found the job still running: status moves forward only
/// ([`LookupStatus::may_become`]).
pub async fn poll_running(
    db: &PgPool,
    claim: Claim,
    upstream_status: LookupStatus,
    next_poll_at: DateTime<Utc>,
) -> sqlx::Result<Owned> {
    let query = sqlx::query(
        "UPDATE lookups SET \
           status = CASE WHEN status = ANY($5) THEN $3 ELSE status END, \
           poll_count = poll_count + 1, last_polled_at = now(), next_action_at = $4, \
           lease_owner = NULL, lease_until = NULL WHERE id = $1 AND claim_id = $2",
    )
    .bind(claim.id)
    .bind(claim.claim_id)
    .bind(upstream_status)
    .bind(next_poll_at)
    .bind(LookupStatus::may_precede(upstream_status));
    owned(query, db).await
}

/// A poll could not be made or answered (5xx, network, 429), or its
/// answer was applied: the next poll (if any) is at `retry_at`.
pub async fn poll_retry(
    db: impl PgExecutor<'_>,
    claim: Claim,
    retry_at: DateTime<Utc>,
) -> sqlx::Result<Owned> {
    let query = sqlx::query(
        "UPDATE lookups SET poll_count = poll_count + 1, last_polled_at = now(), \
           next_action_at = $3, lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND claim_id = $2",
    )
    .bind(claim.id)
    .bind(claim.claim_id)
    .bind(retry_at);
    owned(query, db).await
}

/// Upstream no longer knows the job (404 `request_not_found`).
pub async fn poll_not_found(db: &PgPool, claim: Claim, error: &str) -> sqlx::Result<Owned> {
    let query = sqlx::query(
        "UPDATE lookups SET poll_count = poll_count + 1, last_polled_at = now(), \
           lease_owner = NULL, lease_until = NULL, \
           error = CASE WHEN status IN ('queued', 'processing') THEN $3 ELSE error END, \
           expired_at = CASE WHEN status IN ('queued', 'processing') THEN now() ELSE expired_at END, \
           status = CASE WHEN status IN ('queued', 'processing') THEN 'expired' ELSE status END \
         WHERE id = $1 AND claim_id = $2",
    )
    .bind(claim.id)
    .bind(claim.claim_id)
    .bind(error);
    owned(query, db).await
}

/// Marks jobs older than the deadline as expired; returns how many.
pub async fn expire_overdue(db: &PgPool, deadline: Duration, error: &str) -> sqlx::Result<u64> {
    Ok(sqlx::query(&format!(
        "UPDATE lookups SET status = 'expired', error = $2, expired_at = now(), \
           lease_owner = NULL, lease_until = NULL \
         WHERE status IN {IN_FLIGHT_SQL} \
           AND created_at < now() - make_interval(secs => $1) \
           AND (lease_until IS NULL OR lease_until < now())"
    ))
    .bind(secs(deadline))
    .bind(error)
    .execute(db)
    .await?
    .rows_affected())
}

/// Gives back the leases of this worker (graceful shutdown). Rows with a
/// submit in flight keep their lease so they are recovered as ambiguous.
pub async fn release_leases(db: &PgPool, owner: Uuid) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE lookups SET lease_owner = NULL, lease_until = NULL \
         WHERE lease_owner = $1 AND submit_started_at IS NULL",
    )
    .bind(owner)
    .execute(db)
    .await?
    .rows_affected())
}
