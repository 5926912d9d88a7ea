//! [`BuiltinProvider`]: a compiled-in provider made of a parsed declaration, its tools and its icon.

use std::sync::Arc;

use async_trait::async_trait;
use toolplane_core::{Icon, Tool, ToolError, ToolProvider, ToolProviderEntity, ToolProviderType};

/// A builtin provider: its declaration, its tools in declaration order and its SVG icon.
pub(crate) struct BuiltinProvider {
    entity: ToolProviderEntity,
    tools: Vec<Arc<dyn Tool>>,
    icon: &'static [u8],
}

impl BuiltinProvider {
    pub(crate) fn new(entity: ToolProviderEntity, tools: Vec<Arc<dyn Tool>>, icon: &'static [u8]) -> Self {
        Self { entity, tools, icon }
    }
}

#[async_trait]
impl ToolProvider for BuiltinProvider {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Builtin
    }

    /// Builtin providers are addressed by name, as in Dify.
    fn id(&self) -> &str {
        &self.entity.identity.name
    }

    fn entity(&self) -> &ToolProviderEntity {
        &self.entity
    }

    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        Ok(self.tools.clone())
    }

    fn icon(&self) -> Option<Icon> {
        Some(Icon {
            mime_type: "image/svg+xml",
            bytes: self.icon,
        })
    }
}
