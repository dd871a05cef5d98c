//! Retention (contract section 4): old delivery records and, when
//! configured, old finished lookups with their profiles are deleted in
//! small batches, so no purge holds locks or bloats a transaction.

use std::time::Duration;

use sqlx::PgPool;

use super::versions;

/// Rows deleted per statement.
const BATCH: i64 = 1000;
/// Statements per purge run; the rest waits for the next run.
const MAX_BATCHES: usize = 20;

/// Deletes delivery records (and their stored bodies) older than `keep`.
pub async fn purge_deliveries(db: &PgPool, keep: Duration) -> sqlx::Result<u64> {
    batches(
        db,
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
         WHERE received_at < now() - make_interval(secs => $1) LIMIT $2)",
        keep,
    )
    .await
}

/// Deletes finished lookups completed (or created, if never completed)
/// longer than `keep` ago; their profiles, deliveries and events go with
/// them (foreign keys cascade). The newest profile of each person stays,
/// however old (issue 18: retention prunes the history, not the person's
/// current profile); a later version of that person lets it go.
pub async fn purge_lookups(db: &PgPool, keep: Duration) -> sqlx::Result<u64> {
    batches(
        db,
        &format!(
            "DELETE FROM lookups WHERE id IN (SELECT l.id FROM lookups l \
             WHERE l.status IN ('completed', 'failed', 'expired') \
               AND COALESCE(l.completed_at, l.created_at) < now() - make_interval(secs => $1) \
               AND NOT EXISTS (SELECT 1 FROM profiles p WHERE p.lookup_id = l.id \
                 AND NOT ({superseded})) \
             LIMIT $2)",
            superseded = versions::SUPERSEDED
        ),
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
