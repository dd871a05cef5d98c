//! The HTTP layer: routing, middleware and thin handlers that call into the
//! domain and store modules.

pub mod audit;
pub mod auth;
pub mod batch;
pub mod callbacks;
pub mod console;
pub mod credits;
pub mod deliveries;
pub mod error;
pub mod events;
pub mod export;
pub mod extract;
pub mod facets;
pub mod guards;
pub mod lookups;
pub mod openapi;
pub mod ops;
pub mod profiles;
pub mod refresh;
pub mod server;
pub mod session;
pub mod subjects;
pub mod versions;
pub mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::sync::Notify;
use tower::ServiceBuilder;
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::lookups::MAX_LOOKUP_BODY;

/// Every request is answered within this: well inside upstream's 30 s
/// callback window, and short enough for a graceful stop within 10 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// Requests handled at once; more are shed with 503 and `Retry-After`.
pub const MAX_IN_FLIGHT: usize = 1024;

#[derive(Clone)]
pub struct AppState {
    /// The primary (`DATABASE_URL`): every write, and reads of one's own
    /// writes.
    pub db: PgPool,
    /// Searches, facets, exports and the console's lists: the read replica
    /// when there is a usable one.
    pub reads: crate::reads::Reads,
    pub config: Arc<Config>,
    pub wake: Arc<Notify>,
    pub metrics: PrometheusHandle,
    /// Wake-ups and the bound on open `GET /v1/events` streams.
    pub events: crate::events::EventHub,
    /// Token check and refusal counting of the callback receiver.
    pub gate: Arc<crate::callbacks::CallbackGate>,
    /// What is written of upstream payloads (redaction, NUL replacement).
    pub intake: crate::callbacks::Intake,
    /// Applies authentic deliveries, in groups under load.
    pub applier: crate::callbacks::applier::Applier,
    /// Facet counts under facet filters, kept in memory.
    pub facet_index: crate::facet_index::FacetIndex,
    /// The bound on `GET /v1/profiles/export` streams open at once.
    pub exports: export::Exports,
}

impl AppState {
    pub fn policy(&self) -> crate::lookups::Policy<'_> {
        crate::lookups::Policy {
            secret: &self.config.service_secret,
            synthetic: self.config.is_sandbox(),
            profile_cache: self.config.profile_cache,
            credit_budget_daily: self.config.credit_budget_daily,
            name_only: self.config.name_only_lookups,
            refresh_credits_daily: self.config.refresh_credits_daily,
            service_refresh: false,
        }
    }
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route(
            "/lookups",
            post(lookups::create)
                .get(lookups::list)
                .layer(DefaultBodyLimit::max(MAX_LOOKUP_BODY)),
        )
        .route(
            "/lookups/batch",
            post(batch::create).layer(DefaultBodyLimit::max(batch::MAX_BATCH_BODY)),
        )
        .route("/lookups/{id}", get(lookups::get))
        .route("/lookups/{id}/resubmit", post(lookups::resubmit))
        .route("/facets", get(facets::list))
        .route("/profiles", get(profiles::list))
        .route("/profiles/export", get(export::stream))
        .route(
            "/profiles/refresh",
            post(refresh::create).layer(DefaultBodyLimit::max(MAX_LOOKUP_BODY)),
        )
        .route("/profiles/{id}", get(profiles::get))
        .route("/profiles/{id}/versions", get(versions::list))
        .route("/profiles/{id}/changes", get(versions::changes))
        .route("/subjects", delete(subjects::erase))
        .route("/audit", get(audit::list))
        .route("/stats", get(ops::stats))
        .route("/stats/credits", get(credits::per_day))
        .route("/events", get(events::stream))
        .route("/deliveries", get(deliveries::list))
        .route(
            "/webhooks",
            post(webhooks::create)
                .get(webhooks::list)
                .layer(DefaultBodyLimit::max(MAX_LOOKUP_BODY)),
        )
        .route(
            "/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete)
                .layer(DefaultBodyLimit::max(MAX_LOOKUP_BODY)),
        )
        .route("/webhooks/{id}/attempts", get(webhooks::attempts))
        .route(
            "/webhooks/{id}/replay",
            post(webhooks::replay).layer(DefaultBodyLimit::max(MAX_LOOKUP_BODY)),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));

    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .nest("/v1", v1)
        .route(
            "/callbacks/{lookup_id}/{token}",
            // The handler reads the body itself, after the token check.
            post(callbacks::receive).layer(DefaultBodyLimit::disable()),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(console::router())
        .fallback(|| async { error::ApiError::NotFound("no such endpoint") })
        .method_not_allowed_fallback(|| async { error::ApiError::MethodNotAllowed })
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(guards::plain_request_id))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_response(log_response),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(middleware::from_fn(record_metrics))
                .layer(middleware::from_fn(guards::bounded_request))
                // Beyond MAX_IN_FLIGHT requests, answer 503 at once instead
                // of queueing without bound.
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    guards::overloaded()
                }))
                .layer(LoadShedLayer::new())
                .layer(ConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
                .layer(CatchPanicLayer::new())
                .layer(middleware::from_fn(|request, next| {
                    guards::deadline(REQUEST_TIMEOUT, request, next)
                })),
        )
        .with_state(state)
}

/// The request span: method, route template (never the raw path, which
/// may hold a callback token) and request id.
fn make_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %request.method(), route, request_id)
}

/// Marks a response that must not be logged on its own: a refused forged
/// callback (contract section 6: counted, summarised, never one line each).
#[derive(Debug, Clone, Copy)]
pub struct Unlogged;

/// The access log line of a response (as tower-http's default, at info),
/// except for responses marked [`Unlogged`].
fn log_response(response: &Response, latency: Duration, _span: &tracing::Span) {
    if response.extensions().get::<Unlogged>().is_some() {
        return;
    }
    tracing::info!(
        latency = %format_args!("{} ms", latency.as_millis()),
        status = response.status().as_u16(),
        "finished processing request"
    );
}

/// Counts requests and their latency by route template and status.
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = guards::method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
