//! A SQL view's row as a window update carries it: the JSON array of the row's values,
//! kept as text. Detect reads one or two columns of a row per rule, so a line's row is
//! not parsed into values when the line is read (a third of a line's parse time went
//! there); [`RowText::element`] finds a column's value in the text when a rule asks.

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// A JSON array, checked to be one when built or read (a line whose `row` is anything
/// else does not read as a window update: a dead letter, as before rows were text).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RowText(#[serde(deserialize_with = "array")] Box<RawValue>);

fn array<'de, D: Deserializer<'de>>(d: D) -> Result<Box<RawValue>, D::Error> {
    let text = Box::<RawValue>::deserialize(d)?;
    match is_array(&text) {
        true => Ok(text),
        false => Err(serde::de::Error::custom(format!(
            "a row is a JSON array, not {}",
            text.get().chars().take(40).collect::<String>()
        ))),
    }
}

/// Whether the JSON text is an array (it is valid JSON: only its first byte tells).
fn is_array(text: &RawValue) -> bool {
    text.get().trim_start().starts_with('[')
}

impl PartialEq for RowText {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl RowText {
    /// The row `text` holds; an error when it is not a JSON array.
    pub fn new(text: String) -> serde_json::Result<RowText> {
        let text = RawValue::from_string(text)?;
        match is_array(&text) {
            true => Ok(RowText(text)),
            false => Err(serde::de::Error::custom("a row is a JSON array")),
        }
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Every value, parsed.
    pub fn values(&self) -> Option<Vec<serde_json::Value>> {
        serde_json::from_str(self.get()).ok()
    }

    /// The text of the `n`th value (from 0), without parsing the others into values;
    /// `None` past the end.
    pub fn element(&self, n: usize) -> Option<&RawValue> {
        let mut de = serde_json::Deserializer::from_str(self.get());
        de.deserialize_seq(Nth(n)).ok().flatten()
    }

    /// The `n`th value as a number: what `serde_json::Value::as_f64` gives for it.
    pub fn number(&self, n: usize) -> Option<f64> {
        let text = self.element(n)?.get();
        // Only a JSON number reads as one (a string, boolean or null does not).
        serde_json::from_str::<f64>(text).ok()
    }
}

/// Visits an array for its `n`th element, skipping the rest unparsed.
struct Nth(usize);

impl<'de> Visitor<'de> for Nth {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        for _ in 0..self.0 {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(None);
            }
        }
        let found = seq.next_element::<&RawValue>()?;
        // The array must be read to its end to be accepted.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn elements_are_the_values_parsing_gives() {
        let values = json!([
            "2026-01-01T00:00:00Z",
            null,
            7,
            -0.125,
            "a \"quoted\" , ] text",
            [1, [2]],
            {"x": [3]},
            true,
            18446744073709551615u64,
            1.0e300
        ]);
        let row = RowText::new(values.to_string()).expect("JSON");
        let parsed = row.values().expect("an array");
        assert_eq!(Value::Array(parsed.clone()), values);
        for (i, value) in parsed.iter().enumerate() {
            let text = row.element(i).expect("in the row").get();
            let back: Value = serde_json::from_str(text).expect("a value");
            assert_eq!(&back, value, "element {i}");
            assert_eq!(row.number(i), value.as_f64(), "element {i} as a number");
        }
        assert!(row.element(parsed.len()).is_none());
        assert_eq!(row.number(99), None);
    }

    #[test]
    fn what_is_not_an_array_is_not_a_row() {
        #[derive(Debug, Deserialize)]
        struct Line {
            #[allow(dead_code)]
            row: RowText,
        }
        for text in [r#"{"a":1}"#, "3", "null", r#""[1]""#, "[1,"] {
            assert!(RowText::new(text.to_owned()).is_err(), "{text}");
            let line = format!(r#"{{"row":{text}}}"#);
            assert!(serde_json::from_str::<Line>(&line).is_err(), "{line}");
        }
        let empty = RowText::new("[]".to_owned()).expect("an array");
        assert!(empty.element(0).is_none());
        assert_eq!(empty.values(), Some(Vec::new()));
    }

    #[test]
    fn an_update_line_reads_its_row_as_the_text_it_carries() {
        #[derive(Deserialize, Serialize)]
        struct Line {
            row: RowText,
        }
        let line = r#"{"row":[1, "b" ,null]}"#;
        let read: Line = serde_json::from_slice(line.as_bytes()).expect("reads");
        assert_eq!(read.row.get(), r#"[1, "b" ,null]"#);
        assert_eq!(read.row.number(0), Some(1.0));
        // Written back as it was read, spaces included.
        assert_eq!(serde_json::to_string(&read).expect("writes"), line);
    }
}
