//! Arbitrary bytes as a callback body, through what the receiver does with
//! an authentic one before it reaches the database: JSON, `parse_job`, the
//! intake rules (redaction, NUL replacement) on the update and on the body,
//! and the facet extraction of a completed result.
//!
//! Beyond "no panic", it checks the promise the intake makes to PostgreSQL:
//! nothing it hands over still holds a NUL character.
#![no_main]

use interests_receiver::callbacks::Intake;
use interests_receiver::facets::Facets;
use interests_receiver::lifecycle::JobState;
use interests_receiver::upstream::payload::{MAX_REQUEST_ID, parse_job};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let intake = Intake::new(vec!["psychographics".into(), "cultural_dna".into()]);
    let parsed = parse_job(&body);
    intake.body(&mut body);
    assert!(!holds_nul(&body), "a stored body would hold a NUL");
    let Ok(mut update) = parsed else {
        return;
    };
    assert!(
        update.request_id.chars().count() <= MAX_REQUEST_ID
            && !update.request_id.chars().any(char::is_control),
        "an accepted request_id is over the limit or holds control characters"
    );
    intake.update(&mut update);
    match &update.state {
        JobState::Completed { result, .. } => {
            assert!(!holds_nul(result), "a stored result would hold a NUL");
            assert!(
                result.get("psychographics").is_none() && result.get("cultural_dna").is_none(),
                "a redacted section survived"
            );
            let facets = Facets::extract(result);
            for value in facets
                .interests
                .iter()
                .chain(&facets.categories)
                .chain(&facets.brands)
                .chain(&facets.archetypes)
                .chain(&facets.industries)
            {
                assert!(!value.contains('\0'), "a facet would hold a NUL");
            }
        }
        JobState::Failed { error } => assert!(!error.contains('\0'), "an error would hold a NUL"),
        JobState::Queued | JobState::Processing => {}
    }
});
