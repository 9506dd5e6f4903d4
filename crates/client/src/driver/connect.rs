//! The connection step: a token if one is needed, TCP, TLS and the WebSocket upgrade, then,
//! once the server answers `connect`, the subscriptions and queued commands it restores.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::ConnectResult;
use tokio::time::{Instant, timeout};

use super::commands::Queued;
use super::live::{DEFAULT_PING_INTERVAL, Live};
use super::token::{is_ticket, is_usable_token};
use super::{Driver, Wait};
use crate::client::ConnectionState;
use crate::error::DisconnectReason;
use crate::transport::{self, Opened};

impl Driver {
    /// One connection attempt: a token if one is needed, then TCP, TLS and the handshake.
    pub(super) async fn attempt(&mut self) -> Wait<Result<Opened, DisconnectReason>> {
        let limit = self.settings.connect_timeout;
        if let Some(provider) = self.settings.provider.clone()
            && self.needs_token()
        {
            let fetched = match self.offline(timeout(limit, provider())).await {
                Wait::Exit => return Wait::Exit,
                Wait::Done(fetched) => fetched,
            };
            match fetched {
                Ok(Ok(token)) if is_usable_token(&token) => {
                    self.token = Some(token);
                    self.token_stale = false;
                }
                Ok(Ok(_)) => {
                    let why = "the token is empty or not printable ascii".to_owned();
                    return Wait::Done(Err(DisconnectReason::Token(why)));
                }
                Ok(Err(e)) => return Wait::Done(Err(DisconnectReason::Token(e.to_string()))),
                Err(_) => {
                    let why = format!("no token within {limit:?}");
                    return Wait::Done(Err(DisconnectReason::Token(why)));
                }
            }
        }
        if self.token.as_deref().is_some_and(is_ticket) {
            // The opening request redeems the ticket, whatever comes of it: a provider is
            // asked for a new one before the next attempt. A static ticket serves one
            // connection; the server refuses it the next time (401 `ticket_invalid`).
            self.token_stale = true;
        }
        let open = transport::open(Arc::clone(&self.settings), self.token.clone());
        match self.offline(timeout(limit, open)).await {
            Wait::Exit => Wait::Exit,
            Wait::Done(Ok(opened)) => Wait::Done(opened),
            Wait::Done(Err(_)) => Wait::Done(Err(DisconnectReason::Io {
                kind: io::ErrorKind::TimedOut,
                message: format!("no connection within {limit:?}"),
            })),
        }
    }

    pub(super) fn on_connected(&mut self, live: &mut Live, connected: &ConnectResult) {
        live.connected_at = Some(Instant::now());
        live.app_pings = connected.ping_interval == 0;
        live.interval = if live.app_pings {
            DEFAULT_PING_INTERVAL
        } else {
            Duration::from_secs(u64::from(connected.ping_interval))
        };
        live.max_message_size = connected.limits.max_message_size;
        live.link.set_max_message_size(live.max_message_size);
        live.refresh_at = self.refresh_deadline();
        self.connections += 1;
        tracing::debug!(client = %connected.client, "connected");
        self.set_state(ConnectionState::Connected, None, None);
        // Subscriptions first, so that a queued publish to a subscribed channel comes back
        // as a publication on the restored subscription.
        let channels: Vec<Arc<str>> = self.subs.keys().cloned().collect();
        for channel in &channels {
            self.send_subscribe(live, channel);
        }
        while let Some(Queued { kind, done }) = self.outbox.pop_front() {
            self.send_request(live, kind, done);
        }
    }
}
