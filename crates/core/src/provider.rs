//! Provider and tool declarations: identities, credential schemas, labels, provider kinds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::{I18nObject, ToolParameter};

/// The kinds of tool provider (`ToolProviderType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToolProviderType {
    Plugin,
    Builtin,
    Workflow,
    Api,
    App,
    DatasetRetrieval,
    Mcp,
}

impl ToolProviderType {
    /// The wire name (`builtin`, `api`, `dataset-retrieval`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plugin => "plugin",
            Self::Builtin => "builtin",
            Self::Workflow => "workflow",
            Self::Api => "api",
            Self::App => "app",
            Self::DatasetRetrieval => "dataset-retrieval",
            Self::Mcp => "mcp",
        }
    }
}

impl fmt::Display for ToolProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ToolProviderType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(Value::String(s.to_owned())).map_err(|_| {
            format!("invalid provider type {s:?}: expected one of plugin, builtin, workflow, api, app, dataset-retrieval, mcp")
        })
    }
}

/// Kinds of credential a provider can hold (`CredentialType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum CredentialType {
    #[serde(rename = "api-key")]
    ApiKey,
    #[serde(rename = "oauth2")]
    OAuth2,
    #[serde(rename = "unauthorized")]
    Unauthorized,
}

impl CredentialType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api-key",
            Self::OAuth2 => "oauth2",
            Self::Unauthorized => "unauthorized",
        }
    }

    /// The prefix of generated credential names (`get_name()`): `API KEY 1`, `AUTH 2`, …
    pub fn display_name(self) -> &'static str {
        match self {
            Self::ApiKey => "API KEY",
            Self::OAuth2 => "AUTH",
            Self::Unauthorized => "UNAUTHORIZED",
        }
    }

    /// Only API-key credentials may be edited and validated by the user.
    pub fn is_editable(self) -> bool {
        self == Self::ApiKey
    }
}

impl FromStr for CredentialType {
    type Err = String;

    /// Accepts Dify's aliases (`api_key`, `oauth`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "api-key" | "api_key" => Ok(Self::ApiKey),
            "oauth2" | "oauth" => Ok(Self::OAuth2),
            "unauthorized" => Ok(Self::Unauthorized),
            _ => Err(format!(
                "Invalid credential type: {s}; expected api-key, oauth2 or unauthorized"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for CredentialType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for CredentialType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fixed set of tool labels (`ToolLabelEnum`), in Dify's display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolLabelEnum {
    Search,
    Image,
    Videos,
    Weather,
    Finance,
    Design,
    Travel,
    Social,
    News,
    Medical,
    Productivity,
    Education,
    Business,
    Entertainment,
    Utilities,
    Other,
    Rag,
}

impl ToolLabelEnum {
    /// Every label in the order the console lists them.
    pub const ALL: [ToolLabelEnum; 17] = [
        Self::Search,
        Self::Image,
        Self::Videos,
        Self::Weather,
        Self::Finance,
        Self::Design,
        Self::Travel,
        Self::Social,
        Self::News,
        Self::Medical,
        Self::Productivity,
        Self::Education,
        Self::Business,
        Self::Entertainment,
        Self::Utilities,
        Self::Other,
        Self::Rag,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Image => "image",
            Self::Videos => "videos",
            Self::Weather => "weather",
            Self::Finance => "finance",
            Self::Design => "design",
            Self::Travel => "travel",
            Self::Social => "social",
            Self::News => "news",
            Self::Medical => "medical",
            Self::Productivity => "productivity",
            Self::Education => "education",
            Self::Business => "business",
            Self::Entertainment => "entertainment",
            Self::Utilities => "utilities",
            Self::Other => "other",
            Self::Rag => "rag",
        }
    }
}

/// A label as the console shows it (`ToolLabel`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolLabel {
    pub name: String,
    pub label: I18nObject,
    pub icon: String,
}

impl ToolLabel {
    /// The full label list with names, translations and 16 px inline SVG icons.
    pub fn defaults() -> Vec<ToolLabel> {
        ToolLabelEnum::ALL
            .iter()
            .map(|&l| {
                let (en, zh) = label_texts(l);
                ToolLabel {
                    name: l.as_str().to_owned(),
                    label: I18nObject::with_zh(en, zh),
                    icon: label_icon(l),
                }
            })
            .collect()
    }
}

fn label_texts(label: ToolLabelEnum) -> (&'static str, &'static str) {
    use ToolLabelEnum::*;
    match label {
        Search => ("Search", "搜索"),
        Image => ("Image", "图片"),
        Videos => ("Videos", "视频"),
        Weather => ("Weather", "天气"),
        Finance => ("Finance", "金融"),
        Design => ("Design", "设计"),
        Travel => ("Travel", "旅行"),
        Social => ("Social", "社交"),
        News => ("News", "新闻"),
        Medical => ("Medical", "医疗"),
        Productivity => ("Productivity", "生产力"),
        Education => ("Education", "教育"),
        Business => ("Business", "商业"),
        Entertainment => ("Entertainment", "娱乐"),
        Utilities => ("Utilities", "工具"),
        Other => ("Other", "其他"),
        Rag => ("RAG", "RAG"),
    }
}

/// A small monochrome badge with the label's initial; toolplane's own artwork, not Dify's.
fn label_icon(label: ToolLabelEnum) -> String {
    let initial = label_texts(label).0.chars().next().unwrap_or('?');
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16"><rect x="1" y="1" width="14" height="14" rx="3" fill="none" stroke="currentColor"/><text x="8" y="11.5" font-size="9" text-anchor="middle" fill="currentColor">{initial}</text></svg>"#
    )
}

/// Identity of a provider (`ToolProviderIdentity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolProviderIdentity {
    pub author: String,
    pub name: String,
    pub description: I18nObject,
    pub icon: String,
    #[serde(default)]
    pub icon_dark: Option<String>,
    pub label: I18nObject,
    #[serde(default)]
    pub tags: Vec<ToolLabelEnum>,
}

/// Identity of a tool (`ToolIdentity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolIdentity {
    pub author: String,
    pub name: String,
    pub label: I18nObject,
    pub provider: String,
    #[serde(default)]
    pub icon: Option<String>,
}

/// Descriptions of a tool for humans and for the LLM (`ToolDescription`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDescription {
    pub human: I18nObject,
    pub llm: String,
}

/// A tool declaration (`ToolEntity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolEntity {
    pub identity: ToolIdentity,
    #[serde(default, deserialize_with = "null_as_default")]
    pub parameters: Vec<ToolParameter>,
    #[serde(default)]
    pub description: Option<ToolDescription>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub output_schema: Map<String, Value>,
    #[serde(default)]
    pub has_runtime_parameters: bool,
}

/// Types of a credential field (`ProviderConfig.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProviderConfigType {
    #[serde(rename = "secret-input")]
    SecretInput,
    #[serde(rename = "text-input")]
    TextInput,
    #[serde(rename = "select")]
    Select,
    #[serde(rename = "boolean")]
    Boolean,
    #[serde(rename = "app-selector")]
    AppSelector,
    #[serde(rename = "model-selector")]
    ModelSelector,
    #[serde(rename = "array[tools]")]
    ArrayTools,
}

/// One choice of a `select` credential field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderConfigOption {
    pub value: String,
    pub label: I18nObject,
}

/// One field of a credential schema (`ProviderConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderConfig {
    #[serde(rename = "type")]
    pub kind: ProviderConfigType,
    pub name: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<Value>,
    #[serde(default)]
    pub options: Option<Vec<ProviderConfigOption>>,
    #[serde(default)]
    pub multiple: bool,
    #[serde(default)]
    pub label: Option<I18nObject>,
    #[serde(default)]
    pub help: Option<I18nObject>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub placeholder: Option<I18nObject>,
}

impl ProviderConfig {
    /// A field of the given type; everything else at Dify's defaults.
    pub fn new(name: impl Into<String>, kind: ProviderConfigType) -> Self {
        let name = name.into();
        Self {
            kind,
            label: Some(I18nObject::new(name.clone())),
            name,
            scope: None,
            required: false,
            default: None,
            options: None,
            multiple: false,
            help: None,
            url: None,
            placeholder: None,
        }
    }

    /// Builder: required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Whether the field's value is encrypted at rest and masked in responses.
    pub fn is_secret(&self) -> bool {
        self.kind == ProviderConfigType::SecretInput
    }
}

/// The names of the secret fields of a schema: the only ones that are encrypted and masked.
pub fn secret_field_names(schema: &[ProviderConfig]) -> Vec<String> {
    schema
        .iter()
        .filter(|c| c.is_secret())
        .map(|c| c.name.clone())
        .collect()
}

/// OAuth schemas of a provider (`OAuthSchema`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OAuthSchema {
    #[serde(default)]
    pub client_schema: Vec<ProviderConfig>,
    #[serde(default)]
    pub credentials_schema: Vec<ProviderConfig>,
}

/// A provider declaration (`ToolProviderEntity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolProviderEntity {
    pub identity: ToolProviderIdentity,
    #[serde(default)]
    pub plugin_id: Option<String>,
    #[serde(default)]
    pub credentials_schema: Vec<ProviderConfig>,
    #[serde(default)]
    pub oauth_schema: Option<OAuthSchema>,
}

impl ToolProviderEntity {
    /// Whether the provider needs credentials before its tools can run (`need_credentials`).
    pub fn needs_credentials(&self) -> bool {
        !self.credentials_schema.is_empty()
            || self
                .oauth_schema
                .as_ref()
                .is_some_and(|o| !o.credentials_schema.is_empty())
    }

    /// The credential types this provider supports, API key first.
    pub fn supported_credential_types(&self) -> Vec<CredentialType> {
        let mut types = Vec::new();
        if !self.credentials_schema.is_empty() {
            types.push(CredentialType::ApiKey);
        }
        if self
            .oauth_schema
            .as_ref()
            .is_some_and(|o| !o.credentials_schema.is_empty())
        {
            types.push(CredentialType::OAuth2);
        }
        types
    }

    /// The credential schema for one credential type (`get_credentials_schema_by_type`).
    pub fn credentials_schema_for(&self, kind: CredentialType) -> &[ProviderConfig] {
        match kind {
            CredentialType::ApiKey => &self.credentials_schema,
            CredentialType::OAuth2 => self.oauth_schema.as_ref().map_or(&[][..], |o| &o.credentials_schema),
            CredentialType::Unauthorized => &[],
        }
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_type_accepts_dify_aliases() {
        assert_eq!("API_KEY".parse::<CredentialType>().unwrap(), CredentialType::ApiKey);
        assert_eq!("oauth".parse::<CredentialType>().unwrap(), CredentialType::OAuth2);
        let err = "token".parse::<CredentialType>().unwrap_err();
        assert!(err.contains("Invalid credential type: token"));
        assert_eq!(serde_json::to_value(CredentialType::ApiKey).unwrap(), "api-key");
    }

    #[test]
    fn labels_are_in_dify_order() {
        let labels = ToolLabel::defaults();
        let names: Vec<_> = labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"search"));
        assert_eq!(names.last(), Some(&"rag"));
        assert_eq!(labels.len(), 17);
        assert_eq!(labels[16].label.en_US, "RAG");
    }

    #[test]
    fn tool_entity_null_collections_default() {
        let e: ToolEntity = serde_json::from_value(serde_json::json!({
            "identity": {"author": "a", "name": "t", "label": {"en_US": "T"}, "provider": "p"},
            "parameters": null, "output_schema": null
        }))
        .unwrap();
        assert!(e.parameters.is_empty());
        assert!(e.output_schema.is_empty());
    }

    #[test]
    fn provider_type_parses_wire_names() {
        assert_eq!(
            "dataset-retrieval".parse::<ToolProviderType>().unwrap(),
            ToolProviderType::DatasetRetrieval
        );
        assert!(
            "model"
                .parse::<ToolProviderType>()
                .unwrap_err()
                .contains("expected one of")
        );
    }
}
