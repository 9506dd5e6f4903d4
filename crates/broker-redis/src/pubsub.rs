//! Fan-out: one Redis subscription per channel with local subscribers, on one dedicated
//! PubSub connection, read by one task that calls the handler.
//!
//! # Messages on a channel's topic
//!
//! Scripts publish three kinds, each a one-letter tag, a colon and a payload:
//!
//! - `p:<epoch>:<publication JSON>`: a publication (`{"offset":…,"data":…,"info":…}`) in
//!   stream epoch `<epoch>` (lowercase letters and digits, never a colon);
//! - `j:<client JSON>`: a join (`{"client":…,"user":…,"info":…}`);
//! - `l:<client JSON>`: a leave.
//!
//! Anything else is logged and dropped; a dropped publication shows up as an offset gap.
//!
//! # The node's inbox
//!
//! Once the node listens under a name, the same connection is subscribed to that node's inbox
//! topic, whose messages are the raw bytes other nodes sent, handed to `on_node_message` as
//! they are. It is subscribed again after a reconnect like every channel, but it is not a
//! channel: nothing there is tracked or resynced, and what was sent while the connection was
//! down is lost.
//!
//! # Loss detection
//!
//! Redis PUB/SUB is at-most-once, and loses messages only around a broken connection (a
//! network failure, a restart, a subscriber killed for overrunning its output buffer). After
//! reconnecting, the task subscribes to every channel again and calls `on_resync` for each.
//! As a second line, it tracks the last epoch and offset delivered per channel: a jump of
//! more than one, or another epoch, calls `on_resync` before the publication is delivered; a
//! repeated or older offset is dropped, so `on_publication` offsets always increase.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::Client;
use redis::aio::{PubSub, PubSubSink, PubSubStream};
use switchboard_broker::{BrokerError, BrokerHandler, ClientInfo, Publication};

use crate::HandlerSlot;
use crate::commands::{Commands, unavailable};

/// This node's subscriptions and the PubSub connection they live on.
pub(crate) struct Subscriptions {
    /// Serializes subscription changes, so `SUBSCRIBE` and `UNSUBSCRIBE` reach Redis in the
    /// order the map changed. Holds the sink while the connection is up.
    control: tokio::sync::Mutex<Option<PubSubSink>>,
    /// Topic → subscribed channel. The reader delivers only topics in here, under this
    /// lock, so nothing is delivered once `unsubscribe` has returned.
    topics: Mutex<HashMap<String, Tracked>>,
    /// This node's inbox topic, once it listens: set once, then subscribed for good.
    inbox: OnceLock<String>,
    is_up: AtomicBool,
    timeout: Duration,
}

/// A subscribed channel and the last publication delivered on it.
#[derive(Debug)]
struct Tracked {
    channel: String,
    last: Option<(String, u64)>,
}

/// What to do with a publication, given the last one delivered on its channel.
#[derive(Debug, Eq, PartialEq)]
enum Verdict {
    /// The next offset (or the first seen): deliver.
    Deliver,
    /// Something was skipped, or the epoch changed: resync, then deliver.
    ResyncThenDeliver,
    /// Already delivered or older: drop, keeping offsets increasing.
    Drop,
}

/// A message from a topic.
#[derive(Debug, PartialEq)]
enum TopicMessage {
    Publication { epoch: String, publication: Publication },
    Join(ClientInfo),
    Leave(ClientInfo),
}

impl Subscriptions {
    /// No subscriptions yet, on the connected `pubsub`; each change bounded by `timeout`.
    /// Returns the stream half for [`run`](Self::run).
    pub(crate) fn new(timeout: Duration, pubsub: PubSub) -> (Self, PubSubStream) {
        let (sink, stream) = pubsub.split();
        let subscriptions = Self {
            control: tokio::sync::Mutex::new(Some(sink)),
            topics: Mutex::new(HashMap::new()),
            inbox: OnceLock::new(),
            is_up: AtomicBool::new(true),
            timeout,
        };
        (subscriptions, stream)
    }

    /// Whether the PubSub connection is up and subscribed.
    pub(crate) fn is_up(&self) -> bool {
        self.is_up.load(Ordering::Acquire)
    }

    /// The channels subscribed to now.
    pub(crate) fn channels(&self) -> Vec<String> {
        self.topics().values().map(|tracked| tracked.channel.clone()).collect()
    }

    /// Subscribes to `channel`'s `topic`; returns once Redis confirmed. Idempotent. Takes
    /// at most the timeout, waiting for other subscription changes included.
    ///
    /// Cancelling leaves the channel unsubscribed here (Redis may still have subscribed the
    /// connection; its messages are ignored).
    pub(crate) async fn subscribe(&self, channel: &str, topic: &str) -> Result<(), BrokerError> {
        let subscribed = async {
            let mut control = self.control.lock().await;
            if self.topics().contains_key(topic) {
                return Ok(());
            }
            let Some(sink) = control.as_mut() else {
                return Err(unavailable("redis pubsub connection is down"));
            };
            let tracked = Tracked { channel: channel.to_owned(), last: None };
            self.topics().insert(topic.to_owned(), tracked);
            let pending = Pending { topics: &self.topics, topic, is_armed: true };
            sink.subscribe(topic)
                .await
                .map_err(|e| unavailable(&format!("redis subscribe failed: {e}")))?;
            pending.disarm();
            Ok(())
        };
        tokio::time::timeout(self.timeout, subscribed).await.unwrap_or_else(|_| {
            Err(unavailable(&format!("redis subscribe took over {:?}", self.timeout)))
        })
    }

    /// Subscribes to the node's `inbox` topic; returns once Redis confirmed. Takes at most the
    /// timeout. Again with the same inbox, subscribes again (harmless in Redis).
    ///
    /// The inbox is kept from the first call on, even when this fails or is cancelled: the
    /// next reconnect subscribes to it with the rest.
    ///
    /// # Errors
    ///
    /// `Internal` when the node already listens on another inbox; `Unavailable` when Redis
    /// did not confirm.
    pub(crate) async fn listen(&self, inbox: &str) -> Result<(), BrokerError> {
        let listening = async {
            let mut control = self.control.lock().await;
            let kept = self.inbox.get_or_init(|| inbox.to_owned());
            if kept != inbox {
                return Err(BrokerError::Internal(format!("already listening on {kept}")));
            }
            let Some(sink) = control.as_mut() else {
                return Err(unavailable("redis pubsub connection is down"));
            };
            sink.subscribe(inbox)
                .await
                .map_err(|e| unavailable(&format!("redis subscribe failed: {e}")))
        };
        tokio::time::timeout(self.timeout, listening).await.unwrap_or_else(|_| {
            Err(unavailable(&format!("redis subscribe took over {:?}", self.timeout)))
        })
    }

    /// Unsubscribes from `topic`. Idempotent. Delivery stops before this returns, even when
    /// Redis cannot be told within the timeout (the connection is down or hung).
    pub(crate) async fn unsubscribe(&self, topic: &str) {
        let unsubscribed = async {
            let mut control = self.control.lock().await;
            if self.topics().remove(topic).is_none() {
                return;
            }
            if let Some(sink) = control.as_mut()
                && let Err(e) = sink.unsubscribe(topic).await
            {
                tracing::debug!(topic, error = %e, "redis unsubscribe failed");
            }
        };
        if tokio::time::timeout(self.timeout, unsubscribed).await.is_err() {
            tracing::debug!(topic, "redis unsubscribe timed out");
            self.topics().remove(topic);
        }
    }

    /// Reads the PubSub connection (`stream`, from [`new`](Self::new)) and delivers to the
    /// handler; after losing it, reconnects with backoff, subscribes again and resyncs every
    /// channel. Runs until aborted.
    pub(crate) async fn run(
        &self,
        client: &Client,
        connect_timeout: Duration,
        mut stream: PubSubStream,
        handler: &HandlerSlot,
        commands: &Commands,
    ) {
        loop {
            self.read(&mut stream, handler).await;
            self.is_up.store(false, Ordering::Release);
            *self.control.lock().await = None;
            tracing::warn!("redis pubsub connection lost");
            // Same server: the command connection is likely gone too. Finding out now keeps
            // `is_ready` honest and spares the next command a broken pipe.
            commands.check_soon();
            let resubscribed;
            (stream, resubscribed) = self.reconnect(client, connect_timeout).await;
            if let Some(handler) = handler.get() {
                for channel in &resubscribed {
                    handler.on_resync(channel);
                }
            }
        }
    }

    /// Connects again, with backoff until it works, and subscribes to every topic. Returns
    /// the new stream and the channels subscribed again.
    async fn reconnect(&self, client: &Client, timeout: Duration) -> (PubSubStream, Vec<String>) {
        let mut backoff = crate::Backoff::new();
        loop {
            tokio::time::sleep(backoff.next()).await;
            let (sink, stream) = match connect(client, timeout).await {
                Ok(connection) => connection.split(),
                Err(e) => {
                    tracing::debug!(error = %e, "redis pubsub connection attempt failed");
                    continue;
                }
            };
            if let Some(channels) = self.resubscribe(sink).await {
                tracing::info!(channels = channels.len(), "redis pubsub connection up again");
                return (stream, channels);
            }
        }
    }

    /// Subscribes `sink`'s new connection to every topic and the inbox, and makes it the live
    /// one. Returns the channels subscribed again (never the inbox, which has nothing to
    /// resync), or `None` when that failed.
    async fn resubscribe(&self, mut sink: PubSubSink) -> Option<Vec<String>> {
        let mut control = self.control.lock().await;
        let (mut topics, channels): (Vec<String>, Vec<String>) = self
            .topics()
            .iter_mut()
            .map(|(topic, tracked)| {
                // Whatever was delivered before, the new connection starts fresh: the resync
                // covers the gap.
                tracked.last = None;
                (topic.clone(), tracked.channel.clone())
            })
            .unzip();
        topics.extend(self.inbox.get().cloned());
        for chunk in topics.chunks(RESUBSCRIBE_CHUNK) {
            match tokio::time::timeout(self.timeout, sink.subscribe(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "redis resubscribe failed");
                    return None;
                }
                Err(_) => {
                    tracing::warn!("redis resubscribe timed out");
                    return None;
                }
            }
        }
        *control = Some(sink);
        self.is_up.store(true, Ordering::Release);
        Some(channels)
    }

    /// Delivers messages until the connection ends or stops answering pings.
    async fn read(&self, stream: &mut PubSubStream, handler: &HandlerSlot) {
        let Some(mut sink) = self.control.lock().await.clone() else { return };
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        self.deliver(
                            message.get_channel_name(),
                            message.get_payload_bytes(),
                            handler.get().as_deref(),
                        );
                    }
                    None => return,
                },
                _ = ping.tick() => {
                    // A subscribed RESP2 connection answers `["pong", ""]`, not `+PONG`:
                    // any reply proves it alive.
                    let pong =
                        tokio::time::timeout(self.timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        tracing::warn!("redis pubsub connection did not answer a ping");
                        return;
                    }
                }
            }
        }
    }

    /// Hands one topic message to the handler, when its channel is subscribed, or an inbox
    /// message as it is.
    fn deliver(&self, topic: &str, payload: &[u8], handler: Option<&dyn BrokerHandler>) {
        if self.inbox.get().is_some_and(|inbox| inbox == topic) {
            if let Some(handler) = handler {
                handler.on_node_message(Bytes::copy_from_slice(payload));
            }
            return;
        }
        let message = match TopicMessage::decode(payload) {
            Ok(message) => message,
            Err(why) => {
                tracing::warn!(topic, why, "dropped an unreadable topic message");
                return;
            }
        };
        // The handler runs under the lock, so `unsubscribe` waits for a delivery in progress.
        let mut topics = self.topics();
        let Some(tracked) = topics.get_mut(topic) else { return };
        match message {
            TopicMessage::Publication { epoch, publication } => {
                let verdict = check(&mut tracked.last, epoch, publication.offset);
                let Some(handler) = handler else { return };
                match verdict {
                    Verdict::Deliver => {}
                    Verdict::ResyncThenDeliver => handler.on_resync(&tracked.channel),
                    Verdict::Drop => return,
                }
                handler.on_publication(&tracked.channel, Arc::new(publication));
            }
            TopicMessage::Join(client) => {
                if let Some(handler) = handler {
                    handler.on_join(&tracked.channel, &client);
                }
            }
            TopicMessage::Leave(client) => {
                if let Some(handler) = handler {
                    handler.on_leave(&tracked.channel, &client);
                }
            }
        }
        drop(topics);
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<String, Tracked>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions")
            .field("topics", &self.topics().len())
            .field("inbox", &self.inbox.get())
            .field("is_up", &self.is_up())
            .finish_non_exhaustive()
    }
}

/// Removes a topic whose subscription did not complete (failed or cancelled).
struct Pending<'a> {
    topics: &'a Mutex<HashMap<String, Tracked>>,
    topic: &'a str,
    is_armed: bool,
}

impl Pending<'_> {
    fn disarm(mut self) {
        self.is_armed = false;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.is_armed {
            self.topics.lock().unwrap_or_else(PoisonError::into_inner).remove(self.topic);
        }
    }
}

impl TopicMessage {
    fn decode(payload: &[u8]) -> Result<Self, &'static str> {
        let (tag, rest) = payload.split_at_checked(2).ok_or("too short")?;
        match tag {
            b"p:" => {
                let colon = rest.iter().position(|&b| b == b':').ok_or("no epoch")?;
                let epoch = std::str::from_utf8(&rest[..colon]).map_err(|_| "epoch not utf-8")?;
                let publication = serde_json::from_slice(&rest[colon + 1..])
                    .map_err(|_| "bad publication json")?;
                Ok(Self::Publication { epoch: epoch.to_owned(), publication })
            }
            b"j:" => Ok(Self::Join(serde_json::from_slice(rest).map_err(|_| "bad client json")?)),
            b"l:" => Ok(Self::Leave(serde_json::from_slice(rest).map_err(|_| "bad client json")?)),
            _ => Err("unknown tag"),
        }
    }
}

/// Judges a publication at `offset` in `epoch` against the last one delivered, and records
/// it when it is to be delivered.
fn check(last: &mut Option<(String, u64)>, epoch: String, offset: u64) -> Verdict {
    let verdict = match last {
        // The first publication since subscribing: nothing to compare with. Losses before it
        // come from a broken connection, which resyncs on its own.
        None => Verdict::Deliver,
        Some((last_epoch, _)) if *last_epoch != epoch => Verdict::ResyncThenDeliver,
        Some((_, last_offset)) if offset <= *last_offset => Verdict::Drop,
        Some((_, last_offset)) if offset == *last_offset + 1 => Verdict::Deliver,
        Some(_) => Verdict::ResyncThenDeliver,
    };
    if verdict != Verdict::Drop {
        *last = Some((epoch, offset));
    }
    verdict
}

/// Opens a PubSub connection within `timeout`.
pub(crate) async fn connect(client: &Client, timeout: Duration) -> Result<PubSub, String> {
    match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {timeout:?}")),
    }
}

/// How often the PubSub connection is pinged, to notice a connection that died silently.
const PING_EVERY: Duration = Duration::from_secs(2);

/// Topics per `SUBSCRIBE` when subscribing again after a reconnect.
const RESUBSCRIBE_CHUNK: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(last: &mut Option<(String, u64)>, epoch: &str, offset: u64) -> Verdict {
        check(last, epoch.to_owned(), offset)
    }

    #[test]
    fn consecutive_offsets_are_delivered() {
        let mut last = None;
        assert_eq!(judge(&mut last, "e", 7), Verdict::Deliver, "the first one sets the base");
        assert_eq!(judge(&mut last, "e", 8), Verdict::Deliver);
        assert_eq!(last, Some(("e".to_owned(), 8)));
    }

    #[test]
    fn a_gap_or_a_new_epoch_resyncs() {
        let mut last = Some(("e".to_owned(), 3));
        assert_eq!(judge(&mut last, "e", 5), Verdict::ResyncThenDeliver);
        assert_eq!(judge(&mut last, "e", 6), Verdict::Deliver);
        assert_eq!(judge(&mut last, "f", 1), Verdict::ResyncThenDeliver);
        assert_eq!(last, Some(("f".to_owned(), 1)));
    }

    #[test]
    fn repeated_or_older_offsets_are_dropped() {
        let mut last = Some(("e".to_owned(), 3));
        assert_eq!(judge(&mut last, "e", 3), Verdict::Drop);
        assert_eq!(judge(&mut last, "e", 1), Verdict::Drop);
        assert_eq!(last, Some(("e".to_owned(), 3)), "a dropped one changes nothing");
    }

    #[test]
    fn decodes_the_three_message_kinds() {
        let publication = TopicMessage::decode(br#"p:ab12:{"offset":4,"data":{"x":[1]}}"#);
        assert_eq!(
            publication,
            Ok(TopicMessage::Publication {
                epoch: "ab12".to_owned(),
                publication: Publication {
                    offset: 4,
                    data: serde_json::json!({"x": [1]}),
                    info: None
                },
            })
        );
        let client = ClientInfo { id: "c1".to_owned(), user: Some("u".to_owned()), info: None };
        let join = TopicMessage::decode(br#"j:{"client":"c1","user":"u"}"#);
        assert_eq!(join, Ok(TopicMessage::Join(client.clone())));
        let leave = TopicMessage::decode(br#"l:{"client":"c1","user":"u"}"#);
        assert_eq!(leave, Ok(TopicMessage::Leave(client)));
    }

    #[test]
    fn rejects_malformed_messages() {
        for bad in [&b""[..], b"p", b"p:noepoch", b"p:e:{", b"x:{}", b"j:[]"] {
            assert!(TopicMessage::decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
