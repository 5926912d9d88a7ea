//! Shared helpers of the integration tests: the Python `mcp` SDK, test servers on loopback, a loopback SafeClient.
//! `demo` is a small catalog and servers around it; `tasks` serves them behind per-caller keys to the task tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod demo;
pub mod tasks;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::process::{Child, Command};
use toolplane_net::{NetConfig, SafeClient};

/// The crate directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Python interpreter with the `mcp` SDK, installing it on first use; `None` (with a printed notice) when that
/// is impossible.
pub fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let dir = crate_dir();
            std::fs::create_dir_all(dir.join(".cache")).ok()?;
            // flock serialises installs across test binaries running at the same time.
            let output = std::process::Command::new("flock")
                .arg(dir.join(".cache/venv.lock"))
                .arg(dir.join("scripts/setup-python.sh"))
                .stderr(Stdio::inherit())
                .output();
            match output {
                Ok(out) if out.status.success() => {
                    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                    Some(PathBuf::from(path))
                }
                other => {
                    eprintln!(
                        "NOTICE: skipping the tests that need the Python `mcp` SDK: it could not be installed ({other:?})"
                    );
                    None
                }
            }
        })
        .clone()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A SafeClient that may reach loopback (and nothing else private).
pub fn loopback_client() -> SafeClient {
    SafeClient::new(NetConfig {
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..NetConfig::default()
    })
    .unwrap()
}

/// The test server script.
pub fn server_script() -> PathBuf {
    crate_dir().join("tests/python/mcp_server.py")
}

/// A Python MCP server over HTTP, killed on drop.
pub struct PyServer {
    pub child: Child,
    pub port: u16,
    pub markers: tempfile::TempDir,
}

impl PyServer {
    /// Starts `mcp_server.py TRANSPORT PORT` and waits until it accepts connections.
    pub async fn start(python: &Path, transport: &str) -> PyServer {
        let port = free_port();
        let markers = tempfile::tempdir().unwrap();
        let child = Command::new(python)
            .arg(server_script())
            .arg(transport)
            .arg(port.to_string())
            .arg(markers.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "python MCP server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        PyServer { child, port, markers }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits up to 5 s for the `slow` tool to record its cancellation.
    pub async fn saw_cancel(&self, tag: &str) -> bool {
        wait_for_file(&self.markers.path().join(format!("cancelled-{tag}"))).await
    }
}

/// Waits up to 5 s for `path` to exist.
pub async fn wait_for_file(path: &Path) -> bool {
    for _ in 0..50 {
        if path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Reads the JSON-RPC messages of an SSE response one at a time, as they arrive.
pub struct SseReader {
    response: toolplane_net::Response,
    buf: String,
}

impl SseReader {
    pub fn new(response: toolplane_net::Response) -> Self {
        Self {
            response,
            buf: String::new(),
        }
    }

    /// The next message (at most 30 s away, so a broken server fails the test instead of hanging it).
    pub async fn next(&mut self) -> serde_json::Value {
        self.try_next().await.expect("the stream ended")
    }

    /// The next message, or `None` when the stream ended.
    pub async fn try_next(&mut self) -> Option<serde_json::Value> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return Some(serde_json::from_str(data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("no SSE frame within 30 s")
                .unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}
