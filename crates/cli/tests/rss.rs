//! The plugin daemon's memory, measured on the real binary (DESIGN.md §5: "0 plugin processes after the idle
//! timeout; daemon RSS ≤ 50 MB with 100 installed plugins").
//!
//! Run it with:
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-rss cargo test --release -p toolplane --test rss -- --ignored --nocapture
//! ```
//!
//! For each count (`TOOLPLANE_RSS_COUNTS`, default `1,10,100`) and each run (`TOOLPLANE_RSS_RUNS`, default 3) it
//! starts `toolplane daemon` as its own process on a fresh data folder, uploads and installs that many distinct
//! copies of the probe plugin (`dify_plugin` 0.7.4, Python 3.11) through the management API the way Dify does
//! (`install/upload/package`, then `install/identifiers` in tasks of 10 running side by side), calls every plugin's tool once through
//! `dispatch/tool/invoke` (all at once, so every plugin process runs), and reads from `/proc`:
//! - the daemon's `VmRSS`/`VmHWM` (its own pid only; the harness is another process), `RssAnon`, thread count;
//! - the plugin processes (the daemon's descendants) and their summed RSS;
//! - the same once the idle timeout (`PLUGIN_IDLE_TIMEOUT`: `TOOLPLANE_RSS_IDLE_SECS`, default max(30, 0.6 × count)
//!   seconds, longer than starting every plugin at once takes) has stopped every plugin;
//! - the daemon's RSS after a restart on the same data folder with the plugins installed and none running.
//!
//! Python environments live in `crates/runtime/.cache/work` (shared with the runtime's and daemon's tests, so a
//! second run reuses them); the daemon's database and storage are new each time. Each table row is the median
//! over the runs. Without PyPI the test prints a notice and passes.
//!
//! For comparisons: `TOOLPLANE_RSS_BIN` measures another `toolplane` binary (e.g. a copy of an older build),
//! `TOOLPLANE_RSS_WRAP="heaptrack -o /tmp/daemon"` runs the daemon under a profiler,
//! `TOOLPLANE_RSS_HOLD_IDLE_SECS` keeps the idle daemon that long (its pid is printed) for a look with gdb or at
//! `/proc/<pid>/smaps`, and `MALLOC_ARENA_MAX` / `GLIBC_TUNABLES` are passed to the daemon when set.
//!
//! RSS is split into anonymous memory (heap, stacks, relocated data) and file pages (the binary's code and
//! read-only data). The binary is read through once before each start, so it is wholly in the page cache: the
//! kernel maps the cached pages around each page fault, so a binary fresh from the linker and a cold copy of it
//! would otherwise differ by several MB of file pages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "../../daemon/tests/support/probe.rs"]
mod probe;

const KEY: &str = "rss-measurement-key";
const TENANT: &str = "tenant-rss";

fn online() -> bool {
    use std::net::ToSocketAddrs;
    let ok = ("pypi.org", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    if !ok {
        eprintln!("NOTICE: skipping the RSS measurement: pypi.org is unreachable, so dify_plugin cannot be installed");
    }
    ok
}

fn runtime_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/.cache")
}

/// A `toolplane daemon` process.
struct Daemon {
    child: Child,
    /// The daemon's pid: the child's, or under a wrapper the descendant named `toolplane`.
    pid: u32,
    base: String,
}

impl Daemon {
    fn start(data: &Path, idle_secs: u64) -> Self {
        // `TOOLPLANE_RSS_WRAP="heaptrack -o /tmp/daemon"`: run the daemon under a profiler.
        let wrap: Vec<String> = std::env::var("TOOLPLANE_RSS_WRAP")
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        // `TOOLPLANE_RSS_BIN=/path/to/toolplane`: measure another build (e.g. a copy of an older one).
        let binary = std::env::var("TOOLPLANE_RSS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_toolplane").to_owned());
        // Wholly in the page cache, whichever binary it is (see the module documentation).
        std::io::copy(&mut std::fs::File::open(&binary).unwrap(), &mut std::io::sink()).unwrap();
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("TOOLPLANE_DATA_DIR", data)
            .env("RUST_LOG", "warn")
            .env("SERVER_KEY", KEY)
            .env("SERVER_HOST", "127.0.0.1")
            .env("SERVER_PORT", "0")
            .env("PLUGIN_REMOTE_INSTALLING_PORT", "0")
            .env("FORCE_VERIFYING_SIGNATURE", "false")
            .env("PLUGIN_WORKING_PATH", runtime_cache().join("work"))
            .env("PLUGIN_IDLE_TIMEOUT", idle_secs.to_string())
            // Starting 100 plugins at once on 2 cores takes far longer than one call.
            .env("PLUGIN_MAX_EXECUTION_TIMEOUT", "600")
            .env("PLUGIN_START_TIMEOUT", "600")
            .arg("daemon")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(data.join("daemon.stderr")).unwrap());
        // Allocator settings pass through for comparisons (e.g. `MALLOC_ARENA_MAX=2`), and the CA settings uv
        // needs behind a TLS-inspecting proxy.
        for name in [
            "UV_PATH",
            "PYTHON_INTERPRETER_PATH",
            "PIP_MIRROR_URL",
            "MALLOC_ARENA_MAX",
            "GLIBC_TUNABLES",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
        ] {
            if let Ok(v) = std::env::var(name) {
                command.env(name, v);
            }
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut base = None;
        while base.is_none() {
            let Some(Ok(line)) = lines.next() else { break };
            base = line
                .strip_prefix("toolplane plugin daemon is listening on ")
                .map(str::to_owned);
        }
        let base = base.unwrap_or_else(|| {
            panic!(
                "the daemon did not start: {}",
                std::fs::read_to_string(data.join("daemon.stderr")).unwrap_or_default()
            )
        });
        // Keep reading stdout so the daemon never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let pid = if wrap.is_empty() {
            child.id()
        } else {
            descendants(child.id())
                .into_iter()
                .find(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "toolplane"))
                .expect("the wrapped daemon process")
        };
        Self { child, pid, base }
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGTERM (a graceful stop that also stops the plugins), then wait.
    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fields of `/proc/<pid>/status` in KiB (or a count for `Threads`); 0 when the process is gone.
fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The pids descending from `root`.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so split after the last ')'.
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        {
            parents.push((pid, ppid));
        }
    }
    let mut family = vec![root];
    let mut i = 0;
    while i < family.len() {
        let parent = family[i];
        family.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        i += 1;
    }
    family.remove(0);
    family
}

/// One reading of the daemon and its plugins.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    rss: u64,
    hwm: u64,
    anon: u64,
    /// File-backed pages: mostly the binary's own code and data.
    file: u64,
    threads: u64,
    plugins: u64,
    plugin_rss: u64,
}

fn read(pid: u32) -> Reading {
    let children = descendants(pid);
    Reading {
        rss: status_field(pid, "VmRSS"),
        hwm: status_field(pid, "VmHWM"),
        anon: status_field(pid, "RssAnon"),
        file: status_field(pid, "RssFile"),
        threads: status_field(pid, "Threads"),
        plugins: children.len() as u64,
        plugin_rss: children.iter().map(|p| status_field(*p, "VmRSS")).sum(),
    }
}

/// The readings of one run at one count.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    started: Reading,
    running: Reading,
    idle: Reading,
    restarted: Reading,
    install_secs: f64,
}

async fn upload(client: &reqwest::Client, base: &str, package: Vec<u8>) -> String {
    let form = reqwest::multipart::Form::new()
        .part(
            "dify_pkg",
            reqwest::multipart::Part::bytes(package).file_name("probe.difypkg"),
        )
        .text("verify_signature", "false");
    let uploaded: Value = client
        .post(format!("{base}/plugin/{TENANT}/management/install/upload/package"))
        .header("X-Api-Key", KEY)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    uploaded["data"]["unique_identifier"]
        .as_str()
        .unwrap_or_else(|| panic!("upload failed: {uploaded}"))
        .to_owned()
}

/// Starts an install task for `uids` (Dify's `install/identifiers`); its id.
async fn start_install(client: &reqwest::Client, base: &str, uids: &[String]) -> String {
    let metas = vec![json!({}); uids.len()];
    let started: Value = client
        .post(format!("{base}/plugin/{TENANT}/management/install/identifiers"))
        .header("X-Api-Key", KEY)
        .json(&json!({"plugin_unique_identifiers": uids, "source": "package", "metas": metas}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    started["data"]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("install did not start: {started}"))
        .to_owned()
}

async fn wait_for_task(client: &reqwest::Client, base: &str, task_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(1800);
    while Instant::now() < deadline {
        let task: Value = client
            .get(format!("{base}/plugin/{TENANT}/management/install/tasks/{task_id}"))
            .header("X-Api-Key", KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match task["data"]["status"].as_str() {
            Some("success") => return,
            Some("failed") => panic!("install failed: {task}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    panic!("install task {task_id} did not finish")
}

async fn invoke(client: &reqwest::Client, base: &str, plugin: usize) {
    let response = client
        .post(format!("{base}/plugin/{TENANT}/dispatch/tool/invoke"))
        .header("X-Api-Key", KEY)
        .header("X-Plugin-ID", format!("probe/rss{plugin}"))
        .json(&json!({
            "user_id": "user-1",
            "conversation_id": null,
            "app_id": null,
            "message_id": null,
            "data": {
                "provider": "probe",
                "tool": "echo",
                "credentials": {"api_key": "good"},
                "credential_type": "api-key",
                "tool_parameters": {"text": "rss", "mode": "basic"},
            },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("echo: rss"), "plugin rss{plugin}: {text}");
}

/// Waits until the daemon has no plugin process left (or `limit` passed).
async fn wait_for_no_plugins(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if descendants(pid).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

async fn measure(count: usize, idle_secs: u64, client: &reqwest::Client) -> Sample {
    let data = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(data.path(), idle_secs);
    let pid = daemon.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = read(pid);

    let t = Instant::now();
    let names: Vec<String> = (0..count).map(|i| format!("rss{i}")).collect();
    let mut uids = Vec::new();
    for name in &names {
        uids.push(upload(client, &daemon.base, probe::renamed_probe(name)).await);
    }
    // One install task takes at most 10 identifiers (MAX_IDENTIFIERS_PER_INSTALL); the tasks run side by side.
    let mut tasks = Vec::new();
    for batch in uids.chunks(10) {
        tasks.push(start_install(client, &daemon.base, batch).await);
    }
    for task in &tasks {
        wait_for_task(client, &daemon.base, task).await;
    }
    let install_secs = t.elapsed().as_secs_f64();

    futures_join_all((0..count).map(|i| {
        let (client, base) = (client.clone(), daemon.base.clone());
        async move { invoke(&client, &base, i).await }
    }))
    .await;
    let running = read(pid);

    // The supervisor looks every idle/4 (at most 5 s).
    let stopped = wait_for_no_plugins(pid, Duration::from_secs(idle_secs * 2 + 30)).await;
    assert!(stopped, "plugin processes still run after twice the idle timeout");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = read(pid);
    // `TOOLPLANE_RSS_HOLD_IDLE_SECS`: keep the idle daemon this long for a look from outside (smaps, gdb).
    if let Some(hold) = std::env::var("TOOLPLANE_RSS_HOLD_IDLE_SECS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        println!(
            "idle daemon: pid {pid}, data folder {}; holding it for {hold} s",
            data.path().display()
        );
        tokio::time::sleep(Duration::from_secs(hold)).await;
    }
    daemon.stop();

    let daemon = Daemon::start(data.path(), idle_secs);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted = read(daemon.pid());
    daemon.stop();
    Sample {
        started,
        running,
        idle,
        restarted,
        install_secs,
    }
}

/// `join_all` without a `futures` dependency: spawn each on the runtime and await them in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    for handle in handles {
        handle.await.unwrap();
    }
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn mb(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement; run explicitly (see the module documentation)"]
async fn measure_daemon_rss_with_installed_plugins() {
    if !online() {
        return;
    }
    let counts: Vec<usize> = std::env::var("TOOLPLANE_RSS_COUNTS")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    let runs: usize = std::env::var("TOOLPLANE_RSS_RUNS").map_or(3, |s| s.trim().parse().unwrap());
    let client = reqwest::Client::new();
    let mut table = Vec::new();
    for &count in &counts {
        let idle_secs = std::env::var("TOOLPLANE_RSS_IDLE_SECS")
            .map_or_else(|_| (count as u64 * 6 / 10).max(30), |s| s.trim().parse().unwrap());
        let mut samples = Vec::new();
        for run in 1..=runs {
            let s = measure(count, idle_secs, &client).await;
            println!(
                "run {run} n={count:>3}: start {} MB (anon {}, file {}) | running {} MB (hwm {}, anon {}, file {}, {} \
                 threads), {} plugin processes, {} MB | idle {} MB (anon {}, file {}, {} threads), {} plugin \
                 processes | restarted {} MB (anon {}, file {}) | install {:.0} s",
                mb(s.started.rss),
                mb(s.started.anon),
                mb(s.started.file),
                mb(s.running.rss),
                mb(s.running.hwm),
                mb(s.running.anon),
                mb(s.running.file),
                s.running.threads,
                s.running.plugins,
                mb(s.running.plugin_rss),
                mb(s.idle.rss),
                mb(s.idle.anon),
                mb(s.idle.file),
                s.idle.threads,
                s.idle.plugins,
                mb(s.restarted.rss),
                mb(s.restarted.anon),
                mb(s.restarted.file),
                s.install_secs
            );
            if s.running.plugins != count as u64 {
                // A plugin whose call ended early went idle before the last one started: raise the idle timeout.
                println!(
                    "  note: {} of {count} plugins were running when measured",
                    s.running.plugins
                );
            }
            assert_eq!(s.idle.plugins, 0, "no plugin process after the idle timeout");
            samples.push(s);
        }
        table.push((count, idle_secs, samples));
    }
    println!();
    println!(
        "daemon RSS (MB, median of {runs} runs)  | installed | start | running | HWM | idle (anon/file) | \
         restarted | plugin procs running/idle | MB per plugin process"
    );
    for (count, idle_secs, samples) in &table {
        let m = |f: &dyn Fn(&Sample) -> u64| median(samples.iter().map(f).collect());
        let running_plugins = m(&|s| s.running.plugins);
        println!(
            "idle timeout {idle_secs:>3} s                  | {count:>9} | {:>5} | {:>7} | {:>3} | {:>4} ({}/{}) | {:>9} \
             | {:>3}/{} | {}",
            mb(m(&|s| s.started.rss)),
            mb(m(&|s| s.running.rss)),
            mb(m(&|s| s.running.hwm)),
            mb(m(&|s| s.idle.rss)),
            mb(m(&|s| s.idle.anon)),
            mb(m(&|s| s.idle.file)),
            mb(m(&|s| s.restarted.rss)),
            running_plugins,
            m(&|s| s.idle.plugins),
            mb(m(&|s| s.running.plugin_rss / s.running.plugins.max(1))),
        );
    }
}
