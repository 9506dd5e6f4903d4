//! The claims Switchboard reads from a token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::Error;

/// Longest user id (`sub`), in bytes: the same bound as a channel name, so a user-limited
/// channel can always name its user.
pub const MAX_USER_LEN: usize = 255;

/// What a verified token (or a redeemed ticket) says about its holder.
///
/// Unknown claims are ignored. Deserializing applies the same type rules as
/// [`Verifier::verify`](crate::Verifier::verify) (`sub` present, non-empty, at most
/// [`MAX_USER_LEN`] bytes; `exp` a NumericDate) but checks no time, issuer or audience: only the
/// verifier does that.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use switchboard_auth::Claims;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let mut claims = Claims::new("alice", Duration::from_secs(3600), now);
/// claims.channels = vec!["chat:*".into()];
/// assert_eq!(claims.exp, 1_700_003_600);
/// assert_eq!(claims.expires_at(), now + Duration::from_secs(3600));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Claims {
    /// The user id. Required, non-empty, at most [`MAX_USER_LEN`] bytes.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch. Required.
    pub exp: u64,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch. Informational: not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audiences; a token may carry one string or a list. Empty when absent. Serialized as a
    /// string when there is exactly one.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Free-form data about the user, shown to others in presence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
    /// Channel patterns the user may subscribe to and read presence and history of. See
    /// [`Permissions`](crate::Permissions) for the syntax.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Channel patterns the user may publish to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
}

/// Seconds to a moment later than any token's expiry that matters: about 10,000 years after
/// the epoch, representable on every platform's clock.
const FAR_FUTURE_SECS: u64 = 315_569_520_000;

impl Claims {
    /// Claims for `sub`, issued at `now` and expiring `ttl` later, with no channels: what the
    /// CLI's `switchboard token` starts from before adding `channels` and `publish`.
    ///
    /// Times are whole seconds: `iat` rounds `now` down, `exp` rounds `now + ttl` down.
    pub fn new(sub: impl Into<String>, ttl: Duration, now: SystemTime) -> Self {
        let iat = unix_seconds(now);
        Claims {
            sub: sub.into(),
            // A lifetime past the end of representable time saturates instead of panicking.
            exp: iat.saturating_add(ttl.as_secs()),
            nbf: None,
            iat: Some(iat),
            iss: None,
            aud: Vec::new(),
            info: None,
            channels: Vec::new(),
            publish: Vec::new(),
        }
    }

    /// The user id: `sub`.
    pub fn user(&self) -> &str {
        &self.sub
    }

    /// When the token expires, not counting the verifier's leeway: the moment a live
    /// connection without a refreshed token should be closed (add
    /// [`Verifier::leeway`](crate::Verifier::leeway) to match the verifier exactly).
    pub fn expires_at(&self) -> SystemTime {
        // `exp` comes from a token: one far beyond what the platform's clock can represent
        // is clamped, never a panic.
        UNIX_EPOCH + Duration::from_secs(self.exp.min(FAR_FUTURE_SECS))
    }

    /// Whether the token has expired at `now`, allowing `leeway` for clock skew: the rule
    /// [`Verifier::verify`](crate::Verifier::verify) applies (RFC 7519 §4.1.4), for checking
    /// claims that come from a ticket, or a live connection's claims later on.
    pub fn is_expired_at(&self, now: SystemTime, leeway: Duration) -> bool {
        unix_seconds(now) >= self.exp.saturating_add(leeway.as_secs())
    }

    /// Checks the claim types and builds the claims from a decoded JSON object.
    pub(crate) fn from_map(mut map: Map<String, Value>) -> Result<Self, Error> {
        let sub = match map.remove("sub") {
            None | Some(Value::Null) => return Err(Error::MissingClaim("sub")),
            Some(Value::String(sub)) if !sub.is_empty() && sub.len() <= MAX_USER_LEN => sub,
            Some(_) => return Err(Error::InvalidClaim("sub")),
        };
        let exp = match map.remove("exp") {
            None | Some(Value::Null) => return Err(Error::MissingClaim("exp")),
            // An `exp` with a fraction rounds down: the token expires no later than it says.
            Some(v) => numeric_date(&v, f64::floor).ok_or(Error::InvalidClaim("exp"))?,
        };
        // A `nbf` with a fraction rounds up: the token is valid no earlier than it says.
        let nbf = optional_date(map.remove("nbf"), f64::ceil, "nbf")?;
        let iat = optional_date(map.remove("iat"), f64::floor, "iat")?;
        let iss = match map.remove("iss") {
            None | Some(Value::Null) => None,
            Some(Value::String(iss)) => Some(iss),
            Some(_) => return Err(Error::InvalidClaim("iss")),
        };
        let aud = match map.remove("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(aud)) => vec![aud],
            Some(v) => strings(v).ok_or(Error::InvalidClaim("aud"))?,
        };
        let info = map.remove("info").filter(|v| !v.is_null());
        let channels = optional_strings(map.remove("channels"), "channels")?;
        let publish = optional_strings(map.remove("publish"), "publish")?;
        Ok(Claims { sub, exp, nbf, iat, iss, aud, info, channels, publish })
    }
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::deserialize(deserializer)?;
        Claims::from_map(map).map_err(serde::de::Error::custom)
    }
}

/// Whole seconds since the Unix epoch; times before it count as 0.
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A NumericDate (RFC 7519 §2): a non-negative JSON number of seconds, fractions allowed.
fn numeric_date(v: &Value, round: fn(f64) -> f64) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = round(v.as_f64()?);
    // `u64::MAX as f64` rounds up to 2^64, so `<` keeps the cast exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

fn optional_date(
    v: Option<Value>,
    round: fn(f64) -> f64,
    name: &'static str,
) -> Result<Option<u64>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => numeric_date(&v, round).map(Some).ok_or(Error::InvalidClaim(name)),
    }
}

fn optional_strings(v: Option<Value>, name: &'static str) -> Result<Vec<String>, Error> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => strings(v).ok_or(Error::InvalidClaim(name)),
    }
}

fn strings(v: Value) -> Option<Vec<String>> {
    let Value::Array(items) = v else { return None };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn one_or_many<S: serde::Serializer>(aud: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => serializer.serialize_str(one),
        many => many.serialize(serializer),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Claims, Error> {
        let Value::Object(map) = v else { panic!("not an object") };
        Claims::from_map(map)
    }

    #[test]
    fn reads_every_claim_and_ignores_unknown_ones() {
        let claims = parse(json!({
            "sub": "alice", "exp": 100, "nbf": 10, "iat": 5, "iss": "me", "aud": ["a", "b"],
            "info": {"name": "Alice"}, "channels": ["chat:*"], "publish": ["chat:lobby"],
            "scope": "whatever", "roles": [1, 2]
        }))
        .unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.user(), "alice");
        assert_eq!((claims.exp, claims.nbf, claims.iat), (100, Some(10), Some(5)));
        assert_eq!(claims.iss.as_deref(), Some("me"));
        assert_eq!(claims.aud, ["a", "b"]);
        assert_eq!(claims.info, Some(json!({"name": "Alice"})));
        assert_eq!(claims.channels, ["chat:*"]);
        assert_eq!(claims.publish, ["chat:lobby"]);
    }

    #[test]
    fn single_audience_string_becomes_a_list_and_round_trips() {
        let claims = parse(json!({"sub": "u", "exp": 1, "aud": "switchboard"})).unwrap();
        assert_eq!(claims.aud, ["switchboard"]);
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["aud"], json!("switchboard"));
        let back: Claims = serde_json::from_value(json).unwrap();
        assert_eq!(back, claims);
    }

    #[test]
    fn fractional_dates_round_towards_the_safe_side() {
        let claims = parse(json!({"sub": "u", "exp": 10.9, "nbf": 5.1})).unwrap();
        assert_eq!(claims.exp, 10);
        assert_eq!(claims.nbf, Some(6));
    }

    #[test]
    fn rejects_missing_and_invalid_claims() {
        assert_eq!(parse(json!({"exp": 1})), Err(Error::MissingClaim("sub")));
        assert_eq!(parse(json!({"sub": null, "exp": 1})), Err(Error::MissingClaim("sub")));
        assert_eq!(parse(json!({"sub": "u"})), Err(Error::MissingClaim("exp")));
        assert_eq!(parse(json!({"sub": "", "exp": 1})), Err(Error::InvalidClaim("sub")));
        assert_eq!(parse(json!({"sub": 7, "exp": 1})), Err(Error::InvalidClaim("sub")));
        let long = "x".repeat(MAX_USER_LEN + 1);
        assert_eq!(parse(json!({"sub": long, "exp": 1})), Err(Error::InvalidClaim("sub")));
        let longest = "x".repeat(MAX_USER_LEN);
        assert!(parse(json!({"sub": longest, "exp": 1})).is_ok());
        assert_eq!(parse(json!({"sub": "u", "exp": "1"})), Err(Error::InvalidClaim("exp")));
        assert_eq!(parse(json!({"sub": "u", "exp": -1})), Err(Error::InvalidClaim("exp")));
        assert_eq!(parse(json!({"sub": "u", "exp": 1e300})), Err(Error::InvalidClaim("exp")));
        assert_eq!(
            parse(json!({"sub": "u", "exp": 1, "nbf": "x"})),
            Err(Error::InvalidClaim("nbf"))
        );
        assert_eq!(parse(json!({"sub": "u", "exp": 1, "iss": 3})), Err(Error::InvalidClaim("iss")));
        assert_eq!(
            parse(json!({"sub": "u", "exp": 1, "aud": [1]})),
            Err(Error::InvalidClaim("aud"))
        );
        assert_eq!(
            parse(json!({"sub": "u", "exp": 1, "channels": "chat:*"})),
            Err(Error::InvalidClaim("channels"))
        );
        assert_eq!(
            parse(json!({"sub": "u", "exp": 1, "publish": [null]})),
            Err(Error::InvalidClaim("publish"))
        );
    }

    #[test]
    fn new_sets_whole_second_times() {
        let now = UNIX_EPOCH + Duration::from_millis(1_000_500);
        let claims = Claims::new("bob", Duration::from_secs(60), now);
        assert_eq!((claims.iat, claims.exp), (Some(1000), 1060));
        assert!(claims.channels.is_empty() && claims.publish.is_empty());
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }

    #[test]
    fn expiry_is_strict_and_leeway_extends_it() {
        let claims = Claims::new("u", Duration::from_secs(10), UNIX_EPOCH);
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert!(!claims.is_expired_at(at(9), Duration::ZERO));
        assert!(claims.is_expired_at(at(10), Duration::ZERO));
        assert!(!claims.is_expired_at(at(14), Duration::from_secs(5)));
        assert!(claims.is_expired_at(at(15), Duration::from_secs(5)));
    }
}

#[cfg(test)]
mod overflow_tests {
    use super::*;

    #[test]
    fn extreme_times_saturate() {
        let now = SystemTime::now();
        let claims = Claims::new("alice", Duration::from_secs(u64::MAX), now);
        assert_eq!(claims.exp, u64::MAX);
        assert!(claims.expires_at() > now);
        assert!(!claims.is_expired_at(now, Duration::ZERO));
    }
}
