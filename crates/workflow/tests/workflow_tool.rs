//! Workflows published as tools: parameters, output schema, nested workflow tools, the depth limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use serde_json::{Value, json};
use toolplane_core::{
    InvokeOptions, MessagePayload, ProviderSource, StaticSource, ToolError, ToolParameterForm, ToolParameterType,
    ToolProvider, ToolProviderType, ToolRuntime, collect_messages, invoke,
};
use toolplane_workflow::{
    CatalogInvoker, Engine, EngineConfig, Workflow, WorkflowTool, WorkflowToolConfig, WorkflowToolError,
    WorkflowToolParameterConfiguration, output_schema, start_variables_to_parameters,
};

fn param(name: &str, form: ToolParameterForm) -> WorkflowToolParameterConfiguration {
    WorkflowToolParameterConfiguration {
        name: name.into(),
        description: format!("the {name}"),
        form,
    }
}

fn config(provider_id: &str, name: &str) -> WorkflowToolConfig {
    WorkflowToolConfig {
        provider_id: provider_id.into(),
        name: name.into(),
        label: format!("{name} label"),
        description: format!("runs {name}"),
        icon: r##"{"background":"#252525","content":"😁"}"##.into(),
        author: "tests".into(),
        parameters: vec![param("word", ToolParameterForm::Llm)],
        version: "2026-01-01 00:00:00".into(),
        app_id: Some(format!("app-{name}")),
    }
}

#[test]
fn parameters_follow_difys_mapping() {
    let dsl = r#"
app: {mode: workflow}
workflow:
  graph:
    edges: []
    nodes:
      - id: start
        data:
          type: start
          variables:
            - {variable: t, label: Title, type: text-input, required: true}
            - {variable: p, label: Body, type: paragraph}
            - {variable: s, label: Size, type: select, options: [S, M], default: M}
            - {variable: n, label: Count, type: number}
            - {variable: c, label: Flag, type: checkbox}
            - {variable: f, label: File, type: file}
            - {variable: fl, label: Files, type: file-list}
            - {variable: j, label: Json, type: json_object}
      - id: end
        data:
          type: end
          outputs:
            - {variable: title, value_selector: [start, t]}
            - {variable: count, value_selector: [start, n]}
            - {variable: text, value_selector: [start, t]}
"#;
    let wf = Workflow::from_dsl(dsl).unwrap();
    let configs: Vec<_> = ["t", "p", "s", "n", "c", "f", "fl", "j"]
        .iter()
        .map(|n| param(n, ToolParameterForm::Llm))
        .collect();
    let params = start_variables_to_parameters(&wf, &configs).unwrap();
    let kinds: Vec<ToolParameterType> = params.iter().map(|p| p.kind).collect();
    use ToolParameterType as T;
    assert_eq!(
        kinds,
        [
            T::String,
            T::String,
            T::Select,
            T::Number,
            T::Boolean,
            T::File,
            T::Files,
            T::Object
        ]
    );
    assert!(params[0].required);
    assert_eq!(params[0].label.en_US, "Title");
    assert_eq!(params[0].llm_description.as_deref(), Some("the t"));
    assert_eq!(params[2].option_values(), ["S", "M"]);
    assert_eq!(params[2].default, Some(json!("M")));

    let err = start_variables_to_parameters(&wf, &[param("nope", ToolParameterForm::Form)]).unwrap_err();
    assert_eq!(err, WorkflowToolError::VariableNotFound("nope".into()));

    let schema = output_schema(&wf);
    assert_eq!(
        Value::Object(schema),
        json!({"type": "object", "properties": {
            "title": {"type": "string", "description": ""},
            "count": {"type": "number", "description": ""}
        }})
    );
}

/// A catalog with the testkit, the inner workflow tool, the outer one (calling inner) and a self-calling one.
fn catalog_with_workflow_tools(max_depth: u32) -> (Arc<toolplane_core::Catalog>, Engine) {
    let invoker = Arc::new(CatalogInvoker::late());
    let engine = Engine::builder(EngineConfig {
        max_depth,
        ..EngineConfig::default()
    })
    .tools(invoker.clone())
    .build();
    let tool = |file: &str, provider: &str, name: &str| {
        WorkflowTool::from_dsl(engine.clone(), &common::dsl(file), config(provider, name))
            .unwrap()
            .into_provider()
    };
    let workflows: Vec<Arc<dyn ToolProvider>> = vec![
        tool("inner_tool.yml", "inner-provider", "inner_tool"),
        tool("outer_tool.yml", "outer-provider", "outer_tool"),
        tool("recursive_tool.yml", "self-provider", "ouroboros"),
    ];
    let sources: Vec<Arc<dyn ProviderSource>> = vec![
        Arc::new(StaticSource::new(
            ToolProviderType::Builtin,
            vec![common::Testkit::provider(1)],
        )),
        Arc::new(StaticSource::new(ToolProviderType::Workflow, workflows)),
    ];
    let catalog = common::catalog(sources);
    assert!(invoker.set_catalog(&catalog));
    (catalog, engine)
}

async fn call(
    catalog: &toolplane_core::Catalog,
    provider: &str,
    tool: &str,
    word: &str,
) -> Result<Vec<toolplane_core::ToolInvokeMessage>, ToolError> {
    let resolved = catalog
        .runtime("tenant-1", ToolProviderType::Workflow, provider, tool, None)
        .await?;
    let runtime = ToolRuntime {
        user_id: Some("user-1".into()),
        ..resolved.runtime
    };
    let params = json!({"word": word}).as_object().cloned().unwrap();
    let stream = invoke(resolved.tool, runtime, params, InvokeOptions::default()).await?;
    collect_messages(stream).await
}

#[tokio::test]
async fn a_workflow_tool_calls_another_workflow_tool() {
    let (catalog, _engine) = catalog_with_workflow_tools(5);
    let provider = catalog
        .provider("tenant-1", ToolProviderType::Workflow, "outer-provider")
        .await
        .unwrap();
    assert_eq!(
        provider.entity().identity.name,
        "outer_tool label",
        "provider name is the label, as in Dify"
    );
    let tool = provider.tool("outer_tool").await.unwrap().unwrap();
    assert_eq!(tool.entity().parameters[0].kind, ToolParameterType::String);
    assert_eq!(tool.entity().output_schema["properties"]["result"]["type"], "any");

    let messages = call(&catalog, "outer-provider", "outer_tool", "hi").await.unwrap();
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind()).collect();
    assert_eq!(kinds, ["variable", "text", "json"]);
    match &messages[0].payload {
        MessagePayload::Variable(v) => {
            assert_eq!(v.variable_name, "result");
            assert_eq!(v.variable_value, "[<hi>]");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(messages[1].as_text(), Some(r#"{"result":"[<hi>]"}"#));
    match &messages[2].payload {
        MessagePayload::Json(j) => {
            assert!(j.suppress_output);
            assert_eq!(j.json_object, json!({"result": "[<hi>]"}));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn recursion_stops_at_the_depth_limit() {
    let (catalog, _engine) = catalog_with_workflow_tools(3);
    let err = call(&catalog, "self-provider", "ouroboros", "loop").await.unwrap_err();
    let ToolError::Invoke(message) = &err else {
        panic!("expected an invoke error, got {err:?}")
    };
    assert!(
        message.contains("workflow call depth 4 exceeds the limit of 3 (WORKFLOW_CALL_MAX_DEPTH)"),
        "{message}"
    );
    // Each level names the node that failed.
    assert!(message.contains("node \"again\" failed"), "{message}");
}

#[tokio::test]
async fn runtime_errors_name_the_failed_node() {
    let (catalog, _engine) = catalog_with_workflow_tools(5);
    // An empty word fails the inner start node's required check.
    let err = call(&catalog, "inner-provider", "inner_tool", "").await.unwrap_err();
    // The core validates the required parameter first.
    assert!(matches!(err, ToolError::ParameterValidation(_)), "{err:?}");

    let engine = Engine::builder(EngineConfig::default()).build();
    let dsl = common::dsl("tools.yml");
    let cfg = WorkflowToolConfig {
        parameters: vec![param("a", ToolParameterForm::Llm), param("b", ToolParameterForm::Llm)],
        ..config("tools-provider", "tools_tool")
    };
    let provider = WorkflowTool::from_dsl(engine, &dsl, cfg).unwrap().into_provider();
    let tool = provider.tool("tools_tool").await.unwrap().unwrap();
    let params = json!({"a": 1, "b": "2"}).as_object().cloned().unwrap();
    let err = match invoke(tool, ToolRuntime::default(), params, InvokeOptions::default()).await {
        Ok(stream) => collect_messages(stream)
            .await
            .expect_err("the tool node fails without an invoker"),
        Err(e) => e,
    };
    let ToolError::Invoke(message) = err else {
        panic!("{err:?}")
    };
    assert!(message.contains("node \"add\" failed"), "{message}");
}

#[test]
fn tool_names_are_checked() {
    let engine = Engine::builder(EngineConfig::default()).build();
    let err = WorkflowTool::from_dsl(engine, &common::dsl("inner_tool.yml"), config("p", "bad name")).err();
    assert_eq!(err, Some(WorkflowToolError::InvalidName("bad name".into())));
}
