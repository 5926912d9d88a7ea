//! MCP end to end on loopback: MCP servers as providers (a Python `mcp` SDK server over streamable HTTP; an
//! OAuth-protected server behind an authorization server built here with axum), and toolplane as an MCP server
//! (driven by the Python SDK's client and by toolplane's own client, with and without a bearer key).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{Db, Options, TestServer, first_text, postgres_url};
use tokio::process::{Child, Command};
use toolplane_mcp::{ClientOptions, McpClient};
use toolplane_net::{NetConfig, SafeClient};

fn mcp_crate() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mcp")
}

/// A Python with the `mcp` SDK (crates/mcp's venv, or $TOOLPLANE_PYTHON); `None` with a notice otherwise.
fn python() -> Option<PathBuf> {
    let dir = mcp_crate();
    std::fs::create_dir_all(dir.join(".cache")).ok()?;
    let output = std::process::Command::new("flock")
        .arg(dir.join(".cache/venv.lock"))
        .arg(dir.join("scripts/setup-python.sh"))
        .stderr(Stdio::inherit())
        .output();
    match output {
        Ok(out) if out.status.success() => Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())),
        other => {
            eprintln!("NOTICE: skipping: the Python `mcp` SDK could not be installed ({other:?})");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct PyServer {
    _child: Child,
    port: u16,
}

async fn start_python_server(python: &Path) -> PyServer {
    let port = free_port();
    let markers = std::env::temp_dir();
    let child = Command::new(python)
        .arg(mcp_crate().join("tests/python/mcp_server.py"))
        .arg("streamable-http")
        .arg(port.to_string())
        .arg(markers)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "python MCP server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    PyServer { _child: child, port }
}

async fn send(s: &TestServer, method: reqwest::Method, key: &str, url: &str, body: Value) -> (u16, Value) {
    let response = s
        .http
        .request(method, url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn invoke_mcp(s: &TestServer, key: &str, provider: &str, tool: &str, parameters: Value) -> (u16, Value) {
    s.post(
        key,
        &s.url("/v1/tools/invoke"),
        json!({"provider_type": "mcp", "provider_id": provider, "tool": tool, "parameters": parameters}),
    )
    .await
}

#[tokio::test]
async fn python_mcp_server_as_a_provider() {
    let Some(py) = python() else { return };
    let server = start_python_server(&py).await;
    let s = TestServer::start().await;
    let url = format!("http://127.0.0.1:{}/mcp", server.port);

    let (status, created) = send(
        &s,
        reqwest::Method::POST,
        &s.key_a,
        &s.console("/tool-provider/mcp"),
        json!({
            "server_url": url, "name": "Python tools", "icon": "🐍", "icon_type": "emoji", "icon_background": "#fff",
            "server_identifier": "py-tools", "headers": {"X-Api-Token": "secret-header-value"},
            "configuration": {"timeout": 10, "sse_read_timeout": 60},
        }),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let provider_id = created["id"].as_str().unwrap().to_owned();
    // Dify's masking: URL path hidden, header values masked, timeouts as strings.
    assert_eq!(
        created["server_url"],
        format!("http://127.0.0.1:{}/******", server.port)
    );
    assert_eq!(created["masked_headers"]["X-Api-Token"], "se***************ue");
    assert_eq!(
        created["configuration"],
        json!({"timeout": "10.0", "sse_read_timeout": "60.0"})
    );
    assert_eq!(created["is_team_authorization"], true);
    assert_eq!(created["type"], "mcp");
    assert_eq!(created["icon"], json!({"content": "🐍", "background": "#fff"}));

    // The database holds ciphertext only.
    let row = s
        .state
        .store
        .mcp_providers()
        .get(&s.tenant_a, &provider_id)
        .await
        .unwrap()
        .unwrap();
    assert!(!row.server_url.contains("127.0.0.1"));
    assert!(!row.encrypted_headers.clone().unwrap().contains("secret-header-value"));
    assert_eq!(row.server_url_hash.len(), 64);
    // The tools were listed across pages (three per page) and cached.
    let cached: Vec<Value> = serde_json::from_str(&row.tools).unwrap();
    let names: Vec<&str> = cached.iter().filter_map(|t| t["name"].as_str()).collect();
    for name in ["echo", "add", "json_text", "media", "fail", "complex_args"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }

    // Duplicates are refused with Dify's messages.
    let (status, body) = send(
        &s,
        reqwest::Method::POST,
        &s.key_a,
        &s.console("/tool-provider/mcp"),
        json!({"server_url": url, "name": "Other", "server_identifier": "other"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "MCP tool with this server URL already exists");

    // Listing: id = server_identifier, masked, with tools.
    let (status, list) = s.get(&s.key_a, &s.console("/tools/mcp")).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], "py-tools");
    assert!(list[0]["tools"].as_array().unwrap().len() >= 6);
    assert!(!list.to_string().contains("secret-header-value"));
    let (status, tools) = s
        .get(&s.key_a, &s.console(&format!("/tool-provider/mcp/tools/{provider_id}")))
        .await;
    assert_eq!(status, 200);
    let add = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "add")
        .unwrap();
    assert_eq!(add["parameters"][0]["form"], "llm");
    let (status, relisted) = s
        .get(
            &s.key_a,
            &s.console(&format!("/tool-provider/mcp/update/{provider_id}")),
        )
        .await;
    assert_eq!(status, 200, "{relisted}");
    assert_eq!(relisted["tools"].as_array().unwrap().len(), cached.len());

    // Invocation through the catalog.
    let (status, body) = invoke_mcp(&s, &s.key_a, "py-tools", "echo", json!({"text": "hello"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(first_text(&body), "hello");
    let (status, body) = invoke_mcp(&s, &s.key_a, "py-tools", "add", json!({"a": 2, "b": 5})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("\"sum\":7"), "{body}");
    let (status, body) = invoke_mcp(&s, &s.key_a, "py-tools", "fail", json!({"reason": "testing"})).await;
    assert_ne!(status, 200);
    assert!(
        body["message"].as_str().unwrap().contains("failed because testing"),
        "{body}"
    );

    // Tenant isolation: tenant B sees nothing and cannot invoke or change A's provider.
    let (_, list_b) = s.get(&s.key_b, &s.console("/tools/mcp")).await;
    assert_eq!(list_b, json!([]));
    let (status, _) = invoke_mcp(&s, &s.key_b, "py-tools", "echo", json!({"text": "x"})).await;
    assert_eq!(status, 404);
    let (status, _) = send(
        &s,
        reqwest::Method::DELETE,
        &s.key_b,
        &s.console("/tool-provider/mcp"),
        json!({"provider_id": provider_id}),
    )
    .await;
    assert_eq!(status, 404);

    // Update with masked values keeps the stored URL and header.
    let (status, body) = send(
        &s,
        reqwest::Method::PUT,
        &s.key_a,
        &s.console("/tool-provider/mcp"),
        json!({
            "provider_id": provider_id, "server_url": created["server_url"], "name": "Renamed",
            "icon": "x.png", "icon_type": "image", "server_identifier": "py-tools",
            "headers": {"X-Api-Token": "se***************ue"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, tools) = s
        .get(&s.key_a, &s.console(&format!("/tool-provider/mcp/tools/{provider_id}")))
        .await;
    assert_eq!(tools["name"], "Renamed");
    assert_eq!(tools["masked_headers"]["X-Api-Token"], "se***************ue");
    let (status, body) = invoke_mcp(&s, &s.key_a, "py-tools", "echo", json!({"text": "again"})).await;
    assert_eq!((status, first_text(&body)), (200, "again"), "{body}");

    // Delete → the app's reference is reported as deleted.
    let (status, _) = send(
        &s,
        reqwest::Method::DELETE,
        &s.key_a,
        &s.console("/tool-provider/mcp"),
        json!({"provider_id": provider_id}),
    )
    .await;
    assert_eq!(status, 200);
    let config = json!({"agent_mode": {"tools": [
        {"provider_type": "mcp", "provider_id": "py-tools", "tool_name": "echo", "tool_parameters": {}},
    ]}});
    let (status, body) = s.post(&s.key_a, &s.url("/v1/tools/deleted"), config).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["deleted_tools"],
        json!([{"type": "mcp", "tool_name": "echo", "provider_id": "py-tools"}])
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// OAuth: an authorization server and a protected MCP endpoint on loopback.

#[derive(Default)]
struct Auth {
    base: String,
    clients: Vec<String>,
    /// code → (client_id, challenge, redirect_uri)
    codes: HashMap<String, (String, String, String)>,
    access: Vec<String>,
    refresh: Vec<String>,
    counter: u32,
    refreshes: u32,
    expires_in: i64,
    /// Offer only the client-credentials grant (client `machine`, secret `s3cret`).
    client_credentials_only: bool,
    grants: u32,
}

type Shared = Arc<Mutex<Auth>>;

async fn prm(State(s): State<Shared>) -> Json<Value> {
    let base = s.lock().unwrap().base.clone();
    Json(json!({"resource": format!("{base}/mcp"), "authorization_servers": [format!("{base}/auth")]}))
}

async fn as_metadata(State(s): State<Shared>) -> Json<Value> {
    let (base, cc_only) = {
        let auth = s.lock().unwrap();
        (auth.base.clone(), auth.client_credentials_only)
    };
    if cc_only {
        return Json(json!({
            "issuer": format!("{base}/auth"),
            "token_endpoint": format!("{base}/auth/token"),
            "response_types_supported": [],
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }));
    }
    Json(json!({
        "issuer": format!("{base}/auth"),
        "authorization_endpoint": format!("{base}/auth/authorize"),
        "token_endpoint": format!("{base}/auth/token"),
        "registration_endpoint": format!("{base}/auth/register"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
    }))
}

async fn register(State(s): State<Shared>, Json(body): Json<Value>) -> Response {
    assert!(
        body["redirect_uris"][0]
            .as_str()
            .unwrap()
            .ends_with("/console/api/mcp/oauth/callback")
    );
    let mut auth = s.lock().unwrap();
    auth.counter += 1;
    let id = format!("client-{}", auth.counter);
    auth.clients.push(id.clone());
    (StatusCode::CREATED, Json(json!({"client_id": id}))).into_response()
}

async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut auth = s.lock().unwrap();
    let client = q.get("client_id").cloned().unwrap_or_default();
    if !auth.clients.contains(&client) || q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    auth.counter += 1;
    let code = format!("code-{}", auth.counter);
    let redirect = q["redirect_uri"].clone();
    auth.codes
        .insert(code.clone(), (client, q["code_challenge"].clone(), redirect.clone()));
    // The user consents.
    Redirect::to(&format!("{redirect}?code={code}&state={}", q["state"])).into_response()
}

async fn token(State(s): State<Shared>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut auth = s.lock().unwrap();
    auth.counter += 1;
    let n = auth.counter;
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((client, challenge, redirect)) = auth.codes.remove(&f["code"]) else {
                return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
            };
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge
                || f.get("client_id") != Some(&client)
                || f.get("redirect_uri") != Some(&redirect)
            {
                return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
            }
        }
        Some("client_credentials") => {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("machine:s3cret")
            );
            if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
                return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
            }
            auth.grants += 1;
            let access = format!("access-{n}");
            auth.access.push(access.clone());
            return Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600})).into_response();
        }
        Some("refresh_token") => {
            let presented = f.get("refresh_token").cloned().unwrap_or_default();
            if !auth.refresh.contains(&presented) {
                return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
            }
            auth.refreshes += 1;
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "unsupported_grant_type"})),
            )
                .into_response();
        }
    }
    let access = format!("access-{n}");
    let refresh = format!("refresh-{n}");
    auth.access.push(access.clone());
    auth.refresh.push(refresh.clone());
    Json(json!({"access_token": access, "token_type": "bearer", "expires_in": auth.expires_in, "refresh_token": refresh}))
        .into_response()
}

/// A protected stateless MCP endpoint: 401 with a challenge unless the bearer token is valid.
async fn protected_mcp(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let (base, valid) = {
        let auth = s.lock().unwrap();
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        (auth.base.clone(), auth.access.iter().any(|a| a == token))
    };
    if !valid {
        let challenge = format!(r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            "unauthorized",
        )
            .into_response();
    }
    let id = body["id"].clone();
    let result = match body["method"].as_str() {
        Some("server/discover") => json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}}),
        Some("tools/list") => json!({"tools": [{"name": "secret", "inputSchema": {"type": "object"}}]}),
        Some("tools/call") => {
            json!({"content": [{"type": "text", "text": "the secret is 42"}], "resultType": "complete"})
        }
        _ => {
            return Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "nope"}}))
                .into_response();
        }
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

async fn start_auth() -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::new(Mutex::new(Auth {
        base: base.clone(),
        expires_in: 3600,
        ..Auth::default()
    }));
    let app = Router::new()
        .route("/.well-known/oauth-protected-resource/mcp", get(prm))
        .route("/.well-known/oauth-authorization-server/auth", get(as_metadata))
        .route("/auth/register", post(register))
        .route("/auth/authorize", get(authorize))
        .route("/auth/token", post(token))
        .route("/mcp", post(protected_mcp))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

#[tokio::test]
async fn oauth_protected_mcp_server() {
    oauth_flow(Db::Sqlite).await;
    if postgres_url().is_some() {
        oauth_flow(Db::Postgres).await;
    }
}

async fn oauth_flow(db: Db) {
    let (auth_base, auth) = start_auth().await;
    let s = TestServer::start_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let (status, created) = send(
        &s,
        reqwest::Method::POST,
        &s.key_a,
        &s.console("/tool-provider/mcp"),
        json!({"server_url": format!("{auth_base}/mcp"), "name": "Protected", "server_identifier": "protected"}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created["is_team_authorization"], false,
        "the server wants authorization"
    );
    let provider_id = created["id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .get(
            &s.key_a,
            &s.console(&format!("/tool-provider/mcp/update/{provider_id}")),
        )
        .await;
    assert_eq!(status, 400, "re-listing needs authorization first");

    // mcp/auth → authorization URL (dynamic registration, PKCE S256, resource indicator).
    let (status, body) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/mcp/auth"),
            json!({"provider_id": provider_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let authorization_url = body["authorization_url"].as_str().unwrap().to_owned();
    assert!(authorization_url.contains("code_challenge_method=S256"));
    assert!(authorization_url.contains("resource="));

    // The user's browser: consent, then the redirect to toolplane's callback (reached without an API key).
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let consent = browser.get(&authorization_url).send().await.unwrap();
    assert_eq!(consent.status(), 303);
    let location = consent.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let callback_url = location.replacen(&s.state.config.console_api_url, &s.base, 1);
    assert!(
        callback_url.starts_with(&s.url("/console/api/mcp/oauth/callback?")),
        "{callback_url}"
    );
    let done = browser.get(&callback_url).send().await.unwrap();
    assert!(done.status().is_redirection());
    let target = done.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(target, format!("{}/oauth-callback", s.state.config.console_web_url));
    // The state is single-use.
    let again = browser.get(&callback_url).send().await.unwrap();
    assert!(again.headers()[header::LOCATION].to_str().unwrap().contains("error="));

    // Tokens are stored encrypted; the provider is authorized with its tools cached.
    let row = s
        .state
        .store
        .mcp_providers()
        .get(&s.tenant_a, &provider_id)
        .await
        .unwrap()
        .unwrap();
    assert!(row.authed);
    let stored = row.encrypted_credentials.clone().unwrap();
    assert!(!stored.contains("access-") && !stored.contains("refresh-") && !stored.contains("client-"));
    assert!(row.tools.contains("secret"));

    // A tool call works with the stored token.
    let (status, body) = invoke_mcp(&s, &s.key_a, "protected", "secret", json!({})).await;
    assert_eq!((status, first_text(&body)), (200, "the secret is 42"), "{body}");
    assert_eq!(auth.lock().unwrap().refreshes, 0);

    // The server forgets every access token: the next call gets a 401, refreshes once and retries.
    auth.lock().unwrap().access.clear();
    let (status, body) = invoke_mcp(&s, &s.key_a, "protected", "secret", json!({})).await;
    assert_eq!((status, first_text(&body)), (200, "the secret is 42"), "{body}");
    assert_eq!(auth.lock().unwrap().refreshes, 1);

    // Tokens about to expire are refreshed before use.
    auth.lock().unwrap().expires_in = 5;
    auth.lock().unwrap().access.clear();
    let (status, _) = invoke_mcp(&s, &s.key_a, "protected", "secret", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        auth.lock().unwrap().refreshes,
        2,
        "401 → refresh (the new token expires in 5 s)"
    );
    let (status, _) = invoke_mcp(&s, &s.key_a, "protected", "secret", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        auth.lock().unwrap().refreshes,
        3,
        "refreshed before expiry without a 401"
    );

    // Listing masks the (dynamically registered) client id.
    let (_, list) = s.get(&s.key_a, &s.console("/tools/mcp")).await;
    assert_eq!(list[0]["is_dynamic_registration"], true);
    assert_eq!(list[0]["authentication"]["client_id"], "cl****-1");
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// toolplane as an MCP server.

fn loopback() -> SafeClient {
    SafeClient::new(NetConfig {
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..NetConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn toolplane_serves_time_tools_over_mcp() {
    let s = TestServer::start().await;
    let entries = json!([{"kind": "provider", "provider_type": "builtin", "provider_id": "time"}]);
    let (status, open) = s
        .post(
            &s.key_a,
            &s.console("/mcp-servers"),
            json!({"name": "clock", "description": "time tools", "entries": entries}),
        )
        .await;
    assert_eq!(status, 200, "{open}");
    assert!(open.get("api_key").is_none());
    let (status, keyed) = s
        .post(
            &s.key_a,
            &s.console("/mcp-servers"),
            json!({"name": "clock-keyed", "entries": entries, "require_api_key": true}),
        )
        .await;
    assert_eq!(status, 200, "{keyed}");
    let api_key = keyed["api_key"].as_str().unwrap().to_owned();
    let (_, list) = s.get(&s.key_a, &s.console("/mcp-servers")).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&api_key), "keys are shown once");
    let (_, list_b) = s.get(&s.key_b, &s.console("/mcp-servers")).await;
    assert_eq!(list_b, json!([]));

    // toolplane's own client, no key needed.
    let open_url = s.url(open["server_path"].as_str().unwrap());
    let client = McpClient::connect_http(loopback(), &open_url, ClientOptions::default())
        .await
        .unwrap();
    let tools = client.list_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "current_time"), "{tools:?}");
    let result = client
        .call_tool("current_time", Default::default(), Default::default())
        .await
        .unwrap();
    assert!(!result.is_error());
    client.close().await;

    // A tenant's server offers 2026-07-28 clients the tasks extension: a call may be answered with a task (polled
    // with tasks/get), or directly when the tool is quick; another tenant's server cannot reach the task.
    let tasks_meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}});
    let stateless = async |url: &str, method: &str, mut params: Value, name: Option<&str>| -> Value {
        params["_meta"] = tasks_meta.clone();
        let mut request = s
            .http
            .post(url)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2026-07-28")
            .header("Mcp-Method", method);
        if let Some(name) = name {
            request = request.header("Mcp-Name", name);
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        request.json(&body).send().await.unwrap().json().await.unwrap()
    };
    let discovered = stateless(&open_url, "server/discover", json!({}), None).await;
    assert_eq!(
        discovered["result"]["capabilities"]["extensions"]["io.modelcontextprotocol/tasks"],
        json!({}),
        "{discovered}"
    );
    let call = json!({"name": "current_time", "arguments": {}});
    let mut answered = stateless(&open_url, "tools/call", call, Some("current_time")).await;
    if answered["result"]["resultType"] == "task" {
        let task_id = answered["result"]["taskId"].as_str().unwrap().to_owned();
        let get = json!({"taskId": task_id});
        let (_, other_tenant) = s
            .post(
                &s.key_b,
                &s.console("/mcp-servers"),
                json!({"name": "b-clock", "entries": entries}),
            )
            .await;
        let other_url = s.url(other_tenant["server_path"].as_str().unwrap());
        let foreign = stateless(&other_url, "tasks/get", get.clone(), Some(&task_id)).await;
        assert_eq!(foreign["error"]["code"], -32602, "{foreign}");
        for _ in 0..600 {
            answered = stateless(&open_url, "tasks/get", get.clone(), Some(&task_id)).await;
            if answered["result"]["status"] != "working" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        answered["result"] = answered["result"]["result"].clone();
    }
    assert!(
        answered["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("20"),
        "{answered}"
    );

    // The keyed server: refused without the key, served with it.
    let keyed_url = s.url(keyed["server_path"].as_str().unwrap());
    let refused = McpClient::connect_http(loopback(), &keyed_url, ClientOptions::default()).await;
    assert!(
        matches!(refused, Err(toolplane_mcp::McpError::Unauthorized { .. })),
        "{refused:?}"
    );
    let mut options = ClientOptions::default();
    options
        .headers
        .insert("Authorization".into(), format!("Bearer {api_key}"));
    // The resource-server pieces: a challenge naming the protected resource metadata, which names this URL.
    let challenge = s
        .http
        .post(&keyed_url)
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let www = challenge.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    let metadata_url = www
        .split("resource_metadata=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let metadata: Value = s.http.get(&metadata_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(metadata["resource"], keyed_url, "{metadata}");
    let client = McpClient::connect_http(loopback(), &keyed_url, options).await.unwrap();
    assert!(
        client
            .list_tools()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "current_time")
    );
    client.close().await;

    // Rotation: the old code stops working; disabling refuses requests.
    let id = keyed["id"].as_str().unwrap();
    let (status, rotated) = s
        .post(
            &s.key_a,
            &s.console(&format!("/mcp-servers/{id}/rotate")),
            json!({"require_api_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let old = McpClient::connect_http(loopback(), &keyed_url, ClientOptions::default()).await;
    assert!(old.is_err());
    let rotated_url = s.url(rotated["server_path"].as_str().unwrap());
    let client = McpClient::connect_http(loopback(), &rotated_url, ClientOptions::default())
        .await
        .unwrap();
    client.close().await;
    let (status, _) = send(
        &s,
        reqwest::Method::PUT,
        &s.key_a,
        &s.console(&format!("/mcp-servers/{id}")),
        json!({"status": "inactive"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        McpClient::connect_http(loopback(), &rotated_url, ClientOptions::default())
            .await
            .is_err()
    );

    // The Python SDK's client against the open server.
    if let Some(py) = python() {
        let script = r#"
import json, sys, anyio
from mcp import Client
async def main(url):
    async with Client(url) as client:
        tools = await client.list_tools()
        result = await client.call_tool("current_time", {})
        print(json.dumps({"tools": [t.name for t in tools.tools],
                          "result": result.model_dump(by_alias=True, exclude_none=True, mode="json")}))
anyio.run(main, sys.argv[1])
"#;
        let out = Command::new(&py)
            .arg("-c")
            .arg(script)
            .arg(&open_url)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            seen["tools"].as_array().unwrap().contains(&json!("current_time")),
            "{seen}"
        );
        assert_eq!(seen["result"]["isError"], json!(false), "{seen}");
        assert!(
            seen["result"]["content"][0]["text"].as_str().unwrap().contains("20"),
            "{seen}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn stdio_servers_are_admin_only() {
    let Some(py) = python() else { return };
    let s = TestServer::start().await;
    let body = json!({
        "name": "Local", "server_identifier": "local",
        "stdio": {"command": py.display().to_string(),
                  "args": [mcp_crate().join("tests/python/mcp_server.py").display().to_string(), "stdio"]},
    });
    let (status, refused) = send(
        &s,
        reqwest::Method::POST,
        &s.key_a,
        &s.console("/tool-provider/mcp"),
        body.clone(),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    let response = s
        .http
        .post(s.console("/tool-provider/mcp"))
        .bearer_auth(&s.admin_key)
        .header("X-Tenant-Id", &s.tenant_a)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["server_url"], "stdio://******");
    assert_eq!(created["is_team_authorization"], true, "{created}");
    // The tenant's own key may use it (the admin configured it).
    let (status, body) = invoke_mcp(&s, &s.key_a, "local", "echo", json!({"text": "from a child process"})).await;
    assert_eq!((status, first_text(&body)), (200, "from a child process"), "{body}");
    s.stop().await;
}

/// Figures (run with `--ignored --nocapture`, release): the proxy overhead of serving a Python MCP server's tool
/// through `/v1/tools/invoke` against calling it directly, and `tools/call` throughput of toolplane's MCP server
/// (builtin `current_time`, 10 concurrent session clients) behind the store resolver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn mcp_figures() {
    let Some(py) = python() else { return };
    let server = start_python_server(&py).await;
    let s = TestServer::start().await;
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let (status, _) = send(
        &s,
        reqwest::Method::POST,
        &s.key_a,
        &s.console("/tool-provider/mcp"),
        json!({"server_url": url, "name": "Py", "server_identifier": "py"}),
    )
    .await;
    assert_eq!(status, 200);
    let n = 100;
    let percentile = |mut v: Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 - 1.0) * p) as usize]
    };
    // Direct: one session, N calls; and a new connection per call (what a proxied call does).
    let client = McpClient::connect_http(loopback(), &url, ClientOptions::default())
        .await
        .unwrap();
    let mut session = Vec::new();
    for _ in 0..n {
        let t = std::time::Instant::now();
        let mut args = serde_json::Map::new();
        args.insert("text".into(), json!("x"));
        client.call_tool("echo", args, Default::default()).await.unwrap();
        session.push(t.elapsed());
    }
    client.close().await;
    let mut fresh = Vec::new();
    for _ in 0..n {
        let t = std::time::Instant::now();
        let client = McpClient::connect_http(loopback(), &url, ClientOptions::default())
            .await
            .unwrap();
        let mut args = serde_json::Map::new();
        args.insert("text".into(), json!("x"));
        client.call_tool("echo", args, Default::default()).await.unwrap();
        fresh.push(t.elapsed());
        client.close().await;
    }
    let mut proxied = Vec::new();
    for _ in 0..n {
        let t = std::time::Instant::now();
        let (status, _) = invoke_mcp(&s, &s.key_a, "py", "echo", json!({"text": "x"})).await;
        assert_eq!(status, 200);
        proxied.push(t.elapsed());
    }
    eprintln!(
        "FIGURE python echo p50: direct session {:?}, direct connect-per-call {:?}, via /v1/tools/invoke {:?}",
        percentile(session, 0.5),
        percentile(fresh, 0.5),
        percentile(proxied, 0.5)
    );

    // toolplane as an MCP server, 10 concurrent clients.
    let (_, open) = s
        .post(
            &s.key_a,
            &s.console("/mcp-servers"),
            json!({"name": "clock", "entries": [{"kind": "tool", "provider_type": "builtin", "provider_id": "time", "tool_name": "current_time"}]}),
        )
        .await;
    let server_url = s.url(open["server_path"].as_str().unwrap());
    let per_client = 2000;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let server_url = server_url.clone();
        tasks.push(tokio::spawn(async move {
            let client = McpClient::connect_http(loopback(), &server_url, ClientOptions::default())
                .await
                .unwrap();
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = std::time::Instant::now();
                client
                    .call_tool("current_time", Default::default(), Default::default())
                    .await
                    .unwrap();
                latencies.push(t.elapsed());
            }
            client.close().await;
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    eprintln!(
        "FIGURE toolplane MCP server tools/call: {} calls in {:?} = {:.0} calls/s, p50 {:?}, p99 {:?}",
        all.len(),
        elapsed,
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(all.clone(), 0.5),
        percentile(all, 0.99)
    );
    s.stop().await;
}

#[tokio::test]
async fn client_credentials_with_a_pre_registered_client() {
    let (auth_base, auth) = start_auth().await;
    auth.lock().unwrap().client_credentials_only = true;
    let s = TestServer::start().await;
    let (status, created) = send(
        &s,
        reqwest::Method::POST,
        &s.key_a,
        &s.console("/tool-provider/mcp"),
        json!({"server_url": format!("{auth_base}/mcp"), "name": "Machine", "server_identifier": "machine",
               "authentication": {"client_id": "machine", "client_secret": "s3cret"}}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["is_team_authorization"], false);
    assert_eq!(
        created["authentication"],
        json!({"client_id": "ma***ne", "client_secret": "******"})
    );
    let provider_id = created["id"].as_str().unwrap().to_owned();
    let (status, body) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/mcp/auth"),
            json!({"provider_id": provider_id}),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"result": "success"})));
    assert_eq!(auth.lock().unwrap().grants, 1);
    let (status, body) = invoke_mcp(&s, &s.key_a, "machine", "secret", json!({})).await;
    assert_eq!((status, first_text(&body)), (200, "the secret is 42"), "{body}");
    // No refresh token: a 401 gets a new client-credentials grant and one retry.
    auth.lock().unwrap().access.clear();
    let (status, body) = invoke_mcp(&s, &s.key_a, "machine", "secret", json!({})).await;
    assert_eq!((status, first_text(&body)), (200, "the secret is 42"), "{body}");
    assert_eq!(auth.lock().unwrap().grants, 2);
    s.stop().await;
}

/// Starts `growing_server.py` over streamable HTTP.
async fn start_growing_server(python: &Path) -> PyServer {
    let port = free_port();
    let child = Command::new(python)
        .arg(mcp_crate().join("tests/python/growing_server.py"))
        .arg("streamable-http")
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "growing MCP server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    PyServer { _child: child, port }
}

/// The provider's cached tool names, read from the database.
async fn cached_tool_names(s: &TestServer, provider_id: &str) -> Vec<String> {
    let row = s
        .state
        .store
        .mcp_providers()
        .get(&s.tenant_a, provider_id)
        .await
        .unwrap()
        .unwrap();
    let tools: Vec<Value> = serde_json::from_str(&row.tools).unwrap();
    tools
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

/// Calls `grow`, then waits for the cached list to hold the new tool (refreshed from list_changed alone: nobody
/// asks for a re-list) and calls the new tool through toolplane.
async fn grow_and_see(s: &TestServer, key: &str, provider: &str, provider_id: &str, name: &str) {
    assert!(!cached_tool_names(s, provider_id).await.contains(&name.to_owned()));
    let (status, body) = invoke_mcp(s, key, provider, "grow", json!({"name": name})).await;
    assert_eq!(
        (status, first_text(&body)),
        (200, format!("added {name}").as_str()),
        "{body}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let names = cached_tool_names(s, provider_id).await;
        if names.contains(&name.to_owned()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cached tools never picked up {name}: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = invoke_mcp(s, key, provider, name, json!({"text": "hi"})).await;
    assert_eq!(
        (status, first_text(&body)),
        (200, format!("{name} says hi").as_str()),
        "{body}"
    );
}

/// `notifications/tools/list_changed` on a kept session's GET stream refreshes the cached tool list; proxied calls
/// reuse one initialized session.
#[tokio::test]
async fn list_changed_refreshes_cached_tools_over_http() {
    let Some(py) = python() else { return };
    let server = start_growing_server(&py).await;
    let s = TestServer::start().await;
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    let (status, created) = send(
        &s,
        reqwest::Method::POST,
        &s.key_a,
        &s.console("/tool-provider/mcp"),
        json!({"server_url": url, "name": "Growing", "server_identifier": "growing"}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let provider_id = created["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let (status, body) = invoke_mcp(&s, &s.key_a, "growing", "echo", json!({"text": "x"})).await;
        assert_eq!((status, first_text(&body)), (200, "x"), "{body}");
    }
    grow_and_see(&s, &s.key_a, "growing", &provider_id, "fresh_http").await;
    s.stop().await;
}

/// The same over stdio: the kept child process's stdout carries list_changed.
#[tokio::test]
async fn list_changed_refreshes_cached_tools_over_stdio() {
    let Some(py) = python() else { return };
    let s = TestServer::start().await;
    let response = s
        .http
        .post(s.console("/tool-provider/mcp"))
        .bearer_auth(&s.admin_key)
        .header("X-Tenant-Id", &s.tenant_a)
        .json(&json!({
            "name": "Growing local", "server_identifier": "growing-local",
            "stdio": {"command": py.display().to_string(),
                      "args": [mcp_crate().join("tests/python/growing_server.py").display().to_string(), "stdio"]},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let created: Value = response.json().await.unwrap();
    let provider_id = created["id"].as_str().unwrap().to_owned();
    grow_and_see(&s, &s.key_a, "growing-local", &provider_id, "fresh_stdio").await;
    s.stop().await;
}
