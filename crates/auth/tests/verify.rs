//! JWT verification for every algorithm, against real keys from `tests/keys/`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use switchboard_auth::{Algorithm, Error, VerifierBuilder};

#[test]
fn accepts_valid_tokens_for_every_algorithm() {
    for case in cases() {
        let verifier = case.builder().build().unwrap();
        let claims = verifier.verify(&case.sign(&claims()), now()).unwrap_or_else(|e| {
            panic!("{}: {e}", case.alg);
        });
        assert_eq!(claims.sub, "alice", "{}", case.alg);
        assert_eq!(claims.exp, NOW_SECS + 3600);
        assert_eq!(claims.channels, ["chat:*"]);
    }
}

#[test]
fn wrong_key_is_a_bad_signature() {
    for case in cases() {
        let verifier = case.builder().build().unwrap();
        let token = case.sign_with_other_key(&claims());
        assert_eq!(verifier.verify(&token, now()), Err(Error::BadSignature), "{}", case.alg);
    }
}

#[test]
fn tampered_claims_are_a_bad_signature() {
    for case in cases() {
        let verifier = case.builder().build().unwrap();
        let token = case.sign(&claims());
        let (_, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged_claims = b64_json(&claims_with(json!({"channels": ["*"]})));
        let head = b64_json(&header(case.alg));
        let forged = format!("{head}.{forged_claims}.{signature}");
        assert_eq!(verifier.verify(&forged, now()), Err(Error::BadSignature), "{}", case.alg);
    }
}

#[test]
fn refuses_alg_none_however_spelled() {
    for case in cases() {
        let verifier = case.builder().build().unwrap();
        for none in ["none", "None", "NONE", "nOnE", ""] {
            let token = unsigned(&json!({"alg": none, "typ": "JWT"}), &claims());
            assert_eq!(verifier.verify(&token, now()), Err(Error::WrongAlgorithm), "{none}");
            // The same, with a signature made by the right key bolted on.
            let signed = case.sign(&claims());
            let signature = signed.rsplit_once('.').unwrap().1;
            let token = format!("{token}{signature}");
            assert_eq!(verifier.verify(&token, now()), Err(Error::WrongAlgorithm), "{none}");
        }
    }
}

/// The classic confusion attack: an HS256 token whose HMAC key is the server's public key.
#[test]
fn refuses_hmac_tokens_keyed_with_the_public_key() {
    for case in cases().into_iter().filter(|c| !c.alg.is_hmac()) {
        let verifier = case.builder().build().unwrap();
        let Signing::Pem(public) = case.verifying else { unreachable!() };
        let public_pem = key_file(public);
        for hmac in [Algorithm::Hs256, Algorithm::Hs384, Algorithm::Hs512] {
            let token = sign_hmac_with(hmac, &public_pem, &header(hmac), &claims());
            assert_eq!(
                verifier.verify(&token, now()),
                Err(Error::WrongAlgorithm),
                "{hmac} token to {} verifier",
                case.alg
            );
        }
    }
}

#[test]
fn accepts_only_the_configured_algorithm() {
    let all = cases();
    for verifier_case in &all {
        let verifier = verifier_case.builder().build().unwrap();
        for token_case in all.iter().filter(|c| c.alg != verifier_case.alg) {
            // Signed properly, by the very same key where the families match (an RS384
            // token from the RS256 verifier's RSA key): the pin is to the algorithm.
            let token = token_case.sign(&claims());
            assert_eq!(
                verifier.verify(&token, now()),
                Err(Error::WrongAlgorithm),
                "{} token to {} verifier",
                token_case.alg,
                verifier_case.alg
            );
        }
    }
}

#[test]
fn ignores_keys_embedded_in_the_header() {
    let case = cases().into_iter().find(|c| c.alg == Algorithm::Es256).unwrap();
    let verifier = case.builder().build().unwrap();
    // An attacker's token naming its own key in `jwk` and `jku`.
    let jwks: serde_json::Value = serde_json::from_slice(&key_file("jwks.json")).unwrap();
    let header = json!({
        "alg": "ES256",
        "jwk": jwks["keys"][2],
        "jku": "https://attacker.invalid/jwks.json",
        "x5u": "https://attacker.invalid/cert.pem",
    });
    let token = sign(Algorithm::Es256, case.other, &header, &claims());
    assert_eq!(verifier.verify(&token, now()), Err(Error::BadSignature));
}

#[test]
fn expired_tokens_are_refused_with_their_own_error() {
    for case in cases() {
        let verifier = case.builder().leeway(Duration::ZERO).build().unwrap();
        let token = case.sign(&claims_with(json!({"exp": NOW_SECS - 1})));
        let err = verifier.verify(&token, now()).unwrap_err();
        assert_eq!(err, Error::Expired, "{}", case.alg);
        assert!(err.is_expired());
        // RFC 7519 §4.1.4: at `exp` itself the token is already expired.
        let token = case.sign(&claims_with(json!({"exp": NOW_SECS})));
        assert_eq!(verifier.verify(&token, now()), Err(Error::Expired));
        let token = case.sign(&claims_with(json!({"exp": NOW_SECS + 1})));
        assert!(verifier.verify(&token, now()).is_ok());
    }
}

#[test]
fn not_yet_valid_tokens_are_refused() {
    for case in cases() {
        let verifier = case.builder().leeway(Duration::ZERO).build().unwrap();
        let token = case.sign(&claims_with(json!({"nbf": NOW_SECS + 1})));
        assert_eq!(verifier.verify(&token, now()), Err(Error::NotYetValid), "{}", case.alg);
        let token = case.sign(&claims_with(json!({"nbf": NOW_SECS})));
        assert!(verifier.verify(&token, now()).is_ok());
    }
}

#[test]
fn leeway_defaults_to_five_seconds_and_is_configurable() {
    let case = cases()[0];
    let verifier = case.builder().build().unwrap();
    assert_eq!(verifier.leeway(), Duration::from_secs(5));
    let expired_4s_ago = case.sign(&claims_with(json!({"exp": NOW_SECS - 4})));
    let expired_5s_ago = case.sign(&claims_with(json!({"exp": NOW_SECS - 5})));
    let valid_in_5s = case.sign(&claims_with(json!({"nbf": NOW_SECS + 5})));
    let valid_in_6s = case.sign(&claims_with(json!({"nbf": NOW_SECS + 6})));
    assert!(verifier.verify(&expired_4s_ago, now()).is_ok());
    assert_eq!(verifier.verify(&expired_5s_ago, now()), Err(Error::Expired));
    assert!(verifier.verify(&valid_in_5s, now()).is_ok());
    assert_eq!(verifier.verify(&valid_in_6s, now()), Err(Error::NotYetValid));

    let lenient = case.builder().leeway(Duration::from_secs(60)).build().unwrap();
    assert!(lenient.verify(&expired_5s_ago, now()).is_ok());
    assert!(lenient.verify(&valid_in_6s, now()).is_ok());
    assert_eq!(lenient.verify(&expired_5s_ago, at(NOW_SECS + 55)), Err(Error::Expired));
}

#[test]
fn checks_issuer_when_configured() {
    for case in cases() {
        let verifier = case.builder().issuer("https://a.example").issuer("b").build().unwrap();
        let ok_a = case.sign(&claims_with(json!({"iss": "https://a.example"})));
        let ok_b = case.sign(&claims_with(json!({"iss": "b"})));
        let wrong = case.sign(&claims_with(json!({"iss": "https://evil.example"})));
        let missing = case.sign(&claims());
        assert!(verifier.verify(&ok_a, now()).is_ok(), "{}", case.alg);
        assert!(verifier.verify(&ok_b, now()).is_ok());
        assert_eq!(verifier.verify(&wrong, now()), Err(Error::WrongIssuer));
        assert_eq!(verifier.verify(&missing, now()), Err(Error::MissingClaim("iss")));
        // Without an issuer configured, any `iss` passes.
        let open = case.builder().build().unwrap();
        assert!(open.verify(&wrong, now()).is_ok());
    }
}

#[test]
fn checks_audience_when_configured() {
    for case in cases() {
        let verifier = case.builder().audience("switchboard").build().unwrap();
        let string = case.sign(&claims_with(json!({"aud": "switchboard"})));
        let list = case.sign(&claims_with(json!({"aud": ["other", "switchboard"]})));
        let wrong = case.sign(&claims_with(json!({"aud": ["other", "billing"]})));
        let missing = case.sign(&claims());
        assert!(verifier.verify(&string, now()).is_ok(), "{}", case.alg);
        assert_eq!(verifier.verify(&list, now()).unwrap().aud, ["other", "switchboard"]);
        assert_eq!(verifier.verify(&wrong, now()), Err(Error::WrongAudience));
        assert_eq!(verifier.verify(&missing, now()), Err(Error::MissingClaim("aud")));
        // RFC 7519 §4.1.3: a token for named audiences is refused by a server with none.
        let open = case.builder().build().unwrap();
        assert_eq!(open.verify(&string, now()), Err(Error::WrongAudience));
        assert!(open.verify(&missing, now()).is_ok());
    }
}

#[test]
fn requires_sub_and_exp() {
    let case = cases()[3];
    let verifier = case.builder().build().unwrap();
    let no_exp = case.sign(&claims_with(json!({"exp": null})));
    let no_sub = case.sign(&claims_with(json!({"sub": null})));
    let empty_sub = case.sign(&claims_with(json!({"sub": ""})));
    let long_sub = case.sign(&claims_with(json!({"sub": "u".repeat(256)})));
    let text_exp = case.sign(&claims_with(json!({"exp": "tomorrow"})));
    assert_eq!(verifier.verify(&no_exp, now()), Err(Error::MissingClaim("exp")));
    assert_eq!(verifier.verify(&no_sub, now()), Err(Error::MissingClaim("sub")));
    assert_eq!(verifier.verify(&empty_sub, now()), Err(Error::InvalidClaim("sub")));
    assert_eq!(verifier.verify(&long_sub, now()), Err(Error::InvalidClaim("sub")));
    assert_eq!(verifier.verify(&text_exp, now()), Err(Error::InvalidClaim("exp")));
}

#[test]
fn reads_optional_claims_and_ignores_unknown_ones() {
    let case = cases()[0];
    let verifier = case.builder().build().unwrap();
    let token = case.sign(&claims_with(json!({
        "info": {"name": "Alice", "avatar": 3},
        "publish": ["chat:lobby"],
        "scope": "openid profile",
        "email_verified": true,
    })));
    let claims = verifier.verify(&token, now()).unwrap();
    assert_eq!(claims.info, Some(json!({"name": "Alice", "avatar": 3})));
    assert_eq!(claims.publish, ["chat:lobby"]);
    assert_eq!(claims.iat, Some(NOW_SECS));
}

#[test]
fn refuses_malformed_tokens() {
    let case = cases()[0];
    let verifier = case.builder().build().unwrap();
    let good = case.sign(&claims());
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let crit = sign(
        case.alg,
        case.signing,
        &json!({"alg": "HS256", "crit": ["exp"], "exp": 1}),
        &claims(),
    );
    let malformed = [
        String::new(),
        "garbage".to_owned(),
        "a.b".to_owned(),
        format!("{head}.{payload}"),
        format!("{head}.{payload}.{signature}.extra"),
        format!("{head}=.{payload}.{signature}"),
        format!("{head}.{payload}.{signature}="),
        format!("{}.{payload}.{signature}", base64_url("{\"alg\":")),
        format!("{}.{payload}.{signature}", base64_url("[]")),
        format!("{}.{payload}.{signature}", base64_url("{\"typ\":\"JWT\"}")),
        format!("{}.{payload}.{signature}", base64_url("{\"alg\":\"HS256\",\"alg\":\"HS256\"}")),
        format!("{head}.{payload}.!!!"),
        crit,
        format!("{good}{}", "A".repeat(8 * 1024)),
    ];
    for token in &malformed {
        assert_eq!(
            verifier.verify(token, now()),
            Err(Error::Malformed),
            "{}",
            switchboard_auth::redact_token(token)
        );
    }
    // A signed payload that is not a JSON object.
    for bad_payload in ["not json", "[1,2]", "\"alice\""] {
        let message = format!("{head}.{}", base64_url(bad_payload));
        let token = sign_message(SECRET_32, &message);
        assert_eq!(verifier.verify(&token, now()), Err(Error::Malformed), "{bad_payload}");
    }
}

#[test]
fn token_size_limit_is_configurable() {
    let case = cases()[0];
    let big = case.sign(&claims_with(json!({"info": "x".repeat(10_000)})));
    let default = case.builder().build().unwrap();
    assert_eq!(default.verify(&big, now()), Err(Error::Malformed));
    let roomy = case.builder().max_token_len(64 * 1024).build().unwrap();
    assert!(roomy.verify(&big, now()).is_ok());
}

#[test]
fn refuses_weak_or_misplaced_secrets() {
    let short = VerifierBuilder::hmac(Algorithm::Hs256, [1u8; 31]).build().unwrap_err();
    assert_eq!(short, Error::WeakSecret { len: 31, min: 32 });
    let hs512 = VerifierBuilder::hmac(Algorithm::Hs512, *SECRET_32).build().unwrap_err();
    assert_eq!(hs512, Error::WeakSecret { len: 32, min: 64 });
    assert!(VerifierBuilder::hmac(Algorithm::Hs384, *SECRET_48).build().is_ok());
    let danger =
        VerifierBuilder::hmac(Algorithm::Hs256, *b"short").danger_allow_short_hmac_secret();
    assert!(danger.build().is_ok());
    let empty = VerifierBuilder::hmac(Algorithm::Hs256, []).danger_allow_short_hmac_secret();
    assert_eq!(empty.build().unwrap_err(), Error::WeakSecret { len: 0, min: 32 });

    let mut pem_secret = b"  \n".to_vec();
    pem_secret.extend(key_file("rsa.pub.pem"));
    let err = VerifierBuilder::hmac(Algorithm::Hs256, pem_secret).build().unwrap_err();
    assert!(matches!(err, Error::InvalidKey(_)), "{err}");
    let err = VerifierBuilder::hmac(Algorithm::Rs256, *SECRET_32).build().unwrap_err();
    assert!(matches!(err, Error::InvalidKey(_)), "{err}");
}

#[test]
fn refuses_pem_keys_that_do_not_fit_the_algorithm() {
    let refusals = [
        (Algorithm::Hs256, "rsa.pub.pem"),
        (Algorithm::Rs256, "p256.pub.pem"),
        (Algorithm::Rs256, "ed25519.pub.pem"),
        (Algorithm::Es256, "rsa.pub.pem"),
        (Algorithm::Es256, "p384.pub.pem"),
        (Algorithm::Es384, "p256.pub.pem"),
        (Algorithm::EdDsa, "p256.pub.pem"),
        (Algorithm::EdDsa, "rsa.pub.pem"),
        // Private keys where public ones belong.
        (Algorithm::Rs256, "rsa.pem"),
        (Algorithm::Es256, "p256.pem"),
        (Algorithm::EdDsa, "ed25519.pem"),
        // RFC 7518 §3.3: 2048 bits at least.
        (Algorithm::Rs256, "rsa-1024.pub.pem"),
        (Algorithm::Rs256, "README.md"),
    ];
    for (alg, file) in refusals {
        let err = VerifierBuilder::pem(alg, key_file(file)).build().unwrap_err();
        assert!(matches!(err, Error::InvalidKey(_)), "{alg} with {file}: {err}");
        assert_eq!(err.http_status(), 500);
    }
}

#[test]
fn errors_never_repeat_the_token() {
    let case = cases()[0];
    let verifier = case.builder().audience("x").build().unwrap();
    let token = case.sign(&claims_with(json!({"sub": "secret-user-id", "aud": "y"})));
    let err = verifier.verify(&token, now()).unwrap_err();
    for text in [err.to_string(), err.reason().to_owned(), format!("{err:?}")] {
        assert!(!text.contains("secret-user-id") && !text.contains(&token[..20]), "{text}");
    }
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// `message.signature` with an HS256 signature over exactly `message`.
fn sign_message(secret: &[u8], message: &str) -> String {
    use base64::Engine as _;
    let signer = (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.signer_factory)(
        &jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("an hmac signer");
    let signature = signer.try_sign(message.as_bytes()).expect("a signature");
    format!("{message}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature))
}
