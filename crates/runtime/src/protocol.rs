//! The stdio wire protocol of Dify plugins: request envelopes written to stdin, events read from stdout.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One request to a plugin: `data` = `{user_id, type, action}` ∪ `payload`.
#[derive(Debug, Clone, Default)]
pub struct InvokeRequest {
    /// The tenant the call runs for (backwards calls are scoped to it).
    pub tenant_id: String,
    /// `user_id`.
    pub user_id: String,
    /// Access type: `tool`, `model`, `oauth`, `dynamic_parameter`, …
    pub access_type: String,
    /// Access action: `invoke_tool`, `validate_tool_credentials`, …
    pub action: String,
    /// The action's fields.
    pub payload: Map<String, Value>,
    /// Envelope `conversation_id`.
    pub conversation_id: Option<String>,
    /// Envelope `message_id`.
    pub message_id: Option<String>,
    /// Envelope `app_id`.
    pub app_id: Option<String>,
    /// Envelope `endpoint_id`.
    pub endpoint_id: Option<String>,
    /// Envelope `context` (`{}` when absent).
    pub context: Option<Value>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    session_id: &'a str,
    conversation_id: Option<&'a str>,
    message_id: Option<&'a str>,
    app_id: Option<&'a str>,
    endpoint_id: Option<&'a str>,
    context: &'a Value,
    event: &'a str,
    data: &'a Value,
}

/// The request line (with its `\n`) for `session_id`.
pub fn request_line(session_id: &str, request: &InvokeRequest) -> Vec<u8> {
    let mut data = Map::with_capacity(request.payload.len() + 3);
    data.insert("user_id".into(), Value::String(request.user_id.clone()));
    data.insert("type".into(), Value::String(request.access_type.clone()));
    data.insert("action".into(), Value::String(request.action.clone()));
    for (k, v) in &request.payload {
        data.insert(k.clone(), v.clone());
    }
    let empty = Value::Object(Map::new());
    line(&Envelope {
        session_id,
        conversation_id: request.conversation_id.as_deref(),
        message_id: request.message_id.as_deref(),
        app_id: request.app_id.as_deref(),
        endpoint_id: request.endpoint_id.as_deref(),
        context: request.context.as_ref().unwrap_or(&empty),
        event: "request",
        data: &Value::Object(data),
    })
}

/// A `backwards_response` line: `event` is `response`, `error` or `end`.
pub fn backwards_line(
    session_id: &str,
    backwards_request_id: &str,
    event: &str,
    message: &str,
    data: Value,
) -> Vec<u8> {
    let data = serde_json::json!({
        "backwards_request_id": backwards_request_id,
        "event": event,
        "message": message,
        "data": data,
    });
    line(&Envelope {
        session_id,
        conversation_id: None,
        message_id: None,
        app_id: None,
        endpoint_id: None,
        context: &Value::Null,
        event: "backwards_response",
        data: &data,
    })
}

fn line(envelope: &Envelope<'_>) -> Vec<u8> {
    // Serializing a struct of strings and JSON values cannot fail.
    let mut bytes = serde_json::to_vec(envelope).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// A plugin-side error (`{error_type, message, args}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginError {
    /// The exception class name, e.g. `ToolProviderCredentialValidationError`.
    #[serde(default)]
    pub error_type: String,
    /// The exception text.
    #[serde(default)]
    pub message: String,
    /// Extra data (a traceback since SDK 0.10.1).
    #[serde(default)]
    pub args: Value,
}

/// One parsed stdout line.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginEvent {
    /// Liveness.
    Heartbeat,
    /// A log record of the plugin.
    Log {
        /// `INFO`, `ERROR`, …
        level: String,
        /// The text.
        message: String,
    },
    /// An error not tied to a session.
    Error(String),
    /// A session message.
    Session {
        /// The session.
        session_id: String,
        /// What happened.
        message: SessionMessage,
    },
    /// Anything else: the manifest line, unknown events, non-JSON output.
    Other,
}

/// A message of one session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionMessage {
    /// One response chunk.
    Stream(Value),
    /// A backwards call.
    Invoke {
        /// `storage`, `tool`, `llm`, …
        kind: String,
        /// Correlates the replies.
        backwards_request_id: String,
        /// The call's payload.
        request: Value,
    },
    /// The session failed (an `end` follows).
    Error(PluginError),
    /// The session is over.
    End,
}

/// Parses one stdout line (without its newline).
pub fn parse_line(line: &[u8]) -> PluginEvent {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(line) else {
        return PluginEvent::Other;
    };
    let data = object.remove("data").unwrap_or(Value::Null);
    match object.get("event").and_then(Value::as_str) {
        Some("heartbeat") => PluginEvent::Heartbeat,
        Some("log") => PluginEvent::Log {
            level: data.get("level").and_then(Value::as_str).unwrap_or("INFO").to_owned(),
            message: data
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        Some("error") => {
            let text = match &data {
                Value::String(s) => s.clone(),
                other => other
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| other.to_string()),
            };
            match object.get("session_id").and_then(Value::as_str) {
                Some(id) => PluginEvent::Session {
                    session_id: id.to_owned(),
                    message: SessionMessage::Error(PluginError {
                        error_type: "PluginError".into(),
                        message: text,
                        args: Value::Null,
                    }),
                },
                None => PluginEvent::Error(text),
            }
        }
        Some("session") => {
            let Some(session_id) = object.get("session_id").and_then(Value::as_str) else {
                return PluginEvent::Other;
            };
            let Value::Object(mut message) = data else {
                return PluginEvent::Other;
            };
            let inner = message.remove("data").unwrap_or(Value::Null);
            let message = match message.get("type").and_then(Value::as_str) {
                Some("stream") => SessionMessage::Stream(inner),
                Some("end") => SessionMessage::End,
                Some("error") => SessionMessage::Error(serde_json::from_value(inner.clone()).unwrap_or(PluginError {
                    error_type: "PluginError".into(),
                    message: inner.to_string(),
                    args: Value::Null,
                })),
                Some("invoke") => SessionMessage::Invoke {
                    kind: inner.get("type").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    backwards_request_id: inner
                        .get("backwards_request_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    request: inner.get("request").cloned().unwrap_or(Value::Null),
                },
                other => SessionMessage::Error(PluginError {
                    error_type: "PluginDaemonInternalServerError".into(),
                    message: format!("unknown session message type {other:?}"),
                    args: Value::Null,
                }),
            };
            PluginEvent::Session {
                session_id: session_id.to_owned(),
                message,
            }
        }
        _ => PluginEvent::Other,
    }
}

/// The `session_id` of a (possibly truncated) session line, found textually.
pub fn sniff_session_id(prefix: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(prefix);
    let start = text.find("\"session_id\"")? + "\"session_id\"".len();
    let rest = text[start..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_observed_lines() {
        assert_eq!(
            parse_line(br#"{"event":"heartbeat","session_id":null,"data":{}}"#),
            PluginEvent::Heartbeat
        );
        assert_eq!(
            parse_line(br#"{"version":"0.0.1","type":"plugin","author":"probe"}"#),
            PluginEvent::Other
        );
        assert_eq!(parse_line(b"not json"), PluginEvent::Other);
        assert!(matches!(
            parse_line(
                br#"{"event": "log", "data": {"level": "INFO", "message": "Installed tool: probe", "timestamp": 1.0}}"#
            ),
            PluginEvent::Log { .. }
        ));
        let PluginEvent::Session { session_id, message: SessionMessage::Error(e) } = parse_line(
            br#"{"event":"session","session_id":"s","data":{"type":"error","data":{"error_type":"ValueError","message":"boom","args":{}}}}"#,
        ) else {
            panic!("not an error")
        };
        assert_eq!(
            (session_id.as_str(), e.error_type.as_str(), e.message.as_str()),
            ("s", "ValueError", "boom")
        );
        let PluginEvent::Session { message: SessionMessage::Invoke { kind, backwards_request_id, .. }, .. } = parse_line(
            br#"{"event":"session","session_id":"s","data":{"type":"invoke","data":{"type":"storage","backwards_request_id":"b1","request":{"opt":"get","key":"k"}}}}"#,
        ) else {
            panic!("not an invoke")
        };
        assert_eq!((kind.as_str(), backwards_request_id.as_str()), ("storage", "b1"));
    }

    #[test]
    fn sniffs_session_ids() {
        assert_eq!(
            sniff_session_id(br#"{"event":"session","session_id":"abc","data":{"ty"#),
            Some("abc".into())
        );
        assert_eq!(sniff_session_id(br#"{"event":"session","#), None);
    }

    #[test]
    fn request_lines_merge_data() {
        let mut payload = Map::new();
        payload.insert("provider".into(), "p".into());
        let line = request_line(
            "s1",
            &InvokeRequest {
                user_id: "u".into(),
                access_type: "tool".into(),
                action: "invoke_tool".into(),
                payload,
                ..Default::default()
            },
        );
        assert_eq!(line.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["data"]["provider"], "p");
        assert_eq!(v["data"]["type"], "tool");
        assert_eq!(v["event"], "request");
        assert_eq!(v["context"], serde_json::json!({}));
    }
}
