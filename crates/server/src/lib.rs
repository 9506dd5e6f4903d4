//! Switchboard's server: tokio, HTTP/1.1 routes, and the WebSocket connection driver.
//!
//! This crate owns sockets, timers and tasks. The protocol itself lives in
//! `switchboard-codec`: hyper parses the HTTP request head, the codec validates the upgrade,
//! and after the 101 the driver hands raw socket bytes to the codec and writes what it
//! queues. One task per connection; one timer per connection.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard_server::Error> {
//! let server = switchboard_server::Server::bind(switchboard_server::Config::default()).await?;
//! println!("listening on {}", server.local_addr());
//! let shutdown = server.shutdown_handle();
//! tokio::spawn(async move {
//!     let _ = tokio::signal::ctrl_c().await;
//!     shutdown.shutdown();
//! });
//! server.run().await
//! # }
//! ```

mod admin;
mod api;
mod auth;
mod cluster;
mod config;
mod error;
mod exposition;
mod fallback;
mod hooks;
mod http;
mod limits;
mod metrics;
pub mod node;
mod refusal;
mod routes;
mod server;
mod state;
mod status;
mod timed;
mod tls;
mod write_timeout;
mod ws;

pub use config::{
    Anonymous, AuthOptions, CompressionOptions, Config, HubOptions, LimitOptions, NamespaceOptions,
    OriginOptions, ProxyEndpoint, Rate, Secret, Transport, TransportOptions, duration_str,
};
pub use error::Error;
pub use server::{Publisher, Server, ShutdownHandle, TlsReloader};
pub use status::static_file;
pub use switchboard_broker::{Broker, MemoryBroker, MemoryLimits};
pub use switchboard_codec::{HandshakeLimits, Limits};
pub use tls::TlsSource;
