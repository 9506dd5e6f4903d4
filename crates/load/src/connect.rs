//! `bench connect`: open many connections, hold them, close them.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::args::{ConnectArgs, Protocol};
use crate::ctx::Ctx;
use crate::http::Conn;
use crate::protocol::classify;
use crate::stats::{Partial, unix_nanos};
use crate::ws::{ConnError, Drained, Step};
use crate::{Error, Job};

/// The connect scenario's state in one worker.
#[derive(Debug)]
pub(crate) struct Connect {
    args: ConnectArgs,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    partial: Partial,
}

impl Connect {
    pub(crate) fn new(args: &ConnectArgs) -> Self {
        Self {
            args: args.clone(),
            tasks: Vec::new(),
            stop: watch::channel(false).0,
            partial: Partial::default(),
        }
    }
}

impl Job for Connect {
    async fn setup(&mut self, _ctx: &Ctx) -> Result<(), Error> {
        Ok(())
    }

    async fn phase(&mut self, ctx: &Ctx) -> Result<(), Error> {
        let numbers = ctx.share(self.args.connections);
        let channels = self.args.channels;
        let subscribe = self.args.subscribe;
        let open_one = |n: u64| async move {
            let channel = subscribe.then(|| ctx.channel(n % channels));
            ctx.open_conn(n, channel.as_deref()).await
        };
        ctx.meter.borrow_mut().begin();
        self.partial.first_ns = unix_nanos();
        let (open, first) = ctx.open_many(&numbers, open_one, &mut self.partial).await;
        self.partial.last_ns = unix_nanos();
        ctx.meter.borrow_mut().end();
        // Failures are what connect measures, but a refused channel is a wrong option or
        // server setting, not load: the run stops and says which.
        if let Some(e @ ConnError::Refused(_)) = first {
            let failed = self.partial.failures;
            let total = numbers.len();
            return Err(Error::Setup(format!(
                "{failed} of {total} connections failed, first: {e}"
            )));
        }
        self.partial.count = open.len() as u64;
        for (_, ws) in open {
            self.tasks.push(tokio::task::spawn_local(hold(
                ws,
                ctx.protocol,
                self.stop.subscribe(),
            )));
        }
        Ok(())
    }

    async fn finish(mut self, ctx: &Ctx) -> Result<Partial, Error> {
        let _ = self.stop.send(true);
        let waiting = async {
            for task in &mut self.tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), waiting).await.is_err() {
            for task in &self.tasks {
                task.abort();
            }
        }
        let meter = ctx.meter.borrow();
        let mut partial = self.partial;
        partial.window_s = meter.window().as_secs_f64();
        partial.cpu_s = meter.cpu();
        Ok(partial)
    }
}

/// Keeps a connection open (answering pings) until told to stop, then closes it.
pub(crate) async fn hold(mut ws: Conn, protocol: Protocol, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            read = ws.fill() => {
                if read.is_err() {
                    return;
                }
                match ws.drain(|data, out| {
                    classify(protocol, out, data);
                    Ok(Step::Continue)
                }) {
                    Ok(Drained::Empty | Drained::Stopped) => {}
                    Ok(Drained::Closed(_)) => {
                        let _ = ws.try_flush();
                        return;
                    }
                    Err(_) => return,
                }
            }
            _ = stop.changed() => break,
        }
    }
    let _ = ws.close(Duration::from_secs(5)).await;
}
