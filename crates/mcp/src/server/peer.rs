//! Server-to-client requests (`sampling/createMessage`, `elicitation/create`, `roots/list`) and list-change
//! events.
//!
//! A session-era transport gives each request's [`RequestContext`](super::RequestContext) an outgoing channel
//! (the request's SSE response, or stdout on stdio) and a [`PendingRequests`] table shared with the code that
//! reads the client's messages: the handler sends a request with a fresh id, the client POSTs (or writes) its
//! JSON-RPC response, the transport hands it to [`PendingRequests::complete`], and the handler resumes. The
//! stateless 2026-07-28 era has no channel back; there a handler's question becomes an `input_required` result
//! (MRTR, SEP-2322) and the client retries the original request with `inputResponses`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::protocol::{Request, RequestId, Response, RpcError, codes};

/// Why a server-to-client request did not produce a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientRequestError {
    /// The client did not declare the capability the request needs.
    #[error(
        "the client did not declare the `{capability}` capability, which this request needs; connect with a client \
         that supports {capability} (declare it in initialize's capabilities or in \
         _meta.io.modelcontextprotocol/clientCapabilities)"
    )]
    MissingCapability {
        /// The capability name (`sampling`, `elicitation`, `roots`).
        capability: String,
    },
    /// The client did not answer in time.
    #[error("the client did not answer {method} within {} s", timeout.as_secs_f64())]
    Timeout {
        /// The request's method.
        method: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The client answered with a JSON-RPC error.
    #[error("the client answered {method} with an error: {error}")]
    Rejected {
        /// The request's method.
        method: String,
        /// The client's error.
        error: RpcError,
    },
    /// The request was cancelled, or the session or stream ended before the client answered.
    #[error("the request was cancelled or the connection to the client ended before it answered {method}")]
    Closed {
        /// The request's method.
        method: String,
    },
    /// This transport cannot carry requests to the client (a stateless request that cannot return
    /// `input_required`).
    #[error("this transport cannot send {method} to the client")]
    Unsupported {
        /// The request's method.
        method: String,
    },
    /// Stateless 2026-07-28: the client must supply this input and retry the request (MRTR). Handlers return it
    /// unchanged; [`McpServer::handle`](super::McpServer::handle) turns it into an `input_required` result.
    #[error("input required: {}", requests.keys().cloned().collect::<Vec<_>>().join(", "))]
    InputRequired {
        /// `inputRequests`: what the client is to fulfil (`{method, params}`), by the key its answer comes back
        /// under in `inputResponses`.
        requests: serde_json::Map<String, Value>,
        /// What the handler needs to resume; the server seals it into `requestState` (see
        /// [`StateSealer`](super::StateSealer)) and hands it back through
        /// [`RequestContext::request_state`](super::RequestContext::request_state) on the retry.
        state: Option<Value>,
    },
    /// Stateless 2026-07-28: the retry's `inputResponses[key]` is not a result of the request it answers.
    #[error("inputResponses.{key} is not a valid answer: {reason}")]
    InvalidInputResponse {
        /// The key in `inputResponses`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ClientRequestError {
    /// The JSON-RPC error for a request that failed because of this (MRTR is not an error and becomes a result
    /// before this is reached).
    pub fn to_rpc_error(&self) -> RpcError {
        match self {
            Self::MissingCapability { capability } => {
                let mut required = serde_json::Map::new();
                required.insert(capability.clone(), json!({}));
                RpcError::new(codes::MISSING_CLIENT_CAPABILITY, self.to_string())
                    .with_data(json!({"requiredCapabilities": required}))
            }
            Self::Rejected { .. } | Self::Timeout { .. } | Self::Closed { .. } | Self::Unsupported { .. } => {
                RpcError::internal(self.to_string())
            }
            Self::InvalidInputResponse { .. } => RpcError::invalid_params(self.to_string()),
            Self::InputRequired { .. } => RpcError::internal("input required outside a stateless request"),
        }
    }

    /// Attaches the state a handler needs to resume to an [`InputRequired`](Self::InputRequired) (other errors
    /// pass unchanged).
    pub fn with_state(self, state: Value) -> Self {
        match self {
            Self::InputRequired { requests, .. } => Self::InputRequired {
                requests,
                state: Some(state),
            },
            other => other,
        }
    }
}

/// Requests sent to the client that await its response, keyed by the id the server gave them.
#[derive(Debug, Default)]
pub struct PendingRequests {
    next: AtomicU64,
    waiting: Mutex<HashMap<RequestId, oneshot::Sender<Response>>>,
}

impl PendingRequests {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, oneshot::Sender<Response>>> {
        match self.waiting.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A fresh id (prefixed so it can never collide with ids the client itself uses) and the receiver of its
    /// response.
    pub(crate) fn register(&self) -> (RequestId, oneshot::Receiver<Response>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = RequestId::String(format!("toolplane-{n}"));
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id.clone(), tx);
        (id, rx)
    }

    /// Stops waiting for `id` (timed out or cancelled).
    pub(crate) fn forget(&self, id: &RequestId) {
        self.lock().remove(id);
    }

    /// Delivers the client's response; `false` when nothing waits for its id (unknown, late or duplicate).
    pub fn complete(&self, response: Response) -> bool {
        let Some(id) = response.id.clone() else {
            return false;
        };
        match self.lock().remove(&id) {
            Some(tx) => tx.send(response).is_ok(),
            None => false,
        }
    }

    /// Drops every waiter (the session ended): their requests fail with [`ClientRequestError::Closed`].
    pub fn close_all(&self) {
        self.lock().clear();
    }
}

/// A change a server announces to listening clients (`notifications/*/list_changed`, resource updates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListChange {
    /// `notifications/tools/list_changed`.
    Tools,
    /// `notifications/prompts/list_changed`.
    Prompts,
    /// `notifications/resources/list_changed`.
    Resources,
    /// `notifications/resources/updated` for one URI.
    ResourceUpdated(String),
}

impl ListChange {
    /// The notification's method.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Tools => "notifications/tools/list_changed",
            Self::Prompts => "notifications/prompts/list_changed",
            Self::Resources => "notifications/resources/list_changed",
            Self::ResourceUpdated(_) => "notifications/resources/updated",
        }
    }

    /// The notification's params (without `_meta`).
    pub fn params(&self) -> serde_json::Map<String, Value> {
        let mut params = serde_json::Map::new();
        if let Self::ResourceUpdated(uri) = self {
            params.insert("uri".into(), json!(uri));
        }
        params
    }
}

/// What a `subscriptions/listen` request asked for (2026-07-28), already narrowed to what the server offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    /// `toolsListChanged`.
    pub tools: bool,
    /// `promptsListChanged`.
    pub prompts: bool,
    /// `resourcesListChanged`.
    pub resources: bool,
    /// `resourceSubscriptions`.
    pub resource_uris: Vec<String>,
}

impl SubscriptionFilter {
    /// Whether `change` passes the filter.
    pub fn wants(&self, change: &ListChange) -> bool {
        match change {
            ListChange::Tools => self.tools,
            ListChange::Prompts => self.prompts,
            ListChange::Resources => self.resources,
            ListChange::ResourceUpdated(uri) => self.resource_uris.iter().any(|u| u == uri),
        }
    }

    /// The filter as the acknowledgement reports it.
    pub fn to_value(&self) -> Value {
        let mut map = serde_json::Map::new();
        if self.tools {
            map.insert("toolsListChanged".into(), json!(true));
        }
        if self.prompts {
            map.insert("promptsListChanged".into(), json!(true));
        }
        if self.resources {
            map.insert("resourcesListChanged".into(), json!(true));
        }
        if !self.resource_uris.is_empty() {
            map.insert("resourceSubscriptions".into(), json!(self.resource_uris));
        }
        Value::Object(map)
    }
}

/// A request's outgoing messages (notifications and requests to the client), in order. Cheaper than a channel
/// for the common case of a request that sends nothing: one small allocation, no blocks.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: Mutex<std::collections::VecDeque<Request>>,
    ready: tokio::sync::Notify,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Request>> {
        match self.queue.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) fn push(&self, message: Request) {
        self.lock().push_back(message);
        // Stores a permit when nobody waits, so a push between a failed pop and the wait is not lost.
        self.ready.notify_one();
    }

    pub(crate) fn pop(&self) -> Option<Request> {
        self.lock().pop_front()
    }

    /// The next message, waiting for one.
    pub(crate) async fn next(&self) -> Request {
        loop {
            if let Some(message) = self.pop() {
                return message;
            }
            self.ready.notified().await;
        }
    }

    pub(crate) fn drain(&self) -> Vec<Request> {
        self.lock().drain(..).collect()
    }
}
