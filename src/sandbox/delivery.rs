//! Callback delivery as the provider documents it: POST the poll envelope,
//! any 2xx acknowledges; otherwise (non-2xx, connection error, 30 s timeout)
//! retry up to 5 times after 1 s, 5 s, 15 s, 60 s and 300 s, all scaled.
//! Only the callback's host is ever logged: its path carries a secret.

use super::cases::{Case, Cases};
use super::envelope::success;
use super::shared::Shared;
use super::stats::add;
use super::subject::Callback;

/// Simulated seconds to wait before each retry.
const RETRY_AFTER: [f64; 5] = [1.0, 5.0, 15.0, 60.0, 300.0];
/// Simulated seconds one attempt may take.
const ATTEMPT_TIMEOUT: f64 = 30.0;

/// What already happened to the first delivery before the plan runs
/// (`callback-first` makes its first attempt before answering the submit).
#[derive(Debug, Clone, Copy)]
pub enum FirstAttempt {
    Acknowledged,
    Refused,
}

/// Delivers a finished job as its cases ask: once, twice in a row
/// (`duplicate-callback`) or three times at once (`concurrent-callback`).
/// Each delivery retries on its own schedule.
pub async fn deliver_planned(
    shared: &Shared,
    request_id: &str,
    callback: &Callback,
    cases: Cases,
    first: Option<FirstAttempt>,
) {
    let first_delivery = async {
        match first {
            None => deliver(shared, request_id, callback, 0).await,
            Some(FirstAttempt::Acknowledged) => true,
            Some(FirstAttempt::Refused) => deliver(shared, request_id, callback, 1).await,
        }
    };
    if cases.has(Case::ConcurrentCallback) {
        // Three copies at once, joined on this task.
        tokio::join!(
            first_delivery,
            deliver(shared, request_id, callback, 0),
            deliver(shared, request_id, callback, 0),
        );
    } else {
        first_delivery.await;
        if cases.has(Case::DuplicateCallback) {
            deliver(shared, request_id, callback, 0).await;
        }
    }
}

/// One delivery with its retries, starting at attempt number `start`
/// (0 = the first attempt). True once acknowledged.
async fn deliver(shared: &Shared, request_id: &str, callback: &Callback, start: usize) -> bool {
    for attempt in start..=RETRY_AFTER.len() {
        if attempt > 0 && !shared.sleep(RETRY_AFTER[attempt - 1]).await {
            return false;
        }
        if attempt_once(shared, request_id, callback).await {
            return true;
        }
    }
    add(&shared.stats.callbacks_abandoned, 1);
    tracing::warn!(
        request_id,
        callback_host = callback.host(),
        "sandbox gave up delivering a callback"
    );
    false
}

/// One POST of the job's current envelope. True when answered 2xx, or when
/// there is nothing left to deliver (the job is gone).
pub async fn attempt_once(shared: &Shared, request_id: &str, callback: &Callback) -> bool {
    let body = {
        let mut jobs = shared.jobs();
        let Some(job) = jobs.get_mut(request_id) else {
            return true;
        };
        let Some(data) = job.poll_data() else {
            return true;
        };
        job.callback_attempts += 1;
        success(data)
    };
    add(&shared.stats.callbacks_attempted, 1);
    let request = shared
        .client
        .post(callback.url.clone())
        .timeout(shared.scaled(ATTEMPT_TIMEOUT))
        .json(&body)
        .send();
    let outcome = tokio::select! {
        outcome = request => outcome,
        () = shared.shutdown.cancelled() => return false,
    };
    let host = callback.host();
    match outcome {
        Ok(response) if response.status().is_success() => {
            if let Some(job) = shared.jobs().get_mut(request_id) {
                job.callbacks_acknowledged += 1;
            }
            add(&shared.stats.callbacks_acknowledged, 1);
            tracing::info!(request_id, callback_host = host, status = %response.status(), "sandbox callback acknowledged");
            true
        }
        Ok(response) => {
            tracing::info!(request_id, callback_host = host, status = %response.status(), "sandbox callback refused");
            false
        }
        Err(err) => {
            // reqwest's error text may contain the URL; log only its kind.
            let kind = if err.is_timeout() {
                "timeout"
            } else if err.is_connect() {
                "connect"
            } else {
                "request"
            };
            tracing::info!(
                request_id,
                callback_host = host,
                error = kind,
                "sandbox callback failed"
            );
            false
        }
    }
}
