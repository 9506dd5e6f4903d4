//! `history`: the last publications, since a position, completeness, and where it is off.

use serde_json::json;
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::server::open_config;

use crate::fixtures::{config_with, history, offsets, publish_numbers};

#[tokio::test]
async fn history_returns_the_last_n_publications() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let epoch = publish_numbers(&mut a, "room", 1..=5).await;
    let result = a.ok("history", json!({"channel": "room", "limit": 3})).await;
    assert_eq!(result["epoch"], epoch.as_str());
    assert_eq!(result["offset"], 5);
    assert_eq!(offsets(&result["publications"]), [3, 4, 5]);
    assert_eq!(result["publications"][0]["data"], 3, "{result}");
    let all = a.ok("history", json!({"channel": "room"})).await;
    assert_eq!(offsets(&all["publications"]), [1, 2, 3, 4, 5]);
    let none = a.ok("history", json!({"channel": "room", "limit": 0})).await;
    assert_eq!(offsets(&none["publications"]), Vec::<u64>::new());
}

#[tokio::test]
async fn history_keeps_only_the_namespace_history_size() {
    let node = TestNode::new(&config_with("short", history(3)));
    let mut a = node.client();
    publish_numbers(&mut a, "short:room", 1..=5).await;
    let all = a.ok("history", json!({"channel": "short:room"})).await;
    assert_eq!(offsets(&all["publications"]), [3, 4, 5]);
    let capped = a.ok("history", json!({"channel": "short:room", "limit": 50})).await;
    assert_eq!(offsets(&capped["publications"]), [3, 4, 5]);
}

#[tokio::test]
async fn history_of_an_unused_channel_is_empty_at_offset_zero() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let result = a.ok("history", json!({"channel": "void"})).await;
    assert_eq!(result["offset"], 0, "{result}");
    assert_eq!(offsets(&result["publications"]), Vec::<u64>::new());
}

#[tokio::test]
async fn history_since_an_offset_returns_what_followed() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let epoch = publish_numbers(&mut a, "room", 1..=5).await;
    let since = json!({"offset": 2, "epoch": epoch});
    let result = a.ok("history", json!({"channel": "room", "since": since})).await;
    assert_eq!(offsets(&result["publications"]), [3, 4, 5]);
    assert_eq!(result["offset"], 5);
    let since = json!({"offset": 5, "epoch": epoch});
    let result = a.ok("history", json!({"channel": "room", "since": since})).await;
    assert_eq!(offsets(&result["publications"]), Vec::<u64>::new());
}

#[tokio::test]
async fn history_since_reports_whether_it_is_complete() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let epoch = publish_numbers(&mut a, "room", 1..=5).await;
    let since = json!({"offset": 1, "epoch": epoch});
    let result = a.ok("history", json!({"channel": "room", "since": since, "limit": 4})).await;
    assert_eq!(result["complete"], true, "{result}");
    assert_eq!(offsets(&result["publications"]), [2, 3, 4, 5]);
    // More came after `since` than `limit`: never a partial answer.
    let result = a.ok("history", json!({"channel": "room", "since": since, "limit": 2})).await;
    assert_eq!(result["complete"], false, "{result}");
    assert_eq!(offsets(&result["publications"]), Vec::<u64>::new());
    let result = a.ok("history", json!({"channel": "room"})).await;
    assert!(result.get("complete").is_none(), "only with since: {result}");
}

#[tokio::test]
async fn history_since_a_wrong_epoch_returns_nothing() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let epoch = publish_numbers(&mut a, "room", 1..=3).await;
    let since = json!({"offset": 1, "epoch": "notmine"});
    let result = a.ok("history", json!({"channel": "room", "since": since})).await;
    assert_eq!(offsets(&result["publications"]), Vec::<u64>::new());
    assert_eq!(result["epoch"], epoch.as_str(), "the current epoch, to tell the mismatch");
    assert_eq!(result["offset"], 3);
}

#[tokio::test]
async fn history_is_denied_where_history_is_off() {
    let node = TestNode::new(&config_with("live", history(0)));
    let mut a = node.client();
    assert_eq!(a.error("history", json!({"channel": "live:room"})).await, "permission_denied");
    // Offsets are still assigned.
    assert_eq!(a.publish("live:room", json!(1)).await, 1);
    assert_eq!(a.publish("live:room", json!(2)).await, 2);
}
