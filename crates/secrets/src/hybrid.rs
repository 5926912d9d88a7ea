//! Dify's hybrid RSA + AES-EAX encryption of credential values.
//!
//! Format (Dify `libs/rsa.py`, base64'd by `core/helper/encrypter.py`):
//!
//! ```text
//! base64( b"HYBRID:" || RSA-OAEP-SHA1(aes_key)[modulus_len] || nonce[16] || tag[16] || AES-EAX(ciphertext) )
//! ```
//!
//! with a fresh random 16-byte AES key and 16-byte nonce per value, no associated data, and OAEP using SHA-1 for
//! both the hash and MGF1 (PyCryptodome's `PKCS1_OAEP` defaults). Values written before the hybrid scheme are plain
//! RSA-OAEP ciphertexts without the prefix; [`PrivateKey::decrypt`] reads both.

use aes::{Aes128, Aes192, Aes256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use eax::Eax;
use eax::aead::consts::U16;
use eax::aead::{AeadCore, AeadInOut, KeyInit};

use crate::error::{Result, SecretsError};
use crate::keys::{PrivateKey, PublicKey};

/// Marks a hybrid ciphertext; values without it are legacy pure RSA-OAEP.
pub const HYBRID_PREFIX: &[u8] = b"HYBRID:";

const AES_KEY_LEN: usize = 16;
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 16;

impl PublicKey {
    /// Encrypts `plaintext` in Dify's HYBRID format and returns it base64-encoded (standard alphabet, padded),
    /// ready to store in a credentials column.
    pub fn encrypt(&self, plaintext: &str) -> Result<String> {
        Ok(STANDARD.encode(self.encrypt_to_bytes(plaintext.as_bytes())?))
    }

    /// Encrypts raw bytes in the HYBRID format, without the outer base64.
    pub fn encrypt_to_bytes(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut aes_key = [0u8; AES_KEY_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut aes_key).map_err(|_| SecretsError::Random)?;
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SecretsError::Random)?;

        let mut body = plaintext.to_vec();
        let tag = Eax::<Aes128>::new(&aes_key.into())
            .encrypt_inout_detached(&nonce.into(), &[], body.as_mut_slice().into())
            // EAX refuses messages beyond 2^36 bytes; no credential comes close.
            .map_err(|_| SecretsError::Encryption("the value is too large for AES-EAX"))?;
        let wrapped_key = self.oaep_encrypt(&aes_key)?;

        let mut out = Vec::with_capacity(HYBRID_PREFIX.len() + wrapped_key.len() + NONCE_LEN + TAG_LEN + body.len());
        out.extend_from_slice(HYBRID_PREFIX);
        out.extend_from_slice(&wrapped_key);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&tag);
        out.extend_from_slice(&body);
        Ok(out)
    }
}

impl PrivateKey {
    /// Decrypts a base64 token written by Dify or by [`PublicKey::encrypt`]: the HYBRID format or a legacy pure
    /// RSA-OAEP value. Surrounding whitespace is ignored.
    pub fn decrypt(&self, token_b64: &str) -> Result<String> {
        let data = STANDARD
            .decode(token_b64.trim())
            .map_err(|_| SecretsError::InvalidBase64)?;
        String::from_utf8(self.decrypt_bytes(&data)?).map_err(|_| SecretsError::NotUtf8)
    }

    /// Decrypts already base64-decoded bytes (HYBRID or legacy) to raw bytes.
    pub fn decrypt_bytes(&self, data: &[u8]) -> Result<Vec<u8>> {
        let Some(rest) = data.strip_prefix(HYBRID_PREFIX) else {
            return self.oaep_decrypt(data);
        };
        let key_len = self.modulus_len();
        let min = HYBRID_PREFIX.len() + key_len + NONCE_LEN + TAG_LEN;
        if data.len() < min {
            return Err(SecretsError::HybridTooShort { len: data.len(), min });
        }
        let (wrapped_key, rest) = rest.split_at(key_len);
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (tag, ciphertext) = rest.split_at(TAG_LEN);

        let aes_key = self.oaep_decrypt(wrapped_key)?;
        let mut body = ciphertext.to_vec();
        // Dify always wraps a 16-byte key; PyCryptodome would also accept AES-192/256 keys here, so we do too.
        match aes_key.len() {
            16 => eax_open::<Eax<Aes128>>(&aes_key, nonce, tag, &mut body)?,
            24 => eax_open::<Eax<Aes192>>(&aes_key, nonce, tag, &mut body)?,
            32 => eax_open::<Eax<Aes256>>(&aes_key, nonce, tag, &mut body)?,
            other => return Err(SecretsError::InvalidAesKeyLength(other)),
        }
        Ok(body)
    }
}

/// Verifies the EAX tag and decrypts `body` in place.
fn eax_open<A>(key: &[u8], nonce: &[u8], tag: &[u8], body: &mut [u8]) -> Result<()>
where
    A: KeyInit + AeadInOut + AeadCore<NonceSize = U16, TagSize = U16>,
{
    let cipher = A::new_from_slice(key).map_err(|_| SecretsError::InvalidAesKeyLength(key.len()))?;
    // The caller split `nonce` and `tag` at 16 bytes, so these conversions cannot fail; map defensively anyway.
    let nonce = eax::aead::Nonce::<A>::try_from(nonce).map_err(|_| SecretsError::AuthenticationFailed)?;
    let tag = eax::aead::Tag::<A>::try_from(tag).map_err(|_| SecretsError::AuthenticationFailed)?;
    cipher
        .decrypt_inout_detached(&nonce, &[], body.into(), &tag)
        .map_err(|_| SecretsError::AuthenticationFailed)
}

/// Encrypts `plaintext` for the holder of `public_pem` (parses the key each call; prefer [`PublicKey::encrypt`]).
pub fn encrypt(public_pem: &str, plaintext: &str) -> Result<String> {
    PublicKey::from_pem(public_pem)?.encrypt(plaintext)
}

/// Decrypts a base64 token with `private_pem` (parses the key each call; prefer [`PrivateKey::decrypt`]).
pub fn decrypt(private_pem: &str, token_b64: &str) -> Result<String> {
    PrivateKey::from_pem(private_pem)?.decrypt(token_b64)
}
