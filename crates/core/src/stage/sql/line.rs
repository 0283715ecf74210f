//! The lines the stages pass each other under a pipeline: ingest's [`SourceLine`] and
//! enrich's [`ViewLine`]. Both are written by hand (the bytes serde gives for the
//! structs, tested so) and read with serde, borrowing from the record.
//!
//! An event id travels as the `PRIMARY KEY`'s key text as it is (a JSON array, digested
//! without unescaping); without a `PRIMARY KEY` it is absent and the id is the origin
//! ([`id_text`]), which the line carries anyway. A group's key text travels as it is
//! too (it is a JSON array).

use std::borrow::Cow;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::StoredView;
use crate::sql::{SqlType, Value, codec};

/// What ingest passes on for each valid raw line: its row (`r`, the physical columns'
/// encodings, `null` for those no view reads: `Program::write_encoded_row`), its event
/// id and its origin.
#[derive(Serialize, Deserialize)]
pub struct SourceLine<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub origin: Cow<'a, str>,
    #[serde(borrow)]
    pub r: &'a RawValue,
}

/// What enrich passes on per event and group: the views of one event that group it by
/// the same values at the same event time share one line (`v`: per group of items, a
/// view's id or the id views alike share (`StoredView::group`), and per aggregate the
/// index of its input in `a`, `null` where its FILTER leaves the event out). Equal
/// inputs are written once: five aggregates of one column, in two views, carry that
/// column's value once.
#[derive(Serialize, Deserialize)]
pub struct ViewLine<'a> {
    /// The group's key text ([`codec::key_text`]), as it is.
    #[serde(borrow)]
    pub k: &'a RawValue,
    /// The event time.
    pub t: i64,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub origin: Cow<'a, str>,
    #[serde(borrow)]
    pub a: Vec<&'a RawValue>,
    /// Per group of items: its id and its slots, `[0,1,null]` (read by [`slots`],
    /// without a vector per group).
    #[serde(borrow)]
    pub v: Vec<(&'a str, &'a RawValue)>,
}

/// The slots of one view's part of a line (`[0,1,null]`): per aggregate, the index of
/// its input, or `None` where its FILTER leaves the event out; an item that is no slot
/// reads as `Err(())`.
pub fn slots(text: &str) -> impl Iterator<Item = Result<Option<u32>, ()>> + '_ {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .map(str::trim);
    let (items, bad) = match inner {
        Some("") => (None, false),
        Some(text) => (Some(text.split(',')), false),
        None => (None, true),
    };
    let bad = bad.then_some(Err(()));
    bad.into_iter()
        .chain(items.into_iter().flatten().map(|item| match item.trim() {
            "null" => Ok(None),
            digits => digits.parse().map(Some).map_err(|_| ()),
        }))
}

/// The event id of a line: its `PRIMARY KEY`'s key text, else its origin.
pub fn id_text<'s>(id: Option<&'s str>, origin: &'s str) -> &'s str {
    id.unwrap_or(origin)
}

/// Writes the [`SourceLine`] JSON; `write_row` writes its row.
pub fn write_source_line(
    out: &mut Vec<u8>,
    key_text: Option<&str>,
    origin: &str,
    write_row: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
) -> serde_json::Result<()> {
    out.push(b'{');
    if let Some(text) = key_text {
        // A key text is a JSON array already.
        out.extend_from_slice(b"\"id\":");
        out.extend_from_slice(text.as_bytes());
        out.push(b',');
    }
    out.extend_from_slice(b"\"origin\":");
    serde_json::to_writer(&mut *out, origin)?;
    out.extend_from_slice(b",\"r\":");
    write_row(out)?;
    out.push(b'}');
    Ok(())
}

/// One group's part of a line: its id (`StoredView::group`), and per aggregate the
/// value to add (`None`: its FILTER leaves the event out).
pub struct ViewPart<'a> {
    pub group: &'a str,
    pub adds: &'a [Option<Value>],
}

/// Buffers reused from line to line.
#[derive(Default)]
pub struct LineScratch {
    inputs: Vec<u8>,
    ranges: Vec<(usize, usize)>,
    slots: Vec<Option<u32>>,
}

/// Writes the [`ViewLine`] JSON of one event's views that share a group and event time.
pub fn write_view_line(
    out: &mut Vec<u8>,
    key_text: &str,
    ts: i64,
    source: &SourceLine<'_>,
    parts: &[ViewPart<'_>],
    scratch: &mut LineScratch,
) -> serde_json::Result<()> {
    let LineScratch {
        inputs,
        ranges,
        slots,
    } = scratch;
    inputs.clear();
    ranges.clear();
    slots.clear();
    // Each distinct encoding once: equal texts read back alike under any one type.
    let mut seen: Vec<&Value> = Vec::new();
    for add in parts.iter().flat_map(|p| p.adds) {
        let Some(value) = add else {
            slots.push(None);
            continue;
        };
        // The same value again (five aggregates of one column): not encoded again.
        if let Some(slot) = seen.iter().position(|v| same_encoding(v, value)) {
            slots.push(Some(slot as u32));
            continue;
        }
        let start = inputs.len();
        codec::write_value(inputs, value);
        let text = &inputs[start..];
        let slot = match ranges.iter().position(|&(s, e)| inputs[s..e] == *text) {
            Some(found) => {
                inputs.truncate(start);
                found
            }
            None => {
                ranges.push((start, inputs.len()));
                ranges.len() - 1
            }
        };
        if slot == seen.len() {
            seen.push(value);
        }
        slots.push(Some(slot as u32));
    }
    out.extend_from_slice(b"{\"k\":");
    out.extend_from_slice(key_text.as_bytes());
    out.extend_from_slice(b",\"t\":");
    serde_json::to_writer(&mut *out, &ts)?;
    if let Some(id) = source.id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id.get().as_bytes());
    }
    out.extend_from_slice(b",\"origin\":");
    serde_json::to_writer(&mut *out, source.origin.as_ref())?;
    out.extend_from_slice(b",\"a\":[");
    for (i, &(s, e)) in ranges.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&inputs[s..e]);
    }
    out.extend_from_slice(b"],\"v\":[");
    let mut at = 0;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        serde_json::to_writer(&mut *out, part.group)?;
        out.extend_from_slice(b",");
        let n = part.adds.len();
        serde_json::to_writer(&mut *out, &slots[at..at + n])?;
        at += n;
        out.push(b']');
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// Whether two values certainly encode alike (a cheap test: `false` only costs an
/// encoding). Doubles by their bits: 0.0 and -0.0 are equal but encode apart.
fn same_encoding(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Boolean(x), Value::Boolean(y)) => x == y,
        (Value::BigInt(x), Value::BigInt(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits(),
        (Value::String(x), Value::String(y)) => std::sync::Arc::ptr_eq(x, y) || x == y,
        _ => false,
    }
}

/// A line's inputs read back, each at most once per type; reused from line to line.
#[derive(Default)]
pub struct DecodedInputs<'p> {
    decoded: Vec<Option<(&'p SqlType, Value)>>,
}

impl<'p> DecodedInputs<'p> {
    /// Ready for a line of `n` inputs.
    pub fn reset(&mut self, n: usize) {
        self.decoded.clear();
        self.decoded.resize(n, None);
    }

    fn get(&mut self, inputs: &[&str], slot: u32, ty: &'p SqlType) -> Option<Value> {
        let slot = slot as usize;
        let raw = inputs.get(slot)?;
        match self.decoded.get(slot)? {
            Some((t, value)) if *t == ty => Some(value.clone()),
            _ => {
                let value = codec::decode_text(raw, ty)?;
                self.decoded[slot] = Some((ty, value.clone()));
                Some(value)
            }
        }
    }
}

impl StoredView {
    /// The inputs of this group's part of a line (`slots` into `inputs`), read with the
    /// aggregates' argument types and appended to `out` (the batch's inputs, one
    /// allocation for every event rather than one per event); their range in `out`, or
    /// `None` (and `out` as it was) when they are not this group's (another definition
    /// wrote them).
    pub fn adds<'p>(
        &'p self,
        slots: &str,
        inputs: &[&str],
        decoded: &mut DecodedInputs<'p>,
        out: &mut Vec<Option<Value>>,
    ) -> Option<Range<u32>> {
        let start = out.len();
        let mut kinds = self.aggregates.iter();
        let mut read = || {
            for slot in self::slots(slots) {
                let kind = kinds.next()?;
                out.push(match (slot.ok()?, kind.arg_type()) {
                    (None, _) => None,
                    (Some(slot), Some(ty)) => Some(decoded.get(inputs, slot, ty)?),
                    // COUNT(*): any non-NULL value counts the row.
                    (Some(_), None) => Some(Value::Boolean(true)),
                });
            }
            kinds.next().is_none().then_some(())
        };
        let read = read();
        let range = u32::try_from(start)
            .ok()
            .zip(u32::try_from(out.len()).ok())
            .map(|(s, e)| s..e);
        match (read, range) {
            (Some(()), Some(range)) => Some(range),
            _ => {
                out.truncate(start);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Decimal;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).expect("JSON")
    }

    #[test]
    fn a_view_line_is_written_as_serde_writes_the_struct_each_input_once() {
        let source = SourceLine {
            id: Some(raw(r#"["p-\"1"]"#)),
            origin: Cow::Borrowed("s:1:0"),
            r: raw("[1]"),
        };
        let first = vec![
            Some(Value::Boolean(true)),
            Some(Value::Double(1.5)),
            None,
            Some(Value::String("é\n".into())),
            Some(Value::Double(1.5)),
        ];
        let second = vec![
            Some(Value::Boolean(true)),
            Some(Value::Double(f64::NAN)),
            Some(Value::Decimal(Decimal::parse("1.50").expect("decimal"))),
            Some(Value::Null),
            // Equal as doubles, not as texts: two inputs.
            Some(Value::Double(-0.0)),
            Some(Value::Double(0.0)),
        ];
        let parts = [
            ViewPart {
                group: "v1",
                adds: &first,
            },
            ViewPart {
                group: "v2",
                adds: &second,
            },
        ];
        let mut written = Vec::new();
        let mut scratch = LineScratch::default();
        write_view_line(
            &mut written,
            r#"["DE"]"#,
            1234,
            &source,
            &parts,
            &mut scratch,
        )
        .expect("writes");
        let text = String::from_utf8(written).expect("UTF-8");
        let read: ViewLine<'_> = serde_json::from_str(&text).expect("reads");
        assert_eq!(serde_json::to_string(&read).expect("serde writes"), text);
        let inputs: Vec<&str> = read.a.iter().map(|r| r.get()).collect();
        assert_eq!(
            inputs,
            [
                "true",
                "1.5",
                "\"é\\n\"",
                "\"NaN\"",
                "\"1.50\"",
                "null",
                "-0.0",
                "0.0"
            ]
        );
        let parts: Vec<(&str, Vec<Option<u32>>)> = read
            .v
            .iter()
            .map(|(id, raw)| {
                (
                    *id,
                    slots(raw.get()).collect::<Result<_, _>>().expect("slots"),
                )
            })
            .collect();
        assert_eq!(
            parts,
            [
                ("v1", vec![Some(0), Some(1), None, Some(2), Some(1)]),
                (
                    "v2",
                    vec![Some(0), Some(3), Some(4), Some(5), Some(6), Some(7)]
                ),
            ]
        );
        assert_eq!(read.k.get(), r#"["DE"]"#);
        assert_eq!(
            id_text(read.id.map(RawValue::get), &read.origin),
            r#"["p-\"1"]"#
        );
    }

    #[test]
    fn slots_read_as_serde_reads_them_and_anything_else_is_refused() {
        for text in ["[]", "[0]", "[0,1,null,7]", "[ 3 , null ]"] {
            let by_serde: Vec<Option<u32>> = serde_json::from_str(text).expect("slots");
            let read: Result<Vec<_>, _> = slots(raw(text).get()).collect();
            assert_eq!(read, Ok(by_serde), "{text}");
        }
        for text in ["[-1]", "[1.5]", "[\"0\"]", "{}", "[[0]]", "3"] {
            let read: Result<Vec<_>, _> = slots(raw(text).get()).collect();
            assert!(read.is_err(), "{text}");
        }
    }

    #[test]
    fn an_id_reads_back_as_the_text_it_was() {
        let mut out = Vec::new();
        write_source_line(&mut out, None, "shard:1:\"0\"", |o| {
            o.extend_from_slice(b"{}");
            Ok(())
        })
        .expect("writes");
        let line: SourceLine<'_> = serde_json::from_slice(&out).expect("reads");
        assert!(
            line.id.is_none(),
            "without a PRIMARY KEY, no id: the origin is it"
        );
        assert_eq!(
            id_text(line.id.map(RawValue::get), &line.origin),
            "shard:1:\"0\""
        );
        assert_eq!(line.origin, "shard:1:\"0\"");
        let mut out = Vec::new();
        write_source_line(&mut out, Some(r#"["a",1]"#), "o", |o| {
            o.extend_from_slice(b"[1]");
            Ok(())
        })
        .expect("writes");
        let line: SourceLine<'_> = serde_json::from_slice(&out).expect("reads");
        assert_eq!(
            id_text(line.id.map(RawValue::get), &line.origin),
            r#"["a",1]"#
        );
        assert_eq!(line.r.get(), "[1]");
        assert_eq!(
            serde_json::to_string(&line).expect("serde writes"),
            String::from_utf8(out).expect("UTF-8")
        );
    }
}
