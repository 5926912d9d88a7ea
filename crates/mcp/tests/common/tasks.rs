//! Shared by the task tests of both eras: demo servers behind per-caller keys on loopback, a 2026-07-28 caller
//! speaking raw JSON-RPC over HTTP, and a client of the stdio loop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use toolplane_mcp::{HttpOptions, McpServer, McpServerResolver, ResolveError, ServerOptions, mcp_router};
use toolplane_net::SafeClient;

use super::{SseReader, demo};

/// The 2026-07-28 tasks extension.
pub const TASKS: &str = "io.modelcontextprotocol/tasks";

/// Serves each server code to the bearer keys it accepts (several callers of one server, like a tenant's servers
/// with per-caller keys); an empty list serves anyone (an open server).
struct KeyedResolver(HashMap<&'static str, (Arc<McpServer>, Vec<&'static str>)>);

#[async_trait]
impl McpServerResolver for KeyedResolver {
    async fn resolve(&self, server_code: &str, bearer: Option<&str>) -> Result<Arc<McpServer>, ResolveError> {
        let (server, keys) = self.0.get(server_code).ok_or(ResolveError::NotFound)?;
        match bearer {
            _ if keys.is_empty() => Ok(Arc::clone(server)),
            Some(key) if keys.contains(&key) => Ok(Arc::clone(server)),
            _ => Err(ResolveError::Unauthorized),
        }
    }
}

/// Serves `servers` (code, server, accepted keys; no keys for an open server) on loopback; returns the base URL.
pub async fn serve(servers: Vec<(&'static str, Arc<McpServer>, Vec<&'static str>)>) -> String {
    let resolver = KeyedResolver(
        servers
            .into_iter()
            .map(|(code, server, keys)| (code, (server, keys)))
            .collect(),
    );
    let router = mcp_router(Arc::new(resolver), HttpOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// Options under which every task-eligible 2026-07-28 call answers with its task.
pub fn always_tasks() -> ServerOptions {
    ServerOptions {
        task_after: Duration::ZERO,
        ..ServerOptions::default()
    }
}

/// The demo catalog server (tenant-1) with `options`.
pub fn catalog_server(options: ServerOptions) -> Arc<McpServer> {
    Arc::new(McpServer::new(demo::catalog(), "tenant-1", demo::server().config().clone()).with_options(options))
}

/// The conformance fixture server (tenant-2; its task tools ask questions and fail on purpose) with `options`.
pub fn fixture_server(options: ServerOptions) -> Arc<McpServer> {
    Arc::new(
        McpServer::new(demo::catalog(), "tenant-2", demo::server().config().clone())
            .with_conformance_fixture()
            .with_options(options),
    )
}

/// A 2026-07-28 client of one server with one key and fixed capabilities.
pub struct Caller {
    pub http: SafeClient,
    pub url: String,
    pub key: &'static str,
    pub capabilities: Value,
}

impl Caller {
    pub fn new(base: &str, code: &str, key: &'static str, capabilities: Value) -> Self {
        Self {
            http: super::loopback_client(),
            url: format!("{base}/mcp/server/{code}/mcp"),
            key,
            capabilities,
        }
    }

    /// A client that declared the tasks extension and elicitation.
    pub fn with_tasks(base: &str, code: &str, key: &'static str) -> Self {
        Self::new(base, code, key, json!({"elicitation": {}, "extensions": {TASKS: {}}}))
    }

    /// Posts a request with the headers 2026-07-28 requires, `Mcp-Name` set to `name`, and the caller's version
    /// and capabilities in `_meta`.
    pub async fn post(&self, method: &str, mut params: Value, name: Option<&str>) -> toolplane_net::Response {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": self.capabilities,
        });
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut builder = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .bearer_auth(self.key);
        if let Some(name) = name {
            builder = builder.header("mcp-name", name);
        }
        builder.body(request.to_string()).send().await.unwrap()
    }

    /// Sends a request with the `Mcp-Name` it needs (the tool name or task id); returns the HTTP status and the
    /// response body.
    pub async fn send(&self, method: &str, params: Value) -> (u16, Value) {
        let name = params["name"].as_str().or(params["taskId"].as_str()).map(str::to_owned);
        let response = self.post(method, params, name.as_deref()).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn result(&self, method: &str, params: Value) -> Value {
        let (status, body) = self.send(method, params).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("error").is_none(), "{method}: {body}");
        body["result"].clone()
    }

    pub async fn error(&self, method: &str, params: Value) -> Value {
        let (_, body) = self.send(method, params).await;
        assert!(body.get("result").is_none(), "{method} should fail: {body}");
        body["error"].clone()
    }

    pub async fn call(&self, tool: &str, arguments: Value) -> Value {
        self.result("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
    }

    pub async fn get(&self, task_id: &str) -> Value {
        self.result("tasks/get", json!({"taskId": task_id})).await
    }

    /// Polls `tasks/get` until `done` holds (bounded).
    pub async fn poll_until(&self, task_id: &str, done: impl Fn(&Value) -> bool) -> Value {
        poll_until(task_id, async |id| self.get(id).await, done).await
    }

    pub async fn until_terminal(&self, task_id: &str) -> Value {
        self.poll_until(task_id, |t| {
            matches!(t["status"].as_str(), Some("completed" | "failed" | "cancelled"))
        })
        .await
    }

    pub async fn until_input_required(&self, task_id: &str, keys: usize) -> Value {
        self.poll_until(task_id, |t| {
            t["status"] == "input_required" && t["inputRequests"].as_object().is_some_and(|r| r.len() >= keys)
        })
        .await
    }

    /// Opens `subscriptions/listen` for task `id`.
    pub async fn listen(&self, id: &str) -> SseReader {
        let params = json!({"notifications": {"taskIds": [id]}});
        let response = self.post("subscriptions/listen", params, None).await;
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader::new(response)
    }
}

/// Reads task `task_id` with `get` every 50 ms until `done` holds (at most 600 times, so a broken server fails the
/// test instead of hanging it).
pub async fn poll_until(task_id: &str, get: impl AsyncFn(&str) -> Value, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let task = get(task_id).await;
        if done(&task) {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {task_id} never reached the expected state");
}

/// A client of `serve_stdio` over an in-memory pipe, one request at a time.
pub struct StdioClient {
    lines: Lines<BufReader<ReadHalf<DuplexStream>>>,
    input: WriteHalf<DuplexStream>,
    serving: JoinHandle<std::io::Result<()>>,
    last_id: i64,
}

impl StdioClient {
    /// Starts `server`'s stdio loop.
    pub fn start(server: Arc<McpServer>) -> Self {
        let (client_side, server_side) = tokio::io::duplex(1 << 20);
        let (server_read, server_write) = tokio::io::split(server_side);
        let serving = tokio::spawn(toolplane_mcp::serve_stdio(server, server_read, server_write));
        let (client_read, input) = tokio::io::split(client_side);
        Self {
            lines: BufReader::new(client_read).lines(),
            input,
            serving,
            last_id: 0,
        }
    }

    /// Sends a request; returns the next line the server writes (at most 30 s away, so a broken server fails the
    /// test instead of hanging it).
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        self.last_id += 1;
        let line = json!({"jsonrpc": "2.0", "id": self.last_id, "method": method, "params": params});
        self.input.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        serde_json::from_str(&reply).unwrap()
    }

    /// Ends the client's input; waits (at most 30 s) for the server's loop to end without an error.
    pub async fn close(mut self) {
        self.input.shutdown().await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.serving)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
