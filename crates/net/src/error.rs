//! [`NetError`] and the structured SSRF refusal [`Blocked`].

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;

use url::Url;

use crate::config::ENV_ALLOWED_NETWORKS;
use crate::ip::{BlockKind, BlockReason};

/// The SSRF guard refused to let a request reach an address.
///
/// Produced for IP-literal URLs before anything is sent, for redirect hops before they are
/// followed, and by the resolver for host names before a connection is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The host as written in the URL, e.g. `localhost` or `127.0.0.1`.
    pub host: String,
    /// The refused address.
    pub address: IpAddr,
    /// Why the address is refused.
    pub reason: BlockReason,
    /// `true` when `address` came from resolving the host name, `false` for an IP literal.
    pub resolved: bool,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request to {:?} blocked: ", self.host)?;
        if self.resolved {
            write!(f, "it resolves to {}, {}", self.address, self.reason)?;
        } else {
            write!(f, "{} is {}", self.address, self.reason)?;
        }
        if self.reason.kind == BlockKind::CloudMetadata {
            f.write_str(" (it hands out the machine's cloud credentials)")?;
        }
        write!(
            f,
            "; add it to {ENV_ALLOWED_NETWORKS} to allow it (or the host to SSRF_ALLOWED_HOSTS)"
        )
    }
}

impl StdError for Blocked {}

/// Where in the exchange a timeout struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutPhase {
    /// Resolving the host or opening the connection.
    Connect,
    /// Sending the request or waiting for the response head.
    Response,
    /// Reading the response body.
    Body,
}

impl TimeoutPhase {
    fn hint(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => {
                "the server did not accept the connection in time \
                 (raise HTTP_REQUEST_MAX_CONNECT_TIMEOUT if it is just slow)"
            }
            TimeoutPhase::Response | TimeoutPhase::Body => {
                "the server sent nothing for longer than the read timeout \
                 (HTTP_REQUEST_MAX_READ_TIMEOUT) or the request ran past its total time limit"
            }
        }
    }
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connecting",
            TimeoutPhase::Response => "waiting for the response",
            TimeoutPhase::Body => "reading the response body",
        })
    }
}

/// Everything that can go wrong with an outbound request.
///
/// URLs inside errors are redacted: user info, query string and fragment are removed, because
/// tools commonly carry API keys there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The SSRF guard refused the target address.
    #[error(transparent)]
    Blocked(#[from] Blocked),
    /// The URL's scheme is not `http` or `https`.
    #[error("request to {url} refused: only http and https URLs are allowed, not {scheme:?}")]
    UnsupportedScheme {
        /// The redacted URL.
        url: String,
        /// The refused scheme.
        scheme: String,
    },
    /// The URL cannot be used for a request.
    #[error("invalid request URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL (redacted when it parsed, as given otherwise).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The redirect chain is longer than [`NetConfig::max_redirects`](crate::NetConfig::max_redirects).
    #[error(
        "request to {url} was redirected more than {limit} times; the chain is probably a loop \
         (raise max_redirects if it is not)"
    )]
    TooManyRedirects {
        /// The redacted URL the chain started from.
        url: String,
        /// The configured limit.
        limit: usize,
    },
    /// A connect, read or total timeout expired.
    #[error("request to {url} timed out while {phase}: {}", .phase.hint())]
    Timeout {
        /// The redacted URL.
        url: String,
        /// Where the timeout struck.
        phase: TimeoutPhase,
    },
    /// The response body exceeds the size cap.
    #[error(
        "response from {url} is larger than the limit of {limit} bytes; \
         raise max_response_bytes if such responses are expected"
    )]
    ResponseTooLarge {
        /// The redacted URL.
        url: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// The host name could not be resolved.
    #[error("could not resolve host {host:?}: {reason}")]
    Dns {
        /// The host name.
        host: String,
        /// The resolver's explanation.
        reason: String,
    },
    /// The request could not be built (bad header value, unserializable body, ...).
    #[error("could not build the request: {}", chain(.0))]
    InvalidRequest(#[source] reqwest::Error),
    /// The HTTP client could not be created.
    #[error("could not create the HTTP client: {}", chain(.0))]
    ClientBuild(#[source] reqwest::Error),
    /// Any other transport failure: connection refused or reset, TLS, protocol errors.
    #[error("request to {url} failed: {}", chain(.source))]
    Http {
        /// The redacted URL.
        url: String,
        /// The underlying error (its URL is removed).
        source: reqwest::Error,
    },
}

impl NetError {
    /// Converts a `reqwest` error, recovering the guard's structured errors.
    ///
    /// Refusals from the resolver and from the redirect policy reach the caller wrapped inside a
    /// `reqwest::Error`; this walks the `source()` chain to find them, so callers always see
    /// [`NetError::Blocked`] and friends rather than an opaque transport error.
    pub fn from_reqwest(err: reqwest::Error) -> NetError {
        let mut cause: Option<&(dyn StdError + 'static)> = Some(&err);
        while let Some(current) = cause {
            if let Some(blocked) = current.downcast_ref::<Blocked>() {
                return NetError::Blocked(blocked.clone());
            }
            if let Some(refusal) = current.downcast_ref::<GuardError>() {
                return refusal.clone().into();
            }
            if let Some(failed) = current.downcast_ref::<ResolveFailed>() {
                return NetError::Dns {
                    host: failed.host.clone(),
                    reason: failed.reason.clone(),
                };
            }
            cause = current.source();
        }

        let url = err.url().map_or_else(|| "<unknown URL>".to_owned(), redact);
        if err.is_timeout() {
            let phase = if err.is_connect() {
                TimeoutPhase::Connect
            } else if err.is_body() || err.is_decode() {
                TimeoutPhase::Body
            } else {
                TimeoutPhase::Response
            };
            return NetError::Timeout { url, phase };
        }
        if err.is_builder() {
            return NetError::InvalidRequest(err.without_url());
        }
        NetError::Http {
            url,
            source: err.without_url(),
        }
    }

    /// `true` for refusals by the SSRF guard.
    pub fn is_blocked(&self) -> bool {
        matches!(self, NetError::Blocked(_))
    }
}

/// Refusals raised inside reqwest's machinery (redirect policy); `Clone` so that
/// [`NetError::from_reqwest`] can recover them from a borrowed error chain.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum GuardError {
    #[error(transparent)]
    Blocked(#[from] Blocked),
    #[error("unsupported scheme {scheme:?} in {url}")]
    UnsupportedScheme { url: String, scheme: String },
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("too many redirects from {url}")]
    TooManyRedirects { url: String, limit: usize },
}

impl From<GuardError> for NetError {
    fn from(err: GuardError) -> NetError {
        match err {
            GuardError::Blocked(blocked) => NetError::Blocked(blocked),
            GuardError::UnsupportedScheme { url, scheme } => NetError::UnsupportedScheme { url, scheme },
            GuardError::InvalidUrl { url, reason } => NetError::InvalidUrl { url, reason },
            GuardError::TooManyRedirects { url, limit } => NetError::TooManyRedirects { url, limit },
        }
    }
}

/// Name resolution failed in the guarded resolver.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not resolve {host:?}: {reason}")]
pub(crate) struct ResolveFailed {
    pub(crate) host: String,
    pub(crate) reason: String,
}

/// A URL safe to show in errors and logs: no user info, query or fragment.
pub(crate) fn redact(url: &Url) -> String {
    let mut url = url.clone();
    // Both setters only fail for URLs that cannot have credentials, which then have none.
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// The error and all its sources, joined with ": ", skipping repeated messages.
fn chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(current) = cause {
        let message = current.to_string();
        if !out.ends_with(&message) {
            out.push_str(": ");
            out.push_str(&message);
        }
        cause = current.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_credentials_query_and_fragment() {
        let url = Url::parse("https://user:pw@api.example.com/v1/x?api_key=secret#frag").unwrap();
        assert_eq!(redact(&url), "https://api.example.com/v1/x");
    }

    #[test]
    fn blocked_message_names_address_reason_and_setting() {
        let blocked = Blocked {
            host: "localhost".into(),
            address: "127.0.0.1".parse().unwrap(),
            reason: crate::check_ip("127.0.0.1".parse().unwrap()).unwrap_err(),
            resolved: true,
        };
        assert_eq!(
            blocked.to_string(),
            "request to \"localhost\" blocked: it resolves to 127.0.0.1, a loopback address; \
             add it to SSRF_ALLOWED_NETWORKS to allow it (or the host to SSRF_ALLOWED_HOSTS)"
        );
        let metadata = Blocked {
            host: "169.254.169.254".into(),
            address: "169.254.169.254".parse().unwrap(),
            reason: crate::check_ip("169.254.169.254".parse().unwrap()).unwrap_err(),
            resolved: false,
        };
        assert!(metadata.to_string().starts_with(
            "request to \"169.254.169.254\" blocked: 169.254.169.254 is the cloud instance metadata endpoint"
        ));
    }
}
