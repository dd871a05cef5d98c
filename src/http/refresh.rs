//! `POST /v1/profiles/refresh`: refresh a segment of people on demand, or
//! (`dry_run`) say what that would queue and cost. The work is in
//! `crate::refresh`; this parses and renders.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::JsonBody;
use super::profiles::{FILTERS, filter_from};
use crate::audit::{self, Action, Whom};
use crate::auth::Caller;
use crate::fields::Fields;
use crate::refresh::{self, Plan};
use crate::secrets::ServiceSecret;
use crate::subject::FieldError;

const FIELDS: [&str; 3] = ["filters", "older_than", "dry_run"];

#[derive(Debug, Serialize, ToSchema)]
pub struct RefreshView {
    /// People whose newest profile matched the filters and completed
    /// before `older_than`.
    pub matched: u64,
    /// Refreshes queued (0 in a dry run).
    pub queued: u64,
    /// The most the refreshes can cost (5 credits each).
    pub credits_at_most: u64,
}

/// Queue refreshes of the people matching profile filters.
#[utoipa::path(post, path = "/v1/profiles/refresh", tag = "profiles",
    request_body(content = inline(serde_json::Value), description = "filters (object: any filters of GET /v1/profiles, required, may be empty), older_than (RFC 3339, default now), dry_run (bool)"),
    responses(
        (status = 202, description = "refreshes queued", body = RefreshView),
        (status = 200, description = "a dry run: nothing queued", body = RefreshView),
        (status = 400, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<RefreshView>)> {
    let plan = parse(&body, &state.config.service_secret).map_err(ApiError::Validation)?;
    let outcome = refresh::run(&state.db, state.policy(), &plan).await?;
    if outcome.queued > 0 {
        state.wake.notify_one();
        metrics::counter!("lookups_created_total").increment(outcome.queued);
        audit::record(
            &state.db,
            &state.config.service_secret,
            &caller,
            Action::LookupCreate,
            Whom::Many(outcome.queued as usize),
        )
        .await?;
    }
    let status = if plan.dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(RefreshView {
            matched: outcome.matched,
            queued: outcome.queued,
            credits_at_most: outcome.credits_at_most,
        }),
    ))
}

/// Reads the body field by field, naming every bad one (`filters.<name>`
/// for a filter).
fn parse(body: &Value, secret: &ServiceSecret) -> Result<Plan, Vec<FieldError>> {
    let fields = Fields::new(body, &FIELDS).map_err(|e| vec![e])?;
    let object = fields.object;
    let mut errors = fields.errors;
    let empty = Map::new();
    let filters = match object.get("filters") {
        Some(Value::Object(filters)) => filters,
        Some(_) => {
            errors.push(FieldError::new(
                "filters",
                "expected an object of profile filters",
            ));
            &empty
        }
        None => {
            errors.push(FieldError::new(
                "filters",
                "is required (an empty object selects every profile)",
            ));
            &empty
        }
    };
    for (name, value) in filters {
        if !FILTERS.contains(&name.as_str()) {
            errors.push(FieldError::new(
                &format!("filters.{name}"),
                format!("unknown filter; expected one of {}", FILTERS.join(", ")),
            ));
        } else if value.as_str().is_none_or(|v| v.contains('\0')) {
            errors.push(FieldError::new(
                &format!("filters.{name}"),
                "expected a string without NUL characters",
            ));
        }
    }
    let filter = filter_from(
        |name| {
            filters
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        },
        "filters.",
        secret,
    )
    .map_err(|e| errors.extend(e))
    .ok();
    let older_than = match object.get("older_than") {
        None | Some(Value::Null) => Some(Utc::now()),
        Some(Value::String(raw)) => DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| errors.push(FieldError::new("older_than", "expected an RFC 3339 time")))
            .ok(),
        Some(_) => {
            errors.push(FieldError::new("older_than", "expected an RFC 3339 time"));
            None
        }
    };
    let dry_run = match object.get("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(FieldError::new("dry_run", "expected true or false"));
            false
        }
    };
    match (filter, older_than) {
        (Some(filter), Some(older_than)) if errors.is_empty() => Ok(Plan {
            filter,
            older_than,
            dry_run,
        }),
        _ => Err(errors),
    }
}
