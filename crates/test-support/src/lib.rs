//! Helpers shared by Switchboard's tests, benches and conformance tools.
//!
//! - [`pair`]: an in-memory client/server [`pair::Pair`] of codec connections, with a
//!   virtual clock and byte-level control of what crosses the wire.
//! - [`client`]: a small tokio WebSocket client on the codec, with raw access for sending
//!   malformed bytes.
//! - [`server`]: a real server on `127.0.0.1:0`, shut down when dropped.
//! - [`metrics`]: a server's `/metrics`, and one sample of it.
//! - [`protocol`]: a protocol v1 client that numbers commands and keeps pushes.
//! - [`redis`]: a private `redis-server` on a free port, killed by PID when dropped.
//! - `hub_model` (feature `hub-model`): the hub against a reference model, for the hub's
//!   property test and its fuzz target.
//!
//! Everything that needs tokio or the server sits behind the default `server` feature, so
//! the fuzz targets build only the sans-I/O crates.

#[cfg(feature = "server")]
pub mod client;
#[cfg(feature = "hub-model")]
pub mod hub_model;
#[cfg(feature = "server")]
pub mod metrics;
pub mod pair;
#[cfg(feature = "server")]
pub mod protocol;
pub mod redis;
#[cfg(feature = "server")]
pub mod server;
