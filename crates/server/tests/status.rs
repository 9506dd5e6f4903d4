//! The status page at `/status` and `/status.json`, the refusals around the server's pages,
//! and what the library serves without the binary's demo: no page at `/`, no feed.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_server::Config;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::http::{self, Response};
use switchboard_test_support::protocol::{self, call};
use switchboard_test_support::server::TestServer;

/// Every page and file of the status page, with its content type.
const ASSETS: [(&str, &str); 7] = [
    ("/status", "text/html; charset=utf-8"),
    ("/assets/style.css", "text/css; charset=utf-8"),
    ("/assets/chart.js", "text/javascript; charset=utf-8"),
    ("/assets/status.js", "text/javascript; charset=utf-8"),
    ("/assets/favicon.svg", "image/svg+xml"),
    ("/assets/admin.js", "text/javascript; charset=utf-8"),
    ("/assets/admin.css", "text/css; charset=utf-8"),
];

#[tokio::test]
async fn serves_every_page_and_file_with_its_content_type() {
    let server = TestServer::start(Config::default()).await;
    http::assert_assets_served(server.addr, &ASSETS).await;
}

#[tokio::test]
async fn everything_the_pages_load_is_served() {
    let server = TestServer::start(Config::default()).await;
    let pages = ASSETS.map(|(path, _)| path);
    // `/` is the demo's, which the binary adds (crates/cli/tests/demo.rs checks it).
    let checked = http::assert_links_served(server.addr, &pages, &["/"]).await;
    assert!(checked >= 6, "only {checked} links found");
}

#[tokio::test]
async fn head_has_no_body_and_other_methods_are_refused() {
    let server = TestServer::start(Config::default()).await;
    for path in ["/status", "/assets/chart.js", "/status.json", "/healthz", "/metrics"] {
        let head = page(server.addr, "HEAD", path).await;
        assert_eq!(head.status, 200, "{path}: {head}");
        assert!(head.body.is_empty(), "{path}: {head}");
        let post = page(server.addr, "POST", path).await;
        assert_eq!(post.status, 405, "{path}: {post}");
        assert!(post.lower_head().contains("allow: get, head"));
        let error = refusal_body(&post, "bad_request");
        let message = format!("POST {path} is not allowed: use GET, HEAD");
        assert_eq!(error["message"], message.as_str(), "{error}");
    }
    for path in ["/assets/nothing.js", "/nothing", "/status/", "/apiary"] {
        let missing = page(server.addr, "GET", path).await;
        assert_eq!(missing.status, 404, "{path}: {missing}");
        let error = refusal_body(&missing, "bad_request");
        assert!(error["message"].as_str().is_some_and(|m| m.contains(path)), "{error}");
    }
}

/// The one refusal body, `{"error": {"code", "message", "temporary"}}`, permanent, checked
/// for its code; returns the inner object.
fn refusal_body(response: &Response, code: &str) -> Value {
    let error = response.refusal(response.status, code);
    assert_eq!(error["temporary"], false, "{response}");
    error
}

#[tokio::test]
async fn status_json_counts_connections_and_subscriptions() {
    let server = TestServer::start(Config::default()).await;
    let mut ws = WsClient::connect(server.addr, "/ws").await.expect("connect");
    let reply =
        call(&mut ws, &json!({"id": 1, "type": "subscribe", "channel": "chat:status"})).await;
    assert!(reply.get("result").is_some(), "{reply}");

    let response = page(server.addr, "GET", "/status.json").await;
    assert_eq!(response.status, 200, "{response}");
    let (head, body) = (response.lower_head(), &response.body);
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
    let root = page(server.addr, "GET", "/").await;
    assert_eq!(root.status, 404, "{root}");
    for path in ["/assets/demo.js", "/assets/ticker.js"] {
        assert_eq!(page(server.addr, "GET", path).await.status, 404, "{path}");
    }
    assert_eq!(page(server.addr, "GET", "/status").await.status, 200);

    // With a feed on, ten publications would arrive in this time.
    protocol::assert_quiet(server.addr, "ticker:ACME", Duration::from_millis(2500)).await;
}

/// Sends a request without a body and reads the whole response.
async fn page(addr: SocketAddr, method: &str, path: &str) -> Response {
    http::request(addr, method, path, &[], "").await
}
