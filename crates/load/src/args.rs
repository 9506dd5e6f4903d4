//! Command-line arguments of `switchboard bench`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// `switchboard bench <SCENARIO> [options]`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The four measurements.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Scenario {
    /// Round trips against an echo endpoint: messages per second, bytes per second, latency.
    Echo(EchoArgs),
    /// Subscribers on channels and one publisher: deliveries per second, end-to-end latency.
    Fanout(FanoutArgs),
    /// Open many connections at once: open rate, failures, server memory per connection.
    Connect(ConnectArgs),
    /// Open, (subscribe,) close, over and over: cycles per second, handshake latency.
    Churn(ChurnArgs),
}

impl Scenario {
    /// The options every scenario shares.
    pub fn common(&self) -> &CommonArgs {
        match self {
            Scenario::Echo(a) => &a.common,
            Scenario::Fanout(a) => &a.common,
            Scenario::Connect(a) => &a.common,
            Scenario::Churn(a) => &a.common,
        }
    }

    /// The scenario's name, as in the report's `scenario` key.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Echo(_) => "echo",
            Scenario::Fanout(_) => "fanout",
            Scenario::Connect(_) => "connect",
            Scenario::Churn(_) => "churn",
        }
    }
}

/// Options of every scenario.
#[derive(Clone, Debug, clap::Args)]
pub struct CommonArgs {
    /// WebSocket URL of the server (`ws://host:port/path?query`, or `wss://` over TLS: the
    /// TLS handshake then counts in connect and churn's opening times).
    #[arg(long)]
    pub url: String,
    /// PEM file of CA certificates to trust for wss:// (and https://) besides the built-in
    /// roots: a private CA, or the certificate `switchboard serve --dev-tls` writes.
    #[arg(long, value_name = "FILE", visible_alias = "cacert", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// Accept any server certificate for wss:// (and https://), checking only the
    /// handshake's signature. For benchmarks against a development certificate only: it
    /// gives up the protection TLS gives against whoever sits between client and server.
    #[arg(long)]
    pub insecure: bool,
    /// What to speak after the upgrade [default: switchboard when the URL path is /ws, else
    /// raw].
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    /// How subscribers (fanout) and held connections (connect) reach the server: a
    /// WebSocket at --url, or a session of the HTTP transports (`GET /sse`, or `POST /poll`
    /// then `GET /poll`; commands by `POST /session`) on --url's host and port
    /// (`docs/transports.md`). The fanout publisher keeps to --publish-via.
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    pub transport: Transport,
    /// OS processes to spread the connections over (each process opens at most about 20,000
    /// sockets, the open-files limit).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub processes: u32,
    /// Source addresses to bind outgoing sockets to, round-robin: a list
    /// (`127.0.0.1,127.0.0.2`) or a count (`8`: 127.0.0.1 to 127.0.0.8), each address adding
    /// its own range of ephemeral ports.
    #[arg(long, value_parser = parse_local_addrs)]
    pub local_addrs: Option<LocalAddrs>,
    /// Echo only: run this long before measuring [default: 1s with --duration, else 0s].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Offer permessage-deflate (RFC 7692) on every WebSocket and inflate what the server
    /// compresses; a connection the server answers without it fails
    /// (`deflate_declined`). Commands are sent uncompressed.
    #[arg(long)]
    pub compression: bool,
    /// A JWT sent as `Authorization: Bearer` on every upgrade request.
    #[arg(long, env = "SWITCHBOARD_BENCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The server's process id: report its CPU use over the measured period and its RSS.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Prefix of the channel names (`chat:bench-0`, `chat:bench-1`, ...). The default is in
    /// the `chat` namespace, which a server with the built-in configuration opens to
    /// anonymous subscribers and publishers; a server configured for benchmarks (an open
    /// namespace without history or presence, `docs/benchmarks.md`) takes its own, such as
    /// `--channel-prefix bench:`.
    #[arg(long, default_value = "chat:bench-")]
    pub channel_prefix: String,
    /// Most connections being opened at once (in all processes together); for churn with
    /// --rate 0, the number of cycles under way at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Give up on a connection whose handshake (and subscribe) takes longer.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Print exactly one JSON object on standard output instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Internal: this process is worker I of N, driven over standard input and output.
    #[arg(long, hide = true, value_parser = parse_worker)]
    pub worker: Option<WorkerId>,
}

/// `switchboard bench echo`.
#[derive(Clone, Debug, clap::Args)]
pub struct EchoArgs {
    /// Options of every scenario.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections, each with its own messages in flight.
    #[arg(long, default_value_t = 1)]
    pub connections: u64,
    /// Messages each connection sends (ignored with --duration).
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Payload bytes of each message.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Messages each connection keeps in flight.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub in_flight: u64,
    /// Run for this long (after --warmup) instead of a number of messages.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Send text frames instead of binary ones.
    #[arg(long)]
    pub text: bool,
}

/// `switchboard bench fanout`.
#[derive(Clone, Debug, clap::Args)]
pub struct FanoutArgs {
    /// Options of every scenario.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Subscriber connections, spread round-robin over the channels.
    #[arg(long, default_value_t = 100)]
    pub subscribers: u64,
    /// Channels (`<prefix>0` to `<prefix>K-1`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub channels: u64,
    /// Publishes per second in total, round-robin over the channels; 0: as fast as the
    /// publisher can go with at most --in-flight unacknowledged.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// Bytes of each publication's payload (a JSON object carrying its send time).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to wait for the last deliveries after the last publish.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Publishes awaiting their acknowledgement at most, with --rate 0.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub in_flight: u64,
    /// Publish over one extra WebSocket connection, or to the HTTP API.
    #[arg(long, value_enum, default_value_t = PublishVia::Ws)]
    pub publish_via: PublishVia,
    /// Base URL of the HTTP API, `http://` or `https://` [default: http://<host:port of
    /// --url>, https:// for a wss:// --url].
    #[arg(long)]
    pub api_url: Option<String>,
    /// The server's API key, for --publish-via http.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// `switchboard bench connect`.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectArgs {
    /// Options of every scenario.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub connections: u64,
    /// Subscribe each connection to a channel (switchboard protocol).
    #[arg(long)]
    pub subscribe: bool,
    /// Channels to spread the subscriptions over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub channels: u64,
    /// How long to hold the connections open before measuring memory and closing them.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub hold: Duration,
}

/// `switchboard bench churn`.
#[derive(Clone, Debug, clap::Args)]
pub struct ChurnArgs {
    /// Options of every scenario.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections opened per second in total; 0: as fast as --concurrency allows.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// How long to open new connections.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Subscribe each connection to a channel and wait for the reply before closing.
    #[arg(long)]
    pub subscribe: bool,
    /// Channels to spread the subscriptions over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub channels: u64,
}

/// What the client speaks once the WebSocket is open.
#[derive(Clone, Copy, Debug, Eq, PartialEq, clap::ValueEnum)]
pub enum Protocol {
    /// Switchboard's JSON protocol (`docs/protocol.md`): subscribe, publish, publication.
    Switchboard,
    /// A plain echo or broadcast endpoint: every message is payload.
    Raw,
    /// Engine.IO v4 over WebSocket with Socket.IO packets (`echo`, `publish`, `message`).
    Socketio,
}

impl Protocol {
    /// The protocol's name, as in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Switchboard => "switchboard",
            Protocol::Raw => "raw",
            Protocol::Socketio => "socketio",
        }
    }
}

/// How a connection reaches the server.
#[derive(Clone, Copy, Debug, Eq, PartialEq, clap::ValueEnum)]
pub enum Transport {
    /// A WebSocket (`GET /ws`, upgraded).
    Ws,
    /// Server-Sent Events: the `GET /sse` event stream down, `POST /session` up.
    Sse,
    /// Long-polling: `GET /poll` batches down, `POST /session` up.
    Longpoll,
}

impl Transport {
    /// The transport's name, as in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::Longpoll => "longpoll",
        }
    }
}

/// How fanout publishes.
#[derive(Clone, Copy, Debug, Eq, PartialEq, clap::ValueEnum)]
pub enum PublishVia {
    /// `publish` commands (or the protocol's equivalent) on one extra WebSocket connection.
    Ws,
    /// `POST /api/publish` on one keep-alive HTTP/1.1 connection, pipelined.
    Http,
}

/// Source addresses for outgoing sockets.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LocalAddrs(pub Vec<IpAddr>);

/// Which share of the work a worker process does: worker `index` of `count`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct WorkerId {
    /// This worker, from 0 (the parent) to `count - 1`.
    pub index: u32,
    /// Processes in all.
    pub count: u32,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (for example 500ms, 5s, 2m)"))
}

fn parse_local_addrs(s: &str) -> Result<LocalAddrs, String> {
    if let Ok(count) = u8::from_str(s) {
        if count == 0 {
            return Err("the count must be 1 to 255".to_owned());
        }
        return Ok(LocalAddrs(
            (1..=count).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect(),
        ));
    }
    s.split(',')
        .map(|a| a.trim().parse::<IpAddr>().map_err(|e| format!("{a:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(LocalAddrs)
}

fn parse_worker(s: &str) -> Result<WorkerId, String> {
    let (index, count) = s.split_once('/').ok_or("expected I/N")?;
    let index = index.parse::<u32>().map_err(|e| e.to_string())?;
    let count = count.parse::<u32>().map_err(|e| e.to_string())?;
    if index >= count {
        return Err(format!("worker {index} of {count}"));
    }
    Ok(WorkerId { index, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addrs_count_form_counts_from_127_0_0_1() {
        let addrs = parse_local_addrs("3").expect("valid");
        assert_eq!(addrs.0.len(), 3);
        assert_eq!(addrs.0[2], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    }

    #[test]
    fn local_addrs_list_form_keeps_order() {
        let addrs = parse_local_addrs("127.0.0.5, 127.0.0.2").expect("valid");
        assert_eq!(addrs.0[0], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)));
        assert!(parse_local_addrs("0").is_err());
        assert!(parse_local_addrs("nope").is_err());
    }

    #[test]
    fn worker_id_is_index_over_count() {
        assert_eq!(parse_worker("1/4"), Ok(WorkerId { index: 1, count: 4 }));
        assert!(parse_worker("4/4").is_err());
        assert!(parse_worker("1").is_err());
    }
}
