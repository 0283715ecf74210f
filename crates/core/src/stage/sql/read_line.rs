//! The aggregate stage's reading of a [`ViewLine`]: the layout enrich writes is scanned
//! directly (every value checked against JSON's grammar), anything else goes through
//! serde. Both give the same [`ReadLine`] (a property test compares them), so the scan
//! is only a faster way to the same answer.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::ViewLine;

/// A view line as read: JSON texts borrowed from the record.
#[derive(Debug, PartialEq)]
pub struct ReadLine<'a> {
    /// The group's key text.
    pub k: &'a str,
    pub t: i64,
    pub id: Option<&'a str>,
    pub origin: Cow<'a, str>,
    pub a: Vec<&'a str>,
    /// Per group of items: its id and its slots' text.
    pub v: Vec<(&'a str, &'a str)>,
}

impl<'a> ReadLine<'a> {
    /// The line `text` as a view line; `None` when it is none.
    pub fn read(text: &'a str) -> Option<ReadLine<'a>> {
        scan(text.as_bytes(), text).or_else(|| by_serde(text))
    }
}

fn by_serde(text: &str) -> Option<ReadLine<'_>> {
    let line: ViewLine<'_> = serde_json::from_str(text).ok()?;
    Some(ReadLine {
        k: line.k.get(),
        t: line.t,
        id: line.id.map(RawValue::get),
        origin: line.origin,
        a: line.a.iter().map(|r| r.get()).collect(),
        v: line.v.iter().map(|(g, s)| (*g, s.get())).collect(),
    })
}

/// Nested arrays deeper than this are left to serde (which has its own limit).
const MAX_DEPTH: usize = 32;

/// The layout `write_view_line` writes, without whitespace; `None` for anything else.
fn scan<'a>(b: &[u8], text: &'a str) -> Option<ReadLine<'a>> {
    let mut i = expect(b, 0, b"{\"k\":")?;
    let k_start = i;
    i = array_end(b, i)?;
    let k = &text[k_start..i];
    i = expect(b, i, b",\"t\":")?;
    let t_start = i;
    i = number_end(b, i)?;
    let t: i64 = text[t_start..i].parse().ok()?;
    let mut id = None;
    if let Some(at) = expect(b, i, b",\"id\":") {
        i = array_end(b, at)?;
        id = Some(&text[at..i]);
    }
    i = expect(b, i, b",\"origin\":")?;
    let origin_start = i + 1;
    i = string_end(b, i)?;
    // Escapes are unescaped by serde.
    let origin = &text[origin_start..i - 1];
    if origin.contains('\\') {
        return None;
    }
    i = expect(b, i, b",\"a\":")?;
    let mut a = Vec::new();
    i = items(b, i, |j| {
        let end = value_end(b, j, 0)?;
        a.push(&text[j..end]);
        Some(end)
    })?;
    i = expect(b, i, b",\"v\":")?;
    let mut v = Vec::new();
    i = items(b, i, |j| {
        let j = expect(b, j, b"[")?;
        let end = string_end(b, j)?;
        let group = &text[j + 1..end - 1];
        let slots_start = expect(b, end, b",")?;
        let slots_end = array_end(b, slots_start)?;
        // Escapes are unescaped by serde.
        (!group.contains('\\')).then_some(())?;
        v.push((group, &text[slots_start..slots_end]));
        expect(b, slots_end, b"]")
    })?;
    if v.is_empty() {
        return None;
    }
    i = expect(b, i, b"}")?;
    (i == b.len()).then_some(ReadLine {
        k,
        t,
        id,
        origin: Cow::Borrowed(origin),
        a,
        v,
    })
}

/// The end of the array at `i` whose items `item` reads (from an item's start to its
/// end).
fn items(b: &[u8], i: usize, mut item: impl FnMut(usize) -> Option<usize>) -> Option<usize> {
    let mut j = expect(b, i, b"[")?;
    if b.get(j) == Some(&b']') {
        return Some(j + 1);
    }
    loop {
        j = item(j)?;
        match b.get(j)? {
            b',' => j += 1,
            b']' => return Some(j + 1),
            _ => return None,
        }
    }
}

fn expect(b: &[u8], i: usize, what: &[u8]) -> Option<usize> {
    b.get(i..)?.starts_with(what).then_some(i + what.len())
}

fn array_end(b: &[u8], i: usize) -> Option<usize> {
    (b.get(i) == Some(&b'[')).then_some(())?;
    value_end(b, i, 0)
}

/// The end of the JSON value at `i`: a string, number, literal or array (objects and
/// whitespace are left to serde).
fn value_end(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'n' => expect(b, i, b"null"),
        b't' => expect(b, i, b"true"),
        b'f' => expect(b, i, b"false"),
        b'-' | b'0'..=b'9' => number_end(b, i),
        b'[' if depth < MAX_DEPTH => {
            let mut j = i + 1;
            if b.get(j) == Some(&b']') {
                return Some(j + 1);
            }
            loop {
                j = value_end(b, j, depth + 1)?;
                match b.get(j)? {
                    b',' => j += 1,
                    b']' => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        _ => None,
    }
}

/// The end (past the closing quote) of the JSON string at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    (b.get(i) == Some(&b'"')).then_some(())?;
    let mut j = i + 1;
    loop {
        // To the next quote or backslash at once; what lies between has no control
        // characters.
        let at = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j..at].iter().any(|&c| c < 0x20) {
            return None;
        }
        if b[at] == b'"' {
            return Some(at + 1);
        }
        j = at + 1;
        match *b.get(j)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 1,
            b'u' => {
                let hex = b.get(j + 1..j + 5)?;
                hex.iter().all(u8::is_ascii_hexdigit).then_some(())?;
                j += 5;
            }
            _ => return None,
        }
    }
}

/// The end of the JSON number at `i`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn number_end(b: &[u8], i: usize) -> Option<usize> {
    let digits = |mut j: usize| {
        let start = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        (j > start).then_some(j)
    };
    let mut j = i;
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    j = match b.get(j)? {
        b'0' => j + 1,
        b'1'..=b'9' => digits(j)?,
        _ => return None,
    };
    if b.get(j) == Some(&b'.') {
        j = digits(j + 1)?;
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        j = digits(j)?;
    }
    Some(j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Decimal, Value};
    use crate::stage::sql::line::{LineScratch, SourceLine, ViewPart, write_view_line};
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Option<Value>> {
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            any::<i64>().prop_map(Value::BigInt),
            any::<f64>().prop_map(Value::Double),
            "\\PC{0,8}".prop_map(|s| Value::String(s.as_str().into())),
            "[\"\\\\\n\u{1}é]{0,4}".prop_map(|s| Value::String(s.as_str().into())),
            (-99_999i64..99_999).prop_map(|n| Value::Decimal(
                Decimal::parse(&format!("{}.{:02}", n / 100, (n % 100).abs())).expect("decimal")
            )),
        ];
        let row = proptest::collection::vec(scalar.clone(), 0..3)
            .prop_map(|v| Value::Row(std::sync::Arc::from(v)));
        proptest::option::weighted(0.9, prop_oneof![scalar, row])
    }

    /// A line as `write_view_line` writes it, from random parts.
    fn line() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(value(), 1..4),
            proptest::collection::vec(proptest::collection::vec(value(), 0..4), 1..3),
            any::<i64>(),
            any::<bool>(),
            "[a-z:\"\\\\0-9]{1,12}",
        )
            .prop_map(|(keys, parts, ts, keyed, origin)| {
                let keys: Vec<Value> = keys.into_iter().map(|k| k.unwrap_or(Value::Null)).collect();
                let key_text = crate::sql::codec::key_text(&keys);
                let id: Option<Box<RawValue>> =
                    keyed.then(|| RawValue::from_string(key_text.clone()).expect("JSON"));
                let r = RawValue::from_string("[]".into()).expect("JSON");
                let source = SourceLine {
                    id: id.as_deref(),
                    origin: Cow::Owned(origin),
                    r: &r,
                };
                let ids: Vec<String> = (0..parts.len()).map(|i| format!("g{i}")).collect();
                let parts: Vec<ViewPart<'_>> = parts
                    .iter()
                    .zip(&ids)
                    .map(|(adds, id)| ViewPart { group: id, adds })
                    .collect();
                let mut out = Vec::new();
                write_view_line(
                    &mut out,
                    &key_text,
                    ts,
                    &source,
                    &parts,
                    &mut LineScratch::default(),
                )
                .expect("writes");
                String::from_utf8(out).expect("UTF-8")
            })
    }

    proptest! {
        #[test]
        fn the_scan_reads_what_enrich_writes_as_serde_does(text in line()) {
            let serde = by_serde(&text).expect("serde reads it");
            // An origin that needs escapes is left to serde.
            let escaped = serde.origin.contains(['\\', '"']);
            let scanned = scan(text.as_bytes(), &text);
            prop_assert_eq!(scanned.is_none(), escaped);
            if let Some(scanned) = scanned {
                prop_assert_eq!(scanned, serde);
            }
        }

        #[test]
        fn whatever_the_scan_takes_serde_takes_alike(
            text in line(),
            at in any::<prop::sample::Index>(),
            cut in any::<bool>(),
            byte in prop_oneof![Just(b'"'), Just(b'\\'), Just(b','), Just(b']'), Just(b'['),
                                 Just(b' '), Just(b'0'), Just(b'-'), Just(b'e'), Just(b'.'), Just(b'x')],
        ) {
            let mut bytes = text.into_bytes();
            let at = at.index(bytes.len());
            match cut {
                true => bytes.truncate(at),
                false => bytes[at] = byte,
            }
            if let Ok(text) = String::from_utf8(bytes) {
                if let Some(scanned) = scan(text.as_bytes(), &text) {
                    prop_assert_eq!(Some(scanned), by_serde(&text));
                }
            }
        }
    }

    #[test]
    fn deep_and_unusual_lines_are_left_to_serde() {
        let deep = format!(
            r#"{{"k":{}1{},"t":1,"origin":"o","a":[],"v":[["g",[]]]}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert!(scan(deep.as_bytes(), &deep).is_none());
        let spaced = r#"{"k":["a"], "t":1,"origin":"o","a":[],"v":[["g",[]]]}"#;
        assert!(scan(spaced.as_bytes(), spaced).is_none());
        let read = ReadLine::read(spaced).expect("serde reads it");
        assert_eq!((read.k, read.t, read.v), (r#"["a"]"#, 1, vec![("g", "[]")]));
        for junk in [
            r#"{"k":["a"],"t":01,"origin":"o","a":[],"v":[["g",[]]]}"#,
            "{}",
            "",
        ] {
            assert!(ReadLine::read(junk).is_none(), "{junk}");
        }
    }
}
