//! `publish`: acknowledgements, what subscribers receive (in JSON and MessagePack), and
//! where clients may not publish.

use serde_json::json;
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::server::{open_config, open_namespace};

use crate::fixtures::config_with;

#[tokio::test]
async fn publish_acks_with_consecutive_offsets_in_one_epoch() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let first = a.ok("publish", json!({"channel": "room", "data": 1})).await;
    let second = a.ok("publish", json!({"channel": "room", "data": 2})).await;
    let other = a.ok("publish", json!({"channel": "other", "data": 3})).await;
    assert_eq!((first["offset"].clone(), second["offset"].clone()), (json!(1), json!(2)));
    assert_eq!(first["epoch"], second["epoch"]);
    assert_eq!(other["offset"], 1, "offsets are per channel: {other}");
    assert!(first["epoch"].as_str().is_some_and(|e| !e.is_empty()), "{first}");
}

#[tokio::test]
async fn publications_carry_data_and_the_publisher() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let mut b = node.client();
    a.subscribe("room").await;
    let b_id = b.connect_id().await;
    let data = json!({"text": "hello", "n": [1, 2.5, null, true], "nested": {"k": "v"}});
    b.publish("room", data.clone()).await;
    let push = a.next_publication().await;
    assert_eq!(
        push,
        json!({"push": "publication", "channel": "room", "offset": 1, "data": data,
               "info": {"client": b_id}})
    );
}

#[tokio::test]
async fn publisher_subscribed_to_the_channel_gets_its_ack_and_its_own_publication() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let id = a.connect_id().await;
    a.subscribe("room").await;
    for n in 1..=20u64 {
        let ack = a.ok("publish", json!({"channel": "room", "data": n})).await;
        assert_eq!(ack["offset"], n, "{ack}");
        let push = a.next_publication().await;
        assert_eq!(push["offset"], n, "{push}");
        assert_eq!(push["data"], n, "{push}");
        assert_eq!(push["info"]["client"], id.as_str(), "{push}");
    }
}

#[tokio::test]
async fn publish_is_denied_where_clients_may_not_publish() {
    let mut options = open_namespace();
    options.allow_publish = false;
    let node = TestNode::new(&config_with("news", options));
    let mut a = node.client();
    a.subscribe("news:world").await;
    let reply = a.call("publish", json!({"channel": "news:world", "data": 1})).await;
    assert_eq!(reply["error"]["code"], "permission_denied", "{reply}");
    assert_eq!(reply["error"]["temporary"], false, "{reply}");
    // Nothing was published.
    assert_eq!(a.ok("history", json!({"channel": "news:world"})).await["offset"], 0);
}

#[tokio::test]
async fn msgpack_connection_subscribes_publishes_and_receives_binary_frames() {
    let node = TestNode::new(&open_config());
    let mut a = node.client_msgpack();
    let mut json_client = node.client();
    let result = a.subscribe("room").await;
    assert_eq!(result["offset"], 0, "{result}");
    json_client.subscribe("room").await;

    let data = json!({"text": "héllo", "n": [1, -2, 2.5, null, true]});
    let ack = a.ok("publish", json!({"channel": "room", "data": data})).await;
    assert_eq!(ack["offset"], 1, "{ack}");
    let push = a.next_publication().await;
    assert_eq!(push["data"], data, "{push}");
    assert_eq!(push["offset"], 1, "{push}");
    // The same publication reaches a JSON subscriber as JSON.
    assert_eq!(json_client.next_publication().await["data"], data);

    json_client.publish("room", json!({"from": "json"})).await;
    let push = a.next_publication().await;
    assert_eq!(push["data"], json!({"from": "json"}), "{push}");
    let history = a.ok("history", json!({"channel": "room"})).await;
    assert_eq!(history["publications"].as_array().map(Vec::len), Some(2), "{history}");
    assert_eq!(a.error("subscribe", json!({"channel": "room"})).await, "already_subscribed");
}
