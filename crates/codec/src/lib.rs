//! Switchboard's WebSocket engine: RFC 6455 without I/O.
//!
//! This crate owns the opening handshake ([`ServerHandshake`], [`ClientHandshake`]), frame
//! headers, masking, fragmentation, incremental UTF-8 validation, the close handshake,
//! keepalive timers ([`Connection`]) and permessage-deflate (RFC 7692: negotiation in
//! [`deflate`], compression in [`Connection::with_deflate`]). It owns no sockets and reads no clock: bytes and `now`
//! go in, events and bytes come out, so every behaviour can be tested byte by byte and the
//! same engine drives both the server and the client.
//!
//! ```
//! use bytes::BytesMut;
//! use std::time::Instant;
//! use switchboard_codec::{Connection, Event, Limits, Role};
//!
//! let mut server = Connection::new(Role::Server, Limits::default());
//! let mut client = Connection::new(Role::Client, Limits::default());
//! client.send(switchboard_codec::Message::text("hi"))?;
//! let mut wire = BytesMut::new();
//! while let Some(bytes) = client.poll_transmit() {
//!     wire.extend_from_slice(&bytes);
//! }
//! server.handle_read(&mut wire, Instant::now())?;
//! assert_eq!(server.poll_event(), Some(Event::Text("hi".into())));
//! # Ok::<(), switchboard_codec::Error>(())
//! ```

mod compress;
mod connection;
pub mod deflate;
mod error;
mod frame;
pub mod handshake;
mod mask;
mod utf8;

pub use connection::{
    CloseCause, CloseFrame, Connection, DeflateStats, Event, Limits, Message, Role, State, Timeouts,
};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{CloseCode, Error};
pub use frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, PreparedMessage, RSV1};
pub use handshake::{ClientHandshake, HandshakeError, HandshakeLimits, ServerHandshake};
pub use mask::{apply_mask, apply_mask_bytewise};
pub use utf8::Utf8Validator;
