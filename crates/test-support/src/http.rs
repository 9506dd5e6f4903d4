//! One HTTP/1.1 request per connection (`Connection: close`), read to the end; raw bytes
//! for requests a well-behaved client would not send; the checks every refusal's body
//! passes; and the links in the server's pages.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a request may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A whole response.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The status line and the header lines, without the blank line that ends them.
    pub head: String,
    /// Everything after the head.
    pub body: String,
}

impl Response {
    /// The value of header `name` (matched without regard to case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    ///
    /// When the body is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self}"))
    }

    /// Checks a refusal: status `status`, a JSON body that is exactly
    /// `{"error": {"code", "message", "temporary"}}` with code `code`; returns the inner
    /// object.
    ///
    /// # Panics
    ///
    /// When the response is not that refusal.
    pub fn refusal(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{self}");
        assert_eq!(self.header("content-type"), Some("application/json"), "{self}");
        let body = self.json();
        let error = body["error"].clone();
        assert_eq!(error["code"], code, "{self}");
        assert!(error["message"].is_string(), "{self}");
        assert!(error["temporary"].is_boolean(), "{self}");
        assert_eq!(body.as_object().map(serde_json::Map::len), Some(1), "{self}");
        assert_eq!(error.as_object().map(serde_json::Map::len), Some(3), "{self}");
        error
    }

    /// The head in lower case, each line ending in CRLF: for `contains` checks of whole
    /// header lines.
    pub fn lower_head(&self) -> String {
        self.head.to_ascii_lowercase() + "\r\n"
    }
}

/// Splits a whole response, as read, into its status, head and body.
///
/// # Panics
///
/// When `raw` is not an HTTP response with a head.
pub fn parse(raw: &str) -> Response {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    Response { status, head: head.to_owned(), body: body.to_owned() }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\r\n\r\n{}", self.head, self.body)
    }
}

/// Sends `method path` with `headers` (name, value) and `body` (with its `Content-Length`)
/// to `addr`, and reads the response until the server closes the connection.
///
/// # Panics
///
/// When the exchange fails or takes longer than [`LIMIT`], or the response is not HTTP.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    exchange(addr, request.as_bytes()).await
}

/// Writes `raw` (a request, well-formed or not) on a new connection and reads the response
/// until the server closes the connection.
///
/// # Panics
///
/// When the exchange fails or takes longer than [`LIMIT`], or the response is not HTTP.
pub async fn exchange(addr: SocketAddr, raw: &[u8]) -> Response {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(raw).await.expect("write the request");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read the response");
        response
    };
    let response = tokio::time::timeout(LIMIT, exchange).await.expect("a response in time");
    parse(&String::from_utf8(response).expect("a UTF-8 response"))
}

/// Header pairs from header lines, each `Name: value` and ending in CRLF: for tests that
/// build their headers as text.
pub fn header_lines(lines: &str) -> Vec<(&str, &str)> {
    lines
        .split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a `Name: value` header line");
            (name, value.trim())
        })
        .collect()
}

/// An upgrade request head for `path` with extra header lines (each ending in CRLF): sent
/// raw, for handshakes the tests tamper with.
pub fn upgrade(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// The same-server paths a page or module loads: `src="…"` and `href="…"` in pages,
/// `from '…'` in modules; `./name` is read as `/assets/name`.
pub fn links(body: &str) -> Vec<String> {
    let mut links = Vec::new();
    for marker in ["src=\"", "href=\"", "from '"] {
        for (at, _) in body.match_indices(marker) {
            let rest = &body[at + marker.len()..];
            let end = rest.find(['"', '\'']).unwrap_or(rest.len());
            let link = &rest[..end];
            if let Some(name) = link.strip_prefix("./") {
                links.push(format!("/assets/{name}"));
            } else if link.starts_with('/') {
                links.push(link.to_owned());
            }
        }
    }
    links
}

/// `GET path` without extra headers.
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], "").await
}

/// Asserts that `GET` serves each of `assets` (path, content type) with a body, its content
/// type, `no-cache`, `nosniff`, and for pages a same-origin content security policy.
///
/// # Panics
///
/// When one is not served so.
pub async fn assert_assets_served(addr: SocketAddr, assets: &[(&str, &str)]) {
    for (path, content_type) in assets {
        let response = get(addr, path).await;
        assert_eq!(response.status, 200, "{path}: {response}");
        let (head, body) = (response.lower_head(), &response.body);
        assert!(head.contains(&format!("content-type: {content_type}\r\n")), "{path}: {head}");
        assert!(head.contains("cache-control: no-cache\r\n"), "{path}: {head}");
        assert!(head.contains("x-content-type-options: nosniff\r\n"), "{path}: {head}");
        assert!(!body.is_empty(), "{path}");
        if content_type.starts_with("text/html") {
            assert!(head.contains("content-security-policy: default-src 'self'"), "{path}: {head}");
        }
    }
}

/// Asserts that every same-server link of `pages` (see [`links`]), but those in `skip`, is
/// served with 200; returns how many links it followed.
///
/// # Panics
///
/// When one is not served.
pub async fn assert_links_served(addr: SocketAddr, pages: &[&str], skip: &[&str]) -> usize {
    let mut checked = 0;
    for path in pages {
        let body = get(addr, path).await.body;
        for link in links(&body).into_iter().filter(|link| !skip.contains(&link.as_str())) {
            let target = get(addr, &link).await;
            assert_eq!(target.status, 200, "{path} loads {link}");
            checked += 1;
        }
    }
    checked
}
