//! `tool_label_bindings`: labels (categories) attached to API and workflow tool providers.
//!
//! Rows carry no tenant (as in Dify): `tool_id` is the provider's globally unique UUID, which callers obtain from a
//! tenant-scoped lookup of the provider first.

use std::collections::BTreeSet;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::db::new_id;
use crate::{Store, StoreError};

/// A row of `tool_label_bindings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelBinding {
    /// UUID string.
    pub id: String,
    /// The provider's id.
    pub tool_id: String,
    /// `"api"` or `"workflow"`.
    pub tool_type: String,
    /// One of the default label names.
    pub label_name: String,
}

fn binding_from_row(row: &AnyRow) -> Result<LabelBinding, sqlx::Error> {
    Ok(LabelBinding {
        id: row.try_get("id")?,
        tool_id: row.try_get("tool_id")?,
        tool_type: row.try_get("tool_type")?,
        label_name: row.try_get("label_name")?,
    })
}

/// Most ids one `IN (...)` query carries; longer lists are split into several queries.
const IN_CHUNK: usize = 500;

/// Repository for `tool_label_bindings`; obtain with [`Store::labels`].
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    store: &'a Store,
}

impl Store {
    /// The `tool_label_bindings` repository.
    pub fn labels(&self) -> Labels<'_> {
        Labels { store: self }
    }
}

impl Labels<'_> {
    /// Replaces the labels of one provider with `labels` (duplicates ignored), atomically.
    pub async fn replace<S: AsRef<str>>(&self, tool_id: &str, tool_type: &str, labels: &[S]) -> Result<(), StoreError> {
        let unique: BTreeSet<&str> = labels.iter().map(AsRef::as_ref).collect();
        let mut tx = self.store.begin_write().await?;
        sqlx::query("DELETE FROM tool_label_bindings WHERE tool_id = $1 AND tool_type = $2")
            .bind(tool_id)
            .bind(tool_type)
            .execute(&mut *tx)
            .await?;
        for label in unique {
            sqlx::query("INSERT INTO tool_label_bindings (id, tool_id, tool_type, label_name) VALUES ($1, $2, $3, $4)")
                .bind(new_id())
                .bind(tool_id)
                .bind(tool_type)
                .bind(label)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The bindings of these providers, ordered by `tool_id` then `label_name`.
    pub async fn list<S: AsRef<str>>(&self, tool_ids: &[S]) -> Result<Vec<LabelBinding>, StoreError> {
        let mut out = Vec::new();
        for chunk in tool_ids.chunks(IN_CHUNK) {
            // Only placeholders are interpolated; the ids themselves are bound.
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, tool_id, tool_type, label_name FROM tool_label_bindings WHERE tool_id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.as_ref().to_owned());
            }
            let rows = query.fetch_all(self.store.pool()).await?;
            for row in &rows {
                out.push(binding_from_row(row)?);
            }
        }
        out.sort_by(|a, b| (&a.tool_id, &a.label_name).cmp(&(&b.tool_id, &b.label_name)));
        Ok(out)
    }

    /// Removes every label of one provider (when the provider is deleted). Returns the number removed.
    pub async fn delete_for_tool(&self, tool_id: &str, tool_type: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM tool_label_bindings WHERE tool_id = $1 AND tool_type = $2")
            .bind(tool_id)
            .bind(tool_type)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
