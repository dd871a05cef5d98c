//! Drives the simulator's router with `oneshot` and a real callback
//! receiver bound on 127.0.0.1, at a small time scale.

mod api;
mod args;
mod callbacks;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use tower::ServiceExt;

use super::{Sandbox, SandboxConfig};

pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret";

/// A sandbox with limits high enough that tests never hit them.
pub fn sandbox(time_scale: f64) -> Sandbox {
    Sandbox::new(SandboxConfig {
        api_key: KEY.into(),
        api_secret: SECRET.into(),
        time_scale,
        rate_per_minute: 100_000,
        rate_per_hour: 1_000_000,
    })
}

/// One answer, its body parsed as JSON (Null when empty).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// Sends a request with the given credentials (None: header left out).
pub async fn call_as(
    sandbox: &Sandbox,
    method: Method,
    uri: &str,
    body: Option<&str>,
    key: Option<&str>,
    secret: Option<&str>,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(secret) = secret {
        request = request.header("x-api-secret", secret);
    }
    let request = request
        .body(Body::from(body.unwrap_or("").to_owned()))
        .expect("test request");
    let response = sandbox.router().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn submit(sandbox: &Sandbox, body: &str) -> Answer {
    call_as(
        sandbox,
        Method::POST,
        "/person/interests",
        Some(body),
        Some(KEY),
        Some(SECRET),
    )
    .await
}

pub async fn poll(sandbox: &Sandbox, request_id: &str) -> Answer {
    let uri = format!("/person/interests?request_id={request_id}");
    call_as(sandbox, Method::GET, &uri, None, Some(KEY), Some(SECRET)).await
}

/// Submits and returns the request_id of a 202.
pub async fn submit_ok(sandbox: &Sandbox, body: &str) -> String {
    let answer = submit(sandbox, body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    answer.body["data"]["request_id"]
        .as_str()
        .expect("request_id")
        .to_owned()
}

/// Polls until the job leaves queued/processing; the final answer.
pub async fn poll_until_done(sandbox: &Sandbox, request_id: &str) -> Answer {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let answer = poll(sandbox, request_id).await;
        let status = answer.body["data"]["status"].as_str().unwrap_or("");
        if !matches!(status, "queued" | "processing") {
            return answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "job never finished");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (up to 2 s) until `done` holds.
pub async fn eventually<F, Fut>(mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A real HTTP receiver collecting callback bodies; answers the queued
/// statuses first, then 200.
#[derive(Clone, Default)]
pub struct Receiver {
    pub bodies: Arc<Mutex<Vec<Value>>>,
    answers: Arc<Mutex<VecDeque<StatusCode>>>,
}

impl Receiver {
    /// Binds 127.0.0.1:0; returns the receiver and its callback URL.
    pub async fn start(answers: &[StatusCode]) -> (Self, String) {
        let receiver = Receiver {
            bodies: Arc::default(),
            answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
        };
        let app = Router::new()
            .route("/callback/{token}", post(collect))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, format!("http://{addr}/callback/secret-token"))
    }

    pub fn received(&self) -> Vec<Value> {
        self.bodies.lock().expect("bodies").clone()
    }
}

async fn collect(State(receiver): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
    receiver.bodies.lock().expect("bodies").push(body);
    receiver
        .answers
        .lock()
        .expect("answers")
        .pop_front()
        .unwrap_or(StatusCode::OK)
}
