//! OAuth routes of tool providers, at Dify's paths:
//! - `GET /console/api/oauth/plugin/{provider}/tool/authorization-url` (tenant key) → `{"authorization_url"}` and
//!   the `context_id` cookie (HttpOnly, SameSite=Lax, 5 minutes);
//! - `GET /console/api/oauth/plugin/{provider}/tool/callback?code&state` (no key; the cookie identifies the
//!   flow) → stores an `oauth2` credential and redirects to `{CONSOLE_WEB_URL}/oauth-callback` (with `?error=…`
//!   when the flow failed);
//! - `POST|GET|DELETE /console/api/workspaces/current/tool-provider/builtin/{provider}/oauth/custom-client` and
//!   `GET …/oauth/client-schema`.
//!
//! `{provider}` may contain slashes (`org/plugin/provider`), as Dify's `<path:provider>`; such plugin providers are
//! authorized by the plugin (the callback's request goes to the plugin as it came, see [`crate::oauth`]).

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::console::{ProviderId, builtin};
use crate::auth::TenantCaller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::oauth::CONTEXT_TTL;
use crate::state::AppState;

/// Routes nested under `/console/api`.
pub fn router() -> axum::Router<AppState> {
    let mut router = axum::Router::new().route("/oauth/plugin/{*rest}", get(oauth_plugin));
    for prefix in super::console::BUILTIN_PROVIDER_PREFIXES {
        router = router
            .route(
                &format!("{prefix}/oauth/custom-client"),
                get(get_custom_client)
                    .post(save_custom_client)
                    .delete(delete_custom_client),
            )
            .route(&format!("{prefix}/oauth/client-schema"), get(client_schema));
    }
    router
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn oauth_plugin(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    Query(query): Query<CallbackQuery>,
    mut parts: Parts,
) -> Response {
    let headers = parts.headers.clone();
    if let Some(provider_id) = rest.strip_suffix("/tool/authorization-url") {
        // The authorization URL needs a tenant key; the callback is reached by the browser without one.
        let caller = match TenantCaller::from_request_parts(&mut parts, &state).await {
            Ok(caller) => caller,
            Err(e) => return e.into_response(),
        };
        return authorization_url(&state, &caller, provider_id)
            .await
            .unwrap_or_else(|e| e.into_response());
    }
    if let Some(provider_id) = rest.strip_suffix("/tool/callback") {
        if crate::oauth::is_plugin_provider(provider_id) {
            // The full path, as the browser requested it (nesting strips `/console/api` from `parts.uri`).
            let uri = parts
                .extensions
                .get::<axum::extract::OriginalUri>()
                .map_or(&parts.uri, |original| &original.0);
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            let raw = crate::oauth::raw_http_request(parts.method.as_str(), path, &headers, &[]);
            return plugin_callback(&state, provider_id, &headers, &raw).await;
        }
        return callback(&state, provider_id, &headers, query).await;
    }
    ApiError::not_found(format!(
        "no OAuth route /oauth/plugin/{rest}; use …/tool/authorization-url or …/tool/callback"
    ))
    .into_response()
}

async fn authorization_url(state: &AppState, caller: &TenantCaller, provider_id: &str) -> Result<Response, ApiError> {
    if crate::oauth::is_plugin_provider(provider_id) && state.daemon.as_ref().and_then(|d| d.runtime()).is_none() {
        return Err(crate::oauth::plugin_runtime_missing(provider_id));
    }
    let provider = builtin(state, &caller.tenant_id, provider_id).await?;
    let (context_id, url) = state
        .oauth
        .authorization_url(&caller.tenant_id, &caller.user_id, provider.as_ref())
        .await?;
    let cookie = format!(
        "context_id={context_id}; HttpOnly; SameSite=Lax; Path=/; Max-Age={}",
        CONTEXT_TTL.as_secs()
    );
    let mut response = Json(json!({"authorization_url": url})).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Where the callback sends the browser: `{CONSOLE_WEB_URL}/oauth-callback`, with `?error=…` on failure.
fn callback_redirect(state: &AppState, provider_id: &str, error: Option<String>) -> Response {
    let web = format!("{}/oauth-callback", state.config.console_web_url);
    match error {
        None => Redirect::to(&web).into_response(),
        Some(message) => {
            tracing::info!(provider = %provider_id, %message, "OAuth callback failed");
            let encoded: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
            Redirect::to(&format!("{web}?error={encoded}")).into_response()
        }
    }
}

/// The callback of a plugin provider: the plugin reads the request (code, state, errors) itself.
async fn plugin_callback(state: &AppState, provider_id: &str, headers: &HeaderMap, raw: &[u8]) -> Response {
    let fail = |message: String| callback_redirect(state, provider_id, Some(message));
    let Some(context_id) = cookie_value(headers, "context_id") else {
        return fail("Invalid context_id: the context_id cookie is missing".into());
    };
    let lookup_state = state.clone();
    let exchanged = state
        .oauth
        .plugin_exchange(context_id, provider_id, raw, async move |tenant_id: &str, id: &str| {
            builtin(&lookup_state, tenant_id, id).await
        })
        .await;
    let (tenant_id, user_id, provider, tokens) = match exchanged {
        Ok(done) => done,
        Err(e) => return fail(e.message),
    };
    match state
        .credentials
        .add_oauth(
            &tenant_id,
            &user_id,
            provider.as_ref(),
            tokens.credentials,
            tokens.expires_at,
        )
        .await
    {
        Ok(_) => callback_redirect(state, provider_id, None),
        Err(e) => fail(e.message),
    }
}

async fn callback(state: &AppState, provider_id: &str, headers: &HeaderMap, query: CallbackQuery) -> Response {
    let fail = |message: String| callback_redirect(state, provider_id, Some(message));
    let Some(context_id) = cookie_value(headers, "context_id") else {
        return fail("Invalid context_id: the context_id cookie is missing".into());
    };
    if query.state.as_deref().is_some_and(|s| s != context_id) {
        return fail("the state parameter does not match this browser's authorization".into());
    }
    if let Some(error) = query.error {
        return fail(format!("the authorization server refused: {error}"));
    }
    let Some(code) = query.code else {
        return fail("the callback has no code".into());
    };
    let lookup_state = state.clone();
    let exchanged = state
        .oauth
        .exchange(context_id, &code, async move |tenant_id: &str, id: &str| {
            builtin(&lookup_state, tenant_id, id).await
        })
        .await;
    let (tenant_id, user_id, provider, tokens) = match exchanged {
        Ok(done) => done,
        Err(e) => return fail(e.message),
    };
    if provider.id() != provider_id {
        return fail("the callback's provider does not match the authorization".into());
    }
    match state
        .credentials
        .add_oauth(
            &tenant_id,
            &user_id,
            provider.as_ref(),
            tokens.credentials,
            tokens.expires_at,
        )
        .await
    {
        Ok(_) => callback_redirect(state, provider_id, None),
        Err(e) => fail(e.message),
    }
}

#[derive(Debug, Deserialize)]
struct CustomClientBody {
    #[serde(default)]
    client_params: Option<Map<String, Value>>,
    #[serde(default)]
    enable_oauth_custom_client: Option<bool>,
}

async fn save_custom_client(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(provider_id): ProviderId,
    ApiJson(body): ApiJson<CustomClientBody>,
) -> Result<Json<Value>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &provider_id).await?;
    // Dify: `enable_oauth_custom_client` defaults to true when params are saved.
    let enabled = match (&body.client_params, body.enable_oauth_custom_client) {
        (_, Some(enabled)) => Some(enabled),
        (Some(_), None) => Some(true),
        (None, None) => None,
    };
    state
        .oauth
        .save_tenant_client(&caller.tenant_id, provider.as_ref(), body.client_params, enabled)
        .await?;
    Ok(Json(json!({"result": "success"})))
}

async fn get_custom_client(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(provider_id): ProviderId,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &provider_id).await?;
    Ok(Json(
        state
            .oauth
            .tenant_client_masked(&caller.tenant_id, provider.as_ref())
            .await?,
    ))
}

async fn delete_custom_client(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(provider_id): ProviderId,
) -> Result<Json<Value>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &provider_id).await?;
    state
        .oauth
        .delete_tenant_client(&caller.tenant_id, provider.as_ref())
        .await?;
    Ok(Json(json!({"result": "success"})))
}

async fn client_schema(
    State(state): State<AppState>,
    caller: TenantCaller,
    ProviderId(provider_id): ProviderId,
) -> Result<Json<crate::oauth::ClientSchemaView>, ApiError> {
    let provider = builtin(&state, &caller.tenant_id, &provider_id).await?;
    Ok(Json(
        state
            .oauth
            .client_schema_view(&caller.tenant_id, provider.as_ref())
            .await?,
    ))
}
