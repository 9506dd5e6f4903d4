//! Payload masking (RFC 6455 §5.3).

/// XORs `data` with the masking `key`, as if `data` started `offset` bytes into the
/// payload.
///
/// Works 8 bytes at a time with safe code; the compiler turns the loop into wide loads.
/// The offset lets a payload that arrives in several reads be unmasked in place as it
/// arrives.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let rotated = rotate(key, offset);
    let wide = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the rotated key still lines up.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(rotated.iter().cycle()) {
        *byte ^= k;
    }
}

/// The bytewise reference implementation of [`apply_mask`], straight from RFC 6455 §5.3.
pub fn apply_mask_bytewise(data: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= key[(offset + i) % 4];
    }
}

fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset % 4;
    [key[s], key[(s + 1) % 4], key[(s + 2) % 4], key[(s + 3) % 4]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_rfc_example() {
        // RFC 6455 §5.7: a masked "Hello".
        let mut data = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&data, b"Hello");
    }

    #[test]
    fn matches_bytewise_for_every_length_and_offset() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            for offset in 0..8 {
                let input: Vec<u8> = (0..len as u8).collect();
                let mut fast = input.clone();
                let mut slow = input.clone();
                apply_mask(&mut fast, key, offset);
                apply_mask_bytewise(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }
}
