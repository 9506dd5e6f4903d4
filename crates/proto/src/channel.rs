//! Channel names: `namespace:name`, or `name` in the default namespace.

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 255;

/// Why a channel name is refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The name is empty.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than [`MAX_CHANNEL_LEN`].
    #[error("channel name too long: {0} > {MAX_CHANNEL_LEN} bytes")]
    TooLong(usize),
    /// The name holds whitespace or control characters.
    #[error("channel name holds whitespace or control characters")]
    BadCharacter,
    /// The namespace part is empty or not `[A-Za-z0-9_.-]+`, or the name after it is empty.
    #[error("channel name must be `namespace:name` with namespace in [A-Za-z0-9_.-]")]
    BadNamespace,
}

/// Splits a channel name into its namespace (`""` for the default one) after checking it.
///
/// ```
/// use switchboard_proto::channel::namespace_of;
/// assert_eq!(namespace_of("chat:lobby"), Ok("chat"));
/// assert_eq!(namespace_of("news"), Ok(""));
/// assert!(namespace_of("chat:").is_err());
/// ```
///
/// # Errors
///
/// A [`ChannelError`] naming the broken rule.
pub fn namespace_of(channel: &str) -> Result<&str, ChannelError> {
    if channel.is_empty() {
        return Err(ChannelError::Empty);
    }
    if channel.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::TooLong(channel.len()));
    }
    if channel.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ChannelError::BadCharacter);
    }
    match channel.split_once(':') {
        None => Ok(""),
        Some((ns, rest)) => {
            let ns_ok = !ns.is_empty()
                && ns.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if ns_ok && !rest.is_empty() { Ok(ns) } else { Err(ChannelError::BadNamespace) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses_names() {
        assert_eq!(namespace_of("game-1.lobby:room/42"), Ok("game-1.lobby"));
        assert_eq!(namespace_of("chat:a:b"), Ok("chat"));
        assert_eq!(namespace_of(""), Err(ChannelError::Empty));
        assert_eq!(namespace_of(&"x".repeat(256)), Err(ChannelError::TooLong(256)));
        assert_eq!(namespace_of("chat:a b"), Err(ChannelError::BadCharacter));
        assert_eq!(namespace_of("chat:\n"), Err(ChannelError::BadCharacter));
        assert_eq!(namespace_of(":x"), Err(ChannelError::BadNamespace));
        assert_eq!(namespace_of("ch@t:x"), Err(ChannelError::BadNamespace));
    }
}
