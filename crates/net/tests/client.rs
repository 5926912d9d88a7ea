//! End-to-end behaviour of `SafeClient` against real servers on 127.0.0.1.
//!
//! No test connects anywhere but loopback: every non-loopback target is refused by the guard
//! before a connection is attempted, and each such test first asserts that the synchronous
//! pre-check refuses it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{redirect, respond, response, serve, serve_fixed};
use tokio::io::AsyncWriteExt;
use toolplane_net::{BlockKind, NetConfig, NetError, SafeClient, TimeoutPhase};
use url::Url;

fn loopback_allowed() -> NetConfig {
    NetConfig {
        allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
        ..NetConfig::default()
    }
}

fn client(config: NetConfig) -> SafeClient {
    SafeClient::new(config).unwrap()
}

fn hello() -> Vec<u8> {
    response("200 OK", &[("Content-Type", "text/plain")], b"hello")
}

#[track_caller]
fn expect_blocked(result: Result<reqwest::Response, NetError>) -> toolplane_net::Blocked {
    match result {
        Err(NetError::Blocked(blocked)) => blocked,
        Err(other) => panic!("expected a Blocked error, got {other:?} ({other})"),
        Ok(resp) => panic!("expected a Blocked error, got HTTP {}", resp.status()),
    }
}

#[tokio::test]
async fn default_client_refuses_loopback_literal_and_name() {
    let server = serve_fixed(hello()).await;
    let client = client(NetConfig::default());

    let blocked = expect_blocked(client.get(server.url("/")).send().await);
    assert_eq!(blocked.host, "127.0.0.1");
    assert_eq!(blocked.address, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(blocked.reason.kind, BlockKind::Loopback);
    assert!(!blocked.resolved);
    assert_eq!(
        blocked.to_string(),
        "request to \"127.0.0.1\" blocked: 127.0.0.1 is a loopback address; add it to \
         SSRF_ALLOWED_NETWORKS to allow it (or the host to SSRF_ALLOWED_HOSTS)"
    );

    let url = format!("http://localhost:{}/", server.port());
    let err = client.get(&url).send().await.unwrap_err();
    let message = err.to_string();
    let NetError::Blocked(blocked) = err else {
        panic!("expected Blocked, got {message}");
    };
    assert_eq!(blocked.host, "localhost");
    assert!(blocked.resolved);
    assert_eq!(blocked.reason.kind, BlockKind::Loopback);
    assert!(
        message.starts_with(&format!(
            "request to \"localhost\" blocked: it resolves to {}, a loopback address; add it to SSRF_ALLOWED_NETWORKS",
            blocked.address
        )),
        "{message}"
    );

    assert_eq!(server.hits(), 0, "nothing may reach the server");
}

#[tokio::test]
async fn allowed_network_permits_loopback() {
    let server = serve_fixed(hello()).await;
    let client = client(loopback_allowed());

    let resp = client.get(server.url("/x?key=1")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(&client.read_body(resp).await.unwrap()[..], b"hello");

    // `localhost` may also resolve to ::1, which 127.0.0.0/8 does not cover; the resolver drops
    // it and connects to 127.0.0.1, where the server listens.
    let resp = client
        .get(format!("http://localhost:{}/", server.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn allowed_host_permits_only_that_name() {
    let server = serve_fixed(hello()).await;
    let client = client(NetConfig {
        allowed_hosts: vec!["LOCALHOST".into()],
        ..NetConfig::default()
    });

    let resp = client.get(format!("http://localhost:{}/", server.port())).send().await;
    // The name is allowed without checks; it reaches the server via 127.0.0.1 (or fails to
    // connect on ::1 first and falls back), either way it is not blocked.
    assert_eq!(resp.unwrap().status(), 200);

    expect_blocked(client.get(server.url("/")).send().await);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn blocked_literals_fail_before_connecting() {
    let client = client(NetConfig::default());
    let cases = [
        ("http://10.0.0.1/", "10.0.0.1", BlockKind::Private),
        ("http://192.168.1.1:8080/admin", "192.168.1.1", BlockKind::Private),
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
            BlockKind::CloudMetadata,
        ),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", BlockKind::Loopback),
        ("http://[::1]:9/", "::1", BlockKind::Loopback),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254", BlockKind::CloudMetadata),
        ("https://100.64.0.1/", "100.64.0.1", BlockKind::SharedAddressSpace),
        ("http://0.0.0.0:9/", "0.0.0.0", BlockKind::Unspecified),
        ("http://2852039166/", "169.254.169.254", BlockKind::CloudMetadata),
    ];
    for (url, address, kind) in cases {
        // Gate: the synchronous check must refuse before anything is sent.
        let parsed = Url::parse(url).unwrap();
        assert!(
            matches!(client.check_url(&parsed), Err(NetError::Blocked(_))),
            "pre-check must refuse {url}"
        );

        let started = Instant::now();
        let blocked = expect_blocked(client.get(url).send().await);
        assert!(started.elapsed() < Duration::from_secs(1), "{url} must fail fast");
        assert_eq!(blocked.address, address.parse::<IpAddr>().unwrap(), "{url}");
        assert_eq!(blocked.reason.kind, kind, "{url}");
        assert!(!blocked.resolved);
        if kind == BlockKind::CloudMetadata {
            assert!(blocked.to_string().contains("cloud instance metadata endpoint"));
        }
    }
    let mapped = expect_blocked(client.get("http://[::ffff:127.0.0.1]/").send().await);
    assert_eq!(
        mapped.reason.to_string(),
        "an IPv4-mapped IPv6 address carrying 127.0.0.1, a loopback address"
    );
}

#[tokio::test]
async fn a_request_url_changed_after_building_is_checked_on_execute() {
    let server = serve_fixed(hello()).await;
    let client = client(NetConfig::default());
    let mut request = client.get("https://example.com/").build().unwrap();
    *request.url_mut() = Url::parse(&server.url("/")).unwrap();
    match client.execute(request).await {
        Err(NetError::Blocked(blocked)) => assert_eq!(blocked.reason.kind, BlockKind::Loopback),
        other => panic!("expected Blocked, got {other:?}"),
    }
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn redirects_to_blocked_literals_are_refused_on_the_hop() {
    let client = client(loopback_allowed());
    for (target, address, kind) in [
        (
            "http://169.254.169.254/latest/meta-data",
            "169.254.169.254",
            BlockKind::CloudMetadata,
        ),
        ("http://10.0.0.1/", "10.0.0.1", BlockKind::Private),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254", BlockKind::CloudMetadata),
    ] {
        assert!(client.check_url(&Url::parse(target).unwrap()).is_err());
        let server = serve_fixed(redirect(target)).await;
        let blocked = expect_blocked(client.get(server.url("/start")).send().await);
        assert_eq!(blocked.address, address.parse::<IpAddr>().unwrap());
        assert_eq!(blocked.reason.kind, kind);
        assert_eq!(server.hits(), 1);
    }
}

#[tokio::test]
async fn redirects_to_blocked_names_are_refused_by_the_resolver() {
    let server = serve(|path, stream| async move {
        let reply = if path == "/start" {
            // Same server, but by name: only the literal 127.0.0.1 is allowed.
            redirect("http://localhost/elsewhere")
        } else {
            hello()
        };
        respond(stream, reply).await;
    })
    .await;
    let client = client(NetConfig {
        allowed_hosts: vec!["127.0.0.1".into()],
        ..NetConfig::default()
    });
    let blocked = expect_blocked(client.get(server.url("/start")).send().await);
    assert_eq!(blocked.host, "localhost");
    assert!(blocked.resolved);
    assert_eq!(blocked.reason.kind, BlockKind::Loopback);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn other_schemes_are_never_fetched() {
    let client = client(loopback_allowed());
    // reqwest never follows a redirect to a non-HTTP scheme: the 3xx itself comes back.
    let server = serve_fixed(redirect("file:///etc/passwd")).await;
    let resp = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.url().as_str(), server.url("/"));
    match client.get("ftp://127.0.0.1/").send().await {
        Err(NetError::UnsupportedScheme { scheme, .. }) => assert_eq!(scheme, "ftp"),
        other => panic!("expected UnsupportedScheme, got {other:?}"),
    }
}

/// Serves `/r/N` as a redirect to `/r/N+1` up to `/r/{last}`, which answers 200.
async fn redirect_chain(last: usize) -> common::TestServer {
    serve(move |path, stream| async move {
        let n: usize = path.trim_start_matches("/r/").parse().unwrap_or(0);
        let reply = if n < last {
            redirect(&format!("/r/{}", n + 1))
        } else {
            hello()
        };
        respond(stream, reply).await;
    })
    .await
}

#[tokio::test]
async fn redirect_limit_is_enforced() {
    let config = NetConfig {
        max_redirects: 3,
        ..loopback_allowed()
    };
    let client = client(config);

    let server = redirect_chain(3).await;
    let resp = client.get(server.url("/r/0")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.url().path(), "/r/3");

    let server = redirect_chain(usize::MAX).await;
    let err = client.get(server.url("/r/0?token=secret")).send().await.unwrap_err();
    let message = err.to_string();
    match err {
        NetError::TooManyRedirects { url, limit } => {
            assert_eq!(limit, 3);
            assert_eq!(url, server.url("/r/0"), "URL is reported without its query");
        }
        other => panic!("expected TooManyRedirects, got {other:?}"),
    }
    assert!(message.contains("redirected more than 3 times"), "{message}");
    assert!(!message.contains("secret"));
    assert_eq!(server.hits(), 4, "the original request plus three followed hops");
}

#[tokio::test]
async fn read_timeout_against_a_silent_server() {
    let server = serve(|_, stream| async move {
        // Read the request, then never answer (but keep the connection open).
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    })
    .await;
    let client = client(NetConfig {
        read_timeout: Duration::from_millis(300),
        ..loopback_allowed()
    });

    let started = Instant::now();
    let err = client.get(server.url("/")).send().await.unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        NetError::Timeout { phase, url } => {
            assert_eq!(*phase, TimeoutPhase::Response);
            assert_eq!(url, &server.url("/"));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(err.to_string().contains("HTTP_REQUEST_MAX_READ_TIMEOUT"));
}

#[tokio::test]
async fn read_timeout_while_reading_the_body() {
    let server = serve(|_, mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let client = client(NetConfig {
        read_timeout: Duration::from_millis(300),
        ..loopback_allowed()
    });
    let resp = client.get(server.url("/")).send().await.unwrap();
    match client.read_body(resp).await {
        Err(NetError::Timeout { phase, .. }) => assert_eq!(phase, TimeoutPhase::Body),
        other => panic!("expected a body Timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn total_timeout_cuts_a_trickling_server() {
    let server = serve(|_, mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            .await;
        for _ in 0..1000 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if stream.write_all(b"x").await.is_err() {
                return;
            }
        }
    })
    .await;
    let client = client(NetConfig {
        read_timeout: Duration::from_secs(5),
        total_timeout: Duration::from_millis(500),
        ..loopback_allowed()
    });
    let started = Instant::now();
    let resp = client.get(server.url("/")).send().await.unwrap();
    let result = client.read_body(resp).await;
    assert!(
        matches!(result, Err(NetError::Timeout { .. })),
        "expected Timeout, got {result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn body_limit_is_enforced() {
    let client = client(NetConfig {
        max_response_bytes: 100,
        ..loopback_allowed()
    });

    // Announced too large: refused from the header.
    let server = serve_fixed(response("200 OK", &[], &[b'a'; 1000])).await;
    let resp = client.get(server.url("/big")).send().await.unwrap();
    match client.read_body(resp).await {
        Err(NetError::ResponseTooLarge { limit, url }) => {
            assert_eq!(limit, 100);
            assert_eq!(url, server.url("/big"));
        }
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }

    // Not announced (chunked): refused while streaming.
    let server = serve(|_, stream| async move {
        let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for _ in 0..10 {
            raw.extend_from_slice(b"64\r\n");
            raw.extend_from_slice(&[b'b'; 100]);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        respond(stream, raw).await;
    })
    .await;
    let resp = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(resp.content_length(), None);
    assert!(matches!(
        client.read_body(resp).await,
        Err(NetError::ResponseTooLarge { limit: 100, .. })
    ));

    // Exactly at the limit: fine.
    let server = serve_fixed(response("200 OK", &[], &[b'c'; 100])).await;
    let resp = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(client.read_body(resp).await.unwrap().len(), 100);
}

#[tokio::test]
async fn connection_refused_is_a_readable_transport_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = client(loopback_allowed());
    let err = client
        .get(format!("http://127.0.0.1:{port}/?api_key=secret"))
        .send()
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, NetError::Http { .. }), "{err:?}");
    assert!(
        message.starts_with(&format!("request to http://127.0.0.1:{port}/ failed: ")),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(!message.contains("secret"), "{message}");
}

#[tokio::test]
async fn invalid_urls_are_reported() {
    let client = client(NetConfig::default());
    match client.get("not a url").send().await {
        Err(NetError::InvalidUrl { url, .. }) => assert_eq!(url, "not a url"),
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
}
