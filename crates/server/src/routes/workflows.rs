//! Workflow routes, merged into the console router (under `/console/api`).
//!
//! toolplane's own workflow routes (no Dify equivalent: Dify keeps workflows inside apps) live under
//! `/workspaces/current/workflows`:
//!
//! | Method | Path | Body / query | Response |
//! |---|---|---|---|
//! | POST | `/workflows/import` | the DSL as YAML/JSON text, or JSON `{"dsl": "..."}` | 201 workflow detail |
//! | GET | `/workflows` | – | `[workflow summary]` |
//! | GET | `/workflows/{id}` | – | detail: `dsl`, `nodes`, `variables`, `output_schema`, `versions`, `workflow_tool_id` |
//! | PUT | `/workflows/{id}` | DSL as for import | detail (replaces the draft) |
//! | DELETE | `/workflows/{id}` | – | `{"result":"success"}` (refused while published as a tool) |
//! | POST | `/workflows/{id}/publish` | – | `{version, created_at}` |
//! | GET | `/workflows/{id}/versions` | – | `[{version, created_at}]` |
//! | POST | `/workflows/{id}/run` | `{inputs, version?, stream?}` | SSE of run events when `stream` or `Accept: text/event-stream`, else the finished run with node records |
//! | GET | `/workflows/{id}/runs` | `limit?` (20) | `[run with nodes]`, newest first |
//! | GET | `/workflows/{id}/runs/{run_id}` | – | run with nodes |
//!
//! Dify's workflow-as-tool routes keep Dify's paths and payloads: `tool-provider/workflow/create|update|delete`
//! (POST), `tool-provider/workflow/get|tools` (GET) and `tools/workflow` (GET).

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use toolplane_workflow::RunEvent;

use crate::auth::TenantCaller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;
use crate::workflows::{RunRequest, WorkflowToolInput};

/// The workflow router, to be merged into the console router.
pub fn router() -> axum::Router<AppState> {
    let wf = "/workspaces/current/workflows";
    let tool = "/workspaces/current/tool-provider/workflow";
    axum::Router::new()
        .route(wf, get(list))
        .route(&format!("{wf}/import"), post(import))
        .route(
            &format!("{wf}/{{workflow_id}}"),
            get(detail).put(replace).delete(delete),
        )
        .route(&format!("{wf}/{{workflow_id}}/publish"), post(publish))
        .route(&format!("{wf}/{{workflow_id}}/versions"), get(versions))
        .route(&format!("{wf}/{{workflow_id}}/run"), post(run))
        .route(&format!("{wf}/{{workflow_id}}/runs"), get(runs))
        .route(&format!("{wf}/{{workflow_id}}/runs/{{run_id}}"), get(run_detail))
        .route(&format!("{tool}/create"), post(create_tool))
        .route(&format!("{tool}/update"), post(update_tool))
        .route(&format!("{tool}/delete"), post(delete_tool))
        .route(&format!("{tool}/get"), get(tool_detail))
        .route(&format!("{tool}/tools"), get(tool_tools))
        .route("/workspaces/current/tools/workflow", get(list_tools))
}

fn success() -> Json<Value> {
    Json(json!({"result": "success"}))
}

/// The DSL of an import body: JSON `{"dsl": "..."}`, or the body itself (YAML, or a JSON export).
fn dsl_of(body: &str) -> Result<String, ApiError> {
    if body.trim().is_empty() {
        return Err(ApiError::invalid(
            "the request body is empty: send the workflow DSL (YAML or JSON) or {\"dsl\": \"...\"}",
        ));
    }
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body)
        && let Some(dsl) = map.get("dsl")
    {
        return dsl
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::invalid("\"dsl\" must be a string holding the YAML or JSON document"));
    }
    Ok(body.to_owned())
}

async fn import(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: String,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let dsl = dsl_of(&body)?;
    let row = state.workflows.import(&caller.tenant_id, &caller.user_id, &dsl).await?;
    let detail = state.workflows.detail(&caller.tenant_id, &row.id).await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

async fn list(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(state.workflows.list(&caller.tenant_id).await?))
}

async fn detail(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.workflows.detail(&caller.tenant_id, &id).await?))
}

async fn replace(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let dsl = dsl_of(&body)?;
    state.workflows.replace(&caller.tenant_id, &id, &dsl).await?;
    Ok(Json(state.workflows.detail(&caller.tenant_id, &id).await?))
}

async fn delete(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.workflows.delete(&caller.tenant_id, &id).await?;
    Ok(success())
}

async fn publish(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let version = state.workflows.publish(&caller.tenant_id, &id).await?;
    Ok(Json(
        json!({"version": version.version, "created_at": version.created_at}),
    ))
}

async fn versions(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(state.workflows.versions(&caller.tenant_id, &id).await?))
}

fn event_name(event: &RunEvent) -> &'static str {
    match event {
        RunEvent::WorkflowStarted { .. } => "workflow_started",
        RunEvent::NodeStarted { .. } => "node_started",
        RunEvent::NodeSucceeded { .. } => "node_succeeded",
        RunEvent::NodeFailed { .. } => "node_failed",
        RunEvent::NodeSkipped { .. } => "node_skipped",
        RunEvent::WorkflowSucceeded { .. } => "workflow_succeeded",
        RunEvent::WorkflowFailed { .. } => "workflow_failed",
    }
}

async fn run(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RunRequest>,
) -> Result<Response, ApiError> {
    let wants_sse = request.stream
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
    let started = state
        .workflows
        .start_run(&caller.tenant_id, &caller.user_id, &id, request)
        .await?;
    let run_id = started.run.id.clone();
    if !wants_sse {
        // The recorder writes the outcome before forwarding the last event, so the stored run is complete here.
        let mut events = started.events;
        while events.recv().await.is_some() {}
        let detail = state.workflows.run_detail(&caller.tenant_id, &id, &run_id).await?;
        return Ok(Json(detail).into_response());
    }
    let events = futures::stream::unfold(started.events, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let events = events.map(move |event| {
        let mut data = serde_json::to_value(&event).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut data {
            map.insert("workflow_run_id".into(), json!(run_id));
        }
        let sse = Event::default()
            .event(event_name(&event))
            .json_data(&data)
            .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()));
        Ok::<_, Infallible>(sse)
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

#[derive(Deserialize)]
struct RunsQuery {
    #[serde(default)]
    limit: Option<i64>,
}

async fn runs(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
    Query(query): Query<RunsQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(state.workflows.runs(&caller.tenant_id, &id, query.limit).await?))
}

async fn run_detail(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path((id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.workflows.run_detail(&caller.tenant_id, &id, &run_id).await?))
}

async fn create_tool(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(body): ApiJson<WorkflowToolInput>,
) -> Result<Json<Value>, ApiError> {
    state
        .workflows
        .create_tool(&caller.tenant_id, &caller.user_id, body)
        .await?;
    Ok(success())
}

async fn update_tool(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(body): ApiJson<WorkflowToolInput>,
) -> Result<Json<Value>, ApiError> {
    state.workflows.update_tool(&caller.tenant_id, body).await?;
    Ok(success())
}

#[derive(Deserialize)]
struct ToolIdBody {
    workflow_tool_id: String,
}

async fn delete_tool(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(body): ApiJson<ToolIdBody>,
) -> Result<Json<Value>, ApiError> {
    state
        .workflows
        .delete_tool(&caller.tenant_id, &body.workflow_tool_id)
        .await?;
    Ok(success())
}

#[derive(Deserialize)]
struct DetailQuery {
    #[serde(default)]
    workflow_tool_id: Option<String>,
    #[serde(default)]
    workflow_app_id: Option<String>,
}

async fn tool_detail(
    State(state): State<AppState>,
    caller: TenantCaller,
    Query(query): Query<DetailQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        state
            .workflows
            .tool_detail(
                &caller.tenant_id,
                query.workflow_tool_id.as_deref(),
                query.workflow_app_id.as_deref(),
            )
            .await?,
    ))
}

#[derive(Deserialize)]
struct ToolsQuery {
    #[serde(default)]
    workflow_tool_id: Option<String>,
}

async fn tool_tools(
    State(state): State<AppState>,
    caller: TenantCaller,
    Query(query): Query<ToolsQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let id = query
        .workflow_tool_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("workflow_tool_id is required"))?;
    Ok(Json(state.workflows.tools(&caller.tenant_id, &id).await?))
}

async fn list_tools(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(state.workflows.list_with_tools(&caller.tenant_id).await?))
}
