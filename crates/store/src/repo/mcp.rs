//! MCP tables (migration `0008_mcp`):
//! - `tool_mcp_providers`: MCP servers a tenant uses as tool providers (Dify's table and columns). The server crate
//!   encrypts `server_url`, every header value and the whole credentials document with the tenant key before they
//!   reach this repository; `server_url_hash` (hex SHA-256 of the clear URL) keeps URLs unique per tenant.
//! - `mcp_oauth_states`: the single-use OAuth `state` values between the authorization redirect and the callback,
//!   with an expiry ([`McpOAuthStates::take`] removes a state as it reads it).
//! - `mcp_servers`: toolplane's own MCP servers (a named set of a tenant's tools at `/mcp/server/<server_code>/mcp`,
//!   with an optional bearer key kept as a hash).

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{get_bool, new_id, now_ms};
use crate::error::map_unique;
use crate::{Store, StoreError};

/// A row of `tool_mcp_providers`. Secret columns hold ciphertext.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McpProviderRecord {
    pub id: String,
    /// Display name (≤ 40 characters), unique per tenant.
    pub name: String,
    /// The provider id agents and workflows use, unique per tenant.
    pub server_identifier: String,
    /// The server URL, encrypted.
    pub server_url: String,
    /// Hex SHA-256 of the clear URL.
    pub server_url_hash: String,
    /// Icon: emoji JSON, a URL or a file key.
    pub icon: Option<String>,
    pub tenant_id: String,
    pub user_id: String,
    /// The credentials document (client information, tokens), encrypted as a whole.
    pub encrypted_credentials: Option<String>,
    /// Whether the server accepted our connection (with or without tokens).
    pub authed: bool,
    /// The cached `tools/list` result, a JSON array.
    pub tools: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Connection timeout in seconds.
    pub timeout: f64,
    /// Stream read timeout in seconds.
    pub sse_read_timeout: f64,
    /// JSON object of header name to encrypted value.
    pub encrypted_headers: Option<String>,
}

/// The fields the console sets on create and update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct McpProviderFields {
    pub name: String,
    pub server_identifier: String,
    /// Encrypted URL.
    pub server_url: String,
    pub server_url_hash: String,
    pub icon: Option<String>,
    pub timeout: f64,
    pub sse_read_timeout: f64,
    pub encrypted_headers: Option<String>,
}

/// The connection state of a provider: written after connecting, authorizing or re-listing tools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct McpProviderState {
    pub authed: bool,
    pub encrypted_credentials: Option<String>,
    /// The tools JSON array.
    pub tools: String,
}

const PROVIDER_COLUMNS: &str = "id, name, server_identifier, server_url, server_url_hash, icon, tenant_id, user_id, \
                                encrypted_credentials, authed, tools, created_at, updated_at, timeout, \
                                sse_read_timeout, encrypted_headers";

fn provider_from_row(row: &AnyRow) -> Result<McpProviderRecord, sqlx::Error> {
    Ok(McpProviderRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        server_identifier: row.try_get("server_identifier")?,
        server_url: row.try_get("server_url")?,
        server_url_hash: row.try_get("server_url_hash")?,
        icon: row.try_get("icon")?,
        tenant_id: row.try_get("tenant_id")?,
        user_id: row.try_get("user_id")?,
        encrypted_credentials: row.try_get("encrypted_credentials")?,
        authed: get_bool(row, "authed")?,
        tools: row.try_get("tools")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        timeout: row.try_get("timeout")?,
        sse_read_timeout: row.try_get("sse_read_timeout")?,
        encrypted_headers: row.try_get("encrypted_headers")?,
    })
}

fn provider_conflict(name: &str) -> impl FnOnce() -> StoreError + '_ {
    move || StoreError::Conflict {
        entity: "an MCP provider",
        field: "name, server URL or server_identifier",
        value: Some(name.to_owned()),
    }
}

/// Repository for `tool_mcp_providers`; obtain with [`Store::mcp_providers`].
#[derive(Debug, Clone, Copy)]
pub struct McpProviders<'a> {
    store: &'a Store,
}

/// Repository for `mcp_oauth_states`; obtain with [`Store::mcp_oauth_states`].
#[derive(Debug, Clone, Copy)]
pub struct McpOAuthStates<'a> {
    store: &'a Store,
}

/// Repository for `mcp_servers`; obtain with [`Store::mcp_servers`].
#[derive(Debug, Clone, Copy)]
pub struct McpServers<'a> {
    store: &'a Store,
}

impl Store {
    /// The `tool_mcp_providers` repository.
    pub fn mcp_providers(&self) -> McpProviders<'_> {
        McpProviders { store: self }
    }

    /// The `mcp_oauth_states` repository.
    pub fn mcp_oauth_states(&self) -> McpOAuthStates<'_> {
        McpOAuthStates { store: self }
    }

    /// The `mcp_servers` repository.
    pub fn mcp_servers(&self) -> McpServers<'_> {
        McpServers { store: self }
    }
}

impl McpProviders<'_> {
    /// Inserts a provider, not yet authorized, with no cached tools. A name, URL or identifier already used in the
    /// tenant is a [`StoreError::Conflict`].
    pub async fn insert(
        &self,
        tenant_id: &str,
        user_id: &str,
        fields: &McpProviderFields,
        encrypted_credentials: Option<&str>,
    ) -> Result<McpProviderRecord, StoreError> {
        let sql = format!(
            "INSERT INTO tool_mcp_providers ({PROVIDER_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '[]', $11, $11, $12, $13, $14) RETURNING {PROVIDER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new_id())
            .bind(&fields.name)
            .bind(&fields.server_identifier)
            .bind(&fields.server_url)
            .bind(&fields.server_url_hash)
            .bind(fields.icon.as_deref())
            .bind(tenant_id)
            .bind(user_id)
            .bind(encrypted_credentials)
            .bind(false)
            .bind(now_ms())
            .bind(fields.timeout)
            .bind(fields.sse_read_timeout)
            .bind(fields.encrypted_headers.as_deref())
            .fetch_one(self.store.pool())
            .await
            .map_err(|e| map_unique(e, provider_conflict(&fields.name)))?;
        Ok(provider_from_row(&row)?)
    }

    /// Replaces the console fields of the tenant's provider `id`.
    pub async fn update(
        &self,
        tenant_id: &str,
        id: &str,
        fields: &McpProviderFields,
    ) -> Result<McpProviderRecord, StoreError> {
        let sql = format!(
            "UPDATE tool_mcp_providers SET name = $3, server_identifier = $4, server_url = $5, server_url_hash = $6, \
             icon = $7, timeout = $8, sse_read_timeout = $9, encrypted_headers = $10, updated_at = $11 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {PROVIDER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .bind(&fields.name)
            .bind(&fields.server_identifier)
            .bind(&fields.server_url)
            .bind(&fields.server_url_hash)
            .bind(fields.icon.as_deref())
            .bind(fields.timeout)
            .bind(fields.sse_read_timeout)
            .bind(fields.encrypted_headers.as_deref())
            .bind(now_ms())
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| map_unique(e, provider_conflict(&fields.name)))?
            .ok_or_else(|| StoreError::NotFound {
                entity: "MCP provider",
                id: id.to_owned(),
            })?;
        Ok(provider_from_row(&row)?)
    }

    /// Writes the connection state (authorization, credentials, cached tools) of the tenant's provider `id`.
    pub async fn set_state(
        &self,
        tenant_id: &str,
        id: &str,
        state: &McpProviderState,
    ) -> Result<McpProviderRecord, StoreError> {
        let sql = format!(
            "UPDATE tool_mcp_providers SET authed = $3, encrypted_credentials = $4, tools = $5, updated_at = $6 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {PROVIDER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .bind(state.authed)
            .bind(state.encrypted_credentials.as_deref())
            .bind(&state.tools)
            .bind(now_ms())
            .fetch_optional(self.store.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                entity: "MCP provider",
                id: id.to_owned(),
            })?;
        Ok(provider_from_row(&row)?)
    }

    /// The tenant's provider with this row id.
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<McpProviderRecord>, StoreError> {
        self.one("id", tenant_id, id).await
    }

    /// The tenant's provider with this `server_identifier`.
    pub async fn get_by_identifier(
        &self,
        tenant_id: &str,
        server_identifier: &str,
    ) -> Result<Option<McpProviderRecord>, StoreError> {
        self.one("server_identifier", tenant_id, server_identifier).await
    }

    /// The tenant's provider with this name.
    pub async fn get_by_name(&self, tenant_id: &str, name: &str) -> Result<Option<McpProviderRecord>, StoreError> {
        self.one("name", tenant_id, name).await
    }

    /// The tenant's provider with this URL hash.
    pub async fn get_by_url_hash(&self, tenant_id: &str, hash: &str) -> Result<Option<McpProviderRecord>, StoreError> {
        self.one("server_url_hash", tenant_id, hash).await
    }

    async fn one(
        &self,
        column: &'static str,
        tenant_id: &str,
        value: &str,
    ) -> Result<Option<McpProviderRecord>, StoreError> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM tool_mcp_providers WHERE tenant_id = $1 AND {column} = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(value)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(provider_from_row).transpose()?)
    }

    /// Every MCP provider of the tenant, most recently updated first (Dify's order).
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<McpProviderRecord>, StoreError> {
        let sql = format!(
            "SELECT {PROVIDER_COLUMNS} FROM tool_mcp_providers WHERE tenant_id = $1 ORDER BY updated_at DESC, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows.iter().map(provider_from_row).collect::<Result<_, _>>()?)
    }

    /// Deletes the tenant's provider (and its pending OAuth states); `false` when there was none.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tool_mcp_providers WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// A pending OAuth authorization (`mcp_oauth_states`). The server crate encrypts `code_verifier` and
/// `client_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpOAuthStateRecord {
    /// The random `state` parameter.
    pub state: String,
    pub tenant_id: String,
    /// The `tool_mcp_providers` row id.
    pub provider_id: String,
    /// The PKCE verifier (encrypted).
    pub code_verifier: String,
    /// The discovery result, JSON.
    pub discovery: String,
    /// The OAuth client (encrypted JSON).
    pub client_info: String,
    pub redirect_uri: String,
    /// Unix milliseconds after which the state is refused.
    pub expires_at: i64,
}

const STATE_COLUMNS: &str =
    "state, tenant_id, provider_id, code_verifier, discovery, client_info, redirect_uri, expires_at";

fn state_from_row(row: &AnyRow) -> Result<McpOAuthStateRecord, sqlx::Error> {
    Ok(McpOAuthStateRecord {
        state: row.try_get("state")?,
        tenant_id: row.try_get("tenant_id")?,
        provider_id: row.try_get("provider_id")?,
        code_verifier: row.try_get("code_verifier")?,
        discovery: row.try_get("discovery")?,
        client_info: row.try_get("client_info")?,
        redirect_uri: row.try_get("redirect_uri")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl McpOAuthStates<'_> {
    /// Stores a pending authorization and drops expired ones.
    pub async fn insert(&self, record: &McpOAuthStateRecord) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query("DELETE FROM mcp_oauth_states WHERE expires_at < $1")
            .bind(now)
            .execute(self.store.pool())
            .await?;
        let sql = format!(
            "INSERT INTO mcp_oauth_states ({STATE_COLUMNS}, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&record.state)
            .bind(&record.tenant_id)
            .bind(&record.provider_id)
            .bind(&record.code_verifier)
            .bind(&record.discovery)
            .bind(&record.client_info)
            .bind(&record.redirect_uri)
            .bind(record.expires_at)
            .bind(now)
            .execute(self.store.pool())
            .await
            .map_err(|e| {
                map_unique(e, || StoreError::Conflict {
                    entity: "an OAuth state",
                    field: "state",
                    value: None,
                })
            })?;
        Ok(())
    }

    /// Removes and returns the state, once: a second call, or a call after the expiry, returns `None`.
    pub async fn take(&self, state: &str) -> Result<Option<McpOAuthStateRecord>, StoreError> {
        let sql = format!("DELETE FROM mcp_oauth_states WHERE state = $1 RETURNING {STATE_COLUMNS}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state)
            .fetch_optional(self.store.pool())
            .await?;
        let record = row.as_ref().map(state_from_row).transpose()?;
        Ok(record.filter(|r| r.expires_at >= now_ms()))
    }
}

/// Statuses of an MCP server (Dify's `normal|active|inactive`); only `inactive` refuses requests.
pub const MCP_SERVER_STATUSES: [&str; 3] = ["normal", "active", "inactive"];

/// A row of `mcp_servers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpServerRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    /// The secret path segment of `/mcp/server/<server_code>/mcp`, unique across tenants.
    pub server_code: String,
    /// `normal`, `active` or `inactive`.
    pub status: String,
    /// JSON array of exposed entries (tools or whole providers).
    pub entries: String,
    /// Hex SHA-256 of the bearer key, when one is required.
    #[serde(skip)]
    pub api_key_hash: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// The console-editable fields of an MCP server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpServerFields {
    pub name: String,
    pub description: String,
    pub status: String,
    pub entries: String,
}

const SERVER_COLUMNS: &str =
    "id, tenant_id, name, description, server_code, status, entries, api_key_hash, created_at, updated_at";

fn server_from_row(row: &AnyRow) -> Result<McpServerRecord, sqlx::Error> {
    Ok(McpServerRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        server_code: row.try_get("server_code")?,
        status: row.try_get("status")?,
        entries: row.try_get("entries")?,
        api_key_hash: row.try_get("api_key_hash")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn server_conflict(name: &str) -> impl FnOnce() -> StoreError + '_ {
    move || StoreError::Conflict {
        entity: "an MCP server",
        field: "name or server_code",
        value: Some(name.to_owned()),
    }
}

fn server_not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        entity: "MCP server",
        id: id.to_owned(),
    }
}

impl McpServers<'_> {
    /// Creates a server; a name used in the tenant (or a server code used anywhere) is a [`StoreError::Conflict`].
    pub async fn insert(
        &self,
        tenant_id: &str,
        fields: &McpServerFields,
        server_code: &str,
        api_key_hash: Option<&str>,
    ) -> Result<McpServerRecord, StoreError> {
        let sql = format!(
            "INSERT INTO mcp_servers ({SERVER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             RETURNING {SERVER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new_id())
            .bind(tenant_id)
            .bind(&fields.name)
            .bind(&fields.description)
            .bind(server_code)
            .bind(&fields.status)
            .bind(&fields.entries)
            .bind(api_key_hash)
            .bind(now_ms())
            .fetch_one(self.store.pool())
            .await
            .map_err(|e| map_unique(e, server_conflict(&fields.name)))?;
        Ok(server_from_row(&row)?)
    }

    /// Replaces the editable fields of the tenant's server `id`.
    pub async fn update(
        &self,
        tenant_id: &str,
        id: &str,
        fields: &McpServerFields,
    ) -> Result<McpServerRecord, StoreError> {
        let sql = format!(
            "UPDATE mcp_servers SET name = $3, description = $4, status = $5, entries = $6, updated_at = $7 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {SERVER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .bind(&fields.name)
            .bind(&fields.description)
            .bind(&fields.status)
            .bind(&fields.entries)
            .bind(now_ms())
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| map_unique(e, server_conflict(&fields.name)))?
            .ok_or_else(|| server_not_found(id))?;
        Ok(server_from_row(&row)?)
    }

    /// Replaces the server code and the key hash (rotation); `api_key_hash = None` removes the key requirement.
    pub async fn rotate(
        &self,
        tenant_id: &str,
        id: &str,
        server_code: &str,
        api_key_hash: Option<&str>,
    ) -> Result<McpServerRecord, StoreError> {
        let sql = format!(
            "UPDATE mcp_servers SET server_code = $3, api_key_hash = $4, updated_at = $5 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {SERVER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .bind(server_code)
            .bind(api_key_hash)
            .bind(now_ms())
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| map_unique(e, server_conflict(server_code)))?
            .ok_or_else(|| server_not_found(id))?;
        Ok(server_from_row(&row)?)
    }

    /// The tenant's server with this id.
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<McpServerRecord>, StoreError> {
        let sql = format!("SELECT {SERVER_COLUMNS} FROM mcp_servers WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(server_from_row).transpose()?)
    }

    /// The tenant's server with this name.
    pub async fn get_by_name(&self, tenant_id: &str, name: &str) -> Result<Option<McpServerRecord>, StoreError> {
        let sql = format!("SELECT {SERVER_COLUMNS} FROM mcp_servers WHERE tenant_id = $1 AND name = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(server_from_row).transpose()?)
    }

    /// The server behind a server code, whatever its tenant (the code is what addresses it publicly).
    pub async fn get_by_code(&self, server_code: &str) -> Result<Option<McpServerRecord>, StoreError> {
        let sql = format!("SELECT {SERVER_COLUMNS} FROM mcp_servers WHERE server_code = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(server_code)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(server_from_row).transpose()?)
    }

    /// Every MCP server of the tenant, by name.
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<McpServerRecord>, StoreError> {
        let sql = format!("SELECT {SERVER_COLUMNS} FROM mcp_servers WHERE tenant_id = $1 ORDER BY name, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows.iter().map(server_from_row).collect::<Result<_, _>>()?)
    }

    /// Deletes the tenant's server; `false` when there was none.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM mcp_servers WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
