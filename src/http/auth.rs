//! Bearer-token check for `/v1/*`.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use crate::auth::Access;

pub async fn require_bearer(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme name is case-insensitive (RFC 9110).
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let caller = match presented {
        Some(token) => state.config.api_tokens.identify(token).cloned(),
        // No Authorization header: the console's session cookie, with its
        // CSRF check on writes (src/http/session.rs).
        None => match super::session::authenticate(&state, &request) {
            Some(Ok(caller)) => Some(caller),
            Some(Err(refusal)) => return Ok(refusal),
            None => None,
        },
    };
    let Some(caller) = caller else {
        return Err(ApiError::Unauthorized);
    };
    if caller.access == Access::Read && !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Err(ApiError::ReadOnlyToken);
    }
    let mut request = request;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}
