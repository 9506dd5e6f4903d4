//! The state every connection task shares, and what a request carries besides its head.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::node::Node;
use crate::{auth, fallback, limits, metrics, tls};

/// State shared by every connection task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) node: Arc<Node>,
    pub(crate) auth: Arc<auth::Authenticator>,
    pub(crate) tls: Option<tls::TlsState>,
    /// Cancelled when a shutdown is requested: the drain starts (`/readyz` unready, upgrades
    /// refused, `/ws` connections closed in batches).
    pub(crate) shutdown: CancellationToken,
    /// Cancelled once the drain's batches are done: whatever is still open (`/echo`, late
    /// upgrades, keep-alive HTTP connections) is closed now.
    pub(crate) closing: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// Connection counts, per-address tables and refusal counters.
    pub(crate) limits: Arc<limits::Limiter>,
    pub(crate) metrics: metrics::Metrics,
    /// When the server was bound, for the status page's uptime.
    pub(crate) started: std::time::Instant,
    /// The SSE and long-polling sessions this node holds.
    pub(crate) sessions: fallback::Sessions,
    /// Requests for sessions of other nodes, forwarded and waiting for their answers.
    pub(crate) relay: fallback::relay::Relay,
}

/// The TCP peer of a request, in its extensions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);
