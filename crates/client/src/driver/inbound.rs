//! What the server sends: frames read, messages decoded, and each reply or push routed to
//! what waits for it.

use switchboard_proto::{
    ConnectResult, ErrorBody, Format, Push, RefreshResult, Reply, ServerMessage, Value,
};

use super::Driver;
use super::link::Incoming;
use super::live::{Awaiting, Live};
use super::subscriptions::{Answer, Phase, schedule_retry};
use crate::client::{Delivery, SubscriptionEvent};
use crate::error::{DisconnectReason, Error};
use crate::lenient::{self, Entry, Salvaged};

impl Driver {
    pub(super) fn on_read(&mut self, live: &mut Live) {
        if let Err(e) = live.link.handle_read() {
            live.protocol_error.get_or_insert(e);
        }
        while let Some(incoming) = live.link.poll_incoming() {
            match incoming {
                Incoming::Message(bytes) => self.on_message(live, &bytes),
                Incoming::Close(code, reason) => live.close_frame = Some((code, reason)),
                Incoming::Failed(reason) => {
                    live.ended.get_or_insert(reason);
                }
            }
        }
        if let Some(e) = live.link.error() {
            live.protocol_error.get_or_insert(e);
        }
    }

    fn on_message(&mut self, live: &mut Live, bytes: &[u8]) {
        let message: ServerMessage = match live.format.decode(bytes) {
            Ok(message) => message,
            Err(e) => {
                match lenient::salvage(live.format, bytes, &e) {
                    Some(Salvaged::Publication { channel, offset, reason }) => {
                        self.on_publication(live, &channel, Entry::Undecodable { offset, reason });
                    }
                    Some(Salvaged::Reply { reply, undecodable }) => {
                        self.on_reply(live, reply, undecodable, bytes);
                    }
                    // Forward compatibility: a message this version cannot read is skipped.
                    None => tracing::debug!(error = %e, "undecodable server message"),
                }
                return;
            }
        };
        match message {
            ServerMessage::Push(push) => self.on_push(live, push),
            ServerMessage::Reply(reply) => self.on_reply(live, reply, Vec::new(), bytes),
        }
    }

    /// A reply; `undecodable` holds the publications taken out of its result because their
    /// data could not be decoded; `bytes` is the message as it came.
    fn on_reply(
        &mut self,
        live: &mut Live,
        reply: Reply<Value>,
        undecodable: Vec<Entry>,
        bytes: &[u8],
    ) {
        let Some(pending) = live.pending.remove(&reply.id) else { return };
        let result = match (reply.result, reply.error) {
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
            (None, None) => Ok(Value::Object(serde_json::Map::new())),
        };
        match pending.what {
            Awaiting::Connect => match result {
                Ok(result) => match serde_json::from_value::<ConnectResult>(result) {
                    Ok(connected) => self.on_connected(live, &connected),
                    Err(e) => {
                        // What answered is no Switchboard hub: an echo server sends the
                        // command back, another protocol something else with an `id`.
                        tracing::debug!(error = %e, "undecodable connect result");
                        let why = format!(
                            "not a Switchboard /ws endpoint: the answer to `connect` was {}",
                            preview(live.format, bytes)
                        );
                        live.ended = Some(DisconnectReason::Protocol(why));
                    }
                },
                Err(error) => {
                    let ErrorBody { code, message, .. } = error;
                    live.ended = Some(DisconnectReason::ConnectRefused { code, message });
                }
            },
            Awaiting::Subscribe { channel, sub, since } => {
                let answer = Answer { id: reply.id, result, undecodable };
                self.on_subscribed(live, &channel, sub, since, answer);
            }
            Awaiting::Page { channel, sub } => {
                let answer = Answer { id: reply.id, result, undecodable };
                self.on_page(live, &channel, sub, answer);
            }
            Awaiting::Unsubscribe(done) => {
                if let Some(done) = done {
                    // `not_subscribed` means the same to the caller: not subscribed now.
                    let _ = done.send(Ok(()));
                }
            }
            Awaiting::Request { done, .. } => {
                let result = match undecodable.first() {
                    Some(Entry::Undecodable { offset, reason }) => Err(Error::BadReply(format!(
                        "publication {offset} cannot be decoded: {reason}"
                    ))),
                    _ => result.map_err(|e| Error::Command(Box::new(e))),
                };
                let _ = done.send(result);
            }
            Awaiting::Refresh(token) => match result {
                Ok(result) => {
                    let expires_at = serde_json::from_value::<RefreshResult>(result)
                        .map(|r| r.expires_at)
                        .unwrap_or_default();
                    tracing::debug!(expires_at, "token refreshed");
                    self.token = Some(token);
                    live.refresh_at = self.refresh_deadline();
                }
                Err(error) => {
                    let (code, message) = (error.code, &error.message);
                    tracing::debug!(%code, %message, "refresh refused");
                    live.refresh_at = self.refresh_retry();
                }
            },
            Awaiting::Ping => live.ping_outstanding = false,
        }
    }

    fn on_push(&mut self, live: &mut Live, push: Push) {
        match push {
            Push::Publication { channel, publication } => {
                self.on_publication(live, &channel, Entry::Publication(publication));
            }
            Push::Join { channel, client } => {
                self.deliver_if_active(&channel, SubscriptionEvent::Join(client));
            }
            Push::Leave { channel, client } => {
                self.deliver_if_active(&channel, SubscriptionEvent::Leave(client));
            }
            Push::PresenceCount { channel, count, joined, left } => {
                let event = SubscriptionEvent::PresenceCount { count, joined, left };
                self.deliver_if_active(&channel, event);
            }
            Push::Unsubscribe { channel, code, reason } => {
                let Some(sub) = self.subs.get_mut(channel.as_str()) else { return };
                if !sub.is_live() {
                    return;
                }
                // A recovery being read in pages starts again from the stored position.
                sub.paging = None;
                tracing::debug!(channel = %channel, %code, %reason, "unsubscribed by the server");
                if code.is_temporary() {
                    // Protocol §4: resubscribe with `since` after a delay.
                    sub.phase = Phase::Idle;
                    schedule_retry(sub, &self.settings, &mut self.rng);
                    live.retries_scheduled = true;
                } else {
                    let event = SubscriptionEvent::Unsubscribed { code, reason };
                    let _ = sub.events.send(Delivery::Event(event));
                    self.subs.remove(channel.as_str());
                }
            }
            Push::Disconnect { code, reason, .. } => live.disconnect_push = Some((code, reason)),
            Push::Unknown => {}
        }
    }
}

/// A message as text for an error, on one line and shortened: JSON as it came, MessagePack
/// as JSON.
fn preview(format: Format, bytes: &[u8]) -> String {
    let text = match format {
        Format::Msgpack => match format.decode::<Value>(bytes) {
            Ok(value) => value.to_string(),
            Err(_) => return format!("{} bytes of MessagePack", bytes.len()),
        },
        Format::Json => String::from_utf8_lossy(bytes).into_owned(),
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// How much of a message an error shows.
const PREVIEW_CHARS: usize = 80;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_one_short_line() {
        let echoed = br#"{"id":1,"type":"connect","name":"switchboard-rust"}"#;
        assert_eq!(preview(Format::Json, echoed), String::from_utf8_lossy(echoed));
        let long = format!("{{\n  \"id\": 1,\n  \"text\": \"{}\"\n}}", "x".repeat(200));
        let shown = preview(Format::Json, long.as_bytes());
        assert!(shown.starts_with(r#"{ "id": 1, "text": "xxx"#), "{shown}");
        assert_eq!(shown.chars().count(), PREVIEW_CHARS + 1, "{shown}");
        let packed = Format::Msgpack.encode(&serde_json::json!({"id": 1})).unwrap();
        assert_eq!(preview(Format::Msgpack, &packed), r#"{"id":1}"#);
        assert_eq!(preview(Format::Msgpack, &[0xc1]), "1 bytes of MessagePack");
    }
}
