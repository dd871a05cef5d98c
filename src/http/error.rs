//! One error type for the HTTP layer, answered as RFC 9457
//! `application/problem+json`. 500s are logged once here and never leak
//! their cause to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::lookups::RequestError;
use crate::subject::FieldError;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable machine-readable problem name, e.g. `validation_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// The offending fields of a validation error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("this token may only read (GET); ask for a read-write token")]
    ReadOnlyToken,
    #[error("{0}")]
    NotFound(&'static str),
    #[error("this endpoint does not answer that method")]
    MethodNotAllowed,
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Conflict(&'static str, String),
    #[error("{1}")]
    Gone(&'static str, String),
    #[error("{0}")]
    TooManyRequests(&'static str, String),
    #[error("the database is unavailable")]
    Unavailable,
    #[error("the request target is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("the request has more than {0} header fields or more than {1} bytes of headers")]
    HeadersTooLarge(usize, usize),
    #[error("the request took too long; try again")]
    Timeout,
    #[error("the service is at capacity; try again shortly")]
    Overloaded,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// The problem document this error is answered with.
    pub fn problem(&self) -> Problem {
        let (status, kind, title) = match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", "Bad request"),
            ApiError::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
                "Invalid request",
            ),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::ReadOnlyToken => (StatusCode::FORBIDDEN, "read_only_token", "Forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            ApiError::Conflict(kind, _) => (StatusCode::CONFLICT, *kind, "Conflict"),
            ApiError::Gone(kind, _) => (StatusCode::GONE, *kind, "Gone"),
            ApiError::TooManyRequests(kind, _) => {
                (StatusCode::TOO_MANY_REQUESTS, *kind, "Too many requests")
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service unavailable",
            ),
            ApiError::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long", "URI too long"),
            ApiError::HeadersTooLarge(..) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "Request header fields too large",
            ),
            ApiError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "Service unavailable",
            ),
            ApiError::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Service unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal server error",
            ),
        };
        let detail = match self {
            ApiError::Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        Problem {
            kind,
            title,
            status: status.as_u16(),
            detail,
            errors: match self {
                ApiError::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // WorkerCrashed: the callback applier that held the delivery
            // stopped before answering (nothing of it was committed).
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::Unavailable
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Suppressed => ApiError::Conflict("subject_suppressed", e.to_string()),
            RequestError::BudgetExhausted(_) => {
                ApiError::TooManyRequests("credit_budget_exhausted", e.to_string())
            }
            RequestError::Erased => ApiError::Gone("lookup_erased", e.to_string()),
            RequestError::IdempotencyConflict => ApiError::Validation(vec![FieldError::new(
                "Idempotency-Key",
                "already used with a different request body",
            )]),
            RequestError::Database(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = ?e, "request failed");
        }
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
