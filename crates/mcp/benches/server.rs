//! `tools/call` of a trivial builtin-like tool against the MCP router: 10 concurrent clients on loopback, each
//! calling sequentially over its own connection (stateless 2026-07-28 era and session era). Prints calls/s, p50
//! and p99. Run with `cargo bench -p toolplane-mcp --bench server`; `MCP_BENCH_CALLS` sets calls per client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/demo.rs"]
mod demo;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use serde_json::{Map, json};
use toolplane_mcp::{CallOptions, ClientOptions, EraPreference, HttpOptions, McpClient, StaticResolver, mcp_router};
use toolplane_net::{NetConfig, SafeClient};

const CLIENTS: usize = 10;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let calls: usize = std::env::var("MCP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let resolver = StaticResolver::new().with_server("bench", demo::echo_server(), None);
    let router = mcp_router(Arc::new(resolver), HttpOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp/server/bench/mcp", listener.local_addr().unwrap());
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    for era in [EraPreference::Stateless, EraPreference::Session] {
        let mut tasks = Vec::new();
        let started = Instant::now();
        for c in 0..CLIENTS {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                // One client (own connection pool) per task, like independent MCP clients.
                let http = SafeClient::new(NetConfig {
                    allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
                    ..NetConfig::default()
                })
                .unwrap();
                let options = ClientOptions {
                    era,
                    ..ClientOptions::default()
                };
                let client = McpClient::connect_http(http, &url, options).await.unwrap();
                let mut latencies = Vec::with_capacity(calls);
                for i in 0..calls {
                    let args: Map<_, _> = json!({"text": format!("c{c}-{i}")}).as_object().unwrap().clone();
                    let t = Instant::now();
                    let result = client.call_tool("echo", args, CallOptions::default()).await.unwrap();
                    latencies.push(t.elapsed());
                    assert!(!result.is_error());
                }
                client.close().await;
                latencies
            }));
        }
        let mut all: Vec<Duration> = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        let wall = started.elapsed();
        all.sort();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!(
            "{era:?}: {} calls by {CLIENTS} clients in {:.2} s: {:.0} calls/s, p50 {:?}, p99 {:?}",
            all.len(),
            wall.as_secs_f64(),
            all.len() as f64 / wall.as_secs_f64(),
            pct(0.50),
            pct(0.99)
        );
    }
}
