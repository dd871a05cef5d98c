//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>):
//! `v1,` + base64 HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`,
//! keyed with the base64-decoded part of the secret after `whsec_`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::secret::PREFIX;

/// The `webhook-signature` header value, or `None` for a malformed secret.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()?;
    let mut message = Vec::with_capacity(body.len() + 32);
    message.extend_from_slice(format!("{msg_id}.{timestamp}.").as_bytes());
    message.extend_from_slice(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(crate::secrets::mac(&key, &message))
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signs_the_specification_example() {
        // The example of the Standard Webhooks specification.
        let sig = super::sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }
}
