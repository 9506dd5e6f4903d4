//! Channel permissions from verified tokens: patterns, user-limited channels, and patterns
//! built to make a backtracking matcher take forever.

mod common;

use common::*;
use serde_json::json;
use switchboard_auth::{Permissions, VerifierBuilder};

fn permissions_of(claims: &serde_json::Value) -> Permissions {
    let case = cases()[0];
    let verifier = case.builder().build().expect("a verifier");
    let claims = verifier.verify(&case.sign(claims), now()).expect("a valid token");
    Permissions::from_claims(&claims)
}

#[test]
fn token_claims_decide_subscribe_and_publish() {
    let perms = permissions_of(&claims_with(json!({
        "sub": "alice",
        "channels": ["chat:*", "news", "game:room-*", "*:public"],
        "publish": ["chat:lobby", "game:room-*"],
    })));
    assert_eq!(perms.user(), Some("alice"));
    // channel, may subscribe, may publish
    let table = [
        ("chat:lobby", true, true),
        ("chat:random", true, false),
        ("chat:", true, false),
        ("chatter:x", false, false),
        ("news", true, false),
        ("news:sport", false, false),
        ("game:room-1", true, true),
        ("game:room", false, false),
        ("game:lobby", false, false),
        ("weather:public", true, false),
        ("weather:public2", false, false),
        ("secret", false, false),
        // User-limited: the list decides, whatever the patterns say.
        ("chat:#alice", true, true),
        ("chat:#bob", false, false),
        ("inbox:#bob,alice", true, true),
        ("inbox:x#alice2", false, false),
    ];
    for (channel, subscribe, publish) in table {
        assert_eq!(perms.can_subscribe(channel), subscribe, "subscribe {channel}");
        assert_eq!(perms.can_publish(channel), publish, "publish {channel}");
    }
}

#[test]
fn a_token_without_grants_reaches_only_its_own_channels() {
    let perms = permissions_of(&claims_with(json!({"sub": "bob", "channels": null})));
    assert!(!perms.can_subscribe("chat:lobby"));
    assert!(!perms.can_publish("chat:lobby"));
    assert!(perms.can_subscribe("notifications:#bob"));
}

#[test]
fn anonymous_connections_never_reach_user_limited_channels() {
    let granted = Permissions::new::<_, &str>(None, &["*"], &[]);
    assert!(granted.is_anonymous());
    assert!(granted.can_subscribe("news"));
    assert!(!granted.can_subscribe("inbox:#alice"));
    assert!(!granted.can_subscribe("inbox:#"));
    assert!(!Permissions::anonymous().can_subscribe("news"));
}

#[test]
fn adversarial_patterns_from_a_token_answer_correctly() {
    let stars = "*a".repeat(50);
    let perms = permissions_of(&claims_with(json!({
        "channels": [format!("{stars}b"), format!("{}c", "a*".repeat(2_000))],
        "publish": [stars],
    })));
    let long = "a".repeat(200_000);
    assert!(!perms.can_subscribe(&long));
    assert!(perms.can_subscribe(&format!("{long}b")));
    assert!(perms.can_subscribe(&format!("{long}c")));
    assert!(perms.can_publish(&long));
    assert!(!perms.can_publish(&"a".repeat(49)));
    assert!(!perms.can_publish(&format!("{long}b")));
}

#[test]
fn a_token_with_many_patterns_fits_a_roomier_verifier() {
    let patterns: Vec<String> = (0..500).map(|i| format!("room-{i}:*")).collect();
    let case = cases()[0];
    let token = case.sign(&claims_with(json!({ "channels": patterns })));
    let verifier = VerifierBuilder::hmac(case.alg, *SECRET_32).max_token_len(64 * 1024).build();
    let claims = verifier.unwrap().verify(&token, now()).unwrap();
    let perms = Permissions::from_claims(&claims);
    assert!(perms.can_subscribe("room-499:x") && !perms.can_subscribe("room-500:x"));
}
