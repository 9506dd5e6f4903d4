//! The hub against a `HashMap` model: adds, activations, removals, publications and other
//! pushes over a few clients and channels; after every step the deliveries each client
//! received, the return values and the counts must match the model.
//!
//! Shared by the hub's property test, which draws the operations with proptest, and the
//! `hub_ops` fuzz target, which draws them from the fuzzer's bytes.
//!
//! ```
//! use switchboard_test_support::hub_model::{Op, check};
//!
//! let ops = [
//!     Op::Add { client: 0, channel: 1, max: 0 },
//!     Op::Publish { channel: 1 },
//!     Op::Activate { client: 0, channel: 1, shift: -1 },
//! ];
//! check(2, &ops)?;
//! # Ok::<(), String>(())
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use switchboard_hub::{ClientId, Delivery, Hub, HubError, Sink};
use switchboard_proto::{ClientInfo, Format, Publication, Push, Value};

/// How many clients the operations name: `client` fields are below this.
pub const CLIENTS: usize = 3;
/// How many channels the operations name: `channel` fields are below this.
pub const CHANNELS: usize = 3;

/// One operation on the hub. Client and channel indices are taken modulo [`CLIENTS`] and
/// [`CHANNELS`].
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// `Hub::add` with a subscriber limit (0: none).
    Add {
        /// The client.
        client: usize,
        /// The channel.
        channel: usize,
        /// The subscriber limit.
        max: usize,
    },
    /// `Hub::activate` at the channel's top offset moved by `shift`: behind it (the reply
    /// covered less than was published since) or ahead of it.
    Activate {
        /// The client.
        client: usize,
        /// The channel.
        channel: usize,
        /// How far from the channel's top offset the activation position is.
        shift: i64,
    },
    /// `Hub::remove`.
    Remove {
        /// The client.
        client: usize,
        /// The channel.
        channel: usize,
    },
    /// The next publication on the channel, in offset order as the broker guarantees.
    Publish {
        /// The channel.
        channel: usize,
    },
    /// A join push.
    Push {
        /// The channel.
        channel: usize,
    },
}

/// Runs `ops` on a hub with `shards` shards and on the model, comparing after every step.
///
/// # Errors
///
/// The first step where the hub and the model disagree, described.
pub fn check(shards: usize, ops: &[Op]) -> Result<(), String> {
    let hub = Hub::new(shards);
    let sinks: Vec<Arc<Collect>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let ids: Vec<ClientId> = (0..CLIENTS).map(|c| Arc::from(format!("c{c}"))).collect();
    let mut model = Model::default();
    for (step, &op) in ops.iter().enumerate() {
        let op = op.wrapped();
        match op {
            Op::Add { client, channel, max } => {
                let sink: Arc<dyn Sink> = sinks[client].clone();
                let got = hub.add(&name(channel), &ids[client], sink, max);
                let expected = model.add(client, channel, max);
                match (&got, &expected) {
                    // Both refusals apply: either may win.
                    (Err(_), Err(Refusal::Both)) => {}
                    (Ok(first), Ok(expected)) => ensure_eq(first, expected, step, op)?,
                    (Err(HubError::AlreadySubscribed), Err(Refusal::AlreadySubscribed)) => {}
                    (Err(HubError::ChannelFull { max: m }), Err(Refusal::Full)) => {
                        ensure_eq(m, &max, step, op)?;
                    }
                    _ => {
                        return Err(format!("step {step} {op:?}: got {got:?}, model {expected:?}"));
                    }
                }
            }
            Op::Activate { client, channel, shift } => {
                let position = model.top[channel].saturating_add_signed(shift);
                let got = hub.activate(&name(channel), &ids[client], position);
                ensure_eq(&got, &model.activate(client, channel, position), step, op)?;
            }
            Op::Remove { client, channel } => {
                let got = hub.remove(&name(channel), &ids[client]);
                ensure_eq(&got, &model.remove(client, channel), step, op)?;
            }
            Op::Publish { channel } => {
                let offset = model.top[channel] + 1;
                let publication = Publication { offset, data: Value::from(step), info: None };
                let got = hub.publish(&name(channel), Arc::new(publication));
                ensure_eq(&got, &model.publish(channel), step, op)?;
            }
            Op::Push { channel } => {
                let who = ClientInfo { id: format!("x{step}"), user: None, info: None };
                let push = Push::Join { channel: name(channel), client: who };
                let got = hub.push(&name(channel), push);
                ensure_eq(&got, &model.push(channel), step, op)?;
            }
        }
        for (client, (sink, seen)) in sinks.iter().zip(&model.seen).enumerate() {
            let got = sink.seen()?;
            if &got != seen {
                return Err(format!(
                    "client {client} after step {step} {op:?}: saw {got:?}, model {seen:?}"
                ));
            }
        }
        ensure_eq(&hub.subscription_count(), &model.subs.len(), step, op)?;
        let channels = (0..CHANNELS).filter(|&ch| model.count(ch) > 0).count();
        ensure_eq(&hub.channel_count(), &channels, step, op)?;
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
            if got != expected {
                return Err(format!(
                    "subscribers of {channel} after step {step}: {got:?}, model {expected:?}"
                ));
            }
        }
    }
    Ok(())
}

impl Op {
    /// The same operation with its indices in range.
    fn wrapped(self) -> Self {
        match self {
            Op::Add { client, channel, max } => {
                Op::Add { client: client % CLIENTS, channel: channel % CHANNELS, max }
            }
            Op::Activate { client, channel, shift } => {
                Op::Activate { client: client % CLIENTS, channel: channel % CHANNELS, shift }
            }
            Op::Remove { client, channel } => {
                Op::Remove { client: client % CLIENTS, channel: channel % CHANNELS }
            }
            Op::Publish { channel } => Op::Publish { channel: channel % CHANNELS },
            Op::Push { channel } => Op::Push { channel: channel % CHANNELS },
        }
    }
}

fn ensure_eq<T: PartialEq + std::fmt::Debug>(
    got: &T,
    expected: &T,
    step: usize,
    op: Op,
) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("step {step} {op:?}: got {got:?}, model {expected:?}"))
    }
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
    fn seen(&self) -> Result<Vec<Seen>, String> {
        let deliveries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        deliveries.iter().map(|d| decode(d)).collect()
    }
}

fn decode(delivery: &Delivery) -> Result<Seen, String> {
    let bytes = delivery.encoded(Format::Json).ok_or("a delivery could not be encoded")?;
    let push: Push = serde_json::from_slice(&bytes).map_err(|e| format!("not a push: {e}"))?;
    match push {
        Push::Publication { channel, publication } => {
            if delivery.offset() != Some(publication.offset) {
                return Err(format!("offset {:?} of {publication:?}", delivery.offset()));
            }
            Ok(Seen::Publication { channel, offset: publication.offset })
        }
        Push::Join { channel, .. } => {
            if delivery.offset().is_some() {
                return Err(format!("a join push with offset {:?}", delivery.offset()));
            }
            Ok(Seen::Join { channel })
        }
        other => Err(format!("unexpected push {other:?}")),
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
