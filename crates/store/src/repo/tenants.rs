//! `tenants`: workspaces. Every other tenant-owned row references one and is deleted with it.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{new_id, now_ms};
use crate::{Store, StoreError};

/// A row of `tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRecord {
    /// UUID string.
    pub id: String,
    /// Display name (not unique, as in Dify).
    pub name: String,
    /// The tenant's RSA public key (PEM) used to encrypt credentials; `None` until a key pair is generated.
    pub encrypt_public_key: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

macro_rules! tenant_columns {
    () => {
        "id, name, encrypt_public_key, created_at"
    };
}

fn tenant_from_row(row: &AnyRow) -> Result<TenantRecord, sqlx::Error> {
    Ok(TenantRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        encrypt_public_key: row.try_get("encrypt_public_key")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Repository for `tenants`; obtain with [`Store::tenants`].
#[derive(Debug, Clone, Copy)]
pub struct Tenants<'a> {
    store: &'a Store,
}

impl Store {
    /// The `tenants` repository.
    pub fn tenants(&self) -> Tenants<'_> {
        Tenants { store: self }
    }
}

impl Tenants<'_> {
    /// Creates a tenant with a fresh id and no public key yet.
    pub async fn create(&self, name: &str) -> Result<TenantRecord, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid {
                field: "name",
                reason: "a tenant name must not be empty".into(),
            });
        }
        let row = sqlx::query(concat!(
            "INSERT INTO tenants (id, name, encrypt_public_key, created_at) VALUES ($1, $2, NULL, $3) RETURNING ",
            tenant_columns!()
        ))
        .bind(new_id())
        .bind(name)
        .bind(now_ms())
        .fetch_one(self.store.pool())
        .await?;
        Ok(tenant_from_row(&row)?)
    }

    /// The tenant with this id, if any.
    pub async fn get(&self, id: &str) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(tenant_from_row).transpose()?)
    }

    /// All tenants, oldest first.
    pub async fn list(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants ORDER BY created_at ASC, id ASC"
        ))
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows.iter().map(tenant_from_row).collect::<Result<_, _>>()?)
    }

    /// The oldest tenant with exactly this name (names are not unique).
    pub async fn find_by_name(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants WHERE name = $1 ORDER BY created_at ASC, id ASC LIMIT 1"
        ))
        .bind(name)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.as_ref().map(tenant_from_row).transpose()?)
    }

    /// Stores the tenant's public key (PEM). Errors with `NotFound` for an unknown tenant.
    pub async fn set_public_key(&self, id: &str, public_key_pem: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE tenants SET encrypt_public_key = $2 WHERE id = $1")
            .bind(id)
            .bind(public_key_pem)
            .execute(self.store.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                entity: "tenant",
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    /// Deletes a tenant and, through `ON DELETE CASCADE`, its API keys, credentials and tool files.
    /// Returns whether a row was deleted.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
