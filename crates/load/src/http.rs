//! The HTTP transports, client side (`docs/transports.md`): a session's downlink as a
//! `GET /sse` event stream or as `GET /poll` batches, its commands by `POST /session`.
//!
//! Raw HTTP/1.1 over the same byte pipe as the WebSocket ([`Ws::plain`]), over TLS
//! (`https://`) when `--url` is `wss://`; the response framing (chunked coding included)
//! and the event-stream reader are `switchboard-client`'s. Every protocol message is handed over once, as the WebSocket
//! reader hands over a frame: a delivery is a parsed event or batch entry, never a count
//! of bytes. Only the switchboard protocol speaks these transports.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_client::connect::http::{BodyDecoder, ResponseHead, request};
use switchboard_client::connect::sse::EventParser;

use crate::args::Transport;
use crate::protocol::{Kind, classify_switchboard};
use crate::ws::{ConnError, Drained, Msg, Outbox, Step, Target, Ws};

/// One client connection over any transport: what a subscriber or a held connection reads.
#[derive(Debug)]
pub(crate) enum Conn {
    /// A WebSocket.
    Ws(Ws),
    /// An SSE session: its event stream.
    Sse(Sse),
    /// A long-polling session: its poll connection.
    Poll(Poll),
}

impl Conn {
    /// Opens a session over `transport` (never [`Transport::Ws`]: the caller opens those)
    /// and subscribes it to `channel` when given, returning once the subscription is
    /// acknowledged.
    pub(crate) async fn open_http(
        transport: Transport,
        target: Rc<Target>,
        local: Option<IpAddr>,
        channel: Option<&str>,
    ) -> Result<Self, ConnError> {
        let uplink = Uplink { target, local, session: String::new() };
        let mut conn = match transport {
            Transport::Sse => Conn::Sse(Sse::open(uplink).await?),
            Transport::Longpoll | Transport::Ws => Conn::Poll(Poll::open(uplink).await?),
        };
        if let Some(channel) = channel {
            let command = serde_json::json!({"id": 1, "type": "subscribe", "channel": channel});
            if let Some(uplink) = conn.uplink() {
                uplink.post(command.to_string().as_bytes()).await?;
            }
            loop {
                match conn.recv().await? {
                    Msg::Close(code) => return Err(ConnError::Closed(code)),
                    Msg::Data(data) => match classify_switchboard(&data) {
                        Kind::Ack => break,
                        Kind::Error(code) => {
                            return Err(crate::protocol::command_error("subscribe", channel, code));
                        }
                        Kind::Payload | Kind::Other => {}
                    },
                }
            }
        }
        Ok(conn)
    }

    fn uplink(&self) -> Option<&Uplink> {
        match self {
            Conn::Sse(sse) => Some(&sse.uplink),
            Conn::Poll(poll) => Some(&poll.uplink),
            Conn::Ws(_) => None,
        }
    }

    /// Waits until more bytes have been read.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe for a WebSocket and an SSE stream. A long-poll connection reopening after
    /// the server closed it starts over when cancelled.
    pub(crate) async fn fill(&mut self) -> Result<usize, ConnError> {
        match self {
            Conn::Ws(ws) => ws.fill().await,
            Conn::Sse(sse) => sse.io.fill().await,
            Conn::Poll(poll) => poll.fill().await,
        }
    }

    /// Writes what is queued (a WebSocket's close echo) as far as the socket takes it now.
    pub(crate) fn try_flush(&mut self) -> Result<(), ConnError> {
        match self {
            Conn::Ws(ws) => ws.try_flush(),
            Conn::Sse(_) | Conn::Poll(_) => Ok(()),
        }
    }

    /// Hands each complete protocol message already read to `handle`, as
    /// [`Ws::drain`] does.
    pub(crate) fn drain(
        &mut self,
        handle: impl FnMut(&[u8], &mut Outbox) -> Result<Step, ConnError>,
    ) -> Result<Drained, ConnError> {
        match self {
            Conn::Ws(ws) => ws.drain(handle),
            Conn::Sse(sse) => sse.drain(handle),
            Conn::Poll(poll) => poll.drain(handle),
        }
    }

    /// Reads until the next complete message, and copies it out.
    async fn recv(&mut self) -> Result<Msg, ConnError> {
        loop {
            let mut got = None;
            let drained = self.drain(|data, _| {
                got = Some(Bytes::copy_from_slice(data));
                Ok(Step::Stop)
            })?;
            match (drained, got) {
                (_, Some(data)) => return Ok(Msg::Data(data)),
                (Drained::Closed(code), None) => return Ok(Msg::Close(code)),
                _ => {
                    self.fill().await?;
                }
            }
        }
    }

    /// Ends the connection: the WebSocket close handshake, or the downlink dropped and the
    /// session ended with `DELETE /session` (at once, rather than after `session_timeout`),
    /// within `timeout`.
    pub(crate) async fn close(self, timeout: Duration) -> Result<(), ConnError> {
        let uplink = match self {
            Conn::Ws(ws) => return ws.close(timeout).await,
            Conn::Sse(sse) => sse.uplink,
            Conn::Poll(poll) => poll.uplink,
        };
        tokio::time::timeout(timeout, uplink.delete()).await.map_err(|_| ConnError::Timeout)?
    }
}

/// Where a session's one-off requests go: `POST /session`, `DELETE /session`.
#[derive(Debug)]
struct Uplink {
    target: Rc<Target>,
    local: Option<IpAddr>,
    session: String,
}

impl Uplink {
    /// `POST /session` with `body` (commands, one per line) on a connection of its own;
    /// the server answers 204 once it has taken them.
    async fn post(&self, body: &[u8]) -> Result<(), ConnError> {
        let headers = [("Content-Type", "text/plain"), ("Switchboard-Session", &self.session)];
        match self.exchange("POST", "/session", &headers, Some(body)).await?.0 {
            204 => Ok(()),
            status => Err(ConnError::Status(status)),
        }
    }

    /// `DELETE /session`: the session ends at once.
    async fn delete(&self) -> Result<(), ConnError> {
        let headers = [("Switchboard-Session", self.session.as_str())];
        match self.exchange("DELETE", "/session", &headers, None).await?.0 {
            204 | 404 => Ok(()),
            status => Err(ConnError::Status(status)),
        }
    }

    /// One request on a new connection, closed after the response: the status and body.
    async fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(u16, Bytes), ConnError> {
        let mut io = Ws::plain(self.target.connect(self.local).await?);
        let mut all: Vec<(&str, &str)> = vec![("Connection", "close")];
        all.extend(self.target.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        all.extend_from_slice(headers);
        let target = http_target(&self.target, path);
        io.queue_raw(&request(method, self.target.url.authority(), &target, &all, body));
        read_response(&mut io).await
    }
}

/// Reads one whole response from `io`: its status and body.
async fn read_response(io: &mut Ws) -> Result<(u16, Bytes), ConnError> {
    let head = read_head(io).await?;
    let mut decoder = BodyDecoder::new(head.framing);
    let mut body = BytesMut::new();
    loop {
        if decoder.decode(io.read_buf(), &mut body).map_err(|_| BAD_BODY)? {
            return Ok((head.status, body.freeze()));
        }
        if body.len() > MAX_BODY {
            return Err(ConnError::Protocol("response body too large"));
        }
        match io.fill().await {
            Err(ConnError::Eof) => {
                decoder.finish().map_err(|_| ConnError::Eof)?;
                return Ok((head.status, body.freeze()));
            }
            other => {
                other?;
            }
        }
    }
}

async fn read_head(io: &mut Ws) -> Result<ResponseHead, ConnError> {
    loop {
        match ResponseHead::parse(io.read_buf()) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {
                io.fill().await?;
            }
            Err(_) => return Err(ConnError::Protocol("bad HTTP response head")),
        }
    }
}

/// An SSE session's event stream (`GET /sse`).
#[derive(Debug)]
pub(crate) struct Sse {
    io: Ws,
    body: BodyDecoder,
    /// Body bytes decoded and not yet parsed.
    text: BytesMut,
    parser: EventParser,
    /// The body ended (after a `disconnect` push, say).
    ended: bool,
    /// The code of the `disconnect` push read, if one was.
    disconnect: Option<u16>,
    outbox: Outbox,
    uplink: Uplink,
}

impl Sse {
    /// Opens the stream and reads up to its `session` event.
    async fn open(uplink: Uplink) -> Result<Self, ConnError> {
        let target = &uplink.target;
        let mut io = Ws::plain(target.connect(uplink.local).await?);
        let mut headers: Vec<(&str, &str)> = vec![("Accept", "text/event-stream")];
        headers.extend(target.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let path = http_target(target, "/sse");
        io.queue_raw(&request("GET", target.url.authority(), &path, &headers, None));
        let head = read_head(&mut io).await?;
        if head.status != 200 {
            return Err(ConnError::Status(head.status));
        }
        let mut sse = Sse {
            io,
            body: BodyDecoder::new(head.framing),
            text: BytesMut::new(),
            parser: EventParser::with_max_size(MAX_BODY),
            ended: false,
            disconnect: None,
            outbox: Outbox::detached(),
            uplink,
        };
        loop {
            sse.decode()?;
            if let Some(event) = sse.parser.next_event() {
                if event.event != "session" {
                    return Err(ConnError::Protocol(
                        "the event stream did not open with a session",
                    ));
                }
                sse.uplink.session = session_id(&event.data)?;
                return Ok(sse);
            }
            if sse.ended {
                return Err(ConnError::Eof);
            }
            sse.io.fill().await?;
        }
    }

    /// Decodes and parses the bytes read so far.
    fn decode(&mut self) -> Result<(), ConnError> {
        if !self.ended && !self.io.read_buf().is_empty() {
            self.ended =
                self.body.decode(self.io.read_buf(), &mut self.text).map_err(|_| BAD_BODY)?;
            self.parser.feed(&self.text).map_err(|_| ConnError::Protocol("bad event stream"))?;
            self.text.clear();
        }
        Ok(())
    }

    fn drain(
        &mut self,
        mut handle: impl FnMut(&[u8], &mut Outbox) -> Result<Step, ConnError>,
    ) -> Result<Drained, ConnError> {
        self.decode()?;
        while let Some(event) = self.parser.next_event() {
            // Every event but the opening `session` one carries one protocol message.
            if event.event != "message" {
                continue;
            }
            if let Some(code) = disconnect_code(&event.data) {
                self.disconnect = Some(code);
            }
            if handle(&event.data, &mut self.outbox)? == Step::Stop {
                return Ok(Drained::Stopped);
            }
        }
        if self.ended || self.disconnect.is_some() {
            return Ok(Drained::Closed(self.disconnect));
        }
        Ok(Drained::Empty)
    }
}

/// A long-polling session's poll connection (`GET /poll`, kept alive), with one poll
/// always waiting.
#[derive(Debug)]
pub(crate) struct Poll {
    io: Ws,
    /// The number of the last message received: the next poll's `ack`.
    have: u64,
    /// The response being read, once its head is in.
    reading: Option<Reading>,
    /// The response's body so far.
    body: BytesMut,
    /// Messages received and not yet handed over.
    ready: VecDeque<Bytes>,
    /// The server closed the poll connection: open another before the next poll.
    reopen: bool,
    /// The read side reached the end of the stream while a body read to the close was
    /// under way.
    eof: bool,
    disconnect: Option<u16>,
    outbox: Outbox,
    uplink: Uplink,
}

#[derive(Debug)]
struct Reading {
    status: u16,
    decoder: BodyDecoder,
    keep_alive: bool,
}

/// A poll's answer (`docs/transports.md`, Polling).
#[derive(Deserialize)]
struct Batch<'a> {
    seq: u64,
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
}

impl Poll {
    /// Opens the session (`POST /poll`) on the connection that then carries the polls,
    /// and sends the first poll.
    async fn open(mut uplink: Uplink) -> Result<Self, ConnError> {
        let target = &uplink.target;
        let mut io = Ws::plain(target.connect(uplink.local).await?);
        let headers: Vec<(&str, &str)> =
            target.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let path = http_target(target, "/poll");
        io.queue_raw(&request("POST", target.url.authority(), &path, &headers, Some(b"")));
        let (status, body) = read_response(&mut io).await?;
        if status != 200 {
            return Err(ConnError::Status(status));
        }
        uplink.session = session_id(&body)?;
        let mut poll = Poll {
            io,
            have: 0,
            reading: None,
            body: BytesMut::new(),
            ready: VecDeque::new(),
            reopen: false,
            eof: false,
            disconnect: None,
            outbox: Outbox::detached(),
            uplink,
        };
        poll.queue_poll();
        Ok(poll)
    }

    fn queue_poll(&mut self) {
        let target = &self.uplink.target;
        let path = format!("/poll?ack={}", self.have);
        let mut headers: Vec<(&str, &str)> = vec![("Switchboard-Session", &self.uplink.session)];
        headers.extend(target.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        self.io.queue_raw(&request("GET", target.url.authority(), &path, &headers, None));
    }

    async fn fill(&mut self) -> Result<usize, ConnError> {
        if self.reopen {
            self.io = Ws::plain(self.uplink.target.connect(self.uplink.local).await?);
            self.reopen = false;
            self.queue_poll();
        }
        match self.io.fill().await {
            Err(ConnError::Eof) if self.reading.is_some() && !self.eof => {
                self.eof = true;
                Ok(0)
            }
            other => other,
        }
    }

    fn drain(
        &mut self,
        mut handle: impl FnMut(&[u8], &mut Outbox) -> Result<Step, ConnError>,
    ) -> Result<Drained, ConnError> {
        loop {
            while let Some(message) = self.ready.pop_front() {
                if let Some(code) = disconnect_code(&message) {
                    self.disconnect = Some(code);
                }
                if handle(&message, &mut self.outbox)? == Step::Stop {
                    return Ok(Drained::Stopped);
                }
            }
            if self.disconnect.is_some() {
                return Ok(Drained::Closed(self.disconnect));
            }
            if !self.take_response()? {
                return Ok(Drained::Empty);
            }
        }
    }

    /// Reads the poll's response as far as the bytes go; once it is whole, takes its new
    /// messages and sends the next poll. Whether a response was completed.
    fn take_response(&mut self) -> Result<bool, ConnError> {
        if self.reading.is_none() {
            let Some(head) = ResponseHead::parse(self.io.read_buf())
                .map_err(|_| ConnError::Protocol("bad HTTP response head"))?
            else {
                return Ok(false);
            };
            let decoder = BodyDecoder::new(head.framing);
            let keep_alive = head.keep_alive;
            self.reading = Some(Reading { status: head.status, decoder, keep_alive });
        }
        let Some(reading) = &mut self.reading else { return Ok(false) };
        let mut done =
            reading.decoder.decode(self.io.read_buf(), &mut self.body).map_err(|_| BAD_BODY)?;
        if !done && self.eof {
            reading.decoder.finish().map_err(|_| ConnError::Eof)?;
            done = true;
        }
        if !done {
            if self.body.len() > MAX_BODY {
                return Err(ConnError::Protocol("response body too large"));
            }
            return Ok(false);
        }
        let Some(Reading { status, keep_alive, .. }) = self.reading.take() else {
            return Ok(false);
        };
        let body = self.body.split().freeze();
        if status != 200 {
            return Err(ConnError::Status(status));
        }
        let batch: Batch<'_> =
            serde_json::from_slice(&body).map_err(|_| ConnError::Protocol("bad poll batch"))?;
        for (n, message) in (batch.seq..).zip(&batch.messages) {
            // Messages sent again (an earlier answer was lost) are dropped.
            if n > self.have {
                self.ready.push_back(body.slice_ref(message.get().as_bytes()));
                self.have = n;
            }
        }
        if keep_alive && !self.eof {
            self.queue_poll();
        } else {
            self.reopen = true;
            self.eof = false;
        }
        Ok(true)
    }
}

/// `path` on the server of `target`, with the query of `--url` (a ticket, say).
fn http_target(target: &Target, path: &str) -> String {
    match target.url.resource().split_once('?') {
        Some((_, query)) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

/// The `session` of a `session` event or of the answer to `POST /poll`.
fn session_id(data: &[u8]) -> Result<String, ConnError> {
    #[derive(Deserialize)]
    struct Opened {
        session: String,
    }
    let opened: Opened =
        serde_json::from_slice(data).map_err(|_| ConnError::Protocol("no session id"))?;
    Ok(opened.session)
}

/// The code of a `disconnect` push, if `data` is one.
fn disconnect_code(data: &[u8]) -> Option<u16> {
    #[derive(Deserialize)]
    struct Push {
        push: String,
        code: u16,
    }
    if !data.windows(12).any(|w| w == b"\"disconnect\"") {
        return None;
    }
    let push: Push = serde_json::from_slice(data).ok()?;
    (push.push == "disconnect").then_some(push.code)
}

const BAD_BODY: ConnError = ConnError::Protocol("bad HTTP body");
/// Largest response body or event accepted.
const MAX_BODY: usize = 16 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_pushes_are_told_from_publications() {
        let push = br#"{"push":"disconnect","code":4002,"reason":"x","advice":"reconnect"}"#;
        assert_eq!(disconnect_code(push), Some(4002));
        let publication = br#"{"push":"publication","channel":"a","data":{"t":"disconnect"}}"#;
        assert_eq!(disconnect_code(publication), None);
        assert_eq!(disconnect_code(br#"{"id":1,"result":{}}"#), None);
    }

    #[test]
    fn batches_keep_each_message_verbatim() {
        let body =
            br#"{"seq":4,"messages":[{"id":2,"result":{}}, {"push":"publication","data":[1, 2]}]}"#;
        let batch: Batch<'_> = serde_json::from_slice(body).expect("a batch");
        assert_eq!(batch.seq, 4);
        let got: Vec<&str> = batch.messages.iter().map(|m| m.get()).collect();
        assert_eq!(got, [r#"{"id":2,"result":{}}"#, r#"{"push":"publication","data":[1, 2]}"#]);
        let empty: Batch<'_> =
            serde_json::from_slice(br#"{"seq":7,"messages":[]}"#).expect("empty");
        assert_eq!((empty.seq, empty.messages.len()), (7, 0));
    }
}
