//! Plugin endpoints end to end against a real endpoint plugin (`tests/data/endpoint_plugin`, `dify_plugin==0.10.2`
//! on Python 3.12) run by `toolplane-runtime`: the management routes as Dify's API server calls them
//! (`api/core/plugin/impl/endpoint.py`), the public `/e/{hook_id}/…` entry point driven by a plain HTTP client, and
//! the `/v2/invoke` routes with a package that is uploaded but not installed; also the install task's warning when a
//! newer Python stands in for the one `meta.runner.version` asks for. Environments are shared with the
//! runtime crate's tests in `crates/runtime/.cache/`; without PyPI the test prints a notice and passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use toolplane_daemon::*;
use toolplane_runtime::{Backwards, FsStorage, PluginRuntime, RuntimeConfig};
use toolplane_store::{BlobConfig, BlobStore};

const KEY: &str = "endpoint-test-key";
const TENANT: &str = "tenant-e";
const SECRET: &str = "sk-endpoint-secret-1234";

fn runtime_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/.cache")
}

fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/endpoint_plugin")
}

fn online() -> bool {
    use std::net::ToSocketAddrs;
    let ok = ("pypi.org", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    if !ok {
        eprintln!("NOTICE: skipping the endpoint test: pypi.org is unreachable, so dify_plugin cannot be installed");
    }
    ok
}

struct Fixture {
    base: String,
    client: reqwest::Client,
    state: DaemonState,
    db_url: String,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut RuntimeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("plugin.db").display());
        let mut config = DaemonConfig::new(KEY, db_url.clone(), dir.path().join("storage"));
        config.verifier.force_verifying_signature = false;
        let mut runtime_config = RuntimeConfig::new(runtime_cache().join("work"));
        runtime_config.tools_path = runtime_cache().join("tools");
        runtime_config.max_execution_timeout = Duration::from_secs(4);
        configure(&mut runtime_config);
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
        Self {
            base,
            client: reqwest::Client::new(),
            state,
            db_url,
            _dir: dir,
        }
    }

    async fn upload(&self, package: Vec<u8>) -> String {
        let form = reqwest::multipart::Form::new()
            .part(
                "dify_pkg",
                reqwest::multipart::Part::bytes(package).file_name("hooks.difypkg"),
            )
            .text("verify_signature", "false");
        let uploaded: Value = self
            .client
            .post(format!(
                "{}/plugin/{TENANT}/management/install/upload/package",
                self.base
            ))
            .header("X-Api-Key", KEY)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        uploaded["data"]["unique_identifier"]
            .as_str()
            .unwrap_or_else(|| panic!("upload failed: {uploaded}"))
            .to_owned()
    }

    async fn install(&self, uid: &str) {
        self.install_task(uid).await;
    }

    /// Installs and waits for the task; the finished task.
    async fn install_task(&self, uid: &str) -> Value {
        let started = self
            .post(
                "management/install/identifiers",
                json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": [{}]}),
            )
            .await;
        let task_id = started["data"]["task_id"]
            .as_str()
            .unwrap_or_else(|| panic!("install did not start: {started}"))
            .to_owned();
        for _ in 0..12_000 {
            let task = self.get(&format!("management/install/tasks/{task_id}")).await;
            match task["data"]["status"].as_str() {
                Some("success") => return task,
                Some("failed") => panic!("install failed: {task}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("install did not finish")
    }

    /// A management POST as Dify sends it; the envelope.
    async fn post(&self, path: &str, body: Value) -> Value {
        self.client
            .post(format!("{}/plugin/{TENANT}/{path}", self.base))
            .header("X-Api-Key", KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn get(&self, path_and_query: &str) -> Value {
        self.client
            .get(format!("{}/plugin/{TENANT}/{path_and_query}", self.base))
            .header("X-Api-Key", KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn endpoints(&self) -> Vec<Value> {
        let listed = self.get("endpoint/list?page=1&page_size=100").await;
        assert_eq!(listed["code"], 0, "{listed}");
        listed["data"].as_array().unwrap().clone()
    }

    fn hook(&self, hook_id: &str, rest: &str) -> String {
        format!("{}/e/{hook_id}{rest}", self.base)
    }
}

/// The `message` of an error envelope, decoded.
fn error_of(envelope: &Value) -> (String, String) {
    let inner: Value = serde_json::from_str(envelope["message"].as_str().unwrap()).unwrap();
    (
        inner["error_type"].as_str().unwrap().to_owned(),
        inner["message"].as_str().unwrap().to_owned(),
    )
}

fn package_with_version(version: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&plugin_dir(), dir.path());
    let manifest = std::fs::read_to_string(dir.path().join("manifest.yaml"))
        .unwrap()
        .replacen("version: 0.0.1", &format!("version: {version}"), 1);
    std::fs::write(dir.path().join("manifest.yaml"), manifest).unwrap();
    toolplane_plugin::package_dir(dir.path(), 50 << 20, |_| {}).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_end_to_end_with_a_real_plugin() {
    if !online() {
        return;
    }
    let f = Fixture::start().await;
    let package = toolplane_plugin::package_dir(&plugin_dir(), 50 << 20, |_| {}).unwrap();
    let uid = f.upload(package).await;
    f.install(&uid).await;

    // ---- setup: validation names what is missing, then an endpoint with a secret ----
    let missing = f
        .post(
            "endpoint/setup",
            json!({"plugin_unique_identifier": uid, "user_id": "u1", "name": "main", "settings": {"greeting": "hi"}}),
        )
        .await;
    assert_eq!(missing["code"], -400, "{missing}");
    let (kind, message) = error_of(&missing);
    assert_eq!(kind, "PluginDaemonBadRequestError");
    assert!(message.contains("api_key"), "{message}");
    let unknown = f
        .post(
            "endpoint/setup",
            json!({"plugin_unique_identifier": "toolplane_tests/nope:0.0.1@0000000000000000000000000000000000000000000000000000000000000000",
                   "user_id": "u1", "name": "main", "settings": {}}),
        )
        .await;
    assert_eq!(error_of(&unknown).0, "PluginNotFoundError", "{unknown}");
    let no_name = f
        .post(
            "endpoint/setup",
            json!({"plugin_unique_identifier": uid, "user_id": "u1", "settings": {"api_key": SECRET}}),
        )
        .await;
    assert!(error_of(&no_name).1.contains("name is required"), "{no_name}");

    let setup = f
        .post(
            "endpoint/setup",
            json!({"plugin_unique_identifier": uid, "user_id": "u1", "name": "main",
                   "settings": {"api_key": SECRET, "greeting": "hi"}}),
        )
        .await;
    assert_eq!(setup, json!({"code": 0, "message": "success", "data": true}));

    // ---- listing: masked secret, declaration, hook id ----
    let endpoints = f.endpoints().await;
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    let endpoint = &endpoints[0];
    let hook = endpoint["hook_id"].as_str().unwrap().to_owned();
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    assert_eq!(hook.len(), 16);
    assert!(hook.bytes().all(|b| b.is_ascii_lowercase()), "{hook}");
    assert_eq!(
        endpoint["settings"]["api_key"],
        format!("sk{}34", "*".repeat(SECRET.len() - 4))
    );
    assert_eq!(endpoint["settings"]["greeting"], "hi");
    assert_eq!(endpoint["enabled"], true);
    assert_eq!(endpoint["name"], "main");
    assert_eq!(endpoint["plugin_id"], "toolplane_tests/hooks");
    assert_eq!(endpoint["tenant_id"], TENANT);
    assert_eq!(endpoint["user_id"], "u1");
    assert_eq!(endpoint["expired_at"], "2050-01-01T00:00:00.000Z");
    assert_eq!(endpoint["declaration"]["settings"][0]["name"], "api_key");
    assert_eq!(endpoint["declaration"]["endpoints"][0]["path"], "/echo/<path:rest>");
    assert!(
        endpoint.get("url").is_none(),
        "no ENDPOINT_URL_TEMPLATE: Dify renders its own"
    );
    let by_plugin = f
        .get("endpoint/list/plugin?plugin_id=toolplane_tests/hooks&page=1&page_size=10")
        .await;
    assert_eq!(by_plugin["data"].as_array().unwrap().len(), 1, "{by_plugin}");
    let other_plugin = f
        .get("endpoint/list/plugin?plugin_id=toolplane_tests/other&page=1&page_size=10")
        .await;
    assert_eq!(other_plugin["data"], json!([]));
    let too_big_page = f.get("endpoint/list?page=1&page_size=101").await;
    assert!(error_of(&too_big_page).1.contains("page_size"), "{too_big_page}");
    let installed = f.get("management/list?page=1&page_size=10").await;
    assert_eq!(installed["data"]["list"][0]["endpoints_setups"], 1, "{installed}");
    assert_eq!(installed["data"]["list"][0]["endpoints_active"], 1, "{installed}");

    // ---- at rest: the secret is ciphertext, the rest as given ----
    let pool = sqlx::SqlitePool::connect(&f.db_url).await.unwrap();
    let raw: (String,) = sqlx::query_as("SELECT settings FROM endpoints WHERE id = ?")
        .bind(&endpoint_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!raw.0.contains(SECRET), "the secret is stored in clear: {}", raw.0);
    let stored: Value = serde_json::from_str(&raw.0).unwrap();
    assert_eq!(stored["greeting"], "hi");
    assert!(stored["api_key"].as_str().unwrap().len() > 100, "{stored}");
    let row = f.state.endpoint_by_hook(&hook).await.unwrap().unwrap();
    assert_eq!(row.settings["api_key"], stored["api_key"]);

    // ---- the entry point: GET and POST reach the plugin with decrypted settings ----
    let response = f
        .client
        .get(f.hook(&hook, "/echo/a/b?x=1"))
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Real-IP", "203.0.113.9")
        .header("X-Custom", "c")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-echo"], "yes");
    assert_eq!(response.headers()["content-type"], "application/json");
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["path"], "/echo/a/b");
    assert_eq!(echoed["rest"], "a/b");
    assert_eq!(echoed["query"], json!({"x": "1"}));
    assert_eq!(echoed["api_key"], SECRET, "the plugin gets the decrypted secret");
    assert_eq!(echoed["greeting"], "hi");
    assert_eq!(echoed["hook_id"], hook.as_str());
    let hook_url = echoed["hook_url"].as_str().unwrap();
    assert!(hook_url.ends_with(&format!("/e/{hook}/echo/a/b")), "{hook_url}");
    assert_eq!(echoed["forwarded_for"], Value::Null, "IP traces are stripped");
    assert_eq!(echoed["real_ip"], Value::Null, "IP traces are stripped");
    assert_eq!(echoed["custom"], "c");

    let body = json!({"hello": "world", "n": [1, 2, 3]}).to_string();
    let posted: Value = f
        .client
        .post(f.hook(&hook, "/echo/in"))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(posted["method"], "POST");
    assert_eq!(posted["path"], "/echo/in");
    assert_eq!(posted["body"], body.as_str());

    // A path the plugin does not route: the SDK's own 404 (plain text, not the daemon's envelope); the bare hook
    // reaches the plugin with path "/".
    for rest in ["/nowhere", "", "/"] {
        let unrouted = f.client.get(f.hook(&hook, rest)).send().await.unwrap();
        assert_eq!(unrouted.status(), 404, "{rest:?}");
        let text = unrouted.text().await.unwrap();
        assert!(text.contains("Failed to dispatch endpoint request"), "{rest:?}: {text}");
    }
    // HEAD is served by the GET route: status and headers, no body.
    let head = f.client.head(f.hook(&hook, "/echo/h")).send().await.unwrap();
    assert_eq!(head.status(), 201);
    assert_eq!(head.headers()["x-echo"], "yes");
    assert!(head.bytes().await.unwrap().is_empty());
    // A method the plugin has no route for reaches it too.
    let put = f.client.put(f.hook(&hook, "/echo/p")).body("x").send().await.unwrap();
    assert_eq!(put.status(), 404, "the SDK answers for methods it does not route");

    // ---- streaming: chunks arrive as the plugin yields them ----
    let started = Instant::now();
    let response = f
        .client
        .get(f.hook(&hook, "/stream?count=3&delay=0.4"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        response.headers()
    );
    let mut stream = response.bytes_stream();
    let mut collected = Vec::new();
    let mut first_at = None;
    while let Some(chunk) = stream.next().await {
        first_at.get_or_insert_with(|| started.elapsed());
        collected.extend_from_slice(&chunk.unwrap());
    }
    let total = started.elapsed();
    assert_eq!(String::from_utf8(collected).unwrap(), "chunk 0\nchunk 1\nchunk 2\n");
    let first_at = first_at.unwrap();
    assert!(
        total - first_at >= Duration::from_millis(700),
        "the body was buffered: first chunk at {first_at:?}, end at {total:?}"
    );

    // The execution timeout (4 s here) cuts a longer stream off.
    let response = f
        .client
        .get(f.hook(&hook, "/stream?count=20&delay=0.5"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    let cut = response.bytes().await;
    assert!(
        cut.is_err(),
        "a stream past PLUGIN_MAX_EXECUTION_TIMEOUT must not end cleanly"
    );
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());

    // A plugin that does not answer in time: 500 naming the timeout.
    let started = Instant::now();
    let late = f.client.get(f.hook(&hook, "/slow?seconds=6")).send().await.unwrap();
    assert_eq!(late.status(), 500);
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    let late: Value = late.json().await.unwrap();
    assert!(error_of(&late).1.contains("killed by timeout"), "{late}");

    // ---- a failing plugin: 500 with a clear message ----
    let failed = f.client.get(f.hook(&hook, "/fail")).send().await.unwrap();
    assert_eq!(failed.status(), 500);
    let failed: Value = failed.json().await.unwrap();
    let (_, message) = error_of(&failed);
    assert!(message.contains("the endpoint plugin failed"), "{message}");

    // ---- unknown hooks and oversized bodies ----
    let unknown = f
        .client
        .get(f.hook("abcdefghijklmnop", "/echo/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // A declared body over the limit is refused before it is read (a raw client, so the answer can be read
    // without writing 10 MiB into a connection the daemon closes).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = f.base.trim_start_matches("http://");
        let mut tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /e/{hook}/echo/big HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n\r\n",
            MAX_ENDPOINT_BODY + 1
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tcp.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("larger than the endpoint limit"), "{answer}");

        // Without a declared length (chunked), the limit cuts the read off.
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut reader, mut writer) = tcp.into_split();
        let head = format!("POST /e/{hook}/echo/big HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\n\r\n");
        let writing = tokio::spawn(async move {
            writer.write_all(head.as_bytes()).await.ok()?;
            let chunk = vec![b'a'; 1024 * 1024];
            for _ in 0..11 {
                writer
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await
                    .ok()?;
                writer.write_all(&chunk).await.ok()?;
                writer.write_all(b"\r\n").await.ok()?;
            }
            writer.write_all(b"0\r\n\r\n").await.ok()
        });
        let mut answer = vec![0u8; 4096];
        let n = reader.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        writing.abort();
    }
    let just_fits: Value = f
        .client
        .post(f.hook(&hook, "/echo/big"))
        .body(vec![b'a'; 1024 * 1024])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(just_fits["body"].as_str().unwrap().len(), 1024 * 1024);

    // ---- disable -> 404, enable -> served again ----
    let disabled = f.post("endpoint/disable", json!({"endpoint_id": endpoint_id})).await;
    assert_eq!(disabled["data"], true, "{disabled}");
    assert_eq!(
        f.client.get(f.hook(&hook, "/echo/x")).send().await.unwrap().status(),
        404
    );
    assert_eq!(f.endpoints().await[0]["enabled"], false);
    let installed = f.get("management/list?page=1&page_size=10").await;
    assert_eq!(installed["data"]["list"][0]["endpoints_active"], 0, "{installed}");
    f.post("endpoint/disable", json!({"endpoint_id": endpoint_id})).await;
    let enabled = f.post("endpoint/enable", json!({"endpoint_id": endpoint_id})).await;
    assert_eq!(enabled["data"], true, "{enabled}");
    assert_eq!(
        f.client.get(f.hook(&hook, "/echo/x")).send().await.unwrap().status(),
        201
    );
    let installed = f.get("management/list?page=1&page_size=10").await;
    assert_eq!(installed["data"]["list"][0]["endpoints_active"], 1, "{installed}");

    // ---- update: [__HIDDEN__] and the masked value keep the secret; a new value replaces it ----
    let updated = f
        .post(
            "endpoint/update",
            json!({"endpoint_id": endpoint_id, "user_id": "u1", "name": "renamed",
                   "settings": {"api_key": "[__HIDDEN__]", "greeting": "hey"}}),
        )
        .await;
    assert_eq!(updated["data"], true, "{updated}");
    let echoed: Value = f
        .client
        .get(f.hook(&hook, "/echo/u"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["api_key"], SECRET);
    assert_eq!(echoed["greeting"], "hey");
    assert_eq!(f.endpoints().await[0]["name"], "renamed");
    let masked = f.endpoints().await[0]["settings"]["api_key"].clone();
    f.post(
        "endpoint/update",
        json!({"endpoint_id": endpoint_id, "user_id": "u1", "name": "renamed",
               "settings": {"api_key": masked, "greeting": "hey"}}),
    )
    .await;
    let echoed: Value = f
        .client
        .get(f.hook(&hook, "/echo/u"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["api_key"], SECRET, "the masked value sent back keeps the secret");
    f.post(
        "endpoint/update",
        json!({"endpoint_id": endpoint_id, "user_id": "u1", "name": "renamed",
               "settings": {"api_key": "sk-rotated-99999999"}}),
    )
    .await;
    let echoed: Value = f
        .client
        .get(f.hook(&hook, "/echo/u"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["api_key"], "sk-rotated-99999999");
    assert_eq!(
        echoed["greeting"], "hello",
        "an omitted optional setting takes its default"
    );
    let bad_update = f
        .post(
            "endpoint/update",
            json!({"endpoint_id": endpoint_id, "user_id": "u1", "name": "renamed", "settings": {}}),
        )
        .await;
    assert!(error_of(&bad_update).1.contains("api_key"), "{bad_update}");
    let missing_endpoint = f
        .post(
            "endpoint/update",
            json!({"endpoint_id": "nope", "user_id": "u1", "name": "x", "settings": {}}),
        )
        .await;
    assert_eq!(error_of(&missing_endpoint).0, "PluginDaemonNotFoundError");

    // ---- /v2/invoke: a package uploaded but installed nowhere, invoked by unique identifier ----
    let stored_uid = f.upload(package_with_version("0.0.2")).await;
    let extracted: Value = f
        .client
        .get(format!("{}/v2/invoke/extract", f.base))
        .header("X-Api-Key", KEY)
        .header("X-Plugin-Unique-Identifier", &stored_uid)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        extracted["data"]["unique_identifier"],
        stored_uid.as_str(),
        "{extracted}"
    );
    assert_eq!(extracted["data"]["manifest"]["name"], "hooks");
    assert_eq!(extracted["data"]["manifest"]["version"], "0.0.2");
    let raw = "GET /echo/v2?from=v2 HTTP/1.1\r\nHost: example.test\r\n\r\n";
    let response = f
        .client
        .post(format!("{}/v2/invoke/dispatch/endpoint/invoke", f.base))
        .header("X-Api-Key", KEY)
        .header("X-Plugin-Unique-Identifier", &stored_uid)
        .json(&json!({"tenant_id": "tenant-without-installs", "user_id": "u2",
                      "data": {"raw_http_request": hex::encode(raw), "settings": {"api_key": "v2-key"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let frames: Vec<Value> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(frames[0]["code"], 0, "{text}");
    assert_eq!(frames[0]["data"]["status"], 201, "{text}");
    let body: Vec<u8> = frames
        .iter()
        .filter_map(|f| f["data"]["result"].as_str())
        .flat_map(|hex_body| hex::decode(hex_body).unwrap())
        .collect();
    let echoed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed["api_key"], "v2-key");
    assert_eq!(echoed["query"], json!({"from": "v2"}));
    assert!(
        f.state
            .db()
            .installed_unique_identifier(TENANT, "toolplane_tests/hooks")
            .await
            .unwrap()
            == Some(uid.clone())
    );

    let no_header = f
        .client
        .post(format!("{}/v2/invoke/dispatch/endpoint/invoke", f.base))
        .header("X-Api-Key", KEY)
        .json(&json!({"tenant_id": "t", "data": {}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        no_header.contains("X-Plugin-Unique-Identifier header is required"),
        "{no_header}"
    );
    let not_uploaded = f
        .client
        .post(format!("{}/v2/invoke/dispatch/tool/invoke", f.base))
        .header("X-Api-Key", KEY)
        .header(
            "X-Plugin-Unique-Identifier",
            "toolplane_tests/nope:0.0.1@0000000000000000000000000000000000000000000000000000000000000000",
        )
        .json(&json!({"tenant_id": "t", "data": {}}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(not_uploaded.contains("PluginNotFoundError"), "{not_uploaded}");
    let no_key = f
        .client
        .get(format!("{}/v2/invoke/extract", f.base))
        .header("X-Plugin-Unique-Identifier", &stored_uid)
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);

    // ---- remove: gone from the list, the hook answers 404 ----
    let removed = f.post("endpoint/remove", json!({"endpoint_id": endpoint_id})).await;
    assert_eq!(removed["data"], true, "{removed}");
    assert!(f.endpoints().await.is_empty());
    assert_eq!(
        f.client.get(f.hook(&hook, "/echo/x")).send().await.unwrap().status(),
        404
    );
    let installed = f.get("management/list?page=1&page_size=10").await;
    assert_eq!(installed["data"]["list"][0]["endpoints_setups"], 0, "{installed}");
    assert_eq!(installed["data"]["list"][0]["endpoints_active"], 0, "{installed}");
    let again = f.post("endpoint/remove", json!({"endpoint_id": endpoint_id})).await;
    assert_eq!(error_of(&again).0, "PluginDaemonNotFoundError", "{again}");

    if let Some(runtime) = f.state.runtime() {
        runtime.shutdown().await;
    }
}

/// `PLUGIN_ENDPOINT_ENABLED=false`: the entry point is not mounted at all.
#[tokio::test]
async fn the_entry_point_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DaemonConfig::from_lookup(dir.path(), |k| match k {
        "SERVER_KEY" => Some(KEY.into()),
        "PLUGIN_ENDPOINT_ENABLED" => Some("false".into()),
        _ => None,
    })
    .unwrap();
    assert!(!config.endpoint_enabled);
    config.verifier.force_verifying_signature = false;
    let blobs = BlobStore::from_config(&config.local_blob_config()).unwrap();
    let state = DaemonState::open(config, blobs).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve_daemon(listener, state, std::future::pending()));
    let response = reqwest::get(format!("{base}/e/abcdefghijklmnop/x")).await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"code": "not_found", "message": "route not found"}));
    let bad = DaemonConfig::from_lookup(dir.path(), |k| match k {
        "SERVER_KEY" => Some(KEY.into()),
        "PLUGIN_ENDPOINT_ENABLED" => Some("maybe".into()),
        _ => None,
    })
    .unwrap_err()
    .to_string();
    assert!(bad.contains("PLUGIN_ENDPOINT_ENABLED"), "{bad}");
}

const PG_ENV: &str = "TOOLPLANE_TEST_POSTGRES_URL";

/// Runs `test` with a fresh database URL: an SQLite file, then a PostgreSQL schema when `TOOLPLANE_TEST_POSTGRES_URL`
/// is set.
async fn on_each_backend<F, Fut>(test: F)
where
    F: Fn(String, Arc<tempfile::TempDir>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use sqlx::{Connection, Executor};
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}/data/plugin.db?mode=rwc", dir.path().display());
    test(url, dir).await;

    let Some(base) = std::env::var(PG_ENV).ok().filter(|v| !v.is_empty()) else {
        eprintln!("skipping PostgreSQL: set {PG_ENV} to run these tests on PostgreSQL too");
        return;
    };
    let schema = format!("e_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test(url, dir))).await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The management half without a plugin runtime (no PyPI needed), on SQLite and PostgreSQL: the stored secret
/// decrypts with the tenant key the daemon keeps in its blob store, counters follow enable/disable/remove, a plugin
/// whose manifest does not allow endpoints is refused, and the entry point says why it cannot run the plugin.
#[tokio::test]
async fn endpoint_management_without_a_runtime() {
    on_each_backend(|url, dir| async move {
        let mut config = DaemonConfig::new(KEY, url, dir.path().join("storage"));
        config.verifier.force_verifying_signature = false;
        config.endpoint_url_template = Some("https://dify.example.com/e/{hook_id}".into());
        let blobs = BlobStore::from_config(&BlobConfig::Local {
            root: dir.path().join("storage"),
        })
        .unwrap();
        let state = DaemonState::open(config, blobs).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve_daemon(listener, state.clone(), std::future::pending()));
        let f = Fixture {
            base,
            client: reqwest::Client::new(),
            state,
            db_url: String::new(),
            _dir: tempfile::tempdir().unwrap(),
        };
        let uid = f.upload(package_with_version("0.0.1")).await;
        f.install(&uid).await;
        let setup = f
            .post(
                "endpoint/setup",
                json!({"plugin_unique_identifier": uid, "user_id": "u1", "name": "a", "settings": {"api_key": SECRET}}),
            )
            .await;
        assert_eq!(setup["data"], true, "{setup}");
        f.post(
            "endpoint/setup",
            json!({"plugin_unique_identifier": uid, "user_id": "u1", "name": "b", "settings": {"api_key": "other-secret"}}),
        )
        .await;
        let listed = f.endpoints().await;
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0]["name"], "b", "newest first");
        assert_eq!(listed[0]["settings"]["greeting"], "hello", "defaults are filled in");
        let hook = listed[1]["hook_id"].as_str().unwrap().to_owned();
        assert_eq!(listed[1]["url"], format!("https://dify.example.com/e/{hook}"));
        let first_id = listed[1]["id"].as_str().unwrap().to_owned();
        let second_id = listed[0]["id"].as_str().unwrap().to_owned();
        assert_ne!(hook, listed[0]["hook_id"].as_str().unwrap());

        // The ciphertext at rest is Dify's HYBRID format under the daemon's own tenant key.
        let row = f.state.endpoint_by_hook(&hook).await.unwrap().unwrap();
        let pem = std::fs::read_to_string(dir.path().join(format!("storage/endpoint_keys/{TENANT}/private.pem"))).unwrap();
        let key = toolplane_secrets::PrivateKey::from_pem(&pem).unwrap();
        let token = row.settings["api_key"].as_str().unwrap();
        assert_ne!(token, SECRET);
        assert_eq!(key.decrypt(token).unwrap(), SECRET);

        let counts = |v: Value| {
            (
                v["data"]["list"][0]["endpoints_setups"].as_i64().unwrap(),
                v["data"]["list"][0]["endpoints_active"].as_i64().unwrap(),
            )
        };
        assert_eq!(counts(f.get("management/list?page=1&page_size=10").await), (2, 2));
        f.post("endpoint/disable", json!({"endpoint_id": first_id})).await;
        f.post("endpoint/disable", json!({"endpoint_id": first_id})).await;
        assert_eq!(counts(f.get("management/list?page=1&page_size=10").await), (2, 1));
        f.post("endpoint/remove", json!({"endpoint_id": second_id})).await;
        assert_eq!(counts(f.get("management/list?page=1&page_size=10").await), (1, 0));
        f.post("endpoint/enable", json!({"endpoint_id": first_id})).await;
        assert_eq!(counts(f.get("management/list?page=1&page_size=10").await), (1, 1));
        let second_page = f.get("endpoint/list?page=2&page_size=1").await;
        assert_eq!(second_page["data"], json!([]));

        // No runtime: the hook exists but the plugin cannot run.
        let answer = f.client.get(f.hook(&hook, "/echo/x")).send().await.unwrap();
        assert_eq!(answer.status(), 500);
        let answer: Value = answer.json().await.unwrap();
        assert!(error_of(&answer).1.contains("without the plugin runtime"), "{answer}");

        // After an upgrade to a version whose manifest does not allow endpoints, setup is refused.
        let no_permission = {
            let dir = tempfile::tempdir().unwrap();
            copy_tree(&plugin_dir(), dir.path());
            let manifest = std::fs::read_to_string(dir.path().join("manifest.yaml"))
                .unwrap()
                .replacen("version: 0.0.1", "version: 0.0.5", 1)
                .replace("    endpoint:\n      enabled: true", "    endpoint:\n      enabled: false");
            std::fs::write(dir.path().join("manifest.yaml"), manifest).unwrap();
            toolplane_plugin::package_dir(dir.path(), 50 << 20, |_| {}).unwrap()
        };
        let denied_uid = f.upload(no_permission).await;
        let upgraded = f
            .post(
                "management/install/upgrade",
                json!({"original_plugin_unique_identifier": uid, "new_plugin_unique_identifier": denied_uid,
                       "source": "package", "meta": {}}),
            )
            .await;
        if let Some(task) = upgraded["data"]["task_id"].as_str().filter(|t| !t.is_empty()) {
            for _ in 0..100 {
                let task = f.get(&format!("management/install/tasks/{task}")).await;
                if task["data"]["status"] == "success" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let refused = f
            .post(
                "endpoint/setup",
                json!({"plugin_unique_identifier": denied_uid, "user_id": "u1", "name": "c", "settings": {"api_key": "x"}}),
            )
            .await;
        assert_eq!(refused["code"], -403, "{refused}");
        assert_eq!(error_of(&refused).0, "PluginPermissionDeniedError");
        let stale = f
            .post(
                "endpoint/setup",
                json!({"plugin_unique_identifier": uid, "user_id": "u1", "name": "c", "settings": {"api_key": "x"}}),
            )
            .await;
        assert_eq!(error_of(&stale).0, "PluginNotFoundError", "only the installed version: {stale}");
    })
    .await;
}

/// A plugin asking for a Python that is not available (3.11, with discovery off and 3.12 configured) installs on
/// the newer one, and the install task's plugin `message` says so (not only the log).
#[tokio::test(flavor = "multi_thread")]
async fn install_task_reports_a_stand_in_python() {
    if !online() {
        return;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let Some(python312) = std::fs::read_dir(Path::new(&home).join(".pyenv/versions"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin/python3.12"))
        .find(|p| p.is_file())
    else {
        eprintln!("NOTICE: skipping install_task_reports_a_stand_in_python: no pyenv Python 3.12");
        return;
    };
    let f = Fixture::start_with(|config| {
        config.python_interpreter_path = Some(python312.clone());
        config.discover_python = false;
    })
    .await;
    let package = {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&plugin_dir(), dir.path());
        let manifest = std::fs::read_to_string(dir.path().join("manifest.yaml"))
            .unwrap()
            .replacen("version: 0.0.1", "version: 0.1.0", 1)
            .replace("version: \"3.12\"", "version: \"3.11\"");
        std::fs::write(dir.path().join("manifest.yaml"), manifest).unwrap();
        toolplane_plugin::package_dir(dir.path(), 50 << 20, |_| {}).unwrap()
    };
    let uid = f.upload(package).await;
    // Built afresh, then (after an uninstall) reused: the warning is in the task message both times.
    let parsed = toolplane_plugin::PluginUniqueIdentifier::parse(&uid).unwrap();
    let _ = std::fs::remove_dir_all(runtime_cache().join("work").join(parsed.working_dir_name()));
    for round in ["built", "reused"] {
        let task = f.install_task(&uid).await;
        let message = task["data"]["plugins"][0]["message"].as_str().unwrap();
        assert!(message.starts_with("Installed with warnings: "), "{round}: {task}");
        assert!(
            message
                .contains("Python 3.11 was requested by meta.runner.version but is not installed; using Python 3.12"),
            "{round}: {message}"
        );
        let listed = f.get("management/list?page=1&page_size=10").await;
        let installation = listed["data"]["list"][0]["installation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let removed = f
            .post("management/uninstall", json!({"plugin_installation_id": installation}))
            .await;
        assert_eq!(removed["data"], true, "{removed}");
    }
    if let Some(runtime) = f.state.runtime() {
        runtime.shutdown().await;
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
