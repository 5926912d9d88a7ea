//! MCP for toolplane.
//!
//! This crate owns both directions of the Model Context Protocol:
//! - the wire types ([`protocol`]);
//! - a client for MCP servers ([`client`]) over streamable HTTP (session era and the stateless 2026-07-28 era,
//!   detected automatically), the legacy HTTP+SSE transport (2024-11-05) and stdio child processes; every HTTP
//!   request goes through [`toolplane_net::SafeClient`];
//! - MCP servers as toolplane tool providers ([`provider`]);
//! - OAuth 2.1 for MCP servers as a storage-free library ([`oauth`]);
//! - toolplane's tools served over MCP ([`server`]): a protocol handler, an axum router and a stdio loop.

pub mod client;
pub mod oauth;
pub mod protocol;
pub mod sse;

pub use client::{
    CallOptions, ClientOptions, EraPreference, McpClient, McpError, ServerDetails, StdioCommand, TransportHint,
    TransportKind,
};
pub mod provider;

pub use provider::{DefaultConnector, McpConnector, McpEndpoint, McpProviderConfig, McpToolProvider};
pub mod server;

pub use server::{
    ExposedEntry, HttpOptions, McpServer, McpServerConfig, McpServerResolver, ResolveError, ServerOptions,
    StaticResolver, mcp_router, serve_stdio,
};
