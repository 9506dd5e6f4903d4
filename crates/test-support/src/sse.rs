//! A reader of `text/event-stream` responses over a raw socket, for the SSE transport's
//! tests: it sends one request, decodes the chunked body as it arrives and parses it into
//! events (WHATWG HTML, "Server-sent events", §9.2.6); and one-line helpers for the
//! long-polling transport and `POST /session`.

use std::collections::VecDeque;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use serde_json::Value;

use crate::http::{LIMIT, Response, request};

/// One event of a stream.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Event {
    /// The `event:` field; `None` for a default (`message`) event.
    pub event: Option<String>,
    /// The `id:` field of this event, if it had one.
    pub id: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

impl Event {
    /// The data parsed as JSON.
    ///
    /// # Panics
    ///
    /// When the data is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// An open event stream.
#[derive(Debug)]
pub struct EventStream {
    stream: TcpStream,
    /// The status code of the response.
    pub status: u16,
    /// The response head.
    pub head: String,
    raw: Vec<u8>,
    chunked: bool,
    body: Vec<u8>,
    events: VecDeque<Event>,
    /// Comment lines (`: …`) seen so far.
    pub comments: usize,
    /// Whether the body has ended.
    pub ended: bool,
}

impl EventStream {
    /// Sends `GET path` with `headers` to `addr` and reads the response head.
    ///
    /// # Panics
    ///
    /// When the connection or the head fail, or take longer than [`LIMIT`].
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let opened = async {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(request.as_bytes()).await.expect("write the request");
            let mut raw = Vec::new();
            let end = loop {
                if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).await.expect("read the head");
                assert!(n > 0, "connection closed before the head: {raw:?}");
                raw.extend_from_slice(&buf[..n]);
            };
            let head = String::from_utf8(raw[..end].to_vec()).expect("a UTF-8 head");
            raw.drain(..end + 4);
            (stream, head, raw)
        };
        let (stream, head, raw) =
            tokio::time::timeout(LIMIT, opened).await.expect("a head in time");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        let mut this = Self {
            stream,
            status,
            head,
            raw,
            chunked,
            body: Vec::new(),
            events: VecDeque::new(),
            comments: 0,
            ended: false,
        };
        this.decode();
        this
    }

    /// The value of header `name` (matched without regard to case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The next event, waiting for it; `None` once the stream ended without one.
    ///
    /// # Panics
    ///
    /// When nothing comes within [`LIMIT`].
    pub async fn next(&mut self) -> Option<Event> {
        tokio::time::timeout(LIMIT, self.next_unbounded()).await.expect("an event in time")
    }

    /// The next event whose data is a protocol message (not the `session` event), as JSON.
    ///
    /// # Panics
    ///
    /// When the stream ends or nothing comes within [`LIMIT`].
    pub async fn next_json(&mut self) -> serde_json::Value {
        self.next().await.expect("an event before the end").json()
    }

    async fn next_unbounded(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            let mut buf = [0u8; 16 * 1024];
            let n = self.stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                self.ended = true;
            }
            self.raw.extend_from_slice(&buf[..n]);
            self.decode();
        }
    }

    /// Waits until a comment line arrives (a heartbeat).
    ///
    /// # Panics
    ///
    /// When the stream ends or none comes within [`LIMIT`].
    pub async fn wait_for_comment(&mut self) {
        let seen = self.comments;
        let waited = async {
            while self.comments == seen {
                let mut buf = [0u8; 4096];
                let n = self.stream.read(&mut buf).await.unwrap_or(0);
                assert!(n > 0, "the stream ended before a comment");
                self.raw.extend_from_slice(&buf[..n]);
                self.decode();
            }
        };
        tokio::time::timeout(LIMIT, waited).await.expect("a comment in time");
    }

    /// Moves the chunked framing's content to `body`, then whole events to `events`.
    fn decode(&mut self) {
        if self.chunked {
            while let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") {
                let size_text = String::from_utf8_lossy(&self.raw[..line_end]).to_string();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .unwrap_or_else(|_| panic!("a chunk size, not {size_text:?}"));
                if size == 0 {
                    self.ended = true;
                    self.raw.clear();
                    break;
                }
                if self.raw.len() < line_end + 2 + size + 2 {
                    break;
                }
                let start = line_end + 2;
                self.body.extend_from_slice(&self.raw[start..start + size]);
                self.raw.drain(..start + size + 2);
            }
        } else {
            self.body.append(&mut self.raw);
        }
        while let Some(end) = self.body.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.body.drain(..end + 2).collect();
            let text = String::from_utf8(block).expect("UTF-8 events");
            let mut event = Event::default();
            let mut data = Vec::new();
            for line in text.lines() {
                if line.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.event = Some(value.to_owned()),
                    "id" => event.id = Some(value.to_owned()),
                    "data" => data.push(value.to_owned()),
                    _ => {}
                }
            }
            // A block without data (`retry:` alone) dispatches nothing.
            if !data.is_empty() {
                event.data = data.join("\n");
                self.events.push_back(event);
            }
        }
    }
}

/// `POST /session` with `body` for `session`.
pub async fn post(addr: SocketAddr, session: &str, body: &str) -> Response {
    request(addr, "POST", "/session", &[("Switchboard-Session", session)], body).await
}

/// Opens a long-polling session; its id.
///
/// # Panics
///
/// When the server does not open one.
pub async fn open_poll(addr: SocketAddr) -> String {
    let opened = request(addr, "POST", "/poll", &[], "").await;
    assert_eq!(opened.status, 200, "{opened}");
    let body = opened.json();
    assert_eq!(body["transport"], "longpoll", "{opened}");
    body["session"].as_str().expect("a session id").to_owned()
}

/// One poll: the first message's number and the messages.
///
/// # Panics
///
/// When the answer is not a batch.
pub async fn poll(addr: SocketAddr, session: &str, ack: u64) -> (u64, Vec<Value>) {
    let answer =
        request(addr, "GET", &format!("/poll?ack={ack}"), &[("Switchboard-Session", session)], "")
            .await;
    assert_eq!(answer.status, 200, "{answer}");
    assert_eq!(answer.header("cache-control"), Some("no-store"), "{answer}");
    let body = answer.json();
    let seq = body["seq"].as_u64().expect("seq");
    let messages = body["messages"].as_array().expect("messages").clone();
    (seq, messages)
}

/// Polls until `count` messages after `ack` arrived; the messages, and the new ack.
///
/// # Panics
///
/// When a poll fails.
pub async fn poll_messages(
    addr: SocketAddr,
    session: &str,
    mut ack: u64,
    count: usize,
) -> (Vec<Value>, u64) {
    let mut got = Vec::new();
    while got.len() < count {
        let (seq, messages) = poll(addr, session, ack).await;
        for (i, message) in messages.into_iter().enumerate() {
            let n = seq + i as u64;
            if n > ack {
                got.push(message);
                ack = n;
            }
        }
    }
    (got, ack)
}

/// Opens an SSE stream; the stream and its session id, from the first event.
///
/// # Panics
///
/// When the answer is not an event stream starting with a `session` event.
pub async fn open_sse(addr: SocketAddr, headers: &[(&str, &str)]) -> (EventStream, String) {
    let mut stream = EventStream::open(addr, "/sse", headers).await;
    assert_eq!(stream.status, 200, "{}", stream.head);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("cache-control"), Some("no-store"));
    let first = stream.next().await.expect("the session event");
    assert_eq!(first.event.as_deref(), Some("session"), "{first:?}");
    let data = first.json();
    let session = data["session"].as_str().expect("a session id").to_owned();
    assert_eq!(first.id, Some(format!("{session}:0")));
    assert_eq!(data["transport"], "sse");
    (stream, session)
}
