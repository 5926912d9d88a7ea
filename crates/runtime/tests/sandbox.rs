//! Landlock + seccomp confinement of a real plugin (`dify_plugin` from PyPI: 0.7.4 on Python 3.11, 0.10.2 on 3.12)
//! started through the `toolplane-plugin-sandbox` launcher of this crate.
//!
//! The "daemon's data folder" is `crates/runtime/.cache/sandbox-data` (a `plugin.db`, a `server_key`), beside the
//! working path `crates/runtime/.cache/work` shared with the other runtime tests; a fake other plugin's folder sits
//! under the working path. When PyPI is unreachable the tests print a notice and pass without running.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use toolplane_runtime::{
    Backwards, FsStorage, InvokeRequest, PluginRuntime, RuntimeConfig, RuntimeError, SandboxLauncher, SandboxMode,
};

fn cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache")
}

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

fn launcher() -> SandboxLauncher {
    SandboxLauncher {
        program: PathBuf::from(env!("CARGO_BIN_EXE_toolplane-plugin-sandbox")),
        leading_args: Vec::new(),
    }
}

fn config(mode: SandboxMode) -> RuntimeConfig {
    let mut config = RuntimeConfig::new(cache().join("work"));
    config.tools_path = cache().join("tools");
    config.idle_timeout = Duration::ZERO;
    config.start_timeout = Duration::from_secs(60);
    config.sandbox = mode;
    config.sandbox_launcher = Some(launcher());
    config
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

/// The probe plugin, on 0.10.2 / Python 3.12 when `new_sdk`.
fn package(new_sdk: bool) -> Vec<u8> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/probe");
    if !new_sdk {
        return toolplane_plugin::package_dir(&source, 50 << 20, |_| {}).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&source, dir.path());
    std::fs::write(dir.path().join("requirements.txt"), "dify_plugin==0.10.2\n").unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("manifest.yaml"))
        .unwrap()
        .replace("version: \"3.11\"", "version: \"3.12\"");
    std::fs::write(dir.path().join("manifest.yaml"), manifest).unwrap();
    toolplane_plugin::package_dir(dir.path(), 50 << 20, |_| {}).unwrap()
}

fn runtime(config: RuntimeConfig, storage: &Path) -> PluginRuntime {
    PluginRuntime::new(
        config,
        Backwards {
            storage: Some(Arc::new(FsStorage::new(storage))),
            ..Backwards::default()
        },
    )
}

fn call(mode: &str, text: &str) -> InvokeRequest {
    let mut payload = Map::new();
    payload.insert("provider".into(), json!("probe"));
    payload.insert("tool".into(), json!("echo"));
    payload.insert("credentials".into(), json!({"api_key": "good"}));
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

async fn run(runtime: &PluginRuntime, uid: &str, mode: &str, text: &str) -> Vec<Value> {
    runtime
        .invoke(uid, &call(mode, text))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
}

async fn text(runtime: &PluginRuntime, uid: &str, mode: &str, arg: &str) -> String {
    run(runtime, uid, mode, arg).await[0]["message"]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A data folder with the daemon's secrets, and another plugin's folder under the working path.
fn daemon_files() -> (PathBuf, PathBuf) {
    let data = cache().join("sandbox-data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("plugin.db"), "SQLite format 3\0").unwrap();
    std::fs::write(data.join("server_key"), "secret").unwrap();
    let other = cache().join("work/someone/other-0.0.1@0000");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("main.py"), "print('other')").unwrap();
    (data, other)
}

async fn confined_plugin_checks(new_sdk: bool) {
    let (data, other) = daemon_files();
    let storage = tempfile::tempdir().unwrap();
    // Strict: this kernel offers Landlock ABI 7 and seccomp filters, so anything short of full confinement fails.
    let runtime = runtime(config(SandboxMode::Strict), storage.path());
    let uid = runtime
        .install(&package(new_sdk))
        .await
        .expect("install")
        .unique_identifier;
    let plugin_dir = cache().join("work").join(uid.replace(':', "-"));

    // A normal call, a backwards storage call and credential handling still work.
    let chunks = run(&runtime, &uid, "basic", "confined").await;
    assert_eq!(chunks[0]["message"]["text"], "echo: confined");
    assert_eq!(chunks[1]["message"]["json_object"]["creds"], json!(["api_key"]));
    assert_eq!(text(&runtime, &uid, "storage", "kv").await, "storage got: kv");

    // The daemon's data folder, another plugin's folder and the daemon's environment are unreachable.
    for secret in [data.join("plugin.db"), data.join("server_key"), other.join("main.py")] {
        let got = text(&runtime, &uid, "read", secret.to_str().unwrap()).await;
        assert!(got.starts_with("PermissionError"), "{}: {got}", secret.display());
    }
    let environ = format!("/proc/{}/environ", std::process::id());
    let got = text(&runtime, &uid, "read", &environ).await;
    assert!(got.starts_with("PermissionError"), "{environ}: {got}");
    // The plugin's own files and the system's stay readable.
    let got = text(
        &runtime,
        &uid,
        "read",
        plugin_dir.join("manifest.yaml").to_str().unwrap(),
    )
    .await;
    assert!(got.starts_with("read "), "{got}");
    assert!(text(&runtime, &uid, "read", "/etc/hosts").await.starts_with("read "));

    // Writing works in the working folder only (TMPDIR lives there); not in the data folder nor /tmp.
    let _ = std::fs::remove_file(plugin_dir.join("written.txt"));
    assert_eq!(text(&runtime, &uid, "write", "written.txt").await, "written");
    assert_eq!(
        std::fs::read_to_string(plugin_dir.join("written.txt")).unwrap(),
        "written by the plugin"
    );
    let outside = [
        data.join("evil.txt"),
        other.join("evil.txt"),
        PathBuf::from(format!("/tmp/toolplane-sandbox-{}.txt", std::process::id())),
    ];
    for path in &outside {
        let got = text(&runtime, &uid, "write", path.to_str().unwrap()).await;
        assert!(got.starts_with("PermissionError"), "{}: {got}", path.display());
        assert!(!path.exists(), "{} was written", path.display());
    }

    // seccomp: ptrace, unshare and setns fail with EPERM (setns would say EBADF unconfined).
    let report = run(&runtime, &uid, "syscalls", "").await;
    let report = &report[0]["message"]["json_object"];
    assert_eq!(report["ptrace"], "EPERM", "{report}");
    assert_eq!(report["unshare"], "EPERM", "{report}");
    assert_eq!(report["setns"], "EPERM", "{report}");
    assert_eq!(report["semaphore"], "ok", "multiprocessing still works: {report}");
    assert!(
        report["tmpdir"]
            .as_str()
            .unwrap()
            .starts_with(plugin_dir.join(".tmp").to_str().unwrap()),
        "{report}"
    );
    assert_eq!(
        report["ppid"],
        std::process::id(),
        "the launcher execs, it does not stay as a parent"
    );

    // The allow-listed environment and the memory limit (resource.memory = 256 MiB) still hold.
    let env = run(&runtime, &uid, "env", "").await;
    let keys: Vec<String> = serde_json::from_value(env[0]["message"]["json_object"]["keys"].clone()).unwrap();
    for key in &keys {
        assert!(
            ["PATH", "HOME", "LANG", "INSTALL_METHOD", "LC_CTYPE", "TMPDIR"].contains(&key.as_str()),
            "leaked {key}: {keys:?}"
        );
    }
    assert_eq!(text(&runtime, &uid, "alloc", "10000000").await, "allocated 10000000");
    assert_eq!(text(&runtime, &uid, "alloc", "600000000").await, "MemoryError");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confined_plugin_on_sdk_0_7_4_reaches_only_its_own_folder() {
    if !online("a_confined_plugin_on_sdk_0_7_4_reaches_only_its_own_folder") {
        return;
    }
    confined_plugin_checks(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confined_plugin_on_sdk_0_10_2_reaches_only_its_own_folder() {
    if !online("a_confined_plugin_on_sdk_0_10_2_reaches_only_its_own_folder") {
        return;
    }
    confined_plugin_checks(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_sandbox_the_same_plugin_reaches_the_data_folder() {
    // The control experiment: proves the denials above come from the sandbox, not from the test's set-up.
    if !online("without_the_sandbox_the_same_plugin_reaches_the_data_folder") {
        return;
    }
    let (data, _) = daemon_files();
    let storage = tempfile::tempdir().unwrap();
    let runtime = runtime(config(SandboxMode::Off), storage.path());
    let uid = runtime.install(&package(false)).await.unwrap().unique_identifier;
    let got = text(&runtime, &uid, "read", data.join("server_key").to_str().unwrap()).await;
    assert_eq!(got, "read 6 bytes");
    let environ = format!("/proc/{}/environ", std::process::id());
    assert!(text(&runtime, &uid, "read", &environ).await.starts_with("read "));
    let path = cache().join("sandbox-data/unconfined.txt");
    assert_eq!(text(&runtime, &uid, "write", path.to_str().unwrap()).await, "written");
    std::fs::remove_file(path).unwrap();
    // Only setns: unconfined, ptrace(PTRACE_TRACEME) and unshare would succeed and change the plugin process.
    let report = run(&runtime, &uid, "syscalls", "setns").await;
    assert_eq!(report[0]["message"]["json_object"]["setns"], "EBADF");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_launcher_is_a_clear_start_error() {
    if !online("a_missing_launcher_is_a_clear_start_error") {
        return;
    }
    let storage = tempfile::tempdir().unwrap();
    let mut without = config(SandboxMode::BestEffort);
    without.sandbox_launcher = None;
    let err = runtime(without, storage.path())
        .install(&package(false))
        .await
        .unwrap_err();
    let RuntimeError::Start { reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        reason.contains("no sandbox launcher") && reason.contains("PLUGIN_SANDBOX=off"),
        "{reason}"
    );

    let mut gone = config(SandboxMode::Strict);
    gone.sandbox_launcher = Some(SandboxLauncher {
        program: cache().join("no-such-launcher"),
        leading_args: Vec::new(),
    });
    let err = runtime(gone, storage.path())
        .install(&package(false))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-launcher does not exist"), "{err}");
}
