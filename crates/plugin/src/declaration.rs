//! Provider declarations referenced by the manifest's `plugins` section.
//!
//! Tool providers are typed into toolplane-core's [`ToolProviderEntity`] and [`ToolEntity`]; the other categories
//! (model, endpoint, agent strategy, datasource, trigger) are loaded as JSON values with their child files expanded,
//! which is what listing needs. As in the original, each category holds one provider: when the manifest lists
//! several files for a category, the last one wins.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};
use toolplane_core::{ToolEntity, ToolLabelEnum, ToolProviderEntity};

use crate::archive::Archive;
use crate::error::PackageError;
use crate::manifest::Manifest;

static IDENTITY_NAME: LazyLock<Regex> = LazyLock::new(|| crate::go_pattern(r"^[a-zA-Z0-9_-]+$"));

/// A tool provider and its tools.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDeclaration {
    /// Path of the provider YAML inside the package.
    pub path: String,
    /// The provider, with `plugin_id` set to the package's `author/name`.
    pub provider: ToolProviderEntity,
    /// The tools, in declaration order, with `identity.provider` set to the provider's name.
    pub tools: Vec<ToolEntity>,
    /// Tool YAML files the provider referenced.
    pub tool_files: Vec<String>,
    /// The provider as JSON in the original's declaration shape: `credentials_schema` normalised to a list,
    /// `tools` holding the tool declarations, identity defaults filled from the manifest.
    pub raw: Value,
}

/// A declaration of another category, loaded for listing.
#[derive(Debug, Clone, PartialEq)]
pub struct GenericDeclaration {
    /// Path of the provider YAML inside the package.
    pub path: String,
    /// The provider with its child files (endpoints, strategies, datasources, events, models) expanded inline.
    pub raw: Value,
}

/// Every declaration of a package.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declarations {
    pub tool: Option<ToolDeclaration>,
    pub model: Option<GenericDeclaration>,
    pub endpoint: Option<GenericDeclaration>,
    pub agent_strategy: Option<GenericDeclaration>,
    pub datasource: Option<GenericDeclaration>,
    pub trigger: Option<GenericDeclaration>,
}

pub(crate) fn load(archive: &Archive, manifest: &Manifest) -> Result<Declarations, PackageError> {
    let mut out = Declarations::default();
    for path in &manifest.plugins.tools {
        out.tool = Some(load_tool_provider(archive, manifest, path)?);
    }
    for path in &manifest.plugins.endpoints {
        out.endpoint = Some(load_generic(archive, path, "endpoints")?);
    }
    for path in &manifest.plugins.models {
        out.model = Some(load_model(archive, manifest, path)?);
    }
    for path in &manifest.plugins.agent_strategies {
        out.agent_strategy = Some(load_generic(archive, path, "strategies")?);
    }
    for path in &manifest.plugins.datasources {
        out.datasource = Some(load_generic(archive, path, "datasources")?);
    }
    for path in &manifest.plugins.triggers {
        let mut declaration = load_generic(archive, path, "events")?;
        fill_identity_defaults(&mut declaration.raw, manifest);
        out.trigger = Some(declaration);
    }
    Ok(out)
}

fn read_yaml(archive: &Archive, path: &str, referenced_by: &str) -> Result<Value, PackageError> {
    let bytes = archive.file(path).ok_or_else(|| PackageError::MissingFile {
        path: path.to_owned(),
        referenced_by: referenced_by.to_owned(),
    })?;
    serde_saphyr::from_slice(bytes).map_err(|e| PackageError::Yaml {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn declaration_error(path: &str, message: impl Into<String>) -> PackageError {
    PackageError::Declaration {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Expands `key` (a list of file paths or inline mappings) into a list of declarations.
fn expand_children(
    archive: &Archive,
    provider: &mut Value,
    path: &str,
    key: &str,
) -> Result<Vec<String>, PackageError> {
    let mut files = Vec::new();
    let Some(map) = provider.as_object_mut() else {
        return Err(declaration_error(path, "must be a mapping"));
    };
    let Some(Value::Array(items)) = map.get(key).cloned() else {
        map.insert(key.to_owned(), Value::Array(Vec::new()));
        return Ok(files);
    };
    let mut expanded = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(file) => {
                expanded.push(read_yaml(archive, &file, path)?);
                files.push(file);
            }
            Value::Object(_) => expanded.push(item),
            _ => {
                return Err(declaration_error(
                    path,
                    format!("`{key}` entries must be file paths or mappings"),
                ));
            }
        }
    }
    map.insert(key.to_owned(), Value::Array(expanded));
    Ok(files)
}

fn load_generic(archive: &Archive, path: &str, children: &str) -> Result<GenericDeclaration, PackageError> {
    let mut raw = read_yaml(archive, path, "manifest.yaml")?;
    expand_children(archive, &mut raw, path, children)?;
    Ok(GenericDeclaration {
        path: path.to_owned(),
        raw,
    })
}

/// `FillInDefaultValues`: an identity without description or tags takes the manifest's.
fn fill_identity_defaults(raw: &mut Value, manifest: &Manifest) {
    let Some(identity) = raw.get_mut("identity").and_then(Value::as_object_mut) else {
        return;
    };
    let has_description = identity
        .get("description")
        .and_then(|d| d.get("en_US"))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has_description && let Some(description) = manifest.raw.get("description") {
        identity.insert("description".into(), description.clone());
    }
    let has_tags = identity
        .get("tags")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    if !has_tags {
        identity.insert(
            "tags".into(),
            Value::Array(manifest.tags.iter().cloned().map(Value::String).collect()),
        );
    }
}

fn load_tool_provider(archive: &Archive, manifest: &Manifest, path: &str) -> Result<ToolDeclaration, PackageError> {
    let mut raw = read_yaml(archive, path, "manifest.yaml")?;
    let tool_files = expand_children(archive, &mut raw, path, "tools")?;
    fill_identity_defaults(&mut raw, manifest);
    let Some(map) = raw.as_object_mut() else {
        return Err(declaration_error(path, "must be a mapping"));
    };

    // `credentials_for_provider` stands in for an empty `credentials_schema`; a mapping becomes a list whose
    // entries take their key as `name`.
    let schema_empty = match map.get("credentials_schema") {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    let schema = if schema_empty {
        map.get("credentials_for_provider").cloned()
    } else {
        map.get("credentials_schema").cloned()
    };
    let schema = match schema {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(Value::Object(entries)) => entries
            .into_iter()
            .filter_map(|(name, config)| match config {
                Value::Object(mut config) => {
                    config.insert("name".into(), Value::String(name));
                    Some(Value::Object(config))
                }
                _ => None,
            })
            .collect(),
        Some(_) => {
            return Err(declaration_error(
                path,
                "`credentials_schema` must be a list or a mapping",
            ));
        }
    };
    map.insert("credentials_schema".into(), Value::Array(schema));
    map.remove("credentials_for_provider");

    let identity = map
        .get("identity")
        .and_then(Value::as_object)
        .ok_or_else(|| declaration_error(path, "`identity` is required"))?;
    let provider_name = identity
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !IDENTITY_NAME.is_match(&provider_name) {
        return Err(declaration_error(
            path,
            format!("`identity.name` is {provider_name:?}; expected letters, digits, `_` or `-` (^[a-zA-Z0-9_-]+$)"),
        ));
    }
    for field in ["author", "icon"] {
        if identity.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(declaration_error(path, format!("`identity.{field}` is required")));
        }
    }

    // The typed entity: toolplane-core knows the console's tag set only, so unknown plugin tags (e.g. `agent`)
    // are dropped from the typed identity; `raw` keeps them.
    let mut typed = Value::Object(map.clone());
    if let Some(tags) = typed.pointer_mut("/identity/tags").and_then(Value::as_array_mut) {
        tags.retain(|t| serde_json::from_value::<ToolLabelEnum>(t.clone()).is_ok());
    }
    let tools_raw = typed
        .as_object_mut()
        .and_then(|m| m.remove("tools"))
        .unwrap_or_default();
    let mut provider: ToolProviderEntity = serde_json::from_value(typed)
        .map_err(|e| declaration_error(path, format!("is not a valid tool provider: {e}")))?;
    provider.plugin_id = Some(manifest.plugin_id());

    let mut tools = Vec::new();
    for (index, mut tool) in tools_raw
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let source = tool_files
            .get(index)
            .map_or_else(|| format!("{path} (tools[{index}])"), Clone::clone);
        let name = tool
            .pointer("/identity/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !IDENTITY_NAME.is_match(&name) {
            return Err(declaration_error(
                &source,
                format!("`identity.name` is {name:?}; expected letters, digits, `_` or `-` (^[a-zA-Z0-9_-]+$)"),
            ));
        }
        if let Some(identity) = tool.get_mut("identity").and_then(Value::as_object_mut) {
            identity.insert("provider".into(), Value::String(provider_name.clone()));
        }
        let entity: ToolEntity = serde_json::from_value(tool)
            .map_err(|e| declaration_error(&source, format!("is not a valid tool declaration: {e}")))?;
        tools.push(entity);
    }

    Ok(ToolDeclaration {
        path: path.to_owned(),
        provider,
        tools,
        tool_files,
        raw,
    })
}

const MODEL_TYPES: [&str; 6] = ["llm", "text_embedding", "tts", "speech2text", "moderation", "rerank"];

/// Model providers reference their models by glob (`models.<type>.predefined`) and order them with position files
/// (`models.<type>.position`); the expanded provider gets `models: [..]` and `position: {<type>: [..]}`.
fn load_model(archive: &Archive, manifest: &Manifest, path: &str) -> Result<GenericDeclaration, PackageError> {
    let mut raw = read_yaml(archive, path, "manifest.yaml")?;
    let Some(map) = raw.as_object_mut() else {
        return Err(declaration_error(path, "must be a mapping"));
    };
    let mut patterns = Vec::new();
    let mut positions = Map::new();
    if let Some(Value::Object(models)) = map.get("models") {
        for model_type in MODEL_TYPES {
            let Some(Value::Object(spec)) = models.get(model_type) else {
                continue;
            };
            if let Some(Value::String(position_file)) = spec.get("position") {
                positions.insert(model_type.to_owned(), read_yaml(archive, position_file, path)?);
            }
            if let Some(Value::Array(globs)) = spec.get("predefined") {
                patterns.extend(globs.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
    }
    let matchers = patterns
        .iter()
        .map(|p| glob_regex(p).map_err(|e| declaration_error(path, format!("bad model pattern {p:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut models = Vec::new();
    for file in &archive.files {
        if file.path.ends_with("_position.yaml") {
            continue;
        }
        for matcher in &matchers {
            if matcher.is_match(&file.path) {
                models.push(read_yaml(archive, &file.path, path)?);
            }
        }
    }
    map.insert("models".into(), Value::Array(models));
    if !positions.is_empty() {
        map.insert("position".into(), Value::Object(positions));
    }
    if map.get("description").is_none_or(Value::is_null)
        && let Some(description) = manifest.raw.get("description")
    {
        map.insert("description".into(), description.clone());
    }
    Ok(GenericDeclaration {
        path: path.to_owned(),
        raw,
    })
}

/// A Go `filepath.Match` pattern as a regex: `*` and `?` never cross `/`, `[...]` classes (`^` negates).
fn glob_regex(pattern: &str) -> Result<Regex, regex::Error> {
    let mut out = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if matches!(c, '[' | '\\' | '&' | '~' | '|') {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push(']');
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push_str(&regex::escape(&next.to_string()));
                }
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    out.push('$');
    Regex::new(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_go() {
        let g = glob_regex("models/llm/*.yaml").unwrap();
        assert!(g.is_match("models/llm/gpt-4.yaml"));
        assert!(!g.is_match("models/llm/sub/gpt-4.yaml"));
        assert!(!g.is_match("models/llm/gpt-4.yml"));
        assert!(glob_regex("models/[a-c]?.yaml").unwrap().is_match("models/b1.yaml"));
    }
}
