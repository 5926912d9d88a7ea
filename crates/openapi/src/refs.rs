//! `$ref` resolution over the generic JSON document.
//!
//! Local references (`#/…`, JSON pointers with `~0`/`~1` and percent escapes) are resolved at any depth. A
//! reference met again while it is being expanded is a cycle: it is cut with `{"x-toolplane-cycle": "<ref>"}`.
//! External references (another file or URL) are left in place and reported. Expansion is bounded in nodes and
//! depth, so a document whose references fan out exponentially cannot exhaust memory; a cut is marked with
//! `{"x-toolplane-truncated": "<ref>"}`. Each problem is reported once per document as a [`Warning`].

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::Warning;

/// Marker that replaces a reference that points back into itself.
pub const CYCLE_MARKER: &str = "x-toolplane-cycle";
/// Marker that replaces a schema cut because the expansion budget ran out.
pub const TRUNCATED_MARKER: &str = "x-toolplane-truncated";

/// Keys whose values are data, not schemas: never resolved.
const DATA_KEYS: [&str; 5] = ["example", "examples", "enum", "const", "default"];

/// Decodes one JSON-pointer token: percent escapes, then `~1` → `/` and `~0` → `~`.
pub(crate) fn decode_pointer_token(token: &str) -> String {
    let decoded = percent_decode(token);
    decoded.replace("~1", "/").replace("~0", "~")
}

fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Resolves references against one document and collects the warnings.
pub(crate) struct Resolver<'a> {
    root: &'a Value,
    max_nodes: usize,
    max_depth: usize,
    reported: HashSet<(String, String)>,
    pub(crate) warnings: Vec<Warning>,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(root: &'a Value, max_nodes: usize, max_depth: usize) -> Self {
        Self {
            root,
            max_nodes,
            max_depth,
            reported: HashSet::new(),
            warnings: Vec::new(),
        }
    }

    fn warn(&mut self, code: &str, reference: &str, message: String) {
        if self.reported.insert((code.to_owned(), reference.to_owned())) {
            self.warnings.push(Warning::at(code, reference, message));
        }
    }

    /// The value a local reference points to.
    pub(crate) fn lookup(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        let mut node = self.root;
        if pointer.is_empty() {
            return Some(node);
        }
        for token in pointer.strip_prefix('/')?.split('/') {
            let token = decode_pointer_token(token);
            node = match node {
                Value::Object(map) => map.get(&token)?,
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Follows top-level references of `value` (a parameter, request body, response, …) to the object they
    /// name. Returns `None`, with a warning, for external, dangling or cyclic references.
    pub(crate) fn follow(&mut self, value: &'a Value, location: &str) -> Option<&'a Value> {
        let mut node = value;
        let mut seen: Vec<&str> = Vec::new();
        while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            if !reference.starts_with('#') {
                self.warn(
                    "external_ref",
                    reference,
                    format!("external reference {reference:?} at {location} is not followed; the item was dropped"),
                );
                return None;
            }
            if seen.contains(&reference) || seen.len() > 64 {
                self.warn(
                    "ref_cycle",
                    reference,
                    format!("reference {reference:?} at {location} points back to itself; the item was dropped"),
                );
                return None;
            }
            seen.push(reference);
            match self.lookup(reference) {
                Some(target) => node = target,
                None => {
                    self.warn(
                        "unresolved_ref",
                        reference,
                        format!("reference {reference:?} at {location} points nowhere; the item was dropped"),
                    );
                    return None;
                }
            }
        }
        Some(node)
    }

    /// A copy of `value` with every local reference expanded, cycles and over-budget parts cut with markers.
    pub(crate) fn inline(&mut self, value: &Value, location: &str) -> Value {
        let mut state = InlineState {
            stack: Vec::new(),
            nodes: 0,
            location,
        };
        self.inline_node(value, 0, &mut state)
    }

    fn inline_node(&mut self, value: &Value, depth: usize, state: &mut InlineState<'_>) -> Value {
        state.nodes += 1;
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    return self.inline_ref(reference, map, depth, state);
                }
                if depth > self.max_depth || state.nodes > self.max_nodes {
                    return self.truncated(state, "(inline schema)");
                }
                let mut out = Map::with_capacity(map.len());
                for (key, v) in map {
                    let v = if DATA_KEYS.contains(&key.as_str()) || key.starts_with("x-") {
                        v.clone()
                    } else {
                        self.inline_node(v, depth + 1, state)
                    };
                    out.insert(key.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                if depth > self.max_depth || state.nodes > self.max_nodes {
                    return Value::Array(Vec::new());
                }
                Value::Array(items.iter().map(|v| self.inline_node(v, depth + 1, state)).collect())
            }
            other => other.clone(),
        }
    }

    fn inline_ref(
        &mut self,
        reference: &str,
        map: &Map<String, Value>,
        depth: usize,
        state: &mut InlineState<'_>,
    ) -> Value {
        if !reference.starts_with('#') {
            self.warn(
                "external_ref",
                reference,
                format!(
                    "external reference {reference:?} (first met at {}) is not followed; it is left as a reference",
                    state.location
                ),
            );
            return Value::Object(map.clone());
        }
        if state.stack.iter().any(|r| r == reference) {
            self.warn(
                "ref_cycle",
                reference,
                format!(
                    "schema {reference:?} contains itself (first met at {}); the inner occurrence is replaced by \
                     {{\"{CYCLE_MARKER}\": {reference:?}}}",
                    state.location
                ),
            );
            return Value::Object(Map::from_iter([(
                CYCLE_MARKER.to_owned(),
                Value::String(reference.to_owned()),
            )]));
        }
        if depth > self.max_depth || state.nodes > self.max_nodes {
            return self.truncated(state, reference);
        }
        let Some(target) = self.lookup(reference) else {
            self.warn(
                "unresolved_ref",
                reference,
                format!(
                    "reference {reference:?} (at {}) points nowhere; it was replaced by an empty schema",
                    state.location
                ),
            );
            return Value::Object(Map::new());
        };
        state.stack.push(reference.to_owned());
        let mut resolved = self.inline_node(target, depth + 1, state);
        state.stack.pop();
        // OpenAPI 3.1 allows siblings next to `$ref` (description, nullable, …); they refine the target.
        if map.len() > 1
            && let Value::Object(out) = &mut resolved
        {
            for (key, v) in map {
                if key != "$ref" {
                    let v = self.inline_node(v, depth + 1, state);
                    out.insert(key.clone(), v);
                }
            }
        }
        resolved
    }

    fn truncated(&mut self, state: &InlineState<'_>, reference: &str) -> Value {
        let location = state.location.to_owned();
        self.warn(
            "schema_truncated",
            &location,
            format!(
                "the schema at {location} is too large or too deep to expand fully; parts were replaced by \
                 {{\"{TRUNCATED_MARKER}\": …}}"
            ),
        );
        Value::Object(Map::from_iter([(
            TRUNCATED_MARKER.to_owned(),
            Value::String(reference.to_owned()),
        )]))
    }
}

struct InlineState<'l> {
    stack: Vec<String>,
    nodes: usize,
    location: &'l str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_tokens_are_decoded() {
        assert_eq!(decode_pointer_token("~1users~1%7Bid%7D"), "/users/{id}");
        assert_eq!(decode_pointer_token("a~0b"), "a~b");
        assert_eq!(decode_pointer_token("100%"), "100%");
    }

    #[test]
    fn cycles_are_cut_once_per_path() {
        let doc = json!({"components": {"schemas": {
            "Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}}
        }}});
        let mut r = Resolver::new(&doc, 10_000, 64);
        let out = r.inline(&json!({"$ref": "#/components/schemas/Node"}), "test");
        assert_eq!(
            out,
            json!({"type": "object", "properties": {"next": {"x-toolplane-cycle": "#/components/schemas/Node"}}})
        );
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.warnings[0].code, "ref_cycle");
    }
}
