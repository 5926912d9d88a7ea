//! toolplane's workflow engine: runs workflows written in Dify's workflow DSL and publishes them as tools.
//!
//! This crate owns:
//! - [`Workflow::from_dsl`]: importing Dify's exported YAML/JSON with validation that lists every problem
//!   (unsupported node types with their ids, missing or duplicate start nodes, dangling edges, cycles, unknown
//!   variable references);
//! - the [`Engine`]: a variable pool with `{{#node.var#}}` references, concurrent branches, per-node
//!   [`RunEvent`]s, a per-run timeout, cancellation and a call-depth limit (`WORKFLOW_CALL_MAX_DEPTH`);
//! - the node types `start`, `end`, `tool` (through a [`ToolInvoker`], e.g. [`CatalogInvoker`]),
//!   `template-transform` (minijinja with fuel), `http-request` (through `toolplane_net::SafeClient`),
//!   `if-else`, `variable-aggregator`, `code` (python3 / javascript in the [`sandbox`]) and `iteration`;
//! - workflow-as-tool: [`start_variables_to_parameters`], [`output_schema`] and [`WorkflowTool`].
//!
//! Storage of workflows, console routes and the catalog source of workflow tools live in other crates.

mod as_tool;
mod dsl;
mod engine;
mod error;
mod graph;
mod invoker;
mod nodes;
mod pool;
pub mod sandbox;

pub use as_tool::{
    WorkflowTool, WorkflowToolConfig, WorkflowToolError, WorkflowToolParameterConfiguration, output_schema,
    outputs_to_messages, start_variables_to_parameters,
};
pub use dsl::{
    AggregatorData, AggregatorGroup, AggregatorSettings, Case, CodeData, CodeLanguage, CodeOutput, Condition, Edge,
    EndData, HttpAuthConfig, HttpAuthorization, HttpBody, HttpBodyEntry, HttpRequestData, HttpTimeout, IfElseData,
    IterationData, Node, NodeKind, SUPPORTED_NODE_TYPES, StartData, StartVariable, TemplateData, ToolData, ToolInput,
    ToolInputType, ValueSelector, VariableSelector, VariableType, Workflow,
};
pub use engine::{
    ENV_MAX_DEPTH, ENV_MAX_EXECUTION_TIME, Engine, EngineBuilder, EngineConfig, IterationPosition, RunContext,
    RunEvent, RunStream,
};
pub use error::{DslError, DslProblem, NodeError, RunError};
pub use invoker::{CatalogInvoker, ToolCall, ToolInvoker, current_call_depth, with_call_depth};
pub use nodes::FILE_MODEL_IDENTITY;
pub use pool::{VariablePool, template_references, value_to_text};
