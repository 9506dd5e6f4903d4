//! The HTTP API under `/api/` over real sockets, with `/ws` clients on the other side.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_codec::CloseCode;
use switchboard_server::Config;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::http::{self, Response};
use switchboard_test_support::metrics::{sample, scrape};
use switchboard_test_support::protocol::{call, next_json};
use switchboard_test_support::server::{TestServer, open_config, open_namespace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(5);
const KEY: &str = "k3y-for-tests-0123456789abcdef";
const MIB: usize = 1 << 20;

/// A config with the API on, and namespaces `chat` (defaults), `quiet` (no presence, no
/// history) and `readonly` (clients may not publish).
fn config() -> Config {
    let mut config = open_config();
    config.api_key = Some(KEY.into());
    let namespaces = &mut config.hub.namespaces;
    namespaces.insert("chat".to_owned(), open_namespace());
    let mut quiet = open_namespace();
    quiet.presence = false;
    quiet.history_size = 0;
    namespaces.insert("quiet".to_owned(), quiet);
    let mut readonly = open_namespace();
    readonly.allow_publish = false;
    namespaces.insert("readonly".to_owned(), readonly);
    config
}

/// A request carrying the test key.
async fn api(addr: SocketAddr, method: &str, path: &str, body: &str) -> Response {
    let key = format!("apikey {KEY}");
    let headers = [("Authorization", key.as_str()), ("Content-Type", "application/json")];
    http::request(addr, method, path, &headers, body).await
}

async fn post(addr: SocketAddr, path: &str, body: &Value) -> Response {
    api(addr, "POST", path, &body.to_string()).await
}

async fn get(addr: SocketAddr, path: &str) -> Response {
    api(addr, "GET", path, "").await
}

/// A request without the key, with the given extra header lines.
async fn unkeyed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Response {
    http::request(addr, method, path, &http::header_lines(headers), body).await
}

/// A `/ws` connection after `connect`, with its client id.
async fn connected(addr: SocketAddr) -> (WsClient, String) {
    let mut ws = WsClient::connect(addr, "/ws").await.expect("ws handshake");
    let hello = call(&mut ws, &json!({"id": 1, "type": "connect"})).await;
    let id = hello["result"]["client"].as_str().expect("a client id").to_owned();
    (ws, id)
}

/// Subscribes and returns the stream's epoch.
async fn subscribe(ws: &mut WsClient, channel: &str) -> String {
    let sub = call(ws, &json!({"id": 2, "type": "subscribe", "channel": channel})).await;
    sub["result"]["epoch"].as_str().expect("subscribed").to_owned()
}

#[tokio::test]
async fn publish_reaches_a_ws_subscriber() {
    let server = TestServer::start(config()).await;
    let (mut ws, _) = connected(server.addr).await;
    let epoch = subscribe(&mut ws, "chat:lobby").await;

    let resp =
        post(server.addr, "/api/publish", &json!({"channel": "chat:lobby", "data": {"n": 1}}))
            .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json(), json!({"offset": 1, "epoch": epoch}));
    let resp =
        post(server.addr, "/api/publish", &json!({"channel": "chat:lobby", "data": "two"})).await;
    assert_eq!(resp.json()["offset"], 2, "{resp:?}");

    let push = next_json(&mut ws).await;
    assert_eq!(
        push,
        json!({"push": "publication", "channel": "chat:lobby", "offset": 1, "data": {"n": 1}})
    );
    let push = next_json(&mut ws).await;
    assert_eq!((push["offset"].clone(), push["data"].clone()), (json!(2), json!("two")));
}

#[tokio::test]
async fn publish_ignores_the_client_publish_switch() {
    let server = TestServer::start(config()).await;
    let (mut ws, _) = connected(server.addr).await;
    let denied =
        call(&mut ws, &json!({"id": 3, "type": "publish", "channel": "readonly:news", "data": 1}))
            .await;
    assert_eq!(denied["error"]["code"], "permission_denied", "{denied}");
    let resp =
        post(server.addr, "/api/publish", &json!({"channel": "readonly:news", "data": 1})).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["offset"], 1);
}

#[tokio::test]
async fn accepts_a_body_of_exactly_one_mebibyte() {
    let server = TestServer::start(config()).await;
    let frame = json!({"channel": "room", "data": ""}).to_string();
    let padding = "x".repeat(MIB - frame.len());
    let body = json!({"channel": "room", "data": padding}).to_string();
    assert_eq!(body.len(), MIB);
    let resp = api(server.addr, "POST", "/api/publish", &body).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
}

#[tokio::test]
async fn broadcast_reports_each_channel_in_request_order() {
    let server = TestServer::start(config()).await;
    let (mut ws, _) = connected(server.addr).await;
    let epoch = subscribe(&mut ws, "b").await;

    let channels = ["a", "b", "nope:x", "bad channel", "a"];
    let resp =
        post(server.addr, "/api/broadcast", &json!({"channels": channels, "data": "hi"})).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let results = resp.json()["results"].as_array().expect("results").clone();
    let names: Vec<&str> = results.iter().map(|r| r["channel"].as_str().unwrap()).collect();
    assert_eq!(names, channels);
    assert_eq!(results[0]["offset"], 1);
    assert_eq!(results[1], json!({"channel": "b", "offset": 1, "epoch": epoch}));
    assert_eq!(results[2]["error"]["code"], "unknown_namespace");
    assert_eq!(results[2]["error"]["temporary"], false);
    assert!(results[2].get("offset").is_none());
    assert_eq!(results[3]["error"]["code"], "invalid_channel");
    assert_eq!(results[4]["offset"], 2);

    let push = next_json(&mut ws).await;
    assert_eq!(push, json!({"push": "publication", "channel": "b", "offset": 1, "data": "hi"}));
    // Each publication accepted is counted, as `docs/metrics.md` says; the failed ones not.
    let text = scrape(server.addr).await;
    assert_eq!(sample(&text, "switchboard_publications_total"), Some(3.0), "{text}");
}

#[tokio::test]
async fn broadcast_refuses_empty_and_oversized_channel_lists() {
    let server = TestServer::start(config()).await;
    let resp = post(server.addr, "/api/broadcast", &json!({"channels": [], "data": 1})).await;
    resp.refusal(400, "bad_request");
    let many: Vec<String> = (0..1001).map(|i| format!("c{i}")).collect();
    let resp = post(server.addr, "/api/broadcast", &json!({"channels": many, "data": 1})).await;
    let error = resp.refusal(400, "bad_request");
    assert!(error["message"].as_str().unwrap().contains("1001 > 1000"), "{error}");
    let resp =
        post(server.addr, "/api/broadcast", &json!({"channels": many[..1000], "data": 1})).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["results"].as_array().map(Vec::len), Some(1000));
}

#[tokio::test]
async fn presence_lists_ws_subscribers() {
    let server = TestServer::start(config()).await;
    let (mut ws, id) = connected(server.addr).await;
    subscribe(&mut ws, "chat:lobby").await;

    // `:` percent-encoded, as form encoders do.
    let resp = get(server.addr, "/api/presence?channel=chat%3Alobby").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json(), json!({"clients": [{"client": id}]}));
    let resp = get(server.addr, "/api/presence?channel=chat:empty").await;
    assert_eq!(resp.json(), json!({"clients": []}));

    let resp = get(server.addr, "/api/presence_count?channel=chat%3Alobby").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json(), json!({"count": 1}));
    let resp = get(server.addr, "/api/presence_count?channel=chat:empty").await;
    assert_eq!(resp.json(), json!({"count": 0}));
}

#[tokio::test]
async fn history_honours_limit_and_since() {
    let server = TestServer::start(config()).await;
    for n in 1..=5 {
        let resp = post(server.addr, "/api/publish", &json!({"channel": "room", "data": n})).await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    let offsets = |v: &Value| -> Vec<u64> {
        v["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["offset"].as_u64().unwrap())
            .collect()
    };

    let all = get(server.addr, "/api/history?channel=room").await.json();
    assert_eq!(offsets(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all["offset"], 5);
    assert_eq!(all["publications"][0]["data"], 1);
    assert!(all.get("complete").is_none(), "{all}");
    let epoch = all["epoch"].as_str().unwrap().to_owned();

    let newest = get(server.addr, "/api/history?channel=room&limit=2").await.json();
    assert_eq!(offsets(&newest), [4, 5]);
    let position = get(server.addr, "/api/history?channel=room&limit=0").await.json();
    assert_eq!((offsets(&position), position["offset"].clone()), (vec![], json!(5)));

    let since =
        get(server.addr, &format!("/api/history?channel=room&since_offset=2&since_epoch={epoch}"))
            .await
            .json();
    assert_eq!(offsets(&since), [3, 4, 5]);
    assert_eq!(since["complete"], true);

    // Never a partial answer: a gap longer than `limit` is reported, not truncated.
    let short = format!("/api/history?channel=room&since_offset=2&since_epoch={epoch}&limit=2");
    let short = get(server.addr, &short).await.json();
    assert_eq!((offsets(&short), short["complete"].clone()), (vec![], json!(false)));

    let wrong =
        get(server.addr, "/api/history?channel=room&since_offset=2&since_epoch=other").await.json();
    assert_eq!(wrong["complete"], false, "{wrong}");
    assert_eq!(wrong["offset"], 5);
    assert!(offsets(&wrong).is_empty());
}

#[tokio::test]
async fn history_limit_is_capped_by_the_namespace() {
    let mut config = config();
    config.hub.namespaces.get_mut("chat").expect("chat").history_size = 3;
    let server = TestServer::start(config).await;
    for n in 1..=5 {
        post(server.addr, "/api/publish", &json!({"channel": "chat:a", "data": n})).await;
    }
    let resp = get(server.addr, "/api/history?channel=chat:a&limit=100").await.json();
    let count = resp["publications"].as_array().map(Vec::len);
    assert_eq!((count, resp["offset"].clone()), (Some(3), json!(5)));
}

#[tokio::test]
async fn disconnect_by_client_closes_only_that_connection() {
    let server = TestServer::start(config()).await;
    let (mut a, a_id) = connected(server.addr).await;
    let (mut b, _) = connected(server.addr).await;

    let body = json!({"client": a_id, "code": 4403, "reason": "banned"});
    let resp = post(server.addr, "/api/disconnect", &body).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json(), json!({"disconnected": 1, "complete": true}));
    let push = next_json(&mut a).await;
    assert_eq!(
        push,
        json!({"push": "disconnect", "code": 4403, "reason": "banned", "advice": "stop"})
    );
    assert_eq!(a.expect_close(LIMIT).await.unwrap(), Some(CloseCode(4403)));

    let pong = call(&mut b, &json!({"id": 7, "type": "ping"})).await;
    assert_eq!(pong, json!({"id": 7, "result": {}}));

    // Gone now: nothing left to disconnect.
    let resp = post(server.addr, "/api/disconnect", &json!({"client": a_id})).await;
    assert_eq!(resp.json(), json!({"disconnected": 0, "complete": true}));
}

#[tokio::test]
async fn disconnect_defaults_to_reconnect() {
    let server = TestServer::start(config()).await;
    let (mut ws, id) = connected(server.addr).await;
    let resp = post(server.addr, "/api/disconnect", &json!({"client": id})).await;
    assert_eq!(resp.json(), json!({"disconnected": 1, "complete": true}));
    let push = next_json(&mut ws).await;
    let expected = json!({
        "push": "disconnect",
        "code": 4000,
        "reason": "disconnected by the server",
        "advice": "reconnect",
    });
    assert_eq!(push, expected);
    assert_eq!(ws.expect_close(LIMIT).await.unwrap(), Some(CloseCode(4000)));
}

#[tokio::test]
async fn disconnect_by_user_without_a_match_returns_zero() {
    let server = TestServer::start(config()).await;
    let (mut ws, _) = connected(server.addr).await;
    let resp = post(server.addr, "/api/disconnect", &json!({"user": "nobody"})).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json(), json!({"disconnected": 0, "complete": true}));
    let pong = call(&mut ws, &json!({"id": 9, "type": "ping"})).await;
    assert_eq!(pong["id"], 9);
}

#[tokio::test]
async fn disconnect_refuses_bad_requests() {
    let server = TestServer::start(config()).await;
    let cases = [
        json!({"client": "x", "code": 3999}),
        json!({"client": "x", "code": 5000}),
        json!({"client": "x", "code": 1000}),
        json!({"client": "x", "code": 70000}),
        json!({"client": "x", "reason": "r".repeat(101)}),
        json!({"client": "x", "user": "u"}),
        json!({"code": 4000}),
    ];
    for body in cases {
        let resp = post(server.addr, "/api/disconnect", &body).await;
        resp.refusal(400, "bad_request");
    }
    let resp =
        post(server.addr, "/api/disconnect", &json!({"client": "x", "reason": "r".repeat(100)}))
            .await;
    assert_eq!(resp.json(), json!({"disconnected": 0, "complete": true}));
}

#[tokio::test]
async fn the_api_is_disabled_without_a_key() {
    let server = TestServer::start(open_config()).await;
    for (method, path) in [("POST", "/api/publish"), ("GET", "/api/presence?channel=a")] {
        let resp = api(server.addr, method, path, r#"{"channel":"a","data":1}"#).await;
        let error = resp.refusal(403, "unauthorized");
        assert!(error["message"].as_str().unwrap().contains("configure an API key"), "{error}");
    }
}

#[tokio::test]
async fn refuses_missing_and_wrong_keys() {
    let server = TestServer::start(config()).await;
    let body = r#"{"channel":"a","data":1}"#;
    let wrong = format!("Authorization: apikey {KEY}x\r\n");
    let bearer = format!("Authorization: Bearer {KEY}\r\n");
    for headers in ["", wrong.as_str(), bearer.as_str(), "Authorization: apikey \r\n"] {
        let resp = unkeyed(server.addr, "POST", "/api/publish", headers, body).await;
        resp.refusal(401, "unauthorized");
        assert_eq!(resp.header("www-authenticate"), Some("apikey"), "{headers}");
    }
    // Unknown paths are not revealed before the key is checked.
    let resp = unkeyed(server.addr, "GET", "/api/nope", "", "").await;
    resp.refusal(401, "unauthorized");
    // The scheme is case-insensitive.
    let headers = format!("authorization: APIKEY {KEY}\r\n");
    let resp = unkeyed(server.addr, "POST", "/api/publish", &headers, body).await;
    assert_eq!(resp.status, 200, "{resp:?}");
}

#[tokio::test]
async fn issue_12_callers_without_the_key_are_rate_limited_per_address() {
    // The default rate (20 a second in bursts of 50), with loopback counted.
    let mut config = config();
    config.rate_limits.exempt_loopback = false;
    let server = TestServer::start(config).await;
    let body = r#"{"channel":"a","data":1}"#;
    let wrong = format!("Authorization: apikey {KEY}x\r\n");
    let mut refused = 0;
    let limited = loop {
        assert!(refused < 100, "{refused} requests without the key, none rate limited");
        let headers = if refused % 2 == 0 { "" } else { wrong.as_str() };
        let resp = unkeyed(server.addr, "POST", "/api/publish", headers, body).await;
        if resp.status != 401 {
            break resp;
        }
        refused += 1;
    };
    // The burst, and whatever refilled while the requests went out.
    assert!(refused >= 50, "{refused}");
    let error = limited.refusal(429, "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("1"), "{limited:?}");
    assert_eq!(error["temporary"], true);
    assert_eq!(
        error["message"],
        "too many requests without the API key from this address: at most 20 a second, in \
         bursts of 50; slow down"
    );
    // Requests with the key are never counted or limited.
    for n in 0..60 {
        let resp = post(server.addr, "/api/publish", &json!({"channel": "a", "data": n})).await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    // Another address has its own allowance.
    let mut stream = from_other_loopback(server.addr).await;
    let nope = "GET /api/nope HTTP/1.1\r\nHost: switchboard\r\nConnection: close\r\n\r\n";
    stream.write_all(nope.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut raw)).await.expect("in time").unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 401 "), "{}", String::from_utf8_lossy(&raw));
    let metrics = http::get(server.addr, "/metrics").await;
    let counted = metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix("switchboard_rate_limited_total{reason=\"api_rate\"} "))
        .and_then(|value| value.parse::<f64>().ok());
    assert_eq!(counted, Some(1.0), "{}", metrics.body);
}

/// A connection to `addr` from 127.0.0.2 (Linux routes the whole 127/8 to `lo`).
async fn from_other_loopback(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).expect("bind 127.0.0.2");
    socket.connect(addr).await.expect("connect")
}

#[tokio::test]
async fn refuses_malformed_requests() {
    let server = TestServer::start(config()).await;
    let addr = server.addr;
    let cases: [(&str, &str, &str, u16, &str); 15] = [
        ("POST", "/api/publish", r#"{"channel": "a", "data": "#, 400, "bad_request"),
        ("POST", "/api/publish", r#"{"data": 1}"#, 400, "bad_request"),
        ("POST", "/api/publish", r#"{"channel": "a"}"#, 400, "bad_request"),
        ("POST", "/api/publish", "", 400, "bad_request"),
        ("POST", "/api/publish", r#"{"channel": "", "data": 1}"#, 400, "invalid_channel"),
        ("POST", "/api/publish", r#"{"channel": "chat:", "data": 1}"#, 400, "invalid_channel"),
        ("POST", "/api/publish", r#"{"channel": "nope:a", "data": 1}"#, 400, "unknown_namespace"),
        ("POST", "/api/broadcast", r#"{"channels": "a", "data": 1}"#, 400, "bad_request"),
        ("GET", "/api/presence", "", 400, "bad_request"),
        ("GET", "/api/presence?channel=quiet:a", "", 400, "permission_denied"),
        ("GET", "/api/presence_count", "", 400, "bad_request"),
        ("GET", "/api/presence_count?channel=quiet:a", "", 400, "permission_denied"),
        ("GET", "/api/history?channel=quiet:a", "", 400, "permission_denied"),
        ("GET", "/api/history?channel=a&since_offset=1", "", 400, "bad_request"),
        ("GET", "/api/history?channel=a&limit=-1", "", 400, "bad_request"),
    ];
    for (method, path, body, status, code) in cases {
        let resp = api(addr, method, path, body).await;
        assert_eq!(resp.status, status, "{method} {path} {body}: {resp:?}");
        resp.refusal(status, code);
    }
    let resp = get(addr, "/api/presence?channel=nope:a").await;
    let error = resp.refusal(400, "unknown_namespace");
    assert!(error["message"].as_str().unwrap().contains("nope"), "{error}");
}

#[tokio::test]
async fn refuses_wrong_methods_and_unknown_paths() {
    let server = TestServer::start(config()).await;
    let addr = server.addr;
    for (method, path, allow) in [
        ("GET", "/api/publish", "POST"),
        ("PUT", "/api/broadcast", "POST"),
        ("GET", "/api/disconnect", "POST"),
        ("POST", "/api/presence?channel=a", "GET"),
        ("DELETE", "/api/history?channel=a", "GET"),
    ] {
        let resp = api(addr, method, path, "").await;
        resp.refusal(405, "bad_request");
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
    }
    for path in ["/api/nope", "/api", "/api/", "/api/publish/"] {
        let resp = api(addr, "POST", path, "{}").await;
        let error = resp.refusal(404, "bad_request");
        assert!(error["message"].as_str().unwrap().contains(path), "{error}");
    }
}

#[tokio::test]
async fn refuses_other_content_types() {
    let server = TestServer::start(config()).await;
    let body = r#"{"channel":"a","data":1}"#;
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let headers = format!("Authorization: apikey {KEY}\r\nContent-Type: {content_type}\r\n");
        let resp = unkeyed(server.addr, "POST", "/api/publish", &headers, body).await;
        resp.refusal(415, "bad_request");
    }
    // No Content-Type at all is fine, and so are parameters.
    for extra in ["", "Content-Type: application/json; charset=utf-8\r\n"] {
        let headers = format!("Authorization: apikey {KEY}\r\n{extra}");
        let resp = unkeyed(server.addr, "POST", "/api/publish", &headers, body).await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
}

#[tokio::test]
async fn refuses_bodies_over_one_mebibyte() {
    let server = TestServer::start(config()).await;
    // Declared too large: refused before any of it is read.
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: switchboard\r\nAuthorization: apikey {KEY}\r\n\
         Content-Length: {}\r\n\r\n",
        MIB + 1
    );
    let resp = http::exchange(server.addr, head.as_bytes()).await;
    resp.refusal(413, "message_too_large");
    assert_eq!(resp.header("connection"), Some("close"));

    // Chunked, so only reading finds out: one chunk of a byte too many.
    let mut chunked = format!(
        "POST /api/publish HTTP/1.1\r\nHost: switchboard\r\nAuthorization: apikey {KEY}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        MIB + 1
    )
    .into_bytes();
    chunked.extend(std::iter::repeat_n(b' ', MIB + 1));
    let resp = http::exchange(server.addr, &chunked).await;
    resp.refusal(413, "message_too_large");
}

#[tokio::test]
async fn other_paths_get_the_same_refusals_without_the_key() {
    let server = TestServer::start(config()).await;
    let resp = unkeyed(server.addr, "GET", "/apiary", "", "").await;
    let error = resp.refusal(404, "bad_request");
    assert!(error["message"].as_str().unwrap().contains("/apiary"), "{error}");
    // Under `/api` the key is checked before the path.
    let resp = unkeyed(server.addr, "GET", "/api", "", "").await;
    resp.refusal(401, "unauthorized");
}

#[test]
fn config_debug_hides_the_api_key() {
    let shown = format!("{:?}", config());
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("api_key: Some(\"<redacted>\")"), "{shown}");
    assert!(format!("{:?}", open_config()).contains("api_key: None"));
}
