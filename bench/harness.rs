//! What every measurement stands on: the settings of a run, a throwaway
//! database, the service running in-process, and the facts about the
//! machine that a reader needs to interpret the numbers.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use interests_receiver::app::{Application, Options};
use interests_receiver::config::{ApiTokens, Config, LogFormat, Upstream};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Bearer token the in-process service accepts.
pub const TOKEN: &str = "bench-token-0123456789abcdef";
/// Connections of the service's pool: the `DATABASE_MAX_CONNECTIONS`
/// default, so that the service runs as it ships.
const APP_POOL: u32 = 10;
/// Connections of the bench's own pool (seeding and direct SQL baselines,
/// which run one query at a time).
const BENCH_POOL: u32 = 2;

/// Sizes of one run. `BENCH_SCALE` (default 1) shrinks or grows the request
/// counts, for a quick smoke run; the round counts stay fixed so that the
/// medians keep their meaning.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    /// Name of the database this run creates and drops.
    pub database_name: String,
    /// Requests in flight at once in the throughput measurements.
    pub concurrency: usize,
    /// Baseline/subject round pairs of the throughput measurements.
    pub rounds: usize,
    /// Callbacks delivered (first pass) and lookups created, over all rounds.
    pub requests: usize,
    /// Profiles seeded for the search measurement.
    pub profiles: usize,
    /// Rounds of the search measurement.
    pub search_rounds: usize,
    /// Queries of each kind per search round.
    pub queries_per_round: usize,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Settings> {
        let scale: f64 = match std::env::var("BENCH_SCALE") {
            Ok(raw) => raw
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0 && s.is_finite())
                .context("BENCH_SCALE: expected a positive number")?,
            Err(_) => 1.0,
        };
        let scaled = |n: f64| ((n * scale).round() as usize).max(16);
        let database_name = std::env::var("BENCH_DATABASE")
            .unwrap_or_else(|_| format!("ir_bench_{}", &Uuid::new_v4().simple().to_string()[..12]));
        // The name is spliced into CREATE/DROP DATABASE, which take no binds.
        if !database_name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bail!("BENCH_DATABASE: expected lowercase letters, digits and underscores");
        }
        let rounds = 8;
        Ok(Settings {
            database_url: std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            database_name,
            concurrency: 16,
            rounds,
            // A whole number of requests per round.
            requests: scaled(2000.0).div_ceil(rounds) * rounds,
            profiles: scaled(20_000.0).max(200),
            search_rounds: 7,
            queries_per_round: 10,
        })
    }

    /// Requests of one round of a throughput measurement.
    pub fn per_round(&self) -> usize {
        self.requests / self.rounds
    }
}

/// The run's own database, created empty and dropped at the end, so that a
/// benchmark never touches data it did not make.
pub struct BenchDb {
    admin: PgConnectOptions,
    name: String,
    /// Pool the service uses.
    pub app: PgPool,
    /// Pool the bench uses for seeding and direct SQL.
    pub bench: PgPool,
}

impl BenchDb {
    pub async fn create(settings: &Settings) -> anyhow::Result<BenchDb> {
        let admin = PgConnectOptions::from_str(&settings.database_url)
            .context("DATABASE_URL is not a PostgreSQL URL")?;
        let name = settings.database_name.clone();
        let mut conn = admin
            .connect()
            .await
            .context("cannot connect to DATABASE_URL")?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        conn.close().await?;
        let options = admin.clone().database(&name);
        let pool = |size| {
            PgPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.clone())
        };
        Ok(BenchDb {
            app: pool(APP_POOL).await?,
            bench: pool(BENCH_POOL).await?,
            admin,
            name,
        })
    }

    /// Closes both pools and drops the database. Errors are reported, not
    /// returned: this runs on the way out, after a failure too.
    pub async fn drop_database(self) {
        self.app.close().await;
        self.bench.close().await;
        let name = &self.name;
        let result = async {
            let mut conn = self.admin.connect().await?;
            // FORCE (PostgreSQL 13+) also ends sessions a failed run left.
            let forced = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
            if forced.is_err() {
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&mut conn)
                    .await?;
            }
            conn.close().await
        }
        .await;
        if let Err(e) = result {
            eprintln!("bench: could not drop database {name}: {e}");
        }
    }
}

/// The service, running in this process on a loopback port, with no
/// workers (nothing here needs upstream) and an upstream nobody calls.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub async fn start(db: PgPool) -> anyhow::Result<Server> {
        let config = config();
        let options = Options {
            run_workers: false,
            ..Options::default()
        };
        let app = Application::build_with_pool(config, db, options)
            .await
            .context("the service did not build")?;
        let addr = app.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Ok(Server {
            addr,
            shutdown,
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .context("the service did not stop")??
    }
}

/// The configuration of tests/common/mod.rs, minus everything upstream: the
/// upstream address is the discard port and no worker ever calls it.
fn config() -> Config {
    let listen_addr: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    Config {
        database_url: String::new(),
        listen_addr,
        public_base_url: Some("http://127.0.0.1:9".parse().expect("valid URL")),
        upstream: Upstream::Account {
            base_url: "http://127.0.0.1:9".parse().expect("valid URL"),
            api_key: "bench-key".into(),
            api_secret: "bench-secret".into(),
        },
        api_tokens: ApiTokens::from_plain(TOKEN),
        service_secret: interests_receiver::secrets::ServiceSecret::sandbox(),
        poll_after: Duration::from_secs(600),
        rate_per_minute: 60,
        rate_per_hour: 1000,
        job_deadline: Duration::from_secs(86_400),
        profile_cache: Duration::from_secs(2_592_000),
        ambiguous_resubmit_after: Duration::from_secs(3600),
        credit_budget_daily: None,
        upstream_timeout: Duration::from_secs(30),
        worker_lease: Duration::from_secs(45),
        upstream_concurrency: 4,
        database_max_connections: APP_POOL,
        sandbox_time_scale: 1.0,
        log_format: LogFormat::Json,
        webhook_allow_private: false,
        generated_token: None,
    }
}

/// Facts about the machine and the database server, for the report.
#[derive(Debug, Clone)]
pub struct Facts {
    pub date: String,
    pub nproc: usize,
    pub cpu: String,
    pub memory: String,
    pub load_average: String,
    pub postgres: String,
    /// Durability settings: they dominate the cost of a committed callback.
    pub postgres_durability: String,
    pub commit: String,
}

impl Facts {
    pub async fn gather(db: &PgPool) -> anyhow::Result<Facts> {
        let show = |setting: &'static str| async move {
            sqlx::query_scalar::<_, String>(&format!("SHOW {setting}"))
                .fetch_one(db)
                .await
        };
        Ok(Facts {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
            memory: proc_field("/proc/meminfo", "MemTotal").unwrap_or_else(|| "unknown".into()),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
            postgres: show("server_version").await?,
            postgres_durability: format!(
                "fsync={}, synchronous_commit={}",
                show("fsync").await?,
                show("synchronous_commit").await?
            ),
            commit: git_commit(),
        })
    }
}

/// The value of the first `field: value` line of a /proc file.
fn proc_field(path: &str, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == field)
        .map(|(_, value)| value.trim().to_owned())
}

/// Short commit of the checkout, marked when the tree has changes.
fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit} (with uncommitted changes)")
            } else {
                commit
            }
        }
        None => "unknown".into(),
    }
}
