//! How a job moves: `queued`, `processing` after 1 s, finished after 3 s
//! (30 s for `slow`), all scaled; then its callback is delivered. Each job
//! is driven by its own task so that callbacks fire when the job finishes,
//! whether or not anyone polls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use rand::Rng;
use serde_json::json;

use super::cases::{Case, Cases};
use super::delivery;
use super::jobs::{Job, JobStatus};
use super::profiles;
use super::shared::Shared;
use super::stats::add;
use super::subject::{Callback, SubmitRequest};

/// Simulated seconds before a queued job starts processing.
const PROCESSING_AFTER: f64 = 1.0;
/// Simulated seconds from submit to the end of a job.
const FINISHED_AFTER: f64 = 3.0;
const SLOW_FINISHED_AFTER: f64 = 30.0;
/// Credits charged for a completed job with a non-empty result.
const CREDITS_PER_MATCH: u64 = 5;
/// Polls answered 500 for a `poll-error` job.
const POLL_ERRORS: u32 = 2;
/// Error text of a `fail` job.
const FAILURE: &str = "social graph could not be analyzed";

/// Submission order across all jobs.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

/// A request_id shaped like the provider's:
/// `<32 hex>_<unix seconds>_<4 digits>`.
pub fn new_request_id() -> String {
    let mut rng = rand::rng();
    let bytes: [u8; 16] = rng.random();
    let suffix: u32 = rng.random_range(1000..10000);
    format!("{}_{}_{suffix}", hex::encode(bytes), Utc::now().timestamp())
}

/// Stores a new `queued` job and returns its request_id.
pub fn accept(shared: &Shared, request: SubmitRequest, cases: Cases) -> String {
    let request_id = new_request_id();
    let job = Job {
        seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
        request_id: request_id.clone(),
        subject: request.subject,
        callback: request.callback,
        cases,
        status: JobStatus::Queued,
        result: None,
        error: None,
        completed_on: None,
        credits: 0,
        callback_attempts: 0,
        callbacks_acknowledged: 0,
        accepted_at: chrono::Utc::now(),
        poll_errors_left: if cases.has(Case::PollError) {
            POLL_ERRORS
        } else {
            0
        },
    };
    shared.jobs().insert(request_id.clone(), job);
    add(&shared.stats.submits_accepted, 1);
    request_id
}

/// Runs the job's timers and then its deliveries in a background task.
pub fn spawn(shared: Arc<Shared>, request_id: String) {
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        if !shared.sleep(PROCESSING_AFTER).await {
            return;
        }
        set_status(&shared, &request_id, JobStatus::Processing);
        let cases = job_cases(&shared, &request_id);
        let total = if cases.has(Case::Slow) {
            SLOW_FINISHED_AFTER
        } else {
            FINISHED_AFTER
        };
        if !shared.sleep(total - PROCESSING_AFTER).await {
            return;
        }
        if let Some(callback) = finish(&shared, &request_id) {
            delivery::deliver_planned(&shared, &request_id, &callback, cases, None).await;
        }
    });
}

fn set_status(shared: &Shared, request_id: &str, status: JobStatus) {
    if let Some(job) = shared.jobs().get_mut(request_id) {
        job.status = status;
    }
}

fn job_cases(shared: &Shared, request_id: &str) -> Cases {
    shared
        .jobs()
        .get(request_id)
        .map(|job| job.cases)
        .unwrap_or_default()
}

/// Ends the job (completed or failed), charges it, and returns where its
/// outcome must be delivered, if anywhere.
pub fn finish(shared: &Shared, request_id: &str) -> Option<Callback> {
    let mut jobs = shared.jobs();
    // `changing`: which of this person's jobs this is (1 for the first),
    // the seed of its profile's variation.
    let nth = jobs.get(request_id).map(|job| {
        let key = job.subject.key();
        jobs.values()
            .filter(|other| other.seq <= job.seq && other.subject.key() == key)
            .count() as u64
    })?;
    let job = jobs.get_mut(request_id)?;
    let cases = job.cases;
    job.completed_on = Some(Utc::now());
    if cases.has(Case::Fail) {
        job.status = JobStatus::Failed;
        job.error = Some(FAILURE.to_owned());
    } else {
        let result = if cases.has(Case::NoMatch) {
            json!({})
        } else if cases.has(Case::Changing) {
            profiles::nth_profile(&job.subject, nth)
        } else {
            profiles::profile(&job.subject)
        };
        let non_empty = result
            .as_object()
            .is_some_and(|sections| !sections.is_empty());
        job.credits = if non_empty { CREDITS_PER_MATCH } else { 0 };
        job.status = JobStatus::Completed;
        job.result = Some(result);
        add(&shared.stats.credits_charged, job.credits);
    }
    tracing::info!(
        request_id,
        status = job.status.as_str(),
        credits = job.credits,
        "sandbox job finished"
    );
    if cases.has(Case::Expire) {
        // Finished and paid for, then forgotten by the provider.
        job.status = JobStatus::Expired;
        return None;
    }
    if cases.has(Case::NoCallback) {
        return None;
    }
    job.callback.clone()
}
