//! Reads cut anywhere: a transport hands over bytes in arbitrary pieces, so decoding a
//! stream split at any byte offsets must give the same events, the same error and the same
//! output as decoding it in one read.

use proptest::prelude::*;
use switchboard_codec::{Error, Event, Limits, OpCode, Role, State};
use switchboard_test_support::pair::{Outcome, decode_split, raw_frame};

const KEY_A: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const KEY_B: [u8; 4] = [0x00, 0xff, 0x80, 0x01];

fn decode(role: Role, wire: &[u8], splits: &[usize]) -> Outcome {
    decode_split(role, Limits::default(), wire, splits)
}

/// Frames as a client sends them, masked with `mask`: a text frame with multibyte UTF-8, a
/// text message in three fragments with a character cut across fragments and a ping
/// between them, binary frames in the 7- and 16-bit length classes, and a close.
fn stream(mask: impl Fn(usize) -> Option<[u8; 4]>) -> Vec<u8> {
    let parts: [(u8, Vec<u8>); 8] = [
        (0x81, "héllo wörld €𝄞".into()),
        (0x01, b"frag \xce".to_vec()),
        (0x89, b"ping in between".to_vec()),
        (0x00, b"\xba \xf0\x9d".to_vec()),
        (0x80, b"\x84\x9e end".to_vec()),
        (0x82, (0..=255u8).chain(0..44).collect()),
        (0x82, vec![0xa5; 7]),
        (0x88, b"\x03\xe8done".to_vec()),
    ];
    let mut wire = Vec::new();
    for (i, (b0, payload)) in parts.iter().enumerate() {
        wire.extend_from_slice(&raw_frame(*b0, mask(i), payload));
    }
    wire
}

fn client_stream() -> Vec<u8> {
    stream(|i| Some(if i % 2 == 0 { KEY_A } else { KEY_B }))
}

fn server_stream() -> Vec<u8> {
    stream(|_| None)
}

/// A client stream that breaks in the middle of a text frame's payload, with valid frames
/// and a ping before it and more bytes after it.
fn failing_stream() -> Vec<u8> {
    let mut wire = Vec::new();
    wire.extend_from_slice(&raw_frame(0x81, Some(KEY_A), "før".as_bytes()));
    wire.extend_from_slice(&raw_frame(0x89, Some(KEY_B), b"p"));
    wire.extend_from_slice(&raw_frame(0x81, Some(KEY_B), b"valid then \xe0\x80 invalid"));
    wire.extend_from_slice(&raw_frame(0x82, Some(KEY_A), b"never seen"));
    wire
}

fn assert_same_at_every_split(role: Role, wire: &[u8]) -> Outcome {
    let whole = decode(role, wire, &[]);
    for at in 0..=wire.len() {
        assert_eq!(decode(role, wire, &[at]), whole, "{role:?} split at {at}");
    }
    assert_eq!(decode(role, wire, &(1..wire.len()).collect::<Vec<_>>()), whole, "byte by byte");
    whole
}

#[test]
fn server_decodes_the_same_at_every_split_point() {
    let Outcome { events, answers, error, state } =
        assert_same_at_every_split(Role::Server, &client_stream());
    assert_eq!(state, State::Closed);
    // The reference itself is right.
    assert_eq!(error, None);
    assert_eq!(events.len(), 6);
    assert_eq!(events[0], Event::Text("héllo wörld €𝄞".into()));
    assert_eq!(events[1], Event::Ping("ping in between".into()));
    assert_eq!(events[2], Event::Text("frag κ 𝄞 end".into()));
    assert_eq!(events[3], Event::Binary((0..=255u8).chain(0..44).collect()));
    assert!(matches!(&events[5], Event::Close(Some(f)) if f.reason == "done"));
    // A pong and the close echo.
    assert_eq!(
        answers,
        [(OpCode::Pong, "ping in between".into()), (OpCode::Close, b"\x03\xe8"[..].into())]
    );
}

#[test]
fn client_decodes_the_same_at_every_split_point() {
    let Outcome { events, answers, error, .. } =
        assert_same_at_every_split(Role::Client, &server_stream());
    assert_eq!(error, None);
    assert_eq!(events.len(), 6);
    assert_eq!(events[2], Event::Text("frag κ 𝄞 end".into()));
    assert_eq!(
        answers,
        [(OpCode::Pong, "ping in between".into()), (OpCode::Close, b"\x03\xe8"[..].into())]
    );
}

#[test]
fn fails_the_same_at_every_split_point() {
    let Outcome { events, answers, error, state } =
        assert_same_at_every_split(Role::Server, &failing_stream());
    assert_eq!(state, State::Closed);
    assert_eq!(error, Some(Error::InvalidUtf8));
    assert_eq!(events, [Event::Text("før".into()), Event::Ping("p".into())]);
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0], (OpCode::Pong, "p".into()));
    assert_eq!((answers[1].0, &answers[1].1[..2]), (OpCode::Close, &1007u16.to_be_bytes()[..]));
}

#[test]
fn decodes_the_same_when_a_64_bit_length_header_is_split() {
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let mut wire = raw_frame(0x82, Some(KEY_A), &payload).to_vec();
    wire.extend_from_slice(&raw_frame(0x81, Some(KEY_B), "tail ✓".as_bytes()));
    let whole = decode(Role::Server, &wire, &[]);
    assert_eq!(whole.events, [Event::Binary(payload.into()), Event::Text("tail ✓".into())]);
    let frame_len = 14 + 70_000;
    let offsets = (0..=20).chain(frame_len - 3..=wire.len()).chain([1000, 4096, 65_536]);
    for at in offsets {
        assert_eq!(decode(Role::Server, &wire, &[at]), whole, "split at {at}");
    }
    // And in many reads, each unmasked and validated as it comes.
    let splits: Vec<usize> = (1..wire.len()).step_by(997).collect();
    assert_eq!(decode(Role::Server, &wire, &splits), whole);
}

/// Random ascending split points within `0..=len`.
fn splits(len: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..=len, 0..12).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

proptest! {
    #[test]
    fn server_decodes_the_same_in_random_pieces(cuts in splits(client_stream().len())) {
        let wire = client_stream();
        prop_assert_eq!(decode(Role::Server, &wire, &cuts), decode(Role::Server, &wire, &[]));
    }

    #[test]
    fn client_decodes_the_same_in_random_pieces(cuts in splits(server_stream().len())) {
        let wire = server_stream();
        prop_assert_eq!(decode(Role::Client, &wire, &cuts), decode(Role::Client, &wire, &[]));
    }

    #[test]
    fn fails_the_same_in_random_pieces(cuts in splits(failing_stream().len())) {
        let wire = failing_stream();
        prop_assert_eq!(decode(Role::Server, &wire, &cuts), decode(Role::Server, &wire, &[]));
    }
}
