//! Switchboard authentication: who a connection is and what it may do.
//!
//! Owns:
//! - **JWT verification** ([`Verifier`], configured with a [`VerifierBuilder`]): HS256/384/512
//!   with a shared secret, RS256/384/512, ES256/384 and EdDSA with a PEM public key, or keys
//!   from a JWKS selected by `kid`. The algorithm comes from the configuration, never from
//!   the token (RFC 8725 §3.1). `exp` is required; `nbf`, `iss` and `aud` are checked with a
//!   small leeway.
//! - **Claims** ([`Claims`]): `sub`, `exp`, `nbf`, `iss`, `aud`, `info`, `channels`, `publish`.
//! - **Channel permissions** ([`Permissions`]): pattern grants from the claims, and
//!   user-limited channels `ns:name#user1,user2`.
//! - **One-time tickets** ([`TicketStore`]): short-lived, single-use values that stand in for
//!   a token in a URL (`?ticket=`).
//! - **Minting** ([`mint_hs256`]) for the CLI, and [`redact_token`] for logs.
//!
//! Does not own: HTTP, sockets or tokio (it is a leaf: the server extracts the token from
//! headers, cookies or the query, answers 401, and runs expiry timers), namespace options,
//! channel-name validation (`switchboard_proto::channel`), or reading clocks: every
//! time-dependent call takes `now`.
//!
//! Cryptography is jsonwebtoken's RustCrypto backend, used directly rather than through
//! jsonwebtoken's process-wide provider, so another crate enabling a different backend
//! cannot change or break what this crate does.
//!
//! ```
//! use std::time::{Duration, Instant, SystemTime};
//! use switchboard_auth::{
//!     Algorithm, Claims, Error, Permissions, TicketConfig, TicketStore, VerifierBuilder,
//!     mint_hs256, redact_token,
//! };
//!
//! // The operator's configuration: one shared secret.
//! let secret = b"0123456789abcdef0123456789abcdef";
//! let verifier = VerifierBuilder::hmac(Algorithm::Hs256, secret.as_slice())
//!     .audience("switchboard")
//!     .build()?;
//!
//! // A backend (here, the CLI helper) mints a token for alice.
//! let now = SystemTime::now();
//! let mut claims = Claims::new("alice", Duration::from_secs(600), now);
//! claims.aud = vec!["switchboard".into()];
//! claims.channels = vec!["chat:*".into()];
//! claims.publish = vec!["chat:lobby".into()];
//! let token = mint_hs256(secret, &claims)?;
//! assert_eq!(redact_token(&token), "eyJhbG…");
//!
//! // The server verifies it at the handshake and checks each command against it.
//! let claims = verifier.verify(&token, now)?;
//! let perms = Permissions::from_claims(&claims);
//! assert!(perms.can_subscribe("chat:random"));
//! assert!(perms.can_publish("chat:lobby") && !perms.can_publish("chat:random"));
//! assert!(perms.can_subscribe("inbox:#alice"));
//!
//! // A late token is refused with a reason the client can act on.
//! let later = now + Duration::from_secs(3600);
//! let err = verifier.verify(&token, later).unwrap_err();
//! assert!(err.is_expired());
//! assert_eq!((err.http_status(), err.as_label()), (401, "token_expired"));
//!
//! // Or the browser trades its token for a ticket to put in the WebSocket URL.
//! let tickets = TicketStore::new(TicketConfig::default());
//! let ticket = tickets.issue(claims, Instant::now())?;
//! let redeemed = tickets.redeem(ticket.as_str(), Instant::now())?;
//! assert_eq!(redeemed.sub, "alice");
//! assert_eq!(tickets.redeem(ticket.as_str(), Instant::now()), Err(Error::TicketInvalid));
//! # Ok::<(), Error>(())
//! ```

mod claims;
mod error;
mod mint;
mod permissions;
mod ticket;
mod verify;

pub use claims::{Claims, MAX_USER_LEN};
pub use error::Error;
pub use mint::mint_hs256;
pub use permissions::Permissions;
pub use ticket::{Ticket, TicketConfig, TicketStore};
pub use verify::{Algorithm, Verifier, VerifierBuilder};

/// Shortens a token, ticket or other secret for a log line: at most its first 6 characters,
/// and fewer for short values (a quarter of them), then `…`.
///
/// The first 6 characters of a JWT are its header's (`eyJhbG`), and of a ticket 36 of its 256
/// bits: enough to tell values apart in logs, never enough to use one.
///
/// ```
/// use switchboard_auth::redact_token;
/// assert_eq!(redact_token("eyJhbGciOiJIUzI1NiJ9.e30.sig"), "eyJhbG…");
/// assert_eq!(redact_token("abcdefgh"), "ab…");
/// assert_eq!(redact_token("abc"), "…");
/// ```
pub fn redact_token(s: &str) -> String {
    let keep = (s.chars().count() / 4).min(6);
    let mut out: String = s.chars().take(keep).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_never_shows_more_than_six_characters() {
        assert_eq!(redact_token(""), "…");
        assert_eq!(redact_token("0123456789abcdef0123456789"), "012345…");
        assert_eq!(redact_token("ééééééééééééé"), "ééé…");
        let ticket = "a".repeat(43);
        assert_eq!(redact_token(&ticket), "aaaaaa…");
    }
}
