//! The subscribe and leave sequences: hub entry, broker subscription, history, presence,
//! in one order for every transport, under the channel's lock.

use std::sync::Arc;

use switchboard_broker::{ClientInfo, HistoryQuery, JoinLeave, StreamOptions};
use switchboard_hub::{Delivery, HubError, Sink as _};
use switchboard_proto::{ErrorBody, ErrorCode, Publication, Push, StreamPosition, SubscribeResult};

use super::registry::Registration;
use super::{Node, broker_error, page};
use crate::config::NamespaceOptions;

/// What a subscription registered besides the hub entry: what leaving it must undo.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Membership {
    /// The client joined the channel's presence.
    presence: bool,
    /// Whether its join was announced, and so its leave is.
    announce: JoinLeave,
}

impl Node {
    /// Subscribes `client` to `channel` (in namespace `ns`, whose permissions the caller
    /// checked), recovering from `since` when given. The whole sequence, under the
    /// channel's lock where it must be:
    ///
    /// 1. lock the channel; add the client to the hub as a *pending* subscriber (live
    ///    publications are held back); subscribe the node to the broker with the first
    ///    local subscriber; unlock;
    /// 2. read history: from `since` for a recovery, else only the current position;
    /// 3. join presence (announced if the namespace says so);
    /// 4. hand the reply's result to `answer`, which must queue the reply on the client's
    ///    outbox: what the hub held back goes out after it;
    /// 5. activate: release the held publications newer than the reply's position.
    ///
    /// A recovery too large for one reply is cut to a page that fits the outbox (see
    /// `page`), with `more` and `next`; the client reads the rest with `history`.
    ///
    /// Returns what leaving must undo, or `None` when the subscription did not happen
    /// (`answer` then had the error) or did not survive activation (too many publications
    /// while subscribing: an `unsubscribe` push follows the reply, and the client must
    /// resubscribe with `since`).
    pub async fn subscribe(
        &self,
        client: &Registration,
        info: &ClientInfo,
        channel: &Arc<str>,
        ns: &NamespaceOptions,
        since: Option<&StreamPosition>,
        answer: impl FnOnce(Result<SubscribeResult, ErrorBody>),
    ) -> Option<Membership> {
        let (result, membership) = match self.enter(client, info, channel, ns, since).await {
            Ok(entered) => entered,
            Err(error) => {
                answer(Err(error));
                return None;
            }
        };
        let position = result.offset;
        answer(Ok(result));
        // The reply covered everything up to `position`; release what arrived meanwhile.
        if self.hub.activate(channel, client.id(), position) {
            return Some(membership);
        }
        // Still in the hub, receiving nothing: leaving removes it, and undoes presence and,
        // with the last local subscriber, the broker subscription.
        self.leave(client, info, channel, membership).await;
        let push = Push::Unsubscribe {
            channel: channel.to_string(),
            code: ErrorCode::Unavailable,
            reason: "too many publications while subscribing: resubscribe with `since`".to_owned(),
        };
        client.outbox().deliver(&Arc::new(Delivery::push(push)));
        None
    }

    /// Steps 1–3 of [`subscribe`](Self::subscribe).
    async fn enter(
        &self,
        client: &Registration,
        info: &ClientInfo,
        channel: &Arc<str>,
        ns: &NamespaceOptions,
        since: Option<&StreamPosition>,
    ) -> Result<(SubscribeResult, Membership), ErrorBody> {
        let id = client.id();
        {
            // The hub entry and the node's broker subscription change together, so a
            // subscriber arriving while the last one leaves never ends up in the hub of a
            // node that the broker no longer delivers to.
            let _channel = self.lock_channel(channel).await;
            let sink = Arc::clone(client.outbox());
            self.hub.add(channel, id, sink, ns.max_subscribers).map_err(|e| match e {
                HubError::AlreadySubscribed => {
                    ErrorBody::new(ErrorCode::AlreadySubscribed, "already subscribed")
                }
                other => ErrorBody::new(ErrorCode::LimitExceeded, other.to_string()),
            })?;
            if let Err(e) = self.broker.subscribe(channel).await {
                if self.hub.remove(channel, id) == Some(true) {
                    self.unsubscribe_broker(channel).await;
                }
                return Err(broker_error(&e));
            }
        }
        let options = StreamOptions::new(ns.history_size, ns.history_ttl);
        let query = match since {
            Some(since) => HistoryQuery::since(since.clone(), Some(ns.history_size)),
            None => HistoryQuery::latest(Some(0)),
        };
        let history = match self.broker.history(channel, &query, &options).await {
            Ok(history) => history,
            Err(e) => {
                let _channel = self.lock_channel(channel).await;
                if self.hub.remove(channel, id) == Some(true) {
                    self.unsubscribe_broker(channel).await;
                }
                return Err(broker_error(&e));
            }
        };
        let announce = if ns.join_leave { JoinLeave::Announced } else { JoinLeave::Silent };
        let membership = Membership { presence: ns.presence, announce };
        if ns.presence
            && let Err(e) = self.broker.join(channel, info, announce).await
        {
            tracing::debug!(client = %id, channel = %channel, error = %e, "presence join failed");
        }
        let mut recovered = since.map(|_| history.complete);
        let mut publications = history.publications;
        if recovered != Some(true) {
            publications.clear();
        }
        // A recovery too large for one reply arrives in pages: this reply carries the first
        // and the client reads the rest up to the position with `history`, while the hub
        // releases what follows the position after this reply, as for any subscribe.
        let budget = page::budget(self.options.outbound_queue_bytes);
        let format = client.outbox().format();
        let next = page::cut(&mut publications, format, budget, &history.position.epoch);
        if next.is_some() {
            // A client unaware of pages must not take the first for a whole recovery.
            recovered = Some(false);
        }
        let result = SubscribeResult {
            epoch: history.position.epoch,
            offset: history.position.offset,
            recoverable: ns.history_size > 0,
            recovered,
            publications: publications.iter().map(|p| Publication::clone(p)).collect(),
            more: next.is_some(),
            next,
        };
        Ok((result, membership))
    }

    /// Whether `client` is in `channel`'s hub entry (pending or live). A subscription the
    /// client holds but the hub lost was dropped by a broker resync.
    pub fn is_subscribed(&self, channel: &str, client: &Registration) -> bool {
        self.hub.contains(channel, client.id())
    }

    /// Ends `client`'s subscription to `channel`. Out of the hub first, so nothing more for
    /// the channel reaches it (not even its own leave); out of presence while the node is
    /// still subscribed to the broker, which announces leaves only on subscribed channels;
    /// then the broker subscription, with the last local subscriber.
    pub async fn leave(
        &self,
        client: &Registration,
        info: &ClientInfo,
        channel: &str,
        membership: Membership,
    ) {
        let _channel = self.lock_channel(channel).await;
        let last = self.hub.remove(channel, client.id()) == Some(true);
        if membership.presence
            && let Err(e) = self.broker.leave(channel, info, membership.announce).await
        {
            tracing::debug!(client = %client.id(), channel, error = %e, "presence leave failed");
        }
        if last {
            self.unsubscribe_broker(channel).await;
        }
    }

    async fn unsubscribe_broker(&self, channel: &str) {
        if let Err(e) = self.broker.unsubscribe(channel).await {
            tracing::debug!(channel, error = %e, "broker unsubscribe failed");
        }
    }
}
