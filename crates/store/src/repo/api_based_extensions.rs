//! `api_based_extensions`: HTTP endpoints a tenant registers for external data tools and moderation. The
//! `api_key` column holds the key encrypted by the tenant key; this repository stores whatever it is given.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{new_id, now_ms};
use crate::error::map_unique;
use crate::{Store, StoreError};

/// A row of `api_based_extensions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiBasedExtensionRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub api_endpoint: String,
    /// Encrypted by the tenant key.
    pub api_key: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Repository for `api_based_extensions`; obtain with [`Store::api_based_extensions`].
#[derive(Debug, Clone, Copy)]
pub struct ApiBasedExtensions<'a> {
    store: &'a Store,
}

impl Store {
    /// The `api_based_extensions` repository.
    pub fn api_based_extensions(&self) -> ApiBasedExtensions<'_> {
        ApiBasedExtensions { store: self }
    }
}

const COLUMNS: &str = "id, tenant_id, name, api_endpoint, api_key, created_at";

fn from_row(row: &AnyRow) -> Result<ApiBasedExtensionRecord, sqlx::Error> {
    Ok(ApiBasedExtensionRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        api_endpoint: row.try_get("api_endpoint")?,
        api_key: row.try_get("api_key")?,
        created_at: row.try_get("created_at")?,
    })
}

fn conflict(name: &str) -> impl FnOnce() -> StoreError + '_ {
    move || StoreError::Conflict {
        entity: "an API-based extension",
        field: "name",
        value: Some(name.to_owned()),
    }
}

impl ApiBasedExtensions<'_> {
    /// The tenant's extensions, newest first (as Dify lists them).
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<ApiBasedExtensionRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM api_based_extensions WHERE tenant_id = $1 ORDER BY created_at DESC, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// One extension of the tenant.
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<ApiBasedExtensionRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_based_extensions WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// The tenant's extension with this name, if any.
    pub async fn find_by_name(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> Result<Option<ApiBasedExtensionRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_based_extensions WHERE tenant_id = $1 AND name = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Inserts an extension; a name already used in the tenant is a [`StoreError::Conflict`].
    pub async fn insert(
        &self,
        tenant_id: &str,
        name: &str,
        api_endpoint: &str,
        encrypted_api_key: &str,
    ) -> Result<ApiBasedExtensionRecord, StoreError> {
        let sql =
            format!("INSERT INTO api_based_extensions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new_id())
            .bind(tenant_id)
            .bind(name)
            .bind(api_endpoint)
            .bind(encrypted_api_key)
            .bind(now_ms())
            .fetch_one(self.store.pool())
            .await
            .map_err(|e| map_unique(e, conflict(name)))?;
        Ok(from_row(&row)?)
    }

    /// Replaces name, endpoint and key of the tenant's extension `id`; `None` when it does not exist.
    pub async fn update(
        &self,
        tenant_id: &str,
        id: &str,
        name: &str,
        api_endpoint: &str,
        encrypted_api_key: &str,
    ) -> Result<Option<ApiBasedExtensionRecord>, StoreError> {
        let sql = format!(
            "UPDATE api_based_extensions SET name = $3, api_endpoint = $4, api_key = $5 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .bind(name)
            .bind(api_endpoint)
            .bind(encrypted_api_key)
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| map_unique(e, conflict(name)))?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Deletes the tenant's extension; returns whether it existed.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM api_based_extensions WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
