//! Built-in simulator of the upstream Personal Interests API.
//!
//! It follows the provider's documented behaviour (contract section 2) so
//! that a new user sees the whole loop work without an account, and so that
//! tests get a faithful upstream they can steer: identifiers containing
//! `sandbox-<case>` ask for the hard cases listed in [`CASES`]. One setting,
//! [`SandboxConfig::time_scale`], multiplies every delay so tests run fast
//! without changing the ratios between delays.
//!
//! Besides the upstream API it serves `GET /_sandbox/stats` and
//! `GET /_sandbox/jobs` (no authentication) so tests can count what was
//! submitted, charged and delivered.

mod auth;
mod cases;
mod delivery;
mod envelope;
mod guard;
mod jobs;
mod lifecycle;
mod poll;
mod profiles;
mod ratelimit;
mod routes;
mod shared;
mod stats;
mod subject;
mod submit;
mod words;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use cases::CASES;
pub use jobs::SandboxJob;
pub use stats::SandboxStats;
pub use subject::Subject;

use shared::Shared;

/// Settings of one simulator instance.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Value every request must carry in `X-API-Key`.
    pub api_key: String,
    /// Value every request must carry in `X-API-Secret`.
    pub api_secret: String,
    /// Factor applied to every delay (job progression, callback retry
    /// schedule 1 s, 5 s, 15 s, 60 s, 300 s, the 30 s delivery timeout, rate
    /// windows of 60 s and 3600 s, Retry-After). 1.0 = real time. A value
    /// that is not a positive finite number is replaced by 1.0.
    pub time_scale: f64,
    /// Requests allowed in any sliding (scaled) minute, submits and polls.
    pub rate_per_minute: u32,
    /// Requests allowed in any sliding (scaled) hour, submits and polls.
    pub rate_per_hour: u32,
}

impl std::fmt::Debug for SandboxConfig {
    // Hand-written so that the secret can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("api_key", &self.api_key)
            .field("time_scale", &self.time_scale)
            .field("rate_per_minute", &self.rate_per_minute)
            .field("rate_per_hour", &self.rate_per_hour)
            .finish_non_exhaustive()
    }
}

/// A running simulator: cheap to clone, all clones share one state.
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
}

impl Sandbox {
    /// Creates a simulator with no jobs and empty rate windows.
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// The full upstream API plus the `/_sandbox/*` introspection routes.
    pub fn router(&self) -> axum::Router {
        routes::router(self.shared.clone())
    }

    /// Serves [`Sandbox::router`] on `listener` until `shutdown` fires, then
    /// stops job timers and callback deliveries and waits for them to end.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let internal = self.shared.shutdown.clone();
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                shutdown.cancelled().await;
                // Also releases submit responses held back by `submit-timeout`,
                // so graceful shutdown does not wait for them.
                internal.cancel();
            })
            .await;
        self.stop().await;
        served
    }

    /// Stops background work (job timers, callback deliveries) and waits for
    /// it to end. For callers that mount [`Sandbox::router`] themselves.
    pub async fn stop(&self) {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    /// Counters since start; the same as `GET /_sandbox/stats`.
    pub fn stats(&self) -> SandboxStats {
        self.shared.stats.snapshot()
    }

    /// Every job ever accepted, in submission order; the same as
    /// `GET /_sandbox/jobs`.
    pub fn jobs(&self) -> Vec<SandboxJob> {
        jobs::list(&self.shared)
    }
}

/// Settings of the `sandbox` subcommand, which runs the simulator alone so
/// another receiver (or the compose file) can use it as `UPSTREAM_BASE_URL`.
#[derive(clap::Args, Clone)]
pub struct SandboxArgs {
    /// Address the simulator listens on.
    #[arg(long, env = "SANDBOX_LISTEN_ADDR", default_value = "0.0.0.0:9090")]
    pub listen_addr: SocketAddr,

    /// API key the simulator expects in X-API-Key.
    #[arg(long, env = "SANDBOX_API_KEY", default_value = "sandbox-key")]
    pub api_key: String,

    /// API secret the simulator expects in X-API-Secret (the default is a
    /// public demo value; only values set in the environment are hidden).
    #[arg(
        long,
        env = "SANDBOX_API_SECRET",
        default_value = "sandbox-secret",
        hide_env_values = true
    )]
    pub api_secret: String,

    /// Factor applied to every delay of the simulator (0.01 makes its
    /// seconds last 10 ms); must be greater than 0.
    #[arg(long, env = "SANDBOX_TIME_SCALE", default_value_t = 1.0, value_parser = parse_time_scale)]
    pub time_scale: f64,

    /// Requests (submits and polls) the simulator allows per sliding minute.
    #[arg(long, env = "SANDBOX_RATE_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_per_minute: u32,

    /// Requests (submits and polls) the simulator allows per sliding hour.
    #[arg(long, env = "SANDBOX_RATE_PER_HOUR", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_per_hour: u32,
}

impl std::fmt::Debug for SandboxArgs {
    // Hand-written so that the secret can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxArgs")
            .field("listen_addr", &self.listen_addr)
            .field("api_key", &self.api_key)
            .field("time_scale", &self.time_scale)
            .field("rate_per_minute", &self.rate_per_minute)
            .field("rate_per_hour", &self.rate_per_hour)
            .finish_non_exhaustive()
    }
}

/// Accepts only positive finite numbers: a zero or negative scale would make
/// every window empty and every delay vanish.
fn parse_time_scale(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 => Ok(scale),
        Ok(_) => Err("must be a number greater than 0".to_owned()),
        Err(err) => Err(format!("not a number: {err}")),
    }
}

/// Binds `args.listen_addr` and serves the simulator until `shutdown` fires.
pub async fn run(args: SandboxArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot bind {}: {err}", args.listen_addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        time_scale = args.time_scale,
        rate_per_minute = args.rate_per_minute,
        rate_per_hour = args.rate_per_hour,
        "sandbox upstream listening"
    );
    let sandbox = Sandbox::new(SandboxConfig {
        api_key: args.api_key,
        api_secret: args.api_secret,
        time_scale: args.time_scale,
        rate_per_minute: args.rate_per_minute,
        rate_per_hour: args.rate_per_hour,
    });
    sandbox.serve(listener, shutdown).await?;
    tracing::info!("sandbox upstream stopped");
    Ok(())
}
