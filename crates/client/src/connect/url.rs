//! [`ServerUrl`]: where to connect, parsed once for every tool.

use std::fmt;

/// A server's WebSocket address: `ws[s]://host[:port][/path][?query]` (RFC 6455 §3).
///
/// [`parse`](Self::parse) takes `ws://` and `wss://` only;
/// [`parse_accepting_http`](Self::parse_accepting_http) also reads `http://` and `https://` as
/// `ws://` and `wss://`, since the upgrade starts as an HTTP request to the same place. Hosts
/// are names, IPv4 addresses or bracketed IPv6 literals; the port defaults to 80 (`ws`) or
/// 443 (`wss`); the path and query default to `/`.
///
/// ```
/// use switchboard_client::ServerUrl;
///
/// let url = ServerUrl::parse("wss://[::1]:9000/ws?x=1")?;
/// assert!(url.is_tls());
/// assert_eq!((url.host(), url.port()), ("::1", 9000));
/// assert_eq!((url.authority(), url.resource()), ("[::1]:9000", "/ws?x=1"));
///
/// let url = ServerUrl::parse_accepting_http("http://localhost:8080")?.with_default_path("/ws");
/// assert_eq!(url.to_string(), "ws://localhost:8080/ws");
/// # Ok::<(), switchboard_client::UrlError>(())
/// ```
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct ServerUrl {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    resource: String,
}

/// Why a URL was refused by [`ServerUrl::parse`].
///
/// [`ClientBuilder::build`](crate::ClientBuilder::build) reports it as
/// [`Error::InvalidUrl`](crate::Error::InvalidUrl), with the URL.
///
/// ```
/// use switchboard_client::{ServerUrl, UrlError};
///
/// assert_eq!(ServerUrl::parse("ws://x/#top"), Err(UrlError::Fragment));
/// assert_eq!(UrlError::Fragment.to_string(), "a WebSocket URL has no fragment");
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not `ws://` or `wss://` (nor `http://`, `https://` where they are accepted).
    #[error("the scheme must be {0}")]
    Scheme(&'static str),
    /// Whitespace or a control character.
    #[error("whitespace in the URL")]
    Whitespace,
    /// RFC 6455 §3: fragment identifiers are meaningless in WebSocket URIs.
    #[error("a WebSocket URL has no fragment")]
    Fragment,
    /// `user:password@`: tokens travel in `Authorization`, never in the URL.
    #[error("credentials in the URL are not supported: send a token instead")]
    Credentials,
    /// An empty host.
    #[error("the URL has no host")]
    NoHost,
    /// A port that is not a number from 1 to 65535.
    #[error("invalid port")]
    Port,
    /// `[` without its `]` around an IPv6 address.
    #[error("unclosed [ in the host")]
    UnclosedBracket,
}

impl ServerUrl {
    /// Parses a `ws://` or `wss://` URL (scheme case-insensitive).
    ///
    /// # Errors
    ///
    /// The [`UrlError`] saying what is wrong.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        Self::parse_schemes(url, &WS_SCHEMES, "ws:// or wss://")
    }

    /// Parses a `ws://`, `wss://`, `http://` or `https://` URL; `http[s]` reads as `ws[s]`.
    ///
    /// # Errors
    ///
    /// The [`UrlError`] saying what is wrong.
    pub fn parse_accepting_http(url: &str) -> Result<Self, UrlError> {
        Self::parse_schemes(url, &ALL_SCHEMES, "ws://, wss://, http:// or https://")
    }

    fn parse_schemes(
        url: &str,
        schemes: &[(&str, bool)],
        expected: &'static str,
    ) -> Result<Self, UrlError> {
        let Some((rest, tls)) = schemes.iter().find_map(|&(scheme, tls)| {
            let head = url.get(..scheme.len())?;
            head.eq_ignore_ascii_case(scheme).then(|| (&url[scheme.len()..], tls))
        }) else {
            return Err(UrlError::Scheme(expected));
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Whitespace);
        }
        if url.contains('#') {
            return Err(UrlError::Fragment);
        }
        let (authority, resource) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err(UrlError::Credentials);
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return Err(UrlError::UnclosedBracket);
            };
            let port = match after.strip_prefix(':') {
                Some(port) => port.parse().ok(),
                None if after.is_empty() => Some(default_port),
                None => None,
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().ok()),
                None => (authority, Some(default_port)),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let Some(port) = port.filter(|p| *p != 0) else { return Err(UrlError::Port) };
        Ok(Self { tls, host: host.to_owned(), port, authority: authority.to_owned(), resource })
    }

    /// The same URL with `path` in place of an empty one (`/`, `/?query`): for tools whose
    /// server has a usual path (`/ws`).
    ///
    /// ```
    /// use switchboard_client::ServerUrl;
    /// let url = ServerUrl::parse("ws://h?x=1")?.with_default_path("/ws");
    /// assert_eq!(url.resource(), "/ws?x=1");
    /// let url = ServerUrl::parse("ws://h/echo")?.with_default_path("/ws");
    /// assert_eq!(url.resource(), "/echo");
    /// # Ok::<(), switchboard_client::UrlError>(())
    /// ```
    #[must_use]
    pub fn with_default_path(mut self, path: &str) -> Self {
        if self.resource == "/" || self.resource.starts_with("/?") {
            self.resource = format!("{path}{}", &self.resource[1..]);
        }
        self
    }

    /// Whether the connection is TLS: `wss://` or `https://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host to resolve and, with TLS, to verify: a name or an IP address, without
    /// brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, given or default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Host` header: the host as written, with the port when the URL had one.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The request target: path and query, at least `/`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// `host:port` (IPv6 in brackets), for messages and socket addresses.
    ///
    /// ```
    /// let url = switchboard_client::ServerUrl::parse("ws://[::1]/ws")?;
    /// assert_eq!(url.addr(), "[::1]:80");
    /// # Ok::<(), switchboard_client::UrlError>(())
    /// ```
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `http://` or `https://` URL of `path` on the same server (the HTTP API's).
    ///
    /// ```
    /// let url = switchboard_client::ServerUrl::parse("wss://rt.example.com/ws")?;
    /// assert_eq!(url.http_url("/api/publish"), "https://rt.example.com/api/publish");
    /// # Ok::<(), switchboard_client::UrlError>(())
    /// ```
    pub fn http_url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.authority)
    }
}

impl fmt::Display for ServerUrl {
    /// The `ws://` or `wss://` URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.authority, self.resource)
    }
}

const WS_SCHEMES: [(&str, bool); 2] = [("ws://", false), ("wss://", true)];
const ALL_SCHEMES: [(&str, bool); 4] =
    [("ws://", false), ("wss://", true), ("http://", false), ("https://", true)];

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn parses_ws_urls() {
        let e = ServerUrl::parse("ws://127.0.0.1:8080/ws").expect("valid");
        assert_eq!((e.tls, e.host.as_str(), e.port), (false, "127.0.0.1", 8080));
        assert_eq!((e.authority.as_str(), e.resource.as_str()), ("127.0.0.1:8080", "/ws"));
        let e = ServerUrl::parse("WSS://rt.example.com").expect("valid");
        assert_eq!((e.tls, e.port, e.resource.as_str()), (true, 443, "/"));
        let e = ServerUrl::parse("ws://[::1]:9000/ws?x=1").expect("valid");
        assert_eq!((e.host.as_str(), e.port, e.resource.as_str()), ("::1", 9000, "/ws?x=1"));
        assert_eq!(e.authority, "[::1]:9000");
        let e = ServerUrl::parse("ws://host?q").expect("valid");
        assert_eq!(e.resource, "/?q");
    }

    /// URLs `ServerUrl::parse` refuses, and the client builder with it.
    pub(crate) const BAD_URLS: [&str; 9] = [
        "http://x/ws",
        "ws://",
        "ws://:80/",
        "ws://x:0/",
        "ws://x:99999/",
        "ws://[::1/",
        "ws://u:p@x/",
        "ws://x/#frag",
        "ws://x/a b",
    ];

    #[test]
    fn refuses_bad_urls() {
        for url in BAD_URLS {
            assert!(ServerUrl::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn parses_server_urls_accepting_http() {
        let parse = |url| ServerUrl::parse_accepting_http(url).expect(url);
        let t = parse("ws://127.0.0.1:8080/ws");
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.resource.as_str()),
            (false, "127.0.0.1", 8080, "/ws")
        );
        let t = parse("HTTPS://rt.example.com");
        assert_eq!((t.tls, t.port, t.resource.as_str()), (true, 443, "/"));
        assert_eq!(t.to_string(), "wss://rt.example.com/");
        assert_eq!(t.http_url("/api/publish"), "https://rt.example.com/api/publish");
        let t = parse("http://[::1]:9000?x=1");
        assert_eq!((t.host.as_str(), t.port, t.addr()), ("::1", 9000, "[::1]:9000".to_owned()));
        assert_eq!(t.with_default_path("/ws").to_string(), "ws://[::1]:9000/ws?x=1");
        let t = parse("ws://h/echo");
        assert_eq!(t.with_default_path("/ws").resource, "/echo");
    }

    #[test]
    fn refuses_bad_urls_with_a_reason() {
        for (url, why) in [
            ("ftp://x/", UrlError::Scheme("ws://, wss://, http:// or https://")),
            ("127.0.0.1:8080", UrlError::Scheme("ws://, wss://, http:// or https://")),
            ("ws:///ws", UrlError::NoHost),
            ("ws://:80/", UrlError::NoHost),
            ("ws://x:0/", UrlError::Port),
            ("ws://x:http/", UrlError::Port),
            ("ws://[::1/", UrlError::UnclosedBracket),
            ("ws://[::1]x/", UrlError::Port),
            ("ws://u:p@x/", UrlError::Credentials),
            ("ws://x/#a", UrlError::Fragment),
            ("ws://x/a b", UrlError::Whitespace),
        ] {
            assert_eq!(ServerUrl::parse_accepting_http(url), Err(why), "{url}");
        }
        assert_eq!(ServerUrl::parse("http://x/ws"), Err(UrlError::Scheme("ws:// or wss://")));
    }

    #[test]
    fn takes_what_the_load_tool_took() {
        let t = ServerUrl::parse("ws://127.0.0.1:9/socket.io/?EIO=4").expect("valid");
        assert_eq!(
            (t.authority(), t.addr(), t.resource()),
            ("127.0.0.1:9", "127.0.0.1:9".to_owned(), "/socket.io/?EIO=4")
        );
        let t = ServerUrl::parse("ws://localhost").expect("valid");
        assert_eq!(
            (t.authority(), t.addr(), t.resource()),
            ("localhost", "localhost:80".to_owned(), "/")
        );
        assert_eq!(ServerUrl::parse("ws://h:1?x=1").expect("valid").resource(), "/?x=1");
        let t = ServerUrl::parse_accepting_http("http://[::1]:8080/api/publish").expect("valid");
        assert_eq!((t.authority(), t.resource()), ("[::1]:8080", "/api/publish"));
    }
}
