//! The callback receiver (contract section 6). The token in the path is
//! checked before anything else (see `crate::callback_gate`); an authentic
//! delivery is applied at most once per request_id and made durable, with
//! its record, in one statement before the 2xx. A delivery for a lookup that
//! is gone (erased, or removed by retention) is acknowledged and keeps
//! nothing but its credits in the day's spend.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::{AppState, Unlogged};
use crate::lifecycle::Outcome;
use crate::store::deliveries::{self, Delivery};
use crate::store::results::{self, DeliveryRecord, Via};
use crate::token::sha256_hex;
use crate::upstream::payload::{job_object, parse_job};

/// Largest callback body accepted.
pub const MAX_CALLBACK_BODY: usize = 1024 * 1024;

#[derive(Debug, Serialize, ToSchema)]
pub struct Acknowledgement {
    /// applied | duplicate | gone (the lookup was erased or removed by
    /// retention: nothing of the delivery was kept)
    pub outcome: &'static str,
}

/// Receive a result delivery from upstream.
#[utoipa::path(post, path = "/callbacks/{lookup_id}/{token}", tag = "callbacks",
    params(("lookup_id" = Uuid, Path), ("token" = String, Path, description = "this lookup's secret callback token")),
    request_body(content = inline(serde_json::Value), description = "the upstream job envelope, or its bare data object"),
    responses((status = 200, description = "stored, a duplicate, or for a lookup that is gone (nothing kept)", body = Acknowledgement),
        (status = 400, description = "not JSON, no request_id/status, or a request_id over 256 characters", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown lookup or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "request_id belongs to another lookup", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "not stored; upstream should retry", body = Problem, content_type = "application/problem+json")))]
pub async fn receive(
    State(state): State<AppState>,
    Path((lookup_id, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let lookup_id = match state.gate.check(&state.db, &lookup_id, &token).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            state.gate.refuse();
            let mut refused = ApiError::NotFound("no such callback").into_response();
            refused.extensions_mut().insert(Unlogged);
            return refused;
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    match authentic(&state, lookup_id, &headers, body).await {
        Ok(acknowledged) => acknowledged.into_response(),
        Err(e) => e.into_response(),
    }
}

/// An authentic delivery: read, parsed, applied and recorded.
async fn authentic(
    state: &AppState,
    lookup_id: Uuid,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Acknowledgement>)> {
    let bytes = match read_body(headers, body).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let reason = match e {
                ApiError::PayloadTooLarge(_) => "body too large",
                _ => "body unreadable",
            };
            refuse(state, lookup_id, reason, "", None).await?;
            return Err(e);
        }
    };
    let digest = sha256_hex(&bytes);
    let Ok(mut json) = serde_json::from_slice::<Value>(&bytes) else {
        refuse(state, lookup_id, "body is not JSON", &digest, None).await?;
        return Err(ApiError::BadRequest(
            "callback body is not valid JSON".into(),
        ));
    };
    let mut update = match parse_job(&json) {
        Ok(update) => update,
        Err(e) => {
            state.intake.body(&mut json);
            refuse(
                state,
                lookup_id,
                "body lacks a usable request_id or status",
                &digest,
                Some(&json),
            )
            .await?;
            return Err(ApiError::BadRequest(format!("callback body unusable: {e}")));
        }
    };
    state.intake.update(&mut update);
    state.intake.body(&mut json);

    crate::crashpoint::reach("callback_before_commit").await;
    let delivery = DeliveryRecord {
        body_sha256: &digest,
        body: &json,
    };
    let mut tx = state.db.begin().await?;
    let outcome =
        results::apply(&mut tx, lookup_id, &update, Via::Callback, Some(delivery)).await?;
    tx.commit().await?;
    crate::crashpoint::reach("callback_after_commit").await;

    metrics::counter!("callback_deliveries_total", "outcome" => outcome.as_str()).increment(1);
    tracing::info!(
        %lookup_id,
        request_id = %update.request_id,
        status = update.status().as_str(),
        outcome = outcome.as_str(),
        "callback"
    );
    match outcome {
        Outcome::Refused(reason) => Err(ApiError::Conflict("request_id_mismatch", reason)),
        other => Ok((
            StatusCode::OK,
            Json(Acknowledgement {
                outcome: other.as_str(),
            }),
        )),
    }
}

/// Reads an authentic delivery's body, at most [`MAX_CALLBACK_BODY`]. A
/// declared length over the limit is refused without reading.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_CALLBACK_BODY as u64) {
        return Err(ApiError::PayloadTooLarge(MAX_CALLBACK_BODY));
    }
    axum::body::to_bytes(body, MAX_CALLBACK_BODY)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::PayloadTooLarge(MAX_CALLBACK_BODY)
            } else {
                ApiError::BadRequest("could not read the body".into())
            }
        })
}

/// Records an authentic delivery that could not be used (upstream sent it,
/// so the record is worth its row; forged ones never get here).
async fn refuse(
    state: &AppState,
    lookup_id: Uuid,
    reason: &'static str,
    digest: &str,
    body: Option<&Value>,
) -> ApiResult<()> {
    metrics::counter!("callback_deliveries_total", "outcome" => "refused").increment(1);
    tracing::warn!(%lookup_id, reason, "callback refused");
    deliveries::record(
        &state.db,
        Delivery {
            lookup_id: Some(lookup_id),
            request_id: body
                .map(job_object)
                .and_then(|b| b.get("request_id"))
                .and_then(Value::as_str)
                .filter(|r| r.len() <= crate::upstream::payload::MAX_REQUEST_ID),
            payload_status: None,
            outcome: "refused",
            reason: Some(reason),
            body_sha256: digest,
            body,
        },
    )
    .await?;
    Ok(())
}
