//! The background task: owns the socket, reconnects, resubscribes and recovers.
//!
//! One task per client. Handles talk to it through [`Op`]s; it answers through oneshot
//! channels, delivers subscription events through one unbounded channel per subscription,
//! and publishes its state on a `watch` channel. Between connections it keeps the
//! subscriptions (with each one's last stream position) and the queue of commands waiting
//! for the next connection.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::{Future, pending};
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use rand::rngs::StdRng;
use switchboard_codec::{CloseCode, Connection, Event, Limits, Message, Role};
use switchboard_proto::{
    Advice, ChannelRequest, Command, CommandKind, ConnectRequest, ConnectResult, Empty, ErrorBody,
    Format, HistoryRequest, HistoryResult, Publication, Push, RefreshRequest, RefreshResult, Reply,
    ServerMessage, StreamPosition, SubscribeRequest, SubscribeResult, Value,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::backoff::{Backoff, jitter};
use crate::builder::{BoxError, PublishQueue, Settings, TokenFuture};
use crate::client::{ConnectionState, Delivery, Op, StateChange, SubscriptionEvent};
use crate::error::{DisconnectReason, Error};
use crate::jwt::Lifetime;
use crate::lenient::{self, Entry, Salvaged};
use crate::transport::{self, Io, Opened};

/// The background task's state, kept across connections.
pub(crate) struct Driver {
    settings: Arc<Settings>,
    ops: mpsc::UnboundedReceiver<Op>,
    state: watch::Sender<StateChange>,
    rng: StdRng,
    backoff: Backoff,
    subs: HashMap<Arc<str>, Sub>,
    /// Commands waiting for a connection, in call order.
    outbox: VecDeque<Queued>,
    token: Option<String>,
    /// The server asked for a new token: fetch one before the next attempt.
    token_stale: bool,
    connections: u64,
    last_reason: Option<DisconnectReason>,
}

impl Driver {
    pub(crate) fn new(
        settings: Arc<Settings>,
        ops: mpsc::UnboundedReceiver<Op>,
        state: watch::Sender<StateChange>,
        rng: StdRng,
    ) -> Self {
        Self {
            backoff: Backoff::new(settings.min_delay, settings.max_delay),
            token: settings.token.clone(),
            settings,
            ops,
            state,
            rng,
            subs: HashMap::new(),
            outbox: VecDeque::new(),
            token_stale: false,
            connections: 0,
            last_reason: None,
        }
    }

    /// Connects, serves, and reconnects until told to stop.
    pub(crate) async fn run(mut self) {
        loop {
            self.set_state(ConnectionState::Connecting, self.last_reason.clone(), None);
            let outcome = match self.attempt().await {
                Wait::Exit => return,
                Wait::Done(Err(reason)) => Outcome { reason, lasted: None },
                Wait::Done(Ok(opened)) => match self.serve(opened).await {
                    Some(outcome) => outcome,
                    None => return,
                },
            };
            if !self.plan_retry(outcome).await {
                return;
            }
        }
    }

    /// One connection attempt: a token if one is needed, then TCP, TLS and the handshake.
    async fn attempt(&mut self) -> Wait<Result<Opened, DisconnectReason>> {
        let limit = self.settings.connect_timeout;
        if let Some(provider) = self.settings.provider.clone()
            && self.needs_token()
        {
            let fetched = match self.offline(timeout(limit, provider())).await {
                Wait::Exit => return Wait::Exit,
                Wait::Done(fetched) => fetched,
            };
            match fetched {
                Ok(Ok(token)) if is_usable_token(&token) => {
                    self.token = Some(token);
                    self.token_stale = false;
                }
                Ok(Ok(_)) => {
                    let why = "the token is empty or not printable ascii".to_owned();
                    return Wait::Done(Err(DisconnectReason::Token(why)));
                }
                Ok(Err(e)) => return Wait::Done(Err(DisconnectReason::Token(e.to_string()))),
                Err(_) => {
                    let why = format!("no token within {limit:?}");
                    return Wait::Done(Err(DisconnectReason::Token(why)));
                }
            }
        }
        let open = transport::open(Arc::clone(&self.settings), self.token.clone());
        match self.offline(timeout(limit, open)).await {
            Wait::Exit => Wait::Exit,
            Wait::Done(Ok(opened)) => Wait::Done(opened),
            Wait::Done(Err(_)) => Wait::Done(Err(DisconnectReason::Io {
                kind: io::ErrorKind::TimedOut,
                message: format!("no connection within {limit:?}"),
            })),
        }
    }

    fn needs_token(&self) -> bool {
        let Some(token) = &self.token else { return true };
        let now = SystemTime::now();
        self.token_stale || Lifetime::of(token, now).is_some_and(|life| life.refresh_at() <= now)
    }

    /// Waits for `fut` while handling the handles' requests without a connection.
    async fn offline<F: Future>(&mut self, fut: F) -> Wait<F::Output> {
        let mut fut = pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Wait::Done(out),
                op = self.ops.recv() => {
                    if let Control::Close(done) = self.handle_op(None, op) {
                        self.finish(DisconnectReason::ClientClosed);
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                        return Wait::Exit;
                    }
                }
            }
        }
    }

    /// Runs one upgraded connection. `None` when the application closed the client.
    async fn serve(&mut self, opened: Opened) -> Option<Outcome> {
        let mut live = Live::new(opened);
        let connect = ConnectRequest {
            token: self.token.clone(),
            name: Some(CLIENT_NAME.to_owned()),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        };
        if let Err((e, _)) =
            live.send(CommandKind::Connect(connect), self.settings.ack_timeout, Awaiting::Connect)
        {
            return Some(self.lost(live, DisconnectReason::Protocol(e.to_string())));
        }
        if !live.buf.is_empty() {
            self.on_read(&mut live);
        }
        loop {
            if let Some(reason) = live.ended.take() {
                return Some(self.lost(live, reason));
            }
            if let Err(e) = live.flush().await {
                return Some(self.lost(live, DisconnectReason::io(&e)));
            }
            if live.conn.is_closed() {
                let reason = live.end_reason();
                return Some(self.lost(live, reason));
            }
            let deadline = self.deadline(&live);
            let refreshing = &mut live.refreshing;
            let refresh = async move {
                match refreshing {
                    Some(fetch) => fetch.await,
                    None => pending().await,
                }
            };
            tokio::select! {
                op = self.ops.recv() => {
                    if let Control::Close(done) = self.handle_op(Some(&mut live), op) {
                        live.close().await;
                        live.fail_pending(|| Error::Closed);
                        self.finish(DisconnectReason::ClientClosed);
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                        return None;
                    }
                }
                read = live.io.read_buf(&mut live.buf) => match read {
                    Ok(0) => live.conn.handle_transport_closed(),
                    Ok(_) => {
                        live.last_recv = Instant::now();
                        self.on_read(&mut live);
                    }
                    Err(e) => return Some(self.lost(live, DisconnectReason::io(&e))),
                },
                token = refresh => {
                    live.refreshing = None;
                    self.on_token(&mut live, token);
                }
                () = sleep_until(deadline) => self.on_timer(&mut live),
            }
        }
    }

    /// After a connection or attempt ended: decides, from the reason's advice, whether and
    /// when to try again, and waits. `false` when the client is done.
    async fn plan_retry(&mut self, outcome: Outcome) -> bool {
        let Outcome { reason, lasted } = outcome;
        if lasted.is_some_and(|up| up >= self.settings.stable_after) {
            self.backoff.reset();
        }
        let mut advice = reason.advice();
        if advice == Advice::RefreshToken {
            if self.settings.provider.is_some() {
                self.token_stale = true;
            } else {
                // Nothing can make a static token valid again.
                advice = Advice::Stop;
            }
        }
        let delay = match advice {
            Advice::Stop => {
                self.finish(reason);
                return false;
            }
            Advice::Reconnect => self.backoff.soon(&mut self.rng),
            Advice::Backoff | Advice::RefreshToken => self.backoff.next(&mut self.rng),
        };
        let delay = match &reason {
            DisconnectReason::Refused { retry_after: Some(at_least), .. } => delay.max(*at_least),
            _ => delay,
        };
        tracing::debug!(reason = %reason, ?advice, ?delay, "reconnecting");
        if lasted.is_some() {
            self.set_state(ConnectionState::Disconnected, Some(reason.clone()), None);
        }
        self.set_state(ConnectionState::Reconnecting, Some(reason.clone()), Some(delay));
        self.last_reason = Some(reason);
        matches!(self.offline(sleep(delay)).await, Wait::Done(()))
    }

    /// Hands a request from a handle to the connection when there is one ready, else keeps
    /// it for the next.
    fn handle_op(&mut self, live: Option<&mut Live>, op: Option<Op>) -> Control {
        let mut live = live.filter(|live| live.is_ready());
        let Some(op) = op else {
            // Every handle is gone: nobody can use the connection any more.
            return Control::Close(None);
        };
        match op {
            Op::Close { done } => return Control::Close(Some(done)),
            Op::Subscribe { channel, id, since, events, done } => {
                if let Some(existing) = self.subs.get(&channel) {
                    if !existing.is_abandoned() {
                        let _ = done.send(Err(Error::AlreadySubscribed(channel.to_string())));
                        return Control::Continue;
                    }
                    // Its caller gave up or dropped the stream: the new one takes its place.
                    if let Some(old) = self.subs.remove(&channel)
                        && old.phase != Phase::Idle
                        && let Some(live) = live.as_deref_mut()
                    {
                        self.send_unsubscribe(live, &channel, None);
                    }
                }
                let sub = Sub {
                    id,
                    events,
                    position: since,
                    phase: Phase::Idle,
                    waiter: Some(done),
                    retry_at: None,
                    retries: 0,
                    paging: None,
                };
                self.subs.insert(Arc::clone(&channel), sub);
                if let Some(live) = live {
                    self.send_subscribe(live, &channel);
                }
            }
            Op::Unsubscribe { channel, done } => match (self.subs.remove(&channel), live) {
                (Some(sub), Some(live)) if sub.phase != Phase::Idle => {
                    self.send_unsubscribe(live, &channel, Some(done));
                }
                _ => {
                    let _ = done.send(Ok(()));
                }
            },
            Op::Forget { channel, id } => {
                if self.subs.get(&channel).is_some_and(|sub| sub.id == id)
                    && let Some(sub) = self.subs.remove(&channel)
                    && sub.phase != Phase::Idle
                    && let Some(live) = live
                {
                    self.send_unsubscribe(live, &channel, None);
                }
            }
            Op::Request { kind, done } => match live {
                Some(live) => self.send_request(live, kind, done),
                None => self.enqueue(kind, done),
            },
        }
        Control::Continue
    }

    fn enqueue(&mut self, kind: CommandKind, done: oneshot::Sender<Result<Value, Error>>) {
        let waiting = self.outbox.len();
        match self.settings.queue {
            PublishQueue::Reject => {
                let _ = done.send(Err(Error::NotConnected));
            }
            PublishQueue::Bounded(capacity) if waiting >= capacity => {
                let _ = done.send(Err(Error::QueueFull(waiting)));
            }
            PublishQueue::Bounded(_) => self.outbox.push_back(Queued { kind, done }),
        }
    }

    fn send_request(
        &mut self,
        live: &mut Live,
        kind: CommandKind,
        done: oneshot::Sender<Result<Value, Error>>,
    ) {
        if done.is_closed() {
            // The caller gave up before the command was written: it is cancelled.
            return;
        }
        // Reads are sent again after a lost connection; a publish is not (it may have
        // happened, protocol §3).
        let retry = (!matches!(kind, CommandKind::Publish(_))).then(|| kind.clone());
        let what = Awaiting::Request { retry, done };
        if let Err((e, what)) = live.send(kind, self.settings.ack_timeout, what) {
            what.fail(e);
        }
    }

    fn send_subscribe(&mut self, live: &mut Live, channel: &Arc<str>) {
        let Some(sub) = self.subs.get_mut(channel) else { return };
        if sub.is_abandoned() {
            self.subs.remove(channel);
            return;
        }
        let since = sub.position.clone();
        let request = SubscribeRequest { channel: channel.to_string(), since: since.clone() };
        let what = Awaiting::Subscribe { channel: Arc::clone(channel), sub: sub.id, since };
        match live.send(CommandKind::Subscribe(request), self.settings.ack_timeout, what) {
            Ok(id) => {
                sub.phase = Phase::Subscribing(id);
                sub.retry_at = None;
            }
            Err((e, _)) => {
                if let Some(sub) = self.subs.remove(channel)
                    && let Some(waiter) = sub.waiter
                {
                    let _ = waiter.send(Err(e));
                }
            }
        }
    }

    fn send_unsubscribe(
        &mut self,
        live: &mut Live,
        channel: &str,
        done: Option<oneshot::Sender<Result<(), Error>>>,
    ) {
        let request = ChannelRequest { channel: channel.to_owned() };
        let what = Awaiting::Unsubscribe(done);
        if let Err((e, what)) =
            live.send(CommandKind::Unsubscribe(request), self.settings.ack_timeout, what)
        {
            what.fail(e);
        }
    }

    fn on_read(&mut self, live: &mut Live) {
        if let Err(e) = live.conn.handle_read(&mut live.buf, std::time::Instant::now()) {
            live.protocol_error.get_or_insert_with(|| e.to_string());
        }
        while let Some(event) = live.conn.poll_event() {
            match event {
                Event::Text(bytes) | Event::Binary(bytes) => self.on_message(live, &bytes),
                Event::Close(frame) => {
                    live.close_frame =
                        Some(frame.map_or((CloseCode::NO_STATUS.0, String::new()), |f| {
                            (f.code.0, f.reason)
                        }));
                }
                // The codec has queued the pong; any arrival counts for the heartbeat.
                Event::Ping(_) | Event::Pong(_) => {}
            }
        }
        if let Some(e) = live.conn.error() {
            live.protocol_error.get_or_insert_with(|| e.to_string());
        }
    }

    fn on_message(&mut self, live: &mut Live, bytes: &[u8]) {
        let message: ServerMessage = match live.format.decode(bytes) {
            Ok(message) => message,
            Err(e) => {
                match lenient::salvage(live.format, bytes, &e) {
                    Some(Salvaged::Publication { channel, offset, reason }) => {
                        self.on_publication(live, &channel, Entry::Undecodable { offset, reason });
                    }
                    Some(Salvaged::Reply { reply, undecodable }) => {
                        self.on_reply(live, reply, undecodable);
                    }
                    // Forward compatibility: a message this version cannot read is skipped.
                    None => tracing::debug!(error = %e, "undecodable server message"),
                }
                return;
            }
        };
        match message {
            ServerMessage::Push(push) => self.on_push(live, push),
            ServerMessage::Reply(reply) => self.on_reply(live, reply, Vec::new()),
        }
    }

    /// A reply; `undecodable` holds the publications taken out of its result because their
    /// data could not be decoded.
    fn on_reply(&mut self, live: &mut Live, reply: Reply<Value>, undecodable: Vec<Entry>) {
        let Some(pending) = live.pending.remove(&reply.id) else { return };
        let result = match (reply.result, reply.error) {
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
            (None, None) => Ok(Value::Object(serde_json::Map::new())),
        };
        match pending.what {
            Awaiting::Connect => match result {
                Ok(result) => match serde_json::from_value::<ConnectResult>(result) {
                    Ok(connected) => self.on_connected(live, &connected),
                    Err(e) => {
                        let why = format!("bad connect result: {e}");
                        live.ended = Some(DisconnectReason::Protocol(why));
                    }
                },
                Err(error) => {
                    let ErrorBody { code, message, .. } = error;
                    live.ended = Some(DisconnectReason::ConnectRefused { code, message });
                }
            },
            Awaiting::Subscribe { channel, sub, since } => {
                let answer = Answer { id: reply.id, result, undecodable };
                self.on_subscribed(live, &channel, sub, since, answer);
            }
            Awaiting::Page { channel, sub } => {
                let answer = Answer { id: reply.id, result, undecodable };
                self.on_page(live, &channel, sub, answer);
            }
            Awaiting::Unsubscribe(done) => {
                if let Some(done) = done {
                    // `not_subscribed` means the same to the caller: not subscribed now.
                    let _ = done.send(Ok(()));
                }
            }
            Awaiting::Request { done, .. } => {
                let result = match undecodable.first() {
                    Some(Entry::Undecodable { offset, reason }) => Err(Error::BadReply(format!(
                        "publication {offset} cannot be decoded: {reason}"
                    ))),
                    _ => result.map_err(|e| Error::Command(Box::new(e))),
                };
                let _ = done.send(result);
            }
            Awaiting::Refresh(token) => match result {
                Ok(result) => {
                    let expires_at = serde_json::from_value::<RefreshResult>(result)
                        .map(|r| r.expires_at)
                        .unwrap_or_default();
                    tracing::debug!(expires_at, "token refreshed");
                    self.token = Some(token);
                    live.refresh_at = self.refresh_deadline();
                }
                Err(error) => {
                    let (code, message) = (error.code, &error.message);
                    tracing::debug!(%code, %message, "refresh refused");
                    live.refresh_at = self.refresh_retry();
                }
            },
            Awaiting::Ping => live.ping_outstanding = false,
        }
    }

    fn on_connected(&mut self, live: &mut Live, connected: &ConnectResult) {
        live.connected_at = Some(Instant::now());
        live.app_pings = connected.ping_interval == 0;
        live.interval = if live.app_pings {
            DEFAULT_PING_INTERVAL
        } else {
            Duration::from_secs(u64::from(connected.ping_interval))
        };
        live.max_message_size = connected.limits.max_message_size;
        live.refresh_at = self.refresh_deadline();
        self.connections += 1;
        tracing::debug!(client = %connected.client, "connected");
        self.set_state(ConnectionState::Connected, None, None);
        // Subscriptions first, so that a queued publish to a subscribed channel comes back
        // as a publication on the restored subscription.
        let channels: Vec<Arc<str>> = self.subs.keys().cloned().collect();
        for channel in &channels {
            self.send_subscribe(live, channel);
        }
        while let Some(Queued { kind, done }) = self.outbox.pop_front() {
            self.send_request(live, kind, done);
        }
    }

    fn on_subscribed(
        &mut self,
        live: &mut Live,
        channel: &Arc<str>,
        sub_id: u64,
        since: Option<StreamPosition>,
        answer: Answer,
    ) {
        let Answer { id: reply_id, result, undecodable } = answer;
        let Some(sub) = self.subs.get_mut(channel) else { return };
        // A reply for a subscription since replaced or abandoned: whoever replaced it has
        // sent the unsubscribe that undoes it.
        if sub.id != sub_id || sub.phase != Phase::Subscribing(reply_id) {
            return;
        }
        let result = result.and_then(|value| {
            serde_json::from_value::<SubscribeResult>(value).map_err(|e| {
                let message = format!("bad subscribe result: {e}");
                ErrorBody::new(switchboard_proto::ErrorCode::Internal, message)
            })
        });
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                if let Some(waiter) = sub.waiter.take() {
                    self.subs.remove(channel);
                    let _ = waiter.send(Err(Error::Command(Box::new(error))));
                } else if error.temporary {
                    sub.phase = Phase::Idle;
                    schedule_retry(sub, &self.settings, &mut self.rng);
                    live.retries_scheduled = true;
                } else {
                    let ErrorBody { code, message, .. } = error;
                    let event = SubscriptionEvent::Unsubscribed { code, reason: message };
                    let _ = sub.events.send(Delivery::Event(event));
                    self.subs.remove(channel);
                }
                return;
            }
        };
        sub.phase = Phase::Active;
        sub.retries = 0;
        if let Some(waiter) = sub.waiter.take()
            && waiter.send(Ok(())).is_err()
        {
            // The caller stopped waiting: undo the subscription it no longer wants.
            self.subs.remove(channel);
            self.send_unsubscribe(live, channel, None);
            return;
        }
        let current = StreamPosition { offset: result.offset, epoch: result.epoch };
        let entries = merge(result.publications, undecodable);
        if let Some(since) = &since
            && result.more
            && since.epoch == current.epoch
        {
            // Protocol §3, recovery in pages: read the rest with `history` and hold the live
            // publications meanwhile; the recovery is reported once, after the last page.
            let next = result.next.unwrap_or_else(|| since.clone());
            let mut paging = Paging {
                since: since.clone(),
                target: current,
                last: since.offset,
                entries: Vec::new(),
                held: Vec::new(),
            };
            let contiguous = paging.append(entries);
            sub.paging = Some(paging);
            if contiguous {
                self.request_page(live, channel, next);
            } else {
                self.end_paging(live, channel, false);
            }
            return;
        }
        let send = |d: Delivery| {
            let _ = sub.events.send(d);
        };
        match since {
            Some(since) if result.recovered == Some(true) => {
                let same_epoch = since.epoch == current.epoch;
                let mut last = if same_epoch { since.offset } else { 0 };
                send(Delivery::Position(StreamPosition {
                    offset: last,
                    epoch: current.epoch.clone(),
                }));
                send(Delivery::Event(SubscriptionEvent::Recovered { recovered: true }));
                for entry in entries {
                    // Defensive: never deliver an offset twice, nor out of order.
                    if entry.offset() > last {
                        last = entry.offset();
                        send(Delivery::Event(event_of(entry)));
                    }
                }
            }
            Some(_) => {
                send(Delivery::Position(current.clone()));
                send(Delivery::Event(SubscriptionEvent::Recovered { recovered: false }));
            }
            None => send(Delivery::Position(current.clone())),
        }
        sub.position = Some(current);
    }

    fn on_push(&mut self, live: &mut Live, push: Push) {
        match push {
            Push::Publication { channel, publication } => {
                self.on_publication(live, &channel, Entry::Publication(publication));
            }
            Push::Join { channel, client } => {
                self.deliver_if_active(&channel, SubscriptionEvent::Join(client));
            }
            Push::Leave { channel, client } => {
                self.deliver_if_active(&channel, SubscriptionEvent::Leave(client));
            }
            Push::Unsubscribe { channel, code, reason } => {
                let Some(sub) = self.subs.get_mut(channel.as_str()) else { return };
                if !sub.is_live() {
                    return;
                }
                // A recovery being read in pages starts again from the stored position.
                sub.paging = None;
                tracing::debug!(channel = %channel, %code, %reason, "unsubscribed by the server");
                if code.is_temporary() {
                    // Protocol §4: resubscribe with `since` after a delay.
                    sub.phase = Phase::Idle;
                    schedule_retry(sub, &self.settings, &mut self.rng);
                    live.retries_scheduled = true;
                } else {
                    let event = SubscriptionEvent::Unsubscribed { code, reason };
                    let _ = sub.events.send(Delivery::Event(event));
                    self.subs.remove(channel.as_str());
                }
            }
            Push::Disconnect { code, reason, .. } => live.disconnect_push = Some((code, reason)),
            Push::Unknown => {}
        }
    }

    /// A publication (or one that could not be decoded) pushed on `channel`.
    fn on_publication(&mut self, live: &mut Live, channel: &str, entry: Entry) {
        if let Some(paging) = self.subs.get_mut(channel).and_then(|sub| sub.paging.as_mut()) {
            // Live publications wait for the pages before them.
            paging.held.push(entry);
            return;
        }
        let Some((key, sub)) = self.subs.get_key_value(channel) else { return };
        if sub.phase != Phase::Active {
            // From before a resubscription; the subscribe reply covers it.
            return;
        }
        let Some(position) = &sub.position else { return };
        let offset = entry.offset();
        if offset <= position.offset {
            return;
        }
        if position.offset.checked_add(1) != Some(offset) {
            // Protocol §5: a gap is treated like a lost connection, recovered by
            // subscribing again with `since`.
            tracing::debug!(
                channel = %channel,
                expected = position.offset + 1,
                got = offset,
                "gap in publications: resubscribing"
            );
            let key = Arc::clone(key);
            self.send_unsubscribe(live, &key, None);
            self.send_subscribe(live, &key);
            return;
        }
        let Some(sub) = self.subs.get_mut(channel) else { return };
        if let Some(position) = &mut sub.position {
            position.offset = offset;
        }
        let _ = sub.events.send(Delivery::Event(event_of(entry)));
    }

    /// Asks for the next page of a recovery, from `since`.
    fn request_page(&mut self, live: &mut Live, channel: &Arc<str>, since: StreamPosition) {
        let Some(sub) = self.subs.get_mut(channel) else { return };
        let request =
            HistoryRequest { channel: channel.to_string(), limit: None, since: Some(since) };
        let what = Awaiting::Page { channel: Arc::clone(channel), sub: sub.id };
        match live.send(CommandKind::History(request), self.settings.ack_timeout, what) {
            Ok(id) => sub.phase = Phase::Paging(id),
            Err(_) => self.end_paging(live, channel, false),
        }
    }

    /// A page of a recovery: appends it, then asks for the next or ends the recovery.
    fn on_page(&mut self, live: &mut Live, channel: &Arc<str>, sub_id: u64, answer: Answer) {
        let Answer { id: reply_id, result, undecodable } = answer;
        let Some(sub) = self.subs.get_mut(channel) else { return };
        if sub.id != sub_id || sub.phase != Phase::Paging(reply_id) {
            return;
        }
        let Some(paging) = sub.paging.as_mut() else { return };
        let page =
            result.ok().and_then(|value| serde_json::from_value::<HistoryResult>(value).ok());
        let Some(page) = page.filter(|page| page.epoch == paging.target.epoch) else {
            // Refused, unreadable, or the stream restarted: the gap cannot be filled.
            self.end_paging(live, channel, false);
            return;
        };
        let before = paging.last;
        let contiguous = paging.append(merge(page.publications, undecodable));
        if !contiguous {
            self.end_paging(live, channel, false);
        } else if page.more && paging.last > before {
            let next = StreamPosition { offset: paging.last, epoch: paging.target.epoch.clone() };
            self.request_page(live, channel, next);
        } else {
            let whole = page.complete == Some(true) && paging.last >= paging.target.offset;
            self.end_paging(live, channel, whole);
        }
    }

    /// Ends a recovery read in pages: reports it, delivers what it read when `recovered`,
    /// then the live publications held meanwhile.
    fn end_paging(&mut self, live: &mut Live, channel: &Arc<str>, recovered: bool) {
        let Some(sub) = self.subs.get_mut(channel) else { return };
        let Some(paging) = sub.paging.take() else { return };
        sub.phase = Phase::Active;
        let send = |d: Delivery| {
            let _ = sub.events.send(d);
        };
        let epoch = paging.target.epoch.clone();
        let position = if recovered {
            send(Delivery::Position(StreamPosition { offset: paging.since.offset, epoch }));
            send(Delivery::Event(SubscriptionEvent::Recovered { recovered: true }));
            let last = paging.last;
            for entry in paging.entries {
                send(Delivery::Event(event_of(entry)));
            }
            StreamPosition { offset: last, epoch: paging.target.epoch }
        } else {
            send(Delivery::Position(paging.target.clone()));
            send(Delivery::Event(SubscriptionEvent::Recovered { recovered: false }));
            paging.target
        };
        sub.position = Some(position);
        for entry in paging.held {
            self.on_publication(live, channel, entry);
        }
    }

    fn deliver_if_active(&self, channel: &str, event: SubscriptionEvent) {
        if let Some(sub) = self.subs.get(channel)
            && sub.is_live()
        {
            let _ = sub.events.send(Delivery::Event(event));
        }
    }

    /// A new token arrived from the provider: hand it to the server with `refresh`.
    fn on_token(&mut self, live: &mut Live, token: Result<String, BoxError>) {
        match token {
            Ok(token) if is_usable_token(&token) => {
                let request = CommandKind::Refresh(RefreshRequest { token: token.clone() });
                let what = Awaiting::Refresh(token);
                if live.send(request, self.settings.ack_timeout, what).is_err() {
                    live.refresh_at = self.refresh_retry();
                }
            }
            Ok(_) => {
                tracing::debug!("token provider returned an unusable token");
                live.refresh_at = self.refresh_retry();
            }
            Err(e) => {
                tracing::debug!(error = %e, "token provider failed");
                live.refresh_at = self.refresh_retry();
            }
        }
    }

    fn on_timer(&mut self, live: &mut Live) {
        let now = Instant::now();
        if now >= live.last_recv + live.interval + self.settings.heartbeat_margin {
            live.ended = Some(DisconnectReason::HeartbeatTimeout);
            return;
        }
        if live.is_ready()
            && live.app_pings
            && !live.ping_outstanding
            && now >= live.last_recv + live.interval
        {
            let ping = CommandKind::Ping(Empty {});
            if live.send(ping, self.settings.ack_timeout, Awaiting::Ping).is_ok() {
                live.ping_outstanding = true;
            }
        }
        while let Some(entry) = live.pending.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let timed_out = Error::Timeout(self.settings.ack_timeout);
            match entry.remove().what {
                Awaiting::Request { done, .. } => {
                    let _ = done.send(Err(timed_out));
                }
                Awaiting::Unsubscribe(done) => {
                    if let Some(done) = done {
                        let _ = done.send(Err(timed_out));
                    }
                }
                // Replies come in order: without these, the connection is of no use.
                Awaiting::Connect => live.ended = Some(DisconnectReason::NoReply("connect")),
                Awaiting::Subscribe { .. } => {
                    live.ended = Some(DisconnectReason::NoReply("subscribe"));
                }
                Awaiting::Page { .. } => live.ended = Some(DisconnectReason::NoReply("history")),
                Awaiting::Refresh(_) => live.ended = Some(DisconnectReason::NoReply("refresh")),
                Awaiting::Ping => live.ended = Some(DisconnectReason::NoReply("ping")),
            }
            if live.ended.is_some() {
                return;
            }
        }
        if live.retries_scheduled && live.is_ready() {
            let due: Vec<Arc<str>> = self
                .subs
                .iter()
                .filter(|(_, sub)| {
                    sub.phase == Phase::Idle && sub.retry_at.is_some_and(|t| t <= now)
                })
                .map(|(channel, _)| Arc::clone(channel))
                .collect();
            for channel in &due {
                self.send_subscribe(live, channel);
            }
            live.retries_scheduled = self.subs.values().any(|sub| sub.retry_at.is_some());
        }
        if live.refresh_at.is_some_and(|at| at <= now) && live.refreshing.is_none() {
            live.refresh_at = None;
            if let Some(provider) = &self.settings.provider {
                live.refreshing = Some(provider());
            }
        }
    }

    /// The next moment [`on_timer`](Self::on_timer) has something to do.
    fn deadline(&self, live: &Live) -> Instant {
        let silence = live.last_recv + live.interval;
        let mut at = silence + self.settings.heartbeat_margin;
        if live.is_ready() && live.app_pings && !live.ping_outstanding {
            at = at.min(silence);
        }
        if let Some((_, pending)) = live.pending.first_key_value() {
            at = at.min(pending.deadline);
        }
        if live.retries_scheduled {
            at = self.subs.values().filter_map(|sub| sub.retry_at).fold(at, Instant::min);
        }
        if let Some(refresh) = live.refresh_at {
            at = at.min(refresh);
        }
        at
    }

    /// When to refresh the current token: before a JWT's `exp`, with a provider to ask.
    fn refresh_deadline(&self) -> Option<Instant> {
        self.settings.provider.as_ref()?;
        let now = SystemTime::now();
        let life = Lifetime::of(self.token.as_deref()?, now)?;
        let wait = life.refresh_at().duration_since(now).unwrap_or(Duration::ZERO);
        Instant::now().checked_add(wait)
    }

    /// When to try a failed refresh again: shortly, while the token is still valid.
    fn refresh_retry(&self) -> Option<Instant> {
        let now = SystemTime::now();
        let life = Lifetime::of(self.token.as_deref()?, now)?;
        let left = life.expires_at.duration_since(now).ok()?;
        Instant::now().checked_add(REFRESH_RETRY.min(left / 2))
    }

    /// Tidies up after a connection ended and says how long it lasted.
    fn lost(&mut self, live: Live, reason: DisconnectReason) -> Outcome {
        let lasted = live.connected_at.map(|at| at.elapsed());
        // Reads cut off are sent again first, in their original order.
        for (_, pending) in live.pending.into_iter().rev() {
            match pending.what {
                Awaiting::Request { retry: Some(kind), done } => {
                    self.outbox.push_front(Queued { kind, done });
                }
                what => what.fail(Error::Disconnected),
            }
        }
        for sub in self.subs.values_mut() {
            sub.phase = Phase::Idle;
            sub.retry_at = None;
            // Read again from the stored position on the next connection.
            sub.paging = None;
        }
        Outcome { reason, lasted }
    }

    /// Stops for good: everything waiting fails, every subscription stream ends.
    fn finish(&mut self, reason: DisconnectReason) {
        tracing::debug!(reason = %reason, "client closed");
        for queued in self.outbox.drain(..) {
            let _ = queued.done.send(Err(Error::Closed));
        }
        for (_, sub) in self.subs.drain() {
            if let Some(waiter) = sub.waiter {
                let _ = waiter.send(Err(Error::Closed));
            }
        }
        self.ops.close();
        self.set_state(ConnectionState::Closed, Some(reason), None);
    }

    fn set_state(
        &mut self,
        state: ConnectionState,
        reason: Option<DisconnectReason>,
        retry_in: Option<Duration>,
    ) {
        let change = StateChange {
            state,
            reason,
            retry_in,
            connections: self.connections,
            at: std::time::Instant::now(),
        };
        self.state.send_replace(change);
    }
}

/// One connection, from the 101 response to its end.
struct Live {
    io: Box<dyn Io>,
    conn: Connection,
    buf: BytesMut,
    format: Format,
    next_id: u64,
    /// Commands sent and not yet answered, by id; ids and deadlines increase together.
    pending: BTreeMap<u64, Pending>,
    /// When the server answered `connect`.
    connected_at: Option<Instant>,
    /// The server's ping interval (or ours, when it sends none).
    interval: Duration,
    /// The server sends no pings: send `ping` commands instead (protocol §9).
    app_pings: bool,
    ping_outstanding: bool,
    last_recv: Instant,
    max_message_size: u64,
    close_frame: Option<(u16, String)>,
    disconnect_push: Option<(u16, String)>,
    protocol_error: Option<String>,
    /// Set when the connection must be dropped at the next turn of the loop.
    ended: Option<DisconnectReason>,
    /// Some subscription waits for a retry.
    retries_scheduled: bool,
    refresh_at: Option<Instant>,
    refreshing: Option<TokenFuture>,
}

impl Live {
    fn new(opened: Opened) -> Self {
        Self {
            io: opened.io,
            conn: Connection::new(Role::Client, Limits::default()),
            buf: opened.buf,
            format: opened.format,
            next_id: 1,
            pending: BTreeMap::new(),
            connected_at: None,
            interval: DEFAULT_PING_INTERVAL,
            app_pings: false,
            ping_outstanding: false,
            last_recv: Instant::now(),
            // Until `connect` says otherwise, the protocol's default (protocol §3).
            max_message_size: 64 << 10,
            close_frame: None,
            disconnect_push: None,
            protocol_error: None,
            ended: None,
            retries_scheduled: false,
            refresh_at: None,
            refreshing: None,
        }
    }

    /// Whether commands can be sent: `connect` answered and no close under way.
    fn is_ready(&self) -> bool {
        self.connected_at.is_some() && !self.conn.is_closing() && self.ended.is_none()
    }

    /// Encodes and queues a command, remembering what its reply is for.
    fn send(
        &mut self,
        kind: CommandKind,
        ack: Duration,
        what: Awaiting,
    ) -> Result<u64, (Error, Awaiting)> {
        let id = self.next_id;
        let bytes = match self.format.encode(&Command { id, kind }) {
            Ok(bytes) => bytes,
            Err(e) => return Err((Error::Encode(e.to_string()), what)),
        };
        let len = bytes.len() as u64;
        if len > self.max_message_size {
            return Err((Error::MessageTooLarge { len, max: self.max_message_size }, what));
        }
        let message =
            if self.format.is_binary() { Message::Binary(bytes) } else { Message::Text(bytes) };
        if self.conn.send(message).is_err() {
            return Err((Error::Disconnected, what));
        }
        self.next_id += 1;
        self.pending.insert(id, Pending { deadline: Instant::now() + ack, what });
        Ok(id)
    }

    /// Writes what the codec queued.
    async fn flush(&mut self) -> io::Result<()> {
        let mut wrote = false;
        while let Some(bytes) = self.conn.poll_transmit() {
            timed_write(self.io.write_all(&bytes)).await?;
            wrote = true;
        }
        if wrote {
            // TLS buffers records until flushed.
            timed_write(self.io.flush()).await?;
        }
        Ok(())
    }

    /// Starts the close handshake (1000) and gives the server a moment to answer.
    async fn close(&mut self) {
        let _ = self.conn.close(CloseCode::NORMAL, "", std::time::Instant::now());
        let _ = timeout(CLOSE_WAIT, async {
            while self.flush().await.is_ok() && !self.conn.is_closed() {
                match self.io.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = self.conn.handle_read(&mut self.buf, std::time::Instant::now());
                        while self.conn.poll_event().is_some() {}
                    }
                }
            }
            let _ = self.io.shutdown().await;
        })
        .await;
    }

    fn fail_pending(&mut self, error: impl Fn() -> Error) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            pending.what.fail(error());
        }
    }

    /// Why the connection ended, from what the server said and did.
    fn end_reason(&self) -> DisconnectReason {
        if let Some(e) = &self.protocol_error {
            return DisconnectReason::Protocol(e.clone());
        }
        // Protocol §4: the close code decides; the `disconnect` push stands in for a close
        // frame that never came (1006) or came without a code (1005).
        let frame = self.close_frame.as_ref().filter(|(code, _)| *code != CloseCode::NO_STATUS.0);
        match frame.or(self.disconnect_push.as_ref()).or(self.close_frame.as_ref()) {
            Some((code, reason)) => {
                DisconnectReason::Closed { code: *code, reason: reason.clone() }
            }
            None => DisconnectReason::Closed { code: CloseCode::ABNORMAL.0, reason: String::new() },
        }
    }
}

/// A subscription as the task keeps it, across connections.
struct Sub {
    /// Tells this subscription from a later one to the same channel.
    id: u64,
    events: mpsc::UnboundedSender<Delivery>,
    /// The last position delivered (or given to `subscribe_since`).
    position: Option<StreamPosition>,
    phase: Phase,
    /// The `subscribe` call waiting for the first reply.
    waiter: Option<oneshot::Sender<Result<(), Error>>>,
    retry_at: Option<Instant>,
    retries: u32,
    /// A recovery being read in pages.
    paging: Option<Paging>,
}

impl Sub {
    /// Whether the server delivers the channel to this subscription now.
    fn is_live(&self) -> bool {
        matches!(self.phase, Phase::Active | Phase::Paging(_))
    }

    /// Whether nobody wants it any more: the stream was dropped, or the `subscribe` call
    /// was cancelled before the server answered.
    fn is_abandoned(&self) -> bool {
        self.events.is_closed() || self.waiter.as_ref().is_some_and(oneshot::Sender::is_closed)
    }
}

/// Where a subscription is on the current connection.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Phase {
    /// Not subscribed on this connection (yet).
    Idle,
    /// `subscribe` sent with this id, no reply yet.
    Subscribing(u64),
    /// Publications flow.
    Active,
    /// Subscribed; the recovery's next page was asked for with this id (`history`).
    Paging(u64),
}

/// A recovery read in pages (protocol §3): what the pages brought so far and the live
/// publications that must wait for them.
struct Paging {
    /// The position the subscription recovers from.
    since: StreamPosition,
    /// The stream's top when subscribed: the pages must reach it.
    target: StreamPosition,
    /// The offset of the last entry read from the pages.
    last: u64,
    entries: Vec<Entry>,
    /// Live publications pushed meanwhile, in arrival order.
    held: Vec<Entry>,
}

impl Paging {
    /// Appends a page's entries after those read so far, skipping any already read.
    /// `false` when the page leaves a gap.
    fn append(&mut self, entries: Vec<Entry>) -> bool {
        for entry in entries {
            let offset = entry.offset();
            if offset <= self.last {
                continue;
            }
            if self.last.checked_add(1) != Some(offset) {
                return false;
            }
            self.last = offset;
            self.entries.push(entry);
        }
        true
    }
}

/// A command sent, waiting for its reply.
struct Pending {
    deadline: Instant,
    what: Awaiting,
}

/// What a reply is for.
enum Awaiting {
    Connect,
    Subscribe {
        channel: Arc<str>,
        sub: u64,
        since: Option<StreamPosition>,
    },
    /// A page of a recovery.
    Page {
        channel: Arc<str>,
        sub: u64,
    },
    Unsubscribe(Option<oneshot::Sender<Result<(), Error>>>),
    /// An application's command; `retry` keeps a read to send again after a lost
    /// connection.
    Request {
        retry: Option<CommandKind>,
        done: oneshot::Sender<Result<Value, Error>>,
    },
    Refresh(String),
    Ping,
}

impl Awaiting {
    /// Tells whoever waits that the command will get no reply.
    fn fail(self, error: Error) {
        match self {
            Awaiting::Request { done, .. } => {
                let _ = done.send(Err(error));
            }
            Awaiting::Unsubscribe(Some(done)) => {
                // Whatever happened, the subscription is gone on this side; a new
                // connection will not restore it.
                let _ = done.send(Ok(()));
            }
            _ => {}
        }
    }
}

/// A reply to a subscription's command.
struct Answer {
    id: u64,
    result: Result<Value, ErrorBody>,
    /// Publications taken out of the result because their data could not be decoded.
    undecodable: Vec<Entry>,
}

/// A command waiting for a connection.
struct Queued {
    kind: CommandKind,
    done: oneshot::Sender<Result<Value, Error>>,
}

/// How a connection or attempt ended.
struct Outcome {
    reason: DisconnectReason,
    /// How long the connection was up after `connect`, when it got that far.
    lasted: Option<Duration>,
}

/// The result of waiting while offline.
enum Wait<T> {
    Done(T),
    /// The client was closed meanwhile.
    Exit,
}

enum Control {
    Continue,
    Close(Option<oneshot::Sender<()>>),
}

/// A reply's publications and those taken out of it as undecodable, in offset order.
fn merge(publications: Vec<Publication>, undecodable: Vec<Entry>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = publications.into_iter().map(Entry::Publication).collect();
    if !undecodable.is_empty() {
        entries.extend(undecodable);
        entries.sort_by_key(Entry::offset);
    }
    entries
}

/// What a subscription delivers for an entry.
fn event_of(entry: Entry) -> SubscriptionEvent {
    match entry {
        Entry::Publication(publication) => SubscriptionEvent::Publication(publication),
        Entry::Undecodable { offset, reason } => SubscriptionEvent::Undecodable { offset, reason },
    }
}

/// Delays a subscription's next attempt, backing off like connections do.
fn schedule_retry(sub: &mut Sub, settings: &Settings, rng: &mut StdRng) {
    let factor = 1u32 << sub.retries.min(20);
    let bound = settings.min_delay.saturating_mul(factor).min(settings.max_delay);
    sub.retries = sub.retries.saturating_add(1);
    sub.retry_at = Instant::now().checked_add(jitter(rng, bound));
}

async fn timed_write(write: impl Future<Output = io::Result<()>>) -> io::Result<()> {
    timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
}

fn is_usable_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// The name sent in `connect`, for the server's logs.
const CLIENT_NAME: &str = "switchboard-client-rust";
/// The server's default ping interval (protocol §3), assumed until `connect` answers, and
/// the interval of our own `ping` commands when the server sends no pings.
const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// A socket that accepts no bytes for this long is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `close` waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How soon a failed token refresh is tried again (at most half the time left).
const REFRESH_RETRY: Duration = Duration::from_secs(5);
