//! The daemon's error type and its mapping onto the original's `{code, message, data}` error envelope.

use thiserror::Error;
use toolplane_plugin::{IdentifierError, PackageError, SignatureError};
use toolplane_store::BlobError;

/// Everything the daemon's services can fail with. Each variant maps to one of the original's `error_type` names
/// (see [`DaemonError::error_type`]), which Dify's client switches on.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The request is malformed or not allowed in the current state (`PluginDaemonBadRequestError`).
    #[error("{0}")]
    BadRequest(String),

    /// A plugin unique identifier does not match `author/name:version@checksum` (`PluginUniqueIdentifierError`).
    #[error("{0}")]
    UniqueIdentifier(String),

    /// A record the request names does not exist (`PluginDaemonNotFoundError`).
    #[error("{0}")]
    NotFound(String),

    /// The plugin's manifest does not allow what was asked (`PluginPermissionDeniedError`).
    #[error("{0}")]
    PermissionDenied(String),

    /// The plugin is not installed or not uploaded (`PluginNotFoundError`).
    #[error("{0}")]
    PluginNotFound(String),

    /// The package could not be decoded or validated (`PluginDaemonBadRequestError`).
    #[error("{0}")]
    Package(#[from] PackageError),

    /// The bundle could not be read (`PluginDaemonBadRequestError`).
    #[error("{0}")]
    Bundle(#[from] crate::bundle::BundleError),

    /// The signature policy rejected the package, or key configuration is broken (`PluginDaemonBadRequestError`).
    #[error("{0}")]
    Signature(#[from] SignatureError),

    /// The plugin database failed (`PluginDaemonInternalServerError`).
    #[error("plugin database error: {0}")]
    Database(#[from] sqlx::Error),

    /// The plugin database could not be opened or migrated.
    #[error("{0}")]
    DatabaseSetup(String),

    /// Blob storage failed (`PluginDaemonInternalServerError`).
    #[error("plugin storage error: {0}")]
    Storage(#[from] BlobError),

    /// A stored value could not be read back (`PluginDaemonInternalServerError`).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<IdentifierError> for DaemonError {
    fn from(e: IdentifierError) -> Self {
        DaemonError::UniqueIdentifier(e.to_string())
    }
}

impl From<serde_json::Error> for DaemonError {
    fn from(e: serde_json::Error) -> Self {
        DaemonError::Internal(format!("stored JSON is invalid: {e}"))
    }
}

impl DaemonError {
    /// The original's `error_type` name.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::Package(_) | Self::Bundle(_) => "PluginDaemonBadRequestError",
            Self::Signature(SignatureError::KeyFile { .. } | SignatureError::PublicKey { .. }) => {
                "PluginDaemonInternalServerError"
            }
            Self::Signature(_) => "PluginDaemonBadRequestError",
            Self::UniqueIdentifier(_) => "PluginUniqueIdentifierError",
            Self::NotFound(_) => "PluginDaemonNotFoundError",
            Self::PluginNotFound(_) => "PluginNotFoundError",
            Self::PermissionDenied(_) => "PluginPermissionDeniedError",
            Self::Database(_) | Self::DatabaseSetup(_) | Self::Storage(_) | Self::Internal(_) => {
                "PluginDaemonInternalServerError"
            }
        }
    }

    /// The original's numeric envelope code for this error type.
    pub fn code(&self) -> i64 {
        match self.error_type() {
            "PluginDaemonBadRequestError" | "PluginUniqueIdentifierError" => -400,
            "PluginDaemonNotFoundError" | "PluginNotFoundError" => -404,
            "PluginPermissionDeniedError" => -403,
            _ => -500,
        }
    }
}

/// A configuration value is missing or malformed.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A required variable is unset.
    #[error("{variable} is required: {hint}")]
    Missing { variable: &'static str, hint: &'static str },
    /// A variable has a value that cannot be used.
    #[error("invalid {variable}: {value:?}: {hint}")]
    Invalid {
        variable: &'static str,
        value: String,
        hint: &'static str,
    },
    /// The signature variables are malformed.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}
