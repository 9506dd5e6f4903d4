//! Frame header decoding (RFC 6455 §5.2) on arbitrary bytes: a header that parses is the
//! canonical encoding of what it decoded to, every shorter prefix of it asks for more
//! bytes, and the rules the parser owns (control frames final and small, minimal lengths,
//! the 64-bit length's top bit clear) hold for whatever it accepts.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard_codec::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((header, len))) = FrameHeader::parse(data) else { return };
    assert!(len <= MAX_HEADER_LEN && len <= data.len(), "header length {len}");
    assert_eq!(len, header.encoded_len());
    assert!(header.rsv <= 0b111);
    assert!(header.payload_len >> 63 == 0, "64-bit length with the top bit set");
    if header.opcode.is_control() {
        assert!(header.fin, "a fragmented control frame parsed");
        assert!(header.payload_len <= MAX_CONTROL_PAYLOAD as u64);
    }
    // Lengths must be minimal, so encoding what was parsed gives back the same bytes.
    let mut encoded = BytesMut::new();
    header.encode(&mut encoded);
    assert_eq!(&encoded[..], &data[..len], "{header:?}");
    for end in 0..len {
        assert!(
            matches!(FrameHeader::parse(&data[..end]), Ok(None)),
            "a {end}-byte prefix of a {len}-byte header did not ask for more"
        );
    }
});
