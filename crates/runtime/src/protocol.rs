//! The stdio wire protocol of Dify plugins: request envelopes written to stdin, events read from stdout.

use std::borrow::Cow;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
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
struct Envelope<'a, D: Serialize> {
    session_id: &'a str,
    conversation_id: Option<&'a str>,
    message_id: Option<&'a str>,
    app_id: Option<&'a str>,
    endpoint_id: Option<&'a str>,
    context: &'a Value,
    event: &'a str,
    data: &'a D,
}

/// The request line (with its `\n`) for `session_id`.
pub fn request_line(session_id: &str, request: &InvokeRequest) -> Vec<u8> {
    let empty = Value::Object(Map::new());
    line(&Envelope {
        session_id,
        conversation_id: request.conversation_id.as_deref(),
        message_id: request.message_id.as_deref(),
        app_id: request.app_id.as_deref(),
        endpoint_id: request.endpoint_id.as_deref(),
        context: request.context.as_ref().unwrap_or(&empty),
        event: "request",
        data: &RequestData(request),
    })
}

/// A request's `data`: `{user_id, type, action}` then the payload's fields, serialised straight from the request
/// (no copy of the payload). A payload field of one of those three names takes its place, as a map insert would.
struct RequestData<'a>(&'a InvokeRequest);

impl Serialize for RequestData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let request = self.0;
        let own = [
            ("user_id", &request.user_id),
            ("type", &request.access_type),
            ("action", &request.action),
        ];
        let overridden = own.iter().filter(|(k, _)| request.payload.contains_key(*k)).count();
        let mut map = serializer.serialize_map(Some(request.payload.len() + own.len() - overridden))?;
        for (key, value) in own {
            match request.payload.get(key) {
                Some(payload_value) => map.serialize_entry(key, payload_value)?,
                None => map.serialize_entry(key, value)?,
            }
        }
        for (key, value) in &request.payload {
            if !own.iter().any(|(k, _)| k == key) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
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

fn line<D: Serialize>(envelope: &Envelope<'_, D>) -> Vec<u8> {
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
#[derive(Debug, Clone)]
pub enum SessionMessage {
    /// One response chunk, as the plugin wrote it (validated JSON): passed on without being decoded and encoded
    /// again, or decoded by whoever wants a [`Value`].
    Stream(Box<RawValue>),
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

/// Chunks compare by their text (raw JSON has no other equality).
impl PartialEq for SessionMessage {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Stream(a), Self::Stream(b)) => a.get() == b.get(),
            (
                Self::Invoke {
                    kind,
                    backwards_request_id,
                    request,
                },
                Self::Invoke {
                    kind: other_kind,
                    backwards_request_id: other_id,
                    request: other_request,
                },
            ) => kind == other_kind && backwards_request_id == other_id && request == other_request,
            (Self::Error(a), Self::Error(b)) => a == b,
            (Self::End, Self::End) => true,
            _ => false,
        }
    }
}

/// The fields of a stdout line that decide what it is; the rest (e.g. a chunk) stays undecoded.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(default, borrow)]
    event: Option<&'a RawValue>,
    #[serde(default, borrow)]
    session_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// A session line's `data`: `{type, data}`.
#[derive(Deserialize)]
struct SessionData<'a> {
    #[serde(default, borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// The text of a JSON string; `None` for any other JSON value.
fn json_str(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw?;
    // Borrowing works unless the string has escapes.
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(text) => Some(Cow::Borrowed(text)),
        Err(_) => serde_json::from_str::<String>(raw.get()).ok().map(Cow::Owned),
    }
}

/// Whether a JSON text is an object (the first byte of a validated value decides).
fn is_object(raw: &RawValue) -> bool {
    raw.get().trim_start().starts_with('{')
}

/// A JSON value decoded, `null` when absent.
fn decode(raw: Option<&RawValue>) -> Value {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or(Value::Null)
}

/// Parses one stdout line (without its newline).
///
/// Only the envelope is decoded: a stream chunk, every session's bulk, stays the plugin's own JSON text (validated
/// by the parse), so that a consumer passing it on (the dispatch routes' SSE) does not decode and encode it again.
pub fn parse_line(line: &[u8]) -> PluginEvent {
    if !line.trim_ascii_start().starts_with(b"{") {
        return PluginEvent::Other;
    }
    let Ok(parsed) = serde_json::from_slice::<Line<'_>>(line) else {
        return PluginEvent::Other;
    };
    match json_str(parsed.event).as_deref() {
        Some("heartbeat") => PluginEvent::Heartbeat,
        Some("log") => {
            let data = decode(parsed.data);
            PluginEvent::Log {
                level: data.get("level").and_then(Value::as_str).unwrap_or("INFO").to_owned(),
                message: data
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }
        }
        Some("error") => {
            let text = match decode(parsed.data) {
                Value::String(s) => s,
                other => other
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| other.to_string()),
            };
            match json_str(parsed.session_id) {
                Some(id) => PluginEvent::Session {
                    session_id: id.into_owned(),
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
            let Some(session_id) = json_str(parsed.session_id) else {
                return PluginEvent::Other;
            };
            let Some(data) = parsed.data.filter(|d| is_object(d)) else {
                return PluginEvent::Other;
            };
            let Ok(message) = serde_json::from_str::<SessionData<'_>>(data.get()) else {
                return PluginEvent::Other;
            };
            let message = match json_str(message.kind).as_deref() {
                Some("stream") => SessionMessage::Stream(message.data.unwrap_or(RawValue::NULL).to_owned()),
                Some("end") => SessionMessage::End,
                Some("error") => {
                    let inner = decode(message.data);
                    SessionMessage::Error(serde_json::from_value(inner.clone()).unwrap_or(PluginError {
                        error_type: "PluginError".into(),
                        message: inner.to_string(),
                        args: Value::Null,
                    }))
                }
                Some("invoke") => {
                    let inner = decode(message.data);
                    SessionMessage::Invoke {
                        kind: inner.get("type").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        backwards_request_id: inner
                            .get("backwards_request_id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        request: inner.get("request").cloned().unwrap_or(Value::Null),
                    }
                }
                other => SessionMessage::Error(PluginError {
                    error_type: "PluginDaemonInternalServerError".into(),
                    message: format!("unknown session message type {other:?}"),
                    args: Value::Null,
                }),
            };
            PluginEvent::Session {
                session_id: session_id.into_owned(),
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
    fn stream_chunks_keep_the_plugins_text() {
        let line = br#"{"event": "session", "session_id": "s1", "data": {"type": "stream", "data": {"type": "text", "message": {"text": "a\nb"}}}}"#;
        let PluginEvent::Session {
            session_id,
            message: SessionMessage::Stream(chunk),
        } = parse_line(line)
        else {
            panic!("not a stream chunk")
        };
        assert_eq!(session_id, "s1");
        assert_eq!(chunk.get(), r#"{"type": "text", "message": {"text": "a\nb"}}"#);
        // A chunk without data is null; an escaped session id is read whole.
        let PluginEvent::Session {
            session_id,
            message: SessionMessage::Stream(chunk),
        } = parse_line(br#"{"event":"session","session_id":"s\u0032","data":{"type":"stream"}}"#)
        else {
            panic!("not a stream chunk")
        };
        assert_eq!((session_id.as_str(), chunk.get()), ("s2", "null"));
        // Not an envelope, or not valid JSON throughout: nothing.
        assert_eq!(parse_line(br#"["session","s",{}]"#), PluginEvent::Other);
        assert_eq!(
            parse_line(br#"{"event":"session","session_id":"s","data":{"type":"stream","data":{"a":}}}"#),
            PluginEvent::Other
        );
        assert_eq!(
            parse_line(br#"{"event":"session","session_id":"s","data":null}"#),
            PluginEvent::Other
        );
        assert_eq!(
            parse_line(br#"{"event":"session","session_id":"s","data":{"type":"end","data":null}}"#),
            PluginEvent::Session {
                session_id: "s".into(),
                message: SessionMessage::End
            }
        );
    }

    #[test]
    fn request_data_fields_come_first_and_the_payload_overrides_them() {
        let mut payload = Map::new();
        payload.insert("tool".into(), "t".into());
        payload.insert("type".into(), "from-payload".into());
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
        let v: Value = serde_json::from_slice(&line).unwrap();
        let keys: Vec<&str> = v["data"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["user_id", "type", "action", "tool"]);
        assert_eq!(v["data"]["type"], "from-payload");
        assert_eq!(v["session_id"], "s1");
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
