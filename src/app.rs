//! Wiring: database, HTTP server, workers and (in sandbox mode) the built-in
//! simulator, run as sibling tasks under one shutdown token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

use crate::callbacks::CallbackGate;
use crate::callbacks::Intake;
use crate::callbacks::applier::Applier;
use crate::config::{Config, Upstream};
use crate::events::EventHub;
use crate::facet_index::FacetIndex;
use crate::http::{self, AppState};
use crate::reads::{self, Reads};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::store::{self, pacing::Limits};
use crate::telemetry;
use crate::token::random_token;
use crate::upstream::{Pacer, UpstreamClient};
use crate::webhooks;
use crate::workers::{self, WorkerContext};

/// Time allowed for requests and workers to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// A built, bound, not yet running service.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    workers: Option<WorkerContext>,
    webhook_sender: Option<webhooks::sender::Sender>,
    sandbox: Option<(Sandbox, TcpListener)>,
}

/// Knobs for embedding the service (tests); `serve` uses the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run the submitter/poller in this process.
    pub run_workers: bool,
    /// Length of the pacing windows ("minute", "hour"), scaled in tests.
    pub pacing_minute: Duration,
    /// Factor applied to the webhook retry schedule (tests make it small).
    pub webhook_retry_scale: f64,
    /// How long an idle webhook sender waits before looking for due
    /// retries again (tests make it long).
    pub webhook_idle_nap: Duration,
    /// Open `GET /v1/events` streams this process serves at once.
    pub max_event_streams: usize,
    /// Open `GET /v1/profiles/export` streams this process serves at once.
    pub max_exports: usize,
    /// How long an export stream goes without a page before it sends a
    /// keep-alive newline (tests make it short).
    pub export_keep_alive: Duration,
    /// Load the facet index before serving (tests: counts come from it at
    /// once); otherwise it loads in the background and the database
    /// answers meanwhile.
    pub load_facet_index_first: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            run_workers: true,
            pacing_minute: Duration::from_secs(60),
            webhook_retry_scale: 1.0,
            webhook_idle_nap: crate::webhooks::sender::IDLE_NAP,
            max_event_streams: crate::events::MAX_STREAMS,
            max_exports: http::export::MAX_EXPORTS,
            export_keep_alive: http::export::KEEP_ALIVE,
            load_facet_index_first: false,
        }
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = store::connect(&config.database_url, config.database_max_connections)
            .await
            .context("cannot connect to DATABASE_URL")?;
        Self::build_with_pool(config, pool, Options::default()).await
    }

    pub async fn build_with_pool(
        config: Config,
        db: PgPool,
        options: Options,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("cannot bind LISTEN_ADDR {}", config.listen_addr))?;
        Self::build_on(config, db, options, listener).await
    }

    /// Builds the service on a listener bound by the caller (tests bind port
    /// 0 and must know the port before the configuration is made).
    pub async fn build_on(
        config: Config,
        db: PgPool,
        options: Options,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        store::migrate(&db)
            .await
            .context("cannot apply database migrations")?;
        check_mode_matches_data(&db, config.is_sandbox()).await?;
        let backfilled = crate::lookups::backfill_identities(&db, &config.service_secret)
            .await
            .context("cannot record the identities of earlier lookups")?;
        if backfilled > 0 {
            tracing::info!(
                lookups = backfilled,
                "recorded identities of earlier lookups"
            );
        }
        let gate = Arc::new(
            CallbackGate::new(&db, config.service_secret.clone())
                .await
                .context("cannot read the lookups table")?,
        );
        let intake = Intake::new(config.redact_sections.clone());
        let applier = Applier::start(db.clone(), config.database_max_connections);
        let reads = read_pools(&config, &db).await?;
        let facet_index = FacetIndex::new(config.facet_index);
        if options.load_facet_index_first {
            facet_index
                .load(&db)
                .await
                .context("cannot load the facet index")?;
        }
        let port = listener.local_addr()?.port();

        let (client, callback_base, sandbox) = match &config.upstream {
            Upstream::Account {
                base_url,
                api_key,
                api_secret,
            } => {
                let client = UpstreamClient::new(
                    base_url,
                    api_key.clone(),
                    api_secret.clone(),
                    config.upstream_timeout,
                );
                if let Some(base) = &config.public_base_url {
                    warn_if_private(base);
                }
                (client, config.public_base_url.clone(), None)
            }
            Upstream::Sandbox => {
                let (key, secret) = (random_token(), random_token());
                let sandbox = Sandbox::new(SandboxConfig {
                    api_key: key.clone(),
                    api_secret: secret.clone(),
                    time_scale: config.sandbox_time_scale,
                    rate_per_minute: config.rate_per_minute,
                    rate_per_hour: config.rate_per_hour,
                });
                let sandbox_listener = TcpListener::bind("127.0.0.1:0").await?;
                let upstream: Url = format!("http://{}", sandbox_listener.local_addr()?).parse()?;
                let client = UpstreamClient::new(&upstream, key, secret, config.upstream_timeout);
                // The simulator calls back over loopback unless told otherwise.
                let callback_base = config.public_base_url.clone().unwrap_or_else(|| {
                    format!("http://127.0.0.1:{port}")
                        .parse()
                        .expect("valid URL")
                });
                tracing::warn!(
                    upstream = %upstream,
                    "SANDBOX MODE: no upstream credentials are set; a built-in simulator answers \
                     instead of the real Personal Interests API. Results are synthetic. Unless \
                     SERVICE_SECRET is set, a fixed development SERVICE_SECRET is used."
                );
                (
                    client,
                    Some(callback_base),
                    Some((sandbox, sandbox_listener)),
                )
            }
        };
        if let Some(token) = &config.generated_token {
            // Printed once, on stdout, so that it stays out of the log stream.
            println!("SANDBOX MODE API token (valid until restart): {token}");
        }

        let config = Arc::new(config);
        let wake = Arc::new(Notify::new());
        let minute = options.pacing_minute;
        let workers = options.run_workers.then(|| WorkerContext {
            db: db.clone(),
            pacer: Pacer::new(
                db.clone(),
                Limits {
                    per_minute: config.rate_per_minute,
                    per_hour: config.rate_per_hour,
                    minute,
                    hour: minute * 60,
                    // The client's timeout bounds a call from when it is
                    // dated as sent; the margin covers the moment between.
                    in_flight: config.upstream_timeout + Duration::from_secs(1),
                },
            ),
            client,
            owner: Uuid::new_v4(),
            callback_base,
            poll_after: config.poll_after,
            ambiguous_wait: config.ambiguous_resubmit_after,
            job_deadline: config.job_deadline,
            lease: config.worker_lease,
            concurrency: config.upstream_concurrency as usize,
            wake: wake.clone(),
            gate: gate.clone(),
            intake: intake.clone(),
            secret: config.service_secret.clone(),
            retention: workers::Retention {
                deliveries: config.retention_delivery,
                lookups: config.retention_profile,
            },
            refresh: config.refresh_after.map(|after| workers::RefreshSchedule {
                after,
                secret: config.service_secret.clone(),
                synthetic: config.is_sandbox(),
                profile_cache: config.profile_cache,
                credit_budget_daily: config.credit_budget_daily,
                refresh_credits_daily: config.refresh_credits_daily,
            }),
        });
        let events = EventHub::new(options.max_event_streams);
        let webhook_sender = options.run_workers.then(|| {
            webhooks::sender::Sender::new(
                store::side_pool(&db, webhooks::sender::POOL_SIZE),
                config.service_secret.clone(),
                events.subscribe(),
                config.webhook_allow_private,
                options.webhook_retry_scale,
                config.webhook_disable_after,
            )
            .with_idle_nap(options.webhook_idle_nap)
        });
        let state = AppState {
            db,
            reads,
            config,
            wake,
            metrics: telemetry::metrics_handle(),
            events,
            gate,
            intake,
            applier,
            facet_index,
            exports: http::export::Exports::new(options.max_exports, options.export_keep_alive),
        };
        Ok(Application {
            listener,
            state,
            workers,
            webhook_sender,
            sandbox,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Address of the built-in simulator, in sandbox mode.
    pub fn sandbox_addr(&self) -> Option<SocketAddr> {
        self.sandbox
            .as_ref()
            .and_then(|(_, listener)| listener.local_addr().ok())
    }

    /// Runs until `shutdown` is cancelled, then stops accepting, finishes
    /// requests in flight, stops the workers at a safe point and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), config = ?self.state.config, "listening");
        let tasks = tokio_util::task::TaskTracker::new();
        if let Some((sandbox, listener)) = self.sandbox {
            let token = shutdown.child_token();
            tasks.spawn(async move {
                if let Err(e) = sandbox.serve(listener, token).await {
                    tracing::error!(error = %e, "sandbox stopped");
                }
            });
        }
        {
            let (gate, db, token) = (
                self.state.gate.clone(),
                self.state.db.clone(),
                shutdown.clone(),
            );
            tasks.spawn(async move { gate.run(db, token).await });
        }
        if let Some(ctx) = self.workers {
            tasks.spawn(workers::run(ctx, shutdown.clone()));
        }
        tasks.spawn(
            self.state
                .events
                .clone()
                .run(self.state.db.clone(), shutdown.clone()),
        );
        tasks.spawn(reads::monitor::run(
            self.state.reads.clone(),
            self.state.config.database_read_max_lag,
            shutdown.clone(),
        ));
        // Every replica runs it; the one elected places the events.
        tasks.spawn(crate::events::sequencer::run(
            self.state.db.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(
            self.state
                .facet_index
                .clone()
                .run(self.state.db.clone(), shutdown.clone()),
        );
        if let Some(sender) = self.webhook_sender {
            tasks.spawn(sender.run(shutdown.clone()));
        }
        tasks.close();

        let app = http::router(self.state);
        let stop = shutdown.clone();
        let max_connections = http::server::max_connections();
        let mut server = tokio::spawn(http::server::serve(
            self.listener,
            app,
            max_connections,
            stop,
        ));
        // One grace period, counted from the stop signal, covers both the
        // requests in flight and the workers: they drain side by side.
        let served = tokio::select! {
            served = &mut server => Some(served),
            _ = shutdown.cancelled() => None,
        };
        shutdown.cancel();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let served = match served {
            Some(served) => served,
            None => match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::warn!("requests still in flight at the end of the grace period");
                    server.abort();
                    Ok(())
                }
            },
        };
        if tokio::time::timeout_at(deadline, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("workers did not stop in time; their leases will run out");
        }
        served.context("HTTP server task failed")
    }
}

/// How long a read waits for a connection to the replica before it is
/// answered by the primary instead.
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// The pools of reads that may go to `DATABASE_READ_URL`.
async fn read_pools(config: &Config, db: &PgPool) -> anyhow::Result<Reads> {
    let Some(url) = &config.database_read_url else {
        return Ok(Reads::primary_only(db.clone()));
    };
    let replica = store::connect_lazy(
        url,
        config.database_max_connections,
        REPLICA_ACQUIRE_TIMEOUT,
    )
    .context("invalid DATABASE_READ_URL")?;
    let reads = Reads::with_replica(db.clone(), replica);
    reads::monitor::check_at_start(&reads).await?;
    Ok(reads)
}

/// Sandbox results are synthetic: a database must never mix them with
/// real, paid ones, whichever mode starts first.
async fn check_mode_matches_data(db: &PgPool, sandbox: bool) -> anyhow::Result<()> {
    let other_kind = store::lookups::any_of_kind(db, !sandbox)
        .await
        .context("cannot read the lookups table")?;
    if !other_kind {
        return Ok(());
    }
    if sandbox {
        anyhow::bail!(
            "refusing to start in sandbox mode: this database holds real lookups. Point \
             DATABASE_URL at a database of its own for the sandbox, or set \
             UPSTREAM_API_KEY and UPSTREAM_API_SECRET to run for real. (Lookups made before \
             this version count as real; if this database only ever served the sandbox, \
             mark them: UPDATE lookups SET synthetic = true)"
        )
    } else {
        anyhow::bail!(
            "refusing to start with upstream credentials: this database holds synthetic \
             sandbox lookups that would pass for real results. Use a fresh database (or \
             delete the sandbox rows: DELETE FROM lookups WHERE synthetic)"
        )
    }
}

/// The real provider refuses callback URLs on loopback or private networks.
fn warn_if_private(base: &Url) {
    let private = match base.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".local"),
        None => false,
    };
    if private {
        tracing::warn!(
            public_base_url = %base,
            "PUBLIC_BASE_URL is a loopback or private address; the real provider refuses such \
             callback URLs, so results will arrive by polling only"
        );
    }
}
