//! HTTP routes.

pub mod console;
pub mod v1;
