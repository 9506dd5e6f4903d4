//! The HTTP API for application backends under `/api/`: publish, broadcast, presence,
//! history and disconnect, JSON in and out, behind an API key. `docs/api.md` documents
//! every endpoint.
//!
//! Every request is checked in this order, and the first failure answers: the rate of
//! requests without the API key from the client's address (429), the API is enabled (403),
//! the key (401), the path (404), the method (405), the content type (415), the body size
//! (413), then the body or query itself (400).

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchboard_broker::StreamOptions;
use switchboard_proto::{
    ErrorBody, ErrorCode, HistoryRequest, PublishRequest, PublishResult, StreamPosition, Value,
    codes,
};

use crate::Shared;
use crate::http::Body;
use crate::limits::Reason;
use crate::node::{Kick, Node, broker_error};

/// Whether `path` belongs to the API (and gets its JSON errors, not the plain-text 404).
pub(crate) fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Answers one API request; never fails: every error becomes a JSON error response.
pub(crate) async fn handle(req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let result = match check_rate(&req, shared) {
        Ok(()) => route(req, shared).await,
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| {
        tracing::debug!(status = e.status.as_u16(), code = %e.body.code, "api request refused");
        e.into_response()
    })
}

/// Takes a request without the API key from its address's allowance: whoever does not
/// hold the key (a user asking for a ticket, a guesser, anyone while the API is disabled)
/// can cost the server only so many requests, each of which may verify a signature or
/// issue a ticket.
fn check_rate(req: &Request<Incoming>, shared: &Shared) -> Result<(), ApiError> {
    if authenticate(req.headers(), shared.config.api_key.as_ref().map(crate::Secret::expose))
        .is_ok()
    {
        return Ok(());
    }
    let Some(ip) = req.extensions().get::<crate::PeerAddr>().map(|peer| peer.0.ip()) else {
        return Ok(());
    };
    let options = &shared.config.rate_limits;
    shared.limits.check_api(ip, options, tokio::time::Instant::now()).map_err(|wait| {
        let message = match options.api_rate {
            Some(rate) => format!(
                "too many requests without the API key from this address: at most {} a \
                 second, in bursts of {}; slow down",
                rate.per_second, rate.burst
            ),
            None => "too many requests without the API key from this address".to_owned(),
        };
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, message)
            .with_retry_after(wait)
    })
}

async fn route(req: Request<Incoming>, shared: &Shared) -> Result<Response<Body>, ApiError> {
    if req.uri().path() == "/api/ticket" {
        ticket(req, shared).await
    } else {
        authenticate(req.headers(), shared.config.api_key.as_ref().map(crate::Secret::expose))?;
        dispatch(req, shared).await
    }
}

/// The endpoints.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Endpoint {
    /// `POST /api/publish`.
    Publish,
    /// `POST /api/broadcast`.
    Broadcast,
    /// `GET /api/presence`.
    Presence,
    /// `GET /api/history`.
    History,
    /// `POST /api/disconnect`.
    Disconnect,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        Some(match path {
            "/api/publish" => Self::Publish,
            "/api/broadcast" => Self::Broadcast,
            "/api/presence" => Self::Presence,
            "/api/history" => Self::History,
            "/api/disconnect" => Self::Disconnect,
            _ => return None,
        })
    }

    fn method(self) -> Method {
        match self {
            Self::Publish | Self::Broadcast | Self::Disconnect => Method::POST,
            Self::Presence | Self::History => Method::GET,
        }
    }
}

/// `POST /api/broadcast`.
#[derive(Debug, Deserialize)]
struct BroadcastRequest {
    channels: Vec<String>,
    data: Value,
}

/// What `POST /api/broadcast` returns.
#[derive(Debug, Serialize)]
struct BroadcastResponse {
    /// One per requested channel, in request order.
    results: Vec<ChannelOutcome>,
}

/// One channel's part of a broadcast.
#[derive(Debug, Serialize)]
struct ChannelOutcome {
    channel: String,
    #[serde(flatten)]
    outcome: Outcome,
}

/// A publish's position or why it failed.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Outcome {
    Published(PublishResult),
    Failed { error: ErrorBody },
}

/// `POST /api/disconnect`.
#[derive(Debug, Deserialize)]
struct DisconnectRequest {
    client: Option<String>,
    user: Option<String>,
    code: Option<u16>,
    reason: Option<String>,
}

/// What `POST /api/disconnect` returns.
#[derive(Debug, Serialize)]
struct DisconnectResponse {
    /// How many connections were asked to close.
    disconnected: usize,
}

/// An error response: its status, its JSON body and at most one header that goes with it.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    header: Option<(HeaderName, HeaderValue)>,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, body: ErrorBody::new(code, message), header: None }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    fn with_header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.header = Some((name, HeaderValue::from_static(value)));
        self
    }

    /// `Retry-After` (RFC 9110 §10.2.3) in whole seconds, rounded up, at least 1.
    fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        self.header = Some((header::RETRY_AFTER, HeaderValue::from(secs)));
        self
    }

    fn into_response(self) -> Response<Body> {
        let mut resp = json_response(self.status, &ErrorResponse { error: &self.body });
        if let Some((name, value)) = self.header {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

impl From<ErrorBody> for ApiError {
    fn from(body: ErrorBody) -> Self {
        Self { status: status_of(body.code), body, header: None }
    }
}

/// The body of every error response.
#[derive(Serialize)]
struct ErrorResponse<'a> {
    error: &'a ErrorBody,
}

/// Checks the `Authorization: apikey <key>` header against the configured key.
fn authenticate(headers: &HeaderMap, key: Option<&str>) -> Result<(), ApiError> {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Unauthorized,
            "the HTTP API is disabled: configure an API key (--api-key or SWITCHBOARD_API_KEY)",
        ));
    };
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| api_key_of(v.as_bytes()));
    let message = match presented {
        Some(presented) if constant_time_eq(presented, key.as_bytes()) => return Ok(()),
        Some(_) => "wrong API key",
        None => "missing API key: send `Authorization: apikey <key>`",
    };
    // RFC 9110 §11.6.1: a 401 names the scheme that would work.
    Err(ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
        .with_header(header::WWW_AUTHENTICATE, "apikey"))
}

/// The key in an `Authorization` value of scheme `apikey`; RFC 9110 §11.1: the scheme is
/// case-insensitive.
fn api_key_of(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    let key = rest.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"apikey") && !key.is_empty()).then_some(key)
}

/// Compares without stopping at the first differing byte, so the response time does not
/// tell a guesser how long a prefix of the key it got right. Only the length can leak,
/// and a long random key has nothing to learn from its length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimizer from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

async fn dispatch(req: Request<Incoming>, shared: &Shared) -> Result<Response<Body>, ApiError> {
    let node = &shared.node;
    let path = req.uri().path();
    let Some(endpoint) = Endpoint::from_path(path) else {
        let message = format!("no API endpoint at {path}: see docs/api.md");
        return Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::BadRequest, message));
    };
    if req.method() != endpoint.method() {
        let allow = if endpoint.method() == Method::GET { "GET" } else { "POST" };
        let message = format!("{} {path} is not allowed: use {allow}", req.method());
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::BadRequest, message)
            .with_header(header::ALLOW, allow));
    }
    match endpoint {
        Endpoint::Publish => {
            let req: PublishRequest = read_json(req).await?;
            check_data(&req.data)?;
            let published = publish(node, &req.channel, req.data).await?;
            shared.metrics.publications.inc();
            Ok(json(&published))
        }
        Endpoint::Broadcast => {
            let req: BroadcastRequest = read_json(req).await?;
            check_data(&req.data)?;
            Ok(json(&broadcast(node, req).await?))
        }
        Endpoint::Presence => {
            let query = Query::parse(req.uri().query())?;
            Ok(json(&node.presence(query.required("channel")?).await?))
        }
        Endpoint::History => {
            let req = history_request(&Query::parse(req.uri().query())?)?;
            Ok(json(&node.history(&req).await?))
        }
        Endpoint::Disconnect => {
            let req: DisconnectRequest = read_json(req).await?;
            Ok(json(&disconnect(node, req)?))
        }
    }
}

/// `POST /api/ticket` with the API key: the identity the ticket stands for.
#[derive(Debug, Deserialize)]
struct TicketRequest {
    user: String,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    info: Option<Value>,
    /// How long the connection's identity lasts, in seconds. Default one hour.
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The longest identity a ticket issued with the API key may carry: a week, after which the
/// connection must come back with fresh credentials.
const MAX_TICKET_IDENTITY_SECS: u64 = 7 * 24 * 3600;

/// What `POST /api/ticket` returns.
#[derive(Debug, Serialize)]
struct TicketResponse {
    ticket: String,
    /// Seconds the ticket stays redeemable.
    expires_in: u64,
}

/// `POST /api/ticket`: a one-time ticket, for a browser to pass as `?ticket=` instead of a
/// long-lived token in the URL. Authenticated by a valid token (`Authorization: Bearer`;
/// the ticket carries its claims) or by the API key (the body names the user and rights).
/// Token holders get a limited share of the store (`TicketStore::issue_limited`), so that
/// neither one user nor all of them can starve the others or the API key.
async fn ticket(req: Request<Incoming>, shared: &Shared) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        let message = format!("{} /api/ticket is not allowed: use POST", req.method());
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::BadRequest, message)
            .with_header(header::ALLOW, "POST"));
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let (claims, limited) = match bearer {
        Some(token) => {
            let claims = shared.auth.verify(token.trim()).map_err(|f| {
                let code =
                    if f.expired { ErrorCode::TokenExpired } else { ErrorCode::Unauthorized };
                ApiError::new(StatusCode::UNAUTHORIZED, code, f.message)
                    .with_header(header::WWW_AUTHENTICATE, "Bearer")
            })?;
            (claims, true)
        }
        None => {
            authenticate(req.headers(), shared.config.api_key.as_ref().map(crate::Secret::expose))?;
            let body: TicketRequest = read_json(req).await?;
            if body.user.is_empty() || body.user.len() > switchboard_auth::MAX_USER_LEN {
                return Err(ApiError::bad_request("`user` must be 1 to 255 bytes"));
            }
            let expires_in = body.expires_in.unwrap_or(3600);
            if expires_in == 0 || expires_in > MAX_TICKET_IDENTITY_SECS {
                return Err(ApiError::bad_request(format!(
                    "`expires_in` must be 1 to {MAX_TICKET_IDENTITY_SECS} seconds"
                )));
            }
            let lifetime = std::time::Duration::from_secs(expires_in);
            let mut claims =
                switchboard_auth::Claims::new(body.user, lifetime, std::time::SystemTime::now());
            claims.channels = body.channels;
            claims.publish = body.publish;
            claims.info = body.info;
            (claims, false)
        }
    };
    let store = shared.auth.tickets();
    let now = std::time::Instant::now();
    let issued = if limited { store.issue_limited(claims, now) } else { store.issue(claims, now) };
    let ticket = issued.map_err(|e| ticket_refused(&e, shared))?;
    let expires_in = store.config().ttl.as_secs();
    Ok(json(&TicketResponse { ticket: ticket.into_string(), expires_in }))
}

/// The answer to a ticket the store would not issue, counted by reason.
fn ticket_refused(e: &switchboard_auth::Error, shared: &Shared) -> ApiError {
    use switchboard_auth::Error;
    let unavailable = (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable);
    let ((status, code), counted) = match *e {
        Error::TicketsPerUser { retry_after, .. } => (
            (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            Some((Reason::TicketsPerUser, retry_after)),
        ),
        Error::TicketStoreFull { retry_after, .. } => {
            (unavailable, Some((Reason::TicketsPending, retry_after)))
        }
        _ => (unavailable, None),
    };
    let error = ApiError::new(status, code, e.reason());
    match counted {
        Some((reason, wait)) => {
            shared.limits.count(reason);
            error.with_retry_after(wait)
        }
        None => error,
    }
}

/// Publishes through the broker like a client's `publish`, without client info and
/// whatever the namespace's `allow_publish` says (that option is about clients).
async fn publish(node: &Node, channel: &str, data: Value) -> Result<PublishResult, ErrorBody> {
    let ns = node.channel_namespace(channel)?;
    let options = StreamOptions::new(ns.history_size, ns.history_ttl);
    let position =
        node.broker.publish(channel, data, None, &options).await.map_err(|e| broker_error(&e))?;
    Ok(PublishResult { offset: position.offset, epoch: position.epoch })
}

/// Publishes `data` on each channel in turn; one channel's failure does not stop the rest.
async fn broadcast(node: &Node, req: BroadcastRequest) -> Result<BroadcastResponse, ApiError> {
    let BroadcastRequest { channels, mut data } = req;
    if channels.is_empty() {
        return Err(ApiError::bad_request("`channels` is empty"));
    }
    if channels.len() > MAX_BROADCAST_CHANNELS {
        return Err(ApiError::bad_request(format!(
            "too many channels: {} > {MAX_BROADCAST_CHANNELS}",
            channels.len()
        )));
    }
    let last = channels.len() - 1;
    let mut results = Vec::with_capacity(channels.len());
    for (i, channel) in channels.into_iter().enumerate() {
        // The broker keeps what it is given: the last channel gets the original.
        let data = if i == last { std::mem::take(&mut data) } else { data.clone() };
        let outcome = match publish(node, &channel, data).await {
            Ok(position) => Outcome::Published(position),
            Err(error) => Outcome::Failed { error },
        };
        results.push(ChannelOutcome { channel, outcome });
    }
    Ok(BroadcastResponse { results })
}

/// The history request a query string describes.
fn history_request(query: &Query) -> Result<HistoryRequest, ApiError> {
    let channel = query.required("channel")?.to_owned();
    // Saturating: the namespace's history size caps it anyway.
    let limit = query.number("limit")?.map(|l| u32::try_from(l).unwrap_or(u32::MAX));
    let since = match (query.number("since_offset")?, query.get("since_epoch")?) {
        (Some(offset), Some(epoch)) => Some(StreamPosition { offset, epoch: epoch.to_owned() }),
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "`since_offset` and `since_epoch` go together: give both or neither",
            ));
        }
    };
    Ok(HistoryRequest { channel, limit, since })
}

/// Asks the connections on this node to close; they get a `disconnect` push first.
fn disconnect(node: &Node, req: DisconnectRequest) -> Result<DisconnectResponse, ApiError> {
    let code = req.code.unwrap_or(codes::close::RECONNECT);
    // RFC 6455 §7.4.2: 4000–4999 are for applications; the rest mean something else.
    if !(4000..=4999).contains(&code) {
        return Err(ApiError::bad_request(format!("`code` must be in 4000–4999, got {code}")));
    }
    let reason = req.reason.unwrap_or_else(|| DEFAULT_REASON.to_owned());
    if reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::bad_request(format!(
            "`reason` too long: {} > {MAX_REASON_BYTES} bytes",
            reason.len()
        )));
    }
    let kick = Kick { code, reason };
    let disconnected = match (req.client, req.user) {
        (Some(client), None) => usize::from(node.disconnect_client(&client, kick)),
        (None, Some(user)) => node.disconnect_user(&user, &kick),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give `client` or `user`, not both"));
        }
        (None, None) => return Err(ApiError::bad_request("give `client` or `user`")),
    };
    Ok(DisconnectResponse { disconnected })
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`].
async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    check_content_type(req.headers())?;
    let body = req.into_body();
    // A declared Content-Length over the limit is refused before reading any of it.
    if body.size_hint().lower() > MAX_BODY_BYTES as u64 {
        return Err(too_large());
    }
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
        Err(e) => return Err(ApiError::bad_request(format!("cannot read the body: {e}"))),
    };
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// The rule `/ws` applies to a `publish`, so every subscriber can decode what is published.
fn check_data(data: &Value) -> Result<(), ApiError> {
    switchboard_proto::check_data_depth(data).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::MessageTooLarge,
        format!("body too large: more than {MAX_BODY_BYTES} bytes"),
    )
    // The rest of the body stays unread: this connection cannot carry another request.
    .with_header(header::CONNECTION, "close")
}

/// Accepts a missing `Content-Type` and any `application/json`. RFC 8259 §11: the media
/// type has no parameters and a `charset` has no effect, so parameters are ignored.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let essence = value.to_str().ok().and_then(|v| v.split(';').next()).map(str::trim);
    if essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::BadRequest,
        format!("content type must be application/json, got {value:?}"),
    ))
}

/// A query string's parameters, decoded as `application/x-www-form-urlencoded`: `+` is a
/// space, `%XX` a byte, and the result must be UTF-8.
#[derive(Debug, Default)]
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut pairs = Vec::new();
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Self { pairs })
    }

    /// The parameter's value; given twice it is ambiguous, so refused.
    fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut found = self.pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() {
            return Err(ApiError::bad_request(format!("query parameter `{name}` given twice")));
        }
        Ok(first)
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)?
            .ok_or_else(|| ApiError::bad_request(format!("missing query parameter `{name}`")))
    }

    fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)?
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "query parameter `{name}` must be a non-negative integer, got {v:?}"
                    ))
                })
            })
            .transpose()
    }
}

/// Decodes one form-encoded component.
fn decode(s: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request(format!("bad percent-encoding in query: {s:?}"));
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.next().and_then(hex).ok_or_else(bad)?;
                let lo = bytes.next().and_then(hex).ok_or_else(bad)?;
                out.push(hi << 4 | lo);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// The status for an error code.
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthorized | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
        ErrorCode::MessageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal | ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A 200 with `value` as JSON.
fn json<T: Serialize>(value: &T) -> Response<Body> {
    json_response(StatusCode::OK, value)
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let (status, mut bytes) = match serde_json::to_vec(value) {
        Ok(bytes) => (status, bytes),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an API response");
            let fallback =
                br#"{"error":{"code":"internal","message":"cannot encode the response","temporary":true}}"#;
            (StatusCode::INTERNAL_SERVER_ERROR, fallback.to_vec())
        }
    };
    bytes.push(b'\n');
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Largest request body, in bytes: 1 MiB.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Most channels in one broadcast.
const MAX_BROADCAST_CHANNELS: usize = 1000;

/// Longest disconnect reason, in bytes. RFC 6455 §5.5: a close frame's reason fits in 123
/// bytes; 100 leaves room and is the same limit for the `disconnect` push.
const MAX_REASON_BYTES: usize = 100;

/// The disconnect reason when none is given.
const DEFAULT_REASON: &str = "disconnected by the server";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_keys_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn reads_the_apikey_scheme() {
        assert_eq!(api_key_of(b"apikey abc"), Some(&b"abc"[..]));
        assert_eq!(api_key_of(b"ApiKey  abc "), Some(&b"abc"[..]));
        assert_eq!(api_key_of(b"Bearer abc"), None);
        assert_eq!(api_key_of(b"apikey "), None);
        assert_eq!(api_key_of(b"apikey"), None);
        assert_eq!(api_key_of(b"apikeyabc"), None);
    }

    #[test]
    fn refuses_without_a_configured_key() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("apikey "));
        for key in [None, Some("")] {
            let err = authenticate(&headers, key).map(|()| "accepted").unwrap_err();
            assert_eq!(err.status, StatusCode::FORBIDDEN);
        }
        let err = authenticate(&headers, Some("k")).map(|()| "accepted").unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("apikey k"));
        assert!(authenticate(&headers, Some("k")).is_ok());
    }

    #[test]
    fn decodes_query_strings() {
        let q = Query::parse(Some("channel=chat%3Alobby&limit=5&x=a+b&flag&&y=%C3%A9")).unwrap();
        assert_eq!(q.get("channel").unwrap(), Some("chat:lobby"));
        assert_eq!(q.number("limit").unwrap(), Some(5));
        assert_eq!(q.get("x").unwrap(), Some("a b"));
        assert_eq!(q.get("flag").unwrap(), Some(""));
        assert_eq!(q.get("y").unwrap(), Some("é"));
        assert_eq!(q.get("missing").unwrap(), None);
        assert!(q.number("x").is_err());
        assert!(Query::parse(Some("a=%zz")).is_err());
        assert!(Query::parse(Some("a=%4")).is_err());
        assert!(Query::parse(Some("a=%ff")).is_err());
        assert!(Query::parse(Some("a=1&a=2")).unwrap().get("a").is_err());
        assert!(Query::parse(None).unwrap().required("channel").is_err());
    }

    #[test]
    fn accepts_json_content_types() {
        let check = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            check_content_type(&headers).is_ok()
        };
        assert!(check("application/json"));
        assert!(check("Application/JSON; charset=utf-8"));
        assert!(!check("text/plain"));
        assert!(!check("application/x-www-form-urlencoded"));
        assert!(!check("application/jsonx"));
        assert!(check_content_type(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn maps_codes_to_statuses() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::InvalidChannel,
            ErrorCode::UnknownNamespace,
            ErrorCode::PermissionDenied,
        ] {
            assert_eq!(status_of(code), StatusCode::BAD_REQUEST);
        }
        assert_eq!(status_of(ErrorCode::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(ErrorCode::Internal), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
