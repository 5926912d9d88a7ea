//! One running plugin process: launch, readiness, the stdout/stderr readers, sessions, backwards calls,
//! cancellation and kill.
//!
//! # Launch
//! `<venv>/bin/python -m <entrypoint>` in the working folder, with an environment built from scratch (`PATH`,
//! `HOME`, `LANG`, `INSTALL_METHOD=local`, configured proxies — nothing else of the daemon's), in its own process
//! group. The workspace forbids `unsafe`, so the parent-death signal and the memory limit are set by exec
//! wrappers from util-linux instead of a `pre_exec` hook: `setpriv --pdeathsig KILL` and `prlimit --data=<memory>`
//! (`RLIMIT_DATA`, which counts the heap and anonymous mappings; `RLIMIT_AS` would also count gevent's reserved
//! stacks and fail plugins that never use that memory). Both exec the next program, so the plugin keeps the pid we
//! spawned. When a wrapper is missing, the plugin runs without that protection and a warning is logged once.
//! The parent-death signal fires when the spawning *thread* exits; plugins are spawned from async tasks, which run
//! on the runtime's long-lived worker threads.
//!
//! Unless `PLUGIN_SANDBOX=off`, the command starts with the sandbox launcher, which confines itself with Landlock
//! and seccomp and then execs the rest ([`crate::sandbox`]); `TMPDIR` points at `<working folder>/.tmp`, the only
//! writable place besides the working folder.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::Notify;

use crate::backwards::Backwards;
use crate::config::RuntimeConfig;
use crate::env::{PreparedPlugin, Tail, base_env};
use crate::error::RuntimeError;
use crate::frame::FrameReader;
use crate::mux::{CloseKind, Life, Mux, PluginIdentity, Session};
use crate::protocol::InvokeRequest;
use crate::sandbox::{SandboxMode, SandboxPolicy};

const STDERR_TAIL: usize = 2048;

/// What the supervisor of one process shares with its readers.
struct Shared {
    mux: Arc<Mux>,
    stderr: Mutex<Tail>,
    kill_reason: Mutex<Option<String>>,
    kill: Notify,
}

impl Shared {
    fn unique_identifier(&self) -> &str {
        self.mux.unique_identifier()
    }

    fn stderr_tail(&self) -> String {
        self.stderr.lock().map(|t| t.text()).unwrap_or_default()
    }

    fn request_kill(&self, reason: &str) {
        if let Ok(mut r) = self.kill_reason.lock()
            && r.is_none()
        {
            *r = Some(reason.to_owned());
        }
        self.kill.notify_one();
    }
}

/// A running plugin process.
pub(crate) struct PluginProcess {
    shared: Arc<Shared>,
    pid: Option<u32>,
    started: Instant,
}

impl std::fmt::Debug for PluginProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginProcess")
            .field("plugin", &self.shared.unique_identifier())
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

fn wrapper(name: &str) -> Option<&'static Path> {
    static SETPRIV: OnceLock<Option<&'static Path>> = OnceLock::new();
    static PRLIMIT: OnceLock<Option<&'static Path>> = OnceLock::new();
    let cell = if name == "setpriv" { &SETPRIV } else { &PRLIMIT };
    *cell.get_or_init(|| {
        let found = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file());
        match found {
            Some(p) => Some(Box::leak(p.into_boxed_path())),
            None => {
                tracing::warn!(
                    wrapper = name,
                    "util-linux `{name}` is missing: plugins run without {}",
                    if name == "setpriv" {
                        "a parent-death signal"
                    } else {
                        "a memory limit"
                    }
                );
                None
            }
        }
    })
}

impl PluginProcess {
    /// Launches the plugin and waits for its first heartbeat.
    pub(crate) async fn start(
        prepared: Arc<PreparedPlugin>,
        config: &RuntimeConfig,
        backwards: Backwards,
    ) -> Result<Arc<Self>, RuntimeError> {
        let uid = prepared.unique_identifier.clone();
        let fail = |reason: String| RuntimeError::Start {
            unique_identifier: uid.clone(),
            reason,
        };
        let mut argv: Vec<std::ffi::OsString> = sandbox_prefix(&prepared, config).map_err(fail)?;
        let tmp = prepared.dir.join(".tmp");
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| fail(format!("could not create {}: {e}", tmp.display())))?;
        if let Some(setpriv) = wrapper("setpriv") {
            argv.extend([setpriv.into(), "--pdeathsig".into(), "KILL".into(), "--".into()]);
        }
        if prepared.memory > 0
            && let Some(prlimit) = wrapper("prlimit")
        {
            argv.extend([
                prlimit.into(),
                format!("--data={0}:{0}", prepared.memory).into(),
                "--".into(),
            ]);
        }
        argv.extend([
            prepared.python.clone().into(),
            "-m".into(),
            prepared.entrypoint.clone().into(),
        ]);
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(&prepared.dir)
            .env_clear()
            .envs(base_env())
            .envs(config.proxies.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("INSTALL_METHOD", "local")
            .env("TMPDIR", &tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| fail(format!("could not spawn {}: {e}", argv[0].to_string_lossy())))?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(fail("the plugin's pipes could not be opened".into()));
        };
        let identity = PluginIdentity {
            unique_identifier: uid.clone(),
            plugin_id: prepared.plugin_id.clone(),
            storage_quota: prepared.storage_quota,
            tool_permission: prepared.tool_permission,
            permissions: prepared.permissions.clone(),
        };
        let mux = Mux::new(identity, stdin, backwards, config.max_line_bytes, Life::Starting);
        let mut life_rx = mux.subscribe();
        let shared = Arc::new(Shared {
            mux: Arc::clone(&mux),
            stderr: Mutex::new(Tail::new(STDERR_TAIL)),
            kill_reason: Mutex::new(None),
            kill: Notify::new(),
        });
        let stdout_done = Arc::new(Notify::new());
        {
            let (mux, done) = (Arc::clone(&mux), Arc::clone(&stdout_done));
            let mut frames = FrameReader::new(stdout, config.max_line_bytes);
            tokio::spawn(async move {
                mux.read_frames(&mut frames).await;
                done.notify_one();
            });
        }
        tokio::spawn(read_stderr(Arc::clone(&shared), stderr));
        {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let status = tokio::select! {
                    status = child.wait() => status,
                    () = shared.kill.notified() => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                // Let the reader deliver what the plugin wrote before it died.
                let _ = tokio::time::timeout(Duration::from_millis(500), stdout_done.notified()).await;
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                let killed = shared.kill_reason.lock().ok().and_then(|r| r.clone());
                let reason = match killed {
                    Some(why) => format!("plugin {} was stopped: {why}", shared.unique_identifier()),
                    None => {
                        let tail = shared.stderr_tail();
                        format!(
                            "plugin {} exited unexpectedly ({status}){}",
                            shared.unique_identifier(),
                            if tail.is_empty() {
                                String::new()
                            } else {
                                format!("; stderr tail:\n{tail}")
                            }
                        )
                    }
                };
                tracing::info!(plugin = %shared.unique_identifier(), %status, "plugin process ended");
                shared.mux.close(&reason, CloseKind::Runtime).await;
            });
        }
        let process = Arc::new(Self {
            shared: Arc::clone(&shared),
            pid,
            started: Instant::now(),
        });
        tokio::spawn(cancel_watchdog(Arc::downgrade(&shared), config.cancel_grace));
        let ready = tokio::time::timeout(config.start_timeout, life_rx.wait_for(|l| *l != Life::Starting)).await;
        let outcome = match ready {
            Err(_) => {
                shared.request_kill("no heartbeat before the start timeout");
                let tail = shared.stderr_tail();
                Err(fail(format!(
                    "no heartbeat within {} s (PLUGIN_START_TIMEOUT){}",
                    config.start_timeout.as_secs(),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; stderr tail:\n{tail}")
                    }
                )))
            }
            Ok(Err(_)) => Err(fail("the plugin's supervisor ended".into())),
            Ok(Ok(life)) => match &*life {
                Life::Dead(reason) => Err(fail(format!("it exited before its first heartbeat: {reason}"))),
                _ => Ok(()),
            },
        };
        outcome.map(|()| process)
    }

    /// Whether the process is running and ready.
    pub(crate) fn alive(&self) -> bool {
        self.shared.mux.is_ready()
    }

    /// Sessions not yet ended (cancelled ones included).
    pub(crate) fn open_sessions(&self) -> usize {
        self.shared.mux.open_sessions()
    }

    /// Sessions that ended with `end`.
    pub(crate) fn completed(&self) -> u64 {
        self.shared.mux.completed()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// How long it has been running.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Kills the process; open sessions fail with `reason`.
    pub(crate) async fn kill(&self, reason: &str) {
        self.shared.request_kill(reason);
        let mut life = self.shared.mux.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), life.wait_for(|l| matches!(l, Life::Dead(_)))).await;
    }

    /// Opens a session and sends the request.
    pub(crate) async fn open(&self, request: &InvokeRequest) -> Result<Session, RuntimeError> {
        self.shared
            .mux
            .open(request)
            .await
            .map_err(|reason| RuntimeError::NotRunning(self.shared.unique_identifier().to_owned(), reason))
    }
}

/// The launcher and policy that start the command line, or nothing when the sandbox is off.
fn sandbox_prefix(prepared: &PreparedPlugin, config: &RuntimeConfig) -> Result<Vec<std::ffi::OsString>, String> {
    if config.sandbox == SandboxMode::Off {
        return Ok(Vec::new());
    }
    let Some(launcher) = &config.sandbox_launcher else {
        return Err(
            "PLUGIN_SANDBOX is on but the runtime has no sandbox launcher (RuntimeConfig::sandbox_launcher; \
             the `toolplane` binary sets itself); set PLUGIN_SANDBOX=off to run plugins unconfined"
                .to_owned(),
        );
    };
    if !launcher.program.is_file() {
        return Err(format!(
            "the sandbox launcher {} does not exist; reinstall toolplane or set PLUGIN_SANDBOX=off",
            launcher.program.display()
        ));
    }
    if let Some(gaps) = crate::sandbox::host_gaps() {
        if config.sandbox == SandboxMode::Strict {
            return Err(format!(
                "PLUGIN_SANDBOX=strict but this host cannot confine plugins: {gaps}; \
                 use PLUGIN_SANDBOX=on to run them with partial confinement"
            ));
        }
        static WARNED: OnceLock<()> = OnceLock::new();
        WARNED.get_or_init(|| {
            tracing::warn!("plugins run with partial or no confinement: {gaps} (PLUGIN_SANDBOX=strict refuses this)");
        });
    }
    let policy = SandboxPolicy::for_plugin(
        &prepared.dir,
        &prepared.python,
        &config.sandbox_paths,
        config.sandbox == SandboxMode::Strict,
    );
    let mut argv = vec![launcher.program.clone().into_os_string()];
    argv.extend(launcher.leading_args.iter().cloned());
    argv.extend(policy.to_args());
    Ok(argv)
}

async fn cancel_watchdog(shared: std::sync::Weak<Shared>, grace: Duration) {
    let tick = (grace / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let Some(shared) = shared.upgrade() else { return };
        if shared.mux.is_dead() {
            return;
        }
        if shared.mux.stuck_on_cancelled(grace) {
            tracing::warn!(plugin = %shared.unique_identifier(), "killing a plugin that kept working on cancelled sessions");
            shared.request_kill("it kept working on a cancelled session");
            return;
        }
    }
}

async fn read_stderr(shared: Arc<Shared>, mut stderr: tokio::process::ChildStderr) {
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut tail) = shared.stderr.lock() {
            tail.push(&buf[..n]);
        }
        for line in String::from_utf8_lossy(&buf[..n])
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            tracing::debug!(plugin = %shared.unique_identifier(), "stderr: {line}");
        }
    }
}
