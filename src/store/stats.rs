//! Counters for `GET /v1/stats` and the `/metrics` gauges.

use std::collections::BTreeMap;

use sqlx::PgPool;
use sqlx::types::Json;

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

/// One row of kept totals and small indexed reads (see [`read`]).
#[derive(sqlx::FromRow)]
struct Row {
    by_status: Json<BTreeMap<String, i64>>,
    synthetic: i64,
    credits_today: i64,
    credits_this_month: i64,
    credits_total: i64,
    polls: i64,
    submits: i64,
    ambiguous: i64,
    ambiguous_waiting: i64,
    oldest_unfinished_secs: Option<f64>,
    forged: i64,
    by_outcome: Json<BTreeMap<String, i64>>,
}

/// Reads the kept totals (migration `kept_totals`): a few dozen rows
/// whatever the size of the tables, and two reads of small partial indexes
/// (the oldest lookup in flight is the first entry of `lookups_unfinished`,
/// as `ORDER BY … LIMIT 1`: as `min()` the planner, misled by statistics
/// taken when few lookups were in flight, read all of them on every
/// scrape; the ambiguous submits have `lookups_ambiguous_waiting`), exact
/// as of the last commit, in one
/// query (one connection, one round trip: `/metrics` may be scraped
/// often). Credits include the spend of lookups no longer stored (erased,
/// or removed by retention), from the spend ledger.
pub async fn read(db: &PgPool) -> sqlx::Result<Stats> {
    let row: Row = sqlx::query_as(&format!(
        "WITH today AS (SELECT (now() AT TIME ZONE 'UTC')::date AS day), \
         month AS (SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date AS day) \
         SELECT \
           (SELECT COALESCE(jsonb_object_agg(status, n), '{{}}') FROM ( \
              SELECT status, sum(lookups)::bigint AS n FROM lookup_totals GROUP BY status) s) \
             AS by_status, \
           (SELECT COALESCE(sum(synthetic), 0)::bigint FROM lookup_totals) AS synthetic, \
           (SELECT COALESCE(sum(credits), 0) FROM day_totals WHERE day = (SELECT day FROM today))::bigint \
             + (SELECT COALESCE(sum(credits), 0) FROM spend_ledger WHERE day >= (SELECT day FROM today))::bigint \
             AS credits_today, \
           (SELECT COALESCE(sum(credits), 0) FROM day_totals WHERE day >= (SELECT day FROM month))::bigint \
             + (SELECT COALESCE(sum(credits), 0) FROM spend_ledger WHERE day >= (SELECT day FROM month))::bigint \
             AS credits_this_month, \
           (SELECT COALESCE(sum(credits), 0) FROM day_totals)::bigint \
             + (SELECT COALESCE(sum(credits), 0) FROM spend_ledger)::bigint AS credits_total, \
           (SELECT COALESCE(sum(polls), 0)::bigint FROM work_totals) AS polls, \
           (SELECT COALESCE(sum(submits), 0)::bigint FROM work_totals) AS submits, \
           (SELECT COALESCE(sum(ambiguous), 0)::bigint FROM work_totals) AS ambiguous, \
           (SELECT count(*) FROM lookups WHERE status = 'pending' AND request_id IS NULL \
             AND ambiguous_submits > 0 AND submit_started_at IS NULL) AS ambiguous_waiting, \
           (SELECT EXTRACT(EPOCH FROM now() - created_at)::float8 FROM lookups \
             WHERE status IN {IN_FLIGHT_SQL} ORDER BY created_at LIMIT 1) AS oldest_unfinished_secs, \
           (SELECT COALESCE(sum(count), 0)::bigint FROM forged_callbacks) AS forged, \
           (SELECT COALESCE(jsonb_object_agg(outcome, n), '{{}}') FROM ( \
              SELECT outcome, sum(deliveries)::bigint AS n FROM delivery_totals GROUP BY outcome) d) \
             AS by_outcome"
    ))
    .fetch_one(db)
    .await?;
    let mut stats = Stats::default();
    for status in LookupStatus::ALL {
        stats.lookups_by_status.insert(status.as_str().into(), 0);
    }
    stats.lookups_by_status.extend(row.by_status.0);
    for outcome in ["applied", "duplicate", "refused"] {
        stats.deliveries_by_outcome.insert(outcome.into(), 0);
    }
    stats.deliveries_by_outcome.extend(row.by_outcome.0);
    stats.synthetic_lookups = row.synthetic;
    stats.credits_today = row.credits_today;
    stats.credits_this_month = row.credits_this_month;
    stats.credits_total = row.credits_total;
    stats.polls_made = row.polls;
    stats.submits_made = row.submits;
    stats.ambiguous_submits = row.ambiguous;
    stats.ambiguous_waiting = row.ambiguous_waiting;
    stats.oldest_unfinished_secs = row.oldest_unfinished_secs;
    stats.forged_callbacks = row.forged;
    Ok(stats)
}
