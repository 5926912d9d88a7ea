//! The tool node: resolves `tool_parameters` / `tool_configurations` ([`ToolInput`]s) and maps the tool's
//! messages to Dify's tool-node outputs (`text`, `files`, `json`, plus variables).

use serde_json::{Map, Value, json};
use toolplane_core::{MessagePayload, ToolInvokeMessage, ToolProviderType};

use super::PrepareContext;
use crate::dsl::{ToolData, ToolInputType};
use crate::error::NodeError;
use crate::invoker::ToolCall;

/// The marker Dify puts on file objects (`FILE_MODEL_IDENTITY`).
pub const FILE_MODEL_IDENTITY: &str = "__dify__file__";

/// A resolved tool call.
pub(crate) struct ToolJob {
    pub call: ToolCall,
}

impl ToolJob {
    pub fn prepare(data: &ToolData, cx: &PrepareContext<'_>) -> Result<(ToolJob, Map<String, Value>), NodeError> {
        let provider_type: ToolProviderType = data.provider_type.parse().map_err(|e: String| NodeError::Config(e))?;
        let mut parameters = Map::new();
        for (name, input) in data.inputs() {
            let value = match input.kind {
                ToolInputType::Constant => input.value,
                ToolInputType::Mixed => match &input.value {
                    Value::String(text) => Value::String(cx.pool.render(text)),
                    other => other.clone(),
                },
                ToolInputType::Variable => {
                    let selector: Vec<String> = match &input.value {
                        Value::Array(items) => items
                            .iter()
                            .map(|i| i.as_str().unwrap_or_default().to_owned())
                            .collect(),
                        Value::String(s) => s.split('.').map(str::to_owned).collect(),
                        other => {
                            return Err(NodeError::Config(format!(
                                "tool input {name:?} is a variable but its value is not a selector: {other}"
                            )));
                        }
                    };
                    cx.pool
                        .get(&selector)
                        .cloned()
                        .ok_or_else(|| NodeError::Input(format!("Variable {} does not exist", selector.join("."))))?
                }
            };
            parameters.insert(name, value);
        }
        let call = ToolCall {
            tenant_id: cx.tenant_id.to_owned(),
            user_id: cx.user_id.map(str::to_owned),
            provider_type,
            provider_id: data.provider_id.clone(),
            tool_name: data.tool_name.clone(),
            parameters: parameters.clone(),
            credential_id: data.credential_id.clone().filter(|c| !c.is_empty()),
            call_depth: cx.call_depth,
        };
        Ok((ToolJob { call }, parameters))
    }
}

/// Dify's tool-node outputs: `text` (text messages concatenated, links as `Link: url` lines), `files` (file,
/// image and blob messages as file objects), `json` (every json message), and one output per variable message
/// (streamed string variables concatenated).
pub(crate) fn messages_to_outputs(messages: Vec<ToolInvokeMessage>) -> Map<String, Value> {
    let mut text = String::new();
    let mut files = Vec::new();
    let mut jsons = Vec::new();
    let mut variables = Map::new();
    for message in messages {
        let meta = message.meta.unwrap_or_default();
        match message.payload {
            MessagePayload::Text(t) => text.push_str(&t.text),
            MessagePayload::Link(t) => text.push_str(&format!("Link: {}\n", t.text)),
            MessagePayload::Image(t) | MessagePayload::ImageLink(t) | MessagePayload::BinaryLink(t) => {
                files.push(meta.get("file").cloned().unwrap_or_else(|| {
                    json!({
                        "dify_model_identity": FILE_MODEL_IDENTITY,
                        "transfer_method": "remote_url",
                        "type": if meta.get("mime_type").and_then(Value::as_str).is_some_and(|m| !m.starts_with("image/")) { "custom" } else { "image" },
                        "remote_url": t.text,
                        "url": t.text,
                        "mime_type": meta.get("mime_type").cloned().unwrap_or(Value::Null),
                    })
                }));
            }
            MessagePayload::Blob(b) => {
                // No file store here: the bytes travel inline; the server may persist them as tool files.
                use base64::Engine as _;
                files.push(json!({
                    "dify_model_identity": FILE_MODEL_IDENTITY,
                    "transfer_method": "tool_file",
                    "type": "custom",
                    "mime_type": meta.get("mime_type").cloned().unwrap_or(Value::Null),
                    "filename": meta.get("filename").cloned().unwrap_or(Value::Null),
                    "size": b.blob.len(),
                    "blob_base64": base64::engine::general_purpose::STANDARD.encode(&b.blob),
                }));
            }
            MessagePayload::File(_) => {
                if let Some(file) = meta.get("file") {
                    files.push(file.clone());
                }
            }
            MessagePayload::Json(j) => jsons.push(j.json_object),
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
            MessagePayload::BlobChunk(_) | MessagePayload::Log(_) | MessagePayload::RetrieverResources(_) => {}
        }
    }
    let mut outputs = Map::new();
    outputs.insert("text".into(), Value::String(text));
    outputs.insert("files".into(), Value::Array(files));
    outputs.insert("json".into(), Value::Array(jsons));
    for (name, value) in variables {
        // The reserved names stay as Dify computes them.
        if !matches!(name.as_str(), "text" | "files" | "json") {
            outputs.insert(name, value);
        }
    }
    outputs
}
