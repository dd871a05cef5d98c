//! Retention (contract section 4): old delivery records and, when
//! configured, old finished lookups with their profiles are deleted in
//! small batches, so no purge holds locks or bloats a transaction.

use std::time::Duration;

use sqlx::PgPool;

/// Rows deleted per statement.
const BATCH: i64 = 1000;
/// Statements per purge run; the rest waits for the next run.
const MAX_BATCHES: usize = 20;

/// Deletes delivery records (and their stored bodies) older than `keep`,
/// and the marks of lookups gone as long ago (a delivery for one after that
/// is counted as new).
pub async fn purge_deliveries(db: &PgPool, keep: Duration) -> sqlx::Result<u64> {
    batches(
        db,
        "DELETE FROM gone_lookups WHERE lookup_sha256 IN (SELECT lookup_sha256 FROM gone_lookups \
         WHERE gone_on < (now() - make_interval(secs => $1))::date LIMIT $2)",
        keep,
    )
    .await?;
    batches(
        db,
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
         WHERE received_at < now() - make_interval(secs => $1) LIMIT $2)",
        keep,
    )
    .await
}

/// Deletes finished lookups completed (or expired; or created, if neither
/// time is known) longer than `keep` ago; their profiles, deliveries and
/// events go with them (foreign keys cascade), their spend stays counted
/// (the `lookups_gone` trigger).
pub async fn purge_lookups(db: &PgPool, keep: Duration) -> sqlx::Result<u64> {
    batches(
        db,
        "DELETE FROM lookups WHERE id IN (SELECT id FROM lookups \
         WHERE status IN ('completed', 'failed', 'expired') \
           AND COALESCE(completed_at, expired_at, created_at) \
               < now() - make_interval(secs => $1) LIMIT $2)",
        keep,
    )
    .await
}

async fn batches(db: &PgPool, sql: &str, keep: Duration) -> sqlx::Result<u64> {
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        let deleted = sqlx::query(sql)
            .bind(keep.as_secs_f64())
            .bind(BATCH)
            .execute(db)
            .await?
            .rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            break;
        }
    }
    Ok(total)
}
