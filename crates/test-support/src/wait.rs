//! Bounded waits for a condition, in place of sleeps that guess how long something takes.
//!
//! Each polls every [`POLL`] until the condition holds or the limit passes. The async ones
//! run on tokio's clock, so they also work under paused time.

use std::future::Future;
use std::time::Duration;

/// How often the waits look again.
pub const POLL: Duration = Duration::from_millis(10);

/// Waits until `condition` holds; `false` when `limit` passed first.
pub async fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `attempt` until it returns `Some`; that value, or `None` when `limit` passed first.
pub async fn poll_until<T, F>(limit: Duration, mut attempt: impl FnMut() -> F) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = attempt().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] for threads outside a runtime: blocks the calling thread.
pub fn wait_until_blocking(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}
