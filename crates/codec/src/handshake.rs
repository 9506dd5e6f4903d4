//! The opening handshake (RFC 6455 §4): server-side validation and client-side requests.
//!
//! Parsing is linear in the input and bounded: at most [`HandshakeLimits::max_header_bytes`]
//! bytes and [`HandshakeLimits::max_headers`] header lines are looked at.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use crate::deflate::{DeflateConfig, DeflateParams, PERMESSAGE_DEFLATE};

/// The GUID of RFC 6455 §1.3, appended to the key to compute the accept value.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Bounds on the opening handshake.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// Most bytes in the request or response head. Default 8 KiB: generous for cookies and
    /// tokens, small enough that a slow or hostile client pins little memory.
    pub max_header_bytes: usize,
    /// Most header lines. Default 64.
    pub max_headers: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self { max_header_bytes: 8 * 1024, max_headers: 64 }
    }
}

/// Why a handshake was refused. Each server-side variant maps to an HTTP status.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The bytes are not an HTTP/1.x message head.
    #[error("malformed HTTP message: {0}")]
    Malformed(&'static str),
    /// The head is longer than [`HandshakeLimits::max_header_bytes`].
    #[error("headers too large: more than {0} bytes")]
    HeadersTooLarge(usize),
    /// The head has more than [`HandshakeLimits::max_headers`] lines.
    #[error("too many headers: more than {0}")]
    TooManyHeaders(usize),
    /// The method is not GET (RFC 6455 §4.1).
    #[error("method not allowed: a WebSocket upgrade uses GET")]
    MethodNotAllowed,
    /// The request is not HTTP/1.1 or later (RFC 6455 §4.1).
    #[error("HTTP/1.1 or later is required")]
    HttpVersion,
    /// No Host header, or more than one (RFC 7230 §5.4).
    #[error("exactly one Host header is required")]
    MissingHost,
    /// No Upgrade header: a plain HTTP request to a WebSocket endpoint.
    #[error("this endpoint requires a WebSocket upgrade")]
    UpgradeRequired,
    /// An Upgrade header without the `websocket` token.
    #[error("Upgrade header does not name websocket")]
    UpgradeNotWebSocket,
    /// A Connection header without the `Upgrade` token.
    #[error("Connection header does not include Upgrade")]
    ConnectionNotUpgrade,
    /// A Sec-WebSocket-Version other than 13 (RFC 6455 §4.4).
    #[error("unsupported Sec-WebSocket-Version: only 13 is supported")]
    UnsupportedVersion,
    /// No Sec-WebSocket-Key header.
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// A key that is not the base64 encoding of exactly 16 bytes, or more than one key.
    #[error("Sec-WebSocket-Key must be the base64 encoding of 16 bytes")]
    InvalidKey,
    /// A Sec-WebSocket-Protocol header that is not a list of tokens.
    #[error("malformed Sec-WebSocket-Protocol header")]
    InvalidProtocols,
    /// A Sec-WebSocket-Extensions header that does not follow RFC 6455 §9.1.
    #[error("malformed Sec-WebSocket-Extensions header")]
    InvalidExtensions,
    /// Client side: the server answered with a status other than 101.
    #[error("server answered with status {0}, not 101")]
    UnexpectedStatus(u16),
    /// Client side: the Sec-WebSocket-Accept value is missing or wrong.
    #[error("Sec-WebSocket-Accept does not match the key")]
    AcceptMismatch,
    /// Client side: the server chose a subprotocol the client did not offer.
    #[error("server chose a subprotocol that was not offered")]
    UnofferedProtocol,
    /// Client side: the server accepted an extension the client did not offer.
    #[error("server accepted an extension that was not offered")]
    UnofferedExtension,
    /// Client side: the server's permessage-deflate answer breaks RFC 7692 §5 or §7.1.
    #[error("invalid permessage-deflate response: {0}")]
    InvalidDeflateResponse(&'static str),
}

impl HandshakeError {
    /// The HTTP status a server answers with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::HeadersTooLarge(_) | HandshakeError::TooManyHeaders(_) => 431,
            HandshakeError::UpgradeRequired | HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// Headers the refusal must carry besides the body's.
    ///
    /// RFC 6455 §4.4: a version mismatch answers with the versions the server speaks;
    /// RFC 7231 §6.5.15: a 426 names the protocol to upgrade to; §6.5.5: a 405 lists
    /// the allowed methods.
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            HandshakeError::UnsupportedVersion => {
                &[("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")]
            }
            HandshakeError::UpgradeRequired => &[("Upgrade", "websocket")],
            HandshakeError::MethodNotAllowed => &[("Allow", "GET")],
            _ => &[],
        }
    }

    /// A short stable label for metrics and logs.
    pub fn as_label(&self) -> &'static str {
        match self {
            HandshakeError::Malformed(_) => "malformed",
            HandshakeError::HeadersTooLarge(_) => "headers_too_large",
            HandshakeError::TooManyHeaders(_) => "too_many_headers",
            HandshakeError::MethodNotAllowed => "method_not_allowed",
            HandshakeError::HttpVersion => "http_version",
            HandshakeError::MissingHost => "missing_host",
            HandshakeError::UpgradeRequired => "upgrade_required",
            HandshakeError::UpgradeNotWebSocket => "upgrade_not_websocket",
            HandshakeError::ConnectionNotUpgrade => "connection_not_upgrade",
            HandshakeError::UnsupportedVersion => "unsupported_version",
            HandshakeError::MissingKey => "missing_key",
            HandshakeError::InvalidKey => "invalid_key",
            HandshakeError::InvalidProtocols => "invalid_protocols",
            HandshakeError::InvalidExtensions => "invalid_extensions",
            HandshakeError::UnexpectedStatus(_) => "unexpected_status",
            HandshakeError::AcceptMismatch => "accept_mismatch",
            HandshakeError::UnofferedProtocol => "unoffered_protocol",
            HandshakeError::UnofferedExtension => "unoffered_extension",
            HandshakeError::InvalidDeflateResponse(_) => "invalid_deflate_response",
        }
    }

    /// A complete HTTP/1.1 response refusing the upgrade, with a one-line text body and
    /// `Connection: close`.
    pub fn to_response(&self) -> Vec<u8> {
        let body = format!("{self}\n");
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            self.status(),
            reason_phrase(self.status()),
            body.len()
        );
        for (name, value) in self.headers() {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&body);
        out.into_bytes()
    }
}

/// One entry of a `Sec-WebSocket-Extensions` header (RFC 6455 §9.1).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Extension {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters in order, values unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// A validated client upgrade request (RFC 6455 §4.2.1).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ServerHandshake {
    /// The request target, when parsed from raw bytes.
    pub path: Option<String>,
    /// The Host header.
    pub host: String,
    /// The Origin header, when present (browsers always send it).
    pub origin: Option<String>,
    key: String,
    /// Offered subprotocols, in the client's order.
    pub protocols: Vec<String>,
    /// Offered extensions, in the client's order (RFC 7692 negotiates from these).
    pub extensions: Vec<Extension>,
}

impl ServerHandshake {
    /// Parses and validates a request head from raw bytes.
    ///
    /// Returns `Ok(None)` while the head is incomplete, else the handshake and the number of
    /// bytes it used; bytes after it belong to the WebSocket stream.
    ///
    /// # Errors
    ///
    /// A [`HandshakeError`] whose [`status`](HandshakeError::status) is the answer to send.
    pub fn parse(
        buf: &[u8],
        limits: &HandshakeLimits,
    ) -> Result<Option<(Self, usize)>, HandshakeError> {
        let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut req = httparse::Request::new(&mut headers);
        let window = &buf[..buf.len().min(limits.max_header_bytes)];
        let used = match req.parse(window) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= limits.max_header_bytes => {
                return Err(HandshakeError::HeadersTooLarge(limits.max_header_bytes));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HandshakeError::TooManyHeaders(limits.max_headers));
            }
            Err(_) => return Err(HandshakeError::Malformed("invalid request head")),
        };
        let method = req.method.unwrap_or_default();
        let minor = req.version.unwrap_or_default();
        let path = req.path.unwrap_or_default().to_owned();
        let mut hs =
            Self::from_parts(method, minor >= 1, req.headers.iter().map(|h| (h.name, h.value)))?;
        hs.path = Some(path);
        Ok(Some((hs, used)))
    }

    /// Validates a request whose head was parsed elsewhere (for instance by an HTTP server).
    ///
    /// `http11_or_later` is whether the request's version is at least HTTP/1.1.
    ///
    /// # Errors
    ///
    /// A [`HandshakeError`] whose [`status`](HandshakeError::status) is the answer to send.
    pub fn from_parts<'a>(
        method: &str,
        http11_or_later: bool,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, HandshakeError> {
        if method != "GET" {
            return Err(HandshakeError::MethodNotAllowed);
        }
        if !http11_or_later {
            return Err(HandshakeError::HttpVersion);
        }
        let mut host: Option<&[u8]> = None;
        let mut hosts = 0;
        let mut origin = None;
        let mut upgrade_seen = false;
        let mut upgrade_ws = false;
        let mut connection_upgrade = false;
        let mut version_seen = false;
        let mut version_ok = true;
        let mut key: Option<&[u8]> = None;
        let mut keys = 0;
        let mut protocols = Vec::new();
        let mut extensions = Vec::new();
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("host") {
                hosts += 1;
                host = Some(value);
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade_seen = true;
                upgrade_ws |= has_token(value, "websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                connection_upgrade |= has_token(value, "upgrade");
            } else if name.eq_ignore_ascii_case("sec-websocket-version") {
                version_seen = true;
                version_ok &= trim(value) == b"13";
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                keys += 1;
                key = Some(value);
            } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                parse_protocols(value, &mut protocols)?;
            } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
                parse_extensions(value, &mut extensions)?;
            } else if name.eq_ignore_ascii_case("origin") {
                origin = Some(String::from_utf8_lossy(trim(value)).into_owned());
            }
        }
        let host = match (host, hosts) {
            (Some(h), 1) if !trim(h).is_empty() => String::from_utf8_lossy(trim(h)).into_owned(),
            _ => return Err(HandshakeError::MissingHost),
        };
        if !upgrade_seen {
            return Err(HandshakeError::UpgradeRequired);
        }
        if !upgrade_ws {
            return Err(HandshakeError::UpgradeNotWebSocket);
        }
        if !connection_upgrade {
            return Err(HandshakeError::ConnectionNotUpgrade);
        }
        if !version_seen || !version_ok {
            return Err(HandshakeError::UnsupportedVersion);
        }
        let key = match (key, keys) {
            (None, _) => return Err(HandshakeError::MissingKey),
            (Some(k), 1) => trim(k),
            _ => return Err(HandshakeError::InvalidKey),
        };
        // RFC 6455 §4.1: the key is a base64-encoded 16-byte nonce, so exactly 24 characters.
        let valid_key = key.len() == 24 && BASE64.decode(key).is_ok_and(|raw| raw.len() == 16);
        if !valid_key {
            return Err(HandshakeError::InvalidKey);
        }
        let key = String::from_utf8_lossy(key).into_owned();
        Ok(Self { path: None, host, origin, key, protocols, extensions })
    }

    /// The client's key, as sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Sec-WebSocket-Accept` value for this request.
    pub fn accept_key(&self) -> String {
        accept_key(self.key.as_bytes())
    }

    /// Picks a subprotocol: the first of `supported` (the server's order of preference)
    /// that the client offered.
    pub fn select_protocol<'s>(&self, supported: &[&'s str]) -> Option<&'s str> {
        supported.iter().copied().find(|s| self.protocols.iter().any(|p| p == s))
    }

    /// The permessage-deflate parameters to accept from this request's offers, if any is
    /// acceptable under `config` (see [`DeflateConfig::accept`]). Pass
    /// [`DeflateParams::to_response_value`] to [`response`](Self::response).
    pub fn negotiate_deflate(&self, config: &DeflateConfig) -> Option<DeflateParams> {
        config.accept(&self.extensions)
    }

    /// The 101 response accepting this request, with the chosen subprotocol and the
    /// accepted extensions header value, if any.
    pub fn response(&self, protocol: Option<&str>, extensions: Option<&str>) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            self.accept_key()
        );
        if let Some(p) = protocol {
            out.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        if let Some(e) = extensions {
            out.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// The client side of the opening handshake (RFC 6455 §4.1).
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    key: String,
    protocols: Vec<String>,
    deflate: Option<DeflateParams>,
}

/// What the server accepted in its 101 response.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ServerResponse {
    /// The subprotocol the server chose, one of those offered.
    pub protocol: Option<String>,
    /// The extensions the server accepted.
    pub extensions: Vec<Extension>,
    /// The permessage-deflate parameters the server accepted, checked against the offer:
    /// pass them to [`Connection::with_deflate`](crate::Connection::with_deflate).
    pub deflate: Option<DeflateParams>,
}

impl ClientHandshake {
    /// A handshake with a fresh random 16-byte key from the operating system.
    pub fn new() -> Self {
        let mut nonce = [0u8; 16];
        // RFC 6455 §4.1: the nonce must be randomly selected. The OS source failing means
        // the process cannot make secure keys at all.
        if getrandom::fill(&mut nonce).is_err() {
            nonce = rand::random();
        }
        Self::with_key(nonce)
    }

    /// A handshake with a given nonce (for tests and reproducible traces).
    pub fn with_key(nonce: [u8; 16]) -> Self {
        Self { key: BASE64.encode(nonce), protocols: Vec::new(), deflate: None }
    }

    /// Offers permessage-deflate as `config` says (nothing when it is disabled).
    pub fn with_deflate(mut self, config: &DeflateConfig) -> Self {
        self.deflate = config.offer();
        self
    }

    /// The permessage-deflate offer this handshake sends, if any.
    pub fn deflate_offer(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref()
    }

    /// Offers these subprotocols, in order of preference.
    pub fn with_protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The base64 key sent in `Sec-WebSocket-Key`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The request head for `host` (with port if not the default) and `path`, with any
    /// extra headers (Origin, Authorization, ...).
    pub fn request(&self, host: &str, path: &str, extra_headers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.key
        );
        if !self.protocols.is_empty() {
            out.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", self.protocols.join(", ")));
        }
        if let Some(offer) = &self.deflate {
            out.push_str(&format!("Sec-WebSocket-Extensions: {}\r\n", offer.to_offer_value()));
        }
        for (name, value) in extra_headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// Verifies the server's response head.
    ///
    /// Returns `Ok(None)` while the head is incomplete, else what the server accepted and
    /// the number of bytes the head used; bytes after it are WebSocket frames.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::UnexpectedStatus`] for a refusal (its body follows the head), or
    /// the header that failed verification.
    pub fn verify(
        &self,
        buf: &[u8],
        limits: &HandshakeLimits,
    ) -> Result<Option<(ServerResponse, usize)>, HandshakeError> {
        let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut res = httparse::Response::new(&mut headers);
        let window = &buf[..buf.len().min(limits.max_header_bytes)];
        let used = match res.parse(window) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= limits.max_header_bytes => {
                return Err(HandshakeError::HeadersTooLarge(limits.max_header_bytes));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HandshakeError::TooManyHeaders(limits.max_headers));
            }
            Err(_) => return Err(HandshakeError::Malformed("invalid response head")),
        };
        let status = res.code.unwrap_or_default();
        if status != 101 {
            return Err(HandshakeError::UnexpectedStatus(status));
        }
        let expected_accept = accept_key(self.key.as_bytes());
        let mut upgrade_ws = false;
        let mut connection_upgrade = false;
        let mut accept_ok = false;
        let mut protocol = None;
        let mut extensions = Vec::new();
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade_ws |= has_token(h.value, "websocket");
            } else if h.name.eq_ignore_ascii_case("connection") {
                connection_upgrade |= has_token(h.value, "upgrade");
            } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
                accept_ok = trim(h.value) == expected_accept.as_bytes();
            } else if h.name.eq_ignore_ascii_case("sec-websocket-protocol") {
                let chosen = String::from_utf8_lossy(trim(h.value)).into_owned();
                if protocol.is_some() || !self.protocols.contains(&chosen) {
                    return Err(HandshakeError::UnofferedProtocol);
                }
                protocol = Some(chosen);
            } else if h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
                parse_extensions(h.value, &mut extensions)?;
            }
        }
        if !upgrade_ws {
            return Err(HandshakeError::UpgradeNotWebSocket);
        }
        if !connection_upgrade {
            return Err(HandshakeError::ConnectionNotUpgrade);
        }
        if !accept_ok {
            return Err(HandshakeError::AcceptMismatch);
        }
        // RFC 6455 §4.1: the client fails the connection on an extension it did not ask for;
        // this client offers permessage-deflate at most, and RFC 7692 §5 accepts one offer.
        let deflate = match (&extensions[..], &self.deflate) {
            ([], _) => None,
            ([ext], Some(offer)) if ext.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) => {
                Some(DeflateParams::from_response(ext, offer)?)
            }
            _ => return Err(HandshakeError::UnofferedExtension),
        };
        Ok(Some((ServerResponse { protocol, extensions, deflate }, used)))
    }
}

impl Default for ClientHandshake {
    fn default() -> Self {
        Self::new()
    }
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// Whether a comma-separated header value contains `token`, ignoring ASCII case.
fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// RFC 7230 §3.2.6 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_protocols(value: &[u8], out: &mut Vec<String>) -> Result<(), HandshakeError> {
    for item in value.split(|&b| b == b',') {
        let item = trim(item);
        if item.is_empty() {
            continue;
        }
        if !item.iter().all(|&b| is_tchar(b)) {
            return Err(HandshakeError::InvalidProtocols);
        }
        out.push(String::from_utf8_lossy(item).into_owned());
    }
    Ok(())
}

/// Parses `extension *( ";" param [ "=" (token | quoted-string) ] )` lists in one pass.
pub(crate) fn parse_extensions(
    value: &[u8],
    out: &mut Vec<Extension>,
) -> Result<(), HandshakeError> {
    let err = HandshakeError::InvalidExtensions;
    let mut p = Cursor { buf: value, pos: 0 };
    loop {
        p.skip_ws();
        if p.at_end() {
            return Ok(());
        }
        if p.eat(b',') {
            continue;
        }
        let name = p.token().ok_or_else(|| err.clone())?;
        let mut ext = Extension { name, params: Vec::new() };
        loop {
            p.skip_ws();
            if p.at_end() || p.eat(b',') {
                break;
            }
            if !p.eat(b';') {
                return Err(err);
            }
            p.skip_ws();
            let param = p.token().ok_or_else(|| err.clone())?;
            p.skip_ws();
            let val = if p.eat(b'=') {
                p.skip_ws();
                let v = if p.peek() == Some(b'"') { p.quoted() } else { p.token() };
                Some(v.ok_or_else(|| err.clone())?)
            } else {
                None
            };
            ext.params.push((param, val));
        }
        out.push(ext);
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.buf[start..self.pos]).into_owned())
    }

    /// RFC 7230 §3.2.6 quoted-string; RFC 6455 §9.1 wants a token inside.
    fn quoted(&mut self) -> Option<String> {
        self.pos += 1;
        let mut value = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    self.pos += 1;
                    value.push(self.peek()?);
                }
                b => value.push(b),
            }
            self.pos += 1;
        }
        (!value.is_empty() && value.iter().all(|&b| is_tchar(b)))
            .then(|| String::from_utf8_lossy(&value).into_owned())
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(extra: &str) -> String {
        format!(
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
             {extra}\r\n"
        )
    }

    fn parse(req: &str) -> Result<ServerHandshake, HandshakeError> {
        ServerHandshake::parse(req.as_bytes(), &HandshakeLimits::default())
            .map(|r| r.expect("complete").0)
    }

    #[test]
    fn computes_rfc_accept_value() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn accepts_rfc_example() {
        let hs = parse(&request("Origin: http://example.com\r\n")).unwrap();
        assert_eq!(hs.path.as_deref(), Some("/chat"));
        assert_eq!(hs.host, "server.example.com");
        assert_eq!(hs.origin.as_deref(), Some("http://example.com"));
        let resp = String::from_utf8(hs.response(None, None)).unwrap();
        assert!(resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn token_lists_are_case_insensitive() {
        let req = request("")
            .replace("Upgrade: websocket", "Upgrade: h2c, WebSocket")
            .replace("Connection: Upgrade", "Connection: keep-alive, UPGRADE");
        assert!(parse(&req).is_ok());
    }

    #[test]
    fn refusals_carry_the_right_status() {
        let cases: Vec<(String, HandshakeError, u16)> = vec![
            (request("").replace("GET", "POST"), HandshakeError::MethodNotAllowed, 405),
            (request("").replace("HTTP/1.1", "HTTP/1.0"), HandshakeError::HttpVersion, 400),
            (
                request("").replace("Host: server.example.com\r\n", ""),
                HandshakeError::MissingHost,
                400,
            ),
            (
                request("").replace("Upgrade: websocket\r\n", ""),
                HandshakeError::UpgradeRequired,
                426,
            ),
            (
                request("").replace("Upgrade: websocket", "Upgrade: h2c"),
                HandshakeError::UpgradeNotWebSocket,
                400,
            ),
            (
                request("").replace("Connection: Upgrade", "Connection: close"),
                HandshakeError::ConnectionNotUpgrade,
                400,
            ),
            (
                request("").replace("Version: 13", "Version: 8"),
                HandshakeError::UnsupportedVersion,
                426,
            ),
            (
                request("").replace("Sec-WebSocket-Version: 13\r\n", ""),
                HandshakeError::UnsupportedVersion,
                426,
            ),
            (
                request("").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
                HandshakeError::MissingKey,
                400,
            ),
            (request("").replace(KEY, "c2hvcnQ="), HandshakeError::InvalidKey, 400),
            (request("").replace(KEY, "not base64 at all!!!!!!!"), HandshakeError::InvalidKey, 400),
            (request(&format!("Sec-WebSocket-Key: {KEY}\r\n")), HandshakeError::InvalidKey, 400),
            (
                request("Sec-WebSocket-Protocol: chat, a b\r\n"),
                HandshakeError::InvalidProtocols,
                400,
            ),
            (request("Sec-WebSocket-Extensions: ;x\r\n"), HandshakeError::InvalidExtensions, 400),
        ];
        for (req, err, status) in cases {
            assert_eq!(parse(&req), Err(err.clone()), "{req}");
            assert_eq!(err.status(), status);
            let resp = String::from_utf8(err.to_response()).unwrap();
            assert!(resp.starts_with(&format!("HTTP/1.1 {status} ")), "{resp}");
        }
        let resp = String::from_utf8(HandshakeError::UnsupportedVersion.to_response()).unwrap();
        assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn bounds_header_size_and_count() {
        let limits = HandshakeLimits::default();
        let big = request(&format!("X-Pad: {}\r\n", "a".repeat(9000)));
        assert_eq!(
            ServerHandshake::parse(big.as_bytes(), &limits),
            Err(HandshakeError::HeadersTooLarge(8192))
        );
        let many = request(&"X-A: b\r\n".repeat(70));
        assert_eq!(
            ServerHandshake::parse(many.as_bytes(), &limits),
            Err(HandshakeError::TooManyHeaders(64))
        );
        // An endless head without a blank line is refused once it reaches the limit.
        let endless = "GET / HTTP/1.1\r\nX: ".to_owned() + &"y".repeat(10_000);
        assert_eq!(
            ServerHandshake::parse(endless.as_bytes(), &limits),
            Err(HandshakeError::HeadersTooLarge(8192))
        );
    }

    #[test]
    fn incomplete_head_asks_for_more() {
        let req = request("");
        for cut in 0..req.len() {
            let r = ServerHandshake::parse(&req.as_bytes()[..cut], &HandshakeLimits::default());
            assert_eq!(r, Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn selects_protocol_by_server_preference() {
        let hs = parse(&request("Sec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Protocol: c\r\n"))
            .unwrap();
        assert_eq!(hs.protocols, ["a", "b", "c"]);
        assert_eq!(hs.select_protocol(&["c", "a"]), Some("c"));
        assert_eq!(hs.select_protocol(&["z"]), None);
    }

    #[test]
    fn parses_extension_offers() {
        let hs = parse(&request(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, \
             permessage-deflate; server_max_window_bits=\"10\" ;client_no_context_takeover\r\n",
        ))
        .unwrap();
        assert_eq!(
            hs.extensions,
            vec![
                Extension {
                    name: "permessage-deflate".into(),
                    params: vec![("client_max_window_bits".into(), None)],
                },
                Extension {
                    name: "permessage-deflate".into(),
                    params: vec![
                        ("server_max_window_bits".into(), Some("10".into())),
                        ("client_no_context_takeover".into(), None),
                    ],
                },
            ]
        );
    }

    #[test]
    fn client_verifies_server_response() {
        let client = ClientHandshake::with_key(*b"the sample nonce").with_protocols(["chat"]);
        assert_eq!(client.key(), KEY);
        let req = client.request("example.com", "/chat", &[("Origin", "http://x")]);
        let hs = ServerHandshake::parse(&req, &HandshakeLimits::default()).unwrap().unwrap().0;
        let resp = hs.response(hs.select_protocol(&["chat"]), None);
        let (accepted, used) =
            client.verify(&resp, &HandshakeLimits::default()).unwrap().expect("complete");
        assert_eq!(used, resp.len());
        assert_eq!(accepted.protocol.as_deref(), Some("chat"));

        let wrong = String::from_utf8(resp).unwrap().replace("s3pPLMBiTxaQ9kYGzzhZRbK", "AAAA");
        assert_eq!(
            client.verify(wrong.as_bytes(), &HandshakeLimits::default()),
            Err(HandshakeError::AcceptMismatch)
        );
        let unoffered = hs.response(Some("other"), None);
        assert_eq!(
            client.verify(&unoffered, &HandshakeLimits::default()),
            Err(HandshakeError::UnofferedProtocol)
        );
        assert_eq!(
            client.verify(b"HTTP/1.1 403 Forbidden\r\n\r\n", &HandshakeLimits::default()),
            Err(HandshakeError::UnexpectedStatus(403))
        );
    }

    #[test]
    fn client_negotiates_deflate_with_the_server() {
        let config = DeflateConfig { enabled: true, ..Default::default() };
        let client = ClientHandshake::with_key(*b"the sample nonce").with_deflate(&config);
        let req = client.request("example.com", "/", &[]);
        assert!(
            String::from_utf8_lossy(&req).contains(
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            )
        );
        let hs = ServerHandshake::parse(&req, &HandshakeLimits::default()).unwrap().unwrap().0;
        let server_config = DeflateConfig { server_no_context_takeover: true, ..config };
        let params = hs.negotiate_deflate(&server_config).expect("accepted");
        let resp = hs.response(None, Some(&params.to_response_value()));
        let (accepted, _) = client.verify(&resp, &HandshakeLimits::default()).unwrap().unwrap();
        assert_eq!(accepted.deflate, Some(params));

        let limits = HandshakeLimits::default();
        let answer = |ext: &str| hs.response(None, Some(ext));
        // RFC 7692 §5: one accepted offer at most; RFC 6455 §4.1: nothing not offered.
        for bad in
            ["permessage-deflate, permessage-deflate", "x-other", "permessage-deflate, x-other"]
        {
            assert_eq!(
                client.verify(&answer(bad), &limits),
                Err(HandshakeError::UnofferedExtension)
            );
        }
        assert!(matches!(
            client.verify(&answer("permessage-deflate; foo"), &limits),
            Err(HandshakeError::InvalidDeflateResponse(_))
        ));
        let plain = ClientHandshake::with_key(*b"the sample nonce");
        assert_eq!(
            plain.verify(&answer("permessage-deflate"), &limits),
            Err(HandshakeError::UnofferedExtension)
        );
        // Declining is the server's right: no extension, no deflate.
        let (accepted, _) = client.verify(&hs.response(None, None), &limits).unwrap().unwrap();
        assert_eq!(accepted.deflate, None);
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(ClientHandshake::new().key(), ClientHandshake::new().key());
    }
}
