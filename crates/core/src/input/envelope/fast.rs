//! The fast path of [`decode_line`](super::decode_line): a typed parse that borrows every string from the
//! line instead of building a `serde_json::Value` (a map, and a `String` per field name
//! and value, all freed again a moment later).
//!
//! Invariant: it returns `Some` only for a line the general decoder accepts, and then
//! exactly the event the general decoder would build. It declines (`None`) anything
//! unusual, and the general decoder decides, with its exact rejection: strings with
//! escapes (they cannot be borrowed), non-finite literals (they are not JSON, so the
//! parse fails), fractional numbers in `attrs` (their text needs the raw line), `id` or
//! `ts` of an unusual type or range (an id beyond 64 bits among them), duplicate fields,
//! and every line that fails a check. Like the general decoder it reads a line without
//! one leading byte-order mark ([`line_content`](super::line_content)).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::{
    DecodedEvent, MAX_KEY_CHARS, TimeBounds, check_metric_name, id_len_ok, line_content,
    ts_in_range, value_in_range,
};
use crate::time::parse_rfc3339_ms;

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a, A: Deserialize<'de>"))]
struct Envelope<'a, A> {
    #[serde(borrow, default)]
    id: Option<Scalar<'a>>,
    key: &'a str,
    #[serde(rename = "type")]
    metric: &'a str,
    ts: Ts,
    value: f64,
    #[serde(default)]
    attrs: Option<A>,
    #[serde(default)]
    origin: Option<&'a str>,
}

/// A string borrowed from the line, an integer or a boolean, as the text the general
/// decoder would keep (integers and booleans print the same from a `Value`).
pub(crate) enum Scalar<'a> {
    Str(&'a str),
    Text(String),
    Bool(bool),
}

impl Scalar<'_> {
    fn into_string(self) -> String {
        match self {
            Scalar::Str(s) => s.to_owned(),
            Scalar::Text(s) => s,
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unescaped string, an integer or a boolean")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(s))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Text(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Text(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(b))
            }
        }
        d.deserialize_any(V)
    }
}

/// `ts` as epoch milliseconds: an integer, a number (truncated to the millisecond) or
/// an RFC 3339 string without escapes.
struct Ts(i64);

impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("epoch milliseconds or an RFC 3339 string")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Ts, E> {
                Ok(Ts(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Ts, E> {
                i64::try_from(n)
                    .map(Ts)
                    .map_err(|_| E::custom("ts out of range"))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<Ts, E> {
                if f.is_finite() && f.abs() < 9.0e15 {
                    Ok(Ts(f.floor() as i64))
                } else {
                    Err(E::custom("ts out of range"))
                }
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Ts, E> {
                parse_rfc3339_ms(s)
                    .map(Ts)
                    .ok_or_else(|| E::custom("ts is not RFC 3339"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Attributes the fast path accepts (borrowed names; unescaped strings, integers,
/// booleans), checked without being kept: for stages that never read them.
struct UnkeptAttrs;

impl<'de> Deserialize<'de> for UnkeptAttrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UnkeptAttrs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of scalars")
            }
            fn visit_map<M: de::MapAccess<'de>>(self, mut map: M) -> Result<UnkeptAttrs, M::Error> {
                while let Some((_, _)) = map.next_entry::<&'de str, Scalar<'de>>()? {}
                Ok(UnkeptAttrs)
            }
        }
        d.deserialize_map(V)
    }
}

/// What the fast path does with `attrs`.
pub(super) trait AttrsMode<'a>: Deserialize<'a> {
    fn into_attrs(self) -> BTreeMap<String, String>;
}

impl<'a> AttrsMode<'a> for BTreeMap<&'a str, Scalar<'a>> {
    fn into_attrs(self) -> BTreeMap<String, String> {
        self.into_iter()
            .map(|(name, v)| (name.to_owned(), v.into_string()))
            .collect()
    }
}

impl AttrsMode<'_> for UnkeptAttrs {
    fn into_attrs(self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

pub(super) fn decode(line: &[u8], bounds: TimeBounds) -> Option<DecodedEvent> {
    decode_as::<BTreeMap<&str, Scalar<'_>>>(line, bounds)
}

/// [`decode`] for stages that never read `attrs`: checked like the general decoder
/// checks them, but not kept (the event's `attrs` is empty).
pub(super) fn decode_without_attrs(line: &[u8], bounds: TimeBounds) -> Option<DecodedEvent> {
    decode_as::<UnkeptAttrs>(line, bounds)
}

/// A valid envelope with every string borrowed from its line: what ingest
/// normalizes ([`decode_borrowed`]) and aggregate counts
/// ([`decode_borrowed_without_attrs`]) without building an owned event.
#[derive(Debug)]
pub(crate) struct BorrowedEvent<'a> {
    /// The producer's id, as the text the general decoder would keep.
    pub id: Option<Scalar<'a>>,
    pub key: &'a str,
    pub metric: &'a str,
    pub ts: i64,
    pub value: f64,
    /// Empty from [`decode_borrowed_without_attrs`].
    pub attrs: BTreeMap<&'a str, Scalar<'a>>,
    /// The origin an upstream stage stamped (ingest ignores a producer's).
    pub origin: Option<&'a str>,
}

impl fmt::Debug for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'a> Scalar<'a> {
    /// The text [`Scalar::into_string`] gives, borrowed from the line where it is.
    pub(crate) fn into_cow(self) -> std::borrow::Cow<'a, str> {
        match self {
            Scalar::Str(s) => std::borrow::Cow::Borrowed(s),
            other => std::borrow::Cow::Owned(other.into_string()),
        }
    }
}

impl Scalar<'_> {
    /// The text [`Scalar::into_string`] gives, borrowed.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Scalar::Str(s) => s,
            Scalar::Text(s) => s,
            Scalar::Bool(true) => "true",
            Scalar::Bool(false) => "false",
        }
    }
}

/// As the string it stands for: what the owned event serializes.
impl serde::Serialize for Scalar<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// [`decode`] without copying a string out of the line: `Some` for exactly the
/// lines [`decode`] takes, holding the same values.
pub(crate) fn decode_borrowed(line: &[u8], bounds: TimeBounds) -> Option<BorrowedEvent<'_>> {
    decode_borrowed_as::<BTreeMap<&str, Scalar<'_>>>(line, bounds, Option::unwrap_or_default)
}

/// [`decode_without_attrs`] without copying a string out of the line: `Some` for
/// exactly the lines it takes, holding the same values (`attrs` checked, not kept).
pub(crate) fn decode_borrowed_without_attrs(
    line: &[u8],
    bounds: TimeBounds,
) -> Option<BorrowedEvent<'_>> {
    decode_borrowed_as::<UnkeptAttrs>(line, bounds, |_| BTreeMap::new())
}

fn decode_borrowed_as<'a, A: Deserialize<'a>>(
    line: &'a [u8],
    bounds: TimeBounds,
    attrs: impl FnOnce(Option<A>) -> BTreeMap<&'a str, Scalar<'a>>,
) -> Option<BorrowedEvent<'a>> {
    let e = decode_checked::<A>(line, bounds)?;
    Some(BorrowedEvent {
        id: e.id,
        key: e.key,
        metric: e.metric,
        ts: e.ts.0,
        value: e.value,
        attrs: attrs(e.attrs),
        origin: e.origin,
    })
}

/// Parses a line and applies every check of the general decoder; `None` when the
/// line is unusual or fails one (the general decoder then gives the verdict).
fn decode_checked<'a, A: Deserialize<'a>>(
    line: &'a [u8],
    bounds: TimeBounds,
) -> Option<Envelope<'a, A>> {
    let e: Envelope<'a, A> = serde_json::from_slice(line_content(line)).ok()?;
    // A boolean id is a wrong type: the general decoder says so.
    if matches!(e.id, Some(Scalar::Bool(_))) {
        return None;
    }
    if e.id.as_ref().is_some_and(|id| !id_len_ok(id.as_str()))
        || e.key.is_empty()
        || e.key.chars().count() > MAX_KEY_CHARS
        || check_metric_name(e.metric).is_err()
        || !ts_in_range(e.ts.0, bounds)
        || !value_in_range(e.value)
    {
        return None;
    }
    Some(e)
}

fn decode_as<'a, A: AttrsMode<'a>>(line: &'a [u8], bounds: TimeBounds) -> Option<DecodedEvent> {
    let e = decode_checked::<A>(line, bounds)?;
    let attrs = e.attrs.map(A::into_attrs).unwrap_or_default();
    Some(DecodedEvent {
        id: e.id.map(Scalar::into_string),
        key: e.key.to_owned(),
        metric: e.metric.to_owned(),
        ts: e.ts.0,
        value: e.value,
        attrs,
        origin: e.origin.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::envelope::test_support::*;
    use crate::input::envelope::*;

    #[test]
    fn fast_path_takes_plain_envelopes_and_declines_escapes() {
        let plain = br#"{"id":"e1","key":"k","type":"t","ts":1764000000000,"value":2,"attrs":{"a":"x","n":3,"b":false},"origin":"s:1:0"}"#;
        let event = decode(plain, bounds()).expect("a plain envelope takes the fast path");
        assert_eq!(event.attrs.get("n").map(String::as_str), Some("3"));
        assert_eq!(event.attrs.get("b").map(String::as_str), Some("false"));
        assert_eq!(Ok(event), decode_line_slow(plain, bounds()));
        let escaped = br#"{"key":"k\u00e9","type":"t","ts":1764000000000,"value":2}"#;
        assert!(decode(escaped, bounds()).is_none());
        assert_eq!(
            decode_line(escaped, bounds()).map(|e| e.key),
            Ok("k\u{e9}".to_owned())
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]


        /// The fast path never changes a verdict: for lines built from every form each
        /// field can take (valid, escaped, wrongly typed, out of range, absent, null,
        /// duplicated), `decode_line` gives exactly what the general decoder gives.
        #[test]
        fn fast_path_decodes_exactly_like_the_general_decoder(
            id in proptest::sample::select(vec![
                "", r#""id":"e1","#, r#""id":7,"#, r#""id":-7,"#, r#""id":1.5,"#, r#""id":true,"#,
                r#""id":null,"#, r#""id":"","#, r#""id":"e\u00e9","#, r#""id":"a","id":"b","#,
                r#""id":"\u0000sluice:non-finite","#, r#""id":NaN,"#, r#""id":123456789012345678901234567890,"#,
                r#""id":-123456789012345678901234567890,"#, r#""id":1e30,"#, r#""id":-0,"#,
                r#""id":18446744073709551616,"#, r#""id":1e999,"#,
            ]),
            key in proptest::sample::select(vec![
                r#""key":"k1","#, r#""key":"","#, r#""key":7,"#, r#""key":null,"#, "",
                r#""key":"k\"q","#, r#""key":"\u0000sluice:non-finite","#, r#""key":"ké","#,
            ]),
            metric in proptest::sample::select(vec![
                r#""type":"temp","#, r#""type":"bad name","#, r#""type":"","#, r#""type":[1],"#, "",
                r#""type":"\u0000sluice:non-finite","#, r#""type":Infinity,"#,
            ]),
            ts in proptest::sample::select(vec![
                r#""ts":1764000000000,"#, r#""ts":1764000000000.7,"#, r#""ts":-5,"#,
                r#""ts":"2025-11-24T16:00:00Z","#, r#""ts":"yesterday","#, r#""ts":99999999999999999999,"#,
                r#""ts":1e300,"#, r#""ts":null,"#, r#""ts":"2025-11-24T16:00:00\u005a","#, r#""ts":9999999999999,"#,
                r#""ts":18446744073709551615,"#, r#""ts":true,"#, r#""ts":"\u0000sluice:non-finite","#,
                r#""ts":NaN,"#, r#""ts":1764000000,"#, r#""ts":1764000000.5,"#, r#""ts":"1970-02-01T00:00:00Z","#,
                r#""ts":999999999,"#, r#""ts":10000000000,"#,
            ]),
            value in proptest::sample::select(vec![
                r#""value":1.5"#, r#""value":0"#, r#""value":-0"#, r#""value":1e101"#, r#""value":1e-101"#,
                r#""value":1e999"#, r#""value":NaN"#, r#""value":"1""#, r#""value":null"#, r#""value":12345678901234567890"#,
                r#""value":"\u0000sluice:non-finite""#,
            ]),
            attrs in proptest::sample::select(vec![
                "", r#","attrs":{"a":"x","b":2,"c":true}"#, r#","attrs":{"f":1.10}"#, r#","attrs":{"e":1e15}"#,
                r#","attrs":null"#, r#","attrs":[1]"#, r#","attrs":{"n":null}"#, r#","attrs":{"o":{}}"#,
                r#","attrs":{"a":"1","a":"2"}"#, r#","attrs":{"k\u00e9":"v"}"#, r#","attrs":{"v":"\t"}"#,
                r#","attrs":{"neg":-3}"#, r#","attrs":{"s":"\u0000sluice:non-finite"}"#,
                r#","attrs":"\u0000sluice:non-finite""#, r#","attrs":{"n":NaN}"#, r#","attrs":NaN"#,
                r#","attrs":{"big":123456789012345678901234567890}"#,
            ]),
            tail in proptest::sample::select(vec![
                "", r#","origin":"s:1:0""#, r#","origin":5"#, r#","origin":null"#, r#","extra":{"deep":[1,2,{"x":null}]}"#,
                r#","value":2"#, r#","junk":NaN"#, r#","origin":"\u0000sluice:non-finite""#, r#","origin":NaN"#,
                r#","value":NaN"#, r#","extra":{"x":NaN,"y":[Infinity]}"#,
            ]),
            bom in proptest::sample::select(vec!["", "\u{feff}", " \u{feff} "]),
        ) {
            let line = format!("{bom}{{{id}{key}{metric}{ts}{value}{attrs}{tail}}}");
            let general = decode_line_slow(line.as_bytes(), bounds());
            proptest::prop_assert_eq!(
                decode_line(line.as_bytes(), bounds()),
                general.clone(),
                "line {}", line
            );
            proptest::prop_assert_eq!(
                decode_line_without_attrs(line.as_bytes(), bounds()),
                general.map(|mut e| { e.attrs.clear(); e }),
                "line {} without attrs", line
            );
        }
    }
}
