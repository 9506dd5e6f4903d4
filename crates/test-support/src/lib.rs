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
//! - [`nats`]: a private `nats-server` with JetStream on a free port and its own storage
//!   directory, killed by PID when dropped.
//! - [`http`]: one HTTP/1.1 request, read to the end.
//! - [`rust_client`]: bounded waits on the Rust client's connection state and streams.
//! - [`cli`]: the `switchboard serve` binary as a child, waited for until it listens.
//! - [`wait`]: bounded waits for a condition ([`wait_until`] and friends), not sleeps.
//! - `hub_model` (feature `hub-model`): the hub against a reference model, for the hub's
//!   property test and its fuzz target.
//!
//! Everything that needs tokio or the server sits behind the default `server` feature, so
//! the fuzz targets build only the sans-I/O crates.

#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod client;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "hub-model")]
pub mod hub_model;
#[cfg(feature = "server")]
pub mod memory;
#[cfg(feature = "server")]
pub mod metrics;
pub mod nats;
pub mod pair;
#[cfg(feature = "server")]
pub mod protocol;
pub mod redis;
#[cfg(feature = "server")]
pub mod rust_client;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod sse;
#[cfg(feature = "server")]
pub mod tokens;
#[cfg(feature = "server")]
pub mod wait;

#[cfg(feature = "server")]
pub use wait::{poll_until, wait_until, wait_until_blocking};
