//! Submits and polls: authentication, validation, progression, results,
//! the submit- and poll-time hard cases, and the rate limit.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::Value;

use super::*;
use crate::sandbox::{Sandbox, SandboxConfig};

#[tokio::test]
async fn missing_or_wrong_credentials_answer_401_with_their_own_codes() {
    let sandbox = sandbox(0.01);
    let body = Some(r#"{"email":"ann@example.com"}"#);
    let cases = [
        (None, Some(SECRET), "missing_api_key"),
        (Some(KEY), None, "missing_api_secret"),
        (Some("wrong"), Some(SECRET), "invalid_api_key"),
        (Some(KEY), Some("wrong"), "invalid_api_secret"),
    ];
    for (key, secret, code) in cases {
        let answer = call_as(
            &sandbox,
            Method::POST,
            "/person/interests",
            body,
            key,
            secret,
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.code(), code);
        assert_eq!(answer.body["success"], false);
        assert!(answer.body["timestamp"].is_string());
        assert!(answer.headers.contains_key("x-ratelimit-limit"));
    }
    let poll = call_as(
        &sandbox,
        Method::GET,
        "/person/interests?request_id=x",
        None,
        None,
        None,
    )
    .await;
    assert_eq!(poll.code(), "missing_api_key");
    assert_eq!(sandbox.stats().submits_refused, 4);
    assert_eq!(sandbox.stats().submits_accepted, 0);
}

#[tokio::test]
async fn a_submit_without_a_lookup_identifier_or_with_a_non_string_field_is_400() {
    let sandbox = sandbox(0.01);
    for body in [r#"{}"#, r#"{"company":"Acme"}"#, r#"{"email":7}"#, "nope"] {
        let answer = submit(&sandbox, body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.code(), "invalid_parameters");
    }
    assert!(sandbox.jobs().is_empty());
}

#[tokio::test]
async fn an_accepted_submit_answers_202_queued_with_a_provider_shaped_request_id() {
    let sandbox = sandbox(0.01);
    let answer = submit(
        &sandbox,
        r#"{"name":"Ann Lee","company":"Acme","unknown":[1]}"#,
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.body["success"], true);
    assert_eq!(answer.body["data"]["status"], "queued");
    let id = answer.body["data"]["request_id"].as_str().unwrap_or("");
    let parts: Vec<&str> = id.split('_').collect();
    assert_eq!(parts.len(), 3, "{id}");
    assert!(parts[0].len() == 32 && parts[0].chars().all(|c| c.is_ascii_hexdigit()));
    assert!(parts[1].parse::<i64>().is_ok());
    assert!(parts[2].len() == 4 && parts[2].parse::<u32>().is_ok());
    for header in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
    ] {
        assert!(answer.headers.contains_key(header), "{header}");
    }
    let jobs = sandbox.jobs();
    assert_eq!(jobs[0].subject.name.as_deref(), Some("Ann Lee"));
    assert_eq!(jobs[0].subject.company.as_deref(), Some("Acme"));
}

#[tokio::test]
async fn a_job_is_queued_then_processing_then_completed_and_charged_5_credits() {
    // Processing after 50 ms, completed after 150 ms.
    let sandbox = sandbox(0.05);
    let id = submit_ok(&sandbox, r#"{"email":"ann@example.com"}"#).await;
    let first = poll(&sandbox, &id).await;
    assert_eq!(first.body["data"]["status"], "queued");
    assert_eq!(first.body["data"]["completed"], false);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        poll(&sandbox, &id).await.body["data"]["status"],
        "processing"
    );
    let done = poll_until_done(&sandbox, &id).await;
    let data = &done.body["data"];
    assert_eq!(data["status"], "completed");
    assert_eq!(data["completed"], true);
    assert_eq!(data["request_id"], id.as_str());
    assert!(data["result"]["core_profile"]["archetypes"].is_array());
    let completed_on = data["completed_on"].as_str().unwrap_or("");
    assert!(
        completed_on.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(completed_on).is_ok()
    );
    let stats = sandbox.stats();
    assert_eq!((stats.credits_charged, stats.submits_accepted), (5, 1));
    assert!(stats.polls >= 3);
    assert_eq!(sandbox.jobs()[0].credits, 5);
}

#[tokio::test]
async fn the_same_identifiers_always_give_the_same_result() {
    let sandbox = sandbox(0.001);
    let a = submit_ok(&sandbox, r#"{"email":"Ann@Example.com","name":"Ann"}"#).await;
    let b = submit_ok(&sandbox, r#"{"email":"ann@example.com","name":"ANN"}"#).await;
    let c = submit_ok(&sandbox, r#"{"email":"bob@example.com"}"#).await;
    let result =
        |answer: Answer| serde_json::to_string(&answer.body["data"]["result"]).unwrap_or_default();
    let ra = result(poll_until_done(&sandbox, &a).await);
    let rb = result(poll_until_done(&sandbox, &b).await);
    let rc = result(poll_until_done(&sandbox, &c).await);
    assert!(ra.len() > 100);
    assert_eq!(ra, rb);
    assert_ne!(ra, rc);
}

#[tokio::test]
async fn an_unknown_request_id_answers_404_and_a_missing_one_400() {
    let sandbox = sandbox(0.01);
    let answer = poll(&sandbox, "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4_1717000000_4271").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.code(), "request_not_found");
    let answer = call_as(
        &sandbox,
        Method::GET,
        "/person/interests",
        None,
        Some(KEY),
        Some(SECRET),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn no_match_completes_with_an_empty_result_and_costs_nothing() {
    let sandbox = sandbox(0.001);
    let id = submit_ok(&sandbox, r#"{"email":"ann+sandbox-no-match@example.com"}"#).await;
    let data = poll_until_done(&sandbox, &id).await.body["data"].clone();
    assert_eq!(data["status"], "completed");
    assert_eq!(data["result"], serde_json::json!({}));
    assert_eq!(sandbox.stats().credits_charged, 0);
}

#[tokio::test]
async fn fail_ends_failed_with_an_error_and_costs_nothing() {
    let sandbox = sandbox(0.001);
    let id = submit_ok(&sandbox, r#"{"name":"Ann sandbox-FAIL"}"#).await;
    let data = poll_until_done(&sandbox, &id).await.body["data"].clone();
    assert_eq!(data["status"], "failed");
    assert_eq!(data["completed"], false);
    assert!(data["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(data.get("result").is_none());
    assert_eq!(sandbox.stats().credits_charged, 0);
}

#[tokio::test]
async fn expire_forgets_the_finished_job_so_polls_answer_404() {
    let sandbox = sandbox(0.001);
    let id = submit_ok(&sandbox, r#"{"email":"ann+sandbox-expire@example.com"}"#).await;
    let answer = poll_until_done(&sandbox, &id).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.code(), "request_not_found");
    assert_eq!(sandbox.jobs()[0].status, "expired");
}

#[tokio::test]
async fn slow_jobs_take_ten_times_longer() {
    // A normal job would be done after 30 ms; a slow one after 300 ms.
    let sandbox = sandbox(0.01);
    let id = submit_ok(&sandbox, r#"{"email":"ann+sandbox-slow@example.com"}"#).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        poll(&sandbox, &id).await.body["data"]["status"],
        "processing"
    );
    assert_eq!(
        poll_until_done(&sandbox, &id).await.body["data"]["status"],
        "completed"
    );
}

#[tokio::test]
async fn poll_error_answers_500_twice_then_normally() {
    let sandbox = sandbox(0.01);
    let id = submit_ok(
        &sandbox,
        r#"{"email":"ann+sandbox-poll-error@example.com"}"#,
    )
    .await;
    for _ in 0..2 {
        let answer = poll(&sandbox, &id).await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.code(), "internal_error");
    }
    assert_eq!(poll(&sandbox, &id).await.status, StatusCode::OK);
}

#[tokio::test]
async fn server_error_and_unavailable_refuse_only_the_first_submit_of_a_person() {
    let sandbox = sandbox(0.01);
    for (body, status, code) in [
        (
            r#"{"email":"a+sandbox-server-error@x.com"}"#,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
        ),
        (
            r#"{"email":"a+sandbox-unavailable@x.com"}"#,
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
        ),
        (
            r#"{"email":"a+sandbox-rate-limit@x.com"}"#,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
        ),
    ] {
        let first = submit(&sandbox, body).await;
        assert_eq!((first.status, first.code()), (status, code));
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(first.headers["retry-after"], "1");
        }
        assert_eq!(
            submit(&sandbox, &body.replace("a+", "A+")).await.status,
            StatusCode::ACCEPTED
        );
    }
    let stats = sandbox.stats();
    assert_eq!(
        (
            stats.submits_refused,
            stats.submits_accepted,
            stats.rate_limited
        ),
        (3, 3, 1)
    );
}

#[tokio::test]
async fn over_the_limit_a_request_answers_429_with_retry_after_and_is_not_a_job() {
    let sandbox = Sandbox::new(SandboxConfig {
        api_key: KEY.into(),
        api_secret: SECRET.into(),
        time_scale: 0.01,
        rate_per_minute: 2,
        rate_per_hour: 100,
    });
    let first = submit(&sandbox, r#"{"email":"ann@example.com"}"#).await;
    assert_eq!(first.headers["x-ratelimit-limit"], "2");
    assert_eq!(first.headers["x-ratelimit-remaining"], "1");
    assert_eq!(first.headers["ratelimit-remaining"], "1");
    let id = first.body["data"]["request_id"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert_eq!(
        poll(&sandbox, &id).await.headers["x-ratelimit-remaining"],
        "0"
    );
    let refused = submit(&sandbox, r#"{"email":"bob@example.com"}"#).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "rate_limit_exceeded");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(refused.headers["x-ratelimit-remaining"], "0");
    let reset: u64 = refused.headers["x-ratelimit-reset"]
        .to_str()
        .unwrap_or("")
        .parse()
        .unwrap_or(0);
    assert!(reset >= u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0));
    assert_eq!(sandbox.jobs().len(), 1);
    assert_eq!(sandbox.stats().rate_limited, 1);
    // The scaled minute is 0.6 s: a slot frees up within it.
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert_eq!(
        submit(&sandbox, r#"{"email":"bob@example.com"}"#)
            .await
            .status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn submit_timeout_accepts_the_job_but_holds_the_answer_back() {
    let sandbox = sandbox(0.01);
    let held = tokio::time::timeout(
        Duration::from_millis(100),
        submit(
            &sandbox,
            r#"{"email":"ann+sandbox-submit-timeout@example.com"}"#,
        ),
    )
    .await;
    assert!(held.is_err(), "the answer came within 100 ms");
    let jobs = sandbox.jobs();
    assert_eq!(jobs.len(), 1);
    let data = poll_until_done(&sandbox, &jobs[0].request_id).await.body["data"].clone();
    assert_eq!(data["status"], "completed");
}

#[tokio::test]
async fn introspection_needs_no_credentials() {
    let sandbox = sandbox(0.01);
    submit_ok(&sandbox, r#"{"phone":"+15550100"}"#).await;
    let stats = call_as(&sandbox, Method::GET, "/_sandbox/stats", None, None, None).await;
    assert_eq!(stats.body["submits_accepted"], 1);
    let jobs = call_as(&sandbox, Method::GET, "/_sandbox/jobs", None, None, None).await;
    let job: &Value = &jobs.body[0];
    assert_eq!(job["subject"]["phone"], "+15550100");
    assert_eq!(job["subject"]["email"], Value::Null);
    assert_eq!(job["callback_url"], Value::Null);
    assert_eq!(job["status"], "queued");
}

#[tokio::test]
async fn serve_stops_when_the_token_is_cancelled() {
    let sandbox = sandbox(0.01);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(sandbox.clone().serve(listener, token.clone()));
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/person/interests"))
        .header("x-api-key", KEY)
        .header("x-api-secret", SECRET)
        .json(&serde_json::json!({"email": "ann+sandbox-slow@example.com"}))
        .send()
        .await
        .expect("submit over TCP");
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    token.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(1), server).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))));
}
