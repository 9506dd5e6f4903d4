//! Inputs the `proto_decode` fuzz target found mishandled, kept as regression tests.

use switchboard_proto::{CommandKind, Format, Value};

/// A JSON number is decoded to the nearest double, as every JSON client encodes it, so a
/// publication reaches MessagePack subscribers with the value the publisher sent and JSON
/// subscribers with the same text. serde_json's default fast path was off by one unit in
/// the last place for some numbers (`float_roundtrip` makes it exact).
#[test]
fn fuzz_json_numbers_keep_their_exact_value() {
    let x: f64 = 1.667193592240291e140;
    let json = format!(r#"{{"id":5,"type":"publish","channel":"c","data":{x:e}}}"#);
    let command = Format::Json.decode_command(json.as_bytes()).expect("a publish");
    let CommandKind::Publish(publish) = &command.kind else { panic!("{command:?}") };
    assert_eq!(publish.data.as_f64().map(f64::to_bits), Some(x.to_bits()), "{json}");
    // And the round trip the fuzz target checks: MessagePack in, JSON out, JSON back in.
    let packed = Format::Msgpack.encode(&command).expect("encodable");
    let from_packed = Format::Msgpack.decode_command(&packed).expect("decodable");
    let text = Format::Json.encode(&from_packed).expect("encodable");
    assert_eq!(Format::Json.decode_command(&text).expect("decodable"), command);
    assert_eq!(publish.data, Value::from(x));
}
