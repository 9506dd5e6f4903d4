//! Reconnection against a real server: cut connections, a restarted server, a fleet cut at
//! once, refused and expiring credentials, one-time tickets.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use switchboard_auth::{Algorithm, Claims, VerifierBuilder, mint_hs256};
use switchboard_client::{
    BoxError, Client, ConnectionState, DisconnectReason, Error, SubscriptionEvent, TokenProvider,
    Transport,
};
use switchboard_server::{Config, Server};
use switchboard_test_support::rust_client::expect_every_publication;
use switchboard_test_support::server::{TestServer, open_config};
use switchboard_test_support::{http, poll_until, tokens, wait_until};
use tokio::time::timeout;

use support::{LIMIT, Proxy, connected, fast, next_non_presence, next_publication, wait_state};

const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

/// `open_config` with the default namespace keeping `history` publications.
fn config_with_history(history: usize) -> Config {
    let mut config = open_config();
    config.hub.namespaces.get_mut("").expect("the default namespace").history_size = history;
    config
}

/// `open_config` requiring HS256 tokens, checked without leeway so expiry is prompt.
fn auth_config() -> Config {
    let mut config = open_config();
    let verifier = VerifierBuilder::hmac(Algorithm::Hs256, SECRET.to_vec())
        .leeway(Duration::ZERO)
        .build()
        .expect("a verifier");
    config.auth.verifier = Some(Arc::new(verifier));
    config.auth.required = true;
    config
}

fn token(ttl: Duration) -> String {
    mint_hs256(SECRET, &Claims::new("ann", ttl, SystemTime::now())).expect("mint a token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_mid_stream_lose_and_duplicate_nothing() {
    const N: u64 = 1200;
    let server = TestServer::start(config_with_history(10_000)).await;
    let proxy = Proxy::start(server.addr).await;
    let subscriber = fast(&proxy.url()).build().expect("build");
    let publisher = fast(&format!("ws://{}/ws", server.addr)).build().expect("build");
    let mut sub = subscriber.subscribe("feed").await.expect("subscribe");

    // Every `N / 6` publications the publisher asks for a cut and goes on publishing; it
    // waits only when the previous cut is not yet taken, so every cut lands mid-stream.
    let (cut_now, mut cut_asked) = tokio::sync::mpsc::channel::<()>(1);
    let done = Arc::new(AtomicBool::new(false));
    let publishing = tokio::spawn({
        let done = Arc::clone(&done);
        async move {
            for n in 1..=N {
                publisher.publish("feed", n).await.expect("publish");
                if n % (N / 6) == 0 && n < N {
                    cut_now.send(()).await.expect("the cutter is running");
                }
            }
            done.store(true, Ordering::SeqCst);
        }
    });
    let mut cuts = 0;
    while cut_asked.recv().await.is_some() {
        if done.load(Ordering::SeqCst) {
            break;
        }
        let before = subscriber.state().connections;
        proxy.cut();
        cuts += 1;
        wait_state(&subscriber, |s| {
            s.state == ConnectionState::Connected && s.connections > before
        })
        .await;
    }
    timeout(LIMIT, publishing).await.expect("publishing in time").expect("the publisher");
    assert!(cuts >= 2, "only {cuts} cuts landed while publishing");

    let recoveries = expect_every_publication(&mut sub, N).await;
    assert!(recoveries >= 1, "no recovery after {cuts} cuts");
    assert_eq!(sub.position().map(|p| p.offset), Some(N));
}

#[tokio::test]
async fn a_restarted_server_reports_recovered_false() {
    let mut config = open_config();
    config.shutdown_timeout = Duration::from_secs(2);
    let server = TestServer::start(config.clone()).await;
    let addr = server.addr;
    let client = fast(&format!("ws://{addr}/ws")).build().expect("build");
    let mut sub = client.subscribe("room").await.expect("subscribe");
    for n in 1..=3u64 {
        client.publish("room", n).await.expect("publish");
        assert_eq!(next_publication(&mut sub).await, (n, json!(n)));
    }
    let old = sub.position().expect("a position");

    server.shutdown().await;
    config.listen = addr;
    // The old listener's port may take a moment to be free again.
    let restarted = poll_until(LIMIT, || async { Server::bind(config.clone()).await.ok() })
        .await
        .expect("rebind the same port");
    let shutdown = restarted.shutdown_handle();
    tokio::spawn(restarted.run());

    // History and epoch died with the old process.
    assert_eq!(
        next_non_presence(&mut sub).await,
        SubscriptionEvent::Recovered { recovered: false }
    );
    client.publish("room", "after").await.expect("publish");
    assert_eq!(next_publication(&mut sub).await, (1, json!("after")));
    let now = sub.position().expect("a position");
    assert_ne!(now.epoch, old.epoch);
    assert!(client.state().connections >= 2);
    shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_cut_at_once_reconnects_at_spread_instants() {
    let server = TestServer::start(open_config()).await;
    let proxy = Proxy::start(server.addr).await;
    // Default delays and a random seed per client, as in production.
    let clients: Vec<Client> =
        (0..20).map(|_| Client::builder(proxy.url()).build().expect("build")).collect();
    for client in &clients {
        connected(client).await;
    }
    proxy.cut();
    let mut instants = Vec::new();
    for client in &clients {
        let state =
            wait_state(client, |s| s.state == ConnectionState::Connected && s.connections >= 2)
                .await;
        instants.push(state.at);
    }
    instants.sort();
    let spread = instants[instants.len() - 1] - instants[0];
    instants.dedup();
    assert!(instants.len() > 1, "every client reconnected at the same instant");
    // 20 uniform draws in [0, 500 ms] span less than 50 ms with probability ~1e-17.
    assert!(spread >= Duration::from_millis(50), "reconnects within {spread:?}: no jitter");
}

#[tokio::test]
async fn refused_credentials_close_without_a_reconnect_loop() {
    let server = TestServer::start(auth_config()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = fast(&proxy.url()).token("not-a-valid-token").build().expect("build");
    let state = wait_state(&client, |s| s.state == ConnectionState::Closed).await;
    match &state.reason {
        Some(DisconnectReason::Refused { status: 401, code: Some(code), message, .. }) => {
            assert_ne!(code, "token_expired");
            assert!(!message.is_empty());
        }
        other => panic!("expected a 401 refusal, got {other:?}"),
    }
    // Closed for good: the client's task ends (its state sender goes), so it can never
    // connect again.
    let mut states = client.state_changes();
    timeout(LIMIT, async { while states.changed().await.is_ok() {} })
        .await
        .expect("the client's task ends");
    assert_eq!(proxy.accepted(), 1, "the client tried again after a 401");
    assert!(matches!(client.subscribe("room").await, Err(Error::Closed)));

    let good = fast(&proxy.url()).token(token(Duration::from_secs(60))).build().expect("build");
    connected(&good).await;
}

#[tokio::test]
async fn an_expired_static_token_closes_the_client() {
    let server = TestServer::start(auth_config()).await;
    // Expires within a second; nothing can replace it.
    let client = fast(&format!("ws://{}/ws", server.addr))
        .token(token(Duration::from_secs(1)))
        .build()
        .expect("build");
    let state = wait_state(&client, |s| s.state == ConnectionState::Closed).await;
    let expired = matches!(
        state.reason,
        Some(DisconnectReason::Closed { code: 4200, .. })
            | Some(DisconnectReason::Refused { status: 401, .. })
    );
    assert!(expired, "{state:?}");
}

#[tokio::test]
async fn a_token_provider_refreshes_before_expiry() {
    let server = TestServer::start(auth_config()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let provider: TokenProvider = Arc::new({
        let calls = Arc::clone(&calls);
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                let token: Result<String, BoxError> = Ok(token(Duration::from_secs(3)));
                token
            })
        }
    });
    let client =
        fast(&format!("ws://{}/ws", server.addr)).token_provider(provider).build().expect("build");
    connected(&client).await;
    // The first token was minted before this, so it expires by this whole second (`exp`
    // counts whole seconds). Wait for that moment on the wall clock the server checks,
    // then for a ping's answer: without `refresh` the server would have closed with 4200
    // by then and the client reconnected.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let expired = UNIX_EPOCH + Duration::from_secs(now + 3);
    assert!(wait_until(LIMIT, || SystemTime::now() >= expired).await, "the wall clock moves");
    client.ping().await.expect("a pong on the first connection");
    let state = client.state();
    assert_eq!(state.state, ConnectionState::Connected, "{state:?}");
    assert_eq!(state.connections, 1, "the connection was replaced: {state:?}");
    assert!(calls.load(Ordering::SeqCst) >= 2, "no refresh");
}

/// `switchboard_test_support::tokens::config` (a verifier, the API key, `news` for token
/// holders only) requiring credentials.
fn ticket_config() -> Config {
    let mut config = tokens::config();
    config.auth.required = true;
    config
}

/// A one-time ticket for `ann`, who may read and publish `news:*`, from `POST /api/ticket`
/// with the API key.
async fn ticket(server: &TestServer) -> String {
    let authorization = format!("apikey {}", tokens::API_KEY);
    let headers = [("Authorization", authorization.as_str()), ("Content-Type", "application/json")];
    let body = json!({"user": "ann", "channels": ["news:*"], "publish": ["news:*"]}).to_string();
    let response = http::request(server.addr, "POST", "/api/ticket", &headers, &body).await;
    assert_eq!(response.status, 200, "{response:?}");
    response.json()["ticket"].as_str().expect("a ticket").to_owned()
}

#[tokio::test]
async fn a_static_ticket_authenticates_one_connection_over_each_transport() {
    let server = TestServer::start(ticket_config()).await;
    for transport in [Transport::WebSocket, Transport::Sse] {
        let client = fast(&format!("ws://{}/ws", server.addr))
            .transport(transport)
            .token(ticket(&server).await)
            .build()
            .expect("build");
        // Redeemed by the opening request; sent again in `connect` it would be refused.
        connected(&client).await;
        let ack = client.publish("news:tickets", json!({"over": format!("{transport:?}")})).await;
        assert!(ack.is_ok(), "{transport:?}: {ack:?}");
        client.close().await;
    }
}

#[tokio::test]
async fn a_spent_static_ticket_closes_the_client_with_the_servers_reason() {
    let server = TestServer::start(ticket_config()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = fast(&proxy.url()).token(ticket(&server).await).build().expect("build");
    connected(&client).await;
    proxy.cut();
    let state = wait_state(&client, |s| s.state == ConnectionState::Closed).await;
    match &state.reason {
        Some(DisconnectReason::Refused { status: 401, code: Some(code), .. }) => {
            assert_eq!(code, "ticket_invalid", "{state:?}");
        }
        other => panic!("expected a 401 ticket_invalid refusal, got {other:?}"),
    }
    assert_eq!(proxy.accepted(), 2, "one connection, one refused attempt");
}

#[tokio::test]
async fn a_provider_of_tickets_is_asked_for_a_new_one_per_connection() {
    let server = Arc::new(TestServer::start(ticket_config()).await);
    let proxy = Proxy::start(server.addr).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let provider: TokenProvider = Arc::new({
        let (calls, server) = (Arc::clone(&calls), Arc::clone(&server));
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let server = Arc::clone(&server);
            Box::pin(async move { Ok::<_, BoxError>(ticket(&server).await) })
        }
    });
    let client = fast(&proxy.url()).token_provider(provider).build().expect("build");
    connected(&client).await;
    proxy.cut();
    let state = wait_state(&client, |s| s.connections == 2).await;
    assert_eq!(state.state, ConnectionState::Connected, "{state:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one ticket per connection");
    client.publish("news:tickets", 1).await.expect("publish on the second connection");
}
