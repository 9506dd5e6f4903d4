//! Throughput of the hot paths: masking, decoding client frames, encoding server frames.

// criterion_group! and criterion_main! generate undocumented public items.
#![allow(missing_docs)]
// The codec bans reading the clock; a bench outside the library needs one `now`.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchboard_codec::{
    Connection, DeflateConfig, DeflateParams, Limits, Message, PreparedMessage, Role,
    ServerHandshake, apply_mask, apply_mask_bytewise, handshake::HandshakeLimits,
};

const SIZES: [usize; 4] = [16, 125, 1024, 16 * 1024];

fn mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for size in [64usize, 1024, 64 * 1024] {
        let mut data = vec![0xa5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("wide", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut data), [1, 2, 3, 4], 0));
        });
        group.bench_with_input(BenchmarkId::new("bytewise", size), &size, |b, _| {
            b.iter(|| apply_mask_bytewise(black_box(&mut data), [1, 2, 3, 4], 0));
        });
    }
    group.finish();
}

/// Masked client frames, 100 per batch, as a server would read them.
fn client_frames(payload: usize, count: usize, text: bool) -> BytesMut {
    let mut client = Connection::new(Role::Client, Limits::default());
    let data = vec![b'a'; payload];
    for _ in 0..count {
        let msg = if text {
            Message::Text(data.clone().into())
        } else {
            Message::Binary(data.clone().into())
        };
        client.send(msg).expect("open");
    }
    let mut wire = BytesMut::new();
    while let Some(b) = client.poll_transmit() {
        wire.extend_from_slice(&b);
    }
    wire
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for size in SIZES {
        for (kind, text) in [("text", true), ("binary", false)] {
            let wire = client_frames(size, 100, text);
            group.throughput(Throughput::Bytes((size * 100) as u64));
            group.bench_with_input(BenchmarkId::new(kind, size), &wire, |b, wire| {
                let now = Instant::now();
                b.iter(|| {
                    let mut conn = Connection::new(Role::Server, Limits::default());
                    let mut buf = wire.clone();
                    conn.handle_read(&mut buf, now).expect("valid frames");
                    while let Some(ev) = conn.poll_event() {
                        black_box(ev);
                    }
                });
            });
        }
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for size in SIZES {
        let payload = bytes::Bytes::from(vec![b'a'; size]);
        group.throughput(Throughput::Bytes((size * 100) as u64));
        group.bench_with_input(BenchmarkId::new("server_send", size), &payload, |b, p| {
            let mut conn = Connection::new(Role::Server, Limits::default());
            b.iter(|| {
                for _ in 0..100 {
                    conn.send(Message::Binary(p.clone())).expect("open");
                }
                while let Some(out) = conn.poll_transmit() {
                    black_box(out);
                }
            });
        });
        group.bench_with_input(BenchmarkId::new("client_send_masked", size), &payload, |b, p| {
            let mut conn = Connection::new(Role::Client, Limits::default());
            b.iter(|| {
                for _ in 0..100 {
                    conn.send(Message::Binary(p.clone())).expect("open");
                }
                while let Some(out) = conn.poll_transmit() {
                    black_box(out);
                }
            });
        });
        let prepared = PreparedMessage::binary(&payload);
        group.bench_with_input(BenchmarkId::new("prepared_fanout", size), &prepared, |b, m| {
            let mut conn = Connection::new(Role::Server, Limits::default());
            b.iter(|| {
                for _ in 0..100 {
                    conn.send_prepared(m).expect("open");
                }
                while let Some(out) = conn.poll_transmit() {
                    black_box(out);
                }
            });
        });
    }
    group.finish();
}

/// A publication push as a live dashboard sends it: `rows` quotes of JSON.
fn dashboard_push(rows: usize) -> Bytes {
    let quotes: Vec<String> = (0..rows)
        .map(|i| {
            format!(
                "{{\"symbol\":\"SYM{i:03}\",\"price\":{}.{:02},\"change\":-0.{:02},\"volume\":{}}}",
                100 + i * 7 % 53,
                i * 13 % 100,
                i * 29 % 100,
                10_000 + i * 997
            )
        })
        .collect();
    let data = format!("[{}]", quotes.join(","));
    format!(
        "{{\"push\":\"publication\",\"channel\":\"prices:live\",\"offset\":48213,\"data\":{data}}}"
    )
    .into()
}

/// One publication to 1,000 server connections, per delivery: plain, compressed by each
/// connection, and compressed once into a frame every connection sends (the server's
/// `server_no_context_takeover` answer allows that).
fn deflate_fanout(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 1000;
    let mut config = DeflateConfig::default();
    config.enabled = true;
    config.level = 1;
    config.min_size = 128;
    config.server_no_context_takeover = true;
    config.client_no_context_takeover = true;
    let params = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..Default::default()
    };
    let plain = || Connection::new(Role::Server, Limits::default());
    let deflate = || Connection::with_deflate(Role::Server, Limits::default(), params, &config);
    let mut group = c.benchmark_group("deflate_fanout_1000");
    group.sample_size(20);
    for rows in [8usize, 200] {
        let push = dashboard_push(rows);
        let size = push.len();
        group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
        let fanout = |conns: &mut Vec<Connection>, send: &mut dyn FnMut(&mut Connection)| {
            for conn in conns.iter_mut() {
                send(conn);
                while let Some(out) = conn.poll_transmit() {
                    black_box(out);
                }
            }
        };
        let mut conns: Vec<Connection> = (0..SUBSCRIBERS).map(|_| plain()).collect();
        group.bench_function(BenchmarkId::new("off", size), |b| {
            b.iter(|| {
                fanout(&mut conns, &mut |conn| {
                    conn.send(Message::Text(push.clone())).expect("open")
                });
            });
        });
        let mut conns: Vec<Connection> = (0..SUBSCRIBERS).map(|_| deflate()).collect();
        group.bench_function(BenchmarkId::new("per_connection", size), |b| {
            b.iter(|| {
                fanout(&mut conns, &mut |conn| {
                    conn.send(Message::Text(push.clone())).expect("open")
                });
            });
        });
        group.bench_function(BenchmarkId::new("shared", size), |b| {
            let text = std::str::from_utf8(&push).expect("JSON");
            b.iter(|| {
                let frame = PreparedMessage::deflated_text(text, &config);
                assert!(frame.is_compressed());
                fanout(&mut conns, &mut |conn| conn.send_prepared(&frame).expect("open"));
            });
        });
    }
    group.finish();
}

fn handshake(c: &mut Criterion) {
    let req = b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nOrigin: http://localhost:8080\r\n\
        Sec-WebSocket-Protocol: switchboard.v1.json\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n\r\n";
    let limits = HandshakeLimits::default();
    c.bench_function("handshake/parse_and_respond", |b| {
        b.iter(|| {
            let (hs, _) =
                ServerHandshake::parse(black_box(req), &limits).expect("valid").expect("complete");
            black_box(hs.response(hs.select_protocol(&["switchboard.v1.json"]), None))
        });
    });
}

criterion_group!(benches, mask, decode, encode, deflate_fanout, handshake);
criterion_main!(benches);
