//! What only a shared NATS does: several nodes on one server, presence that outlives no
//! crashed node, honest epochs after a purge or a lost store, outages and loss detection.
//! Each test runs its own `nats-server`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use switchboard_broker::conformance::{Event, RecordingHandler};
use switchboard_broker::{
    Broker, BrokerError, ClientInfo, HistoryQuery, JoinLeave, StreamOptions, StreamPosition, Value,
};
use switchboard_broker_nats::{NatsBroker, NatsConfig};
use switchboard_test_support::nats::NatsServer;
use switchboard_test_support::wait_until;

#[tokio::test]
async fn publications_reach_every_subscribed_node_in_offset_order() {
    let nats = NatsServer::start();
    let (a, a_events) = node(&nats).await;
    let (b, b_events) = node(&nats).await;
    let (quiet, quiet_events) = node(&nats).await;
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
    let read = a.history("c", &HistoryQuery::latest(None), &options(100)).await.unwrap();
    assert_eq!(read.publications, a_events.publications("c"), "history matches delivery");
    quiet.publish("other", Value::from("sentinel"), None, &options(0)).await.unwrap();
    assert!(quiet_events.wait_until(WAIT, |e| publications(e, "other") == 1).await);
    assert!(quiet_events.offsets("c").is_empty(), "a node not subscribed gets nothing");
}

#[tokio::test]
async fn presence_lists_the_clients_of_every_node() {
    let nats = NatsServer::start();
    let (a, _) = node(&nats).await;
    let (b, _) = node(&nats).await;
    a.join("room", &client("x"), JoinLeave::Silent).await.unwrap();
    b.join("room", &client("y"), JoinLeave::Silent).await.unwrap();
    assert_eq!(a.presence("room").await.unwrap(), [client("x"), client("y")]);
    assert_eq!(b.presence("room").await.unwrap(), [client("x"), client("y")]);
    b.leave("room", &client("x"), JoinLeave::Silent).await.unwrap();
    assert_eq!(a.presence("room").await.unwrap(), [client("y")], "any node can remove anyone");
}

#[tokio::test]
async fn concurrent_joins_from_many_nodes_all_count() {
    let nats = NatsServer::start();
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(node(&nats).await.0);
    }
    let joins = nodes.iter().enumerate().flat_map(|(n, broker)| {
        (0..10).map(move |i| async move {
            let id = format!("{n}-{i}");
            broker.join("room", &client(&id), JoinLeave::Silent).await.unwrap();
        })
    });
    futures_util::future::join_all(joins).await;
    assert_eq!(nodes[0].presence_count("room").await.unwrap(), 40, "no join lost to a race");
}

#[tokio::test]
async fn a_crashed_nodes_clients_leave_within_the_heartbeat_bound() {
    let nats = NatsServer::start();
    let (crashing, _) = node(&nats).await;
    let (survivor, events) = node(&nats).await;
    survivor.subscribe("room").await.unwrap();
    crashing.join("room", &client("gone"), JoinLeave::Announced).await.unwrap();
    survivor.join("room", &client("stays"), JoinLeave::Announced).await.unwrap();
    assert!(events.wait_until(WAIT, |e| joins(e, "room") == 2).await, "both joins announced");

    // Dropping the broker aborts its tasks: no more heartbeats, nothing said to NATS.
    drop(crashing);
    let crashed_at = Instant::now();
    assert!(events.wait_until(WAIT, |e| leaves(e, "room") == 1).await, "the leave is announced");
    let bound = HEARTBEAT * 3 + HEARTBEAT + SLACK;
    assert!(crashed_at.elapsed() < bound, "took {:?}, bound {bound:?}", crashed_at.elapsed());
    assert_eq!(events.leaves("room"), [client("gone")]);
    assert_eq!(survivor.presence("room").await.unwrap(), [client("stays")]);

    // Well past an entry's lifetime: the live node's heartbeat keeps its client present.
    let deadline = Instant::now() + HEARTBEAT * 3 * 3;
    while Instant::now() < deadline {
        assert_eq!(survivor.presence("room").await.unwrap(), [client("stays")], "refreshed");
        // Presence expiry announces nothing to wait for: look again shortly.
        tokio::time::sleep(HEARTBEAT).await;
    }
    // Leaves come on the live subject in order: once this join arrives, any leave before
    // it has.
    survivor.join("room", &client("sentinel"), JoinLeave::Announced).await.unwrap();
    assert!(events.wait_until(WAIT, |e| joins(e, "room") == 3).await, "the sentinel");
    assert_eq!(events.leaves("room"), [client("gone")], "no other leave");
}

#[tokio::test]
async fn a_leave_from_two_nodes_at_once_is_announced_once() {
    let nats = NatsServer::start();
    let (a, a_events) = node(&nats).await;
    let (b, _) = node(&nats).await;
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
async fn a_purged_channel_starts_a_new_epoch() {
    let nats = NatsServer::start();
    let (broker, events) = node(&nats).await;
    broker.subscribe("c").await.unwrap();
    let mut old = StreamPosition::default();
    for i in 1..=3 {
        old = broker.publish("c", Value::from(i), None, &options(10)).await.unwrap();
    }
    let stream = plain_stream(&nats, &broker).await;
    stream.purge().filter(broker.stored_subject("c").unwrap()).await.unwrap();

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

#[tokio::test]
async fn a_message_deleted_from_the_middle_reads_as_a_gap_never_served() {
    let nats = NatsServer::start();
    let (broker, _) = node(&nats).await;
    let mut top = StreamPosition::default();
    let mut sequences = Vec::new();
    let stream = plain_stream(&nats, &broker).await;
    for i in 1..=5 {
        top = broker.publish("c", Value::from(i), None, &options(10)).await.unwrap();
        let subject = broker.stored_subject("c").unwrap();
        sequences.push(stream.get_last_raw_message_by_subject(&subject).await.unwrap().sequence);
    }
    stream.delete_message(sequences[2]).await.unwrap();
    let at = |offset| StreamPosition { offset, epoch: top.epoch.clone() };
    let read = broker.history("c", &HistoryQuery::since(at(1), None), &options(10)).await.unwrap();
    assert!(!read.complete && read.publications.is_empty(), "offset 3 is missing");
    let read = broker.history("c", &HistoryQuery::since(at(3), None), &options(10)).await.unwrap();
    assert!(read.complete, "after the hole history is whole");
    assert_eq!(read.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(read.position, top, "the epoch and top stay");
}

#[tokio::test]
async fn history_is_trimmed_in_the_stream_per_channel() {
    let nats = NatsServer::start();
    let (broker, _) = node(&nats).await;
    for i in 0..200 {
        broker.publish("busy", Value::from(i), None, &options(10)).await.unwrap();
        broker.publish("quiet", Value::from(i), None, &options(1000)).await.unwrap();
    }
    let stream = plain_stream(&nats, &broker).await;
    let busy = broker.stored_subject("busy").unwrap();
    let quiet = broker.stored_subject("quiet").unwrap();
    let mut counts = std::collections::HashMap::new();
    let mut subjects = stream.info_with_subjects(">").await.unwrap();
    while let Some(entry) = futures_util::StreamExt::next(&mut subjects).await {
        let (subject, count) = entry.unwrap();
        counts.insert(subject, count);
    }
    let kept = |subject: &str| counts.get(subject).copied().unwrap_or(0);
    assert!((10..=13).contains(&kept(&busy)), "history size 10 keeps 10 and a little slack");
    assert_eq!(kept(&quiet), 200, "another channel's size is its own");
    let read = broker.history("busy", &HistoryQuery::latest(None), &options(10)).await.unwrap();
    assert_eq!(read.publications.len(), 10);
    assert_eq!(read.position.offset, 200);
}

#[tokio::test]
async fn operations_fail_fast_while_nats_is_down() {
    let mut nats = NatsServer::start();
    let (broker, _) = node(&nats).await;
    broker.subscribe("c").await.unwrap();
    assert!(broker.is_ready());
    nats.stop();
    eventually("is_ready turns false", || !broker.is_ready()).await;

    let (options, x, query) = (options(10), client("x"), HistoryQuery::latest(None));
    let publish = broker.publish("c", Value::from(1), None, &options);
    expect_unavailable("publish", SLACK, publish).await;
    expect_unavailable("history", SLACK, broker.history("c", &query, &options)).await;
    expect_unavailable("join", SLACK, broker.join("c", &x, JoinLeave::Announced)).await;
    expect_unavailable("leave", SLACK, broker.leave("c", &x, JoinLeave::Announced)).await;
    expect_unavailable("presence", SLACK, broker.presence("c")).await;
    expect_unavailable("subscribe", SLACK, broker.subscribe("d")).await;
    expect_unavailable("nodes", SLACK, broker.nodes()).await;
    let register = broker.register_node("n", "", Duration::from_secs(1));
    expect_unavailable("register_node", SLACK, register).await;
    broker.unsubscribe("c").await.expect("unsubscribe stops delivery even without nats");
}

#[tokio::test]
async fn operations_time_out_while_nats_hangs() {
    let mut nats = NatsServer::start();
    let (broker, events) = node(&nats).await;
    broker.subscribe("c").await.unwrap();
    nats.pause();

    let (options, x, query) = (options(10), client("x"), HistoryQuery::latest(None));
    let within = REQUEST_TIMEOUT + SLACK;
    let publish = broker.publish("c", Value::from(1), None, &options);
    expect_unavailable("publish", within, publish).await;
    expect_unavailable("history", within, broker.history("c", &query, &options)).await;
    expect_unavailable("join", within, broker.join("c", &x, JoinLeave::Announced)).await;
    expect_unavailable("presence", within, broker.presence("c")).await;

    // Pings go unanswered: the client gives the connection up, so the node resyncs once
    // NATS answers again.
    eventually("is_ready turns false", || !broker.is_ready()).await;
    nats.resume();
    assert!(events.wait_until(RECONNECT, |e| resyncs(e, "c") == 1).await, "resynced");
    eventually("is_ready turns true", || broker.is_ready()).await;
    let works = switchboard_test_support::poll_until(RECONNECT, || {
        let (broker, options) = (&broker, &options);
        async move { broker.publish("c", Value::from(2), None, options).await.ok() }
    });
    assert!(works.await.is_some(), "works again once nats answers");
}

#[tokio::test]
async fn a_restarted_nats_keeps_history_and_resyncs_every_channel() {
    let mut nats = NatsServer::start();
    let (broker, events) = node(&nats).await;
    broker.subscribe("c").await.unwrap();
    broker.subscribe("d").await.unwrap();
    let first = broker.publish("c", Value::from(1), None, &options(10)).await.unwrap();
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 1).await);

    nats.stop();
    eventually("is_ready turns false", || !broker.is_ready()).await;
    let ten = options(10);
    let down = broker.publish("c", Value::from(0), None, &ten);
    expect_unavailable("publish while down", SLACK, down).await;
    nats.restart();
    let resynced = |e: &[Event]| resyncs(e, "c") == 1 && resyncs(e, "d") == 1;
    assert!(events.wait_until(RECONNECT, resynced).await, "every channel resyncs");
    eventually("is_ready turns true", || broker.is_ready()).await;

    // Subscribed again: publications from this node and from a new one arrive, continuing
    // the stream the server kept on disk.
    let (other, _) = node(&nats).await;
    let second = broker.publish("c", Value::from(2), None, &options(10)).await.unwrap();
    assert_eq!(second, StreamPosition { offset: 2, epoch: first.epoch.clone() }, "same epoch");
    other.publish("c", Value::from(3), None, &options(10)).await.unwrap();
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 3).await);
    assert_eq!(events.offsets("c"), [1, 2, 3]);
    assert_eq!(events.resyncs("c"), 1);
    let since = HistoryQuery::since(first, None);
    let read = broker.history("c", &since, &options(10)).await.unwrap();
    assert!(read.complete, "nothing was lost");
    assert_eq!(read.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [2, 3]);
}

#[tokio::test]
async fn a_nats_restarted_without_its_store_starts_new_epochs() {
    let mut nats = NatsServer::start();
    let (broker, events) = node(&nats).await;
    broker.subscribe("c").await.unwrap();
    broker.publish("c", Value::from(1), None, &options(10)).await.unwrap();
    let old = broker.publish("c", Value::from(2), None, &options(10)).await.unwrap();
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 2).await);

    nats.restart_empty();
    assert!(events.wait_until(RECONNECT, |e| resyncs(e, "c") == 1).await, "resynced");
    eventually("is_ready turns true", || broker.is_ready()).await;
    let read = broker.history("c", &HistoryQuery::since(old.clone(), None), &options(10)).await;
    let read = read.expect("the stream is made again");
    assert!(!read.complete && read.publications.is_empty(), "an old position never recovers");
    assert_ne!(read.position.epoch, old.epoch, "a new epoch");
    let next = broker.publish("c", Value::from(3), None, &options(10)).await.unwrap();
    assert_eq!(next, StreamPosition { offset: 1, epoch: read.position.epoch });
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 3).await);
    assert_eq!(events.offsets("c"), [1, 2, 1]);
    assert_eq!(events.resyncs("c"), 1, "a new stream after a resync needs no other");
    broker.join("c", &client("x"), JoinLeave::Silent).await.expect("the buckets are back");
    broker.register_node("n", "", Duration::from_secs(5)).await.expect("the registry too");
}

#[tokio::test]
async fn an_offset_gap_or_a_foreign_epoch_on_the_live_subject_resyncs() {
    let nats = NatsServer::start();
    let (broker, events) = node(&nats).await;
    broker.subscribe("c").await.unwrap();
    broker.publish("c", Value::from(1), None, &options(10)).await.unwrap();
    let top = broker.publish("c", Value::from(2), None, &options(10)).await.unwrap();
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 2).await);

    let plain = plain(&nats).await;
    let live = broker.live_subject("c").unwrap();
    let send = |epoch: &str, offset: u64, payload: String| {
        let (plain, live) = (plain.clone(), live.clone());
        let mut headers = HeaderMap::new();
        headers.insert("Sb-Offset", offset.to_string().as_str());
        headers.insert("Sb-Epoch", epoch);
        async move { plain.publish_with_headers(live, headers, payload.into()).await.unwrap() }
    };
    send(&top.epoch, 4, r#"{"offset":4,"data":"skipped 3"}"#.to_owned()).await;
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 3).await);
    assert_eq!(events.resyncs("c"), 1, "a gap resyncs");
    let kinds: Vec<_> = events.events().into_iter().map(|e| kind(&e)).collect();
    assert_eq!(kinds, ["publication", "publication", "resync", "publication"], "resync first");
    assert_eq!(events.offsets("c"), [1, 2, 4]);

    send("elsewhere", 5, r#"{"offset":5,"data":"another epoch"}"#.to_owned()).await;
    plain.publish(live.clone(), Bytes::from_static(b"garbage")).await.unwrap();
    // Two connections have no order between them: the server has routed these first.
    round_trip(&plain).await;
    // Back to the real stream (offset 3 in the real epoch): the epoch changes again.
    broker.publish("c", Value::from(3), None, &options(10)).await.unwrap();
    assert!(events.wait_until(WAIT, |e| publications(e, "c") == 5).await);
    assert_eq!(events.offsets("c"), [1, 2, 4, 5, 3], "the garbage dropped");
    assert_eq!(events.resyncs("c"), 3, "each epoch change resyncs");
}

#[tokio::test]
async fn a_subscribed_stream_keeps_its_epoch_past_the_ttl() {
    let nats = NatsServer::start();
    let (broker, _) = node(&nats).await;
    let ttl = HEARTBEAT * 3;
    let options = StreamOptions::new(10, ttl);
    broker.subscribe("kept").await.unwrap();
    let kept = broker.publish("kept", Value::from(1), None, &options).await.unwrap();
    let forgotten = broker.publish("forgotten", Value::from(1), None, &options).await.unwrap();
    // Nothing announces that a TTL passed: wait it out, with heartbeats in between.
    tokio::time::sleep(ttl * 3).await;

    let next = broker.publish("kept", Value::from(2), None, &options).await.unwrap();
    assert_eq!(next, StreamPosition { offset: 2, epoch: kept.epoch }, "kept while subscribed");
    let next = broker.publish("forgotten", Value::from(2), None, &options).await.unwrap();
    assert_eq!(next.offset, 1, "an unwatched stream is forgotten after its TTL");
    assert_ne!(next.epoch, forgotten.epoch, "and comes back under a new epoch");
    let read = broker.history("forgotten", &HistoryQuery::latest(None), &options).await.unwrap();
    let offsets: Vec<_> = read.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [1], "what the old epoch held is not served");
}

#[tokio::test]
async fn subject_prefixes_keep_deployments_apart() {
    let nats = NatsServer::start();
    let mut config_one = config(&nats);
    config_one.subject_prefix = "one".to_owned();
    let mut config_two = config(&nats);
    config_two.subject_prefix = "two".to_owned();
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
    assert_eq!(one.live_subject("c").unwrap(), "one.live.Yw");
    assert_eq!(one.stream_name(), "one-channels");

    let js = jetstream::new(plain(&nats).await);
    let mut names: Vec<String> = Vec::new();
    let mut listed = js.stream_names();
    while let Some(name) = futures_util::StreamExt::next(&mut listed).await {
        names.push(name.unwrap());
    }
    names.sort();
    let expected = [
        "KV_one-nodes",
        "KV_one-presence",
        "KV_two-nodes",
        "KV_two-presence",
        "one-channels",
        "two-channels",
    ];
    assert_eq!(names, expected, "a stream and two buckets per prefix, nothing else");
}

#[tokio::test]
async fn node_messages_reach_the_named_node_until_it_is_gone() {
    let nats = NatsServer::start();
    let (a, a_events) = node(&nats).await;
    let (b, b_events) = node(&nats).await;
    a.listen_as("a").await.unwrap();
    b.listen_as("b").await.unwrap();
    b.listen_as("b").await.expect("listening again under the same name is fine");
    assert!(matches!(b.listen_as("c").await, Err(BrokerError::Internal(_))), "one name only");

    let sent: Vec<Bytes> = (0..100u32).map(|i| Bytes::from(i.to_be_bytes().to_vec())).collect();
    for message in &sent {
        a.send_to_node("b", message.clone()).await.expect("b listens");
    }
    b.send_to_node("a", Bytes::from_static(b"reply")).await.expect("a listens");
    assert!(a_events.wait_until(WAIT, |e| node_messages(e) == 1).await, "a gets the reply");
    assert!(b_events.wait_until(WAIT, |e| node_messages(e) == 100).await, "b gets them all");
    assert_eq!(b_events.node_messages(), sent, "intact, in the order one node sent them");
    assert_eq!(a_events.node_messages(), [Bytes::from_static(b"reply")], "only its own");

    // Dropping the broker aborts its tasks: its inbox subscription goes with them.
    drop(b);
    let gone = switchboard_test_support::poll_until(WAIT, || {
        let a = &a;
        async move {
            let sent = a.send_to_node("b", Bytes::from_static(b"anyone?")).await;
            match sent {
                Err(BrokerError::UnknownNode(name)) => Some(name),
                // Its connection is closing: the server may still route the request to a
                // subscription nobody reads, and the request times out.
                Ok(()) | Err(BrokerError::Unavailable(_)) => None,
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
async fn a_nodes_inbox_is_subscribed_again_after_a_restart_without_a_resync() {
    let mut nats = NatsServer::start();
    let (a, _) = node(&nats).await;
    let (b, b_events) = node(&nats).await;
    b.listen_as("b").await.unwrap();
    b.subscribe("c").await.unwrap();
    a.send_to_node("b", Bytes::from_static(b"before")).await.unwrap();
    assert!(b_events.wait_until(WAIT, |e| node_messages(e) == 1).await);

    nats.stop();
    eventually("is_ready turns false", || !a.is_ready()).await;
    let down = a.send_to_node("b", Bytes::from_static(b"while down"));
    expect_unavailable("send_to_node", SLACK, down).await;

    nats.restart();
    assert!(b_events.wait_until(RECONNECT, |e| resyncs(e, "c") == 1).await, "b reconnected");
    eventually("every node is ready again", || a.is_ready() && b.is_ready()).await;
    // The client subscribes again on its own; a request may race it, so retry briefly.
    let after = switchboard_test_support::poll_until(WAIT, || {
        let a = &a;
        async move { a.send_to_node("b", Bytes::from_static(b"after")).await.ok() }
    });
    assert!(after.await.is_some(), "b listens again");
    assert!(b_events.wait_until(WAIT, |e| node_messages(e) == 2).await, "b gets it");
    let expected = [Bytes::from_static(b"before"), Bytes::from_static(b"after")];
    assert_eq!(b_events.node_messages(), expected, "what was sent while down is not replayed");
    let resynced: Vec<_> = b_events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Resync { channel } => Some(channel),
            _ => None,
        })
        .collect();
    assert_eq!(resynced, ["c"], "the inbox is not a channel: no resync for it");
}

#[tokio::test]
async fn connect_fails_fast_without_nats_unless_told_to_wait() {
    let mut nats = NatsServer::start();
    nats.stop();
    let started = Instant::now();
    let failed = NatsBroker::connect(config(&nats)).await;
    assert!(matches!(failed, Err(BrokerError::Unavailable(_))), "{failed:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());

    let mut patient = config(&nats);
    patient.wait_for_nats = true;
    // In NATS's place, a listener that drops every connection: the broker must try again
    // rather than give up.
    let stand_in = tokio::net::TcpListener::bind(("127.0.0.1", nats.port())).await.unwrap();
    let waiting = tokio::spawn(NatsBroker::connect(patient));
    for attempt in ["a first attempt", "a second attempt"] {
        let accepted = tokio::time::timeout(RECONNECT, stand_in.accept()).await.expect(attempt);
        drop(accepted.unwrap());
    }
    assert!(!waiting.is_finished(), "waits while nats is down");
    drop(stand_in);
    nats.restart();
    let broker = tokio::time::timeout(RECONNECT, waiting).await.expect("connects").unwrap();
    assert!(broker.expect("connected").is_ready());
}

#[tokio::test]
async fn a_password_in_the_url_is_used_and_needed() {
    let nats = NatsServer::start_with(&["--user", "switchboard", "--pass", "s3cret"]);
    let with = format!("nats://switchboard:s3cret@127.0.0.1:{}", nats.port());
    let broker = NatsBroker::connect(NatsConfig::new(&with)).await.expect("the password works");
    assert_eq!(broker.publish("c", Value::from(1), None, &options(10)).await.unwrap().offset, 1);
    assert!(!format!("{broker:?}").contains("s3cret"), "the password stays out of logs");

    let without = NatsBroker::connect(NatsConfig::new(nats.url())).await;
    let Err(BrokerError::Unavailable(why)) = without else { panic!("{without:?}") };
    assert!(why.contains("authorization"), "{why}");
    let wrong = format!("nats://switchboard:wrong@127.0.0.1:{}", nats.port());
    let wrong = NatsBroker::connect(NatsConfig::new(wrong)).await;
    let Err(BrokerError::Unavailable(why)) = wrong else { panic!("{wrong:?}") };
    assert!(!why.contains("wrong"), "the password stays out of errors: {why}");
}

#[tokio::test]
async fn a_token_in_the_url_or_the_config_is_used() {
    let nats = NatsServer::start_with(&["--auth", "t0ken"]);
    let in_url = format!("nats://t0ken@127.0.0.1:{}", nats.port());
    let broker = NatsBroker::connect(NatsConfig::new(in_url)).await.expect("the token works");
    assert_eq!(broker.publish("c", Value::from(1), None, &options(10)).await.unwrap().offset, 1);
    let mut in_config = NatsConfig::new(nats.url());
    in_config.token = Some("t0ken".to_owned());
    NatsBroker::connect(in_config).await.expect("the token works from the config too");
}

#[tokio::test]
async fn tls_with_a_private_root() {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let dir = std::env::temp_dir().join(format!("switchboard-nats-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let nats = NatsServer::start_with(&["--tls", "--tlscert", cert_arg, "--tlskey", key_arg]);
    let url = format!("tls://localhost:{}", nats.port());

    let mut trusting = NatsConfig::new(&url);
    trusting.tls_root_certificates = Some(cert.clone());
    let broker = NatsBroker::connect(trusting).await.expect("a trusted certificate");
    assert_eq!(broker.publish("c", Value::from(1), None, &options(10)).await.unwrap().offset, 1);

    let untrusting = NatsBroker::connect(NatsConfig::new(&url)).await;
    assert!(matches!(untrusting, Err(BrokerError::Unavailable(_))), "{untrusting:?}");
    drop(std::fs::remove_dir_all(&dir));
}

#[tokio::test]
async fn bad_configs_are_refused() {
    let bad_url = NatsBroker::connect(NatsConfig::new("http://nope:1")).await;
    assert!(matches!(bad_url, Err(BrokerError::Internal(_))), "{bad_url:?}");
    let mut dotted = NatsConfig::default();
    dotted.subject_prefix = "a.b".to_owned();
    let bad_prefix = NatsBroker::connect(dotted).await;
    assert!(matches!(bad_prefix, Err(BrokerError::Internal(_))), "{bad_prefix:?}");
}

async fn node(nats: &NatsServer) -> (NatsBroker, Arc<RecordingHandler>) {
    let broker = connect(config(nats)).await;
    let events = RecordingHandler::new();
    broker.set_handler(events.clone());
    (broker, events)
}

async fn connect(config: NatsConfig) -> NatsBroker {
    NatsBroker::connect(config).await.expect("connecting to nats")
}

fn config(nats: &NatsServer) -> NatsConfig {
    let mut config = NatsConfig::new(nats.url());
    config.presence_heartbeat = HEARTBEAT;
    config.connect_timeout = Duration::from_millis(500);
    config.request_timeout = REQUEST_TIMEOUT;
    config
}

async fn publish_many(broker: &NatsBroker, base: u64) {
    for i in 0..50 {
        broker.publish("c", Value::from(base + i), None, &options(100)).await.expect("publish");
    }
}

/// A connection that is not a broker, for poking at NATS directly.
async fn plain(nats: &NatsServer) -> async_nats::Client {
    async_nats::connect(nats.url()).await.expect("connecting to nats")
}

/// Returns once the server has read everything `plain` sent before: a request nobody
/// answers comes back from the server itself.
async fn round_trip(plain: &async_nats::Client) {
    let answer = plain.request("nobody.listens", Bytes::new()).await;
    let kind = answer.map(|_| ()).map_err(|e| e.kind());
    assert_eq!(kind, Err(async_nats::RequestErrorKind::NoResponders));
}

/// The broker's stream, through a plain connection.
async fn plain_stream(nats: &NatsServer, broker: &NatsBroker) -> jetstream::stream::Stream {
    let js = jetstream::new(plain(nats).await);
    js.get_stream(broker.stream_name()).await.expect("the stream exists")
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
    let outcome = outcome.unwrap_or_else(|_| panic!("{what} hung without nats"));
    assert!(matches!(outcome, Err(BrokerError::Unavailable(_))), "{what}: {outcome:?}");
    assert!(started.elapsed() < within, "{what} took {:?} > {within:?}", started.elapsed());
}

/// Polls `done` until it holds, failing after [`RECONNECT`].
async fn eventually(what: &str, done: impl Fn() -> bool) {
    assert!(wait_until(RECONNECT, done).await, "waited {RECONNECT:?} for: {what}");
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

/// Request timeout in these tests.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// Scheduling and round trips on a loaded test machine.
const SLACK: Duration = Duration::from_millis(700);

/// How long to wait for an event that needs no reconnection.
const WAIT: Duration = Duration::from_secs(5);

/// How long a reconnection may take: backoff tops out at 2 s.
const RECONNECT: Duration = Duration::from_secs(10);
