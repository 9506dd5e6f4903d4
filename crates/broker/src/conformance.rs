//! A test suite every [`Broker`] implementation must pass.
//!
//! Each check takes a fresh broker (its handler not yet set), exercises one guarantee of the
//! [`Broker`] trait and panics with a message naming that guarantee when it does not hold.
//! Channel names carry a random suffix, so checks can share one backing store (one
//! `redis-server` for a whole test binary) without seeing each other's streams.
//!
//! The checks need no particular runtime. Waiting for events uses [`RecordingHandler::wait_until`],
//! which wakes itself from a plain thread on timeout; the concurrency check spawns its
//! publishers through a function the caller supplies (see [`run_all`]).
//!
//! Checks that something is *not* delivered publish a sentinel on another subscribed channel
//! afterwards and wait for it. That proves the point for brokers that deliver one node's
//! events in order across channels (one backplane connection); for others such a check may
//! pass without proving anything, but it never fails a correct broker.
//!
//! ```
//! use switchboard_broker::{MemoryBroker, conformance};
//!
//! #[tokio::main]
//! async fn main() {
//!     conformance::run_all(MemoryBroker::new, |task| {
//!         let task = tokio::spawn(task);
//!         Box::pin(async move { task.await.expect("publisher panicked") })
//!     })
//!     .await;
//! }
//! ```

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use crate::{
    Broker, BrokerError, BrokerHandler, ClientInfo, History, HistoryQuery, JoinLeave, NodeRecord,
    Publication, StreamOptions, StreamPosition, Value,
};

/// A boxed task: what a spawner runs, and the future it returns to wait for the task.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs every check, each on a broker from `make`.
///
/// `spawn` starts a task running concurrently, at once (not when the returned future is
/// first polled), and returns a future that completes when the task has finished, panicking
/// if the task panicked. With tokio:
/// `|task| { let task = tokio::spawn(task); Box::pin(async move { task.await.unwrap() }) }`.
pub async fn run_all<B: Broker>(make: impl Fn() -> B, spawn: impl Fn(Task) -> Task) {
    offsets_are_consecutive_from_one(&make()).await;
    publish_position_matches_history(&make()).await;
    history_creates_the_stream(&make()).await;
    history_returns_the_latest(&make()).await;
    history_returns_everything_since_a_position(&make()).await;
    unrecoverable_since_returns_nothing(&make()).await;
    zero_history_size_still_assigns_offsets(&make()).await;
    delivers_only_subscribed_channels(&make()).await;
    presence_lists_joined_clients(&make()).await;
    announces_joins_and_leaves(&make()).await;
    channels_are_independent(&make()).await;
    node_messages_reach_the_named_node(&make()).await;
    nodes_are_listed_until_their_record_expires(&make()).await;
    concurrent_publishers_are_delivered_in_offset_order(make(), spawn).await;
}

/// Offsets start at 1 and go up by one per publication, all in the same epoch.
pub async fn offsets_are_consecutive_from_one<B: Broker>(broker: &B) {
    let channel = unique("offsets");
    let options = StreamOptions::new(10, TTL);
    let first = publish(broker, &channel, 1, &options).await;
    assert_eq!(first.offset, 1, "the first publication must get offset 1");
    assert!(!first.epoch.is_empty(), "an epoch must not be empty");
    for offset in 2..=5 {
        let position = publish(broker, &channel, offset, &options).await;
        assert_eq!(
            position,
            StreamPosition { offset, epoch: first.epoch.clone() },
            "offsets must be consecutive within one epoch"
        );
    }
}

/// The position `publish` returns is the one history reports, and history holds what was
/// published.
pub async fn publish_position_matches_history<B: Broker>(broker: &B) {
    let channel = unique("position");
    let options = StreamOptions::new(10, TTL);
    let client = client("publisher");
    broker
        .publish(&channel, Value::from("a"), Some(Arc::new(client.clone())), &options)
        .await
        .unwrap_or_else(|e| panic!("publish failed: {e}"));
    publish(broker, &channel, "b", &options).await;
    let last = publish(broker, &channel, "c", &options).await;
    let read = history(broker, &channel, &HistoryQuery::latest(None), &options).await;
    assert_eq!(read.position, last, "history must report the position publish returned");
    assert!(read.complete, "a history read without `since` is always complete");
    assert_eq!(offsets(&read), [1, 2, 3], "history must hold every publication");
    let data: Vec<_> = read.publications.iter().map(|p| p.data.clone()).collect();
    assert_eq!(data, ["a", "b", "c"], "history must keep the published data");
    assert_eq!(
        read.publications[0].info.as_deref(),
        Some(&client),
        "history must keep publication info"
    );
    assert_eq!(read.publications[1].info, None);
}

/// Reading an unknown channel's history creates its stream: offset 0 in an epoch that the
/// next publication keeps.
pub async fn history_creates_the_stream<B: Broker>(broker: &B) {
    let channel = unique("fresh");
    let options = StreamOptions::new(10, TTL);
    let read = history(broker, &channel, &HistoryQuery::latest(None), &options).await;
    assert_eq!(read.position.offset, 0, "a new stream starts at offset 0");
    assert!(!read.position.epoch.is_empty(), "a new stream must have an epoch");
    assert!(read.complete && read.publications.is_empty(), "a new stream has no history");
    let again = history(broker, &channel, &HistoryQuery::latest(None), &options).await;
    assert_eq!(again.position, read.position, "reading history must not change the epoch");
    let since = HistoryQuery::since(read.position.clone(), None);
    let empty = history(broker, &channel, &since, &options).await;
    assert!(empty.complete && empty.publications.is_empty(), "nothing after the top offset");
    let first = publish(broker, &channel, 1, &options).await;
    assert_eq!(
        first,
        StreamPosition { offset: 1, epoch: read.position.epoch.clone() },
        "a publication must continue the stream history created"
    );
    let read = history(broker, &channel, &since, &options).await;
    assert!(read.complete, "a position from the stream's creation must recover");
    assert_eq!(offsets(&read), [1]);
}

/// Without `since`, history returns the newest `limit` publications, oldest first.
pub async fn history_returns_the_latest<B: Broker>(broker: &B) {
    let channel = unique("latest");
    let options = StreamOptions::new(5, TTL);
    for i in 1..=8 {
        publish(broker, &channel, i, &options).await;
    }
    for (limit, expected) in [
        (None, vec![4, 5, 6, 7, 8]),
        (Some(2), vec![7, 8]),
        (Some(0), vec![]),
        (Some(100), vec![4, 5, 6, 7, 8]),
    ] {
        let read = history(broker, &channel, &HistoryQuery::latest(limit), &options).await;
        assert_eq!(offsets(&read), expected, "latest with limit {limit:?} over history size 5");
        assert!(read.complete, "a history read without `since` is always complete");
        assert_eq!(read.position.offset, 8, "history must report the top offset");
    }
}

/// With a recoverable `since`, history returns exactly the publications after it.
pub async fn history_returns_everything_since_a_position<B: Broker>(broker: &B) {
    let channel = unique("since");
    let options = StreamOptions::new(10, TTL);
    let mut epoch = String::new();
    for i in 1..=6 {
        epoch = publish(broker, &channel, i * 10, &options).await.epoch;
    }
    let at = |offset| StreamPosition { offset, epoch: epoch.clone() };
    for (since, limit, expected) in [
        (3, None, vec![4, 5, 6]),
        (0, None, vec![1, 2, 3, 4, 5, 6]),
        (6, None, vec![]),
        (3, Some(3), vec![4, 5, 6]),
        (6, Some(0), vec![]),
    ] {
        let query = HistoryQuery::since(at(since), limit);
        let read = history(broker, &channel, &query, &options).await;
        assert!(read.complete, "since {since} limit {limit:?} must recover");
        assert_eq!(offsets(&read), expected, "since {since} limit {limit:?}");
        assert_eq!(read.position, at(6), "history must report the top position");
    }
    let read = history(broker, &channel, &HistoryQuery::since(at(4), None), &options).await;
    let data: Vec<_> = read.publications.iter().map(|p| p.data.clone()).collect();
    assert_eq!(data, [50, 60], "recovered publications must carry their data");
}

/// A `since` that cannot be served exactly gives `complete: false` and no publications:
/// another epoch, offsets trimmed by history size, an offset beyond the top, or more
/// publications than `limit`.
pub async fn unrecoverable_since_returns_nothing<B: Broker>(broker: &B) {
    let channel = unique("unrecoverable");
    let options = StreamOptions::new(3, TTL);
    let mut top = StreamPosition::default();
    for i in 1..=5 {
        top = publish(broker, &channel, i, &options).await;
    }
    let at = |offset| StreamPosition { offset, epoch: top.epoch.clone() };
    let other_epoch = StreamPosition { offset: 4, epoch: format!("x{}", top.epoch) };
    for (why, query) in [
        ("another epoch", HistoryQuery::since(other_epoch, None)),
        ("offset 2 trimmed by history size 3", HistoryQuery::since(at(1), None)),
        ("offset 0 beyond history", HistoryQuery::since(at(0), None)),
        ("offset beyond the top", HistoryQuery::since(at(6), None)),
        ("3 missed over limit 2", HistoryQuery::since(at(2), Some(2))),
        ("1 missed over limit 0", HistoryQuery::since(at(4), Some(0))),
    ] {
        let read = history(broker, &channel, &query, &options).await;
        assert!(!read.complete, "{why}: must be incomplete");
        assert!(read.publications.is_empty(), "{why}: must return no publications");
        assert_eq!(read.position, top, "{why}: must still report the top position");
    }
    for (since, limit, expected) in [(2, None, vec![3, 4, 5]), (3, Some(2), vec![4, 5])] {
        let read =
            history(broker, &channel, &HistoryQuery::since(at(since), limit), &options).await;
        assert!(read.complete, "since {since} limit {limit:?}: everything is still there");
        assert_eq!(offsets(&read), expected, "since {since} limit {limit:?}");
    }
}

/// The history a broker set up to hold at most [`HISTORY_BYTES`] for this channel (the
/// in-memory broker's node-wide budget, the Redis broker's per-channel cap) sheds its
/// oldest publications past that: offsets stay consecutive up to the top, the epoch stays,
/// and a `since` before the oldest kept offset reads as incomplete, never as a silent gap.
///
/// Not part of [`run_all`], whose brokers keep their default limits.
pub async fn history_is_capped_in_bytes_from_the_front<B: Broker>(broker: &B) {
    const PUBLISHED: u64 = 40;
    let channel = unique("bytes");
    let options = StreamOptions::new(100, TTL);
    // About 1 KiB each however it is counted, so the cap holds roughly 16 of them.
    let data = "x".repeat(1000);
    let mut top = StreamPosition::default();
    for _ in 0..PUBLISHED {
        top = publish(broker, &channel, data.as_str(), &options).await;
    }
    assert_eq!(top.offset, PUBLISHED, "a byte cap must not change offsets");
    let read = history(broker, &channel, &HistoryQuery::latest(None), &options).await;
    assert_eq!(read.position, top, "a byte cap must not change the top or the epoch");
    let kept = offsets(&read);
    assert!(
        (8..=16).contains(&kept.len()),
        "{} KiB of history must keep 8 to 16 publications of 1 KB, kept {}",
        HISTORY_BYTES >> 10,
        kept.len()
    );
    let oldest = PUBLISHED + 1 - kept.len() as u64;
    assert_eq!(kept, (oldest..=PUBLISHED).collect::<Vec<_>>(), "the newest stay, consecutive");
    let at = |offset| StreamPosition { offset, epoch: top.epoch.clone() };
    let read =
        history(broker, &channel, &HistoryQuery::since(at(oldest - 2), None), &options).await;
    assert!(!read.complete, "a since before the oldest kept offset must be incomplete");
    assert!(read.publications.is_empty(), "and must return no publications");
    let read =
        history(broker, &channel, &HistoryQuery::since(at(oldest - 1), None), &options).await;
    assert!(read.complete, "a since at the oldest kept offset minus one recovers");
    assert_eq!(offsets(&read), kept);
    let next = publish(broker, &channel, 1, &options).await;
    assert_eq!(next, at(PUBLISHED + 1), "publishing continues the same stream");
}

/// With `history_size` 0 nothing is stored, but offsets still advance.
pub async fn zero_history_size_still_assigns_offsets<B: Broker>(broker: &B) {
    let channel = unique("no-history");
    let options = StreamOptions::new(0, TTL);
    let first = publish(broker, &channel, 1, &options).await;
    publish(broker, &channel, 2, &options).await;
    let top = publish(broker, &channel, 3, &options).await;
    assert_eq!(top, StreamPosition { offset: 3, epoch: first.epoch }, "offsets must advance");
    let read = history(broker, &channel, &HistoryQuery::latest(None), &options).await;
    assert_eq!(read.position, top);
    assert!(read.complete && read.publications.is_empty(), "history size 0 keeps nothing");
    let behind = StreamPosition { offset: 2, ..top.clone() };
    let read = history(broker, &channel, &HistoryQuery::since(behind, None), &options).await;
    assert!(!read.complete && read.publications.is_empty(), "nothing can be recovered");
    let read = history(broker, &channel, &HistoryQuery::since(top, None), &options).await;
    assert!(read.complete && read.publications.is_empty(), "nothing was missed at the top");
}

/// `on_publication` comes only for subscribed channels, once per publication, and stops
/// after `unsubscribe`. Both are idempotent.
pub async fn delivers_only_subscribed_channels<B: Broker>(broker: &B) {
    let handler = RecordingHandler::new();
    broker.set_handler(handler.clone());
    let channel = unique("subscribed");
    let sentinel = unique("sentinel");
    let options = StreamOptions::new(10, TTL);
    subscribe(broker, &sentinel).await;

    publish(broker, &channel, 1, &options).await;
    subscribe(broker, &channel).await;
    subscribe(broker, &channel).await;
    publish(broker, &channel, 2, &options).await;
    expect_offsets(&handler, &channel, &[2], "only publications after subscribe").await;

    unsubscribe(broker, &channel).await;
    unsubscribe(broker, &channel).await;
    publish(broker, &channel, 3, &options).await;
    settle(broker, &handler, &sentinel).await;
    assert_eq!(handler.offsets(&channel), [2], "nothing may be delivered after unsubscribe");

    subscribe(broker, &channel).await;
    publish(broker, &channel, 4, &options).await;
    expect_offsets(&handler, &channel, &[2, 4], "delivery resumes on subscribe").await;
    let delivered = handler.publications(&channel);
    assert_eq!(delivered[1].data, 4, "the delivered publication must carry its data");
    assert!(handler.resyncs(&channel) == 0, "nothing was lost, so no resync");
}

/// `join` and `leave` maintain presence, listed sorted by client id; without `announce`
/// they emit nothing.
pub async fn presence_lists_joined_clients<B: Broker>(broker: &B) {
    let handler = RecordingHandler::new();
    broker.set_handler(handler.clone());
    let channel = unique("presence");
    subscribe(broker, &channel).await;
    assert!(presence(broker, &channel).await.is_empty(), "nobody is present at first");
    assert_eq!(presence_count(broker, &channel).await, 0, "nobody is counted at first");

    join(broker, &channel, &client("b"), JoinLeave::Silent).await;
    join(broker, &channel, &client("a"), JoinLeave::Silent).await;
    assert_eq!(presence(broker, &channel).await, [client("a"), client("b")], "sorted by id");
    assert_eq!(presence_count(broker, &channel).await, 2, "the count is the list's length");

    let renamed = ClientInfo { user: Some("alice".to_owned()), ..client("a") };
    join(broker, &channel, &renamed, JoinLeave::Silent).await;
    assert_eq!(
        presence(broker, &channel).await,
        [renamed.clone(), client("b")],
        "joining again replaces the entry"
    );
    assert_eq!(presence_count(broker, &channel).await, 2, "a replaced entry counts once");

    leave(broker, &channel, &client("b"), JoinLeave::Silent).await;
    leave(broker, &channel, &client("b"), JoinLeave::Silent).await;
    let present = presence(broker, &channel).await;
    assert_eq!(present, std::slice::from_ref(&renamed), "leave removes the client");
    assert_eq!(presence_count(broker, &channel).await, 1, "leave uncounts the client");
    leave(broker, &channel, &renamed, JoinLeave::Silent).await;
    assert!(presence(broker, &channel).await.is_empty(), "everyone left");
    assert_eq!(presence_count(broker, &channel).await, 0, "everyone left");

    join(broker, &channel, &client("sentinel"), JoinLeave::Announced).await;
    let done = handler.wait_until(WAIT, |events| !joins(events, &channel).is_empty()).await;
    assert!(done, "an announced join must be delivered");
    assert_eq!(handler.joins(&channel), [client("sentinel")], "unannounced joins are silent");
    assert!(handler.leaves(&channel).is_empty(), "unannounced leaves are silent");
}

/// With `announce`, joins and leaves reach subscribed nodes; a leave of someone absent, or
/// on a channel this node is not subscribed to, emits nothing.
pub async fn announces_joins_and_leaves<B: Broker>(broker: &B) {
    let handler = RecordingHandler::new();
    broker.set_handler(handler.clone());
    let channel = unique("announce");
    let unsubscribed = unique("unannounced");
    subscribe(broker, &channel).await;

    join(broker, &channel, &client("a"), JoinLeave::Announced).await;
    let done = handler.wait_until(WAIT, |events| !joins(events, &channel).is_empty()).await;
    assert!(done, "an announced join must be delivered to a subscribed node");
    assert_eq!(handler.joins(&channel), [client("a")]);
    assert_eq!(presence(broker, &channel).await, [client("a")], "an announced join is present");

    leave(broker, &channel, &client("a"), JoinLeave::Announced).await;
    let done = handler.wait_until(WAIT, |events| !leaves(events, &channel).is_empty()).await;
    assert!(done, "an announced leave must be delivered to a subscribed node");
    assert_eq!(handler.leaves(&channel), [client("a")]);
    assert!(presence(broker, &channel).await.is_empty());

    leave(broker, &channel, &client("a"), JoinLeave::Announced).await;
    join(broker, &unsubscribed, &client("c"), JoinLeave::Announced).await;
    leave(broker, &unsubscribed, &client("c"), JoinLeave::Announced).await;
    join(broker, &channel, &client("sentinel"), JoinLeave::Announced).await;
    let done = handler.wait_until(WAIT, |events| joins(events, &channel).len() == 2).await;
    assert!(done, "an announced join must be delivered to a subscribed node");
    assert_eq!(handler.leaves(&channel), [client("a")], "leaving twice must announce once");
    assert!(handler.joins(&unsubscribed).is_empty(), "no joins from unsubscribed channels");
    assert!(handler.leaves(&unsubscribed).is_empty(), "no leaves from unsubscribed channels");
}

/// Two channels share nothing: offsets, history, delivery and presence are per channel.
pub async fn channels_are_independent<B: Broker>(broker: &B) {
    let handler = RecordingHandler::new();
    broker.set_handler(handler.clone());
    let (a, b) = (unique("independent-a"), unique("independent-b"));
    let options = StreamOptions::new(10, TTL);
    for i in 1..=3 {
        assert_eq!(publish(broker, &a, i, &options).await.offset, i, "channel a's offsets");
    }
    for i in 1..=2 {
        assert_eq!(publish(broker, &b, i, &options).await.offset, i, "channel b's own offsets");
    }
    let read_a = history(broker, &a, &HistoryQuery::latest(None), &options).await;
    let read_b = history(broker, &b, &HistoryQuery::latest(None), &options).await;
    assert_eq!(offsets(&read_a), [1, 2, 3], "channel a's history");
    assert_eq!(offsets(&read_b), [1, 2], "channel b's history");

    subscribe(broker, &a).await;
    publish(broker, &b, 3, &options).await;
    publish(broker, &a, 4, &options).await;
    expect_offsets(&handler, &a, &[4], "channel a's deliveries").await;
    assert!(handler.offsets(&b).is_empty(), "no deliveries for unsubscribed channel b");

    join(broker, &a, &client("x"), JoinLeave::Silent).await;
    assert_eq!(presence(broker, &a).await, [client("x")]);
    assert!(presence(broker, &b).await.is_empty(), "presence is per channel");
}

/// A node listening under a name gets the messages sent to that name, intact and in the
/// order one sender sent them; a name no node listens under is
/// [`BrokerError::UnknownNode`]. The broker sends to its own name: the one node a check has.
pub async fn node_messages_reach_the_named_node<B: Broker>(broker: &B) {
    let handler = RecordingHandler::new();
    broker.set_handler(handler.clone());
    let node = unique_node();
    broker.listen_as(&node).await.unwrap_or_else(|e| failed("listen_as", &e));
    let messages = [
        Bytes::from_static(b"first"),
        // Not UTF-8, with NUL and every other byte value: carried as bytes, not text.
        (0..=255u8).rev().collect(),
        Bytes::new(),
        Bytes::from(vec![b'x'; 64 << 10]),
    ];
    for message in &messages {
        let sent = broker.send_to_node(&node, message.clone()).await;
        sent.unwrap_or_else(|e| failed("send_to_node", &e));
    }
    let all = |events: &[Event]| node_messages(events).len() >= messages.len();
    assert!(handler.wait_until(WAIT, all).await, "every message sent must arrive");
    assert_eq!(handler.node_messages(), messages, "messages must arrive intact and in order");

    for unknown in [unique_node(), format!("{node}0"), "Not-A-Name".to_owned(), String::new()] {
        let sent = broker.send_to_node(&unknown, Bytes::from_static(b"lost")).await;
        assert_eq!(
            sent,
            Err(BrokerError::UnknownNode(unknown.clone())),
            "no node listens as {unknown:?}"
        );
    }
    broker
        .send_to_node(&node, Bytes::from_static(b"last"))
        .await
        .unwrap_or_else(|e| failed("send_to_node", &e));
    let last = |events: &[Event]| node_messages(events).len() > messages.len();
    assert!(handler.wait_until(WAIT, last).await, "the last message must arrive");
    assert_eq!(
        handler.node_messages().last(),
        Some(&Bytes::from_static(b"last")),
        "messages to unknown nodes must not arrive anywhere"
    );
    assert_eq!(handler.node_messages().len(), messages.len() + 1);
}

/// A registered node is listed with its latest info until its record expires or is removed
/// with a zero time to live; a name that is not a node name is refused.
pub async fn nodes_are_listed_until_their_record_expires<B: Broker>(broker: &B) {
    let (lasting, brief, removed) = (unique_node(), unique_node(), unique_node());
    let register = |node: &str, info: &str, ttl: Duration| {
        let node = node.to_owned();
        let info = info.to_owned();
        async move {
            broker
                .register_node(&node, &info, ttl)
                .await
                .unwrap_or_else(|e| failed("register_node", &e));
        }
    };
    register(&lasting, "first", Duration::from_secs(60)).await;
    register(&lasting, r#"{"connections": 3, "text": "é ✓"}"#, Duration::from_secs(60)).await;
    register(&brief, "brief", Duration::from_millis(300)).await;
    register(&removed, "removed", Duration::from_secs(60)).await;
    register(&removed, "", Duration::ZERO).await;

    let ours = |records: Vec<NodeRecord>| {
        let mut ours: Vec<_> = records
            .into_iter()
            .filter(|r| [&lasting, &brief, &removed].contains(&&r.name))
            .map(|r| (r.name, r.info))
            .collect();
        ours.sort();
        ours
    };
    let mut expected = vec![
        (lasting.clone(), r#"{"connections": 3, "text": "é ✓"}"#.to_owned()),
        (brief.clone(), "brief".to_owned()),
    ];
    expected.sort();
    let listed = broker.nodes().await.unwrap_or_else(|e| failed("nodes", &e));
    assert_eq!(ours(listed), expected, "live records, latest info, the removed one gone");

    let deadline = Instant::now() + WAIT;
    loop {
        let listed = ours(broker.nodes().await.unwrap_or_else(|e| failed("nodes", &e)));
        if listed.iter().all(|(name, _)| *name != brief) {
            assert_eq!(listed.len(), 1, "only the brief record expires: {listed:?}");
            break;
        }
        assert!(Instant::now() < deadline, "an expired record must go: {listed:?}");
        // Nothing announces an expiry: look again shortly.
        delay(Duration::from_millis(20)).await;
    }

    for name in ["Not-A-Name", ""] {
        let refused = broker.register_node(name, "x", Duration::from_secs(1)).await;
        assert!(matches!(refused, Err(BrokerError::Internal(_))), "{name:?}: {refused:?}");
    }
}

/// Several publishers at once on one channel: offsets are unique and consecutive, each
/// publisher sees its own offsets increase, and delivery is in offset order with no gap and
/// no duplicate, matching history. `spawn` is as for [`run_all`]; run it on a multi-threaded
/// executor for real parallelism.
pub async fn concurrent_publishers_are_delivered_in_offset_order<B: Broker>(
    broker: B,
    spawn: impl Fn(Task) -> Task,
) {
    const PUBLISHERS: u64 = 8;
    const EACH: u64 = 250;
    const TOTAL: u64 = PUBLISHERS * EACH;
    let broker = Arc::new(broker);
    let handler = RecordingHandler::new();
    broker.set_handler(handler.clone());
    let channel = unique("concurrent");
    let options = StreamOptions::new(TOTAL as usize, TTL);
    subscribe(&*broker, &channel).await;

    let returned = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<Task> = (0..PUBLISHERS)
        .map(|publisher| {
            let (broker, channel, options) = (broker.clone(), channel.clone(), options.clone());
            let returned = returned.clone();
            spawn(Box::pin(async move {
                let mut last = 0;
                for i in 0..EACH {
                    let data = publisher * EACH_SPAN + i;
                    let position = publish(&*broker, &channel, data, &options).await;
                    assert!(position.offset > last, "one publisher's offsets must increase");
                    last = position.offset;
                    lock(&returned).push(position);
                }
            }))
        })
        .collect();
    for task in tasks {
        task.await;
    }

    let mut returned = std::mem::take(&mut *lock(&returned));
    returned.sort_by_key(|position| position.offset);
    let expected: Vec<u64> = (1..=TOTAL).collect();
    let offsets_returned: Vec<u64> = returned.iter().map(|p| p.offset).collect();
    assert_eq!(offsets_returned, expected, "concurrent publishes must get unique offsets 1..=N");
    assert!(returned.iter().all(|p| p.epoch == returned[0].epoch), "one epoch throughout");

    let all = |events: &[Event]| publications(events, &channel).len() as u64 >= TOTAL;
    assert!(handler.wait_until(WAIT, all).await, "every publication must be delivered");
    assert_eq!(handler.offsets(&channel), expected, "delivery must follow offset order");
    let delivered = handler.publications(&channel);
    for publisher in 0..PUBLISHERS {
        let data: Vec<u64> = delivered
            .iter()
            .filter_map(|p| p.data.as_u64())
            .filter(|data| data / EACH_SPAN == publisher)
            .collect();
        let sent: Vec<u64> = (0..EACH).map(|i| publisher * EACH_SPAN + i).collect();
        assert_eq!(data, sent, "publisher {publisher}'s publications in the order it sent them");
    }
    let read = history(&*broker, &channel, &HistoryQuery::latest(None), &options).await;
    assert_eq!(read.publications, delivered, "history must match what was delivered");
}

/// What a [`RecordingHandler`] saw.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `on_publication`.
    Publication {
        /// The channel.
        channel: String,
        /// The publication.
        publication: Arc<Publication>,
    },
    /// `on_join`.
    Join {
        /// The channel.
        channel: String,
        /// Who joined.
        client: ClientInfo,
    },
    /// `on_leave`.
    Leave {
        /// The channel.
        channel: String,
        /// Who left.
        client: ClientInfo,
    },
    /// `on_resync`.
    Resync {
        /// The channel.
        channel: String,
    },
    /// `on_node_message`.
    NodeMessage {
        /// The message.
        message: Bytes,
    },
}

/// A [`BrokerHandler`] that records every event, in order, for assertions.
#[derive(Debug, Default)]
pub struct RecordingHandler {
    recorded: Mutex<Recorded>,
}

impl RecordingHandler {
    /// An empty recorder, shared: pass a clone to [`Broker::set_handler`].
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every event so far, in the order the broker emitted them.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// The publications delivered on `channel`, in delivery order.
    pub fn publications(&self, channel: &str) -> Vec<Arc<Publication>> {
        publications(&self.lock().events, channel)
    }

    /// The offsets delivered on `channel`, in delivery order.
    pub fn offsets(&self, channel: &str) -> Vec<u64> {
        self.publications(channel).iter().map(|p| p.offset).collect()
    }

    /// The clients announced joining `channel`, in order.
    pub fn joins(&self, channel: &str) -> Vec<ClientInfo> {
        joins(&self.lock().events, channel)
    }

    /// The clients announced leaving `channel`, in order.
    pub fn leaves(&self, channel: &str) -> Vec<ClientInfo> {
        leaves(&self.lock().events, channel)
    }

    /// How many times `channel` was reported for resync.
    pub fn resyncs(&self, channel: &str) -> usize {
        let recorded = self.lock();
        recorded
            .events
            .iter()
            .filter(|e| matches!(e, Event::Resync { channel: c } if c == channel))
            .count()
    }

    /// The node messages received, in order.
    pub fn node_messages(&self) -> Vec<Bytes> {
        node_messages(&self.lock().events)
    }

    /// Forgets every event so far.
    pub fn clear(&self) {
        self.lock().events.clear();
    }

    /// Waits until `done` holds for the events so far, or `timeout` passes. Returns whether
    /// `done` held. Works on any executor: events wake the waiting task, and a plain thread
    /// wakes it at the deadline.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&[Event]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut alarm = Alarm::default();
        poll_fn(|cx| {
            let mut recorded = self.lock();
            if done(&recorded.events) {
                return Poll::Ready(true);
            }
            if Instant::now() >= deadline {
                return Poll::Ready(false);
            }
            recorded.wakers.push(cx.waker().clone());
            drop(recorded);
            alarm.set(deadline, cx.waker());
            Poll::Pending
        })
        .await
    }

    fn record(&self, event: Event) {
        let wakers = {
            let mut recorded = self.lock();
            recorded.events.push(event);
            std::mem::take(&mut recorded.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        lock(&self.recorded)
    }
}

impl BrokerHandler for RecordingHandler {
    fn on_publication(&self, channel: &str, publication: Arc<Publication>) {
        self.record(Event::Publication { channel: channel.to_owned(), publication });
    }

    fn on_join(&self, channel: &str, client: &ClientInfo) {
        self.record(Event::Join { channel: channel.to_owned(), client: client.clone() });
    }

    fn on_leave(&self, channel: &str, client: &ClientInfo) {
        self.record(Event::Leave { channel: channel.to_owned(), client: client.clone() });
    }

    fn on_resync(&self, channel: &str) {
        self.record(Event::Resync { channel: channel.to_owned() });
    }

    fn on_node_message(&self, message: Bytes) {
        self.record(Event::NodeMessage { message });
    }
}

#[derive(Debug, Default)]
struct Recorded {
    events: Vec<Event>,
    /// Tasks in `wait_until`, woken by the next event.
    wakers: Vec<Waker>,
}

/// A channel name no other check (or run sharing a backing store) uses.
/// Waits `duration` on any executor.
async fn delay(duration: Duration) {
    let deadline = Instant::now() + duration;
    let mut alarm = Alarm::default();
    poll_fn(|cx| {
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        alarm.set(deadline, cx.waker());
        Poll::Pending
    })
    .await;
}

/// Wakes a task at a deadline without a runtime's timer: a thread sleeps until then and
/// wakes the waker it was last given.
#[derive(Default)]
struct Alarm(Option<Arc<Mutex<Waker>>>);

impl Alarm {
    /// Wakes `waker` (in place of the one given before) at `deadline`; the first call starts
    /// the thread, later ones only change whom it wakes.
    fn set(&mut self, deadline: Instant, waker: &Waker) {
        match &self.0 {
            Some(current) => lock(current).clone_from(waker),
            None => {
                let current = Arc::new(Mutex::new(waker.clone()));
                let wake = Arc::clone(&current);
                std::thread::spawn(move || {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    lock(&wake).wake_by_ref();
                });
                self.0 = Some(current);
            }
        }
    }
}

fn unique(name: &str) -> String {
    let suffix: u64 = rand::rng().random();
    format!("conformance-{name}-{suffix:016x}")
}

/// A node name no other check (or run sharing a backing store) uses.
fn unique_node() -> String {
    let suffix: u64 = rand::rng().random();
    format!("conformance{suffix:016x}")
}

fn client(id: &str) -> ClientInfo {
    ClientInfo { id: id.to_owned(), user: None, info: None }
}

fn offsets(history: &History) -> Vec<u64> {
    history.publications.iter().map(|p| p.offset).collect()
}

fn publications(events: &[Event], channel: &str) -> Vec<Arc<Publication>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Publication { channel: c, publication } if c == channel => {
                Some(publication.clone())
            }
            _ => None,
        })
        .collect()
}

fn joins(events: &[Event], channel: &str) -> Vec<ClientInfo> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Join { channel: c, client } if c == channel => Some(client.clone()),
            _ => None,
        })
        .collect()
}

fn leaves(events: &[Event], channel: &str) -> Vec<ClientInfo> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Leave { channel: c, client } if c == channel => Some(client.clone()),
            _ => None,
        })
        .collect()
}

fn node_messages(events: &[Event]) -> Vec<Bytes> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::NodeMessage { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Waits until `channel`'s deliveries reach `expected`'s length, then compares them.
async fn expect_offsets(handler: &RecordingHandler, channel: &str, expected: &[u64], why: &str) {
    let enough = |events: &[Event]| publications(events, channel).len() >= expected.len();
    let arrived = handler.wait_until(WAIT, enough).await;
    assert!(arrived, "{why}: waited {WAIT:?} for offsets {expected:?}");
    assert_eq!(handler.offsets(channel), expected, "{why}");
}

/// Publishes on the subscribed `sentinel` channel and waits for its delivery, so events
/// emitted before it have arrived too.
async fn settle<B: Broker>(broker: &B, handler: &RecordingHandler, sentinel: &str) {
    let before = handler.publications(sentinel).len();
    publish(broker, sentinel, "sentinel", &StreamOptions::new(0, TTL)).await;
    let arrived = |events: &[Event]| publications(events, sentinel).len() > before;
    assert!(handler.wait_until(WAIT, arrived).await, "the sentinel publication was not delivered");
}

async fn publish<B: Broker>(
    broker: &B,
    channel: &str,
    data: impl Into<Value>,
    options: &StreamOptions,
) -> StreamPosition {
    broker
        .publish(channel, data.into(), None, options)
        .await
        .unwrap_or_else(|e| failed("publish", &e))
}

async fn history<B: Broker>(
    broker: &B,
    channel: &str,
    query: &HistoryQuery,
    options: &StreamOptions,
) -> History {
    broker.history(channel, query, options).await.unwrap_or_else(|e| failed("history", &e))
}

async fn subscribe<B: Broker>(broker: &B, channel: &str) {
    broker.subscribe(channel).await.unwrap_or_else(|e| failed("subscribe", &e));
}

async fn unsubscribe<B: Broker>(broker: &B, channel: &str) {
    broker.unsubscribe(channel).await.unwrap_or_else(|e| failed("unsubscribe", &e));
}

async fn join<B: Broker>(broker: &B, channel: &str, client: &ClientInfo, announce: JoinLeave) {
    broker.join(channel, client, announce).await.unwrap_or_else(|e| failed("join", &e));
}

async fn leave<B: Broker>(broker: &B, channel: &str, client: &ClientInfo, announce: JoinLeave) {
    broker.leave(channel, client, announce).await.unwrap_or_else(|e| failed("leave", &e));
}

async fn presence<B: Broker>(broker: &B, channel: &str) -> Vec<ClientInfo> {
    broker.presence(channel).await.unwrap_or_else(|e| failed("presence", &e))
}

async fn presence_count<B: Broker>(broker: &B, channel: &str) -> usize {
    broker.presence_count(channel).await.unwrap_or_else(|e| failed("presence_count", &e))
}

fn failed<T>(operation: &str, error: &BrokerError) -> T {
    panic!("{operation} failed: {error}")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Long enough that nothing expires during a check.
const TTL: Duration = Duration::from_secs(300);

/// What [`history_is_capped_in_bytes_from_the_front`] needs the broker to hold for its
/// channel: 16 KiB.
pub const HISTORY_BYTES: usize = 16 << 10;

/// How long to wait for an event before failing.
const WAIT: Duration = Duration::from_secs(5);

/// Publisher `p`'s data is `p * EACH_SPAN + i`, so deliveries tell who sent what.
const EACH_SPAN: u64 = 1_000_000;
