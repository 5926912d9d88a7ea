//! toolplane as an MCP server.
//!
//! [`McpServer`] is the transport-free protocol handler: a tenant's [`Catalog`] plus an [`McpServerConfig`] (a
//! named server exposing chosen tools or whole providers, with `form=form` parameters fixed by configuration). It
//! answers `initialize` (negotiating 2024-11-05 … 2025-11-25), `server/discover` (2026-07-28), `ping`,
//! `tools/list` and `tools/call`; for 2026-07-28 clients that declare the tasks extension `tasks/get`,
//! `tasks/update` and `tasks/cancel`, and for 2025-11-25 sessions whose client declared `tasks` the experimental
//! task-augmented `tools/call` with `tasks/get`, `tasks/result`, `tasks/list` and `tasks/cancel` ([`tasks`]).
//! [`mcp_router`] serves it over streamable HTTP (sessions and stateless) and [`serve_stdio`] over stdin/stdout.
//! [`McpServer::with_conformance_fixture`] adds, for conformance test servers only, the fixture tools, resources,
//! prompts, `logging/setLevel` and `completion/complete` that the `@modelcontextprotocol/conformance` server suite
//! calls by name.

mod content;
mod fixture;
mod http;
mod peer;
mod state;
mod stdio;
pub mod tasks;

use std::collections::HashMap;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use toolplane_core::{
    Catalog, InvokeFrom, InvokeOptions, Tool, ToolError, ToolParameter, ToolParameterForm, ToolParameterType,
    ToolProviderType,
};

use crate::protocol::{
    self, Implementation, LATEST_SESSION_VERSION, META_CLIENT_CAPABILITIES, META_SERVER_INFO, OLDEST_VERSION, Request,
    Response, RpcError, STATELESS_VERSION, SUPPORTED_VERSIONS, is_session_version,
};

pub use content::messages_to_result;
pub use http::{HttpOptions, McpServerResolver, ResolveError, StaticResolver, mcp_router};
pub use peer::{ClientRequestError, ListChange, PendingRequests, SubscriptionFilter};
pub use state::{RequestStateError, StateSealer};
pub use stdio::serve_stdio;
pub use tasks::{TASKS_EXTENSION, TaskEra, TaskScope, TaskStatus, TaskStore, TaskSupport};

use tasks::{TaskInputs, TaskLimits};

/// The session-era version with experimental tasks (SEP-1686).
const EXPERIMENTAL_TASKS_VERSION: &str = "2025-11-25";

/// `_meta` key tying a message to its task (2025-11-25 tasks).
const META_RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// Tasks listed per `tasks/list` page (2025-11-25).
const TASKS_PAGE: usize = 100;

/// The shortest TTL a 2025-11-25 client may ask for: a shorter one would lose the result before a first poll.
const MIN_REQUESTED_TTL: Duration = Duration::from_secs(1);

/// One entry of a server's configuration: a single tool, or every tool of a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExposedEntry {
    /// One tool.
    Tool {
        provider_type: ToolProviderType,
        provider_id: String,
        tool_name: String,
        /// The MCP name; the tool's name when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Replaces the tool's description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// Values of `form=form` parameters (and any others to fix).
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        parameters: Map<String, Value>,
        /// The credential to use (the default one when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential_id: Option<String>,
    },
    /// Every tool of a provider.
    Provider {
        provider_type: ToolProviderType,
        provider_id: String,
        /// Values fixed for every tool of the provider, by parameter name.
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        parameters: Map<String, Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential_id: Option<String>,
    },
}

/// A named MCP server: what it is called and which tools it exposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServerConfig {
    /// `serverInfo.name`.
    pub name: String,
    /// `instructions` (Dify: the server's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The exposed tools, in listing order.
    pub entries: Vec<ExposedEntry>,
}

/// Limits of a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Time limit of one `tools/call` (`None`: unlimited).
    pub invoke_timeout: Option<Duration>,
    /// How long a server-to-client request (`sampling/createMessage`, `elicitation/create`) waits for the
    /// client's answer (default 5 min: elicitation waits for a person).
    pub client_request_timeout: Duration,
    /// Tasks (2026-07-28): a task-eligible call that ends within this time is answered directly; one that runs
    /// longer, or asks the client a question, is answered with its task (default 1 s; zero: always a task).
    pub task_after: Duration,
    /// Tasks: how long a task and its result are kept, counted from its creation (`ttlMs`, default 1 h). A task
    /// still running then is stopped.
    pub task_ttl: Duration,
    /// Tasks: the polling interval suggested to clients (`pollIntervalMs`, default 500 ms).
    pub task_poll_interval: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            invoke_timeout: Some(Duration::from_secs(600)),
            client_request_timeout: Duration::from_secs(300),
            task_after: Duration::from_secs(1),
            task_ttl: Duration::from_secs(3600),
            task_poll_interval: Duration::from_millis(500),
        }
    }
}

/// The context of one request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The protocol version in force: the session's, or 2026-07-28 for stateless requests.
    pub protocol_version: String,
    /// Fired when the client cancels the request or goes away.
    pub cancel: CancellationToken,
    /// What the client declared: `initialize`'s `capabilities` (session era) or the request's
    /// `_meta.io.modelcontextprotocol/clientCapabilities` (2026-07-28). `None`: nothing declared.
    client_capabilities: Option<Arc<Value>>,
    /// 2026-07-28 retries: the client's answers to an earlier `input_required` result, by key.
    input_responses: Option<Arc<Map<String, Value>>>,
    /// 2026-07-28 retries: the verified `requestState` of an earlier `input_required` result.
    request_state: Option<Arc<Value>>,
    /// The request's outgoing messages (notifications, requests to the client), in order; the transport
    /// forwards them (its SSE response, stdout) or takes them with [`take_notifications`](Self::take_notifications).
    outbox: Arc<peer::Outbox>,
    /// Where the client's answers to our requests arrive; `None` when the transport cannot carry requests to the
    /// client.
    pending: Option<Arc<PendingRequests>>,
    client_timeout: Duration,
    /// The tasks this request may create and reach (2026-07-28 transports that keep tasks).
    tasks: Option<TaskScope>,
    /// Set while the handler runs as a task: its questions to the client wait in the task's `inputRequests`.
    task: Option<TaskInputs>,
}

impl RequestContext {
    /// A context for `version` with a fresh cancellation token.
    pub fn new(version: impl Into<String>) -> Self {
        Self {
            protocol_version: version.into(),
            cancel: CancellationToken::new(),
            client_capabilities: None,
            input_responses: None,
            request_state: None,
            outbox: Arc::default(),
            pending: None,
            client_timeout: ServerOptions::default().client_request_timeout,
            tasks: None,
            task: None,
        }
    }

    /// Builder: the tasks the request may create and reach (see [`TaskScope::new`] for what the owner must be).
    /// Without it, the tasks extension is neither offered nor served.
    pub fn with_tasks(mut self, scope: TaskScope) -> Self {
        self.tasks = Some(scope);
        self
    }

    /// The context a call's work gets when it runs as a task: the request's version and declared capabilities,
    /// nothing bound to the request itself (its stream, retry answers, cancellation), and the task's questions
    /// and cancellation instead.
    fn for_task(&self, inputs: TaskInputs) -> Self {
        Self {
            protocol_version: self.protocol_version.clone(),
            cancel: inputs.cancel_token(),
            client_capabilities: self.client_capabilities.clone(),
            input_responses: None,
            request_state: None,
            outbox: Arc::default(),
            pending: None,
            client_timeout: self.client_timeout,
            tasks: None,
            task: Some(inputs),
        }
    }

    /// Whether the client declared extension `id` (`capabilities.extensions[id]`).
    pub fn declares_extension(&self, id: &str) -> bool {
        self.client_capabilities
            .as_deref()
            .and_then(|c| c.get("extensions"))
            .and_then(|e| e.get(id))
            .is_some_and(Value::is_object)
    }

    /// The tasks scope when this request may be answered with a task: a 2026-07-28 request whose client declared
    /// the extension, on a transport that keeps tasks.
    fn task_scope(&self) -> Option<&TaskScope> {
        self.tasks
            .as_ref()
            .filter(|_| self.stateless() && self.declares_extension(TASKS_EXTENSION))
    }

    /// The tasks scope when 2025-11-25 experimental tasks are offered: a 2025-11-25 session whose client declared
    /// the `tasks` capability at `initialize`, on a transport that keeps tasks.
    fn experimental_scope(&self) -> Option<&TaskScope> {
        self.tasks.as_ref().filter(|_| {
            self.protocol_version == EXPERIMENTAL_TASKS_VERSION && declares_tasks(self.client_capabilities.as_deref())
        })
    }

    /// Builder: the capabilities the client declared.
    pub fn with_client_capabilities(mut self, capabilities: Arc<Value>) -> Self {
        self.client_capabilities = Some(capabilities);
        self
    }

    /// Builder: the table the client's answers to our requests are matched in. The transport must then forward
    /// the outgoing messages while the request runs (see [`next_outgoing`](Self::next_outgoing)); without it,
    /// requests to the client fail.
    pub fn with_pending_requests(mut self, pending: Arc<PendingRequests>) -> Self {
        self.pending = Some(pending);
        self
    }

    /// The next message the handler sends to the client, waiting for one (transports forward these while the
    /// request runs).
    pub async fn next_outgoing(&self) -> protocol::Request {
        self.outbox.next().await
    }

    /// The next outgoing message if one is queued.
    pub fn try_next_outgoing(&self) -> Option<protocol::Request> {
        self.outbox.pop()
    }

    /// Builder: how long requests to the client wait for an answer.
    pub fn with_client_timeout(mut self, timeout: Duration) -> Self {
        self.client_timeout = timeout;
        self
    }

    /// The capabilities the client declared, if known.
    pub fn client_capabilities(&self) -> Option<&Value> {
        self.client_capabilities.as_deref()
    }

    /// Sends a notification to the client on this request's stream. A task has no stream: progress and log
    /// messages of tasks are dropped (the extension does not carry them).
    pub fn notify(&self, method: &str, params: Value) {
        if self.task.is_some() {
            return;
        }
        self.outbox.push(protocol::Request::notification(method, Some(params)));
    }

    /// Takes the outgoing messages queued so far.
    pub fn take_notifications(&self) -> Vec<protocol::Request> {
        self.outbox.drain()
    }

    /// 2026-07-28 retries: the state the handler attached to its earlier `input_required` result
    /// ([`ClientRequestError::with_state`]), verified by the server; `None` on first calls and in the session era.
    pub fn request_state(&self) -> Option<&Value> {
        self.request_state.as_deref()
    }

    fn stateless(&self) -> bool {
        self.protocol_version == STATELESS_VERSION
    }

    /// Asks the client: sends `method` with `params` and waits for its result, after checking that the client
    /// declared `capability`. In a stateless 2026-07-28 request there is no way back to the client: the answer is
    /// taken from the retry's `inputResponses[key]`, and without one the call fails with
    /// [`ClientRequestError::InputRequired`], which the handler returns as it is (it becomes the
    /// `input_required` result the client answers).
    pub async fn request_client(
        &self,
        key: &str,
        capability: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, ClientRequestError> {
        let declared = self
            .client_capabilities
            .as_deref()
            .and_then(|c| c.get(capability))
            .is_some_and(|c| !c.is_null());
        if !declared {
            return Err(ClientRequestError::MissingCapability {
                capability: capability.to_owned(),
            });
        }
        if let Some(task) = &self.task {
            return task.ask(key, method, params).await;
        }
        if self.stateless() {
            if let Some(answer) = self.input_responses.as_deref().and_then(|r| r.get(key)) {
                return match check_answer(method, answer) {
                    Ok(()) => Ok(answer.clone()),
                    Err(reason) => Err(ClientRequestError::InvalidInputResponse {
                        key: key.to_owned(),
                        reason,
                    }),
                };
            }
            let mut requests = Map::new();
            requests.insert(key.to_owned(), json!({"method": method, "params": params}));
            return Err(ClientRequestError::InputRequired { requests, state: None });
        }
        self.send_request(method, params).await
    }

    /// Sends `method` to the client on this request's stream and waits for its answer (session era).
    async fn send_request(&self, method: &str, params: Value) -> Result<Value, ClientRequestError> {
        let Some(pending) = &self.pending else {
            return Err(ClientRequestError::Unsupported { method: method.into() });
        };
        let (id, answer) = pending.register();
        self.outbox
            .push(protocol::Request::new(id.clone(), method, Some(params)));
        let outcome = tokio::select! {
            _ = self.cancel.cancelled() => Err(ClientRequestError::Closed { method: method.into() }),
            answer = tokio::time::timeout(self.client_timeout, answer) => match answer {
                Err(_) => {
                    // Tell the client to stop asking its user or model; its late answer will be ignored.
                    self.outbox.push(protocol::Request::notification(
                        "notifications/cancelled",
                        Some(json!({"requestId": id, "reason": "timed out"})),
                    ));
                    Err(ClientRequestError::Timeout { method: method.into(), timeout: self.client_timeout })
                }
                Ok(Err(_)) => Err(ClientRequestError::Closed { method: method.into() }),
                Ok(Ok(response)) => response
                    .into_result()
                    .map_err(|error| ClientRequestError::Rejected { method: method.into(), error }),
            },
        };
        if outcome.is_err() {
            pending.forget(&id);
        }
        outcome
    }

    /// `roots/list` (needs the client's `roots` capability).
    pub async fn list_roots(&self, key: &str) -> Result<Value, ClientRequestError> {
        self.request_client(key, "roots", "roots/list", json!({})).await
    }

    /// `sampling/createMessage` (needs the client's `sampling` capability).
    pub async fn create_message(&self, key: &str, params: Value) -> Result<Value, ClientRequestError> {
        self.request_client(key, "sampling", "sampling/createMessage", params)
            .await
    }

    /// `elicitation/create` in form mode (needs the client's `elicitation` capability).
    pub async fn elicit(&self, key: &str, params: Value) -> Result<Value, ClientRequestError> {
        self.request_client(key, "elicitation", "elicitation/create", params)
            .await
    }
}

/// Whether client capabilities declare `tasks` (2025-11-25: the client takes task-augmented requests' answers).
fn declares_tasks(capabilities: Option<&Value>) -> bool {
    capabilities.and_then(|c| c.get("tasks")).is_some_and(Value::is_object)
}

/// The version a session-era server answers `initialize` with: the client's when supported, else the newest
/// session version (the client then decides whether it can speak it).
pub fn negotiate_version(requested: &str) -> &'static str {
    SUPPORTED_VERSIONS
        .iter()
        .find(|v| **v == requested && is_session_version(v))
        .copied()
        .unwrap_or(LATEST_SESSION_VERSION)
}

/// A tool as this server exposes it.
#[derive(Clone)]
struct Exposed {
    name: String,
    provider_type: ToolProviderType,
    provider_id: String,
    tool: Arc<dyn Tool>,
    description: Option<String>,
    fixed: Map<String, Value>,
    credential_id: Option<String>,
}

/// The MCP protocol handler of one named server of one tenant.
pub struct McpServer {
    catalog: Arc<Catalog>,
    tenant_id: String,
    config: McpServerConfig,
    options: ServerOptions,
    fixture: Option<Arc<fixture::ConformanceFixture>>,
    /// List changes for `subscriptions/listen` streams and session GET streams.
    changes: broadcast::Sender<ListChange>,
    /// `serverInfo` as JSON, built once (2026-07-28 results carry it in `_meta`).
    server_info_value: Value,
    /// MCP name -> index of a single-tool entry, when every entry is a single tool and the name is unique: such a
    /// call resolves its tool once, in the catalog, without listing anything.
    direct: HashMap<String, usize>,
    /// Seals and verifies the `requestState` of 2026-07-28 `input_required` results.
    sealer: Arc<StateSealer>,
}

impl McpServer {
    /// A server over the tenant's catalog.
    pub fn new(catalog: Arc<Catalog>, tenant_id: impl Into<String>, config: McpServerConfig) -> Self {
        let server_info_value = json!(Implementation {
            name: config.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: None,
        });
        let mut direct = HashMap::new();
        if config.entries.iter().all(|e| matches!(e, ExposedEntry::Tool { .. })) {
            let mut seen = HashSet::new();
            for (index, entry) in config.entries.iter().enumerate() {
                if let ExposedEntry::Tool { tool_name, name, .. } = entry {
                    let mcp_name = sanitize_name(name.as_deref().unwrap_or(tool_name));
                    if seen.insert(mcp_name.clone()) {
                        direct.insert(mcp_name, index);
                    } else {
                        // Duplicates get renamed by the listing; leave them to the slow path.
                        direct.remove(&mcp_name);
                    }
                }
            }
        }
        Self {
            catalog,
            tenant_id: tenant_id.into(),
            config,
            options: ServerOptions::default(),
            fixture: None,
            changes: broadcast::channel(64).0,
            server_info_value,
            direct,
            sealer: Arc::default(),
        }
    }

    /// Builder: the key `requestState` is sealed with (HMAC-SHA256). Without it each server has a random key, so
    /// a retry must reach the process that issued the state; share one key between nodes behind a load balancer.
    pub fn with_request_state_key(mut self, key: &[u8]) -> Self {
        self.sealer = Arc::new(StateSealer::with_key(key));
        self
    }

    /// The `input_required` result for `requests`, with `state` sealed into `requestState` for the request
    /// `scope` (see [`StateSealer::seal`]).
    fn input_required(&self, scope: &str, requests: Map<String, Value>, state: Option<Value>) -> Value {
        let mut result = json!({"resultType": "input_required", "inputRequests": requests});
        if let Some(state) = state {
            result["requestState"] = json!(self.sealer.seal(scope, &state));
        }
        result
    }

    /// The arguments of tool `name` that clients mirror in `Mcp-Param-*` headers (SEP-2243), as (property, header
    /// suffix) pairs. Only fixture tools declare `x-mcp-header`: tenant tools' schemas are generated from their
    /// parameters and never carry it, so the hot path lists nothing.
    pub(crate) fn header_parameters(&self, name: &str) -> Vec<(String, String)> {
        if self.fixture.is_none() {
            return Vec::new();
        }
        fixture::ConformanceFixture::tools()
            .iter()
            .filter(|t| t.get("name").and_then(Value::as_str) == Some(name))
            .filter_map(|t| t.pointer("/inputSchema/properties").and_then(Value::as_object))
            .flat_map(|properties| {
                properties.iter().filter_map(|(property, schema)| {
                    let suffix = schema.get("x-mcp-header").and_then(Value::as_str)?;
                    Some((property.clone(), suffix.to_owned()))
                })
            })
            .collect()
    }

    /// Builder: also serve the conformance fixture of `@modelcontextprotocol/conformance` (tools such as
    /// `test_simple_text`, resources `test://…`, prompts `test_*`, `logging/setLevel`, `completion/complete`).
    /// For conformance test servers only; never enable it on a tenant's server.
    pub fn with_conformance_fixture(mut self) -> Self {
        self.fixture = Some(Arc::default());
        self
    }

    /// Builder: limits.
    pub fn with_options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &McpServerConfig {
        &self.config
    }

    /// The limits.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// Announces a change to every open `subscriptions/listen` stream that asked for it and every session GET
    /// stream. Nobody listening is not an error.
    pub fn announce(&self, change: ListChange) {
        let _ = self.changes.send(change);
    }

    /// A receiver of the changes announced from now on.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<ListChange> {
        self.changes.subscribe()
    }

    /// What a `subscriptions/listen` request's `notifications` asked for, narrowed to what this server offers.
    pub fn subscription_filter(&self, requested: Option<&Value>) -> SubscriptionFilter {
        let capabilities = self.capabilities(true);
        let offered = |path: [&str; 2]| capabilities[path[0]][path[1]] == json!(true);
        let asked = |key: &str| requested.and_then(|r| r.get(key)) == Some(&json!(true));
        SubscriptionFilter {
            tools: asked("toolsListChanged") && offered(["tools", "listChanged"]),
            prompts: asked("promptsListChanged") && offered(["prompts", "listChanged"]),
            resources: asked("resourcesListChanged") && offered(["resources", "listChanged"]),
            resource_uris: if offered(["resources", "subscribe"]) {
                requested
                    .and_then(|r| r.get("resourceSubscriptions"))
                    .and_then(Value::as_array)
                    .map(|uris| uris.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
        }
    }

    fn server_info(&self) -> Implementation {
        // Kept in step with `server_info_value`.
        Implementation {
            name: self.config.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: None,
        }
    }

    fn capabilities(&self, stateless: bool) -> Value {
        match &self.fixture {
            Some(_) => fixture::ConformanceFixture::capabilities(stateless),
            None => json!({"tools": {"listChanged": false}}),
        }
    }

    /// Handles one request or notification; `None` for notifications (they get no response).
    pub async fn handle(&self, mut request: Request, ctx: &RequestContext) -> Option<Response> {
        let id = request.id.clone()?;
        // A stateless request declares its client's capabilities itself, and a retry after `input_required`
        // carries the answers.
        let local;
        let ctx = if ctx.stateless() {
            let params = request.params.as_ref();
            let input_responses = match params.and_then(|p| p.get("inputResponses")) {
                None => None,
                Some(Value::Object(map)) => Some(map),
                Some(_) => {
                    return Some(Response::err(
                        Some(id),
                        RpcError::invalid_params(
                            "\"inputResponses\" must be an object mapping each key of the earlier inputRequests to \
                             the client's result for it",
                        ),
                    ));
                }
            };
            let request_state = match params.and_then(|p| p.get("requestState")) {
                None => None,
                Some(Value::String(token)) => {
                    let empty = Map::new();
                    let scope = state::scope(&request.method, params.and_then(Value::as_object).unwrap_or(&empty));
                    match self.sealer.open(&scope, token) {
                        Ok(state) => Some(Arc::new(state)),
                        Err(error) => {
                            return Some(Response::err(Some(id), RpcError::invalid_params(error.to_string())));
                        }
                    }
                }
                Some(_) => {
                    return Some(Response::err(
                        Some(id),
                        RpcError::invalid_params(
                            "\"requestState\" must be the string of the earlier input_required result, unchanged",
                        ),
                    ));
                }
            };
            if ctx.client_capabilities.is_none() || input_responses.is_some() || request_state.is_some() {
                let mut derived = ctx.clone();
                if derived.client_capabilities.is_none() {
                    derived.client_capabilities = params
                        .and_then(|p| p.get("_meta"))
                        .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
                        .map(|c| Arc::new(c.clone()));
                }
                derived.input_responses = input_responses.map(|r| Arc::new(r.clone()));
                derived.request_state = request_state;
                local = derived;
                &local
            } else {
                ctx
            }
        } else {
            ctx
        };
        let removed_in_stateless = matches!(
            request.method.as_str(),
            "initialize" | "ping" | "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe"
        );
        let empty = Map::new();
        let params = request.params.as_ref().and_then(Value::as_object).unwrap_or(&empty);
        let fixture = self
            .fixture
            .as_ref()
            .and_then(|f| f.handle(&request.method, params))
            .map(|result| {
                // 2026-07-28 list and read results carry cache hints (SEP-2549).
                let cached = matches!(
                    request.method.as_str(),
                    "resources/list" | "resources/templates/list" | "resources/read" | "prompts/list"
                );
                result.map(|mut value| {
                    if ctx.stateless() && cached {
                        value["ttlMs"] = json!(0);
                        value["cacheScope"] = json!("public");
                    }
                    value
                })
            });
        let is_initialize = request.method == "initialize";
        let result = if request.method == "tools/call" && fixture.is_none() {
            // The hot path: the params move into the call instead of being copied.
            self.call_tool(request.params.take(), ctx).await
        } else {
            match (request.method.as_str(), fixture) {
                (method, _) if ctx.stateless() && removed_in_stateless => Err(RpcError::method_not_found(method)),
                (_, Some(result)) => result,
                ("initialize", None) => Ok(self.initialize(&request, ctx)),
                ("server/discover", None) => Ok(self.discover(ctx)),
                ("ping", None) => Ok(json!({})),
                ("tools/list", None) => self.list_tools(ctx).await,
                ("tasks/get" | "tasks/update" | "tasks/cancel", None) if ctx.stateless() && ctx.tasks.is_some() => {
                    self.task_request(&request.method, params, ctx)
                }
                ("tasks/get" | "tasks/result" | "tasks/list" | "tasks/cancel", None)
                    if let Some(scope) = ctx.experimental_scope() =>
                {
                    self.experimental_task_request(&request.method, params, scope, ctx)
                        .await
                }
                ("prompts/get", None) if let Some(fixture) = &self.fixture => {
                    match fixture.input_required_prompt(ctx).await {
                        Ok(result) => Ok(result),
                        Err(ClientRequestError::InputRequired { requests, state }) if ctx.stateless() => {
                            let scope = state::scope("prompts/get", params);
                            Ok(self.input_required(&scope, requests, state))
                        }
                        Err(error) => Err(error.to_rpc_error()),
                    }
                }
                (other, None) => Err(RpcError::method_not_found(other)),
            }
        };
        Some(match result {
            Ok(mut result) => {
                if ctx.stateless()
                    && !is_initialize
                    && let Value::Object(map) = &mut result
                {
                    map.entry("resultType").or_insert_with(|| json!("complete"));
                    let meta = map.entry("_meta").or_insert_with(|| json!({}));
                    if let Value::Object(meta) = meta {
                        meta.insert(META_SERVER_INFO.into(), self.server_info_value.clone());
                    }
                }
                Response::ok(id, result)
            }
            Err(error) => Response::err(Some(id), error),
        })
    }

    /// `initialize`. A 2025-11-25 session whose client declares `tasks`, on a transport that keeps tasks, is
    /// offered task-augmented `tools/call` and `tasks/cancel`, and `tasks/list` when the caller is identified.
    fn initialize(&self, request: &Request, ctx: &RequestContext) -> Value {
        let params = request.params.as_ref();
        let requested = params
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str)
            .unwrap_or(OLDEST_VERSION);
        let version = negotiate_version(requested);
        let mut capabilities = self.capabilities(false);
        if let Some(scope) = &ctx.tasks
            && version == EXPERIMENTAL_TASKS_VERSION
            && declares_tasks(params.and_then(|p| p.get("capabilities")))
        {
            let mut tasks = json!({"cancel": {}, "requests": {"tools": {"call": {}}}});
            if scope.listing {
                tasks["list"] = json!({});
            }
            capabilities["tasks"] = tasks;
        }
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": self.server_info(),
        });
        if let Some(instructions) = &self.config.instructions {
            result["instructions"] = json!(instructions);
        }
        result
    }

    fn discover(&self, ctx: &RequestContext) -> Value {
        let mut capabilities = self.capabilities(true);
        if ctx.tasks.is_some() {
            capabilities["extensions"] = json!({TASKS_EXTENSION: {}});
        }
        let mut result = json!({
            "supportedVersions": SUPPORTED_VERSIONS,
            "capabilities": capabilities,
            "serverInfo": self.server_info(),
            "ttlMs": 0,
            "cacheScope": "private",
        });
        if let Some(instructions) = &self.config.instructions {
            result["instructions"] = json!(instructions);
        }
        result
    }

    /// Every exposed tool, in configuration order; names are unique (later duplicates get a provider prefix).
    /// A provider that cannot be loaded is skipped (logged) so one broken provider does not take the server down.
    async fn exposed(&self) -> Vec<Exposed> {
        let mut out: Vec<Exposed> = Vec::new();
        let mut names = HashSet::new();
        let mut push = |mut exposed: Exposed, out: &mut Vec<Exposed>| {
            if !names.insert(exposed.name.clone()) {
                exposed.name = sanitize_name(&format!("{}_{}", exposed.provider_id, exposed.name));
                if !names.insert(exposed.name.clone()) {
                    tracing::warn!(tool = %exposed.name, "skipping a duplicate MCP tool name");
                    return;
                }
            }
            out.push(exposed);
        };
        for entry in &self.config.entries {
            match entry {
                ExposedEntry::Tool {
                    provider_type,
                    provider_id,
                    tool_name,
                    name,
                    description,
                    parameters,
                    credential_id,
                } => match self.load_tool(*provider_type, provider_id, tool_name).await {
                    Some(tool) => push(
                        Exposed {
                            name: sanitize_name(name.as_deref().unwrap_or(tool_name)),
                            provider_type: *provider_type,
                            provider_id: provider_id.clone(),
                            tool,
                            description: description.clone(),
                            fixed: parameters.clone(),
                            credential_id: credential_id.clone(),
                        },
                        &mut out,
                    ),
                    None => continue,
                },
                ExposedEntry::Provider {
                    provider_type,
                    provider_id,
                    parameters,
                    credential_id,
                } => {
                    let provider = match self
                        .catalog
                        .provider(&self.tenant_id, *provider_type, provider_id)
                        .await
                    {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(provider = %provider_id, error = %e, "MCP server skips a provider");
                            continue;
                        }
                    };
                    let tools = match provider.tools().await {
                        Ok(tools) => tools,
                        Err(e) => {
                            tracing::warn!(provider = %provider_id, error = %e, "MCP server skips a provider");
                            continue;
                        }
                    };
                    for tool in tools {
                        push(
                            Exposed {
                                name: sanitize_name(&tool.entity().identity.name),
                                provider_type: *provider_type,
                                provider_id: provider_id.clone(),
                                tool,
                                description: None,
                                fixed: parameters.clone(),
                                credential_id: credential_id.clone(),
                            },
                            &mut out,
                        );
                    }
                }
            }
        }
        out
    }

    async fn load_tool(&self, kind: ToolProviderType, provider_id: &str, tool_name: &str) -> Option<Arc<dyn Tool>> {
        let provider = match self.catalog.provider(&self.tenant_id, kind, provider_id).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(provider = %provider_id, error = %e, "MCP server skips a tool");
                return None;
            }
        };
        match provider.tool(tool_name).await {
            Ok(Some(tool)) => Some(tool),
            Ok(None) => {
                tracing::warn!(provider = %provider_id, tool = %tool_name, "MCP server skips a tool that no longer exists");
                None
            }
            Err(e) => {
                tracing::warn!(provider = %provider_id, error = %e, "MCP server skips a tool");
                None
            }
        }
    }

    async fn list_tools(&self, ctx: &RequestContext) -> Result<Value, RpcError> {
        let tools: Vec<protocol::Tool> = self
            .exposed()
            .await
            .iter()
            .map(|e| to_mcp_tool(e, &ctx.protocol_version))
            .collect();
        let mut tools = serde_json::to_value(tools).map_err(|e| RpcError::internal(e.to_string()))?;
        if let Value::Array(list) = &mut tools {
            if self.fixture.is_some() {
                list.extend(fixture::ConformanceFixture::tools().iter().cloned());
            }
            // Where tasks are served, say which tools may (or must) run as one.
            if (ctx.stateless() && ctx.tasks.is_some()) || ctx.experimental_scope().is_some() {
                for tool in list.iter_mut() {
                    let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
                    let support = match &self.fixture {
                        Some(_) => fixture::ConformanceFixture::task_support(name).unwrap_or(TaskSupport::Optional),
                        None => TaskSupport::Optional,
                    };
                    tool["execution"] = json!({"taskSupport": support.as_str()});
                }
            }
        }
        let mut result = json!({"tools": tools});
        if ctx.stateless() {
            result["ttlMs"] = json!(0);
            result["cacheScope"] = json!("private");
        }
        Ok(result)
    }

    async fn call_tool(&self, params: Option<Value>, ctx: &RequestContext) -> Result<Value, RpcError> {
        let mut params = match params {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let Some(Value::String(name)) = params.get("name") else {
            return Err(RpcError::invalid_params("tools/call needs a string \"name\""));
        };
        if let Some(fixture) = &self.fixture {
            match fixture::ConformanceFixture::task_support(name) {
                Some(support @ (TaskSupport::Optional | TaskSupport::Required)) => {
                    let scope = format!("tools/call:{name}");
                    let route = task_route(name, support, ctx, &params)?;
                    let work = match fixture.prepare_task_tool(name, &params, ctx).await {
                        Ok(work) => work,
                        Err(ClientRequestError::InputRequired { requests, state }) if ctx.stateless() => {
                            return Ok(self.input_required(&scope, requests, state));
                        }
                        Err(error) => return Err(error.to_rpc_error()),
                    };
                    return self.run_work(route, work, ctx, &scope).await;
                }
                Some(TaskSupport::Forbidden) => {
                    // Refuses a 2025-11-25 request for a task.
                    task_route(name, TaskSupport::Forbidden, ctx, &params)?;
                    if let Some(result) = fixture.call_tool(name, &params, ctx, self).await {
                        return match result {
                            Ok(result) => Ok(result),
                            Err(ClientRequestError::InputRequired { requests, state }) if ctx.stateless() => {
                                Ok(self.input_required(&format!("tools/call:{name}"), requests, state))
                            }
                            Err(error) => Err(error.to_rpc_error()),
                        };
                    }
                }
                None => {}
            }
        }
        let Some(Value::String(name)) = params.remove("name") else {
            return Err(RpcError::invalid_params("tools/call needs a string \"name\""));
        };
        let arguments = match params.remove("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(RpcError::invalid_params("\"arguments\" must be an object")),
        };
        let slow;
        let target = match self.direct.get(&name).and_then(|i| self.config.entries.get(*i)) {
            Some(ExposedEntry::Tool {
                provider_type,
                provider_id,
                tool_name,
                parameters,
                credential_id,
                ..
            }) => Target {
                provider_type: *provider_type,
                provider_id,
                tool_name,
                fixed: parameters,
                credential_id: credential_id.as_deref(),
            },
            _ => {
                let Some(exposed) = self.exposed().await.into_iter().find(|e| e.name == name) else {
                    return Err(RpcError::invalid_params(format!("unknown tool: {name}")));
                };
                slow = exposed;
                Target {
                    provider_type: slow.provider_type,
                    provider_id: &slow.provider_id,
                    tool_name: &slow.tool.entity().identity.name,
                    fixed: &slow.fixed,
                    credential_id: slow.credential_id.as_deref(),
                }
            }
        };
        // Every catalog tool may run as a task; the same invocation then runs in the background.
        if let TaskRoute::Task { scope, era, ttl } = task_route(&name, TaskSupport::Optional, ctx, &params)? {
            let invocation = Invocation {
                catalog: Arc::clone(&self.catalog),
                tenant_id: self.tenant_id.clone(),
                provider_type: target.provider_type,
                provider_id: target.provider_id.to_owned(),
                tool_name: target.tool_name.to_owned(),
                fixed: target.fixed.clone(),
                credential_id: target.credential_id.map(str::to_owned),
                timeout: self.options.invoke_timeout,
            };
            let work: Work = Box::new(move |task_ctx: RequestContext| {
                Box::pin(async move {
                    let outcome = invocation.run(arguments, task_ctx.cancel.clone()).await;
                    tool_result(&name, outcome).map_err(WorkError::Rpc)
                })
            });
            return self.run_task(scope, era, ttl, work, ctx).await;
        }
        let invocation = InvocationRef {
            catalog: &self.catalog,
            tenant_id: &self.tenant_id,
            target: &target,
            timeout: self.options.invoke_timeout,
        };
        tool_result(&name, invocation.run(arguments, ctx.cancel.clone()).await)
    }

    /// Runs a call's work in the request or as a task, as `route` says.
    async fn run_work(
        &self,
        route: TaskRoute<'_>,
        work: Work,
        ctx: &RequestContext,
        scope: &str,
    ) -> Result<Value, RpcError> {
        if let TaskRoute::Task { scope, era, ttl } = route {
            return self.run_task(scope, era, ttl, work, ctx).await;
        }
        match work(ctx.clone()).await {
            Ok(result) => Ok(result),
            Err(WorkError::Client(ClientRequestError::InputRequired { requests, state })) if ctx.stateless() => {
                Ok(self.input_required(scope, requests, state))
            }
            Err(error) => Err(error.into_rpc()),
        }
    }

    /// Starts the work as a task and answers with the task (`CreateTaskResult`). In the extension, when the work
    /// ends within [`ServerOptions::task_after`] without asking the client anything, the answer is its result, as
    /// if no task had been made; a 2025-11-25 client asked for the task and gets it at once, kept for the TTL it
    /// asked for (at most [`ServerOptions::task_ttl`]).
    async fn run_task(
        &self,
        task_scope: &TaskScope,
        era: TaskEra,
        requested_ttl: Option<Duration>,
        work: Work,
        ctx: &RequestContext,
    ) -> Result<Value, RpcError> {
        let longest = self.options.task_ttl;
        let ttl = match (era, requested_ttl) {
            (TaskEra::Experimental, Some(ttl)) => ttl.min(longest).max(MIN_REQUESTED_TTL.min(longest)),
            _ => longest,
        };
        let limits = TaskLimits {
            ttl,
            poll_interval: self.options.task_poll_interval,
        };
        let template = ctx.clone();
        let entry = task_scope
            .store
            .start(Arc::clone(&task_scope.owner), era, limits, move |inputs| {
                let work = work(template.for_task(inputs));
                Box::pin(async move { work.await.map_err(WorkError::into_rpc) })
            })?;
        if era == TaskEra::Experimental {
            return Ok(entry.create_result());
        }
        // The client learns the task's id only from this response: should the request go away before it is sent,
        // nobody could ever reach the task, so it is stopped and forgotten.
        struct Unclaimed<'a> {
            store: &'a TaskStore,
            entry: Option<Arc<tasks::TaskEntry>>,
        }
        impl Drop for Unclaimed<'_> {
            fn drop(&mut self) {
                if let Some(entry) = self.entry.take() {
                    let _ = entry.cancel();
                    self.store.remove(entry.id());
                }
            }
        }
        let mut unclaimed = Unclaimed {
            store: &task_scope.store,
            entry: Some(Arc::clone(&entry)),
        };
        if !self.options.task_after.is_zero() {
            let mut status = entry.watch();
            let settled = status.wait_for(|s| *s != TaskStatus::Working);
            // Timing out means the work runs on as a task.
            let _ = tokio::time::timeout(self.options.task_after, settled).await;
            if let Some(outcome) = entry.outcome() {
                unclaimed.entry = None;
                task_scope.store.remove(entry.id());
                return outcome;
            }
        }
        unclaimed.entry = None;
        Ok(entry.create_result())
    }

    /// `tasks/get`, `tasks/update` and `tasks/cancel`, for clients that declared the extension; a task is found
    /// only by the owner that created it.
    fn task_request(&self, method: &str, params: &Map<String, Value>, ctx: &RequestContext) -> Result<Value, RpcError> {
        let Some(task_scope) = ctx.tasks.as_ref() else {
            return Err(RpcError::method_not_found(method));
        };
        if !ctx.declares_extension(TASKS_EXTENSION) {
            return Err(tasks::missing_extension(format!(
                "{method} needs the {TASKS_EXTENSION} extension: declare it in \
                 _meta.io.modelcontextprotocol/clientCapabilities.extensions"
            )));
        }
        let entry = find_task(method, params, task_scope, TaskEra::Extension)?;
        match method {
            "tasks/get" => Ok(entry.get_result()),
            "tasks/update" => {
                let Some(Value::Object(responses)) = params.get("inputResponses") else {
                    return Err(RpcError::invalid_params(
                        "tasks/update needs \"inputResponses\": an object mapping keys of the task's inputRequests \
                         to the client's answers",
                    ));
                };
                entry.deliver(responses)?;
                Ok(json!({"resultType": "complete"}))
            }
            _ => {
                // Cancelling an ended task is acknowledged and changes nothing (SEP-2663).
                let _ = entry.cancel();
                Ok(json!({"resultType": "complete"}))
            }
        }
    }

    /// 2025-11-25 `tasks/get`, `tasks/result`, `tasks/list` and `tasks/cancel`; a task is found only by the owner
    /// that created it, and only in this era.
    async fn experimental_task_request(
        &self,
        method: &str,
        params: &Map<String, Value>,
        scope: &TaskScope,
        ctx: &RequestContext,
    ) -> Result<Value, RpcError> {
        if method == "tasks/list" {
            if !scope.listing {
                // Not offered: callers of this server are not told apart, so a list would show others' tasks.
                return Err(RpcError::method_not_found(method));
            }
            let cursor = match params.get("cursor") {
                None | Some(Value::Null) => None,
                Some(Value::String(cursor)) => Some(cursor.as_str()),
                Some(_) => return Err(RpcError::invalid_params("\"cursor\" must be a string")),
            };
            let (page, next) = scope
                .store
                .list_page(&scope.owner, TaskEra::Experimental, cursor, TASKS_PAGE)
                .map_err(|()| {
                    RpcError::invalid_params("invalid cursor: pass the nextCursor of an earlier tasks/list unchanged")
                })?;
            let tasks: Vec<Value> = page.iter().map(|task| task.get_result()).collect();
            let mut result = json!({"tasks": tasks});
            if let Some(next) = next {
                result["nextCursor"] = json!(next);
            }
            return Ok(result);
        }
        let entry = find_task(method, params, scope, TaskEra::Experimental)?;
        match method {
            "tasks/get" => Ok(entry.get_result()),
            "tasks/cancel" => match entry.cancel() {
                Ok(()) => Ok(entry.get_result()),
                Err(status) => Err(RpcError::invalid_params(format!(
                    "cannot cancel task {:?}: it already ended with status {:?}",
                    entry.id(),
                    status.as_str()
                ))),
            },
            _ => task_result(&entry, ctx).await,
        }
    }
}

/// The task `params.taskId` names, of the scope's owner and in `era`; one never issued to them is not told apart
/// from one that does not exist.
fn find_task(
    method: &str,
    params: &Map<String, Value>,
    scope: &TaskScope,
    era: TaskEra,
) -> Result<Arc<tasks::TaskEntry>, RpcError> {
    let Some(Value::String(task_id)) = params.get("taskId") else {
        return Err(RpcError::invalid_params(format!("{method} needs a string \"taskId\"")));
    };
    scope.store.get(&scope.owner, era, task_id).ok_or_else(|| {
        RpcError::invalid_params(format!(
            "task not found: {task_id:?} (it never existed, has expired, or was created by another client)"
        ))
    })
}

/// 2025-11-25 `tasks/result`: waits until the task ends, meanwhile sending its questions to the client as requests
/// on this request's stream (tagged with the task) and handing the answers to the tool; then answers exactly what
/// the `tools/call` would have, its result tagged with the task.
async fn task_result(entry: &tasks::TaskEntry, ctx: &RequestContext) -> Result<Value, RpcError> {
    /// Questions sent on this stream and not answered yet: when the stream ends first, the next `tasks/result`
    /// sends them again.
    struct Unanswered<'a> {
        entry: &'a tasks::TaskEntry,
        keys: HashSet<String>,
    }
    impl Drop for Unanswered<'_> {
        fn drop(&mut self) {
            for key in &self.keys {
                self.entry.unsend(key);
            }
        }
    }
    let task_id = entry.id().to_owned();
    let mut status = entry.watch();
    let mut unanswered = Unanswered {
        entry,
        keys: HashSet::new(),
    };
    let mut asking = futures::stream::FuturesUnordered::new();
    loop {
        if let Some(payload) = entry.payload() {
            return payload.map(|mut result| {
                if let Value::Object(map) = &mut result
                    && let Value::Object(meta) = map.entry("_meta").or_insert_with(|| json!({}))
                {
                    meta.insert(META_RELATED_TASK.into(), json!({"taskId": task_id}));
                }
                result
            });
        }
        for question in entry.take_unsent() {
            unanswered.keys.insert(question.key.clone());
            let mut params = question.params;
            if let Value::Object(map) = &mut params
                && let Value::Object(meta) = map.entry("_meta").or_insert_with(|| json!({}))
            {
                meta.insert(META_RELATED_TASK.into(), json!({"taskId": task_id}));
            }
            asking.push(async move {
                let answer = ctx.send_request(&question.method, params).await;
                (question.key, answer)
            });
        }
        tokio::select! {
            // A status change or a new question (every change bumps the watch); the loop looks again.
            _ = status.changed() => {}
            Some((key, answer)) = futures::StreamExt::next(&mut asking), if !asking.is_empty() => {
                let answer = match answer {
                    Ok(value) => Ok(value),
                    Err(ClientRequestError::Rejected { error, .. }) => Err(error),
                    // The stream or session ended: the question waits for the next tasks/result.
                    Err(error @ ClientRequestError::Closed { .. }) => return Err(error.to_rpc_error()),
                    Err(error) => Err(error.to_rpc_error()),
                };
                unanswered.keys.remove(&key);
                entry.answer(&key, answer);
            }
            _ = ctx.cancel.cancelled() => {
                return Err(RpcError::internal("tasks/result was cancelled; the task goes on"));
            }
        }
    }
}

/// A call's work, given the context it runs in (the request's, or a task's).
pub(crate) type Work = Box<dyn FnOnce(RequestContext) -> WorkFuture + Send>;
pub(crate) type WorkFuture = Pin<Box<dyn Future<Output = Result<Value, WorkError>> + Send>>;

/// How a call's work failed.
#[derive(Debug)]
pub(crate) enum WorkError {
    /// A protocol error.
    Rpc(RpcError),
    /// A question to the client failed, or (stateless, outside a task) must be asked with `input_required`.
    Client(ClientRequestError),
}

impl WorkError {
    fn into_rpc(self) -> RpcError {
        match self {
            Self::Rpc(error) => error,
            Self::Client(error) => error.to_rpc_error(),
        }
    }
}

impl From<ClientRequestError> for WorkError {
    fn from(error: ClientRequestError) -> Self {
        Self::Client(error)
    }
}

/// How a call runs.
#[derive(Debug, Clone, Copy)]
enum TaskRoute<'a> {
    /// In the request.
    Inline,
    /// As a task of `era` in `scope`; `ttl` is what a 2025-11-25 client asked for.
    Task {
        scope: &'a TaskScope,
        era: TaskEra,
        ttl: Option<Duration>,
    },
}

/// Whether tool `name` runs as a task. 2025-11-25 sessions offered tasks: when the client asks for one (`task`
/// in `params`) and the tool allows it; -32601 for a task the tool forbids and for a plain call of a tool that
/// only runs as one (the spec's codes). 2026-07-28 requests declaring the extension: whenever the tool allows it.
/// Elsewhere `task` is ignored, and a tool that only runs as a task gets -32021.
fn task_route<'a>(
    name: &str,
    support: TaskSupport,
    ctx: &'a RequestContext,
    params: &Map<String, Value>,
) -> Result<TaskRoute<'a>, RpcError> {
    if let Some(scope) = ctx.experimental_scope() {
        let requested = match params.get("task") {
            None | Some(Value::Null) => None,
            Some(Value::Object(task)) => Some(task),
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "\"task\" must be an object, e.g. {\"ttl\": 60000}",
                ));
            }
        };
        return match (support, requested) {
            (TaskSupport::Forbidden, Some(_)) => Err(RpcError::new(
                protocol::codes::METHOD_NOT_FOUND,
                format!(
                    "tool {name:?} does not run as a task (execution.taskSupport is \"forbidden\"); call it \
                     without \"task\""
                ),
            )),
            (TaskSupport::Required, None) => Err(RpcError::new(
                protocol::codes::METHOD_NOT_FOUND,
                format!(
                    "tool {name:?} only runs as a task (execution.taskSupport is \"required\"); call it with \
                     \"task\": {{}}"
                ),
            )),
            (_, Some(task)) => {
                let ttl = task
                    .get("ttl")
                    .and_then(Value::as_f64)
                    .filter(|ms| ms.is_finite() && *ms >= 0.0)
                    .map(|ms| Duration::from_secs_f64((ms / 1000.0).min(1e9)));
                Ok(TaskRoute::Task {
                    scope,
                    era: TaskEra::Experimental,
                    ttl,
                })
            }
            (_, None) => Ok(TaskRoute::Inline),
        };
    }
    let scope = ctx.task_scope().map(|scope| TaskRoute::Task {
        scope,
        era: TaskEra::Extension,
        ttl: None,
    });
    match support {
        TaskSupport::Forbidden => Ok(TaskRoute::Inline),
        TaskSupport::Optional => Ok(scope.unwrap_or(TaskRoute::Inline)),
        TaskSupport::Required if let Some(route) = scope => Ok(route),
        TaskSupport::Required if ctx.tasks.is_none() || !ctx.stateless() => Err(tasks::missing_extension(
            "this tool only runs as a task, which needs protocol version 2026-07-28 and the \
             io.modelcontextprotocol/tasks extension, or a 2025-11-25 session whose client declared `tasks`",
        )),
        TaskSupport::Required => Err(tasks::missing_extension(
            "this tool only runs as a task: declare the io.modelcontextprotocol/tasks extension in \
             _meta.io.modelcontextprotocol/clientCapabilities.extensions",
        )),
    }
}

/// The `tools/call` result of an invocation; a configured tool whose provider or tool is gone is as unknown as a
/// name never configured.
fn tool_result(
    name: &str,
    outcome: Result<(Vec<toolplane_core::ToolInvokeMessage>, bool), ToolError>,
) -> Result<Value, RpcError> {
    let result = match outcome {
        Ok((messages, has_output_schema)) => messages_to_result(messages, has_output_schema),
        Err(error @ (ToolError::ProviderNotFound { .. } | ToolError::ToolNotFound { .. })) => {
            return Err(RpcError::invalid_params(format!("unknown tool: {name} ({error})")));
        }
        Err(error) => protocol::CallToolResult {
            content: vec![protocol::Content::text(error.to_string())],
            is_error: Some(true),
            ..Default::default()
        },
    };
    serde_json::to_value(&result).map_err(|e| RpcError::internal(e.to_string()))
}

/// What a `tools/call` invokes.
struct Target<'a> {
    provider_type: ToolProviderType,
    provider_id: &'a str,
    tool_name: &'a str,
    fixed: &'a Map<String, Value>,
    credential_id: Option<&'a str>,
}

/// A catalog invocation borrowing the server (calls answered in the request).
struct InvocationRef<'a> {
    catalog: &'a Catalog,
    tenant_id: &'a str,
    target: &'a Target<'a>,
    timeout: Option<Duration>,
}

impl InvocationRef<'_> {
    /// Invokes the target; also says whether the tool declares an object output schema (for
    /// `structuredContent`).
    async fn run(
        &self,
        mut arguments: Map<String, Value>,
        cancel: CancellationToken,
    ) -> Result<(Vec<toolplane_core::ToolInvokeMessage>, bool), ToolError> {
        let target = self.target;
        let resolved = self
            .catalog
            .runtime(
                self.tenant_id,
                target.provider_type,
                target.provider_id,
                target.tool_name,
                target.credential_id,
            )
            .await?;
        let mut runtime = resolved.runtime;
        runtime.runtime_parameters = target.fixed.clone();
        runtime.invoke_from = InvokeFrom::Mcp;
        let entity = resolved.tool.entity();
        let has_output_schema = object_output_schema(entity).is_some();
        // Only `form=llm` parameters come from the client; configured values cannot be overridden by it.
        arguments.retain(|key, _| match entity.parameters.iter().find(|p| p.name == *key) {
            Some(parameter) => parameter.form == ToolParameterForm::Llm,
            None => true,
        });
        let options = InvokeOptions {
            timeout: self.timeout,
            cancel,
        };
        let stream = toolplane_core::invoke(resolved.tool, runtime, arguments, options).await?;
        Ok((toolplane_core::collect_messages(stream).await?, has_output_schema))
    }
}

/// A catalog invocation owning what it needs, to run as a task after the request has been answered.
struct Invocation {
    catalog: Arc<Catalog>,
    tenant_id: String,
    provider_type: ToolProviderType,
    provider_id: String,
    tool_name: String,
    fixed: Map<String, Value>,
    credential_id: Option<String>,
    timeout: Option<Duration>,
}

impl Invocation {
    async fn run(
        &self,
        arguments: Map<String, Value>,
        cancel: CancellationToken,
    ) -> Result<(Vec<toolplane_core::ToolInvokeMessage>, bool), ToolError> {
        let target = Target {
            provider_type: self.provider_type,
            provider_id: &self.provider_id,
            tool_name: &self.tool_name,
            fixed: &self.fixed,
            credential_id: self.credential_id.as_deref(),
        };
        InvocationRef {
            catalog: &self.catalog,
            tenant_id: &self.tenant_id,
            target: &target,
            timeout: self.timeout,
        }
        .run(arguments, cancel)
        .await
    }
}

/// MCP tool names allow `[A-Za-z0-9_.-]`, 1–128 characters (SEP-986); anything else becomes `_`.
fn sanitize_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

fn to_mcp_tool(exposed: &Exposed, _version: &str) -> protocol::Tool {
    let entity = exposed.tool.entity();
    let description = exposed
        .description
        .clone()
        .or_else(|| {
            entity
                .description
                .as_ref()
                .map(|d| d.llm.clone())
                .filter(|d| !d.is_empty())
        })
        .or_else(|| entity.description.as_ref().map(|d| d.human.en_US.clone()))
        .unwrap_or_default();
    protocol::Tool {
        name: exposed.name.clone(),
        title: Some(entity.identity.label.en_US.clone()).filter(|t| !t.is_empty() && *t != exposed.name),
        description: Some(description),
        input_schema: input_schema(&entity.parameters, &exposed.fixed),
        output_schema: output_schema(exposed),
        annotations: None,
        meta: None,
        extra: Map::new(),
    }
}

/// The tool's declared output schema when it is an object schema (MCP requires `type: object`).
fn output_schema(exposed: &Exposed) -> Option<Value> {
    object_output_schema(exposed.tool.entity())
}

fn object_output_schema(entity: &toolplane_core::ToolEntity) -> Option<Value> {
    let schema = &entity.output_schema;
    if schema.is_empty() {
        return None;
    }
    let mut schema = schema.clone();
    match schema.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        None if schema.contains_key("properties") => {
            schema.insert("type".into(), json!("object"));
        }
        _ => return None,
    }
    Some(Value::Object(schema))
}

/// `form=llm` parameters as a JSON Schema object; fixed and file parameters are left out.
fn input_schema(parameters: &[ToolParameter], fixed: &Map<String, Value>) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for parameter in parameters {
        if parameter.form != ToolParameterForm::Llm || fixed.contains_key(&parameter.name) || parameter.kind.is_file() {
            continue;
        }
        properties.insert(parameter.name.clone(), parameter_schema(parameter));
        if parameter.required {
            required.push(json!(parameter.name));
        }
    }
    let mut schema = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    schema
}

fn parameter_schema(parameter: &ToolParameter) -> Value {
    let mut schema = match &parameter.input_schema {
        Some(schema) => Value::Object(schema.clone()),
        None => match parameter.kind {
            ToolParameterType::Number => json!({"type": "number"}),
            ToolParameterType::Boolean => json!({"type": "boolean"}),
            ToolParameterType::Select if !parameter.options.is_empty() => {
                json!({"type": "string", "enum": parameter.option_values()})
            }
            ToolParameterType::Array => json!({"type": "array"}),
            ToolParameterType::Object => json!({"type": "object"}),
            ToolParameterType::Any => json!({}),
            _ => json!({"type": "string"}),
        },
    };
    if let Value::Object(map) = &mut schema {
        let description = parameter
            .llm_description
            .clone()
            .filter(|d| !d.is_empty())
            .or_else(|| parameter.human_description.as_ref().map(|d| d.en_US.clone()))
            .filter(|d| !d.is_empty());
        if let Some(description) = description {
            map.entry("description").or_insert(json!(description));
        }
        if let Some(default) = &parameter.default
            && !default.is_null()
        {
            map.entry("default").or_insert(default.clone());
        }
    }
    schema
}

/// Checks that a 2026-07-28 `inputResponses` entry has the shape of a result of `method`, so a handler never works
/// on a malformed answer.
fn check_answer(method: &str, answer: &Value) -> Result<(), String> {
    let Value::Object(answer) = answer else {
        return Err(format!("expected the result object of {method}, got {answer}"));
    };
    match method {
        "elicitation/create" => match answer.get("action").and_then(Value::as_str) {
            Some("accept" | "decline" | "cancel") => Ok(()),
            _ => Err("an elicitation result needs \"action\": \"accept\", \"decline\" or \"cancel\"".into()),
        },
        "sampling/createMessage" => match answer.get("content") {
            Some(Value::Object(_) | Value::Array(_)) => Ok(()),
            _ => Err("a sampling result needs \"content\" (a content block or a list of them)".into()),
        },
        "roots/list" => match answer.get("roots") {
            Some(Value::Array(_)) => Ok(()),
            _ => Err("a roots/list result needs a \"roots\" array".into()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_session_versions() {
        assert_eq!(negotiate_version("2024-11-05"), "2024-11-05");
        assert_eq!(negotiate_version("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate_version("2026-07-28"), LATEST_SESSION_VERSION);
        assert_eq!(negotiate_version("1999-01-01"), LATEST_SESSION_VERSION);
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_name("langgenius/time:now"), "langgenius_time_now");
        assert_eq!(sanitize_name(""), "_");
        assert_eq!(sanitize_name(&"x".repeat(200)).len(), 128);
    }

    #[test]
    fn parameters_become_an_input_schema() {
        let params = vec![
            ToolParameter::new("q", ToolParameterType::String, ToolParameterForm::Llm).required(),
            ToolParameter::new("mode", ToolParameterType::Select, ToolParameterForm::Llm).options(["a", "b"]),
            ToolParameter::new("key", ToolParameterType::String, ToolParameterForm::Form).required(),
            ToolParameter::new("n", ToolParameterType::Number, ToolParameterForm::Llm).default_value(3),
            ToolParameter::new("fixed", ToolParameterType::String, ToolParameterForm::Llm),
            ToolParameter::new("upload", ToolParameterType::File, ToolParameterForm::Llm),
        ];
        let fixed = Map::from_iter([("fixed".into(), json!("x"))]);
        let schema = input_schema(&params, &fixed);
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "q": {"type": "string"},
                    "mode": {"type": "string", "enum": ["a", "b"]},
                    "n": {"type": "number", "default": 3}
                },
                "required": ["q"]
            })
        );
    }
}
