//! The connection's clock: heartbeats, reply deadlines, subscription retries and the
//! token refresh, all woken by one timer.

use std::sync::Arc;

use switchboard_proto::{CommandKind, Empty};
use tokio::time::Instant;

use super::Driver;
use super::live::{Awaiting, Live};
use super::subscriptions::Phase;
use crate::error::{DisconnectReason, Error};

impl Driver {
    pub(super) fn on_timer(&mut self, live: &mut Live) {
        let now = Instant::now();
        if now >= live.last_recv + live.interval + self.settings.heartbeat_margin {
            live.ended = Some(DisconnectReason::HeartbeatTimeout);
            return;
        }
        if live.is_ready()
            && live.app_pings
            && !live.ping_outstanding
            && now >= live.last_recv + live.interval
        {
            let ping = CommandKind::Ping(Empty {});
            if live.send(ping, self.settings.ack_timeout, Awaiting::Ping).is_ok() {
                live.ping_outstanding = true;
            }
        }
        while let Some(entry) = live.pending.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let timed_out = Error::Timeout(self.settings.ack_timeout);
            match entry.remove().what {
                Awaiting::Request { done, .. } => {
                    let _ = done.send(Err(timed_out));
                }
                Awaiting::Unsubscribe(done) => {
                    if let Some(done) = done {
                        let _ = done.send(Err(timed_out));
                    }
                }
                // Replies come in order: without these, the connection is of no use.
                Awaiting::Connect => live.ended = Some(DisconnectReason::NoReply("connect")),
                Awaiting::Subscribe { .. } => {
                    live.ended = Some(DisconnectReason::NoReply("subscribe"));
                }
                Awaiting::Page { .. } => live.ended = Some(DisconnectReason::NoReply("history")),
                Awaiting::Refresh(_) => live.ended = Some(DisconnectReason::NoReply("refresh")),
                Awaiting::Ping => live.ended = Some(DisconnectReason::NoReply("ping")),
            }
            if live.ended.is_some() {
                return;
            }
        }
        if live.retries_scheduled && live.is_ready() {
            let due: Vec<Arc<str>> = self
                .subs
                .iter()
                .filter(|(_, sub)| {
                    sub.phase == Phase::Idle && sub.retry_at.is_some_and(|t| t <= now)
                })
                .map(|(channel, _)| Arc::clone(channel))
                .collect();
            for channel in &due {
                self.send_subscribe(live, channel);
            }
            live.retries_scheduled = self.subs.values().any(|sub| sub.retry_at.is_some());
        }
        if live.refresh_at.is_some_and(|at| at <= now) && live.refreshing.is_none() {
            live.refresh_at = None;
            if let Some(provider) = &self.settings.provider {
                live.refreshing = Some(provider());
            }
        }
    }

    /// The next moment [`on_timer`](Self::on_timer) has something to do.
    pub(super) fn deadline(&self, live: &Live) -> Instant {
        let silence = live.last_recv + live.interval;
        let mut at = silence + self.settings.heartbeat_margin;
        if live.is_ready() && live.app_pings && !live.ping_outstanding {
            at = at.min(silence);
        }
        if let Some((_, pending)) = live.pending.first_key_value() {
            at = at.min(pending.deadline);
        }
        if live.retries_scheduled {
            at = self.subs.values().filter_map(|sub| sub.retry_at).fold(at, Instant::min);
        }
        if let Some(refresh) = live.refresh_at {
            at = at.min(refresh);
        }
        at
    }
}
