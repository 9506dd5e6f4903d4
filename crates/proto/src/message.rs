//! The messages of protocol v1: client commands, server replies and server pushes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codes::{Advice, ErrorCode};

/// A position in a channel's stream: the offset of the last publication seen, and the
/// epoch it belongs to. Offsets only compare within one epoch.
#[derive(Clone, Debug, Default, Deserialize, Eq, Hash, PartialEq, Serialize)]
pub struct StreamPosition {
    /// The offset of the last publication seen (0 before the first).
    pub offset: u64,
    /// The stream's epoch: it changes whenever history may have been lost.
    pub epoch: String,
}

/// Who a connection is, as shown in presence, joins and leaves and publication info.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ClientInfo {
    /// The connection's id, unique per server process.
    #[serde(rename = "client")]
    pub id: String,
    /// The authenticated user, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Application data about the connection (from its credentials, when authenticated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
}

/// One message in a channel's stream.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Publication {
    /// Its offset in the channel's stream: consecutive, starting at 1 in each epoch.
    pub offset: u64,
    /// The application's payload, any JSON value.
    pub data: Value,
    /// Who published it, when a client did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<std::sync::Arc<ClientInfo>>,
}

/// A command from a client. `id` is chosen by the client and echoed in the reply.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct Command {
    /// The client's id for this command; the reply carries the same.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub kind: CommandKind,
}

/// The commands, tagged by `type`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandKind {
    /// Introduces the client; answered with [`ConnectResult`].
    Connect(ConnectRequest),
    /// Subscribes to a channel, optionally recovering from a position.
    Subscribe(SubscribeRequest),
    /// Leaves a channel.
    Unsubscribe(ChannelRequest),
    /// Publishes to a channel; the reply is the acknowledgement.
    Publish(PublishRequest),
    /// Lists who is in a channel.
    Presence(ChannelRequest),
    /// Counts who is in a channel, without listing them.
    PresenceCount(ChannelRequest),
    /// Reads a channel's history.
    History(HistoryRequest),
    /// Application-level keepalive; answered with an empty result.
    Ping(Empty),
    /// Replaces the connection's token before it expires.
    Refresh(RefreshRequest),
    /// Calls a method of the application's backend; answered with [`RpcResult`].
    Rpc(RpcRequest),
}

impl CommandKind {
    /// The wire name of the command type.
    pub fn as_str(&self) -> &'static str {
        match self {
            CommandKind::Connect(_) => "connect",
            CommandKind::Subscribe(_) => "subscribe",
            CommandKind::Unsubscribe(_) => "unsubscribe",
            CommandKind::Publish(_) => "publish",
            CommandKind::Presence(_) => "presence",
            CommandKind::PresenceCount(_) => "presence_count",
            CommandKind::History(_) => "history",
            CommandKind::Ping(_) => "ping",
            CommandKind::Refresh(_) => "refresh",
            CommandKind::Rpc(_) => "rpc",
        }
    }
}

/// The command types a server understands.
pub const COMMAND_TYPES: [&str; 10] = [
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_count",
    "history",
    "ping",
    "refresh",
    "rpc",
];

/// Nothing: for commands and results without fields.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct Empty {}

/// `connect`: optional, first if sent.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct ConnectRequest {
    /// A credential, when the server asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The client library's name, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The client library's version, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `subscribe`.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct SubscribeRequest {
    /// The channel, `namespace:name` or just `name` for the default namespace.
    pub channel: String,
    /// Recover from this position: deliver exactly the publications after it, or report
    /// `recovered: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<StreamPosition>,
}

/// Commands that name only a channel.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct ChannelRequest {
    /// The channel.
    pub channel: String,
}

/// `publish`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct PublishRequest {
    /// The channel.
    pub channel: String,
    /// The payload, any JSON value.
    pub data: Value,
}

/// `rpc`: a call to the application's backend, through the server.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct RpcRequest {
    /// Which of the backend's methods, 1 to 128 bytes.
    pub method: String,
    /// Its argument, any JSON value; `null` when left out.
    #[serde(default)]
    pub data: Value,
}

/// `refresh`: a new token for the same user.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct RefreshRequest {
    /// The new token.
    pub token: String,
}

/// `history`.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct HistoryRequest {
    /// The channel.
    pub channel: String,
    /// At most this many publications (the newest ones unless `since` is given). Default:
    /// all that history holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only publications after this position, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<StreamPosition>,
}

/// A reply to a command: `result` or `error`, never both.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct Reply<T = Value> {
    /// The command's id.
    pub id: u64,
    /// The result, on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
    /// The error, on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl<T> Reply<T> {
    /// A successful reply.
    pub fn ok(id: u64, result: T) -> Self {
        Self { id, result: Some(result), error: None }
    }

    /// A failed reply.
    pub fn err(id: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { id, result: None, error: Some(ErrorBody::new(code, message)) }
    }
}

/// Why a command failed.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ErrorBody {
    /// The stable code to act on.
    pub code: ErrorCode,
    /// A human-readable explanation, for logs.
    pub message: String,
    /// Whether the same command may succeed later.
    #[serde(default)]
    pub temporary: bool,
}

impl ErrorBody {
    /// An error body; `temporary` follows from the code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), temporary: code.is_temporary() }
    }
}

/// The result of any command, as the server serializes it.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CommandResult {
    /// For `connect`.
    Connect(ConnectResult),
    /// For `subscribe`.
    Subscribe(SubscribeResult),
    /// For `publish`.
    Publish(PublishResult),
    /// For `presence`.
    Presence(PresenceResult),
    /// For `history`.
    History(HistoryResult),
    /// For `refresh`.
    Refresh(RefreshResult),
    /// For `presence_count`.
    PresenceCount(PresenceCountResult),
    /// For `rpc`.
    Rpc(RpcResult),
    /// For `unsubscribe` and `ping`.
    Empty(Empty),
}

/// What `connect` returns.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ConnectResult {
    /// The connection's id.
    pub client: String,
    /// The authenticated user, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The server's version.
    pub version: String,
    /// Seconds between the server's pings; a client that hears nothing for this long plus
    /// a margin should consider the connection dead.
    pub ping_interval: u32,
    /// Limits the client must respect.
    pub limits: ClientLimits,
}

/// Limits announced at connect.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ClientLimits {
    /// Largest WebSocket message the server accepts, in bytes.
    pub max_message_size: u64,
    /// Most channels one connection may subscribe to.
    pub max_subscriptions: u32,
}

/// What `subscribe` returns.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct SubscribeResult {
    /// The stream's current epoch.
    pub epoch: String,
    /// The stream's current top offset: the client's position once the replayed
    /// publications (if any) are applied.
    pub offset: u64,
    /// Whether the namespace keeps history, so a later subscribe can recover.
    pub recoverable: bool,
    /// With `since`: whether every missed publication is in `publications`. `false` means
    /// the gap could not be filled (epoch changed, history too short or expired) and
    /// nothing was replayed: the application should resync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// With `since` and `recovered: true`: the missed publications, oldest first. With
    /// `more`: the first page of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    /// With `since`: the missed publications do not fit in one reply. `publications` holds
    /// the first of them (from `since.offset + 1` on, no gap) and `recovered` is `false`, so
    /// that a client unaware of pages never takes this for a complete recovery; the rest,
    /// up to `offset`, is read with `history` from [`next`](Self::next) on.
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
    /// With `more`: the position to pass as `since` to `history` for the next page (the
    /// last publication in this reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<StreamPosition>,
}

/// What `publish` returns: the acknowledgement, with the offset assigned.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct PublishResult {
    /// The publication's offset.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: String,
}

/// What `refresh` returns.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct RefreshResult {
    /// When the new token expires, in seconds since the Unix epoch. Refresh before then, or
    /// the connection is closed with 4200.
    pub expires_at: u64,
}

/// What `presence` returns.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct PresenceResult {
    /// Every connection subscribed to the channel.
    pub clients: Vec<ClientInfo>,
}

/// What `rpc` returns: the backend's answer.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct RpcResult {
    /// What the backend answered, any JSON value.
    pub data: Value,
}

/// What `presence_count` returns.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct PresenceCountResult {
    /// How many connections are subscribed to the channel.
    pub count: u64,
}

/// What `history` returns.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct HistoryResult {
    /// The stream's current epoch.
    pub epoch: String,
    /// The stream's current top offset.
    pub offset: u64,
    /// Publications, oldest first.
    pub publications: Vec<Publication>,
    /// With `since`: whether `publications` are exactly every publication after it (same
    /// epoch, still in history, within `limit`). `false` comes with no publications, unless
    /// `more` is set. Also `false` without `since` when `more` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    /// The publications asked for do not fit in one reply: `publications` holds the oldest
    /// of them (a first page, never empty) and the rest is read with `since` set to
    /// [`next`](Self::next).
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
    /// With `more`: the position to pass as `since` for the next page (the last publication
    /// in this reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<StreamPosition>,
}

/// For `skip_serializing_if`: flags that are left out when false.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_false(flag: &bool) -> bool {
    !*flag
}

/// A message the server sends without being asked, tagged by `push`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(tag = "push", rename_all = "snake_case")]
pub enum Push {
    /// A publication on a subscribed channel.
    Publication {
        /// The channel.
        channel: String,
        /// The publication.
        #[serde(flatten)]
        publication: Publication,
    },
    /// Someone subscribed to a channel with join/leave events on.
    Join {
        /// The channel.
        channel: String,
        /// Who joined.
        client: ClientInfo,
    },
    /// Someone left a channel (unsubscribed, disconnected, or their connection died).
    Leave {
        /// The channel.
        channel: String,
        /// Who left.
        client: ClientInfo,
    },
    /// On a channel too large for one `join` or `leave` per change (more subscribers on
    /// the node than the namespace's `join_leave_limit`): the joins and leaves since the
    /// last announcement, summed, at most once per `join_leave_interval`.
    PresenceCount {
        /// The channel.
        channel: String,
        /// How many connections are present in the channel, on every node, when this push
        /// was sent; absent when the broker could not be asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
        /// Joins since the last announcement.
        joined: u64,
        /// Leaves since the last announcement.
        left: u64,
    },
    /// The server ended a subscription on its own.
    Unsubscribe {
        /// The channel.
        channel: String,
        /// Why, as an error code.
        code: ErrorCode,
        /// Why, for humans.
        reason: String,
    },
    /// The server is about to close the connection with this close code.
    Disconnect {
        /// The WebSocket close code that follows.
        code: u16,
        /// Why, for humans.
        reason: String,
        /// What the client should do.
        advice: Advice,
    },
    /// A push kind this library does not know yet (sent by a newer server): ignore it.
    #[serde(other)]
    Unknown,
}

/// The encoding side of [`Push::Publication`], borrowing its parts: a publication shared by
/// many subscribers is encoded without cloning its data. Serializes exactly like
/// `Push::Publication`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PublicationPush<'a> {
    push: &'static str,
    channel: &'a str,
    #[serde(flatten)]
    publication: &'a Publication,
}

impl<'a> PublicationPush<'a> {
    /// The push for `publication` on `channel`.
    pub fn new(channel: &'a str, publication: &'a Publication) -> Self {
        Self { push: "publication", channel, publication }
    }
}

/// Anything a server sends, for clients to decode.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ServerMessage {
    /// An unsolicited push.
    Push(Push),
    /// A reply to a command, with its result left as a JSON value to decode by command.
    Reply(Reply<Value>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_replies_decode_without_default() {
        let json = r#"{"id":1,"result":{"client":"c","version":"0.1.0","ping_interval":25,
            "limits":{"max_message_size":65536,"max_subscriptions":128}}}"#;
        let reply: Reply<ConnectResult> = serde_json::from_str(json).unwrap();
        assert_eq!(reply.result.unwrap().ping_interval, 25);
    }

    #[test]
    fn unknown_push_kinds_are_ignorable() {
        let msg: ServerMessage =
            serde_json::from_str(r#"{"push":"from_the_future","x":1}"#).unwrap();
        assert_eq!(msg, ServerMessage::Push(Push::Unknown));
    }

    #[test]
    fn borrowed_publication_push_encodes_like_the_owned_one() {
        let publication = Publication {
            offset: 7,
            data: serde_json::json!({"text": "hi"}),
            info: Some(std::sync::Arc::new(ClientInfo {
                id: "c1".into(),
                user: Some("ann".into()),
                info: None,
            })),
        };
        let owned =
            Push::Publication { channel: "chat:a".into(), publication: publication.clone() };
        let borrowed = PublicationPush::new("chat:a", &publication);
        assert_eq!(
            serde_json::to_string(&owned).unwrap(),
            serde_json::to_string(&borrowed).unwrap()
        );
        let packed = rmp_serde::to_vec_named(&borrowed).unwrap();
        assert_eq!(rmp_serde::from_slice::<Push>(&packed).unwrap(), owned);
    }
}
