//! Channel names and namespaces: what is refused, with which error, for every command.

use serde_json::json;
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::server::{open_config, open_namespace};

use crate::fixtures::config_with;

#[tokio::test]
async fn invalid_channel_names_are_refused() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let long = "x".repeat(256);
    for channel in ["", "chat:", ":lobby", "ch@t:lobby", "chat:a b", "tab\there", long.as_str()] {
        for kind in ["subscribe", "presence", "presence_count", "history"] {
            let code = a.error(kind, json!({"channel": channel})).await;
            assert_eq!(code, "invalid_channel", "{kind} {channel:?}");
        }
        let code = a.error("publish", json!({"channel": channel, "data": 1})).await;
        assert_eq!(code, "invalid_channel", "publish {channel:?}");
    }
}

#[tokio::test]
async fn unsubscribe_from_an_invalid_channel_is_not_subscribed() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    assert_eq!(a.error("unsubscribe", json!({"channel": "chat:"})).await, "not_subscribed");
}

#[tokio::test]
async fn unknown_namespaces_are_refused() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    for kind in ["subscribe", "presence", "presence_count", "history"] {
        assert_eq!(a.error(kind, json!({"channel": "nope:room"})).await, "unknown_namespace");
    }
    let code = a.error("publish", json!({"channel": "nope:room", "data": 1})).await;
    assert_eq!(code, "unknown_namespace");
}

#[tokio::test]
async fn configured_namespaces_accept_their_channels() {
    let node = TestNode::new(&config_with("chat", open_namespace()));
    let mut a = node.client();
    a.subscribe("chat:lobby").await;
    a.subscribe("chat:a:b").await;
    a.subscribe("lobby").await;
    assert_eq!(a.publish("chat:a:b", json!(1)).await, 1);
    assert_eq!(a.next_publication().await["channel"], "chat:a:b");
}
