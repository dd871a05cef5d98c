//! Client subcommands: `import` and `export` talk to a running server over
//! its REST API, as any other client would.

pub mod export;
pub mod import;
pub mod import_dry_run;

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

/// Exit status: every row accepted, or the export finished.
pub const EXIT_OK: u8 = 0;
/// Exit status: some rows were bad; the rest went on.
pub const EXIT_BAD_ROWS: u8 = 1;
/// Exit status: the server could not be used (unreachable, refused the
/// token, kept failing), or the input could not be read.
pub const EXIT_UNUSABLE: u8 = 2;

/// Where the server is and how to sign in.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Base URL of the running service.
    #[arg(
        long,
        env = "INTERESTS_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// API token (a read token is enough for export).
    #[arg(long, env = "INTERESTS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Why a request could not be made to succeed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// The REST API of one server.
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// Transient failures (connection, 5xx) are retried this many times, with
/// growing pauses, before the server counts as unusable.
const ATTEMPTS: u32 = 4;

impl Api {
    /// `command` names the client in its User-Agent
    /// (`interests-receiver-export/0.1.0`), so that the server's logs and
    /// audit can tell an export from an ad hoc search.
    pub fn new(args: &ServerArgs, command: &str) -> Result<Api, Unusable> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            // Also per read, for answers that may take longer than the
            // total above (the export stream sets its own total).
            .read_timeout(Duration::from_secs(60))
            .user_agent(format!(
                "interests-receiver-{command}/{}",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| Unusable(format!("cannot make an HTTP client: {e}")))?;
        Ok(Api {
            base: args.server.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
            http,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorised(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request until it gets an answer that is not transient: a 429
    /// waits as long as its `Retry-After` says and goes on (indefinitely: it
    /// is the server pacing us); connection failures and 5xx are retried a
    /// few times. `make` builds a fresh request for each attempt.
    pub async fn send(
        &self,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
        on_wait: impl Fn(Duration),
    ) -> Result<Response, Unusable> {
        let mut failures = 0;
        loop {
            let outcome = self.authorised(make(&self.http)).send().await;
            let problem = match outcome {
                Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => {
                    let wait = retry_after(&r).unwrap_or(Duration::from_secs(5));
                    on_wait(wait);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Ok(r) if r.status().is_server_error() => {
                    format!("{} answered {}", self.base, r.status())
                }
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                    return Err(Unusable(format!(
                        "{} refused the token (401): pass --token or set INTERESTS_TOKEN",
                        self.base
                    )));
                }
                Ok(r) if r.status() == StatusCode::FORBIDDEN => {
                    return Err(Unusable(format!(
                        "{} refused the request (403): {}",
                        self.base,
                        detail(r).await
                    )));
                }
                Ok(r) => return Ok(r),
                Err(e) => format!("{} could not be reached: {e}", self.base),
            };
            failures += 1;
            if failures >= ATTEMPTS {
                return Err(Unusable(problem));
            }
            tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(failures))).await;
        }
    }
}

fn retry_after(response: &Response) -> Option<Duration> {
    let secs: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.clamp(1, 3600)))
}

/// The `detail` of a problem answer, or its status.
pub async fn detail(response: Response) -> String {
    let status = response.status();
    match response.json::<Value>().await {
        Ok(body) => body["detail"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| status.to_string()),
        Err(_) => status.to_string(),
    }
}
