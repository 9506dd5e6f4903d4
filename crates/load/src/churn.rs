//! `bench churn`: connect, (subscribe,) close cleanly, over and over.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::args::ChurnArgs;
use crate::ctx::Ctx;
use crate::stats::{Partial, encode_histogram, histogram, unix_nanos};
use crate::ws::{ConnError, Ws};
use crate::{Error, Job, protocol};

/// The churn scenario's state in one worker.
#[derive(Debug)]
pub(crate) struct Churn {
    args: ChurnArgs,
    partial: Partial,
}

impl Churn {
    pub(crate) fn new(args: &ChurnArgs) -> Self {
        Self { args: args.clone(), partial: Partial::default() }
    }
}

impl Job for Churn {
    async fn setup(&mut self, _ctx: &Ctx) -> Result<(), Error> {
        Ok(())
    }

    async fn phase(&mut self, ctx: &Ctx) -> Result<(), Error> {
        let hist = Rc::new(RefCell::new(histogram()));
        let cycles = Rc::new(Cell::new(0u64));
        let failures = Rc::new(RefCell::new(Partial::default()));
        let permits = Arc::new(Semaphore::new(ctx.concurrency));
        let rate = ctx.share_of_rate(self.args.rate);
        let ctx_target = Rc::new(CycleCtx {
            target: (*ctx.target).clone(),
            protocol: ctx.protocol,
            timeout: ctx.connect_timeout,
            hist: Rc::clone(&hist),
            cycles: Rc::clone(&cycles),
            failures: Rc::clone(&failures),
            progress: Rc::clone(&ctx.progress),
            refused: RefCell::new(None),
        });
        ctx.meter.borrow_mut().begin();
        self.partial.first_ns = unix_nanos();
        let start = Instant::now();
        let end = start + self.args.duration;
        // Cycle numbers interleave across workers like connection numbers do.
        let (mut launched, step) = (0u64, u64::from(ctx.worker.count));
        loop {
            let now = Instant::now();
            if now >= end || ctx_target.refused.borrow().is_some() {
                break;
            }
            if rate > 0.0 {
                let due = ((now - start).as_secs_f64() * rate) as u64 + 1;
                if launched >= due {
                    let next = start + Duration::from_secs_f64(launched as f64 / rate);
                    tokio::time::sleep_until(next.min(end).into()).await;
                    continue;
                }
            }
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = tokio::time::sleep_until(end.into()) => break,
            };
            let n = u64::from(ctx.worker.index) + launched * step;
            let channel = self.args.subscribe.then(|| ctx.channel(n % self.args.channels));
            let local = ctx.local_addr(n);
            let cycle_ctx = Rc::clone(&ctx_target);
            tokio::task::spawn_local(async move {
                cycle_ctx.cycle(local, channel.as_deref()).await;
                drop(permit);
            });
            launched += 1;
        }
        // The cycles under way finish (each is bounded by its timeouts).
        let _ = permits.acquire_many(ctx.concurrency as u32).await;
        self.partial.last_ns = unix_nanos();
        ctx.meter.borrow_mut().end();
        self.partial.count = cycles.get();
        self.partial.latency = encode_histogram(&hist.borrow());
        let failed = std::mem::take(&mut *failures.borrow_mut());
        self.partial.failures = failed.failures;
        self.partial.errors = failed.errors;
        // A refused channel is a wrong option or server setting, not load: the run stops at
        // the first and says which.
        if let Some(e) = ctx_target.refused.take() {
            let failed = self.partial.failures;
            return Err(Error::Setup(format!("{failed} cycles failed, first: {e}")));
        }
        Ok(())
    }

    async fn finish(self, ctx: &Ctx) -> Result<Partial, Error> {
        let meter = ctx.meter.borrow();
        let mut partial = self.partial;
        partial.window_s = meter.window().as_secs_f64();
        partial.cpu_s = meter.cpu();
        Ok(partial)
    }
}

/// What each cycle needs.
#[derive(Debug)]
struct CycleCtx {
    target: crate::ws::Target,
    protocol: crate::args::Protocol,
    timeout: Duration,
    hist: Rc<RefCell<Histogram<u64>>>,
    cycles: Rc<Cell<u64>>,
    failures: Rc<RefCell<Partial>>,
    progress: Rc<Cell<u64>>,
    /// The first refusal of a channel ([`ConnError::Refused`]), which ends the run.
    refused: RefCell<Option<ConnError>>,
}

impl CycleCtx {
    async fn cycle(&self, local: Option<std::net::IpAddr>, channel: Option<&str>) {
        match self.run(local, channel).await {
            Ok(()) => {
                self.cycles.set(self.cycles.get() + 1);
                self.progress.set(self.progress.get() + 1);
            }
            Err(e) => {
                let mut failures = self.failures.borrow_mut();
                failures.failures += 1;
                failures.error(e.kind());
                if matches!(e, ConnError::Refused(_)) {
                    self.refused.borrow_mut().get_or_insert(e);
                }
            }
        }
    }

    async fn run(
        &self,
        local: Option<std::net::IpAddr>,
        channel: Option<&str>,
    ) -> Result<(), ConnError> {
        let start = Instant::now();
        let mut ws = tokio::time::timeout(self.timeout, Ws::connect(&self.target, local))
            .await
            .map_err(|_| ConnError::Timeout)??;
        let handshake = start.elapsed().as_nanos() as u64;
        let ready = protocol::establish(self.protocol, &mut ws, channel);
        tokio::time::timeout(self.timeout, ready).await.map_err(|_| ConnError::Timeout)??;
        ws.close(self.timeout).await?;
        // Only complete cycles are timed, so failures do not skew the percentiles.
        self.hist.borrow_mut().saturating_record(handshake);
        Ok(())
    }
}
