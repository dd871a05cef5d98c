//! The whole loop against the built-in simulator: submit, callback or poll,
//! stored profile, and the simulator's hard cases.

use std::time::Duration;

use crate::common::{Settings, UpstreamKind, spawn};
use serde_json::json;
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(10);

#[sqlx::test]
async fn a_lookup_completes_through_submit_and_callback(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;

    let response = app
        .post_lookup(&json!({"email": "ann@example.com", "metadata": {"crm": 7}}))
        .await;
    assert_eq!(response.status(), 202);
    let created: serde_json::Value = response.json().await.unwrap();
    assert_eq!(created["status"], "pending");
    let id = created["id"].as_str().unwrap();

    let done = app.wait_for_status(id, "completed", WAIT).await;
    assert_eq!(done["credits_charged"], 5);
    assert_eq!(done["metadata"], json!({"crm": 7}));
    assert_eq!(done["profile"]["received_via"], "callback");
    assert!(done["request_id"].as_str().unwrap().contains('_'));
    assert!(done["profile"]["result"]["core_profile"]["supporting_accounts"].is_array());
    assert!(done["submitted_at"].is_string() && done["completed_at"].is_string());

    let profile_id = done["profile"]["id"].as_str().unwrap();
    let profile = app.get_json(&format!("/v1/profiles/{profile_id}")).await;
    assert_eq!(profile["lookup_id"], id);
    assert_eq!(profile["subject"]["email"], "ann@example.com");
    assert_eq!(profile["result"], done["profile"]["result"]);
    app.stop().await;
}

#[sqlx::test]
async fn a_dropped_callback_is_found_by_polling(db: PgPool) {
    let mut settings = Settings::sandbox();
    settings.poll_after = Duration::from_secs(1);
    let app = spawn(db, settings).await;

    let created: serde_json::Value = app
        .post_lookup(&json!({"email": "bo+sandbox-no-callback@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let done = app
        .wait_for_status(created["id"].as_str().unwrap(), "completed", WAIT)
        .await;
    assert_eq!(done["profile"]["received_via"], "poll");
    assert_eq!(done["credits_charged"], 5);
    app.stop().await;
}

#[sqlx::test]
async fn a_failed_job_costs_nothing_and_says_why(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let created: serde_json::Value = app
        .post_lookup(&json!({"name": "Cy sandbox-fail"}))
        .await
        .json()
        .await
        .unwrap();
    let done = app
        .wait_for_status(created["id"].as_str().unwrap(), "failed", WAIT)
        .await;
    assert_eq!(done["credits_charged"], 0);
    assert!(done["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(done["profile"].is_null());
    app.stop().await;
}

#[sqlx::test]
async fn a_no_match_completes_with_an_empty_result_for_free(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let created: serde_json::Value = app
        .post_lookup(&json!({"email": "di+sandbox-no-match@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let done = app
        .wait_for_status(created["id"].as_str().unwrap(), "completed", WAIT)
        .await;
    assert_eq!(done["credits_charged"], 0);
    assert_eq!(done["profile"]["result"], json!({}));
    app.stop().await;
}

#[sqlx::test]
async fn a_result_upstream_forgot_expires_with_the_reason(db: PgPool) {
    let mut settings = Settings::sandbox();
    settings.poll_after = Duration::from_secs(1);
    let app = spawn(db, settings).await;
    let created: serde_json::Value = app
        .post_lookup(&json!({"email": "ed+sandbox-expire@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let done = app
        .wait_for_status(created["id"].as_str().unwrap(), "expired", WAIT)
        .await;
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("request_not_found")
    );
    app.stop().await;
}

/// Waits until the boolean `sql` holds.
async fn wait_until(db: &PgPool, sql: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !sqlx::query_scalar::<_, bool>(sql)
        .fetch_one(db)
        .await
        .unwrap()
    {
        assert!(tokio::time::Instant::now() < deadline, "never true: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test]
async fn a_callback_that_overtakes_the_submit_response_is_kept(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let created: serde_json::Value = app
        .post_lookup(&json!({"email": "fay+sandbox-callback-first@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let completed = app.wait_for(id, WAIT, |l| l["status"] == "completed").await;

    // The submit's answer has been recorded: the ledger holds the accepted
    // call (dated when its answer arrived) and the claim is cleared.
    wait_until(
        &app.db,
        &format!(
            "SELECT EXISTS (SELECT 1 FROM upstream_calls WHERE kind = 'submit' AND outcome = 'accepted') \
             AND (SELECT submit_started_at IS NULL AND lease_owner IS NULL FROM lookups WHERE id = '{id}')"
        ),
    )
    .await;
    let callback_first: bool = sqlx::query_scalar(
        "SELECT (SELECT min(received_at) FROM deliveries WHERE lookup_id = $1::uuid AND outcome = 'applied') \
              < (SELECT at FROM upstream_calls WHERE kind = 'submit' AND outcome = 'accepted')",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(
        callback_first,
        "the callback was not applied before the submit answer"
    );

    // The submit answer changed nothing an operator can see.
    let after = app.lookup(id).await;
    assert_eq!(after, completed);
    assert_eq!(after["profile"]["received_via"], "callback");
    app.stop().await;
}

/// A submit answered with an error although upstream created the job: the
/// lookup is not re-sent, and the job's own callback completes it.
async fn assert_error_after_create_is_paid_once(db: PgPool, case: &str) {
    // Real time: the job takes 3 s, longer than the first retry backoff
    // (at most 2 s), so a wrong re-send would reach upstream first.
    let mut settings = Settings::sandbox();
    settings.upstream = UpstreamKind::Sandbox { time_scale: 1.0 };
    let app = spawn(db, settings).await;
    let created: serde_json::Value = app
        .post_lookup(&json!({"email": format!("gus+sandbox-{case}@example.com")}))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();

    let done = app.wait_for_status(id, "completed", WAIT).await;
    assert_eq!(done["profile"]["received_via"], "callback");
    assert_eq!(done["credits_charged"], 5);
    let sandbox = app.sandbox.unwrap();
    let stats: serde_json::Value = reqwest::get(format!("http://{sandbox}/_sandbox/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["submits_accepted"], 1, "{stats}");
    assert_eq!(stats["credits_charged"], 5, "{stats}");
    let ambiguous: i32 =
        sqlx::query_scalar("SELECT ambiguous_submits FROM lookups WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(ambiguous, 1);
    app.stop().await;
}

#[sqlx::test]
async fn a_500_after_the_job_was_created_is_paid_once(db: PgPool) {
    assert_error_after_create_is_paid_once(db, "accepted-then-500").await;
}

#[sqlx::test]
async fn a_proxys_502_after_the_job_was_created_is_paid_once(db: PgPool) {
    assert_error_after_create_is_paid_once(db, "accepted-then-502").await;
}
