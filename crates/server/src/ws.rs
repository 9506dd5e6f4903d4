//! The per-connection driver: one task owns the socket and the codec connection.

use std::pin::pin;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use switchboard_codec::{CloseCode, Connection, Event, Message, Timeouts};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Duration, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::Config;

/// Initial read buffer; grows to fit large frames (within the codec limits).
const READ_BUF: usize = 8 * 1024;

/// What a WebSocket endpoint does with the messages it receives.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Endpoint {
    /// Send every text and binary message straight back.
    Echo,
}

/// Runs one upgraded connection until it closes.
///
/// `early` holds bytes that arrived after the request head, before the upgrade completed.
pub(crate) async fn drive<S>(
    mut io: S,
    early: Bytes,
    mut conn: Connection,
    endpoint: Endpoint,
    config: &Config,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut timeouts = Timeouts::default();
    timeouts.ping_interval = config.ping_interval;
    timeouts.pong_timeout = Some(config.pong_timeout);
    timeouts.idle_timeout = config.idle_timeout;
    timeouts.close_timeout = Some(config.close_timeout);
    conn.set_timeouts(timeouts, Instant::now());

    let mut buf = BytesMut::with_capacity(READ_BUF.max(early.len()));
    buf.extend_from_slice(&early);
    if !buf.is_empty() {
        on_read(&mut conn, &mut buf, endpoint);
    }

    let far_future = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let mut timer = pin!(sleep_until(far_future));
    let mut armed = None;
    let mut draining = false;
    let error = loop {
        if let Err(e) = flush(&mut io, &mut conn, config.write_timeout).await {
            break Some(e);
        }
        if conn.is_closed() {
            break None;
        }
        let deadline = conn.poll_timeout();
        if deadline != armed {
            armed = deadline;
            let at = deadline.map_or(far_future, tokio::time::Instant::from_std);
            timer.as_mut().reset(at);
        }
        if buf.capacity() - buf.len() < READ_BUF / 2 {
            buf.reserve(READ_BUF);
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                // A valid code and a short reason: cannot fail.
                let _ = conn.close(CloseCode::GOING_AWAY, "server shutting down", Instant::now());
            }
            read = io.read_buf(&mut buf) => match read {
                Ok(0) => {
                    conn.handle_transport_closed();
                    break None;
                }
                Ok(_) => on_read(&mut conn, &mut buf, endpoint),
                Err(e) => {
                    conn.handle_transport_closed();
                    break Some(e);
                }
            },
            () = &mut timer, if armed.is_some() => {
                armed = None;
                conn.handle_timeout(Instant::now());
            }
        }
    };
    if let Some(e) = error {
        tracing::debug!(error = %e, "connection i/o error");
    }
    if let Some(e) = conn.error() {
        tracing::debug!(error = %e, "protocol violation");
    }
    tracing::debug!(
        cause = ?conn.close_cause(),
        code = conn.close_code().map(|c| c.0),
        "connection closed"
    );
    linger(io, config).await;
}

/// Decodes what was read and acts on each event.
fn on_read(conn: &mut Connection, buf: &mut BytesMut, endpoint: Endpoint) {
    // A violation queues the close frame with the right code; the loop sends it after the
    // answers to any valid frames that preceded it.
    let _ = conn.handle_read(buf, Instant::now());
    while let Some(event) = conn.poll_event() {
        match (endpoint, event) {
            (Endpoint::Echo, Event::Text(data)) => {
                // Only fails once closing has begun, when the echo is owed to no one.
                let _ = conn.send(Message::Text(data));
            }
            (Endpoint::Echo, Event::Binary(data)) => {
                let _ = conn.send(Message::Binary(data));
            }
            (_, Event::Ping(_) | Event::Pong(_) | Event::Close(_)) => {}
        }
    }
}

/// Writes everything the codec has queued.
async fn flush<S>(io: &mut S, conn: &mut Connection, limit: Duration) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    while let Some(bytes) = conn.poll_transmit() {
        match timeout(limit, io.write_all(&bytes)).await {
            Ok(result) => result?,
            Err(_) => {
                conn.handle_transport_closed();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "peer stopped reading: write timed out",
                ));
            }
        }
    }
    Ok(())
}

/// Closes the transport the way RFC 6455 §7.1.1 asks of a server: send FIN first, then read
/// and discard until the peer closes too (bounded by the close timeout), so that a close
/// frame still in flight is not destroyed by a TCP reset.
async fn linger<S>(mut io: S, config: &Config)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = timeout(config.close_timeout, async {
        io.shutdown().await?;
        let mut sink = [0u8; 4096];
        while io.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}
