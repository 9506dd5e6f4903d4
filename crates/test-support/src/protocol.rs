//! A protocol v1 client for tests: JSON or MessagePack, commands numbered and answered by
//! id, pushes kept in order. Every call panics, with the message received, when the server
//! does not answer as the call expects.
//!
//! One client for every carrier: a real WebSocket ([`WsClient`], for transport tests) or a
//! session in memory ([`MemoryLink`](crate::memory::MemoryLink), for protocol tests). The
//! calls are the same; only how the client is opened differs.

#![allow(clippy::missing_panics_doc)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use switchboard_codec::{CloseCode, Event, Message};
use switchboard_proto::{Format, MSGPACK_SUBPROTOCOL, ServerMessage};

use crate::client::WsClient;

/// One message from the server, as a [`Link`] received it.
#[derive(Debug)]
pub enum Received {
    /// A JSON message.
    Text(Bytes),
    /// A MessagePack message.
    Binary(Bytes),
    /// The server closed the client with this code and reason.
    Closed(u16, String),
}

/// One command's bytes as a client sends them.
#[derive(Clone, Debug)]
pub enum Outgoing {
    /// In a text message (JSON).
    Text(Vec<u8>),
    /// In a binary message (MessagePack).
    Binary(Vec<u8>),
}

/// What carries a [`ProtocolClient`]'s commands and the server's messages.
pub trait Link {
    /// Sends one command's bytes.
    fn send_command(&mut self, command: Outgoing) -> impl Future<Output = ()>;

    /// The next message, or a panic after `limit`.
    fn next_message(&mut self, limit: Duration) -> impl Future<Output = Received>;
}

impl Link for WsClient {
    async fn send_command(&mut self, command: Outgoing) {
        let frame = match command {
            Outgoing::Binary(bytes) => Message::binary(bytes),
            Outgoing::Text(bytes) => Message::text(String::from_utf8(bytes).expect("UTF-8")),
        };
        self.send(frame).await.expect("send a command");
    }

    async fn next_message(&mut self, limit: Duration) -> Received {
        loop {
            match self.recv_timeout(limit).await.expect("a message in time") {
                Some(Event::Text(text)) => return Received::Text(text),
                Some(Event::Binary(bytes)) => return Received::Binary(bytes),
                Some(Event::Ping(_) | Event::Pong(_)) => {}
                Some(Event::Close(close)) => {
                    let code = close.as_ref().map_or(CloseCode::NO_STATUS.0, |c| c.code.0);
                    let reason = close.map(|c| c.reason).unwrap_or_default();
                    return Received::Closed(code, reason);
                }
                None => return Received::Closed(CloseCode::ABNORMAL.0, String::new()),
            }
        }
    }
}

/// A [`Link`] that checks every message the server sends decodes as a [`ServerMessage`] in
/// its format, with the decoders' default limits, as a client library would decode it.
pub struct Strict<L>(pub L);

impl<L: Link> Link for Strict<L> {
    async fn send_command(&mut self, command: Outgoing) {
        self.0.send_command(command).await;
    }

    async fn next_message(&mut self, limit: Duration) -> Received {
        let received = self.0.next_message(limit).await;
        let decoded = match &received {
            Received::Text(bytes) => Format::Json.decode::<ServerMessage>(bytes),
            Received::Binary(bytes) => Format::Msgpack.decode::<ServerMessage>(bytes),
            Received::Closed(..) => return received,
        };
        if let Err(e) = decoded {
            panic!("a client could not decode a message: {e}");
        }
        received
    }
}

/// A protocol v1 client: numbers commands, matches replies by id and keeps the pushes that
/// arrive meanwhile.
pub struct ProtocolClient<L: Link = WsClient> {
    /// The carrier underneath: for a WebSocket, for sending what a well-behaved client
    /// would not; in memory, for the session's deadline and close.
    pub ws: L,
    /// JSON in text messages or MessagePack in binary ones.
    pub format: Format,
    /// Pushes that arrived while a reply was awaited, oldest first.
    pub pushes: VecDeque<Value>,
    /// How long any one expected message may take. Default 5 s.
    pub limit: Duration,
    next_id: u64,
}

impl ProtocolClient {
    /// A JSON connection (no subprotocol offered).
    pub async fn connect(addr: SocketAddr) -> Self {
        let ws = WsClient::connect(addr, "/ws").await.expect("connect to /ws");
        Self::new(ws, Format::Json)
    }

    /// A MessagePack connection.
    pub async fn connect_msgpack(addr: SocketAddr) -> Self {
        let ws = WsClient::connect_with(addr, "/ws", &[MSGPACK_SUBPROTOCOL], &[])
            .await
            .expect("connect to /ws with msgpack");
        assert_eq!(ws.protocol.as_deref(), Some(MSGPACK_SUBPROTOCOL));
        Self::new(ws, Format::Msgpack)
    }
}

impl ProtocolClient {
    /// A JSON connection to `path` offering `protocols` with extra request `headers`.
    pub async fn open(
        addr: SocketAddr,
        path: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
    ) -> Self {
        let ws = WsClient::connect_with(addr, path, protocols, headers)
            .await
            .expect("a WebSocket handshake");
        Self::new(ws, Format::Json)
    }
}

impl<L: Link> ProtocolClient<L> {
    /// A client over `link`, speaking `format`.
    pub fn new(link: L, format: Format) -> Self {
        Self { ws: link, format, pushes: VecDeque::new(), limit: DEFAULT_LIMIT, next_id: 1 }
    }

    /// Sends one message in the connection's format.
    pub async fn send(&mut self, message: &Value) {
        let command = match self.format {
            Format::Msgpack => {
                Outgoing::Binary(rmp_serde::to_vec_named(message).expect("encode msgpack"))
            }
            Format::Json => Outgoing::Text(message.to_string().into_bytes()),
        };
        self.ws.send_command(command).await;
    }

    /// Sends `text` as a text message, whatever the client's format: for what a
    /// well-behaved client would not send.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send_command(Outgoing::Text(text.as_bytes().to_vec())).await;
    }

    /// Sends `bytes` as a binary message, whatever the client's format.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send_command(Outgoing::Binary(bytes)).await;
    }

    /// The next protocol message, skipping control frames.
    pub async fn recv(&mut self) -> Value {
        match self.ws.next_message(self.limit).await {
            Received::Text(text) if self.format == Format::Json => {
                serde_json::from_slice(&text).expect("a JSON message")
            }
            Received::Binary(bytes) if self.format == Format::Msgpack => {
                rmp_serde::from_slice(&bytes).expect("a MessagePack message")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Reads until the server closes the client, skipping what comes first: its close code
    /// and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Received::Closed(code, reason) = self.ws.next_message(self.limit).await {
                return (code, reason);
            }
        }
    }

    /// The reply to command `id`, keeping pushes that come first.
    pub async fn reply(&mut self, id: u64) -> Value {
        loop {
            let message = self.recv().await;
            if message.get("push").is_some() {
                self.pushes.push_back(message);
                continue;
            }
            assert_eq!(message["id"], id, "replies come in command order: {message}");
            return message;
        }
    }

    /// Sends command `kind` with `fields` and returns the whole reply.
    pub async fn call(&mut self, kind: &str, fields: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({"id": id, "type": kind});
        if let (Some(command), Value::Object(fields)) = (command.as_object_mut(), fields) {
            command.extend(fields);
        }
        self.send(&command).await;
        self.reply(id).await
    }

    /// The result of a command that must succeed.
    pub async fn ok(&mut self, kind: &str, fields: Value) -> Value {
        let reply = self.call(kind, fields).await;
        assert!(reply.get("error").is_none(), "{kind} failed: {reply}");
        reply.get("result").cloned().expect("a result")
    }

    /// The error code of a command that must fail.
    pub async fn error(&mut self, kind: &str, fields: Value) -> String {
        let reply = self.call(kind, fields).await;
        assert!(reply.get("result").is_none(), "{kind} succeeded: {reply}");
        assert_eq!(reply["error"]["temporary"], false, "{reply}");
        reply["error"]["code"].as_str().expect("an error code").to_owned()
    }

    /// Sends `connect` and returns the connection's id.
    pub async fn connect_id(&mut self) -> String {
        let result = self.ok("connect", json!({})).await;
        result["client"].as_str().expect("a client id").to_owned()
    }

    /// Sends `ping` with id `id` and returns the reply, which must be an error.
    pub async fn error_reply(&mut self, id: u64) -> Value {
        self.send(&json!({"id": id, "type": "ping"})).await;
        let reply = self.reply(id).await;
        assert!(reply.get("error").is_some(), "ping {id} succeeded: {reply}");
        reply
    }

    /// Sends `connect` and returns the user the server sees.
    pub async fn user(&mut self) -> Option<String> {
        let result = self.ok("connect", json!({})).await;
        result.get("user").map(|u| u.as_str().expect("a user id").to_owned())
    }

    /// Subscribes to `channel` and returns the result.
    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.ok("subscribe", json!({"channel": channel})).await
    }

    /// Subscribes to `channel`, recovering from `offset` in `epoch`; returns the result.
    pub async fn subscribe_since(&mut self, channel: &str, offset: u64, epoch: &str) -> Value {
        let since = json!({"offset": offset, "epoch": epoch});
        self.ok("subscribe", json!({"channel": channel, "since": since})).await
    }

    /// Publishes and returns the acknowledged offset.
    pub async fn publish(&mut self, channel: &str, data: Value) -> u64 {
        let result = self.ok("publish", json!({"channel": channel, "data": data})).await;
        result["offset"].as_u64().expect("an offset")
    }

    /// Publishes `count` publications `{"n": n, "text": text}` to an empty `channel`, `n` from
    /// 1, checking each is acknowledged at offset `n`; returns the stream's epoch.
    pub async fn publish_numbered(&mut self, channel: &str, count: u64, text: &str) -> String {
        let mut epoch = String::new();
        for n in 1..=count {
            let data = json!({"n": n, "text": text});
            let result = self.ok("publish", json!({"channel": channel, "data": data})).await;
            assert_eq!(result["offset"], n, "{result}");
            epoch = result["epoch"].as_str().expect("an epoch").to_owned();
        }
        epoch
    }

    /// The client ids present in `channel`, in the server's order.
    pub async fn presence(&mut self, channel: &str) -> Vec<String> {
        let result = self.ok("presence", json!({"channel": channel})).await;
        let clients = result["clients"].as_array().expect("clients");
        clients.iter().map(|c| c["client"].as_str().expect("an id").to_owned()).collect()
    }

    /// The next push of any kind.
    pub async fn next_push(&mut self) -> Value {
        if let Some(push) = self.pushes.pop_front() {
            return push;
        }
        let message = self.recv().await;
        assert!(message.get("push").is_some(), "a reply nobody waited for: {message}");
        message
    }

    /// The next publication push, skipping joins, leaves and presence counts.
    pub async fn next_publication(&mut self) -> Value {
        loop {
            let push = self.next_push().await;
            match push["push"].as_str() {
                Some("publication") => return push,
                Some("join" | "leave" | "presence_count") => {}
                _ => panic!("unexpected push {push}"),
            }
        }
    }
}

/// Sends `command` (JSON, in a text frame) on a bare WebSocket and returns the next
/// message carrying an `id`, skipping pushes and pings.
pub async fn call(ws: &mut WsClient, command: &Value) -> Value {
    ws.send(Message::text(command.to_string())).await.expect("send a command");
    loop {
        let message = next_json(ws).await;
        if message.get("id").is_some() {
            return message;
        }
    }
}

/// The next JSON text message on a bare WebSocket, reply or push, skipping control frames;
/// within [`BARE_LIMIT`].
pub async fn next_json(ws: &mut WsClient) -> Value {
    loop {
        match ws.recv_timeout(BARE_LIMIT).await.expect("a message in time") {
            Some(Event::Text(text)) => return serde_json::from_slice(&text).expect("JSON"),
            Some(Event::Ping(_) | Event::Pong(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Subscribes a new JSON client at `addr` to `channel`, which must have no publications yet,
/// and asserts nothing at all arrives for `window`: for what must not publish (a feed that
/// is off), where only waiting out its period can show it.
pub async fn assert_quiet(addr: SocketAddr, channel: &str, window: Duration) {
    let mut ws = WsClient::connect(addr, "/ws").await.expect("connect to /ws");
    let reply = call(&mut ws, &json!({"id": 1, "type": "subscribe", "channel": channel})).await;
    assert_eq!(reply["result"]["offset"], 0, "{reply}");
    let quiet = ws.recv_timeout(window).await;
    assert!(quiet.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut), "{quiet:?}");
}

/// How long [`call`] and [`next_json`] wait for one message: generous, as a failure bound
/// for servers under deliberate load.
pub const BARE_LIMIT: Duration = Duration::from_secs(20);

/// How long one expected message may take unless [`ProtocolClient::limit`] says otherwise.
const DEFAULT_LIMIT: Duration = Duration::from_secs(5);
