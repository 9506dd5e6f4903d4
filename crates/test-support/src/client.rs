//! A minimal async WebSocket client driving the codec over a real TCP socket.
//!
//! The opening handshake is `switchboard-client`'s; after it, the codec runs bare, so tests
//! can send what a well-behaved client never would.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use switchboard_client::ServerUrl;
use switchboard_client::connect::{Handshake, UpgradeError};
use switchboard_codec::{CloseCode, Connection, DeflateConfig, Event, Limits, Message, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connected client.
#[derive(Debug)]
pub struct WsClient {
    stream: TcpStream,
    conn: Connection,
    buf: BytesMut,
    /// The subprotocol the server chose.
    pub protocol: Option<String>,
}

/// What the server answered instead of 101.
#[derive(Debug)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The raw response, head and whatever body arrived.
    pub response: String,
}

impl WsClient {
    /// Connects to `ws://addr{path}`.
    ///
    /// # Errors
    ///
    /// I/O errors, and a refused or invalid handshake as [`io::ErrorKind::InvalidData`].
    pub async fn connect(addr: SocketAddr, path: &str) -> io::Result<Self> {
        Self::connect_with(addr, path, &[], &[]).await
    }

    /// Connects offering `protocols` and sending `headers`.
    ///
    /// # Errors
    ///
    /// I/O errors, and a refused or invalid handshake as [`io::ErrorKind::InvalidData`].
    pub async fn connect_with(
        addr: SocketAddr,
        path: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
    ) -> io::Result<Self> {
        Self::connect_offering(addr, path, protocols, headers, None).await
    }

    /// Connects to `ws://addr{path}` offering permessage-deflate as `config` says, and
    /// speaking it when the server accepts.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect); an answer that breaks RFC 7692 as
    /// [`io::ErrorKind::InvalidData`].
    pub async fn connect_deflate(
        addr: SocketAddr,
        path: &str,
        config: &DeflateConfig,
    ) -> io::Result<Self> {
        Self::connect_offering(addr, path, &[], &[], Some(config)).await
    }

    /// [`connect_deflate`](Self::connect_deflate), offering `protocols` too.
    ///
    /// # Errors
    ///
    /// As [`connect_deflate`](Self::connect_deflate).
    pub async fn connect_deflate_with(
        addr: SocketAddr,
        path: &str,
        protocols: &[&str],
        config: &DeflateConfig,
    ) -> io::Result<Self> {
        Self::connect_offering(addr, path, protocols, &[], Some(config)).await
    }

    async fn connect_offering(
        addr: SocketAddr,
        path: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
        deflate: Option<&DeflateConfig>,
    ) -> io::Result<Self> {
        let url = ServerUrl::parse(&format!("ws://{addr}{path}"))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut handshake = Handshake::new(&url).protocols(protocols);
        if let Some(config) = deflate {
            handshake = handshake.deflate(config);
        }
        for (name, value) in headers {
            handshake = handshake.header(name, value);
        }
        let mut buf = BytesMut::with_capacity(4096);
        let accepted = handshake.perform(&mut stream, &mut buf).await.map_err(|e| match e {
            UpgradeError::Io(e) => e,
            UpgradeError::Closed => io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string()),
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        })?;
        let conn = match (accepted.deflate, deflate) {
            (Some(params), Some(config)) => {
                Connection::with_deflate(Role::Client, Limits::default(), params, config)
            }
            _ => Connection::new(Role::Client, Limits::default()),
        };
        Ok(Self { stream, conn, buf, protocol: accepted.protocol })
    }

    /// Sends an upgrade request and returns the server's refusal.
    ///
    /// # Errors
    ///
    /// I/O errors, or [`io::ErrorKind::InvalidData`] when the server accepted.
    pub async fn expect_refusal(addr: SocketAddr, request: &[u8]) -> io::Result<Refusal> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut response = Vec::new();
        // Read until the whole answer (head and Content-Length body) is in, or the server
        // closes.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while !is_complete_response(&response) {
                if stream.read_buf(&mut response).await? == 0 {
                    break;
                }
            }
            Ok::<(), io::Error>(())
        })
        .await;
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status line"))?;
        if status == 101 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "server accepted"));
        }
        Ok(Refusal { status, response })
    }

    /// Sends one message.
    ///
    /// # Errors
    ///
    /// I/O errors, or [`io::ErrorKind::BrokenPipe`] once closing.
    pub async fn send(&mut self, msg: Message) -> io::Result<()> {
        self.conn.send(msg).map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
        self.flush().await
    }

    /// Writes raw bytes, bypassing the codec (to send malformed frames).
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Starts the close handshake.
    ///
    /// # Errors
    ///
    /// I/O errors, or [`io::ErrorKind::InvalidInput`] for an unsendable code.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> io::Result<()> {
        self.conn
            .close(code, reason, Instant::now())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.flush().await
    }

    /// The next event, answering pings and close frames as the codec requires; `None` once
    /// the server closed the TCP connection.
    ///
    /// # Errors
    ///
    /// I/O errors, and protocol violations by the server as [`io::ErrorKind::InvalidData`].
    pub async fn recv(&mut self) -> io::Result<Option<Event>> {
        loop {
            // Frames may already be buffered, even from the read that ended the handshake.
            if !self.buf.is_empty() {
                let _ = self.conn.handle_read(&mut self.buf, Instant::now());
            }
            let event = self.conn.poll_event();
            // Pongs, close answers and failure close frames go out before anything else.
            self.flush().await?;
            if let Some(event) = event {
                return Ok(Some(event));
            }
            if let Some(e) = self.conn.error() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
            }
            if self.conn.is_closed() || self.stream.read_buf(&mut self.buf).await? == 0 {
                self.conn.handle_transport_closed();
                return Ok(None);
            }
        }
    }

    /// Like [`recv`](Self::recv) with a time limit.
    ///
    /// # Errors
    ///
    /// As `recv`, plus [`io::ErrorKind::TimedOut`].
    pub async fn recv_timeout(&mut self, limit: Duration) -> io::Result<Option<Event>> {
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no event in time"))?
    }

    /// Reads until the server closes: returns the close frame's code (`None` when the TCP
    /// connection ended without one) after skipping any other events.
    ///
    /// # Errors
    ///
    /// I/O errors or [`io::ErrorKind::TimedOut`].
    pub async fn expect_close(&mut self, limit: Duration) -> io::Result<Option<CloseCode>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_timeout(left).await? {
                Some(Event::Close(frame)) => {
                    return Ok(Some(frame.map_or(CloseCode::NO_STATUS, |f| f.code)));
                }
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Waits until the server closes the TCP connection, discarding anything it sends.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::TimedOut`] when the server keeps it open past `limit`.
    pub async fn expect_eof(&mut self, limit: Duration) -> io::Result<()> {
        let mut sink = [0u8; 4096];
        tokio::time::timeout(limit, async {
            while self.stream.read(&mut sink).await? > 0 {}
            Ok::<(), io::Error>(())
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "server kept the socket open"))?
    }

    /// The codec connection, to inspect state.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    async fn flush(&mut self) -> io::Result<()> {
        while let Some(bytes) = self.conn.poll_transmit() {
            self.stream.write_all(&bytes).await?;
        }
        Ok(())
    }
}

/// Whether `buf` holds a response head and as much body as its Content-Length announces.
fn is_complete_response(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some(head_end) = text.find("\r\n\r\n") else { return false };
    let length = text[..head_end]
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= head_end + 4 + length
}
