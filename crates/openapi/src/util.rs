//! Small helpers for walking untyped JSON.

use serde_json::{Map, Value};

/// A scalar as text (`3.0` stays `3.0`, `true` becomes `true`), anything else as compact JSON.
pub(crate) fn scalar_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// "a string", "an array", … for error messages.
pub(crate) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most `max` characters of `text`, with `…` when cut (never splits a character).
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `map[key]` as a string slice.
pub(crate) fn str_field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

/// Text of a string field, trimmed, `None` when empty.
pub(crate) fn text_field(map: &Map<String, Value>, key: &str) -> Option<String> {
    str_field(map, key)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// HTTP methods an OpenAPI path item may hold, in Dify's iteration order.
pub(crate) const METHODS: [&str; 8] = ["get", "post", "put", "delete", "patch", "head", "options", "trace"];
