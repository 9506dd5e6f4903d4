//! Ordering under concurrent publishers: one order for every subscriber, matching the acks.

use serde_json::{Value, json};
use switchboard_test_support::memory::TestNode;

use crate::fixtures::{config_with, quiet};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_are_seen_in_one_order_by_every_subscriber() {
    const PUBLISHERS: u64 = 4;
    const EACH: u64 = 50;
    const TOTAL: u64 = PUBLISHERS * EACH;
    let node = TestNode::new(&config_with("quiet", quiet()));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut sub = node.client();
        sub.subscribe("quiet:room").await;
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..TOTAL {
                let push = sub.next_publication().await;
                seen.push((push["offset"].as_u64().expect("offset"), push["data"].clone()));
            }
            seen
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let mut client = node.client();
        publishers.push(tokio::spawn(async move {
            // Pipelined: all commands first, then the acks in command order.
            for n in 1..=EACH {
                let data = json!({"p": p, "n": n});
                client
                    .send(
                        &json!({"id": n, "type": "publish", "channel": "quiet:room", "data": data}),
                    )
                    .await;
            }
            let mut acks = Vec::new();
            for n in 1..=EACH {
                let reply = client.reply(n).await;
                acks.push(reply["result"]["offset"].as_u64().expect("an ack"));
            }
            acks
        }));
    }
    let mut acked = vec![None; usize::try_from(TOTAL).expect("small") + 1];
    for (p, publisher) in publishers.into_iter().enumerate() {
        let acks = publisher.await.expect("publisher");
        assert!(acks.windows(2).all(|w| w[0] < w[1]), "one connection's publishes keep order");
        for (n, offset) in acks.into_iter().enumerate() {
            acked[usize::try_from(offset).expect("small")] = Some(json!({"p": p, "n": n + 1}));
        }
    }
    let mut sequences = Vec::new();
    for reader in readers {
        sequences.push(reader.await.expect("subscriber"));
    }
    let expected: Vec<(u64, Value)> =
        (1..=TOTAL).map(|o| (o, acked[o as usize].clone().expect("every offset acked"))).collect();
    for seen in &sequences {
        assert_eq!(seen, &expected, "offsets 1..={TOTAL} in order, matching the acks");
    }
}
