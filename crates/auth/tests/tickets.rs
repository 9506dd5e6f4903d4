//! One-time tickets: single use, expiry, a bounded store, forgeries.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::json;
use switchboard_auth::{Claims, Error, Permissions, TicketConfig, TicketStore};

fn claims(user: &str) -> Claims {
    let mut claims = Claims::new(user, Duration::from_secs(3600), UNIX_EPOCH);
    claims.info = Some(json!({"name": user}));
    claims.channels = vec!["chat:*".into()];
    claims
}

fn store(ttl_secs: u64, max_pending: usize) -> TicketStore {
    let mut config = TicketConfig::default();
    config.ttl = Duration::from_secs(ttl_secs);
    config.max_pending = max_pending;
    TicketStore::new(config)
}

#[test]
fn defaults_are_thirty_seconds_and_ten_thousand() {
    let config = TicketConfig::default();
    assert_eq!(config.ttl, Duration::from_secs(30));
    assert_eq!(config.max_pending, 10_000);
}

#[test]
fn redeems_once_with_the_bound_claims() {
    let store = TicketStore::default();
    let t0 = Instant::now();
    let ticket = store.issue(claims("alice"), t0).unwrap();
    assert_eq!(store.len(), 1);
    let redeemed = store.redeem(ticket.as_str(), t0 + Duration::from_secs(1)).unwrap();
    assert_eq!(redeemed, claims("alice"));
    assert!(Permissions::from_claims(&redeemed).can_subscribe("chat:x"));
    assert!(store.is_empty());
    for later in [0, 1, 60] {
        let err = store.redeem(ticket.as_str(), t0 + Duration::from_secs(later)).unwrap_err();
        assert_eq!(err, Error::TicketInvalid);
        assert_eq!(err.http_status(), 401);
    }
}

#[test]
fn tickets_are_independent() {
    let store = TicketStore::default();
    let t0 = Instant::now();
    let alice = store.issue(claims("alice"), t0).unwrap();
    let bob = store.issue(claims("bob"), t0).unwrap();
    assert_eq!(store.redeem(bob.as_str(), t0).unwrap().sub, "bob");
    assert_eq!(store.redeem(alice.as_str(), t0).unwrap().sub, "alice");
}

#[test]
fn expired_tickets_fail() {
    let store = store(30, 10);
    let t0 = Instant::now();
    let ticket = store.issue(claims("alice"), t0).unwrap();
    assert_eq!(ticket.expires_at(), t0 + Duration::from_secs(30));
    assert_eq!(
        store.redeem(ticket.as_str(), t0 + Duration::from_secs(30)),
        Err(Error::TicketExpired)
    );
    // And it is gone.
    assert_eq!(store.redeem(ticket.as_str(), t0), Err(Error::TicketInvalid));

    let ticket = store.issue(claims("alice"), t0).unwrap();
    assert!(store.redeem(ticket.as_str(), t0 + Duration::from_millis(29_999)).is_ok());
}

#[test]
fn purged_tickets_are_unknown() {
    let store = store(30, 10);
    let t0 = Instant::now();
    let first = store.issue(claims("a"), t0).unwrap();
    let _second = store.issue(claims("b"), t0 + Duration::from_secs(10)).unwrap();
    assert_eq!(store.purge_expired(t0 + Duration::from_secs(35)), 1);
    assert_eq!(store.len(), 1);
    assert_eq!(
        store.redeem(first.as_str(), t0 + Duration::from_secs(35)),
        Err(Error::TicketInvalid)
    );
    assert_eq!(store.purge_expired(t0 + Duration::from_secs(40)), 1);
    assert!(store.is_empty());
}

#[test]
fn a_full_store_refuses_until_tickets_leave() {
    let store = store(30, 3);
    let t0 = Instant::now();
    let tickets: Vec<_> =
        (0..3).map(|i| store.issue(claims(&format!("u{i}")), t0).unwrap()).collect();
    let err = store.issue(claims("late"), t0).unwrap_err();
    // The oldest ticket expires in 30 s: a place comes free then at the latest.
    let full = Error::TicketStoreFull { max: 3, retry_after: Duration::from_secs(30) };
    assert_eq!(err, full);
    assert_eq!((err.http_status(), err.as_label()), (503, "ticket_store_full"));
    // Redeeming frees a place.
    store.redeem(tickets[0].as_str(), t0).unwrap();
    store.issue(claims("late"), t0).unwrap();
    assert_eq!(store.issue(claims("later"), t0).unwrap_err(), full);
    // So does expiry: issuing purges first.
    let t1 = t0 + Duration::from_secs(30);
    for i in 0..3 {
        store.issue(claims(&format!("v{i}")), t1).unwrap();
    }
    assert_eq!(store.len(), 3);
    assert_eq!(store.redeem(tickets[1].as_str(), t1), Err(Error::TicketInvalid));
}

#[test]
fn forged_tickets_fail() {
    let store = TicketStore::default();
    let t0 = Instant::now();
    let ticket = store.issue(claims("alice"), t0).unwrap();
    let real = ticket.as_str();
    let mut flipped = real.to_owned().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let forgeries = [
        String::new(),
        "A".repeat(43),
        flipped,
        format!("{real}A"),
        real[..42].to_owned(),
        format!("{real}="),
        real.replace('-', "+").replace('_', "/"),
        format!(" {}", &real[1..]),
        "ticket".to_owned(),
        "é".repeat(43),
    ];
    for forged in &forgeries {
        if forged == real {
            continue; // The `+`/`/` rewrite is a no-op for tickets without `-` and `_`.
        }
        assert_eq!(store.redeem(forged, t0), Err(Error::TicketInvalid), "{forged:?}");
    }
    // Failed attempts do not burn the real ticket.
    assert_eq!(store.redeem(real, t0).unwrap().sub, "alice");
}

#[test]
fn concurrent_redeems_succeed_exactly_once() {
    let store = Arc::new(TicketStore::default());
    let t0 = Instant::now();
    for _ in 0..20 {
        let ticket = store.issue(claims("alice"), t0).unwrap().into_string();
        let barrier = Arc::new(Barrier::new(8));
        let winners: usize = (0..8)
            .map(|_| {
                let (store, ticket, barrier) = (store.clone(), ticket.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    usize::from(store.redeem(&ticket, t0).is_ok())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(winners, 1);
    }
    assert!(store.is_empty());
}

#[test]
fn issues_from_many_threads() {
    let store = Arc::new(store(30, 1_000));
    let t0 = Instant::now();
    let tickets: Vec<String> = (0..4)
        .map(|_| {
            let store = store.clone();
            thread::spawn(move || {
                (0..200)
                    .map(|_| store.issue(claims("u"), t0).unwrap().into_string())
                    .collect::<Vec<_>>()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(tickets.len(), 800);
    let mut unique = tickets.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 800);
    for ticket in &tickets {
        store.redeem(ticket, t0).unwrap();
    }
}
