//! Console routes of API tools at Dify's paths and in Dify's shapes (`tool-provider/api/*`, `tools/api`).
//! Providers are addressed by name here; the `id` in listings is what `/v1/tools/invoke` takes as `provider_id`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_tools::{ApiProviderInput, TestRequest};
use crate::auth::TenantCaller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;

/// The API-tool console router, to be merged into the console router (under `/console/api`).
pub fn router() -> axum::Router<AppState> {
    let api = "/workspaces/current/tool-provider/api";
    axum::Router::new()
        .route(&format!("{api}/add"), post(add))
        .route(&format!("{api}/update"), post(update))
        .route(&format!("{api}/delete"), post(delete))
        .route(&format!("{api}/get"), get(detail))
        .route(&format!("{api}/tools"), get(tools))
        .route(&format!("{api}/remote"), get(remote))
        .route(&format!("{api}/schema"), post(schema))
        .route(&format!("{api}/test/pre"), post(test_pre))
        .route("/workspaces/current/tools/api", get(list))
}

fn success() -> Json<Value> {
    Json(json!({"result": "success"}))
}

/// Dify's `X-Request-Env` header: selects the spec server whose `env` matches.
fn request_env(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-request-env").and_then(|v| v.to_str().ok())
}

async fn add(
    State(state): State<AppState>,
    caller: TenantCaller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ApiProviderInput>,
) -> Result<Json<Value>, ApiError> {
    state
        .api_tools
        .add(&caller.tenant_id, &caller.user_id, body, request_env(&headers))
        .await?;
    Ok(success())
}

#[derive(Deserialize)]
struct UpdateBody {
    original_provider: String,
    #[serde(flatten)]
    input: ApiProviderInput,
}

async fn update(
    State(state): State<AppState>,
    caller: TenantCaller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<Value>, ApiError> {
    state
        .api_tools
        .update(
            &caller.tenant_id,
            &body.original_provider,
            body.input,
            request_env(&headers),
        )
        .await?;
    Ok(success())
}

#[derive(Deserialize)]
struct ProviderBody {
    provider: String,
}

async fn delete(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(body): ApiJson<ProviderBody>,
) -> Result<Json<Value>, ApiError> {
    state.api_tools.delete(&caller.tenant_id, &body.provider).await?;
    Ok(success())
}

#[derive(Deserialize)]
struct ProviderQuery {
    provider: String,
}

async fn detail(
    State(state): State<AppState>,
    caller: TenantCaller,
    Query(query): Query<ProviderQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.api_tools.detail(&caller.tenant_id, &query.provider).await?))
}

async fn tools(
    State(state): State<AppState>,
    caller: TenantCaller,
    Query(query): Query<ProviderQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(state.api_tools.tools(&caller.tenant_id, &query.provider).await?))
}

#[derive(Deserialize)]
struct UrlQuery {
    url: String,
}

async fn remote(
    State(state): State<AppState>,
    _caller: TenantCaller,
    Query(query): Query<UrlQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.api_tools.remote_schema(&query.url).await?))
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
}

async fn schema(
    State(state): State<AppState>,
    _caller: TenantCaller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SchemaBody>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        state
            .api_tools
            .preview_schema(&body.schema, request_env(&headers))
            .await?,
    ))
}

async fn test_pre(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(body): ApiJson<TestRequest>,
) -> Json<Value> {
    Json(state.api_tools.test_preview(&caller.tenant_id, body).await)
}

async fn list(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(state.api_tools.list_with_tools(&caller.tenant_id).await?))
}
