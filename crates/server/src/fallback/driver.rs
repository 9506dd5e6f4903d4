//! One HTTP session's task: it owns the [`Session`], takes the requests of the client's
//! HTTP calls (commands, a stream to write to, a poll to answer) and carries the session's
//! outbox to whichever downlink is attached.
//!
//! Every message taken off the outbox gets the next number (from 1) and waits in the
//! session's `pending` log until it is known to have arrived: for long-polling, until a poll
//! acknowledges it (a poll answers with what is pending, so a lost answer is sent again);
//! for SSE, until it is written, after which the `replay` log keeps the last 64 KiB for an
//! `EventSource` that reconnects with the last id it saw.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use switchboard_proto::codes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant, sleep_until};

use super::wire;
use crate::limits::ConnectionGuard;
use crate::metrics::{Closed, CodeLabel, TransportLabel};
use crate::node::{Kick, Outbox, Payload, Queued, Session};
use crate::state::Shared;

/// Which HTTP transport a session uses.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Kind {
    /// A Server-Sent Events stream down.
    Sse,
    /// Long-polls down.
    LongPoll,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Sse => "sse",
            Self::LongPoll => "longpoll",
        }
    }
}

/// Most bytes of messages one poll answer or one stream write carries.
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// Bytes of written messages an SSE session keeps for a reconnecting `EventSource`.
pub(crate) const REPLAY_BYTES: usize = 64 * 1024;

/// Stream writes waiting for the socket; past them the session stops taking from its
/// outbox, which then fills up towards its budget (4001).
pub(crate) const STREAM_BUFFER: usize = 4;

/// What an HTTP call asks of a session.
#[derive(Debug)]
pub(crate) enum Request {
    /// Carry out the commands of a `POST /session` body, then say whether the session took
    /// them (`false`: it has ended and takes no more commands).
    Commands { body: Bytes, done: oneshot::Sender<bool> },
    /// Write the messages after `after` to `events` from now on (an `EventSource` that
    /// reconnected): answers whether the session could resume there.
    Resume { after: u64, events: mpsc::Sender<Bytes>, resumed: oneshot::Sender<bool> },
    /// Answer with the messages after `ack`, as soon as there are any, or an empty batch
    /// after the poll timeout.
    Poll { ack: u64, answer: oneshot::Sender<Bytes> },
    /// End the session now.
    End { done: oneshot::Sender<()> },
}

/// Where the session's messages go now.
#[derive(Debug)]
enum Downlink {
    /// Nothing attached since `since`: the session expires at `since + session_timeout`.
    Detached { since: Instant },
    /// An event stream; `beat` is when its next heartbeat is due.
    Stream { events: mpsc::Sender<Bytes>, beat: Instant },
    /// A poll waiting for messages until `until`.
    Poll { answer: oneshot::Sender<Bytes>, until: Instant },
}

/// How the session ended, for its close log line and metrics.
#[derive(Clone, Copy, Debug)]
struct Ending {
    code: u16,
    cause: &'static str,
}

/// One HTTP session's state, owned by its task.
pub(crate) struct Driver {
    shared: Arc<Shared>,
    id: Arc<str>,
    kind: Kind,
    session: Option<Session>,
    /// Numbered messages not yet known to have arrived (see the module docs).
    pending: Log,
    /// SSE: written messages, kept for an `EventSource` that reconnects.
    replay: Log,
    /// The number the next message gets.
    next: u64,
    /// SSE: the last number written to the stream. Long-polling: the last acknowledged.
    delivered: u64,
    downlink: Downlink,
    /// The session ended; its last message (a `disconnect` push, if any) is numbered.
    ending: Option<Ending>,
    /// The highest number a poll answer carried.
    answered: u64,
    /// The server is stopping: a session that ended waits for no acknowledgement.
    stopping: bool,
    /// Since when the stream has had no room for a write: a client that stopped reading.
    stalled: Option<Instant>,
    /// The per-address connection slot, given back when the task ends.
    _slot: ConnectionGuard,
}

impl Driver {
    /// A driver for `session`, known to clients as `id`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: Arc<str>,
        kind: Kind,
        session: Session,
        slot: ConnectionGuard,
        events: Option<mpsc::Sender<Bytes>>,
    ) -> Self {
        let now = Instant::now();
        let downlink = match events {
            Some(events) => Downlink::Stream { events, beat: now + heartbeat(&shared) },
            None => Downlink::Detached { since: now },
        };
        Self {
            shared,
            id,
            kind,
            session: Some(session),
            pending: Log::default(),
            replay: Log::default(),
            next: 1,
            delivered: 0,
            downlink,
            ending: None,
            answered: 0,
            stopping: false,
            stalled: None,
            _slot: slot,
        }
    }

    /// Runs the session until it ends and what it owes its client is delivered (or the
    /// client is gone for the session timeout).
    pub(crate) async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let transport = TransportLabel { transport: self.kind.label() };
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        metrics.connections_opened.get_or_create(&transport).inc();
        metrics.connections_active.get_or_create(&transport).inc();
        tracing::info!(
            client = self.client_id().as_deref(),
            transport = transport.transport,
            "connection opened"
        );
        let opened = Instant::now();
        let outbox = match &self.session {
            Some(session) => Arc::clone(session.outbox()),
            None => return,
        };
        let closing = self.shared.closing.clone();
        let mut closing_now = std::pin::pin!(closing.cancelled());
        let mut draining = false;
        loop {
            if let Some(kick) = self.pump(&outbox) {
                Box::pin(self.finish(&outbox, kick)).await;
                // Once more: what the session owes now goes out.
                continue;
            }
            if self.is_over() {
                break;
            }
            self.stalled = match &self.downlink {
                Downlink::Stream { events, .. } if events.capacity() == 0 => {
                    self.stalled.or(Some(Instant::now()))
                }
                _ => None,
            };
            let wake = self.next_wake();
            let wants = self.wants_messages();
            let stream = match &self.downlink {
                Downlink::Stream { events, .. } => Some(events.clone()),
                _ => None,
            };
            let stream_gone = async {
                match &stream {
                    Some(events) => events.closed().await,
                    None => std::future::pending().await,
                }
            };
            // A full stream: wake when the socket took a write, to write the rest.
            let room = async {
                match &stream {
                    Some(events) if events.capacity() == 0 => drop(events.reserve().await),
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut closing_now, if !draining => {
                    draining = true;
                    self.stopping = true;
                    let kick =
                        Kick { code: codes::close::DRAINING, reason: "server draining".to_owned() };
                    Box::pin(self.finish(&outbox, kick)).await;
                }
                () = outbox.overflow().cancelled(), if self.ending.is_none() => {
                    self.shared.metrics.slow_consumers.inc();
                    // As on a WebSocket: what the queue holds is dropped, the push goes out.
                    while outbox.try_recv().is_some() {}
                    let kick =
                        Kick { code: codes::close::SLOW_CONSUMER, reason: "slow consumer".to_owned() };
                    Box::pin(self.finish(&outbox, kick)).await;
                }
                request = requests.recv() => match request {
                    Some(request) => Box::pin(self.on_request(request, &outbox)).await,
                    // The table is gone: the server stopped.
                    None => break,
                },
                queued = outbox.recv(), if wants => Box::pin(self.take(queued, &outbox)).await,
                () = room => {}
                () = stream_gone => {
                    tracing::debug!(client = self.client_id().as_deref(), "stream closed");
                    self.downlink = Downlink::Detached { since: Instant::now() };
                }
                () = sleep_until(wake) => Box::pin(self.on_timer(&outbox)).await,
            }
        }
        let ending = self.ending.unwrap_or(Ending { code: 1006, cause: "transport" });
        if let Some(session) = self.session.take() {
            Box::pin(session.close()).await;
        }
        metrics.connections_active.get_or_create(&transport).dec();
        let closed = Closed {
            transport: transport.transport,
            code: CodeLabel::new(ending.code),
            cause: ending.cause,
        };
        metrics.connections_closed.get_or_create(&closed).inc();
        tracing::info!(
            transport = transport.transport,
            code = ending.code,
            cause = ending.cause,
            duration_ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX),
            "connection closed"
        );
    }

    fn client_id(&self) -> Option<Arc<str>> {
        self.session.as_ref().map(|s| Arc::clone(s.id()))
    }

    /// Whether the task is done: the session ended and what it owes is delivered, or the
    /// client stayed away for the session timeout.
    fn is_over(&self) -> bool {
        let Some(ending) = self.ending else { return false };
        if ending.cause == "expired" || ending.cause == "ended" {
            return true;
        }
        // Everything numbered has reached the client: written to a stream (which ends when
        // the task drops it), or acknowledged by a poll.
        let delivered = self.delivered + 1 >= self.next;
        if self.stopping {
            // The server stops: a poll answered or no downlink at all is as far as it goes.
            return delivered
                || self.answered + 1 >= self.next
                || matches!(self.downlink, Downlink::Detached { .. });
        }
        delivered
    }

    /// Whether the task should wait on the outbox: a downlink can take messages now.
    fn wants_messages(&self) -> bool {
        if self.ending.is_some() {
            return false;
        }
        match &self.downlink {
            Downlink::Stream { events, .. } => events.capacity() > 0,
            // A poll answered with what it already has never waits for more.
            Downlink::Poll { .. } => self.delivered + 1 >= self.next,
            Downlink::Detached { .. } => false,
        }
    }

    /// The next moment something is due: the session's deadline, a poll's timeout, a
    /// heartbeat, the expiry of a detached session.
    fn next_wake(&self) -> Instant {
        let options = &self.shared.config.transports;
        let far = Instant::now() + Duration::from_secs(86_400);
        let session = self.session.as_ref().and_then(Session::poll_deadline);
        let downlink = match &self.downlink {
            Downlink::Detached { since } => *since + options.session_timeout,
            Downlink::Stream { beat, .. } => match self.stalled {
                Some(since) => (*beat).min(since + self.shared.config.write_timeout),
                None => *beat,
            },
            Downlink::Poll { until, .. } => *until,
        };
        session.map_or(downlink, |at| at.min(downlink)).min(far)
    }

    /// Moves what can go now: for a stream, every message not yet written (taking more off
    /// the outbox while it has room); for a waiting poll, the batch it can have. Returns the
    /// request to close met on the outbox, for the caller to carry out.
    fn pump(&mut self, outbox: &Outbox) -> Option<Kick> {
        match &self.downlink {
            Downlink::Stream { events, .. } if events.capacity() > 0 => {
                if self.ending.is_none()
                    && let Some(kick) = self.take_more(outbox)
                {
                    return Some(kick);
                }
                self.write_stream();
            }
            Downlink::Poll { .. } => {
                if self.ending.is_none()
                    && self.delivered + 1 >= self.next
                    && let Some(kick) = self.take_more(outbox)
                {
                    return Some(kick);
                }
                if self.delivered + 1 < self.next {
                    self.answer_poll();
                }
            }
            _ => {}
        }
        None
    }

    /// Takes what the outbox holds now, up to a batch beyond what waits to be delivered;
    /// stops at a request to close, and returns it.
    fn take_more(&mut self, outbox: &Outbox) -> Option<Kick> {
        while self.pending.bytes < BATCH_BYTES {
            match outbox.try_recv() {
                Some(Queued::Payload(item)) => self.number(item.bytes),
                Some(Queued::Close(kick)) => return Some(kick),
                None => break,
            }
        }
        None
    }

    /// Handles one item the outbox gave while the task waited.
    async fn take(&mut self, queued: Queued, outbox: &Outbox) {
        match queued {
            Queued::Payload(item) => self.number(item.bytes),
            Queued::Close(kick) => self.finish(outbox, kick).await,
        }
    }

    /// Gives `message` the next number and keeps it in the log.
    fn number(&mut self, message: Bytes) {
        self.pending.push(self.next, message);
        self.next += 1;
    }

    /// Ends the session for `kick`: what the outbox holds goes first (unless it overflowed),
    /// then the `disconnect` push as the last message. The session leaves its channels now.
    async fn finish(&mut self, outbox: &Outbox, kick: Kick) {
        if self.ending.is_some() {
            return;
        }
        if !outbox.is_overflowed() {
            while let Some(queued) = outbox.try_recv() {
                if let Queued::Payload(item) = queued {
                    self.number(item.bytes);
                }
            }
        }
        tracing::debug!(code = kick.code, reason = %kick.reason, "http session closing");
        if let Some(push) = kick.push(switchboard_proto::Format::Json) {
            self.number(push);
        }
        self.ending = Some(Ending { code: kick.code, cause: "local" });
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }

    /// Ends the session at once, owing the client nothing more.
    async fn end(&mut self, cause: &'static str) {
        self.ending = Some(Ending { code: 1000, cause });
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }

    /// Writes every message after `delivered` to the stream, as one chunk; trims the log to
    /// the replay window.
    fn write_stream(&mut self) {
        let Downlink::Stream { events, beat } = &mut self.downlink else { return };
        if self.delivered + 1 >= self.next {
            return;
        }
        let mut chunk = BytesMut::with_capacity(self.pending.bytes + 80 * self.pending.len());
        for (n, message) in &self.pending.entries {
            wire::message_event(&mut chunk, &self.id, *n, message);
        }
        let (count, len) = (self.pending.len() as u64, chunk.len() as u64);
        // Full: the next turn writes when there is room. Closed: noticed by the loop.
        if events.try_send(chunk.freeze()).is_err() {
            return;
        }
        self.delivered = self.next - 1;
        *beat = Instant::now() + heartbeat(&self.shared);
        self.shared.metrics.sent(count, len);
        while let Some((n, message)) = self.pending.pop() {
            self.replay.push(n, message);
        }
        while self.replay.bytes > REPLAY_BYTES && self.replay.pop().is_some() {}
    }

    /// Answers the waiting poll with the messages after `delivered` (at most a batch).
    fn answer_poll(&mut self) {
        let Downlink::Poll { .. } = &self.downlink else { return };
        let Downlink::Poll { answer, .. } =
            std::mem::replace(&mut self.downlink, Downlink::Detached { since: Instant::now() })
        else {
            return;
        };
        let mut size = 0;
        let messages: Vec<&Bytes> = self
            .pending
            .entries
            .iter()
            .take_while(|(_, m)| {
                let fits = size == 0 || size + m.len() <= BATCH_BYTES;
                size += m.len();
                fits
            })
            .map(|(_, m)| m)
            .collect();
        let count = messages.len() as u64;
        self.answered = self.answered.max(self.delivered + count);
        let body = wire::batch(self.delivered + 1, messages);
        self.shared.metrics.sent(count, body.len() as u64);
        let _ = answer.send(body);
    }

    /// Drops what the client acknowledged.
    fn acknowledge(&mut self, ack: u64) {
        let ack = ack.min(self.next - 1);
        self.delivered = self.delivered.max(ack);
        while self.pending.entries.front().is_some_and(|(n, _)| *n <= self.delivered) {
            self.pending.pop();
        }
    }

    async fn on_request(&mut self, request: Request, outbox: &Outbox) {
        match request {
            Request::Commands { body, done } => {
                let taken = self.session.is_some();
                self.commands(&body, outbox).await;
                let _ = done.send(taken);
            }
            Request::Resume { after, events, resumed } => {
                // Resumable when the stream saw everything up to `after`, which this session
                // numbered, and every message after it is still in the log.
                let first_kept = self
                    .replay
                    .entries
                    .front()
                    .or(self.pending.entries.front())
                    .map_or(self.next, |(n, _)| *n);
                let ok = self.kind == Kind::Sse && after < self.next && after + 1 >= first_kept;
                if ok {
                    // What the stream did not get goes again, before what it never saw.
                    while self.replay.entries.back().is_some_and(|(n, _)| *n > after) {
                        if let Some((n, message)) = self.replay.pop_back() {
                            self.pending.push_front(n, message);
                        }
                    }
                    self.delivered = after;
                    let beat = Instant::now() + heartbeat(&self.shared);
                    // The old stream, if still attached, ends here.
                    self.downlink = Downlink::Stream { events, beat };
                } else {
                    self.end("ended").await;
                }
                let _ = resumed.send(ok);
            }
            Request::Poll { ack, answer } => {
                if self.kind != Kind::LongPoll {
                    let _ = answer.send(Bytes::new());
                    return;
                }
                self.acknowledge(ack);
                if let Downlink::Poll { .. } = &self.downlink {
                    // A second poll while one waits: the first gets an empty batch.
                    self.answer_poll();
                }
                let until = Instant::now() + self.shared.config.transports.poll_timeout;
                self.downlink = Downlink::Poll { answer, until };
            }
            Request::End { done } => {
                self.end("ended").await;
                let _ = done.send(());
            }
        }
    }

    /// Carries out the commands of one `POST /session` body, in order.
    async fn commands(&mut self, body: &[u8], outbox: &Outbox) {
        let metrics = &self.shared.metrics;
        let (mut messages, mut bytes) = (0u64, 0u64);
        let mut kick = None;
        if let Some(session) = self.session.as_mut() {
            for command in wire::commands(body) {
                messages += 1;
                bytes += command.len() as u64;
                kick = session.handle(Payload::Text(command), Instant::now()).await;
                if kick.is_some() {
                    break;
                }
            }
        }
        metrics.messages_in.inc_by(messages);
        metrics.bytes_in.inc_by(bytes);
        if let Some(kick) = kick {
            self.finish(outbox, kick).await;
        }
    }

    async fn on_timer(&mut self, outbox: &Outbox) {
        let now = Instant::now();
        if let Some(session) = self.session.as_mut()
            && session.poll_deadline().is_some_and(|at| at <= now)
            && let Some(kick) = session.handle_timeout(now)
        {
            self.finish(outbox, kick).await;
        }
        let timeout = self.shared.config.transports.session_timeout;
        if let Some(since) = self.stalled
            && since + self.shared.config.write_timeout <= now
        {
            // As a WebSocket whose socket takes nothing for `write_timeout`: the stream is
            // dropped, and the session expires unless the client comes back for it.
            tracing::debug!("event stream stalled: dropped");
            self.stalled = None;
            self.downlink = Downlink::Detached { since: now };
            return;
        }
        match &mut self.downlink {
            Downlink::Detached { since } if *since + timeout <= now => {
                tracing::debug!("http session expired");
                if self.ending.is_none() {
                    self.shared.metrics.sessions_expired.inc();
                }
                self.ending =
                    Some(Ending { code: self.ending.map_or(1006, |e| e.code), cause: "expired" });
            }
            Downlink::Stream { events, beat } if *beat <= now => {
                *beat = now + heartbeat(&self.shared);
                // Full: data is on its way, which beats as well as a comment.
                let _ = events.try_send(Bytes::from_static(wire::HEARTBEAT));
            }
            Downlink::Poll { until, .. } if *until <= now => {
                // Nothing came: an empty batch, numbered from the next message.
                let Downlink::Poll { answer, .. } =
                    std::mem::replace(&mut self.downlink, Downlink::Detached { since: now })
                else {
                    return;
                };
                let _ = answer.send(wire::batch(self.delivered + 1, []));
            }
            _ => {}
        }
    }
}

/// Numbered messages in order, with their total size.
#[derive(Debug, Default)]
struct Log {
    entries: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl Log {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn push(&mut self, n: u64, message: Bytes) {
        self.bytes += message.len();
        self.entries.push_back((n, message));
    }

    fn push_front(&mut self, n: u64, message: Bytes) {
        self.bytes += message.len();
        self.entries.push_front((n, message));
    }

    fn pop(&mut self) -> Option<(u64, Bytes)> {
        let entry = self.entries.pop_front()?;
        self.bytes -= entry.1.len();
        self.shrink();
        Some(entry)
    }

    fn pop_back(&mut self) -> Option<(u64, Bytes)> {
        let entry = self.entries.pop_back()?;
        self.bytes -= entry.1.len();
        self.shrink();
        Some(entry)
    }

    /// An empty log gives back a burst's memory.
    fn shrink(&mut self) {
        if self.entries.is_empty() && self.entries.capacity() > 16 {
            self.entries = VecDeque::new();
        }
    }
}

/// How often an idle stream gets a heartbeat comment: the WebSocket ping interval, or 25 s
/// when pings are off.
fn heartbeat(shared: &Shared) -> Duration {
    shared.config.ping_interval.unwrap_or(Duration::from_secs(25))
}
