//! Scalar functions and LIKE, as Flink 2.3 computes them (probes in `tests.rs`).

use super::eval::fit_decimal;
use super::{Eval, Func, TrimSide, fail};
use crate::sql::types::SqlType;
use crate::sql::value::{Decimal, Value};

/// `s LIKE pattern`: `%` is any sequence, `_` any one character but a line terminator
/// (Flink reads `_` as a regex `.`); every other character, `\` included, stands for
/// itself (Flink has no default escape character). Case-sensitive.
pub(super) fn like(s: &str, pattern: &str) -> Eval<bool> {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Greedy matching with one backtrack point (the last `%`): linear in practice,
    // O(len(s) × len(p)) at worst; never recursive.
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some('%') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some('_') if !is_line_terminator(s[si]) => {
                si += 1;
                pi += 1;
            }
            Some(c) if *c != '_' && *c == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return Ok(false),
            },
        }
    }
    Ok(p[pi..].iter().all(|c| *c == '%'))
}

/// What Java's regex `.` does not match.
fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// A function of non-cast arguments; NULL in gives NULL out.
pub(super) fn call(func: Func, ty: &SqlType, args: &[Value]) -> Eval {
    if args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    match (func, args) {
        (Func::Lower, [Value::String(s)]) => Ok(Value::string(&s.to_lowercase())),
        (Func::Upper, [Value::String(s)]) => Ok(Value::string(&s.to_uppercase())),
        (Func::CharLength, [Value::String(s)]) => Ok(Value::Int(
            i32::try_from(s.chars().count()).unwrap_or(i32::MAX),
        )),
        (Func::Trim(side), [Value::String(s), Value::String(chars)]) => {
            Ok(Value::string(&trim(s, chars, side)))
        }
        (Func::Substring, [Value::String(s), Value::BigInt(start)]) => {
            Ok(substring(s, *start, None).map_or(Value::Null, |s| Value::string(&s)))
        }
        (Func::Substring, [Value::String(s), Value::BigInt(start), Value::BigInt(len)]) => {
            Ok(substring(s, *start, Some(*len)).map_or(Value::Null, |s| Value::string(&s)))
        }
        (Func::Abs, [v]) => abs(v),
        (Func::Floor | Func::Ceil, [v]) => floor_ceil(func == Func::Floor, v, ty),
        (Func::Round, [v, Value::Int(digits)]) => round(v, *digits, ty),
        (Func::ToTimestampLtz { unit_ms }, [v]) => to_timestamp_ltz(v, unit_ms),
        (func, args) => fail(format!("{func:?} of {args:?}")),
    }
}

/// Removes the characters of `chars` (each one, in any order) from the chosen ends.
fn trim(s: &str, chars: &str, side: TrimSide) -> String {
    let strip = |c: char| chars.contains(c);
    match side {
        TrimSide::Both => s.trim_matches(strip),
        TrimSide::Leading => s.trim_start_matches(strip),
        TrimSide::Trailing => s.trim_end_matches(strip),
    }
    .to_owned()
}

/// SQL's SUBSTRING as Flink's `BinaryStringDataUtil.substringSQL`: `start` is 1-based,
/// 0 reads as 1, a negative start counts from the end (before the first character: the
/// empty string); a negative length gives NULL.
fn substring(s: &str, start: i64, len: Option<i64>) -> Option<String> {
    if len.is_some_and(|l| l < 0) {
        return None;
    }
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len() as i64;
    let from = match start {
        1.. if start > n => return Some(String::new()),
        1.. => start - 1,
        0 => 0,
        _ if n + start < 0 => return Some(String::new()),
        _ => n + start,
    };
    let to = match len {
        Some(l) if n - from >= l => from + l,
        _ => n,
    };
    Some(chars[from as usize..to as usize].iter().collect())
}

fn abs(v: &Value) -> Eval {
    Ok(match v {
        // Java's Math.abs(Integer.MIN_VALUE) is Integer.MIN_VALUE.
        Value::Int(i) => Value::Int(i.wrapping_abs()),
        Value::BigInt(i) => Value::BigInt(i.wrapping_abs()),
        Value::Float(f) => Value::Float(f.abs()),
        Value::Double(d) => Value::Double(d.abs()),
        Value::Decimal(d) => Value::Decimal(Decimal::new(d.unscaled.abs(), d.scale)),
        other => return fail(format!("ABS of {other:?}")),
    })
}

fn floor_ceil(floor: bool, v: &Value, ty: &SqlType) -> Eval {
    Ok(match v {
        Value::Int(_) | Value::BigInt(_) => v.clone(),
        Value::Float(f) => Value::Float(if floor { f.floor() } else { f.ceil() }),
        Value::Double(d) => Value::Double(if floor { d.floor() } else { d.ceil() }),
        Value::Decimal(d) => {
            let Some(p) = 10i128.checked_pow(u32::from(d.scale)) else {
                return fail(format!("FLOOR or CEIL of {d}"));
            };
            let (q, r) = (d.unscaled / p, d.unscaled % p);
            let q = match (floor, r.signum()) {
                (true, -1) => q - 1,
                (false, 1) => q + 1,
                _ => q,
            };
            let SqlType::Decimal { precision, scale } = ty else {
                return fail(format!("FLOOR or CEIL typed {ty}"));
            };
            fit_decimal(Decimal::new(q, 0), *precision, *scale)
        }
        other => return fail(format!("FLOOR or CEIL of {other:?}")),
    })
}

/// ROUND half up (away from zero), to `digits` after the point (before it when
/// negative). A float is rounded on its shortest decimal text, as Java's
/// `BigDecimal.valueOf(double)` reads it.
fn round(v: &Value, digits: i32, ty: &SqlType) -> Eval {
    let exact = |d: Decimal| -> Option<Decimal> {
        if digits >= 0 {
            return d.rescale(u8::try_from(digits.min(38)).ok()?);
        }
        // To tens, hundreds...: shift the point left, round to a whole number, shift back.
        let shift = u8::try_from(digits.unsigned_abs()).ok()?;
        let whole = Decimal::new(d.unscaled, d.scale.checked_add(shift)?).rescale(0)?;
        let unit = 10i128.checked_pow(u32::from(shift))?;
        Some(Decimal::new(whole.unscaled.checked_mul(unit)?, 0))
    };
    let too_big = || fail(format!("ROUND of {v:?} to {digits} digits overflows"));
    Ok(match v {
        Value::Int(i) => match exact(Decimal::new(i128::from(*i), 0)) {
            Some(d) => Value::Int(d.unscaled as i32),
            None => return too_big(),
        },
        Value::BigInt(i) => match exact(Decimal::new(i128::from(*i), 0)) {
            Some(d) => Value::BigInt(d.unscaled as i64),
            None => return too_big(),
        },
        Value::Double(x) if !x.is_finite() => v.clone(),
        Value::Float(x) if !x.is_finite() => v.clone(),
        Value::Double(x) => match Decimal::parse(&format!("{x}")).and_then(exact) {
            Some(d) => Value::Double(d.to_f64()),
            None => v.clone(),
        },
        Value::Float(x) => match Decimal::parse(&format!("{x}")).and_then(exact) {
            Some(d) => Value::Float(d.to_f64() as f32),
            None => v.clone(),
        },
        Value::Decimal(d) => {
            let SqlType::Decimal { precision, scale } = ty else {
                return fail(format!("ROUND typed {ty}"));
            };
            match exact(*d) {
                Some(r) => fit_decimal(r, *precision, *scale),
                None => return too_big(),
            }
        }
        other => return fail(format!("ROUND of {other:?}")),
    })
}

/// `TO_TIMESTAMP_LTZ(n, 0 | 3)`: `n` seconds or milliseconds since the epoch; a
/// fraction of a millisecond is cut.
fn to_timestamp_ltz(v: &Value, unit_ms: i64) -> Eval {
    let ms = match v {
        Value::Int(i) => i64::from(*i).checked_mul(unit_ms),
        Value::BigInt(i) => i.checked_mul(unit_ms),
        Value::Double(d) => {
            let ms = d * unit_ms as f64;
            (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
        }
        Value::Decimal(d) => d
            .unscaled
            .checked_mul(i128::from(unit_ms))
            .and_then(|u| Decimal::new(u, d.scale).rescale(0))
            .and_then(|r| i64::try_from(r.unscaled).ok()),
        other => return fail(format!("TO_TIMESTAMP_LTZ of {other:?}")),
    };
    // Flink: an instant outside years 0000 to 9999 is NULL (probe:
    // TO_TIMESTAMP_LTZ(1767225600123, 0) is NULL).
    const MIN_MS: i64 = -62_167_219_200_000;
    const MAX_MS: i64 = 253_402_300_799_999;
    Ok(match ms {
        Some(ms) if (MIN_MS..=MAX_MS).contains(&ms) => Value::TimestampLtz(ms),
        _ => Value::Null,
    })
}
