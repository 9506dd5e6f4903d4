//! The node: one server's hub wired to the broker, its registry of connected clients and
//! their sessions.
//!
//! This module owns everything of a client that is not its transport. A transport (the
//! WebSocket driver today; an event stream or a long-poll endpoint likewise) authenticates
//! the client at its door, opens a [`Session`] on the [`Node`], feeds it what the client
//! sends with [`Session::handle`], fires its deadline ([`Session::poll_deadline`],
//! [`Session::handle_timeout`]) and carries what the session's [`Outbox`] holds to the
//! client. It knows no socket, task or HTTP library.
//!
//! ```
//! # async fn run() {
//! use std::sync::Arc;
//! use switchboard_server::node::{Identity, Node, Payload, Queued, Session};
//! use switchboard_server::{Config, MemoryBroker};
//! use switchboard_proto::Format;
//! use tokio::time::Instant;
//!
//! let node = Arc::new(Node::new(Arc::new(MemoryBroker::new()), &Config::default()));
//! let mut session =
//!     Session::new(&node, Identity::anonymous(), Format::Json, None, Instant::now());
//! let command = br#"{"id":1,"type":"subscribe","channel":"chat:a"}"#;
//! assert!(session.handle(Payload::Text(command), Instant::now()).await.is_none());
//! let Some(Queued::Payload(reply)) = session.outbox().try_recv() else { panic!() };
//! assert!(reply.bytes.starts_with(br#"{"id":1,"result":{"epoch":"#));
//! session.close().await;
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use switchboard_broker::{
    Broker, BrokerError, BrokerHandler, ClientInfo, HistoryQuery, Publication, StreamOptions,
};
use switchboard_hub::{ClientId, Hub};
use switchboard_proto::channel::namespace_of;
use switchboard_proto::{
    ErrorBody, ErrorCode, Format, HistoryRequest, HistoryResult, PresenceCountResult,
    PresenceResult, Push,
};

use crate::auth::Authenticator;
use crate::config::{Config, HubOptions, LimitOptions, NamespaceOptions};
use crate::limits::Limiter;
use crate::metrics::{Metrics, ReasonLabel, ResultLabel};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

mod outbox;
mod page;
mod presence;
mod registry;
mod session;
mod subscribe;

pub use crate::auth::Identity;
pub use outbox::{Kick, Outbound, Outbox, Pushes, Queued, Source};
pub use registry::Registration;
pub use session::{MAX_CONSECUTIVE_ERRORS, Payload, Session};
pub use subscribe::Membership;

/// Shards of the per-channel subscription locks.
const CHANNEL_LOCKS: usize = 64;

/// The hub and the broker of one server process, its connected clients, and what their
/// sessions share: the authenticator, the per-address rate limiter, the counters.
pub struct Node {
    pub(crate) hub: Arc<Hub>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) options: HubOptions,
    sessions: SessionOptions,
    auth: Arc<Authenticator>,
    limiter: Arc<Limiter>,
    counters: Counters,
    connections: Mutex<HashMap<ClientId, registry::Registered>>,
    /// Serializes hub entry and broker subscription changes per channel (sharded).
    channel_locks: Box<[tokio::sync::Mutex<()>]>,
    lock_hasher: std::collections::hash_map::RandomState,
    /// Publications queued to subscribers on this node, counted by the broker's handler.
    deliveries: Arc<AtomicU64>,
    /// Where node messages go, once the server set it.
    inbox: Arc<OnceLock<NodeInbox>>,
    /// The application backend's proxies (`docs/hooks.md`).
    pub(crate) hooks: crate::hooks::Hooks,
}

/// What every session of a node follows, taken from [`Config`].
#[derive(Clone, Debug)]
struct SessionOptions {
    /// `auth.first_message` and `auth.first_message_timeout`: nothing but `connect` with a
    /// token until this long after opening, for clients that opened without credentials.
    first_message: Option<std::time::Duration>,
    /// The ping interval announced in the `connect` reply, in seconds (0: none).
    ping_interval_secs: u32,
    /// Command and byte rates per client and per address.
    rates: LimitOptions,
}

/// The counters sessions move: shared with the server's registry when the server built the
/// node, private otherwise.
#[derive(Clone, Debug, Default)]
struct Counters {
    command_errors: Family<ReasonLabel, Counter>,
    publications: Counter,
    recoveries: Family<ResultLabel, Counter>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("hub", &self.hub).field("options", &self.options).finish()
    }
}

impl Node {
    /// A node on `broker` with `config`'s hub, authentication and rate settings, on its own:
    /// its counters are not exposed anywhere (the server builds its nodes with its
    /// registry's). From now on `broker` delivers this node's channels to its hub.
    ///
    /// # Panics
    ///
    /// When `config` names a proxy it does not configure, or gives a proxy a URL that is not
    /// `http://` or `https://` ([`Server::bind`](crate::Server::bind) answers
    /// [`Error::Config`](crate::Error::Config) instead).
    pub fn new(broker: Arc<dyn Broker>, config: &Config) -> Self {
        let auth = Arc::new(Authenticator::new(&config.auth));
        let metrics = Metrics::new();
        let hooks = crate::hooks::Hooks::new(config, metrics.hooks.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        Self::with_parts(broker, config, auth, Arc::default(), &metrics, hooks)
    }

    /// A node sharing the server's authenticator, limiter and metrics registry.
    pub(crate) fn with_parts(
        broker: Arc<dyn Broker>,
        config: &Config,
        auth: Arc<Authenticator>,
        limiter: Arc<Limiter>,
        metrics: &Metrics,
        hooks: crate::hooks::Hooks,
    ) -> Self {
        let options = config.hub.clone();
        let hub = Arc::new(Hub::new(options.shards));
        let deliveries = Arc::new(AtomicU64::new(0));
        let inbox = Arc::new(OnceLock::new());
        let tallies = presence::Tallies::new(
            Arc::clone(&hub),
            Arc::downgrade(&broker),
            options.namespaces.clone(),
        );
        let handler = HubHandler {
            hub: Arc::clone(&hub),
            deliveries: Arc::clone(&deliveries),
            inbox: Arc::clone(&inbox),
            tallies,
        };
        broker.set_handler(Arc::new(handler));
        let channel_locks = (0..CHANNEL_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect();
        let ping = config.ping_interval.map_or(0, |d| d.as_secs());
        let sessions = SessionOptions {
            first_message: config.auth.first_message.then_some(config.auth.first_message_timeout),
            ping_interval_secs: u32::try_from(ping).unwrap_or(u32::MAX),
            rates: config.rate_limits.clone(),
        };
        let counters = Counters {
            command_errors: metrics.command_errors.clone(),
            publications: metrics.publications.clone(),
            recoveries: metrics.recoveries.clone(),
        };
        Self {
            hub,
            broker,
            options,
            sessions,
            auth,
            limiter,
            counters,
            connections: Mutex::default(),
            channel_locks,
            lock_hasher: std::collections::hash_map::RandomState::new(),
            deliveries,
            inbox,
            hooks,
        }
    }

    /// Sets where the messages other nodes send to this one go: the transports' forwarded
    /// requests. Set once; later calls change nothing.
    pub(crate) fn set_node_inbox(&self, inbox: NodeInbox) {
        let _ = self.inbox.set(inbox);
    }

    /// Verifies a token the way a transport verifies one at its door: for clients that
    /// bring credentials, the [`Identity`] to open their [`Session`] with.
    ///
    /// # Errors
    ///
    /// `unauthorized` or `token_expired`, with the reason.
    pub fn authenticate(&self, token: &str) -> Result<Identity, ErrorBody> {
        self.auth.authenticate_token(token).map_err(|failure| session::auth_error(&failure))
    }

    /// Publications queued to subscribers on this node so far (one per subscriber).
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// Holds `channel`'s subscription lock: while held, no other client of this node joins
    /// or leaves the channel's hub entry or changes the broker subscription.
    async fn lock_channel(&self, channel: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher as _;
        let index = self.lock_hasher.hash_one(channel) as usize % self.channel_locks.len();
        self.channel_locks[index].lock().await
    }

    /// Asks client `id` to close with `kick`. Returns whether it was connected here.
    pub fn disconnect_client(&self, id: &str, kick: Kick) -> bool {
        let connections = self.connections();
        let Some(connection) = connections.get(id) else { return false };
        connection.outbox.kick(kick);
        true
    }

    /// Asks every client of `user` to close with `kick`. Returns how many were asked.
    pub fn disconnect_user(&self, user: &str, kick: &Kick) -> usize {
        self.connections()
            .values()
            .filter(|c| c.user.as_deref() == Some(user))
            .inspect(|c| c.outbox.kick(kick.clone()))
            .count()
    }

    /// The ids of the connected clients, in no particular order.
    pub fn client_ids(&self) -> Vec<ClientId> {
        self.connections().keys().cloned().collect()
    }

    /// How many clients are connected.
    pub fn connection_count(&self) -> usize {
        self.connections().len()
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<ClientId, registry::Registered>> {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The options of the namespace named `namespace`.
    pub fn namespace(&self, namespace: &str) -> Option<&NamespaceOptions> {
        self.options.namespaces.get(namespace)
    }

    /// Checks `channel`'s name and returns the options of the namespace it belongs to, or
    /// the error to answer with (`invalid_channel`, `unknown_namespace`).
    ///
    /// # Errors
    ///
    /// As above.
    pub fn channel_namespace(&self, channel: &str) -> Result<&NamespaceOptions, ErrorBody> {
        let name = namespace_of(channel)
            .map_err(|e| ErrorBody::new(ErrorCode::InvalidChannel, e.to_string()))?;
        self.namespace(name).ok_or_else(|| {
            ErrorBody::new(ErrorCode::UnknownNamespace, format!("unknown namespace {name:?}"))
        })
    }

    /// Everyone present in `channel`, on every node (`presence`, for clients and the API).
    ///
    /// # Errors
    ///
    /// The error to answer with: the channel's, the namespace's, or the broker's.
    pub async fn presence(&self, channel: &str) -> Result<PresenceResult, ErrorBody> {
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

    /// How many are present in `channel`, on every node (`presence_count`, for clients and
    /// the API): what [`presence`](Self::presence) would list, without the list.
    ///
    /// # Errors
    ///
    /// As [`presence`](Self::presence).
    pub async fn presence_count(&self, channel: &str) -> Result<PresenceCountResult, ErrorBody> {
        let ns = self.channel_namespace(channel)?;
        if !ns.presence {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "presence is off in this namespace",
            ));
        }
        let count = self.broker.presence_count(channel).await.map_err(|e| broker_error(&e))?;
        Ok(PresenceCountResult { count: count as u64 })
    }

    /// Reads history (`history`, for clients and the API): `limit` is capped at the
    /// namespace's history size, and `complete` is set only with `since`.
    ///
    /// # Errors
    ///
    /// As [`presence`](Self::presence).
    pub async fn history(&self, req: &HistoryRequest) -> Result<HistoryResult, ErrorBody> {
        self.history_page(req, None).await
    }

    /// Publishes `data` to `channel` for `publisher` (`None` for the application's
    /// backend), with the namespace's history settings. Permissions, and counting what is
    /// accepted, are the caller's: sessions and the HTTP API count, the demo's ticker does
    /// not.
    ///
    /// # Errors
    ///
    /// As [`presence`](Self::presence).
    pub async fn publish(
        &self,
        channel: &str,
        data: switchboard_proto::Value,
        publisher: Option<Arc<ClientInfo>>,
    ) -> Result<switchboard_broker::StreamPosition, ErrorBody> {
        let ns = self.channel_namespace(channel)?;
        let options = StreamOptions::new(ns.history_size, ns.history_ttl);
        let position = self
            .broker
            .publish(channel, data, publisher, &options)
            .await
            .map_err(|e| broker_error(&e))?;
        Ok(position)
    }

    /// Reads history as [`history`](Self::history) does, cut to a page of at most `page`'s
    /// bytes in its format (at least one publication) when given: the rest is announced
    /// with `more`, `next` and `complete: false`.
    ///
    /// # Errors
    ///
    /// As [`presence`](Self::presence).
    pub async fn history_page(
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
fn broker_error(e: &BrokerError) -> ErrorBody {
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
    /// Shared with [`Node::inbox`].
    inbox: Arc<OnceLock<NodeInbox>>,
    /// Joins and leaves of large channels, summed.
    tallies: presence::Tallies,
}

/// Where the messages other nodes send to this one go (see [`Node::set_node_inbox`]).
pub(crate) type NodeInbox = Box<dyn Fn(&[u8]) + Send + Sync>;

impl BrokerHandler for HubHandler {
    fn on_node_message(&self, message: bytes::Bytes) {
        if let Some(inbox) = self.inbox.get() {
            inbox(&message);
        }
    }

    fn on_publication(&self, channel: &str, publication: Arc<Publication>) {
        let queued = self.hub.publish(channel, publication);
        if queued > 0 {
            self.deliveries.fetch_add(queued as u64, Ordering::Relaxed);
        }
    }

    fn on_join(&self, channel: &str, client: &ClientInfo) {
        if !self.tallies.count(channel, presence::Change::Join) {
            let push = Push::Join { channel: channel.to_owned(), client: client.clone() };
            self.hub.push(channel, push);
        }
    }

    fn on_leave(&self, channel: &str, client: &ClientInfo) {
        if !self.tallies.count(channel, presence::Change::Leave) {
            let push = Push::Leave { channel: channel.to_owned(), client: client.clone() };
            self.hub.push(channel, push);
        }
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
