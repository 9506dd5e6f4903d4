//! The in-memory broker: offsets, history and presence for one node, in this process.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use crate::cost::publication_cost;
use crate::{
    Broker, BrokerError, BrokerHandler, ClientInfo, History, HistoryQuery, JoinLeave, NodeRecord,
    Publication, StreamOptions, StreamPosition, Usage, Value, is_node_name,
};

/// How much a [`MemoryBroker`] may hold, whatever its clients do.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct MemoryLimits {
    /// Bytes of history held by all channels together, as estimated by what each
    /// publication costs in memory (its decoded value, publisher info and bookkeeping; see
    /// `docs/security.md`, "Worst-case memory"). When an append goes over it, the oldest
    /// publications of the least recently published streams are dropped until it fits:
    /// those streams keep their epoch and offsets, and a recovery that needed the dropped
    /// publications answers `complete: false`. 0 keeps no history at all. Default 64 MiB:
    /// a small machine's share, thousands of busy channels' worth of recent messages.
    pub history_bytes: usize,
    /// Channels holding any state (a stream, a subscription or presence). Creating one
    /// more first forgets a channel that nobody on this node is subscribed to or present
    /// in (its next use starts a new epoch): the least recently published one of the first
    /// shard holding any, starting with the new channel's own, so that making room costs a
    /// scan of one shard, not of every channel. When every channel is in use, the
    /// operation fails with [`BrokerError::ChannelLimit`]. The count is checked under the
    /// new channel's shard lock only, so creations racing in different shards may pass it
    /// by at most one per shard (15). 0 for no limit. Default 65,536: up to about 48 MiB of
    /// per-channel bookkeeping at the 255-byte name limit, well past what the hub's
    /// subscriptions alone reach on a small node.
    pub max_channels: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        Self { history_bytes: 64 << 20, max_channels: 65_536 }
    }
}

impl MemoryLimits {
    /// Limits of `history_bytes` of history in at most `max_channels` channels.
    pub fn new(history_bytes: usize, max_channels: usize) -> Self {
        Self { history_bytes, max_channels }
    }
}

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
/// Memory is bounded whatever the clients do by [`MemoryLimits`]: a node-wide history
/// budget in bytes and a cap on channels. The bytes held are one atomic total; a publish
/// that takes it over the budget, after releasing its own shard, evicts from the shard
/// whose least recently published stream is the oldest (each shard publishes that in an
/// atomic), one shard lock at a time, in a bounded number of steps.
///
/// # Cancel safety
///
/// Every method finishes on its first poll, so dropping a future never leaves an operation
/// half done.
///
/// # Node messages
///
/// One process is one node: the only node [`send_to_node`](Broker::send_to_node) reaches is
/// this one, under the name given to [`listen_as`](Broker::listen_as), and the message goes
/// to `on_node_message` before `send_to_node` returns. Any other name is
/// [`BrokerError::UnknownNode`]. Nothing is lost, and messages arrive in the order sent.
///
/// # Handler calls
///
/// [`BrokerHandler`] methods run while the channel's shard lock is held: a handler that calls
/// back into this broker deadlocks, and a slow one stalls the other channels of its shard.
/// `on_node_message` is the exception: it runs with no lock held, on the sender's task.
pub struct MemoryBroker {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    handler: RwLock<Option<Arc<dyn BrokerHandler>>>,
    /// The name given to `listen_as`.
    node: OnceLock<String>,
    /// [`Broker::register_node`]'s records: name → (info, expiry).
    registry: Mutex<HashMap<String, (String, Instant)>>,
    clock: Clock,
    limits: MemoryLimits,
    accounts: Arc<Accounts>,
}

impl MemoryBroker {
    /// An empty broker on the system clock, with the default [`MemoryLimits`].
    pub fn new() -> Self {
        Self::with_clock(Arc::new(Instant::now))
    }

    /// An empty broker reading the time from `clock`, so tests can expire history without
    /// sleeping. `clock` must never go backwards.
    pub fn with_clock(clock: Arc<dyn Fn() -> Instant + Send + Sync>) -> Self {
        let accounts = Arc::new(Accounts::default());
        Self {
            shards: (0..SHARDS).map(|index| Mutex::new(Shard::new(index, &accounts))).collect(),
            hasher: RandomState::new(),
            handler: RwLock::new(None),
            node: OnceLock::new(),
            registry: Mutex::default(),
            clock,
            limits: MemoryLimits::default(),
            accounts,
        }
    }

    /// The same broker with other limits. Set them before first use.
    #[must_use]
    pub fn with_limits(mut self, limits: MemoryLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Forgets every stream that nobody needs any more (not subscribed, history empty, last
    /// publication older than its TTL) and drops expired history everywhere.
    ///
    /// Takes each shard's lock in turn, never two at once.
    pub fn sweep(&self) {
        let now = (self.clock)();
        for index in 0..SHARDS {
            self.lock(index).sweep(now);
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

    fn index(&self, channel: &str) -> usize {
        // The modulo keeps the value below SHARDS, so the cast cannot truncate.
        (self.hasher.hash_one(channel) % SHARDS as u64) as usize
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        self.lock(self.index(channel))
    }

    /// The channel's shard, locked, once the channel exists or there is room to create it:
    /// at the channel limit, an idle channel is forgotten first.
    ///
    /// # Errors
    ///
    /// [`BrokerError::ChannelLimit`] when every channel is in use.
    fn admit(&self, channel: &str) -> Result<MutexGuard<'_, Shard>, BrokerError> {
        let max = self.limits.max_channels;
        let index = self.index(channel);
        let has_room = |shard: &Shard| {
            max == 0
                || self.accounts.channels.load(Ordering::Relaxed) < max
                || shard.channels.contains_key(channel)
        };
        let shard = self.lock(index);
        if has_room(&shard) {
            return Ok(shard);
        }
        drop(shard);
        // One shard at a time, starting with the channel's own: never two locks at once.
        let now = (self.clock)();
        let _ = (0..SHARDS).any(|step| self.lock((index + step) % SHARDS).forget_idle(now));
        let shard = self.lock(index);
        if has_room(&shard) {
            return Ok(shard);
        }
        self.accounts.refused_channels.fetch_add(1, Ordering::Relaxed);
        Err(BrokerError::ChannelLimit(max))
    }

    /// Brings the history held back under the budget: the oldest publications of the least
    /// recently published streams go first. Called with no shard locked.
    fn enforce_budget(&self) {
        let budget = self.limits.history_bytes;
        for _ in 0..MAX_EVICTION_STEPS {
            if self.accounts.history_bytes.load(Ordering::Relaxed) <= budget {
                return;
            }
            let oldest = (0..SHARDS)
                .map(|index| (self.accounts.oldest[index].load(Ordering::Relaxed), index))
                .min();
            let Some((tick, index)) = oldest.filter(|(tick, _)| *tick != u64::MAX) else {
                return;
            };
            self.lock(index).evict_history(tick, budget);
        }
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
        f.debug_struct("MemoryBroker")
            .field("shards", &self.shards.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
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
        self.admit(channel)?.with_channel(channel, |state| state.is_subscribed = true);
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
        info: Option<Arc<ClientInfo>>,
        options: &StreamOptions,
    ) -> Result<StreamPosition, BrokerError> {
        let now = (self.clock)();
        let mut shard = self.admit(channel)?;
        let tick = self.accounts.ticks.fetch_add(1, Ordering::Relaxed);
        let (position, publication, is_subscribed) = shard.with_channel(channel, |state| {
            let (position, publication) =
                state.stream(options, now).append(data, info, options, now, tick);
            (position, publication, state.is_subscribed)
        });
        // Still under the shard lock: the next publish on this channel waits for this call,
        // which keeps delivery in offset order.
        if is_subscribed && let Some(handler) = self.handler() {
            handler.on_publication(channel, publication);
        }
        drop(shard);
        self.enforce_budget();
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
            .admit(channel)?
            .with_channel(channel, |state| state.stream(options, now).read(query));
        Ok(history)
    }

    async fn join(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: JoinLeave,
    ) -> Result<(), BrokerError> {
        let mut shard = self.admit(channel)?;
        let is_subscribed = shard.with_channel(channel, |state| {
            state.presence.insert(client.id.clone(), client.clone());
            state.is_subscribed
        });
        if announce == JoinLeave::Announced
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
        announce: JoinLeave,
    ) -> Result<(), BrokerError> {
        let mut shard = self.shard(channel);
        let (left, is_subscribed) = shard.with_channel(channel, |state| {
            (state.presence.remove(&client.id), state.is_subscribed)
        });
        if let (JoinLeave::Announced, true, Some(left)) = (announce, is_subscribed, left)
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

    async fn presence_count(&self, channel: &str) -> Result<usize, BrokerError> {
        Ok(self.shard(channel).channels.get(channel).map_or(0, |state| state.presence.len()))
    }

    async fn listen_as(&self, node: &str) -> Result<(), BrokerError> {
        if !is_node_name(node) {
            return Err(BrokerError::Internal(format!("invalid node name {node:?}")));
        }
        let listening = self.node.get_or_init(|| node.to_owned());
        if listening != node {
            return Err(BrokerError::Internal(format!("already listening as {listening:?}")));
        }
        Ok(())
    }

    async fn send_to_node(&self, node: &str, message: Bytes) -> Result<(), BrokerError> {
        if self.node.get().is_none_or(|listening| listening != node) {
            return Err(BrokerError::UnknownNode(node.to_owned()));
        }
        if let Some(handler) = self.handler() {
            handler.on_node_message(message);
        }
        Ok(())
    }

    async fn register_node(
        &self,
        node: &str,
        info: &str,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        if !is_node_name(node) {
            return Err(BrokerError::Internal(format!("invalid node name {node:?}")));
        }
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if ttl.is_zero() {
            registry.remove(node);
        } else {
            let expiry = (self.clock)() + ttl;
            registry.insert(node.to_owned(), (info.to_owned(), expiry));
        }
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, BrokerError> {
        let now = (self.clock)();
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        registry.retain(|_, (_, expiry)| *expiry > now);
        Ok(registry.iter().map(|(name, (info, _))| NodeRecord::new(name, info)).collect())
    }

    fn usage(&self) -> Option<Usage> {
        let accounts = &self.accounts;
        Some(Usage {
            history_bytes: accounts.history_bytes.load(Ordering::Relaxed),
            channels: accounts.channels.load(Ordering::Relaxed),
            evicted_publications: accounts.evicted_publications.load(Ordering::Relaxed),
            evicted_channels: accounts.evicted_channels.load(Ordering::Relaxed),
            refused_channels: accounts.refused_channels.load(Ordering::Relaxed),
        })
    }
}

/// What all shards share: totals kept with atomics, so that no publish waits for another
/// shard's lock to account for itself.
#[derive(Default)]
struct Accounts {
    /// Estimated bytes of every publication in history.
    history_bytes: AtomicUsize,
    /// Channels holding state.
    channels: AtomicUsize,
    /// Per shard, the publish tick of its least recently published stream with history;
    /// `u64::MAX` when it has none. Read without the shard's lock to pick where to evict.
    oldest: [AtomicU64; SHARDS],
    /// Orders publications across shards: each append takes the next tick.
    ticks: AtomicU64,
    evicted_publications: AtomicU64,
    evicted_channels: AtomicU64,
    refused_channels: AtomicU64,
}

/// The channels whose names hash to one shard.
struct Shard {
    index: usize,
    accounts: Arc<Accounts>,
    channels: HashMap<Arc<str>, ChannelState>,
    /// Streams with history by the tick of their last publication: the first is this
    /// shard's least recently published one.
    by_publish: BTreeMap<u64, Arc<str>>,
}

/// A channel's share of the accounts: the tick of its last publication while it holds
/// history, and the bytes it holds.
#[derive(Clone, Copy, Default, Eq, PartialEq)]
struct Footprint {
    tick: Option<u64>,
    bytes: usize,
}

impl Shard {
    fn new(index: usize, accounts: &Arc<Accounts>) -> Self {
        accounts.oldest[index].store(u64::MAX, Ordering::Relaxed);
        Self {
            index,
            accounts: Arc::clone(accounts),
            channels: HashMap::new(),
            by_publish: BTreeMap::new(),
        }
    }

    /// Runs `f` on the channel's state, creating it when missing and removing it when `f`
    /// leaves it empty, so no empty entry outlives a call.
    fn with_channel<R>(&mut self, channel: &str, f: impl FnOnce(&mut ChannelState) -> R) -> R {
        let Self { index, accounts, channels, by_publish } = self;
        if let Some(state) = channels.get_mut(channel) {
            let before = state.footprint();
            let result = f(state);
            let after = state.footprint();
            let is_empty = state.is_empty();
            if before != after {
                account(by_publish, accounts, *index, &state.name, before, after);
            }
            if is_empty {
                self.channels.remove(channel);
                self.accounts.channels.fetch_sub(1, Ordering::Relaxed);
            }
            return result;
        }
        let mut state = ChannelState::new(channel);
        let result = f(&mut state);
        if !state.is_empty() {
            let name = Arc::clone(&state.name);
            self.account(&name, Footprint::default(), state.footprint());
            self.channels.insert(name, state);
            self.accounts.channels.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Expires history and forgets what nobody needs any more.
    fn sweep(&mut self, now: Instant) {
        let mut changes = Vec::new();
        let before = self.channels.len();
        self.channels.retain(|name, state| {
            let before = state.footprint();
            state.expire(now);
            let after = state.footprint();
            if before != after {
                changes.push((Arc::clone(name), before, after));
            }
            !state.is_empty()
        });
        for (name, before, after) in changes {
            self.account(&name, before, after);
        }
        self.accounts.channels.fetch_sub(before - self.channels.len(), Ordering::Relaxed);
    }

    /// Drops the oldest publications of the stream last published at `tick` until the
    /// history held fits `budget` or the stream has none left.
    fn evict_history(&mut self, tick: u64, budget: usize) {
        let Some(name) = self.by_publish.get(&tick).map(Arc::clone) else {
            // Another publish moved it since the tick was read: the caller reads again.
            return;
        };
        let Some(state) = self.channels.get_mut(&*name) else { return };
        let before = state.footprint();
        let mut excess = self.accounts.history_bytes.load(Ordering::Relaxed).saturating_sub(budget);
        let mut evicted = 0;
        if let Some(stream) = &mut state.stream {
            while excess > 0
                && let Some(cost) = stream.pop_front()
            {
                excess = excess.saturating_sub(cost);
                evicted += 1;
            }
        }
        let after = state.footprint();
        self.account(&name, before, after);
        self.accounts.evicted_publications.fetch_add(evicted, Ordering::Relaxed);
    }

    /// Forgets the least recently published channel nobody is subscribed to or present in.
    /// Returns whether there was one.
    fn forget_idle(&mut self, now: Instant) -> bool {
        let idle = self
            .channels
            .iter()
            .filter(|(_, state)| !state.is_subscribed && state.presence.is_empty())
            .min_by_key(|(_, state)| state.stream.as_ref().map_or(now, |stream| stream.touched))
            .map(|(name, state)| (Arc::clone(name), state.footprint()));
        let Some((name, before)) = idle else { return false };
        self.channels.remove(&*name);
        self.account(&name, before, Footprint::default());
        self.accounts.channels.fetch_sub(1, Ordering::Relaxed);
        self.accounts.evicted_channels.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Moves a channel's share of the accounts from `before` to `after`.
    fn account(&mut self, name: &Arc<str>, before: Footprint, after: Footprint) {
        account(&mut self.by_publish, &self.accounts, self.index, name, before, after);
    }
}

/// Moves a channel's share of the accounts from `before` to `after`: a free function, so
/// that it can run while the channel's state is borrowed from the same shard.
fn account(
    by_publish: &mut BTreeMap<u64, Arc<str>>,
    accounts: &Accounts,
    index: usize,
    name: &Arc<str>,
    before: Footprint,
    after: Footprint,
) {
    if before.tick != after.tick {
        if let Some(tick) = before.tick {
            by_publish.remove(&tick);
        }
        if let Some(tick) = after.tick {
            by_publish.insert(tick, Arc::clone(name));
        }
        let oldest = by_publish.first_key_value().map_or(u64::MAX, |(tick, _)| *tick);
        accounts.oldest[index].store(oldest, Ordering::Relaxed);
    }
    if after.bytes > before.bytes {
        accounts.history_bytes.fetch_add(after.bytes - before.bytes, Ordering::Relaxed);
    } else if before.bytes > after.bytes {
        accounts.history_bytes.fetch_sub(before.bytes - after.bytes, Ordering::Relaxed);
    }
}

/// Everything this node knows about one channel.
struct ChannelState {
    /// The channel's name, shared with the shard's indexes.
    name: Arc<str>,
    is_subscribed: bool,
    stream: Option<Stream>,
    /// Client id → client, sorted so `presence` lists are deterministic.
    presence: BTreeMap<String, ClientInfo>,
}

impl ChannelState {
    fn new(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            is_subscribed: false,
            stream: None,
            presence: BTreeMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        !self.is_subscribed && self.stream.is_none() && self.presence.is_empty()
    }

    fn footprint(&self) -> Footprint {
        match &self.stream {
            Some(stream) if !stream.history.is_empty() => {
                Footprint { tick: Some(stream.tick), bytes: stream.bytes }
            }
            _ => Footprint::default(),
        }
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
    /// The newest publications with when they were published and what they cost, in offset
    /// order: when not empty, the last one has offset `top` and the offsets are
    /// consecutive.
    history: VecDeque<Entry>,
    /// The sum of the costs in `history`.
    bytes: usize,
    /// The last publication's time, or the stream's creation.
    touched: Instant,
    /// The last publication's tick, which orders streams by their last publication.
    tick: u64,
    /// The TTL from the options last used with this stream, for `sweep`.
    ttl: Duration,
}

/// A publication in history.
struct Entry {
    publication: Arc<Publication>,
    at: Instant,
    cost: usize,
}

impl Stream {
    fn new(ttl: Duration, now: Instant) -> Self {
        Self {
            epoch: new_epoch(),
            top: 0,
            history: VecDeque::new(),
            bytes: 0,
            touched: now,
            tick: 0,
            ttl,
        }
    }

    fn append(
        &mut self,
        data: Value,
        info: Option<Arc<ClientInfo>>,
        options: &StreamOptions,
        now: Instant,
        tick: u64,
    ) -> (StreamPosition, Arc<Publication>) {
        self.top += 1;
        self.touched = now;
        self.tick = tick;
        let publication = Arc::new(Publication { offset: self.top, data, info });
        if options.history_size > 0 {
            let cost = publication_cost(&publication) + size_of::<Entry>();
            self.history.push_back(Entry { publication: Arc::clone(&publication), at: now, cost });
            self.bytes += cost;
            self.trim(options.history_size, now);
        }
        (StreamPosition { offset: self.top, epoch: self.epoch.clone() }, publication)
    }

    /// Drops the oldest publication, returning its cost. Only ever dropping from the front
    /// keeps the offsets in history consecutive.
    fn pop_front(&mut self) -> Option<usize> {
        let entry = self.history.pop_front()?;
        self.bytes -= entry.cost;
        Some(entry.cost)
    }

    /// Keeps at most `size` publications, none older than the TTL.
    fn trim(&mut self, size: usize, now: Instant) {
        while self.history.len() > size {
            self.pop_front();
        }
        while self.history.front().is_some_and(|entry| is_expired(entry.at, self.ttl, now)) {
            self.pop_front();
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
            Some(oldest) if oldest.publication.offset <= since.offset + 1 => {
                // Offsets in history are consecutive, so `since.offset + 1` sits this far in.
                let skip = usize::try_from(since.offset + 1 - oldest.publication.offset)
                    .unwrap_or(usize::MAX);
                self.history_from(skip)
            }
            // Trimmed by size, TTL or the memory budget (or never stored): the gap cannot be
            // filled.
            _ => incomplete,
        }
    }

    fn history_from(&self, skip: usize) -> History {
        History {
            position: self.position(),
            publications: self
                .history
                .iter()
                .skip(skip)
                .map(|entry| Arc::clone(&entry.publication))
                .collect(),
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

/// Shards visited by one publish to bring history back under its budget. Each step empties
/// a stream's history or reaches the budget, so concurrent publishers overshoot it by at
/// most a few publications, never without bound.
const MAX_EVICTION_STEPS: usize = 64;

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
            let publication = Arc::new(publication);
            let cost = publication_cost(&publication) + size_of::<Entry>();
            stream.history.push_back(Entry { publication, at: now, cost });
            stream.bytes += cost;
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
        stream.append(Value::from(1), None, &StreamOptions::new(5, stream.ttl), now, 1);
        let later = now + Duration::from_secs(6);
        stream.append(Value::from(2), None, &StreamOptions::new(5, stream.ttl), later, 2);
        stream.trim(5, now + Duration::from_secs(11));
        assert_eq!(stream.history.len(), 1);
        assert!(!stream.is_forgettable(now + Duration::from_secs(11)));
        stream.trim(5, now + Duration::from_secs(17));
        assert!(stream.is_forgettable(now + Duration::from_secs(17)));
    }

    #[test]
    fn trimming_keeps_the_byte_total() {
        let mut stream = stream_with(1..=5, 5);
        let total: usize = stream.history.iter().map(|entry| entry.cost).sum();
        assert_eq!(stream.bytes, total);
        stream.trim(2, Instant::now());
        assert_eq!(stream.bytes, stream.history.iter().map(|entry| entry.cost).sum::<usize>());
        while stream.pop_front().is_some() {}
        assert_eq!(stream.bytes, 0);
    }
}
