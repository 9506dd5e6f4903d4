//! Who is connecting: Origin checks and credentials, decided before the upgrade.

use std::time::{Instant, SystemTime};

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE, SEC_WEBSOCKET_PROTOCOL};
use switchboard_auth::{Claims, Permissions, TicketStore, Verifier};

use crate::config::{AuthOptions, OriginOptions};

/// The prefix of the subprotocol entry that carries a bearer token from a browser, which
/// cannot set `Authorization` on a WebSocket. Never echoed back; matched without regard to
/// ASCII case, so that a client spelling it `Switchboard.Bearer.` is not refused with its
/// token read back to it as an unsupported subprotocol.
const BEARER_PROTOCOL_PREFIX: &str = "switchboard.bearer.";

/// The token of a bearer subprotocol entry, whatever the case of its prefix.
pub(crate) fn bearer_protocol_token(entry: &str) -> Option<&str> {
    let prefix = entry.get(..BEARER_PROTOCOL_PREFIX.len())?;
    prefix.eq_ignore_ascii_case(BEARER_PROTOCOL_PREFIX).then(|| &entry[prefix.len()..])
}

/// Whether an offered subprotocol entry may hold a secret, so that it is neither echoed in a
/// refusal nor logged: a bearer entry, anything naming a bearer or token, a JWT (its header
/// is base64url JSON, `eyJ…`), a ticket, or anything longer than a protocol name needs.
pub(crate) fn looks_like_credential(entry: &str) -> bool {
    let lower = entry.to_ascii_lowercase();
    bearer_protocol_token(entry).is_some()
        || lower.contains("bearer")
        || lower.contains("token")
        || entry.contains("eyJ")
        || is_ticket_shaped(entry)
        || entry.len() > MAX_PLAIN_PROTOCOL_LEN
}

/// The longest offered subprotocol echoed as is: registered names are short
/// (`switchboard.v1.msgpack` is 22 bytes).
const MAX_PLAIN_PROTOCOL_LEN: usize = 40;

/// An authenticated (or anonymous) client's identity and rights, as its transport's door
/// established them (a node verifies one for tests and tools with `Node::authenticate`).
#[derive(Clone, Debug)]
pub struct Identity {
    claims: Option<Claims>,
    permissions: Permissions,
}

impl Identity {
    /// No credentials: what a client that brought none is, where anonymous clients are
    /// let in.
    pub fn anonymous() -> Self {
        Self { claims: None, permissions: Permissions::anonymous() }
    }

    /// From verified claims.
    pub(crate) fn from_claims(claims: Claims) -> Self {
        let permissions = Permissions::from_claims(&claims);
        Self { claims: Some(claims), permissions }
    }

    /// The user, when authenticated.
    pub(crate) fn user(&self) -> Option<&str> {
        self.claims.as_ref().map(Claims::user)
    }

    /// Application data from the credentials, shown in presence.
    pub(crate) fn info(&self) -> Option<&serde_json::Value> {
        self.claims.as_ref().and_then(|c| c.info.as_ref())
    }

    /// When the credentials expire.
    pub(crate) fn expires_at(&self) -> Option<SystemTime> {
        self.claims.as_ref().map(Claims::expires_at)
    }

    /// What the credentials grant.
    pub(crate) fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// Whether the connection is authenticated.
    pub(crate) fn is_authenticated(&self) -> bool {
        self.claims.is_some()
    }
}

/// Verifies tokens and redeems tickets for the whole server.
#[derive(Debug)]
pub(crate) struct Authenticator {
    verifier: Option<std::sync::Arc<Verifier>>,
    tickets: TicketStore,
}

/// A refused credential, for a 401 (or 503) before the upgrade.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct AuthFailure {
    /// The HTTP status.
    pub(crate) status: u16,
    /// A stable label for the body, logs and metrics.
    pub(crate) code: &'static str,
    /// A one-line reason.
    pub(crate) message: &'static str,
    /// Whether the token was only expired (the client should fetch a new one).
    pub(crate) expired: bool,
}

impl AuthFailure {
    fn from_auth(e: &switchboard_auth::Error) -> Self {
        Self {
            status: e.http_status(),
            code: e.as_label(),
            message: e.reason(),
            expired: e.is_expired(),
        }
    }

    /// Credentials are required and none came.
    pub(crate) fn required() -> Self {
        Self {
            status: 401,
            code: "credentials_required",
            message: "this server requires a token or a ticket",
            expired: false,
        }
    }

    fn no_verifier() -> Self {
        Self {
            status: 401,
            code: "tokens_not_accepted",
            message: "this server is not configured to verify tokens",
            expired: false,
        }
    }
}

/// Where a credential came from, in the order they are looked for.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Credential<'a> {
    /// `Authorization: Bearer …` (non-browser clients).
    Bearer(&'a str),
    /// A `switchboard.bearer.<token>` subprotocol entry (browsers).
    Protocol(&'a str),
    /// The configured cookie.
    Cookie(&'a str),
    /// `?token=` when allowed.
    Query(&'a str),
    /// `?ticket=`: a one-time ticket.
    Ticket(&'a str),
}

impl Authenticator {
    /// The server's authenticator.
    pub(crate) fn new(options: &AuthOptions) -> Self {
        Self {
            verifier: options.verifier.clone(),
            tickets: TicketStore::new(options.tickets.clone()),
        }
    }

    /// Verifies a token.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, AuthFailure> {
        let verifier = self.verifier.as_ref().ok_or_else(AuthFailure::no_verifier)?;
        verifier.verify(token, SystemTime::now()).map_err(|e| AuthFailure::from_auth(&e))
    }

    /// Turns a credential into an identity.
    pub(crate) fn authenticate(&self, credential: Credential<'_>) -> Result<Identity, AuthFailure> {
        let claims = match credential {
            // A ticket is accepted in every slot a token is (a browser that holds only
            // tickets uses the same code); anything not shaped like one is a token.
            Credential::Bearer(token)
            | Credential::Protocol(token)
            | Credential::Cookie(token)
            | Credential::Query(token)
                if !is_ticket_shaped(token) =>
            {
                self.verify(token)?
            }
            Credential::Bearer(ticket)
            | Credential::Protocol(ticket)
            | Credential::Cookie(ticket)
            | Credential::Query(ticket)
            | Credential::Ticket(ticket) => {
                let claims = self
                    .tickets
                    .redeem(ticket, Instant::now())
                    .map_err(|e| AuthFailure::from_auth(&e))?;
                // The ticket outlives nothing: the token it was issued for must still hold.
                let leeway = self.verifier.as_ref().map(|v| v.leeway()).unwrap_or_default();
                if claims.is_expired_at(SystemTime::now(), leeway) {
                    return Err(AuthFailure::from_auth(&switchboard_auth::Error::Expired));
                }
                claims
            }
        };
        Ok(Identity::from_claims(claims))
    }

    /// Authenticates what a client sent in `connect`: a JWT (three dot-separated parts) or
    /// a one-time ticket (no dots).
    pub(crate) fn authenticate_token(&self, token: &str) -> Result<Identity, AuthFailure> {
        self.authenticate(Credential::Bearer(token))
    }

    /// The ticket store, for `POST /api/ticket`.
    pub(crate) fn tickets(&self) -> &TicketStore {
        &self.tickets
    }

    /// How long a token's expiry is stretched (clock skew between issuer and server).
    pub(crate) fn leeway(&self) -> std::time::Duration {
        self.verifier.as_ref().map(|v| v.leeway()).unwrap_or_default()
    }
}

/// Whether `s` looks like a ticket: 32 random bytes in unpadded URL-safe base64.
fn is_ticket_shaped(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Finds the request's credential, looking in order at `Authorization: Bearer`, the
/// bearer subprotocol entry, the cookie, `?token=` (when allowed) and `?ticket=`.
pub(crate) fn find_credential<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    options: &AuthOptions,
) -> Option<Credential<'a>> {
    if let Some(token) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // RFC 9110 §11.1: the scheme is case-insensitive.
        .and_then(|v| v.get(..7).filter(|s| s.eq_ignore_ascii_case("bearer ")).map(|_| &v[7..]))
    {
        return Some(Credential::Bearer(token.trim()));
    }
    for value in headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
        let Ok(value) = value.to_str() else { continue };
        if let Some(token) = value.split(',').map(str::trim).find_map(bearer_protocol_token) {
            return Some(Credential::Protocol(token));
        }
    }
    if let Some(name) = &options.token_cookie {
        for value in headers.get_all(COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            let found = value
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k == name)
                .map(|(_, v)| v);
            if let Some(token) = found {
                return Some(Credential::Cookie(token));
            }
        }
    }
    let params = || query.into_iter().flat_map(|q| q.split('&')).filter_map(|p| p.split_once('='));
    if options.danger_token_in_query
        && let Some((_, token)) = params().find(|(k, _)| *k == "token")
    {
        return Some(Credential::Query(token));
    }
    params().find(|(k, _)| *k == "ticket").map(|(_, t)| Credential::Ticket(t))
}

/// An `Origin` or allowlist entry: scheme, host (maybe `*.` wildcarded) and port.
#[derive(Debug, Eq, PartialEq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]`; anything else (paths, user info, `null`) is not an
    /// origin.
    fn parse(text: &str) -> Option<Self> {
        let (scheme, rest) = text.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        if rest.is_empty() || rest.contains(['/', '@', '?', '#', ' ']) {
            return None;
        }
        let (host, port) = split_host_port(rest)?;
        Some(Self { scheme, host, port: port.unwrap_or(default_port) })
    }

    /// Whether this (allowlist) entry admits `origin`.
    fn admits(&self, origin: &Origin) -> bool {
        if self.scheme != origin.scheme || self.port != origin.port {
            return false;
        }
        match self.host.strip_prefix("*.") {
            // A subdomain on a label boundary: `a.example.com`, never `example.com.evil.org`
            // nor `badexample.com`.
            Some(domain) => origin
                .host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => self.host == origin.host,
        }
    }
}

/// Splits `host[:port]`, `[v6][:port]`; lowercases the host.
fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p.parse().ok()?)),
            None => (text.to_ascii_lowercase(), None),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

/// Checks a request's `Origin` against the allowlist (RFC 6455 §10.2, §4.2.1 item 7).
///
/// # Errors
///
/// A one-line reason for the 403.
pub(crate) fn check_origin(
    origin: Option<&str>,
    host: Option<&str>,
    options: &OriginOptions,
) -> Result<(), String> {
    let Some(text) = origin else {
        return if options.allow_missing {
            Ok(())
        } else {
            Err("an Origin header is required".to_owned())
        };
    };
    let refuse = || Err(format!("origin {text:?} is not allowed"));
    let Some(origin) = Origin::parse(text) else { return refuse() };
    if options.allow_localhost
        && matches!(origin.host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
    {
        return Ok(());
    }
    // The server's own origin: the page was served by this host (and port, when the Host
    // header names one; behind a TLS-terminating proxy the schemes differ).
    if let Some((host, port)) = host.and_then(split_host_port)
        && host == origin.host
        && port.is_none_or(|p| p == origin.port)
    {
        return Ok(());
    }
    let admitted = options
        .allowed
        .iter()
        .filter_map(|entry| Origin::parse(entry))
        .any(|entry| entry.admits(&origin));
    if admitted { Ok(()) } else { refuse() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(allowed: &[&str]) -> OriginOptions {
        OriginOptions {
            allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
            allow_localhost: false,
            allow_missing: false,
        }
    }

    #[test]
    fn exact_and_wildcard_origins_compare_parsed_parts() {
        let o = options(&["https://app.example.com", "https://*.example.org"]);
        let host = Some("ws.example.net");
        assert!(check_origin(Some("https://app.example.com"), host, &o).is_ok());
        assert!(check_origin(Some("https://APP.example.com:443"), host, &o).is_ok());
        assert!(check_origin(Some("https://a.b.example.org"), host, &o).is_ok());
        for bad in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.com.evil.org",
            "https://evilapp.example.com",
            "https://example.org",
            "https://badexample.org",
            "https://example.org.evil.com",
            "null",
            "https://app.example.com/path",
            "https://user@app.example.com",
        ] {
            assert!(check_origin(Some(bad), host, &o).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_origin_and_localhost() {
        let mut o = options(&[]);
        assert!(
            check_origin(Some("https://chat.example.com"), Some("chat.example.com"), &o).is_ok()
        );
        assert!(check_origin(Some("http://h:8080"), Some("h:8080"), &o).is_ok());
        assert!(check_origin(Some("http://h:8081"), Some("h:8080"), &o).is_err());
        assert!(check_origin(Some("http://localhost:3000"), Some("h"), &o).is_err());
        o.allow_localhost = true;
        assert!(check_origin(Some("http://localhost:3000"), Some("h"), &o).is_ok());
        assert!(check_origin(Some("http://[::1]:3000"), Some("h"), &o).is_ok());
        assert!(check_origin(Some("http://localhost.evil.org"), Some("h"), &o).is_err());
    }

    #[test]
    fn missing_origin_follows_the_switch() {
        let mut o = options(&[]);
        assert!(check_origin(None, Some("h"), &o).is_err());
        o.allow_missing = true;
        assert!(check_origin(None, Some("h"), &o).is_ok());
    }

    #[test]
    fn a_ticket_works_in_any_token_slot_once() {
        let auth = Authenticator::new(&AuthOptions::default());
        let claims = Claims::new("ann", std::time::Duration::from_secs(60), SystemTime::now());
        let ticket = auth.tickets().issue(claims, Instant::now()).unwrap().into_string();
        let identity = auth.authenticate(Credential::Protocol(&ticket)).unwrap();
        assert_eq!(identity.user(), Some("ann"));
        let again = auth.authenticate(Credential::Bearer(&ticket)).unwrap_err();
        assert_eq!(again.code, "ticket_invalid");
        // Without a verifier a JWT-shaped token is refused, not taken for a ticket.
        let jwt = auth.authenticate(Credential::Bearer("a.b.c")).unwrap_err();
        assert_eq!(jwt.code, "tokens_not_accepted");
    }

    #[test]
    fn bearer_entries_match_in_any_case_and_secrets_are_recognised() {
        assert_eq!(bearer_protocol_token("switchboard.bearer.t"), Some("t"));
        assert_eq!(bearer_protocol_token("Switchboard.Bearer.t"), Some("t"));
        assert_eq!(bearer_protocol_token("SWITCHBOARD.BEARER."), Some(""));
        assert_eq!(bearer_protocol_token("switchboard.bearer"), None);
        assert_eq!(bearer_protocol_token("switchboard.v1.json"), None);
        // A multi-byte character where the prefix would end: no panic, no match.
        assert_eq!(bearer_protocol_token("switchboard.beare\u{e9}x"), None);
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.bWFj";
        for secret in [
            "Switchboard.Bearer.x",
            "my.bearer.x",
            "access_token.x",
            jwt,
            "x.eyJzdWIiOiJhbm4ifQ",
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
        ] {
            assert!(looks_like_credential(secret), "{secret}");
        }
        for name in ["mqtt", "switchboard.v1.json", "switchboard.v1.msgpack", "graphql-ws"] {
            assert!(!looks_like_credential(name), "{name}");
        }
    }

    #[test]
    fn bearer_header_scheme_is_case_insensitive() {
        let options = AuthOptions::default();
        for value in ["Bearer t1", "bearer t1", "BEARER t1"] {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, value.parse().unwrap());
            assert_eq!(find_credential(&headers, None, &options), Some(Credential::Bearer("t1")));
        }
        let mut headers = HeaderMap::new();
        headers.insert(SEC_WEBSOCKET_PROTOCOL, "Switchboard.Bearer.t2".parse().unwrap());
        assert_eq!(find_credential(&headers, None, &options), Some(Credential::Protocol("t2")));
    }

    #[test]
    fn credentials_are_found_in_order() {
        let mut headers = HeaderMap::new();
        let mut options = AuthOptions { token_cookie: Some("sb".into()), ..AuthOptions::default() };
        headers.insert(COOKIE, "a=1; sb=cookie-token".parse().unwrap());
        assert_eq!(
            find_credential(&headers, Some("ticket=t1"), &options),
            Some(Credential::Cookie("cookie-token"))
        );
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            "switchboard.v1.json, switchboard.bearer.proto-token".parse().unwrap(),
        );
        assert_eq!(
            find_credential(&headers, None, &options),
            Some(Credential::Protocol("proto-token"))
        );
        headers.insert(AUTHORIZATION, "Bearer header-token".parse().unwrap());
        assert_eq!(
            find_credential(&headers, None, &options),
            Some(Credential::Bearer("header-token"))
        );
        let empty = HeaderMap::new();
        assert_eq!(find_credential(&empty, Some("token=q"), &options), None);
        options.danger_token_in_query = true;
        assert_eq!(
            find_credential(&empty, Some("x=1&token=q"), &options),
            Some(Credential::Query("q"))
        );
        assert_eq!(
            find_credential(&empty, Some("ticket=t"), &options),
            Some(Credential::Ticket("t"))
        );
    }
}
