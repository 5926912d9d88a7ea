//! Newline framing of the plugin protocol, shared by stdio and TCP.
//!
//! Plugins end each JSON object with `\n\n` (the SDK writes the JSON and the blank line separately, so the two can
//! arrive in different reads), log lines with a single `\n`, and the handshake of a remote plugin with a single `\n`.
//! A reader therefore splits on `\n`, skips blank lines, keeps a partial last line until the rest arrives, and bounds
//! the length of one line so a runaway plugin cannot make the host buffer without limit.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// How many leading bytes of an over-long line are kept, enough to find its `session_id`.
const TOO_LONG_PREFIX: usize = 512;

/// The read buffer of one connection. A pipe delivers at most 64 KiB per read, but plugin frames are mostly a few
/// hundred bytes and a daemon holds one reader per running plugin: 16 KiB keeps 100 plugins at 1.6 MB of buffers
/// (64 KiB made 6.4 MB) while a long line still takes only a few more reads per 64 KiB.
const READ_BUFFER: usize = 16 * 1024;

/// A line buffer that grew beyond this (a large tool output) is released after use instead of being kept for the
/// life of the connection; ordinary frames never reach it, so the hot path does not reallocate.
const KEEP_LINE_CAPACITY: usize = 64 * 1024;

/// One frame: a non-blank line without its `\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line (at the end of the stream, also an unterminated last line).
    Line(&'a [u8]),
    /// A line longer than the limit was skipped; these are its first bytes.
    TooLong(&'a [u8]),
}

/// Reads [`Frame`]s from a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    max_line: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of lines up to `max_line` bytes.
    pub fn new(reader: R, max_line: usize) -> Self {
        Self {
            reader: BufReader::with_capacity(READ_BUFFER, reader),
            line: Vec::new(),
            max_line,
        }
    }

    /// The longest line accepted.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The next non-blank line; `Ok(None)` at the end of the stream.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame<'_>>> {
        if self.line.capacity() > KEEP_LINE_CAPACITY {
            // The previous frame was huge; give its memory back rather than holding it while the plugin idles.
            self.line = Vec::new();
        }
        self.line.clear();
        let mut overflow = false;
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                if overflow {
                    return Ok(Some(Frame::TooLong(&self.line)));
                }
                if self.line.trim_ascii().is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Frame::Line(&self.line)));
            }
            let (chunk, consumed, complete) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (&buf[..i], i + 1, true),
                None => (buf, buf.len(), false),
            };
            if !overflow {
                if self.line.len() + chunk.len() > self.max_line {
                    let keep = TOO_LONG_PREFIX.saturating_sub(self.line.len()).min(chunk.len());
                    self.line.extend_from_slice(&chunk[..keep]);
                    self.line.truncate(TOO_LONG_PREFIX);
                    overflow = true;
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            self.reader.consume(consumed);
            if complete {
                if overflow {
                    return Ok(Some(Frame::TooLong(&self.line)));
                }
                if self.line.trim_ascii().is_empty() {
                    self.line.clear();
                    continue;
                }
                return Ok(Some(Frame::Line(&self.line)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use super::*;

    /// Hands out the given pieces one `read` at a time, as a pipe or socket does with split writes.
    struct Pieces(VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(mut piece) = self.0.pop_front() {
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                if n < piece.len() {
                    self.0.push_front(piece.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    fn reader(pieces: &[&[u8]], max: usize) -> FrameReader<Pieces> {
        FrameReader::new(Pieces(pieces.iter().map(|p| p.to_vec()).collect()), max)
    }

    async fn all(mut r: FrameReader<Pieces>) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        while let Some(frame) = r.next().await.unwrap() {
            out.push(match frame {
                Frame::Line(l) => Ok(String::from_utf8_lossy(l).into_owned()),
                Frame::TooLong(p) => Err(String::from_utf8_lossy(p).into_owned()),
            });
        }
        out
    }

    #[tokio::test]
    async fn joins_split_writes() {
        let r = reader(&[b"{\"a\":", b"1}", b"\n", b"\n{\"b\"", b":2}\n\n"], 1024);
        assert_eq!(all(r).await, vec![Ok("{\"a\":1}".into()), Ok("{\"b\":2}".into())]);
    }

    #[tokio::test]
    async fn skips_blank_lines_and_double_newlines() {
        let r = reader(&[b"\n\n  \n{\"x\":1}\n\n\n\r\n{\"y\":2}\n\n"], 1024);
        assert_eq!(all(r).await, vec![Ok("{\"x\":1}".into()), Ok("{\"y\":2}".into())]);
    }

    #[tokio::test]
    async fn single_newline_handshake_then_double_newline_frames() {
        let r = reader(&[b"{\"type\":\"handshake\"}\n{\"type\":\"end\"}", b"\n", b"\n"], 1024);
        assert_eq!(
            all(r).await,
            vec![Ok("{\"type\":\"handshake\"}".into()), Ok("{\"type\":\"end\"}".into())]
        );
    }

    #[tokio::test]
    async fn keeps_a_prefix_of_over_long_lines_and_goes_on() {
        let long = format!("{{\"session_id\":\"s1\",\"data\":\"{}\"}}\n", "x".repeat(3000));
        let r = reader(
            &[&long.as_bytes()[..100], &long.as_bytes()[100..], b"{\"ok\":1}\n"],
            1024,
        );
        let frames = all(r).await;
        assert_eq!(frames.len(), 2);
        let Err(prefix) = &frames[0] else { panic!("{frames:?}") };
        assert!(
            prefix.starts_with("{\"session_id\":\"s1\"") && prefix.len() == TOO_LONG_PREFIX,
            "{prefix}"
        );
        assert_eq!(frames[1], Ok("{\"ok\":1}".into()));
    }

    #[tokio::test]
    async fn releases_the_buffer_of_a_huge_line() {
        let big = format!("{{\"data\":\"{}\"}}\n", "x".repeat(200 * 1024));
        let mut r = reader(&[big.as_bytes(), b"{\"ok\":1}\n"], 1 << 20);
        assert!(matches!(r.next().await.unwrap(), Some(Frame::Line(l)) if l.len() == big.len() - 1));
        assert!(r.line.capacity() > KEEP_LINE_CAPACITY);
        assert_eq!(r.next().await.unwrap(), Some(Frame::Line(b"{\"ok\":1}".as_slice())));
        assert!(r.line.capacity() <= KEEP_LINE_CAPACITY, "{}", r.line.capacity());
    }

    #[tokio::test]
    async fn delivers_an_unterminated_last_line() {
        let r = reader(&[b"{\"a\":1}\n{\"b\"", b":2}"], 1024);
        assert_eq!(all(r).await, vec![Ok("{\"a\":1}".into()), Ok("{\"b\":2}".into())]);
        assert!(all(reader(&[b"\n\n"], 16)).await.is_empty());
    }
}
