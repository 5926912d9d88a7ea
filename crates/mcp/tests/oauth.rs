//! OAuth 2.1 against an authorization server and a protected MCP endpoint built here with axum (real HTTP on
//! loopback): 401 challenge → discovery → dynamic registration → PKCE code flow → token → refresh; client
//! credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
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
use toolplane_mcp::oauth::{self, ClientInformation, ClientMetadata};
use toolplane_mcp::{ClientOptions, EraPreference, McpClient, McpError};

#[derive(Default)]
struct AuthState {
    base: String,
    clients: HashMap<String, Option<String>>,
    /// code → (client_id, challenge, redirect_uri, resource)
    codes: HashMap<String, (String, String, String, String)>,
    access: Vec<String>,
    refresh: HashMap<String, String>,
    counter: u32,
    resources_seen: Vec<String>,
}

type Shared = Arc<Mutex<AuthState>>;

async fn prm(State(s): State<Shared>) -> Json<Value> {
    let base = s.lock().unwrap().base.clone();
    Json(json!({
        "resource": format!("{base}/mcp"),
        "authorization_servers": [format!("{base}/auth")],
        "scopes_supported": ["tools:read", "tools:call"],
    }))
}

async fn as_metadata(State(s): State<Shared>) -> Json<Value> {
    let base = s.lock().unwrap().base.clone();
    Json(json!({
        "issuer": format!("{base}/auth"),
        "authorization_endpoint": format!("{base}/auth/authorize"),
        "token_endpoint": format!("{base}/auth/token"),
        "registration_endpoint": format!("{base}/auth/register"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
    }))
}

async fn register(State(s): State<Shared>, Json(body): Json<Value>) -> Response {
    if body["redirect_uris"].as_array().is_none_or(|r| r.is_empty()) {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_redirect_uri"}))).into_response();
    }
    let mut state = s.lock().unwrap();
    state.counter += 1;
    let id = format!("client-{}", state.counter);
    state.clients.insert(id.clone(), None);
    (
        StatusCode::CREATED,
        Json(json!({"client_id": id, "client_id_issued_at": 1, "client_name": body["client_name"]})),
    )
        .into_response()
}

async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut state = s.lock().unwrap();
    let client = q.get("client_id").cloned().unwrap_or_default();
    if !state.clients.contains_key(&client)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || q.get("response_type").map(String::as_str) != Some("code")
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    state.counter += 1;
    let code = format!("code-{}", state.counter);
    let redirect = q["redirect_uri"].clone();
    state
        .resources_seen
        .push(q.get("resource").cloned().unwrap_or_default());
    state.codes.insert(
        code.clone(),
        (
            client,
            q["code_challenge"].clone(),
            redirect.clone(),
            q.get("resource").cloned().unwrap_or_default(),
        ),
    );
    // The user consents at once.
    Redirect::to(&format!("{redirect}?code={code}&state={}", q["state"])).into_response()
}

fn oauth_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response()
}

async fn token(State(s): State<Shared>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut state = s.lock().unwrap();
    state.counter += 1;
    let n = state.counter;
    let issue = |state: &mut AuthState, with_refresh: bool| {
        let access = format!("access-{n}");
        state.access.push(access.clone());
        let mut body =
            json!({"access_token": access, "token_type": "bearer", "expires_in": 3600, "scope": "tools:read"});
        if with_refresh {
            let refresh = format!("refresh-{n}");
            state.refresh.insert(refresh.clone(), access);
            body["refresh_token"] = json!(refresh);
        }
        Json(body).into_response()
    };
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((client, challenge, redirect, resource)) = state.codes.remove(&f["code"]) else {
                return oauth_error("invalid_grant");
            };
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if computed != challenge
                || f.get("client_id") != Some(&client)
                || f.get("redirect_uri") != Some(&redirect)
                || f.get("resource") != Some(&resource)
            {
                return oauth_error("invalid_grant");
            }
            issue(&mut state, true)
        }
        Some("refresh_token") => {
            if state.refresh.remove(&f["refresh_token"]).is_none() {
                return oauth_error("invalid_grant");
            }
            issue(&mut state, true)
        }
        Some("client_credentials") => {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("machine:s3cret")
            );
            if auth != expected {
                return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
            }
            issue(&mut state, false)
        }
        _ => oauth_error("unsupported_grant_type"),
    }
}

async fn callback(Query(q): Query<HashMap<String, String>>) -> Json<HashMap<String, String>> {
    Json(q)
}

/// A protected MCP endpoint: 401 with a challenge unless the bearer token is valid; then a 2026-07-28 server.
async fn mcp(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let (base, valid) = {
        let state = s.lock().unwrap();
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        (state.base.clone(), state.access.iter().any(|a| a == token))
    };
    if !valid {
        let challenge = format!(
            r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp", scope="tools:read""#
        );
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
        _ => {
            return Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "nope"}}))
                .into_response();
        }
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

async fn start() -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::new(Mutex::new(AuthState {
        base: base.clone(),
        ..AuthState::default()
    }));
    state
        .lock()
        .unwrap()
        .clients
        .insert("machine".into(), Some("s3cret".into()));
    let app = Router::new()
        .route("/.well-known/oauth-protected-resource/mcp", get(prm))
        .route("/.well-known/oauth-authorization-server/auth", get(as_metadata))
        .route("/auth/register", post(register))
        .route("/auth/authorize", get(authorize))
        .route("/auth/token", post(token))
        .route("/callback", get(callback))
        .route("/mcp", post(mcp))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

fn options(token: Option<&str>) -> ClientOptions {
    let mut options = ClientOptions {
        era: EraPreference::Stateless,
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    if let Some(token) = token {
        options.headers.insert("Authorization".into(), token.into());
    }
    options
}

#[tokio::test]
async fn discovery_registration_pkce_and_refresh() {
    let (base, state) = start().await;
    let http = common::loopback_client();
    let server_url = format!("{base}/mcp");

    // 1. Unauthenticated: a 401 with a challenge.
    let err = McpClient::connect_http(http.clone(), &server_url, options(None))
        .await
        .unwrap_err();
    let McpError::Unauthorized {
        status: 401,
        challenge: Some(challenge),
    } = err
    else {
        panic!("expected a 401 challenge, got {err}");
    };
    assert_eq!(challenge.scope.as_deref(), Some("tools:read"));

    // 2. Discovery through the challenge.
    let discovery = oauth::discover(&http, &server_url, Some(&challenge)).await.unwrap();
    assert_eq!(discovery.resource, server_url);
    assert_eq!(
        discovery.scope.as_deref(),
        Some("tools:read"),
        "the challenge's scope wins"
    );
    assert_eq!(
        discovery.authorization_server.token_endpoint,
        format!("{base}/auth/token")
    );
    // Without a challenge the well-known fallback finds the same, with the PRM's scopes.
    let fallback = oauth::discover(&http, &server_url, None).await.unwrap();
    assert_eq!(fallback.scope.as_deref(), Some("tools:read tools:call"));

    // 3. Dynamic registration.
    let redirect_uri = format!("{base}/callback");
    let client = oauth::register_client(
        &http,
        &discovery.authorization_server,
        &ClientMetadata::authorization_code(&redirect_uri),
    )
    .await
    .unwrap();
    assert_eq!(client.client_id, "client-1");

    // 4. The authorization URL; the "browser" follows it to the callback.
    let request = oauth::authorization_request(&discovery, &client, &redirect_uri).unwrap();
    assert!(request.url.contains("code_challenge_method=S256"));
    assert!(request.url.contains(&format!("state={}", request.state)));
    let landed: HashMap<String, String> = http.get(&request.url).send().await.unwrap().json().await.unwrap();
    assert_eq!(landed["state"], request.state, "state comes back unchanged");
    assert_eq!(
        state.lock().unwrap().resources_seen,
        vec![server_url.clone()],
        "RFC 8707 resource sent"
    );

    // A wrong verifier is refused.
    let wrong = oauth::exchange_code(
        &http,
        &discovery,
        &client,
        &landed["code"],
        "not-the-verifier",
        &redirect_uri,
    )
    .await
    .unwrap_err();
    assert!(wrong.to_string().contains("invalid_grant"), "{wrong}");

    // 5. Code exchange (a fresh code, since the failed attempt consumed the first).
    let request = oauth::authorization_request(&discovery, &client, &redirect_uri).unwrap();
    let landed: HashMap<String, String> = http.get(&request.url).send().await.unwrap().json().await.unwrap();
    let tokens = oauth::exchange_code(
        &http,
        &discovery,
        &client,
        &landed["code"],
        &request.code_verifier,
        &redirect_uri,
    )
    .await
    .unwrap();
    assert_eq!(tokens.token_type, "bearer");
    assert!(tokens.refresh_token.is_some());
    assert!(!tokens.expires_within(Duration::from_secs(60)));

    // The token opens the MCP server.
    let mcp = McpClient::connect_http(http.clone(), &server_url, options(Some(&tokens.authorization_header())))
        .await
        .unwrap();
    assert_eq!(mcp.list_tools().await.unwrap()[0].name, "secret");

    // 6. Refresh rotates the tokens; the new access token works too.
    let refreshed = oauth::refresh(&http, &discovery, &client, tokens.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
    assert_ne!(refreshed.access_token, tokens.access_token);
    let mcp = McpClient::connect_http(
        http.clone(),
        &server_url,
        options(Some(&refreshed.authorization_header())),
    )
    .await
    .unwrap();
    assert_eq!(mcp.list_tools().await.unwrap().len(), 1);
    // A used refresh token is rejected.
    let reused = oauth::refresh(&http, &discovery, &client, tokens.refresh_token.as_deref().unwrap()).await;
    assert!(reused.is_err());
}

#[tokio::test]
async fn client_credentials_with_a_pre_registered_client() {
    let (base, _state) = start().await;
    let http = common::loopback_client();
    let discovery = oauth::discover(&http, &format!("{base}/mcp"), None).await.unwrap();
    let client = ClientInformation::pre_registered("machine", Some("s3cret".into()));
    let tokens = oauth::client_credentials(&http, &discovery, &client).await.unwrap();
    assert!(tokens.refresh_token.is_none());
    let bad = ClientInformation::pre_registered("machine", Some("wrong".into()));
    let err = oauth::client_credentials(&http, &discovery, &bad).await.unwrap_err();
    assert!(err.to_string().contains("invalid_client"), "{err}");
    let public = ClientInformation::pre_registered("machine", None);
    assert!(oauth::client_credentials(&http, &discovery, &public).await.is_err());
}

#[tokio::test]
async fn discovery_refuses_missing_or_foreign_metadata() {
    let (base, _state) = start().await;
    let http = common::loopback_client();
    // A server without PRM and without AS metadata: the 2025-03-26 default endpoints.
    let discovery = oauth::discover(&http, &format!("{base}/elsewhere"), None).await;
    // /.well-known/oauth-protected-resource (root) does not exist either, so defaults apply at the origin.
    let discovery = discovery.unwrap();
    assert_eq!(discovery.authorization_server.token_endpoint, format!("{base}/token"));
    // A challenge pointing at metadata for another resource is refused.
    let foreign = toolplane_mcp::oauth::BearerChallenge {
        resource_metadata: Some(format!("{base}/.well-known/oauth-protected-resource/mcp")),
        ..Default::default()
    };
    let err = oauth::discover(&http, &format!("{base}/other/mcp"), Some(&foreign))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not for this MCP server"), "{err}");
}
