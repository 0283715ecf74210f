//! Flink's result types for operators and functions (`LogicalTypeMerging` and Calcite's
//! type coercion as seen in Flink 2.3; each rule cites the probe that showed it in
//! `tests.rs`).

use super::ArithOp;
use crate::sql::types::SqlType;
use crate::sql::value::MAX_PRECISION;

/// Flink keeps at least this many fractional digits when a DECIMAL result is cut to
/// 38 digits (`LogicalTypeMerging.MINIMUM_ADJUSTED_SCALE`).
const MINIMUM_ADJUSTED_SCALE: u32 = 6;

/// An exact number's precision and scale as a DECIMAL: INT is DECIMAL(10, 0), BIGINT
/// DECIMAL(19, 0).
pub(super) fn as_decimal(ty: &SqlType) -> Option<(u32, u32)> {
    match ty {
        SqlType::Int => Some((10, 0)),
        SqlType::BigInt => Some((19, 0)),
        SqlType::Decimal { precision, scale } => Some((u32::from(*precision), u32::from(*scale))),
        _ => None,
    }
}

pub(super) fn decimal(precision: u32, scale: u32) -> SqlType {
    SqlType::Decimal {
        precision: precision.clamp(1, u32::from(MAX_PRECISION)) as u8,
        scale: scale.min(u32::from(MAX_PRECISION)) as u8,
    }
}

/// A precision over 38 is cut to 38, keeping the integer digits before the fraction
/// (but at least 6 fractional digits when there were that many).
fn adjusted(precision: u32, scale: u32) -> SqlType {
    let max = u32::from(MAX_PRECISION);
    if precision <= max {
        return decimal(precision, scale);
    }
    let integer_digits = precision - scale;
    let min_scale = scale.min(MINIMUM_ADJUSTED_SCALE);
    decimal(max, max.saturating_sub(integer_digits).max(min_scale))
}

/// The rank of a numeric type in Flink's promotion.
fn rank(ty: &SqlType) -> Option<u8> {
    Some(match ty {
        SqlType::Int => 0,
        SqlType::BigInt => 1,
        SqlType::Decimal { .. } => 2,
        SqlType::Float => 3,
        SqlType::Double => 4,
        _ => return None,
    })
}

/// The type of `a op b` for two numbers, `None` when either is not a number.
pub(super) fn arithmetic(op: ArithOp, a: &SqlType, b: &SqlType) -> Option<SqlType> {
    use SqlType as T;
    match (a, b) {
        // Flink 2.3: `f + d` is FLOAT, but `f + m` (a DECIMAL) DOUBLE (probes in tests.rs).
        (T::Float, T::Decimal { .. }) | (T::Decimal { .. }, T::Float) => return Some(T::Double),
        // MOD and `%` take exact numbers only (`d % 2` is refused by Flink).
        _ if op == ArithOp::Rem && !(as_decimal(a).is_some() && as_decimal(b).is_some()) => {
            return None;
        }
        (T::Float, other) | (other, T::Float) if other.is_numeric() => return Some(T::Float),
        // Integer MOD has the type of its divisor: MOD(BIGINT, INT) is INT.
        (T::Int | T::BigInt, T::Int | T::BigInt) if op == ArithOp::Rem => return Some(b.clone()),
        _ => {}
    }
    let wider = if rank(a)? >= rank(b)? { a } else { b };
    if !matches!(wider, SqlType::Decimal { .. }) {
        return Some(wider.clone());
    }
    let (p1, s1) = as_decimal(a)?;
    let (p2, s2) = as_decimal(b)?;
    Some(match op {
        ArithOp::Add | ArithOp::Sub => {
            let scale = s1.max(s2);
            adjusted((p1 - s1).max(p2 - s2) + scale + 1, scale)
        }
        ArithOp::Mul => adjusted(p1 + p2 + 1, s1 + s2),
        ArithOp::Div => {
            let scale = MINIMUM_ADJUSTED_SCALE.max(s1 + p2 + 1);
            adjusted(p1 - s1 + s2 + scale, scale)
        }
        ArithOp::Rem => {
            let scale = s1.max(s2);
            adjusted((p1 - s1).min(p2 - s2) + scale, scale)
        }
    })
}

/// The type two values are brought to when compared, or merged into one result (CASE,
/// COALESCE, IN): `None` when Flink has no implicit cast between them.
pub(super) fn common(a: &SqlType, b: &SqlType) -> Option<SqlType> {
    use SqlType as T;
    if a == b {
        return Some(a.clone());
    }
    Some(match (a, b) {
        (T::Timestamp { precision: p }, T::Timestamp { precision: q }) => T::Timestamp {
            precision: *p.max(q),
        },
        (T::TimestampLtz { precision: p }, T::TimestampLtz { precision: q }) => T::TimestampLtz {
            precision: *p.max(q),
        },
        (T::Timestamp { precision: p }, T::TimestampLtz { precision: q })
        | (T::TimestampLtz { precision: q }, T::Timestamp { precision: p }) => {
            // Flink 2.3: CASE over a TIMESTAMP and a TIMESTAMP_LTZ is a TIMESTAMP (the
            // session time zone is UTC, so the two agree in value).
            T::Timestamp {
                precision: *p.max(q),
            }
        }
        _ if a.is_numeric() && b.is_numeric() => {
            match (as_decimal(a), as_decimal(b)) {
                (Some((p1, s1)), Some((p2, s2)))
                    if matches!(a, T::Decimal { .. }) || matches!(b, T::Decimal { .. }) =>
                {
                    let scale = s1.max(s2);
                    adjusted((p1 - s1).max(p2 - s2) + scale, scale)
                }
                _ => {
                    let wider = if rank(a)? >= rank(b)? { a } else { b };
                    // FLOAT with DOUBLE or DECIMAL merges to DOUBLE (`f = 0.1` is false).
                    match (a, b) {
                        (T::Float, T::Double | T::Decimal { .. })
                        | (T::Double | T::Decimal { .. }, T::Float) => T::Double,
                        _ => wider.clone(),
                    }
                }
            }
        }
        _ => return None,
    })
}

/// ROUND(x, digits) of DECIMAL(p, s) with a known `digits` (Flink's
/// `findRoundDecimalType`).
pub(super) fn round_decimal(precision: u32, scale: u32, digits: i32) -> SqlType {
    if digits >= scale as i32 {
        return decimal(precision, scale);
    }
    if digits < 0 {
        return decimal((1 + precision - scale).min(u32::from(MAX_PRECISION)), 0);
    }
    let digits = digits as u32;
    decimal(1 + precision - scale + digits, digits)
}

/// FLOOR and CEIL of DECIMAL(p, s).
pub(super) fn floor_ceil_decimal(precision: u8, scale: u8) -> SqlType {
    // Probes: FLOOR(DECIMAL(10, 2)) is DECIMAL(10, 0), CEIL(1.01) DECIMAL(3, 0).
    let _ = scale;
    decimal(u32::from(precision), 0)
}
