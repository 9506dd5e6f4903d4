//! A protocol v1 client for tests: JSON or MessagePack, commands numbered and answered by
//! id, pushes kept in order. Every call panics, with the message received, when the server
//! does not answer as the call expects.

#![allow(clippy::missing_panics_doc)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_codec::{Event, Message};
use switchboard_proto::MSGPACK_SUBPROTOCOL;

use crate::client::WsClient;

/// A protocol v1 client: numbers commands, matches replies by id and keeps the pushes that
/// arrive meanwhile.
pub struct ProtocolClient {
    /// The WebSocket underneath, for sending what a well-behaved client would not.
    pub ws: WsClient,
    /// MessagePack in binary frames, else JSON in text frames.
    pub binary: bool,
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
        Self::new(ws, false)
    }

    /// A MessagePack connection.
    pub async fn connect_msgpack(addr: SocketAddr) -> Self {
        let ws = WsClient::connect_with(addr, "/ws", &[MSGPACK_SUBPROTOCOL], &[])
            .await
            .expect("connect to /ws with msgpack");
        assert_eq!(ws.protocol.as_deref(), Some(MSGPACK_SUBPROTOCOL));
        Self::new(ws, true)
    }

    /// Sends one message in the connection's format.
    pub async fn send(&mut self, message: &Value) {
        let frame = if self.binary {
            Message::binary(rmp_serde::to_vec_named(message).expect("encode msgpack"))
        } else {
            Message::text(message.to_string())
        };
        self.ws.send(frame).await.expect("send a command");
    }

    /// The next protocol message, skipping control frames.
    pub async fn recv(&mut self) -> Value {
        loop {
            match self.ws.recv_timeout(self.limit).await.expect("a message in time") {
                Some(Event::Text(text)) if !self.binary => {
                    return serde_json::from_slice(&text).expect("a JSON message");
                }
                Some(Event::Binary(bytes)) if self.binary => {
                    return rmp_serde::from_slice(&bytes).expect("a MessagePack message");
                }
                Some(Event::Ping(_) | Event::Pong(_)) => {}
                other => panic!("unexpected {other:?}"),
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

    /// The next publication push, skipping joins and leaves.
    pub async fn next_publication(&mut self) -> Value {
        loop {
            let push = self.next_push().await;
            match push["push"].as_str() {
                Some("publication") => return push,
                Some("join" | "leave") => {}
                _ => panic!("unexpected push {push}"),
            }
        }
    }

    fn new(ws: WsClient, binary: bool) -> Self {
        Self { ws, binary, pushes: VecDeque::new(), limit: DEFAULT_LIMIT, next_id: 1 }
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

/// How long [`call`] and [`next_json`] wait for one message: generous, as a failure bound
/// for servers under deliberate load.
pub const BARE_LIMIT: Duration = Duration::from_secs(20);

/// How long one expected message may take unless [`ProtocolClient::limit`] says otherwise.
const DEFAULT_LIMIT: Duration = Duration::from_secs(5);
