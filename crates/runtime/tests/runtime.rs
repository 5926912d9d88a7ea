//! The runtime against a real plugin written with `dify_plugin==0.7.4` from PyPI on Python 3.11.
//!
//! Environments and uv live in `crates/runtime/.cache/` (git-ignored) and are reused between runs. When PyPI is
//! unreachable the tests print a notice and pass without running.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use toolplane_runtime::{
    Backwards, FsStorage, InvokeRequest, PluginRuntime, RuntimeConfig, RuntimeError, SessionError,
};

fn cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache")
}

/// Whether PyPI can be reached; prints why a test is skipped otherwise.
fn online(test: &str) -> bool {
    use std::net::ToSocketAddrs;
    let reachable = ("pypi.org", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    if !reachable {
        eprintln!("NOTICE: skipping {test}: pypi.org is unreachable, so dify_plugin and uv cannot be installed");
    }
    reachable
}

fn config() -> RuntimeConfig {
    let mut config = RuntimeConfig::new(cache().join("work"));
    config.tools_path = cache().join("tools");
    config.idle_timeout = Duration::ZERO;
    config.start_timeout = Duration::from_secs(60);
    config.restart_backoff = Duration::from_millis(200);
    config
}

fn package(main_py: Option<&str>) -> Vec<u8> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/probe");
    match main_py {
        None => toolplane_plugin::package_dir(&source, 50 << 20, |_| {}).unwrap(),
        Some(main) => {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(&source, dir.path());
            std::fs::write(dir.path().join("main.py"), main).unwrap();
            toolplane_plugin::package_dir(dir.path(), 50 << 20, |_| {}).unwrap()
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn runtime(config: RuntimeConfig, storage_root: &Path) -> PluginRuntime {
    PluginRuntime::new(
        config,
        Backwards {
            storage: Some(Arc::new(FsStorage::new(storage_root))),
            tools: None,
            ..Backwards::default()
        },
    )
}

fn tool_call(mode: &str, text: &str, api_key: &str) -> InvokeRequest {
    let mut payload = Map::new();
    payload.insert("provider".into(), json!("probe"));
    payload.insert("tool".into(), json!("echo"));
    payload.insert("credentials".into(), json!({"api_key": api_key}));
    payload.insert("credential_type".into(), json!("api-key"));
    payload.insert("tool_parameters".into(), json!({"text": text, "mode": mode}));
    InvokeRequest {
        tenant_id: "tenant-1".into(),
        user_id: "u1".into(),
        access_type: "tool".into(),
        action: "invoke_tool".into(),
        payload,
        ..Default::default()
    }
}

fn validate(api_key: &str) -> InvokeRequest {
    let mut payload = Map::new();
    payload.insert("provider".into(), json!("probe"));
    payload.insert("credentials".into(), json!({"api_key": api_key}));
    InvokeRequest {
        tenant_id: "tenant-1".into(),
        user_id: "u1".into(),
        access_type: "tool".into(),
        action: "validate_tool_credentials".into(),
        payload,
        ..Default::default()
    }
}

async fn installed(config: RuntimeConfig, storage: &Path) -> (PluginRuntime, String) {
    let runtime = runtime(config, storage);
    let report = runtime.install(&package(None)).await.expect("install");
    (runtime, report.unique_identifier)
}

fn pid_of(chunks: &[Value]) -> u64 {
    chunks[1]["message"]["json_object"]["pid"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_validates_isolates_and_stores() {
    if !online("streams_validates_isolates_and_stores") {
        return;
    }
    let storage = tempfile::tempdir().unwrap();
    let (runtime, uid) = installed(config(), storage.path()).await;
    assert!(uid.starts_with("probe/probe:0.0.1@"), "{uid}");
    assert!(
        cache()
            .join("work/probe")
            .join(format!("probe-0.0.1@{}", &uid[uid.len() - 64..]))
            .join(".venv/dify/plugin.json")
            .is_file()
    );

    let chunks = runtime
        .invoke(&uid, &tool_call("basic", "hi", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let types: Vec<&str> = chunks.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["text", "json", "variable", "link"]);
    assert_eq!(chunks[0]["message"]["text"], "echo: hi");
    assert_eq!(chunks[1]["message"]["json_object"]["creds"], json!(["api_key"]));
    assert_eq!(chunks[2]["message"]["variable_value"], "HI");

    let ok = runtime
        .invoke(&uid, &validate("good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(ok, [json!({"result": true})]);
    let bad = runtime
        .invoke(&uid, &validate("nope"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    let SessionError::Plugin(e) = bad else {
        panic!("{bad:?}")
    };
    assert_eq!(
        (e.error_type.as_str(), e.message.as_str()),
        ("ToolProviderCredentialValidationError", "bad api_key")
    );

    let err = runtime
        .invoke(&uid, &tool_call("error", "x", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SessionError::Plugin(e) if e.error_type == "ValueError" && e.message == "boom: x"),
        "{err:?}"
    );

    // Storage backwards calls land in the runtime's storage, scoped by tenant and plugin id.
    let stored = runtime
        .invoke(&uid, &tool_call("storage", "zz", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(stored[0]["message"]["text"], "storage got: zz");
    let kv = FsStorage::new(storage.path());
    use toolplane_runtime::PluginStorage;
    assert_eq!(
        kv.get("tenant-1", "probe/probe", "k1").await.unwrap().as_deref(),
        Some(&b"zz"[..])
    );

    // Only the allow-listed environment reaches the plugin.
    let env = runtime
        .invoke(&uid, &tool_call("env", "", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let keys: Vec<String> = serde_json::from_value(env[0]["message"]["json_object"]["keys"].clone()).unwrap();
    for key in &keys {
        assert!(
            ["PATH", "HOME", "LANG", "INSTALL_METHOD", "LC_CTYPE", "TMPDIR"].contains(&key.as_str()),
            "leaked {key}: {keys:?}"
        );
    }
    assert!(keys.contains(&"INSTALL_METHOD".to_owned()));

    // resource.memory (256 MiB) caps the plugin's heap.
    let small = runtime
        .invoke(&uid, &tool_call("alloc", "10000000", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(small[0]["message"]["text"], "allocated 10000000");
    let big = runtime
        .invoke(&uid, &tool_call("alloc", "600000000", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(big[0]["message"]["text"], "MemoryError");

    // Concurrent sessions are multiplexed on one process.
    let calls = (0..20).map(|i| {
        let runtime = runtime.clone();
        let uid = uid.clone();
        async move {
            runtime
                .invoke(&uid, &tool_call("basic", &format!("n{i}"), "good"))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap()
        }
    });
    let results = futures::future::join_all(calls).await;
    for (i, chunks) in results.iter().enumerate() {
        assert_eq!(chunks[0]["message"]["text"], format!("echo: n{i}"));
    }
    assert_eq!(runtime.status(&uid).unwrap().starts, 1);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_stream_fails_the_session_and_the_plugin_restarts() {
    if !online("a_crash_mid_stream_fails_the_session_and_the_plugin_restarts") {
        return;
    }
    let storage = tempfile::tempdir().unwrap();
    let (runtime, uid) = installed(config(), storage.path()).await;
    let first = runtime
        .invoke(&uid, &tool_call("basic", "a", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut session = runtime.invoke(&uid, &tool_call("crash", "", "good")).await.unwrap();
    assert_eq!(
        session.next().await.unwrap().unwrap()["message"]["text"],
        "about to crash"
    );
    let started = Instant::now();
    let err = session.next().await.unwrap().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let SessionError::Runtime(message) = err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("exited unexpectedly") && message.contains("exit status: 3"),
        "{message}"
    );
    assert!(session.next().await.is_none());

    let again = runtime
        .invoke(&uid, &tool_call("basic", "b", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(again[0]["message"]["text"], "echo: b");
    assert_ne!(pid_of(&first), pid_of(&again), "a new process serves the next call");
    assert_eq!(runtime.status(&uid).unwrap().starts, 2);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_without_heartbeat_fails_to_start_in_time() {
    if !online("a_plugin_without_heartbeat_fails_to_start_in_time") {
        return;
    }
    let storage = tempfile::tempdir().unwrap();
    let mut config = config();
    config.start_timeout = Duration::from_secs(4);
    let runtime = runtime(config, storage.path());
    let main = "import sys, time\nprint('stuck before plugin.run()', file=sys.stderr, flush=True)\ntime.sleep(3600)\n";
    let bytes = package(Some(main));
    // Prepare the environment first so the timing covers the start only.
    runtime.load(&bytes).await.unwrap();
    let started = Instant::now();
    let err = runtime.install(&bytes).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(4) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    let RuntimeError::Start { reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("no heartbeat within 4 s"), "{reason}");
    assert!(
        reason.contains("stuck before plugin.run()"),
        "stderr tail missing: {reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_over_long_line_fails_only_its_session() {
    if !online("an_over_long_line_fails_only_its_session") {
        return;
    }
    let storage = tempfile::tempdir().unwrap();
    let mut small = config();
    small.max_line_bytes = 1 << 20;
    let (runtime, uid) = installed(small, storage.path()).await;
    let before = runtime
        .invoke(&uid, &tool_call("basic", "a", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let err = runtime
        .invoke(&uid, &tool_call("huge", "2000000", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    let SessionError::Runtime(message) = err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("longer than 1048576 bytes") && message.contains("kept running"),
        "{message}"
    );
    let after = runtime
        .invoke(&uid, &tool_call("basic", "b", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(pid_of(&before), pid_of(&after), "the plugin was not killed");
    runtime.shutdown().await;

    // The default limit is above the original's 5 MiB.
    let (runtime, uid) = installed(config(), storage.path()).await;
    let big = runtime
        .invoke(&uid, &tool_call("huge", "6000000", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(big[0]["message"]["text"].as_str().unwrap().len(), 6_000_000);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_slow_call_gets_its_plugin_restarted() {
    if !online("a_cancelled_slow_call_gets_its_plugin_restarted") {
        return;
    }
    let storage = tempfile::tempdir().unwrap();
    let mut config = config();
    config.cancel_grace = Duration::from_millis(500);
    let (runtime, uid) = installed(config, storage.path()).await;
    let first = runtime
        .invoke(&uid, &tool_call("basic", "a", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    // The caller gives up after one second (as the dispatch route does at PLUGIN_MAX_EXECUTION_TIMEOUT).
    let session = runtime.invoke(&uid, &tool_call("slow", "30", "good")).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(1), session.collect())
            .await
            .is_err()
    );
    // The plugin keeps working on it, has nothing else to do, and is killed after the grace period.
    let deadline = Instant::now() + Duration::from_secs(5);
    while runtime.status(&uid).unwrap().running {
        assert!(Instant::now() < deadline, "the busy plugin was not killed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = runtime
        .invoke(&uid, &tool_call("basic", "b", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_ne!(pid_of(&first), pid_of(&again));

    // A cancelled call that finishes within the grace period costs nothing.
    let session = runtime.invoke(&uid, &tool_call("slow", "0.2", "good")).await.unwrap();
    drop(session);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let last = runtime
        .invoke(&uid, &tool_call("basic", "c", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(pid_of(&again), pid_of(&last));
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_plugins_stop_and_start_again_on_demand() {
    if !online("idle_plugins_stop_and_start_again_on_demand") {
        return;
    }
    let storage = tempfile::tempdir().unwrap();
    let mut config = config();
    config.idle_timeout = Duration::from_secs(1);
    let (runtime, uid) = installed(config, storage.path()).await;
    assert!(runtime.status(&uid).unwrap().running);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = runtime.status(&uid).unwrap();
    assert!(!status.running, "{status:?}");
    let chunks = runtime
        .invoke(&uid, &tool_call("basic", "lazy", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(chunks[0]["message"]["text"], "echo: lazy");
    assert_eq!(runtime.status(&uid).unwrap().starts, 2);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_0_10_2_on_python_3_12() {
    if !online("sdk_0_10_2_on_python_3_12") {
        return;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/probe");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&source, dir.path());
    std::fs::write(dir.path().join("requirements.txt"), "dify_plugin==0.10.2\n").unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("manifest.yaml"))
        .unwrap()
        .replace("version: \"3.11\"", "version: \"3.12\"");
    std::fs::write(dir.path().join("manifest.yaml"), manifest).unwrap();
    let bytes = toolplane_plugin::package_dir(dir.path(), 50 << 20, |_| {}).unwrap();
    let storage = tempfile::tempdir().unwrap();
    let runtime = runtime(config(), storage.path());
    let report = runtime.install(&bytes).await.unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let uid = report.unique_identifier;
    let python = std::fs::read_to_string(
        cache()
            .join("work")
            .join(uid.replace(':', "-"))
            .join(".venv/pyvenv.cfg"),
    )
    .unwrap();
    assert!(python.contains("version_info = 3.12"), "{python}");
    let chunks = runtime
        .invoke(&uid, &tool_call("basic", "new", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(chunks[0]["message"]["text"], "echo: new");
    let stored = runtime
        .invoke(&uid, &tool_call("storage", "v10", "good"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(stored[0]["message"]["text"], "storage got: v10");
    let err = runtime
        .invoke(&uid, &validate("bad"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    let SessionError::Plugin(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.error_type, "ToolProviderCredentialValidationError");
    assert!(
        e.args["traceback"].as_str().unwrap().contains("Traceback"),
        "0.10.1+ sends a traceback: {:?}",
        e.args
    );
    runtime.shutdown().await;
}
