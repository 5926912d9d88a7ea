//! Streamable HTTP for [`McpServer`]s: `POST/GET/DELETE /mcp/server/{server_code}/mcp`, sessions for the
//! session era, stateless requests for 2026-07-28, optional bearer keys with the resource-server pieces.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::peer::Outbox;
use super::tasks::{TASKS_EXTENSION, TaskEra, TaskEvent, TaskScope, TaskStore};
use super::{ListChange, McpServer, PendingRequests, RequestContext, SubscriptionFilter};
use crate::protocol::{
    HEADER_METHOD, HEADER_NAME, HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID, META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION, Message, Request, RequestId, Response, RpcError, STATELESS_VERSION, codes,
    is_session_version, is_supported_version,
};

/// Why a server code could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No such server.
    #[error("MCP server not found; check the server code in the URL")]
    NotFound,
    /// The server exists but is switched off.
    #[error("this MCP server is disabled; enable it in the console")]
    Disabled,
    /// The server requires a bearer API key and the request had none or a wrong one.
    #[error("this MCP server requires a valid API key: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// Looking the server up failed.
    #[error("internal error while loading the MCP server: {0}")]
    Internal(String),
}

/// Finds the server behind a server code and checks its bearer key. Implemented by the server crate over its
/// store (and free to cache).
#[async_trait]
pub trait McpServerResolver: Send + Sync {
    /// The server for `server_code`, after checking `bearer` (the token of an `Authorization: Bearer` header)
    /// when the server requires a key.
    async fn resolve(&self, server_code: &str, bearer: Option<&str>) -> Result<Arc<McpServer>, ResolveError>;
}

/// A fixed set of servers, each with an optional API key (tests, single-tenant setups).
#[derive(Default)]
pub struct StaticResolver {
    servers: HashMap<String, (Arc<McpServer>, Option<String>)>,
}

impl StaticResolver {
    /// No servers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder: serve `server` at `server_code`, requiring `api_key` when given.
    pub fn with_server(
        mut self,
        server_code: impl Into<String>,
        server: Arc<McpServer>,
        api_key: Option<String>,
    ) -> Self {
        self.servers.insert(server_code.into(), (server, api_key));
        self
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[async_trait]
impl McpServerResolver for StaticResolver {
    async fn resolve(&self, server_code: &str, bearer: Option<&str>) -> Result<Arc<McpServer>, ResolveError> {
        let (server, key) = self.servers.get(server_code).ok_or(ResolveError::NotFound)?;
        if let Some(key) = key
            && !bearer.is_some_and(|b| constant_time_eq(b.as_bytes(), key.as_bytes()))
        {
            return Err(ResolveError::Unauthorized);
        }
        Ok(Arc::clone(server))
    }
}

/// Settings of the HTTP transport.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Largest accepted request body (default 4 MiB); larger ones get 413.
    pub max_message_bytes: usize,
    /// Sessions unused for this long expire; requests with their id then get 404 (default 30 min).
    pub session_idle_timeout: Duration,
    /// At most this many live sessions (default 10,000); more get 503.
    pub max_sessions: usize,
    /// The public base URL (e.g. `https://tools.example.com`) for protected resource metadata; taken from the
    /// `Host` header when absent.
    pub public_base_url: Option<String>,
    /// Authorization servers announced in the protected resource metadata.
    pub authorization_servers: Vec<String>,
    /// When set, requests with an `Origin` header not in this list get 403 (DNS-rebinding protection).
    pub allowed_origins: Option<Vec<String>>,
    /// Interval of keep-alive comments on GET streams.
    pub keep_alive: Duration,
    /// At most this many tasks (2026-07-28 tasks extension) are kept at once, running or finished within their
    /// TTL, over all servers of the router (default 10,000); calls that would make more get an error.
    pub max_tasks: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            session_idle_timeout: Duration::from_secs(30 * 60),
            max_sessions: 10_000,
            public_base_url: None,
            authorization_servers: Vec::new(),
            allowed_origins: None,
            keep_alive: Duration::from_secs(15),
            max_tasks: 10_000,
        }
    }
}

/// One session of the session era. Shared (`Arc`) so a request holds its session without holding the table's
/// lock.
struct Session {
    server_code: String,
    version: String,
    /// `initialize`'s `capabilities`.
    client_capabilities: Arc<Value>,
    /// 2025-11-25 with a client that declared `tasks`: its requests reach the owner's experimental tasks and its
    /// GET stream carries their `notifications/tasks/status`.
    tasks_offered: bool,
    /// Milliseconds since the table's epoch at the last request (an atomic, so touching needs no write lock).
    last_seen: AtomicU64,
    closed: CancellationToken,
    in_flight: Mutex<HashMap<RequestId, CancellationToken>>,
    /// Our requests to the client awaiting its POSTed responses.
    pending: Arc<PendingRequests>,
}

impl Session {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, CancellationToken>> {
        match self.in_flight.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Ends the session: its streams close and its running requests and waits for the client are cancelled.
    fn close(&self) {
        self.closed.cancel();
        self.in_flight().values().for_each(CancellationToken::cancel);
        self.pending.close_all();
    }
}

struct AppState {
    resolver: Arc<dyn McpServerResolver>,
    options: HttpOptions,
    /// Read-locked on every request (lookups run in parallel); write-locked only to open or end a session.
    sessions: RwLock<HashMap<String, Arc<Session>>>,
    epoch: Instant,
    /// The tasks of every server of the router: kept here, not in the [`McpServer`]s, which a resolver may rebuild
    /// at any time.
    tasks: Arc<TaskStore>,
}

impl AppState {
    fn sessions(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Session>>> {
        match self.sessions.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn sessions_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Session>>> {
        match self.sessions.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn expired(&self, session: &Session, now: u64) -> bool {
        let timeout = u64::try_from(self.options.session_idle_timeout.as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(session.last_seen.load(Ordering::Relaxed)) > timeout
    }

    /// The session after touching it; `None` when unknown, expired (it is then removed) or of another server.
    fn touch(&self, id: &str, code: &str) -> Option<Arc<Session>> {
        let session = self.sessions().get(id).cloned()?;
        if session.server_code != code {
            return None;
        }
        let now = self.now_ms();
        if self.expired(&session, now) {
            if let Some(session) = self.sessions_mut().remove(id) {
                session.close();
            }
            return None;
        }
        session.last_seen.store(now, Ordering::Relaxed);
        Some(session)
    }
}

/// The router: streamable HTTP at `/mcp/server/{server_code}/mcp` and its protected resource metadata at
/// `/.well-known/oauth-protected-resource/mcp/server/{server_code}/mcp`. Serve it with TCP_NODELAY on accepted
/// sockets (e.g. `axum::serve(listener.tap_io(|s| { let _ = s.set_nodelay(true); }), router)`): without it,
/// Nagle's algorithm adds about 40 ms to every call.
pub fn mcp_router(resolver: Arc<dyn McpServerResolver>, options: HttpOptions) -> Router {
    let state = Arc::new(AppState {
        resolver,
        tasks: Arc::new(TaskStore::new(options.max_tasks)),
        options,
        sessions: RwLock::new(HashMap::new()),
        epoch: Instant::now(),
    });
    Router::new()
        .route(
            "/mcp/server/{server_code}/mcp",
            get(get_stream).post(post_message).delete(delete_session),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp/server/{server_code}/mcp",
            get(resource_metadata),
        )
        .with_state(state)
}

fn rpc_error(status: StatusCode, id: Option<RequestId>, error: RpcError) -> HttpResponse {
    (status, axum::Json(Response::err(id, error))).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header_str(headers, header::AUTHORIZATION.as_str())?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    match &state.options.public_base_url {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => format!(
            "http://{}",
            header_str(headers, header::HOST.as_str()).unwrap_or("localhost")
        ),
    }
}

fn metadata_url(state: &AppState, headers: &HeaderMap, code: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource/mcp/server/{code}/mcp",
        base_url(state, headers)
    )
}

/// Origin check, then server lookup with the bearer key.
async fn authorize(state: &AppState, headers: &HeaderMap, code: &str) -> Result<Arc<McpServer>, HttpResponse> {
    if let (Some(allowed), Some(origin)) = (&state.options.allowed_origins, header_str(headers, "origin"))
        && !allowed.iter().any(|a| a == origin)
    {
        return Err(rpc_error(
            StatusCode::FORBIDDEN,
            None,
            RpcError::invalid_request(format!("origin {origin:?} is not allowed")),
        ));
    }
    match state.resolver.resolve(code, bearer(headers)).await {
        Ok(server) => Ok(server),
        Err(ResolveError::Unauthorized) => {
            let challenge = format!(
                r#"Bearer resource_metadata="{}", error="invalid_token""#,
                metadata_url(state, headers, code)
            );
            let mut response = rpc_error(
                StatusCode::UNAUTHORIZED,
                None,
                RpcError::invalid_request(ResolveError::Unauthorized.to_string()),
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
            Err(response)
        }
        Err(e @ ResolveError::NotFound) => Err(rpc_error(
            StatusCode::NOT_FOUND,
            None,
            RpcError::invalid_request(e.to_string()),
        )),
        Err(e @ ResolveError::Disabled) => Err(rpc_error(
            StatusCode::FORBIDDEN,
            None,
            RpcError::invalid_request(e.to_string()),
        )),
        Err(e @ ResolveError::Internal(_)) => {
            tracing::error!(error = %e, "MCP server lookup failed");
            Err(rpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                RpcError::internal("internal error"),
            ))
        }
    }
}

async fn post_message(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> HttpResponse {
    let server = match authorize(&state, &headers, &code).await {
        Ok(server) => server,
        Err(response) => return response,
    };
    let limit = state.options.max_message_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                RpcError::invalid_request(format!("message larger than {limit} bytes")),
            );
        }
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::parse_error(format!("invalid JSON: {e}")),
            );
        }
    };
    if let Some(version) = header_str(&headers, HEADER_PROTOCOL_VERSION)
        && !is_supported_version(version)
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            request_id(&value),
            RpcError::unsupported_version(version),
        );
    }
    match value {
        Value::Array(items) => post_batch(&state, &server, &code, &headers, items).await,
        single => post_single(&state, server, &code, &headers, single).await,
    }
}

/// [`Message::from_value`], with a fast path for well-formed requests: their fields move out of the parsed object
/// instead of being deserialized a second time (which would rebuild every nested map of `params`).
fn into_message(value: Value) -> Result<Message, RpcError> {
    let Value::Object(mut map) = value else {
        return Message::from_value(value);
    };
    let well_formed = map.len() <= 4
        && map.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
        && map.get("method").is_some_and(Value::is_string)
        && map
            .get("params")
            .is_none_or(|p| p.is_object() || p.is_array() || p.is_null())
        && map.get("id").is_none_or(|id| id.is_string() || id.is_i64())
        && map
            .keys()
            .all(|k| matches!(k.as_str(), "jsonrpc" | "method" | "params" | "id"));
    if !well_formed {
        return Message::from_value(Value::Object(map));
    }
    let id = match map.remove("id") {
        Some(Value::String(s)) => Some(RequestId::String(s)),
        Some(Value::Number(n)) => n.as_i64().map(RequestId::Number),
        _ => None,
    };
    let Some(Value::String(method)) = map.remove("method") else {
        // Checked above; unreachable, but answered as the slow path would.
        return Err(RpcError::invalid_request(r#""method" must be a string"#));
    };
    let params = map.remove("params").filter(|p| !p.is_null());
    Ok(Message::Request(Request {
        jsonrpc: crate::protocol::JsonRpcVersion,
        id,
        method,
        params,
    }))
}

fn request_id(value: &Value) -> Option<RequestId> {
    value.get("id").and_then(|id| serde_json::from_value(id.clone()).ok())
}

fn json_response(status: StatusCode, response: &Response) -> HttpResponse {
    (status, axum::Json(response)).into_response()
}

async fn post_single(
    state: &AppState,
    server: Arc<McpServer>,
    code: &str,
    headers: &HeaderMap,
    value: Value,
) -> HttpResponse {
    let id = request_id(&value);
    let request = match into_message(value) {
        Ok(Message::Request(request)) => request,
        Ok(Message::Response(response)) => return client_response(state, code, headers, response),
        Err(error) => return rpc_error(StatusCode::BAD_REQUEST, id, error),
    };
    let session_id = header_str(headers, HEADER_SESSION_ID);

    if request.id.is_none() {
        if let Some(session_id) = session_id {
            let Some(session) = state.touch(session_id, code) else {
                return session_not_found(None);
            };
            if request.method == "notifications/cancelled" {
                cancel_in_flight(&session, &request);
            }
        }
        return StatusCode::ACCEPTED.into_response();
    }

    // A 2026-07-28 request (by header or `_meta`) never opens a session, not even with `initialize`.
    let modern = header_str(headers, HEADER_PROTOCOL_VERSION) == Some(STATELESS_VERSION)
        || meta_version(&request).as_deref() == Some(STATELESS_VERSION);
    if request.method == "initialize" && !modern {
        return initialize(state, &server, code, headers, request).await;
    }

    if let Some(session_id) = session_id.filter(|_| !modern) {
        let Some(session) = state.touch(session_id, code) else {
            return session_not_found(request.id);
        };
        // The transport spec refuses only invalid or unsupported versions; a client that names another session-era
        // version it supports (conformance 0.1.16 does) is served under the negotiated one.
        if let Some(sent) = header_str(headers, HEADER_PROTOCOL_VERSION)
            && sent != session.version
            && !crate::protocol::is_session_version(sent)
        {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                request.id,
                RpcError::invalid_request(format!(
                    "MCP-Protocol-Version {sent} is not a version this server supports for sessions (negotiated: {}; \
                     supported: {})",
                    session.version,
                    crate::protocol::SUPPORTED_VERSIONS.join(", ")
                )),
            );
        }
        let mut ctx = RequestContext::new(session.version.clone())
            .with_client_capabilities(Arc::clone(&session.client_capabilities))
            .with_pending_requests(Arc::clone(&session.pending))
            .with_client_timeout(server.options().client_request_timeout);
        if session.tasks_offered {
            ctx = ctx.with_tasks(session_tasks(state, code, headers));
        }
        let outbox = Arc::clone(&ctx.outbox);
        let request_id = request.id.clone();
        if let Some(id) = &request_id {
            session.in_flight().insert(id.clone(), ctx.cancel.clone());
        }
        let handler = async move {
            // Dropping this future (the client went away) cancels the invocation through the token's guard.
            let _cancel_on_drop = ctx.cancel.clone().drop_guard();
            let response = server.handle(request, &ctx).await;
            if let Some(id) = &request_id {
                session.in_flight().remove(id);
            }
            response
        };
        return respond(Box::pin(handler), outbox, |_| StatusCode::OK).await;
    }

    stateless(state, server, code, headers, request).await
}

/// The client's answer to one of our requests: handed to the waiting handler.
fn client_response(state: &AppState, code: &str, headers: &HeaderMap, response: Response) -> HttpResponse {
    if let Some(session_id) = header_str(headers, HEADER_SESSION_ID) {
        let Some(session) = state.touch(session_id, code) else {
            return session_not_found(None);
        };
        if !session.pending.complete(response) {
            tracing::debug!("ignoring a client response that no request waits for (late, duplicate or unknown id)");
        }
    }
    StatusCode::ACCEPTED.into_response()
}

type Handler = Pin<Box<dyn Future<Output = Option<Response>> + Send>>;

fn sse_frame<T: serde::Serialize>(message: &T, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    if let Err(e) = serde_json::to_writer(&mut *out, message) {
        tracing::warn!(error = %e, "could not serialize an MCP message");
    }
    out.extend_from_slice(b"\n\n");
}

fn sse_response(status: StatusCode, body: Body) -> HttpResponse {
    (
        status,
        [
            (http::header::CONTENT_TYPE, "text/event-stream"),
            (http::header::CACHE_CONTROL, "no-cache"),
            (http::header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// Runs a request's handler and answers: plain JSON when it finished without sending anything else; otherwise an
/// SSE stream that carries the notifications and requests to the client live (a request to the client needs its
/// answer before the handler can go on), followed by the response.
async fn respond(mut handler: Handler, outbox: Arc<Outbox>, status: fn(&Response) -> StatusCode) -> HttpResponse {
    let first = tokio::select! {
        biased;
        response = &mut handler => {
            let mut body = Vec::new();
            for message in outbox.drain() {
                sse_frame(&message, &mut body);
            }
            return match response {
                None => StatusCode::ACCEPTED.into_response(),
                Some(response) if body.is_empty() => json_response(status(&response), &response),
                Some(response) => {
                    sse_frame(&response, &mut body);
                    sse_response(status(&response), Body::from(body))
                }
            };
        }
        message = outbox.next() => message,
    };
    let mut head = Vec::new();
    sse_frame(&first, &mut head);
    let rest = futures::stream::unfold(Some((handler, outbox)), |state| async move {
        let (mut handler, outbox) = state?;
        tokio::select! {
            biased;
            message = outbox.next() => {
                let mut frame = Vec::new();
                sse_frame(&message, &mut frame);
                Some((Bytes::from(frame), Some((handler, outbox))))
            }
            response = &mut handler => {
                let mut frames = Vec::new();
                for message in outbox.drain() {
                    sse_frame(&message, &mut frames);
                }
                if let Some(response) = response {
                    sse_frame(&response, &mut frames);
                }
                Some((Bytes::from(frames), None))
            }
        }
    });
    let body = futures::stream::once(async move { Bytes::from(head) })
        .chain(rest)
        .map(Ok::<_, Infallible>);
    sse_response(StatusCode::OK, Body::from_stream(body))
}

/// The experimental (2025-11-25) tasks a session request reaches: its owner's, as for stateless requests; listed
/// only for a caller with a credential.
fn session_tasks(state: &AppState, code: &str, headers: &HeaderMap) -> TaskScope {
    TaskScope::new(Arc::clone(&state.tasks), task_owner(code, headers)).with_listing(bearer(headers).is_some())
}

async fn initialize(
    state: &AppState,
    server: &McpServer,
    code: &str,
    headers: &HeaderMap,
    request: Request,
) -> HttpResponse {
    let client_capabilities = Arc::new(
        request
            .params
            .as_ref()
            .and_then(|p| p.get("capabilities"))
            .cloned()
            .unwrap_or_else(|| json!({})),
    );
    let ctx = RequestContext::new(super::LATEST_SESSION_VERSION).with_tasks(session_tasks(state, code, headers));
    let Some(response) = server.handle(request, &ctx).await else {
        return StatusCode::ACCEPTED.into_response();
    };
    let version = response
        .result
        .as_ref()
        .and_then(|r| r.get("protocolVersion"))
        .and_then(Value::as_str)
        .unwrap_or(super::LATEST_SESSION_VERSION)
        .to_owned();
    let tasks_offered = response
        .result
        .as_ref()
        .is_some_and(|r| r.pointer("/capabilities/tasks").is_some());
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    {
        let now = state.now_ms();
        let mut sessions = state.sessions_mut();
        if sessions.len() >= state.options.max_sessions {
            sessions.retain(|_, s| {
                let live = !state.expired(s, now);
                if !live {
                    s.close();
                }
                live
            });
            if sessions.len() >= state.options.max_sessions {
                return rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    response.id,
                    RpcError::internal("too many open MCP sessions; retry later"),
                );
            }
        }
        sessions.insert(
            session_id.clone(),
            Arc::new(Session {
                server_code: code.to_owned(),
                version,
                client_capabilities,
                tasks_offered,
                last_seen: AtomicU64::new(now),
                closed: CancellationToken::new(),
                in_flight: Mutex::new(HashMap::new()),
                pending: Arc::default(),
            }),
        );
    }
    let mut http = json_response(StatusCode::OK, &response);
    if let Ok(value) = HeaderValue::from_str(&session_id) {
        http.headers_mut().insert(HEADER_SESSION_ID, value);
    }
    http
}

/// A request without a session: `server/discover`, or a 2026-07-28 request carrying its version.
fn meta_version(request: &Request) -> Option<String> {
    request
        .params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// HTTP statuses of stateless errors: 404 for unknown methods, 400 for a missing client capability.
fn stateless_status(response: &Response) -> StatusCode {
    match &response.error {
        Some(e) if e.code == codes::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        Some(e) if e.code == codes::MISSING_CLIENT_CAPABILITY => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// Whom a stateless request's tasks belong to: the server, and the caller as its credential identifies it (a hash
/// of the bearer key; callers of an open server are told apart only by the unguessable task ids).
fn task_owner(code: &str, headers: &HeaderMap) -> Arc<str> {
    use base64::Engine as _;
    use sha2::Digest as _;
    match bearer(headers) {
        Some(token) => {
            let digest = sha2::Sha256::digest(token.as_bytes());
            format!(
                "{code}\n{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
            )
            .into()
        }
        None => format!("{code}\n").into(),
    }
}

async fn stateless(
    state: &AppState,
    server: Arc<McpServer>,
    code: &str,
    headers: &HeaderMap,
    request: Request,
) -> HttpResponse {
    let meta_version = meta_version(&request);
    let header_version = header_str(headers, HEADER_PROTOCOL_VERSION).map(str::to_owned);
    let version = meta_version.clone().or(header_version.clone());
    let id = request.id.clone();

    // A bare `server/discover` is the era probe of any client; everything else must be a full 2026-07-28 request.
    let probe = request.method == "server/discover" && meta_version.is_none() && header_version.is_none();
    if !probe {
        if let (Some(meta), Some(header)) = (&meta_version, &header_version)
            && meta != header
        {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                RpcError::new(
                    codes::HEADER_MISMATCH,
                    format!("MCP-Protocol-Version header {header} does not match _meta protocolVersion {meta}"),
                ),
            );
        }
        match version.as_deref() {
            Some(STATELESS_VERSION) => {}
            Some(v) if !is_supported_version(v) => {
                return rpc_error(StatusCode::BAD_REQUEST, id, RpcError::unsupported_version(v));
            }
            Some(v) if is_session_version(v) && meta_version.is_some() => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    id,
                    RpcError::unsupported_version(v)
                        .with_data(json!({"supported": [STATELESS_VERSION], "requested": v})),
                );
            }
            _ => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    id,
                    RpcError::invalid_request(
                        "missing Mcp-Session-Id header: send initialize first, or use protocol version 2026-07-28 \
                         with _meta.io.modelcontextprotocol/protocolVersion",
                    ),
                );
            }
        }
        let meta = request.params.as_ref().and_then(|p| p.get("_meta"));
        let missing = match meta {
            None => Some("_meta"),
            Some(m) if m.get(META_PROTOCOL_VERSION).is_none() => Some("_meta.io.modelcontextprotocol/protocolVersion"),
            Some(m) if m.get(META_CLIENT_CAPABILITIES).is_none() => {
                Some("_meta.io.modelcontextprotocol/clientCapabilities")
            }
            Some(_) => None,
        };
        if let Some(missing) = missing {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                RpcError::invalid_params(format!("a 2026-07-28 request must carry {missing}")),
            );
        }
        if let Some(meta) = &meta_version
            && header_version.as_deref() != Some(meta.as_str())
        {
            let header = header_version.as_deref().unwrap_or("(absent)");
            return rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                RpcError::new(
                    codes::HEADER_MISMATCH,
                    format!("MCP-Protocol-Version header {header} does not match _meta protocolVersion {meta}"),
                ),
            );
        }
        if let Err(error) = check_method_headers(headers, &request) {
            return rpc_error(StatusCode::BAD_REQUEST, id, error);
        }
        if request.method == "tools/call"
            && let Some(name) = request
                .params
                .as_ref()
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
        {
            let declared = server.header_parameters(name);
            if !declared.is_empty()
                && let Err(error) = check_param_headers(headers, &request, &declared)
            {
                return rpc_error(StatusCode::BAD_REQUEST, id, error);
            }
        }
        if request.method == "subscriptions/listen" {
            return listen(state, &server, request, task_owner(code, headers));
        }
    }

    // No way back to the client within a stateless request: questions become `input_required` results.
    let mut request = request;
    let mut ctx = RequestContext::new(STATELESS_VERSION)
        .with_tasks(TaskScope::new(Arc::clone(&state.tasks), task_owner(code, headers)));
    // The declared capabilities move out of `_meta` (validated above) instead of being copied by the handler.
    if let Some(Value::Object(params)) = &mut request.params
        && let Some(Value::Object(meta)) = params.get_mut("_meta")
        && let Some(capabilities) = meta.shift_remove(META_CLIENT_CAPABILITIES)
    {
        ctx = ctx.with_client_capabilities(Arc::new(capabilities));
    }
    let outbox = Arc::clone(&ctx.outbox);
    let handler = async move {
        let _cancel_on_drop = ctx.cancel.clone().drop_guard();
        server.handle(request, &ctx).await
    };
    respond(Box::pin(handler), outbox, stateless_status).await
}

/// `_meta` key tagging every notification of a `subscriptions/listen` stream with the listen request's id.
const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

fn sse_event<T: serde::Serialize>(message: &T) -> Event {
    Event::default().data(serde_json::to_string(message).unwrap_or_default())
}

/// `subscriptions/listen` (2026-07-28): an SSE stream that opens with `notifications/subscriptions/acknowledged`
/// (the filter the server agreed to) and then carries the changes that pass the filter, each tagged with the
/// listen request's id, until the client closes it. With the tasks extension, `taskIds` subscribes to
/// `notifications/tasks` for those of the caller's tasks that exist: each carries the task as `tasks/get` would
/// show it, first its state at subscription, then at every change.
fn listen(state: &AppState, server: &McpServer, request: Request, owner: Arc<str>) -> HttpResponse {
    let Some(id) = request.id.clone() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let requested = request.params.as_ref().and_then(|p| p.get("notifications"));
    let filter = server.subscription_filter(requested);
    let task_ids: Option<Vec<String>> = requested
        .and_then(|r| r.get("taskIds"))
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_owned).collect());
    if task_ids.is_some() {
        let declared = request
            .params
            .as_ref()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
            .and_then(|c| c.get("extensions"))
            .and_then(|e| e.get(TASKS_EXTENSION))
            .is_some_and(Value::is_object);
        if !declared {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Some(id),
                super::tasks::missing_extension(format!(
                    "task status notifications need the {TASKS_EXTENSION} extension: declare it in \
                     _meta.io.modelcontextprotocol/clientCapabilities.extensions"
                )),
            );
        }
    }
    // Subscribe before acknowledging, so no change announced after the acknowledgement is missed.
    let changes = server.subscribe_changes();
    let task_events = state.tasks.subscribe();
    // Only the caller's own tasks are agreed to; others are left out as if they did not exist.
    let tasks: Vec<_> = task_ids
        .iter()
        .flatten()
        .filter_map(|task_id| state.tasks.get(&owner, TaskEra::Extension, task_id))
        .collect();
    let tag = json!({ META_SUBSCRIPTION_ID: id });
    let mut agreed = filter.to_value();
    if task_ids.is_some() {
        agreed["taskIds"] = json!(tasks.iter().map(|t| t.id()).collect::<Vec<_>>());
    }
    let ack = Request::notification(
        "notifications/subscriptions/acknowledged",
        Some(json!({"notifications": agreed, "_meta": tag})),
    );
    let current: Vec<Request> = tasks
        .iter()
        .map(|task| task_notification(task.notification(), &tag))
        .collect();
    let wanted: Vec<Arc<str>> = tasks.iter().map(|t| Arc::from(t.id())).collect();
    let head = futures::stream::iter(std::iter::once(ack).chain(current));
    let lists = change_stream(changes, filter, Some(tag.clone()));
    let updates = task_stream(task_events, owner, wanted, tag);
    let rest = futures::stream::select(lists, updates);
    let events = head.chain(rest).map(|n| Ok::<_, Infallible>(sse_event(&n)));
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.options.keep_alive))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn task_notification(mut task: Value, tag: &Value) -> Request {
    task["_meta"] = tag.clone();
    Request::notification("notifications/tasks", Some(task))
}

/// `notifications/tasks` for the changes of the `wanted` tasks of `owner`; ends when none is wanted (nothing
/// was agreed to), leaving the stream to the list changes.
fn task_stream(
    events: broadcast::Receiver<TaskEvent>,
    owner: Arc<str>,
    wanted: Vec<Arc<str>>,
    tag: Value,
) -> impl futures::Stream<Item = Request> + Send + 'static {
    futures::stream::unfold(
        (events, owner, wanted, tag),
        |(mut events, owner, wanted, tag)| async move {
            if wanted.is_empty() {
                return None;
            }
            loop {
                match events.recv().await {
                    Ok(event)
                        if event.era == TaskEra::Extension
                            && event.owner == owner
                            && wanted.contains(&event.task_id) =>
                    {
                        let notification = task_notification(event.task, &tag);
                        return Some((notification, (events, owner, wanted, tag)));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    )
}

/// 2025-11-25: `notifications/tasks/status` for every status change of the experimental tasks of `owner`.
fn experimental_task_stream(
    events: broadcast::Receiver<TaskEvent>,
    owner: Arc<str>,
) -> impl futures::Stream<Item = Request> + Send + 'static {
    futures::stream::unfold((events, owner), |(mut events, owner)| async move {
        loop {
            match events.recv().await {
                Ok(event) if event.era == TaskEra::Experimental && event.owner == owner => {
                    let notification = Request::notification("notifications/tasks/status", Some(event.task));
                    return Some((notification, (events, owner)));
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// The notifications for the changes that pass `filter`, with `_meta` set to `tag` when given.
fn change_stream(
    changes: broadcast::Receiver<ListChange>,
    filter: SubscriptionFilter,
    tag: Option<Value>,
) -> impl futures::Stream<Item = Request> + Send + 'static {
    futures::stream::unfold((changes, filter, tag), |(mut changes, filter, tag)| async move {
        loop {
            match changes.recv().await {
                Ok(change) if filter.wants(&change) => {
                    let mut params = change.params();
                    if let Some(tag) = &tag {
                        params.insert("_meta".into(), tag.clone());
                    }
                    let notification = Request::notification(change.method(), Some(Value::Object(params)));
                    return Some((notification, (changes, filter, tag)));
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// 2026-07-28: `Mcp-Method` must name the body's method, and `Mcp-Name` the tool of a `tools/call` or the task of
/// `tasks/get`, `tasks/update` and `tasks/cancel`.
fn check_method_headers(headers: &HeaderMap, request: &Request) -> Result<(), RpcError> {
    match header_str(headers, HEADER_METHOD) {
        Some(method) if method == request.method => {}
        Some(method) => {
            return Err(RpcError::new(
                codes::HEADER_MISMATCH,
                format!(
                    "Mcp-Method header {method:?} does not match the body's method {:?}",
                    request.method
                ),
            ));
        }
        None => {
            return Err(RpcError::new(
                codes::HEADER_MISMATCH,
                format!("missing required Mcp-Method header for `{}`", request.method),
            ));
        }
    }
    // `Mcp-Name` carries the body's tool name, or the task id of a tasks method (SEP-2663, for routing).
    let named = match request.method.as_str() {
        "tools/call" => Some(("name", "the tool name")),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some(("taskId", "the taskId")),
        _ => None,
    };
    if let Some((field, what)) = named {
        let name = request
            .params
            .as_ref()
            .and_then(|p| p.get(field))
            .and_then(Value::as_str);
        match (header_str(headers, HEADER_NAME), name) {
            (Some(h), Some(n)) if h == n => {}
            (None, _) => {
                return Err(RpcError::new(
                    codes::HEADER_MISMATCH,
                    format!("missing required Mcp-Name header for `{}`", request.method),
                ));
            }
            (Some(h), n) => {
                return Err(RpcError::new(
                    codes::HEADER_MISMATCH,
                    format!("Mcp-Name header {h:?} does not match {what} {n:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// 2026-07-28 (SEP-2243): each argument a tool marks with `x-mcp-header` is mirrored in an `Mcp-Param-<name>`
/// header, literally or as `=?base64?<standard Base64>?=`; the header must be present when the argument is, and
/// equal to it.
fn check_param_headers(headers: &HeaderMap, request: &Request, declared: &[(String, String)]) -> Result<(), RpcError> {
    let arguments = request.params.as_ref().and_then(|p| p.get("arguments"));
    for (property, suffix) in declared {
        let header_name = format!("mcp-param-{}", suffix.to_ascii_lowercase());
        let body = match arguments.and_then(|a| a.get(property)) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let raw = match headers.get(&header_name) {
            None => None,
            Some(value) => Some(value.to_str().map(str::trim).map_err(|_| {
                RpcError::new(
                    codes::HEADER_MISMATCH,
                    format!("Mcp-Param-{suffix} is not visible ASCII; send non-ASCII values as =?base64?…?="),
                )
            })?),
        };
        let header = match raw {
            None => None,
            Some(raw) => Some(decode_param_header(raw).ok_or_else(|| {
                RpcError::new(
                    codes::HEADER_MISMATCH,
                    format!(
                        "Mcp-Param-{suffix} {raw:?} is not valid =?base64?…?= (standard alphabet, canonical padding, \
                         UTF-8 content)"
                    ),
                )
            })?),
        };
        match (header, body) {
            (None, None) => {}
            (Some(h), Some(b)) if h == b => {}
            (None, Some(_)) => {
                return Err(RpcError::new(
                    codes::HEADER_MISMATCH,
                    format!("missing required Mcp-Param-{suffix} header: argument {property:?} is in the body"),
                ));
            }
            (Some(_), None) => {
                return Err(RpcError::new(
                    codes::HEADER_MISMATCH,
                    format!("Mcp-Param-{suffix} is set but the body has no argument {property:?}"),
                ));
            }
            (Some(h), Some(b)) => {
                return Err(RpcError::new(
                    codes::HEADER_MISMATCH,
                    format!("Mcp-Param-{suffix} header {h:?} does not match argument {property:?} = {b:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// The value of an `Mcp-Param-*` header: the decoded text of `=?base64?…?=`, or the value itself when it lacks
/// either end of that wrapper; `None` when the Base64 or its UTF-8 is invalid.
fn decode_param_header(raw: &str) -> Option<String> {
    use base64::Engine as _;
    match raw.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_owned()),
    }
}

/// A JSON-RPC batch (2025-03-26): only within a session, no `initialize`.
async fn post_batch(
    state: &AppState,
    server: &McpServer,
    code: &str,
    headers: &HeaderMap,
    items: Vec<Value>,
) -> HttpResponse {
    if items.is_empty() {
        return rpc_error(StatusCode::BAD_REQUEST, None, RpcError::invalid_request("empty batch"));
    }
    let Some(session_id) = header_str(headers, HEADER_SESSION_ID) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            RpcError::invalid_request("JSON-RPC batches need a session (Mcp-Session-Id)"),
        );
    };
    let Some(session) = state.touch(session_id, code) else {
        return session_not_found(None);
    };
    let mut responses = Vec::new();
    for item in items {
        let id = request_id(&item);
        match Message::from_value(item) {
            Ok(Message::Request(request)) if request.method == "initialize" => responses.push(Response::err(
                id,
                RpcError::invalid_request("initialize must not be part of a batch"),
            )),
            Ok(Message::Request(request)) => {
                if request.id.is_none() && request.method == "notifications/cancelled" {
                    cancel_in_flight(&session, &request);
                }
                // A batch's answer is one JSON array, so nothing can be asked of the client meanwhile.
                let ctx = RequestContext::new(session.version.clone())
                    .with_client_capabilities(Arc::clone(&session.client_capabilities));
                if let Some(response) = server.handle(request, &ctx).await {
                    responses.push(response);
                }
            }
            Ok(Message::Response(response)) => {
                session.pending.complete(response);
            }
            Err(error) => responses.push(Response::err(id, error)),
        }
    }
    if responses.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    (StatusCode::OK, axum::Json(responses)).into_response()
}

fn session_not_found(id: Option<RequestId>) -> HttpResponse {
    rpc_error(
        StatusCode::NOT_FOUND,
        id,
        RpcError::invalid_request("session not found or expired; send initialize to start a new session"),
    )
}

fn cancel_in_flight(session: &Session, note: &Request) {
    let Some(id) = note
        .params
        .as_ref()
        .and_then(|p| p.get("requestId"))
        .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok())
    else {
        return;
    };
    if let Some(token) = session.in_flight().remove(&id) {
        token.cancel();
    }
}

/// The session's server-to-client stream: the list changes the server announces (when it offers `listChanged`),
/// and keep-alive comments, until the session ends.
async fn get_stream(State(state): State<Arc<AppState>>, Path(code): Path<String>, headers: HeaderMap) -> HttpResponse {
    let server = match authorize(&state, &headers, &code).await {
        Ok(server) => server,
        Err(response) => return response,
    };
    let Some(session_id) = header_str(&headers, HEADER_SESSION_ID) else {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response();
    };
    let Some(session) = state.touch(session_id, &code) else {
        return session_not_found(None);
    };
    let all_lists = SubscriptionFilter {
        tools: true,
        prompts: true,
        resources: true,
        resource_uris: Vec::new(),
    };
    let changes = change_stream(server.subscribe_changes(), all_lists, None);
    let task_updates = session
        .tasks_offered
        .then(|| experimental_task_stream(state.tasks.subscribe(), task_owner(&code, &headers)));
    let stream = futures::stream::select(changes, futures::stream::iter(task_updates).flatten())
        .map(|n| Ok::<_, Infallible>(sse_event(&n)))
        .take_until(session.closed.clone().cancelled_owned());
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(state.options.keep_alive))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

async fn delete_session(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> HttpResponse {
    if let Err(response) = authorize(&state, &headers, &code).await {
        return response;
    }
    let Some(session_id) = header_str(&headers, HEADER_SESSION_ID) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            RpcError::invalid_request("DELETE needs the Mcp-Session-Id header"),
        );
    };
    if state.touch(session_id, &code).is_none() {
        return session_not_found(None);
    }
    if let Some(session) = state.sessions_mut().remove(session_id) {
        session.close();
    }
    StatusCode::OK.into_response()
}

/// Protected resource metadata (RFC 9728) for servers that require a key; 404 for open servers.
async fn resource_metadata(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> HttpResponse {
    match state.resolver.resolve(&code, None).await {
        Err(ResolveError::Unauthorized) => {
            let base = base_url(&state, &headers);
            let metadata = json!({
                "resource": format!("{base}/mcp/server/{code}/mcp"),
                "authorization_servers": state.options.authorization_servers,
                "bearer_methods_supported": ["header"],
                "resource_name": "toolplane MCP server",
            });
            axum::Json(metadata).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
