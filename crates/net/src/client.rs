//! [`SafeClient`] and [`SafeRequestBuilder`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Body, Method, Request, Response, Version};
use serde::Serialize;
use url::Url;

use crate::body::read_body_limited;
use crate::config::NetConfig;
use crate::error::NetError;
use crate::guard::{Guard, GuardedResolver};

/// Something that can be turned into a request URL: `&str`, `String` or [`Url`].
pub trait IntoUrl {
    /// Parses or converts into a [`Url`].
    fn into_url(self) -> Result<Url, NetError>;
}

impl IntoUrl for Url {
    fn into_url(self) -> Result<Url, NetError> {
        Ok(self)
    }
}

impl IntoUrl for &Url {
    fn into_url(self) -> Result<Url, NetError> {
        Ok(self.clone())
    }
}

impl IntoUrl for &str {
    fn into_url(self) -> Result<Url, NetError> {
        Url::parse(self).map_err(|err| NetError::InvalidUrl {
            url: self.to_owned(),
            reason: err.to_string(),
        })
    }
}

impl IntoUrl for String {
    fn into_url(self) -> Result<Url, NetError> {
        self.as_str().into_url()
    }
}

impl IntoUrl for &String {
    fn into_url(self) -> Result<Url, NetError> {
        self.as_str().into_url()
    }
}

/// The outbound HTTP client every tool uses. Cheap to clone (shares one connection pool).
///
/// Every request passes the SSRF guard: IP-literal targets are checked before anything is sent,
/// host names are checked by the resolver before a connection is opened, and every redirect hop
/// is checked before it is followed. Proxies from the environment are ignored. The inner
/// `reqwest::Client` is never handed out, so there is no way around the guard.
#[derive(Clone)]
pub struct SafeClient {
    http: reqwest::Client,
    guard: Arc<Guard>,
    config: Arc<NetConfig>,
}

impl std::fmt::Debug for SafeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SafeClient {
    /// Builds a client from `config`.
    pub fn new(config: NetConfig) -> Result<SafeClient, NetError> {
        let guard = Arc::new(Guard::new(&config));
        let http = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedResolver {
                guard: Arc::clone(&guard),
            })
            .redirect(guard.redirect_policy())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .timeout(config.total_timeout)
            .user_agent(config.user_agent.as_str())
            .build()
            .map_err(NetError::ClientBuild)?;
        Ok(SafeClient {
            http,
            guard,
            config: Arc::new(config),
        })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Checks `url` as far as possible without DNS: scheme, host and IP-literal hosts.
    ///
    /// Useful to reject a tool's server URL when it is saved. Host names still get checked
    /// when a request connects, because their addresses can change.
    pub fn check_url(&self, url: &Url) -> Result<(), NetError> {
        Ok(self.guard.check_url(url)?)
    }

    /// Starts a request with `method` to `url`.
    pub fn request(&self, method: Method, url: impl IntoUrl) -> SafeRequestBuilder {
        let inner = url.into_url().and_then(|url| {
            // Fail early on what can be known now; `send` checks the final URL again.
            self.check_url(&url)?;
            Ok(self.http.request(method, url))
        });
        SafeRequestBuilder {
            client: self.clone(),
            inner,
        }
    }

    /// Starts a `GET` request.
    pub fn get(&self, url: impl IntoUrl) -> SafeRequestBuilder {
        self.request(Method::GET, url)
    }

    /// Starts a `POST` request.
    pub fn post(&self, url: impl IntoUrl) -> SafeRequestBuilder {
        self.request(Method::POST, url)
    }

    /// Starts a `PUT` request.
    pub fn put(&self, url: impl IntoUrl) -> SafeRequestBuilder {
        self.request(Method::PUT, url)
    }

    /// Starts a `PATCH` request.
    pub fn patch(&self, url: impl IntoUrl) -> SafeRequestBuilder {
        self.request(Method::PATCH, url)
    }

    /// Starts a `DELETE` request.
    pub fn delete(&self, url: impl IntoUrl) -> SafeRequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// Sends a prepared request after checking its URL.
    ///
    /// The URL is checked here, at the last moment, because a [`Request`]'s URL can be changed
    /// with `url_mut` after it was built.
    pub async fn execute(&self, request: Request) -> Result<Response, NetError> {
        self.check_url(request.url())?;
        self.http.execute(request).await.map_err(NetError::from_reqwest)
    }

    /// Reads `response`'s body, refusing more than [`NetConfig::max_response_bytes`].
    pub async fn read_body(&self, response: Response) -> Result<Bytes, NetError> {
        read_body_limited(response, self.config.max_response_bytes).await
    }
}

/// A request under construction; sent through the guard by [`send`](Self::send).
///
/// Mirrors the parts of `reqwest::RequestBuilder` tools need. Errors (bad URL, refused target,
/// bad header) are kept and reported by `send`, like reqwest does.
#[must_use = "a request does nothing until it is sent"]
pub struct SafeRequestBuilder {
    client: SafeClient,
    inner: Result<reqwest::RequestBuilder, NetError>,
}

/// Deliberately terse: the inner builder's headers may hold credentials.
impl std::fmt::Debug for SafeRequestBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("SafeRequestBuilder");
        if let Err(err) = &self.inner {
            s.field("error", err);
        }
        s.finish_non_exhaustive()
    }
}

impl SafeRequestBuilder {
    fn map(self, f: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> Self {
        SafeRequestBuilder {
            client: self.client,
            inner: self.inner.map(f),
        }
    }

    /// Adds a header.
    pub fn header<K, V>(self, key: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.map(|b| b.header(key, value))
    }

    /// Adds all `headers`, replacing existing values of the same names.
    pub fn headers(self, headers: HeaderMap) -> Self {
        self.map(|b| b.headers(headers))
    }

    /// Sets HTTP basic authentication.
    pub fn basic_auth(self, username: impl std::fmt::Display, password: Option<impl std::fmt::Display>) -> Self {
        self.map(|b| b.basic_auth(username, password))
    }

    /// Sets a bearer token.
    pub fn bearer_auth(self, token: impl std::fmt::Display) -> Self {
        self.map(|b| b.bearer_auth(token))
    }

    /// Sets the body.
    pub fn body(self, body: impl Into<Body>) -> Self {
        self.map(|b| b.body(body))
    }

    /// Appends query parameters to the URL.
    pub fn query<T: Serialize + ?Sized>(self, query: &T) -> Self {
        self.map(|b| b.query(query))
    }

    /// Sends `form` as `application/x-www-form-urlencoded`.
    pub fn form<T: Serialize + ?Sized>(self, form: &T) -> Self {
        self.map(|b| b.form(form))
    }

    /// Sends `json` as `application/json`.
    pub fn json<T: Serialize + ?Sized>(self, json: &T) -> Self {
        self.map(|b| b.json(json))
    }

    /// Shortens (or lengthens) the total timeout of this request.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map(|b| b.timeout(timeout))
    }

    /// Sets the HTTP version.
    pub fn version(self, version: Version) -> Self {
        self.map(|b| b.version(version))
    }

    /// Builds the request without sending it; send it with [`SafeClient::execute`].
    pub fn build(self) -> Result<Request, NetError> {
        self.inner?.build().map_err(NetError::from_reqwest)
    }

    /// Sends the request through the guard. The body is not read; use
    /// [`SafeClient::read_body`] or [`read_body_limited`](crate::read_body_limited) for that.
    pub async fn send(self) -> Result<Response, NetError> {
        let client = self.client.clone();
        let request = self.build()?;
        client.execute(request).await
    }
}
