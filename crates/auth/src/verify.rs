//! JWT verification: keys from configuration, the token's algorithm pinned to the key.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::Error;
use crate::claims::{Claims, unix_seconds};

/// A signature algorithm Switchboard accepts (RFC 7518 §3.1), named as in a token's `alg`.
///
/// `none` is not one of them, by construction.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC with SHA-256; the secret must be at least 32 bytes.
    Hs256,
    /// HMAC with SHA-384; the secret must be at least 48 bytes.
    Hs384,
    /// HMAC with SHA-512; the secret must be at least 64 bytes.
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256; the key must be at least 2048 bits.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl Algorithm {
    /// Every accepted algorithm.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::Hs256,
        Algorithm::Hs384,
        Algorithm::Hs512,
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
    ];

    /// The name in a token's `alg` header: `HS256`, `RS256`, `ES256`, `EdDSA`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// Whether this is an HMAC algorithm, verified with a shared secret rather than a public
    /// key.
    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512)
    }

    /// RFC 7518 §3.2: an HMAC key at least as long as the hash output.
    fn min_secret_len(self) -> usize {
        match self {
            Algorithm::Hs384 => 48,
            Algorithm::Hs512 => 64,
            _ => 32,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::Hs384 => jsonwebtoken::Algorithm::HS384,
            Algorithm::Hs512 => jsonwebtoken::Algorithm::HS512,
            Algorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::Rs384 => jsonwebtoken::Algorithm::RS384,
            Algorithm::Rs512 => jsonwebtoken::Algorithm::RS512,
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::Es384 => jsonwebtoken::Algorithm::ES384,
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    /// Parses the exact `alg` name (case-sensitive, RFC 7515 §4.1.1).
    fn from_str(s: &str) -> Result<Self, Error> {
        Algorithm::ALL.into_iter().find(|alg| alg.as_str() == s).ok_or(Error::UnsupportedAlgorithm)
    }
}

/// Checks tokens against the configured key(s), issuer, audience and the clock.
///
/// Built with a [`VerifierBuilder`]; cheap to share behind an `Arc` (it is `Send + Sync`).
///
/// The token's `alg` header only selects among what the configuration allows: a verifier
/// for a secret accepts only its HMAC algorithm, one for a public key only that key's
/// algorithm, so `none`, an HMAC token "signed" with a public key, or a key of one family
/// used for another are refused with [`Error::WrongAlgorithm`]. Headers that carry keys
/// (`jwk`, `jku`, `x5u`, `x5c`) are ignored; a `crit` header is refused (RFC 7515 §4.1.11).
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Keys,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    max_token_len: usize,
}

impl Verifier {
    /// Verifies `token` at time `now` and returns its claims.
    ///
    /// Checks, in order: size and shape, `alg` against the key, the signature, the claim types
    /// (`sub` and `exp` required), `iss` and `aud` when configured, then `exp` and `nbf` with
    /// the leeway. Nothing from the claims is read before the signature verifies.
    ///
    /// # Errors
    ///
    /// A token refusal: [`Error::Malformed`] to [`Error::InvalidClaim`], never a
    /// configuration error.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, Error> {
        if token.len() > self.max_token_len {
            return Err(Error::Malformed);
        }
        let (message, signature) = token.rsplit_once('.').ok_or(Error::Malformed)?;
        let (header, payload) = message.split_once('.').ok_or(Error::Malformed)?;
        if payload.contains('.') {
            return Err(Error::Malformed);
        }
        let header: Header = serde_json::from_slice(&b64(header)?).map_err(|_| Error::Malformed)?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: we implement no extension, so none may be critical.
            return Err(Error::Malformed);
        }
        let alg: Algorithm = header.alg.parse().map_err(|_| Error::WrongAlgorithm)?;
        let key = self.keys.select(header.kid.as_deref())?;
        if !key.allows(alg) {
            return Err(Error::WrongAlgorithm);
        }
        let signature = b64(signature)?;
        // The key was checked against its algorithms when the verifier was built.
        let verifier = (DEFAULT_PROVIDER.verifier_factory)(&alg.to_jwt(), &key.key)
            .map_err(|_| Error::BadSignature)?;
        verifier.verify(message.as_bytes(), &signature).map_err(|_| Error::BadSignature)?;

        let claims: Map<String, Value> =
            serde_json::from_slice(&b64(payload)?).map_err(|_| Error::Malformed)?;
        let claims = Claims::from_map(claims)?;
        self.check(&claims, now)?;
        Ok(claims)
    }

    /// The clock-skew allowance applied to `exp` and `nbf`.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// The key ids this verifier knows, for a start-up log line; empty for a single key
    /// without one.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.entries().filter_map(|k| k.kid.as_deref())
    }

    fn check(&self, claims: &Claims, now: SystemTime) -> Result<(), Error> {
        if !self.issuers.is_empty() {
            let iss = claims.iss.as_ref().ok_or(Error::MissingClaim("iss"))?;
            if !self.issuers.contains(iss) {
                return Err(Error::WrongIssuer);
            }
        }
        if self.audiences.is_empty() {
            // RFC 7519 §4.1.3: a token for named audiences is not for a server with none.
            if !claims.aud.is_empty() {
                return Err(Error::WrongAudience);
            }
        } else if claims.aud.is_empty() {
            return Err(Error::MissingClaim("aud"));
        } else if !claims.aud.iter().any(|aud| self.audiences.contains(aud)) {
            return Err(Error::WrongAudience);
        }
        // RFC 7519 §4.1.4: valid only before `exp`.
        if claims.is_expired_at(now, self.leeway) {
            return Err(Error::Expired);
        }
        // RFC 7519 §4.1.5: valid only from `nbf` on.
        let (now, leeway) = (unix_seconds(now), self.leeway.as_secs());
        if claims.nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
            return Err(Error::NotYetValid);
        }
        Ok(())
    }
}

/// Configures a [`Verifier`]: one key source, then optional checks.
///
/// ```
/// use std::time::Duration;
/// use switchboard_auth::{Algorithm, VerifierBuilder};
///
/// let verifier = VerifierBuilder::hmac(Algorithm::Hs256, [7u8; 32])
///     .issuer("https://auth.example.com")
///     .audience("switchboard")
///     .leeway(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(verifier.leeway(), Duration::from_secs(10));
///
/// let short = VerifierBuilder::hmac(Algorithm::Hs256, *b"hunter2").build();
/// assert!(short.is_err());
/// # Ok::<(), switchboard_auth::Error>(())
/// ```
///
/// `Debug` never shows key material.
#[derive(Clone)]
pub struct VerifierBuilder {
    source: Source,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    max_token_len: usize,
    allow_short_secret: bool,
}

impl VerifierBuilder {
    /// Tokens signed with a shared `secret` and exactly `alg`, which must be HMAC.
    ///
    /// The secret's bytes are used as they are (decode base64 or hex before). It must be
    /// at least as long as the hash (32, 48, 64 bytes for HS256, HS384, HS512; RFC 7518 §3.2)
    /// and must not be a PEM key: a public key used as an HMAC secret lets anyone who has
    /// the public key sign tokens.
    pub fn hmac(alg: Algorithm, secret: impl Into<Vec<u8>>) -> Self {
        Self::new(Source::Hmac(alg, secret.into()))
    }

    /// Tokens signed with exactly `alg` (RS*, ES*, EdDSA) and verified with the public key
    /// in `pem` (`-----BEGIN PUBLIC KEY-----`, or `BEGIN RSA PUBLIC KEY` for RSA).
    ///
    /// An ES256 key must be on P-256, an ES384 key on P-384; RSA keys need 2048 bits or more.
    pub fn pem(alg: Algorithm, pem: impl Into<Vec<u8>>) -> Self {
        Self::new(Source::Pem(alg, pem.into()))
    }

    /// Tokens verified with a key from a JSON Web Key Set (RFC 7517 §5), chosen by the
    /// token's `kid`. A token without `kid` is accepted only when the set holds one key.
    ///
    /// Each key's `alg` is honoured when present; without it the key type decides (`RSA`:
    /// RS256/384/512; `EC` P-256: ES256; `EC` P-384: ES384; `OKP` Ed25519: EdDSA; `oct`: the
    /// HMAC algorithms its length allows). Keys for encryption (`use: enc`, or `key_ops`
    /// without `verify`) and of unsupported types or algorithms (PS256, P-521, …) are skipped.
    pub fn jwks(json: impl Into<Vec<u8>>) -> Self {
        Self::new(Source::Jwks(json.into()))
    }

    /// Requires `iss` to be `issuer`, or one of the issuers given by earlier calls.
    /// Default: `iss` is not checked.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Requires `aud` to name `audience`, or one of the audiences given by earlier calls.
    /// Default: none, and then tokens that carry an `aud` are refused (RFC 7519 §4.1.3).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Clock-skew allowance for `exp` and `nbf`, in whole seconds. Default 5 s: enough for
    /// NTP-synchronised hosts; more lets an expired token live longer.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Longest token accepted, in bytes. Default 8 KiB, a common per-header limit of
    /// proxies; raise it for tokens with long channel lists.
    pub fn max_token_len(mut self, max: usize) -> Self {
        self.max_token_len = max;
        self
    }

    /// Accepts HMAC secrets shorter than their hash output (never empty ones). Tests and
    /// demos only: a short secret can be found by brute force offline from one token.
    pub fn danger_allow_short_hmac_secret(mut self) -> Self {
        self.allow_short_secret = true;
        self
    }

    /// Checks the key material and builds the verifier.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for unusable key material or a key that does not fit its
    /// algorithm, [`Error::WeakSecret`] for a short HMAC secret.
    pub fn build(self) -> Result<Verifier, Error> {
        let keys = match &self.source {
            Source::Hmac(alg, secret) => Keys::Single(self.hmac_key(*alg, secret)?),
            Source::Pem(alg, pem) => Keys::Single(pem_key(*alg, pem)?),
            Source::Jwks(json) => Keys::Set(self.jwks_keys(json)?),
        };
        Ok(Verifier {
            keys,
            issuers: self.issuers,
            audiences: self.audiences,
            leeway: self.leeway,
            max_token_len: self.max_token_len,
        })
    }

    fn new(source: Source) -> Self {
        VerifierBuilder {
            source,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            allow_short_secret: false,
        }
    }

    fn hmac_key(&self, alg: Algorithm, secret: &[u8]) -> Result<Key, Error> {
        if !alg.is_hmac() {
            return Err(Error::InvalidKey("a secret needs an HS256, HS384 or HS512 algorithm"));
        }
        if secret.trim_ascii_start().starts_with(b"-----BEGIN") {
            return Err(Error::InvalidKey("hmac secret is a pem key"));
        }
        self.check_secret_len(alg, secret.len())?;
        Ok(Key::new(None, alg.bit(), DecodingKey::from_secret(secret)))
    }

    fn check_secret_len(&self, alg: Algorithm, len: usize) -> Result<(), Error> {
        let min = alg.min_secret_len();
        if len == 0 || (len < min && !self.allow_short_secret) {
            return Err(Error::WeakSecret { len, min });
        }
        Ok(())
    }

    fn jwks_keys(&self, json: &[u8]) -> Result<Vec<Key>, Error> {
        let set: JwkSet = serde_json::from_slice(json)
            .map_err(|_| Error::InvalidKey("jwks is not a json web key set"))?;
        let mut keys: Vec<Key> = Vec::with_capacity(set.keys.len());
        for jwk in &set.keys {
            let Some(key) = self.jwk_key(jwk)? else { continue };
            if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) {
                return Err(Error::InvalidKey("jwks holds two keys with the same kid"));
            }
            keys.push(key);
        }
        match keys.len() {
            0 => Err(Error::InvalidKey("jwks holds no usable signing key")),
            1 => Ok(keys),
            _ if keys.iter().any(|k| k.kid.is_none()) => {
                Err(Error::InvalidKey("jwks with several keys needs a kid on each"))
            }
            _ => Ok(keys),
        }
    }

    /// The key for one JWK, `None` for a key this verifier does not use.
    fn jwk_key(&self, jwk: &Jwk) -> Result<Option<Key>, Error> {
        let common = &jwk.common;
        // RFC 7517 §4.2, §4.3: skip keys meant for encryption.
        let for_signatures = matches!(common.public_key_use, None | Some(PublicKeyUse::Signature))
            && (common.key_operations.as_ref())
                .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
        if !for_signatures {
            return Ok(None);
        }
        let declared = match common.key_algorithm {
            None => None,
            Some(alg) => match jwk_algorithm(alg) {
                Some(alg) => Some(alg),
                None => return Ok(None),
            },
        };
        let by_type: &[Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => &[Algorithm::Rs256, Algorithm::Rs384, Algorithm::Rs512],
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => &[Algorithm::Es256],
                EllipticCurve::P384 => &[Algorithm::Es384],
                _ => return Ok(None),
            },
            AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                EllipticCurve::Ed25519 => &[Algorithm::EdDsa],
                _ => return Ok(None),
            },
            AlgorithmParameters::OctetKey(_) => {
                &[Algorithm::Hs256, Algorithm::Hs384, Algorithm::Hs512]
            }
            _ => return Ok(None),
        };
        let mut algs: Vec<Algorithm> = match declared {
            Some(alg) if by_type.contains(&alg) => vec![alg],
            Some(_) => return Err(Error::InvalidKey("jwk alg does not fit its key type")),
            None => by_type.to_vec(),
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|_| Error::InvalidKey("jwk key material is not valid base64url"))?;
        match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => {
                let bad = |_| Error::InvalidKey("jwk key material is not valid base64url");
                check_rsa(
                    &URL_SAFE_NO_PAD.decode(&p.n).map_err(bad)?,
                    &URL_SAFE_NO_PAD.decode(&p.e).map_err(bad)?,
                )?;
            }
            AlgorithmParameters::OctetKey(_) => {
                let len = key.try_get_as_bytes().map_or(0, <[u8]>::len);
                if declared.is_none() {
                    // Without `alg`, allow the HMACs this secret is long enough for.
                    algs.retain(|alg| len >= alg.min_secret_len() || self.allow_short_secret);
                }
                let first = algs.first().copied().unwrap_or(Algorithm::Hs256);
                self.check_secret_len(first, len)?;
            }
            _ => {}
        }
        check_usable(&algs, &key)?;
        let bits = algs.iter().fold(0, |bits, alg| bits | alg.bit());
        Ok(Some(Key::new(common.key_id.clone(), bits, key)))
    }
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Hmac(alg, _) => format!("hmac({alg}, [redacted])"),
            Source::Pem(alg, _) => format!("pem({alg})"),
            Source::Jwks(_) => "jwks".to_owned(),
        };
        f.debug_struct("VerifierBuilder")
            .field("source", &source)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .field("max_token_len", &self.max_token_len)
            .field("allow_short_secret", &self.allow_short_secret)
            .finish()
    }
}

#[derive(Clone)]
enum Source {
    Hmac(Algorithm, Vec<u8>),
    Pem(Algorithm, Vec<u8>),
    Jwks(Vec<u8>),
}

#[derive(Clone, Debug)]
enum Keys {
    /// A secret or PEM key: the token's `kid` plays no part.
    Single(Key),
    /// A JWKS: keys selected by `kid`.
    Set(Vec<Key>),
}

impl Keys {
    fn select(&self, kid: Option<&str>) -> Result<&Key, Error> {
        match (self, kid) {
            (Keys::Single(key), _) => Ok(key),
            (Keys::Set(keys), Some(kid)) => {
                keys.iter().find(|k| k.kid.as_deref() == Some(kid)).ok_or(Error::UnknownKeyId)
            }
            (Keys::Set(keys), None) => match keys.as_slice() {
                [only] => Ok(only),
                _ => Err(Error::UnknownKeyId),
            },
        }
    }

    fn entries(&self) -> impl Iterator<Item = &Key> {
        let keys = match self {
            Keys::Single(key) => std::slice::from_ref(key),
            Keys::Set(keys) => keys.as_slice(),
        };
        keys.iter()
    }
}

/// One verification key and the algorithms it may verify.
#[derive(Clone, Debug)]
struct Key {
    kid: Option<String>,
    /// A bit per [`Algorithm`].
    algs: u16,
    key: DecodingKey,
}

impl Key {
    fn new(kid: Option<String>, algs: u16, key: DecodingKey) -> Self {
        Key { kid, algs, key }
    }

    fn allows(&self, alg: Algorithm) -> bool {
        self.algs & alg.bit() != 0
    }
}

/// The token's JOSE header: only what we read. Unknown members are ignored.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

fn pem_key(alg: Algorithm, pem: &[u8]) -> Result<Key, Error> {
    let key = match alg {
        Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512 => {
            return Err(Error::InvalidKey("a pem key needs an RS, ES or EdDSA algorithm"));
        }
        Algorithm::Rs256 | Algorithm::Rs384 | Algorithm::Rs512 => {
            let key = DecodingKey::from_rsa_pem(pem)
                .map_err(|_| Error::InvalidKey("not an rsa public key pem"))?;
            let der = key.try_get_as_bytes().map_err(|_| Error::InvalidKey("not an rsa pem"))?;
            // Refuses private keys, which the PEM parser lets through.
            let (n, e) = (DEFAULT_PROVIDER.key_utils.rsa_pub_components_from_public_key)(der)
                .map_err(|_| Error::InvalidKey("not an rsa public key pem"))?;
            check_rsa(&n, &e)?;
            DecodingKey::from_rsa_raw_components(&n, &e)
        }
        Algorithm::Es256 | Algorithm::Es384 => {
            let key = DecodingKey::from_ec_pem(pem)
                .map_err(|_| Error::InvalidKey("not an ec public key pem"))?;
            // An uncompressed SEC1 point: 0x04, then x and y of 32 (P-256) or 48 (P-384) bytes.
            let fits = match key.try_get_as_bytes().map_or(0, <[u8]>::len) {
                65 => alg == Algorithm::Es256,
                97 => alg == Algorithm::Es384,
                _ => false,
            };
            if !fits {
                return Err(Error::InvalidKey("ec key is not on the algorithm's curve"));
            }
            key
        }
        Algorithm::EdDsa => DecodingKey::from_ed_pem(pem)
            .map_err(|_| Error::InvalidKey("not an ed25519 public key pem"))?,
    };
    check_usable(&[alg], &key)?;
    Ok(Key::new(None, alg.bit(), key))
}

/// RFC 7518 §3.3: RSA keys of 2048 bits or more; and within what the `rsa` crate verifies
/// with (at most 4096 bits, an odd exponent from 3 to 2^33 - 1), so a key that would fail
/// every token fails at start-up instead.
fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), Error> {
    let n = strip_zeros(n);
    let bits = n.first().map_or(0, |&top| (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize));
    if bits < 2048 {
        return Err(Error::InvalidKey("rsa key shorter than 2048 bits"));
    }
    if bits > 4096 {
        return Err(Error::InvalidKey("rsa key longer than 4096 bits"));
    }
    let e = strip_zeros(e);
    let e = match e.len() {
        1..=8 => e.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)),
        _ => 0,
    };
    if !(3..1 << 33).contains(&e) || e % 2 == 0 {
        return Err(Error::InvalidKey("rsa exponent out of range"));
    }
    Ok(())
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// Builds a verifier for each algorithm now, so a bad key fails at start-up, not per token.
fn check_usable(algs: &[Algorithm], key: &DecodingKey) -> Result<(), Error> {
    for alg in algs {
        (DEFAULT_PROVIDER.verifier_factory)(&alg.to_jwt(), key)
            .map_err(|_| Error::InvalidKey("key cannot verify its algorithm"))?;
    }
    Ok(())
}

fn jwk_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::Hs256,
        KeyAlgorithm::HS384 => Algorithm::Hs384,
        KeyAlgorithm::HS512 => Algorithm::Hs512,
        KeyAlgorithm::RS256 => Algorithm::Rs256,
        KeyAlgorithm::RS384 => Algorithm::Rs384,
        KeyAlgorithm::RS512 => Algorithm::Rs512,
        KeyAlgorithm::ES256 => Algorithm::Es256,
        KeyAlgorithm::ES384 => Algorithm::Es384,
        KeyAlgorithm::EdDSA => Algorithm::EdDsa,
        _ => return None,
    })
}

/// Strict base64url without padding (RFC 7515 §2).
fn b64(part: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| Error::Malformed)
}

const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);
const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str());
        }
        for bad in ["none", "None", "hs256", "PS256", "HS1", ""] {
            assert_eq!(bad.parse::<Algorithm>(), Err(Error::UnsupportedAlgorithm), "{bad}");
        }
    }

    #[test]
    fn algorithm_bits_are_distinct() {
        let all = Algorithm::ALL.iter().fold(0u16, |bits, alg| {
            assert_eq!(bits & alg.bit(), 0);
            bits | alg.bit()
        });
        assert_eq!(all.count_ones(), 9);
    }

    #[test]
    fn checks_rsa_sizes_and_exponents() {
        let f4 = [1, 0, 1];
        let mut n = vec![0u8; 257];
        n[1] = 0x80;
        assert_eq!(check_rsa(&n, &f4), Ok(()));
        n[1] = 0;
        n[2] = 0xff;
        assert!(check_rsa(&n, &f4).is_err(), "2047 bits");
        assert!(check_rsa(&[], &f4).is_err());
        assert_eq!(check_rsa(&[0xff; 512], &f4), Ok(()));
        assert!(check_rsa(&[0xff; 513], &f4).is_err(), "4104 bits");
        let n = [0xff; 256];
        assert_eq!(check_rsa(&n, &[3]), Ok(()));
        assert_eq!(check_rsa(&n, &[0, 0, 1, 0, 1]), Ok(()));
        for bad_e in [&[][..], &[1], &[2], &[1, 0, 0], &[2, 0, 0, 0, 1], &[1; 9]] {
            assert!(check_rsa(&n, bad_e).is_err(), "{bad_e:?}");
        }
    }

    #[test]
    fn builder_debug_hides_the_secret() {
        let builder =
            VerifierBuilder::hmac(Algorithm::Hs256, *b"sup3r-s3cret-value-0123456789abcdef");
        let debug = format!("{builder:?}");
        assert!(!debug.contains("sup3r"), "{debug}");
        let verifier = builder.build().unwrap();
        assert!(!format!("{verifier:?}").contains("sup3r"));
    }

    #[test]
    fn verifier_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Verifier>();
    }
}
