//! The everything-client for `@modelcontextprotocol/conformance client` (`scripts/conformance.sh`), built on
//! toolplane's MCP client and OAuth library.
//!
//! Usage: `conformance_client <server-url>` with `MCP_CONFORMANCE_SCENARIO`, `MCP_CONFORMANCE_PROTOCOL_VERSION`
//! (session era up to 2025-11-25, stateless for 2026-07-28) and, for some scenarios, `MCP_CONFORMANCE_CONTEXT`
//! (JSON: pre-registered credentials, tool calls to make).
//!
//! Every scenario runs the same client code a provider uses; what differs is only what the client is asked to do
//! (list and call tools, read resources, answer elicitations) and, for `auth/*`, how a 401/403 is answered: OAuth
//! discovery, a pre-registered client, a Client ID Metadata Document or dynamic registration, the authorization
//! code flow with PKCE through a loopback redirect URI (this process plays the user's browser), RFC 9207 `iss`
//! checks, step-up on `insufficient_scope`, re-registration when the authorization server changes, the
//! client-credentials grant, and DPoP-bound tokens (RFC 9449) when the authorization server supports them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use toolplane_mcp::client::{ClientHandler, Handler};
use toolplane_mcp::oauth::{self, BearerChallenge, ClientInformation, ClientMetadata, Dpop, OAuthDiscovery, TokenSet};
use toolplane_mcp::protocol::{RpcError, STATELESS_VERSION, Tool};
use toolplane_mcp::{CallOptions, ClientOptions, EraPreference, McpClient, McpError};
use toolplane_net::{NetConfig, SafeClient};

/// The Client ID Metadata Document URL the suite expects (`auth/basic-cimd`).
const CIMD_URL: &str = "https://conformance-test.local/client-metadata.json";
/// Authorization attempts per run; a server that keeps refusing must not make the client loop (scope-retry-limit).
const MAX_AUTHORIZATIONS: usize = 3;

type Failure = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() {
    let url = std::env::args().nth(1).unwrap_or_default();
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    let context: Value = std::env::var("MCP_CONFORMANCE_CONTEXT")
        .ok()
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or(Value::Null);
    let version = std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION").unwrap_or_else(|_| "2025-11-25".into());
    eprintln!("scenario {scenario} at {url} (protocol {version})");
    match run(&url, &scenario, &version, &context).await {
        Ok(()) => eprintln!("done"),
        Err(e) => {
            eprintln!("failed: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(url: &str, scenario: &str, version: &str, context: &Value) -> Result<(), Failure> {
    // The suite's servers run on this machine; allow loopback explicitly (the SSRF guard refuses it otherwise).
    let http = SafeClient::new(NetConfig {
        allowed_networks: vec!["127.0.0.0/8".parse()?, "::1/128".parse()?],
        ..NetConfig::default()
    })?;
    let options = ClientOptions {
        era: if version == STATELESS_VERSION {
            EraPreference::Stateless
        } else {
            EraPreference::Session
        },
        protocol_version: Some(version.to_owned()),
        handler: Some(Handler(std::sync::Arc::new(Answers))),
        timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    };
    let mut auth = Auth::new(http.clone(), url, scenario, context)?;
    let client = auth.connect(&options).await?;
    let result = exercise(&client, &mut auth, scenario, context).await;
    client.close().await;
    result
}

/// What each scenario asks of the client once connected.
async fn exercise(client: &McpClient, auth: &mut Auth, scenario: &str, context: &Value) -> Result<(), Failure> {
    let tools = auth
        .retry(client, |c| Box::pin(async move { c.list_tools().await }))
        .await?;
    match scenario {
        "initialize" => return Ok(()),
        "http-custom-headers" => {
            for call in context.get("toolCalls").and_then(Value::as_array).into_iter().flatten() {
                let name = call.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                let args = call
                    .get("arguments")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                report(&name, client.call_tool(&name, args, CallOptions::default()).await);
            }
            return Ok(());
        }
        "json-schema-2020-12-preservation" => {
            // Round-trip the focal tool's schema as the client kept it.
            let schema = tools
                .iter()
                .find(|t| t.name == "json_schema_2020_12_tool")
                .map(|t| t.input_schema.clone())
                .unwrap_or(Value::Null);
            let args = json!({"schema": schema}).as_object().cloned().unwrap_or_default();
            report(
                "json_schema_echo",
                client.call_tool("json_schema_echo", args, CallOptions::default()).await,
            );
            return Ok(());
        }
        s if s.starts_with("sep-2640-") => return skills(client, s).await,
        _ => {}
    }
    let mut failure = None;
    for tool in &tools {
        let args = arguments_for(tool);
        let name = tool.name.clone();
        let outcome = auth
            .retry(client, move |c| {
                let name = name.clone();
                let args = args.clone();
                Box::pin(async move { c.call_tool(&name, args, CallOptions::default()).await })
            })
            .await;
        if let Err(e) = &outcome
            && scenario.starts_with("auth/")
        {
            failure = Some(format!("{}: {e}", tool.name));
        }
        report(&tool.name, outcome);
    }
    if scenario == "http-standard-headers" {
        let resources = client.request("resources/list", None, CallOptions::default()).await?;
        for resource in resources
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let uri = resource.get("uri").cloned().unwrap_or(Value::Null);
            let read = client
                .request("resources/read", Some(json!({"uri": uri})), CallOptions::default())
                .await;
            eprintln!("resources/read {uri}: {}", if read.is_ok() { "ok" } else { "error" });
        }
        let prompts = client.request("prompts/list", None, CallOptions::default()).await?;
        for prompt in prompts.get("prompts").and_then(Value::as_array).into_iter().flatten() {
            let name = prompt.get("name").cloned().unwrap_or(Value::Null);
            let got = client
                .request("prompts/get", Some(json!({"name": name})), CallOptions::default())
                .await;
            eprintln!("prompts/get {name}: {}", if got.is_ok() { "ok" } else { "error" });
        }
    }
    match failure {
        Some(f) => Err(f.into()),
        None => Ok(()),
    }
}

fn report<T: std::fmt::Debug>(name: &str, outcome: Result<T, McpError>) {
    match outcome {
        Ok(result) => eprintln!("tools/call {name}: {result:?}"),
        Err(e) => eprintln!("tools/call {name} failed: {e}"),
    }
}

/// Arguments for a tool from its schema: every required property gets a value of its type (`add_numbers` gets
/// two numbers).
fn arguments_for(tool: &Tool) -> Map<String, Value> {
    let schema = &tool.input_schema;
    let mut args = Map::new();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let properties = schema.get("properties").and_then(Value::as_object);
    for name in required {
        let kind = properties
            .and_then(|p| p.get(name))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("string");
        let value = match kind {
            "number" | "integer" => json!(2),
            "boolean" => json!(true),
            "object" => json!({}),
            "array" => json!([]),
            _ => json!("test"),
        };
        args.insert(name.to_owned(), value);
    }
    args
}

/// Answers elicitation (accepting with the schema's defaults), sampling and roots requests.
struct Answers;

#[async_trait]
impl ClientHandler for Answers {
    fn capabilities(&self) -> Value {
        json!({"elicitation": {}, "sampling": {}, "roots": {"listChanged": false}})
    }

    async fn handle(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        match method {
            "elicitation/create" => {
                let mut content = Map::new();
                let properties = params.pointer("/requestedSchema/properties").and_then(Value::as_object);
                for (name, property) in properties.into_iter().flatten() {
                    let value = match property.get("default") {
                        Some(default) => default.clone(),
                        None => match property.get("type").and_then(Value::as_str) {
                            Some("boolean") => json!(true),
                            Some("number" | "integer") => json!(1),
                            _ => json!("toolplane"),
                        },
                    };
                    content.insert(name.clone(), value);
                }
                Ok(json!({"action": "accept", "content": content}))
            }
            "sampling/createMessage" => Ok(json!({
                "role": "assistant",
                "content": {"type": "text", "text": "toolplane conformance client"},
                "model": "toolplane-conformance",
                "stopReason": "endTurn",
            })),
            "roots/list" => Ok(json!({"roots": []})),
            other => Err(RpcError::method_not_found(other)),
        }
    }
}

/// Skills extension (SEP-2640): list skills without fetching anything, then load the first skill, verifying its
/// size, digest and frontmatter before reading any of its other files.
async fn skills(client: &McpClient, scenario: &str) -> Result<(), Failure> {
    let listed = client.request("skills/list", None, CallOptions::default()).await?;
    if scenario == "sep-2640-client-no-prefetch" {
        return Ok(());
    }
    let Some(skill) = listed
        .get("skills")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
        .cloned()
    else {
        return Ok(());
    };
    let entry_uri = skill.get("uri").and_then(Value::as_str).unwrap_or_default().to_owned();
    let resources = skill
        .get("resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut verified = true;
    for resource in &resources {
        let uri = resource.get("uri").and_then(Value::as_str).unwrap_or_default();
        if !verified {
            break;
        }
        if uri != entry_uri {
            continue;
        }
        let text = read_text(client, uri).await?;
        verified = verify(&text, resource, skill.get("frontmatter"));
        eprintln!("{uri}: {}", if verified { "verified" } else { "REJECTED" });
    }
    if verified {
        for resource in &resources {
            let uri = resource.get("uri").and_then(Value::as_str).unwrap_or_default();
            if uri != entry_uri {
                let text = read_text(client, uri).await?;
                eprintln!(
                    "{uri}: {}",
                    if verify(&text, resource, None) {
                        "verified"
                    } else {
                        "REJECTED"
                    }
                );
            }
        }
    }
    Ok(())
}

async fn read_text(client: &McpClient, uri: &str) -> Result<String, Failure> {
    let read = client
        .request("resources/read", Some(json!({"uri": uri})), CallOptions::default())
        .await?;
    Ok(read
        .pointer("/contents/0/text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

fn verify(text: &str, entry: &Value, frontmatter: Option<&Value>) -> bool {
    if let Some(size) = entry.get("size").and_then(Value::as_u64)
        && size != text.len() as u64
    {
        return false;
    }
    if let Some(digest) = entry.get("digest").and_then(Value::as_str) {
        let actual = format!("sha256:{}", hex(&Sha256::digest(text.as_bytes())));
        if actual != digest {
            return false;
        }
    }
    if let Some(expected) = frontmatter.and_then(Value::as_object) {
        let parsed = parse_frontmatter(text);
        for (key, value) in expected {
            if parsed.get(key).map(String::as_str) != value.as_str() {
                return false;
            }
        }
    }
    true
}

/// `key: value` lines between the leading `---` fences.
fn parse_frontmatter(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    if lines.next() != Some("---") {
        return out;
    }
    for line in lines {
        if line == "---" {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            out.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The OAuth side: what discovery found, the client registration and the tokens, for one MCP server.
struct Auth {
    http: SafeClient,
    url: String,
    scenario: String,
    context: Value,
    discovery: Option<OAuthDiscovery>,
    client: Option<ClientInformation>,
    tokens: Option<TokenSet>,
    authorizations: usize,
    /// This client's DPoP key: used only with authorization servers that support DPoP, and then for the token
    /// request and every MCP request alike, since the token is bound to it.
    dpop: Dpop,
}

type Op<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, McpError>> + Send + 'a>>;

impl Auth {
    fn new(http: SafeClient, url: &str, scenario: &str, context: &Value) -> Result<Self, Failure> {
        Ok(Self {
            http,
            url: url.to_owned(),
            scenario: scenario.to_owned(),
            context: context.clone(),
            discovery: None,
            client: None,
            tokens: None,
            authorizations: 0,
            dpop: Dpop::generate()?,
        })
    }

    /// Connects, authorizing when the server answers 401/403.
    async fn connect(&mut self, options: &ClientOptions) -> Result<McpClient, Failure> {
        loop {
            let mut options = options.clone();
            options.dpop = Some(self.dpop.clone());
            if let Some(tokens) = &self.tokens {
                options
                    .headers
                    .insert("Authorization".into(), tokens.authorization_header());
            }
            match McpClient::connect_http(self.http.clone(), &self.url, options).await {
                Ok(client) => return Ok(client),
                Err(McpError::Unauthorized { status, challenge }) => self.authorize(status, challenge).await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs `op`, authorizing (or stepping up) and retrying when the server answers 401/403.
    async fn retry<T>(&mut self, client: &McpClient, op: impl Fn(&McpClient) -> Op<'_, T>) -> Result<T, McpError> {
        loop {
            match op(client).await {
                Err(McpError::Unauthorized { status, challenge }) => {
                    if let Err(e) = self.authorize(status, challenge).await {
                        return Err(McpError::Config(format!("authorization failed: {e}")));
                    }
                    if let Some(tokens) = &self.tokens {
                        client.set_authorization(Some(tokens.authorization_header()));
                    }
                }
                other => return other,
            }
        }
    }

    /// One authorization: discovery, a client for the (possibly new) authorization server, then tokens.
    async fn authorize(&mut self, status: u16, challenge: Option<BearerChallenge>) -> Result<(), Failure> {
        if self.authorizations >= MAX_AUTHORIZATIONS {
            return Err(
                format!("the server still refuses after {MAX_AUTHORIZATIONS} authorizations; giving up").into(),
            );
        }
        self.authorizations += 1;
        let mut discovery = oauth::discover(&self.http, &self.url, challenge.as_ref()).await?;
        if let Some(previous) = &self.discovery {
            if previous.issuer != discovery.issuer {
                // Credentials belong to the server that issued them (SEP-2352): register again.
                eprintln!(
                    "authorization server changed from {} to {}",
                    previous.issuer, discovery.issuer
                );
                self.client = None;
                self.tokens = None;
            } else if status == 403
                || challenge
                    .as_ref()
                    .is_some_and(|c| c.error.as_deref() == Some("insufficient_scope"))
            {
                // Step-up: keep what was granted and add what is asked for.
                discovery.scope = previous.scope.clone();
                if let Some(scope) = challenge.as_ref().and_then(|c| c.scope.as_deref()) {
                    discovery.escalate(scope);
                }
            }
        }
        let server = discovery.authorization_server.clone();
        let secret = self
            .context
            .get("client_secret")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let context_id = self.context.get("client_id").and_then(Value::as_str).map(str::to_owned);
        let pre_registered = match (&context_id, &secret) {
            (Some(id), _) => Some(ClientInformation::pre_registered(id.clone(), secret.clone())),
            _ => None,
        };
        // Workload identity: exchange the platform's JWT (no retry, no other grant on refusal).
        if let Some(assertion) = self.context.get("valid_jwt").and_then(Value::as_str)
            && server.supports_grant(oauth::JWT_BEARER_GRANT)
        {
            let client = ClientInformation::pre_registered(context_id.clone().unwrap_or_default(), None);
            let tokens = oauth::jwt_bearer(&self.http, &discovery, &client, assertion).await?;
            self.finish(discovery, client, tokens);
            return Ok(());
        }
        // Enterprise-managed: the user's ID token becomes an ID-JAG at the IdP, which the server's AS accepts.
        if let (Some(id_token), Some(idp_endpoint)) = (
            self.context.get("idp_id_token").and_then(Value::as_str),
            self.context.get("idp_token_endpoint").and_then(Value::as_str),
        ) && server.supports_grant(oauth::JWT_BEARER_GRANT)
        {
            let idp_client = self.context.get("idp_client_id").and_then(Value::as_str);
            let jag =
                oauth::exchange_id_token_for_id_jag(&self.http, idp_endpoint, idp_client, id_token, &discovery).await?;
            let client = pre_registered.ok_or("enterprise-managed authorization needs a client id and secret")?;
            let tokens = oauth::jwt_bearer(&self.http, &discovery, &client, &jag).await?;
            self.finish(discovery, client, tokens);
            return Ok(());
        }
        // Machine-to-machine: the server only grants client credentials.
        let private_key = self.context.get("private_key_pem").and_then(Value::as_str);
        if let (Some(id), Some(key)) = (&context_id, private_key)
            && server.supports_grant("client_credentials")
        {
            let tokens = oauth::client_credentials_with_key(&self.http, &discovery, id, key).await?;
            self.finish(discovery, ClientInformation::pre_registered(id.clone(), None), tokens);
            return Ok(());
        }
        if server.supports_grant("client_credentials") && !server.supports_grant("authorization_code") {
            let client = pre_registered.ok_or("the client-credentials grant needs a client id and secret")?;
            let tokens = oauth::client_credentials(&self.http, &discovery, &client).await?;
            self.finish(discovery, client, tokens);
            return Ok(());
        }
        let (listener, redirect_uri) = callback_listener().await?;
        let metadata = ClientMetadata {
            application_type: Some("native".into()),
            ..ClientMetadata::authorization_code(redirect_uri.clone())
        };
        let client = match self.client.clone() {
            Some(client) => client,
            None => oauth::obtain_client(&self.http, &server, pre_registered, Some(CIMD_URL), &metadata).await?,
        };
        let request = oauth::authorization_request(&discovery, &client, &redirect_uri)?;
        let params = browse(&self.http, &request.url, listener).await?;
        let code = oauth::validate_authorization_response(&discovery, &request.state, &params)?;
        let dpop = server.supports_dpop().then_some(&self.dpop);
        let tokens = oauth::exchange_code_with_dpop(
            &self.http,
            &discovery,
            &client,
            &code,
            &request.code_verifier,
            &redirect_uri,
            dpop,
        )
        .await?;
        eprintln!("{}: authorized ({tokens})", self.scenario);
        self.finish(discovery, client, tokens);
        Ok(())
    }

    fn finish(&mut self, discovery: OAuthDiscovery, client: ClientInformation, tokens: TokenSet) {
        self.discovery = Some(discovery);
        self.client = Some(client);
        self.tokens = Some(tokens);
    }
}

/// A loopback redirect URI (RFC 8252 §7.3) and the listener behind it.
async fn callback_listener() -> Result<(tokio::net::TcpListener, String), Failure> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    Ok((listener, format!("http://127.0.0.1:{port}/callback")))
}

/// Plays the user's browser: opens the authorization URL, follows the redirect to the loopback listener and
/// returns the query parameters it received.
async fn browse(
    http: &SafeClient,
    url: &str,
    listener: tokio::net::TcpListener,
) -> Result<Vec<(String, String)>, Failure> {
    let captured = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return None;
            };
            let mut buffer = vec![0u8; 8192];
            let n = stream.read(&mut buffer).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buffer[..n]).to_string();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
            let target = head
                .lines()
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or("")
                .to_owned();
            if let Some(query) = target
                .strip_prefix("/callback?")
                .or_else(|| target.strip_prefix("/callback"))
            {
                let pairs: Vec<(String, String)> =
                    url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                return Some(pairs);
            }
        }
    });
    let response = http.get(url).send().await?;
    eprintln!("authorization endpoint: HTTP {}", response.status().as_u16());
    match tokio::time::timeout(Duration::from_secs(5), captured).await {
        Ok(Ok(Some(params))) => Ok(params),
        _ => Err("the authorization server never redirected back to the client".into()),
    }
}
