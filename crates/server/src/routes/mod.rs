//! HTTP routes.

pub mod api_tools;
pub mod console;
pub mod extensions;
pub mod mcp;
pub mod oauth;
pub mod v1;
pub mod workflows;
