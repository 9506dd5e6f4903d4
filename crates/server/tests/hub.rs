//! The `/ws` hub over real sockets, for what only a transport shows: subprotocol
//! negotiation and refusal before the upgrade, frame types and bytes on the wire, a TCP
//! connection that just goes away, and slow consumers cut off while a socket write is
//! blocked. The protocol itself (every command's success and error paths, presence,
//! history, recovery, ordering) is tested in memory in `protocol/`.

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
use switchboard_test_support::poll_until;
use switchboard_test_support::protocol::ProtocolClient;
use switchboard_test_support::server::{TestServer, open_config, open_namespace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long any single expected message may take.
const LIMIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Frames on the wire: which kind reaches the session, and the exact bytes back

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

// ---------------------------------------------------------------------------------------
// Subprotocol negotiation, before the upgrade

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

// ---------------------------------------------------------------------------------------
// A dropped TCP connection

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

// ---------------------------------------------------------------------------------------
// Backpressure on a blocked socket write

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
    // Each presence call is a round trip: the loop waits on the server, bounded by LIMIT.
    let subscribed = tokio::time::timeout(LIMIT, async {
        while publisher.presence("quiet:room").await.len() < 2 {}
    });
    subscribed.await.expect("the stalled subscriber subscribed");

    // The stalled subscriber starts reading again as soon as the server gave up on it, well
    // within the close timeout (5 s) its `disconnect` push and close frame get.
    let stalled = tokio::spawn(async move {
        let counted = poll_until(2 * LIMIT, || async {
            (counter(&scrape(addr).await, SLOW_CONSUMERS) >= 1.0).then_some(())
        });
        counted.await.expect("counted as a slow consumer");
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
    let counted =
        poll_until(LIMIT, || async { (counter(&scrape(addr).await, closed) >= 1.0).then_some(()) });
    counted.await.expect("the 4001 close was counted");
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

/// Namespace options without presence or announcements: only publications are pushed.
fn quiet() -> NamespaceOptions {
    let mut options = open_namespace();
    options.presence = false;
    options.join_leave = false;
    options
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
