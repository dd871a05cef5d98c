//! The person a submit asks about, and the validation of the submit body.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::envelope::ApiError;

/// The identifiers of one submit, exactly as submitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub social_media_url: Option<String>,
    pub name: Option<String>,
    pub company: Option<String>,
}

impl Subject {
    /// The five identifiers in a fixed order, absent ones as "".
    pub fn identifiers(&self) -> [&str; 5] {
        [
            &self.email,
            &self.phone,
            &self.social_media_url,
            &self.name,
            &self.company,
        ]
        .map(|field| field.as_deref().unwrap_or(""))
    }

    /// Trimmed, lowercased identifiers joined by `|`: the same person written
    /// with other capitals gets the same key (and the same profile).
    pub fn key(&self) -> String {
        self.identifiers()
            .map(|id| id.trim().to_lowercase())
            .join("|")
    }
}

/// A validated submit.
#[derive(Debug)]
pub struct SubmitRequest {
    pub subject: Subject,
    pub callback: Option<Callback>,
}

/// Where to deliver a job's outcome.
#[derive(Debug, Clone)]
pub struct Callback {
    /// As submitted, for the introspection endpoint.
    pub raw: String,
    pub url: Url,
}

impl Callback {
    /// The only part of the URL that may be logged: its path and query
    /// carry the receiver's secret token.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or("")
    }
}

/// Parses a submit body: a JSON object whose known fields are strings (or
/// null); unknown fields are ignored. At least one of email, phone,
/// social_media_url or name must be non-blank.
pub fn parse_submit(body: &[u8]) -> Result<SubmitRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::invalid_parameters("Request body must be a JSON object"))?;
    let Value::Object(object) = value else {
        return Err(ApiError::invalid_parameters(
            "Request body must be a JSON object",
        ));
    };
    let subject = Subject {
        email: string_field(&object, "email")?,
        phone: string_field(&object, "phone")?,
        social_media_url: string_field(&object, "social_media_url")?,
        name: string_field(&object, "name")?,
        company: string_field(&object, "company")?,
    };
    let has_lookup_identifier = [
        &subject.email,
        &subject.phone,
        &subject.social_media_url,
        &subject.name,
    ]
    .iter()
    .any(|field| field.as_deref().is_some_and(|v| !v.trim().is_empty()));
    if !has_lookup_identifier {
        return Err(ApiError::invalid_parameters(
            "At least one of email, phone, social_media_url or name is required",
        ));
    }
    let callback = match string_field(&object, "callback_url")? {
        None => None,
        Some(raw) if raw.trim().is_empty() => None,
        Some(raw) => {
            let url = parse_callback_url(&raw)?;
            Some(Callback { raw, url })
        }
    };
    Ok(SubmitRequest { subject, callback })
}

/// A field that must be a string when present; null counts as absent.
fn string_field(object: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(ApiError::invalid_parameters(format!(
            "{field} must be a string"
        ))),
    }
}

/// An absolute http(s) URL. Unlike the provider, localhost and private
/// addresses are accepted: the sandbox exists to call back local receivers.
fn parse_callback_url(raw: &str) -> Result<Url, ApiError> {
    match Url::parse(raw.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(url),
        _ => Err(ApiError::invalid_parameters(
            "callback_url must be an absolute http or https URL",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_null_is_absent() {
        let parsed = parse_submit(br#"{"email":"a@b.c","phone":null,"extra":1}"#).ok();
        let subject = parsed.map(|p| p.subject);
        assert_eq!(
            subject,
            Some(Subject {
                email: Some("a@b.c".into()),
                ..Subject::default()
            })
        );
    }

    #[test]
    fn company_alone_or_a_non_string_field_is_refused() {
        for body in [
            &br#"{"company":"Acme"}"#[..],
            br#"{"email":42}"#,
            br#"{"name":"Ann","callback_url":"not a url"}"#,
            br#"[]"#,
            b"not json",
        ] {
            let err = parse_submit(body).err().map(|e| e.code);
            assert_eq!(err, Some("invalid_parameters"), "{body:?}");
        }
    }

    #[test]
    fn the_key_ignores_capitals_and_surrounding_spaces() {
        let a = Subject {
            email: Some(" Ann@Example.com".into()),
            ..Subject::default()
        };
        let b = Subject {
            email: Some("ann@example.com".into()),
            ..Subject::default()
        };
        assert_eq!(a.key(), b.key());
    }
}
