//! Routing of messages that arrive on a long-lived stream (stdio, legacy SSE, the HTTP server stream): responses to
//! their waiting requests, notifications to subscribers, and answers to the server's own requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{broadcast, oneshot};

use super::Handler;
use crate::protocol::{Message, Request, RequestId, Response, RpcError};

/// Pending requests of one connection.
#[derive(Default)]
pub(crate) struct Pending {
    waiting: Mutex<HashMap<RequestId, oneshot::Sender<Response>>>,
}

/// Removes its request from the pending map when dropped (response received, timeout or cancellation).
pub(crate) struct PendingGuard {
    pending: Arc<Pending>,
    id: RequestId,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.pending.waiting.lock() {
            map.remove(&self.id);
        }
    }
}

impl Pending {
    /// Registers `id`; the receiver gets its response.
    pub(crate) fn register(self: &Arc<Self>, id: RequestId) -> (PendingGuard, oneshot::Receiver<Response>) {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut map) = self.waiting.lock() {
            map.insert(id.clone(), tx);
        }
        (
            PendingGuard {
                pending: Arc::clone(self),
                id,
            },
            rx,
        )
    }

    /// Delivers a response; `false` when nobody waits for it (late or unknown id).
    pub(crate) fn deliver(&self, response: Response) -> bool {
        let Some(id) = response.id.clone() else {
            return false;
        };
        let sender = self.waiting.lock().ok().and_then(|mut map| map.remove(&id));
        match sender {
            Some(tx) => tx.send(response).is_ok(),
            None => false,
        }
    }

    /// Fails every waiting request (the connection is gone).
    pub(crate) fn close_all(&self) {
        if let Ok(mut map) = self.waiting.lock() {
            map.clear();
        }
    }
}

/// What to do with one incoming message.
pub(crate) enum Routed {
    /// Nothing more to do.
    Done,
    /// Send this reply to the server (it asked us something). A future, because the client's [`Handler`] may
    /// take its time (a user answering an elicitation); callers run it on a task of its own.
    Reply(BoxFuture<'static, Response>),
}

/// Routes one incoming message: responses go to `pending` (if given), notifications to `notifications`, server
/// requests get an answer (`ping` → `{}`; anything else goes to the client's [`Handler`], or is answered with
/// method-not-found when there is none: the client then declares no capabilities).
pub(crate) fn route(
    message: Message,
    pending: Option<&Pending>,
    notifications: &broadcast::Sender<Request>,
    handler: Option<&Handler>,
) -> Routed {
    match message {
        Message::Response(response) => {
            if let Some(pending) = pending
                && !pending.deliver(response.clone())
            {
                tracing::debug!(id = ?response.id, "dropping a response nobody waits for");
            }
            Routed::Done
        }
        Message::Request(request) => match request.id.clone() {
            None => {
                // Nobody listening is fine.
                let _ = notifications.send(request);
                Routed::Done
            }
            Some(id) if request.method == "ping" => {
                let reply = Response::ok(id, json!({}));
                Routed::Reply(Box::pin(async move { reply }))
            }
            Some(id) => match handler.cloned() {
                Some(handler) => Routed::Reply(Box::pin(async move {
                    let params = request.params.clone().unwrap_or_else(|| json!({}));
                    match handler.0.handle(&request.method, params).await {
                        Ok(result) => Response::ok(id, result),
                        Err(error) => Response::err(Some(id), error),
                    }
                })),
                None => {
                    let reply = Response::err(Some(id), RpcError::method_not_found(&request.method));
                    Routed::Reply(Box::pin(async move { reply }))
                }
            },
        },
    }
}

/// Parses one message from text.
pub(crate) fn parse(text: &str) -> Result<Vec<Message>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON from the MCP server: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    items
        .into_iter()
        .map(|v| {
            Message::from_value(v).map_err(|e| format!("invalid JSON-RPC message from the MCP server: {}", e.message))
        })
        .collect()
}
