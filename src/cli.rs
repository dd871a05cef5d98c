//! Command line: `serve`, `migrate`, `sandbox`, `generate`, `healthcheck`,
//! and the client commands `import` and `export`.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::Application;
use crate::config::{Config, LogFormat, ServeArgs};
use crate::sandbox::{self, SandboxArgs};
use crate::{store, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "interests-receiver",
    version,
    about = "Look people up through the Personal Interests API and keep their profiles"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: REST API, callback receiver, submitter and poller.
    /// Migrations are applied at start.
    #[command(after_help = "Logging: RUST_LOG filters log lines (default: info), \
        e.g. RUST_LOG=info,interests_receiver=debug.")]
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate {
        /// PostgreSQL connection string.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Run the upstream simulator alone (for compose or another receiver).
    Sandbox(SandboxArgs),
    /// Look up every person of a CSV file through a running server
    /// (exit 0: all rows accepted, 1: some rows bad, 2: server unusable).
    Import(crate::client::import::ImportArgs),
    /// Write every matching profile of a running server to standard output
    /// as CSV or JSON lines.
    Export(crate::client::export::ExportArgs),
    /// Fill DATABASE_URL (migrated first) with N synthetic completed lookups
    /// and profiles, generated in the database: demos, load tests, benchmarks.
    Generate(crate::generate::GenerateArgs),
    /// Exit 0 when the given health URL answers 200 (container health check).
    Healthcheck {
        /// URL to probe [default: http://127.0.0.1:<port of LISTEN_ADDR>/healthz,
        /// so the check follows the port the service binds].
        #[arg(long, env = "HEALTHCHECK_URL")]
        url: Option<String>,
        /// The service's listen address; only its port is used, to build the
        /// default URL.
        #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
        listen_addr: std::net::SocketAddr,
    },
}

/// Runs a parsed command line; the process exit code follows the result.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let log_format = args.log_format;
            telemetry::init_logging(log_format);
            let config = Config::from_args(*args)?;
            let app = Application::build(config).await?;
            app.run_until_stopped(stop_signal()).await
        }
        Command::Migrate { database_url } => {
            telemetry::init_logging(LogFormat::Json);
            let pool = store::connect(&database_url, 2)
                .await
                .context("cannot connect to DATABASE_URL")?;
            store::migrate(&pool).await.context("migrations failed")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Sandbox(args) => {
            telemetry::init_logging(LogFormat::Json);
            sandbox::run(args, stop_signal()).await
        }
        Command::Import(args) => exit_with(crate::client::import::run(args).await),
        Command::Export(args) => exit_with(crate::client::export::run(args).await),
        Command::Generate(args) => crate::generate::run(args).await,
        Command::Healthcheck { url, listen_addr } => {
            let url = url.unwrap_or_else(|| healthz_url(listen_addr));
            let response = reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()?
                .get(&url)
                .send()
                .await
                .with_context(|| format!("{url} did not answer"))?;
            anyhow::ensure!(
                response.status().is_success(),
                "{url} answered {}",
                response.status()
            );
            Ok(())
        }
    }
}

/// `/healthz` at `listen_addr`: its own address when it names one, loopback
/// when it binds every interface (`0.0.0.0`, `[::]`).
fn healthz_url(listen_addr: std::net::SocketAddr) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let ip = match listen_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/healthz", SocketAddr::new(ip, listen_addr.port()))
}

/// Client commands have exit statuses of their own (0, 1, 2); they have
/// already reported their problems on standard error.
fn exit_with(code: u8) -> anyhow::Result<()> {
    if code != 0 {
        std::process::exit(i32::from(code));
    }
    Ok(())
}

/// A token cancelled on ctrl-c or SIGTERM.
fn stop_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("can listen for SIGTERM");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("stop signal received; shutting down");
        cancel.cancel();
    });
    token
}
