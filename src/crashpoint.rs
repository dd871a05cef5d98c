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

/// Runs `work`; when this point is armed, stops forever once `work` has run
/// for [`IN_FLIGHT`] (a request on the wire, its answer not yet read).
#[cfg(feature = "crashpoints")]
pub async fn during<F: std::future::Future>(point: &str, work: F) -> F::Output {
    let mut work = std::pin::pin!(work);
    if armed() == Some(point) {
        let _ = tokio::time::timeout(IN_FLIGHT, &mut work).await;
        eprintln!("CRASHPOINT {point}");
        std::future::pending::<()>().await;
    }
    work.await
}

/// How long armed [`during`] points let their work run before stopping.
#[cfg(feature = "crashpoints")]
const IN_FLIGHT: std::time::Duration = std::time::Duration::from_millis(300);

/// Without the `crashpoints` feature: nothing.
#[cfg(not(feature = "crashpoints"))]
#[inline(always)]
pub async fn reach(_point: &str) {}

/// Without the `crashpoints` feature: `work`, as it is.
#[cfg(not(feature = "crashpoints"))]
#[inline(always)]
pub async fn during<F: std::future::Future>(_point: &str, work: F) -> F::Output {
    work.await
}
