//! The listener, the server's life cycle (bind, run, drain) and the HTTP/1.1 connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::Error;
use crate::node::{self, Node};
use crate::state::{PeerAddr, Shared};
use crate::tls;
use crate::write_timeout::WriteTimeout;
use crate::{auth, cluster, exposition, fallback, limits, metrics, routes, timed};
use switchboard_broker::{Broker, MemoryBroker, MemoryLimits};

/// Connections the kernel may hold before `accept` (it caps this at `somaxconn`): a burst
/// of clients reconnecting at once, after a deploy or a network blip, must not see their
/// SYNs dropped and wait a second to retransmit, as they would past the usual 128.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As the standard library does on Unix: a restarted server rebinds at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A bound, not yet running, server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    /// Routes the embedding program added with [`Server::with_routes`].
    extra: axum::Router,
}

/// Re-reads the TLS certificate and key of the server it came from. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsReloader(Arc<Shared>);

impl TlsReloader {
    /// Swaps in the certificate and key from their files: new connections use them, open
    /// connections are not touched. Does nothing without TLS or with a generated
    /// certificate.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] when the files are unusable; the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), Error> {
        self.0.tls.as_ref().map_or(Ok(()), tls::TlsState::reload)
    }
}

/// Starts a graceful shutdown of the server it came from. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Starts the drain described at [`Server::run`]: stops accepting connections and closes
    /// the open ones over [`Config::drain_window`].
    pub fn shutdown(&self) {
        self.0.cancel();
    }

    /// Resolves once a shutdown has been requested, from any handle: for work the embedding
    /// program runs next to the server (a feed, say) to stop when the drain starts.
    pub async fn requested(&self) {
        self.0.cancelled().await;
    }
}

/// Publishes to channels the way the HTTP API's `POST /api/publish` does: through the
/// node's broker, so subscribers on every node see it, with the history settings of the
/// channel's namespace, whatever the namespace's `allow_publish` says (that option is about
/// clients). Not counted in `switchboard_publications_total`, which counts what clients and
/// the API publish. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Publisher(Arc<Node>);

impl Publisher {
    /// Publishes `data` on `channel`; returns its position in the channel's stream.
    ///
    /// # Errors
    ///
    /// The error a client would get: `invalid_channel`, `unknown_namespace`, or
    /// `unavailable` when the broker cannot be reached.
    pub async fn publish(
        &self,
        channel: &str,
        data: switchboard_proto::Value,
    ) -> Result<switchboard_proto::PublishResult, switchboard_proto::ErrorBody> {
        crate::api::publish(&self.0, channel, data).await
    }

    /// Whether channels of `namespace` exist on this server (it is configured).
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.0.namespace(namespace).is_some()
    }
}

impl Server {
    /// Binds the listen address, with the in-memory broker: one node, nothing else to run.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] when the address is in use or cannot be bound; [`Error::Config`] when
    /// the configuration contradicts itself (proxies).
    pub async fn bind(config: Config) -> Result<Self, Error> {
        let limits = MemoryLimits::new(config.hub.history_memory, config.hub.max_channels);
        let broker = Arc::new(MemoryBroker::new().with_limits(limits));
        let server = Self::bind_with_broker(config, Arc::clone(&broker) as Arc<dyn Broker>).await?;
        // The in-memory broker forgets idle streams when asked; ask twice a TTL's worth.
        let token = server.shared.shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = every.tick() => broker.sweep(),
                }
            }
        });
        Ok(server)
    }

    /// Binds the listen address, sharing channels with other nodes through `broker`.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] when the address is in use or cannot be bound; [`Error::Config`] when
    /// the configuration contradicts itself (proxies).
    pub async fn bind_with_broker(config: Config, broker: Arc<dyn Broker>) -> Result<Self, Error> {
        // The configuration first: a contradiction is reported before the port is taken.
        let mut metrics = metrics::Metrics::new();
        let hooks = crate::hooks::Hooks::new(&config, metrics.hooks.clone())?;
        let addr = config.listen;
        let listener = listen(addr).map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener.local_addr()?;
        let broker = Arc::new(timed::TimedBroker::new(broker, Arc::clone(&metrics.broker)));
        let auth = Arc::new(auth::Authenticator::new(&config.auth));
        let limits = Arc::<limits::Limiter>::default();
        let node = Node::with_parts(
            broker,
            &config,
            Arc::clone(&auth),
            Arc::clone(&limits),
            &metrics,
            hooks,
        );
        let node = Arc::new(node);
        exposition::register(&mut metrics, Arc::clone(&node), Arc::clone(&limits));
        let tls = config.tls.clone().map(tls::TlsState::load).transpose()?;
        let shared = Arc::new(Shared {
            config,
            node,
            auth,
            tls,
            shutdown: CancellationToken::new(),
            closing: CancellationToken::new(),
            tracker: TaskTracker::new(),
            limits,
            metrics,
            started: std::time::Instant::now(),
            sessions: fallback::Sessions::new(),
            relay: fallback::relay::Relay::default(),
        });
        // Requests for this node's SSE and long-polling sessions that reached another node
        // come through the broker. Weak: the node must not keep the state it belongs to.
        let weak = Arc::downgrade(&shared);
        shared
            .node
            .set_node_inbox(Box::new(move |message| fallback::relay::receive(&weak, message)));
        if let Err(e) = shared.node.broker.listen_as(shared.sessions.node()).await {
            tracing::warn!(
                error = %e,
                "cannot receive forwarded requests: SSE and long-polling sessions of this node \
                 are reachable only through it"
            );
        }
        Ok(Self { listener, local_addr, shared, extra: axum::Router::new() })
    }

    /// The bound address (with the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// The generated development certificate (PEM), with [`TlsSource::DevSelfSigned`](crate::TlsSource::DevSelfSigned).
    pub fn dev_certificate(&self) -> Option<&str> {
        self.shared.tls.as_ref().and_then(tls::TlsState::dev_cert_pem)
    }

    /// A handle that re-reads the TLS certificate and key (on SIGHUP, say).
    pub fn tls_reloader(&self) -> TlsReloader {
        TlsReloader(Arc::clone(&self.shared))
    }

    /// A handle that starts a graceful shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.shutdown.clone())
    }

    /// A handle that publishes to this server's channels.
    pub fn publisher(&self) -> Publisher {
        Publisher(Arc::clone(&self.shared.node))
    }

    /// Serves `routes` next to the server's own: pages or files of the embedding program
    /// (`switchboard serve` adds its demo this way). The server's routes keep their paths:
    /// a route here that names one of them (`/ws`, `/echo`, `/healthz`, `/readyz`,
    /// `/metrics`, `/status`, `/status.json`, `/switchboard.js`, `/assets/…` of the status
    /// page, `/api/…`) makes [`Server::run`] panic, and so does a fallback in `routes` (the
    /// server keeps its own). Paths nobody serves answer the server's
    /// JSON 404; give each route's wrong methods their 405 the same way with
    /// [`Server::method_not_allowed`].
    #[must_use]
    pub fn with_routes(mut self, routes: axum::Router) -> Self {
        self.extra = self.extra.merge(routes);
        self
    }

    /// The server's answer to a request for `path` with a method the route does not take:
    /// 405 with `Allow` and the JSON refusal body, for routes added with
    /// [`Server::with_routes`] (as their method router's `fallback`).
    pub fn method_not_allowed(
        method: &http::Method,
        path: &str,
        allow: &'static str,
    ) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        crate::refusal::Refusal::method_not_allowed(method, path, allow).into_response()
    }

    /// Serves until a shutdown is requested, then drains:
    ///
    /// 1. The listener closes; `/readyz` answers 503 `draining`, and upgrade requests on
    ///    HTTP connections still open are refused with 503 `draining`.
    /// 2. The `/ws` connections open at that moment are closed with 4003 (`draining`,
    ///    advice `reconnect`, after a `disconnect` push) in up to 100 evenly spaced
    ///    batches over [`Config::drain_window`]: the first at once, the last one batch
    ///    interval before the window ends, so their reconnects reach other nodes spread
    ///    out rather than all at once. The schedule ends early when none are left.
    /// 3. Then everything else still open is closed: `/echo` connections with 1001 (going
    ///    away: echo clients speak no Switchboard protocol), any `/ws` connection upgraded
    ///    after the drain began with 4003, and idle keep-alive HTTP connections.
    /// 4. Returns once all connections are gone or [`Config::shutdown_timeout`] has
    ///    passed since step 3.
    ///
    /// # Errors
    ///
    /// None today; the signature leaves room for listener failures that cannot be retried.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops accepting but leaves spawned connection tasks running.
    pub async fn run(self) -> Result<(), Error> {
        let Server { listener, shared, extra, .. } = self;
        let router = routes::router(&shared).merge(extra);
        // Tracked: the shutdown waits for it to remove this node from the registry.
        shared.tracker.spawn(cluster::keep_registered(Arc::clone(&shared)));
        loop {
            tokio::select! {
                () = shared.shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => serve_http(stream, peer, &shared, &router),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning; the listener
                        // stays usable.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        shared.tracker.close();
        drain(&shared).await;
        shared.closing.cancel();
        let open = shared.tracker.len();
        tracing::info!(open, "shutting down: closing connections");
        if tokio::time::timeout(shared.config.shutdown_timeout, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = shared.tracker.len(),
                "shutdown timeout reached with connections still open"
            );
        }
        Ok(())
    }
}

/// How often the in-memory broker drops streams nobody uses.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Most batches a drain closes `/ws` connections in: with many connections, one kick every
/// `window / 100` for a hundredth of them each, rather than a timer per connection.
const DRAIN_BATCHES: usize = 100;

/// Closes the `/ws` connections open now with 4003, in evenly spaced batches over the drain
/// window (see [`Server::run`]).
async fn drain(shared: &Shared) {
    let node = &shared.node;
    let clients = node.client_ids();
    let window = shared.config.drain_window;
    tracing::info!(connections = clients.len(), ?window, "draining");
    if clients.is_empty() {
        return;
    }
    let batches = clients.len().min(DRAIN_BATCHES);
    let per_batch = clients.len().div_ceil(batches);
    let interval = window / u32::try_from(batches).unwrap_or(u32::MAX);
    let start = tokio::time::Instant::now();
    for (n, batch) in clients.chunks(per_batch).enumerate() {
        if node.connection_count() == 0 {
            break;
        }
        tokio::time::sleep_until(start + interval * u32::try_from(n).unwrap_or(u32::MAX)).await;
        for id in batch {
            let kick = node::Kick {
                code: switchboard_proto::codes::close::DRAINING,
                reason: "server draining".to_owned(),
            };
            node.disconnect_client(id, kick);
        }
    }
}

fn serve_http(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>, router: &axum::Router) {
    // Small frames must leave at once; coalescing happens in the driver, not in Nagle.
    let _ = stream.set_nodelay(true);
    let task_shared = Arc::clone(shared);
    let router = router.clone();
    shared.tracker.spawn(async move {
        let write_timeout = task_shared.config.write_timeout;
        let Some(tls) = &task_shared.tls else {
            let io = WriteTimeout::new(stream, write_timeout);
            serve_connection(io, peer, task_shared, router).await;
            return;
        };
        // The TLS handshake counts against the same deadline as the request head.
        let accept = tls.acceptor().accept(stream);
        match tokio::time::timeout(task_shared.config.handshake_timeout, accept).await {
            Ok(Ok(stream)) => {
                let io = WriteTimeout::new(stream, write_timeout);
                serve_connection(io, peer, task_shared, router).await;
            }
            Ok(Err(e)) => {
                task_shared.metrics.handshake_failed("tls_handshake");
                tracing::debug!(%peer, error = %e, "tls handshake failed");
            }
            Err(_) => {
                task_shared.metrics.handshake_failed("tls_timeout");
                tracing::debug!(%peer, "tls handshake timed out");
            }
        }
    });
}

/// Serves HTTP/1.1 (with upgrades) on a plain or TLS stream until it closes.
async fn serve_connection<I>(io: I, peer: SocketAddr, shared: Arc<Shared>, router: axum::Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        // Handlers that limit or log per client read the peer from the request.
        req.extensions_mut().insert(PeerAddr(peer));
        // The router is always ready (it has no back-pressure of its own): no `poll_ready`.
        tower_service::Service::call(&mut router.clone(), req)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.handshake_timeout)
        .max_headers(shared.config.handshake_limits.max_headers)
        .max_header_size(shared.config.handshake_limits.max_header_bytes);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        // Kept open through the drain window: a load balancer's probe on a keep-alive
        // connection sees `/readyz` go unready instead of a reset.
        () = shared.closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}
