//! The node: one server's hub wired to the broker, and the per-connection outbound queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use switchboard_broker::{
    Broker, BrokerError, BrokerHandler, ClientInfo, HistoryQuery, Publication, StreamOptions,
};
use switchboard_hub::{ClientId, Delivery, Hub, Sink};
use switchboard_proto::channel::namespace_of;
use switchboard_proto::{
    ErrorBody, ErrorCode, Format, HistoryRequest, HistoryResult, PresenceResult, Push,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{HubOptions, NamespaceOptions};

mod page;
pub(crate) mod session;

/// Shards of the per-channel subscription locks.
const CHANNEL_LOCKS: usize = 64;

/// The hub and the broker of one server process, and its live hub connections.
pub(crate) struct Node {
    pub(crate) hub: Arc<Hub>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) options: HubOptions,
    connections: Mutex<HashMap<ClientId, Registered>>,
    /// Serializes hub entry and broker subscription changes per channel (sharded).
    channel_locks: Box<[tokio::sync::Mutex<()>]>,
    lock_hasher: std::collections::hash_map::RandomState,
    /// Publications queued to subscribers on this node, counted by the broker's handler.
    deliveries: Arc<AtomicU64>,
}

/// A request to close a connection with an application close code.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Kick {
    /// The close code, 4000–4999.
    pub(crate) code: u16,
    /// Why, for the client and the logs.
    pub(crate) reason: String,
}

/// What the node knows of a live connection.
struct Registered {
    user: Option<String>,
    sink: Arc<ConnSink>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("hub", &self.hub).field("options", &self.options).finish()
    }
}

impl Node {
    /// A node on `broker`, which from now on delivers this node's channels to its hub.
    pub(crate) fn new(broker: Arc<dyn Broker>, options: HubOptions) -> Self {
        let hub = Arc::new(Hub::new(options.shards));
        let deliveries = Arc::new(AtomicU64::new(0));
        let handler = HubHandler { hub: Arc::clone(&hub), deliveries: Arc::clone(&deliveries) };
        broker.set_handler(Arc::new(handler));
        let channel_locks = (0..CHANNEL_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect();
        Self {
            hub,
            broker,
            options,
            connections: Mutex::default(),
            channel_locks,
            lock_hasher: std::collections::hash_map::RandomState::new(),
            deliveries,
        }
    }

    /// Publications queued to subscribers on this node so far (one per subscriber).
    pub(crate) fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// Holds `channel`'s subscription lock: while held, no other connection of this node
    /// joins or leaves the channel's hub entry or changes the broker subscription.
    pub(crate) async fn lock_channel(&self, channel: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher as _;
        let index = self.lock_hasher.hash_one(channel) as usize % self.channel_locks.len();
        self.channel_locks[index].lock().await
    }

    /// Registers a live connection; kicks for it arrive on its outbound queue.
    pub(crate) fn register(&self, id: &ClientId, user: Option<String>, sink: &Arc<ConnSink>) {
        let registered = Registered { user, sink: Arc::clone(sink) };
        self.connections().insert(Arc::clone(id), registered);
    }

    /// Records the user a connection authenticated as (for disconnects by user).
    pub(crate) fn set_user(&self, id: &str, user: Option<String>) {
        if let Some(registered) = self.connections().get_mut(id) {
            registered.user = user;
        }
    }

    /// Forgets a connection that has ended.
    pub(crate) fn unregister(&self, id: &str) {
        self.connections().remove(id);
    }

    /// Asks connection `id` to close with `kick`. Returns whether it was connected here.
    pub(crate) fn disconnect_client(&self, id: &str, kick: Kick) -> bool {
        let connections = self.connections();
        let Some(connection) = connections.get(id) else { return false };
        connection.sink.kick(kick);
        true
    }

    /// Asks every connection of `user` to close with `kick`. Returns how many were asked.
    pub(crate) fn disconnect_user(&self, user: &str, kick: &Kick) -> usize {
        self.connections()
            .values()
            .filter(|c| c.user.as_deref() == Some(user))
            .inspect(|c| c.sink.kick(kick.clone()))
            .count()
    }

    /// The ids of the live hub connections, in no particular order.
    pub(crate) fn client_ids(&self) -> Vec<ClientId> {
        self.connections().keys().cloned().collect()
    }

    /// How many hub connections are live.
    pub(crate) fn connection_count(&self) -> usize {
        self.connections().len()
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<ClientId, Registered>> {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The options of the namespace named `namespace`.
    pub(crate) fn namespace(&self, namespace: &str) -> Option<&NamespaceOptions> {
        self.options.namespaces.get(namespace)
    }

    /// Checks `channel`'s name and returns the options of the namespace it belongs to, or
    /// the error to answer with (`invalid_channel`, `unknown_namespace`).
    pub(crate) fn channel_namespace(&self, channel: &str) -> Result<&NamespaceOptions, ErrorBody> {
        let name = namespace_of(channel)
            .map_err(|e| ErrorBody::new(ErrorCode::InvalidChannel, e.to_string()))?;
        self.namespace(name).ok_or_else(|| {
            ErrorBody::new(ErrorCode::UnknownNamespace, format!("unknown namespace {name:?}"))
        })
    }

    /// Everyone present in `channel`, on every node (`presence`, for clients and the API).
    pub(crate) async fn presence(&self, channel: &str) -> Result<PresenceResult, ErrorBody> {
        let ns = self.channel_namespace(channel)?;
        if !ns.presence {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "presence is off in this namespace",
            ));
        }
        let clients = self.broker.presence(channel).await.map_err(|e| broker_error(&e))?;
        Ok(PresenceResult { clients })
    }

    /// Reads history (`history`, for clients and the API): `limit` is capped at the
    /// namespace's history size, and `complete` is set only with `since`.
    pub(crate) async fn history(&self, req: &HistoryRequest) -> Result<HistoryResult, ErrorBody> {
        self.history_page(req, None).await
    }

    /// Reads history as [`history`](Self::history) does, cut to a page of at most `page`'s
    /// bytes in its format (at least one publication) when given: the rest is announced
    /// with `more`, `next` and `complete: false` (see `page`).
    pub(crate) async fn history_page(
        &self,
        req: &HistoryRequest,
        page: Option<(Format, usize)>,
    ) -> Result<HistoryResult, ErrorBody> {
        let ns = self.channel_namespace(&req.channel)?;
        if ns.history_size == 0 {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "history is off in this namespace",
            ));
        }
        let limit = req.limit.map_or(ns.history_size, |l| (l as usize).min(ns.history_size));
        let query = match &req.since {
            Some(since) => HistoryQuery::since(since.clone(), Some(limit)),
            None => HistoryQuery::latest(Some(limit)),
        };
        let options = StreamOptions::new(ns.history_size, ns.history_ttl);
        let history = self
            .broker
            .history(&req.channel, &query, &options)
            .await
            .map_err(|e| broker_error(&e))?;
        let mut publications = history.publications;
        let next = page.and_then(|(format, budget)| {
            page::cut(&mut publications, format, budget, &history.position.epoch)
        });
        let complete = req.since.as_ref().map(|_| history.complete);
        Ok(HistoryResult {
            epoch: history.position.epoch,
            offset: history.position.offset,
            publications: publications.iter().map(|p| Publication::clone(p)).collect(),
            // A client unaware of pages must not take a first page for the whole answer.
            complete: if next.is_some() { Some(false) } else { complete },
            more: next.is_some(),
            next,
        })
    }
}

/// The error to answer with when the broker failed: `unavailable` (temporary) when it
/// cannot be reached or its channel limit is reached, `internal` otherwise.
pub(crate) fn broker_error(e: &BrokerError) -> ErrorBody {
    match e {
        BrokerError::Unavailable(_) | BrokerError::ChannelLimit(_) => {
            ErrorBody::new(ErrorCode::Unavailable, e.to_string())
        }
        _ => ErrorBody::new(ErrorCode::Internal, e.to_string()),
    }
}

/// Routes broker events into the hub.
struct HubHandler {
    hub: Arc<Hub>,
    /// Shared with [`Node::deliveries`].
    deliveries: Arc<AtomicU64>,
}

impl BrokerHandler for HubHandler {
    fn on_publication(&self, channel: &str, publication: Arc<Publication>) {
        let queued = self.hub.publish(channel, publication);
        if queued > 0 {
            self.deliveries.fetch_add(queued as u64, Ordering::Relaxed);
        }
    }

    fn on_join(&self, channel: &str, client: &ClientInfo) {
        self.hub.push(channel, Push::Join { channel: channel.to_owned(), client: client.clone() });
    }

    fn on_leave(&self, channel: &str, client: &ClientInfo) {
        self.hub.push(channel, Push::Leave { channel: channel.to_owned(), client: client.clone() });
    }

    fn on_resync(&self, channel: &str) {
        // Publications may have been missed: tell every subscriber to resubscribe with its
        // last position, which recovers exactly the gap from history or says it cannot.
        tracing::warn!(channel, "broker asked for a resync");
        let push = Push::Unsubscribe {
            channel: channel.to_owned(),
            code: ErrorCode::Unavailable,
            reason: "publications may have been missed: resubscribe with `since` to recover"
                .to_owned(),
        };
        self.hub.push(channel, push);
        for client in self.hub.subscribers(channel) {
            self.hub.remove(channel, &client);
        }
    }
}

/// A payload on a connection's outbound queue.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// The encoded push or reply.
    pub(crate) bytes: Bytes,
    /// For a publication, when it reached the hub: the start of its delivery latency.
    pub(crate) since: Option<Instant>,
}

/// What a connection task takes off its queue.
#[derive(Debug)]
pub(crate) enum Input {
    /// A payload to send.
    Push(Outbound),
    /// A request to close.
    Kick(Kick),
}

/// A connection's outbound queue, bounded in bytes. The hub queues shared encoded pushes
/// here without blocking; the connection task drains it into the socket. Kicks (API
/// disconnects, drains) wait here too, behind what was queued before them.
///
/// An idle connection's queue holds no allocation: a deque that is empty has none, and the
/// wake-up is one `Notify`.
pub(crate) struct ConnSink {
    queue: Mutex<VecDeque<Input>>,
    ready: Notify,
    queued: AtomicUsize,
    limit: usize,
    format: Format,
    /// Cancelled when the queue overflowed: the connection is a slow consumer.
    overflow: CancellationToken,
    /// The same fact, for the fan-out path: a token's own check takes its lock.
    overflowed: AtomicBool,
}

impl std::fmt::Debug for ConnSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnSink")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("limit", &self.limit)
            .finish()
    }
}

impl ConnSink {
    /// An empty queue for a connection speaking `format`, holding at most `limit` bytes.
    pub(crate) fn new(format: Format, limit: usize) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::default(),
            ready: Notify::new(),
            queued: AtomicUsize::new(0),
            limit,
            format,
            overflow: CancellationToken::new(),
            overflowed: AtomicBool::new(false),
        })
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Input>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, input: Input) {
        self.queue().push_back(input);
        // Stores a permit when the task is not waiting: no wake-up is lost.
        self.ready.notify_one();
    }

    /// The next input, waiting for one.
    pub(crate) async fn recv(&self) -> Input {
        loop {
            if let Some(input) = self.try_recv() {
                return input;
            }
            self.ready.notified().await;
        }
    }

    /// The next input if one is queued. A payload taken is no longer counted in the budget.
    pub(crate) fn try_recv(&self) -> Option<Input> {
        let mut queue = self.queue();
        let input = queue.pop_front()?;
        if queue.is_empty() && queue.capacity() > SHRINK_ABOVE {
            // A burst is over: do not keep its memory for an idle connection.
            *queue = VecDeque::new();
        }
        drop(queue);
        if let Input::Push(item) = &input {
            self.queued.fetch_sub(item.bytes.len(), Ordering::Relaxed);
        }
        Some(input)
    }

    /// Queues a payload (a reply) behind the pushes already queued, within the same byte
    /// budget: a client that sends commands but never reads overflows it too.
    pub(crate) fn enqueue(&self, bytes: Bytes, since: Option<Instant>) {
        if self.is_overflowed() {
            return;
        }
        let queued = self.queued.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
        if queued > self.limit {
            self.overflowed.store(true, Ordering::Release);
            self.overflow.cancel();
            return;
        }
        self.push(Input::Push(Outbound { bytes, since }));
    }

    /// Asks the connection to close, after what is queued.
    pub(crate) fn kick(&self, kick: Kick) {
        self.push(Input::Kick(kick));
    }

    /// The connection's wire format.
    pub(crate) fn format(&self) -> Format {
        self.format
    }

    /// Cancelled when the queue overflowed.
    pub(crate) fn overflow(&self) -> &CancellationToken {
        &self.overflow
    }

    /// Whether the queue overflowed.
    fn is_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }
}

/// Queue capacity (entries) kept once the queue empties; a larger one is freed.
const SHRINK_ABOVE: usize = 16;

impl Sink for ConnSink {
    fn deliver(&self, delivery: &Arc<Delivery>) -> bool {
        if self.is_overflowed() {
            return false;
        }
        let Some(bytes) = delivery.encoded(self.format) else { return true };
        // Never block the publisher and never grow: past the budget this subscriber is cut
        // off.
        self.enqueue(bytes, delivery.received_at());
        !self.is_overflowed()
    }
}
