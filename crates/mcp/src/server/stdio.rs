//! The stdio transport for [`McpServer`]: newline-delimited JSON-RPC on stdin/stdout (for `toolplane mcp stdio`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{McpServer, PendingRequests, RequestContext, TaskScope, TaskStore};
use crate::client::stdio::read_line_capped;
use crate::protocol::{
    LATEST_SESSION_VERSION, META_PROTOCOL_VERSION, Message, RequestId, Response, RpcError, STATELESS_VERSION,
    is_supported_version,
};

/// Largest accepted line.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// At most this many tasks (2026-07-28 tasks extension) are kept at once for the one client of a stdio loop.
const MAX_TASKS: usize = 1_000;

/// Serves `server` until `input` ends: requests run concurrently, `notifications/cancelled` cancels a running
/// request, responses are written one per line. Requests carrying a 2026-07-28 `_meta` version are served
/// statelessly (with the tasks extension; the tasks belong to this loop's one client and end with it); others use
/// the version negotiated by `initialize`. Returns after in-flight requests finished.
pub async fn serve_stdio<R, W>(server: Arc<McpServer>, input: R, output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<String>(64);
    let writer = tokio::spawn(async move {
        let mut output = output;
        while let Some(line) = rx.recv().await {
            output.write_all(line.as_bytes()).await?;
            output.write_all(b"\n").await?;
            output.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    });

    let in_flight: Arc<Mutex<HashMap<RequestId, CancellationToken>>> = Arc::default();
    // Our requests to the client (sampling, elicitation) wait here for the responses it writes to stdin.
    let pending: Arc<PendingRequests> = Arc::default();
    let tasks = Arc::new(TaskStore::new(MAX_TASKS));
    let mut client_capabilities = Arc::new(Value::Object(serde_json::Map::new()));
    let mut negotiated = LATEST_SESSION_VERSION.to_owned();
    let mut running = JoinSet::new();
    let mut reader = BufReader::new(input);
    loop {
        let line = match read_line_capped(&mut reader, MAX_LINE).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                send(&tx, &Response::err(None, RpcError::invalid_request(e.to_string()))).await;
                // The rest of the oversized line is garbage; stop rather than misparse it.
                break;
            }
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                send(
                    &tx,
                    &Response::err(None, RpcError::parse_error(format!("invalid JSON: {e}"))),
                )
                .await;
                continue;
            }
        };
        let id = value
            .get("id")
            .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
        let request = match Message::from_value(value) {
            Ok(Message::Request(request)) => request,
            Ok(Message::Response(response)) => {
                if !pending.complete(response) {
                    tracing::debug!("ignoring a client response that no request waits for");
                }
                continue;
            }
            Err(error) => {
                send(&tx, &Response::err(id, error)).await;
                continue;
            }
        };
        if request.id.is_none() {
            if request.method == "notifications/cancelled"
                && let Some(target) = request
                    .params
                    .as_ref()
                    .and_then(|p| p.get("requestId"))
                    .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok())
                && let Some(token) = lock(&in_flight).remove(&target)
            {
                token.cancel();
            }
            continue;
        }
        let meta_version = request
            .params
            .as_ref()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_PROTOCOL_VERSION))
            .and_then(Value::as_str);
        let version = match meta_version {
            Some(v) if !is_supported_version(v) => {
                send(
                    &tx,
                    &Response::err(request.id.clone(), RpcError::unsupported_version(v)),
                )
                .await;
                continue;
            }
            Some(STATELESS_VERSION) => STATELESS_VERSION.to_owned(),
            _ => negotiated.clone(),
        };
        if request.method == "initialize" {
            if let Some(capabilities) = request.params.as_ref().and_then(|p| p.get("capabilities")) {
                client_capabilities = Arc::new(capabilities.clone());
            }
            // Negotiate inline so later requests see the version.
            let ctx = RequestContext::new(LATEST_SESSION_VERSION).with_tasks(stdio_tasks(&tasks));
            if let Some(response) = server.handle(request, &ctx).await {
                if let Some(v) = response
                    .result
                    .as_ref()
                    .and_then(|r| r.get("protocolVersion"))
                    .and_then(Value::as_str)
                {
                    negotiated = v.to_owned();
                }
                send(&tx, &response).await;
            }
            continue;
        }
        let stateless = version == STATELESS_VERSION;
        let mut ctx = RequestContext::new(version)
            .with_client_timeout(server.options().client_request_timeout)
            .with_pending_requests(Arc::clone(&pending));
        // The tasks of both eras (2025-11-25 ones only for a client that declared `tasks`).
        ctx = ctx.with_tasks(stdio_tasks(&tasks));
        if !stateless {
            // Stateless requests carry their own capabilities in `_meta`.
            ctx = ctx.with_client_capabilities(Arc::clone(&client_capabilities));
        }
        if let Some(id) = &request.id {
            lock(&in_flight).insert(id.clone(), ctx.cancel.clone());
        }
        let server = Arc::clone(&server);
        let tx = tx.clone();
        let in_flight = Arc::clone(&in_flight);
        running.spawn(async move {
            let id = request.id.clone();
            let cancel = ctx.cancel.clone();
            let outbox = Arc::clone(&ctx.outbox);
            let handler = async move { server.handle(request, &ctx).await };
            tokio::pin!(handler);
            // Forward the handler's notifications and requests to the client as they come, then its response.
            let response = loop {
                tokio::select! {
                    biased;
                    message = outbox.next() => send(&tx, &message).await,
                    response = &mut handler => break response,
                }
            };
            for message in outbox.drain() {
                send(&tx, &message).await;
            }
            if let Some(id) = id {
                lock(&in_flight).remove(&id);
            }
            // A cancelled request gets no response (the client has forgotten it).
            if let Some(response) = response
                && !cancel.is_cancelled()
            {
                send(&tx, &response).await;
            }
        });
    }
    while running.join_next().await.is_some() {}
    // The client is gone, and its tasks with it.
    tasks.cancel_all();
    drop(tx);
    writer.await.map_err(std::io::Error::other)?
}

/// The tasks of the loop's one client: it is identified (the other end of the pipe), so they may be listed.
fn stdio_tasks(tasks: &Arc<TaskStore>) -> TaskScope {
    TaskScope::new(Arc::clone(tasks), "stdio").with_listing(true)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

async fn send<T: serde::Serialize>(tx: &mpsc::Sender<String>, message: &T) {
    if let Ok(line) = serde_json::to_string(message) {
        let _ = tx.send(line).await;
    }
}
