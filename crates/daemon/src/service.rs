//! The management service: uploads, install tasks, upgrades, uninstalls and the listing queries behind the HTTP
//! routes.
//!
//! # Install task state machine
//!
//! A task is created `running` with each plugin `running`. A background job then takes each plugin through:
//! 1. **environment** — unless the package already has a `plugins` row (some tenant runs it already), the package
//!    is copied from the package bucket to the installed bucket and [`PluginEnvironment::prepare`] runs (the
//!    runtime issue plugs its Python environment setup in here), bounded by [`INSTALL_TIMEOUT`];
//! 2. **record** — one database transaction adds the reference, installation and category rows.
//!
//! A plugin is `success` only when both steps succeeded; any failure makes it `failed` with the reason as its
//! message, and the task `failed` (the original could report success after its environment failed). When the
//! daemon stops mid-task, the next [`DaemonState::open`] marks the task and its unfinished plugins `failed` with a
//! message saying so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use toolplane_plugin::{DecodeLimits, PluginPackage, PluginUniqueIdentifier, SignatureCheck, decode, is_uuid};
use toolplane_runtime::{InvokeRequest, PluginRuntime, Session};
use toolplane_store::BlobStore;

use crate::bundle::{BundleLimits, Dependency, read_bundle};
use crate::config::DaemonConfig;
use crate::db::{
    InstallationRow, NewInstallation, PluginDb, ProviderCategory, ProviderRow, TaskPlugin, TaskRow, TaskStatus,
};
use crate::declaration::build_declaration;
use crate::error::DaemonError;

/// How long one plugin's environment preparation may take (the original's `PLUGIN_INSTALL_TIMEOUT`).
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// At most this many identifiers per `install/identifiers` request.
pub const MAX_IDENTIFIERS_PER_INSTALL: usize = 64;
/// The message of plugins whose task was cut short by a daemon stop.
pub const INTERRUPTED_MESSAGE: &str =
    "the plugin daemon stopped before this installation finished; install the plugin again";

/// The runtime side of installation: prepares what a plugin needs to run, and releases it when nothing refers to
/// the plugin any more. Until the runtime lands, [`NoRuntime`] accepts every plugin.
#[async_trait]
pub trait PluginEnvironment: Send + Sync {
    /// Makes the plugin runnable (e.g. creates its Python environment). An error fails the plugin's installation
    /// with the returned message.
    async fn prepare(&self, unique_identifier: &PluginUniqueIdentifier, package: &[u8]) -> Result<(), String>;

    /// [`PluginEnvironment::prepare`] that also returns notes for the install task (e.g. "Python 3.11 was
    /// requested but 3.12 stands in"), which become part of the plugin's task `message`.
    async fn prepare_with_warnings(
        &self,
        unique_identifier: &PluginUniqueIdentifier,
        package: &[u8],
    ) -> Result<Vec<String>, String> {
        self.prepare(unique_identifier, package).await.map(|()| Vec::new())
    }

    /// The plugin is no longer installed anywhere: stop it and free its resources.
    async fn release(&self, unique_identifier: &str);
}

/// A [`PluginEnvironment`] with nothing to prepare: installation records declarations only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRuntime;

#[async_trait]
impl PluginEnvironment for NoRuntime {
    async fn prepare(&self, _unique_identifier: &PluginUniqueIdentifier, _package: &[u8]) -> Result<(), String> {
        Ok(())
    }

    async fn release(&self, _unique_identifier: &str) {}
}

/// The answer of `install/identifiers` and `install/upgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallStart {
    /// True when everything was installed synchronously (no task to poll; `task_id` is empty).
    pub all_installed: bool,
    /// The install task to poll.
    pub task_id: String,
}

/// The daemon: database, blob buckets, configuration and runtime hook. Cheap to clone.
#[derive(Clone)]
pub struct DaemonState {
    inner: Arc<Inner>,
}

struct Inner {
    db: PluginDb,
    blobs: BlobStore,
    config: DaemonConfig,
    environment: Arc<dyn PluginEnvironment>,
    runtime: Option<PluginRuntime>,
    remote: Arc<crate::debugging::RemoteState>,
    started: Instant,
    /// Per-tenant key pairs that encrypt endpoint settings.
    endpoint_keys: crate::endpoints::EndpointKeys,
}

impl std::fmt::Debug for DaemonState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonState")
            .field("db", &self.inner.db.backend())
            .field("blobs", &self.inner.blobs.kind())
            .finish_non_exhaustive()
    }
}

impl DaemonState {
    /// Opens the plugin database at `config.db_url` (migrating it), uses `blobs` for the buckets, installs with
    /// [`NoRuntime`], and fails tasks a previous run left unfinished.
    pub async fn open(config: DaemonConfig, blobs: BlobStore) -> Result<Self, DaemonError> {
        Self::open_with_environment(config, blobs, Arc::new(NoRuntime)).await
    }

    /// [`DaemonState::open`] with a runtime hook.
    pub async fn open_with_environment(
        config: DaemonConfig,
        blobs: BlobStore,
        environment: Arc<dyn PluginEnvironment>,
    ) -> Result<Self, DaemonError> {
        config.verifier.public_keys()?;
        let db = PluginDb::open(&config.db_url).await?;
        let state = Self {
            inner: Arc::new(Inner {
                db,
                blobs,
                config,
                environment,
                runtime: None,
                remote: Arc::default(),
                started: Instant::now(),
                endpoint_keys: crate::endpoints::EndpointKeys::default(),
            }),
        };
        state.recover_interrupted_tasks().await?;
        Ok(state)
    }

    /// [`DaemonState::open`] with the local plugin runtime: installs prepare and start plugins, uninstalls stop
    /// them, and the dispatch routes and [`crate::PluginProviderSource`] tools run them.
    pub async fn open_with_runtime(
        config: DaemonConfig,
        blobs: BlobStore,
        runtime: PluginRuntime,
    ) -> Result<Self, DaemonError> {
        let environment = Arc::new(crate::dispatch::RuntimeEnvironment(runtime.clone()));
        let mut state = Self::open_with_environment(config, blobs, environment).await?;
        if let Some(inner) = Arc::get_mut(&mut state.inner) {
            inner.runtime = Some(runtime);
        }
        Ok(state)
    }

    /// The plugin runtime, when the daemon has one.
    pub fn runtime(&self) -> Option<&PluginRuntime> {
        self.inner.runtime.as_ref()
    }

    /// Opens a session with the plugin `plugin_id` the tenant has installed (loading it into the runtime after a
    /// daemon restart).
    pub async fn plugin_session(&self, plugin_id: &str, request: &InvokeRequest) -> Result<Session, DaemonError> {
        let runtime = self.runtime().ok_or_else(|| {
            DaemonError::Internal("this daemon runs without the plugin runtime, so plugins cannot be invoked".into())
        })?;
        let uid = self
            .inner
            .db
            .installed_unique_identifier(&request.tenant_id, plugin_id)
            .await?
            .ok_or_else(|| DaemonError::PluginNotFound("plugin not found".into()))?;
        self.session_for(runtime, &uid, request).await
    }

    /// Opens a session with an installed package by unique identifier.
    pub(crate) async fn session_for(
        &self,
        runtime: &PluginRuntime,
        uid: &str,
        request: &InvokeRequest,
    ) -> Result<Session, DaemonError> {
        if let Some(plugin) = self.remote_plugin(uid) {
            return plugin
                .invoke(request)
                .await
                .map_err(|e| DaemonError::Internal(e.to_string()));
        }
        if !runtime.is_loaded(uid) {
            // Boxed: reading the package and preparing its environment are large futures that would otherwise
            // be part of every call's future, though they run only once after a daemon restart.
            Box::pin(self.load_installed(runtime, uid)).await?;
        }
        runtime
            .invoke(uid, request)
            .await
            .map_err(|e| DaemonError::Internal(e.to_string()))
    }

    /// Loads an installed package into the runtime (after a daemon restart).
    async fn load_installed(&self, runtime: &PluginRuntime, uid: &str) -> Result<(), DaemonError> {
        let bytes = self.inner.blobs.get(&self.installed_key(uid)).await?;
        runtime
            .load(&bytes)
            .await
            .map_err(|e| DaemonError::Internal(format!("loading plugin {uid} failed: {e}")))?;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &DaemonConfig {
        &self.inner.config
    }

    /// The blob store holding the buckets.
    pub(crate) fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    /// The key pairs that encrypt endpoint settings.
    pub(crate) fn endpoint_keys(&self) -> &crate::endpoints::EndpointKeys {
        &self.inner.endpoint_keys
    }

    /// Opens a session with an uploaded package by unique identifier, whether or not any tenant installed it (the
    /// `/v2/invoke` routes): the package is prepared and loaded from the package bucket when the runtime does not
    /// have it yet.
    pub async fn stored_plugin_session(&self, uid: &str, request: &InvokeRequest) -> Result<Session, DaemonError> {
        let runtime = self.runtime().ok_or_else(|| {
            DaemonError::Internal("this daemon runs without the plugin runtime, so plugins cannot be invoked".into())
        })?;
        let parsed = PluginUniqueIdentifier::parse(uid)?;
        if !runtime.is_loaded(parsed.as_str()) {
            let (bytes, _) = self.stored_package(&parsed).await?;
            let report = runtime
                .load(&bytes)
                .await
                .map_err(|e| DaemonError::Internal(format!("loading plugin {uid} failed: {e}")))?;
            for warning in report.warnings {
                tracing::warn!(plugin = %uid, "{warning}");
            }
        }
        runtime
            .invoke(parsed.as_str(), request)
            .await
            .map_err(|e| DaemonError::Internal(e.to_string()))
    }

    /// The plugin database.
    pub fn db(&self) -> &PluginDb {
        &self.inner.db
    }

    /// Time since the state was opened.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    fn package_key(&self, uid: &str) -> String {
        format!("{}/{uid}", self.inner.config.paths.packages)
    }

    fn installed_key(&self, uid: &str) -> String {
        format!("{}/{uid}", self.inner.config.paths.installed)
    }

    /// Remote-debugging state: keys, connections, registered plugins.
    pub(crate) fn remote(&self) -> &Arc<crate::debugging::RemoteState> {
        &self.inner.remote
    }

    pub(crate) fn media_key(&self, id: &str) -> String {
        format!("{}/{id}", self.inner.config.paths.media)
    }

    async fn recover_interrupted_tasks(&self) -> Result<(), DaemonError> {
        for mut task in self.inner.db.unfinished_tasks().await? {
            for plugin in &mut task.plugins {
                if !plugin.status.is_finished() {
                    plugin.status = TaskStatus::Failed;
                    plugin.message = INTERRUPTED_MESSAGE.into();
                }
            }
            task.status = TaskStatus::Failed;
            task.completed_plugins = task.total_plugins;
            self.inner.db.save_task(&task).await?;
            tracing::warn!(task = %task.id, tenant = %task.tenant_id, "install task was interrupted by a daemon stop; marked failed");
        }
        Ok(())
    }

    fn limits(&self) -> DecodeLimits {
        DecodeLimits::with_max_size(self.inner.config.max_plugin_package_size)
    }

    // ---- upload and decode --------------------------------------------------------------------------------------

    /// Decodes and validates an uploaded package, applies the signature policy, stores the package, its assets
    /// and its declaration, and answers `{unique_identifier, manifest, verification}`.
    pub async fn upload_package(&self, bytes: &[u8], verify_signature: bool) -> Result<Value, DaemonError> {
        let (package, check) = self.prepare_package(bytes, verify_signature)?;
        let manifest = self.persist_package(bytes, &package, check.verified).await?;
        Ok(json!({
            "unique_identifier": package.unique_identifier.as_str(),
            "manifest": manifest,
            "verification": check.verification,
        }))
    }

    /// `install/upload/bundle`: reads a `.difybundle`, checks every embedded package as
    /// [`DaemonState::upload_package`] does (limits, signature policy), and only when all of them pass stores them
    /// like uploaded packages, so `install/identifiers` can install them. Answers the dependencies in declaration
    /// order: `{type: "package", value: {unique_identifier, manifest}}` for embedded packages,
    /// `{type: "github", value: {repo_address, repo, release, packages}}` and
    /// `{type: "marketplace", value: {organization, plugin, version}}` for the others, which Dify installs itself.
    pub async fn upload_bundle(&self, bytes: &[u8], verify_signature: bool) -> Result<Value, DaemonError> {
        let limits = BundleLimits {
            max_bundle_size: self.inner.config.max_bundle_package_size,
            max_package_size: self.inner.config.max_plugin_package_size,
        };
        let dependencies = read_bundle(bytes, &limits)?;

        // Check every package before storing any, so a rejected bundle leaves nothing behind.
        let mut prepared = Vec::new();
        for dependency in &dependencies {
            if let Dependency::Package(dep) = dependency {
                let (package, check) = self
                    .prepare_package(&dep.bytes, verify_signature)
                    .map_err(|e| in_bundle_package(&dep.path, e))?;
                prepared.push((dep, package, check));
            }
        }

        let mut prepared = prepared.into_iter();
        let mut out = Vec::with_capacity(dependencies.len());
        for dependency in &dependencies {
            out.push(match dependency {
                Dependency::Github(dep) => json!({"type": "github", "value": dep.to_json()}),
                Dependency::Marketplace(dep) => json!({"type": "marketplace", "value": dep.to_json()}),
                Dependency::Package(_) => {
                    let Some((dep, package, check)) = prepared.next() else {
                        // Every package dependency was prepared above, in this same order.
                        return Err(DaemonError::Internal("bundle packages out of step".into()));
                    };
                    let manifest = self.persist_package(&dep.bytes, &package, check.verified).await?;
                    json!({
                        "type": "package",
                        "value": {"unique_identifier": package.unique_identifier.as_str(), "manifest": manifest},
                    })
                }
            });
        }
        Ok(Value::Array(out))
    }

    /// Decodes a package with the upload limits and applies the upload rules and the signature policy.
    fn prepare_package(
        &self,
        bytes: &[u8],
        verify_signature: bool,
    ) -> Result<(PluginPackage, SignatureCheck), DaemonError> {
        let package = decode(bytes, &self.limits())?;
        package.check_assets()?;
        if is_uuid(&package.manifest.author) {
            return Err(DaemonError::BadRequest("cannot set author to an UUID".into()));
        }
        let check = self.inner.config.verifier.check(&package, verify_signature)?;
        Ok((package, check))
    }

    /// Stores a checked package, its assets and its declaration; answers the stored declaration.
    async fn persist_package(
        &self,
        bytes: &[u8],
        package: &PluginPackage,
        verified: bool,
    ) -> Result<Value, DaemonError> {
        let uid = package.unique_identifier.as_str();
        let (declaration, media) = build_declaration(package, verified);

        self.inner.blobs.put(&self.package_key(uid), bytes.to_vec()).await?;
        for (id, content) in media {
            let key = self.media_key(&id);
            if !self.inner.blobs.exists(&key).await? {
                self.inner.blobs.put(&key, content).await?;
            }
        }
        let readmes: Vec<(String, String)> = package.readmes().into_iter().collect();
        self.inner
            .db
            .save_declaration(uid, package.plugin_id(), &declaration, &readmes)
            .await?;
        Ok(self.inner.db.declaration(uid).await?.unwrap_or(declaration))
    }

    async fn stored_package(&self, uid: &PluginUniqueIdentifier) -> Result<(Vec<u8>, PluginPackage), DaemonError> {
        let bytes = match self.inner.blobs.get(&self.package_key(uid.as_str())).await {
            Ok(b) => b.to_vec(),
            Err(e) if e.is_not_found() => {
                return Err(DaemonError::PluginNotFound(format!(
                    "plugin package {uid} has not been uploaded; upload it with install/upload/package first"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let package = decode(&bytes, &self.limits())?;
        Ok((bytes, package))
    }

    /// `decode/from_identifier`: decodes a stored package again.
    pub async fn decode_from_identifier(&self, uid: &str) -> Result<Value, DaemonError> {
        let uid = PluginUniqueIdentifier::parse(uid)?;
        let (_, package) = self.stored_package(&uid).await?;
        let keys = self.inner.config.verifier.public_keys()?;
        let verification = package.verify_signature(&keys).ok().map(|r| r.effective_verification());
        let manifest = match self.inner.db.declaration(uid.as_str()).await? {
            Some(d) => d,
            None => build_declaration(&package, verification.is_some()).0,
        };
        Ok(json!({"unique_identifier": uid.as_str(), "manifest": manifest, "verification": verification}))
    }

    /// `fetch/manifest`: the stored declaration.
    pub async fn manifest(&self, uid: &str) -> Result<Value, DaemonError> {
        let uid = PluginUniqueIdentifier::parse(uid)?;
        self.inner
            .db
            .declaration(uid.as_str())
            .await?
            .ok_or_else(|| DaemonError::PluginNotFound(format!("plugin {uid} has not been uploaded")))
    }

    /// `fetch/identifier`: whether the plugin is installed somewhere (has a `plugins` row).
    pub async fn identifier_exists(&self, uid: &str) -> Result<bool, DaemonError> {
        let uid = PluginUniqueIdentifier::parse(uid)?;
        self.inner.db.plugin_exists(uid.as_str()).await
    }

    /// `fetch/readme`: `{content, language}`; the English readme when the language has none.
    pub async fn readme(&self, uid: &str, language: &str) -> Result<Value, DaemonError> {
        let uid = PluginUniqueIdentifier::parse(uid)?;
        let language = if language.is_empty() { "en_US" } else { language };
        let found = match self.inner.db.readme(uid.as_str(), language).await? {
            Some(content) => Some((content, language.to_owned())),
            None => self
                .inner
                .db
                .readme(uid.as_str(), "en_US")
                .await?
                .map(|c| (c, "en_US".to_owned())),
        };
        let (content, language) =
            found.ok_or_else(|| DaemonError::NotFound(format!("plugin {uid} has no README.md")))?;
        Ok(json!({"content": content, "language": language}))
    }

    /// `/asset/{id}`: a media file.
    pub async fn asset(&self, id: &str) -> Result<Vec<u8>, DaemonError> {
        if id.is_empty() || id.contains('/') || id.contains("..") {
            return Err(DaemonError::BadRequest(format!("invalid asset id {id:?}")));
        }
        match self.inner.blobs.get(&self.media_key(id)).await {
            Ok(b) => Ok(b.to_vec()),
            Err(e) if e.is_not_found() => Err(DaemonError::NotFound(format!("asset {id} not found"))),
            Err(e) => Err(e.into()),
        }
    }

    /// `/extract-asset`: a file under `_assets/` of a stored package.
    pub async fn extract_asset(&self, uid: &str, file_path: &str) -> Result<Vec<u8>, DaemonError> {
        let uid = PluginUniqueIdentifier::parse(uid)?;
        let (_, package) = self.stored_package(&uid).await?;
        let name = file_path.strip_prefix("_assets/").unwrap_or(file_path);
        package
            .asset(name)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| DaemonError::NotFound(format!("{file_path} is not in the _assets of {uid}")))
    }

    // ---- install, upgrade, uninstall ----------------------------------------------------------------------------

    /// `install/identifiers`: installs uploaded packages for a tenant. When every package already runs for some
    /// tenant, the installations are recorded at once (`all_installed`); otherwise a task is started.
    pub async fn install_identifiers(
        &self,
        tenant_id: &str,
        identifiers: &[String],
        source: &str,
        metas: &[Value],
    ) -> Result<InstallStart, DaemonError> {
        if identifiers.is_empty() {
            return Err(DaemonError::BadRequest(
                "plugin_unique_identifiers must not be empty".into(),
            ));
        }
        if identifiers.len() > MAX_IDENTIFIERS_PER_INSTALL {
            return Err(DaemonError::BadRequest(format!(
                "at most {MAX_IDENTIFIERS_PER_INSTALL} plugins can be installed at once, got {}",
                identifiers.len()
            )));
        }
        if metas.len() != identifiers.len() {
            return Err(DaemonError::BadRequest(format!(
                "metas must have one entry per plugin unique identifier ({} identifiers, {} metas)",
                identifiers.len(),
                metas.len()
            )));
        }
        let mut items = Vec::with_capacity(identifiers.len());
        for (uid, meta) in identifiers.iter().zip(metas) {
            let uid = PluginUniqueIdentifier::parse(uid)?;
            let declaration = self.inner.db.declaration(uid.as_str()).await?.ok_or_else(|| {
                DaemonError::PluginNotFound(format!(
                    "plugin {uid} has not been uploaded; upload it with install/upload/package first"
                ))
            })?;
            if let Some(current) = self
                .inner
                .db
                .installation_by_plugin_id(tenant_id, uid.plugin_id())
                .await?
            {
                return Err(DaemonError::BadRequest(format!(
                    "plugin {} is already installed in this workspace as {}; uninstall it or use install/upgrade",
                    uid.plugin_id(),
                    current.plugin_unique_identifier
                )));
            }
            items.push(Item {
                uid,
                declaration,
                source: source.to_owned(),
                meta: meta.clone(),
                original: None,
            });
        }
        self.start(tenant_id, items).await
    }

    /// `install/upgrade`: moves a tenant from one version of a plugin to another.
    pub async fn upgrade(
        &self,
        tenant_id: &str,
        original: &str,
        new: &str,
        source: &str,
        meta: &Value,
    ) -> Result<InstallStart, DaemonError> {
        let original = PluginUniqueIdentifier::parse(original)?;
        let new = PluginUniqueIdentifier::parse(new)?;
        if original.plugin_id() != new.plugin_id() {
            return Err(DaemonError::BadRequest(format!(
                "cannot upgrade {} to {}: they are different plugins",
                original.plugin_id(),
                new.plugin_id()
            )));
        }
        if original == new {
            return Err(DaemonError::BadRequest(
                "the original and new plugin unique identifiers are the same".into(),
            ));
        }
        match self
            .inner
            .db
            .installation_by_plugin_id(tenant_id, original.plugin_id())
            .await?
        {
            Some(i) if i.plugin_unique_identifier == original.as_str() => {}
            _ => {
                return Err(DaemonError::PluginNotFound(format!(
                    "plugin {original} is not installed in this workspace, so it cannot be upgraded"
                )));
            }
        }
        let declaration = self.inner.db.declaration(new.as_str()).await?.ok_or_else(|| {
            DaemonError::PluginNotFound(format!(
                "plugin {new} has not been uploaded; upload it with install/upload/package first"
            ))
        })?;
        let item = Item {
            uid: new,
            declaration,
            source: source.to_owned(),
            meta: meta.clone(),
            original: Some(original.as_str().to_owned()),
        };
        self.start(tenant_id, vec![item]).await
    }

    async fn start(&self, tenant_id: &str, items: Vec<Item>) -> Result<InstallStart, DaemonError> {
        let mut ready = true;
        for item in &items {
            ready &= self.inner.db.plugin_exists(item.uid.as_str()).await?;
        }
        if ready {
            for item in &items {
                self.record(tenant_id, item).await?;
            }
            return Ok(InstallStart {
                all_installed: true,
                task_id: String::new(),
            });
        }
        let plugins = items
            .iter()
            .map(|item| TaskPlugin {
                plugin_unique_identifier: item.uid.as_str().to_owned(),
                plugin_id: item.uid.plugin_id().to_owned(),
                status: TaskStatus::Running,
                message: String::new(),
                icon: str_at(&item.declaration, "/icon"),
                icon_dark: str_at(&item.declaration, "/icon_dark"),
                labels: item.declaration.get("label").cloned().unwrap_or_else(|| json!({})),
                source: item.source.clone(),
            })
            .collect();
        let task = self.inner.db.create_task(tenant_id, plugins).await?;
        let task_id = task.id.clone();
        let state = self.clone();
        tokio::spawn(async move { state.run_task(task, items).await });
        Ok(InstallStart {
            all_installed: false,
            task_id,
        })
    }

    async fn run_task(self, mut task: TaskRow, items: Vec<Item>) {
        for (index, item) in items.iter().enumerate() {
            let outcome = self.install_one(&task.tenant_id, item).await;
            if let Some(plugin) = task.plugins.get_mut(index) {
                match outcome {
                    Ok(warnings) if warnings.is_empty() => {
                        plugin.status = TaskStatus::Success;
                        plugin.message = "Installed".into();
                    }
                    Ok(warnings) => {
                        plugin.status = TaskStatus::Success;
                        plugin.message = format!("Installed with warnings: {}", warnings.join("; "));
                    }
                    Err(message) => {
                        tracing::warn!(plugin = %item.uid, error = %message, "plugin installation failed");
                        plugin.status = TaskStatus::Failed;
                        plugin.message = message;
                    }
                }
            }
            task.completed_plugins += 1;
            if index + 1 == items.len() {
                task.status = if task.plugins.iter().all(|p| p.status == TaskStatus::Success) {
                    TaskStatus::Success
                } else {
                    TaskStatus::Failed
                };
            }
            match self.inner.db.save_task(&task).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!(task = %task.id, "install task was deleted while running"),
                Err(e) => tracing::error!(task = %task.id, error = %e, "saving install task progress failed"),
            }
        }
    }

    /// Environment, then record; the environment's warnings on success. Errors are the plugin's task message.
    async fn install_one(&self, tenant_id: &str, item: &Item) -> Result<Vec<String>, String> {
        let uid = item.uid.as_str();
        let already_running = self.inner.db.plugin_exists(uid).await.map_err(|e| e.to_string())?;
        let mut warnings = Vec::new();
        if !already_running {
            let (bytes, _) = self.stored_package(&item.uid).await.map_err(|e| e.to_string())?;
            self.inner
                .blobs
                .put(&self.installed_key(uid), bytes.clone())
                .await
                .map_err(|e| format!("copying the package to the installed bucket failed: {e}"))?;
            let prepared = tokio::time::timeout(
                INSTALL_TIMEOUT,
                self.inner.environment.prepare_with_warnings(&item.uid, &bytes),
            )
            .await;
            let failure = match prepared {
                Ok(Ok(notes)) => {
                    warnings = notes;
                    None
                }
                Ok(Err(message)) => Some(format!("preparing the plugin environment failed: {message}")),
                Err(_) => Some(format!(
                    "preparing the plugin environment timed out after {} s",
                    INSTALL_TIMEOUT.as_secs()
                )),
            };
            if let Some(message) = failure {
                self.forget_if_unreferenced(uid).await;
                return Err(message);
            }
        }
        match self.record(tenant_id, item).await {
            Ok(()) => Ok(warnings),
            Err(e) => {
                self.forget_if_unreferenced(uid).await;
                Err(e.to_string())
            }
        }
    }

    /// The database step of install or upgrade, plus cleanup of what the upgrade left unreferenced.
    async fn record(&self, tenant_id: &str, item: &Item) -> Result<(), DaemonError> {
        let new = NewInstallation {
            tenant_id,
            plugin_unique_identifier: item.uid.as_str(),
            plugin_id: item.uid.plugin_id(),
            source: &item.source,
            meta: &item.meta,
            declaration: &item.declaration,
        };
        match &item.original {
            None => {
                self.inner.db.install(&new).await?;
            }
            Some(original) => {
                let released = self.inner.db.upgrade(original, &new).await?;
                for uid in released.unreferenced {
                    self.release(&uid).await;
                }
            }
        }
        Ok(())
    }

    /// Removes the installed copy of a package nothing refers to, after a failed install.
    async fn forget_if_unreferenced(&self, uid: &str) {
        if matches!(self.inner.db.plugin_exists(uid).await, Ok(false)) {
            self.release(uid).await;
        }
    }

    async fn release(&self, uid: &str) {
        if let Err(e) = self.inner.blobs.delete(&self.installed_key(uid)).await
            && !e.is_not_found()
        {
            tracing::warn!(plugin = %uid, error = %e, "removing an unreferenced installed package failed");
        }
        self.inner.environment.release(uid).await;
    }

    /// `uninstall`: removes a tenant's installation; a plugin nothing refers to any more is released.
    pub async fn uninstall(&self, tenant_id: &str, installation_id: &str) -> Result<(), DaemonError> {
        let (installation, released) = self.inner.db.uninstall(tenant_id, installation_id).await?;
        if installation.runtime_type == "remote" {
            // A remote-debugging plugin has no package or environment to release: its connection is what runs it.
            self.disconnect_uninstalled_remote(&installation, &released.unreferenced)
                .await?;
            return Ok(());
        }
        for uid in released.unreferenced {
            self.release(&uid).await;
        }
        Ok(())
    }

    // ---- tasks --------------------------------------------------------------------------------------------------

    /// `install/tasks`.
    pub async fn tasks(&self, tenant_id: &str, page: i64, page_size: i64) -> Result<Value, DaemonError> {
        let tasks = self.inner.db.tasks(tenant_id, page, page_size).await?;
        Ok(Value::Array(tasks.iter().map(task_json).collect()))
    }

    /// `install/tasks/{id}`.
    pub async fn task(&self, tenant_id: &str, task_id: &str) -> Result<Value, DaemonError> {
        self.inner
            .db
            .task(tenant_id, task_id)
            .await?
            .map(|t| task_json(&t))
            .ok_or_else(|| DaemonError::NotFound(format!("install task {task_id} not found")))
    }

    /// `install/tasks/{id}/delete`.
    pub async fn delete_task(&self, tenant_id: &str, task_id: &str) -> Result<(), DaemonError> {
        if self.inner.db.delete_task(tenant_id, task_id).await? {
            Ok(())
        } else {
            Err(DaemonError::NotFound(format!("install task {task_id} not found")))
        }
    }

    /// `install/tasks/delete_all`.
    pub async fn delete_all_tasks(&self, tenant_id: &str) -> Result<(), DaemonError> {
        self.inner.db.delete_all_tasks(tenant_id).await?;
        Ok(())
    }

    /// `install/tasks/{id}/delete/{identifier}`: drops one plugin from a task (the task goes when it is empty).
    pub async fn delete_task_item(&self, tenant_id: &str, task_id: &str, identifier: &str) -> Result<(), DaemonError> {
        let mut task = self
            .inner
            .db
            .task(tenant_id, task_id)
            .await?
            .ok_or_else(|| DaemonError::NotFound(format!("install task {task_id} not found")))?;
        let before = task.plugins.len();
        task.plugins.retain(|p| p.plugin_unique_identifier != identifier);
        if task.plugins.len() == before {
            return Err(DaemonError::NotFound(format!(
                "plugin {identifier} is not part of install task {task_id}"
            )));
        }
        if task.plugins.is_empty() {
            self.inner.db.delete_task(tenant_id, task_id).await?;
        } else {
            self.inner.db.save_task(&task).await?;
        }
        Ok(())
    }

    // ---- listing ------------------------------------------------------------------------------------------------

    async fn installation_json(&self, row: &InstallationRow) -> Result<Value, DaemonError> {
        let declaration = self
            .inner
            .db
            .declaration(&row.plugin_unique_identifier)
            .await?
            .unwrap_or(Value::Null);
        let (version, checksum) = PluginUniqueIdentifier::parse(&row.plugin_unique_identifier)
            .map(|u| (u.version().to_owned(), u.checksum().to_owned()))
            .unwrap_or_default();
        Ok(json!({
            "id": row.id,
            "created_at": rfc3339(row.created_at),
            "updated_at": rfc3339(row.updated_at),
            "name": str_at(&declaration, "/name"),
            "plugin_id": row.plugin_id,
            "tenant_id": row.tenant_id,
            "plugin_unique_identifier": row.plugin_unique_identifier,
            "installation_id": row.id,
            "endpoints_setups": row.endpoints_setups,
            "endpoints_active": row.endpoints_active,
            "runtime_type": row.runtime_type,
            "source": row.source,
            "meta": row.meta,
            "version": version,
            "checksum": checksum,
            "declaration": declaration,
        }))
    }

    /// `list`: `{list, total}`.
    pub async fn list(&self, tenant_id: &str, page: i64, page_size: i64) -> Result<Value, DaemonError> {
        let (rows, total) = self.inner.db.installations(tenant_id, page, page_size).await?;
        let mut list = Vec::with_capacity(rows.len());
        for row in &rows {
            list.push(self.installation_json(row).await?);
        }
        Ok(json!({"list": list, "total": total}))
    }

    /// `{category}/list`: installations of one category, filtered by `query` (name or label) and `tags`, as
    /// `{list, has_more}`.
    pub async fn category_list(
        &self,
        tenant_id: &str,
        category: &str,
        page: i64,
        page_size: i64,
        query: &str,
        tags: &[String],
    ) -> Result<Value, DaemonError> {
        let query = query.to_lowercase();
        let mut matched = Vec::new();
        for row in self.inner.db.all_installations(tenant_id).await? {
            let item = self.installation_json(&row).await?;
            let declaration = &item["declaration"];
            if declaration.get("category").and_then(Value::as_str) != Some(category) {
                continue;
            }
            if !query.is_empty() {
                let in_label = declaration.get("label").and_then(Value::as_object).is_some_and(|l| {
                    l.values()
                        .any(|v| v.as_str().is_some_and(|s| s.to_lowercase().contains(&query)))
                });
                if !str_at(declaration, "/name").to_lowercase().contains(&query) && !in_label {
                    continue;
                }
            }
            if !tags.is_empty() {
                let have: Vec<&str> = declaration
                    .get("tags")
                    .and_then(Value::as_array)
                    .map(|t| t.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !tags.iter().all(|t| have.contains(&t.as_str())) {
                    continue;
                }
            }
            matched.push(item);
        }
        let start = usize::try_from((page - 1) * page_size).unwrap_or(usize::MAX);
        let size = usize::try_from(page_size).unwrap_or(0);
        let has_more = matched.len() > start.saturating_add(size);
        let list: Vec<Value> = matched.into_iter().skip(start).take(size).collect();
        Ok(json!({"list": list, "has_more": has_more}))
    }

    /// `installation/ids`: the plugin ids a tenant has installed, optionally of one category.
    pub async fn installation_ids(&self, tenant_id: &str, category: Option<&str>) -> Result<Value, DaemonError> {
        let mut ids = Vec::new();
        for row in self.inner.db.all_installations(tenant_id).await? {
            if let Some(category) = category.filter(|c| !c.is_empty()) {
                let declaration = self.inner.db.declaration(&row.plugin_unique_identifier).await?;
                if declaration
                    .as_ref()
                    .and_then(|d| d.get("category"))
                    .and_then(Value::as_str)
                    != Some(category)
                {
                    continue;
                }
            }
            ids.push(row.plugin_id);
        }
        Ok(json!({"plugin_ids": ids}))
    }

    /// `installation/fetch/batch`: the tenant's installations of the given plugin ids.
    pub async fn fetch_batch(&self, tenant_id: &str, plugin_ids: &[String]) -> Result<Value, DaemonError> {
        let mut out = Vec::new();
        for plugin_id in plugin_ids {
            if let Some(row) = self.inner.db.installation_by_plugin_id(tenant_id, plugin_id).await? {
                out.push(self.installation_json(&row).await?);
            }
        }
        Ok(Value::Array(out))
    }

    /// `installation/missing`: which identifiers the tenant does not have installed, with the version it has.
    pub async fn missing(&self, tenant_id: &str, identifiers: &[String]) -> Result<Value, DaemonError> {
        let mut out = Vec::new();
        for identifier in identifiers {
            let uid = PluginUniqueIdentifier::parse(identifier)?;
            let current = self
                .inner
                .db
                .installation_by_plugin_id(tenant_id, uid.plugin_id())
                .await?;
            match current {
                Some(row) if row.plugin_unique_identifier == uid.as_str() => {}
                Some(row) => out.push(json!({
                    "plugin_unique_identifier": uid.as_str(),
                    "current_identifier": row.plugin_unique_identifier,
                })),
                None => out.push(json!({"plugin_unique_identifier": uid.as_str(), "current_identifier": null})),
            }
        }
        Ok(Value::Array(out))
    }

    async fn provider_json(&self, category: ProviderCategory, row: &ProviderRow) -> Result<Value, DaemonError> {
        let declaration = self
            .inner
            .db
            .declaration(&row.plugin_unique_identifier)
            .await?
            .unwrap_or(Value::Null);
        let mut item = json!({
            "id": row.id,
            "created_at": rfc3339(row.created_at),
            "updated_at": rfc3339(row.updated_at),
            "tenant_id": row.tenant_id,
            "provider": row.provider,
            "plugin_unique_identifier": row.plugin_unique_identifier,
            "plugin_id": row.plugin_id,
            "declaration": declaration.get(category.declaration_key()).cloned().unwrap_or(Value::Null),
        });
        if category == ProviderCategory::AgentStrategy {
            item["meta"] = declaration.get("meta").cloned().unwrap_or_else(|| json!({}));
        }
        Ok(item)
    }

    /// `tools`, `models`, `agent_strategies`, `datasources`, `triggers`: a tenant's providers of one category.
    pub async fn providers(
        &self,
        category: ProviderCategory,
        tenant_id: &str,
        page: i64,
        page_size: i64,
    ) -> Result<Value, DaemonError> {
        let rows = self.inner.db.providers(category, tenant_id, page, page_size).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.provider_json(category, row).await?);
        }
        Ok(Value::Array(out))
    }

    /// `tool`, `agent_strategy`, `datasource`, `trigger`: one provider.
    pub async fn provider(
        &self,
        category: ProviderCategory,
        tenant_id: &str,
        plugin_id: &str,
        provider: &str,
    ) -> Result<Value, DaemonError> {
        let row = self
            .inner
            .db
            .provider(category, tenant_id, plugin_id, provider)
            .await?
            .ok_or_else(|| {
                DaemonError::PluginNotFound(format!("provider {provider} of plugin {plugin_id} is not installed"))
            })?;
        self.provider_json(category, &row).await
    }

    /// `tools/check_existence`: whether each `(plugin_id, provider_name)` is installed for the tenant.
    pub async fn tools_exist(&self, tenant_id: &str, ids: &[(String, String)]) -> Result<Vec<bool>, DaemonError> {
        let mut out = Vec::with_capacity(ids.len());
        for (plugin_id, provider) in ids {
            out.push(
                self.inner
                    .db
                    .provider(ProviderCategory::Tool, tenant_id, plugin_id, provider)
                    .await?
                    .is_some(),
            );
        }
        Ok(out)
    }

    /// Whether the tenant's installed `plugin_id` is a verified package (its signature checked out when it was
    /// uploaded); `false` when the plugin is not installed. Dify's `PluginService.is_plugin_verified`, which
    /// decides whether system OAuth clients may be handed to the plugin.
    pub async fn is_plugin_verified(&self, tenant_id: &str, plugin_id: &str) -> Result<bool, DaemonError> {
        let Some(installation) = self.inner.db.installation_by_plugin_id(tenant_id, plugin_id).await? else {
            return Ok(false);
        };
        let declaration = self
            .inner
            .db
            .declaration(&installation.plugin_unique_identifier)
            .await?;
        Ok(declaration
            .and_then(|d| d.get("verified").and_then(Value::as_bool))
            .unwrap_or(false))
    }

    /// `models/bindings`.
    pub async fn model_bindings(&self, tenant_id: &str) -> Result<Value, DaemonError> {
        let rows = self
            .inner
            .db
            .providers(ProviderCategory::Model, tenant_id, 1, i64::MAX / 2)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let Some(installation) = self
                .inner
                .db
                .installation_by_plugin_id(tenant_id, &row.plugin_id)
                .await?
            else {
                continue;
            };
            let declaration = self.inner.db.declaration(&row.plugin_unique_identifier).await?;
            let version = PluginUniqueIdentifier::parse(&row.plugin_unique_identifier)
                .map(|u| u.version().to_owned())
                .unwrap_or_default();
            out.push(json!({
                "provider": row.provider,
                "installation_id": installation.id,
                "plugin_id": row.plugin_id,
                "plugin_unique_identifier": row.plugin_unique_identifier,
                "runtime_type": installation.runtime_type,
                "source": installation.source,
                "version": version,
                "verified": declaration.and_then(|d| d.get("verified").and_then(Value::as_bool)).unwrap_or(false),
            }));
        }
        Ok(Value::Array(out))
    }
}

/// Names the embedded package an upload error is about; errors that are not the uploader's fault pass unchanged.
fn in_bundle_package(path: &str, e: DaemonError) -> DaemonError {
    if e.error_type() == "PluginDaemonBadRequestError" {
        DaemonError::BadRequest(format!("bundle package dependency _assets/{path}: {e}"))
    } else {
        e
    }
}

/// One plugin of an install or upgrade.
struct Item {
    uid: PluginUniqueIdentifier,
    declaration: Value,
    source: String,
    meta: Value,
    /// The version being replaced, for an upgrade.
    original: Option<String>,
}

fn str_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Unix milliseconds as RFC 3339 in UTC (`2025-03-01T10:00:00.123Z`), as Go's `time.Time` marshals.
pub(crate) fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn task_json(task: &TaskRow) -> Value {
    json!({
        "id": task.id,
        "created_at": rfc3339(task.created_at),
        "updated_at": rfc3339(task.updated_at),
        "status": task.status,
        "tenant_id": task.tenant_id,
        "total_plugins": task.total_plugins,
        "completed_plugins": task.completed_plugins,
        "plugins": task.plugins,
    })
}
