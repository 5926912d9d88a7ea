//! `tool_workflow_providers`: workflows published as tools (Dify's table and columns). `app_id` is the toolplane
//! workflow id and `version` the published version the tool runs.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{new_id, now_ms};
use crate::error::map_unique;
use crate::{Store, StoreError};

/// A row of `tool_workflow_providers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowProviderRecord {
    pub id: String,
    /// The tool name, `^[a-zA-Z0-9_]+$`, unique per tenant.
    pub name: String,
    pub label: String,
    /// Icon as JSON text (Dify's emoji dict).
    pub icon: String,
    /// The workflow id; one tool per workflow.
    pub app_id: String,
    /// The pinned published version.
    pub version: String,
    pub user_id: String,
    pub tenant_id: String,
    pub description: String,
    /// JSON array of `{name, description, form}`.
    pub parameter_configuration: String,
    pub privacy_policy: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// The writable fields, for insert and update (`app_id` is fixed at creation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkflowProviderFields {
    pub name: String,
    pub label: String,
    pub icon: String,
    pub version: String,
    pub description: String,
    pub parameter_configuration: String,
    pub privacy_policy: String,
}

const COLUMNS: &str = "id, name, label, icon, app_id, version, user_id, tenant_id, description, \
                       parameter_configuration, privacy_policy, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<WorkflowProviderRecord, sqlx::Error> {
    Ok(WorkflowProviderRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        label: row.try_get("label")?,
        icon: row.try_get("icon")?,
        app_id: row.try_get("app_id")?,
        version: row.try_get("version")?,
        user_id: row.try_get("user_id")?,
        tenant_id: row.try_get("tenant_id")?,
        description: row.try_get("description")?,
        parameter_configuration: row.try_get("parameter_configuration")?,
        privacy_policy: row.try_get("privacy_policy")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn conflict(name: &str) -> impl FnOnce() -> StoreError + '_ {
    move || StoreError::Conflict {
        entity: "a workflow tool",
        field: "name or app_id",
        value: Some(name.to_owned()),
    }
}

/// Repository for `tool_workflow_providers`; obtain with [`Store::workflow_providers`].
#[derive(Debug, Clone, Copy)]
pub struct WorkflowProviders<'a> {
    store: &'a Store,
}

impl Store {
    /// The `tool_workflow_providers` repository.
    pub fn workflow_providers(&self) -> WorkflowProviders<'_> {
        WorkflowProviders { store: self }
    }
}

impl WorkflowProviders<'_> {
    /// Publishes a workflow as a tool; a name or workflow already used in the tenant is a
    /// [`StoreError::Conflict`].
    pub async fn insert(
        &self,
        tenant_id: &str,
        user_id: &str,
        app_id: &str,
        fields: &WorkflowProviderFields,
    ) -> Result<WorkflowProviderRecord, StoreError> {
        let sql = format!(
            "INSERT INTO tool_workflow_providers ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new_id())
            .bind(&fields.name)
            .bind(&fields.label)
            .bind(&fields.icon)
            .bind(app_id)
            .bind(&fields.version)
            .bind(user_id)
            .bind(tenant_id)
            .bind(&fields.description)
            .bind(&fields.parameter_configuration)
            .bind(&fields.privacy_policy)
            .bind(now_ms())
            .fetch_one(self.store.pool())
            .await
            .map_err(|e| map_unique(e, conflict(&fields.name)))?;
        Ok(from_row(&row)?)
    }

    /// Replaces the writable fields of the tenant's tool `id`.
    pub async fn update(
        &self,
        tenant_id: &str,
        id: &str,
        fields: &WorkflowProviderFields,
    ) -> Result<WorkflowProviderRecord, StoreError> {
        let sql = format!(
            "UPDATE tool_workflow_providers SET name = $3, label = $4, icon = $5, version = $6, description = $7, \
             parameter_configuration = $8, privacy_policy = $9, updated_at = $10 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .bind(&fields.name)
            .bind(&fields.label)
            .bind(&fields.icon)
            .bind(&fields.version)
            .bind(&fields.description)
            .bind(&fields.parameter_configuration)
            .bind(&fields.privacy_policy)
            .bind(now_ms())
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| map_unique(e, conflict(&fields.name)))?
            .ok_or_else(|| StoreError::NotFound {
                entity: "workflow tool",
                id: id.to_owned(),
            })?;
        Ok(from_row(&row)?)
    }

    /// The tenant's tool with this id.
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<WorkflowProviderRecord>, StoreError> {
        self.one("id", tenant_id, id).await
    }

    /// The tenant's tool publishing this workflow.
    pub async fn get_by_app(
        &self,
        tenant_id: &str,
        app_id: &str,
    ) -> Result<Option<WorkflowProviderRecord>, StoreError> {
        self.one("app_id", tenant_id, app_id).await
    }

    /// The tenant's tool with this name.
    pub async fn get_by_name(&self, tenant_id: &str, name: &str) -> Result<Option<WorkflowProviderRecord>, StoreError> {
        self.one("name", tenant_id, name).await
    }

    async fn one(
        &self,
        column: &'static str,
        tenant_id: &str,
        value: &str,
    ) -> Result<Option<WorkflowProviderRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tool_workflow_providers WHERE tenant_id = $1 AND {column} = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(value)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Every workflow tool of the tenant, by name.
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<WorkflowProviderRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tool_workflow_providers WHERE tenant_id = $1 ORDER BY name, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Deletes the tenant's tool; `false` when there was none.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tool_workflow_providers WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
