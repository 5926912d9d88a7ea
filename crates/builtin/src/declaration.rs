//! Provider declarations kept as data: one JSON file per provider, in the shape of Dify's provider YAML plus its
//! tool YAMLs, parsed into core entities when the provider is built.

use serde_json::{Map, Value};
use toolplane_core::{ToolEntity, ToolProviderEntity};

/// A provider declaration file that cannot be turned into entities.
///
/// The files are compiled into the binary and a unit test parses each of them, so this only shows up when
/// someone edits a declaration and skips the tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("builtin provider declaration {file} is invalid: {reason}; fix the JSON file inside crates/builtin/src")]
pub struct DeclarationError {
    /// The declaration file, e.g. `time/provider.json`.
    pub file: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed declaration: the provider entity and its tools, in file order.
#[derive(Debug, Clone)]
pub(crate) struct Declaration {
    pub provider: ToolProviderEntity,
    pub tools: Vec<ToolEntity>,
}

/// Parses a declaration `{identity, credentials_schema, tools: [ToolEntity…]}`.
///
/// As in Dify's loader, every tool's `identity.provider` is set to the provider's name, so the files need not
/// repeat it.
pub(crate) fn parse(file: &'static str, json: &str) -> Result<Declaration, DeclarationError> {
    let error = |reason: String| DeclarationError { file, reason };
    let mut root: Map<String, Value> = serde_json::from_str(json).map_err(|e| error(e.to_string()))?;
    let tools = match root.remove("tools") {
        Some(Value::Array(tools)) => tools,
        _ => return Err(error("`tools` must be an array of tool declarations".into())),
    };
    let provider: ToolProviderEntity =
        serde_json::from_value(Value::Object(root)).map_err(|e| error(format!("provider: {e}")))?;

    let tools = tools
        .into_iter()
        .enumerate()
        .map(|(index, mut tool)| {
            if let Some(identity) = tool.get_mut("identity").and_then(Value::as_object_mut) {
                identity.insert("provider".into(), Value::String(provider.identity.name.clone()));
            }
            serde_json::from_value::<ToolEntity>(tool).map_err(|e| error(format!("tools[{index}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Declaration { provider, tools })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_file_and_the_broken_tool() {
        let json = r#"{"identity": {"author": "a", "name": "p", "label": {"en_US": "P"},
            "description": {"en_US": "d"}, "icon": "icon.svg"},
            "tools": [{"identity": {"author": "a", "name": "t", "label": {"en_US": "T"}},
                       "parameters": [{"name": "x"}]}]}"#;
        let err = parse("p/provider.json", json).unwrap_err();
        assert_eq!(err.file, "p/provider.json");
        assert!(err.reason.starts_with("tools[0]:"), "{err}");

        let err = parse("p/provider.json", r#"{"identity": {}}"#).unwrap_err();
        assert!(err.reason.contains("tools"), "{err}");
    }

    #[test]
    fn injects_the_provider_name_into_tools() {
        let json = r#"{"identity": {"author": "a", "name": "p", "label": {"en_US": "P"},
            "description": {"en_US": "d"}, "icon": "icon.svg"},
            "tools": [{"identity": {"author": "a", "name": "t", "label": {"en_US": "T"}}}]}"#;
        let declaration = parse("p/provider.json", json).unwrap();
        assert_eq!(declaration.tools[0].identity.provider, "p");
        assert!(declaration.provider.credentials_schema.is_empty());
    }
}
