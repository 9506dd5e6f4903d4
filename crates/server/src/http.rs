//! The upgrade of `/ws` and `/echo`: the checks at the door, in order, then the hand-over of
//! the raw socket to the WebSocket driver.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use futures_util::future::Either;
use http::{HeaderValue, StatusCode, Version, header};
use hyper_util::rt::TokioIo;
use switchboard_codec::{
    Connection, DeflateConfig, DeflateParams, HandshakeError, Limits, Role, ServerHandshake,
};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use crate::auth::{
    AuthFailure, Identity, bearer_protocol_token, check_origin, find_credential,
    looks_like_credential,
};
use crate::config::Transport;
use crate::limits;
use crate::metrics::Metrics;
use crate::node::{Pushes, Session};
use crate::refusal::Refusal;
use crate::state::{PeerAddr, Shared};
use crate::write_timeout::WriteTimeout;
use crate::ws::{App, ConnInfo, HubApp, drive};
use switchboard_proto::Format;

/// The WebSocket endpoints.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum WsRoute {
    /// `/echo`: conformance and benchmarks.
    Echo,
    /// `/ws`: protocol v1 with the hub.
    Hub,
}

/// Validates the upgrade with the codec, answers 101 and spawns the connection driver, or
/// answers with the refusal's status before any upgrade.
pub(crate) async fn upgrade(mut req: Request, shared: &Arc<Shared>, endpoint: WsRoute) -> Response {
    // A draining node takes no new connections; the listener is closed, but keep-alive
    // connections opened before may still ask.
    if shared.shutdown.is_cancelled() {
        shared.metrics.handshake_failed("draining");
        let message = "server is shutting down: connect again (to another node)";
        return Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "draining", message)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            .closing()
            .into_response();
    }
    if endpoint == WsRoute::Hub && !shared.config.transports.allows(Transport::WebSocket) {
        shared.metrics.handshake_failed("transport_disabled");
        let message = "the websocket transport is turned off on this server: use /sse or /poll";
        return Refusal::new(StatusCode::NOT_FOUND, "transport_disabled", message)
            .closing()
            .into_response();
    }
    // Limits first: the cheapest refusals, before any parsing or credential check.
    let peer = req.extensions().get::<PeerAddr>().map(|peer| peer.0);
    let ip = peer.map(|peer| peer.ip());
    let options = &shared.config.rate_limits;
    if endpoint == WsRoute::Hub
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
        return refusal.into_response();
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
        return Refusal::new(StatusCode::FORBIDDEN, "origin_not_allowed", reason)
            .closing()
            .into_response();
    }
    // Bearer entries carry credentials, not a choice of protocol: never chosen or echoed.
    let offered: Vec<String> = handshake
        .protocols
        .iter()
        .filter(|p| bearer_protocol_token(p).is_none())
        .cloned()
        .collect();
    let format = match endpoint {
        WsRoute::Echo => None,
        WsRoute::Hub => match handshake.select_protocol(&Format::SUBPROTOCOLS) {
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
    let deferred = endpoint == WsRoute::Hub && auth.first_message;
    let identity = match find_credential(req.headers(), req.uri().query(), auth) {
        Some(credential) => match shared.auth.authenticate(credential) {
            Ok(identity) => identity,
            Err(failure) => return refuse_auth(&failure, &shared.metrics),
        },
        // Without credentials, the application's backend may know the client (a cookie).
        None if endpoint == WsRoute::Hub => {
            match without_credentials(req.headers(), shared, "websocket", deferred).await {
                Ok(identity) => identity,
                Err(resp) => return resp,
            }
        }
        None if auth.required && !deferred => {
            return refuse_auth(&AuthFailure::required(), &shared.metrics);
        }
        None => Identity::anonymous(),
    };
    // RFC 7692: permessage-deflate where this endpoint negotiates it and the client offers it
    // acceptably; otherwise the connection goes on without it.
    let compression = &shared.config.compression;
    let wanted = match endpoint {
        WsRoute::Echo => compression.echo,
        WsRoute::Hub => compression.ws,
    };
    let deflate = wanted.then(|| compression.deflate()).and_then(|config| {
        handshake.negotiate_deflate(&config).map(|params| Box::new((params, config)))
    });
    let extensions = deflate.as_ref().map(|d| d.0.to_response_value());
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
            let (conn, app) = connection_app(&task_shared, format, identity, ip, deflate);
            drive_upgraded(upgraded, conn, app, info, &task_shared)
        };
        driving.await;
    });
    let mut resp = Response::new(Body::empty());
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
    if let Some(value) = extensions.and_then(|v| HeaderValue::from_str(&v).ok()) {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
    }
    resp
}

/// Refuses upgrade requests whose headers could be read two ways. Two `Origin` headers
/// leave it to each reader which one counts (RFC 6454 §7.3 allows one): 403, whichever
/// they name. A body (RFC 9112 §6.3: announced by `Content-Length` other than 0 or by
/// `Transfer-Encoding`) has no meaning on an upgrade and would be dropped unread, or read
/// as frames by anything in between: 400.
fn refuse_head(headers: &http::HeaderMap, metrics: &Metrics) -> Option<Refusal> {
    if headers.get_all(header::ORIGIN).iter().count() > 1 {
        tracing::debug!("handshake refused: duplicate Origin");
        metrics.handshake_failed("duplicate_origin");
        let message = "more than one Origin header";
        return Some(Refusal::new(StatusCode::FORBIDDEN, "origin_not_allowed", message).closing());
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let empty = lengths.all(|v| v.as_bytes() == b"0");
    if !empty || headers.contains_key(header::TRANSFER_ENCODING) {
        tracing::debug!("handshake refused: request body");
        metrics.handshake_failed("body_not_allowed");
        let message = "an upgrade request has no body: send it without Content-Length or \
                       Transfer-Encoding";
        return Some(Refusal::new(StatusCode::BAD_REQUEST, "body_not_allowed", message).closing());
    }
    None
}

/// The codec connection and the application of an upgraded connection: the echo, or a hub
/// session registered with the node.
fn connection_app(
    shared: &Arc<Shared>,
    format: Option<Format>,
    identity: Box<Identity>,
    ip: Option<std::net::IpAddr>,
    deflate: Option<Box<(DeflateParams, DeflateConfig)>>,
) -> (Connection, App) {
    let config = &shared.config;
    // With permessage-deflate, pushes come with their hub delivery, whose compressed frame
    // is shared by every subscriber.
    let pushes = if deflate.is_some() { Pushes::WithDelivery } else { Pushes::Encoded };
    let connection = |limits| match deflate {
        Some(deflate) => {
            let (params, config) = *deflate;
            Connection::with_deflate(Role::Server, limits, params, &config)
        }
        None => Connection::new(Role::Server, limits),
    };
    let Some(format) = format else {
        return (connection(config.limits.clone()), App::Echo);
    };
    let node = &shared.node;
    let limits = Limits::with_max_message_size(node.options.max_message_size);
    let session =
        Session::with_pushes(node, *identity, format, ip, tokio::time::Instant::now(), pushes);
    let app = App::Hub(Box::new(HubApp::new(session)));
    (connection(limits), app)
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
    // The HTTP connection's write timeout goes: the WebSocket driver has its own.
    let upgraded = match upgraded.downcast::<TokioIo<WriteTimeout<TcpStream>>>() {
        Ok(parts) => {
            let io = parts.io.into_inner().into_inner();
            return Either::Left(drive(io, parts.read_buf, conn, app, info, shared));
        }
        Err(upgraded) => upgraded,
    };
    let boxed: Pin<Box<dyn Future<Output = ()> + Send + 'a>> =
        match upgraded.downcast::<TokioIo<WriteTimeout<TlsStream<TcpStream>>>>() {
            Ok(parts) => {
                let io = parts.io.into_inner().into_inner();
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
pub(crate) fn refuse_limit(refusal: limits::Refusal, metrics: &Metrics) -> Response {
    metrics.handshake_failed(refusal.code());
    Refusal::new(refusal.status(), refusal.code(), refusal.message())
        .with_header(header::RETRY_AFTER, HeaderValue::from(refusal.retry_after_secs()))
        .closing()
        .into_response()
}

/// Who a client that brought no credentials is: what the connect hook says when there is
/// one, else anonymous; refused where credentials are required (unless `deferred` to the
/// `connect` command) and nobody vouched for it.
pub(crate) async fn without_credentials(
    headers: &http::HeaderMap,
    shared: &Shared,
    transport: &'static str,
    deferred: bool,
) -> Result<Identity, Response> {
    let identity = match shared.node.hooks.connect(headers, transport).await {
        None => Identity::anonymous(),
        Some(Ok(identity)) => identity,
        Some(Err(refusal)) => {
            shared.metrics.handshake_failed("connect_hook");
            tracing::debug!(status = %refusal.status(), "handshake refused by the connect hook");
            return Err(refusal.closing().into_response());
        }
    };
    if !identity.is_authenticated() && shared.config.auth.required && !deferred {
        return Err(refuse_auth(&AuthFailure::required(), &shared.metrics));
    }
    Ok(identity)
}

/// The answer to refused credentials: 401 with a challenge, or 503 when tickets cannot be
/// checked.
pub(crate) fn refuse_auth(failure: &AuthFailure, metrics: &Metrics) -> Response {
    metrics.handshake_failed(failure.code);
    tracing::debug!(code = failure.code, "handshake refused: credentials");
    let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut refusal = Refusal::new(status, failure.code, failure.message).closing();
    if status == StatusCode::UNAUTHORIZED {
        refusal = refusal.with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    refusal.into_response()
}

/// The answer to a client offering only subprotocols this server does not speak. Entries
/// that may hold a secret are shown as `<redacted>`, in the body and in the log alike.
fn refuse_protocols(offered: &[String]) -> Response {
    let shown = offered
        .iter()
        .map(|p| if looks_like_credential(p) { "<redacted>" } else { p.as_str() })
        .collect::<Vec<_>>()
        .join(", ");
    tracing::debug!(offered = %shown, "handshake refused: no supported subprotocol");
    let message = format!(
        "unsupported subprotocol: offered {shown}; supported are {}",
        Format::SUBPROTOCOLS.join(", ")
    );
    Refusal::new(StatusCode::BAD_REQUEST, "unsupported_subprotocol", message)
        .closing()
        .into_response()
}

/// The HTTP answer to a refused handshake, with the code it is counted under.
fn refuse(err: &HandshakeError, metrics: &Metrics) -> Response {
    metrics.handshake_failed(err.as_label());
    tracing::debug!(reason = err.as_label(), status = err.status(), "handshake refused");
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut refusal = Refusal::new(status, err.as_label(), err.to_string());
    for (name, value) in err.headers() {
        if let Ok(name) = header::HeaderName::from_bytes(name.as_bytes()) {
            refusal = refusal.with_header(name, HeaderValue::from_static(value));
        }
    }
    // A client that failed to upgrade has nothing more to say on this connection.
    refusal.closing().into_response()
}
