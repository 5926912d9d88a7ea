//! Operations → tools: [`parse_tools`] turns a [`LoadedSpec`] into [`ApiToolBundle`]s in Dify's serde shape.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use toolplane_core::{I18nObject, ParameterOption, ToolParameter, ToolParameterForm, ToolParameterType};

use crate::error::Warning;
use crate::load::{LoadedSpec, SchemaType};
use crate::names::{NameRegistry, derived_name, is_valid_tool_name, sanitize_tool_name};
use crate::refs::Resolver;
use crate::util::{METHODS, scalar_string, str_field, text_field};
use crate::{SpecError, security};

/// Setting for the most operations one spec may have.
pub const ENV_MAX_OPERATIONS: &str = "API_TOOL_MAX_OPERATIONS";
/// Dify's limit, kept as the default of [`ParseOptions::max_operations`].
pub const DEFAULT_MAX_OPERATIONS: usize = 100;

/// Settings of [`parse_tools`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// More operations than this is [`SpecError::TooManyOperations`] ([`ENV_MAX_OPERATIONS`], default 100).
    pub max_operations: usize,
    /// The `X-Request-Env` header of the console request: the first server whose `env` equals it is used.
    pub request_env: Option<String>,
    /// Budget of JSON nodes when one schema is expanded (`$ref`s inlined); beyond it parts are cut and marked.
    pub max_schema_nodes: usize,
    /// Deepest expansion of one schema.
    pub max_schema_depth: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            max_operations: DEFAULT_MAX_OPERATIONS,
            request_env: None,
            max_schema_nodes: 5_000,
            max_schema_depth: 48,
        }
    }
}

impl ParseOptions {
    /// Defaults, with `max_operations` from [`ENV_MAX_OPERATIONS`] when it is set to a positive integer.
    pub fn from_env() -> Self {
        let mut options = Self::default();
        if let Some(n) = std::env::var(ENV_MAX_OPERATIONS)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
        {
            options.max_operations = n;
        }
        options
    }
}

/// Where a tool parameter goes in the HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParameterLocation {
    Path,
    Query,
    Header,
    Cookie,
    /// One property of an object request body.
    Body,
    /// The whole request body (a body that is not an object with properties: array, oneOf, primitive, file).
    RequestBody,
}

impl ParameterLocation {
    /// The wire name (`path`, `query`, `header`, `cookie`, `body`, `request_body`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Query => "query",
            Self::Header => "header",
            Self::Cookie => "cookie",
            Self::Body => "body",
            Self::RequestBody => "request_body",
        }
    }
}

/// A tool parameter with where it goes: serialised as Dify's `ToolParameter` plus `in` (and `wire_name` when the
/// HTTP name differs from the tool parameter's name, e.g. a body property renamed to avoid a clash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToolParameter {
    #[serde(flatten)]
    pub parameter: ToolParameter,
    /// Absent in bundles stored by Dify; the invoker then looks the name up in the operation.
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    pub location: Option<ParameterLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_name: Option<String>,
}

impl ApiToolParameter {
    /// The name used in the HTTP request.
    pub fn wire_name(&self) -> &str {
        self.wire_name.as_deref().unwrap_or(&self.parameter.name)
    }
}

/// One operation as a tool, in the serde shape of Dify's `ApiToolBundle` (plus `path` and
/// `original_operation_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToolBundle {
    /// Server URL joined with the path template, e.g. `https://api.example.com/v1/pets/{petId}`.
    pub server_url: String,
    /// Lower-case HTTP method.
    pub method: String,
    /// The operation's description, else its summary (Dify's choice).
    #[serde(default)]
    pub summary: Option<String>,
    /// The tool name: the operationId when it is a valid function name, else a sanitised or derived one;
    /// unique within the spec. Dify uses this field as the tool name, so it is kept that way.
    #[serde(default)]
    pub operation_id: Option<String>,
    #[serde(default)]
    pub parameters: Option<Vec<ApiToolParameter>>,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub icon: Option<String>,
    /// The operation object with path-level parameters merged in, parameter and request-body `$ref`s resolved
    /// and only the chosen request media type kept.
    #[serde(default)]
    pub openapi: Map<String, Value>,
    #[serde(default)]
    pub output_schema: Map<String, Value>,
    /// The path template (`/pets/{petId}`); empty in bundles stored by Dify.
    #[serde(default)]
    pub path: String,
    /// The spec's own operationId when there is one (it may differ from `operation_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_operation_id: Option<String>,
}

impl ApiToolBundle {
    /// The tool name (`operation_id`, or Dify's fallback `default_tool`).
    pub fn name(&self) -> &str {
        self.operation_id.as_deref().unwrap_or("default_tool")
    }

    /// The core parameters, in order.
    pub fn tool_parameters(&self) -> Vec<ToolParameter> {
        self.parameters.iter().flatten().map(|p| p.parameter.clone()).collect()
    }
}

/// The result of [`parse_tools`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSpec {
    pub schema_type: SchemaType,
    /// The server URL of the document (after `X-Request-Env` selection and variable substitution).
    pub server_url: String,
    /// `info.description`, which Dify stores as the provider description.
    pub description: String,
    pub tools: Vec<ApiToolBundle>,
    /// Credentials to prefill the auth form with (see [`security::prefill_credentials`]).
    pub credentials: Map<String, Value>,
    /// Loader, converter, resolver and mapper warnings, in that order.
    pub warnings: Vec<Warning>,
}

/// Turns every operation of `spec` into a tool.
pub fn parse_tools(spec: &LoadedSpec, options: &ParseOptions) -> Result<ParsedSpec, SpecError> {
    let doc = &spec.document;
    let paths = match doc.get("paths") {
        None | Some(Value::Null) => return Err(SpecError::NoPaths),
        Some(Value::Object(paths)) => paths,
        Some(other) => {
            return Err(SpecError::Invalid(format!(
                "`paths` must be an object mapping paths to operations, not {}",
                crate::util::describe(other)
            )));
        }
    };
    let mut resolver = Resolver::new(doc, options.max_schema_nodes, options.max_schema_depth);
    let mut warnings = spec.warnings.clone();

    // Resolve path items first (they may be `$ref`s) and count operations before any heavy work.
    let mut items: Vec<(&String, &Map<String, Value>)> = Vec::new();
    for (path, item) in paths {
        if let Some(item) = resolver.follow(item, path).and_then(Value::as_object) {
            items.push((path, item));
        }
    }
    let count: usize = items
        .iter()
        .map(|(_, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some_and(Value::is_object))
                .count()
        })
        .sum();
    if count == 0 {
        return Err(SpecError::NoPaths);
    }
    if count > options.max_operations {
        return Err(SpecError::TooManyOperations {
            count,
            limit: options.max_operations,
        });
    }

    let root_servers = doc.get("servers");
    let server_url = pick_server(root_servers, spec, options, &mut warnings, "servers");
    let mut names = NameRegistry::default();
    let mut tools = Vec::with_capacity(count);
    for (path, item) in items {
        let item_servers = item
            .get("servers")
            .filter(|s| s.as_array().is_some_and(|a| !a.is_empty()));
        let item_server = item_servers.map(|s| pick_server(Some(s), spec, options, &mut warnings, path));
        for method in METHODS {
            let Some(op) = item.get(method).and_then(Value::as_object) else {
                continue;
            };
            let location = format!("{} {path}", method.to_uppercase());
            let op_servers = op
                .get("servers")
                .filter(|s| s.as_array().is_some_and(|a| !a.is_empty()));
            let base = match op_servers {
                Some(s) => pick_server(Some(s), spec, options, &mut warnings, &location),
                None => item_server.clone().unwrap_or_else(|| server_url.clone()),
            };
            let mut ctx = OpContext {
                resolver: &mut resolver,
                warnings: &mut warnings,
                location: &location,
            };
            let tool = ctx.tool(path, method, item, op, &base, &mut names);
            tools.push(tool);
        }
    }
    warnings.append(&mut resolver.warnings);
    let (credentials, mut security_warnings) = security::prefill_credentials(doc);
    warnings.append(&mut security_warnings);
    let description = doc
        .pointer("/info/description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(ParsedSpec {
        schema_type: spec.schema_type,
        server_url,
        description,
        tools,
        credentials,
        warnings,
    })
}

/// The stable `toolplane openapi inspect --json` shape.
pub fn inspect_json(parsed: &ParsedSpec) -> Value {
    let tools: Vec<Value> = parsed
        .tools
        .iter()
        .map(|t| {
            let parameters: Vec<Value> = t
                .parameters
                .iter()
                .flatten()
                .map(|p| {
                    let tp = &p.parameter;
                    let mut out = Map::new();
                    out.insert("name".into(), json!(tp.name));
                    out.insert("type".into(), serde_json::to_value(tp.kind).unwrap_or(Value::Null));
                    out.insert("form".into(), serde_json::to_value(tp.form).unwrap_or(Value::Null));
                    out.insert("required".into(), json!(tp.required));
                    out.insert("in".into(), json!(p.location.map(ParameterLocation::as_str)));
                    if !tp.options.is_empty() {
                        out.insert("options".into(), json!(tp.option_values()));
                    }
                    if let Some(schema) = &tp.input_schema {
                        out.insert("input_schema".into(), Value::Object(schema.clone()));
                    }
                    Value::Object(out)
                })
                .collect();
            json!({
                "name": t.name(),
                "operation_id": t.original_operation_id,
                "method": t.method,
                "path": t.path,
                "url": t.server_url,
                "description": t.summary.clone().unwrap_or_default(),
                "parameters": parameters,
            })
        })
        .collect();
    json!({
        "schema_type": parsed.schema_type.as_str(),
        "server_url": parsed.server_url,
        "tools": tools,
        "warnings": parsed.warnings,
    })
}

/// Chooses a server (`X-Request-Env` first, else the first), substitutes its variables and makes it absolute
/// when possible.
fn pick_server(
    servers: Option<&Value>,
    spec: &LoadedSpec,
    options: &ParseOptions,
    warnings: &mut Vec<Warning>,
    location: &str,
) -> String {
    let list: Vec<&Map<String, Value>> = servers
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter(|s| s.get("url").is_some_and(Value::is_string))
        .collect();
    let chosen = options
        .request_env
        .as_deref()
        .and_then(|env| list.iter().find(|s| str_field(s, "env") == Some(env)))
        .or_else(|| list.first());
    let Some(server) = chosen else {
        return absolute_server("/", spec, warnings, location);
    };
    let mut url = str_field(server, "url").unwrap_or("/").trim().to_owned();
    let variables = server.get("variables").and_then(Value::as_object);
    while let Some(start) = url.find('{') {
        let Some(len) = url[start..].find('}') else { break };
        let name = url[start + 1..start + len].to_owned();
        let var = variables.and_then(|v| v.get(&name)).and_then(Value::as_object);
        let value = var.and_then(|v| v.get("default").map(scalar_string)).or_else(|| {
            var.and_then(|v| v.get("enum"))
                .and_then(|e| e.get(0))
                .map(scalar_string)
        });
        let Some(value) = value else {
            warnings.push(Warning::at(
                "server_variable",
                location,
                format!("server URL variable {{{name}}} has no default; it was left in the URL {url:?}"),
            ));
            break;
        };
        url.replace_range(start..=start + len, &value);
    }
    absolute_server(&url, spec, warnings, location)
}

fn absolute_server(url: &str, spec: &LoadedSpec, warnings: &mut Vec<Warning>, location: &str) -> String {
    if url.contains("://") {
        return url.trim_end_matches('/').to_owned();
    }
    if let Some(base) = &spec.source_url
        && let Ok(joined) = base.join(url)
    {
        return joined.as_str().trim_end_matches('/').to_owned();
    }
    let first = url.split('/').next().unwrap_or_default();
    if !url.starts_with('/') && first.contains('.') {
        warnings.push(Warning::at(
            "scheme_less_server",
            location,
            format!("server URL {url:?} has no scheme; https was assumed"),
        ));
        return format!("https://{}", url.trim_end_matches('/'));
    }
    warnings.push(Warning::at(
        "relative_server",
        location,
        format!(
            "server URL {url:?} is relative and the spec was not loaded from a URL; edit the spec's servers to an \
             absolute URL before invoking its tools"
        ),
    ));
    url.trim_end_matches('/').to_owned()
}

struct OpContext<'r, 'a, 'w> {
    resolver: &'r mut Resolver<'a>,
    warnings: &'w mut Vec<Warning>,
    location: &'w str,
}

impl<'a> OpContext<'_, 'a, '_> {
    fn warn(&mut self, code: &str, message: String) {
        self.warnings.push(Warning::at(code, self.location, message));
    }

    fn tool(
        &mut self,
        path: &str,
        method: &str,
        item: &'a Map<String, Value>,
        op: &'a Map<String, Value>,
        server: &str,
        names: &mut NameRegistry,
    ) -> ApiToolBundle {
        let mut openapi = op.clone();
        let merged = self.merged_parameters(item.get("parameters"), op.get("parameters"));
        let mut parameters = Vec::new();
        let mut used: HashSet<String> = HashSet::new();
        let mut resolved_params = Vec::new();
        for param in merged {
            let resolved = self.resolver.inline(&Value::Object(param.clone()), self.location);
            if let Some(p) = self.parameter(&resolved) {
                used.insert(p.parameter.name.clone());
                parameters.push(p);
            }
            resolved_params.push(resolved);
        }
        if resolved_params.is_empty() {
            openapi.remove("parameters");
        } else {
            openapi.insert("parameters".into(), Value::Array(resolved_params));
        }
        if let Some(body) = op.get("requestBody") {
            match self.request_body(body, &mut parameters, &mut used) {
                Some(stored) => openapi.insert("requestBody".into(), stored),
                None => openapi.remove("requestBody"),
            };
        }

        let original = op
            .get("operationId")
            .map(scalar_string)
            .filter(|s| !s.trim().is_empty());
        let wanted = match &original {
            Some(id) if is_valid_tool_name(id) => id.clone(),
            Some(id) => {
                let clean = sanitize_tool_name(id);
                let name = if clean.is_empty() {
                    derived_name(method, path)
                } else {
                    clean
                };
                self.warn(
                    "invalid_operation_id",
                    format!("operationId {id:?} is not a valid tool name (^[a-zA-Z0-9_-]{{1,64}}$); the tool is named {name:?}"),
                );
                name
            }
            None => derived_name(method, path),
        };
        let name = names.claim(&wanted);
        if name != wanted {
            self.warn(
                "duplicated_tool_name",
                format!("tool name {wanted:?} is already taken; this operation is named {name:?}"),
            );
        }
        let summary = text_field(op, "description").or_else(|| text_field(op, "summary"));
        if summary.is_none() {
            self.warn(
                "missing_summary",
                format!(
                    "No summary or description found in operation {} {path}.",
                    method.to_uppercase()
                ),
            );
        }
        let path_part = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        ApiToolBundle {
            server_url: format!("{server}{path_part}"),
            method: method.to_owned(),
            summary,
            operation_id: Some(name),
            parameters: Some(parameters),
            author: String::new(),
            icon: None,
            openapi,
            output_schema: Map::new(),
            path: path.to_owned(),
            original_operation_id: original,
        }
    }

    /// Path-level then operation-level parameters, `$ref`s followed; the operation wins on the same name and `in`.
    fn merged_parameters(
        &mut self,
        path_level: Option<&'a Value>,
        op_level: Option<&'a Value>,
    ) -> Vec<Map<String, Value>> {
        let mut out: Vec<Map<String, Value>> = Vec::new();
        for (level, list) in [("path item", path_level), ("operation", op_level)] {
            let mut seen_here: HashSet<(String, String)> = HashSet::new();
            for raw in list.and_then(Value::as_array).into_iter().flatten() {
                let Some(p) = self.resolver.follow(raw, self.location).and_then(Value::as_object) else {
                    continue;
                };
                let (Some(name), Some(location)) = (str_field(p, "name"), str_field(p, "in")) else {
                    self.warn(
                        "invalid_parameter",
                        format!("a {level} parameter has no `name` or no `in`; it was dropped"),
                    );
                    continue;
                };
                let key = (name.to_owned(), location.to_owned());
                if !seen_here.insert(key.clone()) {
                    self.warn("duplicated_parameter", format!("Parameter {name} is duplicated."));
                    continue;
                }
                let same = |q: &Map<String, Value>| q.get("name") == p.get("name") && q.get("in") == p.get("in");
                if let Some(existing) = out.iter_mut().find(|q| same(q)) {
                    *existing = p.clone();
                } else {
                    out.push(p.clone());
                }
            }
        }
        out
    }

    fn parameter(&mut self, resolved: &Value) -> Option<ApiToolParameter> {
        let p = resolved.as_object()?;
        let name = str_field(p, "name")?.to_owned();
        let location = match str_field(p, "in")? {
            "path" => ParameterLocation::Path,
            "query" => ParameterLocation::Query,
            "header" => ParameterLocation::Header,
            "cookie" => ParameterLocation::Cookie,
            other => {
                self.warn(
                    "unsupported_parameter",
                    format!(
                        "parameter {name:?} is `in: {other}`, which is not an HTTP parameter location; it was dropped"
                    ),
                );
                return None;
            }
        };
        if location == ParameterLocation::Header
            && ["accept", "content-type", "authorization"].contains(&name.to_ascii_lowercase().as_str())
        {
            self.warn(
                "ignored_header",
                format!("header parameter {name:?} is ignored, as OpenAPI specifies; auth comes from the credentials"),
            );
            return None;
        }
        let schema = p
            .get("schema")
            .or_else(|| {
                p.get("content")
                    .and_then(Value::as_object)
                    .and_then(|c| c.values().next())
                    .and_then(|m| m.get("schema"))
            })
            .cloned()
            .unwrap_or_else(|| json!({}));
        let required = location == ParameterLocation::Path || p.get("required") == Some(&Value::Bool(true));
        let description = text_field(p, "description");
        Some(ApiToolParameter {
            parameter: tool_parameter(&name, &schema, description, required),
            location: Some(location),
            wire_name: None,
        })
    }

    /// Adds body parameters; returns the request body to store in the operation (only the chosen media type).
    fn request_body(
        &mut self,
        body: &'a Value,
        parameters: &mut Vec<ApiToolParameter>,
        used: &mut HashSet<String>,
    ) -> Option<Value> {
        let body = self.resolver.follow(body, self.location)?.as_object()?;
        let content = body.get("content").and_then(Value::as_object)?;
        let (media, media_object) = content
            .iter()
            .find(|(m, _)| !m.contains("xml"))
            .or_else(|| content.iter().next())?;
        let media_lower = media.to_ascii_lowercase();
        let schema = media_object
            .get("schema")
            .map(|s| self.resolver.inline(s, self.location))
            .unwrap_or_else(|| json!({}));
        let schema = merge_all_of(schema);
        let required_body = body.get("required") == Some(&Value::Bool(true));
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .filter(|p| !p.is_empty());
        let is_object = schema.get("type").is_none_or(|t| t == "object") && properties.is_some();
        if let (true, Some(properties)) = (is_object, properties) {
            let required: HashSet<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for (prop, prop_schema) in properties {
                let description = prop_schema
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let mut name = prop.clone();
                let mut wire_name = None;
                if used.contains(&name) || !is_valid_parameter_name(&name) {
                    let candidate = format!("body_{}", sanitize_tool_name(prop));
                    self.warn(
                        "duplicated_parameter",
                        format!("Parameter {prop} is duplicated; the body property is exposed as {candidate:?}."),
                    );
                    wire_name = Some(prop.clone());
                    name = candidate;
                }
                used.insert(name.clone());
                parameters.push(ApiToolParameter {
                    parameter: tool_parameter(&name, prop_schema, description, required.contains(prop.as_str())),
                    location: Some(ParameterLocation::Body),
                    wire_name,
                });
            }
        } else {
            let binary_media = !(media_lower.contains("json")
                || media_lower.starts_with("text/")
                || media_lower.contains("form")
                || media_lower.contains("xml"));
            let schema = if binary_media && schema.as_object().is_none_or(Map::is_empty) {
                json!({"type": "string", "format": "binary"})
            } else {
                schema.clone()
            };
            let description = text_field(body, "description").or_else(|| Some(format!("The request body ({media}).")));
            let mut name = "body".to_owned();
            let mut wire_name = None;
            if used.contains(&name) {
                name = "request_body".to_owned();
                wire_name = Some("body".to_owned());
            }
            used.insert(name.clone());
            parameters.push(ApiToolParameter {
                parameter: tool_parameter(&name, &schema, description, required_body),
                location: Some(ParameterLocation::RequestBody),
                wire_name,
            });
        }
        let mut stored_media = media_object.as_object().cloned().unwrap_or_default();
        stored_media.insert("schema".into(), schema);
        let mut stored = body.clone();
        stored.insert(
            "content".into(),
            Value::Object(Map::from_iter([(media.clone(), Value::Object(stored_media))])),
        );
        Some(Value::Object(stored))
    }
}

fn is_valid_parameter_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64
}

/// Folds a top-level `allOf` of objects into one object schema (properties and `required` united).
fn merge_all_of(schema: Value) -> Value {
    let Value::Object(mut map) = schema else { return schema };
    let Some(Value::Array(parts)) = map.remove("allOf") else {
        return Value::Object(map);
    };
    let mut properties = map
        .remove("properties")
        .and_then(|p| if let Value::Object(p) = p { Some(p) } else { None })
        .unwrap_or_default();
    let mut required: Vec<Value> = match map.remove("required") {
        Some(Value::Array(r)) => r,
        _ => Vec::new(),
    };
    for part in parts {
        let part = merge_all_of(part);
        let Value::Object(part) = part else { continue };
        for (key, value) in part {
            match (key.as_str(), value) {
                ("properties", Value::Object(p)) => properties.extend(p),
                ("required", Value::Array(r)) => required.extend(r),
                (_, value) => {
                    map.entry(key).or_insert(value);
                }
            }
        }
    }
    if !properties.is_empty() {
        map.insert("properties".into(), Value::Object(properties));
        map.entry("type").or_insert(json!("object"));
    }
    if !required.is_empty() {
        map.insert("required".into(), Value::Array(required));
    }
    Value::Object(map)
}

/// The non-null type names of a schema (`type: x` or 3.1 `type: [x, "null"]`).
fn schema_types(schema: &Map<String, Value>) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => Vec::new(),
    }
}

fn is_binary(schema: &Map<String, Value>) -> bool {
    str_field(schema, "format") == Some("binary")
}

/// The tool type for a (resolved) schema.
fn kind_of(schema: &Value, depth: usize) -> ToolParameterType {
    use ToolParameterType as T;
    let Some(map) = schema.as_object() else {
        return T::String; // boolean schemas (`true`/`false`) accept anything
    };
    if is_binary(map) {
        return T::File;
    }
    let types = schema_types(map);
    match types.first().copied() {
        Some("integer" | "number") => T::Number,
        Some("boolean") => T::Boolean,
        Some("string") => T::String,
        Some("array") => match map.get("items").and_then(Value::as_object) {
            Some(items) if is_binary(items) => T::Files,
            _ => T::Array,
        },
        Some("object") => T::Object,
        Some(_) => T::String,
        None => {
            if map.contains_key("properties") || map.contains_key("additionalProperties") {
                return T::Object;
            }
            if map.contains_key("items") {
                return T::Array;
            }
            if depth > 8 {
                return T::String;
            }
            for key in ["oneOf", "anyOf", "allOf"] {
                if let Some(Value::Array(branches)) = map.get(key) {
                    let kinds: HashSet<T> = branches
                        .iter()
                        .filter(|b| !(b.get("type") == Some(&json!("null"))))
                        .map(|b| kind_of(b, depth + 1))
                        .collect();
                    return match kinds.len() {
                        1 => kinds.into_iter().next().unwrap_or(T::String),
                        _ if kinds.contains(&T::Object) || kinds.contains(&T::Array) => T::Object,
                        _ => T::String,
                    };
                }
            }
            T::String
        }
    }
}

/// Builds a core parameter from a name and a resolved schema.
fn tool_parameter(name: &str, schema: &Value, description: Option<String>, required: bool) -> ToolParameter {
    use ToolParameterType as T;
    let map = schema.as_object();
    let enum_values: Vec<&Value> = map
        .and_then(|m| {
            m.get("enum")
                .and_then(Value::as_array)
                .map(|e| e.iter().collect())
                .or_else(|| m.get("const").map(|c| vec![c]))
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !v.is_null() && !v.is_array() && !v.is_object())
        .collect();
    let mut kind = kind_of(schema, 0);
    let description = description
        .or_else(|| map.and_then(|m| text_field(m, "description")))
        .or_else(|| map.and_then(|m| text_field(m, "title")));
    let mut parameter = ToolParameter::new(name, kind, ToolParameterForm::Llm);
    if !enum_values.is_empty() && matches!(kind, T::String | T::Number | T::Boolean) {
        kind = T::Select;
        parameter.kind = kind;
        parameter.options = enum_values
            .iter()
            .map(|v| {
                let value = scalar_string(v);
                ParameterOption {
                    label: I18nObject::new(value.clone()),
                    value,
                    icon: None,
                }
            })
            .collect();
    }
    parameter.required = required;
    if let Some(text) = &description {
        parameter.human_description = Some(I18nObject::new(text.clone()));
        parameter.placeholder = Some(I18nObject::new(text.clone()));
    }
    parameter.llm_description = Some(description.unwrap_or_default());
    if let Some(m) = map {
        parameter.default = sanitize_default(m.get("default"), &parameter);
        if kind == T::Number {
            parameter.min = m.get("minimum").and_then(Value::as_f64);
            parameter.max = m.get("maximum").and_then(Value::as_f64);
        }
        if matches!(kind, T::Object | T::Array) || (kind == T::String && is_composite(m)) {
            parameter.input_schema = Some(m.clone());
        }
    }
    parameter
}

fn is_composite(map: &Map<String, Value>) -> bool {
    ["oneOf", "anyOf", "allOf"].iter().any(|k| map.contains_key(*k))
}

/// A default is kept only when it is a scalar that fits the parameter (Dify drops list and dict defaults).
fn sanitize_default(default: Option<&Value>, parameter: &ToolParameter) -> Option<Value> {
    use ToolParameterType as T;
    let value = default?;
    match (parameter.kind, value) {
        (T::Select, v) if !v.is_array() && !v.is_object() && !v.is_null() => {
            let text = scalar_string(v);
            parameter
                .option_values()
                .contains(&text.as_str())
                .then_some(Value::String(text))
        }
        (T::Number, Value::Number(_)) | (T::Boolean, Value::Bool(_)) | (T::String, Value::String(_)) => {
            Some(value.clone())
        }
        (T::String, Value::Number(_) | Value::Bool(_)) => Some(Value::String(scalar_string(value))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_of_is_merged() {
        let merged = merge_all_of(json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer"}}}
        ]}));
        assert_eq!(merged["properties"]["b"]["type"], "integer");
        assert_eq!(merged["required"], json!(["a"]));
        assert_eq!(merged["type"], "object");
    }

    #[test]
    fn kinds() {
        use ToolParameterType as T;
        assert_eq!(kind_of(&json!({"type": ["integer", "null"]}), 0), T::Number);
        assert_eq!(kind_of(&json!(true), 0), T::String);
        assert_eq!(
            kind_of(
                &json!({"type": "array", "items": {"type": "string", "format": "binary"}}),
                0
            ),
            T::Files
        );
        assert_eq!(
            kind_of(&json!({"oneOf": [{"type": "string"}, {"type": "null"}]}), 0),
            T::String
        );
        assert_eq!(
            kind_of(&json!({"oneOf": [{"type": "string"}, {"type": "object"}]}), 0),
            T::Object
        );
    }
}
