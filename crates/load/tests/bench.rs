//! The scenarios against a real server on 127.0.0.1:0, through the same library call as
//! `switchboard bench`: counts must be exact, speed is not asserted.

use std::time::Duration;

use clap::Parser as _;
use serde_json::Value;
use switchboard_load::{BenchArgs, Error, execute};
use switchboard_test_support::server::{TestServer, bench_config};

/// Every run is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

/// A server with an open `bench` namespace (no presence, joins or history: only the
/// publications reach subscribers) and no rate limits.
async fn server() -> TestServer {
    let mut config = bench_config();
    config.api_key = Some(API_KEY.into());
    TestServer::start(config).await
}

/// Runs `bench <args>` and returns its JSON report.
async fn bench(args: &[&str]) -> Value {
    try_bench(args).await.expect("the run succeeds").json().clone()
}

/// Runs `bench <args>` on the server's `bench` namespace, as `scripts/bench-peers.sh` does,
/// unless `args` name their own `--channel-prefix`.
async fn try_bench(args: &[&str]) -> Result<switchboard_load::Report, Error> {
    let prefix: &[&str] =
        if args.contains(&"--channel-prefix") { &[] } else { &["--channel-prefix", "bench:"] };
    let args = std::iter::once("bench").chain(args.iter().copied()).chain(prefix.iter().copied());
    let cli = Cli::try_parse_from(args).expect("valid arguments");
    tokio::time::timeout(LIMIT, execute(&cli.bench)).await.expect("the run ends in time")
}

fn assert_no_errors(report: &Value) {
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["error_kinds"], serde_json::json!({}), "{report:#}");
}

fn assert_latency(report: &Value, key: &str) {
    let latency = &report[key];
    for p in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(latency[p].as_f64().is_some_and(|v| v >= 0.0), "{key}.{p} in {report:#}");
    }
}

const API_KEY: &str = "bench-test-key-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_counts_every_round_trip_on_ws() {
    let server = server().await;
    let url = format!("ws://{}/ws", server.addr);
    let report = bench(&[
        "echo",
        "--url",
        &url,
        "--connections",
        "4",
        "--messages",
        "50",
        "--in-flight",
        "3",
    ])
    .await;
    assert_eq!(report["scenario"], "echo");
    assert_eq!(report["protocol"], "switchboard");
    assert_eq!(report["messages"], 200, "{report:#}");
    assert_no_errors(&report);
    assert_latency(&report, "latency_us");
    assert!(report["msg_per_s"].as_f64().is_some_and(|r| r > 0.0));
    assert!(report["load_cpu_pct"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_echo_counts_every_round_trip() {
    let server = server().await;
    let url = format!("ws://{}/echo", server.addr);
    let report = bench(&[
        "echo",
        "--url",
        &url,
        "--connections",
        "3",
        "--messages",
        "40",
        "--size",
        "1000",
        "--in-flight",
        "8",
        "--text",
    ])
    .await;
    assert_eq!(report["protocol"], "raw");
    assert_eq!(report["messages"], 120, "{report:#}");
    assert_no_errors(&report);
    let bytes_per_s = report["bytes_per_s"].as_f64().expect("a number");
    let msg_per_s = report["msg_per_s"].as_f64().expect("a number");
    assert!((bytes_per_s - msg_per_s * 1000.0).abs() <= msg_per_s + 1.0, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_for_a_duration_measures_after_the_warmup() {
    let server = server().await;
    let url = format!("ws://{}/echo", server.addr);
    let report = bench(&[
        "echo",
        "--url",
        &url,
        "--connections",
        "2",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
    ])
    .await;
    assert!(report["messages"].as_u64().is_some_and(|n| n > 0), "{report:#}");
    let duration = report["duration_s"].as_f64().expect("a number");
    assert!((0.25..1.0).contains(&duration), "{report:#}");
    assert_no_errors(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_publication_to_every_subscriber() {
    let server = server().await;
    let url = format!("ws://{}/ws", server.addr);
    let report = bench(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "10",
        "--channels",
        "2",
        "--rate",
        "40",
        "--duration",
        "500ms",
        "--size",
        "256",
        "--grace",
        "5s",
    ])
    .await;
    assert_eq!(report["publishes"], 20, "{report:#}");
    // 20 publishes over 2 channels of 5 subscribers each.
    assert_eq!(report["expected_deliveries"], 100, "{report:#}");
    assert_eq!(report["deliveries"], 100, "{report:#}");
    assert_eq!(report["delivered_fraction"], 1.0);
    assert_no_errors(&report);
    assert_latency(&report, "latency_us");
}

/// Fan-out to subscribers on an HTTP transport: every delivery counted once, from the
/// parsed events or batch entries.
async fn fanout_over(transport: &str) {
    let server = server().await;
    let url = format!("ws://{}/ws", server.addr);
    let report = bench(&[
        "fanout",
        "--url",
        &url,
        "--transport",
        transport,
        "--subscribers",
        "6",
        "--channels",
        "2",
        "--rate",
        "40",
        "--duration",
        "500ms",
        "--size",
        "256",
        "--grace",
        "5s",
    ])
    .await;
    assert_eq!(report["transport"], transport);
    assert_eq!(report["subscribers_ready"], 6, "{report:#}");
    assert_eq!(report["publishes"], 20, "{report:#}");
    // 20 publishes over 2 channels of 3 subscribers each.
    assert_eq!(report["expected_deliveries"], 60, "{report:#}");
    assert_eq!(report["deliveries"], 60, "{report:#}");
    assert_no_errors(&report);
    assert_latency(&report, "latency_us");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_sse_counts_every_event() {
    fanout_over("sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_longpoll_counts_every_batch_entry() {
    fanout_over("longpoll").await;
}

/// Sessions held on an HTTP transport, with the server's memory read around them.
async fn connect_over(transport: &str) {
    let server = server().await;
    let url = format!("ws://{}/ws", server.addr);
    let pid = std::process::id().to_string();
    let report = bench(&[
        "connect",
        "--url",
        &url,
        "--transport",
        transport,
        "--connections",
        "20",
        "--subscribe",
        "--channels",
        "3",
        "--hold",
        "100ms",
        "--pid",
        &pid,
    ])
    .await;
    assert_eq!(report["transport"], transport);
    assert_eq!(report["connections"], 20, "{report:#}");
    assert_eq!(report["failures"], 0);
    assert_no_errors(&report);
    assert!(report["server_rss_per_conn_bytes"].is_u64(), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_holds_sse_sessions() {
    connect_over("sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_holds_longpoll_sessions() {
    connect_over("longpoll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_as_fast_as_acknowledged_over_http() {
    let server = server().await;
    let url = format!("ws://{}/ws", server.addr);
    let report = bench(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "6",
        "--channels",
        "3",
        "--rate",
        "0",
        "--in-flight",
        "8",
        "--duration",
        "300ms",
        "--publish-via",
        "http",
        "--api-key",
        API_KEY,
        "--grace",
        "5s",
    ])
    .await;
    let publishes = report["publishes"].as_u64().expect("a number");
    assert!(publishes > 0, "{report:#}");
    assert_eq!(report["deliveries"], report["expected_deliveries"], "{report:#}");
    assert_eq!(report["delivered_fraction"], 1.0);
    assert_no_errors(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_fanout_reaches_every_other_connection() {
    let server = server().await;
    // `/echo` answers only the sender: as a broadcast endpoint it delivers nothing, which
    // the report must say rather than hide.
    let url = format!("ws://{}/echo", server.addr);
    let report = bench(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "3",
        "--rate",
        "20",
        "--duration",
        "200ms",
        "--grace",
        "200ms",
    ])
    .await;
    assert_eq!(report["protocol"], "raw");
    assert_eq!(report["publishes"], 4, "{report:#}");
    assert_eq!(report["expected_deliveries"], 12, "{report:#}");
    assert_eq!(report["deliveries"], 0, "{report:#}");
    assert_eq!(report["delivered_fraction"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_every_connection_and_reads_rss() {
    let server = server().await;
    let url = format!("ws://{}/ws", server.addr);
    let pid = std::process::id().to_string();
    let report = bench(&[
        "connect",
        "--url",
        &url,
        "--connections",
        "20",
        "--subscribe",
        "--channels",
        "3",
        "--hold",
        "100ms",
        "--pid",
        &pid,
    ])
    .await;
    assert_eq!(report["connections"], 20, "{report:#}");
    assert_eq!(report["failures"], 0);
    assert_no_errors(&report);
    assert!(report["server_rss_per_conn_bytes"].is_u64(), "{report:#}");
    assert!(report["server_rss_bytes"].as_u64().is_some_and(|rss| rss > 0));
    assert!(report["server_cpu_s"].is_number());
    assert!(report["open_per_s"].as_f64().is_some_and(|r| r > 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_completes_cycles_without_failures() {
    let server = server().await;
    let url = format!("ws://{}/ws", server.addr);
    let report = bench(&[
        "churn",
        "--url",
        &url,
        "--rate",
        "50",
        "--duration",
        "400ms",
        "--subscribe",
        "--channels",
        "2",
    ])
    .await;
    assert!(report["cycles"].as_u64().is_some_and(|n| n > 0), "{report:#}");
    assert_eq!(report["failures"], 0, "{report:#}");
    assert_no_errors(&report);
    assert_latency(&report, "handshake_latency_us");

    let report = bench(&[
        "churn",
        "--url",
        &url,
        "--rate",
        "0",
        "--concurrency",
        "4",
        "--duration",
        "200ms",
    ])
    .await;
    assert!(report["cycles"].as_u64().is_some_and(|n| n > 0), "{report:#}");
    assert_eq!(report["failures"], 0, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_an_unreachable_target() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let url = format!("ws://127.0.0.1:{port}/echo");
    let result = try_bench(&["echo", "--url", &url]).await;
    assert!(matches!(result, Err(Error::Unreachable(_))), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_when_subscriptions_are_refused() {
    let server = server().await;
    let url = format!("ws://{}/ws", server.addr);
    let result = try_bench(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "5",
        "--channel-prefix",
        "nowhere:",
        "--duration",
        "100ms",
    ])
    .await;
    let Err(Error::Setup(message)) = result else { panic!("expected a setup error: {result:?}") };
    assert!(message.contains("unknown_namespace"), "{message}");
}

#[tokio::test]
async fn refuses_options_that_conflict() {
    let result = try_bench(&["fanout", "--url", "ws://127.0.0.1:9/raw", "--channels", "2"]).await;
    assert!(matches!(result, Err(Error::Usage(_))), "{result:?}");
    let result = try_bench(&["fanout", "--url", "ws://127.0.0.1:9/raw", "--rate", "0"]).await;
    assert!(matches!(result, Err(Error::Usage(_))), "{result:?}");
    let result = try_bench(&["echo", "--url", "ws://127.0.0.1:9/ws", "--transport", "sse"]).await;
    assert!(matches!(result, Err(Error::Usage(_))), "{result:?}");
    let raw = ["connect", "--url", "ws://127.0.0.1:9/raw", "--transport", "longpoll"];
    let result = try_bench(&raw).await;
    assert!(matches!(result, Err(Error::Usage(_))), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_with_compression_inflates_the_shared_frames() {
    use switchboard_test_support::metrics::{sample, scrape};
    let server = server().await;
    let url = format!("ws://{}/ws", server.addr);
    let report = bench(&[
        "fanout",
        "--url",
        &url,
        "--compression",
        "--subscribers",
        "6",
        "--channels",
        "2",
        "--rate",
        "40",
        "--duration",
        "500ms",
        "--size",
        "1024",
        "--grace",
        "5s",
    ])
    .await;
    assert_eq!(report["publishes"], 20, "{report:#}");
    assert_eq!(report["deliveries"], 60, "{report:#}");
    assert_no_errors(&report);
    assert_latency(&report, "latency_us");
    // Every delivery went out as the frame compressed once per publication.
    let metrics = scrape(server.addr).await;
    let shared = "switchboard_deflate_messages_total{direction=\"sent\",compressor=\"shared\"}";
    assert_eq!(sample(&metrics, shared), Some(60.0), "{metrics}");
    assert_eq!(sample(&metrics, "switchboard_deflate_shared_frames_total"), Some(20.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_asked_of_a_server_that_declines_fails_each_connection() {
    let mut config = bench_config();
    config.compression.ws = false;
    let server = TestServer::start(config).await;
    let url = format!("ws://{}/ws", server.addr);
    let report =
        bench(&["connect", "--url", &url, "--compression", "--connections", "3", "--hold", "0s"])
            .await;
    assert_eq!(report["connections"], 0, "{report:#}");
    let kinds = serde_json::json!({ "setup_deflate_declined": 3 });
    assert_eq!(report["error_kinds"], kinds, "{report:#}");
}
