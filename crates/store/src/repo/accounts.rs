//! `accounts`: who acts in a tenant. Tenant API keys belong to an account; rows record its id as `user_id`.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{new_id, now_ms};
use crate::error::map_unique;
use crate::{Store, StoreError};

/// Roles, as Dify names them.
pub const ACCOUNT_ROLES: [&str; 4] = ["owner", "admin", "editor", "normal"];

/// A row of `accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// One of [`ACCOUNT_ROLES`].
    pub role: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

fn account_from_row(row: &AnyRow) -> Result<AccountRecord, sqlx::Error> {
    Ok(AccountRecord {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Repository for `accounts`; obtain with [`Store::accounts`].
#[derive(Debug, Clone, Copy)]
pub struct Accounts<'a> {
    store: &'a Store,
}

impl Store {
    /// The `accounts` repository.
    pub fn accounts(&self) -> Accounts<'_> {
        Accounts { store: self }
    }
}

impl Accounts<'_> {
    /// Creates an account; names are unique within a tenant ([`StoreError::Conflict`] on `name`).
    pub async fn create(&self, tenant_id: &str, name: &str, role: &str) -> Result<AccountRecord, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid {
                field: "name",
                reason: "an account name must not be empty".into(),
            });
        }
        if !ACCOUNT_ROLES.contains(&role) {
            return Err(StoreError::Invalid {
                field: "role",
                reason: format!("must be one of {}", ACCOUNT_ROLES.join(", ")),
            });
        }
        let row = sqlx::query(
            "INSERT INTO accounts (id, tenant_id, name, role, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id, tenant_id, name, role, created_at",
        )
        .bind(new_id())
        .bind(tenant_id)
        .bind(name)
        .bind(role)
        .bind(now_ms())
        .fetch_one(self.store.pool())
        .await
        .map_err(|e| {
            map_unique(e, || StoreError::Conflict {
                entity: "an account",
                field: "name",
                value: Some(name.to_owned()),
            })
        })?;
        Ok(account_from_row(&row)?)
    }

    /// The tenant's account with this name, if any.
    pub async fn find_by_name(&self, tenant_id: &str, name: &str) -> Result<Option<AccountRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, tenant_id, name, role, created_at FROM accounts WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.as_ref().map(account_from_row).transpose()?)
    }

    /// The tenant's accounts, oldest first.
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<AccountRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, name, role, created_at FROM accounts WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(tenant_id)
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows.iter().map(account_from_row).collect::<Result<_, _>>()?)
    }
}
