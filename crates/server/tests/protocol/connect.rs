//! `connect`: what it reports, and that it comes first or not at all.

use serde_json::json;
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::server::open_config;

#[tokio::test]
async fn connect_reports_client_id_version_ping_interval_and_limits() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let result = a.ok("connect", json!({"name": "tests", "version": "0"})).await;
    let id = result["client"].as_str().expect("a client id");
    assert!(!id.is_empty(), "{result}");
    assert_eq!(id, a.ws.id(), "the session's id");
    assert_eq!(result["version"], env!("CARGO_PKG_VERSION"), "{result}");
    assert_eq!(result["ping_interval"], 25, "{result}");
    assert_eq!(result["limits"], json!({"max_message_size": 65536, "max_subscriptions": 128}));
    assert!(result.get("user").is_none(), "anonymous: {result}");

    let mut b = node.client();
    let other = b.connect_id().await;
    assert_ne!(id, other, "client ids are unique per process");
}

#[tokio::test]
async fn connect_reports_configured_limits() {
    let mut config = open_config();
    config.hub.max_subscriptions = 3;
    config.hub.max_message_size = 1000;
    config.ping_interval = None;
    let node = TestNode::new(&config);
    let mut a = node.client();
    let result = a.ok("connect", json!({})).await;
    assert_eq!(result["ping_interval"], 0, "{result}");
    assert_eq!(result["limits"], json!({"max_message_size": 1000, "max_subscriptions": 3}));
}

#[tokio::test]
async fn second_connect_is_a_bad_request() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    a.ok("connect", json!({})).await;
    let reply = a.call("connect", json!({})).await;
    assert_eq!(reply["id"], 2, "{reply}");
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    assert_eq!(reply["error"]["temporary"], false, "{reply}");
    a.ok("ping", json!({})).await;
}

#[tokio::test]
async fn connect_after_another_command_is_a_bad_request() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    a.ok("ping", json!({})).await;
    assert_eq!(a.error("connect", json!({})).await, "bad_request");
}

#[tokio::test]
async fn commands_work_without_connect() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    a.ok("ping", json!({})).await;
    a.subscribe("room").await;
    assert_eq!(a.publish("room", json!("hi")).await, 1);
    let push = a.next_publication().await;
    assert_eq!((push["channel"].clone(), push["offset"].clone()), (json!("room"), json!(1)));
    assert_eq!(
        a.ok("presence", json!({"channel": "room"})).await["clients"].as_array().map(Vec::len),
        Some(1)
    );
    a.ok("history", json!({"channel": "room"})).await;
    a.ok("unsubscribe", json!({"channel": "room"})).await;
}
