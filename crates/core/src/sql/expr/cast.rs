//! CAST between the supported types, as Flink 2.3 casts (a failed CAST fails the job
//! in Flink: here it is an evaluation error), and values as text (`CAST(x AS STRING)`).

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use super::eval::fit_decimal;
use super::{Eval, fail};
use crate::sql::types::SqlType;
use crate::sql::value::{Decimal, Value};

/// Whether `CAST(from AS to)` is supported.
pub(super) fn supported(from: &SqlType, to: &SqlType) -> bool {
    use SqlType as T;
    let plain = |t: &SqlType| !matches!(t, T::Row(_));
    match (from, to) {
        _ if from == to => true,
        (T::Row(_), _) | (_, T::Row(_)) => false,
        (_, T::String) | (T::String, _) => plain(from) && plain(to),
        (a, b) if a.is_numeric() && b.is_numeric() => true,
        (T::Boolean, b) | (b, T::Boolean) => b.is_numeric(),
        (a, b) => a.is_timestamp() && b.is_timestamp(),
    }
}

/// `CAST(v AS to)` of a value of type `from`.
pub(super) fn cast(v: Value, from: &SqlType, to: &SqlType) -> Eval {
    use SqlType as T;
    if v.is_null() {
        return Ok(Value::Null);
    }
    Ok(match (v, to) {
        (v, T::String) => Value::string(&text_of(&v, from)),
        (Value::String(s), to) => return parse(&s, to),
        (Value::Boolean(b), T::Boolean) => Value::Boolean(b),
        (Value::Boolean(b), to) => return cast(Value::Int(i32::from(b)), &T::Int, to),
        (v, T::Boolean) => Value::Boolean(match v {
            Value::Int(i) => i != 0,
            Value::BigInt(i) => i != 0,
            Value::Float(f) => f != 0.0,
            Value::Double(d) => d != 0.0,
            Value::Decimal(d) => d.unscaled != 0,
            other => return fail(format!("cannot CAST {other:?} to BOOLEAN")),
        }),
        // Java's narrowing conversions: wraps; a float truncates and saturates.
        (Value::Int(i), T::Int) => Value::Int(i),
        (Value::BigInt(i), T::Int) => Value::Int(i as i32),
        (Value::Int(i), T::BigInt) => Value::BigInt(i64::from(i)),
        (Value::BigInt(i), T::BigInt) => Value::BigInt(i),
        (Value::Float(f), T::Int) => Value::Int(f as i32),
        (Value::Double(d), T::Int) => Value::Int(d as i32),
        (Value::Float(f), T::BigInt) => Value::BigInt(f as i64),
        (Value::Double(d), T::BigInt) => Value::BigInt(d as i64),
        (Value::Decimal(d), T::Int) => Value::Int(truncated(&d) as i32),
        (Value::Decimal(d), T::BigInt) => Value::BigInt(truncated(&d) as i64),
        (Value::Int(i), T::Float) => Value::Float(i as f32),
        (Value::BigInt(i), T::Float) => Value::Float(i as f32),
        (Value::Float(f), T::Float) => Value::Float(f),
        (Value::Double(d), T::Float) => Value::Float(d as f32),
        (Value::Decimal(d), T::Float) => Value::Float(d.to_string().parse().unwrap_or(f32::NAN)),
        (Value::Int(i), T::Double) => Value::Double(f64::from(i)),
        (Value::BigInt(i), T::Double) => Value::Double(i as f64),
        (Value::Float(f), T::Double) => Value::Double(f64::from(f)),
        (Value::Double(d), T::Double) => Value::Double(d),
        (Value::Decimal(d), T::Double) => Value::Double(d.to_f64()),
        (v, T::Decimal { precision, scale }) => {
            let exact = match v {
                Value::Int(i) => Decimal::new(i128::from(i), 0),
                Value::BigInt(i) => Decimal::new(i128::from(i), 0),
                Value::Decimal(d) => d,
                // BigDecimal.valueOf(double): the double's shortest text.
                Value::Float(f) => return from_float(f64::from(f), *precision, *scale),
                Value::Double(d) => return from_float(d, *precision, *scale),
                other => return fail(format!("cannot CAST {other:?} to {to}")),
            };
            fit_decimal(exact, *precision, *scale)
        }
        (Value::Timestamp(ms) | Value::TimestampLtz(ms), to) if to.is_timestamp() => {
            // The session time zone is UTC: the wall clock and the instant agree.
            let ms = truncate_ms(ms, to);
            match to {
                T::Timestamp { .. } => Value::Timestamp(ms),
                _ => Value::TimestampLtz(ms),
            }
        }
        (v, to) => return fail(format!("cannot CAST {v:?} to {to}")),
    })
}

/// A DECIMAL's integer part (truncated toward zero).
fn truncated(d: &Decimal) -> i128 {
    match 10i128.checked_pow(u32::from(d.scale)) {
        Some(p) => d.unscaled / p,
        None => 0,
    }
}

fn from_float(d: f64, precision: u8, scale: u8) -> Eval {
    if !d.is_finite() {
        return fail(format!(
            "cannot CAST {} to DECIMAL({precision}, {scale})",
            java_double(d)
        ));
    }
    match Decimal::parse(&format!("{d}")) {
        Some(exact) => Ok(fit_decimal(exact, precision, scale)),
        None => Ok(Value::Null),
    }
}

/// A timestamp cut to its type's precision (0 to 3 fractional digits).
fn truncate_ms(ms: i64, to: &SqlType) -> i64 {
    let precision = match to {
        SqlType::Timestamp { precision } | SqlType::TimestampLtz { precision } => *precision,
        _ => 3,
    };
    let unit = 10i64.pow(3 - u32::from(precision.min(3)));
    ms.div_euclid(unit) * unit
}

/// A value as text, for messages.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_owned(),
        Value::Timestamp(_) => text_of(v, &SqlType::Timestamp { precision: 3 }),
        Value::TimestampLtz(_) => text_of(v, &SqlType::TimestampLtz { precision: 3 }),
        other => text_of(other, &SqlType::String),
    }
}

/// `CAST(v AS STRING)` of a non-NULL value of type `ty`, as Flink writes it.
fn text_of(v: &Value, ty: &SqlType) -> String {
    match v {
        Value::Null => "NULL".to_owned(),
        Value::Boolean(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        Value::Int(i) => i.to_string(),
        Value::BigInt(i) => i.to_string(),
        Value::Float(f) => java_float(*f),
        Value::Double(d) => java_double(*d),
        Value::Decimal(d) => d.to_string(),
        Value::String(s) => s.to_string(),
        Value::Timestamp(ms) | Value::TimestampLtz(ms) => {
            let precision = match ty {
                SqlType::Timestamp { precision } | SqlType::TimestampLtz { precision } => {
                    *precision
                }
                _ => 3,
            };
            timestamp_text(*ms, precision)
        }
        Value::Row(fields) => {
            let inner: Vec<String> = fields.iter().map(text).collect();
            format!("({})", inner.join(", "))
        }
    }
}

/// `yyyy-MM-dd HH:mm:ss[.SSS]`, with `precision` fractional digits.
fn timestamp_text(ms: i64, precision: u8) -> String {
    let Some(t) = DateTime::from_timestamp_millis(ms) else {
        return ms.to_string();
    };
    let base = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if precision == 0 {
        return base;
    }
    let frac = format!("{:03}", ms.rem_euclid(1000));
    format!("{base}.{}", &frac[..usize::from(precision.min(3))])
}

/// Java's `Double.toString`: plain from 10^-3 up to 10^7, else `1.0E20`; always a
/// fractional digit; the shortest digits that read back as the same double.
pub(super) fn java_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".to_owned();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    java_style(&format!("{d:e}"), d.abs())
}

fn java_float(f: f32) -> String {
    if f.is_nan() || f.is_infinite() {
        return java_double(f64::from(f));
    }
    java_style(&format!("{f:e}"), f64::from(f.abs()))
}

/// From Rust's shortest scientific form (`-1.25e-5`) to Java's.
fn java_style(scientific: &str, magnitude: f64) -> String {
    let (mantissa, exp) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if magnitude == 0.0 {
        return format!("{sign}0.0");
    }
    if (1e-3..1e7).contains(&magnitude) {
        // Plain: the point after exp + 1 digits.
        let point = exp + 1;
        let (int, frac) = if point <= 0 {
            (
                "0".to_owned(),
                format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)),
            )
        } else {
            let point = point as usize;
            let padded = format!("{digits:0<point$}");
            (padded[..point].to_owned(), padded[point..].to_owned())
        };
        let frac = if frac.is_empty() {
            "0".to_owned()
        } else {
            frac
        };
        return format!("{sign}{int}.{frac}");
    }
    let (first, rest) = digits.split_at(1);
    let rest = if rest.is_empty() { "0" } else { rest };
    format!("{sign}{first}.{rest}E{exp}")
}

/// `CAST(s AS to)`: Flink trims the text first; text that is not a value of the type
/// fails the job (here: an evaluation error).
fn parse(s: &str, to: &SqlType) -> Eval {
    use SqlType as T;
    let t = s.trim();
    let bad = || fail(format!("cannot CAST '{s}' to {to}: Flink fails the job"));
    Ok(match to {
        T::String => Value::string(s),
        T::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Value::Boolean(true),
            "false" | "f" | "no" | "n" | "0" => Value::Boolean(false),
            _ => return bad(),
        },
        // `'1.5'` is 1: a fraction is cut; out of range fails.
        T::Int => match whole_number(t).and_then(|i| i32::try_from(i).ok()) {
            Some(i) => Value::Int(i),
            None => return bad(),
        },
        T::BigInt => match whole_number(t).and_then(|i| i64::try_from(i).ok()) {
            Some(i) => Value::BigInt(i),
            None => return bad(),
        },
        T::Float | T::Double => match t.parse::<f64>() {
            Ok(d) if matches!(to, T::Float) => Value::Float(d as f32),
            Ok(d) => Value::Double(d),
            Err(_) => return bad(),
        },
        T::Decimal { precision, scale } => match Decimal::parse(t) {
            Some(d) => fit_decimal(d, *precision, *scale),
            None => return bad(),
        },
        T::Timestamp { .. } | T::TimestampLtz { .. } => match timestamp_ms(t) {
            Some(ms) if matches!(to, T::Timestamp { .. }) => Value::Timestamp(truncate_ms(ms, to)),
            Some(ms) => Value::TimestampLtz(truncate_ms(ms, to)),
            None => return bad(),
        },
        T::Row(_) => return bad(),
    })
}

/// The integer part of `[+-]digits[.digits]`.
fn whole_number(t: &str) -> Option<i128> {
    let d = Decimal::parse(t)?;
    let p = 10i128.checked_pow(u32::from(d.scale))?;
    Some(d.unscaled / p)
}

/// `yyyy-MM-dd[ HH:mm:ss[.fff...]]` as milliseconds (Flink refuses a `T` between date
/// and time here).
fn timestamp_ms(t: &str) -> Option<i64> {
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|dt| dt.and_utc().timestamp_millis())
}
