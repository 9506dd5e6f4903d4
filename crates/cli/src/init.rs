//! `switchboard init [PATH]`: write a configuration file to start from, with a freshly
//! generated JWT secret, API key and admin secret, the namespaces a typical application
//! needs, and the comment of every key (the same comments as `switchboard config default`);
//! then print the commands that use it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use rand::TryRngCore as _;
use switchboard_server::{Anonymous, NamespaceOptions};

use crate::config_file;
use crate::settings::{NamespaceName, Settings};

/// Flags of `switchboard init`.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// Where to write the configuration file.
    #[arg(default_value = "switchboard.toml")]
    path: PathBuf,
    /// Replace the file if it exists. Its secrets are replaced too: tokens signed with the
    /// old JWT secret stop working, and backends need the new API key.
    #[arg(long)]
    force: bool,
    /// Address and port the server is to listen on: written as `listen`, and used by the
    /// commands printed at the end [default: the server's, 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
}

/// Runs `switchboard init`: writes the file (mode 0600 on Unix: it holds secrets), then
/// prints what to run next.
///
/// # Errors
///
/// When the file exists and `--force` is not given, or it cannot be written.
pub(crate) fn run(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let secrets = Secrets::generate()?;
    let listen = args.listen.unwrap_or_else(|| Settings::default().listen);
    let text = file(listen, &secrets)?;
    write_private(&args.path, text.as_bytes(), args.force)?;
    print!("{}", next_steps(&args.path, listen, &secrets));
    Ok(ExitCode::SUCCESS)
}

/// The secrets of a new file, each [`SECRET_BYTES`] from the operating system's CSPRNG,
/// hex-encoded: printable, and safe unquoted in a shell command.
struct Secrets {
    /// `auth.jwt_secret`: the HMAC key of HS256 tokens.
    jwt_secret: String,
    /// `api_key`: the key of the HTTP API.
    api_key: String,
    /// `admin_secret`: the login of the admin page.
    admin_secret: String,
}

impl Secrets {
    fn generate() -> anyhow::Result<Self> {
        Ok(Self { jwt_secret: random_hex()?, api_key: random_hex()?, admin_secret: random_hex()? })
    }
}

/// [`SECRET_BYTES`] random bytes from the operating system, in hex.
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    // The OS generator directly, not a user-space one seeded from it: a secret is read once.
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .context("cannot read random bytes from the operating system")?;
    Ok(bytes.iter().fold(String::with_capacity(2 * SECRET_BYTES), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}

/// The file's text: the defaults, with `listen`, the secrets and [`namespaces`] set.
fn file(listen: SocketAddr, secrets: &Secrets) -> anyhow::Result<String> {
    let settings = Settings { listen, namespaces: namespaces(), ..Settings::default() };
    let mut values =
        toml::Table::try_from(&settings).context("cannot serialize the configuration")?;
    // Settings serialize secrets redacted; the file is where they are kept, in full.
    values.insert("api_key".to_owned(), secrets.api_key.clone().into());
    values.insert("admin_secret".to_owned(), secrets.admin_secret.clone().into());
    let auth = values
        .get_mut("auth")
        .and_then(toml::Value::as_table_mut)
        .context("the settings have no [auth] table")?;
    auth.insert("jwt_secret".to_owned(), secrets.jwt_secret.clone().into());
    Ok(config_file::render(HEADER, &values, namespace_comment))
}

/// The built-in namespaces (the default one closed to anonymous connections, the demo's
/// `chat`, `ticker`, `board` and `cursor`), with `rooms` for signed-in users and `news` for feeds the backend
/// publishes.
fn namespaces() -> std::collections::BTreeMap<NamespaceName, NamespaceOptions> {
    let mut namespaces = Settings::default().namespaces;
    // Subscribe, publish, presence, join and leave, history: all for token holders.
    let rooms = NamespaceOptions::default();
    let mut news = NamespaceOptions::default();
    news.history_size = 20;
    news.history_ttl = std::time::Duration::from_secs(3600);
    news.presence = false;
    news.join_leave = false;
    news.allow_publish = false;
    news.anonymous = Anonymous::Subscribe;
    namespaces.insert(NamespaceName(ROOMS.to_owned()), rooms);
    namespaces.insert(NamespaceName(NEWS.to_owned()), news);
    namespaces
}

/// What each namespace of the file is for, above its table.
fn namespace_comment(name: &str) -> Option<&'static str> {
    match name {
        "" => Some(
            "Channels without a `namespace:` prefix: only for connections whose token grants \
             them.",
        ),
        "chat" => Some(
            "The demo's chat at /: anyone may read and publish, even without a token. Set\n\
             anonymous = \"deny\" (or remove this table) before the server faces the public.",
        ),
        "board" => Some(
            "The demo's whiteboard at /board: anyone may draw, even without a token; the last\n\
             1,000 strokes stay an hour for late joiners. Remove it with the demo (demo = false).",
        ),
        "cursor" => Some(
            "The whiteboard's live pointers: anyone may publish, nothing is kept (no history,\n\
             no presence). Remove it with the demo (demo = false).",
        ),
        "ticker" => Some(
            "The demo's simulated price feed: published by the server, readable by anyone.\n\
             Remove it with the demo (demo = false).",
        ),
        ROOMS => Some(
            "Rooms for signed-in users: a connection may read a channel here when its token's\n\
             `channels` claim grants it and publish when `publish` does; with presence, join\n\
             and leave events, and history for recovery after a reconnection.",
        ),
        NEWS => Some(
            "Feeds your backend publishes through the HTTP API (POST /api/publish with the \
             api_key):\nanyone may read them, no client may publish; the last 20 items stay \
             an hour.",
        ),
        _ => None,
    }
}

/// Writes `contents` to a new file at `path`, readable and writable by its owner only, or
/// over an existing one when `force`.
fn write_private(path: &Path, contents: &[u8], force: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        // Atomic: no window between a check and the creation.
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists; not overwritten (--force replaces it, and its secrets)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    // The mode above applies to a new file only: an existing one is narrowed before the
    // secrets go in.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    file.write_all(contents).with_context(|| format!("cannot write {}", path.display()))
}

/// What to run next: the server, a token, a publication; each command runnable as printed.
fn next_steps(path: &Path, listen: SocketAddr, secrets: &Secrets) -> String {
    let path = shell_quote(&path.to_string_lossy());
    let addr = reachable(listen);
    let Secrets { jwt_secret, api_key, .. } = secrets;
    format!(
        "\
Wrote {path}: a new JWT secret, API key and admin secret, readable by you only. Next:

1. Run the server with it:

   switchboard serve --config {path}

2. In another terminal, mint a token for alice (to read rooms:* and news:*, to publish to
   rooms:*), for a client's --token or SWITCHBOARD_TOKEN, e.g.
   `switchboard subscribe --token TOKEN ws://{addr} rooms:lobby news:headlines`:

   SWITCHBOARD_JWT_SECRET={jwt_secret} switchboard token --user alice --channels 'rooms:*,news:*' --publish 'rooms:*'

3. Publish to news:headlines as your backend would, through the HTTP API:

   SWITCHBOARD_API_KEY={api_key} switchboard publish http://{addr} news:headlines '{{\"title\":\"hello\"}}'

The admin page is at http://{addr}/admin: log in with the file's admin_secret.
"
    )
}

/// The address a client on this machine reaches a server listening on `listen` at: the
/// loopback address for a wildcard one.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `word` as one word of a POSIX shell command: as is when it has no special character,
/// else in single quotes.
fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

const HEADER: &str = "\
# Switchboard configuration written by `switchboard init`, for
# `switchboard serve --config FILE` (docs/configuration.md). It holds secrets (api_key,
# admin_secret, auth.jwt_secret): keep it readable by the server's user only. Every key is
# optional; a flag or SWITCHBOARD_* variable overrides the key it names.

";

/// The namespace for signed-in users.
const ROOMS: &str = "rooms";
/// The namespace of server-published feeds.
const NEWS: &str = "news";
/// Random bytes per secret: 256 bits, the size of an HS256 key (RFC 7518 §3.2 asks for at
/// least the hash's output size).
const SECRET_BYTES: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets {
            jwt_secret: "a".repeat(64),
            api_key: "b".repeat(64),
            admin_secret: "c".repeat(64),
        }
    }

    #[test]
    fn the_file_loads_with_its_secrets_and_namespaces() {
        let listen: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let text = file(listen, &secrets()).unwrap();
        let settings = config_file::parse(&text).unwrap();
        assert_eq!(settings.listen, listen);
        assert_eq!(settings.api_key.as_ref().map(|k| k.expose()), Some("b".repeat(64).as_str()));
        let admin = settings.admin_secret.as_ref().map(|k| k.expose());
        assert_eq!(admin, Some("c".repeat(64).as_str()));
        let jwt = settings.auth.jwt_secret.as_ref().map(|k| k.expose());
        assert_eq!(jwt, Some("a".repeat(64).as_str()));
        let config = settings.to_config().unwrap();
        let ns = &config.hub.namespaces;
        assert_eq!(
            ns.keys().collect::<Vec<_>>(),
            ["", "board", "chat", "cursor", "news", "rooms", "ticker"]
        );
        assert_eq!(ns[""].anonymous, Anonymous::Deny);
        assert_eq!(ns["chat"].anonymous, Anonymous::Publish);
        assert_eq!(ns["ticker"].anonymous, Anonymous::Subscribe);
        assert!(!ns["ticker"].allow_publish);
        let rooms = &ns[ROOMS];
        assert_eq!(rooms.anonymous, Anonymous::Deny);
        assert!(rooms.presence && rooms.join_leave && rooms.allow_publish);
        assert!(rooms.history_size > 0);
        let news = &ns[NEWS];
        assert_eq!((news.anonymous, news.allow_publish), (Anonymous::Subscribe, false));
        assert_eq!((news.history_size, news.history_ttl.as_secs()), (20, 3600));
    }

    #[test]
    fn every_key_and_namespace_has_its_comment() {
        let text = file("127.0.0.1:8080".parse().unwrap(), &secrets()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let is_key = !line.is_empty() && !line.starts_with(['#', '[']);
            if is_key || line.starts_with("[namespaces.") {
                assert!(i > 0 && lines[i - 1].starts_with('#'), "no comment above {line:?}");
            }
        }
        assert!(text.contains(&format!("\napi_key = \"{}\"\n", "b".repeat(64))), "{text}");
        assert!(text.contains(&format!("\nadmin_secret = \"{}\"\n", "c".repeat(64))), "{text}");
        assert!(text.contains(&format!("\njwt_secret = \"{}\"\n", "a".repeat(64))), "{text}");
    }

    #[test]
    fn secrets_are_long_random_hex() {
        let (one, two) = (random_hex().unwrap(), random_hex().unwrap());
        assert_eq!(one.len(), 64);
        assert!(one.chars().all(|c| c.is_ascii_hexdigit()), "{one}");
        assert_ne!(one, two);
    }

    #[test]
    fn paths_are_quoted_for_the_shell_when_needed() {
        assert_eq!(shell_quote("conf/switchboard.toml"), "conf/switchboard.toml");
        assert_eq!(shell_quote("my conf.toml"), "'my conf.toml'");
        assert_eq!(shell_quote("it's.toml"), r"'it'\''s.toml'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn commands_name_a_reachable_address() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(reachable(any), "127.0.0.1:8080".parse().unwrap());
        let any6: SocketAddr = "[::]:8080".parse().unwrap();
        assert_eq!(reachable(any6), "[::1]:8080".parse().unwrap());
        let steps = next_steps(Path::new("s.toml"), any, &secrets());
        assert!(steps.contains("switchboard publish http://127.0.0.1:8080 news:headlines"));
        assert!(steps.contains("\n   switchboard serve --config s.toml\n"), "{steps}");
    }
}
