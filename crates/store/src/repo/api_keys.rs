//! `api_keys`: bearer keys for toolplane's own APIs. Only the SHA-256 of a key is stored; a `NULL` tenant marks an
//! instance administrator key.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{new_id, now_ms};
use crate::error::map_unique;
use crate::{Store, StoreError};

/// A row of `api_keys` (the hash is deliberately not part of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// UUID string.
    pub id: String,
    /// Owning tenant; `None` for an admin key.
    pub tenant_id: Option<String>,
    /// Human label.
    pub name: String,
    /// The first characters of the key, for listings.
    pub key_prefix: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last successful authentication, if any.
    pub last_used_at: Option<i64>,
    /// The account a tenant key acts as; `None` for admin keys.
    pub account_id: Option<String>,
}

impl ApiKeyRecord {
    /// Whether this is an instance administrator key.
    pub fn is_admin(&self) -> bool {
        self.tenant_id.is_none()
    }
}

macro_rules! api_key_columns {
    () => {
        "id, tenant_id, name, key_prefix, created_at, last_used_at, account_id"
    };
}

fn api_key_from_row(row: &AnyRow) -> Result<ApiKeyRecord, sqlx::Error> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        key_prefix: row.try_get("key_prefix")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        account_id: row.try_get("account_id")?,
    })
}

/// Longest accepted `key_prefix`.
pub const MAX_KEY_PREFIX_LEN: usize = 16;

/// Repository for `api_keys`; obtain with [`Store::api_keys`].
#[derive(Debug, Clone, Copy)]
pub struct ApiKeys<'a> {
    store: &'a Store,
}

impl Store {
    /// The `api_keys` repository.
    pub fn api_keys(&self) -> ApiKeys<'_> {
        ApiKeys { store: self }
    }
}

impl ApiKeys<'_> {
    /// Stores a new key. `key_hash` must be the lowercase hex SHA-256 of the key (64 characters); a hash that is
    /// already stored gives [`StoreError::Conflict`] on `key_hash`.
    pub async fn create(
        &self,
        tenant_id: Option<&str>,
        name: &str,
        key_hash: &str,
        key_prefix: &str,
    ) -> Result<ApiKeyRecord, StoreError> {
        validate_hash(key_hash)?;
        if key_prefix.is_empty() || key_prefix.chars().count() > MAX_KEY_PREFIX_LEN {
            return Err(StoreError::Invalid {
                field: "key_prefix",
                reason: format!("must be 1 to {MAX_KEY_PREFIX_LEN} characters"),
            });
        }
        let row = sqlx::query(concat!(
            "INSERT INTO api_keys (id, tenant_id, name, key_hash, key_prefix, created_at, last_used_at) ",
            "VALUES ($1, $2, $3, $4, $5, $6, NULL) RETURNING ",
            api_key_columns!()
        ))
        .bind(new_id())
        .bind(tenant_id)
        .bind(name)
        .bind(key_hash)
        .bind(key_prefix)
        .bind(now_ms())
        .fetch_one(self.store.pool())
        .await
        .map_err(|e| {
            map_unique(e, || StoreError::Conflict {
                entity: "an API key",
                field: "key_hash",
                value: None,
            })
        })?;
        Ok(api_key_from_row(&row)?)
    }

    /// Binds a tenant key to an account of the same tenant.
    pub async fn set_account(&self, tenant_id: &str, id: &str, account_id: &str) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET account_id = $3 WHERE id = $1 AND tenant_id = $2 \
             AND EXISTS (SELECT 1 FROM accounts WHERE accounts.id = $3 AND accounts.tenant_id = $2)",
        )
        .bind(id)
        .bind(tenant_id)
        .bind(account_id)
        .execute(self.store.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                entity: "API key or account",
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    /// The key whose hash this is (used to authenticate; not tenant-scoped because the key decides the tenant).
    pub async fn find_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE key_hash = $1"
        ))
        .bind(key_hash)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.as_ref().map(api_key_from_row).transpose()?)
    }

    /// Keys of one tenant (`None`: the admin keys), oldest first.
    pub async fn list(&self, tenant_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE tenant_id IS NOT DISTINCT FROM $1 ORDER BY created_at ASC, id ASC"
        ))
        .bind(tenant_id)
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows.iter().map(api_key_from_row).collect::<Result<_, _>>()?)
    }

    /// Deletes a key of this tenant (`None`: an admin key). Returns whether a row was deleted.
    pub async fn delete(&self, tenant_id: Option<&str>, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2")
            .bind(id)
            .bind(tenant_id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records that the key was just used.
    pub async fn touch_last_used(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms())
            .execute(self.store.pool())
            .await?;
        Ok(())
    }
}

fn validate_hash(key_hash: &str) -> Result<(), StoreError> {
    let ok = key_hash.len() == 64
        && key_hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            field: "key_hash",
            reason: "expected the lowercase hex SHA-256 of the key (64 characters of 0-9a-f)".into(),
        })
    }
}
