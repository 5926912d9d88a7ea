//! MCP servers as tool providers (Dify's `MCPToolManageService` and `MCPToolProvider`), stored in
//! `tool_mcp_providers`, and the catalog source that turns those rows into [`McpToolProvider`]s.
//!
//! What is stored, and how (stricter than Dify):
//! - `server_url` is encrypted with the tenant key; `server_url_hash` (hex SHA-256 of the clear URL) keeps URLs
//!   unique per tenant. A stdio server (administrators only) is stored the same way as `stdio:` + its command JSON.
//! - `encrypted_headers` is a JSON object whose every value is encrypted.
//! - `encrypted_credentials` is the whole credentials document encrypted (Dify keeps tokens in plaintext):
//!   [`StoredCredentials`] — the OAuth client, the discovery result and the tokens.
//!
//! Masking follows Dify: secrets longer than 6 characters keep their first and last 2 characters, shorter ones become
//! all `*`; the URL keeps scheme and host and its path becomes `/******`.
//!
//! Authorization: requests carry the custom headers when there are any, else `Authorization` from the stored tokens
//! (Dify's `decrypt_authentication`). Tokens about to expire (within a minute) are refreshed before connecting, and
//! a 401 is answered by one refresh (or a new client-credentials grant) and one retry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use toolplane_core::{ProviderSource, Tool, ToolError, ToolProvider, ToolProviderType};
use toolplane_mcp::oauth::{self, ClientInformation, ClientMetadata, OAuthDiscovery, TokenSet};
use toolplane_mcp::{
    DefaultConnector, McpClient, McpConnector, McpEndpoint, McpError, McpProviderConfig, McpToolProvider, StdioCommand,
};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_secrets::{HIDDEN_VALUE, mask_secret};
use toolplane_store::{McpOAuthStateRecord, McpProviderFields, McpProviderRecord, McpProviderState, Store};

use crate::error::ApiError;
use crate::tenant_keys::TenantKeys;

/// The callback path (under the console API URL) registered as the OAuth redirect URI.
pub const CALLBACK_PATH: &str = "/console/api/mcp/oauth/callback";
/// How long an authorization may take between the redirect and the callback.
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// Tokens expiring within this margin are refreshed before use.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
const STDIO_PREFIX: &str = "stdio:";

/// The credentials document, encrypted as a whole in `encrypted_credentials`. Its `Debug` output names what is
/// present, never the secrets.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct StoredCredentials {
    /// The OAuth client: entered by an administrator or registered dynamically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_information: Option<ClientInformation>,
    /// Whether the client came from dynamic registration.
    #[serde(default)]
    pub is_dynamic_registration: bool,
    /// What discovery found (kept for refreshes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<OAuthDiscovery>,
    /// The tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenSet>,
    /// `authorization_code` or `client_credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<String>,
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredentials")
            .field("has_client", &self.client_information.is_some())
            .field("is_dynamic_registration", &self.is_dynamic_registration)
            .field("has_discovery", &self.discovery.is_some())
            .field("has_tokens", &self.tokens.is_some())
            .field("grant_type", &self.grant_type)
            .finish()
    }
}

/// A local server (stdio), administrators only. No `Debug`: `env` may hold secrets.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioInput {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Dify's `configuration`: seconds, as numbers or strings.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigurationInput {
    #[serde(default)]
    pub timeout: Option<Value>,
    #[serde(default)]
    pub sse_read_timeout: Option<Value>,
}

/// Dify's `authentication`: a pre-registered OAuth client.
#[derive(Clone, Default, Deserialize)]
pub struct AuthenticationInput {
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
}

/// The create/update payload (Dify's, plus `stdio` for local servers).
#[derive(Clone, Default, Deserialize)]
pub struct McpProviderInput {
    #[serde(default)]
    pub server_url: String,
    pub name: String,
    #[serde(default)]
    pub icon: String,
    #[serde(default)]
    pub icon_type: String,
    #[serde(default)]
    pub icon_background: Option<String>,
    pub server_identifier: String,
    #[serde(default)]
    pub configuration: Option<ConfigurationInput>,
    #[serde(default)]
    pub headers: Option<Map<String, Value>>,
    #[serde(default)]
    pub authentication: Option<AuthenticationInput>,
    /// A local program instead of a URL (administrators only).
    #[serde(default)]
    pub stdio: Option<StdioInput>,
}

/// A decrypted row. Its `Debug` output leaves out the URL and header values.
#[derive(Clone)]
pub struct DecryptedProvider {
    pub record: McpProviderRecord,
    /// The URL, or `stdio:{json}`.
    pub server_url: String,
    pub headers: BTreeMap<String, String>,
    pub credentials: StoredCredentials,
}

impl std::fmt::Debug for DecryptedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptedProvider")
            .field("id", &self.record.id)
            .field("server_identifier", &self.record.server_identifier)
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl DecryptedProvider {
    fn endpoint(&self) -> Result<McpEndpoint, ApiError> {
        endpoint_of(&self.server_url)
    }

    /// Headers for requests: the custom headers when there are any, else `Authorization` from the tokens.
    pub fn request_headers(&self) -> BTreeMap<String, String> {
        if !self.headers.is_empty() {
            return self.headers.clone();
        }
        let mut headers = BTreeMap::new();
        if let Some(tokens) = &self.credentials.tokens {
            headers.insert("Authorization".to_owned(), tokens.authorization_header());
        }
        headers
    }

    /// The configuration the MCP library works from.
    pub fn config(&self) -> Result<McpProviderConfig, ApiError> {
        Ok(McpProviderConfig {
            id: self.record.id.clone(),
            name: self.record.name.clone(),
            server_identifier: self.record.server_identifier.clone(),
            endpoint: self.endpoint()?,
            headers: self.request_headers(),
            timeout: seconds(self.record.timeout, 30.0),
            sse_read_timeout: seconds(self.record.sse_read_timeout, 300.0),
            icon: self.record.icon.clone().unwrap_or_default(),
            author: "Anonymous".to_owned(),
            tools: McpProviderConfig::parse_tools_json(&self.record.tools).map_err(ApiError::from)?,
        })
    }
}

fn seconds(value: f64, default: f64) -> Duration {
    let value = if value.is_finite() && value > 0.0 {
        value
    } else {
        default
    };
    Duration::from_secs_f64(value.min(86_400.0))
}

fn endpoint_of(server_url: &str) -> Result<McpEndpoint, ApiError> {
    match server_url.strip_prefix(STDIO_PREFIX) {
        Some(json) => {
            let input: StdioInput = serde_json::from_str(json)
                .map_err(|e| ApiError::internal(format!("stored stdio command is not valid: {e}")))?;
            Ok(McpEndpoint::Stdio(StdioCommand {
                command: input.command,
                args: input.args,
                env: input.env,
                cwd: None,
            }))
        }
        None => Ok(McpEndpoint::Http {
            url: server_url.to_owned(),
        }),
    }
}

/// Hex SHA-256 of the clear URL (Dify's `server_url_hash`).
pub fn url_hash(url: &str) -> String {
    hex::encode(Sha256::digest(url.as_bytes()))
}

/// Dify's `masked_server_url`: scheme and host kept, a non-root path replaced by `/******`, no query.
pub fn masked_server_url(url: &str) -> String {
    if url.starts_with(STDIO_PREFIX) {
        return "stdio://******".to_owned();
    }
    match url::Url::parse(url) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or_default();
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            let path = if parsed.path().is_empty() || parsed.path() == "/" {
                ""
            } else {
                "/******"
            };
            format!("{}://{host}{port}{path}", parsed.scheme())
        }
        Err(_) => mask_secret(url),
    }
}

/// Whether a submitted value is the masked form of `stored` (or Dify's hidden marker): keep the stored value.
fn is_masked_echo(submitted: &str, stored: &str) -> bool {
    submitted == HIDDEN_VALUE || submitted == mask_secret(stored)
}

/// Checks a server URL: http(s) with a host (Dify's "Server URL is not valid.").
fn checked_url(url: &str) -> Result<String, ApiError> {
    let url = url.trim();
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some() => Ok(url.to_owned()),
        _ => Err(ApiError::invalid("Server URL is not valid.")),
    }
}

fn checked_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 40 {
        return Err(ApiError::invalid("name must be 1 to 40 characters"));
    }
    Ok(name.to_owned())
}

fn checked_identifier(identifier: &str) -> Result<String, ApiError> {
    let identifier = identifier.trim();
    let valid = !identifier.is_empty()
        && identifier.len() <= 64
        && identifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(ApiError::invalid(
            "server_identifier must be 1 to 64 characters of letters, digits, '_' or '-'",
        ));
    }
    Ok(identifier.to_owned())
}

fn number(value: Option<&Value>, default: f64) -> Result<f64, ApiError> {
    let parsed = match value {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(default),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match parsed {
        Some(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(ApiError::invalid(
            "configuration timeouts must be positive numbers of seconds",
        )),
    }
}

fn icon_of(input: &McpProviderInput) -> String {
    if input.icon_type == "emoji" {
        json!({"content": input.icon, "background": input.icon_background.clone().unwrap_or_default()}).to_string()
    } else {
        input.icon.clone()
    }
}

fn icon_value(icon: Option<&str>) -> Value {
    match icon {
        Some(text) if text.trim_start().starts_with('{') => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        }
        Some(text) => Value::String(text.to_owned()),
        None => Value::String(String::new()),
    }
}

struct Cached {
    updated_at: i64,
    provider: Arc<McpToolProvider>,
}

/// How long an unused MCP session is kept open.
pub const SESSION_IDLE: Duration = Duration::from_secs(300);

/// Initialized MCP connections kept between proxied calls, one per (tenant, provider record), so a call costs one
/// `tools/call` instead of a handshake each time. An entry is reused only while the connection settings (endpoint,
/// headers with the current token, timeouts) are unchanged; unused entries close after [`SESSION_IDLE`]. An
/// expired session (HTTP 404) is re-initialised by the client itself; a dead connection is dropped and the call
/// retried once (see `McpConnector::discard`). While an entry lives, its server stream (GET stream or stdio)
/// delivers `notifications/tools/list_changed`, which re-lists the provider's tools into the database.
#[derive(Default)]
struct SessionPool {
    entries: std::sync::Mutex<HashMap<(String, String), Pooled>>,
}

struct Pooled {
    fingerprint: [u8; 32],
    client: McpClient,
    last_used: std::time::Instant,
}

impl SessionPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Pooled>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live entry for `key` with the same settings; closes entries idle for too long.
    fn get(&self, key: &(String, String), fingerprint: &[u8; 32]) -> Option<McpClient> {
        let now = std::time::Instant::now();
        let mut entries = self.lock();
        let expired: Vec<(String, String)> = entries
            .iter()
            .filter(|(_, p)| now.duration_since(p.last_used) > SESSION_IDLE)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(old) = entries.remove(&k) {
                tokio::spawn(async move { old.client.close().await });
            }
        }
        let entry = entries.get_mut(key).filter(|p| &p.fingerprint == fingerprint)?;
        entry.last_used = now;
        Some(entry.client.clone())
    }

    /// Keeps `client` for `key`, closing the connection it replaces.
    fn put(&self, key: (String, String), fingerprint: [u8; 32], client: McpClient) {
        let previous = self.lock().insert(
            key,
            Pooled {
                fingerprint,
                client,
                last_used: std::time::Instant::now(),
            },
        );
        if let Some(old) = previous {
            tokio::spawn(async move { old.client.close().await });
        }
    }

    fn touch(&self, key: &(String, String), client: &McpClient) {
        if let Some(entry) = self.lock().get_mut(key).filter(|p| p.client.same_connection(client)) {
            entry.last_used = std::time::Instant::now();
        }
    }

    /// Forgets `client` if it is the entry of `key`; whether it was.
    fn remove(&self, key: &(String, String), client: Option<&McpClient>) -> bool {
        let mut entries = self.lock();
        let matches = entries
            .get(key)
            .is_some_and(|p| client.is_none_or(|c| p.client.same_connection(c)));
        if !matches {
            return false;
        }
        if let Some(old) = entries.remove(key) {
            tokio::spawn(async move { old.client.close().await });
        }
        true
    }

    fn remove_provider(&self, provider_id: &str) {
        let keys: Vec<(String, String)> = self.lock().keys().filter(|k| k.1 == provider_id).cloned().collect();
        for key in keys {
            self.remove(&key, None);
        }
    }
}

/// What identifies a connection's settings, hashed (headers carry secrets).
fn fingerprint(config: &McpProviderConfig) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(format!("{:?}", config.endpoint).as_bytes());
    for (name, value) in &config.headers {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
        hash.update([0]);
    }
    hash.update(format!("{:?}/{:?}", config.timeout, config.sse_read_timeout).as_bytes());
    hash.finalize().into()
}

/// The MCP-provider service: CRUD with encryption and masking, OAuth, tool listing, and provider building.
pub struct McpProviders {
    store: Store,
    keys: Arc<TenantKeys>,
    net: NetConfig,
    http: tokio::sync::OnceCell<SafeClient>,
    redirect_uri: String,
    cache: RwLock<HashMap<String, Cached>>,
    sessions: SessionPool,
}

impl McpProviders {
    /// A service over the store and tenant keys; outbound requests use `net`; OAuth redirects come back to
    /// `{console_api_url}/console/api/mcp/oauth/callback`.
    pub fn new(store: Store, keys: Arc<TenantKeys>, net: NetConfig, console_api_url: &str) -> Self {
        Self {
            store,
            keys,
            net,
            http: tokio::sync::OnceCell::new(),
            redirect_uri: format!("{}{CALLBACK_PATH}", console_api_url.trim_end_matches('/')),
            cache: RwLock::new(HashMap::new()),
            sessions: SessionPool::default(),
        }
    }

    /// The SSRF-safe client, built on first use.
    pub async fn http(&self) -> Result<SafeClient, ApiError> {
        self.http
            .get_or_try_init(|| async { SafeClient::new(self.net.clone()) })
            .await
            .cloned()
            .map_err(ApiError::internal)
    }

    /// The OAuth redirect URI.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    async fn encrypt(&self, tenant_id: &str, text: &str) -> Result<String, ApiError> {
        let key = self.keys.private_key(tenant_id).await?;
        key.public_key()
            .encrypt(text)
            .map_err(|e| ApiError::internal(format!("cannot encrypt an MCP provider secret: {e}")))
    }

    async fn decrypt(&self, tenant_id: &str, text: &str) -> Result<String, ApiError> {
        let key = self.keys.private_key(tenant_id).await?;
        key.decrypt(text).map_err(|e| {
            ApiError::internal(format!(
                "cannot decrypt an MCP provider secret (was the tenant key rotated?): {e}"
            ))
        })
    }

    async fn encrypt_headers(
        &self,
        tenant_id: &str,
        headers: &BTreeMap<String, String>,
    ) -> Result<Option<String>, ApiError> {
        if headers.is_empty() {
            return Ok(None);
        }
        let mut encrypted = Map::new();
        for (name, value) in headers {
            encrypted.insert(name.clone(), Value::String(self.encrypt(tenant_id, value).await?));
        }
        Ok(Some(Value::Object(encrypted).to_string()))
    }

    async fn encrypt_credentials(
        &self,
        tenant_id: &str,
        credentials: &StoredCredentials,
    ) -> Result<Option<String>, ApiError> {
        let text = serde_json::to_string(credentials).map_err(ApiError::internal)?;
        Ok(Some(self.encrypt(tenant_id, &text).await?))
    }

    /// Decrypts a row.
    pub async fn decrypt_row(&self, record: McpProviderRecord) -> Result<DecryptedProvider, ApiError> {
        let tenant = record.tenant_id.clone();
        let server_url = self.decrypt(&tenant, &record.server_url).await?;
        let mut headers = BTreeMap::new();
        if let Some(text) = record.encrypted_headers.as_deref().filter(|t| !t.trim().is_empty()) {
            let map: Map<String, Value> = serde_json::from_str(text)
                .map_err(|e| ApiError::internal(format!("stored MCP headers are not valid JSON: {e}")))?;
            for (name, value) in map {
                if let Value::String(cipher) = value {
                    headers.insert(name, self.decrypt(&tenant, &cipher).await?);
                }
            }
        }
        let credentials = match record.encrypted_credentials.as_deref().filter(|t| !t.is_empty()) {
            Some(cipher) => {
                let text = self.decrypt(&tenant, cipher).await?;
                serde_json::from_str(&text)
                    .map_err(|e| ApiError::internal(format!("stored MCP credentials are not valid: {e}")))?
            }
            None => StoredCredentials::default(),
        };
        Ok(DecryptedProvider {
            record,
            server_url,
            headers,
            credentials,
        })
    }

    async fn row(&self, tenant_id: &str, provider_id: &str) -> Result<McpProviderRecord, ApiError> {
        self.store
            .mcp_providers()
            .get(tenant_id, provider_id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("MCP provider {provider_id:?} not found")))
    }

    /// `POST …/tool-provider/mcp`: creates the provider, then connects and caches its tools (an authorization
    /// requirement leaves it unauthorized; other connection errors are logged). Returns the provider entity.
    pub async fn create(
        &self,
        tenant_id: &str,
        user_id: &str,
        is_admin: bool,
        input: McpProviderInput,
    ) -> Result<Value, ApiError> {
        let server_url = match &input.stdio {
            Some(_) if !is_admin => {
                return Err(ApiError::forbidden(
                    "stdio MCP servers run local programs; only an admin key may add them",
                ));
            }
            Some(stdio) if stdio.command.trim().is_empty() => {
                return Err(ApiError::invalid("stdio.command must not be empty"));
            }
            Some(stdio) => format!(
                "{STDIO_PREFIX}{}",
                serde_json::to_string(stdio).map_err(ApiError::internal)?
            ),
            None => checked_url(&input.server_url)?,
        };
        let name = checked_name(&input.name)?;
        let identifier = checked_identifier(&input.server_identifier)?;
        let repo = self.store.mcp_providers();
        let hash = url_hash(&server_url);
        if repo.get_by_name(tenant_id, &name).await?.is_some() {
            return Err(ApiError::invalid(format!("MCP tool {name} already exists")));
        }
        if repo.get_by_url_hash(tenant_id, &hash).await?.is_some() {
            return Err(ApiError::invalid("MCP tool with this server URL already exists"));
        }
        if repo.get_by_identifier(tenant_id, &identifier).await?.is_some() {
            return Err(ApiError::invalid(format!("MCP tool {identifier} already exists")));
        }
        let headers = string_headers(input.headers.as_ref())?;
        let configuration = input.configuration.clone().unwrap_or_default();
        let fields = McpProviderFields {
            name,
            server_identifier: identifier,
            server_url: self.encrypt(tenant_id, &server_url).await?,
            server_url_hash: hash,
            icon: Some(icon_of(&input)),
            timeout: number(configuration.timeout.as_ref(), 30.0)?,
            sse_read_timeout: number(configuration.sse_read_timeout.as_ref(), 300.0)?,
            encrypted_headers: self.encrypt_headers(tenant_id, &headers).await?,
        };
        let credentials = match input.authentication.as_ref().and_then(|a| a.client_id.clone()) {
            Some(client_id) if !client_id.trim().is_empty() => {
                let secret = input
                    .authentication
                    .as_ref()
                    .and_then(|a| a.client_secret.clone())
                    .filter(|s| !s.is_empty());
                let stored = StoredCredentials {
                    client_information: Some(ClientInformation::pre_registered(client_id.trim(), secret)),
                    ..StoredCredentials::default()
                };
                self.encrypt_credentials(tenant_id, &stored).await?
            }
            _ => None,
        };
        let row = repo.insert(tenant_id, user_id, &fields, credentials.as_deref()).await?;
        let decrypted = self.decrypt_row(row).await?;
        let row = match self.connect_and_list(&decrypted).await {
            Ok(tools) => self.save_tools(&decrypted, true, &tools).await?,
            Err(McpError::Unauthorized { .. }) => decrypted.record.clone(),
            Err(e) => {
                tracing::warn!(provider = %decrypted.record.server_identifier, error = %e, "cannot list the tools of a new MCP provider");
                decrypted.record.clone()
            }
        };
        self.entity(row, false).await
    }

    /// `PUT …/tool-provider/mcp`: updates a provider. A URL containing `[__HIDDEN__]` or unchanged keeps the
    /// connection; a new URL reconnects (an authorization requirement clears the authorization and tools). Headers
    /// and client secrets sent back masked keep their stored values; an empty `headers` object clears them.
    pub async fn update(
        &self,
        tenant_id: &str,
        is_admin: bool,
        provider_id: &str,
        input: McpProviderInput,
    ) -> Result<(), ApiError> {
        let stored = self.decrypt_row(self.row(tenant_id, provider_id).await?).await?;
        let url = match &input.stdio {
            Some(_) if !is_admin => {
                return Err(ApiError::forbidden(
                    "stdio MCP servers run local programs; only an admin key may configure them",
                ));
            }
            Some(stdio) => format!(
                "{STDIO_PREFIX}{}",
                serde_json::to_string(stdio).map_err(ApiError::internal)?
            ),
            None if input.server_url.contains(HIDDEN_VALUE) || input.server_url.trim().is_empty() => {
                stored.server_url.clone()
            }
            None if input.server_url.trim() == masked_server_url(&stored.server_url) => stored.server_url.clone(),
            None => checked_url(&input.server_url)?,
        };
        let url_changed = url_hash(&url) != stored.record.server_url_hash;
        let mut headers = BTreeMap::new();
        match &input.headers {
            None => headers = stored.headers.clone(),
            Some(map) => {
                for (name, value) in string_headers(Some(map))? {
                    let keep = stored.headers.get(&name).filter(|old| is_masked_echo(&value, old));
                    headers.insert(name, keep.cloned().unwrap_or(value));
                }
            }
        }
        let configuration = input.configuration.clone().unwrap_or_default();
        let fields = McpProviderFields {
            name: checked_name(&input.name)?,
            server_identifier: checked_identifier(&input.server_identifier)?,
            server_url: if url_changed {
                self.encrypt(tenant_id, &url).await?
            } else {
                stored.record.server_url.clone()
            },
            server_url_hash: url_hash(&url),
            icon: Some(icon_of(&input)),
            timeout: number(configuration.timeout.as_ref(), stored.record.timeout)?,
            sse_read_timeout: number(configuration.sse_read_timeout.as_ref(), stored.record.sse_read_timeout)?,
            encrypted_headers: self.encrypt_headers(tenant_id, &headers).await?,
        };
        let mut credentials = stored.credentials.clone();
        if let Some(auth) = &input.authentication
            && let Some(client_id) = auth.client_id.as_deref().map(str::trim).filter(|c| !c.is_empty())
        {
            let old = credentials.client_information.as_ref();
            let client_id = match old {
                Some(old) if is_masked_echo(client_id, &old.client_id) => old.client_id.clone(),
                _ => client_id.to_owned(),
            };
            let secret = match (
                auth.client_secret.as_deref(),
                old.and_then(|o| o.client_secret.as_deref()),
            ) {
                (Some(new), Some(old)) if is_masked_echo(new, old) => Some(old.to_owned()),
                (Some(new), _) if !new.is_empty() => Some(new.to_owned()),
                _ => None,
            };
            credentials.client_information = Some(ClientInformation::pre_registered(client_id, secret));
            credentials.is_dynamic_registration = false;
        }
        let row = self
            .store
            .mcp_providers()
            .update(tenant_id, provider_id, &fields)
            .await?;
        let decrypted = self.decrypt_row(row).await?;
        let decrypted = DecryptedProvider {
            credentials,
            ..decrypted
        };
        if url_changed {
            match self.connect_and_list(&decrypted).await {
                Ok(tools) => {
                    self.save_tools(&decrypted, true, &tools).await?;
                }
                Err(McpError::Unauthorized { .. }) => {
                    self.save_state(&decrypted, false, &StoredCredentials::default(), "[]")
                        .await?;
                }
                Err(e) => {
                    tracing::warn!(provider = %decrypted.record.server_identifier, error = %e, "cannot list the tools of an updated MCP provider");
                    let tools = decrypted.record.tools.clone();
                    self.save_state(&decrypted, decrypted.record.authed, &decrypted.credentials, &tools)
                        .await?;
                }
            }
        } else {
            let tools = decrypted.record.tools.clone();
            self.save_state(&decrypted, decrypted.record.authed, &decrypted.credentials, &tools)
                .await?;
        }
        self.forget(provider_id);
        self.sessions.remove_provider(provider_id);
        Ok(())
    }

    /// `DELETE …/tool-provider/mcp`.
    pub async fn delete(&self, tenant_id: &str, provider_id: &str) -> Result<(), ApiError> {
        if !self.store.mcp_providers().delete(tenant_id, provider_id).await? {
            return Err(ApiError::not_found(format!("MCP provider {provider_id:?} not found")));
        }
        self.forget(provider_id);
        self.sessions.remove_provider(provider_id);
        Ok(())
    }

    fn forget(&self, provider_id: &str) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(provider_id);
    }

    /// Re-lists a provider's tools after its server announced `notifications/tools/list_changed`.
    async fn tools_changed(&self, tenant_id: &str, provider_id: &str) {
        // Ask the connection that announced the change: a stdio server's tools live in that process, and a
        // session-era server may list per session.
        let key = (tenant_id.to_owned(), provider_id.to_owned());
        let pooled = self.sessions.lock().get(&key).map(|p| p.client.clone());
        let outcome = match pooled {
            Some(client) => self.relist_with(tenant_id, provider_id, &client).await,
            None => self.relist(tenant_id, provider_id).await.map(|_| ()),
        };
        match outcome {
            Ok(_) => tracing::info!(provider = %provider_id, "MCP server changed its tools; cached list refreshed"),
            Err(e) => {
                tracing::warn!(provider = %provider_id, error = %e.message, "could not refresh changed MCP tools")
            }
        }
    }

    async fn relist_with(&self, tenant_id: &str, provider_id: &str, client: &McpClient) -> Result<(), ApiError> {
        let tools = client
            .list_tools()
            .await
            .map_err(|e| ApiError::invalid(format!("Failed to list the MCP server's tools: {e}")))?;
        let provider = self.decrypt_row(self.row(tenant_id, provider_id).await?).await?;
        self.save_tools(&provider, provider.record.authed, &tools).await?;
        Ok(())
    }

    /// Keeps a new pooled connection's `list_changed` notifications flowing into [`Self::tools_changed`]. The
    /// task holds neither the service nor the connection, so both can go away; it ends with the connection.
    fn watch_tools(self: &Arc<Self>, tenant_id: &str, provider_id: &str, client: &McpClient) {
        let mut notes = client.notifications();
        let service = Arc::downgrade(self);
        let (tenant_id, provider_id) = (tenant_id.to_owned(), provider_id.to_owned());
        tokio::spawn(async move {
            loop {
                match notes.recv().await {
                    Ok(note) if note.method == "notifications/tools/list_changed" => {
                        let Some(service) = service.upgrade() else { return };
                        service.tools_changed(&tenant_id, &provider_id).await;
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    async fn save_state(
        &self,
        provider: &DecryptedProvider,
        authed: bool,
        credentials: &StoredCredentials,
        tools: &str,
    ) -> Result<McpProviderRecord, ApiError> {
        let record = &provider.record;
        let state = McpProviderState {
            authed,
            encrypted_credentials: self.encrypt_credentials(&record.tenant_id, credentials).await?,
            tools: tools.to_owned(),
        };
        let row = self
            .store
            .mcp_providers()
            .set_state(&record.tenant_id, &record.id, &state)
            .await?;
        self.forget(&record.id);
        Ok(row)
    }

    async fn save_tools(
        &self,
        provider: &DecryptedProvider,
        authed: bool,
        tools: &[toolplane_mcp::protocol::Tool],
    ) -> Result<McpProviderRecord, ApiError> {
        let json = McpProviderConfig::tools_json(tools);
        self.save_state(provider, authed, &provider.credentials, &json).await
    }

    fn connector(&self, endpoint: &McpEndpoint, http: SafeClient) -> DefaultConnector {
        // Stdio records can only be written by admin keys (checked on create and update).
        DefaultConnector::new(http).allow_stdio(matches!(endpoint, McpEndpoint::Stdio(_)))
    }

    /// Connects with the provider's current headers and lists every tool (all pages).
    async fn connect_and_list(
        &self,
        provider: &DecryptedProvider,
    ) -> Result<Vec<toolplane_mcp::protocol::Tool>, McpError> {
        let config = provider.config().map_err(|e| McpError::Config(e.to_string()))?;
        let http = self.http().await.map_err(|e| McpError::Config(e.to_string()))?;
        let client: McpClient = self.connector(&config.endpoint, http).connect(&config).await?;
        let tools = client.list_tools().await;
        client.close().await;
        tools
    }

    /// Refreshes the provider's tokens (refresh token, or a new client-credentials grant) and stores them.
    pub async fn refresh_tokens(&self, tenant_id: &str, provider_id: &str) -> Result<DecryptedProvider, ApiError> {
        let mut provider = self.decrypt_row(self.row(tenant_id, provider_id).await?).await?;
        let http = self.http().await?;
        let credentials = &provider.credentials;
        let (Some(discovery), Some(client)) = (&credentials.discovery, &credentials.client_information) else {
            return Err(ApiError::invalid(
                "this MCP provider has no OAuth session to refresh; authorize it again",
            ));
        };
        let refresh_token = credentials.tokens.as_ref().and_then(|t| t.refresh_token.clone());
        let tokens = match refresh_token {
            Some(token) => oauth::refresh(&http, discovery, client, &token).await,
            None if credentials.grant_type.as_deref() == Some("client_credentials") => {
                oauth::client_credentials(&http, discovery, client).await
            }
            None => {
                return Err(ApiError::invalid(
                    "the MCP server gave no refresh token; authorize the provider again",
                ));
            }
        }
        .map_err(|e| ApiError::invalid(format!("Failed to refresh token, please try to authorize again: {e}")))?;
        provider.credentials.tokens = Some(tokens);
        let tools = provider.record.tools.clone();
        let credentials = provider.credentials.clone();
        provider.record = self.save_state(&provider, true, &credentials, &tools).await?;
        Ok(provider)
    }

    /// `POST …/mcp/auth`: connects with the stored authorization; when the server wants authorization, runs
    /// OAuth: refresh when there is a refresh token, the client-credentials grant when that is all the server
    /// offers, else an authorization URL for the user (`{"authorization_url"}`). `{"result":"success"}` once the
    /// server accepts us (tools listed and cached).
    pub async fn authorize(&self, tenant_id: &str, provider_id: &str) -> Result<Value, ApiError> {
        let provider = self.decrypt_row(self.row(tenant_id, provider_id).await?).await?;
        let challenge = match self.connect_and_list(&provider).await {
            Ok(tools) => {
                self.save_tools(&provider, true, &tools).await?;
                return Ok(json!({"result": "success"}));
            }
            Err(McpError::Unauthorized { challenge, .. }) => challenge,
            Err(e) => return Err(ApiError::invalid(format!("Failed to connect to MCP server: {e}"))),
        };
        let McpEndpoint::Http { url } = provider.endpoint()? else {
            return Err(ApiError::invalid("stdio MCP servers do not use OAuth"));
        };
        if !provider.headers.is_empty() {
            return Err(ApiError::invalid(
                "the MCP server refused the configured headers; fix them (custom headers replace OAuth)",
            ));
        }
        // A refresh token first (Dify's step 6).
        if provider
            .credentials
            .tokens
            .as_ref()
            .is_some_and(|t| t.refresh_token.is_some())
            && let Ok(refreshed) = self.refresh_tokens(tenant_id, provider_id).await
            && let Ok(tools) = self.connect_and_list(&refreshed).await
        {
            self.save_tools(&refreshed, true, &tools).await?;
            return Ok(json!({"result": "success"}));
        }
        let http = self.http().await?;
        let discovery = oauth::discover(&http, &url, challenge.as_ref())
            .await
            .map_err(|e| ApiError::invalid(format!("Failed to discover OAuth metadata from server: {e}")))?;
        let mut credentials = provider.credentials.clone();
        credentials.tokens = None;
        let server = &discovery.authorization_server;
        let use_code = server.grant_types_supported.is_none() || server.supports_grant("authorization_code");
        if credentials.client_information.is_none() {
            if !use_code {
                return Err(ApiError::invalid(
                    "the authorization server only offers client credentials; enter a client id and secret",
                ));
            }
            let metadata = ClientMetadata::authorization_code(self.redirect_uri.clone());
            let client = oauth::register_client(&http, server, &metadata)
                .await
                .map_err(|e| ApiError::invalid(format!("Incompatible auth server: {e}")))?;
            credentials.client_information = Some(client);
            credentials.is_dynamic_registration = true;
        }
        let Some(client) = credentials.client_information.clone() else {
            return Err(ApiError::internal("no OAuth client after registration"));
        };
        credentials.discovery = Some(discovery.clone());
        if !use_code {
            let tokens = oauth::client_credentials(&http, &discovery, &client)
                .await
                .map_err(|e| ApiError::invalid(format!("Failed to connect to MCP server: {e}")))?;
            credentials.tokens = Some(tokens);
            credentials.grant_type = Some("client_credentials".into());
            let authed = DecryptedProvider {
                credentials: credentials.clone(),
                ..provider.clone()
            };
            let tools = self
                .connect_and_list(&authed)
                .await
                .map_err(|e| ApiError::invalid(format!("Failed to connect to MCP server: {e}")))?;
            self.save_state(&authed, true, &credentials, &McpProviderConfig::tools_json(&tools))
                .await?;
            return Ok(json!({"result": "success"}));
        }
        let request = oauth::authorization_request(&discovery, &client, &self.redirect_uri)
            .map_err(|e| ApiError::invalid(format!("Failed to start authorization: {e}")))?;
        credentials.grant_type = Some("authorization_code".into());
        // Keep the client (dynamic registration) and discovery; the tokens come with the callback.
        self.save_state(&provider, false, &credentials, &provider.record.tools)
            .await?;
        let client_json = serde_json::to_string(&client).map_err(ApiError::internal)?;
        let expires_at = now_ms().saturating_add(STATE_TTL.as_millis() as i64);
        self.store
            .mcp_oauth_states()
            .insert(&McpOAuthStateRecord {
                state: request.state.clone(),
                tenant_id: tenant_id.to_owned(),
                provider_id: provider_id.to_owned(),
                code_verifier: self.encrypt(tenant_id, &request.code_verifier).await?,
                discovery: serde_json::to_string(&discovery).map_err(ApiError::internal)?,
                client_info: self.encrypt(tenant_id, &client_json).await?,
                redirect_uri: request.redirect_uri.clone(),
                expires_at,
            })
            .await?;
        Ok(json!({"authorization_url": request.url}))
    }

    /// `GET /console/api/mcp/oauth/callback?code&state`: the state (single use, unexpired) names the tenant and
    /// provider; the code is exchanged, the tokens stored encrypted, and the tools listed.
    pub async fn callback(&self, code: &str, state: &str, iss: Option<&str>) -> Result<(), ApiError> {
        let pending = self
            .store
            .mcp_oauth_states()
            .take(state)
            .await?
            .ok_or_else(|| ApiError::invalid("invalid or expired OAuth state; start the authorization again"))?;
        let tenant = pending.tenant_id.clone();
        let provider = self.decrypt_row(self.row(&tenant, &pending.provider_id).await?).await?;
        let discovery: OAuthDiscovery = serde_json::from_str(&pending.discovery)
            .map_err(|e| ApiError::internal(format!("stored OAuth discovery is not valid: {e}")))?;
        let client: ClientInformation = serde_json::from_str(&self.decrypt(&tenant, &pending.client_info).await?)
            .map_err(|e| ApiError::internal(format!("stored OAuth client is not valid: {e}")))?;
        // RFC 9207: a response naming another issuer (or none, when this one promised to) may come from a
        // mix-up attack; its code must not reach this server's token endpoint.
        let mut params = vec![
            ("code".to_owned(), code.to_owned()),
            ("state".to_owned(), state.to_owned()),
        ];
        if let Some(iss) = iss {
            params.push(("iss".to_owned(), iss.to_owned()));
        }
        let code = oauth::validate_authorization_response(&discovery, state, &params)
            .map_err(|e| ApiError::invalid(format!("The authorization response was refused: {e}")))?;
        let verifier = self.decrypt(&tenant, &pending.code_verifier).await?;
        let http = self.http().await?;
        let tokens = oauth::exchange_code(&http, &discovery, &client, &code, &verifier, &pending.redirect_uri)
            .await
            .map_err(|e| ApiError::invalid(format!("Failed to exchange the authorization code: {e}")))?;
        let mut credentials = provider.credentials.clone();
        credentials.client_information = Some(client);
        credentials.discovery = Some(discovery);
        credentials.tokens = Some(tokens);
        credentials.grant_type = Some("authorization_code".into());
        let authed = DecryptedProvider {
            credentials: credentials.clone(),
            ..provider
        };
        let tools = match self.connect_and_list(&authed).await {
            Ok(tools) => McpProviderConfig::tools_json(&tools),
            Err(e) => {
                tracing::warn!(provider = %authed.record.server_identifier, error = %e, "authorized, but listing tools failed");
                authed.record.tools.clone()
            }
        };
        self.save_state(&authed, true, &credentials, &tools).await?;
        Ok(())
    }

    /// `GET …/mcp/update/<provider_id>`: re-lists the tools (every page, with a token refresh and one retry on
    /// 401) and caches them; requires an authorized provider.
    pub async fn relist(&self, tenant_id: &str, provider_id: &str) -> Result<Value, ApiError> {
        let provider = self.decrypt_row(self.row(tenant_id, provider_id).await?).await?;
        if !provider.record.authed {
            return Err(ApiError::invalid("Please auth the tool first"));
        }
        let provider = if provider
            .credentials
            .tokens
            .as_ref()
            .is_some_and(|t| t.expires_within(REFRESH_MARGIN))
        {
            self.refresh_tokens(tenant_id, provider_id).await?
        } else {
            provider
        };
        let tools = match self.connect_and_list(&provider).await {
            Err(McpError::Unauthorized { .. }) if provider.credentials.discovery.is_some() => {
                let refreshed = self.refresh_tokens(tenant_id, provider_id).await?;
                self.connect_and_list(&refreshed).await
            }
            other => other,
        }
        .map_err(|e| ApiError::invalid(format!("Failed to connect to MCP server: {e}")))?;
        let row = self.save_tools(&provider, true, &tools).await?;
        self.entity(row, true).await
    }

    /// `GET …/mcp/tools/<provider_id>`: the provider entity with its cached tools.
    pub async fn tools(&self, tenant_id: &str, provider_id: &str) -> Result<Value, ApiError> {
        let row = self.row(tenant_id, provider_id).await?;
        self.entity(row, true).await
    }

    /// `GET /workspaces/current/tools/mcp`: every provider with its cached tools; `id` is the `server_identifier`.
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<Value>, ApiError> {
        let rows = self.store.mcp_providers().list(tenant_id).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let identifier = row.server_identifier.clone();
            let mut entity = self.entity(row, true).await?;
            entity["id"] = Value::String(identifier);
            out.push(entity);
        }
        Ok(out)
    }

    /// Dify's `to_api_response` with masked URL, headers and client, plus `tools` when asked.
    pub async fn entity(&self, row: McpProviderRecord, with_tools: bool) -> Result<Value, ApiError> {
        let provider = self.decrypt_row(row).await?;
        let record = &provider.record;
        let masked_headers: Map<String, Value> = provider
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(mask_secret(v))))
            .collect();
        let client = provider.credentials.client_information.as_ref();
        let authentication = json!({
            "client_id": client.map(|c| mask_secret(&c.client_id)).unwrap_or_default(),
            "client_secret": client.and_then(|c| c.client_secret.as_deref()).map(mask_secret).unwrap_or_default(),
        });
        let mut entity = json!({
            "id": record.id,
            "author": "Anonymous",
            "name": record.name,
            "icon": icon_value(record.icon.as_deref()),
            "type": "mcp",
            "is_team_authorization": record.authed,
            "server_url": masked_server_url(&provider.server_url),
            "server_identifier": record.server_identifier,
            "updated_at": record.updated_at / 1000,
            "label": {"en_US": record.name, "zh_Hans": record.name},
            "description": {"en_US": "", "zh_Hans": ""},
            "configuration": {
                "timeout": format_seconds(record.timeout),
                "sse_read_timeout": format_seconds(record.sse_read_timeout),
            },
            "masked_headers": masked_headers,
            "authentication": authentication,
            "is_dynamic_registration": provider.credentials.is_dynamic_registration,
            "labels": [],
            "allow_delete": true,
        });
        if with_tools {
            let built = McpToolProvider::new(provider.config()?, Arc::new(NoConnector));
            let tools = built.tools().await?;
            entity["tools"] = Value::Array(tools.iter().map(|t| tool_json(t.as_ref())).collect());
        }
        Ok(entity)
    }

    /// A provider for the catalog, cached until its row changes.
    async fn build(self: &Arc<Self>, row: McpProviderRecord) -> Result<Arc<McpToolProvider>, ToolError> {
        if let Some(cached) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&row.id)
            .filter(|c| c.updated_at == row.updated_at)
        {
            return Ok(cached.provider.clone());
        }
        let (id, updated_at, tenant) = (row.id.clone(), row.updated_at, row.tenant_id.clone());
        let provider = self
            .decrypt_row(row)
            .await
            .map_err(|e| ToolError::Internal(e.to_string()))?;
        let config = provider.config().map_err(|e| ToolError::Internal(e.to_string()))?;
        let connector = TokenConnector {
            service: Arc::clone(self),
            tenant_id: tenant,
            oauth: provider.headers.is_empty() && provider.credentials.tokens.is_some(),
            tokens: provider.credentials.tokens.clone(),
        };
        let built = Arc::new(McpToolProvider::new(config, Arc::new(connector)));
        self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(
            id,
            Cached {
                updated_at,
                provider: built.clone(),
            },
        );
        Ok(built)
    }
}

fn format_seconds(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.1}")
    } else {
        value.to_string()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn string_headers(headers: Option<&Map<String, Value>>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (name, value) in headers.into_iter().flatten() {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        out.insert(name.to_owned(), value);
    }
    Ok(out)
}

/// A tool in Dify's `ToolApiEntity` shape.
fn tool_json(tool: &dyn Tool) -> Value {
    let entity = tool.entity();
    json!({
        "author": entity.identity.author,
        "name": entity.identity.name,
        "label": entity.identity.label,
        "description": entity.description.as_ref().map(|d| &d.human),
        "parameters": entity.parameters,
        "labels": [],
        "output_schema": entity.output_schema,
    })
}

/// Used only to describe cached tools (never connects).
struct NoConnector;

#[async_trait]
impl McpConnector for NoConnector {
    async fn connect(&self, _config: &McpProviderConfig) -> Result<McpClient, McpError> {
        Err(McpError::Config("describing tools does not connect".into()))
    }
}

/// Connects with the stored tokens: refreshes them shortly before they expire, and once after a 401.
struct TokenConnector {
    service: Arc<McpProviders>,
    tenant_id: String,
    /// Whether `Authorization` comes from stored tokens (not from custom headers).
    oauth: bool,
    tokens: Option<TokenSet>,
}

impl TokenConnector {
    async fn refreshed(&self, config: &McpProviderConfig) -> Result<McpProviderConfig, McpError> {
        let provider = self
            .service
            .refresh_tokens(&self.tenant_id, &config.id)
            .await
            .map_err(|e| McpError::Config(e.to_string()))?;
        let mut config = config.clone();
        config.headers = provider.request_headers();
        Ok(config)
    }
}

impl TokenConnector {
    fn key(&self, config: &McpProviderConfig) -> (String, String) {
        (self.tenant_id.clone(), config.id.clone())
    }

    /// A new connection (refreshing tokens shortly before they expire, and once after a 401).
    async fn open(&self, config: &McpProviderConfig) -> Result<(McpClient, McpProviderConfig), McpError> {
        let http = self.service.http().await.map_err(|e| McpError::Config(e.to_string()))?;
        let connector = self.service.connector(&config.endpoint, http);
        let mut config = config.clone();
        let mut refreshed = false;
        if self.oauth && self.tokens.as_ref().is_some_and(|t| t.expires_within(REFRESH_MARGIN)) {
            config = self.refreshed(&config).await?;
            refreshed = true;
        }
        match connector.connect(&config).await {
            Err(McpError::Unauthorized { .. }) if self.oauth && !refreshed => {
                let config = self.refreshed(&config).await?;
                let client = connector.connect(&config).await?;
                Ok((client, config))
            }
            other => other.map(|client| (client, config)),
        }
    }
}

#[async_trait]
impl McpConnector for TokenConnector {
    async fn connect(&self, config: &McpProviderConfig) -> Result<McpClient, McpError> {
        let key = self.key(config);
        let expiring = self.oauth && self.tokens.as_ref().is_some_and(|t| t.expires_within(REFRESH_MARGIN));
        if !expiring && let Some(client) = self.service.sessions.get(&key, &fingerprint(config)) {
            return Ok(client);
        }
        let (client, _) = self.open(config).await?;
        self.service.watch_tools(&self.tenant_id, &config.id, &client);
        // Keyed by the settings the provider record holds (not those after a refresh): the record is rewritten
        // with the new token, and the provider rebuilt from it then finds this entry.
        self.service.sessions.put(key, fingerprint(config), client.clone());
        Ok(client)
    }

    async fn release(&self, config: &McpProviderConfig, client: McpClient) {
        self.service.sessions.touch(&self.key(config), &client);
    }

    async fn discard(&self, config: &McpProviderConfig, client: &McpClient) -> bool {
        self.service.sessions.remove(&self.key(config), Some(client))
    }
}

/// The catalog's `mcp` source: one [`McpToolProvider`] per row, addressed by `server_identifier`.
pub struct McpProviderSource {
    service: Arc<McpProviders>,
}

impl McpProviderSource {
    /// A source over the service.
    pub fn new(service: Arc<McpProviders>) -> Self {
        Self { service }
    }
}

#[async_trait]
impl ProviderSource for McpProviderSource {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Mcp
    }

    async fn list(&self, tenant_id: &str) -> Result<Vec<Arc<dyn ToolProvider>>, ToolError> {
        let rows = self
            .service
            .store
            .mcp_providers()
            .list(tenant_id)
            .await
            .map_err(|e| ToolError::Internal(e.to_string()))?;
        let mut providers: Vec<Arc<dyn ToolProvider>> = Vec::with_capacity(rows.len());
        for row in rows {
            let identifier = row.server_identifier.clone();
            match self.service.build(row).await {
                Ok(provider) => providers.push(provider),
                Err(e) => tracing::warn!(provider = %identifier, error = %e, "skipping an unreadable MCP provider"),
            }
        }
        Ok(providers)
    }

    async fn get(&self, tenant_id: &str, provider_id: &str) -> Result<Option<Arc<dyn ToolProvider>>, ToolError> {
        let row = self
            .service
            .store
            .mcp_providers()
            .get_by_identifier(tenant_id, provider_id)
            .await
            .map_err(|e| ToolError::Internal(e.to_string()))?;
        match row {
            Some(row) => Ok(Some(self.service.build(row).await? as Arc<dyn ToolProvider>)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_dify() {
        assert_eq!(
            masked_server_url("https://mcp.example.com/v1/mcp?k=1"),
            "https://mcp.example.com/******"
        );
        assert_eq!(masked_server_url("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
        assert_eq!(mask_secret("Bearer secret-token"), "Be***************en");
        assert!(is_masked_echo("Be***************en", "Bearer secret-token"));
        assert!(is_masked_echo(HIDDEN_VALUE, "x"));
        assert!(!is_masked_echo("new", "Bearer secret-token"));
        assert_eq!(format_seconds(30.0), "30.0");
        assert_eq!(format_seconds(2.5), "2.5");
    }

    #[test]
    fn validates_input() {
        assert!(checked_url("ftp://x").is_err());
        assert!(checked_url("http://").is_err());
        assert!(checked_url(" https://x.example/mcp ").is_ok());
        assert!(checked_identifier("a b").is_err());
        assert!(checked_identifier(&"x".repeat(65)).is_err());
        assert!(checked_name(&"n".repeat(41)).is_err());
        assert_eq!(number(Some(&json!("12")), 30.0).unwrap(), 12.0);
        assert!(number(Some(&json!(-1)), 30.0).is_err());
    }
}
