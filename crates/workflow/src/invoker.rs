//! How tool nodes reach tools: the [`ToolInvoker`] trait and its implementation over a
//! [`toolplane_core::Catalog`].
//!
//! The workflow call depth travels with each call. A [`WorkflowTool`](crate::WorkflowTool) invoked through the
//! catalog cannot receive it as an argument (the `Tool` trait has no such parameter), so [`CatalogInvoker`] also
//! sets it in a task-local ([`current_call_depth`]) around the invocation; the workflow tool reads it there.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use toolplane_core::{
    Catalog, InvokeFrom, InvokeOptions, ToolError, ToolInvokeMessage, ToolProviderType, collect_messages, invoke,
};

tokio::task_local! {
    static CALL_DEPTH: u32;
}

/// The workflow call depth of the current task: the depth of the workflow whose tool node is invoking a tool,
/// or 0 outside any workflow.
pub fn current_call_depth() -> u32 {
    CALL_DEPTH.try_with(|d| *d).unwrap_or(0)
}

/// Runs `future` with [`current_call_depth`] returning `depth`.
pub async fn with_call_depth<F: Future>(depth: u32, future: F) -> F::Output {
    CALL_DEPTH.scope(depth, future).await
}

/// One tool call from a tool node.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub tenant_id: String,
    pub user_id: Option<String>,
    pub provider_type: ToolProviderType,
    pub provider_id: String,
    pub tool_name: String,
    /// Parameters and configurations, already resolved from the variable pool.
    pub parameters: Map<String, Value>,
    pub credential_id: Option<String>,
    /// The call depth of the workflow making the call (a called workflow tool runs at `call_depth + 1`).
    pub call_depth: u32,
}

/// Invokes tools for tool nodes.
#[async_trait]
pub trait ToolInvoker: Send + Sync {
    /// Runs the tool and returns all its messages, or the first error.
    async fn invoke(&self, call: ToolCall, cancel: CancellationToken) -> Result<Vec<ToolInvokeMessage>, ToolError>;
}

/// A [`ToolInvoker`] that resolves tools (and credentials) through a [`Catalog`], so every provider kind works,
/// workflow tools included.
pub struct CatalogInvoker {
    catalog: CatalogRef,
    timeout: Option<Duration>,
}

enum CatalogRef {
    Owned(Arc<Catalog>),
    Late(OnceLock<Weak<Catalog>>),
}

impl CatalogInvoker {
    /// An invoker over `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog: CatalogRef::Owned(catalog),
            timeout: None,
        }
    }

    /// An invoker whose catalog is set later with [`set_catalog`](Self::set_catalog). This breaks the cycle
    /// catalog → workflow source → workflow tool → engine → invoker → catalog; only a weak reference is kept,
    /// so whoever builds the catalog must keep it alive.
    pub fn late() -> Self {
        Self {
            catalog: CatalogRef::Late(OnceLock::new()),
            timeout: None,
        }
    }

    /// Sets the catalog of an invoker made with [`late`](Self::late). Returns false if it was already set or
    /// the invoker owns its catalog.
    pub fn set_catalog(&self, catalog: &Arc<Catalog>) -> bool {
        match &self.catalog {
            CatalogRef::Late(cell) => cell.set(Arc::downgrade(catalog)).is_ok(),
            CatalogRef::Owned(_) => false,
        }
    }

    /// Builder: a timeout for each tool invocation.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn catalog(&self) -> Result<Arc<Catalog>, ToolError> {
        match &self.catalog {
            CatalogRef::Owned(c) => Ok(Arc::clone(c)),
            CatalogRef::Late(cell) => cell.get().and_then(Weak::upgrade).ok_or_else(|| {
                ToolError::Internal(
                    "the workflow engine's tool catalog is not set (CatalogInvoker::set_catalog)".into(),
                )
            }),
        }
    }
}

#[async_trait]
impl ToolInvoker for CatalogInvoker {
    async fn invoke(&self, call: ToolCall, cancel: CancellationToken) -> Result<Vec<ToolInvokeMessage>, ToolError> {
        let catalog = self.catalog()?;
        let resolved = catalog
            .runtime(
                &call.tenant_id,
                call.provider_type,
                &call.provider_id,
                &call.tool_name,
                call.credential_id.as_deref(),
            )
            .await?;
        let mut runtime = resolved.runtime;
        runtime.user_id = call.user_id;
        runtime.invoke_from = InvokeFrom::Workflow;
        let options = InvokeOptions {
            timeout: self.timeout,
            cancel,
        };
        with_call_depth(call.call_depth, async move {
            let stream = invoke(resolved.tool, runtime, call.parameters, options).await?;
            collect_messages(stream).await
        })
        .await
    }
}
