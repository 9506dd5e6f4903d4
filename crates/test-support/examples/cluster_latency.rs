//! Cross-node publish → deliver latency and throughput over the Redis broker, next to one
//! in-memory node.
//!
//! Starts two servers in this process sharing a Redis broker (node A and node B), opens
//! `SUBSCRIBERS` connections on node B subscribed to two channels, and publishes from one
//! connection on node A:
//!
//! 1. **latency**: `MESSAGES` publications of `SIZE` bytes at `RATE` per second; reports the
//!    time from just before each publish to its arrival at every subscriber (p50/p99/max);
//! 2. **throughput**: `MESSAGES` publications as fast as 4 publisher connections on node A
//!    get them acknowledged, 16 in flight each; reports publications per second
//!    acknowledged and delivered to every subscriber.
//!
//! `BACKEND` is `spawn` (default: a private `redis-server` on a free port, killed at the
//! end), a `redis://…` URL, or `memory` (one node with the in-memory broker: publisher and
//! subscribers on the same node, the single-node baseline).
//!
//! Usage: `cargo run --release -p switchboard-test-support --example cluster_latency --
//! [BACKEND] [SUBSCRIBERS] [MESSAGES] [RATE] [SIZE]` (defaults spawn 100 2000 1000 1024).

// A measurement tool: its report goes to standard output.
#![allow(clippy::print_stdout)]

mod latency;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use switchboard_broker_redis::{RedisBroker, RedisConfig};
use switchboard_codec::{Event, Message};
use switchboard_server::{Broker, Config, MemoryBroker, Server};
use switchboard_test_support::client::WsClient;
use switchboard_test_support::redis::RedisServer;
use switchboard_test_support::server::open_namespace;
use tokio::sync::Mutex;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "spawn".to_owned());
    let numbers: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    let subscribers = numbers.first().copied().unwrap_or(100);
    let messages = numbers.get(1).copied().unwrap_or(2000);
    let rate = numbers.get(2).copied().unwrap_or(1000);
    let size = numbers.get(3).copied().unwrap_or(1024);

    let mut _redis = None;
    let (a, b) = match backend.as_str() {
        "memory" => {
            let node = start_node(Arc::new(MemoryBroker::new())).await?;
            (node, node)
        }
        url => {
            let url = if url == "spawn" {
                let redis = RedisServer::start();
                let url = redis.url();
                _redis = Some(redis);
                url
            } else {
                url.to_owned()
            };
            (
                start_node(redis_broker(&url).await?).await?,
                start_node(redis_broker(&url).await?).await?,
            )
        }
    };

    let base = Instant::now();
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(std::io::Error::other)?,
    ));
    let mut tasks = Vec::new();
    for _ in 0..subscribers {
        let mut ws = WsClient::connect(b, "/ws").await?;
        for channel in [LATENCY, THROUGHPUT] {
            let subscribe = format!(r#"{{"id":1,"type":"subscribe","channel":"{channel}"}}"#);
            ws.send(Message::text(subscribe)).await?;
            // The subscribe reply.
            ws.recv().await?;
        }
        let histogram = Arc::clone(&histogram);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(messages);
            let mut bulk = 0;
            let mut finished = None;
            while latencies.len() < messages || bulk < messages {
                match ws.recv_timeout(Duration::from_secs(30)).await {
                    Ok(Some(Event::Text(text))) => {
                        let at = base.elapsed().as_micros() as u64;
                        if let Some(sent) = latency::sent_at(&text) {
                            latencies.push(at.saturating_sub(sent));
                        } else {
                            bulk += 1;
                            if bulk == messages {
                                finished = Some(Instant::now());
                            }
                        }
                    }
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
            let mut h = histogram.lock().await;
            for v in &latencies {
                let _ = h.record((*v).max(1));
            }
            (latencies.len(), bulk, finished)
        }));
    }

    let mut publisher = WsClient::connect(a, "/ws").await?;
    latency::publish_at_rate(&mut publisher, LATENCY, (messages, rate, size), base).await?;

    // Throughput: PUBLISHERS connections on node A, each keeping WINDOW publishes in flight
    // (one connection runs its commands one after another: alone, it measures the round
    // trip to Redis, not the node).
    let mut publishers = Vec::new();
    for _ in 0..PUBLISHERS {
        publishers.push(WsClient::connect(a, "/ws").await?);
    }
    let pad = "x".repeat(size.saturating_sub(40));
    let started = Instant::now();
    let share = messages.div_ceil(PUBLISHERS);
    let mut running = Vec::new();
    for (p, mut publisher) in publishers.into_iter().enumerate() {
        let count = share.min(messages - (p * share).min(messages));
        let data = format!(r#"{{"p":"{pad}"}}"#);
        running.push(tokio::spawn(async move {
            let command = |i: usize| {
                format!(r#"{{"id":{i},"type":"publish","channel":"{THROUGHPUT}","data":{data}}}"#)
            };
            let (mut sent, mut acked) = (0, 0);
            while sent < count.min(WINDOW) {
                publisher.send(Message::text(command(sent))).await?;
                sent += 1;
            }
            while acked < count {
                match publisher.recv_timeout(Duration::from_secs(30)).await? {
                    Some(Event::Text(_)) => acked += 1,
                    Some(_) => continue,
                    None => break,
                }
                if sent < count {
                    publisher.send(Message::text(command(sent))).await?;
                    sent += 1;
                }
            }
            Ok::<_, std::io::Error>(acked)
        }));
    }
    let mut acked = 0;
    for task in running {
        acked += task.await.map_err(std::io::Error::other)??;
    }
    let acked_in = started.elapsed();

    let (mut delivered, mut delivered_bulk, mut last) = (0, 0, started);
    for task in tasks {
        let (latencies, bulk, finished) = task.await.unwrap_or((0, 0, None));
        delivered += latencies;
        delivered_bulk += bulk;
        last = last.max(finished.unwrap_or(last));
    }
    let delivered_in = last - started;
    let h = histogram.lock().await;
    let expected = subscribers * messages;
    println!(
        "backend {backend}: {subscribers} subscribers on node B, publisher on node A, \
         {size} B publications"
    );
    println!("latency, {messages} publications at {rate}/s: delivered {delivered}/{expected}");
    for q in [0.5, 0.9, 0.99, 0.999] {
        println!("  p{:<5} {:>8.3} ms", q * 100.0, h.value_at_quantile(q) as f64 / 1000.0);
    }
    println!("  max    {:>8.3} ms", h.max() as f64 / 1000.0);
    let per_second = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "throughput, {messages} publications from {PUBLISHERS} connections with {WINDOW} in \
         flight each: acknowledged {acked} in \
         {:.3} s ({:.0}/s); delivered {delivered_bulk}/{expected} in {:.3} s ({:.0} \
         publications/s, {:.0} deliveries/s)",
        acked_in.as_secs_f64(),
        per_second(acked, acked_in),
        delivered_in.as_secs_f64(),
        per_second(messages, delivered_in),
        per_second(delivered_bulk, delivered_in),
    );
    Ok(())
}

/// A Redis broker on `url`.
async fn redis_broker(url: &str) -> std::io::Result<Arc<dyn Broker>> {
    let broker =
        RedisBroker::connect(RedisConfig::new(url)).await.map_err(std::io::Error::other)?;
    Ok(Arc::new(broker))
}

/// A server on `127.0.0.1:0` with `broker`, open to anonymous publishers, without limits or
/// presence: only the fan-out is measured.
async fn start_node(broker: Arc<dyn Broker>) -> std::io::Result<SocketAddr> {
    let mut config = Config::default();
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.rate_limits.message_rate = None;
    config.rate_limits.byte_rate = None;
    let mut namespace = open_namespace();
    namespace.presence = false;
    namespace.join_leave = false;
    config.hub.namespaces.insert(String::new(), namespace);
    let server = Server::bind_with_broker(config, broker).await.map_err(std::io::Error::other)?;
    let addr = server.local_addr();
    tokio::spawn(server.run());
    Ok(addr)
}

const LATENCY: &str = "latency";
const THROUGHPUT: &str = "throughput";

/// Publisher connections during the throughput run.
const PUBLISHERS: usize = 4;

/// Publishes in flight per publisher connection during the throughput run.
const WINDOW: usize = 16;
