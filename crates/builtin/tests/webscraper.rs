//! The `webscraper` tool against a real HTTP server on 127.0.0.1, through `toolplane_core::invoke`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use serde_json::{Value, json};
use toolplane_core::{InvokeOptions, Tool, ToolError, ToolRuntime, collect_messages, invoke};
use toolplane_net::{ENV_ALLOWED_NETWORKS, NetConfig, SafeClient};

const ARTICLE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Deep sea octopuses</title>
  <meta name="author" content="Ada Marine">
  <link rel="stylesheet" href="/site.css">
  <style>.hero { background: url(noise.png) }</style>
  <script>window.analytics = "TRACKING-NOISE";</script>
</head>
<body>
  <header><div class="logo">OceanNews</div><a href="/subscribe">Subscribe now</a></header>
  <nav class="main-nav"><ul><li><a href="/">Home</a></li><li><a href="/science">Science</a></li></ul></nav>
  <div class="cookie-banner">We use cookies to improve your experience.</div>
  <div class="layout">
    <aside class="sidebar"><h3>Trending</h3><p>Celebrity whale spotted near the harbour, fans delighted.</p></aside>
    <article>
      <h1>Octopuses brood their eggs for years</h1>
      <p>Researchers watched a female deep-sea octopus guard her eggs for fifty-three months, the longest brooding period known.</p>
      <p>The cold water slows the development of the embryos, so the mother stays with them far longer than shallow-water species.</p>
      <div class="share"><a href="/share/fb">Share on Facebook</a></div>
    </article>
  </div>
  <footer><p>© 2025 OceanNews. All rights reserved.</p></footer>
  <script>console.log("MORE-NOISE")</script>
</body>
</html>"#;

const PLAIN: &str = "plain text body\n  keeps its   spacing\n";

/// Serves the test pages; returns the base URL.
async fn serve() -> String {
    let app = Router::new()
        .route(
            "/article",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], ARTICLE) }),
        )
        .route(
            "/plain",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], PLAIN) }),
        )
        .route(
            "/data.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], r#"{"a": [1, 2]}"#) }),
        )
        .route(
            "/image.png",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/png")],
                    vec![0x89u8, b'P', b'N', b'G', 0, 1, 2, 3],
                )
            }),
        )
        .route(
            "/latin1",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=iso-8859-1")],
                    b"<html><body><p>Caf\xe9 au lait, cr\xe8me br\xfbl\xe9e and more.</p></body></html>".to_vec(),
                )
            }),
        )
        .route(
            "/empty",
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<html><body></body></html>") }),
        )
        .route("/missing", get(|| async { (StatusCode::NOT_FOUND, "nope") }))
        .route(
            "/ua",
            get(|headers: HeaderMap| async move {
                let agent = headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("<none>")
                    .to_owned();
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], agent)
            }),
        );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn loopback_client() -> SafeClient {
    let config =
        NetConfig::from_lookup(|name| (name == ENV_ALLOWED_NETWORKS).then(|| "127.0.0.0/8".to_owned())).unwrap();
    SafeClient::new(config).unwrap()
}

async fn scraper(client: SafeClient) -> Arc<dyn Tool> {
    let providers = toolplane_builtin::providers(client);
    let web = providers.iter().find(|p| p.id() == "webscraper").unwrap();
    web.tool("webscraper").await.unwrap().unwrap()
}

async fn scrape_with(client: SafeClient, parameters: Value) -> Result<String, ToolError> {
    let Value::Object(parameters) = parameters else {
        panic!("parameters must be an object")
    };
    let stream = invoke(
        scraper(client).await,
        ToolRuntime::default(),
        parameters,
        InvokeOptions::default(),
    )
    .await?;
    let messages = collect_messages(stream).await?;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].kind(), "text");
    Ok(messages[0].as_text().unwrap().to_owned())
}

async fn scrape(parameters: Value) -> String {
    scrape_with(loopback_client(), parameters).await.unwrap()
}

#[tokio::test]
async fn html_pages_become_dify_shaped_readable_text() {
    let base = serve().await;
    let text = scrape(json!({"url": format!("{base}/article")})).await;
    assert_eq!(
        text,
        "\nTITLE: Deep sea octopuses\nAUTHORS: Ada Marine\nPUBLISH DATE: None\nTOP_IMAGE_URL: \nTEXT:\n\n\
         Octopuses brood their eggs for years\n\
         Researchers watched a female deep-sea octopus guard her eggs for fifty-three months, the longest brooding \
         period known.\n\
         The cold water slows the development of the embryos, so the mother stays with them far longer than \
         shallow-water species.\n"
    );
    for noise in [
        "NOISE",
        "Subscribe",
        "Home",
        "cookies",
        "Celebrity",
        "Share",
        "rights reserved",
        "background",
    ] {
        assert!(!text.contains(noise), "{noise:?} leaked into {text:?}");
    }

    // No LLM: a requested summary returns the same full text.
    let summary = scrape(json!({"url": format!("{base}/article"), "generate_summary": "true"})).await;
    assert_eq!(summary, text);
}

#[tokio::test]
async fn plain_text_and_json_are_returned_as_they_are() {
    let base = serve().await;
    assert_eq!(scrape(json!({"url": format!("{base}/plain")})).await, PLAIN);
    assert_eq!(
        scrape(json!({"url": format!("{base}/data.json")})).await,
        r#"{"a": [1, 2]}"#
    );
}

#[tokio::test]
async fn declared_charsets_are_decoded() {
    let base = serve().await;
    let text = scrape(json!({"url": format!("{base}/latin1")})).await;
    assert!(text.contains("Café au lait, crème brûlée and more."), "{text:?}");
    assert!(text.contains("TITLE: None\nAUTHORS: None"), "{text:?}");
}

#[tokio::test]
async fn unsupported_types_and_statuses_give_dify_texts() {
    let base = serve().await;
    assert_eq!(
        scrape(json!({"url": format!("{base}/image.png")})).await,
        "Unsupported content-type [image/png] of URL."
    );
    assert_eq!(
        scrape(json!({"url": format!("{base}/missing")})).await,
        "URL returned status code 404."
    );
    assert_eq!(scrape(json!({"url": format!("{base}/empty")})).await, "");
}

#[tokio::test]
async fn the_user_agent_parameter_reaches_the_server() {
    let base = serve().await;
    let custom = scrape(json!({"url": format!("{base}/ua"), "user_agent": "toolplane-test/1.0 (+probe)"})).await;
    assert_eq!(custom, "toolplane-test/1.0 (+probe)");
    let default = scrape(json!({"url": format!("{base}/ua")})).await;
    assert_eq!(default, toolplane_builtin::webscraper::DEFAULT_USER_AGENT);
    assert!(default.contains("Chrome/100"));
}

#[tokio::test]
async fn the_default_client_refuses_loopback() {
    let base = serve().await;
    let client = SafeClient::new(NetConfig::default()).unwrap();
    match scrape_with(client.clone(), json!({"url": format!("{base}/article")})).await {
        Err(ToolError::Invoke(message)) => {
            assert!(message.contains("127.0.0.1"), "{message}");
            assert!(message.contains(ENV_ALLOWED_NETWORKS), "{message}");
        }
        other => panic!("expected an invoke error, got {other:?}"),
    }
    // A host name that resolves to loopback is refused as well.
    let port = base.rsplit(':').next().unwrap();
    match scrape_with(client, json!({"url": format!("http://localhost:{port}/article")})).await {
        Err(ToolError::Invoke(message)) => assert!(message.contains("localhost"), "{message}"),
        other => panic!("expected an invoke error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_urls_are_parameter_errors() {
    for url in ["not a url", "ftp://example.com/file"] {
        match scrape_with(loopback_client(), json!({"url": url})).await {
            Err(ToolError::ParameterValidation(message)) => assert!(message.contains("url"), "{message}"),
            other => panic!("expected a parameter error for {url:?}, got {other:?}"),
        }
    }
    match scrape_with(loopback_client(), json!({})).await {
        Err(ToolError::ParameterValidation(message)) => assert!(message.contains("url"), "{message}"),
        other => panic!("expected a missing-parameter error, got {other:?}"),
    }
}
