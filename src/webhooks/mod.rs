//! Outgoing webhooks: endpoint secrets, Standard Webhooks signatures, the
//! SSRF guard and the sender that works the queue in PostgreSQL.

pub mod guard;
pub mod secret;
pub mod sender;
pub mod signing;

use std::time::Duration;

/// Event types an endpoint is subscribed to when it names none.
pub const EVENT_TYPES: [&str; 3] = ["lookup.completed", "lookup.failed", "lookup.expired"];

/// Every event type an endpoint may subscribe to: the defaults, and
/// `profile.changed` and `webhook.disabled` (another endpoint disabled
/// after failing for days), which only endpoints that ask for them receive.
pub const SUBSCRIBABLE: [&str; 5] = [
    "lookup.completed",
    "lookup.failed",
    "lookup.expired",
    crate::store::events::PROFILE_CHANGED,
    crate::store::events::WEBHOOK_DISABLED,
];

/// Delays before each retry after a failed attempt: about 5 s, 5 min, 30
/// min, 2 h, 5 h, 10 h, 10 h, i.e. retries for more than a day.
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// Time allowed for an endpoint to answer.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// The delay before retry number `failed_attempts` (1-based), scaled by
/// `scale` (tests); `None` once the schedule is spent.
pub fn retry_delay(failed_attempts: u32, scale: f64) -> Option<Duration> {
    let index = failed_attempts.checked_sub(1)? as usize;
    RETRY_SCHEDULE.get(index).map(|d| d.mul_f64(scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_grow_and_end_after_more_than_a_day() {
        assert_eq!(retry_delay(1, 1.0), Some(Duration::from_secs(5)));
        assert!(retry_delay(3, 1.0) > retry_delay(2, 1.0));
        assert_eq!(retry_delay(8, 1.0), None);
        let total: Duration = RETRY_SCHEDULE.iter().sum();
        assert!(total > Duration::from_secs(86_400));
        assert_eq!(retry_delay(1, 0.01), Some(Duration::from_millis(50)));
    }
}
