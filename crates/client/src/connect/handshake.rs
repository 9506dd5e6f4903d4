//! The opening handshake over any byte stream (RFC 6455 §4.1), and refusals read before it.

use std::io;
use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use serde_json::Value;
use switchboard_codec::{
    ClientHandshake, DeflateConfig, DeflateParams, HandshakeError, HandshakeLimits,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::url::ServerUrl;

/// An opening handshake to send: the URL's `Host` and path, a key, the subprotocols offered
/// and extra headers (`Authorization`, `Origin`, ...).
///
/// [`perform`](Self::perform) writes the request, reads the response head and checks it with
/// the codec's [`ClientHandshake`]; a refusal's body is read into an [`HttpRefusal`].
///
/// ```no_run
/// use bytes::BytesMut;
/// use switchboard_client::ServerUrl;
/// use switchboard_client::connect::{Handshake, open_stream};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let url = ServerUrl::parse("ws://127.0.0.1:8080/ws")?;
/// let mut stream = open_stream(&url, None).await?;
/// let mut buf = BytesMut::with_capacity(4096);
/// let accepted = Handshake::new(&url)
///     .protocols(&["switchboard.v1.json"])
///     .header("Authorization", "Bearer a-token")
///     .perform(&mut stream, &mut buf)
///     .await?;
/// assert_eq!(accepted.protocol.as_deref(), Some("switchboard.v1.json"));
/// // `buf` holds any frames that came with the response: hand them to the codec first.
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a handshake does nothing until `perform` is called"]
pub struct Handshake<'a> {
    url: &'a ServerUrl,
    key: Option<[u8; 16]>,
    protocols: Vec<String>,
    headers: Vec<(&'a str, &'a str)>,
    deflate: Option<DeflateConfig>,
}

/// What the server accepted in its `101 Switching Protocols`.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Accepted {
    /// The subprotocol the server chose, one of those offered; none when it named none.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters the server accepted (RFC 7692), when it was
    /// offered ([`Handshake::deflate`]) and accepted; a connection made with
    /// `Connection::with_deflate` speaks them.
    pub deflate: Option<DeflateParams>,
}

/// Why an opening handshake failed.
///
/// ```
/// use switchboard_client::connect::{HttpRefusal, UpgradeError};
///
/// let body = br#"{"error":{"code":"unauthorized","message":"a token, please"}}"#;
/// let err = UpgradeError::Refused(Box::new(HttpRefusal::from_body(401, body)));
/// assert_eq!(err.to_string(), "handshake refused with 401 unauthorized: a token, please");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Writing the request or reading the response failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server closed the connection before a whole response head.
    #[error("connection closed during the opening handshake")]
    Closed,
    /// The server answered with another status than 101 (RFC 6455 §4.2.1).
    #[error("handshake refused with {0}")]
    Refused(Box<HttpRefusal>),
    /// The 101 response broke RFC 6455 §4.1 (a wrong accept key, an unoffered subprotocol).
    #[error("invalid handshake response: {0}")]
    Invalid(HandshakeError),
}

/// An HTTP refusal: the status, and the server's JSON body `{"error": {"code", "message"}}`
/// when it sent one (a refused upgrade, an HTTP API error).
///
/// ```
/// use switchboard_client::connect::HttpRefusal;
///
/// let refusal = HttpRefusal::from_body(404, b"not found\n");
/// assert_eq!((refusal.code.as_deref(), refusal.message.as_str()), (None, "not found"));
/// assert_eq!(refusal.to_string(), "404: not found");
/// ```
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct HttpRefusal {
    /// The HTTP status.
    pub status: u16,
    /// The body's `error.code`, when it had one.
    pub code: Option<String>,
    /// The body's `error.message`; else, for an HTML page (another server's error page),
    /// `an HTML page titled "…"` with its `<title>`; else the body's first 200 characters
    /// on one line.
    pub message: String,
    /// The `Retry-After` header in seconds (RFC 9110 §10.2.3; an HTTP date is ignored), at
    /// most a day.
    pub retry_after: Option<Duration>,
}

impl<'a> Handshake<'a> {
    /// A handshake for `url` with a random key from the operating system, offering no
    /// subprotocol and sending no extra header.
    pub fn new(url: &'a ServerUrl) -> Self {
        Self { url, key: None, protocols: Vec::new(), headers: Vec::new(), deflate: None }
    }

    /// Offers permessage-deflate (RFC 7692) as `config` describes; the server's answer is
    /// checked ([`Accepted::deflate`], or [`UpgradeError::Invalid`] when it breaks the RFC).
    pub fn deflate(mut self, config: &DeflateConfig) -> Self {
        self.deflate = config.enabled.then(|| config.clone());
        self
    }

    /// Uses this nonce for `Sec-WebSocket-Key` instead of one from the operating system:
    /// for tests, or a load generator drawing its own cheap randomness. RFC 6455 §4.1 asks
    /// for a random nonce per connection.
    pub fn key(mut self, nonce: [u8; 16]) -> Self {
        self.key = Some(nonce);
        self
    }

    /// Offers these subprotocols, in order of preference.
    pub fn protocols(mut self, protocols: &[&str]) -> Self {
        self.protocols = protocols.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// Adds a header to the request. Names and values are written as given: the caller
    /// checks them (no line breaks).
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Writes the request to `io`, reads the response into `buf` and checks it.
    ///
    /// On success, the response head is consumed from `buf` and what is left are the first
    /// WebSocket frames, if the server sent any with it. A refusal's body is read for at most
    /// a second and 4 KiB. The caller bounds the whole exchange's time.
    ///
    /// # Errors
    ///
    /// [`UpgradeError`]: I/O, an early close, a refusal with the server's reason, or a 101
    /// response that does not verify.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a cancelled handshake leaves the stream mid-exchange; drop it.
    pub async fn perform<S>(&self, io: &mut S, buf: &mut BytesMut) -> Result<Accepted, UpgradeError>
    where
        S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    {
        let codec = match self.key {
            Some(nonce) => ClientHandshake::with_key(nonce),
            None => ClientHandshake::new(),
        }
        .with_protocols(self.protocols.iter().map(String::as_str));
        let codec = match &self.deflate {
            Some(config) => codec.with_deflate(config),
            None => codec,
        };
        io.write_all(&codec.request(self.url.authority(), self.url.resource(), &self.headers))
            .await?;
        io.flush().await?;
        let limits = HandshakeLimits::default();
        loop {
            if io.read_buf(buf).await? == 0 {
                return Err(UpgradeError::Closed);
            }
            match codec.verify(buf, &limits) {
                Ok(None) => {}
                Ok(Some((accepted, used))) => {
                    buf.advance(used);
                    return Ok(Accepted { protocol: accepted.protocol, deflate: accepted.deflate });
                }
                Err(HandshakeError::UnexpectedStatus(status)) => {
                    let refusal = HttpRefusal::read(status, io, buf).await;
                    return Err(UpgradeError::Refused(Box::new(refusal)));
                }
                Err(e) => return Err(UpgradeError::Invalid(e)),
            }
        }
    }
}

impl HttpRefusal {
    /// A refusal with `status`, the server's error `code` and `message`, no `Retry-After`.
    pub fn new(status: u16, code: Option<String>, message: String) -> Self {
        Self { status, code, message, retry_after: None }
    }

    /// A refusal with `status` whose body is `body`: the JSON error's code and message, else
    /// a summary of the body on one line (an HTML page by its title, never whole). No
    /// `Retry-After`.
    ///
    /// ```
    /// use switchboard_client::connect::HttpRefusal;
    ///
    /// let page = b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>...</body>\r\n</html>";
    /// let refusal = HttpRefusal::from_body(404, page);
    /// assert_eq!(refusal.to_string(), "404: an HTML page titled \"404 Not Found\"");
    /// ```
    pub fn from_body(status: u16, body: &[u8]) -> Self {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let error = json.as_ref().and_then(|j| j.get("error"));
        let text =
            |key: &str| error.and_then(|e| e.get(key)).and_then(Value::as_str).map(str::to_owned);
        let message = text("message").unwrap_or_else(|| summary(&String::from_utf8_lossy(body)));
        Self::new(status, text("code"), message)
    }

    /// Reads the rest of a refused upgrade whose head starts `buf`: the body as far as its
    /// `Content-Length` (at most 4 KiB, waiting at most a second), and `Retry-After`.
    async fn read<S>(status: u16, io: &mut S, buf: &mut BytesMut) -> Self
    where
        S: AsyncRead + Unpin + ?Sized,
    {
        let (head_len, content_length, retry_after) = {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let find = |name: &str| {
                        response
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .and_then(|h| std::str::from_utf8(h.value).ok())
                            .map(str::trim)
                    };
                    let length = find("content-length").and_then(|v| v.parse::<usize>().ok());
                    // RFC 9110 §10.2.3: delay-seconds (an HTTP-date is not worth a clock here).
                    let retry = find("retry-after")
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(MAX_RETRY_AFTER_SECS)));
                    (n, length, retry)
                }
                _ => (buf.len(), Some(0), None),
            }
        };
        let want = head_len + content_length.unwrap_or(MAX_REFUSAL_BODY).min(MAX_REFUSAL_BODY);
        let _ = tokio::time::timeout(REFUSAL_BODY_WAIT, async {
            while buf.len() < want {
                match io.read_buf(buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        let body = &buf[head_len.min(buf.len())..buf.len().min(want)];
        Self { retry_after, ..Self::from_body(status, body) }
    }
}

impl std::fmt::Display for HttpRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} {code}: {}", self.status, self.message),
            None if self.message.is_empty() => write!(f, "{}", self.status),
            None => write!(f, "{}: {}", self.status, self.message),
        }
    }
}

/// A body that is not a JSON error, on one line: an HTML page (markup from its first
/// character) by its `<title>`, other text by its first [`MAX_MESSAGE_CHARS`] characters.
fn summary(body: &str) -> String {
    let body = body.trim();
    if !body.starts_with('<') {
        return one_line(body, MAX_MESSAGE_CHARS);
    }
    let lower = body.to_ascii_lowercase();
    let title = lower.find("<title").and_then(|open| {
        let start = open + lower[open..].find('>')? + 1;
        let end = start + lower[start..].find("</title")?;
        // ASCII lowercasing keeps byte offsets: the same range of the original.
        Some(one_line(body.get(start..end)?, MAX_TITLE_CHARS))
    });
    match title {
        Some(title) if !title.is_empty() => format!("an HTML page titled {title:?}"),
        _ => "an HTML page".to_owned(),
    }
}

/// `text` with its runs of whitespace (line breaks included) as single spaces, cut to `max`
/// characters.
fn one_line(text: &str, max: usize) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(max).collect()
}

/// How much of a refusal's body is read.
const MAX_REFUSAL_BODY: usize = 4096;
/// How long to wait for a refusal's body after its head.
const REFUSAL_BODY_WAIT: Duration = Duration::from_secs(1);
/// The longest `Retry-After` honoured: a day.
const MAX_RETRY_AFTER_SECS: u64 = 86_400;
/// How much of a body that is not a JSON error becomes the message.
const MAX_MESSAGE_CHARS: usize = 200;
/// How much of an HTML page's title becomes the message.
const MAX_TITLE_CHARS: usize = 100;

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;

    #[test]
    fn error_bodies_give_code_and_message() {
        let body = br#"{"error":{"code":"credentials_required","message":"a token, please"}}"#;
        let r = HttpRefusal::from_body(401, body);
        assert_eq!(
            (r.code, r.message),
            (Some("credentials_required".to_owned()), "a token, please".to_owned())
        );
        let r = HttpRefusal::from_body(404, b"not found\n");
        assert_eq!((r.code, r.message), (None, "not found".to_owned()));
        let long = "x".repeat(300);
        assert_eq!(HttpRefusal::from_body(500, long.as_bytes()).message.len(), 200);
        let lines = HttpRefusal::from_body(502, b"bad\r\ngateway\n\n  upstream\n");
        assert_eq!(lines.message, "bad gateway upstream");
    }

    #[test]
    fn html_pages_are_summed_up_by_their_title() {
        let message = |body: &str| HttpRefusal::from_body(404, body.as_bytes()).message;
        let page = "<!DOCTYPE HTML>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
                    <TITLE>Error\n  response</TITLE>\n</head>\n<body><h1>Error response</h1>\n\
                    <p>Error code: 404</p></body></html>\n";
        assert_eq!(message(page), "an HTML page titled \"Error response\"");
        assert_eq!(message("<html><body><h1>Not Found</h1></body></html>"), "an HTML page");
        assert_eq!(message("<html><title></title></html>"), "an HTML page");
        assert_eq!(message("<title>unclosed"), "an HTML page");
        let long = format!("<title>{}</title>", "é".repeat(300));
        assert_eq!(message(&long).chars().count(), "an HTML page titled \"\"".len() + 100);
    }

    /// Runs `handshake` against a scripted server that answers `response` to the request.
    async fn against(
        handshake: Handshake<'_>,
        response: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
    ) -> (Result<Accepted, UpgradeError>, BytesMut, String) {
        let (mut client, mut server) = tokio::io::duplex(8192);
        let serve = tokio::spawn(async move {
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if server.read(&mut byte).await.expect("read") == 0 {
                    break;
                }
                request.push(byte[0]);
            }
            let request = String::from_utf8(request).expect("ascii");
            server.write_all(&response(&request)).await.expect("write");
            // The end of the response; reading goes on until the client is done.
            server.shutdown().await.expect("shutdown");
            let mut rest = Vec::new();
            let _ = server.read_to_end(&mut rest).await;
            request
        });
        let mut buf = BytesMut::new();
        let result = handshake.perform(&mut client, &mut buf).await;
        drop(client);
        (result, buf, serve.await.expect("server"))
    }

    fn accept(request: &str, extra: &str) -> Vec<u8> {
        let key =
            request.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).expect("a key");
        let accept = switchboard_codec::handshake::accept_key(key.as_bytes());
        let mut response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        )
        .into_bytes();
        // A first frame in the same write: text "hi".
        response.extend_from_slice(b"\x81\x02hi");
        response
    }

    #[tokio::test]
    async fn sends_the_request_and_keeps_the_frames_after_the_head() {
        let url = ServerUrl::parse("ws://[::1]:9000/ws?x=1").expect("valid");
        let hs = Handshake::new(&url)
            .key([7; 16])
            .protocols(&["switchboard.v1.msgpack", "switchboard.v1.json"])
            .header("Authorization", "Bearer t")
            .header("Origin", "https://app.example.com");
        let (result, buf, request) =
            against(hs, |req| accept(req, "Sec-WebSocket-Protocol: switchboard.v1.json\r\n")).await;
        assert_eq!(result.expect("accepted").protocol.as_deref(), Some("switchboard.v1.json"));
        assert_eq!(&buf[..], b"\x81\x02hi");
        assert!(request.starts_with("GET /ws?x=1 HTTP/1.1\r\nHost: [::1]:9000\r\n"), "{request}");
        for line in [
            "Sec-WebSocket-Key: BwcHBwcHBwcHBwcHBwcHBw==",
            "Sec-WebSocket-Protocol: switchboard.v1.msgpack, switchboard.v1.json",
            "Authorization: Bearer t",
            "Origin: https://app.example.com",
        ] {
            assert!(request.contains(&format!("{line}\r\n")), "{line} in {request}");
        }
    }

    #[tokio::test]
    async fn reads_a_refusal_with_its_json_body_and_retry_after() {
        let url = ServerUrl::parse("ws://h/ws").expect("valid");
        let body = r#"{"error":{"code":"server_busy","message":"too many connections"}}"#;
        let (result, _, _) = against(Handshake::new(&url), move |_| {
            format!(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: {}\r\n\
                 \r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .await;
        let Err(UpgradeError::Refused(refusal)) = result else { panic!("{result:?}") };
        assert_eq!(
            *refusal,
            HttpRefusal {
                status: 503,
                code: Some("server_busy".to_owned()),
                message: "too many connections".to_owned(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
    }

    #[tokio::test]
    async fn refuses_a_response_that_does_not_verify() {
        let url = ServerUrl::parse("ws://h/").expect("valid");
        let (result, _, _) = against(Handshake::new(&url), |req| {
            accept(req, "Sec-WebSocket-Protocol: unoffered\r\n")
        })
        .await;
        assert!(matches!(result, Err(UpgradeError::Invalid(HandshakeError::UnofferedProtocol))));
        let (result, _, _) = against(Handshake::new(&url), |_| b"HTTP/1.1 101 Sw".to_vec()).await;
        assert!(matches!(result, Err(UpgradeError::Closed)), "{result:?}");
    }
}
