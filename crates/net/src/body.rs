//! Reading response bodies with a size cap.

use bytes::{Bytes, BytesMut};
use reqwest::Response;

use crate::error::{NetError, TimeoutPhase, redact};

/// Reads at most `limit` bytes of `response`'s body.
///
/// A `Content-Length` above the limit is refused before any body byte is read; otherwise the
/// body is streamed and refused as soon as it grows past the limit, so memory use stays bounded
/// by `limit` whatever the server sends. Read and total timeouts of the client keep applying.
pub async fn read_body_limited(mut response: Response, limit: u64) -> Result<Bytes, NetError> {
    let too_large = |response: &Response| NetError::ResponseTooLarge {
        url: redact(response.url()),
        limit,
    };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large(&response));
    }

    // Reserve what the server announced, but never trust it for more than 1 MiB up front.
    const MAX_PREALLOCATION: u64 = 1024 * 1024;
    let capacity = response.content_length().unwrap_or(0).min(limit).min(MAX_PREALLOCATION);
    // The capacity is at most 1 MiB, so it fits in usize on every supported platform.
    let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));

    while let Some(chunk) = response.chunk().await.map_err(|err| {
        match NetError::from_reqwest(err) {
            // reqwest reports timeouts while streaming the body without the body flag.
            NetError::Timeout { url, .. } => NetError::Timeout {
                url,
                phase: TimeoutPhase::Body,
            },
            other => other,
        }
    })? {
        let new_len = body.len() as u64 + chunk.len() as u64;
        if new_len > limit {
            return Err(too_large(&response));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
