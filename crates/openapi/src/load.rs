//! Loading: text, files and URLs into a generic JSON value in OpenAPI 3 form.
//!
//! JSON is tried first, then YAML (serde-saphyr). Both parsers are bounded: serde_json refuses nesting deeper
//! than 128 levels on its own, serde-saphyr gets a budget with [`LoadOptions::max_depth`], and the loaded value is
//! checked against the same depth afterwards, so nothing downstream recurses without bound.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use toolplane_net::SafeClient;
use url::Url;

use crate::SpecError;
use crate::convert;
use crate::error::Warning;

/// Setting for the largest accepted spec, in bytes.
pub const ENV_MAX_SPEC_BYTES: &str = "API_TOOL_MAX_SPEC_BYTES";

/// Default for [`LoadOptions::max_bytes`]: 64 MiB (the largest real spec known, Microsoft Graph beta, is 47 MB).
pub const DEFAULT_MAX_SPEC_BYTES: u64 = 64 * 1024 * 1024;

/// Default for [`LoadOptions::max_depth`]. serde_json's own limit for JSON is 128 as well.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// The kind of document a spec came from; serialised as Dify's `ApiProviderSchemaType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SchemaType {
    /// OpenAPI 3.0 or 3.1.
    #[serde(rename = "openapi")]
    OpenApi,
    /// Swagger 2.0, converted to OpenAPI 3.
    #[serde(rename = "swagger")]
    Swagger,
    /// An OpenAI plugin manifest pointing at an OpenAPI spec.
    #[serde(rename = "openai_plugin")]
    OpenAiPlugin,
    /// Dify's `openai_actions` (never produced by the parser, accepted for stored records).
    #[serde(rename = "openai_actions")]
    OpenAiActions,
}

impl SchemaType {
    /// The wire name (`openapi`, `swagger`, `openai_plugin`, `openai_actions`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenApi => "openapi",
            Self::Swagger => "swagger",
            Self::OpenAiPlugin => "openai_plugin",
            Self::OpenAiActions => "openai_actions",
        }
    }
}

/// Limits applied while loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Largest accepted input in bytes ([`ENV_MAX_SPEC_BYTES`]).
    pub max_bytes: u64,
    /// Deepest accepted nesting of objects and arrays (JSON is capped at 128 by serde_json whatever this says).
    pub max_depth: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_SPEC_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

impl LoadOptions {
    /// Defaults, with `max_bytes` from [`ENV_MAX_SPEC_BYTES`] when it is set to a positive integer.
    pub fn from_env() -> Self {
        let mut options = Self::default();
        if let Some(bytes) = std::env::var(ENV_MAX_SPEC_BYTES)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|v| *v > 0)
        {
            options.max_bytes = bytes;
        }
        options
    }
}

/// A spec in OpenAPI 3 form, ready for [`parse_tools`](crate::parse_tools).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSpec {
    /// What the document was.
    pub schema_type: SchemaType,
    /// The version the document declared (`3.0.3`, `3.1.0`, `2.0`).
    pub version: String,
    /// The document, converted to OpenAPI 3 when it was Swagger 2.0.
    pub document: Value,
    /// Where the spec was fetched from; relative server URLs are resolved against it.
    pub source_url: Option<Url>,
    /// Problems met while loading and converting.
    pub warnings: Vec<Warning>,
}

/// The outcome of loading a text.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    /// A spec.
    Spec(LoadedSpec),
    /// An OpenAI plugin manifest: the spec itself must be fetched from `url` (see [`load_from_url`], which does it).
    FetchSpec {
        /// `api.url` of the manifest, as written (may be relative to the manifest's own URL).
        url: String,
        /// The manifest.
        manifest: Value,
    },
}

impl Loaded {
    /// The spec, or an error saying that a plugin manifest needs its spec fetched first.
    pub fn into_spec(self) -> Result<LoadedSpec, SpecError> {
        match self {
            Self::Spec(spec) => Ok(spec),
            Self::FetchSpec { url, .. } => Err(SpecError::Invalid(format!(
                "this is an OpenAI plugin manifest; its OpenAPI spec lives at {url}: import that URL instead"
            ))),
        }
    }
}

/// Loads a spec from text with [`LoadOptions::default`].
pub fn load_spec(text: &str) -> Result<Loaded, SpecError> {
    load_spec_with(text, &LoadOptions::default())
}

/// Loads a spec from text: JSON or YAML; OpenAPI 3.0/3.1 as is, Swagger 2.0 converted, OpenAI plugin manifests
/// reported as [`Loaded::FetchSpec`].
pub fn load_spec_with(text: &str, options: &LoadOptions) -> Result<Loaded, SpecError> {
    let size = text.len() as u64;
    if size > options.max_bytes {
        return Err(SpecError::TooLarge {
            size,
            limit: options.max_bytes,
        });
    }
    let value = parse_text(text, options)?;
    classify(value)
}

/// Reads a file (refusing it before reading when it is over the size limit) and loads it.
pub fn load_from_file(path: impl AsRef<std::path::Path>, options: &LoadOptions) -> Result<Loaded, SpecError> {
    let path = path.as_ref();
    let io = |source| SpecError::Io {
        path: path.display().to_string(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > options.max_bytes {
        return Err(SpecError::TooLarge {
            size,
            limit: options.max_bytes,
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let text = String::from_utf8_lossy(&bytes);
    load_spec_with(&text, options)
}

/// Fetches a spec through the SSRF-safe client and loads it. An OpenAI plugin manifest is followed once to its
/// `api.url` (resolved against the manifest's URL); the result then has [`SchemaType::OpenAiPlugin`].
pub async fn load_from_url(client: &SafeClient, url: &str, max_bytes: u64) -> Result<LoadedSpec, SpecError> {
    let options = LoadOptions {
        max_bytes,
        ..LoadOptions::default()
    };
    let (final_url, text) = fetch_text(client, url, max_bytes).await?;
    match load_spec_with(&text, &options)? {
        Loaded::Spec(mut spec) => {
            spec.source_url = Some(final_url);
            Ok(spec)
        }
        Loaded::FetchSpec { url: api_url, .. } => {
            let spec_url = final_url.join(&api_url).map_err(|e| SpecError::Fetched {
                url: final_url.to_string(),
                reason: format!("the manifest's api.url {api_url:?} is not a valid URL: {e}"),
            })?;
            let (spec_final, spec_text) = fetch_text(client, spec_url.as_str(), max_bytes).await?;
            match load_spec_with(&spec_text, &options)? {
                Loaded::Spec(mut spec) => {
                    spec.schema_type = SchemaType::OpenAiPlugin;
                    spec.source_url = Some(spec_final);
                    Ok(spec)
                }
                Loaded::FetchSpec { .. } => Err(SpecError::Fetched {
                    url: spec_final.to_string(),
                    reason: "the plugin manifest's api.url points at another manifest, not at an OpenAPI spec".into(),
                }),
            }
        }
    }
}

/// Downloads `url` as text, bounded by `max_bytes`; returns the URL after redirects.
pub async fn fetch_text(client: &SafeClient, url: &str, max_bytes: u64) -> Result<(Url, String), SpecError> {
    let fetch = |source| SpecError::Fetch {
        url: url.to_owned(),
        source,
    };
    let mut response = client
        .get(url)
        .header("Accept", "application/json, application/yaml, text/yaml, */*")
        .send()
        .await
        .map_err(fetch)?;
    let final_url = response.url().clone();
    let status = response.status();
    if !status.is_success() {
        return Err(SpecError::FetchStatus {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    if let Some(len) = response.content_length()
        && len > max_bytes
    {
        return Err(SpecError::TooLarge {
            size: len,
            limit: max_bytes,
        });
    }
    // Read with the caller's cap, not the client's general one.
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| fetch(toolplane_net::NetError::from_reqwest(e)))?
    {
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(SpecError::TooLarge {
                size: (body.len() + chunk.len()) as u64,
                limit: max_bytes,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((final_url, String::from_utf8_lossy(&body).into_owned()))
}

/// JSON first, then YAML; both bounded in depth.
fn parse_text(text: &str, options: &LoadOptions) -> Result<Value, SpecError> {
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err(SpecError::Empty);
    }
    let json_error = match serde_json::from_str::<Value>(text) {
        Ok(value) => {
            check_depth(&value, options.max_depth)?;
            return Ok(value);
        }
        Err(e) if e.to_string().contains("recursion limit") => {
            return Err(SpecError::TooDeep {
                limit: options.max_depth.min(128),
                detail: e.to_string(),
            });
        }
        Err(e) => e.to_string(),
    };
    match parse_yaml_on_big_stack(text, options)? {
        Ok(value) => {
            check_depth(&value, options.max_depth)?;
            Ok(value)
        }
        Err(yaml) => {
            let lower = yaml.to_ascii_lowercase();
            if lower.contains("depth") || lower.contains("nesting") || lower.contains("recursion limit") {
                return Err(SpecError::TooDeep {
                    limit: options.max_depth,
                    detail: first_line(&yaml),
                });
            }
            Err(SpecError::Syntax {
                json: json_error,
                yaml: first_line(&yaml),
            })
        }
    }
}

/// serde-saphyr's limits: depth from the options, node and byte budgets large enough for real specs.
fn yaml_options(options: &LoadOptions) -> serde_saphyr::Options {
    let mut yaml_options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = options.max_depth;
    budget.max_reader_input_bytes = Some(usize::try_from(options.max_bytes).unwrap_or(usize::MAX));
    // Real specs are large: OpenAI's 3 MB YAML has hundreds of thousands of nodes.
    budget.max_nodes = 10_000_000;
    budget.max_events = 20_000_000;
    budget.max_total_scalar_bytes = usize::try_from(options.max_bytes).unwrap_or(usize::MAX);
    yaml_options.budget = Some(budget);
    // PyYAML (Dify) keeps the last of duplicated keys; real specs have them.
    yaml_options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    yaml_options
}

/// serde-saphyr recurses once per nesting level with large frames (about 25 KiB each in debug builds), so the
/// 2 MiB stack of a test or runtime thread overflows near 80 levels. The YAML parser therefore runs on a thread
/// whose stack fits `max_depth` levels with room to spare.
fn parse_yaml_on_big_stack(text: &str, options: &LoadOptions) -> Result<Result<Value, String>, SpecError> {
    const PER_LEVEL: usize = 128 * 1024;
    let stack = (8 << 20) + options.max_depth.saturating_mul(PER_LEVEL);
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("yaml-parse".into())
            .stack_size(stack)
            .spawn_scoped(scope, || {
                serde_saphyr::from_str_with_options::<Value>(text, yaml_options(options)).map_err(|e| e.to_string())
            })
            .map_err(|e| SpecError::Invalid(format!("cannot start the YAML parser thread: {e}")))?;
        handle
            .join()
            .map_err(|_| SpecError::Invalid("the YAML parser failed unexpectedly on this document".into()))
    })
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    crate::util::truncate_chars(line, 300)
}

/// Refuses values nested deeper than `limit` (iteratively, so the check itself cannot overflow the stack).
fn check_depth(value: &Value, limit: usize) -> Result<(), SpecError> {
    let mut stack = vec![(value, 0usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > limit {
            return Err(SpecError::TooDeep {
                limit,
                detail: format!("a value is nested {depth} levels deep"),
            });
        }
        match node {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// Decides what the document is.
fn classify(value: Value) -> Result<Loaded, SpecError> {
    let Value::Object(map) = &value else {
        return Err(SpecError::NotASpec {
            found: format!("the document is {}, not an object", crate::util::describe(&value)),
        });
    };
    if let Some(version) = map.get("openapi") {
        let version = crate::util::scalar_string(version);
        if !version.starts_with('3') {
            return Err(SpecError::UnsupportedVersion {
                version,
                hint: "only OpenAPI 3.0 and 3.1 (and Swagger 2.0) are supported",
            });
        }
        return Ok(Loaded::Spec(LoadedSpec {
            schema_type: SchemaType::OpenApi,
            version,
            document: value,
            source_url: None,
            warnings: Vec::new(),
        }));
    }
    if let Some(version) = map.get("swagger") {
        let version = crate::util::scalar_string(version);
        if !version.starts_with('2') {
            return Err(SpecError::UnsupportedVersion {
                version,
                hint: "Swagger 1.x is not supported; convert it to OpenAPI 3 first",
            });
        }
        let mut warnings = Vec::new();
        let document = convert::swagger2_to_openapi3(value, &mut warnings);
        return Ok(Loaded::Spec(LoadedSpec {
            schema_type: SchemaType::Swagger,
            version,
            document,
            source_url: None,
            warnings,
        }));
    }
    if let Some(api) = map.get("api").and_then(Value::as_object) {
        let api_type = api.get("type").map(crate::util::scalar_string).unwrap_or_default();
        let Some(url) = api.get("url").and_then(Value::as_str) else {
            return Err(SpecError::Invalid(
                "the OpenAI plugin manifest has no api.url; it must point at the OpenAPI spec".into(),
            ));
        };
        if api_type != "openapi" {
            return Err(SpecError::PluginNotOpenapi { api_type });
        }
        return Ok(Loaded::FetchSpec {
            url: url.to_owned(),
            manifest: value.clone(),
        });
    }
    if map.get("paths").is_some_and(Value::is_object) {
        // No version key but paths: read it as OpenAPI 3.0 rather than refusing it.
        let warnings = vec![Warning::global(
            "missing_version",
            "the document has `paths` but no `openapi` or `swagger` version; it was read as OpenAPI 3.0",
        )];
        return Ok(Loaded::Spec(LoadedSpec {
            schema_type: SchemaType::OpenApi,
            version: "3.0.0".into(),
            document: value,
            source_url: None,
            warnings,
        }));
    }
    let keys: Vec<&str> = map.keys().take(5).map(String::as_str).collect();
    Err(SpecError::NotASpec {
        found: if keys.is_empty() {
            "the document is an empty object".to_owned()
        } else {
            format!("top-level keys: {}", keys.join(", "))
        },
    })
}
