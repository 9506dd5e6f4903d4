//! The status page at `/status`, for operators (see `docs/demo.md`).
//!
//! Static files from `crates/server/assets/`, built into the binary: no build step, nothing
//! to deploy next to it. The page talks to the server like any other client, through
//! `/status.json`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::metrics::resident_memory_bytes;
use crate::state::Shared;

/// A file built into the binary, served at its path.
#[derive(Debug)]
pub(crate) struct Asset {
    pub(crate) path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

impl Asset {
    /// `GET` or `HEAD` of the file.
    pub(crate) fn response(&self) -> Response {
        static_file(self.content_type, self.body)
    }
}

/// A file built into a program, with the headers the server's own pages get: `no-cache`
/// (browsers revalidate, so a new binary's pages are used at once), `nosniff`, and for
/// HTML a Content Security Policy that lets a page load scripts, styles and sockets from
/// this server only (the pages render what strangers type).
pub fn static_file(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if content_type.starts_with("text/html") {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_POLICY));
    }
    resp
}

/// `GET /status.json`: the live counts of the status page, read from the same state as
/// `/metrics` (and as public as it): counts only, nothing about any client.
pub(crate) async fn json(State(shared): State<Arc<Shared>>) -> Response {
    let node = &shared.node;
    let body = json!({
        "connections": node.connection_count(),
        "channels": node.hub.channel_count(),
        "subscriptions": node.hub.subscription_count(),
        "messages_received": shared.metrics.messages_in.get(),
        "publications": shared.metrics.publications.get(),
        "memory_bytes": resident_memory_bytes(),
        "uptime_seconds": shared.started.elapsed().as_secs(),
    });
    let mut resp = json_text(StatusCode::OK, body.to_string() + "\n");
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A JSON answer already encoded.
pub(crate) fn json_text(status: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The pages' Content Security Policy: this server's scripts, styles and sockets only.
const PAGE_POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                           base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

macro_rules! assets {
    ($(($path:literal, $file:literal, $content_type:literal)),* $(,)?) => {
        [$(Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../assets/", $file)),
        }),*]
    };
}

/// Every file of the status page, and the admin page's script and style sheet, by the path
/// it is served at. The admin page itself is served at `/admin` only when it is enabled;
/// its script and style hold nothing secret. The style sheet, chart and icon are shared
/// with pages the embedding program adds (the demo).
pub(crate) static ASSETS: [Asset; 7] = assets![
    ("/status", "status.html", "text/html; charset=utf-8"),
    ("/assets/style.css", "style.css", "text/css; charset=utf-8"),
    ("/assets/chart.js", "chart.js", "text/javascript; charset=utf-8"),
    ("/assets/status.js", "status.js", "text/javascript; charset=utf-8"),
    ("/assets/favicon.svg", "favicon.svg", "image/svg+xml"),
    ("/assets/admin.js", "admin.js", "text/javascript; charset=utf-8"),
    ("/assets/admin.css", "admin.css", "text/css; charset=utf-8"),
];
