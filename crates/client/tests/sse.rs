//! The client over Server-Sent Events against a real server: the same API as over a
//! WebSocket, a cut stream resumed with `Last-Event-ID`, and a session the server no
//! longer holds replaced with recovery (`docs/transports.md`).

mod support;

use futures_util::StreamExt;
use serde_json::json;
use switchboard_client::{Client, ConnectionState, Error, SubscriptionEvent, Transport};
use switchboard_server::Config;
use switchboard_test_support::poll_until;
use switchboard_test_support::server::{TestServer, open_config};
use tokio::time::timeout;

use support::{LIMIT, Proxy, connected, fast, next_non_presence, next_publication};

fn sse(url: &str) -> Client {
    fast(url).transport(Transport::Sse).build().expect("build")
}

/// `open_config` with the default namespace keeping `history` publications.
fn config_with_history(history: usize) -> Config {
    let mut config = open_config();
    config.hub.namespaces.get_mut("").expect("the default namespace").history_size = history;
    config
}

#[tokio::test]
async fn commands_replies_and_pushes_work_over_sse() {
    let server = TestServer::start(config_with_history(100)).await;
    let url = format!("ws://{}/ws", server.addr);
    let client = sse(&url);
    connected(&client).await;
    let mut sub = client.subscribe("room").await.expect("subscribe");
    let ack = client.publish("room", json!({"n": 1, "s": "é"})).await.expect("publish");
    assert_eq!(ack.offset, 1);
    assert_eq!(next_publication(&mut sub).await, (1, json!({"n": 1, "s": "é"})));
    assert_eq!(sub.position(), Some(ack.position()));

    // A WebSocket client in the same channel: the same session semantics across transports.
    let ws = fast(&url).build().expect("build");
    let mut ws_sub = ws.subscribe("room").await.expect("subscribe over ws");
    ws.publish("room", 2).await.expect("publish over ws");
    assert_eq!(next_publication(&mut sub).await, (2, json!(2)));
    assert_eq!(next_publication(&mut ws_sub).await, (2, json!(2)));

    let present = client.presence("room").await.expect("presence");
    assert_eq!(present.len(), 2);
    let history = client.history("room", Some(10), None).await.expect("history");
    assert_eq!(history.publications.len(), 2);
    assert_eq!(history.epoch, ack.epoch);
    client.ping().await.expect("ping");
    // Commands sent together travel in one request and are answered in order.
    let (a, b, c) = tokio::join!(
        client.publish("room", 3),
        client.publish("room", 4),
        client.publish("room", 5)
    );
    let offsets: Vec<u64> = [a, b, c].into_iter().map(|r| r.expect("publish").offset).collect();
    assert_eq!(offsets, [3, 4, 5]);

    client.unsubscribe("room").await.expect("unsubscribe");
    let rest: Vec<_> = timeout(LIMIT, sub.collect::<Vec<_>>()).await.expect("the stream to end");
    assert!(rest.iter().all(|e| matches!(e, SubscriptionEvent::Publication(_))), "{rest:?}");
    // Closing ends the session at once: the WebSocket client sees it leave.
    client.close().await;
    assert_eq!(client.state().state, ConnectionState::Closed);
    assert!(matches!(client.publish("room", 1).await, Err(Error::Closed)));
    let left = poll_until(LIMIT, || async {
        let present = ws.presence("room").await.expect("presence");
        (present.len() == 1).then_some(present)
    })
    .await;
    assert!(left.is_some(), "the closed session is still present");
    assert_eq!(client.state().connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_resumes_the_same_session_losing_nothing() {
    const N: u64 = 300;
    let server = TestServer::start(config_with_history(10_000)).await;
    let proxy = Proxy::start(server.addr).await;
    let subscriber = sse(&proxy.url());
    let publisher = fast(&format!("ws://{}/ws", server.addr)).build().expect("build");
    let mut sub = subscriber.subscribe("feed").await.expect("subscribe");
    let mut expected = 1;
    let mut read_up_to = async |n: u64, sub: &mut switchboard_client::Subscription| {
        while expected <= n {
            match next_non_presence(sub).await {
                SubscriptionEvent::Publication(p) => {
                    assert_eq!((p.offset, p.data), (expected, json!(expected)));
                    expected += 1;
                }
                other => panic!("unexpected {other:?} at {expected}"),
            }
        }
    };
    let mut cuts = 0;
    for n in 1..=N {
        publisher.publish("feed", n).await.expect("publish");
        if n % 60 == 0 && n < N {
            // Cut once the subscriber has read up to here, and go on publishing: what
            // follows waits in the session's queue until the stream is resumed.
            read_up_to(n, &mut sub).await;
            proxy.cut();
            cuts += 1;
        }
    }
    assert_eq!(cuts, 4);
    // No loss, no duplicate.
    read_up_to(N, &mut sub).await;
    // Resumed, never reconnected: still the first session.
    assert_eq!(subscriber.state().connections, 1);
    assert_eq!(subscriber.state().state, ConnectionState::Connected);
    // Commands still work after the cuts (the uplink's connection was cut too).
    subscriber.publish("feed", "after").await.expect("publish after the cuts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_another_node_does_not_hold_is_replaced_with_recovery() {
    let first = TestServer::start(config_with_history(100)).await;
    let second = TestServer::start(config_with_history(100)).await;
    let proxy = Proxy::start(first.addr).await;
    let subscriber = sse(&proxy.url());
    let mut sub = subscriber.subscribe("room").await.expect("subscribe");
    subscriber.publish("room", 1).await.expect("publish");
    assert_eq!(next_publication(&mut sub).await, (1, json!(1)));

    // The stream reconnects to a node that does not hold the session: 4002, then a new
    // session there, resubscribed with `since`. These nodes share no broker, so the old
    // epoch is unknown there: recovered false.
    proxy.redirect(second.addr);
    proxy.cut();
    assert_eq!(
        next_non_presence(&mut sub).await,
        SubscriptionEvent::Recovered { recovered: false }
    );
    assert_eq!(subscriber.state().connections, 2);
    subscriber.publish("room", "there").await.expect("publish on the second node");
    assert_eq!(next_publication(&mut sub).await, (1, json!("there")));
}
