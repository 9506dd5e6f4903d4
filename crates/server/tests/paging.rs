//! Paged recovery over a real socket, as the metrics see it: counted as `paged`, and the
//! reader is never cut off as a slow consumer for asking. The paging itself is tested in
//! memory (`protocol/paging.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use switchboard_server::Config;
use switchboard_test_support::metrics::scrape;
use switchboard_test_support::protocol::ProtocolClient;
use switchboard_test_support::server::{TestServer, open_config};

/// How long any single expected message may take.
const LIMIT: Duration = Duration::from_secs(10);

/// Publications of about this many bytes: near the largest a client may send (64 KiB).
const LARGE: usize = 60_000;

#[tokio::test]
async fn recovery_in_pages_is_counted_and_never_cuts_the_reader_off() {
    for (queue, binary) in [(Config::default().hub.outbound_queue_bytes, false), (192 << 10, true)]
    {
        let mut config = open_config();
        config.hub.outbound_queue_bytes = queue;
        let server = TestServer::start(config).await;
        let epoch = publish_large(server.addr, "big", 20).await;
        let mut reader = connect(server.addr, binary).await;
        let since = json!({"offset": 1, "epoch": epoch});
        let mut page = reader.ok("subscribe", json!({"channel": "big", "since": since})).await;
        assert_eq!(page["more"], true, "{queue}");
        while page["more"] == true {
            let since = page["next"].clone();
            page = reader.ok("history", json!({"channel": "big", "since": since})).await;
        }
        assert_eq!(page["complete"], true, "{queue}");
        reader.ok("ping", json!({})).await;
        let metrics = scrape(server.addr).await;
        let paged = r#"switchboard_recoveries_total{result="paged"} 1"#;
        assert!(metrics.lines().any(|line| line == paged), "{metrics}");
        let slow = metrics.lines().find_map(|line| {
            line.strip_prefix("switchboard_slow_consumer_disconnects_total ")?.parse::<u64>().ok()
        });
        assert_eq!(slow, Some(0), "{metrics}");
    }
}

/// Publishes `count` publications of [`LARGE`] bytes to `channel`; returns the epoch.
async fn publish_large(addr: SocketAddr, channel: &str, count: u64) -> String {
    let large = "x".repeat(LARGE);
    connect(addr, false).await.publish_numbered(channel, count, &large).await
}

/// A reader in JSON, or in MessagePack when `binary`.
async fn connect(addr: SocketAddr, binary: bool) -> ProtocolClient {
    let mut client = if binary {
        ProtocolClient::connect_msgpack(addr).await
    } else {
        ProtocolClient::connect(addr).await
    };
    client.limit = LIMIT;
    client
}
