//! Invoke benchmark: `time/current_time` through `POST /v1/tools/invoke` with 10 concurrent clients, against two
//! baselines measured in the same run: the same tool invoked in-process (no HTTP), and a bare axum route on the same
//! HTTP stack (the floor any HTTP API pays).
//!
//! Run: `cargo bench -p toolplane-server --bench invoke` (optionally `-- <requests per scenario>`).

// A benchmark has nobody to report a setup failure to: it aborts with the reason.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use toolplane_core::{InvokeOptions, ToolProviderType, collect_messages};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_server::{AppState, ServerConfig, Settings};
use toolplane_store::{BlobConfig, BlobStore, Store};

const CONCURRENCY: usize = 10;

#[derive(Debug)]
struct Figures {
    calls_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn figures(mut latencies: Vec<Duration>, wall: Duration) -> Figures {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Figures {
        calls_per_sec: latencies.len() as f64 / wall.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Runs `total` calls of `call` from `CONCURRENCY` tasks and measures each call.
async fn drive<F, Fut>(total: usize, call: F) -> Figures
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let per_task = total / CONCURRENCY;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                call().await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(total);
    for task in tasks {
        all.extend(task.await.expect("bench task"));
    }
    figures(all, start.elapsed())
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<34} {:>10.0} calls/s   p50 {:>8.1} µs   p99 {:>8.1} µs",
        f.calls_per_sec,
        f.p50.as_secs_f64() * 1e6,
        f.p99.as_secs_f64() * 1e6
    );
}

fn main() {
    let total: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(total));
}

async fn run(total: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings::from_pairs([
        ("TOOLPLANE_DATA_DIR", dir.path().display().to_string()),
        ("SECRET_KEY", "bench".to_owned()),
    ]);
    let config = ServerConfig::from_settings(&settings).expect("config");
    let store = Store::connect(&config.database_url).await.expect("store");
    store.migrate().await.expect("migrate");
    let blobs = BlobStore::from_config(
        &BlobConfig::from_vars(settings.lookup(), config.data_dir.clone()).expect("blob config"),
    )
    .expect("blobs");
    let client = SafeClient::new(NetConfig::default()).expect("client");
    let state = AppState::new(
        config,
        store,
        blobs,
        toolplane_builtin::providers(client),
        NetConfig::default(),
    );
    state.bootstrap().await.expect("bootstrap");
    let tenant = state.create_tenant("bench").await.expect("tenant");
    let (_, key) = state.create_api_key(Some(&tenant.id), "bench").await.expect("key");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(toolplane_server::serve(listener, state.clone(), std::future::pending()));

    // Baseline 2: a bare axum route on its own listener.
    let raw = axum::Router::new().route(
        "/raw",
        axum::routing::post(|| async {
            axum::Json(json!({"messages": [{"type": "text", "message": {"text": "x"}, "meta": null}]}))
        }),
    );
    let raw_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let raw_url = format!("http://{}/raw", raw_listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(raw_listener, raw).await });

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("http client");
    let body = json!({"provider_type": "builtin", "provider_id": "time", "tool": "current_time", "parameters": {"timezone": "Asia/Tokyo"}});

    // Warm up every path.
    for _ in 0..200 {
        http.post(format!("{base}/v1/tools/invoke"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .expect("warm");
        http.post(&raw_url).json(&body).send().await.expect("warm");
    }

    println!("{total} calls per scenario, {CONCURRENCY} concurrent callers");
    let in_process = {
        let state = state.clone();
        let tenant_id = tenant.id.clone();
        drive(total, move || {
            let state = state.clone();
            let tenant_id = tenant_id.clone();
            async move {
                let resolved = state
                    .catalog
                    .runtime(&tenant_id, ToolProviderType::Builtin, "time", "current_time", None)
                    .await
                    .expect("runtime");
                let params: Map<String, Value> = Map::from_iter([("timezone".into(), json!("Asia/Tokyo"))]);
                let stream = toolplane_core::invoke(resolved.tool, resolved.runtime, params, InvokeOptions::default())
                    .await
                    .expect("invoke");
                assert_eq!(collect_messages(stream).await.expect("messages").len(), 1);
            }
        })
        .await
    };
    let raw_http = {
        let http = http.clone();
        let body = body.clone();
        drive(total, move || {
            let http = http.clone();
            let body = body.clone();
            let url = raw_url.clone();
            async move {
                let response = http.post(url).json(&body).send().await.expect("raw");
                assert!(response.status().is_success());
                response.bytes().await.expect("raw body");
            }
        })
        .await
    };
    let via_http = {
        let http = http.clone();
        drive(total, move || {
            let http = http.clone();
            let body = body.clone();
            let url = format!("{base}/v1/tools/invoke");
            let key = key.clone();
            async move {
                let response = http
                    .post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .expect("invoke");
                assert!(response.status().is_success());
                response.bytes().await.expect("invoke body");
            }
        })
        .await
    };
    print("in-process invoke (baseline)", &in_process);
    print("bare axum route (baseline)", &raw_http);
    print("POST /v1/tools/invoke", &via_http);
    println!(
        "invoke vs bare route: throughput {:.2}x, added p50 {:.1} µs",
        via_http.calls_per_sec / raw_http.calls_per_sec,
        (via_http.p50.as_secs_f64() - raw_http.p50.as_secs_f64()) * 1e6
    );
}
