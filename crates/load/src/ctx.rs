//! What every scenario needs: the target, this worker's share, opening connections.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use switchboard_client::ServerUrl;

use crate::args::{BenchArgs, Protocol, PublishVia, Scenario, Transport, WorkerId};
use crate::http::Conn;
use crate::stats::{Meter, Partial};
use crate::ws::{ConnError, Target, Ws};
use crate::{Error, protocol};

/// One worker's view of the run.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) target: Rc<Target>,
    /// The TLS client configuration, when the target or the HTTP API is `wss://` or
    /// `https://`.
    pub(crate) tls: Option<Arc<ClientConfig>>,
    pub(crate) protocol: Protocol,
    /// How subscribers and held connections reach the server.
    pub(crate) transport: Transport,
    pub(crate) worker: WorkerId,
    pub(crate) local_addrs: Vec<IpAddr>,
    pub(crate) concurrency: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) prefix: String,
    /// What the progress bar shows: events counted so far by this worker.
    pub(crate) progress: Rc<Cell<u64>>,
    /// The measured period of this worker.
    pub(crate) meter: RefCell<Meter>,
}

impl Ctx {
    /// Resolves the target of `args`, and reads the certificates to trust if it needs TLS.
    pub(crate) async fn new(args: &BenchArgs, protocol: Protocol) -> Result<Self, Error> {
        let common = args.scenario.common();
        let url = parse_url(&common.url)?;
        let tls = if uses_tls(args) {
            let config = crate::tls::client_config(common.ca.as_deref(), common.insecure);
            Some(config.map_err(Error::Usage)?)
        } else {
            None
        };
        let mut target = Target::resolve(url, tls.as_ref()).await.map_err(Error::Usage)?;
        if let Some(token) = &common.token {
            target.headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
        }
        target.compression = common.compression;
        let worker = common.worker.unwrap_or(crate::WorkerId { index: 0, count: common.processes });
        let is_parent = worker.index == 0;
        Ok(Self {
            target: Rc::new(target),
            tls,
            protocol,
            transport: common.transport,
            worker,
            local_addrs: common.local_addrs.clone().map(|a| a.0).unwrap_or_default(),
            concurrency: common.concurrency.div_ceil(worker.count as usize).max(1),
            connect_timeout: common.connect_timeout,
            prefix: common.channel_prefix.clone(),
            progress: Rc::new(Cell::new(0)),
            meter: RefCell::new(Meter::new(common.pid.filter(|_| is_parent))),
        })
    }

    /// Whether this is the parent process (worker 0), which also publishes and samples the
    /// server.
    pub(crate) fn is_parent(&self) -> bool {
        self.worker.index == 0
    }

    /// This worker's share of `total` numbered items: those whose number modulo the worker
    /// count is this worker's index, so every process computes the same assignment.
    pub(crate) fn share(&self, total: u64) -> Vec<u64> {
        let (index, count) = (u64::from(self.worker.index), u64::from(self.worker.count));
        (index..total).step_by(count as usize).collect()
    }

    /// This worker's share of a rate.
    pub(crate) fn share_of_rate(&self, rate: u64) -> f64 {
        rate as f64 / f64::from(self.worker.count)
    }

    /// The source address for connection number `n`.
    pub(crate) fn local_addr(&self, n: u64) -> Option<IpAddr> {
        if self.local_addrs.is_empty() {
            return None;
        }
        Some(self.local_addrs[(n % self.local_addrs.len() as u64) as usize])
    }

    /// Channel number `c`.
    pub(crate) fn channel(&self, c: u64) -> String {
        format!("{}{c}", self.prefix)
    }

    /// Opens connection number `n` and brings it to ready (subscribed to `channel`), within
    /// the connect timeout.
    pub(crate) async fn open(&self, n: u64, channel: Option<&str>) -> Result<Ws, ConnError> {
        let opening = async {
            let mut ws = Ws::connect(&self.target, self.local_addr(n)).await?;
            protocol::establish(self.protocol, &mut ws, channel).await?;
            Ok(ws)
        };
        tokio::time::timeout(self.connect_timeout, opening).await.map_err(|_| ConnError::Timeout)?
    }

    /// Opens connection number `n` over `--transport` and brings it to ready (subscribed to
    /// `channel`), within the connect timeout.
    pub(crate) async fn open_conn(&self, n: u64, channel: Option<&str>) -> Result<Conn, ConnError> {
        if self.transport == Transport::Ws {
            return self.open(n, channel).await.map(Conn::Ws);
        }
        let target = Rc::clone(&self.target);
        let opening = Conn::open_http(self.transport, target, self.local_addr(n), channel);
        tokio::time::timeout(self.connect_timeout, opening).await.map_err(|_| ConnError::Timeout)?
    }

    /// Opens the connections numbered `numbers` with `open`, at most `concurrency` opening
    /// at once. Returns the open ones with their numbers, in completion order, and counts
    /// failures into `partial`.
    pub(crate) async fn open_many<T, F, Fut>(
        &self,
        numbers: &[u64],
        open: F,
        partial: &mut Partial,
    ) -> (Vec<(u64, T)>, Option<ConnError>)
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = Result<T, ConnError>>,
    {
        let next = Cell::new(0usize);
        let opened = RefCell::new(Vec::with_capacity(numbers.len()));
        let failed = RefCell::new((BTreeMap::<String, u64>::new(), None::<ConnError>));
        let opener = || async {
            while let Some(&n) = numbers.get(next.get()) {
                next.set(next.get() + 1);
                match open(n).await {
                    Ok(conn) => {
                        opened.borrow_mut().push((n, conn));
                        self.progress.set(self.progress.get() + 1);
                    }
                    Err(e) => {
                        let mut failed = failed.borrow_mut();
                        *failed.0.entry(e.kind()).or_default() += 1;
                        failed.1.get_or_insert(e);
                    }
                }
            }
        };
        let openers: Vec<_> = (0..self.concurrency.min(numbers.len())).map(|_| opener()).collect();
        futures_util::future::join_all(openers).await;
        let (kinds, first) = failed.into_inner();
        for (kind, n) in kinds {
            *partial.errors.entry(format!("setup_{kind}")).or_default() += n;
            partial.failures += n;
        }
        (opened.into_inner(), first)
    }
}

/// `--url`, parsed.
pub(crate) fn parse_url(url: &str) -> Result<ServerUrl, Error> {
    ServerUrl::parse(url).map_err(|e| Error::Usage(format!("{url}: {e}")))
}

/// Whether the run opens TLS: to a `wss://` URL, or to an `https://` HTTP API.
pub(crate) fn uses_tls(args: &BenchArgs) -> bool {
    let common = args.scenario.common();
    let is_tls = |url: &str| ServerUrl::parse_accepting_http(url).is_ok_and(|u| u.is_tls());
    is_tls(&common.url)
        || matches!(&args.scenario, Scenario::Fanout(f)
            if f.publish_via == PublishVia::Http && f.api_url.as_deref().is_some_and(is_tls))
}

/// Fails the run when more than a few of `total` connections failed to open.
pub(crate) fn check_setup(total: u64, failed: u64, first: Option<ConnError>) -> Result<(), Error> {
    // A few failures (a port collision, one slow accept) do not invalidate a run; more do.
    let allowed = 3 + total / 1000;
    if failed > allowed || (failed > 0 && failed == total) {
        let first = first.map_or_else(String::new, |e| format!(", first: {e}"));
        return Err(Error::Setup(format!("{failed} of {total} connections failed to open{first}")));
    }
    Ok(())
}
