//! API keys: generation, hashing, and the extractors that turn a request's key into a caller.
//!
//! Keys are random 40-character tokens prefixed `tp_`; only their SHA-256 is stored, so a database leak does not
//! leak usable keys. A key either belongs to one tenant (it sees only that tenant) or is an admin key (no tenant)
//! that manages tenants and may act in one by naming it in `X-Tenant-Id`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// Prefix of every key toolplane issues.
pub const KEY_PREFIX: &str = "tp_";

/// A random alphanumeric token of `len` characters.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// A new API key.
pub fn new_api_key() -> String {
    format!("{KEY_PREFIX}{}", random_token(40))
}

/// The stored form of a key: hex SHA-256.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The part of a key shown in listings.
pub fn key_display_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX.len() + 6).collect()
}

/// How long a verified key is trusted without asking the database again. Bounds how long a key deleted on another
/// node keeps working here.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
const KEY_CACHE_MAX_ENTRIES: usize = 10_000;

/// Verified keys by hash, so the hot path does not query the database on every request.
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<String, (Caller, Instant)>>,
}

impl KeyCache {
    fn get(&self, hash: &str) -> Option<Caller> {
        // A poisoned lock only means a panic elsewhere mid-update; the map is still usable.
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(caller, _)| caller.clone())
    }

    fn put(&self, hash: String, caller: Caller) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= KEY_CACHE_MAX_ENTRIES {
            entries.retain(|_, (_, at)| at.elapsed() < KEY_CACHE_TTL);
            if entries.len() >= KEY_CACHE_MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(hash, (caller, Instant::now()));
    }

    /// Forgets every cached key (after a key is deleted).
    pub fn clear(&self) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The caller behind a valid API key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    /// The account a tenant key acts as.
    pub account_id: Option<String>,
    /// `None` for admin keys.
    pub tenant_id: Option<String>,
}

impl Caller {
    /// Whether this is an admin key.
    pub fn is_admin(&self) -> bool {
        self.tenant_id.is_none()
    }
}

/// A caller acting inside one tenant: a tenant key, or an admin key with `X-Tenant-Id`.
#[derive(Debug, Clone)]
pub struct TenantCaller {
    pub tenant_id: String,
    /// Recorded as `user_id` on rows the caller creates: the key's account, or the key id for admin keys.
    pub user_id: String,
    pub is_admin: bool,
}

/// An admin caller.
#[derive(Debug, Clone)]
pub struct AdminCaller(pub Caller);

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        if let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
            return Some(token.trim());
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = presented_key(&parts.headers).filter(|k| !k.is_empty()).ok_or_else(|| {
            ApiError::unauthorized("missing API key: send it as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'")
        })?;
        let hash = hash_key(key);
        if let Some(caller) = state.key_cache.get(&hash) {
            return Ok(caller);
        }
        let record = state
            .store
            .api_keys()
            .find_by_hash(&hash)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid API key: it is unknown or has been deleted"))?;
        let caller = Caller {
            key_id: record.id,
            account_id: record.account_id,
            tenant_id: record.tenant_id,
        };
        state.key_cache.put(hash, caller.clone());
        Ok(caller)
    }
}

impl FromRequestParts<AppState> for TenantCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let named = parts
            .headers
            .get("x-tenant-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let tenant_id = match (&caller.tenant_id, named) {
            (Some(own), None) => own.clone(),
            (Some(own), Some(named)) if named == own => own.clone(),
            (Some(_), Some(_)) => {
                return Err(ApiError::forbidden(
                    "this API key belongs to another tenant than X-Tenant-Id names",
                ));
            }
            (None, Some(named)) => {
                if state.store.tenants().get(named).await?.is_none() {
                    return Err(ApiError::not_found(format!("tenant {named:?} not found")));
                }
                named.to_owned()
            }
            (None, None) => {
                return Err(ApiError::invalid(
                    "admin keys act on a tenant only when it is named: add the header 'X-Tenant-Id: <tenant id>'",
                ));
            }
        };
        Ok(TenantCaller {
            tenant_id,
            is_admin: caller.is_admin(),
            user_id: caller.account_id.unwrap_or(caller.key_id),
        })
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.is_admin() {
            return Err(ApiError::forbidden("this route needs an admin API key"));
        }
        Ok(AdminCaller(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hash_stably() {
        let a = new_api_key();
        let b = new_api_key();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == 43);
        assert_eq!(hash_key("tp_x"), hash_key("tp_x"));
        assert_eq!(hash_key("abc").len(), 64);
    }
}
