//! Engine overhead per node: a 100-node chain of template nodes and a fan-out of 50 parallel tool nodes
//! calling a trivial tool through a real catalog. Prints medians.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use toolplane_core::{
    Catalog, CredentialStore, I18nObject, MessageStream, Positions, ProviderSource, ResolvedCredential, StaticSource,
    Tool, ToolEntity, ToolError, ToolIdentity, ToolInvokeMessage, ToolParameter, ToolParameterForm, ToolParameterType,
    ToolProvider, ToolProviderEntity, ToolProviderIdentity, ToolProviderType, ToolRuntime,
};
use toolplane_workflow::{CatalogInvoker, Engine, EngineConfig, RunContext, Workflow};

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

struct Bench(ToolProviderEntity, Vec<Arc<dyn Tool>>);

#[async_trait]
impl ToolProvider for Bench {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Builtin
    }
    fn id(&self) -> &str {
        "bench"
    }
    fn entity(&self) -> &ToolProviderEntity {
        &self.0
    }
    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        Ok(self.1.clone())
    }
}

struct NoCredentials;

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

fn catalog() -> Arc<Catalog> {
    let echo = Echo(ToolEntity {
        identity: ToolIdentity {
            author: "bench".into(),
            name: "echo".into(),
            label: I18nObject::new("echo"),
            provider: "bench".into(),
            icon: None,
        },
        parameters: vec![ToolParameter::new(
            "text",
            ToolParameterType::String,
            ToolParameterForm::Llm,
        )],
        description: None,
        output_schema: Map::new(),
        has_runtime_parameters: false,
    });
    let provider = Bench(
        ToolProviderEntity {
            identity: ToolProviderIdentity {
                author: "bench".into(),
                name: "bench".into(),
                description: I18nObject::new("bench"),
                icon: "x".into(),
                icon_dark: None,
                label: I18nObject::new("bench"),
                tags: vec![],
            },
            plugin_id: None,
            credentials_schema: vec![],
            oauth_schema: None,
        },
        vec![Arc::new(echo)],
    );
    let source: Arc<dyn ProviderSource> =
        Arc::new(StaticSource::new(ToolProviderType::Builtin, vec![Arc::new(provider)]));
    Arc::new(Catalog::new(
        vec![source],
        Arc::new(NoCredentials),
        Positions::default(),
        Positions::default(),
    ))
}

fn graph(nodes: Vec<Value>, edges: Vec<(String, String)>) -> String {
    let edges: Vec<Value> = edges
        .into_iter()
        .map(|(s, t)| json!({"source": s, "target": t}))
        .collect();
    json!({"app": {"mode": "workflow"}, "workflow": {"graph": {"nodes": nodes, "edges": edges}}}).to_string()
}

fn chain(n: usize) -> Workflow {
    let mut nodes = vec![
        json!({"id": "start", "data": {"type": "start", "variables": [{"variable": "x", "label": "x", "type": "text-input"}]}}),
    ];
    let mut edges = Vec::new();
    let mut previous = "start".to_owned();
    for i in 0..n {
        let id = format!("t{i}");
        let source = if i == 0 {
            json!(["start", "x"])
        } else {
            json!([previous, "output"])
        };
        nodes.push(json!({"id": id, "data": {"type": "template-transform", "template": "{{ v }}.", "variables": [{"variable": "v", "value_selector": source}]}}));
        edges.push((previous.clone(), id.clone()));
        previous = id;
    }
    nodes.push(json!({"id": "end", "data": {"type": "end", "outputs": [{"variable": "out", "value_selector": [previous, "output"]}]}}));
    edges.push((previous, "end".into()));
    Workflow::from_dsl(&graph(nodes, edges)).unwrap()
}

fn fan_out(n: usize) -> Workflow {
    let mut nodes = vec![json!({"id": "start", "data": {"type": "start", "variables": []}})];
    let mut edges = Vec::new();
    let mut outputs = Vec::new();
    for i in 0..n {
        let id = format!("tool{i}");
        nodes.push(json!({"id": id, "data": {"type": "tool", "provider_type": "builtin", "provider_id": "bench", "tool_name": "echo",
            "tool_parameters": {"text": {"type": "constant", "value": format!("n{i}")}}}}));
        edges.push(("start".to_owned(), id.clone()));
        edges.push((id.clone(), "end".to_owned()));
        outputs.push(json!({"variable": id, "value_selector": [id, "text"]}));
    }
    nodes.push(json!({"id": "end", "data": {"type": "end", "outputs": outputs}}));
    Workflow::from_dsl(&graph(nodes, edges)).unwrap()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn measure(engine: &Engine, workflow: &Workflow, inputs: &Map<String, Value>, rounds: usize) -> Duration {
    for _ in 0..5 {
        engine
            .invoke(workflow, inputs.clone(), RunContext::default())
            .await
            .unwrap();
    }
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        engine
            .invoke(workflow, inputs.clone(), RunContext::default())
            .await
            .unwrap();
        samples.push(started.elapsed());
    }
    median(samples)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let catalog = catalog();
        let engine = Engine::builder(EngineConfig::default())
            .tools(Arc::new(CatalogInvoker::new(Arc::clone(&catalog))))
            .build();
        let rounds = 200;

        let chain = chain(100);
        let inputs = json!({"x": "go"}).as_object().cloned().unwrap();
        let total = measure(&engine, &chain, &inputs, rounds).await;
        let nodes = chain.nodes.len() as u32; // start + 100 templates + end
        println!(
            "chain of 100 template nodes: median {:.3} ms per run, {:.1} µs per node ({} nodes, {rounds} runs)",
            total.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e6 / f64::from(nodes),
            nodes
        );

        let fan = fan_out(50);
        let total = measure(&engine, &fan, &Map::new(), rounds).await;
        let nodes = fan.nodes.len() as u32; // start + 50 tools + end
        println!(
            "fan-out of 50 parallel tool nodes: median {:.3} ms per run, {:.1} µs per node ({} nodes, {rounds} runs)",
            total.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e6 / f64::from(nodes),
            nodes
        );
    });
}
