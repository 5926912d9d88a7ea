//! HTTP routes.

pub mod api_tools;
pub mod console;
pub mod v1;
