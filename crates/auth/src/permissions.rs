//! What a connection may do on which channel.

use std::collections::HashSet;

use crate::Claims;

/// A connection's channel permissions, from its token's `channels` and `publish` claims.
///
/// Patterns:
/// - an exact channel name, `chat:lobby`;
/// - `*` matches any run of characters, empty included: `chat:*`, `game:room-*`, `*:news`;
/// - `*` alone matches every channel.
///
/// User-limited channels: a channel with `#` in its name, `ns:rest#alice,bob`, belongs to the
/// comma-separated user ids after the first `#`. Only those users may subscribe or publish to
/// it, and they may, whatever their patterns say; anonymous connections never may. This
/// is how a user gets a private channel without a token naming it.
///
/// These are the token's grants only: the server also applies its namespace options (e.g.
/// whether clients may publish at all) and checks channel names with
/// `switchboard_proto::channel::namespace_of` before asking.
///
/// Matching is linear in the lengths of pattern and channel: no pattern can make it slow.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use switchboard_auth::{Claims, Permissions};
///
/// let mut claims = Claims::new("alice", Duration::from_secs(60), UNIX_EPOCH);
/// claims.channels = vec!["chat:*".into(), "news".into()];
/// claims.publish = vec!["chat:room-*".into()];
/// let perms = Permissions::from_claims(&claims);
/// assert!(perms.can_subscribe("chat:lobby"));
/// assert!(perms.can_subscribe("news"));
/// assert!(!perms.can_subscribe("news:sport"));
/// assert!(perms.can_publish("chat:room-7"));
/// assert!(!perms.can_publish("chat:lobby"));
/// assert!(perms.can_subscribe("dm:#alice,bob"));
/// assert!(!perms.can_subscribe("dm:#bob,carol"));
/// assert!(!Permissions::anonymous().can_subscribe("dm:#alice"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Permissions {
    user: Option<Box<str>>,
    subscribe: Patterns,
    publish: Patterns,
}

impl Permissions {
    /// The permissions a verified token (or redeemed ticket) grants: its `sub` as the user,
    /// `channels` for subscribing, presence and history, `publish` for publishing.
    pub fn from_claims(claims: &Claims) -> Self {
        Self::new(Some(claims.sub.as_str()), &claims.channels, &claims.publish)
    }

    /// An anonymous connection's: no user and no grants. User-limited channels stay closed
    /// to it whatever is granted later with [`Permissions::new`].
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Permissions for `user` (`None` or empty: anonymous) with the given patterns, e.g. an
    /// anonymous connection granted `news:*` by configuration.
    pub fn new<S, P>(user: Option<&str>, subscribe: &[S], publish: &[P]) -> Self
    where
        S: AsRef<str>,
        P: AsRef<str>,
    {
        Permissions {
            user: user.filter(|u| !u.is_empty()).map(Box::from),
            subscribe: Patterns::new(subscribe),
            publish: Patterns::new(publish),
        }
    }

    /// The user these permissions belong to; `None` for an anonymous connection.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether there is no user.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_none()
    }

    /// Whether the connection may subscribe to `channel`, and read its presence and
    /// history.
    pub fn can_subscribe(&self, channel: &str) -> bool {
        self.user_limit(channel).unwrap_or_else(|| self.subscribe.matches(channel))
    }

    /// Whether the connection may publish to `channel`.
    pub fn can_publish(&self, channel: &str) -> bool {
        self.user_limit(channel).unwrap_or_else(|| self.publish.matches(channel))
    }

    /// For a user-limited channel, whether this user is one of its users; `None` for other
    /// channels.
    fn user_limit(&self, channel: &str) -> Option<bool> {
        let (_, users) = channel.split_once('#')?;
        let Some(user) = self.user.as_deref() else { return Some(false) };
        Some(users.split(',').any(|u| u == user))
    }
}

/// A set of channel patterns, split by kind so the common ones cost a hash lookup.
#[derive(Clone, Debug, Default)]
struct Patterns {
    everything: bool,
    exact: HashSet<Box<str>>,
    wildcard: Vec<Box<str>>,
}

impl Patterns {
    fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let mut out = Patterns::default();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            if !pattern.is_empty() && pattern.bytes().all(|b| b == b'*') {
                out.everything = true;
            } else if pattern.contains('*') {
                out.wildcard.push(pattern.into());
            } else {
                out.exact.insert(pattern.into());
            }
        }
        out
    }

    fn matches(&self, channel: &str) -> bool {
        self.everything
            || self.exact.contains(channel)
            || self.wildcard.iter().any(|p| wildcard_match(p, channel))
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
///
/// The greedy wildcard match without backtracking: the text before the first `*` must be a
/// prefix and the text after the last `*` a suffix of what remains; each literal between
/// stars is then taken at its leftmost occurrence after the previous one. Taking the leftmost
/// occurrence is always safe, as the star after it absorbs whatever a later choice would
/// have skipped, so no choice is ever revisited. `str::find` is linear (two-way search) and
/// the searches cover disjoint stretches of `name`, so the whole match is
/// O(`pattern.len()` + `name.len()`) however many stars there are.
pub(crate) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let Some((head, tail)) = pattern.split_once('*') else { return pattern == name };
    let (middle, last) = tail.rsplit_once('*').unwrap_or(("", tail));
    let Some(rest) = name.strip_prefix(head) else { return false };
    let Some(mut rest) = rest.strip_suffix(last) else { return false };
    for literal in middle.split('*').filter(|s| !s.is_empty()) {
        match rest.find(literal) {
            Some(at) => rest = &rest[at + literal.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The textbook dynamic program: slow, obviously right.
    fn reference(pattern: &[u8], name: &[u8]) -> bool {
        let mut row = vec![false; name.len() + 1];
        row[0] = true;
        for &p in pattern {
            let mut next = vec![false; name.len() + 1];
            if p == b'*' {
                next[0] = row[0];
                for j in 1..=name.len() {
                    next[j] = row[j] || next[j - 1];
                }
            } else {
                for j in 1..=name.len() {
                    next[j] = row[j - 1] && name[j - 1] == p;
                }
            }
            row = next;
        }
        row[name.len()]
    }

    #[test]
    fn matches_the_table() {
        let table: &[(&str, &str, bool)] = &[
            ("chat:lobby", "chat:lobby", true),
            ("chat:lobby", "chat:lobby2", false),
            ("chat:lobby", "chat:lobb", false),
            ("chat:*", "chat:lobby", true),
            ("chat:*", "chat:", true),
            ("chat:*", "chatter:x", false),
            ("chat:*", "news:chat:x", false),
            ("game:room-*", "game:room-42", true),
            ("game:room-*", "game:room", false),
            ("*:news", "sport:news", true),
            ("*:news", "sport:news2", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*ab*ab*", "abab", true),
            ("*ab*ab*", "aba", false),
            ("**", "", true),
            ("x**y", "xy", true),
            ("", "", true),
            ("", "x", false),
            ("é*ü", "éaü", true),
            ("*ü", "ü", true),
        ];
        for &(pattern, name, want) in table {
            assert_eq!(wildcard_match(pattern, name), want, "{pattern:?} vs {name:?}");
            assert_eq!(reference(pattern.as_bytes(), name.as_bytes()), want, "reference");
        }
    }

    #[test]
    fn adversarial_patterns_finish_with_the_right_answer() {
        // Exponential for a backtracking matcher: 50 stars, each followed by `a`, then a `b`
        // that never comes.
        let stars = "*a".repeat(50);
        let long_a = "a".repeat(100_000);
        assert!(!wildcard_match(&format!("{stars}b"), &long_a));
        assert!(wildcard_match(&stars, &long_a));
        assert!(wildcard_match(&format!("{stars}*"), &long_a));
        assert!(!wildcard_match(&stars, &"a".repeat(49)));
        assert!(wildcard_match(&stars, &"a".repeat(50)));
        let many = format!("{}b", "a*".repeat(5_000));
        assert!(!wildcard_match(&many, &long_a));
        assert!(wildcard_match(&many, &format!("{long_a}b")));
        let perms = Permissions::new::<_, &str>(Some("u"), &[format!("{stars}b")], &[]);
        assert!(!perms.can_subscribe(&long_a));
    }

    #[test]
    fn star_alone_and_repeated_stars_match_everything() {
        for pattern in ["*", "**", "***"] {
            let perms = Permissions::new(Some("u"), &[pattern], &[pattern]);
            for channel in ["a", "chat:lobby", "x:y:z"] {
                assert!(perms.can_subscribe(channel) && perms.can_publish(channel));
            }
        }
    }

    #[test]
    fn subscribe_and_publish_grants_are_separate() {
        let perms = Permissions::new(Some("u"), &["chat:*"], &["chat:lobby"]);
        assert!(perms.can_subscribe("chat:other"));
        assert!(!perms.can_publish("chat:other"));
        assert!(perms.can_publish("chat:lobby"));
        assert!(!perms.can_subscribe("news"));
    }

    #[test]
    fn user_limited_channels_belong_to_their_users_only() {
        let alice = Permissions::new(Some("alice"), &["*"], &["*"]);
        let bob = Permissions::new::<&str, &str>(Some("bob"), &[], &[]);
        let anon_everything = Permissions::new(None, &["*"], &["*"]);
        let table: &[(&str, bool, bool)] = &[
            // channel, alice may, bob may
            ("dm:#alice", true, false),
            ("dm:#alice,bob", true, true),
            ("dm:chat#bob,carol", false, true),
            ("dm:#", false, false),
            ("dm:#,", false, false),
            ("dm:#alicex", false, false),
            ("dm:#ali", false, false),
            ("dm:#carol,alice", true, false),
            // Everything after the first `#` is the user list.
            ("dm:x#alice#bob", false, false),
            ("#bob", false, true),
        ];
        for &(channel, alice_may, bob_may) in table {
            assert_eq!(alice.can_subscribe(channel), alice_may, "alice subscribe {channel}");
            assert_eq!(alice.can_publish(channel), alice_may, "alice publish {channel}");
            assert_eq!(bob.can_subscribe(channel), bob_may, "bob subscribe {channel}");
            assert_eq!(bob.can_publish(channel), bob_may, "bob publish {channel}");
            assert!(!anon_everything.can_subscribe(channel), "anonymous {channel}");
            assert!(!anon_everything.can_publish(channel), "anonymous {channel}");
        }
        assert!(anon_everything.can_subscribe("chat:x"));
    }

    #[test]
    fn empty_user_is_anonymous() {
        let perms = Permissions::new::<_, &str>(Some(""), &["*"], &[]);
        assert!(perms.is_anonymous());
        assert!(!perms.can_subscribe("dm:#"));
        assert!(Permissions::anonymous().is_anonymous());
        assert!(!Permissions::anonymous().can_subscribe("news"));
    }

    #[test]
    fn from_claims_uses_sub_channels_and_publish() {
        let mut claims =
            Claims::new("u1", std::time::Duration::from_secs(1), std::time::UNIX_EPOCH);
        claims.channels = vec!["a:*".into()];
        claims.publish = vec!["a:b".into()];
        let perms = Permissions::from_claims(&claims);
        assert_eq!(perms.user(), Some("u1"));
        assert!(
            perms.can_subscribe("a:x") && !perms.can_publish("a:x") && perms.can_publish("a:b")
        );
        assert!(perms.can_subscribe("p:#u1"));
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(
            pattern in "[ab*]{0,12}",
            name in "[ab]{0,16}",
        ) {
            prop_assert_eq!(
                wildcard_match(&pattern, &name),
                reference(pattern.as_bytes(), name.as_bytes())
            );
        }
    }
}
