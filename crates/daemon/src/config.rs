//! Configuration by the original's environment variable names (reference §9).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toolplane_plugin::{DEFAULT_MAX_PACKAGE_SIZE, VerifierConfig};
use toolplane_store::BlobConfig;

use crate::error::ConfigError;

/// The SQLite file used inside the data folder when no plugin database URL is configured.
pub const DEFAULT_PLUGIN_DB_FILE: &str = "plugin.db";
/// `MAX_BUNDLE_PACKAGE_SIZE` default (600 MiB).
pub const DEFAULT_MAX_BUNDLE_SIZE: u64 = 629_145_600;

/// Folder names inside the blob store, with the original's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoragePaths {
    /// `PLUGIN_PACKAGE_CACHE_PATH` (`plugin_packages`): uploaded packages, by unique identifier.
    pub packages: String,
    /// `PLUGIN_INSTALLED_PATH` (`plugin`): packages that are installed somewhere, by unique identifier.
    pub installed: String,
    /// `PLUGIN_MEDIA_CACHE_PATH` (`assets`): `_assets` files under content-derived ids.
    pub media: String,
    /// `PERSISTENCE_STORAGE_PATH` (`persistence`): plugin key-value storage (used by the runtime).
    pub persistence: String,
}

impl Default for StoragePaths {
    fn default() -> Self {
        Self {
            packages: "plugin_packages".into(),
            installed: "plugin".into(),
            media: "assets".into(),
            persistence: "persistence".into(),
        }
    }
}

/// Remote debugging (`PLUGIN_REMOTE_INSTALLING_*`): the TCP listener plugins in `INSTALL_METHOD=remote` mode connect
/// to, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDebugConfig {
    /// `PLUGIN_REMOTE_INSTALLING_ENABLED` (true): the listener and `POST /plugin/{tenant}/debugging/key`.
    pub enabled: bool,
    /// `PLUGIN_REMOTE_INSTALLING_HOST` / `_PORT` (127.0.0.1:5003). Loopback by default: a debugging plugin runs code
    /// on the developer's machine and only needs a key to register tools in a workspace, so the port is exposed to
    /// other machines only when asked (`0.0.0.0`, as Dify's docker compose file does).
    pub listen: SocketAddr,
    /// `PLUGIN_REMOTE_INSTALLING_MAX_CONN` (256): open debugging connections, all tenants together.
    pub max_conn: usize,
    /// `PLUGIN_REMOTE_INSTALLING_MAX_SINGLE_TENANT_CONN` (5): open debugging connections of one tenant.
    pub max_single_tenant_conn: usize,
    /// `PLUGIN_REMOTE_INSTALLING_HEARTBEAT_TIMEOUT` (60 s): a registered plugin silent for this long is disconnected.
    pub heartbeat_timeout: Duration,
    /// The handshake must arrive this soon after connecting (10 s, as the original).
    pub handshake_timeout: Duration,
}

impl Default for RemoteDebugConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 5003)),
            max_conn: 256,
            max_single_tenant_conn: 5,
            heartbeat_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything the daemon reads from its environment.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// `SERVER_HOST` / `SERVER_PORT` (0.0.0.0:5002).
    pub listen: SocketAddr,
    /// `SERVER_KEY` (alias `PLUGIN_DAEMON_KEY`): the `X-Api-Key` every plugin route requires.
    pub server_key: String,
    /// `PLUGIN_DB_URL`, else a URL built from the original's `DB_*` variables when `DB_HOST` is set, else
    /// `sqlite://<data_dir>/plugin.db`.
    pub db_url: String,
    /// Where `PLUGIN_STORAGE_LOCAL_ROOT` (default `<data_dir>/storage`) points, for a standalone daemon's local
    /// blob store; see [`DaemonConfig::local_blob_config`].
    pub storage_root: PathBuf,
    /// Bucket folders inside the blob store.
    pub paths: StoragePaths,
    /// `MAX_PLUGIN_PACKAGE_SIZE` (52428800): upload size and total uncompressed size.
    pub max_plugin_package_size: u64,
    /// `MAX_BUNDLE_PACKAGE_SIZE` (629145600).
    pub max_bundle_package_size: u64,
    /// `FORCE_VERIFYING_SIGNATURE`, `THIRD_PARTY_SIGNATURE_VERIFICATION_*`, `ENFORCE_LANGGENIUS_PLUGIN_SIGNATURES`.
    pub verifier: VerifierConfig,
    /// `PLATFORM` (`local`), reported by `/health/check`.
    pub platform: String,
    /// `PLUGIN_ENDPOINT_ENABLED` (true): whether `/e/{hook_id}/…` serves plugin endpoints.
    pub endpoint_enabled: bool,
    /// `ENDPOINT_URL_TEMPLATE` (unset): when set (e.g. `https://dify.example.com/e/{hook_id}`), endpoint listings
    /// carry `url` rendered from it; otherwise Dify renders its own `ENDPOINT_URL_TEMPLATE`.
    pub endpoint_url_template: Option<String>,
    /// Remote debugging.
    pub remote: RemoteDebugConfig,
}

impl DaemonConfig {
    /// Reads the configuration through `lookup` (e.g. `|k| std::env::var(k).ok()`); relative defaults are placed in
    /// `data_dir`.
    pub fn from_lookup(data_dir: &Path, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| lookup(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let host = get("SERVER_HOST").unwrap_or_else(|| "0.0.0.0".into());
        let port = match get("SERVER_PORT") {
            None => 5002,
            Some(v) => v.parse::<u16>().map_err(|_| ConfigError::Invalid {
                variable: "SERVER_PORT",
                value: v,
                hint: "expected a port number such as 5002",
            })?,
        };
        let listen: SocketAddr = format!("{host}:{port}").parse().map_err(|_| ConfigError::Invalid {
            variable: "SERVER_HOST",
            value: host.clone(),
            hint: "expected an IP address such as 0.0.0.0",
        })?;
        let server_key = get("SERVER_KEY")
            .or_else(|| get("PLUGIN_DAEMON_KEY"))
            .ok_or(ConfigError::Missing {
                variable: "SERVER_KEY",
                hint: "set it to the value Dify sends as PLUGIN_DAEMON_KEY",
            })?;
        let db_url = match get("PLUGIN_DB_URL") {
            Some(url) => url,
            None => match get("DB_HOST") {
                Some(host) => postgres_url_from_parts(&host, &get)?,
                None => format!("sqlite://{}?mode=rwc", data_dir.join(DEFAULT_PLUGIN_DB_FILE).display()),
            },
        };
        let size = |variable: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(variable) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or(ConfigError::Invalid {
                    variable,
                    value: v,
                    hint: "expected a positive number of bytes",
                }),
            }
        };
        let defaults = StoragePaths::default();
        let path = |variable: &str, default: String| -> String {
            get(variable)
                .map(|v| v.trim_matches('/').to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or(default)
        };
        let remote = remote_debug_config(&get)?;
        let storage_root = get("PLUGIN_STORAGE_LOCAL_ROOT")
            .map(PathBuf::from)
            .map(|p| if p.is_absolute() { p } else { data_dir.join(p) })
            .unwrap_or_else(|| data_dir.join("storage"));
        Ok(Self {
            listen,
            server_key,
            db_url,
            storage_root,
            paths: StoragePaths {
                packages: path("PLUGIN_PACKAGE_CACHE_PATH", defaults.packages),
                installed: path("PLUGIN_INSTALLED_PATH", defaults.installed),
                media: path("PLUGIN_MEDIA_CACHE_PATH", defaults.media),
                persistence: path("PERSISTENCE_STORAGE_PATH", defaults.persistence),
            },
            max_plugin_package_size: size("MAX_PLUGIN_PACKAGE_SIZE", DEFAULT_MAX_PACKAGE_SIZE)?,
            max_bundle_package_size: size("MAX_BUNDLE_PACKAGE_SIZE", DEFAULT_MAX_BUNDLE_SIZE)?,
            verifier: VerifierConfig::from_lookup(|k| lookup(k))?,
            platform: get("PLATFORM").unwrap_or_else(|| "local".into()),
            endpoint_enabled: match get("PLUGIN_ENDPOINT_ENABLED") {
                None => true,
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    "true" | "1" | "t" | "yes" => true,
                    "false" | "0" | "f" | "no" => false,
                    _ => {
                        return Err(ConfigError::Invalid {
                            variable: "PLUGIN_ENDPOINT_ENABLED",
                            value: v,
                            hint: "expected true or false",
                        });
                    }
                },
            },
            endpoint_url_template: get("ENDPOINT_URL_TEMPLATE"),
            remote,
        })
    }

    /// A configuration for tests and embedding: the given key and database URL, every other value at its default.
    pub fn new(server_key: impl Into<String>, db_url: impl Into<String>, storage_root: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5002)),
            server_key: server_key.into(),
            db_url: db_url.into(),
            storage_root: storage_root.into(),
            paths: StoragePaths::default(),
            max_plugin_package_size: DEFAULT_MAX_PACKAGE_SIZE,
            max_bundle_package_size: DEFAULT_MAX_BUNDLE_SIZE,
            verifier: VerifierConfig::default(),
            platform: "local".into(),
            endpoint_enabled: true,
            endpoint_url_template: None,
            remote: RemoteDebugConfig::default(),
        }
    }

    /// A local-folder blob store at [`DaemonConfig::storage_root`], for a standalone daemon (the original's
    /// `PLUGIN_STORAGE_TYPE=local`). An embedding server passes its own [`toolplane_store::BlobStore`] instead.
    pub fn local_blob_config(&self) -> BlobConfig {
        BlobConfig::Local {
            root: self.storage_root.clone(),
        }
    }
}

fn remote_debug_config(get: &impl Fn(&str) -> Option<String>) -> Result<RemoteDebugConfig, ConfigError> {
    let mut remote = RemoteDebugConfig::default();
    if let Some(v) = get("PLUGIN_REMOTE_INSTALLING_ENABLED") {
        remote.enabled = match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                return Err(ConfigError::Invalid {
                    variable: "PLUGIN_REMOTE_INSTALLING_ENABLED",
                    value: v,
                    hint: "expected true or false",
                });
            }
        };
    }
    let host = get("PLUGIN_REMOTE_INSTALLING_HOST").unwrap_or_else(|| "127.0.0.1".into());
    let port = match get("PLUGIN_REMOTE_INSTALLING_PORT") {
        None => 5003,
        Some(v) => v.parse::<u16>().map_err(|_| ConfigError::Invalid {
            variable: "PLUGIN_REMOTE_INSTALLING_PORT",
            value: v,
            hint: "expected a port number such as 5003",
        })?,
    };
    remote.listen = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .map_err(|_| ConfigError::Invalid {
            variable: "PLUGIN_REMOTE_INSTALLING_HOST",
            value: host.clone(),
            hint: "expected an IP address such as 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)",
        })?;
    let count = |variable: &'static str, slot: &mut usize| -> Result<(), ConfigError> {
        if let Some(v) = get(variable) {
            *slot = v.parse::<usize>().ok().filter(|n| *n > 0).ok_or(ConfigError::Invalid {
                variable,
                value: v,
                hint: "expected a positive number of connections",
            })?;
        }
        Ok(())
    };
    count("PLUGIN_REMOTE_INSTALLING_MAX_CONN", &mut remote.max_conn)?;
    count(
        "PLUGIN_REMOTE_INSTALLING_MAX_SINGLE_TENANT_CONN",
        &mut remote.max_single_tenant_conn,
    )?;
    if let Some(v) = get("PLUGIN_REMOTE_INSTALLING_HEARTBEAT_TIMEOUT") {
        remote.heartbeat_timeout = v
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Duration::from_secs)
            .ok_or(ConfigError::Invalid {
                variable: "PLUGIN_REMOTE_INSTALLING_HEARTBEAT_TIMEOUT",
                value: v,
                hint: "expected a positive number of seconds",
            })?;
    }
    Ok(remote)
}

/// `postgres://user:password@host:port/database?sslmode=...` from the original's `DB_*` variables.
fn postgres_url_from_parts(host: &str, get: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let db_type = get("DB_TYPE").unwrap_or_else(|| "postgresql".into());
    if db_type != "postgresql" && db_type != "pgbouncer" {
        return Err(ConfigError::Invalid {
            variable: "DB_TYPE",
            value: db_type,
            hint: "toolplane's plugin database supports postgresql (or set PLUGIN_DB_URL to a sqlite:// URL)",
        });
    }
    let user = get("DB_USERNAME").unwrap_or_else(|| "postgres".into());
    let password = get("DB_PASSWORD")
        .map(|p| format!(":{}", percent_encode(&p)))
        .unwrap_or_default();
    let port = get("DB_PORT").unwrap_or_else(|| "5432".into());
    let database = get("DB_DATABASE").unwrap_or_else(|| "dify_plugin".into());
    let ssl = get("DB_SSL_MODE").unwrap_or_else(|| "disable".into());
    Ok(format!(
        "postgres://{}{password}@{host}:{port}/{database}?sslmode={ssl}",
        percent_encode(&user)
    ))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let dir = Path::new("/data");
        let err = DaemonConfig::from_lookup(dir, |_| None).unwrap_err();
        assert!(err.to_string().contains("SERVER_KEY"), "{err}");

        let c = DaemonConfig::from_lookup(dir, |k| (k == "SERVER_KEY").then(|| "k".into())).unwrap();
        assert_eq!(c.listen.port(), 5002);
        assert_eq!(c.db_url, "sqlite:///data/plugin.db?mode=rwc");
        assert_eq!(c.paths, StoragePaths::default());
        assert_eq!(c.max_plugin_package_size, 52_428_800);
        assert!(c.verifier.force_verifying_signature);
        assert_eq!(c.storage_root, PathBuf::from("/data/storage"));
        assert_eq!(c.remote, RemoteDebugConfig::default());
        assert_eq!(c.remote.listen.to_string(), "127.0.0.1:5003");

        let c = DaemonConfig::from_lookup(dir, |k| match k {
            "PLUGIN_DAEMON_KEY" => Some("alias".into()),
            "DB_HOST" => Some("db".into()),
            "DB_PASSWORD" => Some("p@ss".into()),
            "PLUGIN_INSTALLED_PATH" => Some("/inst/".into()),
            "MAX_PLUGIN_PACKAGE_SIZE" => Some("1024".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.server_key, "alias");
        assert_eq!(
            c.db_url,
            "postgres://postgres:p%40ss@db:5432/dify_plugin?sslmode=disable"
        );
        assert_eq!(c.paths.installed, "inst");
        assert_eq!(c.max_plugin_package_size, 1024);

        let err = DaemonConfig::from_lookup(dir, |k| match k {
            "SERVER_KEY" => Some("k".into()),
            "MAX_PLUGIN_PACKAGE_SIZE" => Some("lots".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("MAX_PLUGIN_PACKAGE_SIZE"), "{err}");

        let c = DaemonConfig::from_lookup(dir, |k| match k {
            "SERVER_KEY" => Some("k".into()),
            "PLUGIN_REMOTE_INSTALLING_ENABLED" => Some("false".into()),
            "PLUGIN_REMOTE_INSTALLING_HOST" => Some("0.0.0.0".into()),
            "PLUGIN_REMOTE_INSTALLING_PORT" => Some("6003".into()),
            "PLUGIN_REMOTE_INSTALLING_MAX_CONN" => Some("10".into()),
            "PLUGIN_REMOTE_INSTALLING_MAX_SINGLE_TENANT_CONN" => Some("2".into()),
            "PLUGIN_REMOTE_INSTALLING_HEARTBEAT_TIMEOUT" => Some("5".into()),
            _ => None,
        })
        .unwrap();
        assert!(!c.remote.enabled);
        assert_eq!(c.remote.listen.to_string(), "0.0.0.0:6003");
        assert_eq!((c.remote.max_conn, c.remote.max_single_tenant_conn), (10, 2));
        assert_eq!(c.remote.heartbeat_timeout, Duration::from_secs(5));
        let err = DaemonConfig::from_lookup(dir, |k| match k {
            "SERVER_KEY" => Some("k".into()),
            "PLUGIN_REMOTE_INSTALLING_MAX_SINGLE_TENANT_CONN" => Some("0".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("MAX_SINGLE_TENANT_CONN"), "{err}");
    }
}
