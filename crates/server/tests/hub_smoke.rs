//! A first end-to-end pass over `/ws`: subscribe, publish, receive, recover.

use serde_json::json;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::protocol::{call, next_json};
use switchboard_test_support::server::{TestServer, open_config};

#[tokio::test]
async fn subscribe_publish_receive_and_recover() {
    let server = TestServer::start(open_config()).await;
    let mut a = WsClient::connect(server.addr, "/ws").await.unwrap();
    let mut b = WsClient::connect(server.addr, "/ws").await.unwrap();
    let hello = call(&mut a, &json!({"id": 1, "type": "connect"})).await;
    assert_eq!(hello["result"]["ping_interval"], 25, "{hello}");
    let sub = call(&mut a, &json!({"id": 2, "type": "subscribe", "channel": "room"})).await;
    assert_eq!(sub["result"]["offset"], 0, "{sub}");
    let epoch = sub["result"]["epoch"].as_str().unwrap().to_owned();

    let ack =
        call(&mut b, &json!({"id": 1, "type": "publish", "channel": "room", "data": {"n": 1}}))
            .await;
    assert_eq!(ack["result"], json!({"offset": 1, "epoch": epoch}));
    let push = next_json(&mut a).await;
    assert_eq!(push["push"], "publication");
    assert_eq!(push["data"], json!({"n": 1}));

    drop(a);
    for n in 2..=4 {
        call(&mut b, &json!({"id": n, "type": "publish", "channel": "room", "data": {"n": n}}))
            .await;
    }
    let mut a = WsClient::connect(server.addr, "/ws").await.unwrap();
    let since = json!({"offset": 1, "epoch": epoch});
    let sub =
        call(&mut a, &json!({"id": 9, "type": "subscribe", "channel": "room", "since": since}))
            .await;
    assert_eq!(sub["result"]["recovered"], true, "{sub}");
    let offsets: Vec<u64> = sub["result"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [2, 3, 4]);
}
