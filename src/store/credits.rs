//! Credits spent per UTC day, for the console's chart (lookups no longer
//! stored count through the spend ledger).

use chrono::NaiveDate;
use sqlx::PgPool;

/// One day: credits charged and lookups finished on it.
#[derive(Debug, sqlx::FromRow)]
pub struct Day {
    pub day: NaiveDate,
    pub credits: i64,
    pub completed: i64,
}

/// The last `days` UTC days, oldest first, today included, days without
/// spending as zero.
pub async fn per_day(db: &PgPool, days: i32) -> sqlx::Result<Vec<Day>> {
    sqlx::query_as(
        "WITH days AS ( \
           SELECT generate_series( \
             (now() AT TIME ZONE 'UTC')::date - ($1 - 1), \
             (now() AT TIME ZONE 'UTC')::date, \
             interval '1 day')::date AS day) \
         SELECT d.day, \
                (COALESCE(SUM(l.credits_charged), 0) \
                 + (SELECT COALESCE(SUM(s.credits), 0) FROM spend_ledger s WHERE s.day = d.day))::bigint \
                  AS credits, \
                COUNT(l.id)::bigint AS completed \
         FROM days d \
         LEFT JOIN lookups l \
           ON l.completed_at >= d.day::timestamp AT TIME ZONE 'UTC' \
          AND l.completed_at < (d.day + 1)::timestamp AT TIME ZONE 'UTC' \
         GROUP BY d.day ORDER BY d.day",
    )
    .bind(days)
    .fetch_all(db)
    .await
}
