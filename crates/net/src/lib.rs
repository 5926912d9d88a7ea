//! `toolplane-net` owns the one outbound HTTP client every tool uses.
//!
//! Tools call servers whose URLs come from users: OpenAPI specs, MCP server URLs, webhook
//! targets. Such URLs must not reach the machine itself, the private network or the cloud
//! metadata endpoint (server-side request forgery). Dify leaves that to a Squid proxy sidecar;
//! toolplane enforces it inside the client:
//!
//! - [`SafeClient`] wraps `reqwest` with a resolver that resolves host names itself and hands out
//!   only permitted addresses, checks IP-literal URLs before sending, re-checks every redirect
//!   hop, ignores proxy settings from the environment and applies connect/read/total timeouts.
//! - [`check_ip`] is the address classification behind it, usable on its own.
//! - [`NetConfig`] holds limits and the operator's exceptions (`SSRF_ALLOWED_NETWORKS`,
//!   `SSRF_ALLOWED_HOSTS`, Dify's `HTTP_REQUEST_MAX_*_TIMEOUT`).
//! - [`read_body_limited`] reads a response body with a size cap.
//! - [`NetError`] says what was refused and which setting would allow it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), toolplane_net::NetError> {
//! use toolplane_net::{NetConfig, SafeClient};
//!
//! let client = SafeClient::new(NetConfig::default())?;
//! let response = client
//!     .get("https://api.example.com/v1/weather")
//!     .query(&[("city", "Berlin")])
//!     .bearer_auth("token")
//!     .send()
//!     .await?;
//! let body = client.read_body(response).await?;
//! # let _ = body;
//! # Ok(())
//! # }
//! ```

mod body;
mod client;
mod config;
mod error;
mod guard;
mod ip;

pub use body::read_body_limited;
pub use client::{IntoUrl, SafeClient, SafeRequestBuilder};
pub use config::{
    ConfigError, ENV_ALLOWED_HOSTS, ENV_ALLOWED_NETWORKS, ENV_CONNECT_TIMEOUT, ENV_READ_TIMEOUT, NetConfig,
};
pub use error::{Blocked, NetError, TimeoutPhase};
pub use ip::{BlockKind, BlockReason, EmbeddedIpv4, Ipv4Embedding, check_ip, embedded_ipv4};

/// Re-exported so callers can name request and response types without a direct dependency.
pub use reqwest::{Method, Request, Response, StatusCode, header};
