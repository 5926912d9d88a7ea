//! The `code` provider's `simple_code` tool against real interpreters, through the shared workflow sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use toolplane_core::{InvokeOptions, ToolError, ToolProvider, ToolRuntime, collect_messages};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_workflow::sandbox::{Sandbox, SandboxConfig};

fn code_provider() -> Arc<dyn ToolProvider> {
    let sandbox = Sandbox::new(SandboxConfig {
        timeout: Duration::from_secs(3),
        memory_bytes: 256 * 1024 * 1024,
        ..SandboxConfig::default()
    });
    let client = SafeClient::new(NetConfig::default()).unwrap();
    toolplane_builtin::providers_with_sandbox(client, Arc::new(sandbox))
        .into_iter()
        .find(|p| p.id() == "code")
        .unwrap()
}

async fn run(language: &str, code: &str) -> Result<String, ToolError> {
    let tool = code_provider().tool("simple_code").await.unwrap().unwrap();
    let params: Map<String, Value> = json!({"language": language, "code": code}).as_object().unwrap().clone();
    let stream = toolplane_core::invoke(tool, ToolRuntime::default(), params, InvokeOptions::default()).await?;
    let messages = collect_messages(stream).await?;
    assert_eq!(messages.len(), 1);
    Ok(messages[0].as_text().unwrap().to_owned())
}

fn node_available() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn python_prints_become_the_result() {
    let out = run(
        "python3",
        "import math\nfor i in range(3):\n    print(i * i)\nprint(math.sqrt(16))",
    )
    .await
    .unwrap();
    assert_eq!(out, "0\n1\n4\n4.0\n");
}

#[tokio::test]
async fn javascript_prints_become_the_result() {
    if !node_available() {
        eprintln!("skipping javascript_prints_become_the_result: node is not installed");
        return;
    }
    let out = run(
        "javascript",
        "const xs = [1, 2, 3];\nconsole.log('sum', xs.reduce((a, b) => a + b));\nconsole.log({a: 1});",
    )
    .await
    .unwrap();
    assert_eq!(out, "sum 6\n{\"a\":1}\n");
}

#[tokio::test]
async fn errors_are_clear() {
    let err = run("python3", "raise ValueError('boom')").await.unwrap_err();
    assert!(
        matches!(&err, ToolError::Invoke(m) if m.contains("ValueError: boom")),
        "{err}"
    );

    let err = run("ruby", "puts 1").await.unwrap_err();
    assert!(matches!(&err, ToolError::ParameterValidation(_)), "{err}");
}

#[tokio::test]
async fn an_infinite_loop_is_killed_at_the_time_limit() {
    let started = std::time::Instant::now();
    let err = run("python3", "while True:\n    pass").await.unwrap_err();
    assert!(
        matches!(&err, ToolError::Invoke(m) if m.contains("CODE_EXECUTION_TIMEOUT")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_memory_hog_hits_the_memory_limit() {
    let err = run("python3", "data = bytearray(1024 * 1024 * 1024)\nprint(len(data))")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ToolError::Invoke(m) if m.contains("CODE_EXECUTION_MEMORY_LIMIT")),
        "{err}"
    );
}

#[tokio::test]
async fn network_access_is_refused() {
    let err = run(
        "python3",
        "import socket\ns = socket.create_connection(('1.1.1.1', 80), timeout=2)\nprint('connected')",
    )
    .await
    .unwrap_err();
    assert!(matches!(&err, ToolError::Invoke(m) if m.contains("network")), "{err}");
    if node_available() {
        let err = run("javascript", "fetch('http://1.1.1.1/')").await.unwrap_err();
        assert!(matches!(&err, ToolError::Invoke(m) if m.contains("network")), "{err}");
    }
}
