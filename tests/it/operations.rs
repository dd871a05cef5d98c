//! Operations (contract section 5, "Operations", and README "Operations"):
//! health and readiness, Prometheus metrics, the OpenAPI document checked
//! against real responses, graceful shutdown, JSON logs free of personal
//! data and secrets, the `healthcheck` subcommand and `/v1/stats`.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::child::{Child, SECRET, TestSandbox, database_url, free_port, serve_env};
use crate::common::{
    Settings, TOKEN, accepting_upstream, complete_by_callback, completed_for, spawn,
    submitted_lookup,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);

/// An app whose upstream is never called (no lookup is made).
fn idle_settings() -> Settings {
    Settings::with_upstream_url("http://127.0.0.1:9".parse().unwrap())
}

/// Replaces (or adds) `key` in a child's environment.
fn set_env(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
}

fn unset_env(env: &mut Vec<(String, String)>, key: &str) {
    env.retain(|(k, _)| k != key);
}

/// The callback token of a lookup made by a test app or child (both run
/// with `TEST_SECRET`): derived, never stored.
fn callback_token(id: &str) -> String {
    interests_receiver::secrets::ServiceSecret::new(crate::common::TEST_SECRET, None)
        .callback_token(Uuid::parse_str(id).unwrap())
}

// ---------------------------------------------------------------------------
// 1. /healthz and /readyz

#[sqlx::test]
async fn healthz_answers_without_a_token_and_readyz_follows_the_schema_version(db: PgPool) {
    let app = spawn(db.clone(), idle_settings()).await;
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let http = http.clone();
        let url = app.url(path);
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };

    assert_eq!(status("/healthz").await, 200, "/healthz without a token");
    assert_eq!(status("/readyz").await, 200, "schema current");

    sqlx::query("UPDATE _sqlx_migrations SET success = false")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        status("/readyz").await,
        503,
        "a migration marked unsuccessful"
    );
    assert_eq!(status("/healthz").await, 200, "liveness ignores the schema");

    sqlx::query("UPDATE _sqlx_migrations SET success = true")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(status("/readyz").await, 200, "schema current again");

    sqlx::query("DELETE FROM _sqlx_migrations")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(status("/readyz").await, 503, "no migration recorded");
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 2. /metrics

/// Sample lines (`name{labels} value`) of a Prometheus text page whose
/// metric name is `name`.
fn samples<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// Asserts every line is a comment, blank, or `name{labels} value`.
fn assert_prometheus_text(page: &str) {
    for line in page.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a Prometheus sample line: {line:?}"));
        let value_ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
        assert!(value_ok, "bad sample value in {line:?}");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unterminated labels in {line:?}");
        }
    }
}

#[sqlx::test]
async fn metrics_are_prometheus_text_labelled_by_route_template_never_by_raw_path(db: PgPool) {
    let server = accepting_upstream().await;
    let app = spawn(
        db.clone(),
        Settings::with_upstream_url(server.uri().parse().unwrap()),
    )
    .await;
    let (id, request_id, callback_url) = submitted_lookup(
        &app,
        &server,
        json!({"email": "metrics.person@example.com"}),
    )
    .await;
    complete_by_callback(&app, &id, &callback_url, &completed_for(&request_id)).await;
    let token = callback_token(&id);
    assert!(
        callback_url.contains(&token),
        "the callback URL holds the token"
    );

    // A 404 on a known route, and a refused callback with a wrong token.
    let missing = app.get(&format!("/v1/lookups/{}", Uuid::new_v4())).await;
    assert_eq!(missing.status(), 404);
    let wrong_token = "wrongtoken0wrongtoken0wrongtoken0";
    let refused = app
        .post_callback(
            &app.url(&format!("/callbacks/{id}/{wrong_token}")),
            &completed_for(&request_id),
        )
        .await;
    assert_eq!(refused.status(), 404);

    let response = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200, "/metrics without a token");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain"),
        "content type {content_type}"
    );
    let page = response.text().await.unwrap();
    assert_prometheus_text(&page);

    let requests = samples(&page, "http_requests_total");
    assert!(
        requests
            .iter()
            .any(|l| l.contains(r#"route="/v1/lookups""#) && l.contains(r#"status="202""#)),
        "no http_requests_total for POST /v1/lookups 202:\n{page}"
    );
    assert!(
        requests
            .iter()
            .any(|l| l.contains(r#"route="/v1/lookups/{id}""#) && l.contains(r#"status="404""#)),
        "no http_requests_total for the 404 on /v1/lookups/{{id}}:\n{page}"
    );
    assert!(
        requests
            .iter()
            .any(|l| l.contains("/callbacks/") && l.contains(r#"status="200""#)),
        "no http_requests_total for the callback delivery:\n{page}"
    );
    for line in page.lines() {
        for secret in [token.as_str(), wrong_token, id.as_str()] {
            assert!(
                !line.contains(secret),
                "a raw callback path (token or lookup id) reached the metrics: {line}"
            );
        }
    }

    assert!(
        samples(&page, "callback_deliveries_total")
            .iter()
            .any(|l| l.contains(r#"outcome="applied""#)),
        "no callback_deliveries_total{{outcome=\"applied\"}}:\n{page}"
    );
    assert!(
        samples(&page, "upstream_calls_total")
            .iter()
            .any(|l| l.contains(r#"kind="submit""#) && l.contains("result=")),
        "no upstream_calls_total{{kind=\"submit\",result=...}}:\n{page}"
    );
    let completed = samples(&page, "lookups");
    assert!(
        completed
            .iter()
            .any(|l| l.starts_with(r#"lookups{status="completed"} "#) && l.ends_with(" 1")),
        "no lookups{{status=\"completed\"}} 1 gauge:\n{page}"
    );
    assert!(
        !samples(&page, "oldest_unfinished_job_age_seconds").is_empty(),
        "no oldest_unfinished_job_age_seconds:\n{page}"
    );
    assert!(
        !samples(&page, "db_pool_connections").is_empty(),
        "no db_pool_connections:\n{page}"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 3. /openapi.json against real responses

/// Validates values against schemas of the OpenAPI document with the
/// `jsonschema` crate (draft 2020-12, as OpenAPI 3.1 uses it, formats
/// checked). Stricter than the document in one way, on purpose: an object
/// schema that lists its properties admits no others, so a response field
/// the document does not describe is reported.
struct Validator<'a> {
    doc: &'a Value,
}

/// `schema` with `additionalProperties: false` on every object schema that
/// lists `properties` and says nothing about others.
fn closed(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), closed(v))).collect();
            if out.contains_key("properties") && !out.contains_key("additionalProperties") {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(closed).collect()),
        other => other.clone(),
    }
}

impl Validator<'_> {
    fn errors(&self, schema: &Value, value: &Value) -> Vec<String> {
        // The schema's `$ref`s point into the document: validate against a
        // root that carries the document's components beside the schema.
        let mut root = closed(schema);
        let object = root.as_object_mut().expect("a schema object");
        object.insert("components".into(), closed(&self.doc["components"]));
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .expect("the document's schemas are valid JSON Schema");
        validator
            .iter_errors(value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }
}

/// Checks a real response against the schema the document declares for
/// `method path` and its status, and returns its body.
pub(crate) async fn conforms(
    doc: &Value,
    method: &str,
    path: &str,
    response: reqwest::Response,
) -> Value {
    let status = response.status().as_u16().to_string();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let declared = &doc["paths"][path][method]["responses"][&status];
    assert!(
        declared.is_object(),
        "{method} {path} answered {status}, which the document does not declare: {body}"
    );
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    let schema = declared["content"]
        .get(&media_type)
        .and_then(|c| c.get("schema"))
        .unwrap_or_else(|| {
            panic!(
                "{method} {path} {status} answered {media_type}, the document declares {}",
                declared["content"]
            )
        });
    let errors = Validator { doc }.errors(schema, &body);
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match its documented schema:\n{}\nbody: {body}",
        errors.join("\n")
    );
    body
}

#[sqlx::test]
async fn the_openapi_document_is_3_1_lists_every_path_and_matches_real_responses(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let response = reqwest::get(app.url("/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 200, "/openapi.json without a token");
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "openapi version {}",
        doc["openapi"]
    );
    for path in [
        "/v1/lookups",
        "/v1/lookups/{id}",
        "/v1/profiles",
        "/v1/profiles/{id}",
        "/v1/profiles/{id}/versions",
        "/v1/profiles/{id}/changes",
        "/v1/profiles/refresh",
        "/v1/subjects",
        "/v1/stats",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }

    let created = app
        .post_lookup(&json!({"email": "ann@example.com", "metadata": {"crm": 7}}))
        .await;
    assert_eq!(created.status(), 202);
    let created = conforms(&doc, "post", "/v1/lookups", created).await;
    let id = created["id"].as_str().unwrap();

    app.wait_for_status(id, "completed", WAIT).await;
    let completed = conforms(
        &doc,
        "get",
        "/v1/lookups/{id}",
        app.get(&format!("/v1/lookups/{id}")).await,
    )
    .await;
    assert!(completed["profile"].is_object(), "{completed}");

    let page = conforms(&doc, "get", "/v1/lookups", app.get("/v1/lookups").await).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    let profile_id = completed["profile"]["id"].as_str().unwrap();
    conforms(
        &doc,
        "get",
        "/v1/profiles/{id}",
        app.get(&format!("/v1/profiles/{profile_id}")).await,
    )
    .await;
    conforms(
        &doc,
        "get",
        "/v1/profiles",
        app.get("/v1/profiles?email=ann@example.com").await,
    )
    .await;
    for what in ["versions", "changes"] {
        let path = format!("/v1/profiles/{{id}}/{what}");
        conforms(
            &doc,
            "get",
            &path,
            app.get(&format!("/v1/profiles/{profile_id}/{what}")).await,
        )
        .await;
        let malformed = app.get(&format!("/v1/profiles/nope/{what}")).await;
        assert_eq!(malformed.status(), 422);
        conforms(&doc, "get", &path, malformed).await;
    }

    for (body, status) in [
        (json!({"filters": {}, "dry_run": true}), 200),
        (json!({"filters": {"colour": "blue"}}), 422),
    ] {
        let refresh = app
            .http
            .post(app.url("/v1/profiles/refresh"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(refresh.status(), status);
        conforms(&doc, "post", "/v1/profiles/refresh", refresh).await;
    }

    let invalid = app.post_lookup(&json!({"email": "not-an-email"})).await;
    assert_eq!(invalid.status(), 422);
    let problem = conforms(&doc, "post", "/v1/lookups", invalid).await;
    assert!(problem["errors"].is_array(), "{problem}");

    let missing = app.get(&format!("/v1/lookups/{}", Uuid::new_v4())).await;
    assert_eq!(missing.status(), 404);
    conforms(&doc, "get", "/v1/lookups/{id}", missing).await;

    let missing = app.get(&format!("/v1/profiles/{}", Uuid::new_v4())).await;
    assert_eq!(missing.status(), 404);
    conforms(&doc, "get", "/v1/profiles/{id}", missing).await;

    conforms(&doc, "get", "/v1/stats", app.get("/v1/stats").await).await;

    let erased = app
        .http
        .delete(app.url("/v1/subjects?email=ann@example.com"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    let erased = conforms(&doc, "delete", "/v1/subjects", erased).await;
    assert_eq!(erased["erased"]["lookups"], 1, "{erased}");
    app.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Graceful shutdown

#[sqlx::test]
async fn sigterm_with_a_submit_in_flight_exits_zero_releases_the_lease_and_loses_nothing(
    db: PgPool,
) {
    // The simulator holds this submit's answer back 3 s (60 s scaled) and
    // never calls back, so only a recorded request_id lets a later process
    // find the result.
    let email = "grace.sandbox-submit-timeout.sandbox-no-callback@example.com";
    let sandbox = TestSandbox::start(0.05).await;
    let url = database_url(&db);
    let port = free_port();
    let mut env = serve_env(&url, &sandbox, port, port);
    set_env(&mut env, "UPSTREAM_TIMEOUT_SECS", "10");
    set_env(&mut env, "WORKER_LEASE_SECS", "20");
    set_env(&mut env, "POLL_AFTER_SECS", "1");
    let first = Child::serve(&env).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/v1/lookups", first.base))
        .bearer_auth(TOKEN)
        .json(&json!({"email": email}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    // Wait until the submit is on the wire: upstream has the job and the
    // row is leased by the first process.
    let deadline = Instant::now() + WAIT;
    loop {
        let leased: i64 =
            sqlx::query_scalar("SELECT count(*) FROM lookups WHERE lease_owner IS NOT NULL")
                .fetch_one(&db)
                .await
                .unwrap();
        if leased == 1 && sandbox.jobs_for(email) == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the submit never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let status = first
        .terminate(Duration::from_secs(10))
        .await
        .expect("the process did not exit within 10 s of SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");

    let leased: i64 =
        sqlx::query_scalar("SELECT count(*) FROM lookups WHERE lease_owner IS NOT NULL")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(leased, 0, "a lease survived a graceful shutdown");
    let request_id: Option<String> =
        sqlx::query_scalar("SELECT request_id FROM lookups WHERE id = $1")
            .bind(Uuid::parse_str(&id).unwrap())
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(
        request_id.is_some(),
        "the submit in flight was not finished and recorded before exit"
    );

    let port = free_port();
    let mut env = serve_env(&url, &sandbox, port, port);
    set_env(&mut env, "POLL_AFTER_SECS", "1");
    let second = Child::serve(&env).await;
    let lookup = crate::common::wait_for_lookup_at(&http, &second.base, TOKEN, &id, WAIT, |l| {
        l["status"] == "completed"
    })
    .await;
    assert_eq!(lookup["credits_charged"], 5);
    assert_eq!(sandbox.jobs_for(email), 1, "submitted twice");
    second.kill9().await;
}

// ---------------------------------------------------------------------------
// 5. Logs

/// A `serve` child whose stderr (its log) and stdout are kept whole.
struct LoggedChild {
    process: tokio::process::Child,
    reader: tokio::task::JoinHandle<()>,
    lines: Arc<Mutex<Vec<String>>>,
    stdout_reader: tokio::task::JoinHandle<()>,
    stdout: Arc<Mutex<Vec<String>>>,
    base: String,
}

/// Collects every line of `source` into `sink` until it closes.
fn collect_lines(
    source: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(source).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    })
}

impl LoggedChild {
    async fn serve(env: &[(String, String)], port: u16) -> LoggedChild {
        let mut process = tokio::process::Command::new(crate::common::bin())
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = collect_lines(process.stderr.take().unwrap(), lines.clone());
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stdout_reader = collect_lines(process.stdout.take().unwrap(), stdout.clone());
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(format!("{base}/healthz")).await
                && r.status().is_success()
            {
                return LoggedChild {
                    process,
                    reader,
                    lines,
                    stdout_reader,
                    stdout,
                    base,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("child did not become healthy: {:?}", lines.lock().unwrap());
    }

    /// SIGTERM, wait for the exit, and every stderr line it printed.
    async fn stop(mut self) -> Vec<String> {
        let pid = self.process.id().unwrap();
        crate::common::signal(pid, nix::sys::signal::Signal::SIGTERM);
        let exited = tokio::time::timeout(Duration::from_secs(10), self.process.wait()).await;
        if exited.is_err() {
            self.process.kill().await.unwrap();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.reader).await;
        // Stdout too is whole once this returns (read `stdout` after it).
        let _ = tokio::time::timeout(Duration::from_secs(5), self.stdout_reader).await;
        self.lines.lock().unwrap().clone()
    }
}

/// The value `env` gives `name`.
fn env_value(env: &[(String, String)], name: &str) -> String {
    env.iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("{name} is set for the child"))
        .1
        .clone()
}

/// Whether `value` holds `key: wanted` at any depth.
fn has_field(value: &Value, key: &str, wanted: &str) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| (k == key && v == wanted) || has_field(v, key, wanted)),
        Value::Array(items) => items.iter().any(|v| has_field(v, key, wanted)),
        _ => false,
    }
}

fn request_id_header(response: &reqwest::Response) -> String {
    let id = response
        .headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id on a {} answer", response.status()))
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!id.is_empty(), "empty x-request-id");
    id
}

#[sqlx::test]
async fn logs_are_json_lines_with_request_ids_and_hold_no_personal_data_or_secrets(db: PgPool) {
    let email = "secret.person@example.com";
    let phone = "+14155550100";
    let sandbox = TestSandbox::start(0.05).await;
    let port = free_port();
    let mut env = serve_env(&database_url(&db), &sandbox, port, port);
    // The defaults: LOG_FORMAT=json, RUST_LOG=info.
    unset_env(&mut env, "LOG_FORMAT");
    unset_env(&mut env, "RUST_LOG");
    let child = LoggedChild::serve(&env, port).await;
    let http = reqwest::Client::new();

    let created = http
        .post(format!("{}/v1/lookups", child.base))
        .bearer_auth(TOKEN)
        .json(&json!({"email": email, "phone": phone}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let post_request_id = request_id_header(&created);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let deadline = Instant::now() + WAIT;
    let mut get_request_id;
    loop {
        let response = http
            .get(format!("{}/v1/lookups/{id}", child.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        get_request_id = request_id_header(&response);
        let lookup: Value = response.json().await.unwrap();
        if lookup["status"] == "completed" {
            assert_eq!(lookup["profile"]["received_via"], "callback");
            break;
        }
        assert!(Instant::now() < deadline, "not completed: {lookup}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(
        post_request_id, get_request_id,
        "request ids are per request"
    );
    let unauthorized = http
        .get(format!("{}/v1/lookups", child.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    request_id_header(&unauthorized);
    let callback = callback_token(&id);

    let stdout = child.stdout.clone();
    let lines = child.stop().await;
    let stdout = stdout.lock().unwrap().clone();
    assert!(!lines.is_empty(), "the service logged nothing");
    let mut parsed = Vec::new();
    for line in &lines {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line}"));
        parsed.push(value);
    }
    for request_id in [&post_request_id, &get_request_id] {
        assert!(
            parsed
                .iter()
                .any(|l| has_field(l, "request_id", request_id)),
            "no log line carries request_id {request_id}:\n{}",
            lines.join("\n")
        );
    }
    let phone_digits = phone.trim_start_matches('+');
    let upstream_key = env_value(&env, "UPSTREAM_API_KEY");
    let service_secret = env_value(&env, "SERVICE_SECRET");
    for line in lines.iter().chain(&stdout) {
        let lower = line.to_lowercase();
        for (what, secret) in [
            ("the email", email),
            ("the phone", phone_digits),
            ("the API token", TOKEN),
            ("the upstream key", upstream_key.as_str()),
            ("the upstream secret", SECRET),
            ("SERVICE_SECRET", service_secret.as_str()),
            ("the callback token", callback.as_str()),
        ] {
            assert!(
                !lower.contains(&secret.to_lowercase()),
                "{what} appears in a log line: {line}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 6. healthcheck

async fn healthcheck(url: &str) -> std::process::ExitStatus {
    let run = tokio::process::Command::new(crate::common::bin())
        .arg("healthcheck")
        .env_clear()
        .env("HEALTHCHECK_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("healthcheck did not return")
        .unwrap()
}

#[sqlx::test]
async fn the_healthcheck_subcommand_passes_on_a_live_service_and_fails_on_a_closed_port(
    db: PgPool,
) {
    let sandbox = TestSandbox::start(0.05).await;
    let port = free_port();
    let child = Child::serve(&serve_env(&database_url(&db), &sandbox, port, port)).await;

    let live = healthcheck(&format!("{}/healthz", child.base)).await;
    assert!(live.success(), "against a live /healthz: {live}");
    let not_found = healthcheck(&format!("{}/no-such-endpoint", child.base)).await;
    assert!(!not_found.success(), "against a 404: {not_found}");
    let closed = healthcheck(&format!("http://127.0.0.1:{}/healthz", free_port())).await;
    assert!(!closed.success(), "against a closed port: {closed}");
    child.kill9().await;
}

// ---------------------------------------------------------------------------
// 7. /v1/stats

#[sqlx::test]
async fn stats_count_the_credits_lookups_and_deliveries_of_one_completed_lookup(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let created: Value = app
        .post_lookup(&json!({"email": "ann@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let done = app
        .wait_for_status(created["id"].as_str().unwrap(), "completed", WAIT)
        .await;
    assert_eq!(done["profile"]["received_via"], "callback");

    let unauthorized = reqwest::get(app.url("/v1/stats")).await.unwrap();
    assert_eq!(unauthorized.status(), 401, "/v1/stats needs the token");
    let stats = app.get_json("/v1/stats").await;
    assert_eq!(stats["credits"]["today"], 5, "{stats}");
    assert_eq!(stats["credits"]["this_month"], 5, "{stats}");
    assert_eq!(stats["lookups"]["completed"], 1, "{stats}");
    assert_eq!(stats["deliveries"]["applied"], 1, "{stats}");
    app.stop().await;
}

/// The checker above must itself catch what a schema forbids, or the
/// conformance test proves nothing.
#[test]
fn the_schema_checker_rejects_responses_that_break_the_documented_schema() {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(interests_receiver::http::openapi::ApiDoc::openapi()).unwrap();
    let lookup = &doc["components"]["schemas"]["LookupView"];
    let validator = Validator { doc: &doc };
    let good = json!({
        "id": Uuid::new_v4(), "status": "completed", "request_id": "r_1_2",
        "subject": {"email": "a@example.com", "phone": null, "social_media_url": null, "name": null, "company": null},
        "metadata": {}, "created_at": "2026-01-15T10:30:00Z", "submitted_at": null,
        "completed_at": "2026-01-15T10:31:00Z", "credits_charged": 5, "error": null,
        "synthetic": false, "match_basis": "email", "warnings": [],
        "profile": {"id": Uuid::new_v4(), "result": {"core_profile": {}}, "completed_on": null, "received_via": "callback"}
    });
    assert_eq!(validator.errors(lookup, &good), Vec::<String>::new());

    let breakages: [(&str, Value); 8] = [
        ("/id", json!("not-a-uuid")),
        ("/match_basis", json!("fingerprint")),
        ("/warnings", json!("none")),
        ("/status", json!(3)),
        ("/created_at", json!("yesterday")),
        ("/credits_charged", json!("5")),
        ("/profile/id", json!(null)),
        ("/subject/email", json!(["a@example.com"])),
    ];
    for (pointer, bad) in breakages {
        let mut broken = good.clone();
        *broken.pointer_mut(pointer).unwrap() = bad;
        assert!(
            !validator.errors(lookup, &broken).is_empty(),
            "{pointer} broken but accepted"
        );
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("subject");
    assert!(
        !validator.errors(lookup, &missing).is_empty(),
        "missing subject accepted"
    );
    let mut extra = good;
    extra["undocumented"] = json!(1);
    assert!(
        !validator.errors(lookup, &extra).is_empty(),
        "undocumented field accepted"
    );
}

#[sqlx::test]
async fn forged_callbacks_get_no_log_line_each_only_a_summary(db: PgPool) {
    let sandbox = TestSandbox::start(0.05).await;
    let port = free_port();
    let mut env = serve_env(&database_url(&db), &sandbox, port, port);
    unset_env(&mut env, "LOG_FORMAT");
    set_env(&mut env, "RUST_LOG", "info");
    let child = LoggedChild::serve(&env, port).await;
    let http = reqwest::Client::new();

    for _ in 0..50 {
        let forged = http
            .post(format!(
                "{}/callbacks/{}/{}",
                child.base,
                Uuid::new_v4(),
                "F".repeat(43)
            ))
            .json(&json!({"request_id": "r", "status": "completed"}))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 404);
    }
    let health = http
        .get(format!("{}/healthz", child.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let lines = child.stop().await;
    let logged: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let per_request = logged
        .iter()
        .filter(|l| has_field(l, "route", "/callbacks/{lookup_id}/{token}"))
        .count();
    assert_eq!(per_request, 0, "forged callbacks were logged one by one");
    // The control: an ordinary request is logged.
    assert!(logged.iter().any(|l| has_field(l, "route", "/healthz")));
    let summaries: Vec<&Value> = logged
        .iter()
        .filter(|l| l["message"] == "callbacks refused for a wrong token")
        .collect();
    let refused: u64 = summaries.iter().filter_map(|l| l["refused"].as_u64()).sum();
    assert_eq!(refused, 50, "{summaries:?}");
}

#[test]
fn every_v1_operation_documents_the_common_problems() {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(interests_receiver::http::openapi::ApiDoc::openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let responses = operation["responses"].as_object().unwrap();
            let mut common = vec!["401", "405", "422", "500", "503"];
            if method != "get" {
                common.push("403");
            }
            for status in common {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} does not document {status}"
                );
            }
        }
    }
}

#[test]
fn the_openapi_document_names_every_lookup_status_for_the_console() {
    use interests_receiver::lifecycle::LookupStatus;
    use utoipa::OpenApi;
    let doc = serde_json::to_value(interests_receiver::http::openapi::ApiDoc::openapi()).unwrap();
    // The console's status filter reads this enum (src/http/console/assets/pages.js).
    let listed = &doc["components"]["schemas"]["LookupStatus"]["enum"];
    let all: Vec<&str> = LookupStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(listed, &serde_json::json!(all));
}
