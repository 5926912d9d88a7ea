//! Installed plugin tool providers as a toolplane [`ProviderSource`].
//!
//! Dify lists plugin tool providers among the builtin ones, named `author/name/provider`. toolplane keeps the kinds
//! apart: this source yields providers of kind [`ToolProviderType::Plugin`] whose id and `identity.name` are
//! `author/name/provider` (the Dify id), with `plugin_id` set to `author/name`. Their tools cannot run until the
//! plugin runtime exists: [`Tool::invoke`] answers [`ToolError::NotSupported`].

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use toolplane_core::{
    MessageStream, ProviderSource, Tool, ToolEntity, ToolError, ToolProvider, ToolProviderEntity, ToolProviderType,
    ToolRuntime,
};

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
                Ok(provider) => out.push(Arc::new(provider)),
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
        Ok(Some(Arc::new(provider)))
    }
}

/// One installed plugin tool provider.
#[derive(Debug, Clone)]
pub struct PluginToolProvider {
    id: String,
    unique_identifier: String,
    entity: ToolProviderEntity,
    tools: Vec<Arc<PluginTool>>,
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
            entity,
            tools,
        })
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
}

/// A tool of an installed plugin.
#[derive(Debug, Clone)]
pub struct PluginTool {
    entity: ToolEntity,
    unique_identifier: String,
}

#[async_trait]
impl Tool for PluginTool {
    fn entity(&self) -> &ToolEntity {
        &self.entity
    }

    async fn invoke(
        &self,
        _runtime: ToolRuntime,
        _parameters: Map<String, Value>,
        _cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        Err(ToolError::NotSupported(format!(
            "plugin runtime not available yet: {} is installed, but toolplane cannot run plugin tools until the \
             plugin runtime lands",
            self.unique_identifier
        )))
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
