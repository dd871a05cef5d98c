//! The callback receiver (contract section 6). The token in the path is
//! checked before anything else (see `crate::callbacks::gate`); an authentic
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
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::{AppState, Unlogged};
use crate::callbacks::{self, apply::Delivered};
use crate::lifecycle::Outcome;

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

/// An authentic delivery: its body read here, the rest done by
/// [`callbacks::apply::deliver`], the answer rendered here.
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
            callbacks::apply::refuse(&state.db, lookup_id, reason, "", None).await?;
            return Err(e);
        }
    };
    match callbacks::apply::deliver(&state.db, &state.applier, &state.intake, lookup_id, &bytes)
        .await?
    {
        Delivered::NotJson => Err(ApiError::BadRequest(
            "callback body is not valid JSON".into(),
        )),
        Delivered::Unusable(e) => Err(ApiError::BadRequest(format!("callback body unusable: {e}"))),
        Delivered::Applied(Outcome::Refused(reason)) => {
            Err(ApiError::Conflict("request_id_mismatch", reason))
        }
        Delivered::Applied(other) => Ok((
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
