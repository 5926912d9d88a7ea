//! OAuth 2.1 for MCP servers, as a library without storage: the caller keeps client registrations, PKCE verifiers,
//! `state` values (single use, with an expiry) and tokens.
//!
//! The flow, as the MCP authorization spec (2025-06-18 and later) describes it:
//! 1. A request fails with [`McpError::Unauthorized`](crate::McpError::Unauthorized) carrying a
//!    [`BearerChallenge`]; [`discover`] follows its `resource_metadata` (or the well-known fallbacks) to the
//!    protected resource metadata (RFC 9728), then to the authorization server's metadata (RFC 8414, then OpenID
//!    Connect discovery; the 2025-03-26 default endpoints as a last resort).
//! 2. A client: pre-registered ([`ClientInformation::pre_registered`]) or registered dynamically
//!    ([`register_client`], RFC 7591).
//! 3. [`authorization_request`] builds the URL with PKCE S256, `state` and the `resource` indicator (RFC 8707);
//!    the user's browser returns `code` and `state` to the redirect URI; [`exchange_code`] swaps the code for a
//!    [`TokenSet`].
//! 4. [`refresh`] before expiry ([`TokenSet::expires_within`]) or after a 401; [`client_credentials`] for
//!    machine-to-machine servers.
//!
//! DPoP (RFC 9449, [`dpop`]): when the authorization server advertises `dpop_signing_alg_values_supported` with
//! ES256 ([`AuthorizationServerMetadata::supports_dpop`]), [`exchange_code_with_dpop`] and [`refresh_with_dpop`]
//! send a proof with the token request (retrying once with the server's nonce on `use_dpop_nonce`) and get a
//! token bound to the key; the MCP client then presents it as `Authorization: DPoP …` with a fresh proof on
//! every request ([`ClientOptions::dpop`](crate::ClientOptions::dpop)). Without it, everything stays Bearer.
//!
//! Every request goes through [`SafeClient`].

mod challenge;
pub mod dpop;
mod jwt;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use toolplane_net::header::{ACCEPT, CONTENT_TYPE};
use toolplane_net::{NetError, SafeClient, StatusCode};
use url::Url;

pub use challenge::BearerChallenge;
pub use dpop::{Dpop, DpopKey};

use crate::protocol::LATEST_SESSION_VERSION;

/// Why an OAuth step failed.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The request could not be made.
    #[error("cannot reach the authorization server: {0}")]
    Net(#[from] NetError),
    /// The server answered with an OAuth error (or another HTTP error).
    #[error("{endpoint} answered HTTP {status}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Server {
        endpoint: &'static str,
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// Metadata is missing or unusable.
    #[error("OAuth discovery failed: {0}")]
    Discovery(String),
    /// The authorization server cannot do what MCP requires.
    #[error("the authorization server is not compatible: {0}")]
    Unsupported(String),
    /// A response could not be understood.
    #[error("invalid response from the authorization server: {0}")]
    InvalidResponse(String),
}

/// Protected resource metadata (RFC 9728).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bearer_methods_supported: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Authorization server metadata (RFC 8414 / OpenID Connect discovery).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AuthorizationServerMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_types_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_metadata_document_supported: Option<bool>,
    /// RFC 9207: the server puts `iss` in its authorization responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// RFC 9449 §5.1: the JWS algorithms the server accepts in DPoP proofs; present when it supports DPoP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AuthorizationServerMetadata {
    /// Whether the server accepts an HTTPS URL to a Client ID Metadata Document as `client_id`.
    pub fn supports_client_id_metadata_document(&self) -> bool {
        self.client_id_metadata_document_supported == Some(true)
    }

    /// Whether `scope` is listed in `scopes_supported`.
    pub fn lists_scope(&self, scope: &str) -> bool {
        self.scopes_supported
            .as_ref()
            .is_some_and(|list| list.iter().any(|s| s == scope))
    }

    /// Whether the server supports DPoP with the algorithm toolplane signs proofs with (ES256).
    pub fn supports_dpop(&self) -> bool {
        self.dpop_signing_alg_values_supported
            .as_ref()
            .is_some_and(|algs| algs.iter().any(|a| a == dpop::DPOP_ALGORITHM))
    }

    /// Whether `grant` is supported (absent list: `authorization_code` and `implicit`, per RFC 8414).
    pub fn supports_grant(&self, grant: &str) -> bool {
        match &self.grant_types_supported {
            Some(list) => list.iter().any(|g| g.eq_ignore_ascii_case(grant)),
            None => grant == "authorization_code",
        }
    }
}

/// Everything discovery found: what to authorize against, and for which resource and scopes. Serialisable, so
/// it can be kept with the `state` between the authorization redirect and the callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthDiscovery {
    /// The resource indicator to send (RFC 8707): the PRM's `resource`, else the server URL without fragment.
    pub resource: String,
    /// The protected resource metadata, when the server publishes it.
    pub protected_resource: Option<ProtectedResourceMetadata>,
    /// The authorization server's metadata.
    pub authorization_server: AuthorizationServerMetadata,
    /// Scopes to request: the challenge's `scope`, else the PRM's `scopes_supported`; `None` to omit.
    pub scope: Option<String>,
    /// The issuer identifier discovery started from (the PRM's authorization server, or the legacy origin); the
    /// metadata's `issuer` equals it, and RFC 9207 `iss` values are compared with the metadata's `issuer`.
    /// Credentials belong to one issuer: when it changes, register again (SEP-2352).
    #[serde(default)]
    pub issuer: String,
}

impl OAuthDiscovery {
    /// Step-up after `403 insufficient_scope` (or a 401 naming scopes): from now on request the union of the
    /// scopes requested so far and the challenged ones (SEP-835, SEP-2350). `false` when nothing new was asked,
    /// in which case re-authorizing would not help.
    pub fn escalate(&mut self, challenged: &str) -> bool {
        let mut scopes: Vec<String> = self
            .scope
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let mut added = false;
        for scope in challenged.split_whitespace() {
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
                added = true;
            }
        }
        if !scopes.is_empty() {
            self.scope = Some(scopes.join(" "));
        }
        added
    }
}

/// Runs discovery for `server_url`, starting from the challenge of a 401 when there was one.
pub async fn discover(
    http: &SafeClient,
    server_url: &str,
    challenge: Option<&BearerChallenge>,
) -> Result<OAuthDiscovery, OAuthError> {
    let server =
        Url::parse(server_url).map_err(|e| OAuthError::Discovery(format!("the MCP server URL is invalid: {e}")))?;
    let prm = fetch_protected_resource_metadata(http, &server, challenge.and_then(|c| c.resource_metadata.as_deref()))
        .await?;
    let mut resource = canonical_resource(&server);
    if let Some(declared) = prm.as_ref().and_then(|p| p.resource.as_deref()) {
        if !resource_matches(declared, &server) {
            return Err(OAuthError::Discovery(format!(
                "the protected resource metadata is for {declared:?}, not for this MCP server; refusing it"
            )));
        }
        resource = declared.to_owned();
    }
    let (issuer_id, issuer) = match prm.as_ref().and_then(|p| p.authorization_servers.first()) {
        Some(issuer) => (
            issuer.clone(),
            Url::parse(issuer)
                .map_err(|e| OAuthError::Discovery(format!("authorization server {issuer:?} is not a URL: {e}")))?,
        ),
        // 2025-03-26 servers: the authorization server is the MCP server's origin.
        None => {
            let origin = origin(&server);
            (origin.as_str().trim_end_matches('/').to_owned(), origin)
        }
    };
    let mut authorization_server = match fetch_authorization_server_metadata(http, &issuer).await? {
        Some(metadata) => metadata,
        None if prm.is_none() => legacy_default_endpoints(&issuer),
        None => {
            return Err(OAuthError::Discovery(format!(
                "no authorization server metadata at {issuer} (tried RFC 8414 and OpenID Connect discovery)"
            )));
        }
    };
    // RFC 8414 §3.3: metadata whose issuer is not the one it was fetched for may be an impostor's; its endpoints
    // must not be used. Legacy servers (no PRM, 2025-03-26) have no announced issuer, only the origin we derived
    // and fetched the metadata from: any issuer on that same origin is theirs.
    let mut issuer_id = issuer_id;
    let same_origin = |declared: &str| Url::parse(declared).is_ok_and(|d| d.origin() == server.origin());
    match authorization_server.issuer.clone().as_deref() {
        Some(declared) if declared == issuer_id => {}
        Some(declared) if prm.is_none() && same_origin(declared) => issuer_id = declared.to_owned(),
        Some(declared) => {
            return Err(OAuthError::Discovery(format!(
                "the authorization server metadata names issuer {declared:?} but was fetched for {issuer_id:?}; \
                 refusing it (RFC 8414 §3.3)"
            )));
        }
        None => authorization_server.issuer = Some(issuer_id.clone()),
    }
    let mut scope = challenge.and_then(|c| c.scope.clone()).or_else(|| {
        prm.as_ref()
            .filter(|p| !p.scopes_supported.is_empty())
            .map(|p| p.scopes_supported.join(" "))
    });
    // SEP-2207: ask for offline access (a refresh token) when the server offers it and scopes are requested at
    // all; never when it is not listed.
    if let Some(requested) = &mut scope
        && authorization_server.lists_scope("offline_access")
        && !requested.split_whitespace().any(|s| s == "offline_access")
    {
        requested.push_str(" offline_access");
    }
    Ok(OAuthDiscovery {
        resource,
        protected_resource: prm,
        authorization_server,
        scope,
        issuer: issuer_id,
    })
}

fn origin(url: &Url) -> Url {
    let mut origin = url.clone();
    origin.set_path("/");
    origin.set_query(None);
    origin.set_fragment(None);
    origin
}

/// The server URL as a resource indicator: no fragment, no query.
fn canonical_resource(server: &Url) -> String {
    let mut url = server.clone();
    url.set_fragment(None);
    url.set_query(None);
    url.to_string()
}

/// A PRM `resource` must be the server URL or a path prefix of it on the same origin.
fn resource_matches(declared: &str, server: &Url) -> bool {
    let Ok(declared) = Url::parse(declared) else {
        return false;
    };
    if declared.origin() != server.origin() {
        return false;
    }
    let prefix = declared.path().trim_end_matches('/');
    let path = server.path();
    path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
}

/// `/authorize`, `/token` and `/register` at the issuer's origin (the 2025-03-26 fallback).
fn legacy_default_endpoints(issuer: &Url) -> AuthorizationServerMetadata {
    let at = |path: &str| {
        let mut url = issuer.clone();
        url.set_path(path);
        url.to_string()
    };
    AuthorizationServerMetadata {
        issuer: Some(issuer.to_string()),
        authorization_endpoint: Some(at("/authorize")),
        token_endpoint: at("/token"),
        registration_endpoint: Some(at("/register")),
        response_types_supported: vec!["code".into()],
        code_challenge_methods_supported: Some(vec!["S256".into()]),
        ..AuthorizationServerMetadata::default()
    }
}

/// Fetches the protected resource metadata: from `resource_metadata` (absolute or relative to the server) when
/// given, else `/.well-known/oauth-protected-resource{path}` and then `/.well-known/oauth-protected-resource`.
/// `Ok(None)` when the server publishes none.
pub async fn fetch_protected_resource_metadata(
    http: &SafeClient,
    server: &Url,
    resource_metadata: Option<&str>,
) -> Result<Option<ProtectedResourceMetadata>, OAuthError> {
    let mut candidates = Vec::new();
    if let Some(hint) = resource_metadata {
        let url = server
            .join(hint)
            .map_err(|e| OAuthError::Discovery(format!("resource_metadata {hint:?} is not a URL: {e}")))?;
        candidates.push(url);
    }
    let path = server.path().trim_end_matches('/');
    for suffix in [path, ""] {
        let mut url = origin(server);
        url.set_path(&format!("/.well-known/oauth-protected-resource{suffix}"));
        if !candidates.contains(&url) {
            candidates.push(url);
        }
    }
    for url in candidates {
        if let Some(metadata) = get_json::<ProtectedResourceMetadata>(http, &url).await? {
            return Ok(Some(metadata));
        }
    }
    Ok(None)
}

/// Fetches authorization server metadata for `issuer`, trying RFC 8414 and OpenID Connect discovery (path-insert
/// and path-append forms). `Ok(None)` when none exists.
pub async fn fetch_authorization_server_metadata(
    http: &SafeClient,
    issuer: &Url,
) -> Result<Option<AuthorizationServerMetadata>, OAuthError> {
    let path = issuer.path().trim_end_matches('/');
    let at = |p: String| {
        let mut url = origin(issuer);
        url.set_path(&p);
        url
    };
    let candidates = if path.is_empty() {
        vec![
            at("/.well-known/oauth-authorization-server".into()),
            at("/.well-known/openid-configuration".into()),
        ]
    } else {
        vec![
            at(format!("/.well-known/oauth-authorization-server{path}")),
            at(format!("/.well-known/openid-configuration{path}")),
            at(format!("{path}/.well-known/openid-configuration")),
        ]
    };
    for url in candidates {
        if let Some(metadata) = get_json::<AuthorizationServerMetadata>(http, &url).await? {
            return Ok(Some(metadata));
        }
    }
    Ok(None)
}

/// GETs a JSON document; `Ok(None)` for 4xx (not published there), errors for 5xx and bad JSON.
async fn get_json<T: serde::de::DeserializeOwned>(http: &SafeClient, url: &Url) -> Result<Option<T>, OAuthError> {
    let response = http
        .get(url.clone())
        .header(ACCEPT, "application/json")
        .header("mcp-protocol-version", LATEST_SESSION_VERSION)
        .send()
        .await?;
    let status = response.status();
    if status.is_client_error() {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(OAuthError::Server {
            endpoint: "metadata endpoint",
            status: status.as_u16(),
            error: "server_error".into(),
            description: None,
        });
    }
    let body = http.read_body(response).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| OAuthError::InvalidResponse(format!("metadata at {} is not valid: {e}", url.path())))
}

/// Client metadata for dynamic registration (RFC 7591).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub client_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `web` for a server-side client (SEP-837).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
}

impl ClientMetadata {
    /// A public client using the authorization code flow with refresh tokens, redirecting to `redirect_uri`
    /// (Dify's client metadata, with toolplane's name).
    pub fn authorization_code(redirect_uri: impl Into<String>) -> Self {
        Self {
            client_name: "toolplane".into(),
            client_uri: None,
            redirect_uris: vec![redirect_uri.into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            response_types: vec!["code".into()],
            token_endpoint_auth_method: "none".into(),
            scope: None,
            application_type: Some("web".into()),
        }
    }
}

/// A registered client: from dynamic registration or entered by an administrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientInformation {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_issued_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// Everything else the registration returned.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ClientInformation {
    /// A client identified by a Client ID Metadata Document (SEP-991): `client_id` is the HTTPS URL of a JSON
    /// document describing the client ([`client_metadata_document`]), which the authorization server fetches;
    /// there is no secret. Use it when the server advertises `client_id_metadata_document_supported`.
    pub fn metadata_document(url: impl Into<String>) -> Self {
        Self {
            client_id: url.into(),
            client_secret: None,
            client_id_issued_at: None,
            client_secret_expires_at: None,
            token_endpoint_auth_method: Some("none".into()),
            extra: Map::new(),
        }
    }

    /// A client registered out of band.
    pub fn pre_registered(client_id: impl Into<String>, client_secret: Option<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            client_id_issued_at: None,
            client_secret_expires_at: None,
            token_endpoint_auth_method: None,
            extra: Map::new(),
        }
    }
}

/// The Client ID Metadata Document to publish at `url` (SEP-991): the client metadata with `client_id` set to
/// the document's own URL. The URL must be HTTPS with a path, as the authorization server checks.
pub fn client_metadata_document(url: &str, metadata: &ClientMetadata) -> Result<Value, OAuthError> {
    let parsed = Url::parse(url).map_err(|e| OAuthError::Discovery(format!("client metadata URL {url:?}: {e}")))?;
    if parsed.scheme() != "https" || parsed.path() == "/" || parsed.fragment().is_some() {
        return Err(OAuthError::Unsupported(format!(
            "a client metadata document URL must be https with a path and no fragment, got {url:?}"
        )));
    }
    let mut document =
        serde_json::to_value(metadata).map_err(|e| OAuthError::InvalidResponse(format!("client metadata: {e}")))?;
    if let Value::Object(map) = &mut document {
        map.insert("client_id".into(), Value::String(url.to_owned()));
    }
    Ok(document)
}

/// Chooses how to identify the client at `server`: the pre-registered client when there is one, else the Client
/// ID Metadata Document at `metadata_url` when the server supports them, else dynamic registration (RFC 7591)
/// with `metadata`.
pub async fn obtain_client(
    http: &SafeClient,
    server: &AuthorizationServerMetadata,
    pre_registered: Option<ClientInformation>,
    metadata_url: Option<&str>,
    metadata: &ClientMetadata,
) -> Result<ClientInformation, OAuthError> {
    if let Some(client) = pre_registered {
        return Ok(client);
    }
    if let Some(url) = metadata_url
        && server.supports_client_id_metadata_document()
    {
        return Ok(ClientInformation::metadata_document(url));
    }
    register_client(http, server, metadata).await
}

/// Checks the parameters the authorization server sent back to the redirect URI and returns the code: `error`
/// becomes an error, `state` must be the one sent, and `iss` (RFC 9207) must be the metadata's `issuer`
/// character for character when present — and must be present when the server advertises
/// `authorization_response_iss_parameter_supported`. A mismatch means the response may come from another
/// server (mix-up attack); the code must then not be sent anywhere.
pub fn validate_authorization_response(
    discovery: &OAuthDiscovery,
    expected_state: &str,
    params: &[(String, String)],
) -> Result<String, OAuthError> {
    let all = |key: &str| -> Vec<&str> {
        params
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    if let Some(error) = all("error").first() {
        return Err(OAuthError::Server {
            endpoint: "authorization endpoint",
            status: 400,
            error: (*error).to_owned(),
            description: all("error_description").first().map(|d| (*d).to_owned()),
        });
    }
    if all("state") != [expected_state] {
        return Err(OAuthError::InvalidResponse(
            "the authorization response's state does not match the request; start the authorization again".into(),
        ));
    }
    let metadata = &discovery.authorization_server;
    let expected_issuer = metadata.issuer.as_deref().unwrap_or(&discovery.issuer);
    match all("iss").as_slice() {
        [] if metadata.authorization_response_iss_parameter_supported == Some(true) => {
            return Err(OAuthError::InvalidResponse(
                "the authorization server advertises the iss parameter (RFC 9207) but its response has none".into(),
            ));
        }
        [] => {}
        [iss] if *iss == expected_issuer => {}
        other => {
            return Err(OAuthError::InvalidResponse(format!(
                "the authorization response comes from issuer {other:?}, expected {expected_issuer:?} (RFC 9207); \
                 refusing its code"
            )));
        }
    }
    match all("code").as_slice() {
        [code] if !code.is_empty() => Ok((*code).to_owned()),
        _ => Err(OAuthError::InvalidResponse(
            "the authorization response carries no (single) code".into(),
        )),
    }
}

/// Registers a client dynamically (RFC 7591).
pub async fn register_client(
    http: &SafeClient,
    server: &AuthorizationServerMetadata,
    metadata: &ClientMetadata,
) -> Result<ClientInformation, OAuthError> {
    let endpoint = server.registration_endpoint.as_deref().ok_or_else(|| {
        OAuthError::Unsupported(
            "it does not support dynamic client registration; enter a client id (and secret) instead".into(),
        )
    })?;
    let response = http
        .post(endpoint)
        .header(ACCEPT, "application/json")
        .json(metadata)
        .send()
        .await?;
    let status = response.status();
    let body = http.read_body(response).await?;
    if !status.is_success() {
        return Err(oauth_error("registration endpoint", status, &body));
    }
    serde_json::from_slice(&body).map_err(|e| OAuthError::InvalidResponse(format!("registration response: {e}")))
}

/// A PKCE verifier and its S256 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    /// A fresh pair: 32 random bytes, base64url, and the SHA-256 challenge.
    pub fn generate() -> Self {
        let verifier = random_token();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self { verifier, challenge }
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An authorization request to send the user to. Keep `state` (single use, short-lived) and `code_verifier`
/// until the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub url: String,
    pub state: String,
    pub code_verifier: String,
    pub redirect_uri: String,
}

/// Builds the authorization URL: `response_type=code`, `client_id`, `redirect_uri`, PKCE S256, a random `state`,
/// `scope` when known and the `resource` indicator. Refuses servers that do not advertise S256.
pub fn authorization_request(
    discovery: &OAuthDiscovery,
    client: &ClientInformation,
    redirect_uri: &str,
) -> Result<AuthorizationRequest, OAuthError> {
    let server = &discovery.authorization_server;
    let endpoint = server
        .authorization_endpoint
        .as_deref()
        .ok_or_else(|| OAuthError::Unsupported("its metadata has no authorization_endpoint".into()))?;
    let s256 = server
        .code_challenge_methods_supported
        .as_ref()
        .is_some_and(|m| m.iter().any(|m| m == "S256"));
    if !s256 {
        return Err(OAuthError::Unsupported(
            "it does not advertise PKCE S256 (code_challenge_methods_supported), which MCP requires".into(),
        ));
    }
    if !server.response_types_supported.is_empty() && !server.response_types_supported.iter().any(|t| t == "code") {
        return Err(OAuthError::Unsupported("it does not support response_type=code".into()));
    }
    let pkce = Pkce::generate();
    let state = random_token();
    let mut url =
        Url::parse(endpoint).map_err(|e| OAuthError::Discovery(format!("authorization_endpoint is not a URL: {e}")))?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state)
            .append_pair("resource", &discovery.resource);
        if let Some(scope) = &discovery.scope {
            query.append_pair("scope", scope);
        }
    }
    Ok(AuthorizationRequest {
        url: url.to_string(),
        state,
        code_verifier: pkce.verifier,
        redirect_uri: redirect_uri.to_owned(),
    })
}

/// Tokens from a token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    pub token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl TokenSet {
    /// Whether the token is DPoP-bound (`token_type` `DPoP`): it must go out with a proof of the key.
    pub fn is_dpop(&self) -> bool {
        self.token_type.eq_ignore_ascii_case("dpop")
    }

    /// The `Authorization` header value (`Bearer …`, `DPoP …`; Dify capitalises the token type).
    pub fn authorization_header(&self) -> String {
        if self.is_dpop() {
            return format!("DPoP {}", self.access_token);
        }
        let mut kind = self.token_type.to_ascii_lowercase();
        if let Some(first) = kind.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        format!("{kind} {}", self.access_token)
    }

    /// Whether the token expires within `margin` (unknown expiry: never).
    pub fn expires_within(&self, margin: Duration) -> bool {
        self.expires_at
            .is_some_and(|at| at <= now_secs().saturating_add(margin.as_secs() as i64))
    }
}

impl std::fmt::Display for TokenSet {
    /// Never prints the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} token (expires_at {:?})", self.token_type, self.expires_at)
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Exchanges an authorization code (with its PKCE verifier) for tokens.
pub async fn exchange_code(
    http: &SafeClient,
    discovery: &OAuthDiscovery,
    client: &ClientInformation,
    code: &str,
    code_verifier: &str,
    redirect_uri: &str,
) -> Result<TokenSet, OAuthError> {
    exchange_code_with_dpop(http, discovery, client, code, code_verifier, redirect_uri, None).await
}

/// [`exchange_code`] with DPoP (RFC 9449 §5) when `dpop` is given: the token request carries a proof of the key,
/// so the server binds the token to it (`token_type` `DPoP`). Use it when
/// [`AuthorizationServerMetadata::supports_dpop`]; keep the same [`Dpop`] for the MCP requests.
pub async fn exchange_code_with_dpop(
    http: &SafeClient,
    discovery: &OAuthDiscovery,
    client: &ClientInformation,
    code: &str,
    code_verifier: &str,
    redirect_uri: &str,
    dpop: Option<&Dpop>,
) -> Result<TokenSet, OAuthError> {
    let form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.to_owned()),
        ("code_verifier", code_verifier.to_owned()),
        ("redirect_uri", redirect_uri.to_owned()),
        ("resource", discovery.resource.clone()),
    ];
    token_request(http, &discovery.authorization_server, client, form, dpop).await
}

/// Uses a refresh token. A response without a new refresh token keeps the old one.
pub async fn refresh(
    http: &SafeClient,
    discovery: &OAuthDiscovery,
    client: &ClientInformation,
    refresh_token: &str,
) -> Result<TokenSet, OAuthError> {
    refresh_with_dpop(http, discovery, client, refresh_token, None).await
}

/// [`refresh`] with a DPoP proof when `dpop` is given (RFC 9449 §5: a refresh of a DPoP-bound token must prove
/// the same key).
pub async fn refresh_with_dpop(
    http: &SafeClient,
    discovery: &OAuthDiscovery,
    client: &ClientInformation,
    refresh_token: &str,
    dpop: Option<&Dpop>,
) -> Result<TokenSet, OAuthError> {
    let mut form = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh_token.to_owned()),
        ("resource", discovery.resource.clone()),
    ];
    if let Some(scope) = &discovery.scope {
        form.push(("scope", scope.clone()));
    }
    let mut tokens = token_request(http, &discovery.authorization_server, client, form, dpop).await?;
    tokens.refresh_token.get_or_insert_with(|| refresh_token.to_owned());
    Ok(tokens)
}

/// The client-credentials grant (machine-to-machine; the client needs a secret).
pub async fn client_credentials(
    http: &SafeClient,
    discovery: &OAuthDiscovery,
    client: &ClientInformation,
) -> Result<TokenSet, OAuthError> {
    if !discovery.authorization_server.supports_grant("client_credentials") {
        return Err(OAuthError::Unsupported(
            "it does not list client_credentials in grant_types_supported".into(),
        ));
    }
    if client.client_secret.is_none() {
        return Err(OAuthError::Unsupported(
            "the client-credentials grant needs a confidential client; configure a client secret".into(),
        ));
    }
    let mut form = vec![
        ("grant_type", "client_credentials".to_owned()),
        ("resource", discovery.resource.clone()),
    ];
    if let Some(scope) = &discovery.scope {
        form.push(("scope", scope.clone()));
    }
    token_request(http, &discovery.authorization_server, client, form, None).await
}

/// The client-credentials grant authenticated with a signed JWT (RFC 7523 `private_key_jwt`, SEP-1046): the
/// client proves itself with an ES256 assertion (`iss` = `sub` = `client_id`, `aud` = the issuer) signed with
/// `private_key_pem` (PKCS#8 P-256), instead of a shared secret.
pub async fn client_credentials_with_key(
    http: &SafeClient,
    discovery: &OAuthDiscovery,
    client_id: &str,
    private_key_pem: &str,
) -> Result<TokenSet, OAuthError> {
    let server = &discovery.authorization_server;
    if !server.supports_grant("client_credentials") {
        return Err(OAuthError::Unsupported(
            "it does not list client_credentials in grant_types_supported".into(),
        ));
    }
    let audience = server.issuer.clone().unwrap_or_else(|| discovery.issuer.clone());
    let assertion = jwt::client_assertion(client_id, &audience, private_key_pem)?;
    let mut form = vec![
        ("grant_type", "client_credentials".to_owned()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
        ),
        ("client_assertion", assertion),
        ("resource", discovery.resource.clone()),
    ];
    if let Some(scope) = &discovery.scope {
        form.push(("scope", scope.clone()));
    }
    let request = http.post(&server.token_endpoint).header(ACCEPT, "application/json");
    send_token_request(http, request, &form).await
}

/// The JWT-bearer grant (RFC 7523 §2.1) for workload identity federation (SEP-1933): a JWT the workload got
/// from its platform is exchanged for an access token. A refusal is final: the caller must not retry it or fall
/// back to another grant.
pub async fn jwt_bearer(
    http: &SafeClient,
    discovery: &OAuthDiscovery,
    client: &ClientInformation,
    assertion: &str,
) -> Result<TokenSet, OAuthError> {
    let server = &discovery.authorization_server;
    if !server.supports_grant(JWT_BEARER_GRANT) {
        return Err(OAuthError::Unsupported(format!(
            "it does not list {JWT_BEARER_GRANT} in grant_types_supported"
        )));
    }
    let mut form = vec![
        ("grant_type", JWT_BEARER_GRANT.to_owned()),
        ("assertion", assertion.to_owned()),
        ("resource", discovery.resource.clone()),
    ];
    if let Some(scope) = &discovery.scope {
        form.push(("scope", scope.clone()));
    }
    token_request(http, server, client, form, None).await
}

/// Enterprise-managed authorization (SEP-990), first leg: exchanges the user's ID token at the enterprise
/// identity provider (RFC 8693 token exchange) for an identity assertion grant (ID-JAG) addressed to the MCP
/// server's authorization server; [`jwt_bearer`] then trades it for an access token.
pub async fn exchange_id_token_for_id_jag(
    http: &SafeClient,
    idp_token_endpoint: &str,
    idp_client_id: Option<&str>,
    id_token: &str,
    discovery: &OAuthDiscovery,
) -> Result<String, OAuthError> {
    let audience = discovery
        .authorization_server
        .issuer
        .clone()
        .unwrap_or_else(|| discovery.issuer.clone());
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
        ),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:id-jag".to_owned(),
        ),
        ("subject_token", id_token.to_owned()),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:id_token".to_owned(),
        ),
        ("audience", audience),
        ("resource", discovery.resource.clone()),
    ];
    if let Some(id) = idp_client_id {
        form.push(("client_id", id.to_owned()));
    }
    if let Some(scope) = &discovery.scope {
        form.push(("scope", scope.clone()));
    }
    let request = http.post(idp_token_endpoint).header(ACCEPT, "application/json");
    let tokens = send_token_request(http, request, &form).await?;
    Ok(tokens.access_token)
}

/// The grant type of RFC 7523 §2.1.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// POSTs to the token endpoint, authenticating the client as the server allows: HTTP Basic when it has a secret
/// and the server accepts `client_secret_basic` (the default), else the secret in the body; public clients send
/// only `client_id`.
async fn token_request(
    http: &SafeClient,
    server: &AuthorizationServerMetadata,
    client: &ClientInformation,
    mut form: Vec<(&'static str, String)>,
    dpop: Option<&Dpop>,
) -> Result<TokenSet, OAuthError> {
    let mut basic = None;
    match &client.client_secret {
        Some(secret) => {
            let methods = server.token_endpoint_auth_methods_supported.as_deref().unwrap_or(&[]);
            let preferred = client.token_endpoint_auth_method.as_deref();
            let post = preferred == Some("client_secret_post")
                || (preferred.is_none()
                    && !methods.is_empty()
                    && !methods.iter().any(|m| m == "client_secret_basic")
                    && methods.iter().any(|m| m == "client_secret_post"));
            if post {
                form.push(("client_id", client.client_id.clone()));
                form.push(("client_secret", secret.clone()));
            } else {
                basic = Some((form_encode(&client.client_id), form_encode(secret)));
            }
        }
        None => form.push(("client_id", client.client_id.clone())),
    }
    let request = |dpop_proof: Option<String>| {
        let mut request = http.post(&server.token_endpoint).header(ACCEPT, "application/json");
        if let Some((id, secret)) = &basic {
            request = request.basic_auth(id, Some(secret));
        }
        if let Some(proof) = dpop_proof {
            request = request.header(dpop::DPOP_HEADER, proof);
        }
        request
    };
    let Some(dpop) = dpop else {
        return send_token_request(http, request(None), &form).await;
    };
    // RFC 9449 §8: a server that wants a nonce refuses the first proof with `use_dpop_nonce` and a `DPoP-Nonce`;
    // the request is made again, once, with a fresh proof carrying it.
    let mut retried = false;
    loop {
        let proof = dpop.proof("POST", &server.token_endpoint, None)?;
        let response = request(Some(proof)).form(&form).send().await?;
        let nonce = response
            .headers()
            .get(dpop::DPOP_NONCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let new_nonce = nonce
            .as_deref()
            .is_some_and(|n| dpop.remember_nonce(&server.token_endpoint, n));
        match read_token_response(http, response).await {
            Err(OAuthError::Server { status: 400, error, .. })
                if error == dpop::USE_DPOP_NONCE && new_nonce && !retried =>
            {
                retried = true;
            }
            other => return other,
        }
    }
}

async fn send_token_request(
    http: &SafeClient,
    request: toolplane_net::SafeRequestBuilder,
    form: &[(&'static str, String)],
) -> Result<TokenSet, OAuthError> {
    let response = request.form(form).send().await?;
    read_token_response(http, response).await
}

async fn read_token_response(http: &SafeClient, response: toolplane_net::Response) -> Result<TokenSet, OAuthError> {
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = http.read_body(response).await?;
    if !status.is_success() {
        return Err(oauth_error("token endpoint", status, &body));
    }
    parse_token_response(&body, &content_type)
}

/// RFC 6749 §2.3.1: client credentials in Basic auth are form-encoded first.
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[derive(Deserialize)]
struct RawTokens {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    scope: Option<String>,
}

/// Parses a token response as JSON or, failing that, `application/x-www-form-urlencoded`.
fn parse_token_response(body: &[u8], content_type: &str) -> Result<TokenSet, OAuthError> {
    let raw: RawTokens = match serde_json::from_slice(body) {
        Ok(raw) => raw,
        Err(json_error) => {
            let pairs: Map<String, Value> = url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            serde_json::from_value(Value::Object(pairs)).map_err(|_| {
                OAuthError::InvalidResponse(format!(
                    "token response ({content_type}) is neither JSON nor a form: {json_error}"
                ))
            })?
        }
    };
    let expires_in = match raw.expires_in {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    Ok(TokenSet {
        access_token: raw.access_token,
        token_type: raw.token_type.unwrap_or_else(|| "Bearer".into()),
        refresh_token: raw.refresh_token,
        expires_at: expires_in.map(|s| now_secs().saturating_add(s)),
        scope: raw.scope,
    })
}

fn oauth_error(endpoint: &'static str, status: StatusCode, body: &[u8]) -> OAuthError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    OAuthError::Server {
        endpoint,
        status: status.as_u16(),
        error: field("error").unwrap_or_else(|| "unknown_error".into()),
        description: field("error_description"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_is_s256_of_the_verifier() {
        let pkce = Pkce::generate();
        assert_eq!(pkce.verifier.len(), 43);
        assert_eq!(
            pkce.challenge,
            URL_SAFE_NO_PAD.encode(Sha256::digest(pkce.verifier.as_bytes()))
        );
        assert_ne!(Pkce::generate().verifier, pkce.verifier);
    }

    #[test]
    fn token_responses_in_both_encodings() {
        let json = parse_token_response(
            br#"{"access_token":"a","token_type":"bearer","expires_in":3600,"refresh_token":"r"}"#,
            "application/json",
        )
        .unwrap();
        assert_eq!(json.authorization_header(), "Bearer a");
        assert!(!json.expires_within(Duration::from_secs(60)));
        assert!(json.expires_within(Duration::from_secs(7200)));
        let form = parse_token_response(b"access_token=x&token_type=Bearer&expires_in=10", "text/plain").unwrap();
        assert_eq!(form.access_token, "x");
        assert!(form.expires_within(Duration::from_secs(60)));
        assert!(parse_token_response(b"<html>", "text/html").is_err());
        assert_eq!(
            format!("{form}"),
            format!("Bearer token (expires_at {:?})", form.expires_at)
        );
    }

    fn discovery(iss_supported: Option<bool>) -> OAuthDiscovery {
        OAuthDiscovery {
            resource: "https://mcp.example.com/mcp".into(),
            protected_resource: None,
            authorization_server: AuthorizationServerMetadata {
                issuer: Some("https://as.example.com".into()),
                authorization_response_iss_parameter_supported: iss_supported,
                ..AuthorizationServerMetadata::default()
            },
            scope: Some("read".into()),
            issuer: "https://as.example.com".into(),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn authorization_responses_are_checked_for_state_and_issuer() {
        let advertised = discovery(Some(true));
        let ok = params(&[("code", "c1"), ("state", "s1"), ("iss", "https://as.example.com")]);
        assert_eq!(validate_authorization_response(&advertised, "s1", &ok).unwrap(), "c1");
        // Advertised but missing, wrong, or "normalised" with a slash: refused.
        for bad in [
            params(&[("code", "c1"), ("state", "s1")]),
            params(&[("code", "c1"), ("state", "s1"), ("iss", "https://evil.example.com")]),
            params(&[("code", "c1"), ("state", "s1"), ("iss", "https://as.example.com/")]),
        ] {
            assert!(
                validate_authorization_response(&advertised, "s1", &bad).is_err(),
                "{bad:?}"
            );
        }
        // Not advertised: absent is fine, a wrong one is still refused.
        let quiet = discovery(None);
        assert!(validate_authorization_response(&quiet, "s1", &params(&[("code", "c1"), ("state", "s1")])).is_ok());
        let wrong = params(&[("code", "c1"), ("state", "s1"), ("iss", "https://evil.example.com")]);
        assert!(validate_authorization_response(&quiet, "s1", &wrong).is_err());
        // State and error handling.
        assert!(validate_authorization_response(&quiet, "s2", &params(&[("code", "c1"), ("state", "s1")])).is_err());
        let denied = params(&[("error", "access_denied"), ("state", "s1")]);
        assert!(matches!(
            validate_authorization_response(&quiet, "s1", &denied),
            Err(OAuthError::Server { .. })
        ));
    }

    #[test]
    fn step_up_requests_the_union_of_scopes() {
        let mut d = discovery(None);
        assert!(d.escalate("write read"));
        assert_eq!(d.scope.as_deref(), Some("read write"));
        assert!(!d.escalate("write"));
    }

    #[test]
    fn metadata_documents_need_https_urls() {
        let metadata = ClientMetadata::authorization_code("https://toolplane.example.com/callback");
        let doc = client_metadata_document("https://toolplane.example.com/oauth/client.json", &metadata).unwrap();
        assert_eq!(doc["client_id"], "https://toolplane.example.com/oauth/client.json");
        assert_eq!(doc["redirect_uris"][0], "https://toolplane.example.com/callback");
        assert!(client_metadata_document("http://toolplane.example.com/c.json", &metadata).is_err());
        assert!(client_metadata_document("https://toolplane.example.com/", &metadata).is_err());
        let client = ClientInformation::metadata_document("https://toolplane.example.com/oauth/client.json");
        assert!(client.client_secret.is_none());
    }

    #[test]
    fn resource_must_cover_the_server() {
        let server = Url::parse("https://mcp.example.com/v1/mcp").unwrap();
        assert!(resource_matches("https://mcp.example.com/v1/mcp", &server));
        assert!(resource_matches("https://mcp.example.com/v1", &server));
        assert!(resource_matches("https://mcp.example.com/", &server));
        assert!(!resource_matches("https://mcp.example.com/v2", &server));
        assert!(!resource_matches("https://evil.example.com/v1/mcp", &server));
    }
}
