//! The client side of one WebSocket connection, tuned for generating load.
//!
//! The server's URL and the opening handshake are `switchboard-client`'s ([`ServerUrl`],
//! [`Handshake`]); after the handshake, frames are read by a
//! small reader of our own: server frames are unmasked (RFC 6455 §5.1), so a message is
//! a header parse and a split of the read buffer, with no copy and no per-byte work. The
//! reader still checks what a broken server could get wrong: header encoding and control
//! frame rules ([`FrameHeader::parse`]), masking, reserved bits and a length bound. It does
//! not validate UTF-8: the tool measures the server, it does not police it.
//!
//! The bytes travel over plain TCP or TLS ([`Stream`]); a `wss://` connection's TLS
//! handshake is part of opening it, so the connect and churn scenarios time it.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use switchboard_client::ServerUrl;
use switchboard_client::connect::{Handshake, UpgradeError};
use switchboard_codec::deflate::MessageInflater;
use switchboard_codec::{
    DeflateConfig, FrameHeader, HandshakeError, MAX_HEADER_LEN, OpCode, RSV1, Role,
};
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use crate::protocol::Refusal;
use crate::stream::Stream;

/// Where to connect and what to ask for.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The resolved server address.
    pub(crate) addr: SocketAddr,
    /// The URL: the `Host` header, path and query of the request.
    pub(crate) url: ServerUrl,
    /// Extra request headers (`Authorization`).
    pub(crate) headers: Vec<(String, String)>,
    /// Offer permessage-deflate, and require it.
    pub(crate) compression: bool,
    /// With `wss://` (or `https://`): TLS over the TCP connection.
    tls: Option<TlsTarget>,
}

/// How a target's connections open TLS.
#[derive(Clone)]
struct TlsTarget {
    connector: TlsConnector,
    /// The name the server's certificate must carry: the URL's host.
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Target {
    /// Resolves `url`'s host. A `wss://` (or `https://`) URL needs `tls`, the client
    /// configuration its connections open TLS with.
    pub(crate) async fn resolve(
        url: ServerUrl,
        tls: Option<&Arc<ClientConfig>>,
    ) -> Result<Self, String> {
        let tls = match (url.is_tls(), tls) {
            (false, _) => None,
            (true, None) => return Err(format!("{url}: no TLS configuration for it")),
            (true, Some(config)) => {
                let name = ServerName::try_from(url.host().to_owned())
                    .map_err(|e| format!("{url}: a host TLS cannot verify: {e}"))?;
                Some(TlsTarget { connector: TlsConnector::from(Arc::clone(config)), name })
            }
        };
        let addr = resolve(&url).await?;
        Ok(Self { addr, url, headers: Vec::new(), compression: false, tls })
    }

    /// Whether connections to the target speak TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens TCP (from `local` when given), then TLS when the target has it: the stream
    /// a request or an opening handshake goes over.
    pub(crate) async fn connect(&self, local: Option<IpAddr>) -> Result<Stream, ConnError> {
        let tcp = tcp_connect(self.addr, local).await?;
        let Some(tls) = &self.tls else { return Ok(Stream::Plain(tcp)) };
        let (tcp, session) = tls.connector.connect(tls.name.clone(), tcp).await?.into_inner();
        Ok(Stream::tls(tcp, session))
    }
}

/// The first address `url`'s host resolves to.
async fn resolve(url: &ServerUrl) -> Result<SocketAddr, String> {
    tokio::net::lookup_host((url.host(), url.port()))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", url.addr()))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", url.addr()))
}

/// Why a connection failed, as a short name for the report's `error_kinds`.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// A socket error.
    Io(io::Error),
    /// The server refused the upgrade with this status.
    Status(u16),
    /// The 101 response did not verify.
    Handshake(HandshakeError),
    /// The peer broke RFC 6455 or the protocol spoken over it.
    Protocol(&'static str),
    /// The server closed the connection (close frame with this code, or none).
    Closed(Option<u16>),
    /// The peer ended the TCP stream without a close frame.
    Eof,
    /// A step took longer than allowed.
    Timeout,
    /// The server answered a command with an error reply carrying this code.
    Reply(String),
    /// The server refused a channel to this connection: the options or the server's
    /// configuration must change, not the load. Boxed: rare, and three fields wide.
    Refused(Box<Refusal>),
    /// permessage-deflate was asked for (`--compression`) and the server did not accept it.
    DeflateDeclined,
    /// TLS failed: the certificate, the handshake or a record.
    Tls(Box<rustls::Error>),
}

impl ConnError {
    /// A short, stable name for counting.
    pub(crate) fn kind(&self) -> String {
        match self {
            ConnError::Io(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => "connection_refused".to_owned(),
                io::ErrorKind::ConnectionReset => "connection_reset".to_owned(),
                io::ErrorKind::AddrNotAvailable => "address_not_available".to_owned(),
                io::ErrorKind::BrokenPipe => "broken_pipe".to_owned(),
                io::ErrorKind::TimedOut => "timeout".to_owned(),
                _ if e.raw_os_error() == Some(24) => "too_many_open_files".to_owned(),
                _ => "io".to_owned(),
            },
            ConnError::Status(status) => format!("http_{status}"),
            ConnError::Handshake(_) => "bad_handshake".to_owned(),
            ConnError::Protocol(_) => "protocol".to_owned(),
            ConnError::Closed(Some(code)) => format!("closed_{code}"),
            ConnError::Closed(None) => "closed".to_owned(),
            ConnError::Eof => "eof".to_owned(),
            ConnError::Timeout => "timeout".to_owned(),
            ConnError::Reply(code) => format!("reply_{code}"),
            ConnError::Refused(refusal) => format!("reply_{}", refusal.code),
            ConnError::DeflateDeclined => "deflate_declined".to_owned(),
            ConnError::Tls(e) => crate::tls::error_kind(e).to_owned(),
        }
    }
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "{e}"),
            ConnError::Status(status) => write!(f, "upgrade refused with HTTP {status}"),
            ConnError::Handshake(e) => write!(f, "bad handshake response: {e}"),
            ConnError::Protocol(what) => write!(f, "protocol violation: {what}"),
            ConnError::Closed(Some(code)) => write!(f, "server closed the connection ({code})"),
            ConnError::Closed(None) => write!(f, "server closed the connection"),
            ConnError::Eof => write!(f, "connection ended without a close frame"),
            ConnError::Timeout => write!(f, "timed out"),
            ConnError::Reply(code) => write!(f, "error reply {code:?}"),
            ConnError::Refused(refusal) => write!(f, "{refusal}"),
            ConnError::DeflateDeclined => {
                write!(f, "the server accepted the upgrade without permessage-deflate")
            }
            ConnError::Tls(e) => write!(f, "tls: {e}{}", crate::tls::hint(e)),
        }
    }
}

impl From<io::Error> for ConnError {
    /// An I/O error, or the TLS error rustls and tokio-rustls carry in one.
    fn from(e: io::Error) -> Self {
        let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let (io::ErrorKind::InvalidData, Some(tls)) = (e.kind(), tls) {
            return ConnError::Tls(Box::new(tls.clone()));
        }
        ConnError::Io(e)
    }
}

/// A complete message from the server, owned (for the setup and close paths).
#[derive(Debug)]
pub(crate) enum Msg {
    /// A text or binary message (fragments joined).
    Data(Bytes),
    /// The server's close frame, with its code if any. The echo is already queued.
    Close(Option<u16>),
}

/// What a message handler passed to [`Ws::drain`] wants next.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Step {
    /// Hand over the next message.
    Continue,
    /// Stop after this one; the rest stays buffered.
    Stop,
}

/// Why [`Ws::drain`] returned.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Drained {
    /// No complete message is left in the buffer: read more.
    Empty,
    /// The handler asked to stop.
    Stopped,
    /// The server's close frame came, with its code if any; its echo is queued.
    Closed(Option<u16>),
}

/// Bytes waiting to be written, and how to frame more.
#[derive(Debug)]
pub(crate) struct Outbox {
    out: BytesMut,
    mask: [u8; 4],
    sent_close: bool,
}

impl Outbox {
    /// An outbox whose bytes go nowhere, for the HTTP transports: their servers send no
    /// pings to answer.
    pub(crate) fn detached() -> Self {
        Outbox { out: BytesMut::new(), mask: [0; 4], sent_close: true }
    }

    /// Queues bytes already encoded as frames (with this connection's mask).
    pub(crate) fn queue_raw(&mut self, frames: &[u8]) {
        self.out.extend_from_slice(frames);
    }

    /// Encodes and queues one masked frame.
    pub(crate) fn queue(&mut self, opcode: OpCode, payload: &[u8]) {
        encode_into(&mut self.out, opcode, payload, self.mask);
    }

    /// Queues a close frame (1000) unless one was already sent.
    fn queue_close(&mut self) {
        if !self.sent_close {
            self.sent_close = true;
            self.queue(OpCode::Close, &1000u16.to_be_bytes());
        }
    }
}

/// One open WebSocket connection.
#[derive(Debug)]
pub(crate) struct Ws {
    stream: Stream,
    rbuf: BytesMut,
    outbox: Outbox,
    fragments: Option<BytesMut>,
    /// With permessage-deflate: inflates compressed messages.
    inflater: Option<Box<MessageInflater>>,
    /// Whether the fragmented message in progress is compressed.
    compressed: bool,
}

impl Ws {
    /// Connects (from `local` if given, over TLS for `wss://`), sends the upgrade and
    /// waits for the 101.
    ///
    /// Returns the connection; bytes that followed the response head are kept as frames.
    pub(crate) async fn connect(target: &Target, local: Option<IpAddr>) -> Result<Self, ConnError> {
        let mut stream = target.connect(local).await?;
        // A nonce from the cheap per-connection source, not a system call per connection.
        let mut handshake = Handshake::new(&target.url).key(rand_bytes());
        for (name, value) in &target.headers {
            handshake = handshake.header(name, value);
        }
        if target.compression {
            let mut offer = DeflateConfig::default();
            offer.enabled = true;
            handshake = handshake.deflate(&offer);
        }
        let mut rbuf = BytesMut::with_capacity(FIRST_READ_BUFFER);
        let accepted = handshake.perform(&mut stream, &mut rbuf).await.map_err(|e| match e {
            UpgradeError::Io(e) => ConnError::from(e),
            UpgradeError::Closed => ConnError::Eof,
            UpgradeError::Refused(refusal) => ConnError::Status(refusal.status),
            UpgradeError::Invalid(e) => ConnError::Handshake(e),
            _ => ConnError::Protocol("opening handshake"),
        })?;
        let inflater = match accepted.deflate {
            Some(params) => Some(Box::new(MessageInflater::new(&params, Role::Client))),
            None if target.compression => return Err(ConnError::DeflateDeclined),
            None => None,
        };
        // Bytes past the response head stay in `rbuf`: the first frames. A TLS session may
        // hold more of them, decrypted along with the head.
        stream.take_decrypted(&mut rbuf)?;
        Ok(Ws {
            stream,
            rbuf,
            outbox: Outbox { out: BytesMut::new(), mask: rand_bytes(), sent_close: false },
            fragments: None,
            inflater,
            compressed: false,
        })
    }

    /// A plain byte pipe over `stream`, for HTTP/1.1: [`Ws::fill`], [`Ws::queue_raw`] and
    /// [`Ws::read_buf`] without frames. The stream is fresh: nothing was read from it yet.
    pub(crate) fn plain(stream: Stream) -> Self {
        Ws {
            stream,
            rbuf: BytesMut::with_capacity(FIRST_READ_BUFFER),
            outbox: Outbox { out: BytesMut::new(), mask: [0; 4], sent_close: true },
            fragments: None,
            inflater: None,
            compressed: false,
        }
    }

    /// The bytes read and not yet consumed.
    pub(crate) fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// This connection's masking key, for frames encoded ahead of time with [`encode`].
    pub(crate) fn mask(&self) -> [u8; 4] {
        self.outbox.mask
    }

    /// Queues bytes already encoded as frames (with this connection's mask).
    pub(crate) fn queue_raw(&mut self, frames: &[u8]) {
        self.outbox.queue_raw(frames);
    }

    /// Encodes and queues one masked frame.
    pub(crate) fn queue(&mut self, opcode: OpCode, payload: &[u8]) {
        self.outbox.queue(opcode, payload);
    }

    /// Sends `count` copies of a frame encoded ahead of time: written straight from `frame`
    /// with one vectored write when nothing else is waiting, so large payloads are not
    /// copied; what the socket does not take now is queued.
    pub(crate) fn send_frames(&mut self, frame: &[u8], count: usize) -> Result<(), ConnError> {
        let mut written = 0;
        if self.outbox.out.is_empty() && !frame.is_empty() {
            let slices = vec![io::IoSlice::new(frame); count.min(MAX_IOVECS)];
            match self.stream.try_write_vectored(&slices) {
                Ok(n) => written = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        let (whole, offset) = (written / frame.len().max(1), written % frame.len().max(1));
        let out = &mut self.outbox.out;
        if whole < count {
            out.extend_from_slice(&frame[offset..]);
            for _ in whole + 1..count {
                out.extend_from_slice(frame);
            }
        }
        Ok(())
    }

    /// Writes as much of the queued bytes as the socket takes now, without waiting.
    pub(crate) fn try_flush(&mut self) -> Result<(), ConnError> {
        let out = &mut self.outbox.out;
        while !out.is_empty() {
            match self.stream.try_write(out) {
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        if out.capacity() > MAX_IDLE_CAPACITY {
            *out = BytesMut::new();
        }
        // TLS records the socket did not take at the last write.
        self.stream.try_write_records()?;
        Ok(())
    }

    /// Whether bytes wait to be written: queued frames, or TLS records sealed from them.
    fn has_output(&self) -> bool {
        !self.outbox.out.is_empty() || self.stream.has_pending_records()
    }

    /// Waits until more bytes have been read, writing queued bytes meanwhile.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits in `ready`, and bytes read are kept in the buffer.
    pub(crate) async fn fill(&mut self) -> Result<usize, ConnError> {
        loop {
            self.try_flush()?;
            if self.rbuf.capacity() - self.rbuf.len() < FIRST_READ_BUFFER / 2 {
                self.rbuf.reserve(READ_CHUNK);
            }
            let interest = if self.has_output() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let ready = self.stream.ready(interest).await?;
            if ready.is_readable() {
                match self.stream.try_read_buf(&mut self.rbuf) {
                    Ok(0) => return Err(ConnError::Eof),
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// Writes every queued byte, waiting as needed.
    pub(crate) async fn flush(&mut self) -> Result<(), ConnError> {
        loop {
            self.try_flush()?;
            if !self.has_output() {
                return Ok(());
            }
            self.stream.ready(Interest::WRITABLE).await?;
        }
    }

    /// Hands each complete message already read to `handle`, in place (no copy, no
    /// allocation), with the outbox for answers. Pings are answered, pongs skipped; a close
    /// frame is echoed and ends the drain.
    pub(crate) fn drain(
        &mut self,
        mut handle: impl FnMut(&[u8], &mut Outbox) -> Result<Step, ConnError>,
    ) -> Result<Drained, ConnError> {
        loop {
            let Some((header, head_len)) =
                FrameHeader::parse(&self.rbuf).map_err(|_| ConnError::Protocol("bad frame"))?
            else {
                return Ok(Drained::Empty);
            };
            if header.mask.is_some() {
                // RFC 6455 §5.1: a client must close on a masked frame from the server.
                return Err(ConnError::Protocol("masked server frame"));
            }
            // RFC 7692 §6: RSV1 marks the first frame of a compressed data message, when
            // permessage-deflate was negotiated; RFC 6455 §5.2: any other reserved bit fails.
            let first_data = matches!(header.opcode, OpCode::Text | OpCode::Binary);
            let compressed = header.rsv == RSV1 && first_data && self.inflater.is_some();
            if header.rsv != 0 && !compressed {
                return Err(ConnError::Protocol("reserved bits set"));
            }
            if header.payload_len > MAX_MESSAGE as u64 {
                return Err(ConnError::Protocol("frame too large"));
            }
            let total = head_len + header.payload_len as usize;
            if self.rbuf.len() < total {
                // Room for the rest of the frame and the next header in one read.
                self.rbuf.reserve(total - self.rbuf.len() + MAX_HEADER_LEN);
                return Ok(Drained::Empty);
            }
            let payload = &self.rbuf[head_len..total];
            let mut step = Step::Continue;
            match header.opcode {
                OpCode::Ping => {
                    // RFC 6455 §5.5.3: answer with the ping's application data.
                    if !self.outbox.sent_close {
                        self.outbox.queue(OpCode::Pong, payload);
                    }
                }
                OpCode::Pong => {}
                OpCode::Close => {
                    let code = match payload {
                        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
                        _ => None,
                    };
                    self.rbuf.advance(total);
                    // RFC 6455 §5.5.1: echo the close unless this side sent one already.
                    self.outbox.queue_close();
                    return Ok(Drained::Closed(code));
                }
                OpCode::Text | OpCode::Binary => {
                    if self.fragments.is_some() {
                        return Err(ConnError::Protocol("new message inside a fragmented one"));
                    }
                    if !header.fin {
                        self.fragments = Some(BytesMut::from(payload));
                        self.compressed = compressed;
                    } else if let (true, Some(inflater)) = (compressed, &mut self.inflater) {
                        let message = inflate(inflater, payload)?;
                        step = handle(&message, &mut self.outbox)?;
                    } else {
                        step = handle(payload, &mut self.outbox)?;
                    }
                }
                OpCode::Continuation => {
                    let Some(partial) = &mut self.fragments else {
                        return Err(ConnError::Protocol("continuation without a message"));
                    };
                    if partial.len() + payload.len() > MAX_MESSAGE {
                        return Err(ConnError::Protocol("message too large"));
                    }
                    partial.extend_from_slice(payload);
                    if header.fin {
                        match (self.compressed, &mut self.inflater) {
                            (true, Some(inflater)) => {
                                let message = inflate(inflater, partial)?;
                                step = handle(&message, &mut self.outbox)?;
                            }
                            _ => step = handle(partial, &mut self.outbox)?,
                        }
                        self.fragments = None;
                        self.compressed = false;
                    }
                }
            }
            self.rbuf.advance(total);
            if step == Step::Stop {
                return Ok(Drained::Stopped);
            }
        }
    }

    /// Reads until the next complete message, and copies it out.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Ws::fill`].
    pub(crate) async fn recv(&mut self) -> Result<Msg, ConnError> {
        loop {
            let mut got = None;
            let drained = self.drain(|data, _| {
                got = Some(Bytes::copy_from_slice(data));
                Ok(Step::Stop)
            })?;
            match (drained, got) {
                (Drained::Closed(code), _) => return Ok(Msg::Close(code)),
                (_, Some(data)) => return Ok(Msg::Data(data)),
                _ => {
                    self.fill().await?;
                }
            }
        }
    }

    /// The close handshake (RFC 6455 §7.1.2): sends a close frame, reads until the server's
    /// close frame and the end of the stream, or until `timeout`. Messages still arriving are
    /// dropped.
    pub(crate) async fn close(mut self, timeout: Duration) -> Result<(), ConnError> {
        self.outbox.queue_close();
        let closing = async {
            loop {
                if let Drained::Closed(_) = self.drain(|_, _| Ok(Step::Continue))? {
                    break;
                }
                self.fill().await?;
            }
            self.flush().await?;
            // The server closes TCP first (RFC 6455 §7.1.1), so TIME_WAIT stays on its side.
            match self.fill().await {
                Err(ConnError::Eof) => Ok(()),
                Err(e) => Err(e),
                Ok(_) => Ok(()),
            }
        };
        tokio::time::timeout(timeout, closing).await.map_err(|_| ConnError::Timeout)?
    }
}

/// A compressed message's payload, inflated within the message size bound.
fn inflate(inflater: &mut MessageInflater, payload: &[u8]) -> Result<Bytes, ConnError> {
    inflater
        .inflate(payload, MAX_MESSAGE)
        .map_err(|_| ConnError::Protocol("bad compressed message"))
}

/// Encodes one masked frame with `mask`, for sending the same bytes many times.
pub(crate) fn encode(opcode: OpCode, payload: &[u8], mask: [u8; 4]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 14);
    encode_into(&mut out, opcode, payload, mask);
    out.freeze()
}

/// Appends one masked frame to `out` (RFC 6455 §5.2, §5.3).
pub(crate) fn encode_into(out: &mut BytesMut, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(mask),
        payload_len: payload.len() as u64,
    };
    out.reserve(header.encoded_len() + payload.len());
    header.encode(out);
    let start = out.len();
    out.put_slice(payload);
    switchboard_codec::apply_mask(&mut out[start..], mask, 0);
}

/// Opens a TCP connection from `local` (any port) when given.
pub(crate) async fn tcp_connect(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A queue of send instants, for round trips answered in order.
pub(crate) type SendTimes = VecDeque<std::time::Instant>;

/// Cheap per-connection randomness (masking keys and handshake nonces) from std's
/// randomly seeded hasher: RFC 6455 §10.3 asks for unpredictable masks against proxies
/// that misread frames, not for secrets.
fn rand_bytes<const N: usize>() -> [u8; N] {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(chunk.as_ptr() as usize);
        let word = hasher.finish().to_ne_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    out
}

/// The read buffer's growth step: at most this much is read per system call, unless a
/// larger frame is on its way.
const READ_CHUNK: usize = 16 << 10;
/// The read buffer of a new connection: an idle connection never needs more.
const FIRST_READ_BUFFER: usize = 2 << 10;
/// Copies of one frame written per system call at most (Linux's `UIO_MAXIOV` is 1024).
const MAX_IOVECS: usize = 64;
/// Largest message accepted from the server.
const MAX_MESSAGE: usize = 64 << 20;
/// A write buffer that grew past this is released once empty.
const MAX_IDLE_CAPACITY: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    async fn resolve(url: &str, tls: Option<&Arc<ClientConfig>>) -> Result<Target, String> {
        Target::resolve(ServerUrl::parse(url).expect("a ws URL"), tls).await
    }

    #[tokio::test]
    async fn resolve_takes_ws_and_wss_urls() {
        let t = resolve("ws://127.0.0.1:9/socket.io/?EIO=4", None).await.expect("valid");
        assert_eq!(
            (t.addr.to_string().as_str(), t.url.resource()),
            ("127.0.0.1:9", "/socket.io/?EIO=4")
        );
        assert!(!t.is_tls());
        let t = resolve("ws://[::1]?x=1", None).await.expect("valid");
        assert_eq!((t.addr.port(), t.url.authority(), t.url.resource()), (80, "[::1]", "/?x=1"));
        let config = crate::tls::client_config(None, false).expect("a config");
        let t = resolve("wss://[::1]/ws", Some(&config)).await.expect("valid");
        assert_eq!((t.addr.port(), t.is_tls()), (443, true));
        let err = resolve("wss://127.0.0.1/ws", None).await.expect_err("no configuration");
        assert!(err.contains("no TLS configuration"), "{err}");
    }

    #[test]
    fn encoded_frame_unmasks_to_payload() {
        let frame = encode(OpCode::Text, b"hello", [1, 2, 3, 4]);
        let (header, len) = FrameHeader::parse(&frame).expect("valid").expect("complete");
        assert_eq!(header.mask, Some([1, 2, 3, 4]));
        let mut payload = frame[len..].to_vec();
        switchboard_codec::apply_mask(&mut payload, [1, 2, 3, 4], 0);
        assert_eq!(payload, b"hello");
    }

    /// A connection over loopback whose read buffer the test fills by hand.
    async fn ws_with(bytes: &[u8]) -> (Ws, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client =
            TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let mut ws = Ws::plain(Stream::Plain(client));
        ws.outbox.sent_close = false;
        ws.read_buf().extend_from_slice(bytes);
        (ws, server)
    }

    fn collect(ws: &mut Ws) -> (Vec<Vec<u8>>, Result<Drained, ConnError>) {
        let mut got = Vec::new();
        let drained = ws.drain(|data, _| {
            got.push(data.to_vec());
            Ok(Step::Continue)
        });
        (got, drained)
    }

    #[tokio::test]
    async fn reader_joins_fragments_answers_pings_and_stops_at_close() {
        let mut wire = Vec::new();
        wire.extend_from_slice(b"\x01\x03abc"); // text, not final
        wire.extend_from_slice(b"\x89\x02hi"); // ping between fragments
        wire.extend_from_slice(b"\x80\x02de"); // final continuation
        wire.extend_from_slice(b"\x82\x01z"); // binary
        wire.extend_from_slice(b"\x88\x02\x03\xe8"); // close 1000
        wire.extend_from_slice(b"\x81\x01q"); // after the close: left unread
        let (mut ws, _server) = ws_with(&wire).await;
        let (got, drained) = collect(&mut ws);
        assert_eq!(got, vec![b"abcde".to_vec(), b"z".to_vec()]);
        assert!(matches!(drained, Ok(Drained::Closed(Some(1000)))));
        // The pong (masked, payload "hi") and the close echo are queued.
        let (pong, len) = FrameHeader::parse(&ws.outbox.out).expect("valid").expect("complete");
        assert_eq!((pong.opcode, pong.payload_len), (OpCode::Pong, 2));
        let (close, _) =
            FrameHeader::parse(&ws.outbox.out[len + 2..]).expect("valid").expect("complete");
        assert_eq!(close.opcode, OpCode::Close);
        assert_eq!(&ws.read_buf()[..], b"\x81\x01q");
    }

    #[tokio::test]
    async fn reader_waits_for_whole_frames() {
        let (mut ws, _server) = ws_with(b"\x81\x7e\x01\x00abc").await;
        let (got, drained) = collect(&mut ws);
        assert!(got.is_empty());
        assert!(matches!(drained, Ok(Drained::Empty)));
        assert!(ws.read_buf().capacity() >= 256 + 4);
    }

    #[tokio::test]
    async fn reader_rejects_what_a_server_must_not_send() {
        for bad in [&b"\x81\x81abcdx"[..], b"\xc1\x01x", b"\x80\x01x", b"\x89\x7e\x00\x80"] {
            let (mut ws, _server) = ws_with(bad).await;
            let (_, drained) = collect(&mut ws);
            assert!(matches!(drained, Err(ConnError::Protocol(_))), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn send_frames_delivers_every_copy_in_order() {
        use tokio::io::AsyncReadExt as _;
        let (mut ws, mut server) = ws_with(b"").await;
        // Larger than a socket buffer, so part of it is queued and flushed later.
        let frame = encode(OpCode::Binary, &vec![7u8; 300_000], [1, 2, 3, 4]);
        ws.send_frames(&frame, 3).expect("send");
        let reading = tokio::spawn(async move {
            let mut got = vec![0u8; frame.len() * 3];
            server.read_exact(&mut got).await.expect("read");
            got == frame.repeat(3)
        });
        ws.flush().await.expect("flush");
        assert!(reading.await.expect("reader"));
    }

    /// A TLS connection over loopback and the server's end (tokio-rustls, with a
    /// certificate for `localhost` made for the test). Both sockets get small buffers, so
    /// that a write of a few hundred KB must wait for the peer to read.
    async fn tls_pair() -> (Ws, tokio_rustls::server::TlsStream<TcpStream>) {
        use rustls::pki_types::PrivateKeyDer;
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a cert");
        let cert = generated.cert.der().clone();
        let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der()).expect("a key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("a server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listening = TcpSocket::new_v4().expect("socket");
        listening.set_recv_buffer_size(SMALL_BUFFER).expect("receive buffer");
        listening.bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let addr = listening.local_addr().expect("addr");
        let listener = listening.listen(1).expect("listen");
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_send_buffer_size(SMALL_BUFFER).expect("send buffer");
        let config = switchboard_client::connect::tls_config(&[cert]).expect("a client config");
        let name = ServerName::try_from("localhost").expect("a name");
        let connecting = async {
            let tcp = socket.connect(addr).await.expect("connect");
            TlsConnector::from(config).connect(name, tcp).await.expect("client handshake")
        };
        let accepting = async {
            let (tcp, _) = listener.accept().await.expect("accept");
            acceptor.accept(tcp).await.expect("server handshake")
        };
        let (client, server) = tokio::join!(connecting, accepting);
        let (tcp, session) = client.into_inner();
        let mut ws = Ws::plain(Stream::tls(tcp, session));
        ws.outbox.sent_close = false;
        (ws, server)
    }

    /// Socket buffer size asked for in [`tls_pair`] (Linux doubles it).
    const SMALL_BUFFER: u32 = 8 << 10;
    /// Bounds a socket test that would otherwise hang on a lost wake-up.
    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn tls_carries_large_writes_and_reads_in_order() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut ws, mut server) = tls_pair().await;
        // Past rustls's 64 KiB of sealed records and the sockets' buffers: the session and
        // the outbox both fill, and flushing waits for the socket.
        let frame = encode(OpCode::Binary, &vec![7u8; 300_000], [1, 2, 3, 4]);
        ws.send_frames(&frame, 3).expect("send");
        let down: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = down.clone();
        let serving = tokio::spawn(async move {
            let mut got = vec![0u8; frame.len() * 3];
            server.read_exact(&mut got).await.expect("read");
            assert!(got == frame.repeat(3), "the frames arrive whole and in order");
            server.write_all(&down).await.expect("write");
            // close_notify, then the end of TCP.
            server.shutdown().await.expect("shutdown");
        });
        let exchange = async {
            ws.flush().await.expect("flush");
            loop {
                if let Err(e) = ws.fill().await {
                    break e;
                }
            }
        };
        let end = tokio::time::timeout(LIMIT, exchange).await.expect("no stall");
        serving.await.expect("server");
        assert!(matches!(end, ConnError::Eof), "{end:?}");
        assert!(ws.read_buf()[..] == expected[..], "{} bytes read", ws.read_buf().len());
    }

    #[tokio::test]
    async fn tls_ends_at_the_end_of_tcp_without_close_notify() {
        use tokio::io::AsyncWriteExt as _;
        let (mut ws, mut server) = tls_pair().await;
        server.write_all(b"last words").await.expect("write");
        server.flush().await.expect("flush");
        let (tcp, _) = server.into_inner();
        drop(tcp);
        let reading = async {
            loop {
                if let Err(e) = ws.fill().await {
                    break e;
                }
            }
        };
        let end = tokio::time::timeout(LIMIT, reading).await.expect("no stall");
        assert!(matches!(end, ConnError::Eof), "{end:?}");
        assert_eq!(&ws.read_buf()[..], b"last words");
    }

    #[test]
    fn tls_errors_in_io_errors_are_told_apart() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let err = ConnError::from(io::Error::new(io::ErrorKind::InvalidData, unknown));
        assert_eq!(err.kind(), "tls_untrusted");
        assert!(err.to_string().contains("--insecure"), "{err}");
        let other = ConnError::from(io::Error::new(io::ErrorKind::InvalidData, "not tls"));
        assert_eq!(other.kind(), "io");
    }

    #[test]
    fn random_bytes_differ_between_calls() {
        let a: [u8; 16] = rand_bytes();
        let b: [u8; 16] = rand_bytes();
        assert_ne!(a, b);
    }
}
