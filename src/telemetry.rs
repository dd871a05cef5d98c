//! Logging and the metrics recorder.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

static LOGGING: AtomicBool = AtomicBool::new(false);

/// Whether `init_logging` ran: until then, errors can only go to stderr.
pub fn logging_ready() -> bool {
    LOGGING.load(Ordering::Relaxed)
}

/// Installs the global tracing subscriber (JSON by default). `RUST_LOG`
/// filters, `info` when unset. Safe to call twice: the second call is a no-op.
pub fn init_logging(format: LogFormat) {
    LOGGING.store(true, Ordering::Relaxed);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// From an event's commit to this replica's event feed reading it (a
/// histogram, recorded by `events`; finer buckets than the others).
pub const FEED_DELAY_METRIC: &str = "event_feed_delay_seconds";

/// The process-wide Prometheus recorder, installed on first use (several
/// in-process servers, as in tests, share it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .expect("static buckets are valid")
                // Finer where the event stream's 100 ms target lies.
                .set_buckets_for_metric(
                    Matcher::Full(FEED_DELAY_METRIC.into()),
                    &[
                        0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 5.0,
                    ],
                )
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding); then
            // this handle renders an empty page rather than failing start.
            let _ = metrics::set_global_recorder(recorder);
            // A recorder made by `build_recorder` keeps every histogram
            // sample until a scrape or an upkeep folds it into the buckets:
            // unscraped, memory grows with each request (about 1 MiB per
            // 20,000 requests in scripts/bench.sh). Fold them periodically.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread can be spawned at start");
            handle
        })
        .clone()
}
