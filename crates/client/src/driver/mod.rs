//! The background task: owns the socket, reconnects, resubscribes and recovers.
//!
//! One task per client. Handles talk to it through [`Op`]s; it answers through oneshot
//! channels, delivers subscription events through one unbounded channel per subscription,
//! and publishes its state on a `watch` channel. Between connections it keeps the
//! subscriptions (with each one's last stream position) and the queue of commands waiting
//! for the next connection.
//!
//! This file holds the task loop: attempt, serve, plan the retry, stop. The rest is split by
//! concern: `connect` (the connection step and what `connect`'s answer restores), `token`
//! (fetching and refreshing it), `live` (one connection's socket, codec and commands waiting
//! for a reply), `inbound` (routing what the server sends), `commands` (the handles'
//! requests and the queue kept between connections), `subscriptions` (subscribing,
//! resubscribing with `since`, recovery by offset), `recovery` (recovery read in pages) and
//! `timers` (heartbeats, reply deadlines, retries, refresh).

mod commands;
mod connect;
mod inbound;
mod link;
mod live;
mod recovery;
mod subscriptions;
mod timers;
mod token;

use std::collections::{HashMap, VecDeque};
use std::future::{Future, pending};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use switchboard_proto::{Advice, CommandKind, ConnectRequest};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, sleep_until};

use self::commands::Queued;
use self::live::{Awaiting, Live};
use self::subscriptions::{Phase, Sub};
use crate::backoff::Backoff;
use crate::builder::Settings;
use crate::client::{ConnectionState, Op, StateChange};
use crate::error::{DisconnectReason, Error};
use crate::transport::Opened;

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
    /// The server asked for a new token, or the ticket was spent: fetch one before the next
    /// attempt.
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
            // A ticket authenticated the opening request and is spent: only a JWT goes again.
            token: self.token.clone().filter(|token| !token::is_ticket(token)),
            name: Some(CLIENT_NAME.to_owned()),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        };
        if let Err((e, _)) =
            live.send(CommandKind::Connect(connect), self.settings.ack_timeout, Awaiting::Connect)
        {
            return Some(self.lost(live, DisconnectReason::Protocol(e.to_string())));
        }
        if live.link.has_buffered() {
            self.on_read(&mut live);
        }
        loop {
            if let Some(reason) = live.ended.take() {
                return Some(self.lost(live, reason));
            }
            if let Err(e) = live.flush().await {
                return Some(self.lost(live, DisconnectReason::io(&e)));
            }
            if live.link.is_closed() {
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
                read = live.link.read() => match read {
                    Ok(0) => live.link.handle_transport_closed(),
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

/// The name sent in `connect`, for the server's logs.
const CLIENT_NAME: &str = "switchboard-client-rust";
