//! The plugin database: its own pool, migrations and queries, on SQLite or PostgreSQL through sqlx's `Any` driver.
//!
//! The conventions are toolplane-store's: `$N` placeholders, `TEXT` ids, `BIGINT` unix-millisecond timestamps,
//! booleans as `INTEGER` 0/1 on SQLite and `BOOLEAN` on PostgreSQL. Migrations are recorded in a table of their own,
//! `plugin_daemon_migrations`, so the plugin tables can share a database with toolplane's own tables without the
//! two migration histories colliding.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyPool, AssertSqlSafe, ConnectOptions, Connection, Executor, Row};

use crate::error::DaemonError;

/// The database behind the plugin tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbBackend {
    /// An SQLite file (the default: `plugin.db` in the data folder).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// `(version, description, sqlite sql, postgres sql)`, oldest first.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../migrations/sqlite/0001_initial.sql"),
    include_str!("../migrations/postgres/0001_initial.sql"),
)];

/// The per-tenant category tables of the original, with the declaration key each one's provider name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderCategory {
    /// `tool_installations`, provider = `declaration.tool.identity.name`.
    Tool,
    /// `ai_model_installations`, provider = `declaration.model.provider`.
    Model,
    /// `agent_strategy_installations`, provider = `declaration.agent_strategy.identity.name`.
    AgentStrategy,
    /// `datasource_installations`, provider = `declaration.datasource.identity.name`.
    Datasource,
    /// `trigger_installations`, provider = `declaration.trigger.identity.name`.
    Trigger,
}

impl ProviderCategory {
    /// Every category.
    pub const ALL: [ProviderCategory; 5] = [
        Self::Tool,
        Self::Model,
        Self::AgentStrategy,
        Self::Datasource,
        Self::Trigger,
    ];

    /// The table holding this category's installations.
    pub fn table(self) -> &'static str {
        match self {
            Self::Tool => "tool_installations",
            Self::Model => "ai_model_installations",
            Self::AgentStrategy => "agent_strategy_installations",
            Self::Datasource => "datasource_installations",
            Self::Trigger => "trigger_installations",
        }
    }

    /// The key of this category's provider inside a plugin declaration.
    pub fn declaration_key(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Model => "model",
            Self::AgentStrategy => "agent_strategy",
            Self::Datasource => "datasource",
            Self::Trigger => "trigger",
        }
    }

    /// The provider name this category's declaration gives, if the declaration has one.
    pub fn provider_name(self, declaration: &Value) -> Option<String> {
        let provider = declaration.get(self.declaration_key())?;
        let name = match self {
            Self::Model => provider.get("provider"),
            _ => provider.pointer("/identity/name"),
        };
        name.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

/// One row of `plugin_installations`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallationRow {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub tenant_id: String,
    pub plugin_id: String,
    pub plugin_unique_identifier: String,
    pub runtime_type: String,
    pub endpoints_setups: i64,
    pub endpoints_active: i64,
    pub source: String,
    pub meta: Value,
}

/// One row of a category table (`tool_installations`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRow {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub tenant_id: String,
    pub provider: String,
    pub plugin_unique_identifier: String,
    pub plugin_id: String,
}

/// Status of an install task and of each plugin in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Running,
    Success,
    Failed,
}

impl TaskStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }

    /// Whether the status is final.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Success | Self::Failed)
    }

    fn parse(s: &str) -> Result<Self, DaemonError> {
        match s {
            "pending" => Ok(Self::Pending),
            "running" => Ok(Self::Running),
            "success" => Ok(Self::Success),
            "failed" => Ok(Self::Failed),
            other => Err(DaemonError::Internal(format!("unknown install task status {other:?}"))),
        }
    }
}

/// One plugin of an install task, in the original's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPlugin {
    pub plugin_unique_identifier: String,
    pub plugin_id: String,
    pub status: TaskStatus,
    pub message: String,
    pub icon: String,
    #[serde(default)]
    pub icon_dark: String,
    pub labels: Value,
    #[serde(default)]
    pub source: String,
}

/// One row of `install_tasks`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub status: TaskStatus,
    pub tenant_id: String,
    pub total_plugins: i64,
    pub completed_plugins: i64,
    pub plugins: Vec<TaskPlugin>,
}

/// What an installation records beyond the tenant and identifier.
#[derive(Debug, Clone)]
pub struct NewInstallation<'a> {
    pub tenant_id: &'a str,
    pub plugin_unique_identifier: &'a str,
    pub plugin_id: &'a str,
    pub source: &'a str,
    pub meta: &'a Value,
    pub declaration: &'a Value,
}

/// Result of removing a reference to a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// Unique identifiers whose `refers` reached zero and whose `plugins` row was deleted.
    pub unreferenced: Vec<String>,
}

/// The plugin database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PluginDb {
    pool: AnyPool,
    backend: DbBackend,
    installed: Arc<InstalledCache>,
}

/// `(tenant, plugin id) → installed unique identifier`, so that a dispatch call (one per tool call) does not query
/// the database. Every write to `plugin_installations` goes through [`PluginDb`], which forgets the entry it changes
/// after committing; the generation counter keeps a lookup that read the table before such a write from caching
/// what it read. Only installed plugins are cached (misses always ask the database).
///
/// The cache belongs to one `PluginDb` (and its clones): another process writing the same database is not seen
/// until this one restarts, as with the original daemon's in-process caches.
#[derive(Debug, Default)]
struct InstalledCache {
    /// Guarded together with `generation` changes: [`InstalledCache::forget`] bumps it under the lock.
    entries: Mutex<HashMap<(String, String), String>>,
    generation: AtomicU64,
}

impl InstalledCache {
    fn get(&self, tenant_id: &str, plugin_id: &str) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(&(tenant_id.to_owned(), plugin_id.to_owned())).cloned()
    }

    /// Caches what a lookup that started at `generation` read, unless a write happened since.
    fn put(&self, generation: u64, tenant_id: &str, plugin_id: &str, unique_identifier: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) == generation {
            entries.insert(
                (tenant_id.to_owned(), plugin_id.to_owned()),
                unique_identifier.to_owned(),
            );
        }
    }

    fn forget(&self, tenant_id: &str, plugin_id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(&(tenant_id.to_owned(), plugin_id.to_owned()));
    }
}

impl PluginDb {
    /// Opens a pool on `url` (`sqlite://file?mode=rwc`, `sqlite::memory:`, `postgres://…`) and applies pending
    /// migrations.
    pub async fn open(url: &str) -> Result<Self, DaemonError> {
        sqlx::any::install_default_drivers();
        let setup = |e: sqlx::Error| DaemonError::DatabaseSetup(format!("opening the plugin database failed: {e}"));
        let backend = if url.starts_with("sqlite:") {
            DbBackend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DbBackend::Postgres
        } else {
            return Err(DaemonError::DatabaseSetup(
                "PLUGIN_DB_URL must start with sqlite: or postgres://".into(),
            ));
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(30));
        let mut url = Cow::Borrowed(url);
        if backend == DbBackend::Sqlite {
            if url.contains(":memory:") || url.contains("mode=memory") {
                options = options
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            } else {
                if !url.contains("mode=") {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    url = Cow::Owned(format!("{url}{sep}mode=rwc"));
                }
                if let Some(parent) = sqlite_path(&url).and_then(|p| p.parent().map(Path::to_path_buf))
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(&parent).map_err(|e| {
                        DaemonError::DatabaseSetup(format!("creating {} failed: {e}", parent.display()))
                    })?;
                }
                let conn = SqliteConnectOptions::from_str(&url)
                    .map_err(setup)?
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(5))
                    .connect()
                    .await
                    .map_err(setup)?;
                conn.close().await.map_err(setup)?;
            }
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await.map_err(setup)?;
        let db = Self {
            pool,
            backend,
            installed: Arc::default(),
        };
        db.migrate().await?;
        Ok(db)
    }

    /// The pool, for the queries of other modules (endpoints).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a write transaction. SQLite's deferred `BEGIN` takes the write lock only at the first write, and in WAL
    /// mode such a transaction fails at once with "database is locked" (busy_timeout does not apply) when another
    /// writer committed after it started reading; parallel installs hit that. `BEGIN IMMEDIATE` takes the lock up
    /// front, where busy_timeout does wait.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            DbBackend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            DbBackend::Postgres => self.pool.begin().await,
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), DaemonError> {
        let fail = |e: sqlx::Error| DaemonError::DatabaseSetup(format!("migrating the plugin database failed: {e}"));
        self.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS plugin_daemon_migrations (version BIGINT PRIMARY KEY, \
                 description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .await
            .map_err(fail)?;
        for &(version, description, sqlite, postgres) in MIGRATIONS {
            let mut tx = self.pool.begin().await.map_err(fail)?;
            let done = sqlx::query("SELECT version FROM plugin_daemon_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail)?;
            if done.is_some() {
                continue;
            }
            let sql = match self.backend {
                DbBackend::Sqlite => sqlite,
                DbBackend::Postgres => postgres,
            };
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            sqlx::query("INSERT INTO plugin_daemon_migrations (version, description, applied_at) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(description)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            tracing::info!(version, description, "plugin database migrated");
        }
        Ok(())
    }

    // ---- declarations and readmes -------------------------------------------------------------------------------

    /// Records an uploaded package's declaration; an existing one for the identifier is kept (uploads are
    /// idempotent).
    pub async fn save_declaration(
        &self,
        unique_identifier: &str,
        plugin_id: &str,
        declaration: &Value,
        readmes: &[(String, String)],
    ) -> Result<(), DaemonError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO plugin_declarations (id, created_at, updated_at, plugin_unique_identifier, plugin_id, \
             declaration) VALUES ($1, $2, $2, $3, $4, $5) ON CONFLICT (plugin_unique_identifier) DO NOTHING",
        )
        .bind(new_id())
        .bind(now)
        .bind(unique_identifier)
        .bind(plugin_id)
        .bind(serde_json::to_string(declaration)?)
        .execute(&mut *tx)
        .await?;
        for (language, content) in readmes {
            sqlx::query(
                "INSERT INTO plugin_readme_records (id, created_at, updated_at, plugin_unique_identifier, language, \
                 content) VALUES ($1, $2, $2, $3, $4, $5) ON CONFLICT (plugin_unique_identifier, language) DO NOTHING",
            )
            .bind(new_id())
            .bind(now)
            .bind(unique_identifier)
            .bind(language)
            .bind(content)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The stored declaration of an uploaded package.
    pub async fn declaration(&self, unique_identifier: &str) -> Result<Option<Value>, DaemonError> {
        let row = sqlx::query("SELECT declaration FROM plugin_declarations WHERE plugin_unique_identifier = $1")
            .bind(unique_identifier)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(serde_json::from_str(&row.try_get::<String, _>("declaration")?)?)),
            None => Ok(None),
        }
    }

    /// The readme of a package in one language.
    pub async fn readme(&self, unique_identifier: &str, language: &str) -> Result<Option<String>, DaemonError> {
        let row = sqlx::query(
            "SELECT content FROM plugin_readme_records WHERE plugin_unique_identifier = $1 AND language = $2",
        )
        .bind(unique_identifier)
        .bind(language)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get::<String, _>("content")).transpose()?)
    }

    // ---- plugins ------------------------------------------------------------------------------------------------

    /// Whether a `plugins` row (an installed, runnable package) exists for the identifier.
    pub async fn plugin_exists(&self, unique_identifier: &str) -> Result<bool, DaemonError> {
        Ok(self.plugin_refers(unique_identifier).await?.is_some())
    }

    /// The `refers` count of a plugin, `None` when it has no `plugins` row.
    pub async fn plugin_refers(&self, unique_identifier: &str) -> Result<Option<i64>, DaemonError> {
        let row = sqlx::query("SELECT refers FROM plugins WHERE plugin_unique_identifier = $1")
            .bind(unique_identifier)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<i64, _>("refers")).transpose()?)
    }

    // ---- installations ------------------------------------------------------------------------------------------

    /// Installs a plugin for a tenant in one transaction: the `plugins` row (created if needed, `refers + 1`), the
    /// `plugin_installations` row and one row per category provider the declaration has. Fails with
    /// [`DaemonError::BadRequest`] when the tenant already has a version of the plugin.
    pub async fn install(&self, new: &NewInstallation<'_>) -> Result<InstallationRow, DaemonError> {
        self.install_as(new, "local", None).await
    }

    /// [`PluginDb::install`] for a remote-debugging plugin: runtime type `remote`, and the `plugins` row keeps the
    /// declaration in `remote_declaration`, as the original does.
    pub async fn install_remote(&self, new: &NewInstallation<'_>) -> Result<InstallationRow, DaemonError> {
        self.install_as(new, "remote", Some(new.declaration)).await
    }

    async fn install_as(
        &self,
        new: &NewInstallation<'_>,
        runtime_type: &str,
        remote_declaration: Option<&Value>,
    ) -> Result<InstallationRow, DaemonError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(
            "SELECT plugin_unique_identifier FROM plugin_installations WHERE tenant_id = $1 AND plugin_id = $2",
        )
        .bind(new.tenant_id)
        .bind(new.plugin_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let current: String = row.try_get("plugin_unique_identifier")?;
            return Err(DaemonError::BadRequest(format!(
                "plugin {} is already installed in this workspace as {current}; uninstall it or use install/upgrade",
                new.plugin_id
            )));
        }
        let remote_declaration = remote_declaration.map(serde_json::to_string).transpose()?;
        let reference = Reference {
            unique_identifier: new.plugin_unique_identifier,
            plugin_id: new.plugin_id,
            source: new.source,
            install_type: runtime_type,
            remote_declaration: remote_declaration.as_deref(),
        };
        add_reference_as(&mut tx, &reference, now).await?;
        let id = new_id();
        sqlx::query(
            "INSERT INTO plugin_installations (id, created_at, updated_at, tenant_id, plugin_id, \
             plugin_unique_identifier, runtime_type, endpoints_setups, endpoints_active, source, meta) \
             VALUES ($1, $2, $2, $3, $4, $5, $6, 0, 0, $7, $8)",
        )
        .bind(&id)
        .bind(now)
        .bind(new.tenant_id)
        .bind(new.plugin_id)
        .bind(new.plugin_unique_identifier)
        .bind(runtime_type)
        .bind(new.source)
        .bind(serde_json::to_string(new.meta)?)
        .execute(&mut *tx)
        .await?;
        insert_providers(
            &mut tx,
            new.tenant_id,
            new.plugin_id,
            new.plugin_unique_identifier,
            new.declaration,
            now,
        )
        .await?;
        tx.commit().await?;
        self.installed.forget(new.tenant_id, new.plugin_id);
        Ok(InstallationRow {
            id,
            created_at: now,
            updated_at: now,
            tenant_id: new.tenant_id.to_owned(),
            plugin_id: new.plugin_id.to_owned(),
            plugin_unique_identifier: new.plugin_unique_identifier.to_owned(),
            runtime_type: runtime_type.into(),
            endpoints_setups: 0,
            endpoints_active: 0,
            source: new.source.to_owned(),
            meta: new.meta.clone(),
        })
    }

    /// Moves a tenant's installation from `original` to `new.plugin_unique_identifier` in one transaction: the new
    /// plugin gains a reference, the original loses one (and its `plugins` row goes when nothing refers to it), and
    /// the category rows are replaced.
    pub async fn upgrade(&self, original: &str, new: &NewInstallation<'_>) -> Result<Released, DaemonError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE plugin_installations SET plugin_unique_identifier = $1, source = $2, meta = $3, updated_at = $4 \
             WHERE tenant_id = $5 AND plugin_id = $6 AND plugin_unique_identifier = $7",
        )
        .bind(new.plugin_unique_identifier)
        .bind(new.source)
        .bind(serde_json::to_string(new.meta)?)
        .bind(now)
        .bind(new.tenant_id)
        .bind(new.plugin_id)
        .bind(original)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(DaemonError::PluginNotFound(format!(
                "plugin {original} is not installed in this workspace, so it cannot be upgraded"
            )));
        }
        add_reference(&mut tx, new.plugin_unique_identifier, new.plugin_id, new.source, now).await?;
        delete_providers(&mut tx, new.tenant_id, new.plugin_id).await?;
        insert_providers(
            &mut tx,
            new.tenant_id,
            new.plugin_id,
            new.plugin_unique_identifier,
            new.declaration,
            now,
        )
        .await?;
        let released = remove_reference(&mut tx, original).await?;
        tx.commit().await?;
        self.installed.forget(new.tenant_id, new.plugin_id);
        Ok(Released {
            unreferenced: released.into_iter().collect(),
        })
    }

    /// Removes a tenant's installation (by installation id), its category rows and endpoints, and one reference to
    /// its plugin. Returns the removed installation and what is no longer referenced.
    pub async fn uninstall(
        &self,
        tenant_id: &str,
        installation_id: &str,
    ) -> Result<(InstallationRow, Released), DaemonError> {
        self.uninstall_as(tenant_id, installation_id, false).await
    }

    /// Removes a remote-debugging installation when its connection ends. Its endpoints stay, so a plugin that
    /// reconnects keeps them (as the original), and the declaration of an identifier nothing refers to any more is
    /// deleted (every code change of a debugged plugin makes a new identifier).
    pub async fn uninstall_remote(
        &self,
        tenant_id: &str,
        installation_id: &str,
    ) -> Result<(InstallationRow, Released), DaemonError> {
        let (row, released) = self.uninstall_as(tenant_id, installation_id, true).await?;
        self.delete_declarations(&released.unreferenced).await?;
        Ok((row, released))
    }

    /// Deletes the declarations of these identifiers (remote-debugging ones nothing refers to any more: they have
    /// no package that could be installed again).
    pub async fn delete_declarations(&self, unique_identifiers: &[String]) -> Result<(), DaemonError> {
        for uid in unique_identifiers {
            sqlx::query("DELETE FROM plugin_declarations WHERE plugin_unique_identifier = $1")
                .bind(uid)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Every remote-debugging installation (of every tenant).
    pub async fn remote_installations(&self) -> Result<Vec<InstallationRow>, DaemonError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INSTALLATION_COLUMNS} FROM plugin_installations WHERE runtime_type = 'remote'"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(installation_from_row).collect()
    }

    async fn uninstall_as(
        &self,
        tenant_id: &str,
        installation_id: &str,
        keep_endpoints: bool,
    ) -> Result<(InstallationRow, Released), DaemonError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INSTALLATION_COLUMNS} FROM plugin_installations WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant_id)
        .bind(installation_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(DaemonError::PluginNotFound(format!(
                "plugin installation {installation_id} not found in this workspace"
            )));
        };
        let installation = installation_from_row(&row)?;
        sqlx::query("DELETE FROM plugin_installations WHERE id = $1")
            .bind(installation_id)
            .execute(&mut *tx)
            .await?;
        delete_providers(&mut tx, tenant_id, &installation.plugin_id).await?;
        if !keep_endpoints {
            sqlx::query("DELETE FROM endpoints WHERE tenant_id = $1 AND plugin_id = $2")
                .bind(tenant_id)
                .bind(&installation.plugin_id)
                .execute(&mut *tx)
                .await?;
        }
        let released = remove_reference(&mut tx, &installation.plugin_unique_identifier).await?;
        tx.commit().await?;
        self.installed.forget(tenant_id, &installation.plugin_id);
        Ok((
            installation,
            Released {
                unreferenced: released.into_iter().collect(),
            },
        ))
    }

    /// A tenant's installations, newest first, with the total count.
    pub async fn installations(
        &self,
        tenant_id: &str,
        page: i64,
        page_size: i64,
    ) -> Result<(Vec<InstallationRow>, i64), DaemonError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INSTALLATION_COLUMNS} FROM plugin_installations WHERE tenant_id = $1 \
             ORDER BY created_at DESC, id ASC LIMIT $2 OFFSET $3"
        )))
        .bind(tenant_id)
        .bind(page_size)
        .bind((page - 1) * page_size)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM plugin_installations WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok((rows.iter().map(installation_from_row).collect::<Result<_, _>>()?, total))
    }

    /// Every installation of a tenant (for filtering by category).
    pub async fn all_installations(&self, tenant_id: &str) -> Result<Vec<InstallationRow>, DaemonError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INSTALLATION_COLUMNS} FROM plugin_installations WHERE tenant_id = $1 \
             ORDER BY created_at DESC, id ASC"
        )))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(installation_from_row).collect()
    }

    /// A tenant's installation of a plugin id.
    pub async fn installation_by_plugin_id(
        &self,
        tenant_id: &str,
        plugin_id: &str,
    ) -> Result<Option<InstallationRow>, DaemonError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INSTALLATION_COLUMNS} FROM plugin_installations WHERE tenant_id = $1 AND plugin_id = $2"
        )))
        .bind(tenant_id)
        .bind(plugin_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(installation_from_row).transpose()
    }

    /// The unique identifier of the version of `plugin_id` the tenant has installed, from memory after the first
    /// lookup (see [`InstalledCache`]); what the dispatch routes need on every call.
    pub async fn installed_unique_identifier(
        &self,
        tenant_id: &str,
        plugin_id: &str,
    ) -> Result<Option<String>, DaemonError> {
        if let Some(uid) = self.installed.get(tenant_id, plugin_id) {
            return Ok(Some(uid));
        }
        // Boxed: inline, the query's future would make this one, and the dispatch handler's future that every
        // request moves through the HTTP layers, kilobytes larger even when memory answers.
        Box::pin(self.installed_unique_identifier_from_db(tenant_id, plugin_id)).await
    }

    async fn installed_unique_identifier_from_db(
        &self,
        tenant_id: &str,
        plugin_id: &str,
    ) -> Result<Option<String>, DaemonError> {
        let generation = self.installed.generation.load(Ordering::Acquire);
        let row = sqlx::query(
            "SELECT plugin_unique_identifier FROM plugin_installations WHERE tenant_id = $1 AND plugin_id = $2",
        )
        .bind(tenant_id)
        .bind(plugin_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let uid: String = row.try_get("plugin_unique_identifier")?;
        self.installed.put(generation, tenant_id, plugin_id, &uid);
        Ok(Some(uid))
    }

    /// A tenant's category rows, oldest first, paged.
    pub async fn providers(
        &self,
        category: ProviderCategory,
        tenant_id: &str,
        page: i64,
        page_size: i64,
    ) -> Result<Vec<ProviderRow>, DaemonError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROVIDER_COLUMNS} FROM {} WHERE tenant_id = $1 ORDER BY created_at ASC, id ASC \
             LIMIT $2 OFFSET $3",
            category.table()
        )))
        .bind(tenant_id)
        .bind(page_size)
        .bind((page - 1) * page_size)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(provider_from_row).collect()
    }

    /// One category row of a tenant by plugin id and provider name.
    pub async fn provider(
        &self,
        category: ProviderCategory,
        tenant_id: &str,
        plugin_id: &str,
        provider: &str,
    ) -> Result<Option<ProviderRow>, DaemonError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROVIDER_COLUMNS} FROM {} WHERE tenant_id = $1 AND plugin_id = $2 AND provider = $3",
            category.table()
        )))
        .bind(tenant_id)
        .bind(plugin_id)
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(provider_from_row).transpose()
    }

    // ---- install tasks ------------------------------------------------------------------------------------------

    /// Creates a task.
    pub async fn create_task(&self, tenant_id: &str, plugins: Vec<TaskPlugin>) -> Result<TaskRow, DaemonError> {
        let now = now_ms();
        let task = TaskRow {
            id: new_id(),
            created_at: now,
            updated_at: now,
            status: TaskStatus::Running,
            tenant_id: tenant_id.to_owned(),
            total_plugins: i64::try_from(plugins.len()).unwrap_or(i64::MAX),
            completed_plugins: 0,
            plugins,
        };
        sqlx::query(
            "INSERT INTO install_tasks (id, created_at, updated_at, status, tenant_id, total_plugins, \
             completed_plugins, plugins) VALUES ($1, $2, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&task.id)
        .bind(now)
        .bind(task.status.as_str())
        .bind(tenant_id)
        .bind(task.total_plugins)
        .bind(task.completed_plugins)
        .bind(serde_json::to_string(&task.plugins)?)
        .execute(&self.pool)
        .await?;
        Ok(task)
    }

    /// Writes a task's status, counters and plugins. Returns false when the task was deleted meanwhile.
    pub async fn save_task(&self, task: &TaskRow) -> Result<bool, DaemonError> {
        let done = sqlx::query(
            "UPDATE install_tasks SET status = $1, completed_plugins = $2, plugins = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(task.status.as_str())
        .bind(task.completed_plugins)
        .bind(serde_json::to_string(&task.plugins)?)
        .bind(now_ms())
        .bind(&task.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// One task of a tenant.
    pub async fn task(&self, tenant_id: &str, task_id: &str) -> Result<Option<TaskRow>, DaemonError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM install_tasks WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant_id)
        .bind(task_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    /// A tenant's tasks, newest first.
    pub async fn tasks(&self, tenant_id: &str, page: i64, page_size: i64) -> Result<Vec<TaskRow>, DaemonError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM install_tasks WHERE tenant_id = $1 ORDER BY created_at DESC, id ASC \
             LIMIT $2 OFFSET $3"
        )))
        .bind(tenant_id)
        .bind(page_size)
        .bind((page - 1) * page_size)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Deletes one task of a tenant; false when there was none.
    pub async fn delete_task(&self, tenant_id: &str, task_id: &str) -> Result<bool, DaemonError> {
        let done = sqlx::query("DELETE FROM install_tasks WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(task_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes every task of a tenant.
    pub async fn delete_all_tasks(&self, tenant_id: &str) -> Result<u64, DaemonError> {
        let done = sqlx::query("DELETE FROM install_tasks WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Every task still pending or running (of any tenant).
    pub async fn unfinished_tasks(&self) -> Result<Vec<TaskRow>, DaemonError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM install_tasks WHERE status = 'pending' OR status = 'running'"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }
}

const INSTALLATION_COLUMNS: &str = "id, created_at, updated_at, tenant_id, plugin_id, plugin_unique_identifier, \
     runtime_type, endpoints_setups, endpoints_active, source, meta";
const PROVIDER_COLUMNS: &str = "id, created_at, updated_at, tenant_id, provider, plugin_unique_identifier, plugin_id";
const TASK_COLUMNS: &str = "id, created_at, updated_at, status, tenant_id, total_plugins, completed_plugins, plugins";

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

async fn add_reference(
    tx: &mut Tx<'_>,
    unique_identifier: &str,
    plugin_id: &str,
    source: &str,
    now: i64,
) -> Result<(), DaemonError> {
    let reference = Reference {
        unique_identifier,
        plugin_id,
        source,
        install_type: "local",
        remote_declaration: None,
    };
    add_reference_as(tx, &reference, now).await
}

/// The `plugins` row a reference is added to.
struct Reference<'a> {
    unique_identifier: &'a str,
    plugin_id: &'a str,
    source: &'a str,
    /// `local` or `remote`.
    install_type: &'a str,
    /// The declaration JSON of a remote plugin.
    remote_declaration: Option<&'a str>,
}

async fn add_reference_as(tx: &mut Tx<'_>, reference: &Reference<'_>, now: i64) -> Result<(), DaemonError> {
    let unique_identifier = reference.unique_identifier;
    sqlx::query(
        "INSERT INTO plugins (id, created_at, updated_at, plugin_unique_identifier, plugin_id, refers, install_type, \
         manifest_type, remote_declaration, source) VALUES ($1, $2, $2, $3, $4, 0, $5, 'plugin', $6, $7) \
         ON CONFLICT (plugin_unique_identifier) DO NOTHING",
    )
    .bind(new_id())
    .bind(now)
    .bind(unique_identifier)
    .bind(reference.plugin_id)
    .bind(reference.install_type)
    .bind(reference.remote_declaration)
    .bind(reference.source)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE plugins SET refers = refers + 1, updated_at = $1 WHERE plugin_unique_identifier = $2")
        .bind(now)
        .bind(unique_identifier)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `refers - 1`; deletes the row and returns the identifier when nothing refers to it any more.
async fn remove_reference(tx: &mut Tx<'_>, unique_identifier: &str) -> Result<Option<String>, DaemonError> {
    sqlx::query("UPDATE plugins SET refers = refers - 1, updated_at = $1 WHERE plugin_unique_identifier = $2")
        .bind(now_ms())
        .bind(unique_identifier)
        .execute(&mut **tx)
        .await?;
    let deleted = sqlx::query("DELETE FROM plugins WHERE plugin_unique_identifier = $1 AND refers <= 0")
        .bind(unique_identifier)
        .execute(&mut **tx)
        .await?;
    Ok((deleted.rows_affected() > 0).then(|| unique_identifier.to_owned()))
}

async fn insert_providers(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    plugin_id: &str,
    unique_identifier: &str,
    declaration: &Value,
    now: i64,
) -> Result<(), DaemonError> {
    for category in ProviderCategory::ALL {
        let Some(provider) = category.provider_name(declaration) else {
            continue;
        };
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (id, created_at, updated_at, tenant_id, provider, plugin_unique_identifier, plugin_id) \
             VALUES ($1, $2, $2, $3, $4, $5, $6)",
            category.table()
        )))
        .bind(new_id())
        .bind(now)
        .bind(tenant_id)
        .bind(provider)
        .bind(unique_identifier)
        .bind(plugin_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn delete_providers(tx: &mut Tx<'_>, tenant_id: &str, plugin_id: &str) -> Result<(), DaemonError> {
    for category in ProviderCategory::ALL {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND plugin_id = $2",
            category.table()
        )))
        .bind(tenant_id)
        .bind(plugin_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn installation_from_row(row: &AnyRow) -> Result<InstallationRow, DaemonError> {
    Ok(InstallationRow {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        tenant_id: row.try_get("tenant_id")?,
        plugin_id: row.try_get("plugin_id")?,
        plugin_unique_identifier: row.try_get("plugin_unique_identifier")?,
        runtime_type: row.try_get("runtime_type")?,
        endpoints_setups: row.try_get("endpoints_setups")?,
        endpoints_active: row.try_get("endpoints_active")?,
        source: row.try_get("source")?,
        meta: serde_json::from_str(&row.try_get::<String, _>("meta")?)?,
    })
}

fn provider_from_row(row: &AnyRow) -> Result<ProviderRow, DaemonError> {
    Ok(ProviderRow {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        tenant_id: row.try_get("tenant_id")?,
        provider: row.try_get("provider")?,
        plugin_unique_identifier: row.try_get("plugin_unique_identifier")?,
        plugin_id: row.try_get("plugin_id")?,
    })
}

fn task_from_row(row: &AnyRow) -> Result<TaskRow, DaemonError> {
    Ok(TaskRow {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        status: TaskStatus::parse(&row.try_get::<String, _>("status")?)?,
        tenant_id: row.try_get("tenant_id")?,
        total_plugins: row.try_get("total_plugins")?,
        completed_plugins: row.try_get("completed_plugins")?,
        plugins: serde_json::from_str(&row.try_get::<String, _>("plugins")?)?,
    })
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Current time in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A time-ordered UUIDv7 string, as the original's `BeforeCreate`.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_list_matches_folders() {
        for dialect in ["sqlite", "postgres"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dialect);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let expected: Vec<String> = MIGRATIONS
                .iter()
                .map(|(v, d, _, _)| format!("{v:04}_{d}.sql"))
                .collect();
            assert_eq!(files, expected);
        }
    }

    #[test]
    fn provider_names_by_category() {
        let declaration = serde_json::json!({
            "tool": {"identity": {"name": "hello"}},
            "model": {"provider": "openai"},
        });
        assert_eq!(
            ProviderCategory::Tool.provider_name(&declaration).as_deref(),
            Some("hello")
        );
        assert_eq!(
            ProviderCategory::Model.provider_name(&declaration).as_deref(),
            Some("openai")
        );
        assert_eq!(ProviderCategory::Trigger.provider_name(&declaration), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_installs_on_an_sqlite_file_do_not_fail_with_database_locked() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("plugin.db").display());
        let db = PluginDb::open(&url).await.unwrap();
        let (meta, declaration) = (
            serde_json::json!({}),
            serde_json::json!({"tool": {"identity": {"name": "p"}}}),
        );
        let ids: Vec<(String, String)> = (0..24)
            .map(|i| (format!("org/p{i}"), format!("org/p{i}:0.0.1@aa")))
            .collect();
        let installs = ids.iter().map(|(plugin_id, uid)| {
            let db = db.clone();
            let new = NewInstallation {
                tenant_id: "t",
                plugin_unique_identifier: uid,
                plugin_id,
                source: "package",
                meta: &meta,
                declaration: &declaration,
            };
            async move { db.install(&new).await }
        });
        for result in futures::future::join_all(installs).await {
            result.unwrap();
        }
    }

    #[tokio::test]
    async fn installed_unique_identifier_follows_install_upgrade_and_uninstall() {
        let db = PluginDb::open("sqlite::memory:").await.unwrap();
        let (meta, declaration) = (
            serde_json::json!({}),
            serde_json::json!({"tool": {"identity": {"name": "p"}}}),
        );
        let new = |uid: &'static str| NewInstallation {
            tenant_id: "t",
            plugin_unique_identifier: uid,
            plugin_id: "org/p",
            source: "package",
            meta: &meta,
            declaration: &declaration,
        };
        assert_eq!(db.installed_unique_identifier("t", "org/p").await.unwrap(), None);
        let row = db.install(&new("org/p:0.0.1@aa")).await.unwrap();
        for _ in 0..2 {
            // The second lookup is served from memory.
            assert_eq!(
                db.installed_unique_identifier("t", "org/p").await.unwrap().as_deref(),
                Some("org/p:0.0.1@aa")
            );
        }
        assert_eq!(db.installed_unique_identifier("other", "org/p").await.unwrap(), None);
        db.upgrade("org/p:0.0.1@aa", &new("org/p:0.0.2@bb")).await.unwrap();
        assert_eq!(
            db.installed_unique_identifier("t", "org/p").await.unwrap().as_deref(),
            Some("org/p:0.0.2@bb")
        );
        db.uninstall("t", &row.id).await.unwrap();
        assert_eq!(db.installed_unique_identifier("t", "org/p").await.unwrap(), None);
    }

    #[test]
    fn a_lookup_that_raced_a_write_is_not_cached() {
        let cache = InstalledCache::default();
        let generation = cache.generation.load(Ordering::Acquire);
        cache.forget("t", "org/p");
        cache.put(generation, "t", "org/p", "org/p:0.0.1@aa");
        assert_eq!(cache.get("t", "org/p"), None);
        let generation = cache.generation.load(Ordering::Acquire);
        cache.put(generation, "t", "org/p", "org/p:0.0.2@bb");
        assert_eq!(cache.get("t", "org/p").as_deref(), Some("org/p:0.0.2@bb"));
    }
}
