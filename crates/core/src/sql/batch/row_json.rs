//! Values as JSON, in the canonical form the Flink oracle prints (`infra/flink/oracle.py`)
//! and `sluice sql eval` writes: timestamps `2026-01-01T00:01:00.000Z`, integers as
//! integers, DECIMAL as a number with its scale (`1.675000`), non-finite doubles as the
//! strings `"NaN"`, `"Infinity"`, `"-Infinity"`, ROW as an object by field name.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat};

use crate::sql::types::SqlType;
use crate::sql::value::Value;

/// Appends `value`, of type `ty`, to `out` as JSON.
pub fn value_json(out: &mut String, value: &Value, ty: &SqlType) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::BigInt(i) => {
            let _ = write!(out, "{i}");
        }
        // The shortest text that reads back as the same FLOAT (`-9.555555`), as Flink
        // prints it; widened to a double first it would print `-9.55555534362793`.
        Value::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        Value::Float(f) => double(out, f64::from(*f)),
        Value::Double(d) => double(out, *d),
        Value::Decimal(d) => {
            let _ = write!(out, "{d}");
        }
        Value::String(s) => string(out, s),
        Value::Timestamp(ms) | Value::TimestampLtz(ms) => {
            out.push('"');
            match DateTime::from_timestamp_millis(*ms) {
                Some(t) => out.push_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
                None => {
                    let _ = write!(out, "{ms}");
                }
            }
            out.push('"');
        }
        Value::Row(values) => {
            out.push('{');
            let fields: &[crate::sql::types::Field] = match ty {
                SqlType::Row(fields) => fields,
                _ => &[],
            };
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let (name, field_ty) = fields
                    .get(i)
                    .map_or((format!("f{i}"), SqlType::String), |f| {
                        (f.name.clone(), f.ty.clone())
                    });
                string(out, &name);
                out.push(':');
                value_json(out, v, &field_ty);
            }
            out.push('}');
        }
    }
}

/// `value` as [`value_json`] writes it, read back as JSON (`None` if that does not
/// read).
pub fn json_value(value: &Value, ty: &SqlType) -> Option<serde_json::Value> {
    let mut text = String::new();
    value_json(&mut text, value, ty);
    serde_json::from_str(&text).ok()
}

/// The number `value` is as JSON ([`json_value`]`.as_f64()`), the common types read
/// directly.
pub fn json_number(value: &Value, ty: &SqlType) -> Option<f64> {
    match value {
        Value::Null | Value::Boolean(_) | Value::String(_) => None,
        Value::Int(i) => Some(f64::from(*i)),
        Value::BigInt(i) => Some(*i as f64),
        Value::Double(d) if d.is_finite() => Some(*d),
        _ => json_value(value, ty)?.as_f64(),
    }
}

/// Whether `value` as JSON ([`json_value`]) is the scalar `want`, numbers by value
/// (`1` equals `1.0`), strings by text.
pub fn json_equals(value: &Value, ty: &SqlType, want: &serde_json::Value) -> bool {
    match (value, want.as_f64()) {
        (Value::String(s), _) => want.as_str() == Some(&**s),
        (_, Some(y)) => json_number(value, ty) == Some(y),
        _ => json_value(value, ty).is_some_and(|got| got.as_f64().is_none() && got == *want),
    }
}

fn double(out: &mut String, d: f64) {
    if d.is_nan() {
        out.push_str("\"NaN\"");
    } else if d.is_infinite() {
        out.push_str(if d > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        // serde_json writes the shortest text that reads back as the same double.
        out.push_str(&serde_json::Value::from(d).to_string());
    }
}

fn string(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::from(s).to_string());
}
