//! `toolplane`: the one binary. `serve` runs the server; the other commands manage tenants, keys and tools on the
//! same database without a running server.

mod oauth;
mod openapi;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};
use toolplane_core::{InvokeOptions, MessagePayload, ToolProviderType, collect_messages};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_server::plugin_tools::CatalogTools;
use toolplane_server::{AppState, AppStateParts, ServerConfig, Settings};
use toolplane_store::{BlobConfig, BlobStore, Store};

/// toolplane: a tool and plugin platform for LLM applications, compatible with Dify.
#[derive(Parser)]
#[command(name = "toolplane", version, about, propagate_version = true)]
struct Cli {
    /// A TOML file of settings; keys are the environment variable names (the environment wins).
    #[arg(long, global = true, env = "TOOLPLANE_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: console API, /v1 API and health, on SQLite and a local data folder by default.
    Serve,
    /// Create or upgrade the database schema.
    Migrate,
    /// Manage tenants (workspaces).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// List and invoke tools.
    #[command(subcommand)]
    Tool(ToolCommand),
    /// Inspect OpenAPI / Swagger / OpenAI-plugin specs as API tools, or import them into a tenant.
    #[command(subcommand)]
    Openapi(openapi::OpenapiCommand),
    /// Administer OAuth clients of tool providers (system clients).
    #[command(subcommand)]
    Oauth(oauth::OauthCommand),
    /// Create, package, sign and inspect Dify plugin packages (.difypkg).
    #[command(subcommand)]
    Plugin(toolplane_daemon::cli::PluginCommand),
    /// Run only the Dify-compatible plugin daemon (as dify-plugin-daemon; SERVER_HOST:SERVER_PORT, default 0.0.0.0:5002).
    Daemon,
    /// Serve tools over MCP.
    #[command(subcommand)]
    Mcp(McpCommand),
}

#[derive(Subcommand)]
enum McpCommand {
    /// Serve a tenant's tools to a desktop MCP client over stdin/stdout (logs go to stderr).
    Stdio {
        #[command(flatten)]
        tenant: TenantArg,
        /// The tenant's MCP server (name or server code) whose tools to serve; every tool of the tenant when absent.
        #[arg(long)]
        server: Option<String>,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and its encryption key pair.
    Create {
        /// The tenant's name.
        name: String,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Replace a tenant's key pair. Stored credentials can no longer be decrypted and are deleted.
    RotateKey {
        /// Tenant id or name.
        tenant: String,
        /// Confirm that the tenant's stored credentials will be deleted.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key; it is printed once.
    Create {
        /// Tenant id or name the key belongs to.
        #[arg(long, conflicts_with = "admin")]
        tenant: Option<String>,
        /// Create an admin key instead (manages tenants and keys).
        #[arg(long)]
        admin: bool,
        /// A name to recognise the key by.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

#[derive(Args)]
struct TenantArg {
    /// Tenant id or name.
    #[arg(long, default_value = toolplane_server::state::DEFAULT_TENANT_NAME)]
    tenant: String,
}

#[derive(Subcommand)]
enum ToolCommand {
    /// List the tenant's providers and tools.
    List {
        #[command(flatten)]
        tenant: TenantArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Invoke a tool: `toolplane tool invoke time/current_time -p timezone=Asia/Tokyo`.
    Invoke {
        /// `<provider>/<tool>`; the tool name is the part after the last `/`.
        target: String,
        /// A parameter as key=value; values that parse as JSON (numbers, true/false, objects) are passed typed.
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Provider type.
        #[arg(long = "type", default_value = "builtin")]
        provider_type: String,
        /// Use this credential instead of the provider's default.
        #[arg(long)]
        credential: Option<String>,
        #[command(flatten)]
        tenant: TenantArg,
        /// Print every message as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    // The plugin sandbox launcher (hidden, not a clap command): the runtime spawns `toolplane __plugin-sandbox
    // <policy> -- <plugin command>`. Handled before tokio starts, so the launcher stays one thread and execs fast.
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|a| a == toolplane_runtime::sandbox::LAUNCHER_COMMAND)
    {
        return toolplane_runtime::sandbox::launcher_main(&args.collect::<Vec<_>>());
    }
    cli_main()
}

#[tokio::main]
async fn cli_main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("TOOLPLANE_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    let config = ServerConfig::from_settings(&settings)?;
    match cli.command {
        Command::Migrate => {
            let store = Store::connect(&config.database_url).await?;
            store.migrate().await?;
            println!("database is up to date ({})", describe_backend(&store));
            Ok(())
        }
        Command::Serve => serve(settings, config).await,
        Command::Tenant(command) => tenant_command(command, open(&settings, config).await?).await,
        Command::Key(command) => key_command(command, open(&settings, config).await?).await,
        Command::Tool(command) => tool_command(command, open(&settings, config).await?).await,
        Command::Openapi(command) => openapi_command(command, &settings, config).await,
        Command::Oauth(command) => oauth::run(command, open(&settings, config).await?).await,
        Command::Plugin(command) => toolplane_daemon::cli::run(command).await,
        Command::Daemon => run_daemon(settings, config).await,
        Command::Mcp(command) => mcp_command(command, open(&settings, config).await?).await,
    }
}

fn describe_backend(store: &Store) -> &'static str {
    match store.backend() {
        toolplane_store::Backend::Sqlite => "SQLite",
        toolplane_store::Backend::Postgres => "PostgreSQL",
    }
}

/// Connects storage, migrates, and wires the services the way the server does.
async fn open(settings: &Settings, config: ServerConfig) -> Result<AppState> {
    let store = Store::connect(&config.database_url)
        .await
        .with_context(|| "cannot open the database (DATABASE_URL)")?;
    store.migrate().await.context("cannot migrate the database")?;
    let blobs = open_blobs(settings, &config)?;
    let net = NetConfig::from_lookup(settings.lookup())?;
    let client = SafeClient::new(net.clone())?;
    let builtin = toolplane_builtin::providers(client);
    // Plugins call back into the catalog, which itself lists the plugins: bind the view once the state exists.
    let catalog_tools = CatalogTools::new();
    let runtime = plugin_runtime(settings, &config, Some(catalog_tools.clone()));
    let daemon = open_daemon(settings, &config, blobs.clone(), runtime).await?;
    let state = AppState::from_parts(AppStateParts {
        config,
        store,
        blobs,
        builtin,
        net,
        daemon: Some(daemon),
    });
    catalog_tools.bind(&state.catalog);
    Ok(state)
}

/// The plugin runtime (`PLUGIN_WORKING_PATH`, `PLUGIN_IDLE_TIMEOUT`, …). `tools` lets plugins call toolplane's tools.
fn plugin_runtime(
    settings: &Settings,
    config: &ServerConfig,
    tools: Option<Arc<CatalogTools>>,
) -> toolplane_runtime::PluginRuntime {
    let (runtime_config, warnings) =
        toolplane_runtime::RuntimeConfig::from_lookup(&config.data_dir, |name| settings.get(name).map(str::to_owned));
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let mut runtime_config = runtime_config;
    // This binary is the sandbox launcher (`__plugin-sandbox`). Without its own path the runtime cannot confine
    // plugins and refuses to start them (unless PLUGIN_SANDBOX=off), naming the problem.
    match std::env::current_exe() {
        Ok(exe) => runtime_config.sandbox_launcher = Some(toolplane_runtime::SandboxLauncher::toolplane(exe)),
        Err(e) => tracing::warn!("cannot find this executable's path ({e}); plugins cannot be sandboxed"),
    }
    let backwards = toolplane_runtime::Backwards {
        storage: Some(Arc::new(toolplane_runtime::FsStorage::new(
            config.data_dir.join("plugin-storage"),
        ))),
        // Inside `toolplane serve` (where the catalog is offered) uploads land on this server's own
        // `/files/upload/for-plugin`; the standalone daemon forwards them to Dify when DIFY_INNER_API_URL is set.
        uploads: tools.is_some().then(|| {
            Arc::new(toolplane_server::plugin_uploads::PluginUploadUrls::new(
                &config.secret_key,
                &config.internal_files_url,
            )) as Arc<dyn toolplane_runtime::FileUploads>
        }),
        tools: tools.map(|t| t as Arc<dyn toolplane_runtime::ToolCatalog>),
        dify: None,
    };
    toolplane_runtime::PluginRuntime::new(runtime_config, backwards)
}

fn open_blobs(settings: &Settings, config: &ServerConfig) -> Result<BlobStore> {
    let blob_config = BlobConfig::from_vars(settings.lookup(), config.data_dir.clone())?;
    Ok(BlobStore::from_config(&blob_config)?)
}

/// The daemon's settings; `SERVER_KEY` falls back to the one kept in the data folder.
fn daemon_config(settings: &Settings, config: &ServerConfig) -> Result<toolplane_daemon::DaemonConfig> {
    let lookup = |name: &str| match name {
        "SERVER_KEY" => Some(config.server_key.clone()),
        _ => settings.get(name).map(str::to_owned),
    };
    Ok(toolplane_daemon::DaemonConfig::from_lookup(&config.data_dir, lookup)?)
}

/// The plugin daemon on the shared blob storage.
async fn open_daemon(
    settings: &Settings,
    config: &ServerConfig,
    blobs: BlobStore,
    runtime: toolplane_runtime::PluginRuntime,
) -> Result<toolplane_daemon::DaemonState> {
    toolplane_daemon::DaemonState::open_with_runtime(daemon_config(settings, config)?, blobs, runtime)
        .await
        .context("cannot open the plugin daemon's database (PLUGIN_DB_URL)")
}

async fn run_daemon(settings: Settings, config: ServerConfig) -> Result<()> {
    let blobs = open_blobs(&settings, &config)?;
    let daemon_config = daemon_config(&settings, &config)?;
    let listen = daemon_config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (SERVER_HOST/SERVER_PORT)"))?;
    let local = listener.local_addr()?;
    let runtime = plugin_runtime(&settings, &config, None);
    let state = toolplane_daemon::DaemonState::open_with_runtime(daemon_config, blobs, runtime).await?;
    println!("toolplane plugin daemon is listening on http://{local}");
    let debugging = start_remote_debugging(&state).await;
    toolplane_daemon::serve_daemon(listener, state.clone(), shutdown_signal()).await?;
    stop_remote_debugging(debugging).await;
    if let Some(runtime) = state.runtime() {
        runtime.shutdown().await;
    }
    Ok(())
}

/// A running remote-debugging listener: a stop signal and its task.
type RemoteDebugging = Option<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), toolplane_daemon::DaemonError>>,
)>;

/// Starts the remote-debugging listener (`PLUGIN_REMOTE_INSTALLING_HOST:PORT`) unless it is disabled. A port that
/// cannot be bound turns remote debugging off with a warning instead of stopping the server: everything else works
/// without it.
async fn start_remote_debugging(state: &toolplane_daemon::DaemonState) -> RemoteDebugging {
    if !state.config().remote.enabled {
        return None;
    }
    let listener = match toolplane_daemon::bind_remote_debugging(state).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("warning: remote plugin debugging is off: {e}");
            tracing::warn!(error = %e, "remote plugin debugging is off");
            return None;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("  remote plugin debugging: {addr} (keys: POST /plugin/<tenant_id>/debugging/key)"),
        Err(e) => tracing::warn!(error = %e, "remote debugging listener address unknown"),
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(toolplane_daemon::serve_remote_debugging(
        listener,
        state.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    Some((stop, task))
}

/// Closes the debugging connections and waits for their installations to be removed.
async fn stop_remote_debugging(debugging: RemoteDebugging) {
    if let Some((stop, task)) = debugging {
        let _ = stop.send(());
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "remote plugin debugging failed"),
            Err(e) => tracing::error!(error = %e, "remote plugin debugging task failed"),
        }
    }
}

async fn serve(settings: Settings, config: ServerConfig) -> Result<()> {
    let bind = config.bind;
    let console_url = config.console_api_url.clone();
    let state_data_dir = config.data_dir.clone();
    let state = open(&settings, config).await?;
    if let Some(first) = state.bootstrap().await? {
        println!(
            "First start: created the tenant \"default\" ({}) and an admin API key.",
            first.default_tenant_id
        );
        println!("Admin API key (shown once, store it now): {}", first.admin_key);
    }
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} (TOOLPLANE_BIND)"))?;
    let local = listener.local_addr()?;
    println!("toolplane is listening on http://{local}");
    let debugging = match state.daemon.as_ref() {
        Some(daemon) => start_remote_debugging(daemon).await,
        None => None,
    };
    println!("  health:       http://{local}/health");
    println!("  console API:  {console_url}/console/api/workspaces/current/tool-providers");
    println!("  invoke:       http://{local}/v1/tools/invoke");
    println!("  API document: http://{local}/v1/openapi.json");
    println!(
        "  plugin daemon: http://{local}/plugin/<tenant_id>/management/... (X-Api-Key: SERVER_KEY, kept in {})",
        state_data_dir.join("server_key").display()
    );
    tracing::info!(%local, "server started");
    toolplane_server::serve(listener, state.clone(), shutdown_signal()).await?;
    stop_remote_debugging(debugging).await;
    if let Some(runtime) = state.daemon.as_ref().and_then(|d| d.runtime()) {
        runtime.shutdown().await;
    }
    tracing::info!("server stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing running requests");
}

/// Finds a tenant by id or name.
async fn find_tenant(state: &AppState, tenant: &str) -> Result<toolplane_store::TenantRecord> {
    let tenants = state.store.tenants();
    if let Some(found) = tenants.get(tenant).await? {
        return Ok(found);
    }
    if let Some(found) = tenants.find_by_name(tenant).await? {
        return Ok(found);
    }
    if tenant == toolplane_server::state::DEFAULT_TENANT_NAME {
        bail!(
            "the default tenant does not exist yet: run `toolplane serve` once, or create one with `toolplane tenant create <name>`"
        );
    }
    bail!("tenant {tenant:?} not found (give its id or name; `toolplane tenant list` shows them)")
}

async fn tenant_command(command: TenantCommand, state: AppState) -> Result<()> {
    match command {
        TenantCommand::Create { name } => {
            let tenant = state.create_tenant(&name).await?;
            println!("created tenant {} ({})", tenant.name, tenant.id);
        }
        TenantCommand::List { json } => {
            let tenants = state.store.tenants().list().await?;
            if json {
                let rows: Vec<Value> = tenants.iter().map(|t| json!({"id": t.id, "name": t.name})).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for t in tenants {
                    println!("{}\t{}", t.id, t.name);
                }
            }
        }
        TenantCommand::RotateKey { tenant, yes } => {
            let tenant = find_tenant(&state, &tenant).await?;
            if !yes {
                bail!(
                    "rotating the key pair of tenant {:?} deletes all of its stored credentials; run again with --yes to proceed",
                    tenant.name
                );
            }
            let cleared = state.keys.rotate(&tenant.id).await?;
            println!("rotated the key pair of tenant {}", tenant.name);
            eprintln!("warning: {cleared} stored credential(s) were deleted; add them again");
        }
    }
    Ok(())
}

async fn key_command(command: KeyCommand, state: AppState) -> Result<()> {
    let KeyCommand::Create { tenant, admin, name } = command;
    let tenant_id = match (tenant, admin) {
        (_, true) => None,
        (Some(tenant), false) => Some(find_tenant(&state, &tenant).await?.id),
        (None, false) => bail!("say which tenant the key is for (--tenant <id or name>) or pass --admin"),
    };
    let (_, key) = state.create_api_key(tenant_id.as_deref(), &name).await?;
    println!("{key}");
    eprintln!("store this key now: it is not shown again");
    Ok(())
}

async fn tool_command(command: ToolCommand, state: AppState) -> Result<()> {
    match command {
        ToolCommand::List { tenant, json } => {
            let tenant = find_tenant(&state, &tenant.tenant).await?;
            let providers = state.catalog.providers(&tenant.id, None).await?;
            let mut listing = Vec::new();
            for provider in providers {
                let tools = provider.tools().await?;
                let names: Vec<String> = tools.iter().map(|t| t.entity().identity.name.clone()).collect();
                listing.push((provider.provider_type(), provider.id().to_owned(), names));
            }
            if json {
                let rows: Vec<Value> = listing
                    .iter()
                    .map(|(kind, id, tools)| json!({"provider_type": kind, "provider_id": id, "tools": tools}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for (kind, id, tools) in listing {
                    for tool in tools {
                        println!("{kind}\t{id}/{tool}");
                    }
                }
            }
        }
        ToolCommand::Invoke {
            target,
            params,
            provider_type,
            credential,
            tenant,
            json,
        } => {
            let (provider, tool) = target
                .rsplit_once('/')
                .with_context(|| format!("{target:?} is not <provider>/<tool>, e.g. time/current_time"))?;
            let kind: ToolProviderType = provider_type.parse().map_err(anyhow::Error::msg)?;
            let tenant = find_tenant(&state, &tenant.tenant).await?;
            let parameters = parse_params(&params)?;
            let resolved = state
                .catalog
                .runtime(&tenant.id, kind, provider, tool, credential.as_deref())
                .await?;
            let options = InvokeOptions {
                timeout: Some(state.config.invoke_timeout),
                ..InvokeOptions::default()
            };
            let stream = toolplane_core::invoke(resolved.tool, resolved.runtime, parameters, options).await?;
            let messages = collect_messages(stream).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&messages)?);
            } else {
                for message in messages {
                    match &message.payload {
                        MessagePayload::Text(t) => println!("{}", t.text),
                        _ => println!("{}", serde_json::to_string(&message)?),
                    }
                }
            }
        }
    }
    Ok(())
}

async fn openapi_command(command: openapi::OpenapiCommand, settings: &Settings, config: ServerConfig) -> Result<()> {
    let net = NetConfig::from_lookup(settings.lookup())?;
    match command {
        openapi::OpenapiCommand::Inspect { source, json } => openapi::inspect(&source, json, &net).await,
        openapi::OpenapiCommand::Import {
            source,
            tenant,
            name,
            auth_type,
            api_key,
            api_key_header,
            api_key_header_prefix,
            api_key_query_param,
            labels,
        } => {
            let state = open(settings, config).await?;
            let tenant = find_tenant(&state, &tenant).await?;
            let flags = openapi::ImportFlags {
                auth_type,
                api_key,
                api_key_header,
                api_key_header_prefix,
                api_key_query_param,
            };
            openapi::import(&state, &tenant.id, &source, &name, &flags, labels, &net).await
        }
    }
}

/// `key=value` pairs; a value that parses as JSON is passed typed, anything else as a string.
fn parse_params(params: &[String]) -> Result<Map<String, Value>> {
    let mut out = BTreeMap::new();
    for param in params {
        let (key, value) = param
            .split_once('=')
            .with_context(|| format!("parameter {param:?} is not key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            bail!("parameter {param:?} has an empty name");
        }
        let value = serde_json::from_str::<Value>(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        out.insert(key.to_owned(), value);
    }
    Ok(out.into_iter().collect())
}

/// `toolplane mcp …`.
async fn mcp_command(command: McpCommand, state: AppState) -> Result<()> {
    match command {
        McpCommand::Stdio { tenant, server } => {
            let tenant = find_tenant(&state, &tenant.tenant).await?;
            let server = state
                .mcp_servers
                .local_server(state.catalog.clone(), &tenant.id, server.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!(tenant = %tenant.name, "serving MCP over stdio");
            // stdout carries only protocol messages; tracing writes to stderr.
            toolplane_mcp::serve_stdio(server, tokio::io::stdin(), tokio::io::stdout())
                .await
                .context("the MCP stdio connection failed")?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_typed_when_they_parse_as_json() {
        let p = parse_params(&[
            "n=3".into(),
            "flag=false".into(),
            "tz=Asia/Tokyo".into(),
            "empty=".into(),
        ])
        .unwrap();
        assert_eq!(p["n"], json!(3));
        assert_eq!(p["flag"], json!(false));
        assert_eq!(p["tz"], json!("Asia/Tokyo"));
        assert_eq!(p["empty"], json!(""));
        assert!(
            parse_params(&["novalue".into()])
                .unwrap_err()
                .to_string()
                .contains("not key=value")
        );
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
