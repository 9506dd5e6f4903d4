//! The admin page's door over real sockets: off without a secret, login, the session
//! cookie, the CSRF token, and the API behind them. The page itself is tested in Chromium
//! (`clients/js/test/admin.test.js`).

use std::net::SocketAddr;

use serde_json::{Value, json};
use switchboard_server::Config;
use switchboard_test_support::http::{self, Response};
use switchboard_test_support::metrics::{sample, scrape};
use switchboard_test_support::server::{TestServer, open_config};

const KEY: &str = "api-key-for-admin-tests-0123456789";
const ADMIN: &str = "admin-secret-for-tests-0123456789";

fn config(api_key: Option<&str>, admin_secret: Option<&str>) -> Config {
    let mut config = open_config();
    config.api_key = api_key.map(Into::into);
    config.admin_secret = admin_secret.map(Into::into);
    config
}

async fn login(addr: SocketAddr, secret: &str) -> Response {
    let body = json!({ "secret": secret }).to_string();
    http::request(addr, "POST", "/admin/login", &[("Content-Type", "application/json")], &body)
        .await
}

/// A logged-in operator: the cookie pair and the CSRF token.
struct Operator {
    cookie: String,
    csrf: String,
}

impl Operator {
    async fn log_in(addr: SocketAddr, secret: &str) -> Self {
        let resp = login(addr, secret).await;
        assert_eq!(resp.status, 200, "{resp}");
        let set = resp.header("set-cookie").expect("a session cookie").to_owned();
        let cookie = set.split(';').next().expect("name=value").to_owned();
        let csrf = resp.json()["csrf"].as_str().expect("csrf").to_owned();
        Self { cookie, csrf }
    }

    async fn call(&self, addr: SocketAddr, method: &str, path: &str, body: &str) -> Response {
        let headers = [
            ("Cookie", self.cookie.as_str()),
            ("X-CSRF-Token", self.csrf.as_str()),
            ("Content-Type", "application/json"),
        ];
        http::request(addr, method, path, &headers, body).await
    }
}

#[tokio::test]
async fn the_page_is_off_without_a_secret_or_an_api_key() {
    let server = TestServer::start(config(None, None)).await;
    for (method, path) in [
        ("GET", "/admin"),
        ("POST", "/admin/login"),
        ("GET", "/admin/session"),
        ("GET", "/admin/api/nodes"),
    ] {
        let resp = http::request(server.addr, method, path, &[], "{}").await;
        let error = resp.refusal(404, "bad_request");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains("--admin-secret"), "{method} {path}: {message}");
    }
}

#[tokio::test]
async fn an_operator_logs_in_with_the_api_key_and_works_through_the_api() {
    let server = TestServer::start(config(Some(KEY), None)).await;
    let page = http::get(server.addr, "/admin").await;
    assert_eq!(page.status, 200, "{page}");
    assert!(
        page.header("content-security-policy").is_some_and(|p| p.contains("default-src 'self'"))
    );

    let wrong = login(server.addr, "guess").await;
    assert_eq!(wrong.refusal(401, "unauthorized")["message"], "wrong admin secret");
    assert!(wrong.header("set-cookie").is_none());
    assert_eq!(
        sample(&scrape(server.addr).await, "switchboard_admin_logins_refused_total"),
        Some(1.0)
    );

    let resp = login(server.addr, KEY).await;
    let cookie = resp.header("set-cookie").expect("cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=43200"] {
        assert!(cookie.split("; ").any(|a| a == attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: a Secure cookie would never come back");
    assert_eq!(resp.json()["expires_in"], 43200);

    let operator = Operator::log_in(server.addr, KEY).await;
    let session =
        http::request(server.addr, "GET", "/admin/session", &[("Cookie", &operator.cookie)], "")
            .await;
    assert_eq!(session.status, 200, "{session}");
    assert_eq!(session.json()["csrf"], operator.csrf.as_str(), "the page gets its token back");

    let nodes = operator.call(server.addr, "GET", "/admin/api/nodes", "").await;
    assert_eq!(nodes.status, 200, "{nodes}");
    assert_eq!(nodes.json()["nodes"].as_array().map(Vec::len), Some(1));
    let body = json!({"channel": "news", "data": {"text": "from the admin page"}}).to_string();
    let published = operator.call(server.addr, "POST", "/admin/api/publish", &body).await;
    assert_eq!(published.json()["offset"], 1, "{published}");
    let history =
        operator.call(server.addr, "GET", "/admin/api/history?channel=news&limit=5", "").await;
    assert_eq!(history.json()["publications"][0]["data"], json!({"text": "from the admin page"}));
    let unknown = operator.call(server.addr, "GET", "/admin/api/nope", "").await;
    assert_eq!(unknown.status, 404, "{unknown}");

    let logout = http::request(server.addr, "POST", "/admin/logout", &[], "").await;
    assert_eq!(logout.status, 204);
    assert!(logout.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")), "{logout}");
}

#[tokio::test]
async fn requests_without_the_session_or_its_csrf_token_are_refused() {
    let server = TestServer::start(config(Some(KEY), None)).await;
    let operator = Operator::log_in(server.addr, KEY).await;
    let other = Operator::log_in(server.addr, KEY).await;
    let body = r#"{"channel": "news", "data": 1}"#;
    let publish = |headers: Vec<(&'static str, String)>| async move {
        let mut all: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        all.push(("Content-Type", "application/json"));
        http::request(server.addr, "POST", "/admin/api/publish", &all, body).await
    };

    // No cookie at all: a forged form or a stranger.
    let resp = publish(vec![("X-CSRF-Token", operator.csrf.clone())]).await;
    assert!(
        resp.refusal(401, "unauthorized")["message"].as_str().unwrap().contains("not logged in")
    );
    // The cookie alone, as another site's form would send it.
    let resp = publish(vec![("Cookie", operator.cookie.clone())]).await;
    assert!(
        resp.refusal(403, "unauthorized")["message"].as_str().unwrap().contains("X-CSRF-Token")
    );
    // The cookie with a token of another session, or none that decodes.
    for csrf in [other.csrf.clone(), "x".to_owned(), String::new()] {
        let resp = publish(vec![("Cookie", operator.cookie.clone()), ("X-CSRF-Token", csrf)]).await;
        assert_eq!(resp.status, 403, "{resp}");
    }
    // A forged or altered cookie.
    let (expiry, rest) = operator.cookie.split_once('.').expect("expiry.nonce.signature");
    let later = expiry.replace("switchboard_admin=1", "switchboard_admin=2");
    for cookie in [format!("{later}.{rest}"), "switchboard_admin=".to_owned()] {
        let resp = publish(vec![("Cookie", cookie), ("X-CSRF-Token", operator.csrf.clone())]).await;
        assert_eq!(resp.status, 401, "{resp}");
    }
    let metrics = scrape(server.addr).await;
    assert_eq!(sample(&metrics, "switchboard_admin_requests_refused_csrf_total"), Some(4.0));
    // None of them published.
    let history = operator.call(server.addr, "GET", "/admin/api/history?channel=news", "").await;
    assert_eq!(history.json()["offset"], 0, "{history}");
    // The session does not open /api/ itself: that takes the key.
    let direct =
        http::request(server.addr, "GET", "/api/nodes", &[("Cookie", &operator.cookie)], "").await;
    assert_eq!(direct.status, 401, "{direct}");
}

#[tokio::test]
async fn an_admin_secret_is_the_only_way_in_once_set() {
    let server = TestServer::start(config(Some(KEY), Some(ADMIN))).await;
    assert_eq!(login(server.addr, KEY).await.status, 401, "the API key is the backends'");
    let operator = Operator::log_in(server.addr, ADMIN).await;
    let nodes = operator.call(server.addr, "GET", "/admin/api/nodes", "").await;
    assert_eq!(nodes.status, 200, "{nodes}");

    // Without an API key, the admin secret still opens the page and its API.
    let alone = TestServer::start(config(None, Some(ADMIN))).await;
    let operator = Operator::log_in(alone.addr, ADMIN).await;
    let nodes = operator.call(alone.addr, "GET", "/admin/api/channels", "").await;
    assert_eq!(nodes.json(), json!({"channels": [], "truncated": false}));
    // Sessions are signed with the secret: another server's secret, another session.
    let elsewhere = TestServer::start(config(None, Some("another-secret-0123456789abcdef"))).await;
    let foreign = operator.call(elsewhere.addr, "GET", "/admin/api/nodes", "").await;
    assert_eq!(foreign.status, 401, "{foreign}");
}

#[tokio::test]
async fn guessing_the_secret_is_rate_limited_per_address() {
    let mut config = config(Some(KEY), None);
    config.rate_limits.exempt_loopback = false;
    let server = TestServer::start(config).await;
    let mut refused = 0;
    let limited = loop {
        assert!(refused < 100, "{refused} wrong logins, none rate limited");
        let resp = login(server.addr, "guess").await;
        if resp.status != 401 {
            break resp;
        }
        refused += 1;
    };
    assert!(refused >= 50, "the burst of 50: {refused}");
    let error: Value = limited.refusal(429, "rate_limited");
    assert_eq!(error["temporary"], true);
    assert!(limited.header("retry-after").is_some(), "{limited}");
    // Even the right secret waits: nothing is compared while the address is limited.
    assert_eq!(login(server.addr, KEY).await.status, 429);
}
