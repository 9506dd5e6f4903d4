//! The one answer to every request the server turns down before a WebSocket exists: a
//! refused upgrade, an HTTP API error, an unknown path or a wrong method.
//!
//! Always JSON, `{"error": {"code": "…", "message": "…", "temporary": …}}`, with
//! `Content-Type: application/json` and the status the refusal calls for, so a client reads
//! every refusal the same way whichever route gave it (see `docs/api.md`).

use std::borrow::Cow;
use std::time::Duration;

use axum::body::Body;
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use http::header::{self, HeaderName};
use http::{HeaderValue, Method, StatusCode, Uri};
use serde::Serialize;
use switchboard_proto::{ErrorBody, ErrorCode};

/// A refused request: its status, the body's code and message, and the headers that go
/// with it (`Allow`, `Retry-After`, `WWW-Authenticate`, `Connection: close`).
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    code: Cow<'static, str>,
    message: Cow<'static, str>,
    temporary: bool,
    /// Few, and a refusal travels in `Result`s: a `Vec` keeps it small.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    /// A refusal; `temporary` (the same request may succeed later) follows from the status:
    /// 429, 500 and 503 are, the rest are not.
    pub(crate) fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        let temporary = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::INTERNAL_SERVER_ERROR
                | StatusCode::SERVICE_UNAVAILABLE
        );
        Self { status, code: code.into(), message: message.into(), temporary, headers: Vec::new() }
    }

    /// A refusal with one of the protocol's error codes.
    pub(crate) fn coded(
        status: StatusCode,
        code: ErrorCode,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        let mut refusal = Self::new(status, code.as_str(), message);
        refusal.temporary = code.is_temporary();
        refusal
    }

    /// 400 `bad_request`.
    pub(crate) fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::coded(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// The one 404: nothing is served at `path`.
    pub(crate) fn not_found(path: &str) -> Self {
        let message = format!("nothing is served at {path}: see docs/api.md for the routes");
        Self::coded(StatusCode::NOT_FOUND, ErrorCode::BadRequest, message)
    }

    /// The one 405: `path` is served, to the methods in `allow` only (RFC 9110 §15.5.6: the
    /// answer lists them in `Allow`).
    pub(crate) fn method_not_allowed(
        method: &http::Method,
        path: &str,
        allow: &'static str,
    ) -> Self {
        let message = format!("{method} {path} is not allowed: use {allow}");
        Self::coded(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::BadRequest, message)
            .with_header(header::ALLOW, HeaderValue::from_static(allow))
    }

    /// The status.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// Adds a header to the answer.
    pub(crate) fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    /// `Retry-After` (RFC 9110 §10.2.3) in whole seconds, rounded up, at least 1.
    pub(crate) fn with_retry_after(self, wait: Duration) -> Self {
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        self.with_header(header::RETRY_AFTER, HeaderValue::from(secs))
    }

    /// `Connection: close`: the client has nothing more to say on this connection (a
    /// refused upgrade), or the rest of its request stays unread (a body too large).
    pub(crate) fn closing(self) -> Self {
        self.with_header(header::CONNECTION, HeaderValue::from_static("close"))
    }
}

impl From<ErrorBody> for Refusal {
    /// A command's error, with the status its code calls for.
    fn from(body: ErrorBody) -> Self {
        let mut refusal = Self::new(status_of(body.code), body.code.as_str(), body.message);
        refusal.temporary = body.temporary;
        refusal
    }
}

/// The body of every refusal.
#[derive(Serialize)]
struct Envelope<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    temporary: bool,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        tracing::debug!(status = self.status().as_u16(), code = %self.code, "request refused");
        let envelope = Envelope {
            error: Inner { code: &self.code, message: &self.message, temporary: self.temporary },
        };
        let mut body = serde_json::to_vec(&envelope).unwrap_or_default();
        body.push(b'\n');
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            h.insert(name, value);
        }
        resp
    }
}

/// A route for `GET` (and so `HEAD`, answered like `GET` without the body) only.
pub(crate) fn read_only<H, T, S>(handler: H) -> MethodRouter<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    only(MethodFilter::GET, "GET, HEAD", handler)
}

/// A route for the methods of `filter`, refusing the others with the one 405.
pub(crate) fn only<H, T, S>(
    filter: MethodFilter,
    allow: &'static str,
    handler: H,
) -> MethodRouter<S>
where
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    on(filter, handler).fallback(move |method: Method, uri: Uri| async move {
        Refusal::method_not_allowed(&method, uri.path(), allow)
    })
}

/// The one 404.
pub(crate) async fn not_found(uri: Uri) -> Refusal {
    Refusal::not_found(uri.path())
}

/// The status for a protocol error code.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthorized | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
        ErrorCode::MessageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal | ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(resp: Response) -> serde_json::Value {
        use http_body_util::BodyExt as _;
        let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn every_refusal_has_one_shape() {
        let resp = Refusal::new(StatusCode::FORBIDDEN, "origin_not_allowed", "no").into_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body(resp).await,
            serde_json::json!({"error": {"code": "origin_not_allowed", "message": "no",
                                         "temporary": false}})
        );
        let limited = Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "draining", "later")
            .with_retry_after(Duration::from_millis(1500))
            .closing()
            .into_response();
        assert_eq!(limited.headers()[header::RETRY_AFTER], "2");
        assert_eq!(limited.headers()[header::CONNECTION], "close");
        assert_eq!(body(limited).await["error"]["temporary"], true);
    }

    #[tokio::test]
    async fn wrong_methods_name_the_allowed_ones() {
        let resp = Refusal::method_not_allowed(&http::Method::PUT, "/healthz", "GET, HEAD")
            .into_response();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD");
        let error = body(resp).await;
        assert_eq!(error["error"]["code"], "bad_request");
        assert_eq!(error["error"]["message"], "PUT /healthz is not allowed: use GET, HEAD");
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
