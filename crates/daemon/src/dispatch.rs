//! The dispatch routes (`POST /plugin/{tenant_id}/dispatch/…`, `X-Plugin-ID`): one plugin session per request,
//! streamed back as Server-Sent Events `data: {code, message, data}\n\n`, as the original daemon does.
//!
//! The session is bounded by `PLUGIN_MAX_EXECUTION_TIMEOUT`; when the caller disconnects or the timeout passes the
//! session is dropped, which cancels it in the runtime (a plugin that keeps working on it while it has nothing
//! else to do is killed and restarted).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use toolplane_plugin::PluginUniqueIdentifier;
use toolplane_runtime::{InvokeRequest, PluginRuntime, Session, SessionError};

use crate::service::{DaemonState, PluginEnvironment};

/// [`PluginEnvironment`] over the runtime: preparing = building the environment and proving the plugin starts.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeEnvironment(pub(crate) PluginRuntime);

#[async_trait]
impl PluginEnvironment for RuntimeEnvironment {
    async fn prepare(&self, unique_identifier: &PluginUniqueIdentifier, package: &[u8]) -> Result<(), String> {
        self.prepare_with_warnings(unique_identifier, package).await.map(drop)
    }

    async fn prepare_with_warnings(
        &self,
        unique_identifier: &PluginUniqueIdentifier,
        package: &[u8],
    ) -> Result<Vec<String>, String> {
        let report = self.0.install(package).await.map_err(|e| e.to_string())?;
        for warning in &report.warnings {
            tracing::warn!(plugin = %unique_identifier.as_str(), "{warning}");
        }
        Ok(report.warnings)
    }

    async fn release(&self, unique_identifier: &str) {
        self.0.release(unique_identifier).await;
    }
}

/// Dispatch path → (access type, access action), as in the original's route table.
pub fn dispatch_action(path: &str) -> Option<(&'static str, &'static str)> {
    Some(match path.trim_matches('/') {
        "tool/invoke" => ("tool", "invoke_tool"),
        "tool/validate_credentials" => ("tool", "validate_tool_credentials"),
        "tool/get_runtime_parameters" => ("tool", "get_tool_runtime_parameters"),
        "llm/invoke" => ("model", "invoke_llm"),
        "llm/num_tokens" => ("model", "get_llm_num_tokens"),
        "text_embedding/invoke" => ("model", "invoke_text_embedding"),
        "multimodal_embedding/invoke" => ("model", "invoke_multimodal_embedding"),
        "text_embedding/num_tokens" => ("model", "get_text_embedding_num_tokens"),
        "rerank/invoke" => ("model", "invoke_rerank"),
        "multimodal_rerank/invoke" => ("model", "invoke_multimodal_rerank"),
        "tts/invoke" => ("model", "invoke_tts"),
        "tts/model/voices" => ("model", "get_tts_model_voices"),
        "speech2text/invoke" => ("model", "invoke_speech2text"),
        "moderation/invoke" => ("model", "invoke_moderation"),
        "model/validate_provider_credentials" => ("model", "validate_provider_credentials"),
        "model/validate_model_credentials" => ("model", "validate_model_credentials"),
        "model/schema" => ("model", "get_ai_model_schemas"),
        "model/polling/start" => ("model", "start_polling"),
        "model/polling/check" => ("model", "check_polling"),
        "agent_strategy/invoke" => ("agent_strategy", "invoke_agent_strategy"),
        "oauth/get_authorization_url" => ("oauth", "get_authorization_url"),
        "oauth/get_credentials" => ("oauth", "get_credentials"),
        "oauth/refresh_credentials" => ("oauth", "refresh_credentials"),
        "dynamic_select/fetch_parameter_options" => ("dynamic_parameter", "fetch_parameter_options"),
        "datasource/validate_credentials" => ("datasource", "validate_datasource_credentials"),
        "datasource/get_website_crawl" => ("datasource", "invoke_website_datasource_get_crawl"),
        "datasource/get_online_document_pages" => ("datasource", "invoke_online_document_datasource_get_pages"),
        "datasource/get_online_document_page_content" => {
            ("datasource", "invoke_online_document_datasource_get_page_content")
        }
        "datasource/online_drive_browse_files" => ("datasource", "invoke_online_drive_browse_files"),
        "datasource/online_drive_download_file" => ("datasource", "invoke_online_drive_download_file"),
        "trigger/invoke_event" => ("trigger", "invoke_trigger_event"),
        "trigger/validate_credentials" => ("trigger", "validate_trigger_credentials"),
        "trigger/dispatch_event" => ("trigger", "dispatch_trigger_event"),
        "trigger/subscribe" => ("trigger", "subscribe_trigger"),
        "trigger/unsubscribe" => ("trigger", "unsubscribe_trigger"),
        "trigger/refresh" => ("trigger", "refresh_trigger"),
        _ => return None,
    })
}

/// `InvokePluginRequest`: the body Dify's API server sends.
#[derive(Debug, Deserialize)]
struct DispatchBody {
    /// Only read by the `/v2/invoke` routes; the v1 routes take the tenant from the path.
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    endpoint_id: Option<String>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    data: Option<Map<String, Value>>,
}

fn sse_error(code: i64, error_type: &str, message: &str) -> Bytes {
    let inner = json!({"message": message, "error_type": error_type, "args": null});
    sse(&json!({"code": code, "message": inner.to_string(), "data": null}))
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn event_stream(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn single_error(code: i64, error_type: &str, message: &str) -> Response {
    event_stream(Body::from(sse_error(code, error_type, message)))
}

/// The text of a request header, when present and not empty.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The header `name` and the body of a dispatch request. Taking the request whole (instead of the `HeaderMap` and
/// `Bytes` extractors) reads the one header without copying the header map; the body is read as the `Bytes`
/// extractor does (`DefaultBodyLimit` applies), and its rejection is the answer when reading fails.
#[allow(clippy::result_large_err)] // the error is the finished HTTP answer
async fn header_and_body(
    state: &DaemonState,
    request: Request,
    name: &str,
) -> Result<(Option<String>, Bytes), Response> {
    let header = header_text(request.headers(), name);
    let body = Bytes::from_request(request, state)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((header, body))
}

/// `POST /plugin/{tenant_id}/dispatch/{*action}`.
pub(crate) async fn dispatch(
    State(state): State<DaemonState>,
    Path((tenant_id, action)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (plugin_id, body) = match header_and_body(&state, request, "X-Plugin-ID").await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    if let Some(response) = without_runtime(&state, &action) {
        return response;
    }
    let Some(plugin_id) = plugin_id else {
        return single_error(-400, "PluginDaemonBadRequestError", "X-Plugin-ID header is required");
    };
    let request = match invoke_request(&action, Some(tenant_id), &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let session = match state.plugin_session(&plugin_id, &request).await {
        Ok(s) => s,
        Err(e) => return single_error(e.code(), e.error_type(), &e.to_string()),
    };
    session_response(&state, session)
}

/// `POST /v2/invoke/dispatch/{*action}` (`X-Plugin-Unique-Identifier`): the same routes (plus `endpoint/invoke`)
/// for an uploaded package, whether or not the tenant (named by `tenant_id` in the body) installed it.
pub(crate) async fn dispatch_v2(
    State(state): State<DaemonState>,
    Path(action): Path<String>,
    request: Request,
) -> Response {
    let (uid, body) = match header_and_body(&state, request, "X-Plugin-Unique-Identifier").await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    if let Some(response) = without_runtime(&state, &action) {
        return response;
    }
    let Some(uid) = uid else {
        return single_error(
            -400,
            "PluginDaemonBadRequestError",
            "X-Plugin-Unique-Identifier header is required",
        );
    };
    let request = match invoke_request(&action, None, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let session = match state.stored_plugin_session(&uid, &request).await {
        Ok(s) => s,
        Err(e) => return single_error(e.code(), e.error_type(), &e.to_string()),
    };
    session_response(&state, session)
}

/// The answer of a daemon that has no plugin runtime.
fn without_runtime(state: &DaemonState, action: &str) -> Option<Response> {
    state.runtime().is_none().then(|| {
        single_error(
            -500,
            "PluginDaemonInternalServerError",
            &format!("this daemon runs without the plugin runtime, so dispatch/{action} cannot run"),
        )
    })
}

/// The runtime request of a dispatch call; `tenant_id` comes from the path (v1) or the body (v2).
#[allow(clippy::result_large_err)] // the error is the finished HTTP answer
fn invoke_request(action: &str, tenant_id: Option<String>, body: &Bytes) -> Result<InvokeRequest, Response> {
    let route = if tenant_id.is_none() && action.trim_matches('/') == "endpoint/invoke" {
        Some(("endpoint", "invoke_endpoint"))
    } else {
        dispatch_action(action)
    };
    let Some((access_type, access_action)) = route else {
        return Err(single_error(
            -404,
            "PluginDaemonNotFoundError",
            &format!("unknown dispatch route {action}"),
        ));
    };
    let body: DispatchBody = serde_json::from_slice(body).map_err(|e| {
        single_error(
            -400,
            "PluginDaemonBadRequestError",
            &format!("the request body is not valid: {e}"),
        )
    })?;
    let Some(tenant_id) = tenant_id.or(body.tenant_id).filter(|t| !t.is_empty()) else {
        return Err(single_error(
            -400,
            "PluginDaemonBadRequestError",
            "tenant_id is required in the request body",
        ));
    };
    Ok(InvokeRequest {
        tenant_id,
        user_id: body.user_id.unwrap_or_default(),
        access_type: access_type.to_owned(),
        action: access_action.to_owned(),
        payload: body.data.unwrap_or_default(),
        conversation_id: body.conversation_id,
        message_id: body.message_id,
        app_id: body.app_id,
        endpoint_id: body.endpoint_id,
        context: body.context,
    })
}

fn session_response(state: &DaemonState, session: Session) -> Response {
    let timeout = state
        .runtime()
        .map(|r| r.config().max_execution_timeout)
        .unwrap_or(Duration::from_secs(600));
    event_stream(Body::from_stream(stream_session(session, timeout)))
}

/// A session as SSE frames; ends after the plugin's end, an error, or the timeout. Dropping the stream (caller
/// gone) drops the session, which cancels it.
///
/// Every frame that has already arrived when one is written goes out with it, so a plugin that answers with
/// several chunks at once costs one write, not one per chunk. Chunks go out as the plugin wrote them, not decoded
/// and encoded again.
pub fn stream_session(
    session: Session,
    timeout: Duration,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    session.keep_chunk_text();
    SessionFrames {
        session: Some(session),
        // One timer for the whole session (not one per wait for a chunk).
        deadline: Box::pin(tokio::time::sleep(timeout)),
        timeout,
    }
}

/// The stream behind [`stream_session`]; `session` is `None` once the last frame went out.
struct SessionFrames {
    session: Option<Session>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl futures::Stream for SessionFrames {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(session) = this.session.as_mut() else {
            return Poll::Ready(None);
        };
        // The session first: what has arrived by the deadline still goes out.
        let first = match session.poll_next_text(cx) {
            Poll::Ready(Some(item)) => item,
            Poll::Ready(None) => {
                this.session = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.session = None;
                let message = format!(
                    "killed by timeout: the plugin did not finish within {} s",
                    this.timeout.as_secs()
                );
                return Poll::Ready(Some(Ok(sse_error(-500, "PluginDaemonInternalServerError", &message))));
            }
        };
        let mut frames = Vec::new();
        let mut item = Some(first);
        while let Some(next) = item.take() {
            match next {
                Ok(chunk) => push_chunk_frame(&mut frames, &chunk),
                Err(e) => {
                    frames.extend_from_slice(&session_error_frame(e));
                    this.session = None;
                    return Poll::Ready(Some(Ok(Bytes::from(frames))));
                }
            }
            match session.try_next_text() {
                Poll::Ready(Some(ready)) => item = Some(ready),
                // The end arrived too: the next poll of the session returns `None` at once.
                Poll::Ready(None) | Poll::Pending => {}
            }
        }
        Poll::Ready(Some(Ok(Bytes::from(frames))))
    }
}

/// Appends `data: {"code": 0, "message": "success", "data": chunk}\n\n` with the chunk's text as the plugin wrote it.
fn push_chunk_frame(out: &mut Vec<u8>, chunk: &RawValue) {
    out.extend_from_slice(br#"data: {"code":0,"message":"success","data":"#);
    let text = chunk.get();
    // A frame is one line. A chunk comes from one line of the plugin, so it has no `\n`; a `\r` can only be JSON
    // whitespace between tokens (never inside a string), which the SSE reader would take for a line end: such a
    // chunk is encoded again, compactly.
    if text.contains('\r') {
        match serde_json::from_str::<Value>(text) {
            // Writing a `Value` into a `Vec` cannot fail: it has no I/O and every `Value` is serialisable.
            Ok(value) if serde_json::to_writer(&mut *out, &value).is_ok() => {}
            _ => out.extend_from_slice(b"null"),
        }
    } else {
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(b"}\n\n");
}

fn session_error_frame(error: SessionError) -> Bytes {
    match error {
        SessionError::Plugin(e) => {
            let plugin = json!({"error_type": e.error_type, "message": e.message, "args": e.args});
            sse_error(-500, "PluginInvokeError", &plugin.to_string())
        }
        SessionError::Runtime(message) => sse_error(-500, "PluginDaemonInternalServerError", &message),
        SessionError::ConnectionClosed(message) => sse_error(-500, "ConnectionClosedError", &message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_dispatch_routes() {
        assert_eq!(dispatch_action("tool/invoke"), Some(("tool", "invoke_tool")));
        assert_eq!(
            dispatch_action("dynamic_select/fetch_parameter_options"),
            Some(("dynamic_parameter", "fetch_parameter_options"))
        );
        assert_eq!(dispatch_action("llm/invoke"), Some(("model", "invoke_llm")));
        assert_eq!(dispatch_action("nope"), None);
    }

    #[test]
    fn chunk_frames_are_the_sse_envelope_around_the_chunk() {
        let chunk = json!({"type": "text", "message": {"text": "a \"quoted\" line\n"}});
        let mut frames = Vec::new();
        push_chunk_frame(&mut frames, &serde_json::value::to_raw_value(&chunk).unwrap());
        push_chunk_frame(&mut frames, RawValue::NULL);
        let expected = [chunk, Value::Null]
            .into_iter()
            .map(|data| sse(&json!({"code": 0, "message": "success", "data": data})))
            .fold(Vec::new(), |mut all, frame| {
                all.extend_from_slice(&frame);
                all
            });
        assert_eq!(String::from_utf8(frames).unwrap(), String::from_utf8(expected).unwrap());
    }

    #[test]
    fn chunk_frames_keep_the_plugins_text_and_stay_one_line() {
        // Python's json.dumps spacing passes through untouched.
        let spaced = RawValue::from_string(r#"{"type": "text", "message": {"text": "hi"}}"#.to_owned()).unwrap();
        let mut frames = Vec::new();
        push_chunk_frame(&mut frames, &spaced);
        assert_eq!(
            String::from_utf8(frames).unwrap(),
            "data: {\"code\":0,\"message\":\"success\",\"data\":{\"type\": \"text\", \"message\": {\"text\": \"hi\"}}}\n\n"
        );
        // A carriage return between tokens would end the SSE line early: that chunk is encoded again.
        let with_cr = RawValue::from_string("{\"a\":\r1}".to_owned()).unwrap();
        let mut frames = Vec::new();
        push_chunk_frame(&mut frames, &with_cr);
        assert_eq!(
            String::from_utf8(frames).unwrap(),
            "data: {\"code\":0,\"message\":\"success\",\"data\":{\"a\":1}}\n\n"
        );
    }
}
