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
}

impl Default for TicketConfig {
    fn default() -> Self {
        TicketConfig { ttl: Duration::from_secs(30), max_pending: 10_000 }
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

    /// Issues a ticket for `claims`, redeemable once until `now` plus the time to live.
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
        let mut bytes = [0u8; TICKET_BYTES];
        getrandom::fill(&mut bytes).map_err(|_| Error::RandomUnavailable)?;
        let expires_at = now + self.config.ttl;
        let mut pending = self.lock();
        pending.purge(now);
        if pending.by_hash.len() >= self.config.max_pending {
            return Err(Error::TicketStoreFull { max: self.config.max_pending });
        }
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        pending.by_hash.insert(hash, Entry { claims, expires_at });
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
            if self.by_hash.remove(&hash).is_some() {
                purged += 1;
            }
        }
        purged
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
}
