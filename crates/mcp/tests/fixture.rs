//! The conformance fixture mode: served only when enabled, and answering what the conformance suite expects —
//! driven through `McpServer::handle` and, for notifications on a response stream, over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use serde_json::{Value, json};
use toolplane_mcp::protocol::Request;
use toolplane_mcp::server::RequestContext;
use toolplane_mcp::{HttpOptions, McpServer, StaticResolver, mcp_router};

use common::demo;

fn fixture_server() -> McpServer {
    McpServer::new(demo::catalog(), "tenant-1", demo::server().config().clone()).with_conformance_fixture()
}

async fn call(server: &McpServer, ctx: &RequestContext, method: &str, params: Value) -> Value {
    let request: Request =
        serde_json::from_value(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})).unwrap();
    serde_json::to_value(server.handle(request, ctx).await.unwrap()).unwrap()
}

#[tokio::test]
async fn fixture_is_served_only_when_enabled() {
    let ctx = RequestContext::new("2025-11-25");
    let plain = demo::server();
    let reply = call(&plain, &ctx, "resources/list", json!({})).await;
    assert_eq!(reply["error"]["code"], -32601);
    let tools = call(&plain, &ctx, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"test_simple_text"), "{names:?}");
    let init = call(&plain, &ctx, "initialize", json!({"protocolVersion": "2025-11-25"})).await;
    assert_eq!(init["result"]["capabilities"], json!({"tools": {"listChanged": false}}));

    let fixture = fixture_server();
    let tools = call(&fixture, &ctx, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo"), "the configured tools stay: {names:?}");
    assert!(names.contains(&"test_simple_text") && names.contains(&"json_schema_2020_12_tool"));
    let init = call(&fixture, &ctx, "initialize", json!({"protocolVersion": "2025-11-25"})).await;
    assert_eq!(init["result"]["capabilities"]["resources"]["subscribe"], true);
}

#[tokio::test]
async fn fixture_answers_the_suites_requests() {
    let ctx = RequestContext::new("2025-11-25");
    let server = fixture_server();

    let reply = call(&server, &ctx, "tools/call", json!({"name": "test_simple_text"})).await;
    assert_eq!(
        reply["result"]["content"][0]["text"],
        "This is a simple text response for testing."
    );
    let reply = call(
        &server,
        &ctx,
        "tools/call",
        json!({"name": "test_error_handling", "arguments": {}}),
    )
    .await;
    assert_eq!(reply["result"]["isError"], true);

    let reply = call(
        &server,
        &ctx,
        "resources/read",
        json!({"uri": "test://template/123/data"}),
    )
    .await;
    let text = reply["result"]["contents"][0]["text"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(text).unwrap()["id"], "123");
    let reply = call(&server, &ctx, "resources/read", json!({"uri": "test://nope"})).await;
    assert_eq!(reply["error"]["code"], -32602);
    assert_eq!(reply["error"]["data"]["uri"], "test://nope");
    let reply = call(
        &server,
        &ctx,
        "resources/subscribe",
        json!({"uri": "test://watched-resource"}),
    )
    .await;
    assert_eq!(reply["result"], json!({}));

    let reply = call(
        &server,
        &ctx,
        "prompts/get",
        json!({"name": "test_prompt_with_arguments", "arguments": {"arg1": "one", "arg2": "two"}}),
    )
    .await;
    let text = reply["result"]["messages"][0]["content"]["text"].as_str().unwrap();
    assert!(text.contains("one") && text.contains("two"), "{text}");
    let reply = call(
        &server,
        &ctx,
        "prompts/get",
        json!({"name": "test_prompt_with_arguments"}),
    )
    .await;
    assert_eq!(reply["error"]["code"], -32602);

    let reply = call(&server, &ctx, "logging/setLevel", json!({"level": "loud"})).await;
    assert_eq!(reply["error"]["code"], -32602);
    let reply = call(&server, &ctx, "logging/setLevel", json!({"level": "error"})).await;
    assert_eq!(reply["result"], json!({}));
    // Info messages are below the level now.
    call(&server, &ctx, "tools/call", json!({"name": "test_tool_with_logging"})).await;
    assert!(ctx.take_notifications().is_empty());

    let reply = call(
        &server,
        &ctx,
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "x"}}),
    )
    .await;
    assert_eq!(reply["result"]["completion"]["values"], json!([]));

    // 2026-07-28: subscribe is gone, list results carry cache hints, no logs without a `_meta` log level.
    let stateless = RequestContext::new("2026-07-28");
    let reply = call(
        &server,
        &stateless,
        "resources/subscribe",
        json!({"uri": "test://watched-resource"}),
    )
    .await;
    assert_eq!(reply["error"]["code"], -32601);
    let reply = call(&server, &stateless, "prompts/list", json!({})).await;
    assert_eq!(reply["result"]["cacheScope"], "public");
    call(&server, &stateless, "tools/call", json!({"name": "test_logging_tool"})).await;
    assert!(stateless.take_notifications().is_empty());
    let params = json!({"name": "test_logging_tool", "_meta": {"io.modelcontextprotocol/logLevel": "debug"}});
    call(&server, &stateless, "tools/call", params).await;
    assert_eq!(stateless.take_notifications().len(), 3);
}

#[tokio::test]
async fn progress_notifications_precede_the_response_on_an_sse_stream() {
    let resolver = StaticResolver::new().with_server("fx", Arc::new(fixture_server()), None);
    let router = mcp_router(Arc::new(resolver), HttpOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp/server/fx/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = common::loopback_client();
    let post = |body: Value, session: Option<String>| {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        request.body(body.to_string()).send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let response = post(init, None).await.unwrap();
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();

    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p1"}}});
    let response = post(call, Some(session.clone())).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = String::from_utf8(http.read_body(response).await.unwrap().to_vec()).unwrap();
    let messages: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let progress: Vec<i64> = messages[..3]
        .iter()
        .map(|m| m["params"]["progress"].as_i64().unwrap())
        .collect();
    assert_eq!(progress, [0, 50, 100]);
    assert!(messages[..3].iter().all(|m| m["params"]["progressToken"] == "p1"));
    assert_eq!(messages[3]["id"], 1);
    assert_eq!(messages[3]["result"]["isError"], false);

    // Without notifications the answer stays plain JSON.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "test_simple_text"}});
    let response = post(call, Some(session)).await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}
