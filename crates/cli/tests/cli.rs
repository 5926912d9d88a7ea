//! The `toolplane` binary end to end: first start, tenants, keys, tools, and a served request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn toolplane(data: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_toolplane"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOOLPLANE_DATA_DIR", data)
        .env("RUST_LOG", "warn");
    command
}

fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "command failed: {command:?}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn manage_and_invoke_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    assert!(run_ok(toolplane(data).arg("migrate")).contains("database is up to date (SQLite)"));

    let created = run_ok(toolplane(data).args(["tenant", "create", "acme"]));
    assert!(created.starts_with("created tenant acme ("), "{created}");
    let key = run_ok(toolplane(data).args(["key", "create", "--tenant", "acme"]));
    assert!(key.trim().starts_with("tp_") && key.trim().len() == 43, "{key}");

    let listing = run_ok(toolplane(data).args(["tool", "list", "--tenant", "acme"]));
    assert!(listing.contains("builtin\ttime/weekday"), "{listing}");
    let weekday = run_ok(toolplane(data).args([
        "tool",
        "invoke",
        "time/weekday",
        "-p",
        "year=2024",
        "-p",
        "month=7",
        "-p",
        "day=1",
        "--tenant",
        "acme",
    ]));
    assert_eq!(weekday.trim(), "July 1, 2024 is Monday.");
    let json = run_ok(toolplane(data).args([
        "tool",
        "invoke",
        "time/timestamp_to_localtime",
        "-p",
        "timestamp=0",
        "-p",
        "timezone=UTC",
        "--tenant",
        "acme",
        "--json",
    ]));
    let messages: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(messages[0]["type"], "text");
    assert_eq!(messages[0]["message"]["text"], "1970-01-01 00:00:00");

    // Bad input: a clear message and a failing exit code.
    let output = toolplane(data)
        .args(["tool", "invoke", "time/weekday", "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing required parameter \"year\""), "{stderr}");
    let output = toolplane(data)
        .args(["tool", "invoke", "weekday", "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not <provider>/<tool>"));
    let output = toolplane(data)
        .args(["tool", "list", "--tenant", "nobody"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("tenant \"nobody\" not found"));
    let output = toolplane(data).args(["tenant", "rotate-key", "acme"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--yes"));
}

#[test]
fn config_file_is_read_and_env_wins() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("toolplane.toml");
    std::fs::write(&config, "TOOLPLANE_BIND = \"not an address\"\n").unwrap();
    let output = toolplane(dir.path())
        .args(["--config", config.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("TOOLPLANE_BIND=\"not an address\" is invalid"));
    // The environment overrides the file.
    run_ok(toolplane(dir.path()).env("TOOLPLANE_BIND", "127.0.0.1:0").args([
        "--config",
        config.to_str().unwrap(),
        "migrate",
    ]));
}

#[test]
fn serve_prints_urls_and_the_admin_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = toolplane(dir.path())
        .env("TOOLPLANE_BIND", "127.0.0.1:0")
        .env("PLUGIN_REMOTE_INSTALLING_PORT", "0")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut admin_key = None;
    let mut address = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while address.is_none() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(key) = line.strip_prefix("Admin API key (shown once, store it now): ") {
            admin_key = Some(key.to_owned());
        }
        if let Some(addr) = line.strip_prefix("toolplane is listening on http://") {
            address = Some(addr.to_owned());
        }
    }
    let address = address.expect("serve printed its address");
    let admin_key = admin_key.expect("first start printed the admin key");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let health = http.get(format!("http://{address}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let tenants: serde_json::Value = http
            .get(format!("http://{address}/v1/tenants"))
            .bearer_auth(&admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(tenants["data"][0]["name"], "default");
    });
    child.kill().unwrap();
    child.wait().unwrap();

    // A second start reuses the data folder and does not print a new key.
    let mut again = toolplane(dir.path())
        .env("TOOLPLANE_BIND", "127.0.0.1:0")
        .env("PLUGIN_REMOTE_INSTALLING_PORT", "0")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(again.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("toolplane is listening on"), "{first}");
    again.kill().unwrap();
    again.wait().unwrap();
}

#[test]
fn daemon_serves_remote_debugging() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = toolplane(dir.path())
        .env("SERVER_KEY", "cli-debug-key")
        .env("SERVER_HOST", "127.0.0.1")
        .env("SERVER_PORT", "0")
        .env("PLUGIN_REMOTE_INSTALLING_PORT", "0")
        .arg("daemon")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut http, mut debug) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (http.is_none() || debug.is_none()) && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(addr) = line.strip_prefix("toolplane plugin daemon is listening on http://") {
            http = Some(addr.to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("remote plugin debugging: ") {
            debug = rest.split_whitespace().next().map(str::to_owned);
        }
    }
    let (http, debug) = (http.expect("daemon address"), debug.expect("remote debugging address"));
    assert!(debug.starts_with("127.0.0.1:"), "loopback by default: {debug}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let key: serde_json::Value = reqwest::Client::new()
            .post(format!("http://{http}/plugin/tenant-1/debugging/key"))
            .header("X-Api-Key", "cli-debug-key")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = key["data"]["key"].as_str().unwrap().to_owned();
        let exchange = |handshake: String| {
            let debug = debug.clone();
            async move {
                let mut stream = tokio::net::TcpStream::connect(&debug).await.unwrap();
                stream.write_all(handshake.as_bytes()).await.unwrap();
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await.unwrap();
                answer
            }
        };
        let wrong = exchange("{\"type\":\"handshake\",\"data\":{\"key\":\"nope\"}}\n".into()).await;
        assert_eq!(wrong, "handshake failed, invalid key\n");
        // The key from the HTTP route opens the handshake; an empty registration is then refused.
        let right = exchange(format!(
            "{{\"type\":\"handshake\",\"data\":{{\"key\":\"{key}\"}}}}\n{{\"type\":\"end\",\"data\":{{}}}}\n\n"
        ))
        .await;
        assert!(right.starts_with("register failed, no manifest_declaration"), "{right}");
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The hidden launcher `toolplane __plugin-sandbox` that `serve` and `daemon` put in front of every plugin: it
/// confines itself (Landlock + seccomp) and execs the command; the command only reaches the allowed folders.
#[test]
fn the_plugin_sandbox_launcher_confines_what_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("plugin");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(allowed.join("mine.txt"), "mine").unwrap();
    std::fs::write(data.join("server_key"), "secret").unwrap();
    let sandboxed = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_toolplane"));
        command.env_clear().args(["__plugin-sandbox", "--strict"]);
        for dir in ["/usr", "/bin", "/lib", "/lib64"] {
            command.args(["--read-exec", dir]);
        }
        command.arg("--full").arg(&allowed).arg("--").args(args);
        command.output().unwrap()
    };
    let ok = sandboxed(&["cat", allowed.join("mine.txt").to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "mine");
    let denied = sandboxed(&["cat", data.join("server_key").to_str().unwrap()]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );

    let usage = Command::new(env!("CARGO_BIN_EXE_toolplane"))
        .args(["__plugin-sandbox", "--read"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--read needs a path"));
}

fn pypi_reachable() -> bool {
    use std::net::ToSocketAddrs;
    ("pypi.org", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok())
}

/// A multipart form with the package and `verify_signature=false`, written by hand (reqwest's `multipart` feature is
/// not enabled in this workspace).
fn upload_form(package: &[u8]) -> (String, Vec<u8>) {
    let boundary = "toolplane-sandbox-boundary-7e3f";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"dify_pkg\"; filename=\"probe.difypkg\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(package);
    body.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"verify_signature\"\r\n\r\nfalse\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `toolplane daemon` confines the plugins it runs (PLUGIN_SANDBOX=strict, the launcher being the binary itself): a
/// real plugin (the runtime crate's probe, `dify_plugin==0.7.4`) answers a dispatched call but cannot read the
/// daemon's data folder. Environments and uv are shared with the runtime crate's tests (`crates/runtime/.cache`).
#[test]
fn the_daemon_runs_plugins_in_the_sandbox() {
    if !pypi_reachable() {
        eprintln!("NOTICE: skipping the_daemon_runs_plugins_in_the_sandbox: pypi.org is unreachable");
        return;
    }
    let runtime_cache = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/.cache");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tenant-secret.pem"), "secret").unwrap();
    let mut command = toolplane(dir.path());
    command
        .env("SERVER_KEY", "cli-sandbox-key")
        .env("SERVER_HOST", "127.0.0.1")
        .env("SERVER_PORT", "0")
        .env("PLUGIN_REMOTE_INSTALLING_ENABLED", "false")
        .env("PLUGIN_WORKING_PATH", runtime_cache.join("work"))
        .env("PLUGIN_SANDBOX", "strict")
        .env("FORCE_VERIFYING_SIGNATURE", "false");
    if let Ok(home) = std::env::var("HOME") {
        command.env("HOME", home);
    }
    // The daemon builds the plugin's environment from PyPI: hand it the machine's CA bundle (a TLS-intercepting
    // proxy) and local wheel folders, as an operator's environment would.
    for name in [
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "PIP_CERT",
        "PIP_FIND_LINKS",
    ] {
        if let Ok(value) = std::env::var(name) {
            command.env(name, value);
        }
    }
    let uv = runtime_cache.join("tools/uv");
    if uv.is_file() {
        command.env("UV_PATH", uv);
    }
    let mut child = command
        .arg("daemon")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut http = None;
    while http.is_none() {
        let Some(Ok(line)) = lines.next() else { break };
        http = line
            .strip_prefix("toolplane plugin daemon is listening on http://")
            .map(str::to_owned);
    }
    let http = http.expect("daemon address");
    let package = toolplane_plugin::package_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/data/probe"),
        50 << 20,
        |_| {},
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime.block_on(async {
        let client = reqwest::Client::new();
        let base = format!("http://{http}/plugin/tenant-1");
        let (content_type, body) = upload_form(&package);
        let uploaded: serde_json::Value = client
            .post(format!("{base}/management/install/upload/package"))
            .header("X-Api-Key", "cli-sandbox-key")
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let uid = uploaded["data"]["unique_identifier"]
            .as_str()
            .unwrap_or_else(|| panic!("upload: {uploaded}"))
            .to_owned();
        let started: serde_json::Value = client
            .post(format!("{base}/management/install/identifiers"))
            .header("X-Api-Key", "cli-sandbox-key")
            .json(&serde_json::json!({"plugin_unique_identifiers": [uid], "source": "package", "metas": [{}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let task = started["data"]["task_id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let state: serde_json::Value = client
                .get(format!("{base}/management/install/tasks/{task}"))
                .header("X-Api-Key", "cli-sandbox-key")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match state["data"]["status"].as_str() {
                Some("success") => break,
                Some("failed") => panic!("install failed: {state}"),
                _ if Instant::now() > deadline => panic!("install did not finish: {state}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let invoke = |mode: &str, text: String| {
            let request = client
                .post(format!("{base}/dispatch/tool/invoke"))
                .header("X-Api-Key", "cli-sandbox-key")
                .header("X-Plugin-ID", "probe/probe")
                .json(&serde_json::json!({
                    "user_id": "u1",
                    "data": {
                        "provider": "probe",
                        "tool": "echo",
                        "credentials": {"api_key": "good"},
                        "credential_type": "api-key",
                        "tool_parameters": {"text": text, "mode": mode},
                    },
                }));
            async move {
                let text = request.send().await.unwrap().text().await.unwrap();
                let first = text.lines().find(|l| !l.is_empty()).unwrap().to_owned();
                let frame: serde_json::Value = serde_json::from_str(first.strip_prefix("data: ").unwrap()).unwrap();
                frame["data"]["message"]["text"].as_str().unwrap_or_default().to_owned()
            }
        };
        let echo = invoke("basic", "hello".into()).await;
        let secret = dir.path().join("tenant-secret.pem");
        let read = invoke("read", secret.to_string_lossy().into_owned()).await;
        let db = invoke("read", dir.path().join("plugin.db").to_string_lossy().into_owned()).await;
        (echo, read, db)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let (echo, read, db) = outcome;
    assert_eq!(echo, "echo: hello");
    assert!(read.starts_with("PermissionError"), "{read}");
    assert!(db.starts_with("PermissionError"), "{db}");
}
