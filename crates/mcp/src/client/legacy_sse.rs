//! The HTTP+SSE transport of 2024-11-05: `GET` an event stream whose first event (`endpoint`) names the URL to
//! `POST` messages to; every response arrives on the stream.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use toolplane_net::header::{ACCEPT, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use toolplane_net::{NetError, Response as HttpResponse, SafeClient, StatusCode};
use url::Url;

use super::dispatch::{Pending, Routed, parse, route};
use super::http::header_map;
use super::{ClientOptions, Handler, McpError, RequestContext, Transport, TransportKind, snippet};
use crate::oauth::BearerChallenge;
use crate::protocol::{Request, Response};
use crate::sse::SseParser;

pub(crate) struct LegacySseTransport {
    http: SafeClient,
    endpoint: Url,
    headers: HeaderMap,
    pending: Arc<Pending>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl LegacySseTransport {
    pub(crate) async fn connect(
        http: SafeClient,
        url: Url,
        options: &ClientOptions,
        notifications: broadcast::Sender<Request>,
    ) -> Result<Self, McpError> {
        let headers = header_map(&options.headers)?;
        let response = http
            .get(url.clone())
            .headers(headers.clone())
            .header(ACCEPT, "text/event-stream")
            .timeout(Duration::from_secs(86_400))
            .send()
            .await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(BearerChallenge::parse);
            return Err(McpError::Unauthorized {
                status: status.as_u16(),
                challenge,
            });
        }
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"));
        if !status.is_success() || !is_stream {
            let body = http.read_body(response).await.unwrap_or_default();
            return Err(McpError::Http {
                status: status.as_u16(),
                body: if is_stream {
                    snippet(&body)
                } else {
                    format!("expected an SSE stream (text/event-stream); got: {}", snippet(&body))
                },
            });
        }

        let pending = Arc::new(Pending::default());
        let stop = CancellationToken::new();
        let (endpoint_tx, endpoint_rx) = oneshot::channel();
        let reader = Reader {
            http: http.clone(),
            base: url.clone(),
            headers: headers.clone(),
            handler: options.handler.clone(),
            pending: Arc::clone(&pending),
            notifications,
            sse_read_timeout: options.sse_read_timeout,
            max_message_bytes: options.max_message_bytes,
        };
        let task_stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = task_stop.cancelled() => {}
                _ = reader.run(response, endpoint_tx) => {}
            }
        });
        let endpoint = match tokio::time::timeout(options.timeout, endpoint_rx).await {
            Ok(Ok(endpoint)) => endpoint?,
            Ok(Err(_)) => {
                return Err(McpError::Closed(
                    "the SSE stream ended before the endpoint event".into(),
                ));
            }
            Err(_) => {
                stop.cancel();
                return Err(McpError::Protocol(format!(
                    "no endpoint event on the SSE stream within {} s",
                    options.timeout.as_secs()
                )));
            }
        };
        Ok(Self {
            http,
            endpoint,
            headers,
            pending,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        })
    }

    async fn post(&self, message: &impl serde::Serialize, timeout: Duration) -> Result<(), McpError> {
        let body = serde_json::to_vec(message).map_err(|e| McpError::Protocol(e.to_string()))?;
        let response = self
            .http
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await?;
        accept(&self.http, response).await
    }
}

async fn accept(http: &SafeClient, response: HttpResponse) -> Result<(), McpError> {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        return Err(McpError::Unauthorized {
            status: 401,
            challenge: None,
        });
    }
    if status.is_success() {
        return Ok(());
    }
    let body = http.read_body(response).await.unwrap_or_default();
    Err(McpError::Http {
        status: status.as_u16(),
        body: snippet(&body),
    })
}

#[async_trait]
impl Transport for LegacySseTransport {
    async fn request(&self, request: &Request, ctx: &RequestContext) -> Result<Response, McpError> {
        let Some(id) = request.id.clone() else {
            return Err(McpError::Protocol("a request needs an id".into()));
        };
        let (_guard, rx) = self.pending.register(id);
        self.post(request, ctx.timeout + Duration::from_secs(1)).await?;
        rx.await
            .map_err(|_| McpError::Closed("the SSE stream ended before the response arrived".into()))
    }

    async fn notify(&self, notification: &Request, ctx: &RequestContext) -> Result<(), McpError> {
        self.post(notification, ctx.timeout).await
    }

    fn kind(&self) -> TransportKind {
        TransportKind::LegacySse
    }

    async fn close(&self) {
        self.stop.cancel();
        self.pending.close_all();
    }
}

struct Reader {
    http: SafeClient,
    base: Url,
    headers: HeaderMap,
    pending: Arc<Pending>,
    notifications: broadcast::Sender<Request>,
    handler: Option<Handler>,
    sse_read_timeout: Duration,
    max_message_bytes: usize,
}

impl Reader {
    async fn run(self, mut response: HttpResponse, endpoint_tx: oneshot::Sender<Result<Url, McpError>>) {
        let mut endpoint_tx = Some(endpoint_tx);
        let mut endpoint: Option<Url> = None;
        let mut parser = SseParser::new(self.max_message_bytes);
        let error = loop {
            let chunk = match tokio::time::timeout(self.sse_read_timeout, response.chunk()).await {
                Err(_) => break McpError::Closed("the SSE stream went silent (sse_read_timeout)".into()),
                Ok(Err(e)) => break NetError::from_reqwest(e).into(),
                Ok(Ok(None)) => break McpError::Closed("the server closed the SSE stream".into()),
                Ok(Ok(Some(chunk))) => chunk,
            };
            let events = match parser.feed(&chunk) {
                Ok(events) => events,
                Err(e) => break McpError::Protocol(e.to_string()),
            };
            for event in events {
                match event.event.as_str() {
                    "endpoint" => {
                        let resolved = self.resolve_endpoint(event.data.trim());
                        if let Ok(url) = &resolved {
                            endpoint = Some(url.clone());
                        }
                        if let Some(tx) = endpoint_tx.take() {
                            let _ = tx.send(resolved);
                        }
                    }
                    "message" if !event.data.trim().is_empty() => match parse(&event.data) {
                        Ok(messages) => {
                            for message in messages {
                                if let Routed::Reply(reply) =
                                    route(message, Some(&self.pending), &self.notifications, self.handler.as_ref())
                                    && let Some(url) = &endpoint
                                {
                                    self.reply(url.clone(), reply);
                                }
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "skipping a bad message on the SSE stream"),
                    },
                    _ => {}
                }
            }
        };
        tracing::debug!(error = %error, "legacy SSE stream ended");
        if let Some(tx) = endpoint_tx.take() {
            let _ = tx.send(Err(error));
        }
        // Every waiting request fails with "closed".
        self.pending.close_all();
    }

    /// Resolves the endpoint against the stream URL; it must stay on the same origin (as Dify requires).
    fn resolve_endpoint(&self, data: &str) -> Result<Url, McpError> {
        let url = self
            .base
            .join(data)
            .map_err(|e| McpError::Protocol(format!("the endpoint event {data:?} is not a URL: {e}")))?;
        if url.origin() != self.base.origin() {
            return Err(McpError::Protocol(
                "the endpoint event points to another origin than the SSE stream; refusing it".into(),
            ));
        }
        Ok(url)
    }

    fn reply(&self, url: Url, reply: futures::future::BoxFuture<'static, Response>) {
        let http = self.http.clone();
        let headers = self.headers.clone();
        tokio::spawn(async move {
            let Ok(body) = serde_json::to_vec(&reply.await) else {
                return;
            };
            let sent = http
                .post(url)
                .headers(headers)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "could not answer the MCP server's request");
            }
        });
    }
}
