//! Tool files over HTTP: blob → tool file → link → signed GET, chunked blobs, image downloads through the SSRF
//! guard, signature expiry and tampering; on local storage and on S3 (moto) when it is installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use serde_json::{Value, json};
use support::{FilesProvider, Options, TestServer};
use toolplane_secrets::FileSigner;

async fn start(extra: Vec<(&'static str, String)>) -> TestServer {
    TestServer::start_with(Options {
        extra,
        providers: vec![Arc::new(FilesProvider::new())],
        ..Options::default()
    })
    .await
}

/// The signed URL on the test server (FILES_URL defaults to a base derived from the configured bind address).
fn on_server(s: &TestServer, signed: &str) -> String {
    let path = &signed[signed.find("/files/tools/").unwrap()..];
    s.url(path)
}

async fn emit(s: &TestServer, parameters: Value) -> Value {
    let (status, body) = s.invoke(&s.key_a, "files", "emit", parameters).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Everything a storage backend must do for tool files.
async fn round_trips(s: &TestServer) {
    // blob → binary_link with a relative URL, plus toolplane's signed URL in meta
    let body = emit(
        s,
        json!({"kind": "blob", "data": "hello, file", "mime": "text/plain", "filename": "greeting"}),
    )
    .await;
    let message = &body["messages"][0];
    assert_eq!(message["type"], "binary_link", "{body}");
    let link = message["message"]["text"].as_str().unwrap();
    let id = message["meta"]["tool_file_id"].as_str().unwrap();
    assert_eq!(link, format!("/files/tools/{id}.txt"));
    assert_eq!(message["meta"]["mime_type"], "text/plain");
    let signed = message["meta"]["signed_url"].as_str().unwrap();
    assert!(signed.starts_with("http://127.0.0.1:0/files/tools/"), "{signed}");
    let signed = &on_server(s, signed);

    let row = s.state.store.tool_files().get(&s.tenant_a, id).await.unwrap().unwrap();
    assert_eq!(
        row.file_key,
        format!("tools/{}/{}", s.tenant_a, row.file_key.rsplit('/').next().unwrap())
    );
    assert!(row.file_key.ends_with(".txt"));
    assert_eq!(
        (row.mimetype.as_str(), row.name.as_str(), row.size),
        ("text/plain", "greeting.txt", 11)
    );

    // GET with the signature, no API key
    let response = s.http.get(signed).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.headers()["content-length"], "11");
    assert!(response.headers().get("content-disposition").is_none());
    assert_eq!(response.text().await.unwrap(), "hello, file");
    let response = s.http.get(format!("{signed}&as_attachment=true")).send().await.unwrap();
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename*=UTF-8''greeting.txt"
    );

    // images become image_link
    let body = emit(s, json!({"kind": "blob", "data": "PNGDATA", "mime": "image/png"})).await;
    assert_eq!(body["messages"][0]["type"], "image_link");
    assert!(
        body["messages"][0]["message"]["text"]
            .as_str()
            .unwrap()
            .ends_with(".png")
    );

    // HTML is always a download
    let body = emit(
        s,
        json!({"kind": "blob", "data": "<script>alert(1)</script>", "mime": "text/html"}),
    )
    .await;
    let signed = &on_server(s, body["messages"][0]["meta"]["signed_url"].as_str().unwrap());
    let response = s.http.get(signed).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );

    // blob chunks are reassembled into one file
    let data = "a fairly long payload that arrives in many small chunks";
    let body = emit(
        s,
        json!({"kind": "chunks", "data": data, "mime": "application/pdf", "chunk_size": 4}),
    )
    .await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["messages"][0]["type"], "binary_link");
    let signed = &on_server(s, body["messages"][0]["meta"]["signed_url"].as_str().unwrap());
    assert!(signed.contains(".pdf?"));
    assert_eq!(s.http.get(signed).send().await.unwrap().text().await.unwrap(), data);

    // the same over SSE
    let response = s
        .http
        .post(s.url("/v1/tools/invoke"))
        .bearer_auth(&s.key_a)
        .json(
            &json!({"provider_type": "builtin", "provider_id": "files", "tool": "emit", "stream": true,
                      "parameters": {"kind": "blob", "data": "sse", "mime": "text/plain"}}),
        )
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("\"type\":\"binary_link\""), "{text}");
}

#[tokio::test]
async fn blob_file_link_round_trip_on_local_storage() {
    let s = start(vec![]).await;
    round_trips(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn large_chunked_blobs_stream_to_storage() {
    let s = start(vec![]).await;
    let unit = "0123456789abcdef";
    let times = 1usize << 20; // 16 MiB in 8 KiB chunks
    let started = Instant::now();
    let body = emit(
        &s,
        json!({"kind": "chunks", "data": unit, "times": times, "chunk_size": 8192, "mime": "application/zip"}),
    )
    .await;
    let stored_in = started.elapsed();
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    let message = &body["messages"][0];
    let id = message["meta"]["tool_file_id"].as_str().unwrap();
    let row = s.state.store.tool_files().get(&s.tenant_a, id).await.unwrap().unwrap();
    assert_eq!(row.size, (unit.len() * times) as i64);
    assert!(row.file_key.ends_with(".zip"));
    let started = Instant::now();
    let response = s
        .http
        .get(on_server(&s, message["meta"]["signed_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-length"],
        (unit.len() * times).to_string().as_str()
    );
    let bytes = response.bytes().await.unwrap();
    let served_in = started.elapsed();
    assert_eq!(bytes.len(), unit.len() * times);
    assert!(bytes.chunks(unit.len()).all(|c| c == unit.as_bytes()));
    eprintln!("16 MiB blob in 2048 chunks: stored in {stored_in:?}, served in {served_in:?}");
    s.stop().await;
}

#[tokio::test]
async fn signatures_expire_and_resist_tampering() {
    let s = start(vec![("FILES_URL", "https://files.example".into())]).await;
    let body = emit(
        &s,
        json!({"kind": "blob", "data": "secret bytes", "mime": "text/plain"}),
    )
    .await;
    let id = body["messages"][0]["meta"]["tool_file_id"].as_str().unwrap().to_owned();
    let signed = body["messages"][0]["meta"]["signed_url"].as_str().unwrap().to_owned();
    // FILES_URL is the external base; the query is Dify's.
    let query = signed
        .strip_prefix(&format!("https://files.example/files/tools/{id}.txt?"))
        .unwrap();
    let local = |q: &str| s.url(&format!("/files/tools/{id}.txt?{q}"));
    assert_eq!(s.http.get(local(query)).send().await.unwrap().status(), 200);

    // Dify's exact format: sign = urlsafe_b64(HMAC-SHA256(SECRET_KEY, "file-preview|id|ts|nonce"))
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let signer = FileSigner::new("test-secret");
    assert_eq!(
        params["sign"],
        signer.signature(&id, &params["timestamp"], &params["nonce"])
    );
    assert_eq!(params["nonce"].len(), 32);

    // tampering: another nonce, timestamp or file id
    let forbidden = |q: String| {
        let url = local(&q);
        let http = s.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = forbidden(query.replace(&params["nonce"], "00000000000000000000000000000000")).await;
    assert_eq!((status, body["message"].as_str()), (403, Some("Invalid request.")));
    let ts: u64 = params["timestamp"].parse().unwrap();
    assert_eq!(
        forbidden(query.replace(&format!("timestamp={ts}"), &format!("timestamp={}", ts + 1)))
            .await
            .0,
        403
    );
    assert_eq!(
        forbidden(format!("timestamp={ts}&nonce={}", params["nonce"])).await.0,
        403
    );
    let other = uuid::Uuid::new_v4().to_string();
    let response = s
        .http
        .get(s.url(&format!("/files/tools/{other}.txt?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // expired: an authentic signature older than FILES_ACCESS_TIMEOUT (300 s)
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = signer.sign_tool_file_with("", &id, ".txt", now - 301, "abcd");
    assert_eq!(s.http.get(s.url(&old)).send().await.unwrap().status(), 403);
    let fresh = signer.sign_tool_file_with("", &id, ".txt", now - 299, "abcd");
    assert_eq!(s.http.get(s.url(&fresh)).send().await.unwrap().status(), 200);

    // authentic signature for a file that does not exist
    let missing = signer.sign_tool_file("", &other, ".txt").unwrap();
    assert_eq!(s.http.get(s.url(&missing)).send().await.unwrap().status(), 404);
    s.stop().await;
}

#[tokio::test]
async fn image_urls_are_downloaded_into_tool_files() {
    let png: &'static [u8] = b"\x89PNG\r\n\x1a\nfake image";
    let app = axum::Router::new()
        .route("/cat.png", get(move || async move { png }))
        .route(
            "/pic",
            get(move || async move { ([("content-type", "image/gif")], "GIF89a") }),
        )
        .route("/missing", get(|| async { (axum::http::StatusCode::NOT_FOUND, "no") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    let s = start(vec![]).await;
    let body = emit(&s, json!({"kind": "image", "data": format!("{origin}/cat.png")})).await;
    let message = &body["messages"][0];
    assert_eq!(message["type"], "image_link", "{body}");
    assert!(message["message"]["text"].as_str().unwrap().ends_with(".png"));
    let id = message["meta"]["tool_file_id"].as_str().unwrap();
    let row = s.state.store.tool_files().get(&s.tenant_a, id).await.unwrap().unwrap();
    assert_eq!(row.original_url.as_deref(), Some(format!("{origin}/cat.png").as_str()));
    assert_eq!(row.mimetype, "image/png");
    let bytes = s
        .http
        .get(on_server(&s, message["meta"]["signed_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], png);

    // no extension: Content-Type decides
    let body = emit(&s, json!({"kind": "image", "data": format!("{origin}/pic")})).await;
    assert!(
        body["messages"][0]["message"]["text"]
            .as_str()
            .unwrap()
            .ends_with(".gif"),
        "{body}"
    );

    // a failed download is Dify's text
    let body = emit(&s, json!({"kind": "image", "data": format!("{origin}/missing")})).await;
    assert_eq!(body["messages"][0]["type"], "text");
    assert!(
        body["messages"][0]["message"]["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Failed to download image: {origin}/missing: "))
    );
    s.stop().await;

    // the SSRF guard applies: loopback is refused when not allowed
    let s = TestServer::start_with(Options {
        allow_loopback: false,
        providers: vec![Arc::new(FilesProvider::new())],
        ..Options::default()
    })
    .await;
    let body = emit(&s, json!({"kind": "image", "data": format!("{origin}/cat.png")})).await;
    assert_eq!(body["messages"][0]["type"], "text", "{body}");
    assert!(
        body["messages"][0]["message"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Failed to download image")
    );
    s.stop().await;
}

/// A moto S3 server on a free loopback port, killed on drop (same approach as crates/store/tests/blob.rs).
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn start_moto() -> Option<Moto> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let importable = Command::new(&python)
        .args(["-c", "import moto.server, boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !importable {
        eprintln!("skipping S3 tool-file test: moto is not installed (pip install 'moto[server]')");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&python)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto server");
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let script = format!(
        "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', region_name='us-east-1', \
         aws_access_key_id='testing', aws_secret_access_key='testing').create_bucket(Bucket='tool-files')"
    );
    assert!(Command::new(&python).args(["-c", &script]).status().unwrap().success());
    Some(moto)
}

#[tokio::test]
async fn blob_file_link_round_trip_on_s3() {
    let Some(moto) = start_moto() else { return };
    let s = start(vec![
        ("STORAGE_TYPE", "s3".into()),
        ("S3_BUCKET_NAME", "tool-files".into()),
        ("S3_ENDPOINT", format!("http://127.0.0.1:{}", moto.port)),
        ("S3_ACCESS_KEY", "testing".into()),
        ("S3_SECRET_KEY", "testing".into()),
        ("S3_REGION", "us-east-1".into()),
    ])
    .await;
    assert_eq!(s.state.blobs.kind(), "s3");
    round_trips(&s).await;
    s.stop().await;
}
