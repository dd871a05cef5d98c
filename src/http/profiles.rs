//! `/v1/profiles`: stored profiles by id, and searched.

use axum::Json;
use axum::extract::{Path, State};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::Params;
use crate::audit::{self, Action, Whom};
use crate::auth::Caller;
use crate::secrets::ServiceSecret;
use crate::store::profiles::{self, ProfileFilter, ProfileRecord};
use crate::store::{Cursor, Page};
use crate::subject::{
    FieldError, MatchBasis, identity, normalise_email, normalise_phone, normalise_url,
};
use crate::views::{PageView, ProfileView};
use axum::Extension;
use axum::http::header::{LINK, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{AppendHeaders, IntoResponse};

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
    params(("email" = Option<String>, Query, description = "any spelling of the person's email (case and +tag ignored)"),
        ("phone" = Option<String>, Query, description = "any spelling of the phone number (compared as E.164 digits)"),
        ("social_media_url" = Option<String>, Query, description = "the profile URL (scheme, www., query, fragment and trailing slash ignored)"),
        ("match_basis" = Option<String>, Query, description = "email | phone | social_media_url | name_company | name_only"),
        ("interest" = Option<String>, Query, description = "label of an interest_graph entry"),
        ("category" = Option<String>, Query, description = "a key of interest_graph"),
        ("brand" = Option<String>, Query), ("archetype" = Option<String>, Query),
        ("industry" = Option<String>, Query),
        ("limit" = Option<i64>, Query, description = "1 to 500, default 50"), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageView<ProfileView>,
            headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page's address, while there is one (RFC 8288), so a client can ask for it before reading this page's body"))),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<impl IntoResponse> {
    let filter = filter(&params, &state.config.service_secret)?;
    let limit = params.limit(50, 500)?;
    let cursor = params.cursor()?;
    let page = search_page(&state, &filter, cursor, limit).await?;
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
    let view = PageView::from_page(page, ProfileView::from);
    let link = view
        .next_cursor
        .as_deref()
        .and_then(|cursor| next_link("/v1/profiles", &params, cursor));
    Ok((AppendHeaders(link.map(|l| (LINK, l))), Json(view)))
}

/// The `Link` header of the page after this one: the same query with the
/// next cursor. `None` if it cannot be a header value (it always can: the
/// query is percent-encoded).
fn next_link(path: &str, params: &Params, cursor: &str) -> Option<HeaderValue> {
    let mut pairs: Vec<(&String, &String)> = params
        .0
        .iter()
        .filter(|(k, _)| k.as_str() != "cursor")
        .collect();
    pairs.sort();
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(pairs);
    query.append_pair("cursor", cursor);
    HeaderValue::from_str(&format!("<{path}?{}>; rel=\"next\"", query.finish())).ok()
}

/// The page of `limit` profiles matching `filter` after `cursor`, read
/// where reads go (`crate::reads`).
pub(super) async fn search_page(
    state: &AppState,
    filter: &ProfileFilter,
    cursor: Option<Cursor>,
    limit: i64,
) -> ApiResult<Page<ProfileRecord>> {
    let matching = &indexed_matches(state, filter, limit).await?;
    Ok(state
        .reads
        .run(|db| async move { profiles::list(&db, filter, matching.clone(), cursor, limit).await })
        .await?)
}

/// The matching profiles' numbers when the facet index knows them and
/// reading them beats walking postings: two or three facet filters and
/// nothing else. (One facet filter walks its postings in page order
/// already; identifiers find a few profiles.)
async fn indexed_matches(
    state: &AppState,
    filter: &ProfileFilter,
    limit: i64,
) -> ApiResult<Option<Vec<i64>>> {
    let Some(facets) = filter.only_facets().filter(|f| f.len() >= 2) else {
        return Ok(None);
    };
    let page = u64::try_from(limit).unwrap_or(0) + 1;
    Ok(state.facet_index.matching(&state.db, &facets, page).await?)
}

/// Names of the profile filters (query parameters of `GET /v1/profiles`,
/// keys of `filters` in `POST /v1/profiles/refresh`).
pub(super) const FILTERS: [&str; 9] = [
    "email",
    "phone",
    "social_media_url",
    "match_basis",
    "interest",
    "category",
    "brand",
    "archetype",
    "industry",
];

/// The profile filters of the query string (shared with `/v1/facets` and,
/// through this endpoint, `export`).
pub(super) fn filter(params: &Params, secret: &ServiceSecret) -> ApiResult<ProfileFilter> {
    filter_from(|field| params.text(field), "", secret).map_err(ApiError::Validation)
}

/// The profile filters as `get` finds them: identifiers normalised as
/// lookups store them and turned into the keyed identity hashes of that
/// person (any spelling the service treats as the same person matches); a
/// bad value named `prefix` + field.
pub(super) fn filter_from<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    prefix: &str,
    secret: &ServiceSecret,
) -> Result<ProfileFilter, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut identities = Vec::new();
    for (field, normalise) in [
        (
            "email",
            normalise_email as fn(&str) -> Result<String, String>,
        ),
        ("phone", normalise_phone),
        ("social_media_url", normalise_url),
    ] {
        let Some(raw) = get(field) else {
            continue;
        };
        match normalise(raw.trim()) {
            Ok(v) => identities.push(secret.identity_hashes(&[identity(field, &v)])),
            Err(message) => errors.push(FieldError::new(&format!("{prefix}{field}"), message)),
        }
    }
    let match_basis = match get("match_basis") {
        None => None,
        Some(raw) => {
            let basis = MatchBasis::parse(raw);
            if basis.is_none() {
                let names: Vec<_> = MatchBasis::ALL.iter().map(|b| b.as_str()).collect();
                errors.push(FieldError::new(
                    &format!("{prefix}match_basis"),
                    format!("expected one of {}", names.join(", ")),
                ));
            }
            basis
        }
    };
    let filter = ProfileFilter {
        identities,
        match_basis,
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
