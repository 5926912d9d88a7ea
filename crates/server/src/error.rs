//! API errors in Dify's console shape: `{"code": …, "message": …, "status": …}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use toolplane_core::ToolError;

/// An error answered to an API caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_param`: what Dify answers for every `ValueError`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_param", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 500 `internal_server_error`; the detail is logged, the caller gets a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "The server encountered an internal error; see its log for details.",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.code, "message": self.message, "status": self.status.as_u16()});
        (self.status, Json(body)).into_response()
    }
}

impl From<ToolError> for ApiError {
    fn from(error: ToolError) -> Self {
        let status = match &error {
            ToolError::ProviderNotFound { .. }
            | ToolError::ToolNotFound { .. }
            | ToolError::CredentialNotFound { .. } => StatusCode::NOT_FOUND,
            ToolError::ParameterValidation(_)
            | ToolError::CredentialValidation(_)
            | ToolError::CredentialsMissing { .. }
            | ToolError::NotSupported(_) => StatusCode::BAD_REQUEST,
            ToolError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ToolError::Cancelled => StatusCode::REQUEST_TIMEOUT,
            ToolError::Invoke(_) => StatusCode::BAD_GATEWAY,
            ToolError::Internal(detail) => return Self::internal(detail),
        };
        Self::new(status, error.code(), error.to_string())
    }
}

impl From<toolplane_store::StoreError> for ApiError {
    fn from(error: toolplane_store::StoreError) -> Self {
        if error.is_conflict() {
            return Self::new(StatusCode::CONFLICT, "conflict", error.to_string());
        }
        if error.is_not_found() {
            return Self::not_found(error.to_string());
        }
        Self::internal(error)
    }
}
