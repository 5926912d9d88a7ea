//! Shared state of the HTTP server and the CLI: storage, the catalog, credentials and keys.

use std::sync::Arc;

use toolplane_core::{Catalog, ProviderSource, StaticSource, ToolProvider, ToolProviderType};
use toolplane_daemon::{DaemonState, PluginProviderSource};
use toolplane_net::NetConfig;
use toolplane_store::{BlobStore, Store};

use crate::api_tools::{ApiProviderSource, ApiTools};
use crate::auth::{KeyCache, hash_key, key_display_prefix, new_api_key};
use crate::config::ServerConfig;
use crate::credentials::Credentials;
use crate::error::ApiError;
use crate::tenant_keys::TenantKeys;
use crate::tool_files::ToolFileManager;

/// Name of the tenant created on first start.
pub const DEFAULT_TENANT_NAME: &str = "default";
const ADMIN_KEY_MARKER: &str = "admin_key_created";

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub blobs: BlobStore,
    pub catalog: Arc<Catalog>,
    pub credentials: Arc<Credentials>,
    pub keys: Arc<TenantKeys>,
    pub config: Arc<ServerConfig>,
    /// API tools imported from OpenAPI specs (console routes and the catalog's `api` source).
    pub api_tools: Arc<ApiTools>,
    /// Verified API keys, so authentication does not query the database on every request.
    pub key_cache: Arc<KeyCache>,
    /// Workflows and workflow tools (console routes and the catalog's `workflow` source).
    pub workflows: Arc<crate::workflows::Workflows>,
    /// The Dify-compatible plugin daemon, when it runs beside the console (`/plugin/...` routes).
    pub daemon: Option<DaemonState>,
    /// Tool files: storage, signed URLs and the message transformer.
    pub tool_files: Arc<ToolFileManager>,
    /// API-based extensions (console CRUD and the requestor).
    pub extensions: Arc<crate::extensions::Extensions>,
    /// OAuth clients and flows of tool providers.
    pub oauth: Arc<crate::oauth::OAuth>,
    /// MCP servers used as tool providers (console routes and the catalog's `mcp` source).
    pub mcp_providers: Arc<crate::mcp_providers::McpProviders>,
    /// toolplane's own MCP servers (console routes and the `/mcp/server/...` resolver).
    pub mcp_servers: Arc<crate::mcp_servers::McpServers>,
}

/// Everything [`AppState::from_parts`] wires together.
pub struct AppStateParts {
    pub config: ServerConfig,
    pub store: Store,
    pub blobs: BlobStore,
    /// The compiled-in providers (tests may add their own).
    pub builtin: Vec<Arc<dyn ToolProvider>>,
    /// Outbound HTTP configuration (SSRF exceptions, limits) for API tools.
    pub net: NetConfig,
    /// The plugin daemon: its routes are served and its installed plugin tools join the catalog.
    pub daemon: Option<DaemonState>,
}

/// What the first start created; the admin key is shown once and never stored in clear.
#[derive(Debug, Clone)]
pub struct FirstStart {
    pub admin_key: String,
    pub default_tenant_id: String,
}

impl AppState {
    /// Wires the services together. `builtin` are the compiled-in providers (tests may add their own); `net` is
    /// the outbound HTTP configuration (SSRF exceptions, limits) API tools call their services with.
    pub fn new(
        config: ServerConfig,
        store: Store,
        blobs: BlobStore,
        builtin: Vec<Arc<dyn ToolProvider>>,
        net: NetConfig,
    ) -> Self {
        Self::from_parts(AppStateParts {
            config,
            store,
            blobs,
            builtin,
            net,
            daemon: None,
        })
    }

    /// Wires the services together from their parts.
    pub fn from_parts(parts: AppStateParts) -> Self {
        let AppStateParts {
            config,
            store,
            blobs,
            builtin,
            net,
            daemon,
        } = parts;
        let keys = Arc::new(TenantKeys::new(store.clone(), blobs.clone()));
        let (workflows, workflow_invoker) = crate::workflows::build(store.clone(), &net);
        let oauth = Arc::new(
            crate::oauth::OAuth::new(
                store.clone(),
                keys.clone(),
                &config.secret_key,
                &config.console_api_url,
                net.clone(),
            )
            .with_plugin_daemon(daemon.clone()),
        );
        let credentials = Arc::new(Credentials::with_oauth(store.clone(), keys.clone(), oauth.clone()));
        let extensions = Arc::new(crate::extensions::Extensions::new(
            store.clone(),
            keys.clone(),
            net.clone(),
        ));
        let tool_files = Arc::new(ToolFileManager::new(
            store.clone(),
            blobs.clone(),
            &config.secret_key,
            &config.files_url,
            &config.internal_files_url,
            config.files_access_timeout,
            net.clone(),
        ));
        let mcp_providers = Arc::new(crate::mcp_providers::McpProviders::new(
            store.clone(),
            keys.clone(),
            net.clone(),
            &config.console_api_url,
        ));
        let mcp_servers = Arc::new(crate::mcp_servers::McpServers::new(store.clone()));
        let api_tools = Arc::new(ApiTools::new(store.clone(), keys.clone(), net));
        let mut sources: Vec<Arc<dyn ProviderSource>> = vec![
            Arc::new(StaticSource::new(ToolProviderType::Builtin, builtin)),
            Arc::new(ApiProviderSource::new(api_tools.clone())),
            Arc::new(crate::workflows::WorkflowProviderSource::new(workflows.clone())),
            Arc::new(crate::mcp_providers::McpProviderSource::new(mcp_providers.clone())),
        ];
        if let Some(daemon) = &daemon {
            sources.push(Arc::new(PluginProviderSource::new(daemon.clone())));
        }
        let catalog = Catalog::new(
            sources,
            credentials.clone(),
            config.tool_positions.clone(),
            config.provider_positions.clone(),
        );
        let catalog = Arc::new(catalog);
        // Tool nodes of workflows call tools through this catalog (the invoker holds a weak reference).
        workflow_invoker.set_catalog(&catalog);
        Self {
            store,
            blobs,
            catalog,
            credentials,
            keys,
            config: Arc::new(config),
            api_tools,
            key_cache: Arc::new(KeyCache::default()),
            workflows,
            daemon,
            tool_files,
            extensions,
            oauth,
            mcp_providers,
            mcp_servers,
        }
    }

    /// On the very first start: creates the default tenant and an admin key. Later starts return `None`.
    pub async fn bootstrap(&self) -> Result<Option<FirstStart>, ApiError> {
        if self.store.settings().get(ADMIN_KEY_MARKER).await?.is_some() {
            return Ok(None);
        }
        let tenant = match self.store.tenants().find_by_name(DEFAULT_TENANT_NAME).await? {
            Some(tenant) => tenant,
            None => self.create_tenant(DEFAULT_TENANT_NAME).await?,
        };
        let admin_key = new_api_key();
        // Claim the marker first so two nodes starting at once do not both create admin keys.
        if !self.store.settings().set_if_absent(ADMIN_KEY_MARKER, "1").await? {
            return Ok(None);
        }
        self.store
            .api_keys()
            .create(None, "admin", &hash_key(&admin_key), &key_display_prefix(&admin_key))
            .await?;
        Ok(Some(FirstStart {
            admin_key,
            default_tenant_id: tenant.id,
        }))
    }

    /// Creates a tenant with its key pair.
    pub async fn create_tenant(&self, name: &str) -> Result<toolplane_store::TenantRecord, ApiError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ApiError::invalid("tenant name must not be empty"));
        }
        let tenant = self.store.tenants().create(name).await?;
        self.keys.create(&tenant.id).await?;
        Ok(tenant)
    }

    /// Issues an API key for a tenant (or an admin key for `None`); returns the record and the key in clear. A tenant
    /// key acts as the tenant's account named `name` (created when missing).
    pub async fn create_api_key(
        &self,
        tenant_id: Option<&str>,
        name: &str,
    ) -> Result<(toolplane_store::ApiKeyRecord, String), ApiError> {
        if let Some(id) = tenant_id
            && self.store.tenants().get(id).await?.is_none()
        {
            return Err(ApiError::not_found(format!("tenant {id:?} not found")));
        }
        let key = new_api_key();
        let mut record = self
            .store
            .api_keys()
            .create(tenant_id, name, &hash_key(&key), &key_display_prefix(&key))
            .await?;
        if let Some(tenant_id) = tenant_id {
            // A tenant key acts as the account of the same name, created on first use; the tenant's first account
            // is its owner.
            let accounts = self.store.accounts();
            let account = match accounts.find_by_name(tenant_id, name).await? {
                Some(account) => account,
                None => {
                    let role = if accounts.list(tenant_id).await?.is_empty() {
                        "owner"
                    } else {
                        "normal"
                    };
                    accounts.create(tenant_id, name, role).await?
                }
            };
            self.store
                .api_keys()
                .set_account(tenant_id, &record.id, &account.id)
                .await?;
            record.account_id = Some(account.id);
        }
        Ok((record, key))
    }
}
