//! Configs and small helpers the in-memory protocol tests share.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_server::{Config, NamespaceOptions};
use switchboard_test_support::protocol::{Link, ProtocolClient};
use switchboard_test_support::server::{open_config, open_namespace};

/// A config with namespace `name` next to the default one.
pub(crate) fn config_with(name: &str, options: NamespaceOptions) -> Config {
    let mut config = open_config();
    config.hub.namespaces.insert(name.into(), options);
    config
}

/// Namespace options keeping `size` publications.
pub(crate) fn history(size: usize) -> NamespaceOptions {
    let mut options = open_namespace();
    options.history_size = size;
    options
}

/// Namespace options keeping history for `ttl`.
pub(crate) fn ttl(ttl: Duration) -> NamespaceOptions {
    let mut options = open_namespace();
    options.history_ttl = ttl;
    options
}

/// Namespace options without presence or announcements: only publications are pushed.
pub(crate) fn quiet() -> NamespaceOptions {
    let mut options = open_namespace();
    options.presence = false;
    options.join_leave = false;
    options
}

/// Publishes each number as data, checking the offsets follow it; returns the epoch.
pub(crate) async fn publish_numbers<L: Link>(
    client: &mut ProtocolClient<L>,
    channel: &str,
    numbers: std::ops::RangeInclusive<u64>,
) -> String {
    let mut epoch = String::new();
    for n in numbers {
        let result = client.ok("publish", json!({"channel": channel, "data": n})).await;
        assert_eq!(result["offset"], n, "{result}");
        epoch = result["epoch"].as_str().expect("an epoch").to_owned();
    }
    epoch
}

/// The offsets of a list of publications (none when absent).
pub(crate) fn offsets(publications: &Value) -> Vec<u64> {
    publications
        .as_array()
        .map(|list| list.iter().map(|p| p["offset"].as_u64().expect("an offset")).collect())
        .unwrap_or_default()
}
