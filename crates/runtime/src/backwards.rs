//! Backwards invocation: what a plugin may ask of its host while a session runs.
//!
//! `storage` is answered inside the runtime through [`PluginStorage`] (with the manifest's quota); `tool` goes to a
//! [`ToolCatalog`] the embedding server provides; every other type gets a clear "not available" error.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::Mutex;

/// The largest quota any plugin gets (the original's `PERSISTENCE_STORAGE_MAX_SIZE`, 100 MiB).
pub const MAX_STORAGE_SIZE: u64 = 100 * 1024 * 1024;

/// A storage operation failed.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The key is not acceptable.
    #[error("invalid storage key `{0}`: keys are at most 256 characters without `..`, `//` or `\\`")]
    InvalidKey(String),
    /// The write would exceed the plugin's quota.
    #[error("storage quota exceeded: {used} bytes used, {wanted} more wanted, {quota} allowed")]
    Quota {
        /// Bytes in use before the write (without the replaced value).
        used: u64,
        /// Size of the new value.
        wanted: u64,
        /// The quota.
        quota: u64,
    },
    /// The backend failed.
    #[error("storage failed: {0}")]
    Backend(String),
}

/// Key-value storage per (tenant, plugin id).
#[async_trait]
pub trait PluginStorage: Send + Sync + std::fmt::Debug {
    /// The value of `key`.
    async fn get(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Stores `value`, keeping the total of the plugin's values within `quota`.
    async fn set(
        &self,
        tenant_id: &str,
        plugin_id: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), StorageError>;
    /// Removes `key`; whether it existed.
    async fn delete(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<bool, StorageError>;
    /// Whether `key` exists.
    async fn exists(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<bool, StorageError>;
}

/// Checks a key as the original does.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() || key.len() > 256 || key.contains("..") || key.contains("//") || key.contains('\\') {
        return Err(StorageError::InvalidKey(key.to_owned()));
    }
    Ok(())
}

/// [`PluginStorage`] in a local folder: `<root>/<tenant>/<hex(plugin_id)>/<hex(key)>`; the quota is the sum of the
/// plugin's files.
#[derive(Debug)]
pub struct FsStorage {
    root: PathBuf,
    writes: Mutex<()>,
}

impl FsStorage {
    /// Storage under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            writes: Mutex::new(()),
        }
    }

    fn dir(&self, tenant_id: &str, plugin_id: &str) -> PathBuf {
        self.root.join(hex::encode(tenant_id)).join(hex::encode(plugin_id))
    }

    fn path(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.dir(tenant_id, plugin_id).join(hex::encode(key)))
    }
}

fn backend(e: std::io::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

#[async_trait]
impl PluginStorage for FsStorage {
    async fn get(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match tokio::fs::read(self.path(tenant_id, plugin_id, key)?).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn set(
        &self,
        tenant_id: &str,
        plugin_id: &str,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), StorageError> {
        let path = self.path(tenant_id, plugin_id, key)?;
        let dir = self.dir(tenant_id, plugin_id);
        let _guard = self.writes.lock().await;
        tokio::fs::create_dir_all(&dir).await.map_err(backend)?;
        let mut used = 0u64;
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(backend)?;
        while let Some(entry) = entries.next_entry().await.map_err(backend)? {
            if entry.path() != path {
                used += entry.metadata().await.map_err(backend)?.len();
            }
        }
        let wanted = value.len() as u64;
        let quota = quota.min(MAX_STORAGE_SIZE);
        if used + wanted > quota {
            return Err(StorageError::Quota { used, wanted, quota });
        }
        let partial = path.with_extension("partial");
        tokio::fs::write(&partial, value).await.map_err(backend)?;
        tokio::fs::rename(&partial, &path).await.map_err(backend)
    }

    async fn delete(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<bool, StorageError> {
        match tokio::fs::remove_file(self.path(tenant_id, plugin_id, key)?).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    async fn exists(&self, tenant_id: &str, plugin_id: &str, key: &str) -> Result<bool, StorageError> {
        Ok(tokio::fs::try_exists(self.path(tenant_id, plugin_id, key)?)
            .await
            .map_err(backend)?)
    }
}

/// A tool call a plugin makes back into the host (`invoke` of type `tool`).
#[derive(Debug, Clone)]
pub struct BackwardsToolCall {
    /// The tenant of the session.
    pub tenant_id: String,
    /// The user of the session.
    pub user_id: String,
    /// `builtin`, `api`, `workflow` or `mcp`.
    pub tool_type: String,
    /// The provider id.
    pub provider: String,
    /// The tool name.
    pub tool: String,
    /// Parameters.
    pub parameters: serde_json::Map<String, Value>,
    /// `credential_id`, when the plugin names one.
    pub credential_id: Option<String>,
}

/// The host's tool catalog, for plugins that call other tools. Each stream item is a ToolInvokeMessage-shaped JSON
/// object (`{type, message, meta}`); an `Err` item ends the call with that error.
#[async_trait]
pub trait ToolCatalog: Send + Sync {
    /// Starts the call.
    async fn invoke(&self, call: BackwardsToolCall) -> Result<BoxStream<'static, Result<Value, String>>, String>;
}

/// Where backwards calls go.
#[derive(Clone, Default)]
pub struct Backwards {
    /// Storage KV; without it, storage calls fail with a clear error.
    pub storage: Option<Arc<dyn PluginStorage>>,
    /// Tool calls; without it, tool calls fail with a clear error.
    pub tools: Option<Arc<dyn ToolCatalog>>,
}

impl std::fmt::Debug for Backwards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backwards")
            .field("storage", &self.storage.is_some())
            .field("tools", &self.tools.is_some())
            .finish()
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub tenant_id: String,
    pub user_id: String,
    pub plugin_id: String,
    pub storage_quota: Option<u64>,
    pub tool_permission: bool,
    pub from_model: bool,
}

/// One reply frame: (`event`, `message`, `data`).
pub(crate) type Reply = (&'static str, String, Value);

/// Answers one backwards call; `send` receives every frame but the final `end`, which the caller adds.
pub(crate) async fn answer(
    backwards: &Backwards,
    caller: &Caller,
    kind: &str,
    request: Value,
    send: &mut (dyn FnMut(Reply) + Send),
) {
    let error = |m: String| ("error", m, Value::Null);
    if caller.from_model {
        send(error("you can not invoke dify from model".into()));
        return;
    }
    match kind {
        "storage" => {
            let Some(quota) = caller.storage_quota else {
                send(error(
                    "permission denied, you need to enable storage access in plugin manifest".into(),
                ));
                return;
            };
            let Some(storage) = &backwards.storage else {
                send(error("storage is not available in this daemon".into()));
                return;
            };
            match storage_call(storage.as_ref(), caller, quota, &request).await {
                Ok(data) => send(("response", "struct".into(), data)),
                Err(e) => send(error(e)),
            }
        }
        "tool" => {
            if !caller.tool_permission {
                send(error(
                    "permission denied, you need to enable tool access in plugin manifest".into(),
                ));
                return;
            }
            let Some(tools) = &backwards.tools else {
                send(error("tool invocation is not available in this daemon".into()));
                return;
            };
            let s = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            let call = BackwardsToolCall {
                tenant_id: caller.tenant_id.clone(),
                user_id: caller.user_id.clone(),
                tool_type: s("tool_type"),
                provider: s("provider"),
                tool: s("tool"),
                parameters: request
                    .get("tool_parameters")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
                credential_id: request.get("credential_id").and_then(Value::as_str).map(str::to_owned),
            };
            match tools.invoke(call).await {
                Err(e) => send(error(e)),
                Ok(mut stream) => {
                    use futures::StreamExt;
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(v) => send(("response", "stream".into(), v)),
                            Err(e) => {
                                send(error(e));
                                return;
                            }
                        }
                    }
                }
            }
        }
        other => send(error(format!(
            "backwards invocation `{other}` is not available: toolplane answers storage and tool calls itself and \
             forwards nothing else to Dify (DIFY_INNER_API_URL forwarding is not implemented)"
        ))),
    }
}

async fn storage_call(
    storage: &dyn PluginStorage,
    caller: &Caller,
    quota: u64,
    request: &Value,
) -> Result<Value, String> {
    let key = request.get("key").and_then(Value::as_str).unwrap_or_default();
    let (t, p) = (caller.tenant_id.as_str(), caller.plugin_id.as_str());
    let e = |e: StorageError| e.to_string();
    match request.get("opt").and_then(Value::as_str).unwrap_or_default() {
        "get" => {
            let value = storage.get(t, p, key).await.map_err(e)?;
            Ok(json!({"data": value.map(hex::encode).unwrap_or_default()}))
        }
        "set" => {
            let value = request.get("value").and_then(Value::as_str).unwrap_or_default();
            let bytes = hex::decode(value).map_err(|_| "storage value must be hex".to_owned())?;
            storage.set(t, p, key, &bytes, quota).await.map_err(e)?;
            Ok(json!({"data": "ok"}))
        }
        "del" => {
            let deleted = storage.delete(t, p, key).await.map_err(e)?;
            Ok(json!({"data": "ok", "deleted_num": u8::from(deleted)}))
        }
        "exist" => {
            let exists = storage.exists(t, p, key).await.map_err(e)?;
            Ok(json!({"data": exists, "exist_num": u8::from(exists)}))
        }
        other => Err(format!("unknown storage operation `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fs_storage_round_trip_and_quota() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path());
        s.set("t", "a/b", "k1", b"hello", 10).await.unwrap();
        assert_eq!(s.get("t", "a/b", "k1").await.unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(s.exists("t", "a/b", "k1").await.unwrap());
        // Replacing a value does not count the old one.
        s.set("t", "a/b", "k1", b"0123456789", 10).await.unwrap();
        assert!(matches!(
            s.set("t", "a/b", "k2", b"x", 10).await,
            Err(StorageError::Quota { .. })
        ));
        // Other tenants are separate.
        assert_eq!(s.get("u", "a/b", "k1").await.unwrap(), None);
        assert!(s.delete("t", "a/b", "k1").await.unwrap());
        assert!(!s.exists("t", "a/b", "k1").await.unwrap());
        assert!(matches!(
            s.get("t", "a/b", "../x").await,
            Err(StorageError::InvalidKey(_))
        ));
    }
}
