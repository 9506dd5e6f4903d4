//! Requests for sessions held by another node, forwarded through the broker.
//!
//! Behind a load balancer without sticky sessions, a client's `POST /session`, `GET /poll`
//! and `DELETE /session` can reach any node. The node named in the session id holds the
//! session; another node that receives such a request sends it there as a node message
//! ([`Broker::send_to_node`](switchboard_broker::Broker::send_to_node)), waits for the
//! answer and relays it: one broker message each way.
//!
//! Node messages are at most once. A request whose answer does not come in time is answered
//! as the holder being unreachable (503 for commands, an empty batch for a poll); the client
//! retries, and nothing is lost: a poll's messages stay with the session until acknowledged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use switchboard_broker::BrokerError;
use tokio::sync::oneshot;

use crate::cluster::{self, Target};
use crate::node::Kick;
use crate::state::Shared;

/// How long a forwarded command body or end may take to be answered.
const COMMANDS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a node may take to confirm a disconnect.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long past the poll timeout a forwarded poll may take to be answered.
const POLL_MARGIN: Duration = Duration::from_secs(5);

/// The requests this node forwarded and waits for, by number.
#[derive(Debug, Default)]
pub(crate) struct Relay {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
}

/// What the holder of a session answered.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

/// A node message.
#[derive(Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Message {
    /// Carry out `body` on `session`; answer with the status.
    Commands { from: String, request: u64, session: String, body: String },
    /// Poll `session`; answer with the batch.
    Poll { from: String, request: u64, session: String, ack: u64 },
    /// End `session`; answer with the status, unless `request` is 0 (nobody waits).
    End { from: String, request: u64, session: String },
    /// Ask `target`'s connections on this node to close; answer with how many there were.
    Disconnect { from: String, request: u64, target: Target, code: u16, reason: String },
    /// The answer to request `request`.
    Answer { request: u64, status: u16, body: String },
}

impl Relay {
    fn waiting(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<Answer>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the message `make` builds (given this request's number) to `node` and waits
    /// up to `timeout` for its answer.
    async fn ask(
        &self,
        shared: &Shared,
        node: &str,
        timeout: Duration,
        make: impl FnOnce(u64) -> Message,
    ) -> Result<Answer, BrokerError> {
        let request = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(request, tx);
        let forget = Forget { relay: self, request };
        send(shared, node, &make(request)).await?;
        let answer = tokio::time::timeout(timeout, rx).await;
        drop(forget);
        match answer {
            Ok(Ok(answer)) => Ok(answer),
            _ => Err(BrokerError::Unavailable(format!("node {node} did not answer in time"))),
        }
    }
}

/// Forgets a request nobody waits for any more, answered or not.
struct Forget<'a> {
    relay: &'a Relay,
    request: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.relay.waiting().remove(&self.request);
    }
}

async fn send(shared: &Shared, node: &str, message: &Message) -> Result<(), BrokerError> {
    let bytes = serde_json::to_vec(message).map_err(|e| BrokerError::Internal(e.to_string()))?;
    shared.node.broker.send_to_node(node, Bytes::from(bytes)).await
}

/// Forwards a command body to the node holding the session.
pub(crate) async fn commands(
    shared: &Arc<Shared>,
    node: &str,
    id: &str,
    body: Bytes,
) -> StatusCode {
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return StatusCode::BAD_REQUEST;
    };
    let from = shared.sessions.node().to_owned();
    let session = id.to_owned();
    shared.metrics.session_requests_forwarded.inc();
    let asked = shared
        .relay
        .ask(shared, node, COMMANDS_TIMEOUT, |request| Message::Commands {
            from,
            request,
            session,
            body,
        })
        .await;
    status_of(asked)
}

/// Forwards a poll to the node holding the session: its batch, or `None` when the node or
/// the session is gone.
pub(crate) async fn poll(shared: &Arc<Shared>, node: &str, id: &str, ack: u64) -> Option<Bytes> {
    let from = shared.sessions.node().to_owned();
    let session = id.to_owned();
    let timeout = shared.config.transports.poll_timeout + POLL_MARGIN;
    shared.metrics.session_requests_forwarded.inc();
    let asked = shared
        .relay
        .ask(shared, node, timeout, |request| Message::Poll { from, request, session, ack })
        .await;
    match asked {
        Ok(answer) => Some(Bytes::from(answer.body)),
        Err(BrokerError::UnknownNode(_)) => None,
        // Not answered in time: an empty batch, and the client polls again.
        Err(e) => {
            tracing::debug!(error = %e, "forwarded poll unanswered");
            Some(super::wire::batch(ack.saturating_add(1), []))
        }
    }
}

/// Forwards the end of a session to the node holding it.
pub(crate) async fn end(shared: &Arc<Shared>, node: &str, id: &str) -> StatusCode {
    let from = shared.sessions.node().to_owned();
    let session = id.to_owned();
    shared.metrics.session_requests_forwarded.inc();
    let asked = shared
        .relay
        .ask(shared, node, COMMANDS_TIMEOUT, |request| Message::End { from, request, session })
        .await;
    status_of(asked)
}

/// Asks `node` to close `target`'s connections there with `kick`: how many it had.
pub(crate) async fn disconnect(
    shared: &Arc<Shared>,
    node: &str,
    target: &Target,
    kick: &Kick,
) -> Result<usize, BrokerError> {
    let from = shared.sessions.node().to_owned();
    let answer = shared
        .relay
        .ask(shared, node, DISCONNECT_TIMEOUT, |request| Message::Disconnect {
            from,
            request,
            target: target.clone(),
            code: kick.code,
            reason: kick.reason.clone(),
        })
        .await?;
    answer
        .body
        .parse()
        .map_err(|_| BrokerError::Internal(format!("node {node} answered {:?}", answer.body)))
}

/// Tells the node holding a session that its client has moved on, without waiting.
pub(crate) fn forget(shared: &Arc<Shared>, node: &str, id: &str) {
    let message = Message::End {
        from: shared.sessions.node().to_owned(),
        request: 0,
        session: id.to_owned(),
    };
    let shared = Arc::clone(shared);
    let node = node.to_owned();
    tokio::spawn(async move {
        if let Err(e) = send(&shared, &node, &message).await {
            tracing::debug!(error = %e, "could not tell a node to end a session");
        }
    });
}

fn status_of(asked: Result<Answer, BrokerError>) -> StatusCode {
    match asked {
        Ok(answer) => StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY),
        Err(BrokerError::UnknownNode(_)) => StatusCode::NOT_FOUND,
        Err(e) => {
            tracing::debug!(error = %e, "forwarded request unanswered");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Handles a node message: a request for a session this node holds (carried out in a task
/// of its own, then answered), or the answer to one this node forwarded.
pub(crate) fn receive(shared: &Weak<Shared>, bytes: &[u8]) {
    let Some(shared) = shared.upgrade() else { return };
    let message: Message = match serde_json::from_slice(bytes) {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(error = %e, "dropped an unreadable node message");
            return;
        }
    };
    if let Message::Answer { request, status, body } = message {
        if let Some(waiting) = shared.relay.waiting().remove(&request) {
            let _ = waiting.send(Answer { status, body });
        }
        return;
    }
    tokio::spawn(async move {
        let (from, request, status, body) = match message {
            Message::Commands { from, request, session, body } => {
                let status =
                    super::commands_here_or_there(&shared, &session, Bytes::from(body)).await;
                (from, request, status.as_u16(), String::new())
            }
            Message::Poll { from, request, session, ack } => {
                let batch = super::poll_here_or_there(&shared, &session, ack).await;
                let body = String::from_utf8(batch.to_vec()).unwrap_or_default();
                (from, request, StatusCode::OK.as_u16(), body)
            }
            Message::End { from, request, session } => {
                let status = super::end_here_or_there(&shared, &session).await;
                (from, request, status.as_u16(), String::new())
            }
            Message::Disconnect { from, request, target, code, reason } => {
                let count = cluster::disconnect_here(&shared, &target, &Kick { code, reason });
                (from, request, StatusCode::OK.as_u16(), count.to_string())
            }
            Message::Answer { .. } => return,
        };
        if request == 0 {
            return;
        }
        let answer = Message::Answer { request, status, body };
        if let Err(e) = send(&shared, &from, &answer).await {
            tracing::debug!(error = %e, node = %from, "could not answer a forwarded request");
        }
    });
}
