//! MCP wire types: JSON-RPC 2.0 framing, protocol versions, tools, content blocks and tool results.
//!
//! The types are deliberately lenient on input (unknown fields are kept in `extra` maps where they matter, and
//! optional fields default) and exact on output, so that toolplane round-trips what servers send and emits what
//! the spec (2024-11-05 … 2026-07-28) requires.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Protocol versions this crate speaks, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];
/// The newest version that still uses `initialize` and sessions.
pub const LATEST_SESSION_VERSION: &str = "2025-11-25";
/// The stateless version (no `initialize`, per-request `_meta`, `server/discover`).
pub const STATELESS_VERSION: &str = "2026-07-28";
/// The oldest version, the only one of the legacy HTTP+SSE transport.
pub const OLDEST_VERSION: &str = "2024-11-05";

/// `_meta` key carrying the protocol version of a stateless request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the client capabilities of a stateless request.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key carrying the client's name and version on a stateless request.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key carrying the server's name and version on a stateless result.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// HTTP header with the session id (session era).
pub const HEADER_SESSION_ID: &str = "mcp-session-id";
/// HTTP header with the negotiated protocol version.
pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// HTTP header naming the JSON-RPC method (2026-07-28).
pub const HEADER_METHOD: &str = "mcp-method";
/// HTTP header naming the tool, resource or prompt (2026-07-28).
pub const HEADER_NAME: &str = "mcp-name";

/// Whether `version` is one this crate speaks.
pub fn is_supported_version(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// Whether `version` uses `initialize` and sessions (everything before 2026-07-28).
pub fn is_session_version(version: &str) -> bool {
    is_supported_version(version) && version != STATELESS_VERSION
}

/// Standard and MCP-specific JSON-RPC error codes.
pub mod codes {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters (also: unknown tool).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Legacy "resource not found".
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// `Mcp-Method` / `Mcp-Name` header missing or not matching the body (2026-07-28).
    pub const HEADER_MISMATCH: i64 = -32020;
    /// A capability the request needs was not declared (2026-07-28).
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// The request's protocol version is not supported (2026-07-28).
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// A JSON-RPC request id: a string or an integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(i64),
    String(String),
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => f.write_str(s),
        }
    }
}

/// The `error` member of a JSON-RPC response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Builder: attach `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// -32700.
    pub fn parse_error(message: impl Into<String>) -> Self {
        Self::new(codes::PARSE_ERROR, message)
    }

    /// -32600.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_REQUEST, message)
    }

    /// -32601 for `method`.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(codes::METHOD_NOT_FOUND, format!("method not found: {method}"))
    }

    /// -32602.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMS, message)
    }

    /// -32603.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(codes::INTERNAL_ERROR, message)
    }

    /// -32022 naming the supported versions in `data`.
    pub fn unsupported_version(requested: &str) -> Self {
        Self::new(
            codes::UNSUPPORTED_PROTOCOL_VERSION,
            format!(
                "unsupported protocol version {requested:?}; supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        )
        .with_data(serde_json::json!({"supported": SUPPORTED_VERSIONS, "requested": requested}))
    }
}

/// A request (has an id) or a notification (no id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: JsonRpcVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl Request {
    /// A request with an id.
    pub fn new(id: RequestId, method: impl Into<String>, params: Option<Value>) -> Self {
        Self {
            jsonrpc: JsonRpcVersion,
            id: Some(id),
            method: method.into(),
            params,
        }
    }

    /// A notification (no id, no response).
    pub fn notification(method: impl Into<String>, params: Option<Value>) -> Self {
        Self {
            jsonrpc: JsonRpcVersion,
            id: None,
            method: method.into(),
            params,
        }
    }

    /// The `params` object, or an empty one.
    pub fn params_object(&self) -> Map<String, Value> {
        match &self.params {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        }
    }
}

/// A response: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: JsonRpcVersion,
    /// `null` only for errors about a request whose id could not be read.
    pub id: Option<RequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    /// A success.
    pub fn ok(id: RequestId, result: Value) -> Self {
        Self {
            jsonrpc: JsonRpcVersion,
            id: Some(id),
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(id: Option<RequestId>, error: RpcError) -> Self {
        Self {
            jsonrpc: JsonRpcVersion,
            id,
            result: None,
            error: Some(error),
        }
    }

    /// The result, or the error as `Err`.
    pub fn into_result(self) -> Result<Value, RpcError> {
        match (self.result, self.error) {
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
            (None, None) => Ok(Value::Null),
        }
    }
}

/// Any JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    /// Classifies a parsed JSON value: objects with `method` are requests/notifications, objects with `result` or
    /// `error` are responses. Anything else is an invalid request.
    pub fn from_value(value: Value) -> Result<Message, RpcError> {
        let Value::Object(map) = &value else {
            return Err(RpcError::invalid_request("a JSON-RPC message must be a JSON object"));
        };
        if map.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(RpcError::invalid_request(
                r#"missing or wrong "jsonrpc": expected "2.0""#,
            ));
        }
        if map.contains_key("method") {
            if !map.get("method").is_some_and(Value::is_string) {
                return Err(RpcError::invalid_request(r#""method" must be a string"#));
            }
            if let Some(params) = map.get("params")
                && !(params.is_object() || params.is_array() || params.is_null())
            {
                return Err(RpcError::invalid_request(r#""params" must be an object or an array"#));
            }
            serde_json::from_value(value)
                .map(Message::Request)
                .map_err(|e| RpcError::invalid_request(format!("invalid request: {e}")))
        } else if map.contains_key("result") || map.contains_key("error") {
            serde_json::from_value(value)
                .map(Message::Response)
                .map_err(|e| RpcError::invalid_request(format!("invalid response: {e}")))
        } else {
            Err(RpcError::invalid_request(
                r#"not a JSON-RPC message: expected "method" (request) or "result"/"error" (response)"#,
            ))
        }
    }

    /// Serialises the message.
    pub fn to_value(&self) -> Value {
        // Serialising these plain data types cannot fail.
        match self {
            Self::Request(r) => serde_json::to_value(r).unwrap_or(Value::Null),
            Self::Response(r) => serde_json::to_value(r).unwrap_or(Value::Null),
        }
    }
}

/// The literal `"2.0"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JsonRpcVersion;

impl Serialize for JsonRpcVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("2.0")
    }
}

impl<'de> Deserialize<'de> for JsonRpcVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "2.0" {
            Ok(JsonRpcVersion)
        } else {
            Err(serde::de::Error::custom(format!(r#"jsonrpc must be "2.0", got {s:?}"#)))
        }
    }
}

/// `name` + `version` (+ optional `title`) of a client or server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Implementation {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl Implementation {
    /// toolplane itself.
    pub fn toolplane() -> Self {
        Self {
            name: "toolplane".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: None,
        }
    }
}

/// An MCP tool declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema of the arguments, kept verbatim.
    #[serde(default = "empty_object_schema")]
    pub input_schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
    #[serde(default, rename = "_meta", skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// Fields of newer spec versions (icons, execution, …), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Tool {
    /// The tool's `execution.taskSupport` (2025-11-25 and the 2026-07-28 tasks extension); absent or unknown
    /// values mean [`TaskSupport::Forbidden`], as the spec defaults it.
    pub fn task_support(&self) -> TaskSupport {
        match self
            .extra
            .get("execution")
            .and_then(|e| e.get("taskSupport"))
            .and_then(Value::as_str)
        {
            Some("optional") => TaskSupport::Optional,
            Some("required") => TaskSupport::Required,
            _ => TaskSupport::Forbidden,
        }
    }
}

/// Whether a tool may run as a task (`execution.taskSupport` in `tools/list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskSupport {
    /// Never a task (the default).
    #[default]
    Forbidden,
    /// A task or a plain call, as the caller (2025-11-25) or the server (2026-07-28 extension) decides.
    Optional,
    /// Only as a task.
    Required,
}

impl TaskSupport {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object"})
}

/// The result of `tools/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListToolsResult {
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The resource inside an embedded-resource content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceContents {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
}

/// A content block of a tool result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Text {
        text: String,
    },
    Image {
        /// Base64.
        data: String,
        #[serde(rename = "mimeType")]
        mime_type: String,
    },
    Audio {
        /// Base64.
        data: String,
        #[serde(rename = "mimeType")]
        mime_type: String,
    },
    Resource {
        resource: ResourceContents,
    },
    ResourceLink {
        uri: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, rename = "mimeType", skip_serializing_if = "Option::is_none")]
        mime_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
}

impl Content {
    /// A text block.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }
}

/// The result of `tools/call`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallToolResult {
    /// Blocks of unknown types are kept as raw JSON by [`CallToolResult::from_value`]; see `unknown_content`.
    #[serde(default)]
    pub content: Vec<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// Content blocks whose `type` this crate does not know; not serialised.
    #[serde(skip)]
    pub unknown_content: Vec<Value>,
}

impl CallToolResult {
    /// Parses a `tools/call` result, keeping unknown content block types aside instead of failing.
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        let Value::Object(mut map) = value else {
            return Err(serde::de::Error::custom("a tools/call result must be a JSON object"));
        };
        let blocks = match map.remove("content") {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err(serde::de::Error::custom("\"content\" must be an array")),
        };
        let mut result: CallToolResult = serde_json::from_value(Value::Object(map))?;
        for block in blocks {
            match serde_json::from_value::<Content>(block.clone()) {
                Ok(content) => result.content.push(content),
                Err(_) => result.unknown_content.push(block),
            }
        }
        Ok(result)
    }

    /// Whether the server flagged the result as a tool error.
    pub fn is_error(&self) -> bool {
        self.is_error == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classifies_messages() {
        let req = Message::from_value(json!({"jsonrpc":"2.0","id":1,"method":"ping"})).unwrap();
        assert!(matches!(
            req,
            Message::Request(Request {
                id: Some(RequestId::Number(1)),
                ..
            })
        ));
        let note = Message::from_value(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).unwrap();
        assert!(matches!(note, Message::Request(Request { id: None, .. })));
        let resp = Message::from_value(json!({"jsonrpc":"2.0","id":"a","result":{}})).unwrap();
        assert!(matches!(resp, Message::Response(_)));

        for bad in [
            json!([1]),
            json!({"id": 1, "method": "ping"}),
            json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": 5}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": 3}),
            json!({"jsonrpc": "2.0", "id": 1}),
        ] {
            let err = Message::from_value(bad.clone()).unwrap_err();
            assert_eq!(err.code, codes::INVALID_REQUEST, "{bad}");
        }
    }

    #[test]
    fn response_wire_shape() {
        let ok = serde_json::to_value(Response::ok(RequestId::Number(3), json!({}))).unwrap();
        assert_eq!(ok, json!({"jsonrpc":"2.0","id":3,"result":{}}));
        let err = serde_json::to_value(Response::err(None, RpcError::method_not_found("x/y"))).unwrap();
        assert_eq!(
            err,
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"method not found: x/y"}})
        );
    }

    #[test]
    fn content_round_trips_and_unknown_blocks_are_kept() {
        let raw = json!({
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image", "data": "aGk=", "mimeType": "image/png"},
                {"type": "audio", "data": "aGk=", "mimeType": "audio/wav"},
                {"type": "resource", "resource": {"uri": "file:///a", "mimeType": "text/plain", "text": "t"}},
                {"type": "resource_link", "uri": "file:///b", "name": "b"},
                {"type": "hologram", "data": 1}
            ],
            "structuredContent": {"a": 1},
            "isError": false
        });
        let result = CallToolResult::from_value(raw).unwrap();
        assert_eq!(result.content.len(), 5);
        assert_eq!(result.unknown_content.len(), 1);
        let out = serde_json::to_value(&result).unwrap();
        assert_eq!(out["content"][1]["mimeType"], "image/png");
        assert_eq!(
            out["content"][4],
            json!({"type": "resource_link", "uri": "file:///b", "name": "b"})
        );
        assert_eq!(out["structuredContent"], json!({"a": 1}));
    }

    #[test]
    fn tool_keeps_schema_and_unknown_fields() {
        let raw = json!({
            "name": "t", "inputSchema": {"type": "object", "properties": {"x": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}},
            "icons": [{"src": "https://x/i.png"}], "annotations": {"readOnlyHint": true}
        });
        let tool: Tool = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(tool.extra["icons"], raw["icons"]);
        assert_eq!(serde_json::to_value(&tool).unwrap(), raw);
    }
}
