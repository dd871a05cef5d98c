//! Counters that let tests see what the receiver cost and what reached it:
//! how many submits were accepted (and paid), polls made, callbacks tried.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};

/// Counters since start, as served by `GET /_sandbox/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    /// Submits answered 202 (each one is a job).
    pub submits_accepted: u64,
    /// Submits answered with any error (auth, validation, 429, 5xx).
    pub submits_refused: u64,
    /// Polls that passed authentication and the rate limit.
    pub polls: u64,
    /// Requests answered 429, by the rate limit or the `rate-limit` case.
    pub rate_limited: u64,
    /// Credits charged: 5 per job completed with a non-empty result.
    pub credits_charged: u64,
    /// Callback HTTP attempts, retries and duplicates included.
    pub callbacks_attempted: u64,
    /// Callback attempts answered 2xx.
    pub callbacks_acknowledged: u64,
    /// Deliveries given up after their last retry failed.
    #[serde(default)]
    pub callbacks_abandoned: u64,
    /// When a request was last answered 429 (tests measure the receiver's
    /// pause from here to its next request).
    pub last_rate_limited_at: Option<DateTime<Utc>>,
}

/// The live counterpart of [`SandboxStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub submits_accepted: AtomicU64,
    pub submits_refused: AtomicU64,
    pub polls: AtomicU64,
    pub rate_limited: AtomicU64,
    pub credits_charged: AtomicU64,
    pub callbacks_attempted: AtomicU64,
    pub callbacks_acknowledged: AtomicU64,
    pub callbacks_abandoned: AtomicU64,
    /// Microseconds since the epoch of the last 429; 0: none yet.
    pub last_rate_limited_micros: AtomicI64,
}

/// Counts a 429 and notes when it was answered.
pub(super) fn rate_limited(counters: &Counters) {
    add(&counters.rate_limited, 1);
    counters
        .last_rate_limited_micros
        .store(Utc::now().timestamp_micros(), Ordering::Relaxed);
}

/// Adds `n` to a counter; relaxed ordering is enough for statistics.
pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> SandboxStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SandboxStats {
            submits_accepted: get(&self.submits_accepted),
            submits_refused: get(&self.submits_refused),
            polls: get(&self.polls),
            rate_limited: get(&self.rate_limited),
            credits_charged: get(&self.credits_charged),
            callbacks_attempted: get(&self.callbacks_attempted),
            callbacks_acknowledged: get(&self.callbacks_acknowledged),
            callbacks_abandoned: get(&self.callbacks_abandoned),
            last_rate_limited_at: match self.last_rate_limited_micros.load(Ordering::Relaxed) {
                0 => None,
                micros => DateTime::from_timestamp_micros(micros),
            },
        }
    }
}
