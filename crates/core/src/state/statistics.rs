//! Mergeable aggregate state: count, sum, min, max, mean and variance.
//!
//! The sum is compensated (Neumaier) and carried as `sum + sum_comp`, so adding 10^5
//! values in any grouping stays within a few ulps of the exact sum. Mean and variance
//! use Welford's update and Chan et al.'s pairwise merge, which avoid the cancellation
//! of a naive sum of squares. `merge` is associative and commutative exactly for
//! count/min/max and up to rounding for the floating statistics.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggState {
    pub count: u64,
    pub sum: f64,
    /// Neumaier compensation: the low-order part of the sum lost to rounding.
    pub sum_comp: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Default for AggState {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl AggState {
    pub const EMPTY: AggState = AggState {
        count: 0,
        sum: 0.0,
        sum_comp: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        mean: 0.0,
        m2: 0.0,
    };

    pub fn of(value: f64) -> Self {
        AggState {
            count: 1,
            sum: value,
            sum_comp: 0.0,
            min: value,
            max: value,
            mean: value,
            m2: 0.0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn push(&mut self, value: f64) {
        self.merge(&AggState::of(value));
    }

    pub fn merge(&mut self, other: &AggState) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * (nb / n);
        self.m2 += other.m2 + delta * delta * (na * nb / n);
        let (s, c) = neumaier_add(self.sum, self.sum_comp, other.sum);
        self.sum = s;
        self.sum_comp = c + other.sum_comp;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn merged(mut self, other: &AggState) -> Self {
        self.merge(other);
        self
    }

    /// The compensated sum.
    pub fn total(&self) -> f64 {
        self.sum + self.sum_comp
    }

    /// Population variance (0 for fewer than two values).
    pub fn variance(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / self.count as f64).max(0.0)
        }
    }

    pub fn stddev(&self) -> f64 {
        self.variance().sqrt()
    }
}

impl FromIterator<f64> for AggState {
    fn from_iter<I: IntoIterator<Item = f64>>(iter: I) -> Self {
        let mut s = AggState::EMPTY;
        for v in iter {
            s.push(v);
        }
        s
    }
}

fn neumaier_add(sum: f64, comp: f64, x: f64) -> (f64, f64) {
    let t = sum + x;
    let lost = if sum.abs() >= x.abs() {
        (sum - t) + x
    } else {
        (x - t) + sum
    };
    (t, comp + lost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, scale: f64) -> bool {
        (a - b).abs() <= 1e-9 * scale.max(1.0)
    }

    #[test]
    fn empty_state_is_identity() {
        let s: AggState = [1.0, 2.0, 4.0].into_iter().collect();
        assert_eq!(s.merged(&AggState::EMPTY), s);
        assert_eq!(AggState::EMPTY.merged(&s), s);
        assert_eq!(s.count, 3);
        assert_eq!(s.total(), 7.0);
        assert_eq!((s.min, s.max), (1.0, 4.0));
        assert!(close(s.mean, 7.0 / 3.0, 1.0));
        assert!(close(s.variance(), 14.0 / 9.0, 1.0));
    }

    #[test]
    fn compensated_sum_survives_cancellation() {
        let values = [1e16, 1.0, -1e16, 1.0];
        let s: AggState = values.into_iter().collect();
        assert_eq!(s.total(), 2.0, "naive summation gives 0 or 1");
    }

    #[test]
    fn variance_is_stable_for_large_offsets() {
        let s: AggState = (0..1000).map(|i| 1e9 + (i % 2) as f64).collect();
        assert!((s.variance() - 0.25).abs() < 1e-6, "{}", s.variance());
    }

    proptest! {
        #[test]
        fn merge_is_associative_and_commutative(
            values in prop::collection::vec(-1e6f64..1e6, 0..60),
            cut1 in 0usize..60,
            cut2 in 0usize..60,
        ) {
            let n = values.len();
            let (a, b) = (cut1.min(n), cut2.min(n));
            let (lo, hi) = (a.min(b), a.max(b));
            let part = |r: &[f64]| r.iter().copied().collect::<AggState>();
            let (x, y, z) = (part(&values[..lo]), part(&values[lo..hi]), part(&values[hi..]));
            let left = x.merged(&y).merged(&z);
            let right = x.merged(&y.merged(&z));
            let swapped = z.merged(&x).merged(&y);
            let sequential = part(&values);
            for s in [left, right, swapped] {
                prop_assert_eq!(s.count, sequential.count);
                prop_assert_eq!(s.min, sequential.min);
                prop_assert_eq!(s.max, sequential.max);
                let scale = values.iter().map(|v| v.abs()).sum::<f64>();
                prop_assert!(close(s.total(), sequential.total(), scale));
                prop_assert!(close(s.mean, sequential.mean, scale));
                prop_assert!(close(s.variance(), sequential.variance(), scale * scale / (n.max(1) as f64)));
            }
        }
    }
}
