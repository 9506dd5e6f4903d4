//! `switchboard connect`: an interactive WebSocket session, line in, message out.
//!
//! The session drives the codec itself rather than `switchboard-client`'s [`Client`](switchboard_client::Client): it sends
//! what the user typed, as typed, so it works against any WebSocket server (`--raw`) and shows
//! the protocol as it is on the wire. It opens the connection with the client crate's
//! [`connect`](switchboard_client::connect) pieces, as the other commands do.

use std::io::IsTerminal as _;
use std::pin::pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::BytesMut;
use switchboard_client::ServerUrl;
use switchboard_client::connect::{ByteStream, Handshake, UpgradeError};
use switchboard_codec::{
    CloseCause, CloseCode, CloseFrame, Connection, Event, Limits, Message, Role, Timeouts,
};
use switchboard_proto::{Format, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{
    CommonArgs, ProtocolArg, open_stream, print_line, refusal_hint, runtime, server_url,
    stdin_lines, tls_config,
};

/// Flags of `switchboard connect`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConnectArgs {
    /// Server URL: ws://, wss://, http:// or https:// (read as ws:// and wss://). Without a
    /// path: /ws (with --raw: /).
    #[arg(value_parser = server_url)]
    url: ServerUrl,
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

/// Runs `switchboard connect`.
pub(crate) fn run(args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(session(args))
}

/// An upgraded connection.
struct WebSocket {
    io: Box<dyn ByteStream>,
    /// Bytes read past the response head: the first frames, if any.
    buf: BytesMut,
    /// The subprotocol the server chose.
    protocol: Option<String>,
}

/// Connects and upgrades (RFC 6455 §4.1), offering `protocols`, within `common.timeout`.
async fn open_websocket(
    target: &ServerUrl,
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
    let tls = if target.is_tls() { Some(tls_config(common.cacert.as_deref())?) } else { None };
    let bearer = common.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut handshake = Handshake::new(target).protocols(protocols);
    if let Some(bearer) = &bearer {
        handshake = handshake.header("Authorization", bearer);
    }
    if let Some(origin) = &common.origin {
        handshake = handshake.header("Origin", origin);
    }
    let attempt = async {
        let mut io = open_stream(target, tls.as_ref()).await?;
        let mut buf = BytesMut::with_capacity(4096);
        match handshake.perform(&mut io, &mut buf).await {
            Ok(accepted) => Ok(WebSocket { io, buf, protocol: accepted.protocol }),
            Err(UpgradeError::Io(e)) => bail!("connection to {} lost: {e}", target.addr()),
            Err(UpgradeError::Closed) => {
                bail!("{} closed the connection during the opening handshake", target.addr())
            }
            Err(UpgradeError::Refused(refusal)) => {
                let hint = refusal_hint(refusal.code.as_deref());
                bail!("{target} refused the connection: {refusal}{hint}")
            }
            Err(UpgradeError::Invalid(e)) => bail!("{target} is not a WebSocket server: {e}"),
            Err(e) => bail!("{target}: {e}"),
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
        bail!("{target} did not accept {}", format.subprotocol());
    }
    // Caught from here on: a signal sent on reading "connected to" must end the command
    // gracefully, not kill it.
    let mut signal = pin!(crate::shutdown_signal());
    if std::io::stdin().is_terminal() {
        let what = match mode {
            Mode::Raw => "lines are sent as text messages",
            Mode::Protocol(_) => "type JSON commands, one per line, such as {\"type\":\"ping\"}",
        };
        let speaks = protocol.map(|p| format!(" ({p})")).unwrap_or_default();
        eprintln!("switchboard: connected to {target}{speaks}; {what}; Ctrl-D closes");
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
    let _ = tokio::time::timeout(SHUTDOWN_WAIT, io.shutdown()).await;
    let failed = || if input_failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
    match conn.close_cause() {
        Some(CloseCause::ProtocolError) => match conn.error() {
            Some(e) => bail!("{target} broke the WebSocket protocol: {e}"),
            None => bail!("{target} broke the WebSocket protocol"),
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
/// How long the TCP shutdown may take once the session is over.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

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
}
