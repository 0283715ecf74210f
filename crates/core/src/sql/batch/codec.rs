//! Values as compact JSON between the stages, read back with their (known) types: group
//! keys, aggregate inputs and reference rows travel as these texts, and a group key's
//! text is its identity in the aggregates table.
//!
//! Encoding: NULL `null`, BOOLEAN `true`/`false`, INT/BIGINT integers, FLOAT/DOUBLE
//! numbers (non-finite ones as `"NaN"`, `"Infinity"`, `"-Infinity"`; a FLOAT as the
//! double it widens to, exact), DECIMAL its text as a string (exact), STRING a string,
//! TIMESTAMP/TIMESTAMP_LTZ epoch milliseconds, ROW an array of its fields.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::sql::types::SqlType;
use crate::sql::value::{Decimal, Value};

pub fn encode(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(x) => Json::from(*x),
        Value::BigInt(x) => Json::from(*x),
        Value::Float(x) => double(f64::from(*x)),
        Value::Double(x) => double(*x),
        Value::Decimal(d) => Json::String(d.to_string()),
        Value::String(s) => Json::String(s.to_string()),
        Value::Timestamp(ms) | Value::TimestampLtz(ms) => Json::from(*ms),
        Value::Row(fields) => Json::Array(fields.iter().map(encode).collect()),
    }
}

fn double(x: f64) -> Json {
    match serde_json::Number::from_f64(x) {
        Some(n) => Json::Number(n),
        None if x.is_nan() => Json::String("NaN".into()),
        None if x > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

/// The value `json` encodes for type `ty`; `None` when it is not such an encoding
/// (someone else wrote the line, or the pipeline changed under it).
pub fn decode(json: &Json, ty: &SqlType) -> Option<Value> {
    if json.is_null() {
        return Some(Value::Null);
    }
    Some(match ty {
        SqlType::Boolean => Value::Boolean(json.as_bool()?),
        SqlType::Int => Value::Int(i32::try_from(json.as_i64()?).ok()?),
        SqlType::BigInt => Value::BigInt(json.as_i64()?),
        SqlType::Float => Value::Float(read_double(json)? as f32),
        SqlType::Double => Value::Double(read_double(json)?),
        SqlType::Decimal { .. } => Value::Decimal(Decimal::parse(json.as_str()?)?),
        SqlType::String => Value::String(Arc::from(json.as_str()?)),
        SqlType::Timestamp { .. } => Value::Timestamp(json.as_i64()?),
        SqlType::TimestampLtz { .. } => Value::TimestampLtz(json.as_i64()?),
        SqlType::Row(fields) => {
            let items = json.as_array()?;
            if items.len() != fields.len() {
                return None;
            }
            Value::Row(
                items
                    .iter()
                    .zip(fields)
                    .map(|(j, f)| decode(j, &f.ty))
                    .collect::<Option<Arc<[Value]>>>()?,
            )
        }
    })
}

/// [`decode`] of one encoding's JSON text, without building a JSON value for the
/// scalars the stages pass most (numbers, booleans, strings without escapes): the
/// same value `decode(&serde_json::from_str(text)?, ty)` gives. `text` is one JSON
/// value, as a `RawValue` holds it.
pub fn decode_text(text: &str, ty: &SqlType) -> Option<Value> {
    if text == "null" {
        return Some(Value::Null);
    }
    let plain_string = || {
        let inner = text.strip_prefix('"')?.strip_suffix('"')?;
        (!inner.bytes().any(|b| b == b'\\' || b == b'"' || b < 0x20)).then_some(inner)
    };
    let number = || text.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    let fast = match ty {
        SqlType::Boolean => match text {
            "true" => Some(Value::Boolean(true)),
            "false" => Some(Value::Boolean(false)),
            _ => None,
        },
        SqlType::BigInt if number() => text.parse().ok().map(Value::BigInt),
        SqlType::Int if number() => text.parse().ok().map(Value::Int),
        SqlType::Timestamp { .. } if number() => text.parse().ok().map(Value::Timestamp),
        SqlType::TimestampLtz { .. } if number() => text.parse().ok().map(Value::TimestampLtz),
        // A JSON number's text is one Rust reads alike (correctly rounded, as
        // serde_json with `float_roundtrip`).
        SqlType::Double if number() && text.bytes().all(|b| b"0123456789.eE+-".contains(&b)) => {
            text.parse().ok().map(Value::Double)
        }
        SqlType::String => plain_string().map(|s| Value::String(Arc::from(s))),
        _ => None,
    };
    match fast {
        Some(value) => Some(value),
        None => decode(&serde_json::from_str(text).ok()?, ty),
    }
}

fn read_double(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Values as one JSON array text: the identity of a group (its keys) or of an event (its
/// `PRIMARY KEY`). Equal values of one column give equal texts.
pub fn key_text(values: &[Value]) -> String {
    let mut out = Vec::with_capacity(16 * values.len() + 2);
    out.push(b'[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(&mut out, v);
    }
    out.push(b']');
    // Only JSON (UTF-8) was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes [`encode`]'s JSON of a value, without building it: the same bytes
/// `encode(value).to_string()` gives.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    // Writing JSON to a `Vec` cannot fail.
    let _ = match value {
        Value::Null => serde_json::to_writer(&mut *out, &()),
        Value::Boolean(b) => serde_json::to_writer(&mut *out, b),
        Value::Int(x) => serde_json::to_writer(&mut *out, x),
        Value::BigInt(x) => serde_json::to_writer(&mut *out, x),
        Value::String(s) => serde_json::to_writer(&mut *out, &**s),
        Value::Timestamp(ms) | Value::TimestampLtz(ms) => serde_json::to_writer(&mut *out, ms),
        // A finite double as the number `encode` makes of it.
        Value::Double(x) if x.is_finite() => serde_json::to_writer(&mut *out, x),
        Value::Float(x) if x.is_finite() => serde_json::to_writer(&mut *out, &f64::from(*x)),
        other => serde_json::to_writer(&mut *out, &encode(other)),
    };
}

/// Reads [`key_text`] back with the keys' types.
pub fn decode_key(text: &str, types: &[&SqlType]) -> Option<Vec<Value>> {
    let json: Json = serde_json::from_str(text).ok()?;
    let items = json.as_array()?;
    if items.len() != types.len() {
        return None;
    }
    items.iter().zip(types).map(|(j, t)| decode(j, t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::types::Field;

    #[test]
    fn every_type_reads_back_as_written() {
        let row_type = SqlType::Row(vec![
            Field {
                name: "a".into(),
                ty: SqlType::Int,
            },
            Field {
                name: "b".into(),
                ty: SqlType::String,
            },
        ]);
        let cases = [
            (Value::Null, SqlType::Int),
            (Value::Boolean(true), SqlType::Boolean),
            (Value::Int(-7), SqlType::Int),
            (Value::BigInt(i64::MIN), SqlType::BigInt),
            (Value::Float(0.1), SqlType::Float),
            (Value::Double(f64::NAN), SqlType::Double),
            (Value::Double(f64::NEG_INFINITY), SqlType::Double),
            (Value::Double(-0.0), SqlType::Double),
            (
                Value::Decimal(Decimal::parse("-12.340").expect("a decimal")),
                SqlType::Decimal {
                    precision: 10,
                    scale: 3,
                },
            ),
            (Value::String(Arc::from("a\"#\n")), SqlType::String),
            (Value::Timestamp(-1), SqlType::Timestamp { precision: 3 }),
            (
                Value::TimestampLtz(5),
                SqlType::TimestampLtz { precision: 3 },
            ),
            (
                Value::Row(Arc::from(vec![Value::Int(1), Value::Null])),
                row_type,
            ),
        ];
        for (value, ty) in cases {
            let back = decode(&encode(&value), &ty).expect("reads back");
            // NaN != NaN: compare the encodings, then the bits of doubles.
            assert_eq!(encode(&back), encode(&value), "{value:?}");
            if let (Value::Double(a), Value::Double(b)) = (&back, &value) {
                assert_eq!(a.to_bits(), b.to_bits());
            }
        }
    }

    #[test]
    fn decoding_a_text_gives_what_decoding_its_json_gives() {
        let cases: &[(&str, SqlType)] = &[
            ("null", SqlType::Double),
            ("true", SqlType::Boolean),
            ("false", SqlType::Boolean),
            ("1", SqlType::Boolean),
            ("-12", SqlType::BigInt),
            ("9223372036854775807", SqlType::BigInt),
            ("9223372036854775808", SqlType::BigInt),
            ("1.5", SqlType::BigInt),
            ("1e3", SqlType::BigInt),
            ("2147483648", SqlType::Int),
            ("-7", SqlType::Int),
            ("0.1", SqlType::Double),
            ("-0.0", SqlType::Double),
            ("1e-7", SqlType::Double),
            ("17", SqlType::Double),
            ("\"NaN\"", SqlType::Double),
            ("\"-Infinity\"", SqlType::Double),
            ("\"x\"", SqlType::Double),
            ("0.1", SqlType::Float),
            ("\"plain é\"", SqlType::String),
            ("\"q\\\"\\n\\u0001\"", SqlType::String),
            ("3", SqlType::String),
            (
                "\"1.50\"",
                SqlType::Decimal {
                    precision: 5,
                    scale: 2,
                },
            ),
            ("-5", SqlType::Timestamp { precision: 3 }),
            ("5", SqlType::TimestampLtz { precision: 3 }),
            ("[1]", SqlType::BigInt),
            ("-inf", SqlType::Double),
        ];
        for (text, ty) in cases {
            let by_json = serde_json::from_str(text).ok().and_then(|j| decode(&j, ty));
            let by_text = decode_text(text, ty);
            // NaN != NaN: compare the encodings.
            assert_eq!(
                by_text.as_ref().map(encode),
                by_json.as_ref().map(encode),
                "{text} as {ty:?}"
            );
            if let (Some(Value::Double(a)), Some(Value::Double(b))) = (&by_text, &by_json) {
                assert_eq!(a.to_bits(), b.to_bits(), "{text}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn a_written_double_or_integer_reads_back_from_its_text(x: f64, n: i64) {
            let mut out = Vec::new();
            write_value(&mut out, &Value::Double(x));
            let text = String::from_utf8(out).expect("UTF-8");
            let back = decode_text(&text, &SqlType::Double);
            let by_json = decode(&serde_json::from_str(&text).expect("JSON"), &SqlType::Double);
            proptest::prop_assert_eq!(back.as_ref().map(encode), by_json.as_ref().map(encode));
            if let Some(Value::Double(y)) = back {
                proptest::prop_assert!(y.to_bits() == x.to_bits() || (x.is_nan() && y.is_nan()));
            }
            let text = n.to_string();
            proptest::prop_assert_eq!(decode_text(&text, &SqlType::BigInt), Some(Value::BigInt(n)));
        }
    }

    #[test]
    fn a_key_text_is_the_json_array_of_the_encodings() {
        let values = [
            Value::Null,
            Value::Boolean(false),
            Value::Int(-3),
            Value::BigInt(1 << 60),
            Value::Double(0.1),
            Value::Double(f64::INFINITY),
            Value::String(Arc::from("q\"\u{1}é")),
            Value::Timestamp(7),
            Value::Row(Arc::from(vec![Value::Int(1)])),
        ];
        let json = Json::Array(values.iter().map(encode).collect()).to_string();
        assert_eq!(key_text(&values), json);
    }

    #[test]
    fn a_key_text_names_its_values_and_reads_back() {
        let keys = [Value::String(Arc::from("m#1")), Value::Int(3), Value::Null];
        let text = key_text(&keys);
        assert_eq!(text, r#"["m#1",3,null]"#);
        let back = decode_key(&text, &[&SqlType::String, &SqlType::Int, &SqlType::Int])
            .expect("reads back");
        assert_eq!(back, keys);
        assert_eq!(decode_key(&text, &[&SqlType::String, &SqlType::Int]), None);
        assert_eq!(decode_key("[\"x\"]", &[&SqlType::Int]), None);
    }
}
