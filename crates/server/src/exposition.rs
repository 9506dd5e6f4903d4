//! What `/metrics` reads at scrape time, as collectors of the metrics registry: values the
//! server keeps anyway (hub sizes, limiter counters, broker usage, memory) and the
//! lock-free latency histograms. The exposition is then one `encode` of the registry.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::limits::{Limiter, Reason};
use crate::metrics::{BrokerOp, BrokerStats, LatencyHistogram, Metrics, resident_memory_bytes};
use crate::node::Node;

/// Registers what `/metrics` reads at scrape time: the latency histograms of `metrics`, and
/// the state of `node` and `limits`.
pub(crate) fn register(metrics: &mut Metrics, node: Arc<Node>, limits: Arc<Limiter>) {
    let latency = LatencyCollector {
        delivery: Arc::clone(&metrics.delivery_latency),
        broker: Arc::clone(&metrics.broker),
    };
    metrics.collect(latency);
    metrics.collect(NodeCollector { node, limits });
}

/// The node's and the limiter's state, sampled at each scrape.
#[derive(Debug)]
struct NodeCollector {
    node: Arc<Node>,
    limits: Arc<Limiter>,
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let node = &self.node;
        let hub = &node.hub;
        gauge(
            &mut encoder,
            "channels",
            "Channels with subscribers on this node",
            hub.channel_count(),
        )?;
        gauge(
            &mut encoder,
            "subscriptions",
            "Subscriptions on this node",
            hub.subscription_count(),
        )?;
        gauge(&mut encoder, "hub_connections", "Connections on /ws", node.connection_count())?;
        let slots = self.limits.connections();
        let help = "WebSocket connections counted by the connection limits";
        gauge(&mut encoder, "websocket_slots", help, slots)?;
        let help = "Resident memory of the process";
        gauge(&mut encoder, "process_resident_memory_bytes", help, resident_memory_bytes())?;
        let help = "Publications queued to subscribers on this node, one per subscriber";
        counter(&mut encoder, "deliveries", help, node.deliveries())?;
        let help = "Requests and commands refused by a limit, by reason.";
        let mut family =
            encoder.encode_descriptor("rate_limited", help, None, MetricType::Counter)?;
        for reason in Reason::ALL {
            let labels = [("reason", reason.as_str())];
            let sample = ConstCounter::new(self.limits.rejections(reason));
            sample.encode(family.encode_family(&labels)?)?;
        }
        let Some(usage) = node.broker.usage() else { return Ok(()) };
        let help =
            "Estimated memory held by the in-memory broker's history (bounded by history_memory)";
        gauge(&mut encoder, "broker_history_bytes", help, usage.history_bytes)?;
        let help = "Channels holding state in the in-memory broker (bounded by max_channels)";
        gauge(&mut encoder, "broker_channels", help, usage.channels)?;
        let help = "Publications dropped from history to stay within history_memory";
        counter(&mut encoder, "broker_history_evictions", help, usage.evicted_publications)?;
        let help = "Idle channels forgotten to make room for new ones at max_channels";
        counter(&mut encoder, "broker_channel_evictions", help, usage.evicted_channels)?;
        let help = "Commands and API calls refused with unavailable because max_channels were \
                    all in use";
        counter(&mut encoder, "broker_channel_limit_refusals", help, usage.refused_channels)
    }
}

/// The latency histograms: delivery, and broker operations with their failures.
#[derive(Debug)]
struct LatencyCollector {
    delivery: Arc<LatencyHistogram>,
    broker: Arc<BrokerStats>,
}

impl Collector for LatencyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let help = "Time from a publication reaching this node's hub (a local publish, or the \
                    broker's pub/sub) to its hand-off to a subscriber's socket write.";
        let mut family = encoder.encode_descriptor(
            "delivery_latency_seconds",
            help,
            None,
            MetricType::Histogram,
        )?;
        let (sum, count, buckets) = self.delivery.snapshot();
        family.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;

        let help = "Time broker operations took (for Redis: round trips and scripts), by \
                    operation.";
        let mut family = encoder.encode_descriptor(
            "broker_latency_seconds",
            help,
            None,
            MetricType::Histogram,
        )?;
        for op in BrokerOp::ALL {
            let (sum, count, buckets) = self.broker.latency(op).snapshot();
            let labels = [("op", op.as_str())];
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        let help = "Broker operations that failed, by operation.";
        let mut family =
            encoder.encode_descriptor("broker_errors", help, None, MetricType::Counter)?;
        for op in BrokerOp::ALL {
            let labels = [("op", op.as_str())];
            ConstCounter::new(self.broker.errors(op)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// One unlabelled gauge; `help` gets the full stop the registry adds to its own.
fn gauge<N>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error>
where
    u64: TryFrom<N>,
{
    let value = u64::try_from(value).unwrap_or(u64::MAX);
    let help = format!("{help}.");
    let metric = encoder.encode_descriptor(name, &help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

/// One unlabelled counter (exposed with the `_total` suffix).
fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let help = format!("{help}.");
    let metric = encoder.encode_descriptor(name, &help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::LatencyBatch;
    use std::time::Duration;
    use switchboard_broker::MemoryBroker;

    /// Metrics with a fresh node and limiter registered.
    fn registered() -> (Metrics, Arc<Limiter>) {
        let mut metrics = Metrics::new();
        let node = Arc::new(Node::new(Arc::new(MemoryBroker::new()), &crate::Config::default()));
        let limits = Arc::new(Limiter::default());
        register(&mut metrics, node, Arc::clone(&limits));
        (metrics, limits)
    }

    #[test]
    fn histograms_have_cumulative_buckets_in_seconds() {
        let (metrics, _) = registered();
        let mut batch = LatencyBatch::default();
        batch.observe(Duration::from_micros(200));
        batch.observe(Duration::from_secs(9));
        metrics.delivery_latency.add(&batch);
        let text = metrics.render();
        let bucket =
            |le: &str| format!("switchboard_delivery_latency_seconds_bucket{{le=\"{le}\"}}");
        assert!(text.contains(&format!("{} 0\n", bucket("0.0001"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("0.00025"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("1.0"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", bucket("5.0"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", bucket("+Inf"))), "{text}");
        assert!(text.contains("switchboard_delivery_latency_seconds_count 2\n"), "{text}");
        assert_eq!(text.matches("# TYPE switchboard_broker_latency_seconds histogram").count(), 1);
        let publish = "switchboard_broker_latency_seconds_bucket{le=\"0.0001\",op=\"publish\"} 0";
        assert!(text.contains(publish), "{text}");
    }

    #[test]
    fn scrape_time_values_are_in_the_one_encode() {
        let (metrics, limits) = registered();
        for _ in 0..4 {
            limits.count(Reason::MessageRate);
        }
        metrics.handshake_failed("origin_not_allowed");
        let text = metrics.render();
        assert!(text.contains("switchboard_rate_limited_total{reason=\"message_rate\"} 4\n"));
        assert!(text.contains("# TYPE switchboard_rate_limited counter\n"), "{text}");
        assert!(text.contains("switchboard_channels 0\n"), "{text}");
        assert!(
            text.contains("# HELP switchboard_channels Channels with subscribers on this node.\n")
        );
        assert!(text.contains("# TYPE switchboard_channels gauge\n"), "{text}");
        assert!(text.contains("switchboard_deliveries_total 0\n"), "{text}");
        // The in-memory broker's usage.
        assert!(text.contains("switchboard_broker_channels 0\n"), "{text}");
        assert!(
            text.contains("switchboard_handshake_failures_total{reason=\"origin_not_allowed\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("switchboard_broker_channel_limit_refusals_total 0\n# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }
}
