//! The demo `switchboard serve` shows at `/` and `/board`, its simulated price feed on
//! `ticker:` channels, the whiteboard's `board:` and `cursor:` channels, and `--no-demo`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use support::Node;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::http::{self, Response};
use switchboard_test_support::protocol::{self, call, next_json};

/// Every page and file the demo loads, its own and the status page's, with its content type.
const ASSETS: [(&str, &str); 12] = [
    ("/", "text/html; charset=utf-8"),
    ("/board", "text/html; charset=utf-8"),
    ("/assets/banner.js", "text/javascript; charset=utf-8"),
    ("/assets/board.js", "text/javascript; charset=utf-8"),
    ("/status", "text/html; charset=utf-8"),
    ("/assets/style.css", "text/css; charset=utf-8"),
    ("/assets/demo.js", "text/javascript; charset=utf-8"),
    ("/assets/chat.js", "text/javascript; charset=utf-8"),
    ("/assets/ticker.js", "text/javascript; charset=utf-8"),
    ("/assets/chart.js", "text/javascript; charset=utf-8"),
    ("/assets/status.js", "text/javascript; charset=utf-8"),
    ("/assets/favicon.svg", "image/svg+xml"),
];

#[tokio::test]
async fn serves_every_page_and_file_with_its_content_type() {
    let node = Node::start_with(&[]);
    http::assert_assets_served(node.addr, &ASSETS).await;
}

#[tokio::test]
async fn everything_the_pages_load_is_served() {
    let node = Node::start_with(&[]);
    let pages = ASSETS.map(|(path, _)| path);
    let checked = http::assert_links_served(node.addr, &pages, &[]).await;
    assert!(checked >= 10, "only {checked} links found");
}

#[tokio::test]
async fn head_has_no_body_and_other_methods_are_refused() {
    let node = Node::start_with(&[]);
    for path in ["/", "/assets/chat.js"] {
        let head = page(node.addr, "HEAD", path).await;
        assert_eq!(head.status, 200, "{path}: {head}");
        assert!(head.body.is_empty(), "{path}: {head}");
        let post = page(node.addr, "POST", path).await;
        assert_eq!(post.status, 405, "{path}: {post}");
        assert!(post.lower_head().contains("allow: get, head"));
        // The server's one refusal body, for the binary's routes too.
        post.refusal(405, "bad_request");
    }
    assert_eq!(page(node.addr, "GET", "/assets/nothing.js").await.status, 404);
}

#[tokio::test]
async fn the_ticker_publishes_prices_to_anonymous_subscribers() {
    let node = Node::start_with(&[]);
    let mut ws = WsClient::connect(node.addr, "/ws").await.expect("connect");
    let reply =
        call(&mut ws, &json!({"id": 1, "type": "subscribe", "channel": "ticker:ACME"})).await;
    assert!(reply.get("result").is_some(), "{reply}");

    // About 4 a second per symbol: three arrive well within the limit.
    let mut offsets = Vec::new();
    while offsets.len() < 3 {
        let push = next_json(&mut ws).await;
        assert_eq!(push["push"], "publication", "{push}");
        assert_eq!(push["channel"], "ticker:ACME", "{push}");
        assert_eq!(push["data"]["symbol"], "ACME", "{push}");
        assert!(push["data"]["price"].as_f64() > Some(0.0), "{push}");
        assert!(push["data"]["open"].is_number(), "{push}");
        assert!(push.get("info").is_none(), "published by the server: {push}");
        offsets.push(push["offset"].as_u64().expect("an offset"));
    }
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
}

#[tokio::test]
async fn anonymous_clients_may_read_but_not_publish_the_ticker() {
    let node = Node::start_with(&[]);
    let mut ws = WsClient::connect(node.addr, "/ws").await.expect("connect");
    let publish =
        json!({"id": 1, "type": "publish", "channel": "ticker:ACME", "data": {"price": 1}});
    let reply = call(&mut ws, &publish).await;
    assert_eq!(reply["error"]["code"], "permission_denied", "{reply}");

    let history = json!({"id": 2, "type": "history", "channel": "ticker:ACME", "limit": 500});
    let reply = call(&mut ws, &history).await;
    let kept = reply["result"]["publications"].as_array().expect("publications").len();
    assert!(kept <= 50, "history is capped at 50: {kept}");
}

#[tokio::test]
async fn anonymous_clients_draw_on_the_whiteboard_and_its_cursors_are_not_kept() {
    let node = Node::start_with(&[]);
    let mut ws = WsClient::connect(node.addr, "/ws").await.expect("connect");
    let stroke = json!({"type": "draw", "stroke": "t-1", "color": "#e11d48", "size": 4,
        "points": [0, 0, 1600, 1000]});
    let cursor = json!({"type": "cursor", "x": 800, "y": 500});
    for (id, channel, data) in [(1, "board:t", &stroke), (2, "cursor:t", &cursor)] {
        let publish = json!({"id": id, "type": "publish", "channel": channel, "data": data});
        let reply = call(&mut ws, &publish).await;
        assert!(reply.get("result").is_some(), "{channel}: {reply}");
    }
    let subscribe = json!({"id": 3, "type": "subscribe", "channel": "board:t"});
    assert!(call(&mut ws, &subscribe).await.get("result").is_some());
    let presence = call(&mut ws, &json!({"id": 4, "type": "presence", "channel": "board:t"})).await;
    assert_eq!(presence["result"]["clients"].as_array().map(Vec::len), Some(1), "{presence}");

    // A late joiner reads the drawing back; pointers are worth nothing later, and not kept.
    let history = json!({"id": 5, "type": "history", "channel": "board:t"});
    let reply = call(&mut ws, &history).await;
    assert_eq!(reply["result"]["publications"][0]["data"], stroke, "{reply}");
    let history = json!({"id": 6, "type": "history", "channel": "cursor:t"});
    let reply = call(&mut ws, &history).await;
    assert_eq!(reply["error"]["code"], "permission_denied", "{reply}");
    let presence = json!({"id": 7, "type": "presence", "channel": "cursor:t"});
    let reply = call(&mut ws, &presence).await;
    assert_eq!(reply["error"]["code"], "permission_denied", "{reply}");
}

#[tokio::test]
async fn without_the_demo_there_is_no_feed_and_no_demo_page() {
    let node = Node::start_with(&["--no-demo"]);
    assert_eq!(page(node.addr, "GET", "/").await.status, 404);
    assert_eq!(page(node.addr, "GET", "/assets/demo.js").await.status, 404);
    assert_eq!(page(node.addr, "GET", "/board").await.status, 404);
    assert_eq!(page(node.addr, "GET", "/status").await.status, 200);
    assert_eq!(page(node.addr, "GET", "/status.json").await.status, 200);

    // With the feed on, ten publications arrive in this time.
    protocol::assert_quiet(node.addr, "ticker:ACME", Duration::from_millis(2500)).await;
}

/// Sends a request without a body and reads the whole response.
async fn page(addr: SocketAddr, method: &str, path: &str) -> Response {
    http::request(addr, method, path, &[], "").await
}
