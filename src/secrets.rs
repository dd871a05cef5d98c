//! Key material derived from `SERVICE_SECRET` (contract section 4).
//!
//! One secret, many purposes: each purpose (callback tokens, identifier
//! hashes, webhook secret encryption, console sessions) gets its own key,
//! `HMAC-SHA256(SERVICE_SECRET, "interests-receiver/v1/" + purpose)`, so a key
//! leaked from one use says nothing about another. `SERVICE_SECRET_PREVIOUS`
//! is kept beside it during a rotation: values made under it are still
//! accepted, new ones are made under the current secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest accepted `SERVICE_SECRET`, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Fixed development secret of sandbox mode; announced at start.
pub const SANDBOX_SECRET: &str = "sandbox-development-secret-not-for-production-use";

/// What a derived key is for. Each variant yields an unrelated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The per-lookup token in callback URLs.
    CallbackToken,
    /// Keyed hashes of identifiers (suppressions, audit, erasure).
    IdentifierHash,
    /// Encryption of webhook endpoint secrets at rest.
    WebhookSecret,
    /// Signing of console session cookies.
    ConsoleSession,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::CallbackToken => "callback-token",
            Purpose::IdentifierHash => "identifier-hash",
            Purpose::WebhookSecret => "webhook-secret",
            Purpose::ConsoleSession => "console-session",
        }
    }
}

/// The service secret and, during a rotation, the previous one.
#[derive(Clone)]
pub struct ServiceSecret {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServiceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceSecret(..)")
    }
}

impl ServiceSecret {
    pub fn new(current: impl Into<Vec<u8>>, previous: Option<Vec<u8>>) -> Self {
        ServiceSecret {
            current: current.into(),
            previous,
        }
    }

    /// The sandbox's fixed development value.
    pub fn sandbox() -> Self {
        Self::new(SANDBOX_SECRET, None)
    }

    /// The key for `purpose` under the current secret.
    pub fn key(&self, purpose: Purpose) -> [u8; 32] {
        derive(&self.current, purpose)
    }

    /// The keys for `purpose` to accept: current first, then previous.
    pub fn accepted_keys(&self, purpose: Purpose) -> impl Iterator<Item = [u8; 32]> + '_ {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .map(move |secret| derive(secret, purpose))
    }

    /// HMAC-SHA256 of `message` under the current key for `purpose`.
    pub fn mac(&self, purpose: Purpose, message: &[u8]) -> [u8; 32] {
        mac(&self.key(purpose), message)
    }

    /// Does `tag` match `message` under the current or the previous key?
    /// Constant time per key.
    pub fn verify(&self, purpose: Purpose, message: &[u8], tag: &[u8]) -> bool {
        if tag.len() < 16 {
            return false;
        }
        // Both keys are always tried, so timing does not tell which matched.
        self.accepted_keys(purpose).fold(false, |found, key| {
            let mut m = HmacSha256::new_from_slice(&key).expect("HMAC takes any key length");
            m.update(message);
            m.verify_truncated_left(tag).is_ok() | found
        })
    }
}

impl ServiceSecret {
    /// The token in a lookup's callback URL: HMAC-SHA256 of the lookup id
    /// under the callback key, base64url (256 bits). Never stored: it is
    /// recomputed to check a delivery, with no database query.
    pub fn callback_token(&self, lookup_id: uuid::Uuid) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(Purpose::CallbackToken, lookup_id.as_bytes()))
    }

    /// Is `presented` the callback token of `lookup_id` under the current
    /// or the previous secret? Constant time in the token's content.
    pub fn verify_callback_token(&self, lookup_id: uuid::Uuid, presented: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(presented) else {
            return false;
        };
        tag.len() == 32 && self.verify(Purpose::CallbackToken, lookup_id.as_bytes(), &tag)
    }
}

impl ServiceSecret {
    /// The keyed hash of an identity (see `Subject::identities`) under the
    /// current secret: what tables keep instead of the identifier.
    pub fn identity_hash(&self, identity: &str) -> String {
        hex::encode(self.mac(Purpose::IdentifierHash, identity.as_bytes()))
    }

    /// Names the current identity key in the database (`lookups.identities_key`)
    /// without revealing it: a truncated MAC of a message no identity can be.
    pub fn identity_key_id(&self) -> String {
        hex::encode(&self.mac(Purpose::IdentifierHash, b"\0identity-key-id")[..8])
    }

    /// The keyed hashes of `identities` under the current and (during a
    /// rotation) the previous secret: what lookups must match against.
    pub fn identity_hashes(&self, identities: &[String]) -> Vec<String> {
        self.accepted_keys(Purpose::IdentifierHash)
            .flat_map(|key| {
                identities
                    .iter()
                    .map(move |i| hex::encode(mac(&key, i.as_bytes())))
            })
            .collect()
    }
}

fn derive(secret: &[u8], purpose: Purpose) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"interests-receiver/v1/");
    m.update(purpose.label().as_bytes());
    m.finalize().into_bytes().into()
}

/// HMAC-SHA256 of `message` under `key`.
pub fn mac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    m.update(message);
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_get_unrelated_keys() {
        let s = ServiceSecret::new(vec![7u8; 32], None);
        assert_ne!(
            s.key(Purpose::CallbackToken),
            s.key(Purpose::IdentifierHash)
        );
        assert_eq!(
            s.key(Purpose::CallbackToken),
            ServiceSecret::new(vec![7u8; 32], None).key(Purpose::CallbackToken)
        );
    }

    #[test]
    fn callback_tokens_are_per_lookup_and_survive_a_rotation() {
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let old = ServiceSecret::new(vec![1u8; 32], None);
        let token = old.callback_token(a);
        assert_eq!(token.len(), 43);
        assert!(old.verify_callback_token(a, &token));
        assert!(!old.verify_callback_token(b, &token));
        assert!(!old.verify_callback_token(a, &token[..42]));
        assert!(!old.verify_callback_token(a, "not base64 !"));
        let rotated = ServiceSecret::new(vec![2u8; 32], Some(vec![1u8; 32]));
        assert!(rotated.verify_callback_token(a, &token));
        assert_ne!(rotated.callback_token(a), token);
        assert!(!ServiceSecret::new(vec![2u8; 32], None).verify_callback_token(a, &token));
    }

    #[test]
    fn previous_secret_still_verifies_during_rotation() {
        let old = ServiceSecret::new(vec![1u8; 32], None);
        let tag = old.mac(Purpose::CallbackToken, b"lookup");
        let rotated = ServiceSecret::new(vec![2u8; 32], Some(vec![1u8; 32]));
        assert!(rotated.verify(Purpose::CallbackToken, b"lookup", &tag));
        assert!(!rotated.verify(Purpose::CallbackToken, b"other", &tag));
        let after = ServiceSecret::new(vec![2u8; 32], None);
        assert!(!after.verify(Purpose::CallbackToken, b"lookup", &tag));
        // Truncated tags shorter than 128 bits are never accepted.
        assert!(!rotated.verify(Purpose::CallbackToken, b"lookup", &tag[..8]));
    }
}
