//! Reading a server's `/metrics` in tests.

use std::net::SocketAddr;

use crate::client::WsClient;

/// The whole `GET /metrics` response (head and OpenMetrics text) of the server at `addr`.
///
/// # Panics
///
/// When the server does not answer, or answers anything but 200.
pub async fn scrape(addr: SocketAddr) -> String {
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let response = WsClient::expect_refusal(addr, request.as_bytes()).await.expect("a response");
    assert_eq!(response.status, 200, "{}", response.response);
    response.response
}

/// The value of one sample in metrics text, named with its labels, e.g.
/// `switchboard_rate_limited_total{reason="byte_rate"}`; `None` when the series is missing.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
