//! Streamable HTTP (2025-03-26 and later): one endpoint, POST per message, responses as JSON or SSE; sessions via
//! `Mcp-Session-Id` in the session era, per-request headers in the stateless era.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};
use toolplane_net::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE,
};
use toolplane_net::{NetError, Response as HttpResponse, SafeClient, StatusCode};
use url::Url;

use super::dispatch::{Routed, parse, route};
use super::{ClientOptions, Handler, McpError, RequestContext, ServerDetails, Transport, TransportKind, snippet};
use crate::oauth::dpop::{DPOP_HEADER, DPOP_NONCE_HEADER, USE_DPOP_NONCE};
use crate::oauth::{BearerChallenge, Dpop};
use crate::protocol::{
    HEADER_METHOD, HEADER_NAME, HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID, META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION, Message, Request, RequestId, Response, STATELESS_VERSION,
};
use crate::sse::SseParser;

const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// How often one response stream may be resumed.
const MAX_RESUMPTIONS: usize = 5;
/// The reconnection delay when the server announced none.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// The parts of the transport a background stream task needs as well.
struct Conn {
    http: SafeClient,
    url: Url,
    headers: HeaderMap,
    sse_read_timeout: Duration,
    max_message_bytes: usize,
    session: RwLock<Option<String>>,
    protocol_version: RwLock<Option<String>>,
    /// Set after an OAuth flow; overrides a configured `Authorization` header.
    authorization: RwLock<Option<String>>,
    notifications: broadcast::Sender<Request>,
    handler: Option<Handler>,
    /// Signs a proof for every request while the token is DPoP-bound.
    dpop: Option<Dpop>,
}

pub(crate) struct HttpTransport {
    conn: Arc<Conn>,
    /// Stops the server-stream task when the transport goes away.
    stream_stop: std::sync::Mutex<Option<(CancellationToken, DropGuard)>>,
}

impl HttpTransport {
    pub(crate) fn new(
        http: SafeClient,
        url: Url,
        options: &ClientOptions,
        notifications: broadcast::Sender<Request>,
    ) -> Result<Self, McpError> {
        Ok(Self {
            conn: Arc::new(Conn {
                http,
                url,
                headers: header_map(&options.headers)?,
                sse_read_timeout: options.sse_read_timeout,
                max_message_bytes: options.max_message_bytes,
                session: RwLock::new(None),
                protocol_version: RwLock::new(None),
                authorization: RwLock::new(None),
                notifications,
                handler: options.handler.clone(),
                dpop: options.dpop.clone(),
            }),
            stream_stop: std::sync::Mutex::new(None),
        })
    }
}

/// Builds a header map from configured headers; names and values must be valid HTTP.
pub(crate) fn header_map(headers: &std::collections::BTreeMap<String, String>) -> Result<HeaderMap, McpError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| McpError::Config(format!("header name {name:?} is not a valid HTTP header name")))?;
        let mut value = HeaderValue::try_from(value.as_str())
            .map_err(|_| McpError::Config(format!("the value of header {name} is not a valid HTTP header value")))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// The `Mcp-Name` of a request: the tool, prompt or resource it is about, or the task (SEP-2663).
fn mcp_name(request: &Request) -> Option<String> {
    let params = request.params.as_ref()?;
    let key = match request.method.as_str() {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    params.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl Conn {
    fn read<T: Clone>(lock: &RwLock<T>) -> T {
        match lock.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn write<T>(lock: &RwLock<T>, value: T) {
        match lock.write() {
            Ok(mut guard) => *guard = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }

    /// The configured headers with the current `Authorization`.
    fn headers(&self) -> HeaderMap {
        let mut headers = self.headers.clone();
        if let Some(value) = Self::read(&self.authorization)
            && let Ok(mut value) = HeaderValue::try_from(value)
        {
            value.set_sensitive(true);
            headers.insert(toolplane_net::header::AUTHORIZATION, value);
        }
        headers
    }

    /// [`Conn::headers`] for one `method` request to the endpoint: with a DPoP-bound token (`Authorization: DPoP
    /// …`) and a key, plus a fresh `DPoP` proof for it (RFC 9449 §7.1). Proofs are single-use: call this once per
    /// request sent.
    fn headers_for(&self, method: &str) -> HeaderMap {
        let mut headers = self.headers();
        let Some(dpop) = &self.dpop else {
            return headers;
        };
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("dpop"))
            .map(|(_, token)| token.trim().to_owned());
        if let Some(token) = token {
            match dpop
                .proof(method, self.url.as_str(), Some(&token))
                .map(HeaderValue::try_from)
            {
                Ok(Ok(proof)) => {
                    headers.insert(HeaderName::from_static(DPOP_HEADER), proof);
                }
                // Only a broken key gets here; the server's 401 then says what is missing.
                Ok(Err(_)) | Err(_) => tracing::warn!("could not make a DPoP proof for the MCP server"),
            }
        }
        headers
    }

    /// Keeps the `DPoP-Nonce` a response carries; whether the response is a `use_dpop_nonce` refusal that a retry
    /// with that (new) nonce can fix (RFC 9449 §9).
    fn take_dpop_nonce(&self, response: &HttpResponse) -> bool {
        let Some(dpop) = &self.dpop else {
            return false;
        };
        let Some(nonce) = response.headers().get(DPOP_NONCE_HEADER).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let fresh = dpop.remember_nonce(self.url.as_str(), nonce);
        fresh
            && response.status() == StatusCode::UNAUTHORIZED
            && response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| BearerChallenge::parse_scheme(v, "dpop"))
                .any(|c| c.error.as_deref() == Some(USE_DPOP_NONCE))
    }

    async fn post(&self, message: &Request, ctx: &RequestContext, timeout: Duration) -> Result<HttpResponse, McpError> {
        let body = serde_json::to_vec(message).map_err(|e| McpError::Protocol(e.to_string()))?;
        let mut retried = false;
        loop {
            let mut builder = self
                .http
                .post(self.url.clone())
                .headers(self.headers_for("POST"))
                .header(ACCEPT, ACCEPT_BOTH)
                .header(CONTENT_TYPE, "application/json")
                .timeout(timeout)
                .body(body.clone());
            if let Some(session) = Self::read(&self.session) {
                builder = builder.header(HEADER_SESSION_ID, session);
            }
            if let Some(version) = &ctx.protocol_version {
                builder = builder.header(HEADER_PROTOCOL_VERSION, version.as_str());
            }
            if ctx.stateless {
                builder = builder.header(HEADER_METHOD, message.method.as_str());
                if let Some(name) = mcp_name(message) {
                    builder = builder.header(HEADER_NAME, name);
                }
                for (name, value) in &ctx.extra_headers {
                    builder = builder.header(name.as_str(), value.as_str());
                }
            }
            let response = builder.send().await?;
            if self.take_dpop_nonce(&response) && !retried {
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }

    /// Maps auth failures and HTTP errors; returns the response when it is a success.
    async fn check_status(&self, response: HttpResponse, had_session: bool) -> Result<HttpResponse, McpError> {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(BearerChallenge::parse);
            if status == StatusCode::UNAUTHORIZED || challenge.is_some() {
                return Err(McpError::Unauthorized {
                    status: status.as_u16(),
                    challenge,
                });
            }
        }
        if status == StatusCode::NOT_FOUND && had_session {
            return Err(McpError::SessionExpired);
        }
        Ok(response)
    }

    /// Reads an error body: a JSON-RPC error response becomes `Ok(response)`, anything else an HTTP error.
    async fn error_body(&self, response: HttpResponse, id: &RequestId) -> Result<Response, McpError> {
        let status = response.status().as_u16();
        let body = self.http.read_body(response).await.unwrap_or_else(|_| Bytes::new());
        if let Ok(text) = std::str::from_utf8(&body)
            && let Ok(messages) = parse(text)
        {
            for message in messages {
                if let Message::Response(r) = message
                    && r.error.is_some()
                    && (r.id.is_none() || r.id.as_ref() == Some(id))
                {
                    return Ok(Response {
                        id: Some(id.clone()),
                        ..r
                    });
                }
            }
        }
        Err(McpError::Http {
            status,
            body: snippet(&body),
        })
    }

    /// Reads the response to `request` from a JSON body or an SSE stream.
    async fn read_response(
        &self,
        response: HttpResponse,
        request: &Request,
        ctx: &RequestContext,
    ) -> Result<Response, McpError> {
        let Some(id) = request.id.clone() else {
            return Err(McpError::Protocol("a request needs an id".into()));
        };
        if !response.status().is_success() {
            return self.error_body(response, &id).await;
        }
        if matches!(response.status(), StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Err(McpError::Protocol(format!(
                "the server accepted {} without answering it (HTTP {})",
                request.method,
                response.status().as_u16()
            )));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            return self.read_sse_response(response, &id, ctx).await;
        }
        let body = self.http.read_body(response).await?;
        let text =
            std::str::from_utf8(&body).map_err(|_| McpError::Protocol("the server's response is not UTF-8".into()))?;
        let mut found = None;
        for message in parse(text).map_err(McpError::Protocol)? {
            match message {
                Message::Response(r) if r.id.as_ref() == Some(&id) => found = Some(r),
                other => self.route_side_message(other, ctx),
            }
        }
        found.ok_or_else(|| McpError::Protocol(format!("the server's reply holds no response to request {id}")))
    }

    /// Reads the response to `id` from an SSE stream. Session era (SEP-1699): when the server closes the stream
    /// before answering but had given it an event id, the client waits the stream's `retry` delay and resumes with
    /// a GET carrying `Last-Event-ID`, a few times at most.
    async fn read_sse_response(
        &self,
        response: HttpResponse,
        id: &RequestId,
        ctx: &RequestContext,
    ) -> Result<Response, McpError> {
        let mut response = response;
        let mut resumptions = 0;
        loop {
            let (outcome, last_event_id, retry) = self.read_sse_once(response, id, ctx).await;
            let closed = match outcome {
                Err(e @ McpError::Closed(_)) => e,
                other => return other,
            };
            let Some(last_event_id) = last_event_id.filter(|_| !ctx.stateless && resumptions < MAX_RESUMPTIONS) else {
                return Err(closed);
            };
            resumptions += 1;
            tokio::time::sleep(retry.unwrap_or(DEFAULT_RETRY)).await;
            let mut builder = self
                .http
                .get(self.url.clone())
                .headers(self.headers_for("GET"))
                .header(ACCEPT, "text/event-stream")
                .header("last-event-id", last_event_id.as_str())
                .timeout(ctx.timeout + Duration::from_secs(1));
            if let Some(session) = Self::read(&self.session) {
                builder = builder.header(HEADER_SESSION_ID, session);
            }
            if let Some(version) = &ctx.protocol_version {
                builder = builder.header(HEADER_PROTOCOL_VERSION, version.as_str());
            }
            let resumed = builder.send().await?;
            if !resumed.status().is_success() {
                tracing::debug!(
                    status = resumed.status().as_u16(),
                    "the MCP server refused to resume the stream"
                );
                return Err(closed);
            }
            response = resumed;
        }
    }

    /// One SSE stream: the outcome, the last event id seen and the last `retry` delay announced.
    async fn read_sse_once(
        &self,
        mut response: HttpResponse,
        id: &RequestId,
        ctx: &RequestContext,
    ) -> (Result<Response, McpError>, Option<String>, Option<Duration>) {
        let mut last_event_id = None;
        let mut retry = None;
        let outcome = self
            .read_sse_events(&mut response, id, ctx, &mut last_event_id, &mut retry)
            .await;
        (outcome, last_event_id, retry)
    }

    async fn read_sse_events(
        &self,
        response: &mut HttpResponse,
        id: &RequestId,
        ctx: &RequestContext,
        last_event_id: &mut Option<String>,
        retry: &mut Option<Duration>,
    ) -> Result<Response, McpError> {
        let mut parser = SseParser::new(self.max_message_bytes);
        loop {
            let chunk = tokio::time::timeout(self.sse_read_timeout, response.chunk())
                .await
                .map_err(|_| {
                    McpError::Closed(format!(
                        "no data on the response stream for {} s (sse_read_timeout)",
                        self.sse_read_timeout.as_secs()
                    ))
                })?
                .map_err(NetError::from_reqwest)?;
            let Some(chunk) = chunk else {
                return Err(McpError::Closed(format!(
                    "the response stream ended before the response to request {id}"
                )));
            };
            let events = parser.feed(&chunk).map_err(|e| McpError::Protocol(e.to_string()))?;
            for event in events {
                if let Some(event_id) = event.id.clone().filter(|i| !i.is_empty()) {
                    *last_event_id = Some(event_id);
                }
                if let Some(ms) = event.retry {
                    *retry = Some(Duration::from_millis(ms));
                }
                if event.data.trim().is_empty() || event.event != "message" {
                    continue;
                }
                for message in parse(&event.data).map_err(McpError::Protocol)? {
                    match message {
                        Message::Response(r) if r.id.as_ref() == Some(id) => return Ok(r),
                        other => self.route_side_message(other, ctx),
                    }
                }
            }
        }
    }

    /// Notifications go to subscribers; server requests are answered in the background.
    fn route_side_message(&self, message: Message, ctx: &RequestContext) {
        if let Routed::Reply(reply) = route(message, None, &self.notifications, self.handler.as_ref()) {
            // A detached task: the reply must not hold up reading the stream.
            let conn_reply = (self.http.clone(), ctx.clone());
            let this = ConnRef {
                url: self.url.clone(),
                headers: self.headers_for("POST"),
                session: Self::read(&self.session),
            };
            tokio::spawn(async move {
                let (http, ctx) = conn_reply;
                let reply = reply.await;
                this.answer(&http, &reply, &ctx).await;
            });
        }
    }
}

/// Enough of a connection to answer a server request from a detached task.
struct ConnRef {
    url: Url,
    headers: HeaderMap,
    session: Option<String>,
}

impl ConnRef {
    async fn answer(&self, http: &SafeClient, reply: &Response, ctx: &RequestContext) {
        let Ok(body) = serde_json::to_vec(reply) else { return };
        let mut builder = http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(ACCEPT, ACCEPT_BOTH)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(session) = &self.session {
            builder = builder.header(HEADER_SESSION_ID, session.as_str());
        }
        if let Some(version) = &ctx.protocol_version {
            builder = builder.header(HEADER_PROTOCOL_VERSION, version.as_str());
        }
        if let Err(e) = builder.send().await {
            tracing::debug!(error = %e, "could not answer the MCP server's request");
        }
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn request(&self, request: &Request, ctx: &RequestContext) -> Result<Response, McpError> {
        let conn = &self.conn;
        let had_session = Conn::read(&conn.session).is_some();
        // The outer select enforces the call's timeout; give the HTTP layer a little slack so it never wins.
        let response = conn.post(request, ctx, ctx.timeout + Duration::from_secs(1)).await?;
        let response = conn
            .check_status(response, had_session && request.method != "initialize")
            .await?;
        if request.method == "initialize" && response.status().is_success() {
            let session = response
                .headers()
                .get(HEADER_SESSION_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Conn::write(&conn.session, session);
        }
        conn.read_response(response, request, ctx).await
    }

    async fn notify(&self, notification: &Request, ctx: &RequestContext) -> Result<(), McpError> {
        let conn = &self.conn;
        let had_session = Conn::read(&conn.session).is_some();
        let response = conn.post(notification, ctx, ctx.timeout).await?;
        let response = conn.check_status(response, had_session).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = conn.http.read_body(response).await.unwrap_or_default();
        Err(McpError::Http {
            status: status.as_u16(),
            body: snippet(&body),
        })
    }

    fn kind(&self) -> TransportKind {
        TransportKind::StreamableHttp
    }

    async fn after_initialize(&self, details: &ServerDetails) {
        Conn::write(&self.conn.protocol_version, Some(details.protocol_version.clone()));
        // Session era: the GET stream carries the server's own requests (elicitation, sampling) and its list
        // changes — some servers send `list_changed` without announcing `tools.listChanged` in `initialize` — so
        // the client listens whenever the server has tools or it can answer requests (a server without a stream
        // answers 405 and that is the end of it). Stateless: `subscriptions/listen` only for announced changes.
        let wanted = if details.is_stateless() {
            details.tools_list_changed()
        } else {
            self.conn.handler.is_some() || details.capabilities.get("tools").is_some()
        };
        if !wanted {
            return;
        }
        let token = CancellationToken::new();
        let guard = token.clone().drop_guard();
        if let Ok(mut slot) = self.stream_stop.lock() {
            *slot = Some((token.clone(), guard));
        }
        let conn = Arc::clone(&self.conn);
        let stateless = details.is_stateless();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move { server_stream(conn, stateless, token, Some(ready_tx)).await });
        if !stateless {
            // Servers send their own requests on the GET stream as soon as a call needs them; make sure it is
            // open (or refused) before the first call goes out. Bounded: a slow server must not stall the client.
            let _ = tokio::time::timeout(Duration::from_secs(2), ready_rx).await;
        }
    }

    async fn reset_session(&self) {
        Conn::write(&self.conn.session, None);
    }

    fn set_authorization(&self, value: Option<String>) {
        Conn::write(&self.conn.authorization, value);
    }

    async fn close(&self) {
        if let Ok(mut slot) = self.stream_stop.lock()
            && let Some((token, _guard)) = slot.take()
        {
            token.cancel();
        }
        let Some(session) = Conn::read(&self.conn.session) else {
            return;
        };
        let mut builder = self
            .conn
            .http
            .delete(self.conn.url.clone())
            .headers(self.conn.headers_for("DELETE"))
            .header(HEADER_SESSION_ID, session)
            .timeout(Duration::from_secs(5));
        if let Some(version) = Conn::read(&self.conn.protocol_version) {
            builder = builder.header(HEADER_PROTOCOL_VERSION, version);
        }
        // 405 means the server does not let clients end sessions; either way we are done.
        let _ = builder.send().await;
        Conn::write(&self.conn.session, None);
    }
}

/// Keeps a server-to-client stream open: the GET stream in the session era, `subscriptions/listen` in the
/// stateless era. Reconnects with backoff until stopped; gives up when the server says it has no such stream.
async fn server_stream(
    conn: Arc<Conn>,
    stateless: bool,
    stop: CancellationToken,
    mut ready: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut backoff = Duration::from_millis(500);
    let mut listen_id = 0u64;
    loop {
        let ctx = RequestContext {
            protocol_version: Conn::read(&conn.protocol_version),
            stateless,
            timeout: conn.sse_read_timeout,
            extra_headers: Vec::new(),
        };
        let request = if stateless {
            listen_id += 1;
            let params = json!({
                "_meta": {META_PROTOCOL_VERSION: STATELESS_VERSION, META_CLIENT_CAPABILITIES: {}},
                "notifications": {"toolsListChanged": true},
            });
            let req = Request::new(
                RequestId::String(format!("listen-{listen_id}")),
                "subscriptions/listen",
                Some(params),
            );
            // A long-lived POST: its total timeout is a day, silence is bounded by sse_read_timeout below.
            conn.post(&req, &ctx, Duration::from_secs(86_400)).await
        } else {
            let mut builder = conn
                .http
                .get(conn.url.clone())
                .headers(conn.headers_for("GET"))
                .header(ACCEPT, "text/event-stream")
                .timeout(Duration::from_secs(86_400));
            if let Some(session) = Conn::read(&conn.session) {
                builder = builder.header(HEADER_SESSION_ID, session);
            }
            if let Some(version) = &ctx.protocol_version {
                builder = builder.header(HEADER_PROTOCOL_VERSION, version.as_str());
            }
            let response = builder.send().await.map_err(McpError::from);
            if let Ok(response) = &response {
                // A refusal for want of a nonce: the reconnection below carries it.
                conn.take_dpop_nonce(response);
            }
            response
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            outcome = read_stream(&conn, request, &ctx) => outcome,
        };
        match outcome {
            StreamEnd::Unsupported => {
                tracing::debug!("the MCP server offers no server-to-client stream");
                return;
            }
            StreamEnd::Ended => backoff = Duration::from_millis(500),
            StreamEnd::Failed(e) => {
                tracing::debug!(error = %e, "MCP server stream failed; reconnecting");
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

enum StreamEnd {
    Unsupported,
    Ended,
    Failed(McpError),
}

async fn read_stream(conn: &Conn, response: Result<HttpResponse, McpError>, ctx: &RequestContext) -> StreamEnd {
    let mut response = match response {
        Ok(r) => r,
        Err(e) => return StreamEnd::Failed(e),
    };
    let status = response.status();
    if matches!(status, StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED) {
        return StreamEnd::Unsupported;
    }
    if !status.is_success() {
        return StreamEnd::Failed(McpError::Http {
            status: status.as_u16(),
            body: String::new(),
        });
    }
    let mut parser = SseParser::new(conn.max_message_bytes);
    loop {
        let chunk = match tokio::time::timeout(conn.sse_read_timeout, response.chunk()).await {
            Err(_) => return StreamEnd::Failed(McpError::Closed("the server stream went silent".into())),
            Ok(Err(e)) => return StreamEnd::Failed(NetError::from_reqwest(e).into()),
            Ok(Ok(None)) => return StreamEnd::Ended,
            Ok(Ok(Some(chunk))) => chunk,
        };
        let events = match parser.feed(&chunk) {
            Ok(events) => events,
            Err(e) => return StreamEnd::Failed(McpError::Protocol(e.to_string())),
        };
        for event in events {
            if event.data.trim().is_empty() || event.event != "message" {
                continue;
            }
            match parse(&event.data) {
                Ok(messages) => {
                    for message in messages {
                        conn.route_side_message(message, ctx);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "skipping a bad message on the server stream"),
            }
        }
    }
}
