//! Tool calls from plugins back into toolplane (`invoke tool` backwards invocations): a plugin can call builtin,
//! API, workflow, MCP and other plugin tools of its tenant through the same catalog as everyone else.

use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use toolplane_core::{Catalog, InvokeFrom, InvokeOptions, ToolProviderType};
use toolplane_runtime::{BackwardsToolCall, ToolCatalog};

/// How long a plugin's call into another tool may run.
const BACKWARDS_TOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The catalog as the plugin runtime sees it. It is bound after the application state is built, because the state's
/// catalog itself lists the plugins the runtime serves; a weak pointer keeps the two from owning each other.
#[derive(Default)]
pub struct CatalogTools {
    catalog: OnceLock<Weak<Catalog>>,
}

impl CatalogTools {
    /// An unbound catalog view; calls fail with a clear error until [`CatalogTools::bind`].
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Points the view at the application's catalog. Only the first binding counts.
    pub fn bind(&self, catalog: &Arc<Catalog>) {
        let _ = self.catalog.set(Arc::downgrade(catalog));
    }
}

#[async_trait]
impl ToolCatalog for CatalogTools {
    async fn invoke(&self, call: BackwardsToolCall) -> Result<BoxStream<'static, Result<Value, String>>, String> {
        let catalog = self
            .catalog
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| "toolplane's tool catalog is not available to plugins in this process".to_owned())?;
        let mut kind: ToolProviderType = call.tool_type.parse()?;
        // Dify calls plugin tool providers "builtin"; their ids are `author/name/provider`.
        if kind == ToolProviderType::Builtin && call.provider.contains('/') {
            kind = ToolProviderType::Plugin;
        }
        let resolved = catalog
            .runtime(
                &call.tenant_id,
                kind,
                &call.provider,
                &call.tool,
                call.credential_id.as_deref(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut runtime = resolved.runtime;
        runtime.user_id = Some(call.user_id);
        runtime.invoke_from = InvokeFrom::Plugin;
        let options = InvokeOptions {
            timeout: Some(BACKWARDS_TOOL_TIMEOUT),
            ..InvokeOptions::default()
        };
        let stream = toolplane_core::invoke(resolved.tool, runtime, call.parameters, options)
            .await
            .map_err(|e| e.to_string())?;
        Ok(stream
            .map(|item| {
                item.map_err(|e| e.to_string())
                    .and_then(|message| serde_json::to_value(message).map_err(|e| e.to_string()))
            })
            .boxed())
    }
}
