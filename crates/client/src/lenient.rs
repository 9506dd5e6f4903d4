//! Reading what the strict decode refused. A publication whose data this client cannot
//! decode (JSON nested deeper than its decoder's 128 levels, say) must not stall its
//! subscription: the message around it still says which channel, offset and command it was
//! for, so the stream reports it and moves past it instead of waiting for a reply it
//! dropped and reconnecting forever.

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::value::RawValue;
use switchboard_proto::{ClientInfo, ErrorBody, Format, Publication, Reply, Value};

/// A publication in a stream, or what is known of one that could not be decoded.
#[derive(Debug)]
pub(crate) enum Entry {
    Publication(Publication),
    Undecodable { offset: u64, reason: String },
}

impl Entry {
    pub(crate) fn offset(&self) -> u64 {
        match self {
            Entry::Publication(p) => p.offset,
            Entry::Undecodable { offset, .. } => *offset,
        }
    }
}

/// What could be read of a message the strict decode refused.
#[derive(Debug)]
pub(crate) enum Salvaged {
    /// A `publication` push whose data cannot be decoded.
    Publication { channel: String, offset: u64, reason: String },
    /// A reply: its result without the publications that cannot be decoded, and those.
    Reply { reply: Reply<Value>, undecodable: Vec<Entry> },
}

/// Reads what it can of `bytes`, refused by the strict decode with `reason`: `None` when
/// not even the envelope can be read.
///
/// In JSON, each publication's data is read on its own, so only those that cannot be
/// decoded are lost. MessagePack has no raw value to defer to: there every publication of a
/// reply that cannot be read is reported undecodable.
pub(crate) fn salvage(format: Format, bytes: &[u8], reason: &str) -> Option<Salvaged> {
    // Skipping a value never recurses in serde_json, so the envelope reads at any depth.
    let probe: Probe = format.decode(bytes).ok()?;
    match (probe.id, probe.push.as_deref()) {
        (Some(_), _) => match format {
            Format::Json => reply::<Box<RawValue>>(format, bytes, reason),
            Format::Msgpack => reply::<Skipped>(format, bytes, reason),
        },
        (None, Some("publication")) => {
            let push: PushShape = format.decode(bytes).ok()?;
            let reason = reason.to_owned();
            Some(Salvaged::Publication { channel: push.channel, offset: push.offset, reason })
        }
        _ => None,
    }
}

fn reply<D: Data>(format: Format, bytes: &[u8], reason: &str) -> Option<Salvaged> {
    let shape: ReplyShape<D> = format.decode(bytes).ok()?;
    let mut undecodable = Vec::new();
    let result = shape.result.map(|result| {
        let mut fields = result.rest;
        let mut publications = Vec::new();
        for p in result.publications {
            match p.data.into_value(reason) {
                Ok(data) => {
                    let publication = Publication {
                        offset: p.offset,
                        data,
                        info: p.info.map(std::sync::Arc::new),
                    };
                    publications.push(serde_json::to_value(publication).unwrap_or(Value::Null));
                }
                Err(reason) => undecodable.push(Entry::Undecodable { offset: p.offset, reason }),
            }
        }
        if !publications.is_empty() {
            fields.insert("publications".to_owned(), Value::Array(publications));
        }
        Value::Object(fields)
    });
    let reply = Reply { id: shape.id, result, error: shape.error };
    Some(Salvaged::Reply { reply, undecodable })
}

/// A publication's data, read later than the rest.
trait Data: DeserializeOwned {
    fn into_value(self, reason: &str) -> Result<Value, String>;
}

impl Data for Box<RawValue> {
    fn into_value(self, _: &str) -> Result<Value, String> {
        serde_json::from_str(self.get()).map_err(|e| e.to_string())
    }
}

/// Data skipped unread: MessagePack cannot defer reading it.
struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Skipped)
    }
}

impl Data for Skipped {
    fn into_value(self, reason: &str) -> Result<Value, String> {
        Err(reason.to_owned())
    }
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    push: Option<String>,
}

#[derive(Deserialize)]
struct PushShape {
    channel: String,
    offset: u64,
}

#[derive(Deserialize)]
#[serde(bound = "D: Data")]
struct ReplyShape<D> {
    id: u64,
    #[serde(default = "Option::default")]
    result: Option<ResultShape<D>>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
#[serde(bound = "D: Data")]
struct ResultShape<D> {
    #[serde(default = "Vec::new")]
    publications: Vec<PublicationShape<D>>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(bound = "D: Data")]
struct PublicationShape<D> {
    offset: u64,
    data: D,
    #[serde(default)]
    info: Option<ClientInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSON value nested `depth` arrays deep.
    fn deep(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn a_deep_publication_push_keeps_its_channel_and_offset() {
        let push =
            format!(r#"{{"push":"publication","channel":"ch","offset":7,"data":{}}}"#, deep(200));
        let strict = Format::Json.decode::<switchboard_proto::ServerMessage>(push.as_bytes());
        let reason = strict.expect_err("too deep for the strict decode");
        match salvage(Format::Json, push.as_bytes(), &reason) {
            Some(Salvaged::Publication { channel, offset, .. }) => {
                assert_eq!((channel.as_str(), offset), ("ch", 7));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reply_loses_only_its_undecodable_publications() {
        let reply = format!(
            r#"{{"id":3,"result":{{"epoch":"e","offset":3,"recoverable":true,"recovered":true,
            "publications":[{{"offset":1,"data":1}},{{"offset":2,"data":{}}},{{"offset":3,"data":3}}]}}}}"#,
            deep(200)
        );
        let Some(Salvaged::Reply { reply, undecodable }) =
            salvage(Format::Json, reply.as_bytes(), "too deep")
        else {
            panic!("a reply")
        };
        assert_eq!(reply.id, 3);
        let result = reply.result.expect("a result");
        assert_eq!(result["recovered"], true);
        let offsets: Vec<_> = result["publications"]
            .as_array()
            .expect("publications")
            .iter()
            .map(|p| p["offset"].clone())
            .collect();
        assert_eq!(offsets, [serde_json::json!(1), serde_json::json!(3)]);
        assert!(matches!(undecodable.as_slice(), [Entry::Undecodable { offset: 2, .. }]));
    }

    #[test]
    fn garbage_is_not_salvaged() {
        assert!(salvage(Format::Json, b"not json", "bad").is_none());
        assert!(salvage(Format::Json, br#"{"push":"join"}"#, "bad").is_none());
    }
}
