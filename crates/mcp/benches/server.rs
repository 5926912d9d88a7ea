//! `tools/call` of a builtin-like tool (`echo`, through the catalog, casting and the invoke stream) against the
//! MCP router with 10 concurrent clients on loopback, in both eras, next to a bare axum JSON echo route measured in
//! the same run (the floor any axum JSON endpoint pays on this machine).
//!
//! The clients are OS threads speaking HTTP/1.1 keep-alive over blocking TCP sockets, checking each response by
//! substring, so they cost a few microseconds per call and do not bound the figures (the server runs on its own
//! 2-worker tokio runtime). Two loads per target:
//! - closed loop: each client sends its next call when the previous answer arrives (the machine's capacity; by
//!   Little's law its p50 is about clients / throughput);
//! - paced: the 10 clients together send `MCP_BENCH_RATE` calls/s (default 10,000) on a fixed schedule (each
//!   client one call per 1 ms, the clients offset from each other); the achieved rate shows whether the server
//!   kept up.
//!
//! Run: `CARGO_TARGET_DIR=/work/bench-target-mcpserver cargo bench -p toolplane-mcp --bench server`.
//! `MCP_BENCH_CALLS` sets calls per client (default 5,000), `MCP_BENCH_RATE` the paced rate; `MCP_BENCH_ONLY` and
//! `MCP_BENCH_LOAD` pick one target and one load (for profiling).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/demo.rs"]
mod demo;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use axum::serve::ListenerExt;
use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::{Value, json};
use toolplane_mcp::{HttpOptions, StaticResolver, mcp_router};

const CLIENTS: usize = 10;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = runtime.block_on(serve());
    run(addr);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    /// A bare axum route that parses the JSON-RPC body and answers a JSON result.
    AxumEcho,
    /// The MCP router, 2026-07-28 stateless requests.
    Stateless,
    /// The MCP router, a session per client (`initialize` first).
    Session,
}

/// A keep-alive HTTP/1.1 connection that sends one request at a time.
struct Connection {
    stream: TcpStream,
    path: String,
    host: String,
    headers: String,
    buf: Vec<u8>,
}

impl Connection {
    fn open(addr: SocketAddr, path: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            path: path.to_owned(),
            host: addr.to_string(),
            headers: String::new(),
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Sends `body` with the connection's headers plus `extra`; returns status, a named response header and the
    /// body.
    fn post(&mut self, extra: &str, body: &str, want_header: Option<&str>) -> (u16, Option<String>, Vec<u8>) {
        let request = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\naccept: application/json, \
             text/event-stream\r\n{}{}content-length: {}\r\n\r\n{}",
            self.path,
            self.host,
            self.headers,
            extra,
            body.len(),
            body
        );
        self.stream.write_all(request.as_bytes()).unwrap();
        self.buf.clear();
        let header_end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&self.buf[..header_end]).unwrap().to_owned();
        let status: u16 = head[9..12].parse().unwrap();
        let mut length = None;
        let mut wanted = None;
        for line in head.split("\r\n").skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
                if want_header.is_some_and(|w| name.eq_ignore_ascii_case(w)) {
                    wanted = Some(value.trim().to_owned());
                }
            }
        }
        let length = length.expect("the bench expects content-length responses");
        while self.buf.len() < header_end + length {
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        (status, wanted, self.buf[header_end..header_end + length].to_vec())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

/// A connected client ready to call `echo`.
fn client(target: Target, addr: SocketAddr) -> Connection {
    match target {
        Target::AxumEcho => Connection::open(addr, "/echo"),
        Target::Stateless => {
            let mut c = Connection::open(addr, "/mcp/server/bench/mcp");
            c.headers = "mcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: echo\r\n".into();
            c
        }
        Target::Session => {
            let mut c = Connection::open(addr, "/mcp/server/bench/mcp");
            let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
            let (status, session, _) = c.post("", init, Some("mcp-session-id"));
            assert_eq!(status, 200);
            let session = session.unwrap();
            c.headers = format!("mcp-session-id: {session}\r\nmcp-protocol-version: 2025-11-25\r\n");
            let (status, _, _) = c.post("", r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, None);
            assert_eq!(status, 202);
            c
        }
    }
}

fn call(target: Target, c: &mut Connection, text: &str) {
    let body = match target {
        Target::Stateless => format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}},{META}}}}}"#
        ),
        _ => format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}}}}}}"#
        ),
    };
    let (status, _, response) = c.post("", &body, None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
    assert!(
        find(&response, text.as_bytes()).is_some() && find(&response, b"\"isError\":true").is_none(),
        "unexpected answer: {}",
        String::from_utf8_lossy(&response)
    );
}

struct Figures {
    calls: usize,
    wall: Duration,
    p50: Duration,
    p99: Duration,
    /// CPU time of the server's runtime threads per call (user + system), less sensitive than wall-clock figures
    /// to other load on the machine.
    server_cpu: Duration,
}

/// CPU time so far of this process's threads named `tokio-rt-worker` (the server's runtime), from /proc.
fn server_cpu() -> Duration {
    let mut ticks = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ...`: utime and stime are fields 14 and 15, i.e. 11 and 12 after the comm.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if !head.ends_with("tokio-rt-worker") {
                continue;
            }
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let parse = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
            ticks += parse(11) + parse(12);
        }
    }
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>7.0} calls/s  p50 {:>6.1} µs  p99 {:>7.1} µs  server CPU {:>5.1} µs/call  ({} calls in {:.2} s)",
            self.calls as f64 / self.wall.as_secs_f64(),
            self.p50.as_secs_f64() * 1e6,
            self.p99.as_secs_f64() * 1e6,
            self.server_cpu.as_secs_f64() * 1e6 / self.calls as f64,
            self.calls,
            self.wall.as_secs_f64()
        )
    }
}

/// Runs `calls` calls on each of the clients; `interval` paces each client (None: closed loop).
fn load(target: Target, addr: SocketAddr, calls: usize, interval: Option<Duration>) -> Figures {
    let mut connections = Vec::new();
    for _ in 0..CLIENTS {
        connections.push(client(target, addr));
    }
    // Warm up every connection.
    for (c, conn) in connections.iter_mut().enumerate() {
        for i in 0..50 {
            call(target, conn, &format!("w{c}-{i}"));
        }
    }
    let started = Instant::now();
    let cpu_before = server_cpu();
    let mut threads = Vec::new();
    for (c, mut conn) in connections.into_iter().enumerate() {
        threads.push(std::thread::spawn(move || {
            let mut latencies = Vec::with_capacity(calls);
            // Clients start spread over one interval so paced sends do not all coincide.
            let offset = interval.map(|i| i * c as u32 / CLIENTS as u32).unwrap_or_default();
            let start = Instant::now() + offset;
            for i in 0..calls {
                let text = format!("c{c}-{i}");
                if let Some(interval) = interval {
                    let due = start + interval * i as u32;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                }
                // From the actual send: a thread's wake-up lateness is not the server's; falling behind the
                // schedule shows in the achieved rate instead.
                let t = Instant::now();
                call(target, &mut conn, &text);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for thread in threads {
        all.extend(thread.join().unwrap());
    }
    let wall = started.elapsed();
    let server_cpu = server_cpu().saturating_sub(cpu_before);
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Figures {
        calls: all.len(),
        wall,
        p50: pct(0.50),
        p99: pct(0.99),
        server_cpu,
    }
}

async fn axum_echo(body: axum::body::Bytes) -> axum::Json<Value> {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = request["params"]["arguments"]["text"].clone();
    axum::Json(json!({
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": {"content": [{"type": "text", "text": text}], "isError": false},
    }))
}

async fn serve() -> SocketAddr {
    let resolver = StaticResolver::new().with_server("bench", demo::echo_server(), None);
    let router: Router = mcp_router(Arc::new(resolver), HttpOptions::default()).route("/echo", post(axum_echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn run(addr: SocketAddr) {
    let calls: usize = std::env::var("MCP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let rate: u64 = std::env::var("MCP_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // `MCP_BENCH_ONLY=axumecho|stateless|session` runs one target, `MCP_BENCH_LOAD=closed|paced` one load.
    let only: Option<String> = std::env::var("MCP_BENCH_ONLY").ok();
    let loads = std::env::var("MCP_BENCH_LOAD").unwrap_or_default();

    let interval = Duration::from_nanos(1_000_000_000 * CLIENTS as u64 / rate);
    println!("{CLIENTS} clients, {calls} calls each; paced load: {rate} calls/s in total");
    for target in [Target::AxumEcho, Target::Stateless, Target::Session] {
        if only
            .as_deref()
            .is_some_and(|o| !format!("{target:?}").eq_ignore_ascii_case(o))
        {
            continue;
        }
        if loads != "paced" {
            let closed = load(target, addr, calls, None);
            println!("{:<10} closed loop: {closed}", format!("{target:?}"));
        }
        if loads != "closed" {
            let paced = load(target, addr, calls, Some(interval));
            println!("{:<10} paced:       {paced}", format!("{target:?}"));
        }
    }
}
