//! Recoveries larger than one reply, read in pages, and publications this client cannot
//! decode: every publication arrives once and in order, and nothing stalls or loops.

mod support;

use serde_json::{Value, json};
use switchboard_client::{
    Client, ConnectionState, Error, Format, StreamPosition, Subscription, SubscriptionEvent,
};
use switchboard_test_support::server::{TestServer, open_config};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use support::{LIMIT, ScriptedConn, ScriptedServer, connected, fast, next_event, wait_state};

/// Publications of about this many bytes: near the largest a client may send (64 KiB).
const LARGE: usize = 60_000;

#[tokio::test]
async fn a_recovery_larger_than_one_page_is_delivered_once_and_in_order() {
    for (queue, format) in [(1 << 20, Format::Json), (192 << 10, Format::Msgpack)] {
        let mut config = open_config();
        config.hub.outbound_queue_bytes = queue;
        let server = TestServer::start(config).await;
        let url = format!("ws://{}/ws", server.addr);
        let publisher = fast(&url).build().expect("build");
        let mut epoch = String::new();
        for n in 1..=20 {
            let data = json!({"n": n, "text": "x".repeat(LARGE)});
            let ack = publisher.publish("big", data).await.expect("publish");
            assert_eq!(ack.offset, n);
            epoch = ack.epoch;
        }

        let client = fast(&url).format(format).build().expect("build");
        connected(&client).await;
        let since = StreamPosition { offset: 1, epoch: epoch.clone() };
        let mut sub = client.subscribe_since("big", since).await.expect("subscribe");
        for n in 21..=23 {
            publisher.publish("big", json!({"n": n})).await.expect("publish");
        }
        assert_eq!(next_event(&mut sub).await, SubscriptionEvent::Recovered { recovered: true });
        for n in 2..=23 {
            match next_event(&mut sub).await {
                SubscriptionEvent::Publication(p) => {
                    assert_eq!((p.offset, &p.data["n"]), (n, &json!(n)), "{queue}");
                }
                other => panic!("{queue}: expected publication {n}, got {other:?}"),
            }
        }
        assert_eq!(sub.position(), Some(StreamPosition { offset: 23, epoch }));
        assert_eq!(client.state().state, ConnectionState::Connected, "never cut off");
        publisher.publish("big", json!({"n": 24})).await.expect("publish");
        match next_event(&mut sub).await {
            SubscriptionEvent::Publication(p) => assert_eq!(p.offset, 24),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn live_publications_wait_for_the_last_page_and_duplicates_are_dropped() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url()).build().expect("build");
    let mut conn = server.accept_connected(25).await;
    let since = StreamPosition { offset: 2, epoch: "e1".into() };
    let (call, command) = subscribe_since(&client, &mut conn, since).await;
    assert_eq!(command["since"], json!({"offset": 2, "epoch": "e1"}));
    let first = json!({
        "epoch": "e1", "offset": 6, "recoverable": true, "recovered": false,
        "publications": [publication(3), publication(4)],
        "more": true, "next": {"offset": 4, "epoch": "e1"}
    });
    conn.reply(&command, first).await;
    let mut sub = subscribed(call).await;
    let page = conn.recv().await;
    assert_eq!(page["type"], "history");
    assert_eq!(
        (&page["channel"], &page["since"]),
        (&json!("ch"), &json!({"offset": 4, "epoch": "e1"}))
    );
    // Live publications after the subscribe's offset arrive while the pages are read.
    conn.publication("ch", 7).await;
    conn.publication("ch", 8).await;
    let last = json!({
        "epoch": "e1", "offset": 7, "complete": true,
        "publications": [publication(5), publication(6), publication(7)]
    });
    conn.reply(&page, last).await;
    conn.publication("ch", 9).await;

    assert_eq!(next_event(&mut sub).await, SubscriptionEvent::Recovered { recovered: true });
    for offset in 3..=9 {
        assert_eq!(next_event(&mut sub).await, event(offset));
    }
    assert_eq!(sub.position(), Some(StreamPosition { offset: 9, epoch: "e1".into() }));
}

#[tokio::test]
async fn a_page_that_cannot_fill_the_gap_reports_not_recovered_and_goes_on_live() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url()).build().expect("build");
    let mut conn = server.accept_connected(25).await;
    let since = StreamPosition { offset: 2, epoch: "e1".into() };
    let (call, command) = subscribe_since(&client, &mut conn, since).await;
    let first = json!({
        "epoch": "e1", "offset": 6, "recoverable": true, "recovered": false,
        "publications": [publication(3)], "more": true, "next": {"offset": 3, "epoch": "e1"}
    });
    conn.reply(&command, first).await;
    let mut sub = subscribed(call).await;
    let page = conn.recv().await;
    conn.publication("ch", 7).await;
    // History was trimmed meanwhile.
    conn.reply(&page, json!({"epoch": "e1", "offset": 7, "complete": false, "publications": []}))
        .await;
    assert_eq!(next_event(&mut sub).await, SubscriptionEvent::Recovered { recovered: false });
    assert_eq!(next_event(&mut sub).await, event(7));
    assert_eq!(sub.position(), Some(StreamPosition { offset: 7, epoch: "e1".into() }));
}

#[tokio::test]
async fn an_undecodable_publication_push_is_reported_and_the_stream_moves_past_it() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url()).build().expect("build");
    let mut conn = server.accept_connected(25).await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe("ch").await }
    });
    let command = conn.recv().await;
    conn.reply(&command, json!({"epoch": "e1", "offset": 0, "recoverable": true})).await;
    let mut sub = subscribed(subscribing).await;
    conn.publication("ch", 1).await;
    conn.send(json!({"push": "publication", "channel": "ch", "offset": 2, "data": deep(200)}))
        .await;
    conn.publication("ch", 3).await;
    assert_eq!(next_event(&mut sub).await, event(1));
    match next_event(&mut sub).await {
        SubscriptionEvent::Undecodable { offset, reason } => {
            assert_eq!(offset, 2);
            assert!(reason.contains("recursion limit"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sub.position(), Some(StreamPosition { offset: 2, epoch: "e1".into() }));
    // No resubscription for a gap: publication 3 follows directly.
    assert_eq!(next_event(&mut sub).await, event(3));
    assert_eq!(client.state().state, ConnectionState::Connected);
}

#[tokio::test]
async fn an_undecodable_publication_in_a_recovery_is_reported_without_a_reconnection_loop() {
    let server = ScriptedServer::bind().await;
    let client = fast(&server.url()).build().expect("build");
    let mut conn = server.accept_connected(25).await;
    let since = StreamPosition { offset: 0, epoch: "e1".into() };
    let (call, command) = subscribe_since(&client, &mut conn, since).await;
    let recovered = json!({
        "epoch": "e1", "offset": 3, "recoverable": true, "recovered": true,
        "publications": [publication(1), {"offset": 2, "data": deep(200)}, publication(3)]
    });
    conn.reply(&command, recovered).await;
    let mut sub = subscribed(call).await;
    conn.publication("ch", 4).await;
    assert_eq!(next_event(&mut sub).await, SubscriptionEvent::Recovered { recovered: true });
    assert_eq!(next_event(&mut sub).await, event(1));
    assert!(matches!(next_event(&mut sub).await, SubscriptionEvent::Undecodable { offset: 2, .. }));
    assert_eq!(next_event(&mut sub).await, event(3));
    assert_eq!(next_event(&mut sub).await, event(4));
    // The connection the reply came on is still the client's: a ping gets through.
    let pinging = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    let ping = conn.recv().await;
    assert_eq!(ping["type"], "ping");
    conn.reply(&ping, json!({})).await;
    pinging.await.expect("task").expect("pong");
    wait_state(&client, |s| s.state == ConnectionState::Connected).await;
}

/// Starts `subscribe_since` on channel `ch`; returns the call and the command the server
/// got, for the test to answer.
async fn subscribe_since(
    client: &Client,
    conn: &mut ScriptedConn,
    since: StreamPosition,
) -> (JoinHandle<Result<Subscription, Error>>, Value) {
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move { client.subscribe_since("ch", since).await }
    });
    let command = conn.recv().await;
    assert_eq!((&command["type"], &command["channel"]), (&json!("subscribe"), &json!("ch")));
    (subscribing, command)
}

/// The subscription once the call returned.
async fn subscribed(call: JoinHandle<Result<Subscription, Error>>) -> Subscription {
    timeout(LIMIT, call).await.expect("in time").expect("task").expect("subscribed")
}

fn publication(offset: u64) -> Value {
    json!({"offset": offset, "data": offset})
}

fn event(offset: u64) -> SubscriptionEvent {
    SubscriptionEvent::Publication(switchboard_client::Publication {
        offset,
        data: json!(offset),
        info: None,
    })
}

/// A JSON value nested `depth` arrays deep: deeper than a JSON decoder's 128 levels.
fn deep(depth: usize) -> Value {
    let mut value = json!([]);
    for _ in 1..depth {
        value = json!([value]);
    }
    value
}

#[tokio::test]
async fn history_larger_than_one_page_is_read_whole() {
    let mut config = open_config();
    config.hub.outbound_queue_bytes = 256 << 10;
    let server = TestServer::start(config).await;
    let url = format!("ws://{}/ws", server.addr);
    let client = fast(&url).build().expect("build");
    let mut epoch = String::new();
    for n in 1..=12 {
        let ack = client.publish("big", json!({"n": n, "text": "x".repeat(LARGE)})).await;
        epoch = ack.expect("publish").epoch;
    }
    let offsets = |publications: &[switchboard_client::Publication]| {
        publications.iter().map(|p| p.offset).collect::<Vec<_>>()
    };

    // A 64 KiB page holds one of these publications: each call below takes several pages.
    let all = client.history("big", None, None).await.expect("history");
    assert_eq!(offsets(&all.publications), (1..=12).collect::<Vec<_>>());
    assert_eq!(
        (all.offset, &all.epoch, all.complete, all.more, &all.next),
        (12, &epoch, None, false, &None)
    );

    let newest = client.history("big", Some(5), None).await.expect("history");
    assert_eq!(offsets(&newest.publications), (8..=12).collect::<Vec<_>>());
    assert_eq!((newest.complete, newest.more), (None, false));

    let since = StreamPosition { offset: 3, epoch: epoch.clone() };
    let after = client.history("big", None, Some(since)).await.expect("history");
    assert_eq!(offsets(&after.publications), (4..=12).collect::<Vec<_>>());
    assert_eq!((after.complete, after.more), (Some(true), false));
    for (p, n) in after.publications.iter().zip(4..) {
        assert_eq!(p.data["n"], json!(n));
    }

    let stale = StreamPosition { offset: 3, epoch: "another".into() };
    let lost = client.history("big", None, Some(stale)).await.expect("history");
    assert_eq!((lost.complete, lost.publications.len()), (Some(false), 0));
}
