//! Arbitrary bytes as a `POST /v1/lookups` body: whatever JSON arrives,
//! `LookupRequest::parse` answers a request or field errors, never a panic,
//! and an error always names a field.
#![no_main]

use interests_receiver::lookups::LookupRequest;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Err(errors) = LookupRequest::parse(&body) {
        assert!(!errors.is_empty(), "a refusal must name at least one field");
        assert!(
            errors.iter().all(|e| !e.field.is_empty()),
            "every field error names its field"
        );
    }
});
