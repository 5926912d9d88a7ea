//! A small builtin-like provider and a catalog around it, for the server tests and the bench.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use toolplane_core::{
    Catalog, CredentialStore, I18nObject, MessageStream, Positions, ResolvedCredential, StaticSource, Tool,
    ToolDescription, ToolEntity, ToolError, ToolIdentity, ToolInvokeMessage, ToolParameter, ToolParameterForm,
    ToolParameterType, ToolProvider, ToolProviderEntity, ToolProviderIdentity, ToolProviderType, ToolRuntime,
};
use toolplane_mcp::{ExposedEntry, McpServer, McpServerConfig};

/// Counts cancelled `slow` calls.
pub static CANCELLED: AtomicUsize = AtomicUsize::new(0);

/// How many `slow` calls have been cancelled so far (in this test process).
pub fn cancellations() -> usize {
    CANCELLED.load(Ordering::SeqCst)
}

/// Whether a `slow` call is cancelled after the count stood at `before`, waiting up to 12 s for it (bounded, so a
/// tool that keeps running fails the test instead of hanging it).
pub async fn cancelled_since(before: usize) -> bool {
    for _ in 0..600 {
        if cancellations() > before {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

struct DemoTool(ToolEntity);

fn entity(name: &str, description: &str, parameters: Vec<ToolParameter>, output_schema: Value) -> ToolEntity {
    ToolEntity {
        identity: ToolIdentity {
            author: "test".into(),
            name: name.into(),
            label: I18nObject::new(name),
            provider: "demo".into(),
            icon: None,
        },
        parameters,
        description: Some(ToolDescription {
            human: I18nObject::new(description),
            llm: description.into(),
        }),
        output_schema: output_schema.as_object().cloned().unwrap_or_default(),
        has_runtime_parameters: false,
    }
}

#[async_trait]
impl Tool for DemoTool {
    fn entity(&self) -> &ToolEntity {
        &self.0
    }

    async fn invoke(
        &self,
        _runtime: ToolRuntime,
        parameters: Map<String, Value>,
        cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let messages = match self.0.identity.name.as_str() {
            "echo" => {
                let prefix = parameters.get("prefix").and_then(Value::as_str).unwrap_or("");
                let text = parameters.get("text").and_then(Value::as_str).unwrap_or("");
                vec![ToolInvokeMessage::text(format!("{prefix}{text}"))]
            }
            "rich" => vec![
                ToolInvokeMessage::json(json!({"answer": 42})),
                ToolInvokeMessage::variable("city", json!("Berlin")),
                ToolInvokeMessage::blob(b"\x89PNG demo".to_vec(), "image/png", None),
                ToolInvokeMessage::link("https://files.example/report.pdf"),
            ],
            "slow" => {
                // Counts a cancellation whether the token fires or the whole call is dropped.
                struct CountIfUnfinished(bool);
                impl Drop for CountIfUnfinished {
                    fn drop(&mut self) {
                        if !self.0 {
                            CANCELLED.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                let mut guard = CountIfUnfinished(false);
                tokio::select! {
                    _ = cancel.cancelled() => return Err(ToolError::Cancelled),
                    _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
                        guard.0 = true;
                        vec![ToolInvokeMessage::text("done")]
                    }
                }
            }
            "fail" => return Err(ToolError::Invoke("the demo tool failed on purpose".into())),
            other => return Err(ToolError::NotSupported(other.into())),
        };
        Ok(futures::stream::iter(messages.into_iter().map(Ok)).boxed())
    }
}

struct DemoProvider {
    entity: ToolProviderEntity,
    tools: Vec<Arc<dyn Tool>>,
}

#[async_trait]
impl ToolProvider for DemoProvider {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Builtin
    }
    fn id(&self) -> &str {
        "demo"
    }
    fn entity(&self) -> &ToolProviderEntity {
        &self.entity
    }
    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        Ok(self.tools.clone())
    }
}

struct NoCredentials;

#[async_trait]
impl CredentialStore for NoCredentials {
    async fn credential(
        &self,
        _tenant_id: &str,
        _provider: &dyn ToolProvider,
        _credential_id: Option<&str>,
    ) -> Result<Option<ResolvedCredential>, ToolError> {
        Ok(None)
    }
}

/// A catalog with the `demo` builtin provider: echo (text, llm; prefix, form), rich, slow, fail.
pub fn catalog() -> Arc<Catalog> {
    let tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(DemoTool(entity(
            "echo",
            "Echo the text",
            vec![
                ToolParameter::new("text", ToolParameterType::String, ToolParameterForm::Llm).required(),
                ToolParameter::new("prefix", ToolParameterType::String, ToolParameterForm::Form),
            ],
            Value::Null,
        ))),
        Arc::new(DemoTool(entity("rich", "Every message kind", vec![], Value::Null))),
        Arc::new(DemoTool(entity(
            "slow",
            "Waits until cancelled",
            vec![ToolParameter::new(
                "n",
                ToolParameterType::Number,
                ToolParameterForm::Llm,
            )],
            json!({"type": "object", "properties": {"done": {"type": "boolean"}}}),
        ))),
        Arc::new(DemoTool(entity("fail", "Always fails", vec![], Value::Null))),
    ];
    let provider = DemoProvider {
        entity: ToolProviderEntity {
            identity: ToolProviderIdentity {
                author: "test".into(),
                name: "demo".into(),
                description: I18nObject::new("demo"),
                icon: String::new(),
                icon_dark: None,
                label: I18nObject::new("Demo"),
                tags: vec![],
            },
            plugin_id: None,
            credentials_schema: vec![],
            oauth_schema: None,
        },
        tools,
    };
    let source = StaticSource::new(ToolProviderType::Builtin, vec![Arc::new(provider)]);
    Arc::new(Catalog::new(
        vec![Arc::new(source)],
        Arc::new(NoCredentials),
        Positions::default(),
        Positions::default(),
    ))
}

/// A server exposing the whole demo provider with `prefix` fixed to `"> "`.
pub fn server() -> Arc<McpServer> {
    let config = McpServerConfig {
        name: "demo-server".into(),
        instructions: Some("Demo tools".into()),
        entries: vec![ExposedEntry::Provider {
            provider_type: ToolProviderType::Builtin,
            provider_id: "demo".into(),
            parameters: Map::from_iter([("prefix".into(), json!("> "))]),
            credential_id: None,
        }],
    };
    Arc::new(McpServer::new(catalog(), "tenant-1", config))
}

/// A server exposing only `echo`, addressed directly (the fast path).
pub fn echo_server() -> Arc<McpServer> {
    let config = McpServerConfig {
        name: "echo-server".into(),
        instructions: None,
        entries: vec![ExposedEntry::Tool {
            provider_type: ToolProviderType::Builtin,
            provider_id: "demo".into(),
            tool_name: "echo".into(),
            name: None,
            description: None,
            parameters: Map::from_iter([("prefix".into(), json!(""))]),
            credential_id: None,
        }],
    };
    Arc::new(McpServer::new(catalog(), "tenant-1", config))
}
