//! An authentic delivery, from its bytes to its record: parsed, made fit to
//! store ([`Intake`]), applied at most once per request_id and recorded in
//! one transaction (with others that arrived meanwhile, see
//! [`super::applier`]) before it is acknowledged; or, when it cannot be used,
//! recorded as refused (upstream sent it, so the record is worth its row;
//! forged deliveries never get here, see [`super::gate`]).

use serde_json::Value;
use uuid::Uuid;

use super::Intake;
use super::applier::{Applier, Ready};
use crate::lifecycle::Outcome;
use crate::store::deliveries::{self, Delivery};
use crate::token::sha256_hex;
use crate::upstream::payload::{MAX_REQUEST_ID, PayloadError, job_object, parse_job};

/// What became of a delivery whose body was read.
#[derive(Debug)]
pub enum Delivered {
    /// Applied, a duplicate, refused by the lookup, or for a lookup gone.
    Applied(Outcome),
    /// Not JSON: recorded as refused, nothing applied.
    NotJson,
    /// JSON without a usable `request_id` or `status`: recorded as
    /// refused, nothing applied.
    Unusable(PayloadError),
}

/// Applies the delivery `bytes` to lookup `lookup_id` (through `applier`,
/// which answers once it is durable), or records why it could not be used.
pub async fn deliver(
    db: &sqlx::PgPool,
    applier: &Applier,
    intake: &Intake,
    lookup_id: Uuid,
    bytes: &[u8],
) -> sqlx::Result<Delivered> {
    let digest = sha256_hex(bytes);
    let Ok(mut json) = serde_json::from_slice::<Value>(bytes) else {
        refuse(db, lookup_id, "body is not JSON", &digest, None).await?;
        return Ok(Delivered::NotJson);
    };
    let mut update = match parse_job(&json) {
        Ok(update) => update,
        Err(e) => {
            intake.body(&mut json);
            let reason = "body lacks a usable request_id or status";
            refuse(db, lookup_id, reason, &digest, Some(&json)).await?;
            return Ok(Delivered::Unusable(e));
        }
    };
    intake.update(&mut update);
    intake.body(&mut json);

    let (request_id, status) = (update.request_id.clone(), update.status());
    let outcome = applier
        .apply(Ready {
            lookup_id,
            update,
            body_sha256: digest,
            body: json,
        })
        .await?;
    metrics::counter!("callback_deliveries_total", "outcome" => outcome.as_str()).increment(1);
    tracing::info!(
        %lookup_id,
        %request_id,
        status = status.as_str(),
        outcome = outcome.as_str(),
        "callback"
    );
    Ok(Delivered::Applied(outcome))
}

/// Records an authentic delivery that could not be used.
pub async fn refuse(
    db: &sqlx::PgPool,
    lookup_id: Uuid,
    reason: &'static str,
    digest: &str,
    body: Option<&Value>,
) -> sqlx::Result<()> {
    metrics::counter!("callback_deliveries_total", "outcome" => "refused").increment(1);
    tracing::warn!(%lookup_id, reason, "callback refused");
    deliveries::record(
        db,
        Delivery {
            lookup_id: Some(lookup_id),
            request_id: body
                .map(job_object)
                .and_then(|b| b.get("request_id"))
                .and_then(Value::as_str)
                .filter(|r| r.len() <= MAX_REQUEST_ID),
            payload_status: None,
            outcome: "refused",
            reason: Some(reason),
            body_sha256: digest,
            body,
        },
    )
    .await
}
