//! Properties over random inputs: masking against the RFC's bytewise loop, frame header
//! encode → parse, message round trips, and arbitrary peer bytes (never a panic, a close
//! code for every failure, the same result however the bytes are cut).

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use switchboard_codec::{
    Error, Event, FrameHeader, Limits, Message, OpCode, Role, State, apply_mask,
    apply_mask_bytewise,
};
use switchboard_test_support::pair::{Outcome, Pair, decode_split, raw_frame};

fn opcode() -> impl Strategy<Value = OpCode> {
    prop_oneof![
        Just(OpCode::Continuation),
        Just(OpCode::Text),
        Just(OpCode::Binary),
        Just(OpCode::Close),
        Just(OpCode::Ping),
        Just(OpCode::Pong),
    ]
}

/// Lengths from every encoding class, with their edges, up to the 63-bit maximum.
fn payload_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..=125u64,
        126..=0xffffu64,
        0x1_0000..=(u64::MAX >> 1),
        prop::sample::select(vec![0, 125, 126, 127, 0xffff, 0x1_0000, u64::MAX >> 1]),
    ]
}

/// Headers that RFC 6455 §5.2 allows on the wire: control frames are final and short.
fn header() -> impl Strategy<Value = FrameHeader> {
    (opcode(), any::<bool>(), 0..8u8, any::<Option<[u8; 4]>>(), payload_len()).prop_map(
        |(opcode, fin, rsv, mask, len)| {
            let control = opcode.is_control();
            FrameHeader {
                fin: fin || control,
                rsv,
                opcode,
                mask,
                payload_len: if control { len % 126 } else { len },
            }
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<String>().prop_map(Message::text),
        vec(any::<u8>(), 0..300).prop_map(Message::binary),
        // Past the 126 and 4 KiB thresholds.
        (0..9000usize, any::<u8>()).prop_map(|(n, b)| Message::binary(vec![b; n])),
        "[a-zé€𝄞]{0,3000}".prop_map(Message::text),
    ]
}

/// One peer frame, mostly well-formed, sometimes not: any first byte, a missing mask,
/// invalid UTF-8, a short close body.
fn peer_frame(masked: bool) -> impl Strategy<Value = BytesMut> {
    let first_byte = prop_oneof![
        4 => prop::sample::select(vec![0x81u8, 0x82, 0x01, 0x02, 0x00, 0x80, 0x89, 0x8a, 0x88]),
        1 => any::<u8>(),
    ];
    let payload = prop_oneof![
        4 => any::<String>().prop_map(String::into_bytes),
        2 => vec(any::<u8>(), 0..200),
        1 => (any::<u16>(), "[a-z]{0,10}").prop_map(|(code, reason)| {
            let mut body = code.to_be_bytes().to_vec();
            body.extend_from_slice(reason.as_bytes());
            body
        }),
    ];
    let mask = prop_oneof![
        12 => any::<[u8; 4]>().prop_map(move |k| masked.then_some(k)),
        1 => any::<Option<[u8; 4]>>(),
    ];
    (first_byte, mask, payload).prop_map(|(b0, mask, payload)| raw_frame(b0, mask, &payload))
}

fn peer_stream(masked: bool) -> impl Strategy<Value = Vec<u8>> {
    vec(peer_frame(masked), 0..10).prop_map(|frames| frames.concat())
}

/// A stream and ascending cut points into it.
fn cut(stream: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    stream.prop_flat_map(|wire| {
        let len = wire.len();
        let cuts = vec(0..=len, 0..16).prop_map(|mut v| {
            v.sort_unstable();
            v
        });
        (Just(wire), cuts)
    })
}

/// What must hold after any input: text is UTF-8, and a failure closed the connection with
/// a close frame carrying the error's code.
fn check_invariants(outcome: &Outcome) -> Result<(), TestCaseError> {
    for event in &outcome.events {
        if let Event::Text(text) = event {
            prop_assert!(std::str::from_utf8(text).is_ok());
        }
    }
    if let Some(err) = &outcome.error {
        let code = err.close_code();
        prop_assert!(code.is_some(), "peer input gave a caller error: {:?}", err);
        prop_assert_eq!(outcome.state, State::Closed);
        // Nothing is read after a close frame, so a failure always comes while open and
        // queues its own close frame last.
        let last = outcome.answers.last();
        prop_assert_eq!(last.map(|(op, _)| *op), Some(OpCode::Close));
        let sent =
            last.and_then(|(_, body)| body.get(..2)).map(|b| u16::from_be_bytes([b[0], b[1]]));
        prop_assert_eq!(sent, code.map(|c| c.0));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn apply_mask_matches_bytewise(
        data in vec(any::<u8>(), 0..600),
        key in any::<[u8; 4]>(),
        offset in 0usize..1024,
    ) {
        let mut fast = data.clone();
        let mut slow = data.clone();
        apply_mask(&mut fast, key, offset);
        apply_mask_bytewise(&mut slow, key, offset);
        prop_assert_eq!(&fast, &slow);
        // Masking is its own inverse.
        apply_mask(&mut fast, key, offset);
        prop_assert_eq!(fast, data);
    }

    #[test]
    fn masking_in_pieces_matches_masking_whole(
        (data, at) in vec(any::<u8>(), 0..300).prop_flat_map(|d| {
            let len = d.len();
            (Just(d), 0..=len)
        }),
        key in any::<[u8; 4]>(),
    ) {
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data;
        let (head, tail) = pieces.split_at_mut(at);
        apply_mask(head, key, 0);
        apply_mask(tail, key, at);
        prop_assert_eq!(pieces, whole);
    }

    #[test]
    fn frame_header_round_trips(h in header(), trailing in vec(any::<u8>(), 0..20)) {
        let mut out = BytesMut::new();
        h.encode(&mut out);
        prop_assert_eq!(out.len(), h.encoded_len());
        let header_len = out.len();
        for cut in 0..header_len {
            prop_assert_eq!(FrameHeader::parse(&out[..cut]), Ok(None), "cut at {}", cut);
        }
        out.extend_from_slice(&trailing);
        prop_assert_eq!(FrameHeader::parse(&out), Ok(Some((h, header_len))));
    }

    #[test]
    fn round_trips_random_messages_both_ways(msgs in vec(message(), 1..8)) {
        let expected: Vec<Event> = msgs
            .iter()
            .map(|m| match m {
                Message::Text(t) => Event::Text(t.clone()),
                Message::Binary(b) => Event::Binary(b.clone()),
                other => unreachable!("the strategy makes data messages only: {other:?}"),
            })
            .collect();
        let mut pair = Pair::new(Limits::default());
        for msg in &msgs {
            pair.client.send(msg.clone()).unwrap();
            pair.server.send(msg.clone()).unwrap();
        }
        pair.client_to_server().unwrap();
        pair.server_to_client().unwrap();
        prop_assert_eq!(&pair.server_events(), &expected);
        prop_assert_eq!(pair.client_events(), expected);
    }

    #[test]
    fn server_reads_any_frames_the_same_however_cut((wire, cuts) in cut(peer_stream(true))) {
        let whole = decode_split(Role::Server, Limits::default(), &wire, &[]);
        check_invariants(&whole)?;
        prop_assert_eq!(decode_split(Role::Server, Limits::default(), &wire, &cuts), whole);
    }

    #[test]
    fn client_reads_any_frames_the_same_however_cut((wire, cuts) in cut(peer_stream(false))) {
        let whole = decode_split(Role::Client, Limits::default(), &wire, &[]);
        check_invariants(&whole)?;
        prop_assert_eq!(decode_split(Role::Client, Limits::default(), &wire, &cuts), whole);
    }

    #[test]
    fn small_limits_fail_the_same_however_cut(
        (wire, cuts) in cut(peer_stream(true)),
        max_frame in 0usize..150,
        max_message in 0usize..400,
    ) {
        let mut limits = Limits::default();
        limits.max_frame_size = max_frame;
        limits.max_message_size = max_message;
        let whole = decode_split(Role::Server, limits.clone(), &wire, &[]);
        check_invariants(&whole)?;
        for event in &whole.events {
            if let Event::Text(data) | Event::Binary(data) = event {
                prop_assert!(data.len() <= max_message);
            }
        }
        prop_assert_eq!(decode_split(Role::Server, limits, &wire, &cuts), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic((wire, cuts) in cut(vec(any::<u8>(), 0..400))) {
        for role in [Role::Server, Role::Client] {
            let whole = decode_split(role, Limits::default(), &wire, &[]);
            check_invariants(&whole)?;
            prop_assert_eq!(decode_split(role, Limits::default(), &wire, &cuts), whole);
        }
    }
}

#[test]
fn failures_carry_their_close_code_in_the_close_frame() {
    // A deterministic spot check of the invariant the properties above rely on.
    let outcome = decode_split(Role::Server, Limits::default(), &raw_frame(0x81, None, b"x"), &[]);
    assert_eq!(outcome.error, Some(Error::UnmaskedFrame));
    assert_eq!(outcome.answers.len(), 1);
    assert_eq!(outcome.answers[0].0, OpCode::Close);
    assert_eq!(&outcome.answers[0].1[..2], &1002u16.to_be_bytes());
    assert_eq!(Bytes::from_static(b"unmasked frame from client"), outcome.answers[0].1.slice(2..));
}
