//! The callback receiver (contract section 6): the token in the path is
//! checked in constant time, each delivery is applied at most once per
//! request_id and made durable before the 2xx, and every delivery is
//! recorded, refused ones included.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use crate::store::deliveries::{self, Delivery};
use crate::store::lookups;
use crate::store::results::{self, Outcome, Via};
use crate::token::{secrets_equal, sha256_hex};
use crate::upstream::payload::parse_job;

/// Largest callback body accepted.
pub const MAX_CALLBACK_BODY: usize = 1024 * 1024;

#[derive(Debug, Serialize, ToSchema)]
pub struct Acknowledgement {
    /// applied | duplicate
    pub outcome: &'static str,
}

/// Receive a result delivery from upstream.
#[utoipa::path(post, path = "/callbacks/{lookup_id}/{token}", tag = "callbacks",
    params(("lookup_id" = Uuid, Path), ("token" = String, Path, description = "this lookup's secret callback token")),
    request_body(content = inline(serde_json::Value), description = "the upstream job envelope, or its bare data object"),
    responses((status = 200, body = Acknowledgement),
        (status = 400, description = "not JSON, or no request_id/status", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown lookup or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "request_id belongs to another lookup", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "not stored; upstream should retry", body = Problem, content_type = "application/problem+json")))]
pub async fn receive(
    State(state): State<AppState>,
    Path((lookup_id, token)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Acknowledgement>)> {
    let authentic = match lookup_id.parse::<Uuid>() {
        Ok(id) => match lookups::callback_token(&state.db, id).await? {
            Some(expected) if secrets_equal(&expected, &token) => Some(id),
            _ => None,
        },
        Err(_) => None,
    };
    let refuse =
        |lookup_id: Option<Uuid>, reason: &'static str, digest: String, body: Option<Value>| {
            let db = state.db.clone();
            async move {
                metrics::counter!("callback_deliveries_total", "outcome" => "refused").increment(1);
                tracing::warn!(lookup_id = ?lookup_id, reason, "callback refused");
                deliveries::record(
                    &db,
                    Delivery {
                        lookup_id,
                        request_id: body
                            .as_ref()
                            .and_then(|b| crate::upstream::payload::job_object(b).get("request_id"))
                            .and_then(Value::as_str),
                        payload_status: None,
                        outcome: "refused",
                        reason: Some(reason),
                        body_sha256: &digest,
                        body: body.as_ref(),
                    },
                )
                .await
            }
        };

    let Some(lookup_id) = authentic else {
        let digest = body.as_ref().map(|b| sha256_hex(b)).unwrap_or_default();
        refuse(None, "unknown lookup or wrong token", digest, None).await?;
        return Err(ApiError::NotFound("no such callback"));
    };
    let bytes = match body {
        Ok(bytes) => bytes,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            refuse(Some(lookup_id), "body too large", String::new(), None).await?;
            return Err(ApiError::PayloadTooLarge(MAX_CALLBACK_BODY));
        }
        Err(rejection) => {
            refuse(Some(lookup_id), "body unreadable", String::new(), None).await?;
            return Err(ApiError::BadRequest(format!(
                "could not read the body: {rejection}"
            )));
        }
    };
    let digest = sha256_hex(&bytes);
    let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
        refuse(Some(lookup_id), "body is not JSON", digest, None).await?;
        return Err(ApiError::BadRequest(
            "callback body is not valid JSON".into(),
        ));
    };
    let update = match parse_job(&json) {
        Ok(update) => update,
        Err(e) => {
            refuse(
                Some(lookup_id),
                "body lacks request_id or status",
                digest,
                Some(json),
            )
            .await?;
            return Err(ApiError::BadRequest(format!("callback body unusable: {e}")));
        }
    };

    // Apply and record in one transaction: durable before the 2xx.
    let mut tx = state.db.begin().await?;
    let outcome = results::apply(&mut tx, lookup_id, &update, Via::Callback).await?;
    let reason = match outcome {
        Outcome::Refused(reason) => Some(reason),
        _ => None,
    };
    deliveries::record(
        &mut *tx,
        Delivery {
            lookup_id: Some(lookup_id),
            request_id: Some(&update.request_id),
            payload_status: Some(update.status_str()),
            outcome: outcome.as_str(),
            reason,
            body_sha256: &digest,
            body: Some(&json),
        },
    )
    .await?;
    crate::crashpoint::reach("callback_before_commit").await;
    tx.commit().await?;
    crate::crashpoint::reach("callback_after_commit").await;

    metrics::counter!("callback_deliveries_total", "outcome" => outcome.as_str()).increment(1);
    tracing::info!(
        %lookup_id,
        request_id = %update.request_id,
        status = update.status_str(),
        outcome = outcome.as_str(),
        "callback"
    );
    match outcome {
        Outcome::Refused(reason) => Err(ApiError::Conflict("request_id_mismatch", reason.into())),
        other => Ok((
            StatusCode::OK,
            Json(Acknowledgement {
                outcome: other.as_str(),
            }),
        )),
    }
}
