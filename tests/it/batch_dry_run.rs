//! `POST /v1/lookups/batch` with `"dry_run": true` (contract section 5):
//! what each item would do and cost, with nothing written and nothing sent
//! upstream.

use crate::common::{
    Settings, TOKEN, TestApp, accepting_upstream, complete_by_callback, completed_for,
    error_fields, problem, spawn, submits, submitted_lookup,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::MockServer;

async fn post_batch(app: &TestApp, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/lookups/batch"))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn dry_run(app: &TestApp, items: Value) -> Value {
    let response = post_batch(app, &json!({"items": items, "dry_run": true})).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Rows in every table of the schema, together: a dry run must not change it.
async fn rows_everywhere(app: &TestApp) -> i64 {
    app.count(
        "SELECT sum((xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', \
           schemaname, tablename), false, true, '')))[1]::text::bigint)::bigint \
         FROM pg_tables WHERE schemaname = 'public'",
    )
    .await
}

/// One person cached (completed), one in flight (queued), one suppressed.
async fn people_in_every_state(
    db: PgPool,
    settings: impl FnOnce(&mut Settings),
) -> (MockServer, TestApp) {
    let server = accepting_upstream().await;
    let mut s = Settings::with_upstream_url(server.uri().parse().unwrap());
    settings(&mut s);
    let app = spawn(db, s).await;
    let (id, rid, callback) =
        submitted_lookup(&app, &server, json!({"email": "cached@example.com"})).await;
    complete_by_callback(&app, &id, &callback, &completed_for(&rid)).await;
    submitted_lookup(&app, &server, json!({"email": "flying@example.com"})).await;
    let erased = app
        .http
        .delete(app.url("/v1/subjects?email=gone@example.com&suppress=true"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(erased.status().is_success(), "{}", erased.status());
    // Fold the facet counts now, so that maintenance does not change them
    // during the test.
    app.get_json("/v1/facets?field=brand").await;
    (server, app)
}

#[sqlx::test]
async fn a_dry_run_says_what_each_item_would_do_and_writes_and_sends_nothing(db: PgPool) {
    let (server, app) = people_in_every_state(db, |_| {}).await;
    let rows_before = rows_everywhere(&app).await;
    let submits_before = submits(&server).await.len();

    let answer = dry_run(
        &app,
        json!([
            {"email": "new@example.com"},
            {"email": "NEW+crm@example.com", "name": "Same Person"},
            {"email": "cached@example.com"},
            {"email": "Cached@example.com", "refresh": true},
            {"email": "flying@example.com"},
            {"email": "gone@example.com"},
            {"email": "not-an-email"},
            {"company": "Acme"},
        ]),
    )
    .await;
    // Time for a wrongly woken submitter to show itself.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    assert_eq!(answer["dry_run"], true);
    let would: Vec<&str> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["would"].as_str().unwrap())
        .collect();
    assert_eq!(
        would,
        [
            "paid",
            "in_flight",
            "cached",
            "paid",
            "in_flight",
            "suppressed",
            "invalid",
            "invalid"
        ]
    );
    for (n, item) in answer["items"].as_array().unwrap().iter().enumerate() {
        assert_eq!(item["index"], n);
        let credits = if item["would"] == "paid" { 5 } else { 0 };
        assert_eq!(item["credits"], credits, "{item}");
    }
    assert_eq!(answer["items"][5]["problem"]["type"], "subject_suppressed");
    assert_eq!(error_fields(&answer["items"][6]["problem"]), ["email"]);
    assert!(answer["items"][0].get("problem").is_none());
    assert_eq!(
        answer["totals"],
        json!({"paid": 2, "cached": 1, "in_flight": 2, "suppressed": 1, "invalid": 2,
               "credits_at_most": 10, "budget_left": null})
    );
    assert_eq!(
        rows_everywhere(&app).await,
        rows_before,
        "rows were written"
    );
    assert_eq!(submits(&server).await.len(), submits_before);
    app.stop().await;
}

#[sqlx::test]
async fn a_dry_run_tells_the_budget_left_today(db: PgPool) {
    let (_server, app) = people_in_every_state(db, |s| s.credit_budget_daily = Some(100)).await;

    let answer = dry_run(&app, json!([{"email": "new@example.com"}])).await;

    // 5 charged for the cached person, 5 held for the one in flight.
    assert_eq!(answer["totals"]["budget_left"], 90);
    assert_eq!(answer["totals"]["credits_at_most"], 5);
    app.stop().await;
}

#[sqlx::test]
async fn dry_run_must_be_a_boolean_and_false_runs_the_batch(db: PgPool) {
    let server = accepting_upstream().await;
    let app = spawn(
        db,
        Settings::with_upstream_url(server.uri().parse().unwrap()),
    )
    .await;

    let refused = post_batch(
        &app,
        &json!({"items": [{"email": "a@example.com"}], "dry_run": "yes"}),
    )
    .await;
    let real = post_batch(
        &app,
        &json!({"items": [{"email": "a@example.com"}], "dry_run": false}),
    )
    .await;

    assert_eq!(error_fields(&problem(refused, 422).await), ["dry_run"]);
    assert_eq!(real.status(), 200);
    let answer: Value = real.json().await.unwrap();
    assert_eq!(answer["items"][0]["status"], 202);
    assert!(answer.get("dry_run").is_none());
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, 1);
    app.stop().await;
}

#[sqlx::test]
async fn dry_run_answers_match_the_openapi_document(db: PgPool) {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(interests_receiver::http::openapi::ApiDoc::openapi()).unwrap();
    let (_server, app) = people_in_every_state(db, |_| {}).await;

    let answer = crate::operations::conforms(
        &doc,
        "post",
        "/v1/lookups/batch",
        post_batch(
            &app,
            &json!({"items": [{"email": "gone@example.com"}, {"email": "x"}, {"email": "n@example.com"}], "dry_run": true}),
        )
        .await,
    )
    .await;

    assert_eq!(answer["totals"]["paid"], 1);
    app.stop().await;
}
