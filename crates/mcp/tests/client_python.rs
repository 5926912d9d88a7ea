//! The MCP client against servers built with the Python `mcp` SDK: stdio, streamable HTTP (both eras) and SSE.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use toolplane_mcp::protocol::Content;
use toolplane_mcp::{
    CallOptions, ClientOptions, EraPreference, McpClient, McpError, StdioCommand, TransportHint, TransportKind,
};

use common::{PyServer, loopback_client, python};

const ALL_TOOLS: [&str; 8] = [
    "echo",
    "add",
    "json_text",
    "media",
    "fail",
    "slow",
    "complex_args",
    "change_tools",
];

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// Lists (over three pages), calls, checks tool errors, a timeout and a cancellation.
async fn exercise(client: &McpClient, server: Option<&PyServer>, tag: &str) {
    let tools = client.list_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ALL_TOOLS, "all pages listed in order");
    let first_page = client.list_tools_page(None).await.unwrap();
    assert_eq!(first_page.tools.len(), 3);
    assert_eq!(first_page.next_cursor.as_deref(), Some("3"));

    let echo = client
        .call_tool("echo", args(json!({"text": "hello"})), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(echo.content, vec![Content::text("hello")]);
    assert!(!echo.is_error());

    let add = client
        .call_tool("add", args(json!({"a": 2, "b": 3})), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(add.structured_content, Some(json!({"sum": 5, "note": "added"})));

    let fail = client
        .call_tool("fail", args(json!({"reason": "testing"})), CallOptions::default())
        .await
        .unwrap();
    assert!(fail.is_error());
    assert!(matches!(&fail.content[0], Content::Text { text } if text.contains("failed because testing")));

    // Timeout.
    let started = std::time::Instant::now();
    let err = client
        .call_tool(
            "slow",
            args(json!({"seconds": 30, "tag": format!("{tag}-timeout")})),
            CallOptions {
                timeout: Some(Duration::from_millis(500)),
                ..CallOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Cancellation by the caller reaches the server.
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let cancel_tag = format!("{tag}-cancel");
    let err = client
        .call_tool(
            "slow",
            args(json!({"seconds": 30, "tag": cancel_tag})),
            CallOptions {
                cancel,
                ..CallOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::Cancelled { .. }), "{err}");
    if let Some(server) = server {
        assert!(server.saw_cancel(&cancel_tag).await, "server saw the cancellation");
    }

    // The connection still works afterwards.
    let again = client
        .call_tool("echo", args(json!({"text": "still here"})), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(again.content, vec![Content::text("still here")]);
}

#[tokio::test]
async fn streamable_http_stateless_era() {
    let Some(py) = python() else { return };
    let server = PyServer::start(&py, "streamable-http").await;
    let client = McpClient::connect_http(loopback_client(), &server.url("/mcp"), ClientOptions::default())
        .await
        .unwrap();
    let details = client.server().await;
    assert_eq!(details.protocol_version, "2026-07-28");
    assert_eq!(details.transport, TransportKind::StreamableHttp);
    assert_eq!(details.server_info.as_ref().unwrap().name, "py-test-server");
    exercise(&client, Some(&server), "stateless").await;

    // list_changed arrives on the subscriptions/listen stream.
    let mut notes = client.notifications();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .call_tool("change_tools", Map::new(), CallOptions::default())
        .await
        .unwrap();
    let note = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = notes.recv().await.unwrap();
            if n.method == "notifications/tools/list_changed" {
                return n;
            }
        }
    })
    .await
    .expect("list_changed notification");
    assert!(note.id.is_none());
    client.close().await;
}

#[tokio::test]
async fn streamable_http_session_era() {
    let Some(py) = python() else { return };
    let server = PyServer::start(&py, "streamable-http").await;
    let options = ClientOptions {
        era: EraPreference::Session,
        ..ClientOptions::default()
    };
    let client = McpClient::connect_http(loopback_client(), &server.url("/mcp"), options)
        .await
        .unwrap();
    let details = client.server().await;
    assert_eq!(details.protocol_version, "2025-11-25");
    exercise(&client, Some(&server), "session").await;
    client.ping().await.unwrap();
    client.close().await;
}

#[tokio::test]
async fn legacy_sse_transport() {
    let Some(py) = python() else { return };
    let server = PyServer::start(&py, "sse").await;
    let client = McpClient::connect_http(loopback_client(), &server.url("/sse"), ClientOptions::default())
        .await
        .unwrap();
    let details = client.server().await;
    assert_eq!(details.transport, TransportKind::LegacySse);
    exercise(&client, Some(&server), "sse").await;
    client.close().await;

    // Forcing streamable HTTP on an SSE-only server fails clearly.
    let options = ClientOptions {
        transport: TransportHint::StreamableHttp,
        ..ClientOptions::default()
    };
    let err = McpClient::connect_http(loopback_client(), &server.url("/sse"), options)
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::Http { .. } | McpError::Rpc(_)), "{err}");
}

#[tokio::test]
async fn stdio_transport() {
    let Some(py) = python() else { return };
    let markers = tempfile::tempdir().unwrap();
    let command = StdioCommand {
        command: py.to_string_lossy().into_owned(),
        args: vec![
            common::server_script().to_string_lossy().into_owned(),
            "stdio".into(),
            "0".into(),
            markers.path().to_string_lossy().into_owned(),
        ],
        ..StdioCommand::default()
    };
    let client = McpClient::connect_stdio(command, ClientOptions::default())
        .await
        .unwrap();
    let details = client.server().await;
    assert_eq!(details.transport, TransportKind::Stdio);
    exercise(&client, None, "stdio").await;
    assert!(
        common::wait_for_file(&markers.path().join("cancelled-stdio-cancel")).await,
        "notifications/cancelled reached the stdio server"
    );
    client.close().await;
}

#[tokio::test]
async fn refused_and_missing_servers_fail_clearly() {
    // The SSRF guard applies: a client without the loopback exception cannot reach 127.0.0.1.
    let strict = toolplane_net::SafeClient::new(toolplane_net::NetConfig::default()).unwrap();
    let err = McpClient::connect_http(strict, "http://127.0.0.1:9/mcp", ClientOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::Net(ref e) if e.is_blocked()), "{err}");

    let err = McpClient::connect_http(loopback_client(), "ftp://x/mcp", ClientOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::Config(_)), "{err}");

    let err = McpClient::connect_stdio(
        StdioCommand {
            command: "/nonexistent/mcp-server".into(),
            ..StdioCommand::default()
        },
        ClientOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, McpError::Spawn { .. }), "{err}");
}

#[tokio::test]
async fn provider_lists_from_cache_and_maps_results() {
    use std::sync::Arc;
    use toolplane_core::{InvokeOptions, MessagePayload, ToolError, ToolParameterType, ToolProvider, ToolRuntime};
    use toolplane_mcp::{DefaultConnector, McpEndpoint, McpProviderConfig, McpToolProvider};

    let Some(py) = python() else { return };
    let server = PyServer::start(&py, "streamable-http").await;
    let connector = Arc::new(DefaultConnector::new(loopback_client()));
    let url = server.url("/mcp");
    let live = McpClient::connect_http(loopback_client(), &url, ClientOptions::default())
        .await
        .unwrap();
    let tools = live.list_tools().await.unwrap();
    let cached = McpProviderConfig::tools_json(&tools);
    let config = McpProviderConfig {
        id: "rec-1".into(),
        name: "Python test".into(),
        server_identifier: "py-test".into(),
        endpoint: McpEndpoint::Http { url },
        headers: Default::default(),
        timeout: Duration::from_secs(10),
        sse_read_timeout: Duration::from_secs(2),
        icon: String::new(),
        author: "tester".into(),
        tools: McpProviderConfig::parse_tools_json(&cached).unwrap(),
    };
    let provider = McpToolProvider::new(config, connector);
    assert_eq!(provider.id(), "py-test");
    assert_eq!(provider.provider_type(), toolplane_core::ToolProviderType::Mcp);
    assert_eq!(provider.tools().await.unwrap().len(), 8);

    let run = |name: &'static str, params: Value| {
        let provider = &provider;
        async move {
            let tool = provider.tool(name).await.unwrap().unwrap();
            let stream =
                toolplane_core::invoke(tool, ToolRuntime::default(), args(params), InvokeOptions::default()).await?;
            toolplane_core::collect_messages(stream).await
        }
    };

    let complex = provider.tool("complex_args").await.unwrap().unwrap();
    let items = complex.entity().parameters.iter().find(|p| p.name == "items").unwrap();
    assert_eq!(items.kind, ToolParameterType::Array);
    assert!(items.input_schema.is_some());
    let choice = complex.entity().parameters.iter().find(|p| p.name == "choice").unwrap();
    assert_eq!(choice.kind, ToolParameterType::Any);
    let out = run(
        "complex_args",
        json!({"items": [{"name": "a", "qty": 2}, {"name": "b"}], "options": {"z": 1, "y": 2}, "choice": 7}),
    )
    .await
    .unwrap();
    assert_eq!(
        out[0].as_text(),
        Some("2 items, options=['y', 'z'], choice=7, flag=False")
    );

    let out = run("add", json!({"a": 20, "b": 22})).await.unwrap();
    let variables: Vec<(String, Value)> = out
        .iter()
        .filter_map(|m| match &m.payload {
            MessagePayload::Variable(v) => Some((v.variable_name.clone(), v.variable_value.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        variables,
        vec![("sum".into(), json!(42)), ("note".into(), json!("added"))]
    );

    let out = run("json_text", json!({"kind": "list"})).await.unwrap();
    assert_eq!(out.iter().map(|m| m.kind()).collect::<Vec<_>>(), ["json", "json"]);

    let out = run("media", json!({})).await.unwrap();
    let kinds: Vec<_> = out.iter().map(|m| m.kind()).collect();
    assert_eq!(kinds, ["blob", "blob", "text", "blob", "link"]);
    assert_eq!(out[1].meta.as_ref().unwrap()["mime_type"], "audio/wav");
    match &out[0].payload {
        MessagePayload::Blob(b) => assert_eq!(b.blob, b"\x89PNG fake"),
        other => panic!("{other:?}"),
    }

    let err = run("fail", json!({"reason": "nope"})).await.unwrap_err();
    assert!(
        matches!(&err, ToolError::Invoke(m) if m.contains("failed because nope")),
        "{err}"
    );

    // sse_read_timeout bounds the call.
    let err = run("slow", json!({"seconds": 30, "tag": "provider"}))
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::Timeout { .. }), "{err}");
}

/// Session era: a server that adds a tool announces it on the GET stream; the client reports the notification
/// and the next `tools/list` shows the tool.
#[tokio::test]
async fn session_era_list_changed_on_the_get_stream() {
    let Some(py) = python() else { return };
    let port = common::free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/growing_server.py");
    let _child = tokio::process::Command::new(&py)
        .arg(script)
        .arg("streamable-http")
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "growing server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let options = ClientOptions {
        era: EraPreference::Session,
        ..ClientOptions::default()
    };
    let url = format!("http://127.0.0.1:{port}/mcp");
    let client = McpClient::connect_http(loopback_client(), &url, options).await.unwrap();
    let mut notes = client.notifications();
    client
        .call_tool("grow", args(json!({"name": "later"})), CallOptions::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if notes.recv().await.unwrap().method == "notifications/tools/list_changed" {
                return;
            }
        }
    })
    .await
    .expect("list_changed notification");
    let names: Vec<String> = client.list_tools().await.unwrap().into_iter().map(|t| t.name).collect();
    assert!(names.contains(&"later".to_owned()), "{names:?}");
    client.close().await;
}
