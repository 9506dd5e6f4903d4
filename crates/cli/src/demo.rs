//! The demo `switchboard serve` shows at `/` (unless `--no-demo`), the simulated price feed
//! it charts, and the whiteboard at `/board` (see `docs/demo.md`).
//!
//! The page is static files from `crates/cli/assets/`, built into the binary, added to the
//! server's routes; it shares the style sheet, chart and icon of the server's status page.
//! It talks to the server like any other client: through `/switchboard.js` and `/ws`. The
//! feed publishes through the server's [`Publisher`], as the HTTP API does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::{MethodFilter, on};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use switchboard_server::{Publisher, Server, ShutdownHandle, static_file};
use tokio::time::MissedTickBehavior;

/// `server` with the demo page at `/` and its feed running until the server shuts down.
pub(crate) fn add(server: Server) -> Server {
    spawn_ticker(server.publisher(), server.shutdown_handle());
    server.with_routes(routes())
}

/// The demo's pages and scripts, for `GET` and `HEAD`; other methods get the server's 405.
fn routes() -> Router {
    let mut router = Router::new();
    for &(path, content_type, body) in &ASSETS {
        let page = on(MethodFilter::GET, move || async move { static_file(content_type, body) })
            .fallback(move |method: http::Method| async move {
                Server::method_not_allowed(&method, path, "GET, HEAD")
            });
        router = router.route(path, page);
    }
    router
}

/// Starts the simulated price feed: about [`UPDATES_PER_SECOND`] publications a second,
/// spread at random over [`INSTRUMENTS`], each on `ticker:<SYMBOL>`, until a shutdown is
/// requested. Published through the broker, so subscribers on every node see it, and the
/// namespace's history lets a page fill its chart and recover after a cut.
fn spawn_ticker(publisher: Publisher, shutdown: ShutdownHandle) {
    if !publisher.has_namespace(TICKER_NAMESPACE) {
        tracing::info!("no `ticker` namespace configured: the demo's price feed is off");
        return;
    }
    tokio::spawn(async move {
        let mut market = Market::new(StdRng::from_os_rng());
        let mut every = tokio::time::interval(Duration::from_secs(1) / UPDATES_PER_SECOND);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.requested() => break,
                _ = every.tick() => {}
            }
            let (symbol, data) = market.step(unix_millis());
            let channel = format!("{TICKER_NAMESPACE}:{symbol}");
            if let Err(e) = publisher.publish(&channel, data).await {
                // The broker is down (Redis): the feed resumes when it is back.
                tracing::debug!(channel, error = %e.message, "demo ticker publish failed");
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

/// The namespaces the demo uses: its whiteboard's strokes and cursors (`board:<name>` and
/// `cursor:<name>`, in `assets/board.js`), its chat's rooms (`chat:<room>`, in
/// `assets/chat.js`) and its feed's instruments.
pub(crate) const NAMESPACES: [&str; 4] = ["board", "chat", "cursor", TICKER_NAMESPACE];

/// Standard deviation of one price move, relative to the price: with 4 moves a second per
/// instrument, about 1.5 % a minute, enough to see the chart move.
const VOLATILITY: f64 = 0.001;

/// Share of the distance to the opening price recovered at each move, so that prices wander
/// around their open instead of drifting away over a long-running server.
const REVERSION: f64 = 0.002;

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

fn cents(price: f64) -> f64 {
    (price * 100.0).round() / 100.0
}

fn unix_millis() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// The demo's files: path, content type, content.
static ASSETS: [(&str, &str, &[u8]); 7] = [
    ("/", "text/html; charset=utf-8", include_bytes!("../assets/index.html")),
    ("/board", "text/html; charset=utf-8", include_bytes!("../assets/board.html")),
    ("/assets/demo.js", "text/javascript; charset=utf-8", include_bytes!("../assets/demo.js")),
    ("/assets/banner.js", "text/javascript; charset=utf-8", include_bytes!("../assets/banner.js")),
    ("/assets/board.js", "text/javascript; charset=utf-8", include_bytes!("../assets/board.js")),
    ("/assets/chat.js", "text/javascript; charset=utf-8", include_bytes!("../assets/chat.js")),
    ("/assets/ticker.js", "text/javascript; charset=utf-8", include_bytes!("../assets/ticker.js")),
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
}
