//! Integrity-protected `requestState` for 2026-07-28 `input_required` results (MRTR, SEP-2322).
//!
//! A stateless server keeps nothing between a request and its retry: whatever it needs to resume travels through
//! the client as `requestState`. The client must not be able to forge or alter it, so the state is sealed with
//! HMAC-SHA256 under a per-server key, bound to the request it belongs to (its method and tool or prompt name), and
//! given an expiry. The token is `v1.<base64url(payload)>.<base64url(tag)>`; the payload is readable JSON (it is
//! authenticated, not secret: never put credentials in it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde_json::{Value, json};

/// How long a sealed state stays valid: long enough for a person to answer an elicitation.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(15 * 60);
const PREFIX: &str = "v1.";

/// Why a `requestState` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestStateError {
    /// Not a token this server issued (malformed, altered, or signed with another key).
    #[error(
        "requestState failed its integrity check (it was altered, or issued by another server); retry the original \
         request without requestState and inputResponses"
    )]
    Tampered,
    /// Issued for another request (another method, tool or prompt).
    #[error(
        "requestState was issued for {issued_for:?}, not for {used_for:?}; send each request's own requestState \
         back unchanged"
    )]
    WrongRequest {
        /// The request the state was issued for.
        issued_for: String,
        /// The request it came back with.
        used_for: String,
    },
    /// Older than its lifetime.
    #[error("requestState has expired; retry the original request without requestState and inputResponses")]
    Expired,
}

/// Seals and opens `requestState` tokens with one HMAC key.
pub struct StateSealer {
    key: hmac::Key,
    lifetime: Duration,
}

impl std::fmt::Debug for StateSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("StateSealer")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Default for StateSealer {
    fn default() -> Self {
        Self::random()
    }
}

impl StateSealer {
    /// A sealer with a fresh random key: states it issues are only accepted by this process, which suits a single
    /// node; use [`with_key`](Self::with_key) to share the key between nodes behind a load balancer.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::with_key(&key)
    }

    /// A sealer with a given secret key (at least 32 random bytes recommended).
    pub fn with_key(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            lifetime: DEFAULT_LIFETIME,
        }
    }

    /// Builder: how long sealed states stay valid.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Seals `state` for the request identified by `scope` (e.g. `tools/call:my_tool`).
    pub fn seal(&self, scope: &str, state: &Value) -> String {
        let expires = now_secs().saturating_add(self.lifetime.as_secs());
        let payload = json!({"scope": scope, "exp": expires, "state": state}).to_string();
        let body = URL_SAFE_NO_PAD.encode(payload.as_bytes());
        let tag = hmac::sign(&self.key, body.as_bytes());
        format!("{PREFIX}{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Verifies `token` and returns the state it carries, if it was sealed by this key for `scope` and has not
    /// expired.
    pub fn open(&self, scope: &str, token: &str) -> Result<Value, RequestStateError> {
        let rest = token.strip_prefix(PREFIX).ok_or(RequestStateError::Tampered)?;
        let (body, tag) = rest.split_once('.').ok_or(RequestStateError::Tampered)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| RequestStateError::Tampered)?;
        hmac::verify(&self.key, body.as_bytes(), &tag).map_err(|_| RequestStateError::Tampered)?;
        let payload = URL_SAFE_NO_PAD.decode(body).map_err(|_| RequestStateError::Tampered)?;
        let mut payload: Value = serde_json::from_slice(&payload).map_err(|_| RequestStateError::Tampered)?;
        let issued_for = payload.get("scope").and_then(Value::as_str).unwrap_or_default();
        if issued_for != scope {
            return Err(RequestStateError::WrongRequest {
                issued_for: issued_for.to_owned(),
                used_for: scope.to_owned(),
            });
        }
        let expires = payload.get("exp").and_then(Value::as_u64).unwrap_or(0);
        if now_secs() > expires {
            return Err(RequestStateError::Expired);
        }
        Ok(payload.get_mut("state").map(Value::take).unwrap_or(Value::Null))
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The request a state belongs to: the method, plus the tool or prompt name or the resource URI.
pub(super) fn scope(method: &str, params: &serde_json::Map<String, Value>) -> String {
    let target = match method {
        "resources/read" => params.get("uri"),
        _ => params.get("name"),
    };
    match target.and_then(Value::as_str) {
        Some(target) => format!("{method}:{target}"),
        None => method.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let sealer = StateSealer::with_key(b"0123456789abcdef0123456789abcdef");
        let token = sealer.seal("tools/call:a", &json!({"step": 2}));
        assert_eq!(sealer.open("tools/call:a", &token).unwrap(), json!({"step": 2}));
        assert_eq!(
            sealer.open("tools/call:a", &format!("{token}-TAMPERED")),
            Err(RequestStateError::Tampered)
        );
        assert!(matches!(
            sealer.open("tools/call:b", &token),
            Err(RequestStateError::WrongRequest { .. })
        ));
        let other = StateSealer::with_key(b"another key another key another k");
        assert_eq!(other.open("tools/call:a", &token), Err(RequestStateError::Tampered));
        let expired = StateSealer::with_key(b"k").with_lifetime(Duration::ZERO);
        let token = expired.seal("s", &json!(1));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(expired.open("s", &token), Err(RequestStateError::Expired));
    }
}
