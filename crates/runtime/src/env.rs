//! Python environments: one working folder per unique identifier, a `.venv` made with `uv`, a marker of a valid
//! environment that later starts reuse.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::OnceCell;
use toolplane_plugin::PluginPackage;

use crate::config::RuntimeConfig;
use crate::error::EnvError;

/// The marker written once an environment is complete (the original's path).
pub const MARKER: &str = ".venv/dify/plugin.json";
/// How much of a failing step's output is kept for the error message.
const TAIL_BYTES: usize = 4096;

/// A plugin ready to launch.
#[derive(Debug, Clone)]
pub struct PreparedPlugin {
    /// `author/name:version@checksum`.
    pub unique_identifier: String,
    /// `author/name`.
    pub plugin_id: String,
    /// The working folder (cwd of the process).
    pub dir: PathBuf,
    /// `<dir>/.venv/bin/python`.
    pub python: PathBuf,
    /// `meta.runner.entrypoint`.
    pub entrypoint: String,
    /// `resource.memory` in bytes (0 = no limit).
    pub memory: u64,
    /// `resource.permission.storage` size when storage is enabled.
    pub storage_quota: Option<u64>,
    /// `resource.permission.tool.enabled`.
    pub tool_permission: bool,
    /// `resource.permission` as declared (backwards calls other than storage and tools are checked against it).
    pub permissions: toolplane_plugin::Permissions,
    /// Notes for the install task (e.g. a newer Python than requested was used).
    pub warnings: Vec<String>,
}

/// Makes and finds Python environments.
#[derive(Debug)]
pub struct Environments {
    config: RuntimeConfig,
    uv: OnceCell<PathBuf>,
}

impl Environments {
    /// Environments under `config.working_path`.
    pub fn new(config: RuntimeConfig) -> Self {
        Self {
            config,
            uv: OnceCell::new(),
        }
    }

    /// Unpacks `package` into its working folder and builds its environment, unless a valid one is there already.
    pub async fn prepare(&self, package: &PluginPackage) -> Result<PreparedPlugin, EnvError> {
        let manifest = &package.manifest;
        let uid = &package.unique_identifier;
        let dir = self.config.working_path.join(uid.working_dir_name());
        // One preparation per folder at a time, across every runtime in this process.
        let lock = folder_lock(&dir);
        let _guard = lock.lock().await;
        // ... and across processes (serve and daemon sharing PLUGIN_WORKING_PATH, parallel test processes): an
        // advisory lock on a file beside the folder, released when `_file_guard` drops.
        let _file_guard = lock_file(&dir).await?;
        let permissions = manifest.resource.permission.clone().unwrap_or_default();
        let mut prepared = PreparedPlugin {
            unique_identifier: uid.as_str().to_owned(),
            plugin_id: uid.plugin_id().to_owned(),
            python: dir.join(".venv/bin/python"),
            dir: dir.clone(),
            entrypoint: manifest.meta.runner.entrypoint.clone(),
            memory: u64::try_from(manifest.resource.memory).unwrap_or(0),
            storage_quota: permissions.storage.as_ref().filter(|s| s.enabled).map(|s| s.size),
            tool_permission: permissions.tool.as_ref().is_some_and(|t| t.enabled),
            permissions: permissions.clone(),
            warnings: Vec::new(),
        };
        if !valid_entrypoint(&prepared.entrypoint) {
            return Err(EnvError::Invalid(format!(
                "meta.runner.entrypoint `{}` is not a Python module name",
                prepared.entrypoint
            )));
        }
        if dir.join(MARKER).is_file() && prepared.python.is_file() {
            // The notes of the build (e.g. a stand-in Python) still hold for the reused environment.
            if let Ok(text) = tokio::fs::read_to_string(dir.join(MARKER)).await
                && let Ok(marker) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(warnings) = marker.get("warnings").and_then(serde_json::Value::as_array)
            {
                prepared.warnings = warnings
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .collect();
            }
            return Ok(prepared);
        }
        if dir.exists() {
            tokio::fs::remove_dir_all(&dir)
                .await
                .map_err(|e| EnvError::io(&dir, e))?;
        }
        unpack(package, &dir).await?;
        let (interpreter, warning) = find_python(&self.config, &manifest.meta.runner.version)?;
        prepared.warnings.extend(warning);
        let uv = self.uv().await?;
        let venv = dir.join(".venv");
        self.step(
            "creating the virtual environment",
            &dir,
            Command::new(&uv)
                .arg("venv")
                .arg(&venv)
                .arg("--python")
                .arg(&interpreter)
                .arg("--no-python-downloads"),
        )
        .await?;
        let mut install = Command::new(&uv);
        let bundled = dir.join("wheels");
        let project = dir.join("pyproject.toml").is_file()
            && !(self.config.pip_mirror_url.is_some() && dir.join("requirements.txt").is_file());
        if project && dir.join("uv.lock").is_file() && self.config.pip_mirror_url.is_some() && !bundled.is_dir() {
            // `uv sync --frozen` downloads from the URLs recorded in the lock (PyPI's), whatever the index says, so
            // a mirror would be ignored: install the exact locked versions (with their hashes) from the mirror.
            let exported = dir.join(".venv/locked-requirements.txt");
            self.step(
                "exporting uv.lock for PIP_MIRROR_URL",
                &dir,
                Command::new(&uv)
                    .args([
                        "export",
                        "--frozen",
                        "--no-dev",
                        "--no-emit-project",
                        "--format",
                        "requirements-txt",
                        "--output-file",
                    ])
                    .arg(&exported),
            )
            .await?;
            install
                .args(["pip", "install", "-r"])
                .arg(&exported)
                .arg("--python")
                .arg(&prepared.python);
        } else if project {
            install.args(["sync", "--no-dev", "--no-python-downloads"]);
            if dir.join("uv.lock").is_file() {
                install.arg("--frozen");
            }
            install.env("UV_PROJECT_ENVIRONMENT", &venv);
        } else if dir.join("requirements.txt").is_file() {
            install
                .args(["pip", "install", "-r", "requirements.txt", "--python"])
                .arg(&prepared.python);
        } else {
            return Err(EnvError::Invalid(
                "the package has neither requirements.txt nor pyproject.toml; add one that requires dify_plugin".into(),
            ));
        }
        if bundled.is_dir() {
            install
                .arg("--offline")
                .arg("--no-index")
                .arg("--find-links")
                .arg(&bundled);
        } else if let Some(mirror) = &self.config.pip_mirror_url {
            install.arg("--index-url").arg(mirror);
        }
        self.step(
            "installing the plugin's dependencies",
            &dir,
            install.env("VIRTUAL_ENV", &venv),
        )
        .await?;
        self.step(
            "importing dify_plugin",
            &dir,
            Command::new(&prepared.python).args(["-c", "import dify_plugin"]),
        )
        .await?;
        let marker = dir.join(MARKER);
        if let Some(parent) = marker.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| EnvError::io(parent, e))?;
        }
        let stamp = serde_json::json!({"timestamp": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0), "warnings": prepared.warnings});
        tokio::fs::write(&marker, stamp.to_string())
            .await
            .map_err(|e| EnvError::io(&marker, e))?;
        Ok(prepared)
    }

    /// Removes a working folder.
    pub async fn remove(&self, working_dir_name: &str) {
        let dir = self.config.working_path.join(working_dir_name);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a plugin working folder failed");
        }
    }

    /// The `uv` binary: `UV_PATH`, `uv` on `PATH`, a previously downloaded one, else downloaded from PyPI now.
    pub async fn uv(&self) -> Result<PathBuf, EnvError> {
        self.uv
            .get_or_try_init(|| async {
                if let Some(path) = &self.config.uv_path {
                    return if path.is_file() {
                        Ok(path.clone())
                    } else {
                        Err(EnvError::Uv(format!("UV_PATH={} does not exist", path.display())))
                    };
                }
                if let Some(found) = on_path("uv") {
                    return Ok(found);
                }
                let cached = self.config.tools_path.join("uv/uv");
                // Runtimes in one process (tests, serve + daemon) share the tools folder: one download at a time,
                // and whoever waited finds the binary the first one extracted.
                let lock = folder_lock(&self.config.tools_path);
                let _guard = lock.lock().await;
                if cached.is_file() {
                    return Ok(cached);
                }
                self.download_uv(&cached).await?;
                Ok(cached)
            })
            .await
            .cloned()
    }

    async fn download_uv(&self, target: &Path) -> Result<(), EnvError> {
        let (python, _) = find_python(&self.config, "3.8")?;
        // A staging folder of its own: several processes (test runners, serve + daemon) may download at once, and
        // the in-process lock does not stop them from emptying each other's working folder.
        let staging = self
            .config
            .tools_path
            .join(format!("uv-download-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(|e| EnvError::io(&staging, e))?;
        let mut pip = Command::new(&python);
        pip.args(["-m", "pip", "download", "uv", "--no-deps", "--only-binary=:all:", "-d"])
            .arg(&staging);
        if let Some(mirror) = &self.config.pip_mirror_url {
            pip.arg("--index-url").arg(mirror);
        }
        let downloaded = self.step("downloading uv from PyPI", &staging, &mut pip).await;
        if let Err(e) = downloaded {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Err(EnvError::Uv(format!(
                "uv is not installed and could not be downloaded: {e}"
            )));
        }
        let wheel = std::fs::read_dir(&staging)
            .map_err(|e| EnvError::io(&staging, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| EnvError::Uv("pip downloaded no uv wheel".into()))?;
        let target = target.to_owned();
        tokio::task::spawn_blocking(move || extract_uv(&wheel, &target))
            .await
            .map_err(|e| EnvError::Uv(format!("extracting uv panicked: {e}")))??;
        let _ = tokio::fs::remove_dir_all(&staging).await;
        Ok(())
    }

    /// Runs one environment step in `dir` with a clean environment, killing it after `PYTHON_ENV_INIT_TIMEOUT` of
    /// silence; failures carry the tail of its output.
    async fn step(&self, what: &str, dir: &Path, command: &mut Command) -> Result<(), EnvError> {
        command
            .current_dir(dir)
            .env_clear()
            .envs(base_env())
            .envs(self.config.proxies.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("UV_CACHE_DIR", self.config.uv_cache())
            .env("UV_NO_PROGRESS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for name in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "PIP_FIND_LINKS"] {
            if let Ok(v) = std::env::var(name) {
                command.env(name, v);
            }
        }
        let mut child = command.spawn().map_err(|e| EnvError::Step {
            step: what.into(),
            detail: format!("could not start: {e}"),
        })?;
        let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(EnvError::Step {
                step: what.into(),
                detail: "no output pipes".into(),
            });
        };
        let mut tail = Tail::new(TAIL_BYTES);
        let (mut out_buf, mut err_buf) = ([0u8; 4096], [0u8; 4096]);
        let (mut out_open, mut err_open) = (true, true);
        let timeout = self.config.env_init_timeout;
        while out_open || err_open {
            let read = tokio::time::timeout(timeout, async {
                tokio::select! {
                    n = out.read(&mut out_buf), if out_open => (true, n),
                    n = err.read(&mut err_buf), if err_open => (false, n),
                }
            })
            .await;
            match read {
                Err(_) => {
                    let _ = child.kill().await;
                    return Err(EnvError::Step {
                        step: what.into(),
                        detail: format!(
                            "killed after {} s without output (PYTHON_ENV_INIT_TIMEOUT); last output:\n{}",
                            timeout.as_secs(),
                            tail.text()
                        ),
                    });
                }
                Ok((is_out, Ok(0) | Err(_))) => {
                    if is_out {
                        out_open = false
                    } else {
                        err_open = false
                    }
                }
                Ok((true, Ok(n))) => tail.push(&out_buf[..n]),
                Ok((false, Ok(n))) => tail.push(&err_buf[..n]),
            }
        }
        let status = child.wait().await.map_err(|e| EnvError::Step {
            step: what.into(),
            detail: e.to_string(),
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(EnvError::Step {
                step: what.into(),
                detail: format!("{status}; last output:\n{}", tail.text()),
            })
        }
    }
}

fn folder_lock(dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(locks.entry(dir.to_owned()).or_default())
}

/// A bounded tail of bytes.
#[derive(Debug)]
pub(crate) struct Tail {
    bytes: VecDeque<u8>,
    limit: usize,
}

impl Tail {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            bytes: VecDeque::with_capacity(limit),
            limit,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.limit {
            &data[data.len() - self.limit..]
        } else {
            data
        };
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.limit);
        self.bytes.drain(..overflow);
        self.bytes.extend(data);
    }

    pub(crate) fn text(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let mut v = Vec::with_capacity(self.bytes.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).trim().to_owned()
    }
}

/// The environment every child starts from: nothing of the daemon's own but `PATH`, `HOME` and `LANG`.
pub(crate) fn base_env() -> Vec<(String, String)> {
    let mut env = vec![(
        "PATH".to_owned(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
    )];
    for name in ["HOME", "LANG"] {
        if let Ok(v) = std::env::var(name) {
            env.push((name.to_owned(), v));
        }
    }
    env
}

fn valid_entrypoint(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !part.starts_with(|c: char| c.is_ascii_digit())
        })
}

async fn unpack(package: &PluginPackage, dir: &Path) -> Result<(), EnvError> {
    for file in package.files() {
        let relative = Path::new(&file.path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(EnvError::Invalid(format!(
                "package entry `{}` escapes the working folder",
                file.path
            )));
        }
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| EnvError::io(parent, e))?;
        }
        tokio::fs::write(&path, &file.content)
            .await
            .map_err(|e| EnvError::io(&path, e))?;
    }
    // The SDK scans `_assets/` at load and exits when it is missing.
    let assets = dir.join("_assets");
    tokio::fs::create_dir_all(&assets)
        .await
        .map_err(|e| EnvError::io(&assets, e))?;
    Ok(())
}

fn extract_uv(wheel: &Path, target: &Path) -> Result<(), EnvError> {
    let bad = |e: String| EnvError::Uv(format!("the uv wheel {} is unusable: {e}", wheel.display()));
    let file = std::fs::File::open(wheel).map_err(|e| EnvError::io(wheel, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let index = (0..archive.len())
        .find(|&i| {
            archive
                .by_index(i)
                .is_ok_and(|e| e.name().is_ok_and(|n| n.ends_with(".data/scripts/uv")))
        })
        .ok_or_else(|| bad("no .data/scripts/uv inside".into()))?;
    let mut entry = archive.by_index(index).map_err(|e| bad(e.to_string()))?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| EnvError::io(parent, e))?;
    }
    // Unique per extraction; the rename below is atomic, so concurrent extractions each install a whole binary.
    let partial = target.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
    let mut out = std::fs::File::create(&partial).map_err(|e| EnvError::io(&partial, e))?;
    std::io::copy(&mut entry, &mut out).map_err(|e| EnvError::io(&partial, e))?;
    drop(out);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| EnvError::io(&partial, e))?;
    std::fs::rename(&partial, target).map_err(|e| EnvError::io(target, e))?;
    Ok(())
}

/// Takes an exclusive advisory lock on `<dir>.lock`, waiting for any other process that holds it.
async fn lock_file(dir: &Path) -> Result<std::fs::File, EnvError> {
    let mut name = dir.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| EnvError::io(parent, e))?;
    }
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| EnvError::io(&path, e))?;
        file.lock().map_err(|e| EnvError::io(&path, e))?;
        Ok(file)
    })
    .await
    .map_err(|e| EnvError::Invalid(format!("waiting for the environment lock failed: {e}")))?
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// `(major, minor)` of a `3.12`-like version.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

/// The interpreter for `meta.runner.version`: `PYTHON_INTERPRETER_PATH` when its version matches, else a
/// discovered `python3.X` (pyenv versions, `/usr/local/bin`, `/usr/bin`, `PATH`) of that version, else the nearest
/// newer one (with a warning), else `PYTHON_INTERPRETER_PATH` as given (with a warning).
pub fn find_python(config: &RuntimeConfig, wanted: &str) -> Result<(PathBuf, Option<String>), EnvError> {
    let (major, minor) = parse_version(wanted).unwrap_or((3, 12));
    let mut candidates: Vec<((u32, u32), PathBuf)> = Vec::new();
    let version_of = |path: &Path| -> Option<(u32, u32)> {
        let name = path.file_name()?.to_str()?;
        parse_version(name.strip_prefix("python")?)
    };
    if let Some(path) = &config.python_interpreter_path {
        let version = version_of(path).or_else(|| {
            path.parent()
                .and_then(|bin| bin.parent())
                .and_then(|root| root.file_name()?.to_str().and_then(parse_version))
        });
        if let Some(v) = version {
            candidates.push((v, path.clone()));
        } else if path.is_file() {
            return Ok((path.clone(), None));
        }
    }
    // With discovery off, only the configured interpreter above is a candidate.
    let mut roots = Vec::new();
    let mut dirs: &[&str] = &[];
    if config.discover_python {
        dirs = &["/usr/local/bin", "/usr/bin"];
        if let Ok(root) = std::env::var("PYENV_ROOT") {
            roots.push(PathBuf::from(root).join("versions"));
        }
        if let Ok(home) = std::env::var("HOME") {
            roots.push(PathBuf::from(home).join(".pyenv/versions"));
        }
    }
    for root in roots {
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name();
                let Some(v) = name.to_str().and_then(parse_version) else {
                    continue;
                };
                let bin = entry.path().join(format!("bin/python{}.{}", v.0, v.1));
                if bin.is_file() {
                    candidates.push((v, bin));
                }
            }
        }
    }
    for dir in dirs {
        for m in minor..=20 {
            let bin = PathBuf::from(format!("{dir}/python{major}.{m}"));
            if bin.is_file() {
                candidates.push(((major, m), bin));
            }
        }
    }
    candidates.retain(|(v, p)| v.0 == major && p.is_file());
    if let Some((_, path)) = candidates.iter().find(|(v, _)| v.1 == minor) {
        return Ok((path.clone(), None));
    }
    let newer = candidates.iter().filter(|(v, _)| v.1 > minor).min_by_key(|(v, _)| v.1);
    if let Some(((a, b), path)) = newer {
        return Ok((
            path.clone(),
            Some(format!(
                "Python {wanted} was requested by meta.runner.version but is not installed; using Python {a}.{b} ({})",
                path.display()
            )),
        ));
    }
    Err(EnvError::Python(format!(
        "no Python {wanted} or newer found; install one or set PYTHON_INTERPRETER_PATH"
    )))
}

/// How long the runtime waits for a step when nothing is configured; exposed for tests.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::new(4);
        t.push(b"abc");
        t.push(b"defg");
        assert_eq!(t.text(), "defg");
        t.push(b"123456");
        assert_eq!(t.text(), "3456");
    }

    #[test]
    fn entrypoints_are_module_names() {
        assert!(valid_entrypoint("main"));
        assert!(valid_entrypoint("pkg.main"));
        assert!(!valid_entrypoint("-c"));
        assert!(!valid_entrypoint("main;rm"));
        assert!(!valid_entrypoint("1x"));
    }
}
