//! Job payloads of the upstream API (poll answers and callback bodies),
//! read tolerantly: envelope or bare `data`, unknown fields ignored here and
//! kept verbatim in `result`, `error` as a string or an object.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::lifecycle::{JobState, JobUpdate, credits_for};

/// Why a payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body lacks a string `request_id`")]
    MissingRequestId,
    #[error("body lacks a string `status`")]
    MissingStatus,
    #[error("unknown status `{0}`")]
    UnknownStatus(String),
    #[error("`request_id` is longer than {MAX_REQUEST_ID} characters or holds control characters")]
    BadRequestId,
}

/// Longest `request_id` accepted (upstream's are about 50 characters).
pub const MAX_REQUEST_ID: usize = 256;

fn is_envelope(body: &Value) -> bool {
    body.get("data").is_some_and(Value::is_object) && body.get("request_id").is_none()
}

/// The job object: the envelope's `data` when there is one, else the body.
pub fn job_object(body: &Value) -> &Value {
    if is_envelope(body) {
        &body["data"]
    } else {
        body
    }
}

/// [`job_object`], to change it.
pub fn job_object_mut(body: &mut Value) -> &mut Value {
    if is_envelope(body) {
        &mut body["data"]
    } else {
        body
    }
}

pub fn parse_job(body: &Value) -> Result<JobUpdate, PayloadError> {
    let job = job_object(body);
    let request_id = job
        .get("request_id")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or(PayloadError::MissingRequestId)?
        .to_owned();
    if request_id.chars().count() > MAX_REQUEST_ID || request_id.chars().any(char::is_control) {
        return Err(PayloadError::BadRequestId);
    }
    let status = job
        .get("status")
        .and_then(Value::as_str)
        .ok_or(PayloadError::MissingStatus)?;
    let state = match status.to_ascii_lowercase().as_str() {
        "queued" => JobState::Queued,
        "processing" | "pending" => JobState::Processing,
        "completed" => {
            let result = job
                .get("result")
                .filter(|r| !r.is_null())
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default()));
            JobState::Completed {
                credits: credits_for(&result),
                result,
                completed_on: job
                    .get("completed_on")
                    .and_then(Value::as_str)
                    .and_then(parse_time),
            }
        }
        "failed" => JobState::Failed {
            error: error_text(job.get("error")).unwrap_or_else(|| "upstream job failed".into()),
        },
        other => {
            return Err(PayloadError::UnknownStatus(
                other.chars().take(40).collect(),
            ));
        }
    };
    Ok(JobUpdate { request_id, state })
}

/// Upstream timestamps come with or without an offset; naive ones are UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// `error` as a string, or `code: message` of an object.
pub fn error_text(error: Option<&Value>) -> Option<String> {
    match error? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => {
            let code = o.get("code").and_then(Value::as_str);
            let message = o.get("message").and_then(Value::as_str);
            match (code, message) {
                (Some(c), Some(m)) => Some(format!("{c}: {m}")),
                (Some(s), None) | (None, Some(s)) => Some(s.to_owned()),
                (None, None) => Some(Value::Object(o.clone()).to_string()),
            }
        }
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The machine-readable code of an error body, whatever its shape.
pub fn error_code(body: &Value) -> Option<String> {
    match body.get("error")? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("code").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn envelope_and_bare_data_read_the_same() {
        assert_eq!(
            parse_job(&fixture("completed.json")).unwrap(),
            parse_job(&fixture("completed-bare-data.json")).unwrap()
        );
    }

    #[test]
    fn failed_and_processing_payloads_are_understood() {
        let failed = parse_job(&fixture("failed.json")).unwrap();
        assert_eq!(
            failed.state,
            JobState::Failed {
                error: "social graph could not be analyzed".into()
            }
        );
        let running = parse_job(&fixture("poll-processing.json")).unwrap();
        assert_eq!(running.state, JobState::Processing);
    }

    #[test]
    fn errors_are_read_as_string_or_object() {
        assert_eq!(
            error_code(&fixture("not-found-404.json")).as_deref(),
            Some("request_not_found")
        );
        assert_eq!(
            error_code(&serde_json::json!({"error": "invalid_api_key"})).as_deref(),
            Some("invalid_api_key")
        );
    }

    #[test]
    fn bodies_without_id_or_status_are_refused() {
        assert_eq!(
            parse_job(&serde_json::json!({"status": "completed"})),
            Err(PayloadError::MissingRequestId)
        );
        assert_eq!(
            parse_job(&serde_json::json!({"data": {"request_id": "x"}})),
            Err(PayloadError::MissingStatus)
        );
    }
}
