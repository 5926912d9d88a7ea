//! The `Tool` and `ToolProvider` traits that every provider kind implements, and the invocation entry point.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::{
    CredentialType, ToolEntity, ToolError, ToolInvokeMessage, ToolParameter, ToolProviderEntity, ToolProviderType,
};

/// The output of an invocation: messages in the order the tool produced them, ending early on an error.
pub type MessageStream = BoxStream<'static, Result<ToolInvokeMessage, ToolError>>;

/// Where an invocation comes from (`InvokeFrom` / `ToolInvokeFrom`), for logging and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvokeFrom {
    /// toolplane's own invoke API or CLI.
    #[default]
    Api,
    Agent,
    Workflow,
    Plugin,
    Mcp,
}

/// What a tool knows about the call it serves: tenant, decrypted credentials and runtime parameters
/// (Dify's `ToolRuntime`).
#[derive(Debug, Clone, Default)]
pub struct ToolRuntime {
    pub tenant_id: String,
    pub user_id: Option<String>,
    /// Decrypted credentials; empty for providers that need none.
    pub credentials: Map<String, Value>,
    pub credential_type: Option<CredentialType>,
    /// Values fixed by configuration; they win over the caller's parameters of the same name.
    pub runtime_parameters: Map<String, Value>,
    pub invoke_from: InvokeFrom,
}

/// One tool of a provider.
#[async_trait]
pub trait Tool: Send + Sync {
    /// The tool's declaration.
    fn entity(&self) -> &ToolEntity;

    /// The parameters for this runtime (`get_runtime_parameters`); tools whose parameters depend on the tenant
    /// or credentials override it.
    async fn runtime_parameters(&self, _runtime: &ToolRuntime) -> Result<Vec<ToolParameter>, ToolError> {
        Ok(self.entity().parameters.clone())
    }

    /// Runs the tool. `parameters` are already validated and cast (see [`invoke`]). Implementations should stop
    /// promptly when `cancel` fires; [`invoke`] also ends the stream at that moment whatever the tool does.
    async fn invoke(
        &self,
        runtime: ToolRuntime,
        parameters: Map<String, Value>,
        cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError>;
}

/// An icon file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icon {
    pub mime_type: &'static str,
    pub bytes: &'static [u8],
}

/// A provider of tools: builtin, API, plugin, MCP or workflow.
#[async_trait]
pub trait ToolProvider: Send + Sync {
    /// Which kind of provider this is.
    fn provider_type(&self) -> ToolProviderType;

    /// The id callers use to address it: the name for builtin and plugin providers, a record id for the others.
    fn id(&self) -> &str;

    /// The provider's declaration.
    fn entity(&self) -> &ToolProviderEntity;

    /// Every tool, in declaration order.
    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError>;

    /// One tool by name.
    async fn tool(&self, name: &str) -> Result<Option<Arc<dyn Tool>>, ToolError> {
        Ok(self
            .tools()
            .await?
            .into_iter()
            .find(|t| t.entity().identity.name == name))
    }

    /// Checks credentials with the remote service after their format was validated; the default accepts them.
    async fn validate_credentials(&self, _credentials: &Map<String, Value>) -> Result<(), ToolError> {
        Ok(())
    }

    /// The icon file, for providers that ship one.
    fn icon(&self) -> Option<Icon> {
        None
    }
}

/// Options of one invocation.
#[derive(Debug, Clone, Default)]
pub struct InvokeOptions {
    /// Ends the invocation with [`ToolError::Timeout`] when it runs longer, output included.
    pub timeout: Option<Duration>,
    /// Fired by the caller (e.g. when its client disconnects); ends the stream with [`ToolError::Cancelled`].
    pub cancel: CancellationToken,
}

/// Invokes a tool the way Dify's `Tool.invoke` does: runtime parameters override the caller's, declared
/// parameters are validated and cast, then the tool runs. The returned stream honours the timeout and the
/// cancellation token even when the tool ignores them.
pub async fn invoke(
    tool: Arc<dyn Tool>,
    runtime: ToolRuntime,
    mut parameters: Map<String, Value>,
    options: InvokeOptions,
) -> Result<MessageStream, ToolError> {
    for (name, value) in &runtime.runtime_parameters {
        parameters.insert(name.clone(), value.clone());
    }
    let declared = tool.runtime_parameters(&runtime).await?;
    let parameters = crate::validate_and_cast(&declared, parameters)?;

    let cancel = options.cancel.child_token();
    let deadline = options.timeout.map(|t| tokio::time::Instant::now() + t);
    let start = async { tool.invoke(runtime, parameters, cancel.clone()).await };
    let stream = match deadline {
        Some(deadline) => tokio::select! {
            result = start => result?,
            _ = tokio::time::sleep_until(deadline) => return Err(timeout_error(options.timeout)),
            _ = cancel.cancelled() => return Err(ToolError::Cancelled),
        },
        None => tokio::select! {
            result = start => result?,
            _ = cancel.cancelled() => return Err(ToolError::Cancelled),
        },
    };
    Ok(guard_stream(stream, cancel, deadline, options.timeout))
}

fn timeout_error(timeout: Option<Duration>) -> ToolError {
    ToolError::Timeout {
        seconds: timeout.map_or(0, |t| t.as_secs()),
    }
}

/// Wraps a tool's stream so that a timeout or a cancellation ends it with an error item, and the tool's own
/// cancellation token fires when the stream is dropped (a client that went away stops the work).
fn guard_stream(
    inner: MessageStream,
    cancel: CancellationToken,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
) -> MessageStream {
    struct State {
        inner: Option<MessageStream>,
        drop_guard: tokio_util::sync::DropGuard,
        cancel: CancellationToken,
    }
    let state = State {
        inner: Some(inner),
        drop_guard: cancel.clone().drop_guard(),
        cancel,
    };
    futures::stream::unfold(state, move |mut state| async move {
        let inner = state.inner.as_mut()?;
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let item = tokio::select! {
            biased;
            _ = state.cancel.cancelled() => Some(Err(ToolError::Cancelled)),
            _ = sleep => Some(Err(timeout_error(timeout))),
            item = inner.next() => item,
        };
        match item {
            Some(Err(e)) => {
                // An error ends the invocation: stop the tool and yield nothing after it.
                state.inner = None;
                state.cancel.cancel();
                Some((Err(e), state))
            }
            Some(ok) => Some((ok, state)),
            None => {
                let _ = &state.drop_guard;
                None
            }
        }
    })
    .boxed()
}

/// Collects a stream into a vector, stopping at the first error.
pub async fn collect_messages(mut stream: MessageStream) -> Result<Vec<ToolInvokeMessage>, ToolError> {
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        out.push(item?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{I18nObject, ToolIdentity, ToolParameterForm, ToolParameterType};

    struct Slow {
        entity: ToolEntity,
    }

    #[async_trait]
    impl Tool for Slow {
        fn entity(&self) -> &ToolEntity {
            &self.entity
        }

        async fn invoke(
            &self,
            _runtime: ToolRuntime,
            parameters: Map<String, Value>,
            _cancel: CancellationToken,
        ) -> Result<MessageStream, ToolError> {
            let n = parameters.get("n").and_then(Value::as_i64).unwrap_or(0);
            // Yields one message, then never finishes (a tool that ignores cancellation).
            Ok(
                futures::stream::once(async move { Ok(ToolInvokeMessage::text(format!("n={n}"))) })
                    .chain(futures::stream::pending())
                    .boxed(),
            )
        }
    }

    fn slow() -> Arc<dyn Tool> {
        Arc::new(Slow {
            entity: ToolEntity {
                identity: ToolIdentity {
                    author: "t".into(),
                    name: "slow".into(),
                    label: I18nObject::new("Slow"),
                    provider: "test".into(),
                    icon: None,
                },
                parameters: vec![ToolParameter::new("n", ToolParameterType::Number, ToolParameterForm::Llm).required()],
                description: None,
                output_schema: Map::new(),
                has_runtime_parameters: false,
            },
        })
    }

    #[tokio::test]
    async fn runtime_parameters_win_and_values_are_cast() {
        let runtime = ToolRuntime {
            runtime_parameters: Map::from_iter([("n".into(), Value::String("7".into()))]),
            ..Default::default()
        };
        let params = Map::from_iter([("n".into(), Value::from(1))]);
        let options = InvokeOptions {
            timeout: Some(Duration::from_millis(50)),
            ..Default::default()
        };
        let mut stream = invoke(slow(), runtime, params, options).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().as_text(), Some("n=7"));
        assert_eq!(
            stream.next().await.unwrap().unwrap_err(),
            ToolError::Timeout { seconds: 0 }
        );
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn cancellation_ends_the_stream() {
        let options = InvokeOptions::default();
        let cancel = options.cancel.clone();
        let params = Map::from_iter([("n".into(), Value::from(1))]);
        let mut stream = invoke(slow(), ToolRuntime::default(), params, options).await.unwrap();
        assert!(stream.next().await.unwrap().is_ok());
        cancel.cancel();
        assert_eq!(stream.next().await.unwrap().unwrap_err(), ToolError::Cancelled);
    }

    #[tokio::test]
    async fn missing_parameter_fails_before_the_tool_runs() {
        let err = match invoke(slow(), ToolRuntime::default(), Map::new(), InvokeOptions::default()).await {
            Err(e) => e,
            Ok(_) => panic!("expected an error"),
        };
        assert!(matches!(err, ToolError::ParameterValidation(_)));
    }
}
