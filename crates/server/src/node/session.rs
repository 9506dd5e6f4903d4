//! One client's protocol state machine: who it is, what it subscribed to, and how each
//! command is carried out. Transport-agnostic: a WebSocket driver, an event stream or a
//! long-poll endpoint carries one the same way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use switchboard_codec::CloseCode;
use switchboard_hub::{Delivery, Sink as _};
use switchboard_proto::{
    ChannelRequest, ClientInfo, ClientLimits, Command, CommandKind, CommandResult, ConnectRequest,
    ConnectResult, Empty, ErrorBody, ErrorCode, Format, HistoryRequest, PublishRequest,
    PublishResult, Push, RefreshRequest, RefreshResult, Reply, RpcRequest, RpcResult,
    SubscribeRequest, Value, check_data_depth, codes,
};
use tokio::time::Instant;

use super::registry::Registration;
use super::subscribe::Membership;
use super::{Node, Outbox, Pushes, page};
use crate::auth::{AuthFailure, Identity};
use crate::config::{Anonymous, LimitOptions, NamespaceOptions};
use crate::hooks::{Answer, Hook};
use crate::limits::{ConnRate, Reason, Verdict};
use crate::metrics::{ReasonLabel, ResultLabel};

use super::Kick;

/// What a command failed with.
type CommandError = ErrorBody;

/// One message from a client, as its transport received it: the bytes of one command in
/// the session's format, and whether the transport marked them as text or binary (a
/// WebSocket frame's type; other transports say which their body was).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Payload<'a> {
    /// Text: JSON commands.
    Text(&'a [u8]),
    /// Binary: MessagePack commands.
    Binary(&'a [u8]),
}

impl<'a> Payload<'a> {
    fn bytes(self) -> &'a [u8] {
        match self {
            Self::Text(bytes) | Self::Binary(bytes) => bytes,
        }
    }
}

/// The protocol state of one client, sans-IO: commands and `now` in, replies and pushes
/// out to its [`Outbox`], one deadline to fire.
///
/// A transport calls, for the life of the client:
///
/// 1. [`Session::new`] once its door let the client in (credentials, origin, limits);
/// 2. [`handle`](Self::handle) for each message the client sends, in order; what it returns
///    says to close the client, after what the outbox holds;
/// 3. [`poll_deadline`](Self::poll_deadline) after each call, and
///    [`handle_timeout`](Self::handle_timeout) once that moment has come;
/// 4. [`Outbox::recv`] on [`outbox`](Self::outbox) to carry replies and pushes to the
///    client, until a [`Queued::Close`](super::Queued::Close);
/// 5. [`close`](Self::close) once the client is gone, however that happened.
///
/// The session reads no clock of its own but the wall clock that token expiry is given in.
pub struct Session {
    /// The client's place in the node: its id, its outbox, the node itself.
    registration: Registration,
    identity: Identity,
    /// First-message mode: nothing but `connect` with a token until this deadline.
    awaiting_connect: Option<Instant>,
    /// When the credentials run out (expiry plus leeway).
    token_deadline: Option<Instant>,
    /// Credentials were refused where they are required: close at once with this.
    refused: Option<Kick>,
    /// Shared by the client's publications and presence entries.
    info: Arc<ClientInfo>,
    format: Format,
    /// Subscribed channels, with what leaving them must undo.
    subscriptions: HashMap<Arc<str>, Membership>,
    /// Commands carried out so far; `connect`, when sent, must be the first.
    commands: u64,
    /// Command and byte allowances.
    rate: ConnRate,
    /// The client's address, whose command and byte allowances all its connections share.
    ip: Option<IpAddr>,
    /// Commands in a row that could not be read (see [`MAX_CONSECUTIVE_ERRORS`]).
    errors: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", self.registration.id())
            .field("format", &self.format)
            .field("subscriptions", &self.subscriptions.len())
            .finish()
    }
}

impl Session {
    /// Opens a session on `node` for a client that authenticated as `identity` at its
    /// transport's door (or not at all), from `ip`, speaking `format`, at `now`. The client
    /// is registered with the node until the session is dropped.
    pub fn new(
        node: &Arc<Node>,
        identity: Identity,
        format: Format,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Self {
        Self::with_pushes(node, identity, format, ip, now, Pushes::Encoded)
    }

    /// [`new`](Self::new), with an outbox that hands its transport pushes as `pushes` says.
    pub fn with_pushes(
        node: &Arc<Node>,
        identity: Identity,
        format: Format,
        ip: Option<IpAddr>,
        now: Instant,
        pushes: Pushes,
    ) -> Self {
        let outbox = Outbox::new(format, node.options.outbound_queue_bytes, pushes);
        let registration = Registration::new(node, outbox);
        let info =
            Arc::new(ClientInfo { id: registration.id().to_string(), user: None, info: None });
        let awaiting_connect = node
            .sessions
            .first_message
            .filter(|_| !identity.is_authenticated())
            .map(|timeout| now + timeout);
        let mut session = Self {
            registration,
            identity: Identity::anonymous(),
            awaiting_connect,
            token_deadline: None,
            refused: None,
            info,
            format,
            subscriptions: HashMap::new(),
            commands: 0,
            rate: ConnRate::new(now),
            ip,
            errors: 0,
        };
        session.set_identity(identity, now);
        session
    }

    /// The client's id.
    pub fn id(&self) -> &Arc<str> {
        self.registration.id()
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&str> {
        self.info.user.as_deref()
    }

    /// The client's wire format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The client's outbound queue, for its transport to drain.
    pub fn outbox(&self) -> &Arc<Outbox> {
        self.registration.outbox()
    }

    fn node(&self) -> &Arc<Node> {
        self.registration.node()
    }

    /// Adopts new credentials: who the client is, what it may do, when it runs out.
    fn set_identity(&mut self, identity: Identity, now: Instant) {
        let info = ClientInfo {
            id: self.info.id.clone(),
            user: identity.user().map(str::to_owned),
            info: identity.info().cloned(),
        };
        if *self.info != info {
            self.info = Arc::new(info);
        }
        let leeway = self.node().auth.leeway();
        // A deadline beyond what the clock can represent is no deadline.
        self.token_deadline = identity.expires_at().and_then(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
            now.checked_add(left.saturating_add(leeway))
        });
        self.registration.set_user(self.info.user.as_deref());
        self.identity = identity;
    }

    /// The next moment the session must be closed unless something happens first: at once
    /// after refused credentials, the first-message deadline, or the token's expiry.
    /// Allocates nothing; call it after every input.
    pub fn poll_deadline(&self) -> Option<Instant> {
        self.awaiting_connect.or(self.token_deadline)
    }

    /// Fires the deadline if it has come by `now`: how to close the client (4102 without a
    /// `connect` in time, 4200 once the token expired, 4101/4200 after refused
    /// credentials), after what its outbox holds. `None` when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Kick> {
        if let Some(kick) = self.refused.take() {
            return Some(kick);
        }
        if let Some(at) = self.awaiting_connect {
            return (at <= now).then(|| Kick {
                code: codes::close::CONNECT_TIMEOUT,
                reason: "no connect with a token in time".to_owned(),
            });
        }
        self.token_deadline
            .filter(|&at| at <= now)
            .map(|_| Kick { code: codes::close::TOKEN_EXPIRED, reason: "token expired".to_owned() })
    }

    /// Handles one message from the client at `now`: decodes the command, carries it out,
    /// and queues the reply on the outbox. Malformed and unknown commands get an error
    /// reply; the client stays until [`MAX_CONSECUTIVE_ERRORS`] of them come in a row.
    /// Commands over the client's or its address's rate get a `rate_limited` reply and are
    /// not carried out. Returns how to close the client when either went on too long;
    /// whatever arrives after that is ignored.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a command dropped halfway may leave a subscription half made.
    /// Transports drive it to completion.
    pub async fn handle(&mut self, payload: Payload<'_>, now: Instant) -> Option<Kick> {
        if self.errors >= MAX_CONSECUTIVE_ERRORS {
            return None;
        }
        let data = payload.bytes();
        // Borrowed from the registration field alone, so `rate` can be borrowed beside it.
        let node = self.registration.node();
        let options = &node.sessions.rates;
        let id = self.registration.id();
        match self.rate.check(id, self.ip, data.len(), options, &node.limiter, now) {
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
        let Some(command) = self.decode(payload) else {
            self.errors += 1;
            if self.errors < MAX_CONSECUTIVE_ERRORS {
                return None;
            }
            node.limiter.count(Reason::TooManyErrors);
            tracing::debug!(client = %self.id(), errors = self.errors, "closing: too many errors");
            let reason = format!("{MAX_CONSECUTIVE_ERRORS} malformed commands in a row");
            return Some(Kick { code: codes::close::TOO_MANY_ERRORS, reason });
        };
        self.errors = 0;
        self.run(command, now).await;
        None
    }

    /// The command in a message, or `None` after replying why there is none.
    fn decode(&self, payload: Payload<'_>) -> Option<Command> {
        let binary = matches!(payload, Payload::Binary(_));
        if binary != self.format.is_binary() {
            let (expected, got) = if binary { ("text", "binary") } else { ("binary", "text") };
            let message = format!(
                "this connection speaks {}: send {expected} frames, not {got}",
                self.format.subprotocol()
            );
            self.reply(&Reply::<CommandResult>::err(0, ErrorCode::BadRequest, message));
            return None;
        }
        match self.format.decode_command(payload.bytes()) {
            Ok(command) => Some(command),
            Err(e) => {
                let reply = Reply::<CommandResult>::err(e.id.unwrap_or(0), e.code, e.message);
                self.reply(&reply);
                None
            }
        }
    }

    async fn run(&mut self, command: Command, now: Instant) {
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
            CommandKind::Connect(req) => self.connect(&req, now),
            CommandKind::Refresh(req) => self.refresh(&req, now).await,
            CommandKind::Subscribe(req) => {
                // Replies itself: the reply must precede the publications it releases.
                self.subscribe(id, &req).await;
                return;
            }
            CommandKind::Unsubscribe(req) => self.unsubscribe(&req).await,
            CommandKind::Publish(req) => self.publish(req).await,
            CommandKind::Presence(req) => self.presence(&req).await,
            CommandKind::PresenceCount(req) => self.presence_count(&req).await,
            CommandKind::History(req) => self.history(&req).await,
            CommandKind::Ping(Empty {}) => Ok(CommandResult::Empty(Empty {})),
            CommandKind::Rpc(req) => self.rpc(req).await,
        };
        let reply = match result {
            Ok(result) => Reply::ok(id, result),
            Err(error) => Reply { id, result: None, error: Some(error) },
        };
        self.reply(&reply);
    }

    fn connect(
        &mut self,
        req: &ConnectRequest,
        now: Instant,
    ) -> Result<CommandResult, CommandError> {
        match &req.token {
            Some(token) => {
                let identity = match self.node().auth.authenticate_token(token) {
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
                            // Due at once: the transport closes at its next turn.
                            self.awaiting_connect = Some(now);
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
                self.set_identity(identity, now);
                self.awaiting_connect = None;
            }
            None if self.awaiting_connect.is_some() => {
                let reason = "this server requires a token in `connect`";
                self.refused =
                    Some(Kick { code: codes::close::UNAUTHORIZED, reason: reason.to_owned() });
                self.awaiting_connect = Some(now);
                return Err(ErrorBody::new(ErrorCode::Unauthorized, reason));
            }
            None => {}
        }
        let node = self.node();
        let options = &node.options;
        Ok(CommandResult::Connect(ConnectResult {
            client: self.id().to_string(),
            user: self.info.user.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ping_interval: node.sessions.ping_interval_secs,
            limits: ClientLimits {
                max_message_size: options.max_message_size as u64,
                max_subscriptions: u32::try_from(options.max_subscriptions).unwrap_or(u32::MAX),
            },
        }))
    }

    async fn subscribe(&mut self, id: u64, req: &SubscribeRequest) {
        let channel: Arc<str> = Arc::from(req.channel.as_str());
        let node = Arc::clone(self.node());
        let ns = match self.may_subscribe(&node, &channel) {
            Ok(ns) => ns,
            Err(error) => return self.reply(&Reply { id, result: None, error: Some(error) }),
        };
        if let Some(proxy) = &ns.subscribe_proxy {
            let call =
                HookCall { client: &self.info, channel: Some(&channel), method: None, data: None };
            match node.hooks.call(proxy, Hook::Subscribe, &call).await {
                Ok(Answer::Allow(_)) => {}
                Ok(Answer::Refuse(error)) | Err(error) => {
                    return self.reply(&Reply { id, result: None, error: Some(error) });
                }
            }
        }
        let answer = |result: Result<_, ErrorBody>| {
            let reply = match result {
                Ok(result) => Reply::ok(id, CommandResult::Subscribe(result)),
                Err(error) => Reply { id, result: None, error: Some(error) },
            };
            self.reply(&reply);
        };
        let subscribed = node
            .subscribe(&self.registration, &self.info, &channel, ns, req.since.as_ref(), answer)
            .await;
        if let Some(membership) = subscribed {
            self.subscriptions.insert(channel, membership);
        }
    }

    /// The namespace of a channel this client may subscribe to now, or why not.
    fn may_subscribe<'n>(
        &mut self,
        node: &'n Node,
        channel: &Arc<str>,
    ) -> Result<&'n NamespaceOptions, CommandError> {
        let ns = node.channel_namespace(channel)?;
        self.may_read(channel, ns)?;
        if self.subscriptions.contains_key(channel) {
            if node.is_subscribed(channel, &self.registration) {
                return Err(ErrorBody::new(ErrorCode::AlreadySubscribed, "already subscribed"));
            }
            // A broker resync dropped this subscription from the hub and told the client
            // to resubscribe with `since` (`on_resync`): this is that resubscribe.
            self.subscriptions.remove(channel);
        }
        let max = node.options.max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(ErrorBody::new(
                ErrorCode::LimitExceeded,
                format!("at most {max} subscriptions per connection"),
            ));
        }
        Ok(ns)
    }

    async fn unsubscribe(&mut self, req: &ChannelRequest) -> Result<CommandResult, CommandError> {
        let Some(membership) = self.subscriptions.remove(req.channel.as_str()) else {
            return Err(ErrorBody::new(ErrorCode::NotSubscribed, "not subscribed"));
        };
        self.node().leave(&self.registration, &self.info, &req.channel, membership).await;
        Ok(CommandResult::Empty(Empty {}))
    }

    async fn publish(&self, req: PublishRequest) -> Result<CommandResult, CommandError> {
        let node = self.node();
        let ns = node.channel_namespace(&req.channel)?;
        self.may_publish(&req.channel, ns)?;
        let mut data = req.data;
        if let Some(proxy) = &ns.publish_proxy {
            let call = HookCall {
                client: &self.info,
                channel: Some(&req.channel),
                method: None,
                data: Some(&data),
            };
            match node.hooks.call(proxy, Hook::Publish, &call).await? {
                Answer::Allow(mut result) => {
                    if let Some(replaced) = result.remove("data") {
                        check_replaced(&replaced, node.options.max_message_size)?;
                        data = replaced;
                    }
                }
                Answer::Refuse(error) => return Err(error),
            }
        }
        let position = node.publish(&req.channel, data, Some(Arc::clone(&self.info))).await?;
        Ok(CommandResult::Publish(PublishResult { offset: position.offset, epoch: position.epoch }))
    }

    async fn rpc(&self, req: RpcRequest) -> Result<CommandResult, CommandError> {
        if req.method.is_empty() || req.method.len() > MAX_METHOD_BYTES {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("`method` must be 1 to {MAX_METHOD_BYTES} bytes"),
            ));
        }
        let node = self.node();
        let Some(proxy) = node.hooks.rpc_proxy() else {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "this server sends `rpc` nowhere: its operator sets `rpc_proxy` (docs/hooks.md)",
            ));
        };
        let call = HookCall {
            client: &self.info,
            channel: None,
            method: Some(&req.method),
            data: Some(&req.data),
        };
        match node.hooks.call(proxy, Hook::Rpc, &call).await? {
            Answer::Allow(mut result) => {
                let data = result.remove("data").unwrap_or(Value::Null);
                Ok(CommandResult::Rpc(RpcResult { data }))
            }
            Answer::Refuse(error) => Err(error),
        }
    }

    async fn presence(&self, req: &ChannelRequest) -> Result<CommandResult, CommandError> {
        let node = self.node();
        self.may_read(&req.channel, node.channel_namespace(&req.channel)?)?;
        node.presence(&req.channel).await.map(CommandResult::Presence)
    }

    async fn presence_count(&self, req: &ChannelRequest) -> Result<CommandResult, CommandError> {
        let node = self.node();
        self.may_read(&req.channel, node.channel_namespace(&req.channel)?)?;
        node.presence_count(&req.channel).await.map(CommandResult::PresenceCount)
    }

    async fn history(&self, req: &HistoryRequest) -> Result<CommandResult, CommandError> {
        let node = self.node();
        self.may_read(&req.channel, node.channel_namespace(&req.channel)?)?;
        let page = (self.format, page::budget(node.options.outbound_queue_bytes));
        node.history_page(req, Some(page)).await.map(CommandResult::History)
    }

    /// Undoes every subscription: called once the client is gone, however it ended, so
    /// presence is cleaned and subscribers hear "X has left" even after a crash or timeout.
    /// The node forgets the client when this returns.
    pub async fn close(mut self) {
        for (channel, membership) in std::mem::take(&mut self.subscriptions) {
            self.node().leave(&self.registration, &self.info, &channel, membership).await;
        }
    }

    /// Adopts a new token for the same user. Subscriptions the new token no longer allows
    /// end, each with an `unsubscribe` push queued before the reply: a client reading the
    /// reply already knows every subscription it lost.
    async fn refresh(
        &mut self,
        req: &RefreshRequest,
        now: Instant,
    ) -> Result<CommandResult, CommandError> {
        let claims = self.node().auth.verify(&req.token).map_err(|f| auth_error(&f))?;
        if self.identity.user() != Some(claims.user()) {
            return Err(ErrorBody::new(
                ErrorCode::Unauthorized,
                "a refresh must be for the connection's user",
            ));
        }
        let expires_at = claims.exp;
        self.set_identity(Identity::from_claims(claims), now);
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
            self.node().leave(&self.registration, &self.info, &channel, membership).await;
            let push = Push::Unsubscribe {
                channel: channel.to_string(),
                code: error.code,
                reason: format!("after refresh: {}", error.message),
            };
            self.outbox().deliver(&Arc::new(Delivery::push(push)));
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
            Err(self.denied(channel, ns, Access::Read))
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
            Err(self.denied(channel, ns, Access::Publish))
        }
    }

    /// The refusal of `access` to `channel`: `permission_denied` for a token that does not
    /// grant it, `unauthorized` without a token, saying why and what would let it in.
    fn denied(&self, channel: &str, ns: &NamespaceOptions, access: Access) -> ErrorBody {
        if self.identity.is_authenticated() {
            return ErrorBody::new(
                ErrorCode::PermissionDenied,
                format!("the token does not allow to {} this channel", access.verb()),
            );
        }
        // A namespace to suggest instead: `chat`, the built-in one for trying things out,
        // or else the first by name that lets anonymous connections in.
        let namespaces = &self.node().options.namespaces;
        let open = if namespaces.get("chat").is_some_and(|ns| access.is_open(ns)) {
            Some("chat")
        } else {
            namespaces
                .iter()
                .find(|(name, ns)| !name.is_empty() && access.is_open(ns))
                .map(|(name, _)| name.as_str())
        };
        ErrorBody::new(ErrorCode::Unauthorized, anonymous_refusal(channel, ns, access, open))
    }

    fn namespace(&self, channel: &str) -> Result<&NamespaceOptions, CommandError> {
        self.node().channel_namespace(channel)
    }

    /// Queues a reply behind every push already queued for this client: one queue carries
    /// both, so a client sees them in the order they happened (nothing for a channel after
    /// its `unsubscribe` reply, publications released by a subscribe after its reply).
    fn reply(&self, reply: &Reply<CommandResult>) {
        let counters = &self.node().counters;
        match (&reply.result, &reply.error) {
            (_, Some(error)) => {
                let reason = ReasonLabel { reason: error.code.as_str() };
                counters.command_errors.get_or_create(&reason).inc();
            }
            (Some(CommandResult::Publish(_)), None) => {
                counters.publications.inc();
            }
            (Some(CommandResult::Subscribe(result)), None) => {
                if let Some(recovered) = result.recovered {
                    let result = match (recovered, result.more) {
                        (_, true) => "paged",
                        (true, false) => "ok",
                        (false, false) => "failed",
                    };
                    counters.recoveries.get_or_create(&ResultLabel { result }).inc();
                }
            }
            _ => {}
        }
        match self.format.encode(reply) {
            Ok(bytes) => self.outbox().enqueue(bytes),
            Err(e) => tracing::error!(error = %e, "cannot encode a reply"),
        }
    }
}

/// The longest `rpc` method name, in bytes.
const MAX_METHOD_BYTES: usize = 128;

/// What a hook call tells the backend: the client, and the command's fields.
#[derive(Debug, Serialize)]
struct HookCall<'a> {
    /// The connection: `client` (its id), `user` and `info` when it has them.
    #[serde(flatten)]
    client: &'a ClientInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

/// Checks data a publish hook put in place of the client's: the rules the client's own had
/// to follow (nesting, size), so that every subscriber can still decode it.
fn check_replaced(data: &Value, max_message_size: usize) -> Result<(), ErrorBody> {
    let bad = |why: String| {
        ErrorBody::new(
            ErrorCode::Unavailable,
            format!("the application's backend replaced the data with {why}"),
        )
    };
    check_data_depth(data).map_err(|e| bad(e.to_string()))?;
    let size = serde_json::to_vec(data).map_or(usize::MAX, |bytes| bytes.len());
    if size > max_message_size {
        return Err(bad(format!("{size} bytes, over the {max_message_size} a message may have")));
    }
    Ok(())
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
pub const MAX_CONSECUTIVE_ERRORS: u32 = 100;

/// What a command asks of a channel, as far as permissions go.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Access {
    /// `subscribe`, `presence`, `presence_count`, `history`.
    Read,
    /// `publish`.
    Publish,
}

impl Access {
    /// The words for it in a refusal: "may not {verb} this channel".
    fn verb(self) -> &'static str {
        match self {
            Self::Read => "subscribe to",
            Self::Publish => "publish to",
        }
    }

    /// The `anonymous` value that opens a namespace to it.
    fn anonymous(self) -> &'static str {
        match self {
            Self::Read => "subscribe",
            Self::Publish => "publish",
        }
    }

    /// Whether `ns` lets connections without a token do it.
    fn is_open(self, ns: &NamespaceOptions) -> bool {
        match self {
            Self::Read => ns.anonymous != Anonymous::Deny,
            Self::Publish => ns.anonymous == Anonymous::Publish && ns.allow_publish,
        }
    }
}

/// The message of an `unauthorized` refusal of `access` to `channel` (in namespace `ns`)
/// for a connection without a token: why, and what to do instead. `open` names a namespace
/// that allows it to anonymous connections, if the server has one.
///
/// A newcomer's first channel is often a bare name such as `room`, in the default namespace,
/// which is closed to anonymous connections by default: a bare "unauthorized" leaves them
/// guessing, so the message names the namespace and the three ways out.
fn anonymous_refusal(
    channel: &str,
    ns: &NamespaceOptions,
    access: Access,
    open: Option<&str>,
) -> String {
    let verb = access.verb();
    if channel.contains('#') {
        // Opening the namespace would not help: docs/security.md §8.
        return format!(
            "anonymous connections may not {verb} `{channel}`: a channel with `#` is \
             user-limited, open only to the users it names; connect with a token for one of them"
        );
    }
    // The channel's name was checked before its namespace was found.
    let (namespace, name) = channel.split_once(':').unwrap_or(("", channel));
    let why = match (namespace, ns.anonymous) {
        ("", Anonymous::Deny) => "it is in the default namespace (no `namespace:` prefix), which \
                                  is closed to connections without a token"
            .to_owned(),
        ("", _) => "it is in the default namespace (no `namespace:` prefix), where connections \
                    without a token may read but not publish"
            .to_owned(),
        (_, Anonymous::Deny) => {
            format!("namespace `{namespace}` is closed to connections without a token")
        }
        _ => {
            format!("namespace `{namespace}` lets connections without a token read but not publish")
        }
    };
    let instead =
        open.map(|open| format!("use a channel such as `{open}:{name}`, ")).unwrap_or_default();
    let flag = format!("--namespace '{namespace}:anonymous={}'", access.anonymous());
    format!(
        "anonymous connections may not {verb} `{channel}`: {why}; {instead}connect with a \
         token, or open the namespace with `{flag}`"
    )
}

/// The reply error for a refused token.
pub(super) fn auth_error(failure: &AuthFailure) -> ErrorBody {
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

    #[test]
    fn anonymous_refusals_name_the_namespace_and_the_ways_out() {
        let closed = NamespaceOptions::default();
        let read_only = NamespaceOptions { anonymous: Anonymous::Subscribe, ..Default::default() };

        let message = anonymous_refusal("room", &closed, Access::Read, Some("chat"));
        assert_eq!(
            message,
            "anonymous connections may not subscribe to `room`: it is in the default namespace \
             (no `namespace:` prefix), which is closed to connections without a token; use a \
             channel such as `chat:room`, connect with a token, or open the namespace with \
             `--namespace ':anonymous=subscribe'`"
        );
        let message = anonymous_refusal("room", &read_only, Access::Publish, None);
        assert!(message.contains("may read but not publish"), "{message}");
        assert!(message.ends_with("`--namespace ':anonymous=publish'`"), "{message}");
        assert!(!message.contains("such as"), "no open namespace to suggest: {message}");

        let message = anonymous_refusal("news:world", &closed, Access::Read, Some("chat"));
        assert!(message.contains("namespace `news` is closed"), "{message}");
        assert!(message.contains("`chat:world`"), "{message}");
        assert!(message.ends_with("`--namespace 'news:anonymous=subscribe'`"), "{message}");

        // Opening the namespace would not open a user-limited channel.
        let message = anonymous_refusal("chat:#ann", &read_only, Access::Publish, Some("chat"));
        assert!(message.contains("user-limited"), "{message}");
        assert!(!message.contains("--namespace"), "{message}");
    }
}
