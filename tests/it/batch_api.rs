//! `POST /v1/lookups/batch` (contract section 5): each item answered as
//! `POST /v1/lookups` would have answered it alone, in input order; a
//! malformed envelope refused as a whole; `Idempotency-Key` for the batch.

use crate::common::{
    TOKEN, TestApp, complete_by_callback, completed_for, error_fields, problem,
    spawn_with_accepting_upstream, submits, submitted_lookup, wait_for_submits,
};
use serde_json::{Value, json};
use sqlx::PgPool;

async fn post_batch(app: &TestApp, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url("/v1/lookups/batch"))
        .bearer_auth(TOKEN)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

async fn batch_items(app: &TestApp, body: &Value, key: Option<&str>) -> Vec<Value> {
    let response = post_batch(app, body, key).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    answer["items"].as_array().unwrap().clone()
}

async fn lookup_count(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM lookups").await
}

/// No lookup is waiting for its submit or has one under way: no further
/// submit can happen (a submit is claimed only for a `pending` lookup).
async fn assert_nothing_to_submit(app: &TestApp) {
    assert_eq!(
        app.count(
            "SELECT count(*) FROM lookups WHERE status = 'pending' OR submit_started_at IS NOT NULL"
        )
        .await,
        0,
        "a lookup may still be submitted"
    );
}

#[sqlx::test]
async fn each_item_is_answered_as_it_would_be_alone_in_input_order(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let bad_email = json!({"email": "not-an-email", "name": "Ann"});
    let items = batch_items(
        &app,
        &json!({"items": [
            {"email": "ann@example.com", "metadata": {"crm_id": "1"}},
            bad_email,
            {"company": "Acme"},
            {"email": "bob@example.com", "colour": "blue"},
            {"email": "ANN@example.com"},
            {"phone": "+1 415 555 0100"},
        ]}),
        None,
    )
    .await;

    let statuses: Vec<u64> = items
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 422, 422, 422, 202, 202]);
    for (n, item) in items.iter().enumerate() {
        assert_eq!(item["index"], n, "{item}");
        assert_eq!(
            item.get("lookup").is_some(),
            item.get("problem").is_none(),
            "an item carries a lookup or a problem: {item}"
        );
    }
    assert_eq!(items[0]["lookup"]["metadata"], json!({"crm_id": "1"}));
    // The same person twice in one batch is one lookup.
    assert_eq!(items[4]["lookup"]["id"], items[0]["lookup"]["id"]);
    assert_ne!(items[5]["lookup"]["id"], items[0]["lookup"]["id"]);
    assert_eq!(lookup_count(&app).await, 2);
    assert_eq!(error_fields(&items[3]["problem"]), ["colour"]);
    assert_eq!(items[2]["problem"]["type"], "validation_error");
    assert_eq!(items[2]["problem"]["status"], 422);

    // The bad item's problem is the one POST /v1/lookups answers for it.
    let alone = problem(app.post_lookup(&bad_email).await, 422).await;
    assert_eq!(items[1]["problem"], alone);
    assert_eq!(error_fields(&alone), ["email"]);
    app.stop().await;
}

#[sqlx::test]
async fn cached_and_suppressed_people_get_200_and_409_inside_a_batch(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, rid, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "ann@example.com"})).await;
    complete_by_callback(&app, &id, &callback, &completed_for(&rid)).await;
    let erased = app
        .http
        .delete(app.url("/v1/subjects?email=gone@example.com&suppress=true"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    let submits_before = submits(&upstream).await.len();

    let items = batch_items(
        &app,
        &json!({"items": [{"email": "ann@example.com"}, {"email": "gone@example.com"}]}),
        None,
    )
    .await;

    assert_eq!(items[0]["status"], 200);
    assert_eq!(items[0]["lookup"]["id"], id);
    assert_eq!(items[0]["lookup"]["status"], "completed");
    assert_eq!(items[1]["status"], 409);
    assert_eq!(items[1]["problem"]["type"], "subject_suppressed");
    // Nothing was left to submit (rather than waiting to see no submit).
    assert_nothing_to_submit(&app).await;
    assert_eq!(submits(&upstream).await.len(), submits_before);
    app.stop().await;
}

#[sqlx::test]
async fn a_malformed_envelope_is_refused_as_a_whole_and_creates_nothing(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let good = json!({"email": "ann@example.com"});
    let too_many: Vec<Value> = (0..1001)
        .map(|n| json!({"email": format!("p{n}@example.com")}))
        .collect();
    for (body, field) in [
        (json!({}), "items"),
        (json!({"items": {"email": "ann@example.com"}}), "items"),
        (json!({"items": []}), "items"),
        (json!({"items": too_many}), "items"),
        (json!({"items": [good.clone()], "extra": 1}), "extra"),
        (json!([good.clone()]), "body"),
    ] {
        let refused = problem(post_batch(&app, &body, None).await, 422).await;
        assert_eq!(error_fields(&refused), [field], "{refused}");
    }
    let not_json = app
        .http
        .post(app.url("/v1/lookups/batch"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"items\": [")
        .send()
        .await
        .unwrap();
    problem(not_json, 400).await;
    let unauthorised = app
        .http
        .post(app.url("/v1/lookups/batch"))
        .json(&json!({"items": [good]}))
        .send()
        .await
        .unwrap();
    problem(unauthorised, 401).await;
    assert_eq!(lookup_count(&app).await, 0);
    app.stop().await;
}

#[sqlx::test]
async fn a_body_over_4_mib_is_413_naming_the_limit(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let filler = "x".repeat(5000);
    let items: Vec<Value> = (0..900)
        .map(|n| json!({"email": format!("p{n}@example.com"), "metadata": {"notes": filler}}))
        .collect();
    let refused = problem(post_batch(&app, &json!({"items": items}), None).await, 413).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("4194304"),
        "{refused}"
    );
    assert_eq!(lookup_count(&app).await, 0);
    app.stop().await;
}

#[sqlx::test]
async fn an_item_over_64_kib_is_413_on_its_own(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let big = json!({"email": "big@example.com", "metadata": {"notes": "x".repeat(70_000)}});
    let items = batch_items(
        &app,
        &json!({"items": [big, {"email": "ann@example.com"}]}),
        None,
    )
    .await;
    assert_eq!(items[0]["status"], 413);
    assert_eq!(items[0]["problem"]["type"], "payload_too_large");
    assert_eq!(items[1]["status"], 202);
    assert_eq!(lookup_count(&app).await, 1);
    app.stop().await;
}

#[sqlx::test]
async fn an_idempotency_key_replays_the_whole_batch_and_refuses_another_body(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let body = json!({"items": [
        {"email": "ann@example.com"}, {"email": "bad"}, {"email": "bob@example.com"}
    ]});

    let first = batch_items(&app, &body, Some("batch-1")).await;
    // Submitted and their answers written (the mock seeing the submits is
    // not enough: request_id is written after upstream answers).
    app.wait_until("SELECT count(*) = 2 FROM lookups WHERE request_id IS NOT NULL")
        .await;
    let again = batch_items(&app, &body, Some("batch-1")).await;

    assert_eq!(lookup_count(&app).await, 2);
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(a["status"], b["status"]);
        assert_eq!(a["lookup"]["id"], b["lookup"]["id"]);
        assert_eq!(a["problem"], b["problem"]);
    }
    // The replay shows the lookups as they are now.
    assert!(again[0]["lookup"]["request_id"].is_string(), "{}", again[0]);

    let other = json!({"items": [{"email": "carol@example.com"}]});
    let refused = problem(post_batch(&app, &other, Some("batch-1")).await, 422).await;
    assert_eq!(error_fields(&refused), ["Idempotency-Key"]);
    assert_eq!(lookup_count(&app).await, 2);
    assert_nothing_to_submit(&app).await;
    assert_eq!(submits(&upstream).await.len(), 2);
    app.stop().await;
}

#[sqlx::test]
async fn a_thousand_items_are_answered_in_one_request(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let items: Vec<Value> = (0..1000)
        .map(|n| json!({"email": format!("p{n}@example.com")}))
        .collect();
    let answers = batch_items(&app, &json!({"items": items}), None).await;
    assert_eq!(answers.len(), 1000);
    assert!(answers.iter().all(|a| a["status"] == 202));
    for (n, a) in answers.iter().enumerate() {
        assert_eq!(a["lookup"]["subject"]["email"], format!("p{n}@example.com"));
    }
    assert_eq!(lookup_count(&app).await, 1000);
    app.stop().await;
}

#[sqlx::test]
async fn batch_answers_match_the_openapi_document(db: PgPool) {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(interests_receiver::http::openapi::ApiDoc::openapi()).unwrap();
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let body = json!({"items": [{"email": "ann@example.com"}, {"email": "bad"}]});
    let answer = crate::operations::conforms(
        &doc,
        "post",
        "/v1/lookups/batch",
        post_batch(&app, &body, None).await,
    )
    .await;
    assert_eq!(answer["items"][1]["status"], 422);
    crate::operations::conforms(
        &doc,
        "post",
        "/v1/lookups/batch",
        post_batch(&app, &json!({"items": []}), None).await,
    )
    .await;
    app.stop().await;
}

#[sqlx::test]
async fn replaying_a_batch_after_one_of_its_people_was_erased_executes_nothing(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (done, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "ann@example.com"})).await;
    complete_by_callback(&app, &done, &callback, &completed_for(&request_id)).await;
    let body = json!({"items": [
        {"email": "ann@example.com", "refresh": true}, {"email": "bob@example.com"}
    ]});
    let first = batch_items(&app, &body, Some("batch-erased")).await;
    assert_eq!(first[0]["status"], 202);
    wait_for_submits(&upstream, 3).await;
    let erased = app
        .http
        .delete(app.url("/v1/subjects?email=ann@example.com"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);

    let response = post_batch(&app, &body, Some("batch-erased")).await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("ann@"),
        "the erased person is served back: {text}"
    );
    let again: Value = serde_json::from_str(&text).unwrap();
    let again = again["items"].as_array().unwrap();
    assert_eq!(again[0]["status"], 410, "{}", again[0]);
    assert_eq!(again[0]["problem"]["type"], "lookup_erased", "{}", again[0]);
    assert!(again[0].get("lookup").is_none(), "{}", again[0]);
    assert_eq!(again[1]["status"], first[1]["status"]);
    assert_eq!(again[1]["lookup"]["id"], first[1]["lookup"]["id"]);
    // Nothing was executed: no new lookup, so nothing to send upstream.
    assert_eq!(lookup_count(&app).await, 1);
    assert_eq!(submits(&upstream).await.len(), 3);
    app.stop().await;
}
