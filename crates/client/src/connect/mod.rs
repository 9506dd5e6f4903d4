//! The pieces of a connection, for tools that drive the socket themselves: the server's
//! URL, a TCP or TLS stream to it, and the opening handshake.
//!
//! [`Client`](crate::Client) is built from them; so are the `switchboard` command line's
//! `connect`, `subscribe` and `publish`, and the load generator's connections.
//!
//! ```no_run
//! use bytes::BytesMut;
//! use switchboard_client::ServerUrl;
//! use switchboard_client::connect::{Handshake, open_stream, tls_config};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let url = ServerUrl::parse("wss://rt.example.com/ws")?;
//! let tls = tls_config(&[])?;
//! let mut stream = open_stream(&url, Some(&tls)).await?;
//! let mut buf = BytesMut::new();
//! Handshake::new(&url).perform(&mut stream, &mut buf).await?;
//! // Drive a `switchboard_codec::Connection` in the client role over `stream` from here.
//! # Ok(())
//! # }
//! ```

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

mod handshake;
pub mod http;
pub mod sse;
mod tls;
pub(crate) mod url;

pub use handshake::{Accepted, Handshake, HttpRefusal, UpgradeError};
pub use tls::{read_pem_certificates, tls_config};
pub use url::{ServerUrl, UrlError};

/// A byte stream to a server: plain TCP, or TLS over TCP.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// Opens TCP to `url`'s host and port (with `TCP_NODELAY`: commands are small and
/// latency-bound), then TLS when `tls` is given. The caller bounds the time.
///
/// # Errors
///
/// DNS, TCP and TLS errors; a host TLS cannot verify as [`io::ErrorKind::InvalidInput`].
pub async fn open_stream(
    url: &ServerUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> io::Result<Box<dyn ByteStream>> {
    let tcp = TcpStream::connect((url.host(), url.port())).await?;
    tcp.set_nodelay(true)?;
    match tls {
        Some(config) => Ok(Box::new(tls::handshake(config, url, tcp).await?)),
        None => Ok(Box::new(tcp)),
    }
}
