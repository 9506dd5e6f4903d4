//! The server over real sockets on 127.0.0.1: handshakes, echo, violations, timers, shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use switchboard_codec::{ClientHandshake, CloseCode, Event, Limits, Message};
use switchboard_server::Config;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::server::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(5);

fn upgrade_request(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A masked frame with the given first byte and payload (mask key 0 keeps it readable).
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![b0, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn echoes_text_and_binary() {
    let server = TestServer::start(Config::default()).await;
    let mut ws = WsClient::connect(server.addr, "/echo").await.unwrap();
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(ws.recv_timeout(LIMIT).await.unwrap(), Some(Event::Text("héllo".into())));
    let big = Bytes::from(vec![7u8; 100_000]);
    ws.send(Message::Binary(big.clone())).await.unwrap();
    assert_eq!(ws.recv_timeout(LIMIT).await.unwrap(), Some(Event::Binary(big)));
    ws.send(Message::Ping(Bytes::from_static(b"p"))).await.unwrap();
    assert_eq!(ws.recv_timeout(LIMIT).await.unwrap(), Some(Event::Pong("p".into())));
    ws.close(CloseCode::NORMAL, "bye").await.unwrap();
    assert_eq!(ws.expect_close(LIMIT).await.unwrap(), Some(CloseCode::NORMAL));
    ws.expect_eof(LIMIT).await.unwrap();
}

#[tokio::test]
async fn echoes_many_messages_in_order() {
    let server = TestServer::start(Config::default()).await;
    let mut ws = WsClient::connect(server.addr, "/echo").await.unwrap();
    for i in 0..500 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..500 {
        let expected = format!("m{i}");
        assert_eq!(ws.recv_timeout(LIMIT).await.unwrap(), Some(Event::Text(expected.into())));
    }
}

#[tokio::test]
async fn frames_sent_with_the_request_head_are_not_lost() {
    let server = TestServer::start(Config::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut bytes = upgrade_request(server.addr, "").into_bytes();
    bytes.extend(masked(0x81, b"early"));
    stream.write_all(&bytes).await.unwrap();
    let mut got = Vec::new();
    let tail = b"\x81\x05early";
    tokio::time::timeout(LIMIT, async {
        while !got.ends_with(tail) {
            assert!(stream.read_buf(&mut got).await.unwrap() > 0, "closed early");
        }
    })
    .await
    .expect("echo of the early frame");
    assert!(got.starts_with(b"HTTP/1.1 101 "));
}

#[tokio::test]
async fn health_and_unknown_paths() {
    let server = TestServer::start(Config::default()).await;
    let health =
        format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr);
    let refusal = WsClient::expect_refusal(server.addr, health.as_bytes()).await.unwrap();
    assert_eq!(refusal.status, 200);
    assert!(refusal.response.ends_with("{\"status\":\"ok\"}\n"), "{}", refusal.response);
    let missing =
        format!("GET /nope HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr);
    let refusal = WsClient::expect_refusal(server.addr, missing.as_bytes()).await.unwrap();
    assert_eq!(refusal.status, 404);
}

#[tokio::test]
async fn echo_can_be_turned_off() {
    let mut config = Config::default();
    config.echo = false;
    let server = TestServer::start(config).await;
    let refusal =
        WsClient::expect_refusal(server.addr, upgrade_request(server.addr, "").as_bytes())
            .await
            .unwrap();
    assert_eq!(refusal.status, 404);
}

#[tokio::test]
async fn malformed_handshakes_get_their_status_before_the_upgrade() {
    let server = TestServer::start(Config::default()).await;
    let addr = server.addr;
    let good = upgrade_request(addr, "");
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
            426,
            "Upgrade: websocket",
        ),
        (good.replacen("GET", "POST", 1), 405, "allow: GET"),
        (good.replace("HTTP/1.1", "HTTP/1.0"), 400, "HTTP/1.1"),
        (good.replace(&format!("Host: {addr}\r\n"), ""), 400, "Host"),
        (upgrade_request(addr, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), 400, "key"),
        (upgrade_request(addr, "Sec-WebSocket-Protocol: a b\r\n"), 400, "protocol"),
        (good.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), 400, "16 bytes"),
        (good.replace("Version: 13", "Version: 8"), 426, "sec-websocket-version: 13"),
        (good.replace("Upgrade: websocket", "Upgrade: h2c"), 400, "websocket"),
        (good.replace("Connection: Upgrade", "Connection: keep-alive"), 400, "Upgrade"),
        (upgrade_request(addr, &"X-Filler: x\r\n".repeat(80)), 431, ""),
        (upgrade_request(addr, &format!("X-Big: {}\r\n", "b".repeat(10_000))), 431, ""),
    ];
    for (request, status, needle) in cases {
        let refusal = WsClient::expect_refusal(addr, request.as_bytes()).await.unwrap();
        assert_eq!(refusal.status, status, "{request}\n---\n{}", refusal.response);
        let lower = refusal.response.to_ascii_lowercase();
        assert!(lower.contains(&needle.to_ascii_lowercase()), "{needle} in {}", refusal.response);
    }
    // The server is unharmed.
    let mut ws = WsClient::connect(addr, "/echo").await.unwrap();
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(ws.recv_timeout(LIMIT).await.unwrap(), Some(Event::Text("still here".into())));
}

/// Opens a connection, writes raw bytes after the handshake and returns the close code.
async fn violation(addr: SocketAddr, bytes: &[u8]) -> Option<CloseCode> {
    let mut ws = WsClient::connect(addr, "/echo").await.expect("handshake");
    ws.send_raw(bytes).await.expect("write");
    let code = match ws.expect_close(LIMIT).await {
        Ok(code) => code,
        Err(e) => panic!("no close for {bytes:x?}: {e}"),
    };
    ws.expect_eof(LIMIT).await.expect("the server closes tcp");
    code
}

#[tokio::test]
async fn protocol_violations_close_with_the_right_code() {
    let mut config = Config::default();
    config.limits = Limits::with_max_message_size(1024);
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let huge_header = {
        let mut h = vec![0x82, 0x80 | 127];
        h.extend_from_slice(&(1u64 << 40).to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0]);
        h
    };
    let cases: Vec<(&str, Vec<u8>, CloseCode)> = vec![
        ("unmasked frame", vec![0x81, 0x02, b'h', b'i'], CloseCode::PROTOCOL_ERROR),
        ("rsv1 without extension", masked(0xc1, b"hi"), CloseCode::PROTOCOL_ERROR),
        ("reserved opcode", masked(0x83, b""), CloseCode::PROTOCOL_ERROR),
        ("fragmented ping", masked(0x09, b""), CloseCode::PROTOCOL_ERROR),
        ("lone continuation", masked(0x80, b"x"), CloseCode::PROTOCOL_ERROR),
        ("invalid utf-8", masked(0x81, &[0xce, 0xba, 0xff]), CloseCode::INVALID_PAYLOAD),
        ("one-byte close", masked(0x88, &[3]), CloseCode::PROTOCOL_ERROR),
        ("close code 1005", masked(0x88, &1005u16.to_be_bytes()), CloseCode::PROTOCOL_ERROR),
        ("frame over the limit", huge_header, CloseCode::MESSAGE_TOO_BIG),
    ];
    for (name, bytes, code) in cases {
        assert_eq!(violation(addr, &bytes).await, Some(code), "{name}");
    }
    let mut fragments = masked(0x02, &[0; 100]);
    for _ in 0..10 {
        fragments.extend(masked(0x00, &[0; 100]));
    }
    assert_eq!(violation(addr, &fragments).await, Some(CloseCode::MESSAGE_TOO_BIG));
}

#[tokio::test]
async fn peer_close_is_echoed_and_the_server_closes_tcp() {
    let server = TestServer::start(Config::default()).await;
    let mut ws = WsClient::connect(server.addr, "/echo").await.unwrap();
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"app reason");
    ws.send_raw(&masked(0x88, &payload)).await.unwrap();
    assert_eq!(ws.expect_close(LIMIT).await.unwrap(), Some(CloseCode(4000)));
    ws.expect_eof(LIMIT).await.unwrap();
}

#[tokio::test]
async fn pings_and_drops_a_peer_that_never_pongs() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_millis(100));
    config.pong_timeout = Duration::from_millis(200);
    let server = TestServer::start(config).await;
    // A raw client: completes the handshake, then never answers.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let hs = ClientHandshake::new();
    stream.write_all(&hs.request(&server.addr.to_string(), "/echo", &[])).await.unwrap();
    let mut got = Vec::new();
    let all = tokio::time::timeout(LIMIT, async {
        while stream.read_buf(&mut got).await.unwrap() > 0 {}
    })
    .await;
    assert!(all.is_ok(), "server never closed the silent connection");
    let text = String::from_utf8_lossy(&got);
    let frames = &got[text.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(&frames[..2], &[0x89, 0x00], "a ping first");
    let close_at = frames.windows(2).position(|w| w[0] == 0x88).expect("a close frame");
    let code = u16::from_be_bytes([frames[close_at + 2], frames[close_at + 3]]);
    assert_eq!(code, 1001);
    assert!(String::from_utf8_lossy(&frames[close_at + 4..]).contains("pong timeout"));
}

#[tokio::test]
async fn a_client_that_pongs_stays_connected() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_millis(50));
    config.pong_timeout = Duration::from_millis(100);
    let server = TestServer::start(config).await;
    let mut ws = WsClient::connect(server.addr, "/echo").await.unwrap();
    let mut pings = 0;
    while pings < 6 {
        match ws.recv_timeout(LIMIT).await.unwrap() {
            Some(Event::Ping(_)) => pings += 1,
            other => panic!("expected pings, got {other:?}"),
        }
    }
    ws.send(Message::text("alive")).await.unwrap();
    loop {
        match ws.recv_timeout(LIMIT).await.unwrap() {
            Some(Event::Ping(_)) => continue,
            other => {
                assert_eq!(other, Some(Event::Text("alive".into())));
                break;
            }
        }
    }
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let mut config = Config::default();
    config.ping_interval = None;
    config.idle_timeout = Some(Duration::from_millis(200));
    let server = TestServer::start(config).await;
    let mut ws = WsClient::connect(server.addr, "/echo").await.unwrap();
    assert_eq!(ws.expect_close(LIMIT).await.unwrap(), Some(CloseCode::GOING_AWAY));
}

#[tokio::test]
async fn slow_request_heads_are_dropped() {
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_millis(200);
    let server = TestServer::start(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(LIMIT, stream.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "a half-sent head kept the connection open");
}

#[tokio::test]
async fn shutdown_closes_websockets_with_going_away() {
    let server = TestServer::start(Config::default()).await;
    let a = WsClient::connect(server.addr, "/echo").await.unwrap();
    let b = WsClient::connect(server.addr, "/echo").await.unwrap();
    let addr = server.addr;
    let done = tokio::spawn(server.shutdown());
    for mut ws in [a, b] {
        assert_eq!(ws.expect_close(LIMIT).await.unwrap(), Some(CloseCode::GOING_AWAY));
        ws.expect_eof(LIMIT).await.unwrap();
    }
    tokio::time::timeout(LIMIT, done).await.expect("run returns").unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
}
