//! Forwarding backwards calls to Dify's inner API (`DIFY_INNER_API_URL`, `X-Inner-Api-Key`).
//!
//! The inner API is the operator-configured address of Dify's API server (typically a private address such as
//! `http://api:5001` inside a compose network). It is a control channel between two parts of the same deployment,
//! like the database URL, not a request a tool makes on a user's behalf, so it deliberately does not go through
//! `toolplane_net::SafeClient` (whose SSRF guard would refuse exactly those private addresses). It gets its own
//! reqwest client (rustls) that never follows redirects, so the key is only ever sent to the configured origin.
//!
//! Replies are either one JSON object `{"data": …, "error": ""}` or a stream of items in Dify's length-prefixed
//! frames (`libs/helper.py length_prefixed_response`):
//!
//! ```text
//! [magic 0x0F][reserved 1 B][header length u16 LE (10)][data length u32 LE][reserved 6 B][data]
//! ```
//!
//! where the header length counts the bytes between it and the data. Older Dify versions answer with lines
//! (`data: {…}` or bare JSON per line); those are accepted too.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use thiserror::Error;

/// The frame magic Dify uses for plugin backwards invocations.
pub const FRAME_MAGIC: u8 = 0x0F;
/// The largest frame accepted (the original's `RESPONSE_MAX_BUFFER_SIZE`, 30 MiB).
pub const MAX_FRAME_BYTES: usize = 30 * 1024 * 1024;

/// The inner API cannot be set up.
#[derive(Debug, Error)]
pub enum InnerApiError {
    /// The URL is not usable.
    #[error("DIFY_INNER_API_URL `{0}` is not an http:// or https:// URL; set it to the Dify API server's address")]
    Url(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for DIFY_INNER_API_URL: {0}")]
    Client(String),
}

/// A client of Dify's `/inner/api/…` routes.
pub struct DifyInnerApi {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl std::fmt::Debug for DifyInnerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        f.debug_struct("DifyInnerApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl DifyInnerApi {
    /// A client for `base_url` (`DIFY_INNER_API_URL`) sending `key` (`DIFY_INNER_API_KEY`); a reply that stays
    /// silent for `read_timeout` fails.
    pub fn new(base_url: &str, key: &str, read_timeout: Duration) -> Result<Self, InnerApiError> {
        let base = base_url.trim().trim_end_matches('/').to_owned();
        let lower = base.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) || base.len() <= "https://".len() {
            return Err(InnerApiError::Url(base_url.to_owned()));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| InnerApiError::Client(e.to_string()))?;
        Ok(Self {
            client,
            base,
            key: key.to_owned(),
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST {base}/inner/api/{path}` with `body`; the items of the reply (each `data`, or the `error` as `Err`).
    pub async fn call(&self, path: &str, body: &Value) -> Result<BoxStream<'static, Result<Value, String>>, String> {
        let url = format!("{}/inner/api/{}", self.base, path.trim_start_matches('/'));
        let response = self
            .client
            .post(&url)
            .header("X-Inner-Api-Key", &self.key)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach Dify's inner API at {url}: {}", error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let tail: String = text.chars().take(512).collect();
            return Err(format!("Dify's inner API answered {status} for {path}: {tail}"));
        }
        let json_reply = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
        let mut bytes = response.bytes_stream();
        if json_reply {
            // One answer (framed or not, possibly pretty-printed): read it whole, bounded.
            let mut body = Vec::new();
            while let Some(chunk) = bytes.next().await {
                let chunk =
                    chunk.map_err(|e| format!("the reply from Dify's inner API broke off: {}", error_chain(&e)))?;
                if body.len() + chunk.len() > MAX_FRAME_BYTES + 16 {
                    return Err(format!(
                        "Dify's inner API sent a reply larger than {MAX_FRAME_BYTES} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            let items: Vec<Result<Value, String>> = match body.trim_ascii_start().first() {
                Some(&FRAME_MAGIC) => {
                    let mut decoder = Decoder::default();
                    decoder.push(&body);
                    decoder.finish();
                    std::iter::from_fn(|| decoder.next_item()).collect()
                }
                Some(_) => vec![parse_item(&body)],
                None => Vec::new(),
            };
            return Ok(futures::stream::iter(items).boxed());
        }
        let state = (bytes, Decoder::default(), false);
        Ok(
            futures::stream::unfold(state, |(mut bytes, mut decoder, mut done)| async move {
                loop {
                    if let Some(item) = decoder.next_item() {
                        return Some((item, (bytes, decoder, done)));
                    }
                    if done {
                        return None;
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => decoder.push(&chunk),
                        Some(Err(e)) => {
                            done = true;
                            decoder.fail(format!(
                                "the reply from Dify's inner API broke off: {}",
                                error_chain(&e)
                            ));
                        }
                        None => {
                            done = true;
                            decoder.finish();
                        }
                    }
                }
            })
            .boxed(),
        )
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    #[default]
    Unknown,
    Frames,
    Lines,
    Failed,
}

/// Splits a reply body into items, whatever its framing.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    buf: Vec<u8>,
    mode: Mode,
    ended: bool,
    pending_error: Option<String>,
}

impl Decoder {
    /// Adds received bytes.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.mode != Mode::Failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The body is complete.
    pub(crate) fn finish(&mut self) {
        self.ended = true;
    }

    /// The body broke off with `message`.
    pub(crate) fn fail(&mut self, message: String) {
        self.ended = true;
        self.pending_error = Some(message);
    }

    fn failed(&mut self, message: String) -> Option<Result<Value, String>> {
        self.mode = Mode::Failed;
        self.buf.clear();
        Some(Err(message))
    }

    /// The next complete item, if any.
    pub(crate) fn next_item(&mut self) -> Option<Result<Value, String>> {
        if self.mode == Mode::Unknown {
            let start = self.buf.iter().position(|b| !b.is_ascii_whitespace());
            match start {
                Some(i) => {
                    self.buf.drain(..i);
                    self.mode = if self.buf[0] == FRAME_MAGIC {
                        Mode::Frames
                    } else {
                        Mode::Lines
                    };
                }
                None if self.ended => return self.pending_error.take().map(Err),
                None => return None,
            }
        }
        let item = match self.mode {
            Mode::Frames => self.next_frame(),
            Mode::Lines => self.next_line(),
            Mode::Unknown | Mode::Failed => None,
        };
        match item {
            Some(item) => Some(item),
            None if self.ended => self.pending_error.take().map(Err),
            None => None,
        }
    }

    fn next_frame(&mut self) -> Option<Result<Value, String>> {
        if self.buf.is_empty() {
            return None;
        }
        if self.buf[0] != FRAME_MAGIC {
            let byte = self.buf[0];
            return self.failed(format!(
                "Dify's inner API sent a frame with magic byte {byte:#04x}, expected {FRAME_MAGIC:#04x}"
            ));
        }
        if self.buf.len() < 4 {
            return self.truncated();
        }
        let header_len = usize::from(u16::from_le_bytes([self.buf[2], self.buf[3]]));
        if header_len < 4 {
            return self.failed(format!(
                "Dify's inner API sent a frame header of {header_len} bytes; at least 4 (the data length) are needed"
            ));
        }
        if self.buf.len() < 4 + header_len {
            return self.truncated();
        }
        let data_len = u32::from_le_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if data_len > MAX_FRAME_BYTES {
            return self.failed(format!(
                "Dify's inner API sent a frame of {data_len} bytes; at most {MAX_FRAME_BYTES} are accepted"
            ));
        }
        let start = 4 + header_len;
        if self.buf.len() < start + data_len {
            return self.truncated();
        }
        let item = parse_item(&self.buf[start..start + data_len]);
        self.buf.drain(..start + data_len);
        Some(item)
    }

    fn truncated(&mut self) -> Option<Result<Value, String>> {
        if self.ended && self.pending_error.is_none() {
            let have = self.buf.len();
            return self.failed(format!(
                "Dify's inner API ended in the middle of a frame ({have} bytes left over)"
            ));
        }
        None
    }

    fn next_line(&mut self) -> Option<Result<Value, String>> {
        loop {
            let line = match self.buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let line: Vec<u8> = self.buf.drain(..=i).collect();
                    line
                }
                None if self.ended && !self.buf.is_empty() => std::mem::take(&mut self.buf),
                None => {
                    if self.buf.len() > MAX_FRAME_BYTES {
                        return self.failed(format!(
                            "Dify's inner API sent a line longer than {MAX_FRAME_BYTES} bytes"
                        ));
                    }
                    return None;
                }
            };
            let text = line.trim_ascii();
            let text = text.strip_prefix(b"data:").map_or(text, <[u8]>::trim_ascii);
            if text.is_empty() || text.starts_with(b":") || text.starts_with(b"event:") {
                continue;
            }
            return Some(parse_item(text));
        }
    }
}

/// One `{"data": …, "error": ""}` item: its data, or its error.
fn parse_item(bytes: &[u8]) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(bytes.trim_ascii()).map_err(|e| {
        let shown: String = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        format!("Dify's inner API sent an item that is not JSON ({e}): {shown}")
    })?;
    match value {
        Value::Object(mut map) => {
            if let Some(error) = map.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
                return Err(error.to_owned());
            }
            match map.remove("data") {
                Some(data) => Ok(data),
                None => Ok(Value::Object(map)),
            }
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(data: &[u8]) -> Vec<u8> {
        let mut out = vec![FRAME_MAGIC, 0];
        out.extend_from_slice(&10u16.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(data);
        out
    }

    fn drain(decoder: &mut Decoder) -> Vec<Result<Value, String>> {
        std::iter::from_fn(|| decoder.next_item()).collect()
    }

    #[test]
    fn frames_split_anywhere_decode_in_order() {
        let mut body = frame(br#"{"data":{"n":1},"error":""}"#);
        body.extend(frame(b"{\"data\":{\"n\":2},\"error\":\"\"}\n\n"));
        body.extend(frame(br#"{"data":null,"error":"model quota exceeded"}"#));
        for split in [1, 3, 7, 13, 40] {
            let mut decoder = Decoder::default();
            let mut items = Vec::new();
            for piece in body.chunks(split) {
                decoder.push(piece);
                items.extend(drain(&mut decoder));
            }
            decoder.finish();
            items.extend(drain(&mut decoder));
            assert_eq!(
                items,
                vec![
                    Ok(json!({"n": 1})),
                    Ok(json!({"n": 2})),
                    Err("model quota exceeded".to_owned())
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn a_truncated_frame_and_a_bad_magic_are_errors() {
        let mut decoder = Decoder::default();
        let body = frame(br#"{"data":1,"error":""}"#);
        decoder.push(&body[..body.len() - 2]);
        assert_eq!(decoder.next_item(), None);
        decoder.finish();
        let err = decoder.next_item().unwrap().unwrap_err();
        assert!(err.contains("middle of a frame"), "{err}");

        let mut decoder = Decoder::default();
        let mut body = frame(br#"{"data":1,"error":""}"#);
        body.push(0x01);
        body.extend_from_slice(&[0; 20]);
        decoder.push(&body);
        assert_eq!(decoder.next_item(), Some(Ok(json!(1))));
        let err = decoder.next_item().unwrap().unwrap_err();
        assert!(err.contains("magic byte 0x01"), "{err}");
        assert_eq!(decoder.next_item(), None);
    }

    #[test]
    fn lines_and_plain_json_are_the_fallback() {
        let mut decoder = Decoder::default();
        decoder.push(b"data: {\"data\":{\"a\":1},\"error\":\"\"}\n\n{\"data\":{\"a\":2},\"error\":\"\"}\n");
        decoder.push(b"{\"data\":{\"a\":3},\"error\":\"\"}");
        decoder.finish();
        assert_eq!(
            drain(&mut decoder),
            vec![Ok(json!({"a": 1})), Ok(json!({"a": 2})), Ok(json!({"a": 3}))]
        );

        let mut decoder = Decoder::default();
        decoder.push(b"not json\n");
        decoder.finish();
        let err = decoder.next_item().unwrap().unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
    }

    #[test]
    fn the_key_is_not_in_debug_output_and_bad_urls_are_refused() {
        let api = DifyInnerApi::new("http://api:5001/", "very-secret", Duration::from_secs(5)).unwrap();
        assert_eq!(api.base_url(), "http://api:5001");
        assert!(!format!("{api:?}").contains("very-secret"));
        assert!(matches!(
            DifyInnerApi::new("api:5001", "k", Duration::from_secs(5)),
            Err(InnerApiError::Url(_))
        ));
    }
}
