//! Extractors whose rejections use the service's problem+json shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::Value;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::error::ApiError;
use crate::store::Position;
use crate::subject::FieldError;

/// A JSON request body, read as a raw value so that validation can name
/// every bad field itself. Not JSON: 400. Over the route's limit: 413.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(crate::lookups::MAX_LOOKUP_BODY)
            } else {
                ApiError::BadRequest(format!("could not read the request body: {rejection}"))
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))
    }
}

/// Raw query parameters; handlers validate and name bad ones. A parameter
/// given twice, or holding a NUL character, is refused here (422 naming
/// it): `?email=a&email=b` must not silently mean one of them.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))?;
        let mut params = HashMap::with_capacity(pairs.len());
        let mut errors = Vec::new();
        for (name, value) in pairs {
            if value.contains('\0') || name.contains('\0') {
                errors.push(FieldError::new(&name, "must not contain a NUL character"));
            } else {
                match params.entry(name) {
                    Entry::Occupied(e) => errors.push(FieldError::new(
                        e.key(),
                        "given more than once; give it once",
                    )),
                    Entry::Vacant(e) => {
                        e.insert(value);
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(Params(params))
        } else {
            errors.dedup_by(|a, b| a.field == b.field);
            Err(ApiError::Validation(errors))
        }
    }
}

impl Params {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `limit`: 1..=max, default `default`.
    pub fn limit(&self, default: i64, max: i64) -> Result<i64, ApiError> {
        self.count("limit", default, max)
    }

    /// The count `name`: 1..=max, default `default`.
    pub fn count(&self, name: &str, default: i64, max: i64) -> Result<i64, ApiError> {
        match self.text(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::field(name, format!("expected an integer from 1 to {max}"))
                }),
        }
    }

    /// `cursor`: the position a previous page handed out.
    pub fn cursor<P: Position>(&self) -> Result<Option<P>, ApiError> {
        self.text("cursor")
            .map(|raw| {
                P::decode(raw).ok_or_else(|| {
                    ApiError::field(
                        "cursor",
                        "expected a next_cursor value from a previous page",
                    )
                })
            })
            .transpose()
    }
}
