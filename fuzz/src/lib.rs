//! What the fuzz targets share: a cursor that reads a fuzz input as a script, and the
//! connection driver behind `server_read` and `client_read`.
//!
//! Inputs are read with a plain cursor instead of `arbitrary` so that the committed seeds
//! (written by `examples/seeds.rs` with [`script`]) stay readable: a frame in a seed is its
//! wire bytes, unchanged, behind a 3-byte "read" prefix.

pub mod connection;

/// Reads a fuzz input front to back; past the end every read yields zeros or nothing.
#[derive(Debug)]
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, 0 past the end.
    pub fn u8(&mut self) -> u8 {
        let (&first, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        first
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes: fewer at the end of the input.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

/// Writes inputs in the format [`connection::run`] reads, for seeds.
pub mod script {
    /// The 14-byte configuration: limits, then timers (`None`: off), in milliseconds.
    pub fn config(limits: Option<(u16, u16)>, timers: [Option<u16>; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        let (frame, message) = limits.unwrap_or((0, 0));
        out.push(u8::from(limits.is_none()));
        out.extend_from_slice(&frame.to_be_bytes());
        out.extend_from_slice(&message.to_be_bytes());
        let flags = timers.iter().enumerate().fold(0, |f, (i, t)| f | u8::from(t.is_some()) << i);
        out.push(flags);
        for timer in timers {
            out.extend_from_slice(&timer.unwrap_or(0).to_be_bytes());
        }
        out
    }

    /// A read of `bytes` from the peer (at most 65535).
    pub fn read(out: &mut Vec<u8>, bytes: &[u8]) {
        out.push(0);
        out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(bytes);
    }

    /// The clock moving forward by `ms`.
    pub fn advance(out: &mut Vec<u8>, ms: u16) {
        out.push(4);
        out.extend_from_slice(&ms.to_be_bytes());
    }

    /// A message sent by the application: 0 text, 1 binary, 2 ping, 3 pong.
    pub fn send(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
        out.push(5);
        out.push(kind);
        out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(bytes);
    }

    /// The application starting the close handshake.
    pub fn close(out: &mut Vec<u8>, code: u16, reason: &str) {
        out.push(6);
        out.extend_from_slice(&code.to_be_bytes());
        out.push(u8::try_from(reason.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(reason.as_bytes());
    }

    /// The clock jumping to the connection's next timer.
    pub fn next_timer(out: &mut Vec<u8>) {
        out.push(7);
    }
}
