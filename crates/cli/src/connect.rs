//! `switchboard connect`: an interactive WebSocket session, line in, message out.
//!
//! Also what the client commands (`connect`, `subscribe`, `publish`) share: the server's URL
//! ([`Target`]), the common flags ([`CommonArgs`]), opening a socket, a client from
//! `switchboard-client`, and how connection failures read on one line.
//!
//! The session drives the codec itself rather than `switchboard-client`: it sends what the
//! user typed, as typed, so it works against any WebSocket server (`--raw`) and shows the
//! protocol as it is on the wire.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use bytes::{Buf as _, BytesMut};
use clap::ValueEnum;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use switchboard_client::{Client, ConnectionState, DisconnectReason, Error};
use switchboard_codec::{
    ClientHandshake, CloseCause, CloseCode, CloseFrame, Connection, Event, HandshakeError,
    HandshakeLimits, Limits, Message, Role, Timeouts,
};
use switchboard_proto::{Format, Value};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Flags of `switchboard connect`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConnectArgs {
    /// Server URL: ws://, wss://, http:// or https:// (read as ws:// and wss://). Without a
    /// path: /ws (with --raw: /).
    url: Target,
    /// Plain WebSocket with any server: each line is sent as a text message and each message
    /// received is printed as is. No protocol; after the end of input, waits until the
    /// server has been quiet for 0.5 s before closing.
    #[arg(long)]
    raw: bool,
    /// Wire format: JSON text frames, or MessagePack binary frames (typed and printed as
    /// JSON).
    #[arg(long, value_enum, default_value_t, conflicts_with = "raw")]
    protocol: ProtocolArg,
    /// Keep the connection open after the end of input, printing messages until the server
    /// closes it or SIGINT.
    #[arg(long, short = 'n')]
    no_close: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// Flags every client command takes.
#[derive(Debug, clap::Args)]
pub(crate) struct CommonArgs {
    /// Token (a JWT or a ticket) sent as `Authorization: Bearer`. Prefer the environment
    /// variable: a command-line argument is visible to every user of the machine.
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

/// Runs `switchboard connect`.
pub(crate) fn run(args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(session(args))
}

/// A server address from the command line: `ws[s]://` or `http[s]://`, host, port, path.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Target {
    /// `wss://` or `https://`.
    pub(crate) tls: bool,
    /// The host to resolve and, with TLS, to verify; without brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The `Host` header: the host as written, with the port unless it is the default.
    pub(crate) authority: String,
    /// Path and query, at least `/`.
    pub(crate) resource: String,
}

impl Target {
    /// The same target with `path` in place of an empty one (`/`, `/?query`).
    pub(crate) fn with_default_path(mut self, path: &str) -> Self {
        if self.resource == "/" || self.resource.starts_with("/?") {
            self.resource = format!("{path}{}", &self.resource[1..]);
        }
        self
    }

    /// `host:port`, for messages.
    pub(crate) fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `ws://` or `wss://` URL.
    pub(crate) fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority, self.resource)
    }

    /// The `http://` or `https://` URL of `path` on the same server.
    pub(crate) fn http_url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.authority)
    }
}

impl std::str::FromStr for Target {
    type Err = String;

    /// RFC 6455 §3: `ws[s]://host[:port][/path][?query]`; `http[s]://` reads as `ws[s]://`
    /// since the upgrade starts as an HTTP request to the same place.
    fn from_str(url: &str) -> Result<Self, String> {
        let schemes = [("ws://", false), ("wss://", true), ("http://", false), ("https://", true)];
        let Some((rest, tls)) = schemes.iter().find_map(|&(scheme, tls)| {
            let head = url.get(..scheme.len())?;
            head.eq_ignore_ascii_case(scheme).then(|| (&url[scheme.len()..], tls))
        }) else {
            return Err("the scheme must be ws://, wss://, http:// or https://".to_owned());
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("whitespace in the URL".to_owned());
        }
        if url.contains('#') {
            // RFC 6455 §3: fragment identifiers are meaningless in WebSocket URIs.
            return Err("a WebSocket URL has no fragment".to_owned());
        }
        let (authority, resource) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported: use --token".to_owned());
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return Err("unclosed [ in the host".to_owned());
            };
            let port = match after.strip_prefix(':') {
                Some(port) => port.parse().ok(),
                None if after.is_empty() => Some(default_port),
                None => None,
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().ok()),
                None => (authority, Some(default_port)),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host".to_owned());
        }
        let Some(port) = port.filter(|p| *p != 0) else {
            return Err("invalid port".to_owned());
        };
        Ok(Self { tls, host: host.to_owned(), port, authority: authority.to_owned(), resource })
    }
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
    target: &Target,
    common: &CommonArgs,
    format: Format,
) -> anyhow::Result<Client> {
    let mut builder =
        Client::builder(target.ws_url()).format(format).connect_timeout(common.timeout);
    if let Some(token) = &common.token {
        builder = builder.token(token.clone());
    }
    if let Some(origin) = &common.origin {
        builder = builder.origin(origin.clone());
    }
    if target.tls {
        builder = builder.tls_config(tls_config(common.cacert.as_deref())?);
    }
    builder.build().context("cannot start the client")
}

/// Waits for `client`'s first connection. A client reconnects by itself, but a first
/// attempt that fails is almost always a mistake (a wrong URL, a server not running, a
/// refused token): say so and stop instead of retrying forever.
pub(crate) async fn first_connection(
    client: &Client,
    target: &Target,
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
pub(crate) fn describe(reason: &DisconnectReason, target: &Target) -> String {
    match reason {
        DisconnectReason::Io { kind, message } => {
            format!("cannot connect to {}: {}", target.addr(), io_text(*kind, message))
        }
        DisconnectReason::Refused { status, code, message, .. } => {
            refusal_text(&target.ws_url(), *status, code.as_deref(), message)
        }
        other => format!("cannot connect to {}: {other}", target.ws_url()),
    }
}

/// A refused upgrade, with the reason the server gave.
fn refusal_text(url: &str, status: u16, code: Option<&str>, message: &str) -> String {
    match code {
        Some(code) => format!("{url} refused the connection: {status} {code}: {message}"),
        None if message.is_empty() => format!("{url} refused the connection: {status}"),
        None => format!("{url} refused the connection: {status}: {message}"),
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

/// The TLS client configuration: ring, TLS 1.2 and 1.3, Mozilla's roots and `cacert`'s.
pub(crate) fn tls_config(cacert: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = cacert {
        let shown = path.display();
        let certs =
            CertificateDer::pem_file_iter(path).with_context(|| format!("cannot read {shown}"))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.with_context(|| format!("cannot read {shown}"))?;
            roots.add(cert).with_context(|| format!("unusable certificate in {shown}"))?;
            added += 1;
        }
        if added == 0 {
            bail!("no certificate in {shown}");
        }
    }
    // An explicit provider: the process-wide default may be unset.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A byte stream: plain TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Opens TCP to `target`, then TLS when `tls` is given. The caller bounds the time.
pub(crate) async fn open_stream(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Box<dyn Io>> {
    let failed = |e: &std::io::Error| {
        anyhow!("cannot connect to {}: {}", target.addr(), io_text(e.kind(), &e.to_string()))
    };
    let tcp =
        TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| failed(&e))?;
    // Interactive traffic: each line should leave at once.
    tcp.set_nodelay(true).map_err(|e| failed(&e))?;
    let Some(config) = tls else { return Ok(Box::new(tcp)) };
    let name = ServerName::try_from(target.host.clone())
        .map_err(|e| anyhow!("invalid tls server name {:?}: {e}", target.host))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(|e| failed(&e))?;
    Ok(Box::new(stream))
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

/// An upgraded connection.
struct WebSocket {
    io: Box<dyn Io>,
    /// Bytes read past the response head: the first frames, if any.
    buf: BytesMut,
    /// The subprotocol the server chose.
    protocol: Option<String>,
}

/// Connects and upgrades (RFC 6455 §4.1), offering `protocols`, within `common.timeout`.
async fn open_websocket(
    target: &Target,
    common: &CommonArgs,
    protocols: &[&str],
) -> anyhow::Result<WebSocket> {
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    if common.token.as_deref().is_some_and(|t| !printable(t)) {
        bail!("--token must be printable ASCII");
    }
    if common.origin.as_deref().is_some_and(|o| !printable(o)) {
        bail!("--origin must be printable ASCII");
    }
    let tls = if target.tls { Some(tls_config(common.cacert.as_deref())?) } else { None };
    let attempt = async {
        let mut io = open_stream(target, tls.as_ref()).await?;
        let hs = ClientHandshake::new().with_protocols(protocols.iter().copied());
        let bearer = common.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer.as_str()));
        }
        if let Some(origin) = &common.origin {
            headers.push(("Origin", origin.as_str()));
        }
        let lost = |e: std::io::Error| anyhow!("connection to {} lost: {e}", target.addr());
        io.write_all(&hs.request(&target.authority, &target.resource, &headers))
            .await
            .map_err(lost)?;
        io.flush().await.map_err(lost)?;
        let limits = HandshakeLimits::default();
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            if io.read_buf(&mut buf).await.map_err(lost)? == 0 {
                bail!("{} closed the connection during the opening handshake", target.addr());
            }
            match hs.verify(&buf, &limits) {
                Ok(None) => {}
                Ok(Some((accepted, used))) => {
                    buf.advance(used);
                    return Ok(WebSocket { io, buf, protocol: accepted.protocol });
                }
                Err(HandshakeError::UnexpectedStatus(status)) => {
                    let (code, message) = refusal(&mut io, buf).await;
                    bail!(refusal_text(&target.ws_url(), status, code.as_deref(), &message));
                }
                Err(e) => bail!("{} is not a WebSocket server: {e}", target.ws_url()),
            }
        }
    };
    match tokio::time::timeout(common.timeout, attempt).await {
        Ok(result) => result,
        Err(_) => bail!(
            "cannot connect to {}: no answer within {}",
            target.addr(),
            humantime::format_duration(common.timeout)
        ),
    }
}

/// Reads a refused upgrade's body: the server's JSON `{"error": {"code", "message"}}` when it
/// sent one, else the start of the text.
async fn refusal(io: &mut Box<dyn Io>, mut buf: BytesMut) -> (Option<String>, String) {
    let (head_len, content_length) = {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse::<usize>().ok());
                (n, length)
            }
            _ => (buf.len(), Some(0)),
        }
    };
    let want = head_len + content_length.unwrap_or(MAX_REFUSAL_BODY).min(MAX_REFUSAL_BODY);
    let _ = tokio::time::timeout(REFUSAL_BODY_WAIT, async {
        while buf.len() < want {
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let body = &buf[head_len.min(buf.len())..buf.len().min(want)];
    error_body(body)
}

/// The `code` and `message` of a JSON error body `{"error": {"code", "message"}}` (the API's
/// and the upgrade's refusals), else no code and the body's first 200 characters.
pub(crate) fn error_body(body: &[u8]) -> (Option<String>, String) {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let error = json.as_ref().and_then(|j| j.get("error"));
    let text =
        |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str).map(str::to_owned);
    match (text("code"), text("message")) {
        (code, Some(message)) => (code, message),
        (code, None) => (code, String::from_utf8_lossy(body).trim().chars().take(200).collect()),
    }
}

/// What the session speaks.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Mode {
    /// Plain text frames, no protocol.
    Raw,
    /// Switchboard protocol commands in this format.
    Protocol(Format),
}

async fn session(args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let (mode, target) = if args.raw {
        (Mode::Raw, args.url.clone())
    } else {
        (Mode::Protocol(args.protocol.into()), args.url.clone().with_default_path("/ws"))
    };
    let offer: Vec<&str> = match mode {
        Mode::Raw => Vec::new(),
        Mode::Protocol(format) => vec![format.subprotocol()],
    };
    let WebSocket { mut io, mut buf, protocol } =
        open_websocket(&target, &args.common, &offer).await?;
    if let Mode::Protocol(format) = mode
        && protocol.is_none()
        && format == Format::Msgpack
    {
        // Protocol §1: a server that names no subprotocol speaks JSON.
        bail!("{} did not accept {}", target.ws_url(), format.subprotocol());
    }
    if std::io::stdin().is_terminal() {
        let what = match mode {
            Mode::Raw => "lines are sent as text messages",
            Mode::Protocol(_) => "type JSON commands, one per line, such as {\"type\":\"ping\"}",
        };
        let speaks = protocol.map(|p| format!(" ({p})")).unwrap_or_default();
        eprintln!("switchboard: connected to {}{speaks}; {what}; Ctrl-D closes", target.ws_url());
    }

    let mut conn = Connection::new(Role::Client, Limits::default());
    let mut timeouts = Timeouts::default();
    timeouts.close_timeout = Some(args.common.timeout);
    conn.set_timeouts(timeouts, Instant::now());
    let mut session =
        Session { mode, pending: 0, next_id: 1, last_recv: Instant::now(), remote_close: None };
    if !buf.is_empty() {
        let _ = conn.handle_read(&mut buf, Instant::now());
    }
    let mut input = stdin_lines()?;
    let mut input_open = true;
    let mut input_failed = false;
    // Set at the end of input: when it came, to bound the wait for replies.
    let mut draining: Option<Instant> = None;
    let mut signal = pin!(crate::shutdown_signal());
    let mut signalled = false;
    loop {
        while let Some(event) = conn.poll_event() {
            session.on_event(event)?;
        }
        if let Some(since) = draining
            && !conn.is_closing()
            && session.is_drained(since, args.common.timeout, Instant::now())
        {
            if session.pending > 0 {
                eprintln!(
                    "switchboard: {} command(s) unanswered after {}",
                    session.pending,
                    humantime::format_duration(args.common.timeout)
                );
            }
            let _ = conn.close(CloseCode::NORMAL, "", Instant::now());
        }
        while let Some(bytes) = conn.poll_transmit() {
            if io.write_all(&bytes).await.is_err() {
                conn.handle_transport_closed();
                break;
            }
        }
        if io.flush().await.is_err() {
            conn.handle_transport_closed();
        }
        if conn.is_closed() {
            break;
        }
        let drain_at = draining.map(|since| session.drain_deadline(since, args.common.timeout));
        let wake = [conn.poll_timeout(), drain_at].into_iter().flatten().min();
        tokio::select! {
            read = io.read_buf(&mut buf) => match read {
                Ok(n) if n > 0 => {
                    // A peer violation closes the connection; the cause says so below.
                    let _ = conn.handle_read(&mut buf, Instant::now());
                }
                _ => conn.handle_transport_closed(),
            },
            line = input.recv(), if input_open && !conn.is_closing() => match line {
                Some(Ok(line)) => {
                    if let Some(message) = session.message_from(&line) {
                        // Sends only fail once closing, which this branch excludes.
                        let _ = conn.send(message);
                    }
                }
                Some(Err(e)) => {
                    eprintln!("switchboard: cannot read standard input: {e}");
                    input_failed = true;
                    input_open = false;
                    draining = Some(Instant::now());
                }
                None => {
                    input_open = false;
                    if !args.no_close {
                        draining = Some(Instant::now());
                    }
                }
            },
            () = sleep_until(wake) => conn.handle_timeout(Instant::now()),
            _ = &mut signal, if !signalled => {
                signalled = true;
                let _ = conn.close(CloseCode::NORMAL, "", Instant::now());
            }
        }
    }
    let _ = tokio::time::timeout(REFUSAL_BODY_WAIT, io.shutdown()).await;
    let failed = || if input_failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    match conn.close_cause() {
        Some(CloseCause::ProtocolError) => match conn.error() {
            Some(e) => bail!("{} broke the WebSocket protocol: {e}", target.ws_url()),
            None => bail!("{} broke the WebSocket protocol", target.ws_url()),
        },
        Some(CloseCause::Remote) => match session.remote_close {
            Some(Some(CloseFrame { code, .. })) if code == CloseCode::NORMAL => Ok(failed()),
            Some(Some(CloseFrame { code, reason })) if reason.is_empty() => {
                bail!("the server closed the connection with {code}")
            }
            Some(Some(CloseFrame { code, reason })) => {
                bail!("the server closed the connection with {code}: {reason}")
            }
            Some(None) => bail!("the server closed the connection without a status code"),
            None => bail!("connection to {} lost without a close frame", target.addr()),
        },
        // This end closed (the end of input, a signal), and the server answered or did not in
        // time: either way the session ended as asked.
        _ => Ok(failed()),
    }
}

/// What the session loop keeps between events.
struct Session {
    mode: Mode,
    /// Commands sent and not yet answered (protocol §2: one reply per command, in order).
    pending: usize,
    /// The id for the next command typed without one.
    next_id: u64,
    last_recv: Instant,
    /// The server's close frame, once it sent one (`Some(None)`: without a status code).
    remote_close: Option<Option<CloseFrame>>,
}

impl Session {
    /// Prints a message from the server.
    fn on_event(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Text(text) => {
                self.last_recv = Instant::now();
                if let Mode::Protocol(_) = self.mode {
                    self.count_reply(serde_json::from_slice(&text).ok());
                }
                print_line(&text).context("cannot write to standard output")?;
            }
            Event::Binary(bytes) => {
                self.last_recv = Instant::now();
                match self.mode {
                    Mode::Protocol(Format::Msgpack) => {
                        match Format::Msgpack.decode::<Value>(&bytes) {
                            Ok(value) => {
                                let line = value.to_string();
                                self.count_reply(Some(value));
                                print_line(line.as_bytes())
                                    .context("cannot write to standard output")?;
                            }
                            Err(e) => eprintln!("switchboard: undecodable MessagePack: {e}"),
                        }
                    }
                    _ => print_line(&bytes).context("cannot write to standard output")?,
                }
            }
            Event::Close(frame) => self.remote_close = Some(frame),
            Event::Ping(_) | Event::Pong(_) => {}
        }
        Ok(())
    }

    /// Protocol §2: an object without `push` is a reply.
    fn count_reply(&mut self, message: Option<Value>) {
        if message.is_some_and(|m| m.is_object() && m.get("push").is_none()) {
            self.pending = self.pending.saturating_sub(1);
        }
    }

    /// The message for a typed line; `None` (with a word on standard error) for a line not
    /// to send.
    fn message_from(&mut self, line: &str) -> Option<Message> {
        let format = match self.mode {
            Mode::Raw => return Some(Message::text(line)),
            Mode::Protocol(format) => format,
        };
        let command = match command_from_line(line, &mut self.next_id) {
            Ok(Some(command)) => command,
            Ok(None) => return None,
            Err(why) => {
                eprintln!("switchboard: {why}");
                return None;
            }
        };
        let message = match format {
            Format::Json => Message::text(command.to_string()),
            Format::Msgpack => match format.encode(&command) {
                Ok(bytes) => Message::binary(bytes),
                Err(e) => {
                    eprintln!("switchboard: {e}");
                    return None;
                }
            },
        };
        self.pending += 1;
        Some(message)
    }

    /// Whether, after the end of input at `since`, it is time to close: every command
    /// answered (raw mode: the server quiet for a moment), or `limit` passed.
    fn is_drained(&self, since: Instant, limit: Duration, now: Instant) -> bool {
        match self.mode {
            Mode::Protocol(_) if self.pending == 0 => true,
            _ => now >= self.drain_deadline(since, limit),
        }
    }

    fn drain_deadline(&self, since: Instant, limit: Duration) -> Instant {
        let give_up = since + limit;
        match self.mode {
            Mode::Protocol(_) => give_up,
            Mode::Raw => give_up.min(self.last_recv.max(since) + RAW_QUIET),
        }
    }
}

/// A typed line as a command: a JSON object, with an `id` filled in when it has none.
/// `Ok(None)` for a blank line.
fn command_from_line(line: &str, next_id: &mut u64) -> Result<Option<Value>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let hint = "commands are JSON objects, such as {\"type\":\"ping\"}; --raw sends plain text";
    let mut command = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(command)) => command,
        Ok(_) => return Err(format!("not a command: {hint}")),
        Err(_) => return Err(format!("not JSON: {hint}")),
    };
    match command.get("id") {
        None | Some(Value::Null) => {
            command.insert("id".to_owned(), Value::from(*next_id));
            *next_id += 1;
        }
        // An id of another type goes as typed: the server's error reply says what is wrong.
        Some(id) => {
            if let Some(id) = id.as_u64() {
                *next_id = (*next_id).max(id.saturating_add(1));
            }
        }
    }
    Ok(Some(Value::Object(command)))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// How long raw mode waits, after the end of input, for the server to go quiet.
const RAW_QUIET: Duration = Duration::from_millis(500);
/// Time for the client's `connect` command past the connection attempt's limit.
const CONNECT_MARGIN: Duration = Duration::from_secs(2);
/// How much of a refusal's body is read.
const MAX_REFUSAL_BODY: usize = 4096;
/// How long to wait for a refusal's body after its head.
const REFUSAL_BODY_WAIT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_urls() {
        let t: Target = "ws://127.0.0.1:8080/ws".parse().unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.resource.as_str()),
            (false, "127.0.0.1", 8080, "/ws")
        );
        let t: Target = "HTTPS://rt.example.com".parse().unwrap();
        assert_eq!((t.tls, t.port, t.resource.as_str()), (true, 443, "/"));
        assert_eq!(t.ws_url(), "wss://rt.example.com/");
        assert_eq!(t.http_url("/api/publish"), "https://rt.example.com/api/publish");
        let t: Target = "http://[::1]:9000?x=1".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port, t.addr()), ("::1", 9000, "[::1]:9000".to_owned()));
        assert_eq!(t.with_default_path("/ws").ws_url(), "ws://[::1]:9000/ws?x=1");
        let t: Target = "ws://h/echo".parse().unwrap();
        assert_eq!(t.with_default_path("/ws").resource, "/echo");
    }

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
            let err = url.parse::<Target>().expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn typed_commands_get_ids_when_they_have_none() {
        let mut next = 1;
        let mut command = |line: &str| command_from_line(line, &mut next);
        assert_eq!(command(r#"{"type":"ping"}"#).unwrap().unwrap()["id"], 1);
        assert_eq!(command(r#"{"id":7,"type":"ping"}"#).unwrap().unwrap()["id"], 7);
        assert_eq!(command(r#"{"type":"ping","id":null}"#).unwrap().unwrap()["id"], 8);
        assert_eq!(command(r#"{"id":"x","type":"ping"}"#).unwrap().unwrap()["id"], "x");
        assert_eq!(command("  ").unwrap(), None);
        assert!(command("hello").unwrap_err().contains("--raw"));
        assert!(command("[1]").unwrap_err().contains("not a command"));
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let body = br#"{"error":{"code":"credentials_required","message":"a token, please"}}"#;
        assert_eq!(
            error_body(body),
            (Some("credentials_required".to_owned()), "a token, please".to_owned())
        );
        assert_eq!(error_body(b"not found\n"), (None, "not found".to_owned()));
    }
}
