//! The Redis broker: Switchboard's backplane for several nodes.
//!
//! [`RedisBroker`] implements [`switchboard_broker::Broker`] on one Redis server (or a
//! managed Redis reachable at one URL). This crate owns everything Switchboard stores in
//! Redis and says to it: the key layout, the Lua scripts that assign offsets, keep history
//! and presence, and the pub/sub traffic between nodes. It is the only crate that talks to
//! Redis; it owns no client connections and no hub.
//!
//! - **Offsets and history** live in Redis and change only inside Lua scripts, so concurrent
//!   publishers on any number of nodes get consecutive offsets, and each script publishes
//!   its event before the next can run: pub/sub order is offset order.
//! - **Fan-out** uses one Redis subscription per channel with local subscribers, on one
//!   dedicated PubSub connection; one task reads it and calls the [`BrokerHandler`].
//! - **Node messages** ([`Broker::send_to_node`]) are a `PUBLISH` to the receiving node's
//!   inbox topic, which that node subscribes to on the same PubSub connection once it
//!   [listens](Broker::listen_as).
//! - **Presence** entries expire unless their node refreshes them, so a crashed node's
//!   clients leave within three [`presence_heartbeat`](RedisConfig::presence_heartbeat)s
//!   plus one more for the sweep that announces it.
//! - **Losses** are detected, never skipped: a lost PubSub connection or an offset gap calls
//!   [`BrokerHandler::on_resync`].
//! - **Outages** fail operations fast with [`BrokerError::Unavailable`] and reconnect in the
//!   background.
//!
//! # What is in Redis
//!
//! For channel `C` under [`key_prefix`](RedisConfig::key_prefix) `P` (default
//! `switchboard`); the `{P:C}` hash tag puts all of a channel's keys in one Redis Cluster
//! slot, though this crate does not speak the cluster protocol yet:
//!
//! - `{P:C}:meta`, hash: `epoch`, `top` (the last offset assigned), `ttl` (ms);
//! - `{P:C}:history`, list: publication JSON, oldest first, the last one at offset `top`;
//! - `{P:C}:presence`, hash: client id → `1` or `0` (whether to announce its leave when it
//!   expires) followed by the client's JSON;
//! - `{P:C}:presence-expiry`, sorted set: client ids scored by expiry, in Redis time (ms);
//! - `{P:C}:topic`, pub/sub: `p:<epoch>:<publication JSON>`, `j:<client JSON>` and
//!   `l:<client JSON>`, in the order the scripts ran.
//!
//! For node `N` (its name from [`Broker::listen_as`]: lowercase letters and digits), under a
//! hash tag of its own, `{P:node:N}`:
//!
//! - `{P:node:N}:inbox`, pub/sub: the messages sent to `N`, each exactly the bytes given to
//!   `send_to_node`, nothing added. Subscribed by node `N` only.
//!
//! The node registry ([`Broker::register_node`]), under the hash tag `{P:nodes}`:
//!
//! - `{P:nodes}:records`, hash: node name → the info it registered last;
//! - `{P:nodes}:expiry`, sorted set: node names scored by expiry, in Redis time (ms); listing
//!   the nodes first drops the expired ones.
//!
//! `meta` and `history` expire `history_ttl` after the last publication (`meta` lives on
//! while a node is subscribed); presence keys expire two entry lifetimes after the last
//! refresh; the registry's two keys two record lifetimes after the last registration. Nothing
//! else is stored, and nothing outside the prefix is touched.
//!
//! # For the integrator
//!
//! Connect once per process with [`RedisBroker::connect`] and hand the broker to the server
//! as `Arc<dyn Broker>`. Every node of a deployment needs the same URL and key prefix, and
//! client ids that are unique across nodes (presence is keyed by them).
//! [`BrokerHandler::on_resync`] means "this node may have missed publications on this
//! channel": after a Redis outage or restart it comes for every subscribed channel at once,
//! and the handler should make that channel's subscribers recover from history (with their
//! last position) rather than trust the live stream. Node names must be unique across the
//! deployment: a node sending to a name that two nodes listen under reaches both. [`Broker::is_ready`] is `false` while
//! either connection is down; operations then fail with [`BrokerError::Unavailable`], which
//! clients should see as a temporary error.
//!
//! ```no_run
//! use std::sync::Arc;
//! use switchboard_broker::{Broker, StreamOptions, Value};
//! use switchboard_broker_redis::{RedisBroker, RedisConfig};
//!
//! # async fn run() -> Result<(), switchboard_broker::BrokerError> {
//! let config = RedisConfig::new("redis://127.0.0.1:6379/0");
//! let broker = Arc::new(RedisBroker::connect(config).await?);
//! let options = StreamOptions::new(100, std::time::Duration::from_secs(300));
//! let position = broker.publish("chat:lobby", Value::from("hi"), None, &options).await?;
//! assert!(position.offset >= 1);
//! # Ok(())
//! # }
//! ```

mod commands;
mod config;
mod keys;
mod pubsub;
mod scripts;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use rand::Rng;
use redis::{AsyncConnectionConfig, Client};
use switchboard_broker::{
    Broker, BrokerError, BrokerHandler, ClientInfo, History, HistoryQuery, JoinLeave, NodeRecord,
    Publication, StreamOptions, StreamPosition, Value, is_node_name,
};
use tokio::task::AbortHandle;

pub use config::RedisConfig;

use crate::commands::{Commands, Failure};
use crate::keys::Keys;
use crate::pubsub::Subscriptions;
use crate::scripts::Scripts;

/// A [`Broker`] on Redis, for running several nodes behind one channel namespace.
///
/// Construct it with [`connect`](Self::connect) inside a tokio runtime: it spawns three
/// background tasks (command connection supervisor, PubSub reader, presence heartbeat),
/// which stop when the broker is dropped. Share it as `Arc<dyn Broker>`.
///
/// On top of the [`Broker`] guarantees:
///
/// - **Failures are prompt.** While Redis cannot be reached, `publish`, `history`, `join`,
///   `leave` and `presence` return [`BrokerError::Unavailable`] at once, or within
///   [`command_timeout`](RedisConfig::command_timeout) for a server that stopped answering.
///   A publish that timed out may still have been applied: `Unavailable` means "not known to
///   be done", never "done and dropped".
/// - **Resync after loss.** When the PubSub connection drops, the broker reconnects with
///   backoff, subscribes again and calls [`BrokerHandler::on_resync`] for every subscribed
///   channel, since publications in between were lost. An offset gap or a new epoch on a
///   live channel resyncs that channel before delivering the publication.
/// - **Honest epochs.** The epoch lives in Redis with the stream. A flushed or restarted
///   Redis, or a stream whose keys expired (`history_ttl` after its last publication, unless
///   some node stays subscribed), starts a new epoch: old positions never recover.
/// - **History** expires as a whole `history_ttl` after the channel's last publication (a
///   publication stays at least that long), where the in-memory broker ages out each one.
/// - **Node messages** are Redis pub/sub: `send_to_node` is one `PUBLISH` on the command
///   connection, and answers [`BrokerError::UnknownNode`] when Redis counted no receiver.
///   That is also the answer while the receiving node's PubSub connection is down (it is
///   reconnecting, or gone for good): the two cannot be told apart. A message in flight when
///   the receiver's connection breaks, or when Redis drops a subscriber for overrunning its
///   output buffer, is lost, and no `on_resync` says so. One node's sends to another, each
///   after the previous returned, arrive in order: Redis runs commands from one connection
///   in order and pushes to each subscriber in the order it ran them.
///
/// # Handler calls
///
/// Publications, joins and leaves all come from the PubSub reader task, this node's own
/// included, in the order Redis ran the scripts that made them. The handler runs while a
/// lock on the subscription table is held: it must not block, and must not call back into
/// the broker. Node messages come from the same task, with no lock held; the handler still
/// must not block there, since it holds up every channel's deliveries.
///
/// # Cancel safety
///
/// Every operation is one script run (or one subscription change). Cancelling a call may
/// leave it done or not done in Redis, never half done.
pub struct RedisBroker {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl RedisBroker {
    /// Connects the command and PubSub connections and starts the background tasks. Must be
    /// called inside a tokio runtime with the time driver enabled.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Internal`] when the config is invalid (a malformed URL, braces in the
    /// key prefix, a zero duration). [`BrokerError::Unavailable`] when Redis cannot be
    /// reached and [`wait_for_redis`](RedisConfig::wait_for_redis) is off.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing has started until it returns.
    pub async fn connect(config: RedisConfig) -> Result<Self, BrokerError> {
        config.validate()?;
        let client = Client::open(config.url.as_str()).map_err(|e| {
            BrokerError::Internal(format!("invalid redis url {}: {e}", config.redacted_url()))
        })?;
        if config.url.starts_with("rediss://") {
            install_crypto_provider();
        }
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout));
        let mut backoff = Backoff::new();
        let (connection, pubsub) = loop {
            let connected = async {
                let connection = commands::connect(&client, &connection_config)
                    .await
                    .map_err(|e| e.to_string())?;
                let pubsub = pubsub::connect(&client, config.connect_timeout).await?;
                Ok::<_, String>((connection, pubsub))
            };
            match connected.await {
                Ok(both) => break both,
                Err(why) if config.wait_for_redis => {
                    tracing::warn!(url = config.redacted_url(), why, "waiting for redis");
                    tokio::time::sleep(backoff.next()).await;
                }
                Err(why) => {
                    let url = config.redacted_url();
                    return Err(BrokerError::Unavailable(format!(
                        "cannot reach redis at {url}: {why}"
                    )));
                }
            }
        };
        let (subscriptions, stream) = Subscriptions::new(config.command_timeout, pubsub);
        let shared = Arc::new(Shared {
            keys: Keys::new(&config.key_prefix),
            scripts: Scripts::new(),
            commands: Commands::new(connection, config.command_timeout),
            subscriptions,
            handler: HandlerSlot::default(),
            joined: Mutex::new(HashMap::new()),
            lifetime_ms: millis(config.presence_lifetime()).to_string(),
            history_cap: config.max_history_bytes.to_string(),
            client,
            connection_config,
            config,
        });
        let tasks = vec![
            spawn(&shared, |shared| async move {
                shared.commands.supervise(&shared.client, &shared.connection_config).await;
            }),
            spawn(&shared, |shared| async move {
                let timeout = shared.config.connect_timeout;
                let subscriptions = &shared.subscriptions;
                let (client, handler, commands) =
                    (&shared.client, &shared.handler, &shared.commands);
                subscriptions.run(client, timeout, stream, handler, commands).await;
            }),
            spawn(&shared, |shared| async move { shared.heartbeat().await }),
        ];
        Ok(Self { shared, tasks })
    }

    /// The configuration this broker was connected with.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// The Redis pub/sub topic carrying `channel`'s publications, joins and leaves, for
    /// inspection (`redis-cli SUBSCRIBE`) and tests. Messages are `p:<epoch>:<publication
    /// JSON>`, `j:<client JSON>` and `l:<client JSON>`.
    pub fn topic(&self, channel: &str) -> String {
        self.shared.keys.topic(channel)
    }

    /// The Redis pub/sub topic of node `node`'s inbox, for inspection and tests. Its messages
    /// are the bytes sent with [`Broker::send_to_node`], as they are.
    pub fn inbox(&self, node: &str) -> String {
        self.shared.keys.inbox(node)
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroker")
            .field("config", &self.shared.config)
            .field("commands_up", &self.shared.commands.is_up())
            .field("subscriptions", &self.shared.subscriptions)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Broker for RedisBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>) {
        *self.shared.handler.0.write().unwrap_or_else(PoisonError::into_inner) = Some(handler);
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.shared.subscriptions.subscribe(channel, &self.shared.keys.topic(channel)).await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.shared.subscriptions.unsubscribe(&self.shared.keys.topic(channel)).await;
        Ok(())
    }

    async fn publish(
        &self,
        channel: &str,
        data: Value,
        info: Option<Arc<ClientInfo>>,
        options: &StreamOptions,
    ) -> Result<StreamPosition, BrokerError> {
        let keys = self.shared.keys.channel(channel);
        let data = to_json(&data)?;
        let info = info.as_ref().map(to_json).transpose()?.unwrap_or_default();
        let size = history_size(options).to_string();
        let ttl = millis(options.history_ttl).to_string();
        let candidate = new_epoch();
        let (epoch, offset): (String, u64) = self
            .shared
            .commands
            .eval(
                &self.shared.scripts.publish,
                &[&keys.meta, &keys.history],
                &[&keys.topic, &data, &info, &size, &ttl, &candidate, &self.shared.history_cap],
            )
            .await?;
        Ok(StreamPosition { offset, epoch })
    }

    async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        options: &StreamOptions,
    ) -> Result<History, BrokerError> {
        let keys = self.shared.keys.channel(channel);
        let ttl = millis(options.history_ttl).to_string();
        let size = history_size(options).to_string();
        let limit = query.limit.map_or(-1, |limit| i64::from(clamp_count(limit))).to_string();
        let (since_offset, since_epoch) = match &query.since {
            Some(since) => (since.offset.to_string(), since.epoch.as_str()),
            None => (String::new(), ""),
        };
        let candidate = new_epoch();
        let (epoch, top, complete, entries): (String, u64, i64, Vec<String>) = self
            .shared
            .commands
            .eval(
                &self.shared.scripts.history,
                &[&keys.meta, &keys.history],
                &[&candidate, &ttl, &size, &limit, &since_offset, since_epoch],
            )
            .await?;
        let publications = entries
            .iter()
            .map(|entry| {
                serde_json::from_str::<Publication>(entry).map(Arc::new).map_err(|e| {
                    BrokerError::Internal(format!("unreadable publication in history: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_history(&publications, top, query.since.as_ref())?;
        Ok(History {
            position: StreamPosition { offset: top, epoch },
            publications,
            complete: complete == 1,
        })
    }

    async fn join(
        &self,
        channel: &str,
        client: &ClientInfo,
        announce: JoinLeave,
    ) -> Result<(), BrokerError> {
        let keys = self.shared.keys.channel(channel);
        let json = to_json(client)?;
        let _: i64 = self
            .shared
            .commands
            .eval(
                &self.shared.scripts.join,
                &[&keys.presence, &keys.presence_expiry],
                &[
                    &keys.topic,
                    &client.id,
                    flag(announce == JoinLeave::Announced),
                    &json,
                    &self.shared.lifetime_ms,
                ],
            )
            .await?;
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
        // expires, and its leave is announced then if Redis cannot be told now.
        {
            let mut joined = self.shared.joined();
            if let Some(clients) = joined.get_mut(channel) {
                clients.remove(&client.id);
                if clients.is_empty() {
                    joined.remove(channel);
                }
            }
        }
        let keys = self.shared.keys.channel(channel);
        let _: i64 = self
            .shared
            .commands
            .eval(
                &self.shared.scripts.leave,
                &[&keys.presence, &keys.presence_expiry],
                &[&keys.topic, &client.id, flag(announce == JoinLeave::Announced)],
            )
            .await?;
        Ok(())
    }

    async fn presence(&self, channel: &str) -> Result<Vec<ClientInfo>, BrokerError> {
        let entries = self.shared.sweep(channel, &[], false, List::Entries).await?;
        let mut clients: Vec<ClientInfo> = entries
            .iter()
            .filter_map(|entry| {
                let json = entry.get(1..)?;
                serde_json::from_str(json)
                    .inspect_err(|e| tracing::warn!(channel, error = %e, "bad presence entry"))
                    .ok()
            })
            .collect();
        clients.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(clients)
    }

    async fn presence_count(&self, channel: &str) -> Result<usize, BrokerError> {
        let size = self.shared.sweep(channel, &[], false, List::Size).await?;
        Ok(size.first().and_then(|n| n.parse().ok()).unwrap_or(0))
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
        let [records, expiry] = self.shared.keys.registry();
        let ttl_ms = ttl.as_millis().max(u128::from(!ttl.is_zero())).to_string();
        let _: i64 = self
            .shared
            .commands
            .eval(&self.shared.scripts.register_node, &[&records, &expiry], &[node, info, &ttl_ms])
            .await?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, BrokerError> {
        let [records, expiry] = self.shared.keys.registry();
        let flat: Vec<String> = self
            .shared
            .commands
            .eval(&self.shared.scripts.nodes, &[&records, &expiry], &[])
            .await?;
        Ok(flat.chunks_exact(2).map(|pair| NodeRecord::new(&pair[0], &pair[1])).collect())
    }

    async fn listen_as(&self, node: &str) -> Result<(), BrokerError> {
        if !is_node_name(node) {
            return Err(BrokerError::Internal(format!("invalid node name {node:?}")));
        }
        self.shared.subscriptions.listen(&self.shared.keys.inbox(node)).await
    }

    async fn send_to_node(&self, node: &str, message: Bytes) -> Result<(), BrokerError> {
        if !is_node_name(node) {
            // Nobody can listen under it, and its inbox would not be a well-formed key.
            return Err(BrokerError::UnknownNode(node.to_owned()));
        }
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.shared.keys.inbox(node)).arg(message.as_ref());
        let receivers: i64 =
            self.shared.commands.query(&publish).await.map_err(|failure| match failure {
                Failure::Broker(e) => e,
                Failure::NoScript => BrokerError::Internal("PUBLISH answered NOSCRIPT".into()),
            })?;
        if receivers == 0 {
            return Err(BrokerError::UnknownNode(node.to_owned()));
        }
        Ok(())
    }

    fn is_ready(&self) -> bool {
        self.shared.commands.is_up() && self.shared.subscriptions.is_up()
    }
}

/// Everything the broker and its tasks share.
struct Shared {
    config: RedisConfig,
    client: Client,
    connection_config: AsyncConnectionConfig,
    keys: Keys,
    scripts: Scripts,
    commands: Commands,
    subscriptions: Subscriptions,
    handler: HandlerSlot,
    /// Channel → ids of this node's clients present there, refreshed by the heartbeat.
    joined: Mutex<HashMap<String, HashSet<String>>>,
    /// [`RedisConfig::presence_lifetime`] in milliseconds, as scripts take it.
    lifetime_ms: String,
    /// [`RedisConfig::max_history_bytes`], as the publish script takes it.
    history_cap: String,
}

impl Shared {
    /// Every heartbeat: refreshes this node's presence entries and sweeps expired ones on
    /// every channel it has clients in or is subscribed to, keeping subscribed streams
    /// alive. Runs until aborted; a failed sweep is retried on the next beat.
    async fn heartbeat(&self) {
        let mut every = tokio::time::interval(self.config.presence_heartbeat);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            let mut work: HashMap<String, (Vec<String>, bool)> = self
                .joined()
                .iter()
                .map(|(channel, ids)| (channel.clone(), (ids.iter().cloned().collect(), false)))
                .collect();
            for channel in self.subscriptions.channels() {
                work.entry(channel).or_default().1 = true;
            }
            futures_util::stream::iter(work)
                .for_each_concurrent(
                    HEARTBEAT_CONCURRENCY,
                    |(channel, (ids, is_subscribed))| async move {
                        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                        let swept = self.sweep(&channel, &ids, is_subscribed, List::Count).await;
                        if let Err(e) = swept {
                            tracing::debug!(channel, error = %e, "presence heartbeat failed");
                        }
                    },
                )
                .await;
        }
    }

    /// Runs the presence script on `channel`: drops expired entries (announcing their
    /// leaves), refreshes `ids`, keeps the stream alive when `keep_stream`, and returns what
    /// `list` asks for: the remaining entries, or one number (present or expired) as text.
    async fn sweep(
        &self,
        channel: &str,
        ids: &[&str],
        keep_stream: bool,
        list: List,
    ) -> Result<Vec<String>, BrokerError> {
        let keys = self.keys.channel(channel);
        let mode = match list {
            List::Entries => "list",
            List::Count => "count",
            List::Size => "size",
        };
        let mut args = vec![keys.topic.as_str(), &self.lifetime_ms, mode, flag(keep_stream)];
        args.extend_from_slice(ids);
        let key_names = [keys.presence.as_str(), &keys.presence_expiry, &keys.meta];
        match list {
            List::Entries => self.commands.eval(&self.scripts.presence, &key_names, &args).await,
            List::Count | List::Size => {
                let n: i64 = self.commands.eval(&self.scripts.presence, &key_names, &args).await?;
                Ok(vec![n.to_string()])
            }
        }
    }

    fn joined(&self) -> MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.joined.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the presence script returns.
#[derive(Clone, Copy, Debug)]
enum List {
    /// Everyone present.
    Entries,
    /// Only how many expired.
    Count,
    /// Only how many are present.
    Size,
}

/// Where events go, once set.
#[derive(Default)]
pub(crate) struct HandlerSlot(RwLock<Option<Arc<dyn BrokerHandler>>>);

impl HandlerSlot {
    pub(crate) fn get(&self) -> Option<Arc<dyn BrokerHandler>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Exponential backoff with jitter, for reconnecting.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self { next: BACKOFF_FIRST }
    }

    /// The next wait: doubling up to [`BACKOFF_MAX`], plus up to a quarter at random so
    /// nodes that lost Redis together do not all come back at the same instant.
    pub(crate) fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(BACKOFF_MAX);
        let jitter_ms = rand::rng().random_range(0..=millis(wait) / 4);
        wait + Duration::from_millis(jitter_ms)
    }

    pub(crate) fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}

/// Publications must come back as stored: consecutive offsets ending at `top`, starting
/// right after `since` when given. Anything else means the keys were changed behind the
/// broker's back, and serving it could hide a gap.
fn check_history(
    publications: &[Arc<Publication>],
    top: u64,
    since: Option<&StreamPosition>,
) -> Result<(), BrokerError> {
    let Some(first) = publications.first() else { return Ok(()) };
    let consecutive = publications.windows(2).all(|w| w[1].offset == w[0].offset + 1);
    let ends_at_top = publications.last().is_some_and(|last| last.offset == top);
    let starts_after_since = since.is_none_or(|since| first.offset == since.offset + 1);
    if consecutive && ends_at_top && starts_after_since {
        Ok(())
    } else {
        Err(BrokerError::Internal("history in redis does not match its top offset".into()))
    }
}

fn spawn<F>(shared: &Arc<Shared>, task: impl FnOnce(Arc<Shared>) -> F) -> AbortHandle
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(task(Arc::clone(shared))).abort_handle()
}

/// rustls needs a process-wide crypto provider; install ring's unless someone else already
/// installed one.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: some provider is installed.
        drop(rustls::crypto::ring::default_provider().install_default());
    }
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, BrokerError> {
    serde_json::to_string(value).map_err(|e| BrokerError::Internal(format!("encoding json: {e}")))
}

fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

/// Whole milliseconds, at least 1 (Redis deletes a key given a TTL of 0) and at most what
/// Lua and Redis both hold exactly.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).clamp(1, MAX_EXACT)
}

fn history_size(options: &StreamOptions) -> u32 {
    clamp_count(options.history_size)
}

/// Counts as scripts take them: a Redis list holds at most 2^32 - 1 entries anyway.
fn clamp_count(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// A fresh epoch: random, so a forgotten stream's positions never match the new one.
fn new_epoch() -> String {
    let mut rng = rand::rng();
    (0..EPOCH_LEN)
        .map(|_| char::from(EPOCH_ALPHABET[rng.random_range(0..EPOCH_ALPHABET.len())]))
        .collect()
}

/// The largest integer a Lua number (a double) holds exactly.
const MAX_EXACT: u64 = 1 << 53;

/// Sweeps in flight at once per heartbeat: enough to hide round trips, few enough not to
/// crowd out live traffic on the shared connection.
const HEARTBEAT_CONCURRENCY: usize = 32;

const BACKOFF_FIRST: Duration = Duration::from_millis(50);

/// The longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// 36^12 ≈ 4.7e18 epochs: a stream coming back under its old epoch is not a practical risk,
/// across any number of restarts and flushes.
const EPOCH_LEN: usize = 12;

/// Lowercase letters and digits: never a colon, which ends the epoch in topic messages.
const EPOCH_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

#[cfg(test)]
mod tests {
    use super::*;

    fn publications(offsets: &[u64]) -> Vec<Arc<Publication>> {
        offsets
            .iter()
            .map(|&offset| Arc::new(Publication { offset, data: Value::Null, info: None }))
            .collect()
    }

    #[test]
    fn history_must_be_consecutive_up_to_the_top() {
        let since = |offset| StreamPosition { offset, epoch: "e".to_owned() };
        assert!(check_history(&publications(&[]), 9, Some(&since(3))).is_ok());
        assert!(check_history(&publications(&[4, 5, 6]), 6, Some(&since(3))).is_ok());
        assert!(check_history(&publications(&[4, 5, 6]), 6, None).is_ok());
        assert!(check_history(&publications(&[4, 6]), 6, None).is_err(), "a hole");
        assert!(check_history(&publications(&[4, 5]), 6, None).is_err(), "short of the top");
        assert!(check_history(&publications(&[5, 6]), 6, Some(&since(3))).is_err(), "late start");
    }

    #[test]
    fn durations_become_positive_exact_milliseconds() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(300)), 300_000);
        assert_eq!(millis(Duration::MAX), MAX_EXACT);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let first = backoff.next();
        assert!(first >= BACKOFF_FIRST && first <= BACKOFF_FIRST * 5 / 4);
        for _ in 0..20 {
            assert!(backoff.next() <= BACKOFF_MAX * 5 / 4);
        }
        backoff.reset();
        assert!(backoff.next() <= BACKOFF_FIRST * 5 / 4);
    }

    #[test]
    fn epochs_are_lowercase_alphanumerics() {
        let epoch = new_epoch();
        assert_eq!(epoch.len(), EPOCH_LEN);
        assert!(epoch.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{epoch}");
        assert_ne!(new_epoch(), new_epoch());
    }
}
