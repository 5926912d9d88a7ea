//! The session multiplexer: one connection to a plugin (stdio pipes of a local process, or the TCP connection of a
//! remote-debugging plugin) carrying many sessions, told apart by `session_id`.
//!
//! The multiplexer writes request lines, reads the plugin's frames ([`FrameReader`]), routes session messages to
//! their [`Session`], answers backwards calls (storage, tools) on the same connection, tracks heartbeats, and fails
//! every open session at once when the connection ends. What ends a connection is the transport's business
//! (`process.rs` waits for the child to exit, `remote.rs` for the socket to close or heartbeats to stop).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::backwards::{self, Backwards, Caller};
use crate::frame::{Frame, FrameReader};
use crate::protocol::{self, Chunk, InvokeRequest, PluginError, PluginEvent, SessionMessage};

/// Who the plugin on a connection is, and what it may call back for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginIdentity {
    /// `author/name:version@checksum`.
    pub unique_identifier: String,
    /// `author/name`: the storage namespace.
    pub plugin_id: String,
    /// `resource.permission.storage.size` when storage is enabled.
    pub storage_quota: Option<u64>,
    /// `resource.permission.tool.enabled`.
    pub tool_permission: bool,
    /// The whole `resource.permission` block: what forwarded backwards calls (llm, app, node, …) may ask for.
    pub permissions: toolplane_plugin::Permissions,
}

/// One item of a session, as the multiplexer delivers it.
#[derive(Debug)]
enum SessionItem {
    Chunk(Chunk),
    Plugin(PluginError),
    Failed(String),
    Closed(String),
}

/// Why a session did not complete normally.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    /// The plugin reported an error (`{error_type, message, args}`).
    #[error("{}: {}", .0.error_type, .0.message)]
    Plugin(PluginError),
    /// The runtime ended the session: the process crashed, a line was too long, the plugin was stopped.
    #[error("{0}")]
    Runtime(String),
    /// The connection of a remote-debugging plugin closed (the original's `ConnectionClosedError`).
    #[error("{0}")]
    ConnectionClosed(String),
}

/// How the sessions of a closed connection fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseKind {
    /// [`SessionError::Runtime`].
    Runtime,
    /// [`SessionError::ConnectionClosed`].
    Connection,
}

struct SessionSlot {
    tx: mpsc::UnboundedSender<SessionItem>,
    caller: Arc<Caller>,
    abandoned_at: Option<Instant>,
    /// Cancelled when the session ends (the slot is dropped) or its caller goes away: stops the backwards calls
    /// forwarded on its behalf.
    gone: CancellationToken,
    /// The consumer passes chunks on as text ([`Session::keep_chunk_text`]).
    chunk_text: bool,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.gone.cancel();
    }
}

/// The state of a connection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Life {
    /// Waiting for the first heartbeat.
    Starting,
    /// Serving.
    Ready,
    /// Closed, with the reason open sessions failed with.
    Dead(String),
}

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// One connection to a plugin.
pub(crate) struct Mux {
    identity: PluginIdentity,
    sessions: Mutex<HashMap<String, SessionSlot>>,
    life: watch::Sender<Life>,
    completed: AtomicU64,
    writer: tokio::sync::Mutex<Option<Writer>>,
    backwards: Backwards,
    max_line: usize,
    last_heartbeat: Mutex<Instant>,
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux")
            .field("plugin", &self.identity.unique_identifier)
            .finish_non_exhaustive()
    }
}

impl Mux {
    /// A connection writing to `writer`, starting in `life` (`Starting` for a process that has to send its first
    /// heartbeat, `Ready` for a registered remote plugin).
    pub(crate) fn new(
        identity: PluginIdentity,
        writer: impl AsyncWrite + Send + Unpin + 'static,
        backwards: Backwards,
        max_line: usize,
        life: Life,
    ) -> Arc<Self> {
        let (life, _) = watch::channel(life);
        Arc::new(Self {
            identity,
            sessions: Mutex::new(HashMap::new()),
            life,
            completed: AtomicU64::new(0),
            writer: tokio::sync::Mutex::new(Some(Box::new(writer))),
            backwards,
            max_line,
            last_heartbeat: Mutex::new(Instant::now()),
        })
    }

    pub(crate) fn unique_identifier(&self) -> &str {
        &self.identity.unique_identifier
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Life> {
        self.life.subscribe()
    }

    pub(crate) fn is_ready(&self) -> bool {
        matches!(*self.life.borrow(), Life::Ready)
    }

    pub(crate) fn is_dead(&self) -> bool {
        matches!(*self.life.borrow(), Life::Dead(_))
    }

    /// Sessions not yet ended (cancelled ones included).
    pub(crate) fn open_sessions(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Sessions that ended with `end`.
    pub(crate) fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Time since the last heartbeat (or since the connection was made).
    pub(crate) fn since_heartbeat(&self) -> Duration {
        self.last_heartbeat.lock().map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Whether the plugin only has cancelled sessions left, one of them cancelled at least `grace` ago.
    pub(crate) fn stuck_on_cancelled(&self, grace: Duration) -> bool {
        match self.sessions.lock() {
            Ok(sessions) => {
                let busy = sessions.values().any(|s| s.abandoned_at.is_none());
                !busy
                    && sessions
                        .values()
                        .any(|s| s.abandoned_at.is_some_and(|t| t.elapsed() >= grace))
            }
            Err(_) => false,
        }
    }

    /// Writes one line (with its `\n`).
    pub(crate) async fn write(&self, line: &[u8]) -> Result<(), String> {
        let mut writer = self.writer.lock().await;
        let Some(pipe) = writer.as_mut() else {
            return Err("the connection to the plugin is closed".into());
        };
        let result = async {
            pipe.write_all(line).await?;
            pipe.flush().await
        }
        .await;
        result.map_err(|e| format!("writing to the plugin failed: {e}"))
    }

    /// Ends the connection: no more writes, every open session fails with `reason` at once.
    pub(crate) async fn close(&self, reason: &str, kind: CloseKind) {
        self.life.send_if_modified(|life| {
            if matches!(life, Life::Dead(_)) {
                false
            } else {
                *life = Life::Dead(reason.to_owned());
                true
            }
        });
        let drained: Vec<SessionSlot> = match self.sessions.lock() {
            Ok(mut s) => s.drain().map(|(_, v)| v).collect(),
            Err(_) => Vec::new(),
        };
        for slot in drained {
            let item = match kind {
                CloseKind::Runtime => SessionItem::Failed(reason.to_owned()),
                CloseKind::Connection => SessionItem::Closed(reason.to_owned()),
            };
            let _ = slot.tx.send(item);
        }
        // Sessions fail first: a write blocked on a peer that stopped reading must not delay them. A session opened
        // meanwhile fails at its write once the writer is gone.
        if let Ok(mut guard) = tokio::time::timeout(Duration::from_secs(1), self.writer.lock()).await
            && let Some(mut writer) = guard.take()
        {
            // A TCP peer sees the end of the stream at once instead of when the socket is dropped.
            let _ = tokio::time::timeout(Duration::from_millis(200), writer.shutdown()).await;
        }
    }

    /// Opens a session and sends the request; the error is why the connection cannot take it.
    pub(crate) async fn open(self: &Arc<Self>, request: &InvokeRequest) -> Result<Session, String> {
        let session_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let caller = Arc::new(Caller {
            tenant_id: request.tenant_id.clone(),
            user_id: request.user_id.clone(),
            plugin_id: self.identity.plugin_id.clone(),
            storage_quota: self.identity.storage_quota,
            tool_permission: self.identity.tool_permission,
            permissions: self.identity.permissions.clone(),
            from_model: request.access_type == "model",
        });
        if let Life::Dead(reason) = &*self.life.borrow() {
            return Err(reason.clone());
        }
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(
                session_id.clone(),
                SessionSlot {
                    tx,
                    caller,
                    abandoned_at: None,
                    gone: CancellationToken::new(),
                    chunk_text: false,
                },
            );
        }
        // `close` marks the connection dead before it fails the sessions it finds: a session inserted after that
        // sees the mark here, so none is left waiting on a closed connection.
        if let Life::Dead(reason) = &*self.life.borrow() {
            if let Ok(mut sessions) = self.sessions.lock() {
                sessions.remove(&session_id);
            }
            return Err(reason.clone());
        }
        let line = protocol::request_line(&session_id, request);
        if let Err(e) = self.write(&line).await {
            if let Ok(mut sessions) = self.sessions.lock() {
                sessions.remove(&session_id);
            }
            return Err(e);
        }
        Ok(Session {
            id: session_id,
            rx,
            mux: Arc::clone(self),
            done: false,
        })
    }

    /// Reads frames until the stream ends or fails; the caller decides what that means for the connection.
    pub(crate) async fn read_frames<R: AsyncRead + Unpin>(self: &Arc<Self>, frames: &mut FrameReader<R>) {
        loop {
            match frames.next().await {
                Ok(Some(Frame::Line(line))) => self.handle_line(line),
                Ok(Some(Frame::TooLong(prefix))) => self.too_long(prefix),
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(plugin = %self.identity.unique_identifier, error = %e, "reading from the plugin failed");
                    return;
                }
            }
        }
    }

    fn too_long(&self, prefix: &[u8]) {
        let session = protocol::sniff_session_id(prefix);
        tracing::warn!(plugin = %self.identity.unique_identifier, session = ?session, limit = self.max_line, "plugin wrote an over-long line");
        let Some(id) = session else { return };
        let slot = self.sessions.lock().ok().and_then(|mut s| s.remove(&id));
        if let Some(slot) = slot {
            let _ = slot.tx.send(SessionItem::Failed(format!(
                "plugin {} sent a message longer than {} bytes (PLUGIN_RUNTIME_MAX_BUFFER_SIZE); the session was ended \
                 and the plugin kept running",
                self.identity.unique_identifier, self.max_line
            )));
        }
    }

    fn handle_line(self: &Arc<Self>, line: &[u8]) {
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
        }
        let plugin = &self.identity.unique_identifier;
        // A chunk for a session that passes chunks on as text is only validated, not decoded: one pass over the
        // line either way.
        let keep_text = protocol::leading_session_id(line).is_some_and(|id| {
            self.sessions
                .lock()
                .is_ok_and(|sessions| sessions.get(id).is_some_and(|slot| slot.chunk_text))
        });
        let event = match keep_text.then(|| protocol::parse_stream_line(line)).flatten() {
            Some(event) => event,
            None => protocol::parse_line(line),
        };
        match event {
            PluginEvent::Heartbeat => {
                if let Ok(mut t) = self.last_heartbeat.lock() {
                    *t = Instant::now();
                }
                if *self.life.borrow() == Life::Starting {
                    self.life.send_replace(Life::Ready);
                }
            }
            PluginEvent::Log { level, message } => match level.as_str() {
                "ERROR" | "CRITICAL" => tracing::error!(plugin = %plugin, "{message}"),
                "WARNING" | "WARN" => tracing::warn!(plugin = %plugin, "{message}"),
                "DEBUG" => tracing::debug!(plugin = %plugin, "{message}"),
                _ => tracing::info!(plugin = %plugin, "{message}"),
            },
            PluginEvent::Error(text) => tracing::warn!(plugin = %plugin, "plugin error: {text}"),
            PluginEvent::Other => {}
            PluginEvent::Session { session_id, message } => self.session_message(session_id, message),
        }
    }

    fn session_message(self: &Arc<Self>, session_id: String, message: SessionMessage) {
        let Ok(mut sessions) = self.sessions.lock() else {
            return;
        };
        match message {
            SessionMessage::End => {
                if sessions.remove(&session_id).is_some() {
                    self.completed.fetch_add(1, Ordering::Relaxed);
                }
            }
            SessionMessage::Stream(v) => {
                if let Some(slot) = sessions.get(&session_id) {
                    let _ = slot.tx.send(SessionItem::Chunk(v));
                }
            }
            SessionMessage::Error(e) => {
                if let Some(slot) = sessions.get(&session_id) {
                    let _ = slot.tx.send(SessionItem::Plugin(e));
                }
            }
            SessionMessage::Invoke {
                kind,
                backwards_request_id,
                request,
            } => {
                let slot = sessions.get(&session_id);
                let caller = slot.map(|s| Arc::clone(&s.caller));
                let gone = slot.map(|s| s.gone.clone()).unwrap_or_default();
                drop(sessions);
                let mux = Arc::clone(self);
                tokio::spawn(async move {
                    let (tx, mut rx) = mpsc::unbounded_channel::<backwards::Reply>();
                    let writer = {
                        let mux = Arc::clone(&mux);
                        let (session_id, id) = (session_id.clone(), backwards_request_id.clone());
                        tokio::spawn(async move {
                            while let Some((event, message, data)) = rx.recv().await {
                                let line = protocol::backwards_line(&session_id, &id, event, &message, data);
                                if mux.write(&line).await.is_err() {
                                    return;
                                }
                            }
                            let end = protocol::backwards_line(&session_id, &id, "end", "", Value::Null);
                            let _ = mux.write(&end).await;
                        })
                    };
                    match caller {
                        Some(caller) => {
                            let mut send = |reply: backwards::Reply| {
                                let _ = tx.send(reply);
                            };
                            // A call forwarded elsewhere (Dify, another tool) stops when its session ends or is
                            // abandoned: dropping it closes the upstream request.
                            let cancelled = tokio::select! {
                                () = backwards::answer(&mux.backwards, &caller, &kind, request, &mut send) => false,
                                () = gone.cancelled() => true,
                            };
                            if cancelled {
                                let _ = tx.send(("error", "the session was cancelled".into(), Value::Null));
                            }
                        }
                        None => {
                            let _ = tx.send(("error", "the session is over".into(), Value::Null));
                        }
                    }
                    drop(tx);
                    let _ = writer.await;
                });
            }
        }
    }
}

/// The answer stream of one request. Dropping it before the end cancels the session: a local plugin gets
/// [`crate::RuntimeConfig::cancel_grace`] to finish, and is killed (then restarted on demand) if it is still busy
/// with cancelled work and has nothing else to do.
pub struct Session {
    id: String,
    rx: mpsc::UnboundedReceiver<SessionItem>,
    mux: Arc<Mux>,
    done: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Session {
    /// The session id sent to the plugin.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Chunks that arrive from now on are kept as the JSON text the plugin wrote (validated, not decoded), for a
    /// caller that passes them on through [`Session::next_text`] without looking into them; [`Session::next`]
    /// still decodes them. Call it right after opening the session: a chunk that arrived before is decoded, and
    /// encoded again for [`Session::next_text`].
    pub fn keep_chunk_text(&self) {
        if let Ok(mut sessions) = self.mux.sessions.lock()
            && let Some(slot) = sessions.get_mut(&self.id)
        {
            slot.chunk_text = true;
        }
    }

    /// The next chunk; `None` after the end. An error is the last item.
    pub async fn next(&mut self) -> Option<Result<Value, SessionError>> {
        let item = std::future::poll_fn(|cx| self.poll_next_chunk(cx)).await;
        self.decode(item)
    }

    /// What [`Session::next`] would return, if the plugin has already sent it: `Poll::Pending` when nothing has
    /// arrived yet. Lets a caller pass on every chunk that is ready in one write.
    pub fn try_next(&mut self) -> Poll<Option<Result<Value, SessionError>>> {
        self.try_next_chunk().map(|item| self.decode(item))
    }

    /// [`Session::next`] with the chunk as JSON text on one line: the plugin's own when
    /// [`Session::keep_chunk_text`] was called, else the chunk encoded.
    pub async fn next_text(&mut self) -> Option<Result<Box<RawValue>, SessionError>> {
        std::future::poll_fn(|cx| self.poll_next_text(cx)).await
    }

    /// [`Session::next_text`] as a poll, for a caller that implements a stream over the session.
    pub fn poll_next_text(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Box<RawValue>, SessionError>>> {
        self.poll_next_chunk(cx)
            .map(|item| item.map(|chunk| chunk.map(Chunk::into_text)))
    }

    /// [`Session::try_next`] with the chunk as text, as [`Session::next_text`].
    pub fn try_next_text(&mut self) -> Poll<Option<Result<Box<RawValue>, SessionError>>> {
        self.try_next_chunk()
            .map(|item| item.map(|chunk| chunk.map(Chunk::into_text)))
    }

    fn poll_next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Chunk, SessionError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        self.rx.poll_recv(cx).map(|item| self.take(item))
    }

    fn try_next_chunk(&mut self) -> Poll<Option<Result<Chunk, SessionError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.try_recv() {
            Ok(item) => Poll::Ready(self.take(Some(item))),
            Err(mpsc::error::TryRecvError::Empty) => Poll::Pending,
            Err(mpsc::error::TryRecvError::Disconnected) => Poll::Ready(self.take(None)),
        }
    }

    /// An item with its chunk decoded. Chunk text was validated when its line was read, but decoding can still
    /// fail (nesting deeper than serde_json decodes; validation has no such limit): that ends the session with an
    /// error, as any other error item does.
    fn decode(&mut self, item: Option<Result<Chunk, SessionError>>) -> Option<Result<Value, SessionError>> {
        let decoded = item?.and_then(|chunk| {
            chunk
                .into_value()
                .map_err(|e| SessionError::Runtime(format!("the plugin sent a chunk that cannot be decoded: {e}")))
        });
        if decoded.is_err() {
            self.done = true;
        }
        Some(decoded)
    }

    fn take(&mut self, item: Option<SessionItem>) -> Option<Result<Chunk, SessionError>> {
        match item {
            Some(SessionItem::Chunk(v)) => Some(Ok(v)),
            Some(SessionItem::Plugin(e)) => {
                // The plugin follows an error with `end`; nothing more will come.
                self.done = true;
                Some(Err(SessionError::Plugin(e)))
            }
            Some(SessionItem::Failed(reason)) => {
                self.done = true;
                Some(Err(SessionError::Runtime(reason)))
            }
            Some(SessionItem::Closed(reason)) => {
                self.done = true;
                Some(Err(SessionError::ConnectionClosed(reason)))
            }
            None => {
                self.done = true;
                None
            }
        }
    }

    /// Every chunk until the end, or the first error.
    pub async fn collect(mut self) -> Result<Vec<Value>, SessionError> {
        let mut out = Vec::new();
        while let Some(item) = self.next().await {
            out.push(item?);
        }
        Ok(out)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(mut sessions) = self.mux.sessions.lock()
            && let Some(slot) = sessions.get_mut(&self.id)
        {
            slot.abandoned_at.get_or_insert_with(Instant::now);
            slot.gone.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mux() -> Arc<Mux> {
        let identity = PluginIdentity {
            unique_identifier: "a/p:0.0.1@00".into(),
            plugin_id: "a/p".into(),
            storage_quota: None,
            tool_permission: false,
            permissions: toolplane_plugin::Permissions::default(),
        };
        Mux::new(identity, tokio::io::sink(), Backwards::default(), 1 << 20, Life::Ready)
    }

    fn stream_line(session: &Session, chunk: &str) -> Vec<u8> {
        format!(
            r#"{{"event":"session","session_id":"{}","data":{{"type":"stream","data":{chunk}}}}}"#,
            session.id()
        )
        .into_bytes()
    }

    fn end_line(session: &Session) -> Vec<u8> {
        format!(
            r#"{{"event":"session","session_id":"{}","data":{{"type":"end","data":null}}}}"#,
            session.id()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn chunks_come_as_values_or_as_the_plugins_text() {
        let mux = mux();
        let request = InvokeRequest::default();
        let mut decoding = mux.open(&request).await.unwrap();
        let mut passing = mux.open(&request).await.unwrap();
        // A chunk that arrived before the session asked for text is encoded again.
        mux.handle_line(&stream_line(&passing, r#"{"n": 0}"#));
        passing.keep_chunk_text();
        for session in [&decoding, &passing] {
            mux.handle_line(&stream_line(session, r#"{"text": "a\nb", "n": 1}"#));
            mux.handle_line(&end_line(session));
        }

        assert_eq!(decoding.next().await.unwrap().unwrap(), json!({"text": "a\nb", "n": 1}));
        assert!(decoding.next().await.is_none());

        assert_eq!(passing.next_text().await.unwrap().unwrap().get(), r#"{"n":0}"#);
        assert_eq!(
            passing.next_text().await.unwrap().unwrap().get(),
            r#"{"text": "a\nb", "n": 1}"#
        );
        assert!(passing.next_text().await.is_none());
    }

    #[tokio::test]
    async fn text_chunks_still_decode_for_next() {
        let mux = mux();
        let mut session = mux.open(&InvokeRequest::default()).await.unwrap();
        session.keep_chunk_text();
        mux.handle_line(&stream_line(&session, r#"{"a": [1, 2]}"#));
        // Deeper than serde_json decodes: valid JSON, passed on as text, but an error for a decoding reader.
        mux.handle_line(&stream_line(
            &session,
            &format!("{}{}", "[".repeat(200), "]".repeat(200)),
        ));
        mux.handle_line(&end_line(&session));
        assert_eq!(session.next().await.unwrap().unwrap(), json!({"a": [1, 2]}));
        let error = session.next().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("cannot be decoded"), "{error}");
        assert!(session.next().await.is_none());
    }
}
