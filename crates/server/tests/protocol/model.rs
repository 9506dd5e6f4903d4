//! A model check of the protocol: random subscribes, unsubscribes, publishes and reconnects
//! (with recovery) by a few clients on a few channels; afterwards every client has received
//! exactly the publications the model says, in offset order, once each.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{Value, json};
use switchboard_test_support::memory::{MemoryLink, TestNode};
use switchboard_test_support::protocol::ProtocolClient;
use switchboard_test_support::server::open_config;

const CLIENTS: usize = 3;
const CHANNELS: usize = 2;

#[derive(Clone, Copy, Debug)]
enum Op {
    Subscribe(usize, usize),
    Unsubscribe(usize, usize),
    Publish(usize, usize),
    /// The client goes away without unsubscribing, comes back, resubscribes with `since`.
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
    // In memory: more than twice the cases the run over sockets had, in the same time.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn clients_receive_exactly_what_the_model_says(ops in prop::collection::vec(op(), 1..=30)) {
        // Paused: a message that never comes fails at once instead of after the limit.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
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
    let node = TestNode::new(&open_config());
    let mut model = Model::default();
    let mut clients: Vec<Receipts> = (0..CLIENTS).map(|_| Receipts::new(&node)).collect();
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
                // Whatever was still queued for the old session is lost, and must come
                // back through recovery.
                clients[c].reconnect(&node).await;
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

/// A client's receipts, which outlive its sessions.
struct Receipts {
    client: ProtocolClient<MemoryLink>,
    /// Publication offsets received per channel, over every session, in arrival order
    /// (replayed ones where their subscribe reply arrived).
    received: [Vec<u64>; CHANNELS],
    /// The position (offset, epoch) of the last publication seen per channel, or the
    /// subscribe reply's.
    position: [Option<(u64, String)>; CHANNELS],
    /// The offset of the last publication seen on this client's sync channel.
    synced: Option<u64>,
}

impl Receipts {
    fn new(node: &TestNode) -> Self {
        Self {
            client: node.client(),
            received: Default::default(),
            position: Default::default(),
            synced: None,
        }
    }

    async fn reconnect(&mut self, node: &TestNode) {
        self.client.ws.close().await;
        self.client = node.client();
    }

    /// Sends a command and returns its reply, recording pushes that come first.
    async fn call(&mut self, kind: &str, fields: Value) -> Value {
        let reply = self.client.call(kind, fields).await;
        while let Some(push) = self.client.pushes.pop_front() {
            self.record(&push);
        }
        reply
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
            let push = self.client.next_push().await;
            self.record(&push);
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
            let push = self.client.next_push().await;
            self.record(&push);
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
}

fn name(ch: usize) -> String {
    format!("model-{ch}")
}

fn position(result: &Value) -> (u64, String) {
    let offset = result["offset"].as_u64().expect("an offset");
    (offset, result["epoch"].as_str().expect("an epoch").to_owned())
}
