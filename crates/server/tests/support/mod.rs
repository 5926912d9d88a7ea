//! A real toolplane server on loopback for integration tests: SQLite in a temp folder (or a fresh PostgreSQL
//! schema), local blobs, the builtin providers plus a test provider that needs an API key, two tenants with keys.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use sqlx::{Connection, Executor};
use tokio_util::sync::CancellationToken;
use toolplane_core::{
    I18nObject, MessageStream, ProviderConfig, ProviderConfigOption, ProviderConfigType, Tool, ToolEntity, ToolError,
    ToolIdentity, ToolInvokeMessage, ToolParameter, ToolParameterForm, ToolParameterType, ToolProvider,
    ToolProviderEntity, ToolProviderIdentity, ToolProviderType, ToolRuntime,
};
use toolplane_net::{NetConfig, SafeClient};
use toolplane_server::{AppState, ServerConfig, Settings};
use toolplane_store::{BlobConfig, BlobStore, Store};

pub const PG_ENV: &str = "TOOLPLANE_TEST_POSTGRES_URL";
/// The daemon's `X-Api-Key` when [`Options::daemon`] is set.
pub const DAEMON_KEY: &str = "test-daemon-key";

/// Which database a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The PostgreSQL base URL, or a printed skip notice.
pub fn postgres_url() -> Option<String> {
    match std::env::var(PG_ENV).ok().filter(|v| !v.is_empty()) {
        Some(url) => Some(url),
        None => {
            eprintln!("skipping PostgreSQL run: set {PG_ENV}=postgres://postgres@127.0.0.1:5432/test to include it");
            None
        }
    }
}

pub struct TestServer {
    pub base: String,
    pub admin_key: String,
    pub tenant_a: String,
    pub key_a: String,
    pub tenant_b: String,
    pub key_b: String,
    pub state: AppState,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pg_schema: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

pub struct Options {
    pub db: Db,
    /// Let outbound tool requests reach 127.0.0.0/8 (the SSRF guard refuses loopback by default).
    pub allow_loopback: bool,
    pub extra: Vec<(&'static str, String)>,
    /// Run the plugin daemon beside the console, as `toolplane serve` does.
    pub daemon: bool,
    /// Extra builtin providers for this test.
    pub providers: Vec<Arc<dyn ToolProvider>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            db: Db::Sqlite,
            allow_loopback: true,
            extra: Vec::new(),
            daemon: false,
            providers: Vec::new(),
        }
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut pairs: Vec<(String, String)> = vec![
            ("TOOLPLANE_DATA_DIR".into(), dir.path().display().to_string()),
            ("TOOLPLANE_BIND".into(), "127.0.0.1:0".into()),
            ("SECRET_KEY".into(), "test-secret".into()),
            ("TOOLPLANE_MAX_BODY_BYTES".into(), "65536".into()),
        ];
        let mut pg_schema = None;
        if options.db == Db::Postgres {
            let base = postgres_url().expect("postgres requested without a URL");
            let schema = format!("srv_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .await
                .unwrap();
            admin.close().await.ok();
            let sep = if base.contains('?') { '&' } else { '?' };
            pairs.push((
                "DATABASE_URL".into(),
                format!("{base}{sep}options=-c%20search_path%3D{schema}"),
            ));
            pg_schema = Some((base, schema));
        }
        if options.allow_loopback {
            pairs.push(("SSRF_ALLOWED_NETWORKS".into(), "127.0.0.0/8".into()));
        }
        pairs.extend(options.extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let settings = Settings::from_pairs(pairs);
        let config = ServerConfig::from_settings(&settings).unwrap();
        let store = Store::connect(&config.database_url).await.unwrap();
        store.migrate().await.unwrap();
        let blobs = BlobStore::from_config(&BlobConfig::from_vars(settings.lookup(), config.data_dir.clone()).unwrap())
            .unwrap();
        let net = NetConfig::from_lookup(settings.lookup()).unwrap();
        let client = SafeClient::new(net.clone()).unwrap();
        let mut providers = toolplane_builtin::providers(client);
        providers.push(Arc::new(KeyedProvider::new()));
        providers.extend(options.providers);
        let daemon = if options.daemon {
            let mut daemon_config = toolplane_daemon::DaemonConfig::new(
                DAEMON_KEY,
                format!("sqlite://{}/plugin.db?mode=rwc", dir.path().display()),
                dir.path().join("plugin-storage"),
            );
            // Test packages are unsigned (FORCE_VERIFYING_SIGNATURE=false).
            daemon_config.verifier.force_verifying_signature = false;
            Some(
                toolplane_daemon::DaemonState::open(daemon_config, blobs.clone())
                    .await
                    .unwrap(),
            )
        } else {
            None
        };
        let state = AppState::from_parts(toolplane_server::AppStateParts {
            config,
            store,
            blobs,
            builtin: providers,
            net,
            daemon,
        });
        let first = state
            .bootstrap()
            .await
            .unwrap()
            .expect("first start creates an admin key");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(toolplane_server::serve(listener, state.clone(), async {
            rx.await.ok();
        }));
        let http = reqwest::Client::new();
        let mut server = Self {
            base,
            admin_key: first.admin_key,
            tenant_a: String::new(),
            key_a: String::new(),
            tenant_b: String::new(),
            key_b: String::new(),
            state,
            http,
            shutdown: Some(tx),
            task: Some(task),
            pg_schema,
            _dir: dir,
        };
        (server.tenant_a, server.key_a) = server.new_tenant("tenant-a").await;
        (server.tenant_b, server.key_b) = server.new_tenant("tenant-b").await;
        server
    }

    /// Creates a tenant and a key for it through the admin API.
    pub async fn new_tenant(&self, name: &str) -> (String, String) {
        let tenant = self
            .http
            .post(self.url("/v1/tenants"))
            .bearer_auth(&self.admin_key)
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(tenant.status(), 201);
        let tenant: Value = tenant.json().await.unwrap();
        let id = tenant["id"].as_str().unwrap().to_owned();
        let key: Value = self
            .http
            .post(self.url(&format!("/v1/tenants/{id}/keys")))
            .bearer_auth(&self.admin_key)
            .json(&json!({"name": "test"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (id, key["key"].as_str().unwrap().to_owned())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn console(&self, path: &str) -> String {
        self.url(&format!("/console/api/workspaces/current{path}"))
    }

    pub async fn get(&self, key: &str, url: &str) -> (u16, Value) {
        let response = self.http.get(url).bearer_auth(key).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, key: &str, url: &str, body: Value) -> (u16, Value) {
        let response = self.http.post(url).bearer_auth(key).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn invoke(&self, key: &str, provider: &str, tool: &str, parameters: Value) -> (u16, Value) {
        self.post(
            key,
            &self.url("/v1/tools/invoke"),
            json!({"provider_type": "builtin", "provider_id": provider, "tool": tool, "parameters": parameters}),
        )
        .await
    }

    /// Stops the server gracefully and drops the PostgreSQL schema.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.state.store.close().await;
        if let Some((base, schema)) = self.pg_schema.take() {
            let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
            admin
                .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .await
                .unwrap();
            admin.close().await.ok();
        }
    }
}

/// The first text message of an invoke response.
pub fn first_text(body: &Value) -> &str {
    body["messages"][0]["message"]["text"].as_str().unwrap_or_default()
}

/// A provider that needs an API key (secret) and a region (select); its `whoami` tool echoes them, so tests can
/// see which tenant's decrypted credential reached the tool.
pub struct KeyedProvider {
    entity: ToolProviderEntity,
    tool: Arc<dyn Tool>,
}

impl KeyedProvider {
    pub fn new() -> Self {
        let mut region = ProviderConfig::new("region", ProviderConfigType::Select);
        region.options = Some(vec![
            ProviderConfigOption {
                value: "eu".into(),
                label: I18nObject::new("EU"),
            },
            ProviderConfigOption {
                value: "us".into(),
                label: I18nObject::new("US"),
            },
        ]);
        region.default = Some(json!("eu"));
        let entity = ToolProviderEntity {
            identity: ToolProviderIdentity {
                author: "tests".into(),
                name: "keyed".into(),
                description: I18nObject::new("A provider that needs an API key"),
                icon: "icon.svg".into(),
                icon_dark: None,
                label: I18nObject::new("Keyed"),
                tags: vec![],
            },
            plugin_id: None,
            credentials_schema: vec![
                ProviderConfig::new("api_key", ProviderConfigType::SecretInput).required(),
                region,
            ],
            oauth_schema: None,
        };
        let tool = Arc::new(WhoAmI {
            entity: ToolEntity {
                identity: ToolIdentity {
                    author: "tests".into(),
                    name: "whoami".into(),
                    label: I18nObject::new("Who am I"),
                    provider: "keyed".into(),
                    icon: None,
                },
                parameters: vec![
                    ToolParameter::new("repeat", ToolParameterType::Number, ToolParameterForm::Llm).default_value(1),
                ],
                description: None,
                output_schema: Map::new(),
                has_runtime_parameters: false,
            },
        });
        Self { entity, tool }
    }
}

#[async_trait]
impl ToolProvider for KeyedProvider {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Builtin
    }
    fn id(&self) -> &str {
        "keyed"
    }
    fn entity(&self) -> &ToolProviderEntity {
        &self.entity
    }
    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        Ok(vec![self.tool.clone()])
    }
    async fn validate_credentials(&self, credentials: &Map<String, Value>) -> Result<(), ToolError> {
        // Stands in for the remote check a real provider makes.
        if credentials.get("api_key").and_then(Value::as_str) == Some("rejected-by-remote") {
            return Err(ToolError::CredentialValidation(
                "the service rejected this API key".into(),
            ));
        }
        Ok(())
    }
}

struct WhoAmI {
    entity: ToolEntity,
}

#[async_trait]
impl Tool for WhoAmI {
    fn entity(&self) -> &ToolEntity {
        &self.entity
    }
    async fn invoke(
        &self,
        runtime: ToolRuntime,
        parameters: Map<String, Value>,
        _cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let text = format!(
            "tenant={} key={} region={}",
            runtime.tenant_id,
            runtime
                .credentials
                .get("api_key")
                .and_then(Value::as_str)
                .unwrap_or("-"),
            runtime.credentials.get("region").and_then(Value::as_str).unwrap_or("-"),
        );
        let repeat = parameters.get("repeat").and_then(Value::as_u64).unwrap_or(1);
        Ok(futures::stream::iter((0..repeat).map(move |_| Ok(ToolInvokeMessage::text(text.clone())))).boxed())
    }
}

/// A provider whose `emit` tool yields file-like messages, for the tool-file transformer: `kind` is `blob`
/// (`data` as bytes with `mime`/`filename`), `chunks` (`data` split into `chunk_size`-byte blob chunks),
/// `image` (the URL in `data`) or `json`.
pub struct FilesProvider {
    entity: ToolProviderEntity,
    tool: Arc<dyn Tool>,
}

impl FilesProvider {
    pub fn new() -> Self {
        let entity = ToolProviderEntity {
            identity: ToolProviderIdentity {
                author: "tests".into(),
                name: "files".into(),
                description: I18nObject::new("Emits files"),
                icon: "icon.svg".into(),
                icon_dark: None,
                label: I18nObject::new("Files"),
                tags: vec![],
            },
            plugin_id: None,
            credentials_schema: vec![],
            oauth_schema: None,
        };
        let string = |name: &str| ToolParameter::new(name, ToolParameterType::String, ToolParameterForm::Llm);
        let tool = Arc::new(Emit {
            entity: ToolEntity {
                identity: ToolIdentity {
                    author: "tests".into(),
                    name: "emit".into(),
                    label: I18nObject::new("Emit"),
                    provider: "files".into(),
                    icon: None,
                },
                parameters: vec![
                    string("kind").required(),
                    string("data"),
                    string("mime"),
                    string("filename"),
                    ToolParameter::new("times", ToolParameterType::Number, ToolParameterForm::Llm).default_value(1),
                    ToolParameter::new("chunk_size", ToolParameterType::Number, ToolParameterForm::Llm)
                        .default_value(3),
                ],
                description: None,
                output_schema: Map::new(),
                has_runtime_parameters: false,
            },
        });
        Self { entity, tool }
    }
}

#[async_trait]
impl ToolProvider for FilesProvider {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Builtin
    }
    fn id(&self) -> &str {
        "files"
    }
    fn entity(&self) -> &ToolProviderEntity {
        &self.entity
    }
    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        Ok(vec![self.tool.clone()])
    }
}

struct Emit {
    entity: ToolEntity,
}

#[async_trait]
impl Tool for Emit {
    fn entity(&self) -> &ToolEntity {
        &self.entity
    }
    async fn invoke(
        &self,
        _runtime: ToolRuntime,
        parameters: Map<String, Value>,
        _cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let text = |name: &str| {
            parameters
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let times = parameters.get("times").and_then(Value::as_u64).unwrap_or(1).max(1) as usize;
        let data = text("data").repeat(times);
        let mime = Some(text("mime"))
            .filter(|m| !m.is_empty())
            .unwrap_or("application/octet-stream".into());
        let filename = Some(text("filename")).filter(|f| !f.is_empty());
        let messages: Vec<ToolInvokeMessage> = match text("kind").as_str() {
            "blob" => vec![ToolInvokeMessage::blob(data.into_bytes(), &mime, filename.as_deref())],
            "chunks" => {
                let size = parameters.get("chunk_size").and_then(Value::as_u64).unwrap_or(3).max(1) as usize;
                let bytes = data.into_bytes();
                let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
                let count = pieces.len();
                let mut meta = Map::new();
                meta.insert("mime_type".into(), json!(mime));
                pieces
                    .into_iter()
                    .enumerate()
                    .map(|(i, piece)| ToolInvokeMessage {
                        payload: toolplane_core::MessagePayload::BlobChunk(toolplane_core::BlobChunkMessage {
                            id: "c1".into(),
                            sequence: i as u64,
                            total_length: bytes.len() as u64,
                            blob: piece.to_vec(),
                            end: i + 1 == count,
                        }),
                        meta: Some(meta.clone()),
                    })
                    .collect()
            }
            "image" => vec![ToolInvokeMessage::image(data)],
            _ => vec![ToolInvokeMessage::json(json!({"data": data}))],
        };
        Ok(futures::stream::iter(messages.into_iter().map(Ok)).boxed())
    }
}

/// A provider that authorizes with OAuth 2.0 (an `oauth_schema` with client and credential schemas); its `me` tool
/// calls `url` with the credential's access token as a Bearer token and answers with the response body.
pub struct OAuthProvider {
    entity: ToolProviderEntity,
    tool: Arc<dyn Tool>,
}

impl OAuthProvider {
    pub fn new() -> Self {
        let text = |name: &str| ProviderConfig::new(name, ProviderConfigType::TextInput);
        let entity = ToolProviderEntity {
            identity: ToolProviderIdentity {
                author: "tests".into(),
                name: "oauthy".into(),
                description: I18nObject::new("A provider behind OAuth"),
                icon: "icon.svg".into(),
                icon_dark: None,
                label: I18nObject::new("OAuthy"),
                tags: vec![],
            },
            plugin_id: None,
            credentials_schema: vec![],
            oauth_schema: Some(toolplane_core::OAuthSchema {
                client_schema: vec![
                    text("client_id").required(),
                    ProviderConfig::new("client_secret", ProviderConfigType::SecretInput).required(),
                    text("authorization_url").required(),
                    text("token_url").required(),
                    text("scope"),
                ],
                credentials_schema: vec![
                    ProviderConfig::new("access_token", ProviderConfigType::SecretInput),
                    ProviderConfig::new("refresh_token", ProviderConfigType::SecretInput),
                ],
            }),
        };
        let tool = Arc::new(Me {
            entity: ToolEntity {
                identity: ToolIdentity {
                    author: "tests".into(),
                    name: "me".into(),
                    label: I18nObject::new("Me"),
                    provider: "oauthy".into(),
                    icon: None,
                },
                parameters: vec![
                    ToolParameter::new("url", ToolParameterType::String, ToolParameterForm::Llm).required(),
                ],
                description: None,
                output_schema: Map::new(),
                has_runtime_parameters: false,
            },
        });
        Self { entity, tool }
    }
}

#[async_trait]
impl ToolProvider for OAuthProvider {
    fn provider_type(&self) -> ToolProviderType {
        ToolProviderType::Builtin
    }
    fn id(&self) -> &str {
        "oauthy"
    }
    fn entity(&self) -> &ToolProviderEntity {
        &self.entity
    }
    async fn tools(&self) -> Result<Vec<Arc<dyn Tool>>, ToolError> {
        Ok(vec![self.tool.clone()])
    }
}

struct Me {
    entity: ToolEntity,
}

#[async_trait]
impl Tool for Me {
    fn entity(&self) -> &ToolEntity {
        &self.entity
    }
    async fn invoke(
        &self,
        runtime: ToolRuntime,
        parameters: Map<String, Value>,
        _cancel: CancellationToken,
    ) -> Result<MessageStream, ToolError> {
        let url = parameters
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let token = runtime
            .credentials
            .get("access_token")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let response = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| ToolError::Invoke(e.to_string()))?;
        let text = format!(
            "{} {}",
            response.status().as_u16(),
            response.text().await.unwrap_or_default()
        );
        Ok(futures::stream::iter([Ok(ToolInvokeMessage::text(text))]).boxed())
    }
}
