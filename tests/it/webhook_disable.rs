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

/// An endpoint row as registration leaves it, for tests of the store alone.
async fn endpoint_row(db: &PgPool, id: uuid::Uuid) {
    sqlx::query(
        "INSERT INTO webhooks (id, url, events, secret_sealed) \
         VALUES ($1, 'https://hooks.example.com/in', '{webhook.disabled}', '\\x00')",
    )
    .bind(id)
    .execute(db)
    .await
    .unwrap();
}

#[sqlx::test]
async fn a_batch_of_attempts_leaves_each_endpoint_as_its_last_attempt_says(db: PgPool) {
    // The sender records the attempts that ended meanwhile in one
    // transaction: an endpoint's failing state follows its last attempt of
    // the batch, a failure after a success starts a new failing run, and
    // each send is finished or rescheduled as its own attempt says.
    use interests_receiver::store::webhooks::{self as store, Attempt, Next};
    interests_receiver::store::migrate(&db).await.unwrap();
    let webhook = uuid::Uuid::new_v4();
    endpoint_row(&db, webhook).await;
    let queue = |n: i64| {
        let db = db.clone();
        async move {
            sqlx::query(
                "WITH e AS (INSERT INTO events (type, data) \
                   SELECT 'webhook.disabled', '{}' FROM generate_series(1, $2) RETURNING id) \
                 INSERT INTO webhook_sends (webhook_id, event_id) SELECT $1, id FROM e",
            )
            .bind(webhook)
            .bind(n)
            .execute(&db)
            .await
            .unwrap();
        }
    };
    let owner = uuid::Uuid::new_v4();
    let lease = Duration::from_secs(60);
    let attempt = |claim: &store::Claim, ok: bool| Attempt {
        claim: claim.clone(),
        ok,
        status_code: Some(if ok { 204 } else { 500 }),
        error: None,
        duration_ms: 1,
        at: chrono::Utc::now(),
        next: if ok {
            Next::Done
        } else {
            Next::RetryAfter(Duration::from_secs(3600))
        },
    };
    let failing_since = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "SELECT failing_since FROM webhooks WHERE id = $1",
        )
        .bind(webhook)
        .fetch_one(&db)
        .await
        .unwrap()
    };
    let five_days = Duration::from_secs(5 * 86_400);
    // Every due send, in queue order.
    let claim = |db: &PgPool| {
        let db = db.clone();
        async move {
            let mut claims = store::claim_due(&db, owner, lease, 16, 16).await.unwrap();
            claims.sort_by_key(|c| c.send_id);
            claims
        }
    };
    // A fresh round: no send waiting, the endpoint failing for 3 days, `n`
    // new sends claimed.
    let failing_for_3_days_then = |n: i64| {
        let db = db.clone();
        let queue = &queue;
        async move {
            sqlx::query("DELETE FROM webhook_sends")
                .execute(&db)
                .await
                .unwrap();
            sqlx::query("UPDATE webhooks SET failing_since = now() - interval '3 days'")
                .execute(&db)
                .await
                .unwrap();
            queue(n).await;
            claim(&db).await
        }
    };

    // Failed, answered, failed: failing from this batch's last failure.
    queue(3).await;
    let claims = claim(&db).await;
    assert_eq!(claims.len(), 3);
    let batch = [
        attempt(&claims[0], false),
        attempt(&claims[1], true),
        attempt(&claims[2], false),
    ];
    let disabled = store::record_attempts(&db, owner, &batch, five_days)
        .await
        .unwrap();
    assert!(disabled.is_empty());
    assert!(failing_since().await.is_some());
    let left: Vec<(i64, i32, bool)> =
        sqlx::query_as("SELECT id, attempts, lease_owner IS NULL FROM webhook_sends ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        left,
        vec![(claims[0].send_id, 1, true), (claims[2].send_id, 1, true)],
        "the answered send is finished, the failed ones wait for their retry"
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_attempts")
            .fetch_one(&db)
            .await
            .unwrap(),
        3
    );

    // Failing for days, then failed and answered: answering now.
    let claims = failing_for_3_days_then(2).await;
    let batch = [attempt(&claims[0], false), attempt(&claims[1], true)];
    store::record_attempts(&db, owner, &batch, five_days)
        .await
        .unwrap();
    assert_eq!(failing_since().await, None);

    // Failing for 3 days, then answered and failed: a new run, from now.
    let claims = failing_for_3_days_then(2).await;
    let batch = [attempt(&claims[0], true), attempt(&claims[1], false)];
    store::record_attempts(&db, owner, &batch, five_days)
        .await
        .unwrap();
    let anew = failing_since().await.unwrap();
    assert!(
        chrono::Utc::now() - anew < chrono::Duration::minutes(1),
        "the run that began before the success goes on: {anew}"
    );

    // Failing for 3 days, failed again: the run goes on from its start,
    // and with a 2-day limit the endpoint is disabled by this batch.
    let claims = failing_for_3_days_then(1).await;
    let since = failing_since().await.unwrap();
    let disabled = store::record_attempts(
        &db,
        owner,
        &[attempt(&claims[0], false)],
        Duration::from_secs(2 * 86_400),
    )
    .await
    .unwrap();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].0, webhook);
    assert_eq!(failing_since().await, Some(since));
}

#[sqlx::test]
async fn an_endpoint_deleted_during_its_send_costs_the_other_attempts_of_the_batch_nothing(
    db: PgPool,
) {
    // Attempts are recorded in batches across endpoints; one whose endpoint
    // was deleted while it was under way (its sends and attempts go with
    // it) must not roll back the others' record, or their sends would be
    // made again.
    use interests_receiver::store::webhooks::{self as store, Attempt, Next};
    interests_receiver::store::migrate(&db).await.unwrap();
    let (kept, deleted) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for id in [kept, deleted] {
        endpoint_row(&db, id).await;
    }
    sqlx::query(
        "WITH e AS (INSERT INTO events (type, data) VALUES ('webhook.disabled', '{}') RETURNING id) \
         INSERT INTO webhook_sends (webhook_id, event_id) \
         SELECT w, e.id FROM e, unnest($1::uuid[]) AS w",
    )
    .bind(vec![kept, deleted])
    .execute(&db)
    .await
    .unwrap();
    let owner = uuid::Uuid::new_v4();
    let claims = store::claim_due(&db, owner, Duration::from_secs(60), 16, 16)
        .await
        .unwrap();
    assert_eq!(claims.len(), 2);
    sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(deleted)
        .execute(&db)
        .await
        .unwrap();

    let batch: Vec<Attempt> = claims
        .iter()
        .map(|claim| Attempt {
            claim: claim.clone(),
            ok: true,
            status_code: Some(204),
            error: None,
            duration_ms: 1,
            at: chrono::Utc::now(),
            next: Next::Done,
        })
        .collect();
    store::record_attempts(&db, owner, &batch, Duration::from_secs(86_400))
        .await
        .unwrap();

    let recorded: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT webhook_id FROM webhook_attempts")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(recorded, vec![kept]);
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_sends")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(waiting, 0, "the kept endpoint's send is finished");
}
