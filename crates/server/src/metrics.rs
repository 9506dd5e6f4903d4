//! Prometheus metrics, one registry per server, rendered at `/metrics`.
//!
//! Every refusal and disconnect is counted with a bounded, stable reason label (never a
//! client-controlled string), so cardinality stays fixed whatever clients send.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
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
    pub(crate) code: CodeLabel,
    pub(crate) cause: &'static str,
}

/// A close code as a label value: exact for the codes RFC 6455 §7.4.1 registers and those
/// the server sends itself, bucketed for the rest, which a peer picks at will (a peer closing
/// with every code of 3000–4999 would otherwise make 2,000 series).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub(crate) enum CodeLabel {
    /// A registered or server-defined code.
    Exact(u16),
    /// `3xxx`, `4xxx` or `other`.
    Bucket(&'static str),
}

impl CodeLabel {
    pub(crate) fn new(code: u16) -> Self {
        use switchboard_proto::codes::close;
        match code {
            1000..=1015 => Self::Exact(code),
            _ if close::ALL.contains(&code) => Self::Exact(code),
            3000..=3999 => Self::Bucket("3xxx"),
            4000..=4999 => Self::Bucket("4xxx"),
            _ => Self::Bucket("other"),
        }
    }
}

impl EncodeLabelValue for CodeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(code) => write!(encoder, "{code}"),
            Self::Bucket(bucket) => encoder.write_str(bucket),
        }
    }
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
    /// Time from a publication reaching this node's hub to its hand-off to a subscriber's
    /// socket write.
    pub(crate) delivery_latency: LatencyHistogram,
    /// Broker operations: latency and failures, by operation.
    pub(crate) broker: Arc<BrokerStats>,
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
            delivery_latency: LatencyHistogram::default(),
            broker: Arc::default(),
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
        histogram_header(
            &mut body,
            "delivery_latency_seconds",
            "Time from a publication reaching this node's hub (a local publish, or the broker's \
             pub/sub) to its hand-off to a subscriber's socket write",
        );
        self.delivery_latency.render(&mut body, "delivery_latency_seconds", None);
        self.broker.render(&mut body);
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

/// The in-memory broker's holdings and evictions; nothing for a broker that keeps its state
/// elsewhere.
pub(crate) fn broker_usage(usage: Option<switchboard_broker::Usage>) -> Vec<Sampled> {
    let Some(usage) = usage else { return Vec::new() };
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let counter =
        |name, help, value| Sampled { name, help, counter: true, samples: vec![(None, value)] };
    vec![
        Sampled::gauge(
            "broker_history_bytes",
            "Estimated memory held by the in-memory broker's history (bounded by history_memory)",
            count(usage.history_bytes),
        ),
        Sampled::gauge(
            "broker_channels",
            "Channels holding state in the in-memory broker (bounded by max_channels)",
            count(usage.channels),
        ),
        counter(
            "broker_history_evictions",
            "Publications dropped from history to stay within history_memory",
            usage.evicted_publications,
        ),
        counter(
            "broker_channel_evictions",
            "Idle channels forgotten to make room for new ones at max_channels",
            usage.evicted_channels,
        ),
        counter(
            "broker_channel_limit_refusals",
            "Commands and API calls refused with unavailable because max_channels were all in use",
            usage.refused_channels,
        ),
    ]
}

/// Upper bounds of the latency buckets, in nanoseconds (exposed in seconds as `le`).
const LATENCY_BOUNDS_NANOS: [u64; 15] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
];

/// Writes a histogram family's `HELP` and `TYPE` lines.
fn histogram_header(out: &mut String, name: &str, help: &str) {
    let _ = write!(out, "# HELP switchboard_{name} {help}.\n# TYPE switchboard_{name} histogram\n");
}

/// A latency histogram with fixed buckets, lock-free: observers add with relaxed atomics,
/// usually a whole [`LatencyBatch`] at a time, so a hot path costs a few adds per write
/// rather than a lock per observation.
#[derive(Debug, Default)]
pub(crate) struct LatencyHistogram {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS_NANOS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let mut batch = LatencyBatch::default();
        batch.observe(elapsed);
        self.add(&batch);
    }

    /// Adds a batch of observations made locally.
    pub(crate) fn add(&self, batch: &LatencyBatch) {
        if batch.count == 0 {
            return;
        }
        for (bucket, &n) in self.buckets.iter().zip(&batch.buckets) {
            if n > 0 {
                bucket.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.sum_nanos.fetch_add(batch.sum_nanos, Ordering::Relaxed);
        self.count.fetch_add(batch.count, Ordering::Relaxed);
    }

    /// Writes the samples of `switchboard_{name}` (one label pair optional) in OpenMetrics
    /// text, below its [`histogram_header`].
    fn render(&self, out: &mut String, name: &str, label: Option<(&str, &str)>) {
        let prefix = label.map(|(k, v)| format!("{k}=\"{v}\",")).unwrap_or_default();
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = LATENCY_BOUNDS_NANOS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |&b| format!("{:?}", b as f64 / 1e9));
            let _ = writeln!(out, "switchboard_{name}_bucket{{{prefix}le=\"{le}\"}} {cumulative}");
        }
        let labels = label.map(|(k, v)| format!("{{{k}=\"{v}\"}}")).unwrap_or_default();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "switchboard_{name}_sum{labels} {sum}");
        // The count is the +Inf bucket: read from the buckets, so the two always agree.
        let _ = writeln!(out, "switchboard_{name}_count{labels} {cumulative}");
    }
}

/// Observations gathered without touching shared state, added to a [`LatencyHistogram`]
/// at once.
#[derive(Debug, Default)]
pub(crate) struct LatencyBatch {
    buckets: [u64; LATENCY_BOUNDS_NANOS.len() + 1],
    sum_nanos: u64,
    count: u64,
}

impl LatencyBatch {
    /// Records one observation.
    pub(crate) fn observe(&mut self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let index = LATENCY_BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[index] += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
        self.count += 1;
    }
}

/// A broker operation, the `op` label of the broker families.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BrokerOp {
    Subscribe,
    Unsubscribe,
    Publish,
    History,
    Join,
    Leave,
    Presence,
}

impl BrokerOp {
    const ALL: [Self; 7] = [
        Self::Subscribe,
        Self::Unsubscribe,
        Self::Publish,
        Self::History,
        Self::Join,
        Self::Leave,
        Self::Presence,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Unsubscribe => "unsubscribe",
            Self::Publish => "publish",
            Self::History => "history",
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Presence => "presence",
        }
    }
}

/// Latency and failures of broker operations, by operation.
#[derive(Debug, Default)]
pub(crate) struct BrokerStats {
    latency: [LatencyHistogram; BrokerOp::ALL.len()],
    errors: [AtomicU64; BrokerOp::ALL.len()],
}

impl BrokerStats {
    /// Records one operation: how long it took and whether it failed.
    pub(crate) fn record(&self, op: BrokerOp, elapsed: Duration, failed: bool) {
        self.latency[op as usize].observe(elapsed);
        if failed {
            self.errors[op as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn render(&self, out: &mut String) {
        histogram_header(
            out,
            "broker_latency_seconds",
            "Time broker operations took (for Redis: round trips and scripts), by operation",
        );
        for op in BrokerOp::ALL {
            let histogram = &self.latency[op as usize];
            histogram.render(out, "broker_latency_seconds", Some(("op", op.as_str())));
        }
        out.push_str(
            "# HELP switchboard_broker_errors Broker operations that failed, by operation.\n\
             # TYPE switchboard_broker_errors counter\n",
        );
        for op in BrokerOp::ALL {
            let n = self.errors[op as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "switchboard_broker_errors_total{{op=\"{}\"}} {n}", op.as_str());
        }
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
    fn close_code_labels_are_exact_for_known_codes_and_bucketed_for_the_rest() {
        let label = |code| match CodeLabel::new(code) {
            CodeLabel::Exact(code) => code.to_string(),
            CodeLabel::Bucket(bucket) => bucket.to_owned(),
        };
        for code in [1000, 1001, 1002, 1005, 1006, 1011, 1015, 4000, 4001, 4003, 4100, 4403] {
            assert_eq!(label(code), code.to_string());
        }
        for (code, bucket) in [
            (3000, "3xxx"),
            (3999, "3xxx"),
            (4004, "4xxx"),
            (4099, "4xxx"),
            (4999, "4xxx"),
            (0, "other"),
            (999, "other"),
            (1016, "other"),
            (2999, "other"),
            (5000, "other"),
            (u16::MAX, "other"),
        ] {
            assert_eq!(label(code), bucket, "{code}");
        }
        let labels: std::collections::HashSet<_> = (0..=u16::MAX).map(CodeLabel::new).collect();
        // 16 registered, 12 of the server's own, three buckets.
        assert_eq!(labels.len(), 31);
    }

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
    fn histograms_have_cumulative_buckets_in_seconds() {
        let metrics = Metrics::new();
        let mut batch = LatencyBatch::default();
        batch.observe(Duration::from_micros(200));
        batch.observe(Duration::from_secs(9));
        metrics.delivery_latency.add(&batch);
        let text = metrics.render(&[]);
        let bucket =
            |le: &str| format!("switchboard_delivery_latency_seconds_bucket{{le=\"{le}\"}}");
        assert!(text.contains(&format!("{} 0\n", bucket("0.0001"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("0.00025"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("1.0"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("5.0"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", bucket("+Inf"))), "{text}");
        assert!(text.contains("switchboard_delivery_latency_seconds_count 2\n"), "{text}");
        assert_eq!(text.matches("# TYPE switchboard_broker_latency_seconds histogram").count(), 1);
        let publish = "switchboard_broker_latency_seconds_bucket{op=\"publish\",le=\"0.0001\"} 0";
        assert!(text.contains(publish), "{text}");
    }

    #[test]
    fn reads_resident_memory() {
        assert!(resident_memory_bytes() > 0);
    }
}
