//! The dispatch routes and the plugin provider source against a real plugin (`dify_plugin==0.7.4`, Python 3.11)
//! run by `toolplane-runtime`, driven over loopback HTTP exactly as Dify's API server calls the original daemon
//! (`api/core/plugin/impl/tool.py`: `POST plugin/{tenant}/dispatch/tool/invoke`, `X-Plugin-ID`, JSON body
//! `{user_id, conversation_id, app_id, message_id, data: {provider, tool, credentials, credential_type,
//! tool_parameters}}`, SSE answer read line by line). Environments are shared with the runtime crate's tests in
//! `crates/runtime/.cache/`; without PyPI the test prints a notice and passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Map, Value, json};
use toolplane_core::{MessagePayload, ProviderSource, ToolError, ToolRuntime};
use toolplane_daemon::*;
use toolplane_runtime::{Backwards, FsStorage, PluginRuntime, RuntimeConfig};
use toolplane_store::{BlobConfig, BlobStore};

#[path = "support/probe.rs"]
mod probe;
use probe::renamed_probe;

const KEY: &str = "dispatch-test-key";
const TENANT: &str = "tenant-a";

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
        eprintln!("NOTICE: skipping the dispatch test: pypi.org is unreachable, so dify_plugin cannot be installed");
    }
    ok
}

struct Fixture {
    base: String,
    client: reqwest::Client,
    state: DaemonState,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`Fixture::start`] with changes to the runtime configuration.
    async fn start_with(configure: impl FnOnce(&mut RuntimeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = DaemonConfig::new(
            KEY,
            format!("sqlite://{}?mode=rwc", dir.path().join("plugin.db").display()),
            dir.path().join("storage"),
        );
        config.verifier.force_verifying_signature = false;
        let mut runtime_config = RuntimeConfig::new(runtime_cache().join("work"));
        runtime_config.tools_path = runtime_cache().join("tools");
        runtime_config.max_execution_timeout = Duration::from_secs(2);
        runtime_config.cancel_grace = Duration::from_millis(500);
        runtime_config.restart_backoff = Duration::from_millis(100);
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
            _dir: dir,
        }
    }

    async fn install(&self) -> String {
        let package = toolplane_plugin::package_dir(&probe::probe_dir(), 50 << 20, |_| {}).unwrap();
        self.install_packages(vec![package]).await.remove(0)
    }

    /// Uploads the packages and installs them in one task; their unique identifiers.
    async fn install_packages(&self, packages: Vec<Vec<u8>>) -> Vec<String> {
        let mut uids = Vec::new();
        for package in packages {
            let form = reqwest::multipart::Form::new()
                .part(
                    "dify_pkg",
                    reqwest::multipart::Part::bytes(package).file_name("probe.difypkg"),
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
            uids.push(uploaded["data"]["unique_identifier"].as_str().unwrap().to_owned());
        }
        let metas = vec![json!({}); uids.len()];
        let started: Value = self
            .client
            .post(format!("{}/plugin/{TENANT}/management/install/identifiers", self.base))
            .header("X-Api-Key", KEY)
            .json(&json!({"plugin_unique_identifiers": uids, "source": "package", "metas": metas}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let task_id = started["data"]["task_id"]
            .as_str()
            .unwrap_or_else(|| panic!("install did not start: {started}"))
            .to_owned();
        for _ in 0..12_000 {
            let task: Value = self
                .client
                .get(format!(
                    "{}/plugin/{TENANT}/management/install/tasks/{task_id}",
                    self.base
                ))
                .header("X-Api-Key", KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match task["data"]["status"].as_str() {
                Some("success") => return uids,
                Some("failed") => panic!("install failed: {task}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("install did not finish")
    }

    fn dispatch_request(&self, route: &str, data: Value) -> reqwest::RequestBuilder {
        self.dispatch_request_to("probe/probe", route, data)
    }

    fn dispatch_request_to(&self, plugin_id: &str, route: &str, data: Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/plugin/{TENANT}/dispatch/{route}", self.base))
            .header("X-Api-Key", KEY)
            .header("X-Plugin-ID", plugin_id)
            .header("Content-Type", "application/json")
            .json(&json!({
                "user_id": "user-1",
                "conversation_id": null,
                "app_id": null,
                "message_id": null,
                "data": data,
            }))
    }

    /// The SSE frames of one dispatch call, as Dify reads them (`iter_lines`, strip `data:`).
    async fn dispatch(&self, route: &str, data: Value) -> Vec<Value> {
        let response = self.dispatch_request(route, data).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let text = response.text().await.unwrap();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l.strip_prefix("data: ").expect("data: prefix")).unwrap())
            .collect()
    }
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

/// (outer error_type, inner message) of an error frame.
fn error_of(frame: &Value) -> (String, String) {
    assert_eq!(frame["code"], -500, "{frame}");
    let inner: Value = serde_json::from_str(frame["message"].as_str().unwrap()).unwrap();
    (
        inner["error_type"].as_str().unwrap().to_owned(),
        inner["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn dispatch_routes_and_catalog_tools_run_real_plugins() {
    if !online() {
        return;
    }
    let fx = Fixture::start().await;
    let uid = fx.install().await;
    let runtime = fx.state.runtime().unwrap().clone();
    assert!(runtime.is_loaded(&uid));

    // A streaming tool.
    let frames = fx.dispatch("tool/invoke", invoke_data("basic", "hi")).await;
    assert!(
        frames.iter().all(|f| f["code"] == 0 && f["message"] == "success"),
        "{frames:?}"
    );
    let types: Vec<&str> = frames.iter().map(|f| f["data"]["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["text", "json", "variable", "link"]);
    assert_eq!(frames[0]["data"]["message"]["text"], "echo: hi");

    // Credentials validation: success, and the plugin's error the way Dify decodes it.
    let ok = fx
        .dispatch(
            "tool/validate_credentials",
            json!({"provider": "probe", "credentials": {"api_key": "good"}}),
        )
        .await;
    assert_eq!(ok, [json!({"code": 0, "message": "success", "data": {"result": true}})]);
    let bad = fx
        .dispatch(
            "tool/validate_credentials",
            json!({"provider": "probe", "credentials": {"api_key": "x"}}),
        )
        .await;
    assert_eq!(bad.len(), 1);
    let (error_type, message) = error_of(&bad[0]);
    assert_eq!(error_type, "PluginInvokeError");
    let plugin: Value = serde_json::from_str(&message).unwrap();
    assert_eq!(plugin["error_type"], "ToolProviderCredentialValidationError");
    assert_eq!(plugin["message"], "bad api_key");

    // Runtime parameters: the SDK routes nothing, so the stream is empty.
    let params = fx
        .dispatch(
            "tool/get_runtime_parameters",
            json!({"provider": "probe", "tool": "echo", "credentials": {}}),
        )
        .await;
    assert!(params.is_empty(), "{params:?}");

    // A storage backwards call.
    let stored = fx.dispatch("tool/invoke", invoke_data("storage", "kv")).await;
    assert_eq!(stored[0]["data"]["message"]["text"], "storage got: kv");

    // An unknown plugin and a missing header.
    let response = fx
        .client
        .post(format!("{}/plugin/{TENANT}/dispatch/tool/invoke", fx.base))
        .header("X-Api-Key", KEY)
        .header("X-Plugin-ID", "nobody/nothing")
        .json(&json!({"user_id": "u", "data": invoke_data("basic", "x")}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(response.contains("PluginNotFoundError"), "{response}");

    // PLUGIN_MAX_EXECUTION_TIMEOUT (2 s here): the caller gets the timeout error, the plugin is restarted.
    let started = Instant::now();
    let frames = fx.dispatch("tool/invoke", invoke_data("slow", "30")).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let (error_type, message) = error_of(frames.last().unwrap());
    assert_eq!(error_type, "PluginDaemonInternalServerError");
    assert!(message.contains("killed by timeout"), "{message}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while runtime.status(&uid).unwrap().running {
        assert!(
            Instant::now() < deadline,
            "the plugin still works on the timed-out call"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A caller that disconnects cancels its session the same way.
    let response = fx
        .dispatch_request("tool/invoke", invoke_data("slow", "30"))
        .send()
        .await
        .unwrap();
    let starts = runtime.status(&uid).unwrap().starts;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(runtime.status(&uid).unwrap().running);
    drop(response);
    let deadline = Instant::now() + Duration::from_secs(5);
    while runtime.status(&uid).unwrap().running {
        assert!(
            Instant::now() < deadline,
            "the plugin still works on the abandoned call"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(runtime.status(&uid).unwrap().starts, starts);

    // toolplane's own catalog: the plugin provider source invokes through the runtime with the caller's credentials.
    let source = PluginProviderSource::new(fx.state.clone());
    let provider = source
        .get(TENANT, "probe/probe/probe")
        .await
        .unwrap()
        .expect("provider");
    let tool = provider.tool("echo").await.unwrap().expect("tool");
    let mut credentials = Map::new();
    credentials.insert("api_key".into(), json!("good"));
    let tool_runtime = ToolRuntime {
        tenant_id: TENANT.into(),
        user_id: Some("user-1".into()),
        credentials: credentials.clone(),
        ..Default::default()
    };
    let mut parameters = Map::new();
    parameters.insert("text".into(), json!("catalog"));
    parameters.insert("mode".into(), json!("basic"));
    let messages: Vec<_> = tool
        .invoke(tool_runtime, parameters, Default::default())
        .await
        .unwrap()
        .collect()
        .await;
    let first = messages[0].as_ref().unwrap();
    assert!(
        matches!(&first.payload, MessagePayload::Text(t) if t.text == "echo: catalog"),
        "{first:?}"
    );
    let MessagePayload::Json(j) = &messages[1].as_ref().unwrap().payload else {
        panic!("{messages:?}")
    };
    assert_eq!(j.json_object["creds"], json!(["api_key"]));
    provider.validate_credentials(&credentials).await.unwrap();
    credentials.insert("api_key".into(), json!("wrong"));
    let err = provider.validate_credentials(&credentials).await.unwrap_err();
    assert_eq!(err, ToolError::CredentialValidation("bad api_key".into()));

    // Uninstall stops and forgets the plugin.
    let list: Value = fx
        .client
        .get(format!(
            "{}/plugin/{TENANT}/management/list?page=1&page_size=10",
            fx.base
        ))
        .header("X-Api-Key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let installation_id = list["data"]["list"][0]["installation_id"].as_str().unwrap().to_owned();
    let removed: Value = fx
        .client
        .post(format!("{}/plugin/{TENANT}/management/uninstall", fx.base))
        .header("X-Api-Key", KEY)
        .json(&json!({"plugin_installation_id": installation_id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(removed["data"], true, "{removed}");
    assert!(!runtime.is_loaded(&uid));
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

type BenchBody = http_body_util::Full<bytes::Bytes>;

/// One benchmark caller's keep-alive HTTP/1.1 connection to the daemon, through hyper's client.
///
/// The connection is polled by the calling task itself while a call is in flight, the way a blocking client (Dify's
/// `requests`) does its socket I/O in the calling thread. reqwest's pooled client instead hands each request to a
/// connection task and gets the answer back from it, and spawns a task per streamed answer that returns the
/// connection to the pool: task hops the direct driver, awaiting its session in the calling task, does not have
/// (measured here: ~25 µs per call on the quiet 2-core machine, ~70 µs when it is loaded). The request is prepared
/// once, as the direct side prepares its `InvokeRequest` once; the answer's frames are checked, not parsed, as the
/// direct side gets chunks the runtime already parsed.
struct HttpCaller {
    sender: hyper::client::conn::http1::SendRequest<BenchBody>,
    connection: std::pin::Pin<
        Box<hyper::client::conn::http1::Connection<hyper_util::rt::TokioIo<tokio::net::TcpStream>, BenchBody>>,
    >,
    request: hyper::Request<BenchBody>,
}

impl HttpCaller {
    async fn connect(fx: &Fixture, data: Value) -> Self {
        let authority = fx.base.strip_prefix("http://").unwrap().to_owned();
        let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
        let body = serde_json::to_vec(&json!({
            "user_id": "user-1",
            "conversation_id": null,
            "app_id": null,
            "message_id": null,
            "data": data,
        }))
        .unwrap();
        let request = hyper::Request::post(format!("/plugin/{TENANT}/dispatch/tool/invoke"))
            .header("Host", authority)
            .header("X-Api-Key", KEY)
            .header("X-Plugin-ID", "probe/probe")
            .header("Content-Type", "application/json")
            .body(BenchBody::new(body.into()))
            .unwrap();
        Self {
            sender,
            connection: Box::pin(connection),
            request,
        }
    }

    /// One call: the SSE body, checked to hold `frames` successful frames.
    async fn call(&mut self, frames: usize) {
        use http_body_util::BodyExt;
        let mut request = hyper::Request::new(self.request.body().clone());
        *request.method_mut() = self.request.method().clone();
        *request.uri_mut() = self.request.uri().clone();
        *request.headers_mut() = self.request.headers().clone();
        let exchange = async {
            let response = self.sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap().to_bytes()
        };
        let body = tokio::select! {
            biased;
            body = exchange => body,
            end = &mut self.connection => panic!("the daemon closed the connection: {end:?}"),
        };
        let text = std::str::from_utf8(&body).unwrap();
        let mut count = 0;
        for frame in text.split_terminator("\n\n") {
            assert!(
                frame.starts_with(r#"data: {"code":0,"message":"success","data":{"#),
                "{text}"
            );
            count += 1;
        }
        assert_eq!(count, frames, "{text}");
    }
}

#[derive(Clone, Copy, PartialEq)]
enum BenchMode {
    /// `PluginRuntime::invoke` in the calling task: the stdio driver without HTTP.
    Direct,
    /// The dispatch route through [`HttpCaller`].
    Http,
    /// The dispatch route through the fixture's reqwest client, building and parsing JSON as `Fixture::dispatch`
    /// does (the method of the first measurements; shows what such a client adds).
    HttpReqwest,
}

impl BenchMode {
    fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Http => "http",
            Self::HttpReqwest => "http (reqwest)",
        }
    }
}

/// Benchmark (run with `--ignored --nocapture`): tool calls through the HTTP dispatch route against the same calls
/// made on the runtime directly (the stdio driver without HTTP), at 1 and 10 concurrent callers; 4,000 calls per
/// mode and caller count. The modes take turns in 16 rounds of 250 calls, so that changes in the machine's load
/// during the run (it is shared) weigh on all of them alike; calls/s is calls over the time spent in the mode's
/// rounds.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; run explicitly"]
async fn bench_dispatch_against_direct_runtime() {
    if !online() {
        return;
    }
    let fx = Arc::new(Fixture::start().await);
    let uid = fx.install().await;
    let runtime = fx.state.runtime().unwrap().clone();
    let request = {
        let mut payload = Map::new();
        for (k, v) in invoke_data("basic", "bench").as_object().unwrap() {
            payload.insert(k.clone(), v.clone());
        }
        toolplane_runtime::InvokeRequest {
            tenant_id: TENANT.into(),
            user_id: "u".into(),
            access_type: "tool".into(),
            action: "invoke_tool".into(),
            payload,
            ..Default::default()
        }
    };
    const CALLS: usize = 4000;
    const ROUNDS: usize = 16;
    const FRAMES: usize = 4;
    let modes = [BenchMode::Direct, BenchMode::Http, BenchMode::HttpReqwest];
    for callers in [1usize, 10] {
        let mut connections = Vec::new();
        for _ in 0..callers {
            connections.push(HttpCaller::connect(&fx, invoke_data("basic", "bench")).await);
        }
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
        let mut busy = vec![Duration::ZERO; modes.len()];
        // Round 0 warms every mode up and is not counted.
        for round in 0..=ROUNDS {
            let calls_per_caller = if round == 0 { 50 } else { CALLS / ROUNDS / callers };
            for (m, &mode) in modes.iter().enumerate() {
                let started = Instant::now();
                let tasks: Vec<_> = std::mem::take(&mut connections)
                    .into_iter()
                    .map(|mut connection| {
                        let (fx, runtime, uid, request) =
                            (Arc::clone(&fx), runtime.clone(), uid.clone(), request.clone());
                        tokio::spawn(async move {
                            let mut latencies = Vec::with_capacity(calls_per_caller);
                            for _ in 0..calls_per_caller {
                                let t = Instant::now();
                                match mode {
                                    BenchMode::Direct => {
                                        let chunks =
                                            runtime.invoke(&uid, &request).await.unwrap().collect().await.unwrap();
                                        assert_eq!(chunks.len(), FRAMES);
                                    }
                                    BenchMode::Http => connection.call(FRAMES).await,
                                    BenchMode::HttpReqwest => {
                                        let frames = fx.dispatch("tool/invoke", invoke_data("basic", "bench")).await;
                                        assert_eq!(frames.len(), FRAMES);
                                    }
                                }
                                latencies.push(t.elapsed());
                            }
                            (connection, latencies)
                        })
                    })
                    .collect();
                for task in tasks {
                    let (connection, caller_latencies) = task.await.unwrap();
                    connections.push(connection);
                    if round > 0 {
                        latencies[m].extend(caller_latencies);
                    }
                }
                if round > 0 {
                    busy[m] += started.elapsed();
                }
            }
        }
        let mut direct = (Duration::ZERO, 0.0);
        for (m, &mode) in modes.iter().enumerate() {
            let all = &mut latencies[m];
            all.sort();
            let p50 = percentile(all, 0.50);
            let rate = all.len() as f64 / busy[m].as_secs_f64();
            let comparison = if mode == BenchMode::Direct {
                direct = (p50, rate);
                String::new()
            } else {
                format!(
                    "  added p50 {:>+6.0} µs  throughput {:>4.0} % of direct",
                    (p50.as_secs_f64() - direct.0.as_secs_f64()) * 1e6,
                    rate / direct.1 * 100.0
                )
            };
            println!(
                "{:>14} callers={callers:>2}: p50 {:>7.3} ms  p99 {:>7.3} ms  {:>6.0} calls/s{comparison}",
                mode.label(),
                p50.as_secs_f64() * 1e3,
                percentile(all, 0.99).as_secs_f64() * 1e3,
                rate,
            );
        }
    }
}

/// `VmRSS` of a process in KiB.
fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// (this process's RSS, the summed RSS of its descendants, how many descendants), in KiB.
fn rss_of_self_and_children() -> (u64, u64, usize) {
    let me = std::process::id().to_string();
    let mut parents: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so split after the last ')'.
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        {
            parents.push((pid, ppid.to_owned()));
        }
    }
    let mut family = vec![me.clone()];
    let mut i = 0;
    while i < family.len() {
        let parent = family[i].clone();
        family.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(c, _)| c.clone()));
        i += 1;
    }
    let children: u64 = family[1..].iter().map(|p| rss_kib(p)).sum();
    (rss_kib(&me), children, family.len() - 1)
}

/// Memory (run with `--ignored --nocapture`): the daemon's RSS (this process) and its plugins' with 1, 10 and 100
/// installed copies of the probe plugin (`TOOLPLANE_RSS_COUNTS=1,10` for fewer), each called once (all at once),
/// then after the idle timeout (`TOOLPLANE_RSS_IDLE_SECS`, 60 s) has stopped them.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement; run explicitly"]
async fn measure_rss_with_installed_plugins() {
    if !online() {
        return;
    }
    // Longer than starting every plugin at once takes, so that all of them are running when measured.
    let idle = Duration::from_secs(std::env::var("TOOLPLANE_RSS_IDLE_SECS").map_or(60, |s| s.trim().parse().unwrap()));
    let counts: Vec<usize> = std::env::var("TOOLPLANE_RSS_COUNTS")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    let (rss, _, _) = rss_of_self_and_children();
    println!("before any install: daemon {:>7} KiB", rss);
    let fx = Fixture::start_with(|c| {
        c.idle_timeout = idle;
        // Starting 100 plugins at once on a small machine takes far longer than one call.
        c.max_execution_timeout = Duration::from_secs(300);
    })
    .await;
    let mut installed = 0;
    for count in counts {
        let started = Instant::now();
        let names: Vec<String> = (installed..count).map(|i| format!("probe{i}")).collect();
        // One install task takes at most MAX_IDENTIFIERS_PER_INSTALL plugins.
        for batch in names.chunks(10) {
            fx.install_packages(batch.iter().map(|name| renamed_probe(name)).collect())
                .await;
        }
        let install_time = started.elapsed();
        installed = count;
        let calls = (0..count).map(|i| {
            let request =
                fx.dispatch_request_to(&format!("probe/probe{i}"), "tool/invoke", invoke_data("basic", "rss"));
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
                let text = response.text().await.unwrap();
                assert!(text.contains("\"code\":0"), "{text}");
            }
        });
        futures::future::join_all(calls).await;
        let (daemon, plugins, processes) = rss_of_self_and_children();
        println!(
            "{count:>3} installed (+{:.0} s to install), all called: daemon {daemon:>7} KiB, plugins {plugins:>8} KiB \
             in {processes} processes",
            install_time.as_secs_f64()
        );
        // The runtime checks every idle/4.
        tokio::time::sleep(idle + idle / 2).await;
        let (daemon, plugins, processes) = rss_of_self_and_children();
        println!(
            "{count:>3} installed, after the idle timeout:  daemon {daemon:>7} KiB, plugins {plugins:>8} KiB in \
             {processes} processes"
        );
    }
}
