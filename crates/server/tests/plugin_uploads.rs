//! `upload_file` backwards calls inside `toolplane serve`: a real `dify_plugin==0.10.2` plugin
//! (`crates/daemon/tests/data/caller_plugin`) calls `self.session.file.upload(...)`; the runtime hands it a URL signed
//! for toolplane's own `POST /files/upload/for-plugin`; the SDK uploads the multipart `file` there and parses the
//! 201 UploadFileResponse; the stored tool file is then fetched through its signed preview URL. Forged, altered
//! and expired upload URLs are refused.
//!
//! Python environments are shared with the runtime crate's tests in `crates/runtime/.cache/`; without PyPI the
//! test prints a notice and passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use toolplane_net::NetConfig;
use toolplane_runtime::{Backwards, PluginRuntime, RuntimeConfig};
use toolplane_server::plugin_uploads::PluginUploadUrls;
use toolplane_server::{AppState, AppStateParts, ServerConfig, Settings};
use toolplane_store::{BlobConfig, BlobStore, Store};

const DAEMON_KEY: &str = "plugin-upload-daemon-key";
const SECRET: &str = "upload-test-secret";

fn online() -> bool {
    use std::net::ToSocketAddrs;
    let ok = ("pypi.org", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    if !ok {
        eprintln!(
            "NOTICE: skipping the plugin upload test: pypi.org is unreachable, so dify_plugin cannot be installed"
        );
    }
    ok
}

fn runtime_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/.cache")
}

struct Server {
    base: String,
    /// The toolplane tenant the daemon's tenant path names (`toolplane serve` shares tenant ids).
    tenant: String,
    state: AppState,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = Settings::from_pairs([
        ("TOOLPLANE_DATA_DIR", dir.path().display().to_string()),
        ("TOOLPLANE_BIND", "127.0.0.1:0".into()),
        ("SECRET_KEY", SECRET.into()),
        ("CONSOLE_API_URL", base.clone()),
    ]);
    let config = ServerConfig::from_settings(&settings).unwrap();
    let store = Store::connect(&config.database_url).await.unwrap();
    store.migrate().await.unwrap();
    let blobs =
        BlobStore::from_config(&BlobConfig::from_vars(settings.lookup(), config.data_dir.clone()).unwrap()).unwrap();
    let mut daemon_config = toolplane_daemon::DaemonConfig::new(
        DAEMON_KEY,
        format!("sqlite://{}/plugin.db?mode=rwc", dir.path().display()),
        dir.path().join("plugin-storage"),
    );
    daemon_config.verifier.force_verifying_signature = false;
    let mut runtime_config = RuntimeConfig::new(runtime_cache().join("work"));
    runtime_config.tools_path = runtime_cache().join("tools");
    // As `toolplane serve` wires it: uploads go to this server's own files route.
    let backwards = Backwards {
        uploads: Some(Arc::new(PluginUploadUrls::new(SECRET, &config.internal_files_url))),
        ..Backwards::default()
    };
    let runtime = PluginRuntime::new(runtime_config, backwards);
    let daemon = toolplane_daemon::DaemonState::open_with_runtime(daemon_config, blobs.clone(), runtime)
        .await
        .unwrap();
    let state = AppState::from_parts(AppStateParts {
        config,
        store,
        blobs,
        builtin: Vec::new(),
        net: NetConfig::default(),
        daemon: Some(daemon),
    });
    state.bootstrap().await.unwrap();
    let tenant = state.create_tenant("uploads").await.unwrap().id;
    tokio::spawn(toolplane_server::serve(listener, state.clone(), std::future::pending()));
    Server {
        base,
        tenant,
        state,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Server {
    async fn install_caller(&self) {
        let package = toolplane_plugin::package_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../daemon/tests/data/caller_plugin"),
            50 << 20,
            |_| {},
        )
        .unwrap();
        let form = reqwest::multipart::Form::new()
            .part(
                "dify_pkg",
                reqwest::multipart::Part::bytes(package).file_name("caller.difypkg"),
            )
            .text("verify_signature", "false");
        let uploaded: Value = self
            .http
            .post(format!(
                "{}/plugin/{}/management/install/upload/package",
                self.base, self.tenant
            ))
            .header("X-Api-Key", DAEMON_KEY)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let uid = uploaded["data"]["unique_identifier"].as_str().unwrap().to_owned();
        let started: Value = self
            .http
            .post(format!(
                "{}/plugin/{}/management/install/identifiers",
                self.base, self.tenant
            ))
            .header("X-Api-Key", DAEMON_KEY)
            .json(&json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": [{}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let task_id = started["data"]["task_id"].as_str().unwrap().to_owned();
        for _ in 0..12_000 {
            let task: Value = self
                .http
                .get(format!(
                    "{}/plugin/{}/management/install/tasks/{task_id}",
                    self.base, self.tenant
                ))
                .header("X-Api-Key", DAEMON_KEY)
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

    /// The single message of the caller plugin's `upload` mode.
    async fn upload_through_the_plugin(&self, content: &str) -> Value {
        let text = self
            .http
            .post(format!("{}/plugin/{}/dispatch/tool/invoke", self.base, self.tenant))
            .header("X-Api-Key", DAEMON_KEY)
            .header("X-Plugin-ID", "toolplane_tests/caller")
            .json(&json!({"user_id": "user-9", "data": {
                "provider": "caller", "tool": "call", "credentials": {}, "credential_type": "unauthorized",
                "tool_parameters": {"mode": "upload", "text": content}}}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let frames: Vec<Value> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["code"], 0, "{frames:?}");
        frames[0]["data"].clone()
    }

    async fn post_file(&self, url: &str, name: &str, mime: &str, bytes: &'static [u8]) -> reqwest::Response {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str(mime)
            .unwrap();
        self.http
            .post(url)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_uploads_a_file_to_toolplanes_own_files_route() {
    if !online() {
        return;
    }
    let server = start_server().await;
    server.install_caller().await;

    let message = server.upload_through_the_plugin("hello from the plugin").await;
    assert_eq!(message["type"], "json", "{message}");
    let uploaded = &message["message"]["json_object"];
    // What the SDK parsed from the 201 answer (UploadFileResponse).
    assert_eq!(uploaded["name"], "notes.txt", "{uploaded}");
    assert_eq!(uploaded["mime_type"], "text/plain");
    assert_eq!(uploaded["extension"], ".txt");
    assert_eq!(uploaded["size"], 21);
    assert_eq!(uploaded["type"], "document");
    let id = uploaded["id"].as_str().unwrap();

    // The tool file is stored for the session's tenant and user.
    let record = server
        .state
        .store
        .tool_files()
        .get(&server.tenant, id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(record.user_id, "user-9");
    assert_eq!(record.mimetype, "text/plain");

    // And can be fetched through its signed preview URL.
    let preview = uploaded["preview_url"].as_str().unwrap();
    assert!(
        preview.starts_with(&format!("{}/files/tools/{id}.txt?timestamp=", server.base)),
        "{preview}"
    );
    let fetched = server.http.get(preview).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["content-type"], "text/plain");
    assert_eq!(fetched.text().await.unwrap(), "hello from the plugin");

    // The upload URL is bound to the file's name and type, the ids and its age.
    let urls = PluginUploadUrls::new(SECRET, &server.base);
    let url =
        toolplane_runtime::FileUploads::upload_url(&urls, &server.tenant, "user-9", "a.txt", "text/plain").unwrap();
    let other_name = server.post_file(&url, "b.txt", "text/plain", b"x").await;
    assert_eq!(other_name.status(), 403);
    assert_eq!(other_name.json::<Value>().await.unwrap()["message"], "Invalid request.");
    assert_eq!(server.post_file(&url, "a.txt", "text/html", b"x").await.status(), 403);
    let other_tenant = url.replace(&format!("tenant_id={}", server.tenant), "tenant_id=someone-else");
    assert_eq!(
        server
            .post_file(&other_tenant, "a.txt", "text/plain", b"x")
            .await
            .status(),
        403
    );
    let forged = FileUploadsForger::url(&server.base, &server.tenant, "wrong-secret", 0);
    assert_eq!(
        server.post_file(&forged, "a.txt", "text/plain", b"x").await.status(),
        403
    );
    let expired = FileUploadsForger::url(&server.base, &server.tenant, SECRET, 301);
    assert_eq!(
        server.post_file(&expired, "a.txt", "text/plain", b"x").await.status(),
        403
    );
    let fresh = FileUploadsForger::url(&server.base, &server.tenant, SECRET, 0);
    let accepted = server.post_file(&fresh, "a.txt", "text/plain", b"abc").await;
    assert_eq!(accepted.status(), 201);
    assert_eq!(accepted.json::<Value>().await.unwrap()["size"], 3);
    // The genuine URL still works for its own file, and a request without a file part is a clear 400.
    assert_eq!(server.post_file(&url, "a.txt", "text/plain", b"ok").await.status(), 201);
    let no_file = server
        .http
        .post(&url)
        .multipart(reqwest::multipart::Form::new().text("other", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_file.status(), 400);
    // A genuine URL for a tenant toolplane does not know: a clear 404, nothing stored.
    let ghost = FileUploadsForger::url(&server.base, "no-such-tenant", SECRET, 0);
    let refused = server.post_file(&ghost, "a.txt", "text/plain", b"x").await;
    assert_eq!(refused.status(), 404);
    let message = refused.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("tenant no-such-tenant does not exist"), "{message}");
}

/// Builds upload URLs with a chosen key and age, as Dify's helper would.
struct FileUploadsForger;

impl FileUploadsForger {
    fn url(base: &str, tenant: &str, secret: &str, age_secs: u64) -> String {
        let signer = toolplane_secrets::FileSigner::new(secret);
        let timestamp = (toolplane_secrets::FileSigner::now() - age_secs).to_string();
        let nonce = "00112233445566778899aabbccddeeff";
        let sign = signer.upload_signature("a.txt", "text/plain", tenant, "user-9", &timestamp, nonce);
        format!(
            "{base}/files/upload/for-plugin?timestamp={timestamp}&nonce={nonce}&sign={sign}&user_id=user-9&tenant_id={tenant}"
        )
    }
}
