//! Paid results that arrive for a lookup that is no longer there (erased,
//! or removed by retention), contract section 6: acknowledged with 2xx so
//! upstream stops retrying, nothing of the body stored, and the credits
//! still counted in the day's spend, once per job.

use std::time::Duration;

use crate::common::{
    Settings, TOKEN, TestApp, accepting_upstream, complete_by_callback, completed_for,
    completed_with, spawn, submitted_lookup,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(10);
/// A string only the paid result carries.
const MARKER: &str = "only-in-the-erased-result";

async fn app_with_mock(db: PgPool) -> (TestApp, MockServer) {
    let server = accepting_upstream().await;
    let app = spawn(
        db,
        Settings::with_upstream_url(server.uri().parse().unwrap()),
    )
    .await;
    (app, server)
}

async fn erase(app: &TestApp, query: &str) {
    let response = app
        .http
        .delete(app.url(&format!("/v1/subjects?{query}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn credits(app: &TestApp) -> Value {
    app.get_json("/v1/stats").await["credits"].clone()
}

/// The completed fixture for `request_id`, carrying [`MARKER`].
fn marked_result(request_id: &str) -> Value {
    let mut result = completed_for(request_id)["data"]["result"].clone();
    result["future_section"] = json!({"note": MARKER});
    completed_with(request_id, result)
}

/// Rows of any table whose text form contains `needle`.
async fn rows_holding(app: &TestApp, needle: &str) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let mut holding = Vec::new();
    for table in tables {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{table}\" t WHERE t::text ILIKE $1"
        ))
        .bind(format!("%{needle}%"))
        .fetch_one(&app.db)
        .await
        .unwrap();
        if n > 0 {
            holding.push((table, n));
        }
    }
    holding
}

#[sqlx::test]
async fn a_paid_result_for_an_erased_lookup_is_acknowledged_stores_nothing_and_counts_once(
    db: PgPool,
) {
    let (app, server) = app_with_mock(db).await;
    let (_, request_id, callback) =
        submitted_lookup(&app, &server, json!({"email": "gone@example.com"})).await;
    erase(&app, "email=gone@example.com").await;

    // Upstream delivers, then retries as if the first answer was lost.
    for attempt in 0..3 {
        let response = app
            .post_callback(&callback, &marked_result(&request_id))
            .await;
        assert!(
            response.status().is_success(),
            "attempt {attempt}: {}",
            response.status()
        );
    }

    assert_eq!(rows_holding(&app, MARKER).await, []);
    assert_eq!(rows_holding(&app, &request_id).await, []);
    assert_eq!(app.count("SELECT count(*) FROM deliveries").await, 0);
    let credits = credits(&app).await;
    assert_eq!(credits["today"], 5, "{credits}");
    assert_eq!(credits["this_month"], 5, "{credits}");
    assert_eq!(credits["total"], 5, "{credits}");
    app.stop().await;
}

#[sqlx::test]
async fn erasing_a_completed_lookup_keeps_its_credits_in_the_spend_and_a_redelivery_adds_none(
    db: PgPool,
) {
    let (app, server) = app_with_mock(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &server, json!({"email": "paid@example.com"})).await;
    complete_by_callback(&app, &id, &callback, &completed_for(&request_id)).await;
    assert_eq!(credits(&app).await["today"], 5);

    erase(&app, "email=paid@example.com").await;
    let response = app
        .post_callback(&callback, &completed_for(&request_id))
        .await;

    assert!(response.status().is_success(), "{}", response.status());
    let credits = credits(&app).await;
    assert_eq!(credits["today"], 5, "{credits}");
    assert_eq!(credits["total"], 5, "{credits}");
    app.stop().await;
}

#[sqlx::test]
async fn erased_spend_still_counts_against_the_daily_budget(db: PgPool) {
    let server = accepting_upstream().await;
    let mut settings = Settings::with_upstream_url(server.uri().parse().unwrap());
    settings.credit_budget_daily = Some(5);
    let app = spawn(db, settings).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &server, json!({"email": "first@example.com"})).await;
    complete_by_callback(&app, &id, &callback, &completed_for(&request_id)).await;
    erase(&app, "email=first@example.com").await;

    let response = app
        .post_lookup(&json!({"email": "second@example.com"}))
        .await;

    assert_eq!(
        response.status(),
        429,
        "the budget was spent by the erased lookup"
    );
    app.stop().await;
}

#[sqlx::test]
async fn a_poll_that_finds_a_result_for_an_erased_lookup_counts_its_credits(db: PgPool) {
    let server = accepting_upstream().await;
    // The poll answer is slow: the erasure lands while it is on its way.
    Mock::given(method("GET"))
        .and(path("/person/interests"))
        .respond_with(|r: &wiremock::Request| {
            let request_id = r
                .url
                .query_pairs()
                .find(|(k, _)| k == "request_id")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            ResponseTemplate::new(200)
                .set_body_json(marked_result(&request_id))
                .set_delay(Duration::from_millis(1500))
        })
        .mount(&server)
        .await;
    let mut settings = Settings::with_upstream_url(server.uri().parse().unwrap());
    settings.callbacks = false;
    settings.poll_after = Duration::from_millis(100);
    let app = spawn(db, settings).await;
    let id = app.create(&json!({"email": "polled@example.com"})).await;
    app.wait_for(&id, WAIT, |l| !l["request_id"].is_null())
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .any(|r| r.method == wiremock::http::Method::GET)
    {
        assert!(tokio::time::Instant::now() < deadline, "never polled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    erase(&app, "email=polled@example.com").await;

    let deadline = tokio::time::Instant::now() + WAIT;
    while credits(&app).await["today"] != 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the polled result's credits were not counted: {}",
            credits(&app).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows_holding(&app, MARKER).await, []);
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, 0);
    app.stop().await;
}

/// `callback` (made by an earlier app) addressed to `app`.
fn readdressed(app: &TestApp, callback: &str) -> String {
    let url: url::Url = callback.parse().unwrap();
    app.url(url.path())
}

/// Waits until the lookup `id` is no longer stored.
async fn wait_until_purged(app: &TestApp, id: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.get(&format!("/v1/lookups/{id}")).await.status() != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lookup {id} was not purged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test]
async fn an_expired_lookup_is_kept_by_retention_from_when_it_expired_not_when_it_was_made(
    db: PgPool,
) {
    let server = accepting_upstream().await;
    let app = spawn(
        db.clone(),
        Settings::with_upstream_url(server.uri().parse().unwrap()),
    )
    .await;
    let (late, late_rid, late_cb) =
        submitted_lookup(&app, &server, json!({"email": "late@example.com"})).await;
    let (old, old_rid, old_cb) =
        submitted_lookup(&app, &server, json!({"email": "old@example.com"})).await;
    complete_by_callback(&app, &old, &old_cb, &completed_for(&old_rid)).await;
    app.stop().await;
    // `late` was made 41 days ago and is still running; `old` finished 40
    // days ago and is due for retention.
    sqlx::query(
        "UPDATE lookups SET created_at = now() - interval '41 days', \
           completed_at = CASE WHEN status = 'completed' THEN now() - interval '40 days' END",
    )
    .execute(&db)
    .await
    .unwrap();

    let mut settings = Settings::with_upstream_url(server.uri().parse().unwrap());
    settings.job_deadline = Duration::from_secs(35 * 86_400);
    settings.retention_profile = Some(Duration::from_secs(30 * 86_400));
    let app = spawn(db, settings).await;
    // The same maintenance tick expires `late` (past its deadline) and then
    // purges what retention allows.
    wait_until_purged(&app, &old).await;

    let expired = app.lookup(&late).await;
    assert_eq!(expired["status"], "expired", "{expired}");
    // Its paid result still arrives and completes it.
    let late_cb = readdressed(&app, &late_cb);
    let done = complete_by_callback(&app, &late, &late_cb, &completed_for(&late_rid)).await;
    assert_eq!(done["credits_charged"], 5);
    app.stop().await;
}

#[sqlx::test]
async fn a_late_result_for_a_lookup_removed_by_retention_is_acknowledged_and_counted(db: PgPool) {
    let server = accepting_upstream().await;
    let app = spawn(
        db.clone(),
        Settings::with_upstream_url(server.uri().parse().unwrap()),
    )
    .await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &server, json!({"email": "purged@example.com"})).await;
    app.stop().await;
    sqlx::query(
        "UPDATE lookups SET status = 'expired', error = 'job_deadline_exceeded', \
           created_at = now() - interval '41 days'",
    )
    .execute(&db)
    .await
    .unwrap();
    let mut settings = Settings::with_upstream_url(server.uri().parse().unwrap());
    settings.retention_profile = Some(Duration::from_secs(30 * 86_400));
    let app = spawn(db, settings).await;
    wait_until_purged(&app, &id).await;

    let response = app
        .post_callback(&readdressed(&app, &callback), &marked_result(&request_id))
        .await;

    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(rows_holding(&app, MARKER).await, []);
    assert_eq!(credits(&app).await["today"], 5);
    app.stop().await;
}

#[sqlx::test]
async fn deleting_sandbox_lookups_before_running_for_real_leaves_no_spend(db: PgPool) {
    let app = spawn(db.clone(), Settings::sandbox()).await;
    let id = app.create(&json!({"email": "synthetic@example.com"})).await;
    let done = app.wait_for_status(&id, "completed", WAIT).await;
    assert_eq!(done["credits_charged"], 5);
    app.stop().await;
    // What the refusal to start in real mode tells the operator to do.
    sqlx::query("DELETE FROM lookups WHERE synthetic")
        .execute(&db)
        .await
        .unwrap();

    let server = accepting_upstream().await;
    let app = spawn(
        db,
        Settings::with_upstream_url(server.uri().parse().unwrap()),
    )
    .await;

    let credits = credits(&app).await;
    assert_eq!(
        credits["today"], 0,
        "sandbox credits became real spend: {credits}"
    );
    assert_eq!(credits["total"], 0, "{credits}");
    app.stop().await;
}

#[sqlx::test]
async fn an_erased_lookup_still_in_flight_upstream_keeps_its_room_in_the_daily_budget(db: PgPool) {
    let server = accepting_upstream().await;
    let mut settings = Settings::with_upstream_url(server.uri().parse().unwrap());
    settings.credit_budget_daily = Some(5);
    let app = spawn(db, settings).await;
    // Accepted upstream: its result may still come, and be charged.
    submitted_lookup(&app, &server, json!({"email": "running@example.com"})).await;
    erase(&app, "email=running@example.com").await;

    let response = app.post_lookup(&json!({"email": "next@example.com"})).await;

    assert_eq!(
        response.status(),
        429,
        "the erased job may still cost 5 credits"
    );
    app.stop().await;
}

#[sqlx::test]
async fn an_unusable_delivery_for_an_erased_lookup_is_refused_and_kept_nowhere(db: PgPool) {
    let (app, server) = app_with_mock(db).await;
    let (_, request_id, callback) =
        submitted_lookup(&app, &server, json!({"email": "odd@example.com"})).await;
    erase(&app, "email=odd@example.com").await;

    let response = app
        .post_callback(
            &callback,
            &json!({"request_id": request_id, "note": MARKER}),
        )
        .await;

    assert_eq!(response.status(), 400, "a 5xx would make upstream retry");
    assert_eq!(rows_holding(&app, MARKER).await, []);
    assert_eq!(app.count("SELECT count(*) FROM deliveries").await, 0);
    app.stop().await;
}
