//! Channel names: `namespace:name`, or `name` in the default namespace.

use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

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
    /// The name holds a character that shows as nothing or reorders the text around it (a
    /// format character, Unicode Cf, or a Default_Ignorable_Code_Point): with it, two names
    /// that look the same could be different channels.
    #[error("channel name holds U+{:04X}, {}", u32::from(*.0), invisible_kind(*.0))]
    Invisible(char),
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
    for c in channel.chars() {
        if c.is_whitespace() || c.is_control() {
            return Err(ChannelError::BadCharacter);
        }
        // No ASCII character is a format character or default-ignorable.
        if !c.is_ascii() && is_invisible(c) {
            return Err(ChannelError::Invisible(c));
        }
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

/// Whether `c` shows as nothing or changes how the text around it shows: bidi controls
/// (U+202E), zero-width characters (U+200B, U+FEFF), variation selectors, fillers, tags.
fn is_invisible(c: char) -> bool {
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::Format
}

fn invisible_kind(c: char) -> &'static str {
    if CodePointSetData::new::<BidiControl>().contains(c) {
        "a bidi control character"
    } else {
        "an invisible formatting character"
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

    #[test]
    fn refuses_invisible_and_bidi_characters() {
        let refused = [
            '\u{00AD}',
            '\u{034F}',
            '\u{061C}',
            '\u{115F}',
            '\u{180E}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2060}',
            '\u{2064}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{3164}',
            '\u{FE0F}',
            '\u{FEFF}',
            '\u{FFA0}',
            '\u{FFF9}',
            '\u{0600}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{E0100}',
        ];
        for c in refused {
            for name in [format!("chat:a{c}b"), format!("{c}news"), format!("news{c}")] {
                assert_eq!(
                    namespace_of(&name),
                    Err(ChannelError::Invisible(c)),
                    "U+{:04X}",
                    c as u32
                );
            }
        }
        let err = namespace_of("chat:\u{202E}gnp.exe").unwrap_err();
        assert_eq!(err.to_string(), "channel name holds U+202E, a bidi control character");
        let err = namespace_of("chat:lob\u{200B}by").unwrap_err();
        assert_eq!(err.to_string(), "channel name holds U+200B, an invisible formatting character");
        // Whitespace and controls keep their own error, outside ASCII too.
        assert_eq!(namespace_of("chat:a\u{3000}b"), Err(ChannelError::BadCharacter));
        assert_eq!(namespace_of("chat:a\u{85}b"), Err(ChannelError::BadCharacter));
    }

    #[test]
    fn accepts_visible_non_ascii_names() {
        for name in ["chat:café", "chat:日本語", "chat:مرحبا", "chat:שלום", "chat:🎉", "chat:ß-Ω"]
        {
            assert!(namespace_of(name).is_ok(), "{name}");
        }
    }
}
