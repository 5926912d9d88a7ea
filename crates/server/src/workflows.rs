//! Workflows: toolplane's own workflows (Dify workflow DSL imported, published as versions, run with per-node
//! records) and workflows published as tools (Dify's `WorkflowToolManageService` and
//! `WorkflowToolProviderController`), plus the catalog source that turns `tool_workflow_providers` rows into
//! invocable providers.
//!
//! A workflow is stored as the DSL text it was imported from; it is validated on import (unsupported nodes,
//! missing start, dangling edges, cycles, unknown references are all reported at once) and parsed again when it
//! runs. Publishing snapshots the DSL as version `"1"`, `"2"`, …; a workflow tool pins the version that was the
//! latest when the tool was created or last updated, and reports `synced: false` once a newer one is published.
//!
//! The engine's tool nodes call tools through the same [`Catalog`](toolplane_core::Catalog) as the invoke route
//! ([`CatalogInvoker::late`], set by [`AppState::from_parts`](crate::AppState::from_parts) once the catalog
//! exists), so a workflow can call builtin, API, plugin and other workflow tools; the call depth travels with the
//! call and the engine stops runaway recursion at `WORKFLOW_CALL_MAX_DEPTH` (default 5).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use toolplane_core::{ProviderSource, ToolError, ToolLabelEnum, ToolProvider, ToolProviderType};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_store::{
    NewNodeRun, RunOutcome, Store, WorkflowNodeRunRecord, WorkflowProviderFields, WorkflowProviderRecord,
    WorkflowRecord, WorkflowRunRecord, WorkflowVersionRecord,
};
use toolplane_workflow::sandbox::SandboxConfig;
use toolplane_workflow::{
    CatalogInvoker, Engine, EngineConfig, RunContext, RunEvent, Workflow, WorkflowTool, WorkflowToolConfig,
    WorkflowToolParameterConfiguration, output_schema,
};

use crate::error::ApiError;

/// `tool_type` of workflow tools in `tool_label_bindings`.
pub const LABEL_TOOL_TYPE: &str = "workflow";
/// How many runs `GET …/workflows/{id}/runs` returns at most by default.
pub const DEFAULT_RUN_LIMIT: i64 = 20;
/// Run status while the engine works.
pub const STATUS_RUNNING: &str = "running";
/// Run or node status on success.
pub const STATUS_SUCCEEDED: &str = "succeeded";
/// Run or node status on failure.
pub const STATUS_FAILED: &str = "failed";

/// The payload of `tool-provider/workflow/create` and `…/update` (Dify's field names).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WorkflowToolInput {
    /// The workflow to publish (create only).
    #[serde(default)]
    pub workflow_app_id: Option<String>,
    /// The tool to change (update only).
    #[serde(default)]
    pub workflow_tool_id: Option<String>,
    /// Tool name, `^[a-zA-Z0-9_]+$`.
    pub name: String,
    pub label: String,
    #[serde(default)]
    pub description: String,
    /// Emoji icon `{content, background}` (any JSON), stored as JSON text.
    #[serde(default)]
    pub icon: Value,
    #[serde(default)]
    pub parameters: Vec<WorkflowToolParameterConfiguration>,
    #[serde(default)]
    pub privacy_policy: Option<String>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
}

/// What to run: the draft (no version) or a published version.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunRequest {
    #[serde(default)]
    pub inputs: Map<String, Value>,
    /// A published version; empty runs the current draft.
    #[serde(default)]
    pub version: Option<String>,
    /// Stream node events as server-sent events (also chosen by `Accept: text/event-stream`).
    #[serde(default)]
    pub stream: bool,
}

/// A started run: its record and its events (the recorder has written each node's record before forwarding it).
pub struct StartedRun {
    pub run: WorkflowRunRecord,
    pub events: mpsc::UnboundedReceiver<RunEvent>,
}

struct Cached {
    fingerprint: u64,
    provider: Arc<dyn ToolProvider>,
}

/// The workflow service: import, publish and run workflows; manage workflow tools; build their providers.
pub struct Workflows {
    store: Store,
    engine: Engine,
    cache: RwLock<HashMap<String, Cached>>,
}

/// Builds the engine (tool nodes through a late-bound [`CatalogInvoker`], http-request nodes through a
/// [`SafeClient`] from `net`, code nodes in the sandbox configured by `CODE_*` variables) and the service. Call
/// [`CatalogInvoker::set_catalog`] on the returned invoker once the catalog exists.
pub fn build(store: Store, net: &NetConfig) -> (Arc<Workflows>, Arc<CatalogInvoker>) {
    let invoker = Arc::new(CatalogInvoker::late());
    let mut builder = Engine::builder(EngineConfig::from_env())
        .tools(invoker.clone())
        .sandbox(SandboxConfig::from_env());
    match SafeClient::new(net.clone()) {
        Ok(client) => builder = builder.http(client),
        Err(e) => tracing::warn!(error = %e, "workflow http-request nodes are disabled: cannot build the HTTP client"),
    }
    (Arc::new(Workflows::new(store, builder.build())), invoker)
}

impl Workflows {
    /// A service over the store running workflows on `engine`.
    pub fn new(store: Store, engine: Engine) -> Self {
        Self {
            store,
            engine,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The engine workflows run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Imports a DSL document (YAML or JSON). Every problem is reported at once; an unsupported node is listed
    /// with its id and type.
    pub async fn import(&self, tenant_id: &str, user_id: &str, dsl: &str) -> Result<WorkflowRecord, ApiError> {
        let workflow = parse(dsl)?;
        let (name, description) = names(&workflow);
        Ok(self
            .store
            .workflows()
            .insert(tenant_id, user_id, &name, &description, dsl)
            .await?)
    }

    /// Replaces a workflow's draft DSL (validated like an import). Published versions stay as they were.
    pub async fn replace(&self, tenant_id: &str, id: &str, dsl: &str) -> Result<WorkflowRecord, ApiError> {
        self.workflow_row(tenant_id, id).await?;
        let workflow = parse(dsl)?;
        let (name, description) = names(&workflow);
        Ok(self
            .store
            .workflows()
            .update(tenant_id, id, &name, &description, dsl)
            .await?)
    }

    /// Every workflow of the tenant, summarised.
    pub async fn list(&self, tenant_id: &str) -> Result<Vec<Value>, ApiError> {
        let repo = self.store.workflows();
        let mut out = Vec::new();
        for row in repo.list(tenant_id).await? {
            let latest = repo.latest_version(tenant_id, &row.id).await?;
            out.push(summary(&row, latest.as_ref()));
        }
        Ok(out)
    }

    /// One workflow with its DSL, nodes, start variables, output schema and published versions.
    pub async fn detail(&self, tenant_id: &str, id: &str) -> Result<Value, ApiError> {
        let row = self.workflow_row(tenant_id, id).await?;
        let repo = self.store.workflows();
        let versions = repo.versions(tenant_id, id).await?;
        let mut out = summary(&row, versions.first());
        let workflow = parse(&row.dsl)?;
        let nodes: Vec<Value> = workflow
            .nodes
            .iter()
            .map(|n| json!({"id": n.id, "type": n.type_name(), "title": n.title, "parent": n.parent}))
            .collect();
        let variables: Vec<Value> = workflow
            .start_variables()
            .iter()
            .map(|v| json!({"variable": v.variable, "label": v.label, "required": v.required, "options": v.options}))
            .collect();
        if let Value::Object(map) = &mut out {
            map.insert("dsl".into(), json!(row.dsl));
            map.insert("nodes".into(), json!(nodes));
            map.insert("variables".into(), json!(variables));
            map.insert("output_schema".into(), Value::Object(output_schema(&workflow)));
            map.insert(
                "versions".into(),
                json!(
                    versions
                        .iter()
                        .map(|v| json!({"version": v.version, "created_at": v.created_at}))
                        .collect::<Vec<_>>()
                ),
            );
            let tool = self.store.workflow_providers().get_by_app(tenant_id, id).await?;
            map.insert("workflow_tool_id".into(), json!(tool.map(|t| t.id)));
        }
        Ok(out)
    }

    /// Deletes a workflow with its versions and runs. A workflow published as a tool cannot be deleted (Dify's
    /// rule); delete the tool first.
    pub async fn delete(&self, tenant_id: &str, id: &str) -> Result<(), ApiError> {
        self.workflow_row(tenant_id, id).await?;
        if self
            .store
            .workflow_providers()
            .get_by_app(tenant_id, id)
            .await?
            .is_some()
        {
            return Err(ApiError::invalid(
                "Cannot delete workflow that is published as a tool; delete the workflow tool first",
            ));
        }
        self.store.workflows().delete(tenant_id, id).await?;
        Ok(())
    }

    /// Publishes the current draft as the next version.
    pub async fn publish(&self, tenant_id: &str, id: &str) -> Result<WorkflowVersionRecord, ApiError> {
        let row = self.workflow_row(tenant_id, id).await?;
        parse(&row.dsl)?;
        Ok(self.store.workflows().publish(tenant_id, id, &row.dsl).await?)
    }

    /// The published versions, newest first.
    pub async fn versions(&self, tenant_id: &str, id: &str) -> Result<Vec<Value>, ApiError> {
        self.workflow_row(tenant_id, id).await?;
        let versions = self.store.workflows().versions(tenant_id, id).await?;
        Ok(versions
            .iter()
            .map(|v| json!({"version": v.version, "created_at": v.created_at}))
            .collect())
    }

    /// Starts a run and records it: the run row now, one node row per finished node, the outcome at the end.
    /// The run goes on (and is recorded) even if nobody reads the events; the engine's run timeout bounds it.
    pub async fn start_run(
        &self,
        tenant_id: &str,
        user_id: &str,
        id: &str,
        request: RunRequest,
    ) -> Result<StartedRun, ApiError> {
        let row = self.workflow_row(tenant_id, id).await?;
        let version = request.version.filter(|v| !v.is_empty());
        let dsl = match &version {
            None => row.dsl,
            Some(v) => {
                self.store
                    .workflows()
                    .version(tenant_id, id, v)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("workflow {id} has no published version {v:?}")))?
                    .dsl
            }
        };
        let workflow = Arc::new(parse(&dsl)?);
        let inputs_text = Value::Object(request.inputs.clone()).to_string();
        let run = self
            .store
            .workflows()
            .start_run(tenant_id, id, version.as_deref().unwrap_or(""), &inputs_text, user_id)
            .await?;
        let ctx = RunContext {
            tenant_id: tenant_id.to_owned(),
            user_id: Some(user_id.to_owned()),
            app_id: Some(id.to_owned()),
            workflow_id: version.clone(),
            run_id: Some(run.id.clone()),
            files: Vec::new(),
            call_depth: 0,
            cancel: CancellationToken::new(),
        };
        let stream = self.engine.run(workflow, request.inputs, ctx);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(record(
            self.store.clone(),
            tenant_id.to_owned(),
            run.id.clone(),
            stream,
            tx,
        ));
        Ok(StartedRun { run, events: rx })
    }

    /// A run with its node records, for responses.
    pub async fn run_detail(&self, tenant_id: &str, workflow_id: &str, run_id: &str) -> Result<Value, ApiError> {
        let repo = self.store.workflows();
        let run = repo
            .run(tenant_id, run_id)
            .await?
            .filter(|r| r.workflow_id == workflow_id)
            .ok_or_else(|| ApiError::not_found(format!("workflow run {run_id} not found")))?;
        let nodes = repo.node_runs(tenant_id, run_id).await?;
        Ok(run_json(&run, &nodes))
    }

    /// The latest runs of a workflow, each with its node records.
    pub async fn runs(&self, tenant_id: &str, workflow_id: &str, limit: Option<i64>) -> Result<Vec<Value>, ApiError> {
        self.workflow_row(tenant_id, workflow_id).await?;
        let limit = limit.unwrap_or(DEFAULT_RUN_LIMIT).clamp(1, 200);
        let repo = self.store.workflows();
        let mut out = Vec::new();
        for run in repo.runs(tenant_id, workflow_id, limit).await? {
            let nodes = repo.node_runs(tenant_id, &run.id).await?;
            out.push(run_json(&run, &nodes));
        }
        Ok(out)
    }

    // ---- workflow as tool -------------------------------------------------------------------------------------

    /// `tool-provider/workflow/create`: publishes a workflow's latest version as a tool.
    pub async fn create_tool(
        &self,
        tenant_id: &str,
        user_id: &str,
        input: WorkflowToolInput,
    ) -> Result<WorkflowProviderRecord, ApiError> {
        let app_id = input
            .workflow_app_id
            .clone()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::invalid("workflow_app_id is required"))?;
        check_name(&input.name)?;
        let repo = self.store.workflow_providers();
        if repo.get_by_name(tenant_id, &input.name).await?.is_some()
            || repo.get_by_app(tenant_id, &app_id).await?.is_some()
        {
            return Err(ApiError::invalid(format!(
                "Tool with name {} or app_id {app_id} already exists",
                input.name
            )));
        }
        let version = self.published(tenant_id, &app_id).await?;
        let fields = fields(&input, &version.version)?;
        self.validate(&app_id, &version, &fields)?;
        let row = repo.insert(tenant_id, user_id, &app_id, &fields).await?;
        self.store
            .labels()
            .replace(&row.id, LABEL_TOOL_TYPE, &known_labels(input.labels.as_deref()))
            .await?;
        Ok(row)
    }

    /// `tool-provider/workflow/update`: changes a tool and re-pins it to its workflow's latest version.
    pub async fn update_tool(
        &self,
        tenant_id: &str,
        input: WorkflowToolInput,
    ) -> Result<WorkflowProviderRecord, ApiError> {
        let id = input
            .workflow_tool_id
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ApiError::invalid("workflow_tool_id is required"))?;
        check_name(&input.name)?;
        let repo = self.store.workflow_providers();
        let row = self.tool_row(tenant_id, &id).await?;
        if let Some(other) = repo.get_by_name(tenant_id, &input.name).await?
            && other.id != row.id
        {
            return Err(ApiError::invalid(format!(
                "Tool with name {} already exists",
                input.name
            )));
        }
        let version = self.published(tenant_id, &row.app_id).await?;
        let fields = fields(&input, &version.version)?;
        self.validate(&row.app_id, &version, &fields)?;
        let updated = repo.update(tenant_id, &row.id, &fields).await?;
        self.store
            .labels()
            .replace(&row.id, LABEL_TOOL_TYPE, &known_labels(input.labels.as_deref()))
            .await?;
        self.forget(&row.id);
        Ok(updated)
    }

    /// `tool-provider/workflow/delete`.
    pub async fn delete_tool(&self, tenant_id: &str, id: &str) -> Result<(), ApiError> {
        let row = self.tool_row(tenant_id, id).await?;
        self.store.workflow_providers().delete(tenant_id, &row.id).await?;
        self.store.labels().delete_for_tool(&row.id, LABEL_TOOL_TYPE).await?;
        self.forget(&row.id);
        Ok(())
    }

    /// `tool-provider/workflow/get` by tool id or workflow id: `{name, label, workflow_tool_id,
    /// workflow_app_id, icon, description, parameters, output_schema, tool, synced, privacy_policy}`.
    pub async fn tool_detail(
        &self,
        tenant_id: &str,
        tool_id: Option<&str>,
        app_id: Option<&str>,
    ) -> Result<Value, ApiError> {
        let repo = self.store.workflow_providers();
        let row = match (tool_id.filter(|s| !s.is_empty()), app_id.filter(|s| !s.is_empty())) {
            (Some(id), _) => repo.get(tenant_id, id).await?,
            (None, Some(app)) => repo.get_by_app(tenant_id, app).await?,
            (None, None) => {
                return Err(ApiError::invalid(
                    "either workflow_tool_id or workflow_app_id must be provided",
                ));
            }
        }
        .ok_or_else(|| ApiError::invalid("Tool not found"))?;
        let provider = self.provider(&row).await?;
        let tools = self.tool_entities(&row, provider.as_ref()).await?;
        let latest = self.store.workflows().latest_version(tenant_id, &row.app_id).await?;
        let parameters: Value = serde_json::from_str(&row.parameter_configuration).unwrap_or_else(|_| json!([]));
        let tool = tools.into_iter().next().unwrap_or(Value::Null);
        Ok(json!({
            "name": row.name,
            "label": row.label,
            "workflow_tool_id": row.id,
            "workflow_app_id": row.app_id,
            "icon": icon(&row.icon),
            "description": row.description,
            "parameters": parameters,
            "output_schema": tool.get("output_schema").cloned().unwrap_or(Value::Null),
            "tool": tool,
            "synced": latest.is_some_and(|v| v.version == row.version),
            "privacy_policy": row.privacy_policy,
            "version": row.version,
        }))
    }

    /// `tool-provider/workflow/tools`: the tool as `[ToolApiEntity]`.
    pub async fn tools(&self, tenant_id: &str, id: &str) -> Result<Vec<Value>, ApiError> {
        let row = self.tool_row(tenant_id, id).await?;
        let provider = self.provider(&row).await?;
        self.tool_entities(&row, provider.as_ref()).await
    }

    /// `GET /workspaces/current/tools/workflow`: every workflow provider with its tool and `workflow_app_id`.
    pub async fn list_with_tools(&self, tenant_id: &str) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        for row in self.store.workflow_providers().list(tenant_id).await? {
            match self.provider(&row).await {
                Ok(provider) => {
                    let tools = self.tool_entities(&row, provider.as_ref()).await?;
                    let labels = self.labels(&row.id).await?;
                    let identity = &provider.entity().identity;
                    out.push(json!({
                        "id": row.id,
                        "author": identity.author,
                        "name": identity.name,
                        "plugin_id": Value::Null,
                        "plugin_unique_identifier": Value::Null,
                        "description": identity.description,
                        "icon": icon(&row.icon),
                        "icon_dark": Value::Null,
                        "label": identity.label,
                        "type": ToolProviderType::Workflow,
                        "team_credentials": {},
                        "is_team_authorization": true,
                        "allow_delete": true,
                        "tools": tools,
                        "labels": labels,
                        "workflow_app_id": row.app_id,
                    }));
                }
                Err(e) => {
                    tracing::warn!(provider = %row.id, error = %e, "skipping a workflow tool that cannot be built")
                }
            }
        }
        Ok(out)
    }

    /// Every workflow tool provider of the tenant, built; rows that cannot be built are skipped with a warning.
    pub async fn providers(&self, tenant_id: &str) -> Result<Vec<Arc<dyn ToolProvider>>, ApiError> {
        let mut out = Vec::new();
        for row in self.store.workflow_providers().list(tenant_id).await? {
            match self.provider(&row).await {
                Ok(provider) => out.push(provider),
                Err(e) => {
                    tracing::warn!(provider = %row.id, error = %e, "skipping a workflow tool that cannot be built")
                }
            }
        }
        Ok(out)
    }

    /// The tenant's workflow tool provider with this row id.
    pub async fn provider_by_id(&self, tenant_id: &str, id: &str) -> Result<Option<Arc<dyn ToolProvider>>, ApiError> {
        match self.store.workflow_providers().get(tenant_id, id).await? {
            Some(row) => Ok(Some(self.provider(&row).await?)),
            None => Ok(None),
        }
    }

    async fn tool_entities(
        &self,
        row: &WorkflowProviderRecord,
        provider: &dyn ToolProvider,
    ) -> Result<Vec<Value>, ApiError> {
        let labels = self.labels(&row.id).await?;
        let tools = provider.tools().await?;
        Ok(tools
            .iter()
            .map(|tool| crate::routes::console::tool_entity(tool.as_ref(), &labels))
            .collect())
    }

    async fn labels(&self, id: &str) -> Result<Vec<String>, ApiError> {
        Ok(self
            .store
            .labels()
            .list(&[id])
            .await?
            .into_iter()
            .map(|b| b.label_name)
            .collect())
    }

    async fn workflow_row(&self, tenant_id: &str, id: &str) -> Result<WorkflowRecord, ApiError> {
        self.store
            .workflows()
            .get(tenant_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("workflow {id} not found")))
    }

    async fn tool_row(&self, tenant_id: &str, id: &str) -> Result<WorkflowProviderRecord, ApiError> {
        self.store
            .workflow_providers()
            .get(tenant_id, id.trim())
            .await?
            .ok_or_else(|| ApiError::invalid(format!("workflow tool {id} not found")))
    }

    async fn published(&self, tenant_id: &str, app_id: &str) -> Result<WorkflowVersionRecord, ApiError> {
        self.workflow_row(tenant_id, app_id)
            .await
            .map_err(|_| ApiError::invalid(format!("App {app_id} not found")))?;
        self.store
            .workflows()
            .latest_version(tenant_id, app_id)
            .await?
            .ok_or_else(|| ApiError::invalid(format!("workflow {app_id} has no published version; publish it first")))
    }

    /// Builds the tool once to check the configuration (Dify's "validate by building the controller").
    fn validate(
        &self,
        app_id: &str,
        version: &WorkflowVersionRecord,
        fields: &WorkflowProviderFields,
    ) -> Result<(), ApiError> {
        let config = tool_config("validation", app_id, String::new(), fields)?;
        WorkflowTool::from_dsl(self.engine.clone(), &version.dsl, config)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok(())
    }

    async fn provider(&self, row: &WorkflowProviderRecord) -> Result<Arc<dyn ToolProvider>, ApiError> {
        let fingerprint = fingerprint(row);
        {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = cache.get(&row.id)
                && cached.fingerprint == fingerprint
            {
                return Ok(cached.provider.clone());
            }
        }
        let version = self
            .store
            .workflows()
            .version(&row.tenant_id, &row.app_id, &row.version)
            .await?
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "workflow not found: workflow tool {} pins version {:?} of workflow {}, which does not exist",
                    row.name, row.version, row.app_id
                ))
            })?;
        let author = self
            .store
            .accounts()
            .list(&row.tenant_id)
            .await?
            .into_iter()
            .find(|a| a.id == row.user_id)
            .map(|a| a.name)
            .unwrap_or_default();
        let fields = WorkflowProviderFields {
            name: row.name.clone(),
            label: row.label.clone(),
            icon: row.icon.clone(),
            version: row.version.clone(),
            description: row.description.clone(),
            parameter_configuration: row.parameter_configuration.clone(),
            privacy_policy: row.privacy_policy.clone(),
        };
        let config = tool_config(&row.id, &row.app_id, author, &fields)?;
        let tool = WorkflowTool::from_dsl(self.engine.clone(), &version.dsl, config)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let provider = tool.into_provider();
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.insert(
            row.id.clone(),
            Cached {
                fingerprint,
                provider: provider.clone(),
            },
        );
        Ok(provider)
    }

    fn forget(&self, id: &str) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.remove(id);
    }
}

/// Consumes a run's events: writes each finished node and the outcome, then forwards the event.
async fn record(
    store: Store,
    tenant_id: String,
    run_id: String,
    mut stream: toolplane_workflow::RunStream,
    tx: mpsc::UnboundedSender<RunEvent>,
) {
    let repo = store.workflows();
    let mut index = 0_i64;
    let mut finished = false;
    while let Some(event) = stream.next().await {
        let written = match &event {
            RunEvent::NodeSucceeded {
                node_id,
                node_type,
                title,
                inputs,
                outputs,
                elapsed_ms,
                ..
            } => {
                let node = NewNodeRun {
                    node_index: index,
                    node_id: node_id.clone(),
                    node_type: (*node_type).to_owned(),
                    title: title.clone(),
                    status: STATUS_SUCCEEDED.into(),
                    inputs: Value::Object(inputs.clone()).to_string(),
                    outputs: Some(Value::Object(outputs.clone()).to_string()),
                    error: None,
                    elapsed_ms: *elapsed_ms,
                };
                index += 1;
                repo.add_node_run(&tenant_id, &run_id, &node).await.map(|_| ())
            }
            RunEvent::NodeFailed {
                node_id,
                node_type,
                title,
                inputs,
                error,
                elapsed_ms,
                ..
            } => {
                let node = NewNodeRun {
                    node_index: index,
                    node_id: node_id.clone(),
                    node_type: (*node_type).to_owned(),
                    title: title.clone(),
                    status: STATUS_FAILED.into(),
                    inputs: Value::Object(inputs.clone()).to_string(),
                    outputs: None,
                    error: Some(error.clone()),
                    elapsed_ms: *elapsed_ms,
                };
                index += 1;
                repo.add_node_run(&tenant_id, &run_id, &node).await.map(|_| ())
            }
            RunEvent::WorkflowSucceeded { outputs, elapsed_ms } => {
                finished = true;
                let outcome = RunOutcome {
                    status: STATUS_SUCCEEDED.into(),
                    outputs: Some(Value::Object(outputs.clone()).to_string()),
                    error: None,
                    elapsed_ms: *elapsed_ms,
                };
                repo.finish_run(&tenant_id, &run_id, &outcome).await
            }
            RunEvent::WorkflowFailed { error, elapsed_ms, .. } => {
                finished = true;
                let outcome = RunOutcome {
                    status: STATUS_FAILED.into(),
                    outputs: None,
                    error: Some(error.clone()),
                    elapsed_ms: *elapsed_ms,
                };
                repo.finish_run(&tenant_id, &run_id, &outcome).await
            }
            _ => Ok(()),
        };
        if let Err(e) = written {
            tracing::warn!(run = %run_id, error = %e, "cannot record a workflow run event");
        }
        // Nobody listening (blocking caller gone, SSE client disconnected) is fine: the run is recorded anyway.
        let _ = tx.send(event);
    }
    if !finished {
        let outcome = RunOutcome {
            status: STATUS_FAILED.into(),
            outputs: None,
            error: Some("the workflow run ended without a result".into()),
            elapsed_ms: 0.0,
        };
        if let Err(e) = repo.finish_run(&tenant_id, &run_id, &outcome).await {
            tracing::warn!(run = %run_id, error = %e, "cannot record the end of a workflow run");
        }
    }
}

/// The catalog source of workflow tools: one provider per `tool_workflow_providers` row, addressed by row id,
/// running the pinned version.
pub struct WorkflowProviderSource {
    service: Arc<Workflows>,
}

impl WorkflowProviderSource {
    /// A source over the workflow service.
    pub fn new(service: Arc<Workflows>) -> Self {
        Self { service }
    }
}

#[async_trait]
impl ProviderSource for WorkflowProviderSource {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Workflow
    }

    async fn list(&self, tenant_id: &str) -> Result<Vec<Arc<dyn ToolProvider>>, ToolError> {
        self.service.providers(tenant_id).await.map_err(to_tool_error)
    }

    async fn get(&self, tenant_id: &str, provider_id: &str) -> Result<Option<Arc<dyn ToolProvider>>, ToolError> {
        self.service
            .provider_by_id(tenant_id, provider_id)
            .await
            .map_err(to_tool_error)
    }
}

fn to_tool_error(error: ApiError) -> ToolError {
    if error.status.is_client_error() {
        ToolError::Invoke(error.message)
    } else {
        ToolError::Internal(error.message)
    }
}

fn parse(dsl: &str) -> Result<Workflow, ApiError> {
    Workflow::from_dsl(dsl).map_err(|e| ApiError::invalid(e.to_string()))
}

fn names(workflow: &Workflow) -> (String, String) {
    let name = workflow
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "Untitled workflow".into());
    (name, workflow.description.clone().unwrap_or_default())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ApiError::invalid(format!(
            "{name:?} is not a valid name: use only letters, digits and underscores (^[a-zA-Z0-9_]+$)"
        )));
    }
    Ok(())
}

fn fields(input: &WorkflowToolInput, version: &str) -> Result<WorkflowProviderFields, ApiError> {
    if input.label.trim().is_empty() {
        return Err(ApiError::invalid("label is required"));
    }
    let icon = match &input.icon {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(WorkflowProviderFields {
        name: input.name.clone(),
        label: input.label.clone(),
        icon,
        version: version.to_owned(),
        description: input.description.clone(),
        parameter_configuration: serde_json::to_string(&input.parameters).map_err(ApiError::internal)?,
        privacy_policy: input.privacy_policy.clone().unwrap_or_default(),
    })
}

fn tool_config(
    provider_id: &str,
    app_id: &str,
    author: String,
    fields: &WorkflowProviderFields,
) -> Result<WorkflowToolConfig, ApiError> {
    let parameters: Vec<WorkflowToolParameterConfiguration> = serde_json::from_str(&fields.parameter_configuration)
        .map_err(|e| {
            ApiError::invalid(format!(
                "parameter_configuration is not a list of {{name, description, form}}: {e}"
            ))
        })?;
    Ok(WorkflowToolConfig {
        provider_id: provider_id.to_owned(),
        name: fields.name.clone(),
        label: fields.label.clone(),
        description: fields.description.clone(),
        icon: fields.icon.clone(),
        author,
        parameters,
        version: fields.version.clone(),
        app_id: Some(app_id.to_owned()),
    })
}

fn known_labels(labels: Option<&[String]>) -> Vec<String> {
    labels
        .unwrap_or_default()
        .iter()
        .filter(|l| ToolLabelEnum::ALL.iter().any(|k| k.as_str() == l.as_str()))
        .cloned()
        .collect()
}

fn icon(stored: &str) -> Value {
    serde_json::from_str(stored).unwrap_or_else(|_| Value::String(stored.to_owned()))
}

fn fingerprint(row: &WorkflowProviderRecord) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        row.updated_at,
        &row.version,
        &row.name,
        &row.label,
        &row.icon,
        &row.description,
        &row.parameter_configuration,
        &row.user_id,
    )
        .hash(&mut hasher);
    hasher.finish()
}

fn summary(row: &WorkflowRecord, latest: Option<&WorkflowVersionRecord>) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "published_version": latest.map(|v| &v.version),
    })
}

fn parse_json(text: Option<&str>) -> Value {
    text.map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned())))
        .unwrap_or(Value::Null)
}

/// A run and its node records in response shape.
pub fn run_json(run: &WorkflowRunRecord, nodes: &[WorkflowNodeRunRecord]) -> Value {
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|n| {
            json!({
                "index": n.node_index,
                "node_id": n.node_id,
                "node_type": n.node_type,
                "title": n.title,
                "status": n.status,
                "inputs": parse_json(Some(&n.inputs)),
                "outputs": parse_json(n.outputs.as_deref()),
                "error": n.error,
                "elapsed_ms": n.elapsed_ms,
                "created_at": n.created_at,
            })
        })
        .collect();
    json!({
        "id": run.id,
        "workflow_id": run.workflow_id,
        "version": run.version,
        "status": run.status,
        "inputs": parse_json(Some(&run.inputs)),
        "outputs": parse_json(run.outputs.as_deref()),
        "error": run.error,
        "elapsed_ms": run.elapsed_ms,
        "created_by": run.created_by,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "nodes": nodes,
    })
}
