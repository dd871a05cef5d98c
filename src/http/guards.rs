//! Middleware that keeps what clients send within bounds, answering every
//! refusal as problem+json: oversized request lines and header sections,
//! requests that take too long, load beyond what the process can take, and
//! request ids that are not short and plain.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Longest request target (path and query) accepted.
pub const MAX_URI: usize = 8 * 1024;
/// Largest header section accepted (names and values).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields accepted.
pub const MAX_HEADERS: usize = 100;
/// Longest client `X-Request-Id` kept.
pub const MAX_REQUEST_ID: usize = 64;

/// 414 and 431 as problem documents (hyper's own, for far larger inputs,
/// have no body).
pub async fn bounded_request(request: Request, next: Next) -> Response {
    if request.uri().to_string().len() > MAX_URI {
        return ApiError::UriTooLong(MAX_URI).into_response();
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge(MAX_HEADERS, MAX_HEADER_BYTES).into_response();
    }
    next.run(request).await
}

/// A client's `X-Request-Id` is kept only when short and plain; otherwise
/// it is dropped and a fresh one is made (it is echoed and logged).
pub async fn plain_request_id(mut request: Request, next: Next) -> Response {
    let plain = request.headers().get("x-request-id").is_none_or(|v| {
        let v = v.as_bytes();
        !v.is_empty()
            && v.len() <= MAX_REQUEST_ID
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
    });
    if !plain {
        request.headers_mut().remove("x-request-id");
    }
    next.run(request).await
}

/// Longest a `POST /v1/lookups/batch` of up to 1,000 items may take.
pub const BATCH_TIMEOUT: Duration = Duration::from_secs(25);

/// Ends a request that takes longer than `limit` (a batch: [`BATCH_TIMEOUT`])
/// with a 503 problem. Only the time to the response head counts: an event
/// stream's body runs on.
pub async fn deadline(limit: Duration, request: Request, next: Next) -> Response {
    let limit = if request.uri().path() == "/v1/lookups/batch" {
        BATCH_TIMEOUT
    } else {
        limit
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => retry_later(ApiError::Timeout, "1"),
    }
}

/// The answer of the load-shedding layer when the process is at capacity.
pub fn overloaded() -> Response {
    retry_later(ApiError::Overloaded, "1")
}

/// A 503 problem answer (`error`) asking the client to come back after
/// `seconds`: capacity running out, not a failure.
pub fn retry_later(error: ApiError, seconds: &'static str) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    debug_assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    response
}

/// Methods outside the standard set are one metrics label, so made-up
/// methods cannot add series without bound.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}
