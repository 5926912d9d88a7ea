//! Tool files: bytes a tool produced (or an image it pointed at), kept in blob storage under
//! `tools/{tenant_id}/{uuid}{ext}` with a `tool_files` row, and served through signed URLs.
//!
//! - [`ToolFileManager`] stores files (from bytes, from a stream, from a URL fetched through the SSRF guard) and
//!   signs URLs exactly as Dify does: `{base}/files/tools/{id}{ext}?timestamp=&nonce=&sign=` where
//!   `sign = urlsafe_b64(HMAC-SHA256(SECRET_KEY, "file-preview|{id}|{timestamp}|{nonce}"))`, valid for
//!   `FILES_ACCESS_TIMEOUT` seconds; the base is `FILES_URL` for outside callers and `INTERNAL_FILES_URL` inside.
//! - [`ToolFileManager::transform`] is Dify's `ToolFileMessageTransformer` over a message stream: `blob` (and
//!   reassembled `blob_chunk` sequences) → tool file + `image_link`/`binary_link`, `image` URL → downloaded tool
//!   file + `image_link`. The link text is the relative, unsigned `/files/tools/{id}{ext}` (as in Dify); toolplane
//!   adds `meta.tool_file_id` and a ready-to-use `meta.signed_url` (external base) so API callers can fetch it.
//!   `file` messages holding a tool file become `image_link`/`link`. `json` messages pass unchanged: a
//!   `serde_json::Value` is JSON-safe by construction (Dify converts datetimes, decimals, bytes and UUIDs, which
//!   cannot occur here).
//! - [`download`] is the `GET /files/tools/{id}.{ext}` handler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;
use toolplane_core::{MessagePayload, MessageStream, TextMessage, ToolError, ToolInvokeMessage};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_secrets::FileSigner;
use toolplane_store::{BlobError, BlobStore, BlobWriter, NewToolFile, Store, StoreError, ToolFileRecord};

use crate::state::AppState;

/// Why a tool file could not be stored.
#[derive(Debug, Error)]
pub enum ToolFileError {
    #[error("cannot store the tool file: {0}")]
    Blob(#[from] BlobError),
    #[error("cannot record the tool file: {0}")]
    Store(#[from] StoreError),
    #[error("cannot download {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("blob chunk {id} is out of order: expected sequence {expected}, got {got}")]
    ChunkOrder { id: String, expected: u64, got: u64 },
    #[error("blob {id} is larger than its declared total_length {total} bytes")]
    ChunkOverflow { id: String, total: u64 },
}

impl From<ToolFileError> for ToolError {
    fn from(error: ToolFileError) -> Self {
        match error {
            ToolFileError::Blob(_) | ToolFileError::Store(_) => ToolError::Internal(error.to_string()),
            other => ToolError::Invoke(other.to_string()),
        }
    }
}

/// MIME type ↔ extension pairs, first match wins in both directions (Python's `mimetypes` choices).
const MIME_EXTENSIONS: &[(&str, &str)] = &[
    ("image/png", ".png"),
    ("image/jpeg", ".jpg"),
    ("image/jpeg", ".jpeg"),
    ("image/gif", ".gif"),
    ("image/webp", ".webp"),
    ("image/svg+xml", ".svg"),
    ("image/bmp", ".bmp"),
    ("image/x-icon", ".ico"),
    ("image/tiff", ".tiff"),
    ("application/pdf", ".pdf"),
    ("application/json", ".json"),
    ("application/zip", ".zip"),
    ("application/xml", ".xml"),
    ("text/plain", ".txt"),
    ("text/html", ".html"),
    ("text/csv", ".csv"),
    ("text/markdown", ".md"),
    ("text/css", ".css"),
    ("audio/mpeg", ".mp3"),
    ("audio/x-wav", ".wav"),
    ("audio/wav", ".wav"),
    ("audio/ogg", ".ogg"),
    ("video/mp4", ".mp4"),
    ("video/webm", ".webm"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ".docx",
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ".xlsx",
    ),
    ("application/octet-stream", ".bin"),
];

/// The extension (with its dot) for a MIME type, like `mimetypes.guess_extension`; `None` when unknown.
pub fn extension_for_mime(mimetype: &str) -> Option<&'static str> {
    let essence = mimetype
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    MIME_EXTENSIONS.iter().find(|(m, _)| *m == essence).map(|(_, e)| *e)
}

/// The MIME type for a path's extension, like `mimetypes.guess_type`; `None` when unknown.
pub fn mime_for_path(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or_default();
    let ext = name.rfind('.').map(|i| name[i..].to_ascii_lowercase())?;
    MIME_EXTENSIONS.iter().find(|(_, e)| *e == ext).map(|(m, _)| *m)
}

/// The extension (with its dot) of a stored file, taken from its storage key; `.bin` when it has none.
pub fn extension_of(record: &ToolFileRecord) -> String {
    let name = record.file_key.rsplit('/').next().unwrap_or_default();
    match name.rfind('.') {
        Some(i) => name[i..].to_owned(),
        None => ".bin".to_owned(),
    }
}

/// Who a file is stored for.
#[derive(Debug, Clone)]
pub struct FileOwner {
    pub tenant_id: String,
    pub user_id: String,
    pub conversation_id: Option<String>,
}

/// Stores tool files and signs their URLs.
pub struct ToolFileManager {
    store: Store,
    blobs: BlobStore,
    signer: FileSigner,
    files_url: String,
    internal_files_url: String,
    access_timeout: Duration,
    net: NetConfig,
    client: tokio::sync::OnceCell<SafeClient>,
}

impl std::fmt::Debug for ToolFileManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolFileManager")
            .field("files_url", &self.files_url)
            .field("internal_files_url", &self.internal_files_url)
            .finish_non_exhaustive()
    }
}

impl ToolFileManager {
    /// A manager signing with `secret_key`; downloads go through a [`SafeClient`] built from `net`.
    pub fn new(
        store: Store,
        blobs: BlobStore,
        secret_key: &str,
        files_url: &str,
        internal_files_url: &str,
        access_timeout: Duration,
        net: NetConfig,
    ) -> Self {
        Self {
            store,
            blobs,
            signer: FileSigner::new(secret_key),
            files_url: files_url.trim_end_matches('/').to_owned(),
            internal_files_url: internal_files_url.trim_end_matches('/').to_owned(),
            access_timeout,
            net,
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// The signer (for verification by the download route).
    pub fn signer(&self) -> &FileSigner {
        &self.signer
    }

    /// How long a signed URL stays valid.
    pub fn access_timeout(&self) -> Duration {
        self.access_timeout
    }

    /// A signed URL for a file: on `FILES_URL` when `external`, else on `INTERNAL_FILES_URL`.
    pub fn sign(&self, file_id: &str, extension: &str, external: bool) -> Result<String, ToolError> {
        let base = if external {
            &self.files_url
        } else {
            &self.internal_files_url
        };
        self.signer
            .sign_tool_file(base, file_id, extension)
            .map_err(|e| ToolError::Internal(format!("cannot sign a tool-file URL: {e}")))
    }

    /// The unsigned relative URL tool messages carry: `/files/tools/{id}{ext}`.
    pub fn relative_url(record: &ToolFileRecord) -> String {
        format!("/files/tools/{}{}", record.id, extension_of(record))
    }

    fn new_key(tenant_id: &str, mimetype: &str, fallback_ext: &str) -> (String, &'static str) {
        let ext = extension_for_mime(mimetype).unwrap_or(match fallback_ext {
            ".png" => ".png",
            _ => ".bin",
        });
        let key = format!("tools/{tenant_id}/{}{ext}", uuid::Uuid::new_v4().simple());
        (key, ext)
    }

    fn display_name(key: &str, filename: Option<&str>, ext: &str) -> String {
        match filename.map(str::trim).filter(|n| !n.is_empty()) {
            Some(name) if name.contains('.') => name.to_owned(),
            Some(name) => format!("{name}{ext}"),
            None => key.rsplit('/').next().unwrap_or(key).to_owned(),
        }
    }

    async fn record(
        &self,
        owner: &FileOwner,
        key: String,
        mimetype: &str,
        name: String,
        size: u64,
        original_url: Option<&str>,
    ) -> Result<ToolFileRecord, ToolFileError> {
        let inserted = self
            .store
            .tool_files()
            .insert(&NewToolFile {
                user_id: owner.user_id.clone(),
                tenant_id: owner.tenant_id.clone(),
                conversation_id: owner.conversation_id.clone(),
                file_key: key.clone(),
                mimetype: mimetype.to_owned(),
                original_url: original_url.map(str::to_owned),
                name,
                size: i64::try_from(size).unwrap_or(i64::MAX),
            })
            .await;
        match inserted {
            Ok(record) => Ok(record),
            Err(e) => {
                // Do not leave an orphan blob behind a failed insert.
                self.blobs.delete(&key).await.ok();
                Err(e.into())
            }
        }
    }

    /// Stores `bytes` (moved, not copied) as a tool file (Dify's `create_file_by_raw`).
    pub async fn create_from_bytes(
        &self,
        owner: &FileOwner,
        bytes: impl Into<Bytes>,
        mimetype: &str,
        filename: Option<&str>,
    ) -> Result<ToolFileRecord, ToolFileError> {
        let bytes: Bytes = bytes.into();
        let (key, ext) = Self::new_key(&owner.tenant_id, mimetype, ".bin");
        let size = bytes.len() as u64;
        self.blobs.put(&key, bytes).await?;
        let name = Self::display_name(&key, filename, ext);
        self.record(owner, key, mimetype, name, size, None).await
    }

    /// Streams chunks into a new tool file without holding the whole file.
    pub async fn create_from_stream<S, E>(
        &self,
        owner: &FileOwner,
        chunks: S,
        mimetype: &str,
        filename: Option<&str>,
        original_url: Option<&str>,
    ) -> Result<ToolFileRecord, ToolFileError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let fallback = if original_url.is_some() { ".png" } else { ".bin" };
        let (key, ext) = Self::new_key(&owner.tenant_id, mimetype, fallback);
        let size = self.blobs.put_stream(&key, chunks).await.map_err(|e| match e {
            toolplane_store::PutStreamError::Blob(b) => ToolFileError::Blob(b),
            toolplane_store::PutStreamError::Source(s) => ToolFileError::Download {
                url: original_url.unwrap_or("the tool's output").to_owned(),
                reason: s.to_string(),
            },
        })?;
        let name = Self::display_name(&key, filename, ext);
        self.record(owner, key, mimetype, name, size, original_url).await
    }

    async fn client(&self) -> Result<&SafeClient, ToolFileError> {
        self.client
            .get_or_try_init(|| async { SafeClient::new(self.net.clone()) })
            .await
            .map_err(|e| ToolFileError::Download {
                url: String::new(),
                reason: e.to_string(),
            })
    }

    /// Downloads `url` through the SSRF guard into a tool file (Dify's `create_file_by_url`): the MIME type comes
    /// from the URL's extension, else `Content-Type`, else `application/octet-stream`. The body is streamed to
    /// storage and capped at the outbound response limit (`SSRF_MAX_RESPONSE_BYTES` / `NetConfig`).
    pub async fn create_from_url(&self, owner: &FileOwner, url: &str) -> Result<ToolFileRecord, ToolFileError> {
        let download = |reason: String| ToolFileError::Download {
            url: url.to_owned(),
            reason,
        };
        let client = self.client().await?;
        let response = client.get(url).send().await.map_err(|e| download(e.to_string()))?;
        if !response.status().is_success() {
            return Err(download(format!("the server answered {}", response.status())));
        }
        let path = reqwest::Url::parse(url)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        let mimetype = mime_for_path(&path)
            .map(str::to_owned)
            .or_else(|| {
                response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
            })
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let limit = client.config().max_response_bytes;
        let mut seen = 0u64;
        let body = response.bytes_stream().map(move |chunk| {
            let chunk = chunk.map_err(|e| e.to_string())?;
            seen += chunk.len() as u64;
            if seen > limit {
                return Err(format!("the response is larger than the {limit}-byte limit"));
            }
            Ok(chunk)
        });
        self.create_from_stream(owner, body, &mimetype, None, Some(url)).await
    }

    fn link_message(&self, record: &ToolFileRecord, meta: Option<Map<String, Value>>) -> ToolInvokeMessage {
        let url = Self::relative_url(record);
        let text = TextMessage { text: url };
        let payload = if record.mimetype.contains("image") {
            MessagePayload::ImageLink(text)
        } else {
            MessagePayload::BinaryLink(text)
        };
        let mut meta = meta.unwrap_or_default();
        meta.insert("tool_file_id".into(), Value::String(record.id.clone()));
        if let Ok(signed) = self.sign(&record.id, &extension_of(record), true) {
            meta.insert("signed_url".into(), Value::String(signed));
        }
        ToolInvokeMessage {
            payload,
            meta: Some(meta),
        }
    }

    /// Applies Dify's `ToolFileMessageTransformer` to an invocation's messages (see the module docs). Files are
    /// stored for `owner`. Storage failures end the stream with an error; a failed image download becomes the
    /// text `Failed to download image: {url}: {error}`, as in Dify.
    pub fn transform(self: Arc<Self>, owner: FileOwner, messages: MessageStream) -> MessageStream {
        let state = TransformState {
            manager: self,
            owner,
            chunks: HashMap::new(),
        };
        futures::stream::unfold((messages, state), |(mut messages, mut state)| async move {
            loop {
                let item = messages.next().await?;
                let message = match item {
                    Ok(message) => message,
                    Err(e) => return Some((Err(e), (messages, state))),
                };
                match state.apply(message).await {
                    Ok(Some(out)) => return Some((Ok(out), (messages, state))),
                    Ok(None) => continue,
                    Err(e) => return Some((Err(e.into()), (messages, state))),
                }
            }
        })
        .boxed()
    }
}

/// A blob arriving in chunks: its upload in progress.
struct ChunkUpload {
    writer: BlobWriter,
    key: String,
    ext: &'static str,
    next_sequence: u64,
    written: u64,
    total: u64,
}

struct TransformState {
    manager: Arc<ToolFileManager>,
    owner: FileOwner,
    chunks: HashMap<String, ChunkUpload>,
}

fn meta_str<'a>(meta: &'a Option<Map<String, Value>>, key: &str) -> Option<&'a str> {
    meta.as_ref().and_then(|m| m.get(key)).and_then(Value::as_str)
}

impl TransformState {
    async fn apply(&mut self, message: ToolInvokeMessage) -> Result<Option<ToolInvokeMessage>, ToolFileError> {
        let ToolInvokeMessage { payload, meta } = message;
        match payload {
            MessagePayload::Image(TextMessage { text: url }) => {
                match self.manager.create_from_url(&self.owner, &url).await {
                    Ok(record) => Ok(Some(self.manager.link_message(&record, meta))),
                    Err(e @ (ToolFileError::Blob(_) | ToolFileError::Store(_))) => Err(e),
                    Err(e) => {
                        let reason = match &e {
                            ToolFileError::Download { reason, .. } => reason.clone(),
                            other => other.to_string(),
                        };
                        Ok(Some(ToolInvokeMessage::text(format!(
                            "Failed to download image: {url}: {reason}"
                        ))))
                    }
                }
            }
            MessagePayload::Blob(blob) => {
                let mimetype = meta_str(&meta, "mime_type")
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                let filename = meta_str(&meta, "filename").map(str::to_owned);
                let record = self
                    .manager
                    .create_from_bytes(&self.owner, blob.blob, &mimetype, filename.as_deref())
                    .await?;
                Ok(Some(self.manager.link_message(&record, meta)))
            }
            MessagePayload::BlobChunk(chunk) => self.chunk(chunk, meta).await,
            MessagePayload::File(file) => Ok(Some(file_link(file, meta))),
            other => Ok(Some(ToolInvokeMessage { payload: other, meta })),
        }
    }

    /// Appends one chunk to its upload; the last one (`end`) finishes the file and yields its link. Chunks are
    /// written to storage as they come, so a large blob is never held whole.
    async fn chunk(
        &mut self,
        chunk: toolplane_core::BlobChunkMessage,
        meta: Option<Map<String, Value>>,
    ) -> Result<Option<ToolInvokeMessage>, ToolFileError> {
        if !self.chunks.contains_key(&chunk.id) {
            let mimetype = meta_str(&meta, "mime_type").unwrap_or("application/octet-stream");
            let (key, ext) = ToolFileManager::new_key(&self.owner.tenant_id, mimetype, ".bin");
            let writer = self.manager.blobs.writer(&key).await?;
            self.chunks.insert(
                chunk.id.clone(),
                ChunkUpload {
                    writer,
                    key,
                    ext,
                    next_sequence: chunk.sequence,
                    written: 0,
                    total: chunk.total_length,
                },
            );
        }
        let Some(upload) = self.chunks.get_mut(&chunk.id) else {
            return Ok(None);
        };
        if chunk.sequence != upload.next_sequence {
            let (expected, got) = (upload.next_sequence, chunk.sequence);
            if let Some(upload) = self.chunks.remove(&chunk.id) {
                upload.writer.abort().await.ok();
            }
            return Err(ToolFileError::ChunkOrder {
                id: chunk.id,
                expected,
                got,
            });
        }
        upload.written += chunk.blob.len() as u64;
        if upload.total > 0 && upload.written > upload.total {
            let total = upload.total;
            if let Some(upload) = self.chunks.remove(&chunk.id) {
                upload.writer.abort().await.ok();
            }
            return Err(ToolFileError::ChunkOverflow { id: chunk.id, total });
        }
        upload.next_sequence += 1;
        upload.writer.write(chunk.blob).await?;
        if !chunk.end {
            return Ok(None);
        }
        let Some(upload) = self.chunks.remove(&chunk.id) else {
            return Ok(None);
        };
        upload.writer.close().await?;
        let mimetype = meta_str(&meta, "mime_type")
            .unwrap_or("application/octet-stream")
            .to_owned();
        let name = ToolFileManager::display_name(&upload.key, meta_str(&meta, "filename"), upload.ext);
        let record = self
            .manager
            .record(&self.owner, upload.key, &mimetype, name, upload.written, None)
            .await?;
        Ok(Some(self.manager.link_message(&record, meta)))
    }
}

/// A `file` message whose `meta.file` is a tool file (`transfer_method = tool_file`) becomes an `image_link`
/// (images) or `link` to `/files/tools/{related_id}{extension}`, as in Dify; other files pass unchanged.
fn file_link(file: toolplane_core::FileMessage, meta: Option<Map<String, Value>>) -> ToolInvokeMessage {
    let described = meta.as_ref().and_then(|m| m.get("file")).and_then(Value::as_object);
    let tool_file = described.and_then(|f| {
        let is_tool_file = f.get("transfer_method").and_then(Value::as_str) == Some("tool_file");
        let id = f.get("related_id").and_then(Value::as_str)?;
        let extension = f.get("extension").and_then(Value::as_str).unwrap_or("");
        let is_image = f.get("type").and_then(Value::as_str) == Some("image");
        is_tool_file.then(|| (format!("/files/tools/{id}{extension}"), is_image))
    });
    match tool_file {
        Some((url, true)) => ToolInvokeMessage {
            payload: MessagePayload::ImageLink(TextMessage { text: url }),
            meta,
        },
        Some((url, false)) => ToolInvokeMessage {
            payload: MessagePayload::Link(TextMessage { text: url }),
            meta,
        },
        None => ToolInvokeMessage {
            payload: MessagePayload::File(file),
            meta,
        },
    }
}

/// Query of `GET /files/tools/{id}.{ext}`.
#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    timestamp: Option<String>,
    nonce: Option<String>,
    sign: Option<String>,
    #[serde(default)]
    as_attachment: Option<String>,
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, axum::Json(serde_json::json!({"code": status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace(' ', "_"), "message": message, "status": status.as_u16()}))).into_response()
}

/// `GET /files/tools/{id}.{ext}?timestamp&nonce&sign[&as_attachment=true]`: no API key, the signature authorizes.
/// 403 `Invalid request.` on a missing, bad or expired signature; 404 when the file does not exist; else the bytes
/// with the stored MIME type. HTML (and other types a browser would render as a page) is always sent as an
/// attachment. As in Dify, the extension in the path is not checked against the stored file.
pub async fn download(
    State(state): State<AppState>,
    Path(file): Path<String>,
    Query(query): Query<DownloadQuery>,
) -> Response {
    let id = file.split('.').next().unwrap_or_default();
    let (Some(timestamp), Some(nonce), Some(sign)) = (&query.timestamp, &query.nonce, &query.sign) else {
        return plain(StatusCode::FORBIDDEN, "Invalid request.");
    };
    let files = &state.tool_files;
    let timeout = files.access_timeout().as_secs();
    if let Err(error) = files.signer().verify_tool_file_now(id, timestamp, nonce, sign, timeout) {
        tracing::debug!(%error, file = %id, "tool-file URL rejected");
        return plain(StatusCode::FORBIDDEN, "Invalid request.");
    }
    let record = match state.store.tool_files().get_for_signed_url(id).await {
        Ok(Some(record)) => record,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "file not found"),
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    let reader = match state.blobs.reader(&record.file_key).await {
        Ok(reader) => reader,
        Err(e) if e.is_not_found() => return plain(StatusCode::NOT_FOUND, "file not found"),
        Err(e) => {
            tracing::warn!(error = %e, file = %record.id, "tool file unreadable");
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the file cannot be read from storage",
            );
        }
    };
    let size = reader.size;
    let mut response = Response::new(Body::from_stream(reader));
    let headers = response.headers_mut();
    let mimetype = HeaderValue::from_str(&record.mimetype)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, mimetype);
    if size > 0 {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    let as_attachment = query
        .as_attachment
        .as_deref()
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    // Dify's `enforce_download_for_html`: a page served from the API origin could run script there.
    let renders_as_page = record.mimetype.to_ascii_lowercase().contains("html")
        || record.name.to_ascii_lowercase().ends_with(".html")
        || record.name.to_ascii_lowercase().ends_with(".htm");
    if as_attachment || renders_as_page {
        let disposition = format!("attachment; filename*=UTF-8''{}", percent_encode(&record.name));
        if let Ok(value) = HeaderValue::from_str(&disposition) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// RFC 5987 percent-encoding (Python's `urllib.parse.quote` with `safe=""` semantics for non-unreserved bytes).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_file_messages_become_links() {
        let file = toolplane_core::FileMessage {
            file_marker: "file_marker".into(),
        };
        let meta = |transfer: &str, kind: &str| {
            let mut meta = Map::new();
            meta.insert(
                "file".into(),
                serde_json::json!({"transfer_method": transfer, "related_id": "f1", "extension": ".png", "type": kind}),
            );
            Some(meta)
        };
        let out = file_link(file.clone(), meta("tool_file", "image"));
        assert_eq!((out.kind(), out.as_text()), ("image_link", Some("/files/tools/f1.png")));
        let out = file_link(file.clone(), meta("tool_file", "document"));
        assert_eq!((out.kind(), out.as_text()), ("link", Some("/files/tools/f1.png")));
        let out = file_link(file, meta("remote_url", "image"));
        assert_eq!(out.kind(), "file");
    }

    #[test]
    fn extensions_follow_python_mimetypes() {
        assert_eq!(extension_for_mime("image/png"), Some(".png"));
        assert_eq!(extension_for_mime("image/jpeg; q=1"), Some(".jpg"));
        assert_eq!(extension_for_mime("application/x-unknown"), None);
        assert_eq!(mime_for_path("/a/b/cat.JPEG"), Some("image/jpeg"));
        assert_eq!(mime_for_path("/a/b/noext"), None);
        assert_eq!(percent_encode("a b.txt"), "a%20b.txt");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }
}
