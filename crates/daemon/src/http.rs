//! The daemon's HTTP API: `X-Api-Key` auth, the `{code, message, data}` envelope, and the management, asset and
//! health routes (reference §2).

use std::collections::HashMap;
use std::future::Future;

use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, get, on, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::db::ProviderCategory;
use crate::error::DaemonError;
use crate::service::DaemonState;

/// Version reported by `/health/check`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Multipart overhead allowed on top of `MAX_PLUGIN_PACKAGE_SIZE` (`MAX_BUNDLE_PACKAGE_SIZE` for bundles) before the
/// body is cut off.
const MULTIPART_SLACK: usize = 1024 * 1024;

/// The envelope of a successful management response.
fn ok(data: impl serde::Serialize) -> Response {
    Json(json!({"code": 0, "message": "success", "data": data})).into_response()
}

/// The envelope of an error: `message` is itself a JSON string of `{message, error_type, args}`.
fn error_body(code: i64, error_type: &str, message: &str) -> Value {
    let inner = json!({"message": message, "error_type": error_type, "args": null});
    json!({"code": code, "message": inner.to_string(), "data": null})
}

/// Management errors answer HTTP 200 with a non-zero code, as the original.
fn fail(e: &DaemonError) -> Response {
    if e.code() == -500 {
        tracing::error!(error = %e, "plugin daemon request failed");
    }
    Json(error_body(e.code(), e.error_type(), &e.to_string())).into_response()
}

fn reply(result: Result<impl serde::Serialize, DaemonError>) -> Response {
    match result {
        Ok(data) => ok(data),
        Err(e) => fail(&e),
    }
}

fn bad(message: impl Into<String>) -> DaemonError {
    DaemonError::BadRequest(message.into())
}

/// The router of every daemon route. Plugin routes (`/plugin/{tenant_id}/…`) require `X-Api-Key`; `/health/check`
/// does not. It has no fallback, so it can be merged into another router; [`crate::serve_daemon`] adds the
/// original's 404 body.
pub fn router(state: DaemonState) -> Router {
    let upload_limit = usize::try_from(state.config().max_plugin_package_size)
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_SLACK);
    let bundle_limit = usize::try_from(state.config().max_bundle_package_size)
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_SLACK);
    let management = Router::new()
        .route(
            "/install/upload/package",
            post(upload_package).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/install/upload/bundle",
            post(upload_bundle).layer(DefaultBodyLimit::max(bundle_limit)),
        )
        .route("/install/identifiers", post(install_identifiers))
        .route("/install/upgrade", post(upgrade))
        .route("/install/tasks", get(tasks))
        .route("/install/tasks/delete_all", post(delete_all_tasks))
        .route("/install/tasks/{id}", get(task))
        .route("/install/tasks/{id}/delete", post(delete_task))
        .route("/install/tasks/{id}/delete/{*identifier}", post(delete_task_item))
        .route("/decode/from_identifier", get(decode_from_identifier))
        .route("/fetch/manifest", get(fetch_manifest))
        .route("/fetch/identifier", get(fetch_identifier))
        .route("/fetch/readme", get(fetch_readme))
        .route("/uninstall", post(uninstall))
        .route("/list", get(list))
        .route("/installation/ids", get(installation_ids))
        .route("/installation/fetch/batch", post(fetch_batch))
        .route("/installation/missing", post(missing))
        .route("/{category}/list", get(category_list))
        .route("/models", get(providers_of(ProviderCategory::Model)))
        .route("/models/bindings", get(model_bindings))
        .route("/tools", get(providers_of(ProviderCategory::Tool)))
        .route("/tool", get(provider_of(ProviderCategory::Tool)))
        .route("/tools/check_existence", post(check_existence))
        .route("/agent_strategies", get(providers_of(ProviderCategory::AgentStrategy)))
        .route("/agent_strategy", get(provider_of(ProviderCategory::AgentStrategy)))
        .route("/datasources", get(providers_of(ProviderCategory::Datasource)))
        .route("/datasource", get(provider_of(ProviderCategory::Datasource)))
        .route("/triggers", get(providers_of(ProviderCategory::Trigger)))
        .route("/trigger", get(provider_of(ProviderCategory::Trigger)));
    let plugin = Router::new()
        .nest("/management", management)
        .route("/asset/{id}", get(asset))
        .route("/extract-asset", get(extract_asset))
        .route("/extract-asset/", get(extract_asset))
        .route("/endpoint/setup", post(setup_endpoint))
        .route("/endpoint/update", post(update_endpoint))
        .route("/endpoint/remove", post(remove_endpoint))
        .route("/endpoint/enable", post(enable_endpoint))
        .route("/endpoint/disable", post(disable_endpoint))
        .route("/endpoint/list", get(list_endpoints))
        .route("/endpoint/list/plugin", get(list_plugin_endpoints))
        .route("/debugging/key", post(debugging_key))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key));
    let v2 = Router::new()
        .route("/extract", get(extract_plugin_schema))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key));
    // The dispatch routes (one call per plugin invocation) at full paths rather than nested: a nested route rebuilds
    // the request URI without its prefix and records the nesting path on every request.
    let dispatch = Router::new()
        .route(
            "/plugin/{tenant_id}/dispatch/{*action}",
            post(crate::dispatch::dispatch),
        )
        .route("/v2/invoke/dispatch/{*action}", post(crate::dispatch::dispatch_v2))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key));
    let mut router = Router::new()
        .nest("/plugin/{tenant_id}", plugin)
        .nest("/v2/invoke", v2)
        .merge(dispatch)
        .route("/health/check", get(health));
    if state.config().endpoint_enabled {
        // No API key: the hook id is the secret. GET routes answer HEAD too.
        let methods = MethodFilter::GET
            .or(MethodFilter::HEAD)
            .or(MethodFilter::POST)
            .or(MethodFilter::PUT)
            .or(MethodFilter::DELETE)
            .or(MethodFilter::OPTIONS);
        router = router
            .route("/e/{hook_id}", on(methods, crate::endpoints::invoke_hook))
            .route("/e/{hook_id}/", on(methods, crate::endpoints::invoke_hook))
            .route("/e/{hook_id}/{*path}", on(methods, crate::endpoints::invoke_hook));
    }
    router.with_state(state)
}

/// The original's answer to unknown routes, for a standalone daemon.
pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": "not_found", "message": "route not found"})),
    )
        .into_response()
}

/// `POST /plugin/{tenant_id}/debugging/key`: `{"key": "<uuid>"}`.
async fn debugging_key(State(state): State<DaemonState>, Path(tenant_id): Path<String>) -> Response {
    reply(state.debugging_key(&tenant_id).map(|key| json!({"key": key})))
}

async fn require_api_key(State(state): State<DaemonState>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get("X-Api-Key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), state.config().server_key.as_bytes()) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(error_body(
                -401,
                "PluginDaemonUnauthorizedError",
                "X-Api-Key is missing or wrong; send the daemon's SERVER_KEY (Dify's PLUGIN_DAEMON_KEY)",
            )),
        )
            .into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(state): State<DaemonState>) -> Response {
    Json(json!({
        "status": "ok",
        "pool_status": {},
        "version": VERSION,
        "build_time": "",
        "platform": state.config().platform,
        "active_requests": 0,
        "active_dispatch_requests": 0,
        "uptime_seconds": state.uptime().as_secs(),
    }))
    .into_response()
}

type Params = Query<HashMap<String, String>>;

fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> &'a str {
    params.get(name).map(String::as_str).unwrap_or_default()
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, DaemonError> {
    let value = param(params, name);
    if value.is_empty() {
        Err(bad(format!("{name} is required")))
    } else {
        Ok(value)
    }
}

/// `page` ≥ 1 and `page_size` in 1..=256, as the original validates them.
fn paging(params: &HashMap<String, String>) -> Result<(i64, i64), DaemonError> {
    let number = |name: &str| -> Result<i64, DaemonError> {
        let raw = required(params, name)?;
        raw.parse::<i64>()
            .map_err(|_| bad(format!("{name} must be an integer, got {raw:?}")))
    };
    let page = number("page")?;
    let page_size = number("page_size")?;
    if page < 1 {
        return Err(bad("page must be at least 1"));
    }
    if !(1..=256).contains(&page_size) {
        return Err(bad("page_size must be between 1 and 256"));
    }
    Ok((page, page_size))
}

fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, DaemonError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

async fn run<F, T>(work: F) -> Response
where
    F: Future<Output = Result<T, DaemonError>>,
    T: serde::Serialize,
{
    reply(work.await)
}

// ---- upload -------------------------------------------------------------------------------------------------------

/// One upload form: the file field and the `verify_signature` flag.
struct UploadForm {
    /// The file field's name (`dify_pkg`, `dify_bundle`).
    file: &'static str,
    /// What the file is, for messages.
    what: &'static str,
    /// The variable that sets `limit`, for messages.
    variable: &'static str,
    /// The largest accepted file, in bytes.
    limit: u64,
}

impl UploadForm {
    /// Reads the file (at most `limit` bytes) and `verify_signature` from the form.
    async fn read(&self, multipart: Result<Multipart, MultipartRejection>) -> Result<(Vec<u8>, bool), DaemonError> {
        let mut multipart = multipart.map_err(|e| bad(format!("expected a multipart form with {}: {e}", self.file)))?;
        let mut file: Option<Vec<u8>> = None;
        let mut verify = false;
        while let Some(mut field) = multipart.next_field().await.map_err(|e| self.error(&e))? {
            match field.name() {
                Some(name) if name == self.file => {
                    let mut bytes = Vec::new();
                    while let Some(chunk) = field.chunk().await.map_err(|e| self.error(&e))? {
                        bytes.extend_from_slice(&chunk);
                        if bytes.len() as u64 > self.limit {
                            return Err(self.too_large());
                        }
                    }
                    file = Some(bytes);
                }
                Some("verify_signature") => {
                    let text = field.text().await.map_err(|e| self.error(&e))?;
                    verify = matches!(text.trim(), "true" | "1" | "True" | "TRUE" | "t" | "T");
                }
                _ => {}
            }
        }
        let file = file.ok_or_else(|| bad(format!("the multipart form has no {} file", self.file)))?;
        Ok((file, verify))
    }

    fn too_large(&self) -> DaemonError {
        bad(format!(
            "the uploaded {} is larger than {} ({} bytes); shrink it or raise the limit",
            self.what, self.variable, self.limit
        ))
    }

    fn error(&self, e: &axum::extract::multipart::MultipartError) -> DaemonError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            self.too_large()
        } else {
            bad(format!("reading the upload failed: {}", e.body_text()))
        }
    }
}

async fn upload_package(
    State(state): State<DaemonState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    run(async {
        let form = UploadForm {
            file: "dify_pkg",
            what: "package",
            variable: "MAX_PLUGIN_PACKAGE_SIZE",
            limit: state.config().max_plugin_package_size,
        };
        let (package, verify) = form.read(multipart).await?;
        state.upload_package(&package, verify).await
    })
    .await
}

async fn upload_bundle(State(state): State<DaemonState>, multipart: Result<Multipart, MultipartRejection>) -> Response {
    run(async {
        let form = UploadForm {
            file: "dify_bundle",
            what: "bundle",
            variable: "MAX_BUNDLE_PACKAGE_SIZE",
            limit: state.config().max_bundle_package_size,
        };
        let (bundle, verify) = form.read(multipart).await?;
        state.upload_bundle(&bundle, verify).await
    })
    .await
}

// ---- install ------------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct InstallRequest {
    plugin_unique_identifiers: Vec<String>,
    #[serde(default)]
    source: String,
    #[serde(default)]
    metas: Vec<Value>,
}

async fn install_identifiers(State(state): State<DaemonState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    run(async {
        let request: InstallRequest = json_body(&body)?;
        state
            .install_identifiers(
                &tenant,
                &request.plugin_unique_identifiers,
                &request.source,
                &request.metas,
            )
            .await
    })
    .await
}

#[derive(Deserialize)]
struct UpgradeRequest {
    original_plugin_unique_identifier: String,
    new_plugin_unique_identifier: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    meta: Value,
}

async fn upgrade(State(state): State<DaemonState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    run(async {
        let request: UpgradeRequest = json_body(&body)?;
        let meta = if request.meta.is_null() {
            json!({})
        } else {
            request.meta
        };
        state
            .upgrade(
                &tenant,
                &request.original_plugin_unique_identifier,
                &request.new_plugin_unique_identifier,
                &request.source,
                &meta,
            )
            .await
    })
    .await
}

async fn tasks(State(state): State<DaemonState>, Path(tenant): Path<String>, Query(params): Params) -> Response {
    run(async {
        let (page, page_size) = paging(&params)?;
        state.tasks(&tenant, page, page_size).await
    })
    .await
}

async fn task(State(state): State<DaemonState>, Path((tenant, id)): Path<(String, String)>) -> Response {
    reply(state.task(&tenant, &id).await)
}

async fn delete_task(State(state): State<DaemonState>, Path((tenant, id)): Path<(String, String)>) -> Response {
    reply(state.delete_task(&tenant, &id).await.map(|()| true))
}

async fn delete_all_tasks(State(state): State<DaemonState>, Path(tenant): Path<String>) -> Response {
    reply(state.delete_all_tasks(&tenant).await.map(|()| true))
}

async fn delete_task_item(
    State(state): State<DaemonState>,
    Path((tenant, id, identifier)): Path<(String, String, String)>,
) -> Response {
    let identifier = identifier.trim_start_matches('/');
    reply(state.delete_task_item(&tenant, &id, identifier).await.map(|()| true))
}

#[derive(Deserialize)]
struct UninstallRequest {
    plugin_installation_id: String,
}

async fn uninstall(State(state): State<DaemonState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    run(async {
        let request: UninstallRequest = json_body(&body)?;
        state
            .uninstall(&tenant, &request.plugin_installation_id)
            .await
            .map(|()| true)
    })
    .await
}

// ---- decode and fetch ---------------------------------------------------------------------------------------------

/// The identifier from the query string, or from a JSON body (Dify sends this GET with a JSON body).
fn identifier_from(params: &HashMap<String, String>, body: &Bytes) -> Result<String, DaemonError> {
    if let Some(uid) = params.get("plugin_unique_identifier").filter(|v| !v.is_empty()) {
        return Ok(uid.clone());
    }
    if !body.is_empty() {
        let value: Value = json_body(body)?;
        if let Some(uid) = value.get("plugin_unique_identifier").and_then(Value::as_str) {
            return Ok(uid.to_owned());
        }
    }
    Err(bad("plugin_unique_identifier is required"))
}

async fn decode_from_identifier(State(state): State<DaemonState>, Query(params): Params, body: Bytes) -> Response {
    run(async {
        let uid = identifier_from(&params, &body)?;
        state.decode_from_identifier(&uid).await
    })
    .await
}

async fn fetch_manifest(State(state): State<DaemonState>, Query(params): Params, body: Bytes) -> Response {
    run(async {
        let uid = identifier_from(&params, &body)?;
        state.manifest(&uid).await
    })
    .await
}

async fn fetch_identifier(State(state): State<DaemonState>, Query(params): Params, body: Bytes) -> Response {
    run(async {
        let uid = identifier_from(&params, &body)?;
        state.identifier_exists(&uid).await
    })
    .await
}

async fn fetch_readme(State(state): State<DaemonState>, Query(params): Params, body: Bytes) -> Response {
    run(async {
        let uid = identifier_from(&params, &body)?;
        state.readme(&uid, param(&params, "language")).await
    })
    .await
}

// ---- listing ------------------------------------------------------------------------------------------------------

async fn list(State(state): State<DaemonState>, Path(tenant): Path<String>, Query(params): Params) -> Response {
    run(async {
        let (page, page_size) = paging(&params)?;
        state.list(&tenant, page, page_size).await
    })
    .await
}

async fn category_list(
    State(state): State<DaemonState>,
    Path((tenant, category)): Path<(String, String)>,
    Query(params): Params,
) -> Response {
    run(async {
        const CATEGORIES: [&str; 6] = ["tool", "model", "extension", "agent-strategy", "datasource", "trigger"];
        if !CATEGORIES.contains(&category.as_str()) {
            return Err(DaemonError::NotFound(format!(
                "unknown plugin category {category:?}; expected one of {}",
                CATEGORIES.join(", ")
            )));
        }
        let (page, page_size) = paging(&params)?;
        let tags: Vec<String> = param(&params, "tags")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        state
            .category_list(&tenant, &category, page, page_size, param(&params, "query"), &tags)
            .await
    })
    .await
}

async fn installation_ids(
    State(state): State<DaemonState>,
    Path(tenant): Path<String>,
    Query(params): Params,
) -> Response {
    reply(
        state
            .installation_ids(&tenant, params.get("category").map(String::as_str))
            .await,
    )
}

#[derive(Deserialize)]
struct BatchRequest {
    plugin_ids: Vec<String>,
}

async fn fetch_batch(State(state): State<DaemonState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    run(async {
        let request: BatchRequest = json_body(&body)?;
        if request.plugin_ids.len() > 256 {
            return Err(bad("at most 256 plugin_ids per request"));
        }
        state.fetch_batch(&tenant, &request.plugin_ids).await
    })
    .await
}

#[derive(Deserialize)]
struct MissingRequest {
    plugin_unique_identifiers: Vec<String>,
}

async fn missing(State(state): State<DaemonState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    run(async {
        let request: MissingRequest = json_body(&body)?;
        if request.plugin_unique_identifiers.len() > 256 {
            return Err(bad("at most 256 plugin_unique_identifiers per request"));
        }
        state.missing(&tenant, &request.plugin_unique_identifiers).await
    })
    .await
}

fn providers_of(
    category: ProviderCategory,
) -> impl Fn(State<DaemonState>, Path<String>, Params) -> futures::future::BoxFuture<'static, Response>
+ Clone
+ Send
+ Sync
+ 'static {
    move |State(state), Path(tenant), Query(params)| {
        Box::pin(async move {
            run(async {
                let (page, page_size) = paging(&params)?;
                state.providers(category, &tenant, page, page_size).await
            })
            .await
        })
    }
}

fn provider_of(
    category: ProviderCategory,
) -> impl Fn(State<DaemonState>, Path<String>, Params) -> futures::future::BoxFuture<'static, Response>
+ Clone
+ Send
+ Sync
+ 'static {
    move |State(state), Path(tenant), Query(params)| {
        Box::pin(async move {
            run(async {
                let plugin_id = required(&params, "plugin_id")?;
                let provider = required(&params, "provider")?;
                state.provider(category, &tenant, plugin_id, provider).await
            })
            .await
        })
    }
}

#[derive(Deserialize)]
struct ProviderId {
    plugin_id: String,
    provider_name: String,
}

#[derive(Deserialize)]
struct ExistenceRequest {
    provider_ids: Vec<ProviderId>,
}

async fn check_existence(State(state): State<DaemonState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    run(async {
        let request: ExistenceRequest = json_body(&body)?;
        let ids: Vec<(String, String)> = request
            .provider_ids
            .into_iter()
            .map(|p| (p.plugin_id, p.provider_name))
            .collect();
        state.tools_exist(&tenant, &ids).await
    })
    .await
}

async fn model_bindings(State(state): State<DaemonState>, Path(tenant): Path<String>) -> Response {
    reply(state.model_bindings(&tenant).await)
}

// ---- assets and dispatch ------------------------------------------------------------------------------------------

fn raw(bytes: Vec<u8>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    (headers, bytes).into_response()
}

async fn asset(State(state): State<DaemonState>, Path((_tenant, id)): Path<(String, String)>) -> Response {
    match state.asset(&id).await {
        Ok(bytes) => raw(bytes),
        Err(e) => fail(&e),
    }
}

async fn extract_asset(State(state): State<DaemonState>, Query(params): Params) -> Response {
    let result = async {
        let uid = required(&params, "plugin_unique_identifier")?;
        let path = required(&params, "file_path")?;
        state.extract_asset(uid, path).await
    }
    .await;
    match result {
        Ok(bytes) => raw(bytes),
        Err(e) => fail(&e),
    }
}

// ---- endpoints ----------------------------------------------------------------------------------------------------

/// `page` ≥ 1 and `page_size` in 1..=100, as the original validates the endpoint listings.
fn endpoint_paging(params: &HashMap<String, String>) -> Result<(i64, i64), DaemonError> {
    let (page, page_size) = paging(params)?;
    if page_size > 100 {
        return Err(bad("page_size must be between 1 and 100"));
    }
    Ok((page, page_size))
}

fn required_field<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, DaemonError> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad(format!("{name} is required")))
}

#[derive(Deserialize)]
struct SetupEndpointRequest {
    plugin_unique_identifier: Option<String>,
    user_id: Option<String>,
    #[serde(default)]
    settings: Option<serde_json::Map<String, Value>>,
    name: Option<String>,
}

async fn setup_endpoint(State(state): State<DaemonState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    run(async {
        let request: SetupEndpointRequest = json_body(&body)?;
        let uid = required_field(&request.plugin_unique_identifier, "plugin_unique_identifier")?;
        let user_id = required_field(&request.user_id, "user_id")?;
        let name = required_field(&request.name, "name")?;
        state
            .setup_endpoint(&tenant, user_id, uid, name, request.settings.unwrap_or_default())
            .await
            .map(|_| true)
    })
    .await
}

#[derive(Deserialize)]
struct UpdateEndpointRequest {
    endpoint_id: Option<String>,
    user_id: Option<String>,
    #[serde(default)]
    settings: Option<serde_json::Map<String, Value>>,
    name: Option<String>,
}

async fn update_endpoint(State(state): State<DaemonState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    run(async {
        let request: UpdateEndpointRequest = json_body(&body)?;
        let endpoint_id = required_field(&request.endpoint_id, "endpoint_id")?;
        required_field(&request.user_id, "user_id")?;
        let name = required_field(&request.name, "name")?;
        state
            .update_endpoint(&tenant, endpoint_id, name, request.settings.unwrap_or_default())
            .await
            .map(|()| true)
    })
    .await
}

#[derive(Deserialize)]
struct EndpointIdRequest {
    endpoint_id: Option<String>,
}

async fn remove_endpoint(State(state): State<DaemonState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    run(async {
        let request: EndpointIdRequest = json_body(&body)?;
        let endpoint_id = required_field(&request.endpoint_id, "endpoint_id")?;
        state.remove_endpoint(&tenant, endpoint_id).await.map(|()| true)
    })
    .await
}

async fn enable_endpoint(State(state): State<DaemonState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    run(async {
        let request: EndpointIdRequest = json_body(&body)?;
        let endpoint_id = required_field(&request.endpoint_id, "endpoint_id")?;
        state
            .set_endpoint_enabled(&tenant, endpoint_id, true)
            .await
            .map(|()| true)
    })
    .await
}

async fn disable_endpoint(State(state): State<DaemonState>, Path(tenant): Path<String>, body: Bytes) -> Response {
    run(async {
        let request: EndpointIdRequest = json_body(&body)?;
        let endpoint_id = required_field(&request.endpoint_id, "endpoint_id")?;
        state
            .set_endpoint_enabled(&tenant, endpoint_id, false)
            .await
            .map(|()| true)
    })
    .await
}

async fn list_endpoints(
    State(state): State<DaemonState>,
    Path(tenant): Path<String>,
    Query(params): Params,
) -> Response {
    run(async {
        let (page, page_size) = endpoint_paging(&params)?;
        state.list_endpoints(&tenant, None, page, page_size).await
    })
    .await
}

async fn list_plugin_endpoints(
    State(state): State<DaemonState>,
    Path(tenant): Path<String>,
    Query(params): Params,
) -> Response {
    run(async {
        let plugin_id = required(&params, "plugin_id")?;
        let (page, page_size) = endpoint_paging(&params)?;
        state.list_endpoints(&tenant, Some(plugin_id), page, page_size).await
    })
    .await
}

/// `GET /v2/invoke/extract` (`X-Plugin-Unique-Identifier`): the original's `ExtractPluginSchema`,
/// `{unique_identifier, manifest, verification}` of an uploaded package.
async fn extract_plugin_schema(State(state): State<DaemonState>, headers: HeaderMap) -> Response {
    run(async {
        let uid = headers
            .get("X-Plugin-Unique-Identifier")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad("X-Plugin-Unique-Identifier header is required"))?;
        state.decode_from_identifier(uid).await
    })
    .await
}
