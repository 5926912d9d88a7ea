//! The engine: runs a [`Workflow`] over a variable pool, concurrently where the graph allows, streaming
//! [`RunEvent`]s.
//!
//! # Scheduling and joins
//!
//! Every edge is *unknown* until its source finishes, then *taken* or *skipped*: an if-else takes only the
//! edges whose `sourceHandle` is the selected case id (or `false`), every other node takes all its edges. A node
//! is ready when each of its incoming edges is known: it runs if at least one was taken and is skipped (with
//! all its outgoing edges) if every one was skipped. This is the edge-state rule of Dify's 1.x graph engine.
//! Consequences: a join after an if-else runs once, after the branch that ran; a join after parallel branches
//! waits for all of them, so it sees every branch's outputs. Ready nodes run concurrently (one
//! `FuturesUnordered` per graph scope), so independent branches overlap; the first failure stops the run and
//! drops (cancels) the nodes still running.
//!
//! # Limits
//!
//! [`EngineConfig::run_timeout`] bounds a run, [`RunContext::cancel`] cancels it, and
//! [`EngineConfig::max_depth`] bounds nesting of workflows calling workflow tools: a run whose
//! [`RunContext::call_depth`] exceeds it fails before any node runs.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use toolplane_net::SafeClient;

use crate::dsl::{IterationData, Workflow};
use crate::error::{NodeError, RunError};
use crate::graph::Scope;
use crate::invoker::ToolInvoker;
use crate::nodes::{self, Job, PrepareContext};
use crate::pool::VariablePool;
use crate::sandbox::{Sandbox, SandboxConfig};

/// Environment variable with the call-depth limit.
pub const ENV_MAX_DEPTH: &str = "WORKFLOW_CALL_MAX_DEPTH";
/// Environment variable with the run timeout in seconds.
pub const ENV_MAX_EXECUTION_TIME: &str = "WORKFLOW_MAX_EXECUTION_TIME";

/// Engine limits.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Longest a run may take (`WORKFLOW_MAX_EXECUTION_TIME`, default 1200 s).
    pub run_timeout: Duration,
    /// Deepest nesting of workflow tools (`WORKFLOW_CALL_MAX_DEPTH`, default 5).
    pub max_depth: u32,
    /// minijinja fuel per template render (bounds loops in templates).
    pub template_fuel: u64,
    /// Longest template output in characters (Dify's `TEMPLATE_TRANSFORM_MAX_LENGTH`, 400 000).
    pub template_max_length: usize,
    /// Most items one iteration may process.
    pub max_iteration_items: usize,
    /// Parallelism of a parallel iteration when the DSL gives none.
    pub default_iteration_parallelism: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            run_timeout: Duration::from_secs(1200),
            max_depth: 5,
            template_fuel: 500_000,
            template_max_length: 400_000,
            max_iteration_items: 1000,
            default_iteration_parallelism: 10,
        }
    }
}

impl EngineConfig {
    /// Defaults overridden by `WORKFLOW_CALL_MAX_DEPTH` and `WORKFLOW_MAX_EXECUTION_TIME`; unparsable values keep
    /// the default and log a warning.
    pub fn from_env() -> Self {
        let mut config = Self::default();
        if let Ok(v) = std::env::var(ENV_MAX_DEPTH) {
            match v.trim().parse() {
                Ok(depth) => config.max_depth = depth,
                Err(_) => tracing::warn!(value = %v, "{ENV_MAX_DEPTH} is not a number; using 5"),
            }
        }
        if let Ok(v) = std::env::var(ENV_MAX_EXECUTION_TIME) {
            match v.trim().parse::<u64>() {
                Ok(s) if s > 0 => config.run_timeout = Duration::from_secs(s),
                _ => tracing::warn!(value = %v, "{ENV_MAX_EXECUTION_TIME} is not a positive number; using 1200"),
            }
        }
        config
    }
}

/// Who runs the workflow and how.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    pub tenant_id: String,
    pub user_id: Option<String>,
    /// `sys.app_id`.
    pub app_id: Option<String>,
    /// `sys.workflow_id`.
    pub workflow_id: Option<String>,
    /// `sys.workflow_run_id`.
    pub run_id: Option<String>,
    /// `sys.files`.
    pub files: Vec<Value>,
    /// 0 for a run started by a user; a workflow tool's run is one deeper than its caller.
    pub call_depth: u32,
    /// Fires to stop the run.
    pub cancel: CancellationToken,
}

/// Where a node ran inside an iteration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IterationPosition {
    pub iteration_id: String,
    pub index: usize,
}

/// What happens during a run, in order per node. Serialises with an `event` tag (`node_started`, …) for SSE.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    WorkflowStarted {
        inputs: Map<String, Value>,
        call_depth: u32,
    },
    NodeStarted {
        node_id: String,
        node_type: &'static str,
        title: String,
        iteration: Option<IterationPosition>,
        inputs: Map<String, Value>,
    },
    NodeSucceeded {
        node_id: String,
        node_type: &'static str,
        title: String,
        iteration: Option<IterationPosition>,
        inputs: Map<String, Value>,
        outputs: Map<String, Value>,
        elapsed_ms: f64,
    },
    NodeFailed {
        node_id: String,
        node_type: &'static str,
        title: String,
        iteration: Option<IterationPosition>,
        inputs: Map<String, Value>,
        error: String,
        elapsed_ms: f64,
    },
    /// The node is on a branch that was not taken.
    NodeSkipped {
        node_id: String,
        node_type: &'static str,
        iteration: Option<IterationPosition>,
    },
    WorkflowSucceeded {
        outputs: Map<String, Value>,
        elapsed_ms: f64,
    },
    WorkflowFailed {
        error: String,
        node_id: Option<String>,
        elapsed_ms: f64,
    },
}

/// Runs workflows. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    tools: Option<Arc<dyn ToolInvoker>>,
    http: Option<SafeClient>,
    sandbox: Sandbox,
    templates: minijinja::Environment<'static>,
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    config: EngineConfig,
    tools: Option<Arc<dyn ToolInvoker>>,
    http: Option<SafeClient>,
    sandbox: SandboxConfig,
}

impl EngineBuilder {
    /// The invoker tool nodes call (without one, tool nodes fail with a clear error).
    pub fn tools(mut self, invoker: Arc<dyn ToolInvoker>) -> Self {
        self.tools = Some(invoker);
        self
    }

    /// The HTTP client of http-request nodes (without one, they fail with a clear error).
    pub fn http(mut self, client: SafeClient) -> Self {
        self.http = Some(client);
        self
    }

    /// Code sandbox limits.
    pub fn sandbox(mut self, config: SandboxConfig) -> Self {
        self.sandbox = config;
        self
    }

    /// The engine.
    pub fn build(self) -> Engine {
        let mut templates = minijinja::Environment::new();
        templates.set_fuel(Some(self.config.template_fuel));
        templates.set_recursion_limit(100);
        templates.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        Engine {
            inner: Arc::new(Inner {
                config: self.config,
                tools: self.tools,
                http: self.http,
                sandbox: Sandbox::new(self.sandbox),
                templates,
            }),
        }
    }
}

/// The event stream of one run. Dropping it cancels the run.
pub struct RunStream {
    events: mpsc::UnboundedReceiver<RunEvent>,
    _cancel_on_drop: DropGuard,
}

impl Stream for RunStream {
    type Item = RunEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RunEvent>> {
        self.events.poll_recv(cx)
    }
}

type Sink = Option<mpsc::UnboundedSender<RunEvent>>;

impl Engine {
    /// Starts building an engine with `config`.
    pub fn builder(config: EngineConfig) -> EngineBuilder {
        EngineBuilder {
            config,
            tools: None,
            http: None,
            sandbox: SandboxConfig::default(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Starts a run on the current tokio runtime and streams its events; the last event is
    /// `WorkflowSucceeded` or `WorkflowFailed`. Dropping the stream cancels the run.
    pub fn run(&self, workflow: Arc<Workflow>, inputs: Map<String, Value>, ctx: RunContext) -> RunStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = ctx.cancel.child_token();
        let guard = cancel.clone().drop_guard();
        let engine = self.clone();
        let ctx = RunContext { cancel, ..ctx };
        tokio::spawn(async move {
            let _ = engine.execute(&workflow, inputs, ctx, Some(tx)).await;
        });
        RunStream {
            events: rx,
            _cancel_on_drop: guard,
        }
    }

    /// Runs to the end without events and returns the workflow's outputs.
    pub async fn invoke(
        &self,
        workflow: &Workflow,
        inputs: Map<String, Value>,
        ctx: RunContext,
    ) -> Result<Map<String, Value>, RunError> {
        self.execute(workflow, inputs, ctx, None).await
    }

    async fn execute(
        &self,
        workflow: &Workflow,
        inputs: Map<String, Value>,
        ctx: RunContext,
        sink: Sink,
    ) -> Result<Map<String, Value>, RunError> {
        let started = Instant::now();
        emit(
            &sink,
            RunEvent::WorkflowStarted {
                inputs: inputs.clone(),
                call_depth: ctx.call_depth,
            },
        );
        let result = if ctx.call_depth > self.inner.config.max_depth {
            Err(RunError::DepthExceeded {
                depth: ctx.call_depth,
                max: self.inner.config.max_depth,
            })
        } else {
            let run = Run {
                inner: &self.inner,
                workflow,
                ctx: &ctx,
                inputs: &inputs,
                sink: &sink,
            };
            let timeout = self.inner.config.run_timeout;
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => Err(RunError::Cancelled),
                result = tokio::time::timeout(timeout, run.top_level()) => match result {
                    Ok(result) => result,
                    Err(_) => Err(RunError::Timeout { seconds: timeout.as_secs() }),
                },
            }
        };
        let elapsed_ms = ms(started);
        match &result {
            Ok(outputs) => emit(
                &sink,
                RunEvent::WorkflowSucceeded {
                    outputs: outputs.clone(),
                    elapsed_ms,
                },
            ),
            Err(error) => emit(
                &sink,
                RunEvent::WorkflowFailed {
                    error: error.to_string(),
                    node_id: error.node_id().map(str::to_owned),
                    elapsed_ms,
                },
            ),
        }
        result
    }
}

fn emit(sink: &Sink, event: RunEvent) {
    if let Some(tx) = sink {
        // A receiver that went away has cancelled the run; nothing to report to.
        let _ = tx.send(event);
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EdgeState {
    Taken,
    Skipped,
}

/// One run's shared, read-only state.
struct Run<'a> {
    inner: &'a Inner,
    workflow: &'a Workflow,
    ctx: &'a RunContext,
    inputs: &'a Map<String, Value>,
    sink: &'a Sink,
}

type NodeResult = (
    usize,
    Instant,
    Map<String, Value>,
    Result<(Map<String, Value>, Option<String>), NodeError>,
);

impl<'a> Run<'a> {
    async fn top_level(&self) -> Result<Map<String, Value>, RunError> {
        let mut pool = VariablePool::new();
        pool.set_outputs("sys", self.sys_variables());
        pool.set_outputs("env", self.workflow.environment.clone());
        let pool = self
            .run_scope(None, pool, None)
            .await
            .map_err(|(node_id, error)| RunError::Node { node_id, error })?;
        let mut outputs = Map::new();
        for (node, _) in self.workflow.end_nodes() {
            if let Some(values) = pool.outputs(&node.id) {
                outputs.extend(values.clone());
            }
        }
        Ok(outputs)
    }

    fn sys_variables(&self) -> Map<String, Value> {
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let mut sys = Map::new();
        sys.insert("user_id".into(), text(&self.ctx.user_id));
        sys.insert("app_id".into(), text(&self.ctx.app_id));
        sys.insert("workflow_id".into(), text(&self.ctx.workflow_id));
        sys.insert("workflow_run_id".into(), text(&self.ctx.run_id));
        sys.insert("files".into(), Value::Array(self.ctx.files.clone()));
        sys.insert("tenant_id".into(), Value::String(self.ctx.tenant_id.clone()));
        sys
    }

    /// Runs one scope (the top level or one iteration item) to completion and returns the pool it produced.
    fn run_scope(
        &'a self,
        scope_id: Option<&'a str>,
        mut pool: VariablePool,
        position: Option<IterationPosition>,
    ) -> BoxFuture<'a, Result<VariablePool, (String, NodeError)>> {
        Box::pin(async move {
            let graph = &self.workflow.graph;
            let Some(scope) = graph.scopes.get(&scope_id.map(str::to_owned)) else {
                return Err((
                    scope_id.unwrap_or("start").to_owned(),
                    NodeError::Config("no such graph scope".into()),
                ));
            };
            let mut edges: HashMap<usize, EdgeState> = HashMap::new();
            let mut running = FuturesUnordered::new();
            let mut ready = vec![scope.root];
            loop {
                for index in ready.drain(..) {
                    running.push(self.launch(index, &pool, position.clone()));
                }
                let Some((index, started, inputs, result)) = running.next().await else {
                    break;
                };
                let node = &self.workflow.nodes[index];
                match result {
                    Ok((outputs, branch)) => {
                        emit(
                            self.sink,
                            RunEvent::NodeSucceeded {
                                node_id: node.id.clone(),
                                node_type: node.type_name(),
                                title: node.title.clone(),
                                iteration: position.clone(),
                                inputs,
                                outputs: outputs.clone(),
                                elapsed_ms: ms(started),
                            },
                        );
                        pool.set_outputs(node.id.clone(), outputs);
                        self.resolve_edges(scope, index, branch.as_deref(), &mut edges, &mut ready, &position);
                    }
                    Err(error) => {
                        emit(
                            self.sink,
                            RunEvent::NodeFailed {
                                node_id: node.id.clone(),
                                node_type: node.type_name(),
                                title: node.title.clone(),
                                iteration: position.clone(),
                                inputs,
                                error: error.to_string(),
                                elapsed_ms: ms(started),
                            },
                        );
                        return Err((node.id.clone(), error));
                    }
                }
            }
            Ok(pool)
        })
    }

    /// Marks the edges leaving a finished node and collects the targets that became ready; targets whose
    /// every incoming edge was skipped are skipped in turn.
    fn resolve_edges(
        &self,
        scope: &Scope,
        finished: usize,
        branch: Option<&str>,
        edges: &mut HashMap<usize, EdgeState>,
        ready: &mut Vec<usize>,
        position: &Option<IterationPosition>,
    ) {
        let graph = &self.workflow.graph;
        let mut work = vec![(finished, branch.map(str::to_owned), false)];
        while let Some((node, branch, skipped)) = work.pop() {
            for &edge in scope.outgoing.get(&node).map(Vec::as_slice).unwrap_or_default() {
                let taken = !skipped
                    && branch
                        .as_deref()
                        .is_none_or(|b| self.workflow.edges[edge].source_handle == b);
                edges.insert(edge, if taken { EdgeState::Taken } else { EdgeState::Skipped });
                let target = graph.endpoints[edge].1;
                let incoming = scope.incoming.get(&target).map(Vec::as_slice).unwrap_or_default();
                let states: Vec<Option<EdgeState>> = incoming.iter().map(|e| edges.get(e).copied()).collect();
                if states.iter().any(Option::is_none) {
                    continue;
                }
                if states.contains(&Some(EdgeState::Taken)) {
                    if !ready.contains(&target) {
                        ready.push(target);
                    }
                } else {
                    let target_node = &self.workflow.nodes[target];
                    emit(
                        self.sink,
                        RunEvent::NodeSkipped {
                            node_id: target_node.id.clone(),
                            node_type: target_node.type_name(),
                            iteration: position.clone(),
                        },
                    );
                    work.push((target, None, true));
                }
            }
        }
    }

    /// Prepares a node against the pool (synchronously) and returns the future that runs it.
    fn launch(
        &'a self,
        index: usize,
        pool: &VariablePool,
        position: Option<IterationPosition>,
    ) -> BoxFuture<'a, NodeResult> {
        let node = &self.workflow.nodes[index];
        let started = Instant::now();
        let cx = PrepareContext {
            pool,
            inputs: self.inputs,
            tenant_id: &self.ctx.tenant_id,
            user_id: self.ctx.user_id.as_deref(),
            call_depth: self.ctx.call_depth,
        };
        let prepared = nodes::prepare(node, &cx);
        let inputs = prepared.as_ref().map(|p| p.inputs.clone()).unwrap_or_default();
        emit(
            self.sink,
            RunEvent::NodeStarted {
                node_id: node.id.clone(),
                node_type: node.type_name(),
                title: node.title.clone(),
                iteration: position,
                inputs: inputs.clone(),
            },
        );
        Box::pin(async move {
            let result = match prepared {
                Ok(prepared) => self.execute_job(&node.id, prepared.job).await,
                Err(e) => Err(e),
            };
            (index, started, inputs, result)
        })
    }

    async fn execute_job(
        &'a self,
        node_id: &'a str,
        job: Job,
    ) -> Result<(Map<String, Value>, Option<String>), NodeError> {
        let outputs = match job {
            Job::Done(outputs) => outputs,
            Job::Branch(outputs, handle) => return Ok((outputs, Some(handle))),
            Job::Template { template, variables } => self.render_template(&template, variables)?,
            Job::Code {
                language,
                code,
                variables,
                outputs,
            } => {
                let result = self.inner.sandbox.run(language, &code, &variables).await?;
                nodes::check_code_outputs(result, &outputs)?
            }
            Job::Tool(job) => {
                let invoker = self.inner.tools.as_ref().ok_or_else(|| {
                    NodeError::Config(
                        "tool nodes need a tool invoker: build the engine with EngineBuilder::tools".into(),
                    )
                })?;
                let messages = invoker
                    .invoke(job.call, self.ctx.cancel.child_token())
                    .await
                    .map_err(|e| NodeError::Tool(e.to_string()))?;
                nodes::messages_to_outputs(messages)
            }
            Job::Http(job) => {
                let client = self.inner.http.as_ref().ok_or_else(|| {
                    NodeError::Config(
                        "http-request nodes need an HTTP client: build the engine with EngineBuilder::http".into(),
                    )
                })?;
                job.run(client).await?
            }
            Job::Iteration { data, items, pool } => self.iterate(node_id, &data, items, pool).await?,
        };
        Ok((outputs, None))
    }

    fn render_template(&self, template: &str, variables: Map<String, Value>) -> Result<Map<String, Value>, NodeError> {
        let ctx = minijinja::Value::from(minijinja::value::Serde(&variables));
        let output = self
            .inner
            .templates
            .render_str(template, ctx)
            .map_err(|e| NodeError::Template(describe_template_error(&e)))?;
        let max = self.inner.config.template_max_length;
        if output.chars().count() > max {
            return Err(NodeError::Output(format!(
                "the template output is longer than {max} characters"
            )));
        }
        let mut outputs = Map::new();
        outputs.insert("output".into(), Value::String(output));
        Ok(outputs)
    }

    async fn iterate(
        &'a self,
        node_id: &'a str,
        data: &'a IterationData,
        items: Vec<Value>,
        pool: VariablePool,
    ) -> Result<Map<String, Value>, NodeError> {
        let max = self.inner.config.max_iteration_items;
        if items.len() > max {
            return Err(NodeError::Input(format!(
                "the iterator has {} items; at most {max} are allowed",
                items.len()
            )));
        }
        let parallelism = if data.is_parallel {
            data.parallel_nums
                .filter(|n| *n > 0)
                .unwrap_or(self.inner.config.default_iteration_parallelism)
        } else {
            1
        };
        let mode = data.error_handle_mode.as_deref().unwrap_or("terminated");
        let results: Vec<Result<Value, NodeError>> = futures::stream::iter(items.into_iter().enumerate())
            .map(|(index, item)| {
                let mut item_pool = pool.clone();
                let mut vars = Map::new();
                vars.insert("item".into(), item);
                vars.insert("index".into(), Value::from(index));
                item_pool.set_outputs(node_id.to_owned(), vars);
                let position = IterationPosition {
                    iteration_id: node_id.to_owned(),
                    index,
                };
                async move {
                    self.run_scope(Some(node_id), item_pool, Some(position))
                        .await
                        .map(|p| p.get(&data.output_selector).cloned().unwrap_or(Value::Null))
                        .map_err(|(failed, error)| NodeError::Iteration {
                            index,
                            node_id: failed,
                            error: Box::new(error),
                        })
                }
            })
            .buffered(parallelism)
            .collect()
            .await;
        let mut output = Vec::with_capacity(results.len());
        for result in results {
            match (result, mode) {
                (Ok(value), _) => output.push(value),
                (Err(_), "continue-on-error") => output.push(Value::Null),
                (Err(_), "remove-abnormal-output") => {}
                (Err(e), _) => return Err(e),
            }
        }
        if data.flatten_output && !output.is_empty() && output.iter().all(Value::is_array) {
            output = output
                .into_iter()
                .flat_map(|v| match v {
                    Value::Array(items) => items,
                    other => vec![other],
                })
                .collect();
        }
        let mut outputs = Map::new();
        outputs.insert("output".into(), Value::Array(output));
        Ok(outputs)
    }
}

fn describe_template_error(error: &minijinja::Error) -> String {
    if error.kind() == minijinja::ErrorKind::OutOfFuel {
        return "the template ran out of fuel (it does too much work; simplify loops)".into();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}
