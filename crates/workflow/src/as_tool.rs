//! Workflow-as-tool: typing a workflow's start variables as tool parameters, its end outputs as the output
//! schema, and [`WorkflowTool`], a [`Tool`] that runs a pinned workflow version through the [`Engine`].

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use toolplane_core::{
    I18nObject, MessageStream, ParameterOption, Tool, ToolDescription, ToolEntity, ToolError, ToolIdentity,
    ToolInvokeMessage, ToolParameter, ToolParameterForm, ToolParameterType, ToolProvider, ToolProviderEntity,
    ToolProviderIdentity, ToolProviderType, ToolRuntime,
};

use crate::dsl::{NodeKind, VariableType, Workflow};
use crate::engine::{Engine, RunContext};
use crate::error::{DslError, RunError};
use crate::invoker::current_call_depth;
use crate::nodes::FILE_MODEL_IDENTITY;

/// One published parameter of a workflow tool (`WorkflowToolParameterConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowToolParameterConfiguration {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub form: ToolParameterForm,
}

/// Why a workflow cannot be published or built as a tool.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WorkflowToolError {
    #[error(transparent)]
    Dsl(#[from] DslError),

    #[error("variable not found: the start node has no variable {0:?} (and the file_upload feature is off)")]
    VariableNotFound(String),

    #[error("unsupported variable type {kind} of start variable {name:?}")]
    UnsupportedVariableType { name: String, kind: String },

    #[error("invalid tool name {0:?}: use only letters, digits and underscores")]
    InvalidName(String),
}

/// Types the configured parameters from the start node's variables by Dify's mapping: text-input and
/// paragraph → string, select → select (with the variable's options), number → number, checkbox → boolean,
/// file → file, file-list → files, json_object → object. A configured name with no start variable becomes a
/// `system-files` parameter when the workflow's `file_upload` feature is on, and is an error otherwise.
pub fn start_variables_to_parameters(
    workflow: &Workflow,
    configurations: &[WorkflowToolParameterConfiguration],
) -> Result<Vec<ToolParameter>, WorkflowToolError> {
    let variables = workflow.start_variables();
    let mut parameters = Vec::with_capacity(configurations.len());
    for configuration in configurations {
        let description = I18nObject::new(configuration.description.clone());
        let Some(variable) = variables.iter().find(|v| v.variable == configuration.name) else {
            if workflow.file_upload_enabled() {
                let mut parameter =
                    ToolParameter::new(&configuration.name, ToolParameterType::SystemFiles, configuration.form);
                parameter.human_description = Some(description);
                parameter.llm_description = Some(configuration.description.clone());
                parameters.push(parameter);
                continue;
            }
            return Err(WorkflowToolError::VariableNotFound(configuration.name.clone()));
        };
        let kind = match variable.kind {
            VariableType::TextInput | VariableType::Paragraph => ToolParameterType::String,
            VariableType::Select => ToolParameterType::Select,
            VariableType::Number => ToolParameterType::Number,
            VariableType::Checkbox => ToolParameterType::Boolean,
            VariableType::File => ToolParameterType::File,
            VariableType::FileList => ToolParameterType::Files,
            VariableType::JsonObject => ToolParameterType::Object,
            VariableType::ExternalDataTool => {
                return Err(WorkflowToolError::UnsupportedVariableType {
                    name: variable.variable.clone(),
                    kind: "external_data_tool".into(),
                });
            }
        };
        let mut parameter = ToolParameter::new(&configuration.name, kind, configuration.form);
        parameter.label = I18nObject::new(variable.label.clone().unwrap_or_else(|| variable.variable.clone()));
        parameter.human_description = Some(description);
        parameter.llm_description = Some(configuration.description.clone());
        parameter.required = variable.required;
        parameter.default = variable.default.clone().filter(|d| !d.is_null());
        if kind == ToolParameterType::Select {
            parameter.options = variable
                .options
                .iter()
                .map(|o| ParameterOption {
                    value: o.clone(),
                    label: I18nObject::new(o.clone()),
                    icon: None,
                })
                .collect();
        }
        parameters.push(parameter);
    }
    Ok(parameters)
}

/// The output schema from every end node's outputs: `{"type": "object", "properties": {name: {"type", "description"}}}`.
/// Later end nodes override earlier ones; the reserved names `text`, `json` and `files` are skipped. The type is
/// the output's `value_type`, else the declared type of a code output or start variable it points to, else
/// `string` for template outputs and `any` when unknown.
pub fn output_schema(workflow: &Workflow) -> Map<String, Value> {
    let mut properties = Map::new();
    for (_, end) in workflow.end_nodes() {
        for output in &end.outputs {
            if matches!(output.variable.as_str(), "text" | "json" | "files") {
                continue;
            }
            let kind = output
                .value_type
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| infer_type(workflow, &output.value_selector));
            properties.insert(output.variable.clone(), json!({"type": kind, "description": ""}));
        }
    }
    let mut schema = Map::new();
    schema.insert("type".into(), Value::String("object".into()));
    schema.insert("properties".into(), Value::Object(properties));
    schema
}

fn infer_type(workflow: &Workflow, selector: &[String]) -> String {
    let (Some(node_id), Some(variable)) = (selector.first(), selector.get(1)) else {
        return "any".into();
    };
    let Some(node) = workflow.node(node_id) else {
        return "any".into();
    };
    let kind = match &node.kind {
        NodeKind::Code(data) if selector.len() == 2 => data
            .declared_outputs()
            .into_iter()
            .find(|(n, _)| n == variable)
            .map(|(_, t)| t),
        NodeKind::TemplateTransform(_) => Some("string".into()),
        NodeKind::Start(data) => data.variables.iter().find(|v| &v.variable == variable).map(|v| {
            match v.kind {
                VariableType::Number => "number",
                VariableType::Checkbox => "boolean",
                VariableType::JsonObject => "object",
                VariableType::File => "file",
                VariableType::FileList => "array[file]",
                _ => "string",
            }
            .to_owned()
        }),
        NodeKind::Tool(_) => match variable.as_str() {
            "text" => Some("string".into()),
            "json" => Some("array[object]".into()),
            "files" => Some("array[file]".into()),
            _ => None,
        },
        _ => None,
    };
    kind.unwrap_or_else(|| "any".into())
}

/// How a workflow is published as a tool (the stored `tool_workflow_providers` row, minus storage concerns).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkflowToolConfig {
    /// The provider record id (the tool's `provider` and the provider's id).
    pub provider_id: String,
    /// Tool name, `^[a-zA-Z0-9_]+$`.
    pub name: String,
    pub label: String,
    pub description: String,
    /// Icon as stored (Dify keeps an emoji JSON string).
    pub icon: String,
    pub author: String,
    pub parameters: Vec<WorkflowToolParameterConfiguration>,
    /// The pinned workflow version.
    pub version: String,
    /// `sys.app_id` for runs.
    pub app_id: Option<String>,
}

/// A workflow published as a tool: runs its pinned workflow through the [`Engine`] at the caller's depth + 1.
pub struct WorkflowTool {
    engine: Engine,
    workflow: Arc<Workflow>,
    config: WorkflowToolConfig,
    entity: ToolEntity,
}

impl WorkflowTool {
    /// A tool over an imported workflow.
    pub fn new(engine: Engine, workflow: Arc<Workflow>, config: WorkflowToolConfig) -> Result<Self, WorkflowToolError> {
        if config.name.is_empty() || !config.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(WorkflowToolError::InvalidName(config.name.clone()));
        }
        let parameters = start_variables_to_parameters(&workflow, &config.parameters)?;
        let entity = ToolEntity {
            identity: ToolIdentity {
                author: config.author.clone(),
                name: config.name.clone(),
                label: I18nObject::new(config.label.clone()),
                provider: config.provider_id.clone(),
                icon: Some(config.icon.clone()),
            },
            parameters,
            description: Some(ToolDescription {
                human: I18nObject::new(config.description.clone()),
                llm: config.description.clone(),
            }),
            output_schema: output_schema(&workflow),
            has_runtime_parameters: false,
        };
        Ok(Self {
            engine,
            workflow,
            config,
            entity,
        })
    }

    /// A tool from a stored DSL string.
    pub fn from_dsl(engine: Engine, dsl: &str, config: WorkflowToolConfig) -> Result<Self, WorkflowToolError> {
        let workflow = Workflow::from_dsl(dsl)?;
        Self::new(engine, Arc::new(workflow), config)
    }

    /// The publication settings.
    pub fn config(&self) -> &WorkflowToolConfig {
        &self.config
    }

    /// The workflow it runs.
    pub fn workflow(&self) -> &Arc<Workflow> {
        &self.workflow
    }

    /// Wraps this tool in its own provider (Dify's `WorkflowToolProviderController`: one tool per provider,
    /// provider name = the tool's label, no credentials).
    pub fn into_provider(self) -> Arc<dyn ToolProvider> {
        let entity = ToolProviderEntity {
            identity: ToolProviderIdentity {
                author: self.config.author.clone(),
                name: self.config.label.clone(),
                description: I18nObject::new(self.config.description.clone()),
                icon: self.config.icon.clone(),
                icon_dark: None,
                label: I18nObject::new(self.config.label.clone()),
                tags: Vec::new(),
            },
            plugin_id: None,
            credentials_schema: Vec::new(),
            oauth_schema: None,
        };
        Arc::new(WorkflowToolProvider {
            id: self.config.provider_id.clone(),
            entity,
            tool: Arc::new(self),
        })
    }
}

#[async_trait]
impl Tool for WorkflowTool {
    fn entity(&self) -> &ToolEntity {
        &self.entity
    }

    async fn invoke(
        &self,
        runtime: ToolRuntime,
        mut parameters: Map<String, Value>,
        cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let depth = current_call_depth() + 1;
        let mut inputs = Map::new();
        let mut files = Vec::new();
        for parameter in &self.entity.parameters {
            let value = parameters.remove(&parameter.name).unwrap_or(Value::Null);
            if parameter.kind == ToolParameterType::SystemFiles {
                match value {
                    Value::Array(items) => files.extend(items),
                    Value::Null => {}
                    other => files.push(other),
                }
            } else {
                inputs.insert(parameter.name.clone(), value);
            }
        }
        let ctx = RunContext {
            tenant_id: runtime.tenant_id.clone(),
            user_id: runtime.user_id.clone(),
            app_id: self.config.app_id.clone(),
            workflow_id: Some(self.config.version.clone()).filter(|v| !v.is_empty()),
            run_id: None,
            files,
            call_depth: depth,
            cancel,
        };
        let outputs = self
            .engine
            .invoke(&self.workflow, inputs, ctx)
            .await
            .map_err(|e| run_error_to_tool_error(&self.config.name, e))?;
        let messages = outputs_to_messages(outputs);
        Ok(futures::stream::iter(messages.into_iter().map(Ok)).boxed())
    }
}

fn run_error_to_tool_error(tool: &str, error: RunError) -> ToolError {
    match error {
        RunError::Cancelled => ToolError::Cancelled,
        RunError::Timeout { seconds } => ToolError::Timeout { seconds },
        other => ToolError::Invoke(format!("workflow tool {tool:?}: {other}")),
    }
}

/// Maps workflow outputs to tool messages as Dify's `WorkflowTool` does: file objects (top level or inside
/// lists) become file messages and leave the outputs; every other output becomes a variable message (except
/// the reserved `text`, `json`, `files`); then one text message with the outputs as JSON and one json message
/// (`suppress_output: true`).
pub fn outputs_to_messages(outputs: Map<String, Value>) -> Vec<ToolInvokeMessage> {
    let mut messages = Vec::new();
    let mut rest = Map::new();
    for (name, value) in outputs {
        match value {
            Value::Object(ref o) if is_file(o) => messages.push(file_message(value)),
            Value::Array(items) if !items.is_empty() && items.iter().all(|i| i.as_object().is_some_and(is_file)) => {
                messages.extend(items.into_iter().map(file_message));
            }
            other => {
                rest.insert(name, other);
            }
        }
    }
    for (name, value) in &rest {
        if !matches!(name.as_str(), "text" | "json" | "files") {
            messages.push(ToolInvokeMessage::variable(name.clone(), value.clone()));
        }
    }
    let rest = Value::Object(rest);
    messages.push(ToolInvokeMessage::text(rest.to_string()));
    let mut json_message = ToolInvokeMessage::json(rest);
    if let toolplane_core::MessagePayload::Json(j) = &mut json_message.payload {
        j.suppress_output = true;
    }
    messages.push(json_message);
    messages
}

fn is_file(object: &Map<String, Value>) -> bool {
    object.get("dify_model_identity").and_then(Value::as_str) == Some(FILE_MODEL_IDENTITY)
}

fn file_message(file: Value) -> ToolInvokeMessage {
    let mut meta = Map::new();
    meta.insert("file".into(), file);
    ToolInvokeMessage {
        payload: toolplane_core::MessagePayload::File(toolplane_core::FileMessage {
            file_marker: "file_marker".into(),
        }),
        meta: Some(meta),
    }
}

/// The provider of one workflow tool.
struct WorkflowToolProvider {
    id: String,
    entity: ToolProviderEntity,
    tool: Arc<WorkflowTool>,
}

#[async_trait]
impl ToolProvider for WorkflowToolProvider {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Workflow
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn entity(&self) -> &ToolProviderEntity {
        &self.entity
    }

    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        Ok(vec![Arc::clone(&self.tool) as Arc<dyn Tool>])
    }
}
