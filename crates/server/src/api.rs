//! The HTTP API for application backends under `/api/`: publish, broadcast, presence,
//! history and disconnect, JSON in and out, behind an API key. `docs/api.md` documents
//! every endpoint.
//!
//! Every request is checked in this order, and the first failure answers: the rate of
//! requests without the API key from the client's address (429), the API is enabled (403),
//! the key (401), the path (404), the method (405), the content type (415), the body size
//! (413), then the body or query itself (400).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::MethodFilter;
use http::header;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Body as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchboard_proto::{
    ErrorBody, ErrorCode, HistoryRequest, PublishRequest, PublishResult, StreamPosition, Value,
    codes,
};

use crate::cluster::{self, Target};
use crate::limits::Reason;
use crate::node::{Kick, Node};
use crate::refusal::{Refusal, not_found, only};
use crate::state::{PeerAddr, Shared};

/// What an endpoint answers: its JSON result, or the refusal.
type ApiResult = Result<Response, Refusal>;

/// The API's routes, behind the checks of [`handle`].
pub(crate) fn router(shared: &Arc<Shared>) -> Router {
    Router::new()
        .route("/api/publish", only(MethodFilter::POST, "POST", publish_route))
        .route("/api/broadcast", only(MethodFilter::POST, "POST", broadcast_route))
        .route("/api/disconnect", only(MethodFilter::POST, "POST", disconnect_route))
        .route("/api/ticket", only(MethodFilter::POST, "POST", ticket))
        .route("/api/presence", only(MethodFilter::GET, "GET", presence_route))
        .route("/api/presence_count", only(MethodFilter::GET, "GET", presence_count_route))
        .route("/api/history", only(MethodFilter::GET, "GET", history_route))
        .route("/api/nodes", only(MethodFilter::GET, "GET", nodes_route))
        .route("/api/channels", only(MethodFilter::GET, "GET", channels_route))
        .fallback(not_found)
        .with_state(Arc::clone(shared))
}

/// Answers one API request: the checks every request goes through (the rate without the
/// key, then the key, but for `/api/ticket`, which takes a token instead), then `api`'s
/// routes (the path, then the method).
pub(crate) async fn handle(req: Request, shared: &Shared, api: Router) -> Response {
    if let Err(refusal) = check_rate(&req, shared) {
        return refusal.into_response();
    }
    if req.uri().path() != "/api/ticket"
        && let Err(refusal) =
            authenticate(req.headers(), shared.config.api_key.as_ref().map(crate::Secret::expose))
    {
        return refusal.into_response();
    }
    serve(req, api).await
}

/// Answers an API request already authenticated (by the key, or by an admin session).
pub(crate) async fn serve(req: Request, mut api: Router) -> Response {
    match tower_service::Service::call(&mut api, req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// Takes a request without the API key from its address's allowance: whoever does not
/// hold the key (a user asking for a ticket, a guesser, anyone while the API is disabled)
/// can cost the server only so many requests, each of which may verify a signature or
/// issue a ticket.
pub(crate) fn check_rate(req: &Request, shared: &Shared) -> Result<(), Refusal> {
    check_rate_of(req, shared, "requests without the API key")
}

/// [`check_rate`], naming what is counted (`what`) in the refusal.
pub(crate) fn check_rate_of(req: &Request, shared: &Shared, what: &str) -> Result<(), Refusal> {
    if authenticate(req.headers(), shared.config.api_key.as_ref().map(crate::Secret::expose))
        .is_ok()
    {
        return Ok(());
    }
    let Some(ip) = req.extensions().get::<PeerAddr>().map(|peer| peer.0.ip()) else {
        return Ok(());
    };
    let options = &shared.config.rate_limits;
    shared.limits.check_api(ip, options, tokio::time::Instant::now()).map_err(|wait| {
        let message = match options.api_rate {
            Some(rate) => format!(
                "too many {what} from this address: at most {} a second, in bursts of {}; \
                 slow down",
                rate.per_second, rate.burst
            ),
            None => format!("too many {what} from this address"),
        };
        Refusal::coded(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, message)
            .with_retry_after(wait)
    })
}

async fn publish_route(State(shared): State<Arc<Shared>>, req: Request) -> ApiResult {
    let req: PublishRequest = read_json(req).await?;
    check_data(&req.data)?;
    let published = publish(&shared.node, &req.channel, req.data).await?;
    shared.metrics.publications.inc();
    Ok(json(&published))
}

async fn broadcast_route(State(shared): State<Arc<Shared>>, req: Request) -> ApiResult {
    let req: BroadcastRequest = read_json(req).await?;
    check_data(&req.data)?;
    let response = broadcast(&shared.node, req).await?;
    let published = response.results.iter().filter(|r| r.is_published()).count();
    shared.metrics.publications.inc_by(published as u64);
    Ok(json(&response))
}

async fn presence_route(State(shared): State<Arc<Shared>>, req: Request) -> ApiResult {
    let query = Query::parse(req.uri().query())?;
    Ok(json(&shared.node.presence(query.required("channel")?).await?))
}

async fn presence_count_route(State(shared): State<Arc<Shared>>, req: Request) -> ApiResult {
    let query = Query::parse(req.uri().query())?;
    Ok(json(&shared.node.presence_count(query.required("channel")?).await?))
}

async fn history_route(State(shared): State<Arc<Shared>>, req: Request) -> ApiResult {
    let req = history_request(&Query::parse(req.uri().query())?)?;
    Ok(json(&shared.node.history(&req).await?))
}

async fn disconnect_route(State(shared): State<Arc<Shared>>, req: Request) -> ApiResult {
    let req: DisconnectRequest = read_json(req).await?;
    let (target, kick) = disconnect_request(req)?;
    Ok(json(&cluster::disconnect(&shared, &target, &kick).await))
}

async fn nodes_route(State(shared): State<Arc<Shared>>) -> ApiResult {
    let nodes = cluster::nodes(&shared).await.map_err(|e| unavailable(&e))?;
    Ok(json(&serde_json::json!({ "nodes": nodes })))
}

async fn channels_route(State(shared): State<Arc<Shared>>, req: Request) -> ApiResult {
    let query = Query::parse(req.uri().query())?;
    let limit = query
        .number("limit")?
        .map_or(cluster::REPORTED_CHANNELS, |n| usize::try_from(n).unwrap_or(usize::MAX));
    Ok(json(&cluster::channels(&shared, limit).await.map_err(|e| unavailable(&e))?))
}

/// The broker could not list the nodes.
fn unavailable(e: &switchboard_broker::BrokerError) -> Refusal {
    Refusal::coded(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        format!("cannot list the nodes: {e}"),
    )
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
    outcome: PublishOutcome,
}

/// A publish's position or why it failed.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum PublishOutcome {
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

/// Checks the `Authorization: apikey <key>` header against the configured key.
fn authenticate(headers: &HeaderMap, key: Option<&str>) -> Result<(), Refusal> {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(Refusal::coded(
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
    Err(Refusal::coded(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("apikey")))
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
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimizer from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
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
async fn ticket(State(shared): State<Arc<Shared>>, req: Request) -> ApiResult {
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
                Refusal::coded(StatusCode::UNAUTHORIZED, code, f.message)
                    .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            })?;
            (claims, true)
        }
        None => {
            authenticate(req.headers(), shared.config.api_key.as_ref().map(crate::Secret::expose))?;
            let body: TicketRequest = read_json(req).await?;
            if body.user.is_empty() || body.user.len() > switchboard_auth::MAX_USER_LEN {
                return Err(Refusal::bad_request("`user` must be 1 to 255 bytes"));
            }
            let expires_in = body.expires_in.unwrap_or(3600);
            if expires_in == 0 || expires_in > MAX_TICKET_IDENTITY_SECS {
                return Err(Refusal::bad_request(format!(
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
    let ticket = issued.map_err(|e| ticket_refused(&e, &shared))?;
    let expires_in = store.config().ttl.as_secs();
    Ok(json(&TicketResponse { ticket: ticket.into_string(), expires_in }))
}

/// The answer to a ticket the store would not issue, counted by reason.
fn ticket_refused(e: &switchboard_auth::Error, shared: &Shared) -> Refusal {
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
    let error = Refusal::coded(status, code, e.reason());
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
pub(crate) async fn publish(
    node: &Node,
    channel: &str,
    data: Value,
) -> Result<PublishResult, ErrorBody> {
    let position = node.publish(channel, data, None).await?;
    Ok(PublishResult { offset: position.offset, epoch: position.epoch })
}

impl ChannelOutcome {
    fn is_published(&self) -> bool {
        matches!(self.outcome, PublishOutcome::Published(_))
    }
}

/// Publishes `data` on each channel in turn; one channel's failure does not stop the rest.
async fn broadcast(node: &Node, req: BroadcastRequest) -> Result<BroadcastResponse, Refusal> {
    let BroadcastRequest { channels, mut data } = req;
    if channels.is_empty() {
        return Err(Refusal::bad_request("`channels` is empty"));
    }
    if channels.len() > MAX_BROADCAST_CHANNELS {
        return Err(Refusal::bad_request(format!(
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
            Ok(position) => PublishOutcome::Published(position),
            Err(error) => PublishOutcome::Failed { error },
        };
        results.push(ChannelOutcome { channel, outcome });
    }
    Ok(BroadcastResponse { results })
}

/// The history request a query string describes.
fn history_request(query: &Query) -> Result<HistoryRequest, Refusal> {
    let channel = query.required("channel")?.to_owned();
    // Saturating: the namespace's history size caps it anyway.
    let limit = query.number("limit")?.map(|l| u32::try_from(l).unwrap_or(u32::MAX));
    let since = match (query.number("since_offset")?, query.get("since_epoch")?) {
        (Some(offset), Some(epoch)) => Some(StreamPosition { offset, epoch: epoch.to_owned() }),
        (None, None) => None,
        _ => {
            return Err(Refusal::bad_request(
                "`since_offset` and `since_epoch` go together: give both or neither",
            ));
        }
    };
    Ok(HistoryRequest { channel, limit, since })
}

/// Asks the connections on this node to close; they get a `disconnect` push first.
fn disconnect_request(req: DisconnectRequest) -> Result<(Target, Kick), Refusal> {
    let code = req.code.unwrap_or(codes::close::RECONNECT);
    // RFC 6455 §7.4.2: 4000–4999 are for applications; the rest mean something else.
    if !(4000..=4999).contains(&code) {
        return Err(Refusal::bad_request(format!("`code` must be in 4000–4999, got {code}")));
    }
    let reason = req.reason.unwrap_or_else(|| DEFAULT_REASON.to_owned());
    if reason.len() > MAX_REASON_BYTES {
        return Err(Refusal::bad_request(format!(
            "`reason` too long: {} > {MAX_REASON_BYTES} bytes",
            reason.len()
        )));
    }
    let target = match (req.client, req.user) {
        (Some(client), None) => Target::Client(client),
        (None, Some(user)) => Target::User(user),
        (Some(_), Some(_)) => {
            return Err(Refusal::bad_request("give `client` or `user`, not both"));
        }
        (None, None) => return Err(Refusal::bad_request("give `client` or `user`")),
    };
    Ok((target, Kick { code, reason }))
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`].
pub(crate) async fn read_json<T: DeserializeOwned>(req: Request) -> Result<T, Refusal> {
    check_content_type(req.headers())?;
    let body = req.into_body();
    // A declared Content-Length over the limit is refused before reading any of it.
    if body.size_hint().lower() > MAX_BODY_BYTES as u64 {
        return Err(too_large());
    }
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
        Err(e) => return Err(Refusal::bad_request(format!("cannot read the body: {e}"))),
    };
    serde_json::from_slice(&bytes).map_err(|e| Refusal::bad_request(format!("invalid body: {e}")))
}

/// The rule `/ws` applies to a `publish`, so every subscriber can decode what is published.
fn check_data(data: &Value) -> Result<(), Refusal> {
    switchboard_proto::check_data_depth(data).map_err(|e| Refusal::bad_request(e.to_string()))
}

fn too_large() -> Refusal {
    Refusal::coded(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::MessageTooLarge,
        format!("body too large: more than {MAX_BODY_BYTES} bytes"),
    )
    // The rest of the body stays unread: this connection cannot carry another request.
    .closing()
}

/// Accepts a missing `Content-Type` and any `application/json`. RFC 8259 §11: the media
/// type has no parameters and a `charset` has no effect, so parameters are ignored.
fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let essence = value.to_str().ok().and_then(|v| v.split(';').next()).map(str::trim);
    if essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    Err(Refusal::coded(
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
    /// The parameters, refusing what a lenient decoder would guess at: a `%` not followed by
    /// two hex digits, and bytes that are not UTF-8 (decoded as U+FFFD).
    fn parse(query: Option<&str>) -> Result<Self, Refusal> {
        let query = query.unwrap_or_default();
        let bad = || Refusal::bad_request(format!("bad percent-encoding in query: {query:?}"));
        let bytes = query.as_bytes();
        let escapes_ok = bytes.iter().enumerate().filter(|(_, b)| **b == b'%').all(|(i, _)| {
            bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
        });
        if !escapes_ok {
            return Err(bad());
        }
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(bytes).map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
        let replaced = |s: &str| s.contains(char::REPLACEMENT_CHARACTER);
        if pairs.iter().any(|(n, v)| replaced(n) || replaced(v)) {
            return Err(bad());
        }
        Ok(Self { pairs })
    }

    /// The parameter's value; given twice it is ambiguous, so refused.
    fn get(&self, name: &str) -> Result<Option<&str>, Refusal> {
        let mut found = self.pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() {
            return Err(Refusal::bad_request(format!("query parameter `{name}` given twice")));
        }
        Ok(first)
    }

    fn required(&self, name: &str) -> Result<&str, Refusal> {
        self.get(name)?
            .ok_or_else(|| Refusal::bad_request(format!("missing query parameter `{name}`")))
    }

    fn number(&self, name: &str) -> Result<Option<u64>, Refusal> {
        self.get(name)?
            .map(|v| {
                v.parse().map_err(|_| {
                    Refusal::bad_request(format!(
                        "query parameter `{name}` must be a non-negative integer, got {v:?}"
                    ))
                })
            })
            .transpose()
    }
}

/// A 200 with `value` as JSON.
fn json<T: Serialize>(value: &T) -> Response {
    let mut bytes = match serde_json::to_vec(value) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an API response");
            let message = "cannot encode the response";
            return Refusal::coded(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, message)
                .into_response();
        }
    };
    bytes.push(b'\n');
    let mut resp = Response::new(Body::from(bytes));
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
            assert_eq!(err.status(), StatusCode::FORBIDDEN);
        }
        let err = authenticate(&headers, Some("k")).map(|()| "accepted").unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
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
}
