//! `tool_builtin_providers`: the credentials a tenant saved for a builtin or plugin tool provider. A tenant can keep
//! several per provider (distinct names); one may be marked default.
//!
//! Runtime fallback order, as in Dify: `is_default DESC, created_at ASC`, then `seq ASC` so that rows created in the
//! same millisecond keep their insertion order.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{get_bool, new_id, now_ms};
use crate::error::map_unique;
use crate::{Store, StoreError};

/// `credential_type` of API-key credentials (Dify's default).
pub const CREDENTIAL_TYPE_API_KEY: &str = "api-key";
/// `credential_type` of OAuth 2 credentials.
pub const CREDENTIAL_TYPE_OAUTH2: &str = "oauth2";
/// `expires_at` of credentials that never expire.
pub const NEVER_EXPIRES: i64 = -1;

/// A row of `tool_builtin_providers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuiltinCredentialRecord {
    /// UUID string (Dify's `credential_id`).
    pub id: String,
    /// Name unique within (tenant, provider), e.g. `"API KEY 1"`.
    pub name: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The user who created it.
    pub user_id: String,
    /// Provider id: short (`time`) or `org/plugin/provider`.
    pub provider: String,
    /// The credential dict with its secret fields encrypted (a JSON object).
    pub encrypted_credentials: serde_json::Value,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Whether this is the provider's default credential.
    pub is_default: bool,
    /// `"api-key"` or `"oauth2"`.
    pub credential_type: String,
    /// Expiry in unix **seconds** (Dify's unit); -1 = never.
    pub expires_at: i64,
}

/// What [`BuiltinCredentials::insert`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBuiltinCredential {
    /// Owning tenant.
    pub tenant_id: String,
    /// Creating user.
    pub user_id: String,
    /// Provider id.
    pub provider: String,
    /// Unique within (tenant, provider).
    pub name: String,
    /// Credential dict with secret fields already encrypted.
    pub encrypted_credentials: serde_json::Value,
    /// `"api-key"` or `"oauth2"`.
    pub credential_type: String,
    /// Unix seconds, or [`NEVER_EXPIRES`].
    pub expires_at: i64,
    /// Mark as default right away (does not clear other rows' flag; use [`BuiltinCredentials::set_default`]).
    pub is_default: bool,
}

/// Fields [`BuiltinCredentials::update`] may change; `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuiltinCredentialUpdate {
    /// New name (must stay unique within tenant and provider).
    pub name: Option<String>,
    /// New credential dict (secret fields encrypted).
    pub encrypted_credentials: Option<serde_json::Value>,
    /// New expiry (unix seconds or -1).
    pub expires_at: Option<i64>,
}

macro_rules! builtin_columns {
    () => {
        "id, name, tenant_id, user_id, provider, encrypted_credentials, created_at, updated_at, is_default, \
         credential_type, expires_at"
    };
}

macro_rules! builtin_order {
    () => {
        " ORDER BY is_default DESC, created_at ASC, seq ASC"
    };
}

fn credential_from_row(row: &AnyRow) -> Result<BuiltinCredentialRecord, StoreError> {
    let raw: String = row.try_get("encrypted_credentials")?;
    let encrypted_credentials = serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt {
        table: "tool_builtin_providers",
        column: "encrypted_credentials",
        reason: format!("not valid JSON: {e}"),
    })?;
    Ok(BuiltinCredentialRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        tenant_id: row.try_get("tenant_id")?,
        user_id: row.try_get("user_id")?,
        provider: row.try_get("provider")?,
        encrypted_credentials,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        is_default: get_bool(row, "is_default")?,
        credential_type: row.try_get("credential_type")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn name_conflict(name: &str) -> impl FnOnce() -> StoreError + '_ {
    move || StoreError::Conflict {
        entity: "a credential of this provider",
        field: "name",
        value: Some(name.to_owned()),
    }
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        entity: "builtin credential",
        id: id.to_owned(),
    }
}

/// Repository for `tool_builtin_providers`; obtain with [`Store::builtin_credentials`].
#[derive(Debug, Clone, Copy)]
pub struct BuiltinCredentials<'a> {
    store: &'a Store,
}

impl Store {
    /// The `tool_builtin_providers` repository.
    pub fn builtin_credentials(&self) -> BuiltinCredentials<'_> {
        BuiltinCredentials { store: self }
    }
}

impl BuiltinCredentials<'_> {
    /// Inserts a credential. A name already used for this (tenant, provider) gives [`StoreError::Conflict`] with
    /// `field = "name"`.
    pub async fn insert(&self, new: &NewBuiltinCredential) -> Result<BuiltinCredentialRecord, StoreError> {
        if new.name.trim().is_empty() {
            return Err(StoreError::Invalid {
                field: "name",
                reason: "a credential name must not be empty".into(),
            });
        }
        let now = now_ms();
        let row = sqlx::query(concat!(
            "INSERT INTO tool_builtin_providers (id, name, tenant_id, user_id, provider, encrypted_credentials, ",
            "created_at, updated_at, is_default, credential_type, expires_at) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10) RETURNING ",
            builtin_columns!()
        ))
        .bind(new_id())
        .bind(&new.name)
        .bind(&new.tenant_id)
        .bind(&new.user_id)
        .bind(&new.provider)
        .bind(new.encrypted_credentials.to_string())
        .bind(now)
        .bind(new.is_default)
        .bind(&new.credential_type)
        .bind(new.expires_at)
        .fetch_one(self.store.pool())
        .await
        .map_err(|e| map_unique(e, name_conflict(&new.name)))?;
        credential_from_row(&row)
    }

    /// The credential with this id, if it belongs to the tenant.
    pub async fn get_by_id(&self, tenant_id: &str, id: &str) -> Result<Option<BuiltinCredentialRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            builtin_columns!(),
            " FROM tool_builtin_providers WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.store.pool())
        .await?;
        row.as_ref().map(credential_from_row).transpose()
    }

    /// The tenant's credentials for a provider, default first, then oldest first.
    pub async fn list(&self, tenant_id: &str, provider: &str) -> Result<Vec<BuiltinCredentialRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            builtin_columns!(),
            " FROM tool_builtin_providers WHERE tenant_id = $1 AND provider = $2",
            builtin_order!()
        ))
        .bind(tenant_id)
        .bind(provider)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(credential_from_row).collect()
    }

    /// Every credential of the tenant across providers, ordered by provider and then as [`Self::list`]
    /// (for re-encryption and exports).
    pub async fn list_for_tenant(&self, tenant_id: &str) -> Result<Vec<BuiltinCredentialRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            builtin_columns!(),
            " FROM tool_builtin_providers WHERE tenant_id = $1 ORDER BY provider ASC, is_default DESC, ",
            "created_at ASC, seq ASC"
        ))
        .bind(tenant_id)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(credential_from_row).collect()
    }

    /// The credential used when the caller names none: the first of [`Self::list`].
    pub async fn default_for(
        &self,
        tenant_id: &str,
        provider: &str,
    ) -> Result<Option<BuiltinCredentialRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            builtin_columns!(),
            " FROM tool_builtin_providers WHERE tenant_id = $1 AND provider = $2",
            builtin_order!(),
            " LIMIT 1"
        ))
        .bind(tenant_id)
        .bind(provider)
        .fetch_optional(self.store.pool())
        .await?;
        row.as_ref().map(credential_from_row).transpose()
    }

    /// Changes name, credentials and/or expiry and bumps `updated_at`. `NotFound` if the tenant has no such row;
    /// `Conflict` on `name` if the new name is taken.
    pub async fn update(
        &self,
        tenant_id: &str,
        id: &str,
        update: &BuiltinCredentialUpdate,
    ) -> Result<BuiltinCredentialRecord, StoreError> {
        if update.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(StoreError::Invalid {
                field: "name",
                reason: "a credential name must not be empty".into(),
            });
        }
        let row = sqlx::query(concat!(
            "UPDATE tool_builtin_providers SET name = COALESCE($3, name), ",
            "encrypted_credentials = COALESCE($4, encrypted_credentials), ",
            "expires_at = COALESCE($5, expires_at), updated_at = $6 ",
            "WHERE tenant_id = $1 AND id = $2 RETURNING ",
            builtin_columns!()
        ))
        .bind(tenant_id)
        .bind(id)
        .bind(update.name.as_deref())
        .bind(update.encrypted_credentials.as_ref().map(|v| v.to_string()))
        .bind(update.expires_at)
        .bind(now_ms())
        .fetch_optional(self.store.pool())
        .await
        .map_err(|e| map_unique(e, name_conflict(update.name.as_deref().unwrap_or_default())))?;
        match row {
            Some(row) => credential_from_row(&row),
            None => Err(not_found(id)),
        }
    }

    /// Deletes one credential of the tenant. Returns whether a row was deleted.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tool_builtin_providers WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Makes `id` the provider's only default credential, atomically. `NotFound` if the tenant has no such
    /// credential for this provider (nothing changes then).
    ///
    /// Unlike Dify, which clears the flag only on the calling user's rows, this clears it on every row of the
    /// (tenant, provider), so there is never more than one default.
    pub async fn set_default(&self, tenant_id: &str, provider: &str, id: &str) -> Result<(), StoreError> {
        // Concurrent calls must not leave two defaults. Under PostgreSQL's READ COMMITTED a single UPDATE would not
        // see a credential inserted (and made default) after its snapshot, so calls for one tenant are serialised on
        // the tenant's row first; the UPDATE that follows then sees every committed credential. SQLite serialises
        // writers anyway (the transaction begins IMMEDIATE). A deadlock victim or a SQLite still busy after its busy
        // timeout rolls back whole and is tried again.
        const ATTEMPTS: u32 = 5;
        let mut attempt = 1;
        loop {
            match self.set_default_once(tenant_id, provider, id).await {
                Err(StoreError::Database(e)) if attempt < ATTEMPTS && is_contention(&e) => {
                    tracing::debug!(attempt, error = %e, "set_default collided with a concurrent writer; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(10 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn set_default_once(&self, tenant_id: &str, provider: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.store.begin_write().await?;
        sqlx::query("UPDATE tenants SET id = id WHERE id = $1")
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(
            "UPDATE tool_builtin_providers SET is_default = (id = $3) WHERE tenant_id = $1 AND provider = $2 \
             AND EXISTS (SELECT 1 FROM tool_builtin_providers WHERE tenant_id = $1 AND provider = $2 AND id = $3)",
        )
        .bind(tenant_id)
        .bind(provider)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many credentials the tenant has for the provider.
    pub async fn count(&self, tenant_id: &str, provider: &str) -> Result<i64, StoreError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM tool_builtin_providers WHERE tenant_id = $1 AND provider = $2")
                .bind(tenant_id)
                .bind(provider)
                .fetch_one(self.store.pool())
                .await?;
        Ok(row.try_get("n")?)
    }

    /// Deletes every credential of the tenant (used when its encryption key is reset, which makes them
    /// unreadable). Returns the number of rows deleted.
    pub async fn delete_all_for_tenant(&self, tenant_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM tool_builtin_providers WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

/// Whether a statement failed only because a concurrent writer got in the way: a PostgreSQL deadlock or
/// serialization failure, or SQLite still busy (or locked) after its busy timeout.
fn is_contention(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    matches!(
        db.code().as_deref(),
        Some("40P01" | "40001" | "5" | "6" | "517" | "261")
    )
}
