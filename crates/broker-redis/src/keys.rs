//! Where a channel's state lives in Redis.
//!
//! Every key and the pub/sub topic of channel `C` under prefix `P` start with the hash tag
//! `{P:C}`, so they share one Redis Cluster slot and one script can touch them all. Node
//! `N`'s inbox topic has a tag of its own, `{P:node:N}`. The crate docs list them.
//!
//! Keys are injective: two channels never share a key, even when a name holds `}`, since
//! every name ends in a suffix only that kind of key has; an inbox ends in `:inbox`, which no
//! channel's name does.

/// Builds key and topic names for one deployment's prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

/// The names of one channel's keys, in the order the scripts take them.
#[derive(Debug)]
pub(crate) struct ChannelKeys {
    pub(crate) meta: String,
    pub(crate) history: String,
    pub(crate) presence: String,
    pub(crate) presence_expiry: String,
    pub(crate) topic: String,
}

impl Keys {
    /// Names under `prefix`, which must hold no `{` or `}` (checked by the config).
    pub(crate) fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// Every name of `channel`.
    pub(crate) fn channel(&self, channel: &str) -> ChannelKeys {
        let tag = self.tag(channel);
        ChannelKeys {
            meta: format!("{tag}:meta"),
            history: format!("{tag}:history"),
            presence: format!("{tag}:presence"),
            presence_expiry: format!("{tag}:presence-expiry"),
            topic: format!("{tag}:topic"),
        }
    }

    /// The pub/sub topic of `channel`.
    pub(crate) fn topic(&self, channel: &str) -> String {
        format!("{}:topic", self.tag(channel))
    }

    /// The pub/sub topic of node `node`'s inbox. `node` is a node name (lowercase letters and
    /// digits), so the hash tag ends where it should.
    pub(crate) fn inbox(&self, node: &str) -> String {
        format!("{{{}:node:{node}}}:inbox", self.prefix)
    }

    /// The node registry's keys: records (name → info) and expiries, under one hash tag of
    /// their own; the suffixes `:records` and `:expiry` end no channel's key.
    pub(crate) fn registry(&self) -> [String; 2] {
        let tag = format!("{{{}:nodes}}", self.prefix);
        [format!("{tag}:records"), format!("{tag}:expiry")]
    }

    fn tag(&self, channel: &str) -> String {
        format!("{{{}:{channel}}}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_channel_hash_tag() {
        let keys = Keys::new("switchboard").channel("chat:lobby");
        assert_eq!(keys.meta, "{switchboard:chat:lobby}:meta");
        assert_eq!(keys.history, "{switchboard:chat:lobby}:history");
        assert_eq!(keys.presence, "{switchboard:chat:lobby}:presence");
        assert_eq!(keys.presence_expiry, "{switchboard:chat:lobby}:presence-expiry");
        assert_eq!(keys.topic, "{switchboard:chat:lobby}:topic");
        assert_eq!(Keys::new("switchboard").topic("chat:lobby"), keys.topic);
    }

    #[test]
    fn an_inbox_has_its_own_hash_tag_and_suffix() {
        let keys = Keys::new("switchboard");
        assert_eq!(keys.inbox("n1"), "{switchboard:node:n1}:inbox");
        let channel = keys.channel("node:n1");
        let all = [&channel.meta, &channel.history, &channel.presence, &channel.topic];
        assert!(all.iter().all(|key| **key != keys.inbox("n1")), "no channel key is an inbox");
    }

    #[test]
    fn the_registry_shares_no_key_with_a_channel() {
        let keys = Keys::new("switchboard");
        assert_eq!(
            keys.registry(),
            ["{switchboard:nodes}:records".to_owned(), "{switchboard:nodes}:expiry".to_owned()]
        );
        let channel = keys.channel("nodes");
        let all = [&channel.meta, &channel.history, &channel.presence, &channel.presence_expiry];
        assert!(all.iter().all(|key| !keys.registry().contains(key)));
    }

    #[test]
    fn braces_in_a_channel_name_do_not_make_keys_collide() {
        let keys = Keys::new("p");
        let a = keys.channel("a");
        let b = keys.channel("a}:history");
        let all = [&a.meta, &a.history, &a.presence, &a.topic, &b.meta, &b.history, &b.topic];
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
    }
}
