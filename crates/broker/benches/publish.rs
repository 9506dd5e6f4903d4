//! The in-memory broker's publish path: with history, without, and with every publish
//! evicting to stay within the history budget.

// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchboard_broker::{Broker, MemoryBroker, MemoryLimits, StreamOptions};

/// Channels published to in turn, so shards and streams vary as in a real node.
const CHANNELS: usize = 64;

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish");
    group.throughput(Throughput::Elements(1));
    let data = serde_json::json!({"user": "ann", "text": "hello, world", "n": 42});
    let names: Vec<String> = (0..CHANNELS).map(|i| format!("room-{i}")).collect();
    for (name, history, broker) in [
        ("history", 100, MemoryBroker::new()),
        ("no-history", 0, MemoryBroker::new()),
        // About a hundred publications fit: nearly every publish evicts one.
        ("evicting", 100, MemoryBroker::new().with_limits(MemoryLimits::new(64 << 10, 0))),
    ] {
        let options = StreamOptions::new(history, Duration::from_secs(300));
        let mut next = 0;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                next = (next + 1) % CHANNELS;
                let published = broker.publish(&names[next], data.clone(), None, &options);
                black_box(ready(published).expect("publish"))
            });
        });
    }
    group.finish();
}

/// Polls a future that finishes on its first poll, as every `MemoryBroker` call does.
fn ready<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the in-memory broker never waits"),
    }
}

criterion_group!(benches, publish);
criterion_main!(benches);
