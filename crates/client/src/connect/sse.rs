//! A `text/event-stream` reader, sans I/O: the WHATWG HTML Standard's "interpreting an
//! event stream" (§9.2.6), for the downlink of `GET /sse` (`docs/transports.md`).
//!
//! Feed it the body's bytes as they come (after undoing any chunked coding), in pieces of
//! any size; take the events it completed.
//!
//! ```
//! use switchboard_client::connect::sse::EventParser;
//!
//! let mut parser = EventParser::new();
//! parser.feed(b"retry: 1000\n\nevent: session\nid: n-s:0\ndata: {\"session\"")?;
//! assert!(parser.next_event().is_none());
//! parser.feed(b":\"n-s\"}\n\n: ping\n\nid: n-s:1\ndata: {\"id\":1,\"result\":{}}\n\n")?;
//! let session = parser.next_event().expect("the session event");
//! assert_eq!((session.event.as_str(), &session.data[..]), ("session", &br#"{"session":"n-s"}"#[..]));
//! let reply = parser.next_event().expect("a message");
//! assert_eq!((reply.event.as_str(), reply.id.as_str()), ("message", "n-s:1"));
//! assert_eq!(parser.retry(), Some(std::time::Duration::from_millis(1000)));
//! # Ok::<(), switchboard_client::connect::sse::EventStreamError>(())
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// One dispatched event.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct SseEvent {
    /// The event type: the `event` field, `message` when there was none.
    pub event: String,
    /// The `data` fields, joined by line feeds.
    pub data: Bytes,
    /// The last event id when this event was dispatched (the `id` field of this event or
    /// of an earlier one).
    pub id: String,
}

/// A stream that breaks this reader's bounds.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EventStreamError {
    /// A line or an event's data grew past the bound.
    #[error("event larger than {0} bytes")]
    TooLarge(usize),
}

/// The event stream's state: the line being read, the event being built, the last event id
/// and the reconnection time, and the events completed but not yet taken.
#[derive(Clone, Debug)]
pub struct EventParser {
    line: BytesMut,
    data: BytesMut,
    event: String,
    last_id: String,
    retry: Option<Duration>,
    /// The previous byte was a CR: a LF right after it ends no second line.
    after_cr: bool,
    /// The first line is still to come (it may start with a byte order mark).
    first_line: bool,
    /// Comment lines seen (`: ping` keepalives).
    comments: u64,
    ready: VecDeque<SseEvent>,
    max: usize,
}

impl Default for EventParser {
    fn default() -> Self {
        Self::new()
    }
}

impl EventParser {
    /// A parser accepting lines and events of up to 16 MiB.
    pub fn new() -> Self {
        Self::with_max_size(DEFAULT_MAX)
    }

    /// A parser accepting lines and events of up to `max` bytes.
    pub fn with_max_size(max: usize) -> Self {
        Self {
            line: BytesMut::new(),
            data: BytesMut::new(),
            event: String::new(),
            last_id: String::new(),
            retry: None,
            after_cr: false,
            first_line: true,
            comments: 0,
            ready: VecDeque::new(),
            max,
        }
    }

    /// Reads `bytes`, the next piece of the stream; the events it completes are kept for
    /// [`next_event`](Self::next_event).
    ///
    /// # Errors
    ///
    /// [`EventStreamError::TooLarge`] for a line or an event past the bound.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), EventStreamError> {
        while !bytes.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                    continue;
                }
            }
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    self.push_line_bytes(&bytes[..end])?;
                    self.after_cr = bytes[end] == b'\r';
                    bytes = &bytes[end + 1..];
                    let line = self.line.split();
                    self.line_done(&line)?;
                }
                None => {
                    self.push_line_bytes(bytes)?;
                    bytes = &[];
                }
            }
        }
        Ok(())
    }

    /// The next completed event, in stream order.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    /// The last event id (the `Last-Event-ID` to send when reconnecting), empty when none.
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    /// The reconnection time the stream asked for with `retry`, if it did.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Comment lines read so far (the server's `: ping` keepalives among them).
    pub fn comments(&self) -> u64 {
        self.comments
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) -> Result<(), EventStreamError> {
        if self.line.len() + bytes.len() > self.max {
            return Err(EventStreamError::TooLarge(self.max));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_done(&mut self, mut line: &[u8]) -> Result<(), EventStreamError> {
        if std::mem::take(&mut self.first_line) {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch();
            return Ok(());
        }
        if line[0] == b':' {
            self.comments += 1;
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.event = String::from_utf8_lossy(value).into_owned(),
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max {
                    return Err(EventStreamError::TooLarge(self.max));
                }
                self.data.extend_from_slice(value);
                self.data.extend_from_slice(b"\n");
            }
            b"id" if !value.contains(&0) => {
                self.last_id = String::from_utf8_lossy(value).into_owned();
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let millis = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                self.retry = millis.map(Duration::from_millis);
            }
            // Unknown fields are ignored.
            _ => {}
        }
        Ok(())
    }

    /// An empty line: the event built so far is complete, unless it has no data.
    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = self.data.split();
        data.truncate(data.len() - 1);
        let event = if event.is_empty() { "message".to_owned() } else { event };
        self.ready.push_back(SseEvent { event, data: data.freeze(), id: self.last_id.clone() });
    }
}

/// UTF-8's byte order mark, skipped at the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";
/// The default bound of a line and of an event's data.
const DEFAULT_MAX: usize = 16 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn events(parser: &mut EventParser) -> Vec<(String, String, String)> {
        std::iter::from_fn(|| parser.next_event())
            .map(|e| (e.event, String::from_utf8(e.data.to_vec()).expect("utf-8"), e.id))
            .collect()
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBFretry: 1000\r\n\r\nevent: session\r\nid: n-s:0\r\n\
        data: {\"session\":\"n-s\"}\r\n\r\n: ping\r\n\r\nid: n-s:1\rdata: {\"id\":1,\r\
        data:\"result\":{}}\r\rid: n-s:2\ndata: {\"push\":\"publication\"}\n\n\
        data: no end";

    fn want() -> Vec<(String, String, String)> {
        let e = |t: &str, d: &str, i: &str| (t.to_owned(), d.to_owned(), i.to_owned());
        vec![
            e("session", "{\"session\":\"n-s\"}", "n-s:0"),
            e("message", "{\"id\":1,\n\"result\":{}}", "n-s:1"),
            e("message", "{\"push\":\"publication\"}", "n-s:2"),
        ]
    }

    #[test]
    fn stream_split_at_every_byte_gives_the_same_events() {
        for a in 0..=STREAM.len() {
            for b in a..=STREAM.len() {
                let mut parser = EventParser::new();
                for piece in [&STREAM[..a], &STREAM[a..b], &STREAM[b..]] {
                    parser.feed(piece).expect("valid");
                }
                assert_eq!(events(&mut parser), want(), "cut at {a} and {b}");
                assert_eq!(parser.last_event_id(), "n-s:2");
                assert_eq!(parser.retry(), Some(Duration::from_millis(1000)));
                assert_eq!(parser.comments(), 1);
            }
        }
    }

    #[test]
    fn stream_fed_byte_by_byte_gives_the_same_events() {
        let mut parser = EventParser::new();
        for byte in STREAM {
            parser.feed(std::slice::from_ref(byte)).expect("valid");
        }
        assert_eq!(events(&mut parser), want());
    }

    #[test]
    fn fields_follow_the_standard() {
        let mut parser = EventParser::new();
        // No space after the colon, a field without a colon, unknown fields, a bad retry,
        // an id with NUL (ignored), an event with no data (not dispatched, id kept).
        parser
            .feed(b"data:a\ndata\nfoo: bar\nretry: 5x\nid: a\0b\n\nid: 7\nevent: x\n\ndata: b\n\n")
            .expect("valid");
        assert_eq!(
            events(&mut parser),
            vec![
                ("message".to_owned(), "a\n".to_owned(), String::new()),
                ("message".to_owned(), "b".to_owned(), "7".to_owned()),
            ]
        );
        assert_eq!(parser.retry(), None);
    }

    #[test]
    fn oversized_lines_and_events_are_refused() {
        let mut parser = EventParser::with_max_size(8);
        assert!(parser.feed(b"data: 0123456789").is_err());
        let mut parser = EventParser::with_max_size(8);
        assert!(parser.feed(b"data:0123\ndata:4567\n").is_err());
    }
}
