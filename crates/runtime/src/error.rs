//! Errors of the runtime.

use std::path::Path;

use thiserror::Error;

/// Preparing a Python environment failed.
#[derive(Debug, Error)]
pub enum EnvError {
    /// The package cannot run as a local plugin.
    #[error("{0}")]
    Invalid(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No suitable interpreter.
    #[error("{0}")]
    Python(String),
    /// uv is missing and could not be installed.
    #[error("{0}")]
    Uv(String),
    /// An environment command failed; `detail` ends with the tail of its output.
    #[error("{step} failed: {detail}")]
    Step {
        /// What was being done.
        step: String,
        /// Exit status or timeout, and the tail of the output.
        detail: String,
    },
}

impl EnvError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Running a plugin or a session failed.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The package could not be decoded.
    #[error("the plugin package cannot be read: {0}")]
    Package(String),
    /// The environment could not be prepared.
    #[error(transparent)]
    Environment(#[from] EnvError),
    /// The runtime does not know the plugin (not installed, or installed before the runtime started and not loaded).
    #[error("plugin {0} is not loaded in the runtime; install it first")]
    NotLoaded(String),
    /// The process could not be started or did not become ready.
    #[error("plugin {unique_identifier} failed to start: {reason}")]
    Start {
        /// The plugin.
        unique_identifier: String,
        /// Why, with the stderr tail when there is one.
        reason: String,
    },
    /// Writing to the plugin failed (it died).
    #[error("plugin {0} is not running: {1}")]
    NotRunning(String, String),
}
