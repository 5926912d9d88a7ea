//! The error every tool operation returns.

use thiserror::Error;

use crate::ToolProviderType;

/// Why a catalog lookup, a parameter check or an invocation failed.
///
/// Variants mirror Dify's tool errors (`ToolProviderNotFoundError`, `ToolNotFoundError`,
/// `ToolParameterValidationError`, …) so HTTP layers can map them to the same codes; messages say what was wrong
/// and, where there is one, what to do about it.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ToolError {
    #[error("{provider_type} provider {provider:?} not found")]
    ProviderNotFound {
        provider_type: ToolProviderType,
        provider: String,
    },

    #[error("tool {tool:?} not found in provider {provider:?}; list its tools to see the available names")]
    ToolNotFound { provider: String, tool: String },

    #[error("invalid tool parameters: {0}")]
    ParameterValidation(String),

    #[error("invalid credentials: {0}")]
    CredentialValidation(String),

    #[error(
        "provider {provider:?} needs credentials and none are configured; add one with POST /console/api/workspaces/current/tool-provider/builtin/{provider}/add"
    )]
    CredentialsMissing { provider: String },

    #[error("credential {id:?} not found for provider {provider:?}; it may have been deleted")]
    CredentialNotFound { provider: String, id: String },

    #[error("not supported: {0}")]
    NotSupported(String),

    #[error("tool invocation failed: {0}")]
    Invoke(String),

    #[error("tool invocation timed out after {seconds} s")]
    Timeout { seconds: u64 },

    #[error("tool invocation was cancelled")]
    Cancelled,

    #[error("internal error: {0}")]
    Internal(String),
}

impl ToolError {
    /// A stable snake_case code for API responses (`provider_not_found`, `invalid_param`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Self::ProviderNotFound { .. } => "provider_not_found",
            Self::ToolNotFound { .. } => "tool_not_found",
            Self::ParameterValidation(_) => "invalid_param",
            Self::CredentialValidation(_) => "invalid_credentials",
            Self::CredentialsMissing { .. } => "credentials_missing",
            Self::CredentialNotFound { .. } => "credential_not_found",
            Self::NotSupported(_) => "not_supported",
            Self::Invoke(_) => "tool_invoke_error",
            Self::Timeout { .. } => "tool_timeout",
            Self::Cancelled => "tool_cancelled",
            Self::Internal(_) => "internal_error",
        }
    }

    /// Whether the caller (not the tool or the platform) is at fault: bad names, parameters or credentials.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            Self::Invoke(_) | Self::Timeout { .. } | Self::Cancelled | Self::Internal(_)
        )
    }

    /// Shorthand for a parameter validation error.
    pub fn param(message: impl Into<String>) -> Self {
        Self::ParameterValidation(message.into())
    }
}
