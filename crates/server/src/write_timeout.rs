//! A socket whose writes fail once they make no progress for a while: what keeps an HTTP
//! response (an event stream above all) from holding its connection forever when the client
//! stops reading. WebSocket connections are taken out of it after the upgrade; their driver
//! has its own write timeout.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Sleep, sleep};

/// `inner`, with writes and flushes that fail with [`io::ErrorKind::TimedOut`] after
/// `limit` without progress.
#[derive(Debug)]
pub(crate) struct WriteTimeout<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits; boxed, since most connections never wait.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit, stalled: None }
    }

    /// The socket itself.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// What a write that returned `poll` means: progress disarms the timer; waiting arms it
    /// and fails once it runs out.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing written for the write timeout",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_makes_no_progress_fails_after_the_limit() {
        // A pipe whose reader never reads: writes block once its buffer is full.
        let (writer, _reader) = tokio::io::duplex(64);
        let mut io = WriteTimeout::new(writer, Duration::from_secs(10));
        io.write_all(&[0; 64]).await.expect("fits in the buffer");
        let started = tokio::time::Instant::now();
        let err = io.write_all(&[0; 1]).await.expect_err("blocked, then timed out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_disarms_the_timer() {
        use tokio::io::AsyncReadExt as _;
        let (writer, mut reader) = tokio::io::duplex(8);
        let mut io = WriteTimeout::new(writer, Duration::from_secs(10));
        // A reader that takes a byte every 9 s: each write waits, never 10 s in a row.
        let read = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut byte = [0u8; 1];
            while reader.read(&mut byte).await.unwrap_or(0) == 1 {
                all.push(byte[0]);
                tokio::time::sleep(Duration::from_secs(9)).await;
            }
            all
        });
        io.write_all(&[7; 12]).await.expect("slow but steady progress");
        drop(io);
        assert_eq!(read.await.expect("reader"), vec![7; 12]);
    }
}
