//! What is written of an upstream payload (contract sections 4 and 6):
//! sections named in `REDACT_SECTIONS` are dropped before anything is
//! stored, and strings PostgreSQL cannot hold (a NUL character) are stored
//! with the character replaced, so that a paid result is never refused for
//! its content.

use serde_json::{Map, Value};

use crate::lifecycle::{JobState, JobUpdate};
use crate::upstream::payload::job_object_mut;

/// What replaces a NUL character in stored text.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// The intake rules of this deployment.
#[derive(Debug, Clone, Default)]
pub struct Intake {
    redact: Vec<String>,
}

impl Intake {
    pub fn new(redact_sections: Vec<String>) -> Self {
        Intake {
            redact: redact_sections,
        }
    }

    /// Makes a job update fit to store: redacted, NUL-free.
    pub fn update(&self, update: &mut JobUpdate) {
        match &mut update.state {
            JobState::Completed { result, .. } => {
                self.redact(result);
                replace_nul(result);
            }
            JobState::Failed { error } => {
                if error.contains('\0') {
                    *error = error.replace('\0', &NUL_REPLACEMENT.to_string());
                }
            }
            JobState::Queued | JobState::Processing => {}
        }
    }

    /// Makes a received body fit to store: its result redacted, NUL-free.
    pub fn body(&self, body: &mut Value) {
        if let Some(result) = job_object_mut(body).get_mut("result") {
            self.redact(result);
        }
        replace_nul(body);
    }

    fn redact(&self, result: &mut Value) {
        if let Some(sections) = result.as_object_mut() {
            for name in &self.redact {
                sections.remove(name);
            }
        }
    }
}

/// Replaces every NUL character in the strings and keys of `value`.
pub fn replace_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => {
            *s = s.replace('\0', &NUL_REPLACEMENT.to_string());
        }
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                *map = old
                    .into_iter()
                    .map(|(k, v)| (k.replace('\0', &NUL_REPLACEMENT.to_string()), v))
                    .collect::<Map<_, _>>();
            }
            map.values_mut().for_each(replace_nul);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_characters_are_replaced_in_strings_and_keys_at_any_depth() {
        let mut v = json!({"a\u{0}": ["x\u{0}y", {"k": "\u{0}"}], "n": 1});
        replace_nul(&mut v);
        assert_eq!(
            v,
            json!({"a\u{FFFD}": ["x\u{FFFD}y", {"k": "\u{FFFD}"}], "n": 1})
        );
    }

    #[test]
    fn redacted_sections_leave_the_result_and_the_stored_body() {
        let intake = Intake::new(vec!["psychographics".into()]);
        let mut body = json!({"success": true, "data": {"request_id": "r", "status": "completed",
            "result": {"psychographics": {"x": 1}, "core_profile": {}}}});
        intake.body(&mut body);
        assert_eq!(body["data"]["result"], json!({"core_profile": {}}));
        let mut bare = json!({"request_id": "r", "result": {"psychographics": 1}});
        intake.body(&mut bare);
        assert_eq!(bare["result"], json!({}));
    }
}
