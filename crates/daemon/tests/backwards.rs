//! Backwards invocations forwarded to Dify's inner API, and a model plugin through the generic dispatch path.
//!
//! Dify's API server cannot run here, so a loopback axum server stands in for its `/inner/api/…` routes, answering
//! the way Dify does (length-prefixed frames, the older line framing, plain JSON). The plugins are real
//! `dify_plugin==0.10.2` plugins on Python 3.12 (`tests/data/caller_plugin`, `tests/data/llm_plugin`), installed
//! through the management API and driven over the dispatch routes exactly as Dify's API server calls the original
//! daemon. Environments are shared with the runtime crate's tests in `crates/runtime/.cache/`; without PyPI the
//! tests print a notice and pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use toolplane_daemon::*;
use toolplane_runtime::{Backwards, FsStorage, PluginRuntime, RuntimeConfig};
use toolplane_store::{BlobConfig, BlobStore};

const KEY: &str = "backwards-test-key";
const TENANT: &str = "tenant-b";
const INNER_KEY: &str = "inner-api-key-for-tests";
const CALLER: &str = "toolplane_tests/caller";
const LLM: &str = "toolplane_tests/fakellm";

fn runtime_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/.cache")
}

fn test_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn online() -> bool {
    use std::net::ToSocketAddrs;
    let ok = ("pypi.org", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    if !ok {
        eprintln!("NOTICE: skipping: pypi.org is unreachable, so dify_plugin cannot be installed");
    }
    ok
}

// ---------------------------------------------------------------------------------------------------------------
// A stand-in for Dify's inner API.

/// One request Dify's inner API received: (path, X-Inner-Api-Key, body).
type Seen = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

#[derive(Clone)]
struct FakeDify {
    seen: Seen,
    base: Arc<Mutex<String>>,
}

/// Dify's `length_prefixed_response` framing of one item.
fn frame(item: &Value) -> Vec<u8> {
    let data = format!("{item}\n\n").into_bytes();
    let mut out = vec![0x0F, 0];
    out.extend_from_slice(&10u16.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&data);
    out
}

fn llm_chunk(index: u64, content: &str, finish: Option<&str>) -> Value {
    json!({"data": {
        "model": "gpt-test",
        "prompt_messages": [],
        "system_fingerprint": null,
        "delta": {"index": index, "message": {"role": "assistant", "content": content, "tool_calls": []},
                  "usage": null, "finish_reason": finish},
    }, "error": ""})
}

/// A body sent in the given pieces, each in its own write.
fn pieces(parts: Vec<Vec<u8>>) -> Body {
    Body::from_stream(futures::stream::unfold(parts.into_iter(), |mut parts| async move {
        let part = parts.next()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Some((Ok::<_, Infallible>(Bytes::from(part)), parts))
    }))
}

async fn inner_api(
    State(fake): State<FakeDify>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get("X-Inner-Api-Key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.seen
        .lock()
        .unwrap()
        .push((path.clone(), key.clone(), body.clone()));
    if key.as_deref() != Some(INNER_KEY) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized.").into_response();
    }
    match path.as_str() {
        "invoke/llm" if body["prompt_messages"][0]["content"] == "slow" => {
            // A frame every 100 ms for a minute; the guard notes when toolplane hangs up.
            struct Hangup(Seen);
            impl Drop for Hangup {
                fn drop(&mut self) {
                    self.0.lock().unwrap().push(("hung up".into(), None, Value::Null));
                }
            }
            let guard = Hangup(fake.seen.clone());
            let frames = futures::stream::unfold((0u64, guard), |(n, guard)| async move {
                if n == 600 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let bytes = Bytes::from(frame(&llm_chunk(n, "tick", None)));
                Some((Ok::<_, Infallible>(bytes), (n + 1, guard)))
            });
            Body::from_stream(frames).into_response()
        }
        "invoke/llm" if body["prompt_messages"][0]["content"] == "fail" => {
            let mut all = frame(&llm_chunk(0, "partial", None));
            all.extend(frame(&json!({"data": null, "error": "model quota exceeded"})));
            Body::from(all).into_response()
        }
        "invoke/llm" => {
            // Three frames, cut across writes in awkward places (inside a header, inside the data).
            let mut all = frame(&llm_chunk(0, "Hel", None));
            all.extend(frame(&llm_chunk(1, "lo", None)));
            all.extend(frame(&llm_chunk(2, "!", Some("stop"))));
            let cuts = [3, 17, 60, all.len() - 5];
            let mut parts = Vec::new();
            let mut last = 0;
            for cut in cuts {
                parts.push(all[last..cut].to_vec());
                last = cut;
            }
            parts.push(all[last..].to_vec());
            ([("content-type", "text/event-stream")], pieces(parts)).into_response()
        }
        "invoke/app" => {
            // The older line-based answer.
            let lines = ["message", "message_end"]
                .iter()
                .map(|e| {
                    format!(
                        "data: {}\n\n",
                        json!({"data": {"event": e, "answer": "hi"}, "error": ""})
                    )
                })
                .collect::<String>();
            ([("content-type", "text/event-stream")], lines).into_response()
        }
        "fetch/app/info" => {
            // A plain (unframed) JSON answer, pretty-printed over several lines.
            let reply = json!({"data": {"id": body["app_id"], "name": "Support bot", "mode": "chat"}, "error": ""});
            (
                [("content-type", "application/json")],
                serde_json::to_string_pretty(&reply).unwrap(),
            )
                .into_response()
        }
        "upload/file/request" => {
            let url = format!("{}/files/upload/for-plugin?sign=fake", fake.base.lock().unwrap());
            // Dify frames a single answer too, labelled application/json.
            let framed = frame(&json!({"data": {"url": url}, "error": ""}));
            ([("content-type", "application/json")], framed).into_response()
        }
        other => (StatusCode::NOT_FOUND, format!("no inner route {other}")).into_response(),
    }
}

async fn fake_upload(State(fake): State<FakeDify>, mut form: axum::extract::Multipart) -> Response {
    let mut got = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("file") {
            let name = field.file_name().unwrap_or_default().to_owned();
            let mime = field.content_type().unwrap_or_default().to_owned();
            let bytes = field.bytes().await.unwrap();
            got = Some((name, mime, bytes));
        }
    }
    let Some((name, mime, bytes)) = got else {
        return (StatusCode::BAD_REQUEST, "no file").into_response();
    };
    fake.seen.lock().unwrap().push((
        "files/upload/for-plugin".into(),
        None,
        json!({"name": name, "content": String::from_utf8_lossy(&bytes)}),
    ));
    (
        StatusCode::CREATED,
        axum::Json(
            json!({"id": "f-1", "name": name, "size": bytes.len(), "extension": ".txt", "mime_type": mime,
                          "preview_url": null}),
        ),
    )
        .into_response()
}

async fn start_fake_dify() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let fake = FakeDify {
        seen: Seen::default(),
        base: Arc::new(Mutex::new(base.clone())),
    };
    let app = axum::Router::new()
        .route("/inner/api/{*path}", axum::routing::post(inner_api))
        .route("/files/upload/for-plugin", axum::routing::post(fake_upload))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, fake.seen)
}

// ---------------------------------------------------------------------------------------------------------------
// The daemon.

struct Fixture {
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(inner: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = DaemonConfig::new(
            KEY,
            format!("sqlite://{}?mode=rwc", dir.path().join("plugin.db").display()),
            dir.path().join("storage"),
        );
        config.verifier.force_verifying_signature = false;
        let mut runtime_config = RuntimeConfig::new(runtime_cache().join("work"));
        runtime_config.tools_path = runtime_cache().join("tools");
        runtime_config.max_execution_timeout = Duration::from_secs(60);
        if let Some((url, key)) = inner {
            runtime_config.dify_inner_api_url = Some(url.to_owned());
            runtime_config.dify_inner_api_key = Some(key.to_owned());
        }
        let runtime = PluginRuntime::new(
            runtime_config,
            Backwards {
                storage: Some(Arc::new(FsStorage::new(dir.path().join("kv")))),
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
        tokio::spawn(serve_daemon(listener, state, std::future::pending()));
        Self {
            base,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Uploads and installs the plugin folders in one task.
    async fn install(&self, folders: &[&str]) {
        let mut uids = Vec::new();
        for folder in folders {
            let package = toolplane_plugin::package_dir(&test_data(folder), 50 << 20, |_| {}).unwrap();
            let form = reqwest::multipart::Form::new()
                .part(
                    "dify_pkg",
                    reqwest::multipart::Part::bytes(package).file_name("p.difypkg"),
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
            let uid = uploaded["data"]["unique_identifier"]
                .as_str()
                .unwrap_or_else(|| panic!("upload failed: {uploaded}"));
            uids.push(uid.to_owned());
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
        let task_id = started["data"]["task_id"].as_str().unwrap().to_owned();
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
                Some("success") => return,
                Some("failed") => panic!("install failed: {task}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("install did not finish")
    }

    /// The SSE frames of one dispatch call, read as Dify's API server reads them.
    async fn dispatch(&self, plugin_id: &str, route: &str, data: Value) -> Vec<Value> {
        let response = self
            .client
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
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let text = response.text().await.unwrap();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l.strip_prefix("data: ").expect("data: prefix")).unwrap())
            .collect()
    }

    /// The messages of one `call` tool invocation on the caller plugin.
    async fn call(&self, mode: &str, text: &str) -> Vec<Value> {
        let frames = self
            .dispatch(
                CALLER,
                "tool/invoke",
                json!({"provider": "caller", "tool": "call", "credentials": {}, "credential_type": "unauthorized",
                       "tool_parameters": {"mode": mode, "text": text}}),
            )
            .await;
        assert!(frames.iter().all(|f| f["code"] == 0), "{frames:?}");
        frames.into_iter().map(|f| f["data"].clone()).collect()
    }
}

fn only_text(messages: &[Value]) -> String {
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["type"], "text", "{messages:?}");
    messages[0]["message"]["text"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn backwards_calls_are_forwarded_to_difys_inner_api() {
    if !online() {
        return;
    }
    let (dify, seen) = start_fake_dify().await;
    let fx = Fixture::start(Some((&dify, INNER_KEY))).await;
    fx.install(&["caller_plugin"]).await;

    // A streamed LLM call: length-prefixed frames cut across writes reach the plugin chunk by chunk.
    let messages = fx.call("llm", "hi").await;
    let chunks: Vec<&Value> = messages.iter().map(|m| &m["message"]["json_object"]).collect();
    let contents: Vec<&str> = chunks.iter().map(|c| c["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["Hel", "lo", "!"], "{messages:?}");
    assert_eq!(chunks[2]["finish_reason"], "stop");
    assert_eq!(chunks[0]["model"], "gpt-test");
    {
        let seen = seen.lock().unwrap();
        let (path, key, body) = seen.last().unwrap();
        assert_eq!(path, "invoke/llm");
        assert_eq!(key.as_deref(), Some(INNER_KEY));
        // The daemon injects the session's tenant, user and the invoke type.
        assert_eq!(body["tenant_id"], TENANT);
        assert_eq!(body["user_id"], "user-1");
        assert_eq!(body["type"], "llm");
        assert_eq!(body["provider"], "langgenius/openai/openai");
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["mode"], "chat");
        assert_eq!(body["stream"], true);
        assert_eq!(body["completion_params"], json!({"temperature": 0}));
        assert_eq!(body["prompt_messages"][0]["content"], "hi");
    }

    // An error item from Dify ends the call with that error, after the chunks before it.
    let messages = fx.call("llm", "fail").await;
    assert_eq!(messages[0]["message"]["json_object"]["content"], "partial");
    assert_eq!(
        messages[1]["message"]["text"],
        "error: invoke llm failed: model quota exceeded"
    );

    // A caller that goes away cancels the forwarded call: toolplane hangs up on Dify.
    let mut response = fx
        .client
        .post(format!("{}/plugin/{TENANT}/dispatch/tool/invoke", fx.base))
        .header("X-Api-Key", KEY)
        .header("X-Plugin-ID", CALLER)
        .json(
            &json!({"user_id": "user-1", "data": {"provider": "caller", "tool": "call", "credentials": {},
                      "tool_parameters": {"mode": "llm", "text": "slow"}}}),
        )
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("tick"), "{first:?}");
    drop(response);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !seen.lock().unwrap().iter().any(|(p, _, _)| p == "hung up") {
        assert!(
            std::time::Instant::now() < deadline,
            "the forwarded call outlived its caller"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An app answering in the older line framing.
    let messages = fx.call("app", "app-42").await;
    let events: Vec<&Value> = messages.iter().map(|m| &m["message"]["json_object"]).collect();
    assert_eq!(
        events,
        [
            &json!({"event": "message", "answer": "hi"}),
            &json!({"event": "message_end", "answer": "hi"})
        ]
    );
    {
        let seen = seen.lock().unwrap();
        let (path, _, body) = seen.last().unwrap();
        assert_eq!(path, "invoke/app");
        assert_eq!(
            (
                &body["app_id"],
                &body["query"],
                &body["inputs"],
                &body["response_mode"],
                &body["type"]
            ),
            (
                &json!("app-42"),
                &json!("hello"),
                &json!({"k": "v"}),
                &json!("streaming"),
                &json!("app")
            )
        );
    }

    // A struct answer as plain JSON.
    let messages = fx.call("fetch_app", "app-7").await;
    assert_eq!(
        messages[0]["message"]["json_object"],
        json!({"id": "app-7", "name": "Support bot", "mode": "chat"})
    );

    // Permission from the manifest: no text-embedding access, and Dify is never asked.
    let before = seen.lock().unwrap().len();
    let denied = only_text(&fx.call("embedding", "x").await);
    assert_eq!(
        denied,
        "error: permission denied, you need to enable text-embedding access in plugin manifest"
    );
    assert_eq!(seen.lock().unwrap().len(), before);

    // upload_file in a standalone daemon goes to Dify for the signed URL; the plugin then uploads there.
    let messages = fx.call("upload", "file body").await;
    let uploaded = &messages[0]["message"]["json_object"];
    assert_eq!(uploaded["id"], "f-1", "{messages:?}");
    assert_eq!(uploaded["name"], "notes.txt");
    assert_eq!(uploaded["mime_type"], "text/plain");
    let seen = seen.lock().unwrap();
    let n = seen.len();
    assert_eq!(seen[n - 2].0, "upload/file/request");
    assert_eq!(
        (&seen[n - 2].2["filename"], &seen[n - 2].2["mimetype"]),
        (&json!("notes.txt"), &json!("text/plain"))
    );
    assert_eq!(seen[n - 1].2, json!({"name": "notes.txt", "content": "file body"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn backwards_calls_without_or_with_a_wrong_inner_api_fail_clearly() {
    if !online() {
        return;
    }
    // Not configured: the plugin is told what to set.
    let fx = Fixture::start(None).await;
    fx.install(&["caller_plugin"]).await;
    let text = only_text(&fx.call("llm", "hi").await);
    assert!(
        text.starts_with("error: backwards invocation `llm` is not available: set DIFY_INNER_API_URL"),
        "{text}"
    );
    let text = only_text(&fx.call("upload", "x").await);
    assert!(
        text.contains("`upload_file` is not available: set DIFY_INNER_API_URL"),
        "{text}"
    );

    // A wrong key: Dify's refusal reaches the plugin.
    let (dify, seen) = start_fake_dify().await;
    let fx = Fixture::start(Some((&dify, "wrong-key"))).await;
    fx.install(&["caller_plugin"]).await;
    let text = only_text(&fx.call("llm", "hi").await);
    assert!(
        text.starts_with("error: invoke llm failed: Dify's inner API answered 401 Unauthorized for invoke/llm"),
        "{text}"
    );
    assert_eq!(seen.lock().unwrap()[0].1.as_deref(), Some("wrong-key"));

    // Nothing listening.
    let fx = Fixture::start(Some(("http://127.0.0.1:9", INNER_KEY))).await;
    fx.install(&["caller_plugin"]).await;
    let text = only_text(&fx.call("fetch_app", "a").await);
    assert!(
        text.contains("cannot reach Dify's inner API at http://127.0.0.1:9/inner/api/fetch/app/info"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_plugin_streams_an_llm_result_through_the_generic_dispatch_path() {
    if !online() {
        return;
    }
    let fx = Fixture::start(None).await;
    fx.install(&["llm_plugin"]).await;
    let prompt = |text: &str| json!([{"role": "user", "content": text, "name": null}]);
    // `POST plugin/{tenant}/dispatch/llm/invoke` as Dify's `PluginModelClient.invoke_llm` sends it.
    let invoke = |text: &str| {
        json!({
            "provider": "fakellm",
            "model_type": "llm",
            "model": "fake-chat",
            "credentials": {"api_key": "good"},
            "prompt_messages": prompt(text),
            "model_parameters": {"temperature": 0.5},
            "tools": null,
            "stop": null,
            "stream": true,
        })
    };
    let frames = fx.dispatch(LLM, "llm/invoke", invoke("hello world")).await;
    assert!(
        frames.iter().all(|f| f["code"] == 0 && f["message"] == "success"),
        "{frames:?}"
    );
    let text: String = frames
        .iter()
        .map(|f| f["data"]["delta"]["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "echo hello world at 0.5");
    assert!(frames.len() >= 6, "one chunk per word plus the last: {frames:?}");
    let last = &frames.last().unwrap()["data"];
    assert_eq!(last["model"], "fake-chat");
    assert_eq!(last["delta"]["finish_reason"], "stop");
    assert_eq!(last["delta"]["usage"]["prompt_tokens"], 2);
    assert_eq!(last["delta"]["usage"]["currency"], "USD");
    let indexes: Vec<u64> = frames
        .iter()
        .map(|f| f["data"]["delta"]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, (0..frames.len() as u64).collect::<Vec<_>>());

    // A model session may not call back into the host.
    let frames = fx.dispatch(LLM, "llm/invoke", invoke("storage")).await;
    let text: String = frames
        .iter()
        .map(|f| f["data"]["delta"]["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "refused: you can not invoke dify from model");

    // Token counting and credential validation.
    let tokens = fx
        .dispatch(
            LLM,
            "llm/num_tokens",
            json!({"provider": "fakellm", "model_type": "llm", "model": "fake-chat",
                   "credentials": {"api_key": "good"}, "prompt_messages": prompt("one two three"), "tools": []}),
        )
        .await;
    assert_eq!(
        tokens,
        [json!({"code": 0, "message": "success", "data": {"num_tokens": 3}})]
    );
    let ok = fx
        .dispatch(
            LLM,
            "model/validate_provider_credentials",
            json!({"provider": "fakellm", "credentials": {"api_key": "good"}}),
        )
        .await;
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0]["data"]["result"], true, "{ok:?}");
    let bad = fx
        .dispatch(
            LLM,
            "model/validate_provider_credentials",
            json!({"provider": "fakellm", "credentials": {"api_key": "nope"}}),
        )
        .await;
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["code"], -500, "{bad:?}");
    let inner: Value = serde_json::from_str(bad[0]["message"].as_str().unwrap()).unwrap();
    assert_eq!(inner["error_type"], "PluginInvokeError");
    assert!(
        inner["message"].as_str().unwrap().contains("api_key must be `good`"),
        "{inner}"
    );
}
