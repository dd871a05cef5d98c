//! `GET /person/interests?request_id=…`: free, answers the job's current
//! state, 404 `request_not_found` for unknown or forgotten jobs.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::Value;

use super::envelope::{ApiError, success};
use super::shared::Shared;
use super::stats::add;

pub async fn poll(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    add(&shared.stats.polls, 1);
    let request_id = query
        .as_deref()
        .and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "request_id")
                .map(|(_, value)| value.into_owned())
        })
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| ApiError::invalid_parameters("request_id is required"))?;
    let mut jobs = shared.jobs();
    let job = jobs
        .get_mut(request_id.trim())
        .ok_or_else(ApiError::request_not_found)?;
    let data = job.poll_data().ok_or_else(ApiError::request_not_found)?;
    if job.poll_errors_left > 0 {
        // `poll-error` case: a transient provider failure.
        job.poll_errors_left -= 1;
        return Err(ApiError::internal());
    }
    Ok(Json(success(data)))
}
