//! The two wire formats: JSON in text frames, MessagePack in binary frames.

use bytes::Bytes;
use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed};

use crate::codes::ErrorCode;
use crate::message::{COMMAND_TYPES, Command, CommandKind};
use crate::strict::{Checks, CommandSeed, MSGPACK_DEPTH};

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

    /// Decodes a client command, in one pass over the bytes. On failure, still recovers the
    /// command's `id` when it can, and tells an unknown `type` from a malformed command.
    ///
    /// Besides the fields of each command, the input must keep the rules every subscriber
    /// relies on: no key twice in any map, string keys only, no value nested deeper than
    /// [`MAX_DEPTH`](crate::MAX_DEPTH) levels within a field, and (in MessagePack) nothing
    /// JSON cannot carry. A command breaking one still gets its id back, except when the
    /// repeated key is `id` itself: either could be meant, so the reply's id is 0.
    ///
    /// The envelope is checked first: an object with an integer `id` and a string `type`
    /// (a number is not a type, even though serde would read it as a variant index).
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] ready to become an error reply.
    pub fn decode_command(self, bytes: &[u8]) -> Result<Command, DecodeError> {
        let bad = |id, message: String| DecodeError { id, code: ErrorCode::BadRequest, message };
        let mut checks = Checks::default();
        let read = match self {
            Format::Json => {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                CommandSeed(&mut checks)
                    .deserialize(&mut de)
                    .and_then(|fields| de.end().map(|()| fields))
                    .map_err(|e| e.to_string())
            }
            Format::Msgpack => {
                let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
                de.set_max_depth(MSGPACK_DEPTH);
                CommandSeed(&mut checks).deserialize(&mut de).map_err(|e| e.to_string())
            }
        };
        // Input that does not parse has no id to trust; the first broken rule, if one came
        // before the parser gave up, says more than the parser does.
        let mut fields = read.map_err(|e| bad(None, checks.problem.take().unwrap_or(e)))?;
        let id = if checks.repeated_id {
            None
        } else {
            fields.get("id").and_then(serde_json::Value::as_u64)
        };
        if let Some(problem) = checks.problem {
            return Err(bad(id, problem));
        }
        let Some(id) = id else {
            return Err(bad(None, "a command needs an unsigned integer `id`".to_owned()));
        };
        let bad = |message: String| bad(Some(id), message);
        let kind = match fields.get("type") {
            Some(serde_json::Value::String(kind)) => kind,
            Some(_) => return Err(bad("`type` must be a string".to_owned())),
            None => return Err(bad("a command needs a `type`".to_owned())),
        };
        if !COMMAND_TYPES.contains(&kind.as_str()) {
            return Err(DecodeError {
                id: Some(id),
                code: ErrorCode::UnknownCommand,
                message: format!("unknown command type {kind:?}"),
            });
        }
        // The tagged enum buffers what it reads: `data`, the only field that can be large,
        // waits outside as a null and goes back in once the command is known.
        let data = fields.get_mut("data").map(serde_json::Value::take);
        let mut kind: CommandKind = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| bad(e.to_string()))?;
        match (&mut kind, data) {
            (CommandKind::Publish(publish), Some(data)) => publish.data = data,
            (CommandKind::Rpc(rpc), Some(data)) => rpc.data = data,
            _ => {}
        }
        Ok(Command { id, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_numeric_type_is_not_a_variant_index() {
        let err = Format::Json.decode_command(br#"{"id":3,"type":6}"#).unwrap_err();
        assert_eq!((err.id, err.code), (Some(3), ErrorCode::BadRequest));
        assert_eq!(err.message, "`type` must be a string");
    }

    #[test]
    fn the_id_survives_a_bad_body() {
        let err = Format::Json.decode_command(br#"{"id":4,"type":"publish","channel":1}"#);
        assert_eq!(err.unwrap_err().id, Some(4));
        let packed = rmp_serde::to_vec_named(&serde_json::json!({"id": 5, "type": ["x"]})).unwrap();
        assert_eq!(Format::Msgpack.decode_command(&packed).unwrap_err().id, Some(5));
    }

    #[test]
    fn a_command_needs_an_object_with_an_id() {
        for input in [&b"[3,\"ping\"]"[..], br#"{"type":"ping"}"#, br#"{"id":-1,"type":"ping"}"#] {
            let err = Format::Json.decode_command(input).unwrap_err();
            assert_eq!((err.id, err.code), (None, ErrorCode::BadRequest), "{input:?}");
        }
    }
}
