//! The crate's error types.
//!
//! Messages describe what is wrong and, where it helps, how to fix it. They never contain plaintext, ciphertext
//! or key material: at most sizes, field names and PEM labels.

/// Everything that can go wrong in this crate, except signed-URL verification (see [`SignatureError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The private key PEM is malformed, encrypted, of an unsupported type or size.
    #[error("private key PEM could not be parsed: {0}")]
    PrivateKeyPem(String),

    /// The public key PEM is malformed, of an unsupported type or size.
    #[error("public key PEM could not be parsed: {0}")]
    PublicKeyPem(String),

    /// aws-lc-rs failed to generate or serialise a key pair.
    #[error("RSA key pair generation failed: {0}")]
    KeyGeneration(&'static str),

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed; check that the OS entropy source is available")]
    Random,

    /// A ciphertext token is not standard base64 (`A-Z a-z 0-9 + /`, `=` padding).
    #[error("ciphertext is not valid base64")]
    InvalidBase64,

    /// A `HYBRID:` ciphertext is shorter than prefix + wrapped key + nonce + tag.
    #[error("ciphertext too short for the HYBRID format: {len} bytes (at least {min} needed)")]
    HybridTooShort {
        /// Length of the decoded ciphertext.
        len: usize,
        /// Minimum length for the key size in use.
        min: usize,
    },

    /// Encryption failed inside the cipher (the reason names the step; it never contains data).
    #[error("encryption failed: {0}")]
    Encryption(&'static str),

    /// RSA-OAEP decryption failed: wrong key, wrong padding or corrupted data.
    #[error(
        "RSA-OAEP decryption failed: the value was encrypted for a different key pair or is corrupted \
         (check that the tenant's private key matches its public key)"
    )]
    RsaDecryption,

    /// The RSA-unwrapped AES key has a length AES does not accept.
    #[error("the wrapped AES key has an invalid length of {0} bytes (expected 16, 24 or 32)")]
    InvalidAesKeyLength(usize),

    /// The AES-EAX tag did not verify.
    #[error("AES-EAX authentication failed: the ciphertext was altered, truncated or encrypted with another key")]
    AuthenticationFailed,

    /// The decrypted bytes are not UTF-8 text.
    #[error("the decrypted value is not valid UTF-8 text")]
    NotUtf8,

    /// A secret credential field holds a JSON value that cannot be treated as a secret string.
    #[error("secret field `{field}` holds a JSON {found}; secret fields must be strings, numbers, booleans or null")]
    SecretFieldNotString {
        /// Name of the credential field.
        field: String,
        /// JSON type that was found (`array`, `object`, ...).
        found: &'static str,
    },

    /// A stored secret field could not be decrypted.
    #[error("secret field `{field}` could not be decrypted: {source}")]
    FieldDecryption {
        /// Name of the credential field.
        field: String,
        /// Why decryption failed.
        #[source]
        source: Box<SecretsError>,
    },

    /// Stored system OAuth parameters are shorter than IV + one AES block.
    #[error("system OAuth params ciphertext too short: {0} bytes (at least 32 needed)")]
    SystemOAuthTooShort(usize),

    /// AES-CBC decryption or PKCS#7 unpadding failed.
    #[error(
        "system OAuth params could not be decrypted: wrong SECRET_KEY or corrupted data \
         (they must be decrypted with the SECRET_KEY they were encrypted with)"
    )]
    SystemOAuthDecryption,

    /// AES-CBC encryption failed inside aws-lc-rs.
    #[error("system OAuth params could not be encrypted")]
    SystemOAuthEncryption,

    /// The decrypted system OAuth parameters are not a JSON object.
    #[error("decrypted system OAuth params are not a JSON object: {0}")]
    SystemOAuthNotObject(String),
}

/// Why a signed tool-file URL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The `sign` parameter does not match the file id, timestamp and nonce (tampered, or another secret key).
    #[error("invalid signature: the URL was altered or signed with a different SECRET_KEY")]
    BadSignature,

    /// The signature is authentic but older than the access timeout.
    #[error("signed URL expired {age_secs} s after signing (allowed: {timeout_secs} s); request a fresh URL")]
    Expired {
        /// Seconds between signing and verification.
        age_secs: u64,
        /// The configured timeout.
        timeout_secs: u64,
    },

    /// The authentic `timestamp` parameter is not a non-negative integer.
    #[error("the `timestamp` parameter is not a Unix time in seconds")]
    MalformedTimestamp,
}

/// Result alias for this crate.
pub type Result<T, E = SecretsError> = std::result::Result<T, E>;
