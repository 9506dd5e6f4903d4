//! Reading a command's fields in one pass, under the rules every subscriber relies on: values
//! nest at most [`MAX_DEPTH`] levels, map keys are strings and appear once, and MessagePack
//! carries only what JSON can. A broken rule is noted and reading goes on, so the refusal
//! still knows the command's id.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Most levels of arrays and maps in one field of a command (`data` above all) or of an API
/// request body: 64. The command's own map is not counted, so `{"data": [[1]]}` is 2 levels.
///
/// The deepest server message that carries a client's value, a `history` reply or a
/// `subscribe` reply with recovered publications, wraps it in 4 more levels
/// (`{"result": {"publications": [{"data": …}]}}`): 68 in all, well within the 127 levels
/// serde_json decodes and the 1024 of rmp-serde, so whatever a server accepts every
/// subscriber can decode, in either format.
pub const MAX_DEPTH: usize = 64;

/// A value that breaks the nesting rule.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("`data` nests deeper than {MAX_DEPTH} levels of arrays and maps")]
pub struct TooDeep;

/// Checks that `data`, as a `publish` command or an API request carries it, nests at most
/// [`MAX_DEPTH`] levels of arrays and maps.
///
/// ```
/// use switchboard_proto::{MAX_DEPTH, Value, check_data_depth};
/// let mut data = Value::Null;
/// for _ in 0..MAX_DEPTH {
///     data = Value::Array(vec![data]);
/// }
/// assert!(check_data_depth(&data).is_ok());
/// assert!(check_data_depth(&Value::Array(vec![data])).is_err());
/// ```
///
/// # Errors
///
/// [`TooDeep`] when it nests deeper.
pub fn check_data_depth(data: &Value) -> Result<(), TooDeep> {
    if exceeds(data, MAX_DEPTH) { Err(TooDeep) } else { Ok(()) }
}

/// Whether `value` holds more than `levels` levels; recurses at most `levels + 1` deep.
fn exceeds(value: &Value, levels: usize) -> bool {
    match value {
        Value::Array(items) => levels == 0 || items.iter().any(|v| exceeds(v, levels - 1)),
        Value::Object(map) => levels == 0 || map.values().any(|v| exceeds(v, levels - 1)),
        _ => false,
    }
}

/// What reading a command found besides its fields.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    /// The first rule the input broke, as the error message to send.
    pub(crate) problem: Option<String>,
    /// Whether `id` appears more than once: then no id can be trusted.
    pub(crate) repeated_id: bool,
}

impl Checks {
    fn refuse(&mut self, message: impl FnOnce() -> String) {
        if self.problem.is_none() {
            self.problem = Some(message());
        }
    }
}

/// Reads a command's top-level map into its fields.
pub(crate) struct CommandSeed<'c>(pub(crate) &'c mut Checks);

impl<'de> DeserializeSeed<'de> for CommandSeed<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CommandSeed<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command: a map with `id` and `type`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let checks = self.0;
        let mut fields = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed { checks: &mut *checks, field: None })? {
            let field = key.as_deref().unwrap_or("");
            let value = map.next_value_seed(ValueSeed { checks: &mut *checks, field, depth: 0 })?;
            let Some(key) = key else { continue };
            match fields.entry(key) {
                Entry::Vacant(entry) => {
                    entry.insert(value);
                }
                Entry::Occupied(entry) => {
                    checks.repeated_id |= entry.key() == "id";
                    checks.refuse(|| format!("duplicate key {}", shown(entry.key())));
                }
            }
        }
        Ok(fields)
    }
}

/// Reads a map key: a string, or else a noted problem and `None`.
struct KeySeed<'c, 'f> {
    checks: &'c mut Checks,
    /// The command field whose value holds the map, `None` for the command itself.
    field: Option<&'f str>,
}

impl KeySeed<'_, '_> {
    fn refuse(self, what: &str) -> Option<String> {
        let field = self.field;
        self.checks.refuse(|| match field {
            None => format!("the command's keys must be strings, not {what}"),
            Some(field) => format!("a map key in `{}` is {what}, not a string", clip(field)),
        });
        None
    }
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(self.refuse("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(self.refuse("an integer"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(self.refuse("an integer"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(self.refuse("a float"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.refuse("nil"))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
        Ok(self.refuse(BINARY))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        IgnoredAny::deserialize(de)?;
        Ok(self.refuse("a MessagePack ext"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(self.refuse("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(self.refuse("a map"))
    }
}

/// Reads one value of a command field as JSON, `depth` levels inside the field.
struct ValueSeed<'c, 'f> {
    checks: &'c mut Checks,
    /// The command field being read, for messages.
    field: &'f str,
    /// How many arrays and maps of the field enclose this value.
    depth: usize,
}

impl ValueSeed<'_, '_> {
    /// A value JSON cannot carry: noted, and read as null to go on.
    fn refuse(self, what: &str) -> Value {
        let field = self.field;
        self.checks.refuse(|| format!("`{}` holds {what}, which JSON cannot carry", clip(field)));
        Value::Null
    }

    /// Notes a value nested too deep, in which case its contents are skipped unread.
    fn is_too_deep(&mut self) -> bool {
        let too_deep = self.depth >= MAX_DEPTH;
        if too_deep {
            let field = self.field;
            self.checks.refuse(|| {
                format!("`{}` nests deeper than {MAX_DEPTH} levels of arrays and maps", clip(field))
            });
        }
        too_deep
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // As serde_json does: NaN and the infinities have no JSON form.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        self.deserialize(de)
    }

    /// rmp-serde presents a MessagePack bin, and a str that is not UTF-8, as bytes.
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Ok(self.refuse(BINARY))
    }

    /// rmp-serde presents a MessagePack ext as a newtype struct.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        IgnoredAny::deserialize(de)?;
        Ok(self.refuse("a MessagePack ext"))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        if self.is_too_deep() {
            // serde_json skips iteratively, so no input can exhaust the stack here.
            IgnoredAny.visit_seq(seq)?;
            return Ok(Value::Null);
        }
        let mut items = Vec::new();
        let (field, depth) = (self.field, self.depth + 1);
        while let Some(item) =
            seq.next_element_seed(ValueSeed { checks: &mut *self.checks, field, depth })?
        {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        if self.is_too_deep() {
            IgnoredAny.visit_map(map)?;
            return Ok(Value::Null);
        }
        let mut object = Map::new();
        let (field, depth) = (self.field, self.depth + 1);
        while let Some(key) =
            map.next_key_seed(KeySeed { checks: &mut *self.checks, field: Some(field) })?
        {
            let value =
                map.next_value_seed(ValueSeed { checks: &mut *self.checks, field, depth })?;
            let Some(key) = key else { continue };
            match object.entry(key) {
                Entry::Vacant(entry) => {
                    entry.insert(value);
                }
                Entry::Occupied(entry) => self.checks.refuse(|| {
                    format!("duplicate key {:?} in `{}`", clip(entry.key()), clip(field))
                }),
            }
        }
        Ok(Value::Object(object))
    }
}

/// A top-level key as messages show it.
fn shown(key: &str) -> String {
    format!("`{}`", clip(key))
}

/// At most 40 characters of a client's key: enough to recognise it, not an echo chamber.
fn clip(s: &str) -> &str {
    s.char_indices().nth(40).map_or(s, |(at, _)| &s[..at])
}

/// How deep rmp-serde reads before it gives up (its default is 1024): past [`MAX_DEPTH`]
/// values are only skipped, but skipping MessagePack recurses, and 1024 levels overflow a
/// 2 MiB stack in a debug build.
pub(crate) const MSGPACK_DEPTH: usize = 4 * MAX_DEPTH;

/// What messages call bytes: rmp-serde cannot tell a bin from a str that is not UTF-8.
const BINARY: &str = "binary data (a MessagePack bin, or a str that is not UTF-8)";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        Command, CommandKind, DecodeError, ErrorCode, Format, HistoryResult, Publication, Reply,
        ServerMessage, SubscribeResult,
    };

    /// A document both formats can spell, duplicate keys and non-string keys included.
    #[derive(Clone)]
    enum Doc {
        Nil,
        Int(u8),
        Str(&'static str),
        Array(Vec<Doc>),
        Map(Vec<(Doc, Doc)>),
        /// MessagePack bytes, for what JSON cannot say.
        Packed(Vec<u8>),
        /// Null in this many arrays, spelt without recursion.
        Nested(usize),
    }

    use Doc::{Array, Int, Map, Nested, Nil, Packed, Str};

    impl Doc {
        fn json(&self) -> String {
            match self {
                Nil => "null".to_owned(),
                Int(n) => n.to_string(),
                Str(s) => format!("{s:?}"),
                Array(items) => {
                    let items: Vec<_> = items.iter().map(Doc::json).collect();
                    format!("[{}]", items.join(","))
                }
                Map(entries) => {
                    let entries: Vec<_> =
                        entries.iter().map(|(k, v)| format!("{}:{}", k.json(), v.json())).collect();
                    format!("{{{}}}", entries.join(","))
                }
                Packed(_) => panic!("JSON has no spelling for raw MessagePack"),
                Nested(levels) => format!("{}null{}", "[".repeat(*levels), "]".repeat(*levels)),
            }
        }

        fn packed(&self) -> Vec<u8> {
            let mut out = Vec::new();
            self.pack(&mut out);
            out
        }

        fn pack(&self, out: &mut Vec<u8>) {
            match self {
                Nil => out.push(0xc0),
                Int(n) => {
                    assert!(*n < 0x80);
                    out.push(*n);
                }
                Str(s) => {
                    assert!(s.len() < 32);
                    out.push(0xa0 | s.len() as u8);
                    out.extend_from_slice(s.as_bytes());
                }
                Array(items) => {
                    out.push(0xdc);
                    out.extend_from_slice(&(items.len() as u16).to_be_bytes());
                    items.iter().for_each(|item| item.pack(out));
                }
                Map(entries) => {
                    out.push(0xde);
                    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
                    for (k, v) in entries {
                        k.pack(out);
                        v.pack(out);
                    }
                }
                Packed(bytes) => out.extend_from_slice(bytes),
                Nested(levels) => {
                    out.extend(std::iter::repeat_n(0x91, *levels));
                    out.push(0xc0);
                }
            }
        }
    }

    /// A `publish` of `data`, with `id` first or last.
    fn publish(id: u8, data: Doc, id_first: bool) -> Doc {
        let mut entries =
            vec![(Str("type"), Str("publish")), (Str("channel"), Str("c")), (Str("data"), data)];
        if id_first {
            entries.insert(0, (Str("id"), Int(id)));
        } else {
            entries.push((Str("id"), Int(id)));
        }
        Map(entries)
    }

    fn decode_both(doc: &Doc) -> [Result<Command, DecodeError>; 2] {
        [
            Format::Json.decode_command(doc.json().as_bytes()),
            Format::Msgpack.decode_command(&doc.packed()),
        ]
    }

    /// Decodes `doc` in MessagePack, and in JSON unless it holds raw MessagePack.
    fn refusals(doc: &Doc) -> Vec<DecodeError> {
        let mut results = vec![Format::Msgpack.decode_command(&doc.packed())];
        if !matches!(doc, Map(entries) if entries.iter().any(|(_, v)| holds_packed(v))) {
            results.push(Format::Json.decode_command(doc.json().as_bytes()));
        }
        results.into_iter().map(|r| r.expect_err("refused")).collect()
    }

    fn holds_packed(doc: &Doc) -> bool {
        match doc {
            Packed(_) => true,
            Array(items) => items.iter().any(holds_packed),
            Map(entries) => entries.iter().any(|(k, v)| holds_packed(k) || holds_packed(v)),
            _ => false,
        }
    }

    fn data_of(command: Command) -> Value {
        match command.kind {
            CommandKind::Publish(publish) => publish.data,
            other => panic!("not a publish: {other:?}"),
        }
    }

    #[test]
    fn both_formats_accept_data_exactly_max_depth_deep() {
        for id_first in [true, false] {
            let [json, packed] = decode_both(&publish(3, Nested(MAX_DEPTH), id_first));
            let data = data_of(json.unwrap());
            assert_eq!(data_of(packed.unwrap()), data);
            assert!(check_data_depth(&data).is_ok());
        }
        let inner: Value = serde_json::from_str(&Nested(MAX_DEPTH - 3).json()).unwrap();
        let deep = json!({"a": [{"b": inner}]});
        assert!(check_data_depth(&deep).is_ok());
        assert_eq!(check_data_depth(&json!({"a": deep})), Err(TooDeep));
    }

    #[test]
    fn both_formats_refuse_deeper_data_keeping_the_id() {
        for levels in [MAX_DEPTH + 1, 200, MSGPACK_DEPTH - 2] {
            for id_first in [true, false] {
                for err in refusals(&publish(4, Nested(levels), id_first)) {
                    assert_eq!((err.id, err.code), (Some(4), ErrorCode::BadRequest), "{levels}");
                    assert_eq!(err.message, TooDeep.to_string());
                }
            }
        }
        // Past the depth MessagePack is skipped to, nothing can be trusted, but the message
        // stays specific.
        let err = Format::Msgpack.decode_command(&publish(4, Nested(MSGPACK_DEPTH), true).packed());
        let err = err.unwrap_err();
        assert_eq!(
            (err.id, err.code, err.message),
            (None, ErrorCode::BadRequest, TooDeep.to_string())
        );
    }

    #[test]
    fn the_limit_holds_in_every_field() {
        let since = Map(vec![(Str("offset"), Nested(MAX_DEPTH)), (Str("epoch"), Str("e"))]);
        let doc = Map(vec![
            (Str("id"), Int(5)),
            (Str("type"), Str("subscribe")),
            (Str("channel"), Str("c")),
            (Str("since"), since),
        ]);
        for err in refusals(&doc) {
            assert_eq!(err.id, Some(5));
            assert_eq!(err.message, "`since` nests deeper than 64 levels of arrays and maps");
        }
    }

    #[test]
    fn the_deepest_reply_to_accepted_data_decodes_everywhere() {
        let data = data_of(
            Format::Json
                .decode_command(publish(1, Nested(MAX_DEPTH), true).json().as_bytes())
                .unwrap(),
        );
        let publications = vec![Publication { offset: 1, data, info: None }];
        let history = HistoryResult { publications: publications.clone(), ..Default::default() };
        let recovered = SubscribeResult { publications, ..Default::default() };
        for format in [Format::Json, Format::Msgpack] {
            for reply in
                [format.encode(&Reply::ok(2, &history)), format.encode(&Reply::ok(2, &recovered))]
            {
                let message: ServerMessage = format.decode(&reply.unwrap()).unwrap();
                assert!(matches!(message, ServerMessage::Reply(reply) if reply.id == 2));
            }
        }
    }

    #[test]
    fn serde_json_stops_where_the_docs_say() {
        // The margin MAX_DEPTH leaves: a history reply adds 4 levels and serde_json reads 127.
        let reply = |levels: usize| {
            let data = Nested(levels).json();
            format!(r#"{{"id":1,"result":{{"publications":[{{"offset":1,"data":{data}}}]}}}}"#)
        };
        assert!(serde_json::from_str::<Value>(&reply(123)).is_ok());
        assert!(serde_json::from_str::<Value>(&reply(124)).is_err());
    }

    #[test]
    fn msgpack_values_json_cannot_carry_keep_the_id() {
        let cases = [
            (Packed(vec![0xc4, 0x01, 0x00]), "`data` holds binary data"),
            (Packed(vec![0xa1, 0xff]), "`data` holds binary data"),
            (Packed(vec![0xd4, 0x05, 0x00]), "`data` holds a MessagePack ext"),
            (Array(vec![Map(vec![(Int(1), Nil)])]), "a map key in `data` is an integer"),
            (Map(vec![(Packed(vec![0xc4, 0x00]), Nil)]), "a map key in `data` is binary data"),
            (Map(vec![(Array(vec![]), Nil)]), "a map key in `data` is an array"),
        ];
        for (data, message) in cases {
            for id_first in [true, false] {
                let err =
                    Format::Msgpack.decode_command(&publish(6, data.clone(), id_first).packed());
                let err = err.unwrap_err();
                assert_eq!((err.id, err.code), (Some(6), ErrorCode::BadRequest), "{message}");
                assert!(err.message.starts_with(message), "{}", err.message);
            }
        }
        let doc = Map(vec![(Int(1), Int(2)), (Str("id"), Int(7)), (Str("type"), Str("ping"))]);
        let err = Format::Msgpack.decode_command(&doc.packed()).unwrap_err();
        assert_eq!(
            (err.id, err.message.as_str()),
            (Some(7), "the command's keys must be strings, not an integer")
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_every_level_in_both_formats() {
        let cases = [
            (
                Map(vec![
                    (Str("id"), Int(13)),
                    (Str("type"), Str("ping")),
                    (Str("type"), Str("ping")),
                ]),
                Some(13),
                "duplicate key `type`",
            ),
            (
                publish(9, Map(vec![(Str("x"), Int(1)), (Str("x"), Int(2))]), true),
                Some(9),
                "duplicate key \"x\" in `data`",
            ),
            (
                publish(
                    9,
                    Array(vec![Map(vec![(Str("a"), Map(vec![(Str("b"), Nil), (Str("b"), Nil)]))])]),
                    false,
                ),
                Some(9),
                "duplicate key \"b\" in `data`",
            ),
            // Either id could be meant: the reply carries neither.
            (
                Map(vec![(Str("id"), Int(13)), (Str("type"), Str("ping")), (Str("id"), Int(14))]),
                None,
                "duplicate key `id`",
            ),
            (
                Map(vec![(Str("id"), Int(13)), (Str("type"), Str("ping")), (Str("id"), Int(13))]),
                None,
                "duplicate key `id`",
            ),
        ];
        for (doc, id, message) in cases {
            for err in refusals(&doc) {
                assert_eq!(
                    (err.id, err.code, err.message.as_str()),
                    (id, ErrorCode::BadRequest, message)
                );
            }
        }
    }

    #[test]
    fn messages_clip_long_keys() {
        let key = "k".repeat(1000);
        let input =
            format!(r#"{{"id":1,"type":"publish","channel":"c","data":{{"{key}":1,"{key}":2}}}}"#);
        let err = Format::Json.decode_command(input.as_bytes()).unwrap_err();
        assert_eq!(err.message, format!("duplicate key {:?} in `data`", "k".repeat(40)));
    }
}
