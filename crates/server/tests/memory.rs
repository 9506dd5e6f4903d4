//! What hostile publishers can make the node hold, over real sockets: history within
//! `history_memory`, channels within `max_channels`, and honest answers when either bites.

use serde_json::json;
use switchboard_server::Config;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::metrics::{sample, scrape};
use switchboard_test_support::protocol::call;
use switchboard_test_support::server::{TestServer, open_config};

#[tokio::test]
async fn issue_12_history_memory_bounds_history_and_recovery_says_what_was_lost() {
    let mut config = quiet_config();
    config.hub.history_memory = 1 << 20;
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let text = "x".repeat(32 << 10);
    let mut epochs = Vec::new();
    // One connection per channel, oldest first: `chat:flood-0` is the least recently
    // published once the budget (about 31 of these publications) is full.
    for channel in 0..4 {
        let mut ws = WsClient::connect(addr, "/ws").await.unwrap();
        let mut epoch = String::new();
        for id in 1..=20 {
            let command = json!({"id": id, "type": "publish",
                "channel": format!("chat:flood-{channel}"), "data": text});
            let reply = call(&mut ws, &command).await;
            epoch = reply["result"]["epoch"].as_str().expect("an epoch").to_owned();
        }
        epochs.push(epoch);
    }
    let metrics = scrape(addr).await;
    let held = sample(&metrics, "switchboard_broker_history_bytes").expect("history bytes");
    assert!((f64::from(1 << 19)..=f64::from(1 << 20)).contains(&held), "{metrics}");
    let evicted = sample(&metrics, "switchboard_broker_history_evictions_total").unwrap();
    assert!(evicted >= 40.0, "{metrics}");

    let mut reader = WsClient::connect(addr, "/ws").await.unwrap();
    let since = json!({"offset": 0, "epoch": epochs[0]});
    let command = json!({"id": 1, "type": "subscribe", "channel": "chat:flood-0", "since": since});
    let result = call(&mut reader, &command).await["result"].clone();
    assert_eq!(result["recovered"], false, "evicted history is never a silent gap: {result}");
    assert_eq!(result["epoch"], epochs[0].as_str(), "eviction keeps the epoch: {result}");
    assert_eq!(result["offset"], 20, "{result}");
    let since = json!({"offset": 18, "epoch": epochs[3]});
    let command = json!({"id": 2, "type": "subscribe", "channel": "chat:flood-3", "since": since});
    let result = call(&mut reader, &command).await["result"].clone();
    assert_eq!(result["recovered"], true, "the newest history stays: {result}");
    let offsets: Vec<_> = result["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["offset"].as_u64().expect("an offset"))
        .collect();
    assert_eq!(offsets, [19, 20]);
}

#[tokio::test]
async fn issue_12_channel_limit_refuses_with_unavailable_when_every_channel_is_in_use() {
    let mut config = quiet_config();
    config.hub.max_channels = 2;
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let mut ws = WsClient::connect(addr, "/ws").await.unwrap();
    for (id, channel) in [(1, "chat:a"), (2, "chat:b")] {
        let reply =
            call(&mut ws, &json!({"id": id, "type": "subscribe", "channel": channel})).await;
        assert!(reply.get("result").is_some(), "{reply}");
    }
    let command = json!({"id": 3, "type": "publish", "channel": "chat:c", "data": 1});
    let reply = call(&mut ws, &command).await;
    assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
    assert_eq!(reply["error"]["temporary"], true, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("channel limit reached"), "{reply}");
    let metrics = scrape(addr).await;
    let refused = sample(&metrics, "switchboard_broker_channel_limit_refusals_total");
    assert_eq!(refused, Some(1.0), "{metrics}");

    // Publishing to a channel that exists still works; one freed makes room again.
    let command = json!({"id": 4, "type": "publish", "channel": "chat:a", "data": 1});
    assert!(call(&mut ws, &command).await.get("result").is_some());
    let command = json!({"id": 5, "type": "unsubscribe", "channel": "chat:b"});
    assert!(call(&mut ws, &command).await.get("result").is_some());
    let command = json!({"id": 6, "type": "publish", "channel": "chat:c", "data": 1});
    let reply = call(&mut ws, &command).await;
    assert_eq!(reply["result"]["offset"], 1, "{reply}");
}

/// The open config without rate limits (the floods here are deliberate).
fn quiet_config() -> Config {
    let mut config = open_config();
    config.rate_limits.message_rate = None;
    config.rate_limits.byte_rate = None;
    config
}
