//! The deflate streams behind permessage-deflate (RFC 7692 §7.2): one compressor and one
//! decompressor per connection, each allocated when a message needs it and dropped after
//! the message when the negotiated parameters keep no context between messages.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::Error;

/// RFC 7692 §7.2.1: the empty stored block a sync flush ends with, removed by the sender
/// and appended again by the receiver (§7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib refuses a 256-byte window (8 bits) for a raw deflate stream and flate2 takes 9–15.
/// A compressor limited to 8 bits is never created: those messages go uncompressed, as
/// RFC 7692 §6 allows. A decompressor uses at least 9 bits, which also decodes any stream
/// made with a smaller window (RFC 1951 §3.2: the window only bounds back-reference
/// distances).
pub(crate) const MIN_WINDOW_BITS: u8 = 9;

/// The first allocation of the inflate buffer; it doubles from there up to the limit.
const INFLATE_CHUNK: usize = 4096;

/// The sending half: compresses whole messages.
#[derive(Debug)]
pub(crate) struct Deflater {
    stream: Option<Box<Compress>>,
    level: Compression,
    window_bits: u8,
    min_size: usize,
    no_context_takeover: bool,
}

impl Deflater {
    pub(crate) fn new(
        level: Compression,
        window_bits: u8,
        min_size: usize,
        no_context_takeover: bool,
    ) -> Self {
        Self { stream: None, level, window_bits, min_size, no_context_takeover }
    }

    /// The compressed payload of a message, or `None` to send it uncompressed: shorter than
    /// the minimum size, a window zlib cannot honour, or no smaller once compressed.
    pub(crate) fn compress(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        if input.len() < self.min_size || self.window_bits < MIN_WINDOW_BITS {
            return None;
        }
        let (level, bits) = (self.level, self.window_bits);
        let stream = self
            .stream
            .get_or_insert_with(|| Box::new(Compress::new_with_window_bits(level, false, bits)));
        let out = deflate_sync(stream, input).filter(|out| out.len() < input.len());
        // Dropping the context is always safe for the sender: the peer's window holds what
        // it received, and later messages simply do not refer back to it. It is required
        // when a message goes uncompressed after the stream consumed it.
        if out.is_none() || self.no_context_takeover {
            self.stream = None;
        }
        out
    }

    /// Forgets the compression context (after a shared frame the peer's window has moved).
    pub(crate) fn reset(&mut self) {
        self.stream = None;
    }

    /// The window this end may compress with.
    pub(crate) fn window_bits(&self) -> u8 {
        self.window_bits
    }

    pub(crate) fn is_allocated(&self) -> bool {
        self.stream.is_some()
    }
}

/// Compresses one message with a fresh stream, for a frame shared between connections.
pub(crate) fn compress_once(input: &[u8], level: Compression, window_bits: u8) -> Option<Vec<u8>> {
    let mut stream =
        Compress::new_with_window_bits(level, false, window_bits.clamp(MIN_WINDOW_BITS, 15));
    deflate_sync(&mut stream, input)
}

/// The receiving half: inflates a message frame by frame into a buffer that never grows
/// past the message size limit.
#[derive(Debug)]
pub(crate) struct Inflater {
    stream: Option<Box<Decompress>>,
    window_bits: u8,
    no_context_takeover: bool,
    out: Vec<u8>,
    /// The message held a final block (BFINAL): the rest of it is ignored and the next
    /// message starts a new stream.
    ended: bool,
}

impl Inflater {
    pub(crate) fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Self {
            stream: None,
            window_bits: window_bits.clamp(MIN_WINDOW_BITS, 15),
            no_context_takeover,
            out: Vec::new(),
            ended: false,
        }
    }

    /// Inflates one frame's payload onto the message, adding the §7.2.2 tail when `fin`.
    /// Returns the offset of the new bytes in [`message`](Self::message).
    ///
    /// # Errors
    ///
    /// [`Error::InflatedTooLarge`] as soon as the output would pass `max` (the buffer never
    /// holds more than `max` bytes), [`Error::InvalidCompressedData`] for a stream zlib
    /// rejects.
    pub(crate) fn inflate(&mut self, input: &[u8], fin: bool, max: usize) -> Result<usize, Error> {
        let start = self.out.len();
        let bits = self.window_bits;
        let stream = self
            .stream
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        if !self.ended {
            self.ended = inflate_into(stream, input, &mut self.out, max)?;
        }
        if fin && !self.ended {
            self.ended = inflate_into(stream, &TAIL, &mut self.out, max)?;
        }
        Ok(start)
    }

    /// The bytes inflated so far for the message in progress.
    pub(crate) fn message(&self) -> &[u8] {
        &self.out
    }

    /// Takes the finished message and drops the stream if no context is kept.
    pub(crate) fn finish(&mut self) -> Bytes {
        if self.no_context_takeover || self.ended {
            self.stream = None;
        }
        self.ended = false;
        Bytes::from(std::mem::take(&mut self.out))
    }

    /// Frees everything (the connection closed).
    pub(crate) fn clear(&mut self) {
        self.stream = None;
        self.out = Vec::new();
        self.ended = false;
    }

    pub(crate) fn is_allocated(&self) -> bool {
        self.stream.is_some() || self.out.capacity() > 0
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.out.capacity()
    }
}

/// Compresses `input` as one sync-flushed block sequence and removes the tail (§7.2.1).
fn deflate_sync(stream: &mut Compress, input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let start = stream.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity());
        }
        let consumed = (stream.total_in() - start) as usize;
        stream.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync).ok()?;
        // zlib: the flush is complete once a call returns with output space left.
        if (stream.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    // A sync flush always ends with the empty stored block; anything else is a stream this
    // crate does not understand, sent uncompressed instead.
    out.ends_with(&TAIL).then(|| {
        out.truncate(out.len() - TAIL.len());
        out
    })
}

/// Inflates all of `input` into `out`, growing it up to `max` and never beyond. Returns
/// whether the stream ended (a final block).
fn inflate_into(
    stream: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<bool, Error> {
    loop {
        if out.len() == out.capacity() {
            if out.len() >= max {
                // At the limit: one more byte of output means the message is too big.
                let mut probe = [0u8; 1];
                let (before_in, before_out) = (stream.total_in(), stream.total_out());
                let status = stream
                    .decompress(input, &mut probe, FlushDecompress::None)
                    .map_err(|_| Error::InvalidCompressedData)?;
                if stream.total_out() > before_out {
                    return Err(Error::InflatedTooLarge { max: max as u64 });
                }
                let consumed = (stream.total_in() - before_in) as usize;
                input = &input[consumed..];
                if status == Status::StreamEnd {
                    return Ok(true);
                }
                if consumed == 0 {
                    return Ok(false);
                }
                continue;
            }
            // Double, from a small first chunk, up to exactly the limit.
            let grow = out.capacity().max(INFLATE_CHUNK).min(max - out.len());
            out.reserve_exact(grow);
        }
        let before_in = stream.total_in();
        let status = stream
            .decompress_vec(input, out, FlushDecompress::None)
            .map_err(|_| Error::InvalidCompressedData)?;
        input = &input[(stream.total_in() - before_in) as usize..];
        if status == Status::StreamEnd {
            return Ok(true);
        }
        // With room left, zlib has produced everything this input allows.
        if out.len() < out.capacity() {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7692 §7.2.3.1: "Hello" compressed, tail removed.
    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    fn fast() -> Compression {
        Compression::fast()
    }

    #[test]
    fn compresses_hello_as_rfc_7692_section_7_2_3_1() {
        let mut d = Deflater::new(Compression::default(), 15, 0, true);
        assert_eq!(d.compress(b"Hello").as_deref(), None, "not smaller: sent plain");
        assert_eq!(
            compress_once(b"Hello", Compression::default(), 15).as_deref(),
            Some(&HELLO[..])
        );
    }

    #[test]
    fn inflates_the_rfc_7692_examples() {
        // §7.2.3.1: one message.
        let mut i = Inflater::new(15, false);
        i.inflate(&HELLO, true, 100).unwrap();
        assert_eq!(&i.finish()[..], b"Hello");
        // §7.2.3.2: the second "Hello" with context takeover refers back to the first.
        i.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, 100).unwrap();
        assert_eq!(&i.finish()[..], b"Hello");
        // §7.2.3.3: a stored (uncompressed) block.
        let mut i = Inflater::new(15, true);
        i.inflate(&[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00], true, 100)
            .unwrap();
        assert_eq!(&i.finish()[..], b"Hello");
        // §7.2.3.4: a block with BFINAL set, then a padding byte.
        i.inflate(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00], true, 100).unwrap();
        assert_eq!(&i.finish()[..], b"Hello");
        // §7.2.3.5: two blocks in one message.
        i.inflate(
            &[0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00],
            true,
            100,
        )
        .unwrap();
        assert_eq!(&i.finish()[..], b"Hello");
        // §7.2.3.6: an empty message is a single 0x00.
        i.inflate(&[0x00], true, 100).unwrap();
        assert_eq!(&i.finish()[..], b"");
        assert!(!i.is_allocated(), "no context takeover: nothing kept between messages");
    }

    #[test]
    fn context_takeover_keeps_the_window_between_messages() {
        let text = b"the same sentence, over and over again, the same sentence".repeat(4);
        let mut d = Deflater::new(fast(), 15, 0, false);
        let mut i = Inflater::new(15, false);
        let first = d.compress(&text).unwrap();
        let second = d.compress(&text).unwrap();
        assert!(second.len() < first.len() / 2, "{} vs {}", second.len(), first.len());
        assert!(d.is_allocated());
        for payload in [first, second] {
            i.inflate(&payload, true, 1 << 20).unwrap();
            assert_eq!(&i.finish()[..], &text[..]);
        }
        assert!(i.is_allocated());
    }

    #[test]
    fn every_window_size_round_trips() {
        for bits in 8..=15 {
            let mut d = Deflater::new(fast(), bits, 0, false);
            let mut i = Inflater::new(bits, false);
            for round in 0..3 {
                let data: Vec<u8> = (0..3000)
                    .flat_map(|n| {
                        format!("event {n} on channel {}; ", n % (7 + round)).into_bytes()
                    })
                    .collect();
                match d.compress(&data) {
                    // Window 8: zlib cannot compress with it, so the message goes plain.
                    None => assert_eq!(bits, 8),
                    Some(payload) => {
                        i.inflate(&payload, true, data.len()).unwrap();
                        assert_eq!(&i.finish()[..], &data[..], "bits {bits}");
                    }
                }
            }
        }
    }

    #[test]
    fn stops_inflating_at_the_limit() {
        let data = vec![b'a'; 100_000];
        let payload = compress_once(&data, fast(), 15).unwrap();
        for max in [0, 1, 4095, 4096, 4097, 99_999] {
            let mut i = Inflater::new(15, true);
            assert_eq!(
                i.inflate(&payload, true, max),
                Err(Error::InflatedTooLarge { max: max as u64 })
            );
            assert!(i.capacity() <= max, "capacity {} > {max}", i.capacity());
        }
        let mut i = Inflater::new(15, true);
        i.inflate(&payload, true, 100_000).unwrap();
        assert_eq!(i.capacity(), 100_000);
        assert_eq!(i.finish().len(), 100_000);
    }

    #[test]
    fn rejects_corrupt_data() {
        let mut i = Inflater::new(15, true);
        assert_eq!(i.inflate(&[0xff, 0xff, 0xff], true, 100), Err(Error::InvalidCompressedData));
    }
}
