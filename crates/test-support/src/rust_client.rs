//! Bounded waits on the Rust client (`switchboard-client`), for tests that drive it against
//! real servers: a builder with fast reconnects, and the next event, publication or state,
//! each failing the test after [`LIMIT`].

#![allow(clippy::missing_panics_doc)]

use std::time::Duration;

use serde_json::Value;
use switchboard_client::{Client, ClientBuilder, StateChange, Subscription, SubscriptionEvent};

/// Every wait here is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A client builder for `url` with fast reconnects (20 to 200 ms), for tests that are not
/// about delays.
pub fn fast(url: &str) -> ClientBuilder {
    Client::builder(url).reconnect_delay(Duration::from_millis(20), Duration::from_millis(200))
}

/// Waits until the client is connected.
pub async fn connected(client: &Client) {
    tokio::time::timeout(LIMIT, client.wait_connected())
        .await
        .expect("connected in time")
        .expect("connected, not closed");
}

/// Waits until the client's state satisfies `pred`; that state.
pub async fn wait_state(client: &Client, pred: impl FnMut(&StateChange) -> bool) -> StateChange {
    let mut states = client.state_changes();
    let reached = tokio::time::timeout(LIMIT, states.wait_for(pred))
        .await
        .expect("the state in time")
        .expect("the client's task to be running");
    reached.clone()
}

/// The next event.
pub async fn next_event(sub: &mut Subscription) -> SubscriptionEvent {
    tokio::time::timeout(LIMIT, sub.recv())
        .await
        .expect("an event in time")
        .expect("the subscription to be open")
}

/// The next publication's offset and data, skipping joins and leaves.
pub async fn next_publication(sub: &mut Subscription) -> (u64, Value) {
    loop {
        match next_event(sub).await {
            SubscriptionEvent::Publication(p) => return (p.offset, p.data),
            SubscriptionEvent::Join(_) | SubscriptionEvent::Leave(_) => {}
            other => panic!("expected a publication, got {other:?}"),
        }
    }
}

/// The next event that is not a join or a leave.
pub async fn next_non_presence(sub: &mut Subscription) -> SubscriptionEvent {
    loop {
        match next_event(sub).await {
            SubscriptionEvent::Join(_) | SubscriptionEvent::Leave(_) => {}
            other => return other,
        }
    }
}

/// What a subscriber saw of publications `1..=n` published with their offset as data:
/// panics on a loss, a duplicate, a reordering or an unrecoverable gap; returns how many
/// `recovered: true` it saw.
pub async fn expect_every_publication(sub: &mut Subscription, n: u64) -> usize {
    let mut expected = 1;
    let mut recoveries = 0;
    while expected <= n {
        match next_event(sub).await {
            SubscriptionEvent::Publication(p) => {
                assert_eq!(p.offset, expected, "lost or duplicated around offset {expected}");
                assert_eq!(p.data, serde_json::json!(expected));
                expected += 1;
            }
            SubscriptionEvent::Recovered { recovered: true } => recoveries += 1,
            SubscriptionEvent::Join(_) | SubscriptionEvent::Leave(_) => {}
            other => panic!("unexpected {other:?} after {} publications", expected - 1),
        }
    }
    recoveries
}
