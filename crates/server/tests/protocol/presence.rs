//! `presence`, and the joins and leaves subscribers hear.

use serde_json::json;
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::server::{open_config, open_namespace};

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
    b.ok("unsubscribe", json!({"channel": "room"})).await;
    assert_eq!(c.presence("room").await, vec![a_id]);
}

#[tokio::test]
async fn presence_is_denied_where_presence_is_off() {
    let mut options = open_namespace();
    options.presence = false;
    let node = TestNode::new(&config_with("anon", options));
    let mut a = node.client();
    a.subscribe("anon:room").await;
    assert_eq!(a.error("presence", json!({"channel": "anon:room"})).await, "permission_denied");
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
