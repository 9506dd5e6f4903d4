//! The `switchboard` command.

// A command-line tool: its results (tokens, messages) go to standard output.
#![allow(clippy::print_stdout)]

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
mod common;
mod config_file;
mod connect;
mod demo;
mod init;
mod publish;
mod settings;
mod startup;
mod subscribe;
mod token;

use switchboard_broker_nats::NatsBroker;
use switchboard_broker_redis::RedisBroker;
use switchboard_server::{Secret, Server};

use crate::settings::{BrokerArg, LogFormat, RateArg, Settings};

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
    /// Write a configuration file with new secrets and typical namespaces, and print what to
    /// run next.
    Init(init::InitArgs),
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

/// `switchboard serve`: each flag (or its `SWITCHBOARD_*` variable) is optional and, when
/// given, overrides the configuration file's key, which overrides the built-in default
/// (`Settings::default`, from the server's `Config::default`). No default is written here.
#[derive(Debug, clap::Args)]
#[command(after_help = "Every flag is optional. `switchboard config default` prints each \
                        default, under the file key the flag overrides.")]
struct ServeArgs {
    /// TOML configuration file (docs/configuration.md); flags and environment variables
    /// override its keys.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Address and port to listen on.
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Do not serve the demo at / nor run its simulated ticker (turn off in production and
    /// on every node but one of a cluster).
    #[arg(
        long,
        env = "SWITCHBOARD_NO_DEMO",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    no_demo: Option<bool>,
    /// Do not serve the /echo endpoint.
    #[arg(
        long,
        env = "SWITCHBOARD_NO_ECHO",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    no_echo: Option<bool>,
    /// Interval between server pings ("0s" disables pings).
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL", value_parser = duration)]
    ping_interval: Option<Duration>,
    /// Close a connection whose pong is this late.
    #[arg(long, env = "SWITCHBOARD_PONG_TIMEOUT", value_parser = duration)]
    pong_timeout: Option<Duration>,
    /// Close a connection that sent nothing for this long ("0s" disables).
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT", value_parser = duration)]
    idle_timeout: Option<Duration>,
    /// Drop a connection that has not completed its request head in this time.
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_TIMEOUT", value_parser = duration)]
    handshake_timeout: Option<Duration>,
    /// How long shutdown waits for connections to close.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT", value_parser = duration)]
    shutdown_timeout: Option<Duration>,
    /// On shutdown, the time over which open /ws connections are closed (code 4003, in
    /// batches) so that their clients reconnect elsewhere spread out.
    #[arg(long, env = "SWITCHBOARD_DRAIN_WINDOW", value_parser = duration)]
    drain_window: Option<Duration>,
    /// Largest WebSocket message (and frame) accepted, in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_SIZE")]
    max_message_size: Option<usize>,
    /// Key that application backends send as `Authorization: apikey <key>` to use the HTTP
    /// API under /api/. Without one the API is disabled. Prefer the environment variable: a
    /// command-line argument is visible to every user of the machine.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    api_key: Option<Secret>,
    /// Secret operators log in to the admin page at /admin with. Without one the page takes
    /// the API key, and is off when neither is set. Prefer the environment variable.
    #[arg(long, env = "SWITCHBOARD_ADMIN_SECRET", hide_env_values = true)]
    admin_secret: Option<Secret>,
    /// HMAC secret verifying HS256 tokens (at least 32 bytes).
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true, conflicts_with_all = ["jwt_public_key", "jwks"])]
    jwt_secret: Option<Secret>,
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
    #[arg(
        long,
        env = "SWITCHBOARD_REQUIRE_AUTH",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    require_auth: Option<bool>,
    /// Accept the WebSocket first and require a `connect` with a token within 5 s.
    #[arg(
        long,
        env = "SWITCHBOARD_FIRST_MESSAGE_AUTH",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    first_message_auth: Option<bool>,
    /// Cookie carrying the token.
    #[arg(long, env = "SWITCHBOARD_TOKEN_COOKIE")]
    token_cookie: Option<String>,
    /// Browser origin allowed besides the server's own (repeat; `https://*.example.com` for
    /// subdomains).
    #[arg(long = "allowed-origin", env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Option<Vec<String>>,
    /// Refuse browser origins on localhost (allowed by default for development).
    #[arg(
        long,
        env = "SWITCHBOARD_NO_LOCALHOST_ORIGINS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    no_localhost_origins: Option<bool>,
    /// Negotiate permessage-deflate (RFC 7692) on /ws with clients that offer it (the
    /// default; `--ws-compression=false` turns it off).
    #[arg(
        long,
        env = "SWITCHBOARD_WS_COMPRESSION",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    ws_compression: Option<bool>,
    /// Negotiate permessage-deflate (RFC 7692) on /echo with clients that offer it.
    #[arg(
        long,
        env = "SWITCHBOARD_ECHO_COMPRESSION",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    echo_compression: Option<bool>,
    /// Turn a transport off (repeat): websocket, sse or longpoll. Its opening path answers
    /// 404; clients fall back to the others.
    #[arg(
        long = "disable-transport",
        env = "SWITCHBOARD_DISABLE_TRANSPORTS",
        value_delimiter = ','
    )]
    disable_transports: Option<Vec<switchboard_server::Transport>>,
    /// How long an SSE or long-polling session lives with no stream and no poll.
    #[arg(long, env = "SWITCHBOARD_SESSION_TIMEOUT", value_parser = duration)]
    session_timeout: Option<Duration>,
    /// How long a long-poll waits before answering with an empty batch.
    #[arg(long, env = "SWITCHBOARD_POLL_TIMEOUT", value_parser = duration)]
    poll_timeout: Option<Duration>,
    /// Refuse requests without an Origin header (non-browser clients).
    #[arg(
        long,
        env = "SWITCHBOARD_REQUIRE_ORIGIN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    require_origin: Option<bool>,
    /// PEM certificate chain: serve HTTPS and WSS (with --tls-key). Reloaded on SIGHUP.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key", conflicts_with = "dev_tls")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Serve TLS with a generated self-signed certificate for localhost (testing only).
    #[arg(
        long,
        env = "SWITCHBOARD_DEV_TLS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    dev_tls: Option<bool>,
    /// Most WebSocket connections open at once (0: no limit); past it, 503.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most WebSocket connections open at once from one IPv4 address or IPv6 /64 (0: no
    /// limit); past it, 429. Loopback clients are exempt unless --limit-loopback.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Upgrade requests to /ws per second from one address, as RATE or RATE:BURST (the burst
    /// defaults to the rate) or "off"; past it, 429.
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_RATE", value_name = "RATE[:BURST]")]
    handshake_rate: Option<RateArg>,
    /// Commands per second on one /ws connection, as RATE or RATE:BURST or "off"; past it,
    /// `rate_limited` replies; after 1,000 of them in a streak, a close with 1008 (policy
    /// violation).
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT_MESSAGES", value_name = "RATE[:BURST]")]
    rate_limit_messages: Option<RateArg>,
    /// Message bytes per second on one /ws connection, as RATE or RATE:BURST (K, M, G: KiB,
    /// MiB, GiB) or "off"; past it, as --rate-limit-messages.
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT_BYTES", value_name = "RATE[:BURST]")]
    rate_limit_bytes: Option<RateArg>,
    /// Commands per second from one address, shared by all its /ws connections, as RATE or
    /// RATE:BURST or "off"; past it, as --rate-limit-messages. Reconnecting does not refill it.
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT_ADDRESS_MESSAGES", value_name = "RATE[:BURST]")]
    rate_limit_address_messages: Option<RateArg>,
    /// Message bytes per second from one address, shared by all its /ws connections, as RATE
    /// or RATE:BURST (K, M, G: KiB, MiB, GiB) or "off"; past it, as --rate-limit-messages.
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT_ADDRESS_BYTES", value_name = "RATE[:BURST]")]
    rate_limit_address_bytes: Option<RateArg>,
    /// Requests to /api/ without the API key (tickets for a user's token, refused requests)
    /// per second from one address, as RATE or RATE:BURST or "off"; past it, 429.
    #[arg(long, env = "SWITCHBOARD_API_RATE", value_name = "RATE[:BURST]")]
    api_rate: Option<RateArg>,
    /// Apply the per-address limits to loopback clients too (off by default: a loopback
    /// peer is usually a reverse proxy on this host, carrying every user).
    #[arg(
        long,
        env = "SWITCHBOARD_LIMIT_LOOPBACK",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    limit_loopback: Option<bool>,
    /// Most channels one connection may subscribe to.
    #[arg(long, env = "SWITCHBOARD_MAX_SUBSCRIPTIONS")]
    max_subscriptions: Option<usize>,
    /// Bytes that may wait in one connection's outbound queue; past it the connection is
    /// cut off as a slow consumer (close code 4001).
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE_BYTES")]
    outbound_queue_bytes: Option<usize>,
    /// Largest message a client may send on /ws, in bytes.
    #[arg(long, env = "SWITCHBOARD_HUB_MAX_MESSAGE_SIZE")]
    hub_max_message_size: Option<usize>,
    /// Bytes of history the in-memory broker holds for all channels together, by their
    /// estimated size in memory; past it the oldest publications of the least recently
    /// published channels are dropped (their recoveries answer `recovered: false`).
    /// 0 keeps no history.
    #[arg(long, env = "SWITCHBOARD_HISTORY_MEMORY")]
    history_memory: Option<usize>,
    /// Channels the in-memory broker holds state for; past it an idle channel is forgotten
    /// and, when all are in use, commands on new ones get `unavailable`. 0 for no limit.
    #[arg(long, env = "SWITCHBOARD_MAX_CHANNELS")]
    max_channels: Option<usize>,
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
    /// The backplane: "memory" (one node, nothing else to run), a Redis URL,
    /// `redis://[[user]:password@]host[:port][/db]` or `rediss://…` for TLS, or a NATS URL
    /// (JetStream on), `nats://[user:password@]host:port` or `tls://…` for TLS, shared by
    /// every node of a deployment (docs/scaling.md).
    #[arg(long, env = "SWITCHBOARD_BROKER", hide_env_values = true, value_name = "memory|URL")]
    broker: Option<BrokerArg>,
    /// Prefix of every Redis key and pub/sub topic, so several deployments can share one
    /// Redis; every node of a deployment needs the same one.
    #[arg(long, env = "SWITCHBOARD_REDIS_KEY_PREFIX")]
    redis_key_prefix: Option<String>,
    /// At start, wait (retrying with backoff) until Redis answers instead of exiting with an
    /// error.
    #[arg(
        long,
        env = "SWITCHBOARD_REDIS_WAIT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    redis_wait: Option<bool>,
    /// Bytes of history one channel keeps in Redis; past it its oldest publications go
    /// (their recoveries answer `recovered: false`). 0 for no cap.
    #[arg(long, env = "SWITCHBOARD_REDIS_MAX_HISTORY_BYTES")]
    redis_max_history_bytes: Option<usize>,
    /// Prefix of every NATS subject, stream and bucket name (letters, digits, `-`, `_`), so
    /// several deployments can share one NATS account; every node of a deployment needs the
    /// same one.
    #[arg(long, env = "SWITCHBOARD_NATS_SUBJECT_PREFIX")]
    nats_subject_prefix: Option<String>,
    /// At start, wait (retrying with backoff) until NATS answers instead of exiting with an
    /// error.
    #[arg(
        long,
        env = "SWITCHBOARD_NATS_WAIT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    nats_wait: Option<bool>,
    /// Bytes of history one channel serves from NATS; past it its oldest publications go
    /// (their recoveries answer `recovered: false`). 0 for no cap.
    #[arg(long, env = "SWITCHBOARD_NATS_MAX_HISTORY_BYTES")]
    nats_max_history_bytes: Option<usize>,
    /// A NATS `.creds` file (user JWT and NKey seed) to authenticate with.
    #[arg(long, env = "SWITCHBOARD_NATS_CREDENTIALS", value_name = "FILE")]
    nats_credentials: Option<std::path::PathBuf>,
    /// PEM root certificates to trust for a NATS server with a private CA.
    #[arg(long, env = "SWITCHBOARD_NATS_TLS_CA", value_name = "FILE")]
    nats_tls_ca: Option<std::path::PathBuf>,
    /// Log output format.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

impl ServeArgs {
    /// The settings to serve with: the built-in defaults, the configuration file's keys
    /// over them, then the flags and variables that are set.
    ///
    /// # Errors
    ///
    /// A configuration file that cannot be read or is not valid, with its line and column.
    fn settings(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => config_file::load(path)?,
            None => Settings::default(),
        };
        self.settings_over(file)
    }

    /// `settings` with the flags and variables that are set over them.
    fn settings_over(&self, mut s: Settings) -> anyhow::Result<Settings> {
        fn set<T: Clone>(setting: &mut T, flag: Option<&T>) {
            if let Some(value) = flag {
                setting.clone_from(value);
            }
        }
        let not = |flag: Option<bool>| flag.map(|on| !on);
        set(&mut s.listen, self.listen.as_ref());
        set(&mut s.echo, not(self.no_echo).as_ref());
        set(&mut s.demo, not(self.no_demo).as_ref());
        set(&mut s.api_key, self.api_key.clone().map(Some).as_ref());
        set(&mut s.admin_secret, self.admin_secret.clone().map(Some).as_ref());
        set(&mut s.log_format, self.log_format.as_ref());

        let t = &mut s.timeouts;
        set(&mut t.ping_interval, self.ping_interval.as_ref());
        set(&mut t.pong_timeout, self.pong_timeout.as_ref());
        set(&mut t.idle_timeout, self.idle_timeout.as_ref());
        set(&mut t.handshake_timeout, self.handshake_timeout.as_ref());
        set(&mut t.shutdown_timeout, self.shutdown_timeout.as_ref());
        set(&mut t.drain_window, self.drain_window.as_ref());

        let l = &mut s.limits;
        set(&mut l.max_message_size, self.max_message_size.as_ref());
        set(&mut l.max_connections, self.max_connections.as_ref());
        set(&mut l.max_connections_per_ip, self.max_connections_per_ip.as_ref());
        set(&mut l.handshake_rate, self.handshake_rate.as_ref());
        set(&mut l.message_rate, self.rate_limit_messages.as_ref());
        set(&mut l.byte_rate, self.rate_limit_bytes.as_ref());
        set(&mut l.address_message_rate, self.rate_limit_address_messages.as_ref());
        set(&mut l.address_byte_rate, self.rate_limit_address_bytes.as_ref());
        set(&mut l.api_rate, self.api_rate.as_ref());
        set(&mut l.exempt_loopback, not(self.limit_loopback).as_ref());

        let a = &mut s.auth;
        // The key source is one choice: a flag naming any key replaces the file's key whole.
        if self.jwt_secret.is_some()
            || self.jwt_public_key.is_some()
            || self.jwt_algorithm.is_some()
            || self.jwks.is_some()
        {
            a.jwt_secret.clone_from(&self.jwt_secret);
            a.jwt_public_key.clone_from(&self.jwt_public_key);
            a.jwt_algorithm.clone_from(&self.jwt_algorithm);
            a.jwks.clone_from(&self.jwks);
        }
        set(&mut a.jwt_issuer, self.jwt_issuer.clone().map(Some).as_ref());
        set(&mut a.jwt_audience, self.jwt_audience.clone().map(Some).as_ref());
        set(&mut a.required, self.require_auth.as_ref());
        set(&mut a.first_message, self.first_message_auth.as_ref());
        set(&mut a.token_cookie, self.token_cookie.clone().map(Some).as_ref());

        let o = &mut s.origins;
        set(&mut o.allowed, self.allowed_origins.as_ref());
        set(&mut o.allow_localhost, not(self.no_localhost_origins).as_ref());
        set(&mut o.allow_missing, not(self.require_origin).as_ref());

        let c = &mut s.compression;
        set(&mut c.ws, self.ws_compression.as_ref());
        set(&mut c.echo, self.echo_compression.as_ref());

        let tr = &mut s.transports;
        set(&mut tr.disabled, self.disable_transports.as_ref());
        set(&mut tr.session_timeout, self.session_timeout.as_ref());
        set(&mut tr.poll_timeout, self.poll_timeout.as_ref());

        // Likewise the certificate: files or the development one.
        if self.tls_cert.is_some() || self.tls_key.is_some() || self.dev_tls.is_some() {
            s.tls.cert.clone_from(&self.tls_cert);
            s.tls.key.clone_from(&self.tls_key);
            s.tls.dev = self.dev_tls.unwrap_or_default();
        }

        let b = &mut s.broker;
        set(&mut b.url, self.broker.as_ref());
        set(&mut b.redis_key_prefix, self.redis_key_prefix.as_ref());
        set(&mut b.redis_wait, self.redis_wait.as_ref());
        set(&mut b.redis_max_history_bytes, self.redis_max_history_bytes.as_ref());
        set(&mut b.nats_subject_prefix, self.nats_subject_prefix.as_ref());
        set(&mut b.nats_wait, self.nats_wait.as_ref());
        set(&mut b.nats_max_history_bytes, self.nats_max_history_bytes.as_ref());
        if self.nats_credentials.is_some() {
            b.nats_credentials.clone_from(&self.nats_credentials);
        }
        if self.nats_tls_ca.is_some() {
            b.nats_tls_ca.clone_from(&self.nats_tls_ca);
        }

        let h = &mut s.hub;
        set(&mut h.max_subscriptions, self.max_subscriptions.as_ref());
        set(&mut h.outbound_queue_bytes, self.outbound_queue_bytes.as_ref());
        set(&mut h.max_message_size, self.hub_max_message_size.as_ref());
        set(&mut h.history_memory, self.history_memory.as_ref());
        set(&mut h.max_channels, self.max_channels.as_ref());

        for spec in &self.namespaces {
            spec.apply(&mut s.namespaces)?;
        }
        Ok(s)
    }
}

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            // Clap's own rendering, whole: a usage error names what is missing or wrong, shows
            // the usage line and suggests a near name ("did you mean"), on standard error
            // with exit code 2; `--help` and `--version` go to standard output with 0. With
            // no subcommand at all clap shows the help (the command list) as a usage error:
            // 2, so that a script that ran nothing does not look successful.
            // A closed standard output (`--help | head`) is not worth a message.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
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
        Command::Serve(args) => {
            let settings = match args.settings() {
                Ok(settings) => settings,
                Err(e) => {
                    eprintln!("switchboard: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(why) = startup::refusal(&settings) {
                eprintln!("switchboard: {why}");
                return ExitCode::FAILURE;
            }
            init_logging(settings.log_format);
            match serve(&settings) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // One line: the reason chain, most specific last.
                    eprintln!("switchboard: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Init(args) => exit_code(init::run(&args)),
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
        Err(e) if common::is_broken_pipe(&e) => ExitCode::SUCCESS,
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

fn serve(settings: &Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let config = settings.to_config()?;
        // What the block at start describes: the server takes `config` by value.
        let served = config.clone();
        let server = match &settings.broker.url {
            BrokerArg::Memory => Server::bind(config).await?,
            BrokerArg::Redis(url) => {
                let redis = RedisBroker::connect(settings.redis_config(url.expose()))
                    .await
                    .context("cannot start the redis broker")?;
                tracing::info!(config = ?redis.config(), "redis broker connected");
                Server::bind_with_broker(config, std::sync::Arc::new(redis)).await?
            }
            BrokerArg::Nats(url) => {
                let nats = NatsBroker::connect(settings.nats_config(url.expose()))
                    .await
                    .context("cannot start the nats broker")?;
                tracing::info!(config = ?nats.config(), "nats broker connected");
                Server::bind_with_broker(config, std::sync::Arc::new(nats)).await?
            }
        };
        let server = if settings.demo { demo::add(server) } else { server };
        let addr = server.local_addr();
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
        let handle = server.shutdown_handle();
        let signal = shutdown_signal();
        tokio::spawn(async move {
            let signal = signal.await;
            tracing::info!(signal, "shutdown requested");
            handle.shutdown();
        });
        // The first line names the URL; scripts and tests wait for it.
        for line in startup::summary(settings, &served, addr, server.is_tls()) {
            tracing::info!("{line}");
        }
        for warning in startup::warnings(settings) {
            tracing::warn!("{warning}");
        }
        server.run().await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM, naming the signal. Both are caught from the call on,
/// not from the first poll, so that a signal sent as soon as the server has said where it
/// listens stops it gracefully instead of killing it. Call it within the runtime.
fn shutdown_signal() -> impl Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let caught = signal(SignalKind::interrupt()).and_then(|interrupt| {
            signal(SignalKind::terminate()).map(|terminate| (interrupt, terminate))
        });
        async move {
            let Ok((mut interrupt, mut terminate)) = caught else {
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            };
            tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

#[cfg(test)]
mod tests {
    use switchboard_server::Rate;

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
        let l = switchboard_server::LimitOptions::default();
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
        assert_eq!(RateArg(l.byte_rate).to_string(), "1MiB:16MiB");
        assert_eq!(RateArg(l.address_byte_rate).to_string(), "2MiB:16MiB");
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
        let settings = args.settings_over(Settings::default()).expect("settings");
        let limits = settings.to_config().expect("a config").rate_limits;
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
