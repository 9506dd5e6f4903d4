//! Limits over real sockets: commands and bytes per `/ws` connection, connections in total
//! and per address, handshakes per address, channel name length.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_codec::{ClientHandshake, CloseCode, Event, Message};
use switchboard_server::{Config, Rate};
use switchboard_test_support::client::WsClient;
use switchboard_test_support::metrics::{sample, scrape};
use switchboard_test_support::poll_until;
use switchboard_test_support::protocol::ProtocolClient;
use switchboard_test_support::server::{TestServer, open_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long any single expected message may take.
const LIMIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Commands and bytes per connection (what a session does with them: `protocol/limits.rs`)

#[tokio::test]
async fn echo_is_not_rate_limited() {
    let mut config = open_config();
    config.rate_limits.message_rate = Some(Rate::new(1, 1));
    config.rate_limits.byte_rate = Some(Rate::new(1, 1));
    config.rate_limits.max_rejections = 0;
    let server = TestServer::start(config).await;
    let mut ws = WsClient::connect(server.addr, "/echo").await.expect("handshake");
    for n in 0..50 {
        ws.send(Message::text(format!("message {n}"))).await.expect("send");
        match ws.recv_timeout(LIMIT).await.expect("an echo") {
            Some(Event::Text(data)) => assert_eq!(data, format!("message {n}").as_bytes()),
            other => panic!("expected the echo of {n}, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Commands and bytes per address

/// Loopback counted like any other address, and these address rates. Each refills one unit
/// a second: nothing refills while a test runs.
fn address_limited_config(messages: Option<Rate>, bytes: Option<Rate>) -> Config {
    let mut config = open_config();
    config.rate_limits.exempt_loopback = false;
    config.rate_limits.address_message_rate = messages;
    config.rate_limits.address_byte_rate = bytes;
    config
}

#[tokio::test]
async fn issue_12_a_reconnecting_client_gets_no_fresh_byte_allowance() {
    // Each connection's own allowance (16 MiB in a burst) is far above the address's.
    let config = address_limited_config(None, Some(Rate::new(1, 100_000)));
    let server = TestServer::start(config).await;
    let data = "x".repeat(60_000);
    let publish = |id: u64| json!({"id": id, "type": "publish", "channel": "room", "data": data});
    let mut first = ProtocolClient::connect(server.addr).await;
    first.send(&publish(1)).await;
    assert_eq!(first.recv().await["result"]["offset"], 1);
    first.ws.close(CloseCode::NORMAL, "").await.expect("close");
    first.ws.expect_eof(LIMIT).await.expect("closed");
    // The new connection has a full allowance of its own, the address only 40 kB left.
    let mut second = ProtocolClient::connect(server.addr).await;
    second.send(&publish(2)).await;
    let reply = second.recv().await;
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
    assert_eq!(
        reply["error"]["message"],
        "too many bytes from this address: at most 1 a second, in bursts of 100000; slow down"
    );
    second.send(&json!({"id": 3, "type": "publish", "channel": "room", "data": "small"})).await;
    assert_eq!(second.recv().await["result"]["offset"], 2);
    let text = scrape(server.addr).await;
    let counted =
        |reason| sample(&text, &format!("switchboard_rate_limited_total{{reason=\"{reason}\"}}"));
    assert_eq!((counted("address_byte_rate"), counted("byte_rate")), (Some(1.0), Some(0.0)));
}

#[tokio::test]
async fn issue_12_connections_from_one_address_share_one_command_allowance() {
    // Each connection's own allowance (4,000 commands in a burst) is far above the address's.
    let config = address_limited_config(Some(Rate::new(1, 10)), None);
    let server = TestServer::start(config).await;
    let mut replies = Vec::new();
    for _ in 0..3 {
        let mut ws = ProtocolClient::connect(server.addr).await;
        let mut codes = Vec::new();
        for id in 1..=4 {
            let reply = ping(&mut ws, id).await;
            codes.push(reply["error"]["code"].as_str().unwrap_or("ok").to_owned());
        }
        replies.push(codes);
    }
    let limited = "rate_limited";
    assert_eq!(
        replies,
        [["ok"; 4], ["ok"; 4], ["ok", "ok", limited, limited]].map(|codes| codes.map(String::from))
    );
    let text = scrape(server.addr).await;
    let counted = sample(&text, "switchboard_rate_limited_total{reason=\"address_message_rate\"}");
    assert_eq!(counted, Some(2.0));
}

#[tokio::test]
async fn loopback_clients_are_exempt_from_address_rates_by_default() {
    let mut config = open_config();
    config.rate_limits.address_message_rate = Some(Rate::new(1, 1));
    config.rate_limits.address_byte_rate = Some(Rate::new(1, 1));
    let server = TestServer::start(config).await;
    for _ in 0..2 {
        let mut ws = ProtocolClient::connect(server.addr).await;
        for id in 1..=3 {
            assert_eq!(ping(&mut ws, id).await, json!({"id": id, "result": {}}));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Malformed commands

#[tokio::test]
async fn issue_12_a_hundred_malformed_commands_in_a_row_close_with_4101() {
    let server = TestServer::start(open_config()).await;
    let mut ws = ProtocolClient::connect(server.addr).await;
    // Errors that are not about the command's form do not count, and a readable command
    // ends the run.
    for id in 1..=150 {
        ws.send(&json!({"id": id, "type": "unsubscribe", "channel": "nowhere"})).await;
    }
    for _ in 0..99 {
        ws.send_text("not json").await;
    }
    ws.send(&json!({"id": 151, "type": "ping"})).await;
    for id in 1..=150 {
        assert_eq!(ws.recv().await["error"]["code"], "not_subscribed", "{id}");
    }
    for _ in 0..99 {
        assert_eq!(ws.recv().await["error"]["code"], "bad_request");
    }
    assert_eq!(ws.recv().await, json!({"id": 151, "result": {}}));
    // Then 2,000 in a row: the hundredth closes, nothing after it is answered.
    for n in 0..2_000 {
        match n % 4 {
            0 => ws.send_text("not json").await,
            1 => ws.send(&json!({"id": n, "type": "no-such-command"})).await,
            2 => ws.send(&json!({"id": n, "type": "publish", "channel": 5})).await,
            _ => ws.send_binary(vec![0xc1]).await,
        }
    }
    let codes = ["bad_request", "unknown_command", "bad_request", "bad_request"];
    for n in 0..100 {
        assert_eq!(ws.recv().await["error"]["code"], codes[n % 4], "{n}");
    }
    assert_eq!(
        ws.recv().await,
        json!({
            "push": "disconnect",
            "code": 4101,
            "reason": "100 malformed commands in a row",
            "advice": "backoff",
        })
    );
    assert_eq!(ws.ws.expect_close(LIMIT).await.expect("a close"), Some(CloseCode(4101)));
    ws.ws.expect_eof(LIMIT).await.expect("the server closes tcp");
    let text = scrape(server.addr).await;
    assert_eq!(
        sample(&text, "switchboard_rate_limited_total{reason=\"too_many_errors\"}"),
        Some(1.0)
    );
    let closed = text
        .lines()
        .filter(|line| line.starts_with("switchboard_connections_closed_total{"))
        .filter(|line| line.contains("transport=\"ws\"") && line.contains("code=\"4101\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert_eq!(closed, 1.0, "{text}");
}

// ---------------------------------------------------------------------------------------
// Connections in total and per address

#[tokio::test]
async fn connections_past_the_total_get_503_with_retry_after_until_one_closes() {
    let mut config = open_config();
    config.rate_limits.max_connections = 2;
    let server = TestServer::start(config).await;
    let hub = WsClient::connect(server.addr, "/ws").await.expect("first");
    let _echo = WsClient::connect(server.addr, "/echo").await.expect("second");
    for path in ["/ws", "/echo"] {
        let refusal = refusal(server.addr, path).await;
        assert_eq!(refusal.status, 503, "{}", refusal.response);
        assert_eq!(refusal.header("retry-after").as_deref(), Some("5"), "{}", refusal.response);
        assert_eq!(refusal.error_code(), "connection_limit", "{}", refusal.response);
    }
    drop(hub);
    connect_eventually(server.addr, "/ws").await;
}

#[tokio::test]
async fn connections_past_the_per_address_limit_get_429_with_retry_after() {
    let mut config = open_config();
    config.rate_limits.max_connections_per_ip = 2;
    config.rate_limits.exempt_loopback = false;
    let server = TestServer::start(config).await;
    let _a = WsClient::connect(server.addr, "/ws").await.expect("first");
    let b = WsClient::connect(server.addr, "/echo").await.expect("second");
    let refusal = refusal(server.addr, "/ws").await;
    assert_eq!(refusal.status, 429, "{}", refusal.response);
    assert_eq!(refusal.header("retry-after").as_deref(), Some("5"), "{}", refusal.response);
    assert_eq!(refusal.error_code(), "ip_connection_limit", "{}", refusal.response);
    assert!(refusal.header("content-type").is_some_and(|t| t == "application/json"));
    if cfg!(target_os = "linux") {
        // Linux routes all of 127.0.0.0/8 to loopback: another address, another count.
        let (status, _other) = upgrade_from(other_loopback(), server.addr, "/ws").await;
        assert_eq!(status, 101);
    }
    drop(b);
    connect_eventually(server.addr, "/ws").await;
}

#[tokio::test]
async fn slots_are_given_back_however_connections_end() {
    let mut config = open_config();
    config.rate_limits.max_connections = 1;
    let server = TestServer::start(config).await;
    for round in 0..5 {
        // A close handshake.
        let mut ws = connect_eventually(server.addr, "/ws").await;
        ws.close(CloseCode::NORMAL, "bye").await.expect("close");
        assert_eq!(ws.expect_close(LIMIT).await.expect("close answered"), Some(CloseCode::NORMAL));
        drop(ws);
        // A dropped socket.
        drop(connect_eventually(server.addr, "/echo").await);
        // A protocol violation: an unmasked frame.
        let mut ws = connect_eventually(server.addr, "/ws").await;
        ws.send_raw(&[0x81, 0x01, b'x']).await.expect("send");
        let code = ws.expect_close(LIMIT).await.expect("a close");
        assert_eq!(code, Some(CloseCode::PROTOCOL_ERROR), "round {round}");
        drop(ws);
        // A request refused after it took the slot (not for want of one): no upgrade.
        let head = format!("GET /ws HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
        let refused = poll_until(LIMIT, || async {
            let refused = WsClient::expect_refusal(server.addr, head.as_bytes()).await;
            Some(refused.expect("an answer")).filter(|refused| refused.status != 503)
        });
        let refused = refused.await.expect("a slot came free");
        assert!(matches!(refused.status, 400 | 426), "{}", refused.response);
    }
    connect_eventually(server.addr, "/ws").await;
}

#[tokio::test]
async fn loopback_clients_are_exempt_from_per_address_limits_by_default() {
    let mut config = open_config();
    config.rate_limits.max_connections_per_ip = 1;
    config.rate_limits.handshake_rate = Some(Rate::new(1, 1));
    let server = TestServer::start(config).await;
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(WsClient::connect(server.addr, "/ws").await.expect("exempt from both limits"));
    }
}

// ---------------------------------------------------------------------------------------
// Handshakes per address

#[tokio::test]
async fn upgrades_past_the_handshake_rate_get_429_with_retry_after() {
    let mut config = open_config();
    config.rate_limits.handshake_rate = Some(Rate::new(1, 3));
    config.rate_limits.exempt_loopback = false;
    let server = TestServer::start(config).await;
    for _ in 0..3 {
        let ws = WsClient::connect(server.addr, "/ws").await.expect("within the burst");
        drop(ws);
    }
    let refusal = refusal(server.addr, "/ws").await;
    assert_eq!(refusal.status, 429, "{}", refusal.response);
    assert_eq!(refusal.header("retry-after").as_deref(), Some("1"), "{}", refusal.response);
    assert_eq!(refusal.error_code(), "handshake_rate_limited", "{}", refusal.response);
    // `/echo` is not counted; other addresses have their own allowance.
    WsClient::connect(server.addr, "/echo").await.expect("echo is not counted");
    if cfg!(target_os = "linux") {
        let (status, _other) = upgrade_from(other_loopback(), server.addr, "/ws").await;
        assert_eq!(status, 101);
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// What the server answered instead of 101.
struct Refused {
    status: u16,
    response: String,
}

impl Refused {
    /// A header's value (the name in lowercase).
    fn header(&self, name: &str) -> Option<String> {
        let head = self.response.split("\r\n\r\n").next().unwrap_or_default();
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    }

    /// `error.code` of the JSON body.
    fn error_code(&self) -> String {
        let body = self.response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        let body: Value = serde_json::from_str(body).expect("a JSON body");
        body["error"]["code"].as_str().expect("error.code").to_owned()
    }
}

/// A valid upgrade request to `path` that the server must refuse.
async fn refusal(addr: SocketAddr, path: &str) -> Refused {
    let request = ClientHandshake::new().request(&addr.to_string(), path, &[]);
    let refusal = WsClient::expect_refusal(addr, &request).await.expect("a refusal");
    Refused { status: refusal.status, response: refusal.response }
}

/// Connects to `path`, retrying while refused (a closed connection gives its slot back
/// once its task has ended).
async fn connect_eventually(addr: SocketAddr, path: &str) -> WsClient {
    let connected = poll_until(LIMIT, || async { WsClient::connect(addr, path).await.ok() });
    connected.await.expect("a slot came free")
}

/// Sends a `ping` command and returns its reply.
async fn ping(client: &mut ProtocolClient, id: u64) -> Value {
    client.send(&json!({"id": id, "type": "ping"})).await;
    client.recv().await
}

/// A loopback address other than 127.0.0.1 (Linux routes the whole /8 to `lo`).
fn other_loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 2])
}

/// Sends an upgrade request to `path` from local address `from`; returns the status and the
/// socket, left open.
async fn upgrade_from(from: IpAddr, addr: SocketAddr, path: &str) -> (u16, TcpStream) {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind a second loopback address");
    let mut stream = socket.connect(addr).await.expect("connect");
    let request = ClientHandshake::new().request(&addr.to_string(), path, &[]);
    stream.write_all(&request).await.expect("send the request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(LIMIT, stream.read(&mut byte)).await;
        assert_eq!(read.expect("an answer in time").expect("read"), 1, "closed early");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, stream)
}
