//! Shared by the peer servers: the command line and the broadcast hub.
//!
//! Every peer listens on 127.0.0.1:`--port`, echoes each text or binary message on any path
//! but `/broadcast`, and on `/broadcast` sends each message a client sends to every other
//! client connected there (docs/benchmarks.md, "Peers").

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, bail};
use tokio::sync::broadcast;

/// The path of the broadcast endpoint; every other path echoes.
pub const BROADCAST_PATH: &str = "/broadcast";

/// Messages a slow subscriber may fall behind before it skips ahead (tokio's `Lagged`).
/// At the benchmark's rates this is seconds of traffic; a skipped message counts as lost.
const BROADCAST_CAPACITY: usize = 4096;

/// Reads `--port P` from the command line.
///
/// # Errors
/// A missing, unknown or malformed argument.
pub fn port_from_args() -> anyhow::Result<u16> {
    let mut args = std::env::args().skip(1);
    let mut port = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().context("--port needs a value")?;
                port = Some(value.parse().with_context(|| format!("--port {value:?}"))?);
            }
            _ => bail!("unknown argument {arg:?} (usage: --port P)"),
        }
    }
    port.context("--port P is required")
}

/// One broadcast endpoint: every subscriber receives every message but its own.
#[derive(Debug)]
pub struct Hub<T> {
    next_id: AtomicU64,
    tx: broadcast::Sender<(u64, T)>,
}

impl<T: Clone> Hub<T> {
    /// An endpoint with no subscribers.
    pub fn new() -> Self {
        Self { next_id: AtomicU64::new(0), tx: broadcast::channel(BROADCAST_CAPACITY).0 }
    }

    /// A new subscriber: its id (to publish with) and its receiver.
    pub fn subscribe(&self) -> (u64, broadcast::Receiver<(u64, T)>) {
        (self.next_id.fetch_add(1, Ordering::Relaxed), self.tx.subscribe())
    }

    /// Sends `msg` from subscriber `from` to every other subscriber.
    pub fn publish(&self, from: u64, msg: T) {
        // No receiver is not an error: the publisher may be alone.
        let _ = self.tx.send((from, msg));
    }
}

impl<T: Clone> Default for Hub<T> {
    fn default() -> Self {
        Self::new()
    }
}
