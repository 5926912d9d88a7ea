//! Plugin endpoints (reference §2.4 "Endpoint management" and §2.6): the `endpoints` rows a tenant sets up for an
//! installed plugin that declares an endpoint group, and the public entry point `/e/{hook_id}/{*path}` that turns an
//! HTTP request into the plugin's `endpoint`/`invoke_endpoint` action.
//!
//! # Settings at rest
//!
//! The original asks Dify's inner API to encrypt and decrypt settings (`/inner/api/invoke/encrypt`, namespace
//! `endpoint`), so it cannot run without Dify. toolplane's daemon encrypts them itself: every `secret-input`
//! setting is stored as Dify's `HYBRID:` ciphertext under a per-tenant RSA key pair that the daemon keeps in its own
//! blob store (`endpoint_keys/{tenant_id}/private.pem`, created on first use); other settings are stored as given.
//! Listings decrypt and then mask secrets like Dify (`sk*******12`); an update that sends `[__HIDDEN__]` or the
//! masked value back keeps the stored secret.
//!
//! # The entry point
//!
//! No API key: the 16-letter hook id is the secret. An unknown or disabled hook answers 404. The request (body at
//! most [`MAX_ENDPOINT_BODY`], else 413) is re-serialised as a raw HTTP/1.1 request for the plugin with the
//! IP-trace headers removed and `Dify-Hook-Id` / `Dify-Hook-Url` added, hex-encoded into `raw_http_request` with
//! the decrypted settings. The plugin's first chunk(s) carry `status` and `headers`; `result` chunks are
//! hex-decoded body bytes, streamed as they come. `PLUGIN_MAX_EXECUTION_TIMEOUT` bounds the whole answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Map, Value, json};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use toolplane_plugin::PluginUniqueIdentifier;
use toolplane_runtime::{InvokeRequest, Session, SessionError};
use toolplane_secrets::{HIDDEN_VALUE, PrivateKey, decrypt_fields, encrypt_fields, mask_credentials, merge_hidden};

use crate::db::{new_id, now_ms};
use crate::error::DaemonError;
use crate::service::{DaemonState, rfc3339};

/// The largest request body `/e/{hook_id}/…` accepts (the original reads at most 10 MiB).
pub const MAX_ENDPOINT_BODY: usize = 10 * 1024 * 1024;
/// Length of a hook id (lowercase letters), as the original's `RandomLowercaseString(16)`.
pub const HOOK_ID_LEN: usize = 16;
/// `expired_at` of every endpoint: 2050-01-01T00:00:00Z, as the original sets it.
const EXPIRED_AT_MS: i64 = 2_524_608_000_000;
/// Folder of the per-tenant key pairs inside the daemon's blob store.
const KEYS_FOLDER: &str = "endpoint_keys";
/// Headers that reveal the caller's address; the plugin never sees them (as the original).
const IP_TRACE_HEADERS: [&str; 6] = [
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded",
    "x-original-forwarded-for",
    "x-original-url",
    "x-original-host",
];
/// Hop-by-hop and framing headers of the plugin's answer that the daemon's own HTTP layer decides.
const RESPONSE_SKIP_HEADERS: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// Per-tenant private keys for endpoint settings, loaded from (or created in) the blob store and cached.
#[derive(Default)]
pub(crate) struct EndpointKeys {
    cache: tokio::sync::Mutex<HashMap<String, Arc<PrivateKey>>>,
}

impl EndpointKeys {
    /// The tenant's key, creating and storing a pair on first use. The lock is held across the load so two
    /// requests never create two different pairs for one tenant.
    async fn get(&self, state: &DaemonState, tenant_id: &str) -> Result<Arc<PrivateKey>, DaemonError> {
        if tenant_id.is_empty() || tenant_id.contains(['/', '\\']) || tenant_id.contains("..") {
            return Err(DaemonError::BadRequest(format!(
                "invalid tenant id {tenant_id:?}: it must not be empty or contain '/', '\\\\' or '..'"
            )));
        }
        let mut cache = self.cache.lock().await;
        if let Some(key) = cache.get(tenant_id) {
            return Ok(Arc::clone(key));
        }
        let path = format!("{KEYS_FOLDER}/{tenant_id}/private.pem");
        let key = match state.blobs().get(&path).await {
            Ok(bytes) => {
                let pem = String::from_utf8(bytes.to_vec())
                    .map_err(|_| DaemonError::Internal(format!("{path} is not UTF-8 PEM")))?;
                PrivateKey::from_pem(&pem)
                    .map_err(|e| DaemonError::Internal(format!("the endpoint key {path} is unusable: {e}")))?
            }
            Err(e) if e.is_not_found() => {
                // RSA key generation takes tens of milliseconds of CPU: keep it off the async workers.
                let key = tokio::task::spawn_blocking(PrivateKey::generate)
                    .await
                    .map_err(|e| DaemonError::Internal(format!("key generation stopped: {e}")))?
                    .map_err(|e| DaemonError::Internal(format!("key generation failed: {e}")))?;
                let pem = key
                    .to_pkcs1_pem()
                    .map_err(|e| DaemonError::Internal(format!("encoding the endpoint key failed: {e}")))?;
                state.blobs().put(&path, pem.into_bytes()).await?;
                key
            }
            Err(e) => return Err(e.into()),
        };
        let key = Arc::new(key);
        cache.insert(tenant_id.to_owned(), Arc::clone(&key));
        Ok(key)
    }
}

/// One row of `endpoints`.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRow {
    /// UUIDv7.
    pub id: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// The name the console gave it.
    pub name: String,
    /// [`HOOK_ID_LEN`] lowercase letters: the secret part of `/e/{hook_id}/…`.
    pub hook_id: String,
    /// The tenant that set it up.
    pub tenant_id: String,
    /// The user that set it up.
    pub user_id: String,
    /// `author/name` of the plugin; the tenant's installed version serves it.
    pub plugin_id: String,
    /// Unix milliseconds (always 2050-01-01, as the original).
    pub expired_at: i64,
    /// Disabled endpoints answer 404.
    pub enabled: bool,
    /// As stored: secret values are ciphertext.
    pub settings: Map<String, Value>,
}

const ENDPOINT_COLUMNS: &str = "id, created_at, updated_at, name, hook_id, tenant_id, user_id, plugin_id, expired_at, \
     CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT) AS enabled_flag, settings";

fn endpoint_from_row(row: &AnyRow) -> Result<EndpointRow, DaemonError> {
    let settings: String = row.try_get("settings")?;
    Ok(EndpointRow {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        name: row.try_get("name")?,
        hook_id: row.try_get("hook_id")?,
        tenant_id: row.try_get("tenant_id")?,
        user_id: row.try_get("user_id")?,
        plugin_id: row.try_get("plugin_id")?,
        expired_at: row.try_get("expired_at")?,
        enabled: row.try_get::<i64, _>("enabled_flag")? != 0,
        settings: serde_json::from_str(&settings)?,
    })
}

/// A new hook id: [`HOOK_ID_LEN`] lowercase letters from the thread's CSPRNG.
pub fn new_hook_id() -> String {
    let mut rng = rand::rng();
    (0..HOOK_ID_LEN)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

/// The endpoint group of a plugin declaration and its settings schema.
struct EndpointDeclaration {
    group: Value,
    schema: Vec<Value>,
}

impl EndpointDeclaration {
    fn of(declaration: &Value) -> Option<Self> {
        let group = declaration.get("endpoint").filter(|g| g.is_object())?.clone();
        let schema = group
            .get("settings")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Some(Self { group, schema })
    }

    fn secret_fields(&self) -> Vec<String> {
        self.schema
            .iter()
            .filter(|f| f.get("type").and_then(Value::as_str) == Some("secret-input"))
            .filter_map(|f| f.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }
}

/// The declaration shape the original lists for an endpoint whose plugin is gone.
fn empty_declaration() -> Value {
    json!({"settings": [], "endpoints": [], "endpoint_files": []})
}

/// Checks settings against the endpoint group's `settings` schema: unknown names, missing required values (all of
/// them named at once), string/boolean types and `select` options; absent optional settings get their default.
pub fn validate_settings(schema: &[Value], mut settings: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let names: Vec<&str> = schema
        .iter()
        .filter_map(|f| f.get("name").and_then(Value::as_str))
        .collect();
    if let Some(unknown) = settings.keys().find(|k| !names.contains(&k.as_str())) {
        return Err(format!(
            "unknown setting {unknown:?}; this plugin's endpoint settings are: {}",
            if names.is_empty() {
                "(none)".to_owned()
            } else {
                names.join(", ")
            }
        ));
    }
    let mut missing = Vec::new();
    for field in schema {
        let Some(name) = field.get("name").and_then(Value::as_str) else {
            continue;
        };
        let kind = field.get("type").and_then(Value::as_str).unwrap_or_default();
        let required = field.get("required").and_then(Value::as_bool).unwrap_or(false);
        let value = settings.get(name).filter(|v| !v.is_null() && v.as_str() != Some(""));
        let Some(value) = value else {
            if required {
                missing.push(name.to_owned());
            } else if let Some(default) = field.get("default").filter(|d| !d.is_null()) {
                settings.insert(name.to_owned(), default.clone());
            }
            continue;
        };
        match kind {
            "secret-input" | "text-input" if !value.is_string() => {
                return Err(format!("setting {name:?} must be a string"));
            }
            "boolean" if !value.is_boolean() => return Err(format!("setting {name:?} must be true or false")),
            "select" => {
                let options: Vec<&str> = field
                    .get("options")
                    .and_then(Value::as_array)
                    .map(|o| {
                        o.iter()
                            .filter_map(|o| o.get("value").and_then(Value::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
                match value.as_str() {
                    Some(v) if options.contains(&v) => {}
                    _ => {
                        return Err(format!(
                            "setting {name:?} must be one of: {} (got {value})",
                            options.join(", ")
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "required setting{} missing: {}",
            if missing.len() == 1 { " is" } else { "s are" },
            missing.join(", ")
        ));
    }
    Ok(settings)
}

impl DaemonState {
    /// The endpoint group of the tenant's installed `plugin_id` and the installed unique identifier.
    async fn endpoint_declaration(
        &self,
        tenant_id: &str,
        plugin_id: &str,
    ) -> Result<Option<(String, EndpointDeclaration)>, DaemonError> {
        let Some(uid) = self.db().installed_unique_identifier(tenant_id, plugin_id).await? else {
            return Ok(None);
        };
        let declaration = self.db().declaration(&uid).await?.unwrap_or(Value::Null);
        Ok(EndpointDeclaration::of(&declaration).map(|d| (uid, d)))
    }

    async fn endpoint_row(&self, tenant_id: &str, endpoint_id: &str) -> Result<EndpointRow, DaemonError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = $1 AND tenant_id = $2"
        )))
        .bind(endpoint_id)
        .bind(tenant_id)
        .fetch_optional(self.db().pool())
        .await?;
        match row {
            Some(row) => endpoint_from_row(&row),
            None => Err(DaemonError::NotFound(format!(
                "endpoint {endpoint_id} not found in this workspace"
            ))),
        }
    }

    /// The endpoint a hook id names, if any.
    pub async fn endpoint_by_hook(&self, hook_id: &str) -> Result<Option<EndpointRow>, DaemonError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE hook_id = $1"
        )))
        .bind(hook_id)
        .fetch_optional(self.db().pool())
        .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    /// `endpoint/setup`: validates the settings against the plugin's endpoint settings schema, encrypts the
    /// secret ones and records an enabled endpoint with a fresh hook id.
    pub async fn setup_endpoint(
        &self,
        tenant_id: &str,
        user_id: &str,
        plugin_unique_identifier: &str,
        name: &str,
        settings: Map<String, Value>,
    ) -> Result<EndpointRow, DaemonError> {
        let uid = PluginUniqueIdentifier::parse(plugin_unique_identifier)?;
        let installed = self
            .db()
            .installed_unique_identifier(tenant_id, uid.plugin_id())
            .await?;
        if installed.as_deref() != Some(uid.as_str()) {
            return Err(DaemonError::PluginNotFound(format!(
                "plugin {uid} is not installed in this workspace; install it before setting up an endpoint"
            )));
        }
        let declaration = self.db().declaration(uid.as_str()).await?.unwrap_or(Value::Null);
        let allowed = declaration
            .pointer("/resource/permission/endpoint/enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !allowed {
            return Err(DaemonError::PermissionDenied(
                "permission denied, you need to enable endpoint access in plugin manifest \
                 (resource.permission.endpoint.enabled: true)"
                    .into(),
            ));
        }
        let group = EndpointDeclaration::of(&declaration)
            .ok_or_else(|| DaemonError::BadRequest(format!("plugin {uid} does not have an endpoint")))?;
        let settings = validate_settings(&group.schema, settings)
            .map_err(|e| DaemonError::BadRequest(format!("failed to validate settings: {e}")))?;
        let encrypted = self.encrypt_settings(tenant_id, &group, &settings).await?;

        let now = now_ms();
        let row = EndpointRow {
            id: new_id(),
            created_at: now,
            updated_at: now,
            name: name.to_owned(),
            hook_id: new_hook_id(),
            tenant_id: tenant_id.to_owned(),
            user_id: user_id.to_owned(),
            plugin_id: uid.plugin_id().to_owned(),
            expired_at: EXPIRED_AT_MS,
            enabled: true,
            settings: encrypted,
        };
        let mut tx = self.db().begin_write().await?;
        sqlx::query(
            "INSERT INTO endpoints (id, created_at, updated_at, name, hook_id, tenant_id, user_id, plugin_id, \
             expired_at, enabled, settings) VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, TRUE, $9)",
        )
        .bind(&row.id)
        .bind(now)
        .bind(&row.name)
        .bind(&row.hook_id)
        .bind(&row.tenant_id)
        .bind(&row.user_id)
        .bind(&row.plugin_id)
        .bind(row.expired_at)
        .bind(serde_json::to_string(&row.settings)?)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE plugin_installations SET endpoints_setups = endpoints_setups + 1, \
             endpoints_active = endpoints_active + 1 WHERE tenant_id = $1 AND plugin_id = $2",
        )
        .bind(tenant_id)
        .bind(uid.plugin_id())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// `endpoint/update`: renames the endpoint and replaces its settings; a secret sent back as `[__HIDDEN__]` or
    /// as its masked form keeps the stored value.
    pub async fn update_endpoint(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        name: &str,
        settings: Map<String, Value>,
    ) -> Result<(), DaemonError> {
        let endpoint = self.endpoint_row(tenant_id, endpoint_id).await?;
        let (_, group) = self
            .endpoint_declaration(tenant_id, &endpoint.plugin_id)
            .await?
            .ok_or_else(|| {
                DaemonError::NotFound(format!(
                    "plugin {} of endpoint {endpoint_id} is not installed or has no endpoint",
                    endpoint.plugin_id
                ))
            })?;
        let secrets = group.secret_fields();
        let stored = self.decrypt_settings(tenant_id, &group, &endpoint.settings).await?;
        let masked = mask_credentials(&stored, &secrets);
        let mut settings = settings;
        for field in &secrets {
            // The console may echo the masked value it was shown instead of `[__HIDDEN__]`.
            if settings.get(field).is_some() && settings.get(field) == masked.get(field) {
                settings.insert(field.clone(), Value::String(HIDDEN_VALUE.into()));
            }
        }
        let settings = merge_hidden(settings, &stored, &secrets);
        let settings = validate_settings(&group.schema, settings)
            .map_err(|e| DaemonError::BadRequest(format!("failed to validate settings: {e}")))?;
        let encrypted = self.encrypt_settings(tenant_id, &group, &settings).await?;
        sqlx::query("UPDATE endpoints SET name = $1, settings = $2, updated_at = $3 WHERE id = $4 AND tenant_id = $5")
            .bind(name)
            .bind(serde_json::to_string(&encrypted)?)
            .bind(now_ms())
            .bind(endpoint_id)
            .bind(tenant_id)
            .execute(self.db().pool())
            .await?;
        Ok(())
    }

    /// `endpoint/remove`.
    pub async fn remove_endpoint(&self, tenant_id: &str, endpoint_id: &str) -> Result<(), DaemonError> {
        let endpoint = self.endpoint_row(tenant_id, endpoint_id).await?;
        let mut tx = self.db().begin_write().await?;
        let deleted = sqlx::query("DELETE FROM endpoints WHERE id = $1 AND tenant_id = $2")
            .bind(endpoint_id)
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() > 0 {
            let active = i64::from(endpoint.enabled);
            sqlx::query(
                "UPDATE plugin_installations SET endpoints_setups = endpoints_setups - 1, \
                 endpoints_active = endpoints_active - $1 WHERE tenant_id = $2 AND plugin_id = $3",
            )
            .bind(active)
            .bind(tenant_id)
            .bind(&endpoint.plugin_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// `endpoint/enable` and `endpoint/disable` (idempotent; `endpoints_active` follows).
    pub async fn set_endpoint_enabled(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        enabled: bool,
    ) -> Result<(), DaemonError> {
        let endpoint = self.endpoint_row(tenant_id, endpoint_id).await?;
        let (set, was, delta) = if enabled {
            ("TRUE", "FALSE", 1i64)
        } else {
            ("FALSE", "TRUE", -1i64)
        };
        let mut tx = self.db().begin_write().await?;
        let changed = sqlx::query(AssertSqlSafe(format!(
            "UPDATE endpoints SET enabled = {set}, updated_at = $1 WHERE id = $2 AND tenant_id = $3 AND enabled = {was}"
        )))
        .bind(now_ms())
        .bind(endpoint_id)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() > 0 {
            sqlx::query(
                "UPDATE plugin_installations SET endpoints_active = endpoints_active + $1 \
                 WHERE tenant_id = $2 AND plugin_id = $3",
            )
            .bind(delta)
            .bind(tenant_id)
            .bind(&endpoint.plugin_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// `endpoint/list` (every plugin) and `endpoint/list/plugin` (one plugin id): newest first, settings decrypted
    /// then masked, with the plugin's endpoint declaration.
    pub async fn list_endpoints(
        &self,
        tenant_id: &str,
        plugin_id: Option<&str>,
        page: i64,
        page_size: i64,
    ) -> Result<Value, DaemonError> {
        let filter = if plugin_id.is_some() { " AND plugin_id = $4" } else { "" };
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE tenant_id = $1{filter} \
             ORDER BY created_at DESC, id ASC LIMIT $2 OFFSET $3"
        )))
        .bind(tenant_id)
        .bind(page_size)
        .bind((page - 1) * page_size);
        if let Some(plugin_id) = plugin_id {
            query = query.bind(plugin_id);
        }
        let rows = query.fetch_all(self.db().pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let endpoint = endpoint_from_row(row)?;
            let (settings, declaration) = match self.endpoint_declaration(tenant_id, &endpoint.plugin_id).await? {
                Some((_, group)) => {
                    let plain = self.decrypt_settings(tenant_id, &group, &endpoint.settings).await?;
                    let masked = mask_credentials(&plain, &group.secret_fields());
                    (Value::Object(masked), group.group)
                }
                // The plugin was uninstalled (its endpoints normally go with it): nothing to decrypt with.
                None => (json!({}), empty_declaration()),
            };
            out.push(self.endpoint_json(&endpoint, settings, declaration));
        }
        Ok(Value::Array(out))
    }

    fn endpoint_json(&self, endpoint: &EndpointRow, settings: Value, declaration: Value) -> Value {
        let mut item = json!({
            "id": endpoint.id,
            "created_at": rfc3339(endpoint.created_at),
            "updated_at": rfc3339(endpoint.updated_at),
            "name": endpoint.name,
            "hook_id": endpoint.hook_id,
            "tenant_id": endpoint.tenant_id,
            "user_id": endpoint.user_id,
            "plugin_id": endpoint.plugin_id,
            "expired_at": rfc3339(endpoint.expired_at),
            "enabled": endpoint.enabled,
            "settings": settings,
            "declaration": declaration,
        });
        if let Some(template) = &self.config().endpoint_url_template {
            item["url"] = Value::String(template.replace("{hook_id}", &endpoint.hook_id));
        }
        item
    }

    async fn encrypt_settings(
        &self,
        tenant_id: &str,
        group: &EndpointDeclaration,
        settings: &Map<String, Value>,
    ) -> Result<Map<String, Value>, DaemonError> {
        let secrets = group.secret_fields();
        if secrets.iter().all(|s| !settings.contains_key(s)) {
            return Ok(settings.clone());
        }
        let key = self.endpoint_keys().get(self, tenant_id).await?;
        encrypt_fields(settings, &secrets, key.public_key())
            .map_err(|e| DaemonError::BadRequest(format!("failed to encrypt settings: {e}")))
    }

    async fn decrypt_settings(
        &self,
        tenant_id: &str,
        group: &EndpointDeclaration,
        settings: &Map<String, Value>,
    ) -> Result<Map<String, Value>, DaemonError> {
        let secrets = group.secret_fields();
        if secrets.iter().all(|s| !settings.contains_key(s)) {
            return Ok(settings.clone());
        }
        let key = self.endpoint_keys().get(self, tenant_id).await?;
        decrypt_fields(settings, &secrets, &key)
            .map_err(|e| DaemonError::Internal(format!("failed to decrypt endpoint settings: {e}")))
    }
}

// ---- the entry point ----------------------------------------------------------------------------------------------

fn envelope(status: StatusCode, code: i64, error_type: &str, message: &str) -> Response {
    let inner = json!({"message": message, "error_type": error_type, "args": null});
    (
        status,
        axum::Json(json!({"code": code, "message": inner.to_string(), "data": null})),
    )
        .into_response()
}

fn not_found() -> Response {
    envelope(
        StatusCode::NOT_FOUND,
        -404,
        "PluginDaemonNotFoundError",
        "endpoint not found",
    )
}

fn internal(message: &str) -> Response {
    envelope(
        StatusCode::INTERNAL_SERVER_ERROR,
        -500,
        "PluginDaemonInternalServerError",
        message,
    )
}

/// The request as raw HTTP/1.1 bytes for the plugin (the SDK parses them with h11): request line with the path
/// below the hook, `Host`, the caller's headers minus IP traces, framing headers and names with `_` (which the
/// SDK's parser rejects), `Dify-Hook-Id` and `Dify-Hook-Url`, an exact `Content-Length`, then the body.
pub fn raw_http_request(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    hook_id: &str,
    scheme: &str,
) -> Vec<u8> {
    let host = headers
        .get("x-original-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost")
        .to_owned();
    let path_only = path_and_query.split('?').next().unwrap_or("/");
    let hook_url = headers
        .get("dify-hook-url")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{scheme}://{host}/e/{hook_id}{path_only}"));
    let mut out = Vec::with_capacity(body.len() + 1024);
    out.extend_from_slice(format!("{method} {path_and_query} HTTP/1.1\r\nHost: {host}\r\n").as_bytes());
    for (name, value) in headers {
        let lower = name.as_str();
        if lower == "host"
            || lower == "content-length"
            || lower == "transfer-encoding"
            || lower == "dify-hook-id"
            || lower == "dify-hook-url"
            || lower.contains('_')
            || IP_TRACE_HEADERS.contains(&lower)
        {
            continue;
        }
        out.extend_from_slice(canonical_header_name(lower).as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Dify-Hook-Id: {hook_id}\r\nDify-Hook-Url: {hook_url}\r\n").as_bytes());
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `content-type` → `Content-Type`, as Go writes header names (plugins read them case-insensitively anyway).
fn canonical_header_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `/e/{hook_id}` and `/e/{hook_id}/{*path}`.
pub(crate) async fn invoke_hook(
    State(state): State<DaemonState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let Some(hook_id) = params.get("hook_id").cloned() else {
        return not_found();
    };
    let (parts, body) = request.into_parts();
    if parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_ENDPOINT_BODY)
    {
        return too_large();
    }
    // Unknown and disabled hooks are answered before any of the body is read.
    let endpoint = match state.endpoint_by_hook(&hook_id).await {
        Ok(Some(e)) if e.enabled => e,
        Ok(_) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "looking up an endpoint hook failed");
            return internal(&e.to_string());
        }
    };
    let body = match axum::body::to_bytes(body, MAX_ENDPOINT_BODY).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let Some(runtime) = state.runtime().cloned() else {
        return internal("this daemon runs without the plugin runtime, so plugin endpoints cannot run");
    };
    let (uid, group) = match state
        .endpoint_declaration(&endpoint.tenant_id, &endpoint.plugin_id)
        .await
    {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return internal(&e.to_string()),
    };
    let settings = match state
        .decrypt_settings(&endpoint.tenant_id, &group, &endpoint.settings)
        .await
    {
        Ok(s) => s,
        Err(e) => return internal(&e.to_string()),
    };

    // The path below the hook, raw (still percent-encoded), with the query.
    let full = parts.uri.path();
    let marker = format!("/e/{hook_id}");
    let below = full
        .find(&marker)
        .map(|at| &full[at + marker.len()..])
        .unwrap_or_default();
    let mut path_and_query = if below.is_empty() {
        "/".to_owned()
    } else {
        below.to_owned()
    };
    if let Some(query) = parts.uri.query() {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let scheme = match parts.headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    let raw = raw_http_request(
        parts.method.as_str(),
        &path_and_query,
        &parts.headers,
        &body,
        &endpoint.hook_id,
        scheme,
    );
    let mut payload = Map::new();
    payload.insert("raw_http_request".into(), Value::String(hex::encode(raw)));
    payload.insert("settings".into(), Value::Object(settings));
    let request = InvokeRequest {
        tenant_id: endpoint.tenant_id.clone(),
        user_id: String::new(),
        access_type: "endpoint".into(),
        action: "invoke_endpoint".into(),
        payload,
        endpoint_id: Some(endpoint.id.clone()),
        ..InvokeRequest::default()
    };
    let session = match state.session_for(&runtime, &uid, &request).await {
        Ok(s) => s,
        Err(e) => return internal(&format!("starting the endpoint plugin {uid} failed: {e}")),
    };
    respond(
        session,
        runtime.config().max_execution_timeout,
        parts.method == axum::http::Method::HEAD,
    )
    .await
}

fn too_large() -> Response {
    envelope(
        StatusCode::PAYLOAD_TOO_LARGE,
        -400,
        "PluginDaemonBadRequestError",
        &format!("the request body is larger than the endpoint limit of {MAX_ENDPOINT_BODY} bytes"),
    )
}

fn plugin_failure(error: SessionError) -> String {
    match error {
        SessionError::Plugin(e) => format!("the endpoint plugin failed: {}: {}", e.error_type, e.message),
        SessionError::Runtime(message) | SessionError::ConnectionClosed(message) => {
            format!("the endpoint plugin failed: {message}")
        }
    }
}

/// What one `EndpointResponseChunk` carries.
#[derive(Default)]
struct Chunk {
    status: Option<u16>,
    headers: Option<Map<String, Value>>,
    body: Option<Vec<u8>>,
}

fn parse_chunk(value: &Value) -> Result<Chunk, String> {
    let mut chunk = Chunk::default();
    if let Some(status) = value.get("status").filter(|s| !s.is_null()) {
        let code = status
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (100..=999).contains(s))
            .ok_or_else(|| format!("the endpoint plugin answered an invalid status {status}"))?;
        chunk.status = Some(code);
    }
    if let Some(headers) = value.get("headers").and_then(Value::as_object) {
        chunk.headers = Some(headers.clone());
    }
    if let Some(result) = value.get("result").and_then(Value::as_str) {
        let bytes =
            hex::decode(result).map_err(|e| format!("the endpoint plugin answered a body that is not hex: {e}"))?;
        chunk.body = Some(bytes);
    }
    Ok(chunk)
}

/// Reads the status and headers, then answers: in full when the plugin already finished (so `Content-Length` is
/// exact), streamed otherwise.
async fn respond(mut session: Session, timeout: Duration, head_request: bool) -> Response {
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || {
        internal(&format!(
            "killed by timeout: the endpoint plugin did not answer within {} s (PLUGIN_MAX_EXECUTION_TIMEOUT)",
            timeout.as_secs()
        ))
    };
    let mut status = None;
    let mut headers = Map::new();
    let mut first_body: Vec<u8> = Vec::new();
    let mut had_body = false;
    while status.is_none() {
        let item = match tokio::time::timeout_at(deadline, session.next()).await {
            Err(_) => return timed_out(),
            Ok(None) => return internal("the endpoint plugin ended its answer without an HTTP status"),
            Ok(Some(Err(e))) => return internal(&plugin_failure(e)),
            Ok(Some(Ok(value))) => value,
        };
        let chunk = match parse_chunk(&item) {
            Ok(c) => c,
            Err(e) => return internal(&e),
        };
        status = chunk.status.or(status);
        if let Some(h) = chunk.headers {
            headers.extend(h);
        }
        if let Some(body) = chunk.body {
            had_body = true;
            first_body.extend_from_slice(&body);
        }
    }
    let Some(status) = status.and_then(|s| StatusCode::from_u16(s).ok()) else {
        return internal("the endpoint plugin answered an invalid HTTP status");
    };
    let mut response_headers = HeaderMap::new();
    for (name, value) in &headers {
        let lower = name.to_ascii_lowercase();
        if RESPONSE_SKIP_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(lower.as_bytes()), HeaderValue::from_str(&text)) {
            response_headers.append(name, value);
        }
    }

    // A plugin that returned a whole body (not a generator) sends one chunk and ends: answer it in full.
    let mut pending: Option<Bytes> = None;
    if had_body || head_request {
        match tokio::time::timeout_at(deadline, session.next()).await {
            Err(_) => return timed_out(),
            Ok(None) => {
                let mut response = (status, first_body).into_response();
                response.headers_mut().extend(response_headers);
                return response;
            }
            Ok(Some(Err(e))) => return internal(&plugin_failure(e)),
            Ok(Some(Ok(value))) => match parse_chunk(&value) {
                Ok(chunk) => pending = chunk.body.map(Bytes::from),
                Err(e) => return internal(&e),
            },
        }
    }
    let first = Bytes::from(first_body);
    let head = futures::stream::iter(
        [first, pending.unwrap_or_default()]
            .into_iter()
            .filter(|b| !b.is_empty())
            .map(Ok::<Bytes, std::io::Error>),
    );
    let rest = futures::stream::unfold(Some(session), move |session| async move {
        let mut session = session?;
        loop {
            let item = match tokio::time::timeout_at(deadline, session.next()).await {
                Err(_) => {
                    tracing::warn!("an endpoint answer was cut off by PLUGIN_MAX_EXECUTION_TIMEOUT");
                    return Some((Err(std::io::Error::other("killed by timeout")), None));
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => {
                    let message = plugin_failure(e);
                    tracing::warn!(error = %message, "an endpoint answer failed mid-stream");
                    return Some((Err(std::io::Error::other(message)), None));
                }
                Ok(Some(Ok(value))) => value,
            };
            match parse_chunk(&item) {
                Ok(Chunk { body: Some(body), .. }) if !body.is_empty() => {
                    return Some((Ok(Bytes::from(body)), Some(session)));
                }
                Ok(_) => {}
                Err(e) => return Some((Err(std::io::Error::other(e)), None)),
            }
        }
    });
    use futures::StreamExt;
    let mut response = (status, Body::from_stream(head.chain(rest))).into_response();
    response.headers_mut().extend(response_headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_ids_are_sixteen_lowercase_letters() {
        let a = new_hook_id();
        assert_eq!(a.len(), HOOK_ID_LEN);
        assert!(a.bytes().all(|b| b.is_ascii_lowercase()), "{a}");
        assert_ne!(a, new_hook_id());
    }

    fn schema() -> Vec<Value> {
        vec![
            json!({"name": "api_key", "type": "secret-input", "required": true}),
            json!({"name": "greeting", "type": "text-input", "required": false, "default": "hello"}),
            json!({"name": "region", "type": "select", "required": true,
                   "options": [{"value": "eu", "label": {"en_US": "EU"}}]}),
        ]
    }

    #[test]
    fn settings_validation_names_what_is_wrong() {
        let missing = validate_settings(&schema(), Map::new()).unwrap_err();
        assert_eq!(missing, "required settings are missing: api_key, region");
        let unknown = validate_settings(&schema(), Map::from_iter([("token".into(), json!("x"))])).unwrap_err();
        assert!(unknown.contains("unknown setting \"token\""), "{unknown}");
        let option = validate_settings(
            &schema(),
            Map::from_iter([("api_key".into(), json!("k")), ("region".into(), json!("us"))]),
        )
        .unwrap_err();
        assert!(option.contains("\"region\" must be one of: eu"), "{option}");
        let ok = validate_settings(
            &schema(),
            Map::from_iter([("api_key".into(), json!("k")), ("region".into(), json!("eu"))]),
        )
        .unwrap();
        assert_eq!(ok["greeting"], "hello");
    }

    #[test]
    fn raw_requests_drop_ip_traces_and_carry_the_hook() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("daemon:5002"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.insert("x-real-ip", HeaderValue::from_static("10.0.0.1"));
        headers.insert("x_weird", HeaderValue::from_static("dropped"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        let raw = raw_http_request("POST", "/a/b?x=1", &headers, b"{}", "abcdefghijklmnop", "http");
        let text = String::from_utf8(raw).unwrap();
        assert!(
            text.starts_with("POST /a/b?x=1 HTTP/1.1\r\nHost: daemon:5002\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Type: application/json\r\n"), "{text}");
        assert!(text.contains("Dify-Hook-Id: abcdefghijklmnop\r\n"), "{text}");
        assert!(
            text.contains("Dify-Hook-Url: http://daemon:5002/e/abcdefghijklmnop/a/b\r\n"),
            "{text}"
        );
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"), "{text}");
        for gone in ["10.0.0.1", "x_weird", "X_weird", "chunked"] {
            assert!(!text.contains(gone), "{gone} leaked: {text}");
        }
    }

    #[test]
    fn original_host_replaces_the_host() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("internal:5002"));
        headers.insert("x-original-host", HeaderValue::from_static("dify.example.com"));
        let text = String::from_utf8(raw_http_request("GET", "/", &headers, b"", "h", "https")).unwrap();
        assert!(text.contains("Host: dify.example.com\r\n"), "{text}");
        assert!(
            text.contains("Dify-Hook-Url: https://dify.example.com/e/h/\r\n"),
            "{text}"
        );
        assert!(!text.contains("internal"), "{text}");
        assert!(!text.contains("Content-Length"), "{text}");
    }
}
