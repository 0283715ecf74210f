//! The non-finite literals (`NaN`, `Infinity`, `-Infinity`, numbers that overflow
//! `f64`) a producer may write, which are not JSON: rewritten to `null` before the
//! general parse, and remembered by field so the rejection can name them.

use std::collections::BTreeMap;

/// Where [`repair_non_finite_literals`] found non-finite number literals (`NaN`,
/// `Infinity`, `1e999`...), each with its text as written. Kept beside the parsed
/// value, never inside it: the literals become `null` in the text that is parsed, so
/// no string a producer sends can be mistaken for one.
#[derive(Debug, Default)]
pub(super) struct NonFinite {
    /// The literal, when the whole line is one.
    pub(super) root: Option<String>,
    /// Top-level fields whose value (the last one, as the parsed map keeps) is a
    /// non-finite literal.
    fields: BTreeMap<String, String>,
    /// The same for the members of the top-level `attrs` object.
    attrs: BTreeMap<String, String>,
}

impl NonFinite {
    /// The literal a top-level field held, if its `null` stands for one.
    pub(super) fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The literal an `attrs` member held, if its `null` stands for one.
    pub(super) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }
}

/// Rewrites `NaN`, `Infinity`, `-Infinity` and numeric literals that overflow `f64`
/// (outside strings) into `null`, and says where they were; `None` if there were none.
/// The text is not validated here: what follows parses the result and rejects it if it
/// is not JSON, so the bookkeeping only has to be right for text that is.
pub(super) fn repair_non_finite_literals(text: &str) -> Option<(String, NonFinite)> {
    let bytes = text.as_bytes();
    // Allocates only once a literal is found: most lines that reach here are garbage.
    let mut out = String::new();
    let mut found = NonFinite::default();
    let mut changed = false;
    let mut i = 0;
    let mut last = 0;
    // The containers open at `i` (`{` or `[`), outermost first.
    let mut open: Vec<u8> = Vec::new();
    // The last key read in the top-level object, and in its `attrs` object.
    let mut field: Option<String> = None;
    let mut attr: Option<String> = None;
    // Whether `open[1]` is the object that is the value of the top-level `attrs`.
    let mut in_attrs = false;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => {
                if open == [b'{'] && bytes[i] == b'{' && field.as_deref() == Some("attrs") {
                    in_attrs = true;
                }
                open.push(bytes[i]);
                i += 1;
            }
            b'}' | b']' => {
                open.pop();
                if open.len() < 2 {
                    in_attrs = false;
                }
                i += 1;
            }
            b'"' => {
                // Skip the string, honouring escapes.
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                let mut next = i;
                while next < bytes.len() && bytes[next].is_ascii_whitespace() {
                    next += 1;
                }
                if bytes.get(next) != Some(&b':') {
                    continue;
                }
                // A key: a new occurrence replaces an earlier one, as in the parsed map.
                let depth_one = open == [b'{'];
                if !(depth_one || in_attrs && open.len() == 2) {
                    continue;
                }
                let Ok(key) = serde_json::from_str::<String>(&text[start..i]) else {
                    continue;
                };
                if depth_one {
                    found.fields.remove(&key);
                    if key == "attrs" {
                        found.attrs.clear();
                    }
                    field = Some(key);
                } else {
                    found.attrs.remove(&key);
                    attr = Some(key);
                }
            }
            b'N' | b'I' | b'-' | b'0'..=b'9' => {
                let start = i;
                let mut end = i;
                while end < bytes.len()
                    && matches!(bytes[end], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'+' | b'.')
                {
                    end += 1;
                }
                let token = &text[start..end];
                let non_finite = matches!(token, "NaN" | "-NaN" | "Infinity" | "-Infinity")
                    || (token.starts_with(|c: char| c == '-' || c.is_ascii_digit())
                        && token.parse::<f64>().is_ok_and(|f| f.is_infinite()));
                if non_finite {
                    if !changed {
                        out.reserve(text.len());
                    }
                    out.push_str(&text[last..start]);
                    out.push_str("null");
                    last = end;
                    changed = true;
                    let literal = token.to_owned();
                    if open.is_empty() {
                        found.root = Some(literal);
                    } else if open == [b'{'] {
                        if let Some(f) = &field {
                            found.fields.insert(f.clone(), literal);
                        }
                    } else if in_attrs && open.len() == 2 {
                        if let Some(a) = &attr {
                            found.attrs.insert(a.clone(), literal);
                        }
                    }
                }
                i = end.max(start + 1);
            }
            _ => i += 1,
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&text[last.min(text.len())..]);
    Some((out, found))
}

#[cfg(test)]
mod tests {
    use crate::input::envelope::test_support::*;
    use crate::input::envelope::*;

    #[test]
    fn nan_inside_strings_is_left_alone() {
        let e = one(r#"{"key":"NaN","type":"t","ts":1,"value":2,"attrs":{"x":"Infinity"}}"#)
            .expect("valid");
        assert_eq!(e.key, "NaN");
        assert_eq!(e.attrs["x"], "Infinity");
    }

    /// The string the decoder once used to mark a non-finite literal inside the JSON
    /// text, sent by a producer: an ordinary string wherever it appears.
    const OLD_SENTINEL: &str = r#""\u0000sluice:non-finite""#;

    #[test]
    fn the_old_non_finite_marker_string_is_an_ordinary_string() {
        let marker = "\u{0}sluice:non-finite";
        let line = |id: &str, key: &str, ts: &str, value: &str, tail: &str| {
            format!(
                r#"{{"id":{id},"key":{key},"type":"t","ts":{ts},"value":{value},"attrs":{{"a":{OLD_SENTINEL}}},"origin":{OLD_SENTINEL}{tail}}}"#
            )
        };
        // As id, key, attribute and origin: kept as sent, also in a line with a real
        // non-finite literal elsewhere (which takes the repairing path).
        for tail in ["", r#","junk":NaN"#] {
            let e = one(&line(OLD_SENTINEL, OLD_SENTINEL, "1", "2", tail)).expect("valid");
            assert_eq!(e.id.as_deref(), Some(marker), "{tail}");
            assert_eq!(e.key, marker, "{tail}");
            assert_eq!(e.attrs["a"], marker, "{tail}");
            assert_eq!(e.origin.as_deref(), Some(marker), "{tail}");
        }
        // As value: a string where a number belongs.
        let r = one(&line("1", r#""k""#, "1", OLD_SENTINEL, "")).expect_err("a string value");
        assert_eq!(
            (r.reason, r.field, r.detail.as_str()),
            (
                Reason::WrongType,
                Some("value"),
                "value must be a number, found a string"
            )
        );
        // As ts: a string that is not RFC 3339.
        let r = one(&line("1", r#""k""#, OLD_SENTINEL, "NaN", "")).expect_err("a bad ts");
        assert_eq!((r.reason, r.field), (Reason::InvalidValue, Some("ts")));
        assert!(r.detail.contains("sluice:non-finite"), "{}", r.detail);
        // As type: not a metric name. As attrs: a string, not an object.
        assert_eq!(
            reason(&format!(
                r#"{{"key":"k","type":{OLD_SENTINEL},"ts":1,"value":1}}"#
            )),
            (Reason::InvalidValue, Some("type"))
        );
        let r = one(&format!(
            r#"{{"key":"k","type":"t","ts":1,"value":1,"attrs":{OLD_SENTINEL}}}"#
        ))
        .expect_err("attrs");
        assert_eq!(r.detail, "attrs must be an object, found a string");
        // As the whole line.
        let r = one(OLD_SENTINEL).expect_err("not an object");
        assert_eq!(r.detail, "expected a JSON object, found a string");
    }

    #[test]
    fn non_finite_literals_are_named_by_the_field_that_held_them() {
        let r = one(r#"{"key":NaN,"type":"t","ts":1,"value":1}"#).expect_err("key");
        assert_eq!(
            (r.reason, r.field, r.detail.as_str()),
            (
                Reason::WrongType,
                Some("key"),
                "key must be a string, found the non-finite number NaN"
            )
        );
        let r = one(r#"{"key":"k","type":"t","ts":-Infinity,"value":1}"#).expect_err("ts");
        assert_eq!(
            (r.reason, r.field, r.detail.as_str()),
            (
                Reason::TsOutOfRange,
                Some("ts"),
                "ts -Infinity is not a finite number"
            )
        );
        let r = one(r#"{"key":"k","type":"t","ts":1,"value":1e999}"#).expect_err("value");
        assert_eq!(
            (r.reason, r.field, r.detail.as_str()),
            (
                Reason::NonFiniteValue,
                Some("value"),
                "value 1e999 is not finite"
            )
        );
        // The field is named even when its name is escaped.
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"v\u0061lue":NaN}"#),
            (Reason::NonFiniteValue, Some("value"))
        );
        let r = one(r#"{"key":"k","type":"t","ts":1,"value":1,"attrs":{"a":"x","n":NaN}}"#)
            .expect_err("attrs");
        assert_eq!(
            r.detail,
            "attrs.n must be a string, number or boolean, found the non-finite number NaN"
        );
        let r =
            one(r#"{"key":"k","type":"t","ts":1,"value":1,"attrs":Infinity}"#).expect_err("attrs");
        assert_eq!(
            r.detail,
            "attrs must be an object, found the non-finite number Infinity"
        );
        let r = one("NaN").expect_err("not an object");
        assert_eq!(
            r.detail,
            "expected a JSON object, found the non-finite number NaN"
        );
        // A literal null is still missing, also in a line that needed repair.
        assert_eq!(
            reason(r#"{"key":null,"type":"t","ts":1,"value":NaN}"#),
            (Reason::MissingField, Some("key"))
        );
        // Fields nobody reads may hold them; a non-string origin is no origin.
        let e = one(
            r#"{"key":"k","type":"t","ts":1,"value":1,"origin":NaN,"x":{"y":[Infinity]},"z":NaN}"#,
        )
        .expect("valid");
        assert_eq!(e.origin, None);
        // Duplicate fields: the last one counts, as for any other value.
        assert_eq!(
            one(r#"{"key":"k","type":"t","ts":1,"value":NaN,"value":2}"#)
                .expect("valid")
                .value,
            2.0
        );
        assert_eq!(
            reason(r#"{"key":"k","type":"t","ts":1,"value":2,"value":NaN}"#),
            (Reason::NonFiniteValue, Some("value"))
        );
        let r =
            one(r#"{"key":"k","type":"t","ts":1,"value":1,"attrs":{"a":NaN},"attrs":{"a":null}}"#)
                .expect_err("attrs");
        assert_eq!(
            r.detail,
            "attrs.a must be a string, number or boolean, found null"
        );
        // Numbers in attrs keep their text in a repaired line too.
        let e = one(r#"{"key":"k","type":"t","ts":1,"value":1,"attrs":{"f":1.10},"z":NaN}"#)
            .expect("valid");
        assert_eq!(e.attrs["f"], "1.10");
    }
}
