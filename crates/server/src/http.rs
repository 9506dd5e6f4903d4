//! HTTP/1.1 routes and the hand-over of upgraded connections to the WebSocket driver.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::Either;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use switchboard_codec::{Connection, HandshakeError, Limits, Role, ServerHandshake};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use crate::auth::{
    AuthFailure, Identity, bearer_protocol_token, check_origin, find_credential,
    looks_like_credential,
};
use crate::limits::Refusal;
use crate::metrics::{Metrics, Sampled, resident_memory_bytes};
use crate::node::Session;
use crate::ws::{App, ConnInfo, HubApp, drive};
use crate::{PeerAddr, Shared};
use crate::{api, demo};
use switchboard_proto::Format;

/// The WebSocket endpoints.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Endpoint {
    /// `/echo`: conformance and benchmarks.
    Echo,
    /// `/ws`: protocol v1 with the hub.
    Hub,
}

/// The body type of every response.
pub(crate) type Body = Full<Bytes>;

/// Routes one request.
pub(crate) async fn route(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let response = match req.uri().path() {
        "/healthz" => health(&req),
        "/readyz" => ready(&req, &shared),
        "/metrics" => metrics(&req, &shared),
        "/switchboard.js" => js_client(&req),
        path if api::is_api_path(path) => api::handle(req, &shared).await,
        "/ws" => upgrade(req, &shared, Endpoint::Hub),
        "/echo" if shared.config.echo => upgrade(req, &shared, Endpoint::Echo),
        "/status.json" => demo::status(&req, &shared),
        path => match demo::asset(path, shared.config.demo) {
            Some(asset) => demo::serve(&req, asset),
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    };
    Ok(response)
}

fn health(req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let mut resp = Response::new(Body::from("{\"status\":\"ok\"}\n"));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `GET /readyz`: whether a load balancer should send this node new connections. 200
/// `{"status":"ready"}` while the broker reaches its backing store and the server is not
/// shutting down; otherwise 503 `{"status":"unready","reason":…}` with `broker unreachable`
/// or `draining`. `/healthz` stays "the process is alive": a node that lost Redis is not
/// restarted, it waits for Redis with its connections open.
fn ready(req: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let unready = if shared.shutdown.is_cancelled() {
        Some("draining")
    } else if !shared.node.broker.is_ready() {
        Some("broker unreachable")
    } else {
        None
    };
    let (status, body) = match unready {
        None => (StatusCode::OK, "{\"status\":\"ready\"}\n".to_owned()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unready", "reason": reason}).to_string() + "\n",
        ),
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // A probe must see the state now, never a cached answer.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /switchboard.js`: the browser client (`clients/js`), so pages can import it from the
/// server they connect to. A public static script: any origin may load it as a module
/// (module scripts are fetched with CORS).
fn js_client(req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let mut resp = Response::new(Body::from(JS_CLIENT));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

/// `GET /metrics`: the Prometheus exposition.
fn metrics(req: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let node = &shared.node;
    let limited = Sampled {
        name: "rate_limited",
        help: "Requests and commands refused by a limit, by reason",
        counter: true,
        samples: crate::limits::Reason::ALL
            .iter()
            .map(|r| (Some(("reason", r.as_str())), shared.limits.rejections(*r)))
            .collect(),
    };
    let mut extra = vec![
        Sampled::gauge(
            "channels",
            "Channels with subscribers on this node",
            count(node.hub.channel_count()),
        ),
        Sampled::gauge(
            "subscriptions",
            "Subscriptions on this node",
            count(node.hub.subscription_count()),
        ),
        Sampled::gauge("hub_connections", "Connections on /ws", count(node.connection_count())),
        Sampled::gauge(
            "websocket_slots",
            "WebSocket connections counted by the connection limits",
            count(shared.limits.connections()),
        ),
        Sampled::gauge(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            resident_memory_bytes(),
        ),
        Sampled {
            name: "deliveries",
            help: "Publications queued to subscribers on this node, one per subscriber",
            counter: true,
            samples: vec![(None, node.deliveries())],
        },
        limited,
    ];
    extra.extend(crate::metrics::broker_usage(node.broker.usage()));
    let mut resp = Response::new(Body::from(shared.metrics.render(&extra)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Validates the upgrade with the codec, answers 101 and spawns the connection driver, or
/// answers with the refusal's status before any upgrade.
fn upgrade(mut req: Request<Incoming>, shared: &Arc<Shared>, endpoint: Endpoint) -> Response<Body> {
    // A draining node takes no new connections; the listener is closed, but keep-alive
    // connections opened before may still ask.
    if shared.shutdown.is_cancelled() {
        shared.metrics.handshake_failed("draining");
        let mut resp = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "server is shutting down: connect again (to another node)",
        );
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    // Limits first: the cheapest refusals, before any parsing or credential check.
    let peer = req.extensions().get::<PeerAddr>().map(|peer| peer.0);
    let ip = peer.map(|peer| peer.ip());
    let options = &shared.config.rate_limits;
    if endpoint == Endpoint::Hub
        && let Some(ip) = ip
        && let Err(refusal) = shared.limits.check_handshake(ip, options, Instant::now())
    {
        return refuse_limit(refusal, &shared.metrics);
    }
    // Held by the connection task from here on: the slot is given back however it ends.
    let slot = match shared.limits.acquire(ip, options) {
        Ok(slot) => slot,
        Err(refusal) => return refuse_limit(refusal, &shared.metrics),
    };
    if let Some(refusal) = refuse_head(req.headers(), &shared.metrics) {
        return refusal;
    }
    let http11 = req.version() >= Version::HTTP_11;
    let headers = req.headers().iter().map(|(name, value)| (name.as_str(), value.as_bytes()));
    let handshake = match ServerHandshake::from_parts(req.method().as_str(), http11, headers) {
        Ok(hs) => hs,
        Err(e) => return refuse(&e, &shared.metrics),
    };
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok());
    if let Err(reason) = check_origin(handshake.origin.as_deref(), host, &shared.config.origins) {
        tracing::debug!(reason = %reason, "handshake refused: origin");
        shared.metrics.handshake_failed("origin_not_allowed");
        return json_error(StatusCode::FORBIDDEN, "origin_not_allowed", &reason);
    }
    // Bearer entries carry credentials, not a choice of protocol: never chosen or echoed.
    let offered: Vec<String> = handshake
        .protocols
        .iter()
        .filter(|p| bearer_protocol_token(p).is_none())
        .cloned()
        .collect();
    let format = match endpoint {
        Endpoint::Echo => None,
        Endpoint::Hub => match handshake.select_protocol(&Format::SUBPROTOCOLS) {
            Some(name) => Format::from_subprotocol(name),
            // RFC 6455 §4.2.2: a client offering subprotocols expects one of them chosen.
            None if !offered.is_empty() => {
                shared.metrics.handshake_failed("unsupported_subprotocol");
                return refuse_protocols(&offered);
            }
            None => Some(Format::Json),
        },
    };
    let auth = &shared.config.auth;
    // First-message mode (on the hub) defers the requirement to the `connect` command.
    let deferred = endpoint == Endpoint::Hub && auth.first_message;
    let identity = match find_credential(req.headers(), req.uri().query(), auth) {
        Some(credential) => match shared.auth.authenticate(credential) {
            Ok(identity) => identity,
            Err(failure) => return refuse_auth(&failure, &shared.metrics),
        },
        None if auth.required && !deferred => {
            return refuse_auth(&AuthFailure::required(), &shared.metrics);
        }
        None => Identity::anonymous(),
    };
    let offered_format = format.filter(|_| !offered.is_empty());
    let info = ConnInfo { peer, subprotocol: offered_format.map(Format::subprotocol) };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_shared = Arc::clone(shared);
    // Boxed while the upgrade completes: a task's future keeps room for whatever it held
    // across an await, for the whole connection.
    let identity = Box::new(identity);
    shared.tracker.spawn(async move {
        let _slot = slot;
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        // Built in a block that ends before the await: what the driver took over must not
        // keep its own room in the task next to the driver's.
        let driving = {
            let (conn, app) = connection_app(&task_shared, format, identity, ip);
            drive_upgraded(upgraded, conn, app, info, &task_shared)
        };
        driving.await;
    });
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&handshake.accept_key()) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(format) = offered_format {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(format.subprotocol()));
    }
    resp
}

/// Refuses upgrade requests whose headers could be read two ways. Two `Origin` headers
/// leave it to each reader which one counts (RFC 6454 §7.3 allows one): 403, whichever
/// they name. A body (RFC 9112 §6.3: announced by `Content-Length` other than 0 or by
/// `Transfer-Encoding`) has no meaning on an upgrade and would be dropped unread, or read
/// as frames by anything in between: 400.
fn refuse_head(headers: &http::HeaderMap, metrics: &Metrics) -> Option<Response<Body>> {
    if headers.get_all(header::ORIGIN).iter().count() > 1 {
        tracing::debug!("handshake refused: duplicate Origin");
        metrics.handshake_failed("duplicate_origin");
        let message = "more than one Origin header";
        return Some(json_error(StatusCode::FORBIDDEN, "origin_not_allowed", message));
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let empty = lengths.all(|v| v.as_bytes() == b"0");
    if !empty || headers.contains_key(header::TRANSFER_ENCODING) {
        tracing::debug!("handshake refused: request body");
        metrics.handshake_failed("body_not_allowed");
        let message = "an upgrade request has no body: send it without Content-Length or \
                       Transfer-Encoding";
        return Some(json_error(StatusCode::BAD_REQUEST, "body_not_allowed", message));
    }
    None
}

/// A JSON refusal before the upgrade: `{"error": {"code": …, "message": …}}`.
fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string() + "\n";
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The codec connection and the application of an upgraded connection: the echo, or a hub
/// session registered with the node.
fn connection_app(
    shared: &Arc<Shared>,
    format: Option<Format>,
    identity: Box<Identity>,
    ip: Option<std::net::IpAddr>,
) -> (Connection, App) {
    let config = &shared.config;
    let Some(format) = format else {
        return (Connection::new(Role::Server, config.limits.clone()), App::Echo);
    };
    let node = &shared.node;
    let limits = Limits::with_max_message_size(node.options.max_message_size);
    let session = Session::new(node, *identity, format, ip, tokio::time::Instant::now());
    let app = App::Hub(Box::new(HubApp::new(session)));
    (Connection::new(Role::Server, limits), app)
}

/// The driver of an upgraded connection, on the raw socket taken back from hyper. Plain TCP,
/// the common case, is driven in place; TLS and anything else in a box, so that their
/// drivers do not add their size to every connection's task.
fn drive_upgraded<'a>(
    upgraded: hyper::upgrade::Upgraded,
    conn: Connection,
    app: App,
    info: ConnInfo,
    shared: &'a Shared,
) -> impl Future<Output = ()> + Send + 'a {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let io = parts.io.into_inner();
            return Either::Left(drive(io, parts.read_buf, conn, app, info, shared));
        }
        Err(upgraded) => upgraded,
    };
    let boxed: Pin<Box<dyn Future<Output = ()> + Send + 'a>> =
        match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
            Ok(parts) => {
                let io = parts.io.into_inner();
                Box::pin(drive(io, parts.read_buf, conn, app, info, shared))
            }
            Err(upgraded) => {
                Box::pin(drive(TokioIo::new(upgraded), Bytes::new(), conn, app, info, shared))
            }
        };
    Either::Right(boxed)
}

/// The answer to an upgrade refused by a connection or handshake limit (counted and logged
/// by the limiter): 503 or 429 with `Retry-After` (RFC 9110 §10.2.3, RFC 6585 §4).
fn refuse_limit(refusal: Refusal, metrics: &Metrics) -> Response<Body> {
    metrics.handshake_failed(refusal.code());
    let mut resp = json_error(refusal.status(), refusal.code(), refusal.message());
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(refusal.retry_after_secs()));
    resp
}

/// The answer to refused credentials: 401 with a challenge, or 503 when tickets cannot be
/// checked.
fn refuse_auth(failure: &AuthFailure, metrics: &Metrics) -> Response<Body> {
    metrics.handshake_failed(failure.code);
    tracing::debug!(code = failure.code, "handshake refused: credentials");
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut resp = json_error(status, failure.code, failure.message);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// The answer to a client offering only subprotocols this server does not speak. Entries
/// that may hold a secret are shown as `<redacted>`, in the body and in the log alike.
fn refuse_protocols(offered: &[String]) -> Response<Body> {
    let shown = offered
        .iter()
        .map(|p| if looks_like_credential(p) { "<redacted>" } else { p.as_str() })
        .collect::<Vec<_>>()
        .join(", ");
    tracing::debug!(offered = %shown, "handshake refused: no supported subprotocol");
    let body = format!(
        "unsupported subprotocol: offered {shown}; supported are {}\n",
        Format::SUBPROTOCOLS.join(", ")
    );
    let mut resp = text(StatusCode::BAD_REQUEST, &body);
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The HTTP answer to a refused handshake.
fn refuse(err: &HandshakeError, metrics: &Metrics) -> Response<Body> {
    metrics.handshake_failed(err.as_label());
    tracing::debug!(reason = err.as_label(), status = err.status(), "handshake refused");
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = text(status, &format!("{err}\n"));
    for (name, value) in err.headers() {
        resp.headers_mut().insert(*name, HeaderValue::from_static(value));
    }
    // A client that failed to upgrade has nothing more to say on this connection.
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

pub(crate) fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_owned()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The browser client (`clients/js`), built into the binary.
const JS_CLIENT: &str = include_str!("../../../clients/js/switchboard.js");
