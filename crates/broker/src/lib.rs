//! The backplane behind Switchboard's hub: offsets, history, presence, fan-out across nodes.
//!
//! A [`Broker`] assigns each channel's publications their offsets, keeps their history,
//! tracks presence, and hands every publication, join and leave of the channels a node is
//! interested in to that node's [`BrokerHandler`]. The hub on top does the per-connection
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
