//! What a session lets each client do: channel permissions from tokens and namespaces,
//! first-message mode, token expiry and `refresh`. The door (credential sources, refusals
//! before the upgrade, Origin checks, tickets) is tested over sockets in `auth.rs`.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_server::Config;
use switchboard_test_support::memory::TestNode;
use switchboard_test_support::tokens::{
    OTHER_SECRET, claims, config, expired_token, first_message_config, sign, strict_config, token,
    token_with,
};
use tokio::time::{Instant, advance};

/// `first_message_timeout` in first-message tests.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------
// Channel permissions

#[tokio::test]
async fn anonymous_connections_are_unauthorized_in_the_default_namespace() {
    let node = TestNode::new(&Config::default());
    let mut anonymous = node.client();
    for (kind, fields) in [
        ("subscribe", json!({"channel": "room"})),
        ("publish", json!({"channel": "room", "data": 1})),
        ("presence", json!({"channel": "room"})),
        ("presence_count", json!({"channel": "room"})),
        ("history", json!({"channel": "room"})),
    ] {
        assert_eq!(anonymous.error(kind, fields).await, "unauthorized", "{kind}");
    }
}

#[tokio::test]
async fn anonymous_refusals_in_the_default_namespace_say_why_and_what_to_do() {
    let node = TestNode::new(&Config::default());
    let mut anonymous = node.client();
    for (kind, fields, opened_by) in [
        ("subscribe", json!({"channel": "room"}), "subscribe"),
        ("history", json!({"channel": "room"}), "subscribe"),
        ("publish", json!({"channel": "room", "data": 1}), "publish"),
    ] {
        let reply = anonymous.call(kind, fields).await;
        assert_eq!(reply["error"]["code"], "unauthorized", "{kind}: the code clients act on");
        let message = reply["error"]["message"].as_str().expect("a message");
        // Why: the namespace and its rule; what to do: each of the three ways out.
        for part in [
            "anonymous",
            "`room`",
            "default namespace",
            "closed to connections without a token",
            "use a channel such as `chat:room`",
            "connect with a token",
            &format!("--namespace ':anonymous={opened_by}'"),
        ] {
            assert!(message.contains(part), "{kind}: no {part:?} in {message:?}");
        }
    }
}

#[tokio::test]
async fn anonymous_refusals_suggest_only_a_namespace_the_server_opens() {
    let mut config = Config::default();
    // Of the built-in namespaces, only the read-only `ticker` is left open.
    for open in ["board", "chat", "cursor"] {
        config.hub.namespaces.remove(open);
    }
    let read_only = config.hub.namespaces["ticker"].clone();
    config.hub.namespaces.insert("public".to_owned(), read_only);
    let node = TestNode::new(&config);
    let mut anonymous = node.client();

    let reply = anonymous.call("subscribe", json!({"channel": "room"})).await;
    let message = reply["error"]["message"].as_str().expect("a message");
    assert!(message.contains("such as `public:room`"), "{message}");
    // No namespace lets anonymous connections publish here: nothing to suggest.
    let reply = anonymous.call("publish", json!({"channel": "room", "data": 1})).await;
    assert_eq!(reply["error"]["code"], "unauthorized", "{reply}");
    let message = reply["error"]["message"].as_str().expect("a message");
    assert!(!message.contains("such as"), "{message}");
    assert!(message.contains("--namespace ':anonymous=publish'"), "{message}");
}

#[tokio::test]
async fn chat_namespace_is_open_to_anonymous_connections() {
    let node = TestNode::new(&Config::default());
    let mut anonymous = node.client();
    anonymous.ok("subscribe", json!({"channel": "chat:lobby"})).await;
    anonymous.ok("publish", json!({"channel": "chat:lobby", "data": "hi"})).await;
    anonymous.ok("presence", json!({"channel": "chat:lobby"})).await;
    anonymous.ok("history", json!({"channel": "chat:lobby"})).await;
}

#[tokio::test]
async fn channel_patterns_limit_what_a_token_may_read() {
    let node = TestNode::new(&config());
    let mut alice = node.client_with_token(&token("alice", &["news:*"], &[]));
    alice.ok("subscribe", json!({"channel": "news:a"})).await;
    alice.ok("presence", json!({"channel": "news:a"})).await;
    alice.ok("history", json!({"channel": "news:a"})).await;
    for kind in ["subscribe", "presence", "presence_count", "history"] {
        let code = alice.error(kind, json!({"channel": "sports:a"})).await;
        assert_eq!(code, "permission_denied", "{kind}");
    }
    // The default namespace is closed to anonymous users, and the token grants none of it.
    assert_eq!(alice.error("subscribe", json!({"channel": "room"})).await, "permission_denied");
}

#[tokio::test]
async fn publishing_needs_a_publish_pattern() {
    let node = TestNode::new(&config());
    let mut reader = node.client_with_token(&token("alice", &["news:*"], &[]));
    let code = reader.error("publish", json!({"channel": "news:a", "data": 1})).await;
    assert_eq!(code, "permission_denied");

    let mut writer = node.client_with_token(&token("bob", &["news:*"], &["news:a"]));
    writer.ok("publish", json!({"channel": "news:a", "data": 1})).await;
    let code = writer.error("publish", json!({"channel": "news:b", "data": 1})).await;
    assert_eq!(code, "permission_denied");
}

#[tokio::test]
async fn user_limited_channels_admit_only_their_users() {
    let node = TestNode::new(&config());
    let mut alice = node.client_with_token(&token("alice", &[], &[]));
    alice.ok("subscribe", json!({"channel": "chat:#alice"})).await;
    alice.ok("publish", json!({"channel": "chat:#alice", "data": "note to self"})).await;
    alice.ok("presence", json!({"channel": "chat:#alice"})).await;

    // Even a token granting every channel does not open another user's channel.
    let mut bob = node.client_with_token(&token("bob", &["*"], &["*"]));
    for (kind, fields) in [
        ("subscribe", json!({"channel": "chat:#alice"})),
        ("publish", json!({"channel": "chat:#alice", "data": 1})),
        ("presence", json!({"channel": "chat:#alice"})),
        ("history", json!({"channel": "chat:#alice"})),
    ] {
        assert_eq!(bob.error(kind, fields).await, "permission_denied", "bob {kind}");
    }
    bob.ok("subscribe", json!({"channel": "chat:#alice,bob"})).await;

    // `chat` is open to anonymous connections, but not its user-limited channels.
    let mut anonymous = node.client();
    for (kind, fields) in [
        ("subscribe", json!({"channel": "chat:#alice"})),
        ("publish", json!({"channel": "chat:#alice", "data": 1})),
    ] {
        assert_eq!(anonymous.error(kind, fields).await, "unauthorized", "anonymous {kind}");
    }
}

#[tokio::test]
async fn connect_cannot_switch_users() {
    let node = TestNode::new(&config());
    let mut alice = node.client_with_token(&token("alice", &[], &[]));
    let code = alice.error("connect", json!({"token": token("bob", &["*"], &["*"])})).await;
    assert_eq!(code, "unauthorized");
    assert_eq!(alice.error("subscribe", json!({"channel": "news:a"})).await, "permission_denied");
}

// ---------------------------------------------------------------------------------------
// First-message mode

#[tokio::test(start_paused = true)]
async fn first_message_mode_refuses_commands_before_connect() {
    let node = TestNode::new(&first_message_config(FIRST_MESSAGE_TIMEOUT));
    let mut client = node.client();
    for (kind, fields) in [
        ("ping", json!({})),
        // Open to anonymous connections otherwise: first-message mode comes first.
        ("subscribe", json!({"channel": "chat:lobby"})),
        ("publish", json!({"channel": "chat:lobby", "data": 1})),
        ("refresh", json!({"token": token("alice", &[], &[])})),
    ] {
        assert_eq!(client.error(kind, fields).await, "unauthorized", "{kind}");
    }
    let result = client.ok("connect", json!({"token": token("alice", &["news:*"], &[])})).await;
    assert_eq!(result["user"], "alice", "{result}");
    client.ok("subscribe", json!({"channel": "news:a"})).await;
    // Past the deadline the session stays open: `connect` cleared it.
    advance(FIRST_MESSAGE_TIMEOUT * 2).await;
    client.ws.fire_deadline();
    client.ok("ping", json!({})).await;
}

#[tokio::test(start_paused = true)]
async fn first_message_mode_closes_without_connect_at_the_deadline() {
    let node = TestNode::new(&first_message_config(FIRST_MESSAGE_TIMEOUT));
    let opened = Instant::now();
    let mut client = node.client();
    assert_eq!(client.ws.deadline(), Some(opened + FIRST_MESSAGE_TIMEOUT));
    advance(FIRST_MESSAGE_TIMEOUT - Duration::from_millis(1)).await;
    client.ws.fire_deadline();
    assert_eq!(client.error("ping", json!({})).await, "unauthorized", "still open");
    advance(Duration::from_millis(1)).await;
    client.ws.fire_deadline();
    assert_eq!(client.closed().await, (4102, "no connect with a token in time".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn first_message_deadline_holds_while_commands_are_refused() {
    let node = TestNode::new(&first_message_config(FIRST_MESSAGE_TIMEOUT));
    let opened = Instant::now();
    let mut client = node.client();
    // Chatting does not buy an unauthenticated connection more time.
    while opened.elapsed() < FIRST_MESSAGE_TIMEOUT / 2 {
        assert_eq!(client.error("ping", json!({})).await, "unauthorized");
        advance(Duration::from_millis(20)).await;
    }
    assert_eq!(client.ws.deadline(), Some(opened + FIRST_MESSAGE_TIMEOUT));
    advance(FIRST_MESSAGE_TIMEOUT / 2).await;
    client.ws.fire_deadline();
    assert_eq!(client.closed().await.0, 4102);
}

#[tokio::test(start_paused = true)]
async fn first_message_mode_skips_the_wait_for_handshake_credentials() {
    let node = TestNode::new(&first_message_config(FIRST_MESSAGE_TIMEOUT));
    let mut alice = node.client_with_token(&token("alice", &[], &[]));
    alice.ok("ping", json!({})).await;
    advance(FIRST_MESSAGE_TIMEOUT * 2).await;
    alice.ws.fire_deadline();
    alice.ok("ping", json!({})).await;
}

#[tokio::test(start_paused = true)]
async fn first_message_mode_closes_after_a_refused_connect_token() {
    let node = TestNode::new(&first_message_config(Duration::from_secs(3)));
    let mut client = node.client();
    let code = client.error("connect", json!({"token": token_with(OTHER_SECRET)})).await;
    assert_eq!(code, "unauthorized");
    // Due at once, not at the first-message deadline.
    assert_eq!(client.ws.deadline(), Some(Instant::now()));
    client.ws.fire_deadline();
    assert_eq!(client.closed().await.0, 4401);

    let mut client = node.client();
    let code = client.error("connect", json!({"token": expired_token("alice")})).await;
    assert_eq!(code, "token_expired");
    client.ws.fire_deadline();
    assert_eq!(client.closed().await.0, 4200);
}

// ---------------------------------------------------------------------------------------
// Expiry and refresh

#[tokio::test(start_paused = true)]
async fn expired_token_closes_the_session_at_exp_with_4200() {
    let node = TestNode::new(&strict_config());
    let short = claims("alice", Duration::from_secs(2), &[], &[]);
    let mut alice = node.client_with_token(&sign(&short));
    let deadline = alice.ws.deadline().expect("a deadline at the token's expiry");
    // `exp` is in whole seconds: the deadline is at most the token's two seconds away.
    assert!(deadline <= Instant::now() + Duration::from_secs(2), "{deadline:?}");
    assert!(deadline > Instant::now() + Duration::from_secs(1), "{deadline:?}");
    advance(deadline - Instant::now() - Duration::from_millis(1)).await;
    alice.ws.fire_deadline();
    alice.ok("ping", json!({})).await;
    advance(Duration::from_millis(1)).await;
    alice.ws.fire_deadline();
    assert_eq!(alice.closed().await, (4200, "token expired".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn refresh_extends_the_connection_and_applies_the_new_claims() {
    let node = TestNode::new(&strict_config());
    let short = claims("alice", Duration::from_secs(2), &[], &[]);
    let mut alice = node.client_with_token(&sign(&short));
    assert_eq!(alice.error("subscribe", json!({"channel": "news:a"})).await, "permission_denied");

    let long = claims("alice", Duration::from_secs(3600), &["news:*"], &[]);
    let result = alice.ok("refresh", json!({"token": sign(&long)})).await;
    assert_eq!(result, json!({"expires_at": long.exp}));
    alice.ok("subscribe", json!({"channel": "news:a"})).await;

    // Past the old expiry the session is still open and answers.
    advance(Duration::from_secs(3)).await;
    alice.ws.fire_deadline();
    alice.ok("ping", json!({})).await;
    assert!(alice.pushes.iter().all(|p| p["push"] != "disconnect"), "{:?}", alice.pushes);
}

#[tokio::test]
async fn refresh_with_fewer_channels_ends_the_subscriptions_it_no_longer_allows() {
    let node = TestNode::new(&config());
    let wide = token("alice", &["news:*", "sports:*"], &["news:*", "sports:*"]);
    let mut alice = node.client_with_token(&wide);
    for channel in ["news:a", "news:b", "sports:x", "chat:lobby"] {
        alice.ok("subscribe", json!({"channel": channel})).await;
    }
    let mut publisher = node.client_with_token(&wide);

    let narrow = token("alice", &["news:a"], &[]);
    let reply = alice.call("refresh", json!({"token": narrow})).await;
    assert!(reply.get("result").is_some(), "{reply}");
    // The pushes came before the reply (kept aside by `call`), one per revoked channel.
    let mut revoked: Vec<Value> = alice.pushes.drain(..).collect();
    revoked.sort_by_key(|push| push["channel"].as_str().map(str::to_owned));
    let expected: Vec<Value> = ["news:b", "sports:x"]
        .iter()
        .map(|channel| {
            json!({
                "push": "unsubscribe",
                "channel": channel,
                "code": "permission_denied",
                "reason": "after refresh: the token does not allow to subscribe to this channel"
            })
        })
        .collect();
    assert_eq!(revoked, expected);

    // Still subscribed where allowed (by the token, or by the open `chat` namespace); no
    // longer where not.
    for channel in ["news:b", "sports:x", "news:a", "chat:lobby"] {
        publisher.ok("publish", json!({"channel": channel, "data": channel})).await;
    }
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        let push = alice.recv().await;
        assert_eq!(push["push"], "publication", "{push}");
        delivered.push(push["data"].clone());
    }
    assert_eq!(delivered, [json!("news:a"), json!("chat:lobby")]);
    assert_eq!(alice.error("unsubscribe", json!({"channel": "news:b"})).await, "not_subscribed");
    alice.ok("unsubscribe", json!({"channel": "news:a"})).await;
}

#[tokio::test(start_paused = true)]
async fn refresh_with_another_users_token_is_unauthorized_and_changes_nothing() {
    let node = TestNode::new(&strict_config());
    let short = claims("alice", Duration::from_secs(2), &[], &[]);
    let mut alice = node.client_with_token(&sign(&short));
    let deadline = alice.ws.deadline();
    let code = alice.error("refresh", json!({"token": token("bob", &["*"], &["*"])})).await;
    assert_eq!(code, "unauthorized");
    let code = alice.error("refresh", json!({"token": expired_token("alice")})).await;
    assert_eq!(code, "token_expired");
    let code = alice.error("refresh", json!({"token": token_with(OTHER_SECRET)})).await;
    assert_eq!(code, "unauthorized");
    assert_eq!(alice.error("subscribe", json!({"channel": "news:a"})).await, "permission_denied");
    // The old expiry still holds.
    assert_eq!(alice.ws.deadline(), deadline);
    advance(Duration::from_secs(2)).await;
    alice.ws.fire_deadline();
    assert_eq!(alice.closed().await.0, 4200);

    let mut anonymous = node.client();
    let code = anonymous.error("refresh", json!({"token": token("bob", &[], &[])})).await;
    assert_eq!(code, "unauthorized");
}
