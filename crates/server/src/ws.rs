//! The per-connection driver: one task owns the socket and the codec connection.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{pending, poll_fn};
use std::io::IoSlice;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Instant;

use bytes::{Buf as _, Bytes, BytesMut};
use switchboard_codec::{
    CloseCause, CloseCode, Connection, DeflateStats, Event, Message, PreparedMessage, Timeouts,
};
use switchboard_hub::Delivery;
use switchboard_proto::codes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Duration, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::LatencyBatch;
use crate::metrics::{Closed, CodeLabel, Metrics, ReasonLabel, SharedDeflate, TransportLabel};
use crate::node::{Kick, Outbound, Outbox, Payload, Queued, Session, Source};
use crate::state::Shared;

/// Bytes taken from the socket per read, through a buffer each worker thread shares among
/// its connections.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// The worker's read buffer: only the bytes of frames not complete yet are kept per
    /// connection, so an idle connection holds no read buffer at all.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Pushes taken off the outbound queue per write, in bytes: enough to coalesce a burst,
/// little enough that one connection's write buffer stays small.
const PUSH_BATCH: usize = 256 * 1024;

/// What a WebSocket endpoint does with the messages it receives.
pub(crate) enum App {
    /// Send every text and binary message straight back.
    Echo,
    /// Speak protocol v1 with the hub.
    Hub(Box<HubApp>),
}

/// A hub connection's session and its outbound queue (pushes, replies, requests to close).
pub(crate) struct HubApp {
    pub(crate) session: Session,
    pub(crate) sink: Arc<Outbox>,
}

impl HubApp {
    /// A hub client's session, with its outbox at hand.
    pub(crate) fn new(session: Session) -> Self {
        let sink = Arc::clone(session.outbox());
        Self { session, sink }
    }

    /// The WebSocket message for a payload taken off the outbox: text for JSON, binary
    /// for MessagePack.
    fn frame(&self, bytes: bytes::Bytes) -> Message {
        if self.session.format().is_binary() {
            Message::Binary(bytes)
        } else {
            Message::Text(bytes)
        }
    }
}

/// What the logs say about a connection, known at the upgrade.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnInfo {
    /// The TCP peer (a proxy's address behind a reverse proxy).
    pub(crate) peer: Option<std::net::SocketAddr>,
    /// The subprotocol chosen, if the client offered any.
    pub(crate) subprotocol: Option<&'static str>,
}

/// Messages a connection received and sent, for its close log line.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    messages_in: u64,
    messages_out: u64,
}

/// Runs one upgraded connection until it closes.
///
/// `early` holds bytes that arrived after the request head, before the upgrade completed.
pub(crate) async fn drive<S>(
    mut io: S,
    early: Bytes,
    mut conn: Connection,
    mut app: App,
    info: ConnInfo,
    shared: &Shared,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = &shared.config;
    let closing = shared.closing.clone();
    let metrics = &shared.metrics;
    let transport =
        TransportLabel { transport: if matches!(app, App::Echo) { "echo" } else { "ws" } };
    let opened = Instant::now();
    let client = match &app {
        App::Hub(hub) => Some(Arc::clone(hub.session.id())),
        App::Echo => None,
    };
    tracing::info!(
        client = client.as_deref(),
        peer = info.peer.map(tracing::field::display),
        transport = transport.transport,
        subprotocol = info.subprotocol,
        "connection opened"
    );
    let mut counts = Counts::default();
    metrics.connections_opened.get_or_create(&transport).inc();
    metrics.connections_active.get_or_create(&transport).inc();
    let mut timeouts = Timeouts::default();
    timeouts.ping_interval = config.ping_interval;
    timeouts.pong_timeout = Some(config.pong_timeout);
    timeouts.idle_timeout = config.idle_timeout;
    timeouts.close_timeout = Some(config.close_timeout);
    conn.set_timeouts(timeouts, Instant::now());
    let overflow = match &app {
        App::Hub(hub) => hub.sink.overflow().clone(),
        App::Echo => CancellationToken::new(),
    };

    let mut buf = BytesMut::new();
    buf.extend_from_slice(&early);
    // A slice of hyper's request buffer: kept, it would pin all of that buffer.
    drop(early);
    if !buf.is_empty() {
        Box::pin(on_read(&mut conn, &mut buf, &mut app, shared, &mut counts)).await;
    }

    let far_future = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let mut timer = pin!(sleep_until(far_future));
    let mut armed = None;
    // The session's own deadline: first-message mode and token expiry.
    let mut session_timer = pin!(sleep_until(far_future));
    let mut session_armed = None;
    let mut draining = false;
    // Waited on across iterations rather than made anew in each: registering with a
    // `Notify` takes its lock, once per connection instead of once per wake-up.
    let mut closing_now = pin!(closing.cancelled());
    let mut overflowed = pin!(overflow.cancelled());
    let mut slow = false;
    // Boxed, and only with permessage-deflate: an idle connection's task carries 8 bytes.
    let mut deflate = DeflateSeen::new(&conn, metrics);
    let error = loop {
        if let Some(deflate) = &mut deflate {
            deflate.update(&conn, metrics);
        }
        let limits = WriteLimits { normal: config.write_timeout, slow: config.close_timeout };
        let flushed = flush(&mut io, &mut conn, limits, &overflow, &mut slow, |conn| {
            metrics.slow_consumers.inc();
            disconnect(conn, &app, codes::close::SLOW_CONSUMER, "slow consumer");
        });
        if let Err(e) = flushed.await {
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
        let session_deadline = match &app {
            App::Hub(hub) if !conn.is_closing() => hub.session.poll_deadline(),
            _ => None,
        };
        if session_deadline != session_armed {
            session_armed = session_deadline;
            session_timer.as_mut().reset(session_deadline.unwrap_or(far_future));
        }
        tokio::select! {
            biased;
            () = &mut closing_now, if !draining => {
                draining = true;
                if let App::Hub(_) = &app {
                    // Upgraded after the drain's batches were planned.
                    take_queued(&mut conn, &mut app, shared, &mut counts);
                    disconnect(&mut conn, &app, codes::close::DRAINING, "server draining");
                } else {
                    // RFC 6455 §7.4.1: echo clients speak no Switchboard protocol, 1001 is
                    // the close code they know. A valid code and a short reason: cannot fail.
                    let _ =
                        conn.close(CloseCode::GOING_AWAY, "server shutting down", Instant::now());
                }
            }
            () = &mut overflowed, if !slow => {
                slow = true;
                metrics.slow_consumers.inc();
                disconnect(&mut conn, &app, codes::close::SLOW_CONSUMER, "slow consumer");
            }
            read = read_into(&mut io, &mut buf) => match read {
                Ok(0) => {
                    conn.handle_transport_closed();
                    break None;
                }
                // Boxed: the commands' futures are large and live only while a read is
                // handled, so an idle connection's task does not carry their space.
                Ok(_) => Box::pin(on_read(&mut conn, &mut buf, &mut app, shared, &mut counts)).await,
                Err(e) => {
                    conn.handle_transport_closed();
                    break Some(e);
                }
            },
            input = next_input(&app) => match input {
                Queued::Payload(item) => take_pushes(&mut conn, &mut app, item, shared, &mut counts),
                Queued::Close(kick) => kicked(&mut conn, &mut app, &kick, shared, &mut counts),
            },
            () = &mut session_timer, if session_armed.is_some() => {
                session_armed = None;
                let due = match &mut app {
                    App::Hub(hub) => hub.session.handle_timeout(tokio::time::Instant::now()),
                    App::Echo => None,
                };
                if let Some(kick) = due {
                    tracing::debug!(code = kick.code, reason = %kick.reason, "session deadline");
                    // Replies already queued (the refusal of a `connect`, say) go out first.
                    take_queued(&mut conn, &mut app, shared, &mut counts);
                    disconnect(&mut conn, &app, kick.code, &kick.reason);
                }
            }
            () = &mut timer, if armed.is_some() => {
                armed = None;
                conn.handle_timeout(Instant::now());
            }
        }
    };
    if let Some(deflate) = &mut deflate {
        deflate.end(&conn, metrics);
    }
    if let Some(e) = error {
        tracing::debug!(error = %e, "connection i/o error");
    }
    if let Some(e) = conn.error() {
        tracing::debug!(error = %e, "protocol violation");
        metrics.protocol_errors.get_or_create(&ReasonLabel { reason: e.as_label() }).inc();
    }
    metrics.connections_active.get_or_create(&transport).dec();
    let code = conn.close_code().map_or(CloseCode::ABNORMAL.0, |c| c.0);
    let cause = match conn.close_cause() {
        Some(CloseCause::Local) => "local",
        Some(CloseCause::Remote) => "remote",
        Some(CloseCause::ProtocolError) => "protocol_error",
        Some(CloseCause::PongTimeout) => "pong_timeout",
        Some(CloseCause::CloseTimeout) => "close_timeout",
        None => "transport",
    };
    let closed = Closed { transport: transport.transport, code: CodeLabel::new(code), cause };
    metrics.connections_closed.get_or_create(&closed).inc();
    tracing::info!(
        client = client.as_deref(),
        peer = info.peer.map(tracing::field::display),
        transport = transport.transport,
        code,
        cause,
        duration_ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX),
        messages_in = counts.messages_in,
        messages_out = counts.messages_out,
        "connection closed"
    );
    if let App::Hub(hub) = app {
        Box::pin(hub.session.close()).await;
    }
    // Boxed: its read buffer would otherwise sit in every connection's task for its life.
    Box::pin(linger(io, config)).await;
}

/// What permessage-deflate did on a connection, counted into the metrics as it changes:
/// in one place, whichever path compressed or inflated.
struct DeflateSeen {
    stats: DeflateStats,
    /// Whether the connection holds a zlib stream between reads (a compressed message
    /// arriving in fragments).
    holding: bool,
}

impl DeflateSeen {
    /// `None` for a connection without permessage-deflate (negotiated at the handshake or
    /// never).
    fn new(conn: &Connection, metrics: &Metrics) -> Option<Box<Self>> {
        let stats = conn.deflate_stats()?;
        metrics.deflate_connections.inc();
        Some(Box::new(Self { stats, holding: false }))
    }

    fn update(&mut self, conn: &Connection, metrics: &Metrics) {
        if let Some(stats) = conn.deflate_stats()
            && stats != self.stats
        {
            metrics.deflated(self.stats, stats);
            self.stats = stats;
        }
        let holding = conn.has_deflate_state();
        if holding != self.holding {
            self.holding = holding;
            if holding {
                metrics.deflate_streams.inc();
            } else {
                metrics.deflate_streams.dec();
            }
        }
    }

    fn end(&mut self, conn: &Connection, metrics: &Metrics) {
        self.update(conn, metrics);
        if self.holding {
            metrics.deflate_streams.dec();
        }
        metrics.deflate_connections.dec();
    }
}

/// Reads what the socket has into `buf`, through the worker's shared buffer.
async fn read_into<S>(io: &mut S, buf: &mut BytesMut) -> std::io::Result<usize>
where
    S: AsyncRead + Unpin,
{
    poll_fn(|cx| {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut read = ReadBuf::new(scratch);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
            buf.extend_from_slice(read.filled());
            Poll::Ready(Ok(read.filled().len()))
        })
    })
    .await
}

/// Decodes what was read and acts on each event.
async fn on_read(
    conn: &mut Connection,
    buf: &mut BytesMut,
    app: &mut App,
    shared: &Shared,
    counts: &mut Counts,
) {
    let metrics = &shared.metrics;
    // A violation queues the close frame with the right code; the loop sends it after the
    // answers to any valid frames that preceded it.
    let _ = conn.handle_read(buf, Instant::now());
    // Counted once per read, not per message: one shared atomic per burst.
    let (mut messages, mut bytes) = (0u64, 0u64);
    let (mut echoed, mut echoed_bytes) = (0u64, 0u64);
    while let Some(event) = conn.poll_event() {
        if let Event::Text(data) | Event::Binary(data) = &event {
            messages += 1;
            bytes += data.len() as u64;
        }
        let kick = match (&mut *app, event) {
            (App::Echo, Event::Text(data)) => {
                let len = data.len() as u64;
                // Only fails once closing has begun, when the echo is owed to no one.
                if conn.send(Message::Text(data)).is_ok() {
                    echoed += 1;
                    echoed_bytes += len;
                }
                None
            }
            (App::Echo, Event::Binary(data)) => {
                let len = data.len() as u64;
                if conn.send(Message::Binary(data)).is_ok() {
                    echoed += 1;
                    echoed_bytes += len;
                }
                None
            }
            (App::Hub(hub), Event::Text(data)) => {
                hub.session.handle(Payload::Text(&data), tokio::time::Instant::now()).await
            }
            (App::Hub(hub), Event::Binary(data)) => {
                hub.session.handle(Payload::Binary(&data), tokio::time::Instant::now()).await
            }
            (_, Event::Ping(_) | Event::Pong(_) | Event::Close(_)) => None,
        };
        // Over the rate limit for too long; the session ignores whatever follows. The
        // replies to the commands before go out first, then the `disconnect` push.
        if let Some(kick) = kick {
            take_queued(conn, app, shared, counts);
            disconnect(conn, app, kick.code, &kick.reason);
        }
    }
    counts.messages_in += messages;
    counts.messages_out += echoed;
    metrics.sent(echoed, echoed_bytes);
    if messages > 0 {
        metrics.messages_in.inc_by(messages);
        metrics.bytes_in.inc_by(bytes);
    }
    if buf.is_empty() {
        // Every frame was whole: give the memory back (the messages decoded from it keep
        // their part alive only as long as they need it).
        *buf = BytesMut::new();
    }
}

/// The next payload or close request for a hub connection; never resolves for echo.
async fn next_input(app: &App) -> Queued {
    match app {
        App::Hub(hub) => hub.sink.recv().await,
        App::Echo => pending().await,
    }
}

/// Moves `first` and whatever else is queued (up to a batch) into the codec, so one write
/// carries them all. A request to close met on the way is carried out after what preceded
/// it.
fn take_pushes(
    conn: &mut Connection,
    app: &mut App,
    first: Outbound,
    shared: &Shared,
    counts: &mut Counts,
) {
    let App::Hub(hub) = app else { return };
    let mut taken = Taken::default();
    taken.push(conn, hub, first, shared);
    let mut kick = None;
    while conn.queued_len() < PUSH_BATCH {
        match hub.sink.try_recv() {
            Some(Queued::Payload(item)) => taken.push(conn, hub, item, shared),
            Some(Queued::Close(k)) => {
                kick = Some(k);
                break;
            }
            None => break,
        }
    }
    taken.count(&shared.metrics, counts);
    if let Some(kick) = kick {
        kicked(conn, app, &kick, shared, counts);
    }
}

/// Closes for `kick`, after everything queued so far.
fn kicked(conn: &mut Connection, app: &mut App, kick: &Kick, shared: &Shared, counts: &mut Counts) {
    tracing::debug!(code = kick.code, reason = %kick.reason, "disconnect requested");
    take_queued(conn, app, shared, counts);
    disconnect(conn, app, kick.code, &kick.reason);
}

/// Moves everything queued so far into the codec, ahead of a close.
fn take_queued(conn: &mut Connection, app: &mut App, shared: &Shared, counts: &mut Counts) {
    let App::Hub(hub) = app else { return };
    let mut taken = Taken::default();
    while let Some(input) = hub.sink.try_recv() {
        // Once closing, a further request to close changes nothing.
        if let Queued::Payload(item) = input {
            taken.push(conn, hub, item, shared);
        }
    }
    taken.count(&shared.metrics, counts);
}

/// Payloads moved from the outbound queue into the codec, counted into the metrics once.
#[derive(Default)]
struct Taken {
    messages: u64,
    bytes: u64,
    latency: LatencyBatch,
    /// Read once, on the first publication.
    now: Option<Instant>,
    /// Pushes sent as a frame compressed once for every subscriber.
    shared: SharedDeflate,
}

impl Taken {
    fn push(&mut self, conn: &mut Connection, hub: &HubApp, item: Outbound, shared: &Shared) {
        let len = item.bytes.len() as u64;
        let since = item.since();
        // Fails only once closing, when pushes are owed to no one.
        let sent = match &item.source {
            Source::Delivery(delivery) => {
                self.send_delivery(conn, hub, delivery, item.bytes, shared)
            }
            Source::Direct | Source::Published(_) => conn.send(hub.frame(item.bytes)).is_ok(),
        };
        if sent {
            self.messages += 1;
            self.bytes += len;
            if let Some(since) = since {
                let now = *self.now.get_or_insert_with(Instant::now);
                self.latency.observe(now.saturating_duration_since(since));
            }
        }
    }

    /// Sends a push on a connection with permessage-deflate: the frame compressed once for
    /// every subscriber when it suits this connection; compressed by this connection when
    /// it asked for a smaller window than the shared frame's; plain when the push stays
    /// plain (its namespace does not compress, it is small, or it does not shrink).
    fn send_delivery(
        &mut self,
        conn: &mut Connection,
        hub: &HubApp,
        delivery: &Delivery,
        bytes: Bytes,
        shared: &Shared,
    ) -> bool {
        let format = hub.session.format();
        let frame = delivery.shared_frame(format, |encoded| {
            prepare_shared(shared, delivery.channel(), format.is_binary(), encoded)
        });
        match frame {
            Some(frame) if conn.accepts_prepared(frame) => {
                let sent = conn.send_prepared(frame).is_ok();
                if sent {
                    self.shared.add(bytes.len(), frame);
                }
                sent
            }
            Some(_) => conn.send(hub.frame(bytes)).is_ok(),
            None => conn.send_uncompressed(hub.frame(bytes)).is_ok(),
        }
    }

    fn count(&self, metrics: &Metrics, counts: &mut Counts) {
        counts.messages_out += self.messages;
        metrics.sent(self.messages, self.bytes);
        metrics.delivery_latency.add(&self.latency);
        metrics.shared_deflated(&self.shared);
    }
}

/// The frame every subscriber with permessage-deflate shares for a push on `channel`:
/// compressed once with the server's settings, or `None` to send the push plain (its
/// namespace does not compress, it is under the minimum size, or it does not shrink).
fn prepare_shared(
    shared: &Shared,
    channel: Option<&str>,
    binary: bool,
    encoded: &Bytes,
) -> Option<PreparedMessage> {
    let namespace = channel.and_then(|channel| shared.node.channel_namespace(channel).ok());
    if namespace.is_some_and(|ns| !ns.compression) {
        return None;
    }
    let config = shared.config.compression.deflate();
    let frame = if binary {
        PreparedMessage::deflated_binary(encoded, &config)
    } else {
        // JSON: UTF-8 by construction, checked once per publication rather than trusted.
        PreparedMessage::deflated_text(std::str::from_utf8(encoded).ok()?, &config)
    };
    shared.metrics.deflate_shared_frames.inc();
    frame.is_compressed().then_some(frame)
}

/// Tells the client why it is being closed (a `disconnect` push), then starts the close
/// handshake with `code`.
fn disconnect(conn: &mut Connection, app: &App, code: u16, reason: &str) {
    if let App::Hub(hub) = app {
        let kick = Kick { code, reason: reason.to_owned() };
        if let Some(bytes) = kick.push(hub.session.format()) {
            let _ = conn.send(hub.frame(bytes));
        }
    }
    // Application codes are in 4000–4999: always sendable.
    let _ = conn.close(CloseCode(code), reason, Instant::now());
}

/// How long `flush` waits for the socket to take a batch.
#[derive(Clone, Copy)]
struct WriteLimits {
    /// While the connection is in good standing: the write timeout.
    normal: Duration,
    /// Once it is a slow consumer: the short chance its `disconnect` push and close frame
    /// get (the close timeout), counted from the moment its queue overflowed.
    slow: Duration,
}

/// Writes everything the codec has queued.
///
/// A queue that overflows while a write is blocked (the usual slow consumer: it stopped
/// reading) makes the connection slow at once: `on_slow` queues its `disconnect` push and
/// close frame behind the frames already in the codec, and the write goes on with the slow
/// limit, so a peer that resumes reading in time sees 4001 and one that does not is dropped
/// with 4001 as its logged close code.
async fn flush<S>(
    io: &mut S,
    conn: &mut Connection,
    limits: WriteLimits,
    overflow: &CancellationToken,
    slow: &mut bool,
    mut on_slow: impl FnMut(&mut Connection),
) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let mut batch = Batch::default();
    let mut limit = if *slow { limits.slow } else { limits.normal };
    loop {
        batch.fill(conn);
        if batch.is_empty() {
            return Ok(());
        }
        // `write_batch` is cancel safe (a batch advances only by what was written), so the
        // write resumes where it stopped once the close frame is queued.
        let write = timeout(limit, write_batch(io, &mut batch));
        let result = tokio::select! {
            // The write first: it usually completes at once, and then the overflow wait is
            // never registered.
            biased;
            result = write => result,
            () = overflow.cancelled(), if !*slow => {
                *slow = true;
                on_slow(conn);
                limit = limits.slow;
                continue;
            }
        };
        match result {
            Ok(written) => written?,
            Err(_) => {
                conn.handle_transport_closed();
                let message = if *slow {
                    "slow consumer: close frame not taken within the close timeout"
                } else {
                    "peer stopped reading: write timed out"
                };
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, message));
            }
        }
    }
}

/// Chunks handed out in one vectored write at most.
const MAX_CHUNKS: usize = 16;

/// Chunks the codec queued (coalesced small frames, shared large payloads), written with as
/// few system calls as the socket allows: one for a frame header and its payload. The
/// usual single chunk needs no allocation.
#[derive(Default)]
struct Batch {
    head: Option<Bytes>,
    tail: VecDeque<Bytes>,
}

impl Batch {
    fn fill(&mut self, conn: &mut Connection) {
        if self.head.is_none() {
            self.head = conn.poll_transmit();
        }
        while self.head.is_some() && self.tail.len() + 1 < MAX_CHUNKS {
            match conn.poll_transmit() {
                Some(chunk) => self.tail.push_back(chunk),
                None => break,
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        self.head.iter().chain(&self.tail)
    }

    /// Drops what `n` written bytes covered.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(head) = self.head.as_mut() else { return };
            if n >= head.len() {
                n -= head.len();
                self.head = self.tail.pop_front();
            } else {
                head.advance(n);
                n = 0;
            }
        }
    }
}

/// Writes the whole batch: vectored when there are several chunks.
async fn write_batch<S>(io: &mut S, batch: &mut Batch) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    while !batch.is_empty() {
        let written = poll_fn(|cx| {
            // Built on each poll, so the slices never live in the connection's future.
            let mut slices = [IoSlice::new(&[]); MAX_CHUNKS];
            let mut count = 0;
            for (slice, chunk) in slices.iter_mut().zip(batch.chunks()) {
                *slice = IoSlice::new(chunk);
                count += 1;
            }
            if count == 1 {
                Pin::new(&mut *io).poll_write(cx, &slices[0])
            } else {
                Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count])
            }
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        batch.advance(written);
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
