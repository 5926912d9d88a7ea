//! Workflows over real HTTP on loopback: DSL files from `tests/data/workflows` imported through the console
//! routes, run blocking and streaming (tool nodes calling the builtin `time` tools and an API tool, an
//! http-request node against a loopback upstream), run history with node records, workflows published as tools
//! (Dify's workflow-tool routes), invoked through `/v1/tools/invoke`, nested, stopped by the depth limit,
//! isolated between tenants and reported as deleted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use support::{Db, Options, TestServer, postgres_url};

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/workflows/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// A loopback service: `POST /echo` answers the JSON body and the `X-Pet` header; anything else answers
/// `{ok, method, path}` (the API tool's upstream).
async fn upstream() -> String {
    async fn echo(headers: HeaderMap, body: Bytes) -> axum::Json<Value> {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let pet = headers.get("x-pet").and_then(|v| v.to_str().ok()).unwrap_or_default();
        axum::Json(json!({"received": body, "x_pet": pet}))
    }
    async fn other(method: axum::http::Method, uri: axum::http::Uri) -> axum::Json<Value> {
        axum::Json(json!({"ok": true, "method": method.as_str(), "path": uri.path()}))
    }
    let app = axum::Router::new()
        .route("/echo", axum::routing::post(echo))
        .fallback(other);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn pets_spec(base: &str) -> String {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Pets", "version": "1"},
        "servers": [{"url": format!("{base}/v1")}],
        "paths": {"/pets/{petId}": {"get": {
            "operationId": "getPet",
            "summary": "Get a pet",
            "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "string"}}]
        }}}
    })
    .to_string()
}

/// Imports an API provider and returns its row id.
async fn add_api_provider(s: &TestServer, key: &str, base: &str) -> String {
    let (status, body) = s
        .post(
            key,
            &s.console("/tool-provider/api/add"),
            json!({
                "provider": "pets",
                "icon": {"background": "#FFEAD5", "content": "🐶"},
                "credentials": {"auth_type": "none"},
                "schema_type": "openapi",
                "schema": pets_spec(base),
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, detail) = s.get(key, &s.console("/tool-provider/api/get?provider=pets")).await;
    assert_eq!(status, 200, "{detail}");
    detail["id"].as_str().unwrap().to_owned()
}

/// `POST …/workflows/import` with the DSL as the raw body.
async fn import(s: &TestServer, key: &str, dsl: &str) -> (u16, Value) {
    let response = s
        .http
        .post(s.console("/workflows/import"))
        .bearer_auth(key)
        .header("content-type", "application/yaml")
        .body(dsl.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn import_ok(s: &TestServer, key: &str, dsl: &str) -> String {
    let (status, body) = import(s, key, dsl).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn replace(s: &TestServer, key: &str, id: &str, dsl: &str) {
    let response = s
        .http
        .put(s.console(&format!("/workflows/{id}")))
        .bearer_auth(key)
        .json(&json!({"dsl": dsl}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn publish(s: &TestServer, key: &str, id: &str) -> String {
    let (status, body) = s
        .post(key, &s.console(&format!("/workflows/{id}/publish")), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    body["version"].as_str().unwrap().to_owned()
}

async fn run_blocking(s: &TestServer, key: &str, id: &str, inputs: Value) -> (u16, Value) {
    s.post(
        key,
        &s.console(&format!("/workflows/{id}/run")),
        json!({"inputs": inputs}),
    )
    .await
}

/// Creates a workflow tool and returns its id (read back through `workflow/get?workflow_app_id=`).
async fn create_tool(s: &TestServer, key: &str, app_id: &str, name: &str, parameters: Value) -> String {
    let (status, body) = s
        .post(
            key,
            &s.console("/tool-provider/workflow/create"),
            json!({
                "workflow_app_id": app_id,
                "name": name,
                "label": format!("{name} label"),
                "description": format!("{name} description"),
                "icon": {"content": "🤖", "background": "#FFEAD5"},
                "parameters": parameters,
                "privacy_policy": "",
                "labels": ["utilities", "not-a-label"],
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, detail) = s
        .get(
            key,
            &s.console(&format!("/tool-provider/workflow/get?workflow_app_id={app_id}")),
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    detail["workflow_tool_id"].as_str().unwrap().to_owned()
}

async fn update_tool(s: &TestServer, key: &str, tool_id: &str, name: &str, parameters: Value) -> (u16, Value) {
    s.post(
        key,
        &s.console("/tool-provider/workflow/update"),
        json!({
            "workflow_tool_id": tool_id,
            "name": name,
            "label": format!("{name} label"),
            "description": format!("{name} description"),
            "icon": {"content": "🤖", "background": "#FFEAD5"},
            "parameters": parameters,
        }),
    )
    .await
}

async fn invoke_workflow_tool(
    s: &TestServer,
    key: &str,
    provider_id: &str,
    tool: &str,
    parameters: Value,
) -> (u16, Value) {
    s.post(
        key,
        &s.url("/v1/tools/invoke"),
        json!({"provider_type": "workflow", "provider_id": provider_id, "tool": tool, "parameters": parameters}),
    )
    .await
}

fn word_parameter() -> Value {
    json!([{"name": "word", "description": "The word to wrap", "form": "llm"}])
}

/// The `variable` messages of an invoke response, by name.
fn variables(body: &Value) -> serde_json::Map<String, Value> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "variable")
        .map(|m| {
            (
                m["message"]["variable_name"].as_str().unwrap().to_owned(),
                m["message"]["variable_value"].clone(),
            )
        })
        .collect()
}

/// Parses a server-sent event stream into `(event, data)` pairs.
fn parse_sse(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut event = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if !event.is_empty() {
            out.push((event, serde_json::from_str(&data).unwrap_or(Value::Null)));
        }
    }
    out
}

async fn calendar_end_to_end(s: TestServer) {
    let base = upstream().await;
    let api_provider = add_api_provider(&s, &s.key_a, &base).await;
    let dsl = data("calendar.yml").replace("__API_PROVIDER__", &api_provider);

    // Import (raw YAML) and the JSON `{dsl}` form.
    let id = import_ok(&s, &s.key_a, &dsl).await;
    let (status, second) = s
        .post(&s.key_a, &s.console("/workflows/import"), json!({"dsl": dsl}))
        .await;
    assert_eq!(status, 201, "{second}");
    let (_, list) = s.get(&s.key_a, &s.console("/workflows")).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["name"], "calendar");
    let (status, detail) = s.get(&s.key_a, &s.console(&format!("/workflows/{id}"))).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["description"], "Weekday, local time, a pet and an echo");
    assert_eq!(detail["nodes"].as_array().unwrap().len(), 7);
    assert_eq!(detail["published_version"], Value::Null);
    assert_eq!(detail["dsl"], dsl);

    // Blocking run: every branch ran and the template joined them.
    let inputs = json!({"year": 2024, "month": 7, "day": 1, "pet": "rex", "base": base});
    let (status, run) = run_blocking(&s, &s.key_a, &id, inputs.clone()).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["outputs"]["day"], "July 1, 2024 is Monday.");
    let summary = run["outputs"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("July 1, 2024 is Monday. | 2024-07-01"), "{summary}");
    assert!(summary.ends_with("| /v1/pets/rex | 200"), "{summary}");
    let echo: Value = serde_json::from_str(run["outputs"]["echo"].as_str().unwrap()).unwrap();
    assert_eq!(echo, json!({"received": {"pet": "rex"}, "x_pet": "rex"}));
    let nodes: BTreeSet<&str> = run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["start", "weekday", "localtime", "pet", "echo", "summary", "end"])
    );
    let weekday = run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "weekday")
        .unwrap();
    assert_eq!(weekday["status"], "succeeded");
    assert_eq!(weekday["title"], "Weekday");
    assert_eq!(weekday["node_type"], "tool");
    assert_eq!(weekday["inputs"]["year"], 2024);
    assert_eq!(weekday["outputs"]["text"], "July 1, 2024 is Monday.");
    assert!(run["elapsed_ms"].as_f64().unwrap() > 0.0);

    // Streaming run: node events as SSE, each tagged with the run id, ending with workflow_succeeded.
    let response = s
        .http
        .post(s.console(&format!("/workflows/{id}/run")))
        .bearer_auth(&s.key_a)
        .header("accept", "text/event-stream")
        .json(&json!({"inputs": inputs}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_sse(&response.text().await.unwrap());
    assert_eq!(events.first().unwrap().0, "workflow_started");
    let (last, last_data) = events.last().unwrap();
    assert_eq!(last, "workflow_succeeded", "{events:?}");
    assert_eq!(last_data["outputs"]["day"], "July 1, 2024 is Monday.");
    let run_id = last_data["workflow_run_id"].as_str().unwrap().to_owned();
    assert!(events.iter().all(|(_, d)| d["workflow_run_id"] == run_id.as_str()));
    let succeeded = events.iter().filter(|(e, _)| e == "node_succeeded").count();
    let started = events.iter().filter(|(e, _)| e == "node_started").count();
    assert_eq!((started, succeeded), (7, 7));
    let echo_done = events
        .iter()
        .find(|(e, d)| e == "node_succeeded" && d["node_id"] == "echo")
        .unwrap();
    assert_eq!(echo_done.1["outputs"]["status_code"], 200);
    assert!(echo_done.1["elapsed_ms"].as_f64().is_some());

    // Run history: newest first, with node records.
    let (status, runs) = s.get(&s.key_a, &s.console(&format!("/workflows/{id}/runs"))).await;
    assert_eq!(status, 200, "{runs}");
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["id"], run_id.as_str());
    assert!(
        runs.iter()
            .all(|r| r["status"] == "succeeded" && r["nodes"].as_array().unwrap().len() == 7)
    );
    let (status, one) = s
        .get(&s.key_a, &s.console(&format!("/workflows/{id}/runs/{run_id}")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["inputs"]["pet"], "rex");

    // A failing run is recorded with the failed node.
    let (status, failed) = run_blocking(
        &s,
        &s.key_a,
        &id,
        json!({"year": 2024, "month": 7, "day": 1, "pet": "rex", "base": "http://127.0.0.1:9"}),
    )
    .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("echo"), "{failed}");
    assert!(
        failed["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node_id"] == "echo" && n["status"] == "failed" && n["error"].is_string())
    );

    // Tenant B sees none of it.
    let (status, _) = s.get(&s.key_b, &s.console(&format!("/workflows/{id}"))).await;
    assert_eq!(status, 404);
    let (status, _) = run_blocking(&s, &s.key_b, &id, inputs.clone()).await;
    assert_eq!(status, 404);
    let (status, _) = s.get(&s.key_b, &s.console(&format!("/workflows/{id}/runs"))).await;
    assert_eq!(status, 404);
    let (status, _) = s
        .get(&s.key_b, &s.console(&format!("/workflows/{id}/runs/{run_id}")))
        .await;
    assert_eq!(status, 404);
    let (_, list_b) = s.get(&s.key_b, &s.console("/workflows")).await;
    assert_eq!(list_b, json!([]));
    let response = s
        .http
        .delete(s.console(&format!("/workflows/{id}")))
        .bearer_auth(&s.key_b)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // Delete.
    let response = s
        .http
        .delete(s.console(&format!("/workflows/{id}")))
        .bearer_auth(&s.key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, _) = s.get(&s.key_a, &s.console(&format!("/workflows/{id}"))).await;
    assert_eq!(status, 404);
    s.stop().await;
}

#[tokio::test]
async fn import_and_run_with_builtin_api_and_http_nodes() {
    calendar_end_to_end(TestServer::start().await).await;
}

#[tokio::test]
async fn import_and_run_on_postgres() {
    if postgres_url().is_none() {
        return;
    }
    let s = TestServer::start_with(Options {
        db: Db::Postgres,
        ..Options::default()
    })
    .await;
    calendar_end_to_end(s).await;
}

#[tokio::test]
async fn unsupported_nodes_and_bad_dsl_are_rejected() {
    let s = TestServer::start().await;
    let (status, body) = import(&s, &s.key_a, &data("unsupported.yml")).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    for part in ["\"ask\"", "\"llm\"", "\"search\"", "\"knowledge-retrieval\""] {
        assert!(message.contains(part), "{part} missing from {message}");
    }

    let no_start = "app: {name: x, mode: workflow}\nworkflow:\n  graph:\n    nodes:\n      - {id: end, data: {type: end, outputs: []}}\n    edges: []\n";
    let (status, body) = import(&s, &s.key_a, no_start).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("no start node"), "{body}");

    let (status, body) = import(&s, &s.key_a, "").await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("empty"), "{body}");

    let (status, body) = s
        .post(&s.key_a, &s.console("/workflows/import"), json!({"dsl": 3}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, list) = s.get(&s.key_a, &s.console("/workflows")).await;
    assert_eq!(list, json!([]));
    s.stop().await;
}

#[tokio::test]
async fn workflow_tool_publish_invoke_sync_isolation_and_delete() {
    let s = TestServer::start().await;
    let app = import_ok(&s, &s.key_a, &data("inner.yml")).await;

    // Not published yet.
    let (status, body) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/workflow/create"),
            json!({"workflow_app_id": app, "name": "inner_tool", "label": "Inner", "parameters": []}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("publish"), "{body}");

    assert_eq!(publish(&s, &s.key_a, &app).await, "1");
    let parameters = json!([
        {"name": "word", "description": "The word to wrap", "form": "llm"},
        {"name": "style", "description": "Bracket style", "form": "form"},
    ]);
    // Invalid names, unknown parameters and duplicates are refused.
    for (name, params, needle) in [
        ("bad name", parameters.clone(), "letters, digits and underscores"),
        (
            "inner_tool",
            json!([{"name": "nope", "description": "", "form": "llm"}]),
            "variable not found",
        ),
    ] {
        let (status, body) = s
            .post(
                &s.key_a,
                &s.console("/tool-provider/workflow/create"),
                json!({"workflow_app_id": app, "name": name, "label": "L", "parameters": params}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{body}");
    }
    let tool_id = create_tool(&s, &s.key_a, &app, "inner_tool", parameters.clone()).await;
    let (status, body) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/workflow/create"),
            json!({"workflow_app_id": app, "name": "another", "label": "L", "parameters": []}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("already exists"), "{body}");

    // Dify's detail shape; parameters typed from the start variables, output schema from the end node.
    let (status, detail) = s
        .get(
            &s.key_a,
            &s.console(&format!("/tool-provider/workflow/get?workflow_tool_id={tool_id}")),
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["name"], "inner_tool");
    assert_eq!(detail["label"], "inner_tool label");
    assert_eq!(detail["workflow_app_id"], app.as_str());
    assert_eq!(detail["icon"]["content"], "🤖");
    assert_eq!(detail["synced"], true);
    assert_eq!(detail["parameters"], parameters);
    assert_eq!(detail["output_schema"]["properties"]["wrapped"]["type"], "string");
    let tool_parameters = detail["tool"]["parameters"].as_array().unwrap();
    assert_eq!(tool_parameters[0]["type"], "string");
    assert_eq!(tool_parameters[0]["form"], "llm");
    assert_eq!(tool_parameters[0]["required"], true);
    assert_eq!(tool_parameters[1]["type"], "select");
    assert_eq!(tool_parameters[1]["options"][1]["value"], "square");
    assert_eq!(detail["tool"]["labels"], json!(["utilities"]));

    let (_, listed) = s.get(&s.key_a, &s.console("/tools/workflow")).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], tool_id.as_str());
    assert_eq!(listed[0]["type"], "workflow");
    assert_eq!(listed[0]["workflow_app_id"], app.as_str());
    assert_eq!(listed[0]["tools"][0]["name"], "inner_tool");
    let (status, tools) = s
        .get(
            &s.key_a,
            &s.console(&format!("/tool-provider/workflow/tools?workflow_tool_id={tool_id}")),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(tools[0]["name"], "inner_tool");
    let (_, providers) = s.get(&s.key_a, &s.console("/tool-providers?type=workflow")).await;
    assert_eq!(providers.as_array().unwrap().len(), 1, "{providers}");

    // In the catalog and invocable through the invoke route: variable messages plus one json message.
    let (_, catalog) = s.get(&s.key_a, &s.url("/v1/tools")).await;
    let entry = catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider_type"] == "workflow")
        .expect("workflow tool in /v1/tools");
    assert_eq!(entry["provider_id"], tool_id.as_str());
    assert_eq!(entry["tools"][0]["name"], "inner_tool");
    let (status, body) = invoke_workflow_tool(&s, &s.key_a, &tool_id, "inner_tool", json!({"word": "hi"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(variables(&body)["wrapped"], "[hi]");
    let json_message = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "json")
        .unwrap();
    assert_eq!(json_message["message"]["json_object"], json!({"wrapped": "[hi]"}));
    let (status, body) = invoke_workflow_tool(&s, &s.key_a, &tool_id, "inner_tool", json!({})).await;
    assert_eq!(status, 400, "a missing required parameter is refused: {body}");

    // A newer published version: not synced, and the tool keeps running its pinned version until updated.
    replace(
        &s,
        &s.key_a,
        &app,
        &data("inner.yml").replace("\"[{{ w }}]\"", "\"({{ w }})\""),
    )
    .await;
    assert_eq!(publish(&s, &s.key_a, &app).await, "2");
    let (_, detail) = s
        .get(
            &s.key_a,
            &s.console(&format!("/tool-provider/workflow/get?workflow_app_id={app}")),
        )
        .await;
    assert_eq!(detail["synced"], false);
    let (_, body) = invoke_workflow_tool(&s, &s.key_a, &tool_id, "inner_tool", json!({"word": "hi"})).await;
    assert_eq!(variables(&body)["wrapped"], "[hi]");
    let (status, body) = update_tool(&s, &s.key_a, &tool_id, "inner_tool", word_parameter()).await;
    assert_eq!(status, 200, "{body}");
    let (_, detail) = s
        .get(
            &s.key_a,
            &s.console(&format!("/tool-provider/workflow/get?workflow_tool_id={tool_id}")),
        )
        .await;
    assert_eq!(detail["synced"], true);
    assert_eq!(detail["parameters"], word_parameter());
    let (_, body) = invoke_workflow_tool(&s, &s.key_a, &tool_id, "inner_tool", json!({"word": "hi"})).await;
    assert_eq!(variables(&body)["wrapped"], "(hi)");

    // Tenant B can neither see nor run A's tool.
    let (_, listed_b) = s.get(&s.key_b, &s.console("/tools/workflow")).await;
    assert_eq!(listed_b, json!([]));
    let (status, _) = s
        .get(
            &s.key_b,
            &s.console(&format!("/tool-provider/workflow/get?workflow_tool_id={tool_id}")),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = invoke_workflow_tool(&s, &s.key_b, &tool_id, "inner_tool", json!({"word": "hi"})).await;
    assert_eq!(status, 404);
    let (status, _) = update_tool(&s, &s.key_b, &tool_id, "stolen", word_parameter()).await;
    assert_eq!(status, 400);
    let (_, catalog_b) = s.get(&s.key_b, &s.url("/v1/tools")).await;
    assert!(
        !catalog_b
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["provider_type"] == "workflow")
    );
    let (status, _) = s
        .post(
            &s.key_b,
            &s.console("/tool-provider/workflow/create"),
            json!({"workflow_app_id": app, "name": "mine", "label": "Mine", "parameters": []}),
        )
        .await;
    assert_eq!(status, 400, "B cannot publish A's workflow");

    // A workflow published as a tool cannot be deleted; the tool can, and is then reported as deleted.
    let response = s
        .http
        .delete(s.console(&format!("/workflows/{app}")))
        .bearer_auth(&s.key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (status, _) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/workflow/delete"),
            json!({"workflow_tool_id": tool_id}),
        )
        .await;
    assert_eq!(status, 200);
    let config = json!({"agent_mode": {"tools": [
        {"provider_type": "workflow", "provider_id": tool_id, "tool_name": "inner_tool", "tool_parameters": {}},
        {"provider_type": "builtin", "provider_id": "time", "tool_name": "current_time", "tool_parameters": {}},
    ]}});
    let (status, body) = s.post(&s.key_a, &s.url("/v1/tools/deleted"), config).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["deleted_tools"],
        json!([{"type": "workflow", "tool_name": "inner_tool", "provider_id": tool_id}])
    );
    let (status, _) = invoke_workflow_tool(&s, &s.key_a, &tool_id, "inner_tool", json!({"word": "hi"})).await;
    assert_eq!(status, 404);
    s.stop().await;
}

#[tokio::test]
async fn workflow_tool_calling_a_workflow_tool_and_recursion_stopped_by_depth() {
    let s = TestServer::start().await;
    // inner ← outer: a workflow tool whose workflow calls another workflow tool.
    let inner = import_ok(&s, &s.key_a, &data("inner.yml")).await;
    publish(&s, &s.key_a, &inner).await;
    let inner_tool = create_tool(&s, &s.key_a, &inner, "inner_tool", word_parameter()).await;
    let outer = import_ok(
        &s,
        &s.key_a,
        &data("outer.yml").replace("__INNER_PROVIDER__", &inner_tool),
    )
    .await;
    publish(&s, &s.key_a, &outer).await;
    let outer_tool = create_tool(&s, &s.key_a, &outer, "outer_tool", word_parameter()).await;
    let (status, body) = invoke_workflow_tool(&s, &s.key_a, &outer_tool, "outer_tool", json!({"word": "x"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(variables(&body)["result"], "[<x>]");
    let (_, run) = run_blocking(&s, &s.key_a, &outer, json!({"word": "y"})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["outputs"]["result"], "[<y>]");

    // A workflow that calls its own tool: published with a placeholder, then pointed at itself.
    let ouroboros = import_ok(
        &s,
        &s.key_a,
        &data("ouroboros.yml").replace("__SELF_PROVIDER__", "pending"),
    )
    .await;
    publish(&s, &s.key_a, &ouroboros).await;
    let self_tool = create_tool(&s, &s.key_a, &ouroboros, "ouroboros", word_parameter()).await;
    replace(
        &s,
        &s.key_a,
        &ouroboros,
        &data("ouroboros.yml").replace("__SELF_PROVIDER__", &self_tool),
    )
    .await;
    publish(&s, &s.key_a, &ouroboros).await;
    let (status, body) = update_tool(&s, &s.key_a, &self_tool, "ouroboros", word_parameter()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = invoke_workflow_tool(&s, &s.key_a, &self_tool, "ouroboros", json!({"word": "loop"})).await;
    assert_ne!(status, 200, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("WORKFLOW_CALL_MAX_DEPTH"), "{message}");
    assert!(message.contains("exceeds the limit of 5"), "{message}");
    let (_, run) = run_blocking(&s, &s.key_a, &ouroboros, json!({"word": "loop"})).await;
    assert_eq!(run["status"], "failed");
    assert!(
        run["error"].as_str().unwrap().contains("WORKFLOW_CALL_MAX_DEPTH"),
        "{run}"
    );
    assert!(
        run["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node_id"] == "again" && n["status"] == "failed")
    );
    s.stop().await;
}

#[tokio::test]
async fn code_iteration_and_branches_run_and_publish_as_a_tool() {
    let s = TestServer::start().await;
    let app = import_ok(&s, &s.key_a, &data("words.yml")).await;
    let (status, run) = run_blocking(&s, &s.key_a, &app, json!({"text": "alpha beta gamma"})).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["outputs"]["count"], 3);
    assert_eq!(run["outputs"]["verdict"], "many (3)");
    let labels = run["outputs"]["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 3);
    assert_eq!(labels[1], "beta: July 1, 2024 is Monday.");
    assert!(
        labels[2].as_str().unwrap().starts_with("gamma: July 2, 2024"),
        "{labels:?}"
    );
    // Nodes inside the iteration are recorded once per item; the branch not taken is not.
    let recorded: Vec<&str> = run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(recorded.iter().filter(|id| **id == "label").count(), 3, "{recorded:?}");
    assert!(recorded.contains(&"many") && !recorded.contains(&"few"), "{recorded:?}");

    let (_, run) = run_blocking(&s, &s.key_a, &app, json!({"text": "solo"})).await;
    assert_eq!(run["outputs"]["verdict"], "few (1)", "{run}");

    // The same workflow as a tool: the paragraph input becomes a string parameter.
    publish(&s, &s.key_a, &app).await;
    let tool = create_tool(
        &s,
        &s.key_a,
        &app,
        "words",
        json!([{"name": "text", "description": "Some words", "form": "llm"}]),
    )
    .await;
    let (_, detail) = s
        .get(
            &s.key_a,
            &s.console(&format!("/tool-provider/workflow/get?workflow_tool_id={tool}")),
        )
        .await;
    assert_eq!(detail["tool"]["parameters"][0]["type"], "string");
    assert_eq!(detail["output_schema"]["properties"]["count"]["type"], "number");
    let (status, body) = invoke_workflow_tool(&s, &s.key_a, &tool, "words", json!({"text": "x y"})).await;
    assert_eq!(status, 200, "{body}");
    let vars = variables(&body);
    assert_eq!(vars["count"], 2);
    assert_eq!(vars["verdict"], "few (2)");
    s.stop().await;
}

#[tokio::test]
async fn http_nodes_go_through_the_ssrf_guard() {
    // Without SSRF_ALLOWED_NETWORKS the loopback upstream is refused, and the run says why.
    let s = TestServer::start_with(Options {
        allow_loopback: false,
        ..Options::default()
    })
    .await;
    let base = upstream().await;
    let dsl = r#"
app: {name: guarded, mode: workflow}
workflow:
  graph:
    edges:
      - {source: start, target: call}
      - {source: call, target: end}
    nodes:
      - id: start
        data: {type: start, variables: [{variable: base, label: Base, type: text-input, required: true}]}
      - id: call
        data: {type: http-request, method: get, url: '{{#start.base#}}/anything'}
      - id: end
        data: {type: end, outputs: [{variable: status, value_selector: [call, status_code]}]}
"#;
    let app = import_ok(&s, &s.key_a, dsl).await;
    let (status, run) = run_blocking(&s, &s.key_a, &app, json!({"base": base})).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "failed");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("\"call\"") && error.contains("blocked"), "{error}");
    assert!(error.contains("SSRF_ALLOWED_NETWORKS"), "{error}");
    s.stop().await;
}

#[tokio::test]
async fn runs_pick_the_draft_or_a_published_version() {
    let s = TestServer::start().await;
    let app = import_ok(&s, &s.key_a, &data("inner.yml")).await;
    assert_eq!(publish(&s, &s.key_a, &app).await, "1");
    replace(
        &s,
        &s.key_a,
        &app,
        &data("inner.yml").replace("\"[{{ w }}]\"", "\"<{{ w }}>\""),
    )
    .await;
    let (_, versions) = s.get(&s.key_a, &s.console(&format!("/workflows/{app}/versions"))).await;
    assert_eq!(versions.as_array().unwrap().len(), 1);
    assert_eq!(versions[0]["version"], "1");

    let (_, draft) = run_blocking(&s, &s.key_a, &app, json!({"word": "w"})).await;
    assert_eq!(draft["outputs"]["wrapped"], "<w>");
    assert_eq!(draft["version"], "");
    let (status, v1) = s
        .post(
            &s.key_a,
            &s.console(&format!("/workflows/{app}/run")),
            json!({"inputs": {"word": "w"}, "version": "1"}),
        )
        .await;
    assert_eq!(status, 200, "{v1}");
    assert_eq!(v1["outputs"]["wrapped"], "[w]");
    assert_eq!(v1["version"], "1");
    let (status, _) = s
        .post(
            &s.key_a,
            &s.console(&format!("/workflows/{app}/run")),
            json!({"inputs": {"word": "w"}, "version": "9"}),
        )
        .await;
    assert_eq!(status, 404);

    // A missing required input fails the run and says which.
    let (status, run) = run_blocking(&s, &s.key_a, &app, json!({})).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "failed");
    assert!(run["error"].as_str().unwrap().contains("word"), "{run}");
    let (_, runs) = s
        .get(&s.key_a, &s.console(&format!("/workflows/{app}/runs?limit=2")))
        .await;
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert!(
        runs.as_array().unwrap().iter().any(|r| r["status"] == "failed"),
        "{runs}"
    );
    s.stop().await;
}

/// A workflow tool exposed by toolplane's MCP server: an MCP client lists it with its LLM parameters and calls it;
/// the workflow's outputs come back as structured content.
#[tokio::test]
async fn workflow_tools_are_served_over_mcp() {
    use toolplane_mcp::{ClientOptions, McpClient};
    use toolplane_net::{NetConfig, SafeClient};

    let s = TestServer::start().await;
    let app = import_ok(&s, &s.key_a, &data("inner.yml")).await;
    publish(&s, &s.key_a, &app).await;
    let tool_id = create_tool(&s, &s.key_a, &app, "inner_tool", word_parameter()).await;

    let entries = json!([{"kind": "provider", "provider_type": "workflow", "provider_id": tool_id}]);
    let (status, server) = s
        .post(
            &s.key_a,
            &s.console("/mcp-servers"),
            json!({"name": "workflows", "entries": entries}),
        )
        .await;
    assert_eq!(status, 200, "{server}");
    let url = s.url(server["server_path"].as_str().unwrap());
    let http = SafeClient::new(NetConfig {
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..NetConfig::default()
    })
    .unwrap();
    let client = McpClient::connect_http(http, &url, ClientOptions::default())
        .await
        .unwrap();

    let tools = client.list_tools().await.unwrap();
    let tool = tools
        .iter()
        .find(|t| t.name == "inner_tool")
        .unwrap_or_else(|| panic!("{tools:?}"));
    let schema = serde_json::to_value(&tool.input_schema).unwrap();
    assert_eq!(schema["required"], json!(["word"]), "{schema}");

    let arguments = serde_json::Map::from_iter([("word".to_owned(), json!("mcp"))]);
    let result = client
        .call_tool("inner_tool", arguments, Default::default())
        .await
        .unwrap();
    assert!(!result.is_error(), "{result:?}");
    let rendered = serde_json::to_string(&result).unwrap();
    assert!(rendered.contains("[mcp]"), "the workflow ran: {rendered}");
    client.close().await;
    s.stop().await;
}
