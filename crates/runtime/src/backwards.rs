//! Backwards invocation: what a plugin may ask of its host while a session runs.
//!
//! `storage` is answered inside the runtime through [`PluginStorage`] (with the manifest's quota); `tool` goes to a
//! [`ToolCatalog`] the embedding server provides; `upload_file` gets a signed upload URL from [`FileUploads`]; the
//! model, node and app calls are forwarded to Dify's inner API ([`DifyInnerApi`], `DIFY_INNER_API_URL`), which
//! also takes `tool` and `upload_file` when the host provides neither. Without it they get a clear "not available"
//! error. Every type but `storage` and `upload_file` is checked against the manifest's `resource.permission` with
//! the original's messages, and sessions of model plugins may not call back at all.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::Mutex;
use toolplane_plugin::Permissions;

use crate::inner_api::DifyInnerApi;

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

/// Signed upload URLs for `upload_file` backwards calls: the plugin POSTs the file (multipart `file`) to the URL and
/// expects HTTP 201 with Dify's UploadFileResponse JSON.
pub trait FileUploads: Send + Sync {
    /// A URL valid for one upload of `filename` with `mimetype` by (`tenant_id`, `user_id`).
    fn upload_url(&self, tenant_id: &str, user_id: &str, filename: &str, mimetype: &str) -> Result<String, String>;
}

/// Where backwards calls go.
#[derive(Clone, Default)]
pub struct Backwards {
    /// Storage KV; without it, storage calls fail with a clear error.
    pub storage: Option<Arc<dyn PluginStorage>>,
    /// Tool calls; without it, tool calls go to Dify's inner API when configured, else fail with a clear error.
    pub tools: Option<Arc<dyn ToolCatalog>>,
    /// Upload URLs; without it, `upload_file` goes to Dify's inner API when configured, else fails clearly.
    pub uploads: Option<Arc<dyn FileUploads>>,
    /// Dify's inner API for everything else. [`crate::PluginRuntime::new`] fills it from `DIFY_INNER_API_URL` /
    /// `DIFY_INNER_API_KEY` when left empty.
    pub dify: Option<Arc<DifyInnerApi>>,
}

impl std::fmt::Debug for Backwards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backwards")
            .field("storage", &self.storage.is_some())
            .field("tools", &self.tools.is_some())
            .field("uploads", &self.uploads.is_some())
            .field("dify", &self.dify)
            .finish()
    }
}

/// How the answer of a forwarded call goes back to the plugin (`message` of its `backwards_response` items).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyMode {
    Stream,
    Struct,
}

/// (Dify inner API path, reply mode) of the invoke types forwarded to Dify.
fn inner_route(kind: &str) -> Option<(&'static str, ReplyMode)> {
    use ReplyMode::{Stream, Struct};
    Some(match kind {
        "tool" => ("invoke/tool", Stream),
        "llm" => ("invoke/llm", Stream),
        "llm_structured_output" => ("invoke/llm/structured-output", Stream),
        "text_embedding" => ("invoke/text-embedding", Struct),
        "multimodal_embedding" => ("invoke/multimodal-embedding", Struct),
        "rerank" => ("invoke/rerank", Struct),
        "multimodal_rerank" => ("invoke/multimodal-rerank", Struct),
        "tts" => ("invoke/tts", Stream),
        "speech2text" => ("invoke/speech2text", Struct),
        "moderation" => ("invoke/moderation", Struct),
        "node_parameter_extractor" => ("invoke/parameter-extractor", Struct),
        "node_question_classifier" => ("invoke/question-classifier", Struct),
        "app" => ("invoke/app", Stream),
        "fetch_app" => ("fetch/app/info", Struct),
        "system_summary" => ("invoke/summary", Struct),
        "upload_file" => ("upload/file/request", Struct),
        _ => return None,
    })
}

/// The manifest permission a forwarded invoke type needs; `Err` carries the original daemon's denial message.
fn check_permission(kind: &str, permissions: &Permissions) -> Result<(), String> {
    let model = permissions.model.as_ref().filter(|m| m.enabled);
    let (allowed, what) = match kind {
        "llm" | "llm_structured_output" | "system_summary" => (model.is_some_and(|m| m.llm), "llm"),
        "text_embedding" | "multimodal_embedding" => (model.is_some_and(|m| m.text_embedding), "text-embedding"),
        "rerank" | "multimodal_rerank" => (model.is_some_and(|m| m.rerank), "rerank"),
        "tts" => (model.is_some_and(|m| m.tts), "tts"),
        "speech2text" => (model.is_some_and(|m| m.speech2text), "speech2text"),
        "moderation" => (model.is_some_and(|m| m.moderation), "moderation"),
        "node_parameter_extractor" | "node_question_classifier" => {
            (permissions.node.as_ref().is_some_and(|n| n.enabled), "node")
        }
        "app" | "fetch_app" => (permissions.app.as_ref().is_some_and(|a| a.enabled), "app"),
        "tool" => (permissions.tool.as_ref().is_some_and(|t| t.enabled), "tool"),
        // Any plugin may upload files.
        _ => (true, ""),
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "permission denied, you need to enable {what} access in plugin manifest"
        ))
    }
}

fn not_available(kind: &str) -> String {
    format!(
        "backwards invocation `{kind}` is not available: set DIFY_INNER_API_URL (and DIFY_INNER_API_KEY) to the Dify \
         API server's inner address so toolplane can forward it to Dify"
    )
}

/// Forwards one call to Dify, the session's tenant, user and the type injected as the original daemon does.
async fn forward(
    dify: &DifyInnerApi,
    caller: &Caller,
    kind: &str,
    request: Value,
    send: &mut (dyn FnMut(Reply) + Send),
) {
    use futures::StreamExt;
    let Some((path, mode)) = inner_route(kind) else {
        send(("error", format!("unsupported invoke type: {kind}"), Value::Null));
        return;
    };
    let mut body = match request {
        Value::Object(map) => map,
        Value::Null => serde_json::Map::new(),
        other => {
            send((
                "error",
                format!("the `{kind}` request must be a JSON object, not {other}"),
                Value::Null,
            ));
            return;
        }
    };
    body.insert("tenant_id".into(), Value::String(caller.tenant_id.clone()));
    body.insert("user_id".into(), Value::String(caller.user_id.clone()));
    body.insert("type".into(), Value::String(kind.to_owned()));
    let message = match mode {
        ReplyMode::Stream => "stream",
        ReplyMode::Struct => "struct",
    };
    match dify.call(path, &Value::Object(body)).await {
        Err(e) => send(("error", format!("invoke {kind} failed: {e}"), Value::Null)),
        Ok(mut items) => {
            while let Some(item) = items.next().await {
                match item {
                    Ok(data) => send(("response", message.to_owned(), data)),
                    Err(e) => {
                        send(("error", format!("invoke {kind} failed: {e}"), Value::Null));
                        return;
                    }
                }
            }
        }
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
    pub permissions: Permissions,
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
                match &backwards.dify {
                    Some(dify) => forward(dify, caller, kind, request, send).await,
                    None => send(error(not_available(kind))),
                }
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
        "upload_file" => {
            let s = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            let (filename, mimetype) = (s("filename"), s("mimetype"));
            if let Some(uploads) = &backwards.uploads {
                if filename.is_empty() || mimetype.is_empty() {
                    send(error("upload_file needs a `filename` and a `mimetype`".into()));
                    return;
                }
                match uploads.upload_url(&caller.tenant_id, &caller.user_id, &filename, &mimetype) {
                    Ok(url) => send(("response", "struct".into(), json!({"url": url}))),
                    Err(e) => send(error(e)),
                }
                return;
            }
            match &backwards.dify {
                Some(dify) => forward(dify, caller, kind, request, send).await,
                None => send(error(not_available(kind))),
            }
        }
        other if inner_route(other).is_some() => {
            if let Err(denied) = check_permission(other, &caller.permissions) {
                send(error(denied));
                return;
            }
            match &backwards.dify {
                Some(dify) => forward(dify, caller, other, request, send).await,
                None => send(error(not_available(other))),
            }
        }
        other => send(error(format!("unsupported invoke type: {other}"))),
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

    fn caller(permissions: Permissions, from_model: bool) -> Caller {
        Caller {
            tenant_id: "t".into(),
            user_id: "u".into(),
            plugin_id: "a/b".into(),
            storage_quota: None,
            tool_permission: false,
            permissions,
            from_model,
        }
    }

    async fn replies(backwards: &Backwards, caller: &Caller, kind: &str, request: Value) -> Vec<Reply> {
        let mut out = Vec::new();
        let mut send = |r: Reply| out.push(r);
        answer(backwards, caller, kind, request, &mut send).await;
        out
    }

    struct Uploads;
    impl FileUploads for Uploads {
        fn upload_url(&self, t: &str, u: &str, f: &str, m: &str) -> Result<String, String> {
            Ok(format!("http://files/{t}/{u}/{f}/{m}"))
        }
    }

    #[tokio::test]
    async fn permissions_model_sessions_and_missing_inner_api() {
        let none = Backwards::default();
        let denied = replies(&none, &caller(Permissions::default(), false), "llm", json!({})).await;
        assert_eq!(
            denied,
            [(
                "error",
                "permission denied, you need to enable llm access in plugin manifest".to_owned(),
                Value::Null
            )]
        );
        let app = replies(&none, &caller(Permissions::default(), false), "fetch_app", json!({})).await;
        assert!(app[0].1.contains("enable app access"), "{app:?}");
        let permitted = Permissions {
            model: Some(toolplane_plugin::ModelPermission {
                enabled: true,
                llm: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let unavailable = replies(&none, &caller(permitted.clone(), false), "llm", json!({})).await;
        assert!(unavailable[0].1.contains("set DIFY_INNER_API_URL"), "{unavailable:?}");
        let embedding = replies(&none, &caller(permitted.clone(), false), "text_embedding", json!({})).await;
        assert!(embedding[0].1.contains("enable text-embedding access"), "{embedding:?}");
        let from_model = replies(&none, &caller(permitted, true), "llm", json!({})).await;
        assert_eq!(from_model[0].1, "you can not invoke dify from model");
        let unknown = replies(&none, &caller(Permissions::default(), false), "encrypt", json!({})).await;
        assert_eq!(unknown[0].1, "unsupported invoke type: encrypt");
    }

    #[tokio::test]
    async fn upload_file_asks_the_host_for_a_url() {
        let host = Backwards {
            uploads: Some(Arc::new(Uploads)),
            ..Backwards::default()
        };
        let request = json!({"filename": "a.txt", "mimetype": "text/plain"});
        let got = replies(
            &host,
            &caller(Permissions::default(), false),
            "upload_file",
            request.clone(),
        )
        .await;
        assert_eq!(
            got,
            [(
                "response",
                "struct".to_owned(),
                json!({"url": "http://files/t/u/a.txt/text/plain"})
            )]
        );
        let missing = replies(&host, &caller(Permissions::default(), false), "upload_file", json!({})).await;
        assert!(missing[0].1.contains("needs a `filename`"), "{missing:?}");
        let none = replies(
            &Backwards::default(),
            &caller(Permissions::default(), false),
            "upload_file",
            request,
        )
        .await;
        assert!(none[0].1.contains("set DIFY_INNER_API_URL"), "{none:?}");
    }

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
