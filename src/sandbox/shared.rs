//! State shared by the handlers and the background tasks of one simulator.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::SandboxConfig;
use super::cases::Case;
use super::jobs::Job;
use super::ratelimit::RateLimiter;
use super::stats::Counters;

/// Real-time length of the rate-limit windows, before scaling.
const MINUTE_SECS: f64 = 60.0;
const HOUR_SECS: f64 = 3600.0;

/// Everything one simulator knows. Locks are never held across an await.
pub(super) struct Shared {
    pub config: SandboxConfig,
    /// Jobs by request_id, forgotten (`expire`) ones included so that the
    /// introspection endpoint can still count them.
    pub jobs: Mutex<HashMap<String, Job>>,
    /// (case, subject key) pairs whose first submit was already refused, so
    /// that `rate-limit`, `server-error` and `unavailable` refuse only once.
    pub refused_once: Mutex<HashSet<(Case, String)>>,
    pub limiter: Mutex<RateLimiter>,
    pub stats: Counters,
    /// One client for every callback delivery, so connections are pooled.
    pub client: reqwest::Client,
    /// Fired on shutdown: stops timers, deliveries and held-back responses.
    pub shutdown: CancellationToken,
    /// Job timers and deliveries, awaited on shutdown.
    pub tasks: TaskTracker,
}

impl Shared {
    pub fn new(mut config: SandboxConfig) -> Self {
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            tracing::warn!(
                time_scale = config.time_scale,
                "sandbox time_scale must be a positive number; using 1.0"
            );
            config.time_scale = 1.0;
        }
        let limiter = RateLimiter::new(
            config.rate_per_minute,
            config.rate_per_hour,
            scale(config.time_scale, MINUTE_SECS),
            scale(config.time_scale, HOUR_SECS),
        );
        // Redirects are not followed: a callback answering 3xx is simply not
        // acknowledged, as with the provider. No proxy: receivers are reached
        // directly, most often over loopback.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent("interests-sandbox/1")
            .build()
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, "sandbox HTTP client setup failed; using defaults");
                reqwest::Client::new()
            });
        Self {
            config,
            jobs: Mutex::new(HashMap::new()),
            refused_once: Mutex::new(HashSet::new()),
            limiter: Mutex::new(limiter),
            stats: Counters::default(),
            client,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// `secs` of simulated time as a real duration.
    pub fn scaled(&self, secs: f64) -> Duration {
        scale(self.config.time_scale, secs)
    }

    /// Sleeps for `secs` of simulated time; false when shutdown came first.
    pub async fn sleep(&self, secs: f64) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.scaled(secs)) => true,
            () = self.shutdown.cancelled() => false,
        }
    }

    /// The job table. A poisoned lock only means a panic elsewhere; the map
    /// itself is still consistent, so keep serving.
    pub fn jobs(&self) -> MutexGuard<'_, HashMap<String, Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn limiter(&self) -> MutexGuard<'_, RateLimiter> {
        self.limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `case` refused the first submit of `subject_key`; true
    /// the first time only.
    pub fn refuse_first(&self, case: Case, subject_key: &str) -> bool {
        self.refused_once
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((case, subject_key.to_owned()))
    }
}

/// `secs × factor` as a duration, saturating instead of panicking.
fn scale(factor: f64, secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs * factor).unwrap_or(Duration::MAX)
}
