//! The operator console (issue 11): sign-in for a signed session cookie, the
//! cookie on `/v1/*` with its CSRF defence, the strict CSP of the pages, the
//! credits-per-day endpoint, and the whole console driven in a real headless
//! Chromium.

mod browser;
mod webdriver;

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;

use crate::common::{READ_TOKEN, Settings, TOKEN, TestApp, problem, spawn};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Signs in with `token`; returns the `Set-Cookie` header and the session.
async fn sign_in(app: &TestApp, token: &str) -> (String, Value) {
    let response = app
        .http
        .post(app.url("/console/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    (set_cookie, response.json().await.unwrap())
}

/// `name=value` of a Set-Cookie header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn lookups_in_db(app: &TestApp) -> i64 {
    app.count("select count(*) from lookups").await
}

#[sqlx::test]
async fn signing_in_sets_a_signed_httponly_strict_cookie_that_reads_v1_without_the_token(
    db: PgPool,
) {
    let app = spawn(db, Settings::sandbox()).await;
    let (set_cookie, session) = sign_in(&app, TOKEN).await;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    assert!(
        !set_cookie.contains(TOKEN),
        "the token is never in the cookie"
    );
    assert_eq!(session["access"], "read_write");
    assert!(
        session["csrf_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 16)
    );

    let cookie = cookie_pair(&set_cookie);
    let read = app
        .http
        .get(app.url("/v1/lookups"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "the session cookie reads /v1/*");

    // A tampered cookie (another name in the payload) is not a session.
    let (name, value) = cookie.split_once('=').unwrap();
    let (_, signature) = value.split_once('.').unwrap();
    use base64::Engine;
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"n":"admin","a":"w","e":9999999999}"#);
    let forged = format!("{name}={forged_payload}.{signature}");
    let refused = app
        .http
        .get(app.url("/v1/lookups"))
        .header(COOKIE, forged)
        .send()
        .await
        .unwrap();
    problem(refused, 401).await;

    // Behind an https proxy the cookie is Secure.
    let proxied = app
        .http
        .post(app.url("/console/session"))
        .header("x-forwarded-proto", "https")
        .json(&json!({ "token": TOKEN }))
        .send()
        .await
        .unwrap();
    assert!(
        proxied.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
}

#[sqlx::test]
async fn a_wrong_token_gets_no_session(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let response = app
        .http
        .post(app.url("/console/session"))
        .json(&json!({"token": "not-a-token-0123456789"}))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get(SET_COOKIE).is_none());
    problem(response, 401).await;
    let no_field = app
        .http
        .post(app.url("/console/session"))
        .json(&json!({"password": TOKEN}))
        .send()
        .await
        .unwrap();
    let body = problem(no_field, 422).await;
    assert_eq!(crate::common::error_fields(&body), ["token"]);
}

#[sqlx::test]
async fn a_cookie_write_without_its_csrf_token_or_from_another_site_is_refused_and_changes_nothing(
    db: PgPool,
) {
    let app = spawn(db, Settings::sandbox()).await;
    let (set_cookie, session) = sign_in(&app, TOKEN).await;
    let cookie = cookie_pair(&set_cookie);
    let csrf = session["csrf_token"].as_str().unwrap();
    let body = json!({"email": "forged.write@example.com"});

    let forgeries = [
        ("no CSRF header", vec![]),
        (
            "a wrong CSRF header",
            vec![("x-csrf-token", "AAAAAAAAAAAAAAAAAAAAAA")],
        ),
        (
            "the right header from another origin",
            vec![("x-csrf-token", csrf), ("origin", "http://evil.example")],
        ),
        (
            "the right header, marked cross-site by the browser",
            vec![("x-csrf-token", csrf), ("sec-fetch-site", "cross-site")],
        ),
    ];
    for (what, headers) in forgeries {
        let mut request = app
            .http
            .post(app.url("/v1/lookups"))
            .header(COOKIE, &cookie)
            .json(&body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = problem(request.send().await.unwrap(), 403).await;
        assert_eq!(answer["type"], "csrf_refused", "{what}: {answer}");
        assert_eq!(lookups_in_db(&app).await, 0, "{what} changed state");
    }

    // Control: the same write with the session's CSRF token, same origin.
    let accepted = app
        .http
        .post(app.url("/v1/lookups"))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", csrf)
        .header("origin", app.url(""))
        .header("sec-fetch-site", "same-origin")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    assert_eq!(lookups_in_db(&app).await, 1);
}

#[sqlx::test]
async fn a_read_token_session_reads_but_cannot_write(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let (set_cookie, session) = sign_in(&app, READ_TOKEN).await;
    assert_eq!(session["access"], "read");
    let cookie = cookie_pair(&set_cookie);
    let read = app
        .http
        .get(app.url("/v1/stats"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let write = app
        .http
        .post(app.url("/v1/lookups"))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", session["csrf_token"].as_str().unwrap())
        .json(&json!({"email": "reader.write@example.com"}))
        .send()
        .await
        .unwrap();
    let answer = problem(write, 403).await;
    assert_eq!(answer["type"], "read_only_token");
    assert_eq!(lookups_in_db(&app).await, 0);
}

#[sqlx::test]
async fn console_pages_are_built_in_and_served_under_a_strict_csp_without_inline_script(
    db: PgPool,
) {
    let app = spawn(db, Settings::sandbox()).await;
    let index = app.http.get(app.url("/console/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()[CONTENT_SECURITY_POLICY], CSP);
    let html = index.text().await.unwrap();
    // Every script has a src (no inline code), no inline styles, nothing
    // from another host.
    for tag in html.split("<script").skip(1) {
        let open = tag.split('>').next().unwrap();
        assert!(open.contains("src="), "inline script: <script{open}>");
        assert!(
            tag.split('>').nth(1).unwrap().starts_with("</script"),
            "inline script body"
        );
    }
    assert!(!html.contains("style="), "inline style attribute");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external URL in the page"
    );
    for asset in [
        "app.js",
        "api.js",
        "pages.js",
        "profile.js",
        "segments.js",
        "style.css",
    ] {
        let response = app
            .http
            .get(app.url(&format!("/console/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(response.headers()[CONTENT_SECURITY_POLICY], CSP, "{asset}");
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("innerHTML") && !text.contains("eval("),
            "{asset} builds markup from strings"
        );
        assert!(
            !text.contains("localStorage") && !text.contains("sessionStorage"),
            "{asset}"
        );
    }
    let missing = app
        .http
        .get(app.url("/console/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[sqlx::test]
async fn credits_per_day_lists_thirty_days_with_todays_spending(db: PgPool) {
    let app = spawn(db, Settings::sandbox()).await;
    let created: Value = app
        .post_lookup(&json!({"email": "credits.day@example.com"}))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let done = app
        .wait_for_status(id, "completed", Duration::from_secs(30))
        .await;
    let charged = done["credits_charged"].as_i64().unwrap();

    let days = app.get_json("/v1/stats/credits").await;
    let days = days["days"].as_array().unwrap().clone();
    assert_eq!(days.len(), 30);
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(days.last().unwrap()["date"], today.as_str());
    assert_eq!(days.last().unwrap()["credits"], charged);
    assert_eq!(days.last().unwrap()["completed"], 1);
    assert!(days[..29].iter().all(|d| d["credits"] == 0));

    for bad in ["0", "367", "x"] {
        let answer = app.get(&format!("/v1/stats/credits?days={bad}")).await;
        let body = problem(answer, 422).await;
        assert_eq!(crate::common::error_fields(&body), ["days"]);
    }
    let anonymous = reqwest::get(app.url("/v1/stats/credits")).await.unwrap();
    problem(anonymous, 401).await;
}

/// SERVICE_SECRET_PREVIOUS keeps console sessions signed before a rotation
/// valid; once the previous secret is dropped, they are not.
#[sqlx::test]
async fn a_session_signed_before_a_rotation_stays_valid_with_service_secret_previous(db: PgPool) {
    const NEW: &str = "rotated-service-secret-0123456789-abcdefghij";
    let app = spawn(db.clone(), Settings::sandbox()).await;
    let (set_cookie, _) = sign_in(&app, TOKEN).await;
    let cookie = cookie_pair(&set_cookie);
    app.stop().await;
    let read_with = |previous: bool| {
        let db = db.clone();
        let cookie = cookie.clone();
        async move {
            let mut settings = Settings::sandbox();
            settings.service_secret = interests_receiver::secrets::ServiceSecret::new(
                NEW,
                previous.then(|| crate::common::TEST_SECRET.as_bytes().to_vec()),
            );
            let app = spawn(db, settings).await;
            let status = app
                .http
                .get(app.url("/v1/lookups"))
                .header(COOKIE, &cookie)
                .send()
                .await
                .unwrap()
                .status();
            app.stop().await;
            status
        }
    };
    assert_eq!(
        read_with(true).await,
        200,
        "rotated with the previous secret"
    );
    assert_eq!(read_with(false).await, 401, "the previous secret dropped");
}
