#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
//! Persistence for toolplane: the relational database (SQLite or PostgreSQL, one set of repositories for both) and
//! blob storage (a local folder or an object store).
//!
//! # Database
//!
//! [`Store::connect`] takes a URL — `sqlite://data/toolplane.db?mode=rwc` (the single-node default, see
//! [`Store::sqlite_url_in`]) or `postgres://user@host:5432/db` — and opens a pool. It does **not** change the
//! schema: the server and `toolplane migrate` call [`Store::migrate`] explicitly.
//!
//! Repositories are reached from the store: [`Store::tenants`], [`Store::api_keys`],
//! [`Store::builtin_credentials`], [`Store::labels`], [`Store::tool_files`], [`Store::settings`]. Every method
//! that reads or changes tenant-owned rows takes the tenant id and filters on it, so a row of another tenant is
//! indistinguishable from a missing one.
//!
//! ## Schema (migration `0001_initial`)
//!
//! | table | columns | notes |
//! |---|---|---|
//! | `tenants` | `id`, `name`, `encrypt_public_key`, `created_at` | name not unique (as in Dify) |
//! | `api_keys` | `id`, `tenant_id` (NULL = admin key), `name`, `key_hash` UNIQUE, `key_prefix`, `created_at`, `last_used_at` | only the hex SHA-256 of a key is stored |
//! | `tool_builtin_providers` | Dify's columns: `id`, `name`, `tenant_id`, `user_id`, `provider`, `encrypted_credentials` (JSON text), `created_at`, `updated_at`, `is_default`, `credential_type` (`'api-key'`), `expires_at` (-1) — plus `seq` | UNIQUE (`tenant_id`, `provider`, `name`) |
//! | `tool_label_bindings` | `id`, `tool_id`, `tool_type`, `label_name` | UNIQUE (`tool_id`, `label_name`) |
//! | `tool_files` | `id`, `user_id`, `tenant_id`, `conversation_id`, `file_key`, `mimetype`, `original_url`, `name`, `size`, `created_at` | bytes live in blob storage |
//! | `settings` | `key` PK, `value`, `updated_at` | instance-level values |
//!
//! Ids are UUID strings in `TEXT` columns on both backends. Tenant-owned tables reference `tenants(id)` with
//! `ON DELETE CASCADE`. `created_at`/`updated_at`/`last_used_at` are `BIGINT` **unix milliseconds**;
//! `tool_builtin_providers.expires_at` keeps Dify's unit, unix **seconds** (-1 = never).
//!
//! Credential order is Dify's `is_default DESC, created_at ASC`. Two credentials created in the same millisecond
//! would then come back in an arbitrary order, and ordering by the random UUID would not help, so the table has
//! `seq`, a database-assigned increasing number (`INTEGER PRIMARY KEY AUTOINCREMENT` on SQLite, an identity column
//! on PostgreSQL), used as the final tiebreak: `is_default DESC, created_at ASC, seq ASC` is stable and follows
//! insertion order without relying on SQLite's implicit rowid or on clock resolution.
//!
//! Later features add tables with new migrations (`0002_…`) in both dialect folders and a line in the embedded
//! migration list; a unit test fails if the folders and the list disagree.
//!
//! ## Dialect strategy
//!
//! One repository implementation runs on both backends through sqlx's `Any` driver:
//! - **DDL differs, so there are two migration folders**, `migrations/sqlite` and `migrations/postgres`, embedded
//!   into the binary with `include_str!` and run by sqlx's migrator (same versions, same checksums table).
//! - **DML is portable SQL.** Placeholders are written `$1, $2, …`: PostgreSQL's native form, and sqlx's SQLite
//!   driver binds `$N` by number too, so no rewriting is needed. The queries stick to what both engines share:
//!   `RETURNING`, `ON CONFLICT … DO UPDATE/NOTHING`, `IS NOT DISTINCT FROM`, `COALESCE`, `LIMIT`.
//! - **Types the `Any` driver decodes on both**: `TEXT`, `BIGINT` (never `INTEGER` on PostgreSQL, which would decode
//!   as i32), no `uuid`/`timestamptz`/`jsonb` columns. Booleans are `BOOLEAN` on PostgreSQL and `INTEGER` 0/1 on SQLite
//!   (`Any` cannot decode SQLite values of a column declared `BOOLEAN`); one helper decodes either.
//! - **SQLite** runs in WAL mode (set once per file before the pool opens), with `foreign_keys = ON`, a busy
//!   timeout (5 s by default) and `synchronous = NORMAL` on every connection. `sqlite::memory:` works with a
//!   single pooled connection, for tests.
//! - Unique violations become [`StoreError::Conflict`] naming the field, on both backends.
//!
//! # Blob storage
//!
//! [`BlobStore`] wraps one `opendal` operator configured by [`BlobConfig`]: a local folder (default), S3 or an
//! S3-compatible service, Azure Blob, Google Cloud Storage, Aliyun OSS or Tencent COS. [`BlobConfig::from_env`]
//! reads Dify's environment variables (`STORAGE_TYPE`, `S3_*`, …; table in [`blob`]). Whole-blob `put`/`get`,
//! `exists`, `delete`, and streaming [`BlobStore::reader`] / [`BlobStore::writer`] / [`BlobStore::put_stream`]
//! for large files. Keys are validated (no `..`, no leading `/`); a missing blob is [`BlobError::NotFound`].

pub mod blob;
mod db;
mod error;
pub mod repo;

pub use blob::{BlobConfig, BlobError, BlobReader, BlobStore, BlobWriter, PutStreamError, Secret};
pub use db::{Backend, DEFAULT_SQLITE_FILE, Store, StoreOptions, new_id};
pub use error::StoreError;
pub use repo::accounts::{ACCOUNT_ROLES, AccountRecord, Accounts};
pub use repo::api_based_extensions::{ApiBasedExtensionRecord, ApiBasedExtensions};
pub use repo::api_keys::{ApiKeyRecord, ApiKeys};
pub use repo::api_providers::{ApiProviderFields, ApiProviderRecord, ApiProviders};
pub use repo::builtin_credentials::{
    BuiltinCredentialRecord, BuiltinCredentialUpdate, BuiltinCredentials, CREDENTIAL_TYPE_API_KEY,
    CREDENTIAL_TYPE_OAUTH2, NEVER_EXPIRES, NewBuiltinCredential,
};
pub use repo::labels::{LabelBinding, Labels};
pub use repo::mcp::{
    MCP_SERVER_STATUSES, McpOAuthStateRecord, McpOAuthStates, McpProviderFields, McpProviderRecord, McpProviderState,
    McpProviders, McpServerFields, McpServerRecord, McpServers,
};
pub use repo::oauth_clients::{OAuthClients, SystemOAuthClientRecord, TenantOAuthClientRecord};
pub use repo::settings::Settings;
pub use repo::tenants::{TenantRecord, Tenants};
pub use repo::tool_files::{NewToolFile, ToolFileRecord, ToolFiles};
pub use repo::workflow_providers::{WorkflowProviderFields, WorkflowProviderRecord, WorkflowProviders};
pub use repo::workflows::{
    NewNodeRun, RunOutcome, WorkflowNodeRunRecord, WorkflowRecord, WorkflowRunRecord, WorkflowVersionRecord, Workflows,
};
