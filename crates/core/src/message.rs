//! The messages a tool invocation yields (`ToolInvokeMessage`), in Dify's wire shape
//! `{"type": …, "message": {…}, "meta": {…}|null}`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// One message of an invocation's output stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInvokeMessage {
    #[serde(flatten)]
    pub payload: MessagePayload,
    #[serde(default)]
    pub meta: Option<Map<String, Value>>,
}

/// The typed body of a message; the variant name is the wire `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "message", rename_all = "snake_case")]
pub enum MessagePayload {
    Text(TextMessage),
    /// An image URL.
    Image(TextMessage),
    Link(TextMessage),
    Blob(BlobMessage),
    BlobChunk(BlobChunkMessage),
    Json(JsonMessage),
    ImageLink(TextMessage),
    BinaryLink(TextMessage),
    Variable(VariableMessage),
    File(FileMessage),
    Log(LogMessage),
    RetrieverResources(RetrieverResourceMessage),
}

/// `{text}`: used by text, image, link, image_link and binary_link messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextMessage {
    pub text: String,
}

/// `{json_object, suppress_output}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonMessage {
    pub json_object: Value,
    #[serde(default)]
    pub suppress_output: bool,
}

/// `{blob}`: raw bytes, base64 on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMessage {
    #[serde(with = "base64_bytes")]
    pub blob: Vec<u8>,
}

/// One piece of a blob sent in 8 KiB chunks: `{id, sequence, total_length, blob, end}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobChunkMessage {
    pub id: String,
    pub sequence: u64,
    pub total_length: u64,
    #[serde(with = "base64_bytes")]
    pub blob: Vec<u8>,
    pub end: bool,
}

/// `{variable_name, variable_value, stream}`; a streamed variable's string chunks are concatenated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariableMessage {
    pub variable_name: String,
    pub variable_value: Value,
    #[serde(default)]
    pub stream: bool,
}

/// `{file_marker}`; the file itself travels in `meta["file"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMessage {
    #[serde(default = "file_marker")]
    pub file_marker: String,
}

fn file_marker() -> String {
    "file_marker".to_owned()
}

/// Status of a log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStatus {
    Start,
    Error,
    Success,
}

/// An agent log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMessage {
    pub id: String,
    pub label: String,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    pub status: LogStatus,
    #[serde(default)]
    pub data: Map<String, Value>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// Retrieval sources with the context they produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrieverResourceMessage {
    pub retriever_resources: Vec<Value>,
    pub context: String,
}

impl ToolInvokeMessage {
    fn of(payload: MessagePayload) -> Self {
        Self { payload, meta: None }
    }

    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self::of(MessagePayload::Text(TextMessage { text: text.into() }))
    }

    /// A link message.
    pub fn link(url: impl Into<String>) -> Self {
        Self::of(MessagePayload::Link(TextMessage { text: url.into() }))
    }

    /// An image message carrying the image's URL.
    pub fn image(url: impl Into<String>) -> Self {
        Self::of(MessagePayload::Image(TextMessage { text: url.into() }))
    }

    /// A JSON message.
    pub fn json(value: Value) -> Self {
        Self::of(MessagePayload::Json(JsonMessage {
            json_object: value,
            suppress_output: false,
        }))
    }

    /// A blob with its MIME type (and optionally a file name) in `meta`, as Dify's `create_blob_message` does.
    pub fn blob(bytes: Vec<u8>, mime_type: &str, filename: Option<&str>) -> Self {
        let mut meta = Map::new();
        meta.insert("mime_type".into(), Value::String(mime_type.to_owned()));
        if let Some(name) = filename {
            meta.insert("filename".into(), Value::String(name.to_owned()));
        }
        Self {
            payload: MessagePayload::Blob(BlobMessage { blob: bytes }),
            meta: Some(meta),
        }
    }

    /// A variable message.
    pub fn variable(name: impl Into<String>, value: Value) -> Self {
        Self::of(MessagePayload::Variable(VariableMessage {
            variable_name: name.into(),
            variable_value: value,
            stream: false,
        }))
    }

    /// The wire `type` of this message.
    pub fn kind(&self) -> &'static str {
        match &self.payload {
            MessagePayload::Text(_) => "text",
            MessagePayload::Image(_) => "image",
            MessagePayload::Link(_) => "link",
            MessagePayload::Blob(_) => "blob",
            MessagePayload::BlobChunk(_) => "blob_chunk",
            MessagePayload::Json(_) => "json",
            MessagePayload::ImageLink(_) => "image_link",
            MessagePayload::BinaryLink(_) => "binary_link",
            MessagePayload::Variable(_) => "variable",
            MessagePayload::File(_) => "file",
            MessagePayload::Log(_) => "log",
            MessagePayload::RetrieverResources(_) => "retriever_resources",
        }
    }

    /// The text of text-like messages (text, link, image and file links).
    pub fn as_text(&self) -> Option<&str> {
        match &self.payload {
            MessagePayload::Text(t)
            | MessagePayload::Image(t)
            | MessagePayload::Link(t)
            | MessagePayload::ImageLink(t)
            | MessagePayload::BinaryLink(t) => Some(&t.text),
            _ => None,
        }
    }
}

mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("blob is not valid base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shapes_match_dify() {
        let text = serde_json::to_value(ToolInvokeMessage::text("hi")).unwrap();
        assert_eq!(text, json!({"type": "text", "message": {"text": "hi"}, "meta": null}));

        let blob = serde_json::to_value(ToolInvokeMessage::blob(b"ab".to_vec(), "text/plain", None)).unwrap();
        assert_eq!(
            blob,
            json!({"type": "blob", "message": {"blob": "YWI="}, "meta": {"mime_type": "text/plain"}})
        );

        let json_msg = serde_json::to_value(ToolInvokeMessage::json(json!({"a": 1}))).unwrap();
        assert_eq!(
            json_msg["message"],
            json!({"json_object": {"a": 1}, "suppress_output": false})
        );
    }

    #[test]
    fn parses_a_plugin_blob_chunk() {
        let raw = r#"{"type":"blob_chunk","message":{"id":"059504a7","sequence":0,"total_length":6,"blob":"YWJhYmFi","end":false},"meta":{"mime_type":"text/plain"}}"#;
        let m: ToolInvokeMessage = serde_json::from_str(raw).unwrap();
        match m.payload {
            MessagePayload::BlobChunk(c) => assert_eq!(c.blob, b"ababab"),
            other => panic!("unexpected {other:?}"),
        }
        // A plugin's json message has no suppress_output.
        let j: ToolInvokeMessage = serde_json::from_str(r#"{"type":"json","message":{"json_object":[1]}}"#).unwrap();
        assert_eq!(j.kind(), "json");
    }

    #[test]
    fn every_type_round_trips() {
        let all = [
            json!({"type":"text","message":{"text":"t"},"meta":null}),
            json!({"type":"image","message":{"text":"http://x/i.png"},"meta":null}),
            json!({"type":"link","message":{"text":"http://x"},"meta":null}),
            json!({"type":"image_link","message":{"text":"/files/tools/a.png"},"meta":null}),
            json!({"type":"binary_link","message":{"text":"/files/tools/a.bin"},"meta":null}),
            json!({"type":"variable","message":{"variable_name":"v","variable_value":[1],"stream":false},"meta":null}),
            json!({"type":"file","message":{"file_marker":"file_marker"},"meta":{"file":{}}}),
            json!({"type":"log","message":{"id":"1","label":"l","parent_id":null,"error":null,"status":"start","data":{},"metadata":{}},"meta":null}),
            json!({"type":"retriever_resources","message":{"retriever_resources":[{"a":1}],"context":"c"},"meta":null}),
        ];
        for value in all {
            let m: ToolInvokeMessage = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(serde_json::to_value(&m).unwrap(), value);
        }
    }

    #[test]
    fn bad_blob_is_a_clear_error() {
        let err = serde_json::from_str::<ToolInvokeMessage>(r#"{"type":"blob","message":{"blob":"@@"}}"#).unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
    }
}
