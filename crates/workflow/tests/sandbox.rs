//! Code-node sandbox limits: time, memory, network, syntax — each a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{Map, json};
use toolplane_workflow::sandbox::{Sandbox, SandboxConfig, SandboxError};
use toolplane_workflow::{CodeLanguage, Engine, EngineConfig, RunContext, Workflow};

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig {
        timeout: Duration::from_secs(2),
        memory_bytes: 128 * 1024 * 1024,
        ..SandboxConfig::default()
    })
}

fn node_available() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn python_infinite_loop_is_killed_at_the_time_limit() {
    let started = Instant::now();
    let err = sandbox()
        .run(
            CodeLanguage::Python3,
            "def main():\n    while True:\n        pass\n",
            &Map::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err, SandboxError::Timeout { millis: 2000 });
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(err.to_string().contains("2000 ms limit"));
}

#[tokio::test]
async fn python_memory_hog_hits_the_memory_limit() {
    let code = "def main():\n    hog = []\n    while True:\n        hog.append(bytearray(10 * 1024 * 1024))\n";
    let err = sandbox()
        .run(CodeLanguage::Python3, code, &Map::new())
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Memory { limit_mib: 128, .. }), "{err:?}");
    assert!(err.to_string().contains("memory limit of 128 MiB"));
}

#[tokio::test]
async fn python_network_attempt_is_refused() {
    let code =
        "import socket\ndef main():\n    s = socket.create_connection(('1.1.1.1', 80), timeout=1)\n    return {}\n";
    let err = sandbox()
        .run(CodeLanguage::Python3, code, &Map::new())
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Network { .. }), "{err:?}");
    // Even the raw `_socket` module finds no network when namespaces are available.
    let raw = "import _socket\ndef main():\n    s = _socket.socket()\n    s.settimeout(1)\n    s.connect(('1.1.1.1', 80))\n    return {}\n";
    let sandbox = sandbox();
    if sandbox.network_namespaces().await {
        let err = sandbox.run(CodeLanguage::Python3, raw, &Map::new()).await.unwrap_err();
        assert!(matches!(err, SandboxError::Network { .. }), "{err:?}");
    } else {
        eprintln!("NOTICE: unshare -rn is unavailable; only the in-process network guard is active");
    }
}

#[tokio::test]
async fn python_syntax_and_runtime_errors_are_distinguished() {
    let err = sandbox()
        .run(CodeLanguage::Python3, "def main(:\n  return {}", &Map::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::Syntax(m) if m.contains("line 1")),
        "{err:?}"
    );
    let err = sandbox()
        .run(
            CodeLanguage::Python3,
            "def main(x):\n    return {'r': 1 / x}",
            &Map::from_iter([("x".into(), json!(0))]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::Runtime(m) if m.contains("ZeroDivisionError")),
        "{err:?}"
    );
    let err = sandbox()
        .run(CodeLanguage::Python3, "def main():\n    return [1]", &Map::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::InvalidOutput(m) if m.contains("got array")),
        "{err:?}"
    );
    // The environment is minimal.
    let ok = sandbox()
        .run(
            CodeLanguage::Python3,
            "import os\ndef main():\n    return {'keys': sorted(os.environ)}",
            &Map::new(),
        )
        .await
        .unwrap();
    assert_eq!(ok["keys"], json!(["LANG", "PATH"]));
}

#[tokio::test]
async fn javascript_limits() {
    if !node_available() {
        eprintln!("NOTICE: `node` is not installed; skipping the javascript sandbox tests");
        return;
    }
    let sb = sandbox();
    let err = sb
        .run(
            CodeLanguage::Javascript,
            "function main() { while (true) {} }",
            &Map::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Timeout { .. }), "{err:?}");
    let hog = "function main() { const a = []; while (true) { a.push(new Array(1e6).fill(1.5)); } }";
    let err = sb.run(CodeLanguage::Javascript, hog, &Map::new()).await.unwrap_err();
    assert!(
        matches!(err, SandboxError::Memory { .. } | SandboxError::Timeout { .. }),
        "{err:?}"
    );
    let err = sb
        .run(
            CodeLanguage::Javascript,
            "async function main() { await fetch('http://1.1.1.1/'); return {}; }",
            &Map::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Network { .. }), "{err:?}");
    let err = sb
        .run(CodeLanguage::Javascript, "function main( { return {} }", &Map::new())
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Syntax(_)), "{err:?}");
}

#[tokio::test]
async fn a_failing_code_node_fails_the_run_naming_the_node() {
    let text = common::dsl("python_only.yml").replace(
        "code: \"PLACEHOLDER\"",
        "code: \"def main(x):\\n    return {'result': 42}\"",
    );
    let wf = Workflow::from_dsl(&text).unwrap();
    let engine = Engine::builder(EngineConfig::default()).build();
    let err = engine.invoke(&wf, Map::new(), RunContext::default()).await.unwrap_err();
    assert_eq!(err.node_id(), Some("py"));
    assert!(
        err.to_string().contains("output \"result\" must be string, got number"),
        "{err}"
    );
}
