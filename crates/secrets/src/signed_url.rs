//! Expiring HMAC-signed URLs for tool files (Dify `core/tools/signature.py`).
//!
//! ```text
//! {base}/files/tools/{file_id}{extension}?timestamp={unix}&nonce={32 hex}&sign={sig}
//! sig = urlsafe_base64_with_padding( HMAC-SHA256(SECRET_KEY, "file-preview|{file_id}|{timestamp}|{nonce}") )
//! ```
//!
//! A URL is valid while `now - timestamp <= timeout` (Dify's `FILES_ACCESS_TIMEOUT`, 300 s by default).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;

use crate::error::{Result, SecretsError, SignatureError};

/// Dify's default `FILES_ACCESS_TIMEOUT` in seconds.
pub const DEFAULT_FILES_ACCESS_TIMEOUT_SECS: u64 = 300;

const NONCE_LEN: usize = 16;

/// Signs and verifies tool-file URLs with the deployment's `SECRET_KEY`.
#[derive(Clone)]
pub struct FileSigner {
    key: hmac::Key,
}

impl fmt::Debug for FileSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSigner").finish_non_exhaustive()
    }
}

impl FileSigner {
    /// Creates a signer from the `SECRET_KEY` shared with the Dify API (its UTF-8 bytes are the HMAC key).
    pub fn new(secret_key: impl AsRef<[u8]>) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret_key.as_ref()),
        }
    }

    /// Signs a URL for the tool file `file_id` (a UUID) valid from now, with a fresh random nonce.
    ///
    /// `extension` includes its leading dot (`".png"`). `base_url` is Dify's `FILES_URL` (may be empty for a
    /// relative URL); a trailing `/` is dropped so the path never doubles it.
    pub fn sign_tool_file(&self, base_url: &str, file_id: &str, extension: &str) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SecretsError::Random)?;
        Ok(self.sign_tool_file_with(base_url, file_id, extension, unix_now(), &hex::encode(nonce)))
    }

    /// Like [`FileSigner::sign_tool_file`] with a caller-chosen timestamp and nonce (deterministic; for tests and
    /// for reproducing a known URL).
    pub fn sign_tool_file_with(
        &self,
        base_url: &str,
        file_id: &str,
        extension: &str,
        timestamp: u64,
        nonce: &str,
    ) -> String {
        let timestamp = timestamp.to_string();
        let sign = self.signature(file_id, &timestamp, nonce);
        let base = base_url.trim_end_matches('/');
        format!("{base}/files/tools/{file_id}{extension}?timestamp={timestamp}&nonce={nonce}&sign={sign}")
    }

    /// The `sign` parameter for the given query values.
    pub fn signature(&self, file_id: &str, timestamp: &str, nonce: &str) -> String {
        let message = format!("file-preview|{file_id}|{timestamp}|{nonce}");
        URL_SAFE.encode(hmac::sign(&self.key, message.as_bytes()))
    }

    /// Checks the query parameters of a tool-file URL at time `now` (Unix seconds).
    ///
    /// `timestamp`, `nonce` and `sign` are the raw query values. Like Dify, the signature is compared as the exact
    /// string (in constant time) first, so [`SignatureError::Expired`] is only reported for authentic URLs; then
    /// the URL must satisfy `now - timestamp <= timeout_secs`.
    pub fn verify_tool_file(
        &self,
        file_id: &str,
        timestamp: &str,
        nonce: &str,
        sign: &str,
        now: u64,
        timeout_secs: u64,
    ) -> Result<(), SignatureError> {
        let expected = self.signature(file_id, timestamp, nonce);
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), sign.as_bytes())
            .map_err(|_| SignatureError::BadSignature)?;
        let signed_at: u64 = timestamp.parse().map_err(|_| SignatureError::MalformedTimestamp)?;
        let age_secs = now.saturating_sub(signed_at);
        if age_secs > timeout_secs {
            return Err(SignatureError::Expired { age_secs, timeout_secs });
        }
        Ok(())
    }

    /// [`FileSigner::verify_tool_file`] against the system clock.
    pub fn verify_tool_file_now(
        &self,
        file_id: &str,
        timestamp: &str,
        nonce: &str,
        sign: &str,
        timeout_secs: u64,
    ) -> Result<(), SignatureError> {
        self.verify_tool_file(file_id, timestamp, nonce, sign, unix_now(), timeout_secs)
    }
}

/// Seconds since the Unix epoch; a clock set before 1970 reads as 0 (URLs then look freshly signed, never
/// wrongly expired).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b9c7a43-5c1e-4f4e-9f3a-1f2d3c4b5a69";

    fn query(url: &str) -> (String, String, String) {
        let q = url.split_once('?').unwrap().1;
        let get = |name: &str| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap()
                .to_owned()
        };
        (get("timestamp"), get("nonce"), get("sign"))
    }

    #[test]
    fn signed_url_has_dify_shape_and_verifies() {
        let signer = FileSigner::new("secret");
        let url = signer.sign_tool_file("https://files.example.com/", ID, ".png").unwrap();
        assert!(url.starts_with(&format!("https://files.example.com/files/tools/{ID}.png?timestamp=")));
        let (ts, nonce, sign) = query(&url);
        assert_eq!(nonce.len(), 32);
        assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(sign.len(), 44, "32-byte HMAC as padded base64");
        assert!(sign.ends_with('='));
        let now: u64 = ts.parse().unwrap();
        signer.verify_tool_file(ID, &ts, &nonce, &sign, now, 300).unwrap();
        signer.verify_tool_file_now(ID, &ts, &nonce, &sign, 300).unwrap();
    }

    #[test]
    fn expiry_is_inclusive_and_distinguishable() {
        let signer = FileSigner::new("secret");
        let sign = signer.signature(ID, "1000", "ab");
        assert_eq!(signer.verify_tool_file(ID, "1000", "ab", &sign, 1300, 300), Ok(()));
        assert_eq!(
            signer.verify_tool_file(ID, "1000", "ab", &sign, 900, 300),
            Ok(()),
            "future timestamps pass"
        );
        assert_eq!(
            signer.verify_tool_file(ID, "1000", "ab", &sign, 1301, 300),
            Err(SignatureError::Expired {
                age_secs: 301,
                timeout_secs: 300
            })
        );
    }

    #[test]
    fn tampering_is_rejected() {
        let signer = FileSigner::new("secret");
        let sign = signer.signature(ID, "1000", "ab");
        let bad = Err(SignatureError::BadSignature);
        assert_eq!(signer.verify_tool_file("other-id", "1000", "ab", &sign, 1000, 300), bad);
        assert_eq!(signer.verify_tool_file(ID, "1001", "ab", &sign, 1000, 300), bad);
        assert_eq!(signer.verify_tool_file(ID, "1000", "ac", &sign, 1000, 300), bad);
        assert_eq!(
            signer.verify_tool_file(ID, "1000", "ab", sign.trim_end_matches('='), 1000, 300),
            bad
        );
        assert_eq!(
            FileSigner::new("other").verify_tool_file(ID, "1000", "ab", &sign, 1000, 300),
            bad
        );
        // An expired *forged* URL reports the forgery, not the expiry.
        assert_eq!(signer.verify_tool_file(ID, "1", "ab", &sign, 100_000, 300), bad);
    }

    #[test]
    fn malformed_timestamp_with_valid_signature() {
        let signer = FileSigner::new("secret");
        let sign = signer.signature(ID, "soon", "ab");
        assert_eq!(
            signer.verify_tool_file(ID, "soon", "ab", &sign, 0, 300),
            Err(SignatureError::MalformedTimestamp)
        );
    }
}
