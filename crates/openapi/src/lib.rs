//! `toolplane-openapi` owns API tools: importing OpenAPI 3.0/3.1, Swagger 2.0 and OpenAI-plugin documents as
//! tools, and invoking their operations.
//!
//! The pipeline, one module per step:
//! 1. [`load`](load_spec): JSON or YAML text (or a file, or a URL fetched through the SSRF-safe client) into a
//!    generic `serde_json::Value`, size- and depth-bounded; Swagger 2.0 converted to OpenAPI 3 (`convert`);
//!    an OpenAI plugin manifest reported as [`Loaded::FetchSpec`] (and followed by [`load_from_url`]).
//! 2. [`parse_tools`]: every operation becomes an [`ApiToolBundle`] in Dify's serde shape. `$ref`s are resolved
//!    at any depth with cycles cut (`refs`), path-level and operation-level parameters are merged, request
//!    bodies of any shape become parameters, enums become `select`s, nested objects and arrays carry their
//!    JSON schema in `input_schema`, tool names are valid and unique (`names`). Problems come back as
//!    [`Warning`]s; only documents that cannot be used at all are a [`SpecError`].
//! 3. [`prefill_credentials`]: `securitySchemes` → Dify's credential form (`auth_type`, header name and prefix,
//!    query parameter name).
//! 4. [`ApiTool`]: a [`toolplane_core::Tool`] that assembles the HTTP request (path/query/header/cookie
//!    parameters with style and explode, JSON / form / multipart / text / binary bodies, auth) and turns the
//!    response into messages (`response`).
//!
//! Typed OpenAPI crates reject too many real specs, so everything walks untyped JSON leniently.
//!
//! ```no_run
//! # fn demo(text: &str) -> Result<(), toolplane_openapi::SpecError> {
//! use toolplane_openapi::{ParseOptions, inspect_json, load_spec, parse_tools};
//!
//! let spec = load_spec(text)?.into_spec()?;
//! let parsed = parse_tools(&spec, &ParseOptions::default())?;
//! println!("{}", inspect_json(&parsed));
//! # Ok(())
//! # }
//! ```

mod convert;
mod error;
mod invoke;
mod load;
mod names;
mod refs;
mod response;
mod security;
mod tools;
mod util;

pub use error::{SpecError, Warning, dify_warning_map};
pub use invoke::{ApiTool, ApiToolTimeouts, ENV_CONNECT_TIMEOUT, ENV_READ_TIMEOUT, tool_entity};
pub use load::{
    DEFAULT_MAX_DEPTH, DEFAULT_MAX_SPEC_BYTES, ENV_MAX_SPEC_BYTES, LoadOptions, Loaded, LoadedSpec, SchemaType,
    fetch_text, load_from_file, load_from_url, load_spec, load_spec_with,
};
pub use names::{MAX_NAME_LEN, derived_name, is_valid_tool_name, sanitize_tool_name};
pub use refs::{CYCLE_MARKER, TRUNCATED_MARKER};
pub use response::{EMPTY_RESPONSE_MESSAGE, ERROR_EXCERPT_CHARS, response_messages};
pub use security::prefill_credentials;
pub use tools::{
    ApiToolBundle, ApiToolParameter, DEFAULT_MAX_OPERATIONS, ENV_MAX_OPERATIONS, ParameterLocation, ParseOptions,
    ParsedSpec, inspect_json, parse_tools,
};
