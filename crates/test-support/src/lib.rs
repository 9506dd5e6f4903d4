//! Helpers shared by Switchboard's tests, benches and conformance tools.
//!
//! - [`pair`]: an in-memory client/server [`pair::Pair`] of codec connections, with a
//!   virtual clock and byte-level control of what crosses the wire.
//! - [`client`]: a small tokio WebSocket client on the codec, with raw access for sending
//!   malformed bytes.
//! - [`server`]: a real server on `127.0.0.1:0`, shut down when dropped.
//! - [`metrics`]: a server's `/metrics`, and one sample of it.
//! - [`protocol`]: a protocol v1 client that numbers commands and keeps pushes, over a
//!   WebSocket or a session in memory.
//! - [`memory`]: a node on the in-memory broker and its clients, no socket: protocol tests.
//! - [`tokens`]: the test secret, tokens signed with it and configurations verifying them.
//! - [`redis`]: a private `redis-server` on a free port, killed by PID when dropped.
//! - [`http`]: one HTTP/1.1 request, read to the end.
//! - [`rust_client`]: bounded waits on the Rust client's connection state and streams.
//! - [`cli`]: the `switchboard serve` binary as a child, waited for until it listens.
//! - [`wait`]: bounded waits for a condition ([`wait_until`] and friends), not sleeps.

pub mod cli;
pub mod client;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod pair;
pub mod protocol;
pub mod redis;
pub mod rust_client;
pub mod server;
pub mod tokens;
pub mod wait;

pub use wait::{poll_until, wait_until, wait_until_blocking};
