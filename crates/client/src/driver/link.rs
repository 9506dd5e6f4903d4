//! The seam between the driver and a transport: one connection's way of carrying protocol
//! messages, a WebSocket (the codec over a byte stream) or an SSE session (its two tasks).
//! Everything above it (commands, replies, pushes, recovery) is the same on both.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_codec::{CloseCode, Connection, Event, Limits, Message, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::connect::ByteStream;
use crate::error::DisconnectReason;
use crate::sse::{Down, SseLink};
use crate::transport::Opened;

/// One connection's transport.
pub(super) enum Link {
    Ws {
        io: Box<dyn ByteStream>,
        conn: Box<Connection>,
        buf: BytesMut,
    },
    Sse {
        link: SseLink,
        /// What the tasks said, not yet handed to the driver.
        ready: Option<Down>,
        closed: bool,
    },
}

/// What arrived.
pub(super) enum Incoming {
    /// A protocol message.
    Message(Bytes),
    /// The WebSocket's close frame: its code (1005 without one) and reason.
    Close(u16, String),
    /// The transport cannot go on, for this reason.
    Failed(DisconnectReason),
}

impl Link {
    pub(super) fn new(opened: Opened) -> Self {
        match opened {
            Opened::Ws { io, buf, deflate, .. } => {
                let conn = match deflate {
                    Some(deflate) => {
                        let (params, config) = *deflate;
                        Connection::with_deflate(Role::Client, Limits::default(), params, &config)
                    }
                    None => Connection::new(Role::Client, Limits::default()),
                };
                Link::Ws { io, conn: Box::new(conn), buf }
            }
            Opened::Sse(link) => Link::Sse { link, ready: None, closed: false },
        }
    }

    /// Queues one encoded message.
    pub(super) fn send(&mut self, bytes: Bytes, binary: bool) -> Result<(), ()> {
        match self {
            Link::Ws { conn, .. } => {
                let message = if binary { Message::Binary(bytes) } else { Message::Text(bytes) };
                conn.send(message).map_err(|_| ())
            }
            Link::Sse { link, .. } => link.send(bytes),
        }
    }

    /// The largest message the server takes, from `connect`'s answer.
    pub(super) fn set_max_message_size(&mut self, max: u64) {
        if let Link::Sse { link, .. } = self {
            link.set_max_message_size(max);
        }
    }

    /// Writes what the codec queued; the SSE uplink writes by itself.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        let Link::Ws { io, conn, .. } = self else { return Ok(()) };
        let mut wrote = false;
        while let Some(bytes) = conn.poll_transmit() {
            timed_write(io.write_all(&bytes)).await?;
            wrote = true;
        }
        if wrote {
            // TLS buffers records until flushed.
            timed_write(io.flush()).await?;
        }
        Ok(())
    }

    /// Waits for something to arrive; `Ok(0)` when the transport ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a byte stream's `read_buf`, or one channel.
    pub(super) async fn read(&mut self) -> io::Result<usize> {
        match self {
            Link::Ws { io, buf, .. } => io.read_buf(buf).await,
            Link::Sse { link, ready, .. } => match link.recv().await {
                Down::End => Ok(0),
                down => {
                    *ready = Some(down);
                    Ok(1)
                }
            },
        }
    }

    /// Whether bytes came with the opening handshake, to be read before waiting.
    pub(super) fn has_buffered(&self) -> bool {
        match self {
            Link::Ws { buf, .. } => !buf.is_empty(),
            Link::Sse { ready, .. } => ready.is_some(),
        }
    }

    /// Decodes what was read; the error when the peer broke the transport's rules.
    pub(super) fn handle_read(&mut self) -> Result<(), String> {
        match self {
            Link::Ws { conn, buf, .. } => {
                conn.handle_read(buf, std::time::Instant::now()).map_err(|e| e.to_string())
            }
            Link::Sse { .. } => Ok(()),
        }
    }

    /// The next thing that arrived.
    pub(super) fn poll_incoming(&mut self) -> Option<Incoming> {
        match self {
            Link::Ws { conn, .. } => loop {
                match conn.poll_event()? {
                    Event::Text(bytes) | Event::Binary(bytes) => {
                        return Some(Incoming::Message(bytes));
                    }
                    Event::Close(frame) => {
                        let (code, reason) = frame
                            .map_or((CloseCode::NO_STATUS.0, String::new()), |f| {
                                (f.code.0, f.reason)
                            });
                        return Some(Incoming::Close(code, reason));
                    }
                    // The codec has queued the pong; any arrival counts for the heartbeat.
                    Event::Ping(_) | Event::Pong(_) => {}
                }
            },
            Link::Sse { ready, .. } => match ready.take()? {
                Down::Message(bytes) => Some(Incoming::Message(bytes)),
                Down::Failed(reason) => Some(Incoming::Failed(reason)),
                Down::Alive | Down::End => None,
            },
        }
    }

    /// The transport error the codec recorded, if any.
    pub(super) fn error(&self) -> Option<String> {
        match self {
            Link::Ws { conn, .. } => conn.error().map(|e| e.to_string()),
            Link::Sse { .. } => None,
        }
    }

    /// The peer ended the transport.
    pub(super) fn handle_transport_closed(&mut self) {
        match self {
            Link::Ws { conn, .. } => conn.handle_transport_closed(),
            Link::Sse { closed, .. } => *closed = true,
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        match self {
            Link::Ws { conn, .. } => conn.is_closed(),
            Link::Sse { closed, .. } => *closed,
        }
    }

    pub(super) fn is_closing(&self) -> bool {
        match self {
            Link::Ws { conn, .. } => conn.is_closing(),
            Link::Sse { closed, .. } => *closed,
        }
    }

    /// Ends the connection on purpose: the close handshake (1000) with a moment for the
    /// server's answer, or `DELETE /session`.
    pub(super) async fn close(&mut self) {
        match self {
            Link::Ws { io, conn, buf } => {
                let _ = conn.close(CloseCode::NORMAL, "", std::time::Instant::now());
                let _ = timeout(CLOSE_WAIT, async {
                    loop {
                        let mut failed = false;
                        while let Some(bytes) = conn.poll_transmit() {
                            failed |= timed_write(io.write_all(&bytes)).await.is_err();
                        }
                        if failed || io.flush().await.is_err() || conn.is_closed() {
                            break;
                        }
                        match io.read_buf(buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {
                                let _ = conn.handle_read(buf, std::time::Instant::now());
                                while conn.poll_event().is_some() {}
                            }
                        }
                    }
                    let _ = io.shutdown().await;
                })
                .await;
            }
            Link::Sse { link, closed, .. } => {
                *closed = true;
                link.close(CLOSE_WAIT).await;
            }
        }
    }
}

async fn timed_write(write: impl Future<Output = io::Result<()>>) -> io::Result<()> {
    timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
}

/// A socket that accepts no bytes for this long is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `close` waits for the server's close frame (or `DELETE /session`).
const CLOSE_WAIT: Duration = Duration::from_secs(1);
