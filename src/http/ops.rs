//! Operations endpoints: liveness, readiness, Prometheus metrics, OpenAPI,
//! and the `/v1/stats` summary.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use super::error::ApiResult;
use crate::store::{self, stats};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database is reachable and the schema current.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match store::schema_is_current(&state.db).await {
        Ok(true) => (StatusCode::OK, Json(Health { status: "ready" })),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "schema_outdated",
            }),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "database_unreachable",
            }),
        ),
    }
}

/// Prometheus metrics in text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Gauges read from the database at scrape time: shared truth across
    // replicas, no background refresher needed.
    if let Ok(s) = stats::read(&state.db).await {
        for (status, count) in &s.lookups_by_status {
            metrics::gauge!("lookups", "status" => status.clone()).set(*count as f64);
        }
        metrics::gauge!("oldest_unfinished_job_age_seconds")
            .set(s.oldest_unfinished_secs.unwrap_or(0.0));
        metrics::gauge!("synthetic_lookups").set(s.synthetic_lookups as f64);
    }
    metrics::gauge!("sandbox_mode").set(if state.config.is_sandbox() { 1.0 } else { 0.0 });
    metrics::gauge!("db_pool_connections").set(state.db.size() as f64);
    metrics::gauge!("db_pool_idle_connections").set(state.db.num_idle() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// OpenAPI 3.1 description of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::openapi::ApiDoc::openapi())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsView {
    pub today: i64,
    pub this_month: i64,
    pub total: i64,
    /// CREDIT_BUDGET_DAILY, when set.
    pub daily_budget: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsView {
    pub lookups: BTreeMap<String, i64>,
    pub credits: CreditsView,
    /// Callback deliveries by outcome: applied, duplicate, refused, and
    /// forged (wrong token; counted, never recorded one by one).
    pub deliveries: BTreeMap<String, i64>,
    /// True when this service runs in sandbox mode: results are synthetic.
    pub sandbox: bool,
    /// Lookups made against the sandbox simulator (synthetic results).
    pub synthetic_lookups: i64,
    pub polls: i64,
    pub submits: i64,
    pub ambiguous_submits: i64,
    /// Lookups whose submit outcome is unknown and still unresolved: with
    /// AMBIGUOUS_RESUBMIT_AFTER_SECS unset they are never re-sent and wait
    /// for their callback or JOB_DEADLINE_SECS.
    pub ambiguous_waiting: i64,
    pub oldest_unfinished_seconds: Option<f64>,
}

/// Counts by status, credits spent, deliveries and polls.
#[utoipa::path(get, path = "/v1/stats", tag = "operations",
    responses((status = 200, body = StatsView)), security(("bearer" = [])))]
pub async fn stats(State(state): State<AppState>) -> ApiResult<Json<StatsView>> {
    let s = stats::read(&state.db).await?;
    Ok(Json(StatsView {
        lookups: s.lookups_by_status,
        credits: CreditsView {
            today: s.credits_today,
            this_month: s.credits_this_month,
            total: s.credits_total,
            daily_budget: state.config.credit_budget_daily,
        },
        deliveries: {
            let mut d = s.deliveries_by_outcome;
            d.insert(
                "forged".into(),
                s.forged_callbacks + state.gate.unflushed() as i64,
            );
            d
        },
        sandbox: state.config.is_sandbox(),
        synthetic_lookups: s.synthetic_lookups,
        polls: s.polls_made,
        submits: s.submits_made,
        ambiguous_submits: s.ambiguous_submits,
        ambiguous_waiting: s.ambiguous_waiting,
        oldest_unfinished_seconds: s.oldest_unfinished_secs,
    }))
}
