//! API-based extensions (Dify's `api_based_extensions`): HTTP endpoints a tenant registers for external data
//! tools and moderation, and the requestor that calls them.
//!
//! A call is `POST {api_endpoint}` with `{"point": …, "params": {…}}`, `Authorization: Bearer {api_key}`, through
//! the SSRF guard, with a 5 s connect and 60 s total timeout. Errors use Dify's messages (`request timeout`,
//! `request connection error`, `request error, status_code: {code}, content: {first 100 chars}`), and each
//! point's response is validated:
//! - `ping` → `{"result": "pong"}` (checked on every save);
//! - `app.external_data_tool.query` `{app_id, tool_variable, inputs, query}` → `{"result": string}`;
//! - `app.moderation.input` `{app_id, inputs, query}` → `{flagged, action, preset_response?, inputs?, query?}`;
//! - `app.moderation.output` `{app_id, text}` → `{flagged, action, preset_response?, text?}`,
//!   where `action` is `direct_output` or `overridden`.
//!
//! The key is stored encrypted with the tenant key and shown masked as Dify masks it; posting `[__HIDDEN__]` on
//! update keeps the stored key.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};
use thiserror::Error;
use toolplane_net::{NetConfig, NetError, SafeClient};
use toolplane_secrets::HIDDEN_VALUE;
use toolplane_store::{ApiBasedExtensionRecord, Store};

use crate::error::ApiError;
use crate::tenant_keys::TenantKeys;

/// Connect timeout of extension requests (Dify: 5 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Total timeout of extension requests (Dify: 60 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest extension response read.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// The points an extension answers (`APIBasedExtensionPoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionPoint {
    Ping,
    ExternalDataToolQuery,
    ModerationInput,
    ModerationOutput,
}

impl ExtensionPoint {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::ExternalDataToolQuery => "app.external_data_tool.query",
            Self::ModerationInput => "app.moderation.input",
            Self::ModerationOutput => "app.moderation.output",
        }
    }
}

impl std::str::FromStr for ExtensionPoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "ping" => Self::Ping,
            "app.external_data_tool.query" => Self::ExternalDataToolQuery,
            "app.moderation.input" => Self::ModerationInput,
            "app.moderation.output" => Self::ModerationOutput,
            other => {
                return Err(format!(
                    "unknown extension point {other:?}: expected ping, app.external_data_tool.query, \
                     app.moderation.input or app.moderation.output"
                ));
            }
        })
    }
}

/// Why an extension call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExtensionError {
    #[error("request timeout")]
    Timeout,
    #[error("request connection error")]
    Connection,
    #[error("request refused: {0}")]
    Refused(String),
    #[error("request error, status_code: {status}, content: {content}")]
    Status { status: u16, content: String },
    #[error("the extension's response is not JSON: {0}")]
    NotJson(String),
    #[error("the extension's response to {point} is invalid: {reason}")]
    InvalidResponse { point: &'static str, reason: String },
}

/// Calls extension endpoints.
#[derive(Debug)]
pub struct ExtensionRequestor {
    net: NetConfig,
    client: tokio::sync::OnceCell<SafeClient>,
}

impl ExtensionRequestor {
    /// A requestor whose client follows `net` (SSRF exceptions), with Dify's extension timeouts.
    pub fn new(mut net: NetConfig) -> Self {
        net.connect_timeout = CONNECT_TIMEOUT;
        net.total_timeout = REQUEST_TIMEOUT;
        net.read_timeout = net.read_timeout.min(REQUEST_TIMEOUT);
        net.max_response_bytes = net.max_response_bytes.min(MAX_RESPONSE_BYTES);
        Self {
            net,
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// Sends `point` with `params` and validates the response for that point; returns the response object.
    pub async fn request(
        &self,
        endpoint: &str,
        api_key: &str,
        point: ExtensionPoint,
        params: Map<String, Value>,
    ) -> Result<Map<String, Value>, ExtensionError> {
        let client = self
            .client
            .get_or_try_init(|| async { SafeClient::new(self.net.clone()) })
            .await
            .map_err(|e| ExtensionError::Refused(e.to_string()))?;
        let response = client
            .post(endpoint)
            .bearer_auth(api_key)
            .json(&json!({"point": point.as_str(), "params": params}))
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        let body = client.read_body(response).await.map_err(classify)?;
        if status != 200 {
            let content: String = String::from_utf8_lossy(&body).chars().take(100).collect();
            return Err(ExtensionError::Status { status, content });
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| ExtensionError::NotJson(e.to_string()))?;
        let Value::Object(object) = value else {
            return Err(invalid(point, "expected a JSON object".into()));
        };
        validate(point, &object)?;
        Ok(object)
    }
}

fn classify(error: NetError) -> ExtensionError {
    let text = error.to_string();
    if text.contains("timed out") || text.contains("timeout") {
        ExtensionError::Timeout
    } else if matches!(
        error,
        NetError::Blocked(_) | NetError::UnsupportedScheme { .. } | NetError::InvalidUrl { .. }
    ) {
        ExtensionError::Refused(text)
    } else {
        ExtensionError::Connection
    }
}

fn invalid(point: ExtensionPoint, reason: String) -> ExtensionError {
    ExtensionError::InvalidResponse {
        point: point.as_str(),
        reason,
    }
}

fn validate(point: ExtensionPoint, object: &Map<String, Value>) -> Result<(), ExtensionError> {
    let optional_string = |name: &str| match object.get(name) {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(invalid(point, format!("`{name}` must be a string"))),
    };
    match point {
        ExtensionPoint::Ping => match object.get("result").and_then(Value::as_str) {
            Some("pong") => Ok(()),
            _ => Err(invalid(
                point,
                format!(
                    "expected {{\"result\": \"pong\"}}, got {}",
                    Value::Object(object.clone())
                ),
            )),
        },
        ExtensionPoint::ExternalDataToolQuery => match object.get("result") {
            Some(Value::String(_)) => Ok(()),
            _ => Err(invalid(point, "`result` must be a string".into())),
        },
        ExtensionPoint::ModerationInput | ExtensionPoint::ModerationOutput => {
            if !matches!(object.get("flagged"), Some(Value::Bool(_))) {
                return Err(invalid(point, "`flagged` must be a boolean".into()));
            }
            match object.get("action").and_then(Value::as_str) {
                Some("direct_output" | "overridden") => {}
                _ => {
                    return Err(invalid(
                        point,
                        "`action` must be \"direct_output\" or \"overridden\"".into(),
                    ));
                }
            }
            optional_string("preset_response")?;
            if point == ExtensionPoint::ModerationInput {
                optional_string("query")?;
                match object.get("inputs") {
                    None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
                    Some(_) => Err(invalid(point, "`inputs` must be an object".into())),
                }
            } else {
                optional_string("text")
            }
        }
    }
}

/// Checks the params a caller gives for a point, so a malformed call fails before reaching the extension.
pub fn validate_params(point: ExtensionPoint, params: &Map<String, Value>) -> Result<(), String> {
    let required: &[&str] = match point {
        ExtensionPoint::Ping => &[],
        ExtensionPoint::ExternalDataToolQuery => &["app_id", "tool_variable", "inputs"],
        ExtensionPoint::ModerationInput => &["app_id", "inputs"],
        ExtensionPoint::ModerationOutput => &["app_id", "text"],
    };
    for name in required {
        if !params.contains_key(*name) {
            return Err(format!("params.{name} is required for {}", point.as_str()));
        }
    }
    if let Some(inputs) = params.get("inputs")
        && !inputs.is_object()
    {
        return Err("params.inputs must be an object".into());
    }
    Ok(())
}

/// Dify's display mask of an extension key: ≤ 8 characters → first + `******` + last; else first 3 + `******` +
/// last 3.
pub fn mask_api_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    match chars.len() {
        0 => String::new(),
        n if n <= 8 => format!("{}******{}", chars[0], chars[n - 1]),
        n => format!(
            "{}******{}",
            chars[..3].iter().collect::<String>(),
            chars[n - 3..].iter().collect::<String>()
        ),
    }
}

/// An extension as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ExtensionView {
    pub id: String,
    pub name: String,
    pub api_endpoint: String,
    /// Masked.
    pub api_key: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// What create/update receive.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ExtensionInput {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub api_endpoint: String,
    #[serde(default)]
    pub api_key: String,
}

/// Extension CRUD with validation, encryption, masking and the ping check.
pub struct Extensions {
    store: Store,
    keys: Arc<TenantKeys>,
    requestor: ExtensionRequestor,
}

impl Extensions {
    /// The service; requests go through a client built from `net`.
    pub fn new(store: Store, keys: Arc<TenantKeys>, net: NetConfig) -> Self {
        Self {
            store,
            keys,
            requestor: ExtensionRequestor::new(net),
        }
    }

    /// The requestor.
    pub fn requestor(&self) -> &ExtensionRequestor {
        &self.requestor
    }

    async fn decrypt_key(&self, row: &ApiBasedExtensionRecord) -> Result<String, ApiError> {
        let key = self.keys.private_key(&row.tenant_id).await?;
        key.decrypt(&row.api_key)
            .map_err(|e| ApiError::internal(format!("API-based extension {}: {e}", row.id)))
    }

    async fn view(&self, row: ApiBasedExtensionRecord) -> Result<ExtensionView, ApiError> {
        let key = self.decrypt_key(&row).await?;
        Ok(ExtensionView {
            api_key: mask_api_key(&key),
            id: row.id,
            name: row.name,
            api_endpoint: row.api_endpoint,
            created_at: row.created_at / 1000,
        })
    }

    /// The tenant's extensions, newest first.
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<ExtensionView>, ApiError> {
        let rows = self.store.api_based_extensions().list(tenant_id).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.view(row).await?);
        }
        Ok(out)
    }

    async fn row(&self, tenant_id: &str, id: &str) -> Result<ApiBasedExtensionRecord, ApiError> {
        self.store
            .api_based_extensions()
            .get(tenant_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found("API based extension is not found"))
    }

    /// One extension.
    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<ExtensionView, ApiError> {
        let row = self.row(tenant_id, id).await?;
        self.view(row).await
    }

    /// Dify's `_validation`: non-empty unique name, endpoint, key of at least 5 characters, then the ping.
    async fn validate(&self, tenant_id: &str, id: Option<&str>, input: &ExtensionInput) -> Result<(), ApiError> {
        if input.name.is_empty() {
            return Err(ApiError::invalid("name must not be empty"));
        }
        if let Some(existing) = self
            .store
            .api_based_extensions()
            .find_by_name(tenant_id, &input.name)
            .await?
            && Some(existing.id.as_str()) != id
        {
            return Err(ApiError::invalid("name must be unique, it is already existed"));
        }
        if input.api_endpoint.is_empty() {
            return Err(ApiError::invalid("api_endpoint must not be empty"));
        }
        if input.api_key.is_empty() {
            return Err(ApiError::invalid("api_key must not be empty"));
        }
        if input.api_key.chars().count() < 5 {
            return Err(ApiError::invalid("api_key must be at least 5 characters"));
        }
        self.requestor
            .request(&input.api_endpoint, &input.api_key, ExtensionPoint::Ping, Map::new())
            .await
            .map_err(|e| ApiError::invalid(format!("connection error: {e}")))?;
        Ok(())
    }

    /// Creates an extension after validating and pinging it.
    pub async fn create(&self, tenant_id: &str, input: ExtensionInput) -> Result<ExtensionView, ApiError> {
        self.validate(tenant_id, None, &input).await?;
        let key = self.keys.private_key(tenant_id).await?;
        let encrypted = key
            .public_key()
            .encrypt(&input.api_key)
            .map_err(|e| ApiError::internal(format!("cannot encrypt the extension key: {e}")))?;
        let row = self
            .store
            .api_based_extensions()
            .insert(tenant_id, &input.name, &input.api_endpoint, &encrypted)
            .await?;
        self.view(row).await
    }

    /// Updates an extension; `api_key = "[__HIDDEN__]"` keeps the stored key.
    pub async fn update(
        &self,
        tenant_id: &str,
        id: &str,
        mut input: ExtensionInput,
    ) -> Result<ExtensionView, ApiError> {
        let row = self.row(tenant_id, id).await?;
        if input.api_key == HIDDEN_VALUE {
            input.api_key = self.decrypt_key(&row).await?;
        }
        self.validate(tenant_id, Some(id), &input).await?;
        let key = self.keys.private_key(tenant_id).await?;
        let encrypted = key
            .public_key()
            .encrypt(&input.api_key)
            .map_err(|e| ApiError::internal(format!("cannot encrypt the extension key: {e}")))?;
        let row = self
            .store
            .api_based_extensions()
            .update(tenant_id, id, &input.name, &input.api_endpoint, &encrypted)
            .await?
            .ok_or_else(|| ApiError::not_found("API based extension is not found"))?;
        self.view(row).await
    }

    /// Deletes an extension.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<(), ApiError> {
        if !self.store.api_based_extensions().delete(tenant_id, id).await? {
            return Err(ApiError::not_found("API based extension is not found"));
        }
        Ok(())
    }

    /// Calls a point of the tenant's extension `id` (params checked first) and returns the validated response.
    pub async fn invoke(
        &self,
        tenant_id: &str,
        id: &str,
        point: ExtensionPoint,
        params: Map<String, Value>,
    ) -> Result<Map<String, Value>, ApiError> {
        validate_params(point, &params).map_err(ApiError::invalid)?;
        let row = self.row(tenant_id, id).await?;
        let key = self.decrypt_key(&row).await?;
        self.requestor
            .request(&row.api_endpoint, &key, point, params)
            .await
            .map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::BAD_GATEWAY,
                    "extension_request_failed",
                    e.to_string(),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_dify() {
        assert_eq!(mask_api_key("abcde"), "a******e");
        assert_eq!(mask_api_key("12345678"), "1******8");
        assert_eq!(mask_api_key("sk-123456789"), "sk-******789");
    }

    #[test]
    fn validates_moderation_responses() {
        let ok = json!({"flagged": true, "action": "direct_output", "preset_response": "no"});
        assert!(validate(ExtensionPoint::ModerationOutput, ok.as_object().unwrap()).is_ok());
        let bad = json!({"flagged": "yes", "action": "direct_output"});
        assert!(validate(ExtensionPoint::ModerationInput, bad.as_object().unwrap()).is_err());
        let bad = json!({"flagged": false, "action": "drop"});
        assert!(validate(ExtensionPoint::ModerationInput, bad.as_object().unwrap()).is_err());
        assert!("app.nope".parse::<ExtensionPoint>().is_err());
    }
}
