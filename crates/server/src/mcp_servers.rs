//! toolplane as an MCP server: named servers of a tenant (`mcp_servers`), each exposing chosen tools or whole
//! providers at `/mcp/server/<server_code>/mcp`, optionally behind a bearer API key (only its SHA-256 is stored).
//!
//! [`StoreResolver`] is the [`McpServerResolver`] of the MCP router: it finds a server by its code, refuses
//! `inactive` servers and wrong keys, and builds the [`McpServer`] over the state's catalog. Resolved servers are
//! cached for a few seconds (changes made through this node apply at once; other nodes see them within the TTL).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use toolplane_core::Catalog;
use toolplane_mcp::{ExposedEntry, McpServer, McpServerConfig, McpServerResolver, ResolveError};
use toolplane_store::{MCP_SERVER_STATUSES, McpServerFields, McpServerRecord, Store};

use crate::auth::{hash_key, new_api_key, random_token};
use crate::error::ApiError;

/// How long a resolved server is reused without reading its row again.
pub const RESOLVE_TTL: Duration = Duration::from_secs(5);

/// The create payload.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct McpServerInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The exposed tools or providers.
    #[serde(default)]
    pub entries: Vec<ExposedEntry>,
    /// Issue a bearer key the server then requires.
    #[serde(default)]
    pub require_api_key: bool,
    /// `normal`, `active` (default) or `inactive`.
    #[serde(default)]
    pub status: Option<String>,
}

/// The update payload: absent fields keep their values.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct McpServerUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub entries: Option<Vec<ExposedEntry>>,
    #[serde(default)]
    pub status: Option<String>,
}

/// The rotate payload.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct McpServerRotate {
    /// Whether the server requires a key afterwards (a new one is issued); absent: as before.
    #[serde(default)]
    pub require_api_key: Option<bool>,
}

struct Resolved {
    at: Instant,
    server: Arc<McpServer>,
    key_hash: Option<String>,
    inactive: bool,
}

/// The MCP-server service and the router's resolver cache.
pub struct McpServers {
    store: Store,
    cache: RwLock<HashMap<String, Resolved>>,
}

fn checked_status(status: Option<&str>, default: &str) -> Result<String, ApiError> {
    let status = status.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(default);
    if MCP_SERVER_STATUSES.contains(&status) {
        Ok(status.to_owned())
    } else {
        Err(ApiError::invalid(format!(
            "status must be one of {}",
            MCP_SERVER_STATUSES.join(", ")
        )))
    }
}

fn checked_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::invalid("name must be 1 to 255 characters"));
    }
    Ok(name.to_owned())
}

fn entries_json(entries: &[ExposedEntry]) -> Result<String, ApiError> {
    serde_json::to_string(entries).map_err(ApiError::internal)
}

/// The public base URL announced in protected resource metadata: `CONSOLE_API_URL` when it names a reachable
/// host and port, else `None` (the router then uses each request's `Host`), so the default `http://{bind}` of an
/// unconfigured server (`0.0.0.0`, port 0) is never announced.
pub fn public_base_url(console_api_url: &str) -> Option<String> {
    let url = url::Url::parse(console_api_url).ok()?;
    let unspecified = match url.host()? {
        url::Host::Ipv4(ip) => ip.is_unspecified(),
        url::Host::Ipv6(ip) => ip.is_unspecified(),
        url::Host::Domain(_) => false,
    };
    (!unspecified && url.port() != Some(0)).then(|| console_api_url.trim_end_matches('/').to_owned())
}

/// The path a server is reached at.
pub fn server_path(server_code: &str) -> String {
    format!("/mcp/server/{server_code}/mcp")
}

/// A server in console responses (no key hash; `api_key` only when just issued).
pub fn server_json(record: &McpServerRecord, api_key: Option<&str>) -> Value {
    let entries: Value = serde_json::from_str(&record.entries).unwrap_or_else(|_| json!([]));
    let mut value = json!({
        "id": record.id,
        "name": record.name,
        "description": record.description,
        "server_code": record.server_code,
        "server_path": server_path(&record.server_code),
        "status": record.status,
        "entries": entries,
        "requires_api_key": record.api_key_hash.is_some(),
        "created_at": record.created_at / 1000,
        "updated_at": record.updated_at / 1000,
    });
    if let Some(key) = api_key {
        value["api_key"] = Value::String(key.to_owned());
    }
    value
}

impl McpServers {
    /// A service over the store.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    fn forget(&self, server_code: &str) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(server_code);
    }

    async fn row(&self, tenant_id: &str, id: &str) -> Result<McpServerRecord, ApiError> {
        self.store
            .mcp_servers()
            .get(tenant_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("MCP server {id:?} not found")))
    }

    /// Creates a server with a fresh 16-character code (and a key when asked; shown once).
    pub async fn create(&self, tenant_id: &str, input: McpServerInput) -> Result<Value, ApiError> {
        let fields = McpServerFields {
            name: checked_name(&input.name)?,
            description: input.description.trim().to_owned(),
            status: checked_status(input.status.as_deref(), "active")?,
            entries: entries_json(&input.entries)?,
        };
        let key = input.require_api_key.then(new_api_key);
        let record = self
            .store
            .mcp_servers()
            .insert(
                tenant_id,
                &fields,
                &random_token(16),
                key.as_deref().map(hash_key).as_deref(),
            )
            .await?;
        Ok(server_json(&record, key.as_deref()))
    }

    /// Every server of the tenant.
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<Value>, ApiError> {
        let rows = self.store.mcp_servers().list(tenant_id).await?;
        Ok(rows.iter().map(|r| server_json(r, None)).collect())
    }

    /// One server.
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Value, ApiError> {
        Ok(server_json(&self.row(tenant_id, id).await?, None))
    }

    /// Updates name, description, entries or status (`inactive` disables it).
    pub async fn update(&self, tenant_id: &str, id: &str, input: McpServerUpdate) -> Result<Value, ApiError> {
        let row = self.row(tenant_id, id).await?;
        let fields = McpServerFields {
            name: match &input.name {
                Some(name) => checked_name(name)?,
                None => row.name.clone(),
            },
            description: input
                .description
                .map(|d| d.trim().to_owned())
                .unwrap_or(row.description.clone()),
            status: checked_status(input.status.as_deref(), &row.status)?,
            entries: match &input.entries {
                Some(entries) => entries_json(entries)?,
                None => row.entries.clone(),
            },
        };
        let updated = self.store.mcp_servers().update(tenant_id, id, &fields).await?;
        self.forget(&row.server_code);
        Ok(server_json(&updated, None))
    }

    /// A new server code (the old URL stops working) and, when a key is required, a new key (shown once).
    pub async fn rotate(&self, tenant_id: &str, id: &str, input: McpServerRotate) -> Result<Value, ApiError> {
        let row = self.row(tenant_id, id).await?;
        let require = input.require_api_key.unwrap_or(row.api_key_hash.is_some());
        let key = require.then(new_api_key);
        let updated = self
            .store
            .mcp_servers()
            .rotate(
                tenant_id,
                id,
                &random_token(16),
                key.as_deref().map(hash_key).as_deref(),
            )
            .await?;
        self.forget(&row.server_code);
        Ok(server_json(&updated, key.as_deref()))
    }

    /// Deletes a server.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<(), ApiError> {
        let row = self.row(tenant_id, id).await?;
        self.store.mcp_servers().delete(tenant_id, id).await?;
        self.forget(&row.server_code);
        Ok(())
    }

    /// The [`McpServer`] of a tenant's server named `name_or_code` (name first, then code), or a server over every
    /// tool of the tenant when `None` (for `toolplane mcp stdio`).
    pub async fn local_server(
        &self,
        catalog: Arc<Catalog>,
        tenant_id: &str,
        name_or_code: Option<&str>,
    ) -> Result<Arc<McpServer>, ApiError> {
        let Some(wanted) = name_or_code else {
            let providers = catalog.providers(tenant_id, None).await?;
            let entries = providers
                .iter()
                .map(|p| ExposedEntry::Provider {
                    provider_type: p.provider_type(),
                    provider_id: p.id().to_owned(),
                    parameters: Default::default(),
                    credential_id: None,
                })
                .collect();
            let config = McpServerConfig {
                name: "toolplane".into(),
                instructions: None,
                entries,
            };
            return Ok(Arc::new(McpServer::new(catalog, tenant_id, config)));
        };
        let repo = self.store.mcp_servers();
        let record = match repo.get_by_name(tenant_id, wanted).await? {
            Some(record) => record,
            None => repo
                .get_by_code(wanted)
                .await?
                .filter(|r| r.tenant_id == tenant_id)
                .ok_or_else(|| ApiError::not_found(format!("MCP server {wanted:?} not found in this tenant")))?,
        };
        Ok(Arc::new(build_server(catalog, &record)?))
    }
}

fn build_server(catalog: Arc<Catalog>, record: &McpServerRecord) -> Result<McpServer, ApiError> {
    let entries: Vec<ExposedEntry> = serde_json::from_str(&record.entries)
        .map_err(|e| ApiError::internal(format!("stored MCP server entries are not valid: {e}")))?;
    let config = McpServerConfig {
        name: record.name.clone(),
        instructions: Some(record.description.clone()).filter(|d| !d.is_empty()),
        entries,
    };
    Ok(McpServer::new(catalog, record.tenant_id.clone(), config))
}

/// The MCP router's resolver over `mcp_servers` and the catalog.
pub struct StoreResolver {
    servers: Arc<McpServers>,
    catalog: Arc<Catalog>,
}

impl StoreResolver {
    /// A resolver sharing the service's cache.
    pub fn new(servers: Arc<McpServers>, catalog: Arc<Catalog>) -> Self {
        Self { servers, catalog }
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[async_trait]
impl McpServerResolver for StoreResolver {
    async fn resolve(&self, server_code: &str, bearer: Option<&str>) -> Result<Arc<McpServer>, ResolveError> {
        let hit = {
            let cache = self.servers.cache.read().unwrap_or_else(|e| e.into_inner());
            cache
                .get(server_code)
                .filter(|r| r.at.elapsed() < RESOLVE_TTL)
                .map(|r| (r.server.clone(), r.key_hash.clone(), r.inactive))
        };
        let (server, key_hash, inactive) = match hit {
            Some(hit) => hit,
            None => {
                let record = self
                    .servers
                    .store
                    .mcp_servers()
                    .get_by_code(server_code)
                    .await
                    .map_err(|e| ResolveError::Internal(e.to_string()))?
                    .ok_or(ResolveError::NotFound)?;
                let server = Arc::new(
                    build_server(self.catalog.clone(), &record).map_err(|e| ResolveError::Internal(e.to_string()))?,
                );
                let inactive = record.status == "inactive";
                self.servers.cache.write().unwrap_or_else(|e| e.into_inner()).insert(
                    server_code.to_owned(),
                    Resolved {
                        at: Instant::now(),
                        server: server.clone(),
                        key_hash: record.api_key_hash.clone(),
                        inactive,
                    },
                );
                (server, record.api_key_hash, inactive)
            }
        };
        if inactive {
            return Err(ResolveError::Disabled);
        }
        if let Some(expected) = key_hash {
            let presented = bearer.map(hash_key).unwrap_or_default();
            if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
                return Err(ResolveError::Unauthorized);
            }
        }
        Ok(server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_base_url_skips_unspecified_binds() {
        assert_eq!(public_base_url("http://0.0.0.0:5001"), None);
        assert_eq!(public_base_url("http://127.0.0.1:0"), None);
        assert_eq!(public_base_url("http://[::]:5001"), None);
        assert_eq!(
            public_base_url("https://tools.example.com/"),
            Some("https://tools.example.com".to_owned())
        );
    }
}
