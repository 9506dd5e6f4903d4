//! Publish → deliver latency through `/ws` with many subscribers on loopback.
//!
//! Starts a server in this process (or uses `--addr HOST:PORT` of a running one), opens
//! `SUBSCRIBERS` connections subscribed to one channel, publishes `MESSAGES` publications of
//! `SIZE` bytes at `RATE` per second from one more connection, and reports the latency from
//! just before each publish to its arrival at every subscriber.
//!
//! Usage: `cargo run --release -p switchboard-test-support --example fanout_latency --
//! [SUBSCRIBERS] [MESSAGES] [RATE] [SIZE]` (defaults 1000 100 100 1024).

// A measurement tool: its report goes to standard output.
#![allow(clippy::print_stdout)]

mod latency;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use switchboard_codec::{Event, Message};
use switchboard_server::Config;
use switchboard_test_support::client::WsClient;
use switchboard_test_support::server::TestServer;
use tokio::sync::Mutex;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let subscribers = args.first().copied().unwrap_or(1000);
    let messages = args.get(1).copied().unwrap_or(100);
    let rate = args.get(2).copied().unwrap_or(100);
    let size = args.get(3).copied().unwrap_or(1024);

    let server = TestServer::start(Config::default()).await;
    let addr = server.addr;
    let base = Instant::now();
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(std::io::Error::other)?,
    ));

    let mut tasks = Vec::new();
    for _ in 0..subscribers {
        let mut ws = WsClient::connect(addr, "/ws").await?;
        ws.send(Message::text(r#"{"id":1,"type":"subscribe","channel":"bench"}"#)).await?;
        // The subscribe reply.
        ws.recv().await?;
        let histogram = Arc::clone(&histogram);
        tasks.push(tokio::spawn(async move {
            let mut local = Vec::with_capacity(messages);
            while local.len() < messages {
                match ws.recv_timeout(Duration::from_secs(30)).await {
                    Ok(Some(Event::Text(text))) => {
                        let at = base.elapsed().as_micros() as u64;
                        if let Some(sent) = latency::sent_at(&text) {
                            local.push(at.saturating_sub(sent));
                        }
                    }
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
            let mut h = histogram.lock().await;
            for v in &local {
                let _ = h.record((*v).max(1));
            }
            local.len()
        }));
    }

    let mut publisher = WsClient::connect(addr, "/ws").await?;
    latency::publish_at_rate(&mut publisher, "bench", (messages, rate, size), base).await?;
    let mut delivered = 0;
    for task in tasks {
        delivered += task.await.unwrap_or(0);
    }
    let h = histogram.lock().await;
    let expected = subscribers * messages;
    println!(
        "subscribers {subscribers}, publications {messages} of {size} B at {rate}/s: \
         delivered {delivered}/{expected}"
    );
    for q in [0.5, 0.9, 0.99, 0.999] {
        println!("  p{:<5} {:>8.3} ms", q * 100.0, h.value_at_quantile(q) as f64 / 1000.0);
    }
    println!("  max    {:>8.3} ms", h.max() as f64 / 1000.0);
    Ok(())
}
