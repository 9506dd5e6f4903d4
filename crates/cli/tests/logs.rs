//! `serve --log-format json` logs one line per WebSocket opened and one per closed, with
//! structured fields.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn json_logs_have_connection_open_and_close_events() {
    let Serving { mut child, guard, lines, addr } = serve_json("info");

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

    let opened = next_event(&lines, |e| message(e) == "connection opened");
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

    let closed = next_event(&lines, |e| message(e) == "connection closed");
    let fields = &closed["fields"];
    assert_eq!(fields["client"], client.as_str(), "{closed}");
    assert_eq!(fields["peer"], local.as_str(), "{closed}");
    assert_eq!(fields["transport"], "ws", "{closed}");
    assert_eq!(fields["code"], 1000, "{closed}");
    assert_eq!(fields["cause"], "remote", "{closed}");
    assert!(fields["duration_ms"].is_u64(), "{closed}");
    assert_eq!(fields["messages_in"], 0, "{closed}");
    assert!(fields["messages_out"].is_u64(), "{closed}");
    drop(guard);
    let _ = child.wait();
}

#[test]
fn offered_subprotocols_that_look_like_credentials_are_never_logged() {
    // A JWT's shape; the server has no verifier, so it is refused whatever it holds.
    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtdXNlciJ9.c2VjcmV0LXNpZ25hdHVyZQ";
    let Serving { mut child, guard, lines, addr } = serve_json("debug");
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
        let refused = next_event(&lines, |e| message(e).starts_with("handshake refused"));
        assert!(!refused.to_string().contains(JWT), "{refused}");
    }
    drop(guard);
    let rest: Vec<Value> = lines.iter().collect();
    let _ = child.wait();
    for line in rest {
        assert!(!line.to_string().contains(JWT), "{line}");
    }
}

/// A server logging JSON at `level` to a pipe, once it says where it listens.
struct Serving {
    child: Child,
    guard: Kill,
    lines: mpsc::Receiver<Value>,
    addr: String,
}

fn serve_json(level: &str) -> Serving {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--no-demo"])
        .env("SWITCHBOARD_LOG", level)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let guard = Kill(child.id());
    let lines = json_lines(&mut child);
    let started = next_event(&lines, |e| message(e).starts_with("switchboard listening"));
    let addr = message(&started)
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a URL")
        .to_owned();
    Serving { child, guard, lines, addr }
}

/// Standard error's lines, parsed as JSON, from a reader thread.
fn json_lines(child: &mut Child) -> mpsc::Receiver<Value> {
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first event matching `wanted`, skipping others.
fn next_event(lines: &mpsc::Receiver<Value>, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(event) if wanted(&event) => return event,
            Ok(_) => {}
            Err(_) => panic!("no matching log line within {WAIT:?}"),
        }
    }
}

fn message(event: &Value) -> &str {
    event["fields"]["message"].as_str().unwrap_or_default()
}

/// Stops the server (SIGTERM) however the test ends.
struct Kill(u32);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.to_string()]).status();
    }
}
