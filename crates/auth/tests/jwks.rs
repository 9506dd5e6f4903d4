//! Verification with a JSON Web Key Set: keys chosen by `kid`, each key's `alg` and `kty`
//! honoured.

mod common;

use common::*;
use serde_json::{Value, json};
use switchboard_auth::{Algorithm, Error, Verifier, VerifierBuilder};

fn verifier() -> Verifier {
    VerifierBuilder::jwks(key_file("jwks.json")).build().expect("the fixture jwks")
}

fn with_kid(alg: Algorithm, kid: &str) -> Value {
    json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid})
}

fn jwks(keys: Value) -> Vec<u8> {
    let mut set = serde_json::Map::new();
    set.insert("keys".to_owned(), keys);
    serde_json::to_vec(&set).expect("json")
}

fn the_jwk(kid: &str) -> Value {
    let set: Value = serde_json::from_slice(&key_file("jwks.json")).expect("the fixture jwks");
    let keys = set["keys"].as_array().expect("a key list");
    keys.iter().find(|k| k["kid"] == kid).expect("a fixture kid").clone()
}

#[test]
fn selects_keys_by_kid() {
    let verifier = verifier();
    let accepted = [
        (Algorithm::Rs256, "rsa.pem", "rsa-1"),
        (Algorithm::Rs256, "rsa-other.pem", "rsa-2"),
        (Algorithm::Rs512, "rsa-other.pem", "rsa-2"),
        (Algorithm::Es256, "p256.pem", "ec-1"),
        (Algorithm::Es384, "p384.pem", "ec-384"),
        (Algorithm::EdDsa, "ed25519.pem", "ed-1"),
    ];
    for (alg, pem, kid) in accepted {
        let token = sign(alg, Signing::Pem(pem), &with_kid(alg, kid), &claims());
        let claims = verifier.verify(&token, now()).unwrap_or_else(|e| panic!("{kid}: {e}"));
        assert_eq!(claims.sub, "alice");
    }
}

#[test]
fn the_wrong_kid_is_a_bad_signature() {
    let verifier = verifier();
    let token = sign(
        Algorithm::Rs256,
        Signing::Pem("rsa.pem"),
        &with_kid(Algorithm::Rs256, "rsa-2"),
        &claims(),
    );
    assert_eq!(verifier.verify(&token, now()), Err(Error::BadSignature));
}

#[test]
fn refuses_unknown_missing_and_skipped_kids() {
    let verifier = verifier();
    let alg = Algorithm::Rs256;
    let key = Signing::Pem("rsa.pem");
    for kid in ["nope", "", "RSA-1", "rsa-enc", "ps-1"] {
        let token = sign(alg, key, &with_kid(alg, kid), &claims());
        assert_eq!(verifier.verify(&token, now()), Err(Error::UnknownKeyId), "{kid:?}");
    }
    // Several keys: a token must say which.
    let token = sign(alg, key, &header(alg), &claims());
    assert_eq!(verifier.verify(&token, now()), Err(Error::UnknownKeyId));
}

#[test]
fn honours_each_keys_algorithm() {
    let verifier = verifier();
    let refused = [
        // `rsa-1` says RS256: another RSA algorithm from the same key is refused.
        (Algorithm::Rs384, Signing::Pem("rsa.pem"), "rsa-1"),
        // `ec-1` has no `alg`, but P-256 means ES256.
        (Algorithm::Es384, Signing::Pem("p384.pem"), "ec-1"),
        (Algorithm::Es256, Signing::Pem("p256.pem"), "ec-384"),
        (Algorithm::EdDsa, Signing::Pem("ed25519.pem"), "rsa-2"),
        (Algorithm::Rs256, Signing::Pem("rsa.pem"), "ed-1"),
        (Algorithm::Hs256, Signing::Secret(SECRET_32), "rsa-2"),
    ];
    for (alg, key, kid) in refused {
        let token = sign(alg, key, &with_kid(alg, kid), &claims());
        assert_eq!(verifier.verify(&token, now()), Err(Error::WrongAlgorithm), "{alg} {kid}");
    }
}

#[test]
fn refuses_alg_none_and_hmac_keyed_with_a_public_key() {
    let verifier = verifier();
    for kid in ["rsa-1", "rsa-2", "ec-1", "ed-1"] {
        let token = unsigned(&json!({"alg": "none", "kid": kid}), &claims());
        assert_eq!(verifier.verify(&token, now()), Err(Error::WrongAlgorithm), "{kid}");
    }
    let public = key_file("rsa.pub.pem");
    let token =
        sign_hmac_with(Algorithm::Hs256, &public, &with_kid(Algorithm::Hs256, "rsa-1"), &claims());
    assert_eq!(verifier.verify(&token, now()), Err(Error::WrongAlgorithm));
    // The JWK's own JSON as the HMAC key, the JWKS flavour of the same attack.
    let jwk = serde_json::to_vec(&the_jwk("rsa-2")).unwrap();
    let token =
        sign_hmac_with(Algorithm::Hs256, &jwk, &with_kid(Algorithm::Hs256, "rsa-2"), &claims());
    assert_eq!(verifier.verify(&token, now()), Err(Error::WrongAlgorithm));
}

#[test]
fn a_single_key_set_accepts_tokens_without_kid() {
    let verifier = VerifierBuilder::jwks(jwks(json!([the_jwk("ed-1")]))).build().unwrap();
    let alg = Algorithm::EdDsa;
    let key = Signing::Pem("ed25519.pem");
    assert!(verifier.verify(&sign(alg, key, &header(alg), &claims()), now()).is_ok());
    assert!(verifier.verify(&sign(alg, key, &with_kid(alg, "ed-1"), &claims()), now()).is_ok());
    let other_kid = sign(alg, key, &with_kid(alg, "ed-2"), &claims());
    assert_eq!(verifier.verify(&other_kid, now()), Err(Error::UnknownKeyId));
}

#[test]
fn checks_claims_like_any_verifier() {
    let verifier = VerifierBuilder::jwks(key_file("jwks.json")).issuer("me").build().unwrap();
    let alg = Algorithm::Es256;
    let key = Signing::Pem("p256.pem");
    let expired = claims_with(json!({"iss": "me", "exp": NOW_SECS - 60}));
    let wrong_iss = claims_with(json!({"iss": "you"}));
    let token = sign(alg, key, &with_kid(alg, "ec-1"), &expired);
    assert_eq!(verifier.verify(&token, now()), Err(Error::Expired));
    let token = sign(alg, key, &with_kid(alg, "ec-1"), &wrong_iss);
    assert_eq!(verifier.verify(&token, now()), Err(Error::WrongIssuer));
}

#[test]
fn octet_keys_verify_the_hmacs_their_length_allows() {
    let k = base64_url(SECRET_32);
    let set = jwks(json!([{"kty": "oct", "kid": "h", "k": k}]));
    let verifier = VerifierBuilder::jwks(set).build().unwrap();
    let token = sign(
        Algorithm::Hs256,
        Signing::Secret(SECRET_32),
        &with_kid(Algorithm::Hs256, "h"),
        &claims(),
    );
    assert!(verifier.verify(&token, now()).is_ok());
    let token = sign(
        Algorithm::Hs384,
        Signing::Secret(SECRET_32),
        &with_kid(Algorithm::Hs384, "h"),
        &claims(),
    );
    assert_eq!(verifier.verify(&token, now()), Err(Error::WrongAlgorithm));
}

#[test]
fn lists_key_ids() {
    let mut kids: Vec<_> = verifier().key_ids().map(str::to_owned).collect();
    kids.sort();
    assert_eq!(kids, ["ec-1", "ec-384", "ed-1", "rsa-1", "rsa-2"]);
}

#[test]
fn refuses_unusable_sets() {
    let short_oct = json!({"kty": "oct", "kid": "h", "k": base64_url(b"short")});
    let short_rsa = {
        // The 1024-bit key, as a JWK.
        let mut jwk = the_jwk("rsa-1");
        jwk["n"] = json!(base64_url(&[0xc5; 128]));
        jwk
    };
    let mut bad_point = the_jwk("ec-1");
    bad_point["y"] = bad_point["x"].clone();
    let mut mismatched = the_jwk("rsa-2");
    mismatched["alg"] = json!("ES256");
    let mut no_kid = the_jwk("ec-1");
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut exponent_1 = the_jwk("rsa-2");
    exponent_1["e"] = json!("AQ");
    let mut not_b64 = the_jwk("ed-1");
    not_b64["x"] = json!("***");
    let invalid_key: &[(&str, Vec<u8>, &str)] = &[
        ("not json", b"{not json".to_vec(), "jwks is not a json web key set"),
        ("not a set", b"[1, 2]".to_vec(), "jwks is not a json web key set"),
        ("empty", jwks(json!([])), "jwks holds no usable signing key"),
        (
            "only an encryption key",
            jwks(json!([the_jwk("rsa-enc")])),
            "jwks holds no usable signing key",
        ),
        (
            "only unsupported algorithms",
            jwks(json!([the_jwk("ps-1")])),
            "jwks holds no usable signing key",
        ),
        (
            "unknown key type",
            jwks(json!([{"kty": "XYZ", "kid": "x"}])),
            "jwks holds no usable signing key",
        ),
        (
            "duplicate kid",
            jwks(json!([the_jwk("ec-1"), the_jwk("ec-1")])),
            "jwks holds two keys with the same kid",
        ),
        (
            "a key without kid among several",
            jwks(json!([the_jwk("rsa-1"), no_kid])),
            "jwks with several keys needs a kid on each",
        ),
        ("alg against kty", jwks(json!([mismatched])), "jwk alg does not fit its key type"),
        ("short rsa", jwks(json!([short_rsa])), "rsa key shorter than 2048 bits"),
        ("rsa exponent 1", jwks(json!([exponent_1])), "rsa exponent out of range"),
        ("point off the curve", jwks(json!([bad_point])), "key cannot verify its algorithm"),
        ("bad base64", jwks(json!([not_b64])), "jwk key material is not valid base64url"),
    ];
    for &(what, ref set, why) in invalid_key {
        let err = VerifierBuilder::jwks(set.clone()).build().unwrap_err();
        assert_eq!(err, Error::InvalidKey(why), "{what}");
    }
    let err = VerifierBuilder::jwks(jwks(json!([short_oct]))).build().unwrap_err();
    assert!(matches!(err, Error::WeakSecret { len: 5, .. }), "{err}");
    let danger =
        VerifierBuilder::jwks(jwks(json!([short_oct]))).danger_allow_short_hmac_secret().build();
    assert!(danger.is_ok());
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
