//! `subscribe` and `unsubscribe`: the stream position reported, duplicates, what stops after
//! an unsubscribe, and the limits on subscriptions per client and subscribers per channel.

use serde_json::{Value, json};
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::server::{open_config, open_namespace};

use crate::fixtures::{config_with, quiet};

#[tokio::test]
async fn subscribe_reports_the_stream_position() {
    let node = TestNode::new(&open_config());
    let mut publisher = node.client();
    let ack = publisher.ok("publish", json!({"channel": "room", "data": 1})).await;
    publisher.publish("room", json!(2)).await;
    let mut a = node.client();
    let result = a.subscribe("room").await;
    assert_eq!(result["offset"], 2, "{result}");
    assert_eq!(result["epoch"], ack["epoch"], "{result}");
    assert_eq!(result["recoverable"], true, "{result}");
    assert!(result.get("recovered").is_none(), "no since, no recovered: {result}");
    assert!(result.get("publications").is_none(), "{result}");
    publisher.publish("room", json!(3)).await;
    assert_eq!(a.next_publication().await["offset"], 3, "the first push follows `offset`");
}

#[tokio::test]
async fn subscribing_twice_is_already_subscribed() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    a.subscribe("room").await;
    a.subscribe("marker").await;
    assert_eq!(a.error("subscribe", json!({"channel": "room"})).await, "already_subscribed");
    // Still subscribed, once: a publication arrives once.
    a.publish("room", json!(1)).await;
    a.publish("marker", json!(1)).await;
    assert_eq!(a.next_publication().await["channel"], "room");
    assert_eq!(a.next_publication().await["channel"], "marker", "no duplicate of `room` 1");
}

#[tokio::test]
async fn unsubscribing_when_not_subscribed_is_not_subscribed() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    assert_eq!(a.error("unsubscribe", json!({"channel": "room"})).await, "not_subscribed");
    a.subscribe("room").await;
    a.ok("unsubscribe", json!({"channel": "room"})).await;
    assert_eq!(a.error("unsubscribe", json!({"channel": "room"})).await, "not_subscribed");
}

#[tokio::test]
async fn unsubscribed_channels_deliver_nothing_more() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let mut b = node.client();
    a.subscribe("room").await;
    a.subscribe("marker").await;
    a.ok("unsubscribe", json!({"channel": "room"})).await;
    b.publish("room", json!("unheard")).await;
    b.publish("marker", json!("heard")).await;
    // The outbound queue is FIFO: had `room` been delivered, it would come first.
    let push = a.next_publication().await;
    assert_eq!((push["channel"].clone(), push["data"].clone()), (json!("marker"), json!("heard")));
}

#[tokio::test]
async fn resubscribing_after_unsubscribe_starts_from_the_new_top() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let mut b = node.client();
    a.subscribe("room").await;
    b.publish("room", json!(1)).await;
    assert_eq!(a.next_publication().await["offset"], 1);
    a.ok("unsubscribe", json!({"channel": "room"})).await;
    b.publish("room", json!(2)).await;
    assert_eq!(a.subscribe("room").await["offset"], 2);
    b.publish("room", json!(3)).await;
    assert_eq!(a.next_publication().await["offset"], 3);
}

#[tokio::test]
async fn no_push_for_the_channel_follows_the_unsubscribe_reply() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let mut b = node.client();
    a.subscribe("room").await;
    a.subscribe("marker").await;
    b.subscribe("room").await;
    b.publish("room", json!("before")).await;
    a.ok("unsubscribe", json!({"channel": "room"})).await;
    // Pushes that came before the reply were kept aside by `reply`; only later ones count.
    a.pushes.clear();
    b.publish("room", json!("after")).await;
    b.publish("marker", json!("end")).await;
    let mut after = Vec::new();
    loop {
        let push = a.next_push().await;
        if push["push"] == "publication" && push["channel"] == "marker" {
            break;
        }
        after.push(push);
    }
    let stray: Vec<&Value> = after.iter().filter(|p| p["channel"] == "room").collect();
    assert!(stray.is_empty(), "pushes for `room` after the unsubscribe reply: {stray:?}");
}

#[tokio::test]
async fn no_publication_follows_the_unsubscribe_reply_when_pushes_are_backed_up() {
    let mut config = config_with("quiet", quiet());
    config.hub.outbound_queue_bytes = 64 << 20;
    let node = TestNode::new(&config);
    let mut a = node.client();
    let mut b = node.client();
    a.subscribe("quiet:room").await;
    // A reads nothing while 8 MiB of publications queue up for it.
    let payload = "x".repeat(16 * 1024);
    for _ in 0..500 {
        b.publish("quiet:room", json!(payload)).await;
    }
    a.ok("unsubscribe", json!({"channel": "quiet:room"})).await;
    let before = a.pushes.iter().filter(|p| p["push"] == "publication").count();
    a.pushes.clear();
    // The ping's reply comes after everything queued for A before it.
    a.ok("ping", json!({})).await;
    let mut after = 0;
    while let Some(push) = a.pushes.pop_front() {
        if push["push"] != "publication" {
            continue;
        }
        after += 1;
    }
    assert_eq!(before, 500, "every publication came before the unsubscribe reply");
    assert_eq!(
        after, 0,
        "{after} publications for `quiet:room` came after the unsubscribe reply ({before} before)"
    );
}

#[tokio::test]
async fn subscriptions_per_connection_are_limited() {
    let mut config = open_config();
    config.hub.max_subscriptions = 2;
    let node = TestNode::new(&config);
    let mut a = node.client();
    a.subscribe("one").await;
    a.subscribe("two").await;
    let reply = a.call("subscribe", json!({"channel": "three"})).await;
    assert_eq!(reply["error"]["code"], "limit_exceeded", "{reply}");
    assert_eq!(reply["error"]["temporary"], false, "{reply}");
    // Another connection has its own budget; leaving a channel frees a slot.
    let mut b = node.client();
    b.subscribe("three").await;
    a.ok("unsubscribe", json!({"channel": "one"})).await;
    a.subscribe("three").await;
}

#[tokio::test]
async fn subscribers_per_channel_are_limited() {
    let mut options = open_namespace();
    options.max_subscribers = 2;
    let node = TestNode::new(&config_with("small", options));
    let mut a = node.client();
    let mut b = node.client();
    let mut c = node.client();
    a.subscribe("small:room").await;
    b.subscribe("small:room").await;
    assert_eq!(c.error("subscribe", json!({"channel": "small:room"})).await, "limit_exceeded");
    // The limit is per channel, and a leave frees a slot.
    c.subscribe("small:other").await;
    a.ok("unsubscribe", json!({"channel": "small:room"})).await;
    c.subscribe("small:room").await;
}

#[tokio::test]
async fn a_full_channel_frees_a_slot_when_a_subscriber_disconnects() {
    let mut options = open_namespace();
    options.max_subscribers = 1;
    let node = TestNode::new(&config_with("small", options));
    let mut a = node.client();
    let mut b = node.client();
    a.subscribe("small:room").await;
    assert_eq!(b.error("subscribe", json!({"channel": "small:room"})).await, "limit_exceeded");
    a.ws.close().await;
    // The session's close is the leave: the slot is free as soon as it returns.
    b.subscribe("small:room").await;
}
