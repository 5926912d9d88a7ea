//! Routes of API-based extensions: Dify's console CRUD (`/console/api/api-based-extension[/{id}]`) and
//! toolplane's `POST /v1/extensions/{id}/invoke {point, params}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::TenantCaller;
use crate::error::ApiError;
use crate::extensions::{ExtensionInput, ExtensionPoint, ExtensionView};
use crate::json::ApiJson;
use crate::state::AppState;

/// Console routes, nested under `/console/api`.
pub fn console_router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api-based-extension", get(list).post(create))
        .route("/api-based-extension/{id}", get(get_one).post(update).delete(delete))
}

/// `/v1` routes.
pub fn v1_router() -> axum::Router<AppState> {
    axum::Router::new().route("/extensions/{id}/invoke", post(invoke))
}

async fn list(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<Vec<ExtensionView>>, ApiError> {
    Ok(Json(state.extensions.list(&caller.tenant_id).await?))
}

async fn create(
    State(state): State<AppState>,
    caller: TenantCaller,
    ApiJson(input): ApiJson<ExtensionInput>,
) -> Result<Json<ExtensionView>, ApiError> {
    Ok(Json(state.extensions.create(&caller.tenant_id, input).await?))
}

async fn get_one(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
) -> Result<Json<ExtensionView>, ApiError> {
    Ok(Json(state.extensions.get(&caller.tenant_id, &id).await?))
}

async fn update(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ExtensionInput>,
) -> Result<Json<ExtensionView>, ApiError> {
    Ok(Json(state.extensions.update(&caller.tenant_id, &id, input).await?))
}

async fn delete(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.extensions.delete(&caller.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/extensions/{id}/invoke`.
#[derive(Debug, Deserialize)]
struct InvokeBody {
    point: String,
    #[serde(default)]
    params: Map<String, Value>,
}

async fn invoke(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<InvokeBody>,
) -> Result<Json<Value>, ApiError> {
    let point: ExtensionPoint = body.point.parse().map_err(ApiError::invalid)?;
    let result = state
        .extensions
        .invoke(&caller.tenant_id, &id, point, body.params)
        .await?;
    Ok(Json(json!({"point": point.as_str(), "result": result})))
}
