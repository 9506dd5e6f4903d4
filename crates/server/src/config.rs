//! Server configuration.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_codec::{HandshakeLimits, Limits};

/// Everything the server needs to run. Plain data with working defaults: `Config::default()`
/// serves `/echo` and `/healthz` on `127.0.0.1:8080`.
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
        }
    }
}
