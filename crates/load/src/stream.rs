//! The bytes under a connection: plain TCP, or TLS over TCP for `wss://` and `https://`.
//!
//! The connection loops drive their socket by readiness (`ready`, then `try_read` and
//! `try_write` until they would block), so that one task reads, writes and answers pings
//! without a second waker. [`Stream`] keeps that shape over both kinds: the plain arm calls
//! the `TcpStream` as before, the TLS arm moves records between the socket and a rustls
//! [`ClientConnection`] with the same non-blocking calls. It also implements `AsyncRead` and
//! `AsyncWrite`, for the opening handshake, which `switchboard-client` performs.
//!
//! The TLS handshake itself is tokio-rustls's, over the `TcpStream`; [`Stream::tls`] then
//! takes the socket and the rustls state back.

use std::io::{self, BufRead as _, IoSlice, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use rustls::ClientConnection;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, Ready};
use tokio::net::TcpStream;

/// A connection's byte stream.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP (`ws://`, `http://`).
    Plain(TcpStream),
    /// TLS over TCP (`wss://`, `https://`), after the handshake.
    Tls(Box<TlsTcp>),
}

/// A TCP socket and the TLS session over it.
#[derive(Debug)]
pub(crate) struct TlsTcp {
    tcp: TcpStream,
    session: ClientConnection,
}

impl Stream {
    /// A stream over a TLS session whose handshake is complete (tokio-rustls's
    /// `TlsStream::into_inner`).
    pub(crate) fn tls(tcp: TcpStream, session: ClientConnection) -> Self {
        Stream::Tls(Box::new(TlsTcp { tcp, session }))
    }

    /// Waits until the socket is ready for `interest`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as `TcpStream::ready`.
    pub(crate) async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        match self {
            Stream::Plain(tcp) => tcp.ready(interest).await,
            Stream::Tls(tls) => tls.tcp.ready(interest).await,
        }
    }

    /// Reads what is there without waiting, appending it to `buf`: about as many bytes as
    /// `buf` has spare capacity (a TLS record may go past it). `Ok(0)` is the end of the
    /// stream; [`io::ErrorKind::WouldBlock`] when nothing is there.
    ///
    /// A TLS stream ends at the peer's `close_notify` or at the end of TCP without one: by
    /// then the WebSocket close handshake (or the HTTP framing) has said whether anything is
    /// missing.
    pub(crate) fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.try_read_buf(buf),
            Stream::Tls(tls) => {
                let budget = (buf.capacity() - buf.len()).max(1);
                let mut sink = |chunk: &[u8]| {
                    buf.extend_from_slice(chunk);
                    chunk.len()
                };
                tls.read_with(&mut sink, budget)
            }
        }
    }

    /// Moves bytes already decrypted into `buf`, without touching the socket: what a TLS
    /// session read past the bytes asked of it during the opening handshake.
    pub(crate) fn take_decrypted(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        if let Stream::Tls(tls) = self {
            tls.take_plaintext(&mut |chunk: &[u8]| {
                buf.extend_from_slice(chunk);
                chunk.len()
            })?;
        }
        Ok(())
    }

    /// Writes what the socket takes now. With TLS, the bytes are sealed into records first,
    /// and records the socket does not take yet wait in the session (see
    /// [`Stream::has_pending_records`]); [`io::ErrorKind::WouldBlock`] when nothing was
    /// taken.
    pub(crate) fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.try_write(data),
            Stream::Tls(tls) => tls.write_with(data.len(), &mut |w| w.write(data)),
        }
    }

    /// [`Stream::try_write`] of several slices in order.
    pub(crate) fn try_write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.try_write_vectored(slices),
            Stream::Tls(tls) => {
                let len = slices.iter().map(|s| s.len()).sum();
                tls.write_with(len, &mut |w| w.write_vectored(slices))
            }
        }
    }

    /// Whether TLS records are waiting for the socket to take them: the stream is not
    /// flushed until they are written.
    pub(crate) fn has_pending_records(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls.session.wants_write(),
        }
    }

    /// Writes waiting TLS records as far as the socket takes them now.
    pub(crate) fn try_write_records(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(tls) => tls.push().map(|_| ()),
        }
    }
}

impl TlsTcp {
    /// Hands decrypted bytes to `sink`, which takes a prefix of each chunk and says how
    /// much. Returns the bytes taken, and stops early when `sink` took less than offered.
    fn take_plaintext(&mut self, sink: &mut dyn FnMut(&[u8]) -> usize) -> io::Result<Taken> {
        let mut taken = Taken { bytes: 0, sink_full: false, ended: false };
        let mut reader = self.session.reader();
        loop {
            match reader.fill_buf() {
                // rustls: an empty chunk is the peer's close_notify.
                Ok([]) => {
                    taken.ended = true;
                    return Ok(taken);
                }
                Ok(chunk) => {
                    let offered = chunk.len();
                    let n = sink(chunk);
                    reader.consume(n);
                    taken.bytes += n;
                    if n < offered {
                        taken.sink_full = true;
                        return Ok(taken);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(taken),
                // The end of TCP without close_notify: see `Stream::try_read_buf`.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    taken.ended = true;
                    return Ok(taken);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Decrypted bytes to `sink`, reading records from the socket while it has some and
    /// fewer than `budget` bytes were taken. `Ok(0)` is the end of the stream;
    /// [`io::ErrorKind::WouldBlock`] when nothing came.
    fn read_with(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> usize,
        budget: usize,
    ) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let taken = self.take_plaintext(sink)?;
            total += taken.bytes;
            if taken.ended || taken.sink_full || total >= budget {
                return Ok(total);
            }
            // rustls reads at most 4 KiB at a time: more calls per byte than plain TCP,
            // but each one leaves the socket's readiness set until it would block.
            match self.session.read_tls(&mut SocketReader(&self.tcp)) {
                // Ok(0) is the end of TCP: the next `take_plaintext` says how it ended.
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && total > 0 => return Ok(total),
                Err(e) => return Err(e),
            }
        }
    }

    /// Decrypts the records read, and sends what the session has to answer (a key update,
    /// or the alert of a failure).
    fn process(&mut self) -> io::Result<()> {
        let processed = self.session.process_new_packets();
        // A write error shows on the next write; a read error matters here.
        let _ = self.push();
        match processed {
            Ok(_) => Ok(()),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }

    /// Seals `len` bytes with `write` (one of the session writer's calls) and writes records
    /// as far as the socket takes them. [`io::ErrorKind::WouldBlock`] when the session's
    /// buffer is full and the socket takes nothing.
    fn write_with(
        &mut self,
        len: usize,
        write: &mut dyn FnMut(&mut rustls::Writer<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if len == 0 {
            return Ok(0);
        }
        loop {
            let n = write(&mut self.session.writer())?;
            let flushed = self.push()?;
            if n > 0 {
                return Ok(n);
            }
            // The buffer was full: once the socket took all of it, there is room.
            if !flushed {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }

    /// Writes sealed records until the socket would block. Whether none is left.
    fn push(&mut self) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut SocketWriter(&self.tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// What [`TlsTcp::take_plaintext`] handed over.
#[derive(Clone, Copy, Debug)]
struct Taken {
    bytes: usize,
    /// The sink took less than it was offered.
    sink_full: bool,
    /// The stream ended (close_notify, or the end of TCP) and everything was handed over.
    ended: bool,
}

/// `io::Read` over a socket's non-blocking read, for rustls.
struct SocketReader<'a>(&'a TcpStream);

impl Read for SocketReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// `io::Write` over a socket's non-blocking writes, for rustls.
struct SocketWriter<'a>(&'a TcpStream);

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let tls = match self.get_mut() {
            Stream::Plain(tcp) => return Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => tls,
        };
        loop {
            let dst = buf.initialize_unfilled();
            let budget = dst.len().max(1);
            let mut filled = 0;
            let mut sink = |chunk: &[u8]| {
                let n = chunk.len().min(dst.len() - filled);
                dst[filled..filled + n].copy_from_slice(&chunk[..n]);
                filled += n;
                n
            };
            match tls.read_with(&mut sink, budget) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(tls.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let tls = match self.get_mut() {
            Stream::Plain(tcp) => return Pin::new(tcp).poll_write(cx, data),
            Stream::Tls(tls) => tls,
        };
        loop {
            match tls.write_with(data.len(), &mut |w| w.write(data)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(tls.tcp.poll_write_ready(cx))?;
                }
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let tls = match self.get_mut() {
            Stream::Plain(tcp) => return Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => tls,
        };
        loop {
            if tls.push()? {
                return Poll::Ready(Ok(()));
            }
            ready!(tls.tcp.poll_write_ready(cx))?;
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Stream::Tls(tls) = &mut *self {
            // RFC 8446 §6.1: close_notify before the end of the stream.
            tls.session.send_close_notify();
        }
        ready!(self.as_mut().poll_flush(cx))?;
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(&mut tls.tcp).poll_shutdown(cx),
        }
    }
}
