//! The route table: every path the server answers, the methods each takes, and the one 404
//! and one 405 for the rest.
//!
//! | Path | Methods | Handler |
//! |---|---|---|
//! | `/ws`, `/echo` | any (the handshake refuses all but GET, counted) | [`http::upgrade`] |
//! | `/sse`, `/poll`, `/session` | see [`fallback`] (405 for the rest) | [`fallback`] |
//! | `/healthz`, `/readyz`, `/metrics`, `/switchboard.js` | GET, HEAD | here |
//! | `/status`, `/status.json`, `/assets/…` of the status page | GET, HEAD | [`status`] |
//! | `/api`, `/api/…` | any (the API checks its key before its paths) | [`api::handle`] |
//!
//! The upgrade routes take any method so that a refused handshake is refused, counted and
//! limited the same way whatever its method: the checks at the door run in their order
//! before the codec refuses a method other than GET.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use http::{HeaderValue, StatusCode, header};

use crate::http::{WsRoute, upgrade};
use crate::refusal::{not_found, read_only};
use crate::state::Shared;
use crate::status::json_text;
use crate::{admin, api, fallback, status};

/// The server's routes, with `shared` as their state.
pub(crate) fn router(shared: &Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route("/healthz", read_only(health))
        .route("/readyz", read_only(ready))
        .route("/metrics", read_only(metrics))
        .route("/switchboard.js", read_only(js_client))
        .route("/status.json", read_only(status::json))
        .route(
            "/ws",
            any(|State(shared), req| async move { upgrade(req, &shared, WsRoute::Hub).await }),
        )
        .route("/sse", any(|State(shared), req| fallback::sse(req, shared)))
        .route("/poll", any(|State(shared), req| fallback::poll(req, shared)))
        .route("/session", any(|State(shared), req| fallback::session(req, shared)));
    if shared.config.echo {
        let echo = |State(shared), req| async move { upgrade(req, &shared, WsRoute::Echo).await };
        router = router.route("/echo", any(echo));
    }
    for asset in &status::ASSETS {
        router = router.route(asset.path, read_only(move || async move { asset.response() }));
    }
    let api = api::router(shared);
    for path in ["/api", "/api/", "/api/{*rest}"] {
        let api = api.clone();
        router = router.route(
            path,
            any(move |State(shared): State<Arc<Shared>>, req: Request| async move {
                api::handle(req, &shared, api).await
            }),
        );
    }
    router = router.merge(admin::router(&api));
    router.fallback(not_found).with_state(Arc::clone(shared))
}

/// `GET /healthz`: the process is alive.
async fn health() -> Response {
    json_text(StatusCode::OK, "{\"status\":\"ok\"}\n".to_owned())
}

/// `GET /readyz`: whether a load balancer should send this node new connections. 200
/// `{"status":"ready"}` while the broker reaches its backing store and the server is not
/// shutting down; otherwise 503 `{"status":"unready","reason":…}` with `broker unreachable`
/// or `draining`. `/healthz` stays "the process is alive": a node that lost Redis is not
/// restarted, it waits for Redis with its connections open.
async fn ready(State(shared): State<Arc<Shared>>) -> Response {
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
    let mut resp = json_text(status, body);
    // A probe must see the state now, never a cached answer.
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /switchboard.js`: the browser client (`clients/js`), so pages can import it from the
/// server they connect to. A public static script: any origin may load it as a module
/// (module scripts are fetched with CORS).
async fn js_client() -> Response {
    let mut resp = Response::new(Body::from(JS_CLIENT));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

/// `GET /metrics`: the Prometheus exposition.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut resp = Response::new(Body::from(shared.metrics.render()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// The browser client: `clients/js/switchboard.js`, the npm package's module, through the
/// `switchboard-js` crate that wraps it.
const JS_CLIENT: &str = switchboard_js::SOURCE;
