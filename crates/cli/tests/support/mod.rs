//! Helpers shared by the tests that run several `switchboard serve` processes: the nodes
//! themselves (killed by PID), a TCP load balancer that fails over to the next live node,
//! client builders and bounded waits.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::time::Instant;

use switchboard_client::{ConnectionState, Subscription};
use switchboard_test_support::cli::{Serve, Served};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

// Each test binary uses its own subset of these too.
#[allow(unused_imports)]
pub(crate) use switchboard_test_support::rust_client::{
    LIMIT, connected, expect_every_publication, fast, next_event, wait_state,
};

/// A `switchboard serve` child process on `127.0.0.1:0`, killed (SIGKILL, its PID only)
/// when dropped.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) addr: SocketAddr,
    served: Served,
}

impl Node {
    /// Starts a node on the Redis at `redis_url` and waits until it listens.
    pub(crate) fn start(redis_url: &str) -> Self {
        Self::start_with(&["--broker", redis_url])
    }

    /// Starts `switchboard serve --listen 127.0.0.1:0 <args>` and waits until it listens.
    pub(crate) fn start_with(args: &[&str]) -> Self {
        let served = Serve::new(BIN).args(["--shutdown-timeout", "1s"]).args(args).start();
        Self { addr: served.addr, served }
    }

    /// `ws://<addr>/ws`.
    pub(crate) fn url(&self) -> String {
        self.served.url()
    }

    /// The node's PID.
    pub(crate) fn pid(&self) -> u32 {
        self.served.pid()
    }

    /// `kill -9` this node (its PID only) and reaps it.
    pub(crate) fn kill9(&mut self) {
        self.served.kill9();
    }

    /// Everything the node logged so far.
    pub(crate) fn log(&self) -> String {
        self.served.log()
    }

    /// The next line the node logs for which `wanted` holds, within `limit`.
    pub(crate) fn next_line(&self, limit: Duration, wanted: impl FnMut(&str) -> bool) -> String {
        self.served.next_line(limit, wanted)
    }
}

/// A TCP load balancer on `127.0.0.1:0`: each new connection goes to the first backend that
/// accepts it, so when a backend dies new connections go to the next one. No stickiness.
#[derive(Debug)]
pub(crate) struct Balancer {
    pub(crate) addr: SocketAddr,
    /// Connections forwarded to each backend, in backend order.
    forwarded: Arc<Vec<AtomicUsize>>,
    task: JoinHandle<()>,
}

impl Balancer {
    pub(crate) async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the balancer");
        let addr = listener.local_addr().expect("the balancer's address");
        let forwarded: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let task = tokio::spawn({
            let forwarded = Arc::clone(&forwarded);
            async move {
                while let Ok((mut down, _)) = listener.accept().await {
                    let backends = backends.clone();
                    let forwarded = Arc::clone(&forwarded);
                    tokio::spawn(async move {
                        for (i, backend) in backends.iter().enumerate() {
                            if let Ok(mut up) = TcpStream::connect(backend).await {
                                forwarded[i].fetch_add(1, Ordering::SeqCst);
                                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self { addr, forwarded, task }
    }

    /// The `ws://` URL of the balancer.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Connections forwarded to backend `i` so far.
    pub(crate) fn forwarded(&self, i: usize) -> usize {
        self.forwarded[i].load(Ordering::SeqCst)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A channel of the `chat` namespace, which the default config opens to anonymous
/// publishers, with a history of 100.
pub(crate) const CHANNEL: &str = "chat:feed";

/// Two nodes on the broker at `broker_url`, four clients reaching the first through the
/// balancer and two on the second; the second's publisher keeps publishing while the first is
/// killed with `kill -9`: the first's clients reconnect through the balancer to the second
/// and every client gets every publication once, in order.
pub(crate) async fn a_killed_node_s_clients_reconnect_to_a_live_one_and_lose_nothing(
    broker_url: &str,
) {
    const N: u64 = 400;
    const THROUGH_BALANCER: usize = 4;
    let mut doomed = Node::start(broker_url);
    let survivor = Node::start(broker_url);
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
