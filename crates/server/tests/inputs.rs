//! Input one client sends that would stall the others, over real sockets: values nested too
//! deep for a JSON subscriber, MessagePack that JSON cannot carry, repeated keys, and channel
//! names that look like other channels. Each is refused with the documented error and the
//! command's id, and nothing of it reaches a subscriber.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_codec::{Event, Message};
use switchboard_proto::{Format, MAX_DEPTH, MSGPACK_SUBPROTOCOL, ServerMessage};
use switchboard_test_support::client::WsClient;
use switchboard_test_support::metrics::scrape;
use switchboard_test_support::server::{TestServer, open_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single expected message may take.
const LIMIT: Duration = Duration::from_secs(5);
const KEY: &str = "k3y-for-input-tests-0123456789";

#[tokio::test]
async fn msgpack_publication_too_deep_for_json_is_refused_with_its_id() {
    let server = TestServer::start(open_config()).await;
    let mut subscriber = Client::json(server.addr).await;
    subscriber.call(json!({"id": 1, "type": "subscribe", "channel": "room"})).await;
    let mut publisher = Client::msgpack(server.addr).await;

    // MessagePack maps of a `Value` come out in key order: `data` before `id`.
    let deep = json!({"id": 7, "type": "publish", "channel": "room", "data": nested(200)});
    let reply = publisher.call(deep).await;
    assert_eq!(reply["id"], 7, "{reply}");
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    assert_eq!(
        reply["error"]["message"],
        format!("`data` nests deeper than {MAX_DEPTH} levels of arrays and maps")
    );
    let deepest = nested(MAX_DEPTH);
    let ok = json!({"id": 8, "type": "publish", "channel": "room", "data": deepest});
    let reply = publisher.call(ok).await;
    assert_eq!(reply["result"]["offset"], 1, "the refused one was not stored: {reply}");

    // What the JSON subscriber gets decodes with serde_json's defaults, the first being the
    // publication that was accepted.
    let push = subscriber.next_publication().await;
    assert_eq!((push["offset"].clone(), &push["data"]), (json!(1), &deepest), "{push}");
    let history = subscriber.call(json!({"id": 2, "type": "history", "channel": "room"})).await;
    assert_eq!(history["result"]["publications"][0]["data"], deepest);
    let recovery = json!({"offset": 0, "epoch": push_epoch(&history)});
    let mut late = Client::json(server.addr).await;
    let recovered = late
        .call(json!({"id": 1, "type": "subscribe", "channel": "room", "since": recovery}))
        .await;
    assert_eq!(recovered["result"]["publications"][0]["data"], deepest, "{recovered}");

    let metrics = scrape(server.addr).await;
    assert!(
        metrics.lines().any(|l| l == "switchboard_command_errors_total{reason=\"bad_request\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn msgpack_values_json_cannot_carry_are_refused_with_the_id() {
    let server = TestServer::start(open_config()).await;
    let mut subscriber = Client::json(server.addr).await;
    subscriber.call(json!({"id": 1, "type": "subscribe", "channel": "room"})).await;
    let mut publisher = Client::msgpack(server.addr).await;
    let cases: [(&[u8], &str); 4] = [
        (&[0xc4, 0x02, 0xde, 0xad], "`data` holds binary data"),
        (&[0xd4, 0x05, 0x00], "`data` holds a MessagePack ext"),
        (&[0x81, 0x01, 0xc0], "a map key in `data` is an integer"),
        (&[0x91, 0x81, 0xa1, b'x', 0xc4, 0x00], "`data` holds binary data"),
    ];
    for (id, (data, message)) in (20..).zip(cases) {
        publisher.ws.send(Message::binary(packed_publish(id, "room", data))).await.expect("send");
        let reply = publisher.reply(id.into()).await;
        assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
        let text = reply["error"]["message"].as_str().expect("a message");
        assert!(text.starts_with(message), "{text}");
    }
    let reply = publisher.call(json!({"id": 30, "type": "publish", "channel": "room", "data": 1}));
    assert_eq!(reply.await["result"]["offset"], 1, "none of the refused ones was stored");
    assert_eq!(subscriber.next_publication().await["offset"], 1);
}

#[tokio::test]
async fn repeated_keys_are_refused_in_both_formats() {
    let server = TestServer::start(open_config()).await;
    let mut subscriber = Client::json(server.addr).await;
    subscriber.call(json!({"id": 1, "type": "subscribe", "channel": "room"})).await;
    let cases = [
        // Either id could be meant: the reply carries neither.
        (r#"{"id":13,"type":"ping","id":14}"#, 0, "duplicate key `id`"),
        (r#"{"id":15,"type":"ping","type":"ping"}"#, 15, "duplicate key `type`"),
        (
            r#"{"id":16,"type":"publish","channel":"room","data":[{"x":1,"x":2}]}"#,
            16,
            "duplicate key \"x\" in `data`",
        ),
    ];
    for (command, id, message) in cases {
        subscriber.ws.send(Message::text(command)).await.expect("send");
        let reply = subscriber.reply(id).await;
        assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
        assert_eq!(reply["error"]["message"], message, "{reply}");
    }
    let mut publisher = Client::msgpack(server.addr).await;
    let data = [0x82, 0xa1, b'x', 0x01, 0xa1, b'x', 0x02];
    publisher.ws.send(Message::binary(packed_publish(17, "room", &data))).await.expect("send");
    let reply = publisher.reply(17).await;
    assert_eq!(reply["error"]["message"], "duplicate key \"x\" in `data`", "{reply}");

    let reply = publisher.call(json!({"id": 18, "type": "publish", "channel": "room", "data": 1}));
    assert_eq!(reply.await["result"]["offset"], 1, "none of the refused ones was stored");
    assert_eq!(subscriber.next_publication().await["offset"], 1);
}

#[tokio::test]
async fn api_refuses_data_nested_deeper_than_ws_clients_may_publish() {
    let mut config = open_config();
    config.api_key = Some(KEY.into());
    let server = TestServer::start(config).await;
    let mut subscriber = Client::json(server.addr).await;
    subscriber.call(json!({"id": 1, "type": "subscribe", "channel": "room"})).await;
    let too_deep = format!("`data` nests deeper than {MAX_DEPTH} levels of arrays and maps");
    for (path, body) in [
        ("/api/publish", json!({"channel": "room", "data": nested(MAX_DEPTH + 1)})),
        ("/api/broadcast", json!({"channels": ["room"], "data": nested(100)})),
    ] {
        let (status, reply) = post(server.addr, path, &body).await;
        assert_eq!(status, 400, "{path}: {reply}");
        assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
        assert_eq!(reply["error"]["message"], too_deep, "{reply}");
    }
    let body = json!({"channel": "room", "data": nested(MAX_DEPTH)});
    let (status, reply) = post(server.addr, "/api/publish", &body).await;
    assert_eq!((status, &reply["offset"]), (200, &json!(1)), "{reply}");
    assert_eq!(subscriber.next_publication().await["data"], nested(MAX_DEPTH));
}

#[tokio::test]
async fn channel_names_with_invisible_or_bidi_characters_are_refused() {
    let mut config = open_config();
    config.api_key = Some(KEY.into());
    let server = TestServer::start(config).await;
    let mut a = Client::json(server.addr).await;
    let mut b = Client::msgpack(server.addr).await;
    let cases = [
        ("lobby\u{202E}gnp", "U+202E, a bidi control character"),
        ("lob\u{200B}by", "U+200B, an invisible formatting character"),
        ("\u{FEFF}lobby", "U+FEFF, an invisible formatting character"),
        ("lobby\u{2066}", "U+2066, a bidi control character"),
    ];
    let mut id = 1;
    for (channel, what) in cases {
        let message = format!("channel name holds {what}");
        for kind in ["subscribe", "presence", "history", "publish"] {
            for client in [&mut a, &mut b] {
                id += 1;
                let command = json!({"id": id, "type": kind, "channel": channel, "data": 1});
                let reply = client.call(command).await;
                assert_eq!(reply["error"]["code"], "invalid_channel", "{kind}: {reply}");
                assert_eq!(reply["error"]["message"], message, "{kind}: {reply}");
            }
        }
        let (status, reply) =
            post(server.addr, "/api/publish", &json!({"channel": channel, "data": 1})).await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["error"]["code"], "invalid_channel", "{reply}");
        assert_eq!(reply["error"]["message"], message, "{reply}");
    }
    // The look-alike's visible twin is an ordinary channel.
    let reply = a.call(json!({"id": 100, "type": "subscribe", "channel": "lobby"})).await;
    assert!(reply.get("result").is_some(), "{reply}");
}

/// Null in `levels` arrays.
fn nested(levels: usize) -> Value {
    (0..levels).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
}

/// A `publish` command in MessagePack whose `data` is `data`, bytes as given.
fn packed_publish(id: u8, channel: &str, data: &[u8]) -> Vec<u8> {
    assert!(id < 0x80 && channel.len() < 32);
    let mut out = vec![0x84, 0xa2, b'i', b'd', id, 0xa4, b't', b'y', b'p', b'e', 0xa7];
    out.extend_from_slice(b"publish");
    out.extend_from_slice(b"\xa7channel");
    out.push(0xa0 | channel.len() as u8);
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(b"\xa4data");
    out.extend_from_slice(data);
    out
}

/// The epoch in a `history` reply.
fn push_epoch(history: &Value) -> String {
    history["result"]["epoch"].as_str().expect("an epoch").to_owned()
}

/// A protocol client that decodes what it receives as a client library would: with the
/// default limits of serde_json or rmp-serde.
struct Client {
    ws: WsClient,
    format: Format,
}

impl Client {
    async fn json(addr: SocketAddr) -> Self {
        let ws = WsClient::connect(addr, "/ws").await.expect("connect to /ws");
        Self { ws, format: Format::Json }
    }

    async fn msgpack(addr: SocketAddr) -> Self {
        let ws = WsClient::connect_with(addr, "/ws", &[MSGPACK_SUBPROTOCOL], &[])
            .await
            .expect("connect to /ws with msgpack");
        Self { ws, format: Format::Msgpack }
    }

    /// Sends `command` in the connection's format and returns its reply.
    async fn call(&mut self, command: Value) -> Value {
        let id = command["id"].as_u64().expect("an id");
        let bytes = self.format.encode(&command).expect("encode");
        let frame = match self.format {
            Format::Json => Message::text(String::from_utf8(bytes.to_vec()).expect("UTF-8")),
            Format::Msgpack => Message::binary(bytes.to_vec()),
        };
        self.ws.send(frame).await.expect("send");
        self.reply(id).await
    }

    /// The reply to command `id`; pushes before it are decoded and dropped.
    async fn reply(&mut self, id: u64) -> Value {
        loop {
            let message = self.recv().await;
            if message.get("push").is_none() {
                assert_eq!(message["id"], id, "{message}");
                return message;
            }
        }
    }

    /// The next publication push, skipping joins and leaves.
    async fn next_publication(&mut self) -> Value {
        loop {
            let message = self.recv().await;
            match message["push"].as_str() {
                Some("publication") => return message,
                Some("join" | "leave") => {}
                _ => panic!("unexpected {message}"),
            }
        }
    }

    /// The next message, which must decode both as a JSON value and as a `ServerMessage`.
    async fn recv(&mut self) -> Value {
        loop {
            let bytes = match self.ws.recv_timeout(LIMIT).await.expect("a message in time") {
                Some(Event::Text(bytes)) if self.format == Format::Json => bytes,
                Some(Event::Binary(bytes)) if self.format == Format::Msgpack => bytes,
                Some(Event::Ping(_) | Event::Pong(_)) => continue,
                other => panic!("unexpected {other:?}"),
            };
            if let Err(e) = self.format.decode::<ServerMessage>(&bytes) {
                panic!("a client could not decode a message: {e}");
            }
            return self.format.decode(&bytes).expect("a JSON value");
        }
    }
}

/// `POST` with the API key; the status and the JSON body.
async fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: switchboard\r\nConnection: close\r\n\
         Authorization: apikey {KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = exchange(addr, &request).await;
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, serde_json::from_str(body).expect("a JSON body"))
}

/// Writes `request` and reads the response until the server closes the connection.
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write the request");
    let mut raw = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut raw))
        .await
        .expect("the server closes in time")
        .expect("read the response");
    String::from_utf8(raw).expect("a UTF-8 response")
}
