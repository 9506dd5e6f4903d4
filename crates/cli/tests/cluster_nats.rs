//! `switchboard serve --broker nats://…` as separate processes on a private `nats-server`
//! with JetStream: starting without NATS, and a node killed with `kill -9` while another
//! node's publisher keeps publishing (as `cluster.rs` does on Redis).

mod support;

use std::process::Command;
use std::time::Instant;

use switchboard_test_support::nats::NatsServer;
use switchboard_test_support::wait_until;
use tokio::net::TcpListener;
use tokio::time::timeout;

use support::{BIN, CHANNEL, LIMIT, Node, connected, fast};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_s_clients_reconnect_to_a_live_one_and_lose_nothing() {
    let nats = NatsServer::start();
    support::a_killed_node_s_clients_reconnect_to_a_live_one_and_lose_nothing(&nats.url()).await;
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
