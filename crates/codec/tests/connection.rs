//! The connection state machine driven through an in-memory client/server pair: round
//! trips, the close handshake, keepalive timers, prepared messages and read-buffer bounds.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_codec::{
    CloseCause, CloseCode, CloseFrame, Connection, Error, Event, Limits, MAX_HEADER_LEN, Message,
    OpCode, PreparedMessage, Role, State, Timeouts,
};
use switchboard_test_support::pair::{Pair, decode_frames, drain_transmit, raw_frame, sent_frames};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Lengths at and around each header length class (RFC 6455 §5.2), the 4 KiB point where
/// the server stops copying payloads, and a few arbitrary ones.
const LENGTHS: [usize; 14] =
    [0, 1, 125, 126, 127, 65535, 65536, 2, 77, 1000, 4095, 4096, 4097, 300_001];

/// Text of exactly `len` bytes, mixing 1- to 4-byte characters.
fn text_of_len(len: usize) -> String {
    let mut s = String::with_capacity(len);
    for c in ['a', 'é', '€', '𝄞'].into_iter().cycle() {
        if s.len() + c.len_utf8() > len {
            break;
        }
        s.push(c);
    }
    while s.len() < len {
        s.push('a');
    }
    s
}

fn binary_of_len(len: usize) -> Bytes {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn timeouts(f: impl FnOnce(&mut Timeouts)) -> Timeouts {
    let mut t = Timeouts::default();
    f(&mut t);
    t
}

// Round trips.

#[test]
fn round_trips_client_to_server_at_every_length_class() {
    for len in LENGTHS {
        let mut pair = Pair::new(Limits::default());
        let text = text_of_len(len);
        let data = binary_of_len(len);
        pair.client.send(Message::text(text.clone())).unwrap();
        pair.client.send(Message::binary(data.clone())).unwrap();
        let wire = drain_transmit(&mut pair.client);
        let frames = decode_frames(&wire);
        assert_eq!(frames.len(), 2, "len {len}");
        for (frame, op) in frames.iter().zip([OpCode::Text, OpCode::Binary]) {
            // RFC 6455 §5.1: a client masks every frame.
            assert!(frame.header.mask.is_some(), "len {len}");
            assert!(frame.header.fin);
            assert_eq!(frame.header.opcode, op);
            assert_eq!(frame.header.payload_len, len as u64);
        }
        pair.feed_server(&wire).unwrap();
        assert_eq!(
            pair.server_events(),
            [Event::Text(Bytes::from(text)), Event::Binary(data)],
            "len {len}"
        );
        assert_eq!(pair.server.state(), State::Open);
    }
}

#[test]
fn round_trips_server_to_client_at_every_length_class() {
    for len in LENGTHS {
        let mut pair = Pair::new(Limits::default());
        let text = text_of_len(len);
        let data = binary_of_len(len);
        pair.server.send(Message::text(text.clone())).unwrap();
        pair.server.send(Message::binary(data.clone())).unwrap();
        let wire = drain_transmit(&mut pair.server);
        let frames = decode_frames(&wire);
        assert_eq!(frames.len(), 2, "len {len}");
        for frame in &frames {
            // RFC 6455 §5.1: a server masks nothing.
            assert_eq!(frame.header.mask, None, "len {len}");
            assert_eq!(frame.header.payload_len, len as u64);
        }
        assert_eq!(&frames[0].payload[..], text.as_bytes());
        assert_eq!(frames[1].payload, data);
        pair.feed_client(&wire).unwrap();
        assert_eq!(
            pair.client_events(),
            [Event::Text(Bytes::from(text)), Event::Binary(data)],
            "len {len}"
        );
    }
}

#[test]
fn encodes_lengths_in_the_minimal_number_of_bytes() {
    for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
        let mut server = Connection::new(Role::Server, Limits::default());
        server.send(Message::binary(vec![0u8; len])).unwrap();
        assert_eq!(drain_transmit(&mut server).len(), header_len + len, "len {len}");
        let wire = Pair::wire_from_client(|c| c.send(Message::binary(vec![0u8; len])).unwrap());
        assert_eq!(wire.len(), header_len + 4 + len, "len {len}");
    }
}

#[test]
fn masks_each_client_frame_with_a_fresh_key() {
    let wire = Pair::wire_from_client(|c| {
        for _ in 0..8 {
            c.send(Message::text("same")).unwrap();
        }
    });
    let keys: Vec<_> = decode_frames(&wire).iter().map(|f| f.header.mask).collect();
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    // RFC 6455 §10.3: keys must be unpredictable; 8 equal keys from 2^32 would be a broken RNG.
    assert!(distinct.len() > 1, "{keys:?}");
}

// Close handshake.

#[test]
fn echoes_peer_close_code() {
    let mut pair = Pair::new(Limits::default());
    pair.client.close(CloseCode(4000), "bye", pair.now).unwrap();
    assert_eq!(pair.client.state(), State::Closing);
    pair.client_to_server().unwrap();
    assert_eq!(
        pair.server_events(),
        [Event::Close(Some(CloseFrame { code: CloseCode(4000), reason: "bye".into() }))]
    );
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.opcode, OpCode::Close);
    // RFC 6455 §5.5.1: the answer echoes the status code.
    assert_eq!(&frames[0].payload[..], &4000u16.to_be_bytes());
}

#[test]
fn echoes_empty_close_with_empty_close() {
    let mut pair = Pair::new(Limits::default());
    pair.feed_server(&raw_frame(0x88, Some(KEY), &[])).unwrap();
    assert_eq!(pair.server_events(), [Event::Close(None)]);
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.opcode, OpCode::Close);
    assert!(frames[0].payload.is_empty());
    assert_eq!(pair.server.close_code(), Some(CloseCode::NO_STATUS));
    assert_eq!(pair.server.close_cause(), Some(CloseCause::Remote));
}

#[test]
fn remote_close_moves_open_to_closed() {
    let mut pair = Pair::new(Limits::default());
    assert_eq!(pair.server.state(), State::Open);
    pair.client.close(CloseCode::NORMAL, "", pair.now).unwrap();
    pair.client_to_server().unwrap();
    assert_eq!(pair.server.state(), State::Closed);
    assert!(pair.server.is_closed());
    assert_eq!(pair.server.close_cause(), Some(CloseCause::Remote));
    assert_eq!(pair.server.close_code(), Some(CloseCode::NORMAL));
}

#[test]
fn local_close_moves_open_to_closing_to_closed() {
    let mut pair = Pair::new(Limits::default());
    pair.server.close(CloseCode::GOING_AWAY, "restart", pair.now).unwrap();
    assert_eq!(pair.server.state(), State::Closing);
    assert_eq!(pair.server.close_cause(), None);
    assert_eq!(pair.server.close_code(), Some(CloseCode::GOING_AWAY));
    pair.server_to_client().unwrap();
    assert_eq!(pair.client.state(), State::Closed);
    assert_eq!(
        pair.client_events(),
        [Event::Close(Some(CloseFrame { code: CloseCode::GOING_AWAY, reason: "restart".into() }))]
    );
    pair.client_to_server().unwrap();
    assert_eq!(pair.server.state(), State::Closed);
    assert_eq!(pair.server.close_cause(), Some(CloseCause::Local));
    assert_eq!(pair.server.close_code(), Some(CloseCode::GOING_AWAY));
    assert_eq!(
        pair.server_events(),
        [Event::Close(Some(CloseFrame { code: CloseCode::GOING_AWAY, reason: String::new() }))]
    );
    // The handshake is over: nothing more to send either way.
    assert!(pair.server.poll_transmit().is_none());
    assert!(pair.client.poll_transmit().is_none());
}

#[test]
fn discards_peer_data_after_local_close() {
    let mut pair = Pair::new(Limits::default());
    pair.server.close(CloseCode::NORMAL, "", pair.now).unwrap();
    // The client has not seen the close yet and keeps sending.
    pair.client.send(Message::text("late")).unwrap();
    pair.client.send(Message::binary(vec![1, 2, 3])).unwrap();
    pair.client_to_server().unwrap();
    // RFC 6455 §1.4: after sending a close frame, data from the peer is discarded.
    assert_eq!(pair.server_events(), []);
    assert_eq!(pair.server.state(), State::Closing);
}

#[test]
fn send_after_close_returns_closing() {
    let mut pair = Pair::new(Limits::default());
    pair.server.close(CloseCode::NORMAL, "", pair.now).unwrap();
    assert_eq!(pair.server.send(Message::text("x")), Err(Error::Closing));
    assert_eq!(pair.server.send(Message::Ping(Bytes::new())), Err(Error::Closing));
    assert_eq!(pair.server.send_prepared(&PreparedMessage::text("x")), Err(Error::Closing));
    pair.server_to_client().unwrap();
    // Closed after the peer's close: still the same answer.
    assert_eq!(pair.client.send(Message::binary(vec![1])), Err(Error::Closing));
    pair.client_to_server().unwrap();
    assert_eq!(pair.server.send(Message::text("x")), Err(Error::Closing));
}

#[test]
fn close_twice_sends_one_close_frame() {
    let mut pair = Pair::new(Limits::default());
    pair.server.close(CloseCode::NORMAL, "", pair.now).unwrap();
    pair.server.close(CloseCode(4001), "again", pair.now).unwrap();
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), Some(1000));
    assert_eq!(pair.server.close_code(), Some(CloseCode::NORMAL));
}

#[test]
fn close_rejects_caller_misuse_without_sending() {
    let mut pair = Pair::new(Limits::default());
    for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
        assert_eq!(
            pair.server.close(CloseCode(code), "", pair.now),
            Err(Error::UnsendableCloseCode(code))
        );
    }
    let long = "x".repeat(124);
    assert_eq!(
        pair.server.close(CloseCode::NORMAL, &long, pair.now),
        Err(Error::ControlPayloadTooLarge(126))
    );
    assert_eq!(
        pair.server.send(Message::Ping(vec![0u8; 126].into())),
        Err(Error::ControlPayloadTooLarge(126))
    );
    assert_eq!(
        pair.server.send(Message::Pong(vec![0u8; 126].into())),
        Err(Error::ControlPayloadTooLarge(126))
    );
    assert_eq!(pair.server.state(), State::Open);
    assert!(pair.server.poll_transmit().is_none());
    // The longest reason that fits: 125 bytes of close payload.
    pair.server.close(CloseCode::NORMAL, &long[..123], pair.now).unwrap();
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames[0].payload.len(), 125);
}

#[test]
fn close_timeout_fires_via_handle_timeout() {
    let mut pair = Pair::new(Limits::default());
    let t = timeouts(|t| t.close_timeout = Some(Duration::from_secs(5)));
    pair.server.set_timeouts(t, pair.now);
    assert_eq!(pair.server.poll_timeout(), None);
    pair.server.close(CloseCode::NORMAL, "", pair.now).unwrap();
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + Duration::from_secs(5)));
    pair.advance(Duration::from_millis(4999));
    assert_eq!(pair.server.state(), State::Closing);
    pair.advance(Duration::from_millis(1));
    assert_eq!(pair.server.state(), State::Closed);
    assert_eq!(pair.server.close_cause(), Some(CloseCause::CloseTimeout));
    assert_eq!(pair.server.poll_timeout(), None);
}

#[test]
fn answers_ping_with_pong_carrying_the_same_payload() {
    let mut pair = Pair::new(Limits::default());
    let payload = Bytes::from_static(b"are you there?");
    pair.client.send(Message::Ping(payload.clone())).unwrap();
    pair.client_to_server().unwrap();
    assert_eq!(pair.server_events(), [Event::Ping(payload.clone())]);
    let wire = drain_transmit(&mut pair.server);
    let frames = decode_frames(&wire);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.opcode, OpCode::Pong);
    assert_eq!(frames[0].payload, payload);
    pair.feed_client(&wire).unwrap();
    assert_eq!(pair.client_events(), [Event::Pong(payload)]);
}

#[test]
fn answers_max_size_ping_from_server_with_masked_pong() {
    let mut pair = Pair::new(Limits::default());
    let payload = Bytes::from(vec![0xa5; 125]);
    pair.server.send(Message::Ping(payload.clone())).unwrap();
    pair.server_to_client().unwrap();
    assert_eq!(pair.client_events(), [Event::Ping(payload.clone())]);
    let frames = sent_frames(&mut pair.client);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.opcode, OpCode::Pong);
    assert!(frames[0].header.mask.is_some());
    assert_eq!(frames[0].payload, payload);
}

#[test]
fn sends_no_pong_after_close_was_sent() {
    let mut pair = Pair::new(Limits::default());
    pair.server.close(CloseCode::NORMAL, "", pair.now).unwrap();
    drain_transmit(&mut pair.server);
    pair.feed_server(&raw_frame(0x89, Some(KEY), b"ping")).unwrap();
    assert_eq!(pair.server_events(), [Event::Ping(Bytes::from_static(b"ping"))]);
    // RFC 6455 §5.5.2: no pong once a close frame has been sent.
    assert!(pair.server.poll_transmit().is_none());
}

#[test]
fn ignores_everything_after_the_close_handshake() {
    let mut pair = Pair::new(Limits::default());
    let mut wire = raw_frame(0x88, Some(KEY), &1000u16.to_be_bytes());
    wire.extend_from_slice(&raw_frame(0x81, Some(KEY), b"after close"));
    wire.extend_from_slice(&raw_frame(0x89, Some(KEY), b"ping"));
    pair.feed_server(&wire).unwrap();
    assert_eq!(
        pair.server_events(),
        [Event::Close(Some(CloseFrame { code: CloseCode::NORMAL, reason: String::new() }))]
    );
    assert_eq!(sent_frames(&mut pair.server).len(), 1);
    // Garbage after the close is not even parsed.
    pair.feed_server(&[0xff; 32]).unwrap();
    assert_eq!(pair.server_events(), []);
    assert!(pair.server.poll_transmit().is_none());
}

// Keepalive.

fn keepalive_pair() -> Pair {
    let mut pair = Pair::new(Limits::default());
    let t = timeouts(|t| {
        t.ping_interval = Some(Duration::from_secs(10));
        t.pong_timeout = Some(Duration::from_secs(5));
    });
    pair.server.set_timeouts(t, pair.now);
    pair
}

#[test]
fn sends_ping_at_the_interval() {
    let mut pair = keepalive_pair();
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + Duration::from_secs(10)));
    pair.advance(Duration::from_millis(9999));
    assert!(pair.server.poll_transmit().is_none());
    pair.advance(Duration::from_millis(1));
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.opcode, OpCode::Ping);
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + Duration::from_secs(5)));
}

#[test]
fn closes_with_pong_timeout_when_no_pong_arrives() {
    let mut pair = keepalive_pair();
    pair.advance(Duration::from_secs(10));
    assert_eq!(sent_frames(&mut pair.server)[0].header.opcode, OpCode::Ping);
    pair.advance(Duration::from_millis(4999));
    assert_eq!(pair.server.state(), State::Open);
    pair.advance(Duration::from_millis(1));
    assert_eq!(pair.server.state(), State::Closed);
    assert_eq!(pair.server.close_cause(), Some(CloseCause::PongTimeout));
    // Best effort: the peer is told why.
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), Some(1001));
    assert_eq!(pair.server.poll_timeout(), None);
}

#[test]
fn pong_clears_the_pong_deadline() {
    let mut pair = keepalive_pair();
    pair.advance(Duration::from_secs(10));
    // The client answers the ping automatically.
    pair.server_to_client().unwrap();
    pair.client_to_server().unwrap();
    assert_eq!(pair.server_events(), [Event::Pong(Bytes::new())]);
    pair.advance(Duration::from_secs(5));
    assert_eq!(pair.server.state(), State::Open);
    // The next ping is due 10 s after the first.
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + Duration::from_secs(5)));
    pair.advance(Duration::from_secs(5));
    assert_eq!(sent_frames(&mut pair.server)[0].header.opcode, OpCode::Ping);
}

#[test]
fn keeps_a_live_peer_open_across_many_intervals() {
    let mut pair = keepalive_pair();
    for round in 0..20 {
        pair.advance(Duration::from_secs(10));
        pair.server_to_client().unwrap();
        pair.client_to_server().unwrap();
        assert_eq!(pair.server_events(), [Event::Pong(Bytes::new())], "round {round}");
    }
    assert_eq!(pair.server.state(), State::Open);
}

#[test]
fn pongs_keep_an_idle_timer_from_firing() {
    let mut pair = Pair::new(Limits::default());
    let t = timeouts(|t| {
        t.ping_interval = Some(Duration::from_secs(10));
        t.pong_timeout = Some(Duration::from_secs(5));
        t.idle_timeout = Some(Duration::from_secs(30));
    });
    pair.server.set_timeouts(t, pair.now);
    for _ in 0..30 {
        pair.advance(Duration::from_secs(10));
        pair.server_to_client().unwrap();
        pair.client_to_server().unwrap();
    }
    assert_eq!(pair.server.state(), State::Open);
    // A peer that goes quiet is caught by the pong timeout first.
    pair.advance(Duration::from_secs(10));
    pair.advance(Duration::from_secs(5));
    assert_eq!(pair.server.close_cause(), Some(CloseCause::PongTimeout));
}

#[test]
fn idle_timeout_starts_a_close() {
    let mut pair = Pair::new(Limits::default());
    let t = timeouts(|t| {
        t.idle_timeout = Some(Duration::from_secs(30));
        t.close_timeout = Some(Duration::from_secs(2));
    });
    pair.server.set_timeouts(t, pair.now);
    pair.advance(Duration::from_secs(20));
    // Anything that arrives resets the idle clock.
    pair.client.send(Message::text("still here")).unwrap();
    pair.client_to_server().unwrap();
    pair.advance(Duration::from_secs(29));
    assert_eq!(pair.server.state(), State::Open);
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.server.state(), State::Closing);
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), Some(1001));
    assert_eq!(&frames[0].payload[2..], b"idle timeout");
    // A silent peer is then given up on by the close timeout.
    pair.advance(Duration::from_secs(2));
    assert_eq!(pair.server.state(), State::Closed);
    assert_eq!(pair.server.close_cause(), Some(CloseCause::CloseTimeout));
}

#[test]
fn timers_are_off_by_default() {
    let mut pair = Pair::new(Limits::default());
    assert_eq!(pair.server.poll_timeout(), None);
    pair.advance(Duration::from_secs(24 * 3600));
    assert_eq!(pair.server.state(), State::Open);
    assert!(pair.server.poll_transmit().is_none());
}

// Prepared messages and the transmit queue.

#[test]
fn send_prepared_yields_the_identical_bytes() {
    for len in [0, 5, 125, 126, 4095, 4096, 70_000] {
        let text = PreparedMessage::text(text_of_len(len));
        let binary = PreparedMessage::binary(binary_of_len(len));
        let mut server = Connection::new(Role::Server, Limits::default());
        server.send_prepared(&text).unwrap();
        server.send_prepared(&binary).unwrap();
        let mut expected = BytesMut::from(&text.as_bytes()[..]);
        expected.extend_from_slice(binary.as_bytes());
        assert_eq!(server.queued_len(), expected.len());
        assert_eq!(drain_transmit(&mut server), expected, "len {len}");
        assert_eq!(server.queued_len(), 0);
        // The same bytes as a plain send.
        let mut plain = Connection::new(Role::Server, Limits::default());
        plain.send(Message::text(text_of_len(len))).unwrap();
        plain.send(Message::binary(binary_of_len(len))).unwrap();
        assert_eq!(drain_transmit(&mut plain), expected, "len {len}");
    }
}

#[test]
fn shares_large_prepared_frames_without_copying() {
    let msg = PreparedMessage::binary(vec![7u8; 10_000]);
    let mut server = Connection::new(Role::Server, Limits::default());
    server.send_prepared(&msg).unwrap();
    let out = server.poll_transmit().unwrap();
    assert_eq!(out.as_ptr(), msg.as_bytes().as_ptr());
    assert_eq!(out.len(), msg.len());
}

#[test]
fn client_cannot_send_prepared_messages() {
    let mut pair = Pair::new(Limits::default());
    assert_eq!(
        pair.client.send_prepared(&PreparedMessage::text("hi")),
        Err(Error::PreparedFromClient)
    );
    assert!(pair.client.poll_transmit().is_none());
    assert_eq!(Error::PreparedFromClient.close_code(), None);
}

#[test]
fn keeps_large_and_small_messages_in_order() {
    let mut pair = Pair::new(Limits::default());
    let big = |seed: u8, len: usize| -> Bytes {
        (0..len).map(|i| seed.wrapping_add((i % 253) as u8)).collect()
    };
    let prepared_big = PreparedMessage::binary(big(9, 8192));
    let mut expected = Vec::new();
    for round in 0..4u8 {
        let small = Bytes::from(vec![round; 3]);
        pair.server.send(Message::Binary(small.clone())).unwrap();
        expected.push(Event::Binary(small));
        let large = big(round, 5000 + usize::from(round) * 1000);
        pair.server.send(Message::Binary(large.clone())).unwrap();
        expected.push(Event::Binary(large));
        pair.server.send(Message::text(format!("small {round}"))).unwrap();
        expected.push(Event::Text(format!("small {round}").into()));
        pair.server.send_prepared(&prepared_big).unwrap();
        expected.push(Event::Binary(big(9, 8192)));
        pair.server.send_prepared(&PreparedMessage::text("tiny")).unwrap();
        expected.push(Event::Text("tiny".into()));
    }
    let queued = pair.server.queued_len();
    let wire = drain_transmit(&mut pair.server);
    assert_eq!(wire.len(), queued);
    pair.feed_client(&wire).unwrap();
    assert_eq!(pair.client_events(), expected);
}

#[test]
fn client_transmits_large_payloads_intact_and_in_order() {
    let mut pair = Pair::new(Limits::default());
    let mut expected = Vec::new();
    for round in 0..3u8 {
        let large: Bytes =
            (0..6000 + usize::from(round)).map(|i| (i % 256) as u8 ^ round).collect();
        pair.client.send(Message::Binary(large.clone())).unwrap();
        expected.push(Event::Binary(large));
        pair.client.send(Message::text("after")).unwrap();
        expected.push(Event::Text("after".into()));
    }
    pair.client_to_server().unwrap();
    assert_eq!(pair.server_events(), expected);
}

#[test]
fn coalesces_small_frames_into_one_buffer() {
    let mut server = Connection::new(Role::Server, Limits::default());
    for i in 0..10 {
        server.send(Message::text(format!("message {i}"))).unwrap();
    }
    let first = server.poll_transmit().unwrap();
    assert_eq!(decode_frames(&first).len(), 10);
    assert!(server.poll_transmit().is_none());
}

// Read buffer bounds.

#[test]
fn read_buffer_stays_within_the_frame_limit_while_a_frame_arrives() {
    let max = 1 << 20;
    let mut pair = Pair::new(Limits::with_max_message_size(max));
    let payload = binary_of_len(max);
    let wire = raw_frame(0x82, Some(KEY), &payload);
    let header_len = 2 + 8 + 4;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    buf.extend_from_slice(&wire[..header_len]);
    pair.server.handle_read(&mut buf, pair.now).unwrap();
    assert!(buf.capacity() <= 2 * (max + MAX_HEADER_LEN), "{}", buf.capacity());
    for piece in wire[header_len..].chunks(64 * 1024 - 3) {
        buf.extend_from_slice(piece);
        pair.server.handle_read(&mut buf, pair.now).unwrap();
        assert!(buf.capacity() <= 2 * (max + MAX_HEADER_LEN), "{}", buf.capacity());
    }
    assert_eq!(pair.server_events(), [Event::Binary(payload)]);
}

#[test]
fn rejects_over_limit_declared_length_before_buffering() {
    let max = 1 << 20;
    let mut pair = Pair::new(Limits::with_max_message_size(max));
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(max as u64 + 1).to_be_bytes());
    header.extend_from_slice(&KEY);
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&header);
    let err = pair.server.handle_read(&mut buf, pair.now).unwrap_err();
    assert_eq!(err, Error::FrameTooLarge { len: max as u64 + 1, max: max as u64 });
    assert!(buf.is_empty());
    assert!(buf.capacity() <= 64, "{}", buf.capacity());
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames[0].close_code(), Some(1009));
}

#[test]
fn read_buffer_stays_within_the_frame_limit_behind_a_shared_payload() {
    // A small frame first: its payload is split off and shared, so growing the buffer for the
    // large frame behind it cannot reuse the allocation in place.
    let max = 1 << 20;
    let mut pair = Pair::new(Limits::with_max_message_size(max));
    let payload = binary_of_len(max);
    let mut wire = raw_frame(0x81, Some(KEY), b"small").to_vec();
    wire.extend_from_slice(&raw_frame(0x82, Some(KEY), &payload));
    let mut buf = BytesMut::with_capacity(4096);
    let mut held = Vec::new();
    for piece in wire.chunks(50_000) {
        buf.extend_from_slice(piece);
        pair.server.handle_read(&mut buf, pair.now).unwrap();
        held.extend(pair.server_events());
        assert!(buf.capacity() <= 2 * (max + MAX_HEADER_LEN), "{}", buf.capacity());
    }
    assert_eq!(held, [Event::Text("small".into()), Event::Binary(payload)]);
}

#[test]
fn read_buffer_growth_stays_within_twice_the_frame_limit() {
    // Growth doubles allocations (amortized), so the bound is 2 × (limit + header).
    let max = 10_000;
    let mut pair = Pair::new(Limits::with_max_message_size(max));
    let wire = raw_frame(0x82, Some(KEY), &[7; 10_000]);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    for piece in wire.chunks(100) {
        buf.extend_from_slice(piece);
        pair.server.handle_read(&mut buf, pair.now).unwrap();
        assert!(buf.capacity() <= 2 * (max + MAX_HEADER_LEN), "{}", buf.capacity());
    }
    assert_eq!(pair.server_events(), [Event::Binary(vec![7; 10_000].into())]);
}

#[test]
fn a_tiny_header_does_not_reserve_the_declared_length() {
    let max = 16 << 20;
    let mut pair = Pair::new(Limits::with_max_message_size(max));
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(max as u64).to_be_bytes());
    header.extend_from_slice(&KEY);
    let mut buf = BytesMut::from(&header[..]);
    pair.server.handle_read(&mut buf, pair.now).unwrap();
    assert!(buf.capacity() <= 256 * 1024, "{}", buf.capacity());
}

// Lifecycle odds and ends.

#[test]
fn transport_loss_closes_abnormally() {
    let mut pair = Pair::new(Limits::default());
    pair.server.handle_transport_closed();
    assert_eq!(pair.server.state(), State::Closed);
    assert_eq!(pair.server.close_cause(), Some(CloseCause::Remote));
    assert_eq!(pair.server.close_code(), Some(CloseCode::ABNORMAL));
    assert!(pair.server.poll_transmit().is_none());
    // While closing, the loss ends a handshake this end started.
    pair.client.close(CloseCode::NORMAL, "", pair.now).unwrap();
    pair.client.handle_transport_closed();
    assert_eq!(pair.client.close_cause(), Some(CloseCause::Local));
    assert_eq!(pair.client.close_code(), Some(CloseCode::NORMAL));
}

#[test]
fn error_is_only_set_by_a_peer_violation() {
    let mut pair = Pair::new(Limits::default());
    pair.client.send(Message::text("fine")).unwrap();
    pair.client_to_server().unwrap();
    assert!(pair.server.send(Message::Ping(vec![0; 200].into())).is_err());
    assert_eq!(pair.server.error(), None);
    pair.client.close(CloseCode::NORMAL, "", pair.now).unwrap();
    pair.client_to_server().unwrap();
    pair.server_events();
    assert_eq!(pair.server.state(), State::Closed);
    assert_eq!(pair.server.error(), None);
}
