//! What only a shared Redis does: several nodes on one server, presence that outlives no
//! crashed node, honest epochs after a flush, outages and loss detection. Each test runs its
//! own `redis-server`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_broker::conformance::{Event, RecordingHandler};
use switchboard_broker::{
    Broker, BrokerError, ClientInfo, HistoryQuery, JoinLeave, StreamOptions, StreamPosition, Value,
};
use switchboard_broker_redis::{RedisBroker, RedisConfig};
use switchboard_test_support::redis::RedisServer;
use switchboard_test_support::{poll_until, wait_until};

#[tokio::test]
async fn publications_reach_every_subscribed_node_in_offset_order() {
    let redis = RedisServer::start();
    let (a, a_events) = node(&redis).await;
    let (b, b_events) = node(&redis).await;
    let (quiet, quiet_events) = node(&redis).await;
    a.subscribe("c").await.unwrap();
    b.subscribe("c").await.unwrap();
    quiet.subscribe("other").await.unwrap();

    tokio::join!(publish_many(&a, 0), publish_many(&b, 1_000));

    let expected: Vec<u64> = (1..=100).collect();
    for events in [&a_events, &b_events] {
        assert!(events.wait_until(WAIT, |e| publications(e, "c") >= 100).await, "all delivered");
        assert_eq!(events.offsets("c"), expected, "in offset order on every node");
        assert_eq!(events.resyncs("c"), 0, "nothing was lost");
    }
    assert_eq!(a_events.publications("c"), b_events.publications("c"), "the same publications");
    quiet.publish("other", Value::from("sentinel"), None, &options(0)).await.unwrap();
    assert!(quiet_events.wait_until(WAIT, |e| publications(e, "other") == 1).await);
    assert!(quiet_events.offsets("c").is_empty(), "a node not subscribed gets nothing");
}

#[tokio::test]
async fn presence_lists_the_clients_of_every_node() {
    let redis = RedisServer::start();
    let (a, _) = node(&redis).await;
    let (b, _) = node(&redis).await;
    a.join("room", &client("x"), JoinLeave::Silent).await.unwrap();
    b.join("room", &client("y"), JoinLeave::Silent).await.unwrap();
    assert_eq!(a.presence("room").await.unwrap(), [client("x"), client("y")]);
    assert_eq!(b.presence("room").await.unwrap(), [client("x"), client("y")]);
    b.leave("room", &client("x"), JoinLeave::Silent).await.unwrap();
    assert_eq!(a.presence("room").await.unwrap(), [client("y")], "any node can remove anyone");
}

#[tokio::test]
async fn a_crashed_nodes_clients_leave_within_the_heartbeat_bound() {
    let redis = RedisServer::start();
    let (crashing, _) = node(&redis).await;
    let (survivor, events) = node(&redis).await;
    survivor.subscribe("room").await.unwrap();
    crashing.join("room", &client("gone"), JoinLeave::Announced).await.unwrap();
    survivor.join("room", &client("stays"), JoinLeave::Announced).await.unwrap();
    let mut plain = plain(&redis).await;
    let joined_until = expiry(&mut plain, "stays").await;
    assert!(events.wait_until(WAIT, |e| joins(e, "room") == 2).await, "both joins announced");

    // Dropping the broker aborts its tasks: no more heartbeats, nothing said to Redis.
    drop(crashing);
    let crashed_at = Instant::now();
    assert!(events.wait_until(WAIT, |e| leaves(e, "room") == 1).await, "the leave is announced");
    let bound = HEARTBEAT * 3 + HEARTBEAT + SLACK;
    assert!(crashed_at.elapsed() < bound, "took {:?}, bound {bound:?}", crashed_at.elapsed());
    assert_eq!(events.leaves("room"), [client("gone")]);
    assert_eq!(survivor.presence("room").await.unwrap(), [client("stays")]);

    // Well past an entry's lifetime: the live node's heartbeat keeps its client present.
    // Its entry refreshed to expire two lifetimes and a heartbeat after the join means a
    // heartbeat (refresh, then sweep) ran a heartbeat after the unrefreshed entry expired.
    let lifetime = (HEARTBEAT * 3).as_millis() as u64;
    let beyond = joined_until + lifetime + HEARTBEAT.as_millis() as u64;
    let refreshed = poll_until(WAIT, || {
        let mut plain = plain.clone();
        async move { (expiry(&mut plain, "stays").await >= beyond).then_some(()) }
    });
    assert!(refreshed.await.is_some(), "the heartbeat refreshed the entry");
    assert_eq!(survivor.presence("room").await.unwrap(), [client("stays")]);
    // Leaves come on the topic in order: once this join arrives, any leave before it has.
    survivor.join("room", &client("sentinel"), JoinLeave::Announced).await.unwrap();
    assert!(events.wait_until(WAIT, |e| joins(e, "room") == 3).await, "the sentinel");
    assert_eq!(events.leaves("room"), [client("gone")], "no other leave");
}

#[tokio::test]
async fn a_leave_from_two_nodes_at_once_is_announced_once() {
    let redis = RedisServer::start();
    let (a, a_events) = node(&redis).await;
    let (b, _) = node(&redis).await;
    a.subscribe("room").await.unwrap();
    a.join("room", &client("x"), JoinLeave::Announced).await.unwrap();
    let x = client("x");
    let (left_a, left_b) = tokio::join!(
        a.leave("room", &x, JoinLeave::Announced),
        b.leave("room", &x, JoinLeave::Announced)
    );
    left_a.unwrap();
    left_b.unwrap();
    a.join("room", &client("sentinel"), JoinLeave::Announced).await.unwrap();
    assert!(a_events.wait_until(WAIT, |e| joins(e, "room") == 2).await);
    assert_eq!(a_events.leaves("room"), [client("x")], "checked and removed atomically");
}

#[tokio::test]
async fn a_flushed_redis_starts_a_new_epoch() {
    let redis = RedisServer::start();
    let (broker, events) = node(&redis).await;
    broker.subscribe("c").await.unwrap();
    let mut old = StreamPosition::default();
    for i in 1..=3 {
        old = broker.publish("c", Value::from(i), None, &options(10)).await.unwrap();
    }
    // The script cache goes too: the next call must fall back from EVALSHA to EVAL.
    let mut plain = plain(&redis).await;
    let () = redis::cmd("FLUSHALL").query_async(&mut plain).await.unwrap();
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut plain).await.unwrap();

    let query = HistoryQuery::since(old.clone(), None);
    let read = broker.history("c", &query, &options(10)).await.unwrap();
    assert!(!read.complete && read.publications.is_empty(), "an old position never recovers");
    assert_ne!(read.position.epoch, old.epoch, "a new epoch");
    assert_eq!(read.position.offset, 0);
    let next = broker.publish("c", Value::from(4), None, &options(10)).await.unwrap();
    assert_eq!(next, StreamPosition { offset: 1, epoch: read.position.epoch.clone() });

    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 4).await);
    assert_eq!(events.offsets("c"), [1, 2, 3, 1]);
    assert_eq!(events.resyncs("c"), 1, "the live channel saw the epoch change");
}

/// What `maxmemory` eviction (or expiry) of one key does: an evicted history key reads as
/// incomplete under the same epoch and the byte cap starts over; an evicted meta key starts
/// a new epoch.
#[tokio::test]
async fn issue_12_evicted_keys_keep_epochs_honest_and_the_byte_cap_exact() {
    let redis = RedisServer::start();
    let mut config = config(&redis);
    config.max_history_bytes = 16 << 10;
    let broker = connect(config).await;
    let data = || Value::from("x".repeat(1000));
    let mut top = StreamPosition::default();
    for _ in 0..40 {
        top = broker.publish("c", data(), None, &options(100)).await.unwrap();
    }
    let kept = broker.history("c", &HistoryQuery::latest(None), &options(100)).await.unwrap();
    let full = kept.publications.len();
    assert!((15..=16).contains(&full), "16 KiB holds 15 or 16 entries of ~1 KB: {full}");

    let mut plain = plain(&redis).await;
    let () =
        redis::cmd("DEL").arg("{switchboard:c}:history").query_async(&mut plain).await.unwrap();
    let behind = StreamPosition { offset: top.offset - 1, ..top.clone() };
    let since = HistoryQuery::since(behind, None);
    let read = broker.history("c", &since, &options(100)).await.unwrap();
    assert!(!read.complete && read.publications.is_empty(), "lost history is never a gap");
    assert_eq!(read.position, top, "the epoch and top survive a lost history key");
    for _ in 0..40 {
        top = broker.publish("c", data(), None, &options(100)).await.unwrap();
    }
    let read = broker.history("c", &HistoryQuery::latest(None), &options(100)).await.unwrap();
    assert_eq!(read.publications.len(), full, "the byte count started over with the key");
    assert_eq!(read.publications.last().map(|p| p.offset), Some(80));

    let () = redis::cmd("DEL").arg("{switchboard:c}:meta").query_async(&mut plain).await.unwrap();
    let since = HistoryQuery::since(top.clone(), None);
    let read = broker.history("c", &since, &options(100)).await.unwrap();
    assert!(!read.complete, "a lost meta key is a new epoch");
    assert_ne!(read.position.epoch, top.epoch);
    assert_eq!(read.position.offset, 0);
}

#[tokio::test]
async fn operations_fail_fast_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let (broker, _) = node(&redis).await;
    broker.subscribe("c").await.unwrap();
    assert!(broker.is_ready());
    redis.stop();
    eventually("is_ready turns false", || !broker.is_ready()).await;

    let (options, x, query) = (options(10), client("x"), HistoryQuery::latest(None));
    let publish = broker.publish("c", Value::from(1), None, &options);
    expect_unavailable("publish", SLACK, publish).await;
    expect_unavailable("history", SLACK, broker.history("c", &query, &options)).await;
    expect_unavailable("join", SLACK, broker.join("c", &x, JoinLeave::Announced)).await;
    expect_unavailable("leave", SLACK, broker.leave("c", &x, JoinLeave::Announced)).await;
    expect_unavailable("presence", SLACK, broker.presence("c")).await;
    expect_unavailable("subscribe", SLACK, broker.subscribe("d")).await;
    broker.unsubscribe("c").await.expect("unsubscribe stops delivery even without redis");
}

#[tokio::test]
async fn operations_time_out_while_redis_hangs() {
    let mut redis = RedisServer::start();
    let (broker, events) = node(&redis).await;
    broker.subscribe("c").await.unwrap();
    redis.pause();

    // The first command waits out its timeout; the connection is then dropped, and the
    // rest fail sooner.
    let (options, x, query) = (options(10), client("x"), HistoryQuery::latest(None));
    let within = COMMAND_TIMEOUT + SLACK;
    let publish = broker.publish("c", Value::from(1), None, &options);
    expect_unavailable("publish", within, publish).await;
    expect_unavailable("history", within, broker.history("c", &query, &options)).await;
    expect_unavailable("join", within, broker.join("c", &x, JoinLeave::Announced)).await;
    expect_unavailable("leave", within, broker.leave("c", &x, JoinLeave::Announced)).await;
    expect_unavailable("presence", within, broker.presence("c")).await;
    eventually("is_ready turns false", || !broker.is_ready()).await;
    // Hung past a PubSub ping (every 2 s) and its timeout: the PubSub connection is given
    // up too, so the node resyncs once Redis answers again. Nothing outside the broker sees
    // it give up (a log line only; the interval is fixed), so this waits out the time.
    tokio::time::sleep(PUBSUB_PING_EVERY + COMMAND_TIMEOUT).await;

    redis.resume();
    assert!(events.wait_until(RECONNECT, |e| resyncs(e, "c") == 1).await, "resynced");
    eventually("is_ready turns true", || broker.is_ready()).await;
    broker.publish("c", Value::from(1), None, &options).await.expect("works again");
}

#[tokio::test]
async fn a_restarted_redis_is_reconnected_resubscribed_and_resynced() {
    let mut redis = RedisServer::start();
    let (broker, events) = node(&redis).await;
    broker.subscribe("c").await.unwrap();
    broker.subscribe("d").await.unwrap();
    broker.publish("c", Value::from(1), None, &options(10)).await.unwrap();
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 1).await);

    redis.stop();
    eventually("is_ready turns false", || !broker.is_ready()).await;
    redis.restart();
    let resynced = |e: &[Event]| resyncs(e, "c") == 1 && resyncs(e, "d") == 1;
    assert!(events.wait_until(RECONNECT, resynced).await, "every channel resyncs");
    eventually("is_ready turns true", || broker.is_ready()).await;

    // Subscribed again: publications from this node and from a new one arrive.
    let (other, _) = node(&redis).await;
    broker.publish("c", Value::from(2), None, &options(10)).await.unwrap();
    other.publish("c", Value::from(3), None, &options(10)).await.unwrap();
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 3).await);
    assert_eq!(events.offsets("c"), [1, 1, 2], "the restarted redis started a new stream");
    assert_eq!(events.resyncs("c"), 1, "a new stream after a resync needs no other");
}

#[tokio::test]
async fn an_offset_gap_or_a_foreign_epoch_on_the_topic_resyncs() {
    let redis = RedisServer::start();
    let (broker, events) = node(&redis).await;
    broker.subscribe("c").await.unwrap();
    broker.publish("c", Value::from(1), None, &options(10)).await.unwrap();
    let top = broker.publish("c", Value::from(2), None, &options(10)).await.unwrap();
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 2).await);

    let mut plain = plain(&redis).await;
    let topic = broker.topic("c");
    let skipped = format!(r#"p:{}:{{"offset":4,"data":"skipped 3"}}"#, top.epoch);
    let _: i64 =
        redis::cmd("PUBLISH").arg(&topic).arg(skipped).query_async(&mut plain).await.unwrap();
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 3).await);
    assert_eq!(events.resyncs("c"), 1, "a gap resyncs");
    let kinds: Vec<_> = events.events().into_iter().map(|e| kind(&e)).collect();
    assert_eq!(kinds, ["publication", "publication", "resync", "publication"], "resync first");
    assert_eq!(events.offsets("c"), [1, 2, 4]);

    let foreign = r#"p:elsewhere:{"offset":5,"data":"another epoch"}"#;
    let _: i64 =
        redis::cmd("PUBLISH").arg(&topic).arg(foreign).query_async(&mut plain).await.unwrap();
    let repeated = r#"p:elsewhere:{"offset":5,"data":"again"}"#;
    let _: i64 =
        redis::cmd("PUBLISH").arg(&topic).arg(repeated).query_async(&mut plain).await.unwrap();
    let _: i64 =
        redis::cmd("PUBLISH").arg(&topic).arg("garbage").query_async(&mut plain).await.unwrap();
    // Back to the real stream (offset 3 in the real epoch): the epoch changes again.
    broker.publish("c", Value::from(3), None, &options(10)).await.unwrap();
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 5).await);
    assert_eq!(events.offsets("c"), [1, 2, 4, 5, 3], "the repeat and the garbage dropped");
    assert_eq!(events.resyncs("c"), 3, "each epoch change resyncs");
}

#[tokio::test]
async fn a_subscribed_stream_keeps_its_epoch_past_the_ttl() {
    let redis = RedisServer::start();
    let (broker, _) = node(&redis).await;
    let options = StreamOptions::new(10, HEARTBEAT * 3);
    let plain = plain(&redis).await;
    broker.subscribe("kept").await.unwrap();
    let kept = broker.publish("kept", Value::from(1), None, &options).await.unwrap();
    let forgotten = broker.publish("forgotten", Value::from(1), None, &options).await.unwrap();
    // Past the TTL: the unwatched stream's keys are gone (Redis expires a key on access).
    let expired = poll_until(WAIT, || {
        let mut plain = plain.clone();
        async move {
            let keys = ["{switchboard:forgotten}:meta", "{switchboard:forgotten}:history"];
            let left: u64 = redis::cmd("EXISTS").arg(&keys).query_async(&mut plain).await.ok()?;
            (left == 0).then_some(())
        }
    });
    assert!(expired.await.is_some(), "the unwatched stream expired");

    let next = broker.publish("kept", Value::from(2), None, &options).await.unwrap();
    assert_eq!(next, StreamPosition { offset: 2, epoch: kept.epoch }, "kept while subscribed");
    let next = broker.publish("forgotten", Value::from(2), None, &options).await.unwrap();
    assert_eq!(next.offset, 1, "an unwatched stream is forgotten after its TTL");
    assert_ne!(next.epoch, forgotten.epoch, "and comes back under a new epoch");
}

#[tokio::test]
async fn key_prefixes_keep_deployments_apart() {
    let redis = RedisServer::start();
    let mut config_one = config(&redis);
    config_one.key_prefix = "one".to_owned();
    let mut config_two = config(&redis);
    config_two.key_prefix = "two".to_owned();
    let one = connect(config_one).await;
    let two = connect(config_two).await;
    let events = RecordingHandler::new();
    two.set_handler(events.clone());
    two.subscribe("c").await.unwrap();
    assert_eq!(one.publish("c", Value::from(1), None, &options(10)).await.unwrap().offset, 1);
    assert_eq!(two.publish("c", Value::from(2), None, &options(10)).await.unwrap().offset, 1);
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 1).await);
    let data: Vec<_> = events.publications("c").iter().map(|p| p.data.clone()).collect();
    assert_eq!(data, [2], "only its own deployment's publication");
    assert_eq!(one.topic("c"), "{one:c}:topic");

    let mut plain = plain(&redis).await;
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut plain).await.unwrap();
    keys.sort();
    assert_eq!(keys, ["{one:c}:history", "{one:c}:meta", "{two:c}:history", "{two:c}:meta"]);
}

#[tokio::test]
async fn node_messages_reach_the_named_node_until_it_is_gone() {
    let redis = RedisServer::start();
    let (a, a_events) = node(&redis).await;
    let (b, b_events) = node(&redis).await;
    a.listen_as("a").await.unwrap();
    b.listen_as("b").await.unwrap();

    let sent: Vec<Bytes> = (0..100u32).map(|i| Bytes::from(i.to_be_bytes().to_vec())).collect();
    for message in &sent {
        a.send_to_node("b", message.clone()).await.expect("b listens");
    }
    b.send_to_node("a", Bytes::from_static(b"reply")).await.expect("a listens");
    assert!(a_events.wait_until(WAIT, |e| node_messages(e) == 1).await, "a gets the reply");
    assert!(b_events.wait_until(WAIT, |e| node_messages(e) == 100).await, "b gets them all");
    assert_eq!(b_events.node_messages(), sent, "intact, in the order one node sent them");
    assert_eq!(a_events.node_messages(), [Bytes::from_static(b"reply")], "only its own");
    let mut plain = plain(&redis).await;
    let mut inboxes: Vec<String> =
        redis::cmd("PUBSUB").arg("CHANNELS").arg("*:inbox").query_async(&mut plain).await.unwrap();
    inboxes.sort();
    assert_eq!(inboxes, ["{switchboard:node:a}:inbox", "{switchboard:node:b}:inbox"]);
    assert_eq!(b.inbox("b"), "{switchboard:node:b}:inbox");

    // Dropping the broker aborts its tasks: its PubSub connection closes, its inbox has no
    // subscriber left.
    drop(b);
    let gone = poll_until(WAIT, || {
        let a = &a;
        async move {
            let sent = a.send_to_node("b", Bytes::from_static(b"anyone?")).await;
            match sent {
                Err(BrokerError::UnknownNode(name)) => Some(name),
                Ok(()) => None,
                Err(e) => panic!("sending to a node that is going away: {e}"),
            }
        }
    });
    assert_eq!(gone.await.as_deref(), Some("b"), "a gone node is an unknown node");
    let never = a.send_to_node("c", Bytes::from_static(b"hello")).await;
    assert_eq!(never, Err(BrokerError::UnknownNode("c".to_owned())), "a node that never was");
    assert_eq!(a_events.node_messages().len(), 1, "nothing else reached a");
}

#[tokio::test]
async fn a_nodes_inbox_is_subscribed_again_after_a_redis_restart_without_a_resync() {
    let mut redis = RedisServer::start();
    let (a, _) = node(&redis).await;
    let (b, b_events) = node(&redis).await;
    let (late, late_events) = node(&redis).await;
    b.listen_as("b").await.unwrap();
    b.subscribe("c").await.unwrap();
    a.send_to_node("b", Bytes::from_static(b"before")).await.unwrap();
    assert!(b_events.wait_until(WAIT, |e| node_messages(e) == 1).await);

    redis.stop();
    eventually("is_ready turns false", || !a.is_ready() && !late.is_ready()).await;
    let down = a.send_to_node("b", Bytes::from_static(b"while down"));
    expect_unavailable("send_to_node", SLACK, down).await;
    // Listening while Redis is down fails, but the inbox is kept for the reconnect.
    expect_unavailable("listen_as", SLACK, late.listen_as("late")).await;

    redis.restart();
    // The resync for `c` comes after the whole resubscription, the inbox included.
    assert!(b_events.wait_until(RECONNECT, |e| resyncs(e, "c") == 1).await, "b reconnected");
    eventually("every node is ready again", || a.is_ready() && late.is_ready()).await;
    a.send_to_node("b", Bytes::from_static(b"after")).await.expect("b listens again");
    a.send_to_node("late", Bytes::from_static(b"hi")).await.expect("late listens now");
    assert!(b_events.wait_until(WAIT, |e| node_messages(e) == 2).await, "b gets it");
    let expected = [Bytes::from_static(b"before"), Bytes::from_static(b"after")];
    assert_eq!(b_events.node_messages(), expected, "what was sent while down is not replayed");
    assert!(late_events.wait_until(WAIT, |e| node_messages(e) == 1).await, "late gets it");
    let resynced: Vec<_> = b_events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Resync { channel } => Some(channel),
            _ => None,
        })
        .collect();
    assert_eq!(resynced, ["c"], "the inbox is not a channel: no resync for it");
    assert!(late_events.events().iter().all(|e| kind(e) == "node message"), "nor for late");
}

#[tokio::test]
async fn connect_fails_fast_without_redis_unless_told_to_wait() {
    let mut redis = RedisServer::start();
    redis.stop();
    let started = Instant::now();
    let failed = RedisBroker::connect(config(&redis)).await;
    assert!(matches!(failed, Err(BrokerError::Unavailable(_))), "{failed:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());

    let mut patient = config(&redis);
    patient.wait_for_redis = true;
    // In Redis's place, a listener that drops every connection: the broker must try again
    // rather than give up.
    let stand_in = tokio::net::TcpListener::bind(("127.0.0.1", redis.port())).await.unwrap();
    let waiting = tokio::spawn(RedisBroker::connect(patient));
    for attempt in ["a first attempt", "a second attempt"] {
        let accepted = tokio::time::timeout(RECONNECT, stand_in.accept()).await.expect(attempt);
        drop(accepted.unwrap());
    }
    assert!(!waiting.is_finished(), "waits while redis is down");
    drop(stand_in);
    redis.restart();
    let broker = tokio::time::timeout(RECONNECT, waiting).await.expect("connects").unwrap();
    assert!(broker.expect("connected").is_ready());
}

#[tokio::test]
async fn bad_configs_are_refused() {
    let bad_url = RedisBroker::connect(RedisConfig::new("http://nope")).await;
    assert!(matches!(bad_url, Err(BrokerError::Internal(_))), "{bad_url:?}");
    let mut braces = RedisConfig::default();
    braces.key_prefix = "a}".to_owned();
    let bad_prefix = RedisBroker::connect(braces).await;
    assert!(matches!(bad_prefix, Err(BrokerError::Internal(_))), "{bad_prefix:?}");
}

async fn node(redis: &RedisServer) -> (RedisBroker, Arc<RecordingHandler>) {
    let broker = connect(config(redis)).await;
    let events = RecordingHandler::new();
    broker.set_handler(events.clone());
    (broker, events)
}

async fn connect(config: RedisConfig) -> RedisBroker {
    RedisBroker::connect(config).await.expect("connecting to redis")
}

fn config(redis: &RedisServer) -> RedisConfig {
    let mut config = RedisConfig::new(redis.url());
    config.presence_heartbeat = HEARTBEAT;
    config.connect_timeout = Duration::from_millis(500);
    config.command_timeout = COMMAND_TIMEOUT;
    config
}

async fn publish_many(broker: &RedisBroker, base: u64) {
    for i in 0..50 {
        broker.publish("c", Value::from(base + i), None, &options(100)).await.expect("publish");
    }
}

/// A connection that is not a broker, for poking at Redis directly.
async fn plain(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).expect("a valid url");
    client.get_multiplexed_async_connection().await.expect("connecting to redis")
}

fn options(history_size: usize) -> StreamOptions {
    StreamOptions::new(history_size, Duration::from_secs(300))
}

fn client(id: &str) -> ClientInfo {
    ClientInfo { id: id.to_owned(), user: None, info: None }
}

/// Runs `operation`, which must fail with `Unavailable` within `within`.
async fn expect_unavailable<T: std::fmt::Debug>(
    what: &str,
    within: Duration,
    operation: impl Future<Output = Result<T, BrokerError>>,
) {
    let started = Instant::now();
    let outcome = tokio::time::timeout(within * 2, operation).await;
    let outcome = outcome.unwrap_or_else(|_| panic!("{what} hung without redis"));
    assert!(matches!(outcome, Err(BrokerError::Unavailable(_))), "{what}: {outcome:?}");
    assert!(started.elapsed() < within, "{what} took {:?} > {within:?}", started.elapsed());
}

/// Polls `done` until it holds, failing after [`RECONNECT`].
async fn eventually(what: &str, done: impl Fn() -> bool) {
    assert!(wait_until(RECONNECT, done).await, "waited {RECONNECT:?} for: {what}");
}

/// When client `id`'s presence entry in `room` expires, in Redis milliseconds.
async fn expiry(plain: &mut redis::aio::MultiplexedConnection, id: &str) -> u64 {
    let key = "{switchboard:room}:presence-expiry";
    let score: f64 =
        redis::cmd("ZSCORE").arg(key).arg(id).query_async(plain).await.expect("a score");
    score as u64
}

fn node_messages(events: &[Event]) -> usize {
    events.iter().filter(|e| kind(e) == "node message").count()
}

fn publications(events: &[Event], channel: &str) -> usize {
    count(events, channel, "publication")
}

fn joins(events: &[Event], channel: &str) -> usize {
    count(events, channel, "join")
}

fn leaves(events: &[Event], channel: &str) -> usize {
    count(events, channel, "leave")
}

fn resyncs(events: &[Event], channel: &str) -> usize {
    count(events, channel, "resync")
}

fn count(events: &[Event], channel: &str, wanted: &str) -> usize {
    events.iter().filter(|e| event_channel(e) == Some(channel) && kind(e) == wanted).count()
}

fn kind(event: &Event) -> &'static str {
    match event {
        Event::Publication { .. } => "publication",
        Event::Join { .. } => "join",
        Event::Leave { .. } => "leave",
        Event::Resync { .. } => "resync",
        Event::NodeMessage { .. } => "node message",
        _ => "other",
    }
}

fn event_channel(event: &Event) -> Option<&str> {
    match event {
        Event::Publication { channel, .. }
        | Event::Join { channel, .. }
        | Event::Leave { channel, .. }
        | Event::Resync { channel } => Some(channel),
        _ => None,
    }
}

/// Presence heartbeat in these tests: entries live 300 ms without a refresh.
const HEARTBEAT: Duration = Duration::from_millis(100);

/// Command timeout in these tests.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// How often the broker pings its PubSub connection (`pubsub.rs`).
const PUBSUB_PING_EVERY: Duration = Duration::from_secs(2);

/// Scheduling and round trips on a loaded test machine.
const SLACK: Duration = Duration::from_millis(700);

/// How long to wait for an event that needs no reconnection.
const WAIT: Duration = Duration::from_secs(5);

/// How long a reconnection may take: backoff tops out at 2.5 s with jitter.
const RECONNECT: Duration = Duration::from_secs(10);
