//! Cost of decoding client commands, the work done on every message a client sends.

// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_proto::Format;

/// A chat message, and a document of about 8 KiB with some nesting.
fn payloads() -> [(&'static str, Value); 2] {
    let row =
        |i: usize| json!({"id": i, "name": format!("item {i}"), "tags": ["a", "b"], "n": 1.5});
    let rows: Vec<Value> = (0..100).map(row).collect();
    [
        ("chat", json!({"text": "hello, lobby", "from": "ann", "at": 1_700_000_000u64})),
        ("doc", json!({"title": "inventory", "rows": rows, "meta": {"page": {"of": 3}}})),
    ]
}

fn decode_command(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_command");
    for (name, data) in payloads() {
        let command = json!({"id": 17, "type": "publish", "channel": "chat:lobby", "data": data});
        for format in [Format::Json, Format::Msgpack] {
            let bytes = format.encode(&command).expect("encodes");
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            let id = BenchmarkId::new(format!("{format:?}").to_lowercase(), name);
            group.bench_with_input(id, &bytes, |b, bytes| {
                b.iter(|| format.decode_command(black_box(bytes)).expect("decodes"));
            });
        }
    }
    let ping = br#"{"id":8,"type":"ping"}"#;
    group.throughput(Throughput::Bytes(ping.len() as u64));
    group.bench_function("json/ping", |b| {
        b.iter(|| Format::Json.decode_command(black_box(ping)).expect("decodes"));
    });
    group.finish();
}

criterion_group!(benches, decode_command);
criterion_main!(benches);
