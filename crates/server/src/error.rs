//! The server's error type.

use std::net::SocketAddr;

/// Why the server could not start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(String),
    /// The configuration contradicts itself (a namespace naming a proxy that is not
    /// configured, a proxy URL that is not `http://` or `https://`).
    #[error("configuration: {0}")]
    Config(String),
    /// Another I/O failure of the listener.
    #[error("listener failed: {0}")]
    Io(#[from] std::io::Error),
}
