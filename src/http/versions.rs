//! `/v1/profiles/{id}/versions` and `/v1/profiles/{id}/changes`: a person's
//! profile history, read through the profile of any of its versions.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use crate::audit::{self, Action, Whom};
use crate::auth::Caller;
use crate::store::{profiles, versions};
use crate::versions::{Change, FacetValues, FollowingCount};

/// One stored profile of the person.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub profile_id: Uuid,
    pub lookup_id: Uuid,
    pub completed_on: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionsView {
    /// Newest first.
    pub items: Vec<VersionView>,
}

/// What one version changed since the one before it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeView {
    pub from_profile_id: Uuid,
    pub to_profile_id: Uuid,
    /// When the newer version completed.
    pub at: DateTime<Utc>,
    pub added: FacetValues,
    pub removed: FacetValues,
    pub following_count: FollowingCount,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChangesView {
    /// Newest first.
    pub items: Vec<ChangeView>,
}

/// Every profile of the same person, newest first.
#[utoipa::path(get, path = "/v1/profiles/{id}/versions", tag = "profiles",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = VersionsView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<VersionsView>> {
    let history = history(&state, &caller, &id).await?;
    let items = history
        .into_iter()
        .map(|v| VersionView {
            profile_id: v.profile_id,
            lookup_id: v.lookup_id,
            completed_on: v.completed_on,
        })
        .collect();
    Ok(Json(VersionsView { items }))
}

/// What changed between consecutive versions up to this one, newest first.
#[utoipa::path(get, path = "/v1/profiles/{id}/changes", tag = "profiles",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ChangesView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn changes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ChangesView>> {
    let profile_id = parse(&id)?;
    let history = history(&state, &caller, &id).await?;
    let from = history
        .iter()
        .position(|v| v.profile_id == profile_id)
        .unwrap_or(0);
    let items = history[from..]
        .windows(2)
        .map(|pair| {
            let (newer, older) = (&pair[0], &pair[1]);
            let change = Change::between(&older.result, &newer.result);
            ChangeView {
                from_profile_id: older.profile_id,
                to_profile_id: newer.profile_id,
                at: newer.at,
                added: change.added,
                removed: change.removed,
                following_count: change.following_count,
            }
        })
        .collect();
    Ok(Json(ChangesView { items }))
}

fn parse(id: &str) -> ApiResult<Uuid> {
    id.parse()
        .map_err(|_| ApiError::field("id", "expected a UUID"))
}

/// The versions of the person of profile `id`, the read audited.
async fn history(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Vec<versions::Version>> {
    let id = parse(id)?;
    let profile = profiles::get(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound("no profile has this id"))?;
    audit::record(
        &state.db,
        &state.config.service_secret,
        caller,
        Action::ProfileRead,
        Whom::Lookup(profile.lookup_id, &profile.subject),
    )
    .await?;
    let mut conn = state.db.acquire().await?;
    versions::of_profile(&mut conn, id)
        .await?
        .ok_or(ApiError::NotFound("no profile has this id"))
}
