//! System OAuth client parameters (Dify `utils/system_oauth_encryption.py`, table `tool_oauth_system_clients`).
//!
//! ```text
//! base64( iv[16] || AES-256-CBC-PKCS7( key = SHA-256(SECRET_KEY), iv, compact JSON of the params object ) )
//! ```
//!
//! Everything here runs on aws-lc-rs (SHA-256, AES-CBC with PKCS#7 padding, random IV).

use aws_lc_rs::cipher::{
    AES_256, AES_CBC_IV_LEN, DecryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::digest;
use aws_lc_rs::iv::FixedLength;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::error::{Result, SecretsError};

/// IV plus at least one AES block.
const MIN_DECODED_LEN: usize = 32;

/// Encrypts OAuth client parameters (`client_id`, `client_secret`, ...) with the deployment's `SECRET_KEY`.
///
/// The JSON is written compactly, non-ASCII unescaped and in insertion order — byte-for-byte what Dify's pydantic
/// `dump_json` produces for the same dict.
pub fn encrypt_system_oauth_params(secret_key: &str, params: &Map<String, Value>) -> Result<String> {
    let mut data = serde_json::to_vec(params).map_err(|_| SecretsError::SystemOAuthEncryption)?;
    let key = PaddedBlockEncryptingKey::cbc_pkcs7(cipher_key(secret_key)?)
        .map_err(|_| SecretsError::SystemOAuthEncryption)?;
    // `encrypt` draws a random IV from aws-lc-rs' CSPRNG and hands it back as the decryption context.
    let context = key
        .encrypt(&mut data)
        .map_err(|_| SecretsError::SystemOAuthEncryption)?;
    let iv: &[u8] = (&context).try_into().map_err(|_| SecretsError::SystemOAuthEncryption)?;

    let mut stored = Vec::with_capacity(iv.len() + data.len());
    stored.extend_from_slice(iv);
    stored.extend_from_slice(&data);
    Ok(STANDARD.encode(stored))
}

/// Decrypts stored system OAuth client parameters; they must decode to a JSON object.
pub fn decrypt_system_oauth_params(secret_key: &str, encrypted: &str) -> Result<Map<String, Value>> {
    let mut data = STANDARD
        .decode(encrypted.trim())
        .map_err(|_| SecretsError::InvalidBase64)?;
    if data.len() < MIN_DECODED_LEN {
        return Err(SecretsError::SystemOAuthTooShort(data.len()));
    }
    let (iv, body) = data.split_at_mut(AES_CBC_IV_LEN);
    let iv = FixedLength::<AES_CBC_IV_LEN>::try_from(&*iv).map_err(|_| SecretsError::SystemOAuthDecryption)?;
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(cipher_key(secret_key)?)
        .map_err(|_| SecretsError::SystemOAuthDecryption)?;
    let json = key
        .decrypt(body, DecryptionContext::Iv128(iv))
        .map_err(|_| SecretsError::SystemOAuthDecryption)?;
    match serde_json::from_slice::<Value>(json) {
        Ok(Value::Object(params)) => Ok(params),
        Ok(_) => Err(SecretsError::SystemOAuthNotObject(
            "it is valid JSON of another type".into(),
        )),
        Err(e) => Err(SecretsError::SystemOAuthNotObject(format!(
            "invalid JSON at line {}, column {}",
            e.line(),
            e.column()
        ))),
    }
}

/// AES-256 key = SHA-256 of the UTF-8 `SECRET_KEY`.
fn cipher_key(secret_key: &str) -> Result<UnboundCipherKey> {
    let key = digest::digest(&digest::SHA256, secret_key.as_bytes());
    // SHA-256 output is exactly the 32 bytes AES-256 needs, so this cannot fail in practice.
    UnboundCipherKey::new(&AES_256, key.as_ref()).map_err(|_| SecretsError::SystemOAuthEncryption)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn round_trip_and_random_iv() {
        let Value::Object(params) = json!({"client_id": "abc", "client_secret": "s3cr€t", "n": 1}) else {
            unreachable!()
        };
        let a = encrypt_system_oauth_params("key", &params).unwrap();
        let b = encrypt_system_oauth_params("key", &params).unwrap();
        assert_ne!(a, b, "each encryption uses a fresh IV");
        assert_eq!(decrypt_system_oauth_params("key", &a).unwrap(), params);
        assert_eq!(decrypt_system_oauth_params("key", &b).unwrap(), params);
    }

    #[test]
    fn wrong_key_or_garbage_fails_cleanly() {
        let Value::Object(params) = json!({"client_id": "abc"}) else {
            unreachable!()
        };
        let token = encrypt_system_oauth_params("key", &params).unwrap();
        // A wrong key almost always breaks the PKCS#7 padding; if the padding happens to survive, the JSON won't.
        let err = decrypt_system_oauth_params("other", &token).unwrap_err();
        assert!(matches!(
            err,
            SecretsError::SystemOAuthDecryption | SecretsError::SystemOAuthNotObject(_)
        ));
        assert!(matches!(
            decrypt_system_oauth_params("key", "AAAA").unwrap_err(),
            SecretsError::SystemOAuthTooShort(3)
        ));
        assert!(matches!(
            decrypt_system_oauth_params("key", "not base64!").unwrap_err(),
            SecretsError::InvalidBase64
        ));
        // 16-byte IV + 17 bytes: not a whole number of blocks.
        let ragged = STANDARD.encode([0u8; 33]);
        assert!(matches!(
            decrypt_system_oauth_params("key", &ragged).unwrap_err(),
            SecretsError::SystemOAuthDecryption
        ));
    }
}
