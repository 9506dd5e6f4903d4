//! Writes the committed seed corpus: `cargo run --example seeds` from `fuzz/`.
//!
//! Each target gets a few valid inputs to start from (frames of every kind, a complete
//! handshake, commands of every type in both formats, a hub workout), so the fuzzer spends
//! its time near the accepting paths instead of rediscovering the formats. Deterministic:
//! fixed masking keys, no clock.

use std::fs;
use std::path::Path;

use switchboard_codec::{ClientHandshake, HandshakeLimits, ServerHandshake};
use switchboard_fuzz::script;
use switchboard_proto::Format;
use switchboard_test_support::pair::raw_frame;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)
    };
    for (name, bytes) in frames(Some(MASK)) {
        write("frame_header", name, &bytes)?;
    }
    for (name, input) in connection_scripts(Some(MASK)) {
        write("server_read", name, &input)?;
    }
    for (name, input) in connection_scripts(None) {
        write("client_read", name, &input)?;
    }
    for (name, bytes) in handshakes() {
        write("handshake_request", name, &bytes)?;
    }
    for (name, json) in commands() {
        write("proto_decode", &format!("{name}.json"), json.as_bytes())?;
        let value: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
        let packed = Format::Msgpack.encode(&value).expect("encodable");
        write("proto_decode", &format!("{name}.msgpack"), &packed)?;
    }
    for (name, ops) in hub_workouts() {
        write("hub_ops", name, &ops)?;
    }
    Ok(())
}

/// One frame of each kind and length encoding, masked with `mask`.
fn frames(mask: Option<[u8; 4]>) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("text", raw_frame(0x81, mask, b"Hello").to_vec()),
        ("binary-16", raw_frame(0x82, mask, &[7; 300]).to_vec()),
        ("binary-64", raw_frame(0x82, mask, &[7; 70_000])[..14].to_vec()),
        ("text-start", raw_frame(0x01, mask, b"Hel").to_vec()),
        ("continuation-end", raw_frame(0x80, mask, b"lo").to_vec()),
        ("ping", raw_frame(0x89, mask, b"are you there").to_vec()),
        ("pong", raw_frame(0x8a, mask, b"yes").to_vec()),
        ("close", raw_frame(0x88, mask, b"\x03\xe8bye").to_vec()),
    ]
}

/// Conversations with a connection whose peer masks with `mask` (a client) or not.
fn connection_scripts(mask: Option<[u8; 4]>) -> Vec<(&'static str, Vec<u8>)> {
    let frame = |first: u8, payload: &[u8]| raw_frame(first, mask, payload).to_vec();
    let small = Some((1024, 1024));
    let timers = [Some(50), Some(20), Some(500), Some(100)];

    let mut messages = script::config(None, [None; 4]);
    for bytes in [
        frame(0x81, "héllo ✓".as_bytes()),
        frame(0x82, &[0, 1, 2, 255]),
        frame(0x89, b"ping"),
        frame(0x8a, b""),
    ] {
        script::read(&mut messages, &bytes);
    }

    // A fragmented text message cut inside a multi-byte character, a ping between
    // fragments, then the peer's close.
    let mut fragments = script::config(small, [None; 4]);
    let mut wire = frame(0x01, "caf\u{e9}".as_bytes()[..4].as_ref());
    wire.extend(frame(0x89, b"mid"));
    wire.extend(frame(0x80, &"café".as_bytes()[4..]));
    wire.extend(frame(0x88, b"\x03\xe8done"));
    let (a, b) = wire.split_at(5);
    script::read(&mut fragments, a);
    script::read(&mut fragments, b);

    // This end closes, the peer keeps sending, then answers.
    let mut closing = script::config(small, timers);
    script::send(&mut closing, 0, b"bye soon");
    script::close(&mut closing, 1000, "done");
    script::read(&mut closing, &frame(0x81, b"late"));
    script::advance(&mut closing, 30);
    script::read(&mut closing, &frame(0x88, b"\x03\xe8"));

    // Keepalive: pings go out, a pong comes back, then the peer goes quiet.
    let mut keepalive = script::config(small, timers);
    script::next_timer(&mut keepalive);
    script::read(&mut keepalive, &frame(0x8a, b""));
    script::advance(&mut keepalive, 60);
    script::next_timer(&mut keepalive);
    script::next_timer(&mut keepalive);
    script::send(&mut keepalive, 2, b"app ping");

    // A message past the limits, declared in a 16-bit length.
    let mut too_big = script::config(Some((200, 100)), [None; 4]);
    script::read(&mut too_big, &frame(0x82, &[9; 150]));

    vec![
        ("messages", messages),
        ("fragments", fragments),
        ("closing", closing),
        ("keepalive", keepalive),
        ("too-big", too_big),
    ]
}

/// A request, the server's answer to it (for the fuzzed client), and the request's headers
/// as `from_parts` lines.
fn handshakes() -> Vec<(&'static str, Vec<u8>)> {
    let client = ClientHandshake::with_key(*b"switchboard-fuzz")
        .with_protocols(["switchboard.v1.json", "switchboard.v1.msgpack"]);
    let request = client.request(
        "localhost:8080",
        "/ws?token=abc",
        &[("Origin", "http://localhost"), ("Sec-WebSocket-Extensions", "permessage-deflate; x=1")],
    );
    let (hs, _) = ServerHandshake::parse(&request, &HandshakeLimits::default())
        .expect("a valid request")
        .expect("a complete request");
    let response = hs.response(Some("switchboard.v1.msgpack"), None);
    let parts = format!(
        "\u{1}GET\nHost: localhost\nUpgrade: websocket\nConnection: keep-alive, Upgrade\n\
         Sec-WebSocket-Version: 13\nSec-WebSocket-Key: {}\nSec-WebSocket-Protocol: a, b",
        client.key()
    );
    vec![("request", request), ("response", response), ("parts", parts.into_bytes())]
}

/// One command of each type, as JSON (the MessagePack seeds carry the same values).
fn commands() -> Vec<(&'static str, &'static str)> {
    vec![
        ("connect", r#"{"id":1,"type":"connect","token":"t","name":"js","version":"1.0"}"#),
        ("subscribe", r#"{"id":2,"type":"subscribe","channel":"chat:lobby"}"#),
        (
            "subscribe-since",
            r#"{"id":3,"type":"subscribe","channel":"a","since":{"offset":7,"epoch":"e1"}}"#,
        ),
        ("unsubscribe", r#"{"id":4,"type":"unsubscribe","channel":"chat:lobby"}"#),
        (
            "publish",
            r#"{"id":5,"type":"publish","channel":"chat:lobby","data":{"text":"hi","n":[1,-2,3.5,null,true]}}"#,
        ),
        ("presence", r#"{"id":6,"type":"presence","channel":"chat:lobby"}"#),
        (
            "history",
            r#"{"id":7,"type":"history","channel":"c","limit":10,"since":{"offset":1,"epoch":"x"}}"#,
        ),
        ("ping", r#"{"id":8,"type":"ping"}"#),
        ("refresh", r#"{"id":9,"type":"refresh","token":"new"}"#),
    ]
}

/// Operations for `hub_ops`: a shard count, then (tag, client, channel[, arg]) steps.
fn hub_workouts() -> Vec<(&'static str, Vec<u8>)> {
    let add = |c, ch, max| vec![0, c, ch, max];
    let activate = |c, ch, shift: i8| vec![1, c, ch, shift as u8];
    let remove = |c, ch| vec![2, c, ch];
    let publish = |ch| vec![3, 0, ch];
    let push = |ch| vec![4, 0, ch];
    let recover = [
        vec![1],
        add(0, 0, 0),
        publish(0),
        add(1, 0, 0),
        publish(0),
        publish(0),
        activate(1, 0, -1),
        activate(0, 0, 0),
        push(0),
        publish(0),
        remove(0, 0),
        remove(1, 0),
    ];
    let full = [vec![3], add(0, 1, 2), add(1, 1, 2), add(2, 1, 2), add(0, 1, 0), publish(1)];
    vec![("recover", recover.concat()), ("full", full.concat())]
}
