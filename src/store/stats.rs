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
    let row: (i64, i64, i64, i64, i64, i64, i64, Option<f64>) = sqlx::query_as(
        "SELECT \
           COALESCE(SUM(credits_charged) FILTER (WHERE completed_at >= date_trunc('day', now())), 0)::bigint, \
           COALESCE(SUM(credits_charged) FILTER (WHERE completed_at >= date_trunc('month', now())), 0)::bigint, \
           COALESCE(SUM(credits_charged), 0)::bigint, \
           COALESCE(SUM(poll_count), 0)::bigint, \
           COALESCE(SUM(submit_attempts), 0)::bigint, \
           COALESCE(SUM(ambiguous_submits), 0)::bigint, \
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
        stats.synthetic_lookups,
        stats.oldest_unfinished_secs,
    ) = row;
    // Spend of lookups no longer stored (erased, or removed by retention).
    let gone: (i64, i64, i64) = sqlx::query_as(
        "SELECT \
           COALESCE(SUM(credits) FILTER (WHERE day >= (now() AT TIME ZONE 'UTC')::date), 0)::bigint, \
           COALESCE(SUM(credits) FILTER (WHERE day >= date_trunc('month', now() AT TIME ZONE 'UTC')::date), 0)::bigint, \
           COALESCE(SUM(credits), 0)::bigint \
         FROM spend_ledger",
    )
    .fetch_one(db)
    .await?;
    stats.credits_today += gone.0;
    stats.credits_this_month += gone.1;
    stats.credits_total += gone.2;
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
