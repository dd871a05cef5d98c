//! `/v1/webhooks`: register, list, read, update and delete endpoints, list
//! their attempts and replay their events.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use url::Url;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{JsonBody, Params};
use crate::fields::Fields;
use crate::store::webhooks::{
    self as store, AttemptRecord, NewWebhook, WebhookPatch, WebhookRecord,
};
use crate::store::{IdCursor, Position, paginate};
use crate::subject::FieldError;
use crate::webhooks::{EVENT_TYPES, SUBSCRIBABLE, guard, secret};

const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 1000;

/// A webhook endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    /// Subscribed event types.
    pub events: Vec<String>,
    pub description: Option<String>,
    /// The signing secret (`whsec_…`): only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub disabled: bool,
    /// Why a disabled endpoint is disabled: `failing` (every attempt failed
    /// for `WEBHOOK_DISABLE_AFTER_DAYS`) or `operator` (PATCH); null while
    /// enabled.
    #[schema(value_type = Option<String>, example = "failing")]
    pub disabled_reason: Option<String>,
    /// The first failed attempt since the endpoint last answered 2xx; null
    /// while it answers.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<WebhookRecord> for WebhookView {
    fn from(w: WebhookRecord) -> Self {
        WebhookView {
            id: w.id,
            url: w.url,
            events: w.events,
            description: w.description,
            secret: None,
            disabled: w.disabled,
            disabled_reason: w.disabled_reason,
            failing_since: w.failing_since,
            created_at: w.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookView>,
}

/// One delivery attempt to an endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// The event id, also the `webhook-id` header.
    pub event_id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    /// 1 for the first attempt of a send.
    pub attempt: i32,
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status; null when there was no answer.
    pub status_code: Option<i16>,
    /// Why there was no answer (timeout, refused address, ...).
    pub error: Option<String>,
    pub duration_ms: i32,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        AttemptView {
            event_id: a.event_id,
            kind: a.kind,
            attempt: a.attempt,
            at: a.at,
            status_code: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptPage {
    pub items: Vec<AttemptView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayView {
    /// Events that will be sent again.
    pub queued: i64,
}

/// The webhook-specific readers of a body (see `crate::fields`).
trait WebhookFields {
    fn events(&mut self) -> Option<Vec<String>>;
    async fn url(&mut self, allow_private: bool) -> Option<String>;
}

impl WebhookFields for Fields<'_> {
    fn events(&mut self) -> Option<Vec<String>> {
        let raw = self.object.get("events")?;
        let list = raw.as_array().and_then(|items| {
            items
                .iter()
                .map(|v| v.as_str().filter(|s| SUBSCRIBABLE.contains(s)))
                .collect::<Option<Vec<_>>>()
        });
        match list {
            Some(mut list) if !list.is_empty() => {
                list.sort_unstable();
                list.dedup();
                Some(list.into_iter().map(str::to_owned).collect())
            }
            _ => {
                self.errors.push(FieldError::new(
                    "events",
                    format!("expected a non-empty array of {}", SUBSCRIBABLE.join(", ")),
                ));
                None
            }
        }
    }

    async fn url(&mut self, allow_private: bool) -> Option<String> {
        let raw = match self.string("url", MAX_URL)? {
            Some(raw) => raw,
            None => {
                self.errors
                    .push(FieldError::new("url", "expected a string"));
                return None;
            }
        };
        let url = match Url::parse(raw.trim()) {
            Ok(url) => url,
            Err(e) => {
                self.errors.push(FieldError::new(
                    "url",
                    format!("expected an http or https URL: {e}"),
                ));
                return None;
            }
        };
        match guard::check_url(&url, allow_private).await {
            Ok(()) => Some(url.to_string()),
            Err(why) => {
                self.errors.push(FieldError::new("url", why));
                None
            }
        }
    }
}

/// The body's fields, or the 422 naming `body`.
fn fields<'a>(body: &'a Value, allowed: &[&str]) -> ApiResult<Fields<'a>> {
    Fields::new(body, allowed).map_err(|e| ApiError::Validation(vec![e]))
}

fn parse_id(raw: &str) -> ApiResult<Uuid> {
    raw.parse()
        .map_err(|_| ApiError::NotFound("no webhook has this id"))
}

/// Register an endpoint.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body(content = inline(serde_json::Value), description = "url (http or https; loopback and private addresses refused unless WEBHOOK_ALLOW_PRIVATE=true), events (array of lookup.completed, lookup.failed, lookup.expired, profile.changed, webhook.disabled; default the first three), description"),
    responses(
        (status = 201, description = "registered; `secret` is shown only here", body = WebhookView),
        (status = 400, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields, e.g. a private `url`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<WebhookView>)> {
    let mut fields = fields(&body, &["url", "events", "description"])?;
    if !fields.object.contains_key("url") {
        fields.errors.push(FieldError::new("url", "is required"));
    }
    let url = fields.url(state.config.webhook_allow_private).await;
    let events = if fields.object.contains_key("events") {
        fields.events()
    } else {
        let mut all = EVENT_TYPES.map(str::to_owned).to_vec();
        all.sort_unstable();
        Some(all)
    };
    let description = fields.string("description", MAX_DESCRIPTION).flatten();
    fields.finish().map_err(ApiError::Validation)?;
    let (Some(url), Some(events)) = (url, events) else {
        return Err(ApiError::field("url", "is required"));
    };

    let id = Uuid::now_v7();
    let secret = secret::generate();
    let sealed = secret::seal(&state.config.service_secret, id, &secret);
    let record = store::insert(
        &state.db,
        NewWebhook {
            id,
            url: &url,
            events: &events,
            description: description.as_deref(),
            secret_sealed: &sealed,
        },
    )
    .await?;
    let mut view = WebhookView::from(record);
    view.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

/// List endpoints.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, body = WebhookList),
    ),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<WebhookList>> {
    let items = store::list(&state.db).await?;
    Ok(Json(WebhookList {
        items: items.into_iter().map(WebhookView::from).collect(),
    }))
}

/// Read one endpoint (without its secret).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = WebhookView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookView>> {
    store::get(&state.db, parse_id(&id)?)
        .await?
        .map(|w| Json(w.into()))
        .ok_or(ApiError::NotFound("no webhook has this id"))
}

/// Update an endpoint: `url`, `events`, `description`, `disabled`.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path)),
    request_body(content = inline(serde_json::Value), description = "any of url, events, description, disabled (bool; disabling drops pending sends; enabling clears failing_since)"),
    responses(
        (status = 200, body = WebhookView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<WebhookView>> {
    let id = parse_id(&id)?;
    let mut fields = fields(&body, &["url", "events", "description", "disabled"])?;
    let mut patch = WebhookPatch::default();
    if fields.object.contains_key("url") {
        patch.url = fields.url(state.config.webhook_allow_private).await;
    }
    if fields.object.contains_key("events") {
        patch.events = fields.events();
    }
    patch.description = fields.string("description", MAX_DESCRIPTION);
    match fields.object.get("disabled") {
        None => {}
        Some(Value::Bool(b)) => patch.disabled = Some(*b),
        Some(_) => fields
            .errors
            .push(FieldError::new("disabled", "expected true or false")),
    }
    fields.finish().map_err(ApiError::Validation)?;
    store::update(&state.db, id, &patch)
        .await?
        .map(|w| Json(w.into()))
        .ok_or(ApiError::NotFound("no webhook has this id"))
}

/// Delete an endpoint, its pending sends and its attempts.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if store::delete(&state.db, parse_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no webhook has this id"))
    }
}

/// List an endpoint's delivery attempts, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/attempts", tag = "webhooks",
    params(("id" = Uuid, Path),
        ("limit" = Option<i64>, Query, description = "1 to 500, default 50"),
        ("cursor" = Option<String>, Query)),
    responses(
        (status = 200, body = AttemptPage),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn attempts(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Json<AttemptPage>> {
    let id = parse_id(&id)?;
    let limit = params.limit(50, 500)?;
    let cursor = params.cursor::<IdCursor>()?.map(|c| c.0);
    if store::get(&state.db, id).await?.is_none() {
        return Err(ApiError::NotFound("no webhook has this id"));
    }
    let rows = store::attempts(&state.db, id, cursor, limit).await?;
    let page = paginate(rows, limit, |a| IdCursor(a.id));
    Ok(Json(AttemptPage {
        items: page.items.into_iter().map(AttemptView::from).collect(),
        next_cursor: page.next.as_ref().map(Position::encode),
    }))
}

/// Send the endpoint's events since a time again (same `webhook-id`s).
#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "webhooks",
    params(("id" = Uuid, Path)),
    request_body(content = inline(serde_json::Value), description = "since (RFC 3339)"),
    responses(
        (status = 202, body = ReplayView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the webhook is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<ReplayView>)> {
    let id = parse_id(&id)?;
    let mut fields = fields(&body, &["since"])?;
    let since = match fields.object.get("since").and_then(Value::as_str) {
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .ok(),
        None => None,
    };
    if since.is_none() {
        fields.errors.push(FieldError::new(
            "since",
            "expected an RFC 3339 time, e.g. 2026-01-15T10:00:00Z",
        ));
    }
    fields.finish().map_err(ApiError::Validation)?;
    let since = since.expect("checked above");
    match store::get(&state.db, id).await? {
        None => return Err(ApiError::NotFound("no webhook has this id")),
        // Nothing would be sent, and disabling drops pending sends: queued
        // sends would fire as a stale backlog once it is enabled again.
        Some(webhook) if webhook.disabled => {
            return Err(ApiError::Conflict(
                "webhook_disabled",
                "this webhook is disabled; enable it (PATCH {\"disabled\": false}) before a replay"
                    .to_owned(),
            ));
        }
        Some(_) => {}
    }
    let queued = store::replay(&state.db, id, since).await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayView { queued })))
}
