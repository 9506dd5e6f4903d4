//! `switchboard bench` with its default options against a server with the built-in
//! configuration (what `switchboard serve` runs without a file): the first run a newcomer
//! tries must work, and a channel the server refuses must be named with what to change.

use std::time::Duration;

use clap::Parser as _;
use serde_json::Value;
use switchboard_load::{BenchArgs, Error, execute};
use switchboard_server::Config;
use switchboard_test_support::server::TestServer;

/// Every run is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

/// A server with the built-in configuration: the default namespace closed to anonymous
/// connections, `chat` open to them, `ticker` readable only; default rate limits.
async fn default_server() -> TestServer {
    TestServer::start(Config::default()).await
}

async fn try_bench(args: &[&str]) -> Result<switchboard_load::Report, Error> {
    let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
        .expect("valid arguments");
    tokio::time::timeout(LIMIT, execute(&cli.bench)).await.expect("the run ends in time")
}

/// The message of the setup error a run must end with.
async fn setup_error(args: &[&str]) -> String {
    match try_bench(args).await {
        Err(Error::Setup(message)) => message,
        other => panic!("expected a setup error: {other:?}"),
    }
}

fn assert_no_errors(report: &Value) {
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["error_kinds"], serde_json::json!({}), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_with_the_default_prefix_delivers_everything_on_a_default_server() {
    let server = default_server().await;
    let url = format!("ws://{}/ws", server.addr);
    let report = try_bench(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "20",
        "--channels",
        "2",
        "--rate",
        "50",
        "--duration",
        "400ms",
        "--grace",
        "2s",
    ])
    .await
    .expect("the run succeeds")
    .json()
    .clone();
    assert_eq!(report["params"]["channel_prefix"], "chat:bench-", "{report:#}");
    assert_no_errors(&report);
    assert_eq!(report["subscribers_ready"], 20, "{report:#}");
    // 20 publishes over 2 channels of 10 subscribers each.
    assert_eq!(report["publishes"], 20, "{report:#}");
    assert_eq!(report["expected_deliveries"], 200, "{report:#}");
    assert_eq!(report["deliveries"], 200, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_subscribes_with_the_default_prefix_on_a_default_server() {
    let server = default_server().await;
    let url = format!("ws://{}/ws", server.addr);
    let args = ["connect", "--url", &url, "--connections", "30", "--subscribe", "--hold", "0s"];
    let report = try_bench(&args).await.expect("the run succeeds").json().clone();
    assert_eq!(report["connections"], 30, "{report:#}");
    assert_eq!(report["failures"], 0, "{report:#}");
    assert_no_errors(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeclared_namespace_is_named_with_the_option_and_setting_to_change() {
    let server = default_server().await;
    let url = format!("ws://{}/ws", server.addr);
    let message = setup_error(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "3",
        "--channel-prefix",
        "bench:",
        "--duration",
        "100ms",
    ])
    .await;
    assert!(
        message.contains(r#"subscribe to "bench:0" refused with unknown_namespace"#),
        "{message}"
    );
    assert!(message.contains("--channel-prefix chat:bench-"), "{message}");
    assert!(message.contains("--namespace 'bench:anonymous=publish'"), "{message}");

    let args = ["connect", "--url", &url, "--connections", "4", "--subscribe"];
    let message =
        setup_error(&[&args[..], &["--channel-prefix", "bench:", "--hold", "0s"]].concat()).await;
    assert!(message.starts_with("4 of 4 connections failed"), "{message}");
    assert!(message.contains(r#""bench:0" refused with unknown_namespace"#), "{message}");

    let args = ["churn", "--url", &url, "--subscribe", "--duration", "5s", "--rate", "20"];
    let message = setup_error(&[&args[..], &["--channel-prefix", "bench:"]].concat()).await;
    assert!(message.contains(r#""bench:0" refused with unknown_namespace"#), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_default_namespace_suggests_a_token_or_opening_it() {
    let server = default_server().await;
    let url = format!("ws://{}/ws", server.addr);
    let args = ["connect", "--url", &url, "--connections", "2", "--subscribe", "--hold", "0s"];
    let message = setup_error(&[&args[..], &["--channel-prefix", "lobby-"]].concat()).await;
    assert!(message.contains(r#"subscribe to "lobby-0" refused with unauthorized"#), "{message}");
    assert!(message.contains("the default namespace is closed to anonymous"), "{message}");
    assert!(message.contains("--token"), "{message}");
    assert!(message.contains("--namespace ':anonymous=subscribe'"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_closed_to_client_publishes_stops_the_publisher_with_its_name() {
    let server = default_server().await;
    let url = format!("ws://{}/ws", server.addr);
    // `ticker` lets anonymous connections subscribe, so only the publisher is refused.
    let message = setup_error(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "2",
        "--channel-prefix",
        "ticker:bench-",
        "--duration",
        "5s",
    ])
    .await;
    assert!(
        message
            .contains(r#"publisher: publish to "ticker:bench-0" refused with permission_denied"#),
        "{message}"
    );
    assert!(message.contains("allow_publish=true"), "{message}");
}
