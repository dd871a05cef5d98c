//! Idempotency-Key records of `POST /v1/lookups/batch`. Callers hold a
//! transaction: `lock` serialises batches with the same key until it
//! commits, so the second of two concurrent batches sees the first one's
//! record. Only per-item statuses, lookup ids and problems are kept.

use serde_json::Value;
use sqlx::PgConnection;

pub struct Stored {
    pub request_sha256: String,
    pub answers: Value,
}

pub async fn lock(tx: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('batch-idempotency:' || $1, 0))")
        .bind(key)
        .execute(tx)
        .await?;
    Ok(())
}

pub async fn find(tx: &mut PgConnection, key: &str) -> sqlx::Result<Option<Stored>> {
    let row: Option<(String, Value)> =
        sqlx::query_as("SELECT request_sha256, answers FROM batch_idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_optional(tx)
            .await?;
    Ok(row.map(|(request_sha256, answers)| Stored {
        request_sha256,
        answers,
    }))
}

/// Records the answers of a batch under its key. Callers hold [`lock`] and
/// found no record: a recorded key is replayed, never executed again.
pub async fn store(
    tx: &mut PgConnection,
    key: &str,
    request_sha256: &str,
    answers: &Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO batch_idempotency_keys (key, request_sha256, answers) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET request_sha256 = EXCLUDED.request_sha256, \
           answers = EXCLUDED.answers, created_at = now()",
    )
    .bind(key)
    .bind(request_sha256)
    .bind(answers)
    .execute(tx)
    .await?;
    Ok(())
}
