//! Limits that protect the server from its clients: WebSocket connections in total and per
//! client address, upgrade requests per address, commands and bytes per `/ws` connection and
//! per address, HTTP API requests without the API key per address.
//!
//! Every refusal is logged at debug level (one line: the reason, the address or client id)
//! and counted here by [`Reason`], for the metrics to read. Open connections are counted by
//! a [`ConnectionGuard`] that the connection task holds: dropping it, however the task
//! ends, gives the slot back, so the count cannot leak.
//!
//! Rates are token buckets kept as the moment their debt is paid off (the virtual
//! scheduling form of the generic cell rate algorithm, ITU-T I.371): one `Instant` per
//! bucket, integer arithmetic, no timer. Time is `tokio::time::Instant`, so a paused test
//! clock drives it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use crate::config::{LimitOptions, Rate};

/// Why a limit refused something; each reason has its own counter.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub(crate) enum Reason {
    /// An upgrade request over its address's handshake rate (429).
    HandshakeRate,
    /// A connection over `max_connections` (503).
    MaxConnections,
    /// A connection over `max_connections_per_ip` (429).
    MaxConnectionsPerIp,
    /// A command over its connection's command rate (`rate_limited`).
    MessageRate,
    /// A command over its connection's byte rate (`rate_limited`).
    ByteRate,
    /// A connection closed with 1008 after `max_rejections` refusals in a streak.
    SustainedExcess,
    /// A command over its address's command rate (`rate_limited`).
    AddressMessageRate,
    /// A command over its address's byte rate (`rate_limited`).
    AddressByteRate,
    /// An `/api/` request without the API key over its address's rate (429).
    ApiRate,
    /// A ticket refused: its user already holds `max_pending_per_user` (429).
    TicketsPerUser,
    /// A ticket refused: the store's share for token holders, or the whole store, is full
    /// (503).
    TicketsPending,
    /// A connection closed with 4101 after too many failed commands in a row.
    TooManyErrors,
}

impl Reason {
    /// Every reason, in counter order.
    pub(crate) const ALL: [Reason; REASONS] = [
        Reason::HandshakeRate,
        Reason::MaxConnections,
        Reason::MaxConnectionsPerIp,
        Reason::MessageRate,
        Reason::ByteRate,
        Reason::SustainedExcess,
        Reason::AddressMessageRate,
        Reason::AddressByteRate,
        Reason::ApiRate,
        Reason::TicketsPerUser,
        Reason::TicketsPending,
        Reason::TooManyErrors,
    ];

    /// A stable label for logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::HandshakeRate => "handshake_rate",
            Reason::MaxConnections => "max_connections",
            Reason::MaxConnectionsPerIp => "max_connections_per_ip",
            Reason::MessageRate => "message_rate",
            Reason::ByteRate => "byte_rate",
            Reason::SustainedExcess => "sustained_excess",
            Reason::AddressMessageRate => "address_message_rate",
            Reason::AddressByteRate => "address_byte_rate",
            Reason::ApiRate => "api_rate",
            Reason::TicketsPerUser => "tickets_per_user",
            Reason::TicketsPending => "tickets_pending",
            Reason::TooManyErrors => "too_many_errors",
        }
    }
}

/// The server's limit state: refusal counters, open connections and the per-address tables.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    /// Indexed by `Reason as usize`.
    rejections: [AtomicU64; REASONS],
    connections: AtomicUsize,
    /// Open connections per address key; an entry goes with the last connection, so the
    /// table never holds more entries than there are connections.
    per_ip: Table<usize>,
    /// Handshake allowance per address key, bounded by `max_tracked_ips`.
    handshakes: Table<Gcra>,
    /// Command and byte allowances per address key, shared by the address's `/ws`
    /// connections, bounded by `max_tracked_ips`.
    commands: Table<AddressRate>,
    /// Allowance per address key for `/api/` requests without the API key, bounded by
    /// `max_tracked_ips`.
    api: Table<Gcra>,
}

impl Limiter {
    /// How many times `reason` refused something since the server started.
    pub(crate) fn rejections(&self, reason: Reason) -> u64 {
        self.rejections[reason as usize].load(Ordering::Relaxed)
    }

    /// Open WebSocket connections: guards alive.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Takes one upgrade request from the allowance of `ip`'s address key.
    ///
    /// # Errors
    ///
    /// [`Refusal::HandshakeRate`], counted and logged, when the allowance is spent.
    pub(crate) fn check_handshake(
        &self,
        ip: IpAddr,
        options: &LimitOptions,
        now: Instant,
    ) -> Result<(), Refusal> {
        let Some(rate) = options.handshake_rate else { return Ok(()) };
        let Some(key) = limited_key(ip, options) else { return Ok(()) };
        take_bounded(&self.handshakes, key, rate, options, now)
            .map_err(|wait| self.refuse(Some(key), Refusal::HandshakeRate { retry_after: wait }))
    }

    /// Takes one `/api/` request made without the API key from the allowance of `ip`'s
    /// address key.
    ///
    /// # Errors
    ///
    /// How long until one more request would be accepted, counted and logged as
    /// [`Reason::ApiRate`], when the allowance is spent.
    pub(crate) fn check_api(
        &self,
        ip: IpAddr,
        options: &LimitOptions,
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(rate) = options.api_rate else { return Ok(()) };
        let Some(key) = limited_key(ip, options) else { return Ok(()) };
        take_bounded(&self.api, key, rate, options, now).inspect_err(|_| {
            self.count(Reason::ApiRate);
            tracing::debug!(ip = %key, reason = Reason::ApiRate.as_str(), "api request refused");
        })
    }

    /// Takes one command of `len` bytes from the allowances of `ip`'s address key, both or
    /// neither; `Ok` without a key (unknown or exempt address) or without address rates.
    /// Counting and logging are the caller's, which knows how the refusal ends.
    fn take_address(
        &self,
        ip: Option<IpAddr>,
        len: u64,
        options: &LimitOptions,
        now: Instant,
    ) -> Result<(), Reason> {
        if options.address_message_rate.is_none() && options.address_byte_rate.is_none() {
            return Ok(());
        }
        let Some(key) = ip.and_then(|ip| limited_key(ip, options)) else { return Ok(()) };
        let mut shard = self.commands.shard(&key);
        let bucket = shard.get(&key).copied().unwrap_or_else(|| AddressRate::full(now));
        let messages = take(bucket.messages, options.address_message_rate, 1, now)
            .ok_or(Reason::AddressMessageRate)?;
        let bytes = take(bucket.bytes, options.address_byte_rate, len, now)
            .ok_or(Reason::AddressByteRate)?;
        insert_bounded(&mut shard, key, AddressRate { messages, bytes }, options, now);
        Ok(())
    }

    /// Takes a connection slot, in total and for `ip`'s address key (when known).
    ///
    /// # Errors
    ///
    /// [`Refusal::ServerFull`] or [`Refusal::AddressFull`], counted and logged.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        options: &LimitOptions,
    ) -> Result<ConnectionGuard, Refusal> {
        let key = ip.and_then(|ip| limited_key(ip, options));
        let max = options.max_connections;
        let taken = self.connections.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
            (max == 0 || open < max).then_some(open + 1)
        });
        if taken.is_err() {
            return Err(self.refuse(key, Refusal::ServerFull));
        }
        if let Some(key) = key {
            let max = options.max_connections_per_ip;
            let mut shard = self.per_ip.shard(&key);
            let open = shard.entry(key).or_insert(0);
            if max != 0 && *open >= max {
                // `*open >= max >= 1`: the entry existed before, nothing to remove.
                drop(shard);
                self.connections.fetch_sub(1, Ordering::Relaxed);
                return Err(self.refuse(Some(key), Refusal::AddressFull));
            }
            *open += 1;
        }
        Ok(ConnectionGuard { limiter: Arc::clone(self), key })
    }

    /// Counts one refusal by `reason`.
    pub(crate) fn count(&self, reason: Reason) {
        self.rejections[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts and logs a refusal before the upgrade.
    fn refuse(&self, key: Option<IpAddr>, refusal: Refusal) -> Refusal {
        let reason = refusal.reason();
        self.count(reason);
        tracing::debug!(
            ip = key.map(tracing::field::display),
            reason = reason.as_str(),
            "handshake refused: limit"
        );
        refusal
    }
}

/// A connection slot; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    limiter: Arc<Limiter>,
    key: Option<IpAddr>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut shard = self.limiter.per_ip.shard(&key);
            if let Some(open) = shard.get_mut(&key) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    shard.remove(&key);
                }
            }
        }
        self.limiter.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upgrade refused by a limit, with its HTTP status.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Refusal {
    /// The server holds `max_connections` connections: 503.
    ServerFull,
    /// The client's address holds `max_connections_per_ip` connections: 429.
    AddressFull,
    /// The address sent upgrade requests faster than its handshake rate: 429.
    HandshakeRate {
        /// How long until one more request would be accepted.
        retry_after: Duration,
    },
}

impl Refusal {
    /// The counter this refusal goes to.
    pub(crate) fn reason(self) -> Reason {
        match self {
            Refusal::ServerFull => Reason::MaxConnections,
            Refusal::AddressFull => Reason::MaxConnectionsPerIp,
            Refusal::HandshakeRate { .. } => Reason::HandshakeRate,
        }
    }

    /// 503 when the whole server is full (another node may have room), else 429
    /// (RFC 6585 §4): this client is sending too much.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refusal::ServerFull => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::AddressFull | Refusal::HandshakeRate { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `code` of the JSON body.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Refusal::ServerFull => "connection_limit",
            Refusal::AddressFull => "ip_connection_limit",
            Refusal::HandshakeRate { .. } => "handshake_rate_limited",
        }
    }

    /// The `message` of the JSON body.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::ServerFull => "the server has reached its connection limit",
            Refusal::AddressFull => "too many connections from this address",
            Refusal::HandshakeRate { .. } => "too many connection attempts from this address",
        }
    }

    /// Whole seconds for `Retry-After` (RFC 9110 §10.2.3), rounded up, at least 1.
    pub(crate) fn retry_after_secs(self) -> u64 {
        let wait = match self {
            Refusal::ServerFull | Refusal::AddressFull => FULL_RETRY_AFTER,
            Refusal::HandshakeRate { retry_after } => retry_after,
        };
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }
}

/// One `/ws` connection's command and byte allowances and its current streak of refusals.
#[derive(Debug)]
pub(crate) struct ConnRate {
    messages: Gcra,
    bytes: Gcra,
    /// When the last refusal happened; the streak ends `STREAK_GAP` after it.
    last_refusal: Option<Instant>,
    /// Refusals in the current streak.
    streak: u32,
    /// Closed for sustained excess: nothing more is carried out or answered.
    closed: bool,
}

/// What to do with one command.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Verdict {
    /// Carry it out.
    Allow,
    /// Answer `rate_limited` and do nothing else.
    Refuse(Reason),
    /// Close the connection with 1008 (policy violation): the limit was exceeded for too long.
    Close,
    /// Ignore it: the connection is closing for sustained excess.
    Ignore,
}

impl ConnRate {
    /// Full allowances at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            messages: Gcra::full(now),
            bytes: Gcra::full(now),
            last_refusal: None,
            streak: 0,
            closed: false,
        }
    }

    /// Takes one command of `len` bytes from client `client`'s allowances and from those
    /// of its address `ip` (shared by every connection from that address key), all or
    /// none. A refusal is counted in `limiter` and logged.
    pub(crate) fn check(
        &mut self,
        client: &str,
        ip: Option<IpAddr>,
        len: usize,
        options: &LimitOptions,
        limiter: &Limiter,
        now: Instant,
    ) -> Verdict {
        if self.closed {
            return Verdict::Ignore;
        }
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        let messages = take(self.messages, options.message_rate, 1, now);
        let bytes = take(self.bytes, options.byte_rate, len, now);
        let reason = match (messages, bytes) {
            (Some(messages), Some(bytes)) => match limiter.take_address(ip, len, options, now) {
                Ok(()) => {
                    self.messages = messages;
                    self.bytes = bytes;
                    return Verdict::Allow;
                }
                Err(reason) => reason,
            },
            (None, _) => Reason::MessageRate,
            (Some(_), None) => Reason::ByteRate,
        };
        let in_streak =
            self.last_refusal.is_some_and(|at| now.saturating_duration_since(at) < STREAK_GAP);
        self.streak = if in_streak { self.streak.saturating_add(1) } else { 1 };
        self.last_refusal = Some(now);
        if self.streak > options.max_rejections {
            self.closed = true;
            let reason = Reason::SustainedExcess;
            limiter.count(reason);
            tracing::debug!(client, reason = reason.as_str(), "closing: over the rate limit");
            return Verdict::Close;
        }
        limiter.count(reason);
        tracing::debug!(client, reason = reason.as_str(), "command refused: rate limit");
        Verdict::Refuse(reason)
    }
}

/// The bucket after taking `cost` under `rate` (always, without a rate), or `None`.
fn take(bucket: Gcra, rate: Option<Rate>, cost: u64, now: Instant) -> Option<Gcra> {
    match rate {
        Some(rate) => bucket.take(rate, cost, now).ok(),
        None => Some(bucket),
    }
}

/// A token bucket kept as the moment its debt is paid off: at or before `now` the bucket
/// is full; each unit taken pushes the moment one refill interval later; a cost is refused
/// when it would push it further past `now` than refilling a whole burst takes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gcra {
    paid_at: Instant,
}

impl Gcra {
    /// A full bucket.
    fn full(now: Instant) -> Self {
        Self { paid_at: now }
    }

    /// The bucket after taking `cost` (at most a whole burst), or how long until it could.
    fn take(self, rate: Rate, cost: u64, now: Instant) -> Result<Self, Duration> {
        let burst = rate.burst.max(1);
        let paid_at = self.paid_at.max(now) + refill_time(rate, cost.min(burst));
        let ceiling = now + refill_time(rate, burst);
        if paid_at <= ceiling { Ok(Self { paid_at }) } else { Err(paid_at - ceiling) }
    }

    /// Whether the bucket has refilled: it is then the same as no bucket.
    fn is_full(self, now: Instant) -> bool {
        self.paid_at <= now
    }
}

/// One address key's command and byte allowances.
#[derive(Clone, Copy, Debug)]
struct AddressRate {
    messages: Gcra,
    bytes: Gcra,
}

impl AddressRate {
    fn full(now: Instant) -> Self {
        Self { messages: Gcra::full(now), bytes: Gcra::full(now) }
    }
}

/// What a per-address table holds: allowances that may be forgotten once refilled.
trait Refilling: Copy {
    /// Whether forgetting the entry at `now` loses nothing.
    fn is_full(self, now: Instant) -> bool;
}

impl Refilling for Gcra {
    fn is_full(self, now: Instant) -> bool {
        Gcra::is_full(self, now)
    }
}

impl Refilling for AddressRate {
    fn is_full(self, now: Instant) -> bool {
        self.messages.is_full(now) && self.bytes.is_full(now)
    }
}

/// Takes one unit under `rate` from `key`'s bucket in `table`, or how long until it could.
fn take_bounded(
    table: &Table<Gcra>,
    key: IpAddr,
    rate: Rate,
    options: &LimitOptions,
    now: Instant,
) -> Result<(), Duration> {
    let mut shard = table.shard(&key);
    let bucket = shard.get(&key).copied().unwrap_or_else(|| Gcra::full(now));
    let bucket = bucket.take(rate, 1, now)?;
    insert_bounded(&mut shard, key, bucket, options, now);
    Ok(())
}

/// Stores `value` under `key`, making room first when the shard is full: a table never
/// holds more than `max_tracked_ips` entries (one per shard at least).
fn insert_bounded<V: Refilling>(
    shard: &mut HashMap<IpAddr, V>,
    key: IpAddr,
    value: V,
    options: &LimitOptions,
    now: Instant,
) {
    let capacity = (options.max_tracked_ips / SHARDS).max(1);
    if shard.len() >= capacity && !shard.contains_key(&key) {
        prune(shard, capacity, now);
    }
    shard.insert(key, value);
}

/// How long `rate` takes to refill `units`.
fn refill_time(rate: Rate, units: u64) -> Duration {
    let nanos = u128::from(units) * 1_000_000_000 / u128::from(rate.per_second.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// What per-address limits count by: the IPv4 address (IPv4-mapped IPv6 included), or the
/// IPv6 /64. A host picks its own 64-bit interface identifier (RFC 4291 §2.5.1), so counting
/// single IPv6 addresses would let one host hold any number of them.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// The address key per-address limits count `ip` under, unless loopback is exempt.
fn limited_key(ip: IpAddr, options: &LimitOptions) -> Option<IpAddr> {
    let exempt = options.exempt_loopback && ip.to_canonical().is_loopback();
    (!exempt).then(|| address_key(ip))
}

/// Makes room in a full shard of a per-address table. Refilled buckets go first: forgetting them loses
/// nothing. Under a flood of distinct addresses none may have refilled yet; then arbitrary
/// entries go too, down to three quarters (at least one less than `capacity`), so that the
/// next prune is far off and the work stays constant per insert on average. Those
/// addresses start over with a full burst.
fn prune<V: Refilling>(shard: &mut HashMap<IpAddr, V>, capacity: usize, now: Instant) {
    shard.retain(|_, bucket| !bucket.is_full(now));
    let target = capacity.saturating_sub((capacity / 4).max(1));
    let mut excess = shard.len().saturating_sub(target);
    if excess > 0 {
        shard.retain(|_, _| {
            let keep = excess == 0;
            excess = excess.saturating_sub(1);
            keep
        });
    }
}

/// A map by address key in `SHARDS` mutexes, picked by a keyed hash: handshakes on
/// different worker threads rarely wait for one another, a prune holds one shard (a
/// sixteenth of the table) rather than all of it, and clients cannot aim their addresses
/// at one shard because they do not know the key.
struct Table<V> {
    hasher: RandomState,
    shards: [Mutex<HashMap<IpAddr, V>>; SHARDS],
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Self { hasher: RandomState::new(), shards: std::array::from_fn(|_| Mutex::default()) }
    }
}

impl<V> std::fmt::Debug for Table<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries: usize = (0..SHARDS).map(|i| self.lock(i).len()).sum();
        f.debug_struct("Table").field("entries", &entries).finish()
    }
}

impl<V> Table<V> {
    fn shard(&self, key: &IpAddr) -> MutexGuard<'_, HashMap<IpAddr, V>> {
        // The remainder is below SHARDS, so the cast cannot truncate.
        let index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        self.lock(index)
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, HashMap<IpAddr, V>> {
        // The maps hold plain counts and instants: a panic elsewhere cannot leave them
        // half-updated in a way that matters.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Shards of the per-address tables.
const SHARDS: usize = 16;

/// Counters, one per reason.
const REASONS: usize = 12;

/// `Retry-After` when the server or the address is full: nobody knows when a slot frees,
/// and a refused crowd should not come back in step (clients add their own jitter).
const FULL_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A refusal this long after the previous one starts a new streak.
const STREAK_GAP: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// Less than any refill in these tests.
    const RATE_GAP: Duration = Duration::from_millis(1);

    fn options() -> LimitOptions {
        LimitOptions::default()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_reason_has_its_own_counter() {
        assert_eq!(Reason::ALL.len(), REASONS);
        for (index, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, index, "{reason:?} is counted in slot {index}");
        }
        let limiter = Limiter::default();
        limiter.count(Reason::ByteRate);
        limiter.count(Reason::ByteRate);
        limiter.count(Reason::HandshakeRate);
        assert_eq!(limiter.rejections(Reason::ByteRate), 2);
        assert_eq!(limiter.rejections(Reason::HandshakeRate), 1);
        assert_eq!(limiter.rejections(Reason::MessageRate), 0);
    }

    #[test]
    fn a_bucket_allows_a_burst_then_refills_at_the_rate() {
        let rate = Rate::new(10, 3);
        let t0 = Instant::now();
        let mut bucket = Gcra::full(t0);
        for _ in 0..3 {
            bucket = bucket.take(rate, 1, t0).expect("within the burst");
        }
        assert_eq!(bucket.take(rate, 1, t0).unwrap_err(), Duration::from_millis(100));
        let later = t0 + Duration::from_millis(100);
        bucket = bucket.take(rate, 1, later).expect("one unit refilled");
        assert!(bucket.take(rate, 1, later).is_err());
        assert!(!bucket.is_full(later));
        assert!(bucket.is_full(t0 + Duration::from_millis(400)));
    }

    #[test]
    fn a_cost_over_the_burst_takes_the_whole_burst() {
        let rate = Rate::new(100, 50);
        let t0 = Instant::now();
        let bucket = Gcra::full(t0).take(rate, 1_000, t0).expect("a full bucket pays it");
        assert!(bucket.take(rate, 1, t0).is_err(), "and is empty after");
        assert!(bucket.take(rate, 1, t0 + Duration::from_millis(10)).is_ok());
    }

    #[test]
    fn zero_rates_and_bursts_count_as_one() {
        let rate = Rate::new(0, 0);
        let t0 = Instant::now();
        let bucket = Gcra::full(t0).take(rate, 1, t0).expect("a burst of one");
        assert_eq!(bucket.take(rate, 1, t0).unwrap_err(), Duration::from_secs(1));
    }

    #[test]
    fn commands_take_both_allowances_or_neither() {
        let mut options = options();
        options.message_rate = Some(Rate::new(1, 2));
        options.byte_rate = Some(Rate::new(1, 100));
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let mut rate = ConnRate::new(t0);
        assert_eq!(rate.check("c", None, 150, &options, &limiter, t0), Verdict::Allow);
        // Over the byte rate: the command allowance is left as it was.
        assert_eq!(
            rate.check("c", None, 10, &options, &limiter, t0),
            Verdict::Refuse(Reason::ByteRate)
        );
        options.byte_rate = None;
        assert_eq!(rate.check("c", None, 10, &options, &limiter, t0), Verdict::Allow);
        assert_eq!(
            rate.check("c", None, 10, &options, &limiter, t0),
            Verdict::Refuse(Reason::MessageRate)
        );
        assert_eq!(limiter.rejections(Reason::ByteRate), 1);
        assert_eq!(limiter.rejections(Reason::MessageRate), 1);
    }

    #[test]
    fn a_streak_of_refusals_past_the_maximum_closes_and_then_everything_is_ignored() {
        let mut options = options();
        options.message_rate = Some(Rate::new(1, 1));
        options.max_rejections = 3;
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let mut rate = ConnRate::new(t0);
        assert_eq!(rate.check("c", None, 1, &options, &limiter, t0), Verdict::Allow);
        for n in 1..=3 {
            let at = t0 + Duration::from_millis(n * 300);
            assert_eq!(
                rate.check("c", None, 1, &options, &limiter, at),
                Verdict::Refuse(Reason::MessageRate)
            );
        }
        // Accepted commands between refusals do not end the streak; a quiet second does.
        let at = t0 + Duration::from_millis(1_100);
        assert_eq!(rate.check("c", None, 1, &options, &limiter, at), Verdict::Allow);
        assert_eq!(rate.check("c", None, 1, &options, &limiter, at), Verdict::Close);
        assert_eq!(
            rate.check("c", None, 1, &options, &limiter, at + STREAK_GAP * 5),
            Verdict::Ignore
        );
        assert_eq!(limiter.rejections(Reason::MessageRate), 3);
        assert_eq!(limiter.rejections(Reason::SustainedExcess), 1);
    }

    #[test]
    fn a_quiet_second_ends_the_streak() {
        let mut options = options();
        options.message_rate = Some(Rate::new(1, 1));
        options.max_rejections = 2;
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let mut rate = ConnRate::new(t0);
        assert_eq!(rate.check("c", None, 1, &options, &limiter, t0), Verdict::Allow);
        for _ in 0..2 {
            assert_eq!(
                rate.check("c", None, 1, &options, &limiter, t0),
                Verdict::Refuse(Reason::MessageRate)
            );
        }
        let at = t0 + STREAK_GAP;
        assert_eq!(rate.check("c", None, 1, &options, &limiter, at), Verdict::Allow);
        for _ in 0..2 {
            assert_eq!(
                rate.check("c", None, 1, &options, &limiter, at),
                Verdict::Refuse(Reason::MessageRate)
            );
        }
        assert_eq!(rate.check("c", None, 1, &options, &limiter, at), Verdict::Close);
    }

    #[test]
    fn zero_rejections_closes_at_the_first_refusal() {
        let mut options = options();
        options.message_rate = Some(Rate::new(1, 1));
        options.max_rejections = 0;
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let mut rate = ConnRate::new(t0);
        assert_eq!(rate.check("c", None, 1, &options, &limiter, t0), Verdict::Allow);
        assert_eq!(rate.check("c", None, 1, &options, &limiter, t0), Verdict::Close);
    }

    #[test]
    fn connections_from_one_address_share_its_allowances() {
        let mut options = options();
        options.exempt_loopback = false;
        options.address_message_rate = None;
        options.address_byte_rate = Some(Rate::new(100, 1_000));
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let a = Some(ip("192.0.2.1"));
        let (mut first, mut second) = (ConnRate::new(t0), ConnRate::new(t0));
        assert_eq!(first.check("1", a, 600, &options, &limiter, t0), Verdict::Allow);
        // A new connection (or a reconnect) starts with a full allowance of its own, but
        // the address's is spent.
        assert_eq!(
            second.check("2", a, 600, &options, &limiter, t0),
            Verdict::Refuse(Reason::AddressByteRate)
        );
        assert_eq!(second.check("2", a, 400, &options, &limiter, t0), Verdict::Allow);
        // Another address, and the same IPv6 /64 under another interface id.
        let b = Some(ip("192.0.2.2"));
        assert_eq!(second.check("2", b, 600, &options, &limiter, t0), Verdict::Allow);
        let v6 = |text| Some(ip(text));
        let mut third = ConnRate::new(t0);
        assert_eq!(
            third.check("3", v6("2001:db8::1"), 1_000, &options, &limiter, t0),
            Verdict::Allow
        );
        assert_eq!(
            third.check("3", v6("2001:db8::2"), 1, &options, &limiter, t0 + RATE_GAP),
            Verdict::Refuse(Reason::AddressByteRate)
        );
        // Refilled at the address's rate: 100 bytes in a second.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(first.check("1", a, 100, &options, &limiter, later), Verdict::Allow);
        assert_eq!(
            first.check("1", a, 1, &options, &limiter, later),
            Verdict::Refuse(Reason::AddressByteRate)
        );
        // Without an address (or with none of the address rates) only the connection counts.
        assert_eq!(first.check("1", None, 1, &options, &limiter, later), Verdict::Allow);
        options.address_byte_rate = None;
        assert_eq!(first.check("1", a, 1, &options, &limiter, later), Verdict::Allow);
        assert_eq!(limiter.rejections(Reason::AddressByteRate), 3);
        assert_eq!(limiter.rejections(Reason::ByteRate), 0);
    }

    #[test]
    fn an_address_refusal_leaves_the_connection_allowance_untouched_and_vice_versa() {
        let mut options = options();
        options.exempt_loopback = false;
        options.message_rate = Some(Rate::new(1, 2));
        options.address_message_rate = Some(Rate::new(1, 3));
        options.address_byte_rate = None;
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let a = Some(ip("192.0.2.1"));
        let (mut first, mut second) = (ConnRate::new(t0), ConnRate::new(t0));
        assert_eq!(first.check("1", a, 1, &options, &limiter, t0), Verdict::Allow);
        assert_eq!(first.check("1", a, 1, &options, &limiter, t0), Verdict::Allow);
        // Over the connection's rate: the address's third command is left for another.
        assert_eq!(
            first.check("1", a, 1, &options, &limiter, t0),
            Verdict::Refuse(Reason::MessageRate)
        );
        assert_eq!(second.check("2", a, 1, &options, &limiter, t0), Verdict::Allow);
        // Over the address's rate: the connection's allowance stays full.
        assert_eq!(
            second.check("2", a, 1, &options, &limiter, t0),
            Verdict::Refuse(Reason::AddressMessageRate)
        );
        options.address_message_rate = None;
        assert_eq!(second.check("2", a, 1, &options, &limiter, t0), Verdict::Allow);
        assert_eq!(
            second.check("2", a, 1, &options, &limiter, t0),
            Verdict::Refuse(Reason::MessageRate)
        );
    }

    #[test]
    fn address_refusals_close_a_connection_after_a_streak_like_its_own() {
        let mut options = options();
        options.exempt_loopback = false;
        options.address_message_rate = Some(Rate::new(1, 1));
        options.max_rejections = 2;
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let a = Some(ip("192.0.2.1"));
        let mut rate = ConnRate::new(t0);
        assert_eq!(rate.check("c", a, 1, &options, &limiter, t0), Verdict::Allow);
        for _ in 0..2 {
            assert_eq!(
                rate.check("c", a, 1, &options, &limiter, t0),
                Verdict::Refuse(Reason::AddressMessageRate)
            );
        }
        assert_eq!(rate.check("c", a, 1, &options, &limiter, t0), Verdict::Close);
        assert_eq!(limiter.rejections(Reason::SustainedExcess), 1);
    }

    #[test]
    fn loopback_is_exempt_from_address_rates_when_configured() {
        let mut options = options();
        options.address_message_rate = Some(Rate::new(1, 1));
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let local = Some(ip("127.0.0.1"));
        let mut rate = ConnRate::new(t0);
        for _ in 0..10 {
            assert_eq!(rate.check("c", local, 1, &options, &limiter, t0), Verdict::Allow);
        }
        // Nothing was taken from the address while it was exempt.
        options.exempt_loopback = false;
        assert_eq!(rate.check("c", local, 1, &options, &limiter, t0), Verdict::Allow);
        assert_eq!(
            rate.check("c", local, 1, &options, &limiter, t0),
            Verdict::Refuse(Reason::AddressMessageRate)
        );
    }

    #[test]
    fn the_address_rate_table_stays_bounded_under_a_flood_of_addresses() {
        let mut options = options();
        options.max_tracked_ips = 256;
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let mut rate = ConnRate::new(t0);
        options.message_rate = None;
        options.byte_rate = None;
        for n in 0..5_000u32 {
            let addr = Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)));
            assert_eq!(rate.check("c", addr, 1, &options, &limiter, t0), Verdict::Allow);
            let entries: usize = (0..SHARDS).map(|i| limiter.commands.lock(i).len()).sum();
            assert!(entries <= 256, "{entries} entries after {n} addresses");
        }
    }

    #[test]
    fn api_requests_are_limited_per_address() {
        let mut options = options();
        options.exempt_loopback = false;
        options.api_rate = Some(Rate::new(2, 2));
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let a = ip("2001:db8::1");
        limiter.check_api(a, &options, t0).expect("first");
        limiter.check_api(ip("2001:db8::2"), &options, t0).expect("second, same /64");
        assert_eq!(limiter.check_api(a, &options, t0), Err(Duration::from_millis(500)));
        limiter.check_api(ip("192.0.2.1"), &options, t0).expect("another address");
        limiter.check_api(a, &options, t0 + Duration::from_millis(500)).expect("refilled");
        // Its own table: the handshake allowance is untouched.
        options.handshake_rate = Some(Rate::new(2, 2));
        limiter.check_handshake(a, &options, t0).expect("a handshake");
        options.exempt_loopback = true;
        for _ in 0..10 {
            limiter.check_api(ip("::1"), &options, t0).expect("loopback is exempt");
        }
        assert_eq!(limiter.rejections(Reason::ApiRate), 1);
    }

    #[test]
    fn connection_slots_are_counted_in_total_and_per_address_and_given_back() {
        let mut options = options();
        options.max_connections = 3;
        options.max_connections_per_ip = 2;
        let limiter = Arc::new(Limiter::default());
        let a = Some(ip("192.0.2.1"));
        let first = limiter.acquire(a, &options).expect("first");
        let second = limiter.acquire(a, &options).expect("second");
        assert_eq!(limiter.acquire(a, &options).unwrap_err(), Refusal::AddressFull);
        let other = limiter.acquire(Some(ip("192.0.2.2")), &options).expect("another address");
        assert_eq!(limiter.acquire(None, &options).unwrap_err(), Refusal::ServerFull);
        assert_eq!(limiter.connections(), 3);
        drop(first);
        let third = limiter.acquire(a, &options).expect("a slot was given back");
        drop((second, third, other));
        assert_eq!(limiter.connections(), 0);
        assert_eq!(format!("{:?}", limiter.per_ip), "Table { entries: 0 }");
        assert_eq!(limiter.rejections(Reason::MaxConnectionsPerIp), 1);
        assert_eq!(limiter.rejections(Reason::MaxConnections), 1);
    }

    #[test]
    fn zero_means_no_connection_limit() {
        let mut options = options();
        options.max_connections = 0;
        options.max_connections_per_ip = 0;
        let limiter = Arc::new(Limiter::default());
        let guards: Vec<_> = (0..100)
            .map(|_| limiter.acquire(Some(ip("192.0.2.1")), &options).expect("no limit"))
            .collect();
        assert_eq!(limiter.connections(), 100);
        drop(guards);
        assert_eq!(limiter.connections(), 0);
    }

    #[test]
    fn loopback_is_exempt_from_per_address_limits_when_configured() {
        let mut options = options();
        options.max_connections = 3;
        options.max_connections_per_ip = 1;
        options.handshake_rate = Some(Rate::new(1, 1));
        let limiter = Arc::new(Limiter::default());
        let t0 = Instant::now();
        let mut guards = Vec::new();
        for local in ["127.0.0.1", "::1", "::ffff:127.0.0.2"] {
            limiter.check_handshake(ip(local), &options, t0).expect("exempt");
            limiter.check_handshake(ip(local), &options, t0).expect("exempt");
            guards.push(limiter.acquire(Some(ip(local)), &options).expect("exempt"));
        }
        assert_eq!(limiter.acquire(Some(ip("::1")), &options).unwrap_err(), Refusal::ServerFull);
        drop(guards);
        options.exempt_loopback = false;
        limiter.check_handshake(ip("::1"), &options, t0).expect("first");
        assert!(limiter.check_handshake(ip("::1"), &options, t0).is_err());
        let _guard = limiter.acquire(Some(ip("127.0.0.1")), &options).expect("first");
        assert_eq!(
            limiter.acquire(Some(ip("127.0.0.1")), &options).unwrap_err(),
            Refusal::AddressFull
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_slash_64() {
        assert_eq!(address_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(address_key(ip("2001:db8:1:2:ffff::9")), ip("2001:db8:1:2::"));
        assert_ne!(address_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(address_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn handshakes_are_limited_per_address() {
        let mut options = options();
        options.handshake_rate = Some(Rate::new(2, 2));
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        limiter.check_handshake(a, &options, t0).expect("first");
        limiter.check_handshake(a, &options, t0).expect("second");
        let refusal = limiter.check_handshake(a, &options, t0).unwrap_err();
        assert_eq!(refusal, Refusal::HandshakeRate { retry_after: Duration::from_millis(500) });
        assert_eq!(refusal.retry_after_secs(), 1);
        limiter.check_handshake(ip("192.0.2.2"), &options, t0).expect("another address");
        limiter.check_handshake(a, &options, t0 + Duration::from_millis(500)).expect("refilled");
        assert_eq!(limiter.rejections(Reason::HandshakeRate), 1);
        options.handshake_rate = None;
        limiter.check_handshake(a, &options, t0).expect("no limit");
    }

    #[test]
    fn the_handshake_table_stays_bounded_under_a_flood_of_addresses() {
        for (tracked, bound) in [(256, 256), (0, SHARDS)] {
            let mut options = options();
            options.max_tracked_ips = tracked;
            let limiter = Limiter::default();
            let t0 = Instant::now();
            for n in 0..5_000u32 {
                let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
                limiter.check_handshake(addr, &options, t0).expect("a first handshake");
                let entries: usize = (0..SHARDS).map(|i| limiter.handshakes.lock(i).len()).sum();
                assert!(entries <= bound, "{entries} entries after {n} addresses");
            }
        }
        let mut options = options();
        options.max_tracked_ips = 256;
        let limiter = Limiter::default();
        let t0 = Instant::now();
        for n in 0..20_000u32 {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
            limiter.check_handshake(addr, &options, t0).expect("a first handshake");
        }
        // Once the buckets refill, a prune forgets them all.
        let later = t0 + Duration::from_secs(60);
        for n in 0..2_000u32 {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n));
            limiter.check_handshake(addr, &options, later).expect("a first handshake");
        }
        let stale = (0..SHARDS)
            .flat_map(|i| limiter.handshakes.lock(i).keys().copied().collect::<Vec<_>>())
            .filter(|key| matches!(key, IpAddr::V4(v4) if v4.octets()[0] == 10))
            .count();
        assert_eq!(stale, 0, "refilled buckets from the first flood are gone");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let wait = |ms| Refusal::HandshakeRate { retry_after: Duration::from_millis(ms) };
        assert_eq!(wait(1).retry_after_secs(), 1);
        assert_eq!(wait(1_000).retry_after_secs(), 1);
        assert_eq!(wait(1_001).retry_after_secs(), 2);
        assert_eq!(Refusal::ServerFull.retry_after_secs(), 5);
        assert_eq!(Refusal::ServerFull.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Refusal::AddressFull.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test]
    async fn refusals_over_real_sockets_are_counted_once_each() {
        use switchboard_codec::{Event, Message};
        use switchboard_test_support::client::WsClient;

        let mut config = crate::Config { listen: ([127, 0, 0, 1], 0).into(), ..Default::default() };
        let limits = &mut config.rate_limits;
        limits.exempt_loopback = false;
        limits.max_connections = 1;
        limits.handshake_rate = Some(Rate::new(1, 2));
        limits.message_rate = Some(Rate::new(1, 1));
        limits.max_rejections = 1;
        let server = crate::Server::bind(config).await.unwrap();
        let (addr, shared) = (server.local_addr(), Arc::clone(&server.shared));
        let shutdown = server.shutdown_handle();
        tokio::spawn(server.run());

        let mut ws = WsClient::connect(addr, "/ws").await.unwrap();
        assert!(WsClient::connect(addr, "/ws").await.is_err(), "the server is full");
        assert!(WsClient::connect(addr, "/ws").await.is_err(), "the handshake rate is spent");
        for id in 1..=3 {
            let ping = format!("{{\"id\": {id}, \"type\": \"ping\"}}");
            ws.send(Message::text(ping)).await.unwrap();
        }
        while let Some(event) = ws.recv_timeout(Duration::from_secs(5)).await.unwrap() {
            if matches!(event, Event::Close(_)) {
                break;
            }
        }
        let counts: Vec<u64> = Reason::ALL.map(|r| shared.limits.rejections(r)).to_vec();
        // Handshake rate, connections, per address, commands, bytes, sustained excess, then
        // the per-address command and byte rates, the API, tickets and errors.
        assert_eq!(counts, [1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
        shutdown.shutdown();
    }

    #[test]
    fn per_connection_state_stays_small() {
        assert!(std::mem::size_of::<ConnRate>() <= 64, "{}", std::mem::size_of::<ConnRate>());
    }
}
