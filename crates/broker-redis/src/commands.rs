//! The command connection: one multiplexed connection shared by every operation, watched
//! and replaced by a supervisor task.
//!
//! While it is down, operations fail at once with [`BrokerError::Unavailable`] instead of
//! queueing: a caller that waited could not tell a slow Redis from a dead one. Every command
//! is bounded by the configured command timeout. An I/O error drops the connection at once;
//! a timeout asks the supervisor to `PING`, which drops the connection when that times out
//! too (a hung or unreachable server, not just one slow script).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, FromRedisValue, RedisError};
use switchboard_broker::BrokerError;
use tokio::sync::Notify;

use crate::scripts::Lua;

/// The shared command connection and what the supervisor needs to replace it.
#[derive(Debug)]
pub(crate) struct Commands {
    /// The live connection with its generation; `None` while down.
    slot: RwLock<Option<(u64, MultiplexedConnection)>>,
    generations: AtomicU64,
    /// Wakes the supervisor: the connection failed or looks hung.
    wake: Notify,
    timeout: Duration,
}

/// Why a command failed, before it becomes a [`BrokerError`].
#[derive(Debug)]
pub(crate) enum Failure {
    /// The script is not in Redis's script cache.
    NoScript,
    /// Anything else.
    Broker(BrokerError),
}

impl Commands {
    /// Commands over `connection`, each bounded by `timeout`.
    pub(crate) fn new(connection: MultiplexedConnection, timeout: Duration) -> Self {
        Self {
            slot: RwLock::new(Some((1, connection))),
            generations: AtomicU64::new(1),
            wake: Notify::new(),
            timeout,
        }
    }

    /// Whether a connection is up (as far as the last command or ping knows).
    pub(crate) fn is_up(&self) -> bool {
        self.slot.read().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// Runs `script` with `keys` and `args`: `EVALSHA`, then `EVAL` when Redis does not have
    /// it cached.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        script: &Lua,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, BrokerError> {
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg(&script.sha).arg(keys.len()).arg(keys).arg(args);
        match self.query(&evalsha).await {
            Ok(value) => Ok(value),
            Err(Failure::NoScript) => {
                let mut eval = redis::cmd("EVAL");
                eval.arg(script.source).arg(keys.len()).arg(keys).arg(args);
                self.query(&eval).await.map_err(|failure| match failure {
                    Failure::NoScript => BrokerError::Internal("script cache refused EVAL".into()),
                    Failure::Broker(e) => e,
                })
            }
            Err(Failure::Broker(e)) => Err(e),
        }
    }

    /// Runs one command on the live connection, within the timeout.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Failure> {
        let Some((generation, mut connection)) = self.connection() else {
            return Err(Failure::Broker(unavailable("not connected to redis")));
        };
        // The connection has its own response timeout; this one also bounds a request stuck
        // behind a full write buffer.
        let outcome = tokio::time::timeout(self.timeout, cmd.query_async(&mut connection)).await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                Err(Failure::NoScript)
            }
            Ok(Err(e)) => Err(Failure::Broker(self.classify(generation, &e))),
            Err(_elapsed) => {
                self.wake.notify_one();
                Err(Failure::Broker(timed_out(self.timeout)))
            }
        }
    }

    /// Keeps the connection up: pings it every `ping_every` (and when a command timed out),
    /// and reconnects with backoff after it dropped. Runs until aborted.
    pub(crate) async fn supervise(&self, client: &Client, config: &AsyncConnectionConfig) {
        let mut backoff = crate::Backoff::new();
        loop {
            match self.connection() {
                Some((generation, mut connection)) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(PING_EVERY) => {}
                    }
                    let ping = redis::cmd("PING");
                    let pong = tokio::time::timeout(
                        self.timeout,
                        ping.query_async::<String>(&mut connection),
                    )
                    .await;
                    if !matches!(pong, Ok(Ok(_))) {
                        tracing::warn!("redis command connection lost: ping failed");
                        self.drop_connection(generation);
                    }
                }
                None => match connect(client, config).await {
                    Ok(connection) => {
                        tracing::info!("redis command connection up");
                        self.install(connection);
                        backoff.reset();
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "redis command connection attempt failed");
                        tokio::time::sleep(backoff.next()).await;
                    }
                },
            }
        }
    }

    /// Asks the supervisor to check the connection now, e.g. because the PubSub connection
    /// to the same server just dropped.
    pub(crate) fn check_soon(&self) {
        self.wake.notify_one();
    }

    fn connection(&self) -> Option<(u64, MultiplexedConnection)> {
        self.slot.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn install(&self, connection: MultiplexedConnection) {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *self.slot.write().unwrap_or_else(PoisonError::into_inner) = Some((generation, connection));
    }

    /// Drops the connection of `generation`, unless it has been replaced already.
    fn drop_connection(&self, generation: u64) {
        let mut slot = self.slot.write().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|(current, _)| *current == generation) {
            *slot = None;
        }
        drop(slot);
        self.wake.notify_one();
    }

    /// The error for a failed command; drops the connection when it is broken.
    fn classify(&self, generation: u64, e: &RedisError) -> BrokerError {
        if e.is_timeout() {
            self.wake.notify_one();
            return timed_out(self.timeout);
        }
        if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
            tracing::warn!(error = %e, "redis command connection lost");
            self.drop_connection(generation);
            return unavailable(&format!("redis connection lost: {e}"));
        }
        match e.kind() {
            ErrorKind::Server(
                redis::ServerErrorKind::BusyLoading
                | redis::ServerErrorKind::TryAgain
                | redis::ServerErrorKind::ClusterDown
                | redis::ServerErrorKind::MasterDown
                | redis::ServerErrorKind::ReadOnly,
            ) => unavailable(&format!("redis cannot serve now: {e}")),
            _ => BrokerError::Internal(format!("redis: {e}")),
        }
    }
}

/// Opens a multiplexed connection within the config's connection timeout.
pub(crate) async fn connect(
    client: &Client,
    config: &AsyncConnectionConfig,
) -> Result<MultiplexedConnection, RedisError> {
    client.get_multiplexed_async_connection_with_config(config).await
}

pub(crate) fn unavailable(why: &str) -> BrokerError {
    BrokerError::Unavailable(why.to_owned())
}

fn timed_out(timeout: Duration) -> BrokerError {
    BrokerError::Unavailable(format!("redis did not answer within {timeout:?}"))
}

/// How often an idle command connection is checked.
const PING_EVERY: Duration = Duration::from_secs(2);
