//! A model check of `/ws` over real sockets: random subscribes, unsubscribes, publishes and
//! reconnects (with recovery) by a few clients on a few channels; afterwards every client
//! has received exactly the publications the model says, in offset order, once each.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};
use switchboard_codec::{Event, Message};

use switchboard_test_support::client::WsClient;
use switchboard_test_support::server::{TestServer, open_config};

const CLIENTS: usize = 3;
const CHANNELS: usize = 2;
const LIMIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
enum Op {
    Subscribe(usize, usize),
    Unsubscribe(usize, usize),
    Publish(usize, usize),
    /// Drop the connection without a close, reconnect, resubscribe with `since`.
    Reconnect(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    let channel = 0..CHANNELS;
    prop_oneof![
        3 => (client.clone(), channel.clone()).prop_map(|(c, ch)| Op::Subscribe(c, ch)),
        1 => (client.clone(), channel.clone()).prop_map(|(c, ch)| Op::Unsubscribe(c, ch)),
        5 => (client.clone(), channel).prop_map(|(c, ch)| Op::Publish(c, ch)),
        1 => client.prop_map(Op::Reconnect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn clients_receive_exactly_what_the_model_says(ops in prop::collection::vec(op(), 1..=30)) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(run(&ops));
    }
}

/// What the server should do, per channel and per client.
#[derive(Debug, Default)]
struct Model {
    /// Each channel's top offset.
    top: [u64; CHANNELS],
    /// Which channels each client is subscribed to.
    subscribed: [BTreeSet<usize>; CLIENTS],
    /// The offsets each client should have received, per channel.
    expected: [[Vec<u64>; CHANNELS]; CLIENTS],
}

async fn run(ops: &[Op]) {
    let server = TestServer::start(open_config()).await;
    let mut model = Model::default();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Client::connect(server.addr).await);
    }
    for (step, &op) in ops.iter().enumerate() {
        match op {
            Op::Subscribe(c, ch) => {
                let reply = clients[c].subscribe(ch).await;
                if model.subscribed[c].insert(ch) {
                    let result = &reply["result"];
                    assert_eq!(result["offset"], model.top[ch], "step {step} {op:?}: {reply}");
                } else {
                    assert_eq!(reply["error"]["code"], "already_subscribed", "{op:?}: {reply}");
                }
            }
            Op::Unsubscribe(c, ch) => {
                if model.subscribed[c].remove(&ch) {
                    // Wait for what was delivered while subscribed, so the model knows
                    // exactly what this subscription brought.
                    clients[c].wait_for(ch, model.expected[c][ch].len()).await;
                    let reply = clients[c].call("unsubscribe", json!({"channel": name(ch)})).await;
                    assert!(reply.get("error").is_none(), "step {step} {op:?}: {reply}");
                } else {
                    let reply = clients[c].call("unsubscribe", json!({"channel": name(ch)})).await;
                    assert_eq!(reply["error"]["code"], "not_subscribed", "{op:?}: {reply}");
                }
            }
            Op::Publish(c, ch) => {
                let data = json!({"by": c, "step": step});
                let reply =
                    clients[c].call("publish", json!({"channel": name(ch), "data": data})).await;
                model.top[ch] += 1;
                assert_eq!(reply["result"]["offset"], model.top[ch], "step {step}: {reply}");
                for (client, subscribed) in model.subscribed.iter().enumerate() {
                    if subscribed.contains(&ch) {
                        model.expected[client][ch].push(model.top[ch]);
                    }
                }
            }
            Op::Reconnect(c) => {
                // Whatever was still in flight on the old connection is lost, and must come
                // back through recovery.
                clients[c].reconnect(server.addr).await;
                for &ch in &model.subscribed[c] {
                    let reply = clients[c].resubscribe(ch).await;
                    assert_eq!(reply["result"]["recovered"], true, "step {step}: {reply}");
                    assert_eq!(reply["result"]["offset"], model.top[ch], "step {step}: {reply}");
                }
            }
        }
    }
    for (c, client) in clients.iter_mut().enumerate() {
        client.sync(c).await;
        for ch in 0..CHANNELS {
            assert_eq!(
                client.received[ch], model.expected[c][ch],
                "client {c}, channel {ch}, after {ops:?}"
            );
        }
    }
}

/// A client whose receipts outlive its connections.
struct Client {
    ws: WsClient,
    next_id: u64,
    /// Publication offsets received per channel, over every connection, in arrival order
    /// (replayed ones where their subscribe reply arrived).
    received: [Vec<u64>; CHANNELS],
    /// The position (offset, epoch) of the last publication seen per channel, or the
    /// subscribe reply's.
    position: [Option<(u64, String)>; CHANNELS],
    /// The offset of the last publication seen on this client's sync channel.
    synced: Option<u64>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let ws = WsClient::connect(addr, "/ws").await.expect("connect to /ws");
        Self {
            ws,
            next_id: 1,
            received: Default::default(),
            position: Default::default(),
            synced: None,
        }
    }

    async fn reconnect(&mut self, addr: SocketAddr) {
        self.ws = WsClient::connect(addr, "/ws").await.expect("reconnect to /ws");
        self.next_id = 1;
    }

    /// Sends a command and returns its reply, recording pushes that come first.
    async fn call(&mut self, kind: &str, fields: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({"id": id, "type": kind});
        if let (Some(command), Value::Object(fields)) = (command.as_object_mut(), fields) {
            command.extend(fields);
        }
        self.ws.send(Message::text(command.to_string())).await.expect("send a command");
        loop {
            let message = self.recv().await;
            if message.get("push").is_none() {
                assert_eq!(message["id"], id, "replies come in command order: {message}");
                return message;
            }
            self.record(&message);
        }
    }

    async fn subscribe(&mut self, ch: usize) -> Value {
        let reply = self.call("subscribe", json!({"channel": name(ch)})).await;
        if let Some(result) = reply.get("result") {
            self.position[ch] = Some(position(result));
        }
        reply
    }

    /// Subscribes with `since` the last position seen, recording the replayed publications.
    async fn resubscribe(&mut self, ch: usize) -> Value {
        let (offset, epoch) = self.position[ch].clone().expect("a position while subscribed");
        let since = json!({"offset": offset, "epoch": epoch});
        let reply = self.call("subscribe", json!({"channel": name(ch), "since": since})).await;
        let result = reply.get("result").expect("a subscribe result");
        if let Some(replayed) = result["publications"].as_array() {
            for publication in replayed {
                self.received[ch].push(publication["offset"].as_u64().expect("an offset"));
            }
        }
        self.position[ch] = Some(position(result));
        reply
    }

    /// Reads until `count` publications of channel `ch` have arrived.
    async fn wait_for(&mut self, ch: usize, count: usize) {
        while self.received[ch].len() < count {
            let message = self.recv().await;
            assert!(message.get("push").is_some(), "a reply nobody waited for: {message}");
            self.record(&message);
        }
    }

    /// Publishes on a channel of its own and reads up to that publication: the outbound
    /// queue is FIFO and every earlier publication was queued before it, so all have come.
    async fn sync(&mut self, me: usize) {
        let channel = format!("sync-{me}");
        if self.synced.is_none() {
            let reply = self.call("subscribe", json!({"channel": channel})).await;
            assert!(reply.get("error").is_none(), "{reply}");
        }
        let reply = self.call("publish", json!({"channel": channel, "data": "sync"})).await;
        let offset = reply["result"]["offset"].as_u64().expect("an ack");
        while self.synced != Some(offset) {
            let message = self.recv().await;
            assert!(message.get("push").is_some(), "a reply nobody waited for: {message}");
            self.record(&message);
        }
    }

    fn record(&mut self, push: &Value) {
        if push["push"] != "publication" {
            return;
        }
        let offset = push["offset"].as_u64().expect("an offset");
        let channel = push["channel"].as_str().expect("a channel");
        if channel.starts_with("sync-") {
            self.synced = Some(offset);
            return;
        }
        let ch = (0..CHANNELS).find(|&ch| name(ch) == channel).expect("a model channel");
        self.received[ch].push(offset);
        let epoch = self.position[ch].as_ref().map(|(_, e)| e.clone()).unwrap_or_default();
        self.position[ch] = Some((offset, epoch));
    }

    /// The next protocol message, skipping control frames.
    async fn recv(&mut self) -> Value {
        loop {
            match self.ws.recv_timeout(LIMIT).await.expect("a message in time") {
                Some(Event::Text(text)) => {
                    return serde_json::from_slice(&text).expect("a JSON message");
                }
                Some(Event::Ping(_) | Event::Pong(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn name(ch: usize) -> String {
    format!("model-{ch}")
}

fn position(result: &Value) -> (u64, String) {
    let offset = result["offset"].as_u64().expect("an offset");
    (offset, result["epoch"].as_str().expect("an epoch").to_owned())
}
