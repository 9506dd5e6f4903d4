//! `switchboard serve --broker nats://…` as separate processes on a private `nats-server`
//! with JetStream: starting without NATS, and a node killed with `kill -9` while another
//! node's publisher keeps publishing (as `cluster.rs` does on Redis).

mod support;

use std::process::Command;
use std::time::Instant;

use switchboard_client::{ConnectionState, Subscription};
use switchboard_test_support::nats::NatsServer;
use switchboard_test_support::wait_until;
use tokio::net::TcpListener;
use tokio::time::timeout;

use support::{BIN, Balancer, LIMIT, Node, connected, expect_every_publication, fast, wait_state};

/// A channel of the `chat` namespace, which the default config opens to anonymous
/// publishers, with a history of 100.
const CHANNEL: &str = "chat:feed";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_s_clients_reconnect_to_a_live_one_and_lose_nothing() {
    const N: u64 = 400;
    const THROUGH_BALANCER: usize = 4;
    let nats = NatsServer::start();
    let mut doomed = Node::start(&nats.url());
    let survivor = Node::start(&nats.url());
    let balancer = Balancer::start(vec![doomed.addr, survivor.addr]).await;

    // Clients of the doomed node come through the balancer; two more sit on the survivor.
    let mut clients = Vec::new();
    let mut subs: Vec<Subscription> = Vec::new();
    for i in 0..THROUGH_BALANCER + 2 {
        let url = if i < THROUGH_BALANCER { balancer.url() } else { survivor.url() };
        let client = fast(&url).build().expect("build");
        connected(&client).await;
        subs.push(client.subscribe(CHANNEL).await.expect("subscribe"));
        clients.push(client);
    }
    assert_eq!(balancer.forwarded(0), THROUGH_BALANCER, "all went to the first node");

    // The publisher says when it is a third of the way in and goes on; at two thirds it
    // waits for the kill, so the kill lands with publications in flight.
    let (third, mut third_reached) = tokio::sync::oneshot::channel();
    let (killed, kill_done) = tokio::sync::oneshot::channel::<()>();
    let publisher = fast(&survivor.url()).build().expect("build");
    let publishing = tokio::spawn(async move {
        let (mut third, mut kill_done) = (Some(third), Some(kill_done));
        for n in 1..=N {
            let ack = publisher.publish(CHANNEL, n).await.expect("publish on the survivor");
            assert_eq!(ack.offset, n);
            if n == N / 3 {
                third.take().expect("once").send(()).expect("the test is waiting");
            }
            if n == 2 * N / 3 {
                kill_done.take().expect("once").await.expect("the node was killed");
            }
        }
    });
    let started = Instant::now();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut sub| tokio::spawn(async move { expect_every_publication(&mut sub, N).await }))
        .collect();
    timeout(LIMIT, &mut third_reached).await.expect("a third in time").expect("the publisher");
    assert!(!publishing.is_finished(), "publishing ended before the kill");
    doomed.kill9();
    killed.send(()).expect("the publisher waits for the kill");

    for client in &clients[..THROUGH_BALANCER] {
        wait_state(client, |s| s.state == ConnectionState::Connected && s.connections >= 2).await;
    }
    assert!(balancer.forwarded(1) >= THROUGH_BALANCER, "reconnections went to the survivor");
    timeout(LIMIT * 2, publishing).await.expect("publishing in time").expect("the publisher");
    for (i, reader) in readers.into_iter().enumerate() {
        let recoveries = timeout(LIMIT, reader).await.expect("reader in time").expect("reader");
        if i < THROUGH_BALANCER {
            assert!(recoveries >= 1, "client {i} of the dead node never recovered");
        } else {
            assert_eq!(recoveries, 0, "client {i} of the survivor was cut: {}", survivor.log());
        }
    }
    for client in &clients[THROUGH_BALANCER..] {
        assert_eq!(client.state().connections, 1);
    }
    assert!(started.elapsed() < LIMIT * 2);
}

#[test]
fn serve_without_nats_fails_fast_with_one_line() {
    let mut nats = NatsServer::start();
    nats.stop();
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--broker", &nats.url()])
        .output()
        .expect("run switchboard");
    assert!(started.elapsed() < LIMIT, "took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot start the nats broker"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{}", nats.port())), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_nats_wait_starts_once_nats_answers() {
    let mut nats = NatsServer::start();
    nats.stop();
    let url = nats.url();
    // In NATS's place, a listener that drops every connection: the node must try again
    // rather than listen.
    let stand_in = TcpListener::bind(("127.0.0.1", nats.port())).await.expect("the port");
    let starting = std::thread::spawn(move || {
        Node::start_with(&["--broker", &url, "--nats-wait", "--nats-subject-prefix", "waited"])
    });
    for attempt in ["a first", "a second"] {
        let (dropped, _) = timeout(LIMIT, stand_in.accept()).await.expect(attempt).expect("accept");
        drop(dropped);
    }
    assert!(!starting.is_finished(), "the node listened without nats");
    drop(stand_in);
    nats.restart();
    let started = wait_until(LIMIT, || starting.is_finished()).await;
    assert!(started, "the node listens once nats is up");
    let node = starting.join().expect("the node started");
    assert!(node.log().contains("waiting for nats"), "{}", node.log());
    let client = fast(&node.url()).build().expect("build");
    connected(&client).await;
    let ack = client.publish(CHANNEL, 1).await.expect("publish");
    assert_eq!(ack.offset, 1);
}

#[test]
fn the_start_up_block_names_the_nats_broker() {
    let nats = NatsServer::start();
    let node = Node::start_with(&["--broker", &nats.url(), "--nats-subject-prefix", "blocks"]);
    let line = node.next_line(LIMIT, |line| line.contains("  broker "));
    assert!(
        line.ends_with(&format!(
            "broker     {} (JetStream, subject prefix \"blocks\")",
            nats.url()
        )),
        "{line}"
    );
}
