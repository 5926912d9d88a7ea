//! Real invocations against a loopback server that records every request.

// Test helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use toolplane_core::{MessagePayload, Tool, ToolError, ToolInvokeMessage, ToolRuntime};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_openapi::{
    ApiTool, ApiToolTimeouts, EMPTY_RESPONSE_MESSAGE, ParseOptions, ParsedSpec, SchemaType, load_from_url, load_spec,
    parse_tools,
};

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Recorded>>>;

async fn record(State(log): State<Log>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path().to_owned();
    log.lock().unwrap().push(Recorded {
        method: parts.method,
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    });
    match path.as_str() {
        "/api/respond/text" => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "plain words").into_response(),
        "/api/respond/png" => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"dot.png\""),
            ],
            vec![0x89, b'P', b'N', b'G', 0, 1, 2],
        )
            .into_response(),
        "/api/respond/empty" => StatusCode::NO_CONTENT.into_response(),
        "/api/respond/fail" => (StatusCode::UNPROCESSABLE_ENTITY, "bad input ".repeat(500)).into_response(),
        "/api/respond/list" => ([(header::CONTENT_TYPE, "application/json")], "[1,2]").into_response(),
        "/.well-known/ai-plugin.json" => (
            [(header::CONTENT_TYPE, "application/json")],
            include_str!("data/openai-plugin.json"),
        )
            .into_response(),
        "/openapi.yaml" => (
            [(header::CONTENT_TYPE, "application/yaml")],
            "openapi: 3.0.0\ninfo: {title: todo, version: '1'}\nservers: [{url: /api}]\npaths:\n  /todos:\n    get: {operationId: listTodos, summary: List}\n",
        )
            .into_response(),
        "/files/report.txt" => ([(header::CONTENT_TYPE, "text/plain")], "downloaded content").into_response(),
        _ => ([(header::CONTENT_TYPE, "application/json")], r#"{"ok":true}"#).into_response(),
    }
}

struct Harness {
    base: String,
    log: Log,
    parsed: ParsedSpec,
    client: SafeClient,
}

impl Harness {
    async fn start() -> Self {
        let log: Log = Arc::default();
        let app = Router::new().fallback(record).with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let text = std::fs::read_to_string(format!("{}/tests/data/invoke.json", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .replace("{{BASE}}", &base);
        let spec = load_spec(&text).unwrap().into_spec().unwrap();
        let parsed = parse_tools(&spec, &ParseOptions::default()).unwrap();
        let config = NetConfig {
            allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
            ..NetConfig::default()
        };
        let client = SafeClient::new(ApiToolTimeouts::default().apply(config)).unwrap();
        Harness {
            base,
            log,
            parsed,
            client,
        }
    }

    fn tool(&self, name: &str, credentials: Value) -> ApiTool {
        let bundle = self.parsed.tools.iter().find(|t| t.name() == name).unwrap().clone();
        let Value::Object(credentials) = credentials else {
            panic!()
        };
        ApiTool::new(bundle, "provider-1", credentials, self.client.clone())
    }

    async fn call(&self, name: &str, credentials: Value, params: Value) -> Result<Vec<ToolInvokeMessage>, ToolError> {
        let Value::Object(params) = params else { panic!() };
        self.tool(name, credentials).call(&params).await
    }

    fn last(&self) -> Recorded {
        self.log.lock().unwrap().last().cloned().unwrap()
    }
}

fn none() -> Value {
    json!({"auth_type": "none"})
}

fn header<'a>(r: &'a Recorded, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn path_query_header_cookie_and_header_auth() {
    let h = Harness::start().await;
    let creds = json!({"auth_type": "api_key_header", "api_key_header": "X-Api-Key", "api_key_header_prefix": "custom", "api_key_value": "s3cret"});
    let out = h
        .call(
            "getItem",
            creds,
            json!({
                "id": "a b/c?", "tags": ["x", "y z"], "ids": [1, 2, 3], "filter": {"color": "red"}, "q": "",
                "X-Trace": "t-1", "session": "abc 1", "lang": "en"
            }),
        )
        .await
        .unwrap();
    assert_eq!(out, vec![ToolInvokeMessage::json(json!({"ok": true}))]);
    let r = h.last();
    assert_eq!(r.method, Method::GET);
    assert_eq!(r.path, "/api/items/a%20b%2Fc%3F");
    assert_eq!(
        r.query.as_deref(),
        Some("tags=x&tags=y%20z&ids=1,2,3&filter[color]=red&q=")
    );
    assert_eq!(header(&r, "x-trace"), Some("t-1"));
    assert_eq!(header(&r, "cookie"), Some("session=abc%201; lang=en"));
    assert_eq!(header(&r, "x-api-key"), Some("s3cret"));
    assert_eq!(header(&r, "authorization"), None);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn auth_prefixes_and_query_auth() {
    let h = Harness::start().await;
    for (prefix, expected) in [("bearer", "Bearer tok"), ("basic", "Basic tok"), ("custom", "tok")] {
        let creds = json!({"auth_type": "api_key_header", "api_key_header_prefix": prefix, "api_key_value": "tok"});
        h.call("respond", creds, json!({"kind": "x"})).await.unwrap();
        assert_eq!(header(&h.last(), "authorization"), Some(expected));
    }
    let creds = json!({"auth_type": "api_key_query", "api_key_query_param": "apikey", "api_key_value": "k&1"});
    h.call("getItem", creds, json!({"id": "1", "q": "v"})).await.unwrap();
    let r = h.last();
    assert_eq!(r.query.as_deref(), Some("apikey=k%261&q=v"));
    assert_eq!(header(&r, "authorization"), None);

    // Dify's credential errors.
    let err = h.call("respond", json!({}), json!({"kind": "x"})).await.unwrap_err();
    assert_eq!(err, ToolError::CredentialValidation("Missing auth_type".into()));
    let err = h
        .call("respond", json!({"auth_type": "api_key_header"}), json!({"kind": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err, ToolError::CredentialValidation("Missing api_key_value".into()));
}

#[tokio::test]
async fn json_body_is_coerced_to_the_schema() {
    let h = Harness::start().await;
    h.call(
        "postJson",
        none(),
        json!({"name": "n", "count": "3", "ratio": 0.5, "active": "false", "kind": "2", "meta": "{\"a\":\"b\"}"}),
    )
    .await
    .unwrap();
    let r = h.last();
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/api/json");
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        json!({"name": "n", "count": 3, "ratio": 0.5, "active": false, "kind": 2, "meta": {"a": "b"}})
    );

    let err = h.call("postJson", none(), json!({"count": 1})).await.unwrap_err();
    assert_eq!(
        err,
        ToolError::ParameterValidation("Missing required parameter name".into())
    );

    h.call("putArray", none(), json!({"body": [1, 2]})).await.unwrap();
    let r = h.last();
    assert_eq!(r.method, Method::PUT);
    assert_eq!(&r.body[..], b"[1,2]");
}

#[tokio::test]
async fn form_text_and_raw_bodies() {
    let h = Harness::start().await;
    h.call("postForm", none(), json!({"name": "a b&c", "tags": ["x", "y"]}))
        .await
        .unwrap();
    let r = h.last();
    assert_eq!(header(&r, "content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(&r.body[..], b"name=a+b%26c&tags=x&tags=y");

    h.call("postText", none(), json!({"body": "hello\nworld"}))
        .await
        .unwrap();
    let r = h.last();
    assert_eq!(header(&r, "content-type"), Some("text/plain"));
    assert_eq!(&r.body[..], b"hello\nworld");

    h.call(
        "postRaw",
        none(),
        json!({"body": {"blob": "AAEC/w==", "filename": "x.bin"}}),
    )
    .await
    .unwrap();
    let r = h.last();
    assert_eq!(header(&r, "content-type"), Some("application/octet-stream"));
    assert_eq!(&r.body[..], &[0u8, 1, 2, 255]);
}

#[tokio::test]
async fn multipart_with_blob_and_downloaded_files() {
    let h = Harness::start().await;
    let url = format!("{}/files/report.txt", h.base);
    h.call(
        "upload",
        none(),
        json!({
            "note": "hi",
            "doc": {"blob": "aGVsbG8=", "filename": "hello.txt", "mime_type": "text/plain"},
            "pics": [{"url": url}, {"blob": "AQI=", "filename": "b.png", "mime_type": "image/png"}]
        }),
    )
    .await
    .unwrap();
    let r = h
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.path == "/api/upload")
        .cloned()
        .unwrap();
    let content_type = header(&r, "content-type").unwrap();
    let boundary = content_type.strip_prefix("multipart/form-data; boundary=").unwrap();
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let expected = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"hello.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"pics\"; filename=\"report.txt\"\r\nContent-Type: text/plain\r\n\r\ndownloaded content\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"pics\"; filename=\"b.png\"\r\nContent-Type: image/png\r\n\r\n\u{1}\u{2}\r\n\
         --{b}--\r\n",
        b = boundary
    );
    assert_eq!(body, expected);
    // The file URL was downloaded through the same client.
    assert!(h.log.lock().unwrap().iter().any(|r| r.path == "/files/report.txt"));

    let err = h
        .call("upload", none(), json!({"doc": "not a file"}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ToolError::ParameterValidation(ref m) if m.contains("expects a file")),
        "{err}"
    );
}

#[tokio::test]
async fn responses_become_messages() {
    let h = Harness::start().await;
    let text = h.call("respond", none(), json!({"kind": "text"})).await.unwrap();
    assert_eq!(text, vec![ToolInvokeMessage::text("plain words")]);

    let list = h.call("respond", none(), json!({"kind": "list"})).await.unwrap();
    assert_eq!(list, vec![ToolInvokeMessage::json(json!([1, 2]))]);

    let png = h.call("respond", none(), json!({"kind": "png"})).await.unwrap();
    assert_eq!(png.len(), 1);
    match &png[0].payload {
        MessagePayload::Blob(b) => assert_eq!(b.blob, vec![0x89, b'P', b'N', b'G', 0, 1, 2]),
        other => panic!("{other:?}"),
    }
    let meta = png[0].meta.as_ref().unwrap();
    assert_eq!(meta["mime_type"], "image/png");
    assert_eq!(meta["filename"], "dot.png");

    let empty = h.call("respond", none(), json!({"kind": "empty"})).await.unwrap();
    assert_eq!(empty, vec![ToolInvokeMessage::text(EMPTY_RESPONSE_MESSAGE)]);

    let err = h.call("respond", none(), json!({"kind": "fail"})).await.unwrap_err();
    let ToolError::Invoke(message) = err else {
        panic!("{err:?}")
    };
    assert!(
        message.starts_with("Request failed with status code 422 and bad input bad input"),
        "{message}"
    );
    assert!(message.chars().count() < 1100, "{}", message.len());
}

#[tokio::test]
async fn the_tool_trait_and_the_ssrf_guard() {
    let h = Harness::start().await;
    // Through toolplane_core::invoke: validation and casting first, runtime credentials when none were given.
    let tool: Arc<dyn Tool> = Arc::new(h.tool("respond", json!({})));
    assert_eq!(tool.entity().identity.name, "respond");
    assert_eq!(tool.entity().identity.provider, "provider-1");
    let runtime = ToolRuntime {
        credentials: Map::from_iter([("auth_type".into(), json!("none"))]),
        ..ToolRuntime::default()
    };
    let params = Map::from_iter([("kind".into(), json!("text"))]);
    let stream = toolplane_core::invoke(tool.clone(), runtime, params, Default::default())
        .await
        .unwrap();
    let messages = toolplane_core::collect_messages(stream).await.unwrap();
    assert_eq!(messages, vec![ToolInvokeMessage::text("plain words")]);

    // Without the loopback exception, the guard refuses the same call.
    let strict = SafeClient::new(NetConfig::default()).unwrap();
    let bundle = h.parsed.tools.iter().find(|t| t.name() == "respond").unwrap().clone();
    let Value::Object(creds) = none() else { panic!() };
    let blocked = ApiTool::new(bundle, "p", creds, strict);
    let params = Map::from_iter([("kind".into(), json!("text"))]);
    let err = blocked.call(&params).await.unwrap_err();
    assert!(
        matches!(err, ToolError::Invoke(ref m) if m.contains("127.0.0.1")),
        "{err}"
    );
}

#[tokio::test]
async fn load_from_url_follows_a_plugin_manifest() {
    let h = Harness::start().await;
    let url = format!("{}/.well-known/ai-plugin.json", h.base);
    let spec = load_from_url(&h.client, &url, 1 << 20).await.unwrap();
    assert_eq!(spec.schema_type, SchemaType::OpenAiPlugin);
    let parsed = parse_tools(&spec, &ParseOptions::default()).unwrap();
    // The relative server is resolved against the spec's URL.
    assert_eq!(parsed.tools[0].server_url, format!("{}/api/todos", h.base));

    let err = load_from_url(&h.client, &url, 10).await.unwrap_err();
    assert_eq!(err.category(), "too_large");
    let strict = SafeClient::new(NetConfig::default()).unwrap();
    assert_eq!(
        load_from_url(&strict, &url, 1 << 20).await.unwrap_err().category(),
        "fetch"
    );
}
