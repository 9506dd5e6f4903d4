//! `serve --log-format json` logs one line per WebSocket opened and one per closed, with
//! structured fields.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use switchboard_test_support::cli::{Serve, Served};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn json_logs_have_connection_open_and_close_events() {
    let Serving { mut served, addr } = serve_json("info");

    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let local = stream.local_addr().unwrap().to_string();
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: switchboard.v1.json\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");

    let opened = next_event(&served, |e| message(e) == "connection opened");
    let fields = &opened["fields"];
    assert_eq!(fields["transport"], "ws", "{opened}");
    assert_eq!(fields["subprotocol"], "switchboard.v1.json", "{opened}");
    assert_eq!(fields["peer"], local.as_str(), "{opened}");
    let client = fields["client"].as_str().expect("a client id").to_owned();
    assert_eq!(opened["level"], "INFO", "{opened}");

    // A masked close frame with code 1000 (RFC 6455 §5.5.1), mask 01 02 03 04.
    stream.write_all(&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]).unwrap();
    // The server's close echo, then both sides end the TCP connection.
    let mut echo = [0u8; 4];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [0x88, 0x02, 0x03, 0xe8]);
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream.read_to_end(&mut Vec::new()).unwrap();

    let closed = next_event(&served, |e| message(e) == "connection closed");
    let fields = &closed["fields"];
    assert_eq!(fields["client"], client.as_str(), "{closed}");
    assert_eq!(fields["peer"], local.as_str(), "{closed}");
    assert_eq!(fields["transport"], "ws", "{closed}");
    assert_eq!(fields["code"], 1000, "{closed}");
    assert_eq!(fields["cause"], "remote", "{closed}");
    assert!(fields["duration_ms"].is_u64(), "{closed}");
    assert_eq!(fields["messages_in"], 0, "{closed}");
    assert!(fields["messages_out"].is_u64(), "{closed}");
    served.terminate(WAIT);
}

#[test]
fn offered_subprotocols_that_look_like_credentials_are_never_logged() {
    // A JWT's shape; the server has no verifier, so it is refused whatever it holds.
    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtdXNlciJ9.c2VjcmV0LXNpZ25hdHVyZQ";
    let Serving { mut served, addr } = serve_json("debug");
    // A bearer entry in the wrong case, then a bare JWT beside an unsupported protocol.
    for (offered, status) in
        [(format!("Switchboard.Bearer.{JWT}"), 401), (format!("mqtt, {JWT}"), 400)]
    {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            stream,
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {offered}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with(&format!("HTTP/1.1 {status} ")), "{response}");
        assert!(!response.contains(JWT), "{response}");
        let refused = next_event(&served, |e| message(e).starts_with("handshake refused"));
        assert!(!refused.to_string().contains(JWT), "{refused}");
    }
    served.terminate(WAIT);
    for line in served.rest_of_lines(WAIT) {
        assert!(!json(&line).to_string().contains(JWT), "{line}");
    }
}

/// A server logging JSON at `level` to a pipe, once it says where it listens.
struct Serving {
    served: Served,
    addr: String,
}

fn serve_json(level: &str) -> Serving {
    let served = Serve::new(BIN)
        .args(["--log-format", "json", "--no-demo"])
        .env("SWITCHBOARD_LOG", level)
        .start();
    let addr = served.addr.to_string();
    Serving { served, addr }
}

/// The first log line matching `wanted`, skipping others; every line read must be JSON.
fn next_event(served: &Served, wanted: impl Fn(&Value) -> bool) -> Value {
    let line = served.next_line(WAIT, |line| wanted(&json(line)));
    json(&line)
}

/// A log line as JSON.
fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
}

fn message(event: &Value) -> &str {
    event["fields"]["message"].as_str().unwrap_or_default()
}
