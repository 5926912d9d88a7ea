//! A remote-debugging plugin: a `dify_plugin` process in `INSTALL_METHOD=remote` mode that connected to the host
//! over TCP and registered (the registration itself is the daemon's business). From then on the connection carries
//! the stdio protocol, so it runs on the same session multiplexer as a local process ([`crate::mux`]).
//!
//! The connection ends when the plugin closes it, when it sends no heartbeat for the heartbeat timeout, or when the
//! host closes it; every open session then fails at once with [`crate::SessionError::ConnectionClosed`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use crate::backwards::Backwards;
use crate::error::RuntimeError;
use crate::frame::FrameReader;
use crate::mux::{CloseKind, Life, Mux, PluginIdentity, Session};
use crate::protocol::InvokeRequest;

/// A registered remote plugin. Dropping the last handle does not close the connection; [`RemotePlugin::close`]
/// does.
#[derive(Debug)]
pub struct RemotePlugin {
    mux: Arc<Mux>,
    reader: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl RemotePlugin {
    /// Serves the plugin on a connection whose registration has been read from `frames` (which may already hold
    /// the first frames after it). The connection is closed when no heartbeat arrives for `heartbeat_timeout`.
    /// Must be called inside a tokio runtime.
    pub fn attach<R, W>(
        identity: PluginIdentity,
        mut frames: FrameReader<R>,
        writer: W,
        backwards: Backwards,
        heartbeat_timeout: Duration,
    ) -> Arc<Self>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let max_line = frames.max_line();
        let mux = Mux::new(identity, writer, backwards, max_line, Life::Ready);
        let reader = {
            let mux = Arc::clone(&mux);
            tokio::spawn(async move {
                mux.read_frames(&mut frames).await;
                let reason = format!(
                    "connection closed: the remote debugging connection of plugin {} was closed",
                    mux.unique_identifier()
                );
                mux.close(&reason, CloseKind::Connection).await;
            })
        };
        let plugin = Arc::new(Self {
            mux,
            reader: std::sync::Mutex::new(Some(reader)),
        });
        tokio::spawn(heartbeat_monitor(Arc::downgrade(&plugin), heartbeat_timeout));
        plugin
    }

    /// `author/name:version@checksum`.
    pub fn unique_identifier(&self) -> &str {
        self.mux.unique_identifier()
    }

    /// Whether the connection is still open.
    pub fn is_connected(&self) -> bool {
        !self.mux.is_dead()
    }

    /// Sessions not yet ended.
    pub fn open_sessions(&self) -> usize {
        self.mux.open_sessions()
    }

    /// Opens a session on the connection and sends the request.
    pub async fn invoke(&self, request: &InvokeRequest) -> Result<Session, RuntimeError> {
        self.mux
            .open(request)
            .await
            .map_err(|reason| RuntimeError::NotRunning(self.unique_identifier().to_owned(), reason))
    }

    /// Waits until the connection is closed; the reason open sessions failed with.
    pub async fn closed(&self) -> String {
        let mut life = self.mux.subscribe();
        match life.wait_for(|l| matches!(l, Life::Dead(_))).await {
            Ok(life) => match &*life {
                Life::Dead(reason) => reason.clone(),
                _ => String::new(),
            },
            Err(_) => "connection closed".to_owned(),
        }
    }

    /// Writes `message` as a plain-text line (the plugin logs it), then closes the connection; open sessions fail
    /// with `connection closed: <message>`.
    pub async fn close(&self, message: &str) {
        let mut line = message.as_bytes().to_vec();
        line.push(b'\n');
        let _ = tokio::time::timeout(Duration::from_secs(1), self.mux.write(&line)).await;
        self.shut(&format!("connection closed: {message}")).await;
    }

    async fn shut(&self, reason: &str) {
        let reader = self.reader.lock().ok().and_then(|mut r| r.take());
        if let Some(reader) = reader {
            reader.abort();
        }
        self.mux.close(reason, CloseKind::Connection).await;
    }
}

async fn heartbeat_monitor(plugin: std::sync::Weak<RemotePlugin>, timeout: Duration) {
    let tick = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::time::sleep(tick).await;
        let Some(plugin) = plugin.upgrade() else { return };
        if plugin.mux.is_dead() {
            return;
        }
        if plugin.mux.since_heartbeat() > timeout {
            tracing::warn!(plugin = %plugin.unique_identifier(), "closing a remote plugin that stopped sending heartbeats");
            let reason = format!(
                "connection closed: plugin {} sent no heartbeat for {} s",
                plugin.unique_identifier(),
                timeout.as_secs_f64()
            );
            plugin.shut(&reason).await;
            return;
        }
    }
}
