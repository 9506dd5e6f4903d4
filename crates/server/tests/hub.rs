//! The `/ws` hub over real sockets: every command's success and error paths, presence and
//! join/leave, history, the recovery contract, ordering under concurrent publishers and slow
//! consumers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::{Value, json};
use switchboard_codec::{
    ClientHandshake, Connection, Event, HandshakeLimits, Limits, Message, Role,
};
use switchboard_proto::{JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL};
use switchboard_server::{Config, NamespaceOptions};
use switchboard_test_support::client::WsClient;
use switchboard_test_support::metrics::scrape;
use switchboard_test_support::protocol::ProtocolClient;
use switchboard_test_support::server::{TestServer, open_config, open_namespace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long any single expected message may take.
const LIMIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Undecodable commands and frames of the wrong kind

#[tokio::test]
async fn malformed_json_gets_an_error_with_id_zero_and_the_connection_stays_open() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    for garbage in ["{\"id\": 10, \"type\": \"ping\"", "not json", "", "[1, 2]", "{\"id\": \"7\"}"]
    {
        a.ws.send(Message::text(garbage)).await.expect("send garbage");
        let reply = a.reply(0).await;
        assert_eq!(reply["error"]["code"], "bad_request", "{garbage:?}: {reply}");
        assert!(reply.get("result").is_none(), "{reply}");
    }
    a.ok("ping", json!({})).await;
}

#[tokio::test]
async fn missing_channel_is_a_bad_request_with_the_command_id() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    for kind in ["subscribe", "unsubscribe", "publish", "presence", "history"] {
        a.ws.send(Message::text(json!({"id": 7, "type": kind}).to_string())).await.expect("send");
        let reply = a.reply(7).await;
        assert_eq!(reply["error"]["code"], "bad_request", "{kind}: {reply}");
    }
    a.ok("ping", json!({})).await;
}

#[tokio::test]
async fn publish_without_data_is_a_bad_request_but_null_data_is_published() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    assert_eq!(a.error("publish", json!({"channel": "room"})).await, "bad_request");
    let result = a.ok("publish", json!({"channel": "room", "data": null})).await;
    assert_eq!(result["offset"], 1, "{result}");
}

#[tokio::test]
async fn unknown_type_is_unknown_command_with_the_command_id() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    for kind in ["teleport", "Ping"] {
        a.ws.send(Message::text(json!({"id": 9, "type": kind}).to_string())).await.expect("send");
        let reply = a.reply(9).await;
        assert_eq!(reply["error"]["code"], "unknown_command", "{kind}: {reply}");
    }
    a.ok("ping", json!({})).await;
}

#[tokio::test]
async fn binary_frame_on_a_json_connection_is_a_bad_request() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let ping = rmp_serde::to_vec_named(&json!({"id": 5, "type": "ping"})).expect("encode");
    a.ws.send(Message::binary(ping)).await.expect("send binary");
    let reply = a.reply(0).await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    a.ok("ping", json!({})).await;
}

#[tokio::test]
async fn text_frame_on_a_msgpack_connection_is_a_bad_request() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect_msgpack(server.addr).await;
    a.ws.send(Message::text(json!({"id": 5, "type": "ping"}).to_string())).await.expect("send");
    let reply = a.reply(0).await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    a.ok("ping", json!({})).await;
}

// ---------------------------------------------------------------------------------------
// Channel names and namespaces

#[tokio::test]
async fn invalid_channel_names_are_refused() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let long = "x".repeat(256);
    for channel in ["", "chat:", ":lobby", "ch@t:lobby", "chat:a b", "tab\there", long.as_str()] {
        for kind in ["subscribe", "presence", "history"] {
            let code = a.error(kind, json!({"channel": channel})).await;
            assert_eq!(code, "invalid_channel", "{kind} {channel:?}");
        }
        let code = a.error("publish", json!({"channel": channel, "data": 1})).await;
        assert_eq!(code, "invalid_channel", "publish {channel:?}");
    }
}

#[tokio::test]
async fn unsubscribe_from_an_invalid_channel_is_not_subscribed() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    assert_eq!(a.error("unsubscribe", json!({"channel": "chat:"})).await, "not_subscribed");
}

#[tokio::test]
async fn unknown_namespaces_are_refused() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    for kind in ["subscribe", "presence", "history"] {
        assert_eq!(a.error(kind, json!({"channel": "nope:room"})).await, "unknown_namespace");
    }
    let code = a.error("publish", json!({"channel": "nope:room", "data": 1})).await;
    assert_eq!(code, "unknown_namespace");
}

#[tokio::test]
async fn configured_namespaces_accept_their_channels() {
    let server = TestServer::start(config_with("chat", open_namespace())).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    a.subscribe("chat:lobby").await;
    a.subscribe("chat:a:b").await;
    a.subscribe("lobby").await;
    assert_eq!(a.publish("chat:a:b", json!(1)).await, 1);
    assert_eq!(a.next_publication().await["channel"], "chat:a:b");
}

// ---------------------------------------------------------------------------------------
// subscribe and unsubscribe

#[tokio::test]
async fn subscribe_reports_the_stream_position() {
    let server = TestServer::start(open_config()).await;
    let mut publisher = ProtocolClient::connect(server.addr).await;
    let ack = publisher.ok("publish", json!({"channel": "room", "data": 1})).await;
    publisher.publish("room", json!(2)).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let result = a.subscribe("room").await;
    assert_eq!(result["offset"], 2, "{result}");
    assert_eq!(result["epoch"], ack["epoch"], "{result}");
    assert_eq!(result["recoverable"], true, "{result}");
    assert!(result.get("recovered").is_none(), "no since, no recovered: {result}");
    assert!(result.get("publications").is_none(), "{result}");
    publisher.publish("room", json!(3)).await;
    assert_eq!(a.next_publication().await["offset"], 3, "the first push follows `offset`");
}

#[tokio::test]
async fn subscribing_twice_is_already_subscribed() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    a.subscribe("room").await;
    a.subscribe("marker").await;
    assert_eq!(a.error("subscribe", json!({"channel": "room"})).await, "already_subscribed");
    // Still subscribed, once: a publication arrives once.
    a.publish("room", json!(1)).await;
    a.publish("marker", json!(1)).await;
    assert_eq!(a.next_publication().await["channel"], "room");
    assert_eq!(a.next_publication().await["channel"], "marker", "no duplicate of `room` 1");
}

#[tokio::test]
async fn unsubscribing_when_not_subscribed_is_not_subscribed() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    assert_eq!(a.error("unsubscribe", json!({"channel": "room"})).await, "not_subscribed");
    a.subscribe("room").await;
    a.ok("unsubscribe", json!({"channel": "room"})).await;
    assert_eq!(a.error("unsubscribe", json!({"channel": "room"})).await, "not_subscribed");
}

#[tokio::test]
async fn unsubscribed_channels_deliver_nothing_more() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    a.subscribe("room").await;
    a.subscribe("marker").await;
    a.ok("unsubscribe", json!({"channel": "room"})).await;
    b.publish("room", json!("unheard")).await;
    b.publish("marker", json!("heard")).await;
    // The outbound queue is FIFO: had `room` been delivered, it would come first.
    let push = a.next_publication().await;
    assert_eq!((push["channel"].clone(), push["data"].clone()), (json!("marker"), json!("heard")));
}

#[tokio::test]
async fn resubscribing_after_unsubscribe_starts_from_the_new_top() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    a.subscribe("room").await;
    b.publish("room", json!(1)).await;
    assert_eq!(a.next_publication().await["offset"], 1);
    a.ok("unsubscribe", json!({"channel": "room"})).await;
    b.publish("room", json!(2)).await;
    assert_eq!(a.subscribe("room").await["offset"], 2);
    b.publish("room", json!(3)).await;
    assert_eq!(a.next_publication().await["offset"], 3);
}

#[tokio::test]
async fn no_push_for_the_channel_follows_the_unsubscribe_reply() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    a.subscribe("room").await;
    a.subscribe("marker").await;
    b.subscribe("room").await;
    b.publish("room", json!("before")).await;
    a.ok("unsubscribe", json!({"channel": "room"})).await;
    // Pushes that came before the reply were kept aside by `reply`; only later ones count.
    a.pushes.clear();
    b.publish("room", json!("after")).await;
    b.publish("marker", json!("end")).await;
    let mut after = Vec::new();
    loop {
        let push = a.next_push().await;
        if push["push"] == "publication" && push["channel"] == "marker" {
            break;
        }
        after.push(push);
    }
    let stray: Vec<&Value> = after.iter().filter(|p| p["channel"] == "room").collect();
    assert!(stray.is_empty(), "pushes for `room` after the unsubscribe reply: {stray:?}");
}

#[tokio::test]
async fn no_publication_follows_the_unsubscribe_reply_when_pushes_are_backed_up() {
    let mut config = config_with("quiet", quiet());
    config.hub.outbound_queue_bytes = 64 << 20;
    let server = TestServer::start(config).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    a.subscribe("quiet:room").await;
    // A reads nothing while 8 MiB of publications queue up for it.
    let payload = "x".repeat(16 * 1024);
    for _ in 0..500 {
        b.publish("quiet:room", json!(payload)).await;
    }
    a.ok("unsubscribe", json!({"channel": "quiet:room"})).await;
    let before = a.pushes.iter().filter(|p| p["push"] == "publication").count();
    a.pushes.clear();
    // The ping's reply comes after everything queued for A before it.
    a.ok("ping", json!({})).await;
    let mut after = 0;
    while let Some(push) = a.pushes.pop_front() {
        if push["push"] != "publication" {
            continue;
        }
        after += 1;
    }
    assert_eq!(before, 500, "every publication came before the unsubscribe reply");
    assert_eq!(
        after, 0,
        "{after} publications for `quiet:room` came after the unsubscribe reply ({before} before)"
    );
}

// ---------------------------------------------------------------------------------------
// publish

#[tokio::test]
async fn publish_acks_with_consecutive_offsets_in_one_epoch() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let first = a.ok("publish", json!({"channel": "room", "data": 1})).await;
    let second = a.ok("publish", json!({"channel": "room", "data": 2})).await;
    let other = a.ok("publish", json!({"channel": "other", "data": 3})).await;
    assert_eq!((first["offset"].clone(), second["offset"].clone()), (json!(1), json!(2)));
    assert_eq!(first["epoch"], second["epoch"]);
    assert_eq!(other["offset"], 1, "offsets are per channel: {other}");
    assert!(first["epoch"].as_str().is_some_and(|e| !e.is_empty()), "{first}");
}

#[tokio::test]
async fn publications_carry_data_and_the_publisher() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    a.subscribe("room").await;
    let b_id = b.connect_id().await;
    let data = json!({"text": "hello", "n": [1, 2.5, null, true], "nested": {"k": "v"}});
    b.publish("room", data.clone()).await;
    let push = a.next_publication().await;
    assert_eq!(
        push,
        json!({"push": "publication", "channel": "room", "offset": 1, "data": data,
               "info": {"client": b_id}})
    );
}

#[tokio::test]
async fn publisher_subscribed_to_the_channel_gets_its_ack_and_its_own_publication() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let id = a.connect_id().await;
    a.subscribe("room").await;
    for n in 1..=20u64 {
        let ack = a.ok("publish", json!({"channel": "room", "data": n})).await;
        assert_eq!(ack["offset"], n, "{ack}");
        let push = a.next_publication().await;
        assert_eq!(push["offset"], n, "{push}");
        assert_eq!(push["data"], n, "{push}");
        assert_eq!(push["info"]["client"], id.as_str(), "{push}");
    }
}

#[tokio::test]
async fn publish_is_denied_where_clients_may_not_publish() {
    let mut options = open_namespace();
    options.allow_publish = false;
    let server = TestServer::start(config_with("news", options)).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    a.subscribe("news:world").await;
    let reply = a.call("publish", json!({"channel": "news:world", "data": 1})).await;
    assert_eq!(reply["error"]["code"], "permission_denied", "{reply}");
    assert_eq!(reply["error"]["temporary"], false, "{reply}");
    // Nothing was published.
    assert_eq!(a.ok("history", json!({"channel": "news:world"})).await["offset"], 0);
}

// ---------------------------------------------------------------------------------------
// Limits

#[tokio::test]
async fn subscriptions_per_connection_are_limited() {
    let mut config = open_config();
    config.hub.max_subscriptions = 2;
    let server = TestServer::start(config).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    a.subscribe("one").await;
    a.subscribe("two").await;
    let reply = a.call("subscribe", json!({"channel": "three"})).await;
    assert_eq!(reply["error"]["code"], "limit_exceeded", "{reply}");
    assert_eq!(reply["error"]["temporary"], false, "{reply}");
    // Another connection has its own budget; leaving a channel frees a slot.
    let mut b = ProtocolClient::connect(server.addr).await;
    b.subscribe("three").await;
    a.ok("unsubscribe", json!({"channel": "one"})).await;
    a.subscribe("three").await;
}

#[tokio::test]
async fn subscribers_per_channel_are_limited() {
    let mut options = open_namespace();
    options.max_subscribers = 2;
    let server = TestServer::start(config_with("small", options)).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    let mut c = ProtocolClient::connect(server.addr).await;
    a.subscribe("small:room").await;
    b.subscribe("small:room").await;
    assert_eq!(c.error("subscribe", json!({"channel": "small:room"})).await, "limit_exceeded");
    // The limit is per channel, and a leave frees a slot.
    c.subscribe("small:other").await;
    a.ok("unsubscribe", json!({"channel": "small:room"})).await;
    c.subscribe("small:room").await;
}

#[tokio::test]
async fn a_full_channel_frees_a_slot_when_a_subscriber_disconnects() {
    let mut options = open_namespace();
    options.max_subscribers = 1;
    let server = TestServer::start(config_with("small", options)).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    a.subscribe("small:room").await;
    assert_eq!(b.error("subscribe", json!({"channel": "small:room"})).await, "limit_exceeded");
    drop(a);
    let deadline = Instant::now() + LIMIT;
    loop {
        let reply = b.call("subscribe", json!({"channel": "small:room"})).await;
        if reply.get("result").is_some() {
            break;
        }
        assert_eq!(reply["error"]["code"], "limit_exceeded", "{reply}");
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Subprotocols and MessagePack

#[tokio::test]
async fn unsupported_subprotocol_is_refused_with_400_before_upgrade() {
    let server = TestServer::start(open_config()).await;
    let err = WsClient::connect_with(server.addr, "/ws", &["chat.v2", "switchboard.v2.json"], &[])
        .await
        .expect_err("no supported subprotocol offered");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("400"), "{err}");

    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: chat.v2\r\n\r\n",
        server.addr
    );
    let refusal = WsClient::expect_refusal(server.addr, request.as_bytes()).await.expect("refused");
    assert_eq!(refusal.status, 400, "{}", refusal.response);
    assert!(refusal.response.contains(JSON_SUBPROTOCOL), "{}", refusal.response);
}

#[tokio::test]
async fn subprotocol_selection_prefers_json_and_defaults_to_json() {
    let server = TestServer::start(open_config()).await;
    let none = WsClient::connect(server.addr, "/ws").await.expect("connect");
    assert_eq!(none.protocol, None);
    let both = [MSGPACK_SUBPROTOCOL, JSON_SUBPROTOCOL];
    let ws = WsClient::connect_with(server.addr, "/ws", &both, &[]).await.expect("connect");
    assert_eq!(ws.protocol.as_deref(), Some(JSON_SUBPROTOCOL));
    let ws = WsClient::connect_with(server.addr, "/ws", &["x", MSGPACK_SUBPROTOCOL], &[])
        .await
        .expect("connect");
    assert_eq!(ws.protocol.as_deref(), Some(MSGPACK_SUBPROTOCOL));
}

#[tokio::test]
async fn msgpack_connection_subscribes_publishes_and_receives_binary_frames() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect_msgpack(server.addr).await;
    let mut json_client = ProtocolClient::connect(server.addr).await;
    let result = a.subscribe("room").await;
    assert_eq!(result["offset"], 0, "{result}");
    json_client.subscribe("room").await;

    let data = json!({"text": "héllo", "n": [1, -2, 2.5, null, true]});
    let ack = a.ok("publish", json!({"channel": "room", "data": data})).await;
    assert_eq!(ack["offset"], 1, "{ack}");
    let push = a.next_publication().await;
    assert_eq!(push["data"], data, "{push}");
    assert_eq!(push["offset"], 1, "{push}");
    // The same publication reaches a JSON subscriber as JSON.
    assert_eq!(json_client.next_publication().await["data"], data);

    json_client.publish("room", json!({"from": "json"})).await;
    let push = a.next_publication().await;
    assert_eq!(push["data"], json!({"from": "json"}), "{push}");
    let history = a.ok("history", json!({"channel": "room"})).await;
    assert_eq!(history["publications"].as_array().map(Vec::len), Some(2), "{history}");
    assert_eq!(a.error("subscribe", json!({"channel": "room"})).await, "already_subscribed");
}

#[tokio::test]
async fn msgpack_ping_matches_the_documented_bytes() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect_msgpack(server.addr).await;
    let ping =
        [0x82, 0xa2, 0x69, 0x64, 0x08, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa4, 0x70, 0x69, 0x6e, 0x67];
    a.ws.send(Message::binary(ping.to_vec())).await.expect("send");
    let expected = [0x82, 0xa2, 0x69, 0x64, 0x08, 0xa6, 0x72, 0x65, 0x73, 0x75, 0x6c, 0x74, 0x80];
    loop {
        match a.ws.recv_timeout(LIMIT).await.expect("the reply") {
            Some(Event::Binary(bytes)) => {
                assert_eq!(&bytes[..], &expected[..]);
                break;
            }
            Some(Event::Ping(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn malformed_msgpack_gets_an_error_with_id_zero() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect_msgpack(server.addr).await;
    a.ws.send(Message::binary(vec![0xc1, 0xff, 0x00])).await.expect("send");
    assert_eq!(a.reply(0).await["error"]["code"], "bad_request");
    let unknown = rmp_serde::to_vec_named(&json!({"id": 4, "type": "teleport"})).expect("encode");
    a.ws.send(Message::binary(unknown)).await.expect("send");
    assert_eq!(a.reply(4).await["error"]["code"], "unknown_command");
    a.ok("ping", json!({})).await;
}

// ---------------------------------------------------------------------------------------
// Presence, joins and leaves

#[tokio::test]
async fn presence_lists_the_subscribers() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    let mut c = ProtocolClient::connect(server.addr).await;
    let (a_id, b_id) = (a.connect_id().await, b.connect_id().await);
    assert_eq!(c.presence("room").await, Vec::<String>::new());
    a.subscribe("room").await;
    b.subscribe("room").await;
    let mut expected = vec![a_id.clone(), b_id];
    expected.sort();
    assert_eq!(c.presence("room").await, expected, "sorted by client id");
    b.ok("unsubscribe", json!({"channel": "room"})).await;
    assert_eq!(c.presence("room").await, vec![a_id]);
}

#[tokio::test]
async fn presence_is_denied_where_presence_is_off() {
    let mut options = open_namespace();
    options.presence = false;
    let server = TestServer::start(config_with("anon", options)).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    a.subscribe("anon:room").await;
    assert_eq!(a.error("presence", json!({"channel": "anon:room"})).await, "permission_denied");
}

#[tokio::test]
async fn subscribers_hear_a_join_when_another_client_subscribes() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    let b_id = b.connect_id().await;
    a.subscribe("room").await;
    b.subscribe("room").await;
    let push = a.next_push().await;
    assert_eq!(push, json!({"push": "join", "channel": "room", "client": {"client": b_id}}));
}

#[tokio::test]
async fn subscribers_hear_a_leave_when_a_client_unsubscribes() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    let b_id = b.connect_id().await;
    a.subscribe("room").await;
    b.subscribe("room").await;
    assert_eq!(a.next_push().await["push"], "join");
    b.ok("unsubscribe", json!({"channel": "room"})).await;
    let push = a.next_push().await;
    assert_eq!(push, json!({"push": "leave", "channel": "room", "client": {"client": b_id}}));
}

#[tokio::test]
async fn subscribers_hear_a_leave_when_a_client_connection_drops() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    let (a_id, b_id) = (a.connect_id().await, b.connect_id().await);
    a.subscribe("room").await;
    b.subscribe("room").await;
    b.subscribe("other").await;
    assert_eq!(a.next_push().await["push"], "join");
    // No close frame: the TCP connection just goes away.
    drop(b);
    let push = a.next_push().await;
    assert_eq!(push, json!({"push": "leave", "channel": "room", "client": {"client": b_id}}));
    assert_eq!(a.presence("room").await, vec![a_id]);
    assert_eq!(a.presence("other").await, Vec::<String>::new());
}

#[tokio::test]
async fn no_joins_or_leaves_where_announcements_are_off() {
    let mut options = open_namespace();
    options.join_leave = false;
    let server = TestServer::start(config_with("calm", options)).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut b = ProtocolClient::connect(server.addr).await;
    a.subscribe("calm:room").await;
    b.subscribe("calm:room").await;
    assert_eq!(a.presence("calm:room").await.len(), 2, "presence is still kept");
    b.ok("unsubscribe", json!({"channel": "calm:room"})).await;
    b.publish("calm:room", json!("end")).await;
    let push = a.next_push().await;
    assert_eq!(push["push"], "publication", "no join or leave came first: {push}");
}

// ---------------------------------------------------------------------------------------
// History

#[tokio::test]
async fn history_returns_the_last_n_publications() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut a, "room", 1..=5).await;
    let result = a.ok("history", json!({"channel": "room", "limit": 3})).await;
    assert_eq!(result["epoch"], epoch.as_str());
    assert_eq!(result["offset"], 5);
    assert_eq!(offsets(&result["publications"]), [3, 4, 5]);
    assert_eq!(result["publications"][0]["data"], 3, "{result}");
    let all = a.ok("history", json!({"channel": "room"})).await;
    assert_eq!(offsets(&all["publications"]), [1, 2, 3, 4, 5]);
    let none = a.ok("history", json!({"channel": "room", "limit": 0})).await;
    assert_eq!(offsets(&none["publications"]), Vec::<u64>::new());
}

#[tokio::test]
async fn history_keeps_only_the_namespace_history_size() {
    let server = TestServer::start(config_with("short", history(3))).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    publish_numbers(&mut a, "short:room", 1..=5).await;
    let all = a.ok("history", json!({"channel": "short:room"})).await;
    assert_eq!(offsets(&all["publications"]), [3, 4, 5]);
    let capped = a.ok("history", json!({"channel": "short:room", "limit": 50})).await;
    assert_eq!(offsets(&capped["publications"]), [3, 4, 5]);
}

#[tokio::test]
async fn history_of_an_unused_channel_is_empty_at_offset_zero() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let result = a.ok("history", json!({"channel": "void"})).await;
    assert_eq!(result["offset"], 0, "{result}");
    assert_eq!(offsets(&result["publications"]), Vec::<u64>::new());
}

#[tokio::test]
async fn history_since_an_offset_returns_what_followed() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut a, "room", 1..=5).await;
    let since = json!({"offset": 2, "epoch": epoch});
    let result = a.ok("history", json!({"channel": "room", "since": since})).await;
    assert_eq!(offsets(&result["publications"]), [3, 4, 5]);
    assert_eq!(result["offset"], 5);
    let since = json!({"offset": 5, "epoch": epoch});
    let result = a.ok("history", json!({"channel": "room", "since": since})).await;
    assert_eq!(offsets(&result["publications"]), Vec::<u64>::new());
}

#[tokio::test]
async fn history_since_reports_whether_it_is_complete() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut a, "room", 1..=5).await;
    let since = json!({"offset": 1, "epoch": epoch});
    let result = a.ok("history", json!({"channel": "room", "since": since, "limit": 4})).await;
    assert_eq!(result["complete"], true, "{result}");
    assert_eq!(offsets(&result["publications"]), [2, 3, 4, 5]);
    // More came after `since` than `limit`: never a partial answer.
    let result = a.ok("history", json!({"channel": "room", "since": since, "limit": 2})).await;
    assert_eq!(result["complete"], false, "{result}");
    assert_eq!(offsets(&result["publications"]), Vec::<u64>::new());
    let result = a.ok("history", json!({"channel": "room"})).await;
    assert!(result.get("complete").is_none(), "only with since: {result}");
}

#[tokio::test]
async fn history_since_a_wrong_epoch_returns_nothing() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut a, "room", 1..=3).await;
    let since = json!({"offset": 1, "epoch": "notmine"});
    let result = a.ok("history", json!({"channel": "room", "since": since})).await;
    assert_eq!(offsets(&result["publications"]), Vec::<u64>::new());
    assert_eq!(result["epoch"], epoch.as_str(), "the current epoch, to tell the mismatch");
    assert_eq!(result["offset"], 3);
}

#[tokio::test]
async fn history_is_denied_where_history_is_off() {
    let server = TestServer::start(config_with("live", history(0))).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    assert_eq!(a.error("history", json!({"channel": "live:room"})).await, "permission_denied");
    // Offsets are still assigned.
    assert_eq!(a.publish("live:room", json!(1)).await, 1);
    assert_eq!(a.publish("live:room", json!(2)).await, 2);
}

// ---------------------------------------------------------------------------------------
// Recovery

#[tokio::test]
async fn recovery_within_history_replays_exactly_the_gap_then_continues_live() {
    let server = TestServer::start(open_config()).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let mut publisher = ProtocolClient::connect(server.addr).await;
    a.subscribe("room").await;
    let epoch = publish_numbers(&mut publisher, "room", 1..=2).await;
    assert_eq!(a.next_publication().await["offset"], 1);
    assert_eq!(a.next_publication().await["offset"], 2);
    drop(a);
    publish_numbers(&mut publisher, "room", 3..=5).await;

    let mut a = ProtocolClient::connect(server.addr).await;
    let result = a.subscribe_since("room", 2, &epoch).await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(result["recoverable"], true, "{result}");
    assert_eq!(result["offset"], 5, "{result}");
    assert_eq!(result["epoch"], epoch.as_str(), "{result}");
    assert_eq!(offsets(&result["publications"]), [3, 4, 5]);
    let data: Vec<&Value> =
        result["publications"].as_array().into_iter().flatten().map(|p| &p["data"]).collect();
    assert_eq!(data, [&json!(3), &json!(4), &json!(5)]);

    publish_numbers(&mut publisher, "room", 6..=7).await;
    assert_eq!(a.next_publication().await["offset"], 6, "no duplicate, no gap");
    assert_eq!(a.next_publication().await["offset"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_while_publishing_has_no_gap_and_no_duplicate() {
    const TOTAL: u64 = 400;
    let server = TestServer::start(config_with("busy", history(1000))).await;
    let mut publisher = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut publisher, "busy:room", 1..=20).await;
    let publishing = tokio::spawn(async move {
        publish_numbers(&mut publisher, "busy:room", 21..=TOTAL).await;
    });
    let mut a = ProtocolClient::connect(server.addr).await;
    let result = a.subscribe_since("busy:room", 10, &epoch).await;
    assert_eq!(result["recovered"], true, "{result}");
    let top = result["offset"].as_u64().expect("offset");
    let mut seen = offsets(&result["publications"]);
    assert_eq!(seen.last().copied().unwrap_or(10), top, "replayed up to `offset`");
    while seen.last().copied().unwrap_or(10) < TOTAL {
        seen.push(a.next_publication().await["offset"].as_u64().expect("offset"));
    }
    assert_eq!(seen, (11..=TOTAL).collect::<Vec<_>>());
    publishing.await.expect("publisher");
}

#[tokio::test]
async fn recovery_from_another_epoch_is_not_recovered() {
    let server = TestServer::start(open_config()).await;
    let mut publisher = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut publisher, "room", 1..=3).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let result = a.subscribe_since("room", 1, "notmine").await;
    assert_eq!(result["recovered"], false, "{result}");
    assert!(result.get("publications").is_none(), "nothing replayed: {result}");
    assert_eq!(result["epoch"], epoch.as_str());
    assert_eq!(result["offset"], 3);
    publisher.publish("room", json!(4)).await;
    assert_eq!(a.next_publication().await["offset"], 4, "live from `offset + 1`");
}

#[tokio::test]
async fn recovery_beyond_the_history_size_is_not_recovered() {
    let server = TestServer::start(config_with("short", history(3))).await;
    let mut publisher = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut publisher, "short:room", 1..=5).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let result = a.subscribe_since("short:room", 1, &epoch).await;
    assert_eq!(result["recovered"], false, "4 missed, 3 kept: {result}");
    assert!(result.get("publications").is_none(), "not even the part kept: {result}");
    assert_eq!(result["offset"], 5);
    // At the boundary, exactly the history size missed: recovered.
    let mut b = ProtocolClient::connect(server.addr).await;
    let result = b.subscribe_since("short:room", 2, &epoch).await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(offsets(&result["publications"]), [3, 4, 5]);
}

#[tokio::test]
async fn recovery_after_the_history_ttl_is_not_recovered() {
    let server = TestServer::start(config_with("brief", ttl(Duration::from_millis(200)))).await;
    let mut keeper = ProtocolClient::connect(server.addr).await;
    // A subscriber keeps the stream (and its epoch) alive: only the history expires.
    keeper.subscribe("brief:room").await;
    let mut publisher = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut publisher, "brief:room", 1..=3).await;
    let started = Instant::now();
    wait_until_history_is_empty(&mut publisher, "brief:room").await;
    assert!(started.elapsed() >= Duration::from_millis(150), "expired too early");

    let mut a = ProtocolClient::connect(server.addr).await;
    let result = a.subscribe_since("brief:room", 1, &epoch).await;
    assert_eq!(result["epoch"], epoch.as_str(), "same epoch: {result}");
    assert_eq!(result["recovered"], false, "{result}");
    assert!(result.get("publications").is_none(), "{result}");
    assert_eq!(result["offset"], 3);
}

#[tokio::test]
async fn recovery_after_an_unused_stream_expired_is_not_recovered() {
    let server = TestServer::start(config_with("brief", ttl(Duration::from_millis(200)))).await;
    let mut publisher = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut publisher, "brief:room", 1..=2).await;
    // Nobody subscribed: the stream is forgotten and restarts under a new epoch.
    let deadline = Instant::now() + LIMIT;
    loop {
        let result = publisher.ok("history", json!({"channel": "brief:room"})).await;
        if result["epoch"] != epoch.as_str() {
            assert_eq!(result["offset"], 0, "{result}");
            break;
        }
        assert!(Instant::now() < deadline, "the stream never expired: {result}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut a = ProtocolClient::connect(server.addr).await;
    let result = a.subscribe_since("brief:room", 1, &epoch).await;
    assert_eq!(result["recovered"], false, "{result}");
    assert_ne!(result["epoch"], epoch.as_str(), "{result}");
}

#[tokio::test]
async fn recovery_from_the_current_top_is_recovered_and_empty() {
    let server = TestServer::start(open_config()).await;
    let mut publisher = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut publisher, "room", 1..=3).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let result = a.subscribe_since("room", 3, &epoch).await;
    assert_eq!(result["recovered"], true, "{result}");
    assert!(result.get("publications").is_none(), "left out when empty: {result}");
    assert_eq!(result["offset"], 3);
    publisher.publish("room", json!(4)).await;
    assert_eq!(a.next_publication().await["offset"], 4);
}

#[tokio::test]
async fn recovery_from_an_offset_beyond_the_top_is_not_recovered() {
    let server = TestServer::start(open_config()).await;
    let mut publisher = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut publisher, "room", 1..=3).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let result = a.subscribe_since("room", 9, &epoch).await;
    assert_eq!(result["recovered"], false, "{result}");
    assert_eq!(result["offset"], 3);
    publisher.publish("room", json!(4)).await;
    assert_eq!(a.next_publication().await["offset"], 4, "live from `offset + 1`");
}

#[tokio::test]
async fn recovery_without_history_succeeds_only_when_nothing_was_missed() {
    let server = TestServer::start(config_with("live", history(0))).await;
    let mut publisher = ProtocolClient::connect(server.addr).await;
    let epoch = publish_numbers(&mut publisher, "live:room", 1..=2).await;
    let mut a = ProtocolClient::connect(server.addr).await;
    let result = a.subscribe_since("live:room", 2, &epoch).await;
    assert_eq!(
        (result["recoverable"].clone(), result["recovered"].clone()),
        (json!(false), json!(true))
    );
    let mut b = ProtocolClient::connect(server.addr).await;
    let result = b.subscribe_since("live:room", 1, &epoch).await;
    assert_eq!(
        (result["recoverable"].clone(), result["recovered"].clone()),
        (json!(false), json!(false))
    );
}

// ---------------------------------------------------------------------------------------
// Ordering and backpressure

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_are_seen_in_one_order_by_every_subscriber() {
    const PUBLISHERS: u64 = 4;
    const EACH: u64 = 50;
    const TOTAL: u64 = PUBLISHERS * EACH;
    let server = TestServer::start(config_with("quiet", quiet())).await;
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut sub = ProtocolClient::connect(server.addr).await;
        sub.subscribe("quiet:room").await;
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..TOTAL {
                let push = sub.next_publication().await;
                seen.push((push["offset"].as_u64().expect("offset"), push["data"].clone()));
            }
            seen
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let mut client = ProtocolClient::connect(server.addr).await;
        publishers.push(tokio::spawn(async move {
            // Pipelined: all commands first, then the acks in command order.
            for n in 1..=EACH {
                let data = json!({"p": p, "n": n});
                client
                    .send(
                        &json!({"id": n, "type": "publish", "channel": "quiet:room", "data": data}),
                    )
                    .await;
            }
            let mut acks = Vec::new();
            for n in 1..=EACH {
                let reply = client.reply(n).await;
                acks.push(reply["result"]["offset"].as_u64().expect("an ack"));
            }
            acks
        }));
    }
    let mut acked = vec![None; usize::try_from(TOTAL).expect("small") + 1];
    for (p, publisher) in publishers.into_iter().enumerate() {
        let acks = publisher.await.expect("publisher");
        assert!(acks.windows(2).all(|w| w[0] < w[1]), "one connection's publishes keep order");
        for (n, offset) in acks.into_iter().enumerate() {
            acked[usize::try_from(offset).expect("small")] = Some(json!({"p": p, "n": n + 1}));
        }
    }
    let mut sequences = Vec::new();
    for reader in readers {
        sequences.push(reader.await.expect("subscriber"));
    }
    let expected: Vec<(u64, Value)> =
        (1..=TOTAL).map(|o| (o, acked[o as usize].clone().expect("every offset acked"))).collect();
    for seen in &sequences {
        assert_eq!(seen, &expected, "offsets 1..={TOTAL} in order, matching the acks");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_subscriber_is_cut_off_without_slowing_the_publisher_or_other_subscribers() {
    // 2,000 publications of 4 KiB: 8 MiB, more than the stalled connection's queue (64 KiB)
    // and kernel buffers (up to 4 MiB of send buffer on Linux by default) can hold.
    const TOTAL: u64 = 2_000;
    const PAYLOAD: usize = 4 << 10;
    /// The healthy subscriber may lag this many publications behind the publisher, well
    /// within its own 64 KiB queue.
    const WINDOW: u64 = 4;
    // Presence on, to see when the stalled subscriber has subscribed; no joins or leaves.
    let mut options = quiet();
    options.presence = true;
    let mut config = config_with("quiet", options);
    config.hub.outbound_queue_bytes = 64 << 10;
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let mut stalled = stalled_subscriber(addr, "quiet:room").await;
    let mut healthy = ProtocolClient::connect(server.addr).await;
    healthy.subscribe("quiet:room").await;
    let mut publisher = ProtocolClient::connect(server.addr).await;
    let deadline = Instant::now() + LIMIT;
    while publisher.presence("quiet:room").await.len() < 2 {
        assert!(Instant::now() < deadline, "the stalled subscriber never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The stalled subscriber starts reading again as soon as the server gave up on it, well
    // within the close timeout (5 s) its `disconnect` push and close frame get.
    let stalled = tokio::spawn(async move {
        let deadline = Instant::now() + 2 * LIMIT;
        while counter(&scrape(addr).await, SLOW_CONSUMERS) < 1.0 {
            assert!(Instant::now() < deadline, "never counted as a slow consumer");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        read_to_close(&mut stalled, LIMIT).await
    });
    let (progress, mut seen) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut offsets = Vec::new();
        while offsets.last().copied().unwrap_or(0) < TOTAL {
            let push = healthy.next_publication().await;
            let offset = push["offset"].as_u64().expect("offset");
            offsets.push(offset);
            let _ = progress.send(offset);
        }
        offsets
    });
    let payload = "x".repeat(PAYLOAD);
    let started = Instant::now();
    let mut slowest_ack = Duration::ZERO;
    for n in 1..=TOTAL {
        tokio::time::timeout(LIMIT, seen.wait_for(|&last| n - last <= WINDOW))
            .await
            .expect("the healthy subscriber keeps up")
            .expect("reader alive");
        let sent = Instant::now();
        assert_eq!(publisher.publish("quiet:room", json!(payload)).await, n);
        slowest_ack = slowest_ack.max(sent.elapsed());
    }
    assert!(slowest_ack < Duration::from_secs(1), "a publish waited {slowest_ack:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "publishing took {:?}", started.elapsed());
    let offsets = tokio::time::timeout(LIMIT, reader).await.expect("in time").expect("reader");
    assert_eq!(offsets, (1..=TOTAL).collect::<Vec<_>>(), "the healthy subscriber got everything");

    let end = stalled.await.expect("the stalled reader");
    assert!(end.publications < TOTAL, "the stalled subscriber cannot have received all {TOTAL}");
    assert_eq!(end.disconnect, Some(4001), "{end:?}");
    assert_eq!(end.close, Some(4001), "{end:?}");
    let text = scrape(addr).await;
    assert_eq!(counter(&text, SLOW_CONSUMERS), 1.0, "{text}");
    // The close handshake completed: counted and logged as the server's own 4001.
    let closed =
        "switchboard_connections_closed_total{transport=\"ws\",code=\"4001\",cause=\"local\"}";
    let deadline = Instant::now() + LIMIT;
    while counter(&scrape(addr).await, closed) < 1.0 {
        assert!(Instant::now() < deadline, "the 4001 close was never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_that_never_reads_again_is_counted_and_closed_with_4001() {
    let mut config = config_with("quiet", quiet());
    config.hub.outbound_queue_bytes = 64 << 10;
    // The bound on the slow consumer's last chance to take its close frame.
    config.close_timeout = Duration::from_millis(200);
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let _stalled = stalled_subscriber(addr, "quiet:room").await;
    let mut publisher = ProtocolClient::connect(addr).await;
    let payload = "x".repeat(4 << 10);
    let closed =
        "switchboard_connections_closed_total{transport=\"ws\",code=\"4001\",cause=\"local\"}";
    let deadline = Instant::now() + 2 * LIMIT;
    // Publishes until the server gives up on the subscriber, which never reads again.
    for n in 1.. {
        publisher.publish("quiet:room", json!(payload)).await;
        if n % 64 != 0 {
            continue;
        }
        let text = scrape(addr).await;
        if counter(&text, closed) >= 1.0 {
            assert_eq!(counter(&text, SLOW_CONSUMERS), 1.0, "{text}");
            let abnormal = "switchboard_connections_closed_total{transport=\"ws\",code=\"1006\"";
            assert!(!text.contains(abnormal), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "never closed as a slow consumer: {text}");
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A config with namespace `name` next to the default one.
fn config_with(name: &str, options: NamespaceOptions) -> Config {
    let mut config = open_config();
    config.hub.namespaces.insert(name.into(), options);
    config
}

/// Namespace options keeping `size` publications.
fn history(size: usize) -> NamespaceOptions {
    let mut options = open_namespace();
    options.history_size = size;
    options
}

/// Namespace options keeping history for `ttl`.
fn ttl(ttl: Duration) -> NamespaceOptions {
    let mut options = open_namespace();
    options.history_ttl = ttl;
    options
}

/// Namespace options without presence or announcements: only publications are pushed.
fn quiet() -> NamespaceOptions {
    let mut options = open_namespace();
    options.presence = false;
    options.join_leave = false;
    options
}

/// Publishes each number as data, checking the offsets follow it; returns the epoch.
async fn publish_numbers(
    client: &mut ProtocolClient,
    channel: &str,
    numbers: std::ops::RangeInclusive<u64>,
) -> String {
    let mut epoch = String::new();
    for n in numbers {
        let result = client.ok("publish", json!({"channel": channel, "data": n})).await;
        assert_eq!(result["offset"], n, "{result}");
        epoch = result["epoch"].as_str().expect("an epoch").to_owned();
    }
    epoch
}

/// The offsets of a list of publications (none when absent).
fn offsets(publications: &Value) -> Vec<u64> {
    publications
        .as_array()
        .map(|list| list.iter().map(|p| p["offset"].as_u64().expect("an offset")).collect())
        .unwrap_or_default()
}

/// Polls `history` until the channel's history is empty (expired).
async fn wait_until_history_is_empty(client: &mut ProtocolClient, channel: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let result = client.ok("history", json!({"channel": channel})).await;
        if offsets(&result["publications"]).is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "history never expired: {result}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A subscriber that completes the handshake, subscribes to `channel` and never reads
/// again, with a small receive buffer so the server's writes block soon.
async fn stalled_subscriber(addr: SocketAddr, channel: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let mut stream = socket.connect(addr).await.expect("connect");
    let handshake = ClientHandshake::new();
    stream.write_all(&handshake.request(&addr.to_string(), "/ws", &[])).await.expect("request");
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let read = tokio::time::timeout(LIMIT, stream.read_buf(&mut buf)).await;
        assert!(read.expect("a response in time").expect("read") > 0, "closed in handshake");
        let verified = handshake.verify(&buf, &HandshakeLimits::default()).expect("a 101");
        if verified.is_some() {
            break;
        }
    }
    let mut conn = Connection::new(Role::Client, Limits::default());
    let command = json!({"id": 1, "type": "subscribe", "channel": channel});
    conn.send(Message::text(command.to_string())).expect("queue the subscribe");
    while let Some(bytes) = conn.poll_transmit() {
        stream.write_all(&bytes).await.expect("send the subscribe");
    }
    stream
}

/// What a stalled subscriber read once it read again.
#[derive(Debug)]
struct StalledEnd {
    publications: u64,
    /// The code of the `disconnect` push, if one came.
    disconnect: Option<u64>,
    /// The close frame's code, if one came before the stream ended.
    close: Option<u16>,
}

/// Reads `stream` within `limit` until the server's close frame (answered, completing the
/// handshake) or the stream's end.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> StalledEnd {
    let mut conn = Connection::new(Role::Client, Limits::default());
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut end = StalledEnd { publications: 0, disconnect: None, close: None };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
        let ended = match read {
            Err(_) => panic!("neither a close frame nor the end in time: {end:?}"),
            Ok(Ok(0) | Err(_)) => true,
            Ok(Ok(_)) => false,
        };
        let _ = conn.handle_read(&mut buf, std::time::Instant::now());
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Text(text) => {
                    let push: Value = serde_json::from_slice(&text).expect("JSON");
                    match push["push"].as_str() {
                        Some("publication") => end.publications += 1,
                        Some("disconnect") => end.disconnect = push["code"].as_u64(),
                        _ => {}
                    }
                }
                Event::Close(frame) => {
                    end.close = frame.map(|f| f.code.0);
                    while let Some(bytes) = conn.poll_transmit() {
                        let _ = stream.write_all(&bytes).await;
                    }
                    return end;
                }
                _ => {}
            }
        }
        if ended {
            return end;
        }
    }
}

const SLOW_CONSUMERS: &str = "switchboard_slow_consumer_disconnects_total";

/// The value of one sample; 0 when the series does not exist yet.
fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}
