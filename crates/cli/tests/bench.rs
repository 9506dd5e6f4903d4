//! `switchboard bench` as a script runs it: worker processes, one JSON object on stdout,
//! one-line errors.

use std::io::Read as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_test_support::server::{TestServer, bench_config};
use switchboard_test_support::wait_until_blocking;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// Every run of the binary is bounded by this.
const LIMIT: Duration = Duration::from_secs(60);

/// A server with an open `bench` namespace (only publications reach subscribers) and no
/// rate limits.
async fn server() -> TestServer {
    TestServer::start(bench_config()).await
}

/// Runs `switchboard bench <args>` off the runtime's threads, killing it (its own PID)
/// past the limit.
async fn run(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .arg("bench")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard bench");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let out_reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).expect("read stdout");
            out
        });
        let err_reader = std::thread::spawn(move || {
            let mut err = Vec::new();
            stderr.read_to_end(&mut err).expect("read stderr");
            err
        });
        let mut status = None;
        wait_until_blocking(LIMIT, || {
            status = child.try_wait().expect("wait for bench");
            status.is_some()
        });
        let Some(status) = status else {
            drop(child.kill());
            panic!("bench did not finish in time");
        };
        let stdout = out_reader.join().expect("stdout reader");
        Output { status, stdout, stderr: err_reader.join().expect("stderr reader") }
    })
    .await
    .expect("bench runner")
}

/// The one JSON object a successful `--json` run prints.
fn json_report(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert_eq!(stdout.lines().count(), 1, "exactly one line on stdout: {stdout}");
    serde_json::from_str(&stdout).expect("stdout is one JSON object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_merge_echo_counts_exactly() {
    let server = server().await;
    let url = format!("ws://{}/echo", server.addr);
    let out = run(&[
        "echo",
        "--url",
        &url,
        "--connections",
        "5",
        "--messages",
        "40",
        "--in-flight",
        "4",
        "--processes",
        "2",
        "--json",
    ])
    .await;
    let report = json_report(&out);
    assert_eq!(report["processes"], 2);
    assert_eq!(report["messages"], 200, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert!(report["latency_us"]["p50"].is_number(), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_merge_fanout_and_connect_counts_exactly() {
    let server = server().await;
    let url = format!("ws://{}/ws", server.addr);
    let out = run(&[
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
        "--grace",
        "1s",
        "--processes",
        "2",
        "--json",
    ])
    .await;
    let report = json_report(&out);
    assert_eq!(report["publishes"], 20, "{report:#}");
    assert_eq!(report["expected_deliveries"], 100, "{report:#}");
    assert_eq!(report["deliveries"], 100, "{report:#}");
    assert_eq!(report["delivered_fraction"], 1.0);

    let pid = std::process::id().to_string();
    let out = run(&[
        "connect",
        "--url",
        &url,
        "--connections",
        "21",
        "--processes",
        "3",
        "--hold",
        "100ms",
        "--pid",
        &pid,
        "--json",
    ])
    .await;
    let report = json_report(&out);
    assert_eq!(report["connections"], 21, "{report:#}");
    assert_eq!(report["failures"], 0, "{report:#}");
    assert!(report["server_rss_per_conn_bytes"].is_u64(), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_trust_the_ca_file_over_wss() {
    let mut config = bench_config();
    config.tls = Some(switchboard_server::TlsSource::DevSelfSigned);
    let server = TestServer::start(config).await;
    let dir = std::env::temp_dir().join(format!("switchboard-bench-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let ca = dir.join("ca.pem");
    let pem = server.dev_certificate.as_deref().expect("a development certificate");
    std::fs::write(&ca, pem).expect("write the certificate");
    let url = format!("wss://127.0.0.1:{}/echo", server.addr.port());
    let out = run(&[
        "echo",
        "--url",
        &url,
        "--ca",
        ca.to_str().expect("a UTF-8 path"),
        "--connections",
        "4",
        "--messages",
        "30",
        "--processes",
        "2",
        "--json",
    ])
    .await;
    let report = json_report(&out);
    assert_eq!((report["tls"].clone(), report["processes"].clone()), (json!(true), json!(2)));
    assert_eq!(report["messages"], 120, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_a_table_without_json() {
    let server = server().await;
    let url = format!("ws://{}/echo", server.addr);
    let out = run(&["echo", "--url", &url, "--messages", "10"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("messages ")).expect("a messages row");
    assert!(line.ends_with(" 10"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_is_one_line_and_a_failure() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let url = format!("ws://127.0.0.1:{port}/echo");
    let out = run(&["echo", "--url", &url, "--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
}
