//! Serves the demo tools plus the conformance fixture (`McpServer::with_conformance_fixture`) over toolplane's
//! MCP router for `scripts/conformance.sh`.
//! Usage: `conformance_server PORT` → `http://127.0.0.1:PORT/mcp/server/conformance/mcp`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/demo.rs"]
mod demo;

use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use toolplane_mcp::{HttpOptions, McpServer, ServerOptions, StaticResolver, mcp_router};

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(8931);
    let config = demo::server().config().clone();
    // Task-eligible calls always answer with their task: the tasks scenarios expect one even for a short
    // `slow_compute`.
    let options = ServerOptions {
        task_after: Duration::ZERO,
        ..ServerOptions::default()
    };
    let server = McpServer::new(demo::catalog(), "tenant-1", config)
        .with_conformance_fixture()
        .with_options(options);
    let resolver = StaticResolver::new().with_server("conformance", Arc::new(server), None);
    let options = HttpOptions {
        allowed_origins: Some(vec![
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
        ]),
        ..HttpOptions::default()
    };
    let router = mcp_router(Arc::new(resolver), options);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).await.unwrap();
}
