//! The codec's error type and the close codes of RFC 6455 §7.4.

use std::fmt;

use crate::OpCode;

/// A WebSocket close status code (RFC 6455 §7.4).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer violated the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present. Never sent on the wire.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a close frame. Never sent on the wire.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a text message was not valid UTF-8.
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a frame or message exceeded the endpoint's size limits.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (temporary overload).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response from upstream.
    pub const BAD_GATEWAY: Self = Self(1014);

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// RFC 6455 §7.4.1 and the IANA registry: 1000–1003 and 1007–1014 are defined for use,
    /// 3000–4999 are for libraries and applications. 1004–1006 and 1015 are reserved or
    /// local-only, and everything else is unassigned.
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

/// What went wrong while decoding or driving a connection.
///
/// Peer violations carry the close code that was sent to fail the connection
/// ([`Error::close_code`]); caller misuse returns `None` there.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A client sent an unmasked frame (RFC 6455 §5.1).
    #[error("unmasked frame from client")]
    UnmaskedFrame,
    /// A server sent a masked frame (RFC 6455 §5.1).
    #[error("masked frame from server")]
    MaskedFrame,
    /// RSV bits were set that no negotiated extension defines (RFC 6455 §5.2).
    #[error("reserved bits set without a negotiated extension: {0:#05b}")]
    ReservedBits(u8),
    /// The opcode is reserved (RFC 6455 §5.2).
    #[error("unknown opcode: {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame carried more than 125 bytes (RFC 6455 §5.5).
    #[error("control frame too large: {0} > 125")]
    ControlFrameTooLarge(u64),
    /// A control frame had FIN clear (RFC 6455 §5.5).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A continuation frame arrived with no message in progress (RFC 6455 §5.4).
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A text or binary frame arrived while a fragmented message was in progress.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// The 64-bit length had its most significant bit set, or the length was not
    /// encoded in the minimal number of bytes (RFC 6455 §5.2).
    #[error("invalid payload length encoding")]
    InvalidLength,
    /// A frame's declared length exceeds the frame size limit.
    #[error("frame too large: {len} > {max}")]
    FrameTooLarge {
        /// Declared payload length.
        len: u64,
        /// Configured limit.
        max: u64,
    },
    /// A message's total length exceeds the message size limit.
    #[error("message too large: {len} > {max}")]
    MessageTooLarge {
        /// Length the message would reach.
        len: u64,
        /// Configured limit.
        max: u64,
    },
    /// A text message or close reason was not valid UTF-8 (RFC 6455 §8.1).
    #[error("invalid UTF-8 in text message")]
    InvalidUtf8,
    /// A close frame carried a 1-byte payload (RFC 6455 §5.5.1).
    #[error("close frame payload of 1 byte")]
    CloseFrameTooShort,
    /// A close frame carried a code that may not appear on the wire (RFC 6455 §7.4).
    #[error("invalid close code on the wire: {0}")]
    InvalidCloseCode(u16),
    /// The caller tried to send after the close handshake began.
    #[error("connection is closing: cannot send")]
    Closing,
    /// The caller tried to send a close code that may not appear on the wire.
    #[error("close code cannot be sent: {0}")]
    UnsendableCloseCode(u16),
    /// The caller's control payload (ping, pong, close reason) is over 125 bytes.
    #[error("control payload too large: {0} > 125")]
    ControlPayloadTooLarge(usize),
    /// RSV1 on a control frame or a continuation frame: permessage-deflate marks only the
    /// first frame of a message (RFC 7692 §6.1).
    #[error("RSV1 set on a {0:?} frame")]
    MisplacedRsv1(OpCode),
    /// A compressed message is not a valid deflate stream (RFC 7692 §6.2).
    #[error("invalid compressed data")]
    InvalidCompressedData,
    /// A compressed message inflated past the message size limit; inflating stopped there.
    #[error("inflated message too large: more than {max} bytes")]
    InflatedTooLarge {
        /// Configured limit.
        max: u64,
    },
    /// The caller sent a compressed prepared message on a connection that cannot take it:
    /// permessage-deflate not negotiated, or a window larger than the peer accepts.
    #[error("prepared message is compressed in a way this connection did not negotiate")]
    PreparedNotNegotiated,
    /// The caller sent an unmasked prepared message from the client role.
    #[error("prepared messages are unmasked and cannot be sent by a client")]
    PreparedFromClient,
}

impl Error {
    /// The close code sent to the peer for this error, or `None` when the error is the
    /// caller's and nothing was sent.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::UnmaskedFrame
            | Error::MaskedFrame
            | Error::ReservedBits(_)
            | Error::UnknownOpcode(_)
            | Error::ControlFrameTooLarge(_)
            | Error::FragmentedControlFrame
            | Error::UnexpectedContinuation
            | Error::ExpectedContinuation
            | Error::InvalidLength
            | Error::CloseFrameTooShort
            | Error::InvalidCloseCode(_)
            | Error::MisplacedRsv1(_) => Some(CloseCode::PROTOCOL_ERROR),
            Error::InvalidUtf8 | Error::InvalidCompressedData => Some(CloseCode::INVALID_PAYLOAD),
            Error::FrameTooLarge { .. }
            | Error::MessageTooLarge { .. }
            | Error::InflatedTooLarge { .. } => Some(CloseCode::MESSAGE_TOO_BIG),
            Error::Closing
            | Error::UnsendableCloseCode(_)
            | Error::ControlPayloadTooLarge(_)
            | Error::PreparedFromClient
            | Error::PreparedNotNegotiated => None,
        }
    }

    /// Whether the peer caused this error (and the connection was failed).
    pub fn is_peer_violation(&self) -> bool {
        self.close_code().is_some()
    }

    /// A short stable label for metrics and logs.
    pub fn as_label(&self) -> &'static str {
        match self {
            Error::UnmaskedFrame => "unmasked_frame",
            Error::MaskedFrame => "masked_frame",
            Error::ReservedBits(_) => "reserved_bits",
            Error::UnknownOpcode(_) => "unknown_opcode",
            Error::ControlFrameTooLarge(_) => "control_frame_too_large",
            Error::FragmentedControlFrame => "fragmented_control_frame",
            Error::UnexpectedContinuation => "unexpected_continuation",
            Error::ExpectedContinuation => "expected_continuation",
            Error::InvalidLength => "invalid_length",
            Error::FrameTooLarge { .. } => "frame_too_large",
            Error::MessageTooLarge { .. } => "message_too_large",
            Error::InvalidUtf8 => "invalid_utf8",
            Error::CloseFrameTooShort => "close_frame_too_short",
            Error::InvalidCloseCode(_) => "invalid_close_code",
            Error::Closing => "closing",
            Error::UnsendableCloseCode(_) => "unsendable_close_code",
            Error::ControlPayloadTooLarge(_) => "control_payload_too_large",
            Error::PreparedFromClient => "prepared_from_client",
            Error::MisplacedRsv1(_) => "misplaced_rsv1",
            Error::InvalidCompressedData => "invalid_compressed_data",
            Error::InflatedTooLarge { .. } => "inflated_too_large",
            Error::PreparedNotNegotiated => "prepared_not_negotiated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        assert!(std::mem::size_of::<Error>() <= 32, "{}", std::mem::size_of::<Error>());
    }

    #[test]
    fn sendable_close_codes_follow_rfc_6455_section_7_4() {
        let sendable: Vec<u16> = (0..=u16::MAX).filter(|&c| CloseCode(c).is_sendable()).collect();
        let mut expected: Vec<u16> = (1000..=1003).chain(1007..=1014).collect();
        expected.extend(3000..=4999);
        assert_eq!(sendable, expected);
        for code in [1004, 1005, 1006, 1015, 999, 1016, 2999, 5000] {
            assert!(!CloseCode(code).is_sendable(), "{code}");
        }
    }

    #[test]
    fn peer_violations_map_to_their_close_codes() {
        assert_eq!(Error::InvalidUtf8.close_code(), Some(CloseCode::INVALID_PAYLOAD));
        assert_eq!(
            Error::FrameTooLarge { len: 10, max: 5 }.close_code(),
            Some(CloseCode::MESSAGE_TOO_BIG)
        );
        assert_eq!(Error::UnknownOpcode(3).close_code(), Some(CloseCode::PROTOCOL_ERROR));
        assert_eq!(Error::Closing.close_code(), None);
    }
}
