//! Incremental UTF-8 validation across fragments and partial reads (RFC 6455 §8.1).

/// Validates a byte stream fed in arbitrary pieces and fails at the first byte that cannot
/// begin or continue a valid sequence, without waiting for the rest of the message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    /// The start of a code point split across pieces: at most 3 bytes, always a valid prefix.
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece.
    ///
    /// # Errors
    ///
    /// Returns `Err(())` as soon as the bytes seen so far cannot be the prefix of valid UTF-8.
    #[allow(clippy::result_unit_err)]
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ()> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let want = sequence_len(self.pending[0]);
            let take = (want - have).min(data.len());
            self.pending[have..have + take].copy_from_slice(&data[..take]);
            let filled = have + take;
            match simdutf8::compat::from_utf8(&self.pending[..filled]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; the piece was too short to finish it.
                    self.pending_len = filled as u8;
                    return Ok(());
                }
                Err(_) => return Err(()),
            }
            data = &data[take..];
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(()),
                None => {
                    let tail = &data[e.valid_up_to()..];
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.pending_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// Whether the bytes fed so far end on a code point boundary, so the message may end.
    pub fn is_complete(&self) -> bool {
        self.pending_len == 0
    }

    /// Forgets any state, for the next message.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

/// The length of the sequence a valid lead byte starts. Only called on bytes that
/// `simdutf8` reported as the start of an incomplete sequence, so always 2, 3 or 4.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(data: &[u8], at: usize) -> Result<bool, ()> {
        let mut v = Utf8Validator::new();
        v.feed(&data[..at])?;
        v.feed(&data[at..])?;
        Ok(v.is_complete())
    }

    #[test]
    fn accepts_valid_text_split_anywhere() {
        let text = "κόσμε, 𝄞 and ascii".as_bytes();
        for at in 0..=text.len() {
            assert_eq!(feed_split(text, at), Ok(true), "split at {at}");
        }
    }

    #[test]
    fn incomplete_tail_is_not_complete() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xf0, 0x9d]).unwrap();
        assert!(!v.is_complete());
        v.feed(&[0x84]).unwrap();
        assert!(!v.is_complete());
        v.feed(&[0x9e]).unwrap();
        assert!(v.is_complete());
    }

    #[test]
    fn fails_fast_on_the_first_invalid_byte() {
        // Autobahn 6.4.1: the fourth byte 0xf4 0x90 is out of range, before the message ends.
        let mut v = Utf8Validator::new();
        v.feed(&[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5]).unwrap();
        assert!(v.feed(&[0xf4, 0x90]).is_err());
        // A split surrogate is rejected when its second byte arrives.
        let mut v = Utf8Validator::new();
        v.feed(&[0xed]).unwrap();
        assert!(v.feed(&[0xa0]).is_err());
    }

    #[test]
    fn agrees_with_std_for_every_split_of_tricky_inputs() {
        let inputs: [&[u8]; 6] = [
            &[0xc0, 0x80],
            &[0xe0, 0x9f, 0xbf],
            &[0xf4, 0x8f, 0xbf, 0xbf, 0x41],
            &[0xf5, 0x80, 0x80, 0x80],
            &[0x41, 0xe2, 0x82, 0xac, 0xe2, 0x82],
            &[0xef, 0xbf, 0xbf],
        ];
        for input in inputs {
            let std_ok = std::str::from_utf8(input).is_ok();
            for at in 0..=input.len() {
                let ours = matches!(feed_split(input, at), Ok(true));
                assert_eq!(ours, std_ok, "{input:x?} split at {at}");
            }
        }
    }
}
