//! The worst-case memory bound of `docs/security.md` held by the real binary: hostile
//! publishers on many channels, reconnecting between floods, cannot take the server's
//! resident memory past the bound computed for its configuration, and decompression bombs
//! cost it no more than the message limit.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_codec::{CloseCode, DeflateConfig};
use switchboard_test_support::cli::{Serve, Served};
use switchboard_test_support::client::WsClient;
use switchboard_test_support::metrics::{sample, scrape};
use switchboard_test_support::pair::{deflate_bomb, raw_frame};
use switchboard_test_support::protocol::call;
use switchboard_test_support::wait::poll_until;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

// The configuration under test: small, so the bound is reached in seconds.
const HISTORY_MEMORY: u64 = 4 << 20;
const MAX_CHANNELS: u64 = 1_000;
const MAX_CONNECTIONS: u64 = 64;
const OUTBOUND_QUEUE: u64 = 256 << 10;
/// The `/ws` message limit (the default).
const MAX_MESSAGE: u64 = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_hostile_publishers_stay_under_the_documented_worst_case() {
    let mut server = Server::start();
    let addr = server.addr;
    let baseline = server.rss();

    // 16 publishers, each reconnecting 4 times, publish 10 arrays of 24,000 zeros (48 KB on
    // the wire, about 800 KB decoded) per connection to a channel of its own: 640 of them,
    // about 500 MB decoded, against a 4 MiB history budget.
    let zeros = Value::Array(vec![json!(0); 24_000]);
    let floods: Vec<_> = (0..16)
        .map(|publisher| {
            let zeros = zeros.clone();
            tokio::spawn(async move {
                for round in 0..4 {
                    let mut ws = WsClient::connect(addr, "/ws").await.expect("connect");
                    let channel = format!("chat:flood-{publisher}-{round}");
                    for id in 1..=10 {
                        let command =
                            json!({"id": id, "type": "publish", "channel": channel, "data": zeros});
                        let reply = call(&mut ws, &command).await;
                        assert!(reply.get("result").is_some(), "{reply}");
                    }
                }
            })
        })
        .collect();
    // Meanwhile, one client touches three times as many channels as the limit allows.
    let mut ws = WsClient::connect(addr, "/ws").await.expect("connect");
    for id in 1..=3 * MAX_CHANNELS {
        let command =
            json!({"id": id, "type": "publish", "channel": format!("chat:c{id}"), "data": id});
        let reply = call(&mut ws, &command).await;
        assert!(reply.get("result").is_some(), "{reply}");
    }
    for flood in floods {
        flood.await.expect("a publisher failed");
    }

    let rss = server.rss();
    let bound = baseline + worst_case();
    eprintln!(
        "baseline {} KiB, after {} KiB, bound {} KiB",
        baseline >> 10,
        rss >> 10,
        bound >> 10
    );
    assert!(
        rss < bound,
        "resident memory {} KiB over the documented bound {} KiB (baseline {} KiB)",
        rss >> 10,
        bound >> 10,
        baseline >> 10
    );
    let metrics = server.metrics().await;
    let held = sample(&metrics, "switchboard_broker_history_bytes").expect("history bytes");
    assert!(held <= HISTORY_MEMORY as f64, "{metrics}");
    let channels = sample(&metrics, "switchboard_broker_channels").expect("channels");
    assert!(channels <= MAX_CHANNELS as f64, "{metrics}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_decompression_bombs_are_cut_off_without_the_memory_they_declare() {
    // `/echo` with compression, at its 16 MiB message limit: the largest a message may be.
    let server = Server::start_with(&["--no-demo", "--echo-compression"]);
    let addr = server.addr;
    let baseline = server.peak_rss();
    // 10 MiB of deflate that inflates to 1.7 GB, from four connections at once.
    let bomb = deflate_bomb(6_450_000);
    assert!(bomb.len() < ECHO_LIMIT as usize);
    let frame = raw_frame(0xc2, Some([0x37, 0xfa, 0x21, 0x3d]), &bomb).freeze();
    let mut config = DeflateConfig::default();
    config.enabled = true;
    let bombers: Vec<_> = (0..BOMBERS)
        .map(|_| {
            let (frame, config) = (frame.clone(), config.clone());
            tokio::spawn(async move {
                let mut ws =
                    WsClient::connect_deflate(addr, "/echo", &config).await.expect("connect");
                assert!(ws.connection().deflate_params().is_some(), "compression negotiated");
                // The server may fail the connection before it has read the whole frame.
                let _ = ws.send_raw(&frame).await;
                ws.expect_close(Duration::from_secs(30)).await.expect("a close frame")
            })
        })
        .collect();
    for bomber in bombers {
        assert_eq!(bomber.await.expect("a bomber failed"), Some(CloseCode::MESSAGE_TOO_BIG));
    }
    // A client has its close frame before the server has finished with the connection.
    let closed = "switchboard_connections_closed_total{transport=\"echo\",code=\"1009\",cause=\"protocol_error\"}";
    let all_closed = poll_until(Duration::from_secs(10), || async {
        let metrics = server.metrics().await;
        (sample(&metrics, closed) == Some(BOMBERS as f64)).then_some(())
    });
    assert!(all_closed.await.is_some(), "{}", server.metrics().await);
    // At its peak the server held, per connection, at most the frame being read (the read
    // buffer may have doubled past it) and the message inflated up to the limit.
    let peak = server.peak_rss();
    let bound = baseline + BOMBERS * (2 * bomb.len() as u64 + ECHO_LIMIT + (4 << 20));
    eprintln!(
        "baseline {} KiB, peak {} KiB, bound {} KiB",
        baseline >> 10,
        peak >> 10,
        bound >> 10
    );
    assert!(peak < bound, "peak resident memory {} KiB over {} KiB", peak >> 10, bound >> 10);
}

/// `/echo`'s message limit (the default).
const ECHO_LIMIT: u64 = 16 << 20;
/// Connections sending a bomb at once.
const BOMBERS: u64 = 4;

/// `docs/security.md`, "Worst-case memory", for this configuration, above the process's
/// baseline `M0`: the history budget `H`, as much again of allocator slack `F`, a decoded
/// command and a publication over the budget per worker thread (`W·P`), the channels'
/// bookkeeping (`C·c`, rounded up), and per connection its fixed state, outbound queue, a
/// message arriving and one more message over the queue (no subscriptions here, no
/// `/echo`, no tickets).
fn worst_case() -> u64 {
    let decoded_publication = 16 * MAX_MESSAGE;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    2 * HISTORY_MEMORY
        + workers * 2 * decoded_publication
        + MAX_CHANNELS * 1024
        + MAX_CONNECTIONS * (16 * 1024 + OUTBOUND_QUEUE + 2 * MAX_MESSAGE)
}

/// The real binary on a free loopback port; killed by its PID when dropped.
struct Server {
    served: Served,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Self {
        Self::start_with(&["--no-demo", "--no-echo"])
    }

    fn start_with(args: &[&str]) -> Self {
        let n = |v: u64| v.to_string();
        let served = Serve::new(BIN)
            .args(args)
            .args(["--history-memory", &n(HISTORY_MEMORY), "--max-channels", &n(MAX_CHANNELS)])
            .args(["--max-connections", &n(MAX_CONNECTIONS)])
            .args(["--outbound-queue-bytes", &n(OUTBOUND_QUEUE)])
            .args(["--rate-limit-messages", "off", "--rate-limit-bytes", "off"])
            .start();
        Self { addr: served.addr, served }
    }

    /// The server's resident memory in bytes, from `/proc/<pid>/status`.
    fn rss(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    /// The most resident memory the server has held so far, in bytes.
    fn peak_rss(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.served.pid()))
            .expect("the server's status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {field} in {status}"))
    }

    async fn metrics(&self) -> String {
        scrape(self.addr).await
    }

    fn stop(&mut self) {
        self.served.kill9();
    }
}
