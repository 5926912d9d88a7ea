//! toolplane messages → MCP content.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use toolplane_core::{MessagePayload, ToolInvokeMessage};

use crate::protocol::{CallToolResult, Content, ResourceContents};

/// Bytes of a chunked blob received so far, with the first chunk's meta.
type PartialBlob = (Vec<u8>, Option<Map<String, Value>>);

/// Maps a tool's messages to a `tools/call` result:
/// - text → text; retriever resources → their context as text;
/// - blobs (and reassembled blob chunks) → image (`image/*`), audio (`audio/*`) or an embedded binary resource;
/// - links, image URLs, file links and files with a URL → resource links;
/// - json → a text copy of the JSON, and the objects under `structuredContent.json` (an array);
/// - variables → `structuredContent.<name>` (streamed string chunks concatenated), with a text copy.
///
/// When the tool declares an output schema, `structuredContent` holds only its variables (the schema describes
/// them) and is always present.
pub fn messages_to_result(messages: Vec<ToolInvokeMessage>, has_output_schema: bool) -> CallToolResult {
    let mut content = Vec::new();
    let mut variables: Map<String, Value> = Map::new();
    let mut json_objects: Vec<Value> = Vec::new();
    let mut chunks: HashMap<String, PartialBlob> = HashMap::new();
    let mut blob_index = 0usize;

    for message in messages {
        let meta = message.meta;
        match message.payload {
            MessagePayload::Text(t) => content.push(Content::text(t.text)),
            MessagePayload::Link(t)
            | MessagePayload::Image(t)
            | MessagePayload::ImageLink(t)
            | MessagePayload::BinaryLink(t) => content.push(link(&t.text, meta.as_ref())),
            MessagePayload::Blob(b) => {
                blob_index += 1;
                content.push(blob(b.blob, meta.as_ref(), blob_index));
            }
            MessagePayload::BlobChunk(chunk) => {
                let entry = chunks
                    .entry(chunk.id.clone())
                    .or_insert_with(|| (Vec::new(), meta.clone()));
                entry.0.extend_from_slice(&chunk.blob);
                if chunk.end
                    && let Some((bytes, meta)) = chunks.remove(&chunk.id)
                {
                    blob_index += 1;
                    content.push(blob(bytes, meta.as_ref(), blob_index));
                }
            }
            MessagePayload::Json(j) => {
                content.push(Content::text(j.json_object.to_string()));
                json_objects.push(j.json_object);
            }
            MessagePayload::Variable(v) => {
                if v.stream {
                    let chunk = v.variable_value.as_str().unwrap_or_default().to_owned();
                    match variables.get_mut(&v.variable_name) {
                        Some(Value::String(existing)) => existing.push_str(&chunk),
                        _ => {
                            variables.insert(v.variable_name, Value::String(chunk));
                        }
                    }
                } else {
                    variables.insert(v.variable_name, v.variable_value);
                }
            }
            MessagePayload::File(_) => {
                let file = meta.as_ref().and_then(|m| m.get("file"));
                let url = file.and_then(|f| {
                    ["url", "remote_url"]
                        .iter()
                        .find_map(|k| f.get(*k).and_then(Value::as_str).filter(|u| !u.is_empty()))
                });
                if let Some(url) = url {
                    let mut link_meta = Map::new();
                    if let Some(name) = file.and_then(|f| f.get("filename")).cloned() {
                        link_meta.insert("filename".into(), name);
                    }
                    if let Some(mime) = file.and_then(|f| f.get("mime_type")).cloned() {
                        link_meta.insert("mime_type".into(), mime);
                    }
                    content.push(link(url, Some(&link_meta)));
                }
            }
            MessagePayload::RetrieverResources(r) => content.push(Content::text(r.context)),
            MessagePayload::Log(_) => {}
        }
    }
    // Unfinished chunked blobs are still delivered.
    for (_, (bytes, meta)) in chunks {
        blob_index += 1;
        content.push(blob(bytes, meta.as_ref(), blob_index));
    }

    if !variables.is_empty() {
        content.push(Content::text(Value::Object(variables.clone()).to_string()));
    }
    let structured_content = if has_output_schema {
        Some(Value::Object(variables))
    } else {
        if !json_objects.is_empty() {
            variables.insert("json".into(), Value::Array(json_objects));
        }
        (!variables.is_empty()).then_some(Value::Object(variables))
    };
    CallToolResult {
        content,
        structured_content,
        is_error: Some(false),
        unknown_content: Vec::new(),
    }
}

fn meta_str<'a>(meta: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a str> {
    meta.and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn link(uri: &str, meta: Option<&Map<String, Value>>) -> Content {
    let name = meta_str(meta, "filename")
        .map(str::to_owned)
        .or_else(|| {
            url::Url::parse(uri)
                .ok()
                .and_then(|u| u.path_segments()?.rfind(|s| !s.is_empty()).map(str::to_owned))
        })
        .unwrap_or_else(|| uri.to_owned());
    Content::ResourceLink {
        uri: uri.to_owned(),
        name,
        title: None,
        description: None,
        mime_type: meta_str(meta, "mime_type").map(str::to_owned),
        size: None,
    }
}

fn blob(bytes: Vec<u8>, meta: Option<&Map<String, Value>>, index: usize) -> Content {
    let mime = meta_str(meta, "mime_type")
        .unwrap_or("application/octet-stream")
        .to_owned();
    let data = BASE64.encode(&bytes);
    if mime.starts_with("image/") {
        Content::Image { data, mime_type: mime }
    } else if mime.starts_with("audio/") {
        Content::Audio { data, mime_type: mime }
    } else {
        let name = meta_str(meta, "filename").unwrap_or("blob");
        Content::Resource {
            resource: ResourceContents {
                uri: format!("toolplane://blob/{index}/{name}"),
                mime_type: Some(mime),
                text: None,
                blob: Some(data),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use toolplane_core::{BlobChunkMessage, FileMessage, VariableMessage};

    #[test]
    fn maps_every_kind() {
        let chunk = |seq, data: &[u8], end| ToolInvokeMessage {
            payload: MessagePayload::BlobChunk(BlobChunkMessage {
                id: "c".into(),
                sequence: seq,
                total_length: 4,
                blob: data.to_vec(),
                end,
            }),
            meta: Some(Map::from_iter([("mime_type".into(), json!("audio/wav"))])),
        };
        let streamed = |s: &str| ToolInvokeMessage {
            payload: MessagePayload::Variable(VariableMessage {
                variable_name: "answer".into(),
                variable_value: json!(s),
                stream: true,
            }),
            meta: None,
        };
        let file = ToolInvokeMessage {
            payload: MessagePayload::File(FileMessage {
                file_marker: "file_marker".into(),
            }),
            meta: Some(Map::from_iter([(
                "file".into(),
                json!({"url": "https://files.example/f/report.pdf", "filename": "report.pdf", "mime_type": "application/pdf"}),
            )])),
        };
        let messages = vec![
            ToolInvokeMessage::text("hello"),
            ToolInvokeMessage::blob(b"png".to_vec(), "image/png", None),
            ToolInvokeMessage::blob(b"zip".to_vec(), "application/zip", Some("a.zip")),
            chunk(0, b"ab", false),
            chunk(1, b"cd", true),
            ToolInvokeMessage::link("https://example.com/page"),
            ToolInvokeMessage::json(json!({"k": 1})),
            streamed("Hel"),
            streamed("lo"),
            ToolInvokeMessage::variable("count", json!(2)),
            file,
        ];
        let result = messages_to_result(messages, false);
        let value = serde_json::to_value(&result).unwrap();
        let types: Vec<_> = value["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].clone())
            .collect();
        assert_eq!(
            types,
            [
                "text",
                "image",
                "resource",
                "audio",
                "resource_link",
                "text",
                "resource_link",
                "text"
            ]
        );
        assert_eq!(value["content"][3]["data"], BASE64.encode(b"abcd"));
        assert_eq!(value["content"][2]["resource"]["uri"], "toolplane://blob/2/a.zip");
        assert_eq!(value["content"][4]["name"], "page");
        assert_eq!(value["content"][6]["mimeType"], "application/pdf");
        assert_eq!(
            value["structuredContent"],
            json!({"answer": "Hello", "count": 2, "json": [{"k": 1}]})
        );
        assert_eq!(value["isError"], false);

        let with_schema = messages_to_result(vec![ToolInvokeMessage::json(json!({"a": 1}))], true);
        assert_eq!(with_schema.structured_content, Some(json!({})));
        let plain = messages_to_result(vec![ToolInvokeMessage::text("x")], false);
        assert!(plain.structured_content.is_none());
    }
}
