//! A batch's `Idempotency-Key` is claimed by a committed row, not by a
//! transaction held while the items run: keyed batches beyond the pool's
//! size all finish, two batches with one key run once, and a claim left by
//! a run that died runs out.

use crate::common::{TOKEN, TestApp, error_fields, spawn_with_accepting_upstream};
use serde_json::{Value, json};
use sqlx::PgPool;

async fn post_batch(app: &TestApp, body: &Value, key: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/lookups/batch"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn items(prefix: &str, n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"email": format!("{prefix}-{i}@example.com")}))
        .collect();
    json!({ "items": items })
}

fn statuses(answer: &Value) -> Vec<u64> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect()
}

fn lookup_ids(answer: &Value) -> Vec<String> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["lookup"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test]
async fn keyed_batches_beyond_the_pool_size_all_finish(db: PgPool) {
    // The test pool has 10 connections. A keyed batch that held one for its
    // whole run while its items needed others left 16 of them waiting on
    // each other until the deadline.
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let batches = (0..16).map(|b| {
        let app = &app;
        async move {
            let response =
                post_batch(app, &items(&format!("pool{b}"), 8), &format!("key-{b}")).await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(status, 200, "batch {b}: {body}");
            body
        }
    });
    let answers = futures_util::future::join_all(batches).await;
    for answer in &answers {
        assert_eq!(statuses(answer), [202; 8], "{answer}");
    }
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, 16 * 8);
    assert_eq!(
        app.count("SELECT count(*) FROM batch_idempotency_keys WHERE answers IS NOT NULL")
            .await,
        16
    );
}

#[sqlx::test]
async fn two_batches_with_one_key_at_once_run_once_and_answer_alike(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let body = items("twice", 20);
    let (first, second) = tokio::join!(
        post_batch(&app, &body, "same-key"),
        post_batch(&app, &body, "same-key")
    );
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    let (first, second): (Value, Value) =
        (first.json().await.unwrap(), second.json().await.unwrap());
    assert_eq!(lookup_ids(&first), lookup_ids(&second));
    // One of them ran the items (a second run would have found them in
    // flight and answered 200), the other replayed its answers.
    assert_eq!(statuses(&first), [202; 20], "{first}");
    assert_eq!(statuses(&second), [202; 20], "{second}");
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, 20);

    // The same key with another body is refused, naming the header.
    let refused = post_batch(&app, &items("other", 2), "same-key").await;
    assert_eq!(refused.status(), 422);
    assert_eq!(
        error_fields(&refused.json().await.unwrap()),
        ["Idempotency-Key"]
    );
}

#[sqlx::test]
async fn a_claim_left_by_a_run_that_died_runs_out_and_the_key_runs_again(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let body = items("abandoned", 3);
    let hash = interests_receiver::token::sha256_hex(body.to_string().as_bytes());
    // A claim whose run died: no answers, lease run out.
    sqlx::query(
        "INSERT INTO batch_idempotency_keys (key, request_sha256, answers, running_until) \
         VALUES ('died', $1, NULL, now() - interval '1 second')",
    )
    .bind(&hash)
    .execute(&app.db)
    .await
    .unwrap();
    let response = post_batch(&app, &body, "died").await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(statuses(&answer), [202; 3], "{answer}");
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, 3);

    // A claim still running with another body is a conflict at once.
    sqlx::query(
        "INSERT INTO batch_idempotency_keys (key, request_sha256, answers, running_until) \
         VALUES ('running', 'another body', NULL, now() + interval '1 minute')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let refused = post_batch(&app, &body, "running").await;
    assert_eq!(refused.status(), 422);
}
