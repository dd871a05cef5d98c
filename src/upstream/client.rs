//! HTTP client of the upstream Personal Interests API. It only classifies
//! what happened; what to do about it is the workers' business.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{RequestBuilder, Response, StatusCode, header::HeaderMap};
use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::payload::{error_code, error_text, parse_job};
use crate::lifecycle::JobUpdate;
use crate::subject::Subject;

/// Rate-limit facts read off any upstream answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateInfo {
    pub remaining: Option<u64>,
    pub reset_at: Option<DateTime<Utc>>,
    pub retry_after: Option<Duration>,
}

#[derive(Debug)]
pub enum SubmitOutcome {
    /// 202: the job exists upstream.
    Accepted { request_id: String },
    /// The job certainly was not created (the request never left, or
    /// upstream answered with a refusal); safe to send again later.
    NotAccepted { reason: String, permanent: bool },
    /// The request may or may not have created a job (timeout, connection
    /// lost after sending, unreadable 2xx). Re-sending could charge twice.
    Ambiguous { reason: String },
}

#[derive(Debug)]
pub enum PollOutcome {
    Job(JobUpdate),
    /// 404 `request_not_found`: unknown or expired upstream.
    NotFound,
    /// Anything else; polls are free and safe to repeat.
    Retry {
        reason: String,
    },
}

/// The submit body: absent identifiers are left out, not sent as null.
#[derive(Serialize)]
struct SubmitBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    social_media_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    company: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_url: Option<&'a str>,
}

#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    endpoint: Url,
    api_key: String,
    api_secret: String,
}

impl UpstreamClient {
    pub fn new(base: &Url, api_key: String, api_secret: String, timeout: Duration) -> Self {
        let mut endpoint = base.clone();
        let path = format!("{}/person/interests", base.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .user_agent(concat!("interests-receiver/", env!("CARGO_PKG_VERSION")))
            // A redirect would re-send the submit, credentials attached, to
            // wherever it points: follow none; a 3xx is an upstream error.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("static reqwest configuration is valid");
        UpstreamClient {
            http,
            endpoint,
            api_key,
            api_secret,
        }
    }

    /// Sends an authenticated request and reads status, rate headers and
    /// body. `Err` only when no HTTP answer arrived.
    async fn send(&self, request: RequestBuilder) -> Result<Answer, reqwest::Error> {
        let response = request
            .header("X-API-Key", &self.api_key)
            .header("X-API-Secret", &self.api_secret)
            .send()
            .await?;
        let status = response.status();
        let rate = rate_info(response.headers());
        let body = read_json(response).await;
        Ok(Answer { status, rate, body })
    }

    pub async fn submit(
        &self,
        subject: &Subject,
        callback_url: Option<&str>,
    ) -> (SubmitOutcome, RateInfo) {
        let body = SubmitBody {
            email: subject.email.as_deref(),
            phone: subject.phone.as_deref(),
            social_media_url: subject.social_media_url.as_deref(),
            name: subject.name.as_deref(),
            company: subject.company.as_deref(),
            callback_url,
        };
        let answer = match self
            .send(self.http.post(self.endpoint.clone()).json(&body))
            .await
        {
            Ok(answer) => answer,
            // Refused before the request left: certainly no job upstream.
            Err(e) if e.is_connect() || e.is_builder() => {
                let reason = format!("request not sent: {}", short(&e));
                let outcome = SubmitOutcome::NotAccepted {
                    reason,
                    permanent: false,
                };
                return (outcome, RateInfo::default());
            }
            Err(e) => {
                let reason = format!("no answer: {}", short(&e));
                return (SubmitOutcome::Ambiguous { reason }, RateInfo::default());
            }
        };
        let outcome = classify_submit(answer.status, answer.body);
        (outcome, answer.rate)
    }

    pub async fn poll(&self, request_id: &str) -> (PollOutcome, RateInfo) {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut().append_pair("request_id", request_id);
        let answer = match self.send(self.http.get(url)).await {
            Ok(answer) => answer,
            Err(e) => {
                let reason = short(&e);
                return (PollOutcome::Retry { reason }, RateInfo::default());
            }
        };
        let outcome = match (answer.status, answer.body) {
            (s, Ok(body)) if s.is_success() => match parse_job(&body) {
                Ok(job) => PollOutcome::Job(job),
                Err(e) => PollOutcome::Retry {
                    reason: format!("unreadable poll answer: {e}"),
                },
            },
            (StatusCode::NOT_FOUND, Ok(body))
                if error_code(&body).as_deref() == Some("request_not_found") =>
            {
                PollOutcome::NotFound
            }
            (s, body) => PollOutcome::Retry {
                reason: describe_error(s, body.ok().as_ref()),
            },
        };
        (outcome, answer.rate)
    }
}

/// What a submit's HTTP answer proves. Only answers that say the request
/// was refused before any job was made may be sent again as new; anything
/// else (a 500 sent after the job was created, a 502/504 from a proxy in
/// front of upstream, a redirect, an unexpected status) may hide a job that
/// will be charged, so it is ambiguous.
fn classify_submit(status: StatusCode, body: Result<Value, String>) -> SubmitOutcome {
    if status.is_success() {
        return match body {
            Ok(body) => match parse_job(&body) {
                Ok(job) => SubmitOutcome::Accepted {
                    request_id: job.request_id,
                },
                Err(e) => SubmitOutcome::Ambiguous {
                    reason: format!("{status} answer without a usable request_id: {e}"),
                },
            },
            Err(e) => SubmitOutcome::Ambiguous {
                reason: format!("{status} answer unreadable: {e}"),
            },
        };
    }
    let code = body.as_ref().ok().and_then(error_code);
    let reason = describe_error(status, body.ok().as_ref());
    let refused = match status {
        StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::UNAUTHORIZED
        | StatusCode::FORBIDDEN
        | StatusCode::TOO_MANY_REQUESTS => true,
        // Only upstream's own documented 503 proves it refused the request;
        // a bare 503 may come from a proxy that already forwarded it.
        StatusCode::SERVICE_UNAVAILABLE => code.as_deref() == Some("service_unavailable"),
        _ => false,
    };
    if refused {
        SubmitOutcome::NotAccepted {
            reason,
            permanent: status == StatusCode::BAD_REQUEST
                || status == StatusCode::UNPROCESSABLE_ENTITY,
        }
    } else {
        SubmitOutcome::Ambiguous { reason }
    }
}

/// What came back from upstream.
struct Answer {
    status: StatusCode,
    rate: RateInfo,
    body: Result<Value, String>,
}

async fn read_json(response: Response) -> Result<Value, String> {
    let bytes = response.bytes().await.map_err(|e| short(&e))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
}

fn describe_error(status: StatusCode, body: Option<&Value>) -> String {
    match body.and_then(|b| error_text(b.get("error"))) {
        Some(text) => format!("upstream answered {status}: {text}"),
        None => format!("upstream answered {status}"),
    }
}

/// A reqwest error without the URL (it may carry a callback token).
fn short(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "request error"
    };
    let source = std::error::Error::source(e)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    format!("{kind}{source}")
}

/// Longest pause a `Retry-After` can impose; a larger (or absurd) value is
/// capped, so a bad header cannot stop every replica for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After` in either form (RFC 9110): delay-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get("retry-after")?.to_str().ok()?.trim();
    let wait = match raw.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(raw).ok()?;
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

pub fn rate_info(headers: &HeaderMap) -> RateInfo {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    RateInfo {
        remaining: number("x-ratelimit-remaining").or_else(|| number("ratelimit-remaining")),
        reset_at: number("x-ratelimit-reset")
            .and_then(|t| DateTime::from_timestamp(t as i64, 0))
            .or_else(|| {
                number("ratelimit-reset")
                    .map(|s| Utc::now() + chrono::Duration::seconds(s.min(86_400) as i64))
            }),
        retry_after: retry_after(headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn submit_answer(status: u16, body: Value) -> SubmitOutcome {
        classify_submit(StatusCode::from_u16(status).unwrap(), Ok(body))
    }

    #[test]
    fn only_answers_that_prove_no_job_was_made_are_retried_as_new() {
        let err = |code: &str| json!({"success": false, "error": {"code": code, "message": "x"}});
        // Invalid parameters end the lookup (0 credits): sending them again
        // cannot succeed.
        for status in [400, 422] {
            assert!(
                matches!(
                    submit_answer(status, err("invalid_parameters")),
                    SubmitOutcome::NotAccepted {
                        permanent: true,
                        ..
                    }
                ),
                "{status}"
            );
        }
        // Credentials, a disabled key or the rate limit: retried later.
        for (status, code) in [
            (401, "invalid_api_key"),
            (403, "api_key_disabled"),
            (429, "rate_limit_exceeded"),
        ] {
            assert!(
                matches!(
                    submit_answer(status, err(code)),
                    SubmitOutcome::NotAccepted {
                        permanent: false,
                        ..
                    }
                ),
                "{status}"
            );
        }
        assert!(matches!(
            submit_answer(503, err("service_unavailable")),
            SubmitOutcome::NotAccepted {
                permanent: false,
                ..
            }
        ));
        for status in [500, 502, 504, 307, 308, 301, 404, 409] {
            assert!(
                matches!(
                    submit_answer(status, err("internal_error")),
                    SubmitOutcome::Ambiguous { .. }
                ),
                "{status}"
            );
        }
        // A 503 without upstream's own error code may come from a proxy.
        assert!(matches!(
            classify_submit(StatusCode::SERVICE_UNAVAILABLE, Err("not JSON".into())),
            SubmitOutcome::Ambiguous { .. }
        ));
    }

    #[test]
    fn rate_headers_are_read() {
        let mut h = HeaderMap::new();
        h.insert("X-RateLimit-Remaining", "0".parse().unwrap());
        h.insert("X-RateLimit-Reset", "1767000000".parse().unwrap());
        h.insert("Retry-After", "7".parse().unwrap());
        let info = rate_info(&h);
        assert_eq!(info.remaining, Some(0));
        assert_eq!(info.reset_at.unwrap().timestamp(), 1_767_000_000);
        assert_eq!(info.retry_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_is_read_as_a_date_too_and_capped() {
        let mut h = HeaderMap::new();
        let in_a_minute = std::time::SystemTime::now() + Duration::from_secs(60);
        h.insert(
            "Retry-After",
            httpdate::fmt_http_date(in_a_minute).parse().unwrap(),
        );
        let wait = rate_info(&h).retry_after.unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        h.insert("Retry-After", "999999999".parse().unwrap());
        assert_eq!(rate_info(&h).retry_after, Some(MAX_RETRY_AFTER));
        h.insert("Retry-After", "soon".parse().unwrap());
        assert_eq!(rate_info(&h).retry_after, None);
    }
}
