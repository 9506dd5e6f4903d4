//! One-time tickets: a short-lived random value standing in for a token in a URL.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::{Claims, Error};

/// Ticket lifetime and store size.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TicketConfig {
    /// How long a ticket can be redeemed after it was issued. Default 30 s: time for a
    /// browser to open the WebSocket, short enough that a ticket leaked into a log is
    /// usually dead before anyone reads it.
    pub ttl: Duration,
    /// Most unredeemed, unexpired tickets held at once; past this [`TicketStore::issue`]
    /// fails with [`Error::TicketStoreFull`]. Default 10,000, about 3 MB, so a client
    /// requesting tickets in a loop cannot exhaust memory.
    pub max_pending: usize,
    /// Most tickets one user (`sub`) may hold pending from [`TicketStore::issue_limited`];
    /// past this it fails with [`Error::TicketsPerUser`]. Default 10: a user opens a
    /// connection or two at a time, each redeeming its ticket within a second, so ten
    /// allows a page with several tabs opening at once, while a user hoarding tickets holds
    /// a thousandth of the store. 0 allows none.
    pub max_pending_per_user: usize,
    /// Tickets of [`TicketConfig::max_pending`] that only [`TicketStore::issue`] (trusted
    /// callers, such as a backend with the API key) may take: `issue_limited` fails with
    /// [`Error::TicketStoreFull`] once `max_pending - reserved` tickets are pending.
    /// Default 1,000: however many users hoard tickets, trusted callers keep a tenth of the
    /// store.
    pub reserved: usize,
}

impl Default for TicketConfig {
    fn default() -> Self {
        TicketConfig {
            ttl: Duration::from_secs(30),
            max_pending: 10_000,
            max_pending_per_user: 10,
            reserved: 1_000,
        }
    }
}

/// A ticket as handed to the client: 32 random bytes from the operating system, in
/// URL-safe base64 without padding (43 characters), usable as `?ticket=` as it is.
///
/// `Debug` shows only its first characters; there is deliberately no `Display`.
#[derive(Clone)]
pub struct Ticket {
    value: String,
    expires_at: Instant,
}

impl Ticket {
    /// The value to give to the client.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The value, by move.
    pub fn into_string(self) -> String {
        self.value
    }

    /// When the ticket stops being redeemable.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("value", &crate::redact_token(&self.value))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Pending tickets, each bound to the claims of the user it was issued to.
///
/// Single use: [`TicketStore::redeem`] returns the claims once and forgets the ticket.
/// The store keeps only SHA-256 hashes of tickets, and looks tickets up by hash, so neither
/// a memory dump nor the timing of a lookup reveals a usable ticket. Time is passed in,
/// so callers decide the clock and tests need no sleeping. Thread-safe: share it behind an
/// `Arc`; each call holds a `std::sync::Mutex` briefly and never across I/O.
///
/// ```
/// use std::time::{Duration, Instant, UNIX_EPOCH};
/// use switchboard_auth::{Claims, Error, TicketConfig, TicketStore};
///
/// let store = TicketStore::new(TicketConfig::default());
/// let claims = Claims::new("alice", Duration::from_secs(3600), UNIX_EPOCH);
/// let now = Instant::now();
/// let ticket = store.issue(claims, now)?;
/// assert_eq!(store.redeem(ticket.as_str(), now)?.sub, "alice");
/// assert_eq!(store.redeem(ticket.as_str(), now), Err(Error::TicketInvalid));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub struct TicketStore {
    config: TicketConfig,
    pending: Mutex<Pending>,
}

impl TicketStore {
    /// An empty store.
    pub fn new(config: TicketConfig) -> Self {
        TicketStore { config, pending: Mutex::new(Pending::default()) }
    }

    /// The configuration the store was made with.
    pub fn config(&self) -> &TicketConfig {
        &self.config
    }

    /// Issues a ticket for `claims`, redeemable once until `now` plus the time to live, to
    /// a trusted caller: only `max_pending` limits it.
    ///
    /// Bind the claims of the request that asked for the ticket (its verified token): the
    /// connection that redeems the ticket gets exactly those, `exp` included, so a ticket
    /// never outlives its token's rights.
    ///
    /// # Errors
    ///
    /// [`Error::TicketStoreFull`] when `max_pending` unexpired tickets wait (expired ones
    /// are purged first); [`Error::RandomUnavailable`] if the OS RNG fails.
    pub fn issue(&self, claims: Claims, now: Instant) -> Result<Ticket, Error> {
        self.issue_within(claims, now, false)
    }

    /// Issues a ticket like [`TicketStore::issue`], to an untrusted caller such as a user
    /// presenting their own token: at most `max_pending_per_user` pending for `claims.sub`,
    /// and none once `max_pending - reserved` tickets are pending, so one user cannot starve
    /// the others, nor all of them the trusted callers.
    ///
    /// # Errors
    ///
    /// [`Error::TicketsPerUser`] when the user holds `max_pending_per_user` pending tickets;
    /// [`Error::TicketStoreFull`] when the untrusted share is taken; [`Error::RandomUnavailable`]
    /// if the OS RNG fails.
    pub fn issue_limited(&self, claims: Claims, now: Instant) -> Result<Ticket, Error> {
        self.issue_within(claims, now, true)
    }

    fn issue_within(&self, claims: Claims, now: Instant, limited: bool) -> Result<Ticket, Error> {
        let mut bytes = [0u8; TICKET_BYTES];
        getrandom::fill(&mut bytes).map_err(|_| Error::RandomUnavailable)?;
        let expires_at = now + self.config.ttl;
        let mut pending = self.lock();
        pending.purge(now);
        let max = if limited {
            self.config.max_pending.saturating_sub(self.config.reserved)
        } else {
            self.config.max_pending
        };
        if pending.by_hash.len() >= max {
            return Err(Error::TicketStoreFull { max, retry_after: pending.next_expiry(now) });
        }
        if limited {
            let max = self.config.max_pending_per_user;
            let held = pending.users.get(claims.sub.as_str());
            if held.map_or(0, VecDeque::len) >= max {
                let oldest = held.and_then(|held| held.front().copied());
                let retry_after = oldest.map_or(self.config.ttl, |at| at.duration_since(now));
                return Err(Error::TicketsPerUser { max, retry_after });
            }
            pending.users.entry(claims.sub.clone()).or_default().push_back(expires_at);
        }
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        pending.by_hash.insert(hash, Entry { claims, expires_at, limited });
        pending.by_expiry.push_back((expires_at, hash));
        pending.compact(self.config.max_pending);
        Ok(Ticket { value: URL_SAFE_NO_PAD.encode(bytes), expires_at })
    }

    /// Redeems `ticket` at `now`: the claims it was issued for, once.
    ///
    /// # Errors
    ///
    /// [`Error::TicketInvalid`] for a value that was never issued, was already redeemed, or
    /// has expired and been purged; [`Error::TicketExpired`] for one that expired but was
    /// still held (it is removed). Both are the client's fault: answer 401.
    pub fn redeem(&self, ticket: &str, now: Instant) -> Result<Claims, Error> {
        let hash = hash_ticket(ticket).ok_or(Error::TicketInvalid)?;
        let mut pending = self.lock();
        let entry = pending.by_hash.remove(&hash);
        if let Some(entry) = &entry {
            pending.release(entry);
        }
        pending.purge(now);
        let entry = entry.ok_or(Error::TicketInvalid)?;
        if now >= entry.expires_at {
            return Err(Error::TicketExpired);
        }
        Ok(entry.claims)
    }

    /// Forgets tickets expired at `now` and returns how many. `issue` and `redeem` do this
    /// as they go; call it from a timer only to release memory sooner.
    pub fn purge_expired(&self, now: Instant) -> usize {
        self.lock().purge(now)
    }

    /// Tickets held: unredeemed ones, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.lock().by_hash.len()
    }

    /// Whether no ticket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // No operation panics while holding the lock in a way that breaks the two maps'
        // agreement (a stale queue entry is harmless), so a poisoned lock is still sound.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for TicketStore {
    fn default() -> Self {
        Self::new(TicketConfig::default())
    }
}

#[derive(Debug, Default)]
struct Pending {
    /// SHA-256 of the ticket's bytes → what it was issued for.
    by_hash: HashMap<[u8; 32], Entry>,
    /// Hashes in issue order, which is expiry order as the TTL is fixed. May hold hashes
    /// already redeemed; those are skipped when their time comes.
    by_expiry: VecDeque<(Instant, [u8; 32])>,
    /// Expiry of each pending ticket from `issue_limited`, by user, oldest first. A user
    /// leaves with their last ticket, so this holds no more entries than `by_hash`.
    users: HashMap<String, VecDeque<Instant>>,
}

impl Pending {
    /// Drops tickets expired at `now`; O(expired).
    fn purge(&mut self, now: Instant) -> usize {
        let mut purged = 0;
        while let Some(&(expires_at, hash)) = self.by_expiry.front() {
            if expires_at > now {
                break;
            }
            self.by_expiry.pop_front();
            if let Some(entry) = self.by_hash.remove(&hash) {
                self.release(&entry);
                purged += 1;
            }
        }
        purged
    }

    /// Gives back the user's share held by `entry`, which has left `by_hash`.
    fn release(&mut self, entry: &Entry) {
        if !entry.limited {
            return;
        }
        let user = entry.claims.sub.as_str();
        let Some(held) = self.users.get_mut(user) else { return };
        if let Some(at) = held.iter().position(|&at| at == entry.expires_at) {
            held.remove(at);
        }
        if held.is_empty() {
            self.users.remove(user);
        }
    }

    /// How long until the oldest pending ticket expires: the latest a slot comes free.
    fn next_expiry(&self, now: Instant) -> Duration {
        self.by_expiry
            .iter()
            .find(|(_, hash)| self.by_hash.contains_key(hash))
            .map_or(Duration::ZERO, |&(at, _)| at.duration_since(now))
    }

    /// Keeps the queue from growing with redeemed tickets when many are issued and
    /// redeemed within one TTL: amortised O(1) per issue.
    fn compact(&mut self, max_pending: usize) {
        if self.by_expiry.len() > 2 * max_pending.max(64) {
            let by_hash = &self.by_hash;
            self.by_expiry.retain(|(_, hash)| by_hash.contains_key(hash));
        }
    }
}

#[derive(Debug)]
struct Entry {
    claims: Claims,
    expires_at: Instant,
    /// Issued by `issue_limited`: counted in its user's share.
    limited: bool,
}

/// The SHA-256 of a well-formed ticket's bytes; `None` for anything that cannot be one.
fn hash_ticket(ticket: &str) -> Option<[u8; 32]> {
    if ticket.len() != TICKET_LEN {
        return None;
    }
    let mut bytes = [0u8; TICKET_BYTES];
    let n = URL_SAFE_NO_PAD.decode_slice(ticket, &mut bytes).ok()?;
    (n == TICKET_BYTES).then(|| Sha256::digest(bytes).into())
}

const TICKET_BYTES: usize = 32;
/// `ceil(32 * 4 / 3)` base64 characters, unpadded.
const TICKET_LEN: usize = 43;

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn claims(user: &str) -> Claims {
        Claims::new(user, Duration::from_secs(3600), UNIX_EPOCH)
    }

    #[test]
    fn tickets_are_43_url_safe_characters_and_distinct() {
        let store = TicketStore::default();
        let now = Instant::now();
        let a = store.issue(claims("u"), now).unwrap();
        let b = store.issue(claims("u"), now).unwrap();
        assert_eq!(a.as_str().len(), TICKET_LEN);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.expires_at(), now + Duration::from_secs(30));
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn store_keeps_hashes_not_tickets() {
        let store = TicketStore::default();
        let ticket = store.issue(claims("u"), Instant::now()).unwrap();
        let pending = store.lock();
        let mut raw = [0u8; 32];
        URL_SAFE_NO_PAD.decode_slice(ticket.as_str(), &mut raw).unwrap();
        assert!(!pending.by_hash.contains_key(&raw));
        assert_eq!(pending.by_hash.len(), 1);
    }

    #[test]
    fn queue_stays_bounded_when_tickets_are_redeemed_at_once() {
        let store = TicketStore::new(TicketConfig { max_pending: 4, ..TicketConfig::default() });
        let now = Instant::now();
        for _ in 0..1_000 {
            let ticket = store.issue(claims("u"), now).unwrap();
            store.redeem(ticket.as_str(), now).unwrap();
        }
        assert!(store.lock().by_expiry.len() <= 2 * 64 + 1);
        assert!(store.is_empty());
    }

    #[test]
    fn rejects_values_that_cannot_be_tickets() {
        assert_eq!(hash_ticket(""), None);
        assert_eq!(hash_ticket(&"A".repeat(42)), None);
        assert_eq!(hash_ticket(&"A".repeat(44)), None);
        assert_eq!(hash_ticket(&"+".repeat(43)), None);
        assert_eq!(hash_ticket(&"=".repeat(43)), None);
        // 43 characters carry 258 bits: the last two must be zero (canonical encoding).
        assert_eq!(hash_ticket(&format!("{}B", "A".repeat(42))), None);
        assert!(hash_ticket(&"A".repeat(43)).is_some());
    }

    #[test]
    fn one_user_holds_at_most_its_share_and_gets_it_back() {
        let config = TicketConfig { max_pending_per_user: 3, ..TicketConfig::default() };
        let store = TicketStore::new(config);
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let first = store.issue_limited(claims("mallory"), t0).unwrap();
        store.issue_limited(claims("mallory"), t0 + second).unwrap();
        store.issue_limited(claims("mallory"), t0 + second * 2).unwrap();
        let refused = store.issue_limited(claims("mallory"), t0 + second * 5);
        // The oldest of the three expires 30 s after t0, 25 s from now.
        let retry_after = Duration::from_secs(25);
        assert_eq!(refused.unwrap_err(), Error::TicketsPerUser { max: 3, retry_after });
        store.issue_limited(claims("alice"), t0).expect("another user has their own share");
        store.issue(claims("mallory"), t0).expect("a trusted caller is not limited per user");
        // A redeemed ticket gives its slot back at once, an expired one when it expires.
        store.redeem(first.as_str(), t0 + second * 5).unwrap();
        store.issue_limited(claims("mallory"), t0 + second * 5).expect("a slot came back");
        assert!(store.issue_limited(claims("mallory"), t0 + second * 5).is_err());
        store.issue_limited(claims("mallory"), t0 + second * 31).expect("the second expired");
        // Users leave the table with their last ticket.
        store.purge_expired(t0 + second * 100);
        assert!(store.lock().users.is_empty());
        assert!(store.is_empty());
    }

    #[test]
    fn untrusted_callers_cannot_take_the_reserve() {
        let config = TicketConfig {
            max_pending: 10,
            max_pending_per_user: 1,
            reserved: 4,
            ..TicketConfig::default()
        };
        let store = TicketStore::new(config);
        let t0 = Instant::now();
        for n in 0..6 {
            store.issue_limited(claims(&format!("user{n}")), t0).expect("within the share");
        }
        let later = t0 + Duration::from_secs(10);
        let refused = store.issue_limited(claims("user6"), later).unwrap_err();
        let retry_after = Duration::from_secs(20);
        assert_eq!(refused, Error::TicketStoreFull { max: 6, retry_after });
        for _ in 0..4 {
            store.issue(claims("backend-user"), later).expect("the reserve");
        }
        let refused = store.issue(claims("backend-user"), later).unwrap_err();
        assert_eq!(refused, Error::TicketStoreFull { max: 10, retry_after });
        // A share of 0 or a reserve past the maximum leave untrusted callers nothing.
        let config = TicketConfig { max_pending: 2, reserved: 5, ..TicketConfig::default() };
        let store = TicketStore::new(config);
        assert!(matches!(store.issue_limited(claims("u"), t0), Err(Error::TicketStoreFull { .. })));
        store.issue(claims("u"), t0).expect("trusted");
        let config = TicketConfig { max_pending_per_user: 0, ..TicketConfig::default() };
        let store = TicketStore::new(config);
        let refused = store.issue_limited(claims("u"), t0).unwrap_err();
        let retry_after = Duration::from_secs(30);
        assert_eq!(refused, Error::TicketsPerUser { max: 0, retry_after });
    }
}
