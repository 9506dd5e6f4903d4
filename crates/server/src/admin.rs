//! The admin page at `/admin`, for operators (`docs/admin.md`).
//!
//! Off (404) unless an admin secret or the API key is configured. Operators log in with the
//! admin secret (the API key when there is no admin secret) and get a session cookie; the
//! page then reads and acts through the HTTP API under `/admin/api/`, the same endpoints as
//! `/api/`, so what it shows and does covers every node.
//!
//! - **Sessions are signed, not stored**: the cookie holds its expiry and an HMAC-SHA256 of
//!   it under the secret, so any node of a deployment accepts it, and changing the secret
//!   ends every session. `HttpOnly` (scripts cannot read it), `SameSite=Strict` (no other
//!   site's page sends it), `Path=/admin`, `Secure` when the server speaks TLS.
//! - **CSRF-safe**: besides the cookie, every request under `/admin/api/` carries
//!   `X-CSRF-Token`, an HMAC of the session that only a page of this origin can read (from
//!   the login answer or `GET /admin/session`). A form or script of another site can send
//!   the cookie (with an older browser) but cannot know the token.
//! - **Guessing is slow**: login attempts count against the allowance of requests without
//!   the API key from their address (`api_rate`), like `/api/` requests without the key.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{MethodFilter, any};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use serde::Deserialize;
use sha2::Sha256;
use switchboard_proto::ErrorCode;

use crate::api;
use crate::config::Config;
use crate::refusal::{Refusal, only, read_only};
use crate::state::Shared;
use crate::status::{json_text, static_file};

/// How long a login lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The session cookie's name.
const COOKIE: &str = "switchboard_admin";

/// The header that carries the CSRF token.
const CSRF_HEADER: &str = "x-csrf-token";

/// The page itself; its script and style are among the status page's assets.
const PAGE: &[u8] = include_bytes!("../assets/admin.html");

/// What the admin page's sessions are signed with: the admin secret, else the API key.
/// `None`: the page is off.
fn secret(config: &Config) -> Option<&str> {
    fn set(secret: Option<&crate::Secret>) -> Option<&str> {
        secret.map(crate::Secret::expose).filter(|s| !s.is_empty())
    }
    set(config.admin_secret.as_ref()).or_else(|| set(config.api_key.as_ref()))
}

/// The admin routes: the page, login, session, logout and the API under `/admin/api/`,
/// which answers like `api` (the `/api/` router) once the session and CSRF token check.
pub(crate) fn router(api: &Router) -> Router<Arc<Shared>> {
    let mut router = Router::new()
        .route("/admin", read_only(page))
        .route("/admin/login", only(MethodFilter::POST, "POST", login))
        .route("/admin/session", read_only(session))
        .route("/admin/logout", only(MethodFilter::POST, "POST", logout));
    for path in ["/admin/api", "/admin/api/", "/admin/api/{*rest}"] {
        let api = api.clone();
        router = router.route(
            path,
            any(move |State(shared): State<Arc<Shared>>, req: Request| async move {
                through_api(req, &shared, api).await
            }),
        );
    }
    router
}

/// `GET /admin`: the page, or 404 saying how to turn it on.
async fn page(State(shared): State<Arc<Shared>>) -> Response {
    match secret(&shared.config) {
        Some(_) => static_file("text/html; charset=utf-8", PAGE),
        None => off().into_response(),
    }
}

fn off() -> Refusal {
    Refusal::coded(
        StatusCode::NOT_FOUND,
        ErrorCode::BadRequest,
        "the admin page is off: set an admin secret (--admin-secret or \
         SWITCHBOARD_ADMIN_SECRET) or an API key (--api-key)",
    )
}

/// `POST /admin/login`.
#[derive(Debug, Deserialize)]
struct Login {
    secret: String,
}

/// `POST /admin/login` `{"secret": …}`: 200 `{"csrf", "expires_in"}` with the session
/// cookie; 401 for a wrong secret; 429 past the address's allowance.
async fn login(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let Some(secret) = secret(&shared.config) else { return off().into_response() };
    // Shared with the API's requests without the key: whoever guesses one guesses the other.
    if let Err(refusal) =
        api::check_rate_of(&req, &shared, "logins and requests without the API key")
    {
        return refusal.into_response();
    }
    let https = shared.tls.is_some();
    let login: Login = match api::read_json(req).await {
        Ok(login) => login,
        Err(refusal) => return refusal.into_response(),
    };
    if !api::constant_time_eq(login.secret.as_bytes(), secret.as_bytes()) {
        shared.metrics.admin_logins_refused.inc();
        return Refusal::coded(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "wrong admin secret",
        )
        .into_response();
    }
    let expiry = unix_secs() + SESSION_LIFETIME.as_secs();
    let token = session_token(secret, expiry);
    let mut resp = session_answer(secret, &token, expiry);
    let cookie = format!(
        "{COOKIE}={token}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if https { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, value);
    }
    resp
}

/// `GET /admin/session`: `{"csrf", "expires_in"}` while logged in, else 401.
async fn session(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(secret) = secret(&shared.config) else { return off().into_response() };
    match logged_in(secret, &headers) {
        Ok((token, expiry)) => session_answer(secret, token, expiry),
        Err(refusal) => refusal.into_response(),
    }
}

/// `POST /admin/logout`: 204, the cookie cleared. Sessions are not stored, so the old cookie
/// stays valid until it expires for whoever copied it; changing the secret ends them all.
async fn logout() -> Response {
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let cookie = format!("{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, value);
    }
    resp
}

/// `/admin/api/…`: with a valid session and its CSRF token, the request goes to the API as
/// `/api/…`, without the API key.
async fn through_api(mut req: Request, shared: &Shared, api: Router) -> Response {
    let Some(secret) = secret(&shared.config) else { return off().into_response() };
    let token = match logged_in(secret, req.headers()) {
        Ok((token, _)) => token.to_owned(),
        Err(refusal) => return refusal.into_response(),
    };
    let presented = req.headers().get(CSRF_HEADER).map(HeaderValue::as_bytes);
    if !presented.is_some_and(|csrf| csrf_matches(secret, &token, csrf)) {
        shared.metrics.admin_csrf_refused.inc();
        return Refusal::coded(
            StatusCode::FORBIDDEN,
            ErrorCode::Unauthorized,
            "missing or wrong X-CSRF-Token: send the token from the login answer or \
             GET /admin/session",
        )
        .into_response();
    }
    let rest = req.uri().path().strip_prefix("/admin").unwrap_or("/api").to_owned();
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest,
    };
    match path_and_query.parse::<Uri>() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return Refusal::bad_request("unreadable path").into_response(),
    }
    api::serve(req, api).await
}

/// The session the request's cookie holds, and its expiry; 401 without a valid one.
fn logged_in<'h>(secret: &str, headers: &'h HeaderMap) -> Result<(&'h str, u64), Refusal> {
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(name, value)| (name == COOKIE).then_some(value));
    let unauthorized = |message: &'static str| {
        Refusal::coded(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(unauthorized("not logged in: POST /admin/login first"));
    };
    match check_session(secret, token, unix_secs()) {
        Some(expiry) => Ok((token, expiry)),
        None => Err(unauthorized("the session expired or is not valid: log in again")),
    }
}

/// 200 `{"csrf", "expires_in"}` for `token`.
fn session_answer(secret: &str, token: &str, expiry: u64) -> Response {
    let body = serde_json::json!({
        "csrf": csrf_token(secret, token),
        "expires_in": expiry.saturating_sub(unix_secs()),
    });
    let mut resp = json_text(StatusCode::OK, body.to_string() + "\n");
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// HMAC-SHA256 under `secret` of `purpose` and `text`, which are kept apart so that no
/// token of one kind is ever valid as another.
fn mac(secret: &str, purpose: &str, text: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(b"switchboard admin ");
    mac.update(purpose.as_bytes());
    mac.update(b"\n");
    mac.update(text.as_bytes());
    mac
}

/// A new session valid until `expiry` (Unix seconds): `<expiry>.<nonce>.<signature>`. The
/// random nonce makes every login's session, and so its CSRF token, its own.
fn session_token(secret: &str, expiry: u64) -> String {
    let nonce: [u8; 16] = rand::random();
    let payload = format!("{expiry}.{}", URL_SAFE_NO_PAD.encode(nonce));
    let signature = mac(secret, "session", &payload).finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The expiry of `token` when its signature holds and it has not expired at `now`.
fn check_session(secret: &str, token: &str, now: u64) -> Option<u64> {
    let (payload, signature) = token.rsplit_once('.')?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    // Verified in constant time, before anything in it is read.
    mac(secret, "session", payload).verify_slice(&signature).ok()?;
    let expiry: u64 = payload.split('.').next()?.parse().ok()?;
    (expiry > now).then_some(expiry)
}

/// The CSRF token of session `token`.
fn csrf_token(secret: &str, token: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(secret, "csrf", token).finalize().into_bytes())
}

fn csrf_matches(secret: &str, token: &str, presented: &[u8]) -> bool {
    let Ok(presented) = URL_SAFE_NO_PAD.decode(presented) else { return false };
    mac(secret, "csrf", token).verify_slice(&presented).is_ok()
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_until_it_expires_under_its_secret_only() {
        let token = session_token("s3cret", 1_000);
        assert_eq!(check_session("s3cret", &token, 999), Some(1_000));
        assert_eq!(check_session("s3cret", &token, 1_000), None, "expired");
        assert_eq!(check_session("other", &token, 999), None, "another secret");
        let (_, rest) = token.split_once('.').unwrap();
        assert_eq!(check_session("s3cret", &format!("9999.{rest}"), 999), None, "moved");
        assert_ne!(session_token("s3cret", 1_000), token, "each login its own session");
        for junk in ["", ".", "1000", "1000.", "x.y", "1000.!!"] {
            assert_eq!(check_session("s3cret", junk, 0), None, "{junk:?}");
        }
    }

    #[test]
    fn a_csrf_token_belongs_to_one_session() {
        let (a, b) = (session_token("k", 10), session_token("k", 11));
        let csrf = csrf_token("k", &a);
        assert!(csrf_matches("k", &a, csrf.as_bytes()));
        assert!(!csrf_matches("k", &b, csrf.as_bytes()), "another session");
        assert!(!csrf_matches("other", &a, csrf.as_bytes()), "another secret");
        assert!(!csrf_matches("k", &a, b"not-base64!"));
        assert!(!csrf_matches("k", &a, b""));
        // Neither token passes for the other kind.
        let (_, signature) = a.rsplit_once('.').unwrap();
        assert!(!csrf_matches("k", &a, signature.as_bytes()));
    }
}
