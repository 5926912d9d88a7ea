//! Secrets for toolplane, wire-compatible with Dify.
//!
//! This crate owns everything that turns a secret into something storable or shareable and back:
//!
//! - **Tenant key pairs** ([`generate_key_pair`], [`PrivateKey`], [`PublicKey`]): RSA-2048, PEM in Dify's formats
//!   (PKCS#1 private, SPKI public); PKCS#8 private and PKCS#1 public PEMs are read too.
//! - **Hybrid encryption** ([`PublicKey::encrypt`], [`PrivateKey::decrypt`], [`encrypt`], [`decrypt`]): Dify's
//!   `HYBRID:` format (RSA-OAEP-SHA1 wrapped AES-128-EAX), base64; legacy pure RSA-OAEP values are decrypted too.
//! - **Credential maps** ([`mask_credentials`], [`merge_hidden`], [`encrypt_fields`], [`decrypt_fields`]):
//!   masking for display, `[__HIDDEN__]` merging on update, field-wise encryption of secret fields.
//! - **Signed tool-file URLs** ([`FileSigner`]): HMAC-SHA256, expiring.
//! - **System OAuth client params** ([`encrypt_system_oauth_params`], [`decrypt_system_oauth_params`]):
//!   AES-256-CBC under `SHA-256(SECRET_KEY)`.
//!
//! All public-key and symmetric primitives come from aws-lc-rs except AES-EAX (`eax` + `aes`), which aws-lc-rs does
//! not offer. Error messages never contain plaintext, ciphertext or key material, and key types redact themselves in
//! `Debug`.
//!
//! ```
//! # fn main() -> Result<(), toolplane_secrets::SecretsError> {
//! use toolplane_secrets::{PrivateKey, PublicKey, generate_key_pair};
//!
//! let pair = generate_key_pair()?;
//! let public = PublicKey::from_pem(&pair.public_pem)?;
//! let private = PrivateKey::from_pem(&pair.private_pem)?;
//! let token = public.encrypt("sk-live-123")?;
//! assert_eq!(private.decrypt(&token)?, "sk-live-123");
//! # Ok(())
//! # }
//! ```

mod error;
mod hybrid;
mod keys;
mod mask;
mod signed_url;
mod system_oauth;

pub use error::{Result, SecretsError, SignatureError};
pub use hybrid::{HYBRID_PREFIX, decrypt, encrypt};
pub use keys::{KeyPairPem, PrivateKey, PublicKey, generate_key_pair};
pub use mask::{
    Credentials, HIDDEN_VALUE, UNKNOWN_VALUE, decrypt_fields, encrypt_fields, mask_credentials, mask_secret,
    merge_hidden,
};
pub use signed_url::{DEFAULT_FILES_ACCESS_TIMEOUT_SECS, FileSigner};
pub use system_oauth::{decrypt_system_oauth_params, encrypt_system_oauth_params};
