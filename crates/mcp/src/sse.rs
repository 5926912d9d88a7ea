//! A small incremental parser for `text/event-stream` (the WHATWG server-sent events format), with a size cap.

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `event:`; `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// `id:`, if the event had one.
    pub id: Option<String>,
    /// `retry:` in milliseconds, if given.
    pub retry: Option<u64>,
}

/// The stream sent an event (or a line) larger than the parser's limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server-sent event larger than {limit} bytes; the MCP server sent an oversized message")]
pub struct SseTooLarge {
    /// The limit in bytes.
    pub limit: usize,
}

/// Feeds bytes in, takes complete events out. Handles `\n`, `\r\n` and `\r` line ends split across chunks.
#[derive(Debug)]
pub struct SseParser {
    buffer: Vec<u8>,
    current: SseEvent,
    has_data: bool,
    has_fields: bool,
    /// A `\r` ended the previous chunk; a following `\n` belongs to it.
    pending_cr: bool,
    limit: usize,
}

impl SseParser {
    /// A parser refusing events (and lines) over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buffer: Vec::new(),
            current: SseEvent::default(),
            has_data: false,
            has_fields: false,
            pending_cr: false,
            limit,
        }
    }

    /// Adds `chunk` and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseTooLarge> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.pending_cr {
            self.pending_cr = false;
            if let Some(b'\n') = rest.first() {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.buffer.extend_from_slice(&rest[..pos]);
            let line = std::mem::take(&mut self.buffer);
            if rest[pos] == b'\r' {
                match rest.get(pos + 1) {
                    Some(b'\n') => rest = &rest[pos + 2..],
                    Some(_) => rest = &rest[pos + 1..],
                    None => {
                        self.pending_cr = true;
                        rest = &[];
                    }
                }
            } else {
                rest = &rest[pos + 1..];
            }
            if let Some(event) = self.line(&line)? {
                events.push(event);
            }
        }
        self.buffer.extend_from_slice(rest);
        if self.buffer.len() > self.limit {
            return Err(SseTooLarge { limit: self.limit });
        }
        Ok(events)
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseTooLarge> {
        if line.is_empty() {
            if !self.has_fields {
                return Ok(None);
            }
            let mut event = std::mem::take(&mut self.current);
            self.has_data = false;
            self.has_fields = false;
            if event.event.is_empty() {
                event.event = "message".to_owned();
            }
            // Events without data still carry an id or a retry; callers skip empty data.
            return Ok(Some(event));
        }
        if line.first() == Some(&b':') {
            return Ok(None); // comment / keep-alive
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(i) => {
                let value = &text[i + 1..];
                (&text[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.current.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
                if self.current.data.len() > self.limit {
                    return Err(SseTooLarge { limit: self.limit });
                }
            }
            "id" if !value.contains('\0') => self.current.id = Some(value.to_owned()),
            "retry" => self.current.retry = value.parse().ok(),
            _ => return Ok(None),
        }
        self.has_fields = true;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_anywhere() {
        let stream = b"event: endpoint\r\ndata: /messages?x=1\r\n\r\n: keep-alive\n\nid: 7\ndata: {\"a\":\ndata: 1}\n\nretry: 3000\ndata:\n\n";
        for split in 0..stream.len() {
            let mut parser = SseParser::new(1024);
            let mut events = parser.feed(&stream[..split]).unwrap();
            events.extend(parser.feed(&stream[split..]).unwrap());
            assert_eq!(events.len(), 3, "split at {split}");
            assert_eq!(events[0].event, "endpoint");
            assert_eq!(events[0].data, "/messages?x=1");
            assert_eq!(events[1].event, "message");
            assert_eq!(events[1].data, "{\"a\":\n1}");
            assert_eq!(events[1].id.as_deref(), Some("7"));
            assert_eq!(events[2].retry, Some(3000));
            assert_eq!(events[2].data, "");
        }
    }

    #[test]
    fn refuses_oversized_events() {
        let mut parser = SseParser::new(16);
        assert!(parser.feed(b"data: 0123456789").is_ok());
        assert_eq!(parser.feed(b"abcdefghij").unwrap_err(), SseTooLarge { limit: 16 });
        let mut parser = SseParser::new(16);
        let err = parser.feed(b"data: 0123456789\ndata: 0123456789\n").unwrap_err();
        assert_eq!(err.limit, 16);
    }
}
