//! The application's side: [`Client`], [`Subscription`] and what they report.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures_util::Stream;
use switchboard_proto::{
    ChannelRequest, ClientInfo, CommandKind, Empty, ErrorCode, HistoryRequest, HistoryResult,
    PresenceCountResult, PresenceResult, Publication, PublishRequest, PublishResult, RpcRequest,
    RpcResult, StreamPosition, Value,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::builder::ClientBuilder;
use crate::error::{DisconnectReason, Error};

/// A Switchboard connection that keeps itself alive: it reconnects with jittered backoff,
/// resubscribes with each channel's last position, and recovers what it missed.
///
/// Cheap to clone: clones share one connection, owned by a background task. The task
/// closes the connection when [`close`](Self::close) is called or when the last clone is
/// dropped.
///
/// ```no_run
/// use switchboard_client::{Client, SubscriptionEvent};
///
/// # async fn run() -> Result<(), switchboard_client::Error> {
/// let client = Client::builder("ws://127.0.0.1:8080/ws").build()?;
/// let mut lobby = client.subscribe("chat:lobby").await?;
/// client.publish("chat:lobby", serde_json::json!({"text": "hello"})).await?;
/// while let Some(event) = lobby.recv().await {
///     if let SubscriptionEvent::Publication(p) = event {
///         println!("{}: {}", p.offset, p.data);
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    ops: mpsc::UnboundedSender<Op>,
    state: watch::Receiver<StateChange>,
    next_subscription: Arc<AtomicU64>,
}

impl Client {
    /// Options for a client connecting to `url` (`ws://` or `wss://`, usually ending in
    /// `/ws`).
    ///
    /// ```
    /// let builder = switchboard_client::Client::builder("ws://127.0.0.1:8080/ws");
    /// # drop(builder);
    /// ```
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url.into())
    }

    pub(crate) fn new(ops: mpsc::UnboundedSender<Op>, state: watch::Receiver<StateChange>) -> Self {
        Self { ops, state, next_subscription: Arc::new(AtomicU64::new(1)) }
    }

    /// The connection's current state and why it is in it.
    ///
    /// ```no_run
    /// # fn f(client: &switchboard_client::Client) {
    /// use switchboard_client::ConnectionState;
    /// if client.state().state == ConnectionState::Closed {
    ///     eprintln!("stopped: {:?}", client.state().reason);
    /// }
    /// # }
    /// ```
    pub fn state(&self) -> StateChange {
        self.state.borrow().clone()
    }

    /// A receiver of state changes. A `watch` channel: a reader that falls behind sees the
    /// latest state, not every step; [`StateChange::connections`] counts connections so a
    /// reader can tell that it missed a reconnection.
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) {
    /// let mut states = client.state_changes();
    /// while states.changed().await.is_ok() {
    ///     let change = states.borrow_and_update().clone();
    ///     eprintln!("{:?} {:?}", change.state, change.reason);
    /// }
    /// # }
    /// ```
    pub fn state_changes(&self) -> watch::Receiver<StateChange> {
        self.state.clone()
    }

    /// Waits until the client is connected (the server answered `connect`).
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
    /// use std::time::Duration;
    /// tokio::time::timeout(Duration::from_secs(5), client.wait_connected())
    ///     .await
    ///     .map_err(|_| switchboard_client::Error::Timeout(Duration::from_secs(5)))??;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the client closes instead.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches the state.
    pub async fn wait_connected(&self) -> Result<(), Error> {
        let mut state = self.state.clone();
        let reached = state
            .wait_for(|s| matches!(s.state, ConnectionState::Connected | ConnectionState::Closed))
            .await
            .map_err(|_| Error::Closed)?;
        match reached.state {
            ConnectionState::Connected => Ok(()),
            _ => Err(Error::Closed),
        }
    }

    /// Subscribes to `channel`: resolves once the server confirmed it. Publications follow
    /// on the returned [`Subscription`], which the client keeps subscribed across
    /// reconnections, recovering what it missed from the channel's history.
    ///
    /// While disconnected, the subscribe waits for the next connection.
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
    /// let mut sub = client.subscribe("news").await?;
    /// while let Some(event) = sub.recv().await {
    ///     println!("{event:?}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Command`] when the server refuses (`permission_denied`,
    /// `unknown_namespace`, …); [`Error::AlreadySubscribed`] when this client already
    /// has a subscription to the channel; [`Error::Closed`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it resolves cancels the subscription (the
    /// client unsubscribes if the server had already accepted it).
    pub async fn subscribe(&self, channel: impl Into<String>) -> Result<Subscription, Error> {
        self.subscribe_with(channel.into(), None).await
    }

    /// Subscribes to `channel` recovering from `since`, a position stored from an earlier
    /// [`Subscription::position`] (in another process, say). The first event is
    /// [`SubscriptionEvent::Recovered`]: with `recovered: true`, every publication after
    /// `since` follows in order; with `false`, the gap could not be filled and the
    /// application should resynchronise.
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
    /// use switchboard_client::StreamPosition;
    /// let stored = StreamPosition { offset: 41, epoch: "b3e1f0a9".into() };
    /// let sub = client.subscribe_since("chat:lobby", stored).await?;
    /// # drop(sub);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    ///
    /// # Cancel safety
    ///
    /// As [`subscribe`](Self::subscribe).
    pub async fn subscribe_since(
        &self,
        channel: impl Into<String>,
        since: StreamPosition,
    ) -> Result<Subscription, Error> {
        self.subscribe_with(channel.into(), Some(since)).await
    }

    async fn subscribe_with(
        &self,
        channel: String,
        since: Option<StreamPosition>,
    ) -> Result<Subscription, Error> {
        let channel: Arc<str> = Arc::from(channel);
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed);
        let (events, rx) = mpsc::unbounded_channel();
        let (done, reply) = oneshot::channel();
        let op = Op::Subscribe { channel: Arc::clone(&channel), id, since, events, done };
        self.ops.send(op).map_err(|_| Error::Closed)?;
        reply.await.map_err(|_| Error::Closed)??;
        Ok(Subscription { channel, id, rx, position: None, ops: self.ops.downgrade() })
    }

    /// Leaves `channel`: its [`Subscription`] stream ends. Does nothing for a channel this
    /// client is not subscribed to. Dropping the `Subscription` does the same without
    /// waiting.
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
    /// client.unsubscribe("news").await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`]; [`Error::Timeout`] when the server does not answer.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the unsubscription happens whether or not the future is polled to the
    /// end.
    pub async fn unsubscribe(&self, channel: impl Into<String>) -> Result<(), Error> {
        let (done, reply) = oneshot::channel();
        let op = Op::Unsubscribe { channel: Arc::from(channel.into()), done };
        self.ops.send(op).map_err(|_| Error::Closed)?;
        reply.await.map_err(|_| Error::Closed)?
    }

    /// Publishes `data` to `channel`; resolves with the server's acknowledgement: the
    /// publication's offset and epoch. The client need not be subscribed to the channel.
    ///
    /// While disconnected, the publish waits in a bounded queue and is sent, in order with
    /// other queued commands, after reconnecting (see
    /// [`publish_queue`](ClientBuilder::publish_queue)).
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
    /// let ack = client.publish("chat:lobby", serde_json::json!({"text": "hi"})).await?;
    /// println!("stored at {} in epoch {}", ack.offset, ack.epoch);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Command`] when the server refuses; [`Error::Timeout`] when the
    /// acknowledgement does not come in time and [`Error::Disconnected`] when the
    /// connection drops first (either way the publish may have happened: retrying may
    /// publish twice); [`Error::NotConnected`] or [`Error::QueueFull`] while disconnected;
    /// [`Error::MessageTooLarge`]; [`Error::Closed`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the publish is written to the connection cancels it
    /// (a queued publish is skipped); after that, it may still happen.
    pub async fn publish(
        &self,
        channel: impl Into<String>,
        data: impl Into<Value>,
    ) -> Result<PublishAck, Error> {
        let kind =
            CommandKind::Publish(PublishRequest { channel: channel.into(), data: data.into() });
        let result: PublishResult = self.request(kind).await?;
        Ok(PublishAck { offset: result.offset, epoch: result.epoch })
    }

    /// Lists the connections subscribed to `channel`, on every server node.
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
    /// for who in client.presence("chat:lobby").await? {
    ///     println!("{} ({:?})", who.id, who.user);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Command`] (`permission_denied` when the namespace has no presence), and the
    /// connection errors of [`publish`](Self::publish) except [`Error::Disconnected`]: a read
    /// cut off by a disconnection is sent again.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the reply is discarded.
    pub async fn presence(&self, channel: impl Into<String>) -> Result<Vec<ClientInfo>, Error> {
        let kind = CommandKind::Presence(ChannelRequest { channel: channel.into() });
        let result: PresenceResult = self.request(kind).await?;
        Ok(result.clients)
    }

    /// How many connections are subscribed to `channel`, on every node, without listing
    /// them (protocol §3, `presence_count`). Errors as [`presence`](Self::presence).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the reply is discarded.
    pub async fn presence_count(&self, channel: impl Into<String>) -> Result<u64, Error> {
        let kind = CommandKind::PresenceCount(ChannelRequest { channel: channel.into() });
        let result: PresenceCountResult = self.request(kind).await?;
        Ok(result.count)
    }

    /// Calls `method` of the application's backend with `data`, through the server
    /// (protocol §3, `rpc`; the server's `rpc_proxy`, `docs/hooks.md`): the backend's answer.
    ///
    /// Like a publish, a call is queued while disconnected (as the builder's
    /// [`publish_queue`](crate::ClientBuilder::publish_queue) says) and not sent again when
    /// the connection is lost after it was sent: the backend may have carried it out.
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
    /// let status = client.rpc("order.status", serde_json::json!({"order": 1042})).await?;
    /// println!("{status}");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Command`] with `bad_request` (an empty method, one over 128 bytes, a server
    /// without `rpc_proxy`), the backend's own refusal (its code and message), or
    /// `unavailable` (temporary: the backend failed or did not answer in time); the
    /// connection errors of [`publish`](Self::publish).
    ///
    /// # Cancel safety
    ///
    /// Cancelling before the call is written cancels it; after, the reply is discarded.
    pub async fn rpc(&self, method: impl Into<String>, data: Value) -> Result<Value, Error> {
        let kind = CommandKind::Rpc(RpcRequest { method: method.into(), data });
        let result: RpcResult = self.request(kind).await?;
        Ok(result.data)
    }

    /// Reads `channel`'s history: the newest `limit` publications, or with `since` every
    /// publication after that position (`complete: false` and none when the gap is too
    /// large or the epoch changed). Oldest first.
    ///
    /// A history larger than one reply comes from the server in pages (`docs/protocol.md`,
    /// `history`); this reads them all and returns them as one result, with `more` false.
    /// Should the stream lose what the next page needed in between (trimmed, or a new
    /// epoch), the result holds the pages read so far with `complete: Some(false)`.
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
    /// let last_ten = client.history("chat:lobby", Some(10), None).await?;
    /// for p in &last_ten.publications {
    ///     println!("{} {}", p.offset, p.data);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`presence`](Self::presence) (`permission_denied` when the namespace keeps no
    /// history).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the reply is discarded.
    pub async fn history(
        &self,
        channel: impl Into<String>,
        limit: Option<u32>,
        since: Option<StreamPosition>,
    ) -> Result<HistoryResult, Error> {
        let channel = channel.into();
        let request = HistoryRequest { channel: channel.clone(), limit, since };
        let asked_since = request.since.is_some();
        let mut result: HistoryResult = self.request(CommandKind::History(request)).await?;
        let wanted = limit.map_or(usize::MAX, |limit| limit as usize);
        while result.more
            && let Some(next) = result.next.take()
        {
            // Without a limit: a limit would refuse the page outright once newer
            // publications pushed the gap past it. What arrived since the first page is cut
            // off below instead.
            let request =
                HistoryRequest { channel: channel.clone(), limit: None, since: Some(next) };
            let page: HistoryResult = self.request(CommandKind::History(request)).await?;
            let lost = page.complete == Some(false) && !page.more;
            result.publications.extend(page.publications);
            (result.offset, result.epoch, result.more, result.next) =
                (page.offset, page.epoch, page.more, page.next);
            if lost {
                result.complete = Some(false);
                break;
            }
            result.complete = asked_since.then_some(true);
            if result.publications.len() >= wanted {
                result.publications.truncate(wanted);
                (result.more, result.next) = (false, None);
            }
        }
        Ok(result)
    }

    /// A round trip to the server (the `ping` command): proves it is alive and reading.
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
    /// let started = std::time::Instant::now();
    /// client.ping().await?;
    /// println!("rtt {:?}", started.elapsed());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`presence`](Self::presence).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn ping(&self) -> Result<(), Error> {
        let _: Empty = self.request(CommandKind::Ping(Empty {})).await?;
        Ok(())
    }

    /// Closes the connection (close code 1000) and stops reconnecting. Every subscription
    /// stream ends; queued and unanswered commands fail with [`Error::Closed`]. Resolves
    /// once the background task has finished; closing a closed client does nothing.
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) {
    /// client.close().await;
    /// assert_eq!(client.state().state, switchboard_client::ConnectionState::Closed);
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the client closes whether or not the future is polled to the end.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.ops.send(Op::Close { done }).is_ok() {
            let _ = finished.await;
        }
        // The task may have stopped by itself (a `stop` advice): then the state says so.
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| s.state == ConnectionState::Closed).await;
    }

    async fn request<T: serde::de::DeserializeOwned>(&self, kind: CommandKind) -> Result<T, Error> {
        let (done, reply) = oneshot::channel();
        self.ops.send(Op::Request { kind, done }).map_err(|_| Error::Closed)?;
        let value = reply.await.map_err(|_| Error::Closed)??;
        serde_json::from_value(value).map_err(|e| Error::BadReply(e.to_string()))
    }
}

/// The server's acknowledgement of a publish.
///
/// ```
/// use switchboard_client::PublishAck;
/// let ack = PublishAck { offset: 42, epoch: "b3e1f0a9".into() };
/// assert_eq!(ack.position().offset, 42);
/// ```
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct PublishAck {
    /// The publication's offset in the channel's stream.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: String,
}

impl PublishAck {
    /// The publication's position.
    ///
    /// ```
    /// use switchboard_client::PublishAck;
    /// let ack = PublishAck { offset: 7, epoch: "e1".into() };
    /// assert_eq!(ack.position().epoch, "e1");
    /// ```
    pub fn position(&self) -> StreamPosition {
        StreamPosition { offset: self.offset, epoch: self.epoch.clone() }
    }
}

/// One channel's events, as a [`Stream`]. Dropping it unsubscribes.
///
/// The client keeps the subscription across reconnections: after each one it subscribes
/// again with the last position it received and delivers what was missed, in order and
/// without duplicates, before live publications.
///
/// Events are buffered without bound between the connection and this stream (protocol
/// §10: the connection is read continuously so the server never sees a slow consumer);
/// read it steadily.
///
/// ```no_run
/// use futures_util::StreamExt;
/// # async fn f(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
/// let mut sub = client.subscribe("chat:lobby").await?;
/// while let Some(event) = sub.next().await {
///     println!("{event:?} at {:?}", sub.position());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Subscription {
    channel: Arc<str>,
    id: u64,
    rx: mpsc::UnboundedReceiver<Delivery>,
    position: Option<StreamPosition>,
    ops: mpsc::WeakUnboundedSender<Op>,
}

impl Subscription {
    /// The channel.
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) -> Result<(), switchboard_client::Error> {
    /// let sub = client.subscribe("news").await?;
    /// assert_eq!(sub.channel(), "news");
    /// # Ok(())
    /// # }
    /// ```
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The stream position of the last event taken from this stream: store it to resume
    /// later with [`Client::subscribe_since`]. `None` before the first event.
    ///
    /// ```no_run
    /// # async fn f(mut sub: switchboard_client::Subscription) {
    /// while let Some(_event) = sub.recv().await {
    ///     let resume_from = sub.position();
    ///     # drop(resume_from);
    /// }
    /// # }
    /// ```
    pub fn position(&self) -> Option<StreamPosition> {
        self.position.clone()
    }

    /// The next event; `None` once the subscription ended (unsubscribed, or the client
    /// closed). The same as `StreamExt::next`, without needing the trait.
    ///
    /// ```no_run
    /// # async fn f(mut sub: switchboard_client::Subscription) {
    /// while let Some(event) = sub.recv().await {
    ///     println!("{event:?}");
    /// }
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event is taken only when the future resolves with it.
    pub async fn recv(&mut self) -> Option<SubscriptionEvent> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<SubscriptionEvent>> {
        loop {
            match ready!(self.rx.poll_recv(cx)) {
                None => return Poll::Ready(None),
                Some(Delivery::Position(position)) => self.position = Some(position),
                Some(Delivery::Event(event)) => {
                    let offset = match &event {
                        SubscriptionEvent::Publication(p) => Some(p.offset),
                        SubscriptionEvent::Undecodable { offset, .. } => Some(*offset),
                        _ => None,
                    };
                    if let (Some(offset), Some(position)) = (offset, self.position.as_mut()) {
                        position.offset = offset;
                    }
                    return Poll::Ready(Some(event));
                }
            }
        }
    }
}

impl Stream for Subscription {
    type Item = SubscriptionEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_event(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(ops) = self.ops.upgrade() {
            let _ = ops.send(Op::Forget { channel: Arc::clone(&self.channel), id: self.id });
        }
    }
}

/// What a [`Subscription`] delivers.
///
/// ```
/// use switchboard_client::SubscriptionEvent;
///
/// fn handle(event: SubscriptionEvent) {
///     match event {
///         SubscriptionEvent::Publication(p) => println!("{}: {}", p.offset, p.data),
///         SubscriptionEvent::Recovered { recovered: false } => println!("gap: resync"),
///         SubscriptionEvent::Unsubscribed { code, reason } => println!("ended: {code} {reason}"),
///         _ => {}
///     }
/// }
/// # handle(SubscriptionEvent::Recovered { recovered: true });
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SubscriptionEvent {
    /// A publication, in offset order, never twice.
    Publication(Publication),
    /// A connection subscribed to the channel (namespaces with join/leave announcements).
    Join(ClientInfo),
    /// A connection left the channel.
    Leave(ClientInfo),
    /// On a channel too large for a join or leave each (protocol §4, `presence_count`): the
    /// joins and leaves since the last announcement, summed, and the channel's presence
    /// count when the server could read it.
    PresenceCount {
        /// Connections present on the channel, on every node.
        count: Option<u64>,
        /// Joins since the last announcement.
        joined: u64,
        /// Leaves since the last announcement.
        left: u64,
    },
    /// The client subscribed again with `since` (after a reconnection, or the first time
    /// with [`Client::subscribe_since`]). With `recovered: true` the missed publications
    /// follow, then live ones, with no gap. With `false` the gap could not be filled
    /// (history too short or expired, or the stream restarted under a new epoch): the
    /// application should resynchronise its state; publications resume from the stream's
    /// current position. A recovery too large for one reply is read in pages (protocol
    /// §3, recovery in pages) before this event: it reports the whole recovery.
    Recovered {
        /// Whether every missed publication was recovered.
        recovered: bool,
    },
    /// The publication at `offset` arrived but its data could not be decoded (JSON nested
    /// deeper than 128 levels, say): it takes its place in the stream, and
    /// [`Subscription::position`] moves past it, so the subscription goes on instead of
    /// stalling on it. In MessagePack, every publication of a reply that cannot be read is
    /// reported so.
    Undecodable {
        /// The publication's offset.
        offset: u64,
        /// Why it could not be decoded.
        reason: String,
    },
    /// The server ended the subscription for good, or refused to restore it; the stream
    /// ends after this. (Temporary refusals are retried by the client.)
    Unsubscribed {
        /// The error code.
        code: ErrorCode,
        /// Why, for humans.
        reason: String,
    },
}

/// Where the connection is in its lifecycle.
///
/// A client starts `Connecting`; each successful attempt becomes `Connected`. A lost
/// connection reports `Disconnected` (with the reason), then `Reconnecting` (with the delay
/// before the next attempt), then `Connecting` again. A failed attempt goes straight to
/// `Reconnecting`. `Closed` is final.
///
/// ```
/// use switchboard_client::ConnectionState;
/// assert!(ConnectionState::Closed.is_final());
/// assert!(!ConnectionState::Reconnecting.is_final());
/// ```
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum ConnectionState {
    /// An attempt is under way: TCP, TLS, the opening handshake, then `connect`.
    Connecting,
    /// The server answered `connect`; commands flow.
    Connected,
    /// The connection was just lost; a reconnection follows unless the reason says stop.
    Disconnected,
    /// Waiting before the next attempt.
    Reconnecting,
    /// Stopped for good: by [`Client::close`], or because the server said not to
    /// reconnect (refused credentials, close codes 44xx).
    Closed,
}

impl ConnectionState {
    /// Whether no other state can follow.
    ///
    /// ```
    /// assert!(switchboard_client::ConnectionState::Closed.is_final());
    /// ```
    pub fn is_final(self) -> bool {
        self == ConnectionState::Closed
    }
}

/// A state with the reason for it.
///
/// ```no_run
/// # fn f(client: &switchboard_client::Client) {
/// let change = client.state();
/// if let Some(reason) = &change.reason {
///     eprintln!("{:?} because {reason} (advice {:?})", change.state, reason.advice());
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StateChange {
    /// The new state.
    pub state: ConnectionState,
    /// Why the last connection or attempt ended: set for `Disconnected`, `Reconnecting` and
    /// `Closed`, and kept through the `Connecting` that follows.
    pub reason: Option<DisconnectReason>,
    /// For `Reconnecting`: how long until the next attempt.
    pub retry_in: Option<Duration>,
    /// How many connections have been established so far (1 after the first `Connected`).
    pub connections: u64,
    /// When the state changed.
    pub at: Instant,
}

impl StateChange {
    pub(crate) fn new(state: ConnectionState) -> Self {
        Self { state, reason: None, retry_in: None, connections: 0, at: Instant::now() }
    }
}

/// A request from a handle to the background task.
#[derive(Debug)]
pub(crate) enum Op {
    Subscribe {
        channel: Arc<str>,
        id: u64,
        since: Option<StreamPosition>,
        events: mpsc::UnboundedSender<Delivery>,
        done: oneshot::Sender<Result<(), Error>>,
    },
    Unsubscribe {
        channel: Arc<str>,
        done: oneshot::Sender<Result<(), Error>>,
    },
    /// A [`Subscription`] was dropped.
    Forget {
        channel: Arc<str>,
        id: u64,
    },
    Request {
        kind: CommandKind,
        done: oneshot::Sender<Result<Value, Error>>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// What the task sends a [`Subscription`]: events, and the position they continue from.
#[derive(Debug)]
pub(crate) enum Delivery {
    Event(SubscriptionEvent),
    Position(StreamPosition),
}
