//! Blob storage: one interface ([`BlobStore`]) over a local folder or an object store, built on `opendal`.
//!
//! Keys are relative, `/`-separated paths such as `tools/{tenant}/{file}.png`. They are validated before any I/O:
//! no empty key, no leading or trailing `/`, no empty, `.` or `..` segment, no backslash or control character, at
//! most [`MAX_KEY_LEN`] bytes — so a key can never escape the configured root. The top-level folder
//! [`LOCAL_STAGING_DIR`] is reserved: local uploads are written there and renamed into place when complete, so
//! readers never see a half-written blob and an aborted upload leaves nothing behind.
//!
//! # Configuration from the environment (Dify's variable names)
//!
//! | `STORAGE_TYPE` | variables |
//! |---|---|
//! | `opendal` (default) | `OPENDAL_SCHEME` (only `fs` is supported; default `fs`), `OPENDAL_FS_ROOT` (default `storage`) |
//! | `local` | `STORAGE_LOCAL_PATH` (default `storage`) |
//! | `s3` | `S3_BUCKET_NAME`\*, `S3_REGION` (default `us-east-1`), `S3_ENDPOINT`, `S3_ACCESS_KEY`, `S3_SECRET_KEY`, `S3_ADDRESS_STYLE` (`auto`\|`path`\|`virtual`, default `auto`: virtual-hosted without a custom endpoint, path-style with one), `S3_USE_AWS_MANAGED_IAM` (`true`: ignore the keys and use the AWS credential chain) |
//! | `azure-blob` | `AZURE_BLOB_ACCOUNT_NAME`\*, `AZURE_BLOB_ACCOUNT_KEY`\*, `AZURE_BLOB_CONTAINER_NAME`\*, `AZURE_BLOB_ACCOUNT_URL` (default `https://{account}.blob.core.windows.net`) |
//! | `google-storage` | `GOOGLE_STORAGE_BUCKET_NAME`\*, `GOOGLE_STORAGE_SERVICE_ACCOUNT_JSON_BASE64` (else Google's default credentials) |
//! | `aliyun-oss` | `ALIYUN_OSS_BUCKET_NAME`\*, `ALIYUN_OSS_ENDPOINT`\*, `ALIYUN_OSS_ACCESS_KEY`\*, `ALIYUN_OSS_SECRET_KEY`\*, `ALIYUN_OSS_PATH` (key prefix) |
//! | `tencent-cos` | `TENCENT_COS_BUCKET_NAME`\*, `TENCENT_COS_SECRET_ID`\*, `TENCENT_COS_SECRET_KEY`\*, `TENCENT_COS_REGION` (used to build the endpoint `{TENCENT_COS_SCHEME:-https}://cos.{region}.myqcloud.com`) or `TENCENT_COS_ENDPOINT` |
//!
//! \* required. Aliyun OSS is addressed virtual-hosted style (OSS rejects path-style requests).

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use opendal::{ErrorKind, Operator, services};

/// Longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Folder inside a local root where uploads are staged until [`BlobWriter::close`] renames them into place; keys
/// under it are rejected.
pub const LOCAL_STAGING_DIR: &str = ".toolplane-tmp";

/// Size of the parts a [`BlobWriter`] uploads (S3 multipart parts must be at least 5 MiB, except the last).
pub const WRITE_CHUNK_SIZE: usize = 8 * 1024 * 1024;

/// A secret configuration value: shown as `***` by `Debug`, read with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

/// Where blobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobConfig {
    /// A local folder (created on first write).
    Local {
        /// The folder.
        root: PathBuf,
    },
    /// Amazon S3 or an S3-compatible service (MinIO, moto, R2, ...).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Signing region, e.g. `us-east-1`.
        region: String,
        /// Custom endpoint such as `http://127.0.0.1:9000`; `None` for AWS.
        endpoint: Option<String>,
        /// Access key id; `None` (with `secret_access_key` `None`) uses the AWS credential chain (env, profile, IMDS).
        access_key_id: Option<String>,
        /// Secret access key.
        secret_access_key: Option<Secret>,
        /// `https://bucket.host/key` instead of `https://host/bucket/key`.
        virtual_hosted_style: bool,
    },
    /// Azure Blob Storage.
    AzureBlob {
        /// Container name.
        container: String,
        /// Storage account name.
        account_name: String,
        /// Storage account key.
        account_key: Secret,
        /// Account URL; `None` means `https://{account_name}.blob.core.windows.net`.
        endpoint: Option<String>,
    },
    /// Google Cloud Storage.
    Gcs {
        /// Bucket name.
        bucket: String,
        /// Base64 of the service-account JSON; `None` uses Google's default credentials.
        service_account_json_base64: Option<Secret>,
        /// Custom endpoint (emulators); `None` for Google.
        endpoint: Option<String>,
    },
    /// Alibaba Cloud OSS (native protocol, virtual-hosted addressing).
    AliyunOss {
        /// Bucket name.
        bucket: String,
        /// Endpoint, e.g. `https://oss-cn-hangzhou.aliyuncs.com`.
        endpoint: String,
        /// AccessKey id.
        access_key_id: String,
        /// AccessKey secret.
        access_key_secret: Secret,
        /// Key prefix inside the bucket (Dify's `ALIYUN_OSS_PATH`).
        root: Option<String>,
    },
    /// Tencent Cloud COS.
    TencentCos {
        /// Bucket name (`name-appid`).
        bucket: String,
        /// Endpoint, e.g. `https://cos.ap-guangzhou.myqcloud.com`.
        endpoint: String,
        /// SecretId.
        secret_id: String,
        /// SecretKey.
        secret_key: Secret,
    },
}

impl Default for BlobConfig {
    fn default() -> Self {
        BlobConfig::Local {
            root: PathBuf::from("storage"),
        }
    }
}

impl BlobConfig {
    /// Reads the configuration from the process environment using Dify's variable names (see the module docs).
    pub fn from_env() -> Result<BlobConfig, BlobError> {
        BlobConfig::from_vars(|name| std::env::var(name).ok(), PathBuf::from("storage"))
    }

    /// Like [`BlobConfig::from_env`] but reading variables through `var` and using `default_local_root` when a
    /// local folder is selected without a path. Empty values count as unset.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        default_local_root: PathBuf,
    ) -> Result<BlobConfig, BlobError> {
        let get = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let required = |name: &'static str| {
            get(name)
                .ok_or_else(|| BlobError::Config(format!("{name} must be set for STORAGE_TYPE={}", storage_type(&get))))
        };
        let kind = storage_type(&get);
        match kind.as_str() {
            "opendal" => {
                let scheme = get("OPENDAL_SCHEME").unwrap_or_else(|| "fs".into());
                if scheme != "fs" {
                    return Err(BlobError::Config(format!(
                        "OPENDAL_SCHEME={scheme} is not supported; use OPENDAL_SCHEME=fs or pick the service with \
                         STORAGE_TYPE (s3, azure-blob, google-storage, aliyun-oss, tencent-cos)"
                    )));
                }
                Ok(BlobConfig::Local {
                    root: get("OPENDAL_FS_ROOT").map(PathBuf::from).unwrap_or(default_local_root),
                })
            }
            "local" => Ok(BlobConfig::Local {
                root: get("STORAGE_LOCAL_PATH")
                    .map(PathBuf::from)
                    .unwrap_or(default_local_root),
            }),
            "s3" => {
                let endpoint = get("S3_ENDPOINT");
                let virtual_hosted_style = match get("S3_ADDRESS_STYLE").as_deref().unwrap_or("auto") {
                    "virtual" => true,
                    "path" => false,
                    "auto" => endpoint.is_none(),
                    other => {
                        return Err(BlobError::Config(format!(
                            "S3_ADDRESS_STYLE={other} is not one of auto, path, virtual"
                        )));
                    }
                };
                let managed_iam = get("S3_USE_AWS_MANAGED_IAM").is_some_and(|v| v.eq_ignore_ascii_case("true"));
                let (access_key_id, secret_access_key) = if managed_iam {
                    (None, None)
                } else {
                    (get("S3_ACCESS_KEY"), get("S3_SECRET_KEY").map(Secret))
                };
                Ok(BlobConfig::S3 {
                    bucket: required("S3_BUCKET_NAME")?,
                    region: get("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
                    endpoint,
                    access_key_id,
                    secret_access_key,
                    virtual_hosted_style,
                })
            }
            "azure-blob" => Ok(BlobConfig::AzureBlob {
                container: required("AZURE_BLOB_CONTAINER_NAME")?,
                account_name: required("AZURE_BLOB_ACCOUNT_NAME")?,
                account_key: Secret(required("AZURE_BLOB_ACCOUNT_KEY")?),
                endpoint: get("AZURE_BLOB_ACCOUNT_URL"),
            }),
            "google-storage" => Ok(BlobConfig::Gcs {
                bucket: required("GOOGLE_STORAGE_BUCKET_NAME")?,
                service_account_json_base64: get("GOOGLE_STORAGE_SERVICE_ACCOUNT_JSON_BASE64").map(Secret),
                endpoint: None,
            }),
            "aliyun-oss" => Ok(BlobConfig::AliyunOss {
                bucket: required("ALIYUN_OSS_BUCKET_NAME")?,
                endpoint: required("ALIYUN_OSS_ENDPOINT")?,
                access_key_id: required("ALIYUN_OSS_ACCESS_KEY")?,
                access_key_secret: Secret(required("ALIYUN_OSS_SECRET_KEY")?),
                root: get("ALIYUN_OSS_PATH"),
            }),
            "tencent-cos" => {
                let endpoint = match get("TENCENT_COS_ENDPOINT") {
                    Some(endpoint) => endpoint,
                    None => {
                        let region = required("TENCENT_COS_REGION")?;
                        let scheme = get("TENCENT_COS_SCHEME").unwrap_or_else(|| "https".into());
                        format!("{scheme}://cos.{region}.myqcloud.com")
                    }
                };
                Ok(BlobConfig::TencentCos {
                    bucket: required("TENCENT_COS_BUCKET_NAME")?,
                    endpoint,
                    secret_id: required("TENCENT_COS_SECRET_ID")?,
                    secret_key: Secret(required("TENCENT_COS_SECRET_KEY")?),
                })
            }
            other => Err(BlobError::Config(format!(
                "STORAGE_TYPE={other} is not supported; use one of opendal, local, s3, azure-blob, google-storage, \
                 aliyun-oss, tencent-cos"
            ))),
        }
    }

    /// Short name of the backend, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BlobConfig::Local { .. } => "local",
            BlobConfig::S3 { .. } => "s3",
            BlobConfig::AzureBlob { .. } => "azure-blob",
            BlobConfig::Gcs { .. } => "google-storage",
            BlobConfig::AliyunOss { .. } => "aliyun-oss",
            BlobConfig::TencentCos { .. } => "tencent-cos",
        }
    }
}

fn storage_type(get: &impl Fn(&str) -> Option<String>) -> String {
    get("STORAGE_TYPE")
        .unwrap_or_else(|| "opendal".into())
        .to_ascii_lowercase()
}

/// What went wrong with blob storage.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The key is not an acceptable relative path.
    #[error("invalid storage key `{key}`: {reason}")]
    InvalidKey {
        /// The rejected key (truncated to 200 characters).
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// No blob is stored under the key.
    #[error("no blob stored under `{key}`")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The configuration is incomplete or names something unsupported.
    #[error("blob storage configuration: {0}")]
    Config(String),
    /// The backend failed (network, permissions, disk, ...).
    #[error("blob storage {operation} of `{key}` failed: {source}")]
    Backend {
        /// `put`, `get`, `stat`, `delete`, `write`, ...
        operation: &'static str,
        /// The key.
        key: String,
        /// opendal's error (boxed: it is large).
        #[source]
        source: Box<opendal::Error>,
    },
    /// Reading a local blob failed (other than its absence).
    #[error("blob storage {operation} of `{key}` failed: {source}")]
    Local {
        /// `get`, `read`, `stat`.
        operation: &'static str,
        /// The key.
        key: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a stream failed midway.
    #[error("blob storage stream of `{key}` failed: {source}")]
    Stream {
        /// The key.
        key: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl BlobError {
    /// Whether the blob does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            BlobError::NotFound { .. } => true,
            BlobError::Stream { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }

    fn local(operation: &'static str, key: &str, source: std::io::Error) -> BlobError {
        // A folder is where a key's prefix is, not a blob.
        if matches!(
            source.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
        ) {
            BlobError::NotFound { key: key.to_owned() }
        } else {
            BlobError::Local {
                operation,
                key: key.to_owned(),
                source,
            }
        }
    }

    fn backend(operation: &'static str, key: &str, source: opendal::Error) -> BlobError {
        if source.kind() == ErrorKind::NotFound {
            BlobError::NotFound { key: key.to_owned() }
        } else {
            BlobError::Backend {
                operation,
                key: key.to_owned(),
                source: Box::new(source),
            }
        }
    }
}

/// Checks that `key` is a safe relative path (see the module docs).
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    let fail = |reason| {
        Err(BlobError::InvalidKey {
            key: key.chars().take(200).collect(),
            reason,
        })
    };
    if key.is_empty() {
        return fail("it is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return fail("it is longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return fail("it starts with `/`; keys are relative");
    }
    if key.ends_with('/') {
        return fail("it ends with `/`; keys name files, not folders");
    }
    if key.contains('\\') {
        return fail("it contains `\\`; use `/` as the separator");
    }
    if key.chars().any(char::is_control) {
        return fail("it contains a control character");
    }
    if key.split('/').next() == Some(LOCAL_STAGING_DIR) {
        return fail("its first segment is reserved for staging uploads");
    }
    for segment in key.split('/') {
        match segment {
            "" => return fail("it contains an empty segment (`//`)"),
            "." | ".." => return fail("it contains a `.` or `..` segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Blob storage over one configured backend. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BlobStore {
    op: Operator,
    kind: &'static str,
    /// The canonical root of local storage, read directly (see [`BlobStore::get`]).
    local_root: Option<PathBuf>,
}

/// The chunk size of a local [`BlobReader`].
const LOCAL_READ_CHUNK: usize = 64 * 1024;

impl BlobStore {
    /// Builds the store. A local root (and its staging folder) is created here; remote services are not contacted
    /// (the first request reveals bad credentials or a missing bucket; call [`BlobStore::check`] at startup to find
    /// out early).
    pub fn from_config(config: &BlobConfig) -> Result<BlobStore, BlobError> {
        // Installs the reqwest HTTP transport once per process; HTTP-based services need it.
        opendal::install_default();
        let built = match config {
            BlobConfig::Local { root } => {
                let root = root.to_str().ok_or_else(|| {
                    BlobError::Config(format!("local storage path {} is not valid UTF-8", root.display()))
                })?;
                let staging = format!("{}/{LOCAL_STAGING_DIR}", root.trim_end_matches('/'));
                Operator::new(services::Fs::default().root(root).atomic_write_dir(&staging))
            }
            BlobConfig::S3 {
                bucket,
                region,
                endpoint,
                access_key_id,
                secret_access_key,
                virtual_hosted_style,
            } => {
                let mut builder = services::S3::default().bucket(bucket).region(region);
                if let Some(endpoint) = endpoint {
                    builder = builder.endpoint(endpoint);
                }
                match (access_key_id, secret_access_key) {
                    (Some(id), Some(secret)) => {
                        builder = builder
                            .access_key_id(id)
                            .secret_access_key(secret.expose())
                            .disable_config_load();
                    }
                    (None, None) => {}
                    _ => {
                        return Err(BlobError::Config(
                            "S3 needs both an access key id and a secret access key, or neither (to use the AWS \
                             credential chain)"
                                .into(),
                        ));
                    }
                }
                if *virtual_hosted_style {
                    builder = builder.enable_virtual_host_style();
                }
                Operator::new(builder)
            }
            BlobConfig::AzureBlob {
                container,
                account_name,
                account_key,
                endpoint,
            } => {
                let endpoint = endpoint
                    .clone()
                    .unwrap_or_else(|| format!("https://{account_name}.blob.core.windows.net"));
                Operator::new(
                    services::Azblob::default()
                        .container(container)
                        .endpoint(&endpoint)
                        .account_name(account_name)
                        .account_key(account_key.expose()),
                )
            }
            BlobConfig::Gcs {
                bucket,
                service_account_json_base64,
                endpoint,
            } => {
                let mut builder = services::Gcs::default().bucket(bucket);
                if let Some(credential) = service_account_json_base64 {
                    builder = builder.credential(credential.expose());
                }
                if let Some(endpoint) = endpoint {
                    builder = builder.endpoint(endpoint);
                }
                Operator::new(builder)
            }
            BlobConfig::AliyunOss {
                bucket,
                endpoint,
                access_key_id,
                access_key_secret,
                root,
            } => {
                let mut builder = services::Oss::default()
                    .bucket(bucket)
                    .endpoint(endpoint)
                    .access_key_id(access_key_id)
                    .access_key_secret(access_key_secret.expose())
                    .addressing_style("virtual");
                if let Some(root) = root {
                    builder = builder.root(root);
                }
                Operator::new(builder)
            }
            BlobConfig::TencentCos {
                bucket,
                endpoint,
                secret_id,
                secret_key,
            } => Operator::new(
                services::Cos::default()
                    .bucket(bucket)
                    .endpoint(endpoint)
                    .secret_id(secret_id)
                    .secret_key(secret_key.expose())
                    .disable_config_load(),
            ),
        };
        let op = built.map_err(|e| BlobError::Config(format!("cannot set up {} storage: {e}", config.kind())))?;
        let local_root = match config {
            // The operator has created the folder; resolve it as opendal does, once.
            BlobConfig::Local { root } => Some(std::fs::canonicalize(root).map_err(|e| {
                BlobError::Config(format!("local storage path {} cannot be resolved: {e}", root.display()))
            })?),
            _ => None,
        };
        Ok(BlobStore {
            op,
            kind: config.kind(),
            local_root,
        })
    }

    /// Short name of the backend (`local`, `s3`, ...).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Verifies that the backend is reachable and the credentials work (lists the root).
    pub async fn check(&self) -> Result<(), BlobError> {
        self.op.check().await.map_err(|e| BlobError::backend("check", "", e))
    }

    /// Stores `bytes` under `key`, replacing any previous blob.
    pub async fn put(&self, key: &str, bytes: impl Into<Bytes>) -> Result<(), BlobError> {
        validate_key(key)?;
        self.op
            .write(key, bytes.into())
            .await
            .map_err(|e| BlobError::backend("put", key, e))?;
        Ok(())
    }

    /// The whole blob. For large blobs prefer [`BlobStore::reader`].
    ///
    /// Local blobs are read straight from the file into a buffer of their size: opendal's fs service reads into
    /// 2 MiB zero-filled buffers from a pool it keeps for the life of the store (up to 16, each pinned by the last
    /// bytes read from it), so a daemon that had read a few packages held tens of MB for good.
    pub async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        validate_key(key)?;
        if let Some(root) = &self.local_root {
            return match tokio::fs::read(root.join(key)).await {
                Ok(bytes) => Ok(Bytes::from(bytes)),
                Err(e) => Err(BlobError::local("get", key, e)),
            };
        }
        let buffer = self.op.read(key).await.map_err(|e| BlobError::backend("get", key, e))?;
        Ok(buffer.to_bytes())
    }

    /// Whether a blob is stored under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        validate_key(key)?;
        self.op
            .exists(key)
            .await
            .map_err(|e| BlobError::backend("stat", key, e))
    }

    /// The blob's size in bytes; `NotFound` if absent.
    pub async fn size(&self, key: &str) -> Result<u64, BlobError> {
        validate_key(key)?;
        let meta = self
            .op
            .stat(key)
            .await
            .map_err(|e| BlobError::backend("stat", key, e))?;
        Ok(meta.content_length())
    }

    /// Deletes the blob. Deleting an absent key succeeds (idempotent).
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        self.op
            .delete(key)
            .await
            .map_err(|e| BlobError::backend("delete", key, e))
    }

    /// Streams the blob in chunks without loading it whole. `NotFound` is reported here, before streaming.
    pub async fn reader(&self, key: &str) -> Result<BlobReader, BlobError> {
        validate_key(key)?;
        if let Some(root) = &self.local_root {
            // Read directly for the reason given at `get`.
            return local_reader(root, key).await;
        }
        let size = self.size(key).await?;
        let stream = self
            .op
            .reader(key)
            .await
            .map_err(|e| BlobError::backend("read", key, e))?
            .into_bytes_stream(..)
            .await
            .map_err(|e| BlobError::backend("read", key, e))?;
        let owned_key = key.to_owned();
        Ok(BlobReader {
            size,
            inner: stream
                .map_err(move |source| BlobError::Stream {
                    key: owned_key.clone(),
                    source,
                })
                .boxed(),
        })
    }

    /// Opens a writer that uploads in [`WRITE_CHUNK_SIZE`] parts; nothing is visible under `key` until
    /// [`BlobWriter::close`] succeeds.
    pub async fn writer(&self, key: &str) -> Result<BlobWriter, BlobError> {
        validate_key(key)?;
        let inner = self
            .op
            .writer_with(key)
            .chunk(WRITE_CHUNK_SIZE)
            .await
            .map_err(|e| BlobError::backend("write", key, e))?;
        Ok(BlobWriter {
            inner,
            key: key.to_owned(),
        })
    }

    /// Writes a stream of chunks under `key` without holding it whole; returns the number of bytes written. If the
    /// stream yields an error the upload is aborted and that error is returned.
    pub async fn put_stream<S, E>(&self, key: &str, stream: S) -> Result<u64, PutStreamError<E>>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        let mut writer = self.writer(key).await.map_err(PutStreamError::Blob)?;
        let mut stream = std::pin::pin!(stream);
        let mut written = 0u64;
        while let Some(item) = stream.next().await {
            let chunk = match item {
                Ok(chunk) => chunk,
                Err(e) => {
                    writer.abort().await.ok();
                    return Err(PutStreamError::Source(e));
                }
            };
            written += chunk.len() as u64;
            if let Err(e) = writer.write(chunk).await {
                writer.abort().await.ok();
                return Err(PutStreamError::Blob(e));
            }
        }
        writer.close().await.map_err(PutStreamError::Blob)?;
        Ok(written)
    }
}

/// Streams a local file in [`LOCAL_READ_CHUNK`]s, each in a buffer of its own.
async fn local_reader(root: &std::path::Path, key: &str) -> Result<BlobReader, BlobError> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(root.join(key))
        .await
        .map_err(|e| BlobError::local("read", key, e))?;
    let metadata = file.metadata().await.map_err(|e| BlobError::local("stat", key, e))?;
    if !metadata.is_file() {
        return Err(BlobError::NotFound { key: key.to_owned() });
    }
    let owned_key = key.to_owned();
    let chunks = futures::stream::try_unfold(Some(file), move |file| {
        let key = owned_key.clone();
        async move {
            let Some(mut file) = file else { return Ok(None) };
            let mut chunk = bytes::BytesMut::with_capacity(LOCAL_READ_CHUNK);
            while chunk.len() < LOCAL_READ_CHUNK {
                let read = file.read_buf(&mut chunk).await.map_err(|source| BlobError::Stream {
                    key: key.clone(),
                    source,
                })?;
                if read == 0 {
                    return Ok((!chunk.is_empty()).then(|| (chunk.freeze(), None)));
                }
            }
            Ok(Some((chunk.freeze(), Some(file))))
        }
    });
    Ok(BlobReader {
        size: metadata.len(),
        inner: chunks.boxed(),
    })
}

/// Error of [`BlobStore::put_stream`]: either the source stream or the storage failed.
#[derive(Debug, thiserror::Error)]
pub enum PutStreamError<E> {
    /// The input stream yielded an error; the upload was aborted.
    #[error("the input stream failed: {0}")]
    Source(E),
    /// Storage failed.
    #[error(transparent)]
    Blob(BlobError),
}

/// A blob being read: its size plus a stream of chunks.
pub struct BlobReader {
    /// Size in bytes (for `Content-Length`).
    pub size: u64,
    inner: futures::stream::BoxStream<'static, Result<Bytes, BlobError>>,
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Stream for BlobReader {
    type Item = Result<Bytes, BlobError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// An upload in progress; see [`BlobStore::writer`].
pub struct BlobWriter {
    inner: opendal::Writer,
    key: String,
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl BlobWriter {
    /// Appends a chunk.
    pub async fn write(&mut self, chunk: impl Into<Bytes>) -> Result<(), BlobError> {
        self.inner
            .write(chunk.into())
            .await
            .map_err(|e| BlobError::backend("write", &self.key, e))
    }

    /// Finishes the upload and makes the blob visible.
    pub async fn close(mut self) -> Result<(), BlobError> {
        self.inner
            .close()
            .await
            .map_err(|e| BlobError::backend("write", &self.key, e))?;
        Ok(())
    }

    /// Abandons the upload; nothing becomes visible under the key.
    pub async fn abort(mut self) -> Result<(), BlobError> {
        self.inner
            .abort()
            .await
            .map_err(|e| BlobError::backend("abort", &self.key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keys_are_validated() {
        for good in ["a", "tools/t1/abc.png", "privkeys/x/private.pem", "a..b/c"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/abs",
            "a/../b",
            "..",
            "a/./b",
            "a//b",
            "dir/",
            ".toolplane-tmp/x",
            "a\\b",
            "a\nb",
            &"x".repeat(1025),
        ] {
            assert!(
                matches!(validate_key(bad), Err(BlobError::InvalidKey { .. })),
                "{bad:?}"
            );
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_defaults_to_local_storage() {
        let cfg = BlobConfig::from_vars(vars(&[]), "/data/storage".into()).unwrap();
        assert_eq!(
            cfg,
            BlobConfig::Local {
                root: "/data/storage".into()
            }
        );
        let cfg = BlobConfig::from_vars(vars(&[("OPENDAL_FS_ROOT", "/x")]), "d".into()).unwrap();
        assert_eq!(cfg, BlobConfig::Local { root: "/x".into() });
        let cfg = BlobConfig::from_vars(
            vars(&[("STORAGE_TYPE", "local"), ("STORAGE_LOCAL_PATH", "/y")]),
            "d".into(),
        )
        .unwrap();
        assert_eq!(cfg, BlobConfig::Local { root: "/y".into() });
        assert!(BlobConfig::from_vars(vars(&[("OPENDAL_SCHEME", "s3")]), "d".into()).is_err());
    }

    #[test]
    fn env_reads_s3_with_dify_names() {
        let cfg = BlobConfig::from_vars(
            vars(&[
                ("STORAGE_TYPE", "s3"),
                ("S3_BUCKET_NAME", "b"),
                ("S3_ENDPOINT", "http://127.0.0.1:9000"),
                ("S3_ACCESS_KEY", "ak"),
                ("S3_SECRET_KEY", "sk"),
            ]),
            "d".into(),
        )
        .unwrap();
        assert_eq!(
            cfg,
            BlobConfig::S3 {
                bucket: "b".into(),
                region: "us-east-1".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                access_key_id: Some("ak".into()),
                secret_access_key: Some(Secret::new("sk")),
                virtual_hosted_style: false,
            }
        );
        assert!(
            !format!("{cfg:?}").contains("sk\""),
            "secret leaked into Debug: {cfg:?}"
        );
        let err = BlobConfig::from_vars(vars(&[("STORAGE_TYPE", "s3")]), "d".into()).unwrap_err();
        assert!(err.to_string().contains("S3_BUCKET_NAME"), "{err}");
        let cfg = BlobConfig::from_vars(
            vars(&[
                ("STORAGE_TYPE", "s3"),
                ("S3_BUCKET_NAME", "b"),
                ("S3_ADDRESS_STYLE", "auto"),
            ]),
            "d".into(),
        )
        .unwrap();
        assert!(matches!(
            cfg,
            BlobConfig::S3 {
                virtual_hosted_style: true,
                ..
            }
        ));
    }

    #[test]
    fn env_reads_other_services() {
        let cfg = BlobConfig::from_vars(
            vars(&[
                ("STORAGE_TYPE", "tencent-cos"),
                ("TENCENT_COS_BUCKET_NAME", "b-123"),
                ("TENCENT_COS_REGION", "ap-guangzhou"),
                ("TENCENT_COS_SECRET_ID", "id"),
                ("TENCENT_COS_SECRET_KEY", "key"),
            ]),
            "d".into(),
        )
        .unwrap();
        assert!(
            matches!(&cfg, BlobConfig::TencentCos { endpoint, .. } if endpoint == "https://cos.ap-guangzhou.myqcloud.com")
        );
        BlobStore::from_config(&cfg).unwrap();
        let cfg = BlobConfig::from_vars(
            vars(&[
                ("STORAGE_TYPE", "azure-blob"),
                ("AZURE_BLOB_ACCOUNT_NAME", "acct"),
                ("AZURE_BLOB_ACCOUNT_KEY", "a2V5"),
                ("AZURE_BLOB_CONTAINER_NAME", "c"),
            ]),
            "d".into(),
        )
        .unwrap();
        BlobStore::from_config(&cfg).unwrap();
        let cfg = BlobConfig::from_vars(
            vars(&[
                ("STORAGE_TYPE", "aliyun-oss"),
                ("ALIYUN_OSS_BUCKET_NAME", "b"),
                ("ALIYUN_OSS_ENDPOINT", "https://oss-cn-hangzhou.aliyuncs.com"),
                ("ALIYUN_OSS_ACCESS_KEY", "ak"),
                ("ALIYUN_OSS_SECRET_KEY", "sk"),
                ("ALIYUN_OSS_PATH", "dify"),
            ]),
            "d".into(),
        )
        .unwrap();
        BlobStore::from_config(&cfg).unwrap();
        let err = BlobConfig::from_vars(vars(&[("STORAGE_TYPE", "ftp")]), "d".into()).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }
}
