//! Reading a JWT's lifetime, to refresh it before it runs out. Nothing is verified: the
//! server does that; the client only wants to know when to ask for a new token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// When a token expires, and how long it was valid for.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Lifetime {
    /// `exp`, as a time.
    pub(crate) expires_at: SystemTime,
    /// `exp - iat` when the token has `iat`, else `exp - now`.
    pub(crate) length: Duration,
}

impl Lifetime {
    /// The token's lifetime, when it is a JWT (RFC 7519) whose payload has a numeric `exp`.
    pub(crate) fn of(token: &str, now: SystemTime) -> Option<Self> {
        let mut parts = token.split('.');
        let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
        // RFC 7515 §2: base64url without padding; tolerate padding anyway.
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let exp = claims.get("exp")?.as_f64()?;
        if !(exp.is_finite() && exp >= 0.0) {
            return None;
        }
        let expires_at = UNIX_EPOCH.checked_add(Duration::from_secs_f64(exp))?;
        let issued_at = claims
            .get("iat")
            .and_then(serde_json::Value::as_f64)
            .filter(|iat| iat.is_finite() && *iat >= 0.0)
            .and_then(|iat| UNIX_EPOCH.checked_add(Duration::from_secs_f64(iat)))
            .unwrap_or(now);
        let length = expires_at.duration_since(issued_at).unwrap_or(Duration::ZERO);
        Some(Self { expires_at, length })
    }

    /// When to refresh: `REFRESH_LEAD` before expiry, or a tenth of the lifetime before it
    /// for tokens shorter than ten leads, so a short token is not refreshed at birth.
    pub(crate) fn refresh_at(&self) -> SystemTime {
        let lead = REFRESH_LEAD.min(self.length / 10);
        self.expires_at.checked_sub(lead).unwrap_or(self.expires_at)
    }
}

/// How long before expiry a token is replaced.
const REFRESH_LEAD: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    fn token(payload: &str) -> String {
        format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn reads_exp_and_iat() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let life = Lifetime::of(&token(r#"{"sub":"a","iat":1000,"exp":4600}"#), now)
            .expect("a JWT with exp");
        assert_eq!(life.expires_at, UNIX_EPOCH + Duration::from_secs(4_600));
        assert_eq!(life.length, Duration::from_secs(3_600));
        assert_eq!(life.refresh_at(), UNIX_EPOCH + Duration::from_secs(4_570));
    }

    #[test]
    fn short_tokens_refresh_at_ninety_percent() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let life = Lifetime::of(&token(r#"{"exp":1100}"#), now).expect("a JWT with exp");
        assert_eq!(life.refresh_at(), UNIX_EPOCH + Duration::from_secs(1_090));
    }

    #[test]
    fn ignores_what_is_not_a_jwt_with_exp() {
        let now = SystemTime::now();
        assert_eq!(Lifetime::of("opaque-ticket", now), None);
        assert_eq!(Lifetime::of(&token(r#"{"sub":"a"}"#), now), None);
        assert_eq!(Lifetime::of(&token(r#"{"exp":"soon"}"#), now), None);
        assert_eq!(Lifetime::of("a.%%%.c", now), None);
        assert_eq!(Lifetime::of(&token(r#"{"exp":-5}"#), now), None);
    }
}
