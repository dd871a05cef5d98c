//! The lookups table as a work queue: claims with `FOR UPDATE SKIP LOCKED`
//! and a lease that runs out, so a crashed replica's work is taken over, and
//! the bookkeeping of submits and polls. No transaction here is held across
//! an upstream call: a claim commits before the call, its outcome is
//! recorded in a new statement after it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, PgPool};
use uuid::Uuid;

use crate::subject::Subject;

/// A lookup claimed for submission. `submit_started_at` is committed with the
/// claim, so a crash during the call leaves a visible trace.
#[derive(Debug, FromRow)]
pub struct SubmitClaim {
    pub id: Uuid,
    #[sqlx(flatten)]
    pub subject: Subject,
    pub callback_token: String,
    pub submit_attempts: i32,
}

impl SubmitClaim {}

/// A lookup claimed for a poll.
#[derive(Debug, FromRow)]
pub struct PollClaim {
    pub id: Uuid,
    pub request_id: String,
    pub poll_count: i32,
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

/// Claims the most urgent due submit. The candidate is a *scalar*
/// subquery so PostgreSQL runs it exactly once: as a joined subquery the
/// planner may re-run it per outer row and lease a second row unseen.
pub async fn claim_submit(
    db: &PgPool,
    owner: Uuid,
    lease: Duration,
) -> sqlx::Result<Option<SubmitClaim>> {
    sqlx::query_as(
        "UPDATE lookups l SET lease_owner = $1, lease_until = now() + make_interval(secs => $2), \
           submit_started_at = now(), submit_attempts = l.submit_attempts + 1 \
         WHERE l.id = (SELECT id FROM lookups WHERE status = 'pending' AND submit_started_at IS NULL \
                 AND next_action_at <= now() AND (lease_until IS NULL OR lease_until < now()) \
               ORDER BY next_action_at, created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
           AND l.status = 'pending' AND l.submit_started_at IS NULL \
         RETURNING l.id, l.email, l.phone, l.social_media_url, l.name, l.company, \
           l.callback_token, l.submit_attempts",
    )
    .bind(owner)
    .bind(secs(lease))
    .fetch_optional(db)
    .await
}

pub async fn claim_poll(
    db: &PgPool,
    owner: Uuid,
    lease: Duration,
) -> sqlx::Result<Option<PollClaim>> {
    sqlx::query_as(
        "UPDATE lookups l SET lease_owner = $1, lease_until = now() + make_interval(secs => $2) \
         WHERE l.id = (SELECT id FROM lookups WHERE status IN ('queued', 'processing') \
                 AND request_id IS NOT NULL AND next_action_at <= now() \
                 AND (lease_until IS NULL OR lease_until < now()) \
               ORDER BY next_action_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
           AND (l.lease_until IS NULL OR l.lease_until < now()) \
         RETURNING l.id, l.request_id, l.poll_count",
    )
    .bind(owner)
    .bind(secs(lease))
    .fetch_optional(db)
    .await
}

/// Upstream accepted the submit. A callback may already have been applied
/// (it can overtake the submit response): the request_id it recorded and
/// any later status are kept.
pub async fn submit_accepted(
    db: &PgPool,
    id: Uuid,
    request_id: &str,
    first_poll_after: Duration,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE lookups SET request_id = COALESCE(request_id, $2), \
           status = CASE WHEN status = 'pending' THEN 'queued' ELSE status END, \
           submitted_at = COALESCE(submitted_at, now()), submit_started_at = NULL, \
           next_action_at = now() + make_interval(secs => $3), \
           lease_owner = NULL, lease_until = NULL \
         WHERE id = $1",
    )
    .bind(id)
    .bind(request_id)
    .bind(secs(first_poll_after))
    .execute(db)
    .await?;
    Ok(())
}

/// The submit certainly did not create a job (refused before or at upstream):
/// it may be sent again at `retry_at`.
pub async fn submit_not_accepted(
    db: &PgPool,
    id: Uuid,
    retry_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE lookups SET submit_started_at = NULL, next_action_at = $2, \
           lease_owner = NULL, lease_until = NULL WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(retry_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Upstream refused this subject for good (400): the lookup fails, 0 credits.
pub async fn submit_rejected(db: &PgPool, id: Uuid, error: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE lookups SET status = 'failed', error = $2, completed_at = now(), \
           submit_started_at = NULL, lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// The submit's outcome is unknown (timeout, connection lost after sending).
/// It is not re-sent before `wait` has passed: its callback, which carries
/// this lookup's token, may still arrive and complete the lookup.
pub async fn submit_ambiguous(db: &PgPool, id: Uuid, wait: Duration) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE lookups SET submit_started_at = NULL, ambiguous_submits = ambiguous_submits + 1, \
           next_action_at = now() + make_interval(secs => $2), \
           lease_owner = NULL, lease_until = NULL WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(secs(wait))
    .execute(db)
    .await?;
    Ok(())
}

/// Submits whose process died during the call (lease run out with
/// `submit_started_at` still set) are treated as ambiguous. Returns how many.
pub async fn recover_abandoned_submits(db: &PgPool, wait: Duration) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE lookups SET submit_started_at = NULL, ambiguous_submits = ambiguous_submits + 1, \
           next_action_at = now() + make_interval(secs => $1), \
           lease_owner = NULL, lease_until = NULL \
         WHERE status = 'pending' AND submit_started_at IS NOT NULL AND lease_until < now()",
    )
    .bind(secs(wait))
    .execute(db)
    .await?
    .rows_affected())
}

/// A poll found the job still running: status moves forward only.
pub async fn poll_running(
    db: &PgPool,
    id: Uuid,
    upstream_status: &str,
    next_poll_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE lookups SET \
           status = CASE WHEN status = 'queued' AND $2 = 'processing' THEN 'processing' ELSE status END, \
           poll_count = poll_count + 1, last_polled_at = now(), next_action_at = $3, \
           lease_owner = NULL, lease_until = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(upstream_status)
    .bind(next_poll_at)
    .execute(db)
    .await?;
    Ok(())
}

/// A poll could not be made or answered (5xx, network, 429): try again later.
pub async fn poll_retry(
    db: impl PgExecutor<'_>,
    id: Uuid,
    retry_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE lookups SET poll_count = poll_count + 1, last_polled_at = now(), \
           next_action_at = $2, lease_owner = NULL, lease_until = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(retry_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Upstream no longer knows the job (404 `request_not_found`).
pub async fn poll_not_found(db: &PgPool, id: Uuid, error: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE lookups SET status = 'expired', error = $2, poll_count = poll_count + 1, \
           last_polled_at = now(), lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND status IN ('pending', 'queued', 'processing')",
    )
    .bind(id)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// Marks jobs older than the deadline as expired; returns how many.
pub async fn expire_overdue(db: &PgPool, deadline: Duration, error: &str) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE lookups SET status = 'expired', error = $2, lease_owner = NULL, lease_until = NULL \
         WHERE status IN ('pending', 'queued', 'processing') \
           AND created_at < now() - make_interval(secs => $1) \
           AND (lease_until IS NULL OR lease_until < now())",
    )
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
