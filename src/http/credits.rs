//! `GET /v1/stats/credits`: credits spent per UTC day (the console's chart).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::Params;
use crate::store::credits;

/// Longest window the endpoint answers.
const MAX_DAYS: i32 = 366;

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditDay {
    /// UTC date, `YYYY-MM-DD`.
    pub date: String,
    /// Credits charged by lookups completed that day.
    pub credits: i64,
    /// Lookups completed that day (charged or not).
    pub completed: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditDays {
    /// Oldest first, today last; days without spending count 0.
    pub days: Vec<CreditDay>,
}

/// Credits spent per UTC day over the last `days` days (default 30).
#[utoipa::path(get, path = "/v1/stats/credits", tag = "operations",
    params(("days" = Option<i32>, Query, description = "1 to 366, default 30")),
    responses(
        (status = 200, body = CreditDays),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "days out of range")),
    security(("bearer" = [])))]
pub async fn per_day(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<CreditDays>> {
    let days = match params.get("days") {
        None => 30,
        Some(raw) => raw
            .parse::<i32>()
            .ok()
            .filter(|d| (1..=MAX_DAYS).contains(d))
            .ok_or_else(|| ApiError::field("days", format!("expected 1 to {MAX_DAYS}")))?,
    };
    let rows = credits::per_day(&state.db, days).await?;
    Ok(Json(CreditDays {
        days: rows
            .into_iter()
            .map(|d| CreditDay {
                date: d.day.to_string(),
                credits: d.credits,
                completed: d.completed,
            })
            .collect(),
    }))
}
