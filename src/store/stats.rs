//! Counters for `GET /v1/stats` and the `/metrics` gauges.

use std::collections::BTreeMap;

use sqlx::PgPool;

#[derive(Debug, Default)]
pub struct Stats {
    pub lookups_by_status: BTreeMap<String, i64>,
    pub credits_today: i64,
    pub credits_this_month: i64,
    pub credits_total: i64,
    pub deliveries_by_outcome: BTreeMap<String, i64>,
    pub polls_made: i64,
    pub submits_made: i64,
    pub ambiguous_submits: i64,
    /// Lookups whose submit had an unknown outcome and that no callback
    /// has resolved yet: never re-sent while AMBIGUOUS_RESUBMIT_AFTER_SECS
    /// is unset, they wait for their callback or the job deadline.
    pub ambiguous_waiting: i64,
    /// Lookups made against the sandbox simulator.
    pub synthetic_lookups: i64,
    /// Callbacks refused for a wrong token (flushed counts).
    pub forged_callbacks: i64,
    /// Age in seconds of the oldest lookup still in flight.
    pub oldest_unfinished_secs: Option<f64>,
}

pub async fn read(db: &PgPool) -> sqlx::Result<Stats> {
    let mut stats = Stats::default();
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM lookups GROUP BY status")
            .fetch_all(db)
            .await?;
    stats.lookups_by_status = by_status.into_iter().collect();
    for status in [
        "pending",
        "queued",
        "processing",
        "completed",
        "failed",
        "expired",
    ] {
        stats.lookups_by_status.entry(status.into()).or_insert(0);
    }
    let row: (i64, i64, i64, i64, i64, i64, i64, i64, Option<f64>) = sqlx::query_as(
        "SELECT \
           COALESCE(SUM(credits_charged) FILTER (WHERE completed_at >= date_trunc('day', now())), 0)::bigint, \
           COALESCE(SUM(credits_charged) FILTER (WHERE completed_at >= date_trunc('month', now())), 0)::bigint, \
           COALESCE(SUM(credits_charged), 0)::bigint, \
           COALESCE(SUM(poll_count), 0)::bigint, \
           COALESCE(SUM(submit_attempts), 0)::bigint, \
           COALESCE(SUM(ambiguous_submits), 0)::bigint, \
           COUNT(*) FILTER (WHERE status = 'pending' AND request_id IS NULL \
             AND ambiguous_submits > 0 AND submit_started_at IS NULL), \
           COUNT(*) FILTER (WHERE synthetic), \
           EXTRACT(EPOCH FROM now() - MIN(created_at) FILTER (WHERE status IN ('pending', 'queued', 'processing')))::float8 \
         FROM lookups",
    )
    .fetch_one(db)
    .await?;
    (
        stats.credits_today,
        stats.credits_this_month,
        stats.credits_total,
        stats.polls_made,
        stats.submits_made,
        stats.ambiguous_submits,
        stats.ambiguous_waiting,
        stats.synthetic_lookups,
        stats.oldest_unfinished_secs,
    ) = row;
    stats.forged_callbacks = super::forged::total(db).await?;
    let by_outcome: Vec<(String, i64)> =
        sqlx::query_as("SELECT outcome, count(*) FROM deliveries GROUP BY outcome")
            .fetch_all(db)
            .await?;
    stats.deliveries_by_outcome = by_outcome.into_iter().collect();
    for outcome in ["applied", "duplicate", "refused"] {
        stats
            .deliveries_by_outcome
            .entry(outcome.into())
            .or_insert(0);
    }
    Ok(stats)
}
