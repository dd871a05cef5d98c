//! `/v1/facets`: the most common values of a facet field among the profiles
//! matching the profile filters.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::Params;
use crate::store::facets::{self, Field};
use crate::store::profiles::ProfileFilter;

#[derive(Debug, Serialize, ToSchema)]
pub struct FacetsView {
    /// interest | category | brand | archetype | industry
    pub field: &'static str,
    /// Most common first; values differing only in case count as one.
    pub values: Vec<FacetValueView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FacetValueView {
    /// The value in its most common spelling.
    pub value: String,
    /// Matching profiles carrying the value.
    pub count: i64,
}

/// Count the values of a facet among matching profiles.
#[utoipa::path(get, path = "/v1/facets", tag = "profiles",
    params(("field" = String, Query, description = "interest | category | brand | archetype | industry"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 20"),
        ("email" = Option<String>, Query), ("phone" = Option<String>, Query),
        ("social_media_url" = Option<String>, Query),
        ("match_basis" = Option<String>, Query, description = "email | phone | social_media_url | name_company | name_only"),
        ("interest" = Option<String>, Query), ("category" = Option<String>, Query),
        ("brand" = Option<String>, Query), ("archetype" = Option<String>, Query),
        ("industry" = Option<String>, Query)),
    responses((status = 200, body = FacetsView),
        (status = 400, description = "malformed query string", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "unknown field, bad limit or bad identifier filter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "database unavailable", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, params: Params) -> ApiResult<Json<FacetsView>> {
    let expected = || {
        let names: Vec<_> = Field::ALL.iter().map(|f| f.as_str()).collect();
        format!("expected one of {}", names.join(", "))
    };
    let field = match params.text("field") {
        None => return Err(ApiError::field("field", expected())),
        Some(raw) => Field::parse(raw).ok_or_else(|| ApiError::field("field", expected()))?,
    };
    let filter = super::profiles::filter(&params, &state.config.service_secret)?;
    let limit = params.limit(20, 1000)?;
    let filter = &filter;
    // Every committed profile counted: the queued count changes are folded
    // on the primary (a write); the counts are then read where reads go.
    facets::fold(&state.db, true).await?;
    let counted = from_index(&state, field, filter, limit).await?;
    let source = if counted.is_some() {
        "index"
    } else {
        "database"
    };
    metrics::counter!("facet_counts_total", "source" => source).increment(1);
    let values = match counted {
        Some(counts) => {
            let counts = &counts;
            state
                .reads
                .run(|db| async move { facets::spelled(&db, field, counts).await })
                .await?
        }
        None => {
            state
                .reads
                .run(|db| async move { facets::top(&db, field, filter, limit).await })
                .await?
        }
    };
    Ok(Json(FacetsView {
        field: field.as_str(),
        values: values
            .into_iter()
            .map(|v| FacetValueView {
                value: v.value,
                count: v.count,
            })
            .collect(),
    }))
}

/// The counts from the in-process facet index, when the filters are facet
/// values only (identifier and match-basis filters select a few profiles,
/// which the database counts at once) and the index is loaded.
async fn from_index(
    state: &AppState,
    field: Field,
    filter: &ProfileFilter,
    limit: i64,
) -> ApiResult<Option<Vec<(String, i64)>>> {
    let Some(facets) = filter.only_facets().filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    let limit = usize::try_from(limit).unwrap_or(0);
    let top = state
        .facet_index
        .top(&state.db, field, &facets, limit)
        .await?;
    Ok(top.map(|top| {
        top.into_iter()
            .map(|c| (c.value_lower, i64::try_from(c.count).unwrap_or(i64::MAX)))
            .collect()
    }))
}
