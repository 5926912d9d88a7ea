//! Console routes at Dify's paths and in Dify's shapes (`/console/api/workspaces/current/...`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use toolplane_core::{CredentialType, Tool, ToolLabel, ToolParameterType, ToolProvider, ToolProviderType};

use crate::auth::TenantCaller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;

/// The console router, to be nested under `/console/api`.
pub fn router() -> axum::Router<AppState> {
    let mut router = axum::Router::new()
        .route("/workspaces/current/tool-providers", get(list_providers))
        .route("/workspaces/current/tools/builtin", get(list_builtin_with_tools))
        .route("/workspaces/current/tool-labels", get(tool_labels));
    // Builtin providers are addressed by name, plugin providers by `org/plugin/provider` (Dify's `<path:provider>`).
    for prefix in BUILTIN_PROVIDER_PREFIXES {
        router = router
            .route(&format!("{prefix}/tools"), get(builtin_tools))
            .route(&format!("{prefix}/info"), get(builtin_info))
            .route(&format!("{prefix}/icon"), get(builtin_icon))
            .route(&format!("{prefix}/credentials"), get(list_credentials))
            .route(&format!("{prefix}/add"), post(add_credential))
            .route(&format!("{prefix}/update"), post(update_credential))
            .route(&format!("{prefix}/delete"), post(delete_credential))
            .route(&format!("{prefix}/default-credential"), post(set_default_credential))
            .route(
                &format!("{prefix}/credential/schema/{{credential_type}}"),
                get(credential_schema),
            )
            .route(&format!("{prefix}/credential/info"), get(credential_info));
    }
    router
        .merge(super::api_tools::router())
        .merge(super::workflows::router())
        .merge(super::mcp::router())
        .merge(super::extensions::console_router())
        .merge(super::oauth::router())
}

fn success() -> Json<Value> {
    Json(json!({"result": "success"}))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

async fn list_providers(
    State(state): State<AppState>,
    caller: TenantCaller,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let kind = match query.kind.as_deref().filter(|k| !k.is_empty()) {
        None => None,
        // Dify accepts `model` and lists nothing for it.
        Some("model") => return Ok(Json(Vec::new())),
        Some(k @ ("builtin" | "api" | "workflow" | "mcp")) => {
            Some(k.parse::<ToolProviderType>().map_err(ApiError::invalid)?)
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "invalid provider type {other:?}: expected one of builtin, model, api, workflow, mcp"
            )));
        }
    };
    let providers = state.catalog.providers(&caller.tenant_id, kind).await?;
    let mut out = Vec::with_capacity(providers.len());
    for provider in providers {
        out.push(provider_entity(&state, &caller.tenant_id, provider.as_ref(), Detail::List).await?);
    }
    Ok(Json(out))
}

async fn list_builtin_with_tools(
    State(state): State<AppState>,
    caller: TenantCaller,
) -> Result<Json<Vec<Value>>, ApiError> {
    let providers = state
        .catalog
        .providers(&caller.tenant_id, Some(ToolProviderType::Builtin))
        .await?;
    let mut out = Vec::with_capacity(providers.len());
    for provider in providers {
        out.push(provider_entity(&state, &caller.tenant_id, provider.as_ref(), Detail::WithTools).await?);
    }
    Ok(Json(out))
}

async fn tool_labels(_caller: TenantCaller) -> Json<Vec<ToolLabel>> {
    Json(ToolLabel::defaults())
}

/// The two shapes of a builtin-provider path: a builtin name, or a plugin provider's `org/plugin/provider`.
pub const BUILTIN_PROVIDER_PREFIXES: [&str; 2] = [
    "/workspaces/current/tool-provider/builtin/{provider}",
    "/workspaces/current/tool-provider/builtin/{org}/{plugin}/{provider}",
];

/// The provider id of a route registered under [`BUILTIN_PROVIDER_PREFIXES`]: `time`, or `org/plugin/provider`.
pub struct ProviderId(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ProviderId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(e.body_text()))?;
        let provider = params
            .get("provider")
            .ok_or_else(|| ApiError::internal("route without a {provider} segment"))?;
        Ok(match (params.get("org"), params.get("plugin")) {
            (Some(org), Some(plugin)) => Self(format!("{org}/{plugin}/{provider}")),
            _ => Self(provider.clone()),
        })
    }
}

/// A builtin provider by name, or an installed plugin's provider by `org/plugin/provider`.
pub async fn builtin(state: &AppState, tenant_id: &str, name: &str) -> Result<Arc<dyn ToolProvider>, ApiError> {
    let kind = if name.contains('/') {
        ToolProviderType::Plugin
    } else {
        ToolProviderType::Builtin
    };
    Ok(state.catalog.provider(tenant_id, kind, name).await?)
}

async fn builtin_tools(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(name): ProviderId,
) -> Result<Json<Vec<Value>>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &name).await?;
    Ok(Json(tool_entities(provider.as_ref()).await?))
}

async fn builtin_info(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(name): ProviderId,
) -> Result<Json<Value>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &name).await?;
    Ok(Json(
        provider_entity(&state, &caller.tenant_id, provider.as_ref(), Detail::Info).await?,
    ))
}

async fn builtin_icon(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(name): ProviderId,
) -> Result<Response, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &name).await?;
    let icon = provider
        .icon()
        .ok_or_else(|| ApiError::not_found(format!("provider {name:?} has no icon")))?;
    Ok((
        [
            (header::CONTENT_TYPE, icon.mime_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        icon.bytes,
    )
        .into_response())
}

async fn list_credentials(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(name): ProviderId,
) -> Result<Json<Value>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &name).await?;
    let views = state.credentials.list(&caller.tenant_id, provider.as_ref()).await?;
    Ok(Json(serde_json::to_value(views).map_err(ApiError::internal)?))
}

#[derive(Deserialize)]
struct AddBody {
    #[serde(default)]
    credentials: Map<String, Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default = "api_key")]
    kind: String,
}

fn api_key() -> String {
    CredentialType::ApiKey.as_str().to_owned()
}

async fn add_credential(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(name): ProviderId,
    ApiJson(body): ApiJson<AddBody>,
) -> Result<Json<Value>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &name).await?;
    let kind: CredentialType = body.kind.parse().map_err(ApiError::invalid)?;
    state
        .credentials
        .add(
            &caller.tenant_id,
            &caller.user_id,
            provider.as_ref(),
            body.credentials,
            body.name,
            kind,
        )
        .await?;
    Ok(success())
}

#[derive(Deserialize)]
struct UpdateBody {
    credential_id: String,
    #[serde(default)]
    credentials: Option<Map<String, Value>>,
    #[serde(default)]
    name: Option<String>,
}

async fn update_credential(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(name): ProviderId,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<Value>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &name).await?;
    state
        .credentials
        .update(
            &caller.tenant_id,
            provider.as_ref(),
            &body.credential_id,
            body.credentials,
            body.name,
        )
        .await?;
    Ok(success())
}

#[derive(Deserialize)]
struct DeleteBody {
    credential_id: String,
}

async fn delete_credential(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(name): ProviderId,
    ApiJson(body): ApiJson<DeleteBody>,
) -> Result<Json<Value>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &name).await?;
    state
        .credentials
        .delete(&caller.tenant_id, provider.as_ref(), &body.credential_id)
        .await?;
    Ok(success())
}

#[derive(Deserialize)]
struct DefaultBody {
    id: String,
}

async fn set_default_credential(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(name): ProviderId,
    ApiJson(body): ApiJson<DefaultBody>,
) -> Result<Json<Value>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &name).await?;
    state
        .credentials
        .set_default(&caller.tenant_id, provider.as_ref(), &body.id)
        .await?;
    Ok(success())
}

async fn credential_schema(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(name): ProviderId,
    Path(params): Path<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &name).await?;
    let credential_type = params.get("credential_type").map(String::as_str).unwrap_or_default();
    let kind: CredentialType = credential_type.parse().map_err(ApiError::invalid)?;
    let schema = provider.entity().credentials_schema_for(kind);
    Ok(Json(serde_json::to_value(schema).map_err(ApiError::internal)?))
}

async fn credential_info(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(name): ProviderId,
) -> Result<Json<Value>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &name).await?;
    let credentials = state.credentials.list(&caller.tenant_id, provider.as_ref()).await?;
    Ok(Json(json!({
        "supported_credential_types": provider.entity().supported_credential_types(),
        "is_oauth_custom_client_enabled": false,
        "credentials": credentials,
    })))
}

/// How much of a provider to render.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// `tool-providers`: no tools, credential keys with empty values (Dify does not decrypt in lists).
    List,
    /// `tools/builtin`: tools and the masked default credential.
    WithTools,
    /// `…/info`: the masked default credential, no tools.
    Info,
}

/// A provider in Dify's `ToolProviderApiEntity.to_dict()` shape.
async fn provider_entity(
    state: &AppState,
    tenant_id: &str,
    provider: &dyn ToolProvider,
    detail: Detail,
) -> Result<Value, ApiError> {
    let entity = provider.entity();
    let identity = &entity.identity;
    let needs_credentials = entity.needs_credentials();
    let default = if needs_credentials {
        state.credentials.default_view(tenant_id, provider).await?
    } else {
        None
    };
    let team_credentials: Map<String, Value> = match (&default, detail) {
        (Some(view), Detail::WithTools | Detail::Info) => view.credentials.clone(),
        // API providers carry their own credentials: show them masked, as `tools/api` does.
        _ if provider.provider_type() == ToolProviderType::Api => state
            .api_tools
            .masked_credentials(tenant_id, provider.id())
            .await?
            .unwrap_or_default(),
        _ => entity
            .credentials_schema
            .iter()
            .map(|c| (c.name.clone(), Value::String(String::new())))
            .collect(),
    };
    let tools = if detail == Detail::WithTools {
        tool_entities(provider).await?
    } else {
        Vec::new()
    };
    let icon_url = |_: &str| {
        format!(
            "{}/console/api/workspaces/current/tool-provider/builtin/{}/icon",
            state.config.console_api_url,
            provider.id()
        )
    };
    let is_builtin = provider.provider_type() == ToolProviderType::Builtin;
    let icon = if is_builtin {
        Value::String(icon_url(&identity.icon))
    } else {
        Value::String(identity.icon.clone())
    };
    let icon_dark = match (&identity.icon_dark, is_builtin) {
        (Some(dark), true) => Value::String(icon_url(dark)),
        (Some(dark), false) => Value::String(dark.clone()),
        (None, _) => Value::Null,
    };
    Ok(json!({
        "id": provider.id(),
        "author": identity.author,
        "name": identity.name,
        "plugin_id": entity.plugin_id,
        "plugin_unique_identifier": Value::Null,
        "description": identity.description,
        "icon": icon,
        "icon_dark": icon_dark,
        "label": identity.label,
        "type": provider.provider_type(),
        "team_credentials": team_credentials,
        "is_team_authorization": !needs_credentials || default.is_some(),
        // Builtin providers are deletable only through their credentials; imported providers always are.
        "allow_delete": !is_builtin || needs_credentials,
        "tools": tools,
        "labels": identity.tags,
    }))
}

/// The tools of a provider in Dify's `ToolApiEntity` shape.
async fn tool_entities(provider: &dyn ToolProvider) -> Result<Vec<Value>, ApiError> {
    let tags = &provider.entity().identity.tags;
    let tools = provider.tools().await?;
    Ok(tools.iter().map(|tool| tool_entity(tool.as_ref(), tags)).collect())
}

/// A tool in Dify's `ToolApiEntity` shape; the deprecated `system-files` parameter type is reported as `files`.
/// Shared by every provider kind's console routes.
pub fn tool_entity(tool: &dyn Tool, labels: &impl serde::Serialize) -> Value {
    let entity = tool.entity();
    let parameters: Vec<Value> = entity
        .parameters
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if p.kind == ToolParameterType::SystemFiles {
                p.kind = ToolParameterType::Files;
            }
            serde_json::to_value(p).unwrap_or(Value::Null)
        })
        .collect();
    json!({
        "author": entity.identity.author,
        "name": entity.identity.name,
        "label": entity.identity.label,
        "description": entity.description.as_ref().map(|d| &d.human),
        "parameters": parameters,
        "labels": labels,
        "output_schema": entity.output_schema,
    })
}
