//! `switchboard serve --broker redis://…` as separate processes on a private
//! `redis-server`: starting without Redis, and a node killed with `kill -9` while another
//! node's publisher keeps publishing.

mod support;

use std::process::Command;
use std::time::Instant;

use switchboard_test_support::redis::RedisServer;
use switchboard_test_support::wait_until;
use tokio::net::TcpListener;
use tokio::time::timeout;

use support::{BIN, CHANNEL, LIMIT, Node, connected, fast};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_s_clients_reconnect_to_a_live_one_and_lose_nothing() {
    let redis = RedisServer::start();
    support::a_killed_node_s_clients_reconnect_to_a_live_one_and_lose_nothing(&redis.url()).await;
}

#[test]
fn serve_without_redis_fails_fast_with_one_line() {
    let mut redis = RedisServer::start();
    redis.stop();
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--broker", &redis.url()])
        .output()
        .expect("run switchboard");
    assert!(started.elapsed() < LIMIT, "took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot start the redis broker"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{}", redis.port())), "{stderr}");
}

#[test]
fn bad_broker_urls_are_usage_errors() {
    let out = Command::new(BIN)
        .args(["serve", "--broker", "http://127.0.0.1:6379"])
        .output()
        .expect("run switchboard");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: invalid value 'http://127.0.0.1:6379' for '--broker"),
        "{stderr}"
    );
    assert!(first.contains("redis://"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_redis_wait_starts_once_redis_answers() {
    let mut redis = RedisServer::start();
    redis.stop();
    let url = redis.url();
    // In Redis's place, a listener that drops every connection: the node must try again
    // rather than listen.
    let stand_in = TcpListener::bind(("127.0.0.1", redis.port())).await.expect("the port");
    let starting = std::thread::spawn(move || {
        Node::start_with(&["--broker", &url, "--redis-wait", "--redis-key-prefix", "waited"])
    });
    for attempt in ["a first", "a second"] {
        let (dropped, _) = timeout(LIMIT, stand_in.accept()).await.expect(attempt).expect("accept");
        drop(dropped);
    }
    assert!(!starting.is_finished(), "the node listened without redis");
    drop(stand_in);
    redis.restart();
    let started = wait_until(LIMIT, || starting.is_finished()).await;
    assert!(started, "the node listens once redis is up");
    let node = starting.join().expect("the node started");
    assert!(node.log().contains("waiting for redis"), "{}", node.log());
    let client = fast(&node.url()).build().expect("build");
    connected(&client).await;
    let ack = client.publish(CHANNEL, 1).await.expect("publish");
    assert_eq!(ack.offset, 1);
}

#[test]
fn the_start_up_block_names_the_redis_broker() {
    let redis = RedisServer::start();
    let node = Node::start_with(&["--broker", &redis.url(), "--redis-key-prefix", "blocks"]);
    let line = node.next_line(LIMIT, |line| line.contains("  broker "));
    assert!(
        line.ends_with(&format!("broker     {} (key prefix \"blocks\")", redis.url())),
        "{line}"
    );
}
