//! Middleware in front of the upstream API: authentication, then the rate
//! limit, and the rate-limit headers on every answer, as the provider does.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth;
use super::envelope::ApiError;
use super::ratelimit::{Decision, apply_headers, ceil_secs};
use super::shared::Shared;
use super::stats::add;

/// Authenticates, counts the request against the account's windows (only
/// authenticated requests belong to the account) and tags the answer.
pub async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let is_submit = request.method() == Method::POST;
    let now = Instant::now();
    if let Err(err) = auth::check(&shared.config, request.headers()) {
        if is_submit {
            add(&shared.stats.submits_refused, 1);
        }
        let snapshot = shared.limiter().peek(now);
        let mut response = err.into_response();
        apply_headers(response.headers_mut(), &snapshot);
        return response;
    }
    let decision = shared.limiter().check(now);
    match decision {
        Decision::Allowed(snapshot) => {
            let mut response = next.run(request).await;
            apply_headers(response.headers_mut(), &snapshot);
            response
        }
        Decision::Refused {
            snapshot,
            retry_after,
        } => {
            super::stats::rate_limited(&shared.stats);
            if is_submit {
                add(&shared.stats.submits_refused, 1);
            }
            tracing::info!(
                retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
                "sandbox rate limit exceeded"
            );
            let mut response = ApiError::rate_limited(ceil_secs(retry_after)).into_response();
            apply_headers(response.headers_mut(), &snapshot);
            response
        }
    }
}
