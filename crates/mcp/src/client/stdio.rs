//! stdio: the server is a child process; messages are newline-delimited JSON on its stdin and stdout, its stderr is
//! logged. The child is killed when the transport is dropped or closed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, broadcast, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::dispatch::{Pending, Routed, parse, route};
use serde_json::json;

use super::{ClientOptions, McpError, RequestContext, ServerDetails, Transport, TransportKind};
use crate::protocol::{
    META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, Request, RequestId, Response, STATELESS_VERSION,
};

/// How to start a local MCP server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioCommand {
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables (the child otherwise inherits the environment).
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
}

pub(crate) struct StdioTransport {
    outgoing: mpsc::Sender<String>,
    pending: Arc<Pending>,
    child: Mutex<Option<Child>>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl StdioTransport {
    pub(crate) fn spawn(
        command: &StdioCommand,
        options: &ClientOptions,
        notifications: broadcast::Sender<Request>,
    ) -> Result<Self, McpError> {
        let mut cmd = Command::new(&command.command);
        cmd.args(&command.args)
            .envs(&command.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &command.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|source| McpError::Spawn {
            command: command.command.clone(),
            source,
        })?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(McpError::Closed("the child process has no stdio pipes".into()));
        };

        let stop = CancellationToken::new();
        let pending = Arc::new(Pending::default());
        let (outgoing, mut outgoing_rx) = mpsc::channel::<String>(64);

        // Writer: one line per message.
        let writer_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    _ = writer_stop.cancelled() => break,
                    line = outgoing_rx.recv() => match line { Some(l) => l, None => break },
                };
                let written = async {
                    stdin.write_all(line.as_bytes()).await?;
                    stdin.write_all(b"\n").await?;
                    stdin.flush().await
                };
                if let Err(e) = written.await {
                    tracing::debug!(error = %e, "cannot write to the MCP server's stdin");
                    break;
                }
            }
        });

        // Reader: responses to pending requests, notifications to subscribers, answers to server requests.
        let reader_pending = Arc::clone(&pending);
        let reader_stop = stop.clone();
        let replies = outgoing.clone();
        let limit = options.max_message_bytes;
        let handler = options.handler.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout);
            loop {
                let line = tokio::select! {
                    _ = reader_stop.cancelled() => break,
                    line = read_line_capped(&mut reader, limit) => line,
                };
                match line {
                    Ok(Some(line)) => {
                        let text = String::from_utf8_lossy(&line);
                        if text.trim().is_empty() {
                            continue;
                        }
                        match parse(&text) {
                            Ok(messages) => {
                                for message in messages {
                                    if let Routed::Reply(reply) =
                                        route(message, Some(&reader_pending), &notifications, handler.as_ref())
                                    {
                                        let replies = replies.clone();
                                        tokio::spawn(async move {
                                            if let Ok(json) = serde_json::to_string(&reply.await) {
                                                let _ = replies.send(json).await;
                                            }
                                        });
                                    }
                                }
                            }
                            Err(e) => tracing::debug!(error = %e, "skipping a bad line from the MCP server"),
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "stopping to read the MCP server's stdout");
                        break;
                    }
                }
            }
            reader_pending.close_all();
        });

        // stderr is the server's log.
        let stderr_stop = stop.clone();
        let program = command.command.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            loop {
                tokio::select! {
                    _ = stderr_stop.cancelled() => break,
                    line = lines.next_line() => match line {
                        Ok(Some(line)) => tracing::debug!(target: "toolplane_mcp::stdio", program = %program, "{line}"),
                        _ => break,
                    },
                }
            }
        });

        Ok(Self {
            outgoing,
            pending,
            child: Mutex::new(Some(child)),
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        })
    }

    async fn send(&self, message: &impl serde::Serialize) -> Result<(), McpError> {
        let line = serde_json::to_string(message).map_err(|e| McpError::Protocol(e.to_string()))?;
        self.outgoing
            .send(line)
            .await
            .map_err(|_| McpError::Closed("the MCP server process is gone".into()))
    }
}

/// Reads one `\n`-terminated line of at most `limit` bytes; `None` at end of input.
pub(crate) async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if line.is_empty() { None } else { Some(line) });
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > limit + 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a message is larger than {limit} bytes"),
            ));
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(line));
        }
    }
}

#[async_trait]
impl Transport for StdioTransport {
    async fn request(&self, request: &Request, _ctx: &RequestContext) -> Result<Response, McpError> {
        let Some(id) = request.id.clone() else {
            return Err(McpError::Protocol("a request needs an id".into()));
        };
        let (_guard, rx) = self.pending.register(id);
        self.send(request).await?;
        rx.await
            .map_err(|_| McpError::Closed("the MCP server process exited before answering".into()))
    }

    async fn notify(&self, notification: &Request, _ctx: &RequestContext) -> Result<(), McpError> {
        self.send(notification).await
    }

    fn kind(&self) -> TransportKind {
        TransportKind::Stdio
    }

    async fn after_initialize(&self, details: &ServerDetails) {
        // 2026-07-28 has no unsolicited notifications: list changes come only to a `subscriptions/listen`
        // request, which stays open for the life of the process. Its (final) response nobody waits for.
        if details.is_stateless() && details.tools_list_changed() {
            let listen = Request::new(
                RequestId::String("listen-tools".into()),
                "subscriptions/listen",
                Some(json!({
                    "_meta": {META_PROTOCOL_VERSION: STATELESS_VERSION, META_CLIENT_CAPABILITIES: {}},
                    "notifications": {"toolsListChanged": true},
                })),
            );
            if let Err(e) = self.send(&listen).await {
                tracing::debug!(error = %e, "could not subscribe to the MCP server's list changes");
            }
        }
    }

    async fn close(&self) {
        self.stop.cancel();
        self.pending.close_all();
        if let Some(mut child) = self.child.lock().await.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}
