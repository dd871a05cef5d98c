//! Upstream request slots shared by every replica. The rate limit belongs to
//! the upstream account, so the ledger of calls lives in PostgreSQL and a
//! transaction-scoped advisory lock makes reservations one at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Advisory lock key of the pacing ledger ("pacing" in ASCII).
const PACING_LOCK: i64 = 0x7061_6369_6e67;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_minute: u32,
    pub per_hour: u32,
    /// Length of the "minute" and "hour" windows (scaled only in tests).
    pub minute: Duration,
    pub hour: Duration,
    /// How long after it was sent (see [`sending`]) a call may still reach
    /// upstream: the upstream timeout and a margin. A slot not yet recorded
    /// counts this much longer: upstream counts a call from when it
    /// arrives, not from when it was reserved or sent.
    pub in_flight: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Reservation {
    /// A slot was taken; the id names the ledger row of this call.
    Granted(i64),
    /// No slot before this much time has passed.
    Wait(Duration),
}

#[derive(sqlx::FromRow)]
struct Window {
    now: DateTime<Utc>,
    pause_until: DateTime<Utc>,
    minute_count: i64,
    /// When the first of the calls counted in the minute stops counting.
    minute_frees: Option<DateTime<Utc>>,
    hour_count: i64,
    hour_frees: Option<DateTime<Utc>>,
}

fn until(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}

/// Takes a slot if both windows and any upstream-imposed pause allow it.
///
/// A recorded call counts for a window after its answer (`record` dates it
/// then). A reserved call not yet recorded counts for a window plus
/// `in_flight` from its reservation, or from when it was sent once
/// [`sending`] dated it then, however long ago that was: upstream counts it
/// from when it arrives, which may be that much later. So whatever delays a
/// call on its way out, no window of upstream's sees more than the limit.
pub async fn reserve(db: &PgPool, limits: Limits) -> sqlx::Result<Reservation> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PACING_LOCK)
        .execute(&mut *tx)
        .await?;
    // clock_timestamp(), not now(): now() is the start of the transaction,
    // which may predate the wait for the lock.
    let w: Window = sqlx::query_as(
        "WITH t AS (SELECT clock_timestamp() AS now), \
         c AS (SELECT at + CASE WHEN kind IS NULL THEN make_interval(secs => $3) \
                               ELSE interval '0' END AS counts_from_end \
               FROM upstream_calls, t \
               WHERE at > t.now - make_interval(secs => $2 + $3)), \
         m AS (SELECT counts_from_end + make_interval(secs => $1) AS frees FROM c, t \
               WHERE counts_from_end + make_interval(secs => $1) > t.now), \
         h AS (SELECT counts_from_end + make_interval(secs => $2) AS frees FROM c, t \
               WHERE counts_from_end + make_interval(secs => $2) > t.now) \
         SELECT t.now, \
           (SELECT until FROM upstream_pause WHERE id = 1) AS pause_until, \
           (SELECT count(*) FROM m) AS minute_count, \
           (SELECT min(frees) FROM m) AS minute_frees, \
           (SELECT count(*) FROM h) AS hour_count, \
           (SELECT min(frees) FROM h) AS hour_frees \
         FROM t",
    )
    .bind(limits.minute.as_secs_f64())
    .bind(limits.hour.as_secs_f64())
    .bind(limits.in_flight.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;

    let mut wait = until(w.now, w.pause_until);
    if w.minute_count >= i64::from(limits.per_minute) {
        wait = wait.max(until(w.now, w.minute_frees.unwrap_or(w.now)));
    }
    if w.hour_count >= i64::from(limits.per_hour) {
        wait = wait.max(until(w.now, w.hour_frees.unwrap_or(w.now)));
    }
    if !wait.is_zero() {
        return Ok(Reservation::Wait(wait));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO upstream_calls (at) VALUES (clock_timestamp()) RETURNING id",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reservation::Granted(id))
}

/// Dates a reserved call at the moment it is sent: whatever delayed it
/// since its reservation (a claim, a pool wait), it can reach upstream only
/// within `in_flight` from now.
pub async fn sending(db: &PgPool, id: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE upstream_calls SET at = clock_timestamp() WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Gives an unused slot back.
pub async fn cancel(db: &PgPool, id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM upstream_calls WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Names what a slot was used for and how it went. The call's time moves to
/// now, after upstream's answer: upstream counted the request somewhere
/// between reservation and answer, so dating it at the answer keeps our
/// window from ever closing earlier than upstream's.
pub async fn record(db: &PgPool, id: i64, kind: &str, outcome: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE upstream_calls SET kind = $2, outcome = $3, at = clock_timestamp() WHERE id = $1",
    )
    .bind(id)
    .bind(kind)
    .bind(outcome)
    .execute(db)
    .await?;
    Ok(())
}

/// Holds every replica's upstream calls until `until` (Retry-After, a spent
/// X-RateLimit-Remaining). Never shortens a longer pause.
pub async fn pause_until(db: &PgPool, until: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query("UPDATE upstream_pause SET until = GREATEST(until, $1) WHERE id = 1")
        .bind(until)
        .execute(db)
        .await?;
    Ok(())
}

/// Forgets ledger rows older than `keep` (they no longer count anywhere).
pub async fn prune(db: &PgPool, keep: Duration) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM upstream_calls WHERE at < now() - make_interval(secs => $1)")
            .bind(keep.as_secs_f64())
            .execute(db)
            .await?
            .rows_affected(),
    )
}
