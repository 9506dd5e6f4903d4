//! The client's API against a real server: commands, formats, TLS, and what publishes do
//! while disconnected.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};
use serde_json::json;
use switchboard_client::{
    Client, ConnectionState, DisconnectReason, Error, ErrorCode, Format, PublishQueue,
    SubscriptionEvent,
};
use switchboard_server::{Server, TlsSource};
use switchboard_test_support::server::{TestServer, open_config};
use switchboard_test_support::wait_until;
use tokio::time::timeout;

use support::{LIMIT, Proxy, connected, fast, next_event, next_publication, wait_state};

/// Polls `future` once, without waiting: a command's first poll hands it to the client's
/// task, in call order. Its output if it was already done.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    future.now_or_never()
}

fn url(server: &TestServer) -> String {
    format!("ws://{}/ws", server.addr)
}

async fn round_trip(format: Format) {
    let server = TestServer::start(open_config()).await;
    let client = fast(&url(&server)).format(format).build().expect("build");
    connected(&client).await;
    let mut sub = client.subscribe("room").await.expect("subscribe");
    let ack = client.publish("room", json!({"n": 1, "s": "é"})).await.expect("publish");
    assert_eq!(ack.offset, 1);
    assert_eq!(next_publication(&mut sub).await, (1, json!({"n": 1, "s": "é"})));
    assert_eq!(sub.position(), Some(ack.position()));

    let present = client.presence("room").await.expect("presence");
    assert_eq!(present.len(), 1);
    assert_eq!(client.presence_count("room").await.expect("presence_count"), 1);
    let history = client.history("room", Some(10), None).await.expect("history");
    assert_eq!(history.publications.len(), 1);
    assert_eq!(history.epoch, ack.epoch);
    client.ping().await.expect("ping");

    client.unsubscribe("room").await.expect("unsubscribe");
    // The stream ends once unsubscribed (joins may still be buffered before the end).
    let rest: Vec<_> = timeout(LIMIT, sub.collect::<Vec<_>>()).await.expect("the stream to end");
    assert!(rest.iter().all(|e| matches!(e, SubscriptionEvent::Join(_))), "{rest:?}");
    client.close().await;
    assert_eq!(client.state().state, ConnectionState::Closed);
    assert!(matches!(client.publish("room", 1).await, Err(Error::Closed)));
}

#[tokio::test]
async fn json_round_trip() {
    round_trip(Format::Json).await;
}

#[tokio::test]
async fn msgpack_round_trip() {
    round_trip(Format::Msgpack).await;
}

#[tokio::test]
async fn server_refusals_are_command_errors() {
    let server = TestServer::start(open_config()).await;
    let client = fast(&url(&server)).build().expect("build");
    let err = client.subscribe("nowhere:room").await.expect_err("unknown namespace");
    assert_eq!(err.code(), Some(ErrorCode::UnknownNamespace));
    assert!(!err.is_temporary());
    let err = client.publish("bad channel", 1).await.expect_err("invalid channel");
    assert_eq!(err.code(), Some(ErrorCode::InvalidChannel));

    let sub = client.subscribe("room").await.expect("subscribe");
    let again = client.subscribe("room").await.expect_err("second subscription");
    assert!(matches!(again, Error::AlreadySubscribed(ref c) if c == "room"), "{again:?}");
    // Dropping the subscription frees the channel for a new one.
    drop(sub);
    client.subscribe("room").await.expect("subscribe after drop");
}

#[tokio::test]
async fn subscribe_since_recovers_from_a_stored_position() {
    let server = TestServer::start(open_config()).await;
    let client = fast(&url(&server)).build().expect("build");
    let mut acks = Vec::new();
    for n in 1..=5 {
        acks.push(client.publish("log", n).await.expect("publish"));
    }
    let mut sub = client.subscribe_since("log", acks[1].position()).await.expect("subscribe");
    assert_eq!(next_event(&mut sub).await, SubscriptionEvent::Recovered { recovered: true });
    for n in 3..=5u64 {
        assert_eq!(next_publication(&mut sub).await, (n, json!(n)));
    }
    drop(sub);

    // A position from an epoch the server never had: the gap cannot be filled.
    let mut stale = acks[4].position();
    stale.epoch = "not-an-epoch".to_owned();
    let mut sub = client.subscribe_since("log", stale).await.expect("subscribe");
    assert_eq!(next_event(&mut sub).await, SubscriptionEvent::Recovered { recovered: false });
    client.publish("log", 6).await.expect("publish");
    assert_eq!(next_publication(&mut sub).await, (6, json!(6)));
}

#[tokio::test]
async fn wss_with_a_caller_supplied_root() {
    let mut config = open_config();
    config.listen = "127.0.0.1:0".parse().expect("an address");
    config.tls = Some(TlsSource::DevSelfSigned);
    let server = Server::bind(config).await.expect("bind with tls");
    let port = server.local_addr().port();
    let pem = server.dev_certificate().expect("a dev certificate").to_owned();
    let shutdown = server.shutdown_handle();
    tokio::spawn(server.run());

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.expect("a PEM certificate")).expect("a usable root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let wss = format!("wss://localhost:{port}/ws");
    let client = fast(&wss).tls_config(Arc::new(tls)).build().expect("build");
    let mut sub = client.subscribe("secure").await.expect("subscribe over tls");
    client.publish("secure", "hi").await.expect("publish over tls");
    assert_eq!(next_publication(&mut sub).await, (1, json!("hi")));

    // The same root added to Mozilla's.
    let roots = CertificateDer::pem_slice_iter(pem.as_bytes()).map(|c| c.expect("a certificate"));
    let added = fast(&wss).add_root_certificates(roots).build().expect("build");
    added.publish("secure", "again").await.expect("publish over tls with an added root");
    assert_eq!(next_publication(&mut sub).await, (2, json!("again")));

    // The default roots do not trust a self-signed certificate: an i/o error, retried.
    let untrusting = fast(&wss).build().expect("build");
    let state = wait_state(&untrusting, |s| s.state == ConnectionState::Reconnecting).await;
    assert!(matches!(state.reason, Some(DisconnectReason::Io { .. })), "{state:?}");
    untrusting.close().await;
    shutdown.shutdown();
}

#[tokio::test]
async fn publishes_while_disconnected_are_sent_in_order_after_reconnecting() {
    let server = TestServer::start(open_config()).await;
    let proxy = Proxy::start(server.addr).await;
    let observer = fast(&url(&server)).build().expect("build");
    let mut seen = observer.subscribe("q").await.expect("subscribe");

    let publisher = fast(&proxy.url()).build().expect("build");
    connected(&publisher).await;
    proxy.block(true);
    proxy.cut();
    wait_state(&publisher, |s| s.state == ConnectionState::Reconnecting).await;

    // `join_all` polls in order, so the publishes are queued in this order.
    let mut pending = Box::pin(join_all((0..5).map(|n| publisher.publish("q", n))));
    assert!(poll_once(&mut pending).is_none(), "publishes resolved while disconnected");
    // A reconnection attempt after they were queued (the proxy drops it): still queued.
    let attempts = proxy.accepted();
    assert!(wait_until(LIMIT, || proxy.accepted() > attempts).await, "no reconnection attempt");
    assert!(poll_once(&mut pending).is_none(), "publishes resolved while disconnected");

    proxy.block(false);
    let acks = timeout(LIMIT, pending).await.expect("acks in time");
    let offsets: Vec<u64> = acks.into_iter().map(|a| a.expect("an ack").offset).collect();
    assert_eq!(offsets, vec![1, 2, 3, 4, 5]);
    for n in 0..5u64 {
        assert_eq!(next_publication(&mut seen).await, (n + 1, json!(n)));
    }
}

#[tokio::test]
async fn reject_mode_fails_fast_and_the_queue_is_bounded() {
    let server = TestServer::start(open_config()).await;
    let proxy = Proxy::start(server.addr).await;
    let rejecting = fast(&proxy.url()).publish_queue(PublishQueue::Reject).build().expect("build");
    let bounded =
        fast(&proxy.url()).publish_queue(PublishQueue::Bounded(2)).build().expect("build");
    connected(&rejecting).await;
    connected(&bounded).await;
    proxy.block(true);
    proxy.cut();
    wait_state(&rejecting, |s| s.state == ConnectionState::Reconnecting).await;
    wait_state(&bounded, |s| s.state == ConnectionState::Reconnecting).await;

    let fast_fail = timeout(Duration::from_secs(1), rejecting.publish("q", 1)).await;
    assert!(matches!(fast_fail, Ok(Err(Error::NotConnected))), "{fast_fail:?}");

    // Polled once, the two are handed to the client's task before the third.
    let mut first = Box::pin(join_all((0..2).map(|n| bounded.publish("q", n))));
    assert!(poll_once(&mut first).is_none(), "publishes resolved while disconnected");
    let third = timeout(Duration::from_secs(1), bounded.publish("q", 2)).await;
    assert!(matches!(third, Ok(Err(Error::QueueFull(2)))), "{third:?}");

    proxy.block(false);
    let acks = timeout(LIMIT, first).await.expect("acks in time");
    assert!(acks.iter().all(Result::is_ok), "{acks:?}");
}

#[tokio::test]
async fn dropping_a_queued_publish_cancels_it() {
    let server = TestServer::start(open_config()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = fast(&proxy.url()).build().expect("build");
    connected(&client).await;
    proxy.block(true);
    proxy.cut();
    wait_state(&client, |s| s.state == ConnectionState::Reconnecting).await;
    // Polled once (queued), then dropped.
    let mut cancelled = Box::pin(client.publish("c", "cancelled"));
    let resolved = poll_once(&mut cancelled);
    assert!(resolved.is_none(), "resolved while disconnected: {resolved:?}");
    drop(cancelled);
    // Polled once: queued behind the cancelled one before the proxy lets connections in.
    let mut kept = Box::pin(client.publish("c", "kept"));
    assert!(poll_once(&mut kept).is_none(), "resolved while disconnected");
    proxy.block(false);
    let ack = timeout(LIMIT, kept).await.expect("in time").expect("ack");
    assert_eq!(ack.offset, 1, "the cancelled publish was sent");
}

#[tokio::test]
async fn build_refuses_bad_input_without_panicking() {
    assert!(matches!(Client::builder("http://x/ws").build(), Err(Error::InvalidUrl(_))));
    let inverted = Client::builder("ws://127.0.0.1:1/ws")
        .reconnect_delay(Duration::from_secs(5), Duration::from_secs(1))
        .build();
    assert!(matches!(inverted, Err(Error::InvalidOption(_))));
}

#[tokio::test]
async fn commands_wait_for_the_first_connection() {
    // Subscribe and publish before the server exists; both complete once it is up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("reserve a port");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let client = Client::builder(format!("ws://{addr}/ws"))
        .reconnect_delay(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .expect("build");
    let early = tokio::spawn({
        let client = client.clone();
        async move {
            let sub = client.subscribe("early").await;
            let ack = client.publish("early", "first").await;
            (sub, ack)
        }
    });
    wait_state(&client, |s| s.state == ConnectionState::Reconnecting).await;
    let mut config = open_config();
    config.listen = addr;
    let server = Server::bind(config).await.expect("bind the reserved port");
    let shutdown = server.shutdown_handle();
    tokio::spawn(server.run());
    let (sub, ack) = timeout(LIMIT, early).await.expect("in time").expect("task");
    let mut sub = sub.expect("subscribed");
    assert_eq!(ack.expect("published").offset, 1);
    assert_eq!(next_publication(&mut sub).await, (1, json!("first")));
    shutdown.shutdown();
}

#[test]
fn a_runtime_is_required() {
    assert!(matches!(Client::builder("ws://127.0.0.1:1/ws").build(), Err(Error::NoRuntime)));
}
