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

/// The strongest identifier a lookup carries (contract section 5), in
/// order: how precisely upstream can find the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchBasis {
    Email,
    Phone,
    SocialMediaUrl,
    /// Name with company, and none of the above.
    NameCompany,
    /// Name alone: can match the wrong person.
    NameOnly,
}

impl MatchBasis {
    pub const ALL: [MatchBasis; 5] = [
        MatchBasis::Email,
        MatchBasis::Phone,
        MatchBasis::SocialMediaUrl,
        MatchBasis::NameCompany,
        MatchBasis::NameOnly,
    ];

    /// The name in the API and in the `lookups.match_basis` column.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchBasis::Email => "email",
            MatchBasis::Phone => "phone",
            MatchBasis::SocialMediaUrl => "social_media_url",
            MatchBasis::NameCompany => "name_company",
            MatchBasis::NameOnly => "name_only",
        }
    }

    pub fn parse(raw: &str) -> Option<MatchBasis> {
        MatchBasis::ALL.into_iter().find(|b| b.as_str() == raw)
    }
}

/// The `warnings` entry of a name-only lookup under `NAME_ONLY_LOOKUPS=warn`.
pub const NAME_ONLY_WARNING: &str = "name_only: a name alone can match the wrong person; add company, email, phone or social_media_url to make the match precise";

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

    /// The identities under which this person is recognised again
    /// (contract section 5): the canonical email, phone and profile URL,
    /// each on its own (lookups sharing any one are the same person), or,
    /// with none of these, name and company together. In-flight dedup, the
    /// profile cache, erasure and suppression all use them, as keyed hashes.
    pub fn identities(&self) -> Vec<String> {
        let mut ids = Vec::new();
        if let Some(email) = &self.email {
            ids.push(identity("email", email));
        }
        if let Some(phone) = &self.phone {
            ids.push(identity("phone", phone));
        }
        if let Some(url) = &self.social_media_url {
            ids.push(identity("social_media_url", url));
        }
        if ids.is_empty()
            && let Some(name) = &self.name
        {
            let company = self
                .company
                .as_deref()
                .map(canonical_text)
                .unwrap_or_default();
            ids.push(format!("name:{}|company:{company}", canonical_text(name)));
        }
        ids
    }

    /// Identities that suppression also refuses: the above, plus the name
    /// alone (an erasure by name suppresses every lookup naming it).
    pub fn suppression_identities(&self) -> Vec<String> {
        let mut ids = self.identities();
        if let Some(name) = &self.name {
            ids.push(identity("name", name));
        }
        ids
    }

    /// The strongest identifier present; `None` only for a subject that
    /// [`Subject::validate`] would refuse (no email, phone, URL or name).
    pub fn match_basis(&self) -> Option<MatchBasis> {
        Some(if self.email.is_some() {
            MatchBasis::Email
        } else if self.phone.is_some() {
            MatchBasis::Phone
        } else if self.social_media_url.is_some() {
            MatchBasis::SocialMediaUrl
        } else if self.name.is_some() && self.company.is_some() {
            MatchBasis::NameCompany
        } else if self.name.is_some() {
            MatchBasis::NameOnly
        } else {
            return None;
        })
    }

    /// Key of the in-flight uniqueness index: the first identity.
    pub fn key(&self) -> String {
        sha256_hex(
            self.identities()
                .first()
                .map_or("", String::as_str)
                .as_bytes(),
        )
    }
}

/// The identity of one normalised identifier of `kind` (`email`, `phone`,
/// `social_media_url` or `name`), in its canonical spelling.
pub fn identity(kind: &str, normalised: &str) -> String {
    let canonical = match kind {
        "email" => canonical_email(normalised),
        "phone" => normalised.chars().filter(char::is_ascii_digit).collect(),
        "social_media_url" => canonical_url(normalised),
        _ => canonical_text(normalised),
    };
    format!("{kind}:{canonical}")
}

/// Lowercase, without a `+tag` before the `@`.
fn canonical_email(email: &str) -> String {
    let email = email.to_lowercase();
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let local = local.split_once('+').map_or(local, |(base, _)| base);
            format!("{local}@{domain}")
        }
        None => email,
    }
}

/// Host without `www.` and path without a trailing slash, lowercased; the
/// scheme, query and fragment are ignored.
fn canonical_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or_default().to_lowercase();
            let host = host.strip_prefix("www.").unwrap_or(&host);
            let path = u.path().trim_end_matches('/').to_lowercase();
            format!("{host}{path}")
        }
        Err(_) => url.to_lowercase(),
    }
}

/// Lowercase with single spaces.
fn canonical_text(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Legacy (unkeyed) digest of an identifier, as suppressions made before
/// keyed hashes were kept; still checked so that no suppression is lost.
pub fn legacy_identifier_digest(kind: &str, normalised: &str) -> String {
    sha256_hex(format!("{kind}={}", normalised.to_lowercase()).as_bytes())
}

pub fn normalise_email(v: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected an email address such as ann@example.com";
    if v.len() > MAX_EMAIL {
        return Err(format!("must be at most {MAX_EMAIL} characters"));
    }
    let address = email_address::EmailAddress::parse_with_options(
        v,
        email_address::Options::default()
            .without_display_text()
            .without_domain_literal(),
    )
    .map_err(|_| EXPECTED.to_owned())?;
    if !address.domain().contains('.') {
        return Err(EXPECTED.into());
    }
    Ok(address.email().to_lowercase())
}

/// A phone number in E.164 (`+` and digits), read by libphonenumber's
/// rules. Without a leading `+` the digits are taken as international
/// (country code first): `14155550123` is `+14155550123`.
pub fn normalise_phone(v: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "expected an international phone number such as +14155550123 (country code first)";
    if v.len() > 40 {
        return Err(EXPECTED.into());
    }
    let international = if v.starts_with('+') {
        v.to_owned()
    } else {
        format!("+{v}")
    };
    let number = phonenumber::parse(None, &international).map_err(|_| EXPECTED.to_owned())?;
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    // E.164 allows at most 15 digits; fewer than 7 is no subscriber number.
    if !(8..=16).contains(&e164.len()) || !phonenumber::is_viable(&international) {
        return Err(EXPECTED.into());
    }
    Ok(e164)
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
    fn every_spelling_of_one_person_has_the_same_identities() {
        let id = |kind: &str, v: &str, f: fn(&str) -> Result<String, String>| {
            identity(kind, &f(v).unwrap())
        };
        assert_eq!(
            id("phone", "14155550123", normalise_phone),
            id("phone", "+1 (415) 555-0123", normalise_phone)
        );
        assert_eq!(
            id("email", "Zoe+x@Example.com", normalise_email),
            id("email", "zoe@example.com", normalise_email)
        );
        let url = id(
            "social_media_url",
            "https://www.linkedin.com/in/zoe",
            normalise_url,
        );
        for other in [
            "http://linkedin.com/in/zoe",
            "https://linkedin.com/in/zoe/",
            "https://www.linkedin.com/in/zoe?trk=abc#top",
        ] {
            assert_eq!(id("social_media_url", other, normalise_url), url, "{other}");
        }
        assert_ne!(
            id("email", "zoe@example.com", normalise_email),
            id("email", "zoey@example.com", normalise_email)
        );
    }

    #[test]
    fn name_and_company_identify_only_without_another_identifier() {
        let named = Subject {
            name: Some("Ann  Lee".into()),
            company: Some("ACME".into()),
            ..Subject::default()
        };
        assert_eq!(named.identities(), vec!["name:ann lee|company:acme"]);
        let with_email = Subject {
            email: Some("ann@example.com".into()),
            ..named
        };
        assert_eq!(with_email.identities(), vec!["email:ann@example.com"]);
    }

    #[test]
    fn the_match_basis_is_the_strongest_identifier_present() {
        let s = |email: Option<&str>,
                 phone: Option<&str>,
                 name: Option<&str>,
                 company: Option<&str>| Subject {
            email: email.map(Into::into),
            phone: phone.map(Into::into),
            name: name.map(Into::into),
            company: company.map(Into::into),
            ..Subject::default()
        };
        let basis = |subject: Subject| subject.match_basis().map(MatchBasis::as_str);
        assert_eq!(
            basis(s(Some("a@b.io"), Some("+14155550100"), Some("A"), None)),
            Some("email")
        );
        assert_eq!(
            basis(s(None, Some("+14155550100"), Some("A"), Some("C"))),
            Some("phone")
        );
        assert_eq!(
            basis(s(None, None, Some("A"), Some("C"))),
            Some("name_company")
        );
        assert_eq!(basis(s(None, None, Some("A"), None)), Some("name_only"));
        assert_eq!(basis(s(None, None, None, Some("C"))), None);
        let url = Subject {
            social_media_url: Some("https://linkedin.com/in/a".into()),
            name: Some("A".into()),
            ..Subject::default()
        };
        assert_eq!(basis(url), Some("social_media_url"));
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
