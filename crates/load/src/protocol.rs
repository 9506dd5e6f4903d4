//! What the tool says over an open WebSocket: Switchboard's JSON protocol, a raw echo or
//! broadcast endpoint, or Socket.IO over Engine.IO v4.

use bytes::Bytes;
use switchboard_codec::OpCode;

use crate::args::Protocol;
use crate::ws::{ConnError, Msg, Outbox, Ws};

/// What a received message is, for the scenario reading it.
#[derive(Debug, Eq, PartialEq)]
pub(crate) enum Kind {
    /// Payload: an echo, or a publication (carrying `"ts":`).
    Payload,
    /// A successful reply to a command.
    Ack,
    /// An error reply, or a push or packet saying the server gave up on something.
    Error(String),
    /// Protocol chatter to ignore (joins and leaves, Engine.IO pongs, ...).
    Other,
}

/// Classifies a message received in `protocol`, queuing protocol-level answers (Engine.IO
/// pongs) in `out`.
pub(crate) fn classify(protocol: Protocol, out: &mut Outbox, data: &[u8]) -> Kind {
    match protocol {
        Protocol::Raw => Kind::Payload,
        Protocol::Switchboard => classify_switchboard(data),
        Protocol::Socketio => match data {
            // Engine.IO ping: answer with a pong.
            [b'2', ..] => {
                out.queue(OpCode::Text, b"3");
                Kind::Other
            }
            [b'4', b'2', ..] => Kind::Payload,
            [b'4', b'1', ..] => Kind::Error("socketio_disconnect".to_owned()),
            [b'4', b'4', ..] => Kind::Error("socketio_connect_error".to_owned()),
            [b'1', ..] => Kind::Error("engineio_close".to_owned()),
            _ => Kind::Other,
        },
    }
}

/// A reply is `{"id":N,"result":…}` or `{"id":N,"error":{"code":…}}`, a push has `"push"`
/// (`docs/protocol.md` §2).
pub(crate) fn classify_switchboard(data: &[u8]) -> Kind {
    if let Some(at) = find_key(data, b"push") {
        let kind = &data[at..];
        if kind.starts_with(b"\"publication\"") {
            return Kind::Payload;
        }
        if kind.starts_with(b"\"disconnect\"") {
            return Kind::Error("disconnect".to_owned());
        }
        if kind.starts_with(b"\"unsubscribe\"") {
            return Kind::Error("unsubscribed".to_owned());
        }
        return Kind::Other;
    }
    if let Some(at) = find_key(data, b"error") {
        let code = find_key(&data[at..], b"code").and_then(|c| string_at(&data[at + c..]));
        return Kind::Error(code.unwrap_or("unknown").to_owned());
    }
    if find_key(data, b"result").is_some() {
        return Kind::Ack;
    }
    Kind::Other
}

/// Brings a freshly upgraded connection to the point where it is ready: the Socket.IO
/// connect, and the subscription to `channel` when given (Switchboard only).
pub(crate) async fn establish(
    protocol: Protocol,
    ws: &mut Ws,
    channel: Option<&str>,
) -> Result<(), ConnError> {
    match protocol {
        Protocol::Raw => Ok(()),
        Protocol::Switchboard => {
            let Some(channel) = channel else { return Ok(()) };
            let command = serde_json::json!({"id": 1, "type": "subscribe", "channel": channel});
            ws.queue(OpCode::Text, command.to_string().as_bytes());
            loop {
                match ws.recv().await? {
                    Msg::Close(code) => return Err(ConnError::Closed(code)),
                    Msg::Data(data) => match classify_switchboard(&data) {
                        Kind::Ack => return Ok(()),
                        Kind::Error(code) => return Err(command_error("subscribe", channel, code)),
                        Kind::Payload | Kind::Other => {}
                    },
                }
            }
        }
        Protocol::Socketio => {
            // Engine.IO v4: the server opens with `0{…}`; Socket.IO: the client connects to
            // the main namespace with `40` and is connected on the server's `40{"sid":…}`.
            let mut sent_connect = false;
            loop {
                let data: Bytes = match ws.recv().await? {
                    Msg::Close(code) => return Err(ConnError::Closed(code)),
                    Msg::Data(data) => data,
                };
                match &data[..] {
                    [b'0', ..] if !sent_connect => {
                        sent_connect = true;
                        ws.queue(OpCode::Text, b"40");
                    }
                    [b'4', b'0', ..] if sent_connect => return Ok(()),
                    [b'4', b'4', ..] => return Err(ConnError::Reply("connect_error".to_owned())),
                    [b'2', ..] => ws.queue(OpCode::Text, b"3"),
                    _ => {}
                }
            }
        }
    }
}

/// The error a refused command becomes: [`ConnError::Refused`] when `code` says the channel
/// is not open to this connection ([`is_channel_refusal`]), else [`ConnError::Reply`].
pub(crate) fn command_error(command: &'static str, channel: &str, code: String) -> ConnError {
    if is_channel_refusal(&code) {
        ConnError::Refused(Box::new(Refusal { command, channel: channel.to_owned(), code }))
    } else {
        ConnError::Reply(code)
    }
}

/// Whether an error code says the server does not open the channel to this connection: no
/// such namespace, no anonymous access there, or the token or namespace forbids the
/// command (`docs/protocol.md` §3). More load cannot help; other options or another
/// server configuration can.
pub(crate) fn is_channel_refusal(code: &str) -> bool {
    matches!(code, "unknown_namespace" | "unauthorized" | "permission_denied")
}

/// A command the server refused on a channel, and what to do about it: its `Display` names
/// the channel and suggests `--channel-prefix`, `--token` or the `switchboard serve
/// --namespace` setting that would let the command through.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// `subscribe` or `publish`.
    pub(crate) command: &'static str,
    /// The channel refused.
    pub(crate) channel: String,
    /// The error reply's code.
    pub(crate) code: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Refusal { command, channel, code } = self;
        let (name, namespace) = match channel.split_once(':') {
            Some((name, _)) => (name, format!("namespace {name:?}")),
            None => ("", "the default namespace".to_owned()),
        };
        // What a default server lets anyone do: its `chat` namespace takes anonymous
        // subscribers and publishers (crates/server/src/config.rs, `HubOptions::default`).
        let prefix = "--channel-prefix chat:bench- (a default server's chat namespace is open to \
                      anonymous subscribers and publishers)";
        let anonymous = if *command == "publish" { "publish" } else { "subscribe" };
        write!(f, "{command} to {channel:?} refused with {code}: ")?;
        match code.as_str() {
            "unknown_namespace" => write!(
                f,
                "the server declares no {namespace}; pass {prefix}, or declare it on the server \
                 (switchboard serve --namespace '{name}:anonymous=publish')"
            ),
            "unauthorized" => write!(
                f,
                "{namespace} is closed to anonymous connections; pass --token with a JWT that \
                 grants {channel:?}, or {prefix}, or open it on the server (switchboard serve \
                 --namespace '{name}:anonymous={anonymous}')"
            ),
            _ => write!(
                f,
                "{namespace} does not let this connection {command} there; pass --token with a \
                 JWT that grants it, or {prefix}, or allow it on the server (switchboard serve \
                 --namespace '{name}:anonymous={anonymous}{}')",
                if *command == "publish" { ",allow_publish=true" } else { "" }
            ),
        }
    }
}

/// A JSON object of `size` bytes (or as small as it gets) carrying the send time:
/// `{"ts":<unix nanos>,"seq":<n>,"pad":"xxx…"}`.
pub(crate) fn payload(out: &mut Vec<u8>, ts: u64, seq: u64, size: usize) {
    use std::io::Write as _;
    let start = out.len();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{{\"ts\":{ts},\"seq\":{seq},\"pad\":\"");
    let fixed = out.len() - start + 2;
    out.resize(out.len() + size.saturating_sub(fixed), b'x');
    out.extend_from_slice(b"\"}");
}

/// The unix-nanosecond send time in a payload: the digits after the first `"ts":`, wherever
/// the envelope put the payload.
pub(crate) fn timestamp(data: &[u8]) -> Option<u64> {
    let at = find_key(data, b"ts")?;
    let digits = &data[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
    if end == 0 || end > 20 {
        return None;
    }
    digits[..end].iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// The index just after `"key":` (and any spaces after the colon) in a JSON text.
fn find_key(data: &[u8], key: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = data[from..].iter().position(|&b| b == b'"') {
        let at = from + i + 1;
        let rest = &data[at..];
        if rest.len() > key.len() && rest.starts_with(key) && rest[key.len()] == b'"' {
            let mut j = at + key.len() + 1;
            while data.get(j).is_some_and(u8::is_ascii_whitespace) {
                j += 1;
            }
            if data.get(j) == Some(&b':') {
                j += 1;
                while data.get(j).is_some_and(u8::is_ascii_whitespace) {
                    j += 1;
                }
                return Some(j);
            }
        }
        from = at;
    }
    None
}

/// The JSON string (without escapes) starting at `data[0]`.
fn string_at(data: &[u8]) -> Option<&str> {
    let rest = data.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_requested_size() {
        for size in [0, 10, 64, 1024] {
            let mut out = Vec::new();
            payload(&mut out, 1_700_000_000_000_000_000, 12, size);
            let min = br#"{"ts":1700000000000000000,"seq":12,"pad":""}"#.len();
            assert_eq!(out.len(), size.max(min));
            let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(value["seq"], 12);
        }
    }

    #[test]
    fn timestamp_is_found_in_any_envelope() {
        let mut data = Vec::new();
        payload(&mut data, 123_456_789, 1, 80);
        let push = format!(
            r#"{{"push":"publication","channel":"a","offset":3,"data":{}}}"#,
            String::from_utf8(data).expect("utf-8")
        );
        assert_eq!(timestamp(push.as_bytes()), Some(123_456_789));
        assert_eq!(timestamp(br#"42["message",{"ts": 77,"seq":0}]"#), Some(77));
        assert_eq!(timestamp(br#"{"pad":"xx"}"#), None);
    }

    #[test]
    fn switchboard_messages_are_classified_by_keys() {
        assert_eq!(classify_switchboard(br#"{"id":1,"result":{}}"#), Kind::Ack);
        assert_eq!(
            classify_switchboard(
                br#"{"id":1,"error":{"code":"rate_limited","message":"x","temporary":true}}"#
            ),
            Kind::Error("rate_limited".to_owned())
        );
        assert_eq!(
            classify_switchboard(br#"{"push":"publication","channel":"a","data":{}}"#),
            Kind::Payload
        );
        assert_eq!(classify_switchboard(br#"{"push":"join","channel":"a"}"#), Kind::Other);
        assert_eq!(
            classify_switchboard(br#"{"push":"disconnect","code":4001}"#),
            Kind::Error("disconnect".to_owned())
        );
    }
}
