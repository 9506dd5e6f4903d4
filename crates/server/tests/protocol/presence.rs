//! `presence`, and the joins and leaves subscribers hear.

use std::time::Duration;

use serde_json::json;
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::server::{open_config, open_namespace};
use tokio::time::Instant;

use crate::fixtures::config_with;

#[tokio::test]
async fn presence_lists_the_subscribers() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let mut b = node.client();
    let mut c = node.client();
    let (a_id, b_id) = (a.connect_id().await, b.connect_id().await);
    assert_eq!(c.presence("room").await, Vec::<String>::new());
    a.subscribe("room").await;
    b.subscribe("room").await;
    let mut expected = vec![a_id.clone(), b_id];
    expected.sort();
    assert_eq!(c.presence("room").await, expected, "sorted by client id");
    assert_eq!(c.ok("presence_count", json!({"channel": "room"})).await, json!({"count": 2}));
    b.ok("unsubscribe", json!({"channel": "room"})).await;
    assert_eq!(c.presence("room").await, vec![a_id]);
    assert_eq!(c.ok("presence_count", json!({"channel": "room"})).await, json!({"count": 1}));
}

#[tokio::test]
async fn presence_is_denied_where_presence_is_off() {
    let mut options = open_namespace();
    options.presence = false;
    let node = TestNode::new(&config_with("anon", options));
    let mut a = node.client();
    a.subscribe("anon:room").await;
    assert_eq!(a.error("presence", json!({"channel": "anon:room"})).await, "permission_denied");
    let code = a.error("presence_count", json!({"channel": "anon:room"})).await;
    assert_eq!(code, "permission_denied");
}

#[tokio::test]
async fn subscribers_hear_a_join_when_another_client_subscribes() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let mut b = node.client();
    let b_id = b.connect_id().await;
    a.subscribe("room").await;
    b.subscribe("room").await;
    let push = a.next_push().await;
    assert_eq!(push, json!({"push": "join", "channel": "room", "client": {"client": b_id}}));
}

#[tokio::test]
async fn subscribers_hear_a_leave_when_a_client_unsubscribes() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let mut b = node.client();
    let b_id = b.connect_id().await;
    a.subscribe("room").await;
    b.subscribe("room").await;
    assert_eq!(a.next_push().await["push"], "join");
    b.ok("unsubscribe", json!({"channel": "room"})).await;
    let push = a.next_push().await;
    assert_eq!(push, json!({"push": "leave", "channel": "room", "client": {"client": b_id}}));
}

#[tokio::test]
async fn subscribers_hear_a_leave_when_a_client_connection_drops() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let mut b = node.client();
    let (a_id, b_id) = (a.connect_id().await, b.connect_id().await);
    a.subscribe("room").await;
    b.subscribe("room").await;
    b.subscribe("other").await;
    assert_eq!(a.next_push().await["push"], "join");
    // No `unsubscribe`: the client is just gone, as its transport reports.
    b.ws.close().await;
    let push = a.next_push().await;
    assert_eq!(push, json!({"push": "leave", "channel": "room", "client": {"client": b_id}}));
    assert_eq!(a.presence("room").await, vec![a_id]);
    assert_eq!(a.presence("other").await, Vec::<String>::new());
    assert_eq!(node.node.connection_count(), 1, "the node forgot the client");
}

#[tokio::test]
async fn no_joins_or_leaves_where_announcements_are_off() {
    let mut options = open_namespace();
    options.join_leave = false;
    let node = TestNode::new(&config_with("calm", options));
    let mut a = node.client();
    let mut b = node.client();
    a.subscribe("calm:room").await;
    b.subscribe("calm:room").await;
    assert_eq!(a.presence("calm:room").await.len(), 2, "presence is still kept");
    b.ok("unsubscribe", json!({"channel": "calm:room"})).await;
    b.publish("calm:room", json!("end")).await;
    let push = a.next_push().await;
    assert_eq!(push["push"], "publication", "no join or leave came first: {push}");
}

#[tokio::test(start_paused = true)]
async fn a_large_channel_sums_its_joins_and_leaves_into_presence_count_pushes() {
    let mut options = open_namespace();
    options.join_leave_limit = 2;
    options.join_leave_interval = Duration::from_secs(1);
    let node = TestNode::new(&config_with("big", options));
    let channel = "big:room";
    let [mut a, mut b, mut c, mut d] = [node.client(), node.client(), node.client(), node.client()];
    let (b_id, c_id) = (b.connect_id().await, c.connect_id().await);
    a.subscribe(channel).await;
    b.subscribe(channel).await;
    let join = json!({"push": "join", "channel": channel, "client": {"client": b_id}});
    assert_eq!(a.next_push().await, join, "two subscribers: announced one by one");

    // Three and four subscribers: past the limit, summed.
    let first = Instant::now();
    c.subscribe(channel).await;
    d.subscribe(channel).await;
    let count =
        json!({"push": "presence_count", "channel": channel, "count": 4, "joined": 2, "left": 0});
    for client in [&mut a, &mut b, &mut c, &mut d] {
        assert_eq!(client.next_push().await, count);
    }
    assert_eq!(first.elapsed(), Duration::from_secs(1), "one push, an interval after the first");

    b.ok("unsubscribe", json!({"channel": channel})).await;
    let count =
        json!({"push": "presence_count", "channel": channel, "count": 3, "joined": 0, "left": 1});
    for client in [&mut a, &mut c, &mut d] {
        assert_eq!(client.next_push().await, count);
    }

    // Back to two: announced one by one again.
    c.ok("unsubscribe", json!({"channel": channel})).await;
    let leave = json!({"push": "leave", "channel": channel, "client": {"client": c_id}});
    for client in [&mut a, &mut d] {
        assert_eq!(client.next_push().await, leave);
    }
    // Nothing else was pushed: the next push is this publication.
    a.publish(channel, json!("end")).await;
    for client in [&mut a, &mut d] {
        assert_eq!(client.next_push().await["data"], "end");
    }
}

#[tokio::test(start_paused = true)]
async fn a_zero_limit_sums_every_change() {
    let mut options = open_namespace();
    options.join_leave_limit = 0;
    let node = TestNode::new(&config_with("sum", options));
    let mut a = node.client();
    let mut b = node.client();
    a.subscribe("sum:room").await;
    b.subscribe("sum:room").await;
    let push = a.next_push().await;
    assert_eq!(
        push,
        json!({"push": "presence_count", "channel": "sum:room", "count": 2, "joined": 2, "left": 0}),
    );
}
