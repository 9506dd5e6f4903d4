//! Replies bigger than the outbound queue: `history` and recovery on `subscribe` arrive in
//! pages that fit, and the reader's queue never overflows for asking.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_server::Config;
use switchboard_test_support::memory::{MemoryLink, TestNode};
use switchboard_test_support::protocol::ProtocolClient;
use switchboard_test_support::server::open_config;

/// How long any single expected message may take.
const LIMIT: Duration = Duration::from_secs(10);

/// Publications of about this many bytes: near the largest a client may send (64 KiB).
const LARGE: usize = 60_000;

#[tokio::test]
async fn history_larger_than_the_outbound_queue_arrives_in_pages() {
    for binary in [false, true] {
        let node = TestNode::new(&open_config());
        let epoch = publish_large(&node, "big", 20).await;
        let mut reader = connect(&node, binary);
        let first = reader.ok("history", json!({"channel": "big"})).await;
        // 1 MiB queue: pages of at most 256 KiB, four publications of 60 KB.
        assert_eq!(offsets(&first), [1, 2, 3, 4], "binary {binary}");
        assert_eq!(first["more"], true);
        assert_eq!(first["complete"], false, "an old client must not take it for all");
        assert_eq!(first["next"], json!({"offset": 4, "epoch": epoch}));
        assert_eq!(first["offset"], 20);
        let pages = follow(&mut reader, "big", first).await;
        assert_eq!(pages.concat(), (1..=20).collect::<Vec<_>>());
        assert!(pages.iter().all(|page| page.len() == 4), "{pages:?}");
        reader.ok("ping", json!({})).await;
        assert!(!reader.ws.session().outbox().is_overflowed(), "binary {binary}");
    }
}

#[tokio::test]
async fn history_since_pages_within_a_smaller_queue_one_publication_at_a_time() {
    let mut config = open_config();
    config.hub.outbound_queue_bytes = 192 << 10;
    let node = TestNode::new(&config);
    let epoch = publish_large(&node, "big", 16).await;
    let mut reader = connect(&node, false);
    let since = json!({"offset": 3, "epoch": epoch});
    let first = reader.ok("history", json!({"channel": "big", "since": since})).await;
    // 48 KiB pages: less than one publication, so exactly one per page.
    assert_eq!(offsets(&first), [4]);
    assert_eq!((first["more"].clone(), first["complete"].clone()), (json!(true), json!(false)));
    let pages = follow(&mut reader, "big", first).await;
    assert_eq!(pages.concat(), (4..=16).collect::<Vec<_>>());
    assert!(pages.iter().all(|page| page.len() == 1), "{pages:?}");
    reader.ok("ping", json!({})).await;
    assert!(!reader.ws.session().outbox().is_overflowed());
}

#[tokio::test]
async fn history_that_fits_has_no_page_fields() {
    let node = TestNode::new(&open_config());
    let epoch = publish_large(&node, "big", 3).await;
    let mut reader = connect(&node, false);
    let since = json!({"offset": 0, "epoch": epoch});
    let result = reader.ok("history", json!({"channel": "big", "since": since})).await;
    assert_eq!(offsets(&result), [1, 2, 3]);
    assert_eq!(result["complete"], true);
    assert!(result.get("more").is_none() && result.get("next").is_none(), "{result}");
}

#[tokio::test]
async fn recovery_larger_than_the_outbound_queue_arrives_in_pages_without_gap_or_duplicate() {
    for (queue, binary) in [(Config::default().hub.outbound_queue_bytes, false), (192 << 10, true)]
    {
        let mut config = open_config();
        config.hub.outbound_queue_bytes = queue;
        let node = TestNode::new(&config);
        let epoch = publish_large(&node, "big", 20).await;
        let mut reader = connect(&node, binary);
        let since = json!({"offset": 1, "epoch": epoch});
        let subscribed = reader.ok("subscribe", json!({"channel": "big", "since": since})).await;
        let first = offsets(&subscribed);
        assert_eq!(first.first(), Some(&2), "{queue}");
        assert!(first.len() < 19, "{queue}: {first:?}");
        assert_eq!(subscribed["recovered"], false, "an old client must not take it for all");
        assert_eq!(subscribed["more"], true);
        assert_eq!(subscribed["offset"], 20);
        let next = json!({"offset": first.last(), "epoch": epoch});
        assert_eq!(subscribed["next"], next);

        // Live publications made while the reader pages follow the subscribe's `offset`.
        let mut publisher = connect(&node, false);
        for n in 21..=23 {
            let result = publisher.ok("publish", json!({"channel": "big", "data": n})).await;
            assert_eq!(result["offset"], n);
        }
        let mut got = first;
        let mut since = next;
        loop {
            let page = reader.ok("history", json!({"channel": "big", "since": since})).await;
            got.extend(offsets(&page).into_iter().filter(|&o| o <= 20));
            if page["more"] != true {
                assert_eq!(page["complete"], true, "{queue}");
                break;
            }
            since = page["next"].clone();
        }
        assert_eq!(got, (2..=20).collect::<Vec<_>>(), "{queue}");
        let live: Vec<u64> = reader.pushes.drain(..).map(|p| offset(&p)).collect();
        let mut live = live;
        while live.len() < 3 {
            let push = reader.recv().await;
            assert_eq!(push["push"], "publication", "{push}");
            live.push(offset(&push));
        }
        assert_eq!(live, [21, 22, 23], "{queue}");
        reader.ok("ping", json!({})).await;
        // Never a slow consumer for asking.
        assert!(!reader.ws.session().outbox().is_overflowed(), "{queue}");
    }
}

#[tokio::test]
async fn recovery_that_fits_is_recovered_without_page_fields() {
    let node = TestNode::new(&open_config());
    let epoch = publish_large(&node, "big", 4).await;
    let mut reader = connect(&node, false);
    let since = json!({"offset": 0, "epoch": epoch});
    let result = reader.ok("subscribe", json!({"channel": "big", "since": since})).await;
    assert_eq!(offsets(&result), [1, 2, 3, 4]);
    assert_eq!(result["recovered"], true);
    assert!(result.get("more").is_none() && result.get("next").is_none(), "{result}");
}

/// Publishes `count` publications of [`LARGE`] bytes to `channel`; returns the epoch.
async fn publish_large(node: &TestNode, channel: &str, count: u64) -> String {
    let large = "x".repeat(LARGE);
    connect(node, false).publish_numbered(channel, count, &large).await
}

fn offset(publication: &Value) -> u64 {
    publication["offset"].as_u64().expect("an offset")
}

/// The offsets of a result's publications.
fn offsets(result: &Value) -> Vec<u64> {
    result["publications"]
        .as_array()
        .map(|list| list.iter().map(offset).collect())
        .unwrap_or_default()
}

/// A reader in JSON, or in MessagePack when `binary`.
fn connect(node: &TestNode, binary: bool) -> ProtocolClient<MemoryLink> {
    let mut client = if binary { node.client_msgpack() } else { node.client() };
    client.limit = LIMIT;
    client
}

/// Follows `history` pages from `first` to the last; returns each page's offsets.
async fn follow(
    reader: &mut ProtocolClient<MemoryLink>,
    channel: &str,
    first: Value,
) -> Vec<Vec<u64>> {
    let mut pages = vec![offsets(&first)];
    let mut page = first;
    while page["more"] == true {
        let since = page["next"].clone();
        assert_eq!(since["offset"], *pages.concat().last().expect("a publication"));
        page = reader.ok("history", json!({"channel": channel, "since": since})).await;
        assert!(!offsets(&page).is_empty(), "{page}");
        pages.push(offsets(&page));
    }
    assert_eq!(page["complete"], true, "{page}");
    pages
}
