//! The record of every callback delivery that reached the receiver.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

/// One delivery, whatever became of it.
pub struct Delivery<'a> {
    pub lookup_id: Option<Uuid>,
    pub request_id: Option<&'a str>,
    pub payload_status: Option<&'a str>,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub body_sha256: &'a str,
    pub body: Option<&'a Value>,
}

/// Records a delivery; nothing when its lookup is gone (erased, or removed
/// by retention), whose deliveries keep nothing.
pub async fn record(db: impl PgExecutor<'_>, d: Delivery<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO deliveries (lookup_id, request_id, payload_status, outcome, reason, \
           body_sha256, body) SELECT $1, $2, $3, $4, $5, $6, $7 \
         WHERE $1::uuid IS NULL OR EXISTS (SELECT 1 FROM lookups WHERE id = $1)",
    )
    .bind(d.lookup_id)
    .bind(d.request_id)
    .bind(d.payload_status)
    .bind(d.outcome)
    .bind(d.reason)
    .bind(d.body_sha256)
    .bind(d.body)
    .execute(db)
    .await?;
    Ok(())
}

/// One delivery as listed (no body).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub id: i64,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub lookup_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub payload_status: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
}

/// Deliveries newest first, optionally of one lookup and/or one outcome,
/// after the keyset position `before` (a delivery id); `limit + 1` rows.
pub async fn list(
    db: &sqlx::PgPool,
    lookup_id: Option<Uuid>,
    outcome: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryRecord>> {
    sqlx::query_as(
        "SELECT id, received_at, lookup_id, request_id, payload_status, outcome, reason \
         FROM deliveries \
         WHERE ($1::uuid IS NULL OR lookup_id = $1) AND ($2::text IS NULL OR outcome = $2) \
           AND ($3::bigint IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4",
    )
    .bind(lookup_id)
    .bind(outcome)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(db)
    .await
}
