//! Server configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_auth::{TicketConfig, Verifier};

use switchboard_codec::{HandshakeLimits, Limits};

/// Everything the server needs to run. Plain data with working defaults: `Config::default()`
/// serves `/echo` and `/healthz` on `127.0.0.1:8080`.
///
/// `Debug` shows whether an API key is set, never the key.
#[derive(Clone)]
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
    /// After sending a close frame, wait this long for the peer's. Default 5 s.
    pub close_timeout: Duration,
    /// Drop a connection whose socket accepts no bytes for this long while frames are
    /// waiting (a peer that stopped reading). Default 10 s.
    pub write_timeout: Duration,
    /// On shutdown, how long connections get to finish their close handshakes before the
    /// process stops waiting. Default 10 s.
    pub shutdown_timeout: Duration,
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
    /// The key application backends send as `Authorization: apikey <key>` to use the HTTP
    /// API under `/api/` (see `docs/api.md`). Default `None`: the API is disabled and
    /// answers 403, so a server started without configuration cannot be driven by anyone
    /// who reaches its port. An empty key counts as none. Use a long random key (32 bytes
    /// or more): it is the only thing between the network and publishing to every channel.
    pub api_key: Option<String>,
}

/// Options of the real-time hub on `/ws`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubOptions {
    /// Namespaces by name; `""` is the default namespace, for channels without `:`.
    /// A channel in a namespace missing here is refused with `unknown_namespace`.
    /// Default: the default namespace, for authenticated users only, and `chat`, where
    /// anonymous connections may subscribe and publish (for trying things out).
    pub namespaces: BTreeMap<String, NamespaceOptions>,
    /// Most channels one connection may subscribe to. Default 128.
    pub max_subscriptions: usize,
    /// Bytes that may wait in one connection's outbound queue; past this the connection
    /// is a slow consumer and is closed with 4001. Default 1 MiB: a few seconds of a busy
    /// feed, small enough that 10,000 stalled clients cannot exhaust memory.
    pub outbound_queue_bytes: usize,
    /// Largest WebSocket message a client may send on `/ws`. Default 64 KiB.
    pub max_message_size: usize,
    /// Hub shards: publishes on channels in different shards never contend. Default 64.
    pub shards: usize,
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
            ]),
            max_subscriptions: 128,
            outbound_queue_bytes: 1 << 20,
            max_message_size: 64 << 10,
            shards: 64,
        }
    }
}

/// What a namespace's channels do.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct NamespaceOptions {
    /// Publications kept per channel for history and recovery. Default 100; 0 disables
    /// history (and recovery).
    pub history_size: usize,
    /// How long publications stay in history. Default 5 minutes: long enough to cover a
    /// laptop waking up or a phone changing networks.
    pub history_ttl: Duration,
    /// Keep a presence list (who is subscribed). Default on.
    pub presence: bool,
    /// Push join and leave events to subscribers. Default on.
    pub join_leave: bool,
    /// Let clients publish (the HTTP API always may). Default on.
    pub allow_publish: bool,
    /// Most subscribers per channel on one node; 0 for no limit. Default 0.
    pub max_subscribers: usize,
    /// What connections without credentials may do here. Default [`Anonymous::Deny`]:
    /// channels are for authenticated users whose token grants them.
    pub anonymous: Anonymous,
}

/// What anonymous connections may do in a namespace.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
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
            allow_publish: true,
            max_subscribers: 0,
            anonymous: Anonymous::Deny,
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
            limits: Limits::default(),
            handshake_limits: HandshakeLimits::default(),
            hub: HubOptions::default(),
            auth: AuthOptions::default(),
            origins: OriginOptions::default(),
            tls: None,
            api_key: None,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let Self {
            listen,
            echo,
            ping_interval,
            pong_timeout,
            idle_timeout,
            handshake_timeout,
            close_timeout,
            write_timeout,
            shutdown_timeout,
            limits,
            handshake_limits,
            hub,
            api_key,
            auth,
            origins,
            tls,
        } = self;
        // The key is a secret: configs end up in logs and panic messages.
        let api_key = api_key.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("listen", listen)
            .field("echo", echo)
            .field("ping_interval", ping_interval)
            .field("pong_timeout", pong_timeout)
            .field("idle_timeout", idle_timeout)
            .field("handshake_timeout", handshake_timeout)
            .field("close_timeout", close_timeout)
            .field("write_timeout", write_timeout)
            .field("shutdown_timeout", shutdown_timeout)
            .field("limits", limits)
            .field("handshake_limits", handshake_limits)
            .field("hub", hub)
            .field("api_key", &api_key)
            .field("auth", auth)
            .field("origins", origins)
            .field("tls", tls)
            .finish()
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
#[derive(Clone, Debug)]
#[non_exhaustive]
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
