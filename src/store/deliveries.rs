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

pub async fn record(db: impl PgExecutor<'_>, d: Delivery<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO deliveries (lookup_id, request_id, payload_status, outcome, reason, \
           body_sha256, body) VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
