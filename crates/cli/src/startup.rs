//! What `switchboard serve` says as it starts: the setups it refuses because no client could
//! ever use them ([`refusal`]), the warnings for setups that quietly break part of what is
//! served ([`warnings`]), and the block listing what is served ([`summary`]).
//!
//! All three are derived from the settings and the server configuration made of them, never
//! written out by hand, so that they say what this process does.

use std::fmt::Write as _;
use std::net::SocketAddr;

use switchboard_server::{Anonymous, Config, Secret, Transport};

use crate::settings::{BrokerArg, NamespaceName, Settings};

/// Why `settings` make a server nobody can use, with the setting that would fix it; `None`
/// when they do not.
///
/// Credentials required (`--require-auth`, or first-message mode, which requires a token in
/// `connect`) with nothing to verify them: no token verifier, and no API key, without
/// which no ticket can be issued either. Every connection would be refused, and the demo
/// would retry in vain.
pub(crate) fn refusal(settings: &Settings) -> Option<String> {
    let auth = &settings.auth;
    if !(auth.required || auth.first_message) || has_verifier(settings) || has_api(settings) {
        return None;
    }
    let what = if auth.first_message {
        "--first-message-auth ([auth] first_message) closes every connection whose `connect` \
         brings no token"
    } else {
        "--require-auth ([auth] required) refuses every connection without credentials"
    };
    Some(format!(
        "{what}, but this server has no way to accept any: add --jwt-secret (or \
         --jwt-public-key with --jwt-algorithm, or --jwks; [auth] in a configuration file) to \
         verify tokens, or --api-key so that a backend can issue tickets (POST /api/ticket)"
    ))
}

/// Setups that start but quietly break something the server offers, each as one line that
/// says what breaks and how to fix it.
pub(crate) fn warnings(settings: &Settings) -> Vec<String> {
    let mut warnings = Vec::new();
    if !settings.demo {
        return warnings;
    }
    let auth = &settings.auth;
    if auth.required || auth.first_message {
        let flag = if auth.first_message { "--first-message-auth" } else { "--require-auth" };
        warnings.push(format!(
            "the demo at / connects without credentials, which {flag} refuses: its page cannot \
             connect; add --no-demo to leave it out"
        ));
    }
    let missing: Vec<&str> = crate::demo::NAMESPACES
        .into_iter()
        .filter(|name| !settings.namespaces.keys().any(|n| n.0 == *name))
        .collect();
    if !missing.is_empty() {
        let tables: Vec<String> = missing.iter().map(|n| format!("[namespaces.{n}]")).collect();
        warnings.push(format!(
            "the configuration file's [namespaces] replace the built-in set, and leave out {}: \
             the demo's channels there are refused (unknown_namespace); namespaces in effect: \
             {}; to keep {}, add {} (`switchboard config default` shows the built-in keys)",
            join(&missing),
            namespace_list(settings),
            if missing.len() == 1 { "it" } else { "them" },
            join(&tables),
        ));
    }
    warnings
}

/// The start-up block: where the server listens, then one line per thing it serves or
/// decides (endpoints, the HTTP API, credentials, the broker, the namespaces), each a label
/// and what this configuration makes of it. `config` is the one the server runs with, made
/// of `settings`; `addr` where it listens, `tls` whether it serves TLS.
pub(crate) fn summary(
    settings: &Settings,
    config: &Config,
    addr: SocketAddr,
    tls: bool,
) -> Vec<String> {
    let (http, ws) = if tls { ("https", "wss") } else { ("http", "ws") };
    let base = format!("{http}://{addr}");
    let mut lines =
        vec![format!("switchboard listening on {base} (version {})", env!("CARGO_PKG_VERSION"))];
    let mut line = |label: &str, text: String| lines.push(format!("  {label:<10} {text}"));
    let transports = &config.transports;
    if transports.allows(Transport::WebSocket) {
        line("hub", format!("{ws}://{addr}/ws (protocol v1, docs/protocol.md)"));
    } else {
        line("hub", "/ws off (--disable-transport websocket): clients use the fallbacks".into());
    }
    let mut fallbacks = Vec::new();
    if transports.allows(Transport::Sse) {
        fallbacks.push("/sse (Server-Sent Events)");
    }
    if transports.allows(Transport::LongPoll) {
        fallbacks.push("/poll (long-polling)");
    }
    match fallbacks.is_empty() {
        true => line("fallbacks", "off (--disable-transport)".into()),
        false => line("fallbacks", format!("{base}{}, commands to /session", join(&fallbacks))),
    }
    match config.echo {
        true => line("echo", format!("{ws}://{addr}/echo")),
        false => line("echo", "off (--no-echo)".into()),
    }
    match settings.demo {
        true => line("demo", format!("{base}/")),
        false => line("demo", "off (--no-demo)".into()),
    }
    line("status", format!("{base}/status (/status.json, /healthz, /readyz)"));
    line("metrics", format!("{base}/metrics"));
    line("http api", api(settings, &base));
    line("admin", admin(settings, &base));
    line("hooks", hooks(config));
    line("auth", admission(config));
    line("tokens", tokens(settings));
    line("tickets", tickets(settings, config));
    line("broker", broker(settings));
    line("namespaces", namespace_list(settings));
    lines
}

/// The HTTP API: where, or how to turn it on.
fn api(settings: &Settings, base: &str) -> String {
    if has_api(settings) {
        return format!(
            "{base}/api/ (publish, broadcast, presence, history, disconnect, ticket; with the \
             key, docs/api.md)"
        );
    }
    let mut text = "off: --api-key (SWITCHBOARD_API_KEY) turns on /api/".to_owned();
    if has_verifier(settings) {
        text.push_str("; POST /api/ticket still trades a user's token for a ticket");
    }
    text
}

/// Which commands the application's backend decides, and where they go.
fn hooks(config: &Config) -> String {
    let url = |name: &str| config.proxies.get(name).map_or("?", |p| p.url.as_str()).to_owned();
    let mut hooked = Vec::new();
    if let Some(name) = &config.connect_proxy {
        hooked.push(format!("connect → {}", url(name)));
    }
    if let Some(name) = &config.rpc_proxy {
        hooked.push(format!("rpc → {}", url(name)));
    }
    for (ns, options) in &config.hub.namespaces {
        let ns = if ns.is_empty() { "\"\"".to_owned() } else { ns.clone() };
        if let Some(name) = &options.subscribe_proxy {
            hooked.push(format!("subscribe in {ns} → {}", url(name)));
        }
        if let Some(name) = &options.publish_proxy {
            hooked.push(format!("publish in {ns} → {}", url(name)));
        }
    }
    if hooked.is_empty() {
        return "off: [proxies.NAME] with connect_proxy, rpc_proxy or a namespace's \
                subscribe_proxy or publish_proxy (docs/hooks.md)"
            .to_owned();
    }
    hooked.join("; ")
}

/// The admin page: where and how to log in, or how to turn it on.
fn admin(settings: &Settings, base: &str) -> String {
    let set = |secret: &Option<Secret>| secret.as_ref().is_some_and(|s| !s.expose().is_empty());
    if set(&settings.admin_secret) {
        format!("{base}/admin (log in with the admin secret, docs/admin.md)")
    } else if set(&settings.api_key) {
        format!("{base}/admin (log in with the API key, or set --admin-secret; docs/admin.md)")
    } else {
        "off: --admin-secret (SWITCHBOARD_ADMIN_SECRET) or --api-key turns on /admin".to_owned()
    }
}

/// Who may connect without credentials.
fn admission(config: &Config) -> String {
    let auth = &config.auth;
    if auth.first_message {
        let wait = humantime::format_duration(auth.first_message_timeout);
        return format!(
            "credentials required, first message: a `connect` with a token within {wait}, or \
             the connection is closed"
        );
    }
    if auth.required {
        return "credentials required: a connection without them gets 401".to_owned();
    }
    let open: Vec<String> = config
        .hub
        .namespaces
        .iter()
        .filter_map(|(name, ns)| {
            let may = match ns.anonymous {
                Anonymous::Deny => return None,
                Anonymous::Publish if ns.allow_publish => "publish",
                Anonymous::Subscribe | Anonymous::Publish => "subscribe",
            };
            Some(format!("{may} in {}", namespace_name(name)))
        })
        .collect();
    if open.is_empty() {
        "anonymous connections let in, but no namespace allows them anything".to_owned()
    } else {
        format!("anonymous connections may {}; other namespaces need credentials", join(&open))
    }
}

/// How tokens (JWTs) are verified, if they are.
fn tokens(settings: &Settings) -> String {
    let auth = &settings.auth;
    let mut text = if auth.jwt_secret.is_some() {
        "JWT, HS256 with the secret (--jwt-secret)".to_owned()
    } else if let Some(path) = &auth.jwt_public_key {
        let alg = auth.jwt_algorithm.as_deref().unwrap_or_default();
        format!("JWT, {alg} with the public key {}", path.display())
    } else if let Some(path) = &auth.jwks {
        format!("JWT, with the keys of {} (JWKS)", path.display())
    } else {
        return "off: refused without a key to verify them (--jwt-secret, --jwt-public-key or \
                --jwks)"
            .to_owned();
    };
    if let Some(iss) = &auth.jwt_issuer {
        let _ = write!(text, ", issuer {iss}");
    }
    if let Some(aud) = &auth.jwt_audience {
        let _ = write!(text, ", audience {aud}");
    }
    if let Some(cookie) = &auth.token_cookie {
        let _ = write!(text, "; also from the cookie {cookie}");
    }
    text
}

/// Who can have one-time tickets issued.
fn tickets(settings: &Settings, config: &Config) -> String {
    let who = match (has_api(settings), has_verifier(settings)) {
        (true, true) => "with the API key or a user's token",
        (true, false) => "with the API key",
        (false, true) => "with a user's token",
        (false, false) => {
            return "off: nothing can issue them (--api-key, or a token key such as \
                    --jwt-secret)"
                .to_owned();
        }
    };
    let ttl = humantime::format_duration(config.auth.tickets.ttl);
    format!("POST /api/ticket {who}; each serves one connection, within {ttl}")
}

/// The broker, its URL without a password.
fn broker(settings: &Settings) -> String {
    match &settings.broker.url {
        BrokerArg::Memory => {
            "memory: this node alone (--broker redis://… or nats://… for several)".to_owned()
        }
        BrokerArg::Redis(url) => {
            let redis = settings.redis_config(url.expose());
            format!("{} (key prefix {:?})", redis.redacted_url(), settings.broker.redis_key_prefix)
        }
        BrokerArg::Nats(url) => {
            let nats = settings.nats_config(url.expose());
            let prefix = &settings.broker.nats_subject_prefix;
            format!("{} (JetStream, subject prefix {prefix:?})", nats.redacted_url())
        }
    }
}

/// The namespaces in effect.
fn namespace_list(settings: &Settings) -> String {
    if settings.namespaces.is_empty() {
        return "none: every channel is refused".to_owned();
    }
    let names: Vec<&str> = settings
        .namespaces
        .keys()
        .map(|NamespaceName(name)| match name.as_str() {
            "" => "\"\" (the default one, for channels without `:`)",
            name => name,
        })
        .collect();
    names.join(", ")
}

/// A namespace's name in a sentence: `""` is the default one.
fn namespace_name(name: &str) -> &str {
    if name.is_empty() { "the default namespace" } else { name }
}

/// `a`, `a and b`, `a, b and c`.
fn join<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_owned(),
        [rest @ .., last] => {
            let rest: Vec<&str> = rest.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", rest.join(", "), last.as_ref())
        }
    }
}

/// Whether tokens can be verified.
fn has_verifier(settings: &Settings) -> bool {
    let auth = &settings.auth;
    auth.jwt_secret.is_some() || auth.jwt_public_key.is_some() || auth.jwks.is_some()
}

/// Whether the HTTP API is on.
fn has_api(settings: &Settings) -> bool {
    settings.api_key.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_line_never_shows_a_redis_password() {
        let mut settings = Settings::default();
        settings.broker.url = "redis://alice:hunter2@10.0.0.5:6380/2".parse().unwrap();
        let line = broker(&settings);
        assert_eq!(line, "redis://alice:***@10.0.0.5:6380/2 (key prefix \"switchboard\")");
    }

    #[test]
    fn credentials_required_need_a_verifier_or_the_api_key() {
        let mut settings = Settings::default();
        assert_eq!(refusal(&settings), None);
        settings.auth.required = true;
        assert!(refusal(&settings).is_some_and(|why| why.contains("--require-auth")));
        settings.api_key = Some("k".into());
        assert_eq!(refusal(&settings), None, "a backend can issue tickets");
        settings.api_key = None;
        settings.auth.jwks = Some("keys.json".into());
        assert_eq!(refusal(&settings), None, "tokens can be verified");
    }

    #[test]
    fn lists_read_as_sentences() {
        assert_eq!(join::<&str>(&[]), "");
        assert_eq!(join(&["a"]), "a");
        assert_eq!(join(&["a", "b"]), "a and b");
        assert_eq!(join(&["a", "b", "c"]), "a, b and c");
    }
}
