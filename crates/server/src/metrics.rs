//! Prometheus metrics, one registry per server, rendered at `/metrics` by one `encode` of
//! the registry (what is read at scrape time is registered as collectors: see
//! `exposition`).
//!
//! Every refusal and disconnect is counted with a bounded, stable reason label (never a
//! client-controlled string), so cardinality stays fixed whatever clients send.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A `reason` label.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: &'static str,
}

/// A `transport` label.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub(crate) struct TransportLabel {
    pub(crate) transport: &'static str,
}

/// A `direction` label (`sent`, `received`) and a `form` label (`plain`: the message's own
/// bytes; `deflated`: its bytes on the wire).
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub(crate) struct DeflateLabel {
    pub(crate) direction: &'static str,
    pub(crate) form: &'static str,
}

/// A `direction` label (`sent`, `received`) and a `compressor` label: `connection` for a
/// message the connection compressed or inflated itself, `shared` for a frame compressed
/// once and sent to every subscriber that negotiated permessage-deflate.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub(crate) struct DeflateMessageLabel {
    pub(crate) direction: &'static str,
    pub(crate) compressor: &'static str,
}

/// Pushes a connection sent as shared compressed frames, counted into the metrics once per
/// batch.
#[derive(Debug, Default)]
pub(crate) struct SharedDeflate {
    messages: u64,
    plain: u64,
    deflated: u64,
}

impl SharedDeflate {
    /// Counts one push of `plain` bytes sent as `frame`.
    pub(crate) fn add(&mut self, plain: usize, frame: &switchboard_codec::PreparedMessage) {
        self.messages += 1;
        self.plain += plain as u64;
        self.deflated += frame.payload_len() as u64;
    }
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
pub(crate) struct ResultLabel {
    pub(crate) result: &'static str,
}

/// The server's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Handshakes refused before the upgrade, by reason.
    pub(crate) handshake_failures: Family<ReasonLabel, Counter>,
    /// WebSocket connections opened, by transport.
    pub(crate) connections_opened: Family<TransportLabel, Counter>,
    /// WebSocket connections closed, by transport, close code and cause.
    pub(crate) connections_closed: Family<Closed, Counter>,
    /// Open WebSocket connections, by transport.
    pub(crate) connections_active: Family<TransportLabel, Gauge<i64, AtomicI64>>,
    /// Protocol violations that failed a connection, by reason.
    pub(crate) protocol_errors: Family<ReasonLabel, Counter>,
    /// Commands that failed, by error code.
    pub(crate) command_errors: Family<ReasonLabel, Counter>,
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
    /// SSE and long-polling sessions that expired: no stream and no poll for the session
    /// timeout.
    pub(crate) sessions_expired: Counter<u64, AtomicU64>,
    /// Requests to an SSE or long-polling session refused, by reason.
    pub(crate) session_requests_refused: Family<ReasonLabel, Counter>,
    /// Requests for sessions of other nodes, forwarded to them through the broker.
    pub(crate) session_requests_forwarded: Counter<u64, AtomicU64>,
    /// Admin page logins refused: a wrong secret.
    pub(crate) admin_logins_refused: Counter<u64, AtomicU64>,
    /// Admin API requests with a valid session refused: a missing or wrong CSRF token.
    pub(crate) admin_csrf_refused: Counter<u64, AtomicU64>,
    /// Messages compressed with permessage-deflate, sent and received.
    pub(crate) deflated_messages: Family<DeflateMessageLabel, Counter>,
    /// Their bytes, before and after compression.
    pub(crate) deflated_bytes: Family<DeflateLabel, Counter>,
    /// Pushes compressed once to be shared by their subscribers (each counted once however
    /// many connections sent it, and also when it did not shrink and went out plain).
    pub(crate) deflate_shared_frames: Counter<u64, AtomicU64>,
    /// WebSocket connections open with permessage-deflate negotiated.
    pub(crate) deflate_connections: Gauge<i64, AtomicI64>,
    /// Connections holding a zlib stream between reads: only while a compressed message
    /// arrives in fragments, since no context is kept between messages.
    pub(crate) deflate_streams: Gauge<i64, AtomicI64>,
    /// Subscribes with a recovery position, by whether they recovered.
    pub(crate) recoveries: Family<ResultLabel, Counter>,
    /// Time from a publication reaching this node's hub to its hand-off to a subscriber's
    /// socket write.
    pub(crate) delivery_latency: Arc<LatencyHistogram>,
    /// Broker operations: latency and failures, by operation.
    pub(crate) broker: Arc<BrokerStats>,
    /// Calls to the application's backend: latency and outcomes, by hook.
    pub(crate) hooks: crate::hooks::HookMetrics,
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
            sessions_expired: Counter::default(),
            session_requests_refused: Family::default(),
            session_requests_forwarded: Counter::default(),
            admin_logins_refused: Counter::default(),
            admin_csrf_refused: Counter::default(),
            deflated_messages: Family::default(),
            deflated_bytes: Family::default(),
            deflate_shared_frames: Counter::default(),
            deflate_connections: Gauge::default(),
            deflate_streams: Gauge::default(),
            recoveries: Family::default(),
            delivery_latency: Arc::default(),
            broker: Arc::default(),
            hooks: crate::hooks::HookMetrics::default(),
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
            "http_sessions_expired",
            "SSE and long-polling sessions that expired with no stream and no poll",
            metrics.sessions_expired.clone(),
        );
        registry.register(
            "http_session_requests_refused",
            "Requests to SSE and long-polling sessions refused, by reason",
            metrics.session_requests_refused.clone(),
        );
        registry.register(
            "http_session_requests_forwarded",
            "Requests for SSE and long-polling sessions of other nodes, forwarded through the broker",
            metrics.session_requests_forwarded.clone(),
        );
        registry.register(
            "admin_logins_refused",
            "Admin page logins refused for a wrong secret",
            metrics.admin_logins_refused.clone(),
        );
        registry.register(
            "admin_requests_refused_csrf",
            "Admin API requests refused for a missing or wrong CSRF token",
            metrics.admin_csrf_refused.clone(),
        );
        registry.register(
            "deflate_messages",
            "WebSocket messages compressed with permessage-deflate, by direction and compressor \
             (connection or shared)",
            metrics.deflated_messages.clone(),
        );
        registry.register(
            "deflate_bytes",
            "Bytes of permessage-deflate messages, by direction and form (plain or deflated)",
            metrics.deflated_bytes.clone(),
        );
        registry.register(
            "deflate_shared_frames",
            "Pushes compressed once for all their permessage-deflate subscribers",
            metrics.deflate_shared_frames.clone(),
        );
        registry.register(
            "deflate_connections",
            "WebSocket connections with permessage-deflate negotiated",
            metrics.deflate_connections.clone(),
        );
        registry.register(
            "deflate_streams",
            "zlib streams held between reads (compressed messages arriving in fragments)",
            metrics.deflate_streams.clone(),
        );
        registry.register(
            "recoveries",
            "Subscribes with a recovery position, by result",
            metrics.recoveries.clone(),
        );
        registry.register(
            "hook_duration_seconds",
            "Time calls to the application's backend took, from sending to the whole answer, by \
             hook (calls that reached it)",
            metrics.hooks.latency.clone(),
        );
        registry.register(
            "hook_calls",
            "Calls to the application's backend by hook and outcome: allowed, refused, timeout, \
             unreachable, bad_status, malformed, paused",
            metrics.hooks.calls.clone(),
        );
        Self { registry, ..metrics }
    }

    /// Adds values read at each scrape (see `exposition`).
    pub(crate) fn collect(&mut self, collector: impl Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// Counts a handshake refused for `reason`.
    pub(crate) fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts what permessage-deflate did on a connection between two readings of its
    /// statistics (`before`, `after`): once per read or write batch, not per message.
    pub(crate) fn deflated(
        &self,
        before: switchboard_codec::DeflateStats,
        after: switchboard_codec::DeflateStats,
    ) {
        self.count_deflate(
            "sent",
            "connection",
            after.messages_compressed - before.messages_compressed,
            after.compressed_input_bytes - before.compressed_input_bytes,
            after.compressed_bytes - before.compressed_bytes,
        );
        self.count_deflate(
            "received",
            "connection",
            after.messages_inflated - before.messages_inflated,
            after.inflated_bytes - before.inflated_bytes,
            after.inflated_wire_bytes - before.inflated_wire_bytes,
        );
    }

    /// Counts the pushes a connection sent as shared compressed frames.
    pub(crate) fn shared_deflated(&self, shared: &SharedDeflate) {
        self.count_deflate("sent", "shared", shared.messages, shared.plain, shared.deflated);
    }

    /// Counts `messages` compressed messages of `plain` bytes that were `deflated` bytes on
    /// the wire.
    fn count_deflate(
        &self,
        direction: &'static str,
        compressor: &'static str,
        messages: u64,
        plain: u64,
        deflated: u64,
    ) {
        if messages == 0 {
            return;
        }
        let label = DeflateMessageLabel { direction, compressor };
        self.deflated_messages.get_or_create(&label).inc_by(messages);
        let label = |form| DeflateLabel { direction, form };
        self.deflated_bytes.get_or_create(&label("plain")).inc_by(plain);
        self.deflated_bytes.get_or_create(&label("deflated")).inc_by(deflated);
    }

    /// Counts `messages` sent with `bytes` of payload: once per batch, not per message.
    pub(crate) fn sent(&self, messages: u64, bytes: u64) {
        if messages > 0 {
            self.messages_out.inc_by(messages);
            self.bytes_out.inc_by(bytes);
        }
    }

    /// The exposition (OpenMetrics text).
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
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

    /// The sum in seconds, the count, and the per-bucket (not cumulative) counts by upper
    /// bound in seconds, the last one `+Inf`. The count is the sum of the buckets, so the
    /// two always agree however observations race with the scrape.
    pub(crate) fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, bucket)| {
                let le = LATENCY_BOUNDS_NANOS.get(i).map_or(f64::INFINITY, |&b| b as f64 / 1e9);
                (le, bucket.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
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
    pub(crate) const ALL: [Self; 7] = [
        Self::Subscribe,
        Self::Unsubscribe,
        Self::Publish,
        Self::History,
        Self::Join,
        Self::Leave,
        Self::Presence,
    ];

    pub(crate) fn as_str(self) -> &'static str {
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

    /// The latency of `op`.
    pub(crate) fn latency(&self, op: BrokerOp) -> &LatencyHistogram {
        &self.latency[op as usize]
    }

    /// How many `op` failed.
    pub(crate) fn errors(&self, op: BrokerOp) -> u64 {
        self.errors[op as usize].load(Ordering::Relaxed)
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
    fn renders_counters_in_one_encode() {
        let metrics = Metrics::new();
        metrics.handshake_failed("origin_not_allowed");
        metrics.handshake_failed("origin_not_allowed");
        let text = metrics.render();
        assert!(
            text.contains("switchboard_handshake_failures_total{reason=\"origin_not_allowed\"} 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }

    #[test]
    fn reads_resident_memory() {
        assert!(resident_memory_bytes() > 0);
    }
}
