//! `/v1/lookups` over HTTP (contract section 5): the bearer token, request
//! validation, reads and lists, Idempotency-Key, in-flight dedup, the
//! profile cache and the daily credit budget. Upstream is a wiremock server
//! that accepts every submit and never calls back on its own.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{
    READ_TOKEN, Settings, TOKEN, TestApp, accepting_upstream, complete_by_callback, completed_for,
    error_fields, insert_pending_of, problem, spawn, submits, submitted_lookup,
    wait_for_lock_waiters, wait_for_submits,
};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::task::JoinSet;
use uuid::Uuid;
use wiremock::MockServer;

const WAIT: Duration = Duration::from_secs(5);

async fn app_with_mock(db: PgPool) -> (TestApp, MockServer) {
    app_with_mock_and(db, |_| {}).await
}

async fn app_with_mock_and(db: PgPool, tweak: impl FnOnce(&mut Settings)) -> (TestApp, MockServer) {
    let server = accepting_upstream().await;
    let mut settings = Settings::with_upstream_url(server.uri().parse().unwrap());
    tweak(&mut settings);
    (spawn(db, settings).await, server)
}

async fn lookup_rows(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM lookups").await
}

/// POST /v1/lookups with an Idempotency-Key.
async fn post_with_key(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/lookups"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Status and body of a response.
async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Every `/v1/*` route, each with a body that would be accepted.
fn v1_routes() -> Vec<(Method, String)> {
    let id = Uuid::new_v4();
    vec![
        (Method::POST, "/v1/lookups".into()),
        (Method::GET, "/v1/lookups".into()),
        (Method::GET, format!("/v1/lookups/{id}")),
        (Method::GET, "/v1/profiles".into()),
        (Method::GET, format!("/v1/profiles/{id}")),
        (Method::DELETE, "/v1/subjects?email=ann@example.com".into()),
        (Method::GET, "/v1/stats".into()),
    ]
}

/// Sends a request to every `/v1/*` route with `authorization` (none when
/// `None`) and asserts each is a 401 problem.
async fn assert_every_route_refuses(app: &TestApp, authorization: Option<&str>) {
    for (method, path) in v1_routes() {
        let mut request = app
            .http
            .request(method.clone(), app.url(&path))
            .json(&json!({"email": "ann@example.com"}));
        if let Some(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request.send().await.unwrap();
        let www_authenticate = response.headers().get("www-authenticate").cloned();
        let body = problem(response, 401).await;
        assert_eq!(
            body["status"], 401,
            "{method} {path} with {authorization:?}"
        );
        assert!(
            www_authenticate.is_some(),
            "{method} {path}: a 401 names its scheme in WWW-Authenticate"
        );
    }
}

#[sqlx::test]
async fn every_v1_route_answers_401_problem_without_a_token_and_changes_nothing(db: PgPool) {
    let (app, server) = app_with_mock(db).await;

    assert_every_route_refuses(&app, None).await;

    assert_eq!(lookup_rows(&app).await, 0);
    assert!(submits(&server).await.is_empty());
    app.stop().await;
}

#[sqlx::test]
async fn every_v1_route_answers_401_problem_with_a_wrong_token(db: PgPool) {
    let (app, _server) = app_with_mock(db).await;

    assert_every_route_refuses(&app, Some("Bearer not-the-test-token")).await;
    assert_every_route_refuses(&app, Some(&format!("Bearer {TOKEN}x"))).await;

    assert_eq!(lookup_rows(&app).await, 0);
    app.stop().await;
}

#[sqlx::test]
async fn every_v1_route_answers_401_problem_to_a_malformed_authorization_header(db: PgPool) {
    let (app, _server) = app_with_mock(db).await;
    let malformed = [
        TOKEN.to_owned(),
        format!("Bearer{TOKEN}"),
        format!("Token {TOKEN}"),
        format!("Basic {TOKEN}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        String::new(),
    ];

    for header in &malformed {
        assert_every_route_refuses(&app, Some(header)).await;
    }

    assert_eq!(lookup_rows(&app).await, 0);
    // The right token on the same route is let through.
    let ok = app.get("/v1/lookups").await;
    assert_eq!(ok.status(), 200);
    app.stop().await;
}

#[sqlx::test]
async fn healthz_answers_without_a_token(db: PgPool) {
    let (app, _server) = app_with_mock(db).await;

    let response = app.http.get(app.url("/healthz")).send().await.unwrap();

    assert_eq!(response.status(), 200);
    app.stop().await;
}

/// One invalid `POST /v1/lookups`.
struct Invalid {
    what: &'static str,
    body: Vec<u8>,
    key: Option<String>,
    status: u16,
    /// The field `errors` must name; `None`: any (or none, for non-422).
    field: Option<&'static str>,
}

fn invalid(what: &'static str, body: Value, status: u16, field: Option<&'static str>) -> Invalid {
    Invalid {
        what,
        body: serde_json::to_vec(&body).unwrap(),
        key: None,
        status,
        field,
    }
}

#[sqlx::test]
async fn invalid_lookup_requests_are_refused_naming_the_field_and_change_nothing(db: PgPool) {
    let (app, server) = app_with_mock(db).await;
    let ann = || json!({"email": "ann@example.com"});
    let big = "x".repeat(70 * 1024);
    let cases = vec![
        invalid(
            "no identifier, only company",
            json!({"company": "Acme"}),
            422,
            None,
        ),
        invalid("empty body object", json!({}), 422, None),
        invalid(
            "malformed email",
            json!({"email": "not-an-email"}),
            422,
            Some("email"),
        ),
        invalid(
            "email with two @",
            json!({"email": "ann@@example.com"}),
            422,
            Some("email"),
        ),
        invalid(
            "malformed phone",
            json!({"phone": "12ab"}),
            422,
            Some("phone"),
        ),
        invalid(
            "too short phone",
            json!({"phone": "123"}),
            422,
            Some("phone"),
        ),
        invalid(
            "social_media_url not http",
            json!({"social_media_url": "ftp://x.example.com/ann"}),
            422,
            Some("social_media_url"),
        ),
        invalid(
            "social_media_url not a URL",
            json!({"social_media_url": "linkedin ann"}),
            422,
            Some("social_media_url"),
        ),
        invalid(
            "malformed email next to a valid name",
            json!({"name": "Ann Lee", "email": "nope"}),
            422,
            Some("email"),
        ),
        invalid(
            "unknown field",
            json!({"email": "ann@example.com", "colour": "blue"}),
            422,
            Some("colour"),
        ),
        invalid(
            "email not a string",
            json!({"email": 5}),
            422,
            Some("email"),
        ),
        invalid(
            "refresh not a bool",
            json!({"email": "ann@example.com", "refresh": "yes"}),
            422,
            Some("refresh"),
        ),
        invalid(
            "metadata not an object",
            json!({"email": "ann@example.com", "metadata": [1]}),
            422,
            Some("metadata"),
        ),
        Invalid {
            what: "not JSON",
            body: b"{\"email\": \"ann@example.com\"".to_vec(),
            key: None,
            status: 400,
            field: None,
        },
        invalid("a JSON array", json!([ann()]), 422, None),
        invalid("a JSON string", json!("ann@example.com"), 422, None),
        invalid(
            "body over 64 KiB",
            json!({"email": "ann@example.com", "metadata": {"blob": big}}),
            413,
            None,
        ),
        Invalid {
            key: Some("k".repeat(256)),
            ..invalid(
                "Idempotency-Key too long",
                ann(),
                422,
                Some("Idempotency-Key"),
            )
        },
        Invalid {
            key: Some(String::new()),
            ..invalid("Idempotency-Key empty", ann(), 422, Some("Idempotency-Key"))
        },
    ];

    for case in &cases {
        let mut request = app
            .http
            .post(app.url("/v1/lookups"))
            .bearer_auth(TOKEN)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(case.body.clone());
        if let Some(key) = &case.key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        let body = problem(response, case.status).await;
        let fields = error_fields(&body);
        if case.status == 422 {
            assert!(!fields.is_empty(), "{}: no errors[] in {body}", case.what);
        }
        if let Some(field) = case.field {
            assert!(
                fields.iter().any(|f| f == field),
                "{}: errors should name {field}, named {fields:?}",
                case.what
            );
        }
    }

    assert_eq!(lookup_rows(&app).await, 0);
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys").await, 0);
    assert!(submits(&server).await.is_empty());
    // A valid lookup goes through after all this, and it is the only thing
    // upstream ever saw: nothing refused above was queued behind the scenes.
    submitted_lookup(&app, &server, json!({"email": "zed@example.com"})).await;
    let sent = submits(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["email"], "zed@example.com");
    app.stop().await;
}

#[sqlx::test]
async fn reading_an_unknown_or_malformed_lookup_id_is_404_problem(db: PgPool) {
    let (app, _server) = app_with_mock(db).await;
    let created: Value = app
        .post_lookup(&json!({"email": "ann@example.com"}))
        .await
        .json()
        .await
        .unwrap();

    let unknown = app.get(&format!("/v1/lookups/{}", Uuid::now_v7())).await;
    let malformed = app.get("/v1/lookups/not-a-uuid").await;

    problem(unknown, 404).await;
    problem(malformed, 404).await;
    // The created one is found: the 404s are about the ids.
    let found = app.lookup(created["id"].as_str().unwrap()).await;
    assert_eq!(found["id"], created["id"]);
    app.stop().await;
}

#[sqlx::test]
async fn listing_lookups_with_bad_parameters_is_422_naming_the_parameter(db: PgPool) {
    let (app, _server) = app_with_mock(db).await;
    let cases = [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("status=bogus", "status"),
        ("cursor=garbage", "cursor"),
    ];

    for (query, field) in cases {
        let response = app.get(&format!("/v1/lookups?{query}")).await;
        let body = problem(response, 422).await;
        assert_eq!(error_fields(&body), [field], "{query}: {body}");
    }

    for query in ["limit=1", "limit=500", "status=completed"] {
        let response = app.get(&format!("/v1/lookups?{query}")).await;
        assert_eq!(response.status(), 200, "{query}");
    }
    app.stop().await;
}

#[sqlx::test]
async fn paging_through_lookups_returns_each_exactly_once_newest_first(db: PgPool) {
    let (app, _server) = app_with_mock(db).await;
    let mut created = Vec::new();
    for n in 0..5 {
        let response = app
            .post_lookup(&json!({"email": format!("person{n}@example.com")}))
            .await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        created.push(body["id"].as_str().unwrap().to_owned());
    }

    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut path = "/v1/lookups?limit=2".to_owned();
    loop {
        let page = app.get_json(&path).await;
        let items = page["items"].as_array().unwrap();
        page_sizes.push(items.len());
        seen.extend(items.iter().map(|l| l["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/lookups?limit=2&cursor={cursor}"),
            None => {
                assert!(page["next_cursor"].is_null());
                break;
            }
        }
        assert!(page_sizes.len() < 10, "pagination does not end");
    }

    created.reverse();
    assert_eq!(seen, created, "every lookup once, newest first");
    assert_eq!(page_sizes, [2, 2, 1]);
    app.stop().await;
}

#[sqlx::test]
async fn the_status_filter_lists_only_lookups_in_that_status(db: PgPool) {
    let (app, server) = app_with_mock(db).await;
    let (done, request_id, callback_url) =
        submitted_lookup(&app, &server, json!({"email": "ann@example.com"})).await;
    let (queued_a, _, _) =
        submitted_lookup(&app, &server, json!({"email": "bob@example.com"})).await;
    let (queued_b, _, _) =
        submitted_lookup(&app, &server, json!({"email": "cy@example.com"})).await;
    complete_by_callback(&app, &done, &callback_url, &completed_for(&request_id)).await;

    let ids = |page: &Value, status: &str| -> HashSet<String> {
        let items = page["items"].as_array().unwrap();
        assert!(
            items.iter().all(|l| l["status"] == status),
            "status={status}: {page}"
        );
        items
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let completed = app.get_json("/v1/lookups?status=completed").await;
    let queued = app.get_json("/v1/lookups?status=queued").await;
    let failed = app.get_json("/v1/lookups?status=failed").await;

    assert_eq!(ids(&completed, "completed"), HashSet::from([done]));
    assert_eq!(ids(&queued, "queued"), HashSet::from([queued_a, queued_b]));
    assert!(ids(&failed, "failed").is_empty());
    app.stop().await;
}

#[sqlx::test]
async fn repeating_a_request_with_the_same_idempotency_key_returns_the_same_lookup_and_status(
    db: PgPool,
) {
    let (app, server) = app_with_mock(db).await;
    let body = json!({"email": "ann@example.com", "metadata": {"crm": 1}});

    let (first_status, first) = answer(post_with_key(&app, "order-1", &body).await).await;
    let (second_status, second) = answer(post_with_key(&app, "order-1", &body).await).await;

    assert_eq!(first_status, 202);
    assert_eq!(second_status, first_status);
    assert_eq!(second["id"], first["id"]);
    app.wait_for(first["id"].as_str().unwrap(), WAIT, |l| {
        !l["request_id"].is_null()
    })
    .await;
    assert_eq!(lookup_rows(&app).await, 1);
    assert_eq!(submits(&server).await.len(), 1);
    app.stop().await;
}

#[sqlx::test]
async fn an_idempotency_key_replays_its_first_response_where_a_plain_repeat_would_start_anew(
    db: PgPool,
) {
    // With no profile cache a plain repeat of a completed lookup is a new
    // paid one; the same Idempotency-Key must still answer the first one.
    let (app, server) = app_with_mock_and(db, |s| s.profile_cache = Duration::ZERO).await;
    let body = json!({"email": "ann@example.com"});
    let (first_status, first) = answer(post_with_key(&app, "order-2", &body).await).await;
    assert_eq!(first_status, 202);
    let id = first["id"].as_str().unwrap().to_owned();
    let submit = wait_for_submits(&server, 1).await.pop().unwrap();
    let queued = app
        .wait_for(&id, WAIT, |l| !l["request_id"].is_null())
        .await;
    let request_id = queued["request_id"].as_str().unwrap();
    complete_by_callback(
        &app,
        &id,
        submit["callback_url"].as_str().unwrap(),
        &completed_for(request_id),
    )
    .await;

    let (replay_status, replay) = answer(post_with_key(&app, "order-2", &body).await).await;

    assert_eq!(replay_status, 202);
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(lookup_rows(&app).await, 1);
    assert_eq!(submits(&server).await.len(), 1);
    app.stop().await;
}

#[sqlx::test]
async fn the_same_idempotency_key_with_a_different_body_is_422_and_creates_nothing(db: PgPool) {
    let (app, server) = app_with_mock(db).await;
    let (status, first) =
        answer(post_with_key(&app, "order-3", &json!({"email": "ann@example.com"})).await).await;
    assert_eq!(status, 202);

    let response = post_with_key(&app, "order-3", &json!({"email": "bob@example.com"})).await;

    let body = problem(response, 422).await;
    assert_eq!(error_fields(&body), ["Idempotency-Key"]);
    assert_eq!(lookup_rows(&app).await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM lookups WHERE email = 'bob@example.com'")
            .await,
        0
    );
    // Only ann was ever sent upstream.
    app.wait_for(first["id"].as_str().unwrap(), WAIT, |l| {
        !l["request_id"].is_null()
    })
    .await;
    let sent = submits(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["email"], "ann@example.com");
    app.stop().await;
}

#[sqlx::test]
async fn concurrent_requests_with_one_idempotency_key_all_get_the_same_lookup(db: PgPool) {
    let (app, server) = app_with_mock(db).await;
    let body = json!({"email": "ann@example.com"});
    let mut requests = JoinSet::new();
    for _ in 0..8 {
        let (http, url, body) = (app.http.clone(), app.url("/v1/lookups"), body.clone());
        requests.spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(TOKEN)
                .header("Idempotency-Key", "order-4")
                .json(&body)
                .send()
                .await
                .unwrap();
            answer(response).await
        });
    }

    let answers = requests.join_all().await;

    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [202; 8], "{answers:?}");
    let ids: HashSet<&str> = answers
        .iter()
        .map(|(_, l)| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(lookup_rows(&app).await, 1);
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys").await, 1);
    let id = ids.into_iter().next().unwrap();
    app.wait_for(id, WAIT, |l| !l["request_id"].is_null()).await;
    assert_eq!(submits(&server).await.len(), 1);
    app.stop().await;
}

#[sqlx::test]
async fn the_same_person_written_differently_while_in_flight_gets_the_same_lookup(db: PgPool) {
    let (app, server) = app_with_mock(db).await;

    let (first_status, first) =
        answer(app.post_lookup(&json!({"email": "Ann@Example.com"})).await).await;
    let (second_status, second) = answer(
        app.post_lookup(&json!({"email": "  ann@EXAMPLE.COM "}))
            .await,
    )
    .await;

    assert_eq!((first_status, second_status), (202, 202));
    assert_eq!(second["id"], first["id"]);
    assert_eq!(lookup_rows(&app).await, 1);
    let id = first["id"].as_str().unwrap();
    app.wait_for(id, WAIT, |l| !l["request_id"].is_null()).await;
    // A repeat once upstream accepted the job is still the same lookup.
    let (third_status, third) =
        answer(app.post_lookup(&json!({"email": "ANN@example.com"})).await).await;
    assert_eq!(third_status, 202);
    assert_eq!(third["id"], first["id"]);
    assert_eq!(lookup_rows(&app).await, 1);
    let sent = submits(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["email"], "ann@example.com");
    app.stop().await;
}

#[sqlx::test]
async fn ten_concurrent_lookups_of_one_person_make_one_lookup_and_one_submit(db: PgPool) {
    let (app, server) = app_with_mock(db).await;
    let mut requests = JoinSet::new();
    for n in 0..10 {
        let (http, url) = (app.http.clone(), app.url("/v1/lookups"));
        // The same person, written a little differently each time.
        let email = if n % 2 == 0 {
            "bo@example.com"
        } else {
            " BO@example.com"
        };
        requests.spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(TOKEN)
                .json(&json!({"email": email}))
                .send()
                .await
                .unwrap();
            answer(response).await
        });
    }

    let answers = requests.join_all().await;

    assert!(answers.iter().all(|(s, _)| *s == 202), "{answers:?}");
    let ids: HashSet<&str> = answers
        .iter()
        .map(|(_, l)| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(lookup_rows(&app).await, 1);
    let id = ids.into_iter().next().unwrap();
    app.wait_for(id, WAIT, |l| !l["request_id"].is_null()).await;
    assert_eq!(submits(&server).await.len(), 1);
    app.stop().await;
}

/// A lookup of `email` completed by callback with the completed fixture.
async fn completed_lookup(app: &TestApp, server: &MockServer, email: &str) -> Value {
    let (id, request_id, callback_url) =
        submitted_lookup(app, server, json!({"email": email})).await;
    complete_by_callback(app, &id, &callback_url, &completed_for(&request_id)).await
}

#[sqlx::test]
async fn a_repeat_lookup_of_a_completed_person_is_answered_200_from_the_cache(db: PgPool) {
    let (app, server) = app_with_mock(db).await;
    let done = completed_lookup(&app, &server, "ann@example.com").await;

    let (status, repeat) =
        answer(app.post_lookup(&json!({"email": " ANN@example.com"})).await).await;

    assert_eq!(status, 200);
    assert_eq!(repeat["id"], done["id"]);
    assert_eq!(repeat["status"], "completed");
    assert_eq!(repeat["profile"]["result"], done["profile"]["result"]);
    assert_eq!(lookup_rows(&app).await, 1);
    assert_eq!(submits(&server).await.len(), 1);
    app.stop().await;
}

#[sqlx::test]
async fn refresh_true_bypasses_the_profile_cache_with_a_new_submit(db: PgPool) {
    let (app, server) = app_with_mock(db).await;
    let done = completed_lookup(&app, &server, "ann@example.com").await;

    let (status, fresh) = answer(
        app.post_lookup(&json!({"email": "ann@example.com", "refresh": true}))
            .await,
    )
    .await;

    assert_eq!(status, 202);
    assert_ne!(fresh["id"], done["id"]);
    assert!(fresh["profile"].is_null());
    let sent = wait_for_submits(&server, 2).await;
    assert_eq!(sent[1]["email"], "ann@example.com");
    assert_eq!(lookup_rows(&app).await, 2);
    app.stop().await;
}

#[sqlx::test]
async fn with_a_zero_profile_cache_a_repeat_lookup_is_a_new_one(db: PgPool) {
    let (app, server) = app_with_mock_and(db, |s| s.profile_cache = Duration::ZERO).await;
    let done = completed_lookup(&app, &server, "ann@example.com").await;

    let (status, repeat) =
        answer(app.post_lookup(&json!({"email": "ann@example.com"})).await).await;

    assert_eq!(status, 202);
    assert_ne!(repeat["id"], done["id"]);
    wait_for_submits(&server, 2).await;
    assert_eq!(lookup_rows(&app).await, 2);
    app.stop().await;
}

#[sqlx::test]
async fn once_the_daily_credit_budget_is_committed_another_lookup_is_429(db: PgPool) {
    let (app, server) = app_with_mock_and(db, |s| s.credit_budget_daily = Some(5)).await;
    let (first, _, _) = submitted_lookup(&app, &server, json!({"email": "ann@example.com"})).await;

    let response = app.post_lookup(&json!({"email": "bob@example.com"})).await;

    let body = problem(response, 429).await;
    assert_eq!(body["type"], "credit_budget_exhausted");
    assert_eq!(lookup_rows(&app).await, 1);
    app.wait_for(&first, WAIT, |l| !l["request_id"].is_null())
        .await;
    let sent = submits(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["email"], "ann@example.com");
    app.stop().await;
}

#[sqlx::test]
async fn a_lookup_decided_under_the_budget_is_flushed_to_disk_before_it_is_answered(db: PgPool) {
    // Under a budget, the deciding transaction commits without waiting for
    // its fsync (its budget lock is released at once) and the request then
    // makes one synchronous write (`wal_flush_marks`) whose flush covers
    // it: one per answered create, made before the answer.
    let (app, _server) = app_with_mock_and(db, |s| s.credit_budget_daily = Some(1000)).await;
    let marks = "SELECT COALESCE(sum(n), 0)::bigint FROM wal_flush_marks";
    let before = app.count(marks).await;
    for i in 0..3 {
        let response = app
            .post_lookup(&json!({"email": format!("flushed{i}@example.com")}))
            .await;
        assert_eq!(response.status(), 202);
        assert_eq!(app.count(marks).await - before, i + 1);
    }
    app.stop().await;
}

#[sqlx::test]
async fn concurrent_lookups_of_different_people_do_not_overspend_the_daily_credit_budget(
    db: PgPool,
) {
    // A race shows only sometimes: several bursts of 10 concurrent lookups
    // for different people, each burst against an untouched budget of 5
    // credits; every burst must admit exactly one.
    let (app, server) = app_with_mock_and(db, |s| s.credit_budget_daily = Some(5)).await;
    for round in 0..5 {
        let mut requests = JoinSet::new();
        for n in 0..10 {
            let (http, url) = (app.http.clone(), app.url("/v1/lookups"));
            requests.spawn(async move {
                let response = http
                    .post(url)
                    .bearer_auth(TOKEN)
                    .json(&json!({"email": format!("p{round}-{n}@example.com")}))
                    .send()
                    .await
                    .unwrap();
                response.status().as_u16()
            });
        }

        let mut statuses = requests.join_all().await;

        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [202, 429, 429, 429, 429, 429, 429, 429, 429, 429],
            "round {round}: one lookup commits the whole budget, the others are refused"
        );
        assert_eq!(lookup_rows(&app).await, 1, "round {round}");
        let id: String = sqlx::query_scalar("SELECT id::text FROM lookups")
            .fetch_one(&app.db)
            .await
            .unwrap();
        app.wait_for(&id, WAIT, |l| !l["request_id"].is_null())
            .await;
        assert_eq!(submits(&server).await.len(), round + 1, "round {round}");
        // A fresh budget for the next round (as on a new day: deleted jobs
        // still running upstream hold room only on the day they went).
        fresh_budget(&app).await;
    }
    app.stop().await;
}

#[sqlx::test]
async fn a_create_waiting_on_its_own_person_holds_no_other_create_under_the_budget(db: PgPool) {
    // The budget's lock is taken last, just before the commit: a create
    // that waits on something of its own person (here: another
    // transaction's uncommitted lookup of the same person, which the
    // in-flight unique index makes it wait for) does not hold it, so the
    // creates of other people still decide. Taken earlier, the lock would
    // hold them all until that transaction ends.
    let (app, _server) = app_with_mock_and(db, |s| s.credit_budget_daily = Some(1000)).await;
    let mut other = app.db.begin().await.unwrap();
    insert_pending_of(&mut other, "held@example.com").await;
    let (http, url) = (app.http.clone(), app.url("/v1/lookups"));
    let waiting = tokio::spawn(async move {
        let response = http
            .post(url)
            .bearer_auth(TOKEN)
            .json(&json!({"email": "held@example.com"}))
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    });
    wait_for_lock_waiters(&app.db, 1).await;

    let decided = tokio::time::timeout(
        Duration::from_secs(10),
        app.post_lookup(&json!({"email": "free@example.com"})),
    )
    .await
    .expect("a create of another person waited for the held one");

    assert_eq!(decided.status(), 202);
    assert!(!waiting.is_finished());
    other.rollback().await.unwrap();
    assert_eq!(waiting.await.unwrap(), 202);
    assert_eq!(lookup_rows(&app).await, 2);
    app.stop().await;
}

/// Forgets every lookup and what erased ones may still cost.
async fn fresh_budget(app: &TestApp) {
    for table in ["lookups", "gone_lookups"] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&app.db)
            .await
            .unwrap();
    }
}

#[sqlx::test]
async fn concurrent_lookups_of_the_same_person_near_the_budget_all_get_the_same_lookup(db: PgPool) {
    // Budget room for exactly one job: every concurrent request for the
    // same person must collapse onto it (202), none be refused (429).
    let (app, server) = app_with_mock_and(db, |s| s.credit_budget_daily = Some(5)).await;
    for round in 0..5 {
        let mut requests = JoinSet::new();
        for _ in 0..10 {
            let (http, url) = (app.http.clone(), app.url("/v1/lookups"));
            requests.spawn(async move {
                let response = http
                    .post(url)
                    .bearer_auth(TOKEN)
                    .json(&json!({"email": format!("same-{round}@example.com")}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                (status, body["id"].as_str().map(str::to_owned))
            });
        }
        let answers = requests.join_all().await;
        let statuses: HashSet<u16> = answers.iter().map(|(s, _)| *s).collect();
        let ids: HashSet<_> = answers.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(statuses, HashSet::from([202]), "round {round}: {answers:?}");
        assert_eq!(ids.len(), 1, "round {round}: one lookup for all");
        let id = ids.into_iter().next().flatten().unwrap();
        app.wait_for(&id, WAIT, |l| !l["request_id"].is_null())
            .await;
        assert_eq!(submits(&server).await.len(), round + 1, "round {round}");
        fresh_budget(&app).await;
    }
    app.stop().await;
}

#[sqlx::test]
async fn a_read_token_reads_everything_and_changes_nothing(db: PgPool) {
    let (app, server) = app_with_mock(db).await;
    let id = app.create(&json!({"email": "reader@example.com"})).await;
    wait_for_submits(&server, 1).await;

    // Every operation of the OpenAPI document under /v1, by method.
    let doc = app.get_json("/openapi.json").await;
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            // Path parameters: the existing lookup's id (a profile or
            // webhook of that id does not exist: 404, which is a read too).
            let concrete = path.replace("{id}", &id).replace("{lookup_id}", &id);
            operations.push((method, concrete));
        }
    }
    assert!(operations.len() >= 20, "{operations:?}");
    // The person exists: a DELETE that went through would erase them.
    operations.push((
        Method::DELETE,
        "/v1/subjects?email=reader@example.com".into(),
    ));

    for (method, path) in &operations {
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .bearer_auth(READ_TOKEN)
            .json(&json!({"email": "someone-else@example.com"}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if method == Method::GET {
            // Read: answered as a read (a 404 for an id that names nothing,
            // a 422 for a missing parameter), never refused, never a 5xx.
            assert!(
                [200, 404, 422].contains(&status),
                "{method} {path}: {status}"
            );
        } else {
            let body = problem(response, 403).await;
            assert_eq!(body["type"], "read_only_token", "{method} {path}");
        }
    }

    // Nothing changed: still one lookup, still there, one submit.
    assert_eq!(lookup_rows(&app).await, 1);
    let read = app
        .http
        .get(app.url(&format!("/v1/lookups/{id}")))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(submits(&server).await.len(), 1);
    app.stop().await;
}

#[sqlx::test]
async fn a_wrong_method_on_a_v1_route_is_a_problem(db: PgPool) {
    let (app, _server) = app_with_mock(db).await;

    let response = app
        .http
        .put(app.url("/v1/lookups"))
        .bearer_auth(TOKEN)
        .json(&json!({"email": "ann@example.com"}))
        .send()
        .await
        .unwrap();

    problem(response, 405).await;
    app.stop().await;
}

#[sqlx::test]
async fn a_body_over_64_kib_is_413_and_the_problem_names_the_limit(db: PgPool) {
    let (app, _server) = app_with_mock(db).await;
    let big = json!({"email": "ann@example.com", "metadata": {"blob": "x".repeat(65 * 1024)}});

    let response = app.post_lookup(&big).await;

    let body = problem(response, 413).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("65536") || detail.contains("64 KiB"),
        "the detail should name the 64 KiB limit: {detail}"
    );
    assert_eq!(lookup_rows(&app).await, 0);
    app.stop().await;
}
