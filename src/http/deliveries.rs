//! `GET /v1/deliveries`: the callback deliveries that reached the service,
//! for an operator asking "did upstream ever call us for this one?".

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::Params;
use crate::store::deliveries::{self, DeliveryRecord};
use crate::store::{IdCursor, Position, paginate};

const OUTCOMES: [&str; 3] = ["applied", "duplicate", "refused"];

/// One callback delivery (its body is not shown).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub lookup_id: Option<Uuid>,
    pub request_id: Option<String>,
    /// The `status` the delivery carried.
    pub payload_status: Option<String>,
    /// applied | duplicate | refused
    pub outcome: String,
    pub reason: Option<String>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        DeliveryView {
            id: d.id,
            received_at: d.received_at,
            lookup_id: d.lookup_id,
            request_id: d.request_id,
            payload_status: d.payload_status,
            outcome: d.outcome,
            reason: d.reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// List callback deliveries, newest first.
#[utoipa::path(get, path = "/v1/deliveries", tag = "deliveries",
    params(
        ("lookup_id" = Option<Uuid>, Query),
        ("outcome" = Option<String>, Query, description = "applied | duplicate | refused"),
        ("limit" = Option<i64>, Query, description = "1 to 500, default 50"),
        ("cursor" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = DeliveryPage),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, params: Params) -> ApiResult<Json<DeliveryPage>> {
    let mut errors = Vec::new();
    let lookup_id = match params.text("lookup_id") {
        None => None,
        Some(raw) => match raw.parse::<Uuid>() {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(crate::subject::FieldError::new(
                    "lookup_id",
                    "expected a lookup id (UUID)",
                ));
                None
            }
        },
    };
    let outcome = params.text("outcome");
    if let Some(o) = outcome
        && !OUTCOMES.contains(&o)
    {
        errors.push(crate::subject::FieldError::new(
            "outcome",
            format!("expected one of {}", OUTCOMES.join(", ")),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let limit = params.limit(50, 500)?;
    let cursor = params.cursor::<IdCursor>()?.map(|c| c.0);
    let rows = state
        .reads
        .run(|db| async move { deliveries::list(&db, lookup_id, outcome, cursor, limit).await })
        .await?;
    let page = paginate(rows, limit, |d| IdCursor(d.id));
    Ok(Json(DeliveryPage {
        items: page.items.into_iter().map(DeliveryView::from).collect(),
        next_cursor: page.next.as_ref().map(Position::encode),
    }))
}
