//! Counters, latency histograms and CPU and memory readings, and how they merge across
//! worker processes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};

/// One worker's share of a result, sent from a child to the parent as a JSON line.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct Partial {
    /// What was counted: echoes, deliveries, open connections or cycles.
    pub(crate) count: u64,
    /// Payload bytes received (echo).
    pub(crate) bytes: u64,
    /// Connections that failed (connect, churn).
    pub(crate) failures: u64,
    /// Publishes sent per channel (fanout, parent only).
    pub(crate) publishes: Vec<u64>,
    /// Subscribers ready per channel (fanout).
    pub(crate) subscribed: Vec<u64>,
    /// Errors by kind.
    pub(crate) errors: BTreeMap<String, u64>,
    /// Latencies in nanoseconds, V2-serialized and base64-encoded.
    pub(crate) latency: String,
    /// Length of this worker's measured period, in seconds.
    pub(crate) window_s: f64,
    /// CPU seconds this worker used in its measured period.
    pub(crate) cpu_s: f64,
    /// Unix nanoseconds of the first event of the measured period (0: none).
    pub(crate) first_ns: u64,
    /// Unix nanoseconds of the last event of the measured period (0: none).
    pub(crate) last_ns: u64,
}

impl Partial {
    /// Adds `other` into `self`.
    pub(crate) fn merge(&mut self, other: Partial) -> Result<(), String> {
        self.count += other.count;
        self.bytes += other.bytes;
        self.failures += other.failures;
        add_vec(&mut self.publishes, &other.publishes);
        add_vec(&mut self.subscribed, &other.subscribed);
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        let mut hist = decode_histogram(&self.latency)?;
        hist.add(decode_histogram(&other.latency)?).map_err(|e| format!("histogram: {e:?}"))?;
        self.latency = encode_histogram(&hist);
        self.window_s = self.window_s.max(other.window_s);
        self.cpu_s += other.cpu_s;
        self.first_ns = match (self.first_ns, other.first_ns) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        self.last_ns = self.last_ns.max(other.last_ns);
        Ok(())
    }

    /// Counts one error of `kind`.
    pub(crate) fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

fn add_vec(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// A fresh latency histogram in nanoseconds: 3 significant figures (0.1% resolution at
/// every magnitude) from 1 ns to an hour, where `saturating_record` clamps.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
        .unwrap_or_else(|_| unreachable!("constant bounds are valid"))
}

/// Base64 of the V2 serialization.
pub(crate) fn encode_histogram(hist: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serializing into a Vec only fails for histograms too large to describe, which
    // auto-resizing nanosecond histograms never are; an empty string then decodes as empty.
    if V2Serializer::new().serialize(hist, &mut bytes).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of [`encode_histogram`]; an empty string is an empty histogram.
pub(crate) fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    if text.is_empty() {
        return Ok(histogram());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("histogram base64: {e}"))?;
    let hist: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("histogram: {e:?}"))?;
    let mut merged = histogram();
    merged.add(hist).map_err(|e| format!("histogram: {e:?}"))?;
    Ok(merged)
}

/// `{p50, p90, p99, p999, max, mean}` in microseconds, from nanoseconds.
pub(crate) fn percentiles(hist: &Histogram<u64>) -> serde_json::Value {
    let us = |ns: f64| (ns / 100.0).round() / 10.0;
    if hist.is_empty() {
        return serde_json::json!({
            "p50": null, "p90": null, "p99": null, "p999": null, "max": null, "mean": null,
        });
    }
    serde_json::json!({
        "p50": us(hist.value_at_quantile(0.50) as f64),
        "p90": us(hist.value_at_quantile(0.90) as f64),
        "p99": us(hist.value_at_quantile(0.99) as f64),
        "p999": us(hist.value_at_quantile(0.999) as f64),
        "max": us(hist.max() as f64),
        "mean": us(hist.mean()),
    })
}

/// Now, in nanoseconds since the Unix epoch: the clock every process shares.
pub(crate) fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// CPU seconds (user + system) used so far by process `pid` (`None`: this process), from
/// `/proc/<pid>/stat`.
pub(crate) fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // proc(5): the command name (field 2) is in parentheses and may contain spaces; utime
    // and stime are fields 14 and 15, in clock ticks.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS)
}

/// Resident set size of process `pid` in bytes (`VmRSS` in `/proc/<pid>/status`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A measured period: wall time and CPU time of this process and, when asked, the server's.
#[derive(Debug)]
pub(crate) struct Meter {
    server: Option<u32>,
    start: Option<(Instant, f64, Option<f64>)>,
    end: Option<(Instant, f64, Option<f64>)>,
}

impl Meter {
    /// A meter that also reads the CPU time of `server`.
    pub(crate) fn new(server: Option<u32>) -> Self {
        Self { server, start: None, end: None }
    }

    /// Starts the measured period.
    pub(crate) fn begin(&mut self) {
        self.start = Some(self.sample());
        self.end = None;
    }

    /// Ends the measured period (the first call counts).
    pub(crate) fn end(&mut self) {
        if self.end.is_none() {
            self.end = Some(self.sample());
        }
    }

    fn sample(&self) -> (Instant, f64, Option<f64>) {
        (
            Instant::now(),
            cpu_seconds(None).unwrap_or(0.0),
            self.server.and_then(|p| cpu_seconds(Some(p))),
        )
    }

    /// Wall time of the period.
    pub(crate) fn window(&self) -> Duration {
        match (self.start, self.end) {
            (Some(s), Some(e)) => e.0 - s.0,
            (Some(s), None) => s.0.elapsed(),
            _ => Duration::ZERO,
        }
    }

    /// This process's CPU seconds in the period.
    pub(crate) fn cpu(&self) -> f64 {
        match (self.start, self.end) {
            (Some(s), Some(e)) => (e.1 - s.1).max(0.0),
            _ => 0.0,
        }
    }

    /// The server's CPU seconds in the period.
    pub(crate) fn server_cpu(&self) -> Option<f64> {
        match (self.start, self.end) {
            (Some((_, _, Some(s))), Some((_, _, Some(e)))) => Some((e - s).max(0.0)),
            _ => None,
        }
    }
}

/// The largest latency recorded as itself: an hour, in nanoseconds.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// `USER_HZ`: the unit of the times in `/proc/<pid>/stat`, 100 on every Linux
/// architecture (`sysconf(_SC_CLK_TCK)`).
const CLOCK_TICKS: f64 = 100.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_the_wire_and_merge() {
        let mut a = Partial::default();
        let mut hist = histogram();
        hist.record(1_000).expect("in range");
        hist.record(5_000_000_000).expect("in range");
        a.latency = encode_histogram(&hist);
        a.count = 2;
        a.subscribed = vec![1, 2];
        let mut b = Partial { count: 3, subscribed: vec![4], ..Partial::default() };
        b.error("eof".to_owned());
        let wire = serde_json::to_string(&a).expect("serializes");
        b.merge(serde_json::from_str(&wire).expect("deserializes")).expect("merges");
        assert_eq!(b.count, 5);
        assert_eq!(b.subscribed, vec![5, 2]);
        let merged = decode_histogram(&b.latency).expect("decodes");
        assert_eq!(merged.len(), 2);
        assert!(merged.max() >= 4_990_000_000);
    }

    #[test]
    fn reads_own_cpu_and_memory() {
        assert!(cpu_seconds(None).is_some());
        assert!(rss_bytes(std::process::id()).is_some_and(|rss| rss > 0));
    }
}
