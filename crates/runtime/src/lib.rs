#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
//! The local plugin runtime (work in progress).

pub mod backwards;
mod config;
pub mod env;
mod error;
pub mod protocol;

pub use config::{DEFAULT_MAX_LINE_BYTES, RuntimeConfig};
pub use error::{EnvError, RuntimeError};
