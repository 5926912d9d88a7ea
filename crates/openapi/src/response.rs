//! Turning an HTTP response into tool messages.

use toolplane_core::{ToolError, ToolInvokeMessage};
use toolplane_net::{Response, SafeClient, header};

/// Dify's text for an empty response body.
pub const EMPTY_RESPONSE_MESSAGE: &str = "Empty response from the tool, please check your parameters and try again.";

/// How many characters of an error response body go into the error message.
pub const ERROR_EXCERPT_CHARS: usize = 1000;

/// Reads `response` into messages:
/// status ≥ 400 → [`ToolError::Invoke`] with the status and at most [`ERROR_EXCERPT_CHARS`] of the body;
/// empty body → one text message [`EMPTY_RESPONSE_MESSAGE`]; JSON (`application/json`, `*+json`) that parses →
/// one `json` message; textual content → one `text` message; anything else → one `blob` with its MIME type (and
/// the file name of `Content-Disposition`, if any).
pub async fn response_messages(client: &SafeClient, response: Response) -> Result<Vec<ToolInvokeMessage>, ToolError> {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let filename = response
        .headers()
        .get(header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(disposition_filename);
    if status.as_u16() >= 400 {
        let excerpt = error_excerpt(response).await;
        return Err(ToolError::Invoke(format!(
            "Request failed with status code {} and {excerpt}",
            status.as_u16()
        )));
    }
    let body = client
        .read_body(response)
        .await
        .map_err(|e| ToolError::Invoke(e.to_string()))?;
    if body.is_empty() {
        return Ok(vec![ToolInvokeMessage::text(EMPTY_RESPONSE_MESSAGE)]);
    }
    let essence = content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let is_json = essence == "application/json" || essence.ends_with("+json") || essence == "text/json";
    if is_json && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
        return Ok(vec![ToolInvokeMessage::json(value)]);
    }
    let textual = is_json
        || essence.starts_with("text/")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
                | "application/yaml"
                | "application/x-yaml"
                | "application/graphql"
        );
    if textual || (essence.is_empty() && std::str::from_utf8(&body).is_ok()) {
        return Ok(vec![ToolInvokeMessage::text(
            String::from_utf8_lossy(&body).into_owned(),
        )]);
    }
    let mime = if essence.is_empty() {
        "application/octet-stream"
    } else {
        essence.as_str()
    };
    Ok(vec![ToolInvokeMessage::blob(body.to_vec(), mime, filename.as_deref())])
}

/// Reads at most a few KiB of an error body, never the whole of a huge one.
async fn error_excerpt(mut response: Response) -> String {
    const MAX_BYTES: usize = 8 * 1024;
    let mut bytes = Vec::new();
    while bytes.len() < MAX_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(MAX_BYTES);
    crate::util::truncate_chars(&String::from_utf8_lossy(&bytes), ERROR_EXCERPT_CHARS)
}

/// `filename="a.pdf"` (or `filename=a.pdf`) of a `Content-Disposition` header.
fn disposition_filename(value: &str) -> Option<String> {
    value.split(';').map(str::trim).find_map(|part| {
        let (key, v) = part.split_once('=')?;
        (key.trim().eq_ignore_ascii_case("filename")).then(|| v.trim().trim_matches('"').to_owned())
    })
}
