//! Recovery on `subscribe` with `since`: exactly the gap within history, or `recovered:
//! false` with nothing replayed (other epoch, beyond the size or the TTL, beyond the top).

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::server::open_config;

use crate::fixtures::{config_with, history, offsets, publish_numbers, ttl};

#[tokio::test]
async fn recovery_within_history_replays_exactly_the_gap_then_continues_live() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let mut publisher = node.client();
    a.subscribe("room").await;
    let epoch = publish_numbers(&mut publisher, "room", 1..=2).await;
    assert_eq!(a.next_publication().await["offset"], 1);
    assert_eq!(a.next_publication().await["offset"], 2);
    a.ws.close().await;
    publish_numbers(&mut publisher, "room", 3..=5).await;

    let mut a = node.client();
    let result = a.subscribe_since("room", 2, &epoch).await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(result["recoverable"], true, "{result}");
    assert_eq!(result["offset"], 5, "{result}");
    assert_eq!(result["epoch"], epoch.as_str(), "{result}");
    assert_eq!(offsets(&result["publications"]), [3, 4, 5]);
    let data: Vec<&Value> =
        result["publications"].as_array().into_iter().flatten().map(|p| &p["data"]).collect();
    assert_eq!(data, [&json!(3), &json!(4), &json!(5)]);

    publish_numbers(&mut publisher, "room", 6..=7).await;
    assert_eq!(a.next_publication().await["offset"], 6, "no duplicate, no gap");
    assert_eq!(a.next_publication().await["offset"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_while_publishing_has_no_gap_and_no_duplicate() {
    const TOTAL: u64 = 400;
    let node = TestNode::new(&config_with("busy", history(1000)));
    let mut publisher = node.client();
    let epoch = publish_numbers(&mut publisher, "busy:room", 1..=20).await;
    let publishing = tokio::spawn(async move {
        publish_numbers(&mut publisher, "busy:room", 21..=TOTAL).await;
    });
    let mut a = node.client();
    let result = a.subscribe_since("busy:room", 10, &epoch).await;
    assert_eq!(result["recovered"], true, "{result}");
    let top = result["offset"].as_u64().expect("offset");
    let mut seen = offsets(&result["publications"]);
    assert_eq!(seen.last().copied().unwrap_or(10), top, "replayed up to `offset`");
    while seen.last().copied().unwrap_or(10) < TOTAL {
        seen.push(a.next_publication().await["offset"].as_u64().expect("offset"));
    }
    assert_eq!(seen, (11..=TOTAL).collect::<Vec<_>>());
    publishing.await.expect("publisher");
}

#[tokio::test]
async fn recovery_from_another_epoch_is_not_recovered() {
    let node = TestNode::new(&open_config());
    let mut publisher = node.client();
    let epoch = publish_numbers(&mut publisher, "room", 1..=3).await;
    let mut a = node.client();
    let result = a.subscribe_since("room", 1, "notmine").await;
    assert_eq!(result["recovered"], false, "{result}");
    assert!(result.get("publications").is_none(), "nothing replayed: {result}");
    assert_eq!(result["epoch"], epoch.as_str());
    assert_eq!(result["offset"], 3);
    publisher.publish("room", json!(4)).await;
    assert_eq!(a.next_publication().await["offset"], 4, "live from `offset + 1`");
}

#[tokio::test]
async fn recovery_beyond_the_history_size_is_not_recovered() {
    let node = TestNode::new(&config_with("short", history(3)));
    let mut publisher = node.client();
    let epoch = publish_numbers(&mut publisher, "short:room", 1..=5).await;
    let mut a = node.client();
    let result = a.subscribe_since("short:room", 1, &epoch).await;
    assert_eq!(result["recovered"], false, "4 missed, 3 kept: {result}");
    assert!(result.get("publications").is_none(), "not even the part kept: {result}");
    assert_eq!(result["offset"], 5);
    // At the boundary, exactly the history size missed: recovered.
    let mut b = node.client();
    let result = b.subscribe_since("short:room", 2, &epoch).await;
    assert_eq!(result["recovered"], true, "{result}");
    assert_eq!(offsets(&result["publications"]), [3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn recovery_after_the_history_ttl_is_not_recovered() {
    let node = TestNode::with_tokio_clock(&config_with("brief", ttl(Duration::from_millis(200))));
    let mut keeper = node.client();
    // A subscriber keeps the stream (and its epoch) alive: only the history expires.
    keeper.subscribe("brief:room").await;
    let mut publisher = node.client();
    let epoch = publish_numbers(&mut publisher, "brief:room", 1..=3).await;
    tokio::time::advance(Duration::from_millis(150)).await;
    let result = publisher.ok("history", json!({"channel": "brief:room"})).await;
    assert_eq!(offsets(&result["publications"]), [1, 2, 3], "expired too early");
    tokio::time::advance(Duration::from_millis(100)).await;
    let result = publisher.ok("history", json!({"channel": "brief:room"})).await;
    assert_eq!(offsets(&result["publications"]), Vec::<u64>::new(), "never expired");

    let mut a = node.client();
    let result = a.subscribe_since("brief:room", 1, &epoch).await;
    assert_eq!(result["epoch"], epoch.as_str(), "same epoch: {result}");
    assert_eq!(result["recovered"], false, "{result}");
    assert!(result.get("publications").is_none(), "{result}");
    assert_eq!(result["offset"], 3);
}

#[tokio::test(start_paused = true)]
async fn recovery_after_an_unused_stream_expired_is_not_recovered() {
    let node = TestNode::with_tokio_clock(&config_with("brief", ttl(Duration::from_millis(200))));
    let mut publisher = node.client();
    let epoch = publish_numbers(&mut publisher, "brief:room", 1..=2).await;
    // Nobody subscribed: the stream is forgotten and restarts under a new epoch.
    tokio::time::advance(Duration::from_millis(250)).await;
    let result = publisher.ok("history", json!({"channel": "brief:room"})).await;
    assert_ne!(result["epoch"], epoch.as_str(), "the stream never expired: {result}");
    assert_eq!(result["offset"], 0, "{result}");
    let mut a = node.client();
    let result = a.subscribe_since("brief:room", 1, &epoch).await;
    assert_eq!(result["recovered"], false, "{result}");
    assert_ne!(result["epoch"], epoch.as_str(), "{result}");
}

#[tokio::test]
async fn recovery_from_the_current_top_is_recovered_and_empty() {
    let node = TestNode::new(&open_config());
    let mut publisher = node.client();
    let epoch = publish_numbers(&mut publisher, "room", 1..=3).await;
    let mut a = node.client();
    let result = a.subscribe_since("room", 3, &epoch).await;
    assert_eq!(result["recovered"], true, "{result}");
    assert!(result.get("publications").is_none(), "left out when empty: {result}");
    assert_eq!(result["offset"], 3);
    publisher.publish("room", json!(4)).await;
    assert_eq!(a.next_publication().await["offset"], 4);
}

#[tokio::test]
async fn recovery_from_an_offset_beyond_the_top_is_not_recovered() {
    let node = TestNode::new(&open_config());
    let mut publisher = node.client();
    let epoch = publish_numbers(&mut publisher, "room", 1..=3).await;
    let mut a = node.client();
    let result = a.subscribe_since("room", 9, &epoch).await;
    assert_eq!(result["recovered"], false, "{result}");
    assert_eq!(result["offset"], 3);
    publisher.publish("room", json!(4)).await;
    assert_eq!(a.next_publication().await["offset"], 4, "live from `offset + 1`");
}

#[tokio::test]
async fn recovery_without_history_succeeds_only_when_nothing_was_missed() {
    let node = TestNode::new(&config_with("live", history(0)));
    let mut publisher = node.client();
    let epoch = publish_numbers(&mut publisher, "live:room", 1..=2).await;
    let mut a = node.client();
    let result = a.subscribe_since("live:room", 2, &epoch).await;
    assert_eq!(
        (result["recoverable"].clone(), result["recovered"].clone()),
        (json!(false), json!(true))
    );
    let mut b = node.client();
    let result = b.subscribe_since("live:room", 1, &epoch).await;
    assert_eq!(
        (result["recoverable"].clone(), result["recovered"].clone()),
        (json!(false), json!(false))
    );
}
