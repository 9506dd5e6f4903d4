//! Helpers shared by the tests that run several `switchboard serve` processes: the nodes
//! themselves (killed by PID), a TCP load balancer that fails over to the next live node,
//! client builders and bounded waits.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard_test_support::cli::{Serve, Served};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

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
