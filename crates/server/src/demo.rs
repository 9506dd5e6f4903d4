//! The demo app at `/`, the status page at `/status`, and the simulated price feed the demo
//! shows (see `docs/demo.md`).
//!
//! The pages are static files from `crates/server/assets/`, built into the binary: no build
//! step, nothing to deploy next to it. They talk to the server like any other client: the
//! demo through `/switchboard.js` and `/ws`, the status page through `/status.json`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use switchboard_broker::StreamOptions;
use tokio::time::MissedTickBehavior;

use crate::Shared;
use crate::http::{Body, text};
use crate::metrics::resident_memory_bytes;

/// A file built into the binary.
#[derive(Debug)]
pub(crate) struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The file served at `path`: the demo page (`/`) only with [`Config::demo`] on; the status
/// page and the shared files always.
///
/// [`Config::demo`]: crate::Config::demo
pub(crate) fn asset(path: &str, demo: bool) -> Option<&'static Asset> {
    if path == "/" && !demo {
        return None;
    }
    ASSETS.iter().find(|asset| asset.path == path)
}

/// `GET` or `HEAD` of an asset. `no-cache`: browsers revalidate, so a new binary's pages are
/// used at once.
pub(crate) fn serve(req: &Request<Incoming>, asset: &Asset) -> Response<Body> {
    if let Some(refused) = refuse_method(req) {
        return refused;
    }
    let mut resp = Response::new(Body::from(asset.body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if asset.content_type.starts_with("text/html") {
        // The pages render what strangers type: scripts come from this server only.
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_POLICY));
    }
    resp
}

/// `GET /status.json`: the live counts of the status page, read from the same state as
/// `/metrics` (and as public as it): counts only, nothing about any client.
pub(crate) fn status(req: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    if let Some(refused) = refuse_method(req) {
        return refused;
    }
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
    let mut resp = Response::new(Body::from(body.to_string() + "\n"));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Starts the simulated price feed: about [`UPDATES_PER_SECOND`] publications a second,
/// spread at random over [`INSTRUMENTS`], each on `ticker:<SYMBOL>`, until the server shuts
/// down. Publishes through the broker like the HTTP API, so subscribers on every node see
/// it, and the namespace's history lets a page fill its chart and recover after a cut.
pub(crate) fn spawn_ticker(shared: &Shared) {
    let node = Arc::clone(&shared.node);
    let shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        let Some(ns) = node.namespace(TICKER_NAMESPACE) else {
            tracing::info!("no `ticker` namespace configured: the demo's price feed is off");
            return;
        };
        let options = StreamOptions::new(ns.history_size, ns.history_ttl);
        let mut market = Market::new(StdRng::from_os_rng());
        let mut every = tokio::time::interval(Duration::from_secs(1) / UPDATES_PER_SECOND);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            let (symbol, data) = market.step(unix_millis());
            let channel = format!("{TICKER_NAMESPACE}:{symbol}");
            if let Err(e) = node.broker.publish(&channel, data, None, &options).await {
                // The broker is down (Redis): the feed resumes when it is back.
                tracing::debug!(channel, error = %e, "demo ticker publish failed");
            }
        }
    });
}

/// Instruments of the simulated feed: symbol and opening price.
const INSTRUMENTS: [(&str, f64); 5] =
    [("ACME", 120.0), ("GLOBEX", 48.5), ("INITECH", 310.0), ("UMBRELLA", 72.25), ("HOOLI", 950.0)];

/// Prices published per second, over all instruments.
const UPDATES_PER_SECOND: u32 = 20;

/// The namespace of the feed's channels.
const TICKER_NAMESPACE: &str = "ticker";

/// Standard deviation of one price move, relative to the price: with 4 moves a second per
/// instrument, about 1.5 % a minute, enough to see the chart move.
const VOLATILITY: f64 = 0.001;

/// Share of the distance to the opening price recovered at each move, so that prices wander
/// around their open instead of drifting away over a long-running server.
const REVERSION: f64 = 0.002;

/// The demo pages' Content Security Policy: this server's scripts, styles and sockets only.
const PAGE_POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                           base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A random walk per instrument.
#[derive(Debug)]
struct Market<R> {
    rng: R,
    /// Opening and current price, by [`INSTRUMENTS`] index.
    prices: Vec<(f64, f64)>,
}

impl<R: Rng> Market<R> {
    fn new(rng: R) -> Self {
        Self { rng, prices: INSTRUMENTS.iter().map(|&(_, open)| (open, open)).collect() }
    }

    /// Moves one instrument, chosen at random; returns its symbol and the publication.
    fn step(&mut self, now_ms: u64) -> (&'static str, Value) {
        let index = self.rng.random_range(0..INSTRUMENTS.len());
        // The sum of three uniform draws on [-1, 1] has variance 1 and is close enough to a
        // normal distribution for a chart.
        let shock: f64 = (0..3).map(|_| self.rng.random_range(-1.0..=1.0)).sum();
        let (open, price) = &mut self.prices[index];
        let reversion = REVERSION * (*open - *price) / *open;
        *price = (*price * (1.0 + VOLATILITY * shock + reversion)).max(*open / 100.0);
        let symbol = INSTRUMENTS[index].0;
        let data = json!({"symbol": symbol, "price": cents(*price), "open": *open, "time": now_ms});
        (symbol, data)
    }
}

/// Answers anything but `GET` and `HEAD` with 405.
fn refuse_method(req: &Request<Incoming>) -> Option<Response<Body>> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return None;
    }
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(resp)
}

fn cents(price: f64) -> f64 {
    (price * 100.0).round() / 100.0
}

fn unix_millis() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

macro_rules! assets {
    ($(($path:literal, $file:literal, $content_type:literal)),* $(,)?) => {
        [$(Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../assets/", $file)),
        }),*]
    };
}

/// Every file of the demo and status pages, by the path it is served at.
static ASSETS: [Asset; 9] = assets![
    ("/", "index.html", "text/html; charset=utf-8"),
    ("/status", "status.html", "text/html; charset=utf-8"),
    ("/assets/style.css", "style.css", "text/css; charset=utf-8"),
    ("/assets/demo.js", "demo.js", "text/javascript; charset=utf-8"),
    ("/assets/chat.js", "chat.js", "text/javascript; charset=utf-8"),
    ("/assets/ticker.js", "ticker.js", "text/javascript; charset=utf-8"),
    ("/assets/chart.js", "chart.js", "text/javascript; charset=utf-8"),
    ("/assets/status.js", "status.js", "text/javascript; charset=utf-8"),
    ("/assets/favicon.svg", "favicon.svg", "image/svg+xml"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_wander_around_their_open() {
        let mut market = Market::new(StdRng::seed_from_u64(7));
        let mut seen = [0usize; INSTRUMENTS.len()];
        for _ in 0..100_000 {
            let (symbol, data) = market.step(0);
            let index = INSTRUMENTS.iter().position(|(s, _)| *s == symbol).expect("a symbol");
            seen[index] += 1;
            let price = data["price"].as_f64().expect("a price");
            let open = INSTRUMENTS[index].1;
            assert_eq!(data["open"].as_f64(), Some(open));
            assert!(price > open / 2.0 && price < open * 2.0, "{symbol} at {price}");
            assert_eq!(cents(price), price);
        }
        assert!(seen.iter().all(|&n| n > 15_000), "{seen:?}");
    }

    #[test]
    fn the_demo_page_goes_with_the_demo_and_the_status_page_stays() {
        assert!(asset("/", true).is_some());
        assert!(asset("/", false).is_none());
        assert!(asset("/status", false).is_some());
        assert!(asset("/assets/chart.js", false).is_some());
        assert!(asset("/assets/", true).is_none());
        assert!(asset("/assets/../Cargo.toml", true).is_none());
    }
}
