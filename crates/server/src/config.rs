//! Server configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use switchboard_auth::{TicketConfig, Verifier};

use switchboard_codec::{HandshakeLimits, Limits};

/// Everything the server needs to run. Plain data with working defaults: `Config::default()`
/// serves `/echo` and `/healthz` on `127.0.0.1:8080`. These `Default` impls are the only
/// place the defaults are written: the `switchboard` binary's flags, file keys and
/// `switchboard config default` all start from them.
///
/// `Debug` shows whether an API key is set, never the key (see [`Secret`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`: loopback only until an operator
    /// chooses to expose the server.
    pub listen: SocketAddr,
    /// Serve `/echo`, which echoes every text and binary message. Default on: it is what
    /// conformance suites and load tools talk to. Turn off in production.
    pub echo: bool,
    /// Send a WebSocket ping this often. Default 25 s, under the 30–60 s idle cut-off of
    /// common proxies. `None` sends no pings.
    pub ping_interval: Option<Duration>,
    /// Close a connection whose pong has not come this long after a ping. Default 10 s.
    pub pong_timeout: Duration,
    /// Close a connection from which nothing at all has arrived for this long. Default
    /// 120 s. With pings on, a live peer's pongs keep it open.
    pub idle_timeout: Option<Duration>,
    /// Drop a connection that has not sent a complete request head this long after it
    /// connected (slowloris). Default 10 s.
    pub handshake_timeout: Duration,
    /// After sending a close frame, wait this long for the peer's. Default 5 s. Also how
    /// long a slow consumer whose socket is blocked gets to take its `disconnect` push and
    /// close frame before it is dropped.
    pub close_timeout: Duration,
    /// Drop a connection whose socket accepts no bytes for this long while frames are
    /// waiting (a peer that stopped reading). Default 10 s.
    pub write_timeout: Duration,
    /// On shutdown, how long connections get to finish their close handshakes before the
    /// process stops waiting. Default 10 s.
    pub shutdown_timeout: Duration,
    /// On shutdown, the time over which open `/ws` connections are closed with 4003
    /// (`draining`, advice `reconnect`), in evenly spaced batches, so that their clients do
    /// not all reconnect to the remaining nodes in the same instant. Default 10 s: short
    /// enough for a rolling restart, long enough to spread tens of thousands of reconnects.
    /// The process waits for up to this plus [`Config::shutdown_timeout`] (size a
    /// supervisor's stop timeout above it). `/readyz` answers 503 and upgrades are refused
    /// from the start of the window.
    pub drain_window: Duration,
    /// Frame and message size limits for WebSocket connections. Default 16 MiB each.
    pub limits: Limits,
    /// Request head limits. Default 8 KiB and 64 headers.
    pub handshake_limits: HandshakeLimits,
    /// Channels, namespaces and per-connection limits of the `/ws` endpoint.
    pub hub: HubOptions,
    /// Credentials: JWT verification, token sources, tickets, first-message mode.
    pub auth: AuthOptions,
    /// Which browser origins may open WebSockets.
    pub origins: OriginOptions,
    /// Serve HTTPS and WSS instead of plain HTTP. Default `None`.
    pub tls: Option<crate::TlsSource>,
    /// Connections in total and per client address, handshakes per address, commands and
    /// bytes per `/ws` connection and per address, `/api/` requests without the API key per
    /// address.
    pub rate_limits: LimitOptions,
    /// The key application backends send as `Authorization: apikey <key>` to use the HTTP
    /// API under `/api/` (see `docs/api.md`). Default `None`: the API is disabled and
    /// answers 403, so a server started without configuration cannot be driven by anyone
    /// who reaches its port. An empty key counts as none. Use a long random key (32 bytes
    /// or more): it is the only thing between the network and publishing to every channel.
    pub api_key: Option<Secret>,
    /// The secret operators log in to the admin page at `/admin` with (`docs/admin.md`).
    /// Default `None`: the page takes the API key instead, and is off (404) when neither is
    /// set. An empty secret counts as none. A separate secret lets people use the page
    /// without holding the key backends use; either grants the same powers as the API.
    pub admin_secret: Option<Secret>,
    /// Which transports clients may use, and the timings of the HTTP ones (Server-Sent
    /// Events and long-polling, `docs/transports.md`).
    pub transports: TransportOptions,
    /// permessage-deflate (RFC 7692) on the WebSocket endpoints.
    pub compression: CompressionOptions,
    /// The application backend's HTTP endpoints the server asks (`docs/hooks.md`), by name;
    /// namespaces name theirs in [`NamespaceOptions::subscribe_proxy`] and
    /// [`NamespaceOptions::publish_proxy`]. Default none.
    pub proxies: BTreeMap<String, ProxyEndpoint>,
    /// The proxy `rpc` commands are sent to. Default `None`: `rpc` is refused.
    pub rpc_proxy: Option<String>,
    /// The proxy that says who a connection without credentials is, at its opening
    /// handshake (`docs/hooks.md`). Default `None`.
    pub connect_proxy: Option<String>,
}

/// One HTTP endpoint of the application's backend: the server POSTs JSON to `url` and waits
/// at most `timeout` for the answer (`docs/hooks.md`).
///
/// With serde: a `[proxies.NAME]` table, `url` required, `timeout` a duration such as `"2s"`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[non_exhaustive]
#[serde(deny_unknown_fields)]
pub struct ProxyEndpoint {
    /// `http://` or `https://` (trusted by the built-in web roots).
    pub url: String,
    /// How long an answer may take. Default 3 seconds.
    #[serde(with = "duration_str", default = "ProxyEndpoint::default_timeout")]
    pub timeout: Duration,
    /// Headers of the opening request passed on to the connect hook (`cookie`, say).
    /// Default none.
    #[serde(default)]
    pub forward_headers: Vec<String>,
}

impl ProxyEndpoint {
    /// An endpoint at `url` with the default timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), timeout: Self::default_timeout(), forward_headers: Vec::new() }
    }

    fn default_timeout() -> Duration {
        Duration::from_secs(3)
    }
}

/// permessage-deflate (RFC 7692): which WebSocket endpoints negotiate it, and how they
/// compress. The server's answer always includes `server_no_context_takeover` and
/// `client_no_context_takeover`: no compression state outlives a message.
///
/// With serde: the `[compression]` table of a configuration file, every key optional.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[non_exhaustive]
#[serde(default, deny_unknown_fields)]
pub struct CompressionOptions {
    /// Negotiate it on `/ws` when the client offers it. Default on: a publication is
    /// compressed once per format and the one frame is sent to every subscriber that
    /// negotiated it; namespaces can opt out
    /// ([`NamespaceOptions::compression`]).
    pub ws: bool,
    /// Negotiate it on `/echo` when the client offers it. Default off, so that the
    /// engine's raw figures stay comparable; on for the Autobahn compression cases.
    pub echo: bool,
    /// zlib level, 0 (store) to 9 (smallest). Default 1: most of the gain on JSON for a
    /// fraction of the CPU of higher levels.
    pub level: u32,
    /// Messages shorter than this many bytes go uncompressed. Default 128.
    pub min_size: usize,
}

impl Default for CompressionOptions {
    fn default() -> Self {
        Self { ws: true, echo: false, level: 1, min_size: 128 }
    }
}

impl CompressionOptions {
    /// The codec's settings for an endpoint that negotiates it.
    pub(crate) fn deflate(&self) -> switchboard_codec::DeflateConfig {
        let mut config = switchboard_codec::DeflateConfig::default();
        config.enabled = true;
        config.level = self.level.min(9);
        config.min_size = self.min_size;
        // No context kept between messages in either direction: the (de)compressor is freed
        // after each message, so an idle connection holds no zlib state (a compressor with
        // a 32 KiB window holds about 256 KiB), and one compressed frame can be shared by
        // every connection a broadcast goes to.
        config.server_no_context_takeover = true;
        config.client_no_context_takeover = true;
        config
    }
}

/// A way for clients to reach the hub.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `/ws`: one WebSocket.
    #[serde(rename = "websocket")]
    WebSocket,
    /// `/sse`: a Server-Sent Events stream down, `POST /session` up.
    Sse,
    /// `/poll`: HTTP long-polling down, `POST /session` up.
    #[serde(rename = "longpoll")]
    LongPoll,
}

impl Transport {
    /// The transport's name, as in metrics labels and `--disable-transport`.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Sse => "sse",
            Self::LongPoll => "longpoll",
        }
    }
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "websocket" | "ws" => Ok(Self::WebSocket),
            "sse" => Ok(Self::Sse),
            "longpoll" | "long-polling" => Ok(Self::LongPoll),
            _ => Err(format!("unknown transport {name:?}: use websocket, sse or longpoll")),
        }
    }
}

/// The transports clients may use and the timings of the HTTP ones.
///
/// With serde: the `[transports]` table of a configuration file, every key optional.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[non_exhaustive]
#[serde(default, deny_unknown_fields)]
pub struct TransportOptions {
    /// Transports turned off: their opening path answers 404 `transport_disabled`. Default
    /// none. Turning WebSocket off is how a deployment (or a test) makes clients fall back.
    pub disabled: Vec<Transport>,
    /// How long an SSE or long-polling session lives with no stream open and no poll
    /// waiting; then it leaves its channels and is freed. Default 30 s: an `EventSource`
    /// reconnects within a few seconds, a polling client within one round trip.
    #[serde(with = "duration_str")]
    pub session_timeout: Duration,
    /// How long a poll waits for something to send before it answers with an empty batch.
    /// Default 25 s, under the 30–60 s idle cut-off of common proxies.
    #[serde(with = "duration_str")]
    pub poll_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            disabled: Vec::new(),
            session_timeout: Duration::from_secs(30),
            poll_timeout: Duration::from_secs(25),
        }
    }
}

impl TransportOptions {
    /// Whether clients may use `transport`.
    pub fn allows(&self, transport: Transport) -> bool {
        !self.disabled.contains(&transport)
    }
}

/// Limits on what one client, or all of them, may cost the server. Each refusal is logged
/// at debug level with its reason and counted.
///
/// Per-address limits key IPv4 clients by address and IPv6 clients by /64 prefix: a host
/// picks its own interface identifier (RFC 4291 §2.5.1), so one host can hold any number
/// of addresses within its /64. Behind a reverse proxy or load balancer on another host,
/// every client shares the proxy's address: raise or turn off the per-address limits
/// there and let the proxy enforce its own (see [`LimitOptions::exempt_loopback`] for a
/// proxy on this host).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct LimitOptions {
    /// Most WebSocket connections (`/ws` and `/echo` together) open at once; past it the
    /// upgrade is refused with 503 and `Retry-After`. 0 for no limit. Default 100,000: a
    /// ceiling for floods and accidents, past what one default-sized node serves, so that
    /// excess connections fail at the door (where a load balancer can try another node)
    /// instead of exhausting file descriptors or memory once open. Size it to the machine.
    pub max_connections: usize,
    /// Most WebSocket connections open at once from one client address; past it the
    /// upgrade is refused with 429 and `Retry-After`. 0 for no limit. Default 1,000: one
    /// host cannot take the whole server, yet carrier-grade NATs, corporate proxies and
    /// campus networks put hundreds of real users behind one address, so the limit stays
    /// far above what one person opens.
    pub max_connections_per_ip: usize,
    /// Upgrade requests to `/ws` per client address, counted before any parsing or
    /// credential check; past it the request is refused with 429 and `Retry-After`.
    /// `None` for no limit. Default 20 a second in bursts of 50: a reconnecting page
    /// opens one or two, while a flood (each upgrade may verify a token signature) is
    /// throttled early. The cost: a whole office behind one NAT reconnecting at once is
    /// spread out by the refusals' `Retry-After` (a thousand clients take under a minute).
    /// `/echo`, for conformance suites and load tools that open hundreds of connections in
    /// a row, is not counted.
    pub handshake_rate: Option<Rate>,
    /// Client addresses whose allowances are remembered, in each per-address rate table
    /// (handshakes, `/ws` commands and bytes, `/api/` requests). Default 65,536 (a few MiB
    /// per table). An address whose allowance has refilled is forgotten first (it loses
    /// nothing); when a flood of distinct addresses fills a table anyway, arbitrary entries
    /// are dropped and those addresses start over with a full burst: no table grows past
    /// this, at the cost of leniency towards whoever controls that many addresses.
    pub max_tracked_ips: usize,
    /// Commands per second on one `/ws` connection; a command over it gets a
    /// `rate_limited` error reply (temporary) and is not carried out. `None` for no limit.
    /// Default 200 a second in bursts of 4,000: well above an interactive client (chat,
    /// cursors or game state at 60 Hz), so only a runaway or hostile client meets it,
    /// while the burst lets a client flush a backlog (resubscriptions and publishes
    /// queued while offline) at full speed. One connection can then hold only a small,
    /// bounded share of the server's command processing.
    pub message_rate: Option<Rate>,
    /// WebSocket message bytes per second on one `/ws` connection, counted with the
    /// command rate and refused the same way. `None` for no limit. Default 1 MiB a second
    /// in bursts of 16 MiB: 16 maximum-size (64 KiB) messages a second after a burst of
    /// 256, far more than a person types or a browser uploads through this protocol.
    /// A message larger than the burst costs the whole burst.
    pub byte_rate: Option<Rate>,
    /// Commands per second from one client address, shared by all its `/ws` connections
    /// and checked with the connection's own rates (a command takes from all or none);
    /// refused the same way, counted as `address_message_rate`. Unlike the connection's
    /// allowance it is not refilled by reconnecting or by opening more connections. `None`
    /// for no limit. Default 1,000 a second in bursts of 8,000: five connections at their
    /// full rate, or a hundred people behind one NAT each sending ten commands a second;
    /// busier offices or a reverse proxy on another host need it raised or turned off.
    pub address_message_rate: Option<Rate>,
    /// WebSocket message bytes per second from one client address, shared by all its
    /// `/ws` connections like [`LimitOptions::address_message_rate`], counted as
    /// `address_byte_rate`. `None` for no limit. Default 2 MiB a second in bursts of
    /// 16 MiB: the burst equals one connection's, so a client that reconnects or opens
    /// many connections gets no more than one connection's burst and twice its sustained
    /// rate, while a NAT of a hundred users still has 20 KiB a second each.
    pub address_byte_rate: Option<Rate>,
    /// Requests to `/api/` without the API key (`POST /api/ticket` with a user's token,
    /// and every refused request: wrong or missing key, disabled API) per client address;
    /// past it the request is answered 429 with `Retry-After` before anything else is
    /// checked, and counted as `api_rate`. Requests with the API key are never counted or
    /// limited. `None` for no limit. Default 20 a second in bursts of 50, the handshake
    /// rate: a browser asks for one ticket per connection it opens, while a loop hoarding
    /// tickets or guessing keys is throttled.
    pub api_rate: Option<Rate>,
    /// Commands refused for rate in one streak before the connection is closed with 1008
    /// (policy violation, advice `backoff`), after a `disconnect` push. A streak is a run of
    /// refusals each less than a second after the previous one; a second without a
    /// refusal ends it, whether or not commands were accepted in between. Default 1,000:
    /// more than a well-behaved client can have in flight when the first `rate_limited`
    /// reply reaches it, so one that backs off is never closed, while one that ignores the
    /// replies costs at most a thousand of them before it is cut off. 0 closes at the first
    /// refusal.
    pub max_rejections: u32,
    /// Leave loopback clients (`127.0.0.0/8`, `::1`) out of the per-address limits
    /// (connections per address, handshake rate, command and byte rates per address, the
    /// `/api/` rate); the total and the per-connection rates still count them. Default
    /// on: a loopback peer is a reverse proxy or service-mesh sidecar on this host, which
    /// carries every user under one address and would otherwise cap the whole server at
    /// one address's share, or a local tool (tests, benchmarks, conformance suites). An
    /// attacker on loopback already runs on the machine. Turn off to limit local clients
    /// like remote ones.
    pub exempt_loopback: bool,
}

impl Default for LimitOptions {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            handshake_rate: Some(Rate::new(20, 50)),
            max_tracked_ips: 65_536,
            message_rate: Some(Rate::new(200, 4_000)),
            byte_rate: Some(Rate::new(1 << 20, 16 << 20)),
            address_message_rate: Some(Rate::new(1_000, 8_000)),
            address_byte_rate: Some(Rate::new(2 << 20, 16 << 20)),
            api_rate: Some(Rate::new(20, 50)),
            max_rejections: 1_000,
            exempt_loopback: true,
        }
    }
}

/// A token bucket: `per_second` units refill a bucket that holds `burst`; each message
/// or request takes its cost. 0 counts as 1 in either field.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Rate {
    /// Units per second, sustained.
    pub per_second: u64,
    /// Units that may be used at once after a quiet period.
    pub burst: u64,
}

impl Rate {
    /// `per_second` sustained, in bursts of up to `burst`.
    pub const fn new(per_second: u64, burst: u64) -> Self {
        Self { per_second, burst }
    }
}

/// Options of the real-time hub on `/ws`.
///
/// With serde: the `[hub]` table of a configuration file, every key optional (a missing
/// one keeps its default) and unknown keys refused. The namespaces are not part of it: a
/// file holds them in a table of their own.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[non_exhaustive]
#[serde(default, deny_unknown_fields)]
pub struct HubOptions {
    /// Namespaces by name; `""` is the default namespace, for channels without `:`.
    /// A channel in a namespace missing here is refused with `unknown_namespace`.
    /// Default: the default namespace, for authenticated users only; `chat`, where
    /// anonymous connections may subscribe and publish (for trying things out); and
    /// `ticker`, the demo's price feed, which anonymous connections may read but only the
    /// server publishes to (history 50, no presence); `board`, the demo whiteboard's strokes,
    /// where anonymous connections may publish (history 1,000 for an hour, so that a late
    /// joiner sees a drawing); and `cursor`, its live pointers, where anonymous connections may publish
    /// (no history, no presence).
    #[serde(skip)]
    pub namespaces: BTreeMap<String, NamespaceOptions>,
    /// Most channels one connection may subscribe to. Default 128.
    pub max_subscriptions: usize,
    /// Bytes that may wait in one connection's outbound queue; past this the connection
    /// is a slow consumer and is closed with 4001. Default 1 MiB: a few seconds of a busy
    /// feed, small enough that 10,000 stalled clients cannot exhaust memory. Replies that
    /// carry publications (`history`, recovery) are cut into pages of a quarter of it.
    pub outbound_queue_bytes: usize,
    /// Largest WebSocket message a client may send on `/ws`. Default 64 KiB.
    pub max_message_size: usize,
    /// Hub shards: publishes on channels in different shards never contend. Default 64.
    pub shards: usize,
    /// Bytes of history the in-memory broker holds for all channels together, estimated
    /// from what each publication costs decoded in memory (often several times its wire
    /// size). Past it, the oldest publications of the least recently published channels
    /// are dropped: those channels keep their epoch and offsets, and a recovery that
    /// needed the dropped publications gets `recovered: false`. 0 keeps no history.
    /// Default 64 MiB: a small machine's share; raise it for long histories on many busy
    /// channels, at the cost of that much memory held for up to the history TTL. Without
    /// effect with an external broker (see `docs/scaling.md` for Redis).
    pub history_memory: usize,
    /// Channels the in-memory broker holds state for (a stream, subscriptions or
    /// presence). A new channel past it first makes the broker forget an idle one (no
    /// subscriber or presence on this node; its next use starts a new epoch); when all
    /// are in use, the command is refused with `unavailable` (temporary), and the HTTP API
    /// with 503. 0 for no limit. Default 65,536: far more than the hub's subscriptions
    /// reach on a small node, while publishing to a million distinct names cannot pin a
    /// million streams. Without effect with an external broker.
    pub max_channels: usize,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            namespaces: BTreeMap::from([
                (String::new(), NamespaceOptions::default()),
                (
                    "chat".to_owned(),
                    NamespaceOptions {
                        anonymous: Anonymous::Publish,
                        ..NamespaceOptions::default()
                    },
                ),
                (
                    "board".to_owned(),
                    NamespaceOptions {
                        history_size: 1000,
                        history_ttl: Duration::from_secs(3600),
                        anonymous: Anonymous::Publish,
                        ..NamespaceOptions::default()
                    },
                ),
                (
                    "cursor".to_owned(),
                    NamespaceOptions {
                        history_size: 0,
                        presence: false,
                        join_leave: false,
                        anonymous: Anonymous::Publish,
                        ..NamespaceOptions::default()
                    },
                ),
                (
                    "ticker".to_owned(),
                    NamespaceOptions {
                        history_size: 50,
                        presence: false,
                        join_leave: false,
                        allow_publish: false,
                        anonymous: Anonymous::Subscribe,
                        ..NamespaceOptions::default()
                    },
                ),
            ]),
            max_subscriptions: 128,
            outbound_queue_bytes: 1 << 20,
            max_message_size: 64 << 10,
            shards: 64,
            history_memory: 64 << 20,
            max_channels: 65_536,
        }
    }
}

/// What a namespace's channels do.
///
/// With serde: a `[namespaces.NAME]` table, every key optional, unknown keys refused,
/// `history_ttl` a duration such as `"5m"`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[non_exhaustive]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceOptions {
    /// Publications kept per channel for history and recovery. Default 100; 0 disables
    /// history (and recovery).
    pub history_size: usize,
    /// How long publications stay in history. Default 5 minutes: long enough to cover a
    /// laptop waking up or a phone changing networks.
    #[serde(with = "duration_str")]
    pub history_ttl: Duration,
    /// Keep a presence list (who is subscribed). Default on.
    pub presence: bool,
    /// Push join and leave events to subscribers. Default on.
    pub join_leave: bool,
    /// The most subscribers a channel may have on a node for its joins and leaves to be
    /// announced one by one there (`join` and `leave` pushes). On a larger channel each
    /// announcement would go to every member, so n members joining cost n² pushes: there
    /// they are summed instead, into one `presence_count` push per
    /// [`join_leave_interval`](Self::join_leave_interval) with the channel's presence
    /// count. Default 250; 0 sums them on every channel.
    pub join_leave_limit: usize,
    /// How often a channel past [`join_leave_limit`](Self::join_leave_limit) gets its
    /// `presence_count` push while members come and go. Default 1 second.
    #[serde(with = "duration_str")]
    pub join_leave_interval: Duration,
    /// Let clients publish (the HTTP API always may). Default on.
    pub allow_publish: bool,
    /// Most subscribers per channel on one node; 0 for no limit. Default 0.
    pub max_subscribers: usize,
    /// What connections without credentials may do here. Default [`Anonymous::Deny`]:
    /// channels are for authenticated users whose token grants them.
    pub anonymous: Anonymous,
    /// Compress this namespace's pushes for WebSocket connections that negotiated
    /// permessage-deflate (see [`CompressionOptions`]). Default on; turn it off for data
    /// that does not compress (images, already-compressed or encrypted payloads), where
    /// deflate only spends CPU.
    pub compression: bool,
    /// The proxy (a name in [`Config::proxies`]) that decides each client's `subscribe`
    /// here, after the namespace's own rules allowed it. Default none.
    pub subscribe_proxy: Option<String>,
    /// The proxy that allows, refuses or rewrites each client's `publish` here before it is
    /// stored and broadcast (the HTTP API's publications do not go through it). Default none.
    pub publish_proxy: Option<String>,
}

/// What anonymous connections may do in a namespace. With serde: `"deny"`, `"subscribe"`
/// or `"publish"`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Anonymous {
    /// Nothing.
    #[default]
    Deny,
    /// Subscribe, read presence and history.
    Subscribe,
    /// Subscribe, read presence and history, and publish (when `allow_publish`).
    Publish,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        Self {
            history_size: 100,
            history_ttl: Duration::from_secs(300),
            presence: true,
            join_leave: true,
            join_leave_limit: 250,
            join_leave_interval: Duration::from_secs(1),
            allow_publish: true,
            max_subscribers: 0,
            anonymous: Anonymous::Deny,
            compression: true,
            subscribe_proxy: None,
            publish_proxy: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            echo: true,
            ping_interval: Some(Duration::from_secs(25)),
            pong_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(120)),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            drain_window: Duration::from_secs(10),
            limits: Limits::default(),
            handshake_limits: HandshakeLimits::default(),
            hub: HubOptions::default(),
            auth: AuthOptions::default(),
            origins: OriginOptions::default(),
            tls: None,
            rate_limits: LimitOptions::default(),
            api_key: None,
            admin_secret: None,
            transports: TransportOptions::default(),
            compression: CompressionOptions::default(),
            proxies: BTreeMap::new(),
            rpc_proxy: None,
            connect_proxy: None,
        }
    }
}

/// Who may connect and how they prove it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AuthOptions {
    /// Verifies JWTs from the handshake, `connect` and `refresh`. `None` (the default):
    /// tokens are refused, only anonymous access and tickets remain.
    pub verifier: Option<Arc<Verifier>>,
    /// Refuse connections without valid credentials (401 before the upgrade, or the
    /// first-message deadline). Default off: anonymous connections are accepted but may use
    /// only namespaces whose [`NamespaceOptions::anonymous`] allows it.
    pub required: bool,
    /// A cookie carrying the token, for browsers on the same site. Default none.
    pub token_cookie: Option<String>,
    /// Accept `?token=` in the URL. Default off: URLs end up in proxy logs and browser
    /// history; the value is redacted from this server's logs when on.
    pub danger_token_in_query: bool,
    /// First-message mode: accept the WebSocket without credentials and allow nothing
    /// but a `connect` carrying a token until it arrives. Default off.
    pub first_message: bool,
    /// How long first-message mode waits for that `connect`. Default 5 s; then the
    /// connection is closed with 4102.
    pub first_message_timeout: Duration,
    /// One-time tickets from `POST /api/ticket`: lifetime and how many may be pending.
    pub tickets: TicketConfig,
}

impl Default for AuthOptions {
    fn default() -> Self {
        Self {
            verifier: None,
            required: false,
            token_cookie: None,
            danger_token_in_query: false,
            first_message: false,
            first_message_timeout: Duration::from_secs(5),
            tickets: TicketConfig::default(),
        }
    }
}

/// Which browser origins may open WebSockets (RFC 6455 §10.2: the server must check).
///
/// With serde: the `[origins]` table of a configuration file, every key optional.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[non_exhaustive]
#[serde(default, deny_unknown_fields)]
pub struct OriginOptions {
    /// Allowed origins besides the server's own: exact `scheme://host[:port]`, or
    /// `scheme://*.example.com[:port]` for any subdomain. Compared on the parsed scheme,
    /// host and port, never as substrings. Default empty.
    pub allowed: Vec<String>,
    /// Allow `http(s)://localhost`, `127.0.0.1` and `[::1]` on any port, for development.
    /// Default on.
    pub allow_localhost: bool,
    /// Allow requests without an `Origin` header (non-browser clients; browsers always
    /// send one). Default on.
    pub allow_missing: bool,
}

impl Default for OriginOptions {
    fn default() -> Self {
        Self { allowed: Vec::new(), allow_localhost: true, allow_missing: true }
    }
}

/// A secret string, such as the API key: `Debug` shows `"<redacted>"` and `Serialize`
/// writes `"<redacted>"`, never the value, because configurations end up in logs, panic
/// messages and generated files. [`Secret::expose`] is the one way to read it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the code that checks or sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(REDACTED, f)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// What a [`Secret`] shows instead of itself.
const REDACTED: &str = "<redacted>";

/// A [`Duration`] as a human-readable string in serde: `"300s"`, `"5m"`, `"1h 30m"`, for
/// `#[serde(with = "switchboard_server::duration_str")]`.
pub mod duration_str {
    use super::{Deserialize as _, Deserializer, Duration, Serializer};

    /// Writes `d` as `"5m"`.
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    /// Reads `"5m"`, `"300s"`, `"1h 30m"`.
    ///
    /// # Errors
    ///
    /// When the string is not a duration, with the string and why.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_serialize_never_show_a_secret() {
        let config = Config { api_key: Some("hunter2-but-longer".into()), ..Config::default() };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("api_key: Some(\"<redacted>\")"), "{shown}");
        let secret = Secret::from("hunter2");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"<redacted>\"");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn namespace_options_read_back_what_they_write() {
        for (name, options) in HubOptions::default().namespaces {
            let json = serde_json::to_value(&options).unwrap();
            let ttl = if name == "board" { "1h" } else { "5m" };
            assert_eq!(json["history_ttl"], ttl, "{name}");
            let back: NamespaceOptions = serde_json::from_value(json).unwrap();
            assert_eq!(back, options, "{name}");
        }
        let partial: NamespaceOptions =
            serde_json::from_str(r#"{"anonymous": "publish"}"#).unwrap();
        let expected =
            NamespaceOptions { anonymous: Anonymous::Publish, ..NamespaceOptions::default() };
        assert_eq!(partial, expected);
        let unknown = serde_json::from_str::<NamespaceOptions>(r#"{"histroy_size": 1}"#);
        assert!(unknown.unwrap_err().to_string().contains("unknown field `histroy_size`"));
    }
}
