//! Test hook for crash-safety tests, compiled only with the `crashpoints`
//! cargo feature (which `scripts/test.sh` enables, and the shipped image
//! never does). When the environment variable
//! `INTERESTS_RECEIVER_CRASHPOINT` names a point, the process prints
//! `CRASHPOINT <name>` on stderr when it reaches it and then stops there, so
//! that a test can `kill -9` it at exactly that moment. Without the feature
//! `reach` is an empty inline function and the variable is never read.

pub const VARIABLE: &str = "INTERESTS_RECEIVER_CRASHPOINT";

#[cfg(feature = "crashpoints")]
fn armed() -> Option<&'static str> {
    use std::sync::OnceLock;
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var(VARIABLE).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// Stops here forever when this point is armed.
#[cfg(feature = "crashpoints")]
pub async fn reach(point: &str) {
    if armed() == Some(point) {
        eprintln!("CRASHPOINT {point}");
        std::future::pending::<()>().await;
    }
}

/// Without the `crashpoints` feature: nothing.
#[cfg(not(feature = "crashpoints"))]
#[inline(always)]
pub async fn reach(_point: &str) {}
