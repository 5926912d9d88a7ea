//! toolplane's own API under `/v1`: invoke, tool listing, deleted-tool detection, tenants and keys.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use toolplane_core::{InvokeOptions, ToolError, ToolProviderType, collect_messages};

use crate::auth::{AdminCaller, TenantCaller};
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;

/// The `/v1` router.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/tools", get(list_tools))
        .route("/tools/invoke", post(invoke))
        .route("/tools/deleted", post(deleted_tools))
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route("/tenants/{tenant_id}/keys", get(list_keys).post(create_key))
        .route("/tenants/{tenant_id}/rotate-key", post(rotate_key))
        .route("/openapi.json", get(openapi))
        .merge(super::extensions::v1_router())
}

/// The OpenAPI document of toolplane's own API.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// Body of `POST /v1/tools/invoke`.
#[derive(Debug, Deserialize)]
pub struct InvokeRequest {
    pub provider_type: String,
    #[serde(alias = "provider")]
    pub provider_id: String,
    #[serde(alias = "tool_name")]
    pub tool: String,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub credential_id: Option<String>,
    /// Stream messages as server-sent events; also chosen by `Accept: text/event-stream`.
    #[serde(default)]
    pub stream: bool,
}

async fn invoke(
    State(state): State<AppState>,
    caller: TenantCaller,
    headers: HeaderMap,
    ApiJson(request): ApiJson<InvokeRequest>,
) -> Result<Response, ApiError> {
    let kind: ToolProviderType = request.provider_type.parse().map_err(ApiError::invalid)?;
    let resolved = state
        .catalog
        .runtime(
            &caller.tenant_id,
            kind,
            &request.provider_id,
            &request.tool,
            request.credential_id.as_deref(),
        )
        .await?;
    let mut runtime = resolved.runtime;
    runtime.user_id = Some(caller.user_id.clone());
    let options = InvokeOptions {
        timeout: Some(state.config.invoke_timeout),
        ..InvokeOptions::default()
    };
    let wants_sse = request.stream
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
    tracing::debug!(tenant = %caller.tenant_id, provider = %request.provider_id, tool = %request.tool, "invoke");
    // Parameter errors surface here, before any output, so they become a 4xx even when streaming.
    let stream = toolplane_core::invoke(resolved.tool, runtime, request.parameters, options).await?;
    // Blobs and image URLs become tool files with `/files/tools/...` links (Dify's ToolFileMessageTransformer).
    let owner = crate::tool_files::FileOwner {
        tenant_id: caller.tenant_id.clone(),
        user_id: caller.user_id.clone(),
        conversation_id: None,
    };
    let stream = state.tool_files.clone().transform(owner, stream);
    if !wants_sse {
        let messages = collect_messages(stream).await?;
        return Ok(Json(json!({"messages": messages})).into_response());
    }
    // Dropping this stream (the client went away) drops the tool's stream, which cancels the invocation.
    let events = stream
        .map(|item| {
            let event = match item {
                Ok(message) => Event::default().event("message").json_data(&message),
                Err(error) => Event::default().event("error").json_data(error_body(&error)),
            };
            Ok::<_, Infallible>(event.unwrap_or_else(|e| Event::default().event("error").data(e.to_string())))
        })
        .chain(futures::stream::once(async {
            Ok(Event::default().event("done").data("{}"))
        }));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

fn error_body(error: &ToolError) -> Value {
    let api: ApiError = error.clone().into();
    json!({"code": api.code, "message": api.message, "status": api.status.as_u16()})
}

async fn list_tools(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<Vec<Value>>, ApiError> {
    let providers = state.catalog.providers(&caller.tenant_id, None).await?;
    let mut out = Vec::with_capacity(providers.len());
    for provider in providers {
        let tools = provider.tools().await?;
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let e = t.entity();
                json!({
                    "name": e.identity.name,
                    "label": e.identity.label.en_US,
                    "description": e.description.as_ref().map(|d| d.llm.clone()).unwrap_or_default(),
                    "parameters": e.parameters,
                })
            })
            .collect();
        out.push(json!({
            "provider_type": provider.provider_type(),
            "provider_id": provider.id(),
            "label": provider.entity().identity.label.en_US,
            "needs_credentials": provider.entity().needs_credentials(),
            "tools": tools,
        }));
    }
    Ok(Json(out))
}

async fn deleted_tools(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(config): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let deleted = state.catalog.deleted_tools(&caller.tenant_id, &config).await?;
    Ok(Json(json!({"deleted_tools": deleted})))
}

#[derive(Deserialize)]
struct NameBody {
    #[serde(default)]
    name: Option<String>,
}

async fn create_tenant(
    State(state): State<AppState>,
    _admin: AdminCaller,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = body
        .name
        .ok_or_else(|| ApiError::invalid("field \"name\" is required"))?;
    let tenant = state.create_tenant(&name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": tenant.id, "name": tenant.name, "created_at": tenant.created_at})),
    ))
}

async fn list_tenants(State(state): State<AppState>, _admin: AdminCaller) -> Result<Json<Value>, ApiError> {
    let tenants = state.store.tenants().list().await?;
    let rows: Vec<Value> = tenants
        .into_iter()
        .map(|t| json!({"id": t.id, "name": t.name, "created_at": t.created_at}))
        .collect();
    Ok(Json(json!({"data": rows})))
}

async fn create_key(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<NameBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = body.name.unwrap_or_else(|| "api".to_owned());
    let (record, key) = state.create_api_key(Some(&tenant_id), &name).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": record.id, "tenant_id": record.tenant_id, "name": record.name, "key": key, "created_at": record.created_at}),
        ),
    ))
}

async fn list_keys(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let keys = state.store.api_keys().list(Some(&tenant_id)).await?;
    let rows: Vec<Value> = keys
        .into_iter()
        .map(|k| json!({"id": k.id, "name": k.name, "prefix": k.key_prefix, "created_at": k.created_at, "last_used_at": k.last_used_at}))
        .collect();
    Ok(Json(json!({"data": rows})))
}

async fn rotate_key(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if state.store.tenants().get(&tenant_id).await?.is_none() {
        return Err(ApiError::not_found(format!("tenant {tenant_id:?} not found")));
    }
    let cleared = state.keys.rotate(&tenant_id).await?;
    Ok(Json(json!({
        "result": "success",
        "cleared_credentials": cleared,
        "warning": "credentials encrypted with the old key were deleted; add them again"
    })))
}
