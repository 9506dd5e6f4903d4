//! Graceful drain: `/ws` connections closed with 4003 in batches spread over the drain
//! window, `/readyz` unready and upgrades refused meanwhile, `run` returning at the end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_codec::{CloseCode, Message};
use switchboard_server::{Config, Server};
use switchboard_test_support::client::WsClient;
use switchboard_test_support::protocol::next_json;
use switchboard_test_support::server::open_config;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(1);
const CLIENTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_spreads_closes_with_4003_over_the_window() {
    let mut config = open_config();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.drain_window = WINDOW;
    config.shutdown_timeout = Duration::from_secs(5);
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let run = tokio::spawn(async move {
        server.run().await.expect("run");
        Instant::now()
    });

    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        let mut ws = WsClient::connect(addr, "/ws").await.expect("handshake");
        // A reply proves the connection is registered with the node.
        ws.send(Message::text(json!({"id": id, "type": "ping"}).to_string())).await.unwrap();
        assert_eq!(next_json(&mut ws).await, json!({"id": id, "result": {}}));
        clients.push(ws);
    }
    let mut http = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let (status, body) = request(&mut http, addr, "/readyz", "").await;
    assert_eq!(status, 200, "{body}");

    handle.shutdown();
    let waiting: Vec<_> = clients.into_iter().map(|ws| tokio::spawn(until_closed(ws))).collect();

    // During the drain, on a keep-alive connection opened before it: unready, and no upgrades.
    let (status, body) = request(&mut http, addr, "/readyz", "").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["reason"], "draining", "{body}");
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let (status, body) = request(&mut http, addr, "/ws", upgrade).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "draining");
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting while draining");

    let mut closed_at = Vec::new();
    for task in waiting {
        let (push, code, at) = task.await.unwrap();
        assert_eq!(
            push,
            json!({
                "push": "disconnect",
                "code": 4003,
                "reason": "server draining",
                "advice": "reconnect",
            })
        );
        assert_eq!(code, Some(CloseCode(4003)));
        closed_at.push(at);
    }
    let first = *closed_at.iter().min().unwrap();
    let last = *closed_at.iter().max().unwrap();
    assert!(last - first >= WINDOW / 2, "closes spread over {:?} only", last - first);
    let returned = tokio::time::timeout(LIMIT, run).await.expect("run returns").unwrap();
    assert!(returned >= last, "run returned before the last connection closed");
}

/// Reads until the server's close frame: the `disconnect` push before it, its code, and
/// when it came.
async fn until_closed(mut ws: WsClient) -> (Value, Option<CloseCode>, Instant) {
    let push = next_json(&mut ws).await;
    let code = ws.expect_close(LIMIT).await.expect("a close frame");
    let at = Instant::now();
    ws.expect_eof(LIMIT).await.expect("the server closes tcp");
    (push, code, at)
}

/// One GET on a keep-alive connection: the status and the body.
async fn request(
    http: &mut BufReader<TcpStream>,
    addr: SocketAddr,
    path: &str,
    headers: &str,
) -> (u16, String) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n");
    http.get_mut().write_all(head.as_bytes()).await.expect("write");
    let mut line = String::new();
    http.read_line(&mut line).await.expect("read");
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let mut length = 0;
    loop {
        line.clear();
        http.read_line(&mut line).await.expect("read");
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("a length");
        }
    }
    let mut body = vec![0; length];
    http.read_exact(&mut body).await.expect("a body");
    (status, String::from_utf8(body).expect("utf-8"))
}

#[test]
fn drain_window_defaults_to_ten_seconds() {
    assert_eq!(Config::default().drain_window, Duration::from_secs(10));
}
