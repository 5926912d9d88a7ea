//! OAuth 2.0 for a PLUGIN tool provider, end to end over real HTTP: a real plugin written with `dify_plugin==0.7.4`
//! (`tests/data/oauth_plugin`, implementing the SDK's `_oauth_get_authorization_url`, `_oauth_get_credentials` and
//! `_oauth_refresh_credentials`) runs in toolplane's plugin runtime beside the console and talks to an
//! authorization server on loopback.
//!
//! authorization URL (from the plugin) → consent → callback (the raw request goes to the plugin) → stored `oauth2`
//! credential with `expires_at` → a tool call with the token → expiry → refresh (through the plugin) → a call with
//! the new token. System clients reach only verified plugins.
//!
//! Python environments are shared with the runtime crate's tests in `crates/runtime/.cache/`; without PyPI the
//! test prints a notice and passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use toolplane_net::NetConfig;
use toolplane_runtime::{Backwards, PluginRuntime, RuntimeConfig};
use toolplane_server::{AppState, AppStateParts, ServerConfig, Settings};
use toolplane_store::{BlobConfig, BlobStore, BuiltinCredentialUpdate, Store};

const DAEMON_KEY: &str = "plugin-oauth-daemon-key";
const PROVIDER: &str = "acme/oauthy/oauthy";
const CLIENT_ID: &str = "plugin-client";
const CLIENT_SECRET: &str = "plugin-s3cret";
const WEB: &str = "https://console.example";

fn online() -> bool {
    use std::net::ToSocketAddrs;
    let ok = ("pypi.org", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    if !ok {
        eprintln!(
            "NOTICE: skipping the plugin OAuth test: pypi.org is unreachable, so dify_plugin cannot be installed"
        );
    }
    ok
}

fn runtime_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/.cache")
}

// ---- the authorization server (authorization code without PKCE, client_secret_post, refresh-token grant) ----

#[derive(Default)]
struct As {
    codes: HashMap<String, String>, // code → redirect_uri
    access: Vec<String>,
    refresh: Vec<String>,
    issued: u32,
    grants: Vec<String>,
}

type Shared = Arc<Mutex<As>>;

async fn authorize(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.get("response_type").map(String::as_str) != Some("code")
        || q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
    {
        return (
            StatusCode::BAD_REQUEST,
            "need response_type=code and the registered client",
        )
            .into_response();
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    st.lock().unwrap().codes.insert(code.clone(), q["redirect_uri"].clone());
    Redirect::to(&format!("{}?code={code}&state={}", q["redirect_uri"], q["state"])).into_response()
}

fn issue(st: &mut As) -> Value {
    st.issued += 1;
    let n = st.issued;
    st.access.push(format!("at-{n}"));
    st.refresh.push(format!("rt-{n}"));
    json!({"access_token": format!("at-{n}"), "refresh_token": format!("rt-{n}"), "token_type": "Bearer", "expires_in": 3600})
}

async fn token(State(st): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut st = st.lock().unwrap();
    let error = |e: &str| (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response();
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return error("invalid_client");
    }
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    st.grants.push(grant.clone());
    match grant.as_str() {
        "authorization_code" => match st.codes.remove(form.get("code").map_or("", String::as_str)) {
            Some(redirect) if form.get("redirect_uri") == Some(&redirect) => axum::Json(issue(&mut st)).into_response(),
            _ => error("invalid_grant"),
        },
        "refresh_token" => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            if !st.refresh.contains(&presented) {
                return error("invalid_grant");
            }
            st.refresh.retain(|t| *t != presented);
            st.access.clear(); // old access tokens die with the refresh
            axum::Json(issue(&mut st)).into_response()
        }
        _ => error("unsupported_grant_type"),
    }
}

async fn me(State(st): State<Shared>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if st.lock().unwrap().access.iter().any(|t| t == token) {
        axum::Json(json!({"user": "alice"})).into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "bad token").into_response()
    }
}

async fn authorization_server() -> (String, Shared) {
    let st = Shared::default();
    let app = axum::Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/me", get(me))
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (origin, st)
}

fn client_params(origin: &str, client_id: &str) -> Map<String, Value> {
    json!({"client_id": client_id, "client_secret": CLIENT_SECRET, "server_url": origin})
        .as_object()
        .unwrap()
        .clone()
}

// ---- toolplane with the plugin daemon and its runtime ----

struct Server {
    base: String,
    state: AppState,
    tenant: String,
    key: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start_server(signing_key: &toolplane_plugin::SigningKeyPair) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = Settings::from_pairs([
        ("TOOLPLANE_DATA_DIR", dir.path().display().to_string()),
        ("TOOLPLANE_BIND", "127.0.0.1:0".into()),
        ("SECRET_KEY", "test-secret".into()),
        ("CONSOLE_API_URL", base.clone()),
        ("CONSOLE_WEB_URL", WEB.into()),
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
    // The test package is unsigned.
    daemon_config.verifier.force_verifying_signature = false;
    // Packages signed with this key count as verified (a third-party key, as in FORCE_VERIFYING_SIGNATURE setups).
    let key_path = dir.path().join("third_party.public.pem");
    std::fs::write(&key_path, &signing_key.public_pem).unwrap();
    daemon_config.verifier.third_party_enabled = true;
    daemon_config.verifier.third_party_public_keys = vec![key_path];
    let mut runtime_config = RuntimeConfig::new(runtime_cache().join("work"));
    runtime_config.tools_path = runtime_cache().join("tools");
    runtime_config.start_timeout = Duration::from_secs(120);
    let runtime = PluginRuntime::new(runtime_config, Backwards::default());
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
    let tenant = state.create_tenant("tenant-a").await.unwrap().id;
    let (_, key) = state.create_api_key(Some(&tenant), "alice").await.unwrap();
    tokio::spawn(toolplane_server::serve(listener, state.clone(), std::future::pending()));
    Server {
        base,
        state,
        tenant,
        key,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn daemon(&self, tenant: &str, path: &str, body: Value) -> Value {
        self.http
            .post(self.url(&format!("/plugin/{tenant}/management/{path}")))
            .header("X-Api-Key", DAEMON_KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Uploads and installs a package of the test plugin for `tenant`; answers its unique identifier.
    async fn install_plugin(&self, tenant: &str, package: Vec<u8>) -> String {
        let form = reqwest::multipart::Form::new().part(
            "dify_pkg",
            reqwest::multipart::Part::bytes(package).file_name("oauthy.difypkg"),
        );
        let uploaded: Value = self
            .http
            .post(self.url(&format!("/plugin/{tenant}/management/install/upload/package")))
            .header("X-Api-Key", DAEMON_KEY)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(uploaded["code"], 0, "{uploaded}");
        let uid = uploaded["data"]["unique_identifier"].as_str().unwrap().to_owned();
        let started = self
            .daemon(
                tenant,
                "install/identifiers",
                json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": [{}]}),
            )
            .await;
        assert_eq!(started["code"], 0, "{started}");
        if started["data"]["all_installed"] == true {
            return uid;
        }
        let task_id = started["data"]["task_id"].as_str().unwrap().to_owned();
        // Installing builds the Python environment (PyPI) on first use.
        let mut last = Value::Null;
        for _ in 0..600 {
            let task: Value = self
                .http
                .get(self.url(&format!("/plugin/{tenant}/management/install/tasks/{task_id}")))
                .header("X-Api-Key", DAEMON_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match task["data"]["status"].as_str() {
                Some("success") => return uid,
                Some("failed") => panic!("install failed: {task}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            last = task;
        }
        panic!("the plugin did not install in time: {last}");
    }

    async fn authorization_url(&self, key: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/console/api/oauth/plugin/{PROVIDER}/tool/authorization-url")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    async fn whoami(&self) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/v1/tools/invoke"))
            .bearer_auth(&self.key)
            .json(&json!({"provider_type": "plugin", "provider_id": PROVIDER, "tool": "whoami", "parameters": {}}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    async fn credential(&self) -> toolplane_store::BuiltinCredentialRecord {
        let rows = self
            .state
            .store
            .builtin_credentials()
            .list(&self.tenant, PROVIDER)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "one credential");
        rows.into_iter().next().unwrap()
    }
}

fn text_of(body: &Value) -> String {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    messages
        .iter()
        .find(|m| m["type"] == "text")
        .and_then(|m| m["message"]["text"].as_str())
        .unwrap_or_else(|| panic!("no text message in {body}"))
        .to_owned()
}

/// The test plugin packaged as `version`.
fn package(version: &str) -> Vec<u8> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/oauth_plugin");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&source, dir.path());
    let manifest = std::fs::read_to_string(dir.path().join("manifest.yaml")).unwrap();
    let manifest = manifest.replacen("version: 0.0.1\n", &format!("version: {version}\n"), 1);
    std::fs::write(dir.path().join("manifest.yaml"), manifest).unwrap();
    toolplane_plugin::package_dir(dir.path(), 50 << 20, |_| {}).unwrap()
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

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_provider_authorizes_refreshes_and_calls() {
    if !online() {
        return;
    }
    let (origin, auth) = authorization_server().await;
    let signing_key = toolplane_plugin::generate_signing_key_pair().unwrap();
    let s = start_server(&signing_key).await;
    let signed = toolplane_plugin::sign(&package("0.0.1"), &signing_key.private_pem, None).unwrap();
    // Tenant A installs the signed (verified) package, tenant B an unsigned one (another version: the unique
    // identifier does not cover the signature).
    s.install_plugin(&s.tenant, signed).await;
    let tenant_b = s.state.create_tenant("tenant-b").await.unwrap().id;
    let (_, key_b) = s.state.create_api_key(Some(&tenant_b), "bob").await.unwrap();
    s.install_plugin(&tenant_b, package("0.0.2")).await;
    let daemon = s.state.daemon.clone().unwrap();
    assert!(daemon.is_plugin_verified(&s.tenant, "acme/oauthy").await.unwrap());
    assert!(!daemon.is_plugin_verified(&tenant_b, "acme/oauthy").await.unwrap());
    let provider = s
        .state
        .catalog
        .provider(&s.tenant, toolplane_core::ToolProviderType::Plugin, PROVIDER)
        .await
        .unwrap();
    assert!(
        provider.entity().oauth_schema.is_some(),
        "the plugin declares an oauth_schema"
    );

    // The system client (stored under the plugin id and the provider's short name, as in Dify) reaches the verified
    // plugin, not the unverified one.
    s.state
        .oauth
        .set_system_client("acme/oauthy", "oauthy", &client_params(&origin, CLIENT_ID))
        .await
        .unwrap();
    let refused = s.authorization_url(&key_b).await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("no OAuth client"), "{body}");
    let response = s.authorization_url(&s.key).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["authorization_url"]
            .as_str()
            .unwrap()
            .contains("client_id=plugin-client"),
        "{body}"
    );

    // The tenant's own client wins over the system client.
    s.state
        .oauth
        .set_system_client("acme/oauthy", "oauthy", &client_params(&origin, "system-client"))
        .await
        .unwrap();
    s.state
        .oauth
        .save_tenant_client(
            &s.tenant,
            provider.as_ref(),
            Some(client_params(&origin, CLIENT_ID)),
            Some(true),
        )
        .await
        .unwrap();

    // 1. The authorization URL comes from the plugin, with toolplane's redirect URI; a context cookie is set.
    let response = s.authorization_url(&s.key).await;
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("context_id=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let context = cookie.split(';').next().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let authorization_url = body["authorization_url"].as_str().unwrap().to_owned();
    let parsed = url::Url::parse(&authorization_url).unwrap();
    let query: HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    assert_eq!(format!("{}{}", &origin, parsed.path()), format!("{origin}/authorize"));
    assert_eq!(query["client_id"], CLIENT_ID, "the tenant client wins");
    assert_eq!(
        query["redirect_uri"],
        s.url(&format!("/console/api/oauth/plugin/{PROVIDER}/tool/callback"))
    );

    // 2. Consent: the authorization server sends the browser back to the callback.
    let consent = s.http.get(&authorization_url).send().await.unwrap();
    assert_eq!(consent.status(), 303);
    let callback = consent.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with(&s.url("/console/api/oauth/plugin/")), "{callback}");

    // Without the cookie the callback fails and stores nothing.
    let stray = s.http.get(&callback).send().await.unwrap();
    assert!(
        stray.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&format!("{WEB}/oauth-callback?error=")),
        "{:?}",
        stray.headers()
    );

    // 3. The callback hands the request to the plugin, which exchanges the code; the credential is stored.
    let done = s.http.get(&callback).header("Cookie", &context).send().await.unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(
        done.headers()["location"].to_str().unwrap(),
        format!("{WEB}/oauth-callback")
    );
    assert_eq!(auth.lock().unwrap().grants, vec!["authorization_code"]);
    let row = s.credential().await;
    assert_eq!(row.credential_type, "oauth2");
    assert!(
        (row.expires_at - (now() + 3600)).abs() < 30,
        "expires_at {}",
        row.expires_at
    );
    let stored = row.encrypted_credentials.to_string();
    assert!(
        !stored.contains("at-1"),
        "the access token is encrypted at rest: {stored}"
    );

    // The context is single use.
    let again = s.http.get(&callback).header("Cookie", &context).send().await.unwrap();
    assert!(
        again.headers()["location"].to_str().unwrap().contains("error="),
        "{:?}",
        again.headers()
    );

    // 4. A tool call of the plugin uses the token.
    let (status, body) = s.whoami().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text_of(&body), "user alice via at-1");

    // 5. Expiry: 30 s left is inside the 60 s margin, so the next call refreshes through the plugin first.
    s.state
        .store
        .builtin_credentials()
        .update(
            &s.tenant,
            &row.id,
            &BuiltinCredentialUpdate {
                expires_at: Some(now() + 30),
                ..BuiltinCredentialUpdate::default()
            },
        )
        .await
        .unwrap();
    let (status, body) = s.whoami().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text_of(&body), "user alice via at-2");
    assert_eq!(auth.lock().unwrap().grants, vec!["authorization_code", "refresh_token"]);
    let refreshed = s.credential().await;
    assert!(
        refreshed.expires_at > now() + 3000,
        "saved expires_at {}",
        refreshed.expires_at
    );

    // The refreshed token is saved: the next call does not refresh again.
    let (_, body) = s.whoami().await;
    assert_eq!(text_of(&body), "user alice via at-2");
    assert_eq!(auth.lock().unwrap().grants.len(), 2);

    // A refresh the authorization server refuses ends in a clear error.
    auth.lock().unwrap().refresh.clear();
    s.state
        .store
        .builtin_credentials()
        .update(
            &s.tenant,
            &row.id,
            &BuiltinCredentialUpdate {
                expires_at: Some(now() - 5),
                ..BuiltinCredentialUpdate::default()
            },
        )
        .await
        .unwrap();
    let (status, body) = s.whoami().await;
    assert!(status >= 400, "{body}");
    let message = body.to_string();
    assert!(message.contains("could not be refreshed"), "{message}");
}
