//! Joins and leaves of large channels, summed into `presence_count` pushes.
//!
//! Announcing every join to every member costs n² pushes for n members joining a channel:
//! 10,000 subscribers arriving at a stadium's channel would queue 50 million `join` pushes.
//! A channel with more subscribers on this node than its namespace's `join_leave_limit`
//! gets a tally instead: the first change past the limit starts it, later changes add to it,
//! and `join_leave_interval` later one `presence_count` push carries the sums and the
//! channel's presence count to every subscriber here. While a tally is open every change of
//! the channel goes into it, so the pushes of one channel stay in the order of its changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use switchboard_broker::Broker;
use switchboard_hub::Hub;
use switchboard_proto::Push;
use switchboard_proto::channel::namespace_of;

use crate::config::NamespaceOptions;

/// A join or a leave.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum Change {
    /// Someone subscribed.
    Join,
    /// Someone left.
    Leave,
}

/// The open tallies of this node's large channels.
pub(super) struct Tallies {
    hub: Arc<Hub>,
    /// Weak: the broker owns the handler that owns this.
    broker: Weak<dyn Broker>,
    namespaces: BTreeMap<String, NamespaceOptions>,
    open: Arc<Mutex<HashMap<Arc<str>, Tally>>>,
}

/// The changes of one channel since its last announcement.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
struct Tally {
    joined: u64,
    left: u64,
}

impl Tally {
    fn add(&mut self, change: Change) {
        match change {
            Change::Join => self.joined += 1,
            Change::Leave => self.left += 1,
        }
    }
}

impl Tallies {
    pub(super) fn new(
        hub: Arc<Hub>,
        broker: Weak<dyn Broker>,
        namespaces: BTreeMap<String, NamespaceOptions>,
    ) -> Self {
        Self { hub, broker, namespaces, open: Arc::default() }
    }

    /// Counts `change` on `channel` when the channel is too large to announce it on its own
    /// (or already has a tally open), and returns whether it did; `false` means: announce
    /// it with a `join` or `leave` push now.
    pub(super) fn count(&self, channel: &str, change: Change) -> bool {
        let Some(ns) = namespace_of(channel).ok().and_then(|name| self.namespaces.get(name)) else {
            return false;
        };
        // The tally's push is sent later, from a task; outside a runtime there is none.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return false };
        let large = self.hub.subscriber_count(channel) > ns.join_leave_limit;
        let mut open = lock(&self.open);
        if let Some(tally) = open.get_mut(channel) {
            tally.add(change);
            return true;
        }
        if !large {
            return false;
        }
        let channel: Arc<str> = channel.into();
        let mut tally = Tally::default();
        tally.add(change);
        open.insert(Arc::clone(&channel), tally);
        drop(open);
        runtime.spawn(announce(
            Arc::clone(&self.hub),
            self.broker.clone(),
            Arc::clone(&self.open),
            channel,
            ns.join_leave_interval,
        ));
        true
    }
}

/// Closes `channel`'s tally after `interval` and pushes it to the channel's subscribers on
/// this node, with the presence count the broker gives (none if it cannot).
async fn announce(
    hub: Arc<Hub>,
    broker: Weak<dyn Broker>,
    open: Arc<Mutex<HashMap<Arc<str>, Tally>>>,
    channel: Arc<str>,
    interval: Duration,
) {
    tokio::time::sleep(interval).await;
    let Some(tally) = lock(&open).remove(&channel) else { return };
    // The node is gone with its broker: nobody to tell.
    let Some(broker) = broker.upgrade() else { return };
    let count = match broker.presence_count(&channel).await {
        Ok(count) => Some(count as u64),
        Err(e) => {
            tracing::debug!(channel = %channel, error = %e, "presence count failed");
            None
        }
    };
    let push = Push::PresenceCount {
        channel: channel.to_string(),
        count,
        joined: tally.joined,
        left: tally.left,
    };
    hub.push(&channel, push);
}

/// Locks the tallies; a panic while holding the lock leaves a map of counters, still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
