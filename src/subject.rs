//! The person a lookup is about: validation of the identifiers an operator
//! sends, their normalised form, and the key that recognises the same person
//! again (in-flight dedup, profile cache, erasure).

use serde::{Deserialize, Serialize};
use url::Url;
use utoipa::ToSchema;

use crate::token::sha256_hex;

/// Identifiers of a person, as stored and as sent upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Subject {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub social_media_url: Option<String>,
    pub name: Option<String>,
    pub company: Option<String>,
}

/// One rejected field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

const MAX_EMAIL: usize = 254;
const MAX_TEXT: usize = 200;
const MAX_URL: usize = 2048;

impl Subject {
    /// Validates raw identifiers and returns them normalised, or every field
    /// that is wrong.
    pub fn validate(raw: Subject) -> Result<Subject, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut keep = |field: &str,
                        value: Option<String>,
                        f: fn(&str) -> Result<String, String>| {
            match value.as_deref().map(str::trim) {
                None => None,
                Some("") => {
                    errors.push(FieldError::new(field, "must not be empty when present"));
                    None
                }
                Some(v) => match f(v) {
                    Ok(v) => Some(v),
                    Err(message) => {
                        errors.push(FieldError::new(field, message));
                        None
                    }
                },
            }
        };
        let subject = Subject {
            email: keep("email", raw.email, normalise_email),
            phone: keep("phone", raw.phone, normalise_phone),
            social_media_url: keep("social_media_url", raw.social_media_url, normalise_url),
            name: keep("name", raw.name, normalise_text),
            company: keep("company", raw.company, normalise_text),
        };
        if errors.is_empty()
            && subject.email.is_none()
            && subject.phone.is_none()
            && subject.social_media_url.is_none()
            && subject.name.is_none()
        {
            // Name every field that would satisfy the rule, not only the first.
            for field in ["email", "phone", "social_media_url", "name"] {
                errors.push(FieldError::new(
                    field,
                    "at least one of email, phone, social_media_url or name is required",
                ));
            }
        }
        if errors.is_empty() {
            Ok(subject)
        } else {
            Err(errors)
        }
    }

    /// Stable key of this person: equal for the same normalised identifiers.
    pub fn key(&self) -> String {
        let part = |v: &Option<String>| v.as_deref().map(str::to_lowercase).unwrap_or_default();
        sha256_hex(
            format!(
                "email={}\nphone={}\nsocial={}\nname={}\ncompany={}",
                part(&self.email),
                part(&self.phone),
                part(&self.social_media_url),
                part(&self.name),
                part(&self.company)
            )
            .as_bytes(),
        )
    }
}

/// Digest under which a suppressed identifier is remembered after erasure.
pub fn identifier_digest(kind: &str, normalised: &str) -> String {
    sha256_hex(format!("{kind}={}", normalised.to_lowercase()).as_bytes())
}

pub fn normalise_email(v: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected an email address such as ann@example.com";
    if v.len() > MAX_EMAIL {
        return Err(format!("must be at most {MAX_EMAIL} characters"));
    }
    let (local, domain) = v.rsplit_once('@').ok_or(EXPECTED)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@');
    if !(domain_ok && local_ok) {
        return Err(EXPECTED.into());
    }
    Ok(format!("{local}@{}", domain.to_lowercase()).to_lowercase())
}

pub fn normalise_phone(v: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected a phone number of 7 to 15 digits, optionally starting with +";
    let plus = v.starts_with('+');
    let rest = if plus { &v[1..] } else { v };
    if !rest
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
    {
        return Err(EXPECTED.into());
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    if !(7..=15).contains(&digits.len()) {
        return Err(EXPECTED.into());
    }
    Ok(if plus { format!("+{digits}") } else { digits })
}

pub fn normalise_url(v: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected an http or https URL such as https://www.linkedin.com/in/ann";
    if v.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    let mut url = Url::parse(v).map_err(|_| EXPECTED.to_owned())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(|h| !h.contains('.'))
    {
        return Err(EXPECTED.into());
    }
    url.set_fragment(None);
    let mut s = url.to_string();
    if s.ends_with('/') && url.query().is_none() {
        s.pop();
    }
    Ok(s)
}

pub fn normalise_text(v: &str) -> Result<String, String> {
    let collapsed = v.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > MAX_TEXT {
        return Err(format!("must be at most {MAX_TEXT} characters"));
    }
    if collapsed.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(collapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_email(email: &str) -> Subject {
        Subject {
            email: Some(email.into()),
            ..Subject::default()
        }
    }

    #[test]
    fn the_same_person_written_differently_has_one_key() {
        let a = Subject::validate(with_email(" Ann@Example.COM ")).unwrap();
        let b = Subject::validate(with_email("ann@example.com")).unwrap();
        assert_eq!(a.key(), b.key());
        assert_ne!(
            a.key(),
            Subject::validate(with_email("bob@example.com"))
                .unwrap()
                .key()
        );
    }

    #[test]
    fn malformed_identifiers_are_named() {
        let errors = Subject::validate(Subject {
            email: Some("not-an-email".into()),
            phone: Some("12ab".into()),
            social_media_url: Some("ftp://x".into()),
            ..Subject::default()
        })
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "phone", "social_media_url"]);
    }

    #[test]
    fn an_empty_subject_is_refused() {
        let errors = Subject::validate(Subject {
            company: Some("Acme".into()),
            ..Subject::default()
        })
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "phone", "social_media_url", "name"]);
    }

    #[test]
    fn phones_and_urls_are_normalised() {
        assert_eq!(
            normalise_phone("+1 (415) 555-0100").unwrap(),
            "+14155550100"
        );
        assert_eq!(
            normalise_url("https://WWW.LinkedIn.com/in/ann/#x").unwrap(),
            "https://www.linkedin.com/in/ann"
        );
    }
}
