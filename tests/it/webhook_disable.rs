//! An endpoint whose every attempt has failed for days is disabled by the
//! sender, with a `webhook.disabled` event (on the event stream and to the
//! endpoints subscribed to it), and enabled again by PATCH. An endpoint that
//! answers again in time is not.
//!
//! "Days" are not waited for: the test moves `failing_since` back, which is
//! exactly the state days of failures leave, and makes the next retry due.

use std::time::Duration;

use crate::common::receiver::Receiver;
use crate::common::{TOKEN, TestApp, spawn};
use crate::events::SseClient;
use crate::webhooks::{completed_lookup, register, registered, sandbox, verify, wait_for_attempts};
use serde_json::{Value, json};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(20);

async fn webhook(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/webhooks/{id}")).await
}

async fn patch(app: &TestApp, id: &str, body: Value) -> Value {
    let response = app
        .http
        .patch(app.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Moves the endpoint's first failure `days` back (as if it had failed
/// since) and makes its waiting retries due now.
async fn failing_for_days(app: &TestApp, id: &str, days: i32) {
    sqlx::query(
        "UPDATE webhooks SET failing_since = now() - make_interval(days => $2) WHERE id = $1::uuid",
    )
    .bind(id)
    .bind(days)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("UPDATE webhook_sends SET next_attempt_at = now() WHERE webhook_id = $1::uuid")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
}

async fn wait_for_webhook(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let current = webhook(app, id).await;
        if done(&current) {
            return current;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook did not reach the state in {WAIT:?}: {current}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test]
async fn an_endpoint_failing_for_days_is_disabled_with_an_event_and_enabled_again_by_patch(
    db: PgPool,
) {
    // Retries at their real pace (5 s, then minutes): only the test makes
    // them due, so nothing happens behind its back.
    let app = spawn(db, sandbox(1.0)).await;
    let watcher = Receiver::start(0).await;
    let response = register(
        &app,
        json!({"url": watcher.url(), "events": ["webhook.disabled"]}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let watcher_secret = response.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let dead = Receiver::start(usize::MAX).await;
    let (dead_id, _) = registered(&app, &dead.url()).await;
    let mut stream = SseClient::connect(&app, "", None).await;

    completed_lookup(&app, "disable-1@example.com").await;
    wait_for_attempts(&app, &dead_id, 1).await;
    let failing = webhook(&app, &dead_id).await;
    assert!(failing["failing_since"].is_string(), "{failing}");
    assert_eq!(failing["disabled"], false);
    assert_eq!(failing["disabled_reason"], Value::Null);

    // A failure after days of nothing but failures disables it.
    failing_for_days(&app, &dead_id, 6).await;
    let disabled = wait_for_webhook(&app, &dead_id, |w| w["disabled"] == true).await;
    assert_eq!(disabled["disabled_reason"], "failing");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM webhook_sends WHERE webhook_id = '{dead_id}'"
        ))
        .await,
        0,
        "a disabled endpoint keeps no backlog"
    );

    // The event: signed to the endpoint subscribed to it...
    let got = watcher.wait_for(1, WAIT).await;
    verify(&watcher_secret, &got[0]).expect("a valid Standard Webhooks signature");
    let sent = got[0].json();
    assert_eq!(sent["type"], "webhook.disabled");
    assert_eq!(sent["data"]["webhook_id"], dead_id.as_str());
    assert_eq!(sent["data"]["reason"], "failing");
    assert!(sent["data"]["failing_since"].is_string(), "{sent}");
    // ...and on the event stream, after the lookup's own event.
    let announced = loop {
        let e = stream.next().await;
        if e.event == "webhook.disabled" {
            break e;
        }
        assert!(e.event.starts_with("lookup."), "unexpected {e:?}");
    };
    assert_eq!(announced.data["webhook_id"], dead_id.as_str());
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("webhook_endpoints_disabled_total 1"),
        "{metrics}"
    );

    // Disabled, it gets no sends; the others still do.
    let before = dead.received().len();
    completed_lookup(&app, "disable-2@example.com").await;
    crate::events::wait_until_placed(&app).await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM webhook_sends WHERE webhook_id = '{dead_id}'"
        ))
        .await,
        0
    );
    assert_eq!(dead.received().len(), before);

    // PATCH enables it, with its days counted afresh.
    let enabled = patch(&app, &dead_id, json!({"disabled": false})).await;
    assert_eq!(enabled["disabled"], false);
    assert_eq!(enabled["disabled_reason"], Value::Null);
    assert_eq!(enabled["failing_since"], Value::Null);
}

#[sqlx::test]
async fn an_endpoint_that_answers_again_is_not_disabled_and_an_operator_disabling_is_named(
    db: PgPool,
) {
    let app = spawn(db, sandbox(1.0)).await;
    // Fails its first attempt, then answers.
    let flaky = Receiver::start(1).await;
    let (id, _) = registered(&app, &flaky.url()).await;
    completed_lookup(&app, "flaky@example.com").await;
    wait_for_attempts(&app, &id, 1).await;
    assert!(webhook(&app, &id).await["failing_since"].is_string());

    // Failing for days, but the next attempt succeeds: it stays enabled and
    // its failures are forgotten.
    failing_for_days(&app, &id, 6).await;
    let attempts = wait_for_attempts(&app, &id, 2).await;
    assert!(
        attempts.iter().any(|a| a["status_code"] == 204),
        "{attempts:?}"
    );
    let healthy = webhook(&app, &id).await;
    assert_eq!(healthy["disabled"], false, "{healthy}");
    assert_eq!(healthy["failing_since"], Value::Null, "{healthy}");
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE type = 'webhook.disabled'")
            .await,
        0
    );

    let by_operator = patch(&app, &id, json!({"disabled": true})).await;
    assert_eq!(by_operator["disabled_reason"], "operator");
}
