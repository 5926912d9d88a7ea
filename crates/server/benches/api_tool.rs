//! API-tool benchmark: the latency an imported operation adds over a raw HTTP request to the same loopback
//! upstream, measured in one run with one caller at a time:
//! 1. raw `reqwest` GET with the auth header set by hand (the floor);
//! 2. `toolplane_openapi::ApiTool::call` in-process (request assembly, SSRF guard, response → messages);
//! 3. the catalog's runtime resolution (row read, cached provider) + `toolplane_core::invoke` in-process;
//! 4. `POST /v1/tools/invoke` with `provider_type: api` over HTTP.
//!
//! Run: `cargo bench -p toolplane-server --bench api_tool` (optionally `-- <calls per scenario>`).

// A benchmark has nobody to report a setup failure to: it aborts with the reason.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use toolplane_core::{InvokeOptions, ToolProviderType, collect_messages};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_openapi::{ApiTool, ParseOptions, load_spec, parse_tools};
use toolplane_server::api_tools::ApiProviderInput;
use toolplane_server::{AppState, ServerConfig, Settings};
use toolplane_store::{BlobConfig, BlobStore, Store};

struct Figures {
    p50: Duration,
    p99: Duration,
}

async fn measure<F, Fut>(total: usize, mut call: F) -> Figures
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..total / 10 {
        call().await;
    }
    let mut samples = Vec::with_capacity(total);
    for _ in 0..total {
        let start = Instant::now();
        call().await;
        samples.push(start.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Figures {
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn print(name: &str, f: &Figures, base: &Figures) {
    println!(
        "{name:<44} p50 {:>8.1} µs ({:>5.2}x)   p99 {:>8.1} µs ({:>5.2}x)",
        f.p50.as_secs_f64() * 1e6,
        f.p50.as_secs_f64() / base.p50.as_secs_f64(),
        f.p99.as_secs_f64() * 1e6,
        f.p99.as_secs_f64() / base.p99.as_secs_f64(),
    );
}

fn main() {
    let total: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(total));
}

async fn run(total: usize) {
    // The upstream: answers a small JSON document.
    let upstream = axum::Router::new().route(
        "/v1/pets/{id}",
        axum::routing::get(|axum::extract::Path(id): axum::extract::Path<String>| async move {
            axum::Json(json!({"id": id, "name": "Rex", "kind": "dog"}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream_base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, upstream).await });

    let spec = json!({
        "openapi": "3.0.3",
        "info": {"title": "Pets", "version": "1"},
        "servers": [{"url": format!("{upstream_base}/v1")}],
        "paths": {"/pets/{id}": {"get": {
            "operationId": "getPet",
            "parameters": [
                {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "verbose", "in": "query", "schema": {"type": "boolean"}}
            ]
        }}}
    })
    .to_string();
    let credentials = json!({
        "auth_type": "api_key_header", "api_key_header": "Authorization",
        "api_key_header_prefix": "bearer", "api_key_value": "sk-bench-0123456789",
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings::from_pairs([
        ("TOOLPLANE_DATA_DIR", dir.path().display().to_string()),
        ("SECRET_KEY", "bench".to_owned()),
        ("SSRF_ALLOWED_NETWORKS", "127.0.0.0/8".to_owned()),
    ]);
    let config = ServerConfig::from_settings(&settings).expect("config");
    let store = Store::connect(&config.database_url).await.expect("store");
    store.migrate().await.expect("migrate");
    let blobs = BlobStore::from_config(
        &BlobConfig::from_vars(settings.lookup(), config.data_dir.clone()).expect("blob config"),
    )
    .expect("blobs");
    let net = NetConfig::from_lookup(settings.lookup()).expect("net config");
    let client = SafeClient::new(net.clone()).expect("client");
    let state = AppState::new(config, store, blobs, toolplane_builtin::providers(client.clone()), net);
    state.bootstrap().await.expect("bootstrap");
    let tenant = state.create_tenant("bench").await.expect("tenant");
    let (_, key) = state.create_api_key(Some(&tenant.id), "bench").await.expect("key");
    let input: ApiProviderInput = serde_json::from_value(json!({
        "provider": "pets", "credentials": credentials, "schema": spec,
    }))
    .expect("input");
    let row = state
        .api_tools
        .add(&tenant.id, "bench", input, None)
        .await
        .expect("add");

    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", server.local_addr().expect("addr"));
    tokio::spawn(toolplane_server::serve(server, state.clone(), std::future::pending()));

    let parsed = parse_tools(
        &load_spec(&spec).unwrap().into_spec().unwrap(),
        &ParseOptions::default(),
    )
    .unwrap();
    let credentials = credentials.as_object().unwrap().clone();
    let tool = ApiTool::new(parsed.tools[0].clone(), "bench", credentials, client);
    let params: Map<String, Value> = Map::from_iter([("id".into(), json!("42")), ("verbose".into(), json!(true))]);
    let http = reqwest::Client::new();
    println!("{total} sequential calls per scenario, loopback upstream {upstream_base}");

    let raw_url = format!("{upstream_base}/v1/pets/42?verbose=true");
    let raw = measure(total, || async {
        let response = http
            .get(&raw_url)
            .header("Authorization", "Bearer sk-bench-0123456789")
            .send()
            .await
            .expect("raw");
        let body: Value = response.json().await.expect("raw body");
        assert_eq!(body["id"], "42");
    })
    .await;
    let direct = measure(total, || async {
        let messages = tool.call(&params).await.expect("call");
        assert_eq!(messages.len(), 1);
    })
    .await;
    let catalog = measure(total, || async {
        let resolved = state
            .catalog
            .runtime(&tenant.id, ToolProviderType::Api, &row.id, "getPet", None)
            .await
            .expect("runtime");
        let stream = toolplane_core::invoke(
            resolved.tool,
            resolved.runtime,
            params.clone(),
            InvokeOptions::default(),
        )
        .await
        .expect("invoke");
        assert_eq!(collect_messages(stream).await.expect("messages").len(), 1);
    })
    .await;
    let body = json!({"provider_type": "api", "provider_id": row.id, "tool": "getPet", "parameters": params});
    let invoke_url = format!("{base}/v1/tools/invoke");
    let route = measure(total, || async {
        let response = http
            .post(&invoke_url)
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .expect("invoke");
        assert!(response.status().is_success());
        response.bytes().await.expect("invoke body");
    })
    .await;

    print("raw reqwest GET (baseline)", &raw, &raw);
    print("ApiTool::call in-process", &direct, &raw);
    print("catalog runtime + invoke in-process", &catalog, &raw);
    print("POST /v1/tools/invoke (provider_type api)", &route, &raw);
    println!(
        "added p50: ApiTool::call {:+.1} µs, catalog+invoke {:+.1} µs, invoke route {:+.1} µs",
        (direct.p50.as_secs_f64() - raw.p50.as_secs_f64()) * 1e6,
        (catalog.p50.as_secs_f64() - raw.p50.as_secs_f64()) * 1e6,
        (route.p50.as_secs_f64() - raw.p50.as_secs_f64()) * 1e6,
    );
}
