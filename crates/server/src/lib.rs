//! toolplane's HTTP server (axum): the Dify-compatible console API for tools, toolplane's own `/v1` API
//! (invoke, tenants, keys), health, and the wiring of storage, secrets and the catalog behind them.
//!
//! ```no_run
//! # async fn run(state: toolplane_server::AppState) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! toolplane_server::serve(listener, state, std::future::pending()).await
//! # }
//! ```

pub mod api_tools;
pub mod auth;
pub mod config;
pub mod credentials;
pub mod error;
pub mod extensions;
pub mod json;
pub mod mcp_providers;
pub mod mcp_servers;
pub mod oauth;
pub mod plugin_tools;
pub mod plugin_uploads;
pub mod routes;
pub mod state;
pub mod tenant_keys;
pub mod tool_files;
pub mod workflows;

use std::future::Future;

use axum::Json;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use config::{ConfigError, ServerConfig, Settings};
pub use error::ApiError;
pub use state::{AppState, AppStateParts, FirstStart};

/// The full router: `/health`, `/console/api/...`, `/v1/...`, and the plugin daemon's `/plugin/...` routes when it
/// runs beside the console.
pub fn router(state: AppState) -> axum::Router {
    let body_limit = state.config.max_body_bytes;
    let request_timeout = state.config.request_timeout;
    let daemon = state.daemon.clone();
    // toolplane as an MCP server: its own auth (the server code, plus a bearer key when the server requires one).
    let mcp = toolplane_mcp::mcp_router(
        std::sync::Arc::new(mcp_servers::StoreResolver::new(
            state.mcp_servers.clone(),
            state.catalog.clone(),
        )),
        toolplane_mcp::HttpOptions {
            public_base_url: mcp_servers::public_base_url(&state.config.console_api_url),
            ..toolplane_mcp::HttpOptions::default()
        },
    );
    let app = axum::Router::new()
        .route("/health", get(health))
        .nest("/console/api", routes::console::router())
        .nest("/v1", routes::v1::router())
        .route("/files/tools/{file}", get(tool_files::download))
        .route(
            "/files/upload/for-plugin",
            axum::routing::post(plugin_uploads::upload_for_plugin)
                .layer(DefaultBodyLimit::max(plugin_uploads::PLUGIN_UPLOAD_MAX_BYTES)),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("a request handler panicked").into_response_owned()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
        .merge(mcp);
    // The daemon router brings its own auth (X-Api-Key = SERVER_KEY), envelope and upload limits.
    match daemon {
        Some(daemon) => app.merge(toolplane_daemon::router(daemon)),
        None => app,
    }
}

impl ApiError {
    fn into_response_owned(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "reason": "database unreachable"})),
            )
        }
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}; see /v1/openapi.json for the API", uri.path()))
}

/// Serves until `shutdown` resolves, then stops accepting and lets running requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // TCP_NODELAY on every accepted socket: without it Nagle's algorithm delays small responses by ~40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
