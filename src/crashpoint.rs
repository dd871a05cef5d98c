//! Test hook for crash-safety tests. When the environment variable
//! `INTERESTS_RECEIVER_CRASHPOINT` names a point, the process prints
//! `CRASHPOINT <name>` on stderr when it reaches it and then stops there, so
//! that a test can `kill -9` it at exactly that moment. Unset (always, in
//! production) it costs one comparison.

use std::sync::OnceLock;

pub const VARIABLE: &str = "INTERESTS_RECEIVER_CRASHPOINT";

fn armed() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var(VARIABLE).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// Stops here forever when this point is armed.
pub async fn reach(point: &str) {
    if armed() == Some(point) {
        eprintln!("CRASHPOINT {point}");
        std::future::pending::<()>().await;
    }
}
