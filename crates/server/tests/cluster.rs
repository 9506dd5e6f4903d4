//! Several nodes in this process sharing one channel space over their own backplane, a
//! private `redis-server` or `nats-server` (each test runs on both): cross-node fan-out,
//! presence from every node, the node registry, `/readyz` following the backplane, and a
//! backplane restart mid-stream that fails publishes loudly and never leaves a silent gap.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchboard_broker_nats::{NatsBroker, NatsConfig};
use switchboard_broker_redis::{RedisBroker, RedisConfig};
use switchboard_client::{Client, DisconnectReason, ErrorCode, Subscription, SubscriptionEvent};
use switchboard_server::Broker;
use switchboard_server::{Config, Server, ShutdownHandle};
use switchboard_test_support::nats::NatsServer;
use switchboard_test_support::redis::RedisServer;
use switchboard_test_support::rust_client::{LIMIT, fast, next_event, next_publication};
use switchboard_test_support::server::{TestServer, open_config};
use switchboard_test_support::{http, poll_until, wait_until};
use tokio::time::timeout;

/// Which backplane a test runs on.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Redis,
    Nats,
}

/// Two tests of `$body`: on Redis and on NATS.
macro_rules! on_both {
    ($body:ident, $threads:literal) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
            async fn redis() {
                super::$body(super::Kind::Redis).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
            async fn nats() {
                super::$body(super::Kind::Nats).await;
            }
        }
    };
}

on_both!(publications_on_one_node_reach_subscribers_on_the_others_in_order, 4);
on_both!(presence_lists_clients_from_every_node, 4);
on_both!(any_node_lists_every_node_and_channel_and_disconnects_everywhere, 4);
on_both!(readyz_follows_the_backplane_and_healthz_does_not, 2);
on_both!(a_backplane_restart_fails_publishes_loudly_and_never_leaves_a_silent_gap, 4);

/// A private backplane server, killed (by its PID) when dropped.
enum Backplane {
    Redis(RedisServer),
    Nats(NatsServer),
}

impl Backplane {
    fn start(kind: Kind) -> Self {
        match kind {
            Kind::Redis => Self::Redis(RedisServer::start()),
            Kind::Nats => Self::Nats(NatsServer::start()),
        }
    }

    fn stop(&mut self) {
        match self {
            Self::Redis(redis) => redis.stop(),
            Self::Nats(nats) => nats.stop(),
        }
    }

    /// Starts it again on the same port: Redis empty (it keeps nothing on disk here), NATS
    /// with its storage (a NATS restarted empty is tested in `switchboard-broker-nats`).
    fn restart(&mut self) {
        match self {
            Self::Redis(redis) => redis.restart(),
            Self::Nats(nats) => nats.restart(),
        }
    }

    /// A broker on it, with presence refreshed every half second.
    async fn broker(&self) -> Arc<dyn Broker> {
        let heartbeat = Duration::from_millis(500);
        match self {
            Self::Redis(redis) => {
                let mut config = RedisConfig::new(redis.url());
                config.presence_heartbeat = heartbeat;
                Arc::new(RedisBroker::connect(config).await.expect("connect to redis"))
            }
            Self::Nats(nats) => {
                let mut config = NatsConfig::new(nats.url());
                config.presence_heartbeat = heartbeat;
                Arc::new(NatsBroker::connect(config).await.expect("connect to nats"))
            }
        }
    }
}

/// The HTTP API key of every node.
const API_KEY: &str = "cluster-tests-api-key-0123456789abcdef";

async fn publications_on_one_node_reach_subscribers_on_the_others_in_order(kind: Kind) {
    const N: u64 = 300;
    let backplane = Backplane::start(kind);
    let (a, b, c) = (
        Node::start(&backplane).await,
        Node::start(&backplane).await,
        Node::start(&backplane).await,
    );
    let on_b = fast(&b.url()).build().expect("build");
    let on_c = fast(&c.url()).build().expect("build");
    let mut subs = vec![
        on_b.subscribe("feed").await.expect("subscribe on b"),
        on_c.subscribe("feed").await.expect("subscribe on c"),
    ];
    let publisher = fast(&a.url()).build().expect("build");
    for n in 1..=N {
        let ack = publisher.publish("feed", n).await.expect("publish on a");
        assert_eq!(ack.offset, n);
    }
    // And one through the HTTP API of node A, which goes through the same broker.
    let api = api(a.addr, "POST", "/api/publish", r#"{"channel":"feed","data":"api"}"#).await;
    assert_eq!(api.status, 200, "{api}");
    for sub in &mut subs {
        for n in 1..=N {
            assert_eq!(next_publication(sub).await, (n, json!(n)), "on {}", sub.channel());
        }
        assert_eq!(next_publication(sub).await, (N + 1, json!("api")));
    }
}

async fn presence_lists_clients_from_every_node(kind: Kind) {
    let backplane = Backplane::start(kind);
    let nodes = [
        Node::start(&backplane).await,
        Node::start(&backplane).await,
        Node::start(&backplane).await,
    ];
    let mut clients = Vec::new();
    let mut subs = Vec::new();
    for node in &nodes {
        let client = fast(&node.url()).build().expect("build");
        subs.push(client.subscribe("room").await.expect("subscribe"));
        clients.push(client);
    }
    // Every node answers with the same three clients, one per node.
    for client in &clients {
        let ids: HashSet<String> =
            client.presence("room").await.expect("presence").into_iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
    }
    // The first subscriber hears the other two join, whichever node they are on.
    let mut joins = HashSet::new();
    while joins.len() < 2 {
        match next_event(&mut subs[0]).await {
            SubscriptionEvent::Join(who) => {
                joins.insert(who.id);
            }
            other => panic!("expected joins, got {other:?}"),
        }
    }
}

async fn any_node_lists_every_node_and_channel_and_disconnects_everywhere(kind: Kind) {
    let backplane = Backplane::start(kind);
    let (a, b) = (Node::start(&backplane).await, Node::start(&backplane).await);
    let mut clients = Vec::new();
    let mut subs = Vec::new();
    for (node, channel) in [(&a, "room"), (&b, "room"), (&b, "room"), (&b, "hall")] {
        let client = fast(&node.url()).build().expect("build");
        subs.push(client.subscribe(channel).await.expect("subscribe"));
        clients.push(client);
    }

    // Each node lists both, itself first and current; B's counts as B reported them.
    let listed = poll_until(LIMIT, || async {
        let nodes = api(a.addr, "GET", "/api/nodes", "").await.json()["nodes"].clone();
        let connections: Vec<u64> =
            nodes.as_array()?.iter().filter_map(|n| n["connections"].as_u64()).collect();
        (connections == [1, 3]).then_some(nodes)
    });
    let nodes = listed.await.expect("node A lists A with 1 connection, then B with 3");
    assert_eq!(nodes[0]["current"], true);
    assert_eq!(nodes[1]["current"], false);
    assert_eq!(
        (nodes[0]["subscriptions"].clone(), nodes[1]["subscriptions"].clone()),
        (json!(1), json!(3))
    );
    assert_eq!(nodes[1]["channels"], 2);
    assert!(nodes[0].get("busiest").is_none(), "channels are listed by /api/channels: {nodes}");
    let from_b = api(b.addr, "GET", "/api/nodes", "").await.json();
    assert_eq!(from_b["nodes"][0]["name"], nodes[1]["name"], "B answers for itself first");

    // Subscribers summed over the nodes, busiest first.
    let summed = poll_until(LIMIT, || async {
        let body = api(a.addr, "GET", "/api/channels", "").await.json();
        let expected = json!({"channels": [
            {"channel": "room", "subscribers": 3},
            {"channel": "hall", "subscribers": 1},
        ], "truncated": false});
        (body == expected).then_some(())
    });
    summed.await.expect("room: 1 on A + 2 on B, hall: 1 on B");
    let one = api(a.addr, "GET", "/api/channels?limit=1", "").await.json();
    assert_eq!(
        one,
        json!({"channels": [{"channel": "room", "subscribers": 3}], "truncated": true})
    );

    // A client of node B, disconnected through node A.
    let presence = api(a.addr, "GET", "/api/presence?channel=hall", "").await.json();
    let id = presence["clients"][0]["client"].as_str().expect("the client in hall").to_owned();
    let body = json!({"client": id, "code": 4403, "reason": "banned"}).to_string();
    let resp = api(a.addr, "POST", "/api/disconnect", &body).await;
    assert_eq!(resp.json(), json!({"disconnected": 1, "complete": true}), "{resp}");
    let mut states = clients[3].state_changes();
    let closed = timeout(LIMIT, states.wait_for(|change| change.state.is_final())).await;
    let reason = closed.expect("closed in time").expect("state").reason.clone();
    assert!(
        matches!(&reason, Some(DisconnectReason::Closed { code: 4403, reason }) if reason == "banned"),
        "{reason:?}"
    );
    // Once node B has let the connection go (it leaves presence then), there is nothing left.
    let left = poll_until(LIMIT, || async {
        let presence = api(a.addr, "GET", "/api/presence?channel=hall", "").await.json();
        (presence["clients"].as_array()?.is_empty()).then_some(())
    });
    left.await.expect("the disconnected client left presence");
    let again = api(a.addr, "POST", "/api/disconnect", &body).await;
    assert_eq!(again.json(), json!({"disconnected": 0, "complete": true}));

    // A node that shuts down leaves the list at once.
    drop(b);
    let gone = poll_until(LIMIT, || async {
        let nodes = api(a.addr, "GET", "/api/nodes", "").await.json()["nodes"].clone();
        (nodes.as_array()?.len() == 1).then_some(())
    });
    gone.await.expect("B removed its record when it shut down");
}

async fn readyz_follows_the_backplane_and_healthz_does_not(kind: Kind) {
    let mut backplane = Backplane::start(kind);
    let node = Node::start(&backplane).await;
    assert_eq!(readyz(node.addr).await, (200, json!({"status": "ready"})));

    backplane.stop();
    let unready = wait_readyz(node.addr, 503).await;
    assert_eq!(unready, json!({"status": "unready", "reason": "broker unreachable"}));
    let health = http::get(node.addr, "/healthz").await;
    assert_eq!(health.status, 200, "the process is alive: {health}");

    backplane.restart();
    assert_eq!(wait_readyz(node.addr, 200).await, json!({"status": "ready"}));

    // The in-memory broker is always ready.
    let memory = TestServer::start(open_config()).await;
    assert_eq!(readyz(memory.addr).await, (200, json!({"status": "ready"})));
    let head = http::request(memory.addr, "HEAD", "/readyz", &[], "").await;
    assert_eq!(head.status, 200, "{head}");
    let post = http::request(memory.addr, "POST", "/readyz", &[], "").await;
    assert_eq!(post.status, 405, "{post}");
}

async fn a_backplane_restart_fails_publishes_loudly_and_never_leaves_a_silent_gap(kind: Kind) {
    let mut backplane = Backplane::start(kind);
    let (a, b) = (Node::start(&backplane).await, Node::start(&backplane).await);
    let (target, targets) = tokio::sync::watch::channel(None);
    let mut readers = Vec::new();
    let mut latest = Vec::new();
    for url in [b.url(), b.url(), a.url()] {
        let client = fast(&url).build().expect("build");
        let sub = client.subscribe("feed").await.expect("subscribe");
        let seen = Arc::new(Mutex::new(None));
        latest.push(Arc::clone(&seen));
        readers.push(tokio::spawn(read_until(client, sub, targets.clone(), seen)));
    }
    let publisher = fast(&a.url()).build().expect("build");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let progress = Arc::new(Progress::default());
    let publishing = tokio::spawn(publish_until_stopped(publisher, stopped, Arc::clone(&progress)));

    // Publications flow, then stop with Redis and are refused, then flow again.
    let flowing = |at_least: usize| {
        let progress = Arc::clone(&progress);
        move || progress.acked.load(Ordering::SeqCst) >= at_least
    };
    assert!(wait_until(LIMIT, flowing(20)).await, "publishing before the outage");
    backplane.stop();
    let refusing = || progress.refused.load(Ordering::SeqCst) >= 3;
    assert!(wait_until(LIMIT, refusing).await, "publishes refused during the outage");
    backplane.restart();
    wait_readyz(a.addr, 200).await;
    wait_readyz(b.addr, 200).await;
    // The subscribers come back and see live publications again: each has seen one of
    // the new epoch the publisher is acknowledged in, after 20 more acknowledgements.
    let after = progress.acked.load(Ordering::SeqCst) + 20;
    assert!(wait_until(LIMIT, flowing(after)).await, "publishing after the restart");
    let live = || {
        let epoch = progress.epoch.lock().expect("epoch lock").clone();
        latest.iter().all(|seen| *seen.lock().expect("reader lock") == epoch)
    };
    assert!(wait_until(LIMIT, live).await, "subscribers back on live publications");
    stop.send(true).expect("the publisher is running");
    let acks = timeout(LIMIT, publishing).await.expect("publisher in time").expect("publisher");

    // Loud: every publish during the outage was refused with `unavailable`.
    let refused = acks.iter().filter(|ack| ack.is_err()).count();
    assert!(refused > 0, "no publish failed while the backplane was down");
    assert!(
        acks.iter()
            .all(|ack| ack.as_ref().err().is_none_or(|code| *code == ErrorCode::Unavailable))
    );
    // Counted where an operator sees it: a broker error per refused publish.
    let metrics = api(a.addr, "GET", "/metrics", "").await.body;
    let errors = metrics
        .lines()
        .find_map(|line| line.strip_prefix("switchboard_broker_errors_total{op=\"publish\"} "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .expect("broker errors are exposed");
    assert_eq!(errors, refused, "{metrics}");
    let done: Vec<&(u64, String)> = acks.iter().filter_map(|ack| ack.as_ref().ok()).collect();
    let (first, last) = (done[0].clone(), done[done.len() - 1].clone());
    match kind {
        // Redis keeps nothing on disk here: what it held is gone, under a new epoch.
        Kind::Redis => assert_ne!(first.1, last.1, "a restarted, empty redis starts a new epoch"),
        // NATS keeps its storage: the stream goes on in the same epoch.
        Kind::Nats => assert_eq!(first.1, last.1, "a restarted nats keeps the stream"),
    }
    target.send(Some(last.clone())).expect("readers are running");

    for reader in readers {
        let seen = timeout(LIMIT, reader).await.expect("reader in time").expect("reader");
        check_no_silent_gap(&seen, &first, &last);
    }
}

/// What a reader saw.
#[derive(Debug)]
enum Seen {
    /// A publication's offset, in the epoch of the subscription's position.
    Publication(u64, String),
    /// A `Recovered` event.
    Recovered(bool),
}

/// Reads `sub` until it has delivered the publication `target` names once it is set.
/// Keeps the epoch of the latest publication in `latest`.
async fn read_until(
    client: Client,
    mut sub: Subscription,
    mut target: tokio::sync::watch::Receiver<Option<(u64, String)>>,
    latest: Arc<Mutex<Option<String>>>,
) -> Vec<Seen> {
    let mut seen = Vec::new();
    let reached = |seen: &[Seen], target: &Option<(u64, String)>| match (seen.last(), target) {
        (Some(Seen::Publication(offset, epoch)), Some((top, top_epoch))) => {
            epoch == top_epoch && offset >= top
        }
        _ => false,
    };
    loop {
        if reached(&seen, &target.borrow_and_update()) {
            break;
        }
        tokio::select! {
            _ = target.changed() => {}
            event = sub.recv() => match event.expect("the subscription stays open") {
                SubscriptionEvent::Publication(p) => {
                    let epoch = sub.position().expect("a position").epoch;
                    *latest.lock().expect("reader lock") = Some(epoch.clone());
                    seen.push(Seen::Publication(p.offset, epoch));
                }
                SubscriptionEvent::Recovered { recovered } => seen.push(Seen::Recovered(recovered)),
                SubscriptionEvent::Join(_) | SubscriptionEvent::Leave(_) => {}
                other => panic!("unexpected {other:?}"),
            },
        }
    }
    drop(client);
    seen
}

/// Offsets are consecutive within an epoch, from the first publication `first` to the
/// last `last`; a jump or a new epoch comes only right after a `recovered: false`.
fn check_no_silent_gap(seen: &[Seen], first: &(u64, String), last: &(u64, String)) {
    let mut position: Option<(u64, &str)> = None;
    let mut told = false;
    for event in seen {
        match event {
            Seen::Recovered(false) => told = true,
            Seen::Recovered(true) => {}
            Seen::Publication(offset, epoch) => {
                match position {
                    None => assert_eq!((*offset, epoch), (first.0, &first.1), "{seen:?}"),
                    Some((previous, previous_epoch)) => {
                        let next = previous_epoch == epoch && *offset == previous + 1;
                        assert!(next || told, "silent gap after {previous} to {offset}: {seen:?}");
                    }
                }
                position = Some((*offset, epoch));
                told = false;
            }
        }
    }
    assert_eq!(position, Some((last.0, last.1.as_str())), "{seen:?}");
}

/// How far a publisher got.
#[derive(Default)]
struct Progress {
    /// Publishes acknowledged.
    acked: AtomicUsize,
    /// Publishes refused.
    refused: AtomicUsize,
    /// The epoch of the latest acknowledgement.
    epoch: Mutex<Option<String>>,
}

/// Publishes 1, 2, 3… one after the other until told to stop, counting in `progress`;
/// returns each publish's outcome: its offset and epoch, or the error code.
async fn publish_until_stopped(
    publisher: Client,
    stopped: tokio::sync::watch::Receiver<bool>,
    progress: Arc<Progress>,
) -> Vec<Result<(u64, String), ErrorCode>> {
    let mut acks = Vec::new();
    let mut n = 0u64;
    while !*stopped.borrow() {
        n += 1;
        let ack = timeout(LIMIT, publisher.publish("feed", n)).await.expect("an ack in time");
        acks.push(match ack {
            Ok(ack) => {
                *progress.epoch.lock().expect("epoch lock") = Some(ack.epoch.clone());
                progress.acked.fetch_add(1, Ordering::SeqCst);
                Ok((ack.offset, ack.epoch))
            }
            Err(e) => {
                progress.refused.fetch_add(1, Ordering::SeqCst);
                Err(e.code().unwrap_or_else(|| panic!("a refusal by the server, not {e:?}")))
            }
        });
    }
    acks
}

/// A node on its own `RedisBroker`, listening on `127.0.0.1:0`; shut down when dropped.
struct Node {
    addr: SocketAddr,
    handle: ShutdownHandle,
}

impl Node {
    async fn start(backplane: &Backplane) -> Self {
        let broker = backplane.broker().await;
        let mut config: Config = open_config();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.shutdown_timeout = Duration::from_secs(1);
        config.hub.namespaces.get_mut("").expect("the default namespace").history_size = 10_000;
        config.api_key = Some(API_KEY.into());
        // The restart test's publisher tries again at once after each refusal, to see every
        // one: while NATS reconnects that is thousands a second, which the command rate limit
        // would rightly cut off.
        config.rate_limits.message_rate = None;
        config.rate_limits.address_message_rate = None;
        let server = Server::bind_with_broker(config, broker).await.expect("bind 127.0.0.1:0");
        let addr = server.local_addr();
        let handle = server.shutdown_handle();
        tokio::spawn(server.run());
        Self { addr, handle }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// One request carrying the API key, with `Connection: close`.
async fn api(addr: SocketAddr, method: &str, path: &str, body: &str) -> http::Response {
    let key = format!("apikey {API_KEY}");
    let headers = [("Authorization", key.as_str()), ("Content-Type", "application/json")];
    http::request(addr, method, path, &headers, body).await
}

/// `GET /readyz`: the status and the JSON body.
async fn readyz(addr: SocketAddr) -> (u16, serde_json::Value) {
    let response = http::get(addr, "/readyz").await;
    (response.status, response.json())
}

/// Polls `/readyz` until it answers `status`; its body.
async fn wait_readyz(addr: SocketAddr, status: u16) -> serde_json::Value {
    let ready = poll_until(LIMIT, || async {
        let (now, body) = readyz(addr).await;
        (now == status).then_some(body)
    });
    ready.await.unwrap_or_else(|| panic!("/readyz not {status} after {LIMIT:?}"))
}
