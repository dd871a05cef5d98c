//! Idempotency-Key records of `POST /v1/lookups`. Callers hold a transaction:
//! `lock` serialises requests with the same key until it commits, so the
//! second of two concurrent requests sees the first one's record.

use sqlx::PgConnection;
use uuid::Uuid;

pub struct Stored {
    pub request_sha256: String,
    pub lookup_id: Option<Uuid>,
    pub response_status: i16,
}

pub async fn lock(tx: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('idempotency:' || $1, 0))")
        .bind(key)
        .execute(tx)
        .await?;
    Ok(())
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
