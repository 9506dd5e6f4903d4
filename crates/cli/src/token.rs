//! `switchboard token`: mint a development JWT signed with HS256.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;

/// Flags of `switchboard token`.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The HMAC secret the server verifies with (--jwt-secret on `serve`), at least 32 bytes.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// The user the token is for (`sub`).
    #[arg(long)]
    user: String,
    /// Channel patterns the user may subscribe to, comma-separated (e.g. `chat:*,news:*`).
    #[arg(long, value_delimiter = ',')]
    channels: Vec<String>,
    /// Channel patterns the user may publish to, comma-separated.
    #[arg(long, value_delimiter = ',')]
    publish: Vec<String>,
    /// Lifetime (e.g. `1h`, `15m`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Issuer (`iss`), when the server checks one.
    #[arg(long)]
    issuer: Option<String>,
    /// Audience (`aud`), when the server checks one.
    #[arg(long)]
    audience: Option<String>,
    /// Application data shown with the user in presence, as JSON.
    #[arg(long)]
    info: Option<String>,
}

/// Mints the token.
pub(crate) fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    if args.ttl.is_zero() {
        anyhow::bail!("--ttl must be more than 0s");
    }
    let mut claims = switchboard_auth::Claims::new(args.user.clone(), args.ttl, SystemTime::now());
    claims.channels.clone_from(&args.channels);
    claims.publish.clone_from(&args.publish);
    claims.iss.clone_from(&args.issuer);
    claims.aud = args.audience.iter().cloned().collect();
    claims.info = args
        .info
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("--info is not valid JSON")?;
    switchboard_auth::mint_hs256(args.secret.as_bytes(), &claims).context("cannot mint the token")
}
