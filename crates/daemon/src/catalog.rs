//! Installed plugin tool providers as a toolplane [`ProviderSource`].
//!
//! Dify lists plugin tool providers among the builtin ones, named `author/name/provider`. toolplane keeps the kinds
//! apart: this source yields providers of kind [`ToolProviderType::Plugin`] whose id and `identity.name` are
//! `author/name/provider` (the Dify id), with `plugin_id` set to `author/name`. Their tools run through the daemon's
//! plugin runtime (`invoke_tool` with the caller's credentials from [`ToolRuntime::credentials`]); without a runtime
//! [`Tool::invoke`] answers [`ToolError::NotSupported`].

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use toolplane_core::{
    MessageStream, ProviderSource, Tool, ToolEntity, ToolError, ToolInvokeMessage, ToolProvider, ToolProviderEntity,
    ToolProviderType, ToolRuntime,
};
use toolplane_runtime::{InvokeRequest, SessionError};

use crate::db::ProviderCategory;
use crate::service::DaemonState;

/// The plugin tool providers a tenant has installed.
#[derive(Debug, Clone)]
pub struct PluginProviderSource {
    state: DaemonState,
}

impl PluginProviderSource {
    /// A source over the daemon's database.
    pub fn new(state: DaemonState) -> Self {
        Self { state }
    }

    /// Deleted-tool detection with the semantics of `tools/check_existence`: for each Dify provider id
    /// (`author/name/provider`), whether the tenant has it installed. Ids that are not of that form are reported
    /// missing.
    pub async fn providers_exist(&self, tenant_id: &str, provider_ids: &[&str]) -> Result<Vec<bool>, ToolError> {
        let mut pairs = Vec::with_capacity(provider_ids.len());
        let mut valid = Vec::with_capacity(provider_ids.len());
        for id in provider_ids {
            match split_provider_id(id) {
                Some((plugin_id, provider)) => {
                    pairs.push((plugin_id.to_owned(), provider.to_owned()));
                    valid.push(true);
                }
                None => valid.push(false),
            }
        }
        let found = self.state.tools_exist(tenant_id, &pairs).await.map_err(internal)?;
        let mut found = found.into_iter();
        Ok(valid
            .into_iter()
            .map(|ok| ok && found.next().unwrap_or(false))
            .collect())
    }
}

/// Splits `author/name/provider` into (`author/name`, `provider`).
pub fn split_provider_id(id: &str) -> Option<(&str, &str)> {
    let (plugin_id, provider) = id.rsplit_once('/')?;
    (plugin_id.contains('/') && !provider.is_empty() && !plugin_id.starts_with('/')).then_some((plugin_id, provider))
}

fn internal(e: crate::DaemonError) -> ToolError {
    ToolError::Internal(format!("plugin daemon: {e}"))
}

#[async_trait]
impl ProviderSource for PluginProviderSource {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Plugin
    }

    async fn list(&self, tenant_id: &str) -> Result<Vec<Arc<dyn ToolProvider>>, ToolError> {
        let rows = self
            .state
            .db()
            .providers(ProviderCategory::Tool, tenant_id, 1, i64::MAX / 2)
            .await
            .map_err(internal)?;
        let mut out: Vec<Arc<dyn ToolProvider>> = Vec::with_capacity(rows.len());
        for row in rows {
            let declaration = self
                .state
                .db()
                .declaration(&row.plugin_unique_identifier)
                .await
                .map_err(internal)?;
            let Some(tool) = declaration.as_ref().and_then(|d| d.get("tool")) else {
                continue;
            };
            match PluginToolProvider::from_declaration(&row.plugin_id, &row.plugin_unique_identifier, tool) {
                Ok(provider) => out.push(Arc::new(provider.with_state(&self.state))),
                Err(e) => {
                    tracing::warn!(plugin = %row.plugin_unique_identifier, error = %e, "skipping a plugin tool provider whose declaration cannot be read")
                }
            }
        }
        Ok(out)
    }

    async fn get(&self, tenant_id: &str, provider_id: &str) -> Result<Option<Arc<dyn ToolProvider>>, ToolError> {
        let Some((plugin_id, provider)) = split_provider_id(provider_id) else {
            return Ok(None);
        };
        let Some(row) = self
            .state
            .db()
            .provider(ProviderCategory::Tool, tenant_id, plugin_id, provider)
            .await
            .map_err(internal)?
        else {
            return Ok(None);
        };
        let declaration = self
            .state
            .db()
            .declaration(&row.plugin_unique_identifier)
            .await
            .map_err(internal)?;
        let Some(tool) = declaration.as_ref().and_then(|d| d.get("tool")) else {
            return Ok(None);
        };
        let provider = PluginToolProvider::from_declaration(&row.plugin_id, &row.plugin_unique_identifier, tool)?;
        Ok(Some(Arc::new(provider.with_state(&self.state))))
    }
}

/// One installed plugin tool provider.
#[derive(Debug, Clone)]
pub struct PluginToolProvider {
    id: String,
    unique_identifier: String,
    short_name: String,
    entity: ToolProviderEntity,
    tools: Vec<Arc<PluginTool>>,
    state: Option<DaemonState>,
}

impl PluginToolProvider {
    /// Builds the provider from the `tool` part of a plugin declaration.
    pub fn from_declaration(plugin_id: &str, unique_identifier: &str, tool: &Value) -> Result<Self, ToolError> {
        let bad = |e: serde_json::Error| ToolError::Internal(format!("plugin {unique_identifier}: {e}"));
        let mut entity: ToolProviderEntity = serde_json::from_value(tool.clone()).map_err(bad)?;
        let short_name = entity.identity.name.clone();
        let id = format!("{plugin_id}/{short_name}");
        entity.identity.name = id.clone();
        entity.plugin_id = Some(plugin_id.to_owned());
        let tools = tool
            .get("tools")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|t| {
                        let mut t = t.clone();
                        // Tool declarations do not repeat their provider; the entity carries it.
                        if let Some(identity) = t.get_mut("identity").and_then(Value::as_object_mut) {
                            identity
                                .entry("provider")
                                .or_insert_with(|| Value::String(short_name.clone()));
                        }
                        serde_json::from_value::<ToolEntity>(t).map(|entity| {
                            Arc::new(PluginTool {
                                entity,
                                unique_identifier: unique_identifier.to_owned(),
                                provider: short_name.clone(),
                                state: None,
                            })
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(bad)?
            .unwrap_or_default();
        Ok(Self {
            id,
            unique_identifier: unique_identifier.to_owned(),
            short_name,
            entity,
            tools,
            state: None,
        })
    }

    /// Runs the provider's tools through `state`'s plugin runtime.
    pub fn with_state(mut self, state: &DaemonState) -> Self {
        self.tools = self
            .tools
            .iter()
            .map(|t| {
                Arc::new(PluginTool {
                    state: Some(state.clone()),
                    ..PluginTool::clone(t)
                })
            })
            .collect();
        self.state = Some(state.clone());
        self
    }

    /// The installed package's unique identifier.
    pub fn unique_identifier(&self) -> &str {
        &self.unique_identifier
    }
}

#[async_trait]
impl ToolProvider for PluginToolProvider {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Plugin
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn entity(&self) -> &ToolProviderEntity {
        &self.entity
    }

    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        Ok(self.tools.iter().map(|t| Arc::clone(t) as Arc<dyn Tool>).collect())
    }

    /// `validate_tool_credentials` in the plugin; without a runtime the format check alone decides.
    async fn validate_credentials(&self, credentials: &Map<String, Value>) -> Result<(), ToolError> {
        let Some((state, runtime)) = self.state.as_ref().and_then(|s| s.runtime().map(|r| (s, r))) else {
            return Ok(());
        };
        let mut payload = Map::new();
        payload.insert("provider".into(), Value::String(self.short_name.clone()));
        payload.insert("credentials".into(), Value::Object(credentials.clone()));
        let request = InvokeRequest {
            access_type: "tool".into(),
            action: "validate_tool_credentials".into(),
            payload,
            ..Default::default()
        };
        let session = state
            .session_for(runtime, &self.unique_identifier, &request)
            .await
            .map_err(|e| ToolError::Invoke(e.to_string()))?;
        match session.collect().await {
            Ok(chunks) if chunks.iter().any(|c| c.get("result") == Some(&Value::Bool(true))) => Ok(()),
            Ok(_) => Err(ToolError::CredentialValidation(
                "the plugin rejected the credentials".into(),
            )),
            Err(SessionError::Plugin(e)) => Err(ToolError::CredentialValidation(e.message)),
            Err(SessionError::Runtime(e) | SessionError::ConnectionClosed(e)) => Err(ToolError::Invoke(e)),
        }
    }
}

/// A tool of an installed plugin.
#[derive(Debug, Clone)]
pub struct PluginTool {
    entity: ToolEntity,
    unique_identifier: String,
    provider: String,
    state: Option<DaemonState>,
}

#[async_trait]
impl Tool for PluginTool {
    fn entity(&self) -> &ToolEntity {
        &self.entity
    }

    async fn invoke(
        &self,
        runtime: ToolRuntime,
        parameters: Map<String, Value>,
        cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let Some((state, plugin_runtime)) = self.state.as_ref().and_then(|s| s.runtime().map(|r| (s, r))) else {
            return Err(ToolError::NotSupported(format!(
                "plugin runtime not available: {} is installed, but this toolplane runs without the plugin runtime, so \
                 its tools cannot run",
                self.unique_identifier
            )));
        };
        let mut payload = Map::new();
        payload.insert("provider".into(), Value::String(self.provider.clone()));
        payload.insert("tool".into(), Value::String(self.entity.identity.name.clone()));
        payload.insert("credentials".into(), Value::Object(runtime.credentials));
        payload.insert(
            "credential_type".into(),
            Value::String(
                runtime
                    .credential_type
                    .map(|t| t.as_str())
                    .unwrap_or("api-key")
                    .to_owned(),
            ),
        );
        payload.insert("tool_parameters".into(), Value::Object(parameters));
        let request = InvokeRequest {
            tenant_id: runtime.tenant_id,
            user_id: runtime.user_id.unwrap_or_default(),
            access_type: "tool".into(),
            action: "invoke_tool".into(),
            payload,
            ..Default::default()
        };
        let session = state
            .session_for(plugin_runtime, &self.unique_identifier, &request)
            .await
            .map_err(|e| ToolError::Invoke(e.to_string()))?;
        let timeout = plugin_runtime.config().max_execution_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = futures::stream::unfold(Some(session), move |session| {
            let cancel = cancel.clone();
            async move {
                let mut session = session?;
                let next = tokio::select! {
                    () = cancel.cancelled() => return Some((Err(ToolError::Cancelled), None)),
                    next = tokio::time::timeout_at(deadline, session.next()) => next,
                };
                match next {
                    Err(_) => Some((
                        Err(ToolError::Timeout {
                            seconds: timeout.as_secs(),
                        }),
                        None,
                    )),
                    Ok(None) => None,
                    Ok(Some(Ok(chunk))) => {
                        let message = serde_json::from_value::<ToolInvokeMessage>(chunk).map_err(|e| {
                            ToolError::Invoke(format!("the plugin sent a message toolplane cannot read: {e}"))
                        });
                        Some((message, Some(session)))
                    }
                    Ok(Some(Err(SessionError::Plugin(e)))) => {
                        Some((Err(ToolError::Invoke(format!("{}: {}", e.error_type, e.message))), None))
                    }
                    Ok(Some(Err(SessionError::Runtime(e) | SessionError::ConnectionClosed(e)))) => {
                        Some((Err(ToolError::Invoke(e)), None))
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_dify_provider_ids() {
        assert_eq!(split_provider_id("a/b/c"), Some(("a/b", "c")));
        assert_eq!(split_provider_id("b/c"), None);
        assert_eq!(split_provider_id("time"), None);
        assert_eq!(split_provider_id("a/b/"), None);
    }
}
