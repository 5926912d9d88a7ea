//! MCP servers as toolplane tool providers.
//!
//! An [`McpToolProvider`] is built from a stored provider record ([`McpProviderConfig`]: endpoint, decrypted headers,
//! timeouts and the cached `tools/list` result) and an [`McpConnector`] that opens connections. Listing tools never
//! touches the network (the cache is the source, as in Dify); invoking one connects, calls `tools/call` and maps the
//! result to [`ToolInvokeMessage`]s.
//!
//! Tasks: when the server offers them (see [`crate::client::tasks`]), a tool whose cached declaration says
//! `execution.taskSupport: "required"` is always called as a task, and an `"optional"` one when the call may
//! take longer than [`TASK_WHEN_LONGER_THAN`] (the provider's `sse_read_timeout`, 300 s by default, is its time
//! limit): a response held open that long is what proxies and load balancers cut (their idle limits are commonly
//! 60 s), while each poll of a task is short. Shorter calls stay one round trip.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use toolplane_core::{
    I18nObject, MessageStream, Tool, ToolDescription, ToolEntity, ToolError, ToolIdentity, ToolInvokeMessage,
    ToolParameter, ToolParameterForm, ToolParameterType, ToolProvider, ToolProviderEntity, ToolProviderIdentity,
    ToolProviderType, ToolRuntime,
};
use toolplane_net::{NetError, SafeClient, TimeoutPhase};

use crate::client::{CallOptions, ClientOptions, McpClient, McpError, StdioCommand, TransportKind};
use crate::protocol::{self, CallToolResult, Content, TaskSupport};

/// An optional-task tool runs as a task when its call may take longer than this (see the [module docs](self)).
pub const TASK_WHEN_LONGER_THAN: Duration = Duration::from_secs(60);

/// Whether a call of a tool with `support` and time limit `timeout` runs as a task (when the server offers tasks).
pub fn runs_as_task(support: TaskSupport, timeout: Duration) -> bool {
    match support {
        TaskSupport::Required => true,
        TaskSupport::Optional => timeout > TASK_WHEN_LONGER_THAN,
        TaskSupport::Forbidden => false,
    }
}

/// Where an MCP server lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpEndpoint {
    /// A remote server (streamable HTTP or legacy SSE, detected).
    Http { url: String },
    /// A local program (administrators only).
    Stdio(StdioCommand),
}

/// A stored MCP provider, decrypted (Dify's `MCPToolProvider` record).
#[derive(Debug, Clone)]
pub struct McpProviderConfig {
    /// The record id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The id agents and workflows use (`provider_id`), unique per tenant.
    pub server_identifier: String,
    /// Where the server lives.
    pub endpoint: McpEndpoint,
    /// Headers for every request, decrypted; include `Authorization` from stored OAuth tokens here
    /// (Dify's `decrypt_authentication`: custom headers win, else `"{Token_type} {access_token}"`).
    pub headers: BTreeMap<String, String>,
    /// Connection/handshake timeout (Dify `timeout`, default 30 s).
    pub timeout: Duration,
    /// Longest wait for a tool's result and longest silence on a stream (Dify `sse_read_timeout`, default 300 s).
    pub sse_read_timeout: Duration,
    /// Icon (URL, file key or emoji JSON, passed through).
    pub icon: String,
    /// Author shown in the console.
    pub author: String,
    /// The cached `tools/list` result.
    pub tools: Vec<protocol::Tool>,
}

impl McpProviderConfig {
    /// Parses the cached tools JSON of a record (`tool_mcp_providers.tools`): an array of MCP `Tool` objects.
    /// Entries that are not tools are skipped with a warning, so one bad entry does not hide the others.
    pub fn parse_tools_json(json: &str) -> Result<Vec<protocol::Tool>, ToolError> {
        let value: Value = serde_json::from_str(if json.trim().is_empty() { "[]" } else { json })
            .map_err(|e| ToolError::Internal(format!("cached MCP tools are not valid JSON: {e}")))?;
        let Value::Array(items) = value else {
            return Err(ToolError::Internal("cached MCP tools must be a JSON array".into()));
        };
        Ok(items
            .into_iter()
            .filter_map(|item| match serde_json::from_value::<protocol::Tool>(item) {
                Ok(tool) => Some(tool),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an invalid cached MCP tool");
                    None
                }
            })
            .collect())
    }

    /// Serialises tools for the cache column (null descriptions become `""`, as Dify stores them).
    pub fn tools_json(tools: &[protocol::Tool]) -> String {
        let normalised: Vec<protocol::Tool> = tools
            .iter()
            .cloned()
            .map(|mut t| {
                t.description.get_or_insert_with(String::new);
                t
            })
            .collect();
        serde_json::to_string(&normalised).unwrap_or_else(|_| "[]".to_owned())
    }

    /// Client options for this record.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            timeout: self.timeout,
            sse_read_timeout: self.sse_read_timeout,
            headers: self.headers.clone(),
            ..ClientOptions::default()
        }
    }
}

/// Opens connections to MCP servers; the server crate may pool or instrument them.
#[async_trait]
pub trait McpConnector: Send + Sync {
    /// Connects (and handshakes) to the server of `config`.
    async fn connect(&self, config: &McpProviderConfig) -> Result<McpClient, McpError>;

    /// Gives a connection back after a call. The default ends it (`DELETE` of the session, stopping a child
    /// process); a pooling connector keeps it for the next call.
    async fn release(&self, _config: &McpProviderConfig, client: McpClient) {
        client.close().await;
    }

    /// The connection broke during a call: a pooling connector forgets it and says `true`, so the call is made
    /// once more on a fresh connection; the default says `false`.
    async fn discard(&self, _config: &McpProviderConfig, _client: &McpClient) -> bool {
        false
    }
}

/// The default connector: HTTP through a [`SafeClient`]; stdio only when allowed.
#[derive(Debug, Clone)]
pub struct DefaultConnector {
    http: SafeClient,
    allow_stdio: bool,
}

impl DefaultConnector {
    /// HTTP only.
    pub fn new(http: SafeClient) -> Self {
        Self {
            http,
            allow_stdio: false,
        }
    }

    /// Builder: also start stdio servers (local programs; only for records an administrator created).
    pub fn allow_stdio(mut self, allow: bool) -> Self {
        self.allow_stdio = allow;
        self
    }
}

#[async_trait]
impl McpConnector for DefaultConnector {
    async fn connect(&self, config: &McpProviderConfig) -> Result<McpClient, McpError> {
        match &config.endpoint {
            McpEndpoint::Http { url } => McpClient::connect_http(self.http.clone(), url, config.client_options()).await,
            McpEndpoint::Stdio(command) if self.allow_stdio => {
                McpClient::connect_stdio(command.clone(), config.client_options()).await
            }
            McpEndpoint::Stdio(_) => Err(McpError::Config(
                "stdio MCP servers are disabled; an administrator must enable local servers".into(),
            )),
        }
    }
}

/// One MCP server as a provider of type `mcp`; its id is the `server_identifier`.
pub struct McpToolProvider {
    config: Arc<McpProviderConfig>,
    entity: ToolProviderEntity,
    tools: Vec<Arc<dyn Tool>>,
}

impl McpToolProvider {
    /// A provider over a stored record and a connector.
    pub fn new(config: McpProviderConfig, connector: Arc<dyn McpConnector>) -> Self {
        let config = Arc::new(config);
        let entity = ToolProviderEntity {
            identity: ToolProviderIdentity {
                author: config.author.clone(),
                name: config.server_identifier.clone(),
                description: I18nObject::new(""),
                icon: config.icon.clone(),
                icon_dark: None,
                label: I18nObject::new(config.name.clone()),
                tags: Vec::new(),
            },
            plugin_id: None,
            credentials_schema: Vec::new(),
            oauth_schema: None,
        };
        let tools = config
            .tools
            .iter()
            .map(|tool| {
                Arc::new(McpTool {
                    entity: tool_entity(&config, tool),
                    task_support: tool.task_support(),
                    config: Arc::clone(&config),
                    connector: Arc::clone(&connector),
                }) as Arc<dyn Tool>
            })
            .collect();
        Self { config, entity, tools }
    }

    /// The record this provider was built from.
    pub fn config(&self) -> &McpProviderConfig {
        &self.config
    }
}

#[async_trait]
impl ToolProvider for McpToolProvider {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Mcp
    }

    // Agents and workflows address MCP providers by `server_identifier`, not by the record id (as in Dify).
    #[allow(clippy::misnamed_getters)]
    fn id(&self) -> &str {
        &self.config.server_identifier
    }

    fn entity(&self) -> &ToolProviderEntity {
        &self.entity
    }

    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        Ok(self.tools.clone())
    }
}

fn tool_entity(config: &McpProviderConfig, tool: &protocol::Tool) -> ToolEntity {
    let description = tool.description.clone().unwrap_or_default();
    let parameters = schema_to_parameters(&tool.input_schema);
    ToolEntity {
        identity: ToolIdentity {
            author: config.author.clone(),
            name: tool.name.clone(),
            label: I18nObject::new(tool.title.clone().unwrap_or_else(|| tool.name.clone())),
            provider: config.server_identifier.clone(),
            icon: Some(config.icon.clone()).filter(|i| !i.is_empty()),
        },
        has_runtime_parameters: !parameters.is_empty(),
        parameters,
        description: Some(ToolDescription {
            human: I18nObject::new(description.clone()),
            llm: description,
        }),
        output_schema: match &tool.output_schema {
            Some(Value::Object(schema)) => schema.clone(),
            _ => Map::new(),
        },
    }
}

/// Turns a tool's input schema into parameters (Dify's `convert_mcp_schema_to_parameter`, without its losses):
/// one `form=llm` parameter per top-level property; `required` from the schema's `required`. Simple types map to
/// string/number/boolean; `array` and `object` keep their full JSON Schema in `input_schema`; properties whose type
/// cannot be pinned to one kind (`anyOf`/`oneOf` of different types, type lists, `$ref`) become `any` with their
/// schema in `input_schema`, so values reach the server unchanged.
pub fn schema_to_parameters(schema: &Value) -> Vec<ToolParameter> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    properties
        .iter()
        .map(|(name, property)| {
            let kind = parameter_kind(property);
            let mut parameter = ToolParameter::new(name.clone(), kind, ToolParameterForm::Llm);
            if required.contains(&name.as_str()) {
                parameter.required = true;
            }
            let description = property
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            parameter.human_description = Some(I18nObject::new(description.clone()));
            parameter.llm_description = Some(description);
            if let Some(default) = property.get("default") {
                parameter.default = Some(default.clone());
            }
            if matches!(
                kind,
                ToolParameterType::Array | ToolParameterType::Object | ToolParameterType::Any
            ) && let Value::Object(schema) = property
            {
                parameter.input_schema = Some(schema.clone());
            }
            parameter
        })
        .collect()
}

/// The kind of one property schema.
fn parameter_kind(property: &Value) -> ToolParameterType {
    match single_type(property, 0) {
        Some("string") => ToolParameterType::String,
        Some("integer" | "number") => ToolParameterType::Number,
        Some("boolean") => ToolParameterType::Boolean,
        Some("array") => ToolParameterType::Array,
        Some("object") => ToolParameterType::Object,
        // `null` alone, unknown names, no type at all: a string, as Dify does.
        Some(_) => ToolParameterType::String,
        None => ToolParameterType::Any,
    }
}

/// The one non-null JSON type a schema allows, `Some("string")` when it says nothing, `None` when it allows
/// several (or cannot be known without resolving `$ref`).
fn single_type(schema: &Value, depth: usize) -> Option<&str> {
    if depth > 10 {
        return None;
    }
    let Value::Object(map) = schema else {
        return Some("string");
    };
    if map.contains_key("$ref") {
        return None;
    }
    match map.get("type") {
        Some(Value::String(t)) if t == "null" => return Some("string"),
        Some(Value::String(t)) => return Some(t),
        Some(Value::Array(types)) => {
            let non_null: Vec<&str> = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            return match non_null.as_slice() {
                [] => Some("string"),
                [one] => Some(one),
                _ => None,
            };
        }
        _ => {}
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(options)) = map.get(key) {
            let mut found: Option<&str> = None;
            for option in options {
                if option.get("type").and_then(Value::as_str) == Some("null") {
                    continue;
                }
                let t = single_type(option, depth + 1)?;
                match found {
                    None => found = Some(t),
                    Some(prev) if prev == t || (key == "allOf") => {}
                    Some(_) => return None,
                }
            }
            return Some(found.unwrap_or("string"));
        }
    }
    if map.contains_key("properties") {
        return Some("object");
    }
    if map.contains_key("items") {
        return Some("array");
    }
    Some("string")
}

/// One tool of an MCP server.
pub struct McpTool {
    entity: ToolEntity,
    /// `execution.taskSupport` of the cached declaration.
    task_support: TaskSupport,
    config: Arc<McpProviderConfig>,
    connector: Arc<dyn McpConnector>,
}

#[async_trait]
impl Tool for McpTool {
    fn entity(&self) -> &ToolEntity {
        &self.entity
    }

    async fn invoke(
        &self,
        _runtime: ToolRuntime,
        parameters: Map<String, Value>,
        cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        // Dify drops absent and blank-string arguments.
        let arguments: Map<String, Value> = parameters
            .into_iter()
            .filter(|(_, v)| !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty()))
            .collect();
        let connect = self.connector.connect(&self.config);
        let client = tokio::select! {
            client = connect => client.map_err(|e| connection_error(&self.config, e))?,
            _ = cancel.cancelled() => return Err(ToolError::Cancelled),
        };
        let options = CallOptions {
            timeout: Some(self.config.sse_read_timeout),
            cancel: cancel.clone(),
            as_task: runs_as_task(self.task_support, self.config.sse_read_timeout),
        };
        let name = &self.entity.identity.name;
        let mut client = client;
        let mut result = client.call_tool(name, arguments.clone(), options.clone()).await;
        // A kept connection may have died since its last use (server restarted, child exited) or its token been
        // revoked: when the pool forgets it, try once more on a fresh one (which refreshes tokens after a 401).
        // Only failures that mean the call was not carried out qualify.
        let stdio = client.server().await.transport == TransportKind::Stdio;
        if let Err(e) = &result
            && not_carried_out(e, stdio)
            && self.connector.discard(&self.config, &client).await
        {
            let connect = self.connector.connect(&self.config);
            client = tokio::select! {
                client = connect => client.map_err(|e| connection_error(&self.config, e))?,
                _ = cancel.cancelled() => return Err(ToolError::Cancelled),
            };
            result = client.call_tool(name, arguments, options).await;
        }
        // Ending (or pooling) the session is not the caller's concern; do it in the background.
        let connector = Arc::clone(&self.connector);
        let config = Arc::clone(&self.config);
        tokio::spawn(async move { connector.release(&config, client).await });
        let result = result.map_err(|e| call_error(&self.config, e))?;
        let messages = result_to_messages(result)?;
        Ok(futures::stream::iter(messages.into_iter().map(Ok)).boxed())
    }
}

/// Whether a failed call certainly did not run on the server, so making it again is safe: the connection could
/// not be opened, the server refused our credentials, or the child process was already gone. (A closed HTTP
/// response stream does not qualify: the server may have run the tool.)
fn not_carried_out(error: &McpError, stdio: bool) -> bool {
    match error {
        McpError::Unauthorized { .. } => true,
        McpError::Closed(_) => stdio,
        McpError::Net(NetError::Http { source, .. }) => source.is_connect(),
        McpError::Net(NetError::Timeout { phase, .. }) => *phase == TimeoutPhase::Connect,
        McpError::Net(NetError::Dns { .. }) => true,
        _ => false,
    }
}

fn connection_error(config: &McpProviderConfig, error: McpError) -> ToolError {
    match error {
        McpError::Timeout { seconds, .. } => ToolError::Timeout {
            seconds: seconds as u64,
        },
        McpError::Cancelled { .. } => ToolError::Cancelled,
        McpError::Unauthorized { .. } => ToolError::Invoke(format!(
            "MCP server {:?} requires authorization; authorize it again in the MCP provider settings",
            config.server_identifier
        )),
        other => ToolError::Invoke(format!("Failed to connect to MCP server: {other}")),
    }
}

fn call_error(config: &McpProviderConfig, error: McpError) -> ToolError {
    match error {
        McpError::Timeout { seconds, .. } => ToolError::Timeout {
            seconds: seconds as u64,
        },
        McpError::Cancelled { .. } => ToolError::Cancelled,
        McpError::Unauthorized { .. } => connection_error(config, error),
        other => ToolError::Invoke(format!("Failed to invoke tool: {other}")),
    }
}

/// Variable names Dify reserves for the tool node's own outputs.
const RESERVED_VARIABLES: [&str; 3] = ["text", "json", "files"];

/// Maps a `tools/call` result to messages:
/// - text → `json` when it is a JSON object (or one `json` per object of a list of objects), else `text`;
/// - image/audio → `blob` with the MIME type; embedded text resources → `text`, blob resources → `blob`
///   (`application/octet-stream` by default, file name from the URI); resource links → `link`;
/// - `structuredContent` → one `variable` per top-level key (reserved names `text`/`json`/`files` get an `mcp_`
///   prefix), a non-object value → variable `result`;
/// - `isError` → [`ToolError::Invoke`] with the text content.
pub fn result_to_messages(result: CallToolResult) -> Result<Vec<ToolInvokeMessage>, ToolError> {
    if result.is_error() {
        let text: Vec<&str> = result
            .content
            .iter()
            .filter_map(|c| match c {
                Content::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        let text = if text.is_empty() {
            "the MCP tool reported an error without a message".to_owned()
        } else {
            text.join("\n")
        };
        return Err(ToolError::Invoke(text));
    }
    let mut messages = Vec::new();
    for content in result.content {
        match content {
            Content::Text { text } => messages.extend(text_messages(text)),
            Content::Image { data, mime_type } | Content::Audio { data, mime_type } => {
                messages.push(ToolInvokeMessage::blob(decode(&data)?, &mime_type, None));
            }
            Content::Resource { resource } => {
                if let Some(text) = resource.text {
                    messages.push(ToolInvokeMessage::text(text));
                } else if let Some(blob) = resource.blob {
                    let mime = resource.mime_type.as_deref().unwrap_or("application/octet-stream");
                    let filename = resource
                        .uri
                        .rsplit('/')
                        .next()
                        .filter(|n| !n.is_empty() && !n.contains(':'));
                    messages.push(ToolInvokeMessage::blob(decode(&blob)?, mime, filename));
                }
            }
            Content::ResourceLink { uri, .. } => messages.push(ToolInvokeMessage::link(uri)),
        }
    }
    for unknown in &result.unknown_content {
        tracing::debug!(kind = ?unknown.get("type"), "skipping an MCP content block of unknown type");
    }
    match result.structured_content {
        Some(Value::Object(map)) => {
            for (key, value) in map {
                let name = if RESERVED_VARIABLES.contains(&key.as_str()) {
                    format!("mcp_{key}")
                } else {
                    key
                };
                messages.push(ToolInvokeMessage::variable(name, value));
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => messages.push(ToolInvokeMessage::variable("result", other)),
    }
    Ok(messages)
}

fn decode(data: &str) -> Result<Vec<u8>, ToolError> {
    BASE64
        .decode(data.trim())
        .map_err(|e| ToolError::Invoke(format!("the MCP server sent invalid base64 data: {e}")))
}

fn text_messages(text: String) -> Vec<ToolInvokeMessage> {
    let trimmed = text.trim();
    let looks_json =
        (trimmed.starts_with('{') && trimmed.ends_with('}')) || (trimmed.starts_with('[') && trimmed.ends_with(']'));
    if looks_json && let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        match value {
            Value::Object(_) => return vec![ToolInvokeMessage::json(value)],
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                return items.into_iter().map(ToolInvokeMessage::json).collect();
            }
            _ => {}
        }
    }
    vec![ToolInvokeMessage::text(text)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use toolplane_core::MessagePayload;

    #[test]
    fn schema_maps_without_losing_detail() {
        let schema = json!({
            "type": "object",
            "properties": {
                "q": {"type": "string", "description": "query"},
                "n": {"type": "integer", "default": 5},
                "ratio": {"type": ["number", "null"]},
                "flag": {"type": "boolean"},
                "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                "opts": {"type": "object", "additionalProperties": {"type": "string"}},
                "choice": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "ref": {"$ref": "#/$defs/Item"},
                "weird": {"type": "text"}
            },
            "required": ["q", "items"],
            "$defs": {"Item": {"type": "object"}}
        });
        let params = schema_to_parameters(&schema);
        let by_name = |n: &str| params.iter().find(|p| p.name == n).unwrap();
        assert_eq!(params.len(), 10);
        assert_eq!(by_name("q").kind, ToolParameterType::String);
        assert!(by_name("q").required);
        assert_eq!(by_name("q").llm_description.as_deref(), Some("query"));
        assert_eq!(by_name("n").kind, ToolParameterType::Number);
        assert_eq!(by_name("n").default, Some(json!(5)));
        assert_eq!(by_name("ratio").kind, ToolParameterType::Number);
        assert_eq!(by_name("flag").kind, ToolParameterType::Boolean);
        let items = by_name("items");
        assert_eq!(items.kind, ToolParameterType::Array);
        assert!(items.required);
        assert_eq!(
            Value::Object(items.input_schema.clone().unwrap()),
            schema["properties"]["items"]
        );
        assert_eq!(by_name("opts").kind, ToolParameterType::Object);
        assert_eq!(by_name("choice").kind, ToolParameterType::Any);
        assert_eq!(
            Value::Object(by_name("choice").input_schema.clone().unwrap()),
            schema["properties"]["choice"]
        );
        assert_eq!(by_name("maybe").kind, ToolParameterType::String);
        assert_eq!(by_name("ref").kind, ToolParameterType::Any);
        assert_eq!(by_name("weird").kind, ToolParameterType::String);
        assert!(params.iter().all(|p| p.form == ToolParameterForm::Llm));
        assert!(schema_to_parameters(&json!({"type": "object"})).is_empty());
    }

    #[test]
    fn content_maps_to_messages() {
        let result = CallToolResult::from_value(json!({
            "content": [
                {"type": "text", "text": "plain"},
                {"type": "text", "text": " {\"a\": 1} "},
                {"type": "text", "text": "[{\"x\": 1}, {\"x\": 2}]"},
                {"type": "text", "text": "[1, 2]"},
                {"type": "image", "data": "aGk=", "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "file:///r/a.bin", "blob": "AAE="}},
                {"type": "resource", "resource": {"uri": "x://t", "text": "embedded"}},
                {"type": "resource_link", "uri": "https://x/y.pdf", "name": "y"}
            ],
            "structuredContent": {"sum": 3, "text": "reserved"}
        }))
        .unwrap();
        let messages = result_to_messages(result).unwrap();
        let kinds: Vec<_> = messages.iter().map(|m| m.kind()).collect();
        assert_eq!(
            kinds,
            [
                "text", "json", "json", "json", "text", "blob", "blob", "text", "link", "variable", "variable"
            ]
        );
        assert_eq!(
            messages[1].payload,
            MessagePayload::Json(toolplane_core::JsonMessage {
                json_object: json!({"a": 1}),
                suppress_output: false
            })
        );
        assert_eq!(messages[4].as_text(), Some("[1, 2]"));
        assert_eq!(messages[5].meta.as_ref().unwrap()["mime_type"], "image/png");
        assert_eq!(
            messages[6].meta.as_ref().unwrap()["mime_type"],
            "application/octet-stream"
        );
        assert_eq!(messages[6].meta.as_ref().unwrap()["filename"], "a.bin");
        match &messages[10].payload {
            MessagePayload::Variable(v) => assert_eq!(v.variable_name, "mcp_text"),
            other => panic!("{other:?}"),
        }

        let err = result_to_messages(
            CallToolResult::from_value(json!({"content": [{"type": "text", "text": "boom"}], "isError": true}))
                .unwrap(),
        )
        .unwrap_err();
        assert_eq!(err, ToolError::Invoke("boom".into()));
        let bad =
            CallToolResult::from_value(json!({"content": [{"type": "image", "data": "@@", "mimeType": "image/png"}]}));
        assert!(result_to_messages(bad.unwrap()).is_err());
    }

    #[test]
    fn cached_tools_json_round_trips() {
        let tools = McpProviderConfig::parse_tools_json(
            r#"[{"name":"a","description":null,"inputSchema":{"type":"object"}}, 7, {"name":"b","inputSchema":{}}]"#,
        )
        .unwrap();
        assert_eq!(tools.len(), 2);
        let stored = McpProviderConfig::tools_json(&tools);
        assert!(stored.contains(r#""description":"""#));
        assert!(McpProviderConfig::parse_tools_json("").unwrap().is_empty());
        assert!(McpProviderConfig::parse_tools_json("{}").is_err());
    }
}
