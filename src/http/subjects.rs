//! `DELETE /v1/subjects`: erase a person, optionally refusing them later.
//! The identifier is read here; the erasure is `crate::erasure`'s.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::Params;
use crate::auth::Caller;
use crate::erasure;
use crate::subject::{normalise_email, normalise_phone, normalise_text, normalise_url};
use axum::Extension;

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasedCounts {
    pub lookups: i64,
    pub profiles: i64,
    pub deliveries: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureView {
    pub erased: ErasedCounts,
    pub suppressed: bool,
}

/// Normalises one identifier of a kind, or says what was expected.
type Normalise = fn(&str) -> Result<String, String>;

const KINDS: [(&str, Normalise); 4] = [
    ("email", normalise_email),
    ("phone", normalise_phone),
    ("social_media_url", normalise_url),
    ("name", normalise_text),
];

/// Erase every lookup, profile and stored callback body of a person.
#[utoipa::path(delete, path = "/v1/subjects", tag = "subjects",
    params(("email" = Option<String>, Query), ("phone" = Option<String>, Query),
        ("social_media_url" = Option<String>, Query), ("name" = Option<String>, Query),
        ("suppress" = Option<bool>, Query, description = "refuse later lookups of this person (409 subject_suppressed)")),
    responses((status = 200, body = ErasureView),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn erase(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> ApiResult<Json<ErasureView>> {
    let given: Vec<_> = KINDS
        .iter()
        .filter(|(k, _)| params.text(k).is_some())
        .collect();
    let [(kind, normalise)] = given.as_slice() else {
        return Err(ApiError::field(
            "email",
            "give exactly one of email, phone, social_media_url or name",
        ));
    };
    let raw = params.text(kind).unwrap_or_default();
    let value = normalise(raw.trim()).map_err(|m| ApiError::field(kind, m))?;
    let suppress = match params.text("suppress") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::field("suppress", "expected true or false")),
    };
    let erased = erasure::erase(
        &state.db,
        &state.config.service_secret,
        &caller,
        kind,
        &value,
        suppress,
    )
    .await?;
    Ok(Json(ErasureView {
        erased: ErasedCounts {
            lookups: erased.lookups,
            profiles: erased.profiles,
            deliveries: erased.deliveries,
        },
        suppressed: suppress,
    }))
}
