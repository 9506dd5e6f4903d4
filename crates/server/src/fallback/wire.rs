//! The bytes of the HTTP transports (`docs/transports.md`): session ids, event-stream events
//! and long-poll batches. Pure functions, no I/O.

use std::fmt::Write as _;

use bytes::{BufMut as _, Bytes, BytesMut};
use rand::Rng as _;

/// Length of a node name, in lowercase hex digits.
const NODE_LEN: usize = 8;
/// Length of a session id's secret part, in lowercase hex digits: 128 bits.
const SECRET_LEN: usize = 32;

/// A random node name: 8 lowercase hex digits, different for every server process.
pub(crate) fn node_name() -> String {
    hex(&rand::rng().random::<[u8; NODE_LEN / 2]>())
}

/// A new session id for a session held by the node named `node`: `<node>-<secret>`, the
/// secret being 128 random bits in lowercase hex.
pub(crate) fn session_id(node: &str) -> String {
    let secret = hex(&rand::rng().random::<[u8; SECRET_LEN / 2]>());
    format!("{node}-{secret}")
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The node part of a well-formed session id; `None` for anything else, so that no
/// malformed value reaches a table lookup or a forwarded message.
pub(crate) fn node_of(session: &str) -> Option<&str> {
    let (node, secret) = session.split_once('-')?;
    let lower_hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (lower_hex(node, NODE_LEN) && lower_hex(secret, SECRET_LEN)).then_some(node)
}

/// Splits an event id, `<session id>:<n>`, as an `EventSource` sends it back in
/// `Last-Event-ID`.
pub(crate) fn parse_event_id(id: &str) -> Option<(&str, u64)> {
    let (session, n) = id.trim().rsplit_once(':')?;
    node_of(session)?;
    let n = n.parse().ok()?;
    Some((session, n))
}

/// What every event stream starts with: how long an `EventSource` waits before it
/// reconnects (1 s), so a stream cut by a proxy resumes quickly.
pub(crate) const STREAM_PREAMBLE: &[u8] = b"retry: 1000\n\n";

/// A comment line that keeps an idle stream alive through proxies.
pub(crate) const HEARTBEAT: &[u8] = b": ping\n\n";

/// The first event of a new stream: the session id and the timings the client needs.
pub(crate) fn session_event(
    out: &mut BytesMut,
    session: &str,
    ping_interval: u64,
    session_timeout: u64,
) {
    let data = serde_json::json!({
        "session": session,
        "transport": "sse",
        "ping_interval": ping_interval,
        "session_timeout": session_timeout,
    });
    out.put_slice(b"event: session\nid: ");
    out.put_slice(session.as_bytes());
    out.put_slice(b":0\ndata: ");
    out.put_slice(data.to_string().as_bytes());
    out.put_slice(b"\n\n");
}

/// Appends one message event: `id: <session>:<n>` and the message as its data. A message
/// holding line breaks (JSON from this server never does) is split over several `data:`
/// lines, which the reader joins back with `\n`.
pub(crate) fn message_event(out: &mut BytesMut, session: &str, n: u64, message: &[u8]) {
    out.put_slice(b"id: ");
    out.put_slice(session.as_bytes());
    let mut number = itoa::Buffer::new();
    out.put_u8(b':');
    out.put_slice(number.format(n).as_bytes());
    out.put_u8(b'\n');
    if memchr::memchr2(b'\n', b'\r', message).is_none() {
        out.put_slice(b"data: ");
        out.put_slice(message);
        out.put_u8(b'\n');
    } else {
        for line in message.split(|&b| b == b'\n') {
            out.put_slice(b"data: ");
            out.put_slice(line.strip_suffix(b"\r").unwrap_or(line));
            out.put_u8(b'\n');
        }
    }
    out.put_u8(b'\n');
}

/// A long-poll batch: `{"seq":<first>,"messages":[…]}`, the messages being the encoded
/// JSON of each, numbered from `first` on.
pub(crate) fn batch<'a>(first: u64, messages: impl IntoIterator<Item = &'a Bytes>) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_slice(b"{\"seq\":");
    out.put_slice(itoa::Buffer::new().format(first).as_bytes());
    out.put_slice(b",\"messages\":[");
    for (i, message) in messages.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(message);
    }
    out.put_slice(b"]}");
    out.freeze()
}

/// The commands of a `POST /session` body: one per line, blank lines skipped, a trailing
/// `\r` dropped.
pub(crate) fn commands(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_name_their_node_and_parse_back() {
        let node = node_name();
        assert_eq!(node.len(), NODE_LEN);
        let id = session_id(&node);
        assert_eq!(node_of(&id), Some(node.as_str()));
        assert_ne!(session_id(&node), id, "each id is new");
        let event_id = format!("{id}:42");
        assert_eq!(parse_event_id(&event_id), Some((id.as_str(), 42)));
    }

    #[test]
    fn malformed_session_ids_are_refused() {
        let good_secret = "0123456789abcdef0123456789abcdef";
        for bad in [
            String::new(),
            "abc".to_owned(),
            format!("0123456-{good_secret}"),
            format!("0123456g-{good_secret}"),
            format!("01234567-{}", &good_secret[1..]),
            format!("01234567-{}", good_secret.to_uppercase()),
            format!("01234567-{good_secret}-x"),
            format!("01234567:{good_secret}"),
        ] {
            assert_eq!(node_of(&bad), None, "{bad:?}");
        }
        assert_eq!(parse_event_id(&format!("01234567-{good_secret}:x")), None);
        assert_eq!(parse_event_id(&format!("01234567-{good_secret}")), None);
        assert_eq!(parse_event_id(&format!("01234567-{good_secret}:-1")), None);
    }

    #[test]
    fn message_events_carry_the_id_and_the_data() {
        let mut out = BytesMut::new();
        message_event(&mut out, "s", 7, br#"{"push":"publication"}"#);
        assert_eq!(&out[..], b"id: s:7\ndata: {\"push\":\"publication\"}\n\n");
    }

    #[test]
    fn line_breaks_in_a_message_become_data_lines() {
        let mut out = BytesMut::new();
        message_event(&mut out, "s", 1, b"a\r\nb\nc");
        assert_eq!(&out[..], b"id: s:1\ndata: a\ndata: b\ndata: c\n\n");
    }

    #[test]
    fn the_session_event_comes_first_with_number_zero() {
        let mut out = BytesMut::new();
        session_event(&mut out, "s", 25, 30);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("event: session\nid: s:0\ndata: {"), "{text}");
        let data: serde_json::Value =
            serde_json::from_str(text.lines().nth(2).unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
        assert_eq!(
            data,
            serde_json::json!({"session":"s","transport":"sse","ping_interval":25,"session_timeout":30})
        );
    }

    #[test]
    fn batches_are_json() {
        let messages = [Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"[2]")];
        let batch = batch(4, &messages);
        let value: serde_json::Value = serde_json::from_slice(&batch).unwrap();
        assert_eq!(value, serde_json::json!({"seq":4,"messages":[{"a":1},[2]]}));
        assert_eq!(&super::batch(9, &[])[..], b"{\"seq\":9,\"messages\":[]}");
    }

    #[test]
    fn a_body_holds_one_command_per_line() {
        let body = b"{\"id\":1}\r\n\n  \n{\"id\":2}";
        let lines: Vec<&[u8]> = commands(body).collect();
        assert_eq!(lines, [&b"{\"id\":1}"[..], b"{\"id\":2}"]);
    }
}
