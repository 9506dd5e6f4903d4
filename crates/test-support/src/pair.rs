//! An in-memory client/server pair of codec [`Connection`]s with a virtual clock, and
//! byte-level helpers to craft, feed and decode frames.
//!
//! Nothing moves on its own: a test queues messages, then calls
//! [`Pair::client_to_server`] or [`Pair::server_to_client`] to carry the bytes across, and
//! [`Pair::advance`] to move time. Every step is deterministic except the client's masking
//! keys, which never change what the server decodes.
//!
//! ```
//! use switchboard_codec::{Event, Limits, Message};
//! use switchboard_test_support::pair::Pair;
//!
//! let mut pair = Pair::new(Limits::default());
//! pair.client.send(Message::text("hi"))?;
//! pair.client_to_server()?;
//! assert_eq!(pair.server_events(), [Event::Text("hi".into())]);
//! # Ok::<(), switchboard_codec::Error>(())
//! ```

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use switchboard_codec::{
    Connection, Error, Event, FrameHeader, Limits, OpCode, Role, State, apply_mask,
};

/// A client and a server connection joined by in-memory buffers, with a virtual clock.
#[derive(Debug)]
pub struct Pair {
    /// The client end: masks what it sends.
    pub client: Connection,
    /// The server end: expects masked frames.
    pub server: Connection,
    /// The virtual clock, passed as `now` to every call the pair makes.
    pub now: Instant,
    /// Bytes that reached the client and were not yet consumed (a partial frame).
    client_read: BytesMut,
    /// Bytes that reached the server and were not yet consumed (a partial frame).
    server_read: BytesMut,
}

impl Pair {
    /// A client and a server, both open, with the same limits and no timers.
    pub fn new(limits: Limits) -> Self {
        Self {
            client: Connection::new(Role::Client, limits.clone()),
            server: Connection::new(Role::Server, limits),
            now: Instant::now(),
            client_read: BytesMut::new(),
            server_read: BytesMut::new(),
        }
    }

    /// Moves the virtual clock forward and runs both connections' timers.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
    }

    /// Hands every buffer the client has queued to the server, one read per buffer.
    ///
    /// # Errors
    ///
    /// The first error the server's [`Connection::handle_read`] returned. The client's
    /// queue is drained either way.
    pub fn client_to_server(&mut self) -> Result<(), Error> {
        transfer(&mut self.client, &mut self.server, &mut self.server_read, self.now)
    }

    /// Hands every buffer the server has queued to the client, one read per buffer.
    ///
    /// # Errors
    ///
    /// The first error the client's [`Connection::handle_read`] returned. The server's
    /// queue is drained either way.
    pub fn server_to_client(&mut self) -> Result<(), Error> {
        transfer(&mut self.server, &mut self.client, &mut self.client_read, self.now)
    }

    /// Feeds raw bytes to the server, as if the client had sent them.
    ///
    /// # Errors
    ///
    /// What the server's [`Connection::handle_read`] returned.
    pub fn feed_server(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.server_read.extend_from_slice(bytes);
        self.server.handle_read(&mut self.server_read, self.now)
    }

    /// Feeds raw bytes to the client, as if the server had sent them.
    ///
    /// # Errors
    ///
    /// What the client's [`Connection::handle_read`] returned.
    pub fn feed_client(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.client_read.extend_from_slice(bytes);
        self.client.handle_read(&mut self.client_read, self.now)
    }

    /// Every event the server has decoded and not yet handed out.
    pub fn server_events(&mut self) -> Vec<Event> {
        drain_events(&mut self.server)
    }

    /// Every event the client has decoded and not yet handed out.
    pub fn client_events(&mut self) -> Vec<Event> {
        drain_events(&mut self.client)
    }

    /// Runs `send` on a fresh client connection and returns the masked bytes it queued:
    /// valid client input for a server, built through the codec's own encoder.
    pub fn wire_from_client(send: impl FnOnce(&mut Connection)) -> BytesMut {
        let mut client = Connection::new(Role::Client, Limits::default());
        send(&mut client);
        drain_transmit(&mut client)
    }
}

/// A frame decoded from a connection's output, its payload unmasked.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Frame {
    /// The header as sent, masking key included.
    pub header: FrameHeader,
    /// The unmasked payload.
    pub payload: Bytes,
}

impl Frame {
    /// The status code of a close frame, `None` for any other frame or an empty body.
    pub fn close_code(&self) -> Option<u16> {
        match (self.header.opcode, &self.payload[..]) {
            (OpCode::Close, [hi, lo, ..]) => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }
}

/// Feeds `bytes` to `conn` in pieces cut at `splits` (ascending offsets into `bytes`)
/// through one read buffer, as a transport driver would: one
/// [`Connection::handle_read`] per piece, then [`Connection::poll_event`] until `None`.
///
/// Returns every event, in order. A failure, whether `handle_read` returned it or it was
/// deferred behind earlier events, shows in [`Connection::error`] and the state.
pub fn feed_split(
    conn: &mut Connection,
    bytes: &[u8],
    splits: &[usize],
    now: Instant,
) -> Vec<Event> {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut start = 0;
    for end in splits.iter().copied().chain([bytes.len()]) {
        let end = end.clamp(start, bytes.len());
        buf.extend_from_slice(&bytes[start..end]);
        // The error is also kept by the connection, in `error()`.
        let _ = conn.handle_read(&mut buf, now);
        events.extend(drain_events(conn));
        start = end;
    }
    events
}

/// What a fresh connection made of a byte stream: comparable between two ways of cutting
/// the same stream, since the answers are compared unmasked.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Outcome {
    /// The events decoded, in order.
    pub events: Vec<Event>,
    /// The frames queued in answer (pongs, close frames): opcode and unmasked payload.
    pub answers: Vec<(OpCode, Bytes)>,
    /// The peer violation that failed the connection, if one did.
    pub error: Option<Error>,
    /// The state after the last read.
    pub state: State,
}

/// Feeds `wire` to a fresh connection in pieces cut at `splits`, with [`feed_split`], and
/// collects what it made of it.
pub fn decode_split(role: Role, limits: Limits, wire: &[u8], splits: &[usize]) -> Outcome {
    let mut conn = Connection::new(role, limits);
    let events = feed_split(&mut conn, wire, splits, Instant::now());
    Outcome {
        events,
        answers: sent_frames(&mut conn).into_iter().map(|f| (f.header.opcode, f.payload)).collect(),
        error: conn.error().cloned(),
        state: conn.state(),
    }
}

/// Every event `conn` has decoded and not yet handed out.
pub fn drain_events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// Every byte `conn` has queued for the transport, concatenated in order.
pub fn drain_transmit(conn: &mut Connection) -> BytesMut {
    let mut wire = BytesMut::new();
    while let Some(bytes) = conn.poll_transmit() {
        wire.extend_from_slice(&bytes);
    }
    wire
}

/// Every frame `conn` has queued for the transport, decoded: [`drain_transmit`] then
/// [`decode_frames`].
pub fn sent_frames(conn: &mut Connection) -> Vec<Frame> {
    decode_frames(&drain_transmit(conn))
}

/// Decodes a stream of complete frames, such as [`drain_transmit`] returns, unmasking the
/// payloads.
///
/// # Panics
///
/// When `wire` is not a sequence of complete, well-formed frames: it is meant for the
/// codec's own output, where that is the assertion.
pub fn decode_frames(mut wire: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !wire.is_empty() {
        let (header, header_len) = FrameHeader::parse(wire)
            .expect("the codec encodes only valid headers")
            .expect("the codec queues only whole frames");
        let len = usize::try_from(header.payload_len).expect("a queued payload fits in memory");
        let end = header_len + len;
        let mut payload =
            wire.get(header_len..end).expect("the codec queues whole frames").to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        frames.push(Frame { header, payload: payload.into() });
        wire = &wire[end..];
    }
    frames
}

/// Encodes one frame with an arbitrary first byte (FIN, RSV bits and opcode, reserved
/// values included), the minimal length encoding, and the payload masked with `mask`.
///
/// For input the codec's encoder refuses to produce: reserved opcodes, RSV bits,
/// fragments, oversized control frames, unmasked client frames.
pub fn raw_frame(first_byte: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> BytesMut {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = BytesMut::with_capacity(14 + payload.len());
    out.put_u8(first_byte);
    match payload.len() {
        len @ 0..=125 => out.put_u8(mask_bit | len as u8),
        len @ 126..=0xffff => {
            out.put_u8(mask_bit | 126);
            out.put_u16(len as u16);
        }
        len => {
            out.put_u8(mask_bit | 127);
            out.put_u64(len as u64);
        }
    }
    if let Some(key) = mask {
        out.put_slice(&key);
    }
    let start = out.len();
    out.put_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    out
}

fn transfer(
    from: &mut Connection,
    to: &mut Connection,
    read_buf: &mut BytesMut,
    now: Instant,
) -> Result<(), Error> {
    let mut result = Ok(());
    while let Some(bytes) = from.poll_transmit() {
        read_buf.extend_from_slice(&bytes);
        let read = to.handle_read(read_buf, now);
        if result.is_ok() {
            result = read;
        }
    }
    result
}

/// A raw deflate stream (RFC 1951 §3.2.6, fixed Huffman codes) of one literal zero and
/// `copies` back-references of 258 bytes at distance 1: 13 bits for 258 bytes of output, a
/// decompression bomb for the permessage-deflate tests.
pub fn deflate_bomb(copies: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(copies * 13 / 8 + 8);
    let (mut acc, mut nbits) = (0u64, 0u32);
    let mut put = |value: u64, bits: u32, out: &mut Vec<u8>| {
        acc |= value << nbits;
        nbits += bits;
        while nbits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            nbits -= 8;
        }
    };
    // Huffman codes go most significant bit first (§3.1.1).
    let code = |c: u64, len: u32| (0..len).fold(0, |r, i| r | ((c >> i) & 1) << (len - 1 - i));
    put(0b010, 3, &mut out); // BFINAL 0, BTYPE 01
    put(code(0b0011_0000, 8), 8, &mut out); // literal 0
    for _ in 0..copies {
        put(code(0b1100_0101, 8), 8, &mut out); // length 258 (code 285)
        put(0, 5, &mut out); // distance 1 (code 0)
    }
    put(0, 7, &mut out); // end of block (code 256), then padding
    out
}
