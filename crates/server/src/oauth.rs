//! OAuth 2.0 for tool providers (Dify's `tool_oauth_*_clients`, `oauth/plugin/<provider>/tool/...` routes).
//!
//! **Clients.** A provider that declares an `oauth_schema` authorizes with client params (`client_schema`
//! fields). They come from, in order (Dify's `get_oauth_client`):
//! 1. the tenant's own client (`tool_oauth_tenant_clients`, when `enabled`; secret fields encrypted with the
//!    tenant key);
//! 2. the system client (`tool_oauth_system_clients`, params encrypted with `SECRET_KEY` in Dify's AES-256-CBC
//!    format), only for builtin providers and verified plugins.
//!
//! **Builtin providers** authorize through toolplane's own OAuth 2.0 client: authorization code with PKCE
//! (S256), `client_secret_post` at the token endpoint, refresh-token grant. The endpoints are client params:
//! `authorization_url` and `token_url` (plus `client_id`, `client_secret`, optional `scope`), so an admin
//! configures them together with the client (`toolplane oauth set-system-client`). The token response's string
//! fields (`access_token`, `refresh_token`, `token_type`, `scope`, …) become the `oauth2` credential;
//! `expires_in` becomes `expires_at` (unix seconds, -1 when absent).
//!
//! **Plugin providers** (`org/plugin/provider`) are authorized by the plugin itself, through the plugin runtime of
//! the daemon beside the console ([`OAuth::with_plugin_daemon`]), as Dify does it through `dispatch/oauth/*`:
//! - `get_authorization_url` with `{provider, redirect_uri, system_credentials}` answers the URL to send the user to;
//! - the callback hands the browser's request to `get_credentials` as `raw_http_request` (hex of the HTTP/1.1
//!   request: request line, headers, blank line, body), which answers `{credentials, expires_at, metadata}`;
//! - `refresh_credentials` with the stored `credentials` answers `{credentials, expires_at}`.
//!
//! `system_credentials` are the resolved client params. Their clients live in the client tables under
//! (`org/plugin`, `provider`), as in Dify; system clients are handed only to plugins whose installed package is
//! verified. The callback's `Cookie` and `Authorization` headers are not forwarded to the plugin: they are the
//! console's, not the authorization server's.
//!
//! **Flow state.** The authorization-url route stores a context (tenant, user, provider, PKCE verifier) for
//! 5 minutes under a random id sent as the `context_id` cookie (HttpOnly, SameSite=Lax); the callback consumes it
//! once. Contexts live in this process, so in a multi-node deployment the callback must reach the same node
//! (sticky sessions) — Dify keeps them in Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use toolplane_core::{CredentialType, ProviderConfig, ToolError, ToolProvider, secret_field_names};
use toolplane_daemon::{DaemonState, split_provider_id};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_runtime::InvokeRequest;
use toolplane_secrets::{
    decrypt_fields, decrypt_system_oauth_params, encrypt_fields, encrypt_system_oauth_params, mask_credentials,
    merge_hidden,
};
use toolplane_store::Store;

use crate::error::ApiError;
use crate::tenant_keys::TenantKeys;

/// How long an authorization context stays usable (Dify: 300 s).
pub const CONTEXT_TTL: Duration = Duration::from_secs(300);
/// Tokens are refreshed this many seconds before they expire (Dify: 60 s).
pub const REFRESH_MARGIN_SECS: i64 = 60;

/// `plugin_id` of builtin providers in the client tables.
const BUILTIN_PLUGIN_ID: &str = "";

/// The client params in force for a provider, and where they came from.
#[derive(Debug, Clone)]
pub struct ResolvedClient {
    pub params: Map<String, Value>,
    /// `true` for the tenant's own client, `false` for the system client.
    pub from_tenant: bool,
}

/// A pending authorization.
#[derive(Debug, Clone)]
struct Context {
    tenant_id: String,
    user_id: String,
    provider: String,
    code_verifier: String,
    created: Instant,
}

/// Tokens obtained from a token endpoint.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The credential to store (string fields of the token response).
    pub credentials: Map<String, Value>,
    /// Unix seconds, or -1.
    pub expires_at: i64,
}

/// What the client-schema route shows.
#[derive(Debug, Clone, Serialize)]
pub struct ClientSchemaView {
    pub schema: Vec<ProviderConfig>,
    pub is_oauth_custom_client_enabled: bool,
    pub is_system_oauth_params_exists: bool,
    pub client_params: Map<String, Value>,
    pub redirect_uri: String,
}

/// OAuth clients, authorization contexts and the token client.
pub struct OAuth {
    store: Store,
    keys: Arc<TenantKeys>,
    secret_key: String,
    console_api_url: String,
    net: NetConfig,
    client: tokio::sync::OnceCell<SafeClient>,
    contexts: Mutex<HashMap<String, Context>>,
    /// The plugin daemon whose runtime authorizes plugin providers.
    daemon: Option<DaemonState>,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth").finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether `provider_id` names a plugin provider (`org/plugin/provider`) rather than a builtin one.
pub fn is_plugin_provider(provider_id: &str) -> bool {
    provider_id.contains('/')
}

/// 501: plugin OAuth runs inside the plugin, and this toolplane runs without the plugin runtime.
pub fn plugin_runtime_missing(provider_id: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_IMPLEMENTED,
        "plugin_oauth_unavailable",
        format!(
            "OAuth for plugin provider {provider_id:?} runs inside the plugin (dispatch/oauth), and this toolplane \
             runs without the plugin runtime; start it with the plugin daemon (`toolplane serve`)"
        ),
    )
}

/// Where a provider's clients live in the client tables: (`""`, id) for builtin providers, (`org/plugin`,
/// `provider`) for plugin providers (Dify's `ToolProviderID`).
fn client_key(provider_id: &str) -> (&str, &str) {
    split_provider_id(provider_id).unwrap_or((BUILTIN_PLUGIN_ID, provider_id))
}

/// The request the browser sent to the callback, as the plugin reads it (`raw_http_request`): the HTTP/1.1 request
/// line, the headers (without the console's `Cookie` and `Authorization`), a blank line and the body.
pub fn raw_http_request(method: &str, path_and_query: &str, headers: &axum::http::HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{method} {path_and_query} HTTP/1.1\r\n").into_bytes();
    for (name, value) in headers {
        if name == axum::http::header::COOKIE || name == axum::http::header::AUTHORIZATION {
            continue;
        }
        raw.extend_from_slice(name.as_str().as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    raw
}

/// `expires_at` as the plugin answered it: unix seconds, -1 (or absent/null) for never.
fn plugin_expires_at(answer: &Map<String, Value>) -> i64 {
    answer.get("expires_at").and_then(Value::as_i64).unwrap_or(-1)
}

/// The `credentials` object of a plugin's OAuth answer.
fn plugin_credentials(answer: &mut Map<String, Value>) -> Result<Map<String, Value>, String> {
    match answer.remove("credentials") {
        Some(Value::Object(credentials)) => Ok(credentials),
        _ => Err("the plugin's OAuth answer has no credentials object".into()),
    }
}

fn client_schema(provider: &dyn ToolProvider) -> Result<&[ProviderConfig], ApiError> {
    match &provider.entity().oauth_schema {
        Some(schema) => Ok(&schema.client_schema),
        None => Err(ApiError::invalid(format!(
            "provider {:?} does not support OAuth (it declares no oauth_schema)",
            provider.id()
        ))),
    }
}

fn param<'a>(params: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn required_param<'a>(params: &'a Map<String, Value>, name: &str, provider: &str) -> Result<&'a str, ApiError> {
    param(params, name).ok_or_else(|| {
        ApiError::invalid(format!(
            "the OAuth client of provider {provider:?} has no {name}; set it in the client params"
        ))
    })
}

/// A random PKCE code verifier (64 characters of the unreserved set).
fn code_verifier() -> String {
    crate::auth::random_token(64)
}

/// `base64url(SHA-256(verifier))` without padding (RFC 7636 S256).
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl OAuth {
    /// The service. `console_api_url` builds redirect URIs; `secret_key` encrypts system client params.
    pub fn new(store: Store, keys: Arc<TenantKeys>, secret_key: &str, console_api_url: &str, net: NetConfig) -> Self {
        Self {
            store,
            keys,
            secret_key: secret_key.to_owned(),
            console_api_url: console_api_url.trim_end_matches('/').to_owned(),
            net,
            client: tokio::sync::OnceCell::new(),
            contexts: Mutex::new(HashMap::new()),
            daemon: None,
        }
    }

    /// Authorizes plugin providers through `daemon`'s plugin runtime (without one their flows answer 501).
    #[must_use]
    pub fn with_plugin_daemon(mut self, daemon: Option<DaemonState>) -> Self {
        self.daemon = daemon;
        self
    }

    /// Runs one `oauth` action of the plugin behind `provider_id` (adding `provider`) and answers its result.
    async fn plugin_oauth(
        &self,
        tenant_id: &str,
        user_id: &str,
        provider_id: &str,
        action: &str,
        mut payload: Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let unavailable = || plugin_runtime_missing(provider_id).message;
        let daemon = self.daemon.as_ref().ok_or_else(unavailable)?;
        let runtime = daemon.runtime().ok_or_else(unavailable)?;
        let (plugin_id, provider_name) = split_provider_id(provider_id)
            .ok_or_else(|| format!("{provider_id:?} is not a plugin provider id (org/plugin/provider)"))?;
        payload.insert("provider".into(), Value::String(provider_name.to_owned()));
        let request = InvokeRequest {
            tenant_id: tenant_id.to_owned(),
            user_id: user_id.to_owned(),
            access_type: "oauth".into(),
            action: action.to_owned(),
            payload,
            ..InvokeRequest::default()
        };
        let session = daemon
            .plugin_session(plugin_id, &request)
            .await
            .map_err(|e| format!("plugin {plugin_id}: {e}"))?;
        let timeout = runtime.config().max_execution_timeout;
        let chunks = tokio::time::timeout(timeout, session.collect())
            .await
            .map_err(|_| {
                format!(
                    "plugin {plugin_id} did not answer oauth/{action} within {} s",
                    timeout.as_secs()
                )
            })?
            .map_err(|e| format!("plugin {plugin_id} failed in oauth/{action}: {e}"))?;
        chunks
            .into_iter()
            .find_map(|chunk| match chunk {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .ok_or_else(|| format!("plugin {plugin_id} answered nothing to oauth/{action}"))
    }

    /// The base payload of the plugin's oauth actions.
    fn plugin_payload(&self, provider_id: &str, client: &ResolvedClient) -> Map<String, Value> {
        let mut payload = Map::new();
        payload.insert("redirect_uri".into(), Value::String(self.redirect_uri(provider_id)));
        payload.insert("system_credentials".into(), Value::Object(client.params.clone()));
        payload
    }

    /// Whether system clients may serve `provider_id`: builtin providers, and plugins whose installed package is
    /// verified.
    async fn system_client_allowed(&self, tenant_id: &str, provider_id: &str) -> Result<bool, ApiError> {
        let Some((plugin_id, _)) = split_provider_id(provider_id) else {
            return Ok(true);
        };
        match &self.daemon {
            Some(daemon) => daemon
                .is_plugin_verified(tenant_id, plugin_id)
                .await
                .map_err(|e| ApiError::internal(format!("cannot read the verification of plugin {plugin_id}: {e}"))),
            None => Ok(false),
        }
    }

    /// `{CONSOLE_API_URL}/console/api/oauth/plugin/{provider}/tool/callback`.
    pub fn redirect_uri(&self, provider_id: &str) -> String {
        format!(
            "{}/console/api/oauth/plugin/{provider_id}/tool/callback",
            self.console_api_url
        )
    }

    async fn http(&self) -> Result<&SafeClient, ApiError> {
        self.client
            .get_or_try_init(|| async { SafeClient::new(self.net.clone()) })
            .await
            .map_err(ApiError::internal)
    }

    /// Stores the system client of a provider (params encrypted with `SECRET_KEY`, Dify's format).
    pub async fn set_system_client(
        &self,
        plugin_id: &str,
        provider: &str,
        params: &Map<String, Value>,
    ) -> Result<(), ApiError> {
        let encrypted = encrypt_system_oauth_params(&self.secret_key, params).map_err(ApiError::internal)?;
        self.store
            .oauth_clients()
            .upsert_system(plugin_id, provider, &encrypted)
            .await?;
        Ok(())
    }

    async fn system_params(&self, provider_id: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        let (plugin_id, provider_name) = client_key(provider_id);
        let Some(row) = self.store.oauth_clients().system(plugin_id, provider_name).await? else {
            return Ok(None);
        };
        decrypt_system_oauth_params(&self.secret_key, &row.encrypted_oauth_params)
            .map(Some)
            .map_err(|e| ApiError::internal(format!("system OAuth client of {provider_id}: {e}")))
    }

    async fn tenant_params(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
    ) -> Result<Option<(bool, Map<String, Value>)>, ApiError> {
        let (plugin_id, provider_name) = client_key(provider.id());
        let Some(row) = self
            .store
            .oauth_clients()
            .tenant(tenant_id, plugin_id, provider_name)
            .await?
        else {
            return Ok(None);
        };
        let stored: Map<String, Value> = serde_json::from_str(&row.encrypted_oauth_params)
            .map_err(|e| ApiError::internal(format!("tenant OAuth client {}: {e}", row.id)))?;
        let secrets = secret_field_names(client_schema(provider)?);
        let key = self.keys.private_key(tenant_id).await?;
        let params = decrypt_fields(&stored, &secrets, &key)
            .map_err(|e| ApiError::internal(format!("tenant OAuth client {}: {e}", row.id)))?;
        Ok(Some((row.enabled, params)))
    }

    /// The client params in force: the tenant's enabled client, else (builtin providers and verified plugins) the
    /// system client.
    pub async fn resolve_client(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
    ) -> Result<Option<ResolvedClient>, ApiError> {
        if let Some((true, params)) = self.tenant_params(tenant_id, provider).await? {
            return Ok(Some(ResolvedClient {
                params,
                from_tenant: true,
            }));
        }
        if !self.system_client_allowed(tenant_id, provider.id()).await? {
            return Ok(None);
        }
        Ok(self.system_params(provider.id()).await?.map(|params| ResolvedClient {
            params,
            from_tenant: false,
        }))
    }

    /// Saves the tenant's client (`oauth/custom-client` POST): `[__HIDDEN__]` keeps stored secrets; `None` params
    /// with only `enabled` toggles the existing client.
    pub async fn save_tenant_client(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
        params: Option<Map<String, Value>>,
        enabled: Option<bool>,
    ) -> Result<(), ApiError> {
        if params.is_none() && enabled.is_none() {
            return Ok(());
        }
        let schema = client_schema(provider)?;
        let secrets = secret_field_names(schema);
        let existing = self.tenant_params(tenant_id, provider).await?;
        let (stored_enabled, stored) = existing.unwrap_or((true, Map::new()));
        let params = match params {
            Some(new) => merge_hidden(new, &stored, &secrets),
            None => stored,
        };
        let key = self.keys.private_key(tenant_id).await?;
        let encrypted =
            encrypt_fields(&params, &secrets, key.public_key()).map_err(|e| ApiError::invalid(e.to_string()))?;
        let (plugin_id, provider_name) = client_key(provider.id());
        self.store
            .oauth_clients()
            .upsert_tenant(
                tenant_id,
                plugin_id,
                provider_name,
                enabled.unwrap_or(stored_enabled),
                &Value::Object(encrypted).to_string(),
            )
            .await?;
        Ok(())
    }

    /// The tenant's client params, masked (`oauth/custom-client` GET).
    pub async fn tenant_client_masked(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
    ) -> Result<Map<String, Value>, ApiError> {
        let secrets = secret_field_names(client_schema(provider)?);
        Ok(match self.tenant_params(tenant_id, provider).await? {
            Some((_, params)) => mask_credentials(&params, &secrets),
            None => Map::new(),
        })
    }

    /// Deletes the tenant's client.
    pub async fn delete_tenant_client(&self, tenant_id: &str, provider: &dyn ToolProvider) -> Result<(), ApiError> {
        client_schema(provider)?;
        let (plugin_id, provider_name) = client_key(provider.id());
        self.store
            .oauth_clients()
            .delete_tenant(tenant_id, plugin_id, provider_name)
            .await?;
        Ok(())
    }

    /// `oauth/client-schema`.
    pub async fn client_schema_view(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
    ) -> Result<ClientSchemaView, ApiError> {
        let schema = client_schema(provider)?.to_vec();
        let secrets = secret_field_names(&schema);
        let tenant = self.tenant_params(tenant_id, provider).await?;
        let system_exists = self.system_params(provider.id()).await?.is_some();
        Ok(ClientSchemaView {
            schema,
            is_oauth_custom_client_enabled: tenant.as_ref().is_some_and(|(enabled, _)| *enabled),
            is_system_oauth_params_exists: system_exists,
            client_params: tenant
                .map(|(_, params)| mask_credentials(&params, &secrets))
                .unwrap_or_default(),
            redirect_uri: self.redirect_uri(provider.id()),
        })
    }

    fn prune(contexts: &mut HashMap<String, Context>) {
        contexts.retain(|_, c| c.created.elapsed() < CONTEXT_TTL);
    }

    /// Starts an authorization: returns `(context_id, authorization_url)`.
    pub async fn authorization_url(
        &self,
        tenant_id: &str,
        user_id: &str,
        provider: &dyn ToolProvider,
    ) -> Result<(String, String), ApiError> {
        client_schema(provider)?;
        let client = self.resolve_client(tenant_id, provider).await?.ok_or_else(|| {
            ApiError::invalid(format!(
                "no OAuth client is configured for provider {:?}: save one with POST \
                 /console/api/workspaces/current/tool-provider/builtin/{0}/oauth/custom-client or ask an admin to run \
                 `toolplane oauth set-system-client {0}`",
                provider.id()
            ))
        })?;
        if is_plugin_provider(provider.id()) {
            let url = self
                .plugin_authorization_url(tenant_id, user_id, provider, &client)
                .await?;
            let context_id = uuid::Uuid::new_v4().to_string();
            self.remember(&context_id, tenant_id, user_id, provider.id(), String::new())?;
            return Ok((context_id, url));
        }
        let params = &client.params;
        let authorize = required_param(params, "authorization_url", provider.id())?;
        let client_id = required_param(params, "client_id", provider.id())?;
        let mut url = url::Url::parse(authorize)
            .map_err(|e| ApiError::invalid(format!("authorization_url {authorize:?} is not a URL: {e}")))?;
        let context_id = uuid::Uuid::new_v4().to_string();
        let verifier = code_verifier();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", client_id)
                .append_pair("redirect_uri", &self.redirect_uri(provider.id()))
                .append_pair("state", &context_id)
                .append_pair("code_challenge", &code_challenge(&verifier))
                .append_pair("code_challenge_method", "S256");
            if let Some(scope) = param(params, "scope") {
                query.append_pair("scope", scope);
            }
        }
        self.remember(&context_id, tenant_id, user_id, provider.id(), verifier)?;
        Ok((context_id, url.into()))
    }

    /// Stores a pending authorization for [`CONTEXT_TTL`].
    fn remember(
        &self,
        context_id: &str,
        tenant_id: &str,
        user_id: &str,
        provider_id: &str,
        code_verifier: String,
    ) -> Result<(), ApiError> {
        let mut contexts = self
            .contexts
            .lock()
            .map_err(|_| ApiError::internal("OAuth context lock poisoned"))?;
        Self::prune(&mut contexts);
        contexts.insert(
            context_id.to_owned(),
            Context {
                tenant_id: tenant_id.to_owned(),
                user_id: user_id.to_owned(),
                provider: provider_id.to_owned(),
                code_verifier,
                created: Instant::now(),
            },
        );
        Ok(())
    }

    /// The plugin's authorization URL (`oauth/get_authorization_url`).
    async fn plugin_authorization_url(
        &self,
        tenant_id: &str,
        user_id: &str,
        provider: &dyn ToolProvider,
        client: &ResolvedClient,
    ) -> Result<String, ApiError> {
        let payload = self.plugin_payload(provider.id(), client);
        let answer = self
            .plugin_oauth(tenant_id, user_id, provider.id(), "get_authorization_url", payload)
            .await
            .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "oauth_authorization_url_failed", e))?;
        answer
            .get("authorization_url")
            .and_then(Value::as_str)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::BAD_GATEWAY,
                    "oauth_authorization_url_failed",
                    format!("plugin provider {:?} answered no authorization_url", provider.id()),
                )
            })
    }

    /// Completes a plugin provider's authorization: consumes the context, hands the callback request
    /// (`raw_http_request`, see [`raw_http_request`]) to the plugin's `oauth/get_credentials` and returns
    /// `(tenant_id, user_id, provider, tokens)`.
    pub async fn plugin_exchange(
        &self,
        context_id: &str,
        provider_id: &str,
        raw_request: &[u8],
        provider_lookup: impl AsyncFnOnce(&str, &str) -> Result<Arc<dyn ToolProvider>, ApiError>,
    ) -> Result<(String, String, Arc<dyn ToolProvider>, Tokens), ApiError> {
        let context = self.take_context(context_id).ok_or_else(|| {
            ApiError::invalid("Invalid context_id: the authorization expired or was already used; start again")
        })?;
        if context.provider != provider_id {
            return Err(ApiError::invalid(
                "the callback's provider does not match the authorization",
            ));
        }
        let provider = provider_lookup(&context.tenant_id, &context.provider).await?;
        let client = self
            .resolve_client(&context.tenant_id, provider.as_ref())
            .await?
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "no OAuth client is configured for provider {:?}",
                    context.provider
                ))
            })?;
        let mut payload = self.plugin_payload(provider.id(), &client);
        payload.insert("raw_http_request".into(), Value::String(hex::encode(raw_request)));
        let mut answer = self
            .plugin_oauth(
                &context.tenant_id,
                &context.user_id,
                provider.id(),
                "get_credentials",
                payload,
            )
            .await
            .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "oauth_exchange_failed", e))?;
        let expires_at = plugin_expires_at(&answer);
        let credentials = plugin_credentials(&mut answer)
            .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "oauth_exchange_failed", e))?;
        Ok((
            context.tenant_id,
            context.user_id,
            provider,
            Tokens {
                credentials,
                expires_at,
            },
        ))
    }

    /// Refreshes a plugin provider's credential through the plugin's `oauth/refresh_credentials`.
    async fn plugin_refresh(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
        credentials: &Map<String, Value>,
    ) -> Result<Tokens, String> {
        let client = self
            .resolve_client(tenant_id, provider)
            .await
            .map_err(|e| e.message)?
            .ok_or_else(|| "no OAuth client is configured".to_owned())?;
        let mut payload = self.plugin_payload(provider.id(), &client);
        payload.insert("credentials".into(), Value::Object(credentials.clone()));
        let mut answer = self
            .plugin_oauth(tenant_id, "", provider.id(), "refresh_credentials", payload)
            .await?;
        let expires_at = plugin_expires_at(&answer);
        Ok(Tokens {
            credentials: plugin_credentials(&mut answer)?,
            expires_at,
        })
    }

    /// Consumes a context (single use); `None` when unknown or expired.
    fn take_context(&self, context_id: &str) -> Option<Context> {
        let mut contexts = self.contexts.lock().ok()?;
        let context = contexts.remove(context_id)?;
        (context.created.elapsed() < CONTEXT_TTL).then_some(context)
    }

    async fn token_request(
        &self,
        provider_id: &str,
        params: &Map<String, Value>,
        form: &[(&str, &str)],
    ) -> Result<Map<String, Value>, String> {
        let token_url = param(params, "token_url")
            .ok_or_else(|| format!("the OAuth client of provider {provider_id:?} has no token_url"))?;
        let client = self.http().await.map_err(|e| e.message)?;
        let response = client
            .post(token_url)
            .header("Accept", "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| format!("token endpoint unreachable: {e}"))?;
        let status = response.status();
        let body = client.read_body(response).await.map_err(|e| e.to_string())?;
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = parsed
                .get("error_description")
                .or_else(|| parsed.get("error"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(format!("the token endpoint answered {status}: {detail}"));
        }
        match parsed {
            Value::Object(map) if map.get("access_token").and_then(Value::as_str).is_some() => Ok(map),
            _ => Err("the token endpoint's answer has no access_token".into()),
        }
    }

    fn tokens_from(response: Map<String, Value>, previous: Option<&Map<String, Value>>) -> Tokens {
        let expires_at = match response
            .get("expires_in")
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
        {
            Some(secs) if secs > 0 => now_secs() + secs,
            _ => -1,
        };
        let mut credentials: Map<String, Value> = response
            .into_iter()
            .filter(|(k, v)| v.is_string() && k != "expires_in")
            .collect();
        // A refresh response may omit the refresh token: keep the old one.
        if let Some(previous) = previous
            && !credentials.contains_key("refresh_token")
            && let Some(old) = previous.get("refresh_token")
        {
            credentials.insert("refresh_token".into(), old.clone());
        }
        Tokens {
            credentials,
            expires_at,
        }
    }

    /// Completes an authorization: consumes the context, exchanges the code (with the PKCE verifier) and returns
    /// `(tenant_id, user_id, provider_id, tokens)`.
    pub async fn exchange(
        &self,
        context_id: &str,
        code: &str,
        provider_lookup: impl AsyncFnOnce(&str, &str) -> Result<Arc<dyn ToolProvider>, ApiError>,
    ) -> Result<(String, String, Arc<dyn ToolProvider>, Tokens), ApiError> {
        let context = self.take_context(context_id).ok_or_else(|| {
            ApiError::invalid("Invalid context_id: the authorization expired or was already used; start again")
        })?;
        let provider = provider_lookup(&context.tenant_id, &context.provider).await?;
        let client = self
            .resolve_client(&context.tenant_id, provider.as_ref())
            .await?
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "no OAuth client is configured for provider {:?}",
                    context.provider
                ))
            })?;
        let client_id = required_param(&client.params, "client_id", provider.id())?;
        let redirect_uri = self.redirect_uri(provider.id());
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri.as_str()),
            ("client_id", client_id),
            ("code_verifier", context.code_verifier.as_str()),
        ];
        if let Some(secret) = param(&client.params, "client_secret") {
            form.push(("client_secret", secret));
        }
        let response = self
            .token_request(provider.id(), &client.params, &form)
            .await
            .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "oauth_exchange_failed", e))?;
        Ok((
            context.tenant_id,
            context.user_id,
            provider,
            Self::tokens_from(response, None),
        ))
    }

    /// Refreshes an `oauth2` credential: builtin providers with the refresh-token grant, plugin providers through
    /// the plugin's `oauth/refresh_credentials`.
    pub async fn refresh(
        &self,
        tenant_id: &str,
        provider: &dyn ToolProvider,
        credentials: &Map<String, Value>,
    ) -> Result<Tokens, ToolError> {
        let expired = |reason: String| {
            ToolError::CredentialValidation(format!(
                "the OAuth token of provider {:?} expired and could not be refreshed: {reason}; authorize again",
                provider.id()
            ))
        };
        if is_plugin_provider(provider.id()) {
            return self
                .plugin_refresh(tenant_id, provider, credentials)
                .await
                .map_err(expired);
        }
        let refresh_token =
            param(credentials, "refresh_token").ok_or_else(|| expired("no refresh_token was issued".into()))?;
        let client = self
            .resolve_client(tenant_id, provider)
            .await
            .map_err(|e| expired(e.message))?
            .ok_or_else(|| expired("no OAuth client is configured".into()))?;
        let client_id =
            param(&client.params, "client_id").ok_or_else(|| expired("the client has no client_id".into()))?;
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ];
        if let Some(secret) = param(&client.params, "client_secret") {
            form.push(("client_secret", secret));
        }
        let response = self
            .token_request(provider.id(), &client.params, &form)
            .await
            .map_err(expired)?;
        Ok(Self::tokens_from(response, Some(credentials)))
    }

    /// Whether a credential expiring at `expires_at` (unix seconds, -1 = never) must be refreshed now.
    pub fn needs_refresh(expires_at: i64) -> bool {
        expires_at != -1 && expires_at - REFRESH_MARGIN_SECS < now_secs()
    }
}

/// Credential type helper for the refresh hook.
pub fn is_oauth(kind: CredentialType) -> bool {
    kind == CredentialType::OAuth2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636() {
        // RFC 7636 appendix B
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(code_verifier().len(), 64);
    }

    #[test]
    fn raw_request_keeps_the_callback_but_not_the_console_secrets() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("host", "console.example".parse().unwrap());
        headers.insert("cookie", "context_id=abc".parse().unwrap());
        headers.insert("authorization", "Bearer tp-secret".parse().unwrap());
        let raw = raw_http_request(
            "GET",
            "/console/api/oauth/plugin/a/b/c/tool/callback?code=1",
            &headers,
            b"",
        );
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            "GET /console/api/oauth/plugin/a/b/c/tool/callback?code=1 HTTP/1.1\r\nhost: console.example\r\n\r\n"
        );
    }

    #[test]
    fn plugin_clients_are_keyed_by_plugin_and_short_name() {
        assert_eq!(client_key("acme/oauthy/oauthy"), ("acme/oauthy", "oauthy"));
        assert_eq!(client_key("github"), ("", "github"));
    }

    #[test]
    fn refresh_margin() {
        assert!(!OAuth::needs_refresh(-1));
        assert!(OAuth::needs_refresh(now_secs() + 30));
        assert!(!OAuth::needs_refresh(now_secs() + 3600));
    }
}
