//! `tool_files`: metadata of files produced by tools; the bytes live in blob storage under `file_key`.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{new_id, now_ms};
use crate::{Store, StoreError};

/// A row of `tool_files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolFileRecord {
    /// UUID string (appears in `/files/tools/{id}{ext}`).
    pub id: String,
    /// The user the tool ran for.
    pub user_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Conversation the file belongs to, if any.
    pub conversation_id: Option<String>,
    /// Blob storage key, e.g. `tools/{tenant_id}/{uuidhex}.png`.
    pub file_key: String,
    /// MIME type.
    pub mimetype: String,
    /// URL the file was downloaded from, if it was.
    pub original_url: Option<String>,
    /// Display name.
    pub name: String,
    /// Size in bytes; -1 when unknown.
    pub size: i64,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// What [`ToolFiles::insert`] needs (id and timestamp are generated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToolFile {
    /// The user the tool ran for.
    pub user_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Conversation, if any.
    pub conversation_id: Option<String>,
    /// Blob storage key.
    pub file_key: String,
    /// MIME type.
    pub mimetype: String,
    /// Source URL, if downloaded.
    pub original_url: Option<String>,
    /// Display name.
    pub name: String,
    /// Size in bytes, or -1.
    pub size: i64,
}

macro_rules! tool_file_columns {
    () => {
        "id, user_id, tenant_id, conversation_id, file_key, mimetype, original_url, name, size, created_at"
    };
}

fn tool_file_from_row(row: &AnyRow) -> Result<ToolFileRecord, sqlx::Error> {
    Ok(ToolFileRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        tenant_id: row.try_get("tenant_id")?,
        conversation_id: row.try_get("conversation_id")?,
        file_key: row.try_get("file_key")?,
        mimetype: row.try_get("mimetype")?,
        original_url: row.try_get("original_url")?,
        name: row.try_get("name")?,
        size: row.try_get("size")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Repository for `tool_files`; obtain with [`Store::tool_files`].
#[derive(Debug, Clone, Copy)]
pub struct ToolFiles<'a> {
    store: &'a Store,
}

impl Store {
    /// The `tool_files` repository.
    pub fn tool_files(&self) -> ToolFiles<'_> {
        ToolFiles { store: self }
    }
}

impl ToolFiles<'_> {
    /// Records a stored file.
    pub async fn insert(&self, new: &NewToolFile) -> Result<ToolFileRecord, StoreError> {
        let row = sqlx::query(concat!(
            "INSERT INTO tool_files (id, user_id, tenant_id, conversation_id, file_key, mimetype, original_url, ",
            "name, size, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ",
            tool_file_columns!()
        ))
        .bind(new_id())
        .bind(&new.user_id)
        .bind(&new.tenant_id)
        .bind(new.conversation_id.as_deref())
        .bind(&new.file_key)
        .bind(&new.mimetype)
        .bind(new.original_url.as_deref())
        .bind(&new.name)
        .bind(new.size)
        .bind(now_ms())
        .fetch_one(self.store.pool())
        .await?;
        Ok(tool_file_from_row(&row)?)
    }

    /// The file with this id, if it belongs to the tenant.
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Option<ToolFileRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            tool_file_columns!(),
            " FROM tool_files WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.as_ref().map(tool_file_from_row).transpose()?)
    }

    /// The file with this id whatever its tenant. Only for the signed-URL download route, where a valid HMAC
    /// signature over the id is the authorization; everything else must use [`Self::get`].
    pub async fn get_for_signed_url(&self, id: &str) -> Result<Option<ToolFileRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            tool_file_columns!(),
            " FROM tool_files WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.as_ref().map(tool_file_from_row).transpose()?)
    }

    /// Deletes the row (not the blob). Returns whether a row was deleted.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tool_files WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
