//! Console routes of MCP (merged under `/console/api`):
//!
//! Dify's MCP-provider routes, in Dify's shapes:
//! - `POST/PUT/DELETE /workspaces/current/tool-provider/mcp` (create → provider entity; update/delete →
//!   `{"result":"success"}`; update and delete take `provider_id`, the row id);
//! - `POST /workspaces/current/tool-provider/mcp/auth` `{provider_id, authorization_code?}` →
//!   `{"result":"success"}` or `{"authorization_url"}` (`authorization_code` is accepted and ignored: the callback
//!   exchanges the code);
//! - `GET /workspaces/current/tool-provider/mcp/tools/{provider_id}` and `…/mcp/update/{provider_id}` (re-list);
//! - `GET /workspaces/current/tools/mcp` (`id` = `server_identifier`);
//! - `GET /mcp/oauth/callback?code&state` — no API key: the single-use state authorizes it; redirects to
//!   `{CONSOLE_WEB_URL}/oauth-callback` (with `?error=…` on failure; 400 without a `state`).
//!
//! toolplane's MCP servers (toolplane serving tools over MCP at `/mcp/server/{server_code}/mcp`):
//! - `GET /workspaces/current/mcp-servers`, `POST /workspaces/current/mcp-servers`
//!   `{name, description?, entries, require_api_key?, status?}` (the `api_key` is shown once);
//! - `GET/PUT/DELETE /workspaces/current/mcp-servers/{id}` (PUT `{name?, description?, entries?, status?}`;
//!   `status: "inactive"` disables the server);
//! - `POST /workspaces/current/mcp-servers/{id}/rotate` `{require_api_key?}`: a new server code and, when a key is
//!   required, a new key.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::TenantCaller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::mcp_providers::McpProviderInput;
use crate::mcp_servers::{McpServerInput, McpServerRotate, McpServerUpdate};
use crate::state::AppState;

/// The MCP console router, to be merged into the console router.
pub fn router() -> axum::Router<AppState> {
    let mcp = "/workspaces/current/tool-provider/mcp";
    let servers = "/workspaces/current/mcp-servers";
    axum::Router::new()
        .route(mcp, post(create).put(update).delete(delete))
        .route(&format!("{mcp}/auth"), post(authorize))
        .route(&format!("{mcp}/tools/{{provider_id}}"), get(tools))
        .route(&format!("{mcp}/update/{{provider_id}}"), get(relist))
        .route("/workspaces/current/tools/mcp", get(list))
        .route("/mcp/oauth/callback", get(callback))
        .route(servers, get(list_servers).post(create_server))
        .route(
            &format!("{servers}/{{id}}"),
            get(get_server).put(update_server).delete(delete_server),
        )
        .route(&format!("{servers}/{{id}}/rotate"), post(rotate_server))
}

fn success() -> Json<Value> {
    Json(json!({"result": "success"}))
}

async fn create(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(body): ApiJson<McpProviderInput>,
) -> Result<Json<Value>, ApiError> {
    let entity = state
        .mcp_providers
        .create(&caller.tenant_id, &caller.user_id, caller.is_admin, body)
        .await?;
    Ok(Json(entity))
}

#[derive(Deserialize)]
struct UpdateBody {
    provider_id: String,
    #[serde(flatten)]
    input: McpProviderInput,
}

async fn update(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<Value>, ApiError> {
    state
        .mcp_providers
        .update(&caller.tenant_id, caller.is_admin, &body.provider_id, body.input)
        .await?;
    Ok(success())
}

#[derive(Deserialize)]
struct ProviderBody {
    provider_id: String,
    /// Accepted for Dify compatibility; the callback exchanges the code.
    #[serde(default)]
    #[allow(dead_code)]
    authorization_code: Option<String>,
}

async fn delete(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(body): ApiJson<ProviderBody>,
) -> Result<Json<Value>, ApiError> {
    state.mcp_providers.delete(&caller.tenant_id, &body.provider_id).await?;
    Ok(success())
}

async fn authorize(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(body): ApiJson<ProviderBody>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        state
            .mcp_providers
            .authorize(&caller.tenant_id, &body.provider_id)
            .await?,
    ))
}

async fn tools(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(provider_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.mcp_providers.tools(&caller.tenant_id, &provider_id).await?))
}

async fn relist(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(provider_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.mcp_providers.relist(&caller.tenant_id, &provider_id).await?))
}

async fn list(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(state.mcp_providers.list(&caller.tenant_id).await?))
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    /// RFC 9207: the issuer of the response, checked against the authorization server's metadata.
    iss: Option<String>,
}

async fn callback(State(state): State<AppState>, Query(query): Query<CallbackQuery>) -> Response {
    let web = format!("{}/oauth-callback", state.config.console_web_url.trim_end_matches('/'));
    let fail = |message: String| {
        tracing::info!(%message, "MCP OAuth callback failed");
        let encoded: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
        Redirect::to(&format!("{web}?error={encoded}")).into_response()
    };
    // Without a state this is not a browser coming back from an authorization server.
    let Some(oauth_state) = query.state else {
        return ApiError::invalid("the MCP OAuth callback needs the code and state the authorization server sent")
            .into_response();
    };
    if let Some(error) = query.error {
        return fail(format!("the authorization server refused: {error}"));
    }
    let Some(code) = query.code else {
        return fail("the callback has no code".into());
    };
    match state
        .mcp_providers
        .callback(&code, &oauth_state, query.iss.as_deref())
        .await
    {
        Ok(()) => Redirect::to(&web).into_response(),
        Err(e) => fail(e.message),
    }
}

async fn list_servers(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(state.mcp_servers.list(&caller.tenant_id).await?))
}

async fn create_server(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(body): ApiJson<McpServerInput>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.mcp_servers.create(&caller.tenant_id, body).await?))
}

async fn get_server(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.mcp_servers.get(&caller.tenant_id, &id).await?))
}

async fn update_server(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<McpServerUpdate>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.mcp_servers.update(&caller.tenant_id, &id, body).await?))
}

async fn delete_server(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.mcp_servers.delete(&caller.tenant_id, &id).await?;
    Ok(success())
}

async fn rotate_server(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<McpServerRotate>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.mcp_servers.rotate(&caller.tenant_id, &id, body).await?))
}
