//! Blob storage tests: a local folder always; S3 through a `moto` server on loopback when moto is installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use toolplane_store::{BlobConfig, BlobError, BlobStore, PutStreamError, Secret};

/// The behaviour every backend must show.
async fn exercise(store: &BlobStore) {
    // put / get / exists / size
    store.put("tools/t1/a.txt", Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(store.get("tools/t1/a.txt").await.unwrap(), Bytes::from_static(b"hello"));
    assert!(store.exists("tools/t1/a.txt").await.unwrap());
    assert_eq!(store.size("tools/t1/a.txt").await.unwrap(), 5);
    store
        .put("tools/t1/a.txt", Bytes::from_static(b"replaced"))
        .await
        .unwrap();
    assert_eq!(
        store.get("tools/t1/a.txt").await.unwrap(),
        Bytes::from_static(b"replaced")
    );

    // missing blobs are NotFound, distinguishable from other failures
    assert!(!store.exists("tools/t1/missing.txt").await.unwrap());
    let err = store.get("tools/t1/missing.txt").await.unwrap_err();
    assert!(matches!(err, BlobError::NotFound { .. }), "{err:?}");
    assert!(store.reader("tools/t1/missing.txt").await.unwrap_err().is_not_found());

    // delete is idempotent
    store.delete("tools/t1/a.txt").await.unwrap();
    assert!(!store.exists("tools/t1/a.txt").await.unwrap());
    store.delete("tools/t1/a.txt").await.unwrap();

    // unsafe keys never reach the backend
    for bad in ["/etc/passwd", "../escape", "a/../../b", ""] {
        assert!(
            matches!(store.put(bad, Bytes::new()).await, Err(BlobError::InvalidKey { .. })),
            "{bad}"
        );
        assert!(
            matches!(store.get(bad).await, Err(BlobError::InvalidKey { .. })),
            "{bad}"
        );
    }

    // streaming: 20 MiB in 1 MiB chunks crosses several 8 MiB upload parts
    let chunk_len = 1024 * 1024;
    let chunks: Vec<Bytes> = (0..20u8).map(|i| Bytes::from(vec![i; chunk_len])).collect();
    let written = store
        .put_stream(
            "big/blob.bin",
            stream::iter(chunks.clone().into_iter().map(Ok::<_, std::io::Error>)),
        )
        .await
        .unwrap();
    assert_eq!(written, 20 * chunk_len as u64);
    let reader = store.reader("big/blob.bin").await.unwrap();
    assert_eq!(reader.size, 20 * chunk_len as u64);
    let mut read = Vec::with_capacity(20 * chunk_len);
    let mut pieces = 0;
    let mut reader = reader;
    while let Some(piece) = reader.next().await {
        read.extend_from_slice(&piece.unwrap());
        pieces += 1;
    }
    assert!(pieces > 1, "expected a chunked stream");
    assert_eq!(read, chunks.concat());

    // a failing source aborts the upload: nothing appears under the key
    let failing = stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::other("source broke")),
    ]);
    match store.put_stream("big/aborted.bin", failing).await {
        Err(PutStreamError::Source(e)) => assert_eq!(e.to_string(), "source broke"),
        other => panic!("expected the source error, got {other:?}"),
    }
    assert!(!store.exists("big/aborted.bin").await.unwrap());

    // explicit writer
    let mut writer = store.writer("w/x.txt").await.unwrap();
    writer.write(Bytes::from_static(b"ab")).await.unwrap();
    writer.write(Bytes::from_static(b"cd")).await.unwrap();
    writer.close().await.unwrap();
    let collected: Vec<Bytes> = store.reader("w/x.txt").await.unwrap().try_collect().await.unwrap();
    assert_eq!(collected.concat(), b"abcd");
    store.delete("big/blob.bin").await.unwrap();
    store.delete("w/x.txt").await.unwrap();
}

#[tokio::test]
async fn local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    let store = BlobStore::from_config(&BlobConfig::Local { root: root.clone() }).unwrap();
    assert_eq!(store.kind(), "local");
    exercise(&store).await;

    // Blobs are plain files under the root.
    store
        .put("tools/t9/f.bin", Bytes::from_static(b"on disk"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(root.join("tools/t9/f.bin")).unwrap(), b"on disk");

    // Local blobs are read from their files directly: sizes around the 64 KiB chunk of a reader, an empty blob, and
    // a folder (a key's prefix), which is no blob.
    for size in [0, 1, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 3 * 64 * 1024 + 7] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let key = format!("sizes/{size}.bin");
        std::fs::create_dir_all(root.join("sizes")).unwrap();
        std::fs::write(root.join(&key), &data).unwrap();
        assert_eq!(store.get(&key).await.unwrap(), data, "{size}");
        let reader = store.reader(&key).await.unwrap();
        assert_eq!(reader.size, size as u64);
        let pieces: Vec<Bytes> = reader.try_collect().await.unwrap();
        assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= 64 * 1024), "{size}");
        assert_eq!(pieces.concat(), data, "{size}");
    }
    assert!(store.get("sizes").await.unwrap_err().is_not_found());
    assert!(store.reader("sizes").await.unwrap_err().is_not_found());

    // A root spelled with `..` resolves to the same folder.
    let relative = root.join("..").join("storage");
    let again = BlobStore::from_config(&BlobConfig::Local { root: relative }).unwrap();
    assert_eq!(
        again.get("tools/t9/f.bin").await.unwrap(),
        Bytes::from_static(b"on disk")
    );
}

/// A moto S3 server on a free loopback port, killed on drop.
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

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn start_moto() -> Option<Moto> {
    let importable = Command::new(python())
        .args(["-c", "import moto.server, boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !importable {
        eprintln!("skipping S3 blob tests: moto is not installed (pip install 'moto[server]')");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(python())
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto server");
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not start listening on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

fn create_bucket(port: u16, bucket: &str) {
    let script = format!(
        "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', region_name='us-east-1', \
         aws_access_key_id='testing', aws_secret_access_key='testing').create_bucket(Bucket='{bucket}')"
    );
    let status = Command::new(python()).args(["-c", &script]).status().unwrap();
    assert!(status.success(), "creating bucket {bucket} in moto failed");
}

#[tokio::test]
async fn s3_via_moto() {
    let Some(moto) = start_moto() else { return };
    create_bucket(moto.port, "toolplane-test");
    let config = BlobConfig::S3 {
        bucket: "toolplane-test".into(),
        region: "us-east-1".into(),
        endpoint: Some(format!("http://127.0.0.1:{}", moto.port)),
        access_key_id: Some("testing".into()),
        secret_access_key: Some(Secret::new("testing")),
        virtual_hosted_style: false,
    };
    let store = BlobStore::from_config(&config).unwrap();
    assert_eq!(store.kind(), "s3");
    store.check().await.unwrap();
    exercise(&store).await;

    // A bucket that does not exist is an error, but not NotFound of a key.
    let mut missing = config.clone();
    if let BlobConfig::S3 { bucket, .. } = &mut missing {
        *bucket = "no-such-bucket".into();
    }
    let store = BlobStore::from_config(&missing).unwrap();
    let err = store.put("k", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(err, BlobError::Backend { .. }), "{err:?}");
}
