//! The two wire formats: JSON in text frames, MessagePack in binary frames.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codes::ErrorCode;
use crate::message::{COMMAND_TYPES, Command};

/// The subprotocol for JSON, also used when a client offers none.
pub const JSON_SUBPROTOCOL: &str = "switchboard.v1.json";
/// The subprotocol for MessagePack.
pub const MSGPACK_SUBPROTOCOL: &str = "switchboard.v1.msgpack";

/// A wire format, chosen per connection by subprotocol.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Format {
    /// JSON text frames (`switchboard.v1.json`).
    Json,
    /// MessagePack binary frames (`switchboard.v1.msgpack`), maps with field names.
    Msgpack,
}

/// A command that could not be decoded, with what the error reply needs.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// The command's id, when it could still be read.
    pub id: Option<u64>,
    /// [`ErrorCode::BadRequest`] or [`ErrorCode::UnknownCommand`].
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

/// A value that could not be encoded (a map with non-string keys, say).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode: {0}")]
pub struct EncodeError(String);

impl Format {
    /// The subprotocols servers support, in order of preference.
    pub const SUBPROTOCOLS: [&'static str; 2] = [JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL];

    /// The format for a negotiated subprotocol.
    pub fn from_subprotocol(name: &str) -> Option<Self> {
        match name {
            JSON_SUBPROTOCOL => Some(Format::Json),
            MSGPACK_SUBPROTOCOL => Some(Format::Msgpack),
            _ => None,
        }
    }

    /// The subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Format::Json => JSON_SUBPROTOCOL,
            Format::Msgpack => MSGPACK_SUBPROTOCOL,
        }
    }

    /// Whether messages travel in binary frames (else text).
    pub fn is_binary(self) -> bool {
        self == Format::Msgpack
    }

    /// Encodes any message.
    ///
    /// # Errors
    ///
    /// When the value cannot be represented (never for this crate's message types).
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Bytes, EncodeError> {
        match self {
            Format::Json => {
                serde_json::to_vec(value).map(Bytes::from).map_err(|e| EncodeError(e.to_string()))
            }
            Format::Msgpack => rmp_serde::to_vec_named(value)
                .map(Bytes::from)
                .map_err(|e| EncodeError(e.to_string())),
        }
    }

    /// Decodes any message.
    ///
    /// # Errors
    ///
    /// The decoder's message when the bytes are not a valid `T`.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Format::Msgpack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        }
    }

    /// Decodes a client command. On failure, still recovers the command's `id` when it can,
    /// and tells an unknown `type` from a malformed command.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] ready to become an error reply.
    pub fn decode_command(self, bytes: &[u8]) -> Result<Command, DecodeError> {
        let message = match self.decode::<Command>(bytes) {
            Ok(command) => return Ok(command),
            Err(message) => message,
        };
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(default)]
            id: Option<u64>,
            #[serde(default, rename = "type")]
            kind: Option<String>,
        }
        let probe = self.decode::<Probe>(bytes).ok();
        let id = probe.as_ref().and_then(|p| p.id);
        match probe.and_then(|p| p.kind) {
            Some(kind) if !COMMAND_TYPES.contains(&kind.as_str()) => Err(DecodeError {
                id,
                code: ErrorCode::UnknownCommand,
                message: format!("unknown command type {kind:?}"),
            }),
            _ => Err(DecodeError { id, code: ErrorCode::BadRequest, message }),
        }
    }
}
