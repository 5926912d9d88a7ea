//! [`ApiTool`]: invoking one operation over HTTP through the SSRF-safe client.
//!
//! Request assembly:
//! - path parameters are serialised by their `style` (simple, label, matrix) and percent-encoded;
//! - query parameters honour `style` (form, spaceDelimited, pipeDelimited, deepObject) and `explode`;
//! - header parameters become headers, cookie parameters one `Cookie` header;
//! - the body uses the operation's media type: JSON, `x-www-form-urlencoded`, `multipart/form-data` (with files),
//!   `text/*`, or raw bytes (`application/octet-stream` and other binary types). Values are coerced to the
//!   schema's type (`"3"` → `3` for an integer property, a JSON string → an object for an object property);
//! - auth comes from the credentials (`auth_type` none / `api_key_header` / `api_key_query`).
//!
//! File values (parameters of type `file`/`files`, binary bodies) are either `{"url": "https://…"}` (downloaded
//! through the same SSRF-safe client; `remote_url` is accepted too, as is a bare http(s) URL string) or
//! `{"blob": "<base64>", "filename": "a.png", "mime_type": "image/png"}`; `filename` and `mime_type` are
//! optional in both forms.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use toolplane_core::{
    I18nObject, MessageStream, Tool, ToolDescription, ToolEntity, ToolError, ToolIdentity, ToolInvokeMessage,
    ToolRuntime,
};
use toolplane_net::{Method, NetConfig, SafeClient, header};

use crate::response::response_messages;
use crate::tools::{ApiToolBundle, ApiToolParameter, ParameterLocation};
use crate::util::{scalar_string, str_field};

/// Setting for the connect timeout of API tools, in seconds (Dify's name and default 10).
pub const ENV_CONNECT_TIMEOUT: &str = "API_TOOL_DEFAULT_CONNECT_TIMEOUT";
/// Setting for the read timeout of API tools, in seconds (Dify's name and default 60).
pub const ENV_READ_TIMEOUT: &str = "API_TOOL_DEFAULT_READ_TIMEOUT";

/// Connect and read timeouts of an API-tool provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiToolTimeouts {
    pub connect: Duration,
    pub read: Duration,
}

impl Default for ApiToolTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(60),
        }
    }
}

impl ApiToolTimeouts {
    /// Defaults overridden by [`ENV_CONNECT_TIMEOUT`] and [`ENV_READ_TIMEOUT`] (positive seconds; bad values are
    /// ignored).
    pub fn from_env() -> Self {
        let read = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
        };
        let defaults = Self::default();
        Self {
            connect: read(ENV_CONNECT_TIMEOUT).unwrap_or(defaults.connect),
            read: read(ENV_READ_TIMEOUT).unwrap_or(defaults.read),
        }
    }

    /// `base` with these timeouts; the total timeout is raised to at least connect + read. Build the
    /// [`SafeClient`] given to [`ApiTool::new`] from it.
    pub fn apply(&self, mut base: NetConfig) -> NetConfig {
        base.connect_timeout = self.connect;
        base.read_timeout = self.read;
        base.total_timeout = base.total_timeout.max(self.connect + self.read);
        base
    }
}

/// The [`ToolEntity`] of a bundle: name = `operation_id` (or `default_tool`), descriptions = `summary`.
pub fn tool_entity(bundle: &ApiToolBundle, provider_id: &str, author: &str) -> ToolEntity {
    let summary = bundle.summary.clone().unwrap_or_default();
    ToolEntity {
        identity: ToolIdentity {
            author: author.to_owned(),
            name: bundle.name().to_owned(),
            label: I18nObject::new(bundle.name()),
            provider: provider_id.to_owned(),
            icon: None,
        },
        parameters: bundle.tool_parameters(),
        description: Some(ToolDescription {
            human: I18nObject::new(summary.clone()),
            llm: summary,
        }),
        output_schema: Map::new(),
        has_runtime_parameters: false,
    }
}

/// One operation of an API provider as a [`Tool`].
#[derive(Debug, Clone)]
pub struct ApiTool {
    entity: ToolEntity,
    bundle: ApiToolBundle,
    credentials: Map<String, Value>,
    client: SafeClient,
}

impl ApiTool {
    /// A tool for `bundle` of provider `provider_id`, authenticating with the decrypted `credentials` and sending
    /// through `client` (build it with [`ApiToolTimeouts::apply`] for per-provider timeouts). When `credentials`
    /// is empty, the runtime's credentials of each invocation are used instead.
    pub fn new(bundle: ApiToolBundle, provider_id: &str, credentials: Map<String, Value>, client: SafeClient) -> Self {
        Self {
            entity: tool_entity(&bundle, provider_id, &bundle.author),
            bundle,
            credentials,
            client,
        }
    }

    /// Sets the author shown in the tool's identity.
    pub fn with_author(mut self, author: &str) -> Self {
        author.clone_into(&mut self.entity.identity.author);
        self
    }

    /// The bundle this tool runs.
    pub fn bundle(&self) -> &ApiToolBundle {
        &self.bundle
    }

    /// Performs the HTTP call with `parameters` (validated or not) and returns its messages; what Dify's
    /// `test/pre` route runs.
    pub async fn call(&self, parameters: &Map<String, Value>) -> Result<Vec<ToolInvokeMessage>, ToolError> {
        self.call_with(&self.credentials, parameters).await
    }

    async fn call_with(
        &self,
        credentials: &Map<String, Value>,
        parameters: &Map<String, Value>,
    ) -> Result<Vec<ToolInvokeMessage>, ToolError> {
        let request = RequestBuilder::new(&self.bundle, &self.client)
            .build(credentials, parameters)
            .await?;
        let method = Method::from_bytes(self.bundle.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| ToolError::Invoke(format!("invalid http method {}", self.bundle.method)))?;
        let mut builder = self.client.request(method, request.url.as_str());
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder.send().await.map_err(|e| ToolError::Invoke(e.to_string()))?;
        response_messages(&self.client, response).await
    }
}

#[async_trait]
impl Tool for ApiTool {
    fn entity(&self) -> &ToolEntity {
        &self.entity
    }

    async fn invoke(
        &self,
        runtime: ToolRuntime,
        parameters: Map<String, Value>,
        cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let credentials = if self.credentials.is_empty() {
            &runtime.credentials
        } else {
            &self.credentials
        };
        let work = self.call_with(credentials, &parameters);
        let messages = cancel.run_until_cancelled(work).await.ok_or(ToolError::Cancelled)??;
        Ok(futures::stream::iter(messages.into_iter().map(Ok)).boxed())
    }
}

/// A request ready to send.
struct Prepared {
    url: url::Url,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

/// A file value, resolved to bytes.
struct FilePart {
    bytes: Vec<u8>,
    filename: String,
    mime_type: String,
}

struct RequestBuilder<'b> {
    bundle: &'b ApiToolBundle,
    client: &'b SafeClient,
    /// Resolved parameter objects of the operation, for `style`/`explode`/`schema`.
    specs: Vec<&'b Map<String, Value>>,
    /// (media type, schema) of the request body.
    body: Option<(&'b str, &'b Value)>,
}

impl<'b> RequestBuilder<'b> {
    fn new(bundle: &'b ApiToolBundle, client: &'b SafeClient) -> Self {
        let specs = bundle
            .openapi
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .collect();
        let body = bundle
            .openapi
            .get("requestBody")
            .and_then(|b| b.get("content"))
            .and_then(Value::as_object)
            .and_then(|c| c.iter().next())
            .map(|(media, m)| (media.as_str(), m.get("schema").unwrap_or(&Value::Null)));
        Self {
            bundle,
            client,
            specs,
            body,
        }
    }

    fn spec(&self, name: &str, location: &str) -> Option<&'b Map<String, Value>> {
        self.specs
            .iter()
            .copied()
            .find(|s| str_field(s, "name") == Some(name) && str_field(s, "in") == Some(location))
    }

    /// The location of a parameter stored without `in` (bundles written by Dify).
    fn infer_location(&self, p: &ApiToolParameter) -> ParameterLocation {
        if let Some(location) = p.location {
            return location;
        }
        let name = p.wire_name();
        if let Some(spec) = self.specs.iter().find(|s| str_field(s, "name") == Some(name)) {
            match str_field(spec, "in") {
                Some("path") => return ParameterLocation::Path,
                Some("header") => return ParameterLocation::Header,
                Some("cookie") => return ParameterLocation::Cookie,
                _ => return ParameterLocation::Query,
            }
        }
        if self.body.is_some_and(|(_, s)| {
            s.pointer(&format!("/properties/{}", name.replace('~', "~0").replace('/', "~1")))
                .is_some()
        }) {
            return ParameterLocation::Body;
        }
        ParameterLocation::Query
    }

    async fn build(
        &self,
        credentials: &Map<String, Value>,
        params: &Map<String, Value>,
    ) -> Result<Prepared, ToolError> {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut query: Vec<(String, String)> = Vec::new();
        let mut cookies: Vec<String> = Vec::new();
        let mut body_fields: Map<String, Value> = Map::new();
        let mut whole_body: Option<Value> = None;
        let mut url_text = self.bundle.server_url.clone();

        apply_auth(credentials, &mut headers, &mut query)?;

        for p in self.bundle.parameters.iter().flatten() {
            let name = &p.parameter.name;
            let value = params
                .get(name)
                .filter(|v| !v.is_null())
                .cloned()
                .or_else(|| p.parameter.default.clone());
            let Some(value) = value else {
                if p.parameter.required {
                    return Err(ToolError::param(format!("Missing required parameter {name}")));
                }
                continue;
            };
            let wire = p.wire_name();
            match self.infer_location(p) {
                ParameterLocation::Path => {
                    let spec = self.spec(wire, "path");
                    let text = serialize_path(wire, &value, spec);
                    url_text = url_text.replace(&format!("{{{wire}}}"), &text);
                }
                ParameterLocation::Query => serialize_query(wire, &value, self.spec(wire, "query"), &mut query),
                ParameterLocation::Header => headers.push((wire.to_owned(), simple_text(&value, false))),
                ParameterLocation::Cookie => {
                    cookies.push(format!(
                        "{}={}",
                        wire,
                        encode_component(&simple_text(&value, false), b"")
                    ));
                }
                ParameterLocation::Body => {
                    body_fields.insert(wire.to_owned(), value);
                }
                ParameterLocation::RequestBody => whole_body = Some(value),
            }
        }

        let mut url = url::Url::parse(&url_text).map_err(|e| {
            ToolError::Invoke(format!(
                "the tool's URL {url_text:?} is not valid: {e}; check the spec's servers"
            ))
        })?;
        if !query.is_empty() {
            let extra: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{}={}", encode_component(k, b"[]"), encode_component(v, b",|")))
                .collect();
            let joined = match url.query().filter(|q| !q.is_empty()) {
                Some(existing) => format!("{existing}&{}", extra.join("&")),
                None => extra.join("&"),
            };
            url.set_query(Some(&joined));
        }
        if !cookies.is_empty() {
            headers.push(("Cookie".to_owned(), cookies.join("; ")));
        }
        let body = match self.body {
            Some((media, schema)) if !body_fields.is_empty() || whole_body.is_some() => {
                let (content_type, bytes) = self.encode_body(media, schema, body_fields, whole_body).await?;
                headers.push((header::CONTENT_TYPE.as_str().to_owned(), content_type));
                Some(bytes)
            }
            _ => None,
        };
        Ok(Prepared { url, headers, body })
    }

    async fn encode_body(
        &self,
        media: &str,
        schema: &Value,
        fields: Map<String, Value>,
        whole: Option<Value>,
    ) -> Result<(String, Vec<u8>), ToolError> {
        let essence = media.split(';').next().unwrap_or(media).trim().to_ascii_lowercase();
        let coerced_fields = || -> Map<String, Value> {
            fields
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        coerce(v.clone(), schema.pointer(&format!("/properties/{}", pointer_token(k)))),
                    )
                })
                .collect()
        };
        let payload = |whole: Option<Value>| match whole {
            Some(v) => coerce(v, Some(schema)),
            None => Value::Object(coerced_fields()),
        };
        if essence.contains("json") || essence == "*/*" || essence == "application/*" {
            let ct = if essence.contains("json") {
                media.to_owned()
            } else {
                "application/json".to_owned()
            };
            let bytes = serde_json::to_vec(&payload(whole)).map_err(|e| ToolError::Internal(e.to_string()))?;
            return Ok((ct, bytes));
        }
        if essence == "application/x-www-form-urlencoded" {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            let map = match payload(whole) {
                Value::Object(map) => map,
                other => Map::from_iter([("body".to_owned(), other)]),
            };
            for (k, v) in &map {
                match v {
                    Value::Array(items) => {
                        for item in items {
                            form.append_pair(k, &simple_text(item, false));
                        }
                    }
                    other => {
                        form.append_pair(k, &scalar_or_json(other));
                    }
                }
            }
            return Ok((media.to_owned(), form.finish().into_bytes()));
        }
        if essence == "multipart/form-data" {
            return self.multipart(schema, fields, whole).await;
        }
        if essence.starts_with("text/") || essence.contains("xml") {
            let text = match payload(whole) {
                Value::String(s) => s,
                other => other.to_string(),
            };
            return Ok((media.to_owned(), text.into_bytes()));
        }
        // Binary media types: the whole body is a file (or raw text).
        let value = whole
            .or_else(|| fields.into_iter().next().map(|(_, v)| v))
            .unwrap_or(Value::Null);
        let bytes = match &value {
            Value::String(s) if !is_http_url(s) => s.clone().into_bytes(),
            other => self.file(other, "body").await?.bytes,
        };
        Ok((media.to_owned(), bytes))
    }

    async fn multipart(
        &self,
        schema: &Value,
        fields: Map<String, Value>,
        whole: Option<Value>,
    ) -> Result<(String, Vec<u8>), ToolError> {
        let boundary = format!("toolplane-{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
        let mut out: Vec<u8> = Vec::new();
        let fields = match whole {
            Some(Value::Object(map)) => map,
            Some(other) => Map::from_iter([("body".to_owned(), other)]),
            None => fields,
        };
        for (name, value) in fields {
            let prop = schema.pointer(&format!("/properties/{}", pointer_token(&name)));
            let is_file = prop.is_some_and(|p| {
                p.get("format") == Some(&Value::String("binary".into()))
                    || p.pointer("/items/format") == Some(&Value::String("binary".into()))
            });
            if is_file {
                let items = match value {
                    Value::Array(items) => items,
                    other => vec![other],
                };
                for item in items {
                    let file = self.file(&item, &name).await?;
                    write_part(
                        &mut out,
                        &boundary,
                        &name,
                        Some((&file.filename, &file.mime_type)),
                        &file.bytes,
                    );
                }
                continue;
            }
            match coerce(value, prop) {
                Value::Array(items) => {
                    for item in items {
                        write_part(&mut out, &boundary, &name, None, scalar_or_json(&item).as_bytes());
                    }
                }
                Value::Object(map) => {
                    let json = Value::Object(map).to_string();
                    write_part(
                        &mut out,
                        &boundary,
                        &name,
                        Some(("", "application/json")),
                        json.as_bytes(),
                    );
                }
                other => write_part(&mut out, &boundary, &name, None, scalar_or_json(&other).as_bytes()),
            }
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        Ok((format!("multipart/form-data; boundary={boundary}"), out))
    }

    /// Resolves a file value (`{"url"}`, `{"remote_url"}`, a URL string or `{"blob"}`) to bytes.
    async fn file(&self, value: &Value, name: &str) -> Result<FilePart, ToolError> {
        let bad = || {
            ToolError::param(format!(
                "parameter {name:?} expects a file: give {{\"url\": \"https://…\"}} or {{\"blob\": \"<base64>\", \
                 \"filename\": \"…\", \"mime_type\": \"…\"}}"
            ))
        };
        let (url, blob, filename, mime) = match value {
            Value::String(s) if is_http_url(s) => (Some(s.as_str()), None, None, None),
            Value::Object(map) => (
                str_field(map, "url").or_else(|| str_field(map, "remote_url")),
                str_field(map, "blob"),
                str_field(map, "filename"),
                str_field(map, "mime_type"),
            ),
            _ => return Err(bad()),
        };
        if let Some(blob) = blob {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(blob.trim())
                .map_err(|e| ToolError::param(format!("parameter {name:?}: the blob is not valid base64: {e}")))?;
            return Ok(FilePart {
                bytes,
                filename: filename.unwrap_or(name).to_owned(),
                mime_type: mime.unwrap_or("application/octet-stream").to_owned(),
            });
        }
        let Some(url) = url else { return Err(bad()) };
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| ToolError::Invoke(format!("cannot download the file for parameter {name:?}: {e}")))?;
        if !response.status().is_success() {
            return Err(ToolError::Invoke(format!(
                "cannot download the file for parameter {name:?}: the server answered with status {}",
                response.status().as_u16()
            )));
        }
        let served_mime = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let last_segment = response
            .url()
            .path_segments()
            .and_then(|mut s| s.next_back().map(str::to_owned))
            .filter(|s| !s.is_empty());
        let bytes = self
            .client
            .read_body(response)
            .await
            .map_err(|e| ToolError::Invoke(format!("cannot download the file for parameter {name:?}: {e}")))?;
        Ok(FilePart {
            bytes: bytes.to_vec(),
            filename: filename
                .map(str::to_owned)
                .or(last_segment)
                .unwrap_or_else(|| name.to_owned()),
            mime_type: mime
                .map(str::to_owned)
                .or(served_mime)
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
        })
    }
}

/// Adds the auth header or query parameter the credentials ask for (Dify's rules).
fn apply_auth(
    credentials: &Map<String, Value>,
    headers: &mut Vec<(String, String)>,
    query: &mut Vec<(String, String)>,
) -> Result<(), ToolError> {
    let Some(auth_type) = credentials.get("auth_type").and_then(Value::as_str) else {
        return Err(ToolError::CredentialValidation("Missing auth_type".into()));
    };
    let value = || {
        credentials
            .get("api_key_value")
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    match auth_type.trim().to_ascii_lowercase().as_str() {
        "none" => {}
        "api_key_header" | "api_key" => {
            let Some(key) = credentials.get("api_key_value").and_then(Value::as_str) else {
                return Err(ToolError::CredentialValidation("Missing api_key_value".into()));
            };
            let name = credentials
                .get("api_key_header")
                .and_then(Value::as_str)
                .filter(|h| !h.trim().is_empty())
                .unwrap_or("Authorization");
            let header_value = match credentials.get("api_key_header_prefix").and_then(Value::as_str) {
                Some("basic") if !key.is_empty() => format!("Basic {key}"),
                Some("bearer") if !key.is_empty() => format!("Bearer {key}"),
                _ => key.to_owned(),
            };
            headers.push((name.trim().to_owned(), header_value));
        }
        "api_key_query" => {
            let param = credentials
                .get("api_key_query_param")
                .and_then(Value::as_str)
                .filter(|p| !p.trim().is_empty())
                .unwrap_or("key");
            if !value().is_empty() {
                query.push((param.to_owned(), value().to_owned()));
            }
        }
        other => {
            return Err(ToolError::CredentialValidation(format!(
                "invalid mode value '{other}', expected one of: none, api_key_header, api_key_query"
            )));
        }
    }
    Ok(())
}

fn is_http_url(s: &str) -> bool {
    let lower = s.trim_start().get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// A scalar as text, an array or object as compact JSON.
fn scalar_or_json(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) => value.to_string(),
        other => scalar_string(other),
    }
}

/// `simple` style: arrays `a,b`; objects `k,v,k,v` (or `k=v,k=v` when exploded).
fn simple_text(value: &Value, explode: bool) -> String {
    match value {
        Value::Array(items) => items.iter().map(scalar_or_json).collect::<Vec<_>>().join(","),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                if explode {
                    format!("{k}={}", scalar_or_json(v))
                } else {
                    format!("{k},{}", scalar_or_json(v))
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        other => scalar_string(other),
    }
}

fn style_of<'a>(spec: Option<&'a Map<String, Value>>, default: &'a str) -> (&'a str, bool) {
    let style = spec.and_then(|s| str_field(s, "style")).unwrap_or(default);
    let explode = spec
        .and_then(|s| s.get("explode"))
        .and_then(Value::as_bool)
        .unwrap_or(style == "form");
    (style, explode)
}

/// Serialises and percent-encodes a path parameter.
fn serialize_path(name: &str, value: &Value, spec: Option<&Map<String, Value>>) -> String {
    let (style, explode) = style_of(spec, "simple");
    let enc = |s: &str| encode_component(s, b"");
    let items: Vec<String> = match value {
        Value::Array(items) => items.iter().map(|v| enc(&scalar_or_json(v))).collect(),
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                if explode {
                    vec![format!("{}={}", enc(k), enc(&scalar_or_json(v)))]
                } else {
                    vec![enc(k), enc(&scalar_or_json(v))]
                }
            })
            .collect(),
        other => vec![enc(&scalar_string(other))],
    };
    match style {
        "label" => {
            let sep = if explode { "." } else { "," };
            format!(".{}", items.join(sep))
        }
        "matrix" => {
            if explode && value.is_array() {
                items.iter().map(|i| format!(";{name}={i}")).collect()
            } else {
                format!(";{name}={}", items.join(","))
            }
        }
        _ => items.join(","),
    }
}

/// Adds the query pairs of one parameter by its style and explode.
fn serialize_query(name: &str, value: &Value, spec: Option<&Map<String, Value>>, out: &mut Vec<(String, String)>) {
    let (style, explode) = style_of(spec, "form");
    match value {
        Value::Array(items) => {
            let texts: Vec<String> = items.iter().map(scalar_or_json).collect();
            match style {
                "spaceDelimited" if !explode => out.push((name.to_owned(), texts.join(" "))),
                "pipeDelimited" if !explode => out.push((name.to_owned(), texts.join("|"))),
                _ if explode => out.extend(texts.into_iter().map(|t| (name.to_owned(), t))),
                _ => out.push((name.to_owned(), texts.join(","))),
            }
        }
        Value::Object(map) => match style {
            "deepObject" => out.extend(map.iter().map(|(k, v)| (format!("{name}[{k}]"), scalar_or_json(v)))),
            _ if explode => out.extend(map.iter().map(|(k, v)| (k.clone(), scalar_or_json(v)))),
            _ => out.push((name.to_owned(), simple_text(value, false))),
        },
        other => out.push((name.to_owned(), scalar_string(other))),
    }
}

/// Percent-encodes everything except RFC 3986 unreserved characters and the bytes in `keep`.
fn encode_component(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Coerces an LLM-supplied value to the JSON type its schema declares; leaves it alone when unsure.
fn coerce(value: Value, schema: Option<&Value>) -> Value {
    let Some(schema) = schema.and_then(Value::as_object) else {
        return value;
    };
    let wanted: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let Value::String(text) = &value else {
        return match (value, wanted.first().copied()) {
            (Value::Number(n), Some("string")) => Value::String(n.to_string()),
            (v, _) => v,
        };
    };
    if wanted.contains(&"string") {
        return value;
    }
    let trimmed = text.trim();
    for t in &wanted {
        match *t {
            "integer" => {
                if let Ok(i) = trimmed.parse::<i64>() {
                    return Value::from(i);
                }
            }
            "number" => {
                if let Ok(i) = trimmed.parse::<i64>() {
                    return Value::from(i);
                }
                if let Some(n) = trimmed.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                    return Value::Number(n);
                }
            }
            "boolean" => match trimmed.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => return Value::Bool(true),
                "false" | "0" | "no" => return Value::Bool(false),
                _ => {}
            },
            "object" | "array" => {
                if let Ok(parsed) = serde_json::from_str::<Value>(trimmed)
                    && (parsed.is_object() && *t == "object" || parsed.is_array() && *t == "array")
                {
                    return parsed;
                }
            }
            "null" if trimmed == "null" => return Value::Null,
            _ => {}
        }
    }
    value
}

/// One multipart part; names and file names are escaped as browsers do (`"` → `%22`, CR/LF → `%0D%0A`).
fn write_part(out: &mut Vec<u8>, boundary: &str, name: &str, file: Option<(&str, &str)>, bytes: &[u8]) {
    let escape = |s: &str| s.replace('"', "%22").replace('\r', "%0D").replace('\n', "%0A");
    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    match file {
        Some((filename, mime)) if !filename.is_empty() => {
            out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {mime}\r\n\r\n",
                    escape(name),
                    escape(filename)
                )
                .as_bytes(),
            );
        }
        Some((_, mime)) => {
            out.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{}\"\r\nContent-Type: {mime}\r\n\r\n",
                    escape(name)
                )
                .as_bytes(),
            );
        }
        None => {
            out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{}\"\r\n\r\n", escape(name)).as_bytes(),
            );
        }
    }
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_styles() {
        let mut out = Vec::new();
        serialize_query("id", &json!([3, 4]), None, &mut out);
        let spec = json!({"name": "id", "in": "query", "explode": false});
        serialize_query("id", &json!([3, 4]), spec.as_object(), &mut out);
        let spec = json!({"style": "pipeDelimited", "explode": false});
        serialize_query("p", &json!(["a", "b"]), spec.as_object(), &mut out);
        let spec = json!({"style": "deepObject", "explode": true});
        serialize_query("f", &json!({"a": 1}), spec.as_object(), &mut out);
        let pairs: Vec<String> = out.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(pairs, ["id=3", "id=4", "id=3,4", "p=a|b", "f[a]=1"]);
    }

    #[test]
    fn path_styles_encode() {
        assert_eq!(serialize_path("id", &json!("a b/c"), None), "a%20b%2Fc");
        assert_eq!(serialize_path("id", &json!([1, 2]), None), "1,2");
        let spec = json!({"style": "label"});
        assert_eq!(serialize_path("id", &json!([1, 2]), spec.as_object()), ".1,2");
        let spec = json!({"style": "matrix", "explode": true});
        assert_eq!(serialize_path("id", &json!([1, 2]), spec.as_object()), ";id=1;id=2");
    }

    #[test]
    fn coercion() {
        assert_eq!(coerce(json!("3"), Some(&json!({"type": "integer"}))), json!(3));
        assert_eq!(coerce(json!("false"), Some(&json!({"type": "boolean"}))), json!(false));
        assert_eq!(
            coerce(json!("{\"a\":1}"), Some(&json!({"type": "object"}))),
            json!({"a": 1})
        );
        assert_eq!(coerce(json!("x"), Some(&json!({"type": "integer"}))), json!("x"));
        assert_eq!(coerce(json!(5), Some(&json!({"type": "string"}))), json!("5"));
    }
}
