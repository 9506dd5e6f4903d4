//! The HTTP transports over real sockets (`docs/transports.md`): Server-Sent Events and
//! long-polling carry the same session as `/ws`: numbered messages, resuming, acks,
//! expiry, backpressure, the door's checks, CORS, drain.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_server::Transport;
use switchboard_test_support::http::request;
use switchboard_test_support::metrics::{sample, scrape};
use switchboard_test_support::server::{TestServer, open_config};
use switchboard_test_support::sse::{EventStream, open_poll, open_sse, poll, poll_messages, post};
use switchboard_test_support::tokens;
use switchboard_test_support::wait::poll_until;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const LIMIT: Duration = Duration::from_secs(10);

fn subscribe(id: u64, channel: &str) -> String {
    json!({"id": id, "type": "subscribe", "channel": channel}).to_string()
}

fn publish(id: u64, channel: &str, text: &str) -> String {
    json!({"id": id, "type": "publish", "channel": channel, "data": {"text": text}}).to_string()
}

#[tokio::test]
async fn sse_carries_replies_and_pushes_as_numbered_events() {
    let server = TestServer::start(open_config()).await;
    let (mut stream, session) = open_sse(server.addr, &[]).await;
    // nginx reads this and buffers nothing of the stream, whatever its own setting.
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));

    let posted = post(server.addr, &session, &subscribe(1, "chat:a")).await;
    assert_eq!(posted.status, 204, "{posted}");
    let reply = stream.next().await.expect("the reply");
    assert_eq!(reply.id, Some(format!("{session}:1")));
    assert_eq!(reply.json()["id"], 1);
    assert!(reply.json()["result"]["epoch"].is_string(), "{reply:?}");

    // Two commands in one body, carried out in order; a publication from another session.
    let publisher = open_poll(server.addr).await;
    let posted = post(
        server.addr,
        &publisher,
        &format!("{}\n{}\n", publish(1, "chat:a", "one"), publish(2, "chat:a", "two")),
    )
    .await;
    assert_eq!(posted.status, 204, "{posted}");
    for (n, text) in [(2, "one"), (3, "two")] {
        let event = stream.next().await.expect("a publication");
        assert_eq!(event.id, Some(format!("{session}:{n}")));
        let push = event.json();
        assert_eq!(push["push"], "publication", "{push}");
        assert_eq!(push["data"], json!({"text": text}));
    }
    let (replies, _) = poll_messages(server.addr, &publisher, 0, 2).await;
    assert_eq!(replies[0]["id"], 1);
    assert_eq!(replies[0]["result"]["offset"], 1, "{replies:?}");
    assert_eq!(replies[1]["result"]["offset"], 2, "{replies:?}");
}

#[tokio::test]
async fn a_reconnecting_event_stream_resumes_after_its_last_event_id() {
    let server = TestServer::start(open_config()).await;
    let (mut stream, session) = open_sse(server.addr, &[]).await;
    post(server.addr, &session, &subscribe(1, "chat:r")).await;
    let reply = stream.next().await.expect("the reply");
    let last_id = reply.id.expect("an id");
    drop(stream);

    // Published while no stream is open: they wait in the session.
    let publisher = open_poll(server.addr).await;
    for i in 0..3 {
        post(server.addr, &publisher, &publish(i + 1, "chat:r", &format!("m{i}"))).await;
    }
    let (mut resumed, _) =
        (EventStream::open(server.addr, "/sse", &[("Last-Event-ID", &last_id)]).await, ());
    assert_eq!(resumed.status, 200);
    for i in 0..3u64 {
        let event = resumed.next().await.expect("a missed publication");
        assert_eq!(event.event, None, "no new session event: {event:?}");
        assert_eq!(event.id, Some(format!("{session}:{}", i + 2)));
        assert_eq!(event.json()["data"]["text"], format!("m{i}"));
    }
    // Live again: the next one follows.
    post(server.addr, &publisher, &publish(9, "chat:r", "live")).await;
    assert_eq!(resumed.next_json().await["data"]["text"], "live");
}

#[tokio::test]
async fn an_unknown_last_event_id_gets_the_4002_disconnect() {
    let server = TestServer::start(open_config()).await;
    let (stream, session) = open_sse(server.addr, &[]).await;
    drop(stream);
    for last in [
        "ffffffff-00000000000000000000000000000000:3".to_owned(),
        "garbage".to_owned(),
        // Beyond what the session numbered: it cannot resume there.
        format!("{session}:99"),
    ] {
        let mut stream = EventStream::open(server.addr, "/sse", &[("Last-Event-ID", &last)]).await;
        assert_eq!(stream.status, 200);
        let push = stream.next_json().await;
        assert_eq!(push["push"], "disconnect", "{push}");
        assert_eq!(push["code"], 4002);
        assert_eq!(push["advice"], "reconnect");
        assert!(stream.next().await.is_none(), "the stream ends after it");
    }
    // The failed resume ended the session.
    let posted = post(server.addr, &session, &subscribe(1, "chat:x")).await;
    posted.refusal(404, "session_not_found");
}

#[tokio::test]
async fn long_polls_resend_until_acknowledged() {
    let server = TestServer::start(open_config()).await;
    let session = open_poll(server.addr).await;
    post(server.addr, &session, &subscribe(1, "chat:p")).await;
    post(server.addr, &session, &publish(2, "chat:p", "hi")).await;

    let (seq, first) = poll(server.addr, &session, 0).await;
    assert_eq!(seq, 1);
    assert!(!first.is_empty());
    // The answer "got lost": the same ack gets the same messages (and what came since).
    let (seq, again) = poll(server.addr, &session, 0).await;
    assert_eq!(seq, 1);
    assert_eq!(again[..first.len()], first[..]);
    let (all, ack) = poll_messages(server.addr, &session, 0, 3).await;
    assert_eq!(all[0]["id"], 1, "{all:?}");
    let kinds: Vec<&Value> = all.iter().map(|m| m.get("push").unwrap_or(&m["id"])).collect();
    assert!(kinds.contains(&&json!("publication")), "{all:?}");
    assert_eq!(ack, 3);
    // Acknowledged: the next poll waits for something new.
    let waiting = tokio::spawn(async move { poll(server.addr, &session, 3).await });
    let other = open_poll(server.addr).await;
    post(server.addr, &other, &publish(1, "chat:p", "later")).await;
    let (seq, next) = tokio::time::timeout(LIMIT, waiting).await.unwrap().unwrap();
    assert_eq!(seq, 4);
    assert_eq!(next[0]["data"]["text"], "later", "{next:?}");
}

#[tokio::test]
async fn an_idle_poll_answers_an_empty_batch_after_the_poll_timeout() {
    let mut config = open_config();
    config.transports.poll_timeout = Duration::from_millis(200);
    let server = TestServer::start(config).await;
    let session = open_poll(server.addr).await;
    let (seq, messages) = poll(server.addr, &session, 0).await;
    assert_eq!((seq, messages), (1, Vec::new()));
}

#[tokio::test]
async fn a_session_nobody_polls_expires_and_leaves_its_channels() {
    let mut config = open_config();
    config.transports.session_timeout = Duration::from_millis(300);
    config.transports.poll_timeout = Duration::from_millis(100);
    let mut ns = switchboard_test_support::server::open_namespace();
    ns.presence = true;
    ns.join_leave = true;
    config.hub.namespaces.insert("room".into(), ns);
    let server = TestServer::start(config).await;
    let watcher = open_poll(server.addr).await;
    let leaver = open_poll(server.addr).await;
    post(server.addr, &watcher, &subscribe(1, "room:a")).await;
    let (_, mut ack) = poll_messages(server.addr, &watcher, 0, 1).await;
    post(server.addr, &leaver, &subscribe(1, "room:a")).await;
    // The watcher sees the join, then (the leaver never polls) the leave.
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &Value| m["push"] == "leave") {
        let (messages, next) = poll_messages(server.addr, &watcher, ack, 1).await;
        ack = next;
        seen.extend(messages);
    }
    assert_eq!(seen[0]["push"], "join", "{seen:?}");
    post(server.addr, &leaver, &subscribe(2, "room:b")).await.refusal(404, "session_not_found");
    let text = scrape(server.addr).await;
    assert_eq!(sample(&text, "switchboard_http_sessions_expired_total"), Some(1.0), "{text}");
}

#[tokio::test]
async fn a_client_that_does_not_poll_is_cut_off_as_a_slow_consumer() {
    let mut config = open_config();
    config.hub.outbound_queue_bytes = 4096;
    config.rate_limits.message_rate = None;
    config.rate_limits.byte_rate = None;
    config.rate_limits.address_message_rate = None;
    config.rate_limits.address_byte_rate = None;
    let server = TestServer::start(config).await;
    let slow = open_poll(server.addr).await;
    post(server.addr, &slow, &subscribe(1, "chat:s")).await;
    let publisher = open_poll(server.addr).await;
    let big = "x".repeat(1000);
    let body: Vec<String> = (0..10).map(|i| publish(i + 1, "chat:s", &big)).collect();
    post(server.addr, &publisher, &body.join("\n")).await;
    // What it gets ends with the 4001 disconnect push.
    let mut ack = 0;
    let last = loop {
        let (seq, messages) = poll(server.addr, &slow, ack).await;
        let Some(last) = messages.last().cloned() else { continue };
        ack = seq + messages.len() as u64 - 1;
        if last["push"] == "disconnect" {
            break last;
        }
    };
    assert_eq!(last["code"], 4001, "{last}");
    assert_eq!(last["advice"], "reconnect");
    // Ended: commands are refused, not taken silently (the push still waits for its ack).
    post(server.addr, &slow, &subscribe(2, "chat:t")).await.refusal(404, "session_not_found");
    let text = scrape(server.addr).await;
    assert_eq!(sample(&text, "switchboard_slow_consumer_disconnects_total"), Some(1.0));
}

#[tokio::test]
async fn the_door_refuses_as_on_the_websocket() {
    let mut config = open_config();
    config.auth = tokens::config().auth;
    config.auth.required = true;
    let server = TestServer::start(config).await;
    let addr = server.addr;
    // Credentials: none, a bad one, then a good one.
    request(addr, "POST", "/poll", &[], "").await.refusal(401, "credentials_required");
    let stream = EventStream::open(addr, "/sse", &[]).await;
    assert_eq!(stream.status, 401);
    let bad = [("Authorization", "Bearer nonsense")];
    request(addr, "POST", "/poll", &bad, "").await.refusal(401, "malformed");
    let token = tokens::token("alice", &["*"], &["*"]);
    let bearer = format!("Bearer {token}");
    let opened = request(addr, "POST", "/poll", &[("Authorization", &bearer)], "").await;
    assert_eq!(opened.status, 200, "{opened}");
    // Origins: a foreign page is refused; the server's own origin is let in.
    let evil = [("Origin", "https://evil.example"), ("Authorization", bearer.as_str())];
    request(addr, "POST", "/poll", &evil, "").await.refusal(403, "origin_not_allowed");
    // Session requests: no header, an unknown session, a body too large.
    request(addr, "POST", "/session", &[], "{}").await.refusal(400, "bad_request");
    post(addr, "ffffffff-00000000000000000000000000000000", "{}")
        .await
        .refusal(404, "session_not_found");
    let session = opened.json()["session"].as_str().unwrap().to_owned();
    let huge = "x".repeat(100 * 1024);
    post(addr, &session, &huge).await.refusal(413, "message_too_large");
    let put = request(addr, "PUT", "/session", &[], "").await;
    put.refusal(405, "bad_request");
    assert_eq!(put.header("allow"), Some("POST, DELETE, OPTIONS"));
    let text = scrape(addr).await;
    let refused = |reason: &str| {
        sample(
            &text,
            &format!("switchboard_http_session_requests_refused_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refused("session_not_found"), Some(1.0), "{text}");
    assert_eq!(refused("body_too_large"), Some(1.0), "{text}");
}

#[tokio::test]
async fn cross_origin_pages_get_cors_answers() {
    let mut config = open_config();
    config.origins.allowed = vec!["https://app.example".to_owned()];
    let server = TestServer::start(config).await;
    let preflight = request(
        server.addr,
        "OPTIONS",
        "/session",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "switchboard-session, content-type"),
        ],
        "",
    )
    .await;
    assert_eq!(preflight.status, 204, "{preflight}");
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(preflight.header("access-control-allow-credentials"), Some("true"));
    assert!(
        preflight.header("access-control-allow-headers").unwrap().contains("switchboard-session")
    );
    let opened =
        request(server.addr, "POST", "/poll", &[("Origin", "https://app.example")], "").await;
    assert_eq!(opened.status, 200);
    assert_eq!(opened.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(opened.header("vary"), Some("Origin"));
    let foreign =
        request(server.addr, "OPTIONS", "/poll", &[("Origin", "https://evil.example")], "").await;
    foreign.refusal(403, "origin_not_allowed");
}

#[tokio::test]
async fn a_disabled_transport_answers_404() {
    let mut config = open_config();
    config.transports.disabled = vec![Transport::WebSocket, Transport::LongPoll];
    let server = TestServer::start(config).await;
    let upgrade = switchboard_test_support::http::exchange(
        server.addr,
        switchboard_test_support::http::upgrade(server.addr, "/ws", "").as_bytes(),
    )
    .await;
    upgrade.refusal(404, "transport_disabled");
    request(server.addr, "POST", "/poll", &[], "").await.refusal(404, "transport_disabled");
    let (_stream, _session) = open_sse(server.addr, &[]).await;
}

#[tokio::test]
async fn an_idle_stream_gets_heartbeats() {
    let mut config = open_config();
    config.ping_interval = Some(Duration::from_millis(100));
    let server = TestServer::start(config).await;
    let (mut stream, _session) = open_sse(server.addr, &[]).await;
    stream.wait_for_comment().await;
    stream.wait_for_comment().await;
}

#[tokio::test]
async fn a_draining_node_ends_sessions_with_4003() {
    let mut config = open_config();
    config.drain_window = Duration::from_millis(100);
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let (mut stream, session) = open_sse(addr, &[]).await;
    post(addr, &session, &subscribe(1, "chat:d")).await;
    stream.next().await.expect("the reply");
    let polling = open_poll(addr).await;
    // The listener closes when the drain starts: the poll waits on a connection the server
    // took before (a first request on it was answered).
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let ask = |method: &str, path: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nSwitchboard-Session: {polling}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    conn.write_all(ask("POST", "/session").as_bytes()).await.unwrap();
    let answered = read_response(&mut conn).await;
    assert!(answered.starts_with("HTTP/1.1 204"), "{answered}");
    conn.write_all(ask("GET", "/poll?ack=0").as_bytes()).await.unwrap();
    let shutdown = tokio::spawn(server.shutdown());
    let push = stream.next_json().await;
    assert_eq!(push["push"], "disconnect");
    assert_eq!(push["code"], 4003);
    assert!(stream.next().await.is_none(), "the stream ends");
    let answer = read_response(&mut conn).await;
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["messages"][0]["code"], 4003, "{answer}");
    tokio::time::timeout(LIMIT, shutdown).await.unwrap().unwrap();
}

/// Reads one response with a `Content-Length` body off a keep-alive connection.
async fn read_response(conn: &mut tokio::net::TcpStream) -> String {
    let read = async {
        let mut raw = Vec::new();
        loop {
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed mid-response: {}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().expect("a length"))
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
        }
    };
    tokio::time::timeout(LIMIT, read).await.expect("a response in time")
}

#[tokio::test]
async fn delete_ends_the_session() {
    let server = TestServer::start(open_config()).await;
    let session = open_poll(server.addr).await;
    let deleted =
        request(server.addr, "DELETE", "/session", &[("Switchboard-Session", &session)], "").await;
    assert_eq!(deleted.status, 204, "{deleted}");
    post(server.addr, &session, "{}").await.refusal(404, "session_not_found");
    // A poll of it gets the 4002 disconnect, numbered past the ack.
    let (seq, messages) = poll(server.addr, &session, 5).await;
    assert_eq!(seq, 6);
    assert_eq!(messages[0]["code"], 4002);
    let gauge = poll_until(LIMIT, || async {
        let text = scrape(server.addr).await;
        let active =
            sample(&text, "switchboard_connections_active{transport=\"longpoll\"}").unwrap_or(-1.0);
        (active == 0.0).then_some(())
    })
    .await;
    assert!(gauge.is_some(), "the session is gone from the active gauge");
}

/// Two nodes on one private `redis-server`.
struct Pair {
    _redis: switchboard_test_support::redis::RedisServer,
    a: Option<Node>,
    b: Node,
}

/// A node on its own Redis broker.
struct Node {
    addr: SocketAddr,
    handle: switchboard_server::ShutdownHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(redis: &switchboard_test_support::redis::RedisServer) -> Self {
        let broker = switchboard_broker_redis::RedisBroker::connect(
            switchboard_broker_redis::RedisConfig::new(redis.url()),
        )
        .await
        .expect("connect to redis");
        let mut config = open_config();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.drain_window = Duration::from_millis(10);
        let server =
            switchboard_server::Server::bind_with_broker(config, std::sync::Arc::new(broker))
                .await
                .expect("bind");
        let addr = server.local_addr();
        let handle = server.shutdown_handle();
        let task = tokio::spawn(async move {
            let _ = server.run().await;
        });
        Self { addr, handle, task }
    }

    async fn stop(self) {
        self.handle.shutdown();
        let _ = self.task.await;
    }
}

impl Pair {
    async fn start() -> Self {
        let redis = switchboard_test_support::redis::RedisServer::start();
        let a = Node::start(&redis).await;
        let b = Node::start(&redis).await;
        Self { _redis: redis, a: Some(a), b }
    }

    fn a(&self) -> SocketAddr {
        self.a.as_ref().expect("node a runs").addr
    }
}

/// Polls until a publication of `text` arrives; the new ack.
async fn poll_for_text(addr: SocketAddr, session: &str, mut ack: u64, text: &str) -> u64 {
    loop {
        let (messages, next) = poll_messages(addr, session, ack, 1).await;
        ack = next;
        if messages.iter().any(|m| m["push"] == "publication" && m["data"]["text"] == text) {
            return ack;
        }
    }
}

async fn forwarded(addr: SocketAddr) -> f64 {
    let text = scrape(addr).await;
    sample(&text, "switchboard_http_session_requests_forwarded_total").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_polling_session_is_reached_through_any_node() {
    let pair = Pair::start().await;
    let (a, b) = (pair.a(), pair.b.addr);
    let session = open_poll(a).await;
    // Commands through B, polls alternating between the nodes: one session, held by A.
    assert_eq!(post(b, &session, &subscribe(1, "chat:x")).await.status, 204);
    assert_eq!(post(b, &session, &publish(2, "chat:x", "via b")).await.status, 204);
    let (first, _) = poll_messages(b, &session, 0, 1).await;
    assert_eq!(first[0]["id"], 1, "{first:?}");
    let ack = poll_for_text(b, &session, 0, "via b").await;
    // A publication from a client of B reaches the session's next poll on either node.
    let other = open_poll(b).await;
    post(b, &other, &publish(1, "chat:x", "from b's client")).await;
    poll_for_text(a, &session, ack, "from b's client").await;
    assert!(forwarded(b).await >= 3.0, "B forwarded the session's requests to A");
    assert_eq!(forwarded(a).await, 0.0, "A held the session itself");
    // Ended through B; then gone everywhere.
    let ended = request(b, "DELETE", "/session", &[("Switchboard-Session", &session)], "").await;
    assert_eq!(ended.status, 204, "{ended}");
    post(a, &session, "{}").await.refusal(404, "session_not_found");
    post(b, &session, "{}").await.refusal(404, "session_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_takes_commands_posted_to_another_node() {
    let pair = Pair::start().await;
    let (a, b) = (pair.a(), pair.b.addr);
    let (mut stream, session) = open_sse(a, &[]).await;
    assert_eq!(post(b, &session, &subscribe(1, "chat:y")).await.status, 204);
    assert_eq!(stream.next_json().await["id"], 1);
    post(b, &session, &publish(2, "chat:y", "hello")).await;
    let mut got: Vec<Value> = Vec::new();
    // The reply and the publication, in whichever order the broker made them.
    while !(got.iter().any(|m| m["push"] == "publication") && got.iter().any(|m| m["id"] == 2)) {
        got.push(stream.next_json().await);
    }
    let publication = got.iter().find(|m| m["push"] == "publication");
    assert_eq!(publication.map(|m| &m["data"]["text"]), Some(&json!("hello")), "{got:?}");
    // Reconnecting to B cannot resume A's stream: 4002, and A's session is ended.
    let last = format!("{session}:3");
    let mut elsewhere = EventStream::open(b, "/sse", &[("Last-Event-ID", &last)]).await;
    assert_eq!(elsewhere.next_json().await["code"], 4002);
    let gone =
        poll_until(LIMIT, || async { (post(a, &session, "{}").await.status == 404).then_some(()) })
            .await;
    assert!(gone.is_some(), "A ended the session its client left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_a_stopped_node_find_no_session() {
    let mut pair = Pair::start().await;
    let b = pair.b.addr;
    let session = open_poll(pair.a()).await;
    pair.a.take().expect("node a").stop().await;
    post(b, &session, "{}").await.refusal(404, "session_not_found");
    let (_, messages) = poll(b, &session, 0).await;
    assert_eq!(messages[0]["code"], 4002, "{messages:?}");
}

#[tokio::test]
async fn tickets_cookies_and_tokens_in_urls_as_on_the_websocket() {
    let mut config = open_config();
    config.auth = tokens::config().auth;
    config.api_key = tokens::config().api_key;
    config.auth.required = true;
    config.auth.token_cookie = Some("sb".to_owned());
    let server = TestServer::start(config).await;
    let addr = server.addr;
    // A one-time ticket opens one event stream (an EventSource sends no headers).
    let key = format!("apikey {}", tokens::API_KEY);
    let minted = request(
        addr,
        "POST",
        "/api/ticket",
        &[("Authorization", &key), ("Content-Type", "application/json")],
        &json!({"user": "alice"}).to_string(),
    )
    .await;
    assert_eq!(minted.status, 200, "{minted}");
    let ticket = minted.json()["ticket"].as_str().expect("a ticket").to_owned();
    let path = format!("/sse?ticket={ticket}");
    let mut stream = EventStream::open(addr, &path, &[]).await;
    assert_eq!(stream.status, 200, "{}", stream.head);
    let session = stream.next().await.expect("the session event").json()["session"]
        .as_str()
        .expect("a session id")
        .to_owned();
    post(addr, &session, &json!({"id": 1, "type": "connect"}).to_string()).await;
    assert_eq!(stream.next_json().await["result"]["user"], "alice");
    let again = EventStream::open(addr, &path, &[]).await;
    assert_eq!(again.status, 401, "a ticket is spent once: {}", again.head);
    // The token cookie opens a long-polling session.
    let cookie = format!("sb={}", tokens::token("bob", &["*"], &["*"]));
    let opened = request(addr, "POST", "/poll", &[("Cookie", &cookie)], "").await;
    assert_eq!(opened.status, 200, "{opened}");
    // A token in the URL is refused: the danger switch is off.
    let in_url = format!("/poll?token={}", tokens::token("bob", &["*"], &["*"]));
    request(addr, "POST", &in_url, &[], "").await.refusal(401, "credentials_required");
}

#[tokio::test]
async fn same_origin_gets_without_origin_pass_where_origin_is_required() {
    let mut config = open_config();
    config.origins.allow_missing = false;
    let server = TestServer::start(config).await;
    // A browser's same-origin EventSource sends no Origin, only Sec-Fetch-Site.
    let (_stream, _session) = open_sse(server.addr, &[("Sec-Fetch-Site", "same-origin")]).await;
    let refused = EventStream::open(server.addr, "/sse", &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.head);
    let cross = [("Sec-Fetch-Site", "cross-site")];
    request(server.addr, "POST", "/poll", &cross, "").await.refusal(403, "origin_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_stream_is_dropped() {
    let mut config = open_config();
    config.write_timeout = Duration::from_millis(300);
    config.transports.session_timeout = Duration::from_millis(300);
    config.hub.outbound_queue_bytes = 64 << 10;
    config.api_key = tokens::config().api_key;
    config.rate_limits.message_rate = None;
    config.rate_limits.byte_rate = None;
    config.rate_limits.address_message_rate = None;
    config.rate_limits.address_byte_rate = None;
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let (mut stream, session) = open_sse(addr, &[]).await;
    post(addr, &session, &subscribe(1, "chat:stall")).await;
    // From here on the client reads nothing: its socket's buffers fill, then the stream's.
    let key = format!("apikey {}", tokens::API_KEY);
    let big = "x".repeat(30_000);
    for _ in 0..300 {
        let body = json!({"channel": "chat:stall", "data": {"text": big}}).to_string();
        let auth = [("Authorization", key.as_str())];
        let published = request(addr, "POST", "/api/publish", &auth, &body).await;
        assert_eq!(published.status, 200, "{published}");
    }
    let gone = poll_until(LIMIT, || async {
        let text = scrape(addr).await;
        let active = sample(&text, "switchboard_connections_active{transport=\"sse\"}");
        (active == Some(0.0)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the stalled session was freed");
    // Its stream was ended: what was sent before it comes, then the end.
    while stream.next().await.is_some() {}
    assert!(stream.ended);
}
