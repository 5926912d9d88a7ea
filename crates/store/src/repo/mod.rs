//! Repositories: one small struct per table, borrowed from a [`Store`](crate::Store).
//!
//! Every method that touches tenant-owned rows takes the tenant id and puts it in the `WHERE` clause, so a caller
//! holding only another tenant's id gets "not found", never the row.

pub mod accounts;
pub mod api_based_extensions;
pub mod api_keys;
pub mod api_providers;
pub mod builtin_credentials;
pub mod labels;
pub mod mcp;
pub mod oauth_clients;
pub mod settings;
pub mod tenants;
pub mod tool_files;
pub mod workflow_providers;
pub mod workflows;
