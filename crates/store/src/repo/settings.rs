//! `settings`: instance-level key/value pairs (for example the marker that the first admin key was created).

use sqlx::Row;

use crate::db::now_ms;
use crate::{Store, StoreError};

/// Repository for `settings`; obtain with [`Store::settings`].
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    store: &'a Store,
}

impl Store {
    /// The `settings` repository.
    pub fn settings(&self) -> Settings<'_> {
        Settings { store: self }
    }
}

impl Settings<'_> {
    /// The value stored under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub async fn set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Stores `value` only if `key` is absent; returns whether it was stored. Atomic, so of several nodes racing
    /// exactly one gets `true`.
    pub async fn set_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes `key`; returns whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
