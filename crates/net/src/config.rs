//! [`NetConfig`]: limits and exceptions for outbound requests, with parsing from the
//! environment variables Dify uses.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// Comma-separated CIDRs or single addresses that are permitted although the SSRF guard would
/// block them, e.g. `127.0.0.0/8,10.1.2.3`.
pub const ENV_ALLOWED_NETWORKS: &str = "SSRF_ALLOWED_NETWORKS";
/// Comma-separated host names that are permitted without any address check.
pub const ENV_ALLOWED_HOSTS: &str = "SSRF_ALLOWED_HOSTS";
/// Connect timeout in seconds (Dify's name).
pub const ENV_CONNECT_TIMEOUT: &str = "HTTP_REQUEST_MAX_CONNECT_TIMEOUT";
/// Per-read idle timeout in seconds (Dify's name).
pub const ENV_READ_TIMEOUT: &str = "HTTP_REQUEST_MAX_READ_TIMEOUT";

/// Limits and SSRF exceptions for [`SafeClient`](crate::SafeClient).
///
/// `Default` gives the safe settings: 10 s connect, 60 s per read, 120 s in total, at most 5
/// redirects, 20 MiB bodies, no exceptions to the SSRF guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Time allowed for resolving the host name and opening the connection (TLS included).
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes from the server, while waiting for the response head and
    /// while reading the body.
    pub read_timeout: Duration,
    /// Upper bound for a whole request, from sending to the last body byte, redirects included.
    /// A single request can shorten it with [`SafeRequestBuilder::timeout`](crate::SafeRequestBuilder::timeout).
    pub total_timeout: Duration,
    /// How many redirects a request may follow; one more is an error.
    pub max_redirects: usize,
    /// Cap applied by [`SafeClient::read_body`](crate::SafeClient::read_body).
    pub max_response_bytes: u64,
    /// Addresses the guard would refuse but the operator permits, e.g. `127.0.0.0/8` for a tool
    /// server on the same machine. An IPv6 form carrying an IPv4 address (such as
    /// `::ffff:127.0.0.1`) is permitted when its IPv4 address is.
    pub allowed_networks: Vec<IpNet>,
    /// Host names (or IP literals as written in URLs) that skip the address checks entirely.
    /// Matched exactly, ignoring ASCII case and a trailing dot.
    pub allowed_hosts: Vec<String>,
    /// `User-Agent` header sent with every request.
    pub user_agent: String,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(120),
            max_redirects: 5,
            max_response_bytes: 20 * 1024 * 1024,
            allowed_networks: Vec::new(),
            allowed_hosts: Vec::new(),
            user_agent: concat!("toolplane/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// An environment variable with a value [`NetConfig::from_env`] cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {variable}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    /// The variable's name.
    pub variable: &'static str,
    /// The offending value (or entry of a list).
    pub value: String,
    /// What is wrong and what is expected instead.
    pub reason: String,
}

impl NetConfig {
    /// Builds a config from [`Default`] plus the process environment.
    ///
    /// Reads [`SSRF_ALLOWED_NETWORKS`](ENV_ALLOWED_NETWORKS),
    /// [`SSRF_ALLOWED_HOSTS`](ENV_ALLOWED_HOSTS),
    /// [`HTTP_REQUEST_MAX_CONNECT_TIMEOUT`](ENV_CONNECT_TIMEOUT) and
    /// [`HTTP_REQUEST_MAX_READ_TIMEOUT`](ENV_READ_TIMEOUT). Unset or empty variables keep the
    /// default. `SSRF_DEFAULT_MAX_RETRIES` is deliberately ignored: this client does not retry.
    pub fn from_env() -> Result<Self, ConfigError> {
        for variable in [
            ENV_ALLOWED_NETWORKS,
            ENV_ALLOWED_HOSTS,
            ENV_CONNECT_TIMEOUT,
            ENV_READ_TIMEOUT,
        ] {
            if let Err(std::env::VarError::NotUnicode(raw)) = std::env::var(variable) {
                return Err(ConfigError {
                    variable,
                    value: raw.to_string_lossy().into_owned(),
                    reason: "the value is not valid UTF-8".to_owned(),
                });
            }
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), but reads variables through `lookup` (handy for tests
    /// and for configuration that arrives as a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = NetConfig::default();
        if let Some(value) = get(ENV_ALLOWED_NETWORKS) {
            config.allowed_networks = parse_networks(ENV_ALLOWED_NETWORKS, &value)?;
        }
        if let Some(value) = get(ENV_ALLOWED_HOSTS) {
            config.allowed_hosts = list_entries(&value).map(str::to_owned).collect();
        }
        if let Some(value) = get(ENV_CONNECT_TIMEOUT) {
            config.connect_timeout = parse_seconds(ENV_CONNECT_TIMEOUT, &value)?;
        }
        if let Some(value) = get(ENV_READ_TIMEOUT) {
            config.read_timeout = parse_seconds(ENV_READ_TIMEOUT, &value)?;
        }
        Ok(config)
    }
}

fn list_entries(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Parses `a.b.c.d/n`, `x::/n` or a bare address (taken as a single-host network).
fn parse_networks(variable: &'static str, value: &str) -> Result<Vec<IpNet>, ConfigError> {
    list_entries(value)
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| ConfigError {
                    variable,
                    value: entry.to_owned(),
                    reason: "expected comma-separated CIDRs or IP addresses, e.g. \
                             `127.0.0.0/8,10.1.2.3,fd00::/8`"
                        .to_owned(),
                })
        })
        .collect()
}

fn parse_seconds(variable: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let error = |reason: &str| ConfigError {
        variable,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let seconds: f64 = value
        .trim()
        .parse()
        .map_err(|_| error("expected a number of seconds, e.g. `10` or `2.5`"))?;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(error("the timeout must be greater than zero seconds"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| error("the timeout is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from_map(pairs: &[(&str, &str)]) -> Result<NetConfig, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        NetConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn empty_environment_gives_defaults() {
        assert_eq!(from_map(&[]).unwrap(), NetConfig::default());
        assert_eq!(from_map(&[(ENV_READ_TIMEOUT, "  ")]).unwrap(), NetConfig::default());
    }

    #[test]
    fn parses_all_variables() {
        let config = from_map(&[
            (ENV_ALLOWED_NETWORKS, " 127.0.0.0/8, 10.1.2.3 ,fd00::/8,,"),
            (ENV_ALLOWED_HOSTS, "tools.internal, Other.Example."),
            (ENV_CONNECT_TIMEOUT, "3"),
            (ENV_READ_TIMEOUT, "2.5"),
            ("SSRF_DEFAULT_MAX_RETRIES", "not even a number"),
        ])
        .unwrap();
        let nets: Vec<String> = config.allowed_networks.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["127.0.0.0/8", "10.1.2.3/32", "fd00::/8"]);
        assert_eq!(config.allowed_hosts, ["tools.internal", "Other.Example."]);
        assert_eq!(config.connect_timeout, Duration::from_secs(3));
        assert_eq!(config.read_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn host_bits_of_a_network_are_truncated() {
        let config = from_map(&[(ENV_ALLOWED_NETWORKS, "10.1.2.3/8")]).unwrap();
        assert_eq!(config.allowed_networks[0].to_string(), "10.0.0.0/8");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = from_map(&[(ENV_ALLOWED_NETWORKS, "127.0.0.0/8,localhost")]).unwrap_err();
        assert_eq!(err.variable, ENV_ALLOWED_NETWORKS);
        assert_eq!(err.value, "localhost");
        assert!(
            err.to_string()
                .starts_with("environment variable SSRF_ALLOWED_NETWORKS=\"localhost\" is invalid: expected")
        );

        let err = from_map(&[(ENV_ALLOWED_NETWORKS, "10.0.0.0/33")]).unwrap_err();
        assert_eq!(err.variable, ENV_ALLOWED_NETWORKS);

        for bad in ["ten", "0", "-1", "NaN", "inf", "1e300"] {
            let err = from_map(&[(ENV_CONNECT_TIMEOUT, bad)]).unwrap_err();
            assert_eq!(err.variable, ENV_CONNECT_TIMEOUT, "{bad}");
            let err = from_map(&[(ENV_READ_TIMEOUT, bad)]).unwrap_err();
            assert_eq!(err.variable, ENV_READ_TIMEOUT, "{bad}");
            assert!(err.to_string().contains("HTTP_REQUEST_MAX_READ_TIMEOUT"));
        }
    }
}
