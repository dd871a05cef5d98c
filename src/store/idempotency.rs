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
