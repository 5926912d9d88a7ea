//! The stdio wire protocol of Dify plugins: request envelopes written to stdin, events read from stdout.

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
#[derive(Debug, Clone, PartialEq)]
pub enum SessionMessage {
    /// One response chunk.
    Stream(Chunk),
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

/// One response chunk: decoded, or the JSON text the plugin wrote (validated), for a consumer that passes chunks on
/// without looking into them (the dispatch routes' SSE) and so need not decode and encode them again.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// The chunk's value.
    Decoded(Value),
    /// The chunk's JSON text as the plugin wrote it: one line, validated.
    Text(Box<RawValue>),
}

impl Chunk {
    /// The chunk's value. Decoding text can fail only on nesting deeper than serde_json decodes (validation has
    /// no such limit).
    pub fn into_value(self) -> Result<Value, serde_json::Error> {
        match self {
            Self::Decoded(value) => Ok(value),
            Self::Text(text) => serde_json::from_str(text.get()),
        }
    }

    /// The chunk's JSON text on one line: the plugin's own, or the value encoded.
    pub fn into_text(self) -> Box<RawValue> {
        match self {
            Self::Text(text) => text,
            // Encoding a `Value` cannot fail (no I/O, string keys only).
            Self::Decoded(value) => {
                serde_json::value::to_raw_value(&value).unwrap_or_else(|_| RawValue::NULL.to_owned())
            }
        }
    }
}

/// Chunks are equal when their values are.
impl PartialEq for Chunk {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Decoded(a), Self::Decoded(b)) => a == b,
            (Self::Text(a), Self::Text(b)) if a.get() == b.get() => true,
            _ => match (self.clone().into_value(), other.clone().into_value()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
        }
    }
}

/// The `session_id` of a line that names it near its start (the SDK writes `{"event":…,"session_id":…,"data":…}`,
/// so the id comes before the bulk), found without decoding the line; `None` when it is not there or escaped.
pub fn leading_session_id(line: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"session_id\"";
    let head = &line[..line.len().min(256)];
    let start = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = line[start..]
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start()
        .strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// A session line carrying a chunk or an end, as the SDK writes it.
#[derive(Deserialize)]
struct SessionLine<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(borrow)]
    session_id: &'a str,
    #[serde(borrow)]
    data: SessionLineData<'a>,
}

#[derive(Deserialize)]
struct SessionLineData<'a> {
    #[serde(borrow, rename = "type")]
    kind: &'a str,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// [`parse_line`] for a session's `stream` or `end` line, keeping a chunk as [`Chunk::Text`] (one validating pass
/// over the line, no decoding). `None` for every other line, and for lines of unusual shape (escaped names,
/// repeated fields): [`parse_line`] reads those.
pub fn parse_stream_line(line: &[u8]) -> Option<PluginEvent> {
    let parsed: SessionLine<'_> = serde_json::from_slice(line).ok()?;
    if parsed.event != "session" {
        return None;
    }
    let message = match parsed.data.kind {
        "stream" => SessionMessage::Stream(Chunk::Text(parsed.data.data.unwrap_or(RawValue::NULL).to_owned())),
        "end" => SessionMessage::End,
        _ => return None,
    };
    Some(PluginEvent::Session {
        session_id: parsed.session_id.to_owned(),
        message,
    })
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
                Some("stream") => SessionMessage::Stream(Chunk::Decoded(inner)),
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

    /// The request line of an `invoke_tool` request by user `u` with `payload`, in session `s1`.
    fn invoke_tool_line(payload: Map<String, Value>) -> Vec<u8> {
        request_line(
            "s1",
            &InvokeRequest {
                user_id: "u".into(),
                access_type: "tool".into(),
                action: "invoke_tool".into(),
                payload,
                ..Default::default()
            },
        )
    }

    #[test]
    fn request_data_fields_come_first_and_the_payload_overrides_them() {
        let mut payload = Map::new();
        payload.insert("tool".into(), "t".into());
        payload.insert("type".into(), "from-payload".into());
        let line = invoke_tool_line(payload);
        let v: Value = serde_json::from_slice(&line).unwrap();
        let keys: Vec<&str> = v["data"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["user_id", "type", "action", "tool"]);
        assert_eq!(v["data"]["type"], "from-payload");
        assert_eq!(v["session_id"], "s1");
    }

    #[test]
    fn stream_lines_keep_the_chunk_text() {
        // As dify_plugin writes them (pydantic, compact) and with json.dumps spacing.
        for line in [
            &br#"{"event":"session","session_id":"s1","data":{"type":"stream","data":{"type":"text","message":{"text":"a\nb"}}}}"#[..],
            br#"{"event": "session", "session_id": "s1", "data": {"type": "stream", "data": {"type": "text", "message": {"text": "a\nb"}}}}"#,
        ] {
            assert_eq!(leading_session_id(line), Some("s1"));
            let Some(PluginEvent::Session {
                session_id,
                message: SessionMessage::Stream(Chunk::Text(text)),
            }) = parse_stream_line(line)
            else {
                panic!("not a stream chunk")
            };
            assert_eq!(session_id, "s1");
            // The chunk's text is the plugin's own, and means what the decoded line holds.
            let PluginEvent::Session {
                message: SessionMessage::Stream(decoded),
                ..
            } = parse_line(line)
            else {
                panic!("not a stream chunk")
            };
            assert!(line.windows(text.get().len()).any(|w| w == text.get().as_bytes()));
            assert_eq!(Chunk::Text(text), decoded);
        }
        assert_eq!(
            parse_stream_line(br#"{"event":"session","session_id":"s","data":{"type":"end","data":null}}"#),
            Some(PluginEvent::Session {
                session_id: "s".into(),
                message: SessionMessage::End
            })
        );
        let Some(PluginEvent::Session {
            message: SessionMessage::Stream(Chunk::Text(text)),
            ..
        }) = parse_stream_line(br#"{"event":"session","session_id":"s","data":{"type":"stream"}}"#)
        else {
            panic!("not a stream chunk")
        };
        assert_eq!(text.get(), "null");
        // Everything else is left to parse_line.
        for line in [
            &br#"{"event":"session","session_id":"s","data":{"type":"error","data":{"message":"boom"}}}"#[..],
            br#"{"event":"session","session_id":"s","data":{"type":"invoke","data":{}}}"#,
            br#"{"event":"heartbeat","session_id":null,"data":{}}"#,
            br#"{"event":"session","session_id":"s\u0031","data":{"type":"stream","data":1}}"#,
            br#"{"event":"session","session_id":"s","data":{"type":"stream","data":{"a":}}}"#,
            b"not json",
        ] {
            assert_eq!(parse_stream_line(line), None, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(
            leading_session_id(br#"{"event":"session","session_id":"s\u0031"}"#),
            None
        );
        assert_eq!(leading_session_id(br#"{"event":"heartbeat","session_id":null}"#), None);
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
        let line = invoke_tool_line(payload);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["data"]["provider"], "p");
        assert_eq!(v["data"]["type"], "tool");
        assert_eq!(v["event"], "request");
        assert_eq!(v["context"], serde_json::json!({}));
    }
}
