#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
//! The management half of a Dify-compatible plugin daemon.
//!
//! Dify's API server talks to `dify-plugin-daemon` over HTTP (`/plugin/{tenant_id}/management/…`, `X-Api-Key`). This
//! crate serves those routes with the same paths, field names, envelope and error types, so Dify can use toolplane in
//! its place, running plugins through `toolplane-runtime` when built with [`DaemonState::open_with_runtime`]:
//! - [`DaemonConfig`]: the original's environment variables (`SERVER_KEY`, `PLUGIN_*_PATH`,
//!   `MAX_PLUGIN_PACKAGE_SIZE`, signature policy, `PLUGIN_DB_URL`/`DB_*`);
//! - [`PluginDb`]: the plugin database (its own migrations; tables `plugins`, `plugin_installations`,
//!   `plugin_declarations`, the five category installation tables, `install_tasks`, `tenant_storages`, `endpoints`,
//!   `plugin_readme_records`), SQLite by default, PostgreSQL by URL;
//! - [`DaemonState`]: the service (package and `.difybundle` upload, install tasks, upgrade, uninstall, listing,
//!   assets) over the database and a [`toolplane_store::BlobStore`] holding the original's buckets
//!   (`plugin_packages/<uid>`, `plugin/<uid>`, `assets/<media id>`); the runtime hooks in through [`PluginEnvironment`];
//! - [`router`] and [`serve_daemon`]: the HTTP API, including the dispatch routes (SSE, `X-Plugin-ID`), their
//!   `/v2/invoke` variant (`X-Plugin-Unique-Identifier`), endpoint management and the `/e/{hook_id}/…` entry point;
//! - [`PluginProviderSource`]: installed plugin tool providers for toolplane's catalog;
//! - [`serve_remote_debugging`]: the remote-debugging TCP listener (`PLUGIN_REMOTE_INSTALLING_*`), which installs
//!   plugins that connect with a key from `POST /plugin/{tenant}/debugging/key` for as long as they stay connected;
//! - [`cli::PluginCommand`]: `toolplane plugin init|package|checksum|signature|inspect`.

mod bundle;
mod catalog;
pub mod cli;
mod config;
mod db;
mod debugging;
mod declaration;
mod dispatch;
mod endpoints;
mod error;
mod http;
mod service;

use std::future::Future;

pub use bundle::BundleError;
pub use catalog::{PluginProviderSource, PluginTool, PluginToolProvider, split_provider_id};
pub use config::{DEFAULT_MAX_BUNDLE_SIZE, DEFAULT_PLUGIN_DB_FILE, DaemonConfig, RemoteDebugConfig, StoragePaths};
pub use db::{
    DbBackend, InstallationRow, NewInstallation, PluginDb, ProviderCategory, ProviderRow, Released, TaskPlugin,
    TaskRow, TaskStatus,
};
pub use debugging::{DEBUGGING_KEY_TTL, MAX_REMOTE_ASSETS_BYTES, bind_remote_debugging, serve_remote_debugging};
pub use declaration::{build_declaration, media_id};
pub use dispatch::{dispatch_action, stream_session};
pub use endpoints::{EndpointRow, HOOK_ID_LEN, MAX_ENDPOINT_BODY, new_hook_id, raw_http_request, validate_settings};
pub use error::{ConfigError, DaemonError};
pub use http::{VERSION, router};
pub use service::{
    DaemonState, INSTALL_TIMEOUT, INTERRUPTED_MESSAGE, InstallStart, MAX_IDENTIFIERS_PER_INSTALL, NoRuntime,
    PluginEnvironment,
};

/// Serves [`router`] alone (as `toolplane daemon` does, on 5002), with the original's 404 body for unknown routes,
/// until `shutdown` completes.
pub async fn serve_daemon(
    listener: tokio::net::TcpListener,
    state: DaemonState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router(state).fallback(http::not_found);
    // SSE answers are written frame by frame; without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK
    // add ~40 ms to every streamed dispatch call.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
