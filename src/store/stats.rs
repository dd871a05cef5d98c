//! Counters for `GET /v1/stats` and the `/metrics` gauges.

use std::collections::BTreeMap;

use sqlx::PgPool;

use crate::lifecycle::{IN_FLIGHT_SQL, LookupStatus};

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

/// Reads the kept totals (migration `kept_totals`): a few dozen rows
/// whatever the size of the tables, exact as of the last commit.
pub async fn read(db: &PgPool) -> sqlx::Result<Stats> {
    let mut stats = Stats::default();
    let by_status: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT status, sum(lookups)::bigint, sum(synthetic)::bigint FROM lookup_totals GROUP BY status",
    )
    .fetch_all(db)
    .await?;
    for status in LookupStatus::ALL {
        stats.lookups_by_status.insert(status.as_str().into(), 0);
    }
    for (status, lookups, synthetic) in by_status {
        stats.lookups_by_status.insert(status, lookups);
        stats.synthetic_lookups += synthetic;
    }
    let row: (i64, i64, i64, i64, i64, i64, i64, Option<f64>) = sqlx::query_as(&format!(
        "SELECT \
           (SELECT COALESCE(sum(credits), 0)::bigint FROM day_totals \
             WHERE day = (now() AT TIME ZONE 'UTC')::date), \
           (SELECT COALESCE(sum(credits), 0)::bigint FROM day_totals \
             WHERE day >= date_trunc('month', now() AT TIME ZONE 'UTC')::date), \
           (SELECT COALESCE(sum(credits), 0)::bigint FROM day_totals), \
           COALESCE(sum(polls), 0)::bigint, COALESCE(sum(submits), 0)::bigint, \
           COALESCE(sum(ambiguous), 0)::bigint, \
           (SELECT count(*) FROM lookups WHERE status = 'pending' AND request_id IS NULL \
             AND ambiguous_submits > 0 AND submit_started_at IS NULL), \
           (SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM lookups \
             WHERE status IN {IN_FLIGHT_SQL}) \
         FROM work_totals"
    ))
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
    for outcome in ["applied", "duplicate", "refused"] {
        stats.deliveries_by_outcome.insert(outcome.into(), 0);
    }
    let by_outcome: Vec<(String, i64)> = sqlx::query_as(
        "SELECT outcome, sum(deliveries)::bigint FROM delivery_totals GROUP BY outcome",
    )
    .fetch_all(db)
    .await?;
    stats.deliveries_by_outcome.extend(by_outcome);
    Ok(stats)
}
