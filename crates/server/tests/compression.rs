//! permessage-deflate (RFC 7692) at the server's door and on the wire: negotiated only where
//! it is turned on, messages echoed compressed, and a decompression bomb cut off with 1009.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::json;
use switchboard_codec::{
    CloseCode, Connection, DeflateConfig, DeflateParams, Event, Limits, Message, Role,
};
use switchboard_proto::{Format, MSGPACK_SUBPROTOCOL};
use switchboard_test_support::client::WsClient;
use switchboard_test_support::http::upgrade;
use switchboard_test_support::metrics::{sample, scrape};
use switchboard_test_support::protocol::ProtocolClient;
use switchboard_test_support::server::{TestServer, open_config, open_namespace};
use switchboard_test_support::wait::poll_until;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// The value of `name` in a response head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Sends an upgrade of `/echo` offering permessage-deflate; the socket and the 101 head.
async fn upgrade_head(addr: std::net::SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(upgrade(addr, "/echo", OFFER).as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.expect("read the head");
        assert!(n > 0, "closed before the head");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(raw[..end].to_vec()).expect("a UTF-8 head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(end + 4, raw.len(), "nothing follows the head before we send");
    (stream, head)
}

/// Opens `/echo` offering permessage-deflate; the socket, the 101 head and a client
/// connection with what the server accepted.
async fn open(addr: std::net::SocketAddr) -> (TcpStream, String, Connection) {
    let (stream, head) = upgrade_head(addr).await;
    let accepted = header(&head, "sec-websocket-extensions").expect("deflate accepted");
    let value = accepted.strip_prefix("permessage-deflate").expect("permessage-deflate");
    let mut params = DeflateParams::default();
    for param in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("client_max_window_bits", bits)) => {
                params.client_max_window_bits = Some(bits.parse().expect("window bits"));
            }
            Some(("server_max_window_bits", bits)) => {
                params.server_max_window_bits = Some(bits.parse().expect("window bits"));
            }
            None if param == "server_no_context_takeover" => {
                params.server_no_context_takeover = true;
            }
            None if param == "client_no_context_takeover" => {
                params.client_no_context_takeover = true;
            }
            _ => panic!("unexpected parameter {param:?}"),
        }
    }
    let mut config = DeflateConfig::default();
    config.enabled = true;
    config.min_size = 0;
    let conn = Connection::with_deflate(Role::Client, Limits::default(), params, &config);
    (stream, head, conn)
}

/// Writes what `conn` queued.
async fn flush(stream: &mut TcpStream, conn: &mut Connection) {
    while let Some(bytes) = conn.poll_transmit() {
        stream.write_all(&bytes).await.expect("write");
    }
}

/// The next event, reading as needed.
async fn next_event(stream: &mut TcpStream, conn: &mut Connection) -> Option<Event> {
    let read = async {
        let mut buf = BytesMut::new();
        loop {
            if let Some(event) = conn.poll_event() {
                return Some(event);
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let _ = conn.handle_read(&mut buf, Instant::now());
        }
    };
    tokio::time::timeout(LIMIT, read).await.expect("an event in time")
}

#[tokio::test]
async fn echo_negotiates_deflate_only_when_turned_on() {
    let server = TestServer::start(open_config()).await;
    let (_stream, plain) = upgrade_head(server.addr).await;
    assert_eq!(header(&plain, "sec-websocket-extensions"), None, "off by default: {plain}");

    let mut config = open_config();
    config.compression.echo = true;
    let server = TestServer::start(config).await;
    let (mut stream, head, mut conn) = open(server.addr).await;
    assert_eq!(
        header(&head, "sec-websocket-extensions"),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "no compression state outlives a message, either way: {head}"
    );
    // A compressible message goes compressed both ways and comes back intact.
    let text = "{\"text\":\"hello\"}".repeat(200);
    conn.send(Message::text(text.clone())).expect("send");
    flush(&mut stream, &mut conn).await;
    match next_event(&mut stream, &mut conn).await {
        Some(Event::Text(echoed)) => assert_eq!(echoed, text.as_bytes()),
        other => panic!("expected the echo, got {other:?}"),
    }
    let stats = conn.deflate_stats().expect("deflate on");
    assert_eq!((stats.messages_compressed, stats.messages_inflated), (1, 1), "{stats:?}");
    // The server counted both: received deflated, sent deflated, and what they saved.
    let text_metrics = scrape(server.addr).await;
    let metric = |name: &str, direction: &str, form: &str| {
        let key = format!("{name}{{direction=\"{direction}\",form=\"{form}\"}}");
        sample(&text_metrics, &key).unwrap_or_else(|| panic!("no {key}: {text_metrics}"))
    };
    let messages = |direction: &str| {
        let key = format!(
            "switchboard_deflate_messages_total{{direction=\"{direction}\",compressor=\"connection\"}}"
        );
        sample(&text_metrics, &key).unwrap_or_else(|| panic!("no {key}: {text_metrics}"))
    };
    assert_eq!(messages("received"), 1.0);
    assert_eq!(messages("sent"), 1.0);
    assert_eq!(metric("switchboard_deflate_bytes_total", "sent", "plain"), text.len() as f64);
    let wire = metric("switchboard_deflate_bytes_total", "sent", "deflated");
    assert_eq!(wire, stats.inflated_wire_bytes as f64);
    assert!(wire < text.len() as f64 / 10.0, "{wire} bytes for {}", text.len());
}

#[tokio::test]
async fn a_decompression_bomb_is_cut_off_with_1009() {
    let mut config = open_config();
    config.compression.echo = true;
    config.limits = Limits::with_max_message_size(1 << 20);
    let server = TestServer::start(config).await;
    let (mut stream, _, mut conn) = open(server.addr).await;
    // 32 MiB of zeros deflate to about 32 KiB: 32 times the 1 MiB limit once inflated.
    conn.send(Message::binary(vec![0u8; 32 << 20])).expect("send");
    flush(&mut stream, &mut conn).await;
    let close = loop {
        match next_event(&mut stream, &mut conn).await {
            Some(Event::Close(frame)) => break frame.map(|f| f.code),
            Some(_) => {}
            None => panic!("the server closed without a close frame"),
        }
    };
    assert_eq!(close, Some(CloseCode::MESSAGE_TOO_BIG));
    // The client has the close frame before the server has finished with the connection.
    let closed = "switchboard_connections_closed_total{transport=\"echo\",code=\"1009\",cause=\"protocol_error\"}";
    let counted = poll_until(LIMIT, || async {
        (sample(&scrape(server.addr).await, closed) == Some(1.0)).then_some(())
    });
    assert!(counted.await.is_some(), "{}", scrape(server.addr).await);
}

#[tokio::test]
async fn the_engines_client_negotiates_deflate_and_speaks_it() {
    let mut config = open_config();
    config.compression.echo = true;
    let server = TestServer::start(config).await;
    let mut deflate = DeflateConfig::default();
    deflate.enabled = true;
    deflate.min_size = 0;
    let mut ws =
        switchboard_test_support::client::WsClient::connect_deflate(server.addr, "/echo", &deflate)
            .await
            .expect("connect");
    assert!(ws.connection().deflate_params().is_some(), "the server accepted the offer");
    let text = "compress me ".repeat(100);
    ws.send(Message::text(text.clone())).await.expect("send");
    match ws.recv().await.expect("recv") {
        Some(Event::Text(echoed)) => assert_eq!(echoed, text.as_bytes()),
        other => panic!("expected the echo, got {other:?}"),
    }
}

#[tokio::test]
async fn the_rust_client_compresses_with_ws_when_both_ask() {
    use switchboard_test_support::rust_client::{connected, fast, next_event};
    // On by default on /ws.
    let server = TestServer::start(open_config()).await;
    let url = format!("ws://{}/ws", server.addr);
    let client = fast(&url).compression(true).build().expect("build");
    connected(&client).await;
    let mut sub = client.subscribe("chat:deflate").await.expect("subscribe");
    let text = "a long and repetitive chat message ".repeat(30);
    client.publish("chat:deflate", serde_json::json!({ "text": text })).await.expect("publish");
    match next_event(&mut sub).await {
        switchboard_client::SubscriptionEvent::Publication(p) => {
            assert_eq!(p.data["text"], text.as_str());
        }
        other => panic!("expected the publication, got {other:?}"),
    }
    let metrics = scrape(server.addr).await;
    // The publication went out as the shared frame; the publish command came in compressed.
    let sent = "switchboard_deflate_messages_total{direction=\"sent\",compressor=\"shared\"}";
    let received =
        "switchboard_deflate_messages_total{direction=\"received\",compressor=\"connection\"}";
    assert!(sample(&metrics, sent).is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(sample(&metrics, received).is_some_and(|n| n >= 1.0), "{metrics}");
}

/// A client's permessage-deflate settings: compress everything, and ask the server for a
/// smaller window when `server_window_bits` is below 15.
fn client_deflate(server_window_bits: u8) -> DeflateConfig {
    let mut deflate = DeflateConfig::default();
    deflate.enabled = true;
    deflate.min_size = 0;
    deflate.server_max_window_bits = server_window_bits;
    deflate
}

/// Compressed messages a client received so far.
fn inflated(client: &ProtocolClient) -> u64 {
    client.ws.connection().deflate_stats().map_or(0, |s| s.messages_inflated)
}

#[tokio::test]
async fn a_publication_is_compressed_once_for_all_its_subscribers() {
    let mut config = open_config();
    let mut quiet = open_namespace();
    quiet.presence = false;
    quiet.join_leave = false;
    config.hub.namespaces.insert("feed".into(), quiet.clone());
    // A namespace whose data does not compress: its pushes stay plain.
    quiet.compression = false;
    config.hub.namespaces.insert("raw".into(), quiet);
    let server = TestServer::start(config).await;
    let addr = server.addr;

    let mut compressed = Vec::new();
    for i in 0..6 {
        let (protocols, format): (&[&str], _) =
            if i < 4 { (&[], Format::Json) } else { (&[MSGPACK_SUBPROTOCOL], Format::Msgpack) };
        let ws = WsClient::connect_deflate_with(addr, "/ws", protocols, &client_deflate(15))
            .await
            .expect("connect");
        assert!(ws.connection().deflate_params().is_some(), "negotiated by default on /ws");
        compressed.push(ProtocolClient::new(ws, format));
    }
    // One that asked the server to compress with a smaller window than the shared frame's.
    let small = WsClient::connect_deflate(addr, "/ws", &client_deflate(10)).await.expect("connect");
    assert_eq!(small.connection().deflate_params().unwrap().server_window_bits(), 10);
    let mut small = ProtocolClient::new(small, Format::Json);
    let mut plain = ProtocolClient::connect(addr).await;
    assert!(plain.ws.connection().deflate_params().is_none());

    let mut everyone: Vec<&mut ProtocolClient> = compressed.iter_mut().collect();
    everyone.push(&mut small);
    everyone.push(&mut plain);
    let mut before = Vec::new();
    for client in &mut everyone {
        client.subscribe("feed:prices").await;
        client.subscribe("raw:frames").await;
        before.push(inflated(client));
    }
    let metrics = scrape(addr).await;
    assert_eq!(sample(&metrics, "switchboard_deflate_connections"), Some(7.0), "{metrics}");

    let data = json!({ "rows": vec!["bid 101.25 ask 101.50 volume 12000"; 40] });
    let mut publisher = ProtocolClient::connect(addr).await;
    publisher.publish("feed:prices", data.clone()).await;
    publisher.publish("raw:frames", data.clone()).await;
    for (client, before) in everyone.iter_mut().zip(before) {
        for channel in ["feed:prices", "raw:frames"] {
            let publication = client.next_publication().await;
            assert_eq!((&publication["channel"], &publication["data"]), (&json!(channel), &data));
        }
        // Only the `feed` publication came compressed.
        let expected = u64::from(client.ws.connection().deflate_params().is_some());
        assert_eq!(inflated(client) - before, expected);
    }

    let metrics = scrape(addr).await;
    let value = |key: &str| sample(&metrics, key).unwrap_or_else(|| panic!("no {key}: {metrics}"));
    // Compressed once per format (JSON, MessagePack), sent as is to the six subscribers...
    assert_eq!(value("switchboard_deflate_shared_frames_total"), 2.0);
    let shared = "switchboard_deflate_messages_total{direction=\"sent\",compressor=\"shared\"}";
    assert_eq!(value(shared), 6.0);
    // ...and compressed by its own connection for the one with a smaller window.
    let own = "switchboard_deflate_messages_total{direction=\"sent\",compressor=\"connection\"}";
    assert!(value(own) >= 1.0);
    let plain_bytes = value("switchboard_deflate_bytes_total{direction=\"sent\",form=\"plain\"}");
    let wire = value("switchboard_deflate_bytes_total{direction=\"sent\",form=\"deflated\"}");
    assert!(wire * 5.0 < plain_bytes, "{wire} bytes on the wire for {plain_bytes}");
}
