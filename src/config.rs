//! Every setting of `serve`, documented with its default and validated at
//! start. Values come from the environment (the names are part of the product
//! contract) or from the equivalent command-line flags.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use url::Url;

use crate::auth::{Access, ApiTokens, TokenError};
use crate::secrets::{MIN_SECRET_LEN, ServiceSecret};

/// Upstream endpoint used when `UPSTREAM_BASE_URL` is not set.
pub const DEFAULT_UPSTREAM: &str = "https://api.nyne.ai";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// What happens to a lookup whose only identifier is a name (with or
/// without company): `NAME_ONLY_LOOKUPS`. A name alone can match the wrong
/// person, and each match costs credits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum NameOnlyLookups {
    /// Accepted silently.
    Allow,
    /// Accepted, with an entry in the lookup's `warnings`.
    #[default]
    Warn,
    /// Refused with 422 naming the identifiers that would make it precise.
    Refuse,
}

/// Settings of `interests-receiver serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// PostgreSQL connection string.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// PostgreSQL streaming replica (a hot standby) of DATABASE_URL:
    /// searches, facets, exports and the console's lists read from it while
    /// it is reachable and no further behind than --database-read-max-lag-secs;
    /// otherwise they read from DATABASE_URL. Unset: everything uses
    /// DATABASE_URL.
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true)]
    pub database_read_url: Option<String>,

    /// How far (in seconds of the primary's writes) the replica of
    /// DATABASE_READ_URL may be behind before reads go to DATABASE_URL.
    #[arg(long, env = "DATABASE_READ_MAX_LAG_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub database_read_max_lag_secs: u64,

    /// Address the HTTP server binds.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// Externally reachable base URL of this service; callback URLs are built
    /// from it. Unset: no callback_url is sent and results arrive by polling
    /// (in sandbox mode the simulator then calls back over loopback).
    #[arg(long, env = "PUBLIC_BASE_URL", value_parser = parse_http_url)]
    pub public_base_url: Option<Url>,

    /// Upstream API base URL (http accepted for simulators and tests).
    #[arg(long, env = "UPSTREAM_BASE_URL", default_value = DEFAULT_UPSTREAM, value_parser = parse_http_url)]
    pub upstream_base_url: Url,

    /// Upstream API key. With the secret also unset: sandbox mode.
    #[arg(long, env = "UPSTREAM_API_KEY", hide_env_values = true)]
    pub upstream_api_key: Option<String>,

    /// Upstream API secret. With the key also unset: sandbox mode.
    #[arg(long, env = "UPSTREAM_API_SECRET", hide_env_values = true)]
    pub upstream_api_secret: Option<String>,

    /// Comma-separated bearer tokens for /v1/*: each the token itself or
    /// `sha256:<hex>` of it, optionally named (`name=token`). Required
    /// outside sandbox mode.
    #[arg(long, env = "API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<String>,

    /// Comma-separated read-only bearer tokens (same format as API_TOKENS):
    /// they may only GET /v1/*.
    #[arg(long, env = "API_READ_TOKENS", hide_env_values = true)]
    pub api_read_tokens: Option<String>,

    /// Key material (at least 32 bytes) from which callback tokens, keyed
    /// identifier hashes, webhook secret encryption and console sessions are
    /// derived. Required outside sandbox mode; the same on every replica.
    #[arg(long, env = "SERVICE_SECRET", hide_env_values = true)]
    pub service_secret: Option<String>,

    /// The former SERVICE_SECRET during a rotation: still accepted.
    #[arg(long, env = "SERVICE_SECRET_PREVIOUS", hide_env_values = true)]
    pub service_secret_previous: Option<String>,

    /// Seconds after a submit before the first poll of a job with no callback
    /// yet [default: 600 with callbacks, 15 without or in sandbox mode].
    #[arg(long, env = "POLL_AFTER_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_after_secs: Option<u64>,

    /// Ceiling on upstream requests per minute, shared by all replicas.
    #[arg(long, env = "UPSTREAM_RATE_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub upstream_rate_per_minute: u32,

    /// Ceiling on upstream requests per hour, shared by all replicas.
    #[arg(long, env = "UPSTREAM_RATE_PER_HOUR", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub upstream_rate_per_hour: u32,

    /// Age after which a job that never finished is marked `expired`.
    #[arg(long, env = "JOB_DEADLINE_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub job_deadline_secs: u64,

    /// How long a completed profile answers a repeat lookup of the same person.
    #[arg(long, env = "PROFILE_CACHE_SECS", default_value_t = 2_592_000)]
    pub profile_cache_secs: u64,

    /// After a submit whose outcome is unknown (timeout, connection lost),
    /// seconds to wait for its callback before re-submitting with the same
    /// callback token (this can charge twice). Must exceed the provider's
    /// delivery window. Unset: never sent again; the lookup waits for a
    /// callback, an operator's POST /v1/lookups/{id}/resubmit, or expiry
    /// after JOB_DEADLINE_SECS.
    #[arg(long, env = "AMBIGUOUS_RESUBMIT_AFTER_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ambiguous_resubmit_after_secs: Option<u64>,

    /// Lookups whose only identifier is `name` (with or without `company`):
    /// `allow`, `warn` (accepted with a warning) or `refuse` (422).
    #[arg(long, env = "NAME_ONLY_LOOKUPS", value_enum, default_value = "warn")]
    pub name_only_lookups: NameOnlyLookups,

    /// Daily credit budget; beyond it new lookups answer 429. Unset: no budget.
    #[arg(long, env = "CREDIT_BUDGET_DAILY")]
    pub credit_budget_daily: Option<u64>,

    /// Timeout of one upstream request, in seconds.
    #[arg(long, env = "UPSTREAM_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub upstream_timeout_secs: u64,

    /// Seconds a worker owns a claimed job; a replica that dies holding one
    /// loses it after this. Must exceed UPSTREAM_TIMEOUT_SECS [default:
    /// UPSTREAM_TIMEOUT_SECS + 15].
    #[arg(long, env = "WORKER_LEASE_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub worker_lease_secs: Option<u64>,

    /// Upstream requests one replica keeps in flight at once.
    #[arg(long, env = "UPSTREAM_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub upstream_concurrency: u32,

    /// Maximum PostgreSQL connections of this process.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..))]
    pub database_max_connections: u32,

    /// Sandbox mode only: factor applied to every delay of the built-in
    /// simulator (0.01 makes its seconds last 10 ms).
    #[arg(long, env = "SANDBOX_TIME_SCALE", default_value_t = 1.0, value_parser = parse_time_scale)]
    pub sandbox_time_scale: f64,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// `false` turns off the in-process facet index (facet counts under
    /// facet filters then come from the database: exact but slow at scale;
    /// the index takes about 56 MiB per million profiles).
    #[arg(long, env = "FACET_INDEX", default_value_t = true, action = clap::ArgAction::Set)]
    pub facet_index: bool,

    /// `true` allows outgoing webhook endpoints on loopback and private
    /// addresses (same-host consumers, tests).
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// A webhook endpoint whose every attempt has failed for this many days
    /// is disabled, with a `webhook.disabled` event (PATCH enables it).
    #[arg(long, env = "WEBHOOK_DISABLE_AFTER_DAYS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=365))]
    pub webhook_disable_after_days: u32,

    /// Callback delivery records and their stored bodies older than this
    /// many days are deleted.
    #[arg(long, env = "RETENTION_DELIVERY_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retention_delivery_days: u32,

    /// Finished lookups and their profiles older than this many days are
    /// deleted. Unset: kept.
    #[arg(long, env = "RETENTION_PROFILE_DAYS", value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub retention_profile_days: Option<u32>,

    /// Comma-separated result sections (e.g. `psychographics,cultural_dna`)
    /// dropped before anything is written.
    #[arg(long, env = "REDACT_SECTIONS")]
    pub redact_sections: Option<String>,

    /// Completed profiles older than this many days (a decimal number:
    /// `90`, `0.5`) are looked up again automatically, oldest first. Unset:
    /// no automatic refresh.
    #[arg(long, env = "REFRESH_AFTER_DAYS", value_parser = parse_refresh_days)]
    pub refresh_after_days: Option<f64>,

    /// The most credits the service's refreshes (scheduled and
    /// `POST /v1/profiles/refresh`) may spend per UTC day, apart from new
    /// lookups. Required with REFRESH_AFTER_DAYS; unset without it: on-demand
    /// refreshes are not capped by a budget of their own.
    #[arg(long, env = "REFRESH_CREDITS_DAILY")]
    pub refresh_credits_daily: Option<u64>,
}

/// How upstream is reached: a real account, or the built-in simulator.
#[derive(Clone)]
pub enum Upstream {
    Account {
        base_url: Url,
        api_key: String,
        api_secret: String,
    },
    Sandbox,
}

/// Validated settings the service runs with.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    /// DATABASE_READ_URL: the replica reads may go to.
    pub database_read_url: Option<String>,
    /// DATABASE_READ_MAX_LAG_SECS.
    pub database_read_max_lag: Duration,
    pub listen_addr: SocketAddr,
    pub public_base_url: Option<Url>,
    pub upstream: Upstream,
    pub api_tokens: ApiTokens,
    pub service_secret: ServiceSecret,
    pub poll_after: Duration,
    pub rate_per_minute: u32,
    pub rate_per_hour: u32,
    pub job_deadline: Duration,
    pub profile_cache: Duration,
    /// `None`: an ambiguous submit is never re-sent automatically.
    pub ambiguous_resubmit_after: Option<Duration>,
    pub name_only_lookups: NameOnlyLookups,
    pub credit_budget_daily: Option<u64>,
    pub upstream_timeout: Duration,
    pub worker_lease: Duration,
    pub upstream_concurrency: u32,
    pub database_max_connections: u32,
    pub sandbox_time_scale: f64,
    pub log_format: LogFormat,
    /// Webhook endpoints may be on loopback and private addresses.
    pub webhook_allow_private: bool,
    /// FACET_INDEX: facet counts from the in-process index.
    pub facet_index: bool,
    /// WEBHOOK_DISABLE_AFTER_DAYS.
    pub webhook_disable_after: Duration,
    pub retention_delivery: Duration,
    pub retention_profile: Option<Duration>,
    /// REFRESH_AFTER_DAYS: age after which a profile is refreshed
    /// automatically; `None`: never.
    pub refresh_after: Option<Duration>,
    /// REFRESH_CREDITS_DAILY.
    pub refresh_credits_daily: Option<u64>,
    /// Result sections never written (REDACT_SECTIONS).
    pub redact_sections: Vec<String>,
    /// Set when sandbox mode generated a token; printed once at start.
    pub generated_token: Option<String>,
}

impl std::fmt::Debug for Config {
    // Hand-written so that secrets can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field(
                "public_base_url",
                &self.public_base_url.as_ref().map(Url::as_str),
            )
            .field("sandbox", &self.is_sandbox())
            .field("read_replica", &self.database_read_url.is_some())
            .field("poll_after", &self.poll_after)
            .field("rate_per_minute", &self.rate_per_minute)
            .field("rate_per_hour", &self.rate_per_hour)
            .field("webhook_allow_private", &self.webhook_allow_private)
            .field("facet_index", &self.facet_index)
            .finish_non_exhaustive()
    }
}

/// A configuration error that names the variable and what it expects.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl From<TokenError> for ConfigError {
    fn from(e: TokenError) -> Self {
        config_error(e.variable, e.message)
    }
}

fn config_error(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

impl Config {
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let upstream = match (args.upstream_api_key, args.upstream_api_secret) {
            (None, None) => Upstream::Sandbox,
            (Some(key), Some(secret)) if !key.trim().is_empty() && !secret.trim().is_empty() => {
                Upstream::Account {
                    base_url: args.upstream_base_url,
                    api_key: key,
                    api_secret: secret,
                }
            }
            (None, Some(_)) => {
                return Err(config_error(
                    "UPSTREAM_API_KEY",
                    "is unset while UPSTREAM_API_SECRET is set; set both, or neither for sandbox mode",
                ));
            }
            (Some(_), None) => {
                return Err(config_error(
                    "UPSTREAM_API_SECRET",
                    "is unset while UPSTREAM_API_KEY is set; set both, or neither for sandbox mode",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(config_error(
                    "UPSTREAM_API_KEY",
                    "UPSTREAM_API_KEY and UPSTREAM_API_SECRET must not be empty",
                ));
            }
        };
        let sandbox = matches!(upstream, Upstream::Sandbox);

        let (mut api_tokens, generated_token) = match args.api_tokens.as_deref() {
            Some(raw) => (
                ApiTokens::parse("API_TOKENS", raw, Access::ReadWrite)?,
                None,
            ),
            None if sandbox => {
                let token = crate::token::random_token();
                (ApiTokens::from_plain(&token), Some(token))
            }
            None => {
                return Err(config_error(
                    "API_TOKENS",
                    "is required outside sandbox mode: a comma-separated list of tokens or sha256:<hex> digests",
                ));
            }
        };

        if let Some(raw) = args.api_read_tokens.as_deref() {
            api_tokens.extend(ApiTokens::parse("API_READ_TOKENS", raw, Access::Read)?);
        }
        let service_secret =
            service_secret(args.service_secret, args.service_secret_previous, sandbox)?;

        if !(args.sandbox_time_scale > 0.0 && args.sandbox_time_scale <= 1000.0) {
            return Err(config_error(
                "SANDBOX_TIME_SCALE",
                "expected a number greater than 0 and at most 1000",
            ));
        }
        if args.upstream_rate_per_hour < args.upstream_rate_per_minute {
            return Err(config_error(
                "UPSTREAM_RATE_PER_HOUR",
                format!(
                    "expected at least UPSTREAM_RATE_PER_MINUTE ({}), got {}",
                    args.upstream_rate_per_minute, args.upstream_rate_per_hour
                ),
            ));
        }

        let worker_lease_secs = args
            .worker_lease_secs
            .unwrap_or(args.upstream_timeout_secs + 15);
        if worker_lease_secs <= args.upstream_timeout_secs {
            return Err(config_error(
                "WORKER_LEASE_SECS",
                format!(
                    "expected more than UPSTREAM_TIMEOUT_SECS ({}), got {worker_lease_secs}",
                    args.upstream_timeout_secs
                ),
            ));
        }

        if args.refresh_after_days.is_some() && args.refresh_credits_daily.is_none() {
            return Err(config_error(
                "REFRESH_CREDITS_DAILY",
                "required when REFRESH_AFTER_DAYS is set (the most credits refreshes may spend per day)",
            ));
        }

        if let Some(url) = &args.database_read_url {
            check_postgres_url("DATABASE_READ_URL", url)?;
        }

        let callbacks_on = args.public_base_url.is_some() || sandbox;
        let poll_after_secs =
            args.poll_after_secs
                .unwrap_or(if callbacks_on && !sandbox { 600 } else { 15 });

        Ok(Config {
            database_url: args.database_url,
            database_read_url: args.database_read_url,
            database_read_max_lag: Duration::from_secs(args.database_read_max_lag_secs),
            listen_addr: args.listen_addr,
            public_base_url: args.public_base_url,
            upstream,
            api_tokens,
            service_secret,
            poll_after: Duration::from_secs(poll_after_secs),
            rate_per_minute: args.upstream_rate_per_minute,
            rate_per_hour: args.upstream_rate_per_hour,
            job_deadline: Duration::from_secs(args.job_deadline_secs),
            profile_cache: Duration::from_secs(args.profile_cache_secs),
            ambiguous_resubmit_after: args.ambiguous_resubmit_after_secs.map(Duration::from_secs),
            name_only_lookups: args.name_only_lookups,
            credit_budget_daily: args.credit_budget_daily,
            upstream_timeout: Duration::from_secs(args.upstream_timeout_secs),
            worker_lease: Duration::from_secs(worker_lease_secs),
            upstream_concurrency: args.upstream_concurrency,
            database_max_connections: args.database_max_connections,
            sandbox_time_scale: args.sandbox_time_scale,
            log_format: args.log_format,
            webhook_allow_private: args.webhook_allow_private,
            facet_index: args.facet_index,
            webhook_disable_after: days(args.webhook_disable_after_days),
            retention_delivery: days(args.retention_delivery_days),
            retention_profile: args.retention_profile_days.map(days),
            refresh_after: args
                .refresh_after_days
                .map(|d| Duration::from_secs_f64(d * 86_400.0)),
            refresh_credits_daily: args.refresh_credits_daily,
            redact_sections: redact_sections(args.redact_sections.as_deref())?,
            generated_token,
        })
    }

    pub fn is_sandbox(&self) -> bool {
        matches!(self.upstream, Upstream::Sandbox)
    }
}

fn service_secret(
    current: Option<String>,
    previous: Option<String>,
    sandbox: bool,
) -> Result<ServiceSecret, ConfigError> {
    let check = |variable: &'static str, value: &str| {
        if value.len() < MIN_SECRET_LEN {
            return Err(config_error(
                variable,
                format!(
                    "expected at least {MIN_SECRET_LEN} bytes of key material (e.g. `openssl rand -base64 48`), got {}",
                    value.len()
                ),
            ));
        }
        Ok(())
    };
    let previous = match previous.filter(|p| !p.is_empty()) {
        Some(p) => {
            check("SERVICE_SECRET_PREVIOUS", &p)?;
            Some(p.into_bytes())
        }
        None => None,
    };
    match current.filter(|c| !c.is_empty()) {
        Some(c) => {
            check("SERVICE_SECRET", &c)?;
            Ok(ServiceSecret::new(c.into_bytes(), previous))
        }
        None if sandbox => Ok(ServiceSecret::sandbox()),
        None => Err(config_error(
            "SERVICE_SECRET",
            format!(
                "is required outside sandbox mode: at least {MIN_SECRET_LEN} bytes of key material, the same on every replica"
            ),
        )),
    }
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

fn redact_sections(raw: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let mut sections = Vec::new();
    for item in raw
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !item.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(config_error(
                "REDACT_SECTIONS",
                format!(
                    "expected comma-separated section names such as psychographics, got `{item}`"
                ),
            ));
        }
        sections.push(item.to_owned());
    }
    Ok(sections)
}

fn parse_http_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("expected an http or https URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("expected an http or https URL with a host".into());
    }
    Ok(url)
}

/// A PostgreSQL connection string sqlx can use. The message never repeats
/// the value: it may hold a password.
fn check_postgres_url(variable: &'static str, raw: &str) -> Result<(), ConfigError> {
    use std::str::FromStr;
    let scheme_ok = raw.starts_with("postgres://") || raw.starts_with("postgresql://");
    if !scheme_ok || sqlx::postgres::PgConnectOptions::from_str(raw).is_err() {
        return Err(config_error(
            variable,
            "expected a PostgreSQL connection URL such as postgres://user:password@replica-host:5432/database",
        ));
    }
    Ok(())
}

fn parse_refresh_days(raw: &str) -> Result<f64, String> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|d| d.is_finite() && *d > 0.0 && *d <= 36_500.0)
        .ok_or_else(|| format!("expected a number of days above 0 (e.g. 90 or 0.5), got {raw:?}"))
}

fn parse_time_scale(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| "expected a number greater than 0, such as 1 or 0.01".into())
}
