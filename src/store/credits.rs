//! Credits spent per UTC day, for the console's chart: the kept day totals
//! of stored lookups, plus the spend ledger of lookups no longer stored.

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
                (COALESCE(SUM(t.credits), 0) \
                 + (SELECT COALESCE(SUM(s.credits), 0) FROM spend_ledger s WHERE s.day = d.day))::bigint \
                  AS credits, \
                COALESCE(SUM(t.finished), 0)::bigint AS completed \
         FROM days d LEFT JOIN day_totals t ON t.day = d.day \
         GROUP BY d.day ORDER BY d.day",
    )
    .bind(days)
    .fetch_all(db)
    .await
}
