//! The NATS broker: Switchboard's backplane for teams that already run NATS.
//!
//! [`NatsBroker`] implements [`switchboard_broker::Broker`] on a NATS system with JetStream
//! (server 2.9 or newer). This crate owns everything Switchboard stores in NATS and says to
//! it: the stream, the key-value buckets, the subjects, and how offsets and epochs come out
//! of them. It is the only crate that talks to NATS; it owns no client connections and no
//! hub.
//!
//! - **Offsets and history** live in one JetStream stream. Each publication is stored under
//!   its channel's subject with its offset and epoch in headers, published with
//!   `Nats-Expected-Last-Subject-Sequence` set to the sequence of the channel's last stored
//!   message: JetStream refuses it if anyone stored another in between, and the publisher
//!   reads the new top and tries again. So concurrent publishers on any number of nodes get
//!   consecutive offsets, and stream order is offset order.
//! - **Fan-out**: the stream republishes every message it stored onto a live subject per
//!   channel, in stream order; each node holds one core NATS subscription per channel with
//!   local subscribers. A refused publish is never republished, so nobody sees it.
//! - **Node messages** ([`Broker::send_to_node`]) are core NATS requests to the receiving
//!   node's inbox subject, answered once the message is handed to its handler; "no
//!   responders" is [`BrokerError::UnknownNode`].
//! - **Presence** is one key per channel in a key-value bucket, changed with compare and
//!   set; entries expire unless their node refreshes them, so a crashed node's clients
//!   leave within three [`presence_heartbeat`](NatsConfig::presence_heartbeat)s plus one
//!   more for the sweep that announces it.
//! - **Losses** are detected, never skipped: a reconnection, a slow-consumer drop, an
//!   offset gap or a new epoch calls [`BrokerHandler::on_resync`].
//! - **Outages** fail operations fast with [`BrokerError::Unavailable`]; the client
//!   reconnects in the background.
//!
//! # What is in NATS
//!
//! Under [`subject_prefix`](NatsConfig::subject_prefix) `P` (default `switchboard`), with
//! channel `C` written as one subject token `T` (`C`'s bytes in base64url without padding,
//! so any channel name makes a valid, distinct token):
//!
//! - stream `P-channels`, subjects `P.ch.>`, file storage: publication `n` of `C` is a
//!   message on `P.ch.T` with headers `Sb-Offset: n`, `Sb-Epoch: <epoch>` and
//!   `Sb-Previous: <stream sequence of the channel's message before it>` and the
//!   publication's JSON as payload. A message with `Sb-Offset: 0` and no payload marks a
//!   stream created by a history read. The stream republishes to `P.live.>`;
//! - `P.live.T`, core NATS: the republished messages, and joins and leaves (header
//!   `Sb-Event: join` or `leave`, the client's JSON as payload);
//! - bucket `P-presence`, key `T`: a JSON object, client id → the client, whether to
//!   announce its leave, and when it expires (ms since the Unix epoch, node clocks); key
//!   `w.T`: until when a subscribed node keeps the channel's stream alive past its TTL;
//! - `P.node.N`, core NATS requests: the messages sent to node `N`; `P.sync`, requests
//!   nobody answers, for round trips to the server;
//! - bucket `P-nodes`: key `n.N` holds node `N`'s record (its info and time to live, the
//!   entry's own timestamp says when it was written), key `clock` is written before each
//!   listing to learn the server's time.
//!
//! A channel's epoch is the one of its last stored message. When that message is gone (the
//! stream was deleted or purged, the server lost its storage, the stream's own limits
//! dropped it), or is older than the namespace's `history_ttl` while no node is subscribed,
//! the next publication or history read starts a new random epoch at offset 1 (or 0): old
//! positions never recover.
//! History is trimmed per channel to `history_size` (a purge keeping the newest, every few
//! publications), aged by `history_ttl` and capped by
//! [`max_history_bytes`](NatsConfig::max_history_bytes) when read. A read walks back from
//! the channel's last message along `Sb-Previous`, one request per publication it serves.
//!
//! # For the integrator
//!
//! Connect once per process with [`NatsBroker::connect`] and hand the broker to the server
//! as `Arc<dyn Broker>`. Every node of a deployment needs the same NATS system and subject
//! prefix, client ids that are unique across nodes, and clocks that agree to well within
//! the presence lifetime. [`BrokerHandler::on_resync`] means "this node may have missed
//! publications on this channel": after a NATS outage it comes for every subscribed channel
//! at once.
//!
//! ```no_run
//! use std::sync::Arc;
//! use switchboard_broker::{Broker, StreamOptions, Value};
//! use switchboard_broker_nats::{NatsBroker, NatsConfig};
//!
//! # async fn run() -> Result<(), switchboard_broker::BrokerError> {
//! let config = NatsConfig::new("nats://127.0.0.1:4222");
//! let broker = Arc::new(NatsBroker::connect(config).await?);
//! let options = StreamOptions::new(100, std::time::Duration::from_secs(300));
//! let position = broker.publish("chat:lobby", Value::from("hi"), None, &options).await?;
//! assert!(position.offset >= 1);
//! # Ok(())
//! # }
//! ```

mod config;
mod live;
mod names;
mod presence;
mod stored;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv, stream};
use async_nats::{ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use futures_util::StreamExt;
use rand::Rng;
use switchboard_broker::{
    Broker, BrokerError, BrokerHandler, ClientInfo, History, HistoryQuery, JoinLeave, NodeRecord,
    StreamOptions, StreamPosition, Value, is_node_name,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

pub use config::NatsConfig;

use crate::live::Live;
use crate::names::{ChannelNames, Names};
use crate::stored::Top;

/// A [`Broker`] on NATS JetStream, for running several nodes behind one channel namespace.
///
/// Construct it with [`connect`](Self::connect) inside a tokio runtime: it spawns
/// background tasks (connection events, presence heartbeat, one reader per subscribed
/// channel and one for the node's inbox), which stop when the broker is dropped. Share it
/// as `Arc<dyn Broker>`.
///
/// On top of the [`Broker`] guarantees:
///
/// - **Failures are prompt.** While the connection is down, every operation returns
///   [`BrokerError::Unavailable`] at once; a server that stopped answering fails it within
///   [`request_timeout`](NatsConfig::request_timeout). A publish that timed out may still
///   have been stored: `Unavailable` means "not known to be done".
/// - **Resync after loss.** When the connection comes back, the broker calls
///   [`BrokerHandler::on_resync`] for every subscribed channel, since live messages in
///   between were lost; the client subscribes again on its own. An offset gap or a new
///   epoch on a live channel resyncs that channel before delivering the publication.
/// - **Honest epochs.** A channel's epoch lives in its last stored message; whatever removes
///   that message starts a new epoch.
/// - **Node messages** are requests: `send_to_node` returns once the receiving node handed
///   the message to its handler, or [`BrokerError::UnknownNode`] when nobody listens under
///   that name (also while the receiver is reconnecting).
///
/// # Cancel safety
///
/// A publish is one conditional store: cancelling it may leave the publication stored or
/// not, never stored twice. Presence changes are one compare-and-set each.
///
/// # Handler calls
///
/// Each subscribed channel's publications, joins and leaves come from that channel's reader
/// task, in the order NATS delivered them, while a lock on the subscription table is held:
/// the handler must not block and must not call back into the broker. Channels are
/// independent: there is no order across them.
pub struct NatsBroker {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl NatsBroker {
    /// Connects, makes sure the stream and buckets exist, and starts the background tasks.
    /// Must be called inside a tokio runtime with the time driver enabled.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Internal`] when the config is invalid (a malformed URL, a bad prefix,
    /// an unreadable credentials file) or JetStream refuses the stream or buckets.
    /// [`BrokerError::Unavailable`] when NATS cannot be reached and
    /// [`wait_for_nats`](NatsConfig::wait_for_nats) is off.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing has started until it returns (the stream and buckets may have
    /// been created).
    pub async fn connect(config: NatsConfig) -> Result<Self, BrokerError> {
        config.validate()?;
        let addresses = config
            .url
            .split(',')
            .map(|url| url.trim().parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                BrokerError::Internal(format!("invalid nats url {}: {e}", config.redacted_url()))
            })?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut backoff = Backoff::new();
        let client = loop {
            let options = connect_options(&config, &addresses, events_tx.clone()).await?;
            match options.connect(addresses.clone()).await {
                Ok(client) => break client,
                Err(why) if config.wait_for_nats => {
                    let url = config.redacted_url();
                    tracing::warn!(url, why = %why, "waiting for nats");
                    tokio::time::sleep(backoff.next()).await;
                }
                Err(why) => {
                    let url = config.redacted_url();
                    return Err(BrokerError::Unavailable(format!(
                        "cannot reach nats at {url}: {why}"
                    )));
                }
            }
        };
        let js =
            jetstream::ContextBuilder::new().timeout(config.request_timeout).build(client.clone());
        let names = Names::new(&config.subject_prefix);
        let (stream, presence, registry) = ensure_storage(&js, &names, &config).await?;
        let shared = Arc::new(Shared {
            storage: RwLock::new(Storage { stream, presence, registry }),
            client,
            js,
            names,
            live: Live::default(),
            handler: HandlerSlot::default(),
            tops: Mutex::new(HashMap::new()),
            joined: Mutex::new(HashMap::new()),
            inbox: tokio::sync::Mutex::new(None),
            config,
        });
        let tasks = vec![
            spawn(&shared, |shared| async move { shared.watch_events(events).await }),
            spawn(&shared, |shared| async move { shared.heartbeat().await }),
        ];
        Ok(Self { shared, tasks })
    }

    /// The configuration this broker was connected with.
    pub fn config(&self) -> &NatsConfig {
        &self.shared.config
    }

    /// The name of the JetStream stream holding every channel's history, for inspection
    /// (`nats stream info`) and tests.
    pub fn stream_name(&self) -> String {
        self.shared.names.stream()
    }

    /// The subject `channel`'s publications are stored under, for inspection and tests.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Internal`] for an empty channel name.
    pub fn stored_subject(&self, channel: &str) -> Result<String, BrokerError> {
        Ok(self.shared.names.channel(channel)?.stored)
    }

    /// The core NATS subject carrying `channel`'s live publications, joins and leaves, for
    /// inspection (`nats sub`) and tests.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Internal`] for an empty channel name.
    pub fn live_subject(&self, channel: &str) -> Result<String, BrokerError> {
        Ok(self.shared.names.channel(channel)?.live)
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.live.abort_all();
        if let Ok(mut inbox) = self.shared.inbox.try_lock()
            && let Some((_, task)) = inbox.take()
        {
            task.abort();
        }
    }
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker")
            .field("config", &self.shared.config)
            .field("state", &self.shared.client.connection_state())
            .field("live", &self.shared.live)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Broker for NatsBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>) {
        *self.shared.handler.0.write().unwrap_or_else(PoisonError::into_inner) = Some(handler);
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.shared.check_connected()?;
        let names = self.shared.names.channel(channel)?;
        Live::subscribe(&self.shared, channel, &names.live).await?;
        // Kept alive past its TTL from now on, not only from the next heartbeat.
        if let Err(e) = self.shared.watch(channel).await {
            tracing::debug!(channel, error = %e, "marking the channel watched failed");
        }
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.shared.live.unsubscribe(channel);
        Ok(())
    }

    async fn publish(
        &self,
        channel: &str,
        data: Value,
        info: Option<Arc<ClientInfo>>,
        options: &StreamOptions,
    ) -> Result<StreamPosition, BrokerError> {
        self.shared.check_connected()?;
        let names = self.shared.names.channel(channel)?;
        let slot = self.shared.top_slot(channel);
        let mut top = slot.lock().await;
        let ttl = millis(options.history_ttl);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let last = match top.take() {
                Some(cached) => Some(cached),
                None => self.shared.last_stored(&names.stored).await?.map(|s| s.top()),
            };
            let kept = match &last {
                Some(last) => !self.shared.is_forgotten(&names, last, ttl).await?,
                None => false,
            };
            let (epoch, offset, expected) = match &last {
                Some(last) if kept => (last.epoch.clone(), last.offset + 1, last.sequence),
                other => (new_epoch(), 1, other.as_ref().map_or(0, |last| last.sequence)),
            };
            let publication =
                switchboard_broker::Publication { offset, data: data.clone(), info: info.clone() };
            let payload = Bytes::from(to_json(&publication)?);
            match self.shared.store(&names.stored, &epoch, offset, expected, payload).await? {
                Outcome::Accepted(sequence) => {
                    *top = Some(Top { sequence, offset, epoch: epoch.clone(), time_ms: now_ms() });
                    drop(top);
                    self.shared.trim(&names.stored, offset, options.history_size).await;
                    self.shared.forget_idle_tops();
                    return Ok(StreamPosition { offset, epoch });
                }
                Outcome::Conflict if attempts < MAX_ATTEMPTS => {}
                Outcome::Conflict => {
                    return Err(BrokerError::Unavailable(format!(
                        "publish on {channel:?} lost {MAX_ATTEMPTS} races for its offset"
                    )));
                }
            }
        }
    }

    async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        options: &StreamOptions,
    ) -> Result<History, BrokerError> {
        self.shared.check_connected()?;
        let names = self.shared.names.channel(channel)?;
        let ttl = millis(options.history_ttl);
        let top = self.shared.current_top(&names, ttl).await?;
        let position = StreamPosition { offset: top.offset, epoch: top.epoch.clone() };
        let size = u64::try_from(options.history_size).unwrap_or(u64::MAX);
        let incomplete =
            || History { position: position.clone(), publications: Vec::new(), complete: false };
        let empty =
            || History { position: position.clone(), publications: Vec::new(), complete: true };
        match &query.since {
            Some(since) => {
                if since.epoch != top.epoch || since.offset > top.offset {
                    return Ok(incomplete());
                }
                if since.offset == top.offset {
                    return Ok(empty());
                }
                let missed = top.offset - since.offset;
                let over_limit = query.limit.is_some_and(|limit| (limit as u64) < missed);
                if over_limit || size < missed {
                    return Ok(incomplete());
                }
            }
            None if query.limit == Some(0) || size == 0 => return Ok(empty()),
            None => {}
        }
        // Served as of `top`: what was stored since comes live, and a read that followed
        // it could be cut short by a `limit` that `top` was within.
        let wanted = match &query.since {
            Some(since) => top.offset - since.offset,
            None => query.limit.map_or(u64::MAX, |limit| limit as u64).min(size).min(top.offset),
        };
        let cap = self.shared.config.max_history_bytes;
        let walk = stored::Walk::new(&top, wanted, ttl, now_ms(), cap);
        let run = self.shared.read_back(&names.stored, &top, walk).await?;
        if query.since.is_some() && (run.len() as u64) < wanted {
            return Ok(incomplete());
        }
        let publications = run
            .into_iter()
            .map(|s| s.publication().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(History { position, publications, complete: true })
    }

    async fn join(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: JoinLeave,
    ) -> Result<(), BrokerError> {
        self.shared.check_connected()?;
        let announced = announce == JoinLeave::Announced;
        self.shared.join(channel, client, announced).await?;
        self.shared.joined().entry(channel.to_owned()).or_default().insert(client.id.clone());
        Ok(())
    }

    async fn leave(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: JoinLeave,
    ) -> Result<(), BrokerError> {
        // Forgotten first, whatever happens next: an entry this node no longer refreshes
        // expires, and its leave is announced then if NATS cannot be told now.
        {
            let mut joined = self.shared.joined();
            if let Some(clients) = joined.get_mut(channel) {
                clients.remove(&client.id);
                if clients.is_empty() {
                    joined.remove(channel);
                }
            }
        }
        self.shared.check_connected()?;
        self.shared.leave(channel, client, announce == JoinLeave::Announced).await
    }

    async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, BrokerError> {
        self.shared.check_connected()?;
        self.shared.present(channel).await
    }

    async fn presence_count(&self, channel: &str) -> Result<usize, BrokerError> {
        Ok(self.presence(channel).await?.len())
    }

    async fn listen_as(&self, node: &str) -> Result<(), BrokerError> {
        if !is_node_name(node) {
            return Err(BrokerError::Internal(format!("invalid node name {node:?}")));
        }
        self.shared.check_connected()?;
        let mut inbox = self.shared.inbox.lock().await;
        if let Some((name, _)) = &*inbox {
            if name == node {
                return Ok(());
            }
            return Err(BrokerError::Internal(format!("already listening as {name:?}")));
        }
        let mut subscriber = self
            .shared
            .client
            .subscribe(self.shared.names.inbox(node))
            .await
            .map_err(unavailable)?;
        self.shared.flush().await?;
        let shared = Arc::clone(&self.shared);
        let task = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                if let Some(handler) = shared.handler.get() {
                    handler.on_node_message(message.payload);
                }
                if let Some(reply) = message.reply {
                    // The sender learns the message was handed over; if this is lost it
                    // times out and reports `Unavailable`, never a second delivery.
                    drop(shared.client.publish(reply, Bytes::new()).await);
                }
            }
        });
        *inbox = Some((node.to_owned(), task.abort_handle()));
        Ok(())
    }

    async fn send_to_node(&self, node: &str, message: Bytes) -> Result<(), BrokerError> {
        if !is_node_name(node) {
            return Err(BrokerError::UnknownNode(node.to_owned()));
        }
        self.shared.check_connected()?;
        let subject = self.shared.names.inbox(node);
        match self.shared.client.request(subject, message).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                Err(BrokerError::UnknownNode(node.to_owned()))
            }
            Err(e) => Err(unavailable(e)),
        }
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
        self.shared.check_connected()?;
        let registry = self.shared.storage().registry;
        let key = format!("n.{node}");
        if ttl.is_zero() {
            return registry.purge(&key).await.map_err(unavailable);
        }
        let record = NodeEntry { info: info.to_owned(), ttl_ms: millis(ttl) };
        registry.put(&key, Bytes::from(to_json(&record)?)).await.map_err(unavailable)?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, BrokerError> {
        self.shared.check_connected()?;
        let registry = self.shared.storage().registry;
        // The server's clock, not this node's: the time it stamps a fresh write with.
        registry.put(CLOCK_KEY, Bytes::new()).await.map_err(unavailable)?;
        let clock = registry.entry(CLOCK_KEY).await.map_err(unavailable)?;
        let now = clock.map_or_else(now_ms, |entry| stored::datetime_ms(entry.created));
        let mut keys = registry.keys().await.map_err(unavailable)?;
        let mut records = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(unavailable)?;
            let Some(name) = key.strip_prefix("n.") else { continue };
            let Some(entry) = registry.entry(&key).await.map_err(unavailable)? else { continue };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let Ok(record) = serde_json::from_slice::<NodeEntry>(&entry.value) else {
                tracing::warn!(node = name, "bad node record");
                continue;
            };
            let written = stored::datetime_ms(entry.created);
            if written.saturating_add(record.ttl_ms) > now {
                records.push(NodeRecord::new(name, record.info));
            } else {
                // Expired: gone for every reader, unless it was renewed meanwhile.
                drop(registry.purge_expect_revision(&key, Some(entry.revision)).await);
            }
        }
        Ok(records)
    }

    fn is_ready(&self) -> bool {
        self.shared.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// Everything the broker and its tasks share.
pub(crate) struct Shared {
    config: NatsConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    names: Names,
    /// Handles on the stream and buckets, made anew when they had to be created again.
    storage: RwLock<Storage>,
    live: Live,
    handler: HandlerSlot,
    /// Channel → the last message this node stored there, so the next publish needs no
    /// read; one lock per channel orders this node's publishers without racing each other.
    tops: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Top>>>>>,
    /// Channel → ids of this node's clients present there, refreshed by the heartbeat.
    joined: Mutex<HashMap<String, HashSet<String>>>,
    /// The node name this broker listens as, and the task reading its inbox.
    inbox: tokio::sync::Mutex<Option<(String, AbortHandle)>>,
}

/// The stream and buckets.
#[derive(Clone)]
pub(crate) struct Storage {
    stream: stream::Stream,
    presence: kv::Store,
    registry: kv::Store,
}

impl Shared {
    pub(crate) fn check_connected(&self) -> Result<(), BrokerError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(BrokerError::Unavailable(format!("nats connection is {state}"))),
        }
    }

    /// Waits until the server has read everything sent so far on this connection: a
    /// request nobody answers comes back "no responders" from the server itself, after it
    /// processed what came before it. (The client's own flush only writes the socket.)
    pub(crate) async fn flush(&self) -> Result<(), BrokerError> {
        let request = self.client.request(self.names.sync(), Bytes::new());
        match tokio::time::timeout(self.config.request_timeout, request).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(BrokerError::Unavailable("nats round trip timed out".into())),
        }
    }

    fn storage(&self) -> Storage {
        self.storage.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn top_slot(&self, channel: &str) -> Arc<tokio::sync::Mutex<Option<Top>>> {
        let mut tops = self.tops.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(tops.entry(channel.to_owned()).or_default())
    }

    /// Keeps the cache of tops bounded: past [`MAX_CACHED_TOPS`] channels, forgets the ones
    /// no publish is using.
    fn forget_idle_tops(&self) {
        let mut tops = self.tops.lock().unwrap_or_else(PoisonError::into_inner);
        if tops.len() > MAX_CACHED_TOPS {
            tops.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
    }

    /// Stores one message on `subject` unless another was stored there after `expected`.
    async fn store(
        &self,
        subject: &str,
        epoch: &str,
        offset: u64,
        expected: u64,
        payload: Bytes,
    ) -> Result<Outcome, BrokerError> {
        let message = jetstream::message::PublishMessage::build()
            .payload(payload)
            .header(stored::OFFSET_HEADER, offset.to_string().as_str())
            .header(stored::EPOCH_HEADER, epoch)
            .header(stored::PREVIOUS_HEADER, expected.to_string().as_str())
            .expected_last_subject_sequence(expected);
        let acked = match self.js.send_publish(subject.to_owned(), message).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        use jetstream::context::PublishErrorKind as Kind;
        match acked {
            Ok(ack) => Ok(Outcome::Accepted(ack.sequence)),
            Err(e) if e.kind() == Kind::WrongLastSequence => Ok(Outcome::Conflict),
            Err(e) if e.kind() == Kind::StreamNotFound => {
                // Deleted, or a server that lost its storage: make it again and let the
                // caller read the top anew. Its channels start new epochs, since their
                // last messages are gone.
                self.recreate_storage().await?;
                Ok(Outcome::Conflict)
            }
            Err(e) if e.kind() == Kind::MaxPayloadExceeded => {
                Err(BrokerError::Internal(format!("publication too large: {e}")))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn recreate_storage(&self) -> Result<(), BrokerError> {
        let (stream, presence, registry) =
            ensure_storage(&self.js, &self.names, &self.config).await?;
        *self.storage.write().unwrap_or_else(PoisonError::into_inner) =
            Storage { stream, presence, registry };
        self.forget_tops();
        Ok(())
    }

    /// Forgets every cached top: after a reconnection or a recreated stream, sequences
    /// remembered from before may mean something else now.
    fn forget_tops(&self) {
        self.tops.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Every `slack + 1` publications past `history_size`, drops the channel's older ones,
    /// keeping at least the last (it holds the top offset and epoch).
    async fn trim(&self, subject: &str, offset: u64, history_size: usize) {
        let keep = u64::try_from(history_size).unwrap_or(u64::MAX).max(1);
        let slack = (keep / 4).min(MAX_TRIM_SLACK);
        if offset <= keep || !offset.is_multiple_of(slack + 1) {
            return;
        }
        let purged = self.storage().stream.purge().filter(subject).keep(keep).await;
        if let Err(e) = purged {
            tracing::debug!(subject, error = %e, "trimming history failed");
        }
    }

    /// The channel's last stored message, if any.
    async fn last_stored(&self, subject: &str) -> Result<Option<stored::Message>, BrokerError> {
        let stream = self.storage().stream;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => stored::Message::parse(message).map(Some),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) if is_stream_missing(&e) => {
                self.recreate_storage().await?;
                Ok(None)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The run of publications ending at `top` that `walk` accepts, oldest first: from
    /// `top` back along each message's link to the one stored before it in the channel, one
    /// request each, until the walk is done or the link is gone (trimmed, purged, deleted).
    async fn read_back(
        &self,
        subject: &str,
        top: &Top,
        mut walk: stored::Walk,
    ) -> Result<Vec<stored::Message>, BrokerError> {
        let stream = self.storage().stream;
        let mut run = Vec::new();
        let mut next = Some(top.sequence);
        while let Some(sequence) = next.filter(|&sequence| sequence > 0 && !walk.is_done()) {
            let message = match stream.get_raw_message(sequence).await {
                Ok(message) if message.subject.as_str() == subject => message,
                Ok(_) => break,
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(unavailable(e)),
            };
            let message = stored::Message::parse(message)?;
            if !walk.take(&message) {
                break;
            }
            next = message.previous;
            run.push(message);
        }
        run.reverse();
        Ok(run)
    }

    /// Whether a channel whose last stored message is `last` is forgotten: that message is
    /// older than `ttl_ms` and no node keeps the channel watched.
    async fn is_forgotten(
        &self,
        names: &ChannelNames,
        last: &Top,
        ttl_ms: u64,
    ) -> Result<bool, BrokerError> {
        if !last.is_expired(ttl_ms, now_ms()) {
            return Ok(false);
        }
        let presence = self.storage().presence;
        let watched = presence.entry(&names.watch_key).await.map_err(unavailable)?;
        let watched_until = watched
            .filter(|entry| entry.operation == kv::Operation::Put)
            .and_then(|entry| std::str::from_utf8(&entry.value).ok()?.parse::<u64>().ok());
        Ok(watched_until.is_none_or(|until| until <= now_ms()))
    }

    /// Marks `channel` as watched by a subscribed node for a presence lifetime, so its
    /// stream outlives its TTL (as the in-memory broker keeps a subscribed channel).
    pub(crate) async fn watch(&self, channel: &str) -> Result<(), BrokerError> {
        let key = self.names.channel(channel)?.watch_key;
        let until = now_ms().saturating_add(millis(self.config.presence_lifetime()));
        let presence = self.storage().presence;
        presence.put(&key, Bytes::from(until.to_string())).await.map_err(unavailable)?;
        Ok(())
    }

    /// The channel's top, creating its stream (a marker at offset 0 under a new epoch) when
    /// it has none or it is forgotten ([`is_forgotten`](Self::is_forgotten)).
    async fn current_top(&self, names: &ChannelNames, ttl_ms: u64) -> Result<Top, BrokerError> {
        let subject = names.stored.as_str();
        for _ in 0..MAX_ATTEMPTS {
            let last = self.last_stored(subject).await?.map(|s| s.top());
            if let Some(last) = &last
                && !self.is_forgotten(names, last, ttl_ms).await?
            {
                return Ok(last.clone());
            }
            let epoch = new_epoch();
            let expected = last.as_ref().map_or(0, |last| last.sequence);
            if let Outcome::Accepted(sequence) =
                self.store(subject, &epoch, 0, expected, Bytes::new()).await?
            {
                if last.is_some() {
                    // What the expired stream held can never be served again.
                    let purged = self.storage().stream.purge().filter(subject).keep(1).await;
                    if let Err(e) = purged {
                        tracing::debug!(subject, error = %e, "dropping expired history failed");
                    }
                }
                return Ok(Top { sequence, offset: 0, epoch, time_ms: now_ms() });
            }
        }
        Err(BrokerError::Unavailable(format!("creating the stream {subject} kept racing")))
    }

    /// Reads connection events until the broker is dropped: after a reconnection or a
    /// dropped message every subscribed channel resyncs.
    async fn watch_events(&self, mut events: mpsc::UnboundedReceiver<Event>) {
        let mut was_down = false;
        while let Some(event) = events.recv().await {
            match event {
                Event::Disconnected => {
                    was_down = true;
                    tracing::warn!("nats connection lost");
                }
                Event::Connected if was_down => {
                    was_down = false;
                    tracing::info!("nats connection back");
                    self.forget_tops();
                    self.live.resync_all(self.handler.get().as_deref());
                    // A server back without its storage lost the stream and buckets: make
                    // them again, retrying while JetStream is still starting.
                    let mut backoff = Backoff::new();
                    while let Err(e) = self.recreate_storage().await {
                        tracing::warn!(error = %e, "checking the stream and buckets failed");
                        if self.check_connected().is_err() {
                            break;
                        }
                        tokio::time::sleep(backoff.next()).await;
                    }
                }
                Event::SlowConsumer(_) => {
                    tracing::warn!("nats dropped messages for a slow subscription");
                    self.live.resync_all(self.handler.get().as_deref());
                }
                other => tracing::debug!(event = %other, "nats event"),
            }
        }
    }

    /// Every heartbeat: refreshes this node's presence entries and sweeps expired ones on
    /// every channel it has clients in or is subscribed to. Runs until aborted; a failed
    /// sweep is retried on the next beat.
    async fn heartbeat(&self) {
        let mut every = tokio::time::interval(self.config.presence_heartbeat);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            if self.check_connected().is_err() {
                continue;
            }
            let mut work: HashMap<String, (Vec<String>, bool)> = self
                .joined()
                .iter()
                .map(|(channel, ids)| (channel.clone(), (ids.iter().cloned().collect(), false)))
                .collect();
            for channel in self.live.channels() {
                work.entry(channel).or_default().1 = true;
            }
            futures_util::stream::iter(work)
                .for_each_concurrent(
                    HEARTBEAT_CONCURRENCY,
                    |(channel, (ids, is_subscribed))| async move {
                        let watched =
                            if is_subscribed { self.watch(&channel).await } else { Ok(()) };
                        let refreshed = watched.and(self.refresh(&channel, &ids).await);
                        if let Err(e) = refreshed {
                            tracing::debug!(channel, error = %e, "presence heartbeat failed");
                        }
                    },
                )
                .await;
        }
    }

    fn joined(&self) -> MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.joined.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a conditional store ended.
enum Outcome {
    /// Stored at this stream sequence.
    Accepted(u64),
    /// Another message was stored on the subject first; nothing was stored.
    Conflict,
}

/// A node's record in the registry bucket.
#[derive(serde::Deserialize, serde::Serialize)]
struct NodeEntry {
    info: String,
    ttl_ms: u64,
}

/// Where events go, once set.
#[derive(Default)]
pub(crate) struct HandlerSlot(RwLock<Option<Arc<dyn BrokerHandler>>>);

impl HandlerSlot {
    pub(crate) fn get(&self) -> Option<Arc<dyn BrokerHandler>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Exponential backoff with jitter, for connecting.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_FIRST }
    }

    /// The next wait: doubling up to [`BACKOFF_MAX`], plus up to a quarter at random so
    /// nodes that lost NATS together do not all come back at the same instant.
    fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(BACKOFF_MAX);
        let jitter_ms = rand::rng().random_range(0..=millis(wait) / 4);
        wait + Duration::from_millis(jitter_ms)
    }
}

/// The client's options from the config; events go to `events`.
async fn connect_options(
    config: &NatsConfig,
    addresses: &[ServerAddr],
    events: mpsc::UnboundedSender<Event>,
) -> Result<ConnectOptions, BrokerError> {
    let mut options = ConnectOptions::new()
        .name("switchboard")
        .connection_timeout(config.connect_timeout)
        .request_timeout(Some(config.request_timeout))
        .ping_interval(PING_INTERVAL)
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            let exponent = u32::try_from(attempts.min(8)).unwrap_or(8);
            (BACKOFF_FIRST * 2u32.pow(exponent)).min(BACKOFF_MAX)
        })
        .require_tls(config.tls_required)
        .event_callback(move |event| {
            // The receiver goes with the broker; events after that have nobody to tell.
            drop(events.send(event));
            async {}
        });
    if let Some(path) = &config.credentials_file {
        options = options.credentials_file(path).await.map_err(|e| {
            BrokerError::Internal(format!("reading nats credentials {}: {e}", path.display()))
        })?;
    }
    // Credentials in the URL, as NATS URLs carry them: `user:password@`, or `token@`.
    let from_url = addresses.iter().find_map(|a| Some((a.username()?, a.password())));
    match from_url {
        Some((user, Some(password))) => {
            options = options.user_and_password(user.to_owned(), password.to_owned());
        }
        Some((token, None)) => options = options.token(token.to_owned()),
        None => {}
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(path) = &config.tls_root_certificates {
        options = options.add_root_certificates(path.clone());
    }
    Ok(options)
}

/// Creates or updates the stream and buckets this crate uses.
async fn ensure_storage(
    js: &jetstream::Context,
    names: &Names,
    config: &NatsConfig,
) -> Result<(stream::Stream, kv::Store, kv::Store), BrokerError> {
    let refused = |what: &str, e: &dyn fmt::Display| {
        let why = format!("creating the nats {what}: {e}");
        if why.contains("timed out") || why.contains("no responders") {
            BrokerError::Unavailable(why)
        } else {
            BrokerError::Internal(why)
        }
    };
    let stream_config = stream::Config {
        name: names.stream(),
        description: Some("Switchboard channel history".to_owned()),
        subjects: vec![names.stream_subjects()],
        republish: Some(stream::Republish {
            source: names.stream_subjects(),
            destination: names.live_subjects(),
            headers_only: false,
        }),
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        max_age: config.max_stream_age,
        max_bytes: i64::try_from(config.max_stream_bytes).ok().filter(|&b| b > 0).unwrap_or(-1),
        max_messages: -1,
        max_messages_per_subject: -1,
        max_consumers: -1,
        max_message_size: -1,
        num_replicas: config.replicas,
        allow_direct: true,
        ..stream::Config::default()
    };
    js.create_or_update_stream(stream_config).await.map_err(|e| refused("stream", &e))?;
    let stream = js.get_stream(names.stream()).await.map_err(|e| refused("stream", &e))?;
    // The buckets' streams are made here, as a key-value bucket's stream is made (one
    // value per key, rollups, direct reads), rather than by the client's bucket creation,
    // which first reads account details that servers before 2.10 describe differently.
    let bucket = |bucket: String, description: &str, max_age: Duration| stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_messages: -1,
        max_bytes: -1,
        max_message_size: -1,
        max_consumers: -1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..stream::Config::default()
    };
    let mut stores = Vec::new();
    for (name, description, max_age) in [
        (names.presence_bucket(), "Switchboard presence", PRESENCE_KEY_MAX_AGE),
        (names.registry_bucket(), "Switchboard node registry", Duration::ZERO),
    ] {
        let what = format!("bucket {name}");
        js.create_or_update_stream(bucket(name.clone(), description, max_age))
            .await
            .map_err(|e| refused(&what, &e))?;
        stores.push(js.get_key_value(name).await.map_err(|e| refused(&what, &e))?);
    }
    let (Some(registry), Some(presence)) = (stores.pop(), stores.pop()) else {
        unreachable!("two buckets were made")
    };
    Ok((stream, presence, registry))
}

fn is_stream_missing(error: &stream::LastRawMessageError) -> bool {
    match error.kind() {
        stream::LastRawMessageErrorKind::JetStream(e) => {
            e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
        }
        _ => false,
    }
}

fn spawn<F>(shared: &Arc<Shared>, task: impl FnOnce(Arc<Shared>) -> F) -> AbortHandle
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(task(Arc::clone(shared))).abort_handle()
}

pub(crate) fn unavailable(error: impl fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("nats: {error}"))
}

pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, BrokerError> {
    serde_json::to_string(value).map_err(|e| BrokerError::Internal(format!("encoding json: {e}")))
}

/// Milliseconds since the Unix epoch on this node's clock.
pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A fresh epoch: random, so a forgotten stream's positions never match the new one.
fn new_epoch() -> String {
    let mut rng = rand::rng();
    (0..EPOCH_LEN)
        .map(|_| char::from(EPOCH_ALPHABET[rng.random_range(0..EPOCH_ALPHABET.len())]))
        .collect()
}

/// Tries at a conditional store before giving up: each lost race means another publisher
/// stored one, so only a channel busier than this many concurrent publishers loses them all.
pub(crate) const MAX_ATTEMPTS: usize = 64;

/// Channels whose last top this node remembers before it forgets idle ones.
const MAX_CACHED_TOPS: usize = 10_000;

/// Publications past `history_size` a channel may hold before it is trimmed.
const MAX_TRIM_SLACK: u64 = 63;

/// Sweeps in flight at once per heartbeat.
const HEARTBEAT_CONCURRENCY: usize = 32;

/// A presence key nobody wrote for this long goes: every entry in it expired long ago.
/// Fixed, so that nodes with different heartbeats agree on the bucket's config.
const PRESENCE_KEY_MAX_AGE: Duration = Duration::from_secs(3600);

/// The registry key written to learn the server's time.
const CLOCK_KEY: &str = "clock";

/// How often the client pings the server; it gives the connection up (and reconnects,
/// resyncing every channel) after two unanswered pings, so a hung server is noticed within
/// about three of these.
const PING_INTERVAL: Duration = Duration::from_secs(2);

const BACKOFF_FIRST: Duration = Duration::from_millis(50);

/// The longest wait between connection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// 36^12 ≈ 4.7e18 epochs: a stream coming back under its old epoch is not a practical risk.
const EPOCH_LEN: usize = 12;

const EPOCH_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut backoff = Backoff::new();
        let first = backoff.next();
        assert!(first >= BACKOFF_FIRST && first <= BACKOFF_FIRST * 5 / 4);
        for _ in 0..20 {
            assert!(backoff.next() <= BACKOFF_MAX * 5 / 4);
        }
    }

    #[test]
    fn epochs_are_lowercase_alphanumerics() {
        let epoch = new_epoch();
        assert_eq!(epoch.len(), EPOCH_LEN);
        assert!(epoch.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{epoch}");
        assert_ne!(new_epoch(), new_epoch());
    }
}
