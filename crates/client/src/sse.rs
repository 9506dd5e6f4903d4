//! The Server-Sent Events transport (`docs/transports.md`): the session's messages come
//! down a `GET /sse` event stream, its commands go up by `POST /session`.
//!
//! Two tasks carry one session. The downlink task reads the event stream and hands each
//! message to the driver; when the stream breaks without a `disconnect` push it resumes
//! the same session with `Last-Event-ID` (nothing lost, nothing twice), and when the
//! server cannot resume it (the 4002 `disconnect` push) the stream ends and the driver
//! reconnects with recovery, as after a WebSocket's 4002. The uplink task posts the
//! commands in order, each request carrying those queued meanwhile, one per line.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use crate::builder::Settings;
use crate::connect::http::{BodyDecoder, ResponseHead, request};
use crate::connect::sse::EventParser;
use crate::connect::{ByteStream, HttpRefusal, open_stream};
use crate::error::DisconnectReason;

/// What the downlink and uplink tasks tell the driver.
#[derive(Debug)]
pub(crate) enum Down {
    /// One protocol message.
    Message(Bytes),
    /// Bytes arrived that held no message (a `: ping` comment): the link is alive.
    Alive,
    /// The session cannot go on, for this reason (a refused resume or command).
    Failed(DisconnectReason),
    /// The stream ended for good (after a `disconnect` push, or a resume that never
    /// connected): the end of the transport.
    End,
}

/// An open SSE session, as the driver holds it.
pub(crate) struct SseLink {
    down: mpsc::UnboundedReceiver<Down>,
    up: mpsc::UnboundedSender<Bytes>,
    max_batch: Arc<AtomicU64>,
    session: Arc<Session>,
    tasks: [JoinHandle<()>; 2],
}

/// What both tasks and the closing request need.
struct Session {
    settings: Arc<Settings>,
    token: Option<String>,
    /// The session id: the `Switchboard-Session` header.
    id: String,
}

impl SseLink {
    /// Opens the event stream, reads its `session` event and starts the two tasks.
    pub(crate) async fn open(
        settings: Arc<Settings>,
        token: Option<String>,
    ) -> Result<Self, DisconnectReason> {
        let mut stream = EventStream::open(&settings, token.as_deref(), None).await?;
        let id = loop {
            if let Some(event) = stream.parser.next_event() {
                if event.event != "session" {
                    let why = "the event stream did not open with a session event";
                    return Err(DisconnectReason::Protocol(why.to_owned()));
                }
                break session_id(&event.data)?;
            }
            match stream.read().await {
                Ok(true) => {}
                Ok(false) => {
                    let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended");
                    return Err(DisconnectReason::io(&eof));
                }
                Err(e) => return Err(DisconnectReason::io(&e)),
            }
        };
        let session = Arc::new(Session { settings, token, id });
        let (down_tx, down) = mpsc::unbounded_channel();
        let (up, up_rx) = mpsc::unbounded_channel();
        // Until `connect` says otherwise, the protocol's default (protocol §3).
        let max_batch = Arc::new(AtomicU64::new(64 << 10));
        let tasks = [
            tokio::spawn(downlink(stream, Arc::clone(&session), down_tx.clone())),
            tokio::spawn(uplink(Arc::clone(&session), up_rx, Arc::clone(&max_batch), down_tx)),
        ];
        Ok(Self { down, up, max_batch, session, tasks })
    }

    /// Queues one command for the uplink.
    pub(crate) fn send(&mut self, command: Bytes) -> Result<(), ()> {
        self.up.send(command).map_err(|_| ())
    }

    /// The largest body `POST /session` takes (`max_message_size`).
    pub(crate) fn set_max_message_size(&self, max: u64) {
        self.max_batch.store(max, Ordering::Relaxed);
    }

    /// The next thing the tasks said; [`Down::End`] once they are gone.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it waits on one channel.
    pub(crate) async fn recv(&mut self) -> Down {
        self.down.recv().await.unwrap_or(Down::End)
    }

    /// Ends the session at once (`DELETE /session`: its presence entries go, with `leave`
    /// pushes), waiting at most `wait`.
    pub(crate) async fn close(&mut self, wait: Duration) {
        for task in &self.tasks {
            task.abort();
        }
        let session = Arc::clone(&self.session);
        let _ = timeout(wait, async move {
            let mut conn = None;
            let _ = exchange(&session, &mut conn, "DELETE", None).await;
        })
        .await;
    }
}

impl Drop for SseLink {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One `GET /sse` response being read.
struct EventStream {
    io: Box<dyn ByteStream>,
    buf: BytesMut,
    body: BodyDecoder,
    text: BytesMut,
    parser: EventParser,
    ended: bool,
}

impl EventStream {
    /// Sends `GET /sse` (with `Last-Event-ID` when resuming) and reads the response head.
    async fn open(
        settings: &Settings,
        token: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<Self, DisconnectReason> {
        let url = &settings.url;
        let mut io = connect(settings).await?;
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> =
            vec![("Accept", "text/event-stream"), ("Cache-Control", "no-store")];
        headers.extend(settings.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer));
        }
        if let Some(id) = last_event_id {
            headers.push(("Last-Event-ID", id));
        }
        let target = sibling(url.resource(), "sse", true);
        let head = request("GET", url.authority(), &target, &headers, None);
        let mut buf = BytesMut::with_capacity(4096);
        let head = exchange_head(&mut io, &mut buf, &head).await.map_err(|e| match e {
            Exchange::Io(e) => DisconnectReason::io(&e),
            Exchange::Protocol(why) => DisconnectReason::Protocol(why),
        })?;
        if head.status != 200 {
            let body = read_body(&mut io, &mut buf, &head).await;
            let HttpRefusal { status, code, message, .. } =
                HttpRefusal::from_body(head.status, &body);
            let retry_after = head.retry_after();
            return Err(DisconnectReason::Refused { status, code, message, retry_after });
        }
        let mut stream = Self {
            io,
            buf,
            body: BodyDecoder::new(head.framing),
            text: BytesMut::new(),
            parser: EventParser::new(),
            ended: false,
        };
        stream.decode().map_err(|e| DisconnectReason::Protocol(e.to_string()))?;
        Ok(stream)
    }

    /// Reads more of the stream. `false` once it ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: bytes read are kept.
    async fn read(&mut self) -> io::Result<bool> {
        if self.ended {
            return Ok(false);
        }
        if self.io.read_buf(&mut self.buf).await? == 0 {
            self.ended = true;
            return Ok(false);
        }
        self.decode()?;
        Ok(true)
    }

    fn decode(&mut self) -> io::Result<()> {
        let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
        self.ended =
            self.body.decode(&mut self.buf, &mut self.text).map_err(|e| bad(e.to_string()))?;
        self.parser.feed(&self.text).map_err(|e| bad(e.to_string()))?;
        self.text.clear();
        Ok(())
    }
}

/// Reads the event stream, resuming it after a cut, until it ends for good or the driver
/// goes away.
async fn downlink(mut stream: EventStream, session: Arc<Session>, tx: mpsc::UnboundedSender<Down>) {
    let mut last_id = String::new();
    let mut retry = DEFAULT_RETRY;
    let mut read_something = false;
    loop {
        let mut delivered = false;
        while let Some(event) = stream.parser.next_event() {
            if !event.id.is_empty() {
                last_id.clone_from(&event.id);
            }
            if event.event != "message" {
                continue;
            }
            // The server ends the stream after a `disconnect` push: the session is over.
            let last = is_disconnect(&event.data);
            if tx.send(Down::Message(event.data)).is_err() {
                return;
            }
            delivered = true;
            if last {
                let _ = tx.send(Down::End);
                return;
            }
        }
        if read_something && !delivered && tx.send(Down::Alive).is_err() {
            return;
        }
        if let Some(asked) = stream.parser.retry() {
            retry = asked.min(MAX_RETRY);
        }
        match stream.read().await {
            Ok(true) => read_something = true,
            Ok(false) | Err(_) => {
                tracing::debug!("event stream cut, resuming");
                match resume(&session, &last_id, retry, &tx).await {
                    Some(resumed) => stream = resumed,
                    None => return,
                }
                read_something = false;
            }
        }
    }
}

/// Reopens the stream where it broke. `None` when it could not (the driver was told).
async fn resume(
    session: &Session,
    last_id: &str,
    retry: Duration,
    tx: &mpsc::UnboundedSender<Down>,
) -> Option<EventStream> {
    let settings = &session.settings;
    for attempt in 0..RESUME_ATTEMPTS {
        if attempt > 0 {
            sleep(retry).await;
        }
        let opening = EventStream::open(settings, session.token.as_deref(), Some(last_id));
        match timeout(settings.connect_timeout, opening).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(refused @ DisconnectReason::Refused { .. })) => {
                let _ = tx.send(Down::Failed(refused));
                return None;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, attempt, "resuming the event stream"),
            Err(_) => tracing::debug!(attempt, "resuming the event stream timed out"),
        }
    }
    let _ = tx.send(Down::End);
    None
}

/// Posts the commands in order, batching those queued while a request was under way.
async fn uplink(
    session: Arc<Session>,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    max_batch: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<Down>,
) {
    let mut conn = None;
    let mut next: Option<Bytes> = None;
    loop {
        let first = match next.take() {
            Some(command) => command,
            None => match rx.recv().await {
                Some(command) => command,
                None => return,
            },
        };
        let limit = usize::try_from(max_batch.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let mut body = BytesMut::from(&first[..]);
        while let Ok(command) = rx.try_recv() {
            if body.len() + 1 + command.len() > limit {
                next = Some(command);
                break;
            }
            body.extend_from_slice(b"\n");
            body.extend_from_slice(&command);
        }
        if let Err(reason) = post(&session, &mut conn, &body).await {
            let _ = tx.send(Down::Failed(reason));
            return;
        }
    }
}

/// A kept-alive connection for `POST /session`, with its read buffer.
type Uplink = Option<(Box<dyn ByteStream>, BytesMut)>;

/// `POST /session` with `body`: fine on 204.
async fn post(session: &Session, conn: &mut Uplink, body: &[u8]) -> Result<(), DisconnectReason> {
    let (status, body) =
        match timeout(EXCHANGE_TIMEOUT, exchange(session, conn, "POST", Some(body))).await {
            Ok(result) => result?,
            Err(_) => {
                let e = io::Error::new(io::ErrorKind::TimedOut, "POST /session timed out");
                return Err(DisconnectReason::io(&e));
            }
        };
    if status == 204 {
        return Ok(());
    }
    let refusal = HttpRefusal::from_body(status, &body);
    if status == 404 && refusal.code.as_deref() == Some("session_not_found") {
        // The session is gone: start over and recover, as after 4002.
        return Err(DisconnectReason::Closed { code: 4002, reason: refusal.message });
    }
    let HttpRefusal { status, code, message, .. } = refusal;
    Err(DisconnectReason::Refused { status, code, message, retry_after: None })
}

/// One request naming the session (`POST` or `DELETE /session`) on `conn`, opened when
/// there is none: the status and body. A reused connection the server closed before
/// answering is replaced once (it closed it while idle, before reading the request).
async fn exchange(
    session: &Session,
    conn: &mut Uplink,
    method: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Bytes), DisconnectReason> {
    let settings = &session.settings;
    let url = &settings.url;
    let mut headers: Vec<(&str, &str)> = vec![("Switchboard-Session", &session.id)];
    if body.is_some() {
        headers.push(("Content-Type", "text/plain"));
    }
    headers.extend(settings.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let wire = request(
        method,
        url.authority(),
        &sibling(url.resource(), "session", false),
        &headers,
        body,
    );
    for _ in 0..2 {
        let reused = conn.is_some();
        let (io, buf) = match conn {
            Some(open) => open,
            None => conn.insert((connect(settings).await?, BytesMut::with_capacity(1024))),
        };
        match exchange_head(io, buf, &wire).await {
            Ok(head) => {
                let body = read_body(io, buf, &head).await;
                if !head.keep_alive {
                    *conn = None;
                }
                return Ok((head.status, body));
            }
            Err(Exchange::Io(e)) if reused && buf.is_empty() => {
                tracing::debug!(error = %e, "uplink connection closed while idle");
                *conn = None;
            }
            Err(Exchange::Io(e)) => return Err(DisconnectReason::io(&e)),
            Err(Exchange::Protocol(why)) => return Err(DisconnectReason::Protocol(why)),
        }
    }
    let e = io::Error::new(io::ErrorKind::ConnectionReset, "the uplink connection keeps closing");
    Err(DisconnectReason::io(&e))
}

enum Exchange {
    Io(io::Error),
    Protocol(String),
}

/// Writes `request` and reads the response head.
async fn exchange_head(
    io: &mut Box<dyn ByteStream>,
    buf: &mut BytesMut,
    request: &[u8],
) -> Result<ResponseHead, Exchange> {
    io.write_all(request).await.map_err(Exchange::Io)?;
    io.flush().await.map_err(Exchange::Io)?;
    loop {
        match ResponseHead::parse(buf) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(e) => return Err(Exchange::Protocol(e.to_string())),
        }
        match io.read_buf(buf).await {
            Ok(0) => {
                return Err(Exchange::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a response",
                )));
            }
            Ok(_) => {}
            Err(e) => return Err(Exchange::Io(e)),
        }
    }
}

/// The body of a response whose head was read: at most 4 KiB, waiting at most a second.
async fn read_body(io: &mut Box<dyn ByteStream>, buf: &mut BytesMut, head: &ResponseHead) -> Bytes {
    let mut decoder = BodyDecoder::new(head.framing);
    let mut body = BytesMut::new();
    let _ = timeout(BODY_WAIT, async {
        loop {
            match decoder.decode(buf, &mut body) {
                Ok(true) | Err(_) => break,
                Ok(false) if body.len() > MAX_BODY => break,
                Ok(false) => {}
            }
            match io.read_buf(buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    body.truncate(MAX_BODY);
    body.freeze()
}

/// TCP (and TLS) to the server, as for a WebSocket.
async fn connect(settings: &Settings) -> Result<Box<dyn ByteStream>, DisconnectReason> {
    open_stream(&settings.url, settings.tls.as_ref()).await.map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidInput {
            DisconnectReason::Protocol(e.to_string())
        } else {
            DisconnectReason::io(&e)
        }
    })
}

/// The path of `name` next to the URL's endpoint: `/ws` gives `/sse`, `/rt/ws?x=1` gives
/// `/rt/sse?x=1` (the query kept when `keep_query`: a ticket for the door).
fn sibling(resource: &str, name: &str, keep_query: bool) -> String {
    let (path, query) = match resource.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (resource, None),
    };
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    match query {
        Some(query) if keep_query => format!("{dir}{name}?{query}"),
        _ => format!("{dir}{name}"),
    }
}

/// The `session` of the `session` event.
fn session_id(data: &[u8]) -> Result<String, DisconnectReason> {
    #[derive(Deserialize)]
    struct Opened {
        session: String,
    }
    let opened: Opened = serde_json::from_slice(data)
        .map_err(|e| DisconnectReason::Protocol(format!("bad session event: {e}")))?;
    if opened.session.is_empty() || !opened.session.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DisconnectReason::Protocol("bad session id".to_owned()));
    }
    Ok(opened.session)
}

/// Whether a message is the `disconnect` push.
fn is_disconnect(data: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Push<'a> {
        #[serde(borrow)]
        push: Option<&'a str>,
    }
    data.windows(12).any(|w| w == b"\"disconnect\"")
        && serde_json::from_slice::<Push<'_>>(data).is_ok_and(|p| p.push == Some("disconnect"))
}

/// Resume attempts after a cut before giving up on the session.
const RESUME_ATTEMPTS: u32 = 3;
/// The wait between resume attempts until the stream's `retry` says otherwise.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// The longest `retry` honoured.
const MAX_RETRY: Duration = Duration::from_secs(10);
/// How long one `POST /session` may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a response's body after its head.
const BODY_WAIT: Duration = Duration::from_secs(1);
/// How much of a refusal's body is read.
const MAX_BODY: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_paths_sit_next_to_the_endpoint() {
        assert_eq!(sibling("/ws", "sse", true), "/sse");
        assert_eq!(sibling("/rt/ws?ticket=t", "sse", true), "/rt/sse?ticket=t");
        assert_eq!(sibling("/rt/ws?ticket=t", "session", false), "/rt/session");
        assert_eq!(sibling("/", "session", false), "/session");
    }

    #[test]
    fn disconnect_pushes_are_recognised() {
        assert!(is_disconnect(
            br#"{"push":"disconnect","code":4002,"reason":"","advice":"reconnect"}"#
        ));
        assert!(!is_disconnect(br#"{"push":"publication","channel":"a","data":"disconnect"}"#));
        assert!(!is_disconnect(br#"{"id":1,"result":{}}"#));
    }

    #[test]
    fn session_ids_must_be_printable() {
        assert_eq!(session_id(br#"{"session":"n-abc","transport":"sse"}"#), Ok("n-abc".to_owned()));
        assert!(session_id(br#"{"session":"a b"}"#).is_err());
        assert!(session_id(br#"{"sid":"x"}"#).is_err());
    }
}
