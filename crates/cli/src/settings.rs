//! The settings of `switchboard serve` in one struct, the shape of its configuration file
//! (docs/configuration.md). They are layered: the built-in defaults, then the file, then
//! the `SWITCHBOARD_*` variables and flags (`ServeArgs::settings`), then turned into the
//! server's [`Config`] and the Redis broker's [`RedisConfig`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use switchboard_broker_nats::NatsConfig;
use switchboard_broker_redis::RedisConfig;
use switchboard_server::{
    CompressionOptions, Config, HubOptions, NamespaceOptions, OriginOptions, ProxyEndpoint, Rate,
    Secret, TlsSource, TransportOptions,
};

/// Every setting of `switchboard serve`. Each key of the file is optional: `serde(default)`
/// fills a missing one from [`Settings::default`], which reads the server's
/// `Config::default()` and `RedisConfig::default()`, the one place those defaults are
/// written. Only the binary's own settings (log format, broker) have their defaults here.
///
/// A new setting of `Config` reaches the file by a field here (or, for the hub, origins and
/// namespaces, by the server's struct itself, which this one holds) and a line in
/// [`Settings::default`] and [`Settings::to_config`]; its comment in
/// `switchboard config default` comes from `config_file::DOCS`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Settings {
    /// Address and port to listen on.
    pub(crate) listen: SocketAddr,
    /// Serve `/echo`.
    pub(crate) echo: bool,
    /// Serve the demo at `/` and run its simulated ticker.
    pub(crate) demo: bool,
    /// The key of the HTTP API under `/api/`; none: the API is off.
    pub(crate) api_key: Option<Secret>,
    /// The secret of the admin page at `/admin`; none: the API key, or the page is off.
    pub(crate) admin_secret: Option<Secret>,
    /// Log output format.
    pub(crate) log_format: LogFormat,
    /// `[timeouts]`.
    pub(crate) timeouts: Timeouts,
    /// `[limits]`.
    pub(crate) limits: Limits,
    /// `[auth]`.
    pub(crate) auth: Auth,
    /// `[origins]`: the server's own options.
    pub(crate) origins: OriginOptions,
    /// `[transports]`: the server's own options.
    pub(crate) transports: TransportOptions,
    /// `[compression]`: the server's own options.
    pub(crate) compression: CompressionOptions,
    /// `[tls]`.
    pub(crate) tls: Tls,
    /// `[broker]`.
    pub(crate) broker: Broker,
    /// `[hub]`: the server's own options, but for the namespaces.
    pub(crate) hub: HubOptions,
    /// `[namespaces.NAME]`: a file's set replaces the built-in one whole.
    pub(crate) namespaces: BTreeMap<NamespaceName, NamespaceOptions>,
    /// `[proxies.NAME]`: the application backend's endpoints hooks call.
    pub(crate) proxies: BTreeMap<String, ProxyEndpoint>,
    /// The proxy `rpc` goes to; none: `rpc` is refused.
    pub(crate) rpc_proxy: Option<String>,
    /// The proxy that says who a connection without credentials is.
    pub(crate) connect_proxy: Option<String>,
}

/// `[timeouts]`: durations such as `"25s"`, `"2m"`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Timeouts {
    /// Interval between server pings; zero sends none.
    #[serde(with = "switchboard_server::duration_str")]
    pub(crate) ping_interval: Duration,
    /// Close a connection whose pong is this late.
    #[serde(with = "switchboard_server::duration_str")]
    pub(crate) pong_timeout: Duration,
    /// Close a connection that sent nothing for this long; zero never does.
    #[serde(with = "switchboard_server::duration_str")]
    pub(crate) idle_timeout: Duration,
    /// Drop a connection without a complete request head after this long.
    #[serde(with = "switchboard_server::duration_str")]
    pub(crate) handshake_timeout: Duration,
    /// How long shutdown waits for connections to close.
    #[serde(with = "switchboard_server::duration_str")]
    pub(crate) shutdown_timeout: Duration,
    /// The time over which shutdown closes open `/ws` connections.
    #[serde(with = "switchboard_server::duration_str")]
    pub(crate) drain_window: Duration,
}

/// `[limits]`: message size, connection counts and rates.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Limits {
    /// Largest WebSocket message and frame, in bytes.
    pub(crate) max_message_size: usize,
    /// Most WebSocket connections at once; 0: no limit.
    pub(crate) max_connections: usize,
    /// Most WebSocket connections at once from one address; 0: no limit.
    pub(crate) max_connections_per_ip: usize,
    /// Upgrade requests to `/ws` per address.
    pub(crate) handshake_rate: RateArg,
    /// Commands per `/ws` connection.
    pub(crate) message_rate: RateArg,
    /// Message bytes per `/ws` connection.
    pub(crate) byte_rate: RateArg,
    /// Commands per address.
    pub(crate) address_message_rate: RateArg,
    /// Message bytes per address.
    pub(crate) address_byte_rate: RateArg,
    /// `/api/` requests without the key per address.
    pub(crate) api_rate: RateArg,
    /// Leave loopback clients out of the per-address limits.
    pub(crate) exempt_loopback: bool,
}

/// `[auth]`: one token key source (`jwt_secret`, `jwt_public_key` + `jwt_algorithm`, or
/// `jwks`) and the rest of the credential checks.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Auth {
    /// HMAC secret verifying HS256 tokens, at least 32 bytes.
    #[serde(deserialize_with = "jwt_secret")]
    pub(crate) jwt_secret: Option<Secret>,
    /// PEM public key file verifying tokens of `jwt_algorithm`.
    pub(crate) jwt_public_key: Option<PathBuf>,
    /// The algorithm tokens must use with `jwt_public_key`.
    #[serde(deserialize_with = "algorithm")]
    pub(crate) jwt_algorithm: Option<String>,
    /// JWKS file with the keys verifying tokens.
    pub(crate) jwks: Option<PathBuf>,
    /// Required token issuer.
    pub(crate) jwt_issuer: Option<String>,
    /// Required token audience.
    pub(crate) jwt_audience: Option<String>,
    /// Refuse connections without valid credentials.
    pub(crate) required: bool,
    /// First-message mode.
    pub(crate) first_message: bool,
    /// Cookie carrying the token.
    pub(crate) token_cookie: Option<String>,
}

/// `[tls]`: a certificate and key, or the development certificate.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Tls {
    /// PEM certificate chain.
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub(crate) key: Option<PathBuf>,
    /// Serve a generated self-signed certificate for localhost.
    pub(crate) dev: bool,
}

/// `[broker]`: the backplane and the Redis and NATS brokers' settings.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Broker {
    /// `memory` or a Redis URL.
    pub(crate) url: BrokerArg,
    /// Prefix of every Redis key and pub/sub topic.
    pub(crate) redis_key_prefix: String,
    /// At start, wait until Redis answers.
    pub(crate) redis_wait: bool,
    /// Bytes of history one channel keeps in Redis; 0: no cap.
    pub(crate) redis_max_history_bytes: usize,
    /// Prefix of every NATS subject, stream and bucket name.
    pub(crate) nats_subject_prefix: String,
    /// At start, wait until NATS answers.
    pub(crate) nats_wait: bool,
    /// Bytes of history one channel serves from NATS; 0: no cap.
    pub(crate) nats_max_history_bytes: usize,
    /// A NATS `.creds` file to authenticate with.
    pub(crate) nats_credentials: Option<PathBuf>,
    /// PEM root certificates for a NATS server with a private CA.
    pub(crate) nats_tls_ca: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        let c = Config::default();
        let redis = RedisConfig::default();
        let nats = NatsConfig::default();
        let r = &c.rate_limits;
        Self {
            listen: c.listen,
            echo: c.echo,
            // The demo is the binary's own: on unless turned off.
            demo: true,
            api_key: c.api_key.clone(),
            admin_secret: c.admin_secret.clone(),
            log_format: LogFormat::default(),
            timeouts: Timeouts {
                ping_interval: c.ping_interval.unwrap_or_default(),
                pong_timeout: c.pong_timeout,
                idle_timeout: c.idle_timeout.unwrap_or_default(),
                handshake_timeout: c.handshake_timeout,
                shutdown_timeout: c.shutdown_timeout,
                drain_window: c.drain_window,
            },
            limits: Limits {
                max_message_size: c.limits.max_message_size,
                max_connections: r.max_connections,
                max_connections_per_ip: r.max_connections_per_ip,
                handshake_rate: RateArg(r.handshake_rate),
                message_rate: RateArg(r.message_rate),
                byte_rate: RateArg(r.byte_rate),
                address_message_rate: RateArg(r.address_message_rate),
                address_byte_rate: RateArg(r.address_byte_rate),
                api_rate: RateArg(r.api_rate),
                exempt_loopback: r.exempt_loopback,
            },
            auth: Auth {
                jwt_secret: None,
                jwt_public_key: None,
                jwt_algorithm: None,
                jwks: None,
                jwt_issuer: None,
                jwt_audience: None,
                required: c.auth.required,
                first_message: c.auth.first_message,
                token_cookie: c.auth.token_cookie.clone(),
            },
            origins: c.origins.clone(),
            transports: c.transports.clone(),
            compression: c.compression.clone(),
            proxies: c.proxies.clone(),
            rpc_proxy: c.rpc_proxy.clone(),
            connect_proxy: c.connect_proxy.clone(),
            tls: match &c.tls {
                Some(TlsSource::Files { cert, key }) => {
                    Tls { cert: Some(cert.clone()), key: Some(key.clone()), dev: false }
                }
                Some(TlsSource::DevSelfSigned) => Tls { cert: None, key: None, dev: true },
                _ => Tls { cert: None, key: None, dev: false },
            },
            broker: Broker {
                url: BrokerArg::Memory,
                redis_key_prefix: redis.key_prefix,
                redis_wait: redis.wait_for_redis,
                redis_max_history_bytes: redis.max_history_bytes,
                nats_subject_prefix: nats.subject_prefix,
                nats_wait: nats.wait_for_nats,
                nats_max_history_bytes: nats.max_history_bytes,
                nats_credentials: nats.credentials_file,
                nats_tls_ca: nats.tls_root_certificates,
            },
            namespaces: c
                .hub
                .namespaces
                .iter()
                .map(|(name, options)| (NamespaceName(name.clone()), options.clone()))
                .collect(),
            hub: c.hub,
        }
    }
}

/// A table left out of the file, or a key left out of a table, keeps the built-in default.
macro_rules! section_defaults {
    ($($section:ident: $ty:ty),*) => {
        $(impl Default for $ty {
            fn default() -> Self {
                Settings::default().$section
            }
        })*
    };
}

section_defaults!(timeouts: Timeouts, limits: Limits, auth: Auth, tls: Tls, broker: Broker);

impl Settings {
    /// The first rule that two keys break together: the `[section]` and key to point at,
    /// and why. Each table's values are checked as they are read; these rules span keys.
    pub(crate) fn conflict(&self) -> Option<(&'static str, &'static str, &'static str)> {
        let (tls, auth) = (&self.tls, &self.auth);
        match (&tls.cert, &tls.key) {
            (Some(_), None) => return Some(("tls", "cert", "tls.cert needs tls.key")),
            (None, Some(_)) => return Some(("tls", "key", "tls.key needs tls.cert")),
            (Some(_), Some(_)) if tls.dev => {
                return Some(("tls", "dev", "tls.dev and tls.cert exclude each other"));
            }
            _ => {}
        }
        if auth.jwt_public_key.is_some() {
            if auth.jwt_algorithm.is_none() {
                let why = "auth.jwt_public_key needs auth.jwt_algorithm";
                return Some(("auth", "jwt_public_key", why));
            }
            if auth.jwt_secret.is_some() {
                let why = "auth.jwt_secret and auth.jwt_public_key exclude each other";
                return Some(("auth", "jwt_secret", why));
            }
        }
        if auth.jwks.is_some() && (auth.jwt_secret.is_some() || auth.jwt_public_key.is_some()) {
            let why = "auth.jwks excludes auth.jwt_secret and auth.jwt_public_key";
            return Some(("auth", "jwks", why));
        }
        None
    }

    /// The server's configuration.
    ///
    /// # Errors
    ///
    /// A token key file that cannot be read, or token settings the verifier refuses.
    pub(crate) fn to_config(&self) -> anyhow::Result<Config> {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        let (t, l, a) = (&self.timeouts, &self.limits, &self.auth);
        let mut config = Config::default();
        config.listen = self.listen;
        config.echo = self.echo;
        config.api_key.clone_from(&self.api_key);
        config.admin_secret.clone_from(&self.admin_secret);
        config.ping_interval = nonzero(t.ping_interval);
        config.pong_timeout = t.pong_timeout;
        config.idle_timeout = nonzero(t.idle_timeout);
        config.handshake_timeout = t.handshake_timeout;
        config.shutdown_timeout = t.shutdown_timeout;
        config.drain_window = t.drain_window;
        config.limits = switchboard_server::Limits::with_max_message_size(l.max_message_size);
        let r = &mut config.rate_limits;
        r.max_connections = l.max_connections;
        r.max_connections_per_ip = l.max_connections_per_ip;
        r.handshake_rate = l.handshake_rate.0;
        r.message_rate = l.message_rate.0;
        r.byte_rate = l.byte_rate.0;
        r.address_message_rate = l.address_message_rate.0;
        r.address_byte_rate = l.address_byte_rate.0;
        r.api_rate = l.api_rate.0;
        r.exempt_loopback = l.exempt_loopback;
        config.auth.verifier = a.verifier()?.map(Arc::new);
        config.auth.required = a.required;
        config.auth.first_message = a.first_message;
        config.auth.token_cookie.clone_from(&a.token_cookie);
        config.origins = self.origins.clone();
        config.transports = self.transports.clone();
        config.compression = self.compression.clone();
        config.proxies = self.proxies.clone();
        config.rpc_proxy.clone_from(&self.rpc_proxy);
        config.connect_proxy.clone_from(&self.connect_proxy);
        config.tls = match (&self.tls.cert, &self.tls.key) {
            (Some(cert), Some(key)) => {
                Some(TlsSource::Files { cert: cert.clone(), key: key.clone() })
            }
            _ if self.tls.dev => Some(TlsSource::DevSelfSigned),
            _ => None,
        };
        config.hub = self.hub.clone();
        config.hub.namespaces =
            self.namespaces.iter().map(|(name, ns)| (name.0.clone(), ns.clone())).collect();
        Ok(config)
    }

    /// The Redis broker's settings, for `url`.
    pub(crate) fn redis_config(&self, url: &str) -> RedisConfig {
        let mut config = RedisConfig::new(url);
        config.key_prefix.clone_from(&self.broker.redis_key_prefix);
        config.wait_for_redis = self.broker.redis_wait;
        config.max_history_bytes = self.broker.redis_max_history_bytes;
        config
    }

    /// The NATS broker's settings, for `url`.
    pub(crate) fn nats_config(&self, url: &str) -> NatsConfig {
        let mut config = NatsConfig::new(url);
        config.subject_prefix.clone_from(&self.broker.nats_subject_prefix);
        config.wait_for_nats = self.broker.nats_wait;
        config.max_history_bytes = self.broker.nats_max_history_bytes;
        config.credentials_file.clone_from(&self.broker.nats_credentials);
        config.tls_root_certificates.clone_from(&self.broker.nats_tls_ca);
        config
    }
}

impl Auth {
    /// The token verifier these settings describe, if any.
    fn verifier(&self) -> anyhow::Result<Option<switchboard_auth::Verifier>> {
        use switchboard_auth::{Algorithm, VerifierBuilder};
        let builder = if let Some(secret) = &self.jwt_secret {
            VerifierBuilder::hmac(Algorithm::Hs256, secret.expose().as_bytes().to_vec())
        } else if let Some(path) = &self.jwt_public_key {
            let name = self.jwt_algorithm.as_deref().unwrap_or_default();
            let alg: Algorithm =
                name.parse().map_err(|_| anyhow::anyhow!("unknown --jwt-algorithm {name:?}"))?;
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            VerifierBuilder::pem(alg, pem)
        } else if let Some(path) = &self.jwks {
            let json =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            VerifierBuilder::jwks(json)
        } else {
            return Ok(None);
        };
        let builder = match &self.jwt_issuer {
            Some(iss) => builder.issuer(iss.clone()),
            None => builder,
        };
        let builder = match &self.jwt_audience {
            Some(aud) => builder.audience(aud.clone()),
            None => builder,
        };
        Ok(Some(builder.build().context("invalid token verification settings")?))
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Lines for people.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// A namespace name: `""` (the default namespace) or what may precede `:` in a channel.
#[derive(Clone, Debug, Eq, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub(crate) struct NamespaceName(pub(crate) String);

impl NamespaceName {
    /// `name`, if it may name a namespace.
    pub(crate) fn new(name: &str) -> Result<Self, String> {
        let channel = format!("{name}:x");
        if name.is_empty() || switchboard_proto::channel::namespace_of(&channel) == Ok(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "invalid namespace name {name:?}: expected [A-Za-z0-9_.-]+, or \"\" for the \
                 default namespace"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for NamespaceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A rate: `RATE[:BURST]` with optional binary suffixes, or `off`; the same in a flag and
/// in the file.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct RateArg(pub(crate) Option<Rate>);

impl std::str::FromStr for RateArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        let (rate, burst) = s.split_once(':').unwrap_or((s, s));
        let rate = quantity(rate)?;
        let burst = quantity(burst)?;
        Ok(Self(Some(Rate::new(rate, burst))))
    }
}

impl TryFrom<String> for RateArg {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RateArg> for String {
    fn from(rate: RateArg) -> Self {
        rate.to_string()
    }
}

impl std::fmt::Display for RateArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(rate) => write!(f, "{}:{}", Quantity(rate.per_second), Quantity(rate.burst)),
            None => f.write_str("off"),
        }
    }
}

/// A positive number with an optional K, M or G suffix (KiB, MiB, GiB: powers of 1024).
fn quantity(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(format!("{s:?}: expected a number with K, M or G, or \"off\"")),
    };
    let number: u64 = number.parse().map_err(|_| format!("{s:?}: expected a number"))?;
    match number.checked_mul(1 << shift) {
        Some(0) => Err(format!("{s:?}: must be positive (\"off\" turns the limit off)")),
        Some(value) => Ok(value),
        None => Err(format!("{s:?}: too large")),
    }
}

/// Shows a number with the largest binary suffix that divides it.
struct Quantity(u64);

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        for (shift, suffix) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n != 0 && n.is_multiple_of(1 << shift) {
                return write!(f, "{}{suffix}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

/// The backplane: the in-memory broker, or Redis or NATS at a URL (which may hold a
/// password, so it is kept as a secret).
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "String")]
pub(crate) enum BrokerArg {
    /// One node, nothing else to run.
    Memory,
    /// `redis://` or `rediss://`.
    Redis(Secret),
    /// `nats://` or `tls://`, possibly several separated by commas.
    Nats(Secret),
}

impl std::str::FromStr for BrokerArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("memory") {
            Ok(Self::Memory)
        } else if s.starts_with("redis://") || s.starts_with("rediss://") {
            Ok(Self::Redis(s.into()))
        } else if s.starts_with("nats://") || s.starts_with("tls://") {
            Ok(Self::Nats(s.into()))
        } else {
            Err("expected \"memory\", a redis:// or rediss:// URL, or a nats:// or tls:// URL"
                .to_owned())
        }
    }
}

impl TryFrom<String> for BrokerArg {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl Serialize for BrokerArg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Memory => s.serialize_str("memory"),
            Self::Redis(url) | Self::Nats(url) => url.serialize(s),
        }
    }
}

/// `[auth] jwt_secret`, checked for length.
fn jwt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let secret = String::deserialize(d)?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(serde::de::Error::custom(format!(
            "jwt_secret too short: {} < {MIN_SECRET_LEN} bytes",
            secret.len()
        )));
    }
    Ok(Some(secret.into()))
}

/// `[auth] jwt_algorithm`, checked to be one the verifier knows.
fn algorithm<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    match name.parse::<switchboard_auth::Algorithm>() {
        Ok(_) => Ok(Some(name)),
        Err(_) => Err(serde::de::Error::custom(format!("unknown algorithm {name:?}"))),
    }
}

/// The shortest HS256 secret accepted (RFC 7518 §3.2: a key as large as the hash output).
const MIN_SECRET_LEN: usize = 32;
