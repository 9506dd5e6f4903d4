//! Reconnection against a real server: cut connections, a restarted server, a fleet cut at
//! once, refused and expiring credentials.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::json;
use switchboard_auth::{Algorithm, Claims, VerifierBuilder, mint_hs256};
use switchboard_client::{
    BoxError, Client, ConnectionState, DisconnectReason, Error, SubscriptionEvent, TokenProvider,
};
use switchboard_server::{Config, Server};
use switchboard_test_support::server::{TestServer, open_config};
use tokio::time::{sleep, timeout};

use support::{
    LIMIT, Proxy, connected, fast, next_event, next_non_presence, next_publication, wait_state,
};

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

    let publishing = tokio::spawn(async move {
        for n in 1..=N {
            publisher.publish("feed", n).await.expect("publish");
            if n % 4 == 0 {
                sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut cuts = 0;
    while !publishing.is_finished() && cuts < 6 {
        sleep(Duration::from_millis(40)).await;
        let before = subscriber.state().connections;
        proxy.cut();
        wait_state(&subscriber, |s| {
            s.state == ConnectionState::Connected && s.connections > before
        })
        .await;
        cuts += 1;
    }
    timeout(LIMIT, publishing).await.expect("publishing in time").expect("the publisher");
    assert!(cuts >= 2, "only {cuts} cuts landed while publishing");

    let mut expected = 1;
    let mut recoveries = 0;
    while expected <= N {
        match next_event(&mut sub).await {
            SubscriptionEvent::Publication(p) => {
                assert_eq!(p.offset, expected, "lost or duplicated around offset {expected}");
                assert_eq!(p.data, json!(expected));
                expected += 1;
            }
            SubscriptionEvent::Recovered { recovered: true } => recoveries += 1,
            SubscriptionEvent::Join(_) | SubscriptionEvent::Leave(_) => {}
            other => panic!("unexpected {other:?} after {} publications", expected - 1),
        }
    }
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
    let restarted = timeout(LIMIT, async {
        loop {
            match Server::bind(config.clone()).await {
                Ok(server) => return server,
                // The old listener's port may take a moment to be free again.
                Err(_) => sleep(Duration::from_millis(20)).await,
            }
        }
    })
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
    sleep(Duration::from_millis(300)).await;
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
    // Past the first token's expiry (at most 3 s): without `refresh` the server would
    // have closed with 4200 and the client reconnected.
    sleep(Duration::from_secs(4)).await;
    let state = client.state();
    assert_eq!(state.state, ConnectionState::Connected, "{state:?}");
    assert_eq!(state.connections, 1, "the connection was replaced: {state:?}");
    assert!(calls.load(Ordering::SeqCst) >= 2, "no refresh");
}
