//! toolplane's MCP server: driven by the Python `mcp` SDK's client, by toolplane's own client, by raw HTTP
//! requests for bad input, and over the stdio loop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use toolplane_mcp::protocol::Content;
use toolplane_mcp::{
    CallOptions, ClientOptions, EraPreference, HttpOptions, McpClient, McpError, StaticResolver, mcp_router,
    serve_stdio,
};
use toolplane_net::SafeClient;

use common::demo;

const KEY: &str = "k3y-secret";

async fn start(options: HttpOptions) -> String {
    let resolver = StaticResolver::new()
        .with_server("open", demo::server(), None)
        .with_server("locked", demo::echo_server(), Some(KEY.into()));
    let router = mcp_router(Arc::new(resolver), options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[tokio::test]
async fn python_client_in_both_eras() {
    let Some(py) = common::python() else { return };
    let base = start(HttpOptions::default()).await;
    let url = format!("{base}/mcp/server/open/mcp");
    for (mode, version) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        let output = tokio::process::Command::new(&py)
            .arg(common::crate_dir().join("tests/python/mcp_client.py"))
            .arg(&url)
            .arg(mode)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "python client ({mode}) failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(seen["protocol_version"], version, "{mode}");
        assert_eq!(seen["server_name"], "demo-server");
        let names: Vec<_> = seen["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].clone())
            .collect();
        assert_eq!(names, ["echo", "rich", "slow", "fail"]);
        let echo_schema = &seen["tools"][0]["inputSchema"];
        assert_eq!(echo_schema["required"], json!(["text"]));
        assert!(
            echo_schema["properties"].get("prefix").is_none(),
            "form parameters are fixed, not exposed"
        );
        assert_eq!(seen["tools"][2]["outputSchema"]["type"], "object");

        assert_eq!(seen["echo"]["content"], json!([{"type": "text", "text": "> hi"}]));
        let rich = &seen["rich"];
        let types: Vec<_> = rich["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].clone())
            .collect();
        assert_eq!(types, ["text", "image", "resource_link", "text"]);
        assert_eq!(rich["content"][1]["mimeType"], "image/png");
        assert_eq!(rich["content"][2]["name"], "report.pdf");
        assert_eq!(
            rich["structuredContent"],
            json!({"city": "Berlin", "json": [{"answer": 42}]})
        );
        assert_eq!(seen["fail"]["isError"], true);
        assert!(
            seen["fail"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("failed on purpose")
        );
        assert_eq!(
            seen["missing"]["isError"], true,
            "argument validation errors are tool errors"
        );
        assert!(seen["missing"]["content"][0]["text"].as_str().unwrap().contains("text"));
    }
}

#[tokio::test]
async fn toolplane_client_against_toolplane_server_with_cancellation() {
    let base = start(HttpOptions::default()).await;
    let url = format!("{base}/mcp/server/open/mcp");
    for era in [EraPreference::Auto, EraPreference::Session] {
        let options = ClientOptions {
            era,
            ..ClientOptions::default()
        };
        let client = McpClient::connect_http(common::loopback_client(), &url, options)
            .await
            .unwrap();
        let expected = if era == EraPreference::Auto {
            "2026-07-28"
        } else {
            "2025-11-25"
        };
        assert_eq!(client.server().await.protocol_version, expected);
        assert_eq!(client.list_tools().await.unwrap().len(), 4);
        let echo = client
            .call_tool(
                "echo",
                args(json!({"text": "x", "prefix": "ignored"})),
                CallOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            echo.content,
            vec![Content::text("> x")],
            "the client cannot override form parameters"
        );
        let unknown = client
            .call_tool("nope", Map::new(), CallOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(unknown, McpError::Rpc(ref e) if e.code == -32602), "{unknown}");

        let before = demo::cancellations();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            trigger.cancel();
        });
        let err = client
            .call_tool(
                "slow",
                Map::new(),
                CallOptions {
                    cancel,
                    ..CallOptions::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, McpError::Cancelled { .. }));
        assert!(
            demo::cancelled_since(before).await,
            "the tool saw the cancellation ({era:?})"
        );
        client.close().await;
    }
}

struct Raw {
    http: SafeClient,
    url: String,
}

impl Raw {
    async fn post(&self, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> (u16, Option<String>, Value) {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.body(body.into()).send().await.unwrap();
        let status = response.status().as_u16();
        let session = response
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = self.http.read_body(response).await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, session, value)
    }

    async fn initialize(&self) -> String {
        let (status, session, body) = self
            .post(
                &[],
                json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}).to_string(),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["result"]["protocolVersion"], "2025-06-18");
        session.unwrap()
    }
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let base = start(HttpOptions {
        session_idle_timeout: Duration::from_millis(400),
        max_message_bytes: 64 * 1024,
        ..HttpOptions::default()
    })
    .await;
    let raw = Raw {
        http: common::loopback_client(),
        url: format!("{base}/mcp/server/open/mcp"),
    };

    let (status, _, body) = raw.post(&[], "{not json").await;
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32700)));
    let (status, _, body) = raw.post(&[], r#"{"jsonrpc":"2.0","id":1}"#).await;
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32600)));
    let (status, _, body) = raw.post(&[], r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).await;
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32600)));
    assert_eq!(body["id"], 1);

    // Too large.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(100_000)
    );
    let (status, _, body) = raw.post(&[], huge).await;
    assert_eq!(status, 413);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than 65536 bytes")
    );

    // Versions.
    let (status, _, body) = raw
        .post(
            &[("mcp-protocol-version", "1999-01-01")],
            r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32022)));
    assert_eq!(body["error"]["data"]["supported"][4], "2026-07-28");
    let (status, _, body) = raw
        .post(
            &[("mcp-method", "tools/list")],
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2030-01-01"}}}"#,
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32022)));
    let (status, _, body) = raw.post(&[], r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#).await;
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32600)));
    assert!(body["error"]["message"].as_str().unwrap().contains("initialize"));

    // Stateless header rules and method-not-found.
    let stateless = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let v2026 = ("mcp-protocol-version", "2026-07-28");
    let (status, _, body) = raw.post(&[], stateless).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "no version header"
    );
    let (status, _, body) = raw.post(&[v2026], stateless).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "no Mcp-Method"
    );
    let (status, _, body) = raw
        .post(&[v2026, ("mcp-method", "tools/call"), ("mcp-name", "other")], stateless)
        .await;
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32020)));
    let no_caps = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let (status, _, body) = raw.post(&[v2026, ("mcp-method", "tools/list")], no_caps).await;
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(-32602)));
    let ping = r#"{"jsonrpc":"2.0","id":5,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let (status, _, body) = raw.post(&[v2026, ("mcp-method", "ping")], ping).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (404, Some(-32601)),
        "ping is gone in 2026-07-28"
    );
    let (status, _, body) = raw
        .post(&[v2026, ("mcp-method", "tools/call"), ("mcp-name", "echo")], stateless)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["content"][0]["text"], "> a");
    assert_eq!(body["result"]["resultType"], "complete");
    let resources = r#"{"jsonrpc":"2.0","id":6,"method":"resources/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let (status, _, body) = raw.post(&[v2026, ("mcp-method", "resources/list")], resources).await;
    assert_eq!((status, body["error"]["code"].as_i64()), (404, Some(-32601)));

    // Session era: unknown method, unknown tool, expiry, DELETE, GET.
    let session = raw.initialize().await;
    let with_session = [("mcp-session-id", session.as_str())];
    let (status, _, _) = raw
        .post(
            &with_session,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .await;
    assert_eq!(status, 202);
    let (status, _, body) = raw
        .post(&with_session, r#"{"jsonrpc":"2.0","id":7,"method":"nope/nope"}"#)
        .await;
    assert_eq!((status, body["error"]["code"].as_i64()), (200, Some(-32601)));
    let (_, _, body) = raw
        .post(
            &with_session,
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"ghost"}}"#,
        )
        .await;
    assert_eq!(body["error"]["code"], -32602);
    let (status, _, body) = raw
        .post(
            &[
                ("mcp-session-id", session.as_str()),
                ("mcp-protocol-version", "2025-11-25"),
            ],
            r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#,
        )
        .await;
    // Another supported session-era version on the session is served under the negotiated one (the transport spec
    // refuses only invalid or unsupported versions; conformance 0.1.16 sends such a header).
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], 9);
    let (status, _, body) = raw
        .post(
            &[
                ("mcp-session-id", session.as_str()),
                ("mcp-protocol-version", "2031-01-01"),
            ],
            r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = raw
        .post(
            &with_session,
            r#"[{"jsonrpc":"2.0","id":10,"method":"ping"},{"jsonrpc":"2.0","id":11,"method":"tools/list"}]"#,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);

    let get = raw
        .http
        .get(&raw.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 200);
    assert!(
        get.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(get);
    let get = raw.http.get(&raw.url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);

    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _, body) = raw
        .post(&with_session, r#"{"jsonrpc":"2.0","id":12,"method":"ping"}"#)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (404, Some(-32600)),
        "expired session"
    );
    let (status, _, _) = raw
        .post(
            &[("mcp-session-id", "made-up")],
            r#"{"jsonrpc":"2.0","id":13,"method":"ping"}"#,
        )
        .await;
    assert_eq!(status, 404);

    let session = raw.initialize().await;
    let delete = raw
        .http
        .delete(&raw.url)
        .header("mcp-session-id", session.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status().as_u16(), 200);
    let (status, _, _) = raw
        .post(
            &[("mcp-session-id", session.as_str())],
            r#"{"jsonrpc":"2.0","id":14,"method":"ping"}"#,
        )
        .await;
    assert_eq!(status, 404, "deleted session");

    // Unknown server.
    let other = Raw {
        http: raw.http.clone(),
        url: format!("{base}/mcp/server/ghost/mcp"),
    };
    let (status, _, _) = other.post(&[], r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bearer_keys_and_protected_resource_metadata() {
    let base = start(HttpOptions {
        authorization_servers: vec!["https://auth.example.com".into()],
        ..HttpOptions::default()
    })
    .await;
    let http = common::loopback_client();
    let url = format!("{base}/mcp/server/locked/mcp");

    let err = McpClient::connect_http(http.clone(), &url, ClientOptions::default())
        .await
        .unwrap_err();
    let McpError::Unauthorized {
        status: 401,
        challenge: Some(challenge),
    } = err
    else {
        panic!("expected 401, got {err}");
    };
    let metadata_url = challenge.resource_metadata.unwrap();
    assert_eq!(
        metadata_url,
        format!("{base}/.well-known/oauth-protected-resource/mcp/server/locked/mcp")
    );
    let metadata: Value = http.get(&metadata_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(metadata["resource"], url);
    assert_eq!(metadata["authorization_servers"][0], "https://auth.example.com");
    let open_metadata = http
        .get(format!(
            "{base}/.well-known/oauth-protected-resource/mcp/server/open/mcp"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(open_metadata.status().as_u16(), 404);

    let mut wrong = ClientOptions::default();
    wrong.headers.insert("Authorization".into(), "Bearer nope".into());
    assert!(McpClient::connect_http(http.clone(), &url, wrong).await.is_err());

    let mut right = ClientOptions::default();
    right.headers.insert("Authorization".into(), format!("Bearer {KEY}"));
    let client = McpClient::connect_http(http, &url, right).await.unwrap();
    let tools = client.list_tools().await.unwrap();
    assert_eq!(tools.len(), 1, "the locked server exposes only echo");
    let out = client
        .call_tool("echo", args(json!({"text": "secure"})), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(out.content, vec![Content::text("secure")]);
}

#[tokio::test]
async fn stdio_loop_serves_and_cancels() {
    let (client_side, server_side) = tokio::io::duplex(1 << 20);
    let (server_read, server_write) = tokio::io::split(server_side);
    let serving = tokio::spawn(serve_stdio(demo::server(), server_read, server_write));
    let (client_read, mut client_write) = tokio::io::split(client_side);
    let mut lines = BufReader::new(client_read).lines();

    let mut send = async |line: &str| {
        client_write.write_all(line.as_bytes()).await.unwrap();
        client_write.write_all(b"\n").await.unwrap();
    };
    send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#).await;
    send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
    send("garbage").await;
    send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow"}}"#).await;
    send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"via stdio"}}}"#)
        .await;
    send(r#"{"jsonrpc":"2.0","id":4,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#).await;

    let mut responses = Vec::new();
    for _ in 0..4 {
        let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        responses.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let by_id = |id: Value| responses.iter().find(|r| r["id"] == id).cloned().unwrap();
    assert_eq!(by_id(json!(1))["result"]["protocolVersion"], "2024-11-05");
    assert_eq!(by_id(Value::Null)["error"]["code"], -32700);
    assert_eq!(by_id(json!(3))["result"]["content"][0]["text"], "> via stdio");
    assert_eq!(by_id(json!(4))["result"]["resultType"], "complete");

    let before = demo::cancellations();
    send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"test"}}"#).await;
    assert!(demo::cancelled_since(before).await, "the slow call was cancelled");
    client_write.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
