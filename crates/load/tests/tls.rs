//! The scenarios over `wss://` (and the HTTP transports over `https://`) against a real
//! server serving its generated development certificate, through the same library call as
//! `switchboard bench`: trusted with `--ca`, accepted with `--insecure`, and refused without
//! either.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser as _;
use serde_json::{Value, json};
use switchboard_load::{BenchArgs, Error, Report, execute};
use switchboard_server::TlsSource;
use switchboard_test_support::server::{TestServer, bench_config};

/// Every run is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

const API_KEY: &str = "bench-test-key-0123456789abcdef";

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

/// A server with an open `bench` namespace and no rate limits, serving TLS with a
/// certificate for localhost and 127.0.0.1 that it generated.
async fn tls_server() -> TestServer {
    let mut config = bench_config();
    config.api_key = Some(API_KEY.into());
    config.tls = Some(TlsSource::DevSelfSigned);
    TestServer::start(config).await
}

/// The server's certificate, written to a file of the test's own for `--ca`.
fn ca_file(server: &TestServer, test: &str) -> PathBuf {
    let pem = server.dev_certificate.as_deref().expect("a development certificate");
    let dir = std::env::temp_dir().join(format!("switchboard-load-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let path = dir.join("ca.pem");
    std::fs::write(&path, pem).expect("write the certificate");
    path
}

async fn bench(args: &[&str]) -> Value {
    try_bench(args).await.expect("the run succeeds").json().clone()
}

async fn try_bench(args: &[&str]) -> Result<Report, Error> {
    let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
        .expect("valid arguments");
    tokio::time::timeout(LIMIT, execute(&cli.bench)).await.expect("the run ends in time")
}

fn assert_no_errors(report: &Value) {
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["error_kinds"], json!({}), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_wss_trusting_the_certificate_with_ca() {
    let server = tls_server().await;
    let ca = ca_file(&server, "echo-ca");
    let ca = ca.to_str().expect("a UTF-8 path");
    let url = format!("wss://127.0.0.1:{}/ws", server.addr.port());
    let report = bench(&[
        "echo",
        "--url",
        &url,
        "--ca",
        ca,
        "--connections",
        "4",
        "--messages",
        "50",
        "--in-flight",
        "3",
    ])
    .await;
    assert_eq!(report["tls"], true, "{report:#}");
    assert_eq!(report["protocol"], "switchboard");
    assert_eq!(report["messages"], 200, "{report:#}");
    assert_no_errors(&report);

    // Messages of several TLS records each, many in flight: reads and writes span records
    // and fill rustls's buffers.
    let url = format!("wss://127.0.0.1:{}/echo", server.addr.port());
    let report = bench(&[
        "echo",
        "--url",
        &url,
        "--ca",
        ca,
        "--connections",
        "3",
        "--messages",
        "20",
        "--size",
        "60000",
        "--in-flight",
        "8",
    ])
    .await;
    assert_eq!((report["tls"].clone(), report["protocol"].clone()), (json!(true), json!("raw")));
    assert_eq!(report["messages"], 60, "{report:#}");
    assert_no_errors(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_wss_with_insecure() {
    let server = tls_server().await;
    let url = format!("wss://localhost:{}/ws", server.addr.port());
    let report = bench(&[
        "fanout",
        "--url",
        &url,
        "--insecure",
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
    assert_eq!(report["tls"], true, "{report:#}");
    assert_eq!(report["publishes"], 20, "{report:#}");
    // 20 publishes over 2 channels of 5 subscribers each.
    assert_eq!(report["deliveries"], 100, "{report:#}");
    assert_no_errors(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_https_transports_and_api() {
    let server = tls_server().await;
    let ca = ca_file(&server, "fanout-https");
    let ca = ca.to_str().expect("a UTF-8 path");
    let url = format!("wss://127.0.0.1:{}/ws", server.addr.port());
    for transport in ["sse", "longpoll"] {
        let report = bench(&[
            "fanout",
            "--url",
            &url,
            "--ca",
            ca,
            "--transport",
            transport,
            "--publish-via",
            "http",
            "--api-key",
            API_KEY,
            "--subscribers",
            "6",
            "--channels",
            "2",
            "--rate",
            "40",
            "--duration",
            "500ms",
            "--grace",
            "5s",
        ])
        .await;
        assert_eq!(report["transport"], transport);
        assert_eq!(report["subscribers_ready"], 6, "{report:#}");
        assert_eq!(report["publishes"], 20, "{report:#}");
        assert_eq!(report["deliveries"], 60, "{report:#}");
        assert_no_errors(&report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_churn_over_wss_count_the_tls_handshake() {
    let server = tls_server().await;
    let ca = ca_file(&server, "churn");
    let ca = ca.to_str().expect("a UTF-8 path");
    let url = format!("wss://127.0.0.1:{}/ws", server.addr.port());
    let report = bench(&[
        "connect",
        "--url",
        &url,
        "--ca",
        ca,
        "--connections",
        "20",
        "--subscribe",
        "--hold",
        "100ms",
    ])
    .await;
    assert_eq!(report["connections"], 20, "{report:#}");
    assert_no_errors(&report);
    let report = bench(&[
        "churn",
        "--url",
        &url,
        "--ca",
        ca,
        "--rate",
        "50",
        "--duration",
        "300ms",
        "--subscribe",
    ])
    .await;
    assert!(report["cycles"].as_u64().is_some_and(|n| n > 0), "{report:#}");
    assert_eq!(report["failures"], 0, "{report:#}");
    assert_no_errors(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_each_connection_as_tls_untrusted() {
    let server = tls_server().await;
    let url = format!("wss://127.0.0.1:{}/ws", server.addr.port());
    let report = bench(&["connect", "--url", &url, "--connections", "3", "--hold", "0s"]).await;
    assert_eq!(report["tls"], true, "{report:#}");
    assert_eq!(report["connections"], 0, "{report:#}");
    assert_eq!(report["error_kinds"], json!({ "setup_tls_untrusted": 3 }), "{report:#}");

    // A scenario that needs its connections fails, saying why and what to do.
    let result = try_bench(&["echo", "--url", &url, "--connections", "2"]).await;
    let Err(Error::Setup(message)) = result else { panic!("expected a setup error: {result:?}") };
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(message.contains("--ca FILE"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_to_a_plain_server_fails_as_tls() {
    let server = TestServer::start(bench_config()).await;
    let url = format!("wss://127.0.0.1:{}/ws", server.addr.port());
    let report = bench(&["connect", "--url", &url, "--connections", "2", "--hold", "0s"]).await;
    assert_eq!(report["connections"], 0, "{report:#}");
    assert_eq!(report["error_kinds"], json!({ "setup_tls": 2 }), "{report:#}");
}

#[tokio::test]
async fn refuses_tls_options_that_cannot_apply() {
    let result = try_bench(&["echo", "--url", "ws://127.0.0.1:9/echo", "--insecure"]).await;
    assert!(matches!(result, Err(Error::Usage(_))), "{result:?}");
    let missing = "/nonexistent/switchboard-ca.pem";
    let result = try_bench(&["echo", "--url", "wss://127.0.0.1:9/echo", "--ca", missing]).await;
    let Err(Error::Usage(message)) = result else { panic!("expected a usage error: {result:?}") };
    assert!(message.contains(missing), "{message}");
    let both = ["bench", "echo", "--url", "wss://h/echo", "--ca", "ca.pem", "--insecure"];
    assert!(Cli::try_parse_from(both).is_err(), "--ca and --insecure conflict");
}
