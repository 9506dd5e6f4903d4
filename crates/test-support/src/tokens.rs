//! Tokens and configurations for authentication tests: one HS256 secret every test server
//! verifies with, claims and tokens made from it, and the configurations that use it.

#![allow(clippy::missing_panics_doc)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use switchboard_auth::{Algorithm, Claims, VerifierBuilder, mint_hs256};
use switchboard_server::{Config, NamespaceOptions};

/// The HS256 secret test servers verify with: exactly the 32 bytes RFC 7518 §3.2 asks.
pub const SECRET: &[u8; 32] = b"auth-tests-hs256-secret-32-bytes";
/// Another valid secret, for tokens the servers must refuse.
pub const OTHER_SECRET: &[u8; 32] = b"another-secret-of-exactly-32-byt";
/// The API key of [`config`].
pub const API_KEY: &str = "api-key-for-the-auth-tests-0123456789";

/// `Config::default()` (the default namespace closed to anonymous connections, `chat` open
/// to them) with an HS256 verifier for [`SECRET`], the API key, and namespaces `news` and
/// `sports` with default options (for token holders only).
pub fn config() -> Config {
    let mut config = Config::default();
    let verifier = VerifierBuilder::hmac(Algorithm::Hs256, SECRET.as_slice()).build();
    config.auth.verifier = Some(Arc::new(verifier.expect("an HS256 verifier")));
    config.api_key = Some(API_KEY.into());
    for ns in ["news", "sports"] {
        config.hub.namespaces.insert(ns.to_owned(), NamespaceOptions::default());
    }
    config
}

/// [`config`] with a verifier allowing no clock skew, so a token's connection ends at `exp`.
pub fn strict_config() -> Config {
    let mut config = config();
    let verifier = VerifierBuilder::hmac(Algorithm::Hs256, SECRET.as_slice())
        .leeway(Duration::ZERO)
        .build()
        .expect("an HS256 verifier without leeway");
    config.auth.verifier = Some(Arc::new(verifier));
    config
}

/// [`config`] requiring credentials, in first-message mode with a `timeout` deadline.
pub fn first_message_config(timeout: Duration) -> Config {
    let mut config = config();
    config.auth.required = true;
    config.auth.first_message = true;
    config.auth.first_message_timeout = timeout;
    config
}

/// Claims for `user` valid from now for `ttl`, granting the given patterns.
pub fn claims(user: &str, ttl: Duration, channels: &[&str], publish: &[&str]) -> Claims {
    let mut claims = Claims::new(user, ttl, SystemTime::now());
    claims.channels = channels.iter().map(|&c| c.to_owned()).collect();
    claims.publish = publish.iter().map(|&p| p.to_owned()).collect();
    claims
}

/// `claims` signed with [`SECRET`].
pub fn sign(claims: &Claims) -> String {
    mint_hs256(SECRET, claims).expect("mint a token")
}

/// A token for `user`, valid for an hour.
pub fn token(user: &str, channels: &[&str], publish: &[&str]) -> String {
    sign(&claims(user, Duration::from_secs(3600), channels, publish))
}

/// A valid-looking token for `alice` signed with `secret`.
pub fn token_with(secret: &[u8]) -> String {
    let claims = claims("alice", Duration::from_secs(3600), &["*"], &["*"]);
    mint_hs256(secret, &claims).expect("mint a token")
}

/// A token that expired an hour ago, well past any leeway.
pub fn expired_token(user: &str) -> String {
    let issued = SystemTime::now() - Duration::from_secs(7200);
    sign(&Claims::new(user, Duration::from_secs(3600), issued))
}
