//! Remote debugging end to end: `POST /plugin/{tenant}/debugging/key`, the TCP listener, and a real `dify_plugin`
//! 0.10.2 process on Python 3.12 started from its source folder with `INSTALL_METHOD=remote` (its venv made by uv
//! through the runtime's environment builder, cached in `crates/runtime/.cache/`). Raw TCP clients cover the
//! refusals (bad key, limits, invalid registrations) and the heartbeat timeout. Without PyPI the SDK test prints a
//! notice and passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use toolplane_core::{MessagePayload, ProviderSource, ToolRuntime};
use toolplane_daemon::*;
use toolplane_runtime::{Backwards, FsStorage, PluginRuntime, RuntimeConfig};
use toolplane_store::{BlobConfig, BlobStore};

const KEY: &str = "debugging-test-key";
/// Dify's tenant ids are UUIDs; the tenant id stands in for the plugin's author.
const TENANT: &str = "0b9c3f0e-5d6a-4c1e-9f3b-7a2d8e4c6b10";

fn runtime_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/.cache")
}

fn online() -> bool {
    use std::net::ToSocketAddrs;
    let ok = ("pypi.org", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    if !ok {
        eprintln!("NOTICE: skipping the remote SDK test: pypi.org is unreachable, so dify_plugin cannot be installed");
    }
    ok
}

struct Fixture {
    base: String,
    debug_addr: SocketAddr,
    client: reqwest::Client,
    state: DaemonState,
    /// Stops the remote-debugging listener.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    debugging: tokio::task::JoinHandle<Result<(), DaemonError>>,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(configure: impl FnOnce(&mut RemoteDebugConfig)) -> Self {
        Self::start_on(None, configure).await
    }

    /// [`Fixture::start`] on the given plugin database (SQLite in the fixture's folder by default).
    async fn start_on(db_url: Option<String>, configure: impl FnOnce(&mut RemoteDebugConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_url = db_url.unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("plugin.db").display()));
        let mut config = DaemonConfig::new(KEY, db_url, dir.path().join("storage"));
        config.verifier.force_verifying_signature = false;
        config.remote.listen = "127.0.0.1:0".parse().unwrap();
        config.remote.heartbeat_timeout = Duration::from_secs(3);
        config.remote.handshake_timeout = Duration::from_secs(2);
        configure(&mut config.remote);
        let mut runtime_config = RuntimeConfig::new(runtime_cache().join("work"));
        runtime_config.tools_path = runtime_cache().join("tools");
        runtime_config.max_execution_timeout = Duration::from_secs(60);
        let runtime = PluginRuntime::new(
            runtime_config,
            Backwards {
                storage: Some(Arc::new(FsStorage::new(dir.path().join("kv")))),
                tools: None,
                ..Backwards::default()
            },
        );
        let blobs = BlobStore::from_config(&BlobConfig::Local {
            root: dir.path().join("storage"),
        })
        .unwrap();
        let state = DaemonState::open_with_runtime(config, blobs, runtime).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve_daemon(listener, state.clone(), std::future::pending()));
        let debug = bind_remote_debugging(&state).await.unwrap();
        let debug_addr = debug.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let debugging = tokio::spawn(serve_remote_debugging(debug, state.clone(), async {
            let _ = stopped.await;
        }));
        Self {
            base,
            debug_addr,
            client: reqwest::Client::new(),
            state,
            stop: Some(stop),
            debugging,
            dir,
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.client
            .post(format!("{}/plugin/{TENANT}{path}", self.base))
            .header("X-Api-Key", KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}/plugin/{TENANT}{path}", self.base))
            .header("X-Api-Key", KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn key(&self) -> String {
        let answer = self.post("/debugging/key", json!({})).await;
        assert_eq!(answer["code"], 0, "{answer}");
        answer["data"]["key"].as_str().unwrap().to_owned()
    }

    /// The tenant's installations (`management/list`).
    async fn installations(&self) -> Vec<Value> {
        let list = self.get("/management/list?page=1&page_size=100").await;
        list["data"]["list"].as_array().unwrap().clone()
    }

    /// Waits until the listing has `count` installations.
    async fn wait_installations(&self, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let list = self.installations().await;
            if list.len() == count {
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} installations, have {list:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The SSE frames of one dispatch call, as Dify reads them.
    async fn dispatch(&self, plugin_id: &str, route: &str, data: Value) -> Vec<Value> {
        let response = self.dispatch_request(plugin_id, route, data).send().await.unwrap();
        assert_eq!(response.status(), 200);
        sse_frames(&response.text().await.unwrap())
    }

    fn dispatch_request(&self, plugin_id: &str, route: &str, data: Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/plugin/{TENANT}/dispatch/{route}", self.base))
            .header("X-Api-Key", KEY)
            .header("X-Plugin-ID", plugin_id)
            .json(&json!({"user_id": "user-1", "conversation_id": null, "app_id": null, "message_id": null, "data": data}))
    }
}

fn sse_frames(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l.strip_prefix("data: ").expect("data: prefix")).unwrap())
        .collect()
}

/// (outer error_type, inner message) of an error frame.
fn error_of(frame: &Value) -> (String, String) {
    assert_eq!(frame["code"], -500, "{frame}");
    let inner: Value = serde_json::from_str(frame["message"].as_str().unwrap()).unwrap();
    (
        inner["error_type"].as_str().unwrap().to_owned(),
        inner["message"].as_str().unwrap().to_owned(),
    )
}

fn invoke_data(mode: &str, text: &str) -> Value {
    json!({
        "provider": "probe",
        "tool": "echo",
        "credentials": {"api_key": "good"},
        "credential_type": "api-key",
        "tool_parameters": {"text": text, "mode": mode},
    })
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

/// The probe plugin's source folder for SDK 0.10.2 on Python 3.12, and the Python of a venv made for it by uv.
async fn probe_source(dir: &Path) -> (PathBuf, PathBuf) {
    let source = dir.join("probe");
    std::fs::create_dir_all(&source).unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/data/probe"),
        &source,
    );
    std::fs::write(source.join("requirements.txt"), "dify_plugin==0.10.2\n").unwrap();
    let manifest = std::fs::read_to_string(source.join("manifest.yaml"))
        .unwrap()
        .replace("version: \"3.11\"", "version: \"3.12\"");
    std::fs::write(source.join("manifest.yaml"), manifest).unwrap();
    let bytes = toolplane_plugin::package_dir(&source, 50 << 20, |_| {}).unwrap();
    let package = toolplane_plugin::decode(&bytes, &toolplane_plugin::DecodeLimits::default()).unwrap();
    let mut config = RuntimeConfig::new(runtime_cache().join("work"));
    config.tools_path = runtime_cache().join("tools");
    let prepared = toolplane_runtime::env::Environments::new(config)
        .prepare(&package)
        .await
        .unwrap();
    (source, prepared.python)
}

/// `python -m main` in remote mode from the plugin's source folder; output goes to `<source>/plugin.log`.
fn start_remote_plugin(python: &Path, source: &Path, addr: SocketAddr, key: &str) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(source.join("plugin.log"))
        .unwrap();
    tokio::process::Command::new(python)
        .args(["-m", "main"])
        .current_dir(source)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
        .env("INSTALL_METHOD", "remote")
        .env("REMOTE_INSTALL_URL", addr.to_string())
        .env("REMOTE_INSTALL_KEY", key)
        .env("HEARTBEAT_INTERVAL", "0.5")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_sdk_plugin_debugs_remotely() {
    if !online() {
        return;
    }
    let fx = Fixture::start(|_| {}).await;
    let key = fx.key().await;
    assert_eq!(fx.key().await, key, "one key per tenant, renewed");
    assert!(uuid::Uuid::parse_str(&key).is_ok(), "{key}");
    let (source, python) = probe_source(fx.dir.path()).await;
    let log = || std::fs::read_to_string(source.join("plugin.log")).unwrap_or_default();

    // Registration: the plugin is installed for the tenant, runtime type remote, tenant id as the author.
    let mut plugin = start_remote_plugin(&python, &source, fx.debug_addr, &key);
    let list = {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let list = fx.installations().await;
            if !list.is_empty() {
                break list;
            }
            assert!(
                Instant::now() < deadline,
                "the plugin did not register; its log:\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let installation = &list[0];
    let plugin_id = format!("{TENANT}/probe");
    assert_eq!(installation["runtime_type"], "remote", "{installation}");
    assert_eq!(installation["plugin_id"], plugin_id.as_str());
    let uid = installation["plugin_unique_identifier"].as_str().unwrap().to_owned();
    assert!(uid.starts_with(&format!("{plugin_id}:0.0.1@")), "{uid}");
    let checksum = installation["checksum"].as_str().unwrap();
    assert!(
        checksum.len() == 64 && checksum.bytes().all(|b| b.is_ascii_hexdigit()),
        "{checksum}"
    );
    let declaration = &installation["declaration"];
    assert_eq!(declaration["category"], "tool");
    assert_eq!(declaration["tool"]["identity"]["name"], "probe");
    assert_eq!(declaration["tool"]["tools"][0]["identity"]["name"], "echo");
    // The icon was sent as an asset chunk and is served from the media bucket like an installed plugin's.
    let icon = declaration["icon"].as_str().unwrap();
    assert!(icon.ends_with(".svg") && icon.len() == 68, "{icon}");
    let svg = fx
        .client
        .get(format!("{}/plugin/{TENANT}/asset/{icon}", fx.base))
        .header("X-Api-Key", KEY)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let original = std::fs::read(source.join("_assets/icon.svg")).unwrap();
    assert_eq!(svg.as_ref(), original.as_slice());
    let tools = fx.get("/management/tools?page=1&page_size=10").await;
    assert_eq!(tools["data"][0]["provider"], "probe", "{tools}");
    assert_eq!(fx.state.connected_remote_plugins(), vec![uid.clone()]);

    // A streaming tool through Dify's dispatch route, over the TCP connection.
    let frames = fx.dispatch(&plugin_id, "tool/invoke", invoke_data("basic", "hi")).await;
    assert!(frames.iter().all(|f| f["code"] == 0), "{frames:?}");
    let types: Vec<&str> = frames.iter().map(|f| f["data"]["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["text", "json", "variable", "link"]);
    assert_eq!(frames[0]["data"]["message"]["text"], "echo: hi");
    // Sessions are multiplexed on the one connection.
    let concurrent = futures::future::join_all(
        (0..8).map(|i| fx.dispatch(&plugin_id, "tool/invoke", invoke_data("basic", &format!("c{i}")))),
    )
    .await;
    for (i, frames) in concurrent.iter().enumerate() {
        assert_eq!(frames[0]["data"]["message"]["text"], format!("echo: c{i}"));
    }
    // A backwards storage call, answered on the same connection.
    let stored = fx
        .dispatch(&plugin_id, "tool/invoke", invoke_data("storage", "zz"))
        .await;
    assert_eq!(stored[0]["data"]["message"]["text"], "storage got: zz", "{stored:?}");
    // A plugin-side error keeps Dify's shape.
    let bad = fx
        .dispatch(
            &plugin_id,
            "tool/validate_credentials",
            json!({"provider": "probe", "credentials": {"api_key": "x"}}),
        )
        .await;
    let (error_type, message) = error_of(&bad[0]);
    assert_eq!(error_type, "PluginInvokeError");
    assert!(message.contains("ToolProviderCredentialValidationError"), "{message}");

    // toolplane's catalog lists the debugged plugin's tools and runs them.
    let source_of_tools = PluginProviderSource::new(fx.state.clone());
    let providers = source_of_tools.list(TENANT).await.unwrap();
    let provider_id = format!("{plugin_id}/probe");
    let provider = providers
        .iter()
        .find(|p| p.id() == provider_id)
        .unwrap_or_else(|| panic!("no {provider_id} in the catalog"));
    let tool = provider.tool("echo").await.unwrap().expect("tool");
    let mut parameters = Map::new();
    parameters.insert("text".into(), json!("catalog"));
    parameters.insert("mode".into(), json!("basic"));
    let runtime = ToolRuntime {
        tenant_id: TENANT.into(),
        user_id: Some("user-1".into()),
        ..Default::default()
    };
    let messages: Vec<_> = tool
        .invoke(runtime, parameters, Default::default())
        .await
        .unwrap()
        .collect()
        .await;
    let first = messages[0].as_ref().unwrap();
    assert!(
        matches!(&first.payload, MessagePayload::Text(t) if t.text == "echo: catalog"),
        "{first:?}"
    );

    // Killing the plugin mid-session: the session fails at once with a clear error, the installation goes.
    let response = fx
        .dispatch_request(&plugin_id, "tool/invoke", invoke_data("slow", "30"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    plugin.kill().await.unwrap();
    let killed = Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(5), response.text())
        .await
        .expect("the in-flight session did not fail in time")
        .unwrap();
    assert!(killed.elapsed() < Duration::from_secs(3));
    let failed = sse_frames(&body);
    let (error_type, message) = error_of(failed.last().unwrap());
    assert_eq!(error_type, "ConnectionClosedError");
    assert!(message.contains("connection closed"), "{message}");
    fx.wait_installations(0, Duration::from_secs(5)).await;
    assert!(fx.state.connected_remote_plugins().is_empty());
    let gone = fx.dispatch(&plugin_id, "tool/invoke", invoke_data("basic", "x")).await;
    assert_eq!(gone[0]["code"], -404, "{gone:?}");
    assert!(
        gone[0]["message"].as_str().unwrap().contains("PluginNotFoundError"),
        "{gone:?}"
    );
    assert!(source_of_tools.list(TENANT).await.unwrap().is_empty());

    // The SDK registers again after a restart: same identifier, working again.
    let mut plugin = start_remote_plugin(&python, &source, fx.debug_addr, &key);
    let list = fx.wait_installations(1, Duration::from_secs(60)).await;
    assert_eq!(list[0]["plugin_unique_identifier"], uid.as_str());
    let frames = fx
        .dispatch(&plugin_id, "tool/invoke", invoke_data("basic", "again"))
        .await;
    assert_eq!(frames[0]["data"]["message"]["text"], "echo: again", "{frames:?}");
    let stored = fx
        .dispatch(&plugin_id, "tool/invoke", invoke_data("storage", "yy"))
        .await;
    assert_eq!(stored[0]["data"]["message"]["text"], "storage got: yy", "{stored:?}");
    plugin.kill().await.unwrap();
    fx.wait_installations(0, Duration::from_secs(5)).await;
}

// ---- raw TCP clients ------------------------------------------------------------------------------------------

fn manifest_json(name: &str) -> Value {
    json!({
        "version": "0.0.1", "type": "plugin", "author": "raw", "name": name,
        "label": {"en_US": "Raw"}, "description": {"en_US": "Raw test plugin"}, "icon": "icon.svg",
        "resource": {"memory": 1048576, "permission": {"storage": {"enabled": true, "size": 1024}}},
        "plugins": {"tools": ["provider/raw.yaml"]},
        "meta": {"version": "0.0.1", "arch": ["amd64"], "runner": {"language": "python", "version": "3.12", "entrypoint": "main"}},
        "created_at": "2025-01-01T00:00:00Z",
    })
}

fn tool_json(name: &str) -> Value {
    json!([{
        "identity": {"author": "raw", "name": name, "label": {"en_US": "Raw"}, "description": {"en_US": "Raw"}, "icon": "icon.svg", "tags": []},
        "credentials_schema": [],
        "tools": [{
            "identity": {"author": "raw", "name": "t", "label": {"en_US": "T"}},
            "description": {"human": {"en_US": "T"}, "llm": "t"},
            "parameters": [],
        }],
    }])
}

fn message(kind: &str, data: Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({"type": kind, "data": data})).unwrap();
    line.extend_from_slice(b"\n\n");
    line
}

/// A registration as the SDK writes it (handshake with a single `\n`, the rest with `\n\n`).
fn registration(key: &str, name: &str) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&json!({"type": "handshake", "data": {"key": key}})).unwrap();
    bytes.push(b'\n');
    bytes.extend(message("manifest_declaration", manifest_json(name)));
    bytes.extend(message("tool_declaration", tool_json(name)));
    bytes.extend(message(
        "asset_chunk",
        json!({"filename": "icon.svg", "data": "PHN2Zy8+", "end": true}),
    ));
    bytes.extend(message("end", json!({})));
    bytes
}

/// Sends `bytes` and reads what the daemon answers until it closes the connection.
async fn answer_to(addr: SocketAddr, bytes: &[u8]) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let bytes = bytes.to_vec();
    // The daemon may close before reading everything; what matters is the line it sent.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        write
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut answer))
        .await
        .expect("the daemon did not close the connection");
    drop(writer.await);
    String::from_utf8(answer).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_and_bad_registrations_are_refused_with_a_line() {
    let fx = Fixture::start(|_| {}).await;
    let key = fx.key().await;

    // An unknown key, with the rest of a registration already sent behind it.
    let answer = answer_to(fx.debug_addr, &registration("not-a-key", "raw")).await;
    assert_eq!(answer, "handshake failed, invalid key\n");

    // Registration before the handshake.
    let answer = answer_to(fx.debug_addr, &message("manifest_declaration", manifest_json("raw"))).await;
    assert_eq!(answer, "handshake failed, registration message before handshake\n");

    // No handshake at all within the handshake timeout (2 s here).
    let started = Instant::now();
    let answer = answer_to(fx.debug_addr, b"").await;
    assert!(
        answer.starts_with("handshake failed, no handshake within 2 s"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // An invalid manifest: the plugin crate's validation names the field.
    let mut manifest = manifest_json("raw");
    manifest["version"] = json!("not-a-version");
    let mut bytes = serde_json::to_vec(&json!({"type": "handshake", "data": {"key": key}})).unwrap();
    bytes.push(b'\n');
    bytes.extend(message("manifest_declaration", manifest));
    bytes.extend(message("tool_declaration", tool_json("raw")));
    bytes.extend(message("end", json!({})));
    let answer = answer_to(fx.debug_addr, &bytes).await;
    assert!(
        answer.starts_with("register failed, invalid manifest detected:"),
        "{answer}"
    );
    assert!(answer.contains("version"), "{answer}");

    // `end` without any declaration.
    let mut bytes = serde_json::to_vec(&json!({"type": "handshake", "data": {"key": key}})).unwrap();
    bytes.push(b'\n');
    bytes.extend(message("manifest_declaration", manifest_json("raw")));
    bytes.extend(message("end", json!({})));
    let answer = answer_to(fx.debug_addr, &bytes).await;
    assert!(answer.starts_with("no registration transferred"), "{answer}");

    // Assets above 50 MiB in all.
    let mut bytes = serde_json::to_vec(&json!({"type": "handshake", "data": {"key": key}})).unwrap();
    bytes.push(b'\n');
    let chunk = "A".repeat(8 * 1024 * 1024);
    for _ in 0..9 {
        bytes.extend(message(
            "asset_chunk",
            json!({"filename": "big.bin", "data": chunk, "end": false}),
        ));
    }
    let answer = answer_to(fx.debug_addr, &bytes).await;
    assert_eq!(answer, "assets too large, at most 50MB\n");

    assert!(fx.installations().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_plugin_registers_and_is_dropped_without_heartbeats() {
    let fx = Fixture::start(|_| {}).await;
    let key = fx.key().await;
    let mut stream = TcpStream::connect(fx.debug_addr).await.unwrap();
    // Split writes: the frame reader joins them.
    let bytes = registration(&key, "raw");
    for piece in bytes.chunks(7) {
        stream.write_all(piece).await.unwrap();
    }
    let list = fx.wait_installations(1, Duration::from_secs(5)).await;
    assert_eq!(list[0]["plugin_id"], format!("{TENANT}/raw").as_str());
    assert_eq!(list[0]["runtime_type"], "remote");
    // A second connection of the same plugin is refused while the first is connected.
    let answer = answer_to(fx.debug_addr, &registration(&key, "raw")).await;
    assert!(answer.contains("already connected"), "{answer}");
    // A request arrives on the connection with the stdio envelope.
    let dispatch = tokio::spawn({
        let request = fx.dispatch_request(
            &format!("{TENANT}/raw"),
            "tool/invoke",
            json!({"provider": "raw", "tool": "t"}),
        );
        async move { request.send().await.unwrap().text().await.unwrap() }
    });
    let mut reader = tokio::io::BufReader::new(&mut stream);
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line)
        .await
        .unwrap();
    let request: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(request["event"], "request");
    assert_eq!(request["data"]["action"], "invoke_tool");
    assert_eq!(request["data"]["user_id"], "user-1");
    // Silence: after the heartbeat timeout (3 s here) the daemon closes the connection, fails the session and
    // removes the installation.
    let started = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut rest))
        .await
        .expect("the silent plugin was not disconnected")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    let body = dispatch.await.unwrap();
    let (error_type, message) = error_of(sse_frames(&body).last().unwrap());
    assert_eq!(error_type, "ConnectionClosedError");
    assert!(message.contains("no heartbeat"), "{message}");
    fx.wait_installations(0, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn uninstalling_a_remote_plugin_closes_its_connection() {
    let fx = Fixture::start(|remote| remote.heartbeat_timeout = Duration::from_secs(60)).await;
    let key = fx.key().await;
    let mut stream = TcpStream::connect(fx.debug_addr).await.unwrap();
    stream.write_all(&registration(&key, "raw")).await.unwrap();
    let list = fx.wait_installations(1, Duration::from_secs(5)).await;
    let installation_id = list[0]["id"].as_str().unwrap().to_owned();
    let uid = list[0]["plugin_unique_identifier"].as_str().unwrap().to_owned();

    // A call in flight when the plugin is uninstalled: it reaches the plugin, which never answers.
    let dispatch = tokio::spawn({
        let request = fx.dispatch_request(
            &format!("{TENANT}/raw"),
            "tool/invoke",
            json!({"provider": "raw", "tool": "t"}),
        );
        async move { request.send().await.unwrap().text().await.unwrap() }
    });
    let mut reader = tokio::io::BufReader::new(&mut stream);
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line)
        .await
        .unwrap();
    let request: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(request["data"]["action"], "invoke_tool");

    let answer = fx
        .post(
            "/management/uninstall",
            json!({"plugin_installation_id": installation_id}),
        )
        .await;
    assert_eq!(answer["data"], true, "{answer}");

    // The plugin reads why, then the end of the stream (the heartbeat timeout is 60 s: this is the uninstall).
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_to_string(&mut rest))
        .await
        .expect("uninstalling did not close the plugin's connection")
        .unwrap();
    assert_eq!(
        rest,
        format!("plugin {TENANT}/raw was uninstalled from this workspace\n")
    );
    let body = dispatch.await.unwrap();
    let (error_type, message) = error_of(sse_frames(&body).last().unwrap());
    assert_eq!(error_type, "ConnectionClosedError");
    assert!(message.contains("uninstalled"), "{message}");

    // Nothing is left: no installation, no plugin to dispatch to, no declaration.
    assert!(fx.installations().await.is_empty());
    assert!(fx.state.connected_remote_plugins().is_empty());
    let exists = fx
        .get(&format!("/management/fetch/identifier?plugin_unique_identifier={uid}"))
        .await;
    assert_eq!(exists["data"], false, "{exists}");
    let after = fx
        .dispatch_request(
            &format!("{TENANT}/raw"),
            "tool/invoke",
            json!({"provider": "raw", "tool": "t"}),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(after.contains("PluginNotFoundError"), "{after}");

    // The plugin can register again.
    let mut again = TcpStream::connect(fx.debug_addr).await.unwrap();
    again.write_all(&registration(&key, "raw")).await.unwrap();
    fx.wait_installations(1, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_limits_are_enforced() {
    let fx = Fixture::start(|remote| {
        remote.max_single_tenant_conn = 2;
        remote.heartbeat_timeout = Duration::from_secs(30);
    })
    .await;
    let key = fx.key().await;
    let heartbeat = b"{\"event\":\"heartbeat\",\"session_id\":null,\"data\":{}}\n\n";
    let mut first = TcpStream::connect(fx.debug_addr).await.unwrap();
    first.write_all(&registration(&key, "one")).await.unwrap();
    let mut second = TcpStream::connect(fx.debug_addr).await.unwrap();
    second.write_all(&registration(&key, "two")).await.unwrap();
    fx.wait_installations(2, Duration::from_secs(5)).await;
    first.write_all(heartbeat).await.unwrap();
    second.write_all(heartbeat).await.unwrap();

    // The tenant's third connection is refused, naming the limit and the setting.
    let answer = answer_to(fx.debug_addr, &registration(&key, "three")).await;
    assert!(answer.contains("at most 2"), "{answer}");
    assert!(
        answer.contains("PLUGIN_REMOTE_INSTALLING_MAX_SINGLE_TENANT_CONN"),
        "{answer}"
    );
    assert_eq!(fx.installations().await.len(), 2);

    // When one disconnects, its place is free again.
    drop(first);
    fx.wait_installations(1, Duration::from_secs(5)).await;
    let mut third = TcpStream::connect(fx.debug_addr).await.unwrap();
    third.write_all(&registration(&key, "three")).await.unwrap();
    let list = fx.wait_installations(2, Duration::from_secs(5)).await;
    let mut names: Vec<&str> = list.iter().map(|i| i["plugin_id"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, [format!("{TENANT}/three"), format!("{TENANT}/two")]);
    drop((second, third));
    fx.wait_installations(0, Duration::from_secs(5)).await;

    // PLUGIN_REMOTE_INSTALLING_MAX_CONN counts every open connection.
    let fx = Fixture::start(|remote| remote.max_conn = 1).await;
    let _open = TcpStream::connect(fx.debug_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = answer_to(fx.debug_addr, &registration("any", "x")).await;
    assert!(answer.starts_with("server is busy now"), "{answer}");
    assert!(answer.contains("PLUGIN_REMOTE_INSTALLING_MAX_CONN"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn debugging_keys_follow_the_setting() {
    let fx = Fixture::start(|remote| remote.enabled = false).await;
    let answer = fx.post("/debugging/key", json!({})).await;
    assert_eq!(answer["code"], -400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("PLUGIN_REMOTE_INSTALLING_ENABLED")
    );
    let fx = Fixture::start(|_| {}).await;
    let a = fx.key().await;
    // Another tenant gets another key; the key route needs the daemon key.
    let other: Value = fx
        .client
        .post(format!("{}/plugin/other-tenant/debugging/key", fx.base))
        .header("X-Api-Key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(other["data"]["key"].as_str().unwrap(), a);
    let unauthorized = fx
        .client
        .post(format!("{}/plugin/{TENANT}/debugging/key", fx.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_and_restart_remove_remote_installations() {
    let mut fx = Fixture::start(|remote| remote.heartbeat_timeout = Duration::from_secs(30)).await;
    let key = fx.key().await;
    let mut plugin = TcpStream::connect(fx.debug_addr).await.unwrap();
    plugin.write_all(&registration(&key, "raw")).await.unwrap();
    fx.wait_installations(1, Duration::from_secs(5)).await;

    // A daemon started on the same database (a restart after a crash) removes installations it has no connection
    // for.
    let config = {
        let mut config = fx.state.config().clone();
        config.remote.listen = "127.0.0.1:0".parse().unwrap();
        config
    };
    let blobs = BlobStore::from_config(&BlobConfig::Local {
        root: fx.dir.path().join("storage"),
    })
    .unwrap();
    let runtime = PluginRuntime::new(RuntimeConfig::new(fx.dir.path().join("work2")), Backwards::default());
    let restarted = DaemonState::open_with_runtime(config, blobs, runtime).await.unwrap();
    let listener = bind_remote_debugging(&restarted).await.unwrap();
    let (stop_restarted, stopped) = tokio::sync::oneshot::channel::<()>();
    let restarted_task = tokio::spawn(serve_remote_debugging(listener, restarted.clone(), async {
        let _ = stopped.await;
    }));
    fx.wait_installations(0, Duration::from_secs(5)).await;
    stop_restarted.send(()).unwrap();
    restarted_task.await.unwrap().unwrap();
    drop(plugin);

    // Stopping the listener closes every debugging connection with a line and removes its installation.
    let mut plugin = TcpStream::connect(fx.debug_addr).await.unwrap();
    plugin.write_all(&registration(&key, "raw")).await.unwrap();
    fx.wait_installations(1, Duration::from_secs(5)).await;
    fx.stop.take().unwrap().send(()).unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), plugin.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, "the plugin daemon is shutting down\n");
    (&mut fx.debugging).await.unwrap().unwrap();
    assert!(fx.installations().await.is_empty());
    assert!(
        TcpStream::connect(fx.debug_addr).await.is_err(),
        "the listener is closed"
    );
}

/// The `plugins` row of a remote installation records it as the original does, on PostgreSQL too (when
/// `TOOLPLANE_TEST_POSTGRES_URL` is set).
#[tokio::test(flavor = "multi_thread")]
async fn remote_installations_on_each_database() {
    async fn check(fx: Fixture) {
        let key = fx.key().await;
        let mut plugin = TcpStream::connect(fx.debug_addr).await.unwrap();
        plugin.write_all(&registration(&key, "raw")).await.unwrap();
        let list = fx.wait_installations(1, Duration::from_secs(5)).await;
        let uid = list[0]["plugin_unique_identifier"].as_str().unwrap();
        let manifest = fx
            .get(&format!("/management/fetch/manifest?plugin_unique_identifier={uid}"))
            .await;
        assert_eq!(manifest["data"]["name"], "raw", "{manifest}");
        assert_eq!(manifest["data"]["tool"]["identity"]["name"], "raw", "{manifest}");
        let exists = fx
            .get(&format!("/management/fetch/identifier?plugin_unique_identifier={uid}"))
            .await;
        assert_eq!(exists["data"], true, "{exists}");
        plugin.shutdown().await.unwrap();
        drop(plugin);
        fx.wait_installations(0, Duration::from_secs(5)).await;
        // Nothing of the debugging session is left: no plugin row, no declaration.
        let exists = fx
            .get(&format!("/management/fetch/identifier?plugin_unique_identifier={uid}"))
            .await;
        assert_eq!(exists["data"], false, "{exists}");
        let manifest = fx
            .get(&format!("/management/fetch/manifest?plugin_unique_identifier={uid}"))
            .await;
        assert_ne!(manifest["code"], 0, "{manifest}");
    }
    check(Fixture::start(|_| {}).await).await;

    let Some(base) = std::env::var("TOOLPLANE_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!("skipping PostgreSQL: set TOOLPLANE_TEST_POSTGRES_URL to run this test on PostgreSQL too");
        return;
    };
    use sqlx::{Connection, Executor};
    let schema = format!("d_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        check(Fixture::start_on(Some(url), |_| {}).await).await;
    }))
    .await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
