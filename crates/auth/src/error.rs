//! The crate's one error type.

/// Why a token, a ticket or a key configuration was refused.
///
/// Messages name the broken rule, never a secret or a token's contents, so they are safe to
/// log. Clients get [`Error::reason`], metrics get [`Error::as_label`].
///
/// Whose fault it is:
/// - the peer's (HTTP 401): every token variant from [`Error::Malformed`] to
///   [`Error::InvalidClaim`], and [`Error::TicketInvalid`] and [`Error::TicketExpired`];
/// - the peer's rate (HTTP 429): [`Error::TicketsPerUser`];
/// - the server's state (HTTP 503): [`Error::TicketStoreFull`], [`Error::RandomUnavailable`];
/// - the operator's configuration (refused at start-up): [`Error::InvalidKey`],
///   [`Error::UnsupportedAlgorithm`], [`Error::WeakSecret`].
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is not three base64url parts holding a JSON header and JSON claims, or it
    /// is longer than the verifier accepts.
    #[error("malformed token")]
    Malformed,
    /// The signature does not verify with the selected key.
    #[error("bad token signature")]
    BadSignature,
    /// The header's `alg` is `none`, unknown, or not the one the selected key is for (RFC 8725
    /// §3.1: the algorithm comes from the configuration, never from the token).
    #[error("token algorithm not allowed for the key")]
    WrongAlgorithm,
    /// A JWKS verifier has no key with the token's `kid`, or the token names none and the set
    /// holds more than one key.
    #[error("unknown token key id")]
    UnknownKeyId,
    /// `exp` plus the leeway is not after the current time (RFC 7519 §4.1.4).
    #[error("token expired")]
    Expired,
    /// `nbf` minus the leeway is after the current time (RFC 7519 §4.1.5).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not one of the configured issuers.
    #[error("wrong token issuer")]
    WrongIssuer,
    /// `aud` names none of the configured audiences, or the token has an `aud` and the
    /// verifier has none configured (RFC 7519 §4.1.3).
    #[error("wrong token audience")]
    WrongAudience,
    /// A claim the verifier needs is absent: `sub` and `exp` always, `iss` and `aud` when
    /// configured.
    #[error("token lacks claim `{0}`")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or value, e.g. an empty `sub`, a `sub` longer than
    /// [`MAX_USER_LEN`](crate::MAX_USER_LEN) bytes, or `channels` that is not a list of strings.
    #[error("token claim `{0}` is invalid")]
    InvalidClaim(&'static str),
    /// The ticket is unknown: forged, mistyped, already redeemed, or expired and purged.
    #[error("unknown or already used ticket")]
    TicketInvalid,
    /// The ticket existed but its time to live had passed; it is gone now.
    #[error("ticket expired")]
    TicketExpired,
    /// The ticket store holds its maximum of unexpired tickets (for untrusted callers, its
    /// maximum less the reserve).
    #[error("too many pending tickets: {max} at most")]
    TicketStoreFull {
        /// The maximum that applied.
        max: usize,
        /// How long until the oldest pending ticket expires, freeing a slot if no other
        /// ticket is redeemed first.
        retry_after: std::time::Duration,
    },
    /// The user holds their maximum of pending tickets.
    #[error("too many pending tickets for this user: {max} at most")]
    TicketsPerUser {
        /// The configured maximum per user.
        max: usize,
        /// How long until the user's oldest pending ticket expires.
        retry_after: std::time::Duration,
    },
    /// The operating system's random number generator failed; no ticket was issued.
    #[error("os random number generator unavailable")]
    RandomUnavailable,
    /// A configured key cannot be used: bad PEM or JWKS, the wrong kind of key for the
    /// algorithm, an RSA key under 2048 bits. The text says which rule, never the key.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// An algorithm name in the configuration is not one of [`Algorithm`](crate::Algorithm)'s.
    #[error("unsupported algorithm: use HS256/384/512, RS256/384/512, ES256/384 or EdDSA")]
    UnsupportedAlgorithm,
    /// An HMAC secret is shorter than its algorithm's hash output (RFC 7518 §3.2). Allowed
    /// only with [`VerifierBuilder::danger_allow_short_hmac_secret`], and never when empty.
    ///
    /// [`VerifierBuilder::danger_allow_short_hmac_secret`]:
    ///     crate::VerifierBuilder::danger_allow_short_hmac_secret
    #[error("hmac secret too short: {len} < {min} bytes")]
    WeakSecret {
        /// Length of the configured secret.
        len: usize,
        /// Least length the algorithm needs.
        min: usize,
    },
}

impl Error {
    /// A short, stable, snake-case name for metrics labels and the `error` field of a 401 body.
    pub fn as_label(&self) -> &'static str {
        match self {
            Error::Malformed => "malformed",
            Error::BadSignature => "bad_signature",
            Error::WrongAlgorithm => "wrong_algorithm",
            Error::UnknownKeyId => "unknown_key_id",
            Error::Expired => "token_expired",
            Error::NotYetValid => "not_yet_valid",
            Error::WrongIssuer => "wrong_issuer",
            Error::WrongAudience => "wrong_audience",
            Error::MissingClaim(_) => "missing_claim",
            Error::InvalidClaim(_) => "invalid_claim",
            Error::TicketInvalid => "ticket_invalid",
            Error::TicketExpired => "ticket_expired",
            Error::TicketStoreFull { .. } => "ticket_store_full",
            Error::TicketsPerUser { .. } => "tickets_per_user",
            Error::RandomUnavailable => "random_unavailable",
            Error::InvalidKey(_) => "invalid_key",
            Error::UnsupportedAlgorithm => "unsupported_algorithm",
            Error::WeakSecret { .. } => "weak_secret",
        }
    }

    /// A one-line reason for the client, e.g. the `reason` field of a 401 JSON body.
    ///
    /// Static text: it repeats nothing from the request, and for configuration errors says
    /// only that the server is at fault.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Malformed => "malformed token",
            Error::BadSignature => "bad token signature",
            Error::WrongAlgorithm => "token algorithm not allowed",
            Error::UnknownKeyId => "unknown token key id",
            Error::Expired => "token expired",
            Error::NotYetValid => "token not yet valid",
            Error::WrongIssuer => "wrong token issuer",
            Error::WrongAudience => "wrong token audience",
            Error::MissingClaim(_) => "token lacks a required claim",
            Error::InvalidClaim(_) => "token has an invalid claim",
            Error::TicketInvalid => "unknown or already used ticket",
            Error::TicketExpired => "ticket expired",
            Error::TicketStoreFull { .. } => "too many pending tickets, retry later",
            Error::TicketsPerUser { .. } => {
                "too many pending tickets for this user: redeem them or wait for them to expire"
            }
            Error::RandomUnavailable => "server cannot issue tickets now",
            Error::InvalidKey(_) | Error::UnsupportedAlgorithm | Error::WeakSecret { .. } => {
                "server authentication misconfigured"
            }
        }
    }

    /// Whether the token was fine but expired: the client should fetch a new one (proto's
    /// `token_expired` error code, close code 4200) rather than give up.
    pub fn is_expired(&self) -> bool {
        matches!(self, Error::Expired)
    }

    /// The HTTP status for refusing a request with this error: 401 for credentials, 429 for
    /// a user's full share of tickets, 503 for a full ticket store or a failing RNG, 500
    /// for configuration.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::TicketsPerUser { .. } => 429,
            Error::TicketStoreFull { .. } | Error::RandomUnavailable => 503,
            Error::InvalidKey(_) | Error::UnsupportedAlgorithm | Error::WeakSecret { .. } => 500,
            _ => 401,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Error; 18] = [
        Error::Malformed,
        Error::BadSignature,
        Error::WrongAlgorithm,
        Error::UnknownKeyId,
        Error::Expired,
        Error::NotYetValid,
        Error::WrongIssuer,
        Error::WrongAudience,
        Error::MissingClaim("exp"),
        Error::InvalidClaim("sub"),
        Error::TicketInvalid,
        Error::TicketExpired,
        Error::TicketStoreFull { max: 10, retry_after: std::time::Duration::ZERO },
        Error::TicketsPerUser { max: 10, retry_after: std::time::Duration::ZERO },
        Error::RandomUnavailable,
        Error::InvalidKey("bad pem"),
        Error::UnsupportedAlgorithm,
        Error::WeakSecret { len: 3, min: 32 },
    ];

    #[test]
    fn error_stays_small() {
        assert!(size_of::<Error>() <= 32, "{}", size_of::<Error>());
    }

    #[test]
    fn labels_are_distinct_snake_case() {
        let mut labels: Vec<_> = ALL.iter().map(Error::as_label).collect();
        for label in &labels {
            assert!(label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{label}");
        }
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ALL.len());
    }

    #[test]
    fn messages_are_lowercase_one_liners() {
        for err in &ALL {
            for text in [err.to_string(), err.reason().to_owned()] {
                assert!(!text.is_empty());
                assert!(!text.contains('\n'), "{text}");
                assert!(!text.ends_with('.'), "{text}");
                assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text}");
            }
        }
    }

    #[test]
    fn statuses_say_whose_fault() {
        assert_eq!(Error::Expired.http_status(), 401);
        assert_eq!(Error::TicketInvalid.http_status(), 401);
        let wait = std::time::Duration::from_secs(1);
        assert_eq!(Error::TicketStoreFull { max: 1, retry_after: wait }.http_status(), 503);
        assert_eq!(Error::TicketsPerUser { max: 1, retry_after: wait }.http_status(), 429);
        assert_eq!(Error::InvalidKey("x").http_status(), 500);
        assert!(Error::Expired.is_expired());
        assert!(!Error::NotYetValid.is_expired());
    }
}
