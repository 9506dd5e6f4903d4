//! Switchboard's Rust client: a connection that keeps itself alive.
//!
//! This crate owns the client side of protocol v1 (`docs/protocol.md`) over tokio: one
//! background task per [`Client`] owns the socket (TCP, or TLS for `wss://`) and drives the
//! codec's [`Connection`](switchboard_codec::Connection) in the client role. It sends
//! `connect`, resubscribes every channel with its last `{offset, epoch}` after each
//! reconnection and delivers what was missed before live publications, reconnects with
//! exponential backoff and full jitter following each close code's advice, detects dead
//! connections by their silence, refreshes expiring tokens, and queues publishes while
//! disconnected.
//!
//! It does not own the wire format ([`switchboard_proto`]), the WebSocket framing
//! ([`switchboard_codec`]), or any application state: after a
//! [`SubscriptionEvent::Recovered`] with `recovered: false`, resynchronising is the
//! application's job.
//!
//! The pieces of a connection are public in [`connect`], for tools that drive the socket
//! themselves (the `switchboard` command line, the load generator): [`ServerUrl`], a TCP or
//! TLS stream, and the opening handshake with refusals read into a typed error.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use switchboard_client::{Client, ConnectionState, SubscriptionEvent};
//!
//! # async fn run() -> Result<(), switchboard_client::Error> {
//! let client = Client::builder("ws://127.0.0.1:8080/ws").build()?;
//! client.wait_connected().await?;
//!
//! let mut lobby = client.subscribe("chat:lobby").await?;
//! let ack = client.publish("chat:lobby", serde_json::json!({"text": "hello"})).await?;
//! println!("published at offset {}", ack.offset);
//!
//! while let Some(event) = lobby.next().await {
//!     match event {
//!         SubscriptionEvent::Publication(p) => println!("{}: {}", p.offset, p.data),
//!         SubscriptionEvent::Recovered { recovered: false } => {
//!             // Missed publications are gone: reload state from the application's API.
//!         }
//!         other => println!("{other:?}"),
//!     }
//!     if client.state().state == ConnectionState::Closed {
//!         break;
//!     }
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```

mod backoff;
mod builder;
mod client;
pub mod connect;
mod driver;
mod error;
mod jwt;
mod lenient;
mod sse;
mod transport;

pub use builder::{BoxError, ClientBuilder, PublishQueue, TokenFuture, TokenProvider, Transport};
pub use client::{
    Client, ConnectionState, PublishAck, StateChange, Subscription, SubscriptionEvent,
};
pub use connect::{ServerUrl, UrlError};
pub use error::{DisconnectReason, Error};
pub use switchboard_proto::{
    Advice, ClientInfo, ErrorCode, Format, HistoryResult, Publication, StreamPosition, Value,
};
