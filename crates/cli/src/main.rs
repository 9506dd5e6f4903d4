//! The `switchboard` command.

// A command-line tool: its results (tokens, messages) go to standard output.
#![allow(clippy::print_stdout)]

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
mod config_file;
mod connect;
mod demo;
mod publish;
mod subscribe;
mod token;

use switchboard_broker_redis::{RedisBroker, RedisConfig};
use switchboard_server::{Config, LimitOptions, Rate, Server, TlsSource};

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "A real-time WebSocket messaging server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (defaults need no configuration: http://127.0.0.1:8080).
    Serve(Box<ServeArgs>),
    /// Mint a development token (HS256) for a server started with --jwt-secret.
    Token(token::TokenArgs),
    /// Open a WebSocket session: send each line of input, print each message received.
    Connect(Box<connect::ConnectArgs>),
    /// Print the publications of channels as JSON lines, reconnecting when needed.
    Subscribe(Box<subscribe::SubscribeArgs>),
    /// Publish DATA (or each line of input) to a channel and print each acknowledgement.
    Publish(Box<publish::PublishArgs>),
    /// Print the default configuration file (`config default`) or check one (`config check`).
    Config(config_file::ConfigArgs),
    /// Generate load against a WebSocket server and measure it (docs/benchmarks.md).
    Bench(Box<switchboard_load::BenchArgs>),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML configuration file (docs/configuration.md); flags and environment variables
    /// override its keys.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Address and port to listen on.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Do not serve the demo at / nor run its simulated ticker (turn off in production and
    /// on every node but one of a cluster).
    #[arg(long, env = "SWITCHBOARD_NO_DEMO")]
    no_demo: bool,
    /// Do not serve the /echo endpoint.
    #[arg(long, env = "SWITCHBOARD_NO_ECHO")]
    no_echo: bool,
    /// Interval between server pings ("0s" disables pings).
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL", default_value = "25s", value_parser = duration)]
    ping_interval: Duration,
    /// Close a connection whose pong is this late.
    #[arg(long, env = "SWITCHBOARD_PONG_TIMEOUT", default_value = "10s", value_parser = duration)]
    pong_timeout: Duration,
    /// Close a connection that sent nothing for this long ("0s" disables).
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT", default_value = "120s", value_parser = duration)]
    idle_timeout: Duration,
    /// Drop a connection that has not completed its request head in this time.
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = duration)]
    handshake_timeout: Duration,
    /// How long shutdown waits for connections to close.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    shutdown_timeout: Duration,
    /// On shutdown, the time over which open /ws connections are closed (code 4003, in
    /// batches) so that their clients reconnect elsewhere spread out.
    #[arg(long, env = "SWITCHBOARD_DRAIN_WINDOW", default_value = "10s", value_parser = duration)]
    drain_window: Duration,
    /// Largest WebSocket message (and frame) accepted, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_SIZE", default_value_t = 16 << 20)]
    max_message_size: usize,
    /// Key that application backends send as `Authorization: apikey <key>` to use the HTTP
    /// API under /api/. Without one the API is disabled. Prefer the environment variable: a
    /// command-line argument is visible to every user of the machine.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// HMAC secret verifying HS256 tokens (at least 32 bytes).
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true, conflicts_with_all = ["jwt_public_key", "jwks"])]
    jwt_secret: Option<String>,
    /// PEM public key file verifying tokens of --jwt-algorithm (RS*, ES*, EdDSA).
    #[arg(
        long,
        env = "SWITCHBOARD_JWT_PUBLIC_KEY",
        requires = "jwt_algorithm",
        conflicts_with = "jwks"
    )]
    jwt_public_key: Option<std::path::PathBuf>,
    /// The algorithm tokens must use with --jwt-public-key (e.g. RS256, ES256, EdDSA).
    #[arg(long, env = "SWITCHBOARD_JWT_ALGORITHM")]
    jwt_algorithm: Option<String>,
    /// JWKS file with the keys verifying tokens (selected by `kid`).
    #[arg(long, env = "SWITCHBOARD_JWKS")]
    jwks: Option<std::path::PathBuf>,
    /// Required token issuer (`iss`).
    #[arg(long, env = "SWITCHBOARD_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Required token audience (`aud`).
    #[arg(long, env = "SWITCHBOARD_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Refuse connections without valid credentials (401 before the upgrade).
    #[arg(long, env = "SWITCHBOARD_REQUIRE_AUTH")]
    require_auth: bool,
    /// Accept the WebSocket first and require a `connect` with a token within 5 s.
    #[arg(long, env = "SWITCHBOARD_FIRST_MESSAGE_AUTH")]
    first_message_auth: bool,
    /// Cookie carrying the token.
    #[arg(long, env = "SWITCHBOARD_TOKEN_COOKIE")]
    token_cookie: Option<String>,
    /// Browser origin allowed besides the server's own (repeat; `https://*.example.com` for
    /// subdomains).
    #[arg(long = "allowed-origin", env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Refuse browser origins on localhost (allowed by default for development).
    #[arg(long, env = "SWITCHBOARD_NO_LOCALHOST_ORIGINS")]
    no_localhost_origins: bool,
    /// Refuse requests without an Origin header (non-browser clients).
    #[arg(long, env = "SWITCHBOARD_REQUIRE_ORIGIN")]
    require_origin: bool,
    /// PEM certificate chain: serve HTTPS and WSS (with --tls-key). Reloaded on SIGHUP.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key", conflicts_with = "dev_tls")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Serve TLS with a generated self-signed certificate for localhost (testing only).
    #[arg(long, env = "SWITCHBOARD_DEV_TLS")]
    dev_tls: bool,
    /// Most WebSocket connections open at once (0: no limit); past it, 503.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", default_value_t = limits().max_connections)]
    max_connections: usize,
    /// Most WebSocket connections open at once from one IPv4 address or IPv6 /64 (0: no
    /// limit); past it, 429. Loopback clients are exempt unless --limit-loopback.
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP",
        default_value_t = limits().max_connections_per_ip
    )]
    max_connections_per_ip: usize,
    /// Upgrade requests to /ws per second from one address, as RATE or RATE:BURST (the burst
    /// defaults to the rate) or "off"; past it, 429.
    #[arg(
        long,
        env = "SWITCHBOARD_HANDSHAKE_RATE",
        default_value_t = RateArg(limits().handshake_rate),
        value_name = "RATE[:BURST]"
    )]
    handshake_rate: RateArg,
    /// Commands per second on one /ws connection, as RATE or RATE:BURST or "off"; past it,
    /// `rate_limited` replies; after 1,000 of them in a streak, a close with 1008 (policy
    /// violation).
    #[arg(
        long,
        env = "SWITCHBOARD_RATE_LIMIT_MESSAGES",
        default_value_t = RateArg(limits().message_rate),
        value_name = "RATE[:BURST]"
    )]
    rate_limit_messages: RateArg,
    /// Message bytes per second on one /ws connection, as RATE or RATE:BURST (K, M, G: KiB,
    /// MiB, GiB) or "off"; past it, as --rate-limit-messages.
    #[arg(
        long,
        env = "SWITCHBOARD_RATE_LIMIT_BYTES",
        default_value_t = RateArg(limits().byte_rate),
        value_name = "RATE[:BURST]"
    )]
    rate_limit_bytes: RateArg,
    /// Commands per second from one address, shared by all its /ws connections, as RATE or
    /// RATE:BURST or "off"; past it, as --rate-limit-messages. Reconnecting does not refill it.
    #[arg(
        long,
        env = "SWITCHBOARD_RATE_LIMIT_ADDRESS_MESSAGES",
        default_value_t = RateArg(limits().address_message_rate),
        value_name = "RATE[:BURST]"
    )]
    rate_limit_address_messages: RateArg,
    /// Message bytes per second from one address, shared by all its /ws connections, as RATE
    /// or RATE:BURST (K, M, G: KiB, MiB, GiB) or "off"; past it, as --rate-limit-messages.
    #[arg(
        long,
        env = "SWITCHBOARD_RATE_LIMIT_ADDRESS_BYTES",
        default_value_t = RateArg(limits().address_byte_rate),
        value_name = "RATE[:BURST]"
    )]
    rate_limit_address_bytes: RateArg,
    /// Requests to /api/ without the API key (tickets for a user's token, refused requests)
    /// per second from one address, as RATE or RATE:BURST or "off"; past it, 429.
    #[arg(
        long,
        env = "SWITCHBOARD_API_RATE",
        default_value_t = RateArg(limits().api_rate),
        value_name = "RATE[:BURST]"
    )]
    api_rate: RateArg,
    /// Apply the per-address limits to loopback clients too (off by default: a loopback
    /// peer is usually a reverse proxy on this host, carrying every user).
    #[arg(long, env = "SWITCHBOARD_LIMIT_LOOPBACK")]
    limit_loopback: bool,
    /// Most channels one connection may subscribe to.
    #[arg(long, env = "SWITCHBOARD_MAX_SUBSCRIPTIONS", default_value_t = hub().max_subscriptions)]
    max_subscriptions: usize,
    /// Bytes that may wait in one connection's outbound queue; past it the connection is
    /// cut off as a slow consumer (close code 4001).
    #[arg(
        long,
        env = "SWITCHBOARD_OUTBOUND_QUEUE_BYTES",
        default_value_t = hub().outbound_queue_bytes
    )]
    outbound_queue_bytes: usize,
    /// Largest message a client may send on /ws, in bytes.
    #[arg(
        long,
        env = "SWITCHBOARD_HUB_MAX_MESSAGE_SIZE",
        default_value_t = hub().max_message_size
    )]
    hub_max_message_size: usize,
    /// Bytes of history the in-memory broker holds for all channels together, by their
    /// estimated size in memory; past it the oldest publications of the least recently
    /// published channels are dropped (their recoveries answer `recovered: false`).
    /// 0 keeps no history.
    #[arg(long, env = "SWITCHBOARD_HISTORY_MEMORY", default_value_t = hub().history_memory)]
    history_memory: usize,
    /// Channels the in-memory broker holds state for; past it an idle channel is forgotten
    /// and, when all are in use, commands on new ones get `unavailable`. 0 for no limit.
    #[arg(long, env = "SWITCHBOARD_MAX_CHANNELS", default_value_t = hub().max_channels)]
    max_channels: usize,
    /// Namespace settings, over those of the configuration file (or the built-in ones), as
    /// `NAME:KEY=VALUE,…` with the keys of `[namespaces.NAME]` (`:KEY=VALUE,…` for the
    /// default namespace); repeat per namespace, or separate with `;` in the variable. A
    /// namespace not defined yet starts from the defaults.
    #[arg(
        long = "namespace",
        env = "SWITCHBOARD_NAMESPACES",
        value_delimiter = ';',
        value_name = "NAME:KEY=VALUE,…"
    )]
    namespaces: Vec<config_file::NamespaceSpec>,
    /// The backplane: "memory" (one node, nothing else to run) or a Redis URL,
    /// `redis://[[user]:password@]host[:port][/db]` or `rediss://…` for TLS, shared by every
    /// node of a deployment (docs/scaling.md).
    #[arg(
        long,
        env = "SWITCHBOARD_BROKER",
        default_value = "memory",
        hide_env_values = true,
        value_name = "memory|URL"
    )]
    broker: BrokerArg,
    /// Prefix of every Redis key and pub/sub topic, so several deployments can share one
    /// Redis; every node of a deployment needs the same one.
    #[arg(long, env = "SWITCHBOARD_REDIS_KEY_PREFIX", default_value = "switchboard")]
    redis_key_prefix: String,
    /// At start, wait (retrying with backoff) until Redis answers instead of exiting with an
    /// error.
    #[arg(long, env = "SWITCHBOARD_REDIS_WAIT")]
    redis_wait: bool,
    /// Bytes of history one channel keeps in Redis; past it its oldest publications go
    /// (their recoveries answer `recovered: false`). 0 for no cap.
    #[arg(
        long,
        env = "SWITCHBOARD_REDIS_MAX_HISTORY_BYTES",
        default_value_t = RedisConfig::default().max_history_bytes
    )]
    redis_max_history_bytes: usize,
    /// Log output format.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// The hub's defaults: the flags' defaults.
fn hub() -> switchboard_server::HubOptions {
    switchboard_server::HubOptions::default()
}

/// The library's limits: the flags' defaults.
fn limits() -> LimitOptions {
    LimitOptions::default()
}

/// A rate flag: `RATE[:BURST]` with optional binary suffixes, or `off`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
struct RateArg(Option<Rate>);

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

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line with the reason; `--help` has the rest.
            let rendered = e.to_string();
            let reason = rendered.lines().next().unwrap_or_default();
            eprintln!("switchboard: {}", reason.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Token(args) => match token::mint(&args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchboard: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(mut args) => {
            // Flag > environment > file: only what clap did not take from either comes
            // from the file.
            let file = match &args.config {
                Some(path) => match config_file::load(path) {
                    Ok(file) => {
                        let serve = matches.subcommand_matches("serve");
                        let explicit = |id: &str| {
                            use clap::parser::ValueSource;
                            let source = serve.and_then(|m| m.value_source(id));
                            matches!(
                                source,
                                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                            )
                        };
                        config_file::apply(&file, &mut args, &explicit);
                        Some(file)
                    }
                    Err(e) => {
                        eprintln!("switchboard: {e:#}");
                        return ExitCode::FAILURE;
                    }
                },
                None => None,
            };
            init_logging(args.log_format);
            match serve(&args, file.as_ref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // One line: the reason chain, most specific last.
                    eprintln!("switchboard: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Connect(args) => exit_code(connect::run(&args)),
        Command::Subscribe(args) => exit_code(subscribe::run(&args)),
        Command::Publish(args) => exit_code(publish::run(&args)),
        Command::Config(args) => config_file::run(&args),
        Command::Bench(args) => exit_code(switchboard_load::run(&args).map_err(Into::into)),
    }
}

/// A client command's exit code: its own, 1 with its error on one line, or 0 when standard
/// output closed under it (a reader such as `head` that has seen enough).
fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) if connect::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A failed log write would be reported with `eprintln!`, which panics when standard
        // error is gone (a closed pipe): losing a log line must not kill a connection task.
        .log_internal_errors(false);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The `--broker` flag: the in-memory broker, or Redis at a URL.
#[derive(Clone, Debug, Eq, PartialEq)]
enum BrokerArg {
    Memory,
    Redis(String),
}

impl std::str::FromStr for BrokerArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("memory") {
            Ok(Self::Memory)
        } else if s.starts_with("redis://") || s.starts_with("rediss://") {
            Ok(Self::Redis(s.to_owned()))
        } else {
            Err("expected \"memory\" or a redis:// or rediss:// URL".to_owned())
        }
    }
}

/// The Redis broker's settings from the flags, for `url`.
fn redis_config(args: &ServeArgs, url: &str) -> RedisConfig {
    let mut config = RedisConfig::new(url);
    config.key_prefix.clone_from(&args.redis_key_prefix);
    config.wait_for_redis = args.redis_wait;
    config.max_history_bytes = args.redis_max_history_bytes;
    config
}

fn config_from(args: &ServeArgs) -> anyhow::Result<Config> {
    let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
    let mut config = Config::default();
    config.listen = args.listen;
    config.echo = !args.no_echo;
    config.ping_interval = nonzero(args.ping_interval);
    config.pong_timeout = args.pong_timeout;
    config.idle_timeout = nonzero(args.idle_timeout);
    config.handshake_timeout = args.handshake_timeout;
    config.shutdown_timeout = args.shutdown_timeout;
    config.drain_window = args.drain_window;
    config.limits = switchboard_server::Limits::with_max_message_size(args.max_message_size);
    config.api_key.clone_from(&args.api_key);
    config.auth.verifier = verifier(args)?.map(std::sync::Arc::new);
    config.auth.required = args.require_auth;
    config.auth.first_message = args.first_message_auth;
    config.auth.token_cookie.clone_from(&args.token_cookie);
    config.origins.allowed.clone_from(&args.allowed_origins);
    config.origins.allow_localhost = !args.no_localhost_origins;
    config.origins.allow_missing = !args.require_origin;
    config.rate_limits.max_connections = args.max_connections;
    config.rate_limits.max_connections_per_ip = args.max_connections_per_ip;
    config.rate_limits.handshake_rate = args.handshake_rate.0;
    config.rate_limits.message_rate = args.rate_limit_messages.0;
    config.rate_limits.byte_rate = args.rate_limit_bytes.0;
    config.rate_limits.address_message_rate = args.rate_limit_address_messages.0;
    config.rate_limits.address_byte_rate = args.rate_limit_address_bytes.0;
    config.rate_limits.api_rate = args.api_rate.0;
    config.rate_limits.exempt_loopback = !args.limit_loopback;
    config.hub.max_subscriptions = args.max_subscriptions;
    config.hub.outbound_queue_bytes = args.outbound_queue_bytes;
    config.hub.max_message_size = args.hub_max_message_size;
    config.hub.history_memory = args.history_memory;
    config.hub.max_channels = args.max_channels;
    config.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsSource::Files { cert: cert.clone(), key: key.clone() }),
        _ if args.dev_tls => Some(TlsSource::DevSelfSigned),
        _ => None,
    };
    Ok(config)
}

/// The token verifier the flags describe, if any.
fn verifier(args: &ServeArgs) -> anyhow::Result<Option<switchboard_auth::Verifier>> {
    use switchboard_auth::{Algorithm, VerifierBuilder};
    let builder = if let Some(secret) = &args.jwt_secret {
        VerifierBuilder::hmac(Algorithm::Hs256, secret.as_bytes().to_vec())
    } else if let Some(path) = &args.jwt_public_key {
        let name = args.jwt_algorithm.as_deref().unwrap_or_default();
        let alg: Algorithm =
            name.parse().map_err(|_| anyhow::anyhow!("unknown --jwt-algorithm {name:?}"))?;
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        VerifierBuilder::pem(alg, pem)
    } else if let Some(path) = &args.jwks {
        let json =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        VerifierBuilder::jwks(json)
    } else {
        return Ok(None);
    };
    let builder = match &args.jwt_issuer {
        Some(iss) => builder.issuer(iss.clone()),
        None => builder,
    };
    let builder = match &args.jwt_audience {
        Some(aud) => builder.audience(aud.clone()),
        None => builder,
    };
    Ok(Some(builder.build().context("invalid token verification settings")?))
}

fn serve(args: &ServeArgs, file: Option<&config_file::FileConfig>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut config = config_from(args)?;
        if let Some(file) = file {
            config_file::apply_namespaces(file, &mut config);
        }
        for spec in &args.namespaces {
            spec.apply(&mut config);
        }
        let echo = config.echo;
        let server = match &args.broker {
            BrokerArg::Memory => Server::bind(config).await?,
            BrokerArg::Redis(url) => {
                let redis = RedisBroker::connect(redis_config(args, url))
                    .await
                    .context("cannot start the redis broker")?;
                tracing::info!(config = ?redis.config(), "redis broker connected");
                Server::bind_with_broker(config, std::sync::Arc::new(redis)).await?
            }
        };
        let server = if args.no_demo { server } else { demo::add(server) };
        let addr = server.local_addr();
        let (http, ws) = if server.is_tls() { ("https", "wss") } else { ("http", "ws") };
        // Installed before the URL is logged, so a SIGHUP from anyone who saw it reloads
        // instead of killing the process.
        #[cfg(unix)]
        if server.is_tls() {
            let reloader = server.tls_reloader();
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("cannot listen for SIGHUP")?;
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match reloader.reload() {
                        Ok(()) => tracing::info!("SIGHUP: tls certificate reloaded"),
                        Err(e) => tracing::error!(error = %e, "SIGHUP: tls reload failed, keeping the old certificate"),
                    }
                }
            });
        }
        if let Some(pem) = server.dev_certificate() {
            let path = std::env::temp_dir().join("switchboard-dev-cert.pem");
            std::fs::write(&path, pem)
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::warn!(
                "DEVELOPMENT TLS: serving a self-signed certificate for localhost, written to {}; \
                 never use --dev-tls in production",
                path.display()
            );
        }
        if echo {
            tracing::info!("switchboard listening on {http}://{addr} (echo at {ws}://{addr}/echo)");
        } else {
            tracing::info!("switchboard listening on {http}://{addr}");
        }
        let handle = server.shutdown_handle();
        tokio::spawn(async move {
            let signal = shutdown_signal().await;
            tracing::info!(signal, "shutdown requested");
            handle.shutdown();
        });
        server.run().await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM, naming the signal.
async fn shutdown_signal() -> &'static str {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = interrupt.await;
            return "SIGINT";
        };
        tokio::select! {
            _ = interrupt => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        "SIGINT"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_flags_parse_rates_bursts_suffixes_and_off() {
        let rate = |s: &str| s.parse::<RateArg>().map(|r| r.0);
        assert_eq!(rate("200:4000"), Ok(Some(Rate::new(200, 4_000))));
        assert_eq!(rate("20"), Ok(Some(Rate::new(20, 20))));
        assert_eq!(rate("1MiB:16m"), Ok(Some(Rate::new(1 << 20, 16 << 20))));
        assert_eq!(rate("64K"), Ok(Some(Rate::new(64 << 10, 64 << 10))));
        assert_eq!(rate("OFF"), Ok(None));
        for bad in ["0", "10:0", "x", "10:", "1T", "-5", "99999999999G"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_flag_defaults_show_the_library_defaults_and_read_back() {
        let l = limits();
        let defaults = [
            l.handshake_rate,
            l.message_rate,
            l.byte_rate,
            l.address_message_rate,
            l.address_byte_rate,
            l.api_rate,
        ];
        for default in defaults {
            let shown = RateArg(default).to_string();
            assert_eq!(shown.parse::<RateArg>(), Ok(RateArg(default)), "{shown}");
        }
        assert_eq!(RateArg(limits().byte_rate).to_string(), "1MiB:16MiB");
        assert_eq!(RateArg(limits().address_byte_rate).to_string(), "2MiB:16MiB");
        assert_eq!(RateArg(None).to_string(), "off");
    }

    #[test]
    fn limit_flags_reach_the_config() {
        let cli = Cli::try_parse_from([
            "switchboard",
            "serve",
            "--max-connections",
            "10",
            "--max-connections-per-ip=0",
            "--rate-limit-messages",
            "5:50",
            "--rate-limit-bytes",
            "off",
            "--handshake-rate",
            "1:2",
            "--rate-limit-address-messages",
            "7:70",
            "--rate-limit-address-bytes",
            "off",
            "--api-rate",
            "3:9",
            "--limit-loopback",
        ])
        .expect("valid flags");
        let Command::Serve(args) = cli.command else { panic!("expected serve") };
        let limits = config_from(&args).expect("a config").rate_limits;
        assert_eq!(limits.max_connections, 10);
        assert_eq!(limits.max_connections_per_ip, 0);
        assert_eq!(limits.message_rate, Some(Rate::new(5, 50)));
        assert_eq!(limits.byte_rate, None);
        assert_eq!(limits.handshake_rate, Some(Rate::new(1, 2)));
        assert_eq!(limits.address_message_rate, Some(Rate::new(7, 70)));
        assert_eq!(limits.address_byte_rate, None);
        assert_eq!(limits.api_rate, Some(Rate::new(3, 9)));
        assert!(!limits.exempt_loopback);
    }
}
