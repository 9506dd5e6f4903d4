//! [`ClientBuilder`]: the client's options, checked once in [`ClientBuilder::build`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rustls::pki_types::CertificateDer;
use switchboard_proto::Format;
use tokio::sync::{mpsc, watch};

use crate::client::{Client, ConnectionState, StateChange};
use crate::connect::{ServerUrl, tls_config};
use crate::driver::Driver;
use crate::error::Error;

/// An error from a token callback, passed through to
/// [`DisconnectReason::Token`](crate::DisconnectReason::Token) as text.
///
/// ```
/// let err: switchboard_client::BoxError = "backend unavailable".into();
/// assert_eq!(err.to_string(), "backend unavailable");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a token callback returns: a future of a fresh token.
///
/// ```
/// use switchboard_client::TokenFuture;
/// let fetch: TokenFuture = Box::pin(async { Ok("a-token".to_owned()) });
/// # drop(fetch);
/// ```
pub type TokenFuture = BoxFuture<'static, Result<String, BoxError>>;

/// A callback that fetches a fresh token (from the application's backend, say): called
/// before the first connection, after the server asks for a new token (close code 4200,
/// or a 401 `token_expired` refusal), and shortly before a JWT's `exp` to send `refresh`.
///
/// ```
/// use std::sync::Arc;
/// use switchboard_client::TokenProvider;
///
/// let provider: TokenProvider = Arc::new(|| {
///     Box::pin(async {
///         // Ask the application's backend for a token here.
///         Ok("a-fresh-token".to_owned())
///     })
/// });
/// # drop(provider);
/// ```
pub type TokenProvider = Arc<dyn Fn() -> TokenFuture + Send + Sync>;

/// What [`Client::publish`](crate::Client::publish) (and `presence`, `history`) do while the
/// client is not connected.
///
/// ```
/// use switchboard_client::{Client, PublishQueue};
///
/// let builder = Client::builder("ws://127.0.0.1:8080/ws").publish_queue(PublishQueue::Reject);
/// # drop(builder);
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PublishQueue {
    /// Queue up to this many commands and send them, in order, once connected again; past
    /// that, calls fail with [`Error::QueueFull`]. Must be at least 1.
    Bounded(usize),
    /// Fail at once with [`Error::NotConnected`].
    Reject,
}

impl Default for PublishQueue {
    /// `Bounded(1000)`: a few seconds of a busy publisher, well inside the server's default
    /// command burst (4,000), so a flush after reconnecting is not rate limited.
    fn default() -> Self {
        PublishQueue::Bounded(1000)
    }
}

/// How a [`Client`] reaches the server (`docs/transports.md`). Every transport carries the
/// same session: the same commands, replies, pushes and recovery.
///
/// ```
/// use switchboard_client::{Client, Transport};
///
/// // GET /sse for the events, POST /session for the commands, next to the URL's /ws.
/// let builder = Client::builder("ws://127.0.0.1:8080/ws").transport(Transport::Sse);
/// # drop(builder);
/// ```
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub enum Transport {
    /// A WebSocket at the URL: one socket, least overhead.
    #[default]
    WebSocket,
    /// Server-Sent Events: the session's messages come down a `GET /sse` event stream, its
    /// commands go up by `POST /session`, both next to the URL's path (`/ws` gives `/sse`
    /// and `/session`). JSON only. A cut stream is resumed with `Last-Event-ID`, losing
    /// and repeating nothing; a session the server no longer holds is replaced, recovering
    /// by offset as after a WebSocket reconnect.
    Sse,
}

/// Options for a [`Client`]. Start with [`Client::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use switchboard_client::{Client, Format};
///
/// # async fn run() -> Result<(), switchboard_client::Error> {
/// let client = Client::builder("wss://rt.example.com/ws")
///     .token("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
///     .format(Format::Msgpack)
///     .reconnect_delay(Duration::from_millis(250), Duration::from_secs(10))
///     .ack_timeout(Duration::from_secs(5))
///     .build()?;
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientBuilder {
    url: String,
    token: Option<String>,
    provider: Option<TokenProvider>,
    format: Format,
    transport: Transport,
    compression: bool,
    min_delay: Duration,
    max_delay: Duration,
    stable_after: Duration,
    queue: PublishQueue,
    ack_timeout: Duration,
    heartbeat_margin: Duration,
    connect_timeout: Duration,
    headers: Vec<(String, String)>,
    origin: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    extra_roots: Vec<CertificateDer<'static>>,
    seed: Option<u64>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are secrets: show only whether they are set.
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("provider", &self.provider.is_some())
            .field("format", &self.format)
            .field("transport", &self.transport)
            .field("min_delay", &self.min_delay)
            .field("max_delay", &self.max_delay)
            .field("stable_after", &self.stable_after)
            .field("queue", &self.queue)
            .field("ack_timeout", &self.ack_timeout)
            .field("heartbeat_margin", &self.heartbeat_margin)
            .field("connect_timeout", &self.connect_timeout)
            .field("headers", &self.headers.len())
            .field("origin", &self.origin)
            .field("tls", &self.tls.is_some())
            .field("extra_roots", &self.extra_roots.len())
            .field("seed", &self.seed)
            .finish()
    }
}

impl ClientBuilder {
    pub(crate) fn new(url: String) -> Self {
        Self {
            url,
            token: None,
            provider: None,
            format: Format::Json,
            transport: Transport::WebSocket,
            compression: true,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            queue: PublishQueue::default(),
            ack_timeout: Duration::from_secs(10),
            heartbeat_margin: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            headers: Vec::new(),
            origin: None,
            tls: None,
            extra_roots: Vec::new(),
            seed: None,
        }
    }

    /// A static token (a JWT or a ticket), sent as `Authorization: Bearer` in the handshake
    /// (the opening `GET /sse` with [`Transport::Sse`]). Default none: anonymous.
    ///
    /// A JWT goes again in the `connect` command. A one-time ticket from `POST /api/ticket`
    /// (a token without dots) does not: the opening request redeems it, and a second
    /// redemption would be refused (protocol §3, `connect`). So a static ticket serves one
    /// connection: a reconnection is refused with 401 `ticket_invalid` and the client
    /// closes; a [`token_provider`](Self::token_provider) returning tickets is asked for a
    /// new one before every connection.
    ///
    /// With only a static token, a server asking for a new one (close code 4200) ends the
    /// client (state [`Closed`](ConnectionState::Closed)); use
    /// [`token_provider`](Self::token_provider) to fetch fresh ones.
    ///
    /// ```
    /// let b = switchboard_client::Client::builder("wss://rt.example.com/ws")
    ///     .token("eyJhbGciOiJIUzI1NiJ9.e30.c2ln");
    /// # drop(b);
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// A callback that fetches a token: the `get_token` of other Switchboard clients.
    ///
    /// Called before connecting when there is no usable token, after the server asks for
    /// a new one (close code 4200, a 401 `token_expired` refusal), before every connection
    /// after one made with a ticket (a token without dots, spent by it), and, for a JWT with
    /// `exp`, 30 s (or a tenth of its lifetime, if shorter) before expiry, to send `refresh`
    /// on the open connection. A failure counts as a failed connection attempt (backoff).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchboard_client::Client;
    ///
    /// let builder = Client::builder("ws://127.0.0.1:8080/ws").token_provider(Arc::new(|| {
    ///     Box::pin(async { Ok("token-from-my-backend".to_owned()) })
    /// }));
    /// # drop(builder);
    /// ```
    #[doc(alias = "get_token")]
    pub fn token_provider(mut self, provider: TokenProvider) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The wire format. Default [`Format::Json`]; [`Format::Msgpack`] is smaller and faster
    /// to parse for numeric payloads.
    ///
    /// ```
    /// use switchboard_client::{Client, Format};
    /// let b = Client::builder("ws://127.0.0.1:8080/ws").format(Format::Msgpack);
    /// # drop(b);
    /// ```
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// The transport. Default [`Transport::WebSocket`]; [`Transport::Sse`] for networks whose
    /// proxies break WebSocket upgrades but stream responses. SSE speaks JSON only.
    ///
    /// ```
    /// use switchboard_client::{Client, Transport};
    /// let b = Client::builder("ws://127.0.0.1:8080/ws").transport(Transport::Sse);
    /// # drop(b);
    /// ```
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Offers permessage-deflate (RFC 7692) on WebSocket connections, as browsers do, and
    /// compresses messages when the server accepts. Default on: large, repetitive JSON
    /// crosses the network several times smaller. Off saves the CPU on both ends where
    /// bandwidth is plentiful or the data does not compress.
    ///
    /// ```
    /// let b = switchboard_client::Client::builder("ws://127.0.0.1:8080/ws").compression(false);
    /// # drop(b);
    /// ```
    pub fn compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// Bounds of the reconnect backoff. Defaults 0.5 s and 30 s.
    ///
    /// Attempt `n` after a failure waits a random time in `[0, min(max, min · 2^n)]` (full
    /// jitter); `min` also bounds the short random delay of the `reconnect` advice. A
    /// smaller `min` reconnects faster; a larger `max` spares a struggling server.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = switchboard_client::Client::builder("ws://127.0.0.1:8080/ws")
    ///     .reconnect_delay(Duration::from_millis(100), Duration::from_secs(5));
    /// # drop(b);
    /// ```
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min;
        self.max_delay = max;
        self
    }

    /// How long a connection must stay up before the backoff starts over. Default 10 s:
    /// a server that accepts and then drops every connection is still backed off from.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = switchboard_client::Client::builder("ws://127.0.0.1:8080/ws")
    ///     .reset_backoff_after(Duration::from_secs(60));
    /// # drop(b);
    /// ```
    pub fn reset_backoff_after(mut self, stable: Duration) -> Self {
        self.stable_after = stable;
        self
    }

    /// What to do with publishes (and `presence`, `history`) while disconnected. Default
    /// [`PublishQueue::Bounded`]`(1000)`.
    ///
    /// ```
    /// use switchboard_client::{Client, PublishQueue};
    /// let b = Client::builder("ws://127.0.0.1:8080/ws").publish_queue(PublishQueue::Bounded(50));
    /// # drop(b);
    /// ```
    pub fn publish_queue(mut self, queue: PublishQueue) -> Self {
        self.queue = queue;
        self
    }

    /// How long a sent command may wait for its reply. Default 10 s. A publish that times
    /// out fails with [`Error::Timeout`] (it may still happen); a `connect` or `subscribe`
    /// that times out drops the connection, which is presumed dead.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = switchboard_client::Client::builder("ws://127.0.0.1:8080/ws")
    ///     .ack_timeout(Duration::from_secs(3));
    /// # drop(b);
    /// ```
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// How long past the server's `ping_interval` silence is tolerated before the
    /// connection is presumed dead and replaced (protocol §9). Default 10 s: longer cuts
    /// detection of a dead link, shorter risks dropping a slow but live one.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = switchboard_client::Client::builder("ws://127.0.0.1:8080/ws")
    ///     .heartbeat_margin(Duration::from_secs(5));
    /// # drop(b);
    /// ```
    pub fn heartbeat_margin(mut self, margin: Duration) -> Self {
        self.heartbeat_margin = margin;
        self
    }

    /// Time limit for one connection attempt: DNS, TCP, TLS and the opening handshake (and
    /// the token callback before it). Default 10 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = switchboard_client::Client::builder("ws://127.0.0.1:8080/ws")
    ///     .connect_timeout(Duration::from_secs(3));
    /// # drop(b);
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// An extra header for the opening handshake (a tracing id, a proxy's credentials).
    /// The handshake's own headers (`Host`, `Upgrade`, `Sec-WebSocket-*`, `Authorization`
    /// when a token is set) are refused by [`build`](Self::build).
    ///
    /// ```
    /// let b = switchboard_client::Client::builder("ws://127.0.0.1:8080/ws")
    ///     .header("X-Request-Id", "7f3a");
    /// # drop(b);
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The `Origin` header, for servers that restrict origins (RFC 6455 §10.2). Default
    /// none: the server's default lets clients without one in.
    ///
    /// ```
    /// let b = switchboard_client::Client::builder("wss://rt.example.com/ws")
    ///     .origin("https://app.example.com");
    /// # drop(b);
    /// ```
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// The TLS configuration for `wss://` URLs. Default: TLS 1.2 and 1.3 with the ring
    /// provider, trusting Mozilla's root certificates (`webpki-roots`). Supply one to trust
    /// a private CA, pin certificates or present a client certificate.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use switchboard_client::Client;
    ///
    /// let mut roots = rustls::RootCertStore::empty();
    /// // roots.add(my_ca_der)?;
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let tls = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let builder = Client::builder("wss://rt.internal:8443/ws").tls_config(Arc::new(tls));
    /// # drop(builder);
    /// # Ok::<(), rustls::Error>(())
    /// ```
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Certificates to trust for `wss://` besides Mozilla's roots: a private CA, or the
    /// certificate `switchboard serve --dev-tls` writes. Default none. Not combinable with
    /// [`tls_config`](Self::tls_config), whose roots are the caller's.
    ///
    /// ```no_run
    /// use switchboard_client::Client;
    /// use switchboard_client::connect::read_pem_certificates;
    ///
    /// let ca = read_pem_certificates("ca.pem".as_ref())?;
    /// let builder = Client::builder("wss://rt.internal:8443/ws").add_root_certificates(ca);
    /// # drop(builder);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn add_root_certificates(
        mut self,
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Self {
        self.extra_roots.extend(certs);
        self
    }

    /// Seeds the random delays (backoff jitter) for reproducible tests. Default: seeded
    /// from the operating system, different for every client, which is what keeps a fleet
    /// from reconnecting in step. Do not set it in production.
    ///
    /// ```
    /// // In a test only: the same seed gives the same reconnect delays.
    /// let b = switchboard_client::Client::builder("ws://127.0.0.1:8080/ws").rng_seed(42);
    /// # drop(b);
    /// ```
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks the options, starts the background task and returns the client. Connecting
    /// happens in the background: watch [`Client::state`] or await
    /// [`Client::wait_connected`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for a URL that is not `ws://` or `wss://` with a host;
    /// [`Error::InvalidOption`] for an option out of range (a zero or inverted delay, a
    /// zero timeout or queue, a header with a line break, an unusable root certificate, or
    /// root certificates with a `tls_config`); [`Error::NoRuntime`] outside a tokio runtime.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), switchboard_client::Error> {
    /// let client = switchboard_client::Client::builder("ws://127.0.0.1:8080/ws").build()?;
    /// client.wait_connected().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(self) -> Result<Client, Error> {
        let url = ServerUrl::parse(&self.url)
            .map_err(|e| Error::InvalidUrl(format!("{e}: {:?}", self.url)))?;
        self.check()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let tls = match (url.is_tls(), self.tls) {
            (true, Some(config)) => Some(config),
            (true, None) => Some(
                tls_config(&self.extra_roots)
                    .map_err(|e| Error::InvalidOption(format!("tls: {e}")))?,
            ),
            (false, _) => None,
        };
        let rng = match self.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let mut headers = self.headers;
        if let Some(origin) = self.origin {
            headers.push(("Origin".to_owned(), origin));
        }
        let settings = Settings {
            url,
            token: self.token,
            provider: self.provider,
            format: self.format,
            transport: self.transport,
            compression: self.compression,
            min_delay: self.min_delay,
            max_delay: self.max_delay,
            stable_after: self.stable_after,
            queue: self.queue,
            ack_timeout: self.ack_timeout,
            heartbeat_margin: self.heartbeat_margin,
            connect_timeout: self.connect_timeout,
            headers,
            tls,
        };
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(StateChange::new(ConnectionState::Connecting));
        let driver = Driver::new(Arc::new(settings), ops_rx, state_tx, rng);
        runtime.spawn(driver.run());
        Ok(Client::new(ops_tx, state_rx))
    }

    fn check(&self) -> Result<(), Error> {
        let invalid = |what: &str| Err(Error::InvalidOption(what.to_owned()));
        if self.min_delay.is_zero() || self.min_delay > self.max_delay {
            return invalid("reconnect delays must satisfy 0 < min <= max");
        }
        if self.ack_timeout.is_zero() || self.connect_timeout.is_zero() {
            return invalid("timeouts must be greater than zero");
        }
        if self.transport == Transport::Sse && self.format != Format::Json {
            return invalid("the SSE transport speaks JSON only");
        }
        if self.queue == PublishQueue::Bounded(0) {
            return invalid("a publish queue of 0: use PublishQueue::Reject");
        }
        let unusable = |t: &str| t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic());
        if self.token.as_deref().is_some_and(unusable) {
            return invalid("the token must be non-empty and printable ASCII");
        }
        for (name, value) in &self.headers {
            if !is_token(name) || !is_header_value(value) {
                return Err(Error::InvalidOption(format!("malformed header {name:?}")));
            }
            if RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(Error::InvalidOption(format!("header {name:?} is the client's")));
            }
        }
        if self.origin.as_deref().is_some_and(|o| !is_header_value(o)) {
            return invalid("malformed origin");
        }
        if self.tls.is_some() && !self.extra_roots.is_empty() {
            return invalid("root certificates and a tls_config: add them to the config's roots");
        }
        Ok(())
    }
}

/// Everything the background task needs, fixed at build time.
pub(crate) struct Settings {
    pub(crate) url: ServerUrl,
    pub(crate) token: Option<String>,
    pub(crate) provider: Option<TokenProvider>,
    pub(crate) format: Format,
    pub(crate) transport: Transport,
    /// Offer permessage-deflate.
    pub(crate) compression: bool,
    pub(crate) min_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) stable_after: Duration,
    pub(crate) queue: PublishQueue,
    pub(crate) ack_timeout: Duration,
    pub(crate) heartbeat_margin: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

/// RFC 9110 §5.1: a header name is a token.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value this client will write: visible ASCII and spaces, no line breaks.
fn is_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
}

/// Headers the handshake writes itself.
const RESERVED_HEADERS: [&str; 9] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "authorization",
    "origin",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_urls() {
        for url in crate::connect::url::tests::BAD_URLS {
            let built = ClientBuilder::new(url.to_owned()).build();
            assert!(matches!(built, Err(Error::InvalidUrl(_))), "{url}");
        }
    }

    #[test]
    fn build_checks_options_without_panicking() {
        let base = || ClientBuilder::new("ws://127.0.0.1:1/ws".to_owned());
        let err = |b: ClientBuilder| b.check().expect_err("invalid");
        assert!(matches!(
            err(base().reconnect_delay(Duration::from_secs(2), Duration::from_secs(1))),
            Error::InvalidOption(_)
        ));
        assert!(matches!(err(base().ack_timeout(Duration::ZERO)), Error::InvalidOption(_)));
        assert!(matches!(
            err(base().publish_queue(PublishQueue::Bounded(0))),
            Error::InvalidOption(_)
        ));
        assert!(matches!(err(base().header("X-A", "a\r\nb: c")), Error::InvalidOption(_)));
        assert!(matches!(err(base().header("Authorization", "x")), Error::InvalidOption(_)));
        assert!(matches!(err(base().token("a\nb")), Error::InvalidOption(_)));
        assert!(base().header("X-Trace", "abc").check().is_ok());
        // Outside a runtime: an error, not a panic.
        assert!(matches!(base().build(), Err(Error::NoRuntime)));
        let config = tls_config(&[]).expect("a config");
        let root = CertificateDer::from(vec![1, 2, 3]);
        let both = base().tls_config(config).add_root_certificates([root.clone()]);
        assert!(matches!(err(both), Error::InvalidOption(_)));
        let unusable = ClientBuilder::new("wss://x/".to_owned()).add_root_certificates([root]);
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let _guard = runtime.enter();
        assert!(matches!(unusable.build(), Err(Error::InvalidOption(_))));
    }

    #[test]
    fn debug_hides_the_token() {
        let b = ClientBuilder::new("ws://x/".to_owned()).token("secret-token");
        assert!(!format!("{b:?}").contains("secret-token"));
    }
}
