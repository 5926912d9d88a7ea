//! `toolplane mcp stdio`: a desktop MCP client's view — initialize, tools/list and tools/call over the binary's
//! stdin/stdout, with nothing but protocol messages on stdout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn toolplane(data: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_toolplane"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOOLPLANE_DATA_DIR", data)
        .env("RUST_LOG", "info");
    command
}

#[test]
fn serves_the_tenants_tools_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let created = toolplane(data).args(["tenant", "create", "acme"]).output().unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    // An unknown server is a clear error.
    let missing = toolplane(data)
        .args(["mcp", "stdio", "--tenant", "acme", "--server", "nope"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("MCP server \"nope\" not found"));

    let mut child = toolplane(data)
        .args(["mcp", "stdio", "--tenant", "acme"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut request = |message: Value| -> Value {
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
        if message.get("id").is_none() {
            return Value::Null;
        }
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout carried a non-JSON line {line:?}: {e}"))
    };
    let init = request(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}));
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    request(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let list = request(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"weekday"), "{names:?}");
    let call = request(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "weekday", "arguments": {"year": 2024, "month": 7, "day": 1}}}));
    assert_eq!(call["result"]["isError"], false, "{call}");
    assert_eq!(
        call["result"]["content"][0]["text"], "July 1, 2024 is Monday.",
        "{call}"
    );
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
}
