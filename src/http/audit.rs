//! `GET /v1/audit`: who did what to whose data, newest first.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiResult, Problem};
use super::extract::Params;
use crate::store::{IdCursor, Position, audit, paginate};

/// One audited action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub at: DateTime<Utc>,
    /// The token's name (`name=token` in API_TOKENS), never the token.
    pub token: String,
    /// lookup.create | lookup.read | profile.read | profile.search |
    /// profile.export | subject.erase
    pub action: String,
    /// Keyed hash of the person (HMAC under a key derived from
    /// SERVICE_SECRET), never the identifier.
    pub subject_hash: Option<String>,
    pub lookup_id: Option<Uuid>,
    /// Records returned, for lists and searches.
    pub count: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(("limit" = Option<i64>, Query, description = "1 to 500, default 50"),
        ("cursor" = Option<String>, Query)),
    responses((status = 200, body = AuditPage),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, params: Params) -> ApiResult<Json<AuditPage>> {
    let limit = params.limit(50, 500)?;
    let before = params.cursor::<IdCursor>()?.map(|c| c.0);
    let rows = audit::list(&state.db, before, limit).await?;
    let page = paginate(rows, limit, |r| IdCursor(r.id));
    Ok(Json(AuditPage {
        items: page
            .items
            .into_iter()
            .map(|r| AuditView {
                at: r.at,
                token: r.token,
                action: r.action,
                subject_hash: r.subject_hash,
                lookup_id: r.lookup_id,
                count: r.count,
            })
            .collect(),
        next_cursor: page.next.as_ref().map(Position::encode),
    }))
}
