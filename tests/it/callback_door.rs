//! The callback door under attack and odd content (issue "harden the open
//! door", contract section 6): forged deliveries cost no database write and
//! are counted; the token is checked before the body is read; legacy stored
//! tokens still work; NUL characters and redacted sections never reach the
//! database; a giant request_id is refused.

use std::time::Duration;

use crate::common::{
    self, Settings, TestApp, completed_with, spawn, spawn_with_accepting_upstream, submitted_lookup,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

/// Rows in every table a delivery could touch.
async fn footprint(app: &TestApp) -> (i64, i64, i64) {
    (
        app.count("SELECT count(*) FROM deliveries").await,
        app.count("SELECT count(*) FROM profiles").await,
        app.count("SELECT count(*) FROM lookups WHERE status = 'completed'")
            .await,
    )
}

#[sqlx::test]
async fn forged_callbacks_write_nothing_and_are_counted(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "door@example.com"})).await;
    let before = footprint(&app).await;
    let (base, _) = callback.rsplit_once('/').unwrap();
    let body = completed_with(&request_id, json!({"core_profile": {"archetypes": ["x"]}}));

    for n in 0..150 {
        let forged = match n % 3 {
            0 => format!("{base}/{}", "A".repeat(43)),
            1 => app.url(&format!("/callbacks/{}/{}", Uuid::new_v4(), "B".repeat(43))),
            _ => app.url("/callbacks/not-a-uuid/token"),
        };
        let response = app.post_callback(&forged, &body).await;
        assert_eq!(response.status(), 404);
    }

    assert_eq!(footprint(&app).await, before);
    assert_eq!(app.lookup(&id).await["status"], "queued");
    let stats = app.get_json("/v1/stats").await;
    assert_eq!(stats["deliveries"]["forged"], 150, "{stats}");
    // The authentic delivery still goes through.
    let done = common::complete_by_callback(&app, &id, &callback, &body).await;
    assert_eq!(done["profile"]["received_via"], "callback");
    app.stop().await;
}

#[sqlx::test]
async fn a_forged_callback_is_refused_before_its_body_is_read(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (_, _, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "big@example.com"})).await;
    let (base, _) = callback.rsplit_once('/').unwrap();
    let huge = vec![b'x'; 4 * 1024 * 1024];

    let forged = app
        .http
        .post(format!("{base}/{}", "C".repeat(43)))
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    // 404, not 413: the size of a body nobody reads does not matter.
    assert_eq!(forged.status(), 404);
    let authentic = app.http.post(&callback).body(huge).send().await.unwrap();
    assert_eq!(authentic.status(), 413);

    // A body that never comes: a door that read the body before the token
    // would wait for it forever; this one answers 404 with the body unsent.
    let path = url::Url::parse(&format!("{base}/{}", "D".repeat(43)))
        .unwrap()
        .path()
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 500000\r\n\r\n{{\"request_id\": ",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(WAIT, stream.read_exact(&mut answer))
        .await
        .expect("answered while the body was still unsent")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 404");
    app.stop().await;
}

#[sqlx::test]
async fn a_lookup_with_a_stored_legacy_token_still_accepts_its_callback(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db.clone()).await;
    let (id, request_id, _) =
        submitted_lookup(&app, &upstream, json!({"email": "old@example.com"})).await;
    app.stop().await;
    // A lookup from before tokens were derived: its token is in the row.
    let legacy = "legacy-token-made-before-the-upgrade-0123456";
    sqlx::query("UPDATE lookups SET callback_token = $1 WHERE id = $2::uuid")
        .bind(legacy)
        .bind(&id)
        .execute(&db)
        .await
        .unwrap();
    let app = spawn(
        db,
        Settings::with_upstream_url(upstream.uri().parse().unwrap()),
    )
    .await;

    let url = app.url(&format!("/callbacks/{id}/{legacy}"));
    let done = common::complete_by_callback(
        &app,
        &id,
        &url,
        &completed_with(&request_id, json!({"core_profile": {}})),
    )
    .await;

    assert_eq!(done["status"], "completed");
    let token: Option<String> =
        sqlx::query_scalar("SELECT callback_token FROM lookups WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(token, None, "a finished lookup keeps no token");
    app.stop().await;
}

#[sqlx::test]
async fn a_paid_result_holding_nul_characters_is_stored_with_them_replaced(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "nul@example.com"})).await;
    let result = json!({"core_profile": {"archetypes": ["Run\u{0}ner"], "supporting_accounts": []},
        "odd\u{0}key": {"x": "\u{0}"}});

    let done =
        common::complete_by_callback(&app, &id, &callback, &completed_with(&request_id, result))
            .await;

    assert_eq!(done["credits_charged"], 5);
    let stored = &done["profile"]["result"];
    assert_eq!(stored["core_profile"]["archetypes"][0], "Run\u{FFFD}ner");
    assert_eq!(stored["odd\u{FFFD}key"]["x"], "\u{FFFD}");
    app.stop().await;
}

#[sqlx::test]
async fn a_request_id_over_256_characters_is_refused_with_400(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, _, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "long@example.com"})).await;
    let before = app.lookup(&id).await;

    for request_id in ["r".repeat(10_000), "a\u{0}b".to_owned()] {
        let response = app
            .post_callback(&callback, &completed_with(&request_id, json!({})))
            .await;
        common::problem(response, 400).await;
    }
    assert_eq!(app.lookup(&id).await, before);
    app.stop().await;
}

#[sqlx::test]
async fn redacted_sections_are_never_written(db: PgPool) {
    let mut settings = Settings::sandbox();
    settings.redact_sections = vec!["psychographics".into(), "core_profile".into()];
    let app = spawn(db, settings).await;
    let id = app.create(&json!({"email": "private@example.com"})).await;

    let done = app.wait_for_status(&id, "completed", WAIT).await;

    let result = done["profile"]["result"].as_object().unwrap();
    assert!(!result.is_empty(), "other sections are kept: {result:?}");
    assert!(!result.contains_key("psychographics") && !result.contains_key("core_profile"));
    let leaked: i64 = app
        .count(
            "SELECT count(*) FROM deliveries WHERE body::text LIKE '%psychographics%' \
             OR body::text LIKE '%core_profile%'",
        )
        .await;
    assert_eq!(leaked, 0);
    let stored: i64 = app
        .count("SELECT count(*) FROM deliveries WHERE body IS NOT NULL")
        .await;
    assert!(stored >= 1);
    app.stop().await;
}

#[sqlx::test]
async fn a_result_whose_only_section_is_redacted_still_counts_the_credits_upstream_charged(
    db: PgPool,
) {
    let upstream = common::accepting_upstream().await;
    let mut settings = Settings::with_upstream_url(upstream.uri().parse().unwrap());
    settings.redact_sections = vec!["psychographics".into()];
    let app = spawn(db, settings).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "redacted@example.com"})).await;
    let delivery = completed_with(&request_id, json!({"psychographics": {"values": ["x"]}}));

    let done = common::complete_by_callback(&app, &id, &callback, &delivery).await;

    assert_eq!(done["profile"]["result"], json!({}));
    assert_eq!(
        done["credits_charged"], 5,
        "upstream charged for the section"
    );
    assert_eq!(app.get_json("/v1/stats").await["credits"]["today"], 5);
    app.stop().await;
}

#[sqlx::test]
async fn sandbox_lookups_and_profiles_say_they_are_synthetic(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let id = app.create(&json!({"email": "synth@example.com"})).await;
    let done = app.wait_for_status(&id, "completed", WAIT).await;
    assert_eq!(done["synthetic"], true);
    let profile: Value = app
        .get_json(&format!(
            "/v1/profiles/{}",
            done["profile"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(profile["synthetic"], true);
    let stats = app.get_json("/v1/stats").await;
    assert_eq!(stats["sandbox"], true);
    assert_eq!(stats["synthetic_lookups"], 1);
    app.stop().await;
}

#[sqlx::test]
async fn real_mode_refuses_a_database_holding_sandbox_results_and_vice_versa(db: PgPool) {
    let app = spawn(db.clone(), Settings::sandbox()).await;
    app.create(&json!({"email": "mixed@example.com"})).await;
    app.stop().await;

    let any_port = "127.0.0.1:0".parse().unwrap();
    let real = Settings::with_upstream_url("http://127.0.0.1:9".parse().unwrap());
    let config = common::config_for(any_port, &real);
    let err = interests_receiver::app::Application::build_with_pool(
        config,
        db.clone(),
        Default::default(),
    )
    .await
    .err()
    .expect("real mode must refuse synthetic data");
    assert!(format!("{err:#}").contains("synthetic"), "{err:#}");

    sqlx::query("UPDATE lookups SET synthetic = false")
        .execute(&db)
        .await
        .unwrap();
    let config = common::config_for(any_port, &Settings::sandbox());
    let err = interests_receiver::app::Application::build_with_pool(config, db, Default::default())
        .await
        .err()
        .expect("sandbox mode must refuse real data");
    assert!(format!("{err:#}").contains("real lookups"), "{err:#}");
}

#[sqlx::test]
async fn a_polled_result_holding_nul_characters_is_stored_with_them_replaced(db: PgPool) {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let upstream = MockServer::start().await;
    let request_id = common::new_request_id();
    Mock::given(method("POST"))
        .and(path("/person/interests"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({
            "success": true, "data": {"request_id": request_id, "status": "queued"}})))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/person/interests"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completed_with(
            &request_id,
            json!({"brand_affinities": [{"category": "x\u{0}", "brands": ["Ni\u{0}ke"]}]}),
        )))
        .mount(&upstream)
        .await;
    let mut settings = Settings::with_upstream_url(upstream.uri().parse().unwrap());
    settings.callbacks = false;
    settings.poll_after = Duration::from_secs(1);
    let app = spawn(db, settings).await;

    let id = app
        .create(&json!({"email": "polled-nul@example.com"}))
        .await;
    let done = app.wait_for_status(&id, "completed", WAIT).await;

    assert_eq!(done["profile"]["received_via"], "poll");
    assert_eq!(
        done["profile"]["result"]["brand_affinities"][0]["brands"][0],
        "Ni\u{FFFD}ke"
    );
    app.stop().await;
}
