//! How the service copes with an upstream that refuses, fails, stalls or
//! throttles (contract sections 2 and 7), against a wiremock upstream whose
//! every answer is scripted and every request recorded.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{
    Settings, TestApp, accepting_upstream, completed_for, fixture, spawn, submits,
    submitted_lookup, wait_for_submits,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(10);

/// One request upstream received, with when it arrived and the request_id
/// it was given (accepted submits only).
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    wall: SystemTime,
    method: String,
    body: Value,
    request_id: Option<String>,
}

/// Requests in arrival order, shared by every responder of a mock server.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn push(&self, request: &Request, request_id: Option<String>) {
        self.0.lock().unwrap().push(Seen {
            at: Instant::now(),
            wall: SystemTime::now(),
            method: request.method.to_string(),
            body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
            request_id,
        });
    }

    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    fn submits(&self) -> Vec<Seen> {
        self.all()
            .into_iter()
            .filter(|s| s.method == "POST")
            .collect()
    }

    /// The accepted submit for `email`, if any.
    fn accepted_for(&self, email: &str) -> Vec<Seen> {
        self.submits()
            .into_iter()
            .filter(|s| s.body["email"] == email && s.request_id.is_some())
            .collect()
    }
}

fn accepted_body(request_id: &str) -> Value {
    json!({
        "success": true,
        "data": {"request_id": request_id, "status": "queued"},
        "timestamp": "2026-01-15T10:30:00"
    })
}

/// A responder that records the request and answers `template`.
fn recorded(
    log: &Log,
    template: ResponseTemplate,
) -> impl Fn(&Request) -> ResponseTemplate + Send + Sync + 'static {
    let log = log.clone();
    move |request: &Request| {
        log.push(request, None);
        template.clone()
    }
}

/// A responder that records the request and accepts it with a fresh
/// request_id, adding `headers(now)` to the answer.
fn recorded_accept(
    log: &Log,
    headers: impl Fn(SystemTime) -> Vec<(&'static str, String)> + Send + Sync + 'static,
) -> impl Fn(&Request) -> ResponseTemplate + Send + Sync + 'static {
    let log = log.clone();
    move |request: &Request| {
        let request_id = common::new_request_id();
        log.push(request, Some(request_id.clone()));
        let mut template = ResponseTemplate::new(202).set_body_json(accepted_body(&request_id));
        for (name, value) in headers(SystemTime::now()) {
            template = template.insert_header(name, value.as_str());
        }
        template
    }
}

fn submit_mock() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path("/person/interests"))
}

fn poll_mock(request_id: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path("/person/interests"))
        .and(query_param("request_id", request_id))
}

fn error_body(code: &str, message: &str) -> Value {
    json!({"success": false, "error": {"code": code, "message": message}})
}

async fn create(app: &TestApp, body: Value) -> String {
    app.create(&body).await
}

async fn column_i32(app: &TestApp, id: &str, column: &str) -> i32 {
    sqlx::query_scalar(&format!("SELECT {column} FROM lookups WHERE id = $1::uuid"))
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// Waits until `log` holds `n` submits.
async fn wait_for_logged_submits(log: &Log, n: usize, timeout: Duration) -> Vec<Seen> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = log.submits();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "upstream received {} submits, expected {n}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn url(server: &MockServer) -> url::Url {
    server.uri().parse().unwrap()
}

/// No further submit can be made: a submit is claimed only for a `pending`
/// lookup, and none has one under way. (Instead of waiting a while and
/// seeing nothing happen, which passes whenever the wrong call is late.)
async fn assert_no_submit_left(app: &TestApp) {
    assert_eq!(
        app.count(
            "SELECT count(*) FROM lookups WHERE status = 'pending' OR submit_started_at IS NOT NULL"
        )
        .await,
        0,
        "a lookup may still be submitted"
    );
}

/// An upstream whose first submit gets a 429 asking for `retry_after`
/// seconds, and which accepts every later one; all are logged in `log`.
async fn upstream_429_once_then_accepting(log: &Log, retry_after: &str) -> MockServer {
    let upstream = MockServer::start().await;
    submit_mock()
        .respond_with(recorded(
            log,
            ResponseTemplate::new(429)
                .insert_header("Retry-After", retry_after)
                .set_body_json(fixture("rate-limited-429.json")),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    submit_mock()
        .respond_with(recorded_accept(log, |_| vec![]))
        .with_priority(2)
        .mount(&upstream)
        .await;
    upstream
}

#[sqlx::test]
async fn a_429_pauses_every_upstream_call_for_its_retry_after_then_the_submit_is_accepted(
    db: PgPool,
) {
    let log = Log::default();
    let upstream = upstream_429_once_then_accepting(&log, "1").await;
    let app = spawn(db, Settings::with_upstream_url(url(&upstream))).await;

    let first = create(&app, json!({"email": "ann@example.com"})).await;
    wait_for_logged_submits(&log, 1, WAIT).await;
    app.wait_until(&format!(
        "SELECT submit_attempts = 1 AND submit_started_at IS NULL FROM lookups WHERE id = '{first}'"
    ))
    .await;
    // A second lookup arrives once the 429 was taken in, during the pause.
    let second = create(&app, json!({"email": "bo@example.com"})).await;
    let first_done = app
        .wait_for(&first, WAIT, |l| !l["request_id"].is_null())
        .await;
    let second_done = app
        .wait_for(&second, WAIT, |l| !l["request_id"].is_null())
        .await;
    assert_no_submit_left(&app).await;

    let seen = log.all();
    assert_eq!(
        seen.len(),
        3,
        "one refused and two accepted submits: {seen:?}"
    );
    let ann = log.accepted_for("ann@example.com");
    assert_eq!(
        log.submits()
            .iter()
            .filter(|s| s.body["email"] == "ann@example.com")
            .count(),
        2
    );
    assert_eq!(first_done["status"], "queued");
    assert_eq!(
        first_done["request_id"].as_str(),
        ann[0].request_id.as_deref()
    );
    assert_eq!(second_done["status"], "queued");
    for later in &seen[1..] {
        let gap = later.at.duration_since(seen[0].at);
        assert!(
            gap >= Duration::from_secs(1),
            "an upstream request went out {gap:?} after the 429 asking for 1 s"
        );
    }
    app.stop().await;
}

/// "A 429 pauses every replica": the pause is kept in PostgreSQL. Replica
/// A takes the 429 and stops; replica B, which never saw a 429, must still
/// wait out its Retry-After before its own first submit.
#[sqlx::test]
async fn a_429_taken_by_one_replica_pauses_the_other_too(db: PgPool) {
    let log = Log::default();
    let upstream = upstream_429_once_then_accepting(&log, "2").await;
    let a = spawn(db.clone(), Settings::with_upstream_url(url(&upstream))).await;
    let b = spawn(db, Settings::with_upstream_url(url(&upstream))).await;

    // Only A works until its 429 is taken in: B is created after.
    let first = create(&a, json!({"email": "ann@example.com"})).await;
    wait_for_logged_submits(&log, 1, WAIT).await;
    a.wait_until(&format!(
        "SELECT submit_attempts = 1 AND submit_started_at IS NULL FROM lookups WHERE id = '{first}'"
    ))
    .await;
    a.stop().await;
    let second = create(&b, json!({"email": "bo@example.com"})).await;
    for id in [&first, &second] {
        b.wait_for(id, WAIT, |l| !l["request_id"].is_null()).await;
    }
    let seen = log.all();
    assert_eq!(
        seen.len(),
        3,
        "one refused and two accepted submits: {seen:?}"
    );
    for later in &seen[1..] {
        let gap = later.at.duration_since(seen[0].at);
        assert!(
            gap >= Duration::from_secs(2),
            "replica B called upstream {gap:?} after replica A's 429 asked for 2 s"
        );
    }
    b.stop().await;
}

#[sqlx::test]
async fn a_401_then_a_503_service_unavailable_are_retried_until_the_submit_is_accepted_once(
    db: PgPool,
) {
    let upstream = MockServer::start().await;
    let log = Log::default();
    submit_mock()
        .respond_with(recorded(
            &log,
            ResponseTemplate::new(401).set_body_json(error_body("invalid_api_key", "bad key")),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    submit_mock()
        .respond_with(recorded(
            &log,
            ResponseTemplate::new(503)
                .set_body_json(error_body("service_unavailable", "try later")),
        ))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&upstream)
        .await;
    submit_mock()
        .respond_with(recorded_accept(&log, |_| vec![]))
        .with_priority(3)
        .mount(&upstream)
        .await;
    let app = spawn(db, Settings::with_upstream_url(url(&upstream))).await;

    let id = create(&app, json!({"email": "cy@example.com"})).await;
    let done = app
        .wait_for(&id, WAIT, |l| !l["request_id"].is_null())
        .await;
    assert_no_submit_left(&app).await;

    let seen = log.submits();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let accepted: Vec<_> = seen.iter().filter(|s| s.request_id.is_some()).collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(done["status"], "queued");
    assert_eq!(
        done["request_id"].as_str(),
        accepted[0].request_id.as_deref()
    );
    assert!(done["error"].is_null());
    assert_eq!(column_i32(&app, &id, "submit_attempts").await, 3);
    assert_eq!(column_i32(&app, &id, "ambiguous_submits").await, 0);
    app.stop().await;
}

/// Answers that do not prove upstream refused the request: a 500 sent
/// after the job was made, a proxy's 502/504, a redirect.
async fn assert_submit_answer_is_ambiguous(db: PgPool, answer: ResponseTemplate) {
    let upstream = MockServer::start().await;
    let log = Log::default();
    submit_mock()
        .respond_with(recorded(&log, answer))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    submit_mock()
        .respond_with(recorded_accept(&log, |_| vec![]))
        .with_priority(2)
        .mount(&upstream)
        .await;
    let app = spawn(db, Settings::with_upstream_url(url(&upstream))).await;

    let id = create(&app, json!({"email": "amb@example.com"})).await;
    app.wait_until(&format!(
        "SELECT ambiguous_submits = 1 FROM lookups WHERE id = '{id}'"
    ))
    .await;
    // Not re-sent: the scheduling state says never (AMBIGUOUS_RESUBMIT_AFTER_SECS
    // unset), not "not yet", and no lease is held that could send it.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM lookups WHERE id = '{id}' \
             AND next_action_at = 'infinity' AND lease_owner IS NULL AND submit_started_at IS NULL"
        ))
        .await,
        1,
        "an ambiguous submit is scheduled to be sent again"
    );
    assert_eq!(log.submits().len(), 1, "re-sent: {:?}", log.submits());
    let lookup = app.lookup(&id).await;
    assert_eq!(lookup["status"], "pending");
    assert!(lookup["request_id"].is_null());
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("upstream_ambiguous_submits_total 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_500_on_submit_is_ambiguous_and_not_resent(db: PgPool) {
    let answer = ResponseTemplate::new(500).set_body_json(error_body("internal_error", "boom"));
    assert_submit_answer_is_ambiguous(db, answer).await;
}

/// Upstream answers the first submit 500 (ambiguous), then accepts.
async fn upstream_500_then_accepting(log: &Log) -> MockServer {
    let upstream = MockServer::start().await;
    let answer = ResponseTemplate::new(500).set_body_json(error_body("internal_error", "boom"));
    submit_mock()
        .respond_with(recorded(log, answer))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    submit_mock()
        .respond_with(recorded_accept(log, |_| vec![]))
        .with_priority(2)
        .mount(&upstream)
        .await;
    upstream
}

#[sqlx::test]
async fn with_ambiguous_resubmit_unset_an_ambiguous_submit_is_never_resent_and_waits_for_its_callback(
    db: PgPool,
) {
    let log = Log::default();
    let upstream = upstream_500_then_accepting(&log).await;
    let settings = Settings::with_upstream_url(url(&upstream));
    assert_eq!(settings.ambiguous_wait, None, "the contract default: unset");
    let app = spawn(db, settings).await;

    let id = create(&app, json!({"email": "undecided@example.com"})).await;
    let first = wait_for_submits(&upstream, 1).await.remove(0);
    app.wait_until(&format!(
        "SELECT ambiguous_submits = 1 FROM lookups WHERE id = '{id}'"
    ))
    .await;
    // Never re-sent: asserted on its schedule (`infinity`) below, not by
    // waiting to see nothing.
    let waiting = app.lookup(&id).await;
    let stats_waiting = app.get_json("/v1/stats").await["ambiguous_waiting"].clone();
    let never_due = app
        .count(&format!(
            "SELECT count(*) FROM lookups WHERE id = '{id}' AND next_action_at = 'infinity'"
        ))
        .await;
    // The job upstream made after all calls back: the lookup completes.
    let request_id = common::new_request_id();
    let done = common::complete_by_callback(
        &app,
        &id,
        first["callback_url"].as_str().unwrap(),
        &completed_for(&request_id),
    )
    .await;

    assert_eq!(log.submits().len(), 1, "re-sent: {:?}", log.submits());
    assert_eq!(waiting["status"], "pending");
    assert!(waiting["request_id"].is_null());
    assert_eq!(never_due, 1);
    assert_eq!(stats_waiting, 1);
    assert_eq!(done["request_id"], request_id.as_str());
    assert_eq!(app.get_json("/v1/stats").await["ambiguous_waiting"], 0);
    assert_eq!(submits(&upstream).await.len(), 1);
    app.stop().await;
}

#[sqlx::test]
async fn an_operator_can_decide_to_send_a_waiting_ambiguous_submit_again(db: PgPool) {
    let log = Log::default();
    let upstream = upstream_500_then_accepting(&log).await;
    let app = spawn(db, Settings::with_upstream_url(url(&upstream))).await;
    let id = create(&app, json!({"email": "decided@example.com"})).await;
    app.wait_until(&format!(
        "SELECT ambiguous_submits = 1 FROM lookups WHERE id = '{id}'"
    ))
    .await;
    let resubmit = |id: String| {
        app.http
            .post(app.url(&format!("/v1/lookups/{id}/resubmit")))
            .bearer_auth(common::TOKEN)
            .send()
    };

    let decided = resubmit(id.clone()).await.unwrap();
    assert_eq!(decided.status(), 202);
    let queued = app
        .wait_for(&id, WAIT, |l| !l["request_id"].is_null())
        .await;
    let again = resubmit(id.clone()).await.unwrap();
    let unknown = resubmit(uuid::Uuid::now_v7().to_string()).await.unwrap();

    let sent = submits(&upstream).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1]["callback_url"], sent[0]["callback_url"]);
    assert_eq!(queued["status"], "queued");
    let refused = common::problem(again, 409).await;
    assert_eq!(refused["type"], "not_awaiting_decision");
    common::problem(unknown, 404).await;
    assert_eq!(submits(&upstream).await.len(), 2);
    app.stop().await;
}

#[sqlx::test]
async fn with_ambiguous_resubmit_unset_a_waiting_lookup_still_expires_at_the_job_deadline(
    db: PgPool,
) {
    let log = Log::default();
    let upstream = upstream_500_then_accepting(&log).await;
    let mut settings = Settings::with_upstream_url(url(&upstream));
    settings.job_deadline = Duration::from_secs(3);
    let app = spawn(db, settings).await;

    let id = create(&app, json!({"email": "late@example.com"})).await;
    let expired = app.wait_for_status(&id, "expired", WAIT).await;

    assert!(
        expired["error"]
            .as_str()
            .is_some_and(|e| e.contains("JOB_DEADLINE_SECS")),
        "{expired}"
    );
    assert_eq!(log.submits().len(), 1, "re-sent: {:?}", log.submits());
    app.stop().await;
}

#[sqlx::test]
async fn a_proxys_502_on_submit_is_ambiguous_and_not_resent(db: PgPool) {
    let answer = ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>");
    assert_submit_answer_is_ambiguous(db, answer).await;
}

#[sqlx::test]
async fn a_gateway_timeout_504_on_submit_is_ambiguous_and_not_resent(db: PgPool) {
    let answer = ResponseTemplate::new(504).set_body_string("Gateway Timeout");
    assert_submit_answer_is_ambiguous(db, answer).await;
}

#[sqlx::test]
async fn a_503_without_upstreams_error_code_is_ambiguous(db: PgPool) {
    let answer = ResponseTemplate::new(503).set_body_string("upstream connect error");
    assert_submit_answer_is_ambiguous(db, answer).await;
}

#[sqlx::test]
async fn a_redirect_is_not_followed_and_the_credentials_never_reach_its_target(db: PgPool) {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202).set_body_json(accepted_body("x_1_1")))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let answer = ResponseTemplate::new(307).insert_header(
        "Location",
        format!("{}/person/interests", elsewhere.uri()).as_str(),
    );
    assert_submit_answer_is_ambiguous(db, answer).await;
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

#[sqlx::test]
async fn a_400_fails_the_lookup_with_upstreams_reason_for_free_and_it_is_never_resent(db: PgPool) {
    let upstream = MockServer::start().await;
    submit_mock()
        .respond_with(ResponseTemplate::new(400).set_body_json(error_body(
            "invalid_parameters",
            "phone is not a valid number",
        )))
        .mount(&upstream)
        .await;
    let app = spawn(db, Settings::with_upstream_url(url(&upstream))).await;

    let id = create(&app, json!({"phone": "+15550000000"})).await;
    let failed = app.wait_for_status(&id, "failed", WAIT).await;
    // `failed` is final: no submit is claimed for it again.
    assert_no_submit_left(&app).await;

    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("phone is not a valid number")),
        "{failed}"
    );
    assert_eq!(failed["credits_charged"], 0);
    assert!(failed["request_id"].is_null());
    assert_eq!(submits(&upstream).await.len(), 1);
    assert_eq!(app.lookup(&id).await["status"], "failed");
    app.stop().await;
}

#[sqlx::test]
async fn a_timed_out_submit_is_not_resent_and_its_callback_still_completes_the_lookup(db: PgPool) {
    let upstream = MockServer::start().await;
    let upstream_request_id = common::new_request_id();
    submit_mock()
        .respond_with(
            ResponseTemplate::new(202)
                .set_body_json(accepted_body(&upstream_request_id))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&upstream)
        .await;
    let mut settings = Settings::with_upstream_url(url(&upstream));
    settings.upstream_timeout = Duration::from_secs(1);
    settings.ambiguous_wait = Some(Duration::from_secs(60));
    let app = spawn(db, settings).await;

    let id = create(&app, json!({"email": "di@example.com"})).await;
    let first = wait_for_submits(&upstream, 1).await.remove(0);
    let callback_url = first["callback_url"].as_str().unwrap().to_owned();
    // The submit times out after 1 s and is taken in as ambiguous; its
    // re-send is scheduled after AMBIGUOUS_RESUBMIT_AFTER_SECS (60), not
    // sooner (asserted on the schedule, not by waiting to see nothing).
    app.wait_until(&format!(
        "SELECT ambiguous_submits = 1 AND submit_started_at IS NULL \
               AND next_action_at > now() + interval '50 seconds' FROM lookups WHERE id = '{id}'"
    ))
    .await;
    let waiting = app.lookup(&id).await;
    let stats_before = app.get_json("/v1/stats").await;

    let done = common::complete_by_callback(
        &app,
        &id,
        &callback_url,
        &completed_for(&upstream_request_id),
    )
    .await;

    assert_eq!(waiting["status"], "pending");
    assert!(waiting["request_id"].is_null());
    assert_eq!(stats_before["ambiguous_submits"], 1, "{stats_before}");
    assert_eq!(submits(&upstream).await.len(), 1);
    assert_eq!(done["request_id"], upstream_request_id.as_str());
    assert_eq!(done["credits_charged"], 5);
    assert_eq!(done["profile"]["received_via"], "callback");
    let stats = app.get_json("/v1/stats").await;
    assert_eq!(stats["ambiguous_submits"], 1, "{stats}");
    assert_eq!(stats["submits"], 1, "{stats}");
    app.stop().await;
}

#[sqlx::test]
async fn an_ambiguous_submit_is_resent_once_after_the_wait_with_the_same_callback_url(db: PgPool) {
    let upstream = MockServer::start().await;
    let log = Log::default();
    submit_mock()
        .respond_with(
            ResponseTemplate::new(202)
                .set_body_json(accepted_body(&common::new_request_id()))
                .set_delay(Duration::from_secs(3)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    submit_mock()
        .respond_with(recorded_accept(&log, |_| vec![]))
        .with_priority(2)
        .mount(&upstream)
        .await;
    let mut settings = Settings::with_upstream_url(url(&upstream));
    settings.upstream_timeout = Duration::from_secs(1);
    settings.ambiguous_wait = Some(Duration::from_secs(2));
    let app = spawn(db, settings).await;

    let id = create(&app, json!({"email": "ed@example.com"})).await;
    let done = app
        .wait_for(&id, WAIT, |l| !l["request_id"].is_null())
        .await;
    assert_no_submit_left(&app).await;

    let sent = submits(&upstream).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0]["callback_url"].is_string());
    assert_eq!(sent[1]["callback_url"], sent[0]["callback_url"]);
    assert_eq!(sent[1]["email"], "ed@example.com");
    assert_eq!(done["status"], "queued");
    assert_eq!(
        done["request_id"].as_str(),
        log.submits()[0].request_id.as_deref()
    );
    assert_eq!(column_i32(&app, &id, "ambiguous_submits").await, 1);
    app.stop().await;
}

#[sqlx::test]
async fn a_refused_connection_keeps_the_lookup_pending_and_retrying(db: PgPool) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = spawn(
        db,
        Settings::with_upstream_url(format!("http://127.0.0.1:{port}").parse().unwrap()),
    )
    .await;

    let id = create(&app, json!({"email": "fay@example.com"})).await;
    let deadline = Instant::now() + WAIT;
    while column_i32(&app, &id, "submit_attempts").await < 3 {
        assert!(Instant::now() < deadline, "submit not retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let lookup = app.lookup(&id).await;
    assert_eq!(lookup["status"], "pending");
    assert!(lookup["error"].is_null(), "{lookup}");
    // Nothing reached upstream: no charge risk, so no ambiguity either.
    assert_eq!(column_i32(&app, &id, "ambiguous_submits").await, 0);
    app.stop().await;
}

/// A poll-only app (no PUBLIC_BASE_URL) whose upstream accepts every
/// submit with `request_id`.
async fn poll_only(db: PgPool, request_id: &str) -> (TestApp, MockServer) {
    let upstream = MockServer::start().await;
    submit_mock()
        .respond_with(ResponseTemplate::new(202).set_body_json(accepted_body(request_id)))
        .mount(&upstream)
        .await;
    let mut settings = Settings::with_upstream_url(url(&upstream));
    settings.callbacks = false;
    settings.poll_after = Duration::from_secs(1);
    (spawn(db, settings).await, upstream)
}

fn processing_for(request_id: &str) -> Value {
    let mut body = fixture("poll-processing.json");
    body["data"]["request_id"] = json!(request_id);
    body
}

async fn polls(upstream: &MockServer) -> usize {
    upstream
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method == wiremock::http::Method::GET)
        .count()
}

#[sqlx::test]
async fn without_callbacks_polling_moves_the_lookup_to_processing_then_completed(db: PgPool) {
    let request_id = common::new_request_id();
    let (app, upstream) = poll_only(db, &request_id).await;
    poll_mock(&request_id)
        .respond_with(ResponseTemplate::new(200).set_body_json(processing_for(&request_id)))
        .with_priority(5)
        .mount(&upstream)
        .await;

    let id = create(&app, json!({"email": "gus@example.com"})).await;
    let running = app.wait_for_status(&id, "processing", WAIT).await;
    poll_mock(&request_id)
        .respond_with(ResponseTemplate::new(200).set_body_json(completed_for(&request_id)))
        .with_priority(1)
        .mount(&upstream)
        .await;
    let done = app.wait_for_status(&id, "completed", WAIT).await;

    let sent = submits(&upstream).await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0].get("callback_url").is_none(), "{}", sent[0]);
    assert_eq!(running["request_id"], request_id.as_str());
    assert_eq!(done["profile"]["received_via"], "poll");
    assert_eq!(done["credits_charged"], 5);
    assert_eq!(
        done["profile"]["result"],
        fixture("completed.json")["data"]["result"]
    );
    assert!(polls(&upstream).await >= 2);
    app.stop().await;
}

#[sqlx::test]
async fn a_poll_answering_500_twice_is_retried_and_the_result_still_arrives(db: PgPool) {
    let request_id = common::new_request_id();
    let (app, upstream) = poll_only(db, &request_id).await;
    poll_mock(&request_id)
        .respond_with(
            ResponseTemplate::new(500).set_body_json(error_body("internal_error", "boom")),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&upstream)
        .await;
    poll_mock(&request_id)
        .respond_with(ResponseTemplate::new(200).set_body_json(completed_for(&request_id)))
        .with_priority(2)
        .mount(&upstream)
        .await;

    let id = create(&app, json!({"email": "hal@example.com"})).await;
    let done = app
        .wait_for_status(&id, "completed", Duration::from_secs(14))
        .await;

    assert_eq!(done["profile"]["received_via"], "poll");
    assert_eq!(done["credits_charged"], 5);
    assert_eq!(polls(&upstream).await, 3);
    app.stop().await;
}

#[sqlx::test]
async fn a_poll_answering_404_request_not_found_expires_the_lookup_with_that_reason(db: PgPool) {
    let request_id = common::new_request_id();
    let (app, upstream) = poll_only(db, &request_id).await;
    poll_mock(&request_id)
        .respond_with(ResponseTemplate::new(404).set_body_json(fixture("not-found-404.json")))
        .mount(&upstream)
        .await;

    let id = create(&app, json!({"email": "ida@example.com"})).await;
    let expired = app.wait_for_status(&id, "expired", WAIT).await;
    // `expired` is not polled: a poll is claimed only for a queued or
    // processing lookup (asserted on its state, not by waiting to see none).
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM lookups WHERE id = '{id}' AND status NOT IN ('queued', 'processing')"
        ))
        .await,
        1
    );

    assert!(
        expired["error"]
            .as_str()
            .is_some_and(|e| e.contains("request_not_found")),
        "{expired}"
    );
    assert_eq!(expired["credits_charged"], 0);
    // An expired job is not polled again.
    assert_eq!(polls(&upstream).await, 1);
    app.stop().await;
}

#[sqlx::test]
async fn a_job_that_never_finishes_expires_at_the_job_deadline(db: PgPool) {
    let request_id = common::new_request_id();
    let upstream = MockServer::start().await;
    submit_mock()
        .respond_with(ResponseTemplate::new(202).set_body_json(accepted_body(&request_id)))
        .mount(&upstream)
        .await;
    poll_mock(&request_id)
        .respond_with(ResponseTemplate::new(200).set_body_json(processing_for(&request_id)))
        .mount(&upstream)
        .await;
    let mut settings = Settings::with_upstream_url(url(&upstream));
    settings.callbacks = false;
    settings.poll_after = Duration::from_millis(300);
    settings.job_deadline = Duration::from_secs(1);
    let app = spawn(db, settings).await;

    let id = create(&app, json!({"email": "jo@example.com"})).await;
    let expired = app.wait_for_status(&id, "expired", WAIT).await;

    assert!(
        expired["error"]
            .as_str()
            .is_some_and(|e| e.contains("deadline")),
        "{expired}"
    );
    assert_eq!(expired["request_id"], request_id.as_str());
    assert!(polls(&upstream).await >= 1, "the job was never polled");
    app.stop().await;
}

#[sqlx::test]
async fn a_spent_rate_limit_on_an_accepted_submit_holds_the_next_call_until_its_reset(db: PgPool) {
    let upstream = MockServer::start().await;
    let log = Log::default();
    // The reset is a unix time in whole seconds: at least 1 s ahead.
    submit_mock()
        .respond_with(recorded_accept(&log, |now| {
            let reset = now.duration_since(UNIX_EPOCH).unwrap().as_secs() + 2;
            vec![
                ("X-RateLimit-Limit", "60".to_owned()),
                ("X-RateLimit-Remaining", "0".to_owned()),
                ("X-RateLimit-Reset", reset.to_string()),
            ]
        }))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    submit_mock()
        .respond_with(recorded_accept(&log, |_| vec![]))
        .with_priority(2)
        .mount(&upstream)
        .await;
    let app = spawn(db, Settings::with_upstream_url(url(&upstream))).await;

    create(&app, json!({"email": "kim@example.com"})).await;
    let first = wait_for_logged_submits(&log, 1, WAIT).await.remove(0);
    let reset = first.wall.duration_since(UNIX_EPOCH).unwrap().as_secs() + 2;
    let second = create(&app, json!({"email": "lu@example.com"})).await;
    app.wait_for(&second, WAIT, |l| !l["request_id"].is_null())
        .await;

    let seen = log.submits();
    assert_eq!(seen.len(), 2);
    let sent_at = seen[1].wall.duration_since(UNIX_EPOCH).unwrap();
    assert!(
        sent_at >= Duration::from_secs(reset),
        "second submit at {sent_at:?}, before the reset at {reset} s"
    );
    app.stop().await;
}

#[sqlx::test]
async fn stats_count_credits_outcomes_deliveries_and_polls(db: PgPool) {
    let upstream = accepting_upstream().await;
    let mut settings = Settings::with_upstream_url(url(&upstream));
    settings.poll_after = Duration::from_secs(1);
    let app = spawn(db, settings).await;

    let (done, done_rid, done_cb) =
        submitted_lookup(&app, &upstream, json!({"email": "max@example.com"})).await;
    common::complete_by_callback(&app, &done, &done_cb, &completed_for(&done_rid)).await;
    let (failed, failed_rid, failed_cb) =
        submitted_lookup(&app, &upstream, json!({"email": "ned@example.com"})).await;
    let mut failure = fixture("failed.json");
    failure["data"]["request_id"] = json!(failed_rid);
    assert!(
        app.post_callback(&failed_cb, &failure)
            .await
            .status()
            .is_success()
    );
    app.wait_for_status(&failed, "failed", WAIT).await;
    let (unpolled, unpolled_rid, _) =
        submitted_lookup(&app, &upstream, json!({"email": "oz@example.com"})).await;
    // Only the third job is unknown upstream: it expires at its first poll
    // that finds this answer. (A 404 for every job would let a slow test
    // expire the other two before their callbacks were applied.)
    Mock::given(method("GET"))
        .and(path("/person/interests"))
        .and(query_param("request_id", unpolled_rid.as_str()))
        .respond_with(ResponseTemplate::new(404).set_body_json(fixture("not-found-404.json")))
        .mount(&upstream)
        .await;
    app.wait_for_status(&unpolled, "expired", WAIT).await;

    let stats = app.get_json("/v1/stats").await;

    assert_eq!(stats["credits"]["today"], 5, "{stats}");
    assert_eq!(stats["credits"]["total"], 5, "{stats}");
    assert_eq!(stats["lookups"]["completed"], 1, "{stats}");
    assert_eq!(stats["lookups"]["failed"], 1, "{stats}");
    assert_eq!(stats["lookups"]["expired"], 1, "{stats}");
    assert_eq!(stats["deliveries"]["applied"], 2, "{stats}");
    assert_eq!(stats["deliveries"]["duplicate"], 0, "{stats}");
    assert_eq!(stats["submits"], 3, "{stats}");
    assert_eq!(stats["ambiguous_submits"], 0, "{stats}");
    let polled = polls(&upstream).await;
    assert!(polled >= 1);
    assert_eq!(stats["polls"], polled as u64, "{stats}");
    app.stop().await;
}

#[sqlx::test]
async fn an_unreadable_2xx_on_submit_is_ambiguous_and_not_resent(db: PgPool) {
    assert_submit_answer_is_ambiguous(
        db,
        ResponseTemplate::new(202).set_body_string("<html>accepted</html>"),
    )
    .await;
}

#[sqlx::test]
async fn a_403_api_key_disabled_is_retried_until_the_submit_is_accepted_once(db: PgPool) {
    let upstream = MockServer::start().await;
    let log = Log::default();
    submit_mock()
        .respond_with(recorded(
            &log,
            ResponseTemplate::new(403).set_body_json(error_body("api_key_disabled", "disabled")),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&upstream)
        .await;
    submit_mock()
        .respond_with(recorded_accept(&log, |_| vec![]))
        .with_priority(2)
        .mount(&upstream)
        .await;
    let app = spawn(db, Settings::with_upstream_url(url(&upstream))).await;

    let id = create(&app, json!({"email": "dee@example.com"})).await;
    let done = app
        .wait_for(&id, WAIT, |l| !l["request_id"].is_null())
        .await;

    let seen = log.submits();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(done["status"], "queued");
    assert_eq!(done["request_id"].as_str(), seen[1].request_id.as_deref());
    assert_eq!(column_i32(&app, &id, "ambiguous_submits").await, 0);
    app.stop().await;
}

#[sqlx::test]
async fn a_422_fails_the_lookup_for_free_and_it_is_final(db: PgPool) {
    let upstream = MockServer::start().await;
    submit_mock()
        .respond_with(ResponseTemplate::new(422).set_body_json(error_body(
            "invalid_parameters",
            "social_media_url is not a profile",
        )))
        .mount(&upstream)
        .await;
    let app = spawn(db, Settings::with_upstream_url(url(&upstream))).await;

    let id = create(&app, json!({"email": "eli@example.com"})).await;
    let failed = app.wait_for_status(&id, "failed", WAIT).await;

    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("social_media_url is not a profile")),
        "{failed}"
    );
    assert_eq!(failed["credits_charged"], 0);
    assert_eq!(submits(&upstream).await.len(), 1);
    // Final: no worker can claim it again (claims take only unfinished rows).
    let claimable = app
        .count(&format!(
            "SELECT count(*) FROM lookups WHERE id = '{id}' \
             AND status IN ('pending', 'queued', 'processing')"
        ))
        .await;
    assert_eq!(claimable, 0);
    app.stop().await;
}

/// An upstream that reads each whole request, then closes the connection
/// without a word: the submit left, its fate is unknown. Counts requests.
async fn hang_up_after_reading() -> (url::Url, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(socket); // the answer never comes
            });
        }
    });
    (url, seen)
}

#[sqlx::test]
async fn a_connection_lost_after_the_submit_was_sent_is_ambiguous_and_not_resent(db: PgPool) {
    let (upstream, seen) = hang_up_after_reading().await;
    let app = spawn(db, Settings::with_upstream_url(upstream)).await;

    let id = create(&app, json!({"email": "flo@example.com"})).await;
    app.wait_until(&format!(
        "SELECT ambiguous_submits = 1 FROM lookups WHERE id = '{id}'"
    ))
    .await;

    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    let lookup = app.lookup(&id).await;
    assert_eq!(lookup["status"], "pending");
    assert!(lookup["request_id"].is_null());
    // Held back for the ambiguous wait (an hour here), not retried soon.
    let held: bool = sqlx::query_scalar(
        "SELECT next_action_at > now() + interval '30 minutes' FROM lookups WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(
        held,
        "the ambiguous submit is scheduled to be sent again soon"
    );
    app.stop().await;
}
