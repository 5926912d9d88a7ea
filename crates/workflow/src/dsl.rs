//! Parsing and validating Dify's workflow DSL.
//!
//! The accepted document is what Dify exports for a workflow app (YAML or JSON):
//! `app.mode: workflow` and `workflow.graph.{nodes, edges}`. A bare `{graph: …}` or `{nodes, edges}` document is
//! accepted too (what Dify's draft API returns). Canvas notes (`type: custom-note`) carry no behaviour and are
//! ignored; every other node must have a supported `data.type`, otherwise the import fails listing each
//! unsupported node with its id and type.

use std::collections::{HashMap, HashSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{DslError, DslProblem};
use crate::graph::Graph;
use crate::pool::template_references;

/// A variable path: `[node_id, variable, key…]`; the first element may also be `sys` or `env`.
pub type ValueSelector = Vec<String>;

/// The node types the engine runs.
pub const SUPPORTED_NODE_TYPES: &[&str] = &[
    "start",
    "end",
    "tool",
    "template-transform",
    "http-request",
    "if-else",
    "variable-aggregator",
    "code",
    "iteration",
    "iteration-start",
];

/// A parsed, validated workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// `app.name`, if the document had one.
    pub name: Option<String>,
    /// `app.description`.
    pub description: Option<String>,
    /// Every node, in document order (notes removed).
    pub nodes: Vec<Node>,
    /// Every edge, in document order.
    pub edges: Vec<Edge>,
    /// `workflow.environment_variables`, by name.
    pub environment: Map<String, Value>,
    /// `workflow.features` as given (`file_upload` matters for workflow tools).
    pub features: Map<String, Value>,
    pub(crate) graph: Graph,
}

/// A node of the graph.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    /// `data.title`, or the id when absent.
    pub title: String,
    /// The iteration this node belongs to (`parentId` / `data.iteration_id`), `None` at top level.
    pub parent: Option<String>,
    pub kind: NodeKind,
}

impl Node {
    /// The DSL type name (`data.type`).
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

/// A node's type with its typed data.
#[derive(Debug, Clone)]
pub enum NodeKind {
    Start(StartData),
    End(EndData),
    Tool(ToolData),
    TemplateTransform(TemplateData),
    HttpRequest(HttpRequestData),
    IfElse(IfElseData),
    VariableAggregator(AggregatorData),
    Code(CodeData),
    Iteration(IterationData),
    IterationStart,
}

impl NodeKind {
    /// The DSL type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Start(_) => "start",
            Self::End(_) => "end",
            Self::Tool(_) => "tool",
            Self::TemplateTransform(_) => "template-transform",
            Self::HttpRequest(_) => "http-request",
            Self::IfElse(_) => "if-else",
            Self::VariableAggregator(_) => "variable-aggregator",
            Self::Code(_) => "code",
            Self::Iteration(_) => "iteration",
            Self::IterationStart => "iteration-start",
        }
    }
}

/// An edge; `source_handle` is `source` for ordinary edges and a case id or `false` after an if-else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    #[serde(default)]
    pub id: String,
    pub source: String,
    pub target: String,
    #[serde(default = "default_handle", rename = "sourceHandle")]
    pub source_handle: String,
}

fn default_handle() -> String {
    "source".to_owned()
}

/// The input types of start variables (`VariableEntityType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VariableType {
    TextInput,
    Paragraph,
    Select,
    Number,
    Checkbox,
    File,
    FileList,
    #[serde(rename = "json_object")]
    JsonObject,
    #[serde(rename = "external_data_tool")]
    ExternalDataTool,
}

/// One start-node variable (`VariableEntity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartVariable {
    pub variable: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub kind: VariableType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub max_length: Option<u64>,
    #[serde(default, deserialize_with = "null_default")]
    pub options: Vec<String>,
    #[serde(default)]
    pub default: Option<Value>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `start` data.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StartData {
    #[serde(default, deserialize_with = "null_default")]
    pub variables: Vec<StartVariable>,
}

/// One output of an `end` node, or one input variable of template and code nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariableSelector {
    pub variable: String,
    #[serde(default, deserialize_with = "null_default")]
    pub value_selector: ValueSelector,
    /// Declared type of an end output (`value_type`), used for the output schema.
    #[serde(default)]
    pub value_type: Option<String>,
}

/// `end` data.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EndData {
    #[serde(default, deserialize_with = "null_default")]
    pub outputs: Vec<VariableSelector>,
}

/// A tool input (`ToolInput`): `{type: mixed|variable|constant, value}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInput {
    #[serde(rename = "type")]
    pub kind: ToolInputType,
    #[serde(default)]
    pub value: Value,
}

/// How a [`ToolInput`] value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolInputType {
    /// A string with `{{#node.var#}}` references, rendered to text.
    Mixed,
    /// A value selector; the referenced value as is.
    Variable,
    /// A literal value.
    Constant,
}

/// `tool` data.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolData {
    pub provider_id: String,
    pub provider_type: String,
    #[serde(default)]
    pub provider_name: Option<String>,
    pub tool_name: String,
    #[serde(default)]
    pub tool_label: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub tool_parameters: Map<String, Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub tool_configurations: Map<String, Value>,
    #[serde(default)]
    pub credential_id: Option<String>,
}

impl ToolData {
    /// Every input, parameters and configurations alike, as [`ToolInput`]s. A plain value (the older
    /// `tool_configurations` form) is a constant.
    pub fn inputs(&self) -> Vec<(String, ToolInput)> {
        self.tool_configurations
            .iter()
            .chain(self.tool_parameters.iter())
            .map(|(name, raw)| (name.clone(), as_tool_input(raw)))
            .collect()
    }
}

fn as_tool_input(raw: &Value) -> ToolInput {
    if let Value::Object(map) = raw
        && map.contains_key("type")
        && let Ok(input) = serde_json::from_value::<ToolInput>(raw.clone())
    {
        return input;
    }
    ToolInput {
        kind: ToolInputType::Constant,
        value: raw.clone(),
    }
}

/// `template-transform` data.
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateData {
    #[serde(default, deserialize_with = "null_default")]
    pub variables: Vec<VariableSelector>,
    pub template: String,
}

/// `http-request` authorization.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpAuthorization {
    /// `no-auth` or `api-key`.
    #[serde(rename = "type", default = "no_auth")]
    pub kind: String,
    #[serde(default)]
    pub config: Option<HttpAuthConfig>,
}

fn no_auth() -> String {
    "no-auth".to_owned()
}

/// `authorization.config`: `{type: basic|bearer|custom, api_key, header}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpAuthConfig {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub api_key: String,
    #[serde(default)]
    pub header: Option<String>,
}

/// One entry of an http-request body: `{key, type: text|file, value}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpBodyEntry {
    #[serde(default)]
    pub key: String,
    #[serde(rename = "type", default = "text_kind")]
    pub kind: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub file: Option<ValueSelector>,
}

fn text_kind() -> String {
    "text".to_owned()
}

/// `http-request` body: `{type: none|json|raw-text|form-data|x-www-form-urlencoded|binary, data}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HttpBody {
    pub kind: String,
    pub data: Vec<HttpBodyEntry>,
}

impl<'de> Deserialize<'de> for HttpBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(rename = "type", default)]
            kind: Option<String>,
            #[serde(default)]
            data: Value,
        }
        let wire = Wire::deserialize(deserializer)?;
        let data = match wire.data {
            // Older DSLs keep the body as one string (raw text / JSON) or "k:v\n" lines for forms.
            Value::String(s) if s.is_empty() => Vec::new(),
            Value::String(s) => vec![HttpBodyEntry {
                value: s,
                kind: "text".into(),
                ..HttpBodyEntry::default()
            }],
            Value::Null => Vec::new(),
            other => serde_json::from_value(other).map_err(serde::de::Error::custom)?,
        };
        Ok(Self {
            kind: wire.kind.unwrap_or_else(|| "none".into()),
            data,
        })
    }
}

/// `http-request` timeouts in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpTimeout {
    #[serde(default)]
    pub connect: Option<f64>,
    #[serde(default)]
    pub read: Option<f64>,
    #[serde(default)]
    pub write: Option<f64>,
}

/// `http-request` data.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpRequestData {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub authorization: HttpAuthorization,
    /// `"Key:value"` lines, with references.
    #[serde(default, deserialize_with = "null_default")]
    pub headers: String,
    /// `"key:value"` lines, with references.
    #[serde(default, deserialize_with = "null_default")]
    pub params: String,
    #[serde(default)]
    pub body: Option<HttpBody>,
    #[serde(default)]
    pub timeout: Option<HttpTimeout>,
}

/// One if-else condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(default, deserialize_with = "null_default")]
    pub variable_selector: ValueSelector,
    pub comparison_operator: String,
    #[serde(default)]
    pub value: Value,
}

/// One if-else case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub case_id: String,
    #[serde(default = "and")]
    pub logical_operator: String,
    #[serde(default, deserialize_with = "null_default")]
    pub conditions: Vec<Condition>,
}

fn and() -> String {
    "and".to_owned()
}

/// `if-else` data. The legacy single-case form (`logical_operator` + `conditions`) becomes one case `true`.
#[derive(Debug, Clone, Deserialize)]
pub struct IfElseData {
    #[serde(default)]
    pub cases: Option<Vec<Case>>,
    #[serde(default)]
    pub logical_operator: Option<String>,
    #[serde(default)]
    pub conditions: Option<Vec<Condition>>,
}

impl IfElseData {
    /// The cases in evaluation order.
    pub fn all_cases(&self) -> Vec<Case> {
        match &self.cases {
            Some(cases) => cases.clone(),
            None => vec![Case {
                case_id: "true".into(),
                logical_operator: self.logical_operator.clone().unwrap_or_else(and),
                conditions: self.conditions.clone().unwrap_or_default(),
            }],
        }
    }
}

/// One group of a grouped variable aggregator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregatorGroup {
    pub group_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub variables: Vec<ValueSelector>,
    #[serde(default)]
    pub output_type: Option<String>,
}

/// `advanced_settings` of a variable aggregator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AggregatorSettings {
    #[serde(default)]
    pub group_enabled: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub groups: Vec<AggregatorGroup>,
}

/// `variable-aggregator` data.
#[derive(Debug, Clone, Deserialize)]
pub struct AggregatorData {
    #[serde(default, deserialize_with = "null_default")]
    pub variables: Vec<ValueSelector>,
    #[serde(default)]
    pub output_type: Option<String>,
    #[serde(default)]
    pub advanced_settings: Option<AggregatorSettings>,
}

/// Languages of code nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeLanguage {
    Python3,
    Javascript,
}

/// A declared code output: `{type: string|number|boolean|object|array[…]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeOutput {
    #[serde(rename = "type")]
    pub kind: String,
}

/// `code` data.
#[derive(Debug, Clone, Deserialize)]
pub struct CodeData {
    pub code_language: CodeLanguage,
    pub code: String,
    #[serde(default, deserialize_with = "null_default")]
    pub variables: Vec<VariableSelector>,
    #[serde(default, deserialize_with = "null_default")]
    pub outputs: Map<String, Value>,
}

impl CodeData {
    /// Declared outputs with their types, in declaration order.
    pub fn declared_outputs(&self) -> Vec<(String, String)> {
        self.outputs
            .iter()
            .map(|(name, spec)| {
                let kind = spec.get("type").and_then(Value::as_str).unwrap_or("any");
                (name.clone(), kind.to_owned())
            })
            .collect()
    }
}

/// `iteration` data.
#[derive(Debug, Clone, Deserialize)]
pub struct IterationData {
    pub iterator_selector: ValueSelector,
    pub output_selector: ValueSelector,
    #[serde(default)]
    pub start_node_id: Option<String>,
    #[serde(default)]
    pub is_parallel: bool,
    #[serde(default)]
    pub parallel_nums: Option<usize>,
    /// `terminated` (default), `continue-on-error` or `remove-abnormal-output`.
    #[serde(default)]
    pub error_handle_mode: Option<String>,
    #[serde(default)]
    pub flatten_output: bool,
}

fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

const MAX_DSL_BYTES: usize = 10 * 1024 * 1024;

impl Workflow {
    /// Parses and validates a DSL document (YAML or JSON).
    ///
    /// Every problem is collected and reported in one [`DslError::Invalid`]: unsupported node types (each with
    /// its id and type), invalid node data, a missing or duplicate start node, dangling edges, cycles and
    /// references to unknown nodes.
    pub fn from_dsl(text: &str) -> Result<Workflow, DslError> {
        let document = parse_document(text)?;
        Self::from_value(&document)
    }

    /// Like [`from_dsl`](Self::from_dsl) for an already parsed document.
    pub fn from_value(document: &Value) -> Result<Workflow, DslError> {
        if let Some(mode) = document.pointer("/app/mode").and_then(Value::as_str)
            && mode != "workflow"
        {
            return Err(DslError::UnsupportedMode(mode.to_owned()));
        }
        let workflow_section = document.get("workflow").unwrap_or(document);
        let graph = workflow_section.get("graph").unwrap_or(workflow_section);
        let (Some(raw_nodes), raw_edges) = (graph.get("nodes"), graph.get("edges")) else {
            return Err(DslError::MissingGraph);
        };
        let raw_nodes = raw_nodes
            .as_array()
            .ok_or_else(|| DslError::Malformed("graph.nodes must be a list".into()))?;
        let raw_edges = match raw_edges {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err(DslError::Malformed("graph.edges must be a list".into())),
        };

        let mut problems = Vec::new();
        let mut nodes = Vec::new();
        let mut seen = HashSet::new();
        for (index, raw) in raw_nodes.iter().enumerate() {
            match parse_node(index, raw) {
                Ok(Some(node)) => {
                    if !seen.insert(node.id.clone()) {
                        problems.push(DslProblem::DuplicateNode(node.id.clone()));
                    }
                    nodes.push(node);
                }
                Ok(None) => {}
                Err(problem) => problems.push(problem),
            }
        }
        let mut edges = Vec::new();
        for (index, raw) in raw_edges.into_iter().enumerate() {
            match serde_json::from_value::<Edge>(raw) {
                Ok(mut edge) => {
                    if edge.id.is_empty() {
                        edge.id = format!("{}-{}-{}", edge.source, edge.source_handle, edge.target);
                    }
                    edges.push(edge);
                }
                Err(e) => {
                    return Err(DslError::Malformed(format!("edge #{index} is invalid: {e}")));
                }
            }
        }

        let environment = environment_variables(workflow_section);
        let features = workflow_section
            .get("features")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        // Structure checks only make sense once every node parsed.
        if problems.is_empty() {
            check_starts(&nodes, &mut problems);
            check_references(&nodes, &mut problems);
        }
        let graph = if problems.is_empty() {
            match Graph::build(&nodes, &edges) {
                Ok(graph) => Some(graph),
                Err(mut found) => {
                    problems.append(&mut found);
                    None
                }
            }
        } else {
            None
        };
        match graph {
            Some(graph) if problems.is_empty() => Ok(Workflow {
                name: document.pointer("/app/name").and_then(Value::as_str).map(str::to_owned),
                description: document
                    .pointer("/app/description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                nodes,
                edges,
                environment,
                features,
                graph,
            }),
            _ => Err(DslError::Invalid(problems)),
        }
    }

    /// The start node.
    pub fn start(&self) -> &Node {
        // Validation guarantees exactly one top-level start node.
        &self.nodes[self.graph.start_index]
    }

    /// The start node's variables.
    pub fn start_variables(&self) -> &[StartVariable] {
        match &self.start().kind {
            NodeKind::Start(data) => &data.variables,
            _ => &[],
        }
    }

    /// The end nodes, in document order.
    pub fn end_nodes(&self) -> impl Iterator<Item = (&Node, &EndData)> {
        self.nodes.iter().filter_map(|n| match &n.kind {
            NodeKind::End(data) if n.parent.is_none() => Some((n, data)),
            _ => None,
        })
    }

    /// A node by id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.graph.index.get(id).map(|&i| &self.nodes[i])
    }

    /// Whether the `file_upload` feature is enabled (then unknown workflow-tool parameters become files).
    pub fn file_upload_enabled(&self) -> bool {
        self.features
            .get("file_upload")
            .and_then(|f| f.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// JSON first (cheap to reject), then YAML with serde-saphyr under a size and depth budget.
fn parse_document(text: &str) -> Result<Value, DslError> {
    if text.len() > MAX_DSL_BYTES {
        return Err(DslError::Malformed(format!(
            "the DSL is {} bytes; at most {MAX_DSL_BYTES} are accepted",
            text.len()
        )));
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return serde_json::from_str(text).map_err(|e| DslError::Syntax(format!("JSON: {e}")));
    }
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 64;
    options.budget = Some(budget);
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    // YAML 1.2 booleans only: `y`, `n`, `on`, `off` stay strings (a variable named `n` is common).
    options.strict_booleans = true;
    let value: Value =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| DslError::Syntax(format!("YAML: {e}")))?;
    if !value.is_object() {
        return Err(DslError::Malformed("the document must be a mapping".into()));
    }
    Ok(value)
}

fn parse_node(index: usize, raw: &Value) -> Result<Option<Node>, DslProblem> {
    let outer_type = raw.get("type").and_then(Value::as_str).unwrap_or("custom");
    let id = raw
        .get("id")
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    if outer_type == "custom-note" {
        return Ok(None);
    }
    let data = raw.get("data").cloned().unwrap_or(Value::Null);
    let node_type = data.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
    if id.is_empty() {
        return Err(DslProblem::InvalidNodeData {
            id: format!("#{index}"),
            node_type,
            reason: "the node has no id".into(),
        });
    }
    let title = data
        .get("title")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or(&id)
        .to_owned();
    let parent = raw
        .get("parentId")
        .and_then(Value::as_str)
        .or_else(|| {
            let in_iteration = data.get("isInIteration").and_then(Value::as_bool).unwrap_or(false);
            in_iteration
                .then(|| data.get("iteration_id").and_then(Value::as_str))
                .flatten()
        })
        .filter(|p| !p.is_empty())
        .map(str::to_owned);

    fn typed<T: DeserializeOwned>(id: &str, node_type: &str, data: &Value) -> Result<T, DslProblem> {
        serde_json::from_value(data.clone()).map_err(|e| DslProblem::InvalidNodeData {
            id: id.to_owned(),
            node_type: node_type.to_owned(),
            reason: e.to_string(),
        })
    }
    let kind = match node_type.as_str() {
        "start" => NodeKind::Start(typed(&id, &node_type, &data)?),
        "end" => NodeKind::End(typed(&id, &node_type, &data)?),
        "tool" => NodeKind::Tool(typed(&id, &node_type, &data)?),
        "template-transform" => NodeKind::TemplateTransform(typed(&id, &node_type, &data)?),
        "http-request" => NodeKind::HttpRequest(typed(&id, &node_type, &data)?),
        "if-else" => NodeKind::IfElse(typed(&id, &node_type, &data)?),
        "variable-aggregator" => NodeKind::VariableAggregator(typed(&id, &node_type, &data)?),
        "code" => NodeKind::Code(typed(&id, &node_type, &data)?),
        "iteration" => NodeKind::Iteration(typed(&id, &node_type, &data)?),
        "iteration-start" => NodeKind::IterationStart,
        other => {
            return Err(DslProblem::UnsupportedNode {
                id,
                node_type: if other.is_empty() {
                    "(none)".into()
                } else {
                    other.into()
                },
            });
        }
    };
    Ok(Some(Node {
        id,
        title,
        parent,
        kind,
    }))
}

fn environment_variables(workflow: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(items) = workflow.get("environment_variables").and_then(Value::as_array) {
        for item in items {
            if let Some(name) = item.get("name").and_then(Value::as_str) {
                out.insert(name.to_owned(), item.get("value").cloned().unwrap_or(Value::Null));
            }
        }
    }
    out
}

fn check_starts(nodes: &[Node], problems: &mut Vec<DslProblem>) {
    let starts: Vec<&str> = nodes
        .iter()
        .filter(|n| matches!(n.kind, NodeKind::Start(_)))
        .map(|n| n.id.as_str())
        .collect();
    match starts.len() {
        0 => problems.push(DslProblem::MissingStart),
        1 => {}
        count => problems.push(DslProblem::MultipleStarts {
            count,
            ids: starts.join(", "),
        }),
    }
}

/// Every selector and `{{#…#}}` reference must name a node of the workflow, `sys` or `env`.
fn check_references(nodes: &[Node], problems: &mut Vec<DslProblem>) {
    let known: HashSet<&str> = nodes.iter().map(|n| n.id.as_str()).chain(["sys", "env"]).collect();
    for node in nodes {
        let mut check = |selector: &[String]| {
            let Some(target) = selector.first() else { return };
            if !known.contains(target.as_str()) {
                problems.push(DslProblem::UnknownReference {
                    node: node.id.clone(),
                    reference: format!("{{{{#{}#}}}}", selector.join(".")),
                    target: target.clone(),
                });
            }
        };
        for selector in node_references(node) {
            check(&selector);
        }
    }
}

/// The selectors a node reads (explicit selectors and references inside templates).
pub(crate) fn node_references(node: &Node) -> Vec<ValueSelector> {
    let mut out: Vec<ValueSelector> = Vec::new();
    let mut texts: Vec<&str> = Vec::new();
    match &node.kind {
        NodeKind::Start(_) | NodeKind::IterationStart => {}
        NodeKind::End(data) => out.extend(data.outputs.iter().map(|o| o.value_selector.clone())),
        NodeKind::TemplateTransform(data) => {
            out.extend(data.variables.iter().map(|v| v.value_selector.clone()));
        }
        NodeKind::Code(data) => out.extend(data.variables.iter().map(|v| v.value_selector.clone())),
        NodeKind::Tool(data) => {
            for (_, input) in data.inputs() {
                match (input.kind, &input.value) {
                    (ToolInputType::Variable, Value::Array(items)) => out.push(
                        items
                            .iter()
                            .map(|s| s.as_str().unwrap_or_default().to_owned())
                            .collect(),
                    ),
                    (ToolInputType::Mixed, Value::String(text)) => out.extend(template_references(text)),
                    _ => {}
                }
            }
        }
        NodeKind::HttpRequest(data) => {
            texts.extend([data.url.as_str(), data.headers.as_str(), data.params.as_str()]);
            if let Some(body) = &data.body {
                for entry in &body.data {
                    texts.push(&entry.value);
                    texts.push(&entry.key);
                    if let Some(file) = &entry.file {
                        out.push(file.clone());
                    }
                }
            }
            texts.push(data.authorization.config.as_ref().map_or("", |c| c.api_key.as_str()));
        }
        NodeKind::IfElse(data) => {
            for case in data.all_cases() {
                for condition in case.conditions {
                    out.push(condition.variable_selector.clone());
                    if let Value::String(text) = &condition.value {
                        out.extend(template_references(text));
                    }
                }
            }
        }
        NodeKind::VariableAggregator(data) => {
            out.extend(data.variables.iter().cloned());
            if let Some(settings) = &data.advanced_settings {
                for group in &settings.groups {
                    out.extend(group.variables.iter().cloned());
                }
            }
        }
        NodeKind::Iteration(data) => {
            out.push(data.iterator_selector.clone());
            out.push(data.output_selector.clone());
        }
    }
    for text in texts {
        out.extend(template_references(text));
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Node ids by index, for the graph builder.
pub(crate) fn index_nodes(nodes: &[Node]) -> HashMap<String, usize> {
    nodes.iter().enumerate().map(|(i, n)| (n.id.clone(), i)).collect()
}
