//! The exact answers the approximate aggregates estimate, and how far an estimate may be
//! from them: what `--verify` checks stored sketches' results against (from every value
//! the truth saw, kept only while verifying).

use super::{AggregateKind, Op};
use crate::sql::value::Value;

/// How far an approximate result may be from the exact answer and still be right.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative to the larger of the two magnitudes.
    pub relative: f64,
    /// Whatever the magnitudes (an estimated count may be one off when small).
    pub absolute: f64,
}

impl Tolerance {
    pub fn accepts(&self, estimate: f64, exact: f64) -> bool {
        let off = (estimate - exact).abs();
        off <= self.absolute || off <= self.relative * estimate.abs().max(exact.abs())
    }
}

/// `APPROX_PERCENTILE`: the documented bound, 1% of the exact lower nearest-rank value.
pub const PERCENTILE_TOLERANCE: Tolerance = Tolerance {
    relative: 0.01,
    absolute: 0.0,
};

/// `APPROX_COUNT_DISTINCT`: six relative standard errors of the sketch (1.6% each: a
/// normal error falls outside about twice in a billion; not measured), or one value (two values sharing a
/// coupon while the sketch is exact).
pub const DISTINCT_TOLERANCE: Tolerance = Tolerance {
    relative: 0.096,
    absolute: 1.0,
};

impl AggregateKind {
    /// Whether the result is a sketch's estimate ([`AggregateKind::exact_result`] gives
    /// what it estimates, [`AggregateKind::tolerance`] how close it must be).
    pub fn is_approximate(&self) -> bool {
        self.tolerance().is_some()
    }

    pub fn tolerance(&self) -> Option<Tolerance> {
        match self.op {
            Op::Percentile(..) | Op::SharedPercentile(..) => Some(PERCENTILE_TOLERANCE),
            Op::Distinct => Some(DISTINCT_TOLERANCE),
            _ => None,
        }
    }

    /// The exact answer over `values` (the non-NULL inputs of a window, in any order):
    /// a percentile's lower nearest-rank value (0-based rank `⌊p · (n − 1)⌋` of the sorted
    /// values; NULL over none), or the number of distinct values. `None` for an aggregate
    /// that is not approximate, or a value of another type than its argument's.
    pub fn exact_result(&self, values: &[Value]) -> Option<Value> {
        match self.op {
            Op::Percentile(_, p) | Op::SharedPercentile(_, p) => {
                let num = num_of(self)?;
                let mut xs = values
                    .iter()
                    .map(|v| self.double_of(num, v).ok())
                    .collect::<Option<Vec<f64>>>()?;
                if xs.is_empty() {
                    return Some(Value::Null);
                }
                xs.sort_by(f64::total_cmp);
                let rank = (p.get() * (xs.len() - 1) as f64).floor() as usize;
                Some(Value::Double(xs[rank.min(xs.len() - 1)]))
            }
            Op::Distinct => {
                // One column's values are of one type: their debug texts are equal
                // exactly when the values are (a double's sign of zero included).
                let distinct: std::collections::HashSet<String> =
                    values.iter().map(|v| format!("{v:?}")).collect();
                Some(Value::BigInt(distinct.len() as i64))
            }
            _ => None,
        }
    }
}

fn num_of(kind: &AggregateKind) -> Option<super::Num> {
    match kind.op {
        Op::Percentile(num, _) => Some(num),
        _ => super::Num::of(kind.arg.as_ref()?),
    }
}
