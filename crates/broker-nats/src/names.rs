//! Every name this crate gives things in NATS: the stream, the buckets, the subjects.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use switchboard_broker::BrokerError;

/// The names under one subject prefix `P`.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// The stream holding every channel's history: `P-channels`.
    pub(crate) fn stream(&self) -> String {
        format!("{}-channels", self.prefix)
    }

    /// The subjects the stream stores: `P.ch.>`.
    pub(crate) fn stream_subjects(&self) -> String {
        format!("{}.ch.>", self.prefix)
    }

    /// Where the stream republishes what it stored, for live delivery: `P.live.>`.
    pub(crate) fn live_subjects(&self) -> String {
        format!("{}.live.>", self.prefix)
    }

    /// The bucket of presence entries, one key per channel: `P-presence`.
    pub(crate) fn presence_bucket(&self) -> String {
        format!("{}-presence", self.prefix)
    }

    /// The bucket of the node registry: `P-nodes`.
    pub(crate) fn registry_bucket(&self) -> String {
        format!("{}-nodes", self.prefix)
    }

    /// Channel `channel`'s subjects and presence key.
    pub(crate) fn channel(&self, channel: &str) -> Result<ChannelNames, BrokerError> {
        if channel.is_empty() {
            return Err(BrokerError::Internal("an empty channel name has no subject".into()));
        }
        let token = token(channel);
        Ok(ChannelNames {
            stored: format!("{}.ch.{token}", self.prefix),
            live: format!("{}.live.{token}", self.prefix),
            watch_key: format!("w.{token}"),
            presence_key: token,
        })
    }

    /// A subject nobody subscribes to, for round trips to the server: `P.sync`.
    pub(crate) fn sync(&self) -> String {
        format!("{}.sync", self.prefix)
    }

    /// Node `node`'s inbox subject: `P.node.N` (node names are `[a-z0-9]+`).
    pub(crate) fn inbox(&self, node: &str) -> String {
        format!("{}.node.{node}", self.prefix)
    }
}

/// One channel's names.
#[derive(Clone, Debug)]
pub(crate) struct ChannelNames {
    /// The subject its publications are stored under: `P.ch.<token>`.
    pub(crate) stored: String,
    /// The subject its live events arrive on: `P.live.<token>`.
    pub(crate) live: String,
    /// Its key in the presence bucket: `<token>`.
    pub(crate) presence_key: String,
    /// Its key in the presence bucket saying until when a subscribed node keeps its stream
    /// alive: `w.<token>` (tokens hold no dot, so it is no channel's presence key).
    pub(crate) watch_key: String,
}

/// A channel name as one subject token and key: base64url without padding, so any name
/// (dots, spaces, `*`, `>`, any Unicode) maps to `[A-Za-z0-9_-]+`, one to one.
pub(crate) fn token(channel: &str) -> String {
    URL_SAFE_NO_PAD.encode(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_tokens_are_one_subject_token_and_distinct() {
        let names = ["a.b", "a b", "*", ">", "chat:lobby", "é✓", "a", "a."];
        let tokens: Vec<_> = names.iter().map(|n| token(n)).collect();
        for t in &tokens {
            assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{t}");
        }
        let mut unique = tokens.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), tokens.len());
        assert!(Names::new("p").channel("").is_err());
        let channel = Names::new("p").channel("a.b").expect("a channel");
        assert_eq!(channel.stored, "p.ch.YS5i");
        assert_eq!(channel.live, "p.live.YS5i");
    }
}
