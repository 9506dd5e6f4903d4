//! What the client commands (`connect`, `subscribe`, `publish`) share: the server's URL
//! ([`ServerUrl`], read by [`server_url`]), the common flags ([`CommonArgs`]), opening a
//! socket, a client from `switchboard-client`, standard input and output, and how
//! connection failures read on one line.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::ValueEnum;
use switchboard_client::connect::{self as ws, ByteStream, HttpRefusal, read_pem_certificates};
use switchboard_client::{
    Client, ConnectionState, DisconnectReason, Error, ServerUrl, Transport, UrlError,
};
use switchboard_proto::Format;
use tokio::sync::mpsc;

/// Time for the client's `connect` command past the connection attempt's limit.
pub(crate) const CONNECT_MARGIN: Duration = Duration::from_secs(2);

/// Flags every client command takes.
#[derive(Debug, clap::Args)]
pub(crate) struct CommonArgs {
    /// Token sent as `Authorization: Bearer`: a JWT, or a one-time ticket from
    /// `POST /api/ticket`, which serves one connection. Prefer the environment variable: a
    /// command-line argument is visible to every user of the machine.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// `Origin` header, for servers that restrict origins.
    #[arg(long)]
    pub(crate) origin: Option<String>,
    /// Time limit for connecting: DNS, TCP, TLS and the opening handshake. `connect` also
    /// waits at most this long for replies after the end of input.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub(crate) timeout: Duration,
    /// PEM certificates to trust for wss:// and https:// besides the built-in roots: a
    /// private CA, or the certificate `serve --dev-tls` writes.
    #[arg(long, value_name = "FILE")]
    pub(crate) cacert: Option<PathBuf>,
}

/// `--protocol`: the wire format, by subprotocol.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, ValueEnum)]
pub(crate) enum ProtocolArg {
    /// `switchboard.v1.json`.
    #[default]
    Json,
    /// `switchboard.v1.msgpack`.
    Msgpack,
}

impl From<ProtocolArg> for Format {
    fn from(arg: ProtocolArg) -> Self {
        match arg {
            ProtocolArg::Json => Format::Json,
            ProtocolArg::Msgpack => Format::Msgpack,
        }
    }
}

/// `--transport` of the client commands.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, ValueEnum)]
pub(crate) enum TransportArg {
    /// A WebSocket at the URL.
    #[default]
    Ws,
    /// Server-Sent Events: `GET /sse` down, `POST /session` up, next to the URL's path
    /// (JSON only).
    Sse,
}

impl From<TransportArg> for Transport {
    fn from(arg: TransportArg) -> Self {
        match arg {
            TransportArg::Ws => Transport::WebSocket,
            TransportArg::Sse => Transport::Sse,
        }
    }
}

/// A server URL from the command line: `ws[s]://` or `http[s]://` (read as `ws[s]://`),
/// host, port, path; a `clap` value parser.
pub(crate) fn server_url(url: &str) -> Result<ServerUrl, String> {
    ServerUrl::parse_accepting_http(url).map_err(|e| match e {
        UrlError::Credentials => "credentials in the URL are not supported: use --token".to_owned(),
        other => other.to_string(),
    })
}

/// A runtime for a client command. Two workers: the client's connection task keeps reading
/// while the command blocks on a slow standard output (protocol §10: a client that stops
/// reading is a slow consumer).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A `switchboard-client` connection to `target` with the common flags.
pub(crate) fn client(
    target: &ServerUrl,
    common: &CommonArgs,
    format: Format,
    transport: Transport,
) -> anyhow::Result<Client> {
    let mut builder = Client::builder(target.to_string())
        .format(format)
        .transport(transport)
        .connect_timeout(common.timeout);
    if let Some(token) = &common.token {
        builder = builder.token(token.clone());
    }
    if let Some(origin) = &common.origin {
        builder = builder.origin(origin.clone());
    }
    if target.is_tls() {
        builder = builder.tls_config(tls_config(common.cacert.as_deref())?);
    }
    builder.build().context("cannot start the client")
}

/// Waits for `client`'s first connection. A client reconnects by itself, but a first
/// attempt that fails is almost always a mistake (a wrong URL, a server not running, a
/// refused token): say so and stop instead of retrying forever.
pub(crate) async fn first_connection(
    client: &Client,
    target: &ServerUrl,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut states = client.state_changes();
    let wait = async {
        loop {
            let change = states.borrow_and_update().clone();
            match change.state {
                ConnectionState::Connected => return Ok(()),
                ConnectionState::Connecting => {}
                _ => {
                    let reason = change.reason.map_or_else(
                        || "the client stopped".to_owned(),
                        |reason| describe(&reason, target),
                    );
                    return Err(anyhow!(reason));
                }
            }
            if states.changed().await.is_err() {
                return Err(anyhow!("the client stopped"));
            }
        }
    };
    // The client bounds each attempt by `timeout`; the margin covers its `connect` command.
    match tokio::time::timeout(timeout + CONNECT_MARGIN, wait).await {
        Ok(result) => result,
        Err(_) => bail!(
            "cannot connect to {}: no answer within {}",
            target.addr(),
            humantime::format_duration(timeout)
        ),
    }
}

/// Why a subscribe or publish failed, in words: the server's error, or why the client
/// stopped.
pub(crate) fn failure(client: &Client, e: &Error) -> String {
    match e {
        Error::Closed => match client.state().reason {
            Some(reason) => format!("connection closed: {reason}"),
            None => "connection closed".to_owned(),
        },
        other => other.to_string(),
    }
}

/// Closes the client, waiting a little for the close handshake.
pub(crate) async fn close(client: &Client) {
    let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
}

/// A one-line account of why a first connection failed.
pub(crate) fn describe(reason: &DisconnectReason, target: &ServerUrl) -> String {
    match reason {
        DisconnectReason::Io { kind, message } => {
            format!("cannot connect to {}: {}", target.addr(), io_text(*kind, message))
        }
        DisconnectReason::Refused { status, code, message, .. } => {
            let refusal = HttpRefusal::new(*status, code.clone(), message.clone());
            let hint = refusal_hint(code.as_deref());
            format!("{target} refused the connection: {refusal}{hint}")
        }
        other => format!("cannot connect to {target}: {other}"),
    }
}

/// What to do about a refused credential, when the refusal's code says more than its
/// message: a ticket is redeemed once and lives 30 s (docs/api.md, `POST /api/ticket`).
pub(crate) fn refusal_hint(code: Option<&str>) -> &'static str {
    match code {
        Some("ticket_invalid" | "ticket_expired") => {
            " (a ticket serves one connection, within 30 s: get a new one from POST /api/ticket)"
        }
        _ => "",
    }
}

/// An I/O error's text without the `(os error N)` noise where the kind says it all.
fn io_text(kind: std::io::ErrorKind, message: &str) -> String {
    use std::io::ErrorKind;
    match kind {
        ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        ErrorKind::ConnectionReset => "connection reset".to_owned(),
        ErrorKind::InvalidData if message.contains("certificate") => {
            format!("{message} (--cacert FILE trusts another certificate)")
        }
        _ => message.to_owned(),
    }
}

/// The TLS client configuration: the client crate's (Mozilla's roots) and `cacert`'s.
pub(crate) fn tls_config(cacert: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let extra = match cacert {
        Some(path) => read_pem_certificates(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => Vec::new(),
    };
    ws::tls_config(&extra).with_context(|| match cacert {
        Some(path) => format!("unusable certificate in {}", path.display()),
        None => "tls".to_owned(),
    })
}

/// Opens TCP to `target`, then TLS when `tls` is given. The caller bounds the time.
pub(crate) async fn open_stream(
    target: &ServerUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Box<dyn ByteStream>> {
    ws::open_stream(target, tls).await.map_err(|e| {
        anyhow!("cannot connect to {}: {}", target.addr(), io_text(e.kind(), &e.to_string()))
    })
}

/// Standard input as lines, read on a thread of its own: a blocking read never holds up
/// the runtime, and the process can exit while it waits. Line ends (`\n`, `\r\n`) are
/// removed. The channel ends at end of input, after an error.
pub(crate) fn stdin_lines() -> anyhow::Result<mpsc::Receiver<std::io::Result<String>>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut line = String::new();
                match stdin.read_line(&mut line) {
                    Ok(0) => return,
                    Ok(_) => {
                        let end = line.trim_end_matches(['\n', '\r']).len();
                        line.truncate(end);
                        if tx.blocking_send(Ok(line)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        })
        .context("cannot start the input thread")?;
    Ok(rx)
}

/// Writes `line` and a newline to standard output and flushes, so that a pipe sees each
/// message as it arrives.
///
/// # Errors
///
/// The write's error: [`std::io::ErrorKind::BrokenPipe`] when the reader has gone.
pub(crate) fn print_line(line: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Whether an error is standard output closing under us: not a failure (STYLE §4).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0s".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_urls_with_a_reason() {
        for (url, why) in [
            ("ftp://x/", "scheme"),
            ("127.0.0.1:8080", "scheme"),
            ("ws:///ws", "no host"),
            ("ws://:80/", "no host"),
            ("ws://x:0/", "port"),
            ("ws://x:http/", "port"),
            ("ws://[::1/", "unclosed"),
            ("ws://u:p@x/", "--token"),
            ("ws://x/#a", "fragment"),
            ("ws://x/a b", "whitespace"),
        ] {
            let err = server_url(url).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
