//! A client for MCP servers.
//!
//! [`McpClient`] speaks to a server over
//! - streamable HTTP, in the session era (`initialize`, `Mcp-Session-Id`, responses as JSON or SSE, re-initialising
//!   when the session expires) or the stateless 2026-07-28 era (`server/discover`, per-request `_meta` and
//!   headers), detected automatically: a `server/discover` probe first, `initialize` when the server does not know
//!   it;
//! - the legacy HTTP+SSE transport of 2024-11-05 (GET an event stream, POST to the `endpoint` it names), used when
//!   the URL ends in `/sse` or when a streamable-HTTP `initialize` is refused with 400/404/405;
//! - stdio: a child process (killed when the client is dropped) exchanging newline-delimited JSON.
//!
//! Every HTTP request goes through [`toolplane_net::SafeClient`]. Requests have a timeout; when the caller's
//! [`CancellationToken`] fires or the timeout strikes, the client sends `notifications/cancelled` (or, on stateless
//! HTTP, closes the response stream, which is cancellation there). Server notifications such as
//! `notifications/tools/list_changed` are surfaced through [`McpClient::notifications`].
//!
//! A `tools/call` may run as a task ([`CallOptions::as_task`], see [`tasks`]) on servers that offer tasks: the
//! 2026-07-28 extension `io.modelcontextprotocol/tasks`, or the experimental tasks of 2025-11-25.

mod dispatch;
mod http;
mod legacy_sse;
pub(crate) mod stdio;
pub mod tasks;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, RwLock, broadcast};
use tokio_util::sync::CancellationToken;
use toolplane_net::{NetError, SafeClient};

use crate::oauth::BearerChallenge;
use crate::protocol::{
    CallToolResult, Implementation, LATEST_SESSION_VERSION, ListToolsResult, META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO, META_PROTOCOL_VERSION, Request, RequestId, Response, RpcError, STATELESS_VERSION,
    SUPPORTED_VERSIONS, Tool, codes, is_session_version,
};

pub use stdio::StdioCommand;

/// Why a request to an MCP server failed.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The HTTP request could not be made (refused by the SSRF guard, connection failed, timed out, …).
    #[error("cannot reach the MCP server: {0}")]
    Net(#[from] NetError),

    /// The server wants authorization: run the OAuth flow (see [`crate::oauth`]) or configure an auth header.
    #[error("the MCP server requires authorization (HTTP {status}){}", challenge_hint(.challenge))]
    Unauthorized {
        status: u16,
        challenge: Option<BearerChallenge>,
    },

    /// The server answered with an HTTP error that carries no JSON-RPC error.
    #[error("the MCP server answered HTTP {status}: {body}")]
    Http { status: u16, body: String },

    /// The server answered the request with a JSON-RPC error.
    #[error("the MCP server returned an error: {0}")]
    Rpc(RpcError),

    /// The server broke the protocol (unparsable message, missing response, …).
    #[error("MCP protocol error: {0}")]
    Protocol(String),

    /// The server does not speak any version this client supports.
    #[error("the MCP server answered with protocol version {0:?}; toolplane supports {supported}", supported = SUPPORTED_VERSIONS.join(", "))]
    UnsupportedVersion(String),

    /// The server forgot the session (HTTP 404); the client re-initialises once by itself.
    #[error("the MCP session expired (HTTP 404)")]
    SessionExpired,

    /// The request took longer than its timeout.
    #[error("MCP request {method} timed out after {seconds:.1} s")]
    Timeout { method: String, seconds: f64 },

    /// The caller cancelled the request.
    #[error("MCP request {method} was cancelled")]
    Cancelled { method: String },

    /// The connection (stream or child process) is gone.
    #[error("the connection to the MCP server is closed: {0}")]
    Closed(String),

    /// The stdio server could not be started.
    #[error("cannot start the MCP server command {command:?}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    /// The client was configured wrongly (bad URL, bad header, …).
    #[error("invalid MCP client configuration: {0}")]
    Config(String),
}

fn challenge_hint(challenge: &Option<BearerChallenge>) -> String {
    match challenge {
        Some(BearerChallenge {
            resource_metadata: Some(url),
            ..
        }) => format!("; authorize via the metadata at {url}"),
        _ => "; configure an Authorization header or authorize with OAuth".to_owned(),
    }
}

/// Which HTTP transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportHint {
    /// Streamable HTTP first (era detected), legacy SSE on refusal; legacy SSE first when the URL ends in `/sse`
    /// (Dify's rule).
    #[default]
    Auto,
    /// Streamable HTTP only.
    StreamableHttp,
    /// Legacy HTTP+SSE only.
    Sse,
}

/// Which protocol era to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EraPreference {
    /// Probe with `server/discover`, fall back to `initialize`.
    #[default]
    Auto,
    /// `initialize` and sessions only.
    Session,
    /// 2026-07-28 only.
    Stateless,
}

/// Answers what a server asks of the client: `elicitation/create`, `sampling/createMessage`, `roots/list`.
/// In the session era these arrive as server-to-client requests; in the 2026-07-28 era as the `inputRequests` of
/// an `input_required` result (MRTR), which the client answers and retries with. Without a handler the client
/// declares no capabilities and refuses such requests.
#[async_trait]
pub trait ClientHandler: Send + Sync {
    /// The client capabilities to declare, e.g. `{"elicitation": {}}`.
    fn capabilities(&self) -> Value;
    /// Answers one request; an error is sent back as the JSON-RPC error.
    async fn handle(&self, method: &str, params: Value) -> Result<Value, RpcError>;
}

/// A shared [`ClientHandler`].
#[derive(Clone)]
pub struct Handler(pub Arc<dyn ClientHandler>);

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

/// Settings of an [`McpClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Default time limit of one request (Dify's `timeout`, 30 s).
    pub timeout: Duration,
    /// Longest silence tolerated on an event stream (Dify's `sse_read_timeout`, 300 s).
    pub sse_read_timeout: Duration,
    /// Extra HTTP headers sent with every request (e.g. `Authorization`).
    pub headers: BTreeMap<String, String>,
    /// Who we are.
    pub client_info: Implementation,
    /// HTTP transport choice.
    pub transport: TransportHint,
    /// Era choice.
    pub era: EraPreference,
    /// Largest message accepted from the server, in bytes.
    pub max_message_bytes: usize,
    /// The session-era version offered in `initialize` (default: the latest, 2025-11-25).
    pub protocol_version: Option<String>,
    /// Answers server requests (elicitation, sampling, roots); `None` declares no capabilities.
    pub handler: Option<Handler>,
    /// DPoP (RFC 9449): the key a DPoP-bound token is bound to. While the `Authorization` header uses the `DPoP`
    /// scheme, every streamable-HTTP request carries a fresh proof (with `ath`, and the server's nonce once it
    /// sent one; a `use_dpop_nonce` refusal is retried once). Bearer tokens are sent as before.
    pub dpop: Option<crate::oauth::Dpop>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            sse_read_timeout: Duration::from_secs(300),
            headers: BTreeMap::new(),
            client_info: Implementation::toolplane(),
            transport: TransportHint::Auto,
            era: EraPreference::Auto,
            max_message_bytes: 16 * 1024 * 1024,
            protocol_version: None,
            handler: None,
            dpop: None,
        }
    }
}

/// How a connection ended up talking to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Streamable HTTP.
    StreamableHttp,
    /// Legacy HTTP+SSE.
    LegacySse,
    /// A child process.
    Stdio,
}

/// What the server told us about itself.
#[derive(Debug, Clone)]
pub struct ServerDetails {
    /// The negotiated protocol version.
    pub protocol_version: String,
    /// The server's name and version, when it said.
    pub server_info: Option<Implementation>,
    /// The server's capabilities, verbatim.
    pub capabilities: Value,
    /// `instructions` from `initialize`.
    pub instructions: Option<String>,
    /// The transport in use.
    pub transport: TransportKind,
}

impl ServerDetails {
    /// Whether the stateless 2026-07-28 era is in use.
    pub fn is_stateless(&self) -> bool {
        self.protocol_version == STATELESS_VERSION
    }

    /// Whether the server announced `tools.listChanged`.
    pub fn tools_list_changed(&self) -> bool {
        self.capabilities
            .pointer("/tools/listChanged")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// Options of one call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Overrides [`ClientOptions::timeout`]; for a call run as a task, the limit of the whole task.
    pub timeout: Option<Duration>,
    /// Fired when the caller goes away; the request (or the task: `tasks/cancel`) is then cancelled on the server
    /// too.
    pub cancel: CancellationToken,
    /// `tools/call` only: run the call as a task when the server offers tasks (the caller checks that the tool
    /// allows it, `execution.taskSupport`); see [`tasks`].
    pub as_task: bool,
}

/// What a request carries beyond its params.
#[derive(Debug, Clone, Default)]
struct Extras {
    /// 2026-07-28: `Mcp-Param-*` headers.
    headers: Vec<(String, String)>,
    /// 2026-07-28: declare the tasks extension in this request's client capabilities.
    tasks_extension: bool,
}

/// What a transport needs to know about the request it carries.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    /// The protocol version once negotiated (sent as `MCP-Protocol-Version`).
    pub protocol_version: Option<String>,
    /// 2026-07-28: send `Mcp-Method`/`Mcp-Name`.
    pub stateless: bool,
    /// Deadline-free time limit for reading responses.
    pub timeout: Duration,
    /// Extra headers of this request (2026-07-28: `Mcp-Param-*` mirrored from `x-mcp-header` arguments).
    pub extra_headers: Vec<(String, String)>,
}

/// One way of moving JSON-RPC messages to a server and back.
#[async_trait]
pub(crate) trait Transport: Send + Sync {
    /// Sends a request and waits for its response. Dropping the future abandons the request.
    async fn request(&self, request: &Request, ctx: &RequestContext) -> Result<Response, McpError>;
    /// Sends a notification.
    async fn notify(&self, notification: &Request, ctx: &RequestContext) -> Result<(), McpError>;
    /// Which transport this is.
    fn kind(&self) -> TransportKind;
    /// Called after a session-era handshake; HTTP opens its server stream here when the server has one.
    async fn after_initialize(&self, _details: &ServerDetails) {}
    /// Forgets the session (before re-initialising).
    async fn reset_session(&self) {}
    /// Replaces the `Authorization` header sent from now on (after an OAuth flow or a token refresh).
    fn set_authorization(&self, _value: Option<String>) {}
    /// Ends the connection (HTTP: `DELETE` the session).
    async fn close(&self);
}

struct Shared {
    transport: Box<dyn Transport>,
    next_id: AtomicI64,
    options: ClientOptions,
    details: RwLock<ServerDetails>,
    notifications: broadcast::Sender<Request>,
    /// Serialises re-initialisation after an expired session.
    reinit: Mutex<()>,
    /// 2026-07-28: per tool, the arguments mirrored into `Mcp-Param-*` headers (`x-mcp-header`), from the last
    /// `tools/list`.
    header_params: std::sync::RwLock<HashMap<String, Vec<(String, String)>>>,
}

/// A connection to one MCP server. Cheap to clone; the connection closes when the last clone is dropped (a stdio
/// child is killed then).
#[derive(Clone)]
pub struct McpClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("transport", &self.shared.transport.kind())
            .finish_non_exhaustive()
    }
}

impl McpClient {
    /// Connects to an MCP server over HTTP (streamable HTTP or legacy SSE, see [`TransportHint`]).
    pub async fn connect_http(http: SafeClient, url: &str, options: ClientOptions) -> Result<McpClient, McpError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| McpError::Config(format!("server URL {:?} is not a valid URL: {e}", redact_url(url))))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(McpError::Config("the server URL must be http(s) with a host".into()));
        }
        http.check_url(&parsed)?;
        let notifications = broadcast::channel(64).0;
        let sse_first = options.transport == TransportHint::Sse
            || (options.transport == TransportHint::Auto
                && parsed.path_segments().and_then(|mut s| s.rfind(|p| !p.is_empty())) == Some("sse"));
        if sse_first {
            let result = Self::connect_legacy_sse(&http, &parsed, &options, &notifications).await;
            match result {
                Ok(client) => return Ok(client),
                Err(e) if options.transport == TransportHint::Sse => return Err(e),
                Err(McpError::Unauthorized { status, challenge }) => {
                    return Err(McpError::Unauthorized { status, challenge });
                }
                Err(e) => tracing::debug!(error = %e, "legacy SSE failed, trying streamable HTTP"),
            }
        }
        let transport = http::HttpTransport::new(http.clone(), parsed.clone(), &options, notifications.clone())?;
        let client = McpClient::new(Box::new(transport), options.clone(), notifications.clone());
        match client.handshake().await {
            Ok(()) => Ok(client),
            Err(McpError::Http { status, .. })
                if options.transport == TransportHint::Auto && !sse_first && matches!(status, 400 | 404 | 405) =>
            {
                tracing::debug!(status, "streamable HTTP refused, trying the legacy SSE transport");
                Self::connect_legacy_sse(&http, &parsed, &options, &notifications).await
            }
            Err(e) => Err(e),
        }
    }

    async fn connect_legacy_sse(
        http: &SafeClient,
        url: &url::Url,
        options: &ClientOptions,
        notifications: &broadcast::Sender<Request>,
    ) -> Result<McpClient, McpError> {
        let transport =
            legacy_sse::LegacySseTransport::connect(http.clone(), url.clone(), options, notifications.clone()).await?;
        let mut session_options = options.clone();
        session_options.era = EraPreference::Session;
        let client = McpClient::new(Box::new(transport), session_options, notifications.clone());
        client.handshake().await?;
        Ok(client)
    }

    /// Starts `command` and connects to it over stdio. Only for administrators: it runs a local program.
    pub async fn connect_stdio(command: StdioCommand, options: ClientOptions) -> Result<McpClient, McpError> {
        let notifications = broadcast::channel(64).0;
        let transport = stdio::StdioTransport::spawn(&command, &options, notifications.clone())?;
        let client = McpClient::new(Box::new(transport), options, notifications);
        client.handshake().await?;
        Ok(client)
    }

    fn new(transport: Box<dyn Transport>, options: ClientOptions, notifications: broadcast::Sender<Request>) -> Self {
        let kind = transport.kind();
        McpClient {
            shared: Arc::new(Shared {
                transport,
                next_id: AtomicI64::new(0),
                options,
                details: RwLock::new(ServerDetails {
                    protocol_version: String::new(),
                    server_info: None,
                    capabilities: Value::Null,
                    instructions: None,
                    transport: kind,
                }),
                notifications,
                reinit: Mutex::new(()),
                header_params: std::sync::RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Detects the era and completes the handshake.
    async fn handshake(&self) -> Result<(), McpError> {
        if self.shared.options.era != EraPreference::Session {
            match self.discover().await {
                Ok(()) => return Ok(()),
                Err(e) if self.shared.options.era == EraPreference::Stateless => return Err(e),
                Err(e @ (McpError::Unauthorized { .. } | McpError::Net(_) | McpError::Closed(_))) => return Err(e),
                Err(e) => tracing::debug!(error = %e, "server/discover refused, falling back to initialize"),
            }
        }
        self.initialize().await
    }

    /// `server/discover` (2026-07-28).
    async fn discover(&self) -> Result<(), McpError> {
        let mut timeout = self.shared.options.timeout;
        if self.shared.transport.kind() == TransportKind::Stdio {
            // Old stdio servers may ignore requests sent before `initialize`; do not wait long for them.
            timeout = timeout.min(Duration::from_secs(5));
        }
        let ctx = RequestContext {
            protocol_version: Some(STATELESS_VERSION.to_owned()),
            stateless: true,
            timeout,
            extra_headers: Vec::new(),
        };
        let params = self.stateless_meta(Map::new());
        let result = self
            .raw_request(
                "server/discover",
                Some(Value::Object(params)),
                &ctx,
                &CallOptions::default(),
            )
            .await?;
        let versions: Vec<&str> = result
            .get("supportedVersions")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !versions.contains(&STATELESS_VERSION) {
            return Err(McpError::UnsupportedVersion(versions.join(",")));
        }
        let mut details = self.shared.details.write().await;
        details.protocol_version = STATELESS_VERSION.to_owned();
        details.capabilities = result.get("capabilities").cloned().unwrap_or(Value::Null);
        details.instructions = result.get("instructions").and_then(Value::as_str).map(str::to_owned);
        details.server_info = result
            .pointer("/_meta/io.modelcontextprotocol~1serverInfo")
            .or_else(|| result.get("serverInfo"))
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let snapshot = details.clone();
        drop(details);
        self.shared.transport.after_initialize(&snapshot).await;
        Ok(())
    }

    /// `initialize` + `notifications/initialized` (session era).
    async fn initialize(&self) -> Result<(), McpError> {
        let ctx = RequestContext {
            protocol_version: None,
            stateless: false,
            timeout: self.shared.options.timeout,
            extra_headers: Vec::new(),
        };
        let offered = self
            .shared
            .options
            .protocol_version
            .as_deref()
            .filter(|v| is_session_version(v))
            .unwrap_or(LATEST_SESSION_VERSION);
        let mut capabilities = self.capabilities();
        // 2025-11-25 servers offer task-augmented calls only to clients that declare `tasks` (this client polls
        // tasks it asks for; it takes no task-augmented requests itself, so the object stays empty).
        if offered == tasks::EXPERIMENTAL_VERSION
            && let Value::Object(map) = &mut capabilities
        {
            map.entry("tasks").or_insert_with(|| json!({}));
        }
        let params = json!({
            "protocolVersion": offered,
            "capabilities": capabilities,
            "clientInfo": self.shared.options.client_info,
        });
        let result = self
            .raw_request("initialize", Some(params), &ctx, &CallOptions::default())
            .await?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !is_session_version(&version) {
            return Err(McpError::UnsupportedVersion(version));
        }
        let details = {
            let mut details = self.shared.details.write().await;
            details.protocol_version = version.clone();
            details.capabilities = result.get("capabilities").cloned().unwrap_or(Value::Null);
            details.instructions = result.get("instructions").and_then(Value::as_str).map(str::to_owned);
            details.server_info = result
                .get("serverInfo")
                .and_then(|v| serde_json::from_value(v.clone()).ok());
            details.clone()
        };
        let ctx = RequestContext {
            protocol_version: Some(version),
            ..ctx
        };
        self.shared
            .transport
            .notify(&Request::notification("notifications/initialized", None), &ctx)
            .await?;
        self.shared.transport.after_initialize(&details).await;
        Ok(())
    }

    /// What the server told us about itself.
    pub async fn server(&self) -> ServerDetails {
        self.shared.details.read().await.clone()
    }

    /// Notifications the server sends outside of responses (e.g. `notifications/tools/list_changed`) and the
    /// progress/log notifications on response streams.
    pub fn notifications(&self) -> broadcast::Receiver<Request> {
        self.shared.notifications.subscribe()
    }

    /// One page of `tools/list`.
    pub async fn list_tools_page(&self, cursor: Option<&str>) -> Result<ListToolsResult, McpError> {
        let params = cursor.map(|c| json!({"cursor": c}));
        let result = self.request("tools/list", params, CallOptions::default()).await?;
        serde_json::from_value(result).map_err(|e| McpError::Protocol(format!("invalid tools/list result: {e}")))
    }

    /// The capabilities this client declares (its handler's, else none).
    fn capabilities(&self) -> Value {
        match &self.shared.options.handler {
            Some(handler) => handler.0.capabilities(),
            None => json!({}),
        }
    }

    /// Replaces the `Authorization` header of every later request (after an OAuth flow or a refresh); `None`
    /// removes it. Streamable HTTP only; the other transports keep the headers they were opened with.
    pub fn set_authorization(&self, value: Option<String>) {
        self.shared.transport.set_authorization(value);
    }

    /// Every tool, following `nextCursor` (at most 1,000 pages; a repeated cursor ends the loop). In the
    /// 2026-07-28 era tools with an invalid `x-mcp-header` annotation are left out (SEP-2243: clients must not call
    /// them), and the valid annotations are remembered for the `Mcp-Param-*` headers of `tools/call`.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, McpError> {
        let tools = self.list_all_tools().await?;
        if !self.shared.details.read().await.is_stateless() {
            return Ok(tools);
        }
        let mut kept = Vec::with_capacity(tools.len());
        let mut params = HashMap::new();
        for tool in tools {
            match header_params(&tool.input_schema) {
                Ok(list) => {
                    params.insert(tool.name.clone(), list);
                    kept.push(tool);
                }
                Err(reason) => {
                    tracing::warn!(tool = %tool.name, %reason, "leaving out an MCP tool with an invalid x-mcp-header");
                }
            }
        }
        if let Ok(mut map) = self.shared.header_params.write() {
            *map = params;
        }
        Ok(kept)
    }

    async fn list_all_tools(&self) -> Result<Vec<Tool>, McpError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let page = self.list_tools_page(cursor.as_deref()).await?;
            tools.extend(page.tools);
            match page.next_cursor.filter(|c| !c.is_empty()) {
                Some(next) if seen.insert(next.clone()) => cursor = Some(next),
                Some(next) => {
                    return Err(McpError::Protocol(format!(
                        "tools/list returned cursor {next:?} twice; the server's pagination loops"
                    )));
                }
                None => return Ok(tools),
            }
        }
        Err(McpError::Protocol("tools/list returned more than 1000 pages".into()))
    }

    /// `tools/call`. With [`CallOptions::as_task`] on a server that offers tasks, the call runs as a task
    /// (see [`tasks`]); a task handle a 2026-07-28 server returns unasked is followed the same way.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        options: CallOptions,
    ) -> Result<CallToolResult, McpError> {
        let budget = tasks::Budget::new(options.timeout.unwrap_or(self.shared.options.timeout));
        let protocol = match options.as_task {
            true => self.task_protocol().await,
            false => None,
        };
        if protocol == Some(tasks::TaskProtocol::Experimental) {
            return self.call_tool_experimental(name, arguments, &options, &budget).await;
        }
        let extras = Extras {
            headers: self.param_headers(name, &arguments),
            tasks_extension: protocol == Some(tasks::TaskProtocol::Extension),
        };
        let mut params = json!({"name": name, "arguments": arguments});
        // MRTR (2026-07-28): an `input_required` result is answered by the handler and the request retried with
        // the answers and the server's opaque `requestState`, unchanged. Bounded, as a server could ask forever.
        // Each round has the call's full time limit: answering may wait for a person.
        for _ in 0..MAX_INPUT_ROUNDS {
            let result = self
                .request_with("tools/call", Some(params.clone()), options.clone(), extras.clone())
                .await?;
            match result.get("resultType").and_then(Value::as_str) {
                Some("input_required") => {}
                Some("task") => return self.follow_task(name, result, &options, &budget).await,
                _ => {
                    return CallToolResult::from_value(result)
                        .map_err(|e| McpError::Protocol(format!("invalid tools/call result: {e}")));
                }
            }
            let responses = self.answer_input_requests(name, &result).await?;
            if let Value::Object(map) = &mut params {
                map.insert("inputResponses".into(), responses);
                match result.get("requestState") {
                    Some(state) => map.insert("requestState".into(), state.clone()),
                    None => map.remove("requestState"),
                };
            }
        }
        Err(McpError::Protocol(format!(
            "tool {name:?} asked for input more than {MAX_INPUT_ROUNDS} times; giving up"
        )))
    }

    /// Answers the `inputRequests` of an `input_required` result with the client's handler.
    async fn answer_input_requests(&self, tool: &str, result: &Value) -> Result<Value, McpError> {
        let requests = result
            .get("inputRequests")
            .and_then(Value::as_object)
            .ok_or_else(|| McpError::Protocol("an input_required result without inputRequests".into()))?;
        self.answer_requests(tool, requests).await
    }

    /// Answers `inputRequests` (`{method, params}` by key) with the client's handler, by key.
    async fn answer_requests(&self, tool: &str, requests: &Map<String, Value>) -> Result<Value, McpError> {
        let Some(handler) = self.shared.options.handler.clone() else {
            return Err(McpError::Protocol(format!(
                "tool {tool:?} asked for user input (input_required), and this client has no handler for it"
            )));
        };
        let mut responses = Map::new();
        for (key, request) in requests {
            let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
            let params = request.get("params").cloned().unwrap_or_else(|| json!({}));
            let answer = handler.0.handle(method, params).await.map_err(McpError::Rpc)?;
            responses.insert(key.clone(), answer);
        }
        Ok(Value::Object(responses))
    }

    /// `Mcp-Param-*` headers for a call of `tool` (2026-07-28, SEP-2243): each argument the tool's schema marks
    /// with `x-mcp-header`, null and absent ones left out, unsafe values Base64-wrapped.
    fn param_headers(&self, tool: &str, arguments: &Map<String, Value>) -> Vec<(String, String)> {
        let Ok(map) = self.shared.header_params.read() else {
            return Vec::new();
        };
        let Some(list) = map.get(tool) else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|(param, header)| {
                let value = match arguments.get(param)? {
                    Value::Null => return None,
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some((format!("Mcp-Param-{header}"), encode_header_value(&value)))
            })
            .collect()
    }

    /// `ping` (session era only; 2026-07-28 removed it, so there it is a `server/discover`).
    pub async fn ping(&self) -> Result<(), McpError> {
        if self.shared.details.read().await.is_stateless() {
            self.request("server/discover", None, CallOptions::default()).await?;
        } else {
            self.request("ping", None, CallOptions::default()).await?;
        }
        Ok(())
    }

    /// Any request; the result on success. Re-initialises once if the session expired.
    pub async fn request(&self, method: &str, params: Option<Value>, options: CallOptions) -> Result<Value, McpError> {
        self.request_with(method, params, options, Extras::default()).await
    }

    async fn request_with(
        &self,
        method: &str,
        params: Option<Value>,
        options: CallOptions,
        extras: Extras,
    ) -> Result<Value, McpError> {
        let (mut ctx, params) = self.prepare(params, &options, extras.tasks_extension).await;
        ctx.extra_headers = extras.headers.clone();
        match self.raw_request(method, params.clone(), &ctx, &options).await {
            Err(McpError::SessionExpired) => {
                self.reinitialize(&ctx).await?;
                let (mut ctx, params) = self.prepare(params, &options, extras.tasks_extension).await;
                ctx.extra_headers = extras.headers;
                self.raw_request(method, params, &ctx, &options).await
            }
            other => other,
        }
    }

    async fn prepare(
        &self,
        params: Option<Value>,
        options: &CallOptions,
        tasks_extension: bool,
    ) -> (RequestContext, Option<Value>) {
        let details = self.shared.details.read().await;
        let stateless = details.is_stateless();
        let ctx = RequestContext {
            protocol_version: Some(details.protocol_version.clone()).filter(|v| !v.is_empty()),
            stateless,
            timeout: options.timeout.unwrap_or(self.shared.options.timeout),
            extra_headers: Vec::new(),
        };
        drop(details);
        let params = if stateless {
            let map = match params {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            let mut params = self.stateless_meta(map);
            if tasks_extension {
                tasks::declare_extension(&mut params);
            }
            Some(Value::Object(params))
        } else {
            params
        };
        (ctx, params)
    }

    async fn reinitialize(&self, ctx: &RequestContext) -> Result<(), McpError> {
        let _guard = self.shared.reinit.lock().await;
        let current = self.shared.details.read().await.protocol_version.clone();
        // Another caller may have re-initialised already; the version is the same either way, so just redo it.
        tracing::info!(version = %current, stateless = ctx.stateless, "MCP session expired, re-initialising");
        self.shared.transport.reset_session().await;
        self.initialize().await
    }

    fn stateless_meta(&self, mut params: Map<String, Value>) -> Map<String, Value> {
        let meta = params.entry("_meta").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            meta.insert(META_PROTOCOL_VERSION.into(), Value::String(STATELESS_VERSION.into()));
            meta.insert(META_CLIENT_CAPABILITIES.into(), self.capabilities());
            meta.insert(
                META_CLIENT_INFO.into(),
                serde_json::to_value(&self.shared.options.client_info).unwrap_or(Value::Null),
            );
        }
        params
    }

    async fn raw_request(
        &self,
        method: &str,
        params: Option<Value>,
        ctx: &RequestContext,
        options: &CallOptions,
    ) -> Result<Value, McpError> {
        let mut retried = false;
        loop {
            match self.exchange(method, params.clone(), ctx, options).await {
                // 2026-07-28: a server may refuse the version once while naming it as supported (a rolling
                // deployment); retry once with a fresh id before giving up.
                Err(McpError::Rpc(e))
                    if e.code == codes::UNSUPPORTED_PROTOCOL_VERSION && !retried && names_our_version(&e, ctx) =>
                {
                    retried = true;
                    tracing::debug!(
                        method,
                        "the MCP server refused our protocol version but lists it; retrying"
                    );
                }
                Err(McpError::Rpc(e)) if e.code == codes::UNSUPPORTED_PROTOCOL_VERSION => {
                    return Err(McpError::UnsupportedVersion(e.message));
                }
                other => return other,
            }
        }
    }

    async fn exchange(
        &self,
        method: &str,
        params: Option<Value>,
        ctx: &RequestContext,
        options: &CallOptions,
    ) -> Result<Value, McpError> {
        let id = RequestId::Number(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let request = Request::new(id.clone(), method, params);
        let exchange = self.shared.transport.request(&request, ctx);
        let outcome = tokio::select! {
            response = exchange => Ok(response),
            _ = tokio::time::sleep(ctx.timeout) => Err(McpError::Timeout {
                method: method.to_owned(),
                seconds: ctx.timeout.as_secs_f64(),
            }),
            _ = options.cancel.cancelled() => Err(McpError::Cancelled { method: method.to_owned() }),
        };
        match outcome {
            Ok(response) => {
                let response = response?;
                response.into_result().map_err(McpError::Rpc)
            }
            Err(abandoned) => {
                // The exchange future is dropped here, which closes an HTTP response stream. Session-era and stdio
                // servers are told explicitly; `initialize` must never be cancelled.
                let http_stateless = ctx.stateless && self.shared.transport.kind() != TransportKind::Stdio;
                if method != "initialize" && !http_stateless {
                    let reason = match &abandoned {
                        McpError::Timeout { .. } => "timeout",
                        _ => "cancelled by the caller",
                    };
                    let note = Request::notification(
                        "notifications/cancelled",
                        Some(json!({"requestId": id, "reason": reason})),
                    );
                    let transport_ctx = ctx.clone();
                    // Best effort, bounded: the caller must not wait on an unresponsive server.
                    let send = self.shared.transport.notify(&note, &transport_ctx);
                    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), send).await {
                        tracing::debug!(error = %e, "could not send notifications/cancelled");
                    }
                }
                Err(abandoned)
            }
        }
    }

    /// Whether `other` is a clone of this connection.
    pub fn same_connection(&self, other: &McpClient) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Ends the connection: `DELETE`s an HTTP session, closes the legacy SSE stream, or stops the child process.
    pub async fn close(&self) {
        self.shared.transport.close().await;
    }
}

/// Most `input_required` rounds one `tools/call` may take.
const MAX_INPUT_ROUNDS: usize = 8;

/// Whether an unsupported-version error lists the version the request carried as supported.
fn names_our_version(error: &RpcError, ctx: &RequestContext) -> bool {
    let Some(ours) = ctx.protocol_version.as_deref() else {
        return false;
    };
    error
        .data
        .as_ref()
        .and_then(|d| d.get("supported"))
        .and_then(Value::as_array)
        .is_some_and(|list| list.iter().any(|v| v.as_str() == Some(ours)))
}

/// The `x-mcp-header` annotations of an input schema as (argument, header name) pairs, or why they are invalid
/// (SEP-2243): a name is a non-empty visible-ASCII token without `:`, unique ignoring case, on a `string`,
/// `integer` or `boolean` property.
pub(crate) fn header_params(schema: &Value) -> Result<Vec<(String, String)>, String> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for (param, property) in properties {
        let Some(header) = property.get("x-mcp-header") else {
            continue;
        };
        let Some(header) = header.as_str() else {
            return Err(format!("x-mcp-header of {param:?} is not a string"));
        };
        if header.is_empty() {
            return Err(format!("x-mcp-header of {param:?} is empty"));
        }
        if !header.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(format!("x-mcp-header {header:?} is not a valid header name"));
        }
        let kind = property.get("type").and_then(Value::as_str).unwrap_or_default();
        if !matches!(kind, "string" | "integer" | "boolean") {
            return Err(format!(
                "x-mcp-header {header:?} is on a {kind:?} property; only string, integer and boolean are allowed"
            ));
        }
        if out.iter().any(|(_, h)| h.eq_ignore_ascii_case(header)) {
            return Err(format!("x-mcp-header {header:?} is used twice"));
        }
        out.push((param.clone(), header.to_owned()));
    }
    Ok(out)
}

/// A header value as SEP-2243 encodes it: plain when it is visible ASCII (inner spaces allowed) without
/// surrounding whitespace, else `=?base64?…?=`.
pub(crate) fn encode_header_value(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b)) && value.trim() == value;
    if plain {
        value.to_owned()
    } else {
        use base64::Engine as _;
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value.as_bytes())
        )
    }
}

/// A URL without user info and query, safe to log.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

/// The first 512 characters of a body, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(512).collect();
    if text.chars().count() > 512 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_mcp_header_annotations_are_validated() {
        let schema = json!({"properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "n": {"type": "integer", "x-mcp-header": "N"},
            "plain": {"type": "number"},
        }});
        let mut params = header_params(&schema).unwrap();
        params.sort();
        assert_eq!(
            params,
            vec![
                ("n".to_owned(), "N".to_owned()),
                ("region".to_owned(), "Region".to_owned())
            ]
        );
        for bad in [
            json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}),
            json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": "object", "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "My Region"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "Région"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A:B"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "X"}, "b": {"type": "string", "x-mcp-header": "x"}}}),
        ] {
            assert!(header_params(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unsafe_header_values_are_base64_wrapped() {
        assert_eq!(encode_header_value("us west 1"), "us west 1");
        assert_eq!(encode_header_value(""), "");
        assert_eq!(encode_header_value(" padded"), "=?base64?IHBhZGRlZA==?=");
        assert_eq!(encode_header_value("line1\nline2"), "=?base64?bGluZTEKbGluZTI=?=");
        assert!(encode_header_value("世界").starts_with("=?base64?"));
    }
}
