//! A client's outbound queue: what the node and the session send it, waiting for its
//! transport to take it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use switchboard_hub::{Delivery, Sink};
use switchboard_proto::{Format, Push};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A payload on a connection's outbound queue.
#[derive(Debug)]
pub struct Outbound {
    /// The encoded push or reply.
    pub bytes: Bytes,
    /// Where it came from.
    pub source: Source,
}

/// Where a queued payload came from. One word and a tag, whichever it is: every queued
/// payload carries one.
#[derive(Debug)]
pub enum Source {
    /// A reply, or a push other than a publication, from an outbox that does not keep the
    /// hub's deliveries.
    Direct,
    /// A publication, from an outbox that does not keep the hub's deliveries: when it
    /// reached the hub, the start of its delivery latency.
    Published(Instant),
    /// A push with the hub's delivery it came from, for an outbox that [keeps
    /// them](Pushes::WithDelivery): its transport can send a frame shared by every
    /// subscriber instead of the bytes (a publication compressed once).
    Delivery(Arc<Delivery>),
}

impl Outbound {
    /// For a publication, when it reached the hub: the start of its delivery latency.
    pub fn since(&self) -> Option<Instant> {
        match &self.source {
            Source::Direct => None,
            Source::Published(at) => Some(*at),
            Source::Delivery(delivery) => delivery.received_at(),
        }
    }
}

/// What a client's outbox hands its transport with each push.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Pushes {
    /// The encoded bytes.
    #[default]
    Encoded,
    /// The encoded bytes and the hub's delivery they came from, for a transport that sends
    /// shared frames ([`Delivery::shared_frame`]): a WebSocket with permessage-deflate.
    WithDelivery,
}

/// What a transport takes off a client's outbox.
#[derive(Debug)]
pub enum Queued {
    /// A payload to send: a reply or a push, encoded in the client's format.
    Payload(Outbound),
    /// A request to close, after what came before.
    Close(Kick),
}

/// A request to close a client's connection with an application close code.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Kick {
    /// The close code, 4000–4999 (or 1008 for sustained excess over the rate limits).
    pub code: u16,
    /// Why, for the client and the logs.
    pub reason: String,
}

impl Kick {
    /// The `disconnect` push that tells the client why it is closed and what to do
    /// (reconnect, back off, or not), encoded in `format`: a transport sends it before it
    /// closes, where its wire allows.
    pub fn push(&self, format: Format) -> Option<Bytes> {
        let advice = switchboard_proto::advice(self.code);
        let push = Push::Disconnect { code: self.code, reason: self.reason.clone(), advice };
        format.encode(&push).ok()
    }
}

/// A client's outbound queue, bounded in bytes: its session queues replies here, the hub
/// queues shared encoded pushes without blocking, and its transport drains it to the
/// client. Kicks (API disconnects, drains, session deadlines) wait here too, behind what
/// was queued before them. Replies and pushes share the queue, so a client sees them in
/// the order they happened.
///
/// When the queue would pass its budget, nothing more is queued and
/// [`overflow`](Self::overflow) is cancelled: the client is a slow consumer, and its
/// transport cuts it off (4001) rather than let memory grow.
///
/// An idle connection's queue holds no allocation: a deque that is empty has none, and the
/// wake-up is one `Notify`.
pub struct Outbox {
    queue: Mutex<VecDeque<Queued>>,
    ready: Notify,
    queued: AtomicUsize,
    limit: usize,
    format: Format,
    pushes: Pushes,
    /// Cancelled when the queue overflowed: the connection is a slow consumer.
    overflow: CancellationToken,
    /// The same fact, for the fan-out path: a token's own check takes its lock.
    overflowed: AtomicBool,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("limit", &self.limit)
            .finish()
    }
}

impl Outbox {
    /// An empty queue for a connection speaking `format`, holding at most `limit` bytes.
    pub(crate) fn new(format: Format, limit: usize, pushes: Pushes) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::default(),
            ready: Notify::new(),
            queued: AtomicUsize::new(0),
            limit,
            format,
            pushes,
            overflow: CancellationToken::new(),
            overflowed: AtomicBool::new(false),
        })
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Queued>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, input: Queued) {
        self.queue().push_back(input);
        // Stores a permit when the task is not waiting: no wake-up is lost.
        self.ready.notify_one();
    }

    /// The next item, waiting for one.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an item is taken off the queue only when the call returns it.
    pub async fn recv(&self) -> Queued {
        loop {
            if let Some(input) = self.try_recv() {
                return input;
            }
            self.ready.notified().await;
        }
    }

    /// The next item if one is queued. A payload taken is no longer counted in the budget.
    pub fn try_recv(&self) -> Option<Queued> {
        let mut queue = self.queue();
        let input = queue.pop_front()?;
        if queue.is_empty() && queue.capacity() > SHRINK_ABOVE {
            // A burst is over: do not keep its memory for an idle connection.
            *queue = VecDeque::new();
        }
        drop(queue);
        if let Queued::Payload(item) = &input {
            self.queued.fetch_sub(item.bytes.len(), Ordering::Relaxed);
        }
        Some(input)
    }

    /// Queues a payload (a reply) behind the pushes already queued, within the same byte
    /// budget: a client that sends commands but never reads overflows it too.
    pub(crate) fn enqueue(&self, bytes: Bytes) {
        self.enqueue_from(bytes, Source::Direct);
    }

    fn enqueue_from(&self, bytes: Bytes, source: Source) {
        if self.is_overflowed() {
            return;
        }
        let queued = self.queued.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
        if queued > self.limit {
            self.overflowed.store(true, Ordering::Release);
            self.overflow.cancel();
            return;
        }
        self.push(Queued::Payload(Outbound { bytes, source }));
    }

    /// Asks the connection to close, after what is queued.
    pub(crate) fn kick(&self, kick: Kick) {
        self.push(Queued::Close(kick));
    }

    /// The connection's wire format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Cancelled when the queue overflowed.
    pub fn overflow(&self) -> &CancellationToken {
        &self.overflow
    }

    /// Whether the queue overflowed.
    pub fn is_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }
}

/// Queue capacity (entries) kept once the queue empties; a larger one is freed.
const SHRINK_ABOVE: usize = 16;

impl Sink for Outbox {
    fn deliver(&self, delivery: &Arc<Delivery>) -> bool {
        if self.is_overflowed() {
            return false;
        }
        let Some(bytes) = delivery.encoded(self.format) else { return true };
        // Never block the publisher and never grow: past the budget this subscriber is cut
        // off.
        let source = match (self.pushes, delivery.received_at()) {
            (Pushes::WithDelivery, _) => Source::Delivery(Arc::clone(delivery)),
            (Pushes::Encoded, Some(at)) => Source::Published(at),
            (Pushes::Encoded, None) => Source::Direct,
        };
        self.enqueue_from(bytes, source);
        !self.is_overflowed()
    }
}
