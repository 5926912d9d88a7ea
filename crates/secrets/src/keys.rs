//! Tenant RSA key pairs: generation, PEM import and export.
//!
//! Dify generates one RSA-2048 key pair per tenant with PyCryptodome and stores the private key as a PKCS#1 PEM
//! (`-----BEGIN RSA PRIVATE KEY-----`) and the public key as an X.509 SubjectPublicKeyInfo PEM
//! (`-----BEGIN PUBLIC KEY-----`), 64-column lines, `\n` line endings and no trailing newline. We write exactly
//! that, so a Dify installation can read keys generated here, and we read PKCS#1 and PKCS#8 private keys as well as
//! SPKI and PKCS#1 public keys.
//!
//! All RSA work is done by aws-lc-rs (the `rsa` crate is ruled out for decryption by RUSTSEC-2023-0071).
//! aws-lc-rs' `PrivateDecryptingKey` speaks PKCS#8 only, so PKCS#1 is bridged like this:
//! - reading: `rsa::KeyPair::from_der` parses PKCS#1 `RSAPrivateKey` and re-exports it as PKCS#8, which
//!   `PrivateDecryptingKey::from_pkcs8` accepts — no hand-written parsing of key material;
//! - writing: the PKCS#8 `PrivateKeyInfo` that aws-lc-rs emits is a SEQUENCE whose OCTET STRING holds the PKCS#1
//!   `RSAPrivateKey` verbatim, so [`pkcs1_from_pkcs8`] unwraps it with a few lines of DER walking.
//!
//! Public keys go through `rsa::PublicKey::from_der`, which accepts both PKCS#1 and SPKI, and are stored as SPKI.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};

use crate::error::{Result, SecretsError};

const PKCS1_PRIVATE_LABEL: &str = "RSA PRIVATE KEY";
const PKCS8_PRIVATE_LABEL: &str = "PRIVATE KEY";
const SPKI_PUBLIC_LABEL: &str = "PUBLIC KEY";
const PKCS1_PUBLIC_LABEL: &str = "RSA PUBLIC KEY";

/// A freshly generated tenant key pair in Dify's PEM formats.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPairPem {
    /// PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`). Secret: store it like a password.
    pub private_pem: String,
    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`), what Dify keeps in `tenants.encrypt_public_key`.
    pub public_pem: String,
}

impl fmt::Debug for KeyPairPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPairPem")
            .field("private_pem", &"<redacted>")
            .field("public_pem", &self.public_pem)
            .finish()
    }
}

/// Generates a new RSA-2048 tenant key pair and returns it as Dify-style PEM text.
pub fn generate_key_pair() -> Result<KeyPairPem> {
    let key = PrivateKey::generate()?;
    Ok(KeyPairPem {
        private_pem: key.to_pkcs1_pem()?,
        public_pem: key.public_key().to_spki_pem()?,
    })
}

/// An RSA private key ready for OAEP decryption. Parse it once with [`PrivateKey::from_pem`] and reuse it.
///
/// Cloning is cheap: aws-lc-rs keys are reference counted.
#[derive(Clone)]
pub struct PrivateKey {
    key: PrivateDecryptingKey,
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("bits", &self.key.key_size_bits())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a new RSA-2048 key.
    pub fn generate() -> Result<Self> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048)
            .map_err(|_| SecretsError::KeyGeneration("aws-lc-rs could not generate an RSA-2048 key"))?;
        Ok(Self::from_decrypting_key(key))
    }

    /// Parses a PEM private key: PKCS#1 (`RSA PRIVATE KEY`, what Dify writes) or PKCS#8 (`PRIVATE KEY`).
    ///
    /// Passphrase-protected keys are rejected. Key sizes from 2048 to 8192 bits are accepted.
    pub fn from_pem(pem_text: &str) -> Result<Self> {
        let block = parse_pem(pem_text).map_err(SecretsError::PrivateKeyPem)?;
        let key = match block.tag() {
            PKCS1_PRIVATE_LABEL => {
                let pkcs8 = KeyPair::from_der(block.contents())
                    .map_err(|e| private_rejected("PKCS#1", &e))?
                    .as_der()
                    .map_err(|_| SecretsError::PrivateKeyPem("the PKCS#1 key could not be re-encoded".into()))?;
                PrivateDecryptingKey::from_pkcs8(pkcs8.as_ref()).map_err(|e| private_rejected("PKCS#1", &e))?
            }
            PKCS8_PRIVATE_LABEL => {
                PrivateDecryptingKey::from_pkcs8(block.contents()).map_err(|e| private_rejected("PKCS#8", &e))?
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(SecretsError::PrivateKeyPem(
                    "passphrase-protected keys are not supported; export the key without a passphrase".into(),
                ));
            }
            other => {
                return Err(SecretsError::PrivateKeyPem(format!(
                    "expected a `{PKCS1_PRIVATE_LABEL}` (PKCS#1) or `{PKCS8_PRIVATE_LABEL}` (PKCS#8) block, \
                     found `{other}`"
                )));
            }
        };
        Ok(Self::from_decrypting_key(key))
    }

    fn from_decrypting_key(key: PrivateDecryptingKey) -> Self {
        let public = PublicKey { key: key.public_key() };
        Self { key, public }
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Size of the modulus in bytes (256 for RSA-2048); also the size of every RSA ciphertext.
    pub fn modulus_len(&self) -> usize {
        self.key.key_size_bytes()
    }

    /// Exports the key as a PKCS#1 PEM exactly as PyCryptodome's `export_key()` formats it.
    pub fn to_pkcs1_pem(&self) -> Result<String> {
        let pkcs8 = self
            .key
            .as_der()
            .map_err(|_| SecretsError::KeyGeneration("the private key could not be serialised"))?;
        let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref()).ok_or(SecretsError::KeyGeneration(
            "aws-lc-rs produced an unexpected PKCS#8 layout",
        ))?;
        Ok(encode_pem(PKCS1_PRIVATE_LABEL, pkcs1))
    }

    /// Exports the key as a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pkcs8_pem(&self) -> Result<String> {
        let pkcs8 = self
            .key
            .as_der()
            .map_err(|_| SecretsError::KeyGeneration("the private key could not be serialised"))?;
        Ok(encode_pem(PKCS8_PRIVATE_LABEL, pkcs8.as_ref()))
    }

    /// RSA-OAEP (SHA-1, MGF1-SHA-1, no label) decryption of one modulus-sized block.
    pub(crate) fn oaep_decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>> {
        // The OAEP wrapper only holds a reference-counted handle to the key, so building it per call is cheap.
        let oaep = OaepPrivateDecryptingKey::new(self.key.clone()).map_err(|_| SecretsError::RsaDecryption)?;
        let mut out = vec![0u8; oaep.min_output_size()];
        let plain = oaep
            .decrypt(&OAEP_SHA1_MGF1SHA1, ciphertext, &mut out, None)
            .map_err(|_| SecretsError::RsaDecryption)?;
        let len = plain.len();
        out.truncate(len);
        Ok(out)
    }
}

/// An RSA public key ready for OAEP encryption. Parse it once with [`PublicKey::from_pem`] and reuse it.
///
/// Cloning is cheap: aws-lc-rs keys are reference counted.
#[derive(Clone)]
pub struct PublicKey {
    key: PublicEncryptingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.key.key_size_bits())
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Parses a PEM public key: SPKI (`PUBLIC KEY`, what Dify writes) or PKCS#1 (`RSA PUBLIC KEY`).
    pub fn from_pem(pem_text: &str) -> Result<Self> {
        let block = parse_pem(pem_text).map_err(SecretsError::PublicKeyPem)?;
        let key = match block.tag() {
            SPKI_PUBLIC_LABEL => {
                PublicEncryptingKey::from_der(block.contents()).map_err(|e| public_rejected("SPKI", &e))?
            }
            PKCS1_PUBLIC_LABEL => {
                // `rsa::PublicKey::from_der` understands PKCS#1 `RSAPublicKey`; re-encode it as SPKI, the only form
                // `PublicEncryptingKey` reads.
                let spki = aws_lc_rs::rsa::PublicKey::from_der(block.contents())
                    .map_err(|e| public_rejected("PKCS#1", &e))?
                    .as_der()
                    .map_err(|_| SecretsError::PublicKeyPem("the PKCS#1 key could not be re-encoded".into()))?;
                PublicEncryptingKey::from_der(spki.as_ref()).map_err(|e| public_rejected("PKCS#1", &e))?
            }
            other => {
                return Err(SecretsError::PublicKeyPem(format!(
                    "expected a `{SPKI_PUBLIC_LABEL}` (SPKI) or `{PKCS1_PUBLIC_LABEL}` (PKCS#1) block, found `{other}`"
                )));
            }
        };
        Ok(Self { key })
    }

    /// Size of the modulus in bytes (256 for RSA-2048).
    pub fn modulus_len(&self) -> usize {
        self.key.key_size_bytes()
    }

    /// Exports the key as an SPKI PEM exactly as PyCryptodome's `publickey().export_key()` formats it.
    pub fn to_spki_pem(&self) -> Result<String> {
        let spki = self
            .key
            .as_der()
            .map_err(|_| SecretsError::KeyGeneration("the public key could not be serialised"))?;
        Ok(encode_pem(SPKI_PUBLIC_LABEL, spki.as_ref()))
    }

    /// RSA-OAEP (SHA-1, MGF1-SHA-1, no label) encryption of a short value (at most `modulus_len() - 42` bytes).
    pub(crate) fn oaep_encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let oaep = OaepPublicEncryptingKey::new(self.key.clone())
            .map_err(|_| SecretsError::Encryption("the public key cannot be used for RSA-OAEP"))?;
        let mut out = vec![0u8; oaep.ciphertext_size()];
        let len = oaep
            .encrypt(&OAEP_SHA1_MGF1SHA1, plaintext, &mut out, None)
            .map_err(|_| SecretsError::Encryption("RSA-OAEP rejected the input (too long for the key?)"))?
            .len();
        out.truncate(len);
        Ok(out)
    }
}

fn private_rejected(format: &str, e: &KeyRejected) -> SecretsError {
    SecretsError::PrivateKeyPem(format!("aws-lc-rs rejected the {format} RSA key ({e})"))
}

fn public_rejected(format: &str, e: &KeyRejected) -> SecretsError {
    SecretsError::PublicKeyPem(format!("aws-lc-rs rejected the {format} RSA key ({e})"))
}

/// Parses the first PEM block; the error text never echoes the input.
fn parse_pem(text: &str) -> std::result::Result<pem::Pem, String> {
    let block = pem::parse(text.trim()).map_err(|e| {
        let problem = match e {
            pem::PemError::MismatchedTags(..) => "BEGIN and END labels differ",
            pem::PemError::MalformedFraming | pem::PemError::MissingBeginTag | pem::PemError::MissingEndTag => {
                "no `-----BEGIN ...-----` / `-----END ...-----` block found"
            }
            pem::PemError::MissingData => "the PEM block is empty",
            pem::PemError::InvalidData(_) => "the PEM body is not valid base64",
            pem::PemError::InvalidHeader(_) => "a PEM header line is malformed",
            pem::PemError::NotUtf8(_) => "the PEM text is not UTF-8",
        };
        problem.to_owned()
    })?;
    if block.headers().get("Proc-Type").is_some() || block.headers().get("DEK-Info").is_some() {
        return Err("passphrase-protected keys are not supported; export the key without a passphrase".into());
    }
    Ok(block)
}

/// PEM text the way PyCryptodome writes it: 64-column base64, `\n` line endings, no newline after the END line.
fn encode_pem(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let mut text = pem::encode_config(&pem::Pem::new(label, der), config);
    if text.ends_with('\n') {
        text.pop();
    }
    text
}

/// Extracts the PKCS#1 `RSAPrivateKey` from a PKCS#8 v1 `PrivateKeyInfo`:
///
/// ```text
/// PrivateKeyInfo ::= SEQUENCE { version INTEGER (0), algorithm AlgorithmIdentifier, privateKey OCTET STRING, ... }
/// ```
///
/// Returns `None` if the input does not have that shape.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;

    let (info, trailing) = der_element(pkcs8, SEQUENCE)?;
    if !trailing.is_empty() {
        return None;
    }
    let (version, rest) = der_element(info, INTEGER)?;
    if version != [0] {
        return None;
    }
    let (_algorithm, rest) = der_element(rest, SEQUENCE)?;
    let (private_key, _attributes) = der_element(rest, OCTET_STRING)?;
    Some(private_key)
}

/// Reads one DER element with the expected tag; returns its contents and the bytes after it.
fn der_element(input: &[u8], expected_tag: u8) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag != expected_tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low 7 bits count the big-endian length bytes that follow (at most 4 here).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(count);
        let len = len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_element_reads_short_and_long_lengths() {
        assert_eq!(
            der_element(&[0x02, 0x01, 0x00, 0xff], 0x02),
            Some((&[0x00][..], &[0xff][..]))
        );
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        let (content, rest) = der_element(&long, 0x04).unwrap();
        assert_eq!(content.len(), 256);
        assert!(rest.is_empty());
    }

    #[test]
    fn der_element_rejects_bad_input() {
        assert_eq!(der_element(&[], 0x30), None);
        assert_eq!(der_element(&[0x31, 0x00], 0x30), None, "wrong tag");
        assert_eq!(der_element(&[0x30, 0x05, 0x00], 0x30), None, "length beyond input");
        assert_eq!(der_element(&[0x30, 0x80], 0x30), None, "indefinite length is not DER");
        assert_eq!(
            der_element(&[0x30, 0x85, 1, 1, 1, 1, 1], 0x30),
            None,
            "absurd length-of-length"
        );
    }

    #[test]
    fn pkcs1_from_pkcs8_round_trips_through_aws_lc() {
        let key = PrivateKey::generate().unwrap();
        let pkcs8 = key.key.as_der().unwrap();
        let pkcs1 = pkcs1_from_pkcs8(pkcs8.as_ref()).unwrap();
        // aws-lc-rs must read the unwrapped bytes as PKCS#1 and re-export the identical PKCS#8.
        let again = KeyPair::from_der(pkcs1).unwrap().as_der().unwrap();
        assert_eq!(again.as_ref(), pkcs8.as_ref());
        assert_eq!(pkcs1_from_pkcs8(pkcs1), None, "PKCS#1 is not PKCS#8");
    }
}
