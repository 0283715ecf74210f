//! The aggregate functions of stored views as mergeable accumulators, with Flink's result
//! types and values (issue 17).
//!
//! A view's aggregate call becomes an [`AggregateKind`] once, at plan time
//! ([`AggregateKind::new`]); each (group, window) keeps an [`AggregateState`]. The
//! aggregate stage folds a batch's values into fresh states ([`AggregateKind::add`]),
//! merges them into the states stored in DynamoDB items ([`AggregateKind::merge`], in any
//! grouping and order) and emits [`AggregateKind::result`].
//!
//! What Flink 2.3 computes, and how the states reproduce it (probes in the tests):
//! - `COUNT(*)`, `COUNT(x)`: BIGINT NOT NULL, 0 over no input.
//! - `SUM`/`AVG` of INT and BIGINT keep the count and a sum wrapping at 64 bits: wrapping
//!   addition is associative and commutative, so any merge order gives Flink's wrapped
//!   result. `SUM(INT)` is that sum cut to 32 bits (Java `int` arithmetic); `AVG(INT)`
//!   divides the 64-bit sum (Flink's sum is BIGINT); `AVG(BIGINT)` divides the wrapped
//!   64-bit sum, as Flink does. Both truncate toward zero.
//! - `SUM`/`AVG` of FLOAT and DOUBLE keep a Neumaier-compensated sum in `f64`: the result
//!   is within a few ulps of the exact sum whatever the merge order. Flink adds in input
//!   order (FLOAT in `f32`), so the last digits may differ (documented difference).
//! - `SUM`/`AVG` of DECIMAL keep the exact sum, unbounded in practice (2^63 × 10^37).
//!   `SUM` is DECIMAL(38, s) and NULL when the total needs more than 38 digits; `AVG` is
//!   DECIMAL(38, max(6, s)): the sum divided by the count rounded to 38 significant
//!   digits, then to the scale, both half up (Java's `MathContext(38, HALF_UP)` then
//!   `setScale(.., HALF_UP)`), NULL when it does not fit.
//! - `VAR_POP`, `VAR_SAMP`, `STDDEV_POP`, `STDDEV_SAMP`: Flink 2.3 keeps Welford's
//!   (n, mean, M2) in DOUBLE for every argument type and merges with Chan et al.'s
//!   formula; these states use the same formulas. The result is cast to the argument's
//!   type as Flink casts a DOUBLE: INT/BIGINT truncate toward zero and saturate, FLOAT
//!   rounds, DECIMAL(p, s) becomes DECIMAL(38, max(6, s)) from the double's shortest
//!   text rounded half up. `*_SAMP` of one value is NULL.
//! - `MIN`/`MAX` keep the extreme value, of the argument's type. Doubles and floats
//!   order as Java's `Double.compare` (-0.0 < 0.0, NaN above everything): Flink's `<`
//!   leaves those cases to input order.
//! - NULL inputs are skipped (`COUNT(*)` counts rows); over no non-NULL input every
//!   function but COUNT gives NULL.
//!
//! Where Flink's value depends on the rest of the view or on input order, these states
//! give the function's own, order-free value (documented differences):
//! - with a VAR/STDDEV in the same view, Flink rewrites `AVG(x)` as `SUM(x) / COUNT(x)`,
//!   so `AVG(INT)` wraps at 32 bits and `AVG(FLOAT)` sums in floats;
//! - a `SUM(DECIMAL)` whose running sum passes 38 digits is NULL in Flink until the next
//!   value restarts it; here it is NULL exactly when the total needs more than 38 digits;
//! - sums of doubles and the last digits of VAR/STDDEV depend on Flink's input order.
//!
//! Stored form: [`AggregateState`] serializes (serde) to a small tagged form, e.g.
//! `{"c":3}`, `{"i":[3,7]}`, `{"d":[3,"735"]}`, `{"x":{"s":"abc"}}`; the tag names the
//! layout, so a new layout is a new tag. [`AggregateKind::max_state_bytes`] bounds its
//! JSON size.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::types::SqlType;
use super::value::{Decimal, MAX_PRECISION, Value};
use distinct::DistinctSketch;
use quantile::QuantileSketch;

/// Why an aggregate call cannot be planned, or a value or stored state does not belong
/// to it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    /// The function, or the function over this argument type, is not supported.
    #[error("{0}")]
    Unsupported(String),
    /// A value of another type reached the aggregate: a planning bug.
    #[error("{function} over {arg} was given the value {value}")]
    WrongValue {
        function: &'static str,
        arg: String,
        value: String,
    },
    /// A stored state is not one this aggregate keeps, or cannot be read.
    #[error("stored state of {function} is malformed: {reason}")]
    BadState {
        function: &'static str,
        reason: String,
    },
}

type Result<T> = std::result::Result<T, AggregateError>;

/// An aggregate function, as a view calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregateFunction {
    CountStar,
    Count,
    Sum,
    Min,
    Max,
    Avg,
    StddevPop,
    StddevSamp,
    VarPop,
    VarSamp,
    /// `APPROX_PERCENTILE(x, p)` (also spelled `PERCENTILE_APPROX`).
    ApproxPercentile,
    ApproxCountDistinct,
}

impl AggregateFunction {
    pub fn name(self) -> &'static str {
        match self {
            AggregateFunction::CountStar | AggregateFunction::Count => "COUNT",
            AggregateFunction::Sum => "SUM",
            AggregateFunction::Min => "MIN",
            AggregateFunction::Max => "MAX",
            AggregateFunction::Avg => "AVG",
            AggregateFunction::StddevPop => "STDDEV_POP",
            AggregateFunction::StddevSamp => "STDDEV_SAMP",
            AggregateFunction::VarPop => "VAR_POP",
            AggregateFunction::VarSamp => "VAR_SAMP",
            AggregateFunction::ApproxPercentile => "APPROX_PERCENTILE",
            AggregateFunction::ApproxCountDistinct => "APPROX_COUNT_DISTINCT",
        }
    }
}

/// A numeric argument type, as the arithmetic sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Int,
    BigInt,
    Float,
    Double,
    Decimal { precision: u8, scale: u8 },
}

impl Num {
    fn of(ty: &SqlType) -> Option<Num> {
        Some(match *ty {
            SqlType::Int => Num::Int,
            SqlType::BigInt => Num::BigInt,
            SqlType::Float => Num::Float,
            SqlType::Double => Num::Double,
            SqlType::Decimal { precision, scale } => Num::Decimal { precision, scale },
            _ => return None,
        })
    }

    /// The type of `AVG`, `VAR_*` and `STDDEV_*`: the argument's, DECIMAL(38, max(6, s))
    /// for decimals.
    fn avg_type(self) -> SqlType {
        match self {
            Num::Int => SqlType::Int,
            Num::BigInt => SqlType::BigInt,
            Num::Float => SqlType::Float,
            Num::Double => SqlType::Double,
            Num::Decimal { scale, .. } => SqlType::Decimal {
                precision: MAX_PRECISION,
                scale: avg_scale(scale),
            },
        }
    }
}

fn avg_scale(scale: u8) -> u8 {
    scale.max(6)
}

/// What the state does, decided once from the function and argument type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    CountRows,
    CountValues,
    Sum(Num),
    Avg(Num),
    Min,
    Max,
    Moments(Moment, Num),
    /// A quantile of the values, from a relative-error sketch.
    Percentile(Num, Fraction),
    /// An estimate of the distinct values, from an HLL sketch.
    Distinct,
    /// A quantile read from the sketch of the view's aggregate at this index (another
    /// percentile of the same column and filter): it keeps no sketch of its own.
    SharedPercentile(usize, Fraction),
}

/// A fraction in [0, 1] (a percentile's `p`), kept as its bits so plans compare exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fraction(u64);

impl Fraction {
    fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Moment {
    VarPop,
    VarSamp,
    StddevPop,
    StddevSamp,
}

/// One aggregate call of a view, planned: how its state is built, merged and read.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateKind {
    function: AggregateFunction,
    arg: Option<SqlType>,
    result: SqlType,
    op: Op,
}

impl AggregateKind {
    /// Plans `function(arg)` (`arg` `None` for `COUNT(*)`); the name is matched without
    /// regard to case. Refuses, with the reason, what Flink refuses or Sluice does not
    /// support.
    pub fn new(function: &str, arg: Option<&SqlType>) -> Result<AggregateKind> {
        use AggregateFunction as F;
        let upper = function.to_ascii_uppercase();
        let function = match (upper.as_str(), arg) {
            ("COUNT", None) => F::CountStar,
            ("COUNT", Some(_)) => F::Count,
            ("SUM", _) => F::Sum,
            ("MIN", _) => F::Min,
            ("MAX", _) => F::Max,
            ("AVG", _) => F::Avg,
            ("STDDEV_POP", _) => F::StddevPop,
            ("STDDEV_SAMP", _) => F::StddevSamp,
            ("VAR_POP", _) => F::VarPop,
            ("VAR_SAMP", _) => F::VarSamp,
            ("APPROX_COUNT_DISTINCT", _) => F::ApproxCountDistinct,
            ("APPROX_PERCENTILE" | "PERCENTILE_APPROX", _) => {
                return Err(AggregateError::Unsupported(format!(
                    "{upper} takes a column and a percentile: {upper}(x, 0.99)"
                )));
            }
            _ => {
                return Err(AggregateError::Unsupported(format!(
                    "aggregate function {function} is not supported: use COUNT, SUM, MIN, \
                     MAX, AVG, STDDEV_POP, STDDEV_SAMP, VAR_POP, VAR_SAMP, APPROX_COUNT_DISTINCT \
                     or APPROX_PERCENTILE"
                )));
            }
        };
        let (op, result) = plan(function, arg)?;
        Ok(AggregateKind {
            function,
            arg: arg.cloned(),
            result,
            op,
        })
    }

    /// Plans `APPROX_PERCENTILE(arg, p)`: the value at quantile `p` of the non-NULL
    /// values, a DOUBLE within 1% (relative) of the exact lower nearest-rank value (see
    /// [`crate::sql::quantile`]). `p` is a literal in [0, 1].
    pub fn percentile(arg: &SqlType, p: f64) -> Result<AggregateKind> {
        let function = AggregateFunction::ApproxPercentile;
        if !(0.0..=1.0).contains(&p) {
            return Err(AggregateError::Unsupported(format!(
                "APPROX_PERCENTILE's percentile must be a number from 0 to 1, not {p}"
            )));
        }
        let num = Num::of(arg).ok_or_else(|| {
            AggregateError::Unsupported(format!(
                "APPROX_PERCENTILE needs a numeric argument (INT, BIGINT, FLOAT, DOUBLE or \
                 DECIMAL(p, s)), not {arg}"
            ))
        })?;
        Ok(AggregateKind {
            function,
            arg: Some(arg.clone()),
            result: SqlType::Double,
            // -0.0 and 0.0 are one percentile.
            op: Op::Percentile(num, Fraction((p + 0.0).to_bits())),
        })
    }

    /// This percentile, read from the sketch of the aggregate at `index` in the same
    /// view (a percentile of the same argument and filter) instead of a sketch of its
    /// own: several percentiles of one column keep one sketch. Other kinds are
    /// returned as they are.
    pub fn reading_sketch_of(&self, index: usize) -> AggregateKind {
        match self.op {
            Op::Percentile(_, p) => AggregateKind {
                op: Op::SharedPercentile(index, p),
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// Whether the aggregate keeps a sketch other percentiles may read.
    pub fn keeps_sketch(&self) -> bool {
        matches!(self.op, Op::Percentile(..))
    }

    pub fn function(&self) -> AggregateFunction {
        self.function
    }

    pub fn arg_type(&self) -> Option<&SqlType> {
        self.arg.as_ref()
    }

    /// The type of [`result`](Self::result), as Flink types the call.
    pub fn result_type(&self) -> &SqlType {
        &self.result
    }

    /// Whether the result may be NULL (`COUNT` is BIGINT NOT NULL).
    pub fn result_nullable(&self) -> bool {
        !matches!(self.op, Op::CountRows | Op::CountValues | Op::Distinct)
    }

    /// The state of a (group, window) that has seen nothing.
    pub fn empty(&self) -> AggregateState {
        AggregateState(match self.op {
            Op::CountRows | Op::CountValues => State::Count(0),
            Op::Sum(num) | Op::Avg(num) => match num {
                Num::Int | Num::BigInt => State::Int { n: 0, sum: 0 },
                Num::Float | Num::Double => State::Float {
                    n: 0,
                    sum: 0.0,
                    comp: 0.0,
                },
                Num::Decimal { .. } => State::Decimal {
                    n: 0,
                    sum: WideSum::ZERO,
                },
            },
            Op::Min | Op::Max => State::Extreme(Value::Null),
            Op::Moments(..) => State::Moments {
                n: 0,
                mean: 0.0,
                m2: 0.0,
            },
            Op::Percentile(..) => State::Sketch(Box::default()),
            Op::SharedPercentile(..) => State::Shared,
            Op::Distinct => State::Distinct(Box::default()),
        })
    }

    /// Adds one input value: the argument, already evaluated (any value for
    /// `COUNT(*)`, which counts calls). NULLs are skipped where Flink skips them.
    pub fn add(&self, state: &mut AggregateState, value: &Value) -> Result<()> {
        if value.is_null() && self.op != Op::CountRows {
            return if self.state_matches(&state.0) {
                Ok(())
            } else {
                Err(self.mismatch(&state.0))
            };
        }
        match (self.op, &mut state.0) {
            (Op::CountRows | Op::CountValues, State::Count(n)) => *n += 1,
            (Op::Sum(num) | Op::Avg(num), State::Int { n, sum }) => {
                *sum = sum.wrapping_add(self.int_of(num, value)?);
                *n += 1;
            }
            (Op::Sum(num) | Op::Avg(num), State::Float { n, sum, comp }) => {
                let x = self.float_of(num, value)?;
                (*sum, *comp) = neumaier_add(*sum, *comp, x);
                *n += 1;
            }
            (Op::Sum(num) | Op::Avg(num), State::Decimal { n, sum }) => {
                sum.add(self.decimal_of(num, value)?);
                *n += 1;
            }
            (Op::Moments(_, num), State::Moments { n, mean, m2 }) => {
                let x = self.double_of(num, value)?;
                welford_add(n, mean, m2, x);
            }
            (Op::Min | Op::Max, State::Extreme(current)) => {
                let value = self.extreme_of(value)?;
                if current.is_null() || self.better(&value, current) {
                    *current = value;
                }
            }
            (Op::Percentile(num, _), State::Sketch(sketch)) => {
                // NaN and the infinities have no place in a relative-error sketch: they
                // are skipped as NULLs are (documented).
                let _ = sketch.add(self.double_of(num, value)?);
            }
            // The sketch it reads gets the value.
            (Op::SharedPercentile(..), State::Shared) => {}
            (Op::Distinct, State::Distinct(sketch)) => sketch.add(value),
            (_, state) => return Err(self.mismatch(state)),
        }
        Ok(())
    }

    /// Merges `other` into `state`: `state` becomes the state of both inputs together.
    /// Associative and commutative: exactly for counts, integers, decimals and extremes,
    /// up to rounding for sums of doubles and the variance moments.
    pub fn merge(&self, state: &mut AggregateState, other: &AggregateState) -> Result<()> {
        match (&mut state.0, &other.0) {
            (State::Count(a), State::Count(b)) => *a += b,
            (State::Int { n, sum }, State::Int { n: bn, sum: bs }) => {
                *n += bn;
                *sum = sum.wrapping_add(*bs);
            }
            (
                State::Float { n, sum, comp },
                State::Float {
                    n: bn,
                    sum: bs,
                    comp: bc,
                },
            ) => {
                *n += bn;
                let (s, c) = neumaier_add(*sum, *comp, *bs);
                (*sum, *comp) = (s, c + bc);
            }
            (State::Decimal { n, sum }, State::Decimal { n: bn, sum: bs }) => {
                *n += bn;
                sum.merge(bs);
            }
            (
                State::Moments { n, mean, m2 },
                &State::Moments {
                    n: bn,
                    mean: bm,
                    m2: b2,
                },
            ) => {
                chan_merge(n, mean, m2, bn, bm, b2);
            }
            (State::Extreme(a), State::Extreme(b)) => {
                if !b.is_null() && (a.is_null() || self.better(b, a)) {
                    *a = b.clone();
                }
            }
            (State::Sketch(a), State::Sketch(b)) => a.merge(b),
            (State::Shared, State::Shared) => {}
            (State::Distinct(a), State::Distinct(b)) => a.merge(b),
            (_, other) => return Err(self.mismatch(other)),
        }
        Ok(())
    }

    /// The value of the aggregate at `index` among a view's `states` (one per aggregate,
    /// in order): [`result`](Self::result) of its own state, or for a percentile that
    /// shares a sketch, the quantile of the sketch it reads.
    pub fn result_in(&self, states: &[AggregateState], index: usize) -> Value {
        let own = match self.op {
            Op::SharedPercentile(sketch, _) => sketch,
            _ => index,
        };
        match (self.op, states.get(own).map(|s| &s.0)) {
            (Op::SharedPercentile(_, p), Some(State::Sketch(sketch))) => {
                sketch.quantile(p.get()).map_or(Value::Null, Value::Double)
            }
            (_, Some(_)) => self.result(&states[own]),
            (_, None) => Value::Null,
        }
    }

    /// The aggregate's value over everything the state has seen, of
    /// [`result_type`](Self::result_type) (NULL for a percentile that shares another's
    /// sketch: see [`result_in`](Self::result_in)).
    pub fn result(&self, state: &AggregateState) -> Value {
        match (self.op, &state.0) {
            (Op::CountRows | Op::CountValues, &State::Count(n)) => {
                Value::BigInt(i64::try_from(n).unwrap_or(i64::MAX))
            }
            (_, State::Int { n: 0, .. })
            | (_, State::Float { n: 0, .. })
            | (_, State::Decimal { n: 0, .. })
            | (_, State::Moments { n: 0, .. }) => Value::Null,
            (Op::Sum(Num::Int), &State::Int { sum, .. }) => Value::Int(sum as i32),
            (Op::Sum(_), &State::Int { sum, .. }) => Value::BigInt(sum),
            (Op::Avg(num), &State::Int { n, sum }) => {
                // Java's long division truncates toward zero; the count fits an i64.
                let avg = sum.wrapping_div(i64::try_from(n).unwrap_or(i64::MAX));
                match num {
                    Num::Int => Value::Int(avg as i32),
                    _ => Value::BigInt(avg),
                }
            }
            (Op::Sum(num), &State::Float { sum, comp, .. }) => float_value(num, sum + comp),
            (Op::Avg(num), &State::Float { n, sum, comp }) => {
                float_value(num, (sum + comp) / n as f64)
            }
            (Op::Sum(Num::Decimal { scale, .. }), State::Decimal { sum, .. }) => sum
                .total()
                .map_or(Value::Null, |u| Value::Decimal(Decimal::new(u, scale))),
            (Op::Avg(Num::Decimal { scale, .. }), State::Decimal { n, sum }) => sum
                .total()
                .and_then(|total| average(total, scale, *n))
                .map_or(Value::Null, Value::Decimal),
            (Op::Moments(moment, num), &State::Moments { n, m2, .. }) => {
                moment_value(moment, num, n, m2)
            }
            (Op::Min | Op::Max, State::Extreme(v)) => v.clone(),
            (Op::Percentile(_, p), State::Sketch(sketch)) => {
                sketch.quantile(p.get()).map_or(Value::Null, Value::Double)
            }
            (Op::Distinct, State::Distinct(sketch)) => Value::BigInt(sketch.estimate()),
            _ => Value::Null,
        }
    }

    /// Checks that a state read from storage is one this aggregate keeps.
    pub fn check_state(&self, state: &AggregateState) -> Result<()> {
        if !self.state_matches(&state.0) {
            return Err(self.mismatch(&state.0));
        }
        if let (Some(arg), State::Extreme(v)) = (&self.arg, &state.0)
            && !v.is_null()
            && !same_type(v, arg)
        {
            return Err(self.bad_state(format!("{v:?} is not a {arg}")));
        }
        Ok(())
    }

    /// Reads a state stored with [`AggregateState::to_json`], checked against this
    /// aggregate.
    pub fn state_from_json(&self, text: &str) -> Result<AggregateState> {
        let state: AggregateState =
            serde_json::from_str(text).map_err(|e| self.bad_state(e.to_string()))?;
        self.check_state(&state)?;
        Ok(state)
    }

    /// The most bytes [`AggregateState::to_json`] takes for this aggregate, when no
    /// string value is longer than `max_string_bytes` (only `MIN`/`MAX` of STRING keep
    /// a string; JSON escaping takes at most 6 bytes per input byte).
    pub fn max_state_bytes(&self, max_string_bytes: usize) -> usize {
        match self.op {
            Op::CountRows | Op::CountValues => COUNT_STATE_BYTES,
            Op::Sum(Num::Int | Num::BigInt) | Op::Avg(Num::Int | Num::BigInt) => INT_STATE_BYTES,
            Op::Sum(Num::Decimal { .. }) | Op::Avg(Num::Decimal { .. }) => DECIMAL_STATE_BYTES,
            Op::Sum(_) | Op::Avg(_) | Op::Moments(..) => FLOAT_STATE_BYTES,
            Op::Min | Op::Max => {
                let value = match self.arg {
                    Some(SqlType::String) => 2 + 6 * max_string_bytes,
                    _ => MAX_SCALAR_BYTES,
                };
                EXTREME_OVERHEAD_BYTES + value
            }
            Op::Percentile(..) => SKETCH_STATE_BYTES,
            Op::SharedPercentile(..) => SHARED_STATE_BYTES,
            Op::Distinct => DISTINCT_STATE_BYTES,
        }
    }

    fn state_matches(&self, state: &State) -> bool {
        matches!(
            (self.op, state),
            (Op::CountRows | Op::CountValues, State::Count(_))
                | (
                    Op::Sum(Num::Int | Num::BigInt) | Op::Avg(Num::Int | Num::BigInt),
                    State::Int { .. }
                )
                | (
                    Op::Sum(Num::Float | Num::Double) | Op::Avg(Num::Float | Num::Double),
                    State::Float { .. }
                )
                | (
                    Op::Sum(Num::Decimal { .. }) | Op::Avg(Num::Decimal { .. }),
                    State::Decimal { .. }
                )
                | (Op::Moments(..), State::Moments { .. })
                | (Op::Min | Op::Max, State::Extreme(_))
                | (Op::Percentile(..), State::Sketch(_))
                | (Op::SharedPercentile(..), State::Shared)
                | (Op::Distinct, State::Distinct(_))
        )
    }

    fn mismatch(&self, state: &State) -> AggregateError {
        self.bad_state(format!("{} state {state:?}", state.tag()))
    }

    fn bad_state(&self, reason: String) -> AggregateError {
        AggregateError::BadState {
            function: self.function.name(),
            reason,
        }
    }

    fn wrong(&self, value: &Value) -> AggregateError {
        AggregateError::WrongValue {
            function: self.function.name(),
            arg: self
                .arg
                .as_ref()
                .map_or_else(|| "*".to_owned(), ToString::to_string),
            value: format!("{value:?}"),
        }
    }

    fn int_of(&self, num: Num, value: &Value) -> Result<i64> {
        match (num, value) {
            (Num::Int, &Value::Int(x)) => Ok(i64::from(x)),
            (Num::BigInt, &Value::BigInt(x)) => Ok(x),
            _ => Err(self.wrong(value)),
        }
    }

    fn float_of(&self, num: Num, value: &Value) -> Result<f64> {
        match (num, value) {
            (Num::Float, &Value::Float(x)) => Ok(f64::from(x)),
            (Num::Double, &Value::Double(x)) => Ok(x),
            _ => Err(self.wrong(value)),
        }
    }

    /// The value's unscaled digits at the argument's scale.
    fn decimal_of(&self, num: Num, value: &Value) -> Result<i128> {
        match (num, value) {
            (Num::Decimal { scale, .. }, Value::Decimal(d)) if d.scale == scale => Ok(d.unscaled),
            (Num::Decimal { scale, .. }, Value::Decimal(d)) => d
                .rescale(scale)
                .map(|d| d.unscaled)
                .ok_or_else(|| self.wrong(value)),
            _ => Err(self.wrong(value)),
        }
    }

    /// The value as Flink's Welford function reads it: a Java `double` conversion.
    fn double_of(&self, num: Num, value: &Value) -> Result<f64> {
        Ok(match (num, value) {
            (Num::Int, &Value::Int(x)) => f64::from(x),
            (Num::BigInt, &Value::BigInt(x)) => x as f64,
            (Num::Float, &Value::Float(x)) => f64::from(x),
            (Num::Double, &Value::Double(x)) => x,
            (Num::Decimal { precision, scale }, Value::Decimal(_)) => {
                let unscaled = self.decimal_of(num, value)?;
                decimal_to_f64(unscaled, scale, precision)
            }
            _ => return Err(self.wrong(value)),
        })
    }

    /// The value for MIN/MAX: of the argument's type (decimals at its scale).
    fn extreme_of(&self, value: &Value) -> Result<Value> {
        match (&self.arg, value) {
            (Some(SqlType::Decimal { scale, .. }), Value::Decimal(d)) if d.scale != *scale => d
                .rescale(*scale)
                .map(Value::Decimal)
                .ok_or_else(|| self.wrong(value)),
            (Some(arg), _) if same_type(value, arg) => Ok(value.clone()),
            _ => Err(self.wrong(value)),
        }
    }

    /// Whether `candidate` replaces `current` as the MIN or MAX.
    fn better(&self, candidate: &Value, current: &Value) -> bool {
        let order = total_cmp(candidate, current);
        match self.op {
            Op::Min => order == Ordering::Less,
            _ => order == Ordering::Greater,
        }
    }
}

/// The state layout and result type of `function(arg)`.
fn plan(function: AggregateFunction, arg: Option<&SqlType>) -> Result<(Op, SqlType)> {
    use AggregateFunction as F;
    let name = function.name();
    let Some(arg) = arg else {
        return match function {
            F::CountStar => Ok((Op::CountRows, SqlType::BigInt)),
            _ => Err(AggregateError::Unsupported(format!(
                "{name} needs an argument: {name}(*) is only COUNT(*)"
            ))),
        };
    };
    let numeric = || {
        Num::of(arg).ok_or_else(|| {
            AggregateError::Unsupported(format!(
                "{name} needs a numeric argument (INT, BIGINT, FLOAT, DOUBLE or \
                 DECIMAL(p, s)), not {arg}"
            ))
        })
    };
    Ok(match function {
        F::CountStar | F::Count => (Op::CountValues, SqlType::BigInt),
        F::Sum => {
            let num = numeric()?;
            let ty = match num {
                Num::Decimal { scale, .. } => SqlType::Decimal {
                    precision: MAX_PRECISION,
                    scale,
                },
                _ => arg.clone(),
            };
            (Op::Sum(num), ty)
        }
        F::Avg => {
            let num = numeric()?;
            (Op::Avg(num), num.avg_type())
        }
        F::StddevPop | F::StddevSamp | F::VarPop | F::VarSamp => {
            let moment = match function {
                F::StddevPop => Moment::StddevPop,
                F::StddevSamp => Moment::StddevSamp,
                F::VarPop => Moment::VarPop,
                _ => Moment::VarSamp,
            };
            let num = numeric()?;
            (Op::Moments(moment, num), num.avg_type())
        }
        F::Min | F::Max => {
            if matches!(arg, SqlType::Row(_)) {
                return Err(AggregateError::Unsupported(format!(
                    "{name} of a ROW is not supported: aggregate one of its fields"
                )));
            }
            let op = if function == F::Min { Op::Min } else { Op::Max };
            (op, arg.clone())
        }
        F::ApproxCountDistinct => {
            if matches!(arg, SqlType::Row(_)) {
                return Err(AggregateError::Unsupported(format!(
                    "{name} of a ROW is not supported: count one of its fields"
                )));
            }
            (Op::Distinct, SqlType::BigInt)
        }
        // Planned by `AggregateKind::percentile`, which has the percentile.
        F::ApproxPercentile => {
            return Err(AggregateError::Unsupported(
                "APPROX_PERCENTILE takes a column and a percentile".into(),
            ));
        }
    })
}

/// A value's type is `ty` (NULL is not checked here).
fn same_type(value: &Value, ty: &SqlType) -> bool {
    matches!(
        (value, ty),
        (Value::Boolean(_), SqlType::Boolean)
            | (Value::Int(_), SqlType::Int)
            | (Value::BigInt(_), SqlType::BigInt)
            | (Value::Float(_), SqlType::Float)
            | (Value::Double(_), SqlType::Double)
            | (Value::Decimal(_), SqlType::Decimal { .. })
            | (Value::String(_), SqlType::String)
            | (Value::Timestamp(_), SqlType::Timestamp { .. })
            | (Value::TimestampLtz(_), SqlType::TimestampLtz { .. })
    )
}

/// The state of one aggregate in one (group, window). Plain data: what it means is the
/// [`AggregateKind`]'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "Stored", try_from = "Stored")]
pub struct AggregateState(State);

impl AggregateState {
    /// The stored form, JSON (see [`AggregateKind::max_state_bytes`]).
    pub fn to_json(&self) -> String {
        // A `Stored` is plain data: encoding cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Clone, Debug, PartialEq)]
enum State {
    Count(u64),
    /// SUM/AVG of INT or BIGINT: non-NULL values, their sum wrapping at 64 bits.
    Int {
        n: u64,
        sum: i64,
    },
    /// SUM/AVG of FLOAT or DOUBLE: non-NULL values, Neumaier sum and compensation.
    Float {
        n: u64,
        sum: f64,
        comp: f64,
    },
    /// SUM/AVG of DECIMAL: non-NULL values, their exact unscaled sum.
    Decimal {
        n: u64,
        sum: WideSum,
    },
    /// VAR_*/STDDEV_*: Welford's count, mean and sum of squared deviations.
    Moments {
        n: u64,
        mean: f64,
        m2: f64,
    },
    /// MIN/MAX: the extreme so far, NULL before any value.
    Extreme(Value),
    /// APPROX_PERCENTILE: the sketch of the values (boxed: it is large and rare).
    Sketch(Box<QuantileSketch>),
    /// A percentile that reads another aggregate's sketch: nothing of its own.
    Shared,
    /// APPROX_COUNT_DISTINCT: the HLL sketch of the values.
    Distinct(Box<DistinctSketch>),
}

impl State {
    fn tag(&self) -> &'static str {
        match self {
            State::Count(_) => "count",
            State::Int { .. } => "integer sum",
            State::Float { .. } => "float sum",
            State::Decimal { .. } => "decimal sum",
            State::Moments { .. } => "moments",
            State::Extreme(_) => "extreme",
            State::Sketch(_) => "sketch",
            State::Shared => "shared",
            State::Distinct(_) => "distinct sketch",
        }
    }
}

pub mod distinct;
pub mod exact;
pub mod heavy_hitters;
mod numeric;
pub mod quantile;
mod stored;

use numeric::*;
use stored::*;

#[cfg(test)]
mod tests;
