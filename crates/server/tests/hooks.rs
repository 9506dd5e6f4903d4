//! Proxy hooks against a real HTTP backend on loopback, started by each test: `subscribe`
//! and `publish` decided by the backend, `rpc` answered by it, and every way a backend fails.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use switchboard_client::ErrorCode;
use switchboard_server::{Config, ProxyEndpoint, Server};
use switchboard_test_support::http;
use switchboard_test_support::metrics::{sample, scrape};
use switchboard_test_support::protocol::ProtocolClient;
use switchboard_test_support::rust_client::fast;
use switchboard_test_support::server::{TestServer, open_config, open_namespace};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The backend: answers by the call's content, records every call it gets.
#[derive(Clone, Default)]
struct Backend {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    /// Released when the test ends: the `rpc` method `hang` waits for it.
    hang: Arc<Notify>,
    /// Told when a `hang` call arrives.
    hung: Arc<Notify>,
}

impl Backend {
    async fn start(self) -> SocketAddr {
        let app = Router::new()
            .route("/subscribe", post(subscribe))
            .route("/publish", post(publish))
            .route("/rpc", post(rpc))
            .route("/connect", post(connect))
            .with_state(self);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the backend");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn record(&self, hook: &str, body: &Value) {
        self.calls.lock().expect("the record").push((hook.to_owned(), body.clone()));
    }

    fn calls(&self, hook: &str) -> Vec<Value> {
        let calls = self.calls.lock().expect("the record");
        calls.iter().filter(|(h, _)| h == hook).map(|(_, body)| body.clone()).collect()
    }
}

fn answer(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn subscribe(State(backend): State<Backend>, body: axum::Json<Value>) -> Response {
    backend.record("subscribe", &body);
    if body["channel"].as_str().is_some_and(|c| c.ends_with(":secret")) {
        return answer(json!({"error": {"code": "permission_denied", "message": "members only"}}));
    }
    answer(json!({"result": {}}))
}

async fn publish(State(backend): State<Backend>, body: axum::Json<Value>) -> Response {
    backend.record("publish", &body);
    match body["data"]["text"].as_str() {
        Some("spam") => answer(json!({"error": {"code": "bad_request", "message": "no spam"}})),
        Some(text) if text.contains("darn") => {
            let clean = text.replace("darn", "****");
            answer(json!({"result": {"data": {"text": clean, "filtered": true}}}))
        }
        _ => answer(json!({"result": {}})),
    }
}

async fn connect(State(backend): State<Backend>, body: axum::Json<Value>) -> Response {
    backend.record("connect", &body);
    match body["headers"]["cookie"].as_str() {
        Some(cookie) if cookie.contains("session=ann") => answer(json!({"result": {
            "user": "ann", "info": {"name": "Ann"}, "channels": ["private:*"], "publish": [],
        }})),
        Some(cookie) if cookie.contains("session=banned") => {
            answer(json!({"error": {"code": "permission_denied", "message": "banned"}}))
        }
        Some(cookie) if cookie.contains("session=old") => {
            answer(json!({"error": {"code": "unauthorized", "message": "log in again"}}))
        }
        Some(cookie) if cookie.contains("session=crash") => {
            (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
        }
        Some(cookie) if cookie.contains("session=odd") => {
            answer(json!({"result": {"channels": ["private:*"]}}))
        }
        _ => answer(json!({"result": {}})),
    }
}

async fn rpc(State(backend): State<Backend>, body: axum::Json<Value>) -> Response {
    backend.record("rpc", &body);
    match body["method"].as_str() {
        Some("echo") => {
            answer(json!({"result": {"data": {"got": body["data"], "user": body["user"]}}}))
        }
        Some("nothing") => answer(json!({"result": {}})),
        Some("hang") => {
            backend.hung.notify_one();
            backend.hang.notified().await;
            answer(json!({"result": {}}))
        }
        Some("crash") => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Some("html") => (StatusCode::OK, "<html>oops</html>").into_response(),
        Some("internal") => answer(json!({"error": {"code": "internal"}})),
        _ => answer(json!({"error": {"code": "bad_request", "message": "no such method"}})),
    }
}

/// A server whose `hooks` namespace sends subscribes and publishes to the backend at `addr`,
/// and `rpc` too, each with `timeout`.
fn config(addr: SocketAddr, timeout: Duration) -> Config {
    let mut config = open_config();
    for hook in ["subscribe", "publish", "rpc"] {
        let mut endpoint = ProxyEndpoint::new(format!("http://{addr}/{hook}"));
        endpoint.timeout = timeout;
        config.proxies.insert(hook.to_owned(), endpoint);
    }
    let mut hooked = open_namespace();
    hooked.subscribe_proxy = Some("subscribe".to_owned());
    hooked.publish_proxy = Some("publish".to_owned());
    config.hub.namespaces.insert("hooks".to_owned(), hooked);
    config.rpc_proxy = Some("rpc".to_owned());
    config
}

#[tokio::test]
async fn the_backend_allows_refuses_and_rewrites_subscribes_and_publishes() {
    let backend = Backend::default();
    let server =
        TestServer::start(config(backend.clone().start().await, Duration::from_secs(5))).await;
    let mut ann = ProtocolClient::connect(server.addr).await;
    let id = ann.connect_id().await;

    ann.subscribe("hooks:room").await;
    assert_eq!(backend.calls("subscribe"), [json!({"client": id, "channel": "hooks:room"})]);
    let refused = ann.call("subscribe", json!({"channel": "hooks:secret"})).await;
    assert_eq!(
        refused["error"],
        json!({"code": "permission_denied", "message": "members only", "temporary": false})
    );
    // Channels of other namespaces do not ask.
    ann.subscribe("plain").await;
    assert_eq!(backend.calls("subscribe").len(), 2);

    let ack = ann.ok("publish", json!({"channel": "hooks:room", "data": {"text": "hello"}})).await;
    assert_eq!(ack["offset"], 1);
    assert_eq!(ann.next_push().await["data"], json!({"text": "hello"}));
    let ack =
        ann.ok("publish", json!({"channel": "hooks:room", "data": {"text": "darn it"}})).await;
    assert_eq!(ack["offset"], 2);
    let push = ann.next_push().await;
    assert_eq!(
        push["data"],
        json!({"text": "**** it", "filtered": true}),
        "stored and sent replaced"
    );
    let refused =
        ann.call("publish", json!({"channel": "hooks:room", "data": {"text": "spam"}})).await;
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    assert_eq!(refused["error"]["message"], "no spam");
    let history = ann.ok("history", json!({"channel": "hooks:room"})).await;
    let texts: Vec<&Value> =
        history["publications"].as_array().unwrap().iter().map(|p| &p["data"]["text"]).collect();
    assert_eq!(texts, ["hello", "**** it"], "the refused one is nowhere");
    assert_eq!(
        backend.calls("publish")[0],
        json!({"client": id, "channel": "hooks:room", "data": {"text": "hello"}})
    );

    let metrics = scrape(server.addr).await;
    let calls = |hook: &str, outcome: &str| {
        sample(
            &metrics,
            &format!("switchboard_hook_calls_total{{hook=\"{hook}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(calls("subscribe", "allowed"), Some(1.0));
    assert_eq!(calls("subscribe", "refused"), Some(1.0));
    assert_eq!(calls("publish", "allowed"), Some(2.0));
    assert_eq!(calls("publish", "refused"), Some(1.0));
    assert_eq!(
        sample(&metrics, "switchboard_hook_duration_seconds_count{hook=\"publish\"}"),
        Some(3.0)
    );
}

#[tokio::test]
async fn rpc_is_answered_by_the_backend() {
    let backend = Backend::default();
    let server =
        TestServer::start(config(backend.clone().start().await, Duration::from_secs(5))).await;
    let mut client = ProtocolClient::connect(server.addr).await;
    let id = client.connect_id().await;

    let result = client.ok("rpc", json!({"method": "echo", "data": {"order": 1042}})).await;
    assert_eq!(result, json!({"data": {"got": {"order": 1042}, "user": null}}));
    assert_eq!(
        backend.calls("rpc"),
        [json!({"client": id, "method": "echo", "data": {"order": 1042}})]
    );
    let result = client.ok("rpc", json!({"method": "nothing"})).await;
    assert_eq!(result, json!({"data": null}), "no data: null, and no `data` sent is null");
    assert_eq!(backend.calls("rpc")[1]["data"], Value::Null);
    assert_eq!(client.error("rpc", json!({"method": "unknown"})).await, "bad_request");
    for method in [String::new(), "m".repeat(129)] {
        assert_eq!(client.error("rpc", json!({"method": method})).await, "bad_request");
    }
    assert_eq!(backend.calls("rpc").len(), 3, "bad methods never reach the backend");

    // A server without rpc_proxy says so.
    let plain = TestServer::start(open_config()).await;
    let mut client = ProtocolClient::connect(plain.addr).await;
    let reply = client.call("rpc", json!({"method": "echo"})).await;
    assert!(reply["error"]["message"].as_str().unwrap().contains("rpc_proxy"), "{reply}");
}

#[tokio::test]
async fn the_rust_client_calls_rpc() {
    let backend = Backend::default();
    let server =
        TestServer::start(config(backend.clone().start().await, Duration::from_secs(5))).await;
    let client = fast(&format!("ws://{}/ws", server.addr)).build().expect("build");
    let answer = client.rpc("echo", json!(["a", 1])).await.expect("rpc");
    assert_eq!(answer, json!({"got": ["a", 1], "user": null}));
    let refused = client.rpc("unknown", Value::Null).await.expect_err("refused");
    assert_eq!(refused.code(), Some(ErrorCode::BadRequest));
    assert!(refused.to_string().contains("no such method"), "{refused}");
    let failed = client.rpc("crash", Value::Null).await.expect_err("failed");
    assert_eq!(failed.code(), Some(ErrorCode::Unavailable));
    assert!(failed.is_temporary());
    client.close().await;
}

#[tokio::test]
async fn a_failing_backend_is_unavailable_never_a_silent_allow() {
    let backend = Backend::default();
    let addr = backend.clone().start().await;
    let server = TestServer::start(config(addr, Duration::from_millis(300))).await;
    let mut client = ProtocolClient::connect(server.addr).await;
    client.connect_id().await;

    for (method, says) in [
        ("hang", "did not answer within 300ms"),
        ("crash", "answered 500 Internal Server Error"),
        ("html", "is not {\"result\"} or {\"error\"}"),
        ("internal", "not a code it may use"),
    ] {
        let reply = client.call("rpc", json!({"method": method})).await;
        assert_eq!(reply["error"]["code"], "unavailable", "{method}: {reply}");
        assert_eq!(reply["error"]["temporary"], true, "{method}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{method}: {message}");
    }
    let metrics = scrape(server.addr).await;
    for outcome in ["timeout", "bad_status", "malformed"] {
        let name = format!("switchboard_hook_calls_total{{hook=\"rpc\",outcome=\"{outcome}\"}}");
        assert!(sample(&metrics, &name).is_some_and(|n| n >= 1.0), "{name}");
    }
    backend.hang.notify_waiters();

    // A backend that is down: the subscribe and the publish are refused, not let through.
    let down = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = down.local_addr().unwrap();
    drop(down);
    let server = TestServer::start(config(gone, Duration::from_secs(1))).await;
    let mut client = ProtocolClient::connect(server.addr).await;
    client.connect_id().await;
    let reply = client.call("subscribe", json!({"channel": "hooks:room"})).await;
    assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("cannot be reached"), "{reply}");
    let reply = client.call("publish", json!({"channel": "hooks:room", "data": 1})).await;
    assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
    // Five failures in a row pause the proxy (the publish one: each proxy has its own count):
    // calls fail at once, saying so.
    for _ in 0..4 {
        client.call("publish", json!({"channel": "hooks:room", "data": 1})).await;
    }
    let reply = client.call("publish", json!({"channel": "hooks:room", "data": 1})).await;
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("failed 5 times in a row"), "{message}");
    let history = client.ok("history", json!({"channel": "hooks:room"})).await;
    assert_eq!(history["offset"], 0, "nothing was published: {history}");
}

#[tokio::test]
async fn a_slow_backend_does_not_slow_other_connections() {
    let backend = Backend::default();
    let server =
        TestServer::start(config(backend.clone().start().await, Duration::from_secs(30))).await;
    let mut waiting = ProtocolClient::connect(server.addr).await;
    waiting.connect_id().await;
    waiting.send(&json!({"id": 100, "type": "rpc", "method": "hang"})).await;
    // The backend has the call, and does not answer it.
    tokio::time::timeout(Duration::from_secs(5), backend.hung.notified())
        .await
        .expect("the call reaches the backend");
    // Meanwhile other connections subscribe, publish and receive.
    let mut reader = ProtocolClient::connect(server.addr).await;
    reader.connect_id().await;
    reader.subscribe("chat").await;
    let mut writer = ProtocolClient::connect(server.addr).await;
    writer.connect_id().await;
    writer.ok("publish", json!({"channel": "chat", "data": "still flowing"})).await;
    assert_eq!(reader.next_push().await["data"], "still flowing");
    backend.hang.notify_waiters();
    assert_eq!(waiting.reply(100).await["result"], json!({"data": null}));
}

#[tokio::test]
async fn the_connect_hook_says_who_a_cookie_is() {
    let backend = Backend::default();
    let addr = backend.clone().start().await;
    let mut config = config(addr, Duration::from_secs(5));
    let mut endpoint = ProxyEndpoint::new(format!("http://{addr}/connect"));
    endpoint.forward_headers = vec!["Cookie".to_owned(), "X-Request-Id".to_owned()];
    config.proxies.insert("connect".to_owned(), endpoint);
    config.connect_proxy = Some("connect".to_owned());
    config.hub.namespaces.insert("private".to_owned(), Default::default());
    let server = TestServer::start(config).await;

    // A signed-in user: the backend's user, info and grants, as a token would give them.
    let headers =
        [("Cookie", "theme=dark; session=ann"), ("X-Request-Id", "r1"), ("X-Other", "no")];
    let mut ann = ProtocolClient::open(server.addr, "/ws", &[], &headers).await;
    assert_eq!(ann.user().await.as_deref(), Some("ann"));
    assert_eq!(
        backend.calls("connect"),
        [
            json!({"transport": "websocket", "headers": {"cookie": "theme=dark; session=ann", "x-request-id": "r1"}})
        ]
    );
    ann.subscribe("private:notes").await;
    let presence = ann.ok("presence", json!({"channel": "private:notes"})).await;
    assert_eq!(presence["clients"][0]["user"], "ann");
    assert_eq!(presence["clients"][0]["info"], json!({"name": "Ann"}));
    let denied = ann.call("publish", json!({"channel": "private:notes", "data": 1})).await;
    assert_eq!(denied["error"]["code"], "permission_denied", "no publish grant: {denied}");

    // No session: anonymous, with what the namespaces open to anonymous connections.
    let mut guest = ProtocolClient::connect(server.addr).await;
    assert_eq!(guest.user().await, None);
    assert_eq!(guest.error("subscribe", json!({"channel": "private:notes"})).await, "unauthorized");

    // Refusals before the upgrade, with the backend's code and message.
    for (cookie, status, code, message) in [
        ("session=banned", 403, "permission_denied", "banned"),
        ("session=old", 401, "unauthorized", "log in again"),
        ("session=crash", 503, "unavailable", "answered 503 Service Unavailable"),
        ("session=odd", 503, "unavailable", "names no `user`"),
    ] {
        let request = http::upgrade(server.addr, "/ws", &format!("Cookie: {cookie}\r\n"));
        let refused = http::exchange(server.addr, request.as_bytes()).await;
        let error = refused.refusal(status, code);
        assert!(error["message"].as_str().unwrap().contains(message), "{cookie}: {error}");
    }
    // The long-polling door asks too.
    let banned = http::request(
        server.addr,
        "POST",
        "/poll",
        &[("Cookie", "session=banned"), ("Content-Type", "application/json")],
        "",
    )
    .await;
    assert_eq!(banned.status, 403, "{banned}");
    assert_eq!(backend.calls("connect").last().unwrap()["transport"], "long_polling");
    let metrics = scrape(server.addr).await;
    assert_eq!(
        sample(&metrics, "switchboard_handshake_failures_total{reason=\"connect_hook\"}"),
        Some(5.0)
    );
}

#[tokio::test]
async fn a_proxy_that_is_not_configured_is_refused_at_start() {
    let mut config = open_config();
    let mut ns = open_namespace();
    ns.publish_proxy = Some("nowhere".to_owned());
    config.hub.namespaces.insert("hooks".to_owned(), ns);
    let Err(refused) = Server::bind(config).await else { panic!("accepted") };
    assert!(refused.to_string().contains("[proxies.nowhere]"), "{refused}");

    let mut config = open_config();
    config.proxies.insert("ftp".to_owned(), ProxyEndpoint::new("ftp://127.0.0.1/"));
    let Err(refused) = Server::bind(config).await else { panic!("accepted") };
    assert!(refused.to_string().contains("http:// or https://"), "{refused}");
}
