//! The simulator's routes: the upstream API behind its guard, and the
//! unauthenticated `/_sandbox/*` introspection for tests.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::{Json, Router};

use super::SandboxStats;
use super::envelope::ApiError;
use super::guard::guard;
use super::jobs::{self, SandboxJob};
use super::poll::poll;
use super::shared::Shared;
use super::submit::submit;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/person/interests", get(poll).post(submit))
        .route_layer(from_fn_with_state(shared.clone(), guard))
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/jobs", get(list_jobs))
        .fallback(not_found)
        .with_state(shared)
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<SandboxStats> {
    Json(shared.stats.snapshot())
}

async fn list_jobs(State(shared): State<Arc<Shared>>) -> Json<Vec<SandboxJob>> {
    Json(jobs::list(&shared))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such endpoint")
}
