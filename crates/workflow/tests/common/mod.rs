//! Shared test fixtures: a builtin-like provider `testkit` with real tools, a catalog over it, DSL loading.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::Barrier;
use tokio_util::sync::CancellationToken;
use toolplane_core::{
    Catalog, CredentialStore, I18nObject, MessageStream, Positions, ProviderSource, ResolvedCredential, StaticSource,
    Tool, ToolEntity, ToolError, ToolIdentity, ToolInvokeMessage, ToolParameter, ToolParameterForm, ToolParameterType,
    ToolProvider, ToolProviderEntity, ToolProviderIdentity, ToolProviderType, ToolRuntime,
};
use toolplane_workflow::{CatalogInvoker, Engine, EngineConfig, RunEvent, Workflow};

pub fn dsl(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

pub fn workflow(name: &str) -> Arc<Workflow> {
    Arc::new(Workflow::from_dsl(&dsl(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
}

pub fn inputs(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

fn entity(name: &str, parameters: Vec<ToolParameter>) -> ToolEntity {
    ToolEntity {
        identity: ToolIdentity {
            author: "tests".into(),
            name: name.into(),
            label: I18nObject::new(name),
            provider: "testkit".into(),
            icon: None,
        },
        parameters,
        description: None,
        output_schema: Map::new(),
        has_runtime_parameters: false,
    }
}

fn param(name: &str, kind: ToolParameterType) -> ToolParameter {
    ToolParameter::new(name, kind, ToolParameterForm::Llm).required()
}

/// `add(a, b, scale, note)`: text, json and a `sum` variable.
struct Add(ToolEntity);

#[async_trait]
impl Tool for Add {
    fn entity(&self) -> &ToolEntity {
        &self.0
    }
    async fn invoke(
        &self,
        _: ToolRuntime,
        p: Map<String, Value>,
        _: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let a = p["a"].as_f64().unwrap();
        let b = p["b"].as_f64().unwrap();
        let sum = (a + b) * p.get("scale").and_then(Value::as_f64).unwrap_or(1.0);
        let note = p.get("note").cloned().unwrap_or(Value::Null);
        let messages = vec![
            Ok(ToolInvokeMessage::text(format!("sum is {sum}"))),
            Ok(ToolInvokeMessage::json(json!({"sum": sum, "note": note}))),
            Ok(ToolInvokeMessage::variable("sum", json!(sum))),
        ];
        Ok(futures::stream::iter(messages).boxed())
    }
}

/// `rendezvous(label)`: waits until all participants arrived (proves concurrency), then echoes its label.
struct Rendezvous(ToolEntity, Arc<Barrier>);

#[async_trait]
impl Tool for Rendezvous {
    fn entity(&self) -> &ToolEntity {
        &self.0
    }
    async fn invoke(
        &self,
        _: ToolRuntime,
        p: Map<String, Value>,
        _: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        self.1.wait().await;
        let label = p["label"].as_str().unwrap_or_default().to_owned();
        Ok(futures::stream::once(async move { Ok(ToolInvokeMessage::text(label)) }).boxed())
    }
}

/// `echo(text)`: returns its text (the trivial tool of the benchmark).
struct Echo(ToolEntity);

#[async_trait]
impl Tool for Echo {
    fn entity(&self) -> &ToolEntity {
        &self.0
    }
    async fn invoke(
        &self,
        _: ToolRuntime,
        p: Map<String, Value>,
        _: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let text = p.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(futures::stream::once(async move { Ok(ToolInvokeMessage::text(text)) }).boxed())
    }
}

pub struct Testkit {
    entity: ToolProviderEntity,
    tools: Vec<Arc<dyn Tool>>,
}

impl Testkit {
    pub fn provider(rendezvous_parties: usize) -> Arc<dyn ToolProvider> {
        let number = ToolParameterType::Number;
        let tools: Vec<Arc<dyn Tool>> = vec![
            Arc::new(Add(entity(
                "add",
                vec![
                    param("a", number),
                    param("b", number),
                    ToolParameter::new("scale", number, ToolParameterForm::Form),
                    ToolParameter::new("note", ToolParameterType::String, ToolParameterForm::Form),
                ],
            ))),
            Arc::new(Rendezvous(
                entity("rendezvous", vec![param("label", ToolParameterType::String)]),
                Arc::new(Barrier::new(rendezvous_parties)),
            )),
            Arc::new(Echo(entity("echo", vec![param("text", ToolParameterType::String)]))),
        ];
        Arc::new(Testkit {
            entity: ToolProviderEntity {
                identity: ToolProviderIdentity {
                    author: "tests".into(),
                    name: "testkit".into(),
                    description: I18nObject::new("test tools"),
                    icon: "icon.svg".into(),
                    icon_dark: None,
                    label: I18nObject::new("Testkit"),
                    tags: vec![],
                },
                plugin_id: None,
                credentials_schema: vec![],
                oauth_schema: None,
            },
            tools,
        })
    }
}

#[async_trait]
impl ToolProvider for Testkit {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Builtin
    }
    fn id(&self) -> &str {
        "testkit"
    }
    fn entity(&self) -> &ToolProviderEntity {
        &self.entity
    }
    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        Ok(self.tools.clone())
    }
}

pub struct NoCredentials;

#[async_trait]
impl CredentialStore for NoCredentials {
    async fn credential(
        &self,
        _: &str,
        _: &dyn ToolProvider,
        _: Option<&str>,
    ) -> Result<Option<ResolvedCredential>, ToolError> {
        Ok(None)
    }
}

pub fn catalog(sources: Vec<Arc<dyn ProviderSource>>) -> Arc<Catalog> {
    Arc::new(Catalog::new(
        sources,
        Arc::new(NoCredentials),
        Positions::default(),
        Positions::default(),
    ))
}

/// An engine whose tool nodes reach the `testkit` provider through a real catalog.
pub fn engine_with_testkit(parties: usize) -> (Engine, Arc<Catalog>) {
    let source: Arc<dyn ProviderSource> = Arc::new(StaticSource::new(
        ToolProviderType::Builtin,
        vec![Testkit::provider(parties)],
    ));
    let catalog = catalog(vec![source]);
    let engine = Engine::builder(EngineConfig::default())
        .tools(Arc::new(CatalogInvoker::new(Arc::clone(&catalog))))
        .build();
    (engine, catalog)
}

pub async fn collect(stream: toolplane_workflow::RunStream) -> Vec<RunEvent> {
    tokio::time::timeout(Duration::from_secs(60), stream.collect::<Vec<_>>())
        .await
        .expect("run finished within 60 s")
}

/// The final outputs, or the failure text and node.
pub fn outcome(events: &[RunEvent]) -> Result<Map<String, Value>, (String, Option<String>)> {
    match events.last() {
        Some(RunEvent::WorkflowSucceeded { outputs, .. }) => Ok(outputs.clone()),
        Some(RunEvent::WorkflowFailed { error, node_id, .. }) => Err((error.clone(), node_id.clone())),
        other => panic!("the run did not end with a workflow event: {other:?}"),
    }
}
