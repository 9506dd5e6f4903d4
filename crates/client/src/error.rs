//! The client's error type, and why a connection ended.

use std::fmt;
use std::io;
use std::time::Duration;

use switchboard_proto::{Advice, ErrorBody, ErrorCode};

/// What went wrong with a client call.
///
/// Whose fault: [`Error::Command`] is the server refusing a command (act on
/// [`Error::is_temporary`]); [`Error::InvalidUrl`], [`Error::InvalidOption`],
/// [`Error::NoRuntime`], [`Error::AlreadySubscribed`] and [`Error::MessageTooLarge`] are the
/// caller's; the rest are the connection's state.
///
/// ```
/// use switchboard_client::Error;
///
/// let err = Error::QueueFull(1000);
/// assert_eq!(err.to_string(), "publish queue full: 1000 waiting");
/// assert!(err.code().is_none());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL given to [`Client::builder`](crate::Client::builder) cannot be used.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// A builder option is out of range or malformed.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// [`ClientBuilder::build`](crate::ClientBuilder::build) was called outside a tokio
    /// runtime, which the client's background task needs.
    #[error("no tokio runtime: build the client from within one")]
    NoRuntime,
    /// The server answered the command with an error.
    #[error("{}: {}", .0.code, .0.message)]
    Command(Box<ErrorBody>),
    /// The client is disconnected and was told not to queue
    /// ([`PublishQueue::Reject`](crate::PublishQueue::Reject)).
    #[error("not connected")]
    NotConnected,
    /// The client is disconnected and its queue already holds this many commands.
    #[error("publish queue full: {0} waiting")]
    QueueFull(usize),
    /// The command was sent but no reply came within the acknowledgement timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The connection was lost after the publish was sent and before its acknowledgement:
    /// it may or may not have happened (protocol §3, `publish`).
    #[error("connection lost before the acknowledgement: the publish may or may not have happened")]
    Disconnected,
    /// The client is closed: [`Client::close`](crate::Client::close) was called, or the
    /// server told it to stop (see [`Client::state`](crate::Client::state) for why).
    #[error("client closed")]
    Closed,
    /// This client already has a [`Subscription`](crate::Subscription) to the channel.
    #[error("already subscribed to {0:?}")]
    AlreadySubscribed(String),
    /// The encoded command is larger than the server's `max_message_size`.
    #[error("message too large: {len} > {max}")]
    MessageTooLarge {
        /// The encoded command's length in bytes.
        len: u64,
        /// The limit the server announced at connect.
        max: u64,
    },
    /// The command could not be encoded (never for JSON values; MessagePack has limits).
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The reply could not be decoded as the command's result.
    #[error("bad reply: {0}")]
    BadReply(String),
}

impl Error {
    /// The server's error code, for [`Error::Command`].
    ///
    /// ```no_run
    /// # async fn f(client: switchboard_client::Client) {
    /// use switchboard_client::ErrorCode;
    /// if let Err(e) = client.publish("chat:lobby", "hi").await
    ///     && e.code() == Some(ErrorCode::PermissionDenied)
    /// {
    ///     eprintln!("this user may not publish here");
    /// }
    /// # }
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Command(body) => Some(body.code),
            _ => None,
        }
    }

    /// Whether the same call may succeed later without change: a temporary server error
    /// (`unavailable`, `internal`, `rate_limited`), a timeout, a lost connection or a full
    /// queue.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_client::Error;
    /// assert!(Error::Timeout(Duration::from_secs(10)).is_temporary());
    /// assert!(!Error::Closed.is_temporary());
    /// ```
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Command(body) => body.temporary,
            Error::Timeout(_) | Error::Disconnected | Error::QueueFull(_) | Error::NotConnected => {
                true
            }
            _ => false,
        }
    }
}

/// Why a connection ended or an attempt failed, as carried by a
/// [`StateChange`](crate::StateChange).
///
/// [`advice`](Self::advice) is what the client did about it (protocol §8).
///
/// ```
/// use switchboard_client::{Advice, DisconnectReason};
///
/// let reason = DisconnectReason::Closed { code: 4001, reason: "slow consumer".into() };
/// assert_eq!(reason.advice(), Advice::Reconnect);
/// assert_eq!(reason.to_string(), "closed with 4001: slow consumer");
/// ```
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The WebSocket closed with this code: from the server's close frame, 1005 for a close
    /// frame without one, or 1006 when the connection dropped without a close frame.
    Closed {
        /// The close code (RFC 6455 §7.4, protocol §8).
        code: u16,
        /// The close frame's reason text, for humans.
        reason: String,
    },
    /// The server refused the opening handshake with an HTTP status (RFC 6455 §4.2.1).
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `error.code` of the server's JSON body, when there was one.
        code: Option<String>,
        /// The `error.message` of the server's JSON body, or the start of the body.
        message: String,
        /// The `Retry-After` header, when present (429 and 503).
        retry_after: Option<Duration>,
    },
    /// The server answered `connect` with an error.
    ConnectRefused {
        /// The error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// Connecting, reading or writing failed (DNS, TCP, TLS), or the attempt timed out.
    Io {
        /// The I/O error's kind.
        kind: io::ErrorKind,
        /// The error, for humans.
        message: String,
    },
    /// The server's handshake response or messages broke RFC 6455 or the protocol.
    Protocol(String),
    /// Nothing (no message, no ping) arrived for the server's `ping_interval` plus the
    /// heartbeat margin (protocol §9): the connection was presumed dead.
    HeartbeatTimeout,
    /// A command the client relies on (`connect`, `subscribe`) got no reply within the
    /// acknowledgement timeout: the connection was presumed dead.
    NoReply(&'static str),
    /// The token callback failed.
    Token(String),
    /// The application closed the client, or dropped every handle to it.
    ClientClosed,
}

impl DisconnectReason {
    /// What the client does about it: reconnect soon, back off, fetch a new token first, or
    /// stop (protocol §8).
    ///
    /// ```
    /// use switchboard_client::{Advice, DisconnectReason};
    /// assert_eq!(DisconnectReason::HeartbeatTimeout.advice(), Advice::Backoff);
    /// ```
    pub fn advice(&self) -> Advice {
        match self {
            DisconnectReason::Closed { code, .. } => switchboard_proto::advice(*code),
            DisconnectReason::Refused { status, code, .. } => match status {
                401 if code.as_deref() == Some("token_expired") => Advice::RefreshToken,
                401 | 403 => Advice::Stop,
                408 | 429 | 500..=599 => Advice::Backoff,
                // Another 4xx will not change by itself: a wrong path, a refused
                // subprotocol, a request the server cannot read.
                400..=499 => Advice::Stop,
                _ => Advice::Backoff,
            },
            DisconnectReason::ConnectRefused { code, .. } => match code {
                ErrorCode::TokenExpired => Advice::RefreshToken,
                ErrorCode::Unauthorized | ErrorCode::PermissionDenied => Advice::Stop,
                _ => Advice::Backoff,
            },
            DisconnectReason::ClientClosed => Advice::Stop,
            DisconnectReason::Io { .. }
            | DisconnectReason::Protocol(_)
            | DisconnectReason::HeartbeatTimeout
            | DisconnectReason::NoReply(_)
            | DisconnectReason::Token(_) => Advice::Backoff,
        }
    }

    pub(crate) fn io(err: &io::Error) -> Self {
        DisconnectReason::Io { kind: err.kind(), message: err.to_string() }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Closed { code, reason } if reason.is_empty() => {
                write!(f, "closed with {code}")
            }
            DisconnectReason::Closed { code, reason } => write!(f, "closed with {code}: {reason}"),
            DisconnectReason::Refused { status, code: Some(code), message, .. } => {
                write!(f, "handshake refused with {status} {code}: {message}")
            }
            DisconnectReason::Refused { status, message, .. } => {
                write!(f, "handshake refused with {status}: {message}")
            }
            DisconnectReason::ConnectRefused { code, message } => {
                write!(f, "connect refused: {code}: {message}")
            }
            DisconnectReason::Io { message, .. } => write!(f, "i/o error: {message}"),
            DisconnectReason::Protocol(message) => write!(f, "protocol error: {message}"),
            DisconnectReason::HeartbeatTimeout => f.write_str("heartbeat timeout"),
            DisconnectReason::NoReply(command) => write!(f, "no reply to {command}"),
            DisconnectReason::Token(message) => write!(f, "token callback failed: {message}"),
            DisconnectReason::ClientClosed => f.write_str("closed by the application"),
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
    fn refusals_map_to_advice() {
        let refused = |status, code: Option<&str>| DisconnectReason::Refused {
            status,
            code: code.map(str::to_owned),
            message: String::new(),
            retry_after: None,
        };
        assert_eq!(refused(401, Some("invalid_token")).advice(), Advice::Stop);
        assert_eq!(refused(401, Some("token_expired")).advice(), Advice::RefreshToken);
        assert_eq!(refused(403, None).advice(), Advice::Stop);
        assert_eq!(refused(429, None).advice(), Advice::Backoff);
        assert_eq!(refused(503, None).advice(), Advice::Backoff);
        assert_eq!(refused(404, None).advice(), Advice::Stop);
    }

    #[test]
    fn close_codes_follow_proto_advice() {
        let closed = |code| DisconnectReason::Closed { code, reason: String::new() };
        assert_eq!(closed(1001).advice(), Advice::Reconnect);
        assert_eq!(closed(1006).advice(), Advice::Backoff);
        assert_eq!(closed(4200).advice(), Advice::RefreshToken);
        assert_eq!(closed(4401).advice(), Advice::Stop);
    }
}
