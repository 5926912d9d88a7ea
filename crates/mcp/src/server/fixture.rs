//! The conformance fixture: the tools, resources, prompts, completion and logging that the server suite of
//! `@modelcontextprotocol/conformance` calls by fixed names (`test_simple_text`, `test://static-text`,
//! `test_simple_prompt`, …).
//!
//! The tasks scenarios (SEP-2663) call `greet` (never a task), `slow_compute`, `failing_job`, `protocol_error_job`,
//! `confirm_delete`, `multi_input` and `test_tool_with_task`; the last six run through the server's generic task
//! path ([`ConformanceFixture::prepare_task_tool`] only supplies their work).
//!
//! It is only ever enabled explicitly, through [`McpServer::with_conformance_fixture`](super::McpServer), for a
//! conformance test server; tenant servers never serve it.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{ClientRequestError, ListChange, McpServer, RequestContext, TaskSupport, Work, WorkError};
use crate::protocol::RpcError;

/// The fixture tools that may or must run as tasks (every other fixture tool answers in the request).
const TASK_TOOLS: [(&str, TaskSupport); 6] = [
    ("slow_compute", TaskSupport::Optional),
    ("failing_job", TaskSupport::Required),
    ("protocol_error_job", TaskSupport::Optional),
    ("confirm_delete", TaskSupport::Optional),
    ("multi_input", TaskSupport::Optional),
    ("test_tool_with_task", TaskSupport::Required),
];

/// The fixture tools, built once.
static TOOLS: LazyLock<Vec<Value>> = LazyLock::new(ConformanceFixture::build_tools);

/// A 1×1 red PNG.
const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// A 44-byte WAV header with no samples (8 kHz, mono, 8-bit).
const WAV_BASE64: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=";

/// Log levels in increasing severity (RFC 5424 names, as MCP uses them).
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// `_meta` key carrying a 2026-07-28 request's log level.
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// The prompt whose `prompts/get` asks the user first (input_required in 2026-07-28).
pub(super) const INPUT_REQUIRED_PROMPT: &str = "test_input_required_result_prompt";

/// One question to the client: `inputRequests[key]` in 2026-07-28, a request on the stream before.
struct Ask {
    key: &'static str,
    capability: &'static str,
    method: &'static str,
    params: Value,
}

impl Ask {
    /// The question as an `input_required` error, whatever the client already answered.
    fn into_input_required(self) -> ClientRequestError {
        let mut requests = Map::new();
        requests.insert(self.key.into(), json!({"method": self.method, "params": self.params}));
        ClientRequestError::InputRequired { requests, state: None }
    }
}

/// A form asking for one required property.
fn form(message: &str, property: &str, kind: &str) -> Value {
    json!({
        "message": message,
        "requestedSchema": {
            "type": "object",
            "properties": {property: {"type": kind}},
            "required": [property],
        },
    })
}

fn ask_name(key: &'static str, message: &str) -> Ask {
    Ask {
        key,
        capability: "elicitation",
        method: "elicitation/create",
        params: form(message, "name", "string"),
    }
}

fn ask_sampling(key: &'static str, prompt: &str, max_tokens: u32) -> Ask {
    Ask {
        key,
        capability: "sampling",
        method: "sampling/createMessage",
        params: json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
            "maxTokens": max_tokens,
        }),
    }
}

fn ask_confirm() -> Ask {
    Ask {
        key: "confirm",
        capability: "elicitation",
        method: "elicitation/create",
        params: json!({
            "message": "Please confirm",
            "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
        }),
    }
}

fn ask_roots(key: &'static str) -> Ask {
    Ask {
        key,
        capability: "roots",
        method: "roots/list",
        params: json!({}),
    }
}

/// Asks every question; in 2026-07-28 the unanswered ones come back together as one `input_required` (answers
/// already given are kept by the client, which resends all of them). Other failures end the call at once.
async fn gather(ctx: &RequestContext, asks: Vec<Ask>) -> Result<Map<String, Value>, ClientRequestError> {
    let mut answers = Map::new();
    let mut missing = Map::new();
    for ask in asks {
        match ctx
            .request_client(ask.key, ask.capability, ask.method, ask.params)
            .await
        {
            Ok(answer) => {
                answers.insert(ask.key.into(), answer);
            }
            Err(ClientRequestError::InputRequired { requests, .. }) => missing.extend(requests),
            Err(e) => return Err(e),
        }
    }
    if missing.is_empty() {
        Ok(answers)
    } else {
        Err(ClientRequestError::InputRequired {
            requests: missing,
            state: None,
        })
    }
}

/// `content[field]` of an accepted elicitation answer, as text.
fn accepted(answers: &Map<String, Value>, key: &str, field: &str) -> Option<String> {
    let answer = answers.get(key)?;
    if answer.get("action").and_then(Value::as_str) != Some("accept") {
        return None;
    }
    match answer.get("content")?.get(field)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The URIs of a `roots/list` answer, comma-separated.
fn root_uris(answer: Option<&Value>) -> String {
    answer
        .and_then(|a| a.get("roots"))
        .and_then(Value::as_array)
        .map(|roots| {
            roots
                .iter()
                .filter_map(|r| r.get("uri").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// State of the fixture: subscribed resource URIs and the session-era log level.
#[derive(Debug, Default)]
pub(super) struct ConformanceFixture {
    subscriptions: Mutex<HashSet<String>>,
    log_level: Mutex<Option<usize>>,
}

fn text(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

fn no_arguments() -> Value {
    json!({"type": "object", "properties": {}})
}

fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            },
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"},
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": false,
    })
}

impl ConformanceFixture {
    /// The server's capabilities with the fixture. Lists change when the `test_trigger_*` tools run; 2026-07-28
    /// clients hear of it on `subscriptions/listen` (which also carries resource subscriptions), earlier ones on
    /// the session's GET stream.
    pub(super) fn capabilities(_stateless: bool) -> Value {
        json!({
            "tools": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "prompts": {"listChanged": true},
            "logging": {},
            "completions": {},
        })
    }

    /// The fixture tools, in listing order.
    pub(super) fn tools() -> &'static [Value] {
        &TOOLS
    }

    /// How fixture tool `name` may run: `Forbidden` for the tools that always answer in the request; `None` when
    /// the fixture has no such tool.
    pub(super) fn task_support(name: &str) -> Option<TaskSupport> {
        if let Some((_, support)) = TASK_TOOLS.iter().find(|(tool, _)| *tool == name) {
            return Some(*support);
        }
        Self::tools()
            .iter()
            .any(|t| t.get("name").and_then(Value::as_str) == Some(name))
            .then_some(TaskSupport::Forbidden)
    }

    fn build_tools() -> Vec<Value> {
        let simple = |name: &str, description: &str| json!({"name": name, "description": description, "inputSchema": no_arguments()});
        vec![
            simple("test_simple_text", "Returns a simple text response"),
            simple("test_image_content", "Returns an image"),
            simple("test_audio_content", "Returns an audio clip"),
            simple("test_embedded_resource", "Returns an embedded resource"),
            simple("test_multiple_content_types", "Returns text, an image and a resource"),
            simple("test_tool_with_logging", "Sends three log messages while running"),
            simple(
                "test_logging_tool",
                "Sends three log messages while running (2026-07-28 diagnostic name)",
            ),
            simple("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100"),
            simple("test_error_handling", "Always fails with a tool error"),
            json!({
                "name": "json_schema_2020_12_tool",
                "description": "Tool with JSON Schema 2020-12 features",
                "inputSchema": json_schema_2020_12(),
            }),
            json!({
                "name": "test_sampling",
                "description": "Asks the client's LLM (sampling/createMessage) and returns its answer",
                "inputSchema": {
                    "type": "object",
                    "properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}},
                    "required": ["prompt"],
                },
            }),
            json!({
                "name": "test_elicitation",
                "description": "Asks the user for a username and an email (elicitation/create)",
                "inputSchema": {
                    "type": "object",
                    "properties": {"message": {"type": "string", "description": "The message to show the user"}},
                    "required": ["message"],
                },
            }),
            simple(
                "test_elicitation_sep1034_defaults",
                "Elicits a form whose fields carry default values (SEP-1034)",
            ),
            simple(
                "test_elicitation_sep1330_enums",
                "Elicits a form with every enum variant (SEP-1330)",
            ),
            simple(
                "test_missing_capability",
                "Needs the client's sampling capability and fails with -32021 without it",
            ),
            simple(
                "test_streaming_elicitation",
                "Elicits input while running (input_required in 2026-07-28, elicitation/create before)",
            ),
            simple("test_trigger_tool_change", "Announces that the tool list changed"),
            simple("test_trigger_prompt_change", "Announces that the prompt list changed"),
            json!({
                "name": "test_header_param",
                "description": "Echoes an argument that clients mirror in the Mcp-Param-Region header (SEP-2243)",
                "inputSchema": {
                    "type": "object",
                    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
                    "required": ["region"],
                },
            }),
            simple(
                "test_input_required_result_elicitation",
                "Asks the user's name (input_required with key user_name in 2026-07-28)",
            ),
            simple(
                "test_input_required_result_sampling",
                "Asks the client's LLM for the capital of France (key capital_question)",
            ),
            simple(
                "test_input_required_result_list_roots",
                "Asks for the client's roots (key client_roots)",
            ),
            simple(
                "test_input_required_result_request_state",
                "Asks for a confirmation and resumes from a sealed requestState",
            ),
            simple(
                "test_input_required_result_multiple_inputs",
                "Asks for a name, a sampled greeting and the roots at once",
            ),
            simple(
                "test_input_required_result_multi_round",
                "Asks for a name, then a colour, in two rounds",
            ),
            simple(
                "test_input_required_result_tampered_state",
                "Asks for a confirmation; a tampered requestState is rejected",
            ),
            simple(
                "test_input_required_result_capabilities",
                "Asks only for what the client declared (elicitation, sampling, roots)",
            ),
            json!({
                "name": "greet",
                "description": "Greets by name (never a task)",
                "inputSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            }),
            json!({
                "name": "slow_compute",
                "description": "Works for `seconds` seconds, then returns; a task for clients that take one",
                "inputSchema": {"type": "object", "properties": {
                    "seconds": {"type": "number", "minimum": 0},
                    "label": {"type": "string"},
                }},
            }),
            simple(
                "failing_job",
                "Runs only as a task; ends after about a second with a tool error",
            ),
            simple("protocol_error_job", "Fails with a JSON-RPC (protocol) error"),
            json!({
                "name": "confirm_delete",
                "description": "Asks the user to confirm deleting a file (elicitation), then reports the choice",
                "inputSchema": {"type": "object", "properties": {"filename": {"type": "string"}}},
            }),
            simple("multi_input", "Asks two questions at once and reports both answers"),
            simple(
                "test_tool_with_task",
                "Asks the user's name before the task exists (input_required), then greets as a task",
            ),
        ]
    }

    /// The work of task tool `name` (see [`TASK_TOOLS`]), after what must happen before any task exists:
    /// `test_tool_with_task` asks the user's name in the request itself (`input_required` until the retry brings
    /// it), then its task greets with it.
    pub(super) async fn prepare_task_tool(
        &self,
        name: &str,
        params: &Map<String, Value>,
        ctx: &RequestContext,
    ) -> Result<Work, ClientRequestError> {
        let arguments = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
        let text_result = |message: String| json!({"content": [text(&message)], "isError": false});
        let work: Work = match name {
            "slow_compute" => {
                let seconds = arguments
                    .get("seconds")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
                    .clamp(0.0, 3600.0);
                let label = arguments.get("label").and_then(Value::as_str).unwrap_or("").to_owned();
                Box::new(move |_ctx| {
                    Box::pin(async move {
                        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                        Ok(text_result(format!("{label}: computed after {seconds} s")))
                    })
                })
            }
            "failing_job" => Box::new(|_ctx| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(json!({"content": [text("The job failed")], "isError": true}))
                })
            }),
            "protocol_error_job" => Box::new(|_ctx| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Err(WorkError::Rpc(RpcError::internal(
                        "protocol_error_job failed at the protocol level, on purpose",
                    )))
                })
            }),
            "confirm_delete" => {
                let filename = arguments
                    .get("filename")
                    .and_then(Value::as_str)
                    .unwrap_or("the file")
                    .to_owned();
                Box::new(move |ctx| {
                    Box::pin(async move {
                        let question = json!({
                            "mode": "form",
                            "message": format!("Delete {filename}?"),
                            "requestedSchema": {
                                "type": "object",
                                "properties": {"confirm": {"type": "boolean"}},
                                "required": ["confirm"],
                            },
                        });
                        let answer = ctx.elicit("confirm", question).await?;
                        let confirmed = answer.get("action").and_then(Value::as_str) == Some("accept")
                            && answer.pointer("/content/confirm") == Some(&json!(true));
                        let outcome = if confirmed { "Deleted" } else { "Kept" };
                        Ok(text_result(format!("{outcome} {filename}")))
                    })
                })
            }
            "multi_input" => Box::new(move |ctx| {
                Box::pin(async move {
                    // Both questions are open at once: the task shows two inputRequests until both are answered.
                    let (first, second) = tokio::join!(
                        ctx.elicit("first", form("First value?", "name", "string")),
                        ctx.elicit("second", form("Second value?", "name", "string")),
                    );
                    let answers = Map::from_iter([("first".into(), first?), ("second".into(), second?)]);
                    let first = accepted(&answers, "first", "name").unwrap_or_default();
                    let second = accepted(&answers, "second", "name").unwrap_or_default();
                    Ok(text_result(format!("Got {first} and {second}")))
                })
            }),
            "test_tool_with_task" => {
                let answers = gather(ctx, vec![ask_name("user_name", "What is your name?")]).await?;
                let user = accepted(&answers, "user_name", "name").unwrap_or_else(|| "stranger".into());
                Box::new(move |_ctx| Box::pin(async move { Ok(text_result(format!("Hello, {user}!"))) }))
            }
            other => {
                let message = format!("{other} is not a task tool of the fixture");
                Box::new(move |_ctx| Box::pin(async move { Err(WorkError::Rpc(RpcError::invalid_params(message))) }))
            }
        };
        Ok(work)
    }

    /// Runs fixture tool `name`; `None` when there is no such fixture tool.
    pub(super) async fn call_tool(
        &self,
        name: &str,
        params: &Map<String, Value>,
        ctx: &RequestContext,
        server: &McpServer,
    ) -> Option<Result<Value, ClientRequestError>> {
        let request_meta = params.get("_meta");
        let argument = |key: &str| {
            params
                .get("arguments")
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let content = match name {
            "test_simple_text" => vec![text("This is a simple text response for testing.")],
            "test_image_content" => vec![json!({"type": "image", "data": PNG_BASE64, "mimeType": "image/png"})],
            "test_audio_content" => vec![json!({"type": "audio", "data": WAV_BASE64, "mimeType": "audio/wav"})],
            "test_embedded_resource" => vec![json!({
                "type": "resource",
                "resource": {
                    "uri": "test://embedded-resource",
                    "mimeType": "text/plain",
                    "text": "This is an embedded resource content.",
                },
            })],
            "test_multiple_content_types" => vec![
                text("Multiple content types test:"),
                json!({"type": "image", "data": PNG_BASE64, "mimeType": "image/png"}),
                json!({
                    "type": "resource",
                    "resource": {
                        "uri": "test://mixed-content-resource",
                        "mimeType": "application/json",
                        "text": r#"{"test":"data","value":123}"#,
                    },
                }),
            ],
            "test_tool_with_logging" | "test_logging_tool" => {
                let threshold = self.threshold(request_meta, ctx);
                let messages = [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ];
                for (i, message) in messages.into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if threshold.is_some_and(|t| t <= 1) {
                        ctx.notify(
                            "notifications/message",
                            json!({"level": "info", "logger": "conformance", "data": message}),
                        );
                    }
                }
                vec![text("Logging test completed")]
            }
            "test_tool_with_progress" => {
                let token = request_meta.and_then(|m| m.get("progressToken")).cloned();
                for (i, progress) in [0, 50, 100].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if let Some(token) = &token {
                        ctx.notify(
                            "notifications/progress",
                            json!({"progressToken": token, "progress": progress, "total": 100}),
                        );
                    }
                }
                vec![text("Progress test completed")]
            }
            "test_error_handling" => {
                return Some(Ok(json!({
                    "isError": true,
                    "content": [text("This tool intentionally returns an error for testing")],
                })));
            }
            "json_schema_2020_12_tool" => vec![text("JSON Schema 2020-12 tool called")],
            "test_sampling" | "test_missing_capability" => {
                let prompt = match name {
                    "test_sampling" => argument("prompt"),
                    _ => "Say hello".to_owned(),
                };
                let request = json!({
                    "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                    "maxTokens": 100,
                });
                let answer = match ctx.create_message("sampling", request).await {
                    Ok(answer) => answer,
                    Err(e) => return Some(Err(e)),
                };
                vec![text(&format!("LLM response: {}", sampled_text(&answer)))]
            }
            "test_elicitation" | "test_streaming_elicitation" => {
                let message = match argument("message") {
                    m if m.is_empty() => "Please provide your information".to_owned(),
                    m => m,
                };
                let request = json!({
                    "mode": "form",
                    "message": message,
                    "requestedSchema": {
                        "type": "object",
                        "properties": {
                            "username": {"type": "string", "description": "User's response"},
                            "email": {"type": "string", "description": "User's email address"},
                        },
                        "required": ["username", "email"],
                    },
                });
                if name == "test_elicitation" {
                    // 2025-06-18 clients predate `mode`; form is the only mode they know.
                    return Some(self.elicit(ctx, without_mode(request), "User response").await);
                }
                return Some(self.elicit(ctx, request, "Elicitation completed").await);
            }
            "test_elicitation_sep1034_defaults" => {
                let request = json!({
                    "mode": "form",
                    "message": "Please review and update the form fields with defaults",
                    "requestedSchema": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "description": "User name", "default": "John Doe"},
                            "age": {"type": "integer", "description": "User age", "default": 30},
                            "score": {"type": "number", "description": "User score", "default": 95.5},
                            "status": {
                                "type": "string",
                                "description": "User status",
                                "enum": ["active", "inactive", "pending"],
                                "default": "active",
                            },
                            "verified": {"type": "boolean", "description": "Verification status", "default": true},
                        },
                        "required": [],
                    },
                });
                return Some(self.elicit(ctx, request, "Elicitation completed").await);
            }
            "test_elicitation_sep1330_enums" => {
                let request = json!({
                    "mode": "form",
                    "message": "Please select options from the enum fields",
                    "requestedSchema": {
                        "type": "object",
                        "properties": {
                            "untitledSingle": {
                                "type": "string",
                                "description": "Select one option",
                                "enum": ["option1", "option2", "option3"],
                            },
                            "titledSingle": {
                                "type": "string",
                                "description": "Select one option with titles",
                                "oneOf": [
                                    {"const": "value1", "title": "First Option"},
                                    {"const": "value2", "title": "Second Option"},
                                    {"const": "value3", "title": "Third Option"},
                                ],
                            },
                            "legacyEnum": {
                                "type": "string",
                                "description": "Select one option (legacy)",
                                "enum": ["opt1", "opt2", "opt3"],
                                "enumNames": ["Option One", "Option Two", "Option Three"],
                            },
                            "untitledMulti": {
                                "type": "array",
                                "description": "Select multiple options",
                                "minItems": 1,
                                "maxItems": 3,
                                "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                            },
                            "titledMulti": {
                                "type": "array",
                                "description": "Select multiple options with titles",
                                "minItems": 1,
                                "maxItems": 3,
                                "items": {"anyOf": [
                                    {"const": "value1", "title": "First Choice"},
                                    {"const": "value2", "title": "Second Choice"},
                                    {"const": "value3", "title": "Third Choice"},
                                ]},
                            },
                        },
                        "required": [],
                    },
                });
                return Some(self.elicit(ctx, request, "Elicitation completed").await);
            }
            "test_header_param" => vec![text(&format!("region={}", argument("region")))],
            "greet" => vec![text(&format!("Hello, {}!", argument("name")))],
            "test_input_required_result_elicitation" => {
                let answers = match gather(ctx, vec![ask_name("user_name", "What is your name?")]).await {
                    Ok(answers) => answers,
                    Err(e) => return Some(Err(e)),
                };
                let name = accepted(&answers, "user_name", "name").unwrap_or_else(|| "stranger".into());
                vec![text(&format!("Hello, {name}!"))]
            }
            "test_input_required_result_sampling" => {
                let answers = match gather(
                    ctx,
                    vec![ask_sampling("capital_question", "What is the capital of France?", 100)],
                )
                .await
                {
                    Ok(answers) => answers,
                    Err(e) => return Some(Err(e)),
                };
                let answer = answers.get("capital_question").map(sampled_text).unwrap_or_default();
                vec![text(&format!("LLM response: {answer}"))]
            }
            "test_input_required_result_list_roots" => {
                let answers = match gather(ctx, vec![ask_roots("client_roots")]).await {
                    Ok(answers) => answers,
                    Err(e) => return Some(Err(e)),
                };
                vec![text(&format!(
                    "Client roots: {}",
                    root_uris(answers.get("client_roots"))
                ))]
            }
            "test_input_required_result_request_state" | "test_input_required_result_tampered_state" => {
                // The state proves the confirmation belongs to a question this server asked: without it, or
                // with another, ask again (the server already refused altered states before the tool ran).
                let issued = json!({"asked": "confirm"});
                if ctx.stateless() && ctx.request_state() != Some(&issued) {
                    return Some(Err(ask_confirm().into_input_required().with_state(issued)));
                }
                let answers = match gather(ctx, vec![ask_confirm()]).await {
                    Ok(answers) => answers,
                    Err(e) => return Some(Err(e.with_state(issued))),
                };
                let ok = answers
                    .get("confirm")
                    .and_then(|a| a.get("content"))
                    .and_then(|c| c.get("ok"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let prefix = if ctx.stateless() { "state-ok: " } else { "" };
                vec![text(&format!("{prefix}confirmed, ok={ok}"))]
            }
            "test_input_required_result_multiple_inputs" => {
                let asks = vec![
                    ask_name("user_name", "What is your name?"),
                    ask_sampling("greeting", "Generate a greeting", 50),
                    ask_roots("client_roots"),
                ];
                let answers = match gather(ctx, asks).await {
                    Ok(answers) => answers,
                    Err(e) => return Some(Err(e.with_state(json!({"asked": "all"})))),
                };
                let name = accepted(&answers, "user_name", "name").unwrap_or_default();
                let greeting = answers.get("greeting").map(sampled_text).unwrap_or_default();
                let roots = root_uris(answers.get("client_roots"));
                vec![text(&format!("name={name}, greeting={greeting}, roots={roots}"))]
            }
            "test_input_required_result_multi_round" => {
                // Round 2 and 3 find the name in the sealed state; the session era asks both in one run.
                let known = ctx
                    .request_state()
                    .and_then(|s| s.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let name = match known {
                    Some(name) => name,
                    None => match gather(ctx, vec![ask_name("step1", "Step 1: What is your name?")]).await {
                        Ok(answers) => accepted(&answers, "step1", "name").unwrap_or_default(),
                        Err(e) => return Some(Err(e.with_state(json!({"round": 1})))),
                    },
                };
                let ask_color = Ask {
                    key: "step2",
                    capability: "elicitation",
                    method: "elicitation/create",
                    params: form("Step 2: What is your favorite color?", "color", "string"),
                };
                let answers = match gather(ctx, vec![ask_color]).await {
                    Ok(answers) => answers,
                    Err(e) => return Some(Err(e.with_state(json!({"round": 2, "name": name})))),
                };
                let color = accepted(&answers, "step2", "color").unwrap_or_default();
                vec![text(&format!("{name} likes {color}"))]
            }
            "test_input_required_result_capabilities" => {
                let declared = |capability: &str| {
                    ctx.client_capabilities()
                        .and_then(|c| c.get(capability))
                        .is_some_and(|c| !c.is_null())
                };
                let mut asks = Vec::new();
                if declared("elicitation") {
                    asks.push(ask_name("user_name", "What is your name?"));
                }
                if declared("sampling") {
                    asks.push(ask_sampling("greeting", "Generate a greeting", 50));
                }
                if declared("roots") {
                    asks.push(ask_roots("client_roots"));
                }
                if asks.is_empty() {
                    vec![text(
                        "Nothing to ask: the client declared none of elicitation, sampling and roots",
                    )]
                } else {
                    let keys: Vec<&str> = asks.iter().map(|a| a.key).collect();
                    let keys = keys.join(", ");
                    if let Err(e) = gather(ctx, asks).await {
                        return Some(Err(e));
                    }
                    vec![text(&format!("Received {keys}"))]
                }
            }
            "test_trigger_tool_change" => {
                server.announce(ListChange::Tools);
                vec![text("Tool list change announced")]
            }
            "test_trigger_prompt_change" => {
                server.announce(ListChange::Prompts);
                vec![text("Prompt list change announced")]
            }
            _ => return None,
        };
        Some(Ok(json!({"content": content, "isError": false})))
    }

    /// Elicits `request` and reports the user's answer as `"{label}: action=…, content=…"`.
    async fn elicit(&self, ctx: &RequestContext, request: Value, label: &str) -> Result<Value, ClientRequestError> {
        let answer = ctx.elicit("elicitation", request).await?;
        let action = answer.get("action").and_then(Value::as_str).unwrap_or("cancel");
        let content = answer.get("content").cloned().unwrap_or_else(|| json!({}));
        Ok(json!({
            "content": [text(&format!("{label}: action={action}, content={content}"))],
            "isError": false,
        }))
    }

    /// `prompts/get` of `test_input_required_result_prompt`, which asks the user for context first.
    pub(super) async fn input_required_prompt(&self, ctx: &RequestContext) -> Result<Value, ClientRequestError> {
        let ask = Ask {
            key: "user_context",
            capability: "elicitation",
            method: "elicitation/create",
            params: form("What context should the prompt use?", "context", "string"),
        };
        let answers = gather(ctx, vec![ask]).await?;
        let context = accepted(&answers, "user_context", "context").unwrap_or_default();
        Ok(json!({
            "description": "A prompt that needed the user's context",
            "messages": [{"role": "user", "content": text(&format!("Use this context: {context}"))}],
        }))
    }

    /// The minimum severity index to log at: the request's `_meta` level (2026-07-28, where nothing is logged
    /// without one) or the session's `logging/setLevel` (earlier versions, where the default is `info`).
    fn threshold(&self, request_meta: Option<&Value>, ctx: &RequestContext) -> Option<usize> {
        let requested = request_meta
            .and_then(|m| m.get(META_LOG_LEVEL))
            .and_then(Value::as_str)
            .and_then(|l| LEVELS.iter().position(|x| *x == l));
        if ctx.stateless() {
            return requested;
        }
        let set = self.log_level.lock().map(|l| *l).unwrap_or(None);
        requested.or(set).or(Some(1))
    }

    /// Handles a non-tool method of the fixture; `None` when the fixture does not serve `method`.
    pub(super) fn handle(&self, method: &str, params: &Map<String, Value>) -> Option<Result<Value, RpcError>> {
        let str_param = |name: &str| params.get(name).and_then(Value::as_str);
        Some(match method {
            "resources/list" => Ok(json!({"resources": [
                {"uri": "test://static-text", "name": "static-text", "description": "A static text resource",
                 "mimeType": "text/plain"},
                {"uri": "test://static-binary", "name": "static-binary", "description": "A static PNG image",
                 "mimeType": "image/png"},
                {"uri": "test://watched-resource", "name": "watched-resource",
                 "description": "A resource that can be subscribed to", "mimeType": "text/plain"},
            ]})),
            "resources/templates/list" => Ok(json!({"resourceTemplates": [{
                "uriTemplate": "test://template/{id}/data",
                "name": "template-data",
                "description": "Data for an id",
                "mimeType": "application/json",
            }]})),
            "resources/read" => match str_param("uri") {
                Some(uri) => read_resource(uri),
                None => Err(RpcError::invalid_params("resources/read needs a string \"uri\"")),
            },
            "resources/subscribe" | "resources/unsubscribe" => match str_param("uri") {
                Some(uri) => {
                    if let Ok(mut subscriptions) = self.subscriptions.lock() {
                        if method == "resources/subscribe" {
                            subscriptions.insert(uri.to_owned());
                        } else {
                            subscriptions.remove(uri);
                        }
                    }
                    Ok(json!({}))
                }
                None => Err(RpcError::invalid_params(format!("{method} needs a string \"uri\""))),
            },
            "prompts/list" => Ok(json!({"prompts": [
                {"name": "test_simple_prompt", "description": "A prompt without arguments"},
                {"name": "test_prompt_with_arguments", "description": "A prompt with two arguments", "arguments": [
                    {"name": "arg1", "description": "First argument", "required": true},
                    {"name": "arg2", "description": "Second argument", "required": true},
                ]},
                {"name": "test_prompt_with_embedded_resource", "description": "A prompt embedding a resource",
                 "arguments": [{"name": "resourceUri", "description": "The resource to embed", "required": true}]},
                {"name": "test_prompt_with_image", "description": "A prompt with an image"},
                {"name": INPUT_REQUIRED_PROMPT, "description": "A prompt that asks the user for context first"},
            ]})),
            "prompts/get" if str_param("name") == Some(INPUT_REQUIRED_PROMPT) => return None,
            "prompts/get" => get_prompt(str_param("name").unwrap_or_default(), params.get("arguments")),
            "logging/setLevel" => match str_param("level").and_then(|l| LEVELS.iter().position(|x| *x == l)) {
                Some(level) => {
                    if let Ok(mut current) = self.log_level.lock() {
                        *current = Some(level);
                    }
                    Ok(json!({}))
                }
                None => Err(RpcError::invalid_params(format!(
                    "\"level\" must be one of {}",
                    LEVELS.join(", ")
                ))),
            },
            "completion/complete" => Ok(json!({"completion": {"values": [], "total": 0, "hasMore": false}})),
            _ => return None,
        })
    }
}

/// The text of a `sampling/createMessage` result (`content` is one block, or a list of them since 2025-11-25).
fn sampled_text(answer: &Value) -> String {
    let blocks = match answer.get("content") {
        Some(Value::Array(blocks)) => blocks.iter().collect(),
        Some(block) => vec![block],
        None => Vec::new(),
    };
    blocks
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

fn without_mode(mut request: Value) -> Value {
    if let Value::Object(map) = &mut request {
        map.remove("mode");
    }
    request
}

fn read_resource(uri: &str) -> Result<Value, RpcError> {
    let content = match uri {
        "test://static-text" => json!({
            "uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource.",
        }),
        "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG_BASE64}),
        "test://watched-resource" => json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content"}),
        _ => match uri
            .strip_prefix("test://template/")
            .and_then(|rest| rest.strip_suffix("/data"))
        {
            Some(id) if !id.is_empty() && !id.contains('/') => json!({
                "uri": uri,
                "mimeType": "application/json",
                "text": json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string(),
            }),
            _ => {
                return Err(
                    RpcError::invalid_params(format!("Resource not found: {uri}")).with_data(json!({"uri": uri}))
                );
            }
        },
    };
    Ok(json!({"contents": [content]}))
}

fn get_prompt(name: &str, arguments: Option<&Value>) -> Result<Value, RpcError> {
    let argument = |key: &str| arguments.and_then(|a| a.get(key)).and_then(Value::as_str);
    let user = |content: Value| json!({"role": "user", "content": content});
    let messages = match name {
        "test_simple_prompt" => vec![user(text("This is a simple prompt for testing."))],
        "test_prompt_with_arguments" => {
            let (Some(arg1), Some(arg2)) = (argument("arg1"), argument("arg2")) else {
                return Err(RpcError::invalid_params(
                    "test_prompt_with_arguments needs \"arg1\" and \"arg2\"",
                ));
            };
            vec![user(text(&format!(
                "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
            )))]
        }
        "test_prompt_with_embedded_resource" => {
            let Some(uri) = argument("resourceUri") else {
                return Err(RpcError::invalid_params(
                    "test_prompt_with_embedded_resource needs \"resourceUri\"",
                ));
            };
            vec![
                user(json!({
                    "type": "resource",
                    "resource": {"uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing."},
                })),
                user(text("Please process the embedded resource above.")),
            ]
        }
        "test_prompt_with_image" => vec![
            user(json!({"type": "image", "data": PNG_BASE64, "mimeType": "image/png"})),
            user(text("Please analyze the image above.")),
        ],
        other => return Err(RpcError::invalid_params(format!("unknown prompt {other:?}"))),
    };
    Ok(json!({"messages": messages}))
}
