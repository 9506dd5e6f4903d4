//! `switchboard serve --config FILE`: every serve setting in one TOML file, beneath the flags
//! and `SWITCHBOARD_*` variables (flag > environment > file > built-in default); namespaces
//! given with `--namespace` or `SWITCHBOARD_NAMESPACES` are set over the file's.
//! `switchboard config default` prints the defaults as a file; `switchboard config check
//! FILE` validates one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use switchboard_server::{Anonymous, Config, HubOptions, LimitOptions, NamespaceOptions};
use toml::Spanned;

use crate::{BrokerArg, LogFormat, RateArg, ServeArgs};

/// `switchboard config`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Print a commented configuration file holding every key at its default.
    Default,
    /// Check a configuration file: print `ok`, or the first error with its line and column.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

/// Runs `switchboard config …`.
pub(crate) fn run(args: &ConfigArgs) -> ExitCode {
    match &args.command {
        ConfigCommand::Default => {
            print!("{}", default_file());
            ExitCode::SUCCESS
        }
        ConfigCommand::Check { file } => match load(file) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchboard: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A configuration file as written: each key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    listen: Option<SocketAddr>,
    echo: Option<bool>,
    demo: Option<bool>,
    api_key: Option<String>,
    #[serde(default, deserialize_with = "log_format")]
    log_format: Option<LogFormat>,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    auth: Auth,
    #[serde(default)]
    origins: Origins,
    #[serde(default)]
    tls: Tls,
    #[serde(default)]
    broker: Broker,
    #[serde(default)]
    hub: Hub,
    namespaces: Option<BTreeMap<NamespaceName, Namespace>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Timeouts {
    #[serde(default, deserialize_with = "duration")]
    ping_interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pong_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    handshake_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    shutdown_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    drain_window: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    max_message_size: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    #[serde(default, deserialize_with = "rate")]
    handshake_rate: Option<RateArg>,
    #[serde(default, deserialize_with = "rate")]
    message_rate: Option<RateArg>,
    #[serde(default, deserialize_with = "rate")]
    byte_rate: Option<RateArg>,
    #[serde(default, deserialize_with = "rate")]
    address_message_rate: Option<RateArg>,
    #[serde(default, deserialize_with = "rate")]
    address_byte_rate: Option<RateArg>,
    #[serde(default, deserialize_with = "rate")]
    api_rate: Option<RateArg>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Auth {
    jwt_secret: Option<Spanned<Secret>>,
    jwt_public_key: Option<Spanned<PathBuf>>,
    #[serde(default, deserialize_with = "algorithm")]
    jwt_algorithm: Option<String>,
    jwks: Option<Spanned<PathBuf>>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    required: Option<bool>,
    first_message: Option<bool>,
    token_cookie: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Origins {
    allowed: Option<Vec<String>>,
    allow_localhost: Option<bool>,
    allow_missing: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tls {
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    dev: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Broker {
    #[serde(default, deserialize_with = "broker")]
    url: Option<BrokerArg>,
    redis_key_prefix: Option<String>,
    redis_wait: Option<bool>,
    redis_max_history_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hub {
    max_subscriptions: Option<usize>,
    outbound_queue_bytes: Option<usize>,
    max_message_size: Option<usize>,
    history_memory: Option<usize>,
    max_channels: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Namespace {
    history_size: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    history_ttl: Option<Duration>,
    presence: Option<bool>,
    join_leave: Option<bool>,
    allow_publish: Option<bool>,
    max_subscribers: Option<usize>,
    anonymous: Option<AnonymousValue>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AnonymousValue {
    Deny,
    Subscribe,
    Publish,
}

/// A namespace name: `""` (the default namespace) or what may precede `:` in a channel.
#[derive(Debug, Eq, Ord, PartialEq, PartialOrd)]
struct NamespaceName(String);

impl<'de> Deserialize<'de> for NamespaceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let channel = format!("{name}:x");
        if name.is_empty() || switchboard_proto::channel::namespace_of(&channel) == Ok(&name) {
            Ok(Self(name))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid namespace name {name:?}: expected [A-Za-z0-9_.-]+, or \"\" for the \
                 default namespace"
            )))
        }
    }
}

/// A JWT secret, checked for length.
#[derive(Debug)]
struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secret = String::deserialize(d)?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(serde::de::Error::custom(format!(
                "jwt_secret too short: {} < {MIN_SECRET_LEN} bytes",
                secret.len()
            )));
        }
        Ok(Self(secret))
    }
}

/// Reads and checks the file at `path`.
///
/// # Errors
///
/// `PATH:LINE:COLUMN: reason` for a file that is not valid, or why it cannot be read.
pub(crate) fn load(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|(offset, message)| {
        let (line, column) = line_column(&text, offset);
        anyhow::anyhow!("{}:{line}:{column}: {message}", path.display())
    })
}

/// Parses a file's text; an error is its byte offset and reason.
fn parse(text: &str) -> Result<FileConfig, (usize, String)> {
    let file: FileConfig = toml::from_str(text)
        .map_err(|e| (e.span().map_or(0, |s| s.start), e.message().to_owned()))?;
    let at = |span: std::ops::Range<usize>, message: &str| Err((span.start, message.to_owned()));
    match (&file.tls.cert, &file.tls.key, &file.tls.dev) {
        (Some(cert), None, _) => return at(cert.span(), "tls.cert needs tls.key"),
        (None, Some(key), _) => return at(key.span(), "tls.key needs tls.cert"),
        (Some(_), _, Some(dev)) if *dev.get_ref() => {
            return at(dev.span(), "tls.dev and tls.cert exclude each other");
        }
        _ => {}
    }
    let auth = &file.auth;
    if let Some(key) = &auth.jwt_public_key {
        if auth.jwt_algorithm.is_none() {
            return at(key.span(), "auth.jwt_public_key needs auth.jwt_algorithm");
        }
        if let Some(secret) = &auth.jwt_secret {
            return at(secret.span(), "auth.jwt_secret and auth.jwt_public_key exclude each other");
        }
    }
    if let Some(jwks) = &auth.jwks
        && (auth.jwt_secret.is_some() || auth.jwt_public_key.is_some())
    {
        return at(jwks.span(), "auth.jwks excludes auth.jwt_secret and auth.jwt_public_key");
    }
    Ok(file)
}

/// Fills in `args` from `file` where neither a flag nor the environment set a value
/// (`explicit` says which clap ids they set).
pub(crate) fn apply(file: &FileConfig, args: &mut ServeArgs, explicit: &dyn Fn(&str) -> bool) {
    macro_rules! set {
        ($id:literal, $field:expr, $value:expr) => {
            if !explicit($id)
                && let Some(value) = $value
            {
                $field = value;
            }
        };
    }
    set!("listen", args.listen, file.listen);
    set!("no_echo", args.no_echo, file.echo.map(|on| !on));
    set!("no_demo", args.no_demo, file.demo.map(|on| !on));
    set!("api_key", args.api_key, file.api_key.clone().map(Some));
    set!("log_format", args.log_format, file.log_format);

    let t = &file.timeouts;
    set!("ping_interval", args.ping_interval, t.ping_interval);
    set!("pong_timeout", args.pong_timeout, t.pong_timeout);
    set!("idle_timeout", args.idle_timeout, t.idle_timeout);
    set!("handshake_timeout", args.handshake_timeout, t.handshake_timeout);
    set!("shutdown_timeout", args.shutdown_timeout, t.shutdown_timeout);
    set!("drain_window", args.drain_window, t.drain_window);

    let l = &file.limits;
    set!("max_message_size", args.max_message_size, l.max_message_size);
    set!("max_connections", args.max_connections, l.max_connections);
    set!("max_connections_per_ip", args.max_connections_per_ip, l.max_connections_per_ip);
    set!("handshake_rate", args.handshake_rate, l.handshake_rate);
    set!("rate_limit_messages", args.rate_limit_messages, l.message_rate);
    set!("rate_limit_bytes", args.rate_limit_bytes, l.byte_rate);
    set!("rate_limit_address_messages", args.rate_limit_address_messages, l.address_message_rate);
    set!("rate_limit_address_bytes", args.rate_limit_address_bytes, l.address_byte_rate);
    set!("api_rate", args.api_rate, l.api_rate);

    let a = &file.auth;
    // The key source is one choice: a flag naming any key replaces the file's key whole.
    if !["jwt_secret", "jwt_public_key", "jwt_algorithm", "jwks"].iter().any(|id| explicit(id)) {
        args.jwt_secret = a.jwt_secret.as_ref().map(|s| s.get_ref().0.clone());
        args.jwt_public_key = a.jwt_public_key.as_ref().map(|p| p.get_ref().clone());
        args.jwt_algorithm.clone_from(&a.jwt_algorithm);
        args.jwks = a.jwks.as_ref().map(|p| p.get_ref().clone());
    }
    set!("jwt_issuer", args.jwt_issuer, a.jwt_issuer.clone().map(Some));
    set!("jwt_audience", args.jwt_audience, a.jwt_audience.clone().map(Some));
    set!("require_auth", args.require_auth, a.required);
    set!("first_message_auth", args.first_message_auth, a.first_message);
    set!("token_cookie", args.token_cookie, a.token_cookie.clone().map(Some));

    let o = &file.origins;
    set!("allowed_origins", args.allowed_origins, o.allowed.clone());
    set!("no_localhost_origins", args.no_localhost_origins, o.allow_localhost.map(|on| !on));
    set!("require_origin", args.require_origin, o.allow_missing.map(|on| !on));

    // Likewise the certificate: files or the development one.
    if !["tls_cert", "tls_key", "dev_tls"].iter().any(|id| explicit(id)) {
        args.tls_cert = file.tls.cert.as_ref().map(|p| p.get_ref().clone());
        args.tls_key = file.tls.key.as_ref().map(|p| p.get_ref().clone());
        args.dev_tls = file.tls.dev.as_ref().is_some_and(|d| *d.get_ref());
    }

    let b = &file.broker;
    set!("broker", args.broker, b.url.clone());
    set!("redis_key_prefix", args.redis_key_prefix, b.redis_key_prefix.clone());
    set!("redis_wait", args.redis_wait, b.redis_wait);
    set!("redis_max_history_bytes", args.redis_max_history_bytes, b.redis_max_history_bytes);

    let h = &file.hub;
    set!("max_subscriptions", args.max_subscriptions, h.max_subscriptions);
    set!("outbound_queue_bytes", args.outbound_queue_bytes, h.outbound_queue_bytes);
    set!("hub_max_message_size", args.hub_max_message_size, h.max_message_size);
    set!("history_memory", args.history_memory, h.history_memory);
    set!("max_channels", args.max_channels, h.max_channels);
}

/// Applies the file's `[namespaces]`, which replace the built-in namespaces whole.
pub(crate) fn apply_namespaces(file: &FileConfig, config: &mut Config) {
    if let Some(namespaces) = &file.namespaces {
        config.hub.namespaces = namespaces
            .iter()
            .map(|(name, ns)| (name.0.clone(), ns.over(NamespaceOptions::default())))
            .collect();
    }
}

impl Namespace {
    /// `base` with the keys this one sets.
    fn over(&self, mut options: NamespaceOptions) -> NamespaceOptions {
        if let Some(v) = self.history_size {
            options.history_size = v;
        }
        if let Some(v) = self.history_ttl {
            options.history_ttl = v;
        }
        if let Some(v) = self.presence {
            options.presence = v;
        }
        if let Some(v) = self.join_leave {
            options.join_leave = v;
        }
        if let Some(v) = self.allow_publish {
            options.allow_publish = v;
        }
        if let Some(v) = self.max_subscribers {
            options.max_subscribers = v;
        }
        if let Some(v) = self.anonymous {
            options.anonymous = match v {
                AnonymousValue::Deny => Anonymous::Deny,
                AnonymousValue::Subscribe => Anonymous::Subscribe,
                AnonymousValue::Publish => Anonymous::Publish,
            };
        }
        options
    }
}

/// `--namespace NAME:KEY=VALUE,…`: a namespace's keys, over the file's or built-in ones.
#[derive(Clone, Debug)]
pub(crate) struct NamespaceSpec {
    name: String,
    keys: std::sync::Arc<Namespace>,
}

impl NamespaceSpec {
    /// Sets the keys on the namespace, creating it (from the defaults) when it is new.
    pub(crate) fn apply(&self, config: &mut Config) {
        let namespaces = &mut config.hub.namespaces;
        let base = namespaces.remove(&self.name).unwrap_or_default();
        namespaces.insert(self.name.clone(), self.keys.over(base));
    }
}

impl std::str::FromStr for NamespaceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, keys) = s.split_once(':').unwrap_or((s, ""));
        let name = name.trim();
        let mut table = toml::Table::new();
        for pair in keys.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("{pair:?}: expected KEY=VALUE"));
            };
            let (key, value) = (key.trim(), value.trim());
            let value = if let Ok(n) = value.parse::<i64>() {
                toml::Value::Integer(n)
            } else if let Ok(b) = value.parse::<bool>() {
                toml::Value::Boolean(b)
            } else {
                toml::Value::String(value.to_owned())
            };
            // Each key on its own first, so that an error names the key it is about.
            let one = toml::Table::from_iter([(key.to_owned(), value.clone())]);
            namespace_file(name, one).map_err(|e| format!("namespace {name:?}: {pair}: {e}"))?;
            table.insert(key.to_owned(), value);
        }
        let (name, keys) = namespace_file(name, table)
            .map_err(|e| format!("namespace {name:?}: {e}"))?
            .namespaces
            .and_then(|n| n.into_iter().next())
            .ok_or_else(|| format!("{s:?}: expected NAME:KEY=VALUE,…"))?;
        Ok(Self { name: name.0, keys: std::sync::Arc::new(keys) })
    }
}

/// A file with the single table `[namespaces.NAME]`: the same rules and messages as a
/// file's.
fn namespace_file(name: &str, keys: toml::Table) -> Result<FileConfig, String> {
    let namespaces = toml::Table::from_iter([(name.to_owned(), toml::Value::Table(keys))]);
    let root = toml::Table::from_iter([("namespaces".to_owned(), toml::Value::Table(namespaces))]);
    root.try_into().map_err(|e: toml::de::Error| e.message().to_owned())
}

/// The configuration file of the built-in defaults, every key with a comment.
pub(crate) fn default_file() -> String {
    let config = Config::default();
    let limits = LimitOptions::default();
    let hub = HubOptions::default();
    let d = |d: Option<Duration>| humantime::format_duration(d.unwrap_or_default()).to_string();
    let mut out = format!(
        r#"# Switchboard configuration for `switchboard serve --config FILE` (docs/configuration.md).
# Every key is optional. A flag or SWITCHBOARD_* variable overrides the key it names.

# Address and port to listen on (--listen, SWITCHBOARD_LISTEN).
listen = "{listen}"
# Serve the /echo endpoint (--no-echo).
echo = {echo}
# Serve the demo at / and run its simulated ticker (--no-demo).
demo = {demo}
# Key for the HTTP API under /api/ (`Authorization: apikey <key>`); unset: API off.
# api_key = "a long random key"
# Log output format: "human" or "json" (--log-format).
log_format = "human"

[timeouts]
# Interval between server pings ("0s" disables pings).
ping_interval = "{ping}"
# Close a connection whose pong is this late.
pong_timeout = "{pong}"
# Close a connection that sent nothing for this long ("0s" disables).
idle_timeout = "{idle}"
# Drop a connection that has not completed its request head in this time.
handshake_timeout = "{handshake}"
# How long shutdown waits for connections to close.
shutdown_timeout = "{shutdown}"
# On shutdown, the time over which open /ws connections are closed (4003) in batches.
drain_window = "{drain}"

[limits]
# Largest WebSocket message (and frame) accepted, in bytes.
max_message_size = {max_message_size}
# Most WebSocket connections open at once (0: no limit); past it, 503.
max_connections = {max_connections}
# Most WebSocket connections open at once from one address (0: no limit); past it, 429.
max_connections_per_ip = {max_connections_per_ip}
# Upgrade requests to /ws per second from one address, "RATE[:BURST]" or "off".
handshake_rate = "{handshake_rate}"
# Commands per second on one /ws connection, "RATE[:BURST]" or "off".
message_rate = "{message_rate}"
# Message bytes per second on one /ws connection (K, M, G suffixes), or "off".
byte_rate = "{byte_rate}"
# Commands per second from one address, shared by all its /ws connections, or "off".
address_message_rate = "{address_message_rate}"
# Message bytes per second from one address, shared by all its /ws connections, or "off".
address_byte_rate = "{address_byte_rate}"
# Requests to /api/ without the API key per second from one address, or "off"; past it, 429.
api_rate = "{api_rate}"

[auth]
# HMAC secret verifying HS256 tokens (at least 32 bytes); unset: no tokens accepted.
# jwt_secret = "at least 32 bytes of random secret"
# PEM public key file verifying tokens of jwt_algorithm (instead of jwt_secret).
# jwt_public_key = "/etc/switchboard/jwt.pem"
# The algorithm tokens must use with jwt_public_key (e.g. RS256, ES256, EdDSA).
# jwt_algorithm = "RS256"
# JWKS file with the keys verifying tokens, selected by `kid` (instead of the above).
# jwks = "/etc/switchboard/jwks.json"
# Required token issuer (`iss`); unset: any.
# jwt_issuer = "https://auth.example.com"
# Required token audience (`aud`); unset: any.
# jwt_audience = "switchboard"
# Refuse connections without valid credentials (401 before the upgrade).
required = {required}
# Accept the WebSocket first and require a `connect` with a token within 5 s.
first_message = {first_message}
# Cookie carrying the token; unset: none.
# token_cookie = "token"

[origins]
# Browser origins allowed besides the server's own (`https://*.example.com` for subdomains).
allowed = []
# Allow browser origins on localhost, for development.
allow_localhost = {allow_localhost}
# Allow requests without an Origin header (non-browser clients).
allow_missing = {allow_missing}

[tls]
# PEM certificate chain: serve HTTPS and WSS (with key). Reloaded on SIGHUP.
# cert = "/etc/switchboard/cert.pem"
# PEM private key of cert.
# key = "/etc/switchboard/key.pem"
# Serve TLS with a generated self-signed certificate for localhost (testing only).
dev = false

[broker]
# The backplane: "memory" (one node) or a redis:// or rediss:// URL shared by every node.
url = "memory"
# Prefix of every Redis key and pub/sub topic; the same on every node of a deployment.
redis_key_prefix = "switchboard"
# At start, wait until Redis answers instead of exiting with an error.
redis_wait = false
# Bytes of history one channel keeps in Redis; past it its oldest publications go. 0: no cap.
redis_max_history_bytes = {redis_max_history_bytes}

[hub]
# Most channels one connection may subscribe to.
max_subscriptions = {max_subscriptions}
# Bytes that may wait in one connection's outbound queue before it is closed (4001).
outbound_queue_bytes = {outbound_queue_bytes}
# Largest WebSocket message a client may send on /ws, in bytes.
max_message_size = {hub_max_message_size}
# Bytes of history the in-memory broker holds for all channels together (estimated size in
# memory); past it the oldest publications of the least recently published channels go.
history_memory = {history_memory}
# Channels the in-memory broker holds state for; past it idle ones are forgotten, and new
# ones refused with `unavailable` when all are in use. 0 for no limit.
max_channels = {max_channels}

# Namespaces by name ("" is the default one, for channels without `:`). A [namespaces]
# section replaces this built-in set whole: a namespace left out refuses its channels.
# `--namespace NAME:KEY=VALUE,…` (SWITCHBOARD_NAMESPACES, `;` between namespaces) sets keys
# over these, e.g. `--namespace chat:history_size=500,anonymous=subscribe`.
"#,
        listen = config.listen,
        echo = config.echo,
        demo = true,
        ping = d(config.ping_interval),
        pong = d(Some(config.pong_timeout)),
        idle = d(config.idle_timeout),
        handshake = d(Some(config.handshake_timeout)),
        shutdown = d(Some(config.shutdown_timeout)),
        drain = d(Some(config.drain_window)),
        max_message_size = config.limits.max_message_size,
        max_connections = limits.max_connections,
        max_connections_per_ip = limits.max_connections_per_ip,
        handshake_rate = RateArg(limits.handshake_rate),
        message_rate = RateArg(limits.message_rate),
        byte_rate = RateArg(limits.byte_rate),
        address_message_rate = RateArg(limits.address_message_rate),
        address_byte_rate = RateArg(limits.address_byte_rate),
        api_rate = RateArg(limits.api_rate),
        required = config.auth.required,
        first_message = config.auth.first_message,
        allow_localhost = config.origins.allow_localhost,
        allow_missing = config.origins.allow_missing,
        max_subscriptions = hub.max_subscriptions,
        outbound_queue_bytes = hub.outbound_queue_bytes,
        hub_max_message_size = hub.max_message_size,
        history_memory = hub.history_memory,
        redis_max_history_bytes =
            switchboard_broker_redis::RedisConfig::default().max_history_bytes,
        max_channels = hub.max_channels,
    );
    for (name, ns) in &hub.namespaces {
        let anonymous = match ns.anonymous {
            Anonymous::Deny => "deny",
            Anonymous::Subscribe => "subscribe",
            Anonymous::Publish => "publish",
        };
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            r#"
[namespaces.{name:?}]
# Publications kept per channel for history and recovery (0: none).
history_size = {}
# How long publications stay in history.
history_ttl = "{}"
# Keep a presence list (who is subscribed).
presence = {}
# Push join and leave events to subscribers.
join_leave = {}
# Let clients publish (the HTTP API always may).
allow_publish = {}
# Most subscribers per channel on one node (0: no limit).
max_subscribers = {}
# What connections without credentials may do: "deny", "subscribe" or "publish".
anonymous = "{anonymous}"
"#,
            ns.history_size,
            humantime::format_duration(ns.history_ttl),
            ns.presence,
            ns.join_leave,
            ns.allow_publish,
            ns.max_subscribers,
        );
    }
    out
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    parse_str(d, |s| humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}")))
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RateArg>, D::Error> {
    parse_str(d, str::parse)
}

fn broker<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BrokerArg>, D::Error> {
    parse_str(d, str::parse)
}

fn log_format<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LogFormat>, D::Error> {
    parse_str(d, |s| match s {
        "human" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?}: expected \"human\" or \"json\"")),
    })
}

fn algorithm<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    parse_str(d, |s| match s.parse::<switchboard_auth::Algorithm>() {
        Ok(_) => Ok(s.to_owned()),
        Err(_) => Err(format!("unknown algorithm {s:?}")),
    })
}

/// A string value read with `parse`, whose error becomes the value's error.
fn parse_str<'de, D, T, E>(
    d: D,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    E: std::fmt::Display,
{
    let s = String::deserialize(d)?;
    parse(&s).map(Some).map_err(serde::de::Error::custom)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    (line, column)
}

/// The shortest HS256 secret accepted (RFC 7518 §3.2: a key as large as the hash output).
const MIN_SECRET_LEN: usize = 32;

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{Cli, Command, config_from};

    fn serve_args() -> ServeArgs {
        let cli = Cli::try_parse_from(["switchboard", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("expected serve") };
        *args
    }

    #[test]
    fn default_file_gives_the_built_in_defaults() {
        let file = parse(&default_file()).unwrap();
        let plain = serve_args();
        let mut from_file = serve_args();
        apply(&file, &mut from_file, &|_| false);
        assert_eq!(format!("{from_file:?}"), format!("{plain:?}"));
        let mut config = config_from(&from_file).unwrap();
        apply_namespaces(&file, &mut config);
        let expected = config_from(&plain).unwrap();
        assert_eq!(format!("{config:?}"), format!("{expected:?}"));
        assert_eq!(config.hub.namespaces, HubOptions::default().namespaces);
    }

    #[test]
    fn errors_carry_line_and_column() {
        let error = |text: &str| {
            let (offset, message) = parse(text).unwrap_err();
            let (line, column) = line_column(text, offset);
            format!("{line}:{column}: {message}")
        };
        assert!(error("listen = \"127.0.0.1:1\"\nlistn = 1\n").starts_with("2:1: unknown field"));
        assert!(error("[namespaces.\"a b\"]\n").contains("invalid namespace name"));
        let short = error("[auth]\njwt_secret = \"short\"\n");
        assert!(short.starts_with("2:14: jwt_secret too short: 5 < 32"), "{short}");
        let cert = error("[tls]\ncert = \"c.pem\"\n");
        assert!(cert.starts_with("2:8: tls.cert needs tls.key"), "{cert}");
        assert!(error("[timeouts]\nidle_timeout = \"soon\"\n").starts_with("2:16: "));
    }

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let file = parse("listen = \"127.0.0.1:9\"\necho = false\n").unwrap();
        let mut args = serve_args();
        apply(&file, &mut args, &|id| id == "listen");
        assert_eq!(args.listen, serve_args().listen);
        assert!(args.no_echo);
    }

    #[test]
    fn hub_keys_come_from_the_file_unless_a_flag_sets_them() {
        let file = parse("[hub]\nmax_subscriptions = 7\noutbound_queue_bytes = 4096\n").unwrap();
        let mut args = serve_args();
        apply(&file, &mut args, &|id| id == "outbound_queue_bytes");
        let config = config_from(&args).unwrap();
        assert_eq!(config.hub.max_subscriptions, 7);
        assert_eq!(config.hub.outbound_queue_bytes, HubOptions::default().outbound_queue_bytes);
    }

    #[test]
    fn memory_bounds_come_from_the_file() {
        let file = parse("[hub]\nhistory_memory = 1048576\nmax_channels = 9\n").unwrap();
        let mut args = serve_args();
        apply(&file, &mut args, &|_| false);
        let config = config_from(&args).unwrap();
        assert_eq!((config.hub.history_memory, config.hub.max_channels), (1 << 20, 9));
        let defaults = config_from(&serve_args()).unwrap();
        assert_eq!(defaults.hub.history_memory, HubOptions::default().history_memory);
        assert_eq!(defaults.hub.max_channels, 65_536);
    }

    #[test]
    fn namespace_flags_set_keys_over_the_file() {
        let file = parse("[namespaces.news]\nhistory_size = 20\npresence = false\n").unwrap();
        let mut config = config_from(&serve_args()).unwrap();
        apply_namespaces(&file, &mut config);
        for spec in ["news:presence=true, anonymous=subscribe", ":anonymous=publish", "bench"] {
            spec.parse::<NamespaceSpec>().unwrap().apply(&mut config);
        }
        let news = &config.hub.namespaces["news"];
        assert_eq!(news.history_size, 20, "a key the flag leaves alone keeps the file's value");
        assert!(news.presence);
        assert_eq!(news.anonymous, Anonymous::Subscribe);
        assert_eq!(config.hub.namespaces[""].anonymous, Anonymous::Publish);
        assert_eq!(config.hub.namespaces["bench"], NamespaceOptions::default());
        assert_eq!(config.hub.namespaces.len(), 3);
    }

    #[test]
    fn bad_namespace_flags_say_what_is_wrong() {
        let error = |s: &str| s.parse::<NamespaceSpec>().unwrap_err();
        assert!(error("news:histroy_size=3").contains("unknown field `histroy_size`"));
        assert!(error("news:history_size=many").contains("history_size=many: invalid type"));
        assert!(error("news:anonymous=everyone").contains("unknown variant `everyone`"));
        assert!(error("news:history_ttl=soon").contains("soon"));
        assert!(error("news:presence").contains("expected KEY=VALUE"));
        assert!(error("bad name:presence=true").contains("invalid namespace name"));
    }
}
