//! `tool_api_providers`: API tool providers a tenant imported from a spec (Dify's table and columns).

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{new_id, now_ms};
use crate::error::map_unique;
use crate::{Store, StoreError};

/// A row of `tool_api_providers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiProviderRecord {
    pub id: String,
    /// Unique per tenant; the console addresses providers by name.
    pub name: String,
    /// JSON emoji icon `{background, content}` or a URL.
    pub icon: String,
    /// The original spec text.
    pub schema: String,
    /// `openapi`, `swagger` or `openai_plugin`.
    pub schema_type_str: String,
    pub user_id: String,
    pub tenant_id: String,
    pub description: String,
    /// JSON array of tool bundles.
    pub tools_str: String,
    /// JSON object of auth settings; `api_key_value` is encrypted.
    pub credentials_str: String,
    pub privacy_policy: Option<String>,
    pub custom_disclaimer: String,
    /// Connect timeout of the provider's calls in seconds; `None` means the server's default.
    pub connect_timeout: Option<f64>,
    /// Read timeout of the provider's calls in seconds; `None` means the server's default.
    pub read_timeout: Option<f64>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// The writable fields of a provider, for insert and update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiProviderFields {
    pub name: String,
    pub icon: String,
    pub schema: String,
    pub schema_type_str: String,
    pub description: String,
    pub tools_str: String,
    pub credentials_str: String,
    pub privacy_policy: Option<String>,
    pub custom_disclaimer: String,
    /// Connect timeout in seconds; `None` means the server's default.
    pub connect_timeout: Option<f64>,
    /// Read timeout in seconds; `None` means the server's default.
    pub read_timeout: Option<f64>,
}

const COLUMNS: &str = "id, name, icon, schema, schema_type_str, user_id, tenant_id, description, tools_str, \
                       credentials_str, privacy_policy, custom_disclaimer, connect_timeout, read_timeout, \
                       created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<ApiProviderRecord, sqlx::Error> {
    Ok(ApiProviderRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        icon: row.try_get("icon")?,
        schema: row.try_get("schema")?,
        schema_type_str: row.try_get("schema_type_str")?,
        user_id: row.try_get("user_id")?,
        tenant_id: row.try_get("tenant_id")?,
        description: row.try_get("description")?,
        tools_str: row.try_get("tools_str")?,
        credentials_str: row.try_get("credentials_str")?,
        privacy_policy: row.try_get("privacy_policy")?,
        custom_disclaimer: row.try_get("custom_disclaimer")?,
        connect_timeout: row.try_get("connect_timeout")?,
        read_timeout: row.try_get("read_timeout")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn conflict(name: &str) -> impl FnOnce() -> StoreError + '_ {
    move || StoreError::Conflict {
        entity: "an API tool provider",
        field: "name",
        value: Some(name.to_owned()),
    }
}

/// Repository for `tool_api_providers`; obtain with [`Store::api_providers`].
#[derive(Debug, Clone, Copy)]
pub struct ApiProviders<'a> {
    store: &'a Store,
}

impl Store {
    /// The `tool_api_providers` repository.
    pub fn api_providers(&self) -> ApiProviders<'_> {
        ApiProviders { store: self }
    }
}

impl ApiProviders<'_> {
    /// Inserts a provider; a name already used in the tenant is a [`StoreError::Conflict`].
    pub async fn insert(
        &self,
        tenant_id: &str,
        user_id: &str,
        fields: &ApiProviderFields,
    ) -> Result<ApiProviderRecord, StoreError> {
        let now = now_ms();
        let sql = format!(
            "INSERT INTO tool_api_providers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new_id())
            .bind(&fields.name)
            .bind(&fields.icon)
            .bind(&fields.schema)
            .bind(&fields.schema_type_str)
            .bind(user_id)
            .bind(tenant_id)
            .bind(&fields.description)
            .bind(&fields.tools_str)
            .bind(&fields.credentials_str)
            .bind(fields.privacy_policy.as_deref())
            .bind(&fields.custom_disclaimer)
            .bind(fields.connect_timeout)
            .bind(fields.read_timeout)
            .bind(now)
            .fetch_one(self.store.pool())
            .await
            .map_err(|e| map_unique(e, conflict(&fields.name)))?;
        Ok(from_row(&row)?)
    }

    /// Replaces every writable field of the tenant's provider `id`.
    pub async fn update(
        &self,
        tenant_id: &str,
        id: &str,
        fields: &ApiProviderFields,
    ) -> Result<ApiProviderRecord, StoreError> {
        let sql = format!(
            "UPDATE tool_api_providers SET name = $3, icon = $4, schema = $5, schema_type_str = $6, description = $7, \
             tools_str = $8, credentials_str = $9, privacy_policy = $10, custom_disclaimer = $11, connect_timeout = $12, \
             read_timeout = $13, updated_at = $14 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .bind(&fields.name)
            .bind(&fields.icon)
            .bind(&fields.schema)
            .bind(&fields.schema_type_str)
            .bind(&fields.description)
            .bind(&fields.tools_str)
            .bind(&fields.credentials_str)
            .bind(fields.privacy_policy.as_deref())
            .bind(&fields.custom_disclaimer)
            .bind(fields.connect_timeout)
            .bind(fields.read_timeout)
            .bind(now_ms())
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| map_unique(e, conflict(&fields.name)))?;
        let row = row.ok_or_else(|| StoreError::NotFound {
            entity: "API tool provider",
            id: id.to_owned(),
        })?;
        Ok(from_row(&row)?)
    }

    /// The tenant's provider with this name.
    pub async fn get_by_name(&self, tenant_id: &str, name: &str) -> Result<Option<ApiProviderRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tool_api_providers WHERE tenant_id = $1 AND name = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// The tenant's provider with this id.
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<ApiProviderRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tool_api_providers WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Every provider of the tenant, by name.
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<ApiProviderRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tool_api_providers WHERE tenant_id = $1 ORDER BY name, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Deletes the tenant's provider; `false` when there was none.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tool_api_providers WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
