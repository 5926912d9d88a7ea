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

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{Notify, mpsc, watch};

use crate::backwards::{self, Backwards, Caller};
use crate::config::RuntimeConfig;
use crate::env::{PreparedPlugin, Tail, base_env};
use crate::error::RuntimeError;
use crate::protocol::{self, InvokeRequest, PluginError, PluginEvent, SessionMessage};

const STDERR_TAIL: usize = 2048;

/// One item of a session, as the runtime delivers it.
#[derive(Debug)]
enum SessionItem {
    Chunk(Value),
    Plugin(PluginError),
    Failed(String),
}

/// Why a session did not complete normally.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    /// The plugin reported an error (`{error_type, message, args}`).
    #[error("{}: {}", .0.error_type, .0.message)]
    Plugin(PluginError),
    /// The runtime ended the session: the process crashed, a line was too long, the plugin was stopped.
    #[error("{0}")]
    Runtime(String),
}

struct SessionSlot {
    tx: mpsc::UnboundedSender<SessionItem>,
    caller: Arc<Caller>,
    abandoned_at: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq)]
enum Life {
    Starting,
    Ready,
    Dead(String),
}

struct Shared {
    unique_identifier: String,
    sessions: Mutex<HashMap<String, SessionSlot>>,
    life: watch::Sender<Life>,
    stderr: Mutex<Tail>,
    completed: AtomicU64,
    kill_reason: Mutex<Option<String>>,
    kill: Notify,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    backwards: Backwards,
    max_line: usize,
}

impl Shared {
    fn stderr_tail(&self) -> String {
        self.stderr.lock().map(|t| t.text()).unwrap_or_default()
    }

    fn fail_all(&self, reason: &str) {
        let drained: Vec<SessionSlot> = match self.sessions.lock() {
            Ok(mut s) => s.drain().map(|(_, v)| v).collect(),
            Err(_) => Vec::new(),
        };
        for slot in drained {
            let _ = slot.tx.send(SessionItem::Failed(reason.to_owned()));
        }
    }

    async fn write(&self, line: &[u8]) -> Result<(), String> {
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err("the plugin's stdin is closed".into());
        };
        let result = async {
            pipe.write_all(line).await?;
            pipe.flush().await
        }
        .await;
        result.map_err(|e| format!("writing to the plugin failed: {e}"))
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
    prepared: Arc<PreparedPlugin>,
    pid: Option<u32>,
    started: Instant,
}

impl std::fmt::Debug for PluginProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginProcess")
            .field("plugin", &self.shared.unique_identifier)
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
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
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
        let (life, mut life_rx) = watch::channel(Life::Starting);
        let shared = Arc::new(Shared {
            unique_identifier: uid.clone(),
            sessions: Mutex::new(HashMap::new()),
            life,
            stderr: Mutex::new(Tail::new(STDERR_TAIL)),
            completed: AtomicU64::new(0),
            kill_reason: Mutex::new(None),
            kill: Notify::new(),
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            backwards,
            max_line: config.max_line_bytes,
        });
        let stdout_done = Arc::new(Notify::new());
        tokio::spawn(read_stdout(Arc::clone(&shared), stdout, Arc::clone(&stdout_done)));
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
                shared.stdin.lock().await.take();
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                let killed = shared.kill_reason.lock().ok().and_then(|r| r.clone());
                let reason = match killed {
                    Some(why) => format!("plugin {} was stopped: {why}", shared.unique_identifier),
                    None => {
                        let tail = shared.stderr_tail();
                        format!(
                            "plugin {} exited unexpectedly ({status}){}",
                            shared.unique_identifier,
                            if tail.is_empty() {
                                String::new()
                            } else {
                                format!("; stderr tail:\n{tail}")
                            }
                        )
                    }
                };
                tracing::info!(plugin = %shared.unique_identifier, %status, "plugin process ended");
                shared.life.send_replace(Life::Dead(reason.clone()));
                shared.fail_all(&reason);
            });
        }
        let process = Arc::new(Self {
            shared: Arc::clone(&shared),
            prepared,
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
        matches!(*self.shared.life.borrow(), Life::Ready)
    }

    /// Sessions not yet ended (cancelled ones included).
    pub(crate) fn open_sessions(&self) -> usize {
        self.shared.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Sessions that ended with `end`.
    pub(crate) fn completed(&self) -> u64 {
        self.shared.completed.load(Ordering::Relaxed)
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
        let mut life = self.shared.life.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), life.wait_for(|l| matches!(l, Life::Dead(_)))).await;
    }

    /// Opens a session and sends the request.
    pub(crate) async fn open(&self, request: &InvokeRequest) -> Result<Session, RuntimeError> {
        let session_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let caller = Arc::new(Caller {
            tenant_id: request.tenant_id.clone(),
            user_id: request.user_id.clone(),
            plugin_id: self.prepared.plugin_id.clone(),
            storage_quota: self.prepared.storage_quota,
            tool_permission: self.prepared.tool_permission,
            permissions: self.prepared.permissions.clone(),
            from_model: request.access_type == "model",
        });
        if let Life::Dead(reason) = &*self.shared.life.borrow() {
            return Err(RuntimeError::NotRunning(
                self.prepared.unique_identifier.clone(),
                reason.clone(),
            ));
        }
        if let Ok(mut sessions) = self.shared.sessions.lock() {
            sessions.insert(
                session_id.clone(),
                SessionSlot {
                    tx,
                    caller,
                    abandoned_at: None,
                },
            );
        }
        let line = protocol::request_line(&session_id, request);
        if let Err(e) = self.shared.write(&line).await {
            if let Ok(mut sessions) = self.shared.sessions.lock() {
                sessions.remove(&session_id);
            }
            return Err(RuntimeError::NotRunning(self.prepared.unique_identifier.clone(), e));
        }
        Ok(Session {
            id: session_id,
            rx,
            shared: Arc::clone(&self.shared),
            done: false,
        })
    }
}

/// The answer stream of one request. Dropping it before the end cancels the session: the plugin gets
/// [`RuntimeConfig::cancel_grace`] to finish, and is killed (then restarted on demand) if it is still busy with
/// cancelled work and has nothing else to do.
pub struct Session {
    id: String,
    rx: mpsc::UnboundedReceiver<SessionItem>,
    shared: Arc<Shared>,
    done: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Session {
    /// The session id sent to the plugin.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next chunk; `None` after the end. An error is the last item.
    pub async fn next(&mut self) -> Option<Result<Value, SessionError>> {
        if self.done {
            return None;
        }
        let item = self.rx.recv().await;
        self.take(item)
    }

    /// What [`Session::next`] would return, if the plugin has already sent it: `Poll::Pending` when nothing has
    /// arrived yet. Lets a caller pass on every chunk that is ready in one write.
    pub fn try_next(&mut self) -> Poll<Option<Result<Value, SessionError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.try_recv() {
            Ok(item) => Poll::Ready(self.take(Some(item))),
            Err(mpsc::error::TryRecvError::Empty) => Poll::Pending,
            Err(mpsc::error::TryRecvError::Disconnected) => Poll::Ready(self.take(None)),
        }
    }

    fn take(&mut self, item: Option<SessionItem>) -> Option<Result<Value, SessionError>> {
        match item {
            Some(SessionItem::Chunk(v)) => Some(Ok(v)),
            Some(SessionItem::Plugin(e)) => {
                // The plugin follows an error with `end`; nothing more will come.
                self.done = true;
                Some(Err(SessionError::Plugin(e)))
            }
            Some(SessionItem::Failed(reason)) => {
                self.done = true;
                Some(Err(SessionError::Runtime(reason)))
            }
            None => {
                self.done = true;
                None
            }
        }
    }

    /// Every chunk until the end, or the first error.
    pub async fn collect(mut self) -> Result<Vec<Value>, SessionError> {
        let mut out = Vec::new();
        while let Some(item) = self.next().await {
            out.push(item?);
        }
        Ok(out)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(mut sessions) = self.shared.sessions.lock()
            && let Some(slot) = sessions.get_mut(&self.id)
        {
            slot.abandoned_at.get_or_insert_with(Instant::now);
        }
    }
}

async fn cancel_watchdog(shared: std::sync::Weak<Shared>, grace: Duration) {
    let tick = (grace / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let Some(shared) = shared.upgrade() else { return };
        if matches!(*shared.life.borrow(), Life::Dead(_)) {
            return;
        }
        let stale = match shared.sessions.lock() {
            Ok(sessions) => {
                let busy = sessions.values().any(|s| s.abandoned_at.is_none());
                !busy
                    && sessions
                        .values()
                        .any(|s| s.abandoned_at.is_some_and(|t| t.elapsed() >= grace))
            }
            Err(_) => false,
        };
        if stale {
            tracing::warn!(plugin = %shared.unique_identifier, "killing a plugin that kept working on cancelled sessions");
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
            tracing::debug!(plugin = %shared.unique_identifier, "stderr: {line}");
        }
    }
}

async fn read_stdout(shared: Arc<Shared>, stdout: tokio::process::ChildStdout, done: Arc<Notify>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line: Vec<u8> = Vec::new();
    // Set while discarding an over-long line: its first bytes, to find its session.
    let mut overflow: Option<Vec<u8>> = None;
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let (chunk, consumed, complete) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        match &mut overflow {
            Some(_) => {}
            None if line.len() + chunk.len() > shared.max_line => {
                let mut prefix = std::mem::take(&mut line);
                prefix.extend_from_slice(&chunk[..chunk.len().min(512)]);
                prefix.truncate(512);
                overflow = Some(prefix);
            }
            None => line.extend_from_slice(chunk),
        }
        reader.consume(consumed);
        if complete {
            match overflow.take() {
                Some(prefix) => too_long(&shared, &prefix),
                None => handle_line(&shared, &line),
            }
            line.clear();
        }
    }
    done.notify_one();
}

fn too_long(shared: &Arc<Shared>, prefix: &[u8]) {
    let session = protocol::sniff_session_id(prefix);
    tracing::warn!(plugin = %shared.unique_identifier, session = ?session, limit = shared.max_line, "plugin wrote an over-long line");
    let Some(id) = session else { return };
    let slot = shared.sessions.lock().ok().and_then(|mut s| s.remove(&id));
    if let Some(slot) = slot {
        let _ = slot.tx.send(SessionItem::Failed(format!(
            "plugin {} sent a message longer than {} bytes (PLUGIN_RUNTIME_MAX_BUFFER_SIZE); the session was ended \
             and the plugin kept running",
            shared.unique_identifier, shared.max_line
        )));
    }
}

fn handle_line(shared: &Arc<Shared>, line: &[u8]) {
    let line = line.trim_ascii();
    if line.is_empty() {
        return;
    }
    match protocol::parse_line(line) {
        PluginEvent::Heartbeat => {
            if *shared.life.borrow() == Life::Starting {
                shared.life.send_replace(Life::Ready);
            }
        }
        PluginEvent::Log { level, message } => match level.as_str() {
            "ERROR" | "CRITICAL" => tracing::error!(plugin = %shared.unique_identifier, "{message}"),
            "WARNING" | "WARN" => tracing::warn!(plugin = %shared.unique_identifier, "{message}"),
            "DEBUG" => tracing::debug!(plugin = %shared.unique_identifier, "{message}"),
            _ => tracing::info!(plugin = %shared.unique_identifier, "{message}"),
        },
        PluginEvent::Error(text) => tracing::warn!(plugin = %shared.unique_identifier, "plugin error: {text}"),
        PluginEvent::Other => {}
        PluginEvent::Session { session_id, message } => session_message(shared, session_id, message),
    }
}

/// Resolves once `session_id` has ended or its caller has gone.
async fn session_gone(shared: &Shared, session_id: &str) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let live = shared
            .sessions
            .lock()
            .is_ok_and(|sessions| sessions.get(session_id).is_some_and(|slot| slot.abandoned_at.is_none()));
        if !live {
            return;
        }
    }
}

fn session_message(shared: &Arc<Shared>, session_id: String, message: SessionMessage) {
    let Ok(mut sessions) = shared.sessions.lock() else {
        return;
    };
    match message {
        SessionMessage::End => {
            if sessions.remove(&session_id).is_some() {
                shared.completed.fetch_add(1, Ordering::Relaxed);
            }
        }
        SessionMessage::Stream(v) => {
            if let Some(slot) = sessions.get(&session_id) {
                let _ = slot.tx.send(SessionItem::Chunk(v));
            }
        }
        SessionMessage::Error(e) => {
            if let Some(slot) = sessions.get(&session_id) {
                let _ = slot.tx.send(SessionItem::Plugin(e));
            }
        }
        SessionMessage::Invoke {
            kind,
            backwards_request_id,
            request,
        } => {
            let caller = sessions.get(&session_id).map(|s| Arc::clone(&s.caller));
            drop(sessions);
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let (tx, mut rx) = mpsc::unbounded_channel::<backwards::Reply>();
                let writer = {
                    let shared = Arc::clone(&shared);
                    let (session_id, id) = (session_id.clone(), backwards_request_id.clone());
                    tokio::spawn(async move {
                        while let Some((event, message, data)) = rx.recv().await {
                            let line = protocol::backwards_line(&session_id, &id, event, &message, data);
                            if shared.write(&line).await.is_err() {
                                return;
                            }
                        }
                        let end = protocol::backwards_line(&session_id, &id, "end", "", Value::Null);
                        let _ = shared.write(&end).await;
                    })
                };
                match caller {
                    Some(caller) => {
                        let mut send = |reply: backwards::Reply| {
                            let _ = tx.send(reply);
                        };
                        // A call forwarded elsewhere (Dify, another tool) stops when its session ends or is
                        // abandoned: dropping it closes the upstream request.
                        let cancelled = tokio::select! {
                            () = backwards::answer(&shared.backwards, &caller, &kind, request, &mut send) => false,
                            () = session_gone(&shared, &session_id) => true,
                        };
                        if cancelled {
                            let _ = tx.send(("error", "the session was cancelled".into(), Value::Null));
                        }
                    }
                    None => {
                        let _ = tx.send(("error", "the session is over".into(), Value::Null));
                    }
                }
                drop(tx);
                let _ = writer.await;
            });
        }
    }
}
