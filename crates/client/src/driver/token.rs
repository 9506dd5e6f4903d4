//! The token: when a new one is needed before connecting, and its refresh on a live
//! connection before it expires.

use std::time::{Duration, SystemTime};

use switchboard_proto::{CommandKind, RefreshRequest};
use tokio::time::Instant;

use super::Driver;
use super::live::{Awaiting, Live};
use crate::builder::BoxError;
use crate::jwt::Lifetime;

impl Driver {
    pub(super) fn needs_token(&self) -> bool {
        let Some(token) = &self.token else { return true };
        let now = SystemTime::now();
        self.token_stale || Lifetime::of(token, now).is_some_and(|life| life.refresh_at() <= now)
    }

    /// A new token arrived from the provider: hand it to the server with `refresh`.
    pub(super) fn on_token(&mut self, live: &mut Live, token: Result<String, BoxError>) {
        match token {
            Ok(token) if is_usable_token(&token) => {
                let request = CommandKind::Refresh(RefreshRequest { token: token.clone() });
                let what = Awaiting::Refresh(token);
                if live.send(request, self.settings.ack_timeout, what).is_err() {
                    live.refresh_at = self.refresh_retry();
                }
            }
            Ok(_) => {
                tracing::debug!("token provider returned an unusable token");
                live.refresh_at = self.refresh_retry();
            }
            Err(e) => {
                tracing::debug!(error = %e, "token provider failed");
                live.refresh_at = self.refresh_retry();
            }
        }
    }

    /// When to refresh the current token: before a JWT's `exp`, with a provider to ask.
    pub(super) fn refresh_deadline(&self) -> Option<Instant> {
        self.settings.provider.as_ref()?;
        let now = SystemTime::now();
        let life = Lifetime::of(self.token.as_deref()?, now)?;
        let wait = life.refresh_at().duration_since(now).unwrap_or(Duration::ZERO);
        Instant::now().checked_add(wait)
    }

    /// When to try a failed refresh again: shortly, while the token is still valid.
    pub(super) fn refresh_retry(&self) -> Option<Instant> {
        let now = SystemTime::now();
        let life = Lifetime::of(self.token.as_deref()?, now)?;
        let left = life.expires_at.duration_since(now).ok()?;
        Instant::now().checked_add(REFRESH_RETRY.min(left / 2))
    }
}

pub(super) fn is_usable_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `token` is a one-time ticket (`POST /api/ticket`, docs/api.md) rather than a JWT:
/// it has no dots, where a JWT has three dot-separated parts (RFC 7515 §7.1). The server
/// redeems a ticket once, at the opening request that carries it; sent again in `connect`
/// it would be refused as already used.
pub(super) fn is_ticket(token: &str) -> bool {
    !token.is_empty() && !token.contains('.')
}

/// How soon a failed token refresh is tried again (at most half the time left).
const REFRESH_RETRY: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_tokens_without_dots() {
        assert!(is_ticket("XqdMb9DI6s0ni2hPHkU6c0y5zBJYWuvHvWq_XsTeEOA"));
        assert!(!is_ticket("eyJhbGciOiJIUzI1NiJ9.e30.c2ln"));
        assert!(!is_ticket(""));
    }
}
