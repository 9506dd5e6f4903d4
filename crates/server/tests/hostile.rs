//! Hostile input over real sockets, all against one server: malformed and slow handshakes,
//! frames that lie about their size, fragment and ping floods, invalid UTF-8, garbage after
//! the upgrade, and a burst of all of it under a memory bound. After each attack a fresh
//! client must still subscribe and publish.
//!
//! The server runs in this process on a runtime of its own, so it outlives every test's
//! runtime and one test's attack is felt by the others running beside it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_codec::{Event, Message};
use switchboard_server::Config;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::http::upgrade;
use switchboard_test_support::protocol::next_json;
use switchboard_test_support::server::{TestServer, open_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single expected answer may take.
const LIMIT: Duration = Duration::from_secs(5);
/// The server's `handshake_timeout`: short, so slow heads are dropped quickly.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(500);
/// The largest message `/ws` accepts by default (`HubOptions::max_message_size`).
const MAX_MESSAGE: usize = 64 << 10;
/// The close codes of RFC 6455 §7.4.1 these tests expect.
const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const MESSAGE_TOO_BIG: u16 = 1009;
const MIB: u64 = 1 << 20;

#[tokio::test]
async fn malformed_handshakes_are_refused_before_the_upgrade() {
    let addr = server();
    let good = upgrade(addr, "/ws", "");
    let huge_line = upgrade(addr, "/ws", &format!("X-Big: {}\r\n", "b".repeat(100_000)));
    let huge_target = format!("GET /ws?{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
    let no_key = good.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let bad_key = good.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!!");
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        ("tls client hello", vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00], Some(400)),
        ("binary garbage", b"\x00\x01\x02\x03\xff\xfe\r\n\r\n".to_vec(), Some(400)),
        ("text garbage", b"hello world\r\n\r\n".to_vec(), Some(400)),
        ("http/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), None),
        ("huge header line", huge_line.into_bytes(), Some(431)),
        ("huge request line", huge_target.into_bytes(), Some(431)),
        (
            "100 headers",
            upgrade(addr, "/ws", &"X-Filler: x\r\n".repeat(100)).into_bytes(),
            Some(431),
        ),
        ("http/1.0", good.replace("HTTP/1.1", "HTTP/1.0").into_bytes(), Some(400)),
        ("missing key", no_key.into_bytes(), Some(400)),
        ("key not 16 bytes", bad_key.into_bytes(), Some(400)),
        ("bad version", good.replace("Version: 13", "Version: 12").into_bytes(), Some(426)),
        ("nul in a header", upgrade(addr, "/ws", "X-A: a\0b\r\n").into_bytes(), Some(400)),
        ("header without a colon", upgrade(addr, "/ws", "NoColonHere\r\n").into_bytes(), Some(400)),
    ];
    for (name, bytes, status) in cases {
        assert_eq!(exchange(addr, &bytes).await, status, "{name}");
    }
    assert_serving(addr).await;
}

#[tokio::test]
async fn slow_and_silent_connections_are_dropped_after_the_handshake_timeout() {
    let addr = server();
    let slow: Vec<_> = (0..20).map(|_| tokio::spawn(slowloris(addr))).collect();
    for task in slow {
        let lasted = task.await.expect("a slowloris task");
        assert!(lasted >= HANDSHAKE_TIMEOUT, "dropped before the timeout: {lasted:?}");
        assert!(lasted < LIMIT, "kept for {lasted:?}");
    }
    // A connection that sends nothing at all goes the same way.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut sink = Vec::new();
    tokio::time::timeout(LIMIT, silent.read_to_end(&mut sink))
        .await
        .expect("a silent connection is dropped")
        .expect("a clean close");
    assert!(started.elapsed() >= HANDSHAKE_TIMEOUT, "{:?}", started.elapsed());
    // And a keep-alive connection that stays idle after its request.
    let started = Instant::now();
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    idle.write_all(request.as_bytes()).await.expect("send a request");
    let mut response = Vec::new();
    tokio::time::timeout(LIMIT, idle.read_to_end(&mut response))
        .await
        .expect("an idle keep-alive connection is dropped")
        .expect("a clean close");
    assert!(response.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&response));
    assert!(started.elapsed() >= HANDSHAKE_TIMEOUT, "{:?}", started.elapsed());
    assert_serving(addr).await;
}

#[tokio::test]
async fn oversized_frame_headers_close_with_1009_before_any_payload() {
    let addr = server();
    for length in [1 << 30, (1 << 63) - 1] {
        let header = frame_header(0x82, length);
        assert_eq!(close_code_after(addr, "/ws", &header).await, Some(MESSAGE_TOO_BIG), "{length}");
    }
    // Just over the limit, declared in the 16-bit form.
    let header = frame_header(0x81, MAX_MESSAGE as u64 + 1);
    assert_eq!(close_code_after(addr, "/ws", &header).await, Some(MESSAGE_TOO_BIG));
    // RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
    let header = frame_header(0x82, 1 << 63);
    assert_eq!(close_code_after(addr, "/ws", &header).await, Some(PROTOCOL_ERROR));
    assert_serving(addr).await;
}

#[tokio::test]
async fn fragment_flood_past_the_message_limit_closes_with_1009() {
    let addr = server();
    // 10,000 continuation frames of 8 bytes: 80,000 bytes, past the 65,536 allowed.
    const { assert!(10_000 * 8 > MAX_MESSAGE) };
    let mut flood = masked(0x01, b"{\"id\":1,");
    for _ in 0..10_000 {
        flood.extend(masked(0x00, b"        "));
    }
    assert_eq!(close_code_after(addr, "/ws", &flood).await, Some(MESSAGE_TOO_BIG));
    assert_serving(addr).await;
}

#[tokio::test]
async fn empty_fragment_flood_costs_nothing_and_ends_in_one_message() {
    let addr = server();
    let mut ws = WsClient::connect(addr, "/ws").await.expect("handshake");
    let mut flood = masked(0x01, b"{\"id\":7,");
    for _ in 0..50_000 {
        flood.extend(masked(0x00, b""));
    }
    flood.extend(masked(0x80, b"\"type\":\"ping\"}"));
    ws.send_raw(&flood).await.expect("send the flood");
    assert_eq!(next_json(&mut ws).await, json!({"id": 7, "result": {}}));
    assert_serving(addr).await;
}

#[tokio::test]
async fn ping_flood_is_answered_and_the_connection_stays_usable() {
    let addr = server();
    let mut ws = WsClient::connect(addr, "/ws").await.expect("handshake");
    let pings = 5_000u32;
    let mut flood = Vec::new();
    for i in 0..pings {
        flood.extend(masked(0x89, &i.to_be_bytes()));
    }
    ws.send_raw(&flood).await.expect("send the pings");
    ws.send(Message::text(r#"{"id":1,"type":"ping"}"#)).await.expect("send a command");
    // RFC 6455 §5.5.3: a pong answers each ping, or at least the latest of a burst.
    let mut pongs = Vec::new();
    let reply = loop {
        match ws.recv_timeout(LIMIT).await.expect("an event in time") {
            Some(Event::Pong(payload)) => pongs.push(payload),
            Some(Event::Ping(_)) => {}
            Some(Event::Text(text)) => break serde_json::from_slice::<Value>(&text).expect("json"),
            other => panic!("expected pongs and a reply, got {other:?}"),
        }
    };
    assert_eq!(reply, json!({"id": 1, "result": {}}));
    assert!(!pongs.is_empty() && pongs.len() <= pings as usize, "{} pongs", pongs.len());
    let last = pongs.last().map(|p| p.as_ref().to_vec());
    assert_eq!(last, Some((pings - 1).to_be_bytes().to_vec()), "the latest ping is answered");
    assert_serving(addr).await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let addr = server();
    let mut fragmented = masked(0x01, "{\"data\":\"h\u{e9}".as_bytes());
    fragmented.extend(masked(0x80, &[0xc0, 0xaf, b'"', b'}']));
    let mut close_reason = 1000u16.to_be_bytes().to_vec();
    close_reason.extend_from_slice(&[b'b', b'y', 0xff]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid byte", masked(0x81, &[0xce, 0xba, 0xff])),
        ("overlong encoding in a later fragment", fragmented),
        ("truncated at the end", masked(0x81, &[b'a', 0xe2, 0x82])),
        ("utf-16 surrogate", masked(0x81, &[0xed, 0xa0, 0x80])),
        ("past U+10FFFF", masked(0x81, &[0xf4, 0x90, 0x80, 0x80])),
        ("close reason", masked(0x88, &close_reason)),
    ];
    for (name, bytes) in cases {
        assert_eq!(close_code_after(addr, "/ws", &bytes).await, Some(INVALID_PAYLOAD), "{name}");
    }
    assert_serving(addr).await;
}

#[tokio::test]
async fn garbage_after_the_handshake_closes_the_connection() {
    let addr = server();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an http request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("all ones", vec![0xff; 64]),
        ("all zeros", vec![0x00; 64]),
        ("tls client hello", vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03]),
        ("unmasked text frame", vec![0x81, 0x02, b'h', b'i']),
    ];
    for (name, bytes) in cases {
        assert_eq!(close_code_after(addr, "/ws", &bytes).await, Some(PROTOCOL_ERROR), "{name}");
    }
    // Pseudo-random bytes: whatever the code, the server must close, and soon.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..20 {
        let noise: Vec<u8> = (0..4096).map(|_| next_byte(&mut seed)).collect();
        let code = close_code_after(addr, "/ws", &noise).await;
        assert!(
            matches!(code, None | Some(PROTOCOL_ERROR | INVALID_PAYLOAD | MESSAGE_TOO_BIG)),
            "{code:?}"
        );
    }
    assert_serving(addr).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn memory_stays_bounded_under_a_burst_of_hostile_connections() {
    let addr = server();
    // Warm up: the first connections allocate the runtimes' and the allocator's pools.
    burst(addr).await;
    let before = rss_bytes();
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = tokio::spawn({
        let peak = Arc::clone(&peak);
        async move {
            loop {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    // 800 connections sending about 100 MiB and declaring 80 GiB: a server that kept what it
    // was sent, or buffered towards what was declared, would break the bound.
    for _ in 0..8 {
        burst(addr).await;
    }
    sampler.abort();
    assert_serving(addr).await;
    let after = rss_bytes();
    let peak = peak.load(Ordering::Relaxed).max(after);
    let report =
        format!("before {} MiB, peak {} MiB, after {} MiB", before / MIB, peak / MIB, after / MIB);
    eprintln!("{report}");
    assert!(peak - before < 64 * MIB, "{report}");
    assert!(after.saturating_sub(before) < 64 * MIB, "{report}");
}

// ---------------------------------------------------------------------------------------
// Helpers

/// The one server every test attacks: the open test configuration (anonymous clients may
/// subscribe and publish) with a short handshake timeout and `/ws`'s default 64 KiB limit.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the server's runtime");
            runtime.block_on(async {
                let server = TestServer::start(config()).await;
                tx.send(server.addr).expect("hand over the address");
                // Serves until the test process exits.
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("the server's address")
    })
}

fn config() -> Config {
    let mut config = open_config();
    config.handshake_timeout = HANDSHAKE_TIMEOUT;
    config
}

/// A fresh client subscribes to a channel of its own, publishes to it and receives its
/// publication.
async fn assert_serving(addr: SocketAddr) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let channel = format!("chat:fresh-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut ws = WsClient::connect(addr, "/ws").await.expect("a fresh client connects");
    let subscribe = json!({"id": 1, "type": "subscribe", "channel": channel});
    ws.send(Message::text(subscribe.to_string())).await.expect("send subscribe");
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["id"], 1, "{reply}");
    assert!(reply.get("result").is_some(), "subscribe failed: {reply}");
    let publish = json!({"id": 2, "type": "publish", "channel": channel, "data": "still here"});
    ws.send(Message::text(publish.to_string())).await.expect("send publish");
    let (mut acked, mut delivered) = (false, false);
    while !(acked && delivered) {
        let message = next_json(&mut ws).await;
        if message["push"] == "publication" {
            assert_eq!(message["data"], "still here", "{message}");
            delivered = true;
        } else if message["id"] == 2 {
            assert_eq!(message["result"]["offset"], 1, "{message}");
            acked = true;
        }
    }
}

/// Writes `bytes` on a new connection and reads until the server closes it: the response's
/// status, or `None` when it closed without one.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before taking everything: a failed write is fine.
    let _ = stream.write_all(bytes).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(LIMIT, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    let text = String::from_utf8_lossy(&response);
    text.strip_prefix("HTTP/1.")
        .map(|rest| rest.get(2..5).and_then(|s| s.parse().ok()).expect("a status code"))
}

/// Sends a request head one byte every 100 ms; returns how long the server kept reading.
async fn slowloris(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}\r\n\r\n", "z".repeat(200));
    let mut sink = [0u8; 256];
    for &byte in head.as_bytes() {
        if stream.write_all(&[byte]).await.is_err() {
            return started.elapsed();
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut sink)).await {
            Err(_) => {}
            // Closed (or answered, then closed: either way the server gave up on the head).
            Ok(_) => return started.elapsed(),
        }
    }
    panic!("the server waited {:?} for a slow head", started.elapsed());
}

/// 100 hostile connections at once: 60 attacks of every kind, and 40 connections holding
/// a message just under the limit until the attacks are over.
async fn burst(addr: SocketAddr) {
    let attacks: Vec<_> = (0..60).map(|n| tokio::spawn(attack(addr, n))).collect();
    let held: Vec<_> = (0..40).map(|_| tokio::spawn(partial_message(addr))).collect();
    let mut open = Vec::new();
    for task in held {
        open.push(task.await.expect("a partial message"));
    }
    for task in attacks {
        task.await.expect("an attack");
    }
    drop(open);
}

/// One hostile connection of the kind `n` picks, run to its end.
async fn attack(addr: SocketAddr, n: usize) {
    match n % 6 {
        0 => {
            let huge = upgrade(addr, "/ws", &format!("X-Big: {}\r\n", "b".repeat(64 << 10)));
            assert_eq!(exchange(addr, huge.as_bytes()).await, Some(431));
        }
        1 => {
            let many = upgrade(addr, "/ws", &"X-Filler: x\r\n".repeat(100));
            assert_eq!(exchange(addr, many.as_bytes()).await, Some(431));
        }
        2 => {
            let code = close_code_after(addr, "/ws", &frame_header(0x82, 1 << 30)).await;
            assert_eq!(code, Some(MESSAGE_TOO_BIG));
        }
        3 => {
            // 1 MiB in 1 KiB fragments: 16 times the limit.
            static FLOOD: OnceLock<Vec<u8>> = OnceLock::new();
            let flood = FLOOD.get_or_init(|| {
                let mut flood = masked(0x02, &[0; 1024]);
                for _ in 1..1024 {
                    flood.extend(masked(0x00, &[0; 1024]));
                }
                flood
            });
            assert_eq!(close_code_after(addr, "/ws", flood).await, Some(MESSAGE_TOO_BIG));
        }
        4 => {
            let lasted = slowloris(addr).await;
            assert!(lasted < LIMIT, "kept for {lasted:?}");
        }
        _ => {
            let mut seed = n as u64 | 1;
            let noise: Vec<u8> = (0..8192).map(|_| next_byte(&mut seed)).collect();
            close_code_after(addr, "/ws", &noise).await;
        }
    }
}

/// Opens `/ws` and sends all but the last byte of a frame just under the limit; returns the
/// connection, open, with the server holding the partial message.
async fn partial_message(addr: SocketAddr) -> WsClient {
    let mut ws = WsClient::connect(addr, "/ws").await.expect("handshake");
    let mut start = frame_header(0x01, (MAX_MESSAGE - 16) as u64);
    start.extend(vec![b' '; MAX_MESSAGE - 17]);
    ws.send_raw(&start).await.expect("send most of a message");
    ws
}

/// Opens a WebSocket on `path`, writes `bytes` after the handshake and returns the code of
/// the server's close frame (`None`: the TCP connection ended without one). The server must
/// then close the TCP connection.
async fn close_code_after(addr: SocketAddr, path: &str, bytes: &[u8]) -> Option<u16> {
    let mut ws = WsClient::connect(addr, path).await.expect("handshake");
    ws.send_raw(bytes).await.expect("write after the handshake");
    let code = ws.expect_close(LIMIT).await.expect("a close in time");
    ws.expect_eof(LIMIT).await.expect("the server closes tcp");
    code.map(|c| c.0)
}

/// A masked client frame (RFC 6455 §5.2) with first byte `b0`.
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = frame_header(b0, payload.len() as u64);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// A masked frame's header declaring `length` payload bytes, in the shortest form.
fn frame_header(b0: u8, length: u64) -> Vec<u8> {
    let mut out = vec![b0];
    match length {
        0..=125 => out.push(0x80 | length as u8),
        126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(length as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&length.to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// xorshift64: reproducible noise without a dependency.
fn next_byte(state: &mut u64) -> u8 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 24) as u8
}

/// This process's resident set size, from `/proc/self/status`.
#[cfg(target_os = "linux")]
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: u64 =
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS in kB");
    kib * 1024
}
