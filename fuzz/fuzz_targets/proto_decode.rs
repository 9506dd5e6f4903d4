//! Command decoding in both wire formats on arbitrary bytes: never a panic, refusals carry
//! a code a reply can use, and a decoded command survives a round trip through either
//! format unchanged (the server re-encodes what clients send, and the two formats must
//! carry the same commands).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_proto::{CommandKind, ErrorCode, Format, check_data_depth};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Json, Format::Msgpack] {
        let command = match format.decode_command(data) {
            Ok(command) => command,
            Err(e) => {
                match e.code {
                    ErrorCode::BadRequest => {}
                    ErrorCode::UnknownCommand => assert!(e.id.is_some(), "{e:?}"),
                    other => panic!("a decode error with code {other:?}"),
                }
                continue;
            }
        };
        if let CommandKind::Publish(publish) = &command.kind {
            assert!(check_data_depth(&publish.data).is_ok(), "accepted data too deep");
        }
        for out in [Format::Json, Format::Msgpack] {
            let bytes = out.encode(&command).expect("a decoded command encodes");
            match out.decode_command(&bytes) {
                Ok(again) => assert_eq!(again, command, "{format:?} → {out:?}"),
                Err(e) => panic!("{command:?} read from {format:?} fails in {out:?}: {e:?}"),
            }
        }
    }
});
