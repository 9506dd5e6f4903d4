//! HTTP/1.1 responses, sans I/O: the head, and the body's framing (RFC 9112 §6), chunked
//! transfer coding included (RFC 9112 §7.1). For the HTTP transports (`docs/transports.md`):
//! the event stream of `GET /sse`, the batches of `GET /poll`, the answers of
//! `POST /session`.
//!
//! ```
//! use bytes::BytesMut;
//! use switchboard_client::connect::http::{BodyDecoder, ResponseHead};
//!
//! let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
//!                                  5\r\nhello\r\n0\r\n\r\n"[..]);
//! let head = ResponseHead::parse(&mut buf)?.expect("a whole head");
//! assert_eq!(head.status, 200);
//! let mut body = BodyDecoder::new(head.framing);
//! let mut out = BytesMut::new();
//! assert!(body.decode(&mut buf, &mut out)?);
//! assert_eq!(&out[..], b"hello");
//! # Ok::<(), switchboard_client::connect::http::HttpError>(())
//! ```

use std::time::Duration;

use bytes::{Buf as _, BytesMut};

/// A response that breaks HTTP/1.1.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The status line or a header does not parse.
    #[error("malformed response head: {0}")]
    Head(String),
    /// The head is larger than this reader accepts.
    #[error("response head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// A chunk size line or a trailer does not parse, or a chunk lacks its CRLF.
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    /// The connection ended before the body did.
    #[error("connection closed inside the body")]
    Truncated,
}

/// How a response's body ends (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Framing {
    /// No body: `204`, `304`, `1xx`.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The header fields, names as sent.
    pub headers: Vec<(String, String)>,
    /// How the body ends.
    pub framing: Framing,
    /// Whether the connection may carry another request after this response
    /// (RFC 9112 §9.3): not after `Connection: close` or a body read to the close.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// Parses a response head at the start of `buf` and removes it; `None` until the whole
    /// head is there.
    ///
    /// # Errors
    ///
    /// [`HttpError::Head`] for a head that does not parse, [`HttpError::HeadTooLarge`] past
    /// 16 KiB without the end of the head.
    pub fn parse(buf: &mut BytesMut) -> Result<Option<Self>, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let used = match response.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(HttpError::HeadTooLarge(MAX_HEAD));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(HttpError::Head(e.to_string())),
        };
        let status = response.code.unwrap_or_default();
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).trim().to_owned()))
            .collect();
        buf.advance(used);
        let mut head = Self { status, headers, framing: Framing::UntilClose, keep_alive: true };
        let tokens = |name: &str| {
            head.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.split(','))
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        };
        let close = tokens("connection").iter().any(|t| t == "close");
        let chunked = tokens("transfer-encoding").last().is_some_and(|t| t == "chunked");
        let length = head.header("content-length").map(str::parse::<u64>);
        head.framing = if (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else {
            match length {
                Some(Ok(n)) => Framing::Length(n),
                Some(Err(_)) => return Err(HttpError::Head("bad Content-Length".to_owned())),
                None => Framing::UntilClose,
            }
        };
        head.keep_alive = !close && head.framing != Framing::UntilClose;
        Ok(Some(head))
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `Retry-After` in seconds (RFC 9110 §10.2.3; an HTTP date is ignored), at most a day.
    pub fn retry_after(&self) -> Option<Duration> {
        let secs = self.header("retry-after")?.parse::<u64>().ok()?;
        Some(Duration::from_secs(secs.min(86_400)))
    }
}

/// Takes a body's bytes out of what was read, undoing the chunked coding, and says when the
/// body is complete.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: State,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum State {
    /// `n` more bytes of a `Content-Length` body.
    Length(u64),
    /// Everything until the connection closes.
    UntilClose,
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// `n` more bytes of the current chunk.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer fields, up to an empty line.
    Trailers,
    Done,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// Moves the body bytes at the start of `input` to the end of `out`, leaving in `input`
    /// what follows the body (the next response on a kept-alive connection). Returns whether
    /// the body is complete.
    ///
    /// # Errors
    ///
    /// [`HttpError::Chunked`] for a malformed chunked coding.
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<bool, HttpError> {
        loop {
            match self.state {
                State::Done => return Ok(true),
                State::UntilClose => {
                    out.extend_from_slice(&input.split());
                    return Ok(false);
                }
                State::Length(left) | State::ChunkData(left) => {
                    if input.is_empty() {
                        return Ok(false);
                    }
                    let take = (input.len() as u64).min(left) as usize;
                    out.extend_from_slice(&input.split_to(take));
                    let left = left - take as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), n) => State::Length(n),
                        (_, 0) => State::ChunkEnd,
                        (_, n) => State::ChunkData(n),
                    };
                }
                State::ChunkEnd => {
                    let Some(line) = take_line(input)? else { return Ok(false) };
                    if !line.is_empty() {
                        return Err(HttpError::Chunked("chunk data longer than its size"));
                    }
                    self.state = State::ChunkSize;
                }
                State::ChunkSize => {
                    let Some(line) = take_line(input)? else { return Ok(false) };
                    // RFC 9112 §7.1.1: extensions after `;` are ignored.
                    let size = line[..].split(|&b| b == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(size).unwrap_or_default().trim();
                    if size.is_empty() || size.len() > 15 {
                        return Err(HttpError::Chunked("bad chunk size"));
                    }
                    let size = u64::from_str_radix(size, 16)
                        .map_err(|_| HttpError::Chunked("bad chunk size"))?;
                    self.state = if size == 0 { State::Trailers } else { State::ChunkData(size) };
                }
                State::Trailers => {
                    let Some(line) = take_line(input)? else { return Ok(false) };
                    if line.is_empty() {
                        self.state = State::Done;
                    }
                }
            }
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The connection ended: fine for a body read until the close, else
    /// [`HttpError::Truncated`].
    ///
    /// # Errors
    ///
    /// [`HttpError::Truncated`] when the body was not complete.
    pub fn finish(&mut self) -> Result<(), HttpError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(HttpError::Truncated),
        }
    }
}

/// Writes an HTTP/1.1 request head (and body) for `target` at `authority`, with `headers`
/// as given (the caller checks them for line breaks) and `Content-Length` when `body` is
/// some.
pub fn request(
    method: &str,
    authority: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(128 + body.map_or(0, <[u8]>::len));
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{method} {target} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if let Some(body) = body {
        let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One line (without CRLF, or a bare LF, RFC 9112 §2.2) from the start of `input`.
fn take_line(input: &mut BytesMut) -> Result<Option<BytesMut>, HttpError> {
    let Some(end) = input.iter().position(|&b| b == b'\n') else {
        if input.len() > MAX_LINE {
            return Err(HttpError::Chunked("line too long"));
        }
        return Ok(None);
    };
    let mut line = input.split_to(end + 1);
    line.truncate(end);
    if line.last() == Some(&b'\r') {
        line.truncate(end - 1);
    }
    Ok(Some(line))
}

/// Header fields read at most.
const MAX_HEADERS: usize = 64;
/// Longest response head accepted.
const MAX_HEAD: usize = 16 << 10;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> ResponseHead {
        ResponseHead::parse(&mut BytesMut::from(text)).expect("valid").expect("complete")
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let h = head("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h =
            head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\nConnection: keep-alive, Close\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(12), false));
        let h = head("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        assert_eq!(h.header("CONTENT-TYPE"), Some("text/event-stream"));
        let h = head("HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.retry_after(), Some(Duration::from_secs(3)));
        let mut partial = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Le");
        assert_eq!(ResponseHead::parse(&mut partial), Ok(None));
        assert!(
            ResponseHead::parse(&mut BytesMut::from(
                "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"
            ))
            .is_err()
        );
        assert!(ResponseHead::parse(&mut BytesMut::from("garbage\r\n\r\n")).is_err());
    }

    /// Decodes `wire` fed in pieces cut at `cuts`, returning the body, whether it completed
    /// and what was left after it.
    fn decode_cut(framing: Framing, wire: &[u8], cuts: &[usize]) -> (Vec<u8>, bool, Vec<u8>) {
        let mut decoder = BodyDecoder::new(framing);
        let mut input = BytesMut::new();
        let mut out = BytesMut::new();
        let mut done = false;
        let mut from = 0;
        for &to in cuts.iter().chain([wire.len()].iter()) {
            input.extend_from_slice(&wire[from..to]);
            from = to;
            done = decoder.decode(&mut input, &mut out).expect("valid");
        }
        (out.to_vec(), done, input.to_vec())
    }

    #[test]
    fn chunked_bodies_decode_split_at_every_byte() {
        let wire =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let want = b"Wikipedia in\r\n\r\nchunks.".to_vec();
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let (body, done, rest) = decode_cut(Framing::Chunked, wire, &[a, b]);
                assert_eq!((&body, done, &rest[..]), (&want, true, &b"NEXT"[..]), "cut {a} {b}");
            }
        }
    }

    #[test]
    fn chunked_bodies_accept_bare_lf_and_refuse_bad_sizes() {
        let (body, done, _) = decode_cut(Framing::Chunked, b"3\nabc\n0\n\n", &[]);
        assert_eq!((body, done), (b"abc".to_vec(), true));
        for bad in [&b"zz\r\n"[..], b"\r\n", b"3\r\nabcd\r\n", b"1234567890abcdef0\r\n"] {
            let mut input = BytesMut::from(bad);
            let result =
                BodyDecoder::new(Framing::Chunked).decode(&mut input, &mut BytesMut::new());
            assert!(result.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn length_bodies_stop_at_their_length_and_truncation_is_an_error() {
        let (body, done, rest) = decode_cut(Framing::Length(5), b"helloHTTP", &[2]);
        assert_eq!((body, done, rest), (b"hello".to_vec(), true, b"HTTP".to_vec()));
        let mut decoder = BodyDecoder::new(Framing::Length(5));
        decoder.decode(&mut BytesMut::from("hel"), &mut BytesMut::new()).expect("valid");
        assert_eq!(decoder.finish(), Err(HttpError::Truncated));
        let mut decoder = BodyDecoder::new(Framing::UntilClose);
        decoder.decode(&mut BytesMut::from("hel"), &mut BytesMut::new()).expect("valid");
        assert_eq!(decoder.finish(), Ok(()));
        assert!(BodyDecoder::new(Framing::Empty).is_done());
    }

    #[test]
    fn requests_carry_host_headers_and_length() {
        let r = request("POST", "h:1", "/session", &[("Switchboard-Session", "n-s")], Some(b"{}"));
        assert_eq!(
            r,
            b"POST /session HTTP/1.1\r\nHost: h:1\r\nSwitchboard-Session: n-s\r\n\
              Content-Length: 2\r\n\r\n{}"
                .to_vec()
        );
        assert_eq!(request("GET", "h", "/sse", &[], None), b"GET /sse HTTP/1.1\r\nHost: h\r\n\r\n");
    }
}
