//! Endpoint signing secrets: `whsec_` + base64 of 32 random bytes, shown to
//! the operator once and kept sealed with XChaCha20-Poly1305 under a key
//! derived from `SERVICE_SECRET`, so a database dump does not reveal them.
//! The endpoint id is the associated data: a sealed secret copied onto
//! another endpoint's row does not open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use uuid::Uuid;

use crate::secrets::{Purpose, ServiceSecret};

pub const PREFIX: &str = "whsec_";
const NONCE_LEN: usize = 24;

/// A new secret in the Standard Webhooks format.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// Nonce followed by the ciphertext of `secret`.
pub fn seal(keys: &ServiceSecret, webhook_id: Uuid, secret: &str) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(&keys.key(Purpose::WebhookSecret).into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret.as_bytes(),
                aad: webhook_id.as_bytes(),
            },
        )
        .expect("encryption of a short message cannot fail");
    [nonce.as_slice(), &sealed].concat()
}

/// The secret sealed by [`seal`], under the current or (during a rotation)
/// the previous `SERVICE_SECRET`; `None` when neither opens it.
pub fn open(keys: &ServiceSecret, webhook_id: Uuid, sealed: &[u8]) -> Option<String> {
    if sealed.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    keys.accepted_keys(Purpose::WebhookSecret).find_map(|key| {
        XChaCha20Poly1305::new(&key.into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: webhook_id.as_bytes(),
                },
            )
            .ok()
            .and_then(|plain| String::from_utf8(plain).ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_right_key_and_endpoint() {
        let keys = ServiceSecret::new(vec![3u8; 32], None);
        let id = Uuid::new_v4();
        let secret = generate();
        assert!(secret.starts_with("whsec_"));
        let sealed = seal(&keys, id, &secret);
        assert!(
            !sealed
                .windows(8)
                .any(|w| secret.as_bytes().windows(8).any(|s| s == w))
        );
        assert_eq!(open(&keys, id, &sealed).as_deref(), Some(secret.as_str()));
        assert_eq!(open(&keys, Uuid::new_v4(), &sealed), None);
        let other = ServiceSecret::new(vec![4u8; 32], None);
        assert_eq!(open(&other, id, &sealed), None);
        let rotated = ServiceSecret::new(vec![4u8; 32], Some(vec![3u8; 32]));
        assert_eq!(
            open(&rotated, id, &sealed).as_deref(),
            Some(secret.as_str())
        );
    }
}
