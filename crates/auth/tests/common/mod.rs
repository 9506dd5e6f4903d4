//! Keys, signing and token crafting shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use serde_json::{Value, json};
use switchboard_auth::{Algorithm, VerifierBuilder};

/// The tests' "now": 2023-11-14T22:13:20Z.
pub const NOW_SECS: u64 = 1_700_000_000;

pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub const SECRET_32: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
pub const SECRET_48: &[u8; 48] = b"0123456789abcdef0123456789abcdef0123456789abcdef";
pub const SECRET_64: &[u8; 64] =
    b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A file under `tests/keys/`.
pub fn key_file(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Signing material: a secret, or the name of a private-key PEM under `tests/keys/`.
#[derive(Clone, Copy, Debug)]
pub enum Signing {
    Secret(&'static [u8]),
    Pem(&'static str),
}

impl Signing {
    fn encoding_key(self, alg: Algorithm) -> EncodingKey {
        match self {
            Signing::Secret(secret) => EncodingKey::from_secret(secret),
            Signing::Pem(name) => {
                let pem = key_file(name);
                match alg {
                    Algorithm::Rs256 | Algorithm::Rs384 | Algorithm::Rs512 => {
                        EncodingKey::from_rsa_pem(&pem)
                    }
                    Algorithm::Es256 | Algorithm::Es384 => EncodingKey::from_ec_pem(&pem),
                    Algorithm::EdDsa => EncodingKey::from_ed_pem(&pem),
                    _ => panic!("no pem for {alg}"),
                }
                .expect("a private key pem")
            }
        }
    }
}

/// One algorithm's test setup: the key that signs, a different key of the same kind, and the
/// verifier configuration for the first.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub alg: Algorithm,
    pub signing: Signing,
    pub other: Signing,
    /// Secret or public-key PEM file the verifier is configured with.
    pub verifying: Signing,
}

impl Case {
    pub fn builder(&self) -> VerifierBuilder {
        match self.verifying {
            Signing::Secret(secret) => VerifierBuilder::hmac(self.alg, secret),
            Signing::Pem(name) => VerifierBuilder::pem(self.alg, key_file(name)),
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        sign(self.alg, self.signing, &header(self.alg), claims)
    }

    pub fn sign_with_other_key(&self, claims: &Value) -> String {
        sign(self.alg, self.other, &header(self.alg), claims)
    }
}

pub fn cases() -> Vec<Case> {
    use Signing::{Pem, Secret};
    let hmac = |alg, secret: &'static [u8]| Case {
        alg,
        signing: Secret(secret),
        other: Secret(b"another secret, just as long as the real one, and more........."),
        verifying: Secret(secret),
    };
    let rsa = |alg| Case {
        alg,
        signing: Pem("rsa.pem"),
        other: Pem("rsa-other.pem"),
        verifying: Pem("rsa.pub.pem"),
    };
    vec![
        hmac(Algorithm::Hs256, SECRET_32),
        hmac(Algorithm::Hs384, SECRET_48),
        hmac(Algorithm::Hs512, SECRET_64),
        rsa(Algorithm::Rs256),
        rsa(Algorithm::Rs384),
        rsa(Algorithm::Rs512),
        Case {
            alg: Algorithm::Es256,
            signing: Pem("p256.pem"),
            other: Pem("p256-other.pem"),
            verifying: Pem("p256.pub.pem"),
        },
        Case {
            alg: Algorithm::Es384,
            signing: Pem("p384.pem"),
            other: Pem("p384-other.pem"),
            verifying: Pem("p384.pub.pem"),
        },
        Case {
            alg: Algorithm::EdDsa,
            signing: Pem("ed25519.pem"),
            other: Pem("ed25519-other.pem"),
            verifying: Pem("ed25519.pub.pem"),
        },
    ]
}

pub fn header(alg: Algorithm) -> Value {
    json!({"alg": alg.as_str(), "typ": "JWT"})
}

/// Claims valid at [`now`] for an hour.
pub fn claims() -> Value {
    json!({"sub": "alice", "exp": NOW_SECS + 3600, "iat": NOW_SECS, "channels": ["chat:*"]})
}

/// Claims with `extra` merged over [`claims`]; a `null` removes a claim.
pub fn claims_with(extra: Value) -> Value {
    let Value::Object(mut claims) = claims() else { unreachable!() };
    let Value::Object(extra) = extra else { panic!("extra claims must be an object") };
    for (name, value) in extra {
        if value.is_null() {
            claims.remove(&name);
        } else {
            claims.insert(name, value);
        }
    }
    Value::Object(claims)
}

/// A JWT with any header and claims, signed with `alg` and `key`.
pub fn sign(alg: Algorithm, key: Signing, header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let jwt_alg: jsonwebtoken::Algorithm = alg.as_str().parse().expect("a jwt algorithm");
    let signer = (DEFAULT_PROVIDER.signer_factory)(&jwt_alg, &key.encoding_key(alg))
        .expect("a signer for the key");
    let signature = signer.try_sign(message.as_bytes()).expect("a signature");
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A token with an HMAC signature keyed with arbitrary bytes, e.g. a public key's PEM.
pub fn sign_hmac_with(alg: Algorithm, secret: &[u8], header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let jwt_alg: jsonwebtoken::Algorithm = alg.as_str().parse().expect("a jwt algorithm");
    let signer = (DEFAULT_PROVIDER.signer_factory)(&jwt_alg, &EncodingKey::from_secret(secret))
        .expect("an hmac signer");
    let signature = signer.try_sign(message.as_bytes()).expect("a signature");
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// An unsigned token: `header.payload.` with an empty signature, as `alg: none` makes them.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", b64_json(header), b64_json(claims))
}

pub fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}
