//! Package signatures, bit-compatible with the original (`signer/withkey`, `decoder/verifier.go`).
//!
//! * Signed data: the SHA-256 of every file **in archive order** (32 raw bytes each), then the signing time as
//!   decimal ASCII.
//! * Signature: RSASSA-PKCS1-v1_5 with SHA-256 over that data, base64 (standard alphabet, padded).
//! * Stored as the zip comment `{"signature":"<base64>","time":<unix seconds>}`.
//! * Signing rewrites every entry into a new zip in the same order and appends `.verification.dify.json` when a
//!   verification is given, so signing with a verification changes the checksum.
//! * Keys are 4096-bit RSA in PKCS#1 PEM (`RSA PRIVATE KEY` / `RSA PUBLIC KEY`), as `dify signature generate`
//!   writes them.
//!
//! The official langgenius public key is bundled ([`PublicKeyPem::official`]); it was copied from
//! langgenius/dify-plugin-daemon `pkg/license/public_key/PUBLIC_KEY.pem` (commit `bdb5642a`).

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::archive::{Archive, DecodeLimits, read_archive};
use crate::checksum::sha256;
use crate::error::PackageError;

/// The file that carries a package's authorised category.
pub const VERIFICATION_FILE: &str = ".verification.dify.json";

const OFFICIAL_PUBLIC_KEY: &str = include_str!("../keys/langgenius_official_public_key.pem");
const PRIVATE_LABEL: &str = "RSA PRIVATE KEY";
const PUBLIC_LABEL: &str = "RSA PUBLIC KEY";

/// Who vouches for a signed package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorizedCategory {
    Langgenius,
    Partner,
    Community,
}

impl AuthorizedCategory {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Langgenius => "langgenius",
            Self::Partner => "partner",
            Self::Community => "community",
        }
    }
}

impl std::str::FromStr for AuthorizedCategory {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "langgenius" => Ok(Self::Langgenius),
            "partner" => Ok(Self::Partner),
            "community" => Ok(Self::Community),
            _ => Err(format!(
                "unknown authorized category {s:?}; expected langgenius, partner or community"
            )),
        }
    }
}

/// The content of `.verification.dify.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub authorized_category: AuthorizedCategory,
}

impl Verification {
    /// What a verified package without a verification file counts as (`DefaultVerification()`): langgenius, for
    /// historical reasons.
    pub fn default_for_verified() -> Self {
        Self {
            authorized_category: AuthorizedCategory::Langgenius,
        }
    }
}

/// The signature found in a package's zip comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureInfo {
    /// Base64 of the RSA signature.
    pub signature: String,
    /// Signing time, Unix seconds.
    pub time: i64,
}

impl SignatureInfo {
    /// Parses a zip comment; `None` when it is not the original's signature JSON (e.g. an unsigned package).
    pub fn from_comment(comment: &[u8]) -> Option<Self> {
        let info: Self = serde_json::from_slice(comment).ok()?;
        (!info.signature.is_empty()).then_some(info)
    }
}

/// Why signing or verifying failed.
#[derive(Debug, Error)]
pub enum SignatureError {
    #[error(transparent)]
    Package(#[from] PackageError),

    #[error("the package is not signed: its zip comment holds no {{\"signature\",\"time\"}} JSON")]
    Unsigned,

    #[error("the signature is not valid base64: {0}")]
    BadBase64(String),

    #[error(
        "the signature does not match any trusted public key ({tried} tried); the package was modified or signed by an untrusted key"
    )]
    Mismatch { tried: usize },

    #[error("no public key to verify with")]
    NoKeys,

    #[error(
        "invalid private key: {0}; expected a PKCS#1 PEM (-----BEGIN RSA PRIVATE KEY-----) as `signature generate` writes"
    )]
    PrivateKey(String),

    #[error("invalid public key {name}: {reason}; expected a PKCS#1 PEM (-----BEGIN RSA PUBLIC KEY-----)")]
    PublicKey { name: String, reason: String },

    #[error("reading public key {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("generating the key pair failed")]
    KeyGeneration,

    #[error("signing failed: {0}")]
    Signing(String),

    #[error("plugin verification has been enabled, and the plugin you want to install has a bad signature")]
    BadSignature,

    #[error(
        "plugin installation blocked: this plugin claims to be from langgenius but is not signed and \
         authorized as langgenius (ENFORCE_LANGGENIUS_PLUGIN_SIGNATURES)"
    )]
    NotLanggenius,

    #[error("invalid {variable}: {value:?} is not a boolean (use true or false)")]
    Config { variable: &'static str, value: String },
}

/// A public key to verify signatures with, as PKCS#1 PEM, with a name for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyPem {
    /// Where the key came from (`official` or a file path).
    pub name: String,
    /// The PEM text.
    pub pem: String,
}

impl PublicKeyPem {
    /// A key from PEM text.
    pub fn new(name: impl Into<String>, pem: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            pem: pem.into(),
        }
    }

    /// Dify's official langgenius key, bundled with this crate.
    pub fn official() -> Self {
        Self::new("official", OFFICIAL_PUBLIC_KEY)
    }

    /// Reads a key file (the path is trimmed, as the original does with `THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS`).
    pub fn from_file(path: &Path) -> Result<Self, SignatureError> {
        let pem = std::fs::read_to_string(path).map_err(|source| SignatureError::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::new(path.display().to_string(), pem))
    }

    /// The PKCS#1 `RSAPublicKey` DER, checked to be an RSA key.
    fn der(&self) -> Result<Vec<u8>, SignatureError> {
        let bad = |reason: String| SignatureError::PublicKey {
            name: self.name.clone(),
            reason,
        };
        let block = pem::parse(self.pem.trim()).map_err(|e| bad(e.to_string()))?;
        if block.tag() != PUBLIC_LABEL {
            return Err(bad(format!("the PEM block is `{}`", block.tag())));
        }
        aws_lc_rs::rsa::PublicKey::from_der(block.contents()).map_err(|e| bad(e.to_string()))?;
        Ok(block.contents().to_vec())
    }
}

/// A freshly generated signing key pair in PKCS#1 PEM.
#[derive(Clone)]
pub struct SigningKeyPair {
    /// `-----BEGIN RSA PRIVATE KEY-----`. Secret.
    pub private_pem: String,
    /// `-----BEGIN RSA PUBLIC KEY-----`.
    pub public_pem: String,
}

impl std::fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("private_pem", &"<redacted>")
            .field("public_pem", &self.public_pem)
            .finish()
    }
}

/// Generates a 4096-bit RSA key pair as `dify signature generate` does (write them as `<name>.private.pem` and
/// `<name>.public.pem`). Slow: about a second in release builds, much longer in debug builds.
pub fn generate_signing_key_pair() -> Result<SigningKeyPair, SignatureError> {
    let key = KeyPair::generate(KeySize::Rsa4096).map_err(|_| SignatureError::KeyGeneration)?;
    let pkcs8 = key.as_der().map_err(|_| SignatureError::KeyGeneration)?;
    let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref()).ok_or(SignatureError::KeyGeneration)?;
    Ok(SigningKeyPair {
        private_pem: encode_pem(PRIVATE_LABEL, pkcs1.to_vec()),
        public_pem: encode_pem(PUBLIC_LABEL, key.public_key().as_ref().to_vec()),
    })
}

/// PEM as Go's `pem.EncodeToMemory` writes it: 64-column base64, `\n` line ends.
fn encode_pem(label: &str, der: Vec<u8>) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// A PKCS#8 `PrivateKeyInfo` is `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey }`, and
/// for RSA the octet string holds the PKCS#1 `RSAPrivateKey` verbatim.
fn pkcs1_from_pkcs8(der: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (version_tag, _, rest) = der_element(body)?;
    let (algorithm_tag, _, rest) = der_element(rest)?;
    let (key_tag, key, _) = der_element(rest)?;
    (version_tag == 0x02 && algorithm_tag == 0x30 && key_tag == 0x04).then_some(key)
}

/// Splits one DER element: (tag, contents, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let bytes = input.get(2..2 + count)?;
        (
            bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
            2 + count,
        )
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

fn load_private_key(private_key_pem: &str) -> Result<KeyPair, SignatureError> {
    let block = pem::parse(private_key_pem.trim()).map_err(|e| SignatureError::PrivateKey(e.to_string()))?;
    if block.tag() != PRIVATE_LABEL {
        return Err(SignatureError::PrivateKey(format!(
            "the PEM block is `{}`",
            block.tag()
        )));
    }
    KeyPair::from_der(block.contents()).map_err(|e| SignatureError::PrivateKey(e.to_string()))
}

/// The data the signature covers: archive-order file hashes, then the time in decimal.
fn signed_data<'a>(contents: impl Iterator<Item = &'a [u8]>, time: i64) -> Vec<u8> {
    let mut data = Vec::new();
    for content in contents {
        data.extend_from_slice(&sha256(content));
    }
    data.extend_from_slice(time.to_string().as_bytes());
    data
}

/// Signs a package as `dify signature sign` does, at the current time. See [`sign_at`].
pub fn sign(
    package: &[u8],
    private_key_pem: &str,
    verification: Option<Verification>,
) -> Result<Vec<u8>, SignatureError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    sign_at(package, private_key_pem, verification, now)
}

/// Signs a package with the given signing time (Unix seconds).
///
/// Every entry is rewritten, deflated, in archive order; with a verification, `.verification.dify.json` is
/// appended last (an existing one is dropped first, so re-signing with a new category does not produce a duplicate
/// entry, which the original would). The package is read with the default [`DecodeLimits`].
pub fn sign_at(
    package: &[u8],
    private_key_pem: &str,
    verification: Option<Verification>,
    time: i64,
) -> Result<Vec<u8>, SignatureError> {
    let key = load_private_key(private_key_pem)?;
    let archive = read_archive(package, &DecodeLimits::default())?;
    let mut files: Vec<(String, Vec<u8>)> = archive
        .files
        .into_iter()
        .filter(|f| verification.is_none() || f.path != VERIFICATION_FILE)
        .map(|f| (f.path, f.content))
        .collect();
    if let Some(v) = verification {
        let json = serde_json::to_vec(&v).map_err(|e| SignatureError::Signing(e.to_string()))?;
        files.push((VERIFICATION_FILE.to_owned(), json));
    }

    let data = signed_data(files.iter().map(|(_, c)| c.as_slice()), time);
    let mut signature = vec![0u8; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), &data, &mut signature)
        .map_err(|e| SignatureError::Signing(e.to_string()))?;
    // Go's json.Marshal of a map sorts keys: signature before time.
    let comment = format!(r#"{{"signature":"{}","time":{time}}}"#, STANDARD.encode(&signature));

    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (path, content) in &files {
        writer
            .start_file(path.as_str(), options)
            .and_then(|()| writer.write_all(content).map_err(Into::into))
            .map_err(|e| SignatureError::Signing(format!("writing {path}: {e}")))?;
    }
    writer
        .set_comment(comment)
        .map_err(|e| SignatureError::Signing(format!("setting the zip comment: {e}")))?;
    let out = writer.finish().map_err(|e| SignatureError::Signing(e.to_string()))?;
    Ok(out.into_inner())
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationResult {
    /// Name of the key that verified the signature ([`PublicKeyPem::name`]).
    pub key: String,
    /// Signing time, Unix seconds.
    pub time: i64,
    /// The package's `.verification.dify.json`, if it has one.
    pub verification: Option<Verification>,
}

impl VerificationResult {
    /// The verification that applies: the file's, or langgenius for a verified package without one.
    pub fn effective_verification(&self) -> Verification {
        self.verification.unwrap_or_else(Verification::default_for_verified)
    }
}

/// Verifies a package's signature against `public_keys` (tried in order), reading it with the default
/// [`DecodeLimits`].
pub fn verify(package: &[u8], public_keys: &[PublicKeyPem]) -> Result<VerificationResult, SignatureError> {
    verify_with_limits(package, public_keys, &DecodeLimits::default())
}

/// [`verify`] with explicit limits.
pub fn verify_with_limits(
    package: &[u8],
    public_keys: &[PublicKeyPem],
    limits: &DecodeLimits,
) -> Result<VerificationResult, SignatureError> {
    verify_archive(&read_archive(package, limits)?, public_keys)
}

pub(crate) fn verify_archive(
    archive: &Archive,
    public_keys: &[PublicKeyPem],
) -> Result<VerificationResult, SignatureError> {
    if public_keys.is_empty() {
        return Err(SignatureError::NoKeys);
    }
    let info = SignatureInfo::from_comment(&archive.comment).ok_or(SignatureError::Unsigned)?;
    let signature = STANDARD
        .decode(info.signature.as_bytes())
        .map_err(|e| SignatureError::BadBase64(e.to_string()))?;
    let data = signed_data(archive.files.iter().map(|f| f.content.as_slice()), info.time);
    let verification = read_verification(archive)?;
    for key in public_keys {
        let der = key.der()?;
        if UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der)
            .verify(&data, &signature)
            .is_ok()
        {
            return Ok(VerificationResult {
                key: key.name.clone(),
                time: info.time,
                verification,
            });
        }
    }
    Err(SignatureError::Mismatch {
        tried: public_keys.len(),
    })
}

pub(crate) fn read_verification(archive: &Archive) -> Result<Option<Verification>, PackageError> {
    archive
        .file(VERIFICATION_FILE)
        .map(|bytes| serde_json::from_slice(bytes).map_err(|e| PackageError::Verification(e.to_string())))
        .transpose()
}

/// Signature policy from the daemon's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// `FORCE_VERIFYING_SIGNATURE` (default true): reject packages that do not verify.
    pub force_verifying_signature: bool,
    /// `THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED` (default false).
    pub third_party_enabled: bool,
    /// `THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS`: comma-separated PEM paths, trimmed, empty ones dropped.
    pub third_party_public_keys: Vec<PathBuf>,
    /// `ENFORCE_LANGGENIUS_PLUGIN_SIGNATURES` (default true): a package whose author is `langgenius` must verify
    /// with `authorized_category: langgenius`. Applied to single packages as well as bundles.
    pub enforce_langgenius_signatures: bool,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            force_verifying_signature: true,
            third_party_enabled: false,
            third_party_public_keys: Vec::new(),
            enforce_langgenius_signatures: true,
        }
    }
}

/// What [`VerifierConfig::check`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    /// Whether the signature verified with a trusted key (the declaration's `verified`).
    pub verified: bool,
    /// The verification to record: the file's, langgenius for a verified package without one, none if unverified.
    pub verification: Option<Verification>,
    /// Why verification failed, when it did (for logs; not an error unless enforced).
    pub failure: Option<String>,
}

impl VerifierConfig {
    /// Reads the variables through `lookup` (e.g. `|k| std::env::var(k).ok()`); booleans as Go's
    /// `strconv.ParseBool` accepts them.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SignatureError> {
        let defaults = Self::default();
        let flag = |variable: &'static str, default: bool| -> Result<bool, SignatureError> {
            match lookup(variable) {
                None => Ok(default),
                Some(v) if v.trim().is_empty() => Ok(default),
                Some(v) => match v.trim() {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                    _ => Err(SignatureError::Config { variable, value: v }),
                },
            }
        };
        Ok(Self {
            force_verifying_signature: flag("FORCE_VERIFYING_SIGNATURE", defaults.force_verifying_signature)?,
            third_party_enabled: flag(
                "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED",
                defaults.third_party_enabled,
            )?,
            third_party_public_keys: lookup("THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
            enforce_langgenius_signatures: flag(
                "ENFORCE_LANGGENIUS_PLUGIN_SIGNATURES",
                defaults.enforce_langgenius_signatures,
            )?,
        })
    }

    /// The keys signatures are checked against: the official key, plus the third-party key files when third-party
    /// verification is enabled. An unreadable or malformed key file is an error (the original silently treats
    /// every package as unverified then).
    pub fn public_keys(&self) -> Result<Vec<PublicKeyPem>, SignatureError> {
        let mut keys = vec![PublicKeyPem::official()];
        if self.third_party_enabled {
            for path in &self.third_party_public_keys {
                let key = PublicKeyPem::from_file(path)?;
                key.der()?;
                keys.push(key);
            }
        }
        Ok(keys)
    }

    /// Applies the policy to a decoded package. `verify_signature_requested` is the upload form's
    /// `verify_signature`; enforcement happens if it or `FORCE_VERIFYING_SIGNATURE` is set.
    pub fn check(
        &self,
        package: &crate::PluginPackage,
        verify_signature_requested: bool,
    ) -> Result<SignatureCheck, SignatureError> {
        let keys = self.public_keys()?;
        let (verified, verification, failure) = match package.verify_signature(&keys) {
            Ok(result) => (true, Some(result.effective_verification()), None),
            Err(SignatureError::Package(e)) => return Err(SignatureError::Package(e)),
            Err(e) => (false, None, Some(e.to_string())),
        };
        if !verified && (self.force_verifying_signature || verify_signature_requested) {
            return Err(SignatureError::BadSignature);
        }
        if self.enforce_langgenius_signatures
            && package.manifest.author == "langgenius"
            && verification.map(|v| v.authorized_category) != Some(AuthorizedCategory::Langgenius)
        {
            return Err(SignatureError::NotLanggenius);
        }
        Ok(SignatureCheck {
            verified,
            verification,
            failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_key_parses() {
        let der = PublicKeyPem::official().der().unwrap();
        let key = aws_lc_rs::rsa::PublicKey::from_der(&der).unwrap();
        assert_eq!(key.modulus_len(), 512);
    }

    #[test]
    fn comment_parsing() {
        let info = SignatureInfo::from_comment(br#"{"signature":"AAAA","time":1700000000}"#).unwrap();
        assert_eq!(info.time, 1_700_000_000);
        assert!(SignatureInfo::from_comment(b"").is_none());
        assert!(SignatureInfo::from_comment(b"hello").is_none());
    }

    #[test]
    fn config_from_lookup() {
        let c = VerifierConfig::from_lookup(|_| None).unwrap();
        assert_eq!(c, VerifierConfig::default());
        let c = VerifierConfig::from_lookup(|k| match k {
            "FORCE_VERIFYING_SIGNATURE" => Some("false".into()),
            "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED" => Some("1".into()),
            "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS" => Some(" /a.pem , ,/b.pem".into()),
            "ENFORCE_LANGGENIUS_PLUGIN_SIGNATURES" => Some("F".into()),
            _ => None,
        })
        .unwrap();
        assert!(!c.force_verifying_signature && c.third_party_enabled && !c.enforce_langgenius_signatures);
        assert_eq!(
            c.third_party_public_keys,
            vec![PathBuf::from("/a.pem"), PathBuf::from("/b.pem")]
        );
        let err =
            VerifierConfig::from_lookup(|k| (k == "FORCE_VERIFYING_SIGNATURE").then(|| "yes".into())).unwrap_err();
        assert!(err.to_string().contains("FORCE_VERIFYING_SIGNATURE"), "{err}");
    }

    #[test]
    fn verification_json_matches_go() {
        let v = Verification {
            authorized_category: AuthorizedCategory::Partner,
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"authorized_category":"partner"}"#
        );
    }
}
