//! The HTTP transports for clients that cannot keep a WebSocket: Server-Sent Events and
//! long-polling (`docs/transports.md`). Each carries a [`Session`] of the node, as the
//! WebSocket driver does; none knows the protocol.
//!
//! | Path | Method | What |
//! |---|---|---|
//! | `/sse` | GET | open a session and its event stream, or resume one (`Last-Event-ID`) |
//! | `/poll` | POST | open a long-polling session |
//! | `/poll` | GET | wait for the session's next messages (`?ack=`) |
//! | `/session` | POST | carry out commands |
//! | `/session` | DELETE | end the session |
//! | all three | OPTIONS | CORS preflight |
//!
//! Requests naming a session (`Switchboard-Session`) held by another node are forwarded to
//! it through the broker ([`relay`]).

mod driver;
pub(crate) mod relay;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt as _;
use switchboard_proto::{Format, Push, codes};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::auth::{check_origin, find_credential};
use crate::config::Transport;
use crate::http::{refuse_auth, refuse_limit, without_credentials};
use crate::node::Session;
use crate::refusal::Refusal;
use crate::state::{PeerAddr, Shared};
use driver::{Driver, Kind, Request as SessionRequest, STREAM_BUFFER};

/// The request header naming a client's session.
pub(crate) const SESSION_HEADER: HeaderName = HeaderName::from_static("switchboard-session");

/// Requests waiting for one session's task; past it the caller waits for room.
const REQUEST_QUEUE: usize = 8;

/// The HTTP sessions this node holds, by id, and the node's name in their ids.
#[derive(Debug)]
pub(crate) struct Sessions {
    node: String,
    table: Mutex<HashMap<Arc<str>, Entry>>,
}

#[derive(Clone, Debug)]
struct Entry {
    requests: mpsc::Sender<SessionRequest>,
}

impl Sessions {
    /// No sessions, under a new random node name.
    pub(crate) fn new() -> Self {
        Self { node: wire::node_name(), table: Mutex::default() }
    }

    /// This node's name, the first part of the ids of the sessions it holds.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    fn table(&self) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: &str) -> Option<Entry> {
        self.table().get(id).cloned()
    }
}

/// Where a request's session lives.
enum Held {
    /// On this node.
    Here(Entry),
    /// On the node of that name.
    Elsewhere(String),
    /// Nowhere: a malformed id, or one this node does not hold (any more).
    Nowhere,
}

fn find(shared: &Shared, id: &str) -> Held {
    match wire::node_of(id) {
        Some(node) if node == shared.sessions.node() => {
            shared.sessions.get(id).map_or(Held::Nowhere, Held::Here)
        }
        Some(node) => Held::Elsewhere(node.to_owned()),
        None => Held::Nowhere,
    }
}

/// `/sse`.
pub(crate) async fn sse(req: Request, shared: Arc<Shared>) -> Response {
    let (req, _body) = req.into_parts();
    let cors = match preflight_or_origin(&req, &shared, "GET, OPTIONS") {
        Ok(cors) => cors,
        Err(response) => return response,
    };
    let response = if req.method != Method::GET && req.method != Method::HEAD {
        method_not_allowed(&req, "GET, OPTIONS")
    } else if let Some(last) = &req.headers.get("last-event-id") {
        let last = last.to_str().ok().and_then(wire::parse_event_id);
        resume(last, &shared).await
    } else {
        open_sse(&req, &shared).await
    };
    cors.apply(response)
}

/// `/poll`.
pub(crate) async fn poll(req: Request, shared: Arc<Shared>) -> Response {
    let (req, _body) = req.into_parts();
    let cors = match preflight_or_origin(&req, &shared, "GET, POST, OPTIONS") {
        Ok(cors) => cors,
        Err(response) => return response,
    };
    let response = match req.method {
        Method::POST => open_poll(&req, &shared).await,
        Method::GET => wait_poll(&req, &shared).await,
        _ => method_not_allowed(&req, "GET, POST, OPTIONS"),
    };
    cors.apply(response)
}

/// `/session`.
pub(crate) async fn session(req: Request, shared: Arc<Shared>) -> Response {
    let (req, body) = req.into_parts();
    let cors = match preflight_or_origin(&req, &shared, "POST, DELETE, OPTIONS") {
        Ok(cors) => cors,
        Err(response) => return response,
    };
    let response = match req.method {
        Method::POST => post_commands(&req, body, &shared).await,
        Method::DELETE => delete(&req, &shared).await,
        _ => method_not_allowed(&req, "POST, DELETE, OPTIONS"),
    };
    cors.apply(response)
}

/// The CORS headers an answer gets: for a cross-origin page the allowlist admits, its
/// origin, with credentials.
struct Cors(Option<HeaderValue>);

impl Cors {
    fn apply(self, mut response: Response) -> Response {
        let h = response.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = self.0 {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        response
    }
}

/// Checks the request's `Origin` against the allowlist (403 otherwise, counted), and
/// answers a CORS preflight (`OPTIONS`) on the spot.
#[expect(clippy::result_large_err, reason = "the error is the answer, sent as it is")]
fn preflight_or_origin(
    req: &Parts,
    shared: &Shared,
    allow: &'static str,
) -> Result<Cors, Response> {
    let headers = &req.headers;
    let origins: Vec<&HeaderValue> = headers.get_all(header::ORIGIN).iter().collect();
    if origins.len() > 1 {
        return Err(refused(shared, "duplicate_origin", || {
            Refusal::new(StatusCode::FORBIDDEN, "origin_not_allowed", "more than one Origin header")
        }));
    }
    let origin = origins.first().and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    // Browsers send no `Origin` on a same-origin GET (an `EventSource`, a poll), but say
    // where the request comes from in `Sec-Fetch-Site`: the server's own origin, always
    // allowed, even where requests without `Origin` are not.
    let same_origin = origin.is_none()
        && headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"same-origin");
    if !same_origin && let Err(reason) = check_origin(origin, host, &shared.config.origins) {
        tracing::debug!(reason = %reason, "http transport request refused: origin");
        return Err(refused(shared, "origin_not_allowed", || {
            Refusal::new(StatusCode::FORBIDDEN, "origin_not_allowed", reason)
        }));
    }
    let cors = Cors(origins.first().map(|v| (*v).clone()));
    if req.method == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(allow));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "authorization, content-type, last-event-id, switchboard-session",
            ),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        h.insert(header::ALLOW, HeaderValue::from_static(allow));
        return Err(cors.apply(response));
    }
    Ok(cors)
}

/// A refused request to a session, counted by `reason`.
fn refused(shared: &Shared, reason: &'static str, refusal: impl FnOnce() -> Refusal) -> Response {
    count_refused(shared, reason);
    refusal().into_response()
}

/// Counts a request to a session refused for `reason`.
fn count_refused(shared: &Shared, reason: &'static str) {
    let label = crate::metrics::ReasonLabel { reason };
    shared.metrics.session_requests_refused.get_or_create(&label).inc();
}

fn method_not_allowed(req: &Parts, allow: &'static str) -> Response {
    Refusal::method_not_allowed(&req.method, req.uri.path(), allow).into_response()
}

/// The checks at the door of a new session, in the order of `/ws`: draining, the transport
/// turned off, the address's handshake rate and connection slots, credentials. (The origin
/// was checked before.) Returns the session, its slot and the client's address.
async fn admit(
    req: &Parts,
    shared: &Arc<Shared>,
    transport: Transport,
) -> Result<(Session, crate::limits::ConnectionGuard), Response> {
    if shared.shutdown.is_cancelled() {
        shared.metrics.handshake_failed("draining");
        let message = "server is shutting down: connect again (to another node)";
        return Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "draining", message)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            .into_response());
    }
    if !shared.config.transports.allows(transport) {
        shared.metrics.handshake_failed("transport_disabled");
        let message = format!("the {} transport is turned off on this server", transport.name());
        return Err(
            Refusal::new(StatusCode::NOT_FOUND, "transport_disabled", message).into_response()
        );
    }
    let ip = req.extensions.get::<PeerAddr>().map(|peer| peer.0.ip());
    let options = &shared.config.rate_limits;
    if let Some(ip) = ip
        && let Err(refusal) = shared.limits.check_handshake(ip, options, Instant::now())
    {
        return Err(refuse_limit(refusal, &shared.metrics));
    }
    let slot = shared.limits.acquire(ip, options).map_err(|r| refuse_limit(r, &shared.metrics))?;
    let auth = &shared.config.auth;
    let identity = match find_credential(&req.headers, req.uri.query(), auth) {
        Some(credential) => shared
            .auth
            .authenticate(credential)
            .map_err(|failure| refuse_auth(&failure, &shared.metrics))?,
        None => {
            let name = match transport {
                Transport::Sse => "sse",
                _ => "long_polling",
            };
            without_credentials(&req.headers, shared, name, auth.first_message).await?
        }
    };
    let session = Session::new(&shared.node, identity, Format::Json, ip, Instant::now());
    Ok((session, slot))
}

/// Starts the task of a new session and enters it in the table; the task removes it when
/// it ends.
fn start(
    shared: &Arc<Shared>,
    kind: Kind,
    session: Session,
    slot: crate::limits::ConnectionGuard,
    events: Option<mpsc::Sender<Bytes>>,
) -> Arc<str> {
    let id: Arc<str> = wire::session_id(shared.sessions.node()).into();
    let (requests, receiver) = mpsc::channel(REQUEST_QUEUE);
    shared.sessions.table().insert(Arc::clone(&id), Entry { requests });
    let driver = Driver::new(Arc::clone(shared), Arc::clone(&id), kind, session, slot, events);
    let task_shared = Arc::clone(shared);
    let task_id = Arc::clone(&id);
    shared.tracker.spawn(async move {
        Box::pin(driver.run(receiver)).await;
        task_shared.sessions.table().remove(&task_id);
    });
    id
}

/// `GET /sse` without `Last-Event-ID`: a new session and its stream.
async fn open_sse(req: &Parts, shared: &Arc<Shared>) -> Response {
    let (session, slot) = match admit(req, shared, Transport::Sse).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let (events, stream) = mpsc::channel(STREAM_BUFFER);
    let id = start(shared, Kind::Sse, session, slot, Some(events.clone()));
    let mut first = BytesMut::from(wire::STREAM_PREAMBLE);
    let ping = shared.config.ping_interval.map_or(0, |d| d.as_secs());
    let timeout = shared.config.transports.session_timeout.as_secs();
    wire::session_event(&mut first, &id, ping, timeout);
    // The channel is new and empty: the first write always fits.
    let _ = events.try_send(first.freeze());
    drop(events);
    event_stream(stream)
}

/// `GET /sse` with `Last-Event-ID`: the same session from the next message on, or the
/// 4002 `disconnect` push when it cannot be resumed here.
async fn resume(last: Option<(&str, u64)>, shared: &Arc<Shared>) -> Response {
    let (events, stream) = mpsc::channel(STREAM_BUFFER);
    if let Some((id, after)) = last {
        match find(shared, id) {
            Held::Here(entry) => {
                let (resumed, answer) = oneshot::channel();
                let request = SessionRequest::Resume { after, events: events.clone(), resumed };
                if entry.requests.send(request).await.is_ok() && answer.await == Ok(true) {
                    tracing::debug!(after, "event stream resumed");
                    return event_stream(stream);
                }
            }
            Held::Elsewhere(node) => {
                // The client starts over on this node: the old session serves no one.
                relay::forget(shared, &node, id);
            }
            Held::Nowhere => {}
        }
    }
    count_refused(shared, "session_not_found");
    let mut chunk = BytesMut::from(wire::STREAM_PREAMBLE);
    if let Some(push) = gone_push() {
        chunk.extend_from_slice(b"data: ");
        chunk.extend_from_slice(&push);
        chunk.extend_from_slice(b"\n\n");
    }
    let _ = events.try_send(chunk.freeze());
    drop(events);
    event_stream(stream)
}

/// The `disconnect` push for a session that does not exist (any more) where it was asked
/// for: 4002, reconnect and recover.
fn gone_push() -> Option<Bytes> {
    let code = codes::close::INSUFFICIENT_STATE;
    let push = Push::Disconnect {
        code,
        reason: "session expired or unknown: open a new one and recover".to_owned(),
        advice: switchboard_proto::advice(code),
    };
    Format::Json.encode(&push).ok()
}

/// A `text/event-stream` response carrying what arrives on `stream`.
fn event_stream(mut stream: mpsc::Receiver<Bytes>) -> Response {
    let body = futures_util::stream::poll_fn(move |cx| {
        stream.poll_recv(cx).map(|chunk| chunk.map(Ok::<_, std::convert::Infallible>))
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    response
}

/// `POST /poll`: a new long-polling session.
async fn open_poll(req: &Parts, shared: &Arc<Shared>) -> Response {
    let (session, slot) = match admit(req, shared, Transport::LongPoll).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let id = start(shared, Kind::LongPoll, session, slot, None);
    let body = serde_json::json!({
        "session": &*id,
        "transport": "longpoll",
        "poll_timeout": shared.config.transports.poll_timeout.as_secs(),
        "session_timeout": shared.config.transports.session_timeout.as_secs(),
    });
    json(StatusCode::OK, Bytes::from(body.to_string()))
}

fn json(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The session id a request names in its header, or the refusal.
#[expect(clippy::result_large_err, reason = "the error is the answer, sent as it is")]
fn session_id<'a>(headers: &'a HeaderMap, shared: &Shared) -> Result<&'a str, Response> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(|| {
        refused(shared, "session_header_missing", || {
            Refusal::bad_request("name the session in the Switchboard-Session header")
        })
    })
}

/// `GET /poll?ack=n`.
async fn wait_poll(req: &Parts, shared: &Arc<Shared>) -> Response {
    let id = match session_id(&req.headers, shared) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let ack = form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "ack")
        .map(|(_, v)| v.parse::<u64>());
    let ack = match ack {
        None => 0,
        Some(Ok(ack)) => ack,
        Some(Err(_)) => {
            return refused(shared, "bad_ack", || {
                Refusal::bad_request("ack must be the number of the last message received")
            });
        }
    };
    json(StatusCode::OK, poll_here_or_there(shared, id, ack).await)
}

/// The answer to a poll of session `id`, wherever it is held.
pub(crate) async fn poll_here_or_there(shared: &Arc<Shared>, id: &str, ack: u64) -> Bytes {
    let batch = match find(shared, id) {
        Held::Here(entry) => {
            let (answer, answered) = oneshot::channel();
            if entry.requests.send(SessionRequest::Poll { ack, answer }).await.is_ok() {
                answered.await.ok()
            } else {
                None
            }
        }
        Held::Elsewhere(node) => relay::poll(shared, &node, id, ack).await,
        Held::Nowhere => None,
    };
    match batch {
        Some(batch) if !batch.is_empty() => batch,
        _ => {
            count_refused(shared, "session_not_found");
            // Numbered past what the client has, so that it is not dropped as a repeat.
            wire::batch(ack.saturating_add(1), gone_push().as_ref())
        }
    }
}

/// `POST /session`.
async fn post_commands(req: &Parts, body: Body, shared: &Arc<Shared>) -> Response {
    let id = match session_id(&req.headers, shared) {
        Ok(id) => id.to_owned(),
        Err(response) => return response,
    };
    let limit = shared.node.options.max_message_size;
    let body = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return refused(shared, "body_too_large", || {
                Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "message_too_large",
                    format!("a command body holds at most {limit} bytes"),
                )
            });
        }
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let status = commands_here_or_there(shared, &id, body).await;
    if status == StatusCode::NOT_FOUND {
        return refused(shared, "session_not_found", not_found);
    }
    status.into_response()
}

fn not_found() -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "session_not_found",
        "no such session (expired or ended): open a new one",
    )
}

/// Hands a command body to session `id`, wherever it is held: 204 once carried out, 404
/// when there is no such session, 503 when its node cannot be reached.
pub(crate) async fn commands_here_or_there(
    shared: &Arc<Shared>,
    id: &str,
    body: Bytes,
) -> StatusCode {
    match find(shared, id) {
        Held::Here(entry) => {
            let (done, finished) = oneshot::channel();
            let sent = entry.requests.send(SessionRequest::Commands { body, done }).await;
            if sent.is_ok() && finished.await == Ok(true) {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::NOT_FOUND
            }
        }
        Held::Elsewhere(node) => relay::commands(shared, &node, id, body).await,
        Held::Nowhere => StatusCode::NOT_FOUND,
    }
}

/// `DELETE /session`.
async fn delete(req: &Parts, shared: &Arc<Shared>) -> Response {
    let id = match session_id(&req.headers, shared) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let status = end_here_or_there(shared, id).await;
    if status == StatusCode::NOT_FOUND {
        return refused(shared, "session_not_found", not_found);
    }
    status.into_response()
}

/// Ends session `id`, wherever it is held: 204, or 404 when there is no such session.
pub(crate) async fn end_here_or_there(shared: &Arc<Shared>, id: &str) -> StatusCode {
    match find(shared, id) {
        Held::Here(entry) => {
            let (done, finished) = oneshot::channel();
            let sent = entry.requests.send(SessionRequest::End { done }).await;
            if sent.is_ok() && finished.await.is_ok() {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::NOT_FOUND
            }
        }
        Held::Elsewhere(node) => relay::end(shared, &node, id).await,
        Held::Nowhere => StatusCode::NOT_FOUND,
    }
}
