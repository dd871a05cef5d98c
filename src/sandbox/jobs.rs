//! Jobs held by the simulator, the poll payload each one answers, and the
//! view tests get of them through `GET /_sandbox/jobs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::cases::Cases;
use super::envelope::rfc3339_z;
use super::shared::Shared;
use super::subject::{Callback, Subject};

/// Where a job is. `Expired` is the sandbox's own: the provider forgot the
/// job (`expire` case), so polls answer 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Expired,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Expired => "expired",
        }
    }
}

/// One accepted submit.
#[derive(Debug)]
pub struct Job {
    /// Submission order, for listing.
    pub seq: u64,
    pub request_id: String,
    pub subject: Subject,
    pub callback: Option<Callback>,
    pub cases: Cases,
    pub status: JobStatus,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub completed_on: Option<DateTime<Utc>>,
    pub credits: u64,
    pub callback_attempts: u64,
    pub callbacks_acknowledged: u64,
    /// Polls still to answer 500 (`poll-error` case).
    pub poll_errors_left: u32,
    pub accepted_at: DateTime<Utc>,
}

impl Job {
    /// The `data` of a poll answer (and of a callback); None once forgotten.
    pub fn poll_data(&self) -> Option<Value> {
        let id = &self.request_id;
        let status = self.status.as_str();
        match self.status {
            JobStatus::Queued | JobStatus::Processing => {
                Some(json!({"request_id": id, "status": status, "completed": false}))
            }
            JobStatus::Completed => Some(json!({
                "request_id": id,
                "status": status,
                "completed": true,
                "result": self.result.clone().unwrap_or_else(|| json!({})),
                "completed_on": self.completed_on.map(rfc3339_z),
            })),
            JobStatus::Failed => Some(json!({
                "request_id": id,
                "status": status,
                "completed": false,
                "error": self.error.as_deref().unwrap_or("analysis failed"),
            })),
            JobStatus::Expired => None,
        }
    }

    fn view(&self) -> SandboxJob {
        SandboxJob {
            request_id: self.request_id.clone(),
            subject: self.subject.clone(),
            status: self.status.as_str().to_owned(),
            callback_url: self.callback.as_ref().map(|callback| callback.raw.clone()),
            credits: self.credits,
            callback_attempts: self.callback_attempts,
            callbacks_acknowledged: self.callbacks_acknowledged,
            accepted_at: self.accepted_at,
        }
    }
}

/// One job as `GET /_sandbox/jobs` shows it, so tests can count submits per
/// person and find results that were never delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxJob {
    pub request_id: String,
    /// The identifiers as submitted.
    pub subject: Subject,
    /// queued, processing, completed, failed, or expired (forgotten).
    pub status: String,
    pub callback_url: Option<String>,
    /// Credits this job was charged.
    pub credits: u64,
    /// Callback HTTP attempts made for this job.
    pub callback_attempts: u64,
    /// Of those, the ones answered 2xx.
    pub callbacks_acknowledged: u64,
    /// When the submit that made this job arrived.
    pub accepted_at: DateTime<Utc>,
}

/// Every job, in submission order.
pub fn list(shared: &Shared) -> Vec<SandboxJob> {
    let jobs = shared.jobs();
    let mut all: Vec<&Job> = jobs.values().collect();
    all.sort_by_key(|job| job.seq);
    all.into_iter().map(Job::view).collect()
}
