//! The http-request node, always through [`SafeClient`] (the SSRF guard).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use toolplane_net::{Method, SafeClient};

use crate::dsl::HttpRequestData;
use crate::error::NodeError;
use crate::pool::VariablePool;

/// A request with every reference resolved.
#[derive(Debug, Clone)]
pub(crate) struct HttpJob {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    params: Vec<(String, String)>,
    body: Body,
    timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Json(Value),
    Text(String),
    Form(Vec<(String, String)>),
    Multipart(Vec<(String, String)>),
}

impl HttpJob {
    /// Resolves the node's references; also returns the inputs shown in node events (secrets masked).
    pub fn prepare(data: &HttpRequestData, pool: &VariablePool) -> Result<(HttpJob, Map<String, Value>), NodeError> {
        let method = match data.method.to_ascii_lowercase().as_str() {
            "get" => Method::GET,
            "post" => Method::POST,
            "put" => Method::PUT,
            "patch" => Method::PATCH,
            "delete" => Method::DELETE,
            "head" => Method::HEAD,
            "options" => Method::OPTIONS,
            other => {
                return Err(NodeError::Config(format!(
                    "unsupported HTTP method {other:?}; use get, post, put, patch, delete, head or options"
                )));
            }
        };
        let url = pool.render(&data.url).trim().to_owned();
        let mut headers = lines(&pool.render(&data.headers));
        let params = lines(&pool.render(&data.params));

        if data.authorization.kind == "api-key" {
            let config = data.authorization.config.clone().unwrap_or_default();
            let key = pool.render(&config.api_key);
            if key.is_empty() {
                return Err(NodeError::Config(
                    "authorization is api-key but the api_key is empty".into(),
                ));
            }
            match config.kind.as_str() {
                "bearer" => headers.push(("Authorization".into(), format!("Bearer {key}"))),
                "basic" => {
                    // A `user:password` pair is encoded; an already encoded value is sent as is.
                    let token = if key.contains(':') {
                        BASE64.encode(key.as_bytes())
                    } else {
                        key
                    };
                    headers.push(("Authorization".into(), format!("Basic {token}")));
                }
                "custom" => {
                    let name =
                        config.header.clone().filter(|h| !h.trim().is_empty()).ok_or_else(|| {
                            NodeError::Config("custom api-key authorization needs a header name".into())
                        })?;
                    headers.push((name, key));
                }
                other => {
                    return Err(NodeError::Config(format!(
                        "unknown api-key authorization type {other:?}; use basic, bearer or custom"
                    )));
                }
            }
        }

        let body = match &data.body {
            None => Body::None,
            Some(body) => {
                let texts = || body.data.iter().filter(|e| e.kind != "file");
                if body.data.iter().any(|e| e.kind == "file") || body.kind == "binary" {
                    return Err(NodeError::Config(
                        "file bodies are not supported by toolplane's http-request node yet".into(),
                    ));
                }
                match body.kind.as_str() {
                    "none" | "" => Body::None,
                    "json" => {
                        let text = texts().map(|e| pool.render(&e.value)).collect::<String>();
                        if text.trim().is_empty() {
                            Body::None
                        } else {
                            Body::Json(serde_json::from_str(&text).map_err(|e| {
                                NodeError::Input(format!("the JSON body is not valid JSON after substitution: {e}"))
                            })?)
                        }
                    }
                    "raw-text" => Body::Text(texts().map(|e| pool.render(&e.value)).collect()),
                    "x-www-form-urlencoded" | "form-data" => {
                        let mut pairs: Vec<(String, String)> = Vec::new();
                        for entry in texts() {
                            if entry.key.is_empty() {
                                // Legacy string form: "key:value" lines.
                                pairs.extend(lines(&pool.render(&entry.value)));
                            } else {
                                pairs.push((pool.render(&entry.key), pool.render(&entry.value)));
                            }
                        }
                        if body.kind == "form-data" {
                            Body::Multipart(pairs)
                        } else {
                            Body::Form(pairs)
                        }
                    }
                    other => {
                        return Err(NodeError::Config(format!(
                            "unknown body type {other:?}; use none, json, raw-text, form-data, x-www-form-urlencoded"
                        )));
                    }
                }
            }
        };
        let timeout = data.timeout.as_ref().and_then(|t| {
            let total: f64 = [t.connect, t.read, t.write]
                .iter()
                .flatten()
                .filter(|s| **s > 0.0)
                .sum();
            (total > 0.0 && total.is_finite()).then(|| Duration::from_secs_f64(total))
        });

        let inputs = json!({
            "method": method.as_str(),
            "url": url,
            "headers": headers.iter().map(|(k, v)| {
                let masked = k.eq_ignore_ascii_case("authorization") || data.authorization.config.as_ref().and_then(|c| c.header.as_deref()).is_some_and(|h| h.eq_ignore_ascii_case(k));
                json!({k: if masked { "***" } else { v.as_str() }})
            }).collect::<Vec<_>>(),
            "params": params.iter().map(|(k, v)| json!({k: v})).collect::<Vec<_>>(),
        });
        let inputs = inputs.as_object().cloned().unwrap_or_default();
        Ok((
            HttpJob {
                method,
                url,
                headers,
                params,
                body,
                timeout,
            },
            inputs,
        ))
    }

    /// Sends the request. Any status is a success (Dify's behaviour): the status lands in `status_code`.
    pub async fn run(self, client: &SafeClient) -> Result<Map<String, Value>, NodeError> {
        let mut request = client.request(self.method, self.url.as_str());
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if !self.params.is_empty() {
            request = request.query(&self.params);
        }
        request = match self.body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Text(text) => request.body(text),
            Body::Form(pairs) => request.form(&pairs),
            Body::Multipart(pairs) => {
                let boundary = format!("toolplane-{:016x}", boundary_seed());
                let mut body = String::new();
                for (k, v) in &pairs {
                    body.push_str(&format!(
                        "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{v}\r\n",
                        k.replace('"', "%22")
                    ));
                }
                body.push_str(&format!("--{boundary}--\r\n"));
                request
                    .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
                    .body(body)
            }
        };
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.map_err(|e| NodeError::Http(e.to_string()))?;
        let status = response.status().as_u16();
        let mut headers = Map::new();
        for (name, value) in response.headers() {
            headers.insert(
                name.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            );
        }
        let body = client
            .read_body(response)
            .await
            .map_err(|e| NodeError::Http(e.to_string()))?;
        let mut outputs = Map::new();
        outputs.insert("status_code".into(), Value::from(status));
        outputs.insert(
            "body".into(),
            Value::String(String::from_utf8_lossy(&body).into_owned()),
        );
        outputs.insert("headers".into(), Value::Object(headers));
        outputs.insert("files".into(), Value::Array(Vec::new()));
        Ok(outputs)
    }
}

/// `"Key:value"` lines (Dify's header/params text form); blank lines and lines without a key are dropped.
fn lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':').unwrap_or((line, ""));
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn boundary_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}
