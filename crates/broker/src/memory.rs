//! The in-memory broker: offsets, history and presence for one node, in this process.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::{
    Broker, BrokerError, BrokerHandler, ClientInfo, History, HistoryQuery, Publication,
    StreamOptions, StreamPosition, Value,
};

/// The embedded broker for a single node.
///
/// Channels are spread over 16 shards by hash, each behind its own mutex, so publishes on
/// different channels rarely contend. Within a channel everything happens under its shard's
/// lock: the offset is assigned, the publication stored and the handler called before the
/// next publish on that channel can start, so delivery order is offset order even with
/// concurrent publishers.
///
/// A stream is forgotten once this node is not subscribed to it, its history is empty and
/// its last publication (or its creation) is older than its `history_ttl`; the next use
/// starts a new epoch at offset 1. That happens lazily when the channel is used and for
/// every channel in [`sweep`](Self::sweep), which the owner should call periodically
/// (every `history_ttl` or so) to keep memory bounded by the live channels.
///
/// # Cancel safety
///
/// Every method finishes on its first poll, so dropping a future never leaves an operation
/// half done.
///
/// # Handler calls
///
/// [`BrokerHandler`] methods run while the channel's shard lock is held: a handler that calls
/// back into this broker deadlocks, and a slow one stalls the other channels of its shard.
pub struct MemoryBroker {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    handler: RwLock<Option<Arc<dyn BrokerHandler>>>,
    clock: Clock,
}

impl MemoryBroker {
    /// An empty broker on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(Instant::now))
    }

    /// An empty broker reading the time from `clock`, so tests can expire history without
    /// sleeping. `clock` must never go backwards.
    pub fn with_clock(clock: Arc<dyn Fn() -> Instant + Send + Sync>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            handler: RwLock::new(None),
            clock,
        }
    }

    /// Forgets every stream that nobody needs any more (not subscribed, history empty, last
    /// publication older than its TTL) and drops expired history everywhere.
    ///
    /// Takes each shard's lock in turn, never two at once.
    pub fn sweep(&self) {
        let now = (self.clock)();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.channels.retain(|_, channel| {
                channel.expire(now);
                !channel.is_empty()
            });
        }
    }

    /// How many channels hold any state (a stream, a subscription or presence). For tests.
    #[doc(hidden)]
    pub fn channel_count(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).channels.len())
            .sum()
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        // The modulo keeps the value below SHARDS, so the cast cannot truncate.
        let index = (self.hasher.hash_one(channel) % SHARDS as u64) as usize;
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handler(&self) -> Option<Arc<dyn BrokerHandler>> {
        self.handler.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBroker").field("shards", &self.shards.len()).finish_non_exhaustive()
    }
}

// `on_resync` is never called: nothing sits between the broker and its handler that could
// lose a publication, since every call happens synchronously inside `publish`.
#[async_trait::async_trait]
impl Broker for MemoryBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>) {
        *self.handler.write().unwrap_or_else(PoisonError::into_inner) = Some(handler);
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.shard(channel).with_channel(channel, |state| state.is_subscribed = true);
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.shard(channel).with_channel(channel, |state| state.is_subscribed = false);
        Ok(())
    }

    async fn publish(
        &self,
        channel: &str,
        data: Value,
        info: Option<ClientInfo>,
        options: &StreamOptions,
    ) -> Result<StreamPosition, BrokerError> {
        let now = (self.clock)();
        let mut shard = self.shard(channel);
        let (position, publication, is_subscribed) = shard.with_channel(channel, |state| {
            let (position, publication) =
                state.stream(options, now).append(data, info, options, now);
            (position, publication, state.is_subscribed)
        });
        // Still under the shard lock: the next publish on this channel waits for this call,
        // which keeps delivery in offset order.
        if is_subscribed && let Some(handler) = self.handler() {
            handler.on_publication(channel, publication);
        }
        drop(shard);
        Ok(position)
    }

    async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        options: &StreamOptions,
    ) -> Result<History, BrokerError> {
        let now = (self.clock)();
        let history = self
            .shard(channel)
            .with_channel(channel, |state| state.stream(options, now).read(query));
        Ok(history)
    }

    async fn join(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: bool,
    ) -> Result<(), BrokerError> {
        let mut shard = self.shard(channel);
        let is_subscribed = shard.with_channel(channel, |state| {
            state.presence.insert(client.id.clone(), client.clone());
            state.is_subscribed
        });
        if announce
            && is_subscribed
            && let Some(handler) = self.handler()
        {
            handler.on_join(channel, client);
        }
        drop(shard);
        Ok(())
    }

    async fn leave(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: bool,
    ) -> Result<(), BrokerError> {
        let mut shard = self.shard(channel);
        let (left, is_subscribed) = shard.with_channel(channel, |state| {
            (state.presence.remove(&client.id), state.is_subscribed)
        });
        if let (true, true, Some(left)) = (announce, is_subscribed, left)
            && let Some(handler) = self.handler()
        {
            handler.on_leave(channel, &left);
        }
        drop(shard);
        Ok(())
    }

    async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, BrokerError> {
        let shard = self.shard(channel);
        // A BTreeMap keyed by client id: already sorted.
        let clients = shard
            .channels
            .get(channel)
            .map(|state| state.presence.values().cloned().collect())
            .unwrap_or_default();
        Ok(clients)
    }
}

/// The channels whose names hash to one shard.
#[derive(Default)]
struct Shard {
    channels: HashMap<String, ChannelState>,
}

impl Shard {
    /// Runs `f` on the channel's state, creating it when missing and removing it when `f`
    /// leaves it empty, so no empty entry outlives a call.
    fn with_channel<R>(&mut self, channel: &str, f: impl FnOnce(&mut ChannelState) -> R) -> R {
        if let Some(state) = self.channels.get_mut(channel) {
            let result = f(state);
            if state.is_empty() {
                self.channels.remove(channel);
            }
            return result;
        }
        let mut state = ChannelState::default();
        let result = f(&mut state);
        if !state.is_empty() {
            self.channels.insert(channel.to_owned(), state);
        }
        result
    }
}

/// Everything this node knows about one channel.
#[derive(Default)]
struct ChannelState {
    is_subscribed: bool,
    stream: Option<Stream>,
    /// Client id → client, sorted so `presence` lists are deterministic.
    presence: BTreeMap<String, ClientInfo>,
}

impl ChannelState {
    fn is_empty(&self) -> bool {
        !self.is_subscribed && self.stream.is_none() && self.presence.is_empty()
    }

    /// The live stream, after dropping expired history; a new one (new epoch, offset 0)
    /// when there was none or the old one could be forgotten.
    fn stream(&mut self, options: &StreamOptions, now: Instant) -> &mut Stream {
        if let Some(stream) = &mut self.stream {
            stream.ttl = options.history_ttl;
            stream.trim(options.history_size, now);
        }
        self.expire(now);
        self.stream.get_or_insert_with(|| Stream::new(options.history_ttl, now))
    }

    /// Drops expired history, and the whole stream when it can be forgotten.
    fn expire(&mut self, now: Instant) {
        if let Some(stream) = &mut self.stream {
            stream.trim(usize::MAX, now);
            if !self.is_subscribed && stream.is_forgettable(now) {
                self.stream = None;
            }
        }
    }
}

/// One channel's stream in its current epoch.
struct Stream {
    epoch: String,
    /// The last offset assigned; 0 before the first publication.
    top: u64,
    /// The newest publications with when they were published, in offset order: when not
    /// empty, the last one has offset `top` and the offsets are consecutive.
    history: VecDeque<(Arc<Publication>, Instant)>,
    /// The last publication's time, or the stream's creation.
    touched: Instant,
    /// The TTL from the options last used with this stream, for `sweep`.
    ttl: Duration,
}

impl Stream {
    fn new(ttl: Duration, now: Instant) -> Self {
        Self { epoch: new_epoch(), top: 0, history: VecDeque::new(), touched: now, ttl }
    }

    fn append(
        &mut self,
        data: Value,
        info: Option<ClientInfo>,
        options: &StreamOptions,
        now: Instant,
    ) -> (StreamPosition, Arc<Publication>) {
        self.top += 1;
        self.touched = now;
        let publication = Arc::new(Publication { offset: self.top, data, info });
        if options.history_size > 0 {
            self.history.push_back((Arc::clone(&publication), now));
            self.trim(options.history_size, now);
        }
        (StreamPosition { offset: self.top, epoch: self.epoch.clone() }, publication)
    }

    /// Keeps at most `size` publications, none older than the TTL. Only ever drops from the
    /// front, which keeps the offsets in history consecutive.
    fn trim(&mut self, size: usize, now: Instant) {
        while self.history.len() > size {
            self.history.pop_front();
        }
        while self.history.front().is_some_and(|(_, at)| is_expired(*at, self.ttl, now)) {
            self.history.pop_front();
        }
    }

    fn is_forgettable(&self, now: Instant) -> bool {
        self.history.is_empty() && is_expired(self.touched, self.ttl, now)
    }

    fn position(&self) -> StreamPosition {
        StreamPosition { offset: self.top, epoch: self.epoch.clone() }
    }

    fn read(&self, query: &HistoryQuery) -> History {
        let Some(since) = &query.since else {
            let skip = query.limit.map_or(0, |limit| self.history.len().saturating_sub(limit));
            return self.history_from(skip);
        };
        let incomplete =
            History { position: self.position(), publications: Vec::new(), complete: false };
        if since.epoch != self.epoch || since.offset > self.top {
            return incomplete;
        }
        let missed = self.top - since.offset;
        if query.limit.is_some_and(|limit| missed > u64::try_from(limit).unwrap_or(u64::MAX)) {
            // Never a partial answer: the caller could not tell it from a complete one.
            return incomplete;
        }
        if missed == 0 {
            return self.history_from(self.history.len());
        }
        match self.history.front() {
            Some((oldest, _)) if oldest.offset <= since.offset + 1 => {
                // Offsets in history are consecutive, so `since.offset + 1` sits this far in.
                let skip = usize::try_from(since.offset + 1 - oldest.offset).unwrap_or(usize::MAX);
                self.history_from(skip)
            }
            // Trimmed by size or TTL (or never stored): the gap cannot be filled.
            _ => incomplete,
        }
    }

    fn history_from(&self, skip: usize) -> History {
        History {
            position: self.position(),
            publications: self.history.iter().skip(skip).map(|(p, _)| Arc::clone(p)).collect(),
            complete: true,
        }
    }
}

/// Where a broker reads the time.
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A fresh epoch: random, so a forgotten stream's positions never match the new one.
fn new_epoch() -> String {
    let mut rng = rand::rng();
    (0..EPOCH_LEN)
        .map(|_| char::from(EPOCH_ALPHABET[rng.random_range(0..EPOCH_ALPHABET.len())]))
        .collect()
}

fn is_expired(at: Instant, ttl: Duration, now: Instant) -> bool {
    now.saturating_duration_since(at) > ttl
}

/// Shards per broker: enough that a few busy channels rarely share a lock.
const SHARDS: usize = 16;

/// 36^8 ≈ 2.8e12 epochs: a stream coming back under its old epoch is not a practical risk.
const EPOCH_LEN: usize = 8;

const EPOCH_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_with(offsets: std::ops::RangeInclusive<u64>, top: u64) -> Stream {
        let now = Instant::now();
        let mut stream = Stream::new(Duration::from_secs(60), now);
        stream.top = top;
        for offset in offsets {
            let publication = Publication { offset, data: Value::from(offset), info: None };
            stream.history.push_back((Arc::new(publication), now));
        }
        stream
    }

    fn offsets(history: &History) -> Vec<u64> {
        history.publications.iter().map(|p| p.offset).collect()
    }

    #[test]
    fn epochs_are_eight_lowercase_alphanumerics() {
        let epoch = new_epoch();
        assert_eq!(epoch.len(), 8);
        assert!(epoch.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{epoch}");
        assert_ne!(new_epoch(), new_epoch());
    }

    #[test]
    fn reads_since_the_oldest_kept_offset() {
        let stream = stream_with(4..=6, 6);
        let since = |offset| StreamPosition { offset, epoch: stream.epoch.clone() };
        let read = stream.read(&HistoryQuery::since(since(3), None));
        assert!(read.complete);
        assert_eq!(offsets(&read), [4, 5, 6]);
        let read = stream.read(&HistoryQuery::since(since(2), None));
        assert!(!read.complete);
        assert!(read.publications.is_empty());
        let read = stream.read(&HistoryQuery::since(since(5), Some(1)));
        assert_eq!((read.complete, offsets(&read)), (true, vec![6]));
    }

    #[test]
    fn zero_limit_is_complete_only_when_nothing_was_missed() {
        let stream = stream_with(1..=2, 2);
        let since = |offset| StreamPosition { offset, epoch: stream.epoch.clone() };
        assert!(stream.read(&HistoryQuery::since(since(2), Some(0))).complete);
        assert!(!stream.read(&HistoryQuery::since(since(1), Some(0))).complete);
        assert!(stream.read(&HistoryQuery::latest(Some(0))).publications.is_empty());
    }

    #[test]
    fn trims_expired_history_from_the_front() {
        let now = Instant::now();
        let mut stream = Stream::new(Duration::from_secs(10), now);
        stream.append(Value::from(1), None, &StreamOptions::new(5, stream.ttl), now);
        let later = now + Duration::from_secs(6);
        stream.append(Value::from(2), None, &StreamOptions::new(5, stream.ttl), later);
        stream.trim(5, now + Duration::from_secs(11));
        assert_eq!(stream.history.len(), 1);
        assert!(!stream.is_forgettable(now + Duration::from_secs(11)));
        stream.trim(5, now + Duration::from_secs(17));
        assert!(stream.is_forgettable(now + Duration::from_secs(17)));
    }
}
