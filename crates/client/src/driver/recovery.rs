//! Recovery read in pages (protocol §3): the `history` pages after a subscribe reply that
//! could not hold everything missed, with live publications held until the last page.

use std::sync::Arc;

use switchboard_proto::{CommandKind, HistoryRequest, HistoryResult, Publication, StreamPosition};

use super::Driver;
use super::live::{Awaiting, Live};
use super::subscriptions::{Answer, Phase, event_of};
use crate::client::{Delivery, SubscriptionEvent};
use crate::lenient::Entry;

impl Driver {
    /// Asks for the next page of a recovery, from `since`.
    pub(super) fn request_page(
        &mut self,
        live: &mut Live,
        channel: &Arc<str>,
        since: StreamPosition,
    ) {
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
    pub(super) fn on_page(
        &mut self,
        live: &mut Live,
        channel: &Arc<str>,
        sub_id: u64,
        answer: Answer,
    ) {
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
    pub(super) fn end_paging(&mut self, live: &mut Live, channel: &Arc<str>, recovered: bool) {
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
}

/// A recovery read in pages (protocol §3): what the pages brought so far and the live
/// publications that must wait for them.
pub(super) struct Paging {
    /// The position the subscription recovers from.
    pub(super) since: StreamPosition,
    /// The stream's top when subscribed: the pages must reach it.
    pub(super) target: StreamPosition,
    /// The offset of the last entry read from the pages.
    pub(super) last: u64,
    pub(super) entries: Vec<Entry>,
    /// Live publications pushed meanwhile, in arrival order.
    pub(super) held: Vec<Entry>,
}

impl Paging {
    /// Appends a page's entries after those read so far, skipping any already read.
    /// `false` when the page leaves a gap.
    pub(super) fn append(&mut self, entries: Vec<Entry>) -> bool {
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

/// A reply's publications and those taken out of it as undecodable, in offset order.
pub(super) fn merge(publications: Vec<Publication>, undecodable: Vec<Entry>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = publications.into_iter().map(Entry::Publication).collect();
    if !undecodable.is_empty() {
        entries.extend(undecodable);
        entries.sort_by_key(Entry::offset);
    }
    entries
}
