//! Outgoing webhooks: registration, Standard Webhooks signatures checked by
//! an independent implementation, retries with one webhook-id, restarts,
//! replicas, the SSRF guard, replay, and secrets sealed at rest.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::receiver::{Received, Receiver};
use crate::common::{Settings, TOKEN, TestApp, error_fields, problem, spawn};
use serde_json::{Value, json};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(20);

/// Sandbox settings with a retry schedule scaled by `scale`.
pub(crate) fn sandbox(scale: f64) -> Settings {
    let mut settings = Settings::sandbox();
    settings.options.webhook_retry_scale = scale;
    settings
}

pub(crate) async fn register(app: &TestApp, body: Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/webhooks"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Registers `url` and returns (webhook id, secret).
pub(crate) async fn registered(app: &TestApp, url: &str) -> (String, String) {
    let response = register(app, json!({"url": url, "description": "test receiver"})).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

/// Creates a sandbox lookup for `email` and waits until it completed.
pub(crate) async fn completed_lookup(app: &TestApp, email: &str) -> Value {
    let response = app.post_lookup(&json!({"email": email})).await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&id, "completed", WAIT).await
}

pub(crate) fn verify(
    secret: &str,
    received: &Received,
) -> Result<(), standardwebhooks::WebhookError> {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&received.body, &received.headers)
}

async fn attempts(app: &TestApp, webhook_id: &str) -> Vec<Value> {
    app.get_json(&format!("/v1/webhooks/{webhook_id}/attempts"))
        .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[sqlx::test]
async fn a_completed_lookup_reaches_the_endpoint_signed_as_standard_webhooks(db: PgPool) {
    let app = spawn(db, sandbox(0.01)).await;
    let receiver = Receiver::start(0).await;
    let (webhook_id, secret) = registered(&app, &receiver.url()).await;
    assert!(secret.starts_with("whsec_"));

    let lookup = completed_lookup(&app, "alice@example.com").await;
    let got = receiver.wait_for(1, WAIT).await;
    let sent = &got[0];

    verify(&secret, sent).expect("the signature verifies with the standardwebhooks crate");
    let body = sent.json();
    assert_eq!(body["type"], "lookup.completed");
    assert!(body["timestamp"].as_str().is_some());
    assert_eq!(body["data"]["id"], lookup["id"]);
    assert_eq!(body["data"]["status"], "completed");
    assert_eq!(body["data"]["profile"]["id"], lookup["profile"]["id"]);
    assert!(body["data"]["profile"]["result"].is_object());
    let event_id: i64 = sent.header("webhook-id").parse().unwrap();
    let stored: String = sqlx::query_scalar("SELECT type FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, "lookup.completed");

    // A tampered body or signature, or another secret, does not verify.
    let mut tampered = sent.clone();
    let mut bytes = tampered.body.to_vec();
    let at = bytes.iter().position(|b| *b == b'c').unwrap();
    bytes[at] = b'C';
    tampered.body = bytes.into();
    assert!(verify(&secret, &tampered).is_err());
    let mut forged = sent.clone();
    forged
        .headers
        .insert("webhook-id", (event_id + 1).to_string().parse().unwrap());
    assert!(verify(&secret, &forged).is_err());
    assert!(verify(&interests_receiver::webhooks::secret::generate(), sent).is_err());

    // The attempt is listed once recorded; the secret is never shown again.
    let listed = wait_for_attempts(&app, &webhook_id, 1).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["event_id"], event_id);
    assert_eq!(listed[0]["type"], "lookup.completed");
    assert_eq!(listed[0]["attempt"], 1);
    assert_eq!(listed[0]["status_code"], 204);
    assert!(listed[0]["error"].is_null());
    let shown = app.get_json(&format!("/v1/webhooks/{webhook_id}")).await;
    assert!(shown.get("secret").is_none(), "{shown}");
    assert_eq!(
        shown["events"],
        json!(["lookup.completed", "lookup.expired", "lookup.failed"])
    );
    // Only the subscribed event types are sent (no lookup.queued).
    assert_eq!(receiver.received().len(), 1);
    app.stop().await;
}

#[sqlx::test]
async fn an_endpoint_failing_twice_gets_the_event_three_times_with_one_webhook_id(db: PgPool) {
    let app = spawn(db, sandbox(0.002)).await;
    let receiver = Receiver::start(2).await;
    let (webhook_id, secret) = registered(&app, &receiver.url()).await;

    completed_lookup(&app, "bob@example.com").await;
    let got = receiver.wait_for(3, WAIT).await;
    let ids: HashSet<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "retries keep their webhook-id");
    for r in &got {
        verify(&secret, r).unwrap();
    }

    let listed = wait_for_attempts(&app, &webhook_id, 3).await;
    let codes: Vec<Value> = listed.iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(
        codes,
        vec![json!(204), json!(500), json!(500)],
        "newest first"
    );
    let numbers: Vec<Value> = listed.iter().map(|a| a["attempt"].clone()).collect();
    assert_eq!(numbers, vec![json!(3), json!(2), json!(1)]);
    // Paging with a cursor walks the same list.
    let page = app
        .get_json(&format!("/v1/webhooks/{webhook_id}/attempts?limit=2"))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let rest = app
        .get_json(&format!(
            "/v1/webhooks/{webhook_id}/attempts?limit=2&cursor={}",
            page["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rest["items"][0]["attempt"], 1);
    assert!(rest["next_cursor"].is_null());
    // The acknowledged send left the queue: nothing can be sent after the 2xx.
    wait_for_empty_queue(&app, &webhook_id).await;
    assert_eq!(listed.len(), 3);
    assert_eq!(receiver.received().len(), 3, "nothing after the 2xx");
    app.stop().await;
}

#[sqlx::test]
async fn a_restart_in_the_middle_of_the_retries_loses_nothing(db: PgPool) {
    // The first retry is due minutes after the failure: the app is gone by
    // then, however slowly it stops; the test then makes the retry due.
    let app = spawn(db.clone(), sandbox(100.0)).await;
    let receiver = Receiver::start(1).await;
    let (webhook_id, secret) = registered(&app, &receiver.url()).await;
    completed_lookup(&app, "carol@example.com").await;
    receiver.wait_for(1, WAIT).await;
    // Stop once the failed attempt is recorded and the retry scheduled.
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.count("SELECT count(*) FROM webhook_attempts").await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "attempt not recorded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.stop().await;
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_sends WHERE attempts = 1")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(pending, 1, "the retry waits in PostgreSQL");
    sqlx::query("UPDATE webhook_sends SET next_attempt_at = now()")
        .execute(&db)
        .await
        .unwrap();

    let again = spawn(db, sandbox(100.0)).await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    verify(&secret, &got[1]).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while again.count("SELECT count(*) FROM webhook_sends").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "send not finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(attempts(&again, &webhook_id).await.len(), 2);
    again.stop().await;
}

#[sqlx::test]
async fn two_replicas_send_each_event_once(db: PgPool) {
    let a = spawn(db.clone(), sandbox(0.01)).await;
    let b = spawn(db, sandbox(0.01)).await;
    let receiver = Receiver::start(0).await;
    registered(&a, &receiver.url()).await;

    let people = 12;
    for i in 0..people {
        let app = if i % 2 == 0 { &a } else { &b };
        let response = app
            .post_lookup(&json!({"email": format!("r{i}@example.com")}))
            .await;
        assert_eq!(response.status(), 202);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = a
            .count("SELECT count(*) FROM lookups WHERE status = 'completed'")
            .await;
        // A completed lookup's event may still wait in the inbox for the
        // sequencer, which queues its sends: both must be empty.
        let pending = a
            .count(
                "SELECT (SELECT count(*) FROM webhook_sends) + (SELECT count(*) FROM event_inbox)",
            )
            .await;
        if done == people && pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} completed, {pending} sends pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receiver.received();
    let ids: HashSet<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(got.len(), people as usize, "each event sent once");
    assert_eq!(ids.len(), people as usize);
    assert_eq!(
        a.count("SELECT count(*) FROM webhook_attempts").await,
        people
    );
    a.stop().await;
    b.stop().await;
}

#[sqlx::test]
async fn private_addresses_are_refused_unless_allowed(db: PgPool) {
    let mut settings = sandbox(1.0);
    settings.webhook_allow_private = false;
    let app = spawn(db.clone(), settings).await;
    let receiver = Receiver::start(0).await;
    for url in [
        receiver.url(),
        "http://localhost:8080/hook".into(),
        "http://169.254.169.254/latest/meta-data".into(),
        "http://[::1]/hook".into(),
        "http://10.0.0.5/hook".into(),
        "http://[fd00:ec2::254]/".into(),
        "http://100.64.1.1/".into(),
    ] {
        let body = problem(register(&app, json!({"url": url})).await, 422).await;
        assert_eq!(error_fields(&body), vec!["url"], "{url}: {body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM webhooks").await, 0);
    app.stop().await;

    // The same receiver is accepted with WEBHOOK_ALLOW_PRIVATE=true.
    let allowed = spawn(db, sandbox(1.0)).await;
    registered(&allowed, &receiver.url()).await;
    allowed.stop().await;
}

#[sqlx::test]
async fn a_name_that_resolves_to_a_private_address_at_send_time_is_refused(db: PgPool) {
    let mut settings = sandbox(1.0);
    settings.webhook_allow_private = false;
    let app = spawn(db, settings).await;
    let receiver = Receiver::start(0).await;
    // Registered while its name pointed at a public address; since then the
    // name was re-pointed at loopback (as a DNS rebinding attack would).
    let (webhook_id, _) = registered(&app, "https://93.184.216.34/hook").await;
    sqlx::query("UPDATE webhooks SET url = $1")
        .bind(format!("http://localhost:{}/hook", receiver.addr.port()))
        .execute(&app.db)
        .await
        .unwrap();

    completed_lookup(&app, "dave@example.com").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let listed = loop {
        let listed = attempts(&app, &webhook_id).await;
        if !listed.is_empty() {
            break listed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(listed[0]["status_code"].is_null());
    let error = listed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("resolves only to loopback, private or non-public addresses"),
        "{error}"
    );
    assert!(receiver.received().is_empty(), "nothing reached loopback");
    app.stop().await;
}

/// Waits until the endpoint lists at least `n` attempts (the sender records
/// an attempt after the POST returned: seeing the request is not enough).
pub(crate) async fn wait_for_attempts(app: &TestApp, webhook_id: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = attempts(app, webhook_id).await;
        if listed.len() >= n {
            return listed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} attempts recorded in {WAIT:?}",
            listed.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no send of the endpoint is queued or in flight.
async fn wait_for_empty_queue(app: &TestApp, webhook_id: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let query = format!("SELECT count(*) FROM webhook_sends WHERE webhook_id = '{webhook_id}'");
    while app.count(&query).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sends still queued after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn replay(app: &TestApp, webhook_id: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/v1/webhooks/{webhook_id}/replay")))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn queued(response: reqwest::Response) -> i64 {
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["queued"]
        .as_i64()
        .unwrap()
}

/// The time of the event sent with `webhook_id`, as RFC 3339.
async fn event_time(app: &TestApp, received: &Received) -> String {
    let at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT at FROM events WHERE id = $1")
            .bind(received.header("webhook-id").parse::<i64>().unwrap())
            .fetch_one(&app.db)
            .await
            .unwrap();
    at.to_rfc3339()
}

#[sqlx::test]
async fn replay_sends_the_events_again_with_the_same_webhook_ids(db: PgPool) {
    let app = spawn(db, sandbox(0.01)).await;
    let receiver = Receiver::start(0).await;
    let (webhook_id, secret) = registered(&app, &receiver.url()).await;
    completed_lookup(&app, "erin@example.com").await;
    completed_lookup(&app, "fay@example.com").await;
    let first = receiver.wait_for(2, WAIT).await;
    // Both first sends are finished (recorded and dequeued) before any replay.
    wait_for_attempts(&app, &webhook_id, 2).await;
    wait_for_empty_queue(&app, &webhook_id).await;

    let bad = problem(
        replay(&app, &webhook_id, json!({"since": "yesterday"})).await,
        422,
    )
    .await;
    assert_eq!(error_fields(&bad), vec!["since"]);
    let future = replay(&app, &webhook_id, json!({"since": "2999-01-01T00:00:00Z"})).await;
    assert_eq!(queued(future).await, 0);
    assert_eq!(receiver.received().len(), 2);

    // Since the second event: that one only, with its own webhook-id.
    let since_second = event_time(&app, &first[1]).await;
    assert_eq!(
        queued(replay(&app, &webhook_id, json!({"since": since_second})).await).await,
        1
    );
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got[2].header("webhook-id"), first[1].header("webhook-id"));
    verify(&secret, &got[2]).unwrap();
    wait_for_empty_queue(&app, &webhook_id).await;

    // Since an hour ago: both, each with the id it was first sent with.
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    assert_eq!(
        queued(replay(&app, &webhook_id, json!({"since": since})).await).await,
        2
    );
    let got = receiver.wait_for(5, WAIT).await;
    let ids = |r: &[Received]| {
        r.iter()
            .map(|r| r.header("webhook-id"))
            .collect::<HashSet<_>>()
    };
    assert_eq!(ids(&got[3..5]), ids(&first));
    for sent in &got[3..5] {
        verify(&secret, sent).unwrap();
    }
    wait_for_empty_queue(&app, &webhook_id).await;
    assert_eq!(
        receiver.received().len(),
        5,
        "each replayed event is sent once"
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_replay_while_the_first_send_is_in_flight_sends_the_event_again(db: PgPool) {
    let app = spawn(db, sandbox(0.01)).await;
    let receiver = Receiver::held().await;
    let (webhook_id, _) = registered(&app, &receiver.url()).await;
    completed_lookup(&app, "gail@example.com").await;
    // The first POST has arrived and its answer is held: the send is in
    // flight, its row still queued under the sender's lease.
    let first = receiver.wait_for(1, WAIT).await;
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    assert_eq!(
        queued(replay(&app, &webhook_id, json!({"since": since})).await).await,
        1
    );
    assert!(
        attempts(&app, &webhook_id).await.is_empty(),
        "still in flight"
    );

    receiver.release();
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].header("webhook-id"), first[0].header("webhook-id"));
    let listed = wait_for_attempts(&app, &webhook_id, 2).await;
    assert!(listed.iter().all(|a| a["status_code"] == 204), "{listed:?}");
    wait_for_empty_queue(&app, &webhook_id).await;
    assert_eq!(receiver.received().len(), 2, "sent once more, not more");
    app.stop().await;
}

#[sqlx::test]
async fn a_replay_makes_a_send_waiting_for_its_retry_due_at_once(db: PgPool) {
    // At this scale the first retry is due minutes after the failure.
    let app = spawn(db, sandbox(100.0)).await;
    let receiver = Receiver::start(1).await;
    let (webhook_id, _) = registered(&app, &receiver.url()).await;
    completed_lookup(&app, "hana@example.com").await;
    let listed = wait_for_attempts(&app, &webhook_id, 1).await;
    assert_eq!(listed[0]["status_code"], 500);
    let due_later: bool = sqlx::query_scalar(
        "SELECT next_attempt_at > now() + interval '1 minute' FROM webhook_sends",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(due_later, "the retry is scheduled minutes ahead");

    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    assert_eq!(
        queued(replay(&app, &webhook_id, json!({"since": since})).await).await,
        1
    );
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    wait_for_empty_queue(&app, &webhook_id).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_replay_of_a_disabled_webhook_is_refused_and_queues_nothing(db: PgPool) {
    let app = spawn(db, sandbox(0.01)).await;
    let receiver = Receiver::start(0).await;
    let (webhook_id, _) = registered(&app, &receiver.url()).await;
    completed_lookup(&app, "ida@example.com").await;
    wait_for_attempts(&app, &webhook_id, 1).await;
    wait_for_empty_queue(&app, &webhook_id).await;
    let disabled = app
        .http
        .patch(app.url(&format!("/v1/webhooks/{webhook_id}")))
        .bearer_auth(TOKEN)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);

    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let refused = problem(
        replay(&app, &webhook_id, json!({"since": since})).await,
        409,
    )
    .await;
    assert!(
        refused["type"]
            .as_str()
            .unwrap()
            .contains("webhook_disabled"),
        "{refused}"
    );
    assert_eq!(app.count("SELECT count(*) FROM webhook_sends").await, 0);
    app.stop().await;
}

#[sqlx::test]
async fn endpoints_are_listed_updated_and_deleted_and_bad_input_is_named(db: PgPool) {
    let app = spawn(db, sandbox(1.0)).await;
    let (id, _) = registered(&app, "http://127.0.0.1:9/hook").await;

    let bad = problem(
        register(
            &app,
            json!({"url": "ftp://x.example/", "events": ["lookup.nope"], "extra": 1}),
        )
        .await,
        422,
    )
    .await;
    let mut fields = error_fields(&bad);
    fields.sort();
    assert_eq!(fields, vec!["events", "extra", "url"]);
    problem(register(&app, json!({})).await, 422).await;
    assert_eq!(app.count("SELECT count(*) FROM webhooks").await, 1);

    let list = app.get_json("/v1/webhooks").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("secret").is_none());

    let patch = |body: Value| {
        app.http
            .patch(app.url(&format!("/v1/webhooks/{id}")))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let updated: Value =
        patch(json!({"disabled": true, "events": ["lookup.failed"], "description": null}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(updated["disabled"], true);
    assert_eq!(updated["events"], json!(["lookup.failed"]));
    assert!(updated["description"].is_null());
    let bad = problem(patch(json!({"disabled": "yes"})).await.unwrap(), 422).await;
    assert_eq!(error_fields(&bad), vec!["disabled"]);

    let delete = || {
        app.http
            .delete(app.url(&format!("/v1/webhooks/{id}")))
            .bearer_auth(TOKEN)
            .send()
    };
    assert_eq!(delete().await.unwrap().status(), 204);
    problem(delete().await.unwrap(), 404).await;
    problem(app.get(&format!("/v1/webhooks/{id}")).await, 404).await;
    problem(app.get("/v1/webhooks/not-an-id").await, 404).await;
    let anonymous = app.http.get(app.url("/v1/webhooks")).send().await.unwrap();
    problem(anonymous, 401).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_database_dump_does_not_reveal_webhook_secrets(db: PgPool) {
    let app = spawn(db.clone(), sandbox(1.0)).await;
    let (_, secret) = registered(&app, "http://127.0.0.1:9/hook").await;
    let raw = secret.strip_prefix("whsec_").unwrap();
    let output = std::process::Command::new("pg_dump")
        .arg("--dbname")
        .arg(crate::common::child::database_url(&db))
        .output()
        .expect("pg_dump runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump = String::from_utf8_lossy(&output.stdout);
    assert!(
        dump.contains("COPY public.webhooks"),
        "the dump holds the table"
    );
    assert!(!dump.contains(raw), "the dump reveals the secret");
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .unwrap();
    assert!(
        !dump.contains(&hex::encode(&key)),
        "the dump reveals the key bytes"
    );
    app.stop().await;
}

#[sqlx::test]
async fn an_endpoint_gets_only_the_event_types_it_subscribed_to(db: PgPool) {
    let app = spawn(db, sandbox(0.01)).await;
    let failures = Receiver::start(0).await;
    let everything = Receiver::start(0).await;
    let response = register(
        &app,
        json!({"url": failures.url(), "events": ["lookup.failed"]}),
    )
    .await;
    assert_eq!(response.status(), 201);
    registered(&app, &everything.url()).await;

    let failed = app
        .post_lookup(&json!({"email": "f+sandbox-fail@example.com"}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    app.wait_for_status(failed["id"].as_str().unwrap(), "failed", WAIT)
        .await;
    completed_lookup(&app, "ok@example.com").await;

    let all = everything.wait_for(2, WAIT).await;
    let mut types: Vec<String> = all
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(types, vec!["lookup.completed", "lookup.failed"]);
    let only = failures.wait_for(1, WAIT).await;
    assert_eq!(only[0].json()["type"], "lookup.failed");
    assert_eq!(only[0].json()["data"]["id"], failed["id"]);
    assert!(only[0].json()["data"]["error"].as_str().is_some());
    // Every event was queued at its commit; with the queue empty, nothing
    // more can reach either endpoint.
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.count("SELECT count(*) FROM webhook_sends").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "sends still queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(failures.received().len(), 1);
    assert_eq!(everything.received().len(), 2);
    app.stop().await;
}

#[sqlx::test]
async fn redirects_are_not_followed(db: PgPool) {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let app = spawn(db, sandbox(1.0)).await;
    let receiver = Receiver::start(0).await;
    let redirecting = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(307).insert_header("location", receiver.url()))
        .expect(1)
        .mount(&redirecting)
        .await;
    let (webhook_id, _) = registered(&app, &format!("{}/hook", redirecting.uri())).await;

    completed_lookup(&app, "redirect@example.com").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let listed = loop {
        let listed = attempts(&app, &webhook_id).await;
        if !listed.is_empty() {
            break listed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(listed[0]["status_code"], 307);
    assert!(listed[0]["error"].as_str().unwrap().contains("redirect"));
    assert!(receiver.received().is_empty(), "the redirect was followed");
    app.stop().await;
}

#[sqlx::test]
async fn an_endpoint_that_never_answers_delays_only_itself(db: PgPool) {
    let app = spawn(db, sandbox(0.01)).await;
    // Takes every request and never answers it (until the test ends).
    let dead = Receiver::held().await;
    let healthy = Receiver::start(0).await;
    let (dead_id, _) = registered(&app, &dead.url()).await;
    let (healthy_id, _) = registered(&app, &healthy.url()).await;

    // More events than one endpoint may have in flight.
    let bound = interests_receiver::webhooks::sender::PER_ENDPOINT as usize;
    let people = bound + 4;
    let lookups = (0..people).map(|i| {
        let app = &app;
        async move { completed_lookup(app, &format!("iso{i}@example.com")).await }
    });
    futures::future::join_all(lookups).await;

    // The healthy endpoint gets every event while each of the dead one's
    // sends is still waiting for its answer: none of them timed out (an
    // attempt is recorded only then), so none freed a slot for the others.
    healthy.wait_for(people, WAIT).await;
    wait_for_attempts(&app, &healthy_id, people).await;
    assert!(
        attempts(&app, &dead_id).await.is_empty(),
        "a dead endpoint's send had to time out first"
    );
    let in_flight = dead.received().len();
    assert!(
        (1..=bound).contains(&in_flight),
        "{in_flight} sends in flight to the dead endpoint at once"
    );
    dead.release();
    app.stop().await;
}

#[sqlx::test]
async fn a_backlog_beyond_the_endpoint_limit_drains_with_no_new_event(db: PgPool) {
    // The sender's idle nap is an hour: once the one wake-up of a burst is
    // spent, only sends that end can start the next ones. (They did not:
    // a backlog went out 16 sends per nap, 63 a second.)
    let mut settings = sandbox(0.01);
    settings.options.webhook_idle_nap = Duration::from_secs(3600);
    let app = spawn(db, settings).await;
    let healthy = Receiver::start(0).await;
    registered(&app, &healthy.url()).await;
    let lookup = completed_lookup(&app, "backlog@example.com").await;
    healthy.wait_for(1, WAIT).await;
    let bound = interests_receiver::webhooks::sender::PER_ENDPOINT as usize;
    let burst = 3 * bound;

    // One statement, so one sequencer batch and one wake-up for them all.
    sqlx::query(
        "INSERT INTO event_inbox (lookup_id, type, profile_id) \
         SELECT id, 'lookup.completed', NULL FROM lookups, generate_series(1, $2) \
         WHERE id = $1::text::uuid",
    )
    .bind(lookup["id"].as_str().unwrap())
    .bind(burst as i32)
    .execute(&app.db)
    .await
    .unwrap();

    healthy.wait_for(1 + burst, WAIT).await;
    app.stop().await;
}

/// Waits until every event is placed and every webhook send is done.
async fn wait_until_sent(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let waiting = app
            .count(
                "SELECT (SELECT count(*) FROM event_inbox) + (SELECT count(*) FROM webhook_sends)",
            )
            .await;
        if waiting == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{waiting} events or sends waiting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test]
async fn an_endpoint_subscribed_to_profile_changed_gets_it_signed_and_only_when_something_changed(
    db: PgPool,
) {
    let app = spawn(db, sandbox(0.01)).await;
    let changes = Receiver::start(0).await;
    let defaults = Receiver::start(0).await;
    let response = register(
        &app,
        json!({"url": changes.url(), "events": ["profile.changed"]}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let secret = response.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let (default_id, _) = registered(&app, &defaults.url()).await;
    let listed = app.get_json(&format!("/v1/webhooks/{default_id}")).await;
    assert!(
        !listed["events"]
            .as_array()
            .unwrap()
            .contains(&json!("profile.changed")),
        "not subscribed by default: {listed}"
    );

    // A person whose refresh changes nothing, and one whose refresh does.
    for email in ["same@example.com", "moves+sandbox-changing@example.com"] {
        completed_lookup(&app, email).await;
        let refresh = app
            .post_lookup(&json!({"email": email, "refresh": true}))
            .await;
        assert_eq!(refresh.status(), 202);
        let id = refresh.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.wait_for_status(&id, "completed", WAIT).await;
    }
    let refreshed = app.get_json("/v1/lookups?status=completed&limit=10").await["items"][0].clone();

    let got = changes.wait_for(1, WAIT).await;
    verify(&secret, &got[0]).expect("signed like every other webhook");
    let body = got[0].json();
    assert_eq!(body["type"], "profile.changed");
    assert!(body["timestamp"].as_str().is_some());
    let data = &body["data"];
    assert_eq!(data["lookup_id"], refreshed["id"]);
    assert_eq!(data["profile_id"], refreshed["profile"]["id"]);
    let versions = app
        .get_json(&format!(
            "/v1/profiles/{}/versions",
            data["profile_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        data["previous_profile_id"],
        versions["items"][1]["profile_id"]
    );
    let change = &app
        .get_json(&format!(
            "/v1/profiles/{}/changes",
            data["profile_id"].as_str().unwrap()
        ))
        .await["items"][0];
    for field in ["added", "removed", "following_count"] {
        assert_eq!(data[field], change[field], "{field} as in /changes");
    }

    // Everything is sent: the unchanged refresh sent nothing to `changes`,
    // and the default endpoint got the four completions only.
    wait_until_sent(&app).await;
    assert_eq!(changes.received().len(), 1);
    let types: HashSet<String> = defaults
        .received()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, HashSet::from(["lookup.completed".to_owned()]));
    assert_eq!(defaults.received().len(), 4);
    app.stop().await;
}

#[sqlx::test]
async fn webhook_sends_go_on_while_requests_hold_every_connection(db: PgPool) {
    // The sender has a pool of its own: a burst of requests that takes
    // every connection of the service's pool does not stop the sends (and
    // the sends never take the requests' connections).
    let app = spawn(db, sandbox(0.01)).await;
    let receiver = Receiver::start(1).await;
    let (webhook_id, _) = registered(&app, &receiver.url()).await;
    completed_lookup(&app, "pool@example.com").await;
    wait_for_attempts(&app, &webhook_id, 1).await;

    // Every connection of the service's pool that its long-lived tasks do
    // not hold already, held by the test: acquiring more waits.
    let max = app.db.options().get_max_connections() as usize;
    let mut held = Vec::new();
    while let Ok(connection) = tokio::time::timeout(Duration::from_secs(1), app.db.acquire()).await
    {
        held.push(connection.unwrap());
        assert!(held.len() <= max);
    }
    assert_eq!(app.db.num_idle(), 0);
    assert_eq!(app.db.size() as usize, max);

    // The retry (due 50 ms after the first failure) is made and recorded.
    receiver.wait_for(2, WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_attempts")
            .fetch_one(&mut *held[0])
            .await
            .unwrap();
        if recorded == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{recorded} attempts recorded while requests held every connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    app.stop().await;
}
