//! The variable pool: every node's outputs by node id, plus `sys.*` and `env.*`, and the `{{#node.var#}}`
//! reference syntax.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::dsl::ValueSelector;

/// Node outputs by node id. Cloning is cheap (outputs are shared), so iterations and parallel items work on
/// their own copies.
#[derive(Debug, Clone, Default)]
pub struct VariablePool {
    nodes: HashMap<String, Arc<Map<String, Value>>>,
}

impl VariablePool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the outputs of `node_id` (or `sys` / `env`), replacing earlier ones.
    pub fn set_outputs(&mut self, node_id: impl Into<String>, outputs: Map<String, Value>) {
        self.nodes.insert(node_id.into(), Arc::new(outputs));
    }

    /// The outputs of a node, if it ran.
    pub fn outputs(&self, node_id: &str) -> Option<&Map<String, Value>> {
        self.nodes.get(node_id).map(|m| m.as_ref())
    }

    /// The value at `selector`: `[node, variable, key…]`; further elements index into objects (and lists by
    /// number).
    pub fn get(&self, selector: &[String]) -> Option<&Value> {
        let (node, rest) = selector.split_first()?;
        let (variable, path) = rest.split_first()?;
        let mut value = self.nodes.get(node)?.get(variable)?;
        for key in path {
            value = match value {
                Value::Object(map) => map.get(key)?,
                Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// Renders a string with `{{#node.var#}}` references: strings are inserted as they are, other values as
    /// JSON, missing values as the empty string (as Dify's `convert_template` does).
    pub fn render(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some((before, reference, after)) = next_reference(rest) {
            out.push_str(before);
            if let Some(value) = self.get(&reference) {
                out.push_str(&value_to_text(value));
            }
            rest = after;
        }
        out.push_str(rest);
        out
    }
}

/// The text form of a value: strings as they are, `null` as empty, everything else as JSON.
pub fn value_to_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Every `{{#a.b.c#}}` reference in `text`, as selectors.
pub fn template_references(text: &str) -> Vec<ValueSelector> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((_, reference, after)) = next_reference(rest) {
        out.push(reference);
        rest = after;
    }
    out
}

/// Finds the next well-formed reference: `{{#` + 2 to 11 dot-separated segments of `[A-Za-z0-9_]` + `#}}`.
/// Anything else (`{{ x }}`, `{{#bad ref#}}`) is left as literal text.
fn next_reference(text: &str) -> Option<(&str, ValueSelector, &str)> {
    let mut offset = 0;
    while let Some(found) = text[offset..].find("{{#") {
        let start = offset + found;
        let body_start = start + 3;
        if let Some(len) = text[body_start..].find("#}}") {
            let body = &text[body_start..body_start + len];
            let segments: Vec<&str> = body.split('.').collect();
            let valid = (2..=11).contains(&segments.len())
                && segments
                    .iter()
                    .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if valid {
                let selector = segments.into_iter().map(str::to_owned).collect();
                return Some((&text[..start], selector, &text[body_start + len + 3..]));
            }
        }
        offset = body_start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_references_and_keeps_other_braces() {
        let mut pool = VariablePool::new();
        pool.set_outputs(
            "n1",
            json!({"text": "hi", "obj": {"a": [1, 2]}})
                .as_object()
                .cloned()
                .unwrap(),
        );
        assert_eq!(
            pool.render("{{#n1.text#}} {{#n1.obj#}} {{#n1.obj.a.1#}} {{#n2.x#}} {{ raw }} {{#bad ref#}}"),
            r#"hi {"a":[1,2]} 2  {{ raw }} {{#bad ref#}}"#
        );
        assert_eq!(
            template_references("x {{#sys.user_id#}} {{#a.b.c#}}"),
            vec![
                vec!["sys".to_owned(), "user_id".into()],
                vec!["a".into(), "b".into(), "c".into()]
            ]
        );
    }
}
