//! Requests from the handles: routed to the connection when it is ready, queued for the
//! next one otherwise.

use std::sync::Arc;

use switchboard_proto::{CommandKind, Value};
use tokio::sync::oneshot;

use super::live::{Awaiting, Live};
use super::subscriptions::{Phase, Sub};
use super::{Control, Driver};
use crate::builder::PublishQueue;
use crate::client::Op;
use crate::error::Error;

impl Driver {
    /// Hands a request from a handle to the connection when there is one ready, else keeps
    /// it for the next.
    pub(super) fn handle_op(&mut self, live: Option<&mut Live>, op: Option<Op>) -> Control {
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

    pub(super) fn send_request(
        &mut self,
        live: &mut Live,
        kind: CommandKind,
        done: oneshot::Sender<Result<Value, Error>>,
    ) {
        if done.is_closed() {
            // The caller gave up before the command was written: it is cancelled.
            return;
        }
        // Reads are sent again after a lost connection; a publish or an rpc is not (it may
        // have happened, protocol §3).
        let retry =
            (!matches!(kind, CommandKind::Publish(_) | CommandKind::Rpc(_))).then(|| kind.clone());
        let what = Awaiting::Request { retry, done };
        if let Err((e, what)) = live.send(kind, self.settings.ack_timeout, what) {
            what.fail(e);
        }
    }
}

/// A command waiting for a connection.
pub(super) struct Queued {
    pub(super) kind: CommandKind,
    pub(super) done: oneshot::Sender<Result<Value, Error>>,
}
