//! Minting tokens, for the CLI's `switchboard token` and for tests.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;

use crate::claims::MAX_USER_LEN;
use crate::{Claims, Error};

/// Signs `claims` as an HS256 JWT with `secret`, for a server verifying with
/// [`VerifierBuilder::hmac`](crate::VerifierBuilder::hmac)`(Algorithm::Hs256, secret)`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use switchboard_auth::{Algorithm, Claims, VerifierBuilder, mint_hs256};
///
/// let secret = b"an example secret of 32 bytes!!!";
/// let now = SystemTime::now();
/// let mut claims = Claims::new("alice", Duration::from_secs(600), now);
/// claims.channels = vec!["chat:*".into()];
/// let token = mint_hs256(secret, &claims)?;
///
/// let verifier = VerifierBuilder::hmac(Algorithm::Hs256, secret.as_slice()).build()?;
/// assert_eq!(verifier.verify(&token, now)?, claims);
/// # Ok::<(), switchboard_auth::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::WeakSecret`] for a secret under 32 bytes, [`Error::InvalidKey`] for one that is
/// a PEM key (the verifier refuses both), [`Error::InvalidClaim`] for an empty or over-long
/// `sub`.
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> Result<String, Error> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(Error::WeakSecret { len: secret.len(), min: MIN_SECRET_LEN });
    }
    if secret.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Err(Error::InvalidKey("hmac secret is a pem key"));
    }
    if claims.sub.is_empty() || claims.sub.len() > MAX_USER_LEN {
        return Err(Error::InvalidClaim("sub"));
    }
    // `info` is the only free-form claim; a `serde_json::Value` always serializes.
    let payload = serde_json::to_vec(claims).map_err(|_| Error::InvalidClaim("info"))?;
    let mut token = String::with_capacity(HEADER.len() + 2 + payload.len() * 4 / 3 + 48);
    URL_SAFE_NO_PAD.encode_string(HEADER, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signer = (DEFAULT_PROVIDER.signer_factory)(
        &jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|_| Error::InvalidKey("hmac secret refused"))?;
    let signature =
        signer.try_sign(token.as_bytes()).map_err(|_| Error::InvalidKey("hmac secret refused"))?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

const HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;
const MIN_SECRET_LEN: usize = 32;

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn refuses_weak_secrets_and_bad_users() {
        let claims = Claims::new("u", Duration::from_secs(1), UNIX_EPOCH);
        assert_eq!(mint_hs256(&[1; 31], &claims), Err(Error::WeakSecret { len: 31, min: 32 }));
        let pem = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n";
        assert!(matches!(mint_hs256(pem, &claims), Err(Error::InvalidKey(_))));
        let mut bad = claims;
        bad.sub = String::new();
        assert_eq!(mint_hs256(&[1; 32], &bad), Err(Error::InvalidClaim("sub")));
        bad.sub = "x".repeat(MAX_USER_LEN + 1);
        assert_eq!(mint_hs256(&[1; 32], &bad), Err(Error::InvalidClaim("sub")));
    }

    #[test]
    fn token_has_three_parts_and_the_standard_header() {
        let claims = Claims::new("u", Duration::from_secs(1), UNIX_EPOCH);
        let token = mint_hs256(&[1; 32], &claims).unwrap();
        let parts: Vec<_> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[0]).unwrap(), HEADER);
        // HMAC-SHA256: 32 bytes, 43 base64url characters.
        assert_eq!(parts[2].len(), 43);
    }
}
