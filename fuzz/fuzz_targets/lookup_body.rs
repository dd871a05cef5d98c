//! Arbitrary bytes as a `POST /v1/lookups` body: whatever JSON arrives,
//! `LookupRequest::parse` answers a request or field errors, never a panic,
//! and every error names a field the client can find: `body`, a field of
//! the contract, or a key the client sent (an unknown key is named as sent,
//! the empty key included).
#![no_main]

use interests_receiver::lookups::LookupRequest;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const FIELDS: [&str; 7] = [
    "email",
    "phone",
    "social_media_url",
    "name",
    "company",
    "refresh",
    "metadata",
];

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Err(errors) = LookupRequest::parse(&body) {
        assert!(!errors.is_empty(), "a refusal must name at least one field");
        let sent = body.as_object();
        for e in &errors {
            let known = e.field == "body"
                || FIELDS.contains(&e.field.as_str())
                || sent.is_some_and(|o| o.contains_key(&e.field));
            assert!(known, "an error names a field nobody sent: {:?}", e.field);
        }
    }
});
