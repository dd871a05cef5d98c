//! `POST /person/interests`: validates the body, plays the submit-time hard
//! cases, stores the job and answers 202 `queued`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::oneshot;

use super::cases::{Case, Cases};
use super::delivery::{self, FirstAttempt};
use super::envelope::{ApiError, success};
use super::lifecycle;
use super::shared::Shared;
use super::stats::add;
use super::subject::parse_submit;

/// Simulated seconds a `submit-timeout` answer is held back.
const HELD_BACK: f64 = 60.0;

pub async fn submit(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match accept(&shared, &body).await {
        Ok(response) => response,
        Err(err) => {
            add(&shared.stats.submits_refused, 1);
            if err.status == StatusCode::TOO_MANY_REQUESTS {
                super::stats::rate_limited(&shared.stats);
            }
            err.into_response()
        }
    }
}

async fn accept(shared: &Arc<Shared>, body: &[u8]) -> Result<Response, ApiError> {
    let request = parse_submit(body)?;
    let cases = Cases::detect(request.subject.identifiers());
    let subject_key = request.subject.key();
    refuse_first_submit(shared, cases, &subject_key)?;
    let callback = request.callback.clone();
    let request_id = lifecycle::accept(shared, request, cases);
    tracing::info!(
        request_id,
        cases = ?cases.names(),
        callback_host = callback.as_ref().map(|c| c.host()),
        "sandbox job accepted"
    );
    if cases.has(Case::CallbackFirst) {
        finish_before_answering(shared, &request_id, cases).await;
    } else {
        lifecycle::spawn(shared.clone(), request_id.clone());
    }
    if let Some(err) = fail_after_creating(shared, cases, &subject_key) {
        // The job exists and runs on; only the answer says otherwise.
        return Err(err);
    }
    if cases.has(Case::SubmitTimeout) {
        // The job runs on; only the answer is late (or never sent).
        shared.sleep(HELD_BACK).await;
    }
    let data = json!({"request_id": request_id, "status": "queued"});
    Ok((StatusCode::ACCEPTED, Json(success(data))).into_response())
}

/// `rate-limit`, `server-error` and `unavailable` refuse the first submit
/// of a person (by subject key) and accept later ones.
fn refuse_first_submit(shared: &Shared, cases: Cases, subject_key: &str) -> Result<(), ApiError> {
    let refusals: [(Case, fn() -> ApiError); 3] = [
        (Case::RateLimit, || ApiError::rate_limited(1)),
        (Case::ServerError, ApiError::internal),
        (Case::Unavailable, ApiError::unavailable),
    ];
    for (case, error) in refusals {
        if cases.has(case) && shared.refuse_first(case, subject_key) {
            tracing::info!(case = case.name(), "sandbox refusing a first submit");
            return Err(error());
        }
    }
    Ok(())
}

/// `accepted-then-500` and `accepted-then-502` answer an error for the
/// first submit of a person even though the job was created.
fn fail_after_creating(shared: &Shared, cases: Cases, subject_key: &str) -> Option<ApiError> {
    let failures: [(Case, fn() -> ApiError); 2] = [
        (Case::AcceptedThen500, ApiError::internal),
        (Case::AcceptedThen502, ApiError::bad_gateway),
    ];
    failures.into_iter().find_map(|(case, error)| {
        (cases.has(case) && shared.refuse_first(case, subject_key)).then(|| {
            tracing::info!(
                case = case.name(),
                "sandbox answering an error for a created job"
            );
            error()
        })
    })
}

/// `callback-first`: the job finishes at once and its first callback
/// attempt completes before the submit is answered. The delivery runs in a
/// background task, so a client hanging up cannot cut it short; retries and
/// extra copies continue there after the answer.
async fn finish_before_answering(shared: &Arc<Shared>, request_id: &str, cases: Cases) {
    let Some(callback) = lifecycle::finish(shared, request_id) else {
        return;
    };
    let (first_done, first_result) = oneshot::channel();
    let background = shared.clone();
    let request_id = request_id.to_owned();
    shared.tasks.spawn(async move {
        let first = if delivery::attempt_once(&background, &request_id, &callback).await {
            FirstAttempt::Acknowledged
        } else {
            FirstAttempt::Refused
        };
        let _ = first_done.send(());
        delivery::deliver_planned(&background, &request_id, &callback, cases, Some(first)).await;
    });
    let _ = first_result.await;
}
