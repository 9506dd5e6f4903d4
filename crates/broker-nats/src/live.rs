//! Live delivery: one core NATS subscription per subscribed channel, on the subject the
//! stream republishes to, with per-channel offset tracking to detect losses.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::StreamExt;
use switchboard_broker::{BrokerError, BrokerHandler, ClientInfo, Publication};
use tokio::task::AbortHandle;

use crate::{HandlerSlot, Shared, stored, unavailable};

/// The channels this node subscribed to.
#[derive(Default)]
pub(crate) struct Live {
    channels: Mutex<HashMap<String, Channel>>,
    generation: AtomicU64,
}

/// One subscribed channel.
struct Channel {
    /// Tells this subscription's messages from those of an earlier one of the same channel.
    generation: u64,
    /// The epoch and offset delivered last; `None` until the first, and after a resync.
    last: Option<(String, u64)>,
    /// The task reading the subscription; aborting it drops the subscription.
    task: AbortHandle,
}

impl Live {
    /// Subscribes `channel` on `subject` unless it already is; returns once the server
    /// has the subscription.
    pub(crate) async fn subscribe(
        shared: &Arc<Shared>,
        channel: &str,
        subject: &str,
    ) -> Result<(), BrokerError> {
        if shared.live.lock().contains_key(channel) {
            return Ok(());
        }
        let mut subscriber =
            shared.client.subscribe(subject.to_owned()).await.map_err(unavailable)?;
        shared.flush().await?;
        let mut channels = shared.live.lock();
        if channels.contains_key(channel) {
            // A concurrent subscribe won; dropping ours unsubscribes it.
            return Ok(());
        }
        let generation = shared.live.generation.fetch_add(1, Ordering::Relaxed);
        let task = {
            let shared = Arc::clone(shared);
            let channel = channel.to_owned();
            tokio::spawn(async move {
                while let Some(message) = subscriber.next().await {
                    shared.live.deliver(&shared.handler, &channel, generation, &message);
                }
            })
        };
        let task = task.abort_handle();
        channels.insert(channel.to_owned(), Channel { generation, last: None, task });
        Ok(())
    }

    /// Stops delivering `channel`; idempotent.
    pub(crate) fn unsubscribe(&self, channel: &str) {
        if let Some(removed) = self.lock().remove(channel) {
            removed.task.abort();
        }
    }

    /// The subscribed channels.
    pub(crate) fn channels(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Every subscribed channel may have missed messages: tells the handler, and forgets
    /// what was delivered last so the next message is taken as it comes.
    pub(crate) fn resync_all(&self, handler: Option<&dyn BrokerHandler>) {
        let mut channels = self.lock();
        for (name, channel) in channels.iter_mut() {
            channel.last = None;
            if let Some(handler) = handler {
                handler.on_resync(name);
            }
        }
    }

    pub(crate) fn abort_all(&self) {
        for (_, channel) in self.lock().drain() {
            channel.task.abort();
        }
    }

    /// Hands one live message to the handler: a join, a leave, or a stored publication
    /// (after `on_resync` when it does not follow the last one delivered).
    fn deliver(
        &self,
        handler: &HandlerSlot,
        name: &str,
        generation: u64,
        message: &async_nats::Message,
    ) {
        let mut channels = self.lock();
        let Some(channel) = channels.get_mut(name).filter(|c| c.generation == generation) else {
            return;
        };
        let Some(handler) = handler.get() else { return };
        let headers = message.headers.as_ref();
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        if let Some(event) = header(EVENT_HEADER) {
            let Ok(client) = serde_json::from_slice::<ClientInfo>(&message.payload) else {
                tracing::warn!(channel = name, "bad presence announcement");
                return;
            };
            match event {
                JOIN => handler.on_join(name, &client),
                LEAVE => handler.on_leave(name, &client),
                _ => tracing::warn!(channel = name, event, "unknown presence announcement"),
            }
            return;
        }
        let offset = header(stored::OFFSET_HEADER).and_then(|o| o.parse::<u64>().ok());
        let (Some(offset), Some(epoch)) = (offset, header(stored::EPOCH_HEADER)) else {
            tracing::warn!(channel = name, "live message without offset or epoch");
            return;
        };
        let follows = match &channel.last {
            None => true,
            Some((last_epoch, last)) => last_epoch == epoch && offset == last + 1,
        };
        if offset == 0 {
            // A history read created the stream anew: anything kept from before is gone.
            if channel.last.as_ref().is_some_and(|(last_epoch, _)| last_epoch != epoch) {
                handler.on_resync(name);
            }
            channel.last = Some((epoch.to_owned(), 0));
            return;
        }
        if !follows {
            handler.on_resync(name);
        }
        channel.last = Some((epoch.to_owned(), offset));
        match serde_json::from_slice::<Publication>(&message.payload) {
            Ok(publication) if publication.offset == offset => {
                handler.on_publication(name, Arc::new(publication));
            }
            _ => {
                tracing::warn!(channel = name, offset, "bad live publication");
                handler.on_resync(name);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").field("channels", &self.lock().len()).finish()
    }
}

/// The header of a presence announcement on a live subject: [`JOIN`] or [`LEAVE`].
pub(crate) const EVENT_HEADER: &str = "Sb-Event";

pub(crate) const JOIN: &str = "join";

pub(crate) const LEAVE: &str = "leave";
