//! Runtime configuration, by the original daemon's environment variable names where one exists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sandbox::{ExtraPaths, SandboxLauncher, SandboxMode};

/// Default longest stdout line accepted from a plugin (32 MiB; the original stops at 5 MiB and kills the plugin).
pub const DEFAULT_MAX_LINE_BYTES: usize = 32 * 1024 * 1024;

/// Everything the runtime reads from its environment.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `PLUGIN_WORKING_PATH`: one folder per unique identifier, plus the shared `.uv-cache`.
    pub working_path: PathBuf,
    /// `UV_PATH`: the `uv` binary. When unset, `uv` is looked up on `PATH`, then in [`RuntimeConfig::tools_path`],
    /// then installed there from PyPI.
    pub uv_path: Option<PathBuf>,
    /// Where a downloaded `uv` is kept (`<working_path>/.tools` by default).
    pub tools_path: PathBuf,
    /// `PYTHON_INTERPRETER_PATH`: preferred interpreter; others are discovered (PATH, pyenv, /usr/bin).
    pub python_interpreter_path: Option<PathBuf>,
    /// `PYTHON_DISCOVERY` (true): look for interpreters beyond `PYTHON_INTERPRETER_PATH` (pyenv versions,
    /// `/usr/local/bin`, `/usr/bin`); false pins plugins to the configured interpreter.
    pub discover_python: bool,
    /// `PIP_MIRROR_URL`: index URL for uv and pip.
    pub pip_mirror_url: Option<String>,
    /// `PYTHON_ENV_INIT_TIMEOUT` (120 s): an environment step silent for this long is killed.
    pub env_init_timeout: Duration,
    /// `PLUGIN_IDLE_TIMEOUT` (600 s): a plugin without sessions for this long is stopped; zero keeps it running.
    pub idle_timeout: Duration,
    /// `PLUGIN_START_TIMEOUT` (120 s, the original's `MAX_HEARTBEAT_INTERVAL`): first heartbeat deadline.
    pub start_timeout: Duration,
    /// `PLUGIN_MAX_EXECUTION_TIMEOUT` (600 s): the longest a dispatched session may run.
    pub max_execution_timeout: Duration,
    /// `PLUGIN_RUNTIME_MAX_BUFFER_SIZE`: the longest stdout line; a longer one fails its session.
    pub max_line_bytes: usize,
    /// `PLUGIN_CANCEL_GRACE` (5 s): how long a plugin may keep working on cancelled sessions, while it has no other
    /// session, before it is killed and restarted.
    pub cancel_grace: Duration,
    /// First restart delay after a crash; doubles per consecutive crash up to [`RuntimeConfig::max_restart_backoff`].
    pub restart_backoff: Duration,
    /// Longest restart delay.
    pub max_restart_backoff: Duration,
    /// `HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY` given to plugins and uv.
    pub proxies: Vec<(String, String)>,
    /// `DIFY_INNER_API_URL`: Dify's API server, where backwards calls other than storage (and tools and uploads when
    /// the host does not answer them) are forwarded.
    pub dify_inner_api_url: Option<String>,
    /// `DIFY_INNER_API_KEY`: sent as `X-Inner-Api-Key` (Dify's `INNER_API_KEY_FOR_PLUGIN`). A secret: never logged.
    pub dify_inner_api_key: Option<String>,
    /// `PLUGIN_SANDBOX` (`on` from the environment, [`SandboxMode::Off`] in [`RuntimeConfig::new`]): Landlock and
    /// seccomp confinement of plugin processes (see [`crate::sandbox`]).
    pub sandbox: SandboxMode,
    /// The program that confines itself and execs the plugin; required unless `sandbox` is off. The `toolplane`
    /// binary sets itself ([`SandboxLauncher::toolplane`]).
    pub sandbox_launcher: Option<SandboxLauncher>,
    /// `PLUGIN_SANDBOX_READ_PATHS` / `PLUGIN_SANDBOX_WRITE_PATHS` (colon-separated absolute paths): folders plugins
    /// may also read (and execute) or write, e.g. a shared model cache.
    pub sandbox_paths: ExtraPaths,
}

impl RuntimeConfig {
    /// Defaults with everything under `working_path`.
    pub fn new(working_path: impl Into<PathBuf>) -> Self {
        let working_path = working_path.into();
        Self {
            tools_path: working_path.join(".tools"),
            working_path,
            uv_path: None,
            python_interpreter_path: None,
            discover_python: true,
            pip_mirror_url: None,
            env_init_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(600),
            start_timeout: Duration::from_secs(120),
            max_execution_timeout: Duration::from_secs(600),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            cancel_grace: Duration::from_secs(5),
            restart_backoff: Duration::from_millis(500),
            max_restart_backoff: Duration::from_secs(30),
            proxies: Vec::new(),
            dify_inner_api_url: None,
            dify_inner_api_key: None,
            sandbox: SandboxMode::Off,
            sandbox_launcher: None,
            sandbox_paths: ExtraPaths::default(),
        }
    }

    /// Reads the variables through `lookup`; `data_dir` anchors relative defaults (`<data_dir>/cwd`). Values that do
    /// not parse keep their default and are reported in the returned warnings.
    pub fn from_lookup(data_dir: &Path, lookup: impl Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
        let get = |k: &str| lookup(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let working = get("PLUGIN_WORKING_PATH")
            .map(PathBuf::from)
            .map(|p| if p.is_absolute() { p } else { data_dir.join(p) })
            .unwrap_or_else(|| data_dir.join("cwd"));
        let mut config = Self::new(working);
        let mut warnings = Vec::new();
        let mut secs = |name: &str, slot: &mut Duration| {
            if let Some(v) = get(name) {
                match v.parse::<u64>() {
                    Ok(n) => *slot = Duration::from_secs(n),
                    Err(_) => warnings.push(format!("{name}={v} is not a number of seconds; using {slot:?}")),
                }
            }
        };
        secs("PYTHON_ENV_INIT_TIMEOUT", &mut config.env_init_timeout);
        secs("PLUGIN_IDLE_TIMEOUT", &mut config.idle_timeout);
        secs("PLUGIN_START_TIMEOUT", &mut config.start_timeout);
        secs("PLUGIN_MAX_EXECUTION_TIMEOUT", &mut config.max_execution_timeout);
        secs("PLUGIN_CANCEL_GRACE", &mut config.cancel_grace);
        if let Some(v) = get("PLUGIN_RUNTIME_MAX_BUFFER_SIZE") {
            match v.parse::<usize>() {
                Ok(n) if n >= 1024 => config.max_line_bytes = n,
                _ => warnings.push(format!(
                    "PLUGIN_RUNTIME_MAX_BUFFER_SIZE={v} is not a byte count ≥ 1024; using {}",
                    config.max_line_bytes
                )),
            }
        }
        config.uv_path = get("UV_PATH").map(PathBuf::from);
        config.python_interpreter_path = get("PYTHON_INTERPRETER_PATH").map(PathBuf::from);
        if let Some(v) = get("PYTHON_DISCOVERY") {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => config.discover_python = true,
                "false" | "0" | "no" => config.discover_python = false,
                _ => warnings.push(format!("PYTHON_DISCOVERY={v} is not true or false; using true")),
            }
        }
        config.pip_mirror_url = get("PIP_MIRROR_URL");
        config.dify_inner_api_url = get("DIFY_INNER_API_URL");
        config.dify_inner_api_key = get("DIFY_INNER_API_KEY");
        if config.dify_inner_api_url.is_some() && config.dify_inner_api_key.is_none() {
            warnings.push(
                "DIFY_INNER_API_URL is set without DIFY_INNER_API_KEY; Dify will refuse the forwarded calls".to_owned(),
            );
        }
        config.sandbox = SandboxMode::BestEffort;
        if let Some(v) = get("PLUGIN_SANDBOX") {
            match SandboxMode::parse(&v) {
                Some(mode) => config.sandbox = mode,
                None => warnings.push(format!("PLUGIN_SANDBOX={v} is not off, on or strict; using on")),
            }
        }
        let mut paths = |name: &str, slot: &mut Vec<PathBuf>| {
            for part in get(name)
                .unwrap_or_default()
                .split(':')
                .filter(|p| !p.trim().is_empty())
            {
                let path = PathBuf::from(part.trim());
                if path.is_absolute() {
                    slot.push(path);
                } else {
                    warnings.push(format!("{name}: {part} is not an absolute path; ignored"));
                }
            }
        };
        paths("PLUGIN_SANDBOX_READ_PATHS", &mut config.sandbox_paths.read);
        paths("PLUGIN_SANDBOX_WRITE_PATHS", &mut config.sandbox_paths.write);
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"] {
            if let Some(v) = get(name) {
                config.proxies.push((name.to_owned(), v));
            }
        }
        (config, warnings)
    }

    /// The uv cache shared by every plugin.
    pub fn uv_cache(&self) -> PathBuf {
        self.working_path.join(".uv-cache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_inner_api_settings() {
        let vars = [("DIFY_INNER_API_URL", " http://api:5001 "), ("DIFY_INNER_API_KEY", "k")];
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
        let (config, warnings) = RuntimeConfig::from_lookup(Path::new("/data"), lookup);
        assert_eq!(config.dify_inner_api_url.as_deref(), Some("http://api:5001"));
        assert_eq!(config.dify_inner_api_key.as_deref(), Some("k"));
        assert!(warnings.is_empty(), "{warnings:?}");

        let (config, warnings) = RuntimeConfig::from_lookup(Path::new("/data"), |name| {
            (name == "DIFY_INNER_API_URL").then(|| "http://api:5001".to_owned())
        });
        assert_eq!(config.dify_inner_api_key, None);
        assert!(warnings[0].contains("without DIFY_INNER_API_KEY"), "{warnings:?}");
    }

    #[test]
    fn reads_the_sandbox_settings() {
        let (config, warnings) = RuntimeConfig::from_lookup(Path::new("/data"), |_| None);
        assert_eq!(
            config.sandbox,
            SandboxMode::BestEffort,
            "on by default from the environment"
        );
        assert!(warnings.is_empty());
        assert_eq!(RuntimeConfig::new("/w").sandbox, SandboxMode::Off);

        let vars = [
            ("PLUGIN_SANDBOX", "strict"),
            ("PLUGIN_SANDBOX_READ_PATHS", "/opt/models:relative"),
            ("PLUGIN_SANDBOX_WRITE_PATHS", "/srv/cache"),
        ];
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
        let (config, warnings) = RuntimeConfig::from_lookup(Path::new("/data"), lookup);
        assert_eq!(config.sandbox, SandboxMode::Strict);
        assert_eq!(config.sandbox_paths.read, [PathBuf::from("/opt/models")]);
        assert_eq!(config.sandbox_paths.write, [PathBuf::from("/srv/cache")]);
        assert!(warnings[0].contains("relative is not an absolute path"), "{warnings:?}");

        let (config, warnings) = RuntimeConfig::from_lookup(Path::new("/data"), |n| {
            (n == "PLUGIN_SANDBOX").then(|| "sometimes".to_owned())
        });
        assert_eq!(config.sandbox, SandboxMode::BestEffort);
        assert!(warnings[0].contains("PLUGIN_SANDBOX=sometimes"), "{warnings:?}");
    }
}
