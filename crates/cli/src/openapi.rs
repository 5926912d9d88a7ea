//! `toolplane openapi …`: inspect a spec as API tools, or import it as a tenant's API provider.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_openapi::{
    LoadOptions, Loaded, LoadedSpec, ParseOptions, ParsedSpec, SchemaType, fetch_text, inspect_json, load_from_url,
    load_spec_with, parse_tools,
};
use toolplane_server::AppState;
use toolplane_server::api_tools::ApiProviderInput;

/// The `openapi` subcommands.
#[derive(Subcommand)]
pub enum OpenapiCommand {
    /// Show the tools and warnings a spec (file or http(s) URL) turns into; exits non-zero when it cannot be used.
    Inspect {
        /// A spec file (JSON or YAML: OpenAPI 3.x, Swagger 2.0, OpenAI plugin manifest) or an http(s) URL.
        source: String,
        /// Print the stable JSON form `{schema_type, server_url, tools, warnings}`.
        #[arg(long)]
        json: bool,
    },
    /// Import a spec as an API tool provider of a tenant.
    Import {
        /// A spec file or an http(s) URL.
        source: String,
        /// Tenant id or name.
        #[arg(long)]
        tenant: String,
        /// The provider name (unique in the tenant).
        #[arg(long)]
        name: String,
        /// `none`, `api_key_header` or `api_key_query`; defaults to what the spec's securitySchemes declare.
        #[arg(long)]
        auth_type: Option<String>,
        /// The API key; prefer the TOOLPLANE_API_KEY_VALUE variable so it stays out of shell history.
        #[arg(long, env = "TOOLPLANE_API_KEY_VALUE", hide_env_values = true)]
        api_key: Option<String>,
        /// Header carrying the key (api_key_header).
        #[arg(long)]
        api_key_header: Option<String>,
        /// `basic`, `bearer` or `custom` (api_key_header).
        #[arg(long)]
        api_key_header_prefix: Option<String>,
        /// Query parameter carrying the key (api_key_query).
        #[arg(long)]
        api_key_query_param: Option<String>,
        /// Labels (categories), e.g. `--label search --label weather`.
        #[arg(long = "label")]
        labels: Vec<String>,
    },
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The spec text of a file or URL.
async fn read_source(source: &str, client: &SafeClient, options: &LoadOptions) -> Result<String> {
    if is_url(source) {
        let (_, text) = fetch_text(client, source, options.max_bytes).await?;
        return Ok(text);
    }
    let size = std::fs::metadata(source)
        .with_context(|| format!("cannot read the spec file {source}"))?
        .len();
    if size > options.max_bytes {
        bail!(
            "the spec file {source} is {size} bytes, more than the limit of {} bytes (API_TOOL_MAX_SPEC_BYTES)",
            options.max_bytes
        );
    }
    let bytes = std::fs::read(source).with_context(|| format!("cannot read the spec file {source}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Loads a spec text; an OpenAI plugin manifest is followed to its absolute `api.url`.
async fn load(source: &str, text: &str, client: &SafeClient, options: &LoadOptions) -> Result<LoadedSpec> {
    match load_spec_with(text, options)? {
        Loaded::Spec(spec) => Ok(spec),
        Loaded::FetchSpec { url, .. } => {
            let absolute = if is_url(&url) {
                url
            } else if is_url(source) {
                url::Url::parse(source)?.join(&url)?.to_string()
            } else {
                bail!(
                    "{source} is an OpenAI plugin manifest whose api.url {url:?} is relative; inspect the spec itself"
                )
            };
            let mut spec = load_from_url(client, &absolute, options.max_bytes).await?;
            spec.schema_type = SchemaType::OpenAiPlugin;
            Ok(spec)
        }
    }
}

async fn parse(source: &str, net: &NetConfig) -> Result<(String, ParsedSpec)> {
    let client = SafeClient::new(net.clone())?;
    let options = LoadOptions::from_env();
    let text = read_source(source, &client, &options).await?;
    let spec = load(source, &text, &client, &options).await?;
    let parsed = parse_tools(&spec, &ParseOptions::from_env())?;
    Ok((text, parsed))
}

/// `toolplane openapi inspect`.
pub async fn inspect(source: &str, json: bool, net: &NetConfig) -> Result<()> {
    let (_, parsed) = parse(source, net).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&inspect_json(&parsed))?);
        return Ok(());
    }
    println!(
        "{} spec, server {}, {} tool(s)",
        parsed.schema_type.as_str(),
        if parsed.server_url.is_empty() {
            "(none)"
        } else {
            &parsed.server_url
        },
        parsed.tools.len()
    );
    for tool in &parsed.tools {
        println!(
            "\n{} {} {}",
            tool.name(),
            tool.method.to_uppercase(),
            if tool.path.is_empty() {
                &tool.server_url
            } else {
                &tool.path
            }
        );
        if let Some(summary) = tool.summary.as_deref().filter(|s| !s.is_empty()) {
            println!("  {}", summary.lines().next().unwrap_or_default());
        }
        for p in tool.parameters.iter().flatten() {
            let kind = serde_json::to_value(p.parameter.kind)?;
            println!(
                "  - {} ({}, {}{})",
                p.parameter.name,
                kind.as_str().unwrap_or("?"),
                p.location.map(|l| l.as_str()).unwrap_or("body"),
                if p.parameter.required { ", required" } else { "" }
            );
        }
    }
    if !parsed.warnings.is_empty() {
        println!("\n{} warning(s):", parsed.warnings.len());
        for w in &parsed.warnings {
            match &w.location {
                Some(at) => println!("  [{}] {at}: {}", w.code, w.message),
                None => println!("  [{}] {}", w.code, w.message),
            }
        }
    }
    Ok(())
}

/// The credential form for an import: the spec's prefill overridden by the flags.
fn import_credentials(parsed: &ParsedSpec, command: &ImportFlags) -> Result<Map<String, Value>> {
    let mut credentials = parsed.credentials.clone();
    let set = |c: &mut Map<String, Value>, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            c.insert(k.to_owned(), json!(v));
        }
    };
    set(&mut credentials, "auth_type", &command.auth_type);
    set(&mut credentials, "api_key_value", &command.api_key);
    set(&mut credentials, "api_key_header", &command.api_key_header);
    set(
        &mut credentials,
        "api_key_header_prefix",
        &command.api_key_header_prefix,
    );
    set(&mut credentials, "api_key_query_param", &command.api_key_query_param);
    let auth = credentials.get("auth_type").and_then(Value::as_str).unwrap_or("none");
    let key_missing = credentials
        .get("api_key_value")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if auth != "none" && key_missing {
        bail!(
            "the provider authenticates with {auth}: give the key with --api-key or TOOLPLANE_API_KEY_VALUE \
             (or pass --auth-type none)"
        );
    }
    Ok(credentials)
}

/// The flags of `openapi import` that shape credentials.
pub struct ImportFlags {
    pub auth_type: Option<String>,
    pub api_key: Option<String>,
    pub api_key_header: Option<String>,
    pub api_key_header_prefix: Option<String>,
    pub api_key_query_param: Option<String>,
}

/// `toolplane openapi import`: stores the provider exactly as the console's `tool-provider/api/add` does.
pub async fn import(
    state: &AppState,
    tenant_id: &str,
    source: &str,
    name: &str,
    flags: &ImportFlags,
    labels: Vec<String>,
    net: &NetConfig,
) -> Result<()> {
    let (text, parsed) = parse(source, net).await?;
    let credentials = import_credentials(&parsed, flags)?;
    let input = ApiProviderInput {
        name: name.to_owned(),
        icon: json!({"background": "#FFEAD5", "content": "🔧"}),
        credentials,
        schema_type: Some(parsed.schema_type.as_str().to_owned()),
        schema: text,
        privacy_policy: None,
        custom_disclaimer: None,
        labels: Some(labels),
        connect_timeout: None,
        read_timeout: None,
    };
    let row = state
        .api_tools
        .add(tenant_id, "cli", input, None)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    println!(
        "imported API provider {} ({}) with {} tool(s); invoke with `toolplane tool invoke {}/<tool> --type api`",
        row.name,
        row.id,
        parsed.tools.len(),
        row.id
    );
    for w in &parsed.warnings {
        eprintln!("warning: [{}] {}", w.code, w.message);
    }
    Ok(())
}
