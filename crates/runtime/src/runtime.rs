//! The runtime: which plugins are loaded, lazy start, restart with backoff after crashes, idle stop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use toolplane_plugin::{DecodeLimits, decode};

use crate::backwards::Backwards;
use crate::config::RuntimeConfig;
use crate::env::{Environments, PreparedPlugin};
use crate::error::RuntimeError;
use crate::mux::Session;
use crate::process::PluginProcess;
use crate::protocol::InvokeRequest;

/// The outcome of [`PluginRuntime::install`].
#[derive(Debug, Clone)]
pub struct InstallReport {
    /// `author/name:version@checksum`.
    pub unique_identifier: String,
    /// Notes for the install task.
    pub warnings: Vec<String>,
}

/// What [`PluginRuntime::status`] reports about one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginStatus {
    /// A process is running and ready.
    pub running: bool,
    /// Its pid.
    pub pid: Option<u32>,
    /// Processes started so far.
    pub starts: u32,
    /// Open sessions (cancelled ones still running included).
    pub open_sessions: usize,
}

enum State {
    Stopped,
    /// Crashed; the next start waits until then.
    Backoff(Instant),
    Running(Arc<PluginProcess>),
}

struct Slot {
    prepared: Arc<PreparedPlugin>,
    state: tokio::sync::Mutex<State>,
    crashes: AtomicU32,
    starts: AtomicU32,
    last_used: Mutex<Instant>,
}

impl Slot {
    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn idle_for(&self) -> Duration {
        self.last_used.lock().map(|t| t.elapsed()).unwrap_or_default()
    }
}

struct Inner {
    config: RuntimeConfig,
    environments: Environments,
    backwards: Backwards,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// Runs local plugins. Cheap to clone; the supervisor task ends when the last clone is dropped.
#[derive(Clone)]
pub struct PluginRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("working_path", &self.inner.config.working_path)
            .finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// A runtime with `config`, answering backwards calls through `backwards`. Must be called inside a tokio
    /// runtime (it spawns the supervisor).
    pub fn new(config: RuntimeConfig, mut backwards: Backwards) -> Self {
        if backwards.dify.is_none()
            && let Some(url) = &config.dify_inner_api_url
        {
            let key = config.dify_inner_api_key.as_deref().unwrap_or_default();
            match crate::inner_api::DifyInnerApi::new(url, key, config.max_execution_timeout) {
                Ok(api) => backwards.dify = Some(Arc::new(api)),
                Err(e) => tracing::error!("{e}; backwards calls that need Dify will fail"),
            }
        }
        let inner = Arc::new(Inner {
            environments: Environments::new(config.clone()),
            config,
            backwards,
            slots: Mutex::new(HashMap::new()),
        });
        tokio::spawn(supervise(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Where backwards calls go (remote-debugging plugins answer through the same).
    pub fn backwards(&self) -> &Backwards {
        &self.inner.backwards
    }

    /// The environment builder (e.g. to find `uv`).
    pub fn environments(&self) -> &Environments {
        &self.inner.environments
    }

    /// Prepares the package's environment (reusing a valid one), loads it, and starts it once to prove it runs:
    /// an install fails when the plugin does not send its first heartbeat in time. With an idle timeout the
    /// process then stops by itself when unused.
    pub async fn install(&self, package: &[u8]) -> Result<InstallReport, RuntimeError> {
        let report = self.load(package).await?;
        let slot = self.slot(&report.unique_identifier)?;
        self.running(&slot).await?;
        Ok(report)
    }

    /// Prepares and registers the package without starting it (e.g. after a daemon restart).
    pub async fn load(&self, package: &[u8]) -> Result<InstallReport, RuntimeError> {
        let package = decode(package, &DecodeLimits::default()).map_err(|e| RuntimeError::Package(e.to_string()))?;
        let prepared = self.inner.environments.prepare(&package).await?;
        let uid = prepared.unique_identifier.clone();
        let warnings = prepared.warnings.clone();
        if let Ok(mut slots) = self.inner.slots.lock() {
            slots.entry(uid.clone()).or_insert_with(|| {
                Arc::new(Slot {
                    prepared: Arc::new(prepared),
                    state: tokio::sync::Mutex::new(State::Stopped),
                    crashes: AtomicU32::new(0),
                    starts: AtomicU32::new(0),
                    last_used: Mutex::new(Instant::now()),
                })
            });
        }
        Ok(InstallReport {
            unique_identifier: uid,
            warnings,
        })
    }

    /// Whether the plugin is loaded.
    pub fn is_loaded(&self, unique_identifier: &str) -> bool {
        self.inner
            .slots
            .lock()
            .map(|s| s.contains_key(unique_identifier))
            .unwrap_or(false)
    }

    /// Stops the plugin and forgets it (its working folder stays for a later reinstall).
    pub async fn release(&self, unique_identifier: &str) {
        let slot = self
            .inner
            .slots
            .lock()
            .ok()
            .and_then(|mut s| s.remove(unique_identifier));
        if let Some(slot) = slot {
            let mut state = slot.state.lock().await;
            if let State::Running(process) = std::mem::replace(&mut *state, State::Stopped) {
                process.kill("it was uninstalled").await;
            }
        }
    }

    /// Stops every plugin.
    pub async fn shutdown(&self) {
        let slots: Vec<Arc<Slot>> = self
            .inner
            .slots
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for slot in slots {
            let mut state = slot.state.lock().await;
            if let State::Running(process) = std::mem::replace(&mut *state, State::Stopped) {
                process.kill("the daemon is shutting down").await;
            }
        }
    }

    /// What the runtime knows about one plugin.
    pub fn status(&self, unique_identifier: &str) -> Option<PluginStatus> {
        let slot = self.slot(unique_identifier).ok()?;
        let state = slot.state.try_lock().ok();
        let process = state.as_deref().and_then(|s| match s {
            State::Running(p) => Some(Arc::clone(p)),
            _ => None,
        });
        Some(PluginStatus {
            running: process.as_ref().is_some_and(|p| p.alive()),
            pid: process.as_ref().and_then(|p| p.pid()),
            starts: slot.starts.load(Ordering::Relaxed),
            open_sessions: process.as_ref().map(|p| p.open_sessions()).unwrap_or(0),
        })
    }

    /// Sends a request to the plugin, starting it first when needed (requests wait while it starts, up to the
    /// start timeout plus any crash backoff).
    pub async fn invoke(&self, unique_identifier: &str, request: &InvokeRequest) -> Result<Session, RuntimeError> {
        let slot = self.slot(unique_identifier)?;
        slot.touch();
        let process = self.running(&slot).await?;
        let session = process.open(request).await;
        slot.touch();
        session
    }

    fn slot(&self, unique_identifier: &str) -> Result<Arc<Slot>, RuntimeError> {
        self.inner
            .slots
            .lock()
            .ok()
            .and_then(|s| s.get(unique_identifier).cloned())
            .ok_or_else(|| RuntimeError::NotLoaded(unique_identifier.to_owned()))
    }

    async fn running(&self, slot: &Arc<Slot>) -> Result<Arc<PluginProcess>, RuntimeError> {
        let mut state = slot.state.lock().await;
        if let State::Running(process) = &*state {
            if process.alive() {
                return Ok(Arc::clone(process));
            }
            let process = Arc::clone(process);
            *state = State::Backoff(note_crash(&self.inner.config, slot, &process));
        }
        if let State::Backoff(until) = &*state {
            let wait = until.saturating_duration_since(Instant::now());
            if wait > self.inner.config.start_timeout {
                return Err(RuntimeError::Start {
                    unique_identifier: slot.prepared.unique_identifier.clone(),
                    reason: format!("it crashed repeatedly; next start in {} s", wait.as_secs()),
                });
            }
            tokio::time::sleep(wait).await;
        }
        slot.starts.fetch_add(1, Ordering::Relaxed);
        match PluginProcess::start(
            Arc::clone(&slot.prepared),
            &self.inner.config,
            self.inner.backwards.clone(),
        )
        .await
        {
            Ok(process) => {
                *state = State::Running(Arc::clone(&process));
                slot.touch();
                Ok(process)
            }
            Err(e) => {
                let crashes = slot.crashes.fetch_add(1, Ordering::Relaxed) + 1;
                *state = State::Backoff(Instant::now() + backoff(&self.inner.config, crashes));
                Err(e)
            }
        }
    }
}

fn backoff(config: &RuntimeConfig, crashes: u32) -> Duration {
    let factor = 1u32 << crashes.saturating_sub(1).min(16);
    (config.restart_backoff * factor).min(config.max_restart_backoff)
}

/// Records a dead process; returns when the next start may happen.
fn note_crash(config: &RuntimeConfig, slot: &Slot, process: &PluginProcess) -> Instant {
    // A process that served requests or ran for a while resets the streak.
    let crashes = if process.completed() > 0 || process.uptime() > Duration::from_secs(60) {
        slot.crashes.store(1, Ordering::Relaxed);
        1
    } else {
        slot.crashes.fetch_add(1, Ordering::Relaxed) + 1
    };
    Instant::now() + backoff(config, crashes)
}

async fn supervise(inner: Weak<Inner>) {
    loop {
        let tick = match inner.upgrade() {
            Some(inner) => {
                let idle = inner.config.idle_timeout;
                (if idle.is_zero() {
                    Duration::from_secs(1)
                } else {
                    idle / 4
                })
                .clamp(Duration::from_millis(100), Duration::from_secs(5))
            }
            None => return,
        };
        tokio::time::sleep(tick).await;
        let Some(inner) = inner.upgrade() else { return };
        let slots: Vec<Arc<Slot>> = inner
            .slots
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        let idle = inner.config.idle_timeout;
        for slot in slots {
            let Ok(mut state) = slot.state.try_lock() else { continue };
            match &*state {
                State::Running(process) if !process.alive() => {
                    let process = Arc::clone(process);
                    *state = State::Backoff(note_crash(&inner.config, &slot, &process));
                }
                State::Running(process)
                    if !idle.is_zero() && process.open_sessions() == 0 && slot.idle_for() >= idle =>
                {
                    let process = Arc::clone(process);
                    *state = State::Stopped;
                    drop(state);
                    tracing::info!(plugin = %slot.prepared.unique_identifier, "stopping an idle plugin");
                    process.kill("it was idle (PLUGIN_IDLE_TIMEOUT)").await;
                }
                State::Backoff(until) if idle.is_zero() && Instant::now() >= *until => {
                    // Always-on plugins come back by themselves.
                    slot.starts.fetch_add(1, Ordering::Relaxed);
                    match PluginProcess::start(Arc::clone(&slot.prepared), &inner.config, inner.backwards.clone()).await
                    {
                        Ok(process) => *state = State::Running(process),
                        Err(e) => {
                            let crashes = slot.crashes.fetch_add(1, Ordering::Relaxed) + 1;
                            *state = State::Backoff(Instant::now() + backoff(&inner.config, crashes));
                            tracing::warn!(plugin = %slot.prepared.unique_identifier, error = %e, "restarting a plugin failed");
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
