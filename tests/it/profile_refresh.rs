//! `POST /v1/profiles/refresh` (issue 18): a refresh (a new paid lookup,
//! `refresh: true`) for each person whose newest profile matches the filters
//! and is older than `older_than`; a dry run says the same and writes
//! nothing.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{
    Settings, TOKEN, TestApp, complete_by_callback, completed_for, error_fields, problem, spawn,
    spawn_with_accepting_upstream, submitted_lookup,
};

const WAIT: Duration = Duration::from_secs(20);

async fn refresh(app: &TestApp, body: Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/profiles/refresh"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn answered(app: &TestApp, body: Value, status: u16) -> Value {
    let response = refresh(app, body).await;
    assert_eq!(response.status(), status);
    response.json().await.unwrap()
}

async fn completed(app: &TestApp, email: &str) -> Value {
    let id = app.create(&json!({"email": email})).await;
    app.wait_for_status(&id, "completed", WAIT).await
}

/// Rows of every table a refresh could write. Events count once whether
/// still in the inbox or already placed: the sequencer moves them from one
/// to the other in one transaction at any moment (an event of the
/// completions above, moved between two counts, once failed this test),
/// so both are read in one statement, one snapshot.
async fn rows(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in ["lookups", "lookup_identities", "profiles", "audit_log"] {
        counts.push(app.count(&format!("SELECT count(*) FROM {table}")).await);
    }
    counts.push(
        app.count("SELECT (SELECT count(*) FROM event_inbox) + (SELECT count(*) FROM events)")
            .await,
    );
    counts
}

async fn wait_until_finished(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while app
        .count("SELECT count(*) FROM lookups WHERE status IN ('pending', 'queued', 'processing')")
        .await
        > 0
    {
        assert!(tokio::time::Instant::now() < deadline, "lookups unfinished");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[sqlx::test]
async fn a_dry_run_writes_nothing_and_the_run_spends_what_it_estimated(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let ann = completed(&app, "ann+sandbox-changing@example.com").await;
    let bob = completed(&app, "bob@example.com").await;
    let charged_before = app.sandbox_json("stats").await["credits_charged"]
        .as_u64()
        .unwrap();

    let before = rows(&app).await;
    let dry = answered(&app, json!({"filters": {}, "dry_run": true}), 200).await;
    assert_eq!(
        dry,
        json!({"matched": 2, "queued": 0, "credits_at_most": 10})
    );
    assert_eq!(rows(&app).await, before, "a dry run writes nothing");

    let run = answered(&app, json!({"filters": {}}), 202).await;
    assert_eq!(
        run,
        json!({"matched": 2, "queued": 2, "credits_at_most": 10})
    );
    wait_until_finished(&app).await;
    let charged = app.sandbox_json("stats").await["credits_charged"]
        .as_u64()
        .unwrap();
    assert_eq!(charged - charged_before, 10, "spent what the dry run said");

    // Each refresh is a new version of its person, marked as a refresh.
    let versions = app
        .get_json(&format!(
            "/v1/profiles/{}/versions",
            ann["profile"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);

    // With the cut-off at the oldest of the new versions, nobody's newest
    // profile completed before it: nobody matches.
    let mut newest = Vec::new();
    for person in [&ann, &bob] {
        let id = person["profile"]["id"].as_str().unwrap();
        let versions = app.get_json(&format!("/v1/profiles/{id}/versions")).await;
        newest.push(
            versions["items"][0]["completed_on"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let cutoff = newest.iter().min().unwrap();
    let none = answered(&app, json!({"filters": {}, "older_than": cutoff}), 202).await;
    assert_eq!(
        none,
        json!({"matched": 0, "queued": 0, "credits_at_most": 0})
    );
    app.stop().await;
}

#[sqlx::test]
async fn filters_select_people_as_the_profile_search_does(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let ann = completed(&app, "ann@example.com").await;
    completed(&app, "bob@example.com").await;
    let brand = ann["profile"]["result"]["brand_affinities"][0]["brands"][0]
        .as_str()
        .unwrap()
        .to_uppercase();
    let searched = app
        .get_json(&format!("/v1/profiles?brand={}", urlencoding(&brand)))
        .await["items"]
        .as_array()
        .unwrap()
        .len() as u64;

    let by_email = answered(
        &app,
        json!({"filters": {"email": "ANN@Example.com"}, "dry_run": true}),
        200,
    )
    .await;
    assert_eq!(by_email["matched"], 1);
    let by_brand = answered(
        &app,
        json!({"filters": {"brand": brand}, "dry_run": true}),
        200,
    )
    .await;
    assert_eq!(by_brand["matched"], searched);
    let nobody = answered(
        &app,
        json!({"filters": {"interest": "no such interest at all"}}),
        202,
    )
    .await;
    assert_eq!(
        nobody,
        json!({"matched": 0, "queued": 0, "credits_at_most": 0})
    );
    app.stop().await;
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[sqlx::test]
async fn a_person_with_a_lookup_in_flight_is_matched_but_not_queued_again(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, rid, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "cy@example.com"})).await;
    complete_by_callback(&app, &id, &callback, &completed_for(&rid)).await;
    // A refresh goes out and stays in flight (no callback comes).
    submitted_lookup(
        &app,
        &upstream,
        json!({"email": "cy@example.com", "refresh": true}),
    )
    .await;

    let dry = answered(&app, json!({"filters": {}, "dry_run": true}), 200).await;
    assert_eq!(
        dry,
        json!({"matched": 1, "queued": 0, "credits_at_most": 0})
    );
    let lookups = app.count("SELECT count(*) FROM lookups").await;
    let run = answered(&app, json!({"filters": {}}), 202).await;
    assert_eq!(
        run,
        json!({"matched": 1, "queued": 0, "credits_at_most": 0})
    );
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, lookups);
    app.stop().await;
}

#[sqlx::test]
async fn the_refresh_budget_caps_the_estimate_and_the_run_alike_apart_from_new_lookups(db: PgPool) {
    let mut settings = Settings::sandbox();
    settings.refresh_credits_daily = Some(5);
    settings.credit_budget_daily = Some(10);
    let app = spawn(db, settings).await;
    // New lookups spend their own budget (10 of 10) ...
    completed(&app, "dee@example.com").await;
    completed(&app, "eve@example.com").await;
    // ... and refreshes theirs: one fits in 5 credits.
    let dry = answered(&app, json!({"filters": {}, "dry_run": true}), 200).await;
    assert_eq!(
        dry,
        json!({"matched": 2, "queued": 0, "credits_at_most": 5})
    );
    let run = answered(&app, json!({"filters": {}}), 202).await;
    assert_eq!(
        run,
        json!({"matched": 2, "queued": 1, "credits_at_most": 5})
    );
    wait_until_finished(&app).await;
    let again = answered(&app, json!({"filters": {}}), 202).await;
    assert_eq!(again["queued"], 0, "the rest wait for the next day");
    app.stop().await;
}

#[sqlx::test]
async fn bad_bodies_are_422_naming_each_field(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    for (body, fields) in [
        (json!({}), vec!["filters"]),
        (json!({"filters": []}), vec!["filters"]),
        (
            json!({"filters": {"colour": "blue"}}),
            vec!["filters.colour"],
        ),
        (
            json!({"filters": {"email": "not-an-email"}}),
            vec!["filters.email"],
        ),
        (json!({"filters": {"brand": 5}}), vec!["filters.brand"]),
        (
            json!({"filters": {}, "older_than": "yesterday", "dry_run": "yes", "x": 1}),
            vec!["dry_run", "older_than", "x"],
        ),
    ] {
        let mut named = error_fields(&problem(refresh(&app, body.clone()).await, 422).await);
        named.sort();
        assert_eq!(named, fields, "{body}");
    }
    let not_json = app
        .http
        .post(app.url("/v1/profiles/refresh"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    problem(not_json, 400).await;
    app.stop().await;
}

/// Waits until `n` lookups exist, failing after `WAIT`.
async fn wait_for_lookups(app: &TestApp, n: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.count("SELECT count(*) FROM lookups").await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {n} lookups"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test]
async fn the_schedule_refreshes_stale_profiles_oldest_first_within_its_budget(db: PgPool) {
    let app = spawn(db.clone(), Settings::sandbox()).await;
    let old = completed(&app, "old+sandbox-changing@example.com").await;
    let older = completed(&app, "older@example.com").await;
    let fresh = completed(&app, "fresh@example.com").await;
    app.stop().await;
    // Ages: `older` 3 days, `old` 2 days, `fresh` just now.
    for (lookup, days) in [(&older, 3), (&old, 2)] {
        sqlx::query(
            "UPDATE profiles SET completed_on = now() - make_interval(days => $1), \
               created_at = now() - make_interval(days => $1) WHERE lookup_id = $2::uuid",
        )
        .bind(days)
        .bind(lookup["id"].as_str().unwrap())
        .execute(&db)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE lookups SET created_at = now() - interval '3 days' WHERE id <> $1::uuid")
        .bind(fresh["id"].as_str().unwrap())
        .execute(&db)
        .await
        .unwrap();

    // Refresh after a day, budget for one refresh a day.
    let mut settings = Settings::sandbox();
    settings.refresh_after = Some(Duration::from_secs(86_400));
    settings.refresh_credits_daily = Some(5);
    let app = spawn(db, settings).await;
    wait_for_lookups(&app, 4).await;
    wait_until_finished(&app).await;
    let refreshed: Vec<(String, bool)> =
        sqlx::query_as("SELECT email, refresh FROM lookups ORDER BY created_at DESC LIMIT 1")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        refreshed,
        [("older@example.com".to_owned(), true)],
        "oldest first"
    );
    // The budget is spent: an on-demand refresh queues nothing more today,
    // and says so before it spends anything.
    let dry = answered(&app, json!({"filters": {}, "dry_run": true}), 200).await;
    assert_eq!(
        dry,
        json!({"matched": 3, "queued": 0, "credits_at_most": 0})
    );
    let run = answered(&app, json!({"filters": {}}), 202).await;
    assert_eq!(run["queued"], 0);
    // New lookups do not spend from the refresh budget.
    completed(&app, "new@example.com").await;
    app.stop().await;
}

#[sqlx::test]
async fn a_suppressed_person_is_matched_but_never_refreshed(db: PgPool) {
    use interests_receiver::secrets::ServiceSecret;
    use interests_receiver::subject::{identity, normalise_email};
    let app = spawn(db, Settings::sandbox()).await;
    completed(&app, "gone@example.com").await;
    completed(&app, "here@example.com").await;
    // Suppressed after the profile was stored (as by another replica's
    // erasure racing this one, or a suppression by another identifier).
    let person = identity("email", &normalise_email("gone@example.com").unwrap());
    let hash = ServiceSecret::new(crate::common::TEST_SECRET, None).identity_hash(&person);
    sqlx::query("INSERT INTO suppressed_identities (identity) VALUES ($1)")
        .bind(hash)
        .execute(&app.db)
        .await
        .unwrap();

    let dry = answered(&app, json!({"filters": {}, "dry_run": true}), 200).await;
    assert_eq!(
        dry,
        json!({"matched": 2, "queued": 0, "credits_at_most": 5})
    );
    let run = answered(&app, json!({"filters": {}}), 202).await;
    assert_eq!(
        run,
        json!({"matched": 2, "queued": 1, "credits_at_most": 5})
    );
    let refreshed: Vec<String> =
        sqlx::query_scalar("SELECT email FROM lookups WHERE refresh ORDER BY created_at")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(refreshed, ["here@example.com"]);
    app.stop().await;
}
