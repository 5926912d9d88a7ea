//! Running workflows: chains, branches, concurrency, iteration, templates, tools, HTTP and code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::HeaderMap;
use axum::routing::post;
use common::{collect, engine_with_testkit, inputs, outcome, workflow};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use toolplane_net::{NetConfig, SafeClient};
use toolplane_workflow::{Engine, EngineConfig, RunContext, RunError, RunEvent};

fn ctx() -> RunContext {
    RunContext {
        tenant_id: "tenant-1".into(),
        user_id: Some("user-1".into()),
        ..RunContext::default()
    }
}

#[tokio::test]
async fn chain_of_templates_runs_in_order_with_events() {
    let engine = Engine::builder(EngineConfig::default()).build();
    let events = collect(engine.run(workflow("chain.yml"), inputs(json!({"name": "Ada"})), ctx())).await;
    let outputs = outcome(&events).unwrap();
    assert_eq!(outputs["greeting"], "HELLO ADA! HELLO ADA!");
    assert_eq!(outputs["who"], "Ada");

    let order: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::NodeStarted { node_id, .. } => Some(("started", node_id.as_str())),
            RunEvent::NodeSucceeded { node_id, .. } => Some(("ok", node_id.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            ("started", "start"),
            ("ok", "start"),
            ("started", "greet"),
            ("ok", "greet"),
            ("started", "shout"),
            ("ok", "shout"),
            ("started", "end"),
            ("ok", "end")
        ]
    );
    let greet = events
        .iter()
        .find_map(|e| match e {
            RunEvent::NodeSucceeded {
                node_id,
                inputs,
                outputs,
                elapsed_ms,
                ..
            } if node_id == "greet" => Some((inputs.clone(), outputs.clone(), *elapsed_ms)),
            _ => None,
        })
        .unwrap();
    assert_eq!(greet.0["times"], 2, "the default of an absent start variable is used");
    assert_eq!(greet.1["output"], "Hello Ada! Hello Ada! ");
    assert!(greet.2 >= 0.0);
    // Events serialise for SSE with an event tag.
    let first = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(first["event"], "workflow_started");
}

#[tokio::test]
async fn start_variables_are_validated() {
    let engine = Engine::builder(EngineConfig::default()).build();
    let wf = workflow("chain.yml");
    let err = engine.invoke(&wf, inputs(json!({})), ctx()).await.unwrap_err();
    assert_eq!(err.node_id(), Some("start"));
    assert!(err.to_string().contains("name is required in input form"), "{err}");
    let err = engine
        .invoke(&wf, inputs(json!({"name": "x".repeat(49)})), ctx())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 48 characters"), "{err}");
    let err = engine
        .invoke(&wf, inputs(json!({"name": "a", "times": "many"})), ctx())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("times in input form must be a number"),
        "{err}"
    );
}

#[tokio::test]
async fn if_else_takes_one_branch_and_skips_the_other() {
    let engine = Engine::builder(EngineConfig::default()).build();
    let wf = workflow("branches.yml");

    let events = collect(engine.run(Arc::clone(&wf), inputs(json!({"score": 80, "name": "Ada"})), ctx())).await;
    let outputs = outcome(&events).unwrap();
    assert_eq!(outputs["verdict"], "pass with 80");
    assert_eq!(outputs["case"], "high");
    let skipped: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::NodeSkipped { node_id, .. } => Some(node_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, ["fail", "fail_only"]);
    let end_runs = events
        .iter()
        .filter(|e| matches!(e, RunEvent::NodeStarted { node_id, .. } if node_id == "end"))
        .count();
    assert_eq!(end_runs, 1, "a join runs once");

    // Low score (and a missing name: the `and` case fails) takes the else branch; the join waits for both of
    // its live predecessors.
    let events = collect(engine.run(Arc::clone(&wf), inputs(json!({"score": "80"})), ctx())).await;
    let outputs = outcome(&events).unwrap();
    assert_eq!(outputs["verdict"], "fail with 80");
    assert_eq!(outputs["case"], "false");
    let started: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::NodeStarted { node_id, .. } => Some(node_id.as_str()),
            _ => None,
        })
        .collect();
    assert!(!started.contains(&"pass"));
    assert_eq!(started.last(), Some(&"end"));
    assert!(started.contains(&"fail_only") && started.contains(&"merge"));
}

#[tokio::test]
async fn independent_branches_run_concurrently() {
    // The three tool nodes meet at a barrier of three: run one after another, they would wait forever.
    let (engine, _catalog) = engine_with_testkit(3);
    let run = engine.run(workflow("parallel.yml"), inputs(json!({})), ctx());
    let events = tokio::time::timeout(Duration::from_secs(10), collect(run))
        .await
        .expect("branches ran concurrently (the barrier released)");
    let outputs = outcome(&events).unwrap();
    assert_eq!(outputs["all"], "ABC", "the join saw every branch's output");
}

#[tokio::test]
async fn iteration_maps_each_item_in_order() {
    let engine = Engine::builder(EngineConfig::default()).build();
    let events = collect(engine.run(
        workflow("iteration.yml"),
        inputs(json!({"payload": {"numbers": [1, 2, 3, 4, 5]}})),
        ctx(),
    ))
    .await;
    let outputs = outcome(&events).unwrap();
    assert_eq!(outputs["labels"], json!(["#0=2", "#1=4", "#2=6", "#3=8", "#4=10"]));
    let inner_runs = events
        .iter()
        .filter(|e| matches!(e, RunEvent::NodeSucceeded { node_id, iteration: Some(p), .. } if node_id == "double" && p.iteration_id == "loop"))
        .count();
    assert_eq!(inner_runs, 5);

    // A non-list iterator is a clear error naming the iteration node.
    let err = engine
        .invoke(
            &workflow("iteration.yml"),
            inputs(json!({"payload": {"numbers": 7}})),
            ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.node_id(), Some("loop"));
    assert!(err.to_string().contains("must be a list, got number"), "{err}");
}

#[tokio::test]
async fn template_errors_and_fuel_are_reported() {
    let engine = Engine::builder(EngineConfig {
        template_fuel: 2_000,
        ..EngineConfig::default()
    })
    .build();
    let text = common::dsl("chain.yml");
    let wf = toolplane_workflow::Workflow::from_dsl(&text).unwrap();
    let err = engine
        .invoke(&wf, inputs(json!({"name": "a", "times": 100000})), ctx())
        .await
        .unwrap_err();
    assert_eq!(err.node_id(), Some("greet"));
    assert!(err.to_string().contains("ran out of fuel"), "{err}");

    let broken = text.replace("{{ text | trim | upper }}", "{{ text | nosuchfilter }}");
    let wf = toolplane_workflow::Workflow::from_dsl(&broken).unwrap();
    let err = engine
        .invoke(&wf, inputs(json!({"name": "a"})), ctx())
        .await
        .unwrap_err();
    assert_eq!(err.node_id(), Some("shout"));
    assert!(err.to_string().contains("nosuchfilter"), "{err}");
}

#[tokio::test]
async fn tool_nodes_resolve_inputs_and_expose_outputs() {
    let (engine, _catalog) = engine_with_testkit(1);
    let events = collect(engine.run(workflow("tools.yml"), inputs(json!({"a": 2, "b": "3.5"})), ctx())).await;
    let outputs = outcome(&events).unwrap();
    assert_eq!(outputs["sum"], 55.0);
    assert_eq!(outputs["summary"], "sum is 55 | sum=55.0 | json=sum of 2 and 3.5");
    let tool_inputs = events
        .iter()
        .find_map(|e| match e {
            RunEvent::NodeStarted { node_id, inputs, .. } if node_id == "add" => Some(inputs.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(tool_inputs["a"], 2);
    assert_eq!(tool_inputs["b"], "3.5");
    assert_eq!(tool_inputs["scale"], 10);

    // A tool error fails the node with the tool's message.
    let err = engine
        .invoke(
            &workflow("tools.yml"),
            inputs(json!({"a": 2, "b": "not a number"})),
            ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.node_id(), Some("add"));
    assert!(err.to_string().contains("parameter \"b\" expects number"), "{err}");
}

#[tokio::test]
async fn tool_nodes_without_an_invoker_fail_clearly() {
    let engine = Engine::builder(EngineConfig::default()).build();
    let err = engine
        .invoke(&workflow("tools.yml"), inputs(json!({"a": 1, "b": "1"})), ctx())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("EngineBuilder::tools"), "{err}");
}

#[tokio::test]
async fn http_request_goes_through_the_safe_client() {
    async fn echo(headers: HeaderMap, uri: axum::http::Uri, Json(body): Json<Value>) -> Json<Value> {
        Json(json!({
            "auth": headers.get("authorization").and_then(|v| v.to_str().ok()),
            "city_header": headers.get("x-city").and_then(|v| v.to_str().ok()),
            "query": uri.query(),
            "body": body,
        }))
    }
    let app = axum::Router::new().route("/echo", post(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let allowed = SafeClient::new(NetConfig {
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..NetConfig::default()
    })
    .unwrap();
    let engine = Engine::builder(EngineConfig::default()).http(allowed).build();
    let base = format!("http://{addr}");
    let events = collect(engine.run(
        workflow("http.yml"),
        inputs(json!({"base": base, "city": "Oslo"})),
        ctx(),
    ))
    .await;
    let outputs = outcome(&events).unwrap();
    assert_eq!(outputs["status"], 200);
    let body: Value = serde_json::from_str(outputs["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["auth"], "Bearer s3cret");
    assert_eq!(body["city_header"], "Oslo");
    assert_eq!(body["query"], "units=metric&lang=en");
    assert_eq!(body["body"], json!({"city": "Oslo", "days": 3}));
    // The bearer token is masked in node events.
    let started = events
        .iter()
        .find_map(|e| match e {
            RunEvent::NodeStarted { node_id, inputs, .. } if node_id == "call" => Some(inputs.clone()),
            _ => None,
        })
        .unwrap();
    assert!(!serde_json::to_string(&started).unwrap().contains("s3cret"));

    // The default guard refuses loopback: the SSRF error names the node.
    let guarded = Engine::builder(EngineConfig::default())
        .http(SafeClient::new(NetConfig::default()).unwrap())
        .build();
    let err = guarded
        .invoke(
            &workflow("http.yml"),
            inputs(json!({"base": format!("http://{addr}"), "city": "Oslo"})),
            ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.node_id(), Some("call"));
    assert!(err.to_string().contains("HTTP request failed"), "{err}");
}

fn node_available() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn code_nodes_run_python_and_javascript() {
    if !node_available() {
        eprintln!("NOTICE: `node` is not installed; skipping the javascript code-node test");
        return;
    }
    let engine = Engine::builder(EngineConfig::default()).build();
    let events = collect(engine.run(workflow("code.yml"), inputs(json!({"text": "to be or not"})), ctx())).await;
    let outputs = outcome(&events).unwrap();
    assert_eq!(outputs["count"], 4);
    assert_eq!(outputs["joined"], "TO-BE-OR-NOT");
}

/// An engine whose `rendezvous` tool waits for a second party that never comes.
fn stuck_engine(run_timeout: Duration) -> (Engine, Arc<toolplane_core::Catalog>) {
    let source: Arc<dyn toolplane_core::ProviderSource> = Arc::new(toolplane_core::StaticSource::new(
        toolplane_core::ToolProviderType::Builtin,
        vec![common::Testkit::provider(4)],
    ));
    let catalog = common::catalog(vec![source]);
    let engine = Engine::builder(EngineConfig {
        run_timeout,
        ..EngineConfig::default()
    })
    .tools(Arc::new(toolplane_workflow::CatalogInvoker::new(Arc::clone(&catalog))))
    .build();
    (engine, catalog)
}

#[tokio::test]
async fn run_timeout_and_cancellation_stop_the_run() {
    let wf = workflow("parallel.yml");
    let (engine, _catalog) = stuck_engine(Duration::from_millis(300));
    let started = Instant::now();
    let err = engine.invoke(&wf, inputs(json!({})), ctx()).await.unwrap_err();
    assert_eq!(err, RunError::Timeout { seconds: 0 });
    assert!(started.elapsed() < Duration::from_secs(5));

    let (engine, _catalog) = stuck_engine(Duration::from_secs(600));
    let cancel = CancellationToken::new();
    let run_ctx = RunContext {
        cancel: cancel.clone(),
        ..ctx()
    };
    let stream = engine.run(wf, inputs(json!({})), run_ctx);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let events = collect(stream).await;
    let (error, node) = outcome(&events).unwrap_err();
    assert!(error.contains("cancelled"), "{error}");
    assert_eq!(node, None);
}
