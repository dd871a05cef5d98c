//! The public door under abuse (issue "harden the open door"): slow and
//! idle connections are bounded and closed, made-up methods add no metrics
//! series, bad bytes in any input answer 4xx problems naming the field,
//! oversized request lines and headers are problems too, and client
//! request ids are kept only when short and plain.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{self, TOKEN, TestApp, spawn_with_accepting_upstream, submitted_lookup};
use interests_receiver::http::server::IDLE_TIMEOUT;
use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits until the peer closes `stream` (read gives EOF or an error);
/// `false` if it is still open at `deadline`.
async fn closed_by(stream: &mut TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a response (e.g. 408) before the close
            Err(_) => return false,
        }
    }
}

#[sqlx::test]
async fn slow_and_idle_connections_neither_block_service_nor_stay_open(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    let (id, request_id, callback) =
        submitted_lookup(&app, &upstream, json!({"email": "slow@example.com"})).await;

    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(app.addr).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // A keep-alive connection that made one request, then went quiet.
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(kept.read(&mut buf).await.unwrap() > 0);

    // Service goes on meanwhile.
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let done =
        common::complete_by_callback(&app, &id, &callback, &common::completed_for(&request_id))
            .await;
    assert_eq!(done["status"], "completed");
    for s in &mut slow {
        let _ = s.write_all(b"a").await; // a trickle does not extend the deadline
    }

    // Each connection is closed once its timeout ran out; the margin only
    // absorbs a busy machine (the wait ends as soon as the close is seen).
    let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT + Duration::from_secs(20);
    for (what, streams) in [("idle", &mut idle), ("slow", &mut slow)] {
        for s in streams.iter_mut() {
            assert!(
                closed_by(s, deadline).await,
                "an {what} connection is still open"
            );
        }
    }
    assert!(
        closed_by(&mut kept, deadline).await,
        "an idle keep-alive connection is still open"
    );
    app.stop().await;
}

/// Label sets of every `http_requests_total` series.
async fn request_series(app: &TestApp) -> BTreeSet<String> {
    let page = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[sqlx::test]
async fn made_up_methods_add_no_metrics_series(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let send = |method: String| {
        let (http, url) = (app.http.clone(), app.url("/healthz"));
        async move {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            http.request(method, url).send().await.unwrap().status()
        }
    };
    assert_eq!(send("FOOBAR0".into()).await, 405);
    request_series(&app).await; // the scrape's own series exists from now on
    let before = request_series(&app).await;

    for n in 1..1000 {
        send(format!("FOOBAR{n}")).await;
    }

    let after = request_series(&app).await;
    assert_eq!(after, before, "new series appeared");
    assert!(after.iter().all(|s| !s.contains("FOOBAR")), "{after:?}");
    app.stop().await;
}

#[sqlx::test]
async fn nul_characters_and_out_of_range_values_are_422_naming_the_field(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let cases = [
        ("/v1/profiles?interest=a%00b", "interest"),
        ("/v1/profiles?brand=x&brand=y", "brand"),
        ("/v1/lookups?status=%00", "status"),
        // A cursor whose time PostgreSQL could not compare.
        (
            "/v1/lookups?cursor=OTIyMzM3MjAzNjg1NDc3NTgwN3wwMTkzNWU1Mi0wMDAwLTdhYmMtOGRlZi0wMTIzNDU2Nzg5YWI",
            "cursor",
        ),
    ];
    for (path, field) in cases {
        let problem = common::problem(app.get(path).await, 422).await;
        assert_eq!(common::error_fields(&problem), vec![field], "{path}");
    }
    let nul_metadata = app
        .post_lookup(&json!({"email": "ok@example.com", "metadata": {"x": "a\u{0}b"}}))
        .await;
    let problem = common::problem(nul_metadata, 422).await;
    assert_eq!(common::error_fields(&problem), vec!["metadata"]);
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, 0);
    app.stop().await;
}

#[sqlx::test]
async fn repeated_identifiers_on_erasure_are_refused_and_erase_nothing(db: PgPool) {
    let (upstream, app) = spawn_with_accepting_upstream(db).await;
    submitted_lookup(&app, &upstream, json!({"email": "b@example.com"})).await;

    let response = app
        .http
        .delete(app.url("/v1/subjects?email=a@example.com&email=b@example.com"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();

    let problem = common::problem(response, 422).await;
    assert_eq!(common::error_fields(&problem), vec!["email"]);
    assert_eq!(app.count("SELECT count(*) FROM lookups").await, 1);
    app.stop().await;
}

#[sqlx::test]
async fn oversized_request_lines_and_headers_are_problems(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let long = app
        .http
        .get(app.url(&format!("/healthz?{}", "a".repeat(9000))))
        .send()
        .await
        .unwrap();
    let problem = common::problem(long, 414).await;
    assert_eq!(problem["type"], "uri_too_long");

    let mut many = app.http.get(app.url("/healthz"));
    for n in 0..150 {
        many = many.header(format!("x-h{n}"), "v");
    }
    let problem = common::problem(many.send().await.unwrap(), 431).await;
    assert_eq!(problem["type"], "headers_too_large");
    app.stop().await;
}

#[sqlx::test]
async fn a_client_request_id_is_kept_only_when_short_and_plain(db: PgPool) {
    let (_upstream, app) = spawn_with_accepting_upstream(db).await;
    let echo = |id: String| {
        let (http, url) = (app.http.clone(), app.url("/healthz"));
        async move {
            let r = http
                .get(url)
                .header("x-request-id", id)
                .send()
                .await
                .unwrap();
            r.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(echo("abc-123_x.y".into()).await, "abc-123_x.y");
    for bad in [
        "a".repeat(8192),
        "has space".into(),
        "a\"quote".into(),
        "x".repeat(65),
    ] {
        let got = echo(bad.clone()).await;
        assert_ne!(got, bad);
        assert!(got.len() <= 64 && !got.is_empty(), "{got}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn a_request_slower_than_the_idle_timeout_gets_an_answer_not_a_closed_connection(db: PgPool) {
    let mut settings = common::Settings::sandbox();
    settings.credit_budget_daily = Some(1_000);
    let app = common::spawn(db, settings).await;
    // The batch waits for the budget lock, held here for longer than both
    // the connection idle timeout (20 s) and the batch deadline (25 s):
    // nothing moves on the connection meanwhile.
    let mut holder = app.db.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('credit_budget', 0))")
        .execute(&mut *holder)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let response = app
        .http
        .post(app.url("/v1/lookups/batch"))
        .bearer_auth(TOKEN)
        .json(&json!({"items": [{"email": "slow-batch@example.com"}]}))
        .send()
        .await
        .expect("an answer, not a closed connection");
    let waited = started.elapsed();
    holder.rollback().await.unwrap();

    assert!(waited > IDLE_TIMEOUT, "answered after {waited:?}");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 503, "{problem}");
    app.stop().await;
}
