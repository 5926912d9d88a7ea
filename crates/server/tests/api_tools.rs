//! API tools over real HTTP on loopback: specs imported through the console routes, stored with an encrypted key,
//! listed, invoked through `/v1/tools/invoke` against a loopback upstream that records every request, isolated
//! between tenants, and reported as deleted after deletion.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{Value, json};
use support::TestServer;

/// One request the upstream received.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A loopback HTTP service that records requests, answers JSON describing them, and serves `/spec.json`.
struct Upstream {
    base: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Upstream {
    async fn start(spec: Option<String>) -> Self {
        type Shared = (Arc<Mutex<Vec<Recorded>>>, Option<String>);
        async fn record(
            State((seen, spec)): State<Shared>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> axum::response::Response {
            use axum::response::IntoResponse;
            if uri.path() == "/spec.json"
                && let Some(spec) = spec
            {
                return spec.into_response();
            }
            seen.lock().unwrap().push(Recorded {
                method: method.clone(),
                path_and_query: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                headers,
                body,
            });
            axum::Json(json!({"ok": true, "method": method.as_str(), "path": uri.path()})).into_response()
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new().fallback(record).with_state((seen.clone(), spec));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, seen }
    }

    fn last(&self) -> Recorded {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// An OpenAPI 3.0 JSON spec with a path-parameter GET and a JSON-body POST.
fn pets_spec(base: &str) -> String {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Pets", "version": "1", "description": "Pets of the test"},
        "servers": [{"url": format!("{base}/v1")}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/pets/{petId}": {
                "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "string"}}],
                "get": {
                    "operationId": "getPet",
                    "summary": "Get a pet",
                    "parameters": [{"name": "verbose", "in": "query", "schema": {"type": "boolean"}}]
                }
            },
            "/pets": {
                "post": {
                    "operationId": "createPet",
                    "summary": "Create a pet",
                    "requestBody": {"content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "kind": {"type": "string", "enum": ["cat", "dog"]}
                        }
                    }}}}
                }
            }
        }
    })
    .to_string()
}

fn bearer_credentials(key: &str) -> Value {
    json!({
        "auth_type": "api_key_header",
        "api_key_header": "Authorization",
        "api_key_header_prefix": "bearer",
        "api_key_value": key,
    })
}

async fn add(s: &TestServer, key: &str, name: &str, schema: &str, credentials: Value) -> (u16, Value) {
    s.post(
        key,
        &s.console("/tool-provider/api/add"),
        json!({
            "provider": name,
            "icon": {"background": "#FFEAD5", "content": "🐶"},
            "credentials": credentials,
            "schema_type": "openapi",
            "schema": schema,
            "privacy_policy": "https://example.com/privacy",
            "custom_disclaimer": "test only",
            "labels": ["search", "not-a-label"],
        }),
    )
    .await
}

async fn invoke_api(s: &TestServer, key: &str, provider_id: &str, tool: &str, parameters: Value) -> (u16, Value) {
    s.post(
        key,
        &s.url("/v1/tools/invoke"),
        json!({"provider_type": "api", "provider_id": provider_id, "tool": tool, "parameters": parameters}),
    )
    .await
}

#[tokio::test]
async fn import_list_invoke_update_and_delete() {
    let s = TestServer::start().await;
    let upstream = Upstream::start(None).await;
    let spec = pets_spec(&upstream.base);

    // Preview in Dify's shape; the auth form is prefilled from securitySchemes.
    let (status, preview) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/api/schema"),
            json!({"schema": spec}),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["schema_type"], "openapi");
    let names: Vec<&str> = preview["parameters_schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["operation_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["getPet", "createPet"]);
    assert!(preview["warning"].is_object());
    assert_eq!(preview["credentials"]["auth_type"], "api_key_header");
    assert_eq!(preview["credentials"]["api_key_header_prefix"], "bearer");
    let form: Vec<&str> = preview["credentials_schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        form,
        ["auth_type", "api_key_header", "api_key_value", "api_key_header_prefix"]
    );

    let (status, body) = add(&s, &s.key_a, "pets", &spec, bearer_credentials("sk-secret-123456")).await;
    assert_eq!((status, &body), (200, &json!({"result": "success"})));
    let (status, body) = add(&s, &s.key_a, "pets", &spec, bearer_credentials("x")).await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "provider pets already exists");

    // Listing with tools, the key masked, unknown labels dropped.
    let (status, list) = s.get(&s.key_a, &s.console("/tools/api")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    let provider = &list[0];
    let provider_id = provider["id"].as_str().unwrap().to_owned();
    assert_eq!(provider["name"], "pets");
    assert_eq!(provider["type"], "api");
    assert_eq!(provider["icon"]["content"], "🐶");
    assert_eq!(provider["labels"], json!(["search"]));
    assert_eq!(provider["team_credentials"]["api_key_value"], "sk************56");
    assert_eq!(provider["is_team_authorization"], true);
    assert_eq!(provider["tools"].as_array().unwrap().len(), 2);
    assert_eq!(provider["tools"][0]["name"], "getPet");
    assert_eq!(
        provider["tools"][0]["author"], "test",
        "the author is the creating account"
    );

    // The catalog lists it among the tenant's providers, by row id.
    let (status, providers) = s.get(&s.key_a, &s.console("/tool-providers?type=api")).await;
    assert_eq!(status, 200);
    assert_eq!(providers.as_array().unwrap().len(), 1);
    assert_eq!(providers[0]["id"], provider_id.as_str());
    assert_eq!(providers[0]["name"], "pets");
    assert_eq!(
        providers[0]["team_credentials"], provider["team_credentials"],
        "the generic listing shows the masked credentials of tools/api"
    );
    assert_eq!(providers[0]["team_credentials"]["api_key_value"], "sk************56");
    assert_eq!(providers[0]["team_credentials"]["api_key_header"], "Authorization");
    assert_eq!(providers[0]["allow_delete"], true);

    // Detail: masked credentials, original schema, stored extras.
    let (status, detail) = s
        .get(&s.key_a, &s.console("/tool-provider/api/get?provider=pets"))
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["schema_type"], "openapi");
    assert_eq!(detail["schema"], spec.as_str());
    assert_eq!(detail["description"], "Pets of the test");
    assert_eq!(detail["credentials"]["api_key_value"], "sk************56");
    assert_eq!(detail["credentials"]["auth_type"], "api_key_header");
    assert_eq!(detail["privacy_policy"], "https://example.com/privacy");
    assert_eq!(detail["custom_disclaimer"], "test only");
    assert_eq!(detail["tools"].as_array().unwrap().len(), 2);

    // Stored encrypted (Dify's HYBRID format); only the key is secret.
    let row = s
        .state
        .store
        .api_providers()
        .get(&s.tenant_a, &provider_id)
        .await
        .unwrap()
        .unwrap();
    let stored: Value = serde_json::from_str(&row.credentials_str).unwrap();
    let token = stored["api_key_value"].as_str().unwrap();
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, token).unwrap();
    assert!(raw.starts_with(b"HYBRID:"));
    assert_eq!(stored["api_key_header"], "Authorization");

    let (status, tools) = s
        .get(&s.key_a, &s.console("/tool-provider/api/tools?provider=pets"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(tools[1]["name"], "createPet");
    let kind = tools[1]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "kind")
        .unwrap();
    assert_eq!(kind["type"], "select");

    // Invocation through toolplane's invoke route: path encoded, query typed, bearer header placed.
    let (status, body) = invoke_api(
        &s,
        &s.key_a,
        &provider_id,
        "getPet",
        json!({"petId": "a b", "verbose": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["messages"].as_array().unwrap().len(),
        1,
        "one json message, no text copy"
    );
    assert_eq!(body["messages"][0]["type"], "json");
    assert_eq!(body["messages"][0]["message"]["json_object"]["ok"], true);
    let seen = upstream.last();
    assert_eq!(seen.method, Method::GET);
    assert_eq!(seen.path_and_query, "/v1/pets/a%20b?verbose=true");
    assert_eq!(seen.headers["authorization"], "Bearer sk-secret-123456");

    let (status, body) = invoke_api(
        &s,
        &s.key_a,
        &provider_id,
        "createPet",
        json!({"name": "Rex", "kind": "dog"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream.last();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path_and_query, "/v1/pets");
    assert_eq!(seen.headers["content-type"], "application/json");
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent, json!({"name": "Rex", "kind": "dog"}));
    let (status, body) = invoke_api(&s, &s.key_a, &provider_id, "createPet", json!({"kind": "bird"})).await;
    assert_eq!(status, 400, "{body}");

    // Tenant B sees nothing of A's provider and cannot use it.
    let before = upstream.count();
    let (_, list_b) = s.get(&s.key_b, &s.console("/tools/api")).await;
    assert_eq!(list_b, json!([]));
    let (status, _) = s
        .get(&s.key_b, &s.console("/tool-provider/api/get?provider=pets"))
        .await;
    assert_eq!(status, 400);
    let (status, body) = invoke_api(&s, &s.key_b, &provider_id, "getPet", json!({"petId": "1"})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "provider_not_found");
    let (status, _) = s
        .post(
            &s.key_b,
            &s.console("/tool-provider/api/delete"),
            json!({"provider": "pets"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(upstream.count(), before, "B's attempts never reached the upstream");

    // Update: the masked key is sent back and kept; the header moves to X-Api-Key without prefix.
    let (status, body) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/api/update"),
            json!({
                "original_provider": "pets",
                "provider": "pets2",
                "icon": {"background": "#000", "content": "🐱"},
                "credentials": {
                    "auth_type": "api_key_header",
                    "api_key_header": "X-Api-Key",
                    "api_key_header_prefix": "custom",
                    "api_key_value": "sk************56",
                },
                "schema_type": "openapi",
                "schema": spec,
                "labels": ["weather"],
            }),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"result": "success"})));
    let (_, detail) = s
        .get(&s.key_a, &s.console("/tool-provider/api/get?provider=pets2"))
        .await;
    assert_eq!(detail["id"], provider_id.as_str(), "renaming keeps the id apps use");
    assert_eq!(detail["labels"], json!(["weather"]));
    let (status, body) = invoke_api(&s, &s.key_a, &provider_id, "getPet", json!({"petId": "7"})).await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream.last();
    assert_eq!(seen.headers["x-api-key"], "sk-secret-123456");
    assert!(seen.headers.get("authorization").is_none());

    // test/pre with the saved provider's masked key runs the real call with the stored key.
    let (status, body) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/api/test/pre"),
            json!({
                "tool_name": "getPet",
                "provider_name": "pets2",
                "credentials": {"auth_type": "api_key_query", "api_key_query_param": "token", "api_key_value": "sk************56"},
                "parameters": {"petId": "9"},
                "schema_type": "openapi",
                "schema": spec,
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let result: Value = serde_json::from_str(body["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["path"], "/v1/pets/9");
    assert_eq!(upstream.last().path_and_query, "/v1/pets/9?token=sk-secret-123456");
    let (status, body) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/api/test/pre"),
            json!({"tool_name": "nope", "credentials": {"auth_type": "none"}, "parameters": {}, "schema_type": "openapi", "schema": spec}),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"error": "invalid tool name nope"})));

    // Delete: gone from listings, and apps referencing its tools are told they were deleted.
    let (status, _) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/api/delete"),
            json!({"provider": "pets2"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, list) = s.get(&s.key_a, &s.console("/tools/api")).await;
    assert_eq!(list, json!([]));
    let config = json!({"agent_mode": {"tools": [
        {"provider_type": "api", "provider_id": provider_id, "tool_name": "getPet", "tool_parameters": {}},
        {"provider_type": "builtin", "provider_id": "time", "tool_name": "current_time", "tool_parameters": {}},
    ]}});
    let (status, body) = s.post(&s.key_a, &s.url("/v1/tools/deleted"), config).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["deleted_tools"],
        json!([{"type": "api", "tool_name": "getPet", "provider_id": provider_id}])
    );
    let (status, _) = invoke_api(&s, &s.key_a, &provider_id, "getPet", json!({"petId": "1"})).await;
    assert_eq!(status, 404);
    s.stop().await;
}

#[tokio::test]
async fn yaml_swagger_and_remote_specs() {
    let s = TestServer::start().await;
    let upstream_spec = pets_spec("http://127.0.0.1:9");
    let upstream = Upstream::start(Some(upstream_spec.clone())).await;

    let yaml = format!(
        "openapi: 3.1.0\ninfo:\n  title: Echo\n  version: '1'\nservers:\n  - url: {}\npaths:\n  /echo:\n    get:\n      \
         operationId: echo\n      parameters:\n        - name: q\n          in: query\n          required: true\n          \
         schema: {{type: string}}\n",
        upstream.base
    );
    let none = json!({"auth_type": "none"});
    let (status, body) = add(&s, &s.key_a, "echo", &yaml, none.clone()).await;
    assert_eq!(status, 200, "{body}");

    let host = upstream.base.trim_start_matches("http://");
    let swagger = json!({
        "swagger": "2.0",
        "info": {"title": "Legacy", "version": "1"},
        "host": host,
        "basePath": "/legacy",
        "schemes": ["http"],
        "securityDefinitions": {"key": {"type": "apiKey", "in": "query", "name": "apikey"}},
        "paths": {"/items": {"post": {
            "operationId": "addItem",
            "consumes": ["application/json"],
            "parameters": [{"name": "item", "in": "body", "schema": {
                "type": "object", "properties": {"title": {"type": "string"}, "count": {"type": "integer"}}
            }}]
        }}}
    })
    .to_string();
    let creds = json!({"auth_type": "api_key_query", "api_key_query_param": "apikey", "api_key_value": "q-key-987654"});
    let (status, body) = add(&s, &s.key_a, "legacy", &swagger, creds).await;
    assert_eq!(status, 200, "{body}");

    let (_, list) = s.get(&s.key_a, &s.console("/tools/api")).await;
    let by_name = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    let (echo, legacy) = (by_name("echo"), by_name("legacy"));
    let (_, detail) = s
        .get(&s.key_a, &s.console("/tool-provider/api/get?provider=legacy"))
        .await;
    assert_eq!(detail["schema_type"], "swagger");
    let (_, detail) = s
        .get(&s.key_a, &s.console("/tool-provider/api/get?provider=echo"))
        .await;
    assert_eq!(detail["schema_type"], "openapi");

    let (status, body) = invoke_api(&s, &s.key_a, echo["id"].as_str().unwrap(), "echo", json!({"q": "x&y"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.last().path_and_query, "/echo?q=x%26y");

    let (status, body) = invoke_api(
        &s,
        &s.key_a,
        legacy["id"].as_str().unwrap(),
        "addItem",
        json!({"title": "pen", "count": "3"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream.last();
    assert_eq!(seen.path_and_query, "/legacy/items?apikey=q-key-987654");
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent, json!({"title": "pen", "count": 3}));

    // `tool list`-style listing through /v1/tools carries both.
    let (_, tools) = s.get(&s.key_a, &s.url("/v1/tools")).await;
    let api: Vec<&Value> = tools
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["provider_type"] == "api")
        .collect();
    assert_eq!(api.len(), 2);

    // remote: a spec URL on loopback is downloaded through the SSRF-safe client.
    let url = format!("{}/spec.json", upstream.base);
    let (status, body) = s
        .get(&s.key_a, &s.console(&format!("/tool-provider/api/remote?url={url}")))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["schema"], upstream_spec.as_str());
    s.stop().await;
}

#[tokio::test]
async fn bad_specs_and_credentials_are_clear_400s() {
    let s = TestServer::start().await;
    let upstream = Upstream::start(None).await;
    let spec = pets_spec(&upstream.base);
    let none = json!({"auth_type": "none"});
    let cases = [
        ("{not json: [", none.clone(), "invalid schema"),
        ("just some words", none.clone(), "invalid schema"),
        (
            r#"{"openapi": "3.0.0", "info": {"title": "x"}, "paths": {}}"#,
            none.clone(),
            "no operations",
        ),
        (r#"{"hello": "world"}"#, none.clone(), "not an OpenAPI"),
        ("", none.clone(), "empty"),
        (spec.as_str(), json!({}), "auth_type is required"),
        (spec.as_str(), json!({"auth_type": "oauth"}), "invalid auth_type"),
        (spec.as_str(), json!({"auth_type": "api_key_header"}), "api_key_value"),
    ];
    for (schema, credentials, expected) in cases {
        let (status, body) = add(&s, &s.key_a, "bad", schema, credentials).await;
        assert_eq!(status, 400, "{schema}: {body}");
        let code = if expected == "api_key_value" {
            "invalid_credentials"
        } else {
            "invalid_param"
        };
        assert_eq!(body["code"], code, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(expected), "{schema}: {message}");
    }
    let (status, body) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/api/schema"),
            json!({"schema": "[1, 2"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("invalid schema"));

    // Cyclic references and deep nesting are handled, never a crash.
    let cyclic = json!({
        "openapi": "3.0.0", "info": {"title": "c", "version": "1"}, "servers": [{"url": upstream.base}],
        "components": {"schemas": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}}}},
        "paths": {"/n": {"post": {"operationId": "n", "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}}}
    });
    let (status, body) = add(&s, &s.key_a, "cyclic", &cyclic.to_string(), none.clone()).await;
    assert_eq!(status, 200, "{body}");
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let (status, body) = add(&s, &s.key_a, "deep", &deep, none.clone()).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = s
        .get(&s.key_a, &s.console("/tool-provider/api/remote?url=not-a-url"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("please check the url"));
    let (status, _) = s
        .get(&s.key_a, &s.console("/tool-provider/api/get?provider=missing"))
        .await;
    assert_eq!(status, 400);
    s.stop().await;
}

/// A loopback upstream whose `GET /sleep?ms=N` answers `{"slept": N}` after N milliseconds.
async fn sleepy_upstream() -> String {
    #[derive(serde::Deserialize)]
    struct Sleep {
        ms: u64,
    }
    async fn sleep(axum::extract::Query(q): axum::extract::Query<Sleep>) -> axum::Json<Value> {
        tokio::time::sleep(std::time::Duration::from_millis(q.ms)).await;
        axum::Json(json!({"slept": q.ms}))
    }
    let app = axum::Router::new().route("/sleep", axum::routing::get(sleep));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn timeouts_are_per_provider() {
    let s = TestServer::start().await;
    let base = sleepy_upstream().await;
    let spec = json!({
        "openapi": "3.0.3",
        "info": {"title": "Sleepy", "version": "1"},
        "servers": [{"url": base}],
        "paths": {"/sleep": {"get": {
            "operationId": "sleep",
            "summary": "Answer after a delay",
            "parameters": [{"name": "ms", "in": "query", "required": true, "schema": {"type": "integer"}}]
        }}}
    })
    .to_string();
    let add_with = |name: &'static str, timeouts: Value| {
        let mut body = json!({
            "provider": name,
            "icon": {"background": "#FFEAD5", "content": "💤"},
            "credentials": {"auth_type": "none"},
            "schema_type": "openapi",
            "schema": spec,
        });
        body.as_object_mut()
            .unwrap()
            .extend(timeouts.as_object().unwrap().clone());
        let url = s.console("/tool-provider/api/add");
        let s = &s;
        async move { s.post(&s.key_a, &url, body).await }
    };

    // Out-of-range and non-numeric timeouts are 400s naming the field.
    let bad = [
        (
            json!({"read_timeout": 0}),
            "read_timeout must be greater than 0 and at most 600 seconds, got 0",
        ),
        (json!({"read_timeout": -3}), "read_timeout must be greater than 0"),
        (
            json!({"connect_timeout": 601}),
            "connect_timeout must be greater than 0 and at most 600 seconds, got 601",
        ),
        (
            json!({"connect_timeout": "soon"}),
            "connect_timeout must be a number of seconds, got \"soon\"",
        ),
        (json!({"read_timeout": [1]}), "read_timeout must be a number of seconds"),
    ];
    for (timeouts, expected) in bad {
        let (status, body) = add_with("bad", timeouts.clone()).await;
        assert_eq!(status, 400, "{timeouts}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(expected), "{timeouts}: {message}");
    }
    let (status, list) = s.get(&s.key_a, &s.console("/tools/api")).await;
    assert_eq!((status, list), (200, json!([])), "nothing was stored");

    let (status, body) = add_with("impatient", json!({"read_timeout": 1, "connect_timeout": "5"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = add_with("patient", json!({"read_timeout": null})).await;
    assert_eq!(status, 200, "{body}");

    let (_, impatient) = s
        .get(&s.key_a, &s.console("/tool-provider/api/get?provider=impatient"))
        .await;
    assert_eq!(
        (
            impatient["connect_timeout"].as_f64(),
            impatient["read_timeout"].as_f64()
        ),
        (Some(5.0), Some(1.0))
    );
    let (_, patient) = s
        .get(&s.key_a, &s.console("/tool-provider/api/get?provider=patient"))
        .await;
    assert_eq!(
        (patient["connect_timeout"].as_f64(), patient["read_timeout"].as_f64()),
        (Some(10.0), Some(60.0)),
        "unset timeouts report the defaults"
    );
    let row = s
        .state
        .store
        .api_providers()
        .get_by_name(&s.tenant_a, "patient")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.connect_timeout, row.read_timeout),
        (None, None),
        "defaults are not pinned in the row"
    );

    let impatient_id = impatient["id"].as_str().unwrap().to_owned();
    let patient_id = patient["id"].as_str().unwrap().to_owned();

    // The 1 s read timeout cuts a 3 s response short, well before it would arrive.
    let started = std::time::Instant::now();
    let (status, body) = invoke_api(&s, &s.key_a, &impatient_id, "sleep", json!({"ms": 3000})).await;
    let elapsed = started.elapsed();
    assert_eq!(
        (status, body["code"].as_str()),
        (502, Some("tool_invoke_error")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("timed out"), "{body}");
    assert!(elapsed < std::time::Duration::from_secs(2), "took {elapsed:?}");
    // The same provider answers when the upstream is quick.
    let (status, body) = invoke_api(&s, &s.key_a, &impatient_id, "sleep", json!({"ms": 10})).await;
    assert_eq!(status, 200, "{body}");

    // The provider with the default read timeout waits for a 1 s response: the setting is per provider.
    let (status, body) = invoke_api(&s, &s.key_a, &patient_id, "sleep", json!({"ms": 1000})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"][0]["message"]["json_object"]["slept"], 1000);

    // An update applies to the next call: with the limit cleared, a 1.5 s wait succeeds for `impatient` too.
    let (status, body) = invoke_api(&s, &s.key_a, &impatient_id, "sleep", json!({"ms": 1500})).await;
    assert_eq!(status, 502, "{body}");
    let (status, body) = s
        .post(
            &s.key_a,
            &s.console("/tool-provider/api/update"),
            json!({
                "original_provider": "impatient",
                "provider": "impatient",
                "icon": {"background": "#FFEAD5", "content": "💤"},
                "credentials": {"auth_type": "none"},
                "schema_type": "openapi",
                "schema": spec,
                "read_timeout": "",
            }),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"result": "success"})));
    let (status, body) = invoke_api(&s, &s.key_a, &impatient_id, "sleep", json!({"ms": 1500})).await;
    assert_eq!(status, 200, "{body}");
    let (_, impatient) = s
        .get(&s.key_a, &s.console("/tool-provider/api/get?provider=impatient"))
        .await;
    assert_eq!(
        (
            impatient["connect_timeout"].as_f64(),
            impatient["read_timeout"].as_f64()
        ),
        (Some(10.0), Some(60.0))
    );
    s.stop().await;
}
