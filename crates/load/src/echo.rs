//! `bench echo`: connections sending fixed messages and timing their echoes.
//!
//! Each connection's message is encoded and masked once; sending is a copy of those bytes.
//! Echoes come back in order on a connection, so a queue of send instants times them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use switchboard_codec::OpCode;
use tokio::task::JoinHandle;

use crate::args::{EchoArgs, Protocol};
use crate::ctx::{Ctx, check_setup};
use crate::protocol::{Kind, classify};
use crate::stats::{Partial, encode_histogram, histogram, unix_nanos};
use crate::ws::{ConnError, Drained, SendTimes, Step, Ws, encode};
use crate::{Error, Job};

/// The echo scenario's state in one worker.
#[derive(Debug)]
pub(crate) struct Echo {
    args: EchoArgs,
    conns: Vec<Ws>,
    tasks: Vec<JoinHandle<()>>,
    shared: Rc<Shared>,
    partial: Partial,
}

/// What the connection tasks of one worker share (one thread: no locks).
#[derive(Debug)]
struct Shared {
    hist: RefCell<Histogram<u64>>,
    echoes: Cell<u64>,
    measuring: Cell<bool>,
    stopping: Cell<bool>,
    errors: RefCell<BTreeMap<String, u64>>,
    progress: Rc<Cell<u64>>,
}

impl Echo {
    pub(crate) fn new(args: &EchoArgs, ctx: &Ctx) -> Self {
        Self {
            args: args.clone(),
            conns: Vec::new(),
            tasks: Vec::new(),
            shared: Rc::new(Shared {
                hist: RefCell::new(histogram()),
                echoes: Cell::new(0),
                measuring: Cell::new(false),
                stopping: Cell::new(false),
                errors: RefCell::new(BTreeMap::new()),
                progress: Rc::clone(&ctx.progress),
            }),
            partial: Partial::default(),
        }
    }

    /// The message payload: S bytes of `x`, wrapped as the protocol needs.
    fn message(&self, protocol: Protocol) -> (OpCode, Vec<u8>) {
        let size = self.args.size;
        match protocol {
            Protocol::Raw => {
                let opcode = if self.args.text { OpCode::Text } else { OpCode::Binary };
                (opcode, vec![b'x'; size])
            }
            // A `ping` command padded to S bytes: the server ignores unknown fields
            // (`docs/protocol.md` §2) and answers each with `{"id":1,"result":{}}`.
            Protocol::Switchboard => {
                let mut text = br#"{"id":1,"type":"ping","pad":""#.to_vec();
                let fixed = text.len() + 2;
                text.resize(text.len() + size.saturating_sub(fixed), b'x');
                text.extend_from_slice(b"\"}");
                (OpCode::Text, text)
            }
            Protocol::Socketio => {
                let mut text = br#"42["echo",""#.to_vec();
                text.resize(text.len() + size, b'x');
                text.extend_from_slice(b"\"]");
                (OpCode::Text, text)
            }
        }
    }
}

impl Job for Echo {
    async fn setup(&mut self, ctx: &Ctx) -> Result<(), Error> {
        let numbers = ctx.share(self.args.connections);
        let (open, first) = ctx.open_many(&numbers, |n| ctx.open(n, None), &mut self.partial).await;
        check_setup(numbers.len() as u64, self.partial.failures, first)?;
        self.conns = open.into_iter().map(|(_, ws)| ws).collect();
        ctx.progress.set(0);
        Ok(())
    }

    async fn phase(&mut self, ctx: &Ctx) -> Result<(), Error> {
        let (opcode, payload) = self.message(ctx.protocol);
        let limit = if self.args.duration.is_some() { u64::MAX } else { self.args.messages };
        let warmup = match self.args.duration {
            Some(_) => self.args.common.warmup.unwrap_or(Duration::from_secs(1)),
            None => Duration::ZERO,
        };
        if warmup.is_zero() {
            self.shared.measuring.set(true);
            ctx.meter.borrow_mut().begin();
            self.partial.first_ns = unix_nanos();
        }
        for ws in self.conns.drain(..) {
            // Encoded once per connection, with the connection's own mask.
            let frame = encode(opcode, &payload, ws.mask());
            let conn = Conn {
                protocol: ctx.protocol,
                frame,
                limit,
                window: self.args.in_flight,
                shared: Rc::clone(&self.shared),
            };
            self.tasks.push(tokio::task::spawn_local(conn.run(ws)));
        }
        if let Some(duration) = self.args.duration {
            if !warmup.is_zero() {
                tokio::time::sleep(warmup).await;
                self.shared.hist.borrow_mut().reset();
                self.shared.echoes.set(0);
                self.shared.measuring.set(true);
                ctx.meter.borrow_mut().begin();
                self.partial.first_ns = unix_nanos();
            }
            tokio::time::sleep(duration).await;
            // One thread: turning measurement off here is exact.
            self.shared.measuring.set(false);
            self.shared.stopping.set(true);
            ctx.meter.borrow_mut().end();
        } else {
            for task in self.tasks.drain(..) {
                let _ = task.await;
            }
            ctx.meter.borrow_mut().end();
        }
        self.partial.last_ns = unix_nanos();
        Ok(())
    }

    async fn finish(mut self, ctx: &Ctx) -> Result<Partial, Error> {
        self.shared.stopping.set(true);
        let waiting = async {
            for task in &mut self.tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(STOP_TIMEOUT, waiting).await.is_err() {
            for task in &self.tasks {
                task.abort();
            }
        }
        let meter = ctx.meter.borrow();
        let mut partial = self.partial;
        partial.count = self.shared.echoes.get();
        partial.bytes = partial.count * self.args.size as u64;
        partial.latency = encode_histogram(&self.shared.hist.borrow());
        for (kind, n) in self.shared.errors.borrow().iter() {
            *partial.errors.entry(kind.clone()).or_default() += n;
        }
        partial.window_s = meter.window().as_secs_f64();
        partial.cpu_s = meter.cpu();
        Ok(partial)
    }
}

/// One connection's loop.
struct Conn {
    protocol: Protocol,
    frame: Bytes,
    limit: u64,
    window: u64,
    shared: Rc<Shared>,
}

impl Conn {
    async fn run(self, mut ws: Ws) {
        let shared = Rc::clone(&self.shared);
        match self.exchange(&mut ws).await {
            Ok(()) => {
                if let Err(e) = ws.close(CLOSE_TIMEOUT).await {
                    // Only a failure inside the measured period is the server's doing.
                    if !shared.stopping.get() {
                        shared.error(e.kind());
                    }
                }
            }
            Err(e) => shared.error(e.kind()),
        }
    }

    async fn exchange(&self, ws: &mut Ws) -> Result<(), ConnError> {
        let shared = &*self.shared;
        let mut times = SendTimes::with_capacity(self.window.min(1 << 16) as usize);
        let (mut sent, mut answered) = (0u64, 0u64);
        self.send(ws, &mut times, &mut sent, answered)?;
        while answered < self.limit {
            ws.fill().await?;
            let now = Instant::now();
            let mut echoes = 0;
            let drained = ws.drain(|data, out| {
                match classify(self.protocol, out, data) {
                    Kind::Payload | Kind::Ack => {
                        let sent_at =
                            times.pop_front().ok_or(ConnError::Protocol("unasked echo"))?;
                        answered += 1;
                        if shared.measuring.get() {
                            echoes += 1;
                            let ns = (now - sent_at).as_nanos() as u64;
                            shared.hist.borrow_mut().saturating_record(ns);
                        }
                    }
                    Kind::Error(code) => {
                        // An error reply still answers its command: the slot is free.
                        times.pop_front();
                        answered += 1;
                        shared.error(format!("reply_{code}"));
                    }
                    Kind::Other => {}
                }
                Ok(Step::Continue)
            })?;
            if let Drained::Closed(code) = drained {
                return Err(ConnError::Closed(code));
            }
            if echoes > 0 {
                shared.echoes.set(shared.echoes.get() + echoes);
                shared.progress.set(shared.progress.get() + echoes);
            }
            if shared.stopping.get() {
                return Ok(());
            }
            self.send(ws, &mut times, &mut sent, answered)?;
        }
        Ok(())
    }

    /// Sends messages until `window` are in flight or `limit` are sent.
    fn send(
        &self,
        ws: &mut Ws,
        times: &mut SendTimes,
        sent: &mut u64,
        answered: u64,
    ) -> Result<(), ConnError> {
        let count = self.window.saturating_sub(*sent - answered).min(self.limit - *sent);
        if count == 0 {
            return Ok(());
        }
        let now = Instant::now();
        times.extend(std::iter::repeat_n(now, count as usize));
        *sent += count;
        ws.send_frames(&self.frame, count as usize)
    }
}

impl Shared {
    fn error(&self, kind: String) {
        *self.errors.borrow_mut().entry(kind).or_default() += 1;
    }
}

/// How long a connection gets for its close handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the end of a run waits for connections to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
