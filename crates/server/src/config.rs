//! Server configuration: environment variables (Dify's names where they exist) over an optional TOML file whose
//! keys are the same variable names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use toolplane_core::Positions;
use toolplane_core::position::DEFAULT_BUILTIN_POSITIONS;

/// A configuration value that could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("cannot read the config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Other(String),
}

/// Configuration sources: the process environment wins over the config file.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: HashMap<String, String>,
}

impl Settings {
    /// The process environment over the TOML file at `file` (if any). File keys are variable names, e.g.
    /// `DATABASE_URL = "postgres://…"`; numbers and booleans are accepted and stringified.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut values = HashMap::new();
        if let Some(path) = file {
            let file_error = |reason: String| ConfigError::File {
                path: path.to_owned(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_error(e.to_string()))?;
            for (key, value) in table {
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(file_error(format!(
                            "{key} must be a string, number or boolean, not {}",
                            other.type_str()
                        )));
                    }
                };
                values.insert(key, text);
            }
        }
        values.extend(std::env::vars());
        Ok(Self { values })
    }

    /// Settings from explicit pairs only (tests, embedding).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            values: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }

    /// A non-empty value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// A value parsed with `FromStr`, or `default` when unset.
    pub fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                name: name.to_owned(),
                value: raw.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// A duration given in (possibly fractional) seconds.
    pub fn seconds(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parse(name, default.as_secs_f64())?;
        Duration::try_from_secs_f64(secs).map_err(|e| ConfigError::Invalid {
            name: name.to_owned(),
            value: secs.to_string(),
            reason: format!("{e}; give a non-negative number of seconds"),
        })
    }

    /// Lookup function for crates that read their own variables.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.get(name).map(str::to_owned)
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `TOOLPLANE_BIND`, default `127.0.0.1:5001`.
    pub bind: SocketAddr,
    /// `TOOLPLANE_DATA_DIR`, default `./data`: SQLite database, local blobs, generated secret key.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`; SQLite in the data folder when unset.
    pub database_url: String,
    /// `SECRET_KEY`; generated once and kept in `<data>/secret_key` when unset.
    pub secret_key: String,
    /// `SERVER_KEY`: the `X-Api-Key` Dify's API server sends to the plugin daemon routes; generated once and kept in
    /// `<data>/server_key` when unset.
    pub server_key: String,
    /// `CONSOLE_API_URL`: the public base URL used in icon links; derived from `bind` when unset.
    pub console_api_url: String,
    /// `TOOLPLANE_MAX_BODY_BYTES`, default 10 MiB.
    pub max_body_bytes: usize,
    /// `TOOLPLANE_REQUEST_TIMEOUT` (s), default 60: time until response headers.
    pub request_timeout: Duration,
    /// `TOOLPLANE_TOOL_INVOKE_TIMEOUT` (s), default 300: one whole invocation, streamed output included.
    pub invoke_timeout: Duration,
    /// `POSITION_TOOL_PINS|INCLUDES|EXCLUDES` with the position file `TOOLPLANE_POSITION_FILE`.
    pub tool_positions: Positions,
    /// `POSITION_PROVIDER_PINS|INCLUDES|EXCLUDES`.
    pub provider_positions: Positions,
    /// `FILES_URL`: base of signed tool-file URLs handed to outside callers; `CONSOLE_API_URL` when unset (Dify's
    /// alias).
    pub files_url: String,
    /// `INTERNAL_FILES_URL`: base of signed tool-file URLs used inside the deployment; `FILES_URL` when unset.
    pub internal_files_url: String,
    /// `FILES_ACCESS_TIMEOUT` (s), default 300: how long a signed tool-file URL stays valid.
    pub files_access_timeout: Duration,
    /// `CONSOLE_WEB_URL`: where the OAuth callback redirects the browser (`{CONSOLE_WEB_URL}/oauth-callback`);
    /// `CONSOLE_API_URL` when unset.
    pub console_web_url: String,
}

impl ServerConfig {
    /// Reads the configuration. Creates the data folder and, when `SECRET_KEY` is unset, a persisted random key.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let bind: SocketAddr = settings.parse("TOOLPLANE_BIND", SocketAddr::from(([127, 0, 0, 1], 5001)))?;
        let data_dir = PathBuf::from(settings.get("TOOLPLANE_DATA_DIR").unwrap_or("data"));
        std::fs::create_dir_all(&data_dir).map_err(|e| ConfigError::Invalid {
            name: "TOOLPLANE_DATA_DIR".into(),
            value: data_dir.display().to_string(),
            reason: format!("cannot create the folder: {e}"),
        })?;
        let database_url = match settings.get("DATABASE_URL") {
            Some(url) => url.to_owned(),
            None => toolplane_store::Store::sqlite_url_in(&data_dir),
        };
        let secret_key = match settings.get("SECRET_KEY") {
            Some(key) => key.to_owned(),
            None => persisted_secret(&data_dir, "secret_key", "SECRET_KEY")?,
        };
        let server_key = match settings.get("SERVER_KEY") {
            Some(key) => key.to_owned(),
            None => persisted_secret(&data_dir, "server_key", "SERVER_KEY")?,
        };
        let console_api_url = settings
            .get("CONSOLE_API_URL")
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{bind}"));
        let order = match settings.get("TOOLPLANE_POSITION_FILE") {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    name: "TOOLPLANE_POSITION_FILE".into(),
                    value: path.to_owned(),
                    reason: e.to_string(),
                })?;
                Positions::parse_position_file(&text)
            }
            None => DEFAULT_BUILTIN_POSITIONS.iter().map(|s| s.to_string()).collect(),
        };
        let trio = |prefix: &str, order: Vec<String>| {
            let get = |suffix: &str| settings.get(&format!("{prefix}_{suffix}")).unwrap_or("").to_owned();
            Positions::new(&get("PINS"), &get("INCLUDES"), &get("EXCLUDES"), order)
        };
        let files_url = settings
            .get("FILES_URL")
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| console_api_url.clone());
        let internal_files_url = settings
            .get("INTERNAL_FILES_URL")
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| files_url.clone());
        let console_web_url = settings
            .get("CONSOLE_WEB_URL")
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| console_api_url.clone());
        Ok(Self {
            files_url,
            internal_files_url,
            files_access_timeout: settings.seconds(
                "FILES_ACCESS_TIMEOUT",
                Duration::from_secs(toolplane_secrets::DEFAULT_FILES_ACCESS_TIMEOUT_SECS),
            )?,
            console_web_url,
            bind,
            data_dir,
            database_url,
            secret_key,
            server_key,
            console_api_url,
            max_body_bytes: settings.parse("TOOLPLANE_MAX_BODY_BYTES", 10 * 1024 * 1024)?,
            request_timeout: settings.seconds("TOOLPLANE_REQUEST_TIMEOUT", Duration::from_secs(60))?,
            invoke_timeout: settings.seconds("TOOLPLANE_TOOL_INVOKE_TIMEOUT", Duration::from_secs(300))?,
            tool_positions: trio("POSITION_TOOL", order),
            provider_positions: trio("POSITION_PROVIDER", Vec::new()),
        })
    }
}

/// Reads `<data>/<file>`, creating it (owner-only permissions) with a random 48-character key on first use.
fn persisted_secret(data_dir: &Path, file: &str, setting: &str) -> Result<String, ConfigError> {
    let path = data_dir.join(file);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let key = existing.trim();
        if !key.is_empty() {
            return Ok(key.to_owned());
        }
    }
    let key = crate::auth::random_token(48);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(&path)?.write_all(key.as_bytes())
    };
    write().map_err(|e| {
        ConfigError::Other(format!(
            "cannot write the generated key to {}: {e}; set {setting} instead",
            path.display()
        ))
    })?;
    Ok(key)
}
