//! Ordering under concurrent publishers: one order for every subscriber, matching the acks.

use serde_json::{Value, json};
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::protocol::{Link as _, Received};

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

#[tokio::test]
async fn a_reader_whose_outbox_overflows_gets_what_was_queued_then_4001() {
    let mut config = config_with("quiet", quiet());
    config.hub.outbound_queue_bytes = 4 << 10;
    let node = TestNode::new(&config);
    let mut reader = node.client();
    reader.subscribe("quiet:room").await;
    let mut publisher = node.client();
    let payload = "x".repeat(512);
    // The reader reads nothing meanwhile: 20 publications of about 560 bytes overflow 4 KiB.
    for n in 1..=20 {
        assert_eq!(publisher.publish("quiet:room", json!(payload)).await, n);
    }
    assert!(reader.ws.session().outbox().is_overflowed());
    let mut offsets = Vec::new();
    let code = loop {
        match reader.ws.next_message(reader.limit).await {
            Received::Text(bytes) => {
                let push: Value = serde_json::from_slice(&bytes).expect("JSON");
                offsets.push(push["offset"].as_u64().expect("an offset"));
            }
            Received::Closed(code, _) => break code,
            Received::Binary(bytes) => panic!("binary on a JSON client: {bytes:?}"),
        }
    };
    assert_eq!(code, 4001, "a slow consumer");
    // What fitted came in order from the first; the rest was never queued.
    assert!((1..20).contains(&offsets.len()), "{offsets:?}");
    assert_eq!(offsets, (1..=offsets.len() as u64).collect::<Vec<_>>());
    // Nothing reaches it any more.
    publisher.publish("quiet:room", json!(payload)).await;
    assert!(reader.ws.session().outbox().try_recv().is_none());
}
