//! The broker conformance suite against `NatsBroker`, each check on its own `nats-server`.

use switchboard_broker::conformance::{self, Task};
use switchboard_broker_nats::{NatsBroker, NatsConfig};
use switchboard_test_support::nats::NatsServer;

async fn broker(nats: &NatsServer) -> NatsBroker {
    NatsBroker::connect(NatsConfig::new(nats.url())).await.expect("connecting to nats")
}

fn spawn(task: Task) -> Task {
    let task = tokio::spawn(task);
    Box::pin(async move { task.await.expect("publisher task panicked") })
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            let nats = NatsServer::start();
            conformance::$check(&broker(&nats).await).await;
        }
    )*};
}

conformance!(
    offsets_are_consecutive_from_one,
    publish_position_matches_history,
    history_creates_the_stream,
    history_returns_the_latest,
    history_returns_everything_since_a_position,
    unrecoverable_since_returns_nothing,
    zero_history_size_still_assigns_offsets,
    delivers_only_subscribed_channels,
    presence_lists_joined_clients,
    announces_joins_and_leaves,
    channels_are_independent,
    node_messages_reach_the_named_node,
    nodes_are_listed_until_their_record_expires,
);

#[tokio::test]
async fn history_is_capped_in_bytes_from_the_front() {
    let nats = NatsServer::start();
    let mut config = NatsConfig::new(nats.url());
    config.max_history_bytes = conformance::HISTORY_BYTES;
    let broker = NatsBroker::connect(config).await.expect("connecting to nats");
    conformance::history_is_capped_in_bytes_from_the_front(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_are_delivered_in_offset_order() {
    let nats = NatsServer::start();
    conformance::concurrent_publishers_are_delivered_in_offset_order(broker(&nats).await, spawn)
        .await;
}

/// The whole suite, so checks added to it later run here too; every check gets a new
/// broker (a new node) on one shared server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_the_whole_suite() {
    let nats = NatsServer::start();
    let make = || {
        // `run_all` wants a plain constructor; connecting is async.
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(broker(&nats)))
    };
    conformance::run_all(make, spawn).await;
}
