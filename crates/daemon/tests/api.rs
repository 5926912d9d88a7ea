//! The daemon over real HTTP on loopback: packages are built from `tests/data/echo_plugin`, uploaded, installed,
//! listed, upgraded and uninstalled through the Dify-compatible routes, on SQLite and (when
//! `TOOLPLANE_TEST_POSTGRES_URL` is set) on a fresh PostgreSQL schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use toolplane_core::{ProviderSource, ToolError, ToolProviderType, ToolRuntime};
use toolplane_daemon::*;
use toolplane_plugin::{
    AuthorizedCategory, DEFAULT_MAX_PACKAGE_SIZE, PluginUniqueIdentifier, Verification, generate_signing_key_pair,
    package_dir, sign,
};
use toolplane_store::{BlobConfig, BlobStore};

const KEY: &str = "test-server-key";
const PG_ENV: &str = "TOOLPLANE_TEST_POSTGRES_URL";

fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/echo_plugin")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The echo plugin packaged at `version`.
fn package(version: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&plugin_dir(), dir.path());
    let manifest = dir.path().join("manifest.yaml");
    let text =
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replacen("version: 0.0.1", &format!("version: {version}"), 1);
    std::fs::write(&manifest, text).unwrap();
    package_dir(dir.path(), DEFAULT_MAX_PACKAGE_SIZE, |_| {}).unwrap()
}

/// A running daemon on loopback.
struct Daemon {
    base: String,
    client: reqwest::Client,
    state: DaemonState,
    storage: PathBuf,
    _dir: Arc<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Daemon {
    async fn start(config: DaemonConfig, environment: Arc<dyn PluginEnvironment>, dir: Arc<tempfile::TempDir>) -> Self {
        let storage = config.storage_root.clone();
        let blobs = BlobStore::from_config(&BlobConfig::Local { root: storage.clone() }).unwrap();
        let state = DaemonState::open_with_environment(config, blobs, environment)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(serve_daemon(listener, state.clone(), async {
            rx.await.ok();
        }));
        Daemon {
            base,
            client: reqwest::Client::new(),
            state,
            storage,
            _dir: dir,
            shutdown: Some(tx),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        self.state.db().close().await;
    }

    fn url(&self, tenant: &str, path: &str) -> String {
        format!("{}/plugin/{tenant}/management/{path}", self.base)
    }

    async fn get(&self, tenant: &str, path: &str) -> Value {
        let response = self
            .client
            .get(self.url(tenant, path))
            .header("X-Api-Key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    async fn post(&self, tenant: &str, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(self.url(tenant, path))
            .header("X-Api-Key", KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "POST {path}");
        response.json().await.unwrap()
    }

    async fn upload(&self, tenant: &str, bytes: Vec<u8>, verify_signature: bool) -> Value {
        let form = reqwest::multipart::Form::new()
            .part(
                "dify_pkg",
                reqwest::multipart::Part::bytes(bytes)
                    .file_name("dify_pkg")
                    .mime_str("application/octet-stream")
                    .unwrap(),
            )
            .text("verify_signature", if verify_signature { "true" } else { "false" });
        let response = self
            .client
            .post(self.url(tenant, "install/upload/package"))
            .header("X-Api-Key", KEY)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn upload_bundle(&self, tenant: &str, bytes: Vec<u8>, verify_signature: bool) -> Value {
        let form = reqwest::multipart::Form::new()
            .part(
                "dify_bundle",
                reqwest::multipart::Part::bytes(bytes)
                    .file_name("dify_bundle")
                    .mime_str("application/octet-stream")
                    .unwrap(),
            )
            .text("verify_signature", if verify_signature { "true" } else { "false" });
        let response = self
            .client
            .post(self.url(tenant, "install/upload/bundle"))
            .header("X-Api-Key", KEY)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Polls a task until it finishes.
    async fn wait_task(&self, tenant: &str, task_id: &str) -> Value {
        for _ in 0..200 {
            let task = data(self.get(tenant, &format!("install/tasks/{task_id}")).await);
            if task["status"] == "success" || task["status"] == "failed" {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("task {task_id} did not finish");
    }
}

/// The `data` of a successful envelope.
fn data(envelope: Value) -> Value {
    assert_eq!(envelope["code"], 0, "{envelope}");
    assert_eq!(envelope["message"], "success");
    envelope["data"].clone()
}

/// The decoded `{message, error_type, args}` of an error envelope.
fn error(envelope: &Value, code: i64, error_type: &str) -> String {
    assert_eq!(envelope["code"], code, "{envelope}");
    assert!(envelope["data"].is_null());
    let inner: Value = serde_json::from_str(envelope["message"].as_str().unwrap()).unwrap();
    assert_eq!(inner["error_type"], error_type, "{inner}");
    assert!(inner.get("args").is_some());
    inner["message"].as_str().unwrap().to_owned()
}

fn unsigned_config(dir: &Path, db_url: &str) -> DaemonConfig {
    let mut config = DaemonConfig::new(KEY, db_url, dir.join("storage"));
    config.verifier.force_verifying_signature = false;
    config
}

/// Runs `test` with a fresh database URL: an SQLite file, then a PostgreSQL schema when configured.
async fn on_each_backend<F, Fut>(test: F)
where
    F: Fn(String, Arc<tempfile::TempDir>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}/data/plugin.db?mode=rwc", dir.path().display());
    test(url, dir).await;

    let Some(base) = std::env::var(PG_ENV).ok().filter(|v| !v.is_empty()) else {
        eprintln!("skipping PostgreSQL: set {PG_ENV} to run these tests on PostgreSQL too");
        return;
    };
    let schema = format!("d_{}", uuid::Uuid::new_v4().simple());
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

#[tokio::test]
async fn full_lifecycle_with_two_tenants() {
    on_each_backend(|url, dir| async move {
        let d = Daemon::start(unsigned_config(dir.path(), &url), Arc::new(NoRuntime), dir.clone()).await;
        let (a, b) = ("tenant-a", "tenant-b");

        // Upload: {unique_identifier, manifest, verification}.
        let v1 = package("0.0.1");
        let uploaded = data(d.upload(a, v1.clone(), false).await);
        let uid1 = uploaded["unique_identifier"].as_str().unwrap().to_owned();
        let parsed = PluginUniqueIdentifier::parse(&uid1).unwrap();
        assert_eq!(parsed.plugin_id(), "toolplane_tests/echo");
        assert_eq!(parsed.version(), "0.0.1");
        assert!(uploaded["verification"].is_null());
        let manifest = &uploaded["manifest"];
        assert_eq!(manifest["name"], "echo");
        assert_eq!(manifest["author"], "toolplane_tests");
        assert_eq!(manifest["version"], "0.0.1");
        assert_eq!(manifest["type"], "plugin");
        assert_eq!(manifest["category"], "tool");
        assert_eq!(manifest["verified"], false);
        assert_eq!(manifest["label"]["zh_Hans"], "回声");
        assert_eq!(manifest["meta"]["runner"]["entrypoint"], "main");
        assert_eq!(manifest["tags"], json!(["utilities"]));
        let icon = manifest["icon"].as_str().unwrap().to_owned();
        let svg = std::fs::read(plugin_dir().join("_assets/icon.svg")).unwrap();
        assert_eq!(icon, media_id("icon.svg", &svg), "icon remapped to its media id");
        assert_eq!(manifest["tool"]["identity"]["icon"], icon.as_str());
        assert_eq!(manifest["tool"]["identity"]["name"], "echo");
        assert_eq!(manifest["tool"]["tools"][0]["identity"]["name"], "echo");
        assert_eq!(manifest["tool"]["credentials_schema"][0]["name"], "api_key");
        assert!(d.storage.join("plugin_packages").join(&uid1).is_file(), "package cached by unique identifier");
        assert!(d.storage.join("assets").join(&icon).is_file(), "asset in the media bucket");
        // Uploading again is idempotent.
        assert_eq!(data(d.upload(a, v1.clone(), false).await)["unique_identifier"], uid1.as_str());

        // Not installed yet.
        let exists = d.get(a, &format!("fetch/identifier?plugin_unique_identifier={}", enc(&uid1))).await;
        assert_eq!(data(exists), false);

        // Install for tenant A: a task that succeeds.
        let start = data(
            d.post(a, "install/identifiers", json!({
                "plugin_unique_identifiers": [uid1], "source": "package", "metas": [{}]
            }))
            .await,
        );
        assert_eq!(start["all_installed"], false);
        let task_id = start["task_id"].as_str().unwrap().to_owned();
        let task = d.wait_task(a, &task_id).await;
        assert_eq!(task["status"], "success", "{task}");
        assert_eq!(task["id"], task_id.as_str());
        assert_eq!(task["tenant_id"], a);
        assert_eq!(task["total_plugins"], 1);
        assert_eq!(task["completed_plugins"], 1);
        assert!(task["created_at"].as_str().unwrap().ends_with('Z'));
        let item = &task["plugins"][0];
        assert_eq!(item["plugin_unique_identifier"], uid1.as_str());
        assert_eq!(item["plugin_id"], "toolplane_tests/echo");
        assert_eq!(item["status"], "success");
        assert_eq!(item["icon"], icon.as_str());
        assert_eq!(item["labels"]["en_US"], "Echo");
        assert_eq!(item["source"], "package");
        assert!(item["message"].is_string());
        assert!(d.storage.join("plugin").join(&uid1).is_file(), "copied to the installed bucket");
        assert_eq!(d.state.db().plugin_refers(&uid1).await.unwrap(), Some(1));
        let tasks = data(d.get(a, "install/tasks?page=1&page_size=10").await);
        assert_eq!(tasks.as_array().unwrap().len(), 1);
        assert_eq!(data(d.get(b, "install/tasks?page=1&page_size=10").await), json!([]));

        // Installing again for the same tenant is refused.
        let again = d
            .post(a, "install/identifiers", json!({"plugin_unique_identifiers": [uid1], "source": "package", "metas": [{}]}))
            .await;
        assert!(error(&again, -400, "PluginDaemonBadRequestError").contains("already installed"));

        // Listing.
        let list = data(d.get(a, "list?page=1&page_size=256").await);
        assert_eq!(list["total"], 1);
        let entry = &list["list"][0];
        for field in [
            "id", "created_at", "updated_at", "name", "plugin_id", "tenant_id", "plugin_unique_identifier",
            "installation_id", "endpoints_setups", "endpoints_active", "runtime_type", "source", "meta", "version",
            "checksum", "declaration",
        ] {
            assert!(entry.get(field).is_some(), "list item lacks {field}: {entry}");
        }
        assert_eq!(entry["name"], "echo");
        assert_eq!(entry["plugin_id"], "toolplane_tests/echo");
        assert_eq!(entry["tenant_id"], a);
        assert_eq!(entry["installation_id"], entry["id"]);
        assert_eq!(entry["runtime_type"], "local");
        assert_eq!(entry["source"], "package");
        assert_eq!(entry["version"], "0.0.1");
        assert_eq!(entry["checksum"], parsed.checksum());
        assert_eq!(entry["endpoints_active"], 0);
        assert_eq!(entry["declaration"]["category"], "tool");
        let installation_a = entry["id"].as_str().unwrap().to_owned();

        let ids = data(d.get(a, "installation/ids?category=tool").await);
        assert_eq!(ids, json!({"plugin_ids": ["toolplane_tests/echo"]}));
        assert_eq!(data(d.get(a, "installation/ids?category=model").await), json!({"plugin_ids": []}));
        let tool_list = data(d.get(a, "tool/list?page=1&page_size=10&query=ech&tags=utilities").await);
        assert_eq!(tool_list["has_more"], false);
        assert_eq!(tool_list["list"][0]["plugin_id"], "toolplane_tests/echo");
        assert_eq!(data(d.get(a, "model/list?page=1&page_size=10").await)["list"], json!([]));
        let batch = data(d.post(a, "installation/fetch/batch", json!({"plugin_ids": ["toolplane_tests/echo", "x/y"]})).await);
        assert_eq!(batch.as_array().unwrap().len(), 1);
        assert_eq!(batch[0]["plugin_unique_identifier"], uid1.as_str());

        // Tools.
        let tools = data(d.get(a, "tools?page=1&page_size=256").await);
        let tool = &tools[0];
        assert_eq!(tool["provider"], "echo");
        assert_eq!(tool["plugin_id"], "toolplane_tests/echo");
        assert_eq!(tool["plugin_unique_identifier"], uid1.as_str());
        assert_eq!(tool["tenant_id"], a);
        assert_eq!(tool["declaration"]["identity"]["name"], "echo");
        assert_eq!(tool["declaration"]["tools"][0]["parameters"][0]["name"], "text");
        let one = data(d.get(a, "tool?plugin_id=toolplane_tests/echo&provider=echo").await);
        assert_eq!(one["provider"], "echo");
        let missing_tool = d.get(a, "tool?plugin_id=toolplane_tests/echo&provider=nope").await;
        error(&missing_tool, -404, "PluginNotFoundError");
        let exist = data(
            d.post(a, "tools/check_existence", json!({"provider_ids": [
                {"plugin_id": "toolplane_tests/echo", "provider_name": "echo"},
                {"plugin_id": "toolplane_tests/echo", "provider_name": "gone"},
            ]}))
            .await,
        );
        assert_eq!(exist, json!([true, false]));
        assert_eq!(data(d.get(a, "models?page=1&page_size=10").await), json!([]));
        assert_eq!(data(d.get(a, "models/bindings").await), json!([]));

        // Fetch manifest, readme, identifier, decode, assets.
        let fetched = data(d.get(a, &format!("fetch/manifest?plugin_unique_identifier={}", enc(&uid1))).await);
        assert_eq!(&fetched, manifest);
        assert_eq!(data(d.get(a, &format!("fetch/identifier?plugin_unique_identifier={}", enc(&uid1))).await), true);
        let readme = data(d.get(a, &format!("fetch/readme?plugin_unique_identifier={}&language=zh_Hans", enc(&uid1))).await);
        assert_eq!(readme["language"], "zh_Hans");
        assert!(readme["content"].as_str().unwrap().contains("回声"));
        let readme = data(d.get(a, &format!("fetch/readme?plugin_unique_identifier={}&language=ja_JP", enc(&uid1))).await);
        assert_eq!(readme["language"], "en_US");
        assert!(readme["content"].as_str().unwrap().starts_with("# Echo"));
        // Dify sends decode/from_identifier as a GET with a JSON body.
        let decoded: Value = d
            .client
            .get(d.url(a, "decode/from_identifier"))
            .header("X-Api-Key", KEY)
            .json(&json!({"plugin_unique_identifier": uid1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let decoded = data(decoded);
        assert_eq!(decoded["unique_identifier"], uid1.as_str());
        assert_eq!(decoded["manifest"]["name"], "echo");
        assert!(decoded["verification"].is_null());
        let asset = d.client.get(format!("{}/plugin/{a}/asset/{icon}", d.base)).header("X-Api-Key", KEY).send().await.unwrap();
        assert_eq!(asset.status(), 200);
        assert_eq!(asset.headers()["content-type"], "application/octet-stream");
        assert_eq!(asset.bytes().await.unwrap().as_ref(), svg.as_slice());
        let extracted = d
            .client
            .get(format!("{}/plugin/{a}/extract-asset?plugin_unique_identifier={}&file_path=icon.svg", d.base, enc(&uid1)))
            .header("X-Api-Key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(extracted.bytes().await.unwrap().as_ref(), svg.as_slice());
        let no_asset: Value = d
            .client
            .get(format!("{}/plugin/{a}/asset/nothing.svg", d.base))
            .header("X-Api-Key", KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        error(&no_asset, -404, "PluginDaemonNotFoundError");

        // Catalog: plugin providers with Dify ids; invocation is not available yet.
        let source = PluginProviderSource::new(d.state.clone());
        assert_eq!(source.provider_type(), ToolProviderType::Plugin);
        let provider = source.get(a, "toolplane_tests/echo/echo").await;
        assert!(provider.is_ok(), "{:?}", provider.err());
        let providers = source.list(a).await.unwrap();
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].id(), "toolplane_tests/echo/echo");
        assert_eq!(providers[0].entity().plugin_id.as_deref(), Some("toolplane_tests/echo"));
        assert!(source.list(b).await.unwrap().is_empty());
        let provider = source.get(a, "toolplane_tests/echo/echo").await.unwrap().unwrap();
        let tool = provider.tool("echo").await.unwrap().unwrap();
        let runtime = ToolRuntime {
            tenant_id: a.into(),
            user_id: None,
            credentials: Default::default(),
            credential_type: None,
            runtime_parameters: Default::default(),
            invoke_from: Default::default(),
        };
        let err = tool.invoke(runtime, Default::default(), Default::default()).await.err().unwrap();
        assert!(matches!(err, ToolError::NotSupported(ref m) if m.contains("plugin runtime not available")), "{err}");
        assert_eq!(
            source.providers_exist(a, &["toolplane_tests/echo/echo", "toolplane_tests/echo/x", "time"]).await.unwrap(),
            vec![true, false, false]
        );

        // Tenant B reuses the package: installed at once, refers = 2.
        let start = data(
            d.post(b, "install/identifiers", json!({"plugin_unique_identifiers": [uid1], "source": "marketplace", "metas": [{"plugin_unique_identifier": uid1}]}))
                .await,
        );
        assert_eq!(start, json!({"all_installed": true, "task_id": ""}));
        assert_eq!(d.state.db().plugin_refers(&uid1).await.unwrap(), Some(2));
        let list_b = data(d.get(b, "list?page=1&page_size=10").await);
        assert_eq!(list_b["list"][0]["source"], "marketplace");
        assert_eq!(list_b["list"][0]["meta"]["plugin_unique_identifier"], uid1.as_str());
        let installation_b = list_b["list"][0]["id"].as_str().unwrap().to_owned();

        // Missing dependencies.
        let v2 = package("0.0.2");
        let uid2 = data(d.upload(a, v2, false).await)["unique_identifier"].as_str().unwrap().to_owned();
        assert_ne!(uid1, uid2);
        let missing = data(d.post(a, "installation/missing", json!({"plugin_unique_identifiers": [uid1, uid2]})).await);
        assert_eq!(missing, json!([{"plugin_unique_identifier": uid2, "current_identifier": uid1}]));

        // Upgrade A to 0.0.2: a task; both versions referenced once.
        let start = data(
            d.post(a, "install/upgrade", json!({
                "original_plugin_unique_identifier": uid1, "new_plugin_unique_identifier": uid2,
                "source": "package", "meta": {}
            }))
            .await,
        );
        assert_eq!(start["all_installed"], false);
        let task = d.wait_task(a, start["task_id"].as_str().unwrap()).await;
        assert_eq!(task["status"], "success", "{task}");
        assert_eq!(d.state.db().plugin_refers(&uid1).await.unwrap(), Some(1));
        assert_eq!(d.state.db().plugin_refers(&uid2).await.unwrap(), Some(1));
        let list = data(d.get(a, "list?page=1&page_size=10").await);
        assert_eq!(list["list"][0]["plugin_unique_identifier"], uid2.as_str());
        assert_eq!(list["list"][0]["version"], "0.0.2");
        assert_eq!(data(d.get(a, "tools?page=1&page_size=10").await)[0]["plugin_unique_identifier"], uid2.as_str());

        // Upgrade B: synchronous (0.0.2 already runs); 0.0.1 is no longer referenced and goes.
        let start = data(
            d.post(b, "install/upgrade", json!({
                "original_plugin_unique_identifier": uid1, "new_plugin_unique_identifier": uid2,
                "source": "package", "meta": {}
            }))
            .await,
        );
        assert_eq!(start, json!({"all_installed": true, "task_id": ""}));
        assert_eq!(d.state.db().plugin_refers(&uid1).await.unwrap(), None);
        assert_eq!(d.state.db().plugin_refers(&uid2).await.unwrap(), Some(2));
        assert!(!d.storage.join("plugin").join(&uid1).exists(), "superseded version removed from the installed bucket");
        assert!(d.storage.join("plugin").join(&uid2).is_file());
        let bad_upgrade = d
            .post(b, "install/upgrade", json!({"original_plugin_unique_identifier": uid1, "new_plugin_unique_identifier": uid2}))
            .await;
        error(&bad_upgrade, -404, "PluginNotFoundError");

        // Uninstall both: nothing refers to 0.0.2 any more.
        assert_eq!(data(d.post(a, "uninstall", json!({"plugin_installation_id": installation_a})).await), true);
        assert_eq!(d.state.db().plugin_refers(&uid2).await.unwrap(), Some(1));
        // Tenant A cannot uninstall tenant B's installation.
        let foreign = d.post(a, "uninstall", json!({"plugin_installation_id": installation_b})).await;
        error(&foreign, -404, "PluginNotFoundError");
        assert_eq!(data(d.post(b, "uninstall", json!({"plugin_installation_id": installation_b})).await), true);
        assert_eq!(d.state.db().plugin_refers(&uid2).await.unwrap(), None);
        assert!(!d.storage.join("plugin").join(&uid2).exists());
        assert_eq!(data(d.get(a, "list?page=1&page_size=10").await), json!({"list": [], "total": 0}));
        assert_eq!(
            data(d.post(a, "tools/check_existence", json!({"provider_ids": [{"plugin_id": "toolplane_tests/echo", "provider_name": "echo"}]})).await),
            json!([false])
        );
        assert!(source.list(a).await.unwrap().is_empty());

        // Task deletion.
        let deleted = d.post(a, &format!("install/tasks/{task_id}/delete"), json!({})).await;
        assert_eq!(data(deleted), true);
        let gone = d.get(a, &format!("install/tasks/{task_id}")).await;
        error(&gone, -404, "PluginDaemonNotFoundError");
        assert_eq!(data(d.post(a, "install/tasks/delete_all", json!({})).await), true);
        assert_eq!(data(d.get(a, "install/tasks?page=1&page_size=10").await), json!([]));
        d.stop().await;
    })
    .await;
}

fn enc(s: &str) -> String {
    s.replace('/', "%2F").replace(':', "%3A").replace('@', "%40")
}

#[tokio::test]
async fn signature_policy() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}/plugin.db", dir.path().display());

    // FORCE_VERIFYING_SIGNATURE (the default) rejects an unsigned package.
    let forced = DaemonConfig::new(KEY, url.clone(), dir.path().join("storage"));
    assert!(forced.verifier.force_verifying_signature);
    let d = Daemon::start(forced, Arc::new(NoRuntime), dir.clone()).await;
    let unsigned = package("0.0.1");
    let rejected = d.upload("t", unsigned.clone(), false).await;
    let message = error(&rejected, -400, "PluginDaemonBadRequestError");
    assert!(message.contains("bad signature"), "{message}");
    d.stop().await;

    // Signed with a generated key, trusted as a third-party key: accepted and verified.
    let pair = generate_signing_key_pair().unwrap();
    let key_path = dir.path().join("third_party.public.pem");
    std::fs::write(&key_path, &pair.public_pem).unwrap();
    let mut trusting = DaemonConfig::new(KEY, url.clone(), dir.path().join("storage"));
    trusting.verifier.third_party_enabled = true;
    trusting.verifier.third_party_public_keys = vec![key_path];
    let d = Daemon::start(trusting, Arc::new(NoRuntime), dir.clone()).await;
    let signed = sign(
        &unsigned,
        &pair.private_pem,
        Some(Verification {
            authorized_category: AuthorizedCategory::Community,
        }),
    )
    .unwrap();
    let accepted = data(d.upload("t", signed.clone(), true).await);
    assert_eq!(accepted["verification"], json!({"authorized_category": "community"}));
    assert_eq!(accepted["manifest"]["verified"], true);
    // A package signed by a key nobody trusts is rejected.
    let stranger = generate_signing_key_pair().unwrap();
    let untrusted = sign(&unsigned, &stranger.private_pem, None).unwrap();
    let rejected = d.upload("t", untrusted, false).await;
    assert!(error(&rejected, -400, "PluginDaemonBadRequestError").contains("bad signature"));
    d.stop().await;

    // Without forcing, verify_signature=true still rejects an unsigned package; false accepts it.
    let mut relaxed = DaemonConfig::new(KEY, url, dir.path().join("storage"));
    relaxed.verifier.force_verifying_signature = false;
    let d = Daemon::start(relaxed, Arc::new(NoRuntime), dir.clone()).await;
    let rejected = d.upload("t", unsigned.clone(), true).await;
    assert!(error(&rejected, -400, "PluginDaemonBadRequestError").contains("bad signature"));
    let accepted = data(d.upload("t", unsigned, false).await);
    assert_eq!(accepted["manifest"]["verified"], false);
    d.stop().await;
}

#[tokio::test]
async fn auth_bad_input_and_limits() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}/plugin.db", dir.path().display());
    let mut config = unsigned_config(dir.path(), &url);
    let small_limit = 4096;
    config.max_plugin_package_size = small_limit;
    let d = Daemon::start(config, Arc::new(NoRuntime), dir.clone()).await;

    // Health needs no key.
    let health: Value = d
        .client
        .get(format!("{}/health/check", d.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["platform"], "local");
    assert!(health["version"].is_string());

    // Wrong or missing key: 401 with the unauthorized envelope.
    for key in [Some("wrong"), None] {
        let mut request = d.client.get(d.url("t", "list?page=1&page_size=1"));
        if let Some(key) = key {
            request = request.header("X-Api-Key", key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        error(&body, -401, "PluginDaemonUnauthorizedError");
    }

    // Unknown route: the original's 404 body.
    let response = d.client.get(format!("{}/nope", d.base)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"code": "not_found", "message": "route not found"})
    );

    // Garbage upload.
    let garbage = d.upload("t", b"this is not a zip file at all".to_vec(), false).await;
    let message = error(&garbage, -400, "PluginDaemonBadRequestError");
    assert!(message.contains("zip"), "{message}");

    // Oversize upload.
    let big = vec![b'x'; 64 * 1024];
    let oversize = d.upload("t", big, false).await;
    let message = error(&oversize, -400, "PluginDaemonBadRequestError");
    assert!(message.contains("MAX_PLUGIN_PACKAGE_SIZE"), "{message}");

    // Bad paging, bad identifiers, bad JSON, metas mismatch, not uploaded.
    error(
        &d.get("t", "list?page=0&page_size=10").await,
        -400,
        "PluginDaemonBadRequestError",
    );
    error(
        &d.get("t", "list?page=1&page_size=257").await,
        -400,
        "PluginDaemonBadRequestError",
    );
    error(
        &d.get("t", "fetch/manifest?plugin_unique_identifier=nope").await,
        -400,
        "PluginUniqueIdentifierError",
    );
    let uid = format!("a/b:0.0.1@{}", "0".repeat(64));
    error(
        &d.get("t", &format!("fetch/manifest?plugin_unique_identifier={}", enc(&uid)))
            .await,
        -404,
        "PluginNotFoundError",
    );
    let response = d
        .client
        .post(d.url("t", "install/identifiers"))
        .header("X-Api-Key", KEY)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    error(
        &response.json::<Value>().await.unwrap(),
        -400,
        "PluginDaemonBadRequestError",
    );
    let mismatch = d
        .post(
            "t",
            "install/identifiers",
            json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": []}),
        )
        .await;
    assert!(error(&mismatch, -400, "PluginDaemonBadRequestError").contains("metas"));
    let not_uploaded = d
        .post(
            "t",
            "install/identifiers",
            json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": [{}]}),
        )
        .await;
    error(&not_uploaded, -404, "PluginNotFoundError");
    let bundle = d
        .client
        .post(d.url("t", "install/upload/bundle"))
        .header("X-Api-Key", KEY)
        .send()
        .await
        .unwrap();
    error(
        &bundle.json::<Value>().await.unwrap(),
        -400,
        "PluginDaemonBadRequestError",
    );
    error(
        &d.get("t", "unknown/list?page=1&page_size=1").await,
        -404,
        "PluginDaemonNotFoundError",
    );

    // Dispatch is not available yet: one SSE error event.
    let response = d
        .client
        .post(format!("{}/plugin/t/dispatch/tool/invoke", d.base))
        .header("X-Api-Key", KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let line = text.strip_prefix("data: ").unwrap().trim_end();
    error(
        &serde_json::from_str(line).unwrap(),
        -500,
        "PluginDaemonInternalServerError",
    );
    d.stop().await;
}

/// An environment whose preparation always fails.
struct BrokenEnvironment;

#[async_trait]
impl PluginEnvironment for BrokenEnvironment {
    async fn prepare(&self, _uid: &PluginUniqueIdentifier, _package: &[u8]) -> Result<(), String> {
        Err("uv sync failed: no matching distribution for dify_plugin".into())
    }

    async fn release(&self, _uid: &str) {}
}

#[tokio::test]
async fn failed_environment_fails_the_task() {
    on_each_backend(|url, dir| async move {
        let d = Daemon::start(
            unsigned_config(dir.path(), &url),
            Arc::new(BrokenEnvironment),
            dir.clone(),
        )
        .await;
        let uid = data(d.upload("t", package("0.0.1"), false).await)["unique_identifier"]
            .as_str()
            .unwrap()
            .to_owned();
        let start = data(
            d.post(
                "t",
                "install/identifiers",
                json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": [{}]}),
            )
            .await,
        );
        let task = d.wait_task("t", start["task_id"].as_str().unwrap()).await;
        assert_eq!(task["status"], "failed", "{task}");
        assert_eq!(task["plugins"][0]["status"], "failed");
        assert!(
            task["plugins"][0]["message"]
                .as_str()
                .unwrap()
                .contains("no matching distribution"),
            "{task}"
        );
        assert_eq!(data(d.get("t", "list?page=1&page_size=10").await)["total"], 0);
        assert_eq!(d.state.db().plugin_refers(&uid).await.unwrap(), None);
        assert!(!d.storage.join("plugin").join(&uid).exists());
        d.stop().await;
    })
    .await;
}

#[tokio::test]
async fn interrupted_install_is_marked_failed_at_restart() {
    on_each_backend(|url, dir| async move {
        let config = unsigned_config(dir.path(), &url);
        let d = Daemon::start(config.clone(), Arc::new(NoRuntime), dir.clone()).await;
        // A daemon killed mid-install leaves its task running.
        let task = d
            .state
            .db()
            .create_task(
                "t",
                vec![TaskPlugin {
                    plugin_unique_identifier: format!("a/b:0.0.1@{}", "1".repeat(64)),
                    plugin_id: "a/b".into(),
                    status: TaskStatus::Running,
                    message: String::new(),
                    icon: String::new(),
                    icon_dark: String::new(),
                    labels: json!({"en_US": "B"}),
                    source: "package".into(),
                }],
            )
            .await
            .unwrap();
        assert_eq!(
            data(d.get("t", &format!("install/tasks/{}", task.id)).await)["status"],
            "running"
        );
        d.stop().await;

        let d = Daemon::start(config, Arc::new(NoRuntime), dir.clone()).await;
        let recovered = data(d.get("t", &format!("install/tasks/{}", task.id)).await);
        assert_eq!(recovered["status"], "failed");
        assert_eq!(recovered["plugins"][0]["status"], "failed");
        assert_eq!(recovered["plugins"][0]["message"], INTERRUPTED_MESSAGE);
        d.stop().await;
    })
    .await;
}

// ---- bundles ------------------------------------------------------------------------------------------------------

/// A zip of `files`, with `comment`.
fn zip_of(files: &[(&str, &[u8])], comment: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in files {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(content).unwrap();
    }
    writer.set_raw_comment(comment.into()).unwrap();
    writer.finish().unwrap().into_inner()
}

/// A `.difybundle` as `dify bundle package` lays it out: `manifest.yaml` listing `dependencies` (YAML list items),
/// and each embedded package under `_assets/<checksum>`.
fn bundle(dependencies: &str, packages: &[(&str, &[u8])]) -> Vec<u8> {
    let manifest = format!(
        "name: echo_bundle\nlabels:\n  en_US: Echo bundle\ndescription:\n  en_US: Test bundle\nicon: icon.svg\n\
         version: 0.0.1\nauthor: toolplane_tests\ntype: bundle\ntags: []\ndependencies:\n{dependencies}"
    );
    let mut files: Vec<(String, &[u8])> = vec![("manifest.yaml".into(), manifest.as_bytes())];
    files.extend(packages.iter().map(|(path, bytes)| (format!("_assets/{path}"), *bytes)));
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    zip_of(&files, b"")
}

fn package_dependency(path: &str) -> String {
    format!("  - type: package\n    value:\n      path: {path}\n")
}

fn checksum_of(package: &[u8]) -> String {
    toolplane_plugin::checksum_package(package, &toolplane_plugin::DecodeLimits::default()).unwrap()
}

#[tokio::test]
async fn bundle_upload_then_install() {
    on_each_backend(|url, dir| async move {
        let d = Daemon::start(unsigned_config(dir.path(), &url), Arc::new(NoRuntime), dir.clone()).await;
        let tenant = "tenant-bundle";
        let echo = package("0.0.2");
        let checksum = checksum_of(&echo);
        let dependencies = format!(
            "{}  - type: marketplace\n    value:\n      marketplace_pattern: langgenius/openai:0.0.7\n\
             \x20 - type: github\n    value:\n      repo_pattern: octo/tools:1.2.3/tools.difypkg\n",
            package_dependency(&checksum)
        );
        let uploaded = data(d.upload_bundle(tenant, bundle(&dependencies, &[(&checksum, &echo)]), false).await);

        // The dependency list, in declaration order, in the shape Dify's PluginBundleDependency parses.
        let list = uploaded.as_array().unwrap();
        assert_eq!(list.len(), 3, "{uploaded}");
        let expected_uid = format!("toolplane_tests/echo:0.0.2@{checksum}");
        let package_dep = &list[0];
        assert_eq!(package_dep.as_object().unwrap().len(), 2, "{package_dep}");
        assert_eq!(package_dep["type"], "package");
        let value = package_dep["value"].as_object().unwrap();
        let mut keys: Vec<&str> = value.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["manifest", "unique_identifier"]);
        assert_eq!(value["unique_identifier"], expected_uid.as_str());
        let manifest = &value["manifest"];
        assert_eq!(manifest["name"], "echo");
        assert_eq!(manifest["author"], "toolplane_tests");
        assert_eq!(manifest["version"], "0.0.2");
        assert_eq!(manifest["type"], "plugin");
        assert_eq!(manifest["category"], "tool");
        assert_eq!(manifest["verified"], false);
        assert_eq!(manifest["label"]["en_US"], "Echo");
        assert_eq!(manifest["tool"]["identity"]["name"], "echo");
        assert_eq!(
            list[1],
            json!({"type": "marketplace", "value": {"organization": "langgenius", "plugin": "openai", "version": "0.0.7"}})
        );
        assert_eq!(
            list[2],
            json!({"type": "github", "value": {
                "repo_address": "https://github.com/octo/tools", "repo": "octo/tools", "release": "1.2.3",
                "packages": "tools.difypkg"
            }})
        );

        // Stored like an uploaded package: the same bytes, and its manifest is served.
        let stored = std::fs::read(d.storage.join("plugin_packages").join(&expected_uid)).unwrap();
        assert_eq!(stored, echo);
        let fetched = data(
            d.get(tenant, &format!("fetch/manifest?plugin_unique_identifier={}", enc(&expected_uid)))
                .await,
        );
        assert_eq!(&fetched, manifest);

        // Installable through install/identifiers.
        let start = data(
            d.post(tenant, "install/identifiers", json!({
                "plugin_unique_identifiers": [expected_uid], "source": "package", "metas": [{}]
            }))
            .await,
        );
        let task = d.wait_task(tenant, start["task_id"].as_str().unwrap()).await;
        assert_eq!(task["status"], "success", "{task}");
        let installed = data(d.get(tenant, "list?page=1&page_size=10").await);
        assert_eq!(installed["total"], 1);
        assert_eq!(installed["list"][0]["plugin_unique_identifier"], expected_uid.as_str());
        d.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bundle_signature_policy() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}/plugin.db", dir.path().display());
    let pair = generate_signing_key_pair().unwrap();
    let key_path = dir.path().join("third_party.public.pem");
    std::fs::write(&key_path, &pair.public_pem).unwrap();
    // FORCE_VERIFYING_SIGNATURE (the default) with the test key trusted.
    let mut config = DaemonConfig::new(KEY, url, dir.path().join("storage"));
    assert!(config.verifier.force_verifying_signature);
    config.verifier.third_party_enabled = true;
    config.verifier.third_party_public_keys = vec![key_path];
    let d = Daemon::start(config, Arc::new(NoRuntime), dir.clone()).await;
    let packages_dir = d.storage.join("plugin_packages");
    let stored_count = || std::fs::read_dir(&packages_dir).map(|r| r.count()).unwrap_or(0);

    let unsigned = package("0.0.3");
    let signed = sign(
        &unsigned,
        &pair.private_pem,
        Some(Verification {
            authorized_category: AuthorizedCategory::Partner,
        }),
    )
    .unwrap();

    // A signed package next to an unsigned one: the whole bundle is rejected and nothing is stored.
    let unsigned_sum = checksum_of(&unsigned);
    let signed_sum = checksum_of(&signed);
    let deps = format!(
        "{}{}",
        package_dependency(&signed_sum),
        package_dependency(&unsigned_sum)
    );
    let rejected = d
        .upload_bundle(
            "t",
            bundle(&deps, &[(&signed_sum, &signed), (&unsigned_sum, &unsigned)]),
            false,
        )
        .await;
    let message = error(&rejected, -400, "PluginDaemonBadRequestError");
    assert!(message.contains("bad signature"), "{message}");
    assert!(message.contains(&format!("_assets/{unsigned_sum}")), "{message}");
    assert_eq!(stored_count(), 0, "a rejected bundle stores nothing");

    // A tampered package: a file changed after signing, the signature comment kept.
    let reader = zip::ZipArchive::new(std::io::Cursor::new(signed.as_slice())).unwrap();
    let comment = reader.comment().to_vec();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut reader = reader;
    for i in 0..reader.len() {
        use std::io::Read;
        let mut entry = reader.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        if name == "main.py" {
            content.extend_from_slice(b"\nimport os  # injected\n");
        }
        files.push((name, content));
    }
    let files_ref: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect();
    let tampered = zip_of(&files_ref, &comment);
    let tampered_sum = checksum_of(&tampered);
    let rejected = d
        .upload_bundle(
            "t",
            bundle(&package_dependency(&tampered_sum), &[(&tampered_sum, &tampered)]),
            false,
        )
        .await;
    assert!(error(&rejected, -400, "PluginDaemonBadRequestError").contains("bad signature"));
    assert_eq!(stored_count(), 0);

    // The signed package alone is accepted and verified.
    let accepted = data(
        d.upload_bundle(
            "t",
            bundle(&package_dependency(&signed_sum), &[(&signed_sum, &signed)]),
            true,
        )
        .await,
    );
    assert_eq!(accepted[0]["value"]["manifest"]["verified"], true);
    assert_eq!(stored_count(), 1);
    d.stop().await;
}

#[tokio::test]
async fn bundle_bad_input_and_limits() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}/plugin.db", dir.path().display());
    let mut config = unsigned_config(dir.path(), &url);
    let bundle_limit = 256 * 1024;
    config.max_bundle_package_size = bundle_limit;
    let d = Daemon::start(config, Arc::new(NoRuntime), dir.clone()).await;
    let bad = |envelope: &Value| error(envelope, -400, "PluginDaemonBadRequestError");

    // Garbage.
    let garbage = d
        .upload_bundle("t", b"this is not a zip file at all".to_vec(), false)
        .await;
    let message = bad(&garbage);
    assert!(message.contains("not a valid difybundle"), "{message}");

    // Oversize: cut off while streaming, and named after its limit.
    let oversize = d.upload_bundle("t", vec![b'x'; 512 * 1024], false).await;
    let message = bad(&oversize);
    assert!(message.contains("MAX_BUNDLE_PACKAGE_SIZE"), "{message}");

    // The wrong form field.
    let form = reqwest::multipart::Form::new().part("dify_pkg", reqwest::multipart::Part::bytes(b"x".to_vec()));
    let response = d
        .client
        .post(d.url("t", "install/upload/bundle"))
        .header("X-Api-Key", KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(bad(&response.json::<Value>().await.unwrap()).contains("no dify_bundle file"));

    // A plugin package is not a bundle.
    let message = bad(&d.upload_bundle("t", package("0.0.1"), false).await);
    assert!(message.contains("install/upload/package"), "{message}");

    // Path traversal, in an entry name and in a dependency path.
    let evil = zip_of(
        &[("manifest.yaml", b"dependencies: []\n"), ("../../evil.sh", b"x")],
        b"",
    );
    assert!(bad(&d.upload_bundle("t", evil, false).await).contains("path traversal"));
    let evil = bundle(&package_dependency("../manifest.yaml"), &[]);
    assert!(bad(&d.upload_bundle("t", evil, false).await).contains("path traversal"));

    // A dependency pointing at nothing, and an embedded file that is not a package.
    let missing = bundle(&package_dependency("nope"), &[]);
    assert!(bad(&d.upload_bundle("t", missing, false).await).contains("not in the bundle"));
    let not_pkg = bundle(&package_dependency("junk"), &[("junk", b"junk")]);
    let message = bad(&d.upload_bundle("t", not_pkg, false).await);
    assert!(message.contains("_assets/junk") && message.contains("zip"), "{message}");

    // A zip bomb: small on the wire, past MAX_BUNDLE_PACKAGE_SIZE once decompressed.
    let zeros = vec![0u8; 2 * 1024 * 1024];
    let bomb = bundle(&package_dependency("bomb"), &[("bomb", &zeros)]);
    assert!(bomb.len() < 64 * 1024, "deflate shrinks zeros");
    let message = bad(&d.upload_bundle("t", bomb, false).await);
    assert!(message.contains("_assets/bomb"), "{message}");

    // An empty bundle is fine: no dependencies.
    assert_eq!(
        data(d.upload_bundle("t", bundle("  []\n", &[]), false).await),
        json!([])
    );
    d.stop().await;
}
