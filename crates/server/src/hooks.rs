//! Calls to the application's backend (`docs/hooks.md`): a client's `subscribe` and
//! `publish` in namespaces that name a proxy, and `rpc`, are POSTed as JSON to the proxy's URL
//! and carried out as the backend answers.
//!
//! The backend answers 200 with `{"result": {…}}` (go ahead, with what the hook takes from
//! the result) or `{"error": {"code", "message"}}` (refuse with that). Anything else — a
//! timeout, a connection refused, another status, an answer that cannot be read — is a
//! failure: the client gets `unavailable` (temporary: it may retry later), never a silent
//! allow. A proxy failing [`BREAKER_FAILURES`] times in a row is not called for
//! [`BREAKER_PAUSE`]: its calls fail at once, then one call tries it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::{Deserialize, Serialize};
use switchboard_proto::{ErrorBody, ErrorCode, Value};
use tokio::time::Instant;

use crate::auth::Identity;
use crate::config::{Config, ProxyEndpoint};
use crate::error::Error;
use crate::refusal::Refusal;

/// Failures in a row after which a proxy is paused.
pub(crate) const BREAKER_FAILURES: u32 = 5;

/// How long a failing proxy is paused.
pub(crate) const BREAKER_PAUSE: Duration = Duration::from_secs(5);

/// The largest answer read from a backend, in bytes: 1 MiB, as the HTTP API's requests.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The longest message of a backend's refusal passed on to the client, in bytes.
const MAX_MESSAGE_BYTES: usize = 256;

/// Which hook a call is for.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Hook {
    Connect,
    Subscribe,
    Publish,
    Rpc,
}

impl Hook {
    fn as_str(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Subscribe => "subscribe",
            Hook::Publish => "publish",
            Hook::Rpc => "rpc",
        }
    }
}

/// A `hook` label.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub(crate) struct HookLabel {
    pub(crate) hook: &'static str,
}

/// A `hook` label and an `outcome` label.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub(crate) struct HookOutcomeLabel {
    pub(crate) hook: &'static str,
    pub(crate) outcome: &'static str,
}

/// The hooks' metrics, registered with the server's.
#[derive(Clone, Debug)]
pub(crate) struct HookMetrics {
    /// Time from sending a call to having its answer, by hook (calls that reached a backend).
    pub(crate) latency: Family<HookLabel, Histogram, fn() -> Histogram>,
    /// Calls by hook and outcome.
    pub(crate) calls: Family<HookOutcomeLabel, Counter>,
}

impl Default for HookMetrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            // 1 ms to about 16 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        }
        Self { latency: Family::new_with_constructor(histogram), calls: Family::default() }
    }
}

/// What a backend answered a hook.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Go ahead; the `result` object (empty when the backend sent none).
    Allow(serde_json::Map<String, Value>),
    /// Refused with this error, for the client.
    Refuse(ErrorBody),
}

/// The configured proxies, with the client that calls them.
#[derive(Debug)]
pub(crate) struct Hooks {
    client: reqwest::Client,
    proxies: HashMap<String, Proxy>,
    rpc: Option<String>,
    connect: Option<String>,
    metrics: HookMetrics,
}

/// One proxy and its breaker.
#[derive(Debug)]
struct Proxy {
    url: reqwest::Url,
    timeout: Duration,
    /// Request headers passed on to the connect hook, lowercase.
    forward_headers: Vec<http::HeaderName>,
    breaker: Mutex<Breaker>,
}

/// Failures in a row, and when calls may resume after a pause.
#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    paused_until: Option<Instant>,
}

impl Hooks {
    /// The proxies of `config`, checked: every name a namespace or `rpc_proxy` gives must be
    /// configured, every URL `http://` or `https://`.
    pub(crate) fn new(config: &Config, metrics: HookMetrics) -> Result<Self, Error> {
        let mut proxies = HashMap::new();
        for (name, endpoint) in &config.proxies {
            proxies.insert(name.clone(), Proxy::new(name, endpoint)?);
        }
        let named = config
            .hub
            .namespaces
            .iter()
            .flat_map(|(ns, o)| {
                [("subscribe_proxy", &o.subscribe_proxy), ("publish_proxy", &o.publish_proxy)]
                    .into_iter()
                    .filter_map(move |(key, name)| {
                        Some((format!("namespace {ns:?} {key}"), name.as_ref()?))
                    })
            })
            .chain(config.rpc_proxy.as_ref().map(|name| ("rpc_proxy".to_owned(), name)))
            .chain(config.connect_proxy.as_ref().map(|name| ("connect_proxy".to_owned(), name)));
        for (what, name) in named {
            if !proxies.contains_key(name) {
                return Err(Error::Config(format!(
                    "{what} names the proxy {name:?}, which is not configured: add a \
                     [proxies.{name}] table with its url"
                )));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("hooks' TLS: {e}")))?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Config(format!("hooks' HTTP client: {e}")))?;
        Ok(Self {
            client,
            proxies,
            rpc: config.rpc_proxy.clone(),
            connect: config.connect_proxy.clone(),
            metrics,
        })
    }

    /// Who a new connection without credentials is, as the connect proxy says: `None` when
    /// there is no connect proxy; else the identity it gave (anonymous when it named no
    /// user), or the refusal to answer the request with (the backend's own, or 503 when it
    /// failed). `headers` are the request's, of which the proxy's `forward_headers` are
    /// passed on; `transport` is `websocket`, `sse` or `long_polling`.
    pub(crate) async fn connect(
        &self,
        headers: &http::HeaderMap,
        transport: &'static str,
    ) -> Option<Result<Identity, Refusal>> {
        let name = self.connect.as_deref()?;
        let forwarded: serde_json::Map<String, Value> = self
            .proxies
            .get(name)
            .map(|proxy| proxy.forward_headers.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|header| {
                let values: Vec<&str> =
                    headers.get_all(header).iter().filter_map(|v| v.to_str().ok()).collect();
                let joined = values.join(if *header == http::header::COOKIE { "; " } else { ", " });
                (!values.is_empty()).then(|| (header.as_str().to_owned(), Value::String(joined)))
            })
            .collect();
        let call = serde_json::json!({"transport": transport, "headers": forwarded});
        let refused = |error: ErrorBody| {
            let status = match error.code {
                ErrorCode::PermissionDenied => http::StatusCode::FORBIDDEN,
                code => crate::refusal::status_of(code),
            };
            let mut refusal = Refusal::coded(status, error.code, error.message);
            if status == http::StatusCode::SERVICE_UNAVAILABLE {
                refusal = refusal.with_retry_after(Duration::from_secs(1));
            }
            refusal
        };
        Some(match self.call(name, Hook::Connect, &call).await {
            Ok(Answer::Allow(result)) => identity(result).map_err(|message| {
                self.count(Hook::Connect, "malformed");
                tracing::warn!(proxy = name, "connect hook: {message}");
                refused(unavailable(message))
            }),
            Ok(Answer::Refuse(error)) | Err(error) => Err(refused(error)),
        })
    }

    fn count(&self, hook: Hook, outcome: &'static str) {
        self.metrics.calls.get_or_create(&HookOutcomeLabel { hook: hook.as_str(), outcome }).inc();
    }

    /// Whether `rpc` has a proxy.
    pub(crate) fn rpc_proxy(&self) -> Option<&str> {
        self.rpc.as_deref()
    }

    /// Calls `proxy` for `hook` with `body`: the backend's answer, or `unavailable` saying why
    /// there is none.
    pub(crate) async fn call(
        &self,
        proxy: &str,
        hook: Hook,
        body: &impl Serialize,
    ) -> Result<Answer, ErrorBody> {
        let outcome = |outcome| {
            self.metrics
                .calls
                .get_or_create(&HookOutcomeLabel { hook: hook.as_str(), outcome })
                .inc();
        };
        let Some(endpoint) = self.proxies.get(proxy) else {
            // Checked at start-up: unreachable unless the configuration changed under us.
            outcome("unreachable");
            return Err(unavailable(format!("the proxy {proxy:?} is not configured")));
        };
        let now = Instant::now();
        if let Some(until) = endpoint.paused(now) {
            outcome("paused");
            let wait = until.saturating_duration_since(now).as_secs() + 1;
            return Err(unavailable(format!(
                "the application's backend failed {BREAKER_FAILURES} times in a row; it is \
                 tried again within {wait} s"
            )));
        }
        let body = match serde_json::to_vec(body) {
            Ok(body) => body,
            Err(e) => {
                outcome("unreachable");
                return Err(unavailable(format!("cannot encode the call: {e}")));
            }
        };
        let started = Instant::now();
        let result = tokio::time::timeout(endpoint.timeout, self.send(endpoint, body)).await;
        let elapsed = started.elapsed();
        let result = result.unwrap_or_else(|_| {
            Err(Failure::Timeout(format!(
                "the application's backend did not answer within {}",
                humantime::format_duration(endpoint.timeout)
            )))
        });
        if !matches!(result, Err(Failure::Unreachable(_))) {
            let label = HookLabel { hook: hook.as_str() };
            self.metrics.latency.get_or_create(&label).observe(elapsed.as_secs_f64());
        }
        match result {
            Ok(answer) => {
                endpoint.succeeded();
                outcome(match answer {
                    Answer::Allow(_) => "allowed",
                    Answer::Refuse(_) => "refused",
                });
                Ok(answer)
            }
            Err(failure) => {
                endpoint.failed(Instant::now());
                let (label, message) = match failure {
                    Failure::Timeout(m) => ("timeout", m),
                    Failure::Unreachable(m) => ("unreachable", m),
                    Failure::Status(m) => ("bad_status", m),
                    Failure::Malformed(m) => ("malformed", m),
                };
                outcome(label);
                tracing::warn!(proxy, hook = hook.as_str(), "hook failed: {message}");
                Err(unavailable(message))
            }
        }
    }

    async fn send(&self, endpoint: &Proxy, body: Vec<u8>) -> Result<Answer, Failure> {
        let mut response = self
            .client
            .post(endpoint.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                Failure::Unreachable(format!("the application's backend cannot be reached: {e}"))
            })?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(Failure::Status(format!("the application's backend answered {status}")));
        }
        if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(Failure::Malformed(format!(
                "the application's backend answered more than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            Failure::Unreachable(format!("the application's backend's answer broke off: {e}"))
        })? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Failure::Malformed(format!(
                    "the application's backend answered more than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        parse_answer(&bytes).map_err(Failure::Malformed)
    }
}

/// Why a call has no answer.
#[derive(Debug)]
enum Failure {
    Timeout(String),
    Unreachable(String),
    Status(String),
    Malformed(String),
}

impl Proxy {
    fn new(name: &str, endpoint: &ProxyEndpoint) -> Result<Self, Error> {
        let url = reqwest::Url::parse(&endpoint.url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| {
                Error::Config(format!(
                    "proxies.{name}.url must be an http:// or https:// URL, got {:?}",
                    endpoint.url
                ))
            })?;
        if endpoint.timeout.is_zero() {
            return Err(Error::Config(format!("proxies.{name}.timeout must be above 0")));
        }
        let forward_headers = endpoint
            .forward_headers
            .iter()
            .map(|header| {
                http::HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    Error::Config(format!(
                        "proxies.{name}.forward_headers: {header:?} is not a header name"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { url, timeout: endpoint.timeout, forward_headers, breaker: Mutex::default() })
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Until when calls fail at once; `None` lets this one through (also the one call that
    /// tries again after a pause).
    fn paused(&self, now: Instant) -> Option<Instant> {
        let mut breaker = self.breaker();
        match breaker.paused_until {
            Some(until) if now < until => Some(until),
            Some(_) => {
                // One call tries; the others still wait until it fails again or succeeds.
                breaker.paused_until = Some(now + BREAKER_PAUSE);
                None
            }
            None => None,
        }
    }

    fn succeeded(&self) {
        *self.breaker() = Breaker::default();
    }

    fn failed(&self, now: Instant) {
        let mut breaker = self.breaker();
        breaker.failures = breaker.failures.saturating_add(1);
        if breaker.failures >= BREAKER_FAILURES {
            breaker.paused_until = Some(now + BREAKER_PAUSE);
        }
    }
}

/// A backend's answer: `{"result": {…}}` or `{"error": {"code", "message"}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    #[serde(default)]
    result: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
struct WireError {
    code: ErrorCode,
    #[serde(default)]
    message: Option<String>,
}

/// Reads an answer; why it cannot be used otherwise.
fn parse_answer(bytes: &[u8]) -> Result<Answer, String> {
    let wire: Wire = serde_json::from_slice(bytes).map_err(|e| {
        format!("the application's backend's answer is not {{\"result\"}} or {{\"error\"}}: {e}")
    })?;
    match (wire.result, wire.error) {
        (Some(result), None) => Ok(Answer::Allow(result)),
        (None, Some(error)) => {
            if matches!(error.code, ErrorCode::Unknown | ErrorCode::Internal) {
                return Err(format!(
                    "the application's backend refused with {:?}, which is not a code it may use",
                    error.code.as_str()
                ));
            }
            let mut message =
                error.message.unwrap_or_else(|| "refused by the application".to_owned());
            if message.len() > MAX_MESSAGE_BYTES {
                let mut end = MAX_MESSAGE_BYTES;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            Ok(Answer::Refuse(ErrorBody::new(error.code, message)))
        }
        _ => {
            Err("the application's backend's answer must hold one of `result` and `error`"
                .to_owned())
        }
    }
}

/// The connect hook's `result`: who the connection is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectResult {
    user: Option<String>,
    #[serde(default)]
    info: Option<Value>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    expires_at: Option<u64>,
}

/// The identity a connect hook's result gives; why it cannot be used otherwise.
fn identity(result: serde_json::Map<String, Value>) -> Result<Identity, String> {
    let result: ConnectResult = serde_json::from_value(Value::Object(result))
        .map_err(|e| format!("the connect hook's result cannot be read: {e}"))?;
    let Some(user) = result.user else {
        if result.channels.is_empty() && result.publish.is_empty() && result.info.is_none() {
            return Ok(Identity::anonymous());
        }
        return Err("the connect hook's result grants channels but names no `user`".to_owned());
    };
    if user.is_empty() || user.len() > switchboard_auth::MAX_USER_LEN {
        return Err(format!(
            "the connect hook's `user` must be 1 to {} bytes",
            switchboard_auth::MAX_USER_LEN
        ));
    }
    let mut claims =
        switchboard_auth::Claims::new(user, Duration::MAX, std::time::SystemTime::now());
    if let Some(expires_at) = result.expires_at {
        claims.exp = expires_at;
    }
    claims.info = result.info;
    claims.channels = result.channels;
    claims.publish = result.publish;
    Ok(Identity::from_claims(claims))
}

fn unavailable(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::Unavailable, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        assert!(matches!(parse_answer(br#"{"result":{}}"#), Ok(Answer::Allow(m)) if m.is_empty()));
        let Ok(Answer::Allow(m)) = parse_answer(br#"{"result":{"data":[1]}}"#) else { panic!() };
        assert_eq!(m["data"], serde_json::json!([1]));
        let Ok(Answer::Refuse(e)) =
            parse_answer(br#"{"error":{"code":"permission_denied","message":"not in this room"}}"#)
        else {
            panic!()
        };
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::PermissionDenied, "not in this room"));
        let long =
            format!(r#"{{"error":{{"code":"bad_request","message":"{}"}}}}"#, "é".repeat(200));
        let Ok(Answer::Refuse(e)) = parse_answer(long.as_bytes()) else { panic!() };
        assert!(e.message.len() <= MAX_MESSAGE_BYTES, "{}", e.message.len());
        for bad in [
            &b"{}"[..],
            br#"{"result":{},"error":{"code":"bad_request"}}"#,
            br#"{"error":{"code":"internal"}}"#,
            br#"{"error":{"code":"made_up"}}"#,
            br#"{"result":[]}"#,
            br#"{"allow":true}"#,
            b"<html>",
        ] {
            assert!(parse_answer(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_failing_proxy_is_paused_then_tried_once() {
        let proxy = Proxy::new("p", &ProxyEndpoint::new("http://127.0.0.1:1/")).unwrap();
        let start = Instant::now();
        for _ in 0..BREAKER_FAILURES - 1 {
            proxy.failed(start);
            assert_eq!(proxy.paused(start), None, "not yet");
        }
        proxy.failed(start);
        assert_eq!(proxy.paused(start), Some(start + BREAKER_PAUSE));
        let later = start + BREAKER_PAUSE;
        assert_eq!(proxy.paused(later), None, "one call tries again");
        assert_eq!(proxy.paused(later), Some(later + BREAKER_PAUSE), "the others wait for it");
        proxy.succeeded();
        assert_eq!(proxy.paused(later), None);
    }
}
