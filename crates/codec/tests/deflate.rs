//! permessage-deflate (RFC 7692) through whole connections: round trips in both
//! directions with and without context takeover, the RFC's examples on the wire, RSV1
//! rules, compressed messages cut at every byte, shared compressed frames, window sizes
//! and a decompression bomb.

use std::time::Instant;

use bytes::Bytes;
use proptest::prelude::*;
use switchboard_codec::handshake::Extension;
use switchboard_codec::{
    CloseCode, Connection, DeflateConfig, DeflateParams, Error, Event, FrameHeader, Limits,
    Message, OpCode, PreparedMessage, RSV1, Role, State,
};
use switchboard_test_support::pair::{
    Frame, decode_frames, deflate_bomb, drain_transmit, feed_split, raw_frame, sent_frames,
};

const KEY_A: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const KEY_B: [u8; 4] = [0x00, 0xff, 0x80, 0x01];

/// RFC 7692 §7.2.3.1: "Hello" compressed, tail removed.
const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

/// A fixed instant to pass as `now`: no timer is armed in these tests.
#[allow(clippy::disallowed_methods)] // Tests need some instant; the codec never reads a clock.
fn start() -> Instant {
    Instant::now()
}

fn config(min_size: usize) -> DeflateConfig {
    let mut config = DeflateConfig::default();
    config.enabled = true;
    config.min_size = min_size;
    config
}

fn pair(params: DeflateParams, config: &DeflateConfig, limits: Limits) -> (Connection, Connection) {
    (
        Connection::with_deflate(Role::Client, limits.clone(), params, config),
        Connection::with_deflate(Role::Server, limits, params, config),
    )
}

/// Moves everything `from` queued to `to`, returning the frames on the wire and the
/// events `to` decoded.
fn carry(from: &mut Connection, to: &mut Connection) -> (Vec<Frame>, Vec<Event>) {
    let wire = drain_transmit(from);
    let frames = decode_frames(&wire);
    (frames, feed_split(to, &wire, &[], start()))
}

fn messages(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| match i % 4 {
            0 => Message::text(format!("{{\"channel\":\"news\",\"seq\":{i},\"body\":\"hello\"}}")),
            1 => Message::text("short"),
            2 => Message::binary(vec![(i % 251) as u8; 100 + i]),
            _ => Message::text(format!("{} é€𝄞", "the same words again and again ".repeat(i % 9))),
        })
        .collect()
}

fn event_of(msg: &Message) -> Event {
    match msg {
        Message::Text(b) => Event::Text(b.clone()),
        Message::Binary(b) => Event::Binary(b.clone()),
        other => panic!("not a data message: {other:?}"),
    }
}

#[test]
fn round_trips_with_and_without_context_takeover() {
    for server_nct in [false, true] {
        for client_nct in [false, true] {
            for (server_bits, client_bits) in [(None, None), (Some(9), Some(9)), (Some(12), None)] {
                let params = DeflateParams {
                    server_no_context_takeover: server_nct,
                    client_no_context_takeover: client_nct,
                    server_max_window_bits: server_bits,
                    client_max_window_bits: client_bits,
                };
                let cfg = config(16);
                let (mut client, mut server) = pair(params, &cfg, Limits::default());
                let msgs = messages(60);
                for client_sends in [true, false] {
                    let (from, to) = if client_sends {
                        (&mut client, &mut server)
                    } else {
                        (&mut server, &mut client)
                    };
                    for msg in &msgs {
                        from.send(msg.clone()).unwrap();
                    }
                    let (frames, events) = carry(from, to);
                    assert_eq!(events, msgs.iter().map(event_of).collect::<Vec<_>>(), "{params:?}");
                    for (frame, msg) in frames.iter().zip(&msgs) {
                        let (Message::Text(data) | Message::Binary(data)) = msg else { continue };
                        let compressed = frame.header.rsv == RSV1;
                        // Below the minimum size, plain; above it, compressed when smaller.
                        assert!(data.len() >= 16 || !compressed, "{params:?}");
                        if compressed {
                            assert!(frame.payload.len() < data.len());
                        }
                    }
                    assert!(frames.iter().filter(|f| f.header.rsv == RSV1).count() >= 15);
                }
                // Without context takeover in either direction nothing stays allocated.
                let idle = server_nct && client_nct;
                assert_eq!(!server.has_deflate_state(), idle, "{params:?}");
                assert_eq!(!client.has_deflate_state(), idle, "{params:?}");
            }
        }
    }
}

#[test]
fn context_takeover_makes_repeats_smaller() {
    let msg = Message::text("{\"channel\":\"prices\",\"data\":{\"bid\":101.25,\"ask\":101.5}}");
    let size = |nct: bool| {
        let params = DeflateParams { server_no_context_takeover: nct, ..Default::default() };
        let (mut client, mut server) = pair(params, &config(0), Limits::default());
        for _ in 0..5 {
            server.send(msg.clone()).unwrap();
        }
        let (frames, events) = carry(&mut server, &mut client);
        assert_eq!(events.len(), 5);
        frames.last().unwrap().payload.len()
    };
    assert!(size(false) < size(true) / 2, "{} vs {}", size(false), size(true));
}

#[test]
fn decodes_the_rfc_7692_hello_examples() {
    let now = start();
    let mut client = Connection::with_deflate(
        Role::Client,
        Limits::default(),
        DeflateParams::default(),
        &config(0),
    );
    // §7.2.3.1, then §7.2.3.2: the second message refers back into the first.
    let mut wire = raw_frame(0xc1, None, &HELLO).to_vec();
    wire.extend_from_slice(&[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
    // §7.2.3.1: the same message in two fragments.
    wire.extend_from_slice(&[0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00]);
    // §7.2.3.3: a stored block; §7.2.3.5: two blocks; §7.2.3.6: an empty message.
    wire.extend_from_slice(&raw_frame(
        0xc1,
        None,
        &[0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00],
    ));
    wire.extend_from_slice(&raw_frame(
        0xc1,
        None,
        &[0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00],
    ));
    wire.extend_from_slice(&[0xc2, 0x01, 0x00]);
    let events = feed_split(&mut client, &wire, &[], now);
    let hello = Event::Text("Hello".into());
    assert_eq!(
        events,
        [
            hello.clone(),
            hello.clone(),
            hello.clone(),
            hello.clone(),
            hello,
            Event::Binary(Bytes::new())
        ]
    );
    assert_eq!(client.error(), None);

    // §7.2.3.1's 7 bytes are longer than "Hello" itself, so this end sends it plain
    // (the compressor's bytes are checked against the RFC in the crate's unit tests).
    let msg = PreparedMessage::deflated_text("Hello", &config(0));
    assert_eq!(&msg.as_bytes()[..], b"\x81\x05Hello");
}

/// A client stream with a compressed text message in three fragments (a ping between
/// them, a character cut across fragments), a compressed binary message, a plain text
/// message and a close.
fn compressed_stream() -> (Vec<u8>, Vec<Event>) {
    let text = "fragmented and compressed: κόσμε 𝄞 ".repeat(20);
    let cfg = config(0);
    let body = PreparedMessage::deflated_text(&text, &cfg);
    let payload = payload_of(&body);
    let (a, rest) = payload.split_at(payload.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let binary = vec![7u8; 3000];
    let bin = PreparedMessage::deflated_binary(&binary, &cfg);
    let bin_payload = payload_of(&bin);
    let mut wire = Vec::new();
    wire.extend_from_slice(&raw_frame(0x41, Some(KEY_A), a));
    wire.extend_from_slice(&raw_frame(0x89, Some(KEY_B), b"ping"));
    wire.extend_from_slice(&raw_frame(0x00, Some(KEY_B), b));
    wire.extend_from_slice(&raw_frame(0x80, Some(KEY_A), c));
    wire.extend_from_slice(&raw_frame(0xc2, Some(KEY_A), bin_payload));
    wire.extend_from_slice(&raw_frame(0x81, Some(KEY_B), "plain ünïcode".as_bytes()));
    wire.extend_from_slice(&raw_frame(0x88, Some(KEY_A), b"\x03\xe8"));
    let events = vec![
        Event::Ping("ping".into()),
        Event::Text(text.into()),
        Event::Binary(binary.into()),
        Event::Text("plain ünïcode".into()),
        Event::Close(Some(switchboard_codec::CloseFrame {
            code: CloseCode::NORMAL,
            reason: String::new(),
        })),
    ];
    (wire, events)
}

fn payload_of(msg: &PreparedMessage) -> &[u8] {
    assert!(msg.is_compressed());
    let Ok(Some((_, header_len))) = FrameHeader::parse(msg.as_bytes()) else {
        panic!("a prepared message is a whole frame")
    };
    &msg.as_bytes()[header_len..]
}

fn server_outcome(
    wire: &[u8],
    splits: &[usize],
    params: DeflateParams,
) -> (Vec<Event>, Option<Error>, State) {
    let mut server = Connection::with_deflate(Role::Server, Limits::default(), params, &config(0));
    let events = feed_split(&mut server, wire, splits, start());
    (events, server.error().cloned(), server.state())
}

#[test]
fn compressed_fragments_decode_the_same_at_every_split_point() {
    let (wire, expected) = compressed_stream();
    for params in [
        DeflateParams::default(),
        DeflateParams { client_no_context_takeover: true, ..Default::default() },
    ] {
        let whole = server_outcome(&wire, &[], params);
        assert_eq!(whole, (expected.clone(), None, State::Closed));
        for at in 0..=wire.len() {
            assert_eq!(server_outcome(&wire, &[at], params), whole, "split at {at}");
        }
        let every: Vec<usize> = (1..wire.len()).collect();
        assert_eq!(server_outcome(&wire, &every, params), whole, "byte by byte");
    }
}

fn fails_with(params: Option<DeflateParams>, wire: &[u8], expected: Error, code: CloseCode) {
    let mut server = match params {
        Some(p) => Connection::with_deflate(Role::Server, Limits::default(), p, &config(0)),
        None => Connection::new(Role::Server, Limits::default()),
    };
    feed_split(&mut server, wire, &[], start());
    assert_eq!(server.error(), Some(expected).as_ref());
    assert_eq!(server.close_code(), Some(code));
    let frames = sent_frames(&mut server);
    assert_eq!(frames.last().and_then(Frame::close_code), Some(code.0));
}

#[test]
fn rsv1_outside_the_first_data_frame_fails_with_1002() {
    let on = Some(DeflateParams::default());
    let first = raw_frame(0x41, Some(KEY_A), &HELLO[..3]);
    let mut continued = first.to_vec();
    continued.extend_from_slice(&raw_frame(0xc0, Some(KEY_A), &HELLO[3..]));
    fails_with(
        on,
        &continued,
        Error::MisplacedRsv1(OpCode::Continuation),
        CloseCode::PROTOCOL_ERROR,
    );
    for (b0, op) in [(0xc9, OpCode::Ping), (0xca, OpCode::Pong), (0xc8, OpCode::Close)] {
        fails_with(
            on,
            &raw_frame(b0, Some(KEY_A), b""),
            Error::MisplacedRsv1(op),
            CloseCode::PROTOCOL_ERROR,
        );
    }
    // RSV2 and RSV3 stay reserved; without deflate so does RSV1.
    fails_with(
        on,
        &raw_frame(0xa1, Some(KEY_A), b"x"),
        Error::ReservedBits(0b010),
        CloseCode::PROTOCOL_ERROR,
    );
    fails_with(
        None,
        &raw_frame(0xc1, Some(KEY_A), &HELLO),
        Error::ReservedBits(0b100),
        CloseCode::PROTOCOL_ERROR,
    );
}

#[test]
fn corrupt_compressed_data_and_bad_inflated_utf8_fail_with_1007() {
    let on = Some(DeflateParams::default());
    fails_with(
        on,
        &raw_frame(0xc1, Some(KEY_A), &[0xff, 0xff, 0xff]),
        Error::InvalidCompressedData,
        CloseCode::INVALID_PAYLOAD,
    );
    // A stored block holding 0xff, which is never UTF-8.
    let stored = [0x00, 0x01, 0x00, 0xfe, 0xff, 0xff];
    fails_with(
        on,
        &raw_frame(0xc1, Some(KEY_A), &stored),
        Error::InvalidUtf8,
        CloseCode::INVALID_PAYLOAD,
    );
    // The same bytes as binary are fine.
    let (events, error, _) =
        server_outcome(&raw_frame(0xc2, Some(KEY_A), &stored), &[], DeflateParams::default());
    assert_eq!((events, error), (vec![Event::Binary(vec![0xff].into())], None));
}

#[test]
fn a_decompression_bomb_is_cut_off_at_the_limit_with_1009() {
    // Under 1 MiB inflating to about 166 MB; the limit is 1 MiB. (The allocation bound
    // is measured in tests/deflate_bomb.rs, with a 2.6 GB bomb.)
    let payload = deflate_bomb(645_000);
    assert!(payload.len() < 1 << 20);
    let limits = Limits::with_max_message_size(1 << 20);
    let mut server =
        Connection::with_deflate(Role::Server, limits, DeflateParams::default(), &config(0));
    let wire = raw_frame(0xc2, Some(KEY_A), &payload);
    // Cut into reads, as a socket would deliver it.
    let splits: Vec<usize> = (1..wire.len()).step_by(65_536).collect();
    feed_split(&mut server, &wire, &splits, start());
    assert_eq!(server.error(), Some(&Error::InflatedTooLarge { max: 1 << 20 }));
    assert_eq!(server.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
    assert!(!server.has_deflate_state(), "freed on failure");
}

#[test]
fn compressed_bytes_count_against_the_message_limit_too() {
    let limits = Limits::with_max_message_size(10);
    let mut server =
        Connection::with_deflate(Role::Server, limits, DeflateParams::default(), &config(0));
    let mut wire = raw_frame(0x41, Some(KEY_A), &[0x00, 0x05, 0x00, 0xfa, 0xff, b'a']).to_vec();
    wire.extend_from_slice(&raw_frame(0x00, Some(KEY_A), b"bcde"));
    wire.extend_from_slice(&raw_frame(0x80, Some(KEY_A), b"\x00"));
    feed_split(&mut server, &wire, &[], start());
    assert_eq!(server.error(), Some(&Error::MessageTooLarge { len: 11, max: 10 }));
}

#[test]
fn uncompressed_messages_leave_the_context_alone() {
    // With context takeover both ways, plain messages between compressed ones must not
    // disturb either end's window.
    let text = Message::text("{\"channel\":\"prices\",\"data\":{\"bid\":101.25,\"ask\":101.5}}");
    let (mut client, mut server) = pair(DeflateParams::default(), &config(0), Limits::default());
    let binary = Message::binary(vec![7u8; 300]);
    let mut expected = Vec::new();
    for i in 0..6 {
        if i % 2 == 0 {
            server.send(text.clone()).unwrap();
            expected.push(event_of(&text));
        } else {
            server.send_uncompressed(text.clone()).unwrap();
            server.send_uncompressed(binary.clone()).unwrap();
            expected.extend([event_of(&text), event_of(&binary)]);
        }
    }
    server.send_uncompressed(Message::Ping(Bytes::from_static(b"p"))).unwrap();
    let (frames, events) = carry(&mut server, &mut client);
    let rsv: Vec<bool> = frames.iter().map(|f| f.header.rsv == RSV1).collect();
    assert_eq!(rsv, [true, false, false, true, false, false, true, false, false, false]);
    assert_eq!(events[..expected.len()], expected[..]);
    assert_eq!(events[expected.len()], Event::Ping(Bytes::from_static(b"p")));
    // Later compressed messages still refer back to the earlier ones: the context held.
    assert!(frames[6].payload.len() < frames[0].payload.len());
}

#[test]
fn shared_compressed_frames_go_out_unchanged() {
    let mut cfg = config(0);
    cfg.server_no_context_takeover = true;
    let text = "a publication for every subscriber ".repeat(10);
    let shared = PreparedMessage::deflated_text(&text, &cfg);
    assert!(shared.is_compressed());
    assert_eq!(shared.compressed_window_bits(), Some(15));
    // What the server answers a bare offer when it wants to share frames.
    let bare = Extension { name: "permessage-deflate".into(), params: vec![] };
    let offer = cfg.accept(&[bare]).unwrap();
    assert!(offer.server_no_context_takeover);
    for _ in 0..3 {
        let (mut client, mut server) = pair(offer, &cfg, Limits::default());
        assert!(server.accepts_prepared(&shared));
        server.send_prepared(&shared).unwrap();
        assert_eq!(server.poll_transmit().as_deref(), Some(&shared.as_bytes()[..]));
        client.handle_read(&mut shared.as_bytes()[..].into(), start()).unwrap();
        assert_eq!(client.poll_event(), Some(Event::Text(text.clone().into())));
        assert!(!server.has_deflate_state());
    }
}

#[test]
fn a_shared_frame_between_messages_with_context_takeover_decodes() {
    let cfg = config(0);
    let (mut client, mut server) = pair(DeflateParams::default(), &cfg, Limits::default());
    let text = "words the server repeats, words the server repeats ".repeat(3);
    let shared = PreparedMessage::deflated_text(&text, &cfg);
    server.send(Message::text(text.clone())).unwrap();
    server.send_prepared(&shared).unwrap();
    server.send(Message::text(text.clone())).unwrap();
    server.send(Message::text(text.clone())).unwrap();
    let (frames, events) = carry(&mut server, &mut client);
    assert!(frames.iter().all(|f| f.header.rsv == RSV1));
    assert_eq!(events, vec![Event::Text(text.into()); 4]);
    assert_eq!(client.error(), None);
}

#[test]
fn shared_compressed_frames_need_a_fitting_connection() {
    let shared = PreparedMessage::deflated_binary(vec![1u8; 1000], &config(0));
    let plain = PreparedMessage::binary(vec![1u8; 1000]);
    let mut no_deflate = Connection::new(Role::Server, Limits::default());
    assert!(!no_deflate.accepts_prepared(&shared));
    assert_eq!(no_deflate.send_prepared(&shared), Err(Error::PreparedNotNegotiated));
    assert!(no_deflate.accepts_prepared(&plain));
    let small = DeflateParams { server_max_window_bits: Some(10), ..Default::default() };
    let mut narrow = Connection::with_deflate(Role::Server, Limits::default(), small, &config(0));
    assert!(!narrow.accepts_prepared(&shared));
    assert_eq!(narrow.send_prepared(&shared), Err(Error::PreparedNotNegotiated));
    let mut cfg10 = config(0);
    cfg10.server_max_window_bits = 10;
    let fits = PreparedMessage::deflated_binary(vec![1u8; 1000], &cfg10);
    assert_eq!(fits.compressed_window_bits(), Some(10));
    narrow.send_prepared(&fits).unwrap();
    // Below the minimum size a "deflated" message is a plain one.
    assert!(!PreparedMessage::deflated_text("hi", &config(64)).is_compressed());
}

#[test]
fn a_window_of_8_bits_sends_plain_and_receives_compressed() {
    // zlib cannot compress with a 256-byte window: the server sends uncompressed
    // messages (RFC 7692 §6 allows it), while it still inflates what the client sends.
    let params = DeflateParams {
        server_max_window_bits: Some(8),
        client_max_window_bits: Some(8),
        ..Default::default()
    };
    let (mut client, mut server) = pair(params, &config(0), Limits::default());
    let text = "eight bits of window, eight bits of window ".repeat(20);
    server.send(Message::text(text.clone())).unwrap();
    let (frames, events) = carry(&mut server, &mut client);
    assert_eq!(frames[0].header.rsv, 0);
    assert_eq!(events, [Event::Text(text.clone().into())]);
    // A peer that does compress with 8 bits (here: a stored block, valid for any window).
    let stored = [0x00, 0x02, 0x00, 0xfd, 0xff, b'o', b'k', 0x00];
    let mut wire = raw_frame(0xc1, Some(KEY_A), &stored);
    server.handle_read(&mut wire, start()).unwrap();
    assert_eq!(server.poll_event(), Some(Event::Text("ok".into())));
    assert!(!server.accepts_prepared(&PreparedMessage::deflated_text(&text, &config(0))));
}

#[test]
fn nothing_is_allocated_until_a_message_needs_it() {
    let params = DeflateParams { server_no_context_takeover: true, ..Default::default() };
    let (mut client, mut server) = pair(params, &config(64), Limits::default());
    assert!(!server.has_deflate_state() && !client.has_deflate_state());
    // Under the minimum size nothing is compressed, so nothing is allocated.
    server.send(Message::text("tiny")).unwrap();
    carry(&mut server, &mut client);
    assert!(!server.has_deflate_state() && !client.has_deflate_state());
    // The client compresses with context takeover: its compressor and the server's
    // decompressor stay for the next message.
    client.send(Message::text("x".repeat(500))).unwrap();
    carry(&mut client, &mut server);
    assert!(server.has_deflate_state() && client.has_deflate_state());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any messages, any negotiated parameters, any cut of the stream: the receiver gets
    /// exactly what was sent.
    #[test]
    fn random_messages_round_trip(
        msgs in prop::collection::vec(
            prop_oneof![
                ".{0,300}".prop_map(Message::text),
                prop::collection::vec(0..4u8, 0..600).prop_map(Message::binary),
            ],
            1..12,
        ),
        server_nct in any::<bool>(),
        client_nct in any::<bool>(),
        bits in prop::option::of(8..=15u8),
        min_size in 0..64usize,
        level in 0..=9u32,
        split in any::<prop::sample::Index>(),
    ) {
        let params = DeflateParams {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: bits,
            client_max_window_bits: bits,
        };
        let mut cfg = config(min_size);
        cfg.level = level;
        let (mut client, mut server) = pair(params, &cfg, Limits::default());
        for msg in &msgs {
            client.send(msg.clone()).unwrap();
        }
        let wire = drain_transmit(&mut client);
        let at = split.index(wire.len() + 1);
        let events = feed_split(&mut server, &wire, &[at], start());
        prop_assert_eq!(events, msgs.iter().map(event_of).collect::<Vec<_>>());
        prop_assert_eq!(server.error(), None);
    }
}
