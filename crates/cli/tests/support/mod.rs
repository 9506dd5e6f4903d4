//! Helpers shared by the tests that run several `switchboard serve` processes: the nodes
//! themselves (killed by PID), a TCP load balancer that fails over to the next live node,
//! client builders and bounded waits.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use switchboard_client::{Client, ClientBuilder, StateChange, Subscription, SubscriptionEvent};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// Every single wait in these tests is bounded by this.
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

/// A `switchboard serve` child process on `127.0.0.1:0`, killed (SIGKILL, its PID only)
/// when dropped.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Node {
    /// Starts a node on the Redis at `redis_url` and waits until it listens.
    pub(crate) fn start(redis_url: &str) -> Self {
        Self::start_with(&["--broker", redis_url])
    }

    /// Starts `switchboard serve --listen 127.0.0.1:0 <args>` and waits until it listens.
    pub(crate) fn start_with(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--shutdown-timeout", "1s"])
            .args(args)
            .env("SWITCHBOARD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (found, listening) = mpsc::channel();
        // Drained to the end, so the node never blocks on a full pipe; kept for messages.
        std::thread::spawn({
            let log = Arc::clone(&log);
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = listening_addr(&line) {
                        let _ = found.send(addr);
                    }
                    let mut log = log.lock().expect("log lock");
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        match listening.recv_timeout(LIMIT) {
            Ok(addr) => Self { addr, child, log },
            Err(_) => {
                drop(child.kill());
                drop(child.wait());
                panic!("node did not listen in time: {}", log.lock().expect("log lock"));
            }
        }
    }

    /// `ws://<addr>/ws`.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The node's PID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9` this node (its PID only) and reaps it.
    pub(crate) fn kill9(&mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -9 {} failed", self.child.id());
        drop(self.child.wait());
    }

    /// Everything the node logged so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Already gone after `kill9`; `kill` then fails harmlessly.
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

/// The address in a `switchboard listening on http://ADDR …` log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
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

/// A client builder with fast reconnects, for tests that are not about delays.
pub(crate) fn fast(url: &str) -> ClientBuilder {
    Client::builder(url).reconnect_delay(Duration::from_millis(20), Duration::from_millis(200))
}

/// Waits until the client is connected.
pub(crate) async fn connected(client: &Client) {
    tokio::time::timeout(LIMIT, client.wait_connected())
        .await
        .expect("connected in time")
        .expect("connected, not closed");
}

/// The next event, or a panic after [`LIMIT`].
pub(crate) async fn next_event(sub: &mut Subscription) -> SubscriptionEvent {
    tokio::time::timeout(LIMIT, sub.recv())
        .await
        .expect("an event in time")
        .expect("the subscription to be open")
}

/// What a subscriber saw of publications `1..=n` published with their offset as data:
/// panics on a loss, a duplicate, a reordering or an unrecoverable gap; returns how many
/// `recovered: true` it saw.
pub(crate) async fn expect_every_publication(sub: &mut Subscription, n: u64) -> usize {
    let mut expected = 1;
    let mut recoveries = 0;
    while expected <= n {
        match next_event(sub).await {
            SubscriptionEvent::Publication(p) => {
                assert_eq!(p.offset, expected, "lost or duplicated around offset {expected}");
                assert_eq!(p.data, serde_json::json!(expected));
                expected += 1;
            }
            SubscriptionEvent::Recovered { recovered: true } => recoveries += 1,
            SubscriptionEvent::Join(_) | SubscriptionEvent::Leave(_) => {}
            other => panic!("unexpected {other:?} after {} publications", expected - 1),
        }
    }
    recoveries
}

/// Waits until the client's state satisfies `pred`.
pub(crate) async fn wait_state(
    client: &Client,
    pred: impl FnMut(&StateChange) -> bool,
) -> StateChange {
    let mut states = client.state_changes();
    let reached = tokio::time::timeout(LIMIT, states.wait_for(pred))
        .await
        .expect("the state in time")
        .expect("the client's task to be running");
    reached.clone()
}
