//! The opening handshake on arbitrary bytes, each input read three ways: as a client's
//! request head (`ServerHandshake::parse`, with the default and with small limits), as
//! header lines handed to `ServerHandshake::from_parts`, and as a server's response head
//! (`ClientHandshake::verify`).
//!
//! What is accepted must be consistent: the head parses the same when cut right after it,
//! the server's 101 answer to an accepted request verifies at a client holding the same
//! key, and a refusal's response reads back as that status.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::fuzz_target;
use switchboard_codec::{ClientHandshake, HandshakeError, HandshakeLimits, ServerHandshake};

/// The nonce of the client whose responses are fuzzed; the seeds answer this key.
const NONCE: [u8; 16] = *b"switchboard-fuzz";
/// The subprotocols that client offers.
const OFFERED: [&str; 2] = ["switchboard.v1.json", "switchboard.v1.msgpack"];

fuzz_target!(|data: &[u8]| {
    let mut small = HandshakeLimits::default();
    small.max_header_bytes = 256;
    small.max_headers = 8;
    for limits in [HandshakeLimits::default(), small] {
        request(data, &limits);
        response(data, &limits);
    }
    parts(data);
});

fn request(data: &[u8], limits: &HandshakeLimits) {
    match ServerHandshake::parse(data, limits) {
        Ok(None) => assert!(data.len() < limits.max_header_bytes, "an endless head"),
        Ok(Some((hs, used))) => {
            assert!(used <= data.len() && used <= limits.max_header_bytes, "used {used}");
            assert_eq!(ServerHandshake::parse(&data[..used], limits), Ok(Some((hs.clone(), used))));
            accepted(&hs);
        }
        Err(e) => refused(&e),
    }
}

/// The server's answer to an accepted request verifies at the client that sent it.
fn accepted(hs: &ServerHandshake) {
    assert!(!hs.host.is_empty());
    let nonce = BASE64.decode(hs.key()).expect("an accepted key is base64");
    let nonce: [u8; 16] = nonce.try_into().expect("an accepted key is a 16-byte nonce");
    let client = ClientHandshake::with_key(nonce).with_protocols(hs.protocols.clone());
    assert_eq!(client.key(), hs.key(), "the key is not canonical base64");
    let protocol = hs.protocols.first().map(String::as_str);
    let answer = hs.response(protocol, None);
    match client.verify(&answer, &HandshakeLimits::default()) {
        Ok(Some((accepted, used))) => {
            assert_eq!(used, answer.len());
            assert_eq!(accepted.protocol.as_deref(), protocol);
        }
        other => panic!("the 101 answer to {hs:?} does not verify: {other:?}"),
    }
}

/// A refusal carries an error status, and its response reads back as that status.
fn refused(e: &HandshakeError) {
    assert!((400..500).contains(&e.status()), "{e:?} answers {}", e.status());
    let answer = e.to_response();
    let client = ClientHandshake::with_key(NONCE);
    match client.verify(&answer, &HandshakeLimits::default()) {
        Err(HandshakeError::UnexpectedStatus(status)) => assert_eq!(status, e.status()),
        other => panic!("the answer to {e:?} reads back as {other:?}"),
    }
}

fn response(data: &[u8], limits: &HandshakeLimits) {
    let client = ClientHandshake::with_key(NONCE).with_protocols(OFFERED);
    match client.verify(data, limits) {
        Ok(None) => assert!(data.len() < limits.max_header_bytes, "an endless head"),
        Ok(Some((accepted, used))) => {
            assert!(used <= data.len() && used <= limits.max_header_bytes, "used {used}");
            if let Some(p) = &accepted.protocol {
                assert!(OFFERED.contains(&p.as_str()), "accepted unoffered {p:?}");
            }
            assert!(accepted.extensions.is_empty(), "accepted unoffered extensions");
            assert_eq!(client.verify(&data[..used], limits), Ok(Some((accepted, used))));
        }
        Err(_) => {}
    }
}

/// The input as a method line, a version flag and `name: value` lines, for heads parsed
/// elsewhere: names here may hold anything, not only what an HTTP parser lets through.
fn parts(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let (http11, method) = match first.split_first() {
        Some((&flag, method)) => (flag & 1 == 1, String::from_utf8_lossy(method)),
        None => (true, "".into()),
    };
    let headers: Vec<(String, &[u8])> = lines
        .map(|line| {
            let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
            let value = line.get(colon + 1..).unwrap_or_default();
            (String::from_utf8_lossy(&line[..colon]).into_owned(), value)
        })
        .collect();
    let result =
        ServerHandshake::from_parts(&method, http11, headers.iter().map(|(n, v)| (n.as_str(), *v)));
    match result {
        Ok(hs) => {
            assert_eq!(hs.path, None);
            accepted(&hs);
        }
        Err(e) => refused(&e),
    }
}
