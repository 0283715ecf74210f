//! Evaluation of the typed tree: operators with Flink's semantics (Java integer
//! arithmetic, exact DECIMAL at the result's scale, IEEE floats, three-valued logic).

use std::cmp::Ordering;

use super::{ArithOp, CmpOp, Eval, EvalContext, Node, cast, fail, functions};
use crate::sql::types::SqlType;
use crate::sql::value::{Decimal, Value};

impl Node {
    pub(super) fn eval(&self, row: &[Value], ctx: &EvalContext) -> Eval {
        match self {
            Node::Literal(v) => Ok(v.clone()),
            Node::Column(i) => match row.get(*i) {
                Some(v) => Ok(v.clone()),
                None => fail(format!(
                    "the row has {} values; column {} is missing",
                    row.len(),
                    i + 1
                )),
            },
            Node::Field(inner, i) => match inner.eval(row, ctx)? {
                Value::Null => Ok(Value::Null),
                Value::Row(fields) => match fields.get(*i) {
                    Some(v) => Ok(v.clone()),
                    None => fail(format!("the nested row has no field {}", i + 1)),
                },
                other => fail(format!("{other:?} is not a ROW")),
            },
            Node::Arith {
                op,
                ty,
                left,
                right,
            } => {
                let l = left.eval(row, ctx)?;
                let r = right.eval(row, ctx)?;
                if l.is_null() || r.is_null() {
                    return Ok(Value::Null);
                }
                arithmetic(*op, ty, l, r)
            }
            Node::Neg(inner) => negate(inner.eval(row, ctx)?),
            Node::Cmp { op, left, right } => {
                let l = left.eval(row, ctx)?;
                let r = right.eval(row, ctx)?;
                Ok(compare(*op, &l, &r).map_or(Value::Null, Value::Boolean))
            }
            // Three-valued logic; the right side is not evaluated when the left decides.
            Node::And(left, right) => match truth(&left.eval(row, ctx)?)? {
                Some(false) => Ok(Value::Boolean(false)),
                l => match (l, truth(&right.eval(row, ctx)?)?) {
                    (_, Some(false)) => Ok(Value::Boolean(false)),
                    (Some(true), Some(true)) => Ok(Value::Boolean(true)),
                    _ => Ok(Value::Null),
                },
            },
            Node::Or(left, right) => match truth(&left.eval(row, ctx)?)? {
                Some(true) => Ok(Value::Boolean(true)),
                l => match (l, truth(&right.eval(row, ctx)?)?) {
                    (_, Some(true)) => Ok(Value::Boolean(true)),
                    (Some(false), Some(false)) => Ok(Value::Boolean(false)),
                    _ => Ok(Value::Null),
                },
            },
            Node::Not(inner) => Ok(match truth(&inner.eval(row, ctx)?)? {
                Some(b) => Value::Boolean(!b),
                None => Value::Null,
            }),
            Node::IsNull(inner) => Ok(Value::Boolean(inner.eval(row, ctx)?.is_null())),
            Node::In { expr, list } => {
                let v = expr.eval(row, ctx)?;
                if v.is_null() {
                    return Ok(Value::Null);
                }
                let mut unknown = false;
                for item in list {
                    match compare(CmpOp::Eq, &v, &item.eval(row, ctx)?) {
                        Some(true) => return Ok(Value::Boolean(true)),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                Ok(if unknown {
                    Value::Null
                } else {
                    Value::Boolean(false)
                })
            }
            Node::Like { expr, pattern } => {
                let v = expr.eval(row, ctx)?;
                let p = pattern.eval(row, ctx)?;
                match (&v, &p) {
                    (Value::String(s), Value::String(p)) => {
                        Ok(Value::Boolean(functions::like(s, p)?))
                    }
                    _ => Ok(Value::Null),
                }
            }
            Node::Case { whens, otherwise } => {
                for (condition, result) in whens {
                    if truth(&condition.eval(row, ctx)?)? == Some(true) {
                        return result.eval(row, ctx);
                    }
                }
                otherwise.eval(row, ctx)
            }
            Node::Cast { expr, from, to } => cast::cast(expr.eval(row, ctx)?, from, to),
            Node::Coalesce(args) => {
                for a in args {
                    let v = a.eval(row, ctx)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Ok(Value::Null)
            }
            Node::Concat(args) => {
                let mut out = String::new();
                for a in args {
                    match a.eval(row, ctx)? {
                        Value::String(s) => out.push_str(&s),
                        _ => return Ok(Value::Null),
                    }
                }
                Ok(Value::string(&out))
            }
            Node::Call { func, ty, args } => {
                let values = args
                    .iter()
                    .map(|a| a.eval(row, ctx))
                    .collect::<Eval<Vec<Value>>>()?;
                functions::call(*func, ty, &values)
            }
            Node::ProcTime => Ok(Value::TimestampLtz(ctx.now_ms)),
        }
    }
}

/// A BOOLEAN value as a truth value: `None` is unknown (NULL).
fn truth(v: &Value) -> Eval<Option<bool>> {
    match v {
        Value::Null => Ok(None),
        Value::Boolean(b) => Ok(Some(*b)),
        other => fail(format!("{other:?} is not a BOOLEAN")),
    }
}

/// `l op r` of two values of one type; `None` when either is NULL. Floats compare as
/// Java does: a comparison with NaN is false (and `<>` true), not unknown.
pub(super) fn compare(op: CmpOp, l: &Value, r: &Value) -> Option<bool> {
    let floats = match (l, r) {
        (Value::Double(a), Value::Double(b)) => Some((*a, *b)),
        (Value::Float(a), Value::Float(b)) => Some((f64::from(*a), f64::from(*b))),
        _ => None,
    };
    if let Some((a, b)) = floats {
        return Some(match op {
            CmpOp::Eq => a == b,
            CmpOp::NotEq => a != b,
            CmpOp::Lt => a < b,
            CmpOp::LtEq => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::GtEq => a >= b,
        });
    }
    let order = l.sql_cmp(r)?;
    Some(match op {
        CmpOp::Eq => order == Ordering::Equal,
        CmpOp::NotEq => order != Ordering::Equal,
        CmpOp::Lt => order == Ordering::Less,
        CmpOp::LtEq => order != Ordering::Greater,
        CmpOp::Gt => order == Ordering::Greater,
        CmpOp::GtEq => order != Ordering::Less,
    })
}

fn negate(v: Value) -> Eval {
    Ok(match v {
        Value::Null => Value::Null,
        // Java: -Integer.MIN_VALUE is Integer.MIN_VALUE.
        Value::Int(i) => Value::Int(i.wrapping_neg()),
        Value::BigInt(i) => Value::BigInt(i.wrapping_neg()),
        Value::Float(f) => Value::Float(-f),
        Value::Double(d) => Value::Double(-d),
        Value::Decimal(d) => Value::Decimal(Decimal::new(-d.unscaled, d.scale)),
        other => return fail(format!("cannot negate {other:?}")),
    })
}

fn division_by_zero(l: &Value) -> Eval {
    fail(format!(
        "division by zero ({} / 0): Flink fails the job (java.lang.ArithmeticException)",
        cast::text(l)
    ))
}

/// Two non-NULL operands already cast to the operator's type (DECIMAL: any scale).
fn arithmetic(op: ArithOp, ty: &SqlType, l: Value, r: Value) -> Eval {
    use ArithOp as A;
    Ok(match (l, r) {
        // Java int and long arithmetic: wraps on overflow, `/` truncates toward zero.
        (Value::Int(a), Value::Int(b)) => Value::Int(match op {
            A::Add => a.wrapping_add(b),
            A::Sub => a.wrapping_sub(b),
            A::Mul => a.wrapping_mul(b),
            A::Div | A::Rem if b == 0 => return division_by_zero(&Value::Int(a)),
            A::Div => a.wrapping_div(b),
            A::Rem => a.wrapping_rem(b),
        }),
        (Value::BigInt(a), Value::BigInt(b)) => Value::BigInt(match op {
            A::Add => a.wrapping_add(b),
            A::Sub => a.wrapping_sub(b),
            A::Mul => a.wrapping_mul(b),
            A::Div | A::Rem if b == 0 => return division_by_zero(&Value::BigInt(a)),
            A::Div => a.wrapping_div(b),
            A::Rem => a.wrapping_rem(b),
        }),
        // IEEE: x / 0 is ±Infinity or NaN, never an error; `%` is C's fmod, as Java's.
        (Value::Float(a), Value::Float(b)) => Value::Float(match op {
            A::Add => a + b,
            A::Sub => a - b,
            A::Mul => a * b,
            A::Div => a / b,
            A::Rem => a % b,
        }),
        (Value::Double(a), Value::Double(b)) => Value::Double(match op {
            A::Add => a + b,
            A::Sub => a - b,
            A::Mul => a * b,
            A::Div => a / b,
            A::Rem => a % b,
        }),
        (Value::Decimal(a), Value::Decimal(b)) => {
            let SqlType::Decimal { precision, scale } = ty else {
                return fail(format!("DECIMAL arithmetic typed {ty}"));
            };
            decimal_arithmetic(op, a, b, *precision, *scale)?
        }
        (l, r) => return fail(format!("arithmetic on {l:?} and {r:?}")),
    })
}

/// The exact result at `scale`, rounded half up; NULL when it needs more than
/// `precision` digits, as Flink's `DecimalData.fromBigDecimal` gives. Operands whose
/// intermediate result exceeds 38 digits (an i128) are an error rather than NULL.
fn decimal_arithmetic(op: ArithOp, a: Decimal, b: Decimal, precision: u8, scale: u8) -> Eval {
    let overflow = || {
        fail(format!(
            "DECIMAL arithmetic on {a} and {b} exceeds 38 digits in an intermediate result"
        ))
    };
    let exact = match op {
        ArithOp::Add | ArithOp::Sub | ArithOp::Rem => {
            let s = a.scale.max(b.scale);
            let (Some(x), Some(y)) = (a.rescale(s), b.rescale(s)) else {
                return overflow();
            };
            let unscaled = match op {
                ArithOp::Add => x.unscaled.checked_add(y.unscaled),
                ArithOp::Sub => x.unscaled.checked_sub(y.unscaled),
                _ if y.unscaled == 0 => return division_by_zero(&Value::Decimal(a)),
                // BigDecimal.remainder: the sign of the dividend.
                _ => Some(x.unscaled % y.unscaled),
            };
            match unscaled {
                Some(u) => Decimal::new(u, s),
                None => return overflow(),
            }
        }
        ArithOp::Mul => match a.unscaled.checked_mul(b.unscaled) {
            Some(u) if u32::from(a.scale) + u32::from(b.scale) <= 76 => {
                let s = a.scale + b.scale;
                // A scale beyond what rescale handles is cut in two steps.
                if s > 38 {
                    match Decimal::new(u, s).rescale(38) {
                        Some(d) => d,
                        None => return overflow(),
                    }
                } else {
                    Decimal::new(u, s)
                }
            }
            _ => return overflow(),
        },
        ArithOp::Div => {
            if b.unscaled == 0 {
                return division_by_zero(&Value::Decimal(a));
            }
            // a/10^sa ÷ b/10^sb at `scale`: a × 10^(scale + sb - sa) ÷ b, rounded half up.
            let e = i32::from(scale) + i32::from(b.scale) - i32::from(a.scale);
            let pow = |n: i32| 10i128.checked_pow(n.unsigned_abs());
            let (num, den) = if e >= 0 {
                (
                    pow(e).and_then(|p| a.unscaled.checked_mul(p)),
                    Some(b.unscaled),
                )
            } else {
                (
                    Some(a.unscaled),
                    pow(e).and_then(|p| b.unscaled.checked_mul(p)),
                )
            };
            let (Some(num), Some(den)) = (num, den) else {
                return overflow();
            };
            let (q, r) = (num / den, num % den);
            let round_up = r.unsigned_abs() >= den.unsigned_abs() - r.unsigned_abs();
            let q = if round_up {
                q + num.signum() * den.signum()
            } else {
                q
            };
            Decimal::new(q, scale)
        }
    };
    Ok(fit_decimal(exact, precision, scale))
}

/// A decimal at the type's scale (rounded half up), or NULL when it needs more digits
/// than the precision (Flink's `DecimalData.fromBigDecimal`).
pub(super) fn fit_decimal(d: Decimal, precision: u8, scale: u8) -> Value {
    match d.rescale(scale) {
        Some(d) if d.digits() <= u32::from(precision) => Value::Decimal(d),
        _ => Value::Null,
    }
}
