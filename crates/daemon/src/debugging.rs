//! Remote debugging: a developer runs a plugin from its source folder with `INSTALL_METHOD=remote`; the SDK connects
//! to `PLUGIN_REMOTE_INSTALLING_HOST:PORT` over TCP, registers with a key from `POST /plugin/{tenant}/debugging/key`,
//! and the plugin is installed for that tenant (runtime type `remote`) for as long as the connection lasts.
//!
//! # Protocol (reference plugin-daemon.md §6, plugin-protocol.md §8)
//! Newline-delimited JSON `{type, data}` registration messages: `handshake` `{key}` within 10 s of connecting,
//! `manifest_declaration` once, `tool_declaration`, `model_declaration`, `endpoint_declaration`,
//! `agent_strategy_declaration`, `datasource_declaration`, `trigger_declaration` (JSON arrays, element 0 is used,
//! each at most once), `asset_chunk` `{filename, data (base64), end}` (50 MiB in all), then `end`. No answer is
//! sent; a refused registration gets one plain-text line (e.g. `handshake failed, invalid key`) and the connection
//! is closed. After `end` the connection carries the stdio protocol, served by `toolplane_runtime::RemotePlugin` on
//! the same session multiplexer as local plugins, backwards calls included.
//!
//! # Identity
//! As in the original, the unique identifier is `<tenant_id>/<name>:<version>@<checksum>` with
//! `checksum = hex(sha256(json(declaration) ‖ tenant_id))`: the tenant id stands in for the author, which marks the
//! plugin as a debugging one and keeps tenants apart.
//!
//! # Limits
//! `PLUGIN_REMOTE_INSTALLING_MAX_CONN` open connections in all, and — unlike the original, which parses the setting
//! but never applies it — `PLUGIN_REMOTE_INSTALLING_MAX_SINGLE_TENANT_CONN` per tenant, counted from the handshake.
//! One connection per plugin id and tenant: a second one is refused while the first is connected.
//!
//! Keys and connections live in this process's memory (one key per tenant, valid 2 h, renewed by each call of the
//! key route): a single daemon node is assumed, and keys do not survive a restart. Installations of a previous run
//! are removed when the listener starts, since their connections are gone.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use toolplane_plugin::{Manifest, PluginUniqueIdentifier};
use toolplane_runtime::{Frame, FrameReader, PluginIdentity, RemotePlugin};

use crate::catalog::PluginToolProvider;
use crate::db::{InstallationRow, NewInstallation};
use crate::declaration::assemble_declaration;
use crate::error::DaemonError;
use crate::service::DaemonState;

/// How long a debugging key stays valid after it was last issued.
pub const DEBUGGING_KEY_TTL: Duration = Duration::from_secs(2 * 60 * 60);
/// The most asset bytes one registration may send (decoded), as the original.
pub const MAX_REMOTE_ASSETS_BYTES: usize = 50 * 1024 * 1024;
/// How long a refused connection is read from (and discarded) after the refusal line, so the line is not lost to a
/// reset caused by unread data.
const REFUSAL_DRAIN: Duration = Duration::from_secs(1);

/// The registration message types that carry provider declarations, with the declaration key each one fills.
const DECLARATION_TYPES: [(&str, &str); 6] = [
    ("tool_declaration", "tool"),
    ("model_declaration", "model"),
    ("endpoint_declaration", "endpoint"),
    ("agent_strategy_declaration", "agent_strategy"),
    ("datasource_declaration", "datasource"),
    ("trigger_declaration", "trigger"),
];

#[derive(Debug, Default)]
struct Keys {
    by_tenant: HashMap<String, (String, Instant)>,
    by_key: HashMap<String, String>,
}

/// Remote-debugging state of one daemon: keys, connection counts, registered plugins.
#[derive(Debug, Default)]
pub(crate) struct RemoteState {
    keys: Mutex<Keys>,
    connections: AtomicUsize,
    tenant_connections: Mutex<HashMap<String, usize>>,
    plugins: Mutex<HashMap<String, Arc<RemotePlugin>>>,
    /// Serialises installing and removing remote installations, so a reconnecting plugin and the cleanup of its
    /// previous connection do not interleave.
    installs: tokio::sync::Mutex<()>,
}

impl RemoteState {
    /// The tenant a valid key was issued to.
    fn tenant_of(&self, key: &str) -> Option<String> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let tenant = keys.by_key.get(key)?;
        let (_, issued) = keys.by_tenant.get(tenant)?;
        (issued.elapsed() < DEBUGGING_KEY_TTL).then(|| tenant.clone())
    }
}

/// One open connection, counted against `PLUGIN_REMOTE_INSTALLING_MAX_CONN` until dropped.
struct ConnectionSlot(Arc<RemoteState>);

impl ConnectionSlot {
    fn acquire(state: &Arc<RemoteState>, max: usize) -> Option<Self> {
        state
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Self(Arc::clone(state)))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One tenant's connection past the handshake, counted against `PLUGIN_REMOTE_INSTALLING_MAX_SINGLE_TENANT_CONN`.
struct TenantSlot {
    state: Arc<RemoteState>,
    tenant_id: String,
}

impl TenantSlot {
    fn acquire(state: &Arc<RemoteState>, tenant_id: &str, max: usize) -> Option<Self> {
        let mut counts = state.tenant_connections.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(tenant_id.to_owned()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Self {
            state: Arc::clone(state),
            tenant_id: tenant_id.to_owned(),
        })
    }
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut counts = self
            .state
            .tenant_connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.tenant_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.tenant_id);
            }
        }
    }
}

impl DaemonState {
    /// `POST /plugin/{tenant}/debugging/key`: the tenant's debugging key (a UUID), created when it has none or its
    /// key expired; each call renews it for [`DEBUGGING_KEY_TTL`].
    pub fn debugging_key(&self, tenant_id: &str) -> Result<String, DaemonError> {
        if !self.config().remote.enabled {
            return Err(DaemonError::BadRequest(
                "remote debugging is disabled on this daemon (PLUGIN_REMOTE_INSTALLING_ENABLED=false)".into(),
            ));
        }
        let mut keys = self.remote().keys.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let key = match keys.by_tenant.get(tenant_id) {
            Some((key, issued)) if issued.elapsed() < DEBUGGING_KEY_TTL => key.clone(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        if let Some((old, _)) = keys.by_tenant.insert(tenant_id.to_owned(), (key.clone(), now))
            && old != key
        {
            keys.by_key.remove(&old);
        }
        keys.by_key.insert(key.clone(), tenant_id.to_owned());
        Ok(key)
    }

    /// The connected remote plugin with this unique identifier.
    pub(crate) fn remote_plugin(&self, unique_identifier: &str) -> Option<Arc<RemotePlugin>> {
        self.remote()
            .plugins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(unique_identifier)
            .filter(|p| p.is_connected())
            .cloned()
    }

    /// Remote plugins connected right now (unique identifiers).
    pub fn connected_remote_plugins(&self) -> Vec<String> {
        let plugins = self.remote().plugins.lock().unwrap_or_else(PoisonError::into_inner);
        plugins
            .values()
            .filter(|p| p.is_connected())
            .map(|p| p.unique_identifier().to_owned())
            .collect()
    }

    /// After a remote installation was uninstalled through the management API: closes the plugin's connection
    /// (the plugin reads a line saying why, then the end of the stream; open sessions fail with
    /// `ConnectionClosedError`) and deletes the declarations nothing refers to any more. The connection task then
    /// finds the installation gone and forgets the plugin.
    pub(crate) async fn disconnect_uninstalled_remote(
        &self,
        installation: &InstallationRow,
        unreferenced: &[String],
    ) -> Result<(), DaemonError> {
        let plugin = self
            .remote()
            .plugins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&installation.plugin_unique_identifier)
            .cloned();
        if let Some(plugin) = plugin {
            tracing::info!(plugin = %installation.plugin_unique_identifier, tenant = %installation.tenant_id, "closing the connection of an uninstalled remote debugging plugin");
            plugin
                .close(&format!(
                    "plugin {} was uninstalled from this workspace",
                    installation.plugin_id
                ))
                .await;
        }
        self.db().delete_declarations(unreferenced).await
    }

    /// Removes remote installations whose connection is gone (left by a previous run of the daemon).
    async fn remove_stale_remote_installations(&self) -> Result<(), DaemonError> {
        let _installs = self.remote().installs.lock().await;
        for row in self.db().remote_installations().await? {
            if self.remote_plugin(&row.plugin_unique_identifier).is_none() {
                tracing::info!(plugin = %row.plugin_unique_identifier, tenant = %row.tenant_id, "removing a remote debugging installation whose connection is gone");
                self.db().uninstall_remote(&row.tenant_id, &row.id).await?;
            }
        }
        Ok(())
    }
}

/// Binds the remote-debugging listener at `PLUGIN_REMOTE_INSTALLING_HOST:PORT`.
pub async fn bind_remote_debugging(state: &DaemonState) -> std::io::Result<TcpListener> {
    let listen = state.config().remote.listen;
    TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot listen for remote debugging on {listen}: {e} (set PLUGIN_REMOTE_INSTALLING_HOST / \
                 PLUGIN_REMOTE_INSTALLING_PORT, or PLUGIN_REMOTE_INSTALLING_ENABLED=false)"
            ),
        )
    })
}

/// Accepts remote-debugging plugins on `listener` until `shutdown` completes, then closes their connections. Needs
/// a daemon with the plugin runtime (backwards calls are answered by it).
pub async fn serve_remote_debugging(
    listener: TcpListener,
    state: DaemonState,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    if state.runtime().is_none() {
        return Err(DaemonError::Internal(
            "remote debugging needs the plugin runtime; open the daemon with DaemonState::open_with_runtime".into(),
        ));
    }
    state.remove_stale_remote_installations().await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "remote plugin debugging is listening");
    }
    tokio::pin!(shutdown);
    let max_conn = state.config().remote.max_conn;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                match ConnectionSlot::acquire(state.remote(), max_conn) {
                    Some(slot) => {
                        let state = state.clone();
                        tokio::spawn(async move {
                            handle_connection(state, stream, slot).await;
                        });
                    }
                    None => {
                        tracing::warn!(%peer, max_conn, "refusing a remote debugging connection: too many connections");
                        let (read, write) = stream.into_split();
                        tokio::spawn(refuse(
                            write,
                            FrameReader::new(read, 64 * 1024),
                            format!(
                                "server is busy now: at most {max_conn} remote debugging connections are served at \
                                 once (PLUGIN_REMOTE_INSTALLING_MAX_CONN); please try again later"
                            ),
                        ));
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(error = %e, "accepting a remote debugging connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let plugins: Vec<Arc<RemotePlugin>> = state
        .remote()
        .plugins
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .cloned()
        .collect();
    for plugin in &plugins {
        plugin.close("the plugin daemon is shutting down").await;
    }
    // Give the connection tasks a moment to remove their installations; a next start removes what is left.
    let deadline = Instant::now() + Duration::from_secs(2);
    let registered = || {
        let plugins = state.remote().plugins.lock().unwrap_or_else(PoisonError::into_inner);
        !plugins.is_empty()
    };
    while Instant::now() < deadline && registered() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Writes a plain-text refusal line and closes the connection after reading what the plugin still sends.
async fn refuse<R, W>(mut write: W, mut frames: FrameReader<R>, message: String)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut line = message.into_bytes();
    line.push(b'\n');
    let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
        write.write_all(&line).await?;
        write.shutdown().await
    })
    .await;
    let _ = tokio::time::timeout(REFUSAL_DRAIN, async { while let Ok(Some(_)) = frames.next().await {} }).await;
}

/// What a plugin sent before `end`.
struct Registration {
    tenant_id: String,
    /// Held for as long as the connection lasts.
    _tenant_slot: TenantSlot,
    manifest: Option<Value>,
    providers: BTreeMap<&'static str, Value>,
    /// Declaration types seen (each may come once).
    seen: Vec<&'static str>,
    assets: BTreeMap<String, Vec<u8>>,
    asset_bytes: usize,
}

/// A registration turned into an installable declaration.
struct Prepared {
    tenant_id: String,
    uid: PluginUniqueIdentifier,
    declaration: Value,
    identity: PluginIdentity,
}

async fn handle_connection(state: DaemonState, stream: TcpStream, _slot: ConnectionSlot) {
    let peer = stream.peer_addr().ok();
    let Some(runtime) = state.runtime().cloned() else {
        return;
    };
    let (read, write) = stream.into_split();
    let mut frames = FrameReader::new(read, runtime.config().max_line_bytes);
    let registration = match register(&state, &mut frames).await {
        Ok(r) => r,
        Err(message) => {
            tracing::info!(peer = ?peer, reason = %message, "refused a remote debugging connection");
            refuse(write, frames, message).await;
            return;
        }
    };
    let prepared = match prepare(&state, &registration).await {
        Ok(p) => p,
        Err(message) => {
            tracing::info!(peer = ?peer, tenant = %registration.tenant_id, reason = %message, "refused a remote debugging plugin");
            refuse(write, frames, message).await;
            return;
        }
    };
    let config = &state.config().remote;
    let plugin = RemotePlugin::attach(
        prepared.identity.clone(),
        frames,
        write,
        runtime.backwards().clone(),
        config.heartbeat_timeout,
    );
    let installation_id = match install(&state, &prepared, &plugin).await {
        Ok(id) => id,
        Err(message) => {
            tracing::info!(plugin = %prepared.uid, reason = %message, "refused a remote debugging plugin");
            plugin.close(&message).await;
            return;
        }
    };
    tracing::info!(plugin = %prepared.uid, tenant = %prepared.tenant_id, peer = ?peer, "remote debugging plugin registered");
    let reason = plugin.closed().await;
    tracing::info!(plugin = %prepared.uid, reason = %reason, "remote debugging plugin disconnected");
    remove(&state, &prepared, &installation_id, &plugin).await;
}

/// Reads the registration up to `end`. The error is the line to send back before closing.
async fn register<R: AsyncRead + Unpin>(
    state: &DaemonState,
    frames: &mut FrameReader<R>,
) -> Result<Registration, String> {
    let config = &state.config().remote;
    let handshake_deadline = tokio::time::Instant::now() + config.handshake_timeout;
    let mut registration: Option<Registration> = None;
    loop {
        let deadline = match registration {
            None => handshake_deadline,
            // The SDK sends its whole registration at once; a silent peer is not allowed to hold a slot forever.
            Some(_) => tokio::time::Instant::now() + config.heartbeat_timeout,
        };
        let frame = match tokio::time::timeout_at(deadline, frames.next()).await {
            Err(_) if registration.is_none() => {
                return Err(format!(
                    "handshake failed, no handshake within {} s of connecting",
                    config.handshake_timeout.as_secs()
                ));
            }
            Err(_) => {
                return Err(format!(
                    "register failed, the plugin sent nothing for {} s before `end`",
                    config.heartbeat_timeout.as_secs()
                ));
            }
            Ok(Err(e)) => return Err(format!("register failed, reading the connection failed: {e}")),
            Ok(Ok(None)) => return Err("register failed, the connection closed before `end`".into()),
            Ok(Ok(Some(Frame::TooLong(_)))) => {
                return Err(format!(
                    "register failed, a registration message is longer than {} bytes (PLUGIN_RUNTIME_MAX_BUFFER_SIZE)",
                    frames.max_line()
                ));
            }
            Ok(Ok(Some(Frame::Line(line)))) => serde_json::from_slice::<Value>(line.trim_ascii()),
        };
        let Ok(Value::Object(mut message)) = frame else {
            return Err(match registration {
                None => "handshake failed, invalid handshake message".into(),
                Some(_) => "register failed, a registration message is not a JSON object".into(),
            });
        };
        let Some(kind) = message.get("type").and_then(Value::as_str).map(str::to_owned) else {
            // A heartbeat that overtook `end` carries `event`, not `type`.
            if registration.is_some() && message.contains_key("event") {
                continue;
            }
            return Err(match registration {
                None => "handshake failed, invalid handshake message".into(),
                Some(_) => "register failed, a registration message has no `type`".into(),
            });
        };
        let data = message.remove("data").unwrap_or(Value::Null);
        let Some(reg) = registration.as_mut() else {
            if kind != "handshake" {
                return Err("handshake failed, registration message before handshake".into());
            }
            let key = data.get("key").and_then(Value::as_str).unwrap_or_default();
            let tenant_id = state
                .remote()
                .tenant_of(key)
                .ok_or_else(|| "handshake failed, invalid key".to_owned())?;
            let max = config.max_single_tenant_conn;
            let slot = TenantSlot::acquire(state.remote(), &tenant_id, max).ok_or_else(|| {
                format!(
                    "handshake failed, too many remote debugging connections for this workspace: at most {max} at \
                     once (PLUGIN_REMOTE_INSTALLING_MAX_SINGLE_TENANT_CONN); stop another debugging plugin first"
                )
            })?;
            registration = Some(Registration {
                tenant_id,
                _tenant_slot: slot,
                manifest: None,
                providers: BTreeMap::new(),
                seen: Vec::new(),
                assets: BTreeMap::new(),
                asset_bytes: 0,
            });
            continue;
        };
        match kind.as_str() {
            "handshake" => return Err("handshake already completed".into()),
            "manifest_declaration" => {
                if reg.manifest.is_some() {
                    return Err("declaration already registered".into());
                }
                if !data.is_object() {
                    return Err("handshake failed, invalid plugin declaration: expected a JSON object".into());
                }
                reg.manifest = Some(data);
            }
            "asset_chunk" => add_asset_chunk(reg, &data)?,
            "end" => {
                return registration.ok_or_else(|| "handshake failed, registration message before handshake".into());
            }
            other => {
                let Some((kind, key)) = DECLARATION_TYPES.iter().find(|(t, _)| *t == other) else {
                    tracing::warn!(message_type = other, "ignoring an unknown remote registration message");
                    continue;
                };
                if reg.seen.contains(kind) {
                    return Err(format!("{key} declaration already registered"));
                }
                reg.seen.push(kind);
                let Value::Array(mut list) = data else {
                    return Err(format!(
                        "{key} register failed, invalid {key} declaration: expected a JSON array"
                    ));
                };
                if !list.is_empty() {
                    reg.providers.insert(key, list.swap_remove(0));
                }
            }
        }
    }
}

fn add_asset_chunk(reg: &mut Registration, data: &Value) -> Result<(), String> {
    let filename = data.get("filename").and_then(Value::as_str).unwrap_or_default();
    let encoded = data.get("data").and_then(Value::as_str).unwrap_or_default();
    if filename.is_empty() || filename.len() > 1024 {
        return Err("transfer assets failed, an asset_chunk needs a filename of 1 to 1024 bytes".into());
    }
    // base64 decodes to at most 3/4 of its length: refuse before decoding what cannot fit.
    if reg.asset_bytes + encoded.len() / 4 * 3 > MAX_REMOTE_ASSETS_BYTES {
        return Err("assets too large, at most 50MB".into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("transfer assets failed, {filename} is not base64: {e}"))?;
    reg.asset_bytes += bytes.len();
    if reg.asset_bytes > MAX_REMOTE_ASSETS_BYTES {
        return Err("assets too large, at most 50MB".into());
    }
    reg.assets
        .entry(filename.to_owned())
        .or_default()
        .extend_from_slice(&bytes);
    Ok(())
}

/// Validates the registration (as the original's `end` handler) and builds the declaration; stores the assets in
/// the media bucket.
async fn prepare(state: &DaemonState, reg: &Registration) -> Result<Prepared, String> {
    let Some(manifest_json) = reg.manifest.clone() else {
        return Err("register failed, no manifest_declaration was sent before end".into());
    };
    if reg.providers.is_empty() {
        return Err(
            "no registration transferred, cannot initialize: send at least one of tool_declaration, \
             model_declaration, endpoint_declaration, agent_strategy_declaration, datasource_declaration, \
             trigger_declaration"
                .into(),
        );
    }
    let manifest = Manifest::from_value(manifest_json.clone())
        .map_err(|e| format!("register failed, invalid manifest detected: {e}"))?;
    if let Some(tool) = reg.providers.get("tool") {
        PluginToolProvider::from_declaration(&manifest.plugin_id(), &manifest.identity(), tool)
            .map_err(|e| format!("register failed, invalid tool declaration: {e}"))?;
    }
    let assets: Vec<(&str, &[u8])> = reg.assets.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let providers = reg.providers.iter().map(|(k, v)| (*k, Some(v.clone())));
    let (declaration, media) =
        assemble_declaration(&manifest_json, manifest.category().as_str(), providers, &assets, false);
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&declaration).map_err(|e| e.to_string())?);
    hasher.update(reg.tenant_id.as_bytes());
    let checksum = hex::encode(hasher.finalize());
    let uid =
        PluginUniqueIdentifier::new(&reg.tenant_id, &manifest.name, &manifest.version, &checksum).map_err(|e| {
            format!(
                "register failed, the workspace id {} cannot stand in for the plugin's author in its identifier: {e}",
                reg.tenant_id
            )
        })?;
    for (id, bytes) in media {
        let key = state.media_key(&id);
        let stored = async {
            if !state.blobs().exists(&key).await? {
                state.blobs().put(&key, bytes).await?;
            }
            Ok::<(), toolplane_store::BlobError>(())
        };
        stored
            .await
            .map_err(|e| format!("register failed, storing the assets failed: {e}"))?;
    }
    let permissions = manifest.resource.permission.clone().unwrap_or_default();
    let identity = PluginIdentity {
        unique_identifier: uid.as_str().to_owned(),
        plugin_id: uid.plugin_id().to_owned(),
        storage_quota: permissions.storage.as_ref().filter(|s| s.enabled).map(|s| s.size),
        tool_permission: permissions.tool.as_ref().is_some_and(|t| t.enabled),
        permissions: permissions.clone(),
    };
    Ok(Prepared {
        tenant_id: reg.tenant_id.clone(),
        uid,
        declaration,
        identity,
    })
}

/// Installs the plugin for its tenant and makes it reachable; the installation id.
async fn install(state: &DaemonState, prepared: &Prepared, plugin: &Arc<RemotePlugin>) -> Result<String, String> {
    let remote = state.remote();
    let _installs = remote.installs.lock().await;
    let (tenant_id, uid) = (prepared.tenant_id.as_str(), prepared.uid.as_str());
    let plugin_id = prepared.uid.plugin_id();
    let failed = |e: DaemonError| format!("register failed, installing the plugin failed: {e}");
    if let Some(existing) = state
        .db()
        .installation_by_plugin_id(tenant_id, plugin_id)
        .await
        .map_err(failed)?
    {
        if existing.runtime_type != "remote" {
            return Err(format!(
                "register failed, plugin {plugin_id} is installed in this workspace as {}; uninstall it to debug \
                 it remotely",
                existing.plugin_unique_identifier
            ));
        }
        if state.remote_plugin(&existing.plugin_unique_identifier).is_some() {
            return Err(format!(
                "register failed, plugin {plugin_id} is already connected for remote debugging in this workspace; \
                 stop the other plugin process first"
            ));
        }
        state
            .db()
            .uninstall_remote(tenant_id, &existing.id)
            .await
            .map_err(failed)?;
    }
    state
        .db()
        .save_declaration(uid, plugin_id, &prepared.declaration, &[])
        .await
        .map_err(failed)?;
    let meta = json!({});
    let row = state
        .db()
        .install_remote(&NewInstallation {
            tenant_id,
            plugin_unique_identifier: uid,
            plugin_id,
            source: "",
            meta: &meta,
            declaration: &prepared.declaration,
        })
        .await
        .map_err(failed)?;
    remote
        .plugins
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(uid.to_owned(), Arc::clone(plugin));
    Ok(row.id)
}

/// Removes a disconnected plugin's installation, then forgets the plugin (so an empty registry means every
/// installation is gone).
async fn remove(state: &DaemonState, prepared: &Prepared, installation_id: &str, plugin: &Arc<RemotePlugin>) {
    let remote = state.remote();
    let _installs = remote.installs.lock().await;
    match state.db().uninstall_remote(&prepared.tenant_id, installation_id).await {
        Ok(_) => {}
        // Uninstalled through the management API while connected.
        Err(DaemonError::PluginNotFound(_)) => {}
        Err(e) => {
            tracing::error!(plugin = %prepared.uid, error = %e, "removing a remote debugging installation failed")
        }
    }
    let mut plugins = remote.plugins.lock().unwrap_or_else(PoisonError::into_inner);
    if plugins
        .get(prepared.uid.as_str())
        .is_some_and(|p| Arc::ptr_eq(p, plugin))
    {
        plugins.remove(prepared.uid.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_slots_count_and_release() {
        let state = Arc::new(RemoteState::default());
        let a = TenantSlot::acquire(&state, "t", 2).unwrap();
        let b = TenantSlot::acquire(&state, "t", 2).unwrap();
        assert!(TenantSlot::acquire(&state, "t", 2).is_none());
        assert!(TenantSlot::acquire(&state, "u", 2).is_some());
        drop(a);
        assert!(TenantSlot::acquire(&state, "t", 2).is_some());
        drop(b);
        let c = ConnectionSlot::acquire(&state, 1).unwrap();
        assert!(ConnectionSlot::acquire(&state, 1).is_none());
        drop(c);
        assert!(ConnectionSlot::acquire(&state, 1).is_some());
    }
}
