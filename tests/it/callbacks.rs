//! The callback receiver's guarantees (contract section 6), driven through
//! its real URL as upstream would call it.

use crate::common;

use std::time::Duration;

use crate::common::{
    Settings, accepting_upstream, completed_for, fixture, spawn, spawn_with_accepting_upstream,
    submitted_lookup,
};
use futures::future::join_all;
use serde_json::json;
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(5);

async fn profiles(app: &common::TestApp) -> i64 {
    app.count("SELECT count(*) FROM profiles").await
}

async fn deliveries(app: &common::TestApp, outcome: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE outcome = $1")
        .bind(outcome)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn repeated_deliveries_are_applied_once_and_all_acknowledged(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "ann@example.com"})).await;

    for _ in 0..3 {
        let response = app
            .post_callback(&callback, &completed_for(&request_id))
            .await;
        assert_eq!(response.status(), 200);
    }

    let lookup = app.lookup(&id).await;
    assert_eq!(lookup["status"], "completed");
    assert_eq!(lookup["credits_charged"], 5);
    assert_eq!(profiles(&app).await, 1);
    assert_eq!(deliveries(&app, "applied").await, 1);
    assert_eq!(deliveries(&app, "duplicate").await, 2);
    app.stop().await;
}

#[sqlx::test]
async fn concurrent_duplicate_deliveries_give_one_profile_and_one_status_change(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "bo@example.com"})).await;

    let body = completed_for(&request_id);
    let responses = join_all((0..12).map(|_| app.post_callback(&callback, &body))).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(profiles(&app).await, 1);
    assert_eq!(deliveries(&app, "applied").await, 1);
    assert_eq!(deliveries(&app, "duplicate").await, 11);
    assert_eq!(app.lookup(&id).await["status"], "completed");
    // One status change: one `lookup.completed` event. It was committed
    // with the change, before the 200s; wait for its place in `events`.
    let sql = format!(
        "SELECT (SELECT count(*) FROM events WHERE lookup_id = '{id}' AND type = 'lookup.completed') \
              + (SELECT count(*) FROM event_inbox WHERE lookup_id = '{id}' AND type = 'lookup.completed') \
              + 1000 * (SELECT count(*) FROM event_inbox)"
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.count(&sql).await >= 1000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events never placed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.count(&sql).await, 1);
    app.stop().await;
}

#[sqlx::test]
async fn a_wrong_token_gets_404_and_changes_nothing(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "cy@example.com"})).await;
    let before = app.lookup(&id).await;

    let (base, _token) = callback.rsplit_once('/').unwrap();
    for forged in [
        format!("{base}/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        format!("{base}/"),
        app.url(&format!(
            "/callbacks/{}/{}",
            uuid::Uuid::new_v4(),
            "x".repeat(43)
        )),
        app.url("/callbacks/not-a-uuid/token"),
    ] {
        let response = app
            .post_callback(&forged, &completed_for(&request_id))
            .await;
        assert_eq!(response.status(), 404, "{forged}");
    }

    assert_eq!(app.lookup(&id).await, before);
    assert_eq!(profiles(&app).await, 0);
    app.stop().await;
}

#[sqlx::test]
async fn a_request_id_of_another_lookup_is_refused_and_changes_nothing(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (first, _, first_callback) =
        submitted_lookup(&app, &upstream, json!({"email": "di@example.com"})).await;
    let (second, second_request_id, _) =
        submitted_lookup(&app, &upstream, json!({"email": "ed@example.com"})).await;
    let before = (app.lookup(&first).await, app.lookup(&second).await);

    let response = app
        .post_callback(&first_callback, &completed_for(&second_request_id))
        .await;

    let problem = common::problem(response, 409).await;
    assert_eq!(problem["type"], "request_id_mismatch");
    assert_eq!(
        (app.lookup(&first).await, app.lookup(&second).await),
        before
    );
    assert_eq!(profiles(&app).await, 0);
    assert_eq!(deliveries(&app, "refused").await, 1);
    app.stop().await;
}

#[sqlx::test]
async fn malformed_incomplete_and_oversized_bodies_are_refused_without_change(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "fay@example.com"})).await;
    let before = app.lookup(&id).await;

    let not_json = app
        .http
        .post(&callback)
        .header("content-type", "application/json")
        .body("{\"data\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let no_id = app
        .post_callback(
            &callback,
            &json!({"data": {"status": "completed", "result": {}}}),
        )
        .await;
    assert_eq!(no_id.status(), 400);
    let no_status = app
        .post_callback(&callback, &json!({"request_id": request_id, "result": {}}))
        .await;
    assert_eq!(no_status.status(), 400);
    let mut huge = completed_for(&request_id);
    huge["data"]["result"]["padding"] = json!("x".repeat(1024 * 1024 + 1));
    let too_big = app.post_callback(&callback, &huge).await;
    assert_eq!(too_big.status(), 413);

    assert_eq!(app.lookup(&id).await, before);
    assert_eq!(profiles(&app).await, 0);
    app.stop().await;
}

#[sqlx::test]
async fn a_stale_processing_delivery_never_moves_a_completed_lookup_back(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "gil@example.com"})).await;
    let completing = app
        .post_callback(&callback, &completed_for(&request_id))
        .await;
    assert_eq!(completing.status(), 200);
    let completed = app.lookup(&id).await;
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["profile"]["received_via"], "callback");

    let mut stale = fixture("poll-processing.json");
    stale["data"]["request_id"] = json!(request_id);
    let response = app.post_callback(&callback, &stale).await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.lookup(&id).await, completed);
    app.stop().await;
}

#[sqlx::test]
async fn a_failed_job_is_final_and_free(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "hal@example.com"})).await;
    let mut failed = fixture("failed.json");
    failed["data"]["request_id"] = json!(request_id);

    assert_eq!(app.post_callback(&callback, &failed).await.status(), 200);
    let lookup = app.lookup(&id).await;
    assert_eq!(lookup["status"], "failed");
    assert_eq!(lookup["credits_charged"], 0);
    assert_eq!(lookup["error"], "social graph could not be analyzed");

    // A completed payload after `failed` changes nothing: failed is final.
    assert_eq!(
        app.post_callback(&callback, &completed_for(&request_id))
            .await
            .status(),
        200
    );
    assert_eq!(app.lookup(&id).await, lookup);
    app.stop().await;
}

#[sqlx::test]
async fn a_no_match_result_completes_for_zero_credits(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "ivy@example.com"})).await;
    let mut no_match = fixture("completed-no-match.json");
    no_match["data"]["request_id"] = json!(request_id);

    assert_eq!(app.post_callback(&callback, &no_match).await.status(), 200);
    let lookup = app.lookup(&id).await;
    assert_eq!(lookup["status"], "completed");
    assert_eq!(lookup["credits_charged"], 0);
    assert_eq!(lookup["profile"]["result"], json!({}));
    app.stop().await;
}

#[sqlx::test]
async fn a_bare_data_body_with_unknown_sections_is_stored_verbatim(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "jo@example.com"})).await;
    let mut bare = fixture("completed-bare-data.json");
    bare["request_id"] = json!(request_id);
    bare["result"]["future_section"] = json!({"signals": [{"label": "new", "weight": 0.5}]});
    bare["result"]["core_profile"]["new_field"] = json!(["kept"]);
    bare["unexpected_top_level"] = json!(true);

    assert_eq!(app.post_callback(&callback, &bare).await.status(), 200);
    let lookup = app.lookup(&id).await;
    assert_eq!(lookup["profile"]["result"], bare["result"]);
    assert_eq!(lookup["profile"]["completed_on"], "2026-01-15T10:31:00Z");
    app.stop().await;
}

#[sqlx::test]
async fn an_authentic_late_result_turns_expired_into_completed(db: PgPool) {
    let upstream = accepting_upstream().await;
    Mock::given(method("GET"))
        .and(path("/person/interests"))
        .respond_with(ResponseTemplate::new(404).set_body_json(fixture("not-found-404.json")))
        .mount(&upstream)
        .await;
    let mut settings = Settings::with_upstream_url(upstream.uri().parse().unwrap());
    settings.poll_after = Duration::from_secs(1);
    let app = spawn(db, settings).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "kit@example.com"})).await;
    let expired = app.wait_for_status(&id, "expired", WAIT).await;
    assert!(
        expired["error"]
            .as_str()
            .unwrap()
            .contains("request_not_found")
    );

    assert_eq!(
        app.post_callback(&callback, &completed_for(&request_id))
            .await
            .status(),
        200
    );

    let lookup = app.lookup(&id).await;
    assert_eq!(lookup["status"], "completed");
    assert_eq!(lookup["credits_charged"], 5);
    assert_eq!(lookup["profile"]["received_via"], "callback");
    app.stop().await;
}

#[sqlx::test]
async fn a_delivery_the_database_cannot_take_gets_a_5xx_so_upstream_retries(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "lu@example.com"})).await;
    // Make the profiles table refuse writes, as a full or failing disk would.
    sqlx::query("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON profiles FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let response = app
        .post_callback(&callback, &completed_for(&request_id))
        .await;
    assert!(response.status().is_server_error(), "{}", response.status());
    assert_eq!(app.lookup(&id).await["status"], "queued");

    // Upstream's retry succeeds once the database takes writes again.
    sqlx::query("DROP TRIGGER refuse ON profiles")
        .execute(&app.db)
        .await
        .unwrap();
    let retry = app
        .post_callback(&callback, &completed_for(&request_id))
        .await;
    assert_eq!(retry.status(), 200);
    assert_eq!(app.lookup(&id).await["status"], "completed");
    app.stop().await;
}
