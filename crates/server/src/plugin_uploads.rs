//! Files plugins upload (`upload_file` backwards calls), as Dify's `POST /files/upload/for-plugin`.
//!
//! The plugin asks its host for a URL (`{filename, mimetype}` → `{url}`); [`PluginUploadUrls`] signs one on
//! `INTERNAL_FILES_URL` (else `FILES_URL`) with `SECRET_KEY`, binding the file name, MIME type, tenant and user. The
//! plugin then POSTs the multipart `file` there; [`upload_for_plugin`] checks the signature against the part's own
//! name and type and its age against `FILES_ACCESS_TIMEOUT`, streams the bytes into a tool file and answers 201
//! with the UploadFileResponse JSON the SDK parses (`id, name, size, extension, mime_type, preview_url, …`).

use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use toolplane_runtime::FileUploads;
use toolplane_secrets::FileSigner;

use crate::state::AppState;
use crate::tool_files::{FileOwner, ToolFileError, extension_of};

/// The largest file a plugin may upload (the route's body limit).
pub const PLUGIN_UPLOAD_MAX_BYTES: usize = 100 * 1024 * 1024;

/// Signs plugin upload URLs for the plugin runtime.
pub struct PluginUploadUrls {
    signer: FileSigner,
    base: String,
}

impl std::fmt::Debug for PluginUploadUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginUploadUrls")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl PluginUploadUrls {
    /// URLs on `base_url` (where plugin processes reach this server: `INTERNAL_FILES_URL`), signed with
    /// `secret_key` (`SECRET_KEY`).
    pub fn new(secret_key: &str, base_url: &str) -> Self {
        Self {
            signer: FileSigner::new(secret_key),
            base: base_url.trim_end_matches('/').to_owned(),
        }
    }
}

impl FileUploads for PluginUploadUrls {
    fn upload_url(&self, tenant_id: &str, user_id: &str, filename: &str, mimetype: &str) -> Result<String, String> {
        self.signer
            .sign_plugin_upload(&self.base, filename, mimetype, tenant_id, user_id)
            .map_err(|e| format!("cannot sign the upload URL: {e}"))
    }
}

/// Query of `POST /files/upload/for-plugin`.
#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    timestamp: Option<String>,
    nonce: Option<String>,
    sign: Option<String>,
    tenant_id: Option<String>,
    user_id: Option<String>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message, "status": status.as_u16()})),
    )
        .into_response()
}

fn forbidden() -> Response {
    // Dify answers every authorization failure here the same way, so a caller learns nothing about which part failed.
    error(StatusCode::FORBIDDEN, "forbidden", "Invalid request.")
}

/// `POST /files/upload/for-plugin?timestamp&nonce&sign&user_id&tenant_id`, multipart `file`: no API key, the
/// signature authorizes. 403 `Invalid request.` for a missing or bad signature, an expired URL, or a part without
/// a file name or type; 400 without a `file` part; 413 over [`PLUGIN_UPLOAD_MAX_BYTES`]; else 201.
pub async fn upload_for_plugin(
    State(state): State<AppState>,
    Query(query): Query<UploadQuery>,
    mut form: Multipart,
) -> Response {
    let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let (Some(tenant_id), Some(timestamp), Some(nonce), Some(sign)) = (
        nonempty(&query.tenant_id),
        nonempty(&query.timestamp),
        nonempty(&query.nonce),
        nonempty(&query.sign),
    ) else {
        return forbidden();
    };
    let user_id = query.user_id.unwrap_or_default();
    let field = loop {
        match form.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => break field,
            Ok(Some(_)) => {}
            Ok(None) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "no_file_uploaded",
                    "the upload has no multipart part named `file`",
                );
            }
            Err(e) => {
                return error(
                    e.status(),
                    "invalid_param",
                    &format!("the upload is not valid multipart: {e}"),
                );
            }
        }
    };
    let (Some(filename), Some(mimetype)) = (
        field.file_name().map(str::to_owned).filter(|n| !n.is_empty()),
        field.content_type().map(str::to_owned).filter(|m| !m.is_empty()),
    ) else {
        return forbidden();
    };
    let files = &state.tool_files;
    let timeout = files.access_timeout().as_secs();
    if let Err(e) = files.signer().verify_plugin_upload(
        &filename,
        &mimetype,
        &tenant_id,
        &user_id,
        &timestamp,
        &nonce,
        &sign,
        FileSigner::now(),
        timeout,
    ) {
        tracing::debug!(error = %e, tenant = %tenant_id, "plugin upload URL rejected");
        return forbidden();
    }
    // A valid signature names a tenant this deployment signed for; it may have been deleted since.
    match state.store.tenants().get(&tenant_id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "tenant_not_found",
                &format!("tenant {tenant_id} does not exist in toolplane, so the file cannot be stored for it"),
            );
        }
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_server_error",
                &e.to_string(),
            );
        }
    }
    let owner = FileOwner {
        tenant_id,
        user_id,
        conversation_id: None,
    };
    let chunks = field.map(|chunk| chunk.map_err(|e| e.body_text()));
    let record = match files
        .create_from_stream(&owner, chunks, &mimetype, Some(&filename), None)
        .await
    {
        Ok(record) => record,
        Err(ToolFileError::Download { reason, .. }) if reason.contains("length limit") => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                &format!("the file is larger than {PLUGIN_UPLOAD_MAX_BYTES} bytes"),
            );
        }
        Err(ToolFileError::Download { reason, .. }) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_param",
                &format!("the upload broke off: {reason}"),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "plugin upload could not be stored");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_server_error",
                &e.to_string(),
            );
        }
    };
    let extension = extension_of(&record);
    let preview_url = files.sign(&record.id, &extension, true).ok();
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "id": record.id,
            "name": record.name,
            "size": record.size,
            "extension": extension,
            "mime_type": mimetype,
            "created_by": record.user_id,
            "created_at": record.created_at,
            "preview_url": preview_url,
            "source_url": preview_url,
            "original_url": record.original_url,
            "user_id": record.user_id,
            "tenant_id": record.tenant_id,
            "conversation_id": record.conversation_id,
            "file_key": record.file_key,
        })),
    )
        .into_response()
}
