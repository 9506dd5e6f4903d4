//! Reconnect delays: exponential backoff with full jitter.

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;

/// The reconnect schedule: attempt `n` waits a uniformly random time in
/// `[0, min(max, min_delay * 2^n)]` ("full jitter"), so a fleet cut at once spreads out
/// instead of reconnecting in step (protocol §8).
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, attempt: 0 }
    }

    /// The next backoff delay; each call doubles the bound until it reaches `max`.
    pub(crate) fn next(&mut self, rng: &mut StdRng) -> Duration {
        // 2^20 × any sane minimum is past any sane maximum; the cap keeps the shift defined.
        let factor = 1u32 << self.attempt.min(20);
        let bound = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        jitter(rng, bound)
    }

    /// A short random delay in `[0, min]`, for the `reconnect` advice: soon, but not in step
    /// with every other client the server just let go.
    pub(crate) fn soon(&self, rng: &mut StdRng) -> Duration {
        jitter(rng, self.min)
    }

    /// Starts the schedule over, after a connection that stayed up long enough.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A uniformly random duration in `[0, bound]`.
pub(crate) fn jitter(rng: &mut StdRng, bound: Duration) -> Duration {
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn delays_stay_under_the_doubling_bound() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        for attempt in 0..12u32 {
            let bound = Duration::from_millis(500 * (1 << attempt)).min(Duration::from_secs(30));
            let delay = backoff.next(&mut rng);
            assert!(delay <= bound, "attempt {attempt}: {delay:?} > {bound:?}");
        }
        backoff.reset();
        assert!(backoff.next(&mut rng) <= Duration::from_millis(500));
        assert!(backoff.soon(&mut rng) <= Duration::from_millis(500));
    }

    #[test]
    fn delays_are_spread_not_fixed() {
        let mut rng = StdRng::seed_from_u64(1);
        let bound = Duration::from_secs(1);
        let delays: Vec<_> = (0..100).map(|_| jitter(&mut rng, bound)).collect();
        let min = delays.iter().min().copied().unwrap_or_default();
        let max = delays.iter().max().copied().unwrap_or_default();
        assert!(max - min > Duration::from_millis(500), "{min:?}..{max:?}");
    }

    #[test]
    fn a_seed_replays_the_same_delays() {
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            (0..8).map(|_| backoff.next(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut rng = StdRng::seed_from_u64(0);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        backoff.attempt = u32::MAX;
        assert!(backoff.next(&mut rng) <= Duration::from_secs(30));
    }
}
