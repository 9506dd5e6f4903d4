//! What a session does with commands and bytes over its client's allowances, and channel
//! name lengths. Allowances per address and the connection limits at the door are tested
//! over sockets in `limits.rs`.

use std::time::Duration;

use serde_json::json;
use switchboard_server::Rate;
use switchboard_server::node::Payload;
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::server::open_config;
use tokio::time::{Instant, advance};

#[tokio::test]
async fn commands_over_the_rate_get_rate_limited_and_are_not_carried_out() {
    let mut config = open_config();
    // Three commands, then one more a minute: nothing refills during the test.
    config.rate_limits.message_rate = Some(Rate::new(1, 3));
    let node = TestNode::new(&config);
    let mut a = node.client();
    for id in 1..=5 {
        a.send(&json!({"id": id, "type": "publish", "channel": "room", "data": id})).await;
    }
    a.send_text("not json").await;
    for id in 1..=3 {
        let reply = a.recv().await;
        assert_eq!(
            (reply["id"].clone(), reply["result"]["offset"].clone()),
            (json!(id), json!(id))
        );
    }
    for id in [4, 5, 0] {
        let reply = a.recv().await;
        assert_eq!(reply["id"], id, "{reply}");
        assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
        assert_eq!(reply["error"]["temporary"], true, "{reply}");
        let message = reply["error"]["message"].as_str().expect("a message");
        assert!(message.contains("at most 1 a second, in bursts of 3"), "{message}");
    }
    // Another client has its own allowance, and sees that only three were published.
    let mut b = node.client();
    let history = b.ok("history", json!({"channel": "room"})).await;
    assert_eq!(history["offset"], 3, "{history}");
}

#[tokio::test(start_paused = true)]
async fn the_allowance_refills_at_the_rate() {
    let mut config = open_config();
    config.rate_limits.message_rate = Some(Rate::new(10, 1));
    let node = TestNode::new(&config);
    let mut a = node.client();
    a.send(&json!({"id": 1, "type": "ping"})).await;
    a.send(&json!({"id": 2, "type": "ping"})).await;
    assert_eq!(a.recv().await, json!({"id": 1, "result": {}}));
    assert_eq!(a.recv().await["error"]["code"], "rate_limited");
    // One command refills every 100 ms: not yet 99 ms on, and 1 ms later it has.
    advance(Duration::from_millis(99)).await;
    assert_eq!(a.error_reply(3).await["error"]["code"], "rate_limited");
    advance(Duration::from_millis(1)).await;
    a.send(&json!({"id": 4, "type": "ping"})).await;
    assert_eq!(a.recv().await, json!({"id": 4, "result": {}}));
}

#[tokio::test]
async fn bytes_over_the_byte_rate_get_rate_limited() {
    let mut config = open_config();
    config.rate_limits.byte_rate = Some(Rate::new(1, 1_000));
    let node = TestNode::new(&config);
    let mut a = node.client();
    let data = "x".repeat(600);
    let publish = |id: u64| json!({"id": id, "type": "publish", "channel": "room", "data": data});
    a.send(&publish(1)).await;
    assert_eq!(a.recv().await["result"]["offset"], 1);
    a.send(&publish(2)).await;
    let reply = a.recv().await;
    assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
    let message = reply["error"]["message"].as_str().expect("a message");
    assert!(message.starts_with("too many bytes"), "{message}");
    // A small command still fits in what is left.
    a.send(&json!({"id": 3, "type": "ping"})).await;
    assert_eq!(a.recv().await, json!({"id": 3, "result": {}}));
}

#[tokio::test]
async fn sustained_excess_closes_with_1008_and_nothing_after_is_answered() {
    let mut config = open_config();
    config.rate_limits.message_rate = Some(Rate::new(1, 1));
    config.rate_limits.max_rejections = 3;
    let node = TestNode::new(&config);
    let mut a = node.client();
    for id in 1..=5 {
        a.send(&json!({"id": id, "type": "ping"})).await;
    }
    assert_eq!(a.recv().await, json!({"id": 1, "result": {}}));
    for id in 2..=4 {
        let reply = a.recv().await;
        let code = reply["error"]["code"].clone();
        assert_eq!((reply["id"].clone(), code), (json!(id), json!("rate_limited")));
    }
    // A fourth refusal in one streak is more than `max_rejections`: it closes the client.
    assert_eq!(a.closed().await, (1008, "too many commands too fast".to_owned()));
    // What still reaches the session is neither carried out nor answered.
    let ping = json!({"id": 6, "type": "ping"}).to_string();
    let session = a.ws.session();
    assert_eq!(session.handle(Payload::Text(ping.as_bytes()), Instant::now()).await, None);
    assert!(session.outbox().try_recv().is_none());
}

#[tokio::test]
async fn channel_names_of_255_bytes_are_accepted_and_longer_ones_are_invalid() {
    let node = TestNode::new(&open_config());
    let mut a = node.client();
    let longest = "c".repeat(255);
    assert_eq!(a.subscribe(&longest).await["offset"], 0);
    assert_eq!(a.publish(&longest, json!(1)).await, 1);
    assert_eq!(a.next_publication().await["channel"], json!(longest));

    let too_long = "c".repeat(256);
    for kind in ["subscribe", "publish", "presence", "history"] {
        let mut command = json!({"channel": too_long});
        if kind == "publish" {
            command["data"] = json!(1);
        }
        assert_eq!(a.error(kind, command).await, "invalid_channel", "{kind}");
    }
}
