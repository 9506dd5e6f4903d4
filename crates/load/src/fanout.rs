//! `bench fanout`: subscribers on channels, one publisher, end-to-end latency from the send
//! time each payload carries.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use switchboard_client::ServerUrl;
use switchboard_codec::OpCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::args::{FanoutArgs, Protocol, PublishVia};
use crate::ctx::{Ctx, check_setup};
use crate::http::Conn;
use crate::protocol::{Kind, classify, command_error, is_channel_refusal, payload, timestamp};
use crate::stats::{Partial, encode_histogram, histogram, unix_nanos};
use crate::ws::{ConnError, Drained, Step, Target, Ws};
use crate::{Error, Job};

/// The fanout scenario's state in one worker.
#[derive(Debug)]
pub(crate) struct Fanout {
    args: FanoutArgs,
    publisher: Option<Publisher>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    shared: Rc<Shared>,
    partial: Partial,
}

#[derive(Debug)]
struct Shared {
    hist: RefCell<Histogram<u64>>,
    deliveries: Cell<u64>,
    last_ns: Cell<u64>,
    errors: RefCell<BTreeMap<String, u64>>,
    progress: Rc<Cell<u64>>,
}

impl Fanout {
    pub(crate) fn new(args: &FanoutArgs, ctx: &Ctx) -> Self {
        Self {
            args: args.clone(),
            publisher: None,
            tasks: Vec::new(),
            stop: watch::channel(false).0,
            shared: Rc::new(Shared {
                hist: RefCell::new(histogram()),
                deliveries: Cell::new(0),
                last_ns: Cell::new(0),
                errors: RefCell::new(BTreeMap::new()),
                progress: Rc::clone(&ctx.progress),
            }),
            partial: Partial::default(),
        }
    }

    /// Publishes for `--duration` at `--rate`, then waits `--grace` for the deliveries.
    async fn publish(&mut self, ctx: &Ctx) -> Result<(), ConnError> {
        let Some(publisher) = &mut self.publisher else { return Ok(()) };
        let (rate, in_flight, size) = (self.args.rate, self.args.in_flight, self.args.size);
        let channels: Vec<String> = (0..self.args.channels).map(|c| ctx.channel(c)).collect();
        let mut body = Vec::with_capacity(size + 64);
        let start = Instant::now();
        let end = start + self.args.duration;
        self.partial.first_ns = unix_nanos();
        let (mut sent, mut answered) = (0u64, 0u64);
        let total = if rate > 0 {
            (self.args.duration.as_secs_f64() * rate as f64).round() as u64
        } else {
            u64::MAX
        };
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            let due = if rate > 0 {
                ((now - start).as_secs_f64() * rate as f64) as u64 + 1
            } else {
                answered + in_flight
            }
            .min(total);
            while sent < due {
                let channel = (sent % self.args.channels) as usize;
                body.clear();
                payload(&mut body, unix_nanos(), sent, size);
                publisher.queue(ctx.protocol, &channels[channel], &body);
                self.partial.publishes[channel] += 1;
                sent += 1;
            }
            publisher.try_flush()?;
            let next = if rate > 0 && sent < total {
                start + Duration::from_secs_f64(sent as f64 / rate as f64)
            } else {
                end
            };
            tokio::select! {
                read = publisher.fill() => {
                    read?;
                    answered += publisher.answers(&mut self.partial, &channels[0])?;
                }
                () = tokio::time::sleep_until(next.min(end).into()) => {}
            }
        }
        // The last deliveries: stop early once everything expected has come, when this
        // process holds every subscriber and every publish is answered.
        let grace_end = Instant::now() + self.args.grace;
        let single = ctx.worker.count == 1;
        let has_answers = publisher.has_answers(ctx.protocol);
        loop {
            let done = self.shared.deliveries.get() >= expected(&self.partial)
                && (!has_answers || answered >= sent);
            if single && done {
                break;
            }
            tokio::select! {
                read = publisher.fill() => {
                    read?;
                    answered += publisher.answers(&mut self.partial, &channels[0])?;
                }
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            if Instant::now() >= grace_end {
                break;
            }
        }
        Ok(())
    }
}

impl Job for Fanout {
    async fn setup(&mut self, ctx: &Ctx) -> Result<(), Error> {
        let channels = self.args.channels;
        self.partial.publishes = vec![0; channels as usize];
        self.partial.subscribed = vec![0; channels as usize];
        let numbers = ctx.share(self.args.subscribers);
        let open_one = |n: u64| async move {
            let channel = ctx.channel(n % channels);
            ctx.open_conn(n, Some(&channel)).await
        };
        let (open, first) = ctx.open_many(&numbers, open_one, &mut self.partial).await;
        check_setup(numbers.len() as u64, self.partial.failures, first)?;
        for (n, conn) in open {
            self.partial.subscribed[(n % channels) as usize] += 1;
            let subscriber = Subscriber {
                protocol: ctx.protocol,
                shared: Rc::clone(&self.shared),
                stop: self.stop.subscribe(),
            };
            self.tasks.push(tokio::task::spawn_local(subscriber.run(conn)));
        }
        if ctx.is_parent() {
            // The publisher is one more connection, numbered after the subscribers.
            let publisher = match self.args.publish_via {
                PublishVia::Ws => Publisher::Ws(
                    ctx.open(self.args.subscribers, None)
                        .await
                        .map_err(|e| Error::Setup(format!("publisher: {e}")))?,
                    ctx.protocol,
                ),
                PublishVia::Http => Publisher::Http(Http::connect(&self.args, ctx).await?),
            };
            self.publisher = Some(publisher);
        }
        ctx.progress.set(0);
        Ok(())
    }

    async fn phase(&mut self, ctx: &Ctx) -> Result<(), Error> {
        ctx.meter.borrow_mut().begin();
        match self.publish(ctx).await {
            Ok(()) => {}
            Err(e @ ConnError::Refused(_)) => return Err(Error::Setup(format!("publisher: {e}"))),
            Err(e) => self.partial.error(format!("publisher_{}", e.kind())),
        }
        if ctx.is_parent() {
            ctx.meter.borrow_mut().end();
        }
        Ok(())
    }

    async fn finish(mut self, ctx: &Ctx) -> Result<Partial, Error> {
        ctx.meter.borrow_mut().end();
        let mut partial = std::mem::take(&mut self.partial);
        partial.count = self.shared.deliveries.get();
        partial.last_ns = self.shared.last_ns.get();
        partial.latency = encode_histogram(&self.shared.hist.borrow());
        for (kind, n) in self.shared.errors.borrow().iter() {
            *partial.errors.entry(kind.clone()).or_default() += n;
        }
        partial.window_s = ctx.meter.borrow().window().as_secs_f64();
        partial.cpu_s = ctx.meter.borrow().cpu();
        let _ = self.stop.send(true);
        if let Some(Publisher::Ws(ws, _)) = self.publisher.take() {
            let _ = ws.close(Duration::from_secs(2)).await;
        }
        let waiting = async {
            for task in &mut self.tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), waiting).await.is_err() {
            for task in &self.tasks {
                task.abort();
            }
        }
        Ok(partial)
    }
}

/// Deliveries expected so far, when this process holds every subscriber.
fn expected(partial: &Partial) -> u64 {
    partial.publishes.iter().zip(&partial.subscribed).map(|(p, s)| p * s).sum()
}

/// A subscriber connection's loop: time every delivery until told to stop.
struct Subscriber {
    protocol: Protocol,
    shared: Rc<Shared>,
    stop: watch::Receiver<bool>,
}

impl Subscriber {
    async fn run(mut self, mut ws: Conn) {
        let shared = Rc::clone(&self.shared);
        let result = loop {
            tokio::select! {
                read = ws.fill() => {
                    if let Err(e) = read.and_then(|_| self.receive(&mut ws)) {
                        break Err(e);
                    }
                }
                _ = self.stop.changed() => break Ok(()),
            }
        };
        match result {
            Ok(()) => {
                let _ = ws.close(Duration::from_secs(2)).await;
            }
            Err(e) => shared.error(e.kind()),
        }
    }

    fn receive(&self, ws: &mut Conn) -> Result<(), ConnError> {
        let shared = &*self.shared;
        let mut now_ns = None;
        let mut count = 0;
        let drained = ws.drain(|data, out| {
            match classify(self.protocol, out, data) {
                Kind::Payload => {
                    if let Some(ts) = timestamp(data) {
                        // One clock read per batch: these messages arrived in the same read.
                        let now = *now_ns.get_or_insert_with(unix_nanos);
                        shared.hist.borrow_mut().saturating_record(now.saturating_sub(ts));
                        count += 1;
                    }
                }
                Kind::Error(code) => shared.error(code),
                Kind::Ack | Kind::Other => {}
            }
            Ok(Step::Continue)
        })?;
        if let Some(now) = now_ns {
            shared.deliveries.set(shared.deliveries.get() + count);
            shared.progress.set(shared.progress.get() + count);
            shared.last_ns.set(now);
        }
        match drained {
            Drained::Closed(code) => Err(ConnError::Closed(code)),
            Drained::Empty | Drained::Stopped => Ok(()),
        }
    }
}

impl Shared {
    fn error(&self, kind: String) {
        *self.errors.borrow_mut().entry(kind).or_default() += 1;
    }
}

/// Where publishes go.
#[derive(Debug)]
enum Publisher {
    Ws(Ws, Protocol),
    Http(Http),
}

impl Publisher {
    /// Queues one publish of `body` (a JSON object) to `channel`.
    fn queue(&mut self, protocol: Protocol, channel: &str, body: &[u8]) {
        match self {
            Publisher::Ws(ws, _) => match protocol {
                Protocol::Switchboard => {
                    let mut text = Vec::with_capacity(body.len() + channel.len() + 48);
                    text.extend_from_slice(br#"{"id":1,"type":"publish","channel":"#);
                    json_string(&mut text, channel);
                    text.extend_from_slice(br#","data":"#);
                    text.extend_from_slice(body);
                    text.push(b'}');
                    ws.queue(OpCode::Text, &text);
                }
                Protocol::Raw => ws.queue(OpCode::Text, body),
                Protocol::Socketio => {
                    let mut text = Vec::with_capacity(body.len() + 16);
                    text.extend_from_slice(br#"42["publish","#);
                    text.extend_from_slice(body);
                    text.push(b']');
                    ws.queue(OpCode::Text, &text);
                }
            },
            Publisher::Http(http) => http.queue(channel, body),
        }
    }

    /// Whether publishes are answered (and so can be counted in flight).
    fn has_answers(&self, protocol: Protocol) -> bool {
        matches!(self, Publisher::Http(_)) || protocol == Protocol::Switchboard
    }

    fn try_flush(&mut self) -> Result<(), ConnError> {
        match self {
            Publisher::Ws(ws, _) => ws.try_flush(),
            Publisher::Http(http) => http.io.try_flush(),
        }
    }

    /// Reads more bytes. Cancel safe.
    async fn fill(&mut self) -> Result<usize, ConnError> {
        match self {
            Publisher::Ws(ws, _) => ws.fill().await,
            Publisher::Http(http) => http.io.fill().await,
        }
    }

    /// Publishes answered in the bytes read so far; error answers are counted in `partial`.
    /// A refusal of the channel itself ([`is_channel_refusal`]) ends the run instead: every
    /// publish to the same prefix would meet it. `channel` names one of the channels
    /// published to, for the error.
    fn answers(&mut self, partial: &mut Partial, channel: &str) -> Result<u64, ConnError> {
        let mut answered = 0;
        let mut refused = None::<String>;
        match self {
            Publisher::Ws(ws, protocol) => {
                let drained = ws.drain(|data, out| {
                    // Raw and Socket.IO publishers get no answers; only errors matter.
                    match classify(*protocol, out, data) {
                        Kind::Ack => answered += 1,
                        Kind::Error(code) => {
                            answered += 1;
                            partial.error(format!("publish_{code}"));
                            if is_channel_refusal(&code) {
                                refused.get_or_insert(code);
                            }
                        }
                        Kind::Payload | Kind::Other => {}
                    }
                    Ok(Step::Continue)
                })?;
                if let Some(code) = refused {
                    return Err(command_error("publish", channel, code));
                }
                if let Drained::Closed(code) = drained {
                    return Err(ConnError::Closed(code));
                }
            }
            Publisher::Http(http) => {
                while let Some(status) = http.response()? {
                    answered += 1;
                    if status != 200 {
                        partial.error(format!("publish_http_{status}"));
                    }
                }
            }
        }
        Ok(answered)
    }
}

/// `POST /api/publish` requests pipelined on one keep-alive HTTP/1.1 connection
/// (RFC 9112 §9.3.2): responses come in request order.
#[derive(Debug)]
struct Http {
    io: Ws,
    head: Vec<u8>,
}

impl Http {
    /// Opens the connection to `--api-url` (by default, `--url`'s server with `http://`, or
    /// `https://` for `wss://`).
    async fn connect(args: &FanoutArgs, ctx: &Ctx) -> Result<Self, Error> {
        let base = match &args.api_url {
            Some(url) => url.clone(),
            None => ctx.target.url.http_url(""),
        };
        let is_scheme =
            |scheme: &str| base.get(..scheme.len()).is_some_and(|s| s.eq_ignore_ascii_case(scheme));
        let url = (is_scheme("http://") || is_scheme("https://"))
            .then(|| ServerUrl::parse_accepting_http(&base).ok())
            .flatten()
            .ok_or_else(|| Error::Usage("--api-url must be an http:// or https:// URL".into()))?;
        let target = Target::resolve(url, ctx.tls.as_ref()).await.map_err(Error::Usage)?;
        let (host, path) = (target.url.authority(), target.url.resource());
        let path = if path == "/" { "/api/publish" } else { path };
        let key = args.api_key.as_deref().unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: apikey {key}\r\n\
             Content-Type: application/json\r\nContent-Length: "
        );
        let stream = target
            .connect(ctx.local_addr(args.subscribers))
            .await
            .map_err(|e| Error::Setup(format!("HTTP publisher: {e}")))?;
        Ok(Self { io: Ws::plain(stream), head: head.into_bytes() })
    }

    fn queue(&mut self, channel: &str, data: &[u8]) {
        let mut body = Vec::with_capacity(data.len() + channel.len() + 24);
        body.extend_from_slice(br#"{"channel":"#);
        json_string(&mut body, channel);
        body.extend_from_slice(br#","data":"#);
        body.extend_from_slice(data);
        body.push(b'}');
        let mut request = BytesMut::with_capacity(self.head.len() + body.len() + 8);
        request.extend_from_slice(&self.head);
        request.extend_from_slice(format!("{}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(&body);
        self.io.queue_raw(&request);
    }

    /// The status of the next complete response, removing it from the buffer.
    fn response(&mut self) -> Result<Option<u16>, ConnError> {
        let buf = self.io.read_buf();
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ConnError::Protocol("bad HTTP response")),
        };
        let status = response.code.unwrap_or_default();
        let mut length = 0usize;
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or(ConnError::Protocol("bad Content-Length"))?;
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(ConnError::Protocol("chunked API response"));
            }
        }
        if buf.len() < head + length {
            return Ok(None);
        }
        let _ = buf.split_to(head + length);
        Ok(Some(status))
    }
}

/// Appends `s` as a JSON string.
fn json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json writes into a Vec without failing.
    let _ = serde_json::to_writer(&mut *out, s);
}
