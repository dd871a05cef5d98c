//! Test harness: runs the real service on a random port against the fresh
//! database `#[sqlx::test]` made for the test, with either the built-in
//! sandbox or a wiremock server as upstream.
#![allow(dead_code)]

pub mod child;
pub mod receiver;
pub mod standby;

use std::net::SocketAddr;
use std::time::Duration;

use interests_receiver::app::{Application, Options};
use interests_receiver::auth::{Access, ApiTokens};
use interests_receiver::config::{Config, LogFormat, NameOnlyLookups, Upstream};
use interests_receiver::secrets::ServiceSecret;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The `interests-receiver` binary the child-process tests run:
/// `INTERESTS_RECEIVER_BIN` when set (CI points it at the release build of
/// scripts/build-release.sh, the shipped binary plus the crash hooks), else
/// the one cargo built beside this test.
pub fn bin() -> String {
    std::env::var("INTERESTS_RECEIVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_interests-receiver").to_owned())
}

/// Sends `signal` to process `pid` (nix, not a `kill` command).
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid fits in i32"));
    nix::sys::signal::kill(pid, signal).expect("the process can be signalled");
}

pub const TOKEN: &str = "test-token-0123456789abcdef";
/// A read-only token (`API_READ_TOKENS`) named `reader`.
pub const READ_TOKEN: &str = "read-token-0123456789abcdef";
/// SERVICE_SECRET of test apps.
pub const TEST_SECRET: &str = "test-service-secret-0123456789-abcdefghijkl";

/// How a test app reaches upstream.
pub enum UpstreamKind {
    /// The built-in simulator with this time scale.
    Sandbox { time_scale: f64 },
    /// An HTTP mock (wiremock) or an external simulator.
    Url(Url),
}

pub struct Settings {
    pub upstream: UpstreamKind,
    /// Callback base; `None` with a URL upstream means poll-only.
    pub callbacks: bool,
    pub poll_after: Duration,
    pub job_deadline: Duration,
    pub profile_cache: Duration,
    /// AMBIGUOUS_RESUBMIT_AFTER_SECS; `None` (the default): never re-sent.
    pub ambiguous_wait: Option<Duration>,
    pub name_only_lookups: NameOnlyLookups,
    pub credit_budget_daily: Option<u64>,
    pub upstream_timeout: Duration,
    pub rate_per_minute: u32,
    pub rate_per_hour: u32,
    /// WEBHOOK_ALLOW_PRIVATE: on, so that tests can receive on loopback.
    pub webhook_allow_private: bool,
    pub options: Options,
    pub redact_sections: Vec<String>,
    pub retention_profile: Option<Duration>,
    /// SERVICE_SECRET (and SERVICE_SECRET_PREVIOUS); [`TEST_SECRET`] alone.
    pub service_secret: ServiceSecret,
    /// REFRESH_AFTER_DAYS and REFRESH_CREDITS_DAILY.
    pub refresh_after: Option<Duration>,
    pub refresh_credits_daily: Option<u64>,
    /// DATABASE_READ_URL and DATABASE_READ_MAX_LAG_SECS.
    pub database_read_url: Option<String>,
    pub database_read_max_lag: Duration,
    /// FACET_INDEX (on by default).
    pub facet_index: bool,
}

impl Settings {
    pub fn sandbox() -> Self {
        Settings {
            upstream: UpstreamKind::Sandbox { time_scale: 0.01 },
            ..Settings::with_upstream_url("http://127.0.0.1:9".parse().unwrap())
        }
    }

    pub fn with_upstream_url(url: Url) -> Self {
        Settings {
            upstream: UpstreamKind::Url(url),
            callbacks: true,
            poll_after: Duration::from_secs(600),
            job_deadline: Duration::from_secs(86_400),
            profile_cache: Duration::from_secs(2_592_000),
            ambiguous_wait: None,
            name_only_lookups: NameOnlyLookups::default(),
            credit_budget_daily: None,
            upstream_timeout: Duration::from_secs(5),
            rate_per_minute: 6000,
            rate_per_hour: 100_000,
            webhook_allow_private: true,
            // Counts come from the facet index from the first request.
            options: Options {
                load_facet_index_first: true,
                ..Options::default()
            },
            redact_sections: Vec::new(),
            retention_profile: None,
            service_secret: ServiceSecret::new(TEST_SECRET, None),
            refresh_after: None,
            refresh_credits_daily: None,
            database_read_url: None,
            database_read_max_lag: Duration::from_secs(5),
            facet_index: true,
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The built-in simulator's address, in sandbox mode.
    pub sandbox: Option<SocketAddr>,
    pub db: PgPool,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The configuration of a test app listening on `addr`.
pub fn config_for(addr: SocketAddr, settings: &Settings) -> Config {
    let upstream = match &settings.upstream {
        UpstreamKind::Sandbox { .. } => Upstream::Sandbox,
        UpstreamKind::Url(base_url) => Upstream::Account {
            base_url: base_url.clone(),
            api_key: "test-key".into(),
            api_secret: "test-secret".into(),
        },
    };
    let sandbox_time_scale = match settings.upstream {
        UpstreamKind::Sandbox { time_scale } => time_scale,
        UpstreamKind::Url(_) => 1.0,
    };
    let is_sandbox = matches!(upstream, Upstream::Sandbox);
    Config {
        database_url: String::new(),
        database_read_url: settings.database_read_url.clone(),
        database_read_max_lag: settings.database_read_max_lag,
        listen_addr: addr,
        public_base_url: (settings.callbacks && !is_sandbox)
            .then(|| format!("http://{addr}").parse().unwrap()),
        upstream,
        api_tokens: {
            let mut tokens = ApiTokens::from_plain(TOKEN);
            tokens.extend(ApiTokens::named(READ_TOKEN, "reader", Access::Read));
            tokens
        },
        service_secret: settings.service_secret.clone(),
        poll_after: settings.poll_after,
        rate_per_minute: settings.rate_per_minute,
        rate_per_hour: settings.rate_per_hour,
        job_deadline: settings.job_deadline,
        profile_cache: settings.profile_cache,
        ambiguous_resubmit_after: settings.ambiguous_wait,
        name_only_lookups: settings.name_only_lookups,
        credit_budget_daily: settings.credit_budget_daily,
        upstream_timeout: settings.upstream_timeout,
        worker_lease: settings.upstream_timeout + Duration::from_secs(2),
        upstream_concurrency: 4,
        database_max_connections: 10,
        sandbox_time_scale,
        log_format: LogFormat::Pretty,
        webhook_allow_private: settings.webhook_allow_private,
        facet_index: settings.facet_index,
        webhook_disable_after: Duration::from_secs(5 * 86_400),
        retention_delivery: Duration::from_secs(30 * 86_400),
        retention_profile: settings.retention_profile,
        refresh_after: settings.refresh_after,
        refresh_credits_daily: settings.refresh_credits_daily,
        redact_sections: settings.redact_sections.clone(),
        generated_token: None,
    }
}

pub async fn spawn(db: PgPool, settings: Settings) -> TestApp {
    // Bound here on port 0 and handed over: the callback base must name the
    // port, and a port picked then released could be taken meanwhile.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = config_for(addr, &settings);
    if std::env::var("TEST_LOG").is_ok() {
        interests_receiver::telemetry::init_logging(LogFormat::Pretty);
    }
    let app = Application::build_on(config, db.clone(), settings.options, listener)
        .await
        .expect("app builds");
    let sandbox = app.sandbox_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        addr,
        sandbox,
        db,
        http: reqwest::Client::new(),
        shutdown,
        task,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POST /v1/lookups with the test token.
    pub async fn post_lookup(&self, body: &Value) -> reqwest::Response {
        self.post_json("/v1/lookups", body).await
    }

    /// POST of a JSON body to `path` with the test token.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POST /v1/lookups expecting a new lookup (202); its id.
    pub async fn create(&self, body: &Value) -> String {
        let response = self.post_lookup(body).await;
        assert_eq!(response.status(), 202);
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Waits until `sql` (a boolean query) is true, failing after 20 s: the
    /// wait ends on the condition, not on a guess of how long it takes.
    pub async fn wait_until(&self, sql: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let done: bool = sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap();
            if done {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "never true: {sql}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `GET /metrics` text (this test's process only: nextest runs each
    /// test in a process of its own).
    pub async fn metrics(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// One series of `/metrics`, e.g. `facet_counts_total{source="index"}`
    /// (0 until first counted).
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    pub async fn lookup(&self, id: &str) -> Value {
        self.get_json(&format!("/v1/lookups/{id}")).await
    }

    /// Polls the lookup until `done` holds or `timeout` passes.
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let lookup = self.lookup(id).await;
            if done(&lookup) {
                return lookup;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "lookup {id} did not reach the expected state in {timeout:?}: {lookup}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        self.wait_for(id, timeout, |l| l["status"] == status).await
    }

    pub async fn post_callback(&self, callback_url: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(callback_url)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }

    /// `GET /_sandbox/<what>` of the built-in simulator.
    pub async fn sandbox_json(&self, what: &str) -> Value {
        let addr = self.sandbox.expect("sandbox mode");
        self.http
            .get(format!("http://{addr}/_sandbox/{what}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Stops the app and fails the test if it panicked, returned an error
    /// or did not stop within 10 s.
    pub async fn stop(self) {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("the app stopped with an error: {e:#}"),
            Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
            Err(_) => panic!("the app did not stop within 10 s"),
        }
    }
}

/// A wiremock upstream that accepts every submit with a fresh request_id.
pub async fn accepting_upstream() -> MockServer {
    accepting_upstream_after(Duration::ZERO).await
}

/// An upstream that accepts every submit, each answer held for `delay`.
pub async fn accepting_upstream_after(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/person/interests"))
        .respond_with(move |_: &Request| {
            ResponseTemplate::new(202)
                .set_body_json(json!({
                    "success": true,
                    "data": {"request_id": new_request_id(), "status": "queued"},
                    "timestamp": "2026-01-15T10:30:00"
                }))
                .set_delay(delay)
        })
        .mount(&server)
        .await;
    server
}

pub fn new_request_id() -> String {
    format!(
        "{}_1717000000_{:04}",
        Uuid::new_v4().simple(),
        rand_digits()
    )
}

fn rand_digits() -> u32 {
    (Uuid::new_v4().as_u128() % 10_000) as u32
}

/// Submit bodies upstream received, in order.
pub async fn submits(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method == wiremock::http::Method::POST)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// Waits until upstream received `n` submits and returns them.
pub async fn wait_for_submits(server: &MockServer, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let got = submits(server).await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("upstream did not receive {n} submits");
}

/// A test fixture of the upstream payloads (copied from shared/fixtures).
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The completed fixture re-addressed to `request_id`.
pub fn completed_for(request_id: &str) -> Value {
    let mut body = fixture("completed.json");
    body["data"]["request_id"] = json!(request_id);
    body
}

/// Creates a lookup and waits until it was submitted to the mock; returns
/// (lookup id, request_id, callback_url).
pub async fn submitted_lookup(
    app: &TestApp,
    server: &MockServer,
    body: Value,
) -> (String, String, String) {
    let before = submits(server).await.len();
    let response = app.post_lookup(&body).await;
    assert_eq!(response.status(), 202);
    let lookup: Value = response.json().await.unwrap();
    let id = lookup["id"].as_str().unwrap().to_owned();
    let submit = wait_for_submits(server, before + 1).await.pop().unwrap();
    let queued = app
        .wait_for(&id, Duration::from_secs(5), |l| !l["request_id"].is_null())
        .await;
    (
        id,
        queued["request_id"].as_str().unwrap().to_owned(),
        submit["callback_url"]
            .as_str()
            .expect("callback_url sent")
            .to_owned(),
    )
}

/// Asserts that `response` is an RFC 9457 problem document (content type
/// `application/problem+json`, fields type, title, status, detail) with
/// `status`, and returns its body.
pub async fn problem(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "expected {status}, got {got}: {text}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type:?} of a {status}: {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("problem body is not JSON ({e}): {text}"));
    for field in ["type", "title", "detail"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "problem lacks a {field}: {body}"
        );
    }
    assert_eq!(body["status"], status, "problem status field: {body}");
    body
}

/// The `field` of every entry of a validation problem's `errors`.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["field"].as_str().map(str::to_owned))
        .collect()
}

/// An upstream envelope of a completed job with this `result`.
pub fn completed_with(request_id: &str, result: Value) -> Value {
    let mut body = completed_for(request_id);
    body["data"]["result"] = result;
    body
}

/// Delivers `body` to `callback_url`, asserts it was taken (2xx) and waits
/// until lookup `id` is completed; returns the lookup.
pub async fn complete_by_callback(
    app: &TestApp,
    id: &str,
    callback_url: &str,
    body: &Value,
) -> Value {
    let response = app.post_callback(callback_url, body).await;
    assert!(
        response.status().is_success(),
        "callback refused: {}",
        response.status()
    );
    app.wait_for_status(id, "completed", Duration::from_secs(5))
        .await
}

/// Reads `GET {base}/v1/lookups/{id}` until `done` holds, failing the test
/// after `timeout`. For services reached only by URL (child processes).
pub async fn wait_for_lookup_at(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let lookup: Value = http
            .get(format!("{base}/v1/lookups/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&lookup) {
            return lookup;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lookup {id} at {base} did not reach the expected state in {timeout:?}: {lookup}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The service with default settings against `accepting_upstream()`.
pub async fn spawn_with_accepting_upstream(db: PgPool) -> (MockServer, TestApp) {
    let upstream = accepting_upstream().await;
    let app = spawn(
        db,
        Settings::with_upstream_url(upstream.uri().parse().unwrap()),
    )
    .await;
    (upstream, app)
}
/// Waits until at least `n` sessions of the test database wait on a lock.
pub async fn wait_for_lock_waiters(db: &PgPool, n: i64) {
    for _ in 0..200 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(db)
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} sessions ever waited on a lock");
}

/// Inserts a pending lookup of `email` (no identities) on `conn`, as the
/// create path does; a transaction's connection keeps it uncommitted.
pub async fn insert_pending_of(conn: &mut sqlx::PgConnection, email: &str) -> Uuid {
    use interests_receiver::store::lookups::{self, NewLookup};
    use interests_receiver::subject::Subject;
    let subject = Subject {
        email: Some(email.to_owned()),
        phone: None,
        social_media_url: None,
        name: None,
        company: None,
    };
    let id = Uuid::now_v7();
    let inserted = lookups::insert_pending(
        conn,
        NewLookup {
            id,
            subject: &subject,
            subject_key: &subject.key(),
            metadata: &json!({}),
            synthetic: false,
            identities_key: "k",
            warnings: &[],
            refresh: false,
        },
    )
    .await
    .unwrap();
    assert!(inserted, "{email} already has a lookup in flight");
    id
}
