//! Prometheus metrics, one registry per server, rendered at `/metrics`.
//!
//! Every refusal and disconnect is counted with a bounded, stable reason label (never a
//! client-controlled string), so cardinality stays fixed whatever clients send.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A `reason` label.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub(crate) struct Reason {
    pub(crate) reason: &'static str,
}

/// A `transport` label.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub(crate) struct Transport {
    pub(crate) transport: &'static str,
}

/// The labels of a closed connection.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub(crate) struct Closed {
    pub(crate) transport: &'static str,
    pub(crate) code: u16,
    pub(crate) cause: &'static str,
}

/// A `result` label.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) result: &'static str,
}

/// The server's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Handshakes refused before the upgrade, by reason.
    pub(crate) handshake_failures: Family<Reason, Counter>,
    /// WebSocket connections opened, by transport.
    pub(crate) connections_opened: Family<Transport, Counter>,
    /// WebSocket connections closed, by transport, close code and cause.
    pub(crate) connections_closed: Family<Closed, Counter>,
    /// Open WebSocket connections, by transport.
    pub(crate) connections_active: Family<Transport, Gauge<i64, AtomicI64>>,
    /// Protocol violations that failed a connection, by reason.
    pub(crate) protocol_errors: Family<Reason, Counter>,
    /// Commands that failed, by error code.
    pub(crate) command_errors: Family<Reason, Counter>,
    /// Messages received on WebSocket connections.
    pub(crate) messages_in: Counter<u64, AtomicU64>,
    /// Payload bytes received on WebSocket connections.
    pub(crate) bytes_in: Counter<u64, AtomicU64>,
    /// Messages handed to the codec on WebSocket connections: replies, pushes, echoes.
    pub(crate) messages_out: Counter<u64, AtomicU64>,
    /// Payload bytes of those messages.
    pub(crate) bytes_out: Counter<u64, AtomicU64>,
    /// Publications accepted from clients and the API.
    pub(crate) publications: Counter<u64, AtomicU64>,
    /// Connections cut off as slow consumers.
    pub(crate) slow_consumers: Counter<u64, AtomicU64>,
    /// Subscribes with a recovery position, by whether they recovered.
    pub(crate) recoveries: Family<Outcome, Counter>,
    /// Broker operations that failed.
    pub(crate) broker_errors: Counter<u64, AtomicU64>,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let metrics = Self {
            handshake_failures: Family::default(),
            connections_opened: Family::default(),
            connections_closed: Family::default(),
            connections_active: Family::default(),
            protocol_errors: Family::default(),
            command_errors: Family::default(),
            messages_in: Counter::default(),
            bytes_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_out: Counter::default(),
            publications: Counter::default(),
            slow_consumers: Counter::default(),
            recoveries: Family::default(),
            broker_errors: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "handshake_failures",
            "Handshakes refused before the upgrade, by reason",
            metrics.handshake_failures.clone(),
        );
        registry.register(
            "connections_opened",
            "WebSocket connections opened, by transport",
            metrics.connections_opened.clone(),
        );
        registry.register(
            "connections_closed",
            "WebSocket connections closed, by transport, close code and cause",
            metrics.connections_closed.clone(),
        );
        registry.register(
            "connections_active",
            "Open WebSocket connections, by transport",
            metrics.connections_active.clone(),
        );
        registry.register(
            "protocol_errors",
            "Protocol violations that failed a connection, by reason",
            metrics.protocol_errors.clone(),
        );
        registry.register(
            "command_errors",
            "Commands answered with an error, by error code",
            metrics.command_errors.clone(),
        );
        registry.register(
            "messages_received",
            "WebSocket messages received",
            metrics.messages_in.clone(),
        );
        registry.register(
            "bytes_received",
            "WebSocket payload bytes received",
            metrics.bytes_in.clone(),
        );
        registry.register(
            "messages_sent",
            "WebSocket messages sent: replies, pushes and echoes",
            metrics.messages_out.clone(),
        );
        registry.register("bytes_sent", "WebSocket payload bytes sent", metrics.bytes_out.clone());
        registry.register(
            "publications",
            "Publications accepted from clients and the HTTP API",
            metrics.publications.clone(),
        );
        registry.register(
            "slow_consumer_disconnects",
            "Connections cut off because their outbound queue overflowed",
            metrics.slow_consumers.clone(),
        );
        registry.register(
            "recoveries",
            "Subscribes with a recovery position, by result",
            metrics.recoveries.clone(),
        );
        registry.register(
            "broker_errors",
            "Broker operations that failed",
            metrics.broker_errors.clone(),
        );
        Self { registry, ..metrics }
    }

    /// Counts a handshake refused for `reason`.
    pub(crate) fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures.get_or_create(&Reason { reason }).inc();
    }

    /// Counts `messages` sent with `bytes` of payload: once per batch, not per message.
    pub(crate) fn sent(&self, messages: u64, bytes: u64) {
        if messages > 0 {
            self.messages_out.inc_by(messages);
            self.bytes_out.inc_by(bytes);
        }
    }

    /// The exposition (OpenMetrics text), with `extra` families whose values are read at
    /// scrape time from state the server keeps anyway (hub sizes, limiter counters, memory).
    pub(crate) fn render(&self, extra: &[Sampled]) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        // `encode` ends with `# EOF`; the scrape-time families go before it.
        let mut body = out.strip_suffix("# EOF\n").unwrap_or(&out).to_owned();
        for family in extra {
            let kind = if family.counter { "counter" } else { "gauge" };
            let suffix = if family.counter { "_total" } else { "" };
            body.push_str(&format!(
                "# HELP switchboard_{name} {help}.\n# TYPE switchboard_{name} {kind}\n",
                name = family.name,
                help = family.help,
            ));
            for (label, value) in &family.samples {
                let labels = label.map(|(k, v)| format!("{{{k}=\"{v}\"}}")).unwrap_or_default();
                body.push_str(&format!("switchboard_{}{suffix}{labels} {value}\n", family.name));
            }
        }
        body.push_str("# EOF\n");
        body
    }
}

/// A metric family sampled at scrape time.
#[derive(Debug)]
pub(crate) struct Sampled {
    /// The name after `switchboard_`.
    pub(crate) name: &'static str,
    /// The help text.
    pub(crate) help: &'static str,
    /// A counter (else a gauge).
    pub(crate) counter: bool,
    /// Samples: an optional label (name, value) and the value.
    pub(crate) samples: Vec<(Option<(&'static str, &'static str)>, u64)>,
}

impl Sampled {
    /// A gauge with one unlabelled sample.
    pub(crate) fn gauge(name: &'static str, help: &'static str, value: u64) -> Self {
        Self { name, help, counter: false, samples: vec![(None, value)] }
    }
}

/// The process's resident memory, from `/proc/self/status` (Linux); 0 elsewhere.
pub(crate) fn resident_memory_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_scrape_time_gauges() {
        let metrics = Metrics::new();
        metrics.handshake_failed("origin_not_allowed");
        metrics.handshake_failed("origin_not_allowed");
        let limited = Sampled {
            name: "rate_limited",
            help: "Refused by a limit",
            counter: true,
            samples: vec![(Some(("reason", "message_rate")), 4)],
        };
        let text = metrics
            .render(&[Sampled::gauge("channels", "Channels with local subscribers", 3), limited]);
        assert!(text.contains("switchboard_rate_limited_total{reason=\"message_rate\"} 4\n"));
        assert!(
            text.contains("switchboard_handshake_failures_total{reason=\"origin_not_allowed\"} 2"),
            "{text}"
        );
        assert!(text.contains("switchboard_channels 3\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn reads_resident_memory() {
        assert!(resident_memory_bytes() > 0);
    }
}
