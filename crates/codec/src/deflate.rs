//! permessage-deflate (RFC 7692): settings, and the negotiation of §5 and §7.1 for both roles.
//!
//! The server reads the client's offers from [`ServerHandshake::extensions`] and answers
//! with [`DeflateConfig::accept`]; the client sends [`DeflateConfig::offer`] and checks the
//! answer with [`DeflateParams::from_response`] (done by
//! [`ClientHandshake::verify`](crate::ClientHandshake::verify) when the handshake offers
//! deflate). Either way the result, a [`DeflateParams`], goes to
//! [`Connection::with_deflate`](crate::Connection::with_deflate).
//!
//! ```
//! use switchboard_codec::handshake::Extension;
//! use switchboard_codec::{DeflateConfig, DeflateParams};
//!
//! let mut config = DeflateConfig::default();
//! config.enabled = true;
//! config.server_no_context_takeover = true;
//! // What a browser offers.
//! let offer = Extension {
//!     name: "permessage-deflate".into(),
//!     params: vec![("client_max_window_bits".into(), None)],
//! };
//! let params = config.accept(&[offer]).expect("acceptable");
//! assert_eq!(params.to_response_value(), "permessage-deflate; server_no_context_takeover");
//! ```
//!
//! [`ServerHandshake::extensions`]: crate::ServerHandshake::extensions

use bytes::Bytes;

use crate::compress::Inflater;
use crate::handshake::{Extension, HandshakeError};
use crate::{Error, Role};

/// The extension token (RFC 7692 §7).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// permessage-deflate settings for one endpoint, read in either role.
///
/// "Server" and "client" fields name the direction, as RFC 7692 does: `server_*` is about
/// what the server compresses, `client_*` about what the client compresses.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Whether to offer (client) or accept (server) permessage-deflate. Default `false`.
    pub enabled: bool,
    /// zlib compression level, 0–9 (higher values are taken as 9). Default 6, zlib's own
    /// default; lower levels spend less CPU per message for a larger output.
    pub level: u32,
    /// Messages shorter than this many bytes are sent uncompressed (RSV1 clear). Default
    /// 64: below that, deflate's block overhead eats most of the saving.
    pub min_size: usize,
    /// Server: always answer with `server_no_context_takeover`, so each server message is
    /// compressed on its own and one compressed frame can be shared by every connection.
    /// Client: ask for it in the offer. Default `false`.
    pub server_no_context_takeover: bool,
    /// Server: always answer with `client_no_context_takeover`, so the server keeps no
    /// inflate state between a client's messages. Client: offer it, and compress each
    /// message on its own. Default `false`.
    pub client_no_context_takeover: bool,
    /// Base-2 logarithm of the window the server compresses with, 8–15. Server: the largest
    /// it uses (it answers with less when the client asks for less). Client: offered as
    /// `server_max_window_bits` when below 15. Default 15 (32 KiB). A compressor holds
    /// about `2^(bits + 2)` bytes of window and hash tables, plus 64 KiB.
    pub server_max_window_bits: u8,
    /// Base-2 logarithm of the window the client compresses with, 8–15. Server: asked of
    /// the client when below 15 and the client offered `client_max_window_bits`. Client:
    /// offered as `client_max_window_bits` (without a value at 15). Default 15. The
    /// receiving end holds this window per connection while inflating.
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            level: 6,
            min_size: 64,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// The parameters of one permessage-deflate offer or response (RFC 7692 §7.1).
///
/// A window size of `None` means the parameter was absent: 15 bits. In an offer, a
/// `client_max_window_bits` without a value is `Some(15)`: the client can honour any limit.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct DeflateParams {
    /// The server compresses each message on its own (§7.1.1.1).
    pub server_no_context_takeover: bool,
    /// The client compresses each message on its own (§7.1.1.2).
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 8–15 (§7.1.2.1).
    pub server_max_window_bits: Option<u8>,
    /// The largest window the client compresses with, 8–15 (§7.1.2.2).
    pub client_max_window_bits: Option<u8>,
}

/// Why an offer or a response was not acceptable, for logs and handshake errors.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Invalid {
    Unknown,
    Duplicate,
    Value,
}

impl DeflateParams {
    /// Parses one offer (RFC 7692 §5, §7.1). `None` when the entry is not
    /// permessage-deflate or the offer must be declined: an unknown parameter, a parameter
    /// given twice, a value where none is allowed, or a window size that is missing where
    /// one is required, not a decimal integer without leading zeros, or outside 8–15.
    pub fn from_offer(ext: &Extension) -> Option<Self> {
        if !ext.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
            return None;
        }
        parse_params(ext, true).ok()
    }

    /// Parses and checks a server's response against the offer this client sent
    /// (RFC 7692 §5, §7.1).
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidDeflateResponse`] when the client must fail the connection:
    /// an unknown, duplicate or malformed parameter, `server_no_context_takeover` missing
    /// though offered, a window larger than offered, or `client_max_window_bits` that was
    /// not offered (§7.1.2.2).
    pub fn from_response(ext: &Extension, offered: &DeflateParams) -> Result<Self, HandshakeError> {
        let params = parse_params(ext, false).map_err(|e| {
            HandshakeError::InvalidDeflateResponse(match e {
                Invalid::Unknown => "unknown parameter",
                Invalid::Duplicate => "duplicate parameter",
                Invalid::Value => "invalid parameter value",
            })
        })?;
        // §7.1.1.1: a server accepts an offer of server_no_context_takeover by including it.
        if offered.server_no_context_takeover && !params.server_no_context_takeover {
            return Err(HandshakeError::InvalidDeflateResponse(
                "server_no_context_takeover offered but not accepted",
            ));
        }
        // §7.1.2.1: the same or a smaller value than offered.
        if let (Some(answer), Some(offer)) =
            (params.server_max_window_bits, offered.server_max_window_bits)
            && answer > offer
        {
            return Err(HandshakeError::InvalidDeflateResponse(
                "server_max_window_bits larger than offered",
            ));
        }
        // §7.1.2.2: only if offered, and not larger than the value offered.
        match (params.client_max_window_bits, offered.client_max_window_bits) {
            (Some(_), None) => {
                return Err(HandshakeError::InvalidDeflateResponse(
                    "client_max_window_bits was not offered",
                ));
            }
            (Some(answer), Some(offer)) if answer > offer => {
                return Err(HandshakeError::InvalidDeflateResponse(
                    "client_max_window_bits larger than offered",
                ));
            }
            _ => {}
        }
        Ok(params)
    }

    /// The `Sec-WebSocket-Extensions` value of a server's response with these parameters.
    pub fn to_response_value(&self) -> String {
        self.format(false)
    }

    /// The `Sec-WebSocket-Extensions` value of a client's offer with these parameters;
    /// `client_max_window_bits` 15 is sent without a value.
    pub fn to_offer_value(&self) -> String {
        self.format(true)
    }

    fn format(&self, offer: bool) -> String {
        let mut out = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            out.push_str(&format!("; server_max_window_bits={bits}"));
        }
        match self.client_max_window_bits {
            Some(15) if offer => out.push_str("; client_max_window_bits"),
            Some(bits) => out.push_str(&format!("; client_max_window_bits={bits}")),
            None => {}
        }
        out
    }

    /// The window the server compresses with: the negotiated limit, 15 when absent.
    pub fn server_window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(15)
    }

    /// The window the client compresses with: the negotiated limit, 15 when absent.
    pub fn client_window_bits(&self) -> u8 {
        self.client_max_window_bits.unwrap_or(15)
    }
}

impl DeflateConfig {
    /// Server side: the parameters to accept from the client's offers, the first
    /// acceptable one in the client's order (RFC 7692 §5.1), or `None` to accept the
    /// connection without the extension (also when [`enabled`](Self::enabled) is false).
    ///
    /// An invalid offer is declined (§5) and the next one tried. The answer applies this config's preferences as far as the offer allows:
    /// `server_max_window_bits` is the smaller of the offer's and
    /// [`server_max_window_bits`](Self::server_max_window_bits), `client_max_window_bits`
    /// is answered only if offered (§7.1.2.2), and requested `*_no_context_takeover` are
    /// echoed.
    ///
    /// Send [`DeflateParams::to_response_value`] as `Sec-WebSocket-Extensions`.
    pub fn accept(&self, offers: &[Extension]) -> Option<DeflateParams> {
        if !self.enabled {
            return None;
        }
        let offer = offers.iter().find_map(DeflateParams::from_offer)?;
        let own = self.server_max_window_bits.clamp(8, 15);
        let server_max_window_bits = match offer.server_max_window_bits {
            // §7.1.2.1: the same or a smaller value than offered.
            Some(offered) => Some(offered.min(own)),
            // §7.1.2.1: may be included even when the offer did not have it.
            None => (own < 15).then_some(own),
        };
        let client_max_window_bits = match offer.client_max_window_bits {
            // §7.1.2.2: never included when the offer does not have it.
            None => None,
            Some(offered) => {
                let bits = offered.min(self.client_max_window_bits.clamp(8, 15));
                (bits < 15).then_some(bits)
            }
        };
        Some(DeflateParams {
            // §7.1.1.1: a server accepts the offer of this parameter by including it.
            server_no_context_takeover: offer.server_no_context_takeover
                || self.server_no_context_takeover,
            // §7.1.1.2: a server may include it whether or not it was offered.
            client_no_context_takeover: offer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        })
    }

    /// Client side: the offer to send, or `None` when [`enabled`](Self::enabled) is false.
    /// Send [`DeflateParams::to_offer_value`] as `Sec-WebSocket-Extensions` and keep the
    /// offer to check the answer with [`DeflateParams::from_response`].
    pub fn offer(&self) -> Option<DeflateParams> {
        if !self.enabled {
            return None;
        }
        let server = self.server_max_window_bits.clamp(8, 15);
        Some(DeflateParams {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: (server < 15).then_some(server),
            client_max_window_bits: Some(self.client_max_window_bits.clamp(8, 15)),
        })
    }

    /// The compression level as flate2 takes it.
    pub(crate) fn compression(&self) -> flate2::Compression {
        flate2::Compression::new(self.level.min(9))
    }
}

/// Inflates whole compressed messages received on a connection that negotiated
/// permessage-deflate, for a reader that frames messages itself rather than through a
/// [`Connection`](crate::Connection) (a load generator, say). The output is capped while
/// inflating, as the connection caps it, and the stream is freed after each message when
/// the sender keeps no context.
///
/// ```
/// use switchboard_codec::deflate::MessageInflater;
/// use switchboard_codec::{DeflateParams, Role};
///
/// let mut inflater = MessageInflater::new(&DeflateParams::default(), Role::Client);
/// // RFC 7692 §7.2.3.1: "Hello", compressed.
/// let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// assert_eq!(&inflater.inflate(&hello, 1024)?[..], b"Hello");
/// # Ok::<(), switchboard_codec::Error>(())
/// ```
#[derive(Debug)]
pub struct MessageInflater {
    inner: Inflater,
}

impl MessageInflater {
    /// An inflater for the messages `role`'s peer sends under `params`.
    pub fn new(params: &DeflateParams, role: Role) -> Self {
        let (bits, reset) = match role {
            Role::Server => (params.client_window_bits(), params.client_no_context_takeover),
            Role::Client => (params.server_window_bits(), params.server_no_context_takeover),
        };
        Self { inner: Inflater::new(bits, reset) }
    }

    /// The message whose compressed payload (RSV1 set on its first frame; the fragments'
    /// payloads joined) is `payload`.
    ///
    /// # Errors
    ///
    /// [`Error::InflatedTooLarge`] once the output would pass `max` bytes;
    /// [`Error::InvalidCompressedData`] for a stream zlib rejects. The inflater starts
    /// afresh after either.
    pub fn inflate(&mut self, payload: &[u8], max: usize) -> Result<Bytes, Error> {
        match self.inner.inflate(payload, true, max) {
            Ok(_) => Ok(self.inner.finish()),
            Err(e) => {
                self.inner.clear();
                Err(e)
            }
        }
    }
}

/// Parses the parameters of one permessage-deflate entry. `offer` selects the rules of an
/// offer (`client_max_window_bits` may go without a value) or of a response (it may not).
fn parse_params(ext: &Extension, offer: bool) -> Result<DeflateParams, Invalid> {
    let mut params = DeflateParams::default();
    let mut seen = [false; 4];
    for (name, value) in &ext.params {
        let index = match name.as_str() {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return Err(Invalid::Unknown),
        };
        // §7: an offer or response with the same parameter twice is invalid.
        if std::mem::replace(&mut seen[index], true) {
            return Err(Invalid::Duplicate);
        }
        let value = value.as_deref();
        match (index, value) {
            // §7.1.1: the context takeover parameters have no value.
            (0, None) => params.server_no_context_takeover = true,
            (1, None) => params.client_no_context_takeover = true,
            (2, Some(v)) => params.server_max_window_bits = Some(window_bits(v)?),
            // §7.1.2.2: an offer may omit the value; a response must carry one.
            (3, None) if offer => params.client_max_window_bits = Some(15),
            (3, Some(v)) => params.client_max_window_bits = Some(window_bits(v)?),
            _ => return Err(Invalid::Value),
        }
    }
    Ok(params)
}

/// §7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15, inclusive".
fn window_bits(value: &str) -> Result<u8, Invalid> {
    match value.as_bytes() {
        [d @ b'8'..=b'9'] => Ok(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Ok(10 + d - b'0'),
        _ => Err(Invalid::Value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Params<'a> = &'a [(&'a str, Option<&'a str>)];

    fn ext(params: &[(&str, Option<&str>)]) -> Extension {
        Extension {
            name: PERMESSAGE_DEFLATE.into(),
            params: params.iter().map(|(k, v)| ((*k).into(), v.map(Into::into))).collect(),
        }
    }

    #[test]
    fn window_bits_are_decimal_8_to_15_without_leading_zeros() {
        for (value, bits) in [("8", 8), ("9", 9), ("10", 10), ("15", 15)] {
            assert_eq!(window_bits(value), Ok(bits));
        }
        for value in ["7", "16", "0", "08", "010", "", "1", "+9", "9a", "-8", "255", "15 "] {
            assert_eq!(window_bits(value), Err(Invalid::Value), "{value:?}");
        }
    }

    #[test]
    fn offers_follow_rfc_7692_section_7() {
        let valid: &[(Params<'_>, DeflateParams)] = &[
            (&[], DeflateParams::default()),
            (
                &[("client_max_window_bits", None)],
                DeflateParams { client_max_window_bits: Some(15), ..Default::default() },
            ),
            (
                &[("server_no_context_takeover", None), ("client_no_context_takeover", None)],
                DeflateParams {
                    server_no_context_takeover: true,
                    client_no_context_takeover: true,
                    ..Default::default()
                },
            ),
            (
                &[("server_max_window_bits", Some("10")), ("client_max_window_bits", Some("8"))],
                DeflateParams {
                    server_max_window_bits: Some(10),
                    client_max_window_bits: Some(8),
                    ..Default::default()
                },
            ),
        ];
        for (params, expected) in valid {
            assert_eq!(DeflateParams::from_offer(&ext(params)), Some(*expected), "{params:?}");
        }
        let invalid: &[Params<'_>] = &[
            &[("x_unknown", None)],
            &[("server_no_context_takeover", None), ("server_no_context_takeover", None)],
            &[("client_max_window_bits", None), ("client_max_window_bits", Some("10"))],
            &[("server_no_context_takeover", Some("1"))],
            &[("client_no_context_takeover", Some("true"))],
            &[("server_max_window_bits", None)],
            &[("server_max_window_bits", Some("7"))],
            &[("server_max_window_bits", Some("16"))],
            &[("client_max_window_bits", Some("08"))],
            &[("client_max_window_bits", Some("abc"))],
        ];
        for params in invalid {
            assert_eq!(DeflateParams::from_offer(&ext(params)), None, "{params:?}");
        }
        let other = Extension { name: "x-webkit-deflate-frame".into(), params: vec![] };
        assert_eq!(DeflateParams::from_offer(&other), None);
    }

    #[test]
    fn responses_follow_rfc_7692_section_7() {
        let bare = DeflateParams::default();
        let full = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: Some(12),
            client_max_window_bits: Some(15),
        };
        let ok: &[(Params<'_>, DeflateParams)] = &[
            (&[], bare),
            // §7.1.1: either no-context-takeover parameter may be answered unasked.
            (&[("server_no_context_takeover", None)], bare),
            (&[("client_no_context_takeover", None)], bare),
            // §7.1.2.1: a server may limit its window even when not asked.
            (&[("server_max_window_bits", Some("9"))], bare),
            (&[("server_max_window_bits", Some("12"))], full),
            (&[("server_max_window_bits", Some("8"))], full),
            (&[("client_max_window_bits", Some("15"))], full),
            (&[("client_max_window_bits", Some("8"))], full),
        ];
        for (params, offered) in ok {
            assert!(DeflateParams::from_response(&ext(params), offered).is_ok(), "{params:?}");
        }
        let asked = DeflateParams { server_no_context_takeover: true, ..Default::default() };
        let fail: &[(Params<'_>, DeflateParams)] = &[
            (&[("x", None)], bare),
            (&[("server_no_context_takeover", None), ("server_no_context_takeover", None)], bare),
            (&[("server_no_context_takeover", Some("x"))], bare),
            // §7.1.2.2: in a response client_max_window_bits must carry a value.
            (&[("client_max_window_bits", None)], full),
            // §7.1.2.2: must not appear unless offered.
            (&[("client_max_window_bits", Some("10"))], bare),
            (&[("server_max_window_bits", Some("13"))], full),
            (&[("server_max_window_bits", Some("16"))], bare),
            (
                &[("client_max_window_bits", Some("10"))],
                DeflateParams { client_max_window_bits: Some(9), ..Default::default() },
            ),
            // §7.1.1.1: offered server_no_context_takeover must be in the acceptance.
            (&[], asked),
        ];
        for (params, offered) in fail {
            assert!(
                matches!(
                    DeflateParams::from_response(&ext(params), offered),
                    Err(HandshakeError::InvalidDeflateResponse(_))
                ),
                "{params:?} against {offered:?}"
            );
        }
    }

    fn enabled() -> DeflateConfig {
        DeflateConfig { enabled: true, ..Default::default() }
    }

    #[test]
    fn server_answers_within_the_offer() {
        let cases: &[(DeflateConfig, Params<'_>, &str)] = &[
            (enabled(), &[], "permessage-deflate"),
            (enabled(), &[("client_max_window_bits", None)], "permessage-deflate"),
            (
                enabled(),
                &[("server_no_context_takeover", None), ("client_no_context_takeover", None)],
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ),
            (
                enabled(),
                &[("server_max_window_bits", Some("10"))],
                "permessage-deflate; server_max_window_bits=10",
            ),
            (
                DeflateConfig { server_max_window_bits: 12, ..enabled() },
                &[("server_max_window_bits", Some("14"))],
                "permessage-deflate; server_max_window_bits=12",
            ),
            (
                DeflateConfig { server_max_window_bits: 12, ..enabled() },
                &[],
                "permessage-deflate; server_max_window_bits=12",
            ),
            (
                DeflateConfig { client_max_window_bits: 10, ..enabled() },
                &[("client_max_window_bits", None)],
                "permessage-deflate; client_max_window_bits=10",
            ),
            (
                DeflateConfig { client_max_window_bits: 10, ..enabled() },
                &[("client_max_window_bits", Some("9"))],
                "permessage-deflate; client_max_window_bits=9",
            ),
            // §7.1.2.2: not offered, so not answered, whatever the preference.
            (DeflateConfig { client_max_window_bits: 10, ..enabled() }, &[], "permessage-deflate"),
            (
                DeflateConfig {
                    server_no_context_takeover: true,
                    client_no_context_takeover: true,
                    ..enabled()
                },
                &[],
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ),
        ];
        for (config, offer, answer) in cases {
            let params = config.accept(&[ext(offer)]).expect("accepted");
            assert_eq!(params.to_response_value(), *answer, "{offer:?}");
            // What the server answers, its own client accepts.
            let offered = DeflateParams::from_offer(&ext(offer)).unwrap();
            let parsed = parse_response_value(&params.to_response_value());
            assert_eq!(DeflateParams::from_response(&parsed, &offered), Ok(params));
        }
    }

    #[test]
    fn server_declines_invalid_offers_and_takes_the_next() {
        let bad = ext(&[("server_max_window_bits", Some("7"))]);
        let good = ext(&[("server_no_context_takeover", None)]);
        let params = enabled().accept(&[bad.clone(), good]).unwrap();
        assert!(params.server_no_context_takeover);
        assert_eq!(enabled().accept(&[bad]), None);
        assert_eq!(DeflateConfig::default().accept(&[ext(&[])]), None, "disabled");
        assert_eq!(enabled().accept(&[]), None);
    }

    #[test]
    fn client_offers_what_its_config_says() {
        assert_eq!(DeflateConfig::default().offer(), None);
        let offer = enabled().offer().unwrap();
        assert_eq!(offer.to_offer_value(), "permessage-deflate; client_max_window_bits");
        let config = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 12,
            ..enabled()
        };
        let offer = config.offer().unwrap();
        assert_eq!(
            offer.to_offer_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
        assert_eq!(
            DeflateParams::from_offer(&parse_response_value(&offer.to_offer_value())),
            Some(offer)
        );
    }

    fn parse_response_value(value: &str) -> Extension {
        let mut out = Vec::new();
        crate::handshake::parse_extensions(value.as_bytes(), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        out.remove(0)
    }
}
