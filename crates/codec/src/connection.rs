//! The per-connection state machine: frames in, events out; messages in, bytes out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::compress::{Deflater, Inflater};
use crate::frame::{
    FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, PreparedMessage, RSV1,
};
use crate::mask::apply_mask;
use crate::utf8::Utf8Validator;
use crate::{CloseCode, DeflateConfig, DeflateParams, Error};

/// Which end of the connection this is. Decides masking (RFC 6455 §5.1).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Role {
    /// Expects masked frames, sends unmasked ones.
    Server,
    /// Expects unmasked frames, masks what it sends.
    Client,
}

/// Size limits, checked against declared lengths before any payload is buffered.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload of one frame. Default 16 MiB. A larger declared length fails the
    /// connection with 1009 before a byte of payload is buffered.
    pub max_frame_size: usize,
    /// Largest message after reassembling fragments. Default 16 MiB. This bounds what one
    /// connection can make the process hold for its read side. With permessage-deflate it
    /// bounds both the compressed bytes received and the inflated message, which is cut
    /// off with 1009 as soon as inflating would pass it.
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_frame_size: 16 << 20, max_message_size: 16 << 20 }
    }
}

impl Limits {
    /// Limits with both sizes set to `max`.
    pub fn with_max_message_size(max: usize) -> Self {
        Self { max_frame_size: max, max_message_size: max }
    }
}

/// Keepalive and closing timers. `None` turns a timer off; all are off by default.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Send a ping this often. Servers usually use 25 s: below the 30–60 s idle cut-off of
    /// common proxies and load balancers.
    pub ping_interval: Option<Duration>,
    /// Fail the connection when no pong arrives this long after a ping.
    pub pong_timeout: Option<Duration>,
    /// Close the connection when nothing at all arrives for this long.
    pub idle_timeout: Option<Duration>,
    /// After sending a close frame, give up on the peer's answer after this long.
    pub close_timeout: Option<Duration>,
}

/// Something to send. Build text from `&str`/`String` so it is UTF-8 by construction.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Message {
    /// A text message; the bytes must be UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping, at most 125 bytes.
    Ping(Bytes),
    /// An unsolicited pong, at most 125 bytes.
    Pong(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Message::Text(Bytes::from(text.into()))
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Message::Binary(data.into())
    }
}

/// A close frame's status and reason.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The UTF-8 reason, at most 123 bytes.
    pub reason: String,
}

/// What the peer sent.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Event {
    /// A complete text message, validated as UTF-8.
    Text(Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping; the pong has already been queued.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer's close frame; `None` when it carried no status code. The answer, if one
    /// was owed, has already been queued.
    Close(Option<CloseFrame>),
}

/// Where the connection is in its lifecycle.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// This end sent a close frame and waits for the peer's.
    Closing,
    /// The close handshake finished, failed or timed out: flush the transmit queue and
    /// close the transport.
    Closed,
}

/// Why the connection reached [`State::Closed`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum CloseCause {
    /// This end started the close handshake and the peer answered.
    Local,
    /// The peer started the close handshake.
    Remote,
    /// The peer violated the protocol; the connection was failed.
    ProtocolError,
    /// No pong arrived within the pong timeout.
    PongTimeout,
    /// The peer did not answer a close frame within the close timeout.
    CloseTimeout,
}

/// Above this size, server frames are queued as their own shared buffer instead of being
/// copied into the coalescing buffer.
const SHARE_THRESHOLD: usize = 4 * 1024;

/// How much room a partial frame asks the read buffer for at a time.
const READ_CHUNK: usize = 64 * 1024;

/// One WebSocket connection's protocol state, without I/O.
///
/// Call order, repeated for the life of the connection:
/// 1. [`handle_read`](Self::handle_read) with the bytes read from the transport (whole
///    frames are consumed; a partial frame stays in the buffer), and
///    [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout)
///    passes;
/// 2. [`poll_event`](Self::poll_event) until `None`;
/// 3. [`send`](Self::send), [`send_prepared`](Self::send_prepared) or
///    [`close`](Self::close) as the application wishes (these only queue);
/// 4. [`poll_transmit`](Self::poll_transmit) until `None`, writing each buffer in order;
/// 5. when [`state`](Self::state) is [`State::Closed`], close the transport.
///
/// ```
/// use bytes::BytesMut;
/// use std::time::Instant;
/// use switchboard_codec::{Connection, Event, Limits, Message, Role};
///
/// let mut conn = Connection::new(Role::Server, Limits::default());
/// // A masked text frame "Hello" from RFC 6455 §5.7.
/// let mut read_buf = BytesMut::from(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58][..]);
/// conn.handle_read(&mut read_buf, Instant::now())?;
/// assert_eq!(conn.poll_event(), Some(Event::Text("Hello".into())));
/// conn.send(Message::text("Hello"))?;
/// assert_eq!(conn.poll_transmit().as_deref(), Some(&b"\x81\x05Hello"[..]));
/// # Ok::<(), switchboard_codec::Error>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    limits: Limits,
    timeouts: Timeouts,
    state: State,
    /// RSV bits a negotiated extension defines; none without one.
    allowed_rsv: u8,
    /// The header of the frame whose payload is arriving.
    header: Option<FrameHeader>,
    /// How many payload bytes of that frame are already unmasked and validated.
    progress: usize,
    /// The opcode of the fragmented message in progress.
    message: Option<OpCode>,
    fragments: BytesMut,
    utf8: Utf8Validator,
    events: VecDeque<Event>,
    out: BytesMut,
    chunks: VecDeque<Bytes>,
    queued: usize,
    /// Masking keys for the client role (RFC 6455 §10.3 wants them unpredictable).
    rng: Option<Box<StdRng>>,
    last_recv: Option<Instant>,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    close_deadline: Option<Instant>,
    close_cause: Option<CloseCause>,
    close_code: Option<CloseCode>,
    /// A violation found after valid frames in the same read, applied once their events
    /// have been polled.
    pending_failure: Option<Error>,
    error: Option<Error>,
    /// permessage-deflate, when negotiated.
    deflate: Option<Box<Deflate>>,
    /// Whether the data message in progress is compressed (RSV1 on its first frame).
    compressed: bool,
}

/// A connection's permessage-deflate state (RFC 7692).
#[derive(Debug)]
struct Deflate {
    params: DeflateParams,
    deflater: Deflater,
    inflater: Inflater,
    stats: DeflateStats,
    /// Compressed bytes received for the message in progress.
    wire_len: usize,
}

/// Counts of what permessage-deflate did on one connection, for metrics. Messages sent as
/// shared prepared frames are not counted here (they were compressed once, elsewhere).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct DeflateStats {
    /// Messages this end compressed and sent.
    pub messages_compressed: u64,
    /// Their bytes before compression.
    pub compressed_input_bytes: u64,
    /// Their bytes as sent (payloads, without frame headers).
    pub compressed_bytes: u64,
    /// Compressed messages received and inflated.
    pub messages_inflated: u64,
    /// Their bytes as received.
    pub inflated_wire_bytes: u64,
    /// Their bytes once inflated.
    pub inflated_bytes: u64,
}

impl Connection {
    /// A connection in [`State::Open`], just after the opening handshake.
    pub fn new(role: Role, limits: Limits) -> Self {
        let rng = match role {
            Role::Client => Some(Box::new(StdRng::from_os_rng())),
            Role::Server => None,
        };
        Self {
            role,
            limits,
            timeouts: Timeouts::default(),
            state: State::Open,
            allowed_rsv: 0,
            header: None,
            progress: 0,
            message: None,
            fragments: BytesMut::new(),
            utf8: Utf8Validator::new(),
            events: VecDeque::new(),
            out: BytesMut::new(),
            chunks: VecDeque::new(),
            queued: 0,
            rng,
            last_recv: None,
            next_ping: None,
            pong_deadline: None,
            close_deadline: None,
            close_cause: None,
            close_code: None,
            pending_failure: None,
            error: None,
            deflate: None,
            compressed: false,
        }
    }

    /// A connection in [`State::Open`] with permessage-deflate negotiated: `params` as
    /// accepted in the handshake ([`DeflateConfig::accept`] on the server,
    /// [`ServerResponse::deflate`](crate::handshake::ServerResponse::deflate) on the
    /// client), `config` for the level, the minimum size and this end's own wish to
    /// compress without context.
    ///
    /// RSV1 is then allowed on the first frame of a data message, whose payload is
    /// inflated on receipt; text and binary messages of at least `config.min_size` bytes
    /// are sent compressed when that makes them smaller. Compression state is allocated
    /// when a message needs it and, in a direction without context takeover, freed when
    /// the message is done, so an idle connection holds none.
    pub fn with_deflate(
        role: Role,
        limits: Limits,
        params: DeflateParams,
        config: &DeflateConfig,
    ) -> Self {
        let mut conn = Self::new(role, limits);
        let (send_bits, send_reset, recv_bits, recv_reset) = match role {
            Role::Server => (
                params.server_window_bits(),
                params.server_no_context_takeover || config.server_no_context_takeover,
                params.client_window_bits(),
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.client_window_bits(),
                params.client_no_context_takeover || config.client_no_context_takeover,
                params.server_window_bits(),
                params.server_no_context_takeover,
            ),
        };
        conn.allowed_rsv = RSV1;
        conn.deflate = Some(Box::new(Deflate {
            params,
            deflater: Deflater::new(config.compression(), send_bits, config.min_size, send_reset),
            inflater: Inflater::new(recv_bits, recv_reset),
            wire_len: 0,
            stats: DeflateStats::default(),
        }));
        conn
    }

    /// The negotiated permessage-deflate parameters, if any.
    pub fn deflate_params(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref().map(|d| &d.params)
    }

    /// Whether [`send_prepared`](Self::send_prepared) can send `msg` here: a server
    /// connection, and for a compressed message, permessage-deflate negotiated with a
    /// window at least as large as the one `msg` was compressed with.
    pub fn accepts_prepared(&self, msg: &PreparedMessage) -> bool {
        self.role == Role::Server
            && match (msg.compressed_window_bits(), &self.deflate) {
                (None, _) => true,
                (Some(bits), Some(d)) => bits <= d.deflater.window_bits(),
                (Some(_), None) => false,
            }
    }

    /// What permessage-deflate did on this connection so far; `None` without it.
    pub fn deflate_stats(&self) -> Option<DeflateStats> {
        self.deflate.as_ref().map(|d| d.stats)
    }

    /// Whether any compression state is allocated (for tests and memory accounting).
    pub fn has_deflate_state(&self) -> bool {
        self.deflate
            .as_ref()
            .is_some_and(|d| d.deflater.is_allocated() || d.inflater.is_allocated())
    }

    /// Starts the keepalive and closing timers, counting from `now`.
    pub fn set_timeouts(&mut self, timeouts: Timeouts, now: Instant) {
        self.next_ping = timeouts.ping_interval.map(|i| now + i);
        self.last_recv = Some(now);
        self.timeouts = timeouts;
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The lifecycle state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the close handshake has begun (or ended): no more messages may be sent.
    pub fn is_closing(&self) -> bool {
        self.state != State::Open
    }

    /// Whether the transport should be closed now (after flushing the transmit queue).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the connection closed, once it has.
    pub fn close_cause(&self) -> Option<CloseCause> {
        self.close_cause
    }

    /// The status code of the close handshake, or of the failure, once closing has begun.
    /// [`CloseCode::NO_STATUS`] when the peer's close frame had none, and
    /// [`CloseCode::ABNORMAL`] when no close frame was exchanged.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.close_code
    }

    /// Decodes the frames at the front of `buf`, consuming each complete one.
    ///
    /// A partial frame is left in `buf`, which is grown a chunk (64 KiB) at a time as its
    /// payload arrives, never beyond what the limits allow. Text payloads are validated as they arrive,
    /// so invalid UTF-8 fails the connection at the first bad byte, even mid-frame.
    ///
    /// # Errors
    ///
    /// A peer violation found while no event was waiting to be polled. The connection is
    /// then [`State::Closed`] with a close frame carrying [`Error::close_code`] queued for
    /// transmission, and `buf` is cleared. A violation behind events still waiting (from
    /// this read or an earlier one) is reported through [`poll_event`](Self::poll_event) and
    /// [`error`](Self::error) once they are polled, so they are answered first.
    pub fn handle_read(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), Error> {
        if self.state == State::Closed {
            buf.clear();
            return Ok(());
        }
        if !buf.is_empty() {
            self.last_recv = Some(now);
        }
        if self.pending_failure.is_some() {
            // Already failed; the events before the violation are still being polled.
            buf.clear();
            return Ok(());
        }
        let result = self.read_frames(buf);
        if self.state == State::Closed {
            buf.clear();
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) if self.events.is_empty() => {
                buf.clear();
                self.fail(e.clone());
                Err(e)
            }
            Err(e) => {
                // Frames before the violation were valid and are answered first (their
                // echoes, pongs) as RFC 6455 processes frames in order; the connection fails
                // once their events have been polled.
                buf.clear();
                self.pending_failure = Some(e);
                Ok(())
            }
        }
    }

    /// The next event decoded by [`handle_read`](Self::handle_read).
    ///
    /// When a violation followed valid frames in the same read, the connection fails when
    /// this returns `None` after their events: [`error`](Self::error) then tells why.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if event.is_none()
            && let Some(e) = self.pending_failure.take()
        {
            self.fail(e);
        }
        event
    }

    /// The peer violation that failed the connection, if one did.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Queues a message.
    ///
    /// # Errors
    ///
    /// [`Error::Closing`] once the close handshake has begun;
    /// [`Error::ControlPayloadTooLarge`] for a ping or pong over 125 bytes.
    pub fn send(&mut self, msg: Message) -> Result<(), Error> {
        self.send_message(msg, true)
    }

    /// Queues a text or binary message uncompressed even when permessage-deflate is
    /// negotiated (RSV1 clear): for payloads the caller knows compress badly, or that its
    /// settings keep plain. Without permessage-deflate it is [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_uncompressed(&mut self, msg: Message) -> Result<(), Error> {
        self.send_message(msg, false)
    }

    fn send_message(&mut self, msg: Message, compress: bool) -> Result<(), Error> {
        if self.state != State::Open {
            return Err(Error::Closing);
        }
        match msg {
            Message::Text(data) => self.write_message(OpCode::Text, data, compress),
            Message::Binary(data) => self.write_message(OpCode::Binary, data, compress),
            Message::Ping(data) | Message::Pong(data) if data.len() > MAX_CONTROL_PAYLOAD => {
                return Err(Error::ControlPayloadTooLarge(data.len()));
            }
            Message::Ping(data) => self.write_frame(OpCode::Ping, data),
            Message::Pong(data) => self.write_frame(OpCode::Pong, data),
        }
        Ok(())
    }

    /// Queues a message encoded once for many connections (server role only).
    ///
    /// A compressed message is sent as it is, without compressing again. When this
    /// connection compresses its own messages with context takeover, that context is
    /// dropped: the peer's window now holds the shared message, which this end's
    /// compressor never saw (RFC 7692 §7.2.3.2 has later messages refer back into it).
    ///
    /// # Errors
    ///
    /// [`Error::Closing`] once the close handshake has begun;
    /// [`Error::PreparedFromClient`] in the client role, whose frames must be masked;
    /// [`Error::PreparedNotNegotiated`] for a compressed message this connection does not
    /// [accept](Self::accepts_prepared).
    pub fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        if self.role == Role::Client {
            return Err(Error::PreparedFromClient);
        }
        if self.state != State::Open {
            return Err(Error::Closing);
        }
        if msg.is_compressed() {
            if !self.accepts_prepared(msg) {
                return Err(Error::PreparedNotNegotiated);
            }
            if let Some(d) = &mut self.deflate {
                d.deflater.reset();
            }
        }
        self.push_shared(msg.as_bytes().clone());
        Ok(())
    }

    /// Starts the close handshake (RFC 6455 §7.1.2). Does nothing if it has already begun.
    ///
    /// # Errors
    ///
    /// [`Error::UnsendableCloseCode`] for a code that may not appear on the wire;
    /// [`Error::ControlPayloadTooLarge`] for a reason over 123 bytes.
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant) -> Result<(), Error> {
        if !code.is_sendable() {
            return Err(Error::UnsendableCloseCode(code.0));
        }
        if reason.len() + 2 > MAX_CONTROL_PAYLOAD {
            return Err(Error::ControlPayloadTooLarge(reason.len() + 2));
        }
        if self.state != State::Open {
            return Ok(());
        }
        self.queue_close(Some(code), reason);
        self.state = State::Closing;
        self.close_code = Some(code);
        self.close_deadline = self.timeouts.close_timeout.map(|t| now + t);
        Ok(())
    }

    /// The next buffer to write to the transport, in order. Small frames queued together
    /// come out as one buffer, so a burst costs one write.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let next = match self.chunks.pop_front() {
            Some(chunk) => chunk,
            None if !self.out.is_empty() => self.out.split().freeze(),
            None => return None,
        };
        self.queued -= next.len();
        Some(next)
    }

    /// Bytes queued for transmission and not yet taken by
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn queued_len(&self) -> usize {
        self.queued
    }

    /// The earliest instant at which [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = match (self.state, self.last_recv, self.timeouts.idle_timeout) {
            (State::Open, Some(last), Some(idle)) => Some(last + idle),
            _ => None,
        };
        let ping = if self.state == State::Open { self.next_ping } else { None };
        [ping, self.pong_deadline, idle, self.close_deadline].into_iter().flatten().min()
    }

    /// Runs the timers that are due at `now`: pings, pong and idle deadlines, close timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.close_deadline.is_some_and(|d| now >= d) {
            self.finish(CloseCause::CloseTimeout, CloseCode::ABNORMAL);
            return;
        }
        if self.pong_deadline.is_some_and(|d| now >= d) {
            // The peer is gone or wedged: tell it why, best effort, and stop waiting.
            if self.state == State::Open {
                self.queue_close(Some(CloseCode::GOING_AWAY), "pong timeout");
            }
            self.finish(CloseCause::PongTimeout, CloseCode::GOING_AWAY);
            return;
        }
        if self.state != State::Open {
            return;
        }
        let idle_expired = match (self.last_recv, self.timeouts.idle_timeout) {
            (Some(last), Some(idle)) => now >= last + idle,
            _ => false,
        };
        if idle_expired {
            // An orderly close: the peer is alive enough to answer, or the close timeout
            // ends it.
            let _ = self.close(CloseCode::GOING_AWAY, "idle timeout", now);
            return;
        }
        if let (Some(due), Some(interval)) = (self.next_ping, self.timeouts.ping_interval)
            && now >= due
        {
            self.write_frame(OpCode::Ping, Bytes::new());
            self.next_ping = Some(now + interval);
            if self.pong_deadline.is_none() {
                self.pong_deadline = self.timeouts.pong_timeout.map(|t| now + t);
            }
        }
    }

    /// Marks the transport as gone without a close handshake (EOF or I/O error).
    pub fn handle_transport_closed(&mut self) {
        if self.state != State::Closed {
            let cause =
                if self.state == State::Closing { CloseCause::Local } else { CloseCause::Remote };
            self.finish(cause, CloseCode::ABNORMAL);
        }
    }

    fn read_frames(&mut self, buf: &mut BytesMut) -> Result<(), Error> {
        while self.state != State::Closed {
            let header = match self.header {
                Some(h) => h,
                None => {
                    let Some((h, n)) = FrameHeader::parse(buf)? else { return Ok(()) };
                    self.check_header(&h)?;
                    buf.advance(n);
                    self.header = Some(h);
                    self.progress = 0;
                    h
                }
            };
            // `check_header` bounded the length by `max_frame_size`, a usize.
            let len = header.payload_len as usize;
            let available = buf.len().min(len);
            if available > self.progress {
                let fresh = &mut buf[self.progress..available];
                if let Some(key) = header.mask {
                    apply_mask(fresh, key, self.progress);
                }
                if self.is_text(&header) {
                    // RFC 6455 §8.1 and §5.6: fail as soon as the bytes cannot be UTF-8.
                    self.utf8.feed(fresh).map_err(|()| Error::InvalidUtf8)?;
                }
                self.progress = available;
            }
            if buf.len() < len {
                // Grow with the data, a chunk at a time: a 14-byte header declaring 16 MiB must
                // not make the process allocate 16 MiB before a byte of it has arrived.
                buf.reserve((len - buf.len()).min(READ_CHUNK) + MAX_HEADER_LEN);
                return Ok(());
            }
            let payload = buf.split_to(len);
            self.header = None;
            self.progress = 0;
            self.on_frame(header, payload)?;
        }
        Ok(())
    }

    fn check_header(&mut self, h: &FrameHeader) -> Result<(), Error> {
        // RFC 6455 §5.1: clients mask every frame, servers none.
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(Error::UnmaskedFrame),
            (Role::Client, true) => return Err(Error::MaskedFrame),
            _ => {}
        }
        // RFC 6455 §5.2: RSV bits must be 0 unless an extension defines them.
        if h.rsv & !self.allowed_rsv != 0 {
            return Err(Error::ReservedBits(h.rsv));
        }
        // RFC 7692 §6.1: RSV1 marks the first frame of a compressed data message only.
        if h.rsv & RSV1 != 0 && (h.opcode.is_control() || h.opcode == OpCode::Continuation) {
            return Err(Error::MisplacedRsv1(h.opcode));
        }
        let max_frame = self.limits.max_frame_size as u64;
        if h.payload_len > max_frame {
            return Err(Error::FrameTooLarge { len: h.payload_len, max: max_frame });
        }
        let max_message = self.limits.max_message_size as u64;
        match h.opcode {
            OpCode::Continuation => {
                // RFC 6455 §5.4: a continuation only follows an unfinished data frame.
                if self.message.is_none() {
                    return Err(Error::UnexpectedContinuation);
                }
                let so_far = match &self.deflate {
                    Some(d) if self.compressed => d.wire_len,
                    _ => self.fragments.len(),
                };
                let total = so_far as u64 + h.payload_len;
                if total > max_message {
                    return Err(Error::MessageTooLarge { len: total, max: max_message });
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(Error::ExpectedContinuation);
                }
                if h.payload_len > max_message {
                    return Err(Error::MessageTooLarge { len: h.payload_len, max: max_message });
                }
                if h.opcode == OpCode::Text {
                    self.utf8.reset();
                }
                self.compressed = h.rsv & RSV1 != 0;
                if let Some(d) = &mut self.deflate {
                    d.wire_len = 0;
                }
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {}
        }
        Ok(())
    }

    /// Whether the frame's raw payload is UTF-8 text to validate as it arrives; compressed
    /// text is validated once inflated.
    fn is_text(&self, h: &FrameHeader) -> bool {
        if self.compressed {
            return false;
        }
        match h.opcode {
            OpCode::Text => true,
            OpCode::Continuation => self.message == Some(OpCode::Text),
            _ => false,
        }
    }

    fn on_frame(&mut self, h: FrameHeader, payload: BytesMut) -> Result<(), Error> {
        match h.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation if self.compressed => {
                self.on_compressed(h, &payload)?;
            }
            OpCode::Text | OpCode::Binary if h.fin => {
                self.deliver(h.opcode, payload.freeze())?;
            }
            OpCode::Text | OpCode::Binary => {
                self.message = Some(h.opcode);
                self.fragments.extend_from_slice(&payload);
            }
            OpCode::Continuation => {
                self.fragments.extend_from_slice(&payload);
                if h.fin {
                    let opcode = self.message.take().unwrap_or(OpCode::Binary);
                    let data = self.fragments.split().freeze();
                    self.deliver(opcode, data)?;
                }
            }
            OpCode::Ping => {
                let data = payload.freeze();
                // RFC 6455 §5.5.2: answer with a pong carrying the same data, unless a close
                // frame has already been sent.
                if self.state == State::Open {
                    self.write_frame(OpCode::Pong, data.clone());
                }
                self.events.push_back(Event::Ping(data));
            }
            OpCode::Pong => {
                self.pong_deadline = None;
                self.events.push_back(Event::Pong(payload.freeze()));
            }
            OpCode::Close => self.on_close(&payload)?,
        }
        Ok(())
    }

    /// A frame of a compressed message: inflate it onto the message (RFC 7692 §7.2.2),
    /// validating text as it comes out.
    fn on_compressed(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), Error> {
        let opcode = match h.opcode {
            OpCode::Continuation => self.message.unwrap_or(OpCode::Binary),
            op => op,
        };
        // `compressed` is only set when RSV1 was allowed, which only deflate does.
        let Some(d) = self.deflate.as_mut() else { return Err(Error::ReservedBits(h.rsv)) };
        d.wire_len += payload.len();
        let start = d.inflater.inflate(payload, h.fin, self.limits.max_message_size)?;
        if opcode == OpCode::Text {
            let fresh = d.inflater.message().get(start..).unwrap_or_default();
            self.utf8.feed(fresh).map_err(|()| Error::InvalidUtf8)?;
        }
        if !h.fin {
            self.message = Some(opcode);
            return Ok(());
        }
        let data = d.inflater.finish();
        d.stats.messages_inflated += 1;
        d.stats.inflated_wire_bytes += d.wire_len as u64;
        d.stats.inflated_bytes += data.len() as u64;
        self.message = None;
        self.compressed = false;
        self.deliver(opcode, data)
    }

    fn deliver(&mut self, opcode: OpCode, data: Bytes) -> Result<(), Error> {
        if opcode == OpCode::Text && !self.utf8.is_complete() {
            return Err(Error::InvalidUtf8);
        }
        // RFC 6455 §1.4: after sending a close frame, data from the peer is discarded.
        if self.state == State::Open {
            self.events.push_back(match opcode {
                OpCode::Text => Event::Text(data),
                _ => Event::Binary(data),
            });
        }
        Ok(())
    }

    fn on_close(&mut self, payload: &[u8]) -> Result<(), Error> {
        let frame = match payload {
            [] => None,
            // RFC 6455 §5.5.1: a body starts with a 2-byte code.
            [_] => return Err(Error::CloseFrameTooShort),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_sendable() {
                    return Err(Error::InvalidCloseCode(code.0));
                }
                let reason = simdutf8::basic::from_utf8(reason).map_err(|_| Error::InvalidUtf8)?;
                Some(CloseFrame { code, reason: reason.to_owned() })
            }
        };
        let code = frame.as_ref().map_or(CloseCode::NO_STATUS, |f| f.code);
        if self.state == State::Open {
            // RFC 6455 §5.5.1: answer, echoing the status code received.
            self.queue_close(frame.as_ref().map(|f| f.code), "");
            self.close_code = Some(code);
            self.finish(CloseCause::Remote, code);
        } else {
            self.finish(CloseCause::Local, self.close_code.unwrap_or(code));
        }
        self.events.push_back(Event::Close(frame));
        Ok(())
    }

    /// Fails the connection (RFC 6455 §7.1.7): queue a close frame with the error's code,
    /// unless one was already sent, and stop.
    fn fail(&mut self, err: Error) {
        let code = err.close_code().unwrap_or(CloseCode::PROTOCOL_ERROR);
        if self.state == State::Open {
            self.queue_close(Some(code), &err.to_string());
        }
        self.finish(CloseCause::ProtocolError, code);
        self.error = Some(err);
    }

    fn finish(&mut self, cause: CloseCause, code: CloseCode) {
        self.state = State::Closed;
        self.close_cause.get_or_insert(cause);
        self.close_code.get_or_insert(code);
        self.close_deadline = None;
        self.pong_deadline = None;
        self.header = None;
        self.message = None;
        self.fragments = BytesMut::new();
        self.compressed = false;
        if let Some(d) = &mut self.deflate {
            d.inflater.clear();
            d.deflater.reset();
        }
    }

    fn queue_close(&mut self, code: Option<CloseCode>, reason: &str) {
        let mut body = Vec::with_capacity(2 + reason.len());
        if let Some(code) = code {
            body.extend_from_slice(&code.0.to_be_bytes());
            // Reasons come from this crate's own messages; cut at a char boundary to fit.
            let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            body.extend_from_slice(&reason.as_bytes()[..end]);
        }
        self.write_frame(OpCode::Close, Bytes::from(body));
    }

    /// Queues a data message, compressed when deflate was negotiated and it pays.
    /// Queues a data message, compressed when `compress`, permessage-deflate is negotiated
    /// and it shrinks. Uncompressed, the compressor never sees it, so its context (if kept)
    /// is still the peer's.
    fn write_message(&mut self, opcode: OpCode, data: Bytes, compress: bool) {
        let deflate = self.deflate.as_mut().filter(|_| compress);
        let compressed = deflate.and_then(|d| {
            let compressed = d.deflater.compress(&data)?;
            d.stats.messages_compressed += 1;
            d.stats.compressed_input_bytes += data.len() as u64;
            d.stats.compressed_bytes += compressed.len() as u64;
            Some(compressed)
        });
        match compressed {
            Some(compressed) => self.write_frame_rsv(opcode, Bytes::from(compressed), RSV1),
            None => self.write_frame(opcode, data),
        }
    }

    fn write_frame(&mut self, opcode: OpCode, payload: Bytes) {
        self.write_frame_rsv(opcode, payload, 0);
    }

    fn write_frame_rsv(&mut self, opcode: OpCode, payload: Bytes, rsv: u8) {
        let mask = self.rng.as_mut().map(|rng| rng.random::<[u8; 4]>());
        let header =
            FrameHeader { fin: true, rsv, opcode, mask, payload_len: payload.len() as u64 };
        if mask.is_none() && payload.len() >= SHARE_THRESHOLD {
            // Big unmasked payloads go out as they are, without a copy.
            let mut head = bytes::BytesMut::with_capacity(MAX_HEADER_LEN);
            header.encode(&mut head);
            self.push_shared(head.freeze());
            self.push_shared(payload);
            return;
        }
        self.out.reserve(header.encoded_len() + payload.len());
        header.encode(&mut self.out);
        let start = self.out.len();
        self.out.extend_from_slice(&payload);
        if let Some(key) = mask {
            apply_mask(&mut self.out[start..], key, 0);
        }
        self.queued += header.encoded_len() + payload.len();
    }

    fn push_shared(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        if bytes.len() < SHARE_THRESHOLD {
            self.out.extend_from_slice(&bytes);
            return;
        }
        if !self.out.is_empty() {
            self.chunks.push_back(self.out.split().freeze());
        }
        self.chunks.push_back(bytes);
    }
}
