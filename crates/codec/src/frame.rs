//! Frame headers (RFC 6455 §5.2) and frames encoded once for many connections.

use bytes::{BufMut, Bytes, BytesMut};

use crate::compress::{MIN_WINDOW_BITS, compress_once};
use crate::{DeflateConfig, Error};

/// The RSV1 bit in [`FrameHeader::rsv`]: set on the first frame of a compressed message
/// (RFC 7692 §6).
pub const RSV1: u8 = 0b100;

/// The largest possible frame header: 2 bytes, a 64-bit length and a masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode (RFC 6455 §5.2). Reserved opcodes are rejected while parsing.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a UTF-8 text message.
    Text,
    /// 0x2: a binary message.
    Binary,
    /// 0x8: starts or answers the close handshake.
    Close,
    /// 0x9: a keepalive request.
    Ping,
    /// 0xA: a keepalive answer.
    Pong,
}

impl OpCode {
    /// Decodes the 4-bit opcode.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownOpcode`] for the reserved values 0x3–0x7 and 0xB–0xF.
    pub fn from_bits(bits: u8) -> Result<Self, Error> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xa => OpCode::Pong,
            other => return Err(Error::UnknownOpcode(other)),
        })
    }

    /// The 4-bit wire value.
    pub fn as_bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xa,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct FrameHeader {
    /// Whether this is the final fragment of a message.
    pub fin: bool,
    /// The three RSV bits, in the low bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, when the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The declared payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed, or the header and its encoded length.
    /// Checks only what the header alone decides: opcode, control frame rules, length
    /// encoding. Role, RSV and size limits are checked by the connection.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownOpcode`], [`Error::FragmentedControlFrame`],
    /// [`Error::ControlFrameTooLarge`] or [`Error::InvalidLength`].
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, Error> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x07;
        let opcode = OpCode::from_bits(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let short_len = b1 & 0x7f;
        if opcode.is_control() {
            // RFC 6455 §5.5: control frames must not be fragmented and carry at most 125 bytes.
            if !fin {
                return Err(Error::FragmentedControlFrame);
            }
            if short_len > 125 {
                return Err(Error::ControlFrameTooLarge(u64::from(short_len)));
            }
        }
        let (payload_len, mut pos) = match short_len {
            126 => {
                let Some(bytes) = buf.get(2..4) else { return Ok(None) };
                let len = u64::from(u16::from_be_bytes([bytes[0], bytes[1]]));
                // RFC 6455 §5.2: "the minimal number of bytes MUST be used".
                if len < 126 {
                    return Err(Error::InvalidLength);
                }
                (len, 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10) else { return Ok(None) };
                let mut word = [0u8; 8];
                word.copy_from_slice(bytes);
                let len = u64::from_be_bytes(word);
                // RFC 6455 §5.2: the most significant bit must be 0.
                if len >> 63 != 0 || len <= u64::from(u16::MAX) {
                    return Err(Error::InvalidLength);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            let Some(bytes) = buf.get(pos..pos + 4) else { return Ok(None) };
            pos += 4;
            Some([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            None
        };
        Ok(Some((FrameHeader { fin, rsv, opcode, mask, payload_len }, pos)))
    }

    /// Appends the encoded header to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut b0 = self.opcode.as_bits() | (self.rsv & 0x07) << 4;
        if self.fin {
            b0 |= 0x80;
        }
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        out.put_u8(b0);
        match self.payload_len {
            len @ 0..=125 => out.put_u8(mask_bit | len as u8),
            len @ 126..=0xffff => {
                out.put_u8(mask_bit | 126);
                out.put_u16(len as u16);
            }
            len => {
                out.put_u8(mask_bit | 127);
                out.put_u64(len);
            }
        }
        if let Some(key) = self.mask {
            out.put_slice(&key);
        }
    }

    /// The encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        let len_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + len_bytes + if self.mask.is_some() { 4 } else { 0 }
    }
}

/// A complete unmasked frame, encoded once and shared by reference count, so one
/// publication can be queued on many server connections without re-encoding.
///
/// ```
/// use switchboard_codec::PreparedMessage;
/// let msg = PreparedMessage::text("hello");
/// assert_eq!(&msg.as_bytes()[..], b"\x81\x05hello");
/// ```
///
/// With permessage-deflate, [`deflated_text`](Self::deflated_text) and
/// [`deflated_binary`](Self::deflated_binary) compress once, without context, so the one
/// frame suits every connection that [accepts it](crate::Connection::accepts_prepared).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PreparedMessage {
    frame: Bytes,
    /// The window the payload was compressed with, when RSV1 is set.
    window_bits: Option<u8>,
}

impl PreparedMessage {
    /// Encodes a text message. `text` is UTF-8 by construction.
    pub fn text(text: impl AsRef<str>) -> Self {
        Self::encode(OpCode::Text, text.as_ref().as_bytes())
    }

    /// Encodes a binary message.
    pub fn binary(data: impl AsRef<[u8]>) -> Self {
        Self::encode(OpCode::Binary, data.as_ref())
    }

    /// Encodes a text message from bytes the caller has already validated as UTF-8.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUtf8`] when `data` is not UTF-8.
    pub fn text_from_utf8(data: &[u8]) -> Result<Self, Error> {
        simdutf8::basic::from_utf8(data).map_err(|_| Error::InvalidUtf8)?;
        Ok(Self::encode(OpCode::Text, data))
    }

    /// Encodes a text message compressed per RFC 7692 §7.2.1 with `config`'s level and
    /// `server_max_window_bits`, with no context, so any connection that negotiated
    /// permessage-deflate with at least that window can send it. Below `config.min_size`,
    /// when the window is 8 bits (which zlib cannot compress with) or when compression
    /// does not make it smaller, the message is encoded uncompressed instead.
    pub fn deflated_text(text: impl AsRef<str>, config: &DeflateConfig) -> Self {
        Self::deflate(OpCode::Text, text.as_ref().as_bytes(), config)
    }

    /// Encodes a binary message compressed like [`deflated_text`](Self::deflated_text).
    pub fn deflated_binary(data: impl AsRef<[u8]>, config: &DeflateConfig) -> Self {
        Self::deflate(OpCode::Binary, data.as_ref(), config)
    }

    /// The LZ77 window the payload was compressed with, or `None` when it is not
    /// compressed.
    pub fn compressed_window_bits(&self) -> Option<u8> {
        self.window_bits
    }

    /// Whether the frame carries a compressed payload (RSV1 set).
    pub fn is_compressed(&self) -> bool {
        self.window_bits.is_some()
    }

    fn deflate(opcode: OpCode, payload: &[u8], config: &DeflateConfig) -> Self {
        let bits = config.server_max_window_bits.min(15);
        if payload.len() >= config.min_size
            && bits >= MIN_WINDOW_BITS
            && let Some(compressed) = compress_once(payload, config.compression(), bits)
            && compressed.len() < payload.len()
        {
            let mut msg = Self::encode_with(opcode, RSV1, &compressed);
            msg.window_bits = Some(bits);
            return msg;
        }
        Self::encode(opcode, payload)
    }

    fn encode(opcode: OpCode, payload: &[u8]) -> Self {
        Self::encode_with(opcode, 0, payload)
    }

    fn encode_with(opcode: OpCode, rsv: u8, payload: &[u8]) -> Self {
        let header =
            FrameHeader { fin: true, rsv, opcode, mask: None, payload_len: payload.len() as u64 };
        let mut out = BytesMut::with_capacity(header.encoded_len() + payload.len());
        header.encode(&mut out);
        out.put_slice(payload);
        Self { frame: out.freeze(), window_bits: None }
    }

    /// The encoded frame, header included.
    pub fn as_bytes(&self) -> &Bytes {
        &self.frame
    }

    /// The payload's length on the wire (compressed, when it is).
    pub fn payload_len(&self) -> usize {
        let header = match self.frame[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        self.frame.len() - header
    }

    /// The encoded length, header included.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    /// Whether the encoded frame is empty (never: a frame has at least a header).
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader { fin: true, rsv: 0, opcode, mask, payload_len: len }
    }

    #[test]
    fn round_trips_every_length_class() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = header(OpCode::Binary, len, mask);
                let mut out = BytesMut::new();
                h.encode(&mut out);
                assert_eq!(out.len(), h.encoded_len());
                assert_eq!(FrameHeader::parse(&out), Ok(Some((h, out.len()))));
                for cut in 0..out.len() {
                    assert_eq!(FrameHeader::parse(&out[..cut]), Ok(None), "len {len} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn rejects_reserved_opcodes() {
        for op in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(FrameHeader::parse(&[0x80 | op, 0]), Err(Error::UnknownOpcode(op)));
        }
    }

    #[test]
    fn rejects_fragmented_ping() {
        assert_eq!(FrameHeader::parse(&[0x09, 0]), Err(Error::FragmentedControlFrame));
    }

    #[test]
    fn rejects_oversized_control_frame() {
        assert_eq!(FrameHeader::parse(&[0x89, 126]), Err(Error::ControlFrameTooLarge(126)));
    }

    #[test]
    fn rejects_length_with_top_bit_set() {
        let mut buf = vec![0x82, 127];
        buf.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(FrameHeader::parse(&buf), Err(Error::InvalidLength));
    }

    #[test]
    fn rejects_non_minimal_lengths() {
        assert_eq!(FrameHeader::parse(&[0x82, 126, 0, 125]), Err(Error::InvalidLength));
        let mut buf = vec![0x82, 127];
        buf.extend_from_slice(&65535u64.to_be_bytes());
        assert_eq!(FrameHeader::parse(&buf), Err(Error::InvalidLength));
    }

    #[test]
    fn prepared_message_is_an_unmasked_frame() {
        let msg = PreparedMessage::binary(vec![7u8; 300]);
        let (h, n) = FrameHeader::parse(msg.as_bytes()).unwrap().unwrap();
        assert_eq!(h, header(OpCode::Binary, 300, None));
        assert_eq!(msg.len(), n + 300);
        for len in [0, 125, 126, 65_535, 65_536] {
            assert_eq!(PreparedMessage::binary(vec![0u8; len]).payload_len(), len);
        }
        assert_eq!(PreparedMessage::text_from_utf8(&[0xff]), Err(Error::InvalidUtf8));
    }
}
