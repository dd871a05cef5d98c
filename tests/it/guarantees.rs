//! Guarantees the README states in "Delivery guarantees" and "Security and
//! privacy" that no other test names: each test here would fail if its
//! guarantee broke.

use std::time::Duration;

use crate::common::receiver::Receiver;
use crate::common::{
    self, Settings, TOKEN, TestApp, completed_for, spawn, spawn_with_accepting_upstream,
    submitted_lookup,
};
use serde_json::{Value, json};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(20);

/// Backends of this test's database that sit inside a transaction while
/// doing nothing: what a transaction held across an upstream call looks like.
async fn idle_in_transaction(app: &TestApp) -> i64 {
    app.count(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND state LIKE 'idle in transaction%'",
    )
    .await
}

/// Registers a webhook endpoint at `url` for the default events.
async fn register_webhook(app: &TestApp, url: &str) {
    let hook = app
        .http
        .post(app.url("/v1/webhooks"))
        .bearer_auth(TOKEN)
        .json(&json!({"url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 201);
}

#[sqlx::test]
async fn no_transaction_or_row_lock_is_held_across_an_upstream_call(db: PgPool) {
    // The submit is answered after 3 s: long enough to look while it waits.
    let upstream = common::accepting_upstream_after(Duration::from_secs(3)).await;
    let app = spawn(
        db,
        Settings::with_upstream_url(upstream.uri().parse().unwrap()),
    )
    .await;
    let id = app.create(&json!({"email": "nolock@example.com"})).await;
    common::wait_for_submits(&upstream, 1).await;

    // While the submit is on the wire: no session of the service idles in a
    // transaction, and the lookup's row can be locked by anyone at once.
    for _ in 0..10 {
        assert_eq!(idle_in_transaction(&app).await, 0);
        let mut tx = app.db.begin().await.unwrap();
        let locked: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM lookups WHERE id = $1::uuid FOR UPDATE NOWAIT")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await
                .expect("the row is not locked by the worker");
        assert!(locked.is_some());
        tx.rollback().await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let done = app
        .wait_for(&id, WAIT, |l| !l["request_id"].is_null())
        .await;
    assert_eq!(done["status"], "queued");
    app.stop().await;
}

#[sqlx::test]
async fn a_duplicate_delivery_keeps_only_the_sha256_of_its_body(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "dup@example.com"})).await;
    let body = completed_for(&request_id);
    common::complete_by_callback(&app, &id, &callback, &body).await;
    let again = app.post_callback(&callback, &body).await;
    assert!(again.status().is_success());

    let rows: Vec<(String, Option<Value>, String)> = sqlx::query_as(
        "SELECT outcome, body, body_sha256 FROM deliveries WHERE lookup_id = $1::uuid ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "applied");
    assert!(rows[0].1.is_some(), "the applied body is kept");
    assert_eq!(rows[1].0, "duplicate");
    assert!(rows[1].1.is_none(), "a duplicate keeps no body");
    assert_eq!(rows[1].2.len(), 64);
    assert_eq!(rows[1].2, rows[0].2, "same body, same SHA-256");
    app.stop().await;
}

#[sqlx::test]
async fn erasure_deletes_the_persons_events_and_pending_webhook_sends(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    // An endpoint that never answers: the person's sends stay pending.
    let receiver = Receiver::held().await;
    register_webhook(&app, &receiver.url()).await;
    let id = app.create(&json!({"email": "gone@example.com"})).await;
    let kept = app.create(&json!({"email": "kept@example.com"})).await;
    app.wait_for_status(&id, "completed", WAIT).await;
    app.wait_for_status(&kept, "completed", WAIT).await;
    let sends_of = |lookup: &str| {
        format!(
            "SELECT count(*) FROM webhook_sends s JOIN events e ON e.id = s.event_id \
             WHERE e.lookup_id = '{lookup}'"
        )
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.count(&sends_of(&id)).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no send queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let erased = app
        .http
        .delete(app.url("/v1/subjects?email=GONE@example.com"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);

    let left = |table: &str| format!("SELECT count(*) FROM {table} WHERE lookup_id = '{id}'");
    assert_eq!(app.count(&left("events")).await, 0);
    assert_eq!(app.count(&left("event_inbox")).await, 0);
    assert_eq!(app.count(&sends_of(&id)).await, 0);
    // The other person's events and sends are untouched.
    assert!(
        app.count(&format!(
            "SELECT count(*) FROM events WHERE lookup_id = '{kept}'"
        ))
        .await
            > 0
    );
    assert!(app.count(&sends_of(&kept)).await > 0);
    receiver.release();
    app.stop().await;
}

#[sqlx::test]
async fn a_database_dump_does_not_reveal_a_live_callback_token(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db.clone()).await;
    let (_, _, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "dump@example.com"})).await;
    let token = callback.rsplit('/').next().unwrap().to_owned();
    assert!(token.len() >= 22, "{callback}");

    let output = std::process::Command::new("pg_dump")
        .arg("--dbname")
        .arg(common::child::database_url(&db))
        .output()
        .expect("pg_dump runs");
    assert!(output.status.success());
    let dump = String::from_utf8_lossy(&output.stdout);
    assert!(
        dump.contains("COPY public.lookups"),
        "the dump holds the table"
    );
    assert!(
        !dump.contains(&token),
        "the dump reveals a live callback token"
    );
    app.stop().await;
}

#[sqlx::test]
async fn redacted_sections_stay_out_of_polled_results_and_webhook_payloads(db: PgPool) {
    let mut settings = Settings::sandbox();
    settings.redact_sections = vec!["core_profile".into(), "psychographics".into()];
    settings.poll_after = Duration::from_secs(1);
    let app = spawn(db, settings).await;
    let receiver = Receiver::start(0).await;
    register_webhook(&app, &receiver.url()).await;

    // No callback: only a poll finds the result.
    let id = app
        .create(&json!({"email": "quiet+sandbox-no-callback@example.com"}))
        .await;
    let done = app.wait_for_status(&id, "completed", WAIT).await;
    assert_eq!(done["profile"]["received_via"], "poll");
    let result = done["profile"]["result"].as_object().unwrap();
    assert!(!result.is_empty());
    assert!(!result.contains_key("core_profile") && !result.contains_key("psychographics"));
    // The sandbox always sends core_profile: it was there, and dropped.
    assert!(done["credits_charged"] == 5);

    let got = receiver.wait_for(1, WAIT).await;
    let payload = String::from_utf8_lossy(&got[0].body).to_string();
    assert!(payload.contains(&id), "{payload}");
    assert!(
        !payload.contains("core_profile") && !payload.contains("psychographics"),
        "a redacted section reached a webhook: {payload}"
    );
    let stored = app
        .count(
            "SELECT count(*) FROM profiles WHERE result::text LIKE '%core_profile%' \
             OR result::text LIKE '%psychographics%'",
        )
        .await;
    assert_eq!(stored, 0);
    app.stop().await;
}

/// "A worker whose lease ran out (and whose job another took over) writes
/// nothing and logs `lease lost` (metric `worker_leases_lost_total`)": the
/// job is taken over while its submit is on the wire, as a second worker's
/// claim does (a new claim id), and the first worker's answer is dropped.
#[sqlx::test]
async fn a_worker_whose_job_was_taken_over_writes_nothing_and_logs_lease_lost(db: PgPool) {
    use crate::common::child::{Child, database_url, free_port, serve_env_upstream};
    // Answered within UPSTREAM_TIMEOUT_SECS (2): the answer arrives.
    let upstream = common::accepting_upstream_after(Duration::from_millis(1500)).await;
    let port = free_port();
    let child = Child::serve(&serve_env_upstream(
        &database_url(&db),
        &upstream.uri(),
        port,
        port,
    ))
    .await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/v1/lookups", child.base))
        .bearer_auth(TOKEN)
        .json(&json!({"email": "lease-lost@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();

    // The submit is on the wire: take the job over.
    let deadline = tokio::time::Instant::now() + WAIT;
    while upstream.received_requests().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no submit upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let taken = sqlx::query(
        "UPDATE lookups SET claim_id = gen_random_uuid(), lease_until = now() + interval '1 hour' \
         WHERE id = $1 AND request_id IS NULL",
    )
    .bind(id)
    .execute(&db)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(
        taken, 1,
        "the submit's answer was written before the takeover"
    );

    child.wait_for_line("lease lost", WAIT).await;
    let (status, request_id): (String, Option<String>) =
        sqlx::query_as("SELECT status, request_id FROM lookups WHERE id = $1")
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), request_id),
        ("pending", None),
        "the worker that lost its lease wrote its outcome"
    );
    let metrics = http
        .get(format!("{}/metrics", child.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("worker_leases_lost_total{kind=\"submit\"} 1"),
        "{metrics}"
    );
}
