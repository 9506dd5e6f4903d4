//! The Grafana dashboard in `deploy/grafana` is valid JSON and queries only metrics that
//! `/metrics` exposes.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde_json::Value;
use std::time::Duration;

use serde_json::json;
use switchboard_codec::{CloseCode, Message};
use switchboard_test_support::client::WsClient;
use switchboard_test_support::http;
use switchboard_test_support::server::{TestServer, open_config};

const DASHBOARD: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/switchboard.json"));

#[tokio::test]
async fn dashboard_queries_only_exposed_metrics() {
    let server = TestServer::start(open_config()).await;
    traffic(server.addr).await;
    let exposed = exposed_names(&scrape(server.addr).await);
    assert!(exposed.contains("switchboard_connections_opened_total"), "{exposed:?}");

    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 12, "{exprs:?}");
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr} queries no switchboard metric");
        for name in names {
            assert!(exposed.contains(&name), "{expr}: {name} is not exposed by /metrics");
            used.insert(name);
        }
    }
    for wanted in [
        "switchboard_connections_active",
        "switchboard_connections_closed_total",
        "switchboard_handshake_failures_total",
        "switchboard_rate_limited_total",
        "switchboard_messages_received_total",
        "switchboard_publications_total",
        "switchboard_slow_consumer_disconnects_total",
        "switchboard_recoveries_total",
        "switchboard_process_resident_memory_bytes",
        "switchboard_channels",
        "switchboard_subscriptions",
        "switchboard_delivery_latency_seconds_bucket",
        "switchboard_broker_latency_seconds_bucket",
        "switchboard_broker_errors_total",
        "switchboard_deliveries_total",
    ] {
        assert!(used.contains(wanted), "no panel shows {wanted}");
    }
}

const LIMIT: Duration = Duration::from_secs(5);

/// Does one of everything a labelled family counts: empty families are not exposed.
async fn traffic(addr: SocketAddr) {
    // A handshake failure: no upgrade headers.
    http::get(addr, "/ws").await;
    // A command error, a recovery that fails (unknown epoch), then a clean close.
    let mut ws = WsClient::connect(addr, "/ws").await.expect("handshake");
    let since = json!({"offset": 1, "epoch": "gone"});
    for command in [
        json!({"id": 1, "type": "no_such_command"}),
        json!({"id": 2, "type": "subscribe", "channel": "room", "since": since}),
    ] {
        ws.send(Message::text(command.to_string())).await.expect("send");
        ws.recv_timeout(LIMIT).await.expect("a reply");
    }
    ws.close(CloseCode::NORMAL, "").await.expect("close");
    ws.expect_close(LIMIT).await.expect("a close");
    // A protocol error: an unmasked client frame (RFC 6455 §5.1).
    let mut echo = WsClient::connect(addr, "/echo").await.expect("handshake");
    echo.send_raw(&[0x81, 0x02, b'h', b'i']).await.expect("send");
    echo.expect_close(LIMIT).await.expect("a close");
    echo.expect_eof(LIMIT).await.expect("eof");
}

/// The body of `GET /metrics`.
async fn scrape(addr: SocketAddr) -> String {
    let response = http::get(addr, "/metrics").await;
    assert_eq!(response.status, 200, "{response}");
    response.body
}

/// Sample names from the `# TYPE` lines: counters get `_total`, as their samples do.
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .flat_map(|(name, kind)| match kind {
            "counter" if !name.ends_with("_total") => vec![format!("{name}_total")],
            "histogram" => ["bucket", "sum", "count"].map(|s| format!("{name}_{s}")).to_vec(),
            _ => vec![name.to_owned()],
        })
        .collect()
}

/// Every `expr` string in the dashboard, however deeply nested.
fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, out)),
        _ => {}
    }
}

/// The `switchboard_…` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("switchboard_"))
        .map(str::to_owned)
        .collect()
}
