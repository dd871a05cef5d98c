//! One way to read a JSON request body: field by field, so that every
//! endpoint names each bad field the same way (a 422 listing them all):
//! `body` when it is not an object, `unknown field` for a name the
//! endpoint does not take, then each field's own complaint. Used by the
//! lookup body (`lookups::LookupRequest`), the batch envelope, the refresh
//! body and the webhook bodies.

use serde_json::{Map, Value};

use crate::subject::FieldError;

/// A body being read; complaints gather in `errors`.
pub struct Fields<'a> {
    pub object: &'a Map<String, Value>,
    pub errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    /// `body` as an object, each key outside `allowed` named as unknown.
    pub fn new(body: &'a Value, allowed: &[&str]) -> Result<Self, FieldError> {
        let object = body
            .as_object()
            .ok_or_else(|| FieldError::new("body", "expected a JSON object"))?;
        let errors = object
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|k| FieldError::new(k, "unknown field"))
            .collect();
        Ok(Fields { object, errors })
    }

    pub fn has(&self, name: &str) -> bool {
        self.object.contains_key(name)
    }

    pub fn error(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(name, message));
    }

    /// A string of at most `max` characters: `None` when absent or bad,
    /// `Some(None)` when null (a PATCH clears it).
    pub fn string(&mut self, name: &str, max: usize) -> Option<Option<String>> {
        match self.object.get(name)? {
            Value::Null => Some(None),
            Value::String(s) if s.chars().count() <= max => Some(Some(s.clone())),
            Value::String(_) => {
                self.error(name, format!("at most {max} characters"));
                None
            }
            _ => {
                self.error(name, "expected a string");
                None
            }
        }
    }

    /// A string PostgreSQL can store (no NUL); absent or null: `None`.
    pub fn text(&mut self, name: &str) -> Option<String> {
        match self.object.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.contains('\0') => {
                self.error(name, "must not contain a NUL character");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.error(name, "expected a string");
                None
            }
        }
    }

    /// `true` or `false`; absent or null: `false`.
    pub fn flag(&mut self, name: &str) -> bool {
        match self.object.get(name) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.error(name, "expected true or false");
                false
            }
        }
    }

    /// Every complaint, or none.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn named(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn every_bad_field_is_named_in_order() {
        let body = json!({"a": 1, "b": "x\u{0}", "c": "yes", "zzz": 0});
        let mut fields = Fields::new(&body, &["a", "b", "c"]).unwrap();
        assert_eq!(fields.text("a"), None);
        assert_eq!(fields.text("b"), None);
        assert!(!fields.flag("c"));
        assert_eq!(named(&fields.finish().unwrap_err()), ["zzz", "a", "b", "c"]);
    }

    #[test]
    fn a_body_that_is_not_an_object_is_named_body() {
        let error = Fields::new(&json!([1]), &[]).err().unwrap();
        assert_eq!(error, FieldError::new("body", "expected a JSON object"));
    }

    #[test]
    fn absent_null_and_given_are_told_apart() {
        let body = json!({"n": null, "s": "ok", "f": true});
        let mut fields = Fields::new(&body, &["n", "s", "f"]).unwrap();
        assert_eq!(fields.string("n", 5), Some(None));
        assert_eq!(fields.string("s", 5), Some(Some("ok".into())));
        assert_eq!(fields.string("missing", 5), None);
        assert_eq!(fields.string("s", 1), None);
        assert!(fields.flag("f"));
        assert!(!fields.flag("missing"));
        assert_eq!(named(&fields.finish().unwrap_err()), ["s"]);
    }
}
