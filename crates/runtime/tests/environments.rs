//! How plugin environments get their dependencies, with `dify_plugin==0.10.2` on Python 3.12 from PyPI:
//! `pyproject.toml` + `uv.lock` (`uv sync --frozen`), wheels bundled in the package (offline, no index), and
//! `PIP_MIRROR_URL` pointing at a PEP 503 simple index served on loopback by the test from downloaded wheels.
//!
//! Wheels are downloaded once into `crates/runtime/.cache/wheels-dify_plugin-0.10.2-py312/` (git-ignored). When PyPI
//! is unreachable the tests print a notice and pass without running.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use toolplane_runtime::{Backwards, FsStorage, InvokeRequest, PluginRuntime, RuntimeConfig};

const SDK: &str = "dify_plugin==0.10.2";

fn cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache")
}

fn online(test: &str) -> bool {
    use std::net::ToSocketAddrs;
    let reachable = ("pypi.org", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    if !reachable {
        eprintln!("NOTICE: skipping {test}: pypi.org is unreachable, so dify_plugin and uv cannot be installed");
    }
    reachable
}

fn config() -> RuntimeConfig {
    let mut config = RuntimeConfig::new(cache().join("work"));
    config.tools_path = cache().join("tools");
    config.idle_timeout = Duration::ZERO;
    config.start_timeout = Duration::from_secs(60);
    config
}

/// The `uv` binary, fetched from PyPI into the shared tools folder when needed. Tests that point the runtime at a
/// mirror without uv set `UV_PATH` to it: run first on a fresh machine, they would otherwise try to download uv
/// from that mirror and fail.
async fn uv_without_mirror() -> std::path::PathBuf {
    let storage = tempfile::tempdir().unwrap();
    runtime(config(), storage.path()).environments().uv().await.unwrap()
}

fn runtime(config: RuntimeConfig, storage: &Path) -> PluginRuntime {
    PluginRuntime::new(
        config,
        Backwards {
            storage: Some(Arc::new(FsStorage::new(storage))),
            tools: None,
            ..Backwards::default()
        },
    )
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The probe plugin moved to Python 3.12 with `tag` written into `main.py` (so each test has its own unique
/// identifier and working folder) and without `requirements.txt`.
fn probe_on_312(tag: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/probe"),
        dir.path(),
    );
    std::fs::remove_file(dir.path().join("requirements.txt")).unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("manifest.yaml"))
        .unwrap()
        .replace("version: \"3.11\"", "version: \"3.12\"");
    std::fs::write(dir.path().join("manifest.yaml"), manifest).unwrap();
    let main = std::fs::read_to_string(dir.path().join("main.py")).unwrap();
    std::fs::write(dir.path().join("main.py"), format!("# environment test: {tag}\n{main}")).unwrap();
    dir
}

fn echo(text: &str) -> InvokeRequest {
    let mut payload = Map::new();
    payload.insert("provider".into(), json!("probe"));
    payload.insert("tool".into(), json!("echo"));
    payload.insert("credentials".into(), json!({"api_key": "good"}));
    payload.insert("credential_type".into(), json!("api-key"));
    payload.insert("tool_parameters".into(), json!({"text": text, "mode": "basic"}));
    InvokeRequest {
        tenant_id: "tenant-1".into(),
        user_id: "u1".into(),
        access_type: "tool".into(),
        action: "invoke_tool".into(),
        payload,
        ..Default::default()
    }
}

/// Installs the package into a fresh working folder (an environment left by an earlier run would be reused) and
/// proves the plugin answers; its working folder.
async fn install_and_call(runtime: &PluginRuntime, package: &[u8], text: &str) -> PathBuf {
    let decoded = toolplane_plugin::decode(package, &toolplane_plugin::DecodeLimits::default()).unwrap();
    let _ = std::fs::remove_dir_all(cache().join("work").join(decoded.unique_identifier.working_dir_name()));
    let report = runtime
        .install(package)
        .await
        .unwrap_or_else(|e| panic!("install failed: {e}"));
    let chunks = runtime
        .invoke(&report.unique_identifier, &echo(text))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(chunks[0]["message"]["text"], format!("echo: {text}"));
    let uid = toolplane_plugin::PluginUniqueIdentifier::parse(&report.unique_identifier).unwrap();
    cache().join("work").join(uid.working_dir_name())
}

fn site_packages(working: &Path) -> PathBuf {
    working.join(".venv/lib/python3.12/site-packages")
}

/// `dify_plugin==0.10.2` and its dependencies as wheels for this platform and Python 3.12, downloaded once.
fn sdk_wheels() -> PathBuf {
    let dir = cache().join("wheels-dify_plugin-0.10.2-py312");
    let done = dir.join(".complete");
    if done.is_file() {
        return dir;
    }
    let (python, _) = toolplane_runtime::env::find_python(&config(), "3.12").expect("Python 3.12");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new(python)
        .args(["-m", "pip", "download", SDK, "--only-binary=:all:", "--quiet", "-d"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success(), "pip download {SDK} failed");
    std::fs::write(&done, "").unwrap();
    dir
}

/// The probe plugin as a uv project (`pyproject.toml` + a fresh `uv.lock`), plus a dependency added after locking,
/// which `uv sync --frozen` must not install.
async fn locked_project(runtime: &PluginRuntime, config: &RuntimeConfig, tag: &str) -> tempfile::TempDir {
    let plugin = probe_on_312(tag);
    let pyproject = format!(
        "[project]\nname = \"probe-plugin\"\nversion = \"0.0.1\"\nrequires-python = \">=3.12\"\n\
         dependencies = [\"{SDK}\"]\n\n[tool.uv]\npackage = false\n"
    );
    std::fs::write(plugin.path().join("pyproject.toml"), &pyproject).unwrap();
    let uv = runtime.environments().uv().await.unwrap();
    let (python, _) = toolplane_runtime::env::find_python(config, "3.12").unwrap();
    let locked = std::process::Command::new(&uv)
        .args(["lock", "--no-python-downloads", "--python"])
        .arg(&python)
        .current_dir(plugin.path())
        .env("UV_CACHE_DIR", config.uv_cache())
        .output()
        .unwrap();
    assert!(
        locked.status.success(),
        "uv lock: {}",
        String::from_utf8_lossy(&locked.stderr)
    );
    assert!(plugin.path().join("uv.lock").is_file());
    std::fs::write(
        plugin.path().join("pyproject.toml"),
        pyproject.replace(&format!("\"{SDK}\""), &format!("\"{SDK}\", \"tomli-w\"")),
    )
    .unwrap();
    plugin
}

fn bundle_wheels(plugin: &Path, wheels: &Path) {
    let bundled = plugin.join("wheels");
    std::fs::create_dir_all(&bundled).unwrap();
    for entry in std::fs::read_dir(wheels).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "whl") {
            std::fs::copy(&path, bundled.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pyproject_and_uv_lock_sync_frozen() {
    if !online("pyproject_and_uv_lock_sync_frozen") {
        return;
    }
    let config = config();
    let storage = tempfile::tempdir().unwrap();
    let runtime = runtime(config.clone(), storage.path());
    let plugin = locked_project(&runtime, &config, "uv.lock").await;
    let package = toolplane_plugin::package_dir(plugin.path(), 50 << 20, |_| {}).unwrap();
    let working = install_and_call(&runtime, &package, "locked").await;
    let site = site_packages(&working);
    assert!(site.join("dify_plugin-0.10.2.dist-info").is_dir(), "{}", site.display());
    assert!(!site.join("tomli_w").exists(), "uv sync ignored --frozen and re-locked");
    runtime.shutdown().await;
}

/// A locked project with its wheels bundled installs offline too.
#[tokio::test(flavor = "multi_thread")]
async fn uv_lock_with_bundled_wheels_installs_offline() {
    if !online("uv_lock_with_bundled_wheels_installs_offline") {
        return;
    }
    let wheels = sdk_wheels();
    let mut config = config();
    config.uv_path = Some(uv_without_mirror().await);
    config.pip_mirror_url = Some("http://127.0.0.1:9/simple".into());
    let storage = tempfile::tempdir().unwrap();
    let runtime = runtime(config.clone(), storage.path());
    let plugin = locked_project(&runtime, &config, "uv.lock + wheels").await;
    bundle_wheels(plugin.path(), &wheels);
    let package = toolplane_plugin::package_dir(plugin.path(), 50 << 20, |_| {}).unwrap();
    let working = install_and_call(&runtime, &package, "locked offline").await;
    let site = site_packages(&working);
    assert!(site.join("dify_plugin-0.10.2.dist-info").is_dir());
    assert!(!site.join("tomli_w").exists(), "the lock was not followed");
    runtime.shutdown().await;
}

/// A locked project with `PIP_MIRROR_URL`: the locked versions, downloaded from the mirror (not from the URLs in
/// the lock, which point at PyPI).
#[tokio::test(flavor = "multi_thread")]
async fn uv_lock_with_a_mirror_downloads_from_the_mirror() {
    if !online("uv_lock_with_a_mirror_downloads_from_the_mirror") {
        return;
    }
    let wheels = sdk_wheels();
    let index = serve_index(&wheels).await;
    let mut config = config();
    config.uv_path = Some(uv_without_mirror().await);
    config.pip_mirror_url = Some(index.url.clone());
    let storage = tempfile::tempdir().unwrap();
    let runtime = runtime(config.clone(), storage.path());
    let plugin = locked_project(&runtime, &config, "uv.lock + mirror").await;
    let package = toolplane_plugin::package_dir(plugin.path(), 50 << 20, |_| {}).unwrap();
    let working = install_and_call(&runtime, &package, "locked mirrored").await;
    let site = site_packages(&working);
    assert!(site.join("dify_plugin-0.10.2.dist-info").is_dir());
    assert!(!site.join("tomli_w").exists(), "the lock was not followed");
    assert!(
        index.served_sdk_page.load(Ordering::SeqCst) + index.served_wheels.load(Ordering::SeqCst) > 0,
        "the locked install ignored PIP_MIRROR_URL"
    );
    assert!(
        index.served_wheels.load(Ordering::SeqCst) > 0,
        "no wheel came from the mirror"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bundled_wheels_install_offline() {
    if !online("bundled_wheels_install_offline") {
        return;
    }
    let wheels = sdk_wheels();
    let mut config = config();
    config.uv_path = Some(uv_without_mirror().await);
    // A mirror that refuses connections: the bundled wheels must be enough.
    config.pip_mirror_url = Some("http://127.0.0.1:9/simple".into());
    let storage = tempfile::tempdir().unwrap();
    let runtime = runtime(config, storage.path());
    let plugin = probe_on_312("bundled wheels");
    std::fs::write(plugin.path().join("requirements.txt"), format!("{SDK}\n")).unwrap();
    bundle_wheels(plugin.path(), &wheels);
    let package = toolplane_plugin::package_dir(plugin.path(), 50 << 20, |_| {}).unwrap();
    let working = install_and_call(&runtime, &package, "offline").await;
    assert!(site_packages(&working).join("dify_plugin-0.10.2.dist-info").is_dir());
    runtime.shutdown().await;
}

/// A PEP 503 simple index over a folder of wheels, on loopback; counts the wheel files it served.
struct SimpleIndex {
    url: String,
    served_wheels: Arc<AtomicUsize>,
    served_sdk_page: Arc<AtomicUsize>,
}

fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if matches!(c, '_' | '.') {
            '-'
        } else {
            c.to_ascii_lowercase()
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

async fn serve_index(wheels: &Path) -> SimpleIndex {
    let mut projects: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for entry in std::fs::read_dir(wheels).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if let Some(project) = name.strip_suffix(".whl").and_then(|n| n.split('-').next()) {
            projects.entry(normalize(project)).or_default().push(name);
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/simple", listener.local_addr().unwrap());
    let served_wheels = Arc::new(AtomicUsize::new(0));
    let served_sdk_page = Arc::new(AtomicUsize::new(0));
    let (wheels, counter, sdk_page) = (wheels.to_owned(), served_wheels.clone(), served_sdk_page.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let (wheels, projects, counter, sdk_page) =
                (wheels.clone(), projects.clone(), counter.clone(), sdk_page.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_string();
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, content_type, body) = if let Some(project) = path
                    .strip_prefix("/simple/")
                    .map(|p| p.trim_end_matches('/'))
                    .filter(|p| !p.is_empty() && !p.contains('/'))
                {
                    match projects.get(&normalize(project)) {
                        Some(files) => {
                            if normalize(project) == "dify-plugin" {
                                sdk_page.fetch_add(1, Ordering::SeqCst);
                            }
                            let links: String = files
                                .iter()
                                .map(|f| format!("<a href=\"/files/{f}\">{f}</a><br/>\n"))
                                .collect();
                            let html = format!("<!DOCTYPE html><html><body>\n{links}</body></html>\n");
                            ("200 OK", "text/html", html.into_bytes())
                        }
                        None => ("404 Not Found", "text/plain", b"not found".to_vec()),
                    }
                } else if let Some(file) = path.strip_prefix("/files/").filter(|f| !f.contains('/')) {
                    match std::fs::read(wheels.join(file)) {
                        Ok(bytes) => {
                            counter.fetch_add(1, Ordering::SeqCst);
                            ("200 OK", "application/octet-stream", bytes)
                        }
                        Err(_) => ("404 Not Found", "text/plain", b"not found".to_vec()),
                    }
                } else {
                    ("404 Not Found", "text/plain", b"not found".to_vec())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(&body).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    SimpleIndex {
        url,
        served_wheels,
        served_sdk_page,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pip_mirror_url_is_the_only_index() {
    if !online("pip_mirror_url_is_the_only_index") {
        return;
    }
    let wheels = sdk_wheels();
    let index = serve_index(&wheels).await;
    let mut config = config();
    config.uv_path = Some(uv_without_mirror().await);
    config.pip_mirror_url = Some(index.url.clone());
    let storage = tempfile::tempdir().unwrap();
    let runtime = runtime(config, storage.path());
    let plugin = probe_on_312("mirror");
    std::fs::write(plugin.path().join("requirements.txt"), format!("{SDK}\n")).unwrap();
    let package = toolplane_plugin::package_dir(plugin.path(), 50 << 20, |_| {}).unwrap();
    let working = install_and_call(&runtime, &package, "mirrored").await;
    assert!(site_packages(&working).join("dify_plugin-0.10.2.dist-info").is_dir());
    assert!(
        index.served_sdk_page.load(Ordering::SeqCst) > 0,
        "uv never asked the mirror for dify_plugin"
    );
    assert!(
        index.served_wheels.load(Ordering::SeqCst) > 0,
        "no wheel came from the mirror"
    );
    runtime.shutdown().await;
}
