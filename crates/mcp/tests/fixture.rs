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

/// A fixture server with `options` on loopback; returns its URL.
async fn serve_fixture(options: toolplane_mcp::ServerOptions) -> (String, Arc<McpServer>) {
    let server = Arc::new(fixture_server().with_options(options));
    let resolver = StaticResolver::new().with_server("fx", Arc::clone(&server), None);
    let router = mcp_router(Arc::new(resolver), HttpOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp/server/fx/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, server)
}

/// Reads the JSON-RPC messages of an SSE response one at a time, as they arrive.
struct SseReader {
    response: toolplane_net::Response,
    buf: String,
}

impl SseReader {
    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), self.response.chunk())
                .await
                .expect("no SSE frame within 10 s")
                .unwrap()
                .expect("the stream ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

struct Session {
    http: toolplane_net::SafeClient,
    url: String,
    id: String,
}

impl Session {
    async fn open(url: &str, capabilities: Value) -> Self {
        let http = common::loopback_client();
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": capabilities,
                       "clientInfo": {"name": "t", "version": "1"}}});
        let response = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(init.to_string())
            .send()
            .await
            .unwrap();
        let id = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        Self {
            http,
            url: url.to_owned(),
            id,
        }
    }

    async fn post(&self, body: Value) -> toolplane_net::Response {
        self.http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }
}

fn call_tool(id: i64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

#[tokio::test]
async fn a_session_client_answers_an_elicitation_on_the_post_stream() {
    let (url, _) = serve_fixture(Default::default()).await;
    let session = Session::open(&url, json!({"elicitation": {}})).await;
    let response = session
        .post(call_tool(1, "test_elicitation", json!({"message": "Who are you?"})))
        .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = SseReader {
        response,
        buf: String::new(),
    };
    let request = stream.next().await;
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["message"], "Who are you?");
    assert_eq!(
        request["params"]["requestedSchema"]["required"],
        json!(["username", "email"])
    );
    let request_id = request["id"].clone();
    assert!(request_id.is_string(), "server request ids are strings: {request_id}");

    // An answer to an id nobody waits for is accepted and ignored; the real answer resumes the tool.
    let stray = json!({"jsonrpc": "2.0", "id": "toolplane-999", "result": {"action": "decline"}});
    assert_eq!(session.post(stray).await.status(), 202);
    let answer = json!({"jsonrpc": "2.0", "id": request_id,
        "result": {"action": "accept", "content": {"username": "ada", "email": "ada@example.com"}}});
    assert_eq!(session.post(answer).await.status(), 202);
    let result = stream.next().await;
    assert_eq!(result["id"], 1);
    let text = result["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("User response: action=accept") && text.contains("ada@example.com"),
        "{text}"
    );

    // Sampling the same way; the client's error answer becomes a clear error of the call.
    let session = Session::open(&url, json!({"sampling": {}})).await;
    let response = session
        .post(call_tool(2, "test_sampling", json!({"prompt": "hi"})))
        .await;
    let mut stream = SseReader {
        response,
        buf: String::new(),
    };
    let request = stream.next().await;
    assert_eq!(request["method"], "sampling/createMessage");
    assert_eq!(request["params"]["messages"][0]["content"]["text"], "hi");
    let refusal = json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -1, "message": "user rejected"}});
    assert_eq!(session.post(refusal).await.status(), 202);
    let result = stream.next().await;
    assert_eq!(result["id"], 2);
    let message = result["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("sampling/createMessage") && message.contains("user rejected"),
        "{message}"
    );
}

#[tokio::test]
async fn a_client_without_the_capability_gets_a_clear_error() {
    let (url, _) = serve_fixture(Default::default()).await;
    let session = Session::open(&url, json!({})).await;
    let response = session
        .post(call_tool(1, "test_elicitation", json!({"message": "?"})))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32021, "{body}");
    assert_eq!(
        body["error"]["data"]["requiredCapabilities"],
        json!({"elicitation": {}})
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`elicitation` capability"), "{message}");

    // 2026-07-28: the same error with HTTP 400.
    let http = common::loopback_client();
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let request = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "test_missing_capability", "arguments": {}, "_meta": meta}});
    let response = http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "test_missing_capability")
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32021);
    assert_eq!(body["error"]["data"]["requiredCapabilities"], json!({"sampling": {}}));
}

#[tokio::test]
async fn an_unanswered_client_request_times_out_and_is_cancelled() {
    let options = toolplane_mcp::ServerOptions {
        client_request_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let (url, _) = serve_fixture(options).await;
    let session = Session::open(&url, json!({"elicitation": {}})).await;
    let response = session
        .post(call_tool(1, "test_elicitation_sep1034_defaults", json!({})))
        .await;
    let mut stream = SseReader {
        response,
        buf: String::new(),
    };
    let request = stream.next().await;
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["requestedSchema"]["properties"]["age"]["default"], 30);
    let cancelled = stream.next().await;
    assert_eq!(cancelled["method"], "notifications/cancelled");
    assert_eq!(cancelled["params"]["requestId"], request["id"]);
    let result = stream.next().await;
    let message = result["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("did not answer elicitation/create within 0.3 s"),
        "{message}"
    );
    // A late answer is accepted and ignored.
    let late = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"action": "cancel"}});
    assert_eq!(session.post(late).await.status(), 202);
}

fn stateless_request(id: i64, method: &str, mut params: Value, capabilities: Value) -> Value {
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities});
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

async fn post_stateless(url: &str, request: &Value) -> toolplane_net::Response {
    let mut builder = common::loopback_client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", request["method"].as_str().unwrap());
    if let Some(name) = request["params"]["name"].as_str() {
        builder = builder.header("mcp-name", name);
    }
    builder.body(request.to_string()).send().await.unwrap()
}

#[tokio::test]
async fn stateless_elicitation_is_an_input_required_result_answered_by_a_retry() {
    let (url, _) = serve_fixture(Default::default()).await;
    let capabilities = json!({"elicitation": {}});
    let first = stateless_request(
        1,
        "tools/call",
        json!({"name": "test_streaming_elicitation", "arguments": {}}),
        capabilities.clone(),
    );
    let body: Value = post_stateless(&url, &first).await.json().await.unwrap();
    assert_eq!(body["result"]["resultType"], "input_required", "{body}");
    let asked = &body["result"]["inputRequests"]["elicitation"];
    assert_eq!(asked["method"], "elicitation/create");
    assert_eq!(asked["params"]["mode"], "form");

    let retry = stateless_request(
        2,
        "tools/call",
        json!({"name": "test_streaming_elicitation", "arguments": {}, "inputResponses": {
            "elicitation": {"action": "accept", "content": {"username": "ada", "email": "a@b.c"}}}}),
        capabilities,
    );
    let body: Value = post_stateless(&url, &retry).await.json().await.unwrap();
    assert_eq!(body["result"]["resultType"], "complete", "{body}");
    let text = body["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("action=accept") && text.contains("ada"), "{text}");
}

#[tokio::test]
async fn subscriptions_listen_acknowledges_then_delivers_only_what_was_asked() {
    let (url, server) = serve_fixture(Default::default()).await;
    let listen = stateless_request(
        42,
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": ["test://watched-resource"]}}),
        json!({}),
    );
    let response = post_stateless(&url, &listen).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = SseReader {
        response,
        buf: String::new(),
    };
    let ack = stream.next().await;
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 42);
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true, "resourceSubscriptions": ["test://watched-resource"]})
    );

    // Prompt changes were not asked for; tool changes and the watched resource were.
    let trigger = stateless_request(
        3,
        "tools/call",
        json!({"name": "test_trigger_prompt_change", "arguments": {}}),
        json!({}),
    );
    assert_eq!(post_stateless(&url, &trigger).await.status(), 200);
    server.announce(toolplane_mcp::server::ListChange::ResourceUpdated(
        "test://other".into(),
    ));
    server.announce(toolplane_mcp::server::ListChange::ResourceUpdated(
        "test://watched-resource".into(),
    ));
    let trigger = stateless_request(
        4,
        "tools/call",
        json!({"name": "test_trigger_tool_change", "arguments": {}}),
        json!({}),
    );
    assert_eq!(post_stateless(&url, &trigger).await.status(), 200);
    let updated = stream.next().await;
    assert_eq!(updated["method"], "notifications/resources/updated");
    assert_eq!(updated["params"]["uri"], "test://watched-resource");
    let changed = stream.next().await;
    assert_eq!(changed["method"], "notifications/tools/list_changed");
    assert_eq!(changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 42);
}

#[tokio::test]
async fn python_sdk_client_answers_elicitation_and_sampling_in_both_eras() {
    let Some(py) = common::python() else { return };
    let (url, _) = serve_fixture(Default::default()).await;
    let run = |mode: &'static str, capable: &'static str| {
        let py = py.clone();
        let url = url.clone();
        async move {
            let output = tokio::process::Command::new(&py)
                .arg(common::crate_dir().join("tests/python/mcp_elicit_client.py"))
                .arg(&url)
                .arg(mode)
                .arg(capable)
                .output()
                .await
                .unwrap();
            assert!(
                output.status.success(),
                "python client ({mode}) failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            serde_json::from_slice::<Value>(&output.stdout).unwrap()
        }
    };
    for (mode, version) in [("legacy", "2025-11-25"), ("auto", "2026-07-28")] {
        let out = run(mode, "yes").await;
        assert_eq!(out["protocol_version"], version, "{out}");
        let text = out["test_elicitation"]["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains("action=accept") && text.contains("ada@example.com"),
            "{mode}: {out}"
        );
        assert_eq!(out["elicitations"][0]["message"], "Who are you?", "{mode}: {out}");
        assert_eq!(
            out["test_sampling"]["content"][0]["text"], "LLM response: forty-two",
            "{mode}: {out}"
        );
        assert_eq!(
            out["samplings"][0]["messages"][0]["content"]["text"], "What is six times seven?",
            "{mode}: {out}"
        );
    }
    let out = run("legacy", "no").await;
    let error = out["test_elicitation"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("`elicitation` capability"), "{out}");
}

#[tokio::test]
async fn stdio_carries_requests_to_the_client_and_their_answers() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (client_side, server_side) = tokio::io::duplex(1 << 20);
    let (server_read, server_write) = tokio::io::split(server_side);
    let serving = tokio::spawn(toolplane_mcp::serve_stdio(
        Arc::new(fixture_server()),
        server_read,
        server_write,
    ));
    let (client_read, mut client_write) = tokio::io::split(client_side);
    let mut lines = BufReader::new(client_read).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(std::time::Duration::from_secs(5), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        serde_json::from_str(&line).unwrap()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {"elicitation": {}}, "clientInfo": {"name": "t", "version": "1"}}});
    client_write.write_all(format!("{init}\n").as_bytes()).await.unwrap();
    assert_eq!(next().await["id"], 1);
    let call = call_tool(2, "test_elicitation_sep1330_enums", json!({}));
    client_write.write_all(format!("{call}\n").as_bytes()).await.unwrap();
    let request = next().await;
    assert_eq!(request["method"], "elicitation/create");
    let titled = &request["params"]["requestedSchema"]["properties"]["titledMulti"]["items"]["anyOf"];
    assert_eq!(titled[0], json!({"const": "value1", "title": "First Choice"}));
    let answer = json!({"jsonrpc": "2.0", "id": request["id"],
        "result": {"action": "accept", "content": {"untitledSingle": "option2"}}});
    client_write.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
    let result = next().await;
    assert_eq!(result["id"], 2);
    let text = result["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("action=accept") && text.contains("option2"), "{text}");
    client_write.shutdown().await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Posts a stateless tools/call with `extra` headers; returns the HTTP status and the JSON body.
async fn post_stateless_with(url: &str, request: &Value, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut builder = common::loopback_client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", request["method"].as_str().unwrap())
        .header("mcp-name", request["params"]["name"].as_str().unwrap());
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    let response = builder.body(request.to_string()).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn all_capabilities() -> Value {
    json!({"elicitation": {}, "sampling": {}, "roots": {"listChanged": true}})
}

#[tokio::test]
async fn request_state_carries_a_multi_round_call_and_is_integrity_checked() {
    let (url, _) = serve_fixture(Default::default()).await;
    let tool = "test_input_required_result_multi_round";
    let round = |id: i64, extra: Value| {
        let mut params = json!({"name": tool, "arguments": {}});
        if let (Value::Object(params), Value::Object(extra)) = (&mut params, extra) {
            params.extend(extra);
        }
        stateless_request(id, "tools/call", params, all_capabilities())
    };

    let body: Value = post_stateless(&url, &round(1, json!({}))).await.json().await.unwrap();
    let first = &body["result"];
    assert_eq!(first["resultType"], "input_required", "{body}");
    assert_eq!(first["inputRequests"]["step1"]["method"], "elicitation/create");
    let state1 = first["requestState"].as_str().unwrap().to_owned();

    let answer1 = json!({"inputResponses": {"step1": {"action": "accept", "content": {"name": "Ada"}}},
        "requestState": state1});
    let body: Value = post_stateless(&url, &round(2, answer1.clone()))
        .await
        .json()
        .await
        .unwrap();
    let second = &body["result"];
    assert_eq!(second["resultType"], "input_required", "{body}");
    assert!(second["inputRequests"].get("step1").is_none(), "{body}");
    assert_eq!(
        second["inputRequests"]["step2"]["params"]["requestedSchema"]["required"],
        json!(["color"])
    );
    let state2 = second["requestState"].as_str().unwrap().to_owned();
    assert_ne!(state1, state2);

    // Only the sealed state remembers the name: the last round sends the colour alone.
    let answer2 = json!({"inputResponses": {"step2": {"action": "accept", "content": {"color": "blue"}}},
        "requestState": state2});
    let body: Value = post_stateless(&url, &round(3, answer2)).await.json().await.unwrap();
    assert_eq!(body["result"]["resultType"], "complete", "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "Ada likes blue");

    // Altered, foreign-key and wrong-tool states are refused with -32602 before the tool runs.
    let mut tampered = answer1.clone();
    tampered["requestState"] = json!(format!("{state1}-TAMPERED"));
    let body: Value = post_stateless(&url, &round(4, tampered)).await.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("integrity check"),
        "{body}"
    );

    let (other_url, _) = serve_fixture(Default::default()).await;
    let body: Value = post_stateless(&other_url, &round(5, answer1.clone()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["error"]["code"], -32602,
        "another server's key does not verify: {body}"
    );

    let mut wrong_tool = stateless_request(
        6,
        "tools/call",
        json!({"name": "test_input_required_result_request_state", "arguments": {}}),
        all_capabilities(),
    );
    wrong_tool["params"]["requestState"] = answer1["requestState"].clone();
    let body: Value = post_stateless(&url, &wrong_tool).await.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("issued for") && message.contains(tool), "{message}");

    let mut not_a_string = round(7, json!({}));
    not_a_string["params"]["requestState"] = json!({"round": 2, "name": "Mallory"});
    let body: Value = post_stateless(&url, &not_a_string).await.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32602, "{body}");
}

#[tokio::test]
async fn request_state_tool_completes_only_with_its_state() {
    let (url, _) = serve_fixture(Default::default()).await;
    let tool = "test_input_required_result_request_state";
    let ask = stateless_request(
        1,
        "tools/call",
        json!({"name": tool, "arguments": {}}),
        all_capabilities(),
    );
    let body: Value = post_stateless(&url, &ask).await.json().await.unwrap();
    let state = body["result"]["requestState"].as_str().unwrap().to_owned();
    let answer = json!({"confirm": {"action": "accept", "content": {"ok": true}}});

    // Answers without the state are asked again, with a state this time.
    let stateless = stateless_request(
        2,
        "tools/call",
        json!({"name": tool, "arguments": {}, "inputResponses": answer}),
        all_capabilities(),
    );
    let body: Value = post_stateless(&url, &stateless).await.json().await.unwrap();
    assert_eq!(body["result"]["resultType"], "input_required", "{body}");
    assert!(body["result"]["requestState"].is_string());

    let retry = stateless_request(
        3,
        "tools/call",
        json!({"name": tool, "arguments": {}, "inputResponses": answer, "requestState": state}),
        all_capabilities(),
    );
    let body: Value = post_stateless(&url, &retry).await.json().await.unwrap();
    assert_eq!(body["result"]["resultType"], "complete", "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "state-ok: confirmed, ok=true");
}

#[tokio::test]
async fn input_responses_are_validated_and_only_declared_capabilities_are_asked() {
    let ctx = RequestContext::new("2026-07-28");
    let server = fixture_server();
    let tool = "test_input_required_result_elicitation";
    let with = |params: Value, capabilities: Value| {
        let mut params = params;
        params["_meta"] = json!({"io.modelcontextprotocol/clientCapabilities": capabilities});
        params
    };

    // Every key is asked for at once; answers come back under the same keys.
    let reply = call(
        &server,
        &ctx,
        "tools/call",
        with(
            json!({"name": "test_input_required_result_multiple_inputs"}),
            all_capabilities(),
        ),
    )
    .await;
    let mut keys: Vec<&String> = reply["result"]["inputRequests"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["client_roots", "greeting", "user_name"], "{reply}");
    assert!(reply["result"]["requestState"].is_string());

    // A number is no elicitation result; null inputResponses is a protocol error.
    let reply = call(
        &server,
        &ctx,
        "tools/call",
        with(
            json!({"name": tool, "inputResponses": {"user_name": 12345}}),
            all_capabilities(),
        ),
    )
    .await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("inputResponses.user_name"),
        "{reply}"
    );
    let reply = call(
        &server,
        &ctx,
        "tools/call",
        with(json!({"name": tool, "inputResponses": null}), all_capabilities()),
    )
    .await;
    assert_eq!(reply["error"]["code"], -32602, "{reply}");

    // Wrong keys are asked again; extra keys are ignored.
    let reply = call(
        &server,
        &ctx,
        "tools/call",
        with(
            json!({"name": tool, "inputResponses": {"wrong": {"action": "accept"}}}),
            all_capabilities(),
        ),
    )
    .await;
    assert_eq!(
        reply["result"]["inputRequests"]["user_name"]["method"], "elicitation/create",
        "{reply}"
    );
    let reply = call(
        &server,
        &ctx,
        "tools/call",
        with(
            json!({"name": tool, "inputResponses": {"user_name": {"action": "accept", "content": {"name": "Ada"}},
                "extra": {"action": "accept", "content": {}}}}),
            all_capabilities(),
        ),
    )
    .await;
    assert_eq!(reply["result"]["content"][0]["text"], "Hello, Ada!", "{reply}");

    // Only sampling declared: no elicitation or roots question.
    let reply = call(
        &server,
        &ctx,
        "tools/call",
        with(
            json!({"name": "test_input_required_result_capabilities"}),
            json!({"sampling": {}}),
        ),
    )
    .await;
    let asked: Vec<&String> = reply["result"]["inputRequests"].as_object().unwrap().keys().collect();
    assert_eq!(asked, ["greeting"], "{reply}");

    // prompts/get asks too, and completes with messages.
    let prompt = "test_input_required_result_prompt";
    let reply = call(
        &server,
        &ctx,
        "prompts/get",
        with(json!({"name": prompt}), all_capabilities()),
    )
    .await;
    assert_eq!(
        reply["result"]["inputRequests"]["user_context"]["method"], "elicitation/create",
        "{reply}"
    );
    let reply = call(
        &server,
        &ctx,
        "prompts/get",
        with(
            json!({"name": prompt, "inputResponses": {"user_context": {"action": "accept",
                "content": {"context": "tests"}}}}),
            all_capabilities(),
        ),
    )
    .await;
    assert_eq!(reply["result"]["resultType"], "complete", "{reply}");
    assert_eq!(
        reply["result"]["messages"][0]["content"]["text"],
        "Use this context: tests"
    );
}

#[tokio::test]
async fn a_session_client_answers_both_rounds_of_the_multi_round_tool_on_one_stream() {
    let (url, _) = serve_fixture(Default::default()).await;
    let session = Session::open(&url, json!({"elicitation": {}})).await;
    let response = session
        .post(call_tool(1, "test_input_required_result_multi_round", json!({})))
        .await;
    let mut stream = SseReader {
        response,
        buf: String::new(),
    };
    for (field, value) in [("name", "Ada"), ("color", "green")] {
        let request = stream.next().await;
        assert_eq!(request["method"], "elicitation/create");
        assert_eq!(request["params"]["requestedSchema"]["required"], json!([field]));
        let answer = json!({"jsonrpc": "2.0", "id": request["id"],
            "result": {"action": "accept", "content": {field: value}}});
        assert_eq!(session.post(answer).await.status(), 202);
    }
    let result = stream.next().await;
    assert_eq!(result["result"]["content"][0]["text"], "Ada likes green", "{result}");
}

#[tokio::test]
async fn mcp_param_headers_must_mirror_the_marked_arguments() {
    let (url, _) = serve_fixture(Default::default()).await;
    let request = |id: i64, region: Option<&str>| {
        let arguments = match region {
            Some(region) => json!({"region": region}),
            None => json!({}),
        };
        stateless_request(
            id,
            "tools/call",
            json!({"name": "test_header_param", "arguments": arguments}),
            json!({}),
        )
    };
    let tools = stateless_request(0, "tools/list", json!({}), json!({}));
    let body: Value = post_stateless(&url, &tools).await.json().await.unwrap();
    let listed = body["result"]["tools"].as_array().unwrap();
    let tool = listed.iter().find(|t| t["name"] == "test_header_param").unwrap();
    assert_eq!(tool["inputSchema"]["properties"]["region"]["x-mcp-header"], "Region");

    for (id, header, body_value) in [
        (1, "=?base64?SGVsbG8=?=", "Hello"),
        (2, "eu-west", "eu-west"),
        (3, "=?base64?SGVsbG8=", "=?base64?SGVsbG8="),
        (4, "=?base64?w6lsw6g=?=", "élè"),
    ] {
        let (status, body) =
            post_stateless_with(&url, &request(id, Some(body_value)), &[("mcp-param-region", header)]).await;
        assert_eq!(status, 200, "{header}: {body}");
        assert_eq!(body["result"]["content"][0]["text"], format!("region={body_value}"));
    }
    for (id, header, body_value, expected) in [
        (5, Some("=?base64?SGVsbG8?="), Some("Hello"), "not valid"),
        (6, Some("=?base64?SGVs!!!bG8=?="), Some("Hello"), "not valid"),
        (7, Some("Bye"), Some("Hello"), "does not match"),
        (8, None, Some("Hello"), "missing required Mcp-Param-Region"),
        (9, Some("Hello"), None, "body has no argument"),
    ] {
        let extra: Vec<(&str, &str)> = header.map(|h| ("Mcp-Param-Region", h)).into_iter().collect();
        let (status, body) = post_stateless_with(&url, &request(id, body_value), &extra).await;
        assert_eq!(status, 400, "{header:?}: {body}");
        assert_eq!(body["error"]["code"], -32020, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(expected), "{body}");
    }
}
