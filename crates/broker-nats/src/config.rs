//! How to reach NATS and how the broker uses it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use switchboard_broker::BrokerError;

/// Where NATS is and how the broker behaves around it. Plain data: start from
/// [`NatsConfig::default`] or [`NatsConfig::new`] and set fields.
#[derive(Clone, Eq, PartialEq)]
#[non_exhaustive]
pub struct NatsConfig {
    /// The server: `nats://[user:password@]host:port` (or `nats://token@host:port`), or
    /// `tls://…` to require TLS
    /// (certificates checked against the system's roots plus
    /// [`tls_root_certificates`](Self::tls_root_certificates)). Several servers of one cluster
    /// may be given, separated by commas. Default `nats://127.0.0.1:4222`. All nodes of a
    /// deployment must use the same NATS system (and account).
    pub url: String,
    /// Starts every subject, and names the stream and buckets, so several deployments can
    /// share one NATS account: letters, digits, `-` and `_` only. Default `switchboard`.
    pub subject_prefix: String,
    /// A `.creds` file (JWT and NKey seed) to authenticate with. Default none.
    pub credentials_file: Option<PathBuf>,
    /// A token to authenticate with. Default none.
    pub token: Option<String>,
    /// Refuse to talk to a server that does not offer TLS, whatever the URL says. Default
    /// `false` (`tls://` URLs require it anyway).
    pub tls_required: bool,
    /// A PEM file of extra root certificates, for servers with a private CA. Default none.
    pub tls_root_certificates: Option<PathBuf>,
    /// How often this node refreshes the presence entries of its clients and sweeps
    /// expired ones (announcing their leaves). Entries expire after three times this
    /// without a refresh, which bounds how long a crashed node's clients stay listed.
    /// Default 10 s.
    pub presence_heartbeat: Duration,
    /// How long one connection attempt may take, TLS handshake included. Default 2 s.
    pub connect_timeout: Duration,
    /// How long one request to JetStream (a publish's acknowledgement, a history read) may
    /// take before the operation fails with `Unavailable`. Default 2 s.
    pub request_timeout: Duration,
    /// At [`NatsBroker::connect`](crate::NatsBroker::connect): `false` fails at once when
    /// NATS cannot be reached; `true` retries with backoff until it can. After connecting,
    /// the broker always reconnects on its own. Default `false`.
    pub wait_for_nats: bool,
    /// Bytes of history one channel serves (the publications' JSON): the oldest go first,
    /// offsets stay consecutive, and a recovery that needed them gets `recovered: false`.
    /// 0 for no cap. Default 1 MiB. What the stream stores is bounded by each namespace's
    /// `history_size` and by [`max_stream_bytes`](Self::max_stream_bytes).
    pub max_history_bytes: usize,
    /// The stream's total size in bytes, over all channels; past it the oldest messages of
    /// the whole stream go (an idle channel may lose its history, and then starts a new
    /// epoch). 0 for no limit. Default 1 GiB.
    pub max_stream_bytes: u64,
    /// The oldest message the stream keeps, over all channels: a channel idle for longer
    /// starts a new epoch. Must be at least the longest `history_ttl`. Default 24 h.
    pub max_stream_age: Duration,
    /// Copies JetStream keeps of the stream and buckets (1 to 5; a clustered NATS for more
    /// than 1). Default 1.
    pub replicas: usize,
}

impl NatsConfig {
    /// The defaults with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Self::default() }
    }

    /// How long a presence entry lives without a refresh.
    pub(crate) fn presence_lifetime(&self) -> Duration {
        self.presence_heartbeat.saturating_mul(3)
    }

    /// Refuses settings the broker cannot work with.
    pub(crate) fn validate(&self) -> Result<(), BrokerError> {
        let refuse = |why: &str| Err(BrokerError::Internal(format!("invalid nats config: {why}")));
        let prefix_ok = !self.subject_prefix.is_empty()
            && self.subject_prefix.len() <= MAX_PREFIX
            && self
                .subject_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !prefix_ok {
            return refuse("subject_prefix must be 1 to 32 letters, digits, `-` or `_`");
        }
        if self.presence_heartbeat < MIN_DURATION {
            return refuse("presence_heartbeat must be at least 1 ms");
        }
        if self.connect_timeout < MIN_DURATION || self.request_timeout < MIN_DURATION {
            return refuse("timeouts must be at least 1 ms");
        }
        if self.max_stream_age < Duration::from_secs(1) {
            return refuse("max_stream_age must be at least 1 s");
        }
        if !(1..=5).contains(&self.replicas) {
            return refuse("replicas must be 1 to 5");
        }
        Ok(())
    }

    /// The URL without its password, for messages and logs.
    pub fn redacted_url(&self) -> String {
        self.url.split(',').map(redact).collect::<Vec<_>>().join(",")
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            subject_prefix: "switchboard".to_owned(),
            credentials_file: None,
            token: None,
            tls_required: false,
            tls_root_certificates: None,
            presence_heartbeat: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            wait_for_nats: false,
            max_history_bytes: 1 << 20,
            max_stream_bytes: 1 << 30,
            max_stream_age: Duration::from_secs(24 * 3600),
            replicas: 1,
        }
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.redacted_url())
            .field("subject_prefix", &self.subject_prefix)
            .field("credentials_file", &self.credentials_file)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("tls_required", &self.tls_required)
            .field("tls_root_certificates", &self.tls_root_certificates)
            .field("presence_heartbeat", &self.presence_heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("wait_for_nats", &self.wait_for_nats)
            .field("max_history_bytes", &self.max_history_bytes)
            .field("max_stream_bytes", &self.max_stream_bytes)
            .field("max_stream_age", &self.max_stream_age)
            .field("replicas", &self.replicas)
            .finish()
    }
}

/// `url` with the password between `:` and `@` in its authority replaced by `***`.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_owned() };
    let userinfo = &rest[..at];
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let scheme = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
    format!("{scheme}{user}:***@{}", &rest[at + 1..])
}

/// Durations below this are refused.
const MIN_DURATION: Duration = Duration::from_millis(1);

/// The longest subject prefix: it names the stream and buckets too.
const MAX_PREFIX: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("tls://alice:s3:cr@t@h:1"), "tls://alice:***@h:1");
        let config = NatsConfig::new("nats://u:secret@a:1,nats://u:secret@b:2");
        assert_eq!(config.redacted_url(), "nats://u:***@a:1,nats://u:***@b:2");
        let debug = format!("{:?}", NatsConfig { token: Some("tok".into()), ..config });
        assert!(!debug.contains("secret") && !debug.contains("tok\""), "{debug}");
    }

    #[test]
    fn refuses_bad_prefixes_and_zero_durations() {
        assert!(NatsConfig::default().validate().is_ok());
        for prefix in ["", "a.b", "a*", "a b", &"x".repeat(33)] {
            let config = NatsConfig { subject_prefix: prefix.to_owned(), ..NatsConfig::default() };
            assert!(config.validate().is_err(), "{prefix:?}");
        }
        let zero = NatsConfig { presence_heartbeat: Duration::ZERO, ..NatsConfig::default() };
        assert!(zero.validate().is_err());
        let zero = NatsConfig { request_timeout: Duration::ZERO, ..NatsConfig::default() };
        assert!(zero.validate().is_err());
        let replicas = NatsConfig { replicas: 0, ..NatsConfig::default() };
        assert!(replicas.validate().is_err());
    }
}
