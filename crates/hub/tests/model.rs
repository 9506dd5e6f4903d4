//! The hub against a `HashMap` model: random adds, activations, removals, publications and
//! other pushes over a few clients and channels; after every step the deliveries each client
//! received, the return values and the counts match the model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use proptest::prelude::*;
use switchboard_hub::{ClientId, Delivery, Hub, HubError, Sink};
use switchboard_proto::{ClientInfo, Format, Publication, Push, Value};

const CLIENTS: usize = 3;
const CHANNELS: usize = 3;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `Hub::add` with a subscriber limit (0: none).
    Add {
        client: usize,
        channel: usize,
        max: usize,
    },
    /// `Hub::activate` at the channel's top offset moved by `shift`: behind it (the reply
    /// covered less than was published since) or ahead of it.
    Activate {
        client: usize,
        channel: usize,
        shift: i64,
    },
    Remove {
        client: usize,
        channel: usize,
    },
    /// The next publication on the channel, in offset order as the broker guarantees.
    Publish {
        channel: usize,
    },
    /// A join push.
    Push {
        channel: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..CLIENTS, 0..CHANNELS, 0..=3usize)
            .prop_map(|(client, channel, max)| Op::Add { client, channel, max }),
        3 => (0..CLIENTS, 0..CHANNELS, -3..=2i64)
            .prop_map(|(client, channel, shift)| Op::Activate { client, channel, shift }),
        1 => (0..CLIENTS, 0..CHANNELS).prop_map(|(client, channel)| Op::Remove { client, channel }),
        5 => (0..CHANNELS).prop_map(|channel| Op::Publish { channel }),
        1 => (0..CHANNELS).prop_map(|channel| Op::Push { channel }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hub_matches_the_model(shards in 1..=4usize, ops in prop::collection::vec(op(), 1..=60)) {
        check(shards, &ops)?;
    }
}

/// Runs `ops` on a hub with `shards` shards and on the model, comparing after every step.
fn check(shards: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let hub = Hub::new(shards);
    let sinks: Vec<Arc<Collect>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let ids: Vec<ClientId> = (0..CLIENTS).map(|c| Arc::from(format!("c{c}"))).collect();
    let mut model = Model::default();
    for (step, &op) in ops.iter().enumerate() {
        match op {
            Op::Add { client, channel, max } => {
                let sink: Arc<dyn Sink> = sinks[client].clone();
                let got = hub.add(&name(channel), &ids[client], sink, max);
                let expected = model.add(client, channel, max);
                match (&got, &expected) {
                    // Both refusals apply: either may win.
                    (Err(_), Err(Refusal::Both)) => {}
                    (Ok(first), Ok(expected)) => prop_assert_eq!(first, expected, "step {}", step),
                    (Err(HubError::AlreadySubscribed), Err(Refusal::AlreadySubscribed)) => {}
                    (Err(HubError::ChannelFull { max: m }), Err(Refusal::Full)) => {
                        prop_assert_eq!(*m, max);
                    }
                    _ => prop_assert!(false, "step {step} {op:?}: got {got:?}, model {expected:?}"),
                }
            }
            Op::Activate { client, channel, shift } => {
                let position = model.top[channel].saturating_add_signed(shift);
                let got = hub.activate(&name(channel), &ids[client], position);
                prop_assert_eq!(got, model.activate(client, channel, position), "step {}", step);
            }
            Op::Remove { client, channel } => {
                let got = hub.remove(&name(channel), &ids[client]);
                prop_assert_eq!(got, model.remove(client, channel), "step {}", step);
            }
            Op::Publish { channel } => {
                let offset = model.top[channel] + 1;
                let publication = Publication { offset, data: Value::from(step), info: None };
                let got = hub.publish(&name(channel), Arc::new(publication));
                prop_assert_eq!(got, model.publish(channel), "step {}", step);
            }
            Op::Push { channel } => {
                let who = ClientInfo { id: format!("x{step}"), user: None, info: None };
                let push = Push::Join { channel: name(channel), client: who };
                let got = hub.push(&name(channel), push);
                prop_assert_eq!(got, model.push(channel), "step {}", step);
            }
        }
        for (client, (sink, seen)) in sinks.iter().zip(&model.seen).enumerate() {
            prop_assert_eq!(&sink.seen(), seen, "client {} after step {} {:?}", client, step, op);
        }
        prop_assert_eq!(hub.subscription_count(), model.subs.len());
        let channels = (0..CHANNELS).filter(|&ch| model.count(ch) > 0).count();
        prop_assert_eq!(hub.channel_count(), channels);
        for channel in 0..CHANNELS {
            let mut got: Vec<String> =
                hub.subscribers(&name(channel)).iter().map(|id| id.to_string()).collect();
            got.sort();
            let mut expected: Vec<String> = model
                .subs
                .keys()
                .filter(|(_, ch)| *ch == channel)
                .map(|(c, _)| format!("c{c}"))
                .collect();
            expected.sort();
            prop_assert_eq!(got, expected, "subscribers of {} after step {}", channel, step);
        }
    }
    Ok(())
}

/// What a client saw, decoded from the deliveries' JSON encoding.
#[derive(Clone, Debug, Eq, PartialEq)]
enum Seen {
    Publication { channel: String, offset: u64 },
    Join { channel: String },
}

/// A sink that keeps every delivery.
#[derive(Default)]
struct Collect(Mutex<Vec<Arc<Delivery>>>);

impl Sink for Collect {
    fn deliver(&self, delivery: &Arc<Delivery>) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(delivery));
        true
    }
}

impl Collect {
    fn seen(&self) -> Vec<Seen> {
        let deliveries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        deliveries.iter().map(|d| decode(d)).collect()
    }
}

fn decode(delivery: &Delivery) -> Seen {
    let bytes = delivery.encoded(Format::Json).expect("encodable");
    let push: Push = serde_json::from_slice(&bytes).expect("a push");
    match push {
        Push::Publication { channel, publication } => {
            assert_eq!(delivery.offset(), Some(publication.offset));
            Seen::Publication { channel, offset: publication.offset }
        }
        Push::Join { channel, .. } => {
            assert_eq!(delivery.offset(), None);
            Seen::Join { channel }
        }
        other => panic!("unexpected push {other:?}"),
    }
}

/// A subscriber in the model.
#[derive(Debug)]
enum Sub {
    /// Added, not activated: publications are held.
    Pending(Vec<u64>),
    /// Receiving; the last offset delivered (or the activation position).
    Live(u64),
}

/// Why the model refuses an add.
#[derive(Debug)]
enum Refusal {
    AlreadySubscribed,
    Full,
    /// Already subscribed and the channel is full.
    Both,
}

#[derive(Debug, Default)]
struct Model {
    subs: HashMap<(usize, usize), Sub>,
    top: [u64; CHANNELS],
    seen: [Vec<Seen>; CLIENTS],
}

impl Model {
    fn count(&self, channel: usize) -> usize {
        self.subs.keys().filter(|(_, ch)| *ch == channel).count()
    }

    fn add(&mut self, client: usize, channel: usize, max: usize) -> Result<bool, Refusal> {
        let count = self.count(channel);
        let full = max > 0 && count >= max;
        let already = self.subs.contains_key(&(client, channel));
        match (already, full) {
            (true, true) => Err(Refusal::Both),
            (true, false) => Err(Refusal::AlreadySubscribed),
            (false, true) => Err(Refusal::Full),
            (false, false) => {
                self.subs.insert((client, channel), Sub::Pending(Vec::new()));
                Ok(count == 0)
            }
        }
    }

    fn activate(&mut self, client: usize, channel: usize, position: u64) -> bool {
        let Some(sub) = self.subs.get_mut(&(client, channel)) else { return false };
        if let Sub::Pending(held) = sub {
            // Held publications up to the position were in the subscribe reply.
            let mut last = position;
            for &offset in held.iter() {
                if offset > last {
                    last = offset;
                    self.seen[client].push(Seen::Publication { channel: name(channel), offset });
                }
            }
            *sub = Sub::Live(last);
        }
        true
    }

    fn remove(&mut self, client: usize, channel: usize) -> Option<bool> {
        self.subs.remove(&(client, channel))?;
        Some(self.count(channel) == 0)
    }

    fn publish(&mut self, channel: usize) -> usize {
        self.top[channel] += 1;
        let offset = self.top[channel];
        let mut delivered = 0;
        for (&(client, ch), sub) in &mut self.subs {
            if ch != channel {
                continue;
            }
            match sub {
                Sub::Pending(held) => held.push(offset),
                // At or below the last delivered offset: a duplicate, skipped.
                Sub::Live(last) if offset > *last => {
                    *last = offset;
                    self.seen[client].push(Seen::Publication { channel: name(channel), offset });
                    delivered += 1;
                }
                Sub::Live(_) => {}
            }
        }
        delivered
    }

    fn push(&mut self, channel: usize) -> usize {
        let mut delivered = 0;
        for (&(client, ch), sub) in &self.subs {
            if ch == channel && matches!(sub, Sub::Live(_)) {
                self.seen[client].push(Seen::Join { channel: name(channel) });
                delivered += 1;
            }
        }
        delivered
    }
}

fn name(channel: usize) -> String {
    format!("room-{channel}")
}
