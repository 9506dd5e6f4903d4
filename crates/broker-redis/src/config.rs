//! How to reach Redis and how the broker uses it.

use std::fmt;
use std::time::Duration;

use switchboard_broker::BrokerError;

/// Where Redis is and how the broker behaves around it. Plain data: start from
/// [`RedisConfig::default`] or [`RedisConfig::new`] and set fields.
#[derive(Clone, Eq, PartialEq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server: `redis://[[user]:password@]host[:port][/db]`, or `rediss://…` for TLS
    /// (certificates checked against the system's roots, or the bundle named by the
    /// `SSL_CERT_FILE` environment variable). Default
    /// `redis://127.0.0.1:6379/0`. All nodes of a deployment must use the same server and
    /// database.
    pub url: String,
    /// Starts every key and pub/sub topic (`{prefix:channel}:…`), so several deployments
    /// can share one Redis. Must not hold `{` or `}`. Default `switchboard`.
    pub key_prefix: String,
    /// How often this node refreshes the presence entries of its clients and sweeps
    /// expired ones (announcing their leaves). Entries expire after three times this
    /// without a refresh, which bounds how long a crashed node's clients stay listed.
    /// Shorter: faster cleanup, more Redis work per channel. Default 10 s.
    pub presence_heartbeat: Duration,
    /// How long one connection attempt may take, TLS handshake included. Default 2 s.
    pub connect_timeout: Duration,
    /// How long one command may take before it fails with `Unavailable`, which is how long
    /// an operation can wait on a Redis that stopped answering. Too short fails healthy but
    /// busy servers. Default 1 s.
    pub command_timeout: Duration,
    /// At [`RedisBroker::connect`](crate::RedisBroker::connect): `false` fails at once when
    /// Redis cannot be reached; `true` retries with backoff until it can (wrap the call in a
    /// timeout to bound that). After connecting, the broker always reconnects on its own.
    /// Default `false`.
    pub wait_for_redis: bool,
    /// Bytes of history one channel keeps in Redis (the publications' JSON), enforced
    /// atomically with every publish: the oldest publications go first, offsets stay
    /// consecutive, and a recovery that needed them gets `recovered: false`. 0 for no cap
    /// (only the namespace's `history_size` then). Default 1 MiB: a hundred 10 KiB
    /// publications, while a flood of 64 KiB messages to many channels cannot make each
    /// hold 6.4 MiB. The bound over all channels is Redis's `maxmemory` (see
    /// `docs/scaling.md`).
    pub max_history_bytes: usize,
}

impl RedisConfig {
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
        let refuse = |why: &str| Err(BrokerError::Internal(format!("invalid redis config: {why}")));
        if self.key_prefix.contains(['{', '}']) {
            return refuse("key_prefix must not hold `{` or `}`");
        }
        if self.presence_heartbeat < MIN_DURATION {
            return refuse("presence_heartbeat must be at least 1 ms");
        }
        if self.connect_timeout < MIN_DURATION || self.command_timeout < MIN_DURATION {
            return refuse("timeouts must be at least 1 ms");
        }
        Ok(())
    }

    /// The URL without its password, for messages and logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".to_owned(),
            key_prefix: "switchboard".to_owned(),
            presence_heartbeat: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(1),
            wait_for_redis: false,
            max_history_bytes: 1 << 20,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("key_prefix", &self.key_prefix)
            .field("presence_heartbeat", &self.presence_heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("wait_for_redis", &self.wait_for_redis)
            .field("max_history_bytes", &self.max_history_bytes)
            .finish()
    }
}

/// `url` with the password between `:` and `@` in its authority replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_owned() };
    let userinfo = &rest[..at];
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    format!("{scheme}://{user}:***@{}", &rest[at + 1..])
}

/// Durations below this are refused: Redis counts in milliseconds.
const MIN_DURATION: Duration = Duration::from_millis(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact("rediss://:hunter2@h:1/0"), "rediss://:***@h:1/0");
        assert_eq!(redact("redis://alice:s3:cr@t@h/2"), "redis://alice:***@h/2");
        assert_eq!(redact("not a url"), "not a url");
        let debug = format!("{:?}", RedisConfig::new("redis://u:secret@h"));
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn refuses_braces_in_the_prefix_and_zero_durations() {
        assert!(RedisConfig::default().validate().is_ok());
        let braces = RedisConfig { key_prefix: "a{b".to_owned(), ..RedisConfig::default() };
        assert!(braces.validate().is_err());
        let zero = RedisConfig { presence_heartbeat: Duration::ZERO, ..RedisConfig::default() };
        assert!(zero.validate().is_err());
        let zero = RedisConfig { command_timeout: Duration::ZERO, ..RedisConfig::default() };
        assert!(zero.validate().is_err());
    }
}
