//! Tool parameters: Dify's `ToolParameter` and its enums.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::I18nObject;

/// The type of a tool parameter (`ToolParameter.ToolParameterType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToolParameterType {
    String,
    Number,
    Boolean,
    Select,
    SecretInput,
    File,
    Files,
    Checkbox,
    AppSelector,
    ModelSelector,
    Any,
    DynamicSelect,
    /// An MCP complex type; the JSON schema travels in `input_schema`.
    Array,
    /// An MCP complex type; the JSON schema travels in `input_schema`.
    Object,
    /// Deprecated alias of `files`; the console API rewrites it to `files`.
    SystemFiles,
}

impl ToolParameterType {
    /// The JSON-schema type an LLM sees (`as_normal_type`): secret inputs, selects and checkboxes are strings.
    pub fn as_normal_type(self) -> &'static str {
        match self {
            Self::SecretInput | Self::Select | Self::Checkbox | Self::String => "string",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::File => "file",
            Self::Files => "files",
            Self::SystemFiles => "system-files",
            Self::AppSelector => "app-selector",
            Self::ModelSelector => "model-selector",
            Self::Any => "any",
            Self::DynamicSelect => "dynamic-select",
            Self::Array => "array",
            Self::Object => "object",
        }
    }

    /// Whether values of this type are files handed over by the caller rather than typed by an LLM.
    pub fn is_file(self) -> bool {
        matches!(self, Self::File | Self::Files | Self::SystemFiles)
    }
}

/// Who supplies a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolParameterForm {
    /// Set while adding the tool.
    Schema,
    /// Configured by the user before the invocation.
    Form,
    /// Filled in by the LLM.
    Llm,
}

/// One choice of a `select` parameter. `value` is coerced to a string whatever its JSON type, as Dify does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterOption {
    #[serde(deserialize_with = "string_from_any")]
    pub value: String,
    pub label: I18nObject,
    #[serde(default)]
    pub icon: Option<String>,
}

/// `auto_generate` of a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterAutoGenerate {
    #[serde(rename = "type")]
    pub kind: String,
}

/// `template` of a parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterTemplate {
    #[serde(default)]
    pub enabled: bool,
}

/// A tool parameter, serialised exactly as Dify's `ToolParameter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolParameter {
    pub name: String,
    pub label: I18nObject,
    #[serde(default)]
    pub placeholder: Option<I18nObject>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub auto_generate: Option<ParameterAutoGenerate>,
    #[serde(default)]
    pub template: Option<ParameterTemplate>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<Value>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub precision: Option<i64>,
    #[serde(default, deserialize_with = "options_from_any")]
    pub options: Vec<ParameterOption>,
    #[serde(rename = "type")]
    pub kind: ToolParameterType,
    #[serde(default)]
    pub human_description: Option<I18nObject>,
    pub form: ToolParameterForm,
    #[serde(default)]
    pub llm_description: Option<String>,
    /// Raw JSON schema for complex (MCP/OpenAPI) parameters; omitted when absent, as Dify's API drops `null` here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Map<String, Value>>,
}

impl ToolParameter {
    /// A parameter with the given name, type and form; everything else at Dify's defaults.
    pub fn new(name: impl Into<String>, kind: ToolParameterType, form: ToolParameterForm) -> Self {
        let name = name.into();
        Self {
            label: I18nObject::new(name.clone()),
            name,
            placeholder: None,
            scope: None,
            auto_generate: None,
            template: None,
            required: false,
            default: None,
            min: None,
            max: None,
            precision: None,
            options: Vec::new(),
            kind,
            human_description: None,
            form,
            llm_description: None,
            input_schema: None,
        }
    }

    /// Builder: a label.
    pub fn label(mut self, label: I18nObject) -> Self {
        self.label = label;
        self
    }

    /// Builder: required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Builder: a default value.
    pub fn default_value(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// Builder: descriptions for humans and for the LLM.
    pub fn describe(mut self, human: I18nObject, llm: impl Into<String>) -> Self {
        self.human_description = Some(human);
        self.llm_description = Some(llm.into());
        self
    }

    /// Builder: select options whose labels equal their values.
    pub fn options<I, S>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options = values
            .into_iter()
            .map(|v| {
                let value = v.into();
                ParameterOption {
                    label: I18nObject::new(value.clone()),
                    value,
                    icon: None,
                }
            })
            .collect();
        self
    }

    /// The values a `select` parameter accepts.
    pub fn option_values(&self) -> Vec<&str> {
        self.options.iter().map(|o| o.value.as_str()).collect()
    }
}

/// Dify coerces option values with `str(v)`; keep numbers and booleans readable.
fn string_from_any<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// Dify replaces a non-list `options` with `[]`.
fn options_from_any<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ParameterOption>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| serde_json::from_value(item).map_err(serde::de::Error::custom))
            .collect(),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dify_parameter_round_trips() {
        let json = serde_json::json!({
            "name": "timezone", "label": {"en_US": "Timezone"}, "type": "select", "form": "form",
            "required": false, "default": "UTC",
            "options": [{"value": "UTC", "label": {"en_US": "UTC"}}, {"value": 8, "label": {"en_US": "eight"}}]
        });
        let p: ToolParameter = serde_json::from_value(json).unwrap();
        assert_eq!(p.kind, ToolParameterType::Select);
        assert_eq!(p.option_values(), vec!["UTC", "8"]);
        let out = serde_json::to_value(&p).unwrap();
        assert_eq!(out["type"], "select");
        assert_eq!(out["label"]["ja_JP"], "Timezone");
        assert!(out.get("input_schema").is_none());
        assert!(out["placeholder"].is_null());
    }

    #[test]
    fn every_type_name_matches_dify() {
        for name in [
            "string",
            "number",
            "boolean",
            "select",
            "secret-input",
            "file",
            "files",
            "checkbox",
            "app-selector",
            "model-selector",
            "any",
            "dynamic-select",
            "array",
            "object",
            "system-files",
        ] {
            let t: ToolParameterType = serde_json::from_value(Value::String(name.into())).unwrap();
            assert_eq!(serde_json::to_value(t).unwrap(), name);
        }
    }

    #[test]
    fn non_list_options_become_empty() {
        let p: ToolParameter = serde_json::from_value(serde_json::json!({
            "name": "x", "label": {"en_US": "x"}, "type": "string", "form": "llm", "options": "nope"
        }))
        .unwrap();
        assert!(p.options.is_empty());
    }
}
