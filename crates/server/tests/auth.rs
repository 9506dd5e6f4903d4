//! Authentication and authorization over real sockets: each credential source, refusals
//! before the upgrade (RFC 6455 §4.2.2: an HTTP status instead of 101), Origin checks
//! (RFC 6455 §10.2), channel permissions, first-message mode, token expiry and `refresh`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};
use switchboard_auth::{Algorithm, VerifierBuilder, mint_hs256};
use switchboard_proto::JSON_SUBPROTOCOL;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::http::{self, Response, upgrade};
use switchboard_test_support::protocol::ProtocolClient;
use switchboard_test_support::server::TestServer;
use switchboard_test_support::tokens::{
    API_KEY, OTHER_SECRET, SECRET, claims, config, expired_token, first_message_config, sign,
    token, token_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single expected answer may take.
const LIMIT: Duration = Duration::from_secs(5);
/// A 2048-bit RSA public key (PEM), test-only.
const RSA_PUBLIC_KEY: &[u8] = include_bytes!("../../auth/tests/keys/rsa.pub.pem");
/// The header `mint_hs256` writes.
const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
const COOKIE: &str = "sb_token";
/// `first_message_timeout` in first-message tests.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------
// Credential sources

#[tokio::test]
async fn bearer_header_authenticates() {
    let server = TestServer::start(config()).await;
    let bearer = format!("Bearer {}", token("alice", &[], &[]));
    let mut alice =
        ProtocolClient::open(server.addr, "/ws", &[], &[("Authorization", &bearer)]).await;
    assert_eq!(alice.user().await.as_deref(), Some("alice"));
}

#[tokio::test]
async fn bearer_subprotocol_entry_authenticates_and_is_never_echoed() {
    let server = TestServer::start(config()).await;
    let entry = format!("switchboard.bearer.{}", token("alice", &[], &[]));

    let offered = format!("Sec-WebSocket-Protocol: {JSON_SUBPROTOCOL}, {entry}\r\n");
    let head = switching_head(server.addr, &upgrade(server.addr, "/ws", &offered)).await;
    assert_eq!(head.header("sec-websocket-protocol"), Some(JSON_SUBPROTOCOL), "{head}");
    assert!(!head.head.contains("switchboard.bearer"), "the token came back: {head}");

    // Offered alone, the entry is not a protocol choice: no Sec-WebSocket-Protocol at all.
    let alone = format!("Sec-WebSocket-Protocol: {entry}\r\n");
    let head = switching_head(server.addr, &upgrade(server.addr, "/ws", &alone)).await;
    assert_eq!(head.header("sec-websocket-protocol"), None, "{head}");

    let mut alice =
        ProtocolClient::open(server.addr, "/ws", &[JSON_SUBPROTOCOL, &entry], &[]).await;
    assert_eq!(alice.ws.protocol.as_deref(), Some(JSON_SUBPROTOCOL));
    assert_eq!(alice.user().await.as_deref(), Some("alice"));
}

#[tokio::test]
async fn bearer_subprotocol_prefix_matches_in_any_case_and_is_never_echoed() {
    let server = TestServer::start(config()).await;
    let jwt = token("alice", &[], &[]);
    for prefix in ["Switchboard.Bearer.", "SWITCHBOARD.BEARER."] {
        let entry = format!("{prefix}{jwt}");
        let offered = format!("Sec-WebSocket-Protocol: {entry}\r\n");
        let head = switching_head(server.addr, &upgrade(server.addr, "/ws", &offered)).await;
        assert_eq!(head.header("sec-websocket-protocol"), None, "{head}");
        assert!(!head.head.contains(&jwt), "the token came back: {head}");
        let mut alice =
            ProtocolClient::open(server.addr, "/ws", &[JSON_SUBPROTOCOL, &entry], &[]).await;
        assert_eq!(alice.ws.protocol.as_deref(), Some(JSON_SUBPROTOCOL));
        assert_eq!(alice.user().await.as_deref(), Some("alice"));
    }
    let mut bob = ProtocolClient::open(
        server.addr,
        "/ws",
        &[],
        &[("Authorization", &format!("BEARER {}", token("bob", &[], &[])))],
    )
    .await;
    assert_eq!(bob.user().await.as_deref(), Some("bob"));
}

#[tokio::test]
async fn unsupported_subprotocols_that_look_like_credentials_are_not_echoed() {
    let server = TestServer::start(config()).await;
    let jwt = token("alice", &[], &[]);
    let ticket = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";
    let offered = format!("Sec-WebSocket-Protocol: mqtt, auth.{jwt}, {ticket}, x-token-1\r\n");
    let refusal = refused(server.addr, &upgrade(server.addr, "/ws", &offered)).await;
    assert_eq!(refusal.status, 400, "{refusal:?}");
    assert_eq!(refusal.header("content-type"), Some("application/json"), "{refusal:?}");
    let message = "unsupported subprotocol: offered mqtt, <redacted>, <redacted>, <redacted>; \
                   supported are switchboard.v1.json, switchboard.v1.msgpack";
    let expected = json!({"error": {"code": "unsupported_subprotocol", "message": message, "temporary": false}});
    assert_eq!(refusal.json(), expected);
    assert!(!refusal.body.contains(&jwt) && !refusal.body.contains(ticket), "{refusal:?}");
}

#[tokio::test]
async fn cookie_authenticates_when_configured() {
    let cookie = format!("theme=dark; {COOKIE}={}; lang=en", token("alice", &[], &[]));

    // Without a configured cookie name, cookies carry no credentials.
    let server = TestServer::start(config()).await;
    let mut anonymous = ProtocolClient::open(server.addr, "/ws", &[], &[("Cookie", &cookie)]).await;
    assert_eq!(anonymous.user().await, None);

    let mut config = config();
    config.auth.token_cookie = Some(COOKIE.to_owned());
    let server = TestServer::start(config).await;
    let mut alice = ProtocolClient::open(server.addr, "/ws", &[], &[("Cookie", &cookie)]).await;
    assert_eq!(alice.user().await.as_deref(), Some("alice"));
}

#[tokio::test]
async fn query_token_is_ignored_without_the_danger_switch() {
    let path = format!("/ws?token={}", token("alice", &[], &[]));

    let server = TestServer::start(config()).await;
    let mut anonymous = ProtocolClient::open(server.addr, &path, &[], &[]).await;
    assert_eq!(anonymous.user().await, None);

    let mut config = config();
    config.auth.required = true;
    let server = TestServer::start(config).await;
    let request = upgrade(server.addr, &path, "");
    assert_unauthorized(
        server.addr,
        &request,
        "credentials_required",
        "this server requires a token or a ticket",
    )
    .await;
}

#[tokio::test]
async fn query_token_authenticates_with_the_danger_switch() {
    let mut config = config();
    config.auth.danger_token_in_query = true;
    let server = TestServer::start(config).await;
    let path = format!("/ws?v=1&token={}", token("alice", &[], &[]));
    let mut alice = ProtocolClient::open(server.addr, &path, &[], &[]).await;
    assert_eq!(alice.user().await.as_deref(), Some("alice"));
}

#[tokio::test]
async fn ticket_from_the_api_key_authenticates_once() {
    let server = TestServer::start(config()).await;
    let body = json!({"user": "alice", "channels": ["news:*"]}).to_string();
    let response = http(
        server.addr,
        "POST",
        "/api/ticket",
        &format!("Authorization: apikey {API_KEY}\r\nContent-Type: application/json\r\n"),
        &body,
    )
    .await;
    let ticket = ticket_of(&response);

    let path = format!("/ws?ticket={ticket}");
    let mut alice = ProtocolClient::open(server.addr, &path, &[], &[]).await;
    assert_eq!(alice.user().await.as_deref(), Some("alice"));
    alice.ok("subscribe", json!({"channel": "news:a"})).await;
    assert_eq!(alice.error("subscribe", json!({"channel": "sports:a"})).await, "permission_denied");

    let request = upgrade(server.addr, &path, "");
    assert_unauthorized(server.addr, &request, "ticket_invalid", "unknown or already used ticket")
        .await;
}

#[tokio::test]
async fn ticket_from_a_bearer_token_carries_its_claims() {
    let server = TestServer::start(config()).await;
    let bearer = format!("Authorization: Bearer {}\r\n", token("alice", &["news:*"], &["news:a"]));
    let response = http(server.addr, "POST", "/api/ticket", &bearer, "").await;
    let ticket = ticket_of(&response);

    let path = format!("/ws?ticket={ticket}");
    let mut alice = ProtocolClient::open(server.addr, &path, &[], &[]).await;
    assert_eq!(alice.user().await.as_deref(), Some("alice"));
    alice.ok("subscribe", json!({"channel": "news:b"})).await;
    alice.ok("publish", json!({"channel": "news:a", "data": 1})).await;
    let code = alice.error("publish", json!({"channel": "news:b", "data": 1})).await;
    assert_eq!(code, "permission_denied");

    let request = upgrade(server.addr, &path, "");
    assert_unauthorized(server.addr, &request, "ticket_invalid", "unknown or already used ticket")
        .await;
}

#[tokio::test]
async fn ticket_endpoint_refuses_bad_credentials() {
    let server = TestServer::start(config()).await;
    let bearer = "Authorization: Bearer not.a.token\r\n";
    let response = http(server.addr, "POST", "/api/ticket", bearer, "").await;
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(response.header("www-authenticate"), Some("Bearer"), "{response:?}");
    assert_eq!(response.json()["error"]["code"], "unauthorized", "{response:?}");

    let expired = format!("Authorization: Bearer {}\r\n", expired_token("alice"));
    let response = http(server.addr, "POST", "/api/ticket", &expired, "").await;
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "token_expired", "{response:?}");

    let wrong_key = "Authorization: apikey wrong\r\n";
    let response = http(server.addr, "POST", "/api/ticket", wrong_key, "{\"user\":\"a\"}").await;
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(response.header("www-authenticate"), Some("apikey"), "{response:?}");
}

#[tokio::test]
async fn issue_12_one_user_cannot_take_every_ticket() {
    // The defaults: 10 pending tickets per user.
    let server = TestServer::start(config()).await;
    let mallory = format!("Authorization: Bearer {}\r\n", token("mallory", &["news:*"], &[]));
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let response = http(server.addr, "POST", "/api/ticket", &mallory, "").await;
        if response.status == 429 {
            let retry_after: u64 = response
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .expect("a Retry-After in seconds");
            // Mallory's oldest ticket expires within its 30 s lifetime.
            assert!((1..=30).contains(&retry_after), "{response:?}");
            let expected = json!({"error": {
                "code": "rate_limited",
                "message": "too many pending tickets for this user: redeem them or wait for them \
                            to expire",
                "temporary": true,
            }});
            assert_eq!(response.json(), expected, "{response:?}");
        }
        statuses.push(response.status);
    }
    assert_eq!(statuses[..10], [200; 10]);
    assert_eq!(statuses[10..], [429; 20]);
    // Another user, and the API key for anyone, still get theirs.
    let alice = format!("Authorization: Bearer {}\r\n", token("alice", &["news:*"], &[]));
    ticket_of(&http(server.addr, "POST", "/api/ticket", &alice, "").await);
    let api_key = format!("Authorization: apikey {API_KEY}\r\n");
    let body = json!({"user": "mallory"}).to_string();
    ticket_of(&http(server.addr, "POST", "/api/ticket", &api_key, &body).await);
    let metrics = http(server.addr, "GET", "/metrics", "", "").await;
    let line = "switchboard_rate_limited_total{reason=\"tickets_per_user\"} 20";
    assert!(metrics.body.lines().any(|l| l == line), "{}", metrics.body);
}

#[tokio::test]
async fn issue_12_token_holders_cannot_take_the_api_key_reserve() {
    let mut config = config();
    config.auth.tickets.max_pending = 12;
    config.auth.tickets.reserved = 4;
    config.auth.tickets.max_pending_per_user = 5;
    let server = TestServer::start(config).await;
    let mut statuses = Vec::new();
    for user in ["u1", "u2"] {
        let bearer = format!("Authorization: Bearer {}\r\n", token(user, &["news:*"], &[]));
        for _ in 0..5 {
            statuses.push(http(server.addr, "POST", "/api/ticket", &bearer, "").await.status);
        }
    }
    // Eight of twelve for token holders: the ninth and tenth are refused.
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 503, 503]);
    let bearer = format!("Authorization: Bearer {}\r\n", token("u3", &["news:*"], &[]));
    let response = http(server.addr, "POST", "/api/ticket", &bearer, "").await;
    assert_eq!(response.status, 503, "{response:?}");
    assert!(response.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()));
    assert_eq!(response.json()["error"]["code"], "unavailable", "{response:?}");
    let api_key = format!("Authorization: apikey {API_KEY}\r\n");
    let body = json!({"user": "u3"}).to_string();
    for _ in 0..4 {
        ticket_of(&http(server.addr, "POST", "/api/ticket", &api_key, &body).await);
    }
    let response = http(server.addr, "POST", "/api/ticket", &api_key, &body).await;
    assert_eq!(response.status, 503, "the store is full: {response:?}");
}

#[tokio::test]
async fn forged_ticket_is_refused() {
    let server = TestServer::start(config()).await;
    // The shape of a real ticket: 32 bytes in base64url.
    let forged = URL_SAFE_NO_PAD.encode([0x5a; 32]);
    let request = upgrade(server.addr, &format!("/ws?ticket={forged}"), "");
    assert_unauthorized(server.addr, &request, "ticket_invalid", "unknown or already used ticket")
        .await;
    let request = upgrade(server.addr, "/ws?ticket=", "");
    assert_unauthorized(server.addr, &request, "ticket_invalid", "unknown or already used ticket")
        .await;
}

#[tokio::test]
async fn ticket_lifetime_past_the_clock_is_a_bad_request() {
    let server = TestServer::start(config()).await;
    let body = json!({"user": "alice", "expires_in": u64::MAX}).to_string();
    let headers = format!("Authorization: apikey {API_KEY}\r\nContent-Type: application/json\r\n");
    let response = http(server.addr, "POST", "/api/ticket", &headers, &body).await;
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(response.json()["error"]["code"], "bad_request", "{response:?}");
}

#[tokio::test]
async fn credentials_are_taken_from_the_first_source_present() {
    let mut config = config();
    config.auth.token_cookie = Some(COOKIE.to_owned());
    let server = TestServer::start(config).await;
    let bearer = format!("Bearer {}", token("alice", &[], &[]));
    let entry = format!("switchboard.bearer.{}", token("bob", &[], &[]));
    let cookie = format!("{COOKIE}={}", token("carol", &[], &[]));

    let headers = [("Authorization", bearer.as_str()), ("Cookie", cookie.as_str())];
    let mut first =
        ProtocolClient::open(server.addr, "/ws", &[JSON_SUBPROTOCOL, &entry], &headers).await;
    assert_eq!(first.user().await.as_deref(), Some("alice"));
    let headers = [("Cookie", cookie.as_str())];
    let mut second =
        ProtocolClient::open(server.addr, "/ws", &[JSON_SUBPROTOCOL, &entry], &headers).await;
    assert_eq!(second.user().await.as_deref(), Some("bob"));

    // A refused credential is never skipped in favour of a later one.
    let request = upgrade(
        server.addr,
        "/ws",
        &format!("Authorization: Bearer {}\r\nCookie: {cookie}\r\n", token_with(OTHER_SECRET)),
    );
    assert_unauthorized(server.addr, &request, "bad_signature", "bad token signature").await;
}

// ---------------------------------------------------------------------------------------
// Refused tokens

#[tokio::test]
async fn invalid_token_is_refused_with_a_bearer_challenge() {
    let mut config = config();
    config.auth.token_cookie = Some(COOKIE.to_owned());
    let server = TestServer::start(config).await;
    let addr = server.addr;
    for garbage in ["not-a-jwt", "a.b", "a.b.c.d", "e30.e30.", "%%%.%%%.%%%"] {
        for headers in [
            format!("Authorization: Bearer {garbage}\r\n"),
            format!("Sec-WebSocket-Protocol: {JSON_SUBPROTOCOL}, switchboard.bearer.{garbage}\r\n"),
            format!("Cookie: {COOKIE}={garbage}\r\n"),
        ] {
            let request = upgrade(addr, "/ws", &headers);
            assert_unauthorized(addr, &request, "malformed", "malformed token").await;
        }
    }
}

#[tokio::test]
async fn expired_token_is_refused_as_token_expired() {
    let server = TestServer::start(config()).await;
    let headers = format!("Authorization: Bearer {}\r\n", expired_token("alice"));
    let request = upgrade(server.addr, "/ws", &headers);
    assert_unauthorized(server.addr, &request, "token_expired", "token expired").await;
}

#[tokio::test]
async fn alg_none_token_is_refused() {
    let server = TestServer::start(config()).await;
    let claims = serde_json::to_vec(&claims("alice", Duration::from_secs(3600), &["*"], &["*"]))
        .expect("serialize claims");
    let signed = token("alice", &["*"], &["*"]);
    let signature = signed.rsplit_once('.').map(|(_, s)| s).expect("a signature");
    let mut forgeries = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let unsigned = format!("{}.{}", b64(header.as_bytes()), b64(&claims));
        // RFC 7519 §6.1: an unsecured JWT has an empty signature; some libraries also
        // accepted one with the original signature left on.
        forgeries.push(format!("{unsigned}."));
        forgeries.push(format!("{unsigned}.{signature}"));
    }
    for forged in forgeries {
        let request = upgrade(server.addr, "/ws", &format!("Authorization: Bearer {forged}\r\n"));
        assert_unauthorized(
            server.addr,
            &request,
            "wrong_algorithm",
            "token algorithm not allowed",
        )
        .await;
    }
}

#[tokio::test]
async fn token_signed_with_another_secret_is_refused() {
    let server = TestServer::start(config()).await;
    let headers = format!("Authorization: Bearer {}\r\n", token_with(OTHER_SECRET));
    let request = upgrade(server.addr, "/ws", &headers);
    assert_unauthorized(server.addr, &request, "bad_signature", "bad token signature").await;
}

#[tokio::test]
async fn hmac_token_is_refused_by_an_rs256_verifier() {
    let mut config = config();
    let verifier = VerifierBuilder::pem(Algorithm::Rs256, RSA_PUBLIC_KEY).build();
    config.auth.verifier = Some(Arc::new(verifier.expect("an RS256 verifier")));
    let server = TestServer::start(config).await;

    let claims = claims("alice", Duration::from_secs(3600), &["*"], &["*"]);
    let payload = serde_json::to_vec(&claims).expect("serialize claims");
    // The hand-made HMAC signs exactly as `mint_hs256` does.
    let by_hand = hs256(HS256_HEADER.as_bytes(), &payload, SECRET);
    assert_eq!(by_hand, mint_hs256(SECRET, &claims).expect("mint"));
    // The key-confusion attack (RFC 8725 §2.1): HMAC keyed with the public key, which
    // anyone has. A verifier taking the algorithm from the token would accept it.
    let confused = hs256(HS256_HEADER.as_bytes(), &payload, RSA_PUBLIC_KEY);
    for forged in [by_hand, confused] {
        let request = upgrade(server.addr, "/ws", &format!("Authorization: Bearer {forged}\r\n"));
        assert_unauthorized(
            server.addr,
            &request,
            "wrong_algorithm",
            "token algorithm not allowed",
        )
        .await;
    }
}

#[tokio::test]
async fn token_expiring_past_the_clock_range_is_handled() {
    let server = TestServer::start(config()).await;
    let mut far = claims("alice", Duration::from_secs(3600), &[], &[]);
    far.exp = u64::MAX;
    let bearer = format!("Authorization: Bearer {}\r\n", sign(&far));
    let request = upgrade(server.addr, "/ws", &bearer);
    // Refused as an invalid claim, or accepted as a working connection: either, not a panic.
    match WsClient::expect_refusal(server.addr, request.as_bytes()).await {
        Ok(refusal) => assert_eq!(refusal.status, 401, "{}", refusal.response),
        Err(_) => {
            let mut alice = authenticated(server.addr, &sign(&far)).await;
            assert_eq!(alice.user().await.as_deref(), Some("alice"));
        }
    }
}

#[tokio::test]
async fn missing_credentials_are_refused_when_required() {
    let mut config = config();
    config.auth.required = true;
    let server = TestServer::start(config).await;
    for path in ["/ws", "/ws?token=", "/ws?other=1"] {
        let request = upgrade(server.addr, path, "Authorization: Basic YTpi\r\n");
        assert_unauthorized(
            server.addr,
            &request,
            "credentials_required",
            "this server requires a token or a ticket",
        )
        .await;
    }
    let bearer = format!("Bearer {}", token("alice", &[], &[]));
    let mut alice =
        ProtocolClient::open(server.addr, "/ws", &[], &[("Authorization", &bearer)]).await;
    assert_eq!(alice.user().await.as_deref(), Some("alice"));
}

#[tokio::test]
async fn required_credentials_guard_the_echo_endpoint() {
    let mut config = config();
    config.auth.required = true;
    let server = TestServer::start(config).await;
    let request = upgrade(server.addr, "/echo", "");
    assert_unauthorized(
        server.addr,
        &request,
        "credentials_required",
        "this server requires a token or a ticket",
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Origin

#[tokio::test]
async fn own_origin_is_allowed() {
    let mut config = config();
    config.origins.allow_localhost = false;
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let behind_proxy = upgrade(addr, "/ws", "Origin: https://chat.example.com\r\n")
        .replace(&format!("Host: {addr}"), "Host: chat.example.com");
    switching_head(addr, &behind_proxy).await;
    let direct = upgrade(addr, "/ws", &format!("Origin: http://{addr}\r\n"));
    switching_head(addr, &direct).await;

    let other_port = SocketAddr::new(addr.ip(), addr.port().wrapping_add(1));
    let request = upgrade(addr, "/ws", &format!("Origin: http://{other_port}\r\n"));
    assert_forbidden(addr, &request, &format!("origin \"http://{other_port}\" is not allowed"))
        .await;
}

#[tokio::test]
async fn localhost_origins_are_allowed_by_default() {
    let server = TestServer::start(config()).await;
    for origin in ["http://localhost:3000", "http://127.0.0.1:5173", "http://[::1]:8000"] {
        let request = upgrade(server.addr, "/ws", &format!("Origin: {origin}\r\n"));
        switching_head(server.addr, &request).await;
    }
    let mut config = config();
    config.origins.allow_localhost = false;
    let server = TestServer::start(config).await;
    let request = upgrade(server.addr, "/ws", "Origin: http://localhost:3000\r\n");
    assert_forbidden(server.addr, &request, "origin \"http://localhost:3000\" is not allowed")
        .await;
}

#[tokio::test]
async fn foreign_origin_is_refused_even_with_valid_credentials() {
    let mut config = config();
    config.auth.token_cookie = Some(COOKIE.to_owned());
    let server = TestServer::start(config).await;
    let request = upgrade(server.addr, "/ws", "Origin: https://evil.example\r\n");
    assert_forbidden(server.addr, &request, "origin \"https://evil.example\" is not allowed").await;
    // Cross-site WebSocket hijacking: the browser attaches the victim's cookie.
    let cookie = format!("Cookie: {COOKIE}={}\r\n", token("alice", &["*"], &["*"]));
    let request = upgrade(server.addr, "/ws", &format!("Origin: https://evil.example\r\n{cookie}"));
    assert_forbidden(server.addr, &request, "origin \"https://evil.example\" is not allowed").await;
    // The echo endpoint is guarded too.
    let request = upgrade(server.addr, "/echo", "Origin: https://evil.example\r\n");
    assert_forbidden(server.addr, &request, "origin \"https://evil.example\" is not allowed").await;
}

#[tokio::test]
async fn duplicate_origin_headers_are_refused_whatever_they_name() {
    let mut config = config();
    config.origins.allowed = vec!["https://app.example".to_owned()];
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let allowed = "Origin: https://app.example\r\n";
    let evil = "Origin: https://evil.example\r\n";
    for (path, headers) in [
        ("/ws", format!("{evil}{allowed}")),
        ("/ws", format!("{allowed}{evil}")),
        ("/ws", format!("{allowed}{allowed}")),
        ("/echo", format!("{evil}X-Between: 1\r\n{allowed}")),
    ] {
        let request = upgrade(addr, path, &headers);
        assert_forbidden(addr, &request, "more than one Origin header").await;
    }
    switching_head(addr, &upgrade(addr, "/ws", allowed)).await;
    let metrics = http(addr, "GET", "/metrics", "", "").await.body;
    let sample = "switchboard_handshake_failures_total{reason=\"duplicate_origin\"} 4\n";
    assert!(metrics.contains(sample), "{metrics}");
}

#[tokio::test]
async fn upgrade_requests_with_a_body_are_refused() {
    let server = TestServer::start(config()).await;
    let addr = server.addr;
    let with_body = |path: &str, headers: &str, body: &str| upgrade(addr, path, headers) + body;
    let message =
        "an upgrade request has no body: send it without Content-Length or Transfer-Encoding";
    for request in [
        with_body("/ws", "Content-Length: 5\r\n", "hello"),
        with_body("/ws", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        with_body("/echo", "Content-Length: 2\r\n", "hi"),
    ] {
        let refusal = refused(addr, &request).await;
        assert_eq!(refusal.status, 400, "{request}\n---\n{refusal:?}");
        assert_eq!(refusal.header("connection"), Some("close"), "{refusal:?}");
        let expected =
            json!({"error": {"code": "body_not_allowed", "message": message, "temporary": false}});
        assert_eq!(refusal.json(), expected, "{request}");
    }
    // An empty body announced as such is no body.
    switching_head(addr, &upgrade(addr, "/ws", "Content-Length: 0\r\n")).await;
    let metrics = http(addr, "GET", "/metrics", "", "").await.body;
    let sample = "switchboard_handshake_failures_total{reason=\"body_not_allowed\"} 3\n";
    assert!(metrics.contains(sample), "{metrics}");
}

#[tokio::test]
async fn look_alike_origins_are_refused() {
    let mut config = config();
    config.origins.allowed = vec!["https://example.com".to_owned()];
    let server = TestServer::start(config).await;
    let allowed = upgrade(server.addr, "/ws", "Origin: https://example.com\r\n");
    switching_head(server.addr, &allowed).await;
    for origin in [
        "https://example.com.evil.org",
        "https://evilexample.com",
        "null",
        "http://example.com",
        "https://example.com:8443",
        "https://sub.example.com",
        "https://example.com@evil.org",
        "https://example.com/",
        "example.com",
    ] {
        let request = upgrade(server.addr, "/ws", &format!("Origin: {origin}\r\n"));
        assert_forbidden(server.addr, &request, &format!("origin {origin:?} is not allowed")).await;
    }
}

#[tokio::test]
async fn wildcard_origin_admits_subdomains_only() {
    let mut config = config();
    config.origins.allowed = vec!["https://*.example.com".to_owned()];
    let server = TestServer::start(config).await;
    for origin in ["https://a.example.com", "https://A.B.Example.COM"] {
        let request = upgrade(server.addr, "/ws", &format!("Origin: {origin}\r\n"));
        switching_head(server.addr, &request).await;
    }
    for origin in [
        "https://example.com",
        "https://.example.com",
        "https://a.example.com.evil.org",
        "https://evilexample.com",
        "https://a-example.com",
        "http://a.example.com",
        "https://a.example.com:8443",
    ] {
        let request = upgrade(server.addr, "/ws", &format!("Origin: {origin}\r\n"));
        assert_forbidden(server.addr, &request, &format!("origin {origin:?} is not allowed")).await;
    }
}

#[tokio::test]
async fn missing_origin_is_refused_when_required() {
    let mut config = config();
    config.origins.allow_missing = false;
    let server = TestServer::start(config).await;
    let request = upgrade(server.addr, "/ws", "");
    assert_forbidden(server.addr, &request, "an Origin header is required").await;
    let request = upgrade(server.addr, "/ws", "Origin: http://localhost:3000\r\n");
    switching_head(server.addr, &request).await;
}

// ---------------------------------------------------------------------------------------
// First-message mode at the door (what a session does with it: `protocol/auth.rs`)

#[tokio::test]
async fn first_message_mode_closes_without_connect() {
    let server = TestServer::start(first_message_config(FIRST_MESSAGE_TIMEOUT)).await;
    let started = Instant::now();
    let mut client = ProtocolClient::open(server.addr, "/ws", &[], &[]).await;
    let push = client.recv().await;
    assert_eq!(client.closed().await.0, 4102, "after {push}");
    let elapsed = started.elapsed();
    assert_eq!(
        push,
        json!({
            "push": "disconnect",
            "code": 4102,
            "reason": "no connect with a token in time",
            "advice": "backoff"
        })
    );
    assert!(elapsed >= FIRST_MESSAGE_TIMEOUT, "closed early: {elapsed:?}");
}

#[tokio::test]
async fn first_message_connect_accepts_a_ticket() {
    let server = TestServer::start(first_message_config(FIRST_MESSAGE_TIMEOUT)).await;
    let bearer = format!("Authorization: Bearer {}\r\n", token("alice", &[], &[]));
    let ticket = ticket_of(&http(server.addr, "POST", "/api/ticket", &bearer, "").await);
    let mut client = ProtocolClient::open(server.addr, "/ws", &[], &[]).await;
    let result = client.ok("connect", json!({"token": ticket})).await;
    assert_eq!(result["user"], "alice", "{result}");
}

// ---------------------------------------------------------------------------------------
// Helpers

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT with `header` and `payload`, signed HS256 with `key` (RFC 7515 §3.1, RFC 7518 §3.2).
fn hs256(header: &[u8], payload: &[u8], key: &[u8]) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let signature = hmac_sha256(key, message.as_bytes());
    format!("{message}.{}", b64(&signature))
}

/// HMAC-SHA-256 (RFC 2104), by hand: the library's minting refuses PEM keys as secrets.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// Sends an upgrade request the server must refuse.
async fn refused(addr: SocketAddr, request: &str) -> Response {
    let refusal =
        WsClient::expect_refusal(addr, request.as_bytes()).await.expect("a refusal, not a 101");
    http::parse(&refusal.response)
}

/// Asserts a 401 with `WWW-Authenticate: Bearer` and exactly this JSON body.
async fn assert_unauthorized(addr: SocketAddr, request: &str, code: &str, message: &str) {
    let refusal = refused(addr, request).await;
    assert_eq!(refusal.status, 401, "{request}\n---\n{refusal:?}");
    assert_eq!(refusal.header("www-authenticate"), Some("Bearer"), "{refusal:?}");
    assert_eq!(refusal.header("content-type"), Some("application/json"), "{refusal:?}");
    assert_eq!(refusal.header("connection"), Some("close"), "{refusal:?}");
    let expected = json!({"error": {"code": code, "message": message, "temporary": false}});
    assert_eq!(refusal.json(), expected, "{request}");
}

/// Asserts a 403 `origin_not_allowed` with exactly this message.
async fn assert_forbidden(addr: SocketAddr, request: &str, message: &str) {
    let refusal = refused(addr, request).await;
    assert_eq!(refusal.status, 403, "{request}\n---\n{refusal:?}");
    assert_eq!(refusal.header("www-authenticate"), None, "{refusal:?}");
    let expected =
        json!({"error": {"code": "origin_not_allowed", "message": message, "temporary": false}});
    assert_eq!(refusal.json(), expected, "{request}");
}

/// Sends an upgrade request the server must accept and returns the 101 response head.
async fn switching_head(addr: SocketAddr, request: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write the request");
    let mut raw = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = stream.read_buf(&mut raw).await.expect("read the response");
            assert!(read > 0, "closed: {}", String::from_utf8_lossy(&raw));
        }
    })
    .await
    .expect("a response head in time");
    let text = String::from_utf8_lossy(&raw);
    let head = text.split_once("\r\n\r\n").map(|(h, _)| h).expect("a response head");
    assert!(head.starts_with("HTTP/1.1 101 "), "{request}\n---\n{text}");
    Response { status: 101, head: head.to_owned(), body: String::new() }
}

/// Sends one HTTP request with `Connection: close` and extra header lines (each ending in
/// CRLF), and reads the response to the end.
async fn http(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> Response {
    http::request(addr, method, path, &http::header_lines(headers), body).await
}

/// The ticket in a `POST /api/ticket` response, checking the rest of it.
fn ticket_of(response: &Response) -> String {
    assert_eq!(response.status, 200, "{response:?}");
    let body = response.json();
    assert_eq!(body["expires_in"], 30, "{body}");
    let ticket = body["ticket"].as_str().expect("a ticket").to_owned();
    assert_eq!(ticket.len(), 43, "32 bytes in base64url: {ticket}");
    ticket
}

/// A connection authenticated with `token` in `Authorization`.
async fn authenticated(addr: SocketAddr, token: &str) -> ProtocolClient {
    let bearer = format!("Bearer {token}");
    ProtocolClient::open(addr, "/ws", &[], &[("Authorization", &bearer)]).await
}
