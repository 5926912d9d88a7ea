//! toolplane's MCP client calling tools as tasks, against toolplane's own MCP server on loopback, in both eras:
//! the 2026-07-28 tasks extension and the experimental tasks of 2025-11-25. A recording layer in front of the
//! server shows what went over the wire (task creation, polls, `tasks/update`, `tasks/result`, `tasks/cancel`).
//! Also toolplane's MCP tool providers choosing tasks by the tools' `execution.taskSupport` and their timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use toolplane_core::{Tool, ToolError, ToolProvider, ToolRuntime};
use toolplane_mcp::client::{ClientHandler, Handler};
use toolplane_mcp::protocol::{Content, RpcError};
use toolplane_mcp::{
    CallOptions, ClientOptions, EraPreference, HttpOptions, McpClient, McpConnector, McpEndpoint, McpError,
    McpProviderConfig, McpServer, McpToolProvider, ServerOptions, StaticResolver, mcp_router,
};

use common::demo;
use common::tasks::TASKS;

/// Every JSON-RPC message the server received, in order.
#[derive(Clone, Default)]
struct Wire(Arc<Mutex<Vec<Value>>>);

impl Wire {
    fn messages(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    /// The requests of `method` so far.
    fn requests(&self, method: &str) -> Vec<Value> {
        self.messages().into_iter().filter(|m| m["method"] == method).collect()
    }

    /// Waits (bounded) until a request of `method` has been received.
    async fn wait_for(&self, method: &str) -> Value {
        for _ in 0..600 {
            if let Some(request) = self.requests(method).pop() {
                return request;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server never received {method}");
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

async fn record(State(wire): State<Wire>, request: Request, next: Next) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    if let Ok(message) = serde_json::from_slice::<Value>(&bytes) {
        wire.0.lock().unwrap().push(message);
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// Serves the conformance fixture server (task tools that ask, fail and run long) and the demo catalog server
/// (`slow` runs until cancelled); every call of the extension era that may be a task is one.
async fn serve() -> (String, Wire) {
    let options = ServerOptions {
        task_after: Duration::ZERO,
        task_poll_interval: Duration::from_millis(100),
        ..ServerOptions::default()
    };
    let fixture = McpServer::new(demo::catalog(), "tenant-1", demo::server().config().clone())
        .with_conformance_fixture()
        .with_options(options.clone());
    let catalog = McpServer::new(demo::catalog(), "tenant-1", demo::server().config().clone()).with_options(options);
    let resolver = StaticResolver::new()
        .with_server("fx", Arc::new(fixture), Some("key".into()))
        .with_server("demo", Arc::new(catalog), Some("key".into()));
    let wire = Wire::default();
    let router = mcp_router(Arc::new(resolver), HttpOptions::default())
        .layer(axum::middleware::from_fn_with_state(wire.clone(), record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (base, wire)
}

/// Answers the fixture's questions as a person would: confirms deletions, names values A and B.
struct Person;

#[async_trait]
impl ClientHandler for Person {
    fn capabilities(&self) -> Value {
        json!({"elicitation": {}})
    }

    async fn handle(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        assert_eq!(method, "elicitation/create");
        Ok(match params["message"].as_str().unwrap_or_default() {
            "First value?" => json!({"action": "accept", "content": {"name": "A"}}),
            "Second value?" => json!({"action": "accept", "content": {"name": "B"}}),
            _ => json!({"action": "accept", "content": {"confirm": true}}),
        })
    }
}

/// The request a client sends while a task works: 2026-07-28 polls `tasks/get`; 2025-11-25 waits in `tasks/result`.
fn waiting_request(version: &str) -> &'static str {
    if version == "2026-07-28" {
        "tasks/get"
    } else {
        "tasks/result"
    }
}

const ERAS: [(EraPreference, &str); 2] = [
    (EraPreference::Stateless, "2026-07-28"),
    (EraPreference::Session, "2025-11-25"),
];

fn client_options(era: EraPreference) -> ClientOptions {
    ClientOptions {
        era,
        headers: BTreeMap::from([("Authorization".to_owned(), "Bearer key".to_owned())]),
        handler: Some(Handler(Arc::new(Person))),
        ..ClientOptions::default()
    }
}

async fn connect(base: &str, code: &str, era: EraPreference) -> McpClient {
    let url = format!("{base}/mcp/server/{code}/mcp");
    McpClient::connect_http(common::loopback_client(), &url, client_options(era))
        .await
        .unwrap()
}

fn as_task() -> CallOptions {
    CallOptions {
        as_task: true,
        ..CallOptions::default()
    }
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn text(result: &toolplane_mcp::protocol::CallToolResult) -> String {
    match &result.content[..] {
        [Content::Text { text }, ..] => text.clone(),
        other => panic!("expected text content, got {other:?}"),
    }
}

/// Whether the call created a task: in 2025-11-25 it carried `task`, in 2026-07-28 it declared the extension.
fn asked_for_a_task(call: &Value, version: &str) -> bool {
    match version {
        "2025-11-25" => call["params"]["task"]["ttl"].is_u64(),
        _ => call["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]["extensions"][TASKS].is_object(),
    }
}

#[tokio::test]
async fn tool_calls_run_as_tasks_in_both_eras() {
    let (base, wire) = serve().await;
    for (era, version) in ERAS {
        let client = connect(&base, "fx", era).await;
        let server = client.server().await;
        assert_eq!(server.protocol_version, version);
        let support = |name: &str, tools: &[toolplane_mcp::protocol::Tool]| {
            tools.iter().find(|t| t.name == name).unwrap().task_support()
        };
        let tools = client.list_tools().await.unwrap();
        assert_eq!(
            support("failing_job", &tools),
            toolplane_mcp::protocol::TaskSupport::Required
        );
        assert_eq!(
            support("slow_compute", &tools),
            toolplane_mcp::protocol::TaskSupport::Optional
        );

        // A task that works a while: created, polled, its result mapped like a plain call's.
        wire.clear();
        let result = client
            .call_tool(
                "slow_compute",
                args(json!({"seconds": 0.3, "label": "late"})),
                as_task(),
            )
            .await
            .unwrap();
        assert!(text(&result).starts_with("late"), "{version}: {result:?}");
        let call = wire.requests("tools/call").pop().unwrap();
        assert!(asked_for_a_task(&call, version), "{version}: {call}");
        if version == "2026-07-28" {
            // Polls carry the task id in Mcp-Name (the server checks it) and declare the extension.
            let poll = wire.requests("tasks/get").pop().expect("polled");
            assert!(asked_for_a_task(&poll, version), "{poll}");
        } else {
            // 2025-11-25: no polling; `tasks/result` waits for the working task to end.
            assert!(wire.requests("tasks/get").is_empty(), "{version}: polled");
            assert_eq!(wire.requests("tasks/result").len(), 1, "{version}");
        }

        // A tool that only runs as a task: its tool error is a result with isError, as for a plain call.
        let failed = client.call_tool("failing_job", Map::new(), as_task()).await.unwrap();
        assert_eq!(failed.is_error, Some(true), "{version}");
        assert_eq!(text(&failed), "The job failed");
        // Called plainly, the server refuses it.
        let refused = client
            .call_tool("failing_job", Map::new(), CallOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, McpError::Rpc(e) if [-32601, -32021].contains(&e.code)),
            "{version}: {refused}"
        );
        // A protocol error of the task is the call's error.
        let error = client
            .call_tool("protocol_error_job", Map::new(), as_task())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, McpError::Rpc(e) if e.code == -32603),
            "{version}: {error}"
        );

        // The task's questions reach the client's handler: via tasks/update (2026-07-28) or on the tasks/result
        // stream (2025-11-25).
        wire.clear();
        let deleted = client
            .call_tool("confirm_delete", args(json!({"filename": "a.txt"})), as_task())
            .await
            .unwrap();
        assert_eq!(text(&deleted), "Deleted a.txt", "{version}");
        if version == "2026-07-28" {
            let update = wire.requests("tasks/update").pop().expect("answered with tasks/update");
            assert_eq!(
                update["params"]["inputResponses"]["confirm"]["content"]["confirm"],
                true
            );
        } else {
            let answer = wire
                .messages()
                .into_iter()
                .find(|m| m.get("result").is_some_and(|r| r["action"] == "accept"))
                .expect("answered the elicitation request");
            assert_eq!(answer["result"]["content"]["confirm"], true);
        }
        let both = client.call_tool("multi_input", Map::new(), as_task()).await.unwrap();
        assert_eq!(text(&both), "Got A and B", "{version}");

        // Without as_task an optional tool is a plain call.
        wire.clear();
        let plain = client
            .call_tool(
                "slow_compute",
                args(json!({"seconds": 0, "label": "now"})),
                CallOptions::default(),
            )
            .await
            .unwrap();
        assert!(text(&plain).starts_with("now"));
        assert!(!asked_for_a_task(&wire.requests("tools/call")[0], version), "{version}");
        assert!(wire.requests("tasks/get").is_empty(), "{version}");
        client.close().await;
    }
}

#[tokio::test]
async fn a_task_is_cancelled_when_the_caller_goes_away_or_its_time_runs_out() {
    let (base, wire) = serve().await;
    for (era, version) in ERAS {
        let client = connect(&base, "demo", era).await;

        // The caller's token fires while the client waits for the task: tasks/cancel, and the tool stops.
        wire.clear();
        let before = demo::cancellations();
        let cancel = CancellationToken::new();
        let options = CallOptions {
            cancel: cancel.clone(),
            ..as_task()
        };
        let call = {
            let client = client.clone();
            tokio::spawn(async move { client.call_tool("slow", Map::new(), options).await })
        };
        let poll = wire.wait_for(waiting_request(version)).await;
        let task_id = poll["params"]["taskId"].as_str().unwrap().to_owned();
        cancel.cancel();
        let error = call.await.unwrap().unwrap_err();
        assert!(matches!(error, McpError::Cancelled { .. }), "{version}: {error}");
        let cancelled = wire.wait_for("tasks/cancel").await;
        assert_eq!(cancelled["params"]["taskId"], task_id.as_str(), "{version}");
        assert!(
            demo::cancelled_since(before).await,
            "{version}: the slow tool kept running"
        );

        // The call's time runs out: its timeout error, and tasks/cancel.
        wire.clear();
        let before = demo::cancellations();
        let options = CallOptions {
            timeout: Some(Duration::from_millis(1500)),
            ..as_task()
        };
        let error = client.call_tool("slow", Map::new(), options).await.unwrap_err();
        assert!(
            matches!(error, McpError::Timeout { seconds, .. } if seconds == 1.5),
            "{version}: {error}"
        );
        assert_eq!(wire.requests("tasks/cancel").len(), 1, "{version}");
        assert!(
            demo::cancelled_since(before).await,
            "{version}: the slow tool kept running"
        );

        // The call's future is dropped mid-task: the task is cancelled from the background.
        wire.clear();
        let before = demo::cancellations();
        let mut call = Box::pin(client.call_tool("slow", Map::new(), as_task()));
        tokio::select! {
            _ = &mut call => panic!("slow ended"),
            _ = wire.wait_for(waiting_request(version)) => {}
        }
        drop(call);
        wire.wait_for("tasks/cancel").await;
        assert!(
            demo::cancelled_since(before).await,
            "{version}: the slow tool kept running"
        );
        client.close().await;
    }
}

/// Connects in one era (the default connector detects it; the tests want each).
struct EraConnector(EraPreference);

#[async_trait]
impl McpConnector for EraConnector {
    async fn connect(&self, config: &McpProviderConfig) -> Result<McpClient, McpError> {
        let McpEndpoint::Http { url } = &config.endpoint else {
            unreachable!("HTTP only")
        };
        let options = ClientOptions {
            era: self.0,
            ..config.client_options()
        };
        McpClient::connect_http(common::loopback_client(), url, options).await
    }
}

#[tokio::test]
async fn providers_run_required_tools_and_long_optional_calls_as_tasks() {
    let (base, wire) = serve().await;
    let url = format!("{base}/mcp/server/fx/mcp");
    for (era, version) in ERAS {
        let lister = connect(&base, "fx", era).await;
        let tools = lister.list_tools().await.unwrap();
        lister.close().await;
        let provider = |sse_read_timeout: Duration| {
            let config = McpProviderConfig {
                id: "p1".into(),
                name: "fixture".into(),
                server_identifier: "fixture".into(),
                endpoint: McpEndpoint::Http { url: url.clone() },
                headers: BTreeMap::from([("Authorization".to_owned(), "Bearer key".to_owned())]),
                timeout: Duration::from_secs(30),
                sse_read_timeout,
                icon: String::new(),
                author: "test".into(),
                tools: tools.clone(),
            };
            McpToolProvider::new(config, Arc::new(EraConnector(era)))
        };
        let invoke = async |provider: &McpToolProvider, name: &str, arguments: Value| {
            let tool: Arc<dyn Tool> = provider
                .tools()
                .await
                .unwrap()
                .into_iter()
                .find(|t| t.entity().identity.name == name)
                .unwrap();
            let stream = tool
                .invoke(ToolRuntime::default(), args(arguments), CancellationToken::new())
                .await?;
            toolplane_core::collect_messages(stream).await
        };

        // The default time limit (300 s) is long: an optional tool runs as a task.
        let long = provider(Duration::from_secs(300));
        wire.clear();
        let messages = invoke(&long, "slow_compute", json!({"seconds": 0.1, "label": "x"}))
            .await
            .unwrap();
        assert!(messages[0].as_text().unwrap().starts_with("x:"), "{messages:?}");
        assert!(asked_for_a_task(&wire.requests("tools/call")[0], version), "{version}");
        // A tool error of a task is the tool's error, as for a plain call.
        let error = invoke(&long, "failing_job", json!({})).await.unwrap_err();
        assert_eq!(error, ToolError::Invoke("The job failed".into()), "{version}");

        // A short limit: the optional tool is called plainly, the required one still as a task.
        let short = provider(Duration::from_secs(30));
        wire.clear();
        invoke(&short, "slow_compute", json!({"seconds": 0, "label": "y"}))
            .await
            .unwrap();
        assert!(!asked_for_a_task(&wire.requests("tools/call")[0], version), "{version}");
        let error = invoke(&short, "failing_job", json!({})).await.unwrap_err();
        assert_eq!(error, ToolError::Invoke("The job failed".into()), "{version}");
    }
}
