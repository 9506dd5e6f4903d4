//! One connection: its transport, the commands sent and waiting for a reply, and what the
//! server said when it ended.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use switchboard_codec::CloseCode;
use switchboard_proto::{Command, CommandKind, Format, StreamPosition, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::link::Link;
use crate::builder::TokenFuture;
use crate::error::{DisconnectReason, Error};
use crate::transport::Opened;

/// One connection, from the 101 response (or the SSE `session` event) to its end.
pub(super) struct Live {
    pub(super) link: Link,
    pub(super) format: Format,
    next_id: u64,
    /// Commands sent and not yet answered, by id; ids and deadlines increase together.
    pub(super) pending: BTreeMap<u64, Pending>,
    /// When the server answered `connect`.
    pub(super) connected_at: Option<Instant>,
    /// The server's ping interval (or ours, when it sends none).
    pub(super) interval: Duration,
    /// The server sends no pings: send `ping` commands instead (protocol §9).
    pub(super) app_pings: bool,
    pub(super) ping_outstanding: bool,
    pub(super) last_recv: Instant,
    pub(super) max_message_size: u64,
    pub(super) close_frame: Option<(u16, String)>,
    pub(super) disconnect_push: Option<(u16, String)>,
    pub(super) protocol_error: Option<String>,
    /// Set when the connection must be dropped at the next turn of the loop.
    pub(super) ended: Option<DisconnectReason>,
    /// Some subscription waits for a retry.
    pub(super) retries_scheduled: bool,
    pub(super) refresh_at: Option<Instant>,
    pub(super) refreshing: Option<TokenFuture>,
}

impl Live {
    pub(super) fn new(opened: Opened) -> Self {
        Self {
            format: opened.format(),
            link: Link::new(opened),
            next_id: 1,
            pending: BTreeMap::new(),
            connected_at: None,
            interval: DEFAULT_PING_INTERVAL,
            app_pings: false,
            ping_outstanding: false,
            last_recv: Instant::now(),
            // Until `connect` says otherwise, the protocol's default (protocol §3).
            max_message_size: 64 << 10,
            close_frame: None,
            disconnect_push: None,
            protocol_error: None,
            ended: None,
            retries_scheduled: false,
            refresh_at: None,
            refreshing: None,
        }
    }

    /// Whether commands can be sent: `connect` answered and no close under way.
    pub(super) fn is_ready(&self) -> bool {
        self.connected_at.is_some() && !self.link.is_closing() && self.ended.is_none()
    }

    /// Encodes and queues a command, remembering what its reply is for.
    pub(super) fn send(
        &mut self,
        kind: CommandKind,
        ack: Duration,
        what: Awaiting,
    ) -> Result<u64, (Error, Awaiting)> {
        let id = self.next_id;
        let bytes = match self.format.encode(&Command { id, kind }) {
            Ok(bytes) => bytes,
            Err(e) => return Err((Error::Encode(e.to_string()), what)),
        };
        let len = bytes.len() as u64;
        if len > self.max_message_size {
            return Err((Error::MessageTooLarge { len, max: self.max_message_size }, what));
        }
        if self.link.send(bytes, self.format.is_binary()).is_err() {
            return Err((Error::Disconnected, what));
        }
        self.next_id += 1;
        self.pending.insert(id, Pending { deadline: Instant::now() + ack, what });
        Ok(id)
    }

    /// Writes what the transport queued.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        self.link.flush().await
    }

    /// Ends the connection on purpose (the close handshake, or the end of the session).
    pub(super) async fn close(&mut self) {
        self.link.close().await;
    }

    pub(super) fn fail_pending(&mut self, error: impl Fn() -> Error) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            pending.what.fail(error());
        }
    }

    /// Why the connection ended, from what the server said and did.
    pub(super) fn end_reason(&self) -> DisconnectReason {
        if let Some(e) = &self.protocol_error {
            return DisconnectReason::Protocol(e.clone());
        }
        // Protocol §4: the close code decides; the `disconnect` push stands in for a close
        // frame that never came (1006) or came without a code (1005).
        let frame = self.close_frame.as_ref().filter(|(code, _)| *code != CloseCode::NO_STATUS.0);
        match frame.or(self.disconnect_push.as_ref()).or(self.close_frame.as_ref()) {
            Some((code, reason)) => {
                DisconnectReason::Closed { code: *code, reason: reason.clone() }
            }
            None => DisconnectReason::Closed { code: CloseCode::ABNORMAL.0, reason: String::new() },
        }
    }
}

/// A command sent, waiting for its reply.
pub(super) struct Pending {
    pub(super) deadline: Instant,
    pub(super) what: Awaiting,
}

/// What a reply is for.
pub(super) enum Awaiting {
    Connect,
    Subscribe {
        channel: Arc<str>,
        sub: u64,
        since: Option<StreamPosition>,
    },
    /// A page of a recovery.
    Page {
        channel: Arc<str>,
        sub: u64,
    },
    Unsubscribe(Option<oneshot::Sender<Result<(), Error>>>),
    /// An application's command; `retry` keeps a read to send again after a lost
    /// connection.
    Request {
        retry: Option<CommandKind>,
        done: oneshot::Sender<Result<Value, Error>>,
    },
    Refresh(String),
    Ping,
}

impl Awaiting {
    /// Tells whoever waits that the command will get no reply.
    pub(super) fn fail(self, error: Error) {
        match self {
            Awaiting::Request { done, .. } => {
                let _ = done.send(Err(error));
            }
            Awaiting::Unsubscribe(Some(done)) => {
                // Whatever happened, the subscription is gone on this side; a new
                // connection will not restore it.
                let _ = done.send(Ok(()));
            }
            _ => {}
        }
    }
}

/// The server's default ping interval (protocol §3), assumed until `connect` answers, and
/// the interval of our own `ping` commands when the server sends no pings.
pub(super) const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
