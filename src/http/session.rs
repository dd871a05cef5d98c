//! Console sessions: an API token exchanged once for a signed cookie.
//!
//! `POST /console/session` takes `{"token": "…"}`, checks it like a bearer
//! token and answers with an `HttpOnly`, `SameSite=Strict` cookie (`Secure`
//! when the service is reached over https) holding the caller's name, access
//! and expiry, signed with HMAC-SHA256 under the `ConsoleSession` key derived
//! from `SERVICE_SECRET` (`crate::auth::session`). The token itself is
//! never stored: not in the cookie, not in a URL, not in the browser's
//! storage.
//!
//! The bearer middleware ([`super::auth`]) accepts this cookie on `/v1/*`
//! when no `Authorization` header is sent, so the console and its
//! `EventSource` use the plain REST API. A cookie travels with cross-site
//! requests too, so every write made with it must also carry the
//! `X-CSRF-Token` header (a MAC of the session, which a page on another site
//! can neither read nor compute) and must not come from another origin
//! (`Origin`, `Sec-Fetch-Site`): else 403 `csrf_refused`.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, Problem};
use crate::auth::session::{SESSION_SECS, Session};
use crate::auth::{Access, Caller};

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "ir_console";
/// Header that must repeat the session's CSRF token on every cookie write.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The signed-in caller as the console sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The token's name.
    pub name: String,
    /// `read` or `read_write`.
    pub access: &'static str,
    /// Value to send as `X-CSRF-Token` on every write.
    pub csrf_token: String,
    /// RFC 3339 time the session ends.
    pub expires_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// An API token (read-write or read-only).
    pub token: String,
}

/// The session of the request's cookie, if valid.
fn session_of(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let config = &state.config;
    Session::verify(
        &config.service_secret,
        &config.api_tokens,
        cookie_value(headers)?,
    )
}

fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

/// The session's caller from the cookie, for the bearer middleware: `None`
/// when there is no valid session cookie (the middleware answers 401), or
/// `Some(Err(response))` when a write lacks the CSRF proof.
pub fn authenticate(state: &AppState, request: &Request) -> Option<Result<Caller, Response>> {
    let session = session_of(state, request.headers())?;
    if is_write(request.method()) {
        if let Err(reason) = check_same_origin(request.headers()) {
            return Some(Err(csrf_refused(reason)));
        }
        let expected = session.csrf_token(&state.config.service_secret);
        let presented = request
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !bool::from(presented.ct_eq(expected.as_bytes())) {
            return Some(Err(csrf_refused(
                "a write made with the console session needs its X-CSRF-Token header",
            )));
        }
    }
    Some(Ok(session.caller))
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses requests a browser marks as coming from another site or origin
/// (the reason, for the 403).
fn check_same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err("cross-site request refused");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
        if origin == "null" || !origin_host.eq_ignore_ascii_case(host) {
            return Err("request from another origin refused");
        }
    }
    Ok(())
}

fn csrf_refused(detail: &str) -> Response {
    problem(StatusCode::FORBIDDEN, "csrf_refused", "Forbidden", detail)
}

fn problem(status: StatusCode, kind: &'static str, title: &'static str, detail: &str) -> Response {
    let mut response = (
        status,
        Json(Problem {
            kind,
            title,
            status: status.as_u16(),
            detail: detail.to_owned(),
            errors: None,
        }),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// `Secure` when the console is reached over https: directly (a public
/// https base URL) or through a proxy that says so.
fn is_https(state: &AppState, headers: &HeaderMap) -> bool {
    let proxied = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    proxied
        || state
            .config
            .public_base_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
}

fn set_cookie(state: &AppState, headers: &HeaderMap, value: &str, max_age: i64) -> HeaderValue {
    let secure = if is_https(state, headers) {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("cookie is ASCII")
}

fn view(state: &AppState, session: &Session) -> SessionView {
    SessionView {
        name: session.caller.name.clone(),
        access: if session.caller.access == Access::ReadWrite {
            "read_write"
        } else {
            "read"
        },
        csrf_token: session.csrf_token(&state.config.service_secret),
        expires_at: chrono::DateTime::from_timestamp(session.expires_at, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// Signs in: exchanges an API token for a session cookie.
#[utoipa::path(post, path = "/console/session", tag = "console", request_body = SignIn,
    responses(
        (status = 200, body = SessionView, description = "signed in; the session cookie is set"),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "not JSON"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "not an accepted token"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "sign-in from another origin"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "no token field")))]
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // A forged sign-in would put the victim into the attacker's session.
    if let Err(reason) = check_same_origin(&headers) {
        return Ok(csrf_refused(reason));
    }
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))?;
    let SignIn { token } = serde_json::from_value(value)
        .map_err(|e| ApiError::field("token", format!("expected {{\"token\": \"…\"}}: {e}")))?;
    let caller = state
        .config
        .api_tokens
        .identify(token.trim())
        .ok_or(ApiError::Unauthorized)?
        .clone();
    let (session, cookie) = Session::sign(&state.config.service_secret, &caller);
    let mut response = Json(view(&state, &session)).into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        set_cookie(&state, &headers, &cookie, SESSION_SECS),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The current session: who is signed in, and the CSRF token for writes.
#[utoipa::path(get, path = "/console/session", tag = "console",
    responses(
        (status = 200, body = SessionView),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "no valid session")))]
pub async fn current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session_of(&state, &headers).ok_or(ApiError::Unauthorized)?;
    let mut response = Json(view(&state, &session)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Signs out: the cookie is cleared.
#[utoipa::path(delete, path = "/console/session", tag = "console",
    responses(
        (status = 204, description = "signed out"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "sign-out from another origin")))]
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(reason) = check_same_origin(&headers) {
        return csrf_refused(reason);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, set_cookie(&state, &headers, "", 0));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_and_foreign_origin_writes_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(check_same_origin(&h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.test"));
        assert!(check_same_origin(&h).is_err());
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_same_origin(&h).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(check_same_origin(&h).is_err());
    }
}
