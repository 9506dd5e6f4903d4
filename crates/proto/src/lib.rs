//! Switchboard protocol v1: what clients and servers say to each other.
//!
//! This crate owns the message types ([`Command`], [`Reply`], [`Push`]), the error codes in
//! replies and the close codes with the advice they carry ([`codes`]), channel naming
//! ([`channel`]) and the two encodings ([`Format`]). It owns no sockets, no state and no
//! policy: the server decides what a command does, this crate only says how it looks.
//! `docs/protocol.md` documents every message with examples.
//!
//! ```
//! use switchboard_proto::{CommandKind, Format};
//! let cmd = Format::Json.decode_command(br#"{"id":1,"type":"subscribe","channel":"chat:lobby"}"#)?;
//! assert_eq!(cmd.id, 1);
//! assert!(matches!(cmd.kind, CommandKind::Subscribe(ref s) if s.channel == "chat:lobby"));
//! # Ok::<(), switchboard_proto::DecodeError>(())
//! ```

pub mod channel;
pub mod codes;
mod format;
mod message;
mod strict;

pub use codes::{Advice, ErrorCode, advice};
pub use format::{DecodeError, EncodeError, Format, JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL};
pub use message::{
    COMMAND_TYPES, ChannelRequest, ClientInfo, ClientLimits, Command, CommandKind, CommandResult,
    ConnectRequest, ConnectResult, Empty, ErrorBody, HistoryRequest, HistoryResult,
    PresenceCountResult, PresenceResult, Publication, PublicationPush, PublishRequest,
    PublishResult, Push, RefreshRequest, RefreshResult, Reply, RpcRequest, RpcResult,
    ServerMessage, StreamPosition, SubscribeRequest, SubscribeResult,
};
pub use serde_json::Value;
pub use strict::{MAX_DEPTH, TooDeep, check_data_depth};
