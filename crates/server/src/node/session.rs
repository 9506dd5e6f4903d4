//! One `/ws` connection's protocol state: who it is, what it subscribed to, and how each
//! command is carried out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Deserialize;
use switchboard_broker::{HistoryQuery, StreamOptions};
use switchboard_codec::{CloseCode, Message};
use switchboard_hub::{ClientId, HubError, Sink};
use switchboard_proto::{
    ChannelRequest, ClientInfo, ClientLimits, Command, CommandKind, CommandResult, ConnectRequest,
    ConnectResult, Empty, ErrorBody, ErrorCode, Format, HistoryRequest, Publication,
    PublishRequest, PublishResult, Push, RefreshRequest, RefreshResult, Reply, SubscribeRequest,
    SubscribeResult, codes,
};
use tokio::time::Instant;

use crate::Shared;
use crate::auth::Identity;
use crate::config::{Anonymous, LimitOptions, NamespaceOptions};
use crate::limits::{ConnRate, Reason, Verdict};
use crate::metrics::{self, Outcome};
use crate::node::{ConnSink, Kick, Node, broker_error};
use super::page;

/// What a command failed with.
type CommandError = ErrorBody;

/// The state of one hub connection.
pub(crate) struct Session {
    node: Arc<Node>,
    shared: Arc<Shared>,
    identity: Identity,
    /// First-message mode: nothing but `connect` with a token until this deadline.
    awaiting_connect: Option<Instant>,
    /// When the credentials run out (expiry plus leeway).
    token_deadline: Option<Instant>,
    /// Credentials were refused where they are required: close at once with this.
    refused: Option<Kick>,
    id: ClientId,
    info: ClientInfo,
    format: Format,
    sink: Arc<ConnSink>,
    /// Subscribed channels, with what leaving them must undo.
    subscriptions: HashMap<Arc<str>, Membership>,
    /// Commands carried out so far; `connect`, when sent, must be the first.
    commands: u64,
    ping_interval_secs: u32,
    /// Command and byte allowances.
    rate: ConnRate,
    /// The client's address, whose command and byte allowances all its connections share.
    ip: Option<IpAddr>,
    /// Commands in a row that could not be read (see [`MAX_CONSECUTIVE_ERRORS`]).
    errors: u32,
}

/// What a subscription registered besides the hub entry.
#[derive(Clone, Copy)]
struct Membership {
    presence: bool,
    announce: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("format", &self.format)
            .field("subscriptions", &self.subscriptions.len())
            .finish()
    }
}

impl Session {
    /// A session for a new connection from `ip` speaking `format`.
    pub(crate) fn new(
        node: Arc<Node>,
        shared: Arc<Shared>,
        identity: Identity,
        format: Format,
        sink: Arc<ConnSink>,
        ping_interval_secs: u32,
        ip: Option<IpAddr>,
    ) -> Self {
        let id: ClientId = Arc::from(format!("{:016x}", rand::random::<u64>()));
        let info = ClientInfo { id: id.to_string(), user: None, info: None };
        let auth = &shared.config.auth;
        let awaiting_connect = (auth.first_message && !identity.is_authenticated())
            .then(|| Instant::now() + auth.first_message_timeout);
        let mut session = Self {
            node,
            shared,
            identity: Identity::anonymous(),
            awaiting_connect,
            token_deadline: None,
            refused: None,
            id,
            info,
            format,
            sink,
            subscriptions: HashMap::new(),
            commands: 0,
            ping_interval_secs,
            rate: ConnRate::new(Instant::now()),
            ip,
            errors: 0,
        };
        session.set_identity(identity);
        session
    }

    /// Adopts new credentials: who the connection is, what it may do, when it runs out.
    fn set_identity(&mut self, identity: Identity) {
        self.info.user = identity.user().map(str::to_owned);
        self.info.info = identity.info().cloned();
        let leeway = self.shared.auth.leeway();
        // A deadline beyond what the clock can represent is no deadline.
        self.token_deadline = identity.expires_at().and_then(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
            Instant::now().checked_add(left.saturating_add(leeway))
        });
        self.node.set_user(&self.id, self.info.user.clone());
        self.identity = identity;
    }

    /// The next moment the connection must be closed unless something happens, and how:
    /// the first-message deadline (4102) or the token's expiry (4200).
    pub(crate) fn deadline(&self) -> Option<(Instant, Kick)> {
        if let Some(kick) = &self.refused {
            return Some((Instant::now(), kick.clone()));
        }
        if let Some(at) = self.awaiting_connect {
            let kick = Kick {
                code: codes::close::CONNECT_TIMEOUT,
                reason: "no connect with a token in time".to_owned(),
            };
            return Some((at, kick));
        }
        self.token_deadline.map(|at| {
            let kick =
                Kick { code: codes::close::TOKEN_EXPIRED, reason: "token expired".to_owned() };
            (at, kick)
        })
    }

    /// The connection's id.
    pub(crate) fn id(&self) -> &ClientId {
        &self.id
    }

    /// The authenticated user, if any.
    pub(crate) fn user(&self) -> Option<&str> {
        self.info.user.as_deref()
    }

    /// Handles one WebSocket message: decodes the command, carries it out, and queues the
    /// reply. Malformed and unknown commands get an error reply; the connection stays open
    /// until [`MAX_CONSECUTIVE_ERRORS`] of them come in a row. Commands over the
    /// connection's or its address's rate get a `rate_limited` reply and are not carried
    /// out. Returns how to close the connection when either went on too long; whatever
    /// arrives after that is ignored.
    pub(crate) async fn handle(&mut self, data: &[u8], binary: bool) -> Option<Kick> {
        if self.errors >= MAX_CONSECUTIVE_ERRORS {
            return None;
        }
        let options = &self.shared.config.rate_limits;
        let limiter = &self.shared.limits;
        match self.rate.check(&self.id, self.ip, data.len(), options, limiter, Instant::now()) {
            Verdict::Allow => {}
            Verdict::Refuse(reason) => {
                let id = command_id(self.format, data);
                let message = rate_message(reason, options);
                self.reply(&Reply::<CommandResult>::err(id, ErrorCode::RateLimited, message));
                return None;
            }
            Verdict::Close => {
                let reason = "too many commands too fast".to_owned();
                // RFC 6455 §7.4.1: 1008, the policy-violation close; its advice is backoff.
                return Some(Kick { code: CloseCode::POLICY_VIOLATION.0, reason });
            }
            Verdict::Ignore => return None,
        }
        let Some(command) = self.decode(data, binary) else {
            self.errors += 1;
            if self.errors < MAX_CONSECUTIVE_ERRORS {
                return None;
            }
            self.shared.limits.count(Reason::TooManyErrors);
            tracing::debug!(client = %self.id, errors = self.errors, "closing: too many errors");
            let reason = format!("{MAX_CONSECUTIVE_ERRORS} malformed commands in a row");
            return Some(Kick { code: codes::close::TOO_MANY_ERRORS, reason });
        };
        self.errors = 0;
        self.run(command).await;
        None
    }

    /// The command in a message, or `None` after replying why there is none.
    fn decode(&self, data: &[u8], binary: bool) -> Option<Command> {
        if binary != self.format.is_binary() {
            let (expected, got) = if binary { ("text", "binary") } else { ("binary", "text") };
            let message = format!(
                "this connection speaks {}: send {expected} frames, not {got}",
                self.format.subprotocol()
            );
            self.reply(&Reply::<CommandResult>::err(0, ErrorCode::BadRequest, message));
            return None;
        }
        match self.format.decode_command(data) {
            Ok(command) => Some(command),
            Err(e) => {
                let reply = Reply::<CommandResult>::err(e.id.unwrap_or(0), e.code, e.message);
                self.reply(&reply);
                None
            }
        }
    }

    async fn run(&mut self, command: Command) {
        let id = command.id;
        let is_connect = matches!(command.kind, CommandKind::Connect(_));
        if is_connect && self.commands > 0 {
            let message = "`connect` must be the first command";
            self.reply(&Reply::<CommandResult>::err(id, ErrorCode::BadRequest, message));
            return;
        }
        if !is_connect && self.awaiting_connect.is_some() {
            let message = "send `connect` with a token first";
            self.reply(&Reply::<CommandResult>::err(id, ErrorCode::Unauthorized, message));
            return;
        }
        self.commands += 1;
        let result = match command.kind {
            CommandKind::Connect(req) => self.connect(&req),
            CommandKind::Refresh(req) => self.refresh(&req).await,
            CommandKind::Subscribe(req) => {
                // Replies itself: the reply must precede the publications it releases.
                self.subscribe(id, req).await;
                return;
            }
            CommandKind::Unsubscribe(req) => self.unsubscribe(&req).await,
            CommandKind::Publish(req) => self.publish(req).await,
            CommandKind::Presence(req) => self.presence(&req).await,
            CommandKind::History(req) => self.history(&req).await,
            CommandKind::Ping(Empty {}) => Ok(CommandResult::Empty(Empty {})),
        };
        let reply = match result {
            Ok(result) => Reply::ok(id, result),
            Err(error) => Reply { id, result: None, error: Some(error) },
        };
        self.reply(&reply);
    }

    fn connect(&mut self, req: &ConnectRequest) -> Result<CommandResult, CommandError> {
        match &req.token {
            Some(token) => {
                let identity = match self.shared.auth.authenticate_token(token) {
                    Ok(identity) => identity,
                    Err(failure) => {
                        // Where credentials are required, a refused one ends the connection.
                        if self.awaiting_connect.is_some() {
                            let code = if failure.expired {
                                codes::close::TOKEN_EXPIRED
                            } else {
                                codes::close::UNAUTHORIZED
                            };
                            self.refused = Some(Kick { code, reason: failure.message.to_owned() });
                        }
                        return Err(auth_error(&failure));
                    }
                };
                if let Some(user) = self.identity.user()
                    && Some(user) != identity.user()
                {
                    return Err(ErrorBody::new(
                        ErrorCode::Unauthorized,
                        "the token is for another user than the handshake's",
                    ));
                }
                self.set_identity(identity);
                self.awaiting_connect = None;
            }
            None if self.awaiting_connect.is_some() => {
                let reason = "this server requires a token in `connect`";
                self.refused =
                    Some(Kick { code: codes::close::UNAUTHORIZED, reason: reason.to_owned() });
                return Err(ErrorBody::new(ErrorCode::Unauthorized, reason));
            }
            None => {}
        }
        let options = &self.node.options;
        Ok(CommandResult::Connect(ConnectResult {
            client: self.id.to_string(),
            user: self.info.user.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ping_interval: self.ping_interval_secs,
            limits: ClientLimits {
                max_message_size: options.max_message_size as u64,
                max_subscriptions: u32::try_from(options.max_subscriptions).unwrap_or(u32::MAX),
            },
        }))
    }

    async fn subscribe(&mut self, id: u64, req: SubscribeRequest) {
        let channel: Arc<str> = Arc::from(req.channel.as_str());
        let (result, position) = match self.try_subscribe(&channel, &req).await {
            Ok((result, position)) => (Ok(CommandResult::Subscribe(result)), Some(position)),
            Err(error) => (Err(error), None),
        };
        let reply = match result {
            Ok(result) => Reply::ok(id, result),
            Err(error) => Reply { id, result: None, error: Some(error) },
        };
        self.reply(&reply);
        let Some(position) = position else { return };
        // The reply covered everything up to `position`; release what arrived meanwhile.
        if !self.node.hub.activate(&channel, &self.id, position) {
            self.subscriptions.remove(&channel);
            let push = Push::Unsubscribe {
                channel: channel.to_string(),
                code: ErrorCode::Unavailable,
                reason: "too many publications while subscribing: resubscribe with `since`"
                    .to_owned(),
            };
            self.sink.deliver(&Arc::new(switchboard_hub::Delivery::push(push)));
        }
    }

    async fn try_subscribe(
        &mut self,
        channel: &Arc<str>,
        req: &SubscribeRequest,
    ) -> Result<(SubscribeResult, u64), CommandError> {
        let ns = self.namespace(channel)?.clone();
        self.may_read(channel, &ns)?;
        if self.subscriptions.contains_key(channel) {
            if self.node.hub.subscribers(channel).contains(&self.id) {
                return Err(ErrorBody::new(ErrorCode::AlreadySubscribed, "already subscribed"));
            }
            // A broker resync dropped this subscription from the hub and told the client
            // to resubscribe with `since` (node.rs, `on_resync`): this is that resubscribe.
            self.subscriptions.remove(channel);
        }
        let max = self.node.options.max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(ErrorBody::new(
                ErrorCode::LimitExceeded,
                format!("at most {max} subscriptions per connection"),
            ));
        }
        let sink: Arc<dyn Sink> = self.sink.clone();
        let broker = &self.node.broker;
        {
            // The hub entry and the node's broker subscription change together, so a
            // subscriber arriving while the last one leaves never ends up in the hub of a
            // node that the broker no longer delivers to.
            let _channel = self.node.lock_channel(channel).await;
            self.node.hub.add(channel, &self.id, sink, ns.max_subscribers).map_err(
                |e| match e {
                    HubError::AlreadySubscribed => {
                        ErrorBody::new(ErrorCode::AlreadySubscribed, "already subscribed")
                    }
                    other => ErrorBody::new(ErrorCode::LimitExceeded, other.to_string()),
                },
            )?;
            if let Err(e) = broker.subscribe(channel).await {
                if self.node.hub.remove(channel, &self.id) == Some(true) {
                    self.unsubscribe_node(channel).await;
                }
                return Err(broker_error(&e));
            }
        }
        let options = StreamOptions::new(ns.history_size, ns.history_ttl);
        let query = match &req.since {
            Some(since) => HistoryQuery::since(since.clone(), Some(ns.history_size)),
            None => HistoryQuery::latest(Some(0)),
        };
        let history = match broker.history(channel, &query, &options).await {
            Ok(history) => history,
            Err(e) => {
                self.release(channel).await;
                return Err(broker_error(&e));
            }
        };
        let membership = Membership { presence: ns.presence, announce: ns.join_leave };
        if ns.presence
            && let Err(e) = broker.join(channel, &self.info, ns.join_leave).await
        {
            tracing::debug!(client = %self.id, channel = %channel, error = %e, "presence join failed");
        }
        self.subscriptions.insert(Arc::clone(channel), membership);
        let mut recovered = req.since.as_ref().map(|_| history.complete);
        let mut publications = history.publications;
        if recovered != Some(true) {
            publications.clear();
        }
        // A recovery too large for one reply arrives in pages: this reply carries the first
        // and the client reads the rest up to `position` with `history`, while the hub
        // releases what follows `position` after this reply, as for any subscribe.
        let budget = page::budget(self.node.options.outbound_queue_bytes);
        let next = page::cut(&mut publications, self.format, budget, &history.position.epoch);
        if next.is_some() {
            // A client unaware of pages must not take the first for a whole recovery.
            recovered = Some(false);
        }
        let position = history.position.offset;
        let result = SubscribeResult {
            epoch: history.position.epoch,
            offset: position,
            recoverable: ns.history_size > 0,
            recovered,
            publications: publications.iter().map(|p| Publication::clone(p)).collect(),
            more: next.is_some(),
            next,
        };
        Ok((result, position))
    }

    async fn unsubscribe(&mut self, req: &ChannelRequest) -> Result<CommandResult, CommandError> {
        let Some(membership) = self.subscriptions.remove(req.channel.as_str()) else {
            return Err(ErrorBody::new(ErrorCode::NotSubscribed, "not subscribed"));
        };
        self.leave(&req.channel, membership).await;
        Ok(CommandResult::Empty(Empty {}))
    }

    async fn publish(&mut self, req: PublishRequest) -> Result<CommandResult, CommandError> {
        let ns = self.namespace(&req.channel)?;
        self.may_publish(&req.channel, ns)?;
        let options = StreamOptions::new(ns.history_size, ns.history_ttl);
        let position = self
            .node
            .broker
            .publish(&req.channel, req.data, Some(self.info.clone()), &options)
            .await
            .map_err(|e| broker_error(&e))?;
        Ok(CommandResult::Publish(PublishResult { offset: position.offset, epoch: position.epoch }))
    }

    async fn presence(&self, req: &ChannelRequest) -> Result<CommandResult, CommandError> {
        self.may_read(&req.channel, self.namespace(&req.channel)?)?;
        self.node.presence(&req.channel).await.map(CommandResult::Presence)
    }

    async fn history(&self, req: &HistoryRequest) -> Result<CommandResult, CommandError> {
        self.may_read(&req.channel, self.namespace(&req.channel)?)?;
        let page = (self.format, page::budget(self.node.options.outbound_queue_bytes));
        self.node.history_page(req, Some(page)).await.map(CommandResult::History)
    }

    /// Undoes every subscription: called once the connection is gone, however it ended, so
    /// presence is cleaned and subscribers hear "X has left" even after a crash or timeout.
    pub(crate) async fn close(mut self) {
        self.node.unregister(&self.id);
        for (channel, membership) in std::mem::take(&mut self.subscriptions) {
            self.leave(&channel, membership).await;
        }
    }

    async fn leave(&self, channel: &str, membership: Membership) {
        // Out of the hub first, so nothing more for the channel reaches this connection (not
        // even its own leave); out of presence while the node is still subscribed to the
        // broker, which announces leaves only on subscribed channels; then the broker
        // subscription, with the last local subscriber.
        let _channel = self.node.lock_channel(channel).await;
        let last = self.node.hub.remove(channel, &self.id) == Some(true);
        if membership.presence
            && let Err(e) = self.node.broker.leave(channel, &self.info, membership.announce).await
        {
            tracing::debug!(client = %self.id, channel, error = %e, "presence leave failed");
        }
        if last {
            self.unsubscribe_node(channel).await;
        }
    }

    /// Removes the hub entry, and the node's broker subscription with the last one.
    async fn release(&self, channel: &str) {
        let _channel = self.node.lock_channel(channel).await;
        if self.node.hub.remove(channel, &self.id) == Some(true) {
            self.unsubscribe_node(channel).await;
        }
    }

    async fn unsubscribe_node(&self, channel: &str) {
        if let Err(e) = self.node.broker.unsubscribe(channel).await {
            tracing::debug!(channel, error = %e, "broker unsubscribe failed");
        }
    }

    /// Adopts a new token for the same user. Subscriptions the new token no longer allows
    /// end, each with an `unsubscribe` push queued before the reply: a client reading the
    /// reply already knows every subscription it lost.
    async fn refresh(&mut self, req: &RefreshRequest) -> Result<CommandResult, CommandError> {
        let claims = self.shared.auth.verify(&req.token).map_err(|f| auth_error(&f))?;
        if self.identity.user() != Some(claims.user()) {
            return Err(ErrorBody::new(
                ErrorCode::Unauthorized,
                "a refresh must be for the connection's user",
            ));
        }
        let expires_at = claims.exp;
        self.set_identity(Identity::from_claims(claims));
        let revoked: Vec<(Arc<str>, ErrorBody)> = self
            .subscriptions
            .keys()
            .filter_map(|channel| {
                let allowed = self.namespace(channel).and_then(|ns| self.may_read(channel, ns));
                allowed.err().map(|error| (Arc::clone(channel), error))
            })
            .collect();
        for (channel, error) in revoked {
            let Some(membership) = self.subscriptions.remove(&channel) else { continue };
            // Out of the hub before the push: nothing for the channel follows it.
            self.leave(&channel, membership).await;
            let push = Push::Unsubscribe {
                channel: channel.to_string(),
                code: error.code,
                reason: format!("after refresh: {}", error.message),
            };
            self.sink.deliver(&Arc::new(switchboard_hub::Delivery::push(push)));
        }
        Ok(CommandResult::Refresh(RefreshResult { expires_at }))
    }

    /// Whether this connection may subscribe to `channel`, read its presence and history:
    /// its token grants it, or the namespace lets anyone in (user-limited channels aside).
    fn may_read(&self, channel: &str, ns: &NamespaceOptions) -> Result<(), CommandError> {
        let open = ns.anonymous != Anonymous::Deny && !channel.contains('#');
        if open || self.identity.permissions().can_subscribe(channel) {
            Ok(())
        } else {
            Err(self.denied("subscribe to"))
        }
    }

    /// Whether this connection may publish to `channel`.
    fn may_publish(&self, channel: &str, ns: &NamespaceOptions) -> Result<(), CommandError> {
        if !ns.allow_publish {
            return Err(ErrorBody::new(
                ErrorCode::PermissionDenied,
                "clients may not publish in this namespace",
            ));
        }
        let open = ns.anonymous == Anonymous::Publish && !channel.contains('#');
        if open || self.identity.permissions().can_publish(channel) {
            Ok(())
        } else {
            Err(self.denied("publish to"))
        }
    }

    fn denied(&self, what: &str) -> ErrorBody {
        if self.identity.is_authenticated() {
            ErrorBody::new(
                ErrorCode::PermissionDenied,
                format!("the token does not allow to {what} this channel"),
            )
        } else {
            ErrorBody::new(
                ErrorCode::Unauthorized,
                format!("anonymous connections may not {what} this channel"),
            )
        }
    }

    fn namespace(&self, channel: &str) -> Result<&NamespaceOptions, CommandError> {
        self.node.channel_namespace(channel)
    }

    /// Queues a reply behind every push already queued for this connection: one queue
    /// carries both, so a client sees them in the order they happened (nothing for a
    /// channel after its `unsubscribe` reply, publications released by a subscribe after
    /// its reply).
    fn reply(&self, reply: &Reply<CommandResult>) {
        let metrics = &self.shared.metrics;
        match (&reply.result, &reply.error) {
            (_, Some(error)) => {
                metrics
                    .command_errors
                    .get_or_create(&metrics::Reason { reason: error.code.as_str() })
                    .inc();
            }
            (Some(CommandResult::Publish(_)), None) => {
                metrics.publications.inc();
            }
            (Some(CommandResult::Subscribe(result)), None) => {
                if let Some(recovered) = result.recovered {
                    let result = match (recovered, result.more) {
                        (_, true) => "paged",
                        (true, false) => "ok",
                        (false, false) => "failed",
                    };
                    let outcome = Outcome { result };
                    metrics.recoveries.get_or_create(&outcome).inc();
                }
            }
            _ => {}
        }
        match self.format.encode(reply) {
            Ok(bytes) => self.sink.enqueue(bytes, None),
            Err(e) => tracing::error!(error = %e, "cannot encode a reply"),
        }
    }

    fn frame(&self, bytes: Bytes) -> Message {
        if self.format.is_binary() { Message::Binary(bytes) } else { Message::Text(bytes) }
    }

    /// The WebSocket message for a payload taken off the outbound queue.
    pub(crate) fn push_message(&self, bytes: Bytes) -> Message {
        self.frame(bytes)
    }
}

/// The id of a command refused before decoding, to answer it by: read without building the
/// rest of the command. 0 when there is none.
fn command_id(format: Format, data: &[u8]) -> u64 {
    #[derive(Deserialize)]
    struct Id {
        id: u64,
    }
    format.decode::<Id>(data).map_or(0, |command| command.id)
}

/// What a `rate_limited` reply says.
fn rate_message(reason: Reason, options: &LimitOptions) -> String {
    let (rate, unit, whose) = match reason {
        Reason::ByteRate => (options.byte_rate, "bytes", ""),
        Reason::AddressByteRate => (options.address_byte_rate, "bytes", " from this address"),
        Reason::AddressMessageRate => {
            (options.address_message_rate, "commands", " from this address")
        }
        _ => (options.message_rate, "commands", ""),
    };
    match rate {
        Some(rate) => format!(
            "too many {unit}{whose}: at most {} a second, in bursts of {}; slow down",
            rate.per_second, rate.burst
        ),
        None => format!("too many {unit}{whose}; slow down"),
    }
}

/// Commands in a row that cannot be read (not valid JSON or MessagePack, not an object,
/// no `id` or `type`, an unknown `type`, fields of the wrong shape, a frame of the other
/// type than the connection's format) before the connection is closed with 4101
/// (`too_many_errors`). Any command that can be read ends the run, whatever its outcome.
/// A correct client sends none; a hundred in a row is a broken or hostile one, which
/// otherwise costs a decode and an error reply per message for as long as it likes.
pub(crate) const MAX_CONSECUTIVE_ERRORS: u32 = 100;

/// The reply error for a refused token.
fn auth_error(failure: &crate::auth::AuthFailure) -> ErrorBody {
    let code = if failure.expired { ErrorCode::TokenExpired } else { ErrorCode::Unauthorized };
    ErrorBody::new(code, failure.message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn refused_commands_are_answered_by_their_id_when_it_can_be_read() {
        let command = json!({"id": 7, "type": "publish", "channel": "a", "data": {"x": [1, 2]}});
        for format in [Format::Json, Format::Msgpack] {
            let bytes = format.encode(&command).unwrap();
            assert_eq!(command_id(format, &bytes), 7, "{format:?}");
        }
        for garbage in [&b"not json"[..], b"{\"id\": -1}", b"{\"type\": \"ping\"}", b""] {
            assert_eq!(command_id(Format::Json, garbage), 0);
        }
    }
}
