//! Peer violations: each one fails the connection with the right error, queues a close
//! frame with the right code (RFC 6455 §7.4.1), and leaves the connection closed.

use bytes::{Bytes, BytesMut};
use switchboard_codec::{
    CloseCause, CloseCode, CloseFrame, Error, Event, Limits, Message, OpCode, State,
};
use switchboard_test_support::pair::{Pair, drain_transmit, raw_frame, sent_frames};

const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// Masked client frame: what a server must receive.
fn masked(first_byte: u8, payload: &[u8]) -> BytesMut {
    raw_frame(first_byte, Some(KEY), payload)
}

/// Unmasked server frame: what a client must receive.
fn unmasked(first_byte: u8, payload: &[u8]) -> BytesMut {
    raw_frame(first_byte, None, payload)
}

fn concat(frames: &[BytesMut]) -> Vec<u8> {
    frames.concat()
}

/// Asserts that a read returned `expected` and that the failing side is closed with
/// exactly one close frame, carrying the error's close code.
fn assert_failed(pair: &mut Pair, server_side: bool, result: Result<(), Error>, expected: &Error) {
    assert_eq!(&result.expect_err("the read fails"), expected);
    let code = expected.close_code().expect("a peer violation has a close code");
    let conn = if server_side { &mut pair.server } else { &mut pair.client };
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(conn.error(), Some(expected));
    assert_eq!(conn.close_cause(), Some(CloseCause::ProtocolError));
    assert_eq!(conn.close_code(), Some(code));
    let frames = sent_frames(conn);
    let close: Vec<_> = frames.iter().filter(|f| f.header.opcode == OpCode::Close).collect();
    assert_eq!(close.len(), 1, "{frames:?}");
    assert_eq!(close[0].close_code(), Some(code.0));
    assert_eq!(close[0].header.mask.is_some(), !server_side);
    assert!(std::str::from_utf8(&close[0].payload[2..]).is_ok());
}

/// Feeds `wire` to a fresh server in one read and asserts the failure.
fn assert_server_rejects(wire: &[u8], expected: &Error) {
    let mut pair = Pair::new(Limits::default());
    let result = pair.feed_server(wire);
    assert_failed(&mut pair, true, result, expected);
}

/// Feeds `wire` to a fresh client in one read and asserts the failure.
fn assert_client_rejects(wire: &[u8], expected: &Error) {
    let mut pair = Pair::new(Limits::default());
    let result = pair.feed_client(wire);
    assert_failed(&mut pair, false, result, expected);
}

#[test]
fn rejects_unmasked_client_frame() {
    assert_server_rejects(&unmasked(0x81, b"hi"), &Error::UnmaskedFrame);
    assert_server_rejects(&unmasked(0x89, b""), &Error::UnmaskedFrame);
}

#[test]
fn rejects_masked_server_frame() {
    assert_client_rejects(&masked(0x82, b"hi"), &Error::MaskedFrame);
    assert_client_rejects(&masked(0x88, &1000u16.to_be_bytes()), &Error::MaskedFrame);
}

#[test]
fn rejects_reserved_bits() {
    for rsv in 1..8u8 {
        let b0 = 0x81 | rsv << 4;
        assert_server_rejects(&masked(b0, b"x"), &Error::ReservedBits(rsv));
        assert_client_rejects(&unmasked(b0, b"x"), &Error::ReservedBits(rsv));
        // On control frames too.
        assert_server_rejects(&masked(0x89 | rsv << 4, b""), &Error::ReservedBits(rsv));
    }
}

#[test]
fn rejects_each_reserved_opcode() {
    for op in [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        assert_server_rejects(&masked(0x80 | op, b"payload"), &Error::UnknownOpcode(op));
        assert_client_rejects(&unmasked(0x80 | op, b""), &Error::UnknownOpcode(op));
        // Even without FIN, before anything else about the frame is known.
        assert_server_rejects(&[op, 0x80], &Error::UnknownOpcode(op));
    }
}

#[test]
fn rejects_oversized_control_frame() {
    for op in [0x88, 0x89, 0x8a] {
        assert_server_rejects(&masked(op, &[b'a'; 126]), &Error::ControlFrameTooLarge(126));
        assert_client_rejects(&unmasked(op, &[0; 200]), &Error::ControlFrameTooLarge(126));
        // Found from the first two bytes: no need to wait for the extended length.
        assert_server_rejects(&[op, 0x80 | 127], &Error::ControlFrameTooLarge(127));
    }
}

#[test]
fn rejects_fragmented_control_frames() {
    // RFC 6455 §5.5: FIN clear on close, ping or pong.
    for op in [0x08, 0x09, 0x0a] {
        assert_server_rejects(&masked(op, b""), &Error::FragmentedControlFrame);
        assert_client_rejects(&unmasked(op, b""), &Error::FragmentedControlFrame);
    }
}

#[test]
fn rejects_continuation_without_start() {
    assert_server_rejects(&masked(0x80, b"orphan"), &Error::UnexpectedContinuation);
    assert_server_rejects(&masked(0x00, b"orphan"), &Error::UnexpectedContinuation);
    assert_client_rejects(&unmasked(0x80, b""), &Error::UnexpectedContinuation);
    // A finished fragmented message does not leave one open.
    let mut pair = Pair::new(Limits::default());
    pair.feed_server(&concat(&[masked(0x01, b"a"), masked(0x80, b"b")])).unwrap();
    assert_eq!(pair.server_events(), [Event::Text("ab".into())]);
    let result = pair.feed_server(&masked(0x80, b"c"));
    assert_failed(&mut pair, true, result, &Error::UnexpectedContinuation);
}

#[test]
fn rejects_new_data_frame_while_fragmented() {
    for second in [0x81, 0x01, 0x82, 0x02] {
        let wire = concat(&[masked(0x01, b"start"), masked(second, b"again")]);
        assert_server_rejects(&wire, &Error::ExpectedContinuation);
        let wire = concat(&[unmasked(0x02, b"start"), unmasked(second, b"again")]);
        assert_client_rejects(&wire, &Error::ExpectedContinuation);
    }
}

#[test]
fn rejects_length_with_top_bit_set() {
    let mut wire = vec![0x82, 0x80 | 127];
    wire.extend_from_slice(&(1u64 << 63 | 70_000).to_be_bytes());
    wire.extend_from_slice(&KEY);
    assert_server_rejects(&wire, &Error::InvalidLength);
    let mut wire = vec![0x82, 127];
    wire.extend_from_slice(&u64::MAX.to_be_bytes());
    assert_client_rejects(&wire, &Error::InvalidLength);
}

#[test]
fn rejects_non_minimal_length_encodings() {
    // RFC 6455 §5.2: "the minimal number of bytes MUST be used".
    assert_server_rejects(&[0x82, 0x80 | 126, 0, 5], &Error::InvalidLength);
    let mut wire = vec![0x82, 0x80 | 127];
    wire.extend_from_slice(&300u64.to_be_bytes());
    assert_server_rejects(&wire, &Error::InvalidLength);
}

#[test]
fn rejects_invalid_utf8_in_a_single_frame() {
    for bad in [&b"\xff"[..], b"ok\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"abc\xe2\x82"] {
        assert_server_rejects(&masked(0x81, bad), &Error::InvalidUtf8);
        assert_client_rejects(&unmasked(0x81, bad), &Error::InvalidUtf8);
    }
}

#[test]
fn rejects_invalid_utf8_split_across_fragments_before_the_message_ends() {
    let mut pair = Pair::new(Limits::default());
    // "κό" and the lead byte of a surrogate, whose continuation arrives in the next
    // fragment: invalid only once both are seen.
    let mut first = "κό".as_bytes().to_vec();
    first.push(0xed);
    let first_bytes = masked(0x01, &first);
    pair.feed_server(&first_bytes).unwrap();
    assert_eq!(pair.server.state(), State::Open);
    // The bad byte arrives in a non-final fragment: fail there, not at the end.
    let result = pair.feed_server(&masked(0x00, b"\xa0\x80 and more"));
    assert_failed(&mut pair, true, result, &Error::InvalidUtf8);
    assert_eq!(pair.server_events(), []);
}

#[test]
fn rejects_invalid_utf8_mid_frame_before_the_payload_completes() {
    let payload = b"hello \xf5 world, and a long tail that has not arrived yet";
    let wire = masked(0x81, payload);
    let bad_at = 6;
    // Header (2 + 4 bytes) and the payload up to and including the invalid byte.
    let cut = 6 + bad_at + 1;
    let mut pair = Pair::new(Limits::default());
    pair.feed_server(&wire[..cut - 1]).unwrap();
    assert_eq!(pair.server.state(), State::Open);
    let result = pair.feed_server(&wire[cut - 1..cut]);
    assert_failed(&mut pair, true, result, &Error::InvalidUtf8);
}

#[test]
fn rejects_invalid_utf8_mid_fragment_of_a_text_message() {
    let mut pair = Pair::new(Limits::default());
    pair.feed_server(&masked(0x01, "ok ".as_bytes())).unwrap();
    let wire = masked(0x00, b"still ok \xc1 then more");
    pair.feed_server(&wire[..6 + 9]).unwrap();
    // The payload up to and including the invalid 0xc1: no need to see the rest.
    let result = pair.feed_server(&wire[6 + 9..6 + 10]);
    assert_failed(&mut pair, true, result, &Error::InvalidUtf8);
}

#[test]
fn rejects_text_message_ending_inside_a_character() {
    let wire = concat(&[masked(0x01, "€".as_bytes()), masked(0x80, b"\xe2\x82")]);
    assert_server_rejects(&wire, &Error::InvalidUtf8);
}

#[test]
fn does_not_validate_binary_messages_as_utf8() {
    let mut pair = Pair::new(Limits::default());
    let wire = concat(&[masked(0x82, b"\xff\xfe"), masked(0x02, b"\xed"), masked(0x80, b"\xa0")]);
    pair.feed_server(&wire).unwrap();
    assert_eq!(
        pair.server_events(),
        [
            Event::Binary(Bytes::from_static(b"\xff\xfe")),
            Event::Binary(Bytes::from_static(b"\xed\xa0"))
        ]
    );
}

#[test]
fn rejects_frame_over_max_frame_size_from_the_header_alone() {
    let mut limits = Limits::default();
    limits.max_frame_size = 1000;
    limits.max_message_size = 10_000;
    let mut pair = Pair::new(limits.clone());
    let wire = masked(0x82, &[0; 1001]);
    // 2 + 2 length + 4 key: the header, and not a byte of payload.
    let result = pair.feed_server(&wire[..8]);
    assert_failed(&mut pair, true, result, &Error::FrameTooLarge { len: 1001, max: 1000 });
    // A frame exactly at the limit is fine.
    let mut pair = Pair::new(limits);
    pair.feed_server(&masked(0x82, &[0; 1000])).unwrap();
    assert_eq!(pair.server_events(), [Event::Binary(vec![0; 1000].into())]);
}

#[test]
fn rejects_fragmented_message_over_max_message_size_from_the_header_alone() {
    let mut limits = Limits::default();
    limits.max_frame_size = 100;
    limits.max_message_size = 150;
    let mut pair = Pair::new(limits);
    let wire =
        concat(&[masked(0x01, &[b'a'; 100]), masked(0x89, b"ping"), masked(0x00, &[b'b'; 50])]);
    pair.feed_server(&wire).unwrap();
    assert_eq!(pair.server_events(), [Event::Ping(Bytes::from_static(b"ping"))]);
    drain_transmit(&mut pair.server);
    // 150 bytes so far; the next fragment's header alone decides.
    let next = masked(0x80, &[b'c'; 1]);
    let result = pair.feed_server(&next[..6]);
    assert_failed(&mut pair, true, result, &Error::MessageTooLarge { len: 151, max: 150 });
}

#[test]
fn rejects_single_frame_message_over_max_message_size() {
    let mut limits = Limits::default();
    limits.max_frame_size = 1000;
    limits.max_message_size = 500;
    let mut pair = Pair::new(limits);
    let wire = masked(0x81, &[b'a'; 501]);
    let result = pair.feed_server(&wire[..8]);
    assert_failed(&mut pair, true, result, &Error::MessageTooLarge { len: 501, max: 500 });
}

#[test]
fn rejects_one_byte_close_payload() {
    assert_server_rejects(&masked(0x88, &[0x03]), &Error::CloseFrameTooShort);
    assert_client_rejects(&unmasked(0x88, &[0x03]), &Error::CloseFrameTooShort);
}

#[test]
fn accepts_exactly_the_sendable_close_codes() {
    for code in 0..=5000u16 {
        let mut pair = Pair::new(Limits::default());
        let result = pair.feed_server(&masked(0x88, &code.to_be_bytes()));
        let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
        if sendable {
            assert_eq!(result, Ok(()), "code {code}");
            assert_eq!(
                pair.server_events(),
                [Event::Close(Some(CloseFrame { code: CloseCode(code), reason: String::new() }))]
            );
            let frames = sent_frames(&mut pair.server);
            assert_eq!(frames.len(), 1, "code {code}");
            assert_eq!(frames[0].close_code(), Some(code));
            assert_eq!(pair.server.close_cause(), Some(CloseCause::Remote));
        } else {
            assert_failed(&mut pair, true, result, &Error::InvalidCloseCode(code));
        }
    }
}

#[test]
fn rejects_close_reason_with_invalid_utf8() {
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"bad \xff reason");
    assert_server_rejects(&masked(0x88, &body), &Error::InvalidUtf8);
    assert_client_rejects(&unmasked(0x88, &body), &Error::InvalidUtf8);
}

#[test]
fn fails_after_the_events_before_the_violation_are_polled() {
    let wire = concat(&[masked(0x81, b"first"), masked(0x89, b"p"), unmasked(0x81, b"bad")]);
    let mut pair = Pair::new(Limits::default());
    // The read that decoded valid frames succeeds; the violation waits behind their events.
    assert_eq!(pair.feed_server(&wire), Ok(()));
    assert_eq!(pair.server.state(), State::Open);
    assert_eq!(pair.server.error(), None);
    assert_eq!(pair.server.poll_event(), Some(Event::Text("first".into())));
    assert_eq!(pair.server.poll_event(), Some(Event::Ping(Bytes::from_static(b"p"))));
    assert_eq!(pair.server.state(), State::Open);
    // Reads in between are ignored.
    assert_eq!(pair.feed_server(&masked(0x81, b"ignored")), Ok(()));
    // Polling past the last event applies the failure.
    assert_eq!(pair.server.poll_event(), None);
    assert_eq!(pair.server.state(), State::Closed);
    assert_eq!(pair.server.error(), Some(&Error::UnmaskedFrame));
    assert_eq!(pair.server.close_cause(), Some(CloseCause::ProtocolError));
    assert_eq!(pair.server.close_code(), Some(CloseCode::PROTOCOL_ERROR));
    // The valid frames are answered first (RFC 6455 processes frames in order).
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0].header.opcode, OpCode::Pong);
    assert_eq!(frames[1].close_code(), Some(1002));
    assert_eq!(pair.server_events(), []);
}

#[test]
fn fails_at_once_when_earlier_events_were_already_polled() {
    let mut pair = Pair::new(Limits::default());
    pair.feed_server(&masked(0x81, b"first")).unwrap();
    assert_eq!(pair.server_events(), [Event::Text("first".into())]);
    let result = pair.feed_server(&unmasked(0x81, b"bad"));
    assert_failed(&mut pair, true, result, &Error::UnmaskedFrame);
}

#[test]
fn fails_once_unpolled_events_from_an_earlier_read_are_polled() {
    let mut pair = Pair::new(Limits::default());
    pair.feed_server(&masked(0x81, b"earlier")).unwrap();
    // The earlier event is not polled before the next read, which is a violation.
    let _ = pair.feed_server(&unmasked(0x81, b"bad"));
    assert_eq!(pair.server_events(), [Event::Text("earlier".into())]);
    assert_eq!(pair.server.state(), State::Closed);
    assert_eq!(pair.server.error(), Some(&Error::UnmaskedFrame));
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), Some(1002));
}

#[test]
fn a_violation_behind_unpolled_events_from_an_earlier_read_waits_for_them() {
    let mut pair = Pair::new(Limits::default());
    pair.feed_server(&masked(0x81, b"earlier")).unwrap();
    // The earlier message is still waiting: it is answered before the connection fails.
    assert_eq!(pair.feed_server(&unmasked(0x81, b"bad")), Ok(()));
    assert_eq!(pair.server.state(), State::Open);
    assert_eq!(pair.server.poll_event(), Some(Event::Text("earlier".into())));
    pair.server.send(Message::text("answer")).unwrap();
    assert_eq!(pair.server.poll_event(), None);
    assert_eq!(pair.server.error(), Some(&Error::UnmaskedFrame));
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].close_code(), Some(1002));
}

#[test]
fn ignores_bytes_after_a_failure() {
    let mut pair = Pair::new(Limits::default());
    let result = pair.feed_server(&unmasked(0x81, b"bad"));
    assert_failed(&mut pair, true, result, &Error::UnmaskedFrame);
    assert_eq!(pair.feed_server(&masked(0x81, b"later")), Ok(()));
    assert_eq!(pair.server_events(), []);
    assert!(pair.server.poll_transmit().is_none());
}

#[test]
fn violation_while_closing_sends_no_second_close() {
    let mut pair = Pair::new(Limits::default());
    pair.server.close(CloseCode::NORMAL, "", pair.now).unwrap();
    let frames = sent_frames(&mut pair.server);
    assert_eq!(frames.len(), 1);
    let result = pair.feed_server(&unmasked(0x81, b"bad"));
    assert_eq!(result, Err(Error::UnmaskedFrame));
    assert_eq!(pair.server.state(), State::Closed);
    assert_eq!(pair.server.close_cause(), Some(CloseCause::ProtocolError));
    // The close frame already sent stands, with its code.
    assert!(pair.server.poll_transmit().is_none());
    assert_eq!(pair.server.close_code(), Some(CloseCode::NORMAL));
}
