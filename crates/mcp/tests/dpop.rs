//! DPoP (RFC 9449) against an authorization server and an MCP endpoint built here with axum (real HTTP on
//! loopback) that check every proof the way RFC 9449 §4.3 says — signature against the proof's own `jwk` (with
//! aws-lc-rs), `typ`, `htm`, `htu`, `iat`, unique `jti`, `ath` and the key thumbprint bound into the token — and
//! that both demand a nonce first (§8, §9).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use toolplane_mcp::oauth::{self, ClientInformation, Dpop};
use toolplane_mcp::{ClientOptions, EraPreference, McpClient, McpError};

const AS_NONCE: &str = "as-nonce-1";
const RS_NONCE: &str = "rs-nonce-1";

#[derive(Default)]
struct Server {
    base: String,
    /// access token → the thumbprint it is bound to
    bound: HashMap<String, String>,
    jtis: HashSet<String>,
    as_challenges: u32,
    rs_challenges: u32,
    mcp_requests: u32,
    refused: Vec<String>,
}

type Shared = Arc<Mutex<Server>>;

fn decode(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// Checks a proof; returns (thumbprint of its key, nonce) or why it is refused.
fn check_proof(
    state: &mut Server,
    proof: Option<&str>,
    htu: &str,
    token: Option<&str>,
) -> Result<(String, Option<String>), String> {
    let proof = proof.ok_or("no DPoP header")?;
    let parts: Vec<&str> = proof.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err("not a JWS".into());
    };
    let header = decode(h).ok_or("bad header")?;
    let claims = decode(c).ok_or("bad claims")?;
    if header["typ"] != "dpop+jwt" || header["alg"] != "ES256" || header["jwk"].get("d").is_some() {
        return Err(format!("bad header {header}"));
    }
    let coordinate = |k: &str| URL_SAFE_NO_PAD.decode(header["jwk"][k].as_str().unwrap_or_default());
    let mut point = vec![0x04];
    point.extend(coordinate("x").map_err(|_| "bad x")?);
    point.extend(coordinate("y").map_err(|_| "bad y")?);
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| "bad signature encoding")?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(format!("{h}.{c}").as_bytes(), &signature)
        .map_err(|_| "signature does not verify")?;
    if claims["htm"] != "POST" || claims["htu"] != htu {
        return Err(format!("htm/htu {} {} != POST {htu}", claims["htm"], claims["htu"]));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    if claims["iat"].as_u64().is_none_or(|iat| iat.abs_diff(now) > 60) {
        return Err("iat".into());
    }
    let jti = claims["jti"].as_str().ok_or("no jti")?.to_owned();
    if !state.jtis.insert(jti) {
        return Err("replayed jti".into());
    }
    let expected_ath = token.map(|t| URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())));
    if claims["ath"].as_str().map(str::to_owned) != expected_ath {
        return Err("ath".into());
    }
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        header["jwk"]["x"].as_str().unwrap_or_default(),
        header["jwk"]["y"].as_str().unwrap_or_default()
    );
    let jkt = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    Ok((jkt, claims["nonce"].as_str().map(str::to_owned)))
}

fn dpop_header(headers: &HeaderMap) -> Option<String> {
    headers.get("dpop").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn as_metadata(State(s): State<Shared>) -> Json<Value> {
    let base = s.lock().unwrap().base.clone();
    Json(json!({
        "issuer": format!("{base}/auth"),
        "authorization_endpoint": format!("{base}/auth/authorize"),
        "token_endpoint": format!("{base}/auth/token"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": ["ES256"],
    }))
}

async fn prm(State(s): State<Shared>) -> Json<Value> {
    let base = s.lock().unwrap().base.clone();
    Json(json!({"resource": format!("{base}/mcp"), "authorization_servers": [format!("{base}/auth")]}))
}

async fn token(State(s): State<Shared>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut state = s.lock().unwrap();
    let htu = format!("{}/auth/token", state.base);
    let (jkt, nonce) = match check_proof(&mut state, dpop_header(&headers).as_deref(), &htu, None) {
        Ok(checked) => checked,
        Err(why) => {
            state.refused.push(format!("token: {why}"));
            return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_dpop_proof"}))).into_response();
        }
    };
    if nonce.as_deref() != Some(AS_NONCE) {
        state.as_challenges += 1;
        return (
            StatusCode::BAD_REQUEST,
            [("dpop-nonce", AS_NONCE)],
            Json(json!({"error": "use_dpop_nonce"})),
        )
            .into_response();
    }
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    let access = format!("dpop-token-{}", state.bound.len() + 1);
    state.bound.insert(access.clone(), jkt);
    Json(json!({"access_token": access, "token_type": "DPoP", "expires_in": 3600})).into_response()
}

async fn mcp(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut state = s.lock().unwrap();
    state.mcp_requests += 1;
    let base = state.base.clone();
    let unauthorized = |challenge: String| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            "unauthorized",
        )
            .into_response()
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("DPoP "))
        .map(str::to_owned);
    let Some(token) = token else {
        return unauthorized(format!(
            r#"DPoP algs="ES256", resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#
        ));
    };
    let htu = format!("{base}/mcp");
    let (jkt, nonce) = match check_proof(&mut state, dpop_header(&headers).as_deref(), &htu, Some(&token)) {
        Ok(checked) => checked,
        Err(why) => {
            state.refused.push(format!("mcp: {why}"));
            return unauthorized(r#"DPoP error="invalid_dpop_proof""#.into());
        }
    };
    if state.bound.get(&token) != Some(&jkt) {
        state.refused.push("mcp: token not bound to this key".into());
        return unauthorized(r#"DPoP error="invalid_token""#.into());
    }
    if nonce.as_deref() != Some(RS_NONCE) {
        state.rs_challenges += 1;
        let mut response = unauthorized(r#"DPoP error="use_dpop_nonce", error_description="nonce""#.into());
        response.headers_mut().insert("dpop-nonce", RS_NONCE.parse().unwrap());
        return response;
    }
    let id = body["id"].clone();
    let result = match body["method"].as_str() {
        Some("server/discover") => json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}}),
        Some("tools/list") => json!({"tools": [{"name": "bound", "inputSchema": {"type": "object"}}]}),
        _ => json!({}),
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

async fn start() -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::new(Mutex::new(Server {
        base: base.clone(),
        ..Server::default()
    }));
    let app = Router::new()
        .route("/.well-known/oauth-protected-resource/mcp", get(prm))
        .route("/.well-known/oauth-authorization-server/auth", get(as_metadata))
        .route("/auth/token", post(token))
        .route("/mcp", post(mcp))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

fn options(dpop: &Dpop, authorization: Option<String>) -> ClientOptions {
    let mut options = ClientOptions {
        era: EraPreference::Stateless,
        timeout: Duration::from_secs(5),
        dpop: Some(dpop.clone()),
        ..ClientOptions::default()
    };
    if let Some(value) = authorization {
        options.headers.insert("Authorization".into(), value);
    }
    options
}

#[tokio::test]
async fn dpop_bound_tokens_with_nonces_at_both_servers() {
    let (base, state) = start().await;
    let http = common::loopback_client();
    let url = format!("{base}/mcp");
    let dpop = Dpop::generate().unwrap();

    // The DPoP-only server challenges with the DPoP scheme; discovery follows it.
    let challenge = match McpClient::connect_http(http.clone(), &url, options(&dpop, None)).await {
        Err(McpError::Unauthorized { challenge, .. }) => challenge.expect("a DPoP challenge is understood"),
        other => panic!("expected a 401, got {other:?}"),
    };
    let discovery = oauth::discover(&http, &url, Some(&challenge)).await.unwrap();
    assert!(discovery.authorization_server.supports_dpop());

    // Token request: refused once for want of a nonce, then retried with it.
    let client = ClientInformation::pre_registered("public", None);
    let tokens = oauth::refresh_with_dpop(&http, &discovery, &client, "r-1", Some(&dpop))
        .await
        .unwrap();
    assert!(tokens.is_dpop());
    assert!(tokens.authorization_header().starts_with("DPoP dpop-token-"));
    assert_eq!(state.lock().unwrap().as_challenges, 1);

    // MCP requests: the first is refused for want of the resource server's nonce and retried; later ones carry
    // it straight away, each with its own proof.
    let mcp = McpClient::connect_http(http.clone(), &url, options(&dpop, Some(tokens.authorization_header())))
        .await
        .unwrap();
    let tools = mcp.list_tools().await.unwrap();
    assert_eq!(tools[0].name, "bound");
    mcp.list_tools().await.unwrap();
    {
        let s = state.lock().unwrap();
        assert!(s.refused.is_empty(), "{:?}", s.refused);
        assert_eq!(s.rs_challenges, 1);
        // discover + 2 × tools/list + the one retry, and the unauthenticated first try.
        assert_eq!(s.mcp_requests, 5);
    }

    // A token is useless with another key.
    let thief = Dpop::generate().unwrap();
    let stolen =
        McpClient::connect_http(http.clone(), &url, options(&thief, Some(tokens.authorization_header()))).await;
    assert!(matches!(stolen, Err(McpError::Unauthorized { .. })), "{stolen:?}");
    assert!(state.lock().unwrap().refused.iter().any(|r| r.contains("not bound")));
}

#[tokio::test]
async fn without_dpop_support_tokens_requests_carry_no_proof() {
    let (base, state) = start().await;
    let http = common::loopback_client();
    let discovery = oauth::discover(&http, &format!("{base}/mcp"), None).await.unwrap();
    let client = ClientInformation::pre_registered("public", None);
    // Plain refresh (what callers use with servers that do not advertise DPoP): no proof goes out, so this
    // DPoP-only server refuses it.
    let err = oauth::refresh(&http, &discovery, &client, "r-1").await.unwrap_err();
    assert!(err.to_string().contains("invalid_dpop_proof"), "{err}");
    assert_eq!(state.lock().unwrap().refused, ["token: no DPoP header"]);
}
