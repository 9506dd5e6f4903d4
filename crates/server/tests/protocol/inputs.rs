//! Input one client sends that would stall the others: values nested too deep for a JSON
//! subscriber, MessagePack that JSON cannot carry, repeated keys, and channel names that look
//! like other channels. Each is refused with the documented error and the command's id, and
//! nothing of it reaches a subscriber, who decodes what it gets as a client library would.

use serde_json::{Value, json};
use switchboard_proto::{Format, MAX_DEPTH};
use switchboard_server::node::Identity;
use switchboard_test_support::memory::{MemoryLink, TestNode};
use switchboard_test_support::protocol::{ProtocolClient, Strict};
use switchboard_test_support::server::open_config;

#[tokio::test]
async fn msgpack_publication_too_deep_for_json_is_refused_with_its_id() {
    let node = TestNode::new(&open_config());
    let mut subscriber = strict(&node, Format::Json);
    subscriber.subscribe("room").await;
    let mut publisher = strict(&node, Format::Msgpack);

    // MessagePack maps of a `Value` come out in key order: `data` before `id`.
    let deep = json!({"id": 7, "type": "publish", "channel": "room", "data": nested(200)});
    publisher.send(&deep).await;
    let reply = publisher.reply(7).await;
    assert_eq!(reply["id"], 7, "{reply}");
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    assert_eq!(
        reply["error"]["message"],
        format!("`data` nests deeper than {MAX_DEPTH} levels of arrays and maps")
    );
    let deepest = nested(MAX_DEPTH);
    let ok = json!({"id": 8, "type": "publish", "channel": "room", "data": deepest});
    publisher.send(&ok).await;
    let reply = publisher.reply(8).await;
    assert_eq!(reply["result"]["offset"], 1, "the refused one was not stored: {reply}");

    // What the JSON subscriber gets decodes with serde_json's defaults, the first being the
    // publication that was accepted.
    let push = subscriber.next_publication().await;
    assert_eq!((push["offset"].clone(), &push["data"]), (json!(1), &deepest), "{push}");
    let history = subscriber.ok("history", json!({"channel": "room"})).await;
    assert_eq!(history["publications"][0]["data"], deepest);
    let epoch = history["epoch"].as_str().expect("an epoch").to_owned();
    let mut late = strict(&node, Format::Json);
    let recovered = late.subscribe_since("room", 0, &epoch).await;
    assert_eq!(recovered["publications"][0]["data"], deepest, "{recovered}");
}

#[tokio::test]
async fn msgpack_values_json_cannot_carry_are_refused_with_the_id() {
    let node = TestNode::new(&open_config());
    let mut subscriber = strict(&node, Format::Json);
    subscriber.subscribe("room").await;
    let mut publisher = strict(&node, Format::Msgpack);
    let cases: [(&[u8], &str); 4] = [
        (&[0xc4, 0x02, 0xde, 0xad], "`data` holds binary data"),
        (&[0xd4, 0x05, 0x00], "`data` holds a MessagePack ext"),
        (&[0x81, 0x01, 0xc0], "a map key in `data` is an integer"),
        (&[0x91, 0x81, 0xa1, b'x', 0xc4, 0x00], "`data` holds binary data"),
    ];
    for (id, (data, message)) in (20..).zip(cases) {
        publisher.send_binary(packed_publish(id, "room", data)).await;
        let reply = publisher.reply(id.into()).await;
        assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
        let text = reply["error"]["message"].as_str().expect("a message");
        assert!(text.starts_with(message), "{text}");
    }
    publisher.send(&json!({"id": 30, "type": "publish", "channel": "room", "data": 1})).await;
    let reply = publisher.reply(30).await;
    assert_eq!(reply["result"]["offset"], 1, "none of the refused ones was stored");
    assert_eq!(subscriber.next_publication().await["offset"], 1);
}

#[tokio::test]
async fn repeated_keys_are_refused_in_both_formats() {
    let node = TestNode::new(&open_config());
    let mut subscriber = strict(&node, Format::Json);
    subscriber.send(&json!({"id": 1, "type": "subscribe", "channel": "room"})).await;
    subscriber.reply(1).await;
    let cases = [
        // Either id could be meant: the reply carries neither.
        (r#"{"id":13,"type":"ping","id":14}"#, 0, "duplicate key `id`"),
        (r#"{"id":15,"type":"ping","type":"ping"}"#, 15, "duplicate key `type`"),
        (
            r#"{"id":16,"type":"publish","channel":"room","data":[{"x":1,"x":2}]}"#,
            16,
            "duplicate key \"x\" in `data`",
        ),
    ];
    for (command, id, message) in cases {
        subscriber.send_text(command).await;
        let reply = subscriber.reply(id).await;
        assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
        assert_eq!(reply["error"]["message"], message, "{reply}");
    }
    let mut publisher = strict(&node, Format::Msgpack);
    let data = [0x82, 0xa1, b'x', 0x01, 0xa1, b'x', 0x02];
    publisher.send_binary(packed_publish(17, "room", &data)).await;
    let reply = publisher.reply(17).await;
    assert_eq!(reply["error"]["message"], "duplicate key \"x\" in `data`", "{reply}");

    publisher.send(&json!({"id": 18, "type": "publish", "channel": "room", "data": 1})).await;
    let reply = publisher.reply(18).await;
    assert_eq!(reply["result"]["offset"], 1, "none of the refused ones was stored");
    assert_eq!(subscriber.next_publication().await["offset"], 1);
}

#[tokio::test]
async fn channel_names_with_invisible_or_bidi_characters_are_refused() {
    let node = TestNode::new(&open_config());
    let mut a = strict(&node, Format::Json);
    let mut b = strict(&node, Format::Msgpack);
    let cases = [
        ("lobby\u{202E}gnp", "U+202E, a bidi control character"),
        ("lob\u{200B}by", "U+200B, an invisible formatting character"),
        ("\u{FEFF}lobby", "U+FEFF, an invisible formatting character"),
        ("lobby\u{2066}", "U+2066, a bidi control character"),
    ];
    let mut id = 1;
    for (channel, what) in cases {
        let message = format!("channel name holds {what}");
        for kind in ["subscribe", "presence", "history", "publish"] {
            for client in [&mut a, &mut b] {
                id += 1;
                let command = json!({"id": id, "type": kind, "channel": channel, "data": 1});
                client.send(&command).await;
                let reply = client.reply(id).await;
                assert_eq!(reply["error"]["code"], "invalid_channel", "{kind}: {reply}");
                assert_eq!(reply["error"]["message"], message, "{kind}: {reply}");
            }
        }
    }
    // The look-alike's visible twin is an ordinary channel.
    a.subscribe("lobby").await;
}

/// An anonymous client on `node` whose every received message must decode as a
/// `ServerMessage`.
fn strict(node: &TestNode, format: Format) -> ProtocolClient<Strict<MemoryLink>> {
    let link = MemoryLink::open(&node.node, Identity::anonymous(), format);
    ProtocolClient::new(Strict(link), format)
}

/// Null in `levels` arrays.
fn nested(levels: usize) -> Value {
    (0..levels).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
}

/// A `publish` command in MessagePack whose `data` is `data`, bytes as given.
fn packed_publish(id: u8, channel: &str, data: &[u8]) -> Vec<u8> {
    assert!(id < 0x80 && channel.len() < 32);
    let mut out = vec![0x84, 0xa2, b'i', b'd', id, 0xa4, b't', b'y', b'p', b'e', 0xa7];
    out.extend_from_slice(b"publish");
    out.extend_from_slice(b"\xa7channel");
    out.push(0xa0 | channel.len() as u8);
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(b"\xa4data");
    out.extend_from_slice(data);
    out
}
