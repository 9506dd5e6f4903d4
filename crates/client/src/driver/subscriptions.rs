//! Subscriptions across connections: subscribing and resubscribing with `since`, the
//! recovery a subscribe reply brings, live publications in offset order, and retries.

use std::sync::Arc;

use rand::rngs::StdRng;
use switchboard_proto::{
    ChannelRequest, CommandKind, ErrorBody, StreamPosition, SubscribeRequest, SubscribeResult,
    Value,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Driver;
use super::live::{Awaiting, Live};
use super::recovery::{Paging, merge};
use crate::backoff::jitter;
use crate::builder::Settings;
use crate::client::{Delivery, SubscriptionEvent};
use crate::error::Error;
use crate::lenient::Entry;

impl Driver {
    pub(super) fn send_subscribe(&mut self, live: &mut Live, channel: &Arc<str>) {
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

    pub(super) fn send_unsubscribe(
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

    pub(super) fn on_subscribed(
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

    /// A publication (or one that could not be decoded) pushed on `channel`.
    pub(super) fn on_publication(&mut self, live: &mut Live, channel: &str, entry: Entry) {
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

    pub(super) fn deliver_if_active(&self, channel: &str, event: SubscriptionEvent) {
        if let Some(sub) = self.subs.get(channel)
            && sub.is_live()
        {
            let _ = sub.events.send(Delivery::Event(event));
        }
    }
}

/// A subscription as the task keeps it, across connections.
pub(super) struct Sub {
    /// Tells this subscription from a later one to the same channel.
    pub(super) id: u64,
    pub(super) events: mpsc::UnboundedSender<Delivery>,
    /// The last position delivered (or given to `subscribe_since`).
    pub(super) position: Option<StreamPosition>,
    pub(super) phase: Phase,
    /// The `subscribe` call waiting for the first reply.
    pub(super) waiter: Option<oneshot::Sender<Result<(), Error>>>,
    pub(super) retry_at: Option<Instant>,
    pub(super) retries: u32,
    /// A recovery being read in pages.
    pub(super) paging: Option<Paging>,
}

impl Sub {
    /// Whether the server delivers the channel to this subscription now.
    pub(super) fn is_live(&self) -> bool {
        matches!(self.phase, Phase::Active | Phase::Paging(_))
    }

    /// Whether nobody wants it any more: the stream was dropped, or the `subscribe` call
    /// was cancelled before the server answered.
    pub(super) fn is_abandoned(&self) -> bool {
        self.events.is_closed() || self.waiter.as_ref().is_some_and(oneshot::Sender::is_closed)
    }
}

/// Where a subscription is on the current connection.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum Phase {
    /// Not subscribed on this connection (yet).
    Idle,
    /// `subscribe` sent with this id, no reply yet.
    Subscribing(u64),
    /// Publications flow.
    Active,
    /// Subscribed; the recovery's next page was asked for with this id (`history`).
    Paging(u64),
}

/// A reply to a subscription's command.
pub(super) struct Answer {
    pub(super) id: u64,
    pub(super) result: Result<Value, ErrorBody>,
    /// Publications taken out of the result because their data could not be decoded.
    pub(super) undecodable: Vec<Entry>,
}

/// What a subscription delivers for an entry.
pub(super) fn event_of(entry: Entry) -> SubscriptionEvent {
    match entry {
        Entry::Publication(publication) => SubscriptionEvent::Publication(publication),
        Entry::Undecodable { offset, reason } => SubscriptionEvent::Undecodable { offset, reason },
    }
}

/// Delays a subscription's next attempt, backing off like connections do.
pub(super) fn schedule_retry(sub: &mut Sub, settings: &Settings, rng: &mut StdRng) {
    let factor = 1u32 << sub.retries.min(20);
    let bound = settings.min_delay.saturating_mul(factor).min(settings.max_delay);
    sub.retries = sub.retries.saturating_add(1);
    sub.retry_at = Instant::now().checked_add(jitter(rng, bound));
}
