//! `tool_oauth_system_clients` and `tool_oauth_tenant_clients`: the OAuth client parameters (client id, secret,
//! endpoints…) tool providers authorize with.
//!
//! Both tables store the params as text; encryption is the caller's business (system params: AES-256-CBC under
//! `SECRET_KEY`, tenant params: secret fields under the tenant key). Builtin providers use `plugin_id = ""`.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{get_bool, new_id};
use crate::{Store, StoreError};

/// A row of `tool_oauth_system_clients`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemOAuthClientRecord {
    pub id: String,
    /// `""` for builtin providers, else the plugin id (`org/plugin`).
    pub plugin_id: String,
    pub provider: String,
    /// `base64(iv + AES-256-CBC(JSON))` under `SHA-256(SECRET_KEY)`.
    pub encrypted_oauth_params: String,
}

/// A row of `tool_oauth_tenant_clients`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantOAuthClientRecord {
    pub id: String,
    pub tenant_id: String,
    pub plugin_id: String,
    pub provider: String,
    /// Whether the tenant's own client is used (else the system client, when one applies).
    pub enabled: bool,
    /// JSON object text; secret fields encrypted by the tenant key.
    pub encrypted_oauth_params: String,
}

/// Repository for both OAuth client tables; obtain with [`Store::oauth_clients`].
#[derive(Debug, Clone, Copy)]
pub struct OAuthClients<'a> {
    store: &'a Store,
}

impl Store {
    /// The OAuth client repository.
    pub fn oauth_clients(&self) -> OAuthClients<'_> {
        OAuthClients { store: self }
    }
}

fn system_from_row(row: &AnyRow) -> Result<SystemOAuthClientRecord, sqlx::Error> {
    Ok(SystemOAuthClientRecord {
        id: row.try_get("id")?,
        plugin_id: row.try_get("plugin_id")?,
        provider: row.try_get("provider")?,
        encrypted_oauth_params: row.try_get("encrypted_oauth_params")?,
    })
}

fn tenant_from_row(row: &AnyRow) -> Result<TenantOAuthClientRecord, sqlx::Error> {
    Ok(TenantOAuthClientRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        plugin_id: row.try_get("plugin_id")?,
        provider: row.try_get("provider")?,
        enabled: get_bool(row, "enabled")?,
        encrypted_oauth_params: row.try_get("encrypted_oauth_params")?,
    })
}

impl OAuthClients<'_> {
    /// The system client of a provider, if one is configured.
    pub async fn system(&self, plugin_id: &str, provider: &str) -> Result<Option<SystemOAuthClientRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, plugin_id, provider, encrypted_oauth_params FROM tool_oauth_system_clients \
             WHERE plugin_id = $1 AND provider = $2",
        )
        .bind(plugin_id)
        .bind(provider)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.as_ref().map(system_from_row).transpose()?)
    }

    /// Creates or replaces the system client of a provider.
    pub async fn upsert_system(
        &self,
        plugin_id: &str,
        provider: &str,
        encrypted_oauth_params: &str,
    ) -> Result<SystemOAuthClientRecord, StoreError> {
        let row = sqlx::query(
            "INSERT INTO tool_oauth_system_clients (id, plugin_id, provider, encrypted_oauth_params) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (plugin_id, provider) \
             DO UPDATE SET encrypted_oauth_params = excluded.encrypted_oauth_params \
             RETURNING id, plugin_id, provider, encrypted_oauth_params",
        )
        .bind(new_id())
        .bind(plugin_id)
        .bind(provider)
        .bind(encrypted_oauth_params)
        .fetch_one(self.store.pool())
        .await?;
        Ok(system_from_row(&row)?)
    }

    /// Deletes the system client of a provider; returns whether one existed.
    pub async fn delete_system(&self, plugin_id: &str, provider: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tool_oauth_system_clients WHERE plugin_id = $1 AND provider = $2")
            .bind(plugin_id)
            .bind(provider)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The tenant's own client of a provider (enabled or not).
    pub async fn tenant(
        &self,
        tenant_id: &str,
        plugin_id: &str,
        provider: &str,
    ) -> Result<Option<TenantOAuthClientRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, tenant_id, plugin_id, provider, enabled, encrypted_oauth_params FROM tool_oauth_tenant_clients \
             WHERE tenant_id = $1 AND plugin_id = $2 AND provider = $3",
        )
        .bind(tenant_id)
        .bind(plugin_id)
        .bind(provider)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.as_ref().map(tenant_from_row).transpose()?)
    }

    /// Creates or replaces the tenant's client of a provider.
    pub async fn upsert_tenant(
        &self,
        tenant_id: &str,
        plugin_id: &str,
        provider: &str,
        enabled: bool,
        encrypted_oauth_params: &str,
    ) -> Result<TenantOAuthClientRecord, StoreError> {
        let row = sqlx::query(
            "INSERT INTO tool_oauth_tenant_clients (id, tenant_id, plugin_id, provider, enabled, encrypted_oauth_params) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, plugin_id, provider) \
             DO UPDATE SET enabled = excluded.enabled, encrypted_oauth_params = excluded.encrypted_oauth_params \
             RETURNING id, tenant_id, plugin_id, provider, enabled, encrypted_oauth_params",
        )
        .bind(new_id())
        .bind(tenant_id)
        .bind(plugin_id)
        .bind(provider)
        .bind(enabled)
        .bind(encrypted_oauth_params)
        .fetch_one(self.store.pool())
        .await?;
        Ok(tenant_from_row(&row)?)
    }

    /// Deletes the tenant's client of a provider; returns whether one existed.
    pub async fn delete_tenant(&self, tenant_id: &str, plugin_id: &str, provider: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM tool_oauth_tenant_clients WHERE tenant_id = $1 AND plugin_id = $2 AND provider = $3",
        )
        .bind(tenant_id)
        .bind(plugin_id)
        .bind(provider)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
