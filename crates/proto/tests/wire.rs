//! Protocol v1 on the wire, pinned to `docs/protocol.md`.
//!
//! Every JSON example in the document is one of the constants below and every constant is in
//! the document (`docs_show_exactly_the_tested_examples`). Command examples decode to the
//! structs asserted here; reply and push examples are exactly what the types serialize,
//! compared after removing the document's layout whitespace, so key order counts too.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Debug;
use std::path::Path;

use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use switchboard_proto::codes::close;
use switchboard_proto::{
    Advice, ChannelRequest, ClientInfo, ClientLimits, Command, CommandKind, CommandResult,
    ConnectRequest, ConnectResult, Empty, ErrorCode, Format, HistoryRequest, HistoryResult,
    PresenceCountResult, PresenceResult, Publication, PublicationPush, PublishRequest,
    PublishResult, Push, RefreshRequest, RefreshResult, Reply, RpcRequest, RpcResult,
    ServerMessage, StreamPosition, SubscribeRequest, SubscribeResult, Value, advice,
};

// Commands.

const CONNECT: &str = r#"{
  "id": 1,
  "type": "connect",
  "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.bWFj",
  "name": "switchboard-js",
  "version": "0.3.1"
}"#;
const CONNECT_BARE: &str = r#"{"id": 1, "type": "connect"}"#;
const SUBSCRIBE: &str = r#"{"id": 2, "type": "subscribe", "channel": "chat:lobby"}"#;
const SUBSCRIBE_SINCE: &str = r#"{
  "id": 2,
  "type": "subscribe",
  "channel": "chat:lobby",
  "since": {"offset": 43, "epoch": "b3e1f0a9"}
}"#;
const UNSUBSCRIBE: &str = r#"{"id": 5, "type": "unsubscribe", "channel": "chat:lobby"}"#;
const PUBLISH: &str =
    r#"{"id": 3, "type": "publish", "channel": "chat:lobby", "data": {"text": "hello"}}"#;
const PRESENCE: &str = r#"{"id": 4, "type": "presence", "channel": "chat:lobby"}"#;
const PRESENCE_COUNT_COMMAND: &str =
    r#"{"id": 9, "type": "presence_count", "channel": "stadium:final"}"#;
const HISTORY: &str = r#"{"id": 6, "type": "history", "channel": "chat:lobby", "limit": 2}"#;
const HISTORY_SINCE: &str = r#"{
  "id": 7,
  "type": "history",
  "channel": "chat:lobby",
  "limit": 100,
  "since": {"offset": 40, "epoch": "b3e1f0a9"}
}"#;
const PING: &str = r#"{"id": 8, "type": "ping"}"#;
const REFRESH: &str = r#"{"id": 11, "type": "refresh", "token": "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}"#;
const RPC: &str = r#"{"id": 12, "type": "rpc", "method": "order.status", "data": {"order": 1042}}"#;

// Results.

const CONNECT_RESULT: &str = r#"{
  "id": 1,
  "result": {
    "client": "c1a9f",
    "user": "ann",
    "version": "0.1.0",
    "ping_interval": 25,
    "limits": {"max_message_size": 65536, "max_subscriptions": 128}
  }
}"#;
const CONNECT_RESULT_ANONYMOUS: &str = r#"{
  "id": 1,
  "result": {
    "client": "c1a9f",
    "version": "0.1.0",
    "ping_interval": 25,
    "limits": {"max_message_size": 65536, "max_subscriptions": 128}
  }
}"#;
const SUBSCRIBE_RESULT: &str =
    r#"{"id": 2, "result": {"epoch": "b3e1f0a9", "offset": 41, "recoverable": true}}"#;
const SUBSCRIBE_RECOVERED: &str = r#"{
  "id": 2,
  "result": {
    "epoch": "b3e1f0a9",
    "offset": 45,
    "recoverable": true,
    "recovered": true,
    "publications": [
      {"offset": 44, "data": {"text": "still there?"}, "info": {"client": "c2b44", "user": "bob"}},
      {"offset": 45, "data": {"text": "ok, later"}, "info": {"client": "c2b44", "user": "bob"}}
    ]
  }
}"#;
const SUBSCRIBE_NOT_RECOVERED: &str = r#"{
  "id": 2,
  "result": {"epoch": "4c0d7e12", "offset": 3, "recoverable": true, "recovered": false}
}"#;
const SUBSCRIBE_PAGED: &str = r#"{
  "id": 2,
  "result": {
    "epoch": "b3e1f0a9",
    "offset": 60,
    "recoverable": true,
    "recovered": false,
    "publications": [
      {"offset": 44, "data": {"text": "still there?"}, "info": {"client": "c2b44", "user": "bob"}},
      {"offset": 45, "data": {"text": "ok, later"}, "info": {"client": "c2b44", "user": "bob"}}
    ],
    "more": true,
    "next": {"offset": 45, "epoch": "b3e1f0a9"}
  }
}"#;
const UNSUBSCRIBE_RESULT: &str = r#"{"id": 5, "result": {}}"#;
const PUBLISH_RESULT: &str = r#"{"id": 3, "result": {"offset": 42, "epoch": "b3e1f0a9"}}"#;
const PRESENCE_RESULT: &str = r#"{
  "id": 4,
  "result": {
    "clients": [
      {"client": "c1a9f", "user": "ann"},
      {"client": "c2b44", "user": "bob", "info": {"name": "Bob"}}
    ]
  }
}"#;
const PRESENCE_COUNT_RESULT: &str = r#"{"id": 9, "result": {"count": 9412}}"#;
const HISTORY_RESULT: &str = r#"{
  "id": 6,
  "result": {
    "epoch": "b3e1f0a9",
    "offset": 42,
    "publications": [
      {"offset": 41, "data": {"text": "anyone?"}, "info": {"client": "c2b44", "user": "bob"}},
      {"offset": 42, "data": {"text": "hello"}, "info": {"client": "c1a9f", "user": "ann"}}
    ]
  }
}"#;
const HISTORY_PAGED: &str = r#"{
  "id": 7,
  "result": {
    "epoch": "b3e1f0a9",
    "offset": 60,
    "publications": [
      {"offset": 41, "data": {"text": "anyone?"}, "info": {"client": "c2b44", "user": "bob"}},
      {"offset": 42, "data": {"text": "hello"}, "info": {"client": "c1a9f", "user": "ann"}}
    ],
    "complete": false,
    "more": true,
    "next": {"offset": 42, "epoch": "b3e1f0a9"}
  }
}"#;
const PING_RESULT: &str = r#"{"id": 8, "result": {}}"#;
const REFRESH_RESULT: &str = r#"{"id": 11, "result": {"expires_at": 1795000000}}"#;
const RPC_RESULT: &str = r#"{"id": 12, "result": {"data": {"order": 1042, "status": "shipped"}}}"#;

// Error replies, and the inputs of those that answer undecodable commands.

const PERMISSION_DENIED: &str = r#"{
  "id": 9,
  "error": {
    "code": "permission_denied",
    "message": "clients may not publish in this namespace",
    "temporary": false
  }
}"#;
const UNAUTHORIZED_ANONYMOUS: &str = r#"{"id": 1, "error": {"code": "unauthorized", "message": "anonymous connections may not subscribe to `news`: it is in the default namespace (no `namespace:` prefix), which is closed to connections without a token; use a channel such as `chat:news`, connect with a token, or open the namespace with `--namespace ':anonymous=subscribe'`", "temporary": false}}"#;
const UNAVAILABLE: &str = r#"{
  "id": 3,
  "error": {
    "code": "unavailable",
    "message": "broker unavailable: connection refused",
    "temporary": true
  }
}"#;
const BAD_SUBSCRIBE: &str = r#"{"id": 7, "type": "subscribe"}"#;
const BAD_SUBSCRIBE_ERROR: &str = r#"{
  "id": 7,
  "error": {
    "code": "bad_request",
    "message": "missing field `channel`",
    "temporary": false
  }
}"#;
const BAD_TYPE: &str = r#"{"id": 9, "type": "teleport"}"#;
const BAD_TYPE_ERROR: &str = r#"{
  "id": 9,
  "error": {
    "code": "unknown_command",
    "message": "unknown command type \"teleport\"",
    "temporary": false
  }
}"#;
const TRUNCATED: &str = r#"{"id": 10, "type": "ping""#;
const TRUNCATED_ERROR: &str = r#"{
  "id": 0,
  "error": {
    "code": "bad_request",
    "message": "EOF while parsing an object at line 1 column 25",
    "temporary": false
  }
}"#;
const WRONG_FRAME_ERROR: &str = r#"{
  "id": 0,
  "error": {
    "code": "bad_request",
    "message": "this connection speaks switchboard.v1.json: send text frames, not binary",
    "temporary": false
  }
}"#;

// Pushes.

const PUBLICATION: &str = r#"{
  "push": "publication",
  "channel": "chat:lobby",
  "offset": 42,
  "data": {"text": "hello"},
  "info": {"client": "c1a9f", "user": "ann"}
}"#;
const PUBLICATION_FROM_SERVER: &str =
    r#"{"push": "publication", "channel": "news:world", "offset": 7, "data": {"title": "Tide"}}"#;
const JOIN: &str =
    r#"{"push": "join", "channel": "chat:lobby", "client": {"client": "c2b44", "user": "bob"}}"#;
const LEAVE: &str =
    r#"{"push": "leave", "channel": "chat:lobby", "client": {"client": "c2b44", "user": "bob"}}"#;
const PRESENCE_COUNT: &str = r#"{"push": "presence_count", "channel": "stadium:final", "count": 9412, "joined": 37, "left": 2}"#;
const UNSUBSCRIBE_PUSH: &str = r#"{
  "push": "unsubscribe",
  "channel": "chat:lobby",
  "code": "unavailable",
  "reason": "too many publications while subscribing: resubscribe with `since`"
}"#;
const UNSUBSCRIBE_PUSH_AFTER_REFRESH: &str = r#"{"push": "unsubscribe", "channel": "news:b", "code": "permission_denied", "reason": "after refresh: the token does not allow to subscribe to this channel"}"#;
const DISCONNECT: &str =
    r#"{"push": "disconnect", "code": 4001, "reason": "slow consumer", "advice": "reconnect"}"#;

/// Every JSON block of the document.
const EXAMPLES: [&str; 43] = [
    CONNECT,
    CONNECT_BARE,
    CONNECT_RESULT,
    CONNECT_RESULT_ANONYMOUS,
    SUBSCRIBE,
    SUBSCRIBE_RESULT,
    SUBSCRIBE_SINCE,
    SUBSCRIBE_RECOVERED,
    SUBSCRIBE_NOT_RECOVERED,
    SUBSCRIBE_PAGED,
    UNSUBSCRIBE,
    UNSUBSCRIBE_RESULT,
    PUBLISH,
    PUBLISH_RESULT,
    PRESENCE,
    PRESENCE_RESULT,
    PRESENCE_COUNT_COMMAND,
    PRESENCE_COUNT_RESULT,
    HISTORY,
    HISTORY_RESULT,
    HISTORY_SINCE,
    HISTORY_PAGED,
    PING,
    PING_RESULT,
    REFRESH,
    REFRESH_RESULT,
    RPC,
    RPC_RESULT,
    PERMISSION_DENIED,
    UNAUTHORIZED_ANONYMOUS,
    UNAVAILABLE,
    BAD_SUBSCRIBE_ERROR,
    BAD_TYPE_ERROR,
    TRUNCATED_ERROR,
    WRONG_FRAME_ERROR,
    PUBLICATION,
    PUBLICATION_FROM_SERVER,
    JOIN,
    LEAVE,
    PRESENCE_COUNT,
    UNSUBSCRIBE_PUSH,
    UNSUBSCRIBE_PUSH_AFTER_REFRESH,
    DISCONNECT,
];

/// The `ping` command of `PING` in MessagePack, as the document shows it.
const PING_MSGPACK: &str = "82 a2 69 64 08 a4 74 79 70 65 a4 70 69 6e 67";
/// The reply of `PING_RESULT` in MessagePack.
const PING_RESULT_MSGPACK: &str = "82 a2 69 64 08 a6 72 65 73 75 6c 74 80";

/// The document's end-to-end session: `>` client to server, `<` server to client, `#` notes.
const TRANSCRIPT: &str = r#"
> {"id":1,"type":"connect","token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.bWFj"}
< {"id":1,"result":{"client":"c1a9f","user":"ann","version":"0.1.0","ping_interval":25,"limits":{"max_message_size":65536,"max_subscriptions":128}}}
> {"id":2,"type":"subscribe","channel":"chat:lobby"}
< {"id":2,"result":{"epoch":"b3e1f0a9","offset":41,"recoverable":true}}
> {"id":3,"type":"publish","channel":"chat:lobby","data":{"text":"hello"}}
< {"push":"publication","channel":"chat:lobby","offset":42,"data":{"text":"hello"},"info":{"client":"c1a9f","user":"ann"}}
< {"id":3,"result":{"offset":42,"epoch":"b3e1f0a9"}}
< {"push":"publication","channel":"chat:lobby","offset":43,"data":{"text":"hi ann"},"info":{"client":"c2b44","user":"bob"}}
# The client stores {"offset":43,"epoch":"b3e1f0a9"} for chat:lobby, then stops reading.
< {"push":"disconnect","code":4001,"reason":"slow consumer","advice":"reconnect"}
< close frame 4001 "slow consumer"
# New connection, after a short random delay.
> {"id":1,"type":"connect","token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.bWFj"}
< {"id":1,"result":{"client":"c8d02","user":"ann","version":"0.1.0","ping_interval":25,"limits":{"max_message_size":65536,"max_subscriptions":128}}}
> {"id":2,"type":"subscribe","channel":"chat:lobby","since":{"offset":43,"epoch":"b3e1f0a9"}}
< {"id":2,"result":{"epoch":"b3e1f0a9","offset":45,"recoverable":true,"recovered":true,"publications":[{"offset":44,"data":{"text":"still there?"},"info":{"client":"c2b44","user":"bob"}},{"offset":45,"data":{"text":"ok, later"},"info":{"client":"c2b44","user":"bob"}}]}}
< {"push":"publication","channel":"chat:lobby","offset":46,"data":{"text":"welcome back"},"info":{"client":"c2b44","user":"bob"}}
> {"id":3,"type":"ping"}
< {"id":3,"result":{}}"#;

#[test]
fn commands_decode_to_the_documented_structs() {
    let lobby = || "chat:lobby".to_owned();
    let cases = [
        (
            CONNECT,
            Command {
                id: 1,
                kind: CommandKind::Connect(ConnectRequest {
                    token: Some("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.bWFj".into()),
                    name: Some("switchboard-js".into()),
                    version: Some("0.3.1".into()),
                }),
            },
        ),
        (CONNECT_BARE, Command { id: 1, kind: CommandKind::Connect(ConnectRequest::default()) }),
        (
            SUBSCRIBE,
            Command {
                id: 2,
                kind: CommandKind::Subscribe(SubscribeRequest { channel: lobby(), since: None }),
            },
        ),
        (
            SUBSCRIBE_SINCE,
            Command {
                id: 2,
                kind: CommandKind::Subscribe(SubscribeRequest {
                    channel: lobby(),
                    since: Some(position(43)),
                }),
            },
        ),
        (
            UNSUBSCRIBE,
            Command { id: 5, kind: CommandKind::Unsubscribe(ChannelRequest { channel: lobby() }) },
        ),
        (
            PUBLISH,
            Command {
                id: 3,
                kind: CommandKind::Publish(PublishRequest {
                    channel: lobby(),
                    data: json!({"text": "hello"}),
                }),
            },
        ),
        (
            PRESENCE,
            Command { id: 4, kind: CommandKind::Presence(ChannelRequest { channel: lobby() }) },
        ),
        (
            PRESENCE_COUNT_COMMAND,
            Command {
                id: 9,
                kind: CommandKind::PresenceCount(ChannelRequest {
                    channel: "stadium:final".into(),
                }),
            },
        ),
        (
            HISTORY,
            Command {
                id: 6,
                kind: CommandKind::History(HistoryRequest {
                    channel: lobby(),
                    limit: Some(2),
                    since: None,
                }),
            },
        ),
        (
            HISTORY_SINCE,
            Command {
                id: 7,
                kind: CommandKind::History(HistoryRequest {
                    channel: lobby(),
                    limit: Some(100),
                    since: Some(position(40)),
                }),
            },
        ),
        (PING, Command { id: 8, kind: CommandKind::Ping(Empty {}) }),
        (
            REFRESH,
            Command {
                id: 11,
                kind: CommandKind::Refresh(RefreshRequest {
                    token: "eyJhbGciOiJIUzI1NiJ9.e30.c2ln".into(),
                }),
            },
        ),
        (
            RPC,
            Command {
                id: 12,
                kind: CommandKind::Rpc(RpcRequest {
                    method: "order.status".into(),
                    data: json!({"order": 1042}),
                }),
            },
        ),
    ];
    for (doc, expected) in cases {
        let decoded = Format::Json.decode_command(doc.as_bytes()).unwrap();
        assert_eq!(decoded, expected, "{doc}");
        let tag = serde_json::from_str::<Value>(doc).unwrap()["type"].clone();
        assert_eq!(tag, decoded.kind.as_str(), "{doc}");
        // Clients built on these types send the documented bytes, in the documented order.
        assert_wire(&expected, doc);
    }
}

#[test]
fn results_encode_as_documented() {
    let lobby_history = vec![publication(41, "anyone?", bob()), publication(42, "hello", ann())];
    let recovered =
        vec![publication(44, "still there?", bob()), publication(45, "ok, later", bob())];
    let cases: [(&str, CommandResult, u64); 15] = [
        (CONNECT_RESULT, CommandResult::Connect(connect_result("c1a9f", Some("ann"))), 1),
        (CONNECT_RESULT_ANONYMOUS, CommandResult::Connect(connect_result("c1a9f", None)), 1),
        (
            SUBSCRIBE_RESULT,
            CommandResult::Subscribe(SubscribeResult {
                epoch: "b3e1f0a9".into(),
                offset: 41,
                recoverable: true,
                recovered: None,
                publications: Vec::new(),
                more: false,
                next: None,
            }),
            2,
        ),
        (
            SUBSCRIBE_RECOVERED,
            CommandResult::Subscribe(SubscribeResult {
                epoch: "b3e1f0a9".into(),
                offset: 45,
                recoverable: true,
                recovered: Some(true),
                publications: recovered.clone(),
                more: false,
                next: None,
            }),
            2,
        ),
        (
            SUBSCRIBE_NOT_RECOVERED,
            CommandResult::Subscribe(SubscribeResult {
                epoch: "4c0d7e12".into(),
                offset: 3,
                recoverable: true,
                recovered: Some(false),
                publications: Vec::new(),
                more: false,
                next: None,
            }),
            2,
        ),
        (
            SUBSCRIBE_PAGED,
            CommandResult::Subscribe(SubscribeResult {
                epoch: "b3e1f0a9".into(),
                offset: 60,
                recoverable: true,
                recovered: Some(false),
                publications: recovered,
                more: true,
                next: Some(StreamPosition { offset: 45, epoch: "b3e1f0a9".into() }),
            }),
            2,
        ),
        (UNSUBSCRIBE_RESULT, CommandResult::Empty(Empty {}), 5),
        (
            PUBLISH_RESULT,
            CommandResult::Publish(PublishResult { offset: 42, epoch: "b3e1f0a9".into() }),
            3,
        ),
        (
            PRESENCE_RESULT,
            CommandResult::Presence(PresenceResult {
                clients: vec![
                    ann(),
                    ClientInfo {
                        id: "c2b44".into(),
                        user: Some("bob".into()),
                        info: Some(json!({"name": "Bob"})),
                    },
                ],
            }),
            4,
        ),
        (
            PRESENCE_COUNT_RESULT,
            CommandResult::PresenceCount(PresenceCountResult { count: 9412 }),
            9,
        ),
        (
            HISTORY_RESULT,
            CommandResult::History(HistoryResult {
                epoch: "b3e1f0a9".into(),
                offset: 42,
                publications: lobby_history.clone(),
                complete: None,
                more: false,
                next: None,
            }),
            6,
        ),
        (
            HISTORY_PAGED,
            CommandResult::History(HistoryResult {
                epoch: "b3e1f0a9".into(),
                offset: 60,
                publications: lobby_history,
                complete: Some(false),
                more: true,
                next: Some(StreamPosition { offset: 42, epoch: "b3e1f0a9".into() }),
            }),
            7,
        ),
        (PING_RESULT, CommandResult::Empty(Empty {}), 8),
        (REFRESH_RESULT, CommandResult::Refresh(RefreshResult { expires_at: 1_795_000_000 }), 11),
        (
            RPC_RESULT,
            CommandResult::Rpc(RpcResult { data: json!({"order": 1042, "status": "shipped"}) }),
            12,
        ),
    ];
    for (doc, result, id) in cases {
        // The server's path (one enum for every result) and a typed reply agree.
        assert_wire(&Reply::ok(id, result.clone()), doc);
        match result {
            CommandResult::Connect(r) => {
                // `Reply<T>` only decodes for `T: Default` (see `round_trip_connect_result`).
                assert_wire(&Reply::ok(id, r.clone()), doc);
                let reply: Reply<Value> = Format::Json.decode(doc.as_bytes()).unwrap();
                assert_eq!(
                    serde_json::from_value::<ConnectResult>(reply.result.unwrap()).unwrap(),
                    r
                );
            }
            CommandResult::Subscribe(r) => assert_typed_reply(doc, &Reply::ok(id, r)),
            CommandResult::Publish(r) => assert_typed_reply(doc, &Reply::ok(id, r)),
            CommandResult::Presence(r) => assert_typed_reply(doc, &Reply::ok(id, r)),
            CommandResult::PresenceCount(r) => assert_typed_reply(doc, &Reply::ok(id, r)),
            CommandResult::History(r) => assert_typed_reply(doc, &Reply::ok(id, r)),
            CommandResult::Empty(r) => assert_typed_reply(doc, &Reply::ok(id, r)),
            CommandResult::Refresh(r) => assert_typed_reply(doc, &Reply::ok(id, r)),
            CommandResult::Rpc(r) => assert_typed_reply(doc, &Reply::ok(id, r)),
        }
    }
}

#[test]
fn error_replies_encode_as_documented() {
    let permission = Reply::<Empty>::err(
        9,
        ErrorCode::PermissionDenied,
        "clients may not publish in this namespace",
    );
    assert_wire(&permission, PERMISSION_DENIED);
    // The server's wording (pinned against the server by its docs test), for the shape.
    let anonymous = Reply::<Empty>::err(
        1,
        ErrorCode::Unauthorized,
        "anonymous connections may not subscribe to `news`: it is in the default namespace (no `namespace:` prefix), which is closed to connections without a token; use a channel such as `chat:news`, connect with a token, or open the namespace with `--namespace ':anonymous=subscribe'`",
    );
    assert_wire(&anonymous, UNAUTHORIZED_ANONYMOUS);
    let unavailable =
        Reply::<Empty>::err(3, ErrorCode::Unavailable, "broker unavailable: connection refused");
    assert_wire(&unavailable, UNAVAILABLE);
    let frame = Reply::<Empty>::err(
        0,
        ErrorCode::BadRequest,
        "this connection speaks switchboard.v1.json: send text frames, not binary",
    );
    assert_wire(&frame, WRONG_FRAME_ERROR);
    for code in ErrorCode::ALL {
        let reply = serde_json::to_value(Reply::<Empty>::err(1, code, "x")).unwrap();
        assert_eq!(reply["error"]["temporary"], code.is_temporary(), "{code}");
        assert_eq!(reply["error"]["code"], code.as_str());
    }
}

#[test]
fn undecodable_commands_get_the_documented_error_replies() {
    for (input, doc) in [
        (BAD_SUBSCRIBE, BAD_SUBSCRIBE_ERROR),
        (BAD_TYPE, BAD_TYPE_ERROR),
        (TRUNCATED, TRUNCATED_ERROR),
    ] {
        let err = Format::Json.decode_command(input.as_bytes()).unwrap_err();
        // What a server answers: the id when it could be read, else 0.
        let reply = Reply::<Empty>::err(err.id.unwrap_or(0), err.code, err.message);
        assert_wire(&reply, doc);
    }
}

#[test]
fn pushes_encode_as_documented() {
    let hello = publication(42, "hello", ann());
    let cases = [
        (PUBLICATION, Push::Publication { channel: "chat:lobby".into(), publication: hello }),
        (
            PUBLICATION_FROM_SERVER,
            Push::Publication {
                channel: "news:world".into(),
                publication: Publication { offset: 7, data: json!({"title": "Tide"}), info: None },
            },
        ),
        (JOIN, Push::Join { channel: "chat:lobby".into(), client: bob() }),
        (LEAVE, Push::Leave { channel: "chat:lobby".into(), client: bob() }),
        (
            PRESENCE_COUNT,
            Push::PresenceCount {
                channel: "stadium:final".into(),
                count: Some(9412),
                joined: 37,
                left: 2,
            },
        ),
        (
            UNSUBSCRIBE_PUSH,
            Push::Unsubscribe {
                channel: "chat:lobby".into(),
                code: ErrorCode::Unavailable,
                reason: "too many publications while subscribing: resubscribe with `since`".into(),
            },
        ),
        (
            UNSUBSCRIBE_PUSH_AFTER_REFRESH,
            Push::Unsubscribe {
                channel: "news:b".into(),
                code: ErrorCode::PermissionDenied,
                reason: "after refresh: the token does not allow to subscribe to this channel"
                    .into(),
            },
        ),
        (
            DISCONNECT,
            Push::Disconnect {
                code: close::SLOW_CONSUMER,
                reason: "slow consumer".into(),
                advice: Advice::Reconnect,
            },
        ),
    ];
    for (doc, push) in cases {
        assert_wire(&push, doc);
        assert_eq!(Format::Json.decode::<Push>(doc.as_bytes()).unwrap(), push, "{doc}");
        if let Push::Publication { channel, publication } = &push {
            // The server's shared-encoding path produces the same bytes.
            assert_wire(&PublicationPush::new(channel, publication), doc);
        }
    }
}

#[test]
fn every_message_survives_msgpack() {
    for doc in
        EXAMPLES.iter().copied().chain(TRANSCRIPT.lines().filter_map(|l| l.strip_prefix("> ")))
    {
        if !is_command(doc) {
            continue;
        }
        let command = Format::Json.decode_command(doc.as_bytes()).unwrap();
        let packed = Format::Msgpack.encode(&command).unwrap();
        assert_eq!(Format::Msgpack.decode_command(&packed).unwrap(), command, "{doc}");
    }
    let publications = vec![publication(44, "still there?", bob()), publication(45, "x", ann())];
    for result in [connect_result("c1a9f", Some("ann")), connect_result("c1a9f", None)] {
        round_trip(&result);
        let reply = ServerMessage::Reply(Reply::ok(1, serde_json::to_value(result).unwrap()));
        round_trip(&reply);
    }
    round_trip(&Reply::ok(
        2,
        SubscribeResult {
            epoch: "b3e1f0a9".into(),
            offset: 45,
            recoverable: true,
            recovered: Some(true),
            publications: publications.clone(),
            more: false,
            next: None,
        },
    ));
    round_trip(&Reply::ok(2, SubscribeResult { recovered: Some(false), ..Default::default() }));
    round_trip(&Reply::ok(3, PublishResult { offset: 42, epoch: "b3e1f0a9".into() }));
    round_trip(&Reply::ok(4, PresenceResult { clients: vec![ann(), bob()] }));
    round_trip(&Reply::ok(
        6,
        HistoryResult {
            epoch: "b3e1f0a9".into(),
            offset: 45,
            publications: publications.clone(),
            complete: Some(true),
            more: false,
            next: None,
        },
    ));
    round_trip(&Reply::ok(8, Empty {}));
    for code in ErrorCode::ALL {
        round_trip(&Reply::<Empty>::err(9, code, "why"));
    }
    let pushes = [
        Push::Publication { channel: "chat:lobby".into(), publication: publications[0].clone() },
        Push::Join { channel: "chat:lobby".into(), client: bob() },
        Push::Leave { channel: "chat:lobby".into(), client: bob() },
        Push::PresenceCount { channel: "big:room".into(), count: Some(10_000), joined: 3, left: 0 },
        Push::PresenceCount { channel: "big:room".into(), count: None, joined: 0, left: 1 },
        Push::Unsubscribe {
            channel: "chat:lobby".into(),
            code: ErrorCode::Unavailable,
            reason: "r".into(),
        },
        Push::Disconnect {
            code: 4200,
            reason: "token expired".into(),
            advice: Advice::RefreshToken,
        },
    ];
    for push in pushes {
        round_trip(&push);
        round_trip(&ServerMessage::Push(push));
    }
    round_trip(&ServerMessage::Reply(Reply::ok(2, json!({"epoch": "e", "offset": 1}))));
    let shared = PublicationPush::new("chat:lobby", &publications[1]);
    let packed = Format::Msgpack.encode(&shared).unwrap();
    assert_eq!(
        Format::Msgpack.decode::<Push>(&packed).unwrap(),
        Push::Publication { channel: "chat:lobby".into(), publication: publications[1].clone() }
    );
}

#[test]
fn msgpack_uses_maps_with_field_names() {
    let ping = Format::Json.decode_command(PING.as_bytes()).unwrap();
    assert_eq!(hex(&Format::Msgpack.encode(&ping).unwrap()), PING_MSGPACK);
    assert_eq!(hex(&Format::Msgpack.encode(&Reply::ok(8, Empty {})).unwrap()), PING_RESULT_MSGPACK);
    let bytes = unhex(PING_MSGPACK);
    assert_eq!(Format::Msgpack.decode_command(&bytes).unwrap(), ping);
    // A MessagePack array in place of the map (a struct encoded positionally) is refused.
    let positional = [0x92, 0x08, 0xa4, b'p', b'i', b'n', b'g'];
    let err = Format::Msgpack.decode_command(&positional).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
}

#[test]
fn malformed_json_is_bad_request_without_id() {
    let err = Format::Json.decode_command(br#"{"id": 10, "type": "ping""#).unwrap_err();
    assert_eq!((err.id, err.code), (None, ErrorCode::BadRequest));
    let err = Format::Json.decode_command(b"subscribe chat:lobby").unwrap_err();
    assert_eq!((err.id, err.code), (None, ErrorCode::BadRequest));
    let err = Format::Json.decode_command(br#"{"type": "ping"}"#).unwrap_err();
    assert_eq!((err.id, err.code), (None, ErrorCode::BadRequest));
}

#[test]
fn missing_channel_is_bad_request_with_id() {
    let err = Format::Json.decode_command(br#"{"id": 7, "type": "subscribe"}"#).unwrap_err();
    assert_eq!((err.id, err.code), (Some(7), ErrorCode::BadRequest));
    assert!(err.message.contains("channel"), "{}", err.message);
    let err = Format::Json.decode_command(br#"{"id": 7, "type": "publish", "channel": "a"}"#);
    assert_eq!(err.unwrap_err().id, Some(7));
    let err = Format::Json.decode_command(br#"{"id": 7}"#).unwrap_err();
    assert_eq!((err.id, err.code), (Some(7), ErrorCode::BadRequest));
}

#[test]
fn unknown_type_is_unknown_command_with_id() {
    let err = Format::Json.decode_command(BAD_TYPE.as_bytes()).unwrap_err();
    assert_eq!((err.id, err.code), (Some(9), ErrorCode::UnknownCommand));
    // Type names are case-sensitive.
    let err = Format::Json.decode_command(br#"{"id": 4, "type": "Ping"}"#).unwrap_err();
    assert_eq!((err.id, err.code), (Some(4), ErrorCode::UnknownCommand));
}

#[test]
fn wrong_field_type_is_bad_request_with_id() {
    let cases: [(&[u8], u64); 4] = [
        (br#"{"id": 11, "type": "history", "channel": "chat:lobby", "limit": "ten"}"#, 11),
        (br#"{"id": 12, "type": "subscribe", "channel": 5}"#, 12),
        (br#"{"id": 13, "type": "subscribe", "channel": "a", "since": {"offset": 1}}"#, 13),
        (br#"{"id": 14, "type": "history", "channel": "a", "limit": -1}"#, 14),
    ];
    for (input, id) in cases {
        let err = Format::Json.decode_command(input).unwrap_err();
        assert_eq!((err.id, err.code), (Some(id), ErrorCode::BadRequest), "{}", err.message);
    }
    // An id that is not a u64 cannot be echoed.
    let err = Format::Json.decode_command(br#"{"id": -1, "type": "ping"}"#).unwrap_err();
    assert_eq!((err.id, err.code), (None, ErrorCode::BadRequest));
}

#[test]
fn unknown_fields_are_ignored() {
    let command = Format::Json
        .decode_command(br#"{"id": 2, "type": "subscribe", "channel": "a", "priority": 1}"#)
        .unwrap();
    assert_eq!(
        command.kind,
        CommandKind::Subscribe(SubscribeRequest { channel: "a".into(), since: None })
    );
}

#[test]
fn empty_input_is_bad_request() {
    for format in [Format::Json, Format::Msgpack] {
        let err = format.decode_command(b"").unwrap_err();
        assert_eq!((err.id, err.code), (None, ErrorCode::BadRequest), "{format:?}");
    }
}

#[test]
fn msgpack_garbage_is_bad_request() {
    for input in [&[0xc1][..], &[0xff, 0x00, 0x13], &[0x82, 0xa2, b'i'], b"{\"id\":1}"] {
        let err = Format::Msgpack.decode_command(input).unwrap_err();
        assert_eq!((err.id, err.code), (None, ErrorCode::BadRequest), "{input:02x?}");
    }
}

#[test]
fn msgpack_errors_recover_the_id() {
    let unknown = rmp_map(&json!({"id": 21, "type": "teleport"}));
    let err = Format::Msgpack.decode_command(&unknown).unwrap_err();
    assert_eq!((err.id, err.code), (Some(21), ErrorCode::UnknownCommand));
    let missing = rmp_map(&json!({"id": 22, "type": "subscribe"}));
    let err = Format::Msgpack.decode_command(&missing).unwrap_err();
    assert_eq!((err.id, err.code), (Some(22), ErrorCode::BadRequest));
}

#[test]
fn server_messages_tell_replies_from_pushes() {
    for doc in EXAMPLES.iter().filter(|doc| !is_command(doc)) {
        let value: Value = serde_json::from_str(doc).unwrap();
        for format in [Format::Json, Format::Msgpack] {
            let bytes = format.encode(&value).unwrap();
            let message: ServerMessage = format.decode(&bytes).unwrap();
            match (message, value.get("push")) {
                (ServerMessage::Push(push), Some(_)) => {
                    assert_eq!(serde_json::to_value(push).unwrap(), value, "{doc}");
                }
                (ServerMessage::Reply(reply), None) => {
                    assert_eq!(reply.id, value["id"], "{doc}");
                    assert_eq!(reply.result.is_some(), value.get("result").is_some(), "{doc}");
                    assert_eq!(reply.error.is_some(), value.get("error").is_some(), "{doc}");
                }
                (other, _) => panic!("{doc} decoded as {other:?}"),
            }
        }
    }
}

#[test]
fn transcript_is_a_consistent_session() {
    let mut pending = VecDeque::new();
    let mut positions: HashMap<String, StreamPosition> = HashMap::new();
    let mut disconnected = false;
    for line in TRANSCRIPT.lines() {
        if line.starts_with("# New connection") {
            assert!(disconnected && pending.is_empty());
            disconnected = false;
            continue;
        }
        if let Some(doc) = line.strip_prefix("> ") {
            let command = Format::Json.decode_command(doc.as_bytes()).unwrap();
            assert_wire(&command, doc);
            if let CommandKind::Subscribe(SubscribeRequest { channel, since: Some(since) }) =
                &command.kind
            {
                assert_eq!(Some(since), positions.get(channel), "resubscribes from its position");
            }
            pending.push_back(command);
            continue;
        }
        let Some(doc) = line.strip_prefix("< {") else { continue };
        let doc = format!("{{{doc}");
        match Format::Json.decode::<ServerMessage>(doc.as_bytes()).unwrap() {
            ServerMessage::Push(push) => {
                assert_wire(&push, &doc);
                match push {
                    Push::Publication { channel, publication } => {
                        let position = positions.get_mut(&channel).unwrap();
                        assert_eq!(publication.offset, position.offset + 1, "no gap");
                        position.offset = publication.offset;
                    }
                    Push::Disconnect { code, advice: a, .. } => {
                        assert_eq!(advice(code), a);
                        disconnected = true;
                        pending.clear();
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            ServerMessage::Reply(reply) => {
                let command = pending.pop_front().unwrap();
                assert_eq!(reply.id, command.id, "replies come in command order");
                let result = reply.result.unwrap();
                match command.kind {
                    CommandKind::Connect(_) => {
                        let r: ConnectResult = serde_json::from_value(result).unwrap();
                        assert_wire(&Reply::ok(reply.id, r), &doc);
                    }
                    CommandKind::Subscribe(SubscribeRequest { channel, since }) => {
                        let r: SubscribeResult = serde_json::from_value(result).unwrap();
                        assert_wire(&Reply::ok(reply.id, r.clone()), &doc);
                        if let Some(since) = since {
                            assert_eq!(r.recovered, Some(true));
                            assert_eq!(r.epoch, since.epoch);
                            let offsets: Vec<u64> =
                                r.publications.iter().map(|p| p.offset).collect();
                            let expected: Vec<u64> = (since.offset + 1..=r.offset).collect();
                            assert_eq!(offsets, expected, "exactly the missed publications");
                        }
                        positions
                            .insert(channel, StreamPosition { offset: r.offset, epoch: r.epoch });
                    }
                    CommandKind::Publish(_) => {
                        let r: PublishResult = serde_json::from_value(result).unwrap();
                        assert_wire(&Reply::ok(reply.id, r), &doc);
                    }
                    CommandKind::Ping(_) => assert_wire(&Reply::ok(reply.id, Empty {}), &doc),
                    other => panic!("unexpected reply to {other:?}"),
                }
            }
        }
    }
    assert!(pending.is_empty());
}

#[test]
fn docs_show_exactly_the_tested_examples() {
    let doc = protocol_md();
    let shown: BTreeSet<String> = fenced_blocks(&doc, "json").iter().map(|b| compact(b)).collect();
    let tested: BTreeSet<String> = EXAMPLES.iter().map(|e| compact(e)).collect();
    let untested: Vec<_> = shown.difference(&tested).collect();
    let missing: Vec<_> = tested.difference(&shown).collect();
    assert!(untested.is_empty(), "examples in the docs but not tested: {untested:#?}");
    assert!(missing.is_empty(), "tested examples missing from the docs: {missing:#?}");
    for example in EXAMPLES {
        assert!(doc.contains(example), "not verbatim in the docs:\n{example}");
    }
    for input in [BAD_SUBSCRIBE, BAD_TYPE, TRUNCATED, PING_MSGPACK, PING_RESULT_MSGPACK] {
        assert!(doc.contains(input), "not in the docs: {input}");
    }
    assert!(doc.contains(TRANSCRIPT), "the transcript differs from the docs");
    // Every command type and every push kind has an example.
    let mut types = BTreeSet::new();
    let mut pushes = BTreeSet::new();
    for example in EXAMPLES {
        let value: Value = serde_json::from_str(example).unwrap();
        if let Some(t) = value.get("type").and_then(Value::as_str) {
            types.insert(t.to_owned());
        }
        if let Some(p) = value.get("push").and_then(Value::as_str) {
            pushes.insert(p.to_owned());
        }
    }
    assert_eq!(types, switchboard_proto::COMMAND_TYPES.iter().map(|t| t.to_string()).collect());
    let kinds = ["publication", "join", "leave", "presence_count", "unsubscribe", "disconnect"];
    assert_eq!(pushes, kinds.iter().map(|k| k.to_string()).collect());
}

#[test]
fn docs_list_every_error_code_with_its_temporariness() {
    let doc = protocol_md();
    for code in ErrorCode::ALL {
        let cells = table_row(&doc, &format!("`{code}`"))
            .unwrap_or_else(|| panic!("no table row for {code}"));
        let temporary = if code.is_temporary() { "yes" } else { "no" };
        assert_eq!(cells[1], temporary, "{code}");
    }
}

#[test]
fn docs_group_every_close_code_by_its_advice() {
    let doc = protocol_md();
    let ours = close::ALL;
    let rfc = [1000, 1001, 1002, 1005, 1006, 1007, 1008, 1009, 1011, 1012, 1013];
    for code in ours.into_iter().chain(rfc) {
        let cells = table_row(&doc, &code.to_string())
            .unwrap_or_else(|| panic!("no table row for close code {code}"));
        let expected =
            format!("`{}`", serde_json::to_value(advice(code)).unwrap().as_str().unwrap());
        assert_eq!(cells.last(), Some(&expected), "close code {code}");
    }
}

proptest! {
    #[test]
    fn publications_survive_both_formats(
        publication in publication_strategy(),
        channel in "[a-z]{1,8}:[a-z0-9/]{1,16}",
    ) {
        for format in [Format::Json, Format::Msgpack] {
            let bytes = format.encode(&publication).unwrap();
            prop_assert_eq!(&format.decode::<Publication>(&bytes).unwrap(), &publication);

            let push =
                Push::Publication { channel: channel.clone(), publication: publication.clone() };
            let bytes = format.encode(&PublicationPush::new(&channel, &publication)).unwrap();
            prop_assert_eq!(&bytes, &format.encode(&push).unwrap());
            let decoded = format.decode::<ServerMessage>(&bytes).unwrap();
            prop_assert_eq!(decoded, ServerMessage::Push(push));

            let command = Command {
                id: publication.offset,
                kind: CommandKind::Publish(PublishRequest {
                    channel: channel.clone(),
                    data: publication.data.clone(),
                }),
            };
            let bytes = format.encode(&command).unwrap();
            prop_assert_eq!(format.decode_command(&bytes).unwrap(), command);
        }
    }
}

fn publication_strategy() -> impl Strategy<Value = Publication> {
    let info = (
        "[a-z0-9]{1,12}",
        proptest::option::of("\\PC{0,16}"),
        // `Some(null)` is left out: it encodes as `"info": null`, which decodes as `None`.
        proptest::option::of(json_value().prop_filter("not null", |v| !v.is_null())),
    )
        .prop_map(|(id, user, info)| ClientInfo { id, user, info });
    (any::<u64>(), json_value(), proptest::option::of(info)).prop_map(|(offset, data, info)| {
        Publication { offset, data, info: info.map(std::sync::Arc::new) }
    })
}

/// JSON values of strings and integers (and null and booleans), nested in arrays and objects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn ann() -> ClientInfo {
    ClientInfo { id: "c1a9f".into(), user: Some("ann".into()), info: None }
}

fn bob() -> ClientInfo {
    ClientInfo { id: "c2b44".into(), user: Some("bob".into()), info: None }
}

fn position(offset: u64) -> StreamPosition {
    StreamPosition { offset, epoch: "b3e1f0a9".into() }
}

fn publication(offset: u64, text: &str, from: ClientInfo) -> Publication {
    Publication { offset, data: json!({ "text": text }), info: Some(std::sync::Arc::new(from)) }
}

fn connect_result(client: &str, user: Option<&str>) -> ConnectResult {
    ConnectResult {
        client: client.into(),
        user: user.map(Into::into),
        version: "0.1.0".into(),
        ping_interval: 25,
        limits: ClientLimits { max_message_size: 65536, max_subscriptions: 128 },
    }
}

/// Asserts that `value` encodes to `doc` exactly, up to the document's layout whitespace.
#[track_caller]
fn assert_wire<T: Serialize + ?Sized>(value: &T, doc: &str) {
    let encoded = Format::Json.encode(value).expect("encodes");
    assert_eq!(std::str::from_utf8(&encoded).expect("JSON is UTF-8"), compact(doc));
}

/// Asserts that a typed reply encodes to `doc` and that a client decodes `doc` back to it.
#[track_caller]
fn assert_typed_reply<T>(doc: &str, reply: &Reply<T>)
where
    T: Default + Serialize + DeserializeOwned + PartialEq + Debug,
{
    assert_wire(reply, doc);
    assert_eq!(&Format::Json.decode::<Reply<T>>(doc.as_bytes()).expect("decodes"), reply);
}

/// Encodes and decodes `value` in both formats.
#[track_caller]
fn round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    for format in [Format::Json, Format::Msgpack] {
        let bytes = format.encode(value).expect("encodes");
        assert_eq!(&format.decode::<T>(&bytes).expect("decodes"), value, "{format:?}");
    }
}

fn is_command(doc: &str) -> bool {
    serde_json::from_str::<Value>(doc).expect("example is JSON").get("type").is_some()
}

/// Removes whitespace outside JSON strings.
fn compact(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in doc.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

fn rmp_map(value: &Value) -> Vec<u8> {
    Format::Msgpack.encode(value).expect("encodes").to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

fn unhex(text: &str) -> Vec<u8> {
    text.split(' ').map(|b| u8::from_str_radix(b, 16).expect("hex byte")).collect()
}

fn protocol_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bodies of the fenced code blocks tagged `lang`.
fn fenced_blocks(doc: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        let trimmed = line.trim_start();
        match current.as_mut() {
            None if trimmed.strip_prefix("```") == Some(lang) => current = Some(String::new()),
            None => {}
            Some(_) if trimmed.starts_with("```") => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

/// The cells of the first Markdown table row whose first cell is `first`.
fn table_row(doc: &str, first: &str) -> Option<Vec<String>> {
    doc.lines().find_map(|line| {
        let cells: Vec<String> =
            line.trim().strip_prefix('|')?.split('|').map(|c| c.trim().to_owned()).collect();
        (cells.first()? == first).then(|| {
            let mut cells = cells;
            cells.pop(); // The empty cell after the closing `|`.
            cells
        })
    })
}
