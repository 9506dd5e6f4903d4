//! Protocol tests in memory: a [`TestNode`] (a node on the in-memory broker, no socket) and
//! its clients, [`ProtocolClient`]s over a [`MemoryLink`] that hands each command straight to
//! a [`Session`] and reads its [`Outbox`]. Exact and fast; with tokio's paused clock, time
//! moves only when the test moves it.

#![allow(clippy::missing_panics_doc)]

use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::{Format, codes};
use switchboard_server::node::{Identity, Kick, Node, Outbox, Payload, Queued, Session};
use switchboard_server::{Config, MemoryBroker};
use tokio::time::Instant;

use crate::protocol::{Link, Outgoing, ProtocolClient, Received};

/// A node on its own in-memory broker, configured as a server would be with `config`.
pub struct TestNode {
    /// The node, for calls a transport or the HTTP API would make.
    pub node: Arc<Node>,
    /// Its broker, for publishing as the application's backend would.
    pub broker: Arc<MemoryBroker>,
}

impl TestNode {
    /// A node with `config`'s hub, authentication and rate settings.
    pub fn new(config: &Config) -> Self {
        let broker = Arc::new(MemoryBroker::new());
        let node = Arc::new(Node::new(Arc::clone(&broker) as _, config));
        Self { node, broker }
    }

    /// A node like [`new`](Self::new)'s whose broker reads tokio's clock: with the clock
    /// paused, history and idle streams expire only when the test advances time.
    pub fn with_tokio_clock(config: &Config) -> Self {
        let clock = Arc::new(|| Instant::now().into_std());
        let broker = Arc::new(MemoryBroker::with_clock(clock));
        let node = Arc::new(Node::new(Arc::clone(&broker) as _, config));
        Self { node, broker }
    }

    /// An anonymous JSON client.
    pub fn client(&self) -> ProtocolClient<MemoryLink> {
        self.client_as(Identity::anonymous(), Format::Json)
    }

    /// An anonymous MessagePack client.
    pub fn client_msgpack(&self) -> ProtocolClient<MemoryLink> {
        self.client_as(Identity::anonymous(), Format::Msgpack)
    }

    /// A JSON client that brought `token` to the door (which let it in).
    pub fn client_with_token(&self, token: &str) -> ProtocolClient<MemoryLink> {
        let identity = self.node.authenticate(token).expect("a token the door accepts");
        self.client_as(identity, Format::Json)
    }

    /// A client with `identity`, speaking `format`.
    pub fn client_as(&self, identity: Identity, format: Format) -> ProtocolClient<MemoryLink> {
        let link = MemoryLink::open(&self.node, identity, format);
        ProtocolClient::new(link, format)
    }
}

/// A session in memory, as a transport carries it: commands in, the outbox drained, the
/// deadline fired when the test says, closed once.
pub struct MemoryLink {
    session: Option<Session>,
    outbox: Arc<Outbox>,
    /// What the session said to close with, once it did.
    kicked: Option<Kick>,
}

impl MemoryLink {
    /// A session on `node` for a client with `identity`, speaking `format`, from no address.
    pub fn open(node: &Arc<Node>, identity: Identity, format: Format) -> Self {
        let session = Session::new(node, identity, format, None, Instant::now());
        let outbox = Arc::clone(session.outbox());
        Self { session: Some(session), outbox, kicked: None }
    }

    /// The session, until it is closed.
    pub fn session(&mut self) -> &mut Session {
        self.session.as_mut().expect("an open session")
    }

    /// The client's id.
    pub fn id(&self) -> String {
        self.session.as_ref().expect("an open session").id().to_string()
    }

    /// Fires the session's deadline if it is due now, as a transport's timer would.
    pub fn fire_deadline(&mut self) {
        let session = self.session.as_mut().expect("an open session");
        if let Some(kick) = session.handle_timeout(Instant::now()) {
            self.kicked.get_or_insert(kick);
        }
    }

    /// When the session's deadline is, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.session.as_ref().and_then(Session::poll_deadline)
    }

    /// Ends the session as a transport does when its client is gone: subscriptions are
    /// left (others hear the leave) and the node forgets the client.
    pub async fn close(&mut self) {
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }

    fn received(&self, queued: Queued) -> Received {
        match queued {
            Queued::Payload(out) if self.outbox.format().is_binary() => Received::Binary(out.bytes),
            Queued::Payload(out) => Received::Text(out.bytes),
            Queued::Close(kick) => Received::Closed(kick.code, kick.reason),
        }
    }
}

impl Link for MemoryLink {
    async fn send_command(&mut self, command: Outgoing) {
        if self.kicked.is_some() {
            // Closing: a transport reads nothing more.
            return;
        }
        let payload = match &command {
            Outgoing::Text(bytes) => Payload::Text(bytes),
            Outgoing::Binary(bytes) => Payload::Binary(bytes),
        };
        let session = self.session.as_mut().expect("an open session");
        if let Some(kick) = session.handle(payload, Instant::now()).await {
            self.kicked = Some(kick);
        }
    }

    async fn next_message(&mut self, limit: Duration) -> Received {
        if let Some(queued) = self.outbox.try_recv() {
            return self.received(queued);
        }
        if let Some(kick) = self.kicked.take() {
            return Received::Closed(kick.code, kick.reason);
        }
        // A transport cuts a client whose outbox overflowed off with 4001, once it has taken
        // what was queued: so does this link.
        let overflowed = Received::Closed(codes::close::SLOW_CONSUMER, "slow consumer".to_owned());
        if self.outbox.is_overflowed() {
            return overflowed;
        }
        let next = async {
            tokio::select! {
                // What was queued before the overflow goes first.
                biased;
                queued = self.outbox.recv() => self.received(queued),
                () = self.outbox.overflow().cancelled() => overflowed,
            }
        };
        match tokio::time::timeout(limit, next).await {
            Ok(received) => received,
            Err(_) => panic!("no message within {limit:?}"),
        }
    }
}
