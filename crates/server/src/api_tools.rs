//! API tools (Dify's `ApiToolManageService` and `ApiToolProviderController`): providers a tenant imports from an
//! OpenAPI 3.0/3.1, Swagger 2.0 or OpenAI-plugin spec, stored in `tool_api_providers`, and the catalog source that
//! turns those rows into invocable providers.
//!
//! Identity follows Dify: the console addresses a provider by its **name** (unique per tenant), while the runtime
//! (`POST /v1/tools/invoke` with `provider_type: api`, deleted-tool detection) addresses it by its **row id**, so
//! renaming a provider does not break the apps that use it.
//!
//! Credentials are Dify's auth form (`auth_type` `none` / `api_key_header` / `api_key_query`, header name and
//! prefix, query parameter name); only `api_key_value` is secret: it is encrypted with the tenant's key and masked
//! in every response. An update that sends back the masked value (or `[__HIDDEN__]`) keeps the stored secret.
//!
//! The catalog builds a provider per row with the decrypted credentials baked into its tools (the catalog resolves
//! tenant credentials for builtin and plugin providers only). Built providers are cached in memory and rebuilt when
//! the row changes, so an invocation costs one row read, not a JSON parse and an RSA decryption.
//!
//! Each provider may set its own `connect_timeout` and `read_timeout` (seconds); unset ones fall back to
//! `API_TOOL_DEFAULT_CONNECT_TIMEOUT` / `API_TOOL_DEFAULT_READ_TIMEOUT`. One [`SafeClient`] is kept per distinct
//! pair of timeouts, so providers with the same settings share a connection pool.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use toolplane_core::{
    I18nObject, MessagePayload, ProviderConfig, ProviderConfigOption, ProviderConfigType, ProviderSource, Tool,
    ToolError, ToolInvokeMessage, ToolLabelEnum, ToolProvider, ToolProviderEntity, ToolProviderIdentity,
    ToolProviderType, validate_credentials_format,
};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_openapi::{
    ApiTool, ApiToolBundle, ApiToolTimeouts, LoadOptions, Loaded, ParseOptions, ParsedSpec, SpecError,
    dify_warning_map, fetch_text, load_from_url, load_spec_with, parse_tools,
};
use toolplane_secrets::{HIDDEN_VALUE, decrypt_fields, encrypt_fields, mask_credentials, mask_secret};
use toolplane_store::{ApiProviderFields, ApiProviderRecord, Store};

use crate::error::ApiError;
use crate::tenant_keys::TenantKeys;

/// `tool_type` of API providers in `tool_label_bindings`.
pub const LABEL_TOOL_TYPE: &str = "api";
/// The only secret credential field of API providers.
pub const SECRET_FIELD: &str = "api_key_value";
/// What `test/pre` answers for an empty response body (Dify's text).
pub const EMPTY_TEST_RESULT: &str = "empty response";
/// The largest per-provider `connect_timeout` / `read_timeout` accepted, in seconds.
pub const MAX_TIMEOUT_SECS: f64 = 600.0;

/// How an API provider authenticates (`auth_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    None,
    /// `api_key_header` (and Dify's legacy `api_key`).
    Header,
    /// `api_key_query`.
    Query,
}

impl AuthType {
    /// Parses a stored or submitted `auth_type`; Dify's legacy `api_key` means a header.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "none" => Some(Self::None),
            "api_key_header" | "api_key" => Some(Self::Header),
            "api_key_query" => Some(Self::Query),
            _ => None,
        }
    }

    /// The canonical wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Header => "api_key_header",
            Self::Query => "api_key_query",
        }
    }

    /// The auth type stored in a credential map; unknown or missing means none, as in Dify's `from_db`.
    fn of(credentials: &Map<String, Value>) -> Self {
        credentials
            .get("auth_type")
            .and_then(Value::as_str)
            .and_then(Self::parse)
            .unwrap_or(Self::None)
    }
}

/// The credential form of an API provider with this auth type (Dify's `ApiToolProviderController.from_db`).
pub fn credentials_schema(auth_type: AuthType) -> Vec<ProviderConfig> {
    let option = |value: &str, label: &str| ProviderConfigOption {
        value: value.to_owned(),
        label: I18nObject::new(label),
    };
    let mut auth = ProviderConfig::new("auth_type", ProviderConfigType::Select).required();
    auth.default = Some(json!("none"));
    auth.options = Some(vec![
        option("none", "None"),
        option("api_key_header", "Header"),
        option("api_key_query", "Query Param"),
    ]);
    let mut schema = vec![auth];
    match auth_type {
        AuthType::None => {}
        AuthType::Header => {
            let mut header = ProviderConfig::new("api_key_header", ProviderConfigType::TextInput);
            header.default = Some(json!("Authorization"));
            let mut prefix = ProviderConfig::new("api_key_header_prefix", ProviderConfigType::Select);
            prefix.default = Some(json!("basic"));
            prefix.options = Some(vec![
                option("basic", "Basic"),
                option("bearer", "Bearer"),
                option("custom", "Custom"),
            ]);
            schema.push(header);
            schema.push(ProviderConfig::new(SECRET_FIELD, ProviderConfigType::SecretInput).required());
            schema.push(prefix);
        }
        AuthType::Query => {
            let mut param = ProviderConfig::new("api_key_query_param", ProviderConfigType::TextInput);
            param.default = Some(json!("key"));
            schema.push(param);
            schema.push(ProviderConfig::new(SECRET_FIELD, ProviderConfigType::SecretInput).required());
        }
    }
    schema
}

/// What `add` and `update` store (Dify's add payload).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiProviderInput {
    /// The provider name (`provider` in Dify's payload).
    #[serde(rename = "provider")]
    pub name: String,
    /// Emoji icon `{background, content}` (or any JSON); stored as JSON text.
    #[serde(default)]
    pub icon: Value,
    #[serde(default)]
    pub credentials: Map<String, Value>,
    /// Ignored, as in Dify: the type is recomputed from the schema.
    #[serde(default)]
    pub schema_type: Option<String>,
    pub schema: String,
    #[serde(default)]
    pub privacy_policy: Option<String>,
    #[serde(default)]
    pub custom_disclaimer: Option<String>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Connect timeout of the provider's calls in seconds (a number or numeric string, > 0 and at most
    /// [`MAX_TIMEOUT_SECS`]); null, empty or absent means `API_TOOL_DEFAULT_CONNECT_TIMEOUT`.
    #[serde(default)]
    pub connect_timeout: Option<Value>,
    /// Read timeout of the provider's calls in seconds, with the same rules; the default is
    /// `API_TOOL_DEFAULT_READ_TIMEOUT`.
    #[serde(default)]
    pub read_timeout: Option<Value>,
}

/// A provider built from a row: identity, credentials (decrypted) and tools.
pub struct ApiProvider {
    id: String,
    entity: ToolProviderEntity,
    tools: Vec<Arc<dyn Tool>>,
    credentials: Map<String, Value>,
    labels: Vec<String>,
    icon: Value,
}

impl ApiProvider {
    /// The decrypted credentials.
    pub fn credentials(&self) -> &Map<String, Value> {
        &self.credentials
    }

    /// The credentials with `api_key_value` masked.
    pub fn masked_credentials(&self) -> Map<String, Value> {
        mask_credentials(&self.credentials, &[SECRET_FIELD])
    }

    /// The label names bound to the provider.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }
}

#[async_trait]
impl ToolProvider for ApiProvider {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Api
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn entity(&self) -> &ToolProviderEntity {
        &self.entity
    }

    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        Ok(self.tools.clone())
    }
}

struct Cached {
    fingerprint: u64,
    provider: Arc<ApiProvider>,
}

/// The API-tool service: spec parsing, CRUD with encryption and masking, and provider building for the catalog.
pub struct ApiTools {
    store: Store,
    keys: Arc<TenantKeys>,
    net: NetConfig,
    timeouts: ApiToolTimeouts,
    load: LoadOptions,
    parse: ParseOptions,
    /// One client per distinct (connect, read) timeout pair in use.
    clients: Mutex<HashMap<(Duration, Duration), SafeClient>>,
    cache: RwLock<HashMap<String, Cached>>,
}

impl ApiTools {
    /// A service over the store and tenant keys; outbound requests (tool calls, spec downloads) go through
    /// [`SafeClient`]s built from `net` with the API-tool timeouts (each provider's own, else
    /// `API_TOOL_DEFAULT_CONNECT_TIMEOUT` / `API_TOOL_DEFAULT_READ_TIMEOUT`) and the limits
    /// (`API_TOOL_MAX_SPEC_BYTES`, `API_TOOL_MAX_OPERATIONS`) of the environment.
    pub fn new(store: Store, keys: Arc<TenantKeys>, net: NetConfig) -> Self {
        Self {
            store,
            keys,
            net,
            timeouts: ApiToolTimeouts::from_env(),
            load: LoadOptions::from_env(),
            parse: ParseOptions::from_env(),
            clients: Mutex::new(HashMap::new()),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The client with the default timeouts, for spec downloads and calls of unsaved providers.
    pub async fn client(&self) -> Result<SafeClient, ApiError> {
        self.client_for(self.timeouts)
    }

    /// The client with these timeouts, built on first use and shared by every provider that uses them.
    pub fn client_for(&self, timeouts: ApiToolTimeouts) -> Result<SafeClient, ApiError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&(timeouts.connect, timeouts.read)) {
            return Ok(client.clone());
        }
        let client = SafeClient::new(timeouts.apply(self.net.clone())).map_err(ApiError::internal)?;
        clients.insert((timeouts.connect, timeouts.read), client.clone());
        Ok(client)
    }

    /// The timeouts a stored provider's calls use: its own where set, the defaults otherwise.
    pub fn timeouts_of(&self, row: &ApiProviderRecord) -> ApiToolTimeouts {
        let seconds = |value: Option<f64>| value.and_then(|s| Duration::try_from_secs_f64(s).ok());
        ApiToolTimeouts {
            connect: seconds(row.connect_timeout).unwrap_or(self.timeouts.connect),
            read: seconds(row.read_timeout).unwrap_or(self.timeouts.read),
        }
    }

    /// Parses a spec text into tools. A pasted OpenAI plugin manifest is followed to its `api.url` through the
    /// SSRF-safe client. `request_env` selects the server whose `env` matches (Dify's `X-Request-Env`).
    pub async fn parse_schema(&self, schema: &str, request_env: Option<&str>) -> Result<ParsedSpec, ApiError> {
        let invalid = |e: SpecError| ApiError::invalid(format!("invalid schema: {e}"));
        let spec = match load_spec_with(schema, &self.load).map_err(invalid)? {
            Loaded::Spec(spec) => spec,
            Loaded::FetchSpec { url, .. } => {
                if url::Url::parse(&url).is_err() {
                    return Err(ApiError::invalid(format!(
                        "invalid schema: the OpenAI plugin manifest's api.url {url:?} is not an absolute URL; \
                         import the spec itself or give the manifest by URL"
                    )));
                }
                let client = self.client().await?;
                let mut spec = load_from_url(&client, &url, self.load.max_bytes)
                    .await
                    .map_err(invalid)?;
                spec.schema_type = toolplane_openapi::SchemaType::OpenAiPlugin;
                spec
            }
        };
        let mut options = self.parse.clone();
        options.request_env = request_env.map(str::to_owned).filter(|e| !e.is_empty());
        parse_tools(&spec, &options).map_err(invalid)
    }

    /// `POST …/api/schema`: `{schema_type, parameters_schema, credentials_schema, warning}` plus toolplane's
    /// `warnings` (with codes and locations) and `credentials` (the auth form prefilled from `securitySchemes`).
    /// `credentials_schema` is the real form for the prefilled auth type, not Dify's legacy static list.
    pub async fn preview_schema(&self, schema: &str, request_env: Option<&str>) -> Result<Value, ApiError> {
        let parsed = self.parse_schema(schema, request_env).await?;
        let auth = AuthType::of(&parsed.credentials);
        Ok(json!({
            "schema_type": parsed.schema_type.as_str(),
            "parameters_schema": parsed.tools,
            "credentials_schema": credentials_schema(auth),
            "warning": dify_warning_map(&parsed.warnings),
            "warnings": parsed.warnings,
            "credentials": parsed.credentials,
        }))
    }

    /// Creates a provider (Dify's `create_api_tool_provider`); returns its row.
    pub async fn add(
        &self,
        tenant_id: &str,
        user_id: &str,
        input: ApiProviderInput,
        request_env: Option<&str>,
    ) -> Result<ApiProviderRecord, ApiError> {
        let name = checked_name(&input.name)?;
        let repo = self.store.api_providers();
        if repo.get_by_name(tenant_id, &name).await?.is_some() {
            return Err(ApiError::invalid(format!("provider {name} already exists")));
        }
        let parsed = self.parse_schema(&input.schema, request_env).await?;
        let credentials = checked_credentials(&name, input.credentials.clone())?;
        let fields = self.fields(tenant_id, name, &input, &parsed, &credentials).await?;
        let row = repo.insert(tenant_id, user_id, &fields).await?;
        self.store
            .labels()
            .replace(&row.id, LABEL_TOOL_TYPE, &known_labels(input.labels.as_deref()))
            .await?;
        Ok(row)
    }

    /// Replaces a provider found by its current name (Dify's `update_api_tool_provider`); a masked
    /// `api_key_value` (or `[__HIDDEN__]`) keeps the stored secret.
    pub async fn update(
        &self,
        tenant_id: &str,
        original_name: &str,
        input: ApiProviderInput,
        request_env: Option<&str>,
    ) -> Result<ApiProviderRecord, ApiError> {
        let row = self.row_by_name(tenant_id, original_name.trim()).await?;
        let name = checked_name(&input.name)?;
        let parsed = self.parse_schema(&input.schema, request_env).await?;
        let stored = self.decrypt(tenant_id, &row).await?;
        let submitted = keep_masked_secret(input.credentials.clone(), &stored);
        let credentials = checked_credentials(&name, submitted)?;
        let fields = self.fields(tenant_id, name, &input, &parsed, &credentials).await?;
        let updated = self.store.api_providers().update(tenant_id, &row.id, &fields).await?;
        self.store
            .labels()
            .replace(&row.id, LABEL_TOOL_TYPE, &known_labels(input.labels.as_deref()))
            .await?;
        self.forget(&row.id);
        Ok(updated)
    }

    /// Deletes a provider by name, with its labels.
    pub async fn delete(&self, tenant_id: &str, name: &str) -> Result<(), ApiError> {
        let name = name.trim();
        let row = self
            .store
            .api_providers()
            .get_by_name(tenant_id, name)
            .await?
            .ok_or_else(|| ApiError::invalid(format!("you have not added provider {name}")))?;
        self.store.api_providers().delete(tenant_id, &row.id).await?;
        self.store.labels().delete_for_tool(&row.id, LABEL_TOOL_TYPE).await?;
        self.forget(&row.id);
        Ok(())
    }

    /// `GET …/api/get`: `{schema_type, schema, tools, icon, description, credentials (masked), privacy_policy,
    /// custom_disclaimer, labels}` plus the provider `id` the runtime uses and its effective `connect_timeout` and
    /// `read_timeout` in seconds (the defaults when the provider sets none).
    pub async fn detail(&self, tenant_id: &str, name: &str) -> Result<Value, ApiError> {
        let row = self.row_by_name(tenant_id, name.trim()).await?;
        let provider = self.provider(&row).await?;
        let tools: Vec<ApiToolBundle> = parse_bundles(&row)?;
        let timeouts = self.timeouts_of(&row);
        Ok(json!({
            "id": row.id,
            "schema_type": row.schema_type_str,
            "schema": row.schema,
            "tools": tools,
            "icon": provider.icon,
            "description": row.description,
            "credentials": provider.masked_credentials(),
            "privacy_policy": row.privacy_policy,
            "custom_disclaimer": row.custom_disclaimer,
            "labels": provider.labels,
            "connect_timeout": timeouts.connect.as_secs_f64(),
            "read_timeout": timeouts.read.as_secs_f64(),
        }))
    }

    /// The masked credentials of the tenant's provider with this row id, as `tools/api` shows them; `None` when
    /// there is no such provider. The generic provider listing (`tool-providers?type=api`) uses it.
    pub async fn masked_credentials(
        &self,
        tenant_id: &str,
        provider_id: &str,
    ) -> Result<Option<Map<String, Value>>, ApiError> {
        Ok(self
            .provider_by_id(tenant_id, provider_id)
            .await?
            .map(|p| p.masked_credentials()))
    }

    /// `GET …/api/tools`: the provider's tools as `ToolApiEntity`s.
    pub async fn tools(&self, tenant_id: &str, name: &str) -> Result<Vec<Value>, ApiError> {
        let row = self.row_by_name(tenant_id, name.trim()).await?;
        let provider = self.provider(&row).await?;
        Ok(tool_entities(&provider))
    }

    /// `GET /workspaces/current/tools/api`: every provider of the tenant with its tools and masked credentials.
    pub async fn list_with_tools(&self, tenant_id: &str) -> Result<Vec<Value>, ApiError> {
        let rows = self.store.api_providers().list(tenant_id).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            match self.provider(&row).await {
                Ok(provider) => out.push(provider_entity(&provider)),
                // Dify skips providers whose controller cannot be built; say why in the log.
                Err(e) => {
                    tracing::warn!(provider = %row.id, error = %e, "skipping an API provider that cannot be built")
                }
            }
        }
        Ok(out)
    }

    /// `GET …/api/remote`: downloads a spec through the SSRF-safe client and checks that it loads.
    pub async fn remote_schema(&self, url: &str) -> Result<Value, ApiError> {
        let fail =
            |detail: String| ApiError::invalid(format!("invalid schema, please check the url you provided ({detail})"));
        if url::Url::parse(url).is_err() {
            return Err(fail(format!("{url:?} is not an absolute http(s) URL")));
        }
        let client = self.client().await?;
        let (_, text) = fetch_text(&client, url, self.load.max_bytes)
            .await
            .map_err(|e| fail(e.to_string()))?;
        load_spec_with(&text, &self.load).map_err(|e| fail(e.to_string()))?;
        Ok(json!({"schema": text}))
    }

    /// `POST …/api/test/pre`: runs one operation of a (possibly unsaved) schema with the given credentials and
    /// parameters. Any failure is `{"error": …}`, success `{"result": body}`, as in Dify.
    pub async fn test_preview(&self, tenant_id: &str, request: TestRequest) -> Value {
        match self.run_preview(tenant_id, request).await {
            Ok(body) => json!({"result": body}),
            Err(message) => json!({"error": message}),
        }
    }

    async fn run_preview(&self, tenant_id: &str, request: TestRequest) -> Result<String, String> {
        if let Some(kind) = request.schema_type.as_deref().filter(|k| !k.is_empty())
            && serde_json::from_value::<toolplane_openapi::SchemaType>(json!(kind)).is_err()
        {
            return Err(format!(
                "invalid schema type {kind:?}: expected openapi, swagger, openai_plugin or openai_actions"
            ));
        }
        let parsed = self.parse_schema(&request.schema, None).await.map_err(|e| e.message)?;
        let bundle = parsed
            .tools
            .into_iter()
            .find(|b| b.name() == request.tool_name)
            .ok_or_else(|| format!("invalid tool name {}", request.tool_name))?;
        let mut credentials = request.credentials;
        let mut provider_id = String::new();
        let mut timeouts = self.timeouts;
        if let Some(name) = request
            .provider_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            && let Some(row) = self
                .store
                .api_providers()
                .get_by_name(tenant_id, name)
                .await
                .map_err(|e| e.to_string())?
        {
            let stored = self.decrypt(tenant_id, &row).await.map_err(|e| e.message)?;
            credentials = keep_masked_secret(credentials, &stored);
            timeouts = self.timeouts_of(&row);
            provider_id = row.id;
        }
        let credentials = checked_credentials(&provider_id, credentials).map_err(|e| e.message)?;
        let client = self.client_for(timeouts).map_err(|e| e.message)?;
        let tool = ApiTool::new(bundle, &provider_id, credentials, client);
        let messages = tool.call(&request.parameters).await.map_err(|e| e.to_string())?;
        let body = render_messages(&messages);
        Ok(if body.is_empty() {
            EMPTY_TEST_RESULT.to_owned()
        } else {
            body
        })
    }

    /// The tenant's provider with this row id, built (or taken from the cache).
    pub async fn provider_by_id(&self, tenant_id: &str, id: &str) -> Result<Option<Arc<ApiProvider>>, ApiError> {
        match self.store.api_providers().get(tenant_id, id).await? {
            Some(row) => Ok(Some(self.provider(&row).await?)),
            None => Ok(None),
        }
    }

    /// Every provider of the tenant, built; rows that cannot be built are skipped with a warning, as in Dify.
    pub async fn providers(&self, tenant_id: &str) -> Result<Vec<Arc<ApiProvider>>, ApiError> {
        let rows = self.store.api_providers().list(tenant_id).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            match self.provider(&row).await {
                Ok(provider) => out.push(provider),
                Err(e) => {
                    tracing::warn!(provider = %row.id, error = %e, "skipping an API provider that cannot be built")
                }
            }
        }
        Ok(out)
    }

    async fn row_by_name(&self, tenant_id: &str, name: &str) -> Result<ApiProviderRecord, ApiError> {
        self.store
            .api_providers()
            .get_by_name(tenant_id, name)
            .await?
            .ok_or_else(|| ApiError::invalid(format!("api provider {name} does not exists")))
    }

    async fn fields(
        &self,
        tenant_id: &str,
        name: String,
        input: &ApiProviderInput,
        parsed: &ParsedSpec,
        credentials: &Map<String, Value>,
    ) -> Result<ApiProviderFields, ApiError> {
        let key = self.keys.private_key(tenant_id).await?;
        let encrypted = encrypt_fields(credentials, &[SECRET_FIELD], key.public_key())
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok(ApiProviderFields {
            name,
            icon: input.icon.to_string(),
            schema: input.schema.clone(),
            schema_type_str: parsed.schema_type.as_str().to_owned(),
            description: parsed.description.clone(),
            tools_str: serde_json::to_string(&parsed.tools).map_err(ApiError::internal)?,
            credentials_str: Value::Object(encrypted).to_string(),
            privacy_policy: input.privacy_policy.clone(),
            custom_disclaimer: input.custom_disclaimer.clone().unwrap_or_default(),
            connect_timeout: checked_timeout("connect_timeout", input.connect_timeout.as_ref())?,
            read_timeout: checked_timeout("read_timeout", input.read_timeout.as_ref())?,
        })
    }

    async fn decrypt(&self, tenant_id: &str, row: &ApiProviderRecord) -> Result<Map<String, Value>, ApiError> {
        let stored: Map<String, Value> = serde_json::from_str(&row.credentials_str).map_err(|e| {
            ApiError::internal(format!(
                "api provider {}: credentials are not a JSON object: {e}",
                row.id
            ))
        })?;
        let key = self.keys.private_key(tenant_id).await?;
        decrypt_fields(&stored, &[SECRET_FIELD], &key).map_err(|e| {
            ApiError::invalid(format!(
                "the API key of provider {} cannot be decrypted ({e}); the tenant key may have been rotated: \
                 update the provider with its key again",
                row.name
            ))
        })
    }

    async fn provider(&self, row: &ApiProviderRecord) -> Result<Arc<ApiProvider>, ApiError> {
        let labels: Vec<String> = self
            .store
            .labels()
            .list(&[row.id.as_str()])
            .await?
            .into_iter()
            .map(|b| b.label_name)
            .collect();
        let fingerprint = fingerprint(row, &labels);
        {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = cache.get(&row.id)
                && cached.fingerprint == fingerprint
            {
                return Ok(cached.provider.clone());
            }
        }
        let provider = Arc::new(self.build(row, labels).await?);
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.insert(
            row.id.clone(),
            Cached {
                fingerprint,
                provider: provider.clone(),
            },
        );
        Ok(provider)
    }

    async fn build(&self, row: &ApiProviderRecord, labels: Vec<String>) -> Result<ApiProvider, ApiError> {
        let credentials = self.decrypt(&row.tenant_id, row).await?;
        let bundles = parse_bundles(row)?;
        let client = self.client_for(self.timeouts_of(row))?;
        let author = self
            .store
            .accounts()
            .list(&row.tenant_id)
            .await?
            .into_iter()
            .find(|a| a.id == row.user_id)
            .map(|a| a.name)
            .unwrap_or_default();
        let tools: Vec<Arc<dyn Tool>> = bundles
            .into_iter()
            .map(|bundle| {
                Arc::new(ApiTool::new(bundle, &row.id, credentials.clone(), client.clone()).with_author(&author))
                    as Arc<dyn Tool>
            })
            .collect();
        let icon = serde_json::from_str(&row.icon).unwrap_or_else(|_| Value::String(row.icon.clone()));
        let tags = labels
            .iter()
            .filter_map(|l| ToolLabelEnum::ALL.iter().copied().find(|k| k.as_str() == l))
            .collect();
        let entity = ToolProviderEntity {
            identity: ToolProviderIdentity {
                author,
                name: row.name.clone(),
                description: I18nObject::new(row.description.clone()),
                icon: row.icon.clone(),
                icon_dark: None,
                label: I18nObject::new(row.name.clone()),
                tags,
            },
            plugin_id: None,
            // The auth form is served by the API-tool routes; the catalog does not resolve tenant credentials for
            // API providers (their tools carry them), so the entity declares none.
            credentials_schema: Vec::new(),
            oauth_schema: None,
        };
        Ok(ApiProvider {
            id: row.id.clone(),
            entity,
            tools,
            credentials,
            labels,
            icon,
        })
    }

    fn forget(&self, id: &str) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.remove(id);
    }
}

/// Body of `POST …/api/test/pre`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TestRequest {
    pub tool_name: String,
    #[serde(default)]
    pub provider_name: Option<String>,
    #[serde(default)]
    pub credentials: Map<String, Value>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub schema_type: Option<String>,
    pub schema: String,
}

/// The catalog source of API providers: one provider per `tool_api_providers` row of the tenant, addressed by
/// row id.
pub struct ApiProviderSource {
    service: Arc<ApiTools>,
}

impl ApiProviderSource {
    /// A source over the API-tool service.
    pub fn new(service: Arc<ApiTools>) -> Self {
        Self { service }
    }
}

#[async_trait]
impl ProviderSource for ApiProviderSource {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Api
    }

    async fn list(&self, tenant_id: &str) -> Result<Vec<Arc<dyn ToolProvider>>, ToolError> {
        let providers = self.service.providers(tenant_id).await.map_err(to_tool_error)?;
        Ok(providers.into_iter().map(|p| p as Arc<dyn ToolProvider>).collect())
    }

    async fn get(&self, tenant_id: &str, provider_id: &str) -> Result<Option<Arc<dyn ToolProvider>>, ToolError> {
        let provider = self
            .service
            .provider_by_id(tenant_id, provider_id)
            .await
            .map_err(to_tool_error)?;
        Ok(provider.map(|p| p as Arc<dyn ToolProvider>))
    }
}

fn to_tool_error(error: ApiError) -> ToolError {
    if error.status.is_client_error() {
        ToolError::CredentialValidation(error.message)
    } else {
        ToolError::Internal(error.message)
    }
}

fn checked_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::invalid("provider name is required"));
    }
    if name.chars().count() > 255 {
        return Err(ApiError::invalid("provider name must be at most 255 characters"));
    }
    Ok(name.to_owned())
}

/// Requires `auth_type`, canonicalises the legacy `api_key`, and checks the form for that auth type (defaults
/// filled in, unknown fields refused).
fn checked_credentials(provider: &str, mut credentials: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let Some(raw) = credentials.get("auth_type").and_then(Value::as_str) else {
        return Err(ApiError::invalid("auth_type is required"));
    };
    let auth = AuthType::parse(raw).ok_or_else(|| {
        ApiError::invalid(format!(
            "invalid auth_type {raw:?}: expected none, api_key_header or api_key_query"
        ))
    })?;
    credentials.insert("auth_type".into(), json!(auth.as_str()));
    // Fields of other auth types are dropped rather than refused: the console keeps them around when the user
    // switches the type back and forth.
    let schema = credentials_schema(auth);
    credentials.retain(|k, _| schema.iter().any(|c| &c.name == k));
    Ok(validate_credentials_format(provider, &schema, credentials)?)
}

/// A submitted `api_key_value` equal to the stored one's mask (Dify's rule) or to `[__HIDDEN__]` means "keep it".
fn keep_masked_secret(mut submitted: Map<String, Value>, stored: &Map<String, Value>) -> Map<String, Value> {
    let Some(original) = stored.get(SECRET_FIELD).and_then(Value::as_str) else {
        return submitted;
    };
    if let Some(value) = submitted.get_mut(SECRET_FIELD)
        && let Some(text) = value.as_str()
        && (text == HIDDEN_VALUE || (!original.is_empty() && text == mask_secret(original)))
    {
        *value = Value::String(original.to_owned());
    }
    submitted
}

/// A submitted timeout in seconds: a number or numeric string, > 0 and at most [`MAX_TIMEOUT_SECS`]; null or an
/// empty string means "use the default" (`None`).
fn checked_timeout(field: &str, value: Option<&Value>) -> Result<Option<f64>, ApiError> {
    let seconds = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    let Some(seconds) = seconds.filter(|s| s.is_finite()) else {
        return Err(ApiError::invalid(format!(
            "{field} must be a number of seconds, got {}",
            value.map(Value::to_string).unwrap_or_default()
        )));
    };
    if seconds <= 0.0 || seconds > MAX_TIMEOUT_SECS {
        return Err(ApiError::invalid(format!(
            "{field} must be greater than 0 and at most {MAX_TIMEOUT_SECS} seconds, got {seconds}"
        )));
    }
    Ok(Some(seconds))
}

fn known_labels(labels: Option<&[String]>) -> Vec<String> {
    labels
        .unwrap_or_default()
        .iter()
        .filter(|l| ToolLabelEnum::ALL.iter().any(|k| k.as_str() == l.as_str()))
        .cloned()
        .collect()
}

fn parse_bundles(row: &ApiProviderRecord) -> Result<Vec<ApiToolBundle>, ApiError> {
    serde_json::from_str(&row.tools_str)
        .map_err(|e| ApiError::internal(format!("api provider {}: stored tools are unreadable: {e}", row.id)))
}

fn fingerprint(row: &ApiProviderRecord, labels: &[String]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        row.updated_at,
        &row.name,
        &row.icon,
        &row.description,
        &row.tools_str,
        &row.credentials_str,
        &row.user_id,
        row.connect_timeout.map(f64::to_bits),
        row.read_timeout.map(f64::to_bits),
        labels,
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// The body text Dify's `test/pre` returns: JSON re-serialised, text as is.
fn render_messages(messages: &[ToolInvokeMessage]) -> String {
    let parts: Vec<String> = messages
        .iter()
        .map(|m| match &m.payload {
            MessagePayload::Text(t) => t.text.clone(),
            MessagePayload::Json(j) => j.json_object.to_string(),
            MessagePayload::Blob(b) => format!("binary response of {} bytes", b.blob.len()),
            _ => serde_json::to_string(m).unwrap_or_default(),
        })
        .collect();
    parts.join("\n")
}

/// A provider in Dify's `ToolProviderApiEntity.to_dict()` shape for API providers.
pub fn provider_entity(provider: &ApiProvider) -> Value {
    let identity = &provider.entity.identity;
    json!({
        "id": provider.id,
        "author": identity.author,
        "name": identity.name,
        "plugin_id": Value::Null,
        "plugin_unique_identifier": Value::Null,
        "description": identity.description,
        "icon": provider.icon,
        "icon_dark": Value::Null,
        "label": identity.label,
        "type": ToolProviderType::Api,
        "team_credentials": provider.masked_credentials(),
        "is_team_authorization": true,
        "allow_delete": true,
        "tools": tool_entities(provider),
        "labels": provider.labels,
    })
}

/// The provider's tools in Dify's `ToolApiEntity` shape.
pub fn tool_entities(provider: &ApiProvider) -> Vec<Value> {
    provider
        .tools
        .iter()
        .map(|tool| crate::routes::console::tool_entity(tool.as_ref(), &provider.labels))
        .collect()
}
