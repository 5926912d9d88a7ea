//! Per-tenant RSA key pairs: the private key lives in blob storage at `privkeys/{tenant_id}/private.pem`, as Dify
//! keeps it, the public key in `tenants.encrypt_public_key`; parsed keys are cached in memory.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use toolplane_secrets::PrivateKey;
use toolplane_store::{BlobStore, Store};

use crate::error::ApiError;

/// Loads, creates and rotates tenant key pairs.
pub struct TenantKeys {
    store: Store,
    blobs: BlobStore,
    cache: RwLock<HashMap<String, Arc<PrivateKey>>>,
    /// Serialises creation so two requests never create two different key pairs for one tenant in this process.
    create_lock: tokio::sync::Mutex<()>,
}

/// Where Dify keeps a tenant's private key.
pub fn private_key_path(tenant_id: &str) -> String {
    format!("privkeys/{tenant_id}/private.pem")
}

impl TenantKeys {
    /// A key service over the given storage.
    pub fn new(store: Store, blobs: BlobStore) -> Self {
        Self {
            store,
            blobs,
            cache: RwLock::new(HashMap::new()),
            create_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The tenant's private key, creating the pair on first use (tenants imported without one get one then).
    pub async fn private_key(&self, tenant_id: &str) -> Result<Arc<PrivateKey>, ApiError> {
        if let Some(key) = self.cached(tenant_id) {
            return Ok(key);
        }
        let _guard = self.create_lock.lock().await;
        if let Some(key) = self.cached(tenant_id) {
            return Ok(key);
        }
        let path = private_key_path(tenant_id);
        let key = match self.blobs.get(&path).await {
            Ok(bytes) => {
                let pem = String::from_utf8(bytes.to_vec())
                    .map_err(|_| ApiError::internal(format!("{path} is not UTF-8 PEM")))?;
                PrivateKey::from_pem(&pem).map_err(ApiError::internal)?
            }
            Err(e) if e.is_not_found() => self.create_unlocked(tenant_id).await?,
            Err(e) => return Err(ApiError::internal(e)),
        };
        let key = Arc::new(key);
        self.remember(tenant_id, key.clone());
        Ok(key)
    }

    /// Creates a fresh pair for a new tenant.
    pub async fn create(&self, tenant_id: &str) -> Result<(), ApiError> {
        let _guard = self.create_lock.lock().await;
        let key = Arc::new(self.create_unlocked(tenant_id).await?);
        self.remember(tenant_id, key);
        Ok(())
    }

    /// Replaces the tenant's key pair. Credentials encrypted with the old key can no longer be read, so they are
    /// deleted, as Dify does; returns how many were deleted.
    pub async fn rotate(&self, tenant_id: &str) -> Result<u64, ApiError> {
        let _guard = self.create_lock.lock().await;
        let key = Arc::new(self.create_unlocked(tenant_id).await?);
        self.remember(tenant_id, key);
        let cleared = self
            .store
            .builtin_credentials()
            .delete_all_for_tenant(tenant_id)
            .await?;
        tracing::warn!(
            tenant_id,
            cleared,
            "tenant key pair rotated; stored credentials were deleted"
        );
        Ok(cleared)
    }

    async fn create_unlocked(&self, tenant_id: &str) -> Result<PrivateKey, ApiError> {
        // Key generation takes tens of milliseconds of CPU: keep it off the async workers.
        let key = tokio::task::spawn_blocking(PrivateKey::generate)
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        let private_pem = key.to_pkcs1_pem().map_err(ApiError::internal)?;
        let public_pem = key.public_key().to_spki_pem().map_err(ApiError::internal)?;
        self.blobs
            .put(&private_key_path(tenant_id), private_pem.into_bytes())
            .await
            .map_err(ApiError::internal)?;
        self.store.tenants().set_public_key(tenant_id, &public_pem).await?;
        Ok(key)
    }

    fn cached(&self, tenant_id: &str) -> Option<Arc<PrivateKey>> {
        // A poisoned lock only means another thread panicked mid-insert; the map itself is still valid.
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.get(tenant_id).cloned()
    }

    fn remember(&self, tenant_id: &str, key: Arc<PrivateKey>) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.insert(tenant_id.to_owned(), key);
    }
}
