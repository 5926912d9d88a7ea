//! Expiring HMAC-signed URLs for tool files (Dify `core/tools/signature.py`).
//!
//! ```text
//! {base}/files/tools/{file_id}{extension}?timestamp={unix}&nonce={32 hex}&sign={sig}
//! sig = urlsafe_base64_with_padding( HMAC-SHA256(SECRET_KEY, "file-preview|{file_id}|{timestamp}|{nonce}") )
//! ```
//!
//! A URL is valid while `now - timestamp <= timeout` (Dify's `FILES_ACCESS_TIMEOUT`, 300 s by default).
//!
//! Plugin upload URLs (Dify `core/file/helpers.py get_signed_file_url_for_plugin`) bind one upload of a named file:
//!
//! ```text
//! {base}/files/upload/for-plugin?timestamp={unix}&nonce={32 hex}&sign={sig}&user_id={user}&tenant_id={tenant}
//! sig = urlsafe_base64_with_padding( HMAC-SHA256(SECRET_KEY, "upload|{filename}|{mimetype}|{tenant}|{user}|{timestamp}|{nonce}") )
//! ```

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

    /// A plugin upload URL for `filename` with `mimetype` by (`tenant_id`, `user_id`), valid from now.
    ///
    /// `base_url` is where the plugin reaches the files routes (Dify's `INTERNAL_FILES_URL`, else `FILES_URL`).
    pub fn sign_plugin_upload(
        &self,
        base_url: &str,
        filename: &str,
        mimetype: &str,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SecretsError::Random)?;
        let timestamp = unix_now().to_string();
        let nonce = hex::encode(nonce);
        let sign = self.upload_signature(filename, mimetype, tenant_id, user_id, &timestamp, &nonce);
        let base = base_url.trim_end_matches('/');
        // Dify writes the ids unencoded; they are UUIDs there. Encoding keeps any other id intact.
        let (user, tenant) = (query_escape(user_id), query_escape(tenant_id));
        Ok(format!(
            "{base}/files/upload/for-plugin?timestamp={timestamp}&nonce={nonce}&sign={sign}&user_id={user}&tenant_id={tenant}"
        ))
    }

    /// The `sign` parameter of a plugin upload URL.
    pub fn upload_signature(
        &self,
        filename: &str,
        mimetype: &str,
        tenant_id: &str,
        user_id: &str,
        timestamp: &str,
        nonce: &str,
    ) -> String {
        let message = format!("upload|{filename}|{mimetype}|{tenant_id}|{user_id}|{timestamp}|{nonce}");
        URL_SAFE.encode(hmac::sign(&self.key, message.as_bytes()))
    }

    /// Checks a plugin upload at time `now`: the file's name and type as uploaded, the ids and the query values.
    /// As for tool files, the signature is checked first, then `now - timestamp <= timeout_secs`.
    #[allow(clippy::too_many_arguments)] // The signed message has seven parts; a struct would only rename them.
    pub fn verify_plugin_upload(
        &self,
        filename: &str,
        mimetype: &str,
        tenant_id: &str,
        user_id: &str,
        timestamp: &str,
        nonce: &str,
        sign: &str,
        now: u64,
        timeout_secs: u64,
    ) -> Result<(), SignatureError> {
        let expected = self.upload_signature(filename, mimetype, tenant_id, user_id, timestamp, nonce);
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), sign.as_bytes())
            .map_err(|_| SignatureError::BadSignature)?;
        let signed_at: u64 = timestamp.parse().map_err(|_| SignatureError::MalformedTimestamp)?;
        let age_secs = now.saturating_sub(signed_at);
        if age_secs > timeout_secs {
            return Err(SignatureError::Expired { age_secs, timeout_secs });
        }
        Ok(())
    }

    /// The current Unix time in seconds, as the verifiers read it.
    pub fn now() -> u64 {
        unix_now()
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

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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
    fn plugin_upload_urls_match_dify() {
        let signer = FileSigner::new("secret");
        // Computed with Python's hmac/base64 the way Dify's helper does.
        assert_eq!(
            signer.upload_signature("report.csv", "text/csv", "tenant-1", "user-1", "1700000100", "0303"),
            "J-hC_X6ruPy44guLUxb7Q-caNpIUQrDX5Me3MNl1Vos="
        );
        let url = signer
            .sign_plugin_upload("http://files.internal/", "a.txt", "text/plain", "t-1", "u 1")
            .unwrap();
        assert!(
            url.starts_with("http://files.internal/files/upload/for-plugin?timestamp="),
            "{url}"
        );
        assert!(url.ends_with("&user_id=u%201&tenant_id=t-1"), "{url}");
        let (ts, nonce, sign) = query(&url);
        let now: u64 = ts.parse().unwrap();
        let verify = |name: &str, mime: &str, at: u64| {
            signer.verify_plugin_upload(name, mime, "t-1", "u 1", &ts, &nonce, &sign, at, 300)
        };
        assert_eq!(verify("a.txt", "text/plain", now), Ok(()));
        assert_eq!(verify("b.txt", "text/plain", now), Err(SignatureError::BadSignature));
        assert_eq!(verify("a.txt", "text/html", now), Err(SignatureError::BadSignature));
        assert!(matches!(
            verify("a.txt", "text/plain", now + 301),
            Err(SignatureError::Expired { .. })
        ));
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
