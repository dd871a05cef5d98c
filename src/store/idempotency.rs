//! Idempotency-Key records, of `POST /v1/lookups` (the lookup and status
//! answered) and of `POST /v1/lookups/batch` (per-item statuses, lookup ids
//! and problems; never a subject), and the sealed keys of erased lookups.
//! Callers hold a transaction: [`lock`] serialises requests with the same
//! key until it commits, so the second of two concurrent requests sees the
//! first one's record; a recorded key is replayed, never executed again.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// Which endpoint a key belongs to: the same key may be used on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Lookup,
    Batch,
}

pub async fn lock(tx: &mut PgConnection, scope: Scope, key: &str) -> sqlx::Result<()> {
    let namespace = match scope {
        Scope::Lookup => "idempotency:",
        Scope::Batch => "batch-idempotency:",
    };
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || $2, 0))")
        .bind(namespace)
        .bind(key)
        .execute(tx)
        .await?;
    Ok(())
}

/// A `POST /v1/lookups` record.
pub struct Stored {
    pub request_sha256: String,
    pub lookup_id: Option<Uuid>,
    pub response_status: i16,
}

pub async fn find(tx: &mut PgConnection, key: &str) -> sqlx::Result<Option<Stored>> {
    let row: Option<(String, Option<Uuid>, i16)> = sqlx::query_as(
        "SELECT request_sha256, lookup_id, response_status FROM idempotency_keys WHERE key = $1",
    )
    .bind(key)
    .fetch_optional(tx)
    .await?;
    Ok(
        row.map(|(request_sha256, lookup_id, response_status)| Stored {
            request_sha256,
            lookup_id,
            response_status,
        }),
    )
}

/// Remembers the keys of erased lookups, as keyed hashes `(key, request)`.
pub async fn remember_erased(
    tx: &mut PgConnection,
    sealed: &[(String, String)],
) -> sqlx::Result<()> {
    let (keys, requests): (Vec<&str>, Vec<&str>) =
        sealed.iter().map(|(k, r)| (k.as_str(), r.as_str())).unzip();
    sqlx::query(
        "INSERT INTO erased_idempotency_keys (key_hash, request_hash) \
         SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(keys)
    .bind(requests)
    .execute(tx)
    .await?;
    Ok(())
}

/// The request hash recorded for an erased key, found by any of
/// `key_hashes` (one per accepted secret).
pub async fn find_erased(
    tx: &mut PgConnection,
    key_hashes: &[String],
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT request_hash FROM erased_idempotency_keys WHERE key_hash = ANY($1) LIMIT 1",
    )
    .bind(key_hashes)
    .fetch_optional(tx)
    .await
}

pub async fn insert(
    tx: &mut PgConnection,
    key: &str,
    request_sha256: &str,
    lookup_id: Uuid,
    response_status: u16,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO idempotency_keys (key, request_sha256, lookup_id, response_status) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(key)
    .bind(request_sha256)
    .bind(lookup_id)
    .bind(response_status as i16)
    .execute(tx)
    .await?;
    Ok(())
}

/// A `POST /v1/lookups/batch` record.
pub struct StoredBatch {
    pub request_sha256: String,
    pub answers: Value,
}

pub async fn find_batch(tx: &mut PgConnection, key: &str) -> sqlx::Result<Option<StoredBatch>> {
    let row: Option<(String, Value)> =
        sqlx::query_as("SELECT request_sha256, answers FROM batch_idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_optional(tx)
            .await?;
    Ok(row.map(|(request_sha256, answers)| StoredBatch {
        request_sha256,
        answers,
    }))
}

/// Records the answers of a batch under its key. Callers hold [`lock`] and
/// found no record.
pub async fn insert_batch(
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
