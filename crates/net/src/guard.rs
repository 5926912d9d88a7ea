//! The SSRF guard: URL checks, the checking DNS resolver and the redirect policy.
//!
//! Three places see a request's target, and each one checks it:
//! - [`Guard::check_url`] before sending: scheme, host presence and IP-literal hosts (reqwest
//!   connects to IP literals without asking the resolver);
//! - [`GuardedResolver`] when connecting to a host name: it resolves the name itself and hands
//!   reqwest only permitted addresses, so the checked address is the one connected to (no
//!   window for DNS rebinding between check and connect);
//! - [`Guard::redirect_policy`] on every redirect hop: limit, then the same URL check.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use url::{Host, Url};

use crate::config::NetConfig;
use crate::error::{Blocked, GuardError, ResolveFailed, redact};
use crate::ip::{check_ip, embedded_ipv4};

/// The exceptions and limits the guard enforces, shared by client, resolver and policy.
#[derive(Debug)]
pub(crate) struct Guard {
    allowed_networks: Vec<IpNet>,
    /// Normalized: lower case, no trailing dot, no IPv6 brackets.
    allowed_hosts: Vec<String>,
    max_redirects: usize,
}

fn normalize_host(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

impl Guard {
    pub(crate) fn new(config: &NetConfig) -> Guard {
        Guard {
            allowed_networks: config.allowed_networks.clone(),
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .map(|h| normalize_host(h))
                .filter(|h| !h.is_empty())
                .collect(),
            max_redirects: config.max_redirects,
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        if self.allowed_hosts.is_empty() {
            return false;
        }
        let host = normalize_host(host);
        self.allowed_hosts.contains(&host)
    }

    fn network_allowed(&self, ip: IpAddr) -> bool {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(|e| IpAddr::V4(e.ipv4)),
            IpAddr::V4(_) => None,
        };
        self.allowed_networks
            .iter()
            .any(|net| net.contains(&ip) || embedded.is_some_and(|v4| net.contains(&v4)))
    }

    /// Checks one address `host` stands for. `resolved` says whether it came from DNS.
    pub(crate) fn check_addr(&self, host: &str, ip: IpAddr, resolved: bool) -> Result<(), Blocked> {
        let Err(reason) = check_ip(ip) else {
            return Ok(());
        };
        if self.network_allowed(ip) {
            return Ok(());
        }
        tracing::warn!(
            host,
            address = %ip,
            reason = %reason,
            "outbound request blocked by the SSRF guard"
        );
        Err(Blocked {
            host: host.to_owned(),
            address: ip,
            reason,
            resolved,
        })
    }

    /// Checks everything about `url` that can be checked without DNS.
    pub(crate) fn check_url(&self, url: &Url) -> Result<(), GuardError> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(GuardError::UnsupportedScheme {
                url: redact(url),
                scheme: scheme.to_owned(),
            });
        }
        let ip = match url.host() {
            None => {
                return Err(GuardError::InvalidUrl {
                    url: redact(url),
                    reason: "the URL has no host".to_owned(),
                });
            }
            // Checked by the resolver when reqwest connects.
            Some(Host::Domain(_)) => return Ok(()),
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        };
        let host = ip.to_string();
        if self.host_allowed(&host) {
            return Ok(());
        }
        Ok(self.check_addr(&host, ip, false)?)
    }

    /// A redirect policy that enforces the hop limit and re-checks every hop's URL.
    pub(crate) fn redirect_policy(self: &Arc<Self>) -> redirect::Policy {
        let guard = Arc::clone(self);
        redirect::Policy::custom(move |attempt| {
            // `previous` starts with the original URL, so it holds one entry per hop taken.
            let previous = attempt.previous();
            if previous.len() > guard.max_redirects {
                let url = previous.first().map_or_else(|| redact(attempt.url()), redact);
                return attempt.error(GuardError::TooManyRedirects {
                    url,
                    limit: guard.max_redirects,
                });
            }
            match guard.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refusal) => attempt.error(refusal),
            }
        })
    }
}

/// A DNS resolver that drops refused addresses and fails when none are left.
pub(crate) struct GuardedResolver {
    pub(crate) guard: Arc<Guard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_checked(Arc::clone(&self.guard), name.as_str().to_owned()))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn resolve_checked(guard: Arc<Guard>, host: String) -> Result<Addrs, BoxError> {
    let found = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map_err(|err| ResolveFailed {
            host: host.clone(),
            reason: err.to_string(),
        })?;
    let found: Vec<_> = found.collect();
    if guard.host_allowed(&host) {
        return Ok(Box::new(found.into_iter()));
    }

    let mut permitted = Vec::with_capacity(found.len());
    let mut first_refusal = None;
    for addr in found {
        match guard.check_addr(&host, addr.ip(), true) {
            Ok(()) => permitted.push(addr),
            Err(blocked) => {
                first_refusal.get_or_insert(blocked);
            }
        }
    }
    match first_refusal {
        Some(blocked) if permitted.is_empty() => Err(blocked.into()),
        None if permitted.is_empty() => Err(ResolveFailed {
            host,
            reason: "the name has no addresses".to_owned(),
        }
        .into()),
        _ => Ok(Box::new(permitted.into_iter())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(nets: &[&str], hosts: &[&str]) -> Guard {
        Guard::new(&NetConfig {
            allowed_networks: nets.iter().map(|n| n.parse().unwrap()).collect(),
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..NetConfig::default()
        })
    }

    fn check(g: &Guard, url: &str) -> Result<(), GuardError> {
        g.check_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn literal_hosts_are_checked_in_every_spelling() {
        let g = guard(&[], &[]);
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "https://[::ffff:a9fe:a9fe]/latest/meta-data",
            "http://169.254.169.254/",
            "http://0/",
        ] {
            assert!(
                matches!(check(&g, url), Err(GuardError::Blocked(_))),
                "{url} must be blocked"
            );
        }
        assert!(check(&g, "https://93.184.215.14/").is_ok());
        assert!(check(&g, "https://example.com/").is_ok());
    }

    #[test]
    fn only_http_and_https() {
        let g = guard(&[], &[]);
        for url in ["file:///etc/passwd", "ftp://example.com/", "gopher://example.com/"] {
            assert!(
                matches!(check(&g, url), Err(GuardError::UnsupportedScheme { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn exceptions_apply() {
        let g = guard(&["127.0.0.0/8"], &["LocalHost.", "[::1]"]);
        assert!(check(&g, "http://127.0.0.2/").is_ok());
        assert!(check(&g, "http://[::ffff:127.0.0.1]/").is_ok());
        assert!(check(&g, "http://[::1]/").is_ok());
        assert!(g.host_allowed("localhost"));
        assert!(matches!(check(&g, "http://10.0.0.1/"), Err(GuardError::Blocked(_))));
    }
}
