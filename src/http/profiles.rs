//! `/v1/profiles`: stored profiles by id, and searched.

use axum::Json;
use axum::extract::{Path, State};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::Params;
use super::views::{PageView, ProfileView};
use crate::audit::{self, Action, Whom};
use crate::config::Caller;
use crate::store::profiles::{self, ProfileFilter};
use crate::subject::{normalise_email, normalise_phone, normalise_url};
use axum::Extension;
use axum::http::HeaderMap;
use axum::http::header::USER_AGENT;

/// Read one profile.
#[utoipa::path(get, path = "/v1/profiles/{id}", tag = "profiles",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ProfileView),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ProfileView>> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::NotFound("no profile has this id"))?;
    let profile = profiles::get(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("no profile has this id"))?;
    let whom = Whom::Lookup(profile.lookup_id, &profile.subject);
    audit::record(
        &state.db,
        &state.config.service_secret,
        &caller,
        Action::ProfileRead,
        whom,
    )
    .await?;
    Ok(Json(profile.into()))
}

/// Search profiles; filters combine with AND and ignore case.
#[utoipa::path(get, path = "/v1/profiles", tag = "profiles",
    params(("email" = Option<String>, Query), ("phone" = Option<String>, Query),
        ("social_media_url" = Option<String>, Query),
        ("interest" = Option<String>, Query, description = "label of an interest_graph entry"),
        ("category" = Option<String>, Query, description = "a key of interest_graph"),
        ("brand" = Option<String>, Query), ("archetype" = Option<String>, Query),
        ("industry" = Option<String>, Query),
        ("limit" = Option<i64>, Query, description = "1 to 500, default 50"), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageView<ProfileView>),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Json<PageView<ProfileView>>> {
    let filter = filter(&params)?;
    let limit = params.limit(50, 500)?;
    let cursor = params.cursor()?;
    let page = profiles::list(&state.db, &filter, cursor, limit).await?;
    // `interests-receiver export` names itself; its pages are an export.
    let exporting = headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("interests-receiver-export/"));
    let action = if exporting {
        Action::ProfileExport
    } else {
        Action::ProfileSearch
    };
    let whom = Whom::Many(page.items.len());
    audit::record(
        &state.db,
        &state.config.service_secret,
        &caller,
        action,
        whom,
    )
    .await?;
    Ok(Json(PageView::from_page(page, ProfileView::from)))
}

/// Names of the profile filters (query parameters of `GET /v1/profiles`,
/// keys of `filters` in `POST /v1/profiles/refresh`).
pub(super) const FILTERS: [&str; 8] = [
    "email",
    "phone",
    "social_media_url",
    "interest",
    "category",
    "brand",
    "archetype",
    "industry",
];

/// The profile filters of the query string (shared with `/v1/facets`):
/// identifiers normalised as lookups store them, a bad one named.
pub(super) fn filter(params: &Params) -> ApiResult<ProfileFilter> {
    filter_from(|field| params.text(field), "").map_err(ApiError::Validation)
}

/// The profile filters as `get` finds them; errors name `prefix` + field.
pub(super) fn filter_from<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    prefix: &str,
) -> Result<ProfileFilter, Vec<crate::subject::FieldError>> {
    let mut errors = Vec::new();
    let mut identifier = |field: &str, normalise: fn(&str) -> Result<String, String>| {
        get(field).and_then(|raw| match normalise(raw.trim()) {
            Ok(v) => Some(v),
            Err(message) => {
                errors.push(crate::subject::FieldError::new(
                    &format!("{prefix}{field}"),
                    message,
                ));
                None
            }
        })
    };
    let filter = ProfileFilter {
        email: identifier("email", normalise_email),
        phone: identifier("phone", normalise_phone),
        social_media_url: identifier("social_media_url", normalise_url),
        interest: get("interest").map(str::to_owned),
        category: get("category").map(str::to_owned),
        brand: get("brand").map(str::to_owned),
        archetype: get("archetype").map(str::to_owned),
        industry: get("industry").map(str::to_owned),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(filter)
}
