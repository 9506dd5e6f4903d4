//! Helpers shared by Switchboard's tests, benches and conformance tools.
//!
//! - [`pair`]: an in-memory client/server [`pair::Pair`] of codec connections, with a
//!   virtual clock and byte-level control of what crosses the wire.

pub mod pair;
