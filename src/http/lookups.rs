//! `/v1/lookups`: request a lookup, read one, list them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{JsonBody, Params};
use crate::audit::{self, Action, Whom};
use crate::auth::Caller;
use crate::lifecycle::LookupStatus;
use crate::lookups::{self, LookupRequest};
use crate::store;
use crate::views::{LookupView, PageView};
use axum::Extension;

pub(super) fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| (1..=255).contains(&k.len()))
        .map(|k| Some(k.to_owned()))
        .ok_or_else(|| {
            ApiError::field(
                "Idempotency-Key",
                "expected 1 to 255 visible ASCII characters",
            )
        })
}

/// Request a lookup of a person.
#[utoipa::path(post, path = "/v1/lookups", tag = "lookups",
    request_body(content = inline(serde_json::Value), description = "email, phone, social_media_url, name, company (strings; at least one of the first four), refresh (bool), metadata (object)"),
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response for the same key and body")),
    responses(
        (status = 202, description = "new or already in flight", body = LookupView),
        (status = 200, description = "a cached completed profile", body = LookupView),
        (status = 400, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "subject suppressed", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "an Idempotency-Key replayed after its lookup was erased (lookup_erased): nothing is made again", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields, or a name-only lookup under NAME_ONLY_LOOKUPS=refuse (naming company, email, phone and social_media_url)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "daily credit budget spent", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<LookupView>)> {
    let key = idempotency_key(&headers)?;
    let request = LookupRequest::parse_under(&body, state.config.name_only_lookups)
        .map_err(ApiError::Validation)?;
    let answer = lookups::request(
        &state.db,
        state.policy(),
        &request,
        &body,
        key.as_deref(),
        Some(&caller),
    )
    .await?;
    if matches!(answer, lookups::Answer::Created(_)) {
        state.wake.notify_one();
        metrics::counter!("lookups_created_total").increment(1);
    }
    let status = StatusCode::from_u16(answer.status()).unwrap_or(StatusCode::ACCEPTED);
    Ok((status, Json(answer.into_lookup().into())))
}

/// Read one lookup.
#[utoipa::path(get, path = "/v1/lookups/{id}", tag = "lookups",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = LookupView),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<LookupView>> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::NotFound("no lookup has this id"))?;
    let lookup = store::lookups::get(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("no lookup has this id"))?;
    let whom = Whom::Lookup(lookup.id, &lookup.subject);
    audit::record(
        &state.db,
        &state.config.service_secret,
        &caller,
        Action::LookupRead,
        whom,
    )
    .await?;
    Ok(Json(lookup.into()))
}

/// List lookups, newest first.
#[utoipa::path(get, path = "/v1/lookups", tag = "lookups",
    params(("status" = Option<LookupStatus>, Query), ("limit" = Option<i64>, Query, description = "1 to 500, default 50"),
        ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageView<LookupView>),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> ApiResult<Json<PageView<LookupView>>> {
    let status = match params.text("status") {
        None => None,
        Some(raw) => Some(LookupStatus::parse(raw).ok_or_else(|| {
            let names: Vec<_> = LookupStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::field("status", format!("expected one of {}", names.join(", ")))
        })?),
    };
    let limit = params.limit(50, 500)?;
    let cursor = params.cursor()?;
    let page = state
        .reads
        .run(|db| async move { store::lookups::list(&db, status, cursor, limit).await })
        .await?;
    let whom = Whom::Many(page.items.len());
    audit::record(
        &state.db,
        &state.config.service_secret,
        &caller,
        Action::LookupRead,
        whom,
    )
    .await?;
    Ok(Json(PageView::from_page(page, LookupView::from)))
}

/// Decide on a lookup whose submit outcome is unknown: send it again now.
#[utoipa::path(post, path = "/v1/lookups/{id}/resubmit", tag = "lookups",
    params(("id" = Uuid, Path)),
    responses(
        (status = 202, description = "sent again (with the same callback token; this can charge twice)", body = LookupView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not_awaiting_decision: the lookup has no unresolved ambiguous submit", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn resubmit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<LookupView>)> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::NotFound("no lookup has this id"))?;
    let resubmitted = store::work::resubmit_ambiguous(&state.db, id).await?;
    let lookup = store::lookups::get(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("no lookup has this id"))?;
    if !resubmitted {
        return Err(ApiError::Conflict(
            "not_awaiting_decision",
            "only a pending lookup whose submit outcome is unknown and unresolved can be sent again"
                .into(),
        ));
    }
    state.wake.notify_one();
    let whom = Whom::Lookup(lookup.id, &lookup.subject);
    audit::record(
        &state.db,
        &state.config.service_secret,
        &caller,
        Action::LookupCreate,
        whom,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(lookup.into())))
}
