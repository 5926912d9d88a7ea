//! [`SpecError`] (a spec that cannot be imported) and [`Warning`] (something imported imperfectly).

use serde::{Deserialize, Serialize};

use crate::load::ENV_MAX_SPEC_BYTES;
use crate::tools::ENV_MAX_OPERATIONS;

/// Why a document cannot be imported. Every message says what is wrong and, where possible, how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The input is empty or only whitespace.
    #[error("the api schema is empty; paste an OpenAPI 3, Swagger 2.0 or OpenAI plugin document")]
    Empty,

    /// The input is larger than the configured limit.
    #[error(
        "the api schema is {size} bytes, more than the limit of {limit} bytes; \
         raise {ENV_MAX_SPEC_BYTES} or import a smaller spec"
    )]
    TooLarge { size: u64, limit: u64 },

    /// The input nests deeper than the configured limit.
    #[error(
        "the api schema nests deeper than {limit} levels; such documents are refused to protect the server \
         (details: {detail})"
    )]
    TooDeep { limit: usize, detail: String },

    /// Neither JSON nor YAML.
    #[error("invalid api schema, schema is neither json nor yaml. json error: {json}, yaml error: {yaml}")]
    Syntax { json: String, yaml: String },

    /// Parsed, but not an API description.
    #[error(
        "invalid api schema: not an OpenAPI 3.x, Swagger 2.0 or OpenAI plugin document ({found}); \
         expected a top-level `openapi: 3.x`, `swagger: \"2.0\"` or an OpenAI plugin manifest with `api.url`"
    )]
    NotASpec { found: String },

    /// A version this importer does not read.
    #[error("unsupported api schema version {version:?}: {hint}")]
    UnsupportedVersion { version: String, hint: &'static str },

    /// An OpenAI plugin manifest whose `api.type` is not `openapi`.
    #[error("the OpenAI plugin manifest declares api.type {api_type:?}; only openapi is supported now")]
    PluginNotOpenapi { api_type: String },

    /// A structural problem that makes the document unusable (e.g. `paths` is not an object).
    #[error("invalid api schema: {0}")]
    Invalid(String),

    /// No operation at all.
    #[error("the api schema has no operations: `paths` is missing or empty; add at least one path with an operation")]
    NoPaths,

    /// More operations than allowed.
    #[error(
        "the api schema has {count} operations, more than the limit of {limit}; \
         raise {ENV_MAX_OPERATIONS} or split the spec into several providers"
    )]
    TooManyOperations { count: usize, limit: usize },

    /// Reading a spec file failed.
    #[error("cannot read the api schema file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// Fetching a spec URL failed at the transport level or was refused by the SSRF guard.
    #[error("cannot fetch the api schema from {url}: {source}")]
    Fetch {
        url: String,
        #[source]
        source: toolplane_net::NetError,
    },

    /// The server answered a spec download with an error status.
    #[error("cannot fetch the api schema from {url}: the server answered with status {status}")]
    FetchStatus { url: String, status: u16 },

    /// A downloaded spec (or a plugin manifest's spec) could not be used.
    #[error("the api schema fetched from {url} is unusable: {reason}")]
    Fetched { url: String, reason: String },
}

impl SpecError {
    /// A stable snake_case category, used by the corpus report and API responses.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge { .. } => "too_large",
            Self::TooDeep { .. } => "too_deep",
            Self::Syntax { .. } => "syntax",
            Self::NotASpec { .. } => "not_a_spec",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::PluginNotOpenapi { .. } => "plugin_not_openapi",
            Self::Invalid(_) => "invalid",
            Self::NoPaths => "no_paths",
            Self::TooManyOperations { .. } => "too_many_operations",
            Self::Io { .. } => "io",
            Self::Fetch { .. } | Self::FetchStatus { .. } | Self::Fetched { .. } => "fetch",
        }
    }
}

/// Something the importer had to skip, guess or repair. Returned with the result, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// A stable snake_case code (`duplicated_parameter`, `missing_summary`, `external_ref`, `ref_cycle`, …).
    pub code: String,
    /// A sentence for humans.
    pub message: String,
    /// Where: `GET /pets/{id}`, a `$ref`, or a document location; absent for document-wide warnings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Warning {
    /// A warning with a location.
    pub fn at(code: &str, location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            location: Some(location.into()),
        }
    }

    /// A document-wide warning.
    pub fn global(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            location: None,
        }
    }
}

/// Dify's `warning` dictionary (`{code: message}`), as returned by its `tool-provider/api/schema` route; the
/// last message of each code wins, as in Dify.
pub fn dify_warning_map(warnings: &[Warning]) -> serde_json::Map<String, serde_json::Value> {
    warnings
        .iter()
        .map(|w| (w.code.clone(), serde_json::Value::String(w.message.clone())))
        .collect()
}
