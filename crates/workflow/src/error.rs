//! Errors of importing and running workflows.

use thiserror::Error;

/// One problem found while importing a workflow DSL.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DslProblem {
    #[error("node {id:?} has unsupported type {node_type:?}")]
    UnsupportedNode { id: String, node_type: String },

    #[error("node {id:?} ({node_type}) has invalid data: {reason}")]
    InvalidNodeData {
        id: String,
        node_type: String,
        reason: String,
    },

    #[error("node id {0:?} is used by more than one node")]
    DuplicateNode(String),

    #[error("the workflow has no start node; add a node with data.type \"start\"")]
    MissingStart,

    #[error("the workflow has {count} start nodes ({ids}); keep exactly one")]
    MultipleStarts { count: usize, ids: String },

    #[error("edge {edge:?} points {direction} node {node:?}, which does not exist")]
    DanglingEdge {
        edge: String,
        direction: &'static str,
        node: String,
    },

    #[error(
        "edge {edge:?} connects {from:?} and {to:?}, which are not in the same graph (iteration body vs. outer graph)"
    )]
    CrossScopeEdge { edge: String, from: String, to: String },

    #[error("the graph has a cycle through {0}; workflows must be acyclic (use an iteration node to repeat steps)")]
    Cycle(String),

    #[error("node {node:?} references {reference}, but no node {target:?} exists")]
    UnknownReference {
        node: String,
        reference: String,
        target: String,
    },

    #[error("iteration {iteration:?}: {reason}")]
    InvalidIteration { iteration: String, reason: String },
}

/// Why a DSL document could not be imported as a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DslError {
    #[error("the DSL is neither valid JSON nor valid YAML: {0}")]
    Syntax(String),

    #[error("the DSL has no workflow graph: expected `workflow.graph.nodes` and `workflow.graph.edges`")]
    MissingGraph,

    #[error("app.mode is {0:?}; only `workflow` apps can be imported (chatflows and chat apps need LLM nodes)")]
    UnsupportedMode(String),

    #[error("the DSL is malformed: {0}")]
    Malformed(String),

    /// Every problem found, so a user can fix them all at once.
    #[error("the workflow is invalid:\n{}", list(.0))]
    Invalid(Vec<DslProblem>),
}

impl DslError {
    /// The individual problems (empty for syntax-level errors).
    pub fn problems(&self) -> &[DslProblem] {
        match self {
            Self::Invalid(p) => p,
            _ => &[],
        }
    }
}

fn list(problems: &[DslProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why a node failed while running.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NodeError {
    #[error("{0}")]
    Input(String),

    #[error("template error: {0}")]
    Template(String),

    #[error("tool error: {0}")]
    Tool(String),

    #[error("HTTP request failed: {0}")]
    Http(String),

    #[error("{0}")]
    Code(#[from] crate::sandbox::SandboxError),

    #[error("{0}")]
    Output(String),

    #[error("iteration item {index} failed at node {node_id:?}: {error}")]
    Iteration {
        index: usize,
        node_id: String,
        error: Box<NodeError>,
    },

    #[error("{0}")]
    Config(String),
}

/// Why a run failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RunError {
    #[error("node {node_id:?} failed: {error}")]
    Node { node_id: String, error: NodeError },

    #[error(
        "workflow call depth {depth} exceeds the limit of {max} (WORKFLOW_CALL_MAX_DEPTH); a workflow tool probably calls itself"
    )]
    DepthExceeded { depth: u32, max: u32 },

    #[error(
        "the workflow run timed out after {seconds} s (raise EngineConfig::run_timeout / WORKFLOW_MAX_EXECUTION_TIME)"
    )]
    Timeout { seconds: u64 },

    #[error("the workflow run was cancelled")]
    Cancelled,

    #[error("invalid inputs: {0}")]
    Inputs(String),

    #[error("internal error: {0}")]
    Internal(String),
}

impl RunError {
    /// The node that failed, if the failure belongs to one node.
    pub fn node_id(&self) -> Option<&str> {
        match self {
            Self::Node { node_id, .. } => Some(node_id),
            _ => None,
        }
    }
}
