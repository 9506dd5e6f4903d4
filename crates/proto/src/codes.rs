//! Error codes in replies, and close codes with what a client should do about each.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable, machine-readable reason for a failed command, serialized in snake case.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The command is malformed: not valid JSON/MessagePack, a missing or mistyped field.
    BadRequest,
    /// The command's `type` is not one this server knows.
    UnknownCommand,
    /// The channel name breaks the naming rules.
    InvalidChannel,
    /// The channel's namespace is not configured.
    UnknownNamespace,
    /// The namespace's options do not allow this (e.g. client publishing is off).
    PermissionDenied,
    /// The connection is already subscribed to the channel.
    AlreadySubscribed,
    /// The connection is not subscribed to the channel.
    NotSubscribed,
    /// A configured limit was reached (subscribers per channel, subscriptions per connection).
    LimitExceeded,
    /// The publication is larger than the namespace allows.
    MessageTooLarge,
    /// The broker cannot be reached; nothing was done. Temporary: retry later.
    Unavailable,
    /// The server failed unexpectedly; nothing was done. Temporary: retry later.
    Internal,
    /// The command needs credentials the connection does not have.
    Unauthorized,
    /// The connection's token expired: refresh it.
    TokenExpired,
    /// Too many commands in too short a time. Temporary: slow down.
    RateLimited,
    /// A code this library does not know yet (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code a server sends, for documentation and tests.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownCommand,
        ErrorCode::InvalidChannel,
        ErrorCode::UnknownNamespace,
        ErrorCode::PermissionDenied,
        ErrorCode::AlreadySubscribed,
        ErrorCode::NotSubscribed,
        ErrorCode::LimitExceeded,
        ErrorCode::MessageTooLarge,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::RateLimited,
    ];

    /// Whether the same command may succeed later without change.
    pub fn is_temporary(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::RateLimited)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::UnknownNamespace => "unknown_namespace",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::AlreadySubscribed => "already_subscribed",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a client should do after the connection closed with a given code.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Advice {
    /// Reconnect at once (with a small random delay so a fleet does not reconnect in step).
    Reconnect,
    /// Reconnect with exponential backoff and jitter.
    Backoff,
    /// Fetch a new token, then reconnect.
    RefreshToken,
    /// Do not reconnect: credentials were refused or the client was banned.
    Stop,
}

/// Switchboard's close codes, in the 4000–4999 range RFC 6455 §7.4.2 leaves to applications.
///
/// The hundreds digit tells a client what to do: 40xx reconnect, 41xx back off, 42xx refresh
/// the token, 44xx stop. See [`advice`].
pub mod close {
    /// 4000: the server asked the client to reconnect (an operator's request).
    pub const RECONNECT: u16 = 4000;
    /// 4001: the client read too slowly and its outbound queue overflowed.
    pub const SLOW_CONSUMER: u16 = 4001;
    /// 4002: the server lost state the connection relied on; reconnect and recover.
    pub const INSUFFICIENT_STATE: u16 = 4002;
    /// 4003: the server is draining for shutdown; reconnect (through the load balancer).
    pub const DRAINING: u16 = 4003;
    /// 4100: too many commands too fast.
    pub const RATE_LIMITED: u16 = 4100;
    /// 4101: too many unreadable commands in a row (100 on this server).
    pub const TOO_MANY_ERRORS: u16 = 4101;
    /// 4102: no `connect` command arrived in time.
    pub const CONNECT_TIMEOUT: u16 = 4102;
    /// 4103: the server or the user has too many connections.
    pub const CONNECTION_LIMIT: u16 = 4103;
    /// 4200: the connection's token expired without a refresh.
    pub const TOKEN_EXPIRED: u16 = 4200;
    /// 4400: the client broke the protocol in a way reconnecting cannot fix.
    pub const BAD_PROTOCOL: u16 = 4400;
    /// 4401: the credentials were refused.
    pub const UNAUTHORIZED: u16 = 4401;
    /// 4403: the client is not allowed to connect (disconnected for good by an operator).
    pub const FORBIDDEN: u16 = 4403;

    /// Every code above, in numeric order: the codes the server chooses itself.
    pub const ALL: [u16; 12] = [
        RECONNECT,
        SLOW_CONSUMER,
        INSUFFICIENT_STATE,
        DRAINING,
        RATE_LIMITED,
        TOO_MANY_ERRORS,
        CONNECT_TIMEOUT,
        CONNECTION_LIMIT,
        TOKEN_EXPIRED,
        BAD_PROTOCOL,
        UNAUTHORIZED,
        FORBIDDEN,
    ];
}

/// What a client should do after a close with `code`, for RFC 6455 codes and ours alike.
pub fn advice(code: u16) -> Advice {
    match code {
        // Going away and service restart: the server is fine, this node is leaving.
        1001 | 1012 => Advice::Reconnect,
        4000..=4099 => Advice::Reconnect,
        4200..=4299 => Advice::RefreshToken,
        4400..=4499 => Advice::Stop,
        // Everything else, including abnormal closes (1006), internal errors (1011), try
        // again later (1013) and violations a reconnect might not fix at once.
        _ => Advice::Backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_as_their_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let future: ErrorCode = serde_json::from_str("\"something_new\"").unwrap();
        assert_eq!(future, ErrorCode::Unknown);
    }

    #[test]
    fn advice_follows_the_ranges() {
        assert_eq!(advice(close::SLOW_CONSUMER), Advice::Reconnect);
        assert_eq!(advice(close::DRAINING), Advice::Reconnect);
        assert_eq!(advice(1001), Advice::Reconnect);
        assert_eq!(advice(close::RATE_LIMITED), Advice::Backoff);
        assert_eq!(advice(1006), Advice::Backoff);
        assert_eq!(advice(close::TOKEN_EXPIRED), Advice::RefreshToken);
        assert_eq!(advice(close::UNAUTHORIZED), Advice::Stop);
        assert_eq!(advice(close::FORBIDDEN), Advice::Stop);
    }

    #[test]
    fn the_server_codes_are_listed_once_in_the_application_range() {
        assert!(close::ALL.windows(2).all(|pair| pair[0] < pair[1]), "sorted, no repeats");
        assert!(close::ALL.iter().all(|code| (4000..=4999).contains(code)));
    }
}
