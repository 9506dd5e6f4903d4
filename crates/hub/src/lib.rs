//! Switchboard's local fan-out: which connections of this node hear which channels.
//!
//! The hub owns the subscriber lists and delivers each publication to every local
//! subscriber of its channel, in offset order, encoded once per wire format and shared as
//! [`Bytes`]. It owns no sockets, no runtime and no history: the broker assigns offsets and
//! keeps history; connections receive through a non-blocking [`Sink`] that the server
//! implements with a queue bounded in bytes.
//!
//! Subscribing is two-step so that recovery has no gap and no duplicate: [`Hub::add`]
//! registers a *pending* subscriber whose live publications are held back while the server
//! reads history; [`Hub::activate`] then releases the held publications newer than the
//! position the reply covered, and the subscriber goes live.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use switchboard_hub::{Delivery, Hub, Sink};
//! use switchboard_proto::{Format, Publication, Value};
//!
//! #[derive(Default)]
//! struct Collect(Mutex<Vec<Arc<Delivery>>>);
//! impl Sink for Collect {
//!     fn deliver(&self, d: &Arc<Delivery>) -> bool {
//!         self.0.lock().unwrap().push(Arc::clone(d));
//!         true
//!     }
//! }
//!
//! let hub = Hub::new(4);
//! let sink = Arc::new(Collect::default());
//! let client: Arc<str> = "c1".into();
//! assert!(hub.add("chat:a", &client, sink.clone(), 0).unwrap());
//! hub.activate("chat:a", &client, 0);
//! hub.publish("chat:a", Arc::new(Publication { offset: 1, data: Value::from("hi"), info: None }));
//! let got = sink.0.lock().unwrap();
//! assert_eq!(&got[0].encoded(Format::Json).unwrap()[..],
//!            br#"{"push":"publication","channel":"chat:a","offset":1,"data":"hi"}"#);
//! ```

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use switchboard_codec::PreparedMessage;
use switchboard_proto::{Format, Publication, PublicationPush, Push};

/// A connection's id.
pub type ClientId = Arc<str>;

/// Most publications held for one pending subscriber while its history is read.
pub const PENDING_LIMIT: usize = 10_000;

/// Where a connection's pushes go. Implemented by the server.
pub trait Sink: Send + Sync + 'static {
    /// Queues `delivery` for the connection. Must not block: the hub calls it while holding
    /// a shard lock. Returns `false` when the connection takes no more (its queue overflowed
    /// and it is being disconnected).
    fn deliver(&self, delivery: &Arc<Delivery>) -> bool;
}

/// One push on its way to many connections, encoded at most once per format.
#[derive(Debug)]
pub struct Delivery {
    body: Body,
    /// When the hub received it, for the publish → deliver latency.
    created: Instant,
    json: OnceLock<Option<Bytes>>,
    msgpack: OnceLock<Option<Bytes>>,
    /// The WebSocket frame shared by the connections that take it (compressed once for
    /// every subscriber that negotiated permessage-deflate), per format.
    json_frame: OnceLock<Option<PreparedMessage>>,
    msgpack_frame: OnceLock<Option<PreparedMessage>>,
}

#[derive(Debug)]
enum Body {
    Publication { channel: Arc<str>, publication: Arc<Publication> },
    Push(Push),
}

impl Delivery {
    /// A publication push.
    pub fn publication(channel: Arc<str>, publication: Arc<Publication>) -> Self {
        Self::new(Body::Publication { channel, publication })
    }

    /// Any other push (join, leave, unsubscribe, disconnect).
    pub fn push(push: Push) -> Self {
        Self::new(Body::Push(push))
    }

    fn new(body: Body) -> Self {
        Self {
            body,
            created: Instant::now(),
            json: OnceLock::new(),
            msgpack: OnceLock::new(),
            json_frame: OnceLock::new(),
            msgpack_frame: OnceLock::new(),
        }
    }

    /// The channel the push is about (`None` for a `disconnect`).
    pub fn channel(&self) -> Option<&str> {
        match &self.body {
            Body::Publication { channel, .. } => Some(channel),
            Body::Push(
                Push::Publication { channel, .. }
                | Push::Join { channel, .. }
                | Push::Leave { channel, .. }
                | Push::PresenceCount { channel, .. }
                | Push::Unsubscribe { channel, .. },
            ) => Some(channel),
            Body::Push(_) => None,
        }
    }

    /// When a publication reached the hub (`None` for other pushes): the start of its
    /// publish → deliver latency on this node.
    pub fn received_at(&self) -> Option<Instant> {
        match self.body {
            Body::Publication { .. } => Some(self.created),
            Body::Push(_) => None,
        }
    }

    /// The publication's offset, for publication pushes.
    pub fn offset(&self) -> Option<u64> {
        match &self.body {
            Body::Publication { publication, .. } => Some(publication.offset),
            Body::Push(_) => None,
        }
    }

    /// The push encoded in `format`; the first call per format encodes, later calls share
    /// the same bytes. `None` only if the payload cannot be represented (a JSON value from
    /// this crate's types always can).
    pub fn encoded(&self, format: Format) -> Option<Bytes> {
        let cell = match format {
            Format::Json => &self.json,
            Format::Msgpack => &self.msgpack,
        };
        cell.get_or_init(|| match &self.body {
            Body::Publication { channel, publication } => {
                format.encode(&PublicationPush::new(channel, publication)).ok()
            }
            Body::Push(push) => format.encode(push).ok(),
        })
        .clone()
    }

    /// The push encoded in `format` as one WebSocket frame for every connection that can
    /// send it (a compressed frame, in practice), made by `prepare` from the encoded bytes
    /// on the first call per format; later calls share it whatever closure they pass.
    /// `None` when `prepare` declined (the push goes out as each connection sends it) or
    /// the push cannot be encoded.
    ///
    /// The first connection to take the push pays for `prepare`, outside the hub's locks;
    /// a connection on another thread asking at the same moment waits for that result
    /// rather than doing the work twice.
    pub fn shared_frame(
        &self,
        format: Format,
        prepare: impl FnOnce(&Bytes) -> Option<PreparedMessage>,
    ) -> Option<&PreparedMessage> {
        let cell = match format {
            Format::Json => &self.json_frame,
            Format::Msgpack => &self.msgpack_frame,
        };
        cell.get_or_init(|| self.encoded(format).and_then(|bytes| prepare(&bytes))).as_ref()
    }
}

/// Why a subscriber could not be added.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The connection is already subscribed to the channel.
    #[error("already subscribed")]
    AlreadySubscribed,
    /// The channel has its maximum number of subscribers on this node.
    #[error("channel full: {max} subscribers")]
    ChannelFull {
        /// The limit.
        max: usize,
    },
}

/// The subscriber lists of one node, sharded by channel so publishes on different channels
/// do not contend.
#[derive(Debug)]
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

#[derive(Debug, Default)]
struct Shard {
    channels: HashMap<Arc<str>, Channel>,
}

struct Channel {
    /// The name, shared by every delivery on the channel.
    name: Arc<str>,
    subscribers: HashMap<ClientId, Subscriber>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("subscribers", &self.subscribers.len()).finish()
    }
}

struct Subscriber {
    sink: Arc<dyn Sink>,
    state: SubState,
}

enum SubState {
    /// Waiting for the subscribe reply; live publications are held here.
    Pending(Vec<Arc<Delivery>>),
    /// Held more than [`PENDING_LIMIT`]: activation must fail.
    Overflowed,
    /// Receiving; `last` is the offset of the last publication delivered.
    Live { last: u64 },
}

impl Hub {
    /// A hub with `shards` shards (at least 1).
    pub fn new(shards: usize) -> Self {
        let shards = (0..shards.max(1)).map(|_| Mutex::default()).collect();
        Self { shards, hasher: RandomState::new() }
    }

    /// Registers `client` as a pending subscriber of `channel`. Returns whether it is the
    /// channel's first subscriber on this node (the node should then subscribe to the
    /// broker). `max_subscribers` 0 means no limit.
    ///
    /// # Errors
    ///
    /// [`HubError::AlreadySubscribed`] or [`HubError::ChannelFull`].
    pub fn add(
        &self,
        channel: &str,
        client: &ClientId,
        sink: Arc<dyn Sink>,
        max_subscribers: usize,
    ) -> Result<bool, HubError> {
        let mut shard = self.shard(channel);
        let entry = shard.channels.entry(Arc::from(channel)).or_insert_with_key(|name| Channel {
            name: Arc::clone(name),
            subscribers: HashMap::new(),
        });
        let first = entry.subscribers.is_empty();
        if max_subscribers > 0 && entry.subscribers.len() >= max_subscribers {
            return Err(HubError::ChannelFull { max: max_subscribers });
        }
        match entry.subscribers.entry(Arc::clone(client)) {
            Entry::Occupied(_) => Err(HubError::AlreadySubscribed),
            Entry::Vacant(slot) => {
                slot.insert(Subscriber { sink, state: SubState::Pending(Vec::new()) });
                Ok(first)
            }
        }
    }

    /// Makes a pending subscriber live. Publications held since [`add`](Self::add) with an
    /// offset above `position` (the offset the subscribe reply brought the client to) are
    /// delivered first, in order; the others were already in the reply.
    ///
    /// Returns `false` when the subscriber is gone, or held more than [`PENDING_LIMIT`]
    /// publications: then it stays in the channel, receiving nothing, until the caller
    /// [`remove`](Self::remove)s it (learning whether it was the last), and the client
    /// must resubscribe and recover.
    pub fn activate(&self, channel: &str, client: &ClientId, position: u64) -> bool {
        let mut shard = self.shard(channel);
        let Some(ch) = shard.channels.get_mut(channel) else { return false };
        let Some(sub) = ch.subscribers.get_mut(client) else { return false };
        match std::mem::replace(&mut sub.state, SubState::Live { last: position }) {
            SubState::Pending(held) => {
                let mut last = position;
                for delivery in held {
                    let offset = delivery.offset().unwrap_or(0);
                    if offset > last {
                        last = offset;
                        sub.sink.deliver(&delivery);
                    }
                }
                sub.state = SubState::Live { last };
                true
            }
            SubState::Overflowed => {
                sub.state = SubState::Overflowed;
                false
            }
            SubState::Live { last } => {
                sub.state = SubState::Live { last };
                true
            }
        }
    }

    /// Removes `client` from `channel`. Returns `None` when it was not subscribed, else
    /// whether the channel has no subscriber left on this node (the node should then
    /// unsubscribe from the broker).
    pub fn remove(&self, channel: &str, client: &ClientId) -> Option<bool> {
        let mut shard = self.shard(channel);
        let ch = shard.channels.get_mut(channel)?;
        ch.subscribers.remove(client)?;
        let last = ch.subscribers.is_empty();
        if last {
            shard.channels.remove(channel);
        }
        Some(last)
    }

    /// Delivers a publication to every subscriber of `channel` on this node. Returns how
    /// many live subscribers it was queued for.
    ///
    /// Publications must come in offset order per channel (the broker guarantees it); one at
    /// or below a subscriber's last delivered offset is a duplicate and skipped.
    pub fn publish(&self, channel: &str, publication: Arc<Publication>) -> usize {
        let mut shard = self.shard(channel);
        let Some(ch) = shard.channels.get_mut(channel) else { return 0 };
        let offset = publication.offset;
        let delivery = Arc::new(Delivery::publication(Arc::clone(&ch.name), publication));
        let mut delivered = 0;
        for sub in ch.subscribers.values_mut() {
            match &mut sub.state {
                SubState::Live { last } => {
                    if offset > *last {
                        *last = offset;
                        sub.sink.deliver(&delivery);
                        delivered += 1;
                    }
                }
                SubState::Pending(held) if held.len() < PENDING_LIMIT => {
                    held.push(Arc::clone(&delivery));
                }
                SubState::Pending(_) => sub.state = SubState::Overflowed,
                SubState::Overflowed => {}
            }
        }
        delivered
    }

    /// Delivers a push other than a publication (join, leave) to the live subscribers of
    /// `channel`. Returns how many it was queued for.
    pub fn push(&self, channel: &str, push: Push) -> usize {
        let shard = self.shard(channel);
        let Some(ch) = shard.channels.get(channel) else { return 0 };
        let delivery = Arc::new(Delivery::push(push));
        let mut delivered = 0;
        for sub in ch.subscribers.values() {
            if matches!(sub.state, SubState::Live { .. }) {
                sub.sink.deliver(&delivery);
                delivered += 1;
            }
        }
        delivered
    }

    /// Whether `client` is a live or pending subscriber of `channel` on this node.
    pub fn contains(&self, channel: &str, client: &str) -> bool {
        self.shard(channel)
            .channels
            .get(channel)
            .is_some_and(|ch| ch.subscribers.contains_key(client))
    }

    /// How many live and pending subscribers `channel` has on this node.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.shard(channel).channels.get(channel).map_or(0, |ch| ch.subscribers.len())
    }

    /// The live and pending subscribers of `channel` on this node.
    pub fn subscribers(&self, channel: &str) -> Vec<ClientId> {
        let shard = self.shard(channel);
        shard
            .channels
            .get(channel)
            .map_or_else(Vec::new, |ch| ch.subscribers.keys().cloned().collect())
    }

    /// How many channels have subscribers on this node.
    pub fn channel_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).channels.len()).sum()
    }

    /// Up to `n` of the channels with the most subscribers (live and pending) on this node,
    /// with their counts: the busiest first, ties by name. One pass over the channels, holding
    /// one shard at a time and never more than `n` entries.
    pub fn busiest(&self, n: usize) -> Vec<(Arc<str>, usize)> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        if n == 0 {
            return Vec::new();
        }
        // A min-heap of the best `n` so far: its top is the first to give way.
        let mut best: BinaryHeap<Reverse<(usize, Reverse<Arc<str>>)>> = BinaryHeap::new();
        for shard in &self.shards {
            for channel in lock(shard).channels.values() {
                let entry =
                    Reverse((channel.subscribers.len(), Reverse(Arc::clone(&channel.name))));
                if best.len() < n {
                    best.push(entry);
                } else if best.peek().is_some_and(|least| entry < *least) {
                    best.pop();
                    best.push(entry);
                }
            }
        }
        best.into_sorted_vec()
            .into_iter()
            .map(|Reverse((count, Reverse(name)))| (name, count))
            .collect()
    }

    /// How many subscriptions this node holds, over all channels.
    pub fn subscription_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).channels.values().map(|c| c.subscribers.len()).sum::<usize>())
            .sum()
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(channel) as usize % self.shards.len();
        lock(&self.shards[index])
    }
}

/// Locks a shard. A panic while holding the lock cannot leave a shard half-updated in a way
/// that matters more than losing it, so a poisoned lock is used as is.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use switchboard_proto::Value;

    use super::*;

    fn delivery() -> Delivery {
        let publication = Publication { offset: 7, data: Value::from("x".repeat(300)), info: None };
        Delivery::publication("feed:a".into(), Arc::new(publication))
    }

    #[test]
    fn a_shared_frame_is_prepared_once_per_format() {
        let d = delivery();
        let calls = AtomicUsize::new(0);
        let prepare = |bytes: &Bytes| {
            calls.fetch_add(1, Ordering::Relaxed);
            Some(PreparedMessage::binary(bytes))
        };
        let first = d.shared_frame(Format::Json, prepare).cloned();
        let again = d.shared_frame(Format::Json, prepare).cloned();
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(first, again);
        let encoded = d.encoded(Format::Json).unwrap();
        assert_eq!(first.unwrap().payload_len(), encoded.len());
        // MessagePack has its own.
        let msgpack = d.shared_frame(Format::Msgpack, prepare).unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(msgpack.payload_len(), d.encoded(Format::Msgpack).unwrap().len());
        assert_eq!(d.channel(), Some("feed:a"));
    }

    #[test]
    fn a_declined_frame_is_remembered_too() {
        let d = delivery();
        let calls = AtomicUsize::new(0);
        let decline = |_: &Bytes| {
            calls.fetch_add(1, Ordering::Relaxed);
            None
        };
        assert!(d.shared_frame(Format::Json, decline).is_none());
        assert!(d.shared_frame(Format::Json, decline).is_none());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let disconnect = Push::Disconnect {
            code: 4000,
            reason: String::new(),
            advice: switchboard_proto::advice(4000),
        };
        assert_eq!(Delivery::push(disconnect).channel(), None);
    }

    struct Ignore;

    impl Sink for Ignore {
        fn deliver(&self, _: &Arc<Delivery>) -> bool {
            true
        }
    }

    #[test]
    fn the_busiest_channels_come_first_ties_by_name() {
        let hub = Hub::new(4);
        let counts = [("a", 2), ("b", 5), ("c", 2), ("d", 1), ("e", 5), ("f", 3)];
        for (channel, count) in counts {
            for n in 0..count {
                let client: ClientId = Arc::from(format!("{channel}{n}"));
                hub.add(channel, &client, Arc::new(Ignore), 0).unwrap();
            }
        }
        let busiest = |n| -> Vec<(String, usize)> {
            hub.busiest(n).into_iter().map(|(name, count)| (name.to_string(), count)).collect()
        };
        let all: Vec<(String, usize)> =
            [("b", 5), ("e", 5), ("f", 3), ("a", 2), ("c", 2), ("d", 1)]
                .map(|(name, count)| (name.to_owned(), count))
                .to_vec();
        assert_eq!(busiest(10), all);
        assert_eq!(busiest(6), all);
        assert_eq!(busiest(4), all[..4]);
        assert_eq!(busiest(1), all[..1]);
        assert!(busiest(0).is_empty());
    }
}
