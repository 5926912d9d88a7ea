//! The connection pool, backend detection, migrations and the small helpers every repository shares.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyPool, AssertSqlSafe, ConnectOptions, Connection, Executor, Row};

use crate::error::{StoreError, redact_url};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// An embedded SQLite file (single node).
    Sqlite,
    /// A PostgreSQL server (one or several nodes).
    Postgres,
}

impl Backend {
    /// Detects the backend from a database URL (`sqlite:` or `postgres:`/`postgresql:`).
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// Pool settings for [`Store::connect_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Maximum number of pooled connections (SQLite in-memory databases always use 1).
    pub max_connections: u32,
    /// How long to wait for a free connection before failing.
    pub acquire_timeout: Duration,
    /// How long SQLite waits on a locked database before answering "database is locked".
    pub sqlite_busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(30),
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The database: a connection pool plus the repositories built on it.
///
/// Cheap to clone (the pool is reference counted). Repositories are reached through accessor methods such as
/// [`Store::tenants`] and [`Store::builtin_credentials`].
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// The SQLite file name used inside the data folder by [`Store::sqlite_url_in`].
pub const DEFAULT_SQLITE_FILE: &str = "toolplane.db";

impl Store {
    /// The default database URL for a data folder: `sqlite://<data_dir>/toolplane.db?mode=rwc`.
    pub fn sqlite_url_in(data_dir: &Path) -> String {
        format!("sqlite://{}?mode=rwc", data_dir.join(DEFAULT_SQLITE_FILE).display())
    }

    /// Connects with default [`StoreOptions`]. Does **not** run migrations: call [`Store::migrate`].
    ///
    /// Accepted URLs: `sqlite://path/to/file.db?mode=rwc` (a missing `mode` defaults to `rwc`, the folder is created),
    /// `sqlite::memory:`, and `postgres://user[:password]@host[:port]/db[?options=...]`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, StoreOptions::default()).await
    }

    /// Connects with explicit pool settings. See [`Store::connect`].
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url).ok_or_else(|| StoreError::UnsupportedUrl { url: redact_url(url) })?;
        let connect_err = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };

        let mut pool_options = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout);
        let mut url = Cow::Borrowed(url);

        if backend == Backend::Sqlite {
            let in_memory = is_sqlite_memory(&url);
            if in_memory {
                // Every connection to `:memory:` is its own database, so keep exactly one, forever.
                pool_options = pool_options
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            } else {
                if !url.contains("mode=") {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    url = Cow::Owned(format!("{url}{sep}mode=rwc"));
                }
                if let Some(parent) = sqlite_file_path(&url)
                    .and_then(|p| p.parent().filter(|d| !d.as_os_str().is_empty()).map(Path::to_path_buf))
                {
                    std::fs::create_dir_all(&parent).map_err(|source| StoreError::CreateDir {
                        path: parent.display().to_string(),
                        source,
                    })?;
                }
                // WAL is a property of the database file; switching needs a lock that busy_timeout cannot wait on,
                // so do it once on a dedicated connection before the pool opens several.
                let conn = SqliteConnectOptions::from_str(&url)
                    .map_err(connect_err)?
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(options.sqlite_busy_timeout)
                    .connect()
                    .await
                    .map_err(connect_err)?;
                conn.close().await.map_err(connect_err)?;
            }
            let busy_ms = options.sqlite_busy_timeout.as_millis();
            pool_options = pool_options.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    let pragmas = format!(
                        "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {busy_ms}; PRAGMA synchronous = NORMAL;"
                    );
                    conn.execute(AssertSqlSafe(pragmas)).await?;
                    Ok(())
                })
            });
        }

        let pool = pool_options.connect(&url).await.map_err(connect_err)?;
        tracing::debug!(backend = ?backend, url = %redact_url(&url), "database pool opened");
        Ok(Store { pool, backend })
    }

    /// Applies every pending migration of this backend's dialect (idempotent; safe to run on every start).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = migrator(self.backend);
        migrator.run(&self.pool).await?;
        tracing::info!(backend = ?self.backend, "database schema is up to date");
        Ok(())
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Round-trips a trivial query (for health checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every pooled connection and waits until they are closed.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The underlying pool, for repositories in this crate.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a write transaction. SQLite's deferred `BEGIN` takes the write lock only at the first write, and in
    /// WAL mode a transaction that has read first then fails at once with "database is locked" (busy_timeout does
    /// not apply) when another writer committed after its read. `BEGIN IMMEDIATE` takes the lock up front, where
    /// busy_timeout does wait, so every write transaction of the store begins this way. PostgreSQL's `BEGIN` is
    /// unaffected.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }
}

/// `(version, description, sqlite sql, postgres sql)` of every migration, oldest first. Both dialect folders must
/// hold a file `{version:04}_{description}.sql`; a unit test checks that this list matches the folders.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
        include_str!("../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "accounts",
        include_str!("../migrations/sqlite/0002_accounts.sql"),
        include_str!("../migrations/postgres/0002_accounts.sql"),
    ),
    (
        3,
        "api_providers",
        include_str!("../migrations/sqlite/0003_api_providers.sql"),
        include_str!("../migrations/postgres/0003_api_providers.sql"),
    ),
    (
        4,
        "oauth_and_extensions",
        include_str!("../migrations/sqlite/0004_oauth_and_extensions.sql"),
        include_str!("../migrations/postgres/0004_oauth_and_extensions.sql"),
    ),
    (
        6,
        "workflows",
        include_str!("../migrations/sqlite/0006_workflows.sql"),
        include_str!("../migrations/postgres/0006_workflows.sql"),
    ),
    (
        8,
        "mcp",
        include_str!("../migrations/sqlite/0008_mcp.sql"),
        include_str!("../migrations/postgres/0008_mcp.sql"),
    ),
    (
        10,
        "api_provider_timeouts",
        include_str!("../migrations/sqlite/0010_api_provider_timeouts.sql"),
        include_str!("../migrations/postgres/0010_api_provider_timeouts.sql"),
    ),
];

/// The embedded migrator for one dialect.
fn migrator(backend: Backend) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, description, sqlite, postgres)| {
            let sql = match backend {
                Backend::Sqlite => sqlite,
                Backend::Postgres => postgres,
            };
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sqlx::SqlSafeStr::into_sql_str(sql),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

fn is_sqlite_memory(url: &str) -> bool {
    url == "sqlite::memory:" || url.starts_with("sqlite::memory:?") || url.contains("mode=memory")
}

/// The file path of a `sqlite://path?query` / `sqlite:path?query` URL, mirroring how sqlx reads it.
fn sqlite_file_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Current time as unix milliseconds (the unit of every `created_at`/`updated_at` column).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A fresh row id: a hyphenated UUIDv4 string.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Reads a boolean column portably: PostgreSQL `BOOLEAN` arrives as a bool, SQLite stores 0/1 integers.
pub(crate) fn get_bool(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    match row.try_get::<bool, _>(column) {
        Ok(value) => Ok(value),
        Err(_) => Ok(row.try_get::<i64, _>(column)? != 0),
    }
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
            assert_eq!(files, expected, "migrations/{dialect} does not match MIGRATIONS");
        }
    }

    /// Why [`Store::begin_write`] begins IMMEDIATE: a deferred transaction that reads, then finds that another
    /// writer committed, fails at its first write at once; one begun by `begin_write` makes the other writer wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_transaction_that_reads_first_waits_for_other_writers_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&Store::sqlite_url_in(dir.path())).await.unwrap();
        store.migrate().await.unwrap();
        let count = "SELECT COUNT(*) AS n FROM tool_label_bindings";
        let insert = |id: &'static str| {
            sqlx::query(
                "INSERT INTO tool_label_bindings (id, tool_id, tool_type, label_name) VALUES ($1, $1, 'api', 'x')",
            )
            .bind(id)
        };

        let mut deferred = store.pool().begin().await.unwrap();
        sqlx::query(count).fetch_one(&mut *deferred).await.unwrap();
        store.labels().replace("other", "api", &["search"]).await.unwrap();
        let error = insert("deferred").execute(&mut *deferred).await.unwrap_err();
        assert!(error.to_string().contains("database is locked"), "{error}");
        deferred.rollback().await.unwrap();

        let mut immediate = store.begin_write().await.unwrap();
        sqlx::query(count).fetch_one(&mut *immediate).await.unwrap();
        let other = tokio::spawn({
            let store = store.clone();
            async move { store.labels().replace("other", "api", &["news"]).await }
        });
        // Let the other writer reach the lock; it waits for this transaction either way.
        tokio::time::sleep(Duration::from_millis(200)).await;
        insert("immediate").execute(&mut *immediate).await.unwrap();
        immediate.commit().await.unwrap();
        other.await.unwrap().unwrap();
        let row = sqlx::query(count).fetch_one(store.pool()).await.unwrap();
        assert_eq!(row.try_get::<i64, _>("n").unwrap(), 2);
        store.close().await;
    }

    #[test]
    fn detects_backends_and_paths() {
        assert_eq!(Backend::from_url("sqlite://a/b.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgres://u@h/d"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("postgresql://u@h/d"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("mysql://u@h/d"), None);
        assert_eq!(
            sqlite_file_path("sqlite://data/x.db?mode=rwc"),
            Some(PathBuf::from("data/x.db"))
        );
        assert_eq!(sqlite_file_path("sqlite:///abs/x.db"), Some(PathBuf::from("/abs/x.db")));
        assert!(is_sqlite_memory("sqlite::memory:"));
        assert_eq!(
            Store::sqlite_url_in(Path::new("/var/lib/tp")),
            "sqlite:///var/lib/tp/toolplane.db?mode=rwc"
        );
    }
}
