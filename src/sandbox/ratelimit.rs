//! The account's rate limits: two sliding windows (a minute and an hour,
//! both scaled) over every request, submits and polls alike, and the
//! `X-RateLimit-*` / `RateLimit-*` headers the provider sends with them.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// What the headers report: the window closest to its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub limit: u32,
    pub remaining: u32,
    /// Until the oldest request counted in that window leaves it.
    pub reset_after: Duration,
}

/// The outcome of one request.
#[derive(Debug, Clone, Copy)]
pub enum Decision {
    /// Counted; the snapshot includes it.
    Allowed(Snapshot),
    /// Not counted; `retry_after` is when a slot frees up.
    Refused {
        snapshot: Snapshot,
        retry_after: Duration,
    },
}

/// Request times within the longer window, oldest first.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    per_hour: u32,
    minute: Duration,
    hour: Duration,
    hits: VecDeque<Instant>,
}

impl RateLimiter {
    pub fn new(per_minute: u32, per_hour: u32, minute: Duration, hour: Duration) -> Self {
        Self {
            per_minute,
            per_hour,
            minute,
            hour,
            hits: VecDeque::new(),
        }
    }

    /// Counts a request made at `now` if both windows have room.
    pub fn check(&mut self, now: Instant) -> Decision {
        self.prune(now);
        let waits = [
            self.wait_for_room(now, self.minute, self.per_minute),
            self.wait_for_room(now, self.hour, self.per_hour),
        ];
        if let Some(retry_after) = waits.into_iter().flatten().max() {
            return Decision::Refused {
                snapshot: self.snapshot(now),
                retry_after,
            };
        }
        self.hits.push_back(now);
        Decision::Allowed(self.snapshot(now))
    }

    /// The current state without counting a request (for 401 answers).
    pub fn peek(&mut self, now: Instant) -> Snapshot {
        self.prune(now);
        self.snapshot(now)
    }

    fn prune(&mut self, now: Instant) {
        let longest = self.minute.max(self.hour);
        while self
            .hits
            .front()
            .is_some_and(|hit| now.duration_since(*hit) >= longest)
        {
            self.hits.pop_front();
        }
    }

    /// Requests made within `window` before `now`.
    fn count_in(&self, now: Instant, window: Duration) -> usize {
        self.hits
            .iter()
            .rev()
            .take_while(|hit| now.duration_since(**hit) < window)
            .count()
    }

    /// None when the window has room; else how long until it has.
    fn wait_for_room(&self, now: Instant, window: Duration, limit: u32) -> Option<Duration> {
        let limit = limit as usize;
        let count = self.count_in(now, window);
        if count < limit {
            return None;
        }
        // The request whose leaving brings the count below the limit; with a
        // limit of 0 there is none and every request is refused.
        match self.hits.get(self.hits.len() - limit) {
            Some(leaving) if limit > 0 => Some(window.saturating_sub(now.duration_since(*leaving))),
            _ => Some(window),
        }
    }

    fn window_snapshot(&self, now: Instant, window: Duration, limit: u32) -> Snapshot {
        let count = self.count_in(now, window);
        let reset_after = match self.hits.get(self.hits.len() - count) {
            Some(oldest) if count > 0 => window.saturating_sub(now.duration_since(*oldest)),
            _ => window,
        };
        Snapshot {
            limit,
            remaining: limit.saturating_sub(u32::try_from(count).unwrap_or(u32::MAX)),
            reset_after,
        }
    }

    fn snapshot(&self, now: Instant) -> Snapshot {
        let minute = self.window_snapshot(now, self.minute, self.per_minute);
        let hour = self.window_snapshot(now, self.hour, self.per_hour);
        if hour.remaining < minute.remaining {
            hour
        } else {
            minute
        }
    }
}

/// Whole seconds, rounded up, so that a client waiting that long is served.
pub fn ceil_secs(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

/// Adds the provider's rate-limit headers for `snapshot`.
pub fn apply_headers(headers: &mut HeaderMap, snapshot: &Snapshot) {
    let reset_in = ceil_secs(snapshot.reset_after);
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let reset_at = ceil_secs(now_unix + snapshot.reset_after);
    let pairs: [(&'static str, u64); 6] = [
        ("x-ratelimit-limit", snapshot.limit.into()),
        ("x-ratelimit-remaining", snapshot.remaining.into()),
        ("x-ratelimit-reset", reset_at),
        ("ratelimit-limit", snapshot.limit.into()),
        ("ratelimit-remaining", snapshot.remaining.into()),
        ("ratelimit-reset", reset_in),
    ];
    for (name, value) in pairs {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter {
        RateLimiter::new(2, 3, Duration::from_secs(60), Duration::from_secs(3600))
    }

    #[test]
    fn the_minute_window_refuses_the_third_request_and_frees_up_after_it() {
        let mut limiter = limiter();
        let start = Instant::now();
        assert!(matches!(limiter.check(start), Decision::Allowed(s) if s.remaining == 1));
        let later = start + Duration::from_secs(10);
        assert!(matches!(limiter.check(later), Decision::Allowed(s) if s.remaining == 0));
        match limiter.check(later) {
            Decision::Refused { retry_after, .. } => {
                assert_eq!(retry_after, Duration::from_secs(50));
            }
            Decision::Allowed(_) => panic!("third request within a minute was allowed"),
        }
        assert!(matches!(
            limiter.check(start + Duration::from_secs(60)),
            Decision::Allowed(_)
        ));
    }

    #[test]
    fn the_hour_window_refuses_once_its_limit_is_spent() {
        let mut limiter = limiter();
        let start = Instant::now();
        for minute in 0..3 {
            let at = start + Duration::from_secs(61 * minute);
            assert!(matches!(limiter.check(at), Decision::Allowed(_)));
        }
        let at = start + Duration::from_secs(200);
        match limiter.check(at) {
            Decision::Refused {
                snapshot,
                retry_after,
            } => {
                assert_eq!(snapshot.limit, 3);
                assert_eq!(snapshot.remaining, 0);
                assert_eq!(retry_after, Duration::from_secs(3400));
            }
            Decision::Allowed(_) => panic!("fourth request within an hour was allowed"),
        }
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
    }
}
