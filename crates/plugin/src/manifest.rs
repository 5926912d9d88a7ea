//! `manifest.yaml`: parsing and validation by the original's rules (`plugin_declaration.go`).
//!
//! The original validates in two places: the CLI packager runs the struct validator (required fields, version
//! regex, `type: plugin`, runner, arch, tags, storage size, I18n lengths) and the daemon runs `ManifestValidate`
//! (author and name regexes, category exclusivity). Both sets are applied here, every time, and every problem is
//! reported with the field it concerns and the expected form.

use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use toolplane_core::I18nObject;

use crate::error::{ManifestErrors, ManifestFieldError, PackageError};

/// Manifest version regex: `^\d{1,4}(\.\d{1,4}){2}(-\w{1,16})?$`.
pub const VERSION_PATTERN: &str = r"^\d{1,4}(\.\d{1,4}){2}(-\w{1,16})?$";
/// Author regex: `^[a-z0-9_-]{1,64}$`.
pub const AUTHOR_PATTERN: &str = r"^[a-z0-9_-]{1,64}$";
/// Plugin name regex: `^[a-z0-9_-]{1,128}$`.
pub const NAME_PATTERN: &str = r"^[a-z0-9_-]{1,128}$";

static VERSION: LazyLock<Regex> = LazyLock::new(|| crate::go_pattern(VERSION_PATTERN));
static AUTHOR: LazyLock<Regex> = LazyLock::new(|| crate::go_pattern(AUTHOR_PATTERN));
static NAME: LazyLock<Regex> = LazyLock::new(|| crate::go_pattern(NAME_PATTERN));

/// The plugin tags the original accepts (`manifest_entities/tags.go`).
pub const PLUGIN_TAGS: [&str; 19] = [
    "search",
    "image",
    "videos",
    "weather",
    "finance",
    "design",
    "travel",
    "social",
    "news",
    "medical",
    "productivity",
    "education",
    "business",
    "entertainment",
    "utilities",
    "other",
    "agent",
    "rag",
    "trigger",
];

/// The category of a plugin, in the original's precedence (tool > model > datasource > agent-strategy > trigger
/// > extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginCategory {
    Tool,
    Model,
    Datasource,
    AgentStrategy,
    Trigger,
    Extension,
}

impl PluginCategory {
    /// The wire name (`tool`, `agent-strategy`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Model => "model",
            Self::Datasource => "datasource",
            Self::AgentStrategy => "agent-strategy",
            Self::Trigger => "trigger",
            Self::Extension => "extension",
        }
    }
}

/// `resource.permission.model`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPermission {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub llm: bool,
    #[serde(default)]
    pub text_embedding: bool,
    #[serde(default)]
    pub rerank: bool,
    #[serde(default)]
    pub tts: bool,
    #[serde(default)]
    pub speech2text: bool,
    #[serde(default)]
    pub moderation: bool,
}

/// A permission that is only switched on or off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnabledPermission {
    #[serde(default)]
    pub enabled: bool,
}

/// `resource.permission.storage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoragePermission {
    #[serde(default)]
    pub enabled: bool,
    /// Bytes, 1024..=1073741824.
    #[serde(default)]
    pub size: u64,
}

/// `resource.permission`: what the plugin may call back into Dify for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    #[serde(default)]
    pub tool: Option<EnabledPermission>,
    #[serde(default)]
    pub model: Option<ModelPermission>,
    #[serde(default)]
    pub node: Option<EnabledPermission>,
    #[serde(default)]
    pub endpoint: Option<EnabledPermission>,
    #[serde(default)]
    pub app: Option<EnabledPermission>,
    #[serde(default)]
    pub storage: Option<StoragePermission>,
}

/// `resource`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Memory in bytes.
    pub memory: i64,
    pub permission: Option<Permissions>,
}

/// `plugins`: provider declaration files per category.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginExtensions {
    pub tools: Vec<String>,
    pub models: Vec<String>,
    pub endpoints: Vec<String>,
    pub agent_strategies: Vec<String>,
    pub datasources: Vec<String>,
    pub triggers: Vec<String>,
}

/// `meta.runner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    /// Always `python` (the only language the original accepts).
    pub language: String,
    pub version: String,
    /// Run as `python -m <entrypoint>`.
    pub entrypoint: String,
}

/// `meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub version: String,
    pub arch: Vec<String>,
    pub runner: Runner,
    pub minimum_dify_version: Option<String>,
}

/// A validated `manifest.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub version: String,
    pub author: String,
    pub name: String,
    pub label: I18nObject,
    pub description: I18nObject,
    /// File name under `_assets/`.
    pub icon: String,
    pub icon_dark: Option<String>,
    pub resource: Resource,
    pub plugins: PluginExtensions,
    pub meta: Meta,
    pub tags: Vec<String>,
    /// `created_at` as written.
    pub created_at: String,
    /// `created_at` parsed.
    pub created_at_time: DateTime<FixedOffset>,
    pub privacy: Option<String>,
    pub repo: Option<String>,
    /// The manifest as parsed, for callers that need fields verbatim (e.g. the daemon's declaration JSON).
    pub raw: Value,
}

impl Manifest {
    /// Parses and validates `manifest.yaml`.
    pub fn parse(yaml: &[u8]) -> Result<Self, PackageError> {
        let raw: Value = serde_saphyr::from_slice(yaml).map_err(|e| PackageError::Yaml {
            path: "manifest.yaml".into(),
            message: e.to_string(),
        })?;
        Self::from_value(raw).map_err(PackageError::Manifest)
    }

    /// Validates a manifest already parsed into a JSON value.
    pub fn from_value(raw: Value) -> Result<Self, ManifestErrors> {
        let mut c = Checker::default();
        let empty = Map::new();
        let root = match &raw {
            Value::Object(map) => map,
            _ => {
                c.error("(root)", "must be a mapping of manifest fields");
                &empty
            }
        };

        let version = c.string(root, "version", Need::Required);
        if !version.is_empty() && !VERSION.is_match(&version) {
            c.error(
                "version",
                format!("is {version:?}; expected a version like 0.0.1 matching {VERSION_PATTERN}"),
            );
        }
        let kind = c.string(root, "type", Need::Required);
        if !kind.is_empty() && kind != "plugin" {
            c.error("type", format!("is {kind:?}; expected \"plugin\""));
        }
        let author = c.string(root, "author", Need::Required);
        if !author.is_empty() && !AUTHOR.is_match(&author) {
            c.error(
                "author",
                format!("is {author:?}; author must be alphanumeric and less than 64 characters: {AUTHOR_PATTERN}"),
            );
        }
        let name = c.string(root, "name", Need::Required);
        if !name.is_empty() && !NAME.is_match(&name) {
            c.error(
                "name",
                format!("is {name:?}; plugin name must be alphanumeric and less than 128 characters: {NAME_PATTERN}"),
            );
        }
        let label = c.i18n(root, "label", "label");
        let description = c.i18n(root, "description", "description");
        let icon = c.string(root, "icon", Need::Required);
        c.max_len("icon", &icon, 128);
        let icon_dark = c.optional_string(root, "icon_dark", "icon_dark");
        if let Some(dark) = &icon_dark {
            c.max_len("icon_dark", dark, 128);
        }

        let resource = c.resource(root);
        let plugins = c.plugins(root);
        let meta = c.meta(root);

        let tags = c.string_list(root, "tags", "tags");
        for (i, tag) in tags.iter().enumerate() {
            if !PLUGIN_TAGS.contains(&tag.as_str()) {
                c.error(
                    format!("tags[{i}]"),
                    format!("is {tag:?}; expected one of {}", PLUGIN_TAGS.join(", ")),
                );
            }
        }
        let created_at = c.string(root, "created_at", Need::Required);
        let created_at_time = if created_at.is_empty() {
            None
        } else {
            let parsed = parse_time(&created_at);
            if parsed.is_none() {
                c.error(
                    "created_at",
                    format!("is {created_at:?}; expected an RFC 3339 time like 2025-01-01T00:00:00Z"),
                );
            }
            parsed
        };
        let privacy = c.optional_string(root, "privacy", "privacy");
        let repo = c.optional_string(root, "repo", "repo");
        if let Some(repo) = &repo
            && !looks_like_url(repo)
        {
            c.error(
                "repo",
                format!("is {repo:?}; expected a URL like https://github.com/you/plugin"),
            );
        }

        // `ManifestValidate`: category presence and exclusivity.
        let present = [
            ("tools", !plugins.tools.is_empty()),
            ("models", !plugins.models.is_empty()),
            ("endpoints", !plugins.endpoints.is_empty()),
            ("agent_strategies", !plugins.agent_strategies.is_empty()),
            ("datasources", !plugins.datasources.is_empty()),
            ("triggers", !plugins.triggers.is_empty()),
        ];
        let count = present.iter().filter(|(_, p)| *p).count();
        if count == 0 && c.errors.iter().all(|e| !e.field.starts_with("plugins")) {
            c.error(
                "plugins",
                "declares nothing; at least one of endpoint, model, tool, agent_strategy, trigger, or datasource must be provided",
            );
        }
        for exclusive in ["models", "agent_strategies", "datasources", "triggers"] {
            let has = present.iter().any(|(k, p)| *k == exclusive && *p);
            if has && count > 1 {
                let others: Vec<&str> = present
                    .iter()
                    .filter(|(k, p)| *p && *k != exclusive)
                    .map(|(k, _)| *k)
                    .collect();
                c.error(
                    format!("plugins.{exclusive}"),
                    format!(
                        "cannot be provided together with plugins.{}; a {} plugin must declare nothing else \
                         (only tools and endpoints may be combined)",
                        others.join(", plugins."),
                        exclusive.trim_end_matches('s')
                    ),
                );
                break;
            }
        }

        match (c.errors.is_empty(), resource, meta, label, description, created_at_time) {
            (true, Some(resource), Some(meta), Some(label), Some(description), Some(created_at_time)) => Ok(Self {
                version,
                author,
                name,
                label,
                description,
                icon,
                icon_dark,
                resource,
                plugins,
                meta,
                tags,
                created_at,
                created_at_time,
                privacy,
                repo,
                raw,
            }),
            _ => Err(ManifestErrors(c.errors)),
        }
    }

    /// `author/name:version` (`Identity()`).
    pub fn identity(&self) -> String {
        crate::identifier::plugin_identity(&self.author, &self.name, &self.version)
    }

    /// `author/name`.
    pub fn plugin_id(&self) -> String {
        if self.author.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.author, self.name)
        }
    }

    /// The plugin's category by the original's precedence.
    pub fn category(&self) -> PluginCategory {
        let p = &self.plugins;
        if !p.tools.is_empty() {
            PluginCategory::Tool
        } else if !p.models.is_empty() {
            PluginCategory::Model
        } else if !p.datasources.is_empty() {
            PluginCategory::Datasource
        } else if !p.agent_strategies.is_empty() {
            PluginCategory::AgentStrategy
        } else if !p.triggers.is_empty() {
            PluginCategory::Trigger
        } else {
            PluginCategory::Extension
        }
    }
}

/// Times in the forms yaml.v3 accepts for a `time.Time` field: RFC 3339 (`T` or `t`, with or without fractional
/// seconds), a space-separated date and time, or a bare date (UTC).
fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    let utc = FixedOffset::east_opt(0)?;
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f %:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t);
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return t.and_local_timezone(utc).single();
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| t.and_local_timezone(utc).single())
}

/// What go-playground's `url` accepts in practice: a scheme followed by `:` and something.
fn looks_like_url(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, rest)) => {
            !rest.is_empty()
                && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
}

/// Walks the parsed manifest and records problems with their field paths.
#[derive(Default)]
struct Checker {
    errors: Vec<ManifestFieldError>,
}

impl Checker {
    fn error(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.errors.push(ManifestFieldError {
            field: field.into(),
            problem: problem.into(),
        });
    }

    fn max_len(&mut self, field: &str, value: &str, max: usize) {
        let len = value.chars().count();
        if len > max {
            self.error(field, format!("is {len} characters long; at most {max} are allowed"));
        }
    }

    /// A scalar as the string yaml.v3 would decode into a Go string (numbers and booleans as written).
    fn scalar(&mut self, value: &Value, path: &str) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => None,
            _ => {
                self.error(path, "must be a string");
                None
            }
        }
    }

    fn string(&mut self, map: &Map<String, Value>, key: &str, need: Need) -> String {
        self.string_at(map, key, key, need)
    }

    fn string_at(&mut self, map: &Map<String, Value>, key: &str, path: &str, need: Need) -> String {
        let value = map.get(key).and_then(|v| self.scalar(v, path)).unwrap_or_default();
        if value.is_empty() && need == Need::Required && !self.errors.iter().any(|e| e.field == path) {
            self.error(path, "is required");
        }
        value
    }

    fn optional_string(&mut self, map: &Map<String, Value>, key: &str, path: &str) -> Option<String> {
        Some(self.string_at(map, key, path, Need::Optional)).filter(|s| !s.is_empty())
    }

    fn mapping<'a>(&mut self, map: &'a Map<String, Value>, key: &str, path: &str) -> Option<&'a Map<String, Value>> {
        match map.get(key) {
            Some(Value::Object(inner)) => Some(inner),
            None | Some(Value::Null) => {
                self.error(path, "is required");
                None
            }
            Some(_) => {
                self.error(path, "must be a mapping");
                None
            }
        }
    }

    fn string_list(&mut self, map: &Map<String, Value>, key: &str, path: &str) -> Vec<String> {
        match map.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let item_path = format!("{path}[{i}]");
                    let s = self.scalar(v, &item_path);
                    if s.is_none() && !self.errors.iter().any(|e| e.field == item_path) {
                        self.error(item_path, "must be a string");
                    }
                    s
                })
                .collect(),
            Some(_) => {
                self.error(path, "must be a list of strings");
                Vec::new()
            }
        }
    }

    fn i18n(&mut self, map: &Map<String, Value>, key: &str, path: &str) -> Option<I18nObject> {
        let inner = self.mapping(map, key, path)?;
        let mut ok = true;
        for lang in ["en_US", "zh_Hans", "ja_JP", "pt_BR"] {
            let field = format!("{path}.{lang}");
            let text = self.string_at(inner, lang, &field, Need::Optional);
            if lang == "en_US" && text.is_empty() {
                self.error(&field, "is required (the English text)");
                ok = false;
            }
            let len = text.chars().count();
            if len >= 1024 {
                self.error(
                    &field,
                    format!("is {len} characters long; it must be shorter than 1024"),
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        match serde_json::from_value(Value::Object(inner.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(path, format!("is not a localised text: {e}"));
                None
            }
        }
    }

    fn resource(&mut self, root: &Map<String, Value>) -> Option<Resource> {
        let resource = self.mapping(root, "resource", "resource")?;
        let memory = match resource.get("memory") {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(m) if m != 0 => Some(m),
                _ => {
                    self.error(
                        "resource.memory",
                        format!("is {n}; expected a non-zero number of bytes like 268435456"),
                    );
                    None
                }
            },
            None | Some(Value::Null) => {
                self.error(
                    "resource.memory",
                    "is required: the memory the plugin needs, in bytes (e.g. 268435456)",
                );
                None
            }
            Some(_) => {
                self.error("resource.memory", "must be an integer number of bytes");
                None
            }
        };
        let permission = match resource.get("permission") {
            None | Some(Value::Null) => None,
            Some(value) => match serde_json::from_value::<Permissions>(value.clone()) {
                Ok(p) => {
                    if let Some(storage) = &p.storage
                        && !(1024..=1_073_741_824).contains(&storage.size)
                    {
                        self.error(
                            "resource.permission.storage.size",
                            format!("is {}; expected between 1024 and 1073741824 bytes", storage.size),
                        );
                    }
                    Some(p)
                }
                Err(e) => {
                    self.error(
                        "resource.permission",
                        format!("is malformed: {e}; expected tool/model/node/endpoint/app/storage sections with boolean `enabled`"),
                    );
                    None
                }
            },
        };
        Some(Resource {
            memory: memory?,
            permission,
        })
    }

    fn plugins(&mut self, root: &Map<String, Value>) -> PluginExtensions {
        let Some(plugins) = self.mapping(root, "plugins", "plugins") else {
            return PluginExtensions::default();
        };
        let mut list = |key: &str| {
            let path = format!("plugins.{key}");
            let items = self.string_list(plugins, key, &path);
            for (i, item) in items.iter().enumerate() {
                self.max_len(&format!("{path}[{i}]"), item, 128);
            }
            items
        };
        PluginExtensions {
            tools: list("tools"),
            models: list("models"),
            endpoints: list("endpoints"),
            agent_strategies: list("agent_strategies"),
            datasources: list("datasources"),
            triggers: list("triggers"),
        }
    }

    fn meta(&mut self, root: &Map<String, Value>) -> Option<Meta> {
        let meta = self.mapping(root, "meta", "meta")?;
        let version = self.string_at(meta, "version", "meta.version", Need::Required);
        if !version.is_empty() && !VERSION.is_match(&version) {
            self.error(
                "meta.version",
                format!("is {version:?}; expected a version like 0.0.1 matching {VERSION_PATTERN}"),
            );
        }
        let arch = match meta.get("arch") {
            None | Some(Value::Null) => {
                self.error("meta.arch", "is required: a list of amd64 and/or arm64");
                Vec::new()
            }
            _ => self.string_list(meta, "arch", "meta.arch"),
        };
        for (i, a) in arch.iter().enumerate() {
            if a != "amd64" && a != "arm64" {
                self.error(format!("meta.arch[{i}]"), format!("is {a:?}; expected amd64 or arm64"));
            }
        }
        let runner = self.mapping(meta, "runner", "meta.runner").map(|runner| {
            let language = self.string_at(runner, "language", "meta.runner.language", Need::Required);
            if !language.is_empty() && language != "python" {
                self.error(
                    "meta.runner.language",
                    format!("is {language:?}; expected \"python\", the only supported language"),
                );
            }
            let version = self.string_at(runner, "version", "meta.runner.version", Need::Required);
            self.max_len("meta.runner.version", &version, 128);
            let entrypoint = self.string_at(runner, "entrypoint", "meta.runner.entrypoint", Need::Required);
            self.max_len("meta.runner.entrypoint", &entrypoint, 256);
            Runner {
                language,
                version,
                entrypoint,
            }
        });
        let minimum_dify_version = self.optional_string(meta, "minimum_dify_version", "meta.minimum_dify_version");
        Some(Meta {
            version,
            arch,
            runner: runner?,
            minimum_dify_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version: 0.0.1
type: plugin
author: acme
name: hello_world
label:
  en_US: Hello
  zh_Hans: 你好
description:
  en_US: Says hello
icon: icon.svg
resource:
  memory: 268435456
  permission:
    tool:
      enabled: true
    storage:
      enabled: true
      size: 1048576
plugins:
  tools:
    - provider/hello_world.yaml
meta:
  version: 0.0.1
  arch: [amd64, arm64]
  runner:
    language: python
    version: "3.12"
    entrypoint: main
tags: [utilities]
created_at: 2025-01-02T03:04:05.123456+08:00
privacy: PRIVACY.md
"#;

    fn errors_of(yaml: &str) -> ManifestErrors {
        match Manifest::parse(yaml.as_bytes()) {
            Err(PackageError::Manifest(e)) => e,
            other => panic!("expected manifest errors, got {other:?}"),
        }
    }

    #[test]
    fn a_good_manifest_parses() {
        let m = Manifest::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(m.identity(), "acme/hello_world:0.0.1");
        assert_eq!(m.plugin_id(), "acme/hello_world");
        assert_eq!(m.category(), PluginCategory::Tool);
        assert_eq!(m.label.zh_Hans, "你好");
        assert_eq!(m.meta.runner.version, "3.12");
        assert_eq!(m.resource.memory, 268_435_456);
        assert_eq!(m.created_at_time.timestamp(), 1_735_758_245);
    }

    #[test]
    fn each_wrong_field_is_named() {
        let cases = [
            ("version: 0.0.1\n", "version: 1.0\n", "version"),
            ("type: plugin", "type: bundle", "type"),
            ("author: acme", "author: Acme!", "author"),
            ("name: hello_world", "name: Hello World", "name"),
            ("    language: python", "    language: go", "meta.runner.language"),
            ("    entrypoint: main\n", "", "meta.runner.entrypoint"),
            ("  memory: 268435456\n", "", "resource.memory"),
            ("  arch: [amd64, arm64]", "  arch: [x86]", "meta.arch[0]"),
            ("tags: [utilities]", "tags: [nonsense]", "tags[0]"),
            (
                "created_at: 2025-01-02T03:04:05.123456+08:00",
                "created_at: yesterday",
                "created_at",
            ),
            (
                "      size: 1048576",
                "      size: 10",
                "resource.permission.storage.size",
            ),
            ("  en_US: Says hello", "  zh_Hans: 只有中文", "description.en_US"),
            ("icon: icon.svg\n", "", "icon"),
        ];
        for (from, to, field) in cases {
            assert!(GOOD.contains(from), "{from:?}");
            let errors = errors_of(&GOOD.replacen(from, to, 1));
            assert!(errors.has_field(field), "{field}: {errors}");
            assert!(errors.to_string().contains(&format!("`{field}`")), "{errors}");
        }
    }

    /// The original's regexes are Go's, whose `\d` and `\w` are ASCII: a pre-release of letters and digits passes,
    /// non-ASCII digits or letters do not.
    #[test]
    fn versions_follow_gos_ascii_classes() {
        for good in ["0.0.1", "1.22.333-beta_2", "9999.0.1-abcdefghijklmnop"] {
            let yaml = GOOD.replacen("version: 0.0.1\n", &format!("version: {good}\n"), 1);
            let manifest = Manifest::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(manifest.version, good);
        }
        for bad in ["\u{0661}.0.1", "1.0.\u{ff11}", "1.0.0-\u{03b2}eta", "1.0.0-\u{00e9}"] {
            let errors = errors_of(&GOOD.replacen("version: 0.0.1\n", &format!("version: \"{bad}\"\n"), 1));
            assert!(errors.has_field("version"), "{bad}: {errors}");
        }
    }

    #[test]
    fn category_exclusivity() {
        let yaml = GOOD.replace(
            "    - provider/hello_world.yaml",
            "    - provider/hello_world.yaml\n  models:\n    - provider/model.yaml",
        );
        let errors = errors_of(&yaml);
        assert!(errors.has_field("plugins.models"), "{errors}");
        let yaml = GOOD.replace(
            "    - provider/hello_world.yaml",
            "    - provider/hello_world.yaml\n  endpoints:\n    - group/e.yaml",
        );
        assert!(Manifest::parse(yaml.as_bytes()).is_ok());
        let yaml = GOOD.replace("  tools:\n    - provider/hello_world.yaml\n", "  tools: []\n");
        let errors = errors_of(&yaml);
        assert!(errors.has_field("plugins"), "{errors}");
        assert!(errors.to_string().contains("at least one of"), "{errors}");
    }

    #[test]
    fn missing_sections_are_required() {
        let errors = errors_of("version: 0.0.1\ntype: plugin\n");
        for field in [
            "author",
            "name",
            "label",
            "description",
            "icon",
            "resource",
            "plugins",
            "meta",
            "created_at",
        ] {
            assert!(errors.has_field(field), "{field}: {errors}");
        }
    }

    #[test]
    fn time_forms() {
        assert!(parse_time("2024-12-12T12:00:00Z").is_some());
        assert!(parse_time("2024-12-12 12:00:00").is_some());
        assert!(parse_time("2024-12-12").is_some());
        assert!(parse_time("12/12/2024").is_none());
    }
}
