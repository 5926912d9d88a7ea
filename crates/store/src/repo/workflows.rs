//! toolplane's own workflows: `workflows` (the imported DSL), `workflow_versions` (published snapshots),
//! `workflow_runs` and `workflow_node_runs` (run history with one record per executed node).
//!
//! Every method takes the tenant id; node records are reached through their run, which is tenant-checked.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{new_id, now_ms};
use crate::error::map_unique;
use crate::{Store, StoreError};

/// A row of `workflows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    /// The imported DSL text (YAML or JSON), the draft that runs by default.
    pub dsl: String,
    /// The account that imported it.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// A row of `workflow_versions`: a published snapshot of a workflow's DSL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowVersionRecord {
    pub id: String,
    pub tenant_id: String,
    pub workflow_id: String,
    /// The version string (`"1"`, `"2"`, …), what workflow tools pin.
    pub version: String,
    /// Increasing number per workflow; the latest version has the highest.
    pub seq: i64,
    pub dsl: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A row of `workflow_runs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowRunRecord {
    pub id: String,
    pub tenant_id: String,
    pub workflow_id: String,
    /// The published version that ran, or `""` for the draft.
    pub version: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// JSON object.
    pub inputs: String,
    /// JSON object, once succeeded.
    pub outputs: Option<String>,
    pub error: Option<String>,
    pub elapsed_ms: f64,
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, once finished.
    pub finished_at: Option<i64>,
}

/// A row of `workflow_node_runs`: one executed (succeeded or failed) node of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowNodeRunRecord {
    pub id: String,
    pub run_id: String,
    /// Order of completion within the run, from 0.
    pub node_index: i64,
    pub node_id: String,
    pub node_type: String,
    pub title: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// JSON object.
    pub inputs: String,
    /// JSON object, when succeeded.
    pub outputs: Option<String>,
    pub error: Option<String>,
    pub elapsed_ms: f64,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// What a finished node writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewNodeRun {
    pub node_index: i64,
    pub node_id: String,
    pub node_type: String,
    pub title: String,
    pub status: String,
    pub inputs: String,
    pub outputs: Option<String>,
    pub error: Option<String>,
    pub elapsed_ms: f64,
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOutcome {
    /// `succeeded` or `failed`.
    pub status: String,
    pub outputs: Option<String>,
    pub error: Option<String>,
    pub elapsed_ms: f64,
}

const WORKFLOW_COLUMNS: &str = "id, tenant_id, name, description, dsl, created_by, created_at, updated_at";
const VERSION_COLUMNS: &str = "id, tenant_id, workflow_id, version, seq, dsl, created_at";
const RUN_COLUMNS: &str = "id, tenant_id, workflow_id, version, status, inputs, outputs, error, elapsed_ms, created_by, \
                           created_at, finished_at";
const NODE_COLUMNS: &str =
    "id, run_id, node_index, node_id, node_type, title, status, inputs, outputs, error, elapsed_ms, created_at";

fn workflow_from_row(row: &AnyRow) -> Result<WorkflowRecord, sqlx::Error> {
    Ok(WorkflowRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        dsl: row.try_get("dsl")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn version_from_row(row: &AnyRow) -> Result<WorkflowVersionRecord, sqlx::Error> {
    Ok(WorkflowVersionRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        workflow_id: row.try_get("workflow_id")?,
        version: row.try_get("version")?,
        seq: row.try_get("seq")?,
        dsl: row.try_get("dsl")?,
        created_at: row.try_get("created_at")?,
    })
}

fn run_from_row(row: &AnyRow) -> Result<WorkflowRunRecord, sqlx::Error> {
    Ok(WorkflowRunRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        workflow_id: row.try_get("workflow_id")?,
        version: row.try_get("version")?,
        status: row.try_get("status")?,
        inputs: row.try_get("inputs")?,
        outputs: row.try_get("outputs")?,
        error: row.try_get("error")?,
        elapsed_ms: row.try_get("elapsed_ms")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn node_from_row(row: &AnyRow) -> Result<WorkflowNodeRunRecord, sqlx::Error> {
    Ok(WorkflowNodeRunRecord {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        node_index: row.try_get("node_index")?,
        node_id: row.try_get("node_id")?,
        node_type: row.try_get("node_type")?,
        title: row.try_get("title")?,
        status: row.try_get("status")?,
        inputs: row.try_get("inputs")?,
        outputs: row.try_get("outputs")?,
        error: row.try_get("error")?,
        elapsed_ms: row.try_get("elapsed_ms")?,
        created_at: row.try_get("created_at")?,
    })
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        entity: "workflow",
        id: id.to_owned(),
    }
}

/// Repository for `workflows`, `workflow_versions`, `workflow_runs` and `workflow_node_runs`; obtain with
/// [`Store::workflows`].
#[derive(Debug, Clone, Copy)]
pub struct Workflows<'a> {
    store: &'a Store,
}

impl Store {
    /// The workflow repository.
    pub fn workflows(&self) -> Workflows<'_> {
        Workflows { store: self }
    }
}

impl Workflows<'_> {
    /// Stores an imported workflow.
    pub async fn insert(
        &self,
        tenant_id: &str,
        created_by: &str,
        name: &str,
        description: &str,
        dsl: &str,
    ) -> Result<WorkflowRecord, StoreError> {
        let sql = format!(
            "INSERT INTO workflows ({WORKFLOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {WORKFLOW_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new_id())
            .bind(tenant_id)
            .bind(name)
            .bind(description)
            .bind(dsl)
            .bind(created_by)
            .bind(now_ms())
            .fetch_one(self.store.pool())
            .await?;
        Ok(workflow_from_row(&row)?)
    }

    /// Replaces the draft DSL (and the name and description taken from it).
    pub async fn update(
        &self,
        tenant_id: &str,
        id: &str,
        name: &str,
        description: &str,
        dsl: &str,
    ) -> Result<WorkflowRecord, StoreError> {
        let sql = format!(
            "UPDATE workflows SET name = $3, description = $4, dsl = $5, updated_at = $6 \
             WHERE tenant_id = $1 AND id = $2 RETURNING {WORKFLOW_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .bind(name)
            .bind(description)
            .bind(dsl)
            .bind(now_ms())
            .fetch_optional(self.store.pool())
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(workflow_from_row(&row)?)
    }

    /// The tenant's workflow with this id.
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        let sql = format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(workflow_from_row).transpose()?)
    }

    /// Every workflow of the tenant, newest first.
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<WorkflowRecord>, StoreError> {
        let sql = format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE tenant_id = $1 ORDER BY created_at DESC, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows.iter().map(workflow_from_row).collect::<Result<_, _>>()?)
    }

    /// Deletes a workflow with its versions and runs; `false` when there was none.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        // Children go explicitly so the result does not depend on SQLite's foreign_keys pragma.
        let mut tx = self.store.begin_write().await?;
        sqlx::query(
            "DELETE FROM workflow_node_runs WHERE run_id IN \
             (SELECT id FROM workflow_runs WHERE tenant_id = $1 AND workflow_id = $2)",
        )
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for table in ["workflow_runs", "workflow_versions"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE tenant_id = $1 AND workflow_id = $2"
            )))
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let done = sqlx::query("DELETE FROM workflows WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Publishes the given DSL as the workflow's next version (`"1"`, `"2"`, …). Two concurrent publishes of
    /// the same workflow cannot get the same number: the loser is a [`StoreError::Conflict`].
    pub async fn publish(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        dsl: &str,
    ) -> Result<WorkflowVersionRecord, StoreError> {
        if self.get(tenant_id, workflow_id).await?.is_none() {
            return Err(not_found(workflow_id));
        }
        let seq = self
            .latest_version(tenant_id, workflow_id)
            .await?
            .map_or(1, |v| v.seq + 1);
        let version = seq.to_string();
        let sql = format!(
            "INSERT INTO workflow_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {VERSION_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new_id())
            .bind(tenant_id)
            .bind(workflow_id)
            .bind(&version)
            .bind(seq)
            .bind(dsl)
            .bind(now_ms())
            .fetch_one(self.store.pool())
            .await
            .map_err(|e| {
                map_unique(e, || StoreError::Conflict {
                    entity: "a workflow version",
                    field: "version",
                    value: Some(version.clone()),
                })
            })?;
        Ok(version_from_row(&row)?)
    }

    /// The most recently published version of the workflow.
    pub async fn latest_version(
        &self,
        tenant_id: &str,
        workflow_id: &str,
    ) -> Result<Option<WorkflowVersionRecord>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM workflow_versions WHERE tenant_id = $1 AND workflow_id = $2 \
             ORDER BY seq DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(workflow_id)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(version_from_row).transpose()?)
    }

    /// One published version of the workflow.
    pub async fn version(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        version: &str,
    ) -> Result<Option<WorkflowVersionRecord>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM workflow_versions WHERE tenant_id = $1 AND workflow_id = $2 AND version = $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(workflow_id)
            .bind(version)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(version_from_row).transpose()?)
    }

    /// Every published version of the workflow, newest first.
    pub async fn versions(&self, tenant_id: &str, workflow_id: &str) -> Result<Vec<WorkflowVersionRecord>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM workflow_versions WHERE tenant_id = $1 AND workflow_id = $2 ORDER BY seq DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(workflow_id)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows.iter().map(version_from_row).collect::<Result<_, _>>()?)
    }

    /// Records the start of a run (`status = running`).
    pub async fn start_run(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        version: &str,
        inputs: &str,
        created_by: &str,
    ) -> Result<WorkflowRunRecord, StoreError> {
        let sql = format!(
            "INSERT INTO workflow_runs ({RUN_COLUMNS}) \
             VALUES ($1, $2, $3, $4, 'running', $5, NULL, NULL, 0, $6, $7, NULL) RETURNING {RUN_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new_id())
            .bind(tenant_id)
            .bind(workflow_id)
            .bind(version)
            .bind(inputs)
            .bind(created_by)
            .bind(now_ms())
            .fetch_one(self.store.pool())
            .await?;
        Ok(run_from_row(&row)?)
    }

    /// Records how a run ended.
    pub async fn finish_run(&self, tenant_id: &str, run_id: &str, outcome: &RunOutcome) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE workflow_runs SET status = $3, outputs = $4, error = $5, elapsed_ms = $6, finished_at = $7 \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(run_id)
        .bind(&outcome.status)
        .bind(outcome.outputs.as_deref())
        .bind(outcome.error.as_deref())
        .bind(outcome.elapsed_ms)
        .bind(now_ms())
        .execute(self.store.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                entity: "workflow run",
                id: run_id.to_owned(),
            });
        }
        Ok(())
    }

    /// Records one finished node of a run of the tenant.
    pub async fn add_node_run(
        &self,
        tenant_id: &str,
        run_id: &str,
        node: &NewNodeRun,
    ) -> Result<WorkflowNodeRunRecord, StoreError> {
        if self.run(tenant_id, run_id).await?.is_none() {
            return Err(StoreError::NotFound {
                entity: "workflow run",
                id: run_id.to_owned(),
            });
        }
        let sql = format!(
            "INSERT INTO workflow_node_runs ({NODE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {NODE_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new_id())
            .bind(run_id)
            .bind(node.node_index)
            .bind(&node.node_id)
            .bind(&node.node_type)
            .bind(&node.title)
            .bind(&node.status)
            .bind(&node.inputs)
            .bind(node.outputs.as_deref())
            .bind(node.error.as_deref())
            .bind(node.elapsed_ms)
            .bind(now_ms())
            .fetch_one(self.store.pool())
            .await?;
        Ok(node_from_row(&row)?)
    }

    /// One run of the tenant.
    pub async fn run(&self, tenant_id: &str, run_id: &str) -> Result<Option<WorkflowRunRecord>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM workflow_runs WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(run_id)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(run_from_row).transpose()?)
    }

    /// The latest `limit` runs of a workflow, newest first.
    pub async fn runs(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        limit: i64,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM workflow_runs WHERE tenant_id = $1 AND workflow_id = $2 \
             ORDER BY created_at DESC, id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(workflow_id)
            .bind(limit)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows.iter().map(run_from_row).collect::<Result<_, _>>()?)
    }

    /// The node records of a run of the tenant, in completion order.
    pub async fn node_runs(&self, tenant_id: &str, run_id: &str) -> Result<Vec<WorkflowNodeRunRecord>, StoreError> {
        let columns = NODE_COLUMNS
            .split(", ")
            .map(|c| format!("n.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM workflow_node_runs n JOIN workflow_runs r ON r.id = n.run_id \
             WHERE r.tenant_id = $1 AND n.run_id = $2 ORDER BY n.node_index"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(run_id)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows.iter().map(node_from_row).collect::<Result<_, _>>()?)
    }
}
