//! OAuth 2.0 for a builtin provider, end to end over real HTTP against an authorization server on loopback:
//! system and tenant clients, authorization URL (PKCE S256, context cookie) → consent redirect → callback (code
//! exchange) → stored `oauth2` credential → a tool call with the token → expiry → refresh → a call with the new
//! token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use support::{Db, OAuthProvider, Options, TestServer};
use toolplane_store::BuiltinCredentialUpdate;

/// The authorization server's state: issued codes (with their PKCE challenge), live tokens, refresh tokens.
#[derive(Default)]
struct As {
    codes: HashMap<String, (String, String, String)>, // code → (client_id, redirect_uri, challenge)
    access: Vec<String>,
    refresh: HashMap<String, u32>,
    issued: u32,
    token_requests: Vec<HashMap<String, String>>,
}

type Shared = Arc<Mutex<As>>;

const CLIENT_ID: &str = "toolplane-client";
const CLIENT_SECRET: &str = "s3cret-client";

async fn authorize(State(st): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.get("response_type").map(String::as_str) != Some("code")
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (StatusCode::BAD_REQUEST, "need response_type=code and PKCE S256").into_response();
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    st.lock().unwrap().codes.insert(
        code.clone(),
        (
            q["client_id"].clone(),
            q["redirect_uri"].clone(),
            q["code_challenge"].clone(),
        ),
    );
    Redirect::to(&format!("{}?code={code}&state={}", q["redirect_uri"], q["state"])).into_response()
}

fn issue(st: &mut As) -> Value {
    st.issued += 1;
    let n = st.issued;
    let access = format!("at-{n}");
    let refresh = format!("rt-{n}");
    st.access.push(access.clone());
    st.refresh.insert(refresh.clone(), n);
    json!({"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": 3600})
}

async fn token(State(st): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut st = st.lock().unwrap();
    st.token_requests.push(form.clone());
    let error = |e: &str| (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response();
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return error("invalid_client");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((client, redirect, challenge)) = st.codes.remove(&form["code"]) else {
                return error("invalid_grant");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if client != CLIENT_ID || redirect != form["redirect_uri"] || computed != challenge {
                return error("invalid_grant");
            }
            axum::Json(issue(&mut st)).into_response()
        }
        Some("refresh_token") => {
            if st.refresh.remove(&form["refresh_token"]).is_none() {
                return error("invalid_grant");
            }
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
        format!("hello {token}").into_response()
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
    json!({
        "client_id": client_id,
        "client_secret": CLIENT_SECRET,
        "authorization_url": format!("{origin}/authorize"),
        "token_url": format!("{origin}/token"),
        "scope": "read"
    })
    .as_object()
    .unwrap()
    .clone()
}

#[tokio::test]
async fn authorize_store_call_refresh() {
    let (origin, auth) = authorization_server().await;
    let s = TestServer::start_with(Options {
        providers: vec![Arc::new(OAuthProvider::new())],
        extra: vec![("CONSOLE_WEB_URL", "https://console.example".into())],
        ..Options::default()
    })
    .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let oauth_url = |suffix: &str| s.url(&format!("/console/api/oauth/plugin/oauthy/tool/{suffix}"));

    // No client yet: a clear error.
    let (status, body) = s.get(&s.key_a, &oauth_url("authorization-url")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("set-system-client oauthy"),
        "{body}"
    );

    // The admin sets a system client (stored in Dify's AES-CBC format).
    s.state
        .oauth
        .set_system_client("", "oauthy", &client_params(&origin, CLIENT_ID))
        .await
        .unwrap();
    let row = s
        .state
        .store
        .oauth_clients()
        .system("", "oauthy")
        .await
        .unwrap()
        .unwrap();
    let decrypted = toolplane_secrets::decrypt_system_oauth_params("test-secret", &row.encrypted_oauth_params).unwrap();
    assert_eq!(decrypted["client_id"], CLIENT_ID);
    let (_, schema) = s
        .get(
            &s.key_a,
            &s.console("/tool-provider/builtin/oauthy/oauth/client-schema"),
        )
        .await;
    assert_eq!(schema["is_system_oauth_params_exists"], true);
    assert_eq!(schema["is_oauth_custom_client_enabled"], false);
    assert_eq!(
        schema["redirect_uri"],
        "http://127.0.0.1:0/console/api/oauth/plugin/oauthy/tool/callback"
    );

    // 1. authorization URL + context cookie
    let response = s
        .http
        .get(oauth_url("authorization-url"))
        .bearer_auth(&s.key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Max-Age=300"),
        "{cookie}"
    );
    let context_id = cookie
        .strip_prefix("context_id=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let authorization_url = url::Url::parse(body["authorization_url"].as_str().unwrap()).unwrap();
    let query: HashMap<String, String> = authorization_url.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["state"], context_id);
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["scope"], "read");

    // 2. the user consents: the authorization server redirects to toolplane's callback
    let consent = no_redirects.get(authorization_url).send().await.unwrap();
    assert_eq!(consent.status(), 303);
    let location = consent.headers()["location"].to_str().unwrap().to_owned();
    let callback = location.replace("http://127.0.0.1:0", &s.base);
    assert!(callback.starts_with(&oauth_url("callback")), "{callback}");

    // The callback without the browser's cookie fails (and does not consume the context).
    let response = no_redirects.get(&callback).send().await.unwrap();
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://console.example/oauth-callback?error=")
    );

    // 3. callback with the cookie → code exchange (PKCE verified by the server) → credential → redirect
    let response = no_redirects
        .get(&callback)
        .header("cookie", format!("context_id={context_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "https://console.example/oauth-callback");
    // single use
    let again = no_redirects
        .get(&callback)
        .header("cookie", format!("context_id={context_id}"))
        .send()
        .await
        .unwrap();
    assert!(again.headers()["location"].to_str().unwrap().contains("error="));

    let rows = s
        .state
        .store
        .builtin_credentials()
        .list(&s.tenant_a, "oauthy")
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!((row.credential_type.as_str(), row.name.as_str()), ("oauth2", "AUTH 1"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (row.expires_at - (now + 3600)).abs() < 10,
        "expires_at {}",
        row.expires_at
    );
    assert!(
        !row.encrypted_credentials.to_string().contains("at-1"),
        "tokens are encrypted"
    );
    let (_, listed) = s
        .get(&s.key_a, &s.console("/tool-provider/builtin/oauthy/credentials"))
        .await;
    assert_eq!(listed[0]["credential_type"], "oauth2");
    assert_eq!(listed[0]["credentials"]["access_token"], "****"); // masked (≤ 6 characters: all stars)

    // 4. a tool call uses the token
    let me = format!("{origin}/me");
    let (status, body) = s.invoke(&s.key_a, "oauthy", "me", json!({"url": me})).await;
    assert_eq!((status, support::first_text(&body)), (200, "200 hello at-1"), "{body}");

    // 5. expiry: within the 60 s margin the runtime refreshes first and saves the new tokens
    s.state
        .store
        .builtin_credentials()
        .update(
            &s.tenant_a,
            &row.id,
            &BuiltinCredentialUpdate {
                expires_at: Some(now + 30),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, body) = s.invoke(&s.key_a, "oauthy", "me", json!({"url": me})).await;
    assert_eq!((status, support::first_text(&body)), (200, "200 hello at-2"), "{body}");
    let refreshed = s
        .state
        .store
        .builtin_credentials()
        .get_by_id(&s.tenant_a, &row.id)
        .await
        .unwrap()
        .unwrap();
    assert!(refreshed.expires_at > now + 3000);
    let last = auth.lock().unwrap().token_requests.last().unwrap().clone();
    assert_eq!(
        (last["grant_type"].as_str(), last["refresh_token"].as_str()),
        ("refresh_token", "rt-1")
    );
    // no refresh while the token is fresh
    let (_, body) = s.invoke(&s.key_a, "oauthy", "me", json!({"url": me})).await;
    assert_eq!(support::first_text(&body), "200 hello at-2");
    assert_eq!(auth.lock().unwrap().issued, 2);

    // a refresh that fails says so
    s.state
        .store
        .builtin_credentials()
        .update(
            &s.tenant_a,
            &row.id,
            &BuiltinCredentialUpdate {
                expires_at: Some(now - 5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    auth.lock().unwrap().refresh.clear();
    let (status, body) = s.invoke(&s.key_a, "oauthy", "me", json!({"url": me})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("could not be refreshed"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn tenant_client_wins_and_is_masked() {
    tenant_client(Db::Sqlite).await;
}

#[tokio::test]
async fn tenant_client_on_postgres() {
    if support::postgres_url().is_some() {
        tenant_client(Db::Postgres).await;
    }
}

async fn tenant_client(db: Db) {
    let (origin, _auth) = authorization_server().await;
    let s = TestServer::start_with(Options {
        db,
        providers: vec![Arc::new(OAuthProvider::new())],
        ..Options::default()
    })
    .await;
    s.state
        .oauth
        .set_system_client("", "oauthy", &client_params(&origin, "system-client"))
        .await
        .unwrap();
    let custom = s.console("/tool-provider/builtin/oauthy/oauth/custom-client");
    let (status, _) = s
        .post(
            &s.key_a,
            &custom,
            json!({"client_params": client_params(&origin, "tenant-client")}),
        )
        .await;
    assert_eq!(status, 200);

    // masked on read; secrets encrypted at rest
    let (_, params) = s.get(&s.key_a, &custom).await;
    assert_eq!(params["client_id"], "tenant-client");
    assert_eq!(params["client_secret"], "s3*********nt");
    let row = s
        .state
        .store
        .oauth_clients()
        .tenant(&s.tenant_a, "", "oauthy")
        .await
        .unwrap()
        .unwrap();
    assert!(row.enabled && !row.encrypted_oauth_params.contains(CLIENT_SECRET));

    let client_id = |key: &str| {
        let http = s.http.clone();
        let url = s.url("/console/api/oauth/plugin/oauthy/tool/authorization-url");
        let key = key.to_owned();
        async move {
            let body: Value = http
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let url = url::Url::parse(body["authorization_url"].as_str().unwrap()).unwrap();
            url.query_pairs()
                .find(|(k, _)| k == "client_id")
                .unwrap()
                .1
                .into_owned()
        }
    };
    assert_eq!(client_id(&s.key_a).await, "tenant-client");
    assert_eq!(
        client_id(&s.key_b).await,
        "system-client",
        "other tenants keep the system client"
    );

    // [__HIDDEN__] keeps the stored secret
    let mut update = client_params(&origin, "tenant-client-2");
    update.insert("client_secret".into(), json!("[__HIDDEN__]"));
    s.post(&s.key_a, &custom, json!({"client_params": update})).await;
    let tenant = s
        .state
        .oauth
        .resolve_client(&s.tenant_a, &OAuthProvider::new())
        .await
        .unwrap()
        .unwrap();
    assert!(tenant.from_tenant);
    assert_eq!(
        (
            tenant.params["client_id"].as_str(),
            tenant.params["client_secret"].as_str()
        ),
        (Some("tenant-client-2"), Some(CLIENT_SECRET))
    );

    // disabling falls back to the system client; the schema route reports both
    s.post(&s.key_a, &custom, json!({"enable_oauth_custom_client": false}))
        .await;
    assert_eq!(client_id(&s.key_a).await, "system-client");
    let (_, schema) = s
        .get(
            &s.key_a,
            &s.console("/tool-provider/builtin/oauthy/oauth/client-schema"),
        )
        .await;
    assert_eq!(schema["is_oauth_custom_client_enabled"], false);
    assert_eq!(schema["client_params"]["client_secret"], "s3*********nt");
    assert_eq!(schema["schema"].as_array().unwrap().len(), 5);

    // delete
    let response = s.http.delete(&custom).bearer_auth(&s.key_a).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        s.state
            .store
            .oauth_clients()
            .tenant(&s.tenant_a, "", "oauthy")
            .await
            .unwrap()
            .is_none()
    );

    // providers without an oauth_schema, and plugin providers, say why not
    let (status, body) = s
        .get(&s.key_a, &s.console("/tool-provider/builtin/time/oauth/client-schema"))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s
        .get(
            &s.key_a,
            &s.url("/console/api/oauth/plugin/org/plugin/provider/tool/authorization-url"),
        )
        .await;
    assert_eq!(status, 501, "{body}");
    assert!(body["message"].as_str().unwrap().contains("plugin runtime"), "{body}");
    s.stop().await;
}
