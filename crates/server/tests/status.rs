//! The status page at `/status` and `/status.json`, the refusals around the server's pages,
//! and what the library serves without the binary's demo: no page at `/`, no feed.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_codec::{Event, Message};
use switchboard_server::Config;
use switchboard_test_support::client::{Refusal, WsClient};
use switchboard_test_support::server::TestServer;

const LIMIT: Duration = Duration::from_secs(5);

/// Every page and file of the status page, with its content type.
const ASSETS: [(&str, &str); 5] = [
    ("/status", "text/html; charset=utf-8"),
    ("/assets/style.css", "text/css; charset=utf-8"),
    ("/assets/chart.js", "text/javascript; charset=utf-8"),
    ("/assets/status.js", "text/javascript; charset=utf-8"),
    ("/assets/favicon.svg", "image/svg+xml"),
];

#[tokio::test]
async fn serves_every_page_and_file_with_its_content_type() {
    let server = TestServer::start(Config::default()).await;
    for (path, content_type) in ASSETS {
        let response = http(server.addr, "GET", path).await;
        assert_eq!(response.status, 200, "{path}: {}", response.response);
        let (head, body) = split(&response);
        assert!(head.contains(&format!("content-type: {content_type}\r\n")), "{path}: {head}");
        assert!(head.contains("cache-control: no-cache\r\n"), "{path}: {head}");
        assert!(head.contains("x-content-type-options: nosniff\r\n"), "{path}: {head}");
        assert!(!body.is_empty(), "{path}");
        if content_type.starts_with("text/html") {
            assert!(head.contains("content-security-policy: default-src 'self'"), "{path}: {head}");
        }
    }
}

#[tokio::test]
async fn everything_the_pages_load_is_served() {
    let server = TestServer::start(Config::default()).await;
    let mut checked = 0;
    for (path, _) in ASSETS {
        let response = http(server.addr, "GET", path).await;
        let (_, body) = split(&response);
        // `src="/…"`, `href="/…"` in pages; `from './…'` and `from '/…'` in modules. `/` is
        // the demo's, which the binary adds (crates/cli/tests/demo.rs checks it).
        for link in links(body).into_iter().filter(|link| link != "/") {
            let target = http(server.addr, "GET", &link).await;
            assert_eq!(target.status, 200, "{path} loads {link}");
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} links found");
}

#[tokio::test]
async fn head_has_no_body_and_other_methods_are_refused() {
    let server = TestServer::start(Config::default()).await;
    for path in ["/status", "/assets/chart.js", "/status.json", "/healthz", "/metrics"] {
        let head = http(server.addr, "HEAD", path).await;
        assert_eq!(head.status, 200, "{path}: {}", head.response);
        assert!(head.response.ends_with("\r\n\r\n"), "{path}: {}", head.response);
        let post = http(server.addr, "POST", path).await;
        assert_eq!(post.status, 405, "{path}: {}", post.response);
        assert!(post.response.to_ascii_lowercase().contains("allow: get, head"));
        let error = refusal_body(&post, "bad_request");
        let message = format!("POST {path} is not allowed: use GET, HEAD");
        assert_eq!(error["message"], message.as_str(), "{error}");
    }
    for path in ["/assets/nothing.js", "/nothing", "/status/", "/apiary"] {
        let missing = http(server.addr, "GET", path).await;
        assert_eq!(missing.status, 404, "{path}: {}", missing.response);
        let error = refusal_body(&missing, "bad_request");
        assert!(error["message"].as_str().is_some_and(|m| m.contains(path)), "{error}");
    }
}

/// The JSON body every refusal has, `{"error": {"code", "message", "temporary"}}`, checked
/// for its code; returns the inner object.
fn refusal_body(response: &Refusal, code: &str) -> Value {
    let (head, body) = split(response);
    assert!(head.contains("content-type: application/json\r\n"), "{head}");
    let body: Value = serde_json::from_str(body).expect("a JSON body");
    let error = body["error"].clone();
    assert_eq!(error["code"], code, "{body}");
    assert!(error["message"].is_string(), "{body}");
    assert_eq!(error["temporary"], false, "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    assert_eq!(error.as_object().map(|o| o.len()), Some(3), "{body}");
    error
}

#[tokio::test]
async fn status_json_counts_connections_and_subscriptions() {
    let server = TestServer::start(Config::default()).await;
    let mut ws = WsClient::connect(server.addr, "/ws").await.expect("connect");
    let reply =
        call(&mut ws, json!({"id": 1, "type": "subscribe", "channel": "chat:status"})).await;
    assert!(reply.get("result").is_some(), "{reply}");

    let response = http(server.addr, "GET", "/status.json").await;
    assert_eq!(response.status, 200, "{}", response.response);
    let (head, body) = split(&response);
    assert!(head.contains("content-type: application/json\r\n"), "{head}");
    assert!(head.contains("cache-control: no-store\r\n"), "{head}");
    let status: Value = serde_json::from_str(body).expect("json");
    for field in [
        "connections",
        "channels",
        "subscriptions",
        "messages_received",
        "publications",
        "memory_bytes",
        "uptime_seconds",
    ] {
        assert!(status[field].is_u64(), "{field} in {status}");
    }
    assert_eq!(status["connections"], 1, "{status}");
    assert!(status["channels"].as_u64() >= Some(1), "{status}");
    assert!(status["subscriptions"].as_u64() >= Some(1), "{status}");
    assert!(status["messages_received"].as_u64() >= Some(1), "{status}");
    assert!(status["memory_bytes"].as_u64() > Some(0), "{status}");
}

#[tokio::test]
async fn the_library_serves_no_demo_and_runs_no_feed() {
    let server = TestServer::start(Config::default()).await;
    let root = http(server.addr, "GET", "/").await;
    assert_eq!(root.status, 404, "{}", root.response);
    for path in ["/assets/demo.js", "/assets/ticker.js"] {
        assert_eq!(http(server.addr, "GET", path).await.status, 404, "{path}");
    }
    assert_eq!(http(server.addr, "GET", "/status").await.status, 200);

    let mut ws = WsClient::connect(server.addr, "/ws").await.expect("connect");
    let reply =
        call(&mut ws, json!({"id": 1, "type": "subscribe", "channel": "ticker:ACME"})).await;
    assert_eq!(reply["result"]["offset"], 0, "{reply}");
    // With a feed on, ten publications would arrive in this time.
    let quiet = ws.recv_timeout(Duration::from_millis(2500)).await;
    assert!(quiet.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut), "{quiet:?}");
}

/// Sends a request without a body and reads the whole response.
async fn http(addr: SocketAddr, method: &str, path: &str) -> Refusal {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    WsClient::expect_refusal(addr, request.as_bytes()).await.expect("a response")
}

/// The lowercased head and the body.
fn split(response: &Refusal) -> (String, &str) {
    let (head, body) = response.response.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_ascii_lowercase() + "\r\n", body)
}

/// The same-server paths a page or module loads.
fn links(body: &str) -> Vec<String> {
    let mut links = Vec::new();
    for marker in ["src=\"", "href=\"", "from '"] {
        for (at, _) in body.match_indices(marker) {
            let rest = &body[at + marker.len()..];
            let end = rest.find(['"', '\'']).unwrap_or(rest.len());
            let link = &rest[..end];
            if let Some(name) = link.strip_prefix("./") {
                links.push(format!("/assets/{name}"));
            } else if link.starts_with('/') {
                links.push(link.to_owned());
            }
        }
    }
    links
}

async fn call(ws: &mut WsClient, command: Value) -> Value {
    ws.send(Message::text(command.to_string())).await.expect("send");
    loop {
        let message = next_push(ws).await;
        if message.get("id").is_some() {
            return message;
        }
    }
}

/// The next JSON message, reply or push.
async fn next_push(ws: &mut WsClient) -> Value {
    loop {
        match ws.recv_timeout(LIMIT).await.expect("a message in time") {
            Some(Event::Text(t)) => return serde_json::from_slice(&t).expect("json"),
            Some(Event::Ping(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}
