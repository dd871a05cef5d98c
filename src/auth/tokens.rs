//! API tokens and who is calling: `API_TOKENS` / `API_READ_TOKENS` parsed
//! into digests with names, the constant-time check of a presented token,
//! and the [`Caller`] every audited action is recorded under.

use sha2::{Digest, Sha256};

/// A token list that cannot be used, naming its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub variable: &'static str,
    pub message: String,
}

fn token_error(variable: &'static str, message: impl Into<String>) -> TokenError {
    TokenError {
        variable,
        message: message.into(),
    }
}

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only `GET` on `/v1/*` (`API_READ_TOKENS`).
    Read,
    /// Everything (`API_TOKENS`).
    ReadWrite,
}

/// An accepted token: its name (for the audit log) and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub access: Access,
}

/// Accepted bearer tokens, kept only as SHA-256 digests, each with a name
/// (given as `name=token`, else `token-N` in order of appearance).
#[derive(Clone, Default)]
pub struct ApiTokens {
    tokens: Vec<([u8; 32], Caller)>,
}

impl ApiTokens {
    /// Parses the `API_TOKENS` / `API_READ_TOKENS` format.
    pub fn parse(variable: &'static str, raw: &str, access: Access) -> Result<Self, TokenError> {
        let mut tokens = Vec::new();
        for (n, item) in raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let prefix = if access == Access::Read {
                "read"
            } else {
                "token"
            };
            let (name, secret) = match item.split_once('=') {
                Some((name, secret)) if !name.starts_with("sha256:") => {
                    let name = name.trim();
                    if name.is_empty()
                        || name.len() > 64
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                    {
                        return Err(token_error(
                            variable,
                            "a token name (before `=`) must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
                        ));
                    }
                    (name.to_owned(), secret.trim())
                }
                _ => (format!("{prefix}-{}", n + 1), item),
            };
            let digest = if let Some(hex_digest) = secret.strip_prefix("sha256:") {
                let bytes = hex::decode(hex_digest)
                    .ok()
                    .filter(|b| b.len() == 32)
                    .ok_or_else(|| {
                        token_error(
                            variable,
                            "a sha256: entry must be followed by 64 hexadecimal digits",
                        )
                    })?;
                bytes.try_into().expect("length checked")
            } else {
                if secret.len() < 16 {
                    return Err(token_error(
                        variable,
                        "each token must be at least 16 characters long",
                    ));
                }
                Sha256::digest(secret.as_bytes()).into()
            };
            tokens.push((digest, Caller { name, access }));
        }
        if tokens.is_empty() {
            return Err(token_error(variable, "expected at least one token"));
        }
        Ok(ApiTokens { tokens })
    }

    /// One read-write token named `sandbox` (generated tokens, tests).
    pub fn from_plain(token: &str) -> Self {
        Self::named(token, "sandbox", Access::ReadWrite)
    }

    /// One token with this name and access (tests).
    pub fn named(token: &str, name: &str, access: Access) -> Self {
        ApiTokens {
            tokens: vec![(
                Sha256::digest(token.as_bytes()).into(),
                Caller {
                    name: name.into(),
                    access,
                },
            )],
        }
    }

    /// Adds the tokens of `other`.
    pub fn extend(&mut self, other: ApiTokens) {
        self.tokens.extend(other.tokens);
    }

    /// Is a token of this name and access still configured? (Console
    /// sessions end when their token is removed.)
    pub fn has_caller(&self, name: &str, access: Access) -> bool {
        self.tokens
            .iter()
            .any(|(_, c)| c.name == name && c.access == access)
    }

    /// Constant-time check of a presented token against every accepted one:
    /// who is calling, or `None`.
    pub fn identify(&self, presented: &str) -> Option<&Caller> {
        use subtle::ConstantTimeEq;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (d, caller) in &self.tokens {
            // Every digest is compared, so timing does not tell which matched.
            if bool::from(d.ct_eq(&digest)) {
                found = Some(caller);
            }
        }
        found
    }

    pub fn accepts(&self, presented: &str) -> bool {
        self.identify(presented).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_accept_plain_and_digest_forms() {
        let digest = hex::encode(Sha256::digest(b"second-token-0123456789"));
        let tokens = ApiTokens::parse(
            "API_TOKENS",
            &format!("first-token-0123456789, crm=sha256:{digest}"),
            Access::ReadWrite,
        )
        .unwrap();
        assert!(tokens.accepts("first-token-0123456789"));
        assert_eq!(
            tokens.identify("first-token-0123456789").unwrap().name,
            "token-1"
        );
        assert_eq!(
            tokens.identify("second-token-0123456789").unwrap().name,
            "crm"
        );
        assert!(tokens.accepts("second-token-0123456789"));
        assert!(!tokens.accepts("third-token-0123456789"));
    }

    #[test]
    fn tokens_reject_bad_digest_naming_the_variable() {
        let err = ApiTokens::parse("API_READ_TOKENS", "sha256:abc", Access::Read)
            .err()
            .unwrap();
        assert_eq!(err.variable, "API_READ_TOKENS");
    }
}
