//! `switchboard serve --config FILE`: every serve setting in one TOML file, the shape of
//! [`Settings`], beneath the flags and `SWITCHBOARD_*` variables (flag > environment > file >
//! built-in default); namespaces given with `--namespace` or `SWITCHBOARD_NAMESPACES` are set
//! over the file's. `switchboard config default` prints the defaults as a file, generated
//! from `Settings::default()`; `switchboard config check FILE` validates one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;
use switchboard_server::NamespaceOptions;
use toml::Spanned;

use crate::settings::{NamespaceName, Settings};

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

/// Reads and checks the file at `path`: the built-in defaults with the file's keys over them.
///
/// # Errors
///
/// `PATH:LINE:COLUMN: reason` for a file that is not valid, or why it cannot be read.
pub(crate) fn load(path: &Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|(offset, message)| {
        let (line, column) = line_column(&text, offset);
        anyhow::anyhow!("{}:{line}:{column}: {message}", path.display())
    })
}

/// Parses a file's text; an error is its byte offset and reason.
pub(crate) fn parse(text: &str) -> Result<Settings, (usize, String)> {
    let error = |e: toml::de::Error| (e.span().map_or(0, |s| s.start), e.message().to_owned());
    let settings: Settings = toml::from_str(text).map_err(error)?;
    if let Some((section, key, message)) = settings.conflict() {
        // Read again for the position of the key the rule points at.
        let spans: Spans = toml::from_str(text).map_err(error)?;
        let table = if section == "tls" { &spans.tls } else { &spans.auth };
        let offset = table.get(key).map_or(0, |value| value.span().start);
        return Err((offset, message.to_owned()));
    }
    Ok(settings)
}

/// Where the values of the tables with rules across keys are.
#[derive(Deserialize)]
struct Spans {
    #[serde(default)]
    auth: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    tls: BTreeMap<String, Spanned<toml::Value>>,
}

/// `--namespace NAME:KEY=VALUE,…`: a namespace's keys, over the file's or built-in ones.
#[derive(Clone, Debug)]
pub(crate) struct NamespaceSpec {
    name: NamespaceName,
    keys: toml::Table,
}

impl NamespaceSpec {
    /// Sets the keys on the namespace, creating it (from the defaults) when it is new.
    ///
    /// # Errors
    ///
    /// None in practice: the keys were checked when the flag was read.
    pub(crate) fn apply(
        &self,
        namespaces: &mut BTreeMap<NamespaceName, NamespaceOptions>,
    ) -> anyhow::Result<()> {
        let base = namespaces.remove(&self.name).unwrap_or_default();
        let mut table = toml::Table::try_from(&base)?;
        table.extend(self.keys.clone());
        namespaces.insert(self.name.clone(), toml::Value::Table(table).try_into()?);
        Ok(())
    }
}

impl std::str::FromStr for NamespaceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, keys) = s.split_once(':').unwrap_or((s, ""));
        let name = NamespaceName::new(name.trim())?;
        let check = |table: &toml::Table| {
            toml::Value::Table(table.clone())
                .try_into::<NamespaceOptions>()
                .map_err(|e| e.message().to_owned())
        };
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
            check(&one).map_err(|e| format!("namespace {:?}: {pair}: {e}", name.0))?;
            table.insert(key.to_owned(), value);
        }
        check(&table).map_err(|e| format!("namespace {:?}: {e}", name.0))?;
        Ok(Self { name, keys: table })
    }
}

/// The configuration file of the built-in defaults: `Settings::default()` serialized, each
/// key under its comment from [`DOCS`], keys without a default commented out with an
/// example.
pub(crate) fn default_file() -> String {
    // Serializing plain data into a table cannot fail; a test runs this.
    let defaults = toml::Table::try_from(Settings::default()).expect("settings serialize");
    render(HEADER, &defaults, |_| None)
}

/// A configuration file holding `values` (the serialized [`Settings`], with secrets put in
/// as plain strings where wanted): `header`, then each key of [`DOCS`] under its comment,
/// with its value in `values` or else commented out with its example, then each namespace
/// of `values` under the comment `namespace_comment` gives its name, if any.
pub(crate) fn render(
    header: &str,
    values: &toml::Table,
    namespace_comment: impl Fn(&str) -> Option<&'static str>,
) -> String {
    let mut out = String::from(header);
    let mut section = "";
    for doc in DOCS.iter().filter(|doc| doc.section != NAMESPACES) {
        if doc.section != section {
            section = doc.section;
            let _ = write!(out, "\n[{section}]\n");
        }
        let table = if section.is_empty() { Some(values) } else { table(values, section) };
        doc.write(&mut out, table);
    }
    out.push_str(PROXIES_HEADER);
    for (name, proxy) in table(values, PROXIES).into_iter().flatten() {
        let _ = writeln!(out, "[{PROXIES}.{name:?}]");
        for (key, value) in proxy.as_table().into_iter().flatten() {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    out.push_str(NAMESPACES_HEADER);
    for (name, options) in table(values, NAMESPACES).into_iter().flatten() {
        out.push('\n');
        for line in namespace_comment(name).iter().flat_map(|comment| comment.lines()) {
            let _ = writeln!(out, "# {line}");
        }
        let _ = writeln!(out, "[{NAMESPACES}.{name:?}]");
        for doc in DOCS.iter().filter(|doc| doc.section == NAMESPACES) {
            doc.write(&mut out, options.as_table());
        }
    }
    out
}

/// The table `key` of `table`, if there is one.
fn table<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Table> {
    table.get(key).and_then(toml::Value::as_table)
}

/// One key of the default file: its section (`""` for the top level, `namespaces` for
/// each namespace's table), comment, and an example when it has no default value.
struct Doc {
    section: &'static str,
    key: &'static str,
    comment: &'static str,
    example: Option<&'static str>,
}

impl Doc {
    const fn key(section: &'static str, key: &'static str, comment: &'static str) -> Self {
        Self { section, key, comment, example: None }
    }

    const fn example(
        section: &'static str,
        key: &'static str,
        comment: &'static str,
        example: &'static str,
    ) -> Self {
        Self { section, key, comment, example: Some(example) }
    }

    /// Writes the comment and the key with its value in `table`, or its example.
    fn write(&self, out: &mut String, table: Option<&toml::Table>) {
        for line in self.comment.lines() {
            let _ = writeln!(out, "# {line}");
        }
        // Writing to a String cannot fail.
        let _ = match (table.and_then(|t| t.get(self.key)), self.example) {
            (Some(value), _) => writeln!(out, "{} = {value}", self.key),
            (None, Some(example)) => writeln!(out, "# {} = {example}", self.key),
            (None, None) => writeln!(out, "# {} =", self.key),
        };
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    (line, column)
}

/// The `[proxies]` table: rendered as a whole, after the sections of [`DOCS`].
const PROXIES: &str = "proxies";

const PROXIES_HEADER: &str = "
# The application backend's HTTP endpoints, by name, that the server asks (docs/hooks.md):
# namespaces name theirs in subscribe_proxy and publish_proxy, rpc_proxy the one for `rpc`,
# connect_proxy the one for connections without credentials.
# [proxies.login]
# url = \"http://127.0.0.1:3000/switchboard/connect\"
# timeout = \"3s\"
# forward_headers = [\"cookie\"]
";

/// The `[namespaces]` table, and the section of its keys in [`DOCS`].
const NAMESPACES: &str = "namespaces";

const HEADER: &str = "\
# Switchboard configuration for `switchboard serve --config FILE` (docs/configuration.md).
# Every key is optional. A flag or SWITCHBOARD_* variable overrides the key it names.

";

const NAMESPACES_HEADER: &str = "
# Namespaces by name (\"\" is the default one, for channels without `:`). A [namespaces]
# section replaces this built-in set whole: a namespace left out refuses its channels.
# `--namespace NAME:KEY=VALUE,…` (SWITCHBOARD_NAMESPACES, `;` between namespaces) sets keys
# over these, e.g. `--namespace chat:history_size=500,anonymous=subscribe`.
";

/// The comment of each key of [`Settings`] in the default file, in the file's order. Only
/// comments live here: the values come from the defaults, and a test checks that every key
/// has its comment.
const DOCS: &[Doc] = &[
    Doc::key("", "listen", "Address and port to listen on (--listen, SWITCHBOARD_LISTEN)."),
    Doc::key("", "echo", "Serve the /echo endpoint (--no-echo)."),
    Doc::key("", "demo", "Serve the demo at / and run its simulated ticker (--no-demo)."),
    Doc::example(
        "",
        "api_key",
        "Key for the HTTP API under /api/ (`Authorization: apikey <key>`); unset: API off.",
        "\"a long random key\"",
    ),
    Doc::example(
        "",
        "admin_secret",
        "Secret to log in to the admin page at /admin; unset: the api_key, or the page is off.",
        "\"another long random secret\"",
    ),
    Doc::key("", "log_format", "Log output format: \"human\" or \"json\" (--log-format)."),
    Doc::example(
        "",
        "rpc_proxy",
        "The proxy (see [proxies] below) that clients' `rpc` calls go to; unset: `rpc` refused.",
        "\"backend\"",
    ),
    Doc::example(
        "",
        "connect_proxy",
        "The proxy that says who a connection without credentials is (a cookie session).",
        "\"login\"",
    ),
    Doc::key("timeouts", "ping_interval", "Interval between server pings (\"0s\" disables pings)."),
    Doc::key("timeouts", "pong_timeout", "Close a connection whose pong is this late."),
    Doc::key(
        "timeouts",
        "idle_timeout",
        "Close a connection that sent nothing for this long (\"0s\" disables).",
    ),
    Doc::key(
        "timeouts",
        "handshake_timeout",
        "Drop a connection that has not completed its request head in this time.",
    ),
    Doc::key("timeouts", "shutdown_timeout", "How long shutdown waits for connections to close."),
    Doc::key(
        "timeouts",
        "drain_window",
        "On shutdown, the time over which open /ws connections are closed (4003) in batches.",
    ),
    Doc::key(
        "limits",
        "max_message_size",
        "Largest WebSocket message (and frame) accepted, in bytes.",
    ),
    Doc::key(
        "limits",
        "max_connections",
        "Most WebSocket connections open at once (0: no limit); past it, 503.",
    ),
    Doc::key(
        "limits",
        "max_connections_per_ip",
        "Most WebSocket connections open at once from one address (0: no limit); past it, 429.",
    ),
    Doc::key(
        "limits",
        "handshake_rate",
        "Upgrade requests to /ws per second from one address, \"RATE[:BURST]\" or \"off\".",
    ),
    Doc::key(
        "limits",
        "message_rate",
        "Commands per second on one /ws connection, \"RATE[:BURST]\" or \"off\".",
    ),
    Doc::key(
        "limits",
        "byte_rate",
        "Message bytes per second on one /ws connection (K, M, G suffixes), or \"off\".",
    ),
    Doc::key(
        "limits",
        "address_message_rate",
        "Commands per second from one address, shared by all its /ws connections, or \"off\".",
    ),
    Doc::key(
        "limits",
        "address_byte_rate",
        "Message bytes per second from one address, shared by all its /ws connections, or \
         \"off\".",
    ),
    Doc::key(
        "limits",
        "api_rate",
        "Requests to /api/ without the API key per second from one address, or \"off\"; past \
         it, 429.",
    ),
    Doc::key(
        "limits",
        "exempt_loopback",
        "Leave loopback clients (a reverse proxy on this host) out of the per-address limits\n\
         (false: --limit-loopback).",
    ),
    Doc::example(
        "auth",
        "jwt_secret",
        "HMAC secret verifying HS256 tokens (at least 32 bytes); unset: no tokens accepted.",
        "\"at least 32 bytes of random secret\"",
    ),
    Doc::example(
        "auth",
        "jwt_public_key",
        "PEM public key file verifying tokens of jwt_algorithm (instead of jwt_secret).",
        "\"/etc/switchboard/jwt.pem\"",
    ),
    Doc::example(
        "auth",
        "jwt_algorithm",
        "The algorithm tokens must use with jwt_public_key (e.g. RS256, ES256, EdDSA).",
        "\"RS256\"",
    ),
    Doc::example(
        "auth",
        "jwks",
        "JWKS file with the keys verifying tokens, selected by `kid` (instead of the above).",
        "\"/etc/switchboard/jwks.json\"",
    ),
    Doc::example(
        "auth",
        "jwt_issuer",
        "Required token issuer (`iss`); unset: any.",
        "\"https://auth.example.com\"",
    ),
    Doc::example(
        "auth",
        "jwt_audience",
        "Required token audience (`aud`); unset: any.",
        "\"switchboard\"",
    ),
    Doc::key(
        "auth",
        "required",
        "Refuse connections without valid credentials (401 before the upgrade).",
    ),
    Doc::key(
        "auth",
        "first_message",
        "Accept the WebSocket first and require a `connect` with a token within 5 s.",
    ),
    Doc::example("auth", "token_cookie", "Cookie carrying the token; unset: none.", "\"token\""),
    Doc::key(
        "origins",
        "allowed",
        "Browser origins allowed besides the server's own (`https://*.example.com` for \
         subdomains).",
    ),
    Doc::key("origins", "allow_localhost", "Allow browser origins on localhost, for development."),
    Doc::key(
        "origins",
        "allow_missing",
        "Allow requests without an Origin header (non-browser clients).",
    ),
    Doc::key(
        "compression",
        "ws",
        "Negotiate permessage-deflate on /ws with clients that offer it (--ws-compression=false\n\
         turns it off).",
    ),
    Doc::key(
        "compression",
        "echo",
        "Negotiate permessage-deflate on /echo with clients that offer it (--echo-compression).",
    ),
    Doc::key("compression", "level", "zlib level, 0 (store) to 9 (smallest)."),
    Doc::key("compression", "min_size", "Messages shorter than this many bytes go uncompressed."),
    Doc::key(
        "transports",
        "disabled",
        "Transports turned off: \"websocket\", \"sse\", \"longpoll\" (--disable-transport).",
    ),
    Doc::key(
        "transports",
        "session_timeout",
        "How long an SSE or long-polling session lives with no stream and no poll.",
    ),
    Doc::key(
        "transports",
        "poll_timeout",
        "How long a long-poll waits before answering with an empty batch.",
    ),
    Doc::example(
        "tls",
        "cert",
        "PEM certificate chain: serve HTTPS and WSS (with key). Reloaded on SIGHUP.",
        "\"/etc/switchboard/cert.pem\"",
    ),
    Doc::example("tls", "key", "PEM private key of cert.", "\"/etc/switchboard/key.pem\""),
    Doc::key(
        "tls",
        "dev",
        "Serve TLS with a generated self-signed certificate for localhost (testing only).",
    ),
    Doc::key(
        "broker",
        "url",
        "The backplane: \"memory\" (one node), or a redis:// or rediss:// URL, or a nats:// or \
         tls:// URL (JetStream on) shared by every node.",
    ),
    Doc::key(
        "broker",
        "redis_key_prefix",
        "Prefix of every Redis key and pub/sub topic; the same on every node of a deployment.",
    ),
    Doc::key(
        "broker",
        "redis_wait",
        "At start, wait until Redis answers instead of exiting with an error.",
    ),
    Doc::key(
        "broker",
        "redis_max_history_bytes",
        "Bytes of history one channel keeps in Redis; past it its oldest publications go. 0: \
         no cap.",
    ),
    Doc::key(
        "broker",
        "nats_subject_prefix",
        "Prefix of every NATS subject, stream and bucket; the same on every node of a deployment.",
    ),
    Doc::key(
        "broker",
        "nats_wait",
        "At start, wait until NATS answers instead of exiting with an error.",
    ),
    Doc::key(
        "broker",
        "nats_max_history_bytes",
        "Bytes of history one channel serves from NATS; past it its oldest publications go. 0: \
         no cap.",
    ),
    Doc::example(
        "broker",
        "nats_credentials",
        "A NATS .creds file (user JWT and NKey seed) to authenticate with.",
        "\"/etc/switchboard/nats.creds\"",
    ),
    Doc::example(
        "broker",
        "nats_tls_ca",
        "PEM root certificates to trust for a NATS server with a private CA.",
        "\"/etc/switchboard/nats-ca.pem\"",
    ),
    Doc::key("hub", "max_subscriptions", "Most channels one connection may subscribe to."),
    Doc::key(
        "hub",
        "outbound_queue_bytes",
        "Bytes that may wait in one connection's outbound queue before it is closed (4001).",
    ),
    Doc::key(
        "hub",
        "max_message_size",
        "Largest WebSocket message a client may send on /ws, in bytes.",
    ),
    Doc::key(
        "hub",
        "shards",
        "Hub shards: publishes on channels in different shards never contend.",
    ),
    Doc::key(
        "hub",
        "history_memory",
        "Bytes of history the in-memory broker holds for all channels together (estimated size \
         in\nmemory); past it the oldest publications of the least recently published channels \
         go.",
    ),
    Doc::key(
        "hub",
        "max_channels",
        "Channels the in-memory broker holds state for; past it idle ones are forgotten, and \
         new\nones refused with `unavailable` when all are in use. 0 for no limit.",
    ),
    Doc::key(
        NAMESPACES,
        "history_size",
        "Publications kept per channel for history and recovery (0: none).",
    ),
    Doc::key(NAMESPACES, "history_ttl", "How long publications stay in history."),
    Doc::key(NAMESPACES, "presence", "Keep a presence list (who is subscribed)."),
    Doc::key(NAMESPACES, "join_leave", "Push join and leave events to subscribers."),
    Doc::key(
        NAMESPACES,
        "join_leave_limit",
        "Above this many subscribers of a channel on a node, its joins and leaves are summed\n\
         into one presence_count push per join_leave_interval (0: always summed).",
    ),
    Doc::key(
        NAMESPACES,
        "join_leave_interval",
        "How often a channel past join_leave_limit gets its presence_count push.",
    ),
    Doc::key(NAMESPACES, "allow_publish", "Let clients publish (the HTTP API always may)."),
    Doc::key(
        NAMESPACES,
        "max_subscribers",
        "Most subscribers per channel on one node (0: no limit).",
    ),
    Doc::key(
        NAMESPACES,
        "anonymous",
        "What connections without credentials may do: \"deny\", \"subscribe\" or \"publish\".",
    ),
    Doc::key(
        NAMESPACES,
        "compression",
        "Compress pushes for WebSocket clients that negotiated permessage-deflate; off for\n\
         data that does not compress.",
    ),
    Doc::example(
        NAMESPACES,
        "subscribe_proxy",
        "The proxy that allows or refuses each client's subscribe here (docs/hooks.md).",
        "\"backend\"",
    ),
    Doc::example(
        NAMESPACES,
        "publish_proxy",
        "The proxy that allows, refuses or rewrites each client's publish here.",
        "\"backend\"",
    ),
];

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use switchboard_server::{Anonymous, Config, HubOptions};

    use super::*;
    use crate::{Cli, Command};

    /// The settings `switchboard serve ARGS` runs with, over `file`.
    fn settings(file: &str, args: &[&str]) -> Settings {
        let cli = Cli::try_parse_from(["switchboard", "serve"].iter().chain(args)).unwrap();
        let Command::Serve(serve) = cli.command else { panic!("expected serve") };
        serve.settings_over(parse(file).unwrap()).unwrap()
    }

    #[test]
    fn default_file_gives_the_built_in_defaults() {
        let file = parse(&default_file()).unwrap();
        assert_eq!(format!("{file:?}"), format!("{:?}", Settings::default()));
        let config = file.to_config().unwrap();
        assert_eq!(format!("{config:?}"), format!("{:?}", Config::default()));
        assert_eq!(config.hub.namespaces, HubOptions::default().namespaces);
        let served = settings("", &[]).to_config().unwrap();
        assert_eq!(format!("{served:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn every_key_of_the_default_file_has_its_comment() {
        let defaults = toml::Table::try_from(Settings::default()).unwrap();
        let documented = |section: &str, key: &str| {
            DOCS.iter().any(|doc| doc.section == section && doc.key == key)
        };
        for (key, value) in &defaults {
            match value.as_table() {
                Some(namespaces) if key == NAMESPACES => {
                    for options in namespaces.values().filter_map(toml::Value::as_table) {
                        for key in options.keys() {
                            assert!(documented(NAMESPACES, key), "namespaces.*.{key}");
                        }
                    }
                }
                Some(table) => {
                    for inner in table.keys() {
                        assert!(documented(key, inner), "{key}.{inner}");
                    }
                }
                None => assert!(documented("", key), "{key}"),
            }
        }
        // And every comment is about a key the file takes.
        for doc in DOCS {
            let value = doc.example.unwrap_or("1");
            let text = match doc.section {
                "" => format!("{} = {value}\n", doc.key),
                NAMESPACES => format!("[namespaces.x]\n{} = {value}\n", doc.key),
                section => format!("[{section}]\n{} = {value}\n", doc.key),
            };
            if let Err((_, message)) = parse(&text) {
                assert!(!message.contains("unknown field"), "{text}: {message}");
            }
        }
    }

    #[test]
    fn the_documented_default_file_is_the_generated_one() {
        let docs = include_str!("../../../docs/configuration.md");
        assert!(docs.contains(&default_file()), "docs/configuration.md: paste `config default`");
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
        let jwks =
            error("[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\njwks = \"k\"\n");
        assert!(jwks.starts_with("3:8: auth.jwks excludes"), "{jwks}");
    }

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let file = "listen = \"127.0.0.1:9\"\necho = false\ndemo = false\n";
        let s = settings(file, &["--listen", "127.0.0.1:7", "--no-demo=false"]);
        assert_eq!(s.listen, "127.0.0.1:7".parse().unwrap());
        assert!(!s.echo, "a key no flag sets keeps the file's value");
        // What `SWITCHBOARD_NO_DEMO=false` does: set, so it overrides the file.
        assert!(s.demo);
        assert!(!settings("", &["--no-echo"]).echo);
    }

    #[test]
    fn a_flag_naming_a_token_key_or_certificate_replaces_the_file_choice() {
        let file = "[auth]\njwks = \"keys.json\"\njwt_issuer = \"i\"\n[tls]\ndev = true\n";
        let secret = "0123456789abcdef0123456789abcdef";
        let s = settings(file, &["--jwt-secret", secret, "--tls-cert=c", "--tls-key=k"]);
        assert_eq!(s.auth.jwks, None);
        assert_eq!(s.auth.jwt_secret.as_ref().map(|s| s.expose()), Some(secret));
        assert_eq!(s.auth.jwt_issuer.as_deref(), Some("i"));
        assert!(!s.tls.dev);
        assert_eq!(s.conflict(), None);
    }

    #[test]
    fn hub_keys_come_from_the_file_unless_a_flag_sets_them() {
        let file = "[hub]\nmax_subscriptions = 7\noutbound_queue_bytes = 4096\n";
        let default = HubOptions::default().outbound_queue_bytes.to_string();
        let config = settings(file, &["--outbound-queue-bytes", &default]).to_config().unwrap();
        assert_eq!(config.hub.max_subscriptions, 7);
        assert_eq!(config.hub.outbound_queue_bytes, HubOptions::default().outbound_queue_bytes);
    }

    #[test]
    fn memory_bounds_come_from_the_file() {
        let file = "[hub]\nhistory_memory = 1048576\nmax_channels = 9\n";
        let config = settings(file, &[]).to_config().unwrap();
        assert_eq!((config.hub.history_memory, config.hub.max_channels), (1 << 20, 9));
        let defaults = settings("", &[]).to_config().unwrap();
        assert_eq!(defaults.hub.history_memory, HubOptions::default().history_memory);
        assert_eq!(defaults.hub.max_channels, 65_536);
    }

    #[test]
    fn namespace_flags_set_keys_over_the_file() {
        let file = "[namespaces.news]\nhistory_size = 20\npresence = false\n";
        let flags = [
            "--namespace",
            "news:presence=true, anonymous=subscribe",
            "--namespace",
            ":anonymous=publish",
            "--namespace",
            "bench",
        ];
        let config = settings(file, &flags).to_config().unwrap();
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
