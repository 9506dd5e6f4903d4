//! The backplane behind Switchboard's hub: offsets, history, presence, fan-out across nodes.
//!
//! A [`Broker`] assigns each channel's publications their offsets, keeps their history,
//! tracks presence, and hands every publication, join and leave of the channels a node is
//! interested in to that node's [`BrokerHandler`]. It also carries opaque messages from one
//! node to another ([`Broker::send_to_node`]). The hub on top does the per-connection
//! fan-out. [`MemoryBroker`] is the embedded default for a single node; the Redis broker
//! implements the same trait for several nodes and passes the same
//! [`conformance`] suite.
//!
//! This crate owns no sockets and no runtime: the in-memory broker is synchronous behind its
//! async signatures.

pub mod conformance;
mod cost;
mod memory;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use memory::{MemoryBroker, MemoryLimits};
pub use switchboard_proto::{ClientInfo, Publication, StreamPosition, Value};

/// How a channel's stream keeps history, from its namespace's options.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct StreamOptions {
    /// Most publications kept. 0 keeps none: offsets are still assigned, but nothing can be
    /// recovered.
    pub history_size: usize,
    /// How long a publication stays in history. A stream with nothing left in history and
    /// no interested node is forgotten after this long; it starts again under a new epoch.
    pub history_ttl: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self { history_size: 0, history_ttl: Duration::from_secs(300) }
    }
}

impl StreamOptions {
    /// Options keeping `size` publications for `ttl`.
    pub fn new(size: usize, ttl: Duration) -> Self {
        Self { history_size: size, history_ttl: ttl }
    }
}

/// What to read from history.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct HistoryQuery {
    /// Only publications after this position (oldest first). Without it, the newest ones.
    pub since: Option<StreamPosition>,
    /// At most this many publications. `None`: all that history holds.
    pub limit: Option<usize>,
}

impl HistoryQuery {
    /// The newest `limit` publications (all with `None`).
    pub fn latest(limit: Option<usize>) -> Self {
        Self { since: None, limit }
    }

    /// The publications after `since`, at most `limit` of them.
    pub fn since(since: StreamPosition, limit: Option<usize>) -> Self {
        Self { since: Some(since), limit }
    }
}

/// A history read.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// The stream's current top offset and epoch.
    pub position: StreamPosition,
    /// Publications in offset order (oldest first).
    pub publications: Vec<Arc<Publication>>,
    /// With `since`: whether `publications` are exactly every publication after it, no gap
    /// and no duplicate (same epoch, still in history, and within `limit`). Always `true`
    /// without `since`.
    pub complete: bool,
}

/// Why a broker operation failed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The backing store cannot be reached; nothing was done. Retry later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The backing store answered something unexpected.
    #[error("broker error: {0}")]
    Internal(String),
    /// The channel does not exist yet and the broker already holds state for this many
    /// channels, all in use (subscribed or with presence); nothing was done. Retry later.
    #[error("channel limit reached: {0} channels hold state")]
    ChannelLimit(usize),
    /// [`Broker::send_to_node`]: no node listens under this name (it is gone, never was, or
    /// cannot be reached through the backing store right now); nothing was sent.
    #[error("unknown node: no node listens as {0:?}")]
    UnknownNode(String),
}

/// Whether `name` can name a node for [`Broker::listen_as`] and [`Broker::send_to_node`]: 1 to
/// [`MAX_NODE_NAME`] bytes, each a lowercase ASCII letter or digit.
pub fn is_node_name(name: &str) -> bool {
    (1..=MAX_NODE_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The longest node name, in bytes: short enough to start every session id and to sit in a
/// backing store's key names.
pub const MAX_NODE_NAME: usize = 64;

/// A live node, as [`Broker::nodes`] lists it.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct NodeRecord {
    /// The node's name.
    pub name: String,
    /// What it said about itself last, as given to [`Broker::register_node`].
    pub info: String,
}

impl NodeRecord {
    /// A record of `name` with `info`.
    pub fn new(name: impl Into<String>, info: impl Into<String>) -> Self {
        Self { name: name.into(), info: info.into() }
    }
}

/// What a broker holds in this process, for metrics.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Usage {
    /// Estimated bytes of history held.
    pub history_bytes: usize,
    /// Channels holding state.
    pub channels: usize,
    /// Publications dropped from history to keep it within its byte budget.
    pub evicted_publications: u64,
    /// Idle channels forgotten to make room for new ones at the channel limit.
    pub evicted_channels: u64,
    /// Operations refused with [`BrokerError::ChannelLimit`].
    pub refused_channels: u64,
}

/// Receives what happens on the channels a node is interested in.
///
/// Called from inside the broker: implementations must not block and must not call back
/// into the broker.
pub trait BrokerHandler: Send + Sync + 'static {
    /// A publication on a channel this node subscribed to. For each channel, calls come in
    /// strictly increasing offset order.
    fn on_publication(&self, channel: &str, publication: Arc<Publication>);
    /// A client joined a channel with join/leave announcements on.
    fn on_join(&self, channel: &str, client: &ClientInfo);
    /// A client left a channel with join/leave announcements on.
    fn on_leave(&self, channel: &str, client: &ClientInfo);
    /// Publications on `channel` may have been missed (a lost backplane connection, an
    /// offset gap): its subscribers must recover from history.
    fn on_resync(&self, channel: &str);
    /// A message another node sent to this one with [`Broker::send_to_node`].
    fn on_node_message(&self, message: Bytes) {
        let _ = message;
    }
}

/// Whether a presence change is told to the channel's subscribers, on every node.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum JoinLeave {
    /// `on_join` / `on_leave` reach the handlers of the nodes subscribed to the channel.
    Announced,
    /// Presence changes, nobody is told.
    Silent,
}

/// The backplane.
///
/// Implementations guarantee, per channel:
/// - **Atomic offsets.** `publish` gives each publication the offset after the stream's
///   current top, atomically, even with concurrent publishers on several nodes. Offsets in
///   one epoch are consecutive from 1 and never reused.
/// - **Honest epochs.** The epoch changes whenever history may have been lost (a stream
///   forgotten after its TTL, a restarted or flushed store); a position from another epoch
///   never recovers.
/// - **Ordered delivery.** Every node subscribed to the channel gets `on_publication` for
///   each publication in offset order. Where the transport can lose messages, the broker
///   detects the loss and calls `on_resync` rather than skipping silently.
/// - **Read your writes.** A publication is in history (when history is on) before
///   `publish` returns, and `on_publication` for the local node may already have run.
/// - **Announcements follow subscriptions.** `on_join` and `on_leave` reach the nodes
///   subscribed to the channel, like publications; a leave for a client that was not present
///   announces nothing (checked and removed in one atomic step).
///
/// # Node messages
///
/// Besides channels, a broker carries opaque messages from node to node, for work that must
/// happen on the node holding some state (a session's HTTP requests, with SSE or long
/// polling behind a load balancer without sticky sessions). A node receives them once it
/// called [`listen_as`](Self::listen_as) with its name; any node sends with
/// [`send_to_node`](Self::send_to_node). Implementations guarantee:
///
/// - **Intact.** `on_node_message` gets exactly the bytes sent, whatever they are.
/// - **At most once.** A message is delivered once or not at all: it is lost when the
///   receiving node's connection to the backing store breaks while it is on its way, and
///   nothing tells either side (no `on_resync`, no error). `Ok` from `send_to_node` means a
///   node was listening under that name when the message was handed over, not that it has
///   been handled: a request forwarded this way needs its own timeout for the answer.
/// - **Order from one sender.** Messages one broker sends to one node, each `send_to_node`
///   started after the previous one returned `Ok`, arrive in that order (some may be lost
///   on the way, per above). Concurrent sends, and sends from different nodes, arrive in no
///   promised order.
/// - **Names are the caller's.** A node name is 1 to 64 lowercase ASCII letters and digits
///   ([`is_node_name`]); brokers do not check that names are unique across nodes. Two nodes
///   listening under one name may both receive its messages.
///
/// # Node registry
///
/// Each node records itself as live, with what it says about itself, for a time it chooses
/// ([`register_node`](Self::register_node)), and renews the record before it expires; any
/// node lists the live ones ([`nodes`](Self::nodes)), to know whom to send node messages to
/// and to show operators every node. A node that dies stays listed until its record expires.
#[async_trait::async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Sets where events go. Called once, before `subscribe`.
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>);

    /// Starts delivering `channel`'s events to this node's handler. Idempotent.
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError>;

    /// Stops delivering `channel`'s events to this node. Idempotent.
    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError>;

    /// Appends a publication, assigns its offset, stores it in history and fans it out.
    /// Returns the publication's position.
    async fn publish(
        &self,
        channel: &str,
        data: Value,
        info: Option<Arc<ClientInfo>>,
        options: &StreamOptions,
    ) -> Result<StreamPosition, BrokerError>;

    /// Reads history and the current position (creating the stream, and its epoch, when it
    /// does not exist yet, so the position can be resumed from later).
    async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        options: &StreamOptions,
    ) -> Result<History, BrokerError>;

    /// Adds `client` to the channel's presence; [`JoinLeave::Announced`] emits `on_join`.
    async fn join(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: JoinLeave,
    ) -> Result<(), BrokerError>;

    /// Removes `client` from the channel's presence; [`JoinLeave::Announced`] emits
    /// `on_leave`.
    async fn leave(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: JoinLeave,
    ) -> Result<(), BrokerError>;

    /// Everyone present in the channel.
    async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, BrokerError>;

    /// How many are present in the channel: the length of [`presence`](Self::presence),
    /// without listing everyone.
    async fn presence_count(&self, channel: &str) -> Result<usize, BrokerError>;

    /// Starts receiving the messages sent to the node named `node` (this process's node name:
    /// short, `[a-z0-9]` only, chosen by the caller; see [`is_node_name`]). Called at most
    /// once, after `set_handler`; they go to its
    /// [`on_node_message`](BrokerHandler::on_node_message).
    ///
    /// # Errors
    ///
    /// [`BrokerError::Internal`] when `node` is not a node name, or this broker already
    /// listens under another name. [`BrokerError::Unavailable`] when the backing store
    /// cannot be reached: the node may not be listening yet (a broker that reconnects on its
    /// own may start later); calling again with the same name retries.
    ///
    /// # Cancel safety
    ///
    /// Cancelling is like an `Unavailable` error: call again with the same name to be sure.
    async fn listen_as(&self, node: &str) -> Result<(), BrokerError>;

    /// Sends `message` to the node named `node`. At most once: a message can be lost when the
    /// receiving node's backplane connection breaks (see "Node messages" above).
    ///
    /// # Errors
    ///
    /// [`BrokerError::UnknownNode`] when no node listens under that name (gone, or never
    /// was; also a name that is not a node name); [`BrokerError::Unavailable`] when the
    /// backing store can't be reached, in which case the message may or may not have gone.
    ///
    /// # Cancel safety
    ///
    /// Cancelling may leave the message sent or not sent, never sent twice.
    async fn send_to_node(&self, node: &str, message: Bytes) -> Result<(), BrokerError>;

    /// Records the node named `node` as live until `ttl` from now, with `info`: what the node
    /// says about itself (text; the server writes JSON), replacing the record it had. A zero
    /// `ttl` removes the record (a node shutting down). Nodes call this periodically, more
    /// often than `ttl`, so that [`nodes`](Self::nodes) lists the live ones.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Internal`] when `node` is not a node name ([`is_node_name`]);
    /// [`BrokerError::Unavailable`] when the backing store can't be reached.
    async fn register_node(&self, node: &str, info: &str, ttl: Duration)
    -> Result<(), BrokerError>;

    /// The nodes whose record has not expired, each with its latest `info`, in no particular
    /// order. Expiry is by the backing store's clock, so nodes with skewed clocks agree.
    async fn nodes(&self) -> Result<Vec<NodeRecord>, BrokerError>;

    /// Whether the backing store is reachable now.
    fn is_ready(&self) -> bool {
        true
    }

    /// What the broker holds in this process. `None` (the default) for brokers that keep
    /// their state elsewhere.
    fn usage(&self) -> Option<Usage> {
        None
    }
}
