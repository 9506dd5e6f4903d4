//! The in-memory broker: the conformance suite, TTL expiry and sweeping on a test clock,
//! real threads, and a model check against a plain `HashMap`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use switchboard_broker::conformance::{self, RecordingHandler, Task};
use switchboard_broker::{
    Broker, BrokerError, ClientInfo, HistoryQuery, JoinLeave, MemoryBroker, MemoryLimits,
    StreamOptions, StreamPosition, Value,
};

fn spawn(task: Task) -> Task {
    let task = tokio::spawn(task);
    Box::pin(async move { task.await.expect("publisher task panicked") })
}

#[tokio::test]
async fn offsets_are_consecutive_from_one() {
    conformance::offsets_are_consecutive_from_one(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn publish_position_matches_history() {
    conformance::publish_position_matches_history(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn history_creates_the_stream() {
    conformance::history_creates_the_stream(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn history_returns_the_latest() {
    conformance::history_returns_the_latest(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn history_returns_everything_since_a_position() {
    conformance::history_returns_everything_since_a_position(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn unrecoverable_since_returns_nothing() {
    conformance::unrecoverable_since_returns_nothing(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn zero_history_size_still_assigns_offsets() {
    conformance::zero_history_size_still_assigns_offsets(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn delivers_only_subscribed_channels() {
    conformance::delivers_only_subscribed_channels(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn presence_lists_joined_clients() {
    conformance::presence_lists_joined_clients(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn announces_joins_and_leaves() {
    conformance::announces_joins_and_leaves(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn channels_are_independent() {
    conformance::channels_are_independent(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn node_messages_reach_the_named_node() {
    conformance::node_messages_reach_the_named_node(&MemoryBroker::new()).await;
}

#[test]
fn node_messages_need_a_valid_name_and_reach_only_this_node() {
    let broker = MemoryBroker::new();
    let handler = RecordingHandler::new();
    broker.set_handler(handler.clone());
    let message = || bytes::Bytes::from_static(b"m");
    let unknown = |name: &str| Err(BrokerError::UnknownNode(name.to_owned()));
    assert_eq!(ready(broker.send_to_node("n1", message())), unknown("n1"), "before listen_as");
    for bad in ["", "N1", "n-1", "n1:", "n\u{e9}", &"n".repeat(65)] {
        assert!(
            matches!(ready(broker.listen_as(bad)), Err(BrokerError::Internal(_))),
            "{bad:?} is not a node name"
        );
    }
    assert_eq!(ready(broker.send_to_node("n1", message())), unknown("n1"), "still no name");
    let longest = "n".repeat(64);
    ready(broker.listen_as(&longest)).expect("64 bytes is a node name");
    ready(broker.listen_as(&longest)).expect("the same name again is fine");
    let other = ready(broker.listen_as("n2"));
    assert!(matches!(other, Err(BrokerError::Internal(_))), "one node, one name: {other:?}");
    assert_eq!(ready(broker.send_to_node("n2", message())), unknown("n2"));
    ready(broker.send_to_node(&longest, message())).expect("this node");
    assert_eq!(handler.node_messages(), [message()], "delivered before send_to_node returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_are_delivered_in_offset_order() {
    conformance::concurrent_publishers_are_delivered_in_offset_order(MemoryBroker::new(), spawn)
        .await;
}

#[tokio::test]
async fn history_is_capped_in_bytes_from_the_front() {
    let limits = MemoryLimits::new(conformance::HISTORY_BYTES, 0);
    conformance::history_is_capped_in_bytes_from_the_front(
        &MemoryBroker::new().with_limits(limits),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_the_whole_suite() {
    conformance::run_all(MemoryBroker::new, spawn).await;
}

#[test]
fn threads_publishing_at_once_are_delivered_in_offset_order() {
    const THREADS: u64 = 8;
    const EACH: u64 = 2_000;
    let broker = MemoryBroker::new();
    let handler = RecordingHandler::new();
    broker.set_handler(handler.clone());
    ready(broker.subscribe("busy")).unwrap();
    let options = StreamOptions::new(16, TTL);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (broker, options) = (&broker, &options);
            scope.spawn(move || {
                for i in 0..EACH {
                    let data = Value::from(thread * EACH + i);
                    ready(broker.publish("busy", data, None, options)).unwrap();
                }
            });
        }
    });
    let expected: Vec<u64> = (1..=THREADS * EACH).collect();
    assert_eq!(handler.offsets("busy"), expected);
}

#[test]
fn expired_history_is_incomplete_and_a_swept_stream_restarts_under_a_new_epoch() {
    let clock = TestClock::new();
    let broker = clock.broker();
    let options = StreamOptions::new(10, TTL);
    let first = ready(broker.publish("c", Value::from(1), None, &options)).unwrap();
    clock.advance(secs(6));
    ready(broker.publish("c", Value::from(2), None, &options)).unwrap();
    let top = ready(broker.publish("c", Value::from(3), None, &options)).unwrap();
    let at = |offset| StreamPosition { offset, epoch: first.epoch.clone() };

    // Offset 1 is 11s old with a 10s TTL: gone, so recovering from 0 must fail.
    clock.advance(secs(5));
    let read = history(&broker, "c", &HistoryQuery::since(at(0), None), &options);
    assert_eq!((read.complete, read.publications.len()), (false, 0));
    assert_eq!(read.position, top, "the stream survives while history remains");
    let read = history(&broker, "c", &HistoryQuery::since(at(1), None), &options);
    assert_eq!((read.complete, offsets(&read.publications)), (true, vec![2, 3]));

    clock.advance(secs(6));
    broker.sweep();
    assert_eq!(broker.channel_count(), 0, "an expired, unsubscribed stream is forgotten");
    let read = history(&broker, "c", &HistoryQuery::since(top.clone(), None), &options);
    assert!(!read.complete, "a position from a forgotten epoch never recovers");
    assert_ne!(read.position.epoch, top.epoch);
    assert_eq!(read.position.offset, 0);
    let next = ready(broker.publish("c", Value::from(4), None, &options)).unwrap();
    assert_eq!(next, StreamPosition { offset: 1, epoch: read.position.epoch });
}

#[test]
fn an_expired_stream_is_forgotten_on_use_without_a_sweep() {
    let clock = TestClock::new();
    let broker = clock.broker();
    let options = StreamOptions::new(0, TTL);
    let first = ready(broker.publish("c", Value::from(1), None, &options)).unwrap();
    clock.advance(TTL);
    let second = ready(broker.publish("c", Value::from(2), None, &options)).unwrap();
    assert_eq!(second, StreamPosition { offset: 2, ..first.clone() }, "not older than the TTL");
    clock.advance(TTL + secs(1));
    let third = ready(broker.publish("c", Value::from(3), None, &options)).unwrap();
    assert_eq!(third.offset, 1, "a forgotten stream starts again at offset 1");
    assert_ne!(third.epoch, first.epoch, "under a new epoch");
}

#[test]
fn a_subscribed_stream_keeps_its_epoch_past_the_ttl() {
    let clock = TestClock::new();
    let broker = clock.broker();
    let options = StreamOptions::new(10, TTL);
    ready(broker.subscribe("c")).unwrap();
    let first = ready(broker.publish("c", Value::from(1), None, &options)).unwrap();
    clock.advance(TTL * 3);
    broker.sweep();
    let read = history(&broker, "c", &HistoryQuery::latest(None), &options);
    assert_eq!(read.position, first, "kept while subscribed");
    assert!(read.publications.is_empty(), "but its history expired");
    let next = ready(broker.publish("c", Value::from(2), None, &options)).unwrap();
    assert_eq!(next, StreamPosition { offset: 2, epoch: first.epoch });
}

#[test]
fn history_size_zero_keeps_offsets_and_memory_empty() {
    let broker = MemoryBroker::new();
    let options = StreamOptions::new(0, TTL);
    for offset in 1..=100 {
        let position = ready(broker.publish("c", Value::from(offset), None, &options)).unwrap();
        assert_eq!(position.offset, offset);
    }
    let read = history(&broker, "c", &HistoryQuery::latest(None), &options);
    assert_eq!((read.position.offset, read.publications.len()), (100, 0));
}

#[test]
fn sweep_frees_unused_channels() {
    let clock = TestClock::new();
    let broker = clock.broker();
    let options = StreamOptions::new(5, TTL);
    for i in 0..100 {
        ready(broker.publish(&format!("c{i}"), Value::from(i), None, &options)).unwrap();
    }
    history(&broker, "read-only", &HistoryQuery::latest(None), &options);
    ready(broker.subscribe("c0")).unwrap();
    ready(broker.join("c1", &client("x"), JoinLeave::Silent)).unwrap();
    assert_eq!(broker.channel_count(), 101);
    broker.sweep();
    assert_eq!(broker.channel_count(), 101, "nothing has expired yet");

    clock.advance(TTL + secs(1));
    broker.sweep();
    assert_eq!(broker.channel_count(), 2, "only the subscription and the presence remain");
    ready(broker.unsubscribe("c0")).unwrap();
    ready(broker.leave("c1", &client("x"), JoinLeave::Silent)).unwrap();
    assert_eq!(broker.channel_count(), 1, "c0's stream stays until swept");
    broker.sweep();
    assert_eq!(broker.channel_count(), 0);
}

#[test]
fn issue_12_history_budget_evicts_the_least_recently_published_streams_first() {
    let options = StreamOptions::new(100, TTL);
    let data = || Value::from("x".repeat(1000));
    // Every publication below has the same shape, so the same cost.
    let probe = MemoryBroker::new();
    ready(probe.publish("probe", data(), None, &options)).unwrap();
    let cost = probe.usage().unwrap().history_bytes;
    assert!((1000..2000).contains(&cost), "one 1000-byte string costs {cost}");

    let broker = MemoryBroker::new().with_limits(MemoryLimits::new(50 * cost, 0));
    let mut tops = Vec::new();
    for channel in ["old", "mid", "new"] {
        let mut top = None;
        for _ in 0..20 {
            top = Some(ready(broker.publish(channel, data(), None, &options)).unwrap());
        }
        tops.push(top.unwrap());
    }
    let usage = broker.usage().unwrap();
    assert_eq!(usage.history_bytes, 50 * cost, "the budget is full, not exceeded");
    assert_eq!(usage.evicted_publications, 10);

    let at = |channel: usize, offset| StreamPosition { offset, ..tops[channel].clone() };
    let read = history(&broker, "old", &HistoryQuery::latest(None), &options);
    assert_eq!(offsets(&read.publications), (11..=20).collect::<Vec<_>>(), "oldest first");
    assert_eq!(read.position, tops[0], "eviction keeps the stream's epoch and top");
    let read = history(&broker, "old", &HistoryQuery::since(at(0, 9), None), &options);
    assert_eq!((read.complete, read.publications.len()), (false, 0), "no silent gap");
    let read = history(&broker, "old", &HistoryQuery::since(at(0, 10), None), &options);
    assert_eq!((read.complete, offsets(&read.publications)), (true, (11..=20).collect()));
    for (index, channel) in [(1, "mid"), (2, "new")] {
        let read = history(&broker, channel, &HistoryQuery::since(at(index, 0), None), &options);
        assert!(read.complete, "{channel} was published more recently: untouched");
        assert_eq!(offsets(&read.publications), (1..=20).collect::<Vec<_>>());
    }

    // Publishing to `old` again makes `mid` the least recently published.
    ready(broker.publish("old", data(), None, &options)).unwrap();
    let read = history(&broker, "mid", &HistoryQuery::latest(None), &options);
    assert_eq!(offsets(&read.publications), (2..=20).collect::<Vec<_>>());
    assert_eq!(broker.usage().unwrap().history_bytes, 50 * cost);
}

#[test]
fn issue_12_a_flood_of_large_arrays_stays_within_the_budget() {
    let budget = 4 << 20;
    let broker = MemoryBroker::new().with_limits(MemoryLimits::new(budget, 0));
    let options = StreamOptions::new(100, TTL);
    // 64 KiB of `[0,0,…]` on the wire: about 1 MiB once decoded.
    let zeros = Value::Array(vec![Value::from(0); 32 << 10]);
    for i in 0..64 {
        let channel = format!("flood-{}", i % 16);
        ready(broker.publish(
            &channel,
            zeros.clone(),
            Some(std::sync::Arc::new(client("x"))),
            &options,
        ))
        .unwrap();
        assert!(broker.usage().unwrap().history_bytes <= budget);
    }
    let usage = broker.usage().unwrap();
    assert!(usage.history_bytes > budget / 2, "{usage:?}");
    assert!(usage.evicted_publications >= 64 - 4, "{usage:?}");
}

#[test]
fn issue_12_the_channel_limit_forgets_an_idle_channel_or_refuses() {
    let broker = MemoryBroker::new().with_limits(MemoryLimits::new(1 << 20, 3));
    let options = StreamOptions::new(10, TTL);
    let a = ready(broker.publish("a", Value::from(1), None, &options)).unwrap();
    ready(broker.subscribe("b")).unwrap();
    ready(broker.join("c", &client("x"), JoinLeave::Silent)).unwrap();
    let d = ready(broker.publish("d", Value::from(1), None, &options)).unwrap();
    let usage = broker.usage().unwrap();
    assert_eq!((usage.channels, usage.evicted_channels), (3, 1), "{usage:?}");
    assert_eq!(broker.channel_count(), 3);

    // `a` was the only idle channel: it starts over, honestly, and `d` makes room for it.
    let read = history(&broker, "a", &HistoryQuery::since(a.clone(), None), &options);
    assert!(!read.complete, "a forgotten stream never recovers");
    assert_ne!(read.position.epoch, a.epoch);
    assert_eq!(read.position.offset, 0);
    let read = history(&broker, "d", &HistoryQuery::since(d.clone(), None), &options);
    assert!(!read.complete && read.position.epoch != d.epoch, "`d` was forgotten for `a`");
    assert_eq!(broker.usage().unwrap().evicted_channels, 3);

    // Every channel in use: the next one is refused, and counted.
    ready(broker.subscribe("d")).unwrap();
    let refused = ready(broker.publish("e", Value::from(1), None, &options));
    assert_eq!(refused, Err(BrokerError::ChannelLimit(3)));
    assert_eq!(ready(broker.subscribe("e")), Err(BrokerError::ChannelLimit(3)));
    assert_eq!(broker.usage().unwrap().refused_channels, 2);
    assert_eq!(broker.channel_count(), 3);
    // Existing channels, and operations that create nothing, still work.
    ready(broker.publish("b", Value::from(2), None, &options)).unwrap();
    ready(broker.unsubscribe("e")).unwrap();
    ready(broker.leave("e", &client("x"), JoinLeave::Silent)).unwrap();
    assert!(ready(broker.presence("e")).unwrap().is_empty());
    ready(broker.unsubscribe("d")).unwrap();
    ready(broker.publish("e", Value::from(1), None, &options)).unwrap();
    assert_eq!(broker.channel_count(), 3);
}

#[test]
fn issue_12_expiry_and_sweep_give_back_every_byte_and_channel() {
    let clock = TestClock::new();
    let broker = clock.broker();
    let options = StreamOptions::new(5, TTL);
    for i in 0..40 {
        let data = Value::from("x".repeat(100 * (i % 7)));
        ready(broker.publish(
            &format!("c{}", i % 8),
            data,
            Some(std::sync::Arc::new(client("x"))),
            &options,
        ))
        .unwrap();
    }
    ready(broker.subscribe("c0")).unwrap();
    let usage = broker.usage().unwrap();
    assert!(usage.history_bytes > 0);
    assert_eq!(usage.channels, 8);
    clock.advance(TTL + secs(1));
    broker.sweep();
    let usage = broker.usage().unwrap();
    assert_eq!((usage.history_bytes, usage.channels), (0, 1), "only the subscribed one stays");
    ready(broker.unsubscribe("c0")).unwrap();
    clock.advance(TTL + secs(1));
    broker.sweep();
    let usage = broker.usage().unwrap();
    assert_eq!((usage.history_bytes, usage.channels), (0, 0));
}

#[test]
fn subscriptions_and_presence_leave_nothing_behind() {
    let broker = MemoryBroker::new();
    ready(broker.subscribe("c")).unwrap();
    ready(broker.join("c", &client("x"), JoinLeave::Announced)).unwrap();
    assert_eq!(broker.channel_count(), 1);
    ready(broker.leave("c", &client("x"), JoinLeave::Announced)).unwrap();
    ready(broker.unsubscribe("c")).unwrap();
    ready(broker.unsubscribe("never")).unwrap();
    ready(broker.leave("never", &client("x"), JoinLeave::Announced)).unwrap();
    assert!(ready(broker.presence("never")).unwrap().is_empty());
    assert_eq!(broker.channel_count(), 0);
}

#[test]
fn works_without_a_handler() {
    let broker = MemoryBroker::default();
    ready(broker.subscribe("c")).unwrap();
    ready(broker.join("c", &client("x"), JoinLeave::Announced)).unwrap();
    let position = ready(broker.publish("c", Value::from(1), None, &StreamOptions::default()));
    assert_eq!(position.unwrap().offset, 1);
    ready(broker.leave("c", &client("x"), JoinLeave::Announced)).unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    Publish(usize),
    Subscribe(usize),
    Unsubscribe(usize),
    Latest(usize, Option<usize>),
    /// Since an offset (picked as `seed % (top + 2)`), in the current epoch or a wrong one.
    Since(usize, u64, bool, Option<usize>),
    Advance(u64),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    let channel = 0..CHANNELS;
    let limit = proptest::option::of(0..6usize);
    prop_oneof![
        5 => channel.clone().prop_map(Op::Publish),
        1 => channel.clone().prop_map(Op::Subscribe),
        1 => channel.clone().prop_map(Op::Unsubscribe),
        2 => (channel.clone(), limit.clone()).prop_map(|(c, l)| Op::Latest(c, l)),
        3 => (channel, 0..20u64, prop::bool::weighted(0.8), limit)
            .prop_map(|(c, seed, right, l)| Op::Since(c, seed, right, l)),
        1 => (0..4u64).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
    ]
}

proptest! {
    #[test]
    fn matches_a_hashmap_model(size in 0..5usize, ops in prop::collection::vec(op(), 1..80)) {
        let clock = TestClock::new();
        let broker = clock.broker();
        let handler = RecordingHandler::new();
        broker.set_handler(handler.clone());
        let options = StreamOptions::new(size, secs(MODEL_TTL));
        let mut model = Model { size, ..Model::default() };

        for op in ops {
            match op {
                Op::Publish(c) => {
                    let data = model.next_data;
                    let position = ready(broker.publish(&name(c), Value::from(data), None, &options))
                        .unwrap();
                    let (generation, offset) = model.publish(c);
                    prop_assert_eq!(position.offset, offset);
                    model.check_epoch(generation, &position.epoch)?;
                }
                Op::Subscribe(c) => {
                    ready(broker.subscribe(&name(c))).unwrap();
                    model.channels[c].is_subscribed = true;
                }
                Op::Unsubscribe(c) => {
                    ready(broker.unsubscribe(&name(c))).unwrap();
                    model.channels[c].is_subscribed = false;
                }
                Op::Latest(c, limit) => {
                    let read = history(&broker, &name(c), &HistoryQuery::latest(limit), &options);
                    let stream = model.stream(c);
                    let skip = limit.map_or(0, |l| stream.history.len().saturating_sub(l));
                    let expected: Vec<_> = stream.history.iter().skip(skip).map(|e| (e.0, e.1)).collect();
                    let (generation, top) = (stream.generation, stream.top);
                    prop_assert!(read.complete);
                    prop_assert_eq!(pairs(&read.publications), expected);
                    prop_assert_eq!(read.position.offset, top);
                    model.check_epoch(generation, &read.position.epoch)?;
                }
                Op::Since(c, seed, right_epoch, limit) => {
                    let before = model.channels[c].stream.as_ref().map(|s| (s.generation, s.top));
                    let offset = seed % (before.map_or(0, |(_, top)| top) + 2);
                    let since_generation = before.filter(|_| right_epoch).map(|(g, _)| g);
                    let epoch = since_generation
                        .map_or_else(|| "wrong".to_owned(), |g| model.epochs[&g].clone());
                    let since = StreamPosition { offset, epoch };
                    let read = history(&broker, &name(c), &HistoryQuery::since(since, limit), &options);
                    let stream = model.stream(c);
                    let expected = stream.since(since_generation, offset, limit);
                    let generation = stream.generation;
                    prop_assert_eq!(read.complete, expected.is_some(), "since {} limit {:?}", offset, limit);
                    prop_assert_eq!(pairs(&read.publications), expected.unwrap_or_default());
                    model.check_epoch(generation, &read.position.epoch)?;
                }
                Op::Advance(by) => {
                    clock.advance(secs(by));
                    model.now += by;
                }
                Op::Sweep => {
                    broker.sweep();
                    model.sweep();
                }
            }
            prop_assert_eq!(broker.channel_count(), model.channel_count());
        }
        for c in 0..CHANNELS {
            prop_assert_eq!(handler.offsets(&name(c)), model.channels[c].delivered.clone());
            let data: Vec<u64> =
                handler.publications(&name(c)).iter().filter_map(|p| p.data.as_u64()).collect();
            prop_assert_eq!(data, model.channels[c].delivered_data.clone());
        }
    }
}

/// The broker's behaviour in plain data: time in whole seconds, epochs as generations.
#[derive(Debug, Default)]
struct Model {
    size: usize,
    now: u64,
    channels: [ModelChannel; CHANNELS],
    next_generation: u32,
    next_data: u64,
    /// The broker's epoch for each generation, learned when first seen.
    epochs: HashMap<u32, String>,
}

#[derive(Debug, Default)]
struct ModelChannel {
    is_subscribed: bool,
    stream: Option<ModelStream>,
    delivered: Vec<u64>,
    delivered_data: Vec<u64>,
}

#[derive(Debug)]
struct ModelStream {
    generation: u32,
    top: u64,
    /// (offset, data, published at).
    history: VecDeque<(u64, u64, u64)>,
    touched: u64,
}

impl Model {
    /// The channel's stream as of now: expired history dropped, forgotten and recreated when
    /// unsubscribed, empty and untouched for longer than the TTL.
    fn stream(&mut self, c: usize) -> &mut ModelStream {
        let now = self.now;
        self.expire(c);
        let next_generation = &mut self.next_generation;
        self.channels[c].stream.get_or_insert_with(|| {
            *next_generation += 1;
            ModelStream {
                generation: *next_generation,
                top: 0,
                history: VecDeque::new(),
                touched: now,
            }
        })
    }

    fn expire(&mut self, c: usize) {
        let now = self.now;
        let channel = &mut self.channels[c];
        if let Some(stream) = &mut channel.stream {
            while stream.history.front().is_some_and(|e| now - e.2 > MODEL_TTL) {
                stream.history.pop_front();
            }
            if !channel.is_subscribed
                && stream.history.is_empty()
                && now - stream.touched > MODEL_TTL
            {
                channel.stream = None;
            }
        }
    }

    fn publish(&mut self, c: usize) -> (u32, u64) {
        let (now, size, data) = (self.now, self.size, self.next_data);
        self.next_data += 1;
        let stream = self.stream(c);
        stream.top += 1;
        stream.touched = now;
        stream.history.push_back((stream.top, data, now));
        while stream.history.len() > size {
            stream.history.pop_front();
        }
        let (generation, offset) = (stream.generation, stream.top);
        if self.channels[c].is_subscribed {
            self.channels[c].delivered.push(offset);
            self.channels[c].delivered_data.push(data);
        }
        (generation, offset)
    }

    fn sweep(&mut self) {
        for c in 0..CHANNELS {
            self.expire(c);
        }
    }

    fn channel_count(&self) -> usize {
        self.channels.iter().filter(|c| c.is_subscribed || c.stream.is_some()).count()
    }

    /// Each generation maps to one epoch, and each new generation to a never-seen epoch.
    fn check_epoch(&mut self, generation: u32, epoch: &str) -> Result<(), TestCaseError> {
        match self.epochs.get(&generation) {
            Some(known) => prop_assert_eq!(known, epoch, "generation {} changed epoch", generation),
            None => {
                let seen: HashSet<&String> = self.epochs.values().collect();
                prop_assert!(!seen.contains(&epoch.to_owned()), "epoch {} reused", epoch);
                self.epochs.insert(generation, epoch.to_owned());
            }
        }
        Ok(())
    }
}

impl ModelStream {
    /// What `since` must return: `Some` exactly the publications after `offset` when they
    /// can all be served, `None` when the read is incomplete.
    fn since(
        &self,
        generation: Option<u32>,
        offset: u64,
        limit: Option<usize>,
    ) -> Option<Vec<(u64, u64)>> {
        if generation != Some(self.generation) || offset > self.top {
            return None;
        }
        let missed: Vec<_> =
            self.history.iter().filter(|e| e.0 > offset).map(|e| (e.0, e.1)).collect();
        let all_there = missed.len() as u64 == self.top - offset;
        let within_limit = limit.is_none_or(|l| missed.len() <= l);
        (all_there && within_limit).then_some(missed)
    }
}

/// Blocks on a memory broker future: they all finish on the first poll.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a memory broker future must finish on its first poll"),
    }
}

fn history(
    broker: &MemoryBroker,
    channel: &str,
    query: &HistoryQuery,
    options: &StreamOptions,
) -> switchboard_broker::History {
    ready(broker.history(channel, query, options)).expect("the memory broker never fails")
}

fn offsets(publications: &[Arc<switchboard_broker::Publication>]) -> Vec<u64> {
    publications.iter().map(|p| p.offset).collect()
}

fn pairs(publications: &[Arc<switchboard_broker::Publication>]) -> Vec<(u64, u64)> {
    publications
        .iter()
        .map(|p| (p.offset, p.data.as_u64().expect("model data is a number")))
        .collect()
}

fn client(id: &str) -> ClientInfo {
    ClientInfo { id: id.to_owned(), user: None, info: None }
}

fn name(c: usize) -> String {
    format!("model-{c}")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A clock that moves only when told.
#[derive(Clone)]
struct TestClock(Arc<Mutex<Instant>>);

impl TestClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().expect("clock poisoned") += by;
    }

    fn broker(&self) -> MemoryBroker {
        let now = self.0.clone();
        MemoryBroker::with_clock(Arc::new(move || *now.lock().expect("clock poisoned")))
    }
}

const TTL: Duration = Duration::from_secs(10);

const CHANNELS: usize = 3;

/// Seconds, short against `Op::Advance` steps of up to 3 so streams expire often.
const MODEL_TTL: u64 = 4;
