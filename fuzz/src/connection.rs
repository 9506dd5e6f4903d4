//! One codec [`Connection`] driven by a script: peer bytes cut at arbitrary points, the
//! clock moving, the application sending and closing. After every step the connection must
//! keep the invariants its documentation promises.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use switchboard_codec::{
    CloseCode, Connection, Event, Limits, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, Message, OpCode,
    Role, State, Timeouts,
};
use switchboard_test_support::pair::{decode_frames, decode_split, drain_events, drain_transmit};

use crate::Cursor;

/// Runs the script in `data` on a connection in `role`.
///
/// # Panics
///
/// When the connection breaks one of its invariants (or panics itself).
pub fn run(role: Role, data: &[u8]) {
    let mut input = Cursor::new(data);
    let limits = limits(&mut input);
    let timeouts = timeouts(&mut input);
    let start = Instant::now();
    let mut now = start;
    let mut conn = Connection::new(role, limits.clone());
    conn.set_timeouts(timeouts, now);
    let mut check = Checker::new(role, limits.clone());
    let mut buf = BytesMut::new();
    let mut wire = Vec::new();
    let mut cuts = Vec::new();
    while !input.is_empty() {
        match input.u8() % 8 {
            0..=3 => {
                let len = usize::from(input.u16());
                let bytes = input.take(len);
                wire.extend_from_slice(bytes);
                cuts.push(wire.len());
                let open_before = conn.state() == State::Open;
                buf.extend_from_slice(bytes);
                let result = conn.handle_read(&mut buf, now);
                if let Err(e) = &result {
                    assert!(conn.is_closed(), "failed with {e:?} but {:?}", conn.state());
                    assert_eq!(conn.error(), Some(e));
                    assert!(buf.is_empty(), "the read buffer survives a failure");
                }
                // A partial frame's payload is below the frame limit; a partial header is
                // below the longest header. Anything else has been consumed or dropped.
                assert!(
                    buf.len() < MAX_HEADER_LEN.max(limits.max_frame_size),
                    "{} bytes buffered with a frame limit of {}",
                    buf.len(),
                    limits.max_frame_size
                );
                if conn.is_closed() {
                    assert!(buf.is_empty(), "a closed connection kept {} bytes", buf.len());
                }
                check.events(&drain_events(&mut conn), open_before);
            }
            4 => {
                now += Duration::from_millis(u64::from(input.u16()));
                if conn.poll_timeout().is_some_and(|t| t <= now) {
                    conn.handle_timeout(now);
                }
            }
            5 => {
                let kind = input.u8();
                let len = usize::from(input.u8());
                let bytes = bytes::Bytes::copy_from_slice(input.take(len));
                let msg = match kind % 4 {
                    0 => Message::text(String::from_utf8_lossy(&bytes)),
                    1 => Message::Binary(bytes),
                    2 => Message::Ping(bytes),
                    _ => Message::Pong(bytes),
                };
                let too_big = match &msg {
                    Message::Ping(b) | Message::Pong(b) => b.len() > MAX_CONTROL_PAYLOAD,
                    _ => false,
                };
                let open = conn.state() == State::Open;
                let result = conn.send(msg);
                assert_eq!(result.is_ok(), open && !too_big, "{result:?}");
            }
            6 => {
                let code = CloseCode(input.u16());
                let len = usize::from(input.u8());
                let reason = String::from_utf8_lossy(input.take(len)).into_owned();
                let state = conn.state();
                let result = conn.close(code, &reason, now);
                let valid = code.is_sendable() && reason.len() + 2 <= MAX_CONTROL_PAYLOAD;
                assert_eq!(result.is_ok(), valid, "close({code}, {} bytes)", reason.len());
                if valid && state == State::Open {
                    assert_eq!(conn.state(), State::Closing);
                    assert_eq!(conn.close_code(), Some(code));
                }
            }
            _ => {
                if let Some(t) = conn.poll_timeout() {
                    now = now.max(t);
                    conn.handle_timeout(now);
                }
            }
        }
        check.state(&conn);
        let queued = conn.queued_len();
        let out = drain_transmit(&mut conn);
        assert_eq!(out.len(), queued, "queued_len disagrees with what poll_transmit gave");
        assert_eq!(conn.queued_len(), 0);
        check.transmitted(&out);
    }
    // However the peer's bytes were cut, a fresh connection makes the same of them.
    cuts.pop();
    let whole = decode_split(role, limits.clone(), &wire, &[]);
    let pieces = decode_split(role, limits, &wire, &cuts);
    assert_eq!(whole, pieces, "cut at {cuts:?}");
}

fn limits(input: &mut Cursor<'_>) -> Limits {
    let default = input.u8() & 1 == 1;
    let frame = usize::from(input.u16());
    // Messages up to 4 × 64 KiB, so fragments can add up past the frame limit.
    let message = usize::from(input.u16()) * 4;
    let mut limits = Limits::default();
    if !default {
        limits.max_frame_size = frame;
        limits.max_message_size = message;
    }
    limits
}

fn timeouts(input: &mut Cursor<'_>) -> Timeouts {
    let flags = input.u8();
    let mut timer = |bit: u8| {
        let ms = u64::from(input.u16());
        (flags & (1 << bit) != 0).then(|| Duration::from_millis(ms))
    };
    let mut timeouts = Timeouts::default();
    timeouts.ping_interval = timer(0);
    timeouts.pong_timeout = timer(1);
    timeouts.idle_timeout = timer(2);
    timeouts.close_timeout = timer(3);
    timeouts
}

/// What the connection has said so far, to check each step against.
struct Checker {
    role: Role,
    limits: Limits,
    /// A close event was handed out: nothing may follow it.
    close_received: bool,
    /// A close frame was queued: nothing may follow it on the wire.
    close_sent: bool,
}

impl Checker {
    fn new(role: Role, limits: Limits) -> Self {
        Self { role, limits, close_received: false, close_sent: false }
    }

    fn events(&mut self, events: &[Event], open_before: bool) {
        for event in events {
            assert!(!self.close_received, "{event:?} after the peer's close");
            match event {
                Event::Text(data) => {
                    assert!(std::str::from_utf8(data).is_ok(), "a text event is not UTF-8");
                    self.message(data.len(), open_before);
                }
                Event::Binary(data) => self.message(data.len(), open_before),
                Event::Ping(data) | Event::Pong(data) => {
                    assert!(data.len() <= MAX_CONTROL_PAYLOAD, "control payload {}", data.len());
                }
                Event::Close(frame) => {
                    self.close_received = true;
                    if let Some(frame) = frame {
                        assert!(frame.code.is_sendable(), "close event with {}", frame.code);
                        assert!(frame.reason.len() <= MAX_CONTROL_PAYLOAD - 2);
                    }
                }
            }
        }
    }

    fn message(&self, len: usize, open_before: bool) {
        assert!(open_before, "a data message delivered after this end sent its close");
        assert!(len <= self.limits.max_message_size, "a message of {len} bytes");
    }

    fn state(&self, conn: &Connection) {
        let state = conn.state();
        assert_eq!(conn.close_cause().is_some(), state == State::Closed, "cause in {state:?}");
        assert_eq!(conn.close_code().is_none(), state == State::Open, "code in {state:?}");
        if let Some(code) = conn.close_code() {
            let local = code == CloseCode::NO_STATUS || code == CloseCode::ABNORMAL;
            assert!(code.is_sendable() || local, "close code {code}");
        }
        if let Some(e) = conn.error() {
            assert!(e.is_peer_violation(), "error {e:?} is not the peer's");
            assert_eq!(state, State::Closed);
        }
        if state == State::Closed {
            assert_eq!(conn.poll_timeout(), None, "a timer runs on a closed connection");
        }
    }

    fn transmitted(&mut self, out: &[u8]) {
        // decode_frames panics unless these are whole, well-formed frames.
        for frame in decode_frames(out) {
            assert!(!self.close_sent, "{:?} sent after a close frame", frame.header.opcode);
            assert_eq!(frame.header.mask.is_some(), self.role == Role::Client, "masking");
            assert_eq!(frame.header.rsv, 0);
            if frame.header.opcode == OpCode::Close {
                self.close_sent = true;
                match &frame.payload[..] {
                    [] => {}
                    [hi, lo, reason @ ..] => {
                        let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                        assert!(code.is_sendable(), "sent close code {code}");
                        assert!(std::str::from_utf8(reason).is_ok(), "close reason not UTF-8");
                    }
                    [_] => panic!("a one-byte close frame was sent"),
                }
            }
        }
    }
}
