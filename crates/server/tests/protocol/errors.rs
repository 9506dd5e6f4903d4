//! Undecodable commands and messages of the wrong kind: answered with `bad_request` or
//! `unknown_command` (with the command's id when it could be read, else 0), and the client
//! stays.

use serde_json::json;
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::protocol::{Link, Received};
use switchboard_test_support::server::open_config;

#[tokio::test]
async fn malformed_json_gets_an_error_with_id_zero_and_the_connection_stays_open() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    for garbage in ["{\"id\": 10, \"type\": \"ping\"", "not json", "", "[1, 2]", "{\"id\": \"7\"}"]
    {
        a.send_text(garbage).await;
        let reply = a.reply(0).await;
        assert_eq!(reply["error"]["code"], "bad_request", "{garbage:?}: {reply}");
        assert!(reply.get("result").is_none(), "{reply}");
    }
    a.ok("ping", json!({})).await;
}

#[tokio::test]
async fn missing_channel_is_a_bad_request_with_the_command_id() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    for kind in ["subscribe", "unsubscribe", "publish", "presence", "history"] {
        a.send(&json!({"id": 7, "type": kind})).await;
        let reply = a.reply(7).await;
        assert_eq!(reply["error"]["code"], "bad_request", "{kind}: {reply}");
    }
    a.ok("ping", json!({})).await;
}

#[tokio::test]
async fn publish_without_data_is_a_bad_request_but_null_data_is_published() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    assert_eq!(a.error("publish", json!({"channel": "room"})).await, "bad_request");
    let result = a.ok("publish", json!({"channel": "room", "data": null})).await;
    assert_eq!(result["offset"], 1, "{result}");
}

#[tokio::test]
async fn unknown_type_is_unknown_command_with_the_command_id() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    for kind in ["teleport", "Ping"] {
        a.send(&json!({"id": 9, "type": kind})).await;
        let reply = a.reply(9).await;
        assert_eq!(reply["error"]["code"], "unknown_command", "{kind}: {reply}");
    }
    a.ok("ping", json!({})).await;
}

#[tokio::test]
async fn binary_frame_on_a_json_connection_is_a_bad_request() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let ping = rmp_serde::to_vec_named(&json!({"id": 5, "type": "ping"})).expect("encode");
    a.send_binary(ping).await;
    let reply = a.reply(0).await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    a.ok("ping", json!({})).await;
}

#[tokio::test]
async fn text_frame_on_a_msgpack_connection_is_a_bad_request() {
    let node = TestNode::new(&open_config());
    let mut a = node.client_msgpack();
    a.send_text(&json!({"id": 5, "type": "ping"}).to_string()).await;
    let reply = a.reply(0).await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    a.ok("ping", json!({})).await;
}

#[tokio::test]
async fn msgpack_ping_matches_the_documented_bytes() {
    let node = TestNode::new(&open_config());
    let mut a = node.client_msgpack();
    let ping =
        [0x82, 0xa2, 0x69, 0x64, 0x08, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa4, 0x70, 0x69, 0x6e, 0x67];
    a.send_binary(ping.to_vec()).await;
    let expected = [0x82, 0xa2, 0x69, 0x64, 0x08, 0xa6, 0x72, 0x65, 0x73, 0x75, 0x6c, 0x74, 0x80];
    match a.ws.next_message(a.limit).await {
        Received::Binary(bytes) => assert_eq!(&bytes[..], &expected[..]),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn malformed_msgpack_gets_an_error_with_id_zero() {
    let node = TestNode::new(&open_config());
    let mut a = node.client_msgpack();
    a.send_binary(vec![0xc1, 0xff, 0x00]).await;
    assert_eq!(a.reply(0).await["error"]["code"], "bad_request");
    let unknown = rmp_serde::to_vec_named(&json!({"id": 4, "type": "teleport"})).expect("encode");
    a.send_binary(unknown).await;
    assert_eq!(a.reply(4).await["error"]["code"], "unknown_command");
    a.ok("ping", json!({})).await;
}
