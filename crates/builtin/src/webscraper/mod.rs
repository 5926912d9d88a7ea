//! The `webscraper` provider: fetches a web page through the SSRF-safe client and returns its readable text.
//!
//! Behaviour, compared with Dify's `webscraper` tool (`web_reader_tool.get_url`):
//! - One `GET` instead of Dify's `HEAD` + `GET`: the content type is read from the response head and the body is
//!   only read when the type is supported, so nothing is downloaded for unsupported types, servers that answer
//!   `HEAD` badly (405, wrong type) still work, and the page is requested once. The `user_agent` parameter is sent
//!   as `User-Agent`.
//! - A status other than 200 gives Dify's text `URL returned status code {code}.` (Dify retries a 403 with
//!   cloudscraper; toolplane does not).
//! - `text/html` (and `application/xhtml+xml`) pages are reduced to their main content (see [`extract_article`]) and
//!   returned in Dify's template: `"\nTITLE: …\nAUTHORS: …\nPUBLISH DATE: …\nTOP_IMAGE_URL: \nTEXT:\n\n…\n"`, where
//!   a missing field reads `None` as in Python. A page without readable text gives an empty text, as in Dify.
//! - `text/plain` and `application/json` bodies are returned as they are.
//! - Any other type, including `application/pdf` (Dify extracts PDFs; toolplane has no PDF reader), gives Dify's
//!   text `Unsupported content-type [{type}] of URL.`, with `None` when the server sent no type and the
//!   `Content-Disposition` file name does not reveal one.
//! - Bodies are read with a cap of [`MAX_PAGE_BYTES`] (or the client's own, if lower) and decoded with the charset of
//!   the `Content-Type` header, else of the page's `<meta>` tag, else UTF-8.
//! - `generate_summary` needs an LLM, which toolplane does not have: when it is true the full text is returned and
//!   the request is logged at debug level.
//! - Network failures and SSRF refusals become [`ToolError::Invoke`] carrying the client's message, which names a
//!   refused address and the setting that would allow it; a malformed URL is a [`ToolError::ParameterValidation`].

mod extract;

pub use extract::{Article, extract_article};

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use toolplane_core::{MessageStream, Tool, ToolEntity, ToolError, ToolInvokeMessage, ToolRuntime};
use toolplane_net::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HeaderMap, USER_AGENT};
use toolplane_net::{NetError, SafeClient, StatusCode, read_body_limited};

use crate::declaration::{self, DeclarationError};
use crate::provider::BuiltinProvider;

/// The provider's name (and id).
pub const PROVIDER_NAME: &str = "webscraper";

/// The most bytes of a page the tool reads.
pub const MAX_PAGE_BYTES: u64 = 10 * 1024 * 1024;

/// The `User-Agent` used when the parameter is empty (the declaration's default).
pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/100.0.1000.0 Safari/537.36";

const DECLARATION_FILE: &str = "webscraper/provider.json";
const DECLARATION: &str = include_str!("provider.json");
const ICON: &[u8] = include_bytes!("icon.svg");

/// Builds the `webscraper` provider from its declaration; its one tool fetches through `client`.
pub(crate) fn provider(client: SafeClient) -> Result<BuiltinProvider, DeclarationError> {
    let declaration = declaration::parse(DECLARATION_FILE, DECLARATION)?;
    let tools = declaration
        .tools
        .into_iter()
        .map(|entity| match entity.identity.name.as_str() {
            "webscraper" => Ok(Arc::new(WebScraper {
                entity,
                client: client.clone(),
            }) as Arc<dyn Tool>),
            other => Err(DeclarationError {
                file: DECLARATION_FILE,
                reason: format!("tool {other:?} is declared but not implemented"),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BuiltinProvider::new(declaration.provider, tools, ICON))
}

/// The `webscraper` tool.
struct WebScraper {
    entity: ToolEntity,
    client: SafeClient,
}

#[async_trait]
impl Tool for WebScraper {
    fn entity(&self) -> &ToolEntity {
        &self.entity
    }

    async fn invoke(
        &self,
        _runtime: ToolRuntime,
        parameters: Map<String, Value>,
        cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let url = match parameters.get("url") {
            Some(Value::String(url)) if !url.trim().is_empty() => url.trim(),
            _ => return Err(ToolError::param("missing required parameter \"url\" (string)")),
        };
        let user_agent = match parameters.get("user_agent") {
            Some(Value::String(agent)) if !agent.trim().is_empty() => agent.trim(),
            _ => DEFAULT_USER_AGENT,
        };
        if parameters.get("generate_summary") == Some(&Value::Bool(true)) {
            tracing::debug!(
                url,
                "webscraper: generate_summary was requested, but toolplane has no LLM to summarise with; \
                 returning the full text"
            );
        }
        let text = cancel
            .run_until_cancelled(self.fetch(url, user_agent))
            .await
            .ok_or(ToolError::Cancelled)??;
        Ok(futures::stream::iter([Ok(ToolInvokeMessage::text(text))]).boxed())
    }
}

/// The kinds of body the tool can turn into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Html,
    Verbatim,
}

impl WebScraper {
    /// Fetches `url` and renders it as Dify's webscraper does.
    async fn fetch(&self, url: &str, user_agent: &str) -> Result<String, ToolError> {
        let response = self
            .client
            .get(url)
            .header(USER_AGENT, user_agent)
            .send()
            .await
            .map_err(net_error)?;

        let status = response.status();
        if status != StatusCode::OK {
            return Ok(format!("URL returned status code {}.", status.as_u16()));
        }
        let content_type = main_content_type(response.headers());
        let kind = match content_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("text/html" | "application/xhtml+xml") => Kind::Html,
            Some("text/plain" | "application/json") => Kind::Verbatim,
            _ => {
                let shown = content_type.as_deref().unwrap_or("None");
                return Ok(format!("Unsupported content-type [{shown}] of URL."));
            }
        };
        let charset = charset(response.headers());
        let limit = MAX_PAGE_BYTES.min(self.client.config().max_response_bytes);
        let body = read_body_limited(response, limit).await.map_err(net_error)?;

        Ok(match kind {
            Kind::Verbatim => decode(&body, charset.as_deref()),
            Kind::Html => {
                let html = decode(&body, charset.or_else(|| meta_charset(&body)).as_deref());
                // Parsing a large page takes a while; keep it off the async workers.
                tokio::task::spawn_blocking(move || render(&extract_article(&html)))
                    .await
                    .map_err(|e| ToolError::Internal(format!("extracting the page's text failed: {e}")))?
            }
        })
    }
}

/// Dify's template for a page (`FULL_TEMPLATE`); an empty text stays empty, as in Dify.
fn render(article: &Article) -> String {
    if article.text.trim().is_empty() {
        return String::new();
    }
    let or_none = |field: &Option<String>| field.clone().unwrap_or_else(|| "None".to_owned());
    format!(
        "\nTITLE: {}\nAUTHORS: {}\nPUBLISH DATE: {}\nTOP_IMAGE_URL: \nTEXT:\n\n{}\n",
        or_none(&article.title),
        or_none(&article.byline),
        or_none(&article.published),
        article.text
    )
}

fn net_error(error: NetError) -> ToolError {
    match error {
        NetError::InvalidUrl { .. } => ToolError::param(format!(
            "parameter \"url\": {error}; give a full http:// or https:// URL"
        )),
        NetError::UnsupportedScheme { .. } => ToolError::param(format!("parameter \"url\": {error}")),
        other => ToolError::Invoke(other.to_string()),
    }
}

/// The media type without parameters, from `Content-Type`, else guessed from a `Content-Disposition` file name.
fn main_content_type(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let main = value.split(';').next().unwrap_or("").trim();
        return (!main.is_empty()).then(|| main.to_owned());
    }
    let disposition = headers.get(CONTENT_DISPOSITION)?.to_str().ok()?;
    let filename = disposition.split("filename=\"").nth(1)?.split('"').next()?;
    let extension = filename.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(
        match extension.as_str() {
            "html" | "htm" => "text/html",
            "xhtml" => "application/xhtml+xml",
            "txt" => "text/plain",
            "json" => "application/json",
            "pdf" => "application/pdf",
            "md" => "text/markdown",
            "csv" => "text/csv",
            "xml" => "application/xml",
            "png" => "image/png",
            "jpg" | "jpeg" => "image/jpeg",
            "gif" => "image/gif",
            "zip" => "application/zip",
            _ => return None,
        }
        .to_owned(),
    )
}

/// The `charset` parameter of `Content-Type`.
fn charset(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    value.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches(['"', '\'']).to_owned())
    })
}

/// The charset a page declares in a `<meta>` tag within its first kilobyte.
fn meta_charset(body: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&body[..body.len().min(1024)]).to_ascii_lowercase();
    let start = head.find("charset=")? + "charset=".len();
    let label: String = head[start..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
        .collect();
    (!label.is_empty()).then_some(label)
}

/// Decodes a body with the given charset label, UTF-8 when there is none or it is unknown; a byte-order mark wins,
/// malformed bytes become U+FFFD.
fn decode(body: &[u8], charset: Option<&str>) -> String {
    let encoding = charset
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    encoding.decode(body).0.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolplane_net::header::HeaderValue;

    fn headers(pairs: &[(toolplane_net::header::HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn content_type_and_charset() {
        let h = headers(&[(CONTENT_TYPE, "Text/HTML; Charset=\"ISO-8859-1\"")]);
        assert_eq!(main_content_type(&h).as_deref(), Some("Text/HTML"));
        assert_eq!(charset(&h).as_deref(), Some("ISO-8859-1"));

        let h = headers(&[(CONTENT_DISPOSITION, "attachment; filename=\"report.PDF\"")]);
        assert_eq!(main_content_type(&h).as_deref(), Some("application/pdf"));
        assert_eq!(main_content_type(&HeaderMap::new()), None);
    }

    #[test]
    fn decodes_declared_charsets() {
        assert_eq!(decode(b"caf\xe9", Some("iso-8859-1")), "café");
        assert_eq!(decode("café".as_bytes(), None), "café");
        assert_eq!(decode(b"caf\xe9", Some("no-such-charset")), "caf\u{fffd}");
        let page = b"<html><head><meta charset=\"windows-1252\"></head><body>\x93hi\x94</body></html>";
        assert_eq!(meta_charset(page).as_deref(), Some("windows-1252"));
    }

    #[test]
    fn renders_dify_template() {
        let article = Article {
            title: Some("T".into()),
            byline: None,
            published: None,
            text: "line one\nline two".into(),
        };
        assert_eq!(
            render(&article),
            "\nTITLE: T\nAUTHORS: None\nPUBLISH DATE: None\nTOP_IMAGE_URL: \nTEXT:\n\nline one\nline two\n"
        );
        assert_eq!(render(&Article::default()), "");
    }
}
